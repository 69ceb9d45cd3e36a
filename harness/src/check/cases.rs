//! The cases of the suite (issue 3, item 5), each returning its findings.
//!
//! Rule of classification, the same in every case: a wrong, missing or extra
//! byte, an early close of a connection that was owed a reply, a leak or a
//! death is `fatal`; being slow (a timeout, a stall, a CPU figure) is the
//! case's `limit`, which the expectations table may excuse.

use super::client::{
    close_with_rst, drive, ping, ping_on, seeded_bytes, transform, Conn, Failure, PingError,
};
use super::expect::Expect;
use super::{Case, Ctx, Findings, Managed};
use crate::account::Snapshot;
use crate::server::{describe_status, Server, Summary};
use nix::sys::signal::Signal;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// The contract's bound on an answer while another client misbehaves.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// The contract's bound on shutdown after SIGINT/SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// Runs a case that uses the main server (or the `--target`).
pub(crate) fn run_main(case: Case, ctx: &mut Ctx, nofile: libc::rlim_t) -> Findings {
    match case {
        Case::Echo => echo(ctx.addr),
        Case::AllBytes => all_bytes(ctx.addr),
        Case::Random8M => random_8mib(ctx.addr),
        Case::Concurrent => concurrent_200(ctx.addr),
        Case::HalfClose => half_close(ctx.addr),
        Case::Rst => rst_50(ctx),
        Case::Slowloris => slowloris(ctx.addr),
        Case::NeverReader => never_reader(ctx),
        Case::Conns2000 => conns_2000(ctx, nofile),
        Case::Descriptors => descriptors(ctx),
        Case::Emfile | Case::MaxConns | Case::Sigterm | Case::Sigint | Case::Idle => {
            unreachable!("{case} is not run on the main server by run_main")
        }
    }
}

/// Runs a case that starts a server of its own.
pub(crate) fn run_own(case: Case, managed: &Managed) -> Findings {
    match case {
        Case::Emfile => emfile(managed),
        Case::MaxConns => max_conns(managed),
        Case::Sigterm => stop_with(managed, Signal::SIGTERM),
        Case::Sigint => stop_with(managed, Signal::SIGINT),
        _ => unreachable!("{case} uses the main server"),
    }
}

/// The last `max` bytes of `text` (at a char boundary), one line.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.is_empty() {
        return "(empty)".to_owned();
    }
    let mut from = text.len().saturating_sub(max);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let cut = if from > 0 { "..." } else { "" };
    format!("{cut}{}", &text[from..]).replace('\n', " | ")
}

/// Descriptors of the server's tree once the count has stopped moving (a
/// connection closed by the previous case may still be on its way out).
pub(crate) fn settled_fds(server: &Server) -> usize {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut last = server.tree_usage().fds;
    let mut same = 0;
    while Instant::now() < deadline && same < 3 {
        thread::sleep(Duration::from_millis(30));
        let now = server.tree_usage().fds;
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// A ping that succeeds within `within`, retrying: a server that just had its
/// clients dropped may need a moment to notice.
pub(crate) fn answers_again(addr: SocketAddr, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let payload = b"still there? \x00\xff";
    let mut last = String::new();
    while start.elapsed() < within {
        let left = within
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(100));
        match ping(addr, payload, left.min(ANSWER_WITHIN)) {
            Ok(_) => return Ok(start.elapsed()),
            Err(e) if e.is_timeout() => last = e.to_string(),
            Err(PingError::Mismatch {
                offset,
                expected,
                got,
            }) => {
                return Err(format!(
                    "wrong reply byte {offset}: {got:#04x}, expected {expected:#04x}"
                ))
            }
            Err(e) => {
                last = e.to_string();
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Err(format!(
        "no correct reply within {:.1} s ({last})",
        within.as_secs_f64()
    ))
}

fn ping_findings(f: &mut Findings, what: &str, result: Result<Duration, PingError>) {
    match result {
        Ok(t) => f.note(format!(
            "{what} answered in {:.1} ms",
            t.as_secs_f64() * 1e3
        )),
        Err(e @ PingError::Closed { received: 0, .. }) => f.refuse(format!("{what}: {e}")),
        Err(e) => f.fatal(format!("{what}: {e}")),
    }
}

/// A single connection's failure: a refusal (closed before any reply byte)
/// or fatal.
fn conn_failed(f: &mut Findings, failure: &Failure) {
    if failure.closed_before_reply() {
        f.refuse(failure.to_string());
    } else {
        f.fatal(failure.to_string());
    }
}

fn echo(addr: SocketAddr) -> Findings {
    let mut f = Findings::default();
    ping_findings(
        &mut f,
        "`hello, world`",
        ping(addr, b"hello, world\n", Duration::from_secs(2)),
    );
    f
}

fn all_bytes(addr: SocketAddr) -> Findings {
    let mut f = Findings::default();
    let mut payload: Vec<u8> = (0..=255u8).collect();
    payload.extend((0..=255u8).rev());
    ping_findings(
        &mut f,
        "bytes 0..=255 and back",
        ping(addr, &payload, Duration::from_secs(2)),
    );
    f
}

fn random_8mib(addr: SocketAddr) -> Findings {
    let mut f = Findings::default();
    let len = 8 * MIB;
    let mut conns = vec![Conn::connect(addr, seeded_bytes(0x8_0000, len))
        .random_chunks(0x8_0001, 64 * 1024)
        .close_when_done()];
    let t = Instant::now();
    drive(&mut conns, Duration::from_secs(5), Duration::from_secs(30));
    match conns[0].failure() {
        None => f.note(format!(
            "8 MiB in writes of 1..=65536 bytes verified in {:.2} s",
            t.elapsed().as_secs_f64()
        )),
        Some(failure) => conn_failed(&mut f, failure),
    }
    f
}

fn concurrent_200(addr: SocketAddr) -> Findings {
    let mut f = Findings::default();
    let mut conns: Vec<Conn> = (0..200u64)
        .map(|i| {
            Conn::connect(addr, seeded_bytes(0x200_0000 + i, 64 * 1024))
                .random_chunks(0x200_1000 + i, 16 * 1024)
                .close_when_done()
        })
        .collect();
    let t = Instant::now();
    drive(&mut conns, Duration::from_secs(3), Duration::from_secs(20));
    classify(&mut f, &conns, "client");
    if f.fatal.is_empty() && f.refused.is_empty() && f.limits.is_empty() {
        f.note(format!(
            "200 × 64 KiB verified in {:.2} s",
            t.elapsed().as_secs_f64()
        ));
    }
    f
}

/// Stalls are a limit, a connection closed before any reply byte a
/// refusal, every other failure fatal; one line each, with the first example.
fn classify(f: &mut Findings, conns: &[Conn], what: &str) {
    let mut stalled = Vec::new();
    let mut broken = Vec::new();
    for (i, c) in conns.iter().enumerate() {
        match c.failure() {
            Some(failure @ Failure::Stalled { .. }) => stalled.push((i, failure)),
            Some(failure) if failure.closed_before_reply() => {
                f.refuse(format!("{what} closed by the server before any reply byte"));
            }
            Some(failure) => broken.push((i, failure)),
            None => {}
        }
    }
    if let Some((i, first)) = broken.first() {
        f.fatal(format!(
            "{} of {} {what}s broken; first, {what} {i}: {first}",
            broken.len(),
            conns.len()
        ));
    }
    if let Some((i, first)) = stalled.first() {
        f.limit(format!(
            "{} of {} {what}s stalled; first, {what} {i}: {first}",
            stalled.len(),
            conns.len()
        ));
    }
}

fn half_close(addr: SocketAddr) -> Findings {
    let mut f = Findings::default();
    let mut conns = vec![Conn::connect(addr, seeded_bytes(0x1_0000, MIB))
        .random_chunks(0x1_0001, 64 * 1024)
        .half_close()];
    drive(&mut conns, Duration::from_secs(5), Duration::from_secs(20));
    match conns[0].failure() {
        None => f.note("1 MiB, SHUT_WR, whole reply then EOF"),
        Some(failure) => conn_failed(&mut f, failure),
    }
    f
}

/// How the descriptor count of a server's tree came back (or not).
enum FdsBack {
    /// At most the baseline, after this long.
    Back(Duration),
    /// Still above the baseline when time ran out: the count last seen.
    Above(usize),
    /// The server is gone: nothing to count (its death is reported apart).
    Gone,
}

/// Polls until the tree's descriptor count is at most `baseline`.
fn fds_back_to(server: &Server, baseline: usize, within: Duration) -> FdsBack {
    let start = Instant::now();
    loop {
        let usage = server.tree_usage();
        if usage.processes == 0 {
            return FdsBack::Gone;
        }
        if usage.fds <= baseline {
            return FdsBack::Back(start.elapsed());
        }
        if start.elapsed() >= within {
            return FdsBack::Above(usage.fds);
        }
        thread::sleep(Duration::from_millis(25));
    }
}

fn rst_50(ctx: &mut Ctx) -> Findings {
    let mut f = Findings::default();
    let baseline = ctx.server.as_ref().map(settled_fds);
    // Each client sends 128 KiB and reads nothing: the replies pile up in its
    // receive buffer and the server's send buffer, then RST discards them
    // under the server's feet (its next write gets ECONNRESET or EPIPE).
    let chunk = seeded_bytes(0x50, 128 * 1024);
    let mut streams = Vec::new();
    for i in 0..50 {
        match TcpStream::connect_timeout(&ctx.addr, Duration::from_secs(2)) {
            Ok(s) => streams.push(s),
            Err(e) => {
                f.fatal(format!("connect {i}: {e}"));
                return f;
            }
        }
    }
    let mut sent = 0usize;
    for s in &streams {
        if let Err(e) = s.set_nonblocking(true) {
            f.fatal(format!("fcntl(O_NONBLOCK): {e}"));
            return f;
        }
        let mut w: &TcpStream = s;
        match w.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => f.fatal(format!("write before any reset: {e}")),
        }
    }
    // Time for the server to read and start answering.
    thread::sleep(Duration::from_millis(200));
    for s in streams {
        close_with_rst(s);
    }
    f.note(format!(
        "50 clients sent {} KiB, reset with replies unread",
        sent / 1024
    ));
    match (ctx.server.as_ref(), baseline) {
        (Some(server), Some(baseline)) => {
            match fds_back_to(server, baseline, Duration::from_secs(2)) {
                FdsBack::Back(t) => f.note(format!(
                    "descriptors back to {baseline} in {:.0} ms",
                    t.as_secs_f64() * 1e3
                )),
                FdsBack::Above(now) => f.fatal(format!(
                    "descriptors: {now} after 2 s, {baseline} before the resets ({} leaked)",
                    now - baseline
                )),
                FdsBack::Gone => {}
            }
        }
        _ => f.note("partly: descriptor count not checked (--target: no process to read)"),
    }
    f
}

/// `n` pings at once, each given [`ANSWER_WITHIN`]; a timeout is a limit, a
/// wrong answer fatal. Returns how many were answered, and the slowest.
fn pings_within(
    f: &mut Findings,
    addr: SocketAddr,
    n: u64,
    seed: u64,
    what: &str,
) -> (u64, Duration) {
    let results: Vec<Result<Duration, PingError>> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| s.spawn(move || ping(addr, &seeded_bytes(seed + i, 64), ANSWER_WITHIN)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let (mut slow, mut answered) = (0, 0);
    let mut worst = Duration::ZERO;
    for r in &results {
        match r {
            Ok(t) => {
                answered += 1;
                worst = worst.max(*t);
            }
            Err(e) if e.is_timeout() => slow += 1,
            Err(e) => f.fatal(format!("{what}: {e}")),
        }
    }
    if slow > 0 {
        f.limit(format!("{slow} of {n} {what} not answered within 1 s"));
    }
    (answered, worst)
}

fn slowest(answered: u64, worst: Duration) -> String {
    if answered == 0 {
        String::new()
    } else {
        format!(" (slowest {:.1} ms)", worst.as_secs_f64() * 1e3)
    }
}

fn slowloris(addr: SocketAddr) -> Findings {
    let mut f = Findings::default();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_in = stop.clone();
    // The slow client: one byte every 100 ms, then SHUT_WR; it must get
    // back the transform of every byte it sent, then EOF.
    let slow = thread::spawn(move || -> Result<usize, String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("slow client connect: {e}"))?;
        let mut sent = Vec::new();
        let mut i = 0u8;
        while !stop_in.load(Ordering::Relaxed) {
            let byte = b'a' + i % 26;
            s.write_all(&[byte])
                .map_err(|e| format!("slow client write: {e}"))?;
            sent.push(byte);
            i = i.wrapping_add(1);
            thread::sleep(Duration::from_millis(100));
        }
        s.shutdown(Shutdown::Write)
            .map_err(|e| format!("slow client shutdown(SHUT_WR): {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| format!("setsockopt(SO_RCVTIMEO): {e}"))?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).map_err(|e| {
            format!(
                "slow client: no EOF within 3 s after its FIN ({e}); {} of {} bytes back",
                reply.len(),
                sent.len()
            )
        })?;
        let expected: Vec<u8> = sent.iter().map(|&b| transform(b)).collect();
        if reply != expected {
            let at = reply
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(reply.len().min(expected.len()));
            return Err(format!(
                "slow client: reply differs from offset {at} ({} bytes back, {} sent)",
                reply.len(),
                expected.len()
            ));
        }
        Ok(sent.len())
    });
    // Two waves of 10 while the slow client is mid-request, ~0.5 s apart.
    thread::sleep(Duration::from_millis(300));
    let (a1, w1) = pings_within(&mut f, addr, 10, 0x510_0000, "other clients");
    thread::sleep(Duration::from_millis(500));
    let (a2, w2) = pings_within(&mut f, addr, 10, 0x510_1000, "other clients (second wave)");
    let (answered, worst) = (a1 + a2, w1.max(w2));
    stop.store(true, Ordering::Relaxed);
    match slow.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
        Ok(n) => f.note(format!(
            "{answered} of 20 others answered within 1 s{}; the slow client's {n} bytes echoed",
            slowest(answered, worst)
        )),
        Err(e) => f.fatal(e),
    }
    f
}

fn never_reader(ctx: &mut Ctx) -> Findings {
    let mut f = Findings::default();
    const LIMIT: u64 = 256 * MIB as u64;
    const GROWTH: u64 = 32 * MIB as u64;
    let rss0 = ctx.server.as_ref().map(|s| s.tree_usage().rss_bytes);
    let pattern = Arc::new(seeded_bytes(0xdead, 64 * 1024));
    let stream = match TcpStream::connect_timeout(&ctx.addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => {
            f.fatal(format!("connect: {e}"));
            return f;
        }
    };
    if let Err(e) = stream.set_nonblocking(true) {
        f.fatal(format!("fcntl(O_NONBLOCK): {e}"));
        return f;
    }
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop, pattern) = (written.clone(), stop.clone(), pattern.clone());
        let mut w = match stream.try_clone() {
            Ok(w) => w,
            Err(e) => {
                f.fatal(format!("dup: {e}"));
                return f;
            }
        };
        thread::spawn(move || -> Result<(), String> {
            let fd = w.as_raw_fd();
            while !stop.load(Ordering::Relaxed) && written.load(Ordering::Relaxed) < LIMIT {
                let at = (written.load(Ordering::Relaxed) % pattern.len() as u64) as usize;
                match w.write(&pattern[at..]) {
                    Ok(n) => {
                        written.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let mut pfd = libc::pollfd {
                            fd,
                            events: libc::POLLOUT,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd; a 50 ms wait re-checks `stop`.
                        unsafe { libc::poll(&mut pfd, 1, 50) };
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("never-reader write: {e}")),
                }
            }
            Ok(())
        })
    };
    // Until the server pushes back (no progress for 300 ms) or all 256 MiB
    // went in.
    let mut peak = rss0.unwrap_or(0);
    let sample = |peak: &mut u64, ctx: &Ctx| {
        if let Some(s) = ctx.server.as_ref() {
            *peak = (*peak).max(s.tree_usage().rss_bytes);
        }
    };
    let start = Instant::now();
    let (mut last, mut last_change) = (0u64, Instant::now());
    while start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(50));
        sample(&mut peak, ctx);
        let now = written.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        if now >= LIMIT
            || last_change.elapsed() >= Duration::from_millis(300)
            || writer.is_finished()
        {
            break;
        }
    }
    let stalled_at = written.load(Ordering::Relaxed);
    // Others must be answered while the server sits on this client.
    let (a1, w1) = pings_within(&mut f, ctx.addr, 5, 0x0e_0000, "other clients");
    sample(&mut peak, ctx);
    thread::sleep(Duration::from_millis(200));
    let (a2, w2) = pings_within(&mut f, ctx.addr, 5, 0x0e_1000, "other clients (again)");
    sample(&mut peak, ctx);
    stop.store(true, Ordering::Relaxed);
    if let Err(e) = writer
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    {
        f.fatal(e);
    }
    let total = written.load(Ordering::Relaxed);
    // The reply owed so far must still be right: read (a little of) it back.
    match read_back(&stream, &pattern, MIB, Duration::from_millis(500)) {
        Ok(n) => f.note(format!("first {} KiB of its reply verified", n / 1024)),
        Err(e) => f.fatal(format!("never-reader's reply: {e}")),
    }
    close_with_rst(stream);
    let mib = |b: u64| b as f64 / MIB as f64;
    f.note(format!(
        "wrote {:.1} MiB before the server pushed back{}; {} of 10 others answered within 1 s{}",
        mib(stalled_at),
        if total >= LIMIT { " (never did)" } else { "" },
        a1 + a2,
        slowest(a1 + a2, w1.max(w2))
    ));
    match rss0 {
        Some(rss0) => {
            let growth = peak.saturating_sub(rss0);
            if growth > GROWTH {
                f.fatal(format!(
                    "server RSS grew by {:.1} MiB (limit 32 MiB) while a client wrote {:.1} MiB and read nothing",
                    mib(growth),
                    mib(total)
                ));
            } else {
                f.note(format!("RSS +{:.1} MiB", mib(growth)));
                if total >= LIMIT {
                    f.fatal(format!(
                        "all 256 MiB were taken without back-pressure yet RSS grew only {:.1} MiB: \
                         the reply owed to this client was not kept",
                        mib(growth)
                    ));
                }
            }
        }
        None => f.note("partly: RSS not measured (--target: no process to read)"),
    }
    f
}

/// Reads up to `max` reply bytes (nonblocking, until `quiet` passes with
/// nothing new) and verifies them against the transform of `pattern` repeated.
fn read_back(
    stream: &TcpStream,
    pattern: &[u8],
    max: usize,
    quiet: Duration,
) -> Result<usize, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    let mut last = Instant::now();
    let mut r: &TcpStream = stream;
    while got < max && last.elapsed() < quiet {
        match r.read(&mut buf) {
            Ok(0) => {
                return Err(format!(
                    "EOF after {got} bytes, though the client never closed"
                ))
            }
            Ok(n) => {
                for (i, &b) in buf[..n].iter().enumerate() {
                    let expected = transform(pattern[(got + i) % pattern.len()]);
                    if b != expected {
                        return Err(format!(
                            "first mismatch at reply offset {}: got {b:#04x}, expected {expected:#04x}",
                            got + i
                        ));
                    }
                }
                got += n;
                last = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {got} bytes: {e}")),
        }
    }
    Ok(got)
}

fn conns_2000(ctx: &mut Ctx, nofile: libc::rlim_t) -> Findings {
    let mut f = Findings::default();
    const N: usize = 2000;
    if nofile < N as libc::rlim_t + 64 {
        return Findings::skip(format!(
            "RLIMIT_NOFILE hard limit is {nofile}: cannot hold {N} client sockets"
        ));
    }
    let fdsetsize = ctx.expect(Case::Conns2000).map(|e| e.expect) == Some(Expect::FdSetSize);
    let baseline = ctx.server.as_ref().map(settled_fds);
    let t = Instant::now();
    let mut conns: Vec<Conn> = (0..N as u64)
        .map(|i| Conn::connect(ctx.addr, seeded_bytes(0x2000_0000 + i, 64)).parked())
        .collect();
    // Phase 1: every connection open at once.
    drive(&mut conns, Duration::from_secs(2), Duration::from_secs(10));
    let connected = conns.iter().filter(|c| c.is_connected()).count();
    let t_open = t.elapsed();
    // Phase 2: each does an exchange, and stays open until all are done.
    for c in conns.iter_mut() {
        c.go = true;
    }
    drive(&mut conns, Duration::from_secs(2), Duration::from_secs(15));
    let served = conns.iter().filter(|c| c.is_done()).count();
    let closed: Vec<usize> = (0..N)
        .filter(|&i| conns[i].failure().is_some_and(|x| x.closed_before_reply()))
        .collect();
    let connect_failed = N - connected;
    let stalled = conns
        .iter()
        .filter(|c| {
            c.is_connected() && matches!(c.failure(), Some(super::client::Failure::Stalled { .. }))
        })
        .count();
    let broken: Vec<(usize, String)> = conns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.failure() {
            Some(super::client::Failure::Stalled { .. }) | None => None,
            Some(x) if x.closed_before_reply() => None,
            Some(super::client::Failure::Connect(_)) => None,
            Some(x) => Some((i, x.to_string())),
        })
        .collect();
    let elapsed = t.elapsed();
    drop(conns);

    f.note(format!(
        "{connected} open after {:.2} s; {served} served, {} closed by the server unanswered, {stalled} stalled, {connect_failed} not connected; {:.2} s",
        t_open.as_secs_f64(),
        closed.len(),
        elapsed.as_secs_f64()
    ));
    if let Some((i, first)) = broken.first() {
        f.fatal(format!(
            "{} connections broken; first, connection {i}: {first}",
            broken.len()
        ));
    }
    if served == N {
        return f;
    }
    if fdsetsize {
        // The limit is excused only as the contract describes it.
        let server_fds = baseline.unwrap_or(0);
        let need = 1024usize.saturating_sub(server_fds + 16);
        let warned = ctx
            .server
            .as_ref()
            .is_some_and(|s| s.stderr_so_far().contains("FD_SETSIZE"));
        let alive = ctx.server.as_mut().is_some_and(|s| s.is_alive());
        let mut problems = Vec::new();
        if !alive {
            problems.push("the server did not survive".to_owned());
        }
        if served < need {
            problems.push(format!(
                "only {served} served, but every descriptor below FD_SETSIZE should be (≥ {need}: 1024 minus the server's {server_fds} descriptors, with 16 spare)"
            ));
        }
        if stalled > 0 || connect_failed > 0 {
            problems.push(format!(
                "{stalled} stalled and {connect_failed} not connected: beyond FD_SETSIZE a connection must be closed at once, not left hanging"
            ));
        }
        if !warned {
            problems.push("its stderr never named FD_SETSIZE".to_owned());
        }
        if problems.is_empty() {
            f.limit(format!(
                "{served} served below FD_SETSIZE, {} closed at once, stderr named FD_SETSIZE",
                closed.len()
            ));
        } else {
            f.fatal(format!(
                "FD_SETSIZE limit not kept as the contract says: {}",
                problems.join("; ")
            ));
        }
        return f;
    }
    if !closed.is_empty() {
        f.fatal(format!(
            "{} connections closed by the server before any reply (first: connection {}): their requests were lost",
            closed.len(),
            closed[0]
        ));
    }
    if stalled > 0 || connect_failed > 0 {
        f.limit(format!("not all {N} served while held open at once"));
    }
    f
}

fn descriptors(ctx: &mut Ctx) -> Findings {
    let mut f = Findings::default();
    let (Some(server), Some(start)) = (ctx.server.as_ref(), ctx.start_fds) else {
        return Findings::skip("needs the server's process (--target given)");
    };
    match fds_back_to(server, start, Duration::from_secs(2)) {
        FdsBack::Back(_) => f.note(format!(
            "{} descriptors over {} process(es), as at start",
            server.tree_usage().fds,
            server.tree_usage().processes
        )),
        FdsBack::Above(now) => f.fatal(format!(
            "{now} descriptors after every client closed, {start} at start ({} leaked)",
            now - start
        )),
        FdsBack::Gone => {}
    }
    // A child that just exited holds no descriptor but stays a zombie until
    // its parent's next `waitpid`: give the parent a moment before calling
    // it a leak.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut zombies = server.tree_zombies();
    while !zombies.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        zombies = server.tree_zombies();
    }
    if !zombies.is_empty() {
        f.fatal(format!(
            "unreaped children (zombies) after 1 s: {zombies:?}"
        ));
    }
    f
}

/// CPU share of `server`'s tree over `window` (1.0 = one core), from each
/// live process's exact CPU clock: at 100 Hz ticks a 2 % threshold over
/// 2 s would be 4 ticks, too coarse to tell 1 % from 3 %. (Children reaped
/// meanwhile still count in ticks; an idle server reaps none.)
fn cpu_share(server: &Server, window: Duration) -> io::Result<CpuShare> {
    let before = Snapshot::take(server.pid())?;
    thread::sleep(window);
    let after = Snapshot::take(server.pid())?;
    let elapsed = after.at.duration_since(before.at).as_secs_f64();
    let spent = after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9;
    Ok(CpuShare {
        total: spent / elapsed,
        io_uring_threads: Snapshot::delta(&before, &after)
            .io_uring_threads_cpu_s
            .map(|s| s / elapsed),
    })
}

/// A server's share of a CPU, and how much of it io_uring's kernel threads
/// took (a SQPOLL poller spins in the server's name).
struct CpuShare {
    total: f64,
    io_uring_threads: Option<f64>,
}

impl CpuShare {
    /// The server's own threads' share: io_uring's kernel threads left out.
    fn own(&self) -> f64 {
        (self.total - self.io_uring_threads.unwrap_or(0.0)).max(0.0)
    }

    /// Holds the share to `limit`: past it, the case's limitation (`what`
    /// says which), excusable by the table. Where the table excuses only
    /// io_uring's kernel threads (`Expect::KernelThreads`), the server's
    /// own threads past the limit are a FAIL the table cannot excuse.
    fn judge(&self, limit: f64, expected: Option<Expect>, what: &str, f: &mut Findings) {
        if expected == Some(Expect::KernelThreads) && self.own() >= limit {
            f.fatal(format!(
                "{self}, {:.1} % outside io_uring's kernel threads (limit {:.0} %): {what}",
                self.own() * 100.0,
                limit * 100.0
            ));
        } else if self.total >= limit {
            f.limit(format!("{self} (limit {:.0} %): {what}", limit * 100.0));
        }
    }
}

impl fmt::Display for CpuShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} % of a CPU", self.total * 100.0)?;
        match self.io_uring_threads {
            Some(k) => write!(f, " ({:.1} % in io_uring's kernel threads)", k * 100.0),
            None => Ok(()),
        }
    }
}

pub(crate) fn idle(ctx: &mut Ctx) -> Findings {
    let mut f = Findings::default();
    let Some(server) = ctx.server.as_ref() else {
        return Findings::skip("needs the server's process to read its CPU time (--target given)");
    };
    thread::sleep(Duration::from_millis(300));
    let share = match cpu_share(server, Duration::from_secs(2)) {
        Ok(share) => share,
        Err(e) => {
            f.fatal(format!("reading the server's CPU time from /proc: {e}"));
            return f;
        }
    };
    f.note(format!("{share} over 2 s with no client"));
    let expected = ctx.expect(Case::Idle).map(|e| e.expect);
    share.judge(IDLE_CPU_LIMIT, expected, "CPU with no client", &mut f);
    f
}

/// The most an idle server may use of a CPU: a loop that sleeps in its wait
/// uses next to nothing.
const IDLE_CPU_LIMIT: f64 = 0.02;

/// The most a server may use of a CPU while a flood keeps its descriptor
/// table full: more means accept keeps failing and the loop retries at once.
const EMFILE_CPU_LIMIT: f64 = 0.5;

fn start_own(
    managed: &Managed,
    extra: &[&str],
    nofile: Option<u64>,
    f: &mut Findings,
) -> Option<Server> {
    match managed.start(extra, nofile) {
        Ok(s) => Some(s),
        Err(e) => {
            f.fatal(format!("could not start: {e}"));
            None
        }
    }
}

fn emfile(managed: &Managed) -> Findings {
    let mut f = Findings::default();
    let Some(mut server) = start_own(managed, &[], Some(64), &mut f) else {
        return f;
    };
    let addr = server.addr();
    if let Err(e) = ping(addr, b"before the flood", Duration::from_secs(2)) {
        f.fatal(format!(
            "under RLIMIT_NOFILE 64, not answering before the flood: {e}"
        ));
        return f;
    }
    let mut conns: Vec<Conn> = (0..100u64)
        .map(|_| Conn::connect(addr, Vec::new()).parked())
        .collect();
    drive(&mut conns, Duration::from_secs(1), Duration::from_secs(3));
    let connected = conns.iter().filter(|c| c.is_connected()).count();
    let share = cpu_share(&server, Duration::from_secs(1));
    let alive = server.is_alive();
    for mut c in conns {
        if let Some(s) = c.take_stream() {
            close_with_rst(s);
        }
    }
    let cpu = match &share {
        Ok(share) => share.to_string(),
        Err(e) => format!("CPU not read: {e}"),
    };
    f.note(format!(
        "RLIMIT_NOFILE 64, {connected} of 100 connections held: {cpu}"
    ));
    if !alive {
        let status = server
            .exit_status()
            .map(|s| describe_status(&s))
            .unwrap_or_default();
        f.fatal(format!(
            "the server died under the flood ({status}); stderr: {}",
            tail(&server.stderr_so_far(), 400)
        ));
        return f;
    }
    let share = match share {
        Ok(share) => share,
        Err(e) => {
            f.fatal(format!("reading the server's CPU time from /proc: {e}"));
            return f;
        }
    };
    let what = format!(
        "CPU while the flood keeps the descriptor table full (a loop that retries a failing \
         accept at once spins like this); stderr: {}",
        tail(&server.stderr_so_far(), 300)
    );
    let expected = managed.expect(Case::Emfile).map(|e| e.expect);
    share.judge(EMFILE_CPU_LIMIT, expected, &what, &mut f);
    match answers_again(addr, Duration::from_secs(3)) {
        Ok(t) => f.note(format!(
            "serving again {:.0} ms after the flood closed",
            t.as_secs_f64() * 1e3
        )),
        Err(e) => f.fatal(format!("not serving again after the flood closed: {e}")),
    }
    f
}

fn max_conns(managed: &Managed) -> Findings {
    let mut f = Findings::default();
    // Below the pool's and prefork's default of 4 workers: with N above it,
    // connection N would wait for a worker and the case would test the pool
    // size, not the limit.
    const N: usize = 3;
    let n_text = N.to_string();
    let Some(server) = start_own(managed, &["--max-conns", &n_text], None, &mut f) else {
        return f;
    };
    let addr = server.addr();
    let deadline = || Instant::now() + ANSWER_WITHIN;
    let mut first = Vec::new();
    for i in 0..N {
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => {
                f.fatal(format!("connect {}: {e}", i + 1));
                return f;
            }
        };
        match ping_on(&mut s, &seeded_bytes(0x3000 + i as u64, 100), deadline()) {
            Ok(()) => first.push(s),
            Err(e) if e.is_timeout() => {
                f.limit(format!(
                    "connection {} of {N} not answered within 1 s",
                    i + 1
                ));
                return f;
            }
            Err(e) => {
                f.fatal(format!("connection {} of {N}: {e}", i + 1));
                return f;
            }
        }
    }
    // Connection N+1: accepted and closed at once, so its read ends quickly.
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) => f.note(format!("connection {} refused at connect ({e})", N + 1)),
        Ok(mut extra) => {
            let t = Instant::now();
            let _ = extra.set_read_timeout(Some(ANSWER_WITHIN));
            let mut buf = [0u8; 16];
            match extra.read(&mut buf) {
                Ok(0) => f.note(format!(
                    "connection {} closed (EOF) after {:.1} ms",
                    N + 1,
                    t.elapsed().as_secs_f64() * 1e3
                )),
                Ok(n) => f.fatal(format!("connection {} got {n} unexpected bytes", N + 1)),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    f.limit(format!(
                        "connection {} still open after 1 s: not closed at once",
                        N + 1
                    ))
                }
                Err(e) => f.note(format!(
                    "connection {} reset ({e}) after {:.1} ms",
                    N + 1,
                    t.elapsed().as_secs_f64() * 1e3
                )),
            }
        }
    }
    // The first N are not disturbed.
    for (i, s) in first.iter_mut().enumerate() {
        match ping_on(s, &seeded_bytes(0x3100 + i as u64, 100), deadline()) {
            Ok(()) => {}
            Err(e) if e.is_timeout() => f.limit(format!(
                "connection {} of {N} no longer answered within 1 s",
                i + 1
            )),
            Err(e) => f.fatal(format!("connection {} of {N} disturbed: {e}", i + 1)),
        }
    }
    // One closes: its slot frees, and a new connection is served.
    drop(first.remove(0));
    match answers_again(addr, Duration::from_secs(2)) {
        Ok(_) => f.note("after one of the N closed, a new connection was served"),
        Err(e) => f.fatal(format!(
            "after one of the {N} closed, a new connection was not served: {e}"
        )),
    }
    drop(first);
    f
}

fn stop_with(managed: &Managed, signal: Signal) -> Findings {
    let mut f = Findings::default();
    let Some(mut server) = start_own(managed, &[], None, &mut f) else {
        return f;
    };
    let addr = server.addr();
    // 50 connections, each with a request; the ones the model serves at once
    // get their reply. All stay open across the signal.
    let mut conns: Vec<Conn> = (0..50u64)
        .map(|i| Conn::connect(addr, seeded_bytes(0x5150 + i, 16)))
        .collect();
    drive(
        &mut conns,
        Duration::from_millis(500),
        Duration::from_secs(3),
    );
    let answered = conns.iter().filter(|c| c.is_done()).count() as u64;
    let connected = conns.iter().filter(|c| c.is_connected()).count();
    for (i, c) in conns.iter().enumerate() {
        match c.failure() {
            None | Some(super::client::Failure::Stalled { .. }) => {}
            Some(x) => {
                f.fatal(format!("before the signal, connection {i}: {x}"));
                break;
            }
        }
    }
    let stopped = match server.stop(signal, Duration::from_secs(4)) {
        Ok(s) => s,
        Err(e) => {
            f.fatal(format!("{signal}: {e}"));
            return f;
        }
    };
    drop(conns);
    let secs = stopped.elapsed.as_secs_f64();
    if stopped.timed_out {
        f.fatal(format!("still running 4 s after {signal}: SIGKILLed"));
    } else if stopped.elapsed > STOP_WITHIN {
        f.fatal(format!("exited {secs:.2} s after {signal} (limit 2 s)"));
    }
    if !stopped.timed_out && stopped.status.code() != Some(0) {
        f.fatal(format!(
            "{} after {signal}, not exit 0; stderr: {}",
            describe_status(&stopped.status),
            tail(&stopped.stderr, 400)
        ));
    }
    match &stopped.summary {
        Ok(Some(s)) => check_summary(&mut f, s, managed, answered),
        Ok(None) => f.fatal(format!(
            "no `summary:` line on stderr; stderr: {}",
            tail(&stopped.stderr, 400)
        )),
        Err(e) => f.fatal(e.clone()),
    }
    if !stopped.stdout_after_ready.is_empty() {
        f.fatal(format!(
            "wrote to stdout after the `listening on` line (the contract allows one line): {}",
            tail(&stopped.stdout_after_ready, 200)
        ));
    }
    if !stopped.leftovers.is_empty() {
        let list: Vec<String> = stopped
            .leftovers
            .iter()
            .map(|l| {
                format!(
                    "pid {} ({})",
                    l.pid,
                    if l.state == 'Z' { "zombie" } else { "running" }
                )
            })
            .collect();
        f.fatal(format!("left behind after exit: {}", list.join(", ")));
    }
    f.note(format!(
        "{connected} open, {answered} answered; exited {:.0} ms after the signal",
        secs * 1e3
    ));
    f
}

fn check_summary(f: &mut Findings, s: &Summary, managed: &Managed, answered: u64) {
    // It must name the model; if it names a mode, the one running (a model
    // with a single mode, like `poll`, may name none).
    let ok_model = match s.model.split_once(':') {
        None => s.model == managed.model,
        Some((model, mode)) => {
            model == managed.model && managed.mode.as_deref().is_none_or(|m| m == mode)
        }
    };
    if !ok_model {
        f.fatal(format!(
            "summary says model={}, expected {}{}",
            s.model,
            managed.model,
            managed
                .mode
                .as_ref()
                .map(|m| format!(":{m}"))
                .unwrap_or_default()
        ));
    }
    // Our own pings and health checks count too: at least what we saw served.
    if s.connections < answered {
        f.fatal(format!(
            "summary says connections={}, but {answered} connections were answered",
            s.connections
        ));
    }
    if s.bytes < answered * 16 {
        f.fatal(format!(
            "summary says bytes={}, but {} bytes were echoed to us",
            s.bytes,
            answered * 16
        ));
    }
    if f.fatal.is_empty() {
        f.note(format!(
            "summary: connections={} bytes={} user={:.3}s sys={:.3}s",
            s.connections, s.bytes, s.user_s, s.sys_s
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(total: f64, io_uring_threads: Option<f64>) -> CpuShare {
        CpuShare {
            total,
            io_uring_threads,
        }
    }

    #[test]
    fn a_kernel_threads_entry_excuses_the_poller_and_not_the_loop() {
        let excused = Some(Expect::KernelThreads);
        // The poller spins, the loop sleeps: the limitation shows, excusable.
        let mut f = Findings::default();
        share(0.99, Some(0.98)).judge(0.5, excused, "spins", &mut f);
        assert_eq!((f.limits.len(), f.fatal.len()), (1, 0), "{f:?}");
        // The loop itself spins beside the poller: a FAIL no entry excuses.
        let mut f = Findings::default();
        share(0.99, Some(0.3)).judge(0.5, excused, "spins", &mut f);
        assert_eq!((f.limits.len(), f.fatal.len()), (0, 1), "{f:?}");
        assert!(
            f.fatal[0].contains("69.0 % outside io_uring's kernel threads"),
            "{f:?}"
        );
        // Without such an entry the total is what counts, poller or not.
        let mut f = Findings::default();
        share(0.99, Some(0.98)).judge(0.5, Some(Expect::Limit), "spins", &mut f);
        assert_eq!((f.limits.len(), f.fatal.len()), (1, 0), "{f:?}");
        let mut f = Findings::default();
        share(0.01, None).judge(0.02, None, "idle", &mut f);
        assert_eq!((f.limits.len(), f.fatal.len()), (0, 0), "{f:?}");
    }
}
