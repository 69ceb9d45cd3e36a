//! Which loop served which new connection, from both ends' clocks: the
//! client notes each connection's span, `connect()` to reply
//! (`load::ConnectSpan`), and the wake-up trace notes each `accept4` that
//! returned a connection with its thread (`AcceptLog`), both on
//! `CLOCK_MONOTONIC`. A connection's accept lies inside its span. A span
//! holding exactly one accept, which no other span holds, is that
//! connection's: attributed. Anything else (overlapping spans, an accept
//! before the trace attached) is left unattributed and counted, never
//! guessed.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use super::AcceptLog;
use crate::load::latency::Recorder;
use crate::load::ConnectSpan;
use crate::measurement::{Landed, LoopLatency};

/// Matches `spans` to the accepts of `log` (see the module's rule).
pub fn attribute(spans: &[ConnectSpan], log: &AcceptLog) -> io::Result<Landed> {
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
                cpu_s,
                connections: served.len() as u64,
                latency: recorder.summary(),
            });
        }
    }
    loops.sort_by(|a, b| b.cpu_s.total_cmp(&a.cpu_s).then(a.tid.cmp(&b.tid)));
    Ok(Landed {
        connections: spans.len() as u64,
        attributed,
        all: all.summary(),
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
        let landed = attribute(&spans, &log).unwrap();
        assert_eq!((landed.connections, landed.attributed), (5, 2));
        let tids: Vec<u32> = landed.loops.iter().map(|l| l.tid).collect();
        assert_eq!(tids, [7, 8], "busiest first; thread 9 never ran");
        assert_eq!(landed.loops[0].connections, 2);
        assert_eq!(landed.loops[1].connections, 0);
        assert!(landed.loops[1].latency.is_none());
        let p50 = landed.loops[0].latency.as_ref().unwrap().p50_us;
        assert!((p50 - 0.1).abs() < 0.01, "p50 {p50} µs");
    }
}
