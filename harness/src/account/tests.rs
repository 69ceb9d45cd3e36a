//! Accounting measured against processes that know what they did: each
//! helper child (this test binary re-executed in `child_helper`) reports its
//! own `getrusage`, and the harness' reading must agree.

use super::*;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const MODE_VAR: &str = "LAB_ACCOUNT_CHILD";
const GRANDCHILD_VAR: &str = "LAB_ACCOUNT_GRANDCHILD";
const SPIN_MS: u64 = 200;
const GETPPID_CALLS: u64 = 5000;

/// A helper process driven line by line: it prints `@@tag k=v ...` and
/// waits for a line on stdin before each step; stdin EOF ends it.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Set when the helper was waited for; until then the watchdog may kill it.
    finished: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A helper still running after this long is killed, so that a test whose
/// helper hangs fails (its next read sees EOF) instead of hanging `cargo test`.
const HELPER_WATCHDOG: Duration = Duration::from_secs(60);

fn helper_command(mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([
        "account::tests::child_helper",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(MODE_VAR, mode)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    cmd
}

impl Helper {
    fn spawn(mode: &str) -> Helper {
        Helper::spawn_with(mode, None)
    }

    fn spawn_with(mode: &str, grandchild: Option<&str>) -> Helper {
        let mut cmd = helper_command(mode);
        if let Some(g) = grandchild {
            cmd.env(GRANDCHILD_VAR, g);
        }
        let mut child = cmd.spawn().expect("spawn helper");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&finished);
        let pid = child.id() as i32;
        std::thread::spawn(move || {
            std::thread::sleep(HELPER_WATCHDOG);
            if !flag.load(std::sync::atomic::Ordering::Acquire) {
                // SAFETY: kill has no memory-safety preconditions; the pid is
                // our unreaped child (not waited for yet), so not reused.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        Helper {
            child,
            stdin,
            stdout,
            finished,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads until the line tagged `@@tag` and returns its k=v fields.
    fn expect(&mut self, tag: &str) -> HashMap<String, u64> {
        let marker = format!("@@{tag}");
        loop {
            let mut line = String::new();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("read helper stdout");
            assert!(n > 0, "helper exited before printing {marker}");
            // libtest may print its own text on the same line first.
            if let Some(at) = line.find(&marker) {
                return line[at + marker.len()..]
                    .split_whitespace()
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        Some((k.to_string(), v.parse().ok()?))
                    })
                    .collect();
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write helper stdin");
        stdin.flush().expect("flush helper stdin");
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait();
        self.finished
            .store(true, std::sync::atomic::Ordering::Release);
        let status = status.expect("wait helper");
        assert!(status.success(), "helper failed: {status}");
    }
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn assert_within(measured: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (measured - expected).abs() <= tolerance * expected,
        "{what}: measured {measured:.4} s, expected {expected:.4} s (±{:.0} %)",
        tolerance * 100.0
    );
}

#[test]
fn spinning_threads_cpu_is_measured_within_ten_percent() {
    let mut h = Helper::spawn("spin");
    let ready = h.expect("ready");
    let counters = TreeCounters::attach(h.pid(), &CounterSet::cpu_only());
    let window = Window::begin(h.pid(), &counters, Duration::from_millis(20)).expect("begin");
    h.send("go");
    let done = h.expect("done");
    let account = window.end().expect("end");
    let own = secs(done["cpu_us"] - ready["cpu_us"]);
    assert!(own >= 2.0 * SPIN_MS as f64 / 1e3, "helper spun {own} s");
    assert_within(account.user_s + account.sys_s, own, 0.10, "/proc user+sys");
    let counters = counters.expect("perf counters (running as root)");
    assert!(counters.tasks_attached() >= 1);
    let task_clock = account.task_clock_s.expect("task-clock counted");
    assert_within(task_clock, own, 0.10, "perf task-clock");
    assert_within(account.clock_cpu_s, own, 0.05, "process CPU clocks");
    assert!(account.rss_samples >= 1 && account.peak_rss_bytes > 0);
    // Whole-run cross-check: the tree's CPU since start vs the helper's own
    // RUSAGE_SELF + RUSAGE_CHILDREN, as a server's exit summary reports it.
    let total = Snapshot::take(h.pid()).expect("snapshot").cpu_s();
    let agreement = cpu_agreement(total, secs(done["cpu_us"]), 0.0);
    assert!(agreement.agrees, "{agreement:?}");
    h.finish();
}

#[test]
fn reaped_child_cpu_is_counted_through_cutime() {
    let mut h = Helper::spawn("fork_reap");
    let ready = h.expect("ready");
    let before = Snapshot::take(h.pid()).expect("before");
    h.send("go");
    let done = h.expect("done");
    let after = Snapshot::take(h.pid()).expect("after");
    // The grandchild has been waited for: only the helper is left.
    assert_eq!(after.pids.len(), 1, "{:?}", after.pids);
    let children = secs(done["children_us"] - ready["children_us"]);
    let own = secs(done["cpu_us"] - ready["cpu_us"]);
    assert!(
        children >= SPIN_MS as f64 / 1e3,
        "grandchild spun {children} s"
    );
    assert_within(
        Snapshot::delta(&before, &after).cpu_s(),
        children + own,
        0.10,
        "tree CPU with a reaped child",
    );
    h.finish();
}

#[test]
fn snapshots_never_lose_a_child_being_reaped() {
    let mut h = Helper::spawn("fork_loop");
    h.expect("ready");
    let mut last = Snapshot::take(h.pid()).expect("first");
    let mut drops = Vec::new();
    // At least 2 s and 20 children seen: a loaded machine forks them more
    // slowly (each spins 15 ms of CPU), so the window stretches, up to 30 s.
    let started = Instant::now();
    let mut children_seen = BTreeSet::new();
    let mut snapshots = 0;
    while started.elapsed() < Duration::from_secs(30)
        && (started.elapsed() < Duration::from_secs(2) || children_seen.len() < 20)
    {
        let next = Snapshot::take(h.pid()).expect("snapshot");
        children_seen.extend(next.pids.iter().copied().filter(|&p| p != h.pid()));
        let (a, b) = (
            last.user_ticks + last.sys_ticks,
            next.user_ticks + next.sys_ticks,
        );
        // Every child is reaped by the helper, so the tree's total can only
        // grow; a drop means a reaped child was missed by one snapshot.
        if b < a {
            drops.push((a, b));
        }
        last = next;
        snapshots += 1;
    }
    h.send("stop");
    let done = h.expect("done");
    assert!(
        done["children"] >= 20,
        "only {} children forked",
        done["children"]
    );
    assert!(
        drops.is_empty(),
        "CPU total dropped {} times in {snapshots} snapshots: {drops:?}",
        drops.len()
    );
    h.finish();
}

/// 64 live children that each spun ~8 ms: `/proc/PID/stat` rounds each
/// one's user and system time down to a 10 ms tick, so summing ticks would
/// see almost none of their ~0.5 s; the CPU clocks see all of it.
#[test]
fn whole_run_cpu_of_many_short_lived_processes_is_not_lost_to_tick_rounding() {
    let mut h = Helper::spawn("many_children");
    h.expect("ready");
    h.send("go");
    h.expect("spun");
    let snapshot = Snapshot::take(h.pid()).expect("snapshot");
    h.send("reap");
    let done = h.expect("done");
    // What a server's exit summary reports: RUSAGE_SELF + RUSAGE_CHILDREN,
    // read after every child was reaped.
    let agreement = cpu_agreement(
        snapshot.cpu_s(),
        secs(done["cpu_us"] + done["children_us"]),
        0.0,
    );
    assert!(agreement.agrees, "{agreement:?}");
    h.finish();
}

#[test]
fn live_grandchild_cpu_is_counted_through_the_tree_walk() {
    let mut h = Helper::spawn_with("relay", Some("spin"));
    let ready = h.expect("ready");
    let before = Snapshot::take(h.pid()).expect("before");
    assert_eq!(
        before.pids.len(),
        2,
        "relay and its child: {:?}",
        before.pids
    );
    h.send("go");
    let done = h.expect("done");
    let after = Snapshot::take(h.pid()).expect("after");
    let grandchild = secs(done["cpu_us"] - ready["cpu_us"]);
    // The relay itself only copies two lines: well under 10 % of the spin.
    assert_within(
        Snapshot::delta(&before, &after).cpu_s(),
        grandchild,
        0.10,
        "tree CPU with a live grandchild",
    );
    h.finish();
}

#[test]
fn context_switches_grow_with_each_sleep() {
    let mut h = Helper::spawn("sleepy");
    h.expect("ready");
    let counters = TreeCounters::attach(h.pid(), &CounterSet::cpu_only());
    let window = Window::begin(h.pid(), &counters, Duration::from_millis(50)).expect("begin");
    h.send("go");
    let done = h.expect("done");
    let account = window.end().expect("end");
    // Every nanosleep blocks, and blocking is a voluntary switch.
    assert!(
        account.voluntary_switches >= done["sleeps"],
        "{} voluntary switches for {} sleeps",
        account.voluntary_switches,
        done["sleeps"]
    );
    let all = account.context_switches.expect("perf context switches");
    assert!(all >= account.voluntary_switches, "{account:?}");
    h.finish();
}

#[test]
fn syscalls_made_by_threads_created_after_attach_are_counted_exactly() {
    let mut h = Helper::spawn("getppid");
    h.expect("ready");
    let set = CounterSet {
        syscalls: vec!["getppid".into(), "no_such_syscall".into()],
        total_syscalls: true,
        cpu_and_switches: false,
        returns: Vec::new(),
    };
    let counters = match TreeCounters::attach(h.pid(), &set) {
        Ok(c) => c,
        Err(reason) => {
            // Without perf the reason must say which call failed and why.
            assert!(
                reason.contains("perf_event_open") || reason.contains("tracefs"),
                "{reason}"
            );
            // Root mounts tracefs itself: only a refused mount may end here.
            // SAFETY: geteuid has no failure mode and touches no memory.
            if unsafe { libc::geteuid() } == 0 {
                assert!(reason.contains("could not mount"), "{reason}");
            }
            h.finish();
            return;
        }
    };
    let before = counters.read().expect("read");
    h.send("go");
    let done = h.expect("done");
    let after = counters.read().expect("read");
    let delta = counters.delta(&before, &after);
    let syscalls = delta.syscalls.expect("counted");
    // Half on the main thread, half on a thread spawned after the attach.
    assert_eq!(done["calls"], 2 * GETPPID_CALLS);
    assert_eq!(syscalls.by_name["getppid"], 2 * GETPPID_CALLS);
    assert!(syscalls.total >= 2 * GETPPID_CALLS, "{syscalls:?}");
    assert_eq!(syscalls.missing, vec!["no_such_syscall".to_string()]);
    h.finish();
}

#[test]
fn attach_to_a_missing_process_gives_a_reason() {
    let reason = TreeCounters::attach(i32::MAX, &CounterSet::cpu_only())
        .err()
        .expect("no such process");
    assert!(reason.contains("/proc/2147483647/stat"), "{reason}");
}

#[test]
fn peak_rss_is_the_sampled_maximum_not_the_final_value() {
    let mut h = Helper::spawn("rss");
    h.expect("ready");
    let before = Snapshot::take(h.pid()).expect("before");
    let sampler = RssSampler::start(h.pid(), Duration::from_millis(10)).expect("sampler");
    h.send("go");
    let allocated = h.expect("allocated");
    // Two more completed samples guarantee one began after the allocation.
    let seen = sampler.samples_taken();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sampler.samples_taken() < seen + 2 {
        assert!(Instant::now() < deadline, "sampler stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    h.send("free");
    h.expect("done");
    let after = Snapshot::take(h.pid()).expect("after");
    let peak = sampler.finish();
    let bytes = allocated["bytes"];
    assert!(
        peak.peak_bytes >= before.rss_bytes + bytes * 9 / 10,
        "peak {} vs start {} + {bytes}",
        peak.peak_bytes,
        before.rss_bytes
    );
    assert!(
        after.rss_bytes + bytes / 2 < peak.peak_bytes,
        "RSS did not drop after free: end {} peak {}",
        after.rss_bytes,
        peak.peak_bytes
    );
    assert_eq!(peak.error, None);
    h.finish();
}

#[test]
fn agreement_allows_five_percent_or_two_ticks() {
    assert!(cpu_agreement(10.4, 8.0, 2.0).agrees);
    assert!(!cpu_agreement(10.6, 8.0, 2.0).agrees);
    assert!(!cpu_agreement(9.4, 8.0, 2.0).agrees);
    let tick = 1.0 / clock_ticks_per_sec() as f64;
    // At 0.1 s, 5 % is less than the tick rounding of /proc.
    assert!(cpu_agreement(0.1 + tick, 0.1, 0.0).agrees);
    assert!(!cpu_agreement(0.1 + 4.0 * tick, 0.1, 0.0).agrees);
    assert_eq!(cpu_agreement(0.0, 0.0, 0.0).ratio, 1.0);
}

#[test]
fn a_summary_between_sigterm_and_reaping_agrees() {
    // 10 s before SIGTERM, 10.8 s at reaping: children exited meanwhile.
    assert!(cpu_agreement_reaped(10.0, Some(10.8), 10.7, 0.0).agrees);
    // Without the reaped figure the same summary is 7 % off.
    assert!(!cpu_agreement(10.0, 10.7, 0.0).agrees);
    // Above what was reaped, or below what was read before: no excuse.
    assert!(!cpu_agreement_reaped(10.0, Some(10.8), 11.5, 0.0).agrees);
    assert!(!cpu_agreement_reaped(10.0, Some(10.8), 9.3, 0.0).agrees);
    assert_eq!(
        cpu_agreement_reaped(10.0, Some(10.8), 10.7, 0.0).reaped_cpu_s,
        Some(10.8)
    );
}

#[test]
fn agreement_says_which_rule_judged_and_how_wide_it_was() {
    let tick = 1.0 / clock_ticks_per_sec() as f64;
    let relative = cpu_agreement(10.0, 8.0, 2.0);
    assert!(!relative.judged_by_ticks);
    assert!((relative.tolerance_share - AGREEMENT_TOLERANCE).abs() < 1e-12);
    assert!((relative.tolerance_ticks - 0.5 / tick).abs() < 1e-6);
    // 20 ms of CPU: two ticks and 1 ms of rounding exceed 5 % of it.
    let ticks = cpu_agreement(0.02, 0.02, 0.0);
    assert!(ticks.judged_by_ticks);
    assert!((ticks.tolerance_s - (2.0 * tick + 0.001)).abs() < 1e-12);
    assert!((ticks.tolerance_share - ticks.tolerance_s / 0.02).abs() < 1e-12);
    assert!(ticks.tolerance_share > AGREEMENT_TOLERANCE);
}

#[test]
fn per_request_divides_and_keeps_nonzero_syscalls() {
    let account = ServerAccount {
        window_s: 1.0,
        user_s: 0.25,
        sys_s: 0.75,
        clock_cpu_s: 1.0,
        io_uring_threads_cpu_s: None,
        task_clock_s: None,
        voluntary_switches: 2000,
        involuntary_switches: 10,
        context_switches: Some(2010),
        tasks_exited: 0,
        processes: 1,
        threads: 1,
        rss_end_bytes: 1,
        peak_rss_bytes: 1,
        rss_samples: 1,
        rss_interval_ms: 50,
        syscalls: Some(SyscallCounts {
            total: 3500,
            by_name: [("read".to_string(), 1000), ("futex".to_string(), 0)].into(),
            missing: vec![],
        }),
        syscalls_unavailable: None,
        syscall_returns: None,
        perf_unavailable: None,
        client_user_s: 0.1,
        client_sys_s: 0.1,
        sampler_cpu_s: 0.0,
        notes: vec![],
    };
    assert_eq!(account.per_request(0.0), None);
    let per = account.per_request(1000.0).expect("requests served");
    assert!((per.server_cpu_us - 1000.0).abs() < 1e-9);
    assert!((per.client_cpu_us - 200.0).abs() < 1e-9);
    assert!((per.voluntary_switches - 2.0).abs() < 1e-9);
    let syscalls = per.syscalls.expect("syscalls");
    assert_eq!(syscalls.get("futex"), None);
    assert_eq!(syscalls["read"], 1.0);
    assert_eq!(syscalls["other"], 2.5);
}

// ---- the helper child ----------------------------------------------------

/// One line of stdin, `None` at EOF.
fn read_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

fn usage_us(who: UsageWho) -> u64 {
    let u = Usage::of(who).expect("getrusage");
    (u.cpu_s() * 1e6) as u64
}

/// Burns `ms` of this thread's own CPU time.
fn spin_thread(ms: u64) {
    let start = usage_us(UsageWho::RUSAGE_THREAD);
    while usage_us(UsageWho::RUSAGE_THREAD) - start < ms * 1000 {
        std::hint::black_box(0u64);
    }
}

/// Not a test: the body of the helper processes above, run when the test
/// binary is re-executed with `LAB_ACCOUNT_CHILD` set.
#[test]
#[ignore = "helper process for the accounting tests"]
fn child_helper() {
    let Ok(mode) = std::env::var(MODE_VAR) else {
        return;
    };
    let wait_line = read_line;
    let cpu = || usage_us(UsageWho::RUSAGE_SELF);
    let children = || usage_us(UsageWho::RUSAGE_CHILDREN);
    let say = |text: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "\n{text}").expect("stdout");
        out.flush().expect("stdout");
    };
    // The relay forwards its grandchild's markers instead of its own.
    if mode != "relay" {
        say(format!(
            "@@ready cpu_us={} children_us={}",
            cpu(),
            children()
        ));
    }
    match mode.as_str() {
        "spin" => {
            wait_line();
            let other = std::thread::spawn(move || spin_thread(SPIN_MS));
            spin_thread(SPIN_MS);
            other.join().expect("spinner");
            say(format!("@@done cpu_us={}", cpu()));
        }
        "fork_reap" => {
            wait_line();
            let mut grandchild = helper_command("spin_once")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn grandchild");
            grandchild.wait().expect("wait grandchild");
            say(format!(
                "@@done cpu_us={} children_us={}",
                cpu(),
                children()
            ));
        }
        "spin_once" => spin_thread(SPIN_MS),
        "many_children" => {
            wait_line();
            // 64 children, each spinning less than a clock tick and then
            // blocked until the pipe closes: /proc rounds each one down.
            let mut fds = [0; 2];
            let mut spun = [0; 2];
            // SAFETY: both are valid two-int out-arrays.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
            // SAFETY: as above.
            assert_eq!(unsafe { libc::pipe(spun.as_mut_ptr()) }, 0, "pipe");
            let mut pids = Vec::new();
            for _ in 0..64 {
                // SAFETY: the child only spins on getrusage, reads a pipe
                // and calls _exit: nothing another thread could hold a lock
                // on at the fork.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
                if pid == 0 {
                    // SAFETY: closing the child's copy of the write end, so
                    // that EOF comes once the parent closes its own.
                    unsafe { libc::close(fds[1]) };
                    spin_thread(8);
                    // SAFETY: one byte from a valid buffer: "done spinning".
                    unsafe { libc::write(spun[1], b"s".as_ptr().cast(), 1) };
                    let mut b = [0u8; 1];
                    // SAFETY: b is one writable byte; EOF when the parent
                    // closes the write end.
                    unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
                    // SAFETY: _exit ends the child without unwinding.
                    unsafe { libc::_exit(0) };
                }
                pids.push(pid);
            }
            for _ in 0..pids.len() {
                let mut b = [0u8; 1];
                // SAFETY: b is one writable byte.
                let n = unsafe { libc::read(spun[0], b.as_mut_ptr().cast(), 1) };
                assert_eq!(n, 1, "read(spun)");
            }
            say("@@spun".to_string());
            wait_line();
            // SAFETY: closing our own descriptors; the children see EOF.
            unsafe {
                libc::close(fds[1]);
                libc::close(fds[0]);
            }
            for pid in pids {
                let mut status = 0;
                // SAFETY: status is a valid out-pointer.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
            say(format!(
                "@@done cpu_us={} children_us={}",
                cpu(),
                children()
            ));
        }
        "fork_loop" => {
            // Forks short-lived spinning children back to back, reaping
            // each, until told to stop.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = std::sync::Arc::clone(&stop);
            let waiter = std::thread::spawn(move || {
                read_line();
                flag.store(true, std::sync::atomic::Ordering::Release);
            });
            let mut children = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                // SAFETY: the child only spins on getrusage and calls
                // _exit: no allocation or lock that another thread of this
                // process could have held at the fork.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
                if pid == 0 {
                    spin_thread(15);
                    // SAFETY: _exit ends the child without running atexit
                    // handlers or unwinding.
                    unsafe { libc::_exit(0) };
                }
                let mut status = 0;
                // SAFETY: status is a valid out-pointer.
                let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
                assert_eq!(reaped, pid, "waitpid: {}", std::io::Error::last_os_error());
                children += 1;
            }
            say(format!("@@done children={children}"));
            waiter.join().expect("stdin thread");
        }
        "relay" => {
            let inner = std::env::var(GRANDCHILD_VAR).expect("grandchild mode");
            let mut g = Helper::spawn(&inner);
            let fields = |f: HashMap<String, u64>| {
                f.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            say(format!("@@ready {}", fields(g.expect("ready"))));
            wait_line();
            g.send("go");
            say(format!("@@done {}", fields(g.expect("done"))));
            wait_line();
            g.finish();
            return;
        }
        "sleepy" => {
            wait_line();
            let sleeps = 100;
            for _ in 0..sleeps {
                std::thread::sleep(Duration::from_millis(2));
            }
            say(format!("@@done sleeps={sleeps}"));
        }
        "getppid" => {
            wait_line();
            let call = || {
                for _ in 0..GETPPID_CALLS {
                    // SAFETY: getppid has no preconditions; raw syscall so
                    // no libc cache can skip the kernel.
                    unsafe { libc::syscall(libc::SYS_getppid) };
                }
            };
            let other = std::thread::spawn(call);
            call();
            other.join().expect("getppid thread");
            say(format!("@@done calls={}", 2 * GETPPID_CALLS));
        }
        "rss" => {
            wait_line();
            let bytes = 64usize << 20;
            // Written, not just reserved, so every page is resident.
            let block = vec![1u8; bytes];
            say(format!("@@allocated bytes={bytes}"));
            wait_line();
            std::hint::black_box(&block);
            // A block this large was mmap'd by malloc and is unmapped here.
            drop(block);
            say("@@done".to_string());
        }
        other => panic!("unknown helper mode {other}"),
    }
    // Stay alive (and measurable) until the test closes stdin.
    while wait_line().is_some() {}
}

/// On a machine where tracefs is not mounted, root mounts it: counting then
/// works, and the machine's tracepoints are reachable.
#[test]
fn root_counts_syscalls_with_or_without_tracefs_mounted() {
    // SAFETY: geteuid has no failure mode and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        let reason = super::syscall_tracepoints().err();
        // Not root: either someone mounted it, or the reason says why not.
        if let Some(reason) = reason {
            assert!(reason.contains("tracefs"), "{reason}");
        }
        return;
    }
    let root = super::syscall_tracepoints().expect("root reaches the syscall tracepoints");
    assert!(
        std::path::Path::new(root)
            .join("events/raw_syscalls/sys_enter/id")
            .exists(),
        "{root}"
    );
    let mut h = Helper::spawn("getppid");
    h.expect("ready");
    let set = CounterSet {
        syscalls: vec!["getppid".into()],
        total_syscalls: true,
        cpu_and_switches: true,
        returns: Vec::new(),
    };
    let counters = TreeCounters::attach(h.pid(), &set).expect("perf as root");
    let before = counters.read().expect("read");
    h.send("go");
    let done = h.expect("done");
    let after = counters.read().expect("read");
    let delta = counters.delta(&before, &after);
    assert_eq!(delta.syscalls_unavailable, None);
    let syscalls = delta.syscalls.expect("counted");
    assert_eq!(syscalls.by_name["getppid"], done["calls"]);
    h.finish();
}
