//! Medians with their spread over a cell's repeats, and the metrics the
//! report reads out of a `Measurement`.

use crate::measurement::Measurement;
use crate::results::Cell;
use crate::stats::{samples_needed, InRound};

pub use crate::stats::Spread;

/// A p-value as a reader takes it in: two significant digits, or a bound.
pub fn show_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {}", significant(p, 2))
    }
}

/// `v` with `digits` significant digits (no exponent).
pub fn significant(v: f64, digits: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = digits as i32 - 1 - magnitude;
    if decimals >= 0 {
        let decimals = decimals as usize;
        format!("{v:.decimals$}")
    } else {
        // 427.8 to two digits is 430: round away the units too.
        let unit = 10f64.powi(-decimals);
        format!("{:.0}", (v / unit).round() * unit)
    }
}

/// A number a reader can take in at a glance: three significant digits,
/// with k/M for thousands and millions.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.digits$}{unit}")
}

/// Microseconds as µs or ms.
pub fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", si(us / 1e3))
    } else {
        format!("{} µs", si(us))
    }
}

/// `si` without trailing zeros, for axis ticks (10k, 2.5k, 0.5).
pub fn si_tick(v: f64) -> String {
    trim_zeros(&si(v))
}

/// `micros` without trailing zeros, for axis ticks (20 ms, 500 µs).
pub fn micros_tick(us: f64) -> String {
    trim_zeros(&micros(us))
}

/// "20.0 ms" → "20 ms", "2.50k" → "2.5k": the zeros a tick does not need.
fn trim_zeros(s: &str) -> String {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let num = if num.contains('.') {
        num.trim_end_matches('0').trim_end_matches('.')
    } else {
        num
    };
    format!("{num}{unit}")
}

/// A share (1.0 = all) as a whole percentage.
pub fn percent(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

/// Bytes as MiB.
pub fn mib(kib: f64) -> String {
    format!("{} MiB", si(kib / 1024.0))
}

/// A value read out of one measurement.
pub type Metric = fn(&Measurement) -> Option<f64>;

/// A run that completed nothing counts as rate 0, not as a missing value:
/// dropping it would make a cell look better than its repeats were.
pub fn rate(m: &Measurement) -> Option<f64> {
    Some(m.rate)
}
/// Request bytes echoed per second: the answered rate times the size.
pub fn echoed_bytes(m: &Measurement) -> Option<f64> {
    Some(m.rate * m.workload.size as f64)
}
pub fn p50(m: &Measurement) -> Option<f64> {
    m.latency.as_ref().map(|l| l.p50_us)
}
/// A run's p99 and p99.9 exist only where it holds `samples_needed` of them:
/// fewer, and the percentile rests on a handful of samples (or is the
/// maximum).
pub fn p99(m: &Measurement) -> Option<f64> {
    m.latency
        .as_ref()
        .filter(|l| l.samples >= samples_needed(99.0))
        .map(|l| l.p99_us)
}
pub fn p999(m: &Measurement) -> Option<f64> {
    m.latency
        .as_ref()
        .filter(|l| l.samples >= samples_needed(99.9))
        .map(|l| l.p999_us)
}

/// Share of a CPU io_uring's kernel threads used in the window (the SQPOLL
/// poller, io-wq workers), where the server had such threads.
pub(super) fn io_uring_threads_share(m: &Measurement) -> Option<f64> {
    let cpu = m.server.io_uring_threads_cpu_s?;
    (m.window_s > 0.0).then(|| cpu / m.window_s)
}

/// Why a cell shows no percentile `p`: its runs hold too few samples (the
/// fewest any run holds), if that is why.
pub fn too_few_samples(c: &Cell, p: f64) -> Option<String> {
    let fewest = c
        .runs
        .iter()
        .filter_map(|m| m.latency.as_ref().map(|l| l.samples))
        .min()?;
    (fewest < samples_needed(p)).then(|| {
        format!(
            "too few samples (p{p} needs {} a run, fewest {})",
            si(samples_needed(p) as f64),
            si(fewest as f64)
        )
    })
}
pub fn max_latency(m: &Measurement) -> Option<f64> {
    m.latency.as_ref().map(|l| l.max_us)
}
/// No CPU at all for requests served is not a measurement: the accounting
/// did not reach the processes that served them. Such a run has no value.
pub fn server_cpu(m: &Measurement) -> Option<f64> {
    m.server
        .cpu_per_request_us
        .filter(|us| *us > 0.0 || m.requests == 0)
}
/// The server's CPU over the window as a share of one CPU (1.0: a core).
pub fn server_utilisation(m: &Measurement) -> Option<f64> {
    let cpu = m
        .server
        .cpu_s
        .or_else(|| Some(m.server.user_s? + m.server.sys_s?))?;
    (m.window_s > 0.0).then(|| cpu / m.window_s)
}
/// The load generator's CPU over the window as a share of one CPU.
pub fn client_utilisation(m: &Measurement) -> Option<f64> {
    (m.window_s > 0.0).then(|| (m.client.user_s + m.client.sys_s) / m.window_s)
}
/// The share of a CPU at which a side counts as having run out of it.
pub const CPU_BOUND: f64 = 0.9;

/// Which side ran out of CPU in a cell that fell short of its offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limiter {
    Server,
    LoadGenerator,
    /// Both used at least `CPU_BOUND` of a CPU.
    Both,
    /// Neither did: the shortfall is waiting (wake-ups, queues), not work.
    Neither,
}

impl Limiter {
    /// From the medians of both sides' share of a CPU over the cell's runs.
    pub fn of(c: &Cell) -> Option<Limiter> {
        let server = c.spread(server_utilisation)?.median;
        let client = c.spread(client_utilisation)?.median;
        Some(match (server >= CPU_BOUND, client >= CPU_BOUND) {
            (true, true) => Limiter::Both,
            (true, false) => Limiter::Server,
            (false, true) => Limiter::LoadGenerator,
            (false, false) => Limiter::Neither,
        })
    }

    /// The mark a short cell carries in a table.
    pub fn mark(self) -> &'static str {
        match self {
            Limiter::Server => "‡S",
            Limiter::LoadGenerator => "‡L",
            Limiter::Both => "‡SL",
            Limiter::Neither => "‡",
        }
    }
}

/// Requests answered as a share of those offered (open loop only).
pub fn offered_share(m: &Measurement) -> Option<f64> {
    let offered = m.workload.rate?;
    (offered > 0.0).then(|| m.rate / offered)
}

pub fn server_user_share(m: &Measurement) -> Option<f64> {
    let (u, s) = (m.server.user_s?, m.server.sys_s?);
    (u + s > 0.0).then(|| u / (u + s))
}
pub fn client_cpu(m: &Measurement) -> Option<f64> {
    m.client.cpu_per_request_us
}
pub fn ctx_voluntary(m: &Measurement) -> Option<f64> {
    m.server.ctx_voluntary_per_request
}
pub fn ctx_involuntary(m: &Measurement) -> Option<f64> {
    m.server.ctx_involuntary_per_request
}
pub fn peak_rss_kib(m: &Measurement) -> Option<f64> {
    m.server.peak_rss_kib.map(|k| k as f64)
}
pub fn errors(m: &Measurement) -> Option<f64> {
    Some(m.errors.total() as f64)
}
pub fn idle_dropped(m: &Measurement) -> Option<f64> {
    m.idle.as_ref().map(|i| i.dropped() as f64)
}
pub fn idle_unserved(m: &Measurement) -> Option<f64> {
    m.idle.as_ref().map(|i| i.unserved as f64)
}

impl Cell {
    /// The spread of `metric` over the cell's runs.
    pub fn spread(&self, metric: Metric) -> Option<Spread> {
        Spread::of(self.values(metric))
    }

    /// `metric` of every run that has it, in run order.
    pub fn values(&self, metric: Metric) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(metric)
            .filter(|v| !v.is_nan())
            .collect()
    }

    /// `metric` of every run that has it, with the run's round: what a
    /// paired comparison reads (`crate::stats::paired`).
    pub fn in_rounds(&self, metric: Metric) -> Vec<InRound> {
        self.runs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((self.round_of(i), metric(m)?)))
            .filter(|(_, v)| !v.is_nan())
            .collect()
    }

    /// Latency samples over all runs (each run's histogram count).
    pub fn samples(&self) -> u64 {
        self.runs
            .iter()
            .filter_map(|m| m.latency.as_ref().map(|l| l.samples))
            .sum()
    }

    /// The median of one syscall's count per request over the runs.
    pub fn syscall(&self, name: &str) -> Option<Spread> {
        Spread::of(self.runs.iter().filter_map(|m| {
            m.server
                .syscalls_per_request
                .as_ref()
                .map(|s| s.get(name).copied().unwrap_or(0.0))
        }))
    }

    /// How many runs were attempted: those kept and those that failed.
    pub fn attempted(&self) -> usize {
        self.runs.len() + self.failures.len()
    }

    /// Why nothing can be shown for the cell, if nothing can.
    pub fn why_empty(&self) -> Option<String> {
        if let Some(reason) = &self.not_run {
            return Some(format!("not run: {reason}"));
        }
        if !self.runs.is_empty() {
            return None;
        }
        Some(match self.failures.first() {
            Some(f) => format!("failed: {}", f.reason),
            None => "no run".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_follows_the_spread() {
        assert_eq!(significant(427.83, 2), "430");
        assert_eq!(significant(0.01234, 2), "0.012");
        assert_eq!(show_p(0.0286), "p = 0.029");
        assert_eq!(show_p(0.0001), "p < 0.001");
    }

    #[test]
    fn zero_server_cpu_for_served_requests_is_no_value() {
        let mut m: Measurement =
            serde_json::from_str(include_str!("testdata/measurement.json")).expect("fixture");
        m.requests = 100;
        m.server.cpu_per_request_us = Some(0.0);
        assert_eq!(server_cpu(&m), None);
        m.server.cpu_per_request_us = Some(3.0);
        assert_eq!(server_cpu(&m), Some(3.0));
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(si(48_211.0), "48.2k");
        assert_eq!(si(1_250_000.0), "1.25M");
        assert_eq!(si(7.345), "7.34");
        assert_eq!(si(123.4), "123");
        assert_eq!(micros(85.0), "85.0 µs");
        assert_eq!(micros(1500.0), "1.50 ms");
        assert_eq!(mib(2048.0), "2.00 MiB");
        assert_eq!(micros_tick(20_000.0), "20 ms");
        assert_eq!(micros_tick(2.5), "2.5 µs");
        assert_eq!(si_tick(10_000.0), "10k");
        assert_eq!(si_tick(0.0), "0");
        let s = Spread::of([1.0, 2.0, 3.0]).expect("values");
        assert_eq!(s.show(si), "2.00 (1.00–3.00)");
    }
}
