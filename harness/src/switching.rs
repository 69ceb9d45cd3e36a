//! What a switch costs: two threads pinned to one CPU handing a value back
//! and forth (every hand-off a kernel context switch), the same hand-off as
//! a function call, and as a corosensei coroutine's resume and suspend (no
//! kernel at all). `harness compare` and `harness claims` (C12, C13) both
//! measure it.

use crate::load::sys;
pub use crate::results::Switching;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use std::fs;
use std::hint::black_box;
use std::io;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

const HANDOFFS: usize = 20_000;

fn voluntary_switches() -> u64 {
    fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn switching() -> io::Result<Switching> {
    let cpu = *sys::allowed_cpus()?
        .first()
        .ok_or_else(|| io::Error::other("no CPU allowed"))?;
    let (to_pong, from_ping) = mpsc::sync_channel::<u64>(0);
    let (to_ping, from_pong) = mpsc::sync_channel::<u64>(0);
    let pong = thread::spawn(move || -> io::Result<()> {
        sys::pin_current_thread(&[cpu])?;
        while let Ok(v) = from_ping.recv() {
            if to_ping.send(v + 1).is_err() {
                break;
            }
        }
        Ok(())
    });
    let ping = thread::spawn(move || -> io::Result<(f64, f64)> {
        sys::pin_current_thread(&[cpu])?;
        let switches0 = voluntary_switches();
        let t0 = Instant::now();
        let mut v = 0;
        for _ in 0..HANDOFFS {
            to_pong
                .send(v)
                .map_err(|_| io::Error::other("pong thread gone"))?;
            v = from_pong
                .recv()
                .map_err(|_| io::Error::other("pong thread gone"))?;
        }
        let ns = t0.elapsed().as_secs_f64() * 1e9 / (2 * HANDOFFS) as f64;
        let switches = (voluntary_switches() - switches0) as f64 / HANDOFFS as f64;
        black_box(v);
        Ok((ns, switches))
    });
    let (thread_handoff_ns, switches_per_round_trip) = ping
        .join()
        .map_err(|_| io::Error::other("ping thread panicked"))??;
    pong.join()
        .map_err(|_| io::Error::other("pong thread panicked"))??;
    #[inline(never)]
    fn handoff(v: u64) -> u64 {
        black_box(v) + 1
    }
    let t0 = Instant::now();
    let mut v = 0;
    for _ in 0..2 * HANDOFFS {
        v = handoff(v);
    }
    black_box(v);
    let call_ns = t0.elapsed().as_secs_f64() * 1e9 / (2 * HANDOFFS) as f64;
    // The same hand-off between a coroutine and its caller: a resume and a
    // suspend are two switches of stack and registers in user space.
    let mut co = Coroutine::new(|yielder: &Yielder<u64, u64>, mut v: u64| loop {
        v = yielder.suspend(v + 1);
    });
    let t0 = Instant::now();
    let mut v = 0;
    for _ in 0..HANDOFFS {
        v = match co.resume(v) {
            CoroutineResult::Yield(next) => next,
            CoroutineResult::Return(never) => never,
        };
    }
    black_box(v);
    let coroutine_switch_ns = t0.elapsed().as_secs_f64() * 1e9 / (2 * HANDOFFS) as f64;
    Ok(Switching {
        thread_handoff_ns,
        switches_per_round_trip,
        call_ns,
        coroutine_switch_ns,
    })
}
