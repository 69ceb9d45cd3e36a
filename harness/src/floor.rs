//! The machine's floor under every latency figure: how late a sleeping
//! thread wakes. A thread pinned to one CPU, with 1 ns timer slack, sleeps
//! until an absolute `CLOCK_MONOTONIC` deadline every `period`
//! (`clock_nanosleep(TIMER_ABSTIME)`) and records how late each wake-up
//! came. A request served by two sleeping threads needs at least two such
//! wake-ups, so a latency difference inside this spread is the machine's,
//! not a model's.
//!
//! Run: `harness floor --json` (every CPU this process may use).

use std::io;
use std::mem::zeroed;
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;

use crate::load::sys;

pub use crate::measurement::TimerWakeups;

fn now_ns() -> u64 {
    sys::monotonic_ns()
}

/// Sleeps until `deadline_ns` on `CLOCK_MONOTONIC`. EINTR: sleeps again
/// for the same deadline (an absolute sleep restarts without drift).
fn sleep_until_ns(deadline_ns: u64) -> io::Result<()> {
    // SAFETY: all-zero is a valid timespec.
    let mut ts: libc::timespec = unsafe { zeroed() };
    ts.tv_sec = (deadline_ns / 1_000_000_000) as libc::time_t;
    ts.tv_nsec = (deadline_ns % 1_000_000_000) as libc::c_long;
    loop {
        // SAFETY: `ts` outlives the call; the remainder pointer may be
        // null for an absolute sleep.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        // clock_nanosleep returns the errno instead of setting it.
        match rc {
            0 => return Ok(()),
            libc::EINTR => continue,
            e => {
                return Err(sys::named(
                    "clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)",
                    io::Error::from_raw_os_error(e),
                ))
            }
        }
    }
}

/// Measures `count` timer wake-ups on `cpu`, one every `period`, from a
/// thread of its own (pinned there, timer slack 1 ns).
pub fn timer_wakeups(cpu: usize, period: Duration, count: u64) -> io::Result<TimerWakeups> {
    joined(spawn_wakeups(cpu, period, count)?)
}

/// `timer_wakeups` on every CPU of `cpus` at once, each by its own pinned
/// thread: as long as one CPU's measurement. One result per CPU, in order.
pub fn every_cpu(
    cpus: &[usize],
    period: Duration,
    count: u64,
) -> Vec<(usize, io::Result<TimerWakeups>)> {
    let started: Vec<_> = cpus
        .iter()
        .map(|&cpu| (cpu, spawn_wakeups(cpu, period, count)))
        .collect();
    started
        .into_iter()
        .map(|(cpu, thread)| (cpu, thread.and_then(joined)))
        .collect()
}

type Measuring = std::thread::JoinHandle<io::Result<TimerWakeups>>;

fn joined(thread: Measuring) -> io::Result<TimerWakeups> {
    thread
        .join()
        .map_err(|_| io::Error::other("floor thread panicked"))?
}

/// Starts the thread that measures `cpu`'s wake-ups.
fn spawn_wakeups(cpu: usize, period: Duration, count: u64) -> io::Result<Measuring> {
    if period.is_zero() || count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "timer_wakeups: period and count must be positive",
        ));
    }
    std::thread::Builder::new()
        .name(format!("floor-{cpu}"))
        .spawn(move || {
            sys::pin_current_thread(&[cpu])?;
            sys::set_timer_slack(sys::TIMER_SLACK_NS)?;
            let slack = sys::timer_slack()?;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                .map_err(|e| io::Error::other(format!("hdrhistogram: {e}")))?;
            let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
            let mut skipped = 0;
            // One period ahead: the first sleep starts on the pinned CPU.
            let mut deadline = now_ns() + period_ns;
            for _ in 0..count {
                sleep_until_ns(deadline)?;
                let woke = now_ns();
                hist.saturating_record(woke.saturating_sub(deadline).max(1));
                deadline += period_ns;
                while deadline <= woke {
                    deadline += period_ns;
                    skipped += 1;
                }
            }
            let us = |ns: u64| ns as f64 / 1e3;
            Ok(TimerWakeups {
                cpu,
                period_us: period_ns as f64 / 1e3,
                timer_slack_ns: slack,
                samples: hist.len(),
                skipped,
                p50_us: us(hist.value_at_quantile(0.5)),
                p99_us: us(hist.value_at_quantile(0.99)),
                p999_us: us(hist.value_at_quantile(0.999)),
                max_us: us(hist.max()),
                mean_us: hist.mean() / 1e3,
            })
        })
        .map_err(|e| sys::named("spawn floor thread", e))
}

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Sleep period, microseconds.
    #[arg(long, default_value_t = 200)]
    pub period_us: u64,
    /// Wake-ups per CPU (p99.9 needs at least 10 000).
    #[arg(long, default_value_t = 20_000)]
    pub count: u64,
    /// CPUs to measure (default: every CPU this process may use), e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: FloorArgs) -> io::Result<std::process::ExitCode> {
    let cpus = match args.cpus {
        Some(c) => c,
        None => sys::allowed_cpus()?,
    };
    let period = Duration::from_micros(args.period_us);
    let mut results = Vec::new();
    for cpu in cpus {
        results.push(timer_wakeups(cpu, period, args.count)?);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&results).map_err(io::Error::other)?;
        println!("{text}");
    } else {
        println!(
            "timer wake-up lateness (clock_nanosleep TIMER_ABSTIME every {} µs, slack 1 ns)",
            args.period_us
        );
        println!("cpu  samples   p50 µs   p99 µs  p99.9 µs   max µs  skipped");
        for r in &results {
            println!(
                "{:>3} {:>8} {:>8.1} {:>8.1} {:>9.1} {:>8.1} {:>8}",
                r.cpu, r.samples, r.p50_us, r.p99_us, r.p999_us, r.max_us, r.skipped
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakeups_are_never_early_and_every_one_is_counted() {
        let cpu = sys::allowed_cpus().expect("cpus")[0];
        let period = Duration::from_micros(500);
        let started = std::time::Instant::now();
        let r = timer_wakeups(cpu, period, 200).expect("floor");
        // An absolute sleep cannot return before its deadline.
        assert!(
            r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us,
            "{r:?}"
        );
        assert_eq!(r.samples, 200);
        assert_eq!(r.timer_slack_ns, 1);
        assert_eq!(r.cpu, cpu);
        // 200 deadlines 500 µs apart take at least 100 ms.
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn every_cpu_measures_each_cpu_once_in_order() {
        let cpus = sys::allowed_cpus().expect("cpus");
        let measured = every_cpu(&cpus, Duration::from_micros(500), 50);
        assert_eq!(measured.len(), cpus.len());
        for ((cpu, m), want) in measured.into_iter().zip(&cpus) {
            let m = m.expect("measured");
            assert_eq!((cpu, m.cpu), (*want, *want));
            assert_eq!(m.samples, 50);
        }
        assert!(every_cpu(&cpus, Duration::ZERO, 10)
            .iter()
            .all(|(_, m)| m.is_err()));
    }

    #[test]
    fn a_zero_period_is_refused() {
        assert!(timer_wakeups(0, Duration::ZERO, 10).is_err());
    }
}
