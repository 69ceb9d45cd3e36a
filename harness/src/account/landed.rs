//! Which loop served which new connection, from both ends' clocks: the
//! client notes each connection's span, `connect()` to reply
//! (`load::ConnectSpan`), and the wake-up trace notes each `accept4` that
//! returned a connection with its thread (`AcceptLog`), both on
//! `CLOCK_MONOTONIC`. A connection's accept lies inside its span. A span
//! holding exactly one accept, which no other span holds, is that
//! connection's: attributed. Anything else (overlapping spans, an accept
//! before the trace attached) is left unattributed and counted, never
//! guessed.
//!
//! Which loop is busy is read from `/proc`, not guessed from CPU time (a
//! loop that is handed most new connections runs most, busy or not):
//! `busy_loops` finds the epoll instances that hold the busy connections
//! and the threads that wait on them.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::time::{Duration, Instant};

use super::AcceptLog;
use crate::load::latency::Recorder;
use crate::load::ConnectSpan;
use crate::measurement::{Landed, LoopLatency};

/// The threads of event-loop server `pid` serving its `busy` first
/// connections: those hold its lowest-numbered connected sockets (`accept4`
/// returns the lowest free descriptor, and the harness connects them before
/// any other and closes none meanwhile). Each socket's loop is the epoll
/// instance whose interest list holds it (`/proc/PID/fdinfo/EPFD`, `tfd:`
/// lines), and that instance's thread the one found asleep in `epoll_wait`
/// on it (`/proc/PID/task/TID/syscall`: number, then the arguments in
/// hex), sampled for up to `patience`. `Err` with the reason when the
/// server is no epoll loop or a step finds nothing.
pub fn busy_loops(pid: i32, busy: usize, patience: Duration) -> Result<Vec<u32>, String> {
    let listening = listening_inodes(pid)?;
    let fd_dir = format!("/proc/{pid}/fd");
    let entries = fs::read_dir(&fd_dir).map_err(|e| format!("{fd_dir}: {e}"))?;
    let (mut conns, mut epolls) = (Vec::new(), Vec::new());
    for entry in entries.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(link) = fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy().into_owned();
        if link == "anon_inode:[eventpoll]" {
            epolls.push(fd);
        } else if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
        {
            if !listening.contains(&inode) {
                conns.push(fd);
            }
        }
    }
    conns.sort_unstable();
    if conns.len() < busy {
        return Err(format!(
            "pid {pid} holds {} connected sockets, fewer than the {busy} busy ones",
            conns.len()
        ));
    }
    let busy_fds = &conns[..busy];
    let mut holders = Vec::new();
    for &epfd in &epolls {
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")).unwrap_or_default();
        let holds = info.lines().any(|l| {
            l.strip_prefix("tfd:")
                .and_then(|rest| rest.split_whitespace().next()?.parse::<i32>().ok())
                .is_some_and(|tfd| busy_fds.contains(&tfd))
        });
        if holds {
            holders.push(epfd);
        }
    }
    if holders.is_empty() {
        return Err(format!(
            "no epoll instance of pid {pid} holds its first connections (not an epoll loop?)"
        ));
    }
    let deadline = Instant::now() + patience;
    let mut owner: HashMap<i32, u32> = HashMap::new();
    while owner.len() < holders.len() {
        if Instant::now() > deadline {
            return Err(format!(
                "no thread of pid {pid} was seen in epoll_wait on epoll fd(s) {holders:?} within {patience:?}"
            ));
        }
        let tasks = fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
        for task in tasks.flatten() {
            let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let text = fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
            let mut fields = text.split_whitespace();
            let number = fields.next().and_then(|n| n.parse::<i64>().ok());
            let waits =
                number == Some(libc::SYS_epoll_wait) || number == Some(libc::SYS_epoll_pwait);
            let epfd = fields
                .next()
                .and_then(|a| i32::from_str_radix(a.trim_start_matches("0x"), 16).ok());
            if let (true, Some(epfd)) = (waits, epfd) {
                if holders.contains(&epfd) {
                    owner.insert(epfd, tid);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut tids: Vec<u32> = owner.into_values().collect();
    tids.sort_unstable();
    tids.dedup();
    Ok(tids)
}

/// Inodes of the listening TCP sockets the process' network namespace
/// shows (`/proc/PID/net/tcp` and `tcp6`: state `0A` is `TCP_LISTEN`, the
/// inode is the tenth column).
fn listening_inodes(pid: i32) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(3) == Some(&"0A") {
                if let Some(inode) = cols.get(9).and_then(|n| n.parse().ok()) {
                    out.push(inode);
                }
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no listening socket in /proc/{pid}/net/tcp{{,6}}"));
    }
    Ok(out)
}

/// Matches `spans` to the accepts of `log` (see the module's rule); the
/// loops in `busy` are marked and listed first.
pub fn attribute(spans: &[ConnectSpan], log: &AcceptLog, busy: &[u32]) -> io::Result<Landed> {
    let mut accepts: Vec<(u64, u32)> = log.accepts.iter().map(|&(tid, t)| (t, tid)).collect();
    accepts.sort_unstable();
    let inside = |s: &ConnectSpan| {
        let from = accepts.partition_point(|&(t, _)| t < s.start_ns);
        let to = accepts.partition_point(|&(t, _)| t <= s.end_ns);
        from..to
    };
    // How many spans hold each accept.
    let mut holders = vec![0u32; accepts.len()];
    for s in spans {
        for h in &mut holders[inside(s)] {
            *h += 1;
        }
    }
    let mut all = Recorder::new()?;
    let mut by_loop: HashMap<u32, Vec<Duration>> = HashMap::new();
    let mut attributed = 0;
    for s in spans {
        all.record(Duration::from_nanos(s.end_ns - s.start_ns));
        let range = inside(s);
        if range.len() == 1 && holders[range.start] == 1 {
            let tid = accepts[range.start].1;
            by_loop
                .entry(tid)
                .or_default()
                .push(Duration::from_nanos(s.end_ns - s.start_ns));
            attributed += 1;
        }
    }
    let mut tids: Vec<u32> = log.cpu_ns.keys().copied().collect();
    tids.extend(by_loop.keys().filter(|t| !log.cpu_ns.contains_key(t)));
    let mut loops = Vec::new();
    for tid in tids {
        let mut recorder = Recorder::new()?;
        let served = by_loop.get(&tid).map_or(&[][..], Vec::as_slice);
        for &d in served {
            recorder.record(d);
        }
        let cpu_s = log.cpu_ns.get(&tid).copied().unwrap_or(0) as f64 / 1e9;
        // A thread that neither ran nor accepted (a prefork parent, asleep
        // in its signalfd) is no loop.
        if cpu_s > 0.0 || !served.is_empty() {
            loops.push(LoopLatency {
                tid,
                busy: busy.contains(&tid),
                cpu_s,
                connections: served.len() as u64,
                latency: recorder.summary(),
            });
        }
    }
    loops.sort_by(|a, b| {
        (b.busy.cmp(&a.busy))
            .then(b.cpu_s.total_cmp(&a.cpu_s))
            .then(a.tid.cmp(&b.tid))
    });
    Ok(Landed {
        connections: spans.len() as u64,
        attributed,
        all: all.summary(),
        busy_na_reason: None,
        loops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start_ns: u64, end_ns: u64) -> ConnectSpan {
        ConnectSpan { start_ns, end_ns }
    }

    #[test]
    fn a_span_with_its_one_accept_is_attributed_and_overlaps_are_not() {
        let log = AcceptLog {
            // Loop 7 accepts at 150 and 450, loop 8 at 320 and 340.
            accepts: vec![(7, 150), (8, 320), (8, 340), (7, 450)],
            cpu_ns: HashMap::from([(7, 2_000_000_000), (8, 1_000_000_000), (9, 0)]),
        };
        let spans = [
            span(100, 200), // holds 150 alone: loop 7, 100 ns
            span(300, 350), // holds 320 and 340: ambiguous
            span(330, 360), // holds 340, which the span above holds too
            span(400, 500), // holds 450 alone: loop 7
            span(600, 700), // accepted before the trace: nothing inside
        ];
        let landed = attribute(&spans, &log, &[]).unwrap();
        assert_eq!((landed.connections, landed.attributed), (5, 2));
        let tids: Vec<u32> = landed.loops.iter().map(|l| l.tid).collect();
        assert_eq!(tids, [7, 8], "most CPU first; thread 9 never ran");
        let marked = attribute(&spans, &log, &[8]).unwrap();
        let tids: Vec<u32> = marked.loops.iter().map(|l| l.tid).collect();
        assert_eq!(tids, [8, 7], "the busy loop first");
        assert!(marked.loops[0].busy && !marked.loops[1].busy);
        assert_eq!(landed.loops[0].connections, 2);
        assert_eq!(landed.loops[1].connections, 0);
        assert!(landed.loops[1].latency.is_none());
        let p50 = landed.loops[0].latency.as_ref().unwrap().p50_us;
        assert!((p50 - 0.1).abs() < 0.01, "p50 {p50} µs");
    }
}
