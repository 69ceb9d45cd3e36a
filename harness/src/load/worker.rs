//! One load thread: an epoll loop (level-triggered) over its share of the
//! connections, pinned to one CPU.
//!
//! Each connection is a *slot* that outlives its socket: a slot whose
//! connection failed is counted and reconnected after a short back-off
//! (pingpong, connect) or left closed (idle: a drop is what we measure).
//! In steady ping-pong a request costs one `send`, one `recv` and a share
//! of one `epoll_pwait2`, about what the server spends; interest changes
//! (`epoll_ctl`) only happen when a send was short.

use super::errors::{classify, record, ErrorClass};
use super::latency::Recorder;
use super::schedule::{Next, Schedule};
use super::sys::{self, Epoll, PeerState, RawAddr};
use super::{ConnectSpan, LoadSpec, Timeline};
use crate::measurement::{CloseMode, Errors, IdleOutcome, WorkloadKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const ERR_HUP: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
/// Connects in flight at once during setup: a burst of thousands of SYNs
/// would overflow the server's accept queue and turn into 1 s retransmits.
const MAX_CONNECTING: usize = 256;
/// Pause before a failed slot connects again, so a server refusing or
/// resetting everything is not hammered in a tight loop.
const BACKOFF: Duration = Duration::from_millis(10);
/// How often unanswered connects and requests are checked for timeout.
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// Distinct request payloads per thread (each connection cycles through them).
const PAYLOADS: usize = 8;
const READ_BUF: usize = 64 * 1024;
/// Requests up to this size fit one loopback segment.
const NAGLE_SAFE: usize = 32 * 1024;

/// What one thread is given to do.
pub struct Plan {
    pub thread: usize,
    pub cpu: Option<usize>,
    /// Global indices (for the open-loop stagger) of this thread's
    /// ping-pong or connect slots.
    pub active: Vec<usize>,
    pub idle: usize,
}

pub struct WorkerReport {
    pub requests: u64,
    pub latency: Recorder,
    pub errors: Errors,
    pub bytes_verified: u64,
    pub cpu_user: Duration,
    pub cpu_sys: Duration,
    pub idle: IdleOutcome,
    pub sources: [u64; 4],
    pub ports_exhausted: u64,
    /// Open loop: requests scheduled before the window's end but not
    /// answered by then (their latencies, as lower bounds, are in `latency`).
    pub openloop_missed: u64,
    /// Connect workload: each connection completed in the window.
    pub spans: Vec<ConnectSpan>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// Ping-pong, closed or open loop.
    Active,
    /// Held open after one request (idle workload).
    Idle,
    /// Connect, one request, reply, close, again (connect workload).
    Crr,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// No socket: waiting to (re)connect.
    Closed,
    Connecting,
    /// Connected, waiting for the window's go.
    Ready,
    /// Request partly written (EPOLLOUT wanted).
    Sending,
    /// Request written, reply incomplete.
    Receiving,
    /// Open loop: reply complete, next request not due yet.
    Waiting,
    /// Idle connection answered once, held open.
    Parked,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Send,
    Reconnect,
}

struct Slot {
    role: Role,
    global: usize,
    fd: Option<OwnedFd>,
    /// Bumped per socket, carried in the epoll token, so an event or timer
    /// meant for a closed socket is never applied to its successor.
    gen: u32,
    state: State,
    interest: u32,
    /// Index of the next request on this slot (open-loop schedule, payload).
    k: u64,
    payload: usize,
    written: usize,
    verified: usize,
    /// Where this request's latency counts from.
    origin: Instant,
    /// Connect workload: when the connection's `socket()` was called, on
    /// `CLOCK_MONOTONIC` (its span's start).
    origin_ns: u64,
    /// Since when we wait for the peer (connect or reply), for timeouts.
    since: Instant,
    timed_out: bool,
    /// Reply bytes verified on this connection (for the mismatch report).
    stream_off: u64,
    /// Setup: connected (active) or answered/failed (idle) at least once.
    resolved: bool,
    served: bool,
    dropped: Option<PeerState>,
}

pub struct Worker {
    spec: LoadSpec,
    target: RawAddr,
    ep: Epoll,
    slots: Vec<Slot>,
    requests: Vec<Vec<u8>>,
    replies: Vec<Vec<u8>>,
    buf: Vec<u8>,
    events: Vec<libc::epoll_event>,
    timers: BinaryHeap<Reverse<(Instant, usize, u32, Timer)>>,
    pending: VecDeque<usize>,
    connecting: usize,
    unresolved: usize,
    next_scan: Instant,
    schedule: Option<Schedule>,
    timeline: Option<Timeline>,
    in_window: bool,
    requests_done: u64,
    spans: Vec<ConnectSpan>,
    latency: Recorder,
    errors: Errors,
    bytes_verified: u64,
    spread: bool,
    next_source: u8,
    sources: [u64; 4],
    ports_exhausted: u64,
}

fn token(idx: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | idx as u64
}

/// Request payloads: seeded random bytes (all 256 values occur) whose first
/// byte is a lowercase letter, so every request exercises the transform.
fn payloads(size: usize, seed: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let requests: Vec<Vec<u8>> = (0..PAYLOADS)
        .map(|_| {
            let mut p: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
            if let Some(b) = p.first_mut() {
                *b = b'a' + rng.gen_range(0..26);
            }
            p
        })
        .collect();
    let replies = requests
        .iter()
        .map(|r| r.iter().map(|b| b.to_ascii_uppercase()).collect())
        .collect();
    (requests, replies)
}

impl Worker {
    pub fn new(spec: LoadSpec, plan: &Plan) -> io::Result<Worker> {
        let now = Instant::now();
        let role = match spec.kind {
            WorkloadKind::Connect => Role::Crr,
            WorkloadKind::Pingpong | WorkloadKind::Idle => Role::Active,
        };
        let slot = |role, global| Slot {
            role,
            global,
            fd: None,
            gen: 0,
            state: State::Closed,
            interest: 0,
            k: 0,
            payload: 0,
            written: 0,
            verified: 0,
            origin: now,
            origin_ns: 0,
            since: now,
            timed_out: false,
            stream_off: 0,
            resolved: role == Role::Crr,
            served: false,
            dropped: None,
        };
        let mut slots: Vec<Slot> = plan.active.iter().map(|&g| slot(role, g)).collect();
        slots.extend((0..plan.idle).map(|i| slot(Role::Idle, usize::MAX - i)));
        let (requests, replies) = payloads(spec.size, spec.seed ^ plan.thread as u64);
        let schedule = match (spec.kind, spec.rate) {
            (WorkloadKind::Connect, _) | (_, None) => None,
            (_, Some(r)) => Some(Schedule::new(r, spec.conns).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad rate {r}"))
            })?),
        };
        Ok(Worker {
            target: RawAddr::new(&spec.target),
            ep: Epoll::new()?,
            unresolved: slots.iter().filter(|s| !s.resolved).count(),
            slots,
            requests,
            replies,
            buf: vec![0; READ_BUF],
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
            timers: BinaryHeap::new(),
            pending: VecDeque::new(),
            connecting: 0,
            next_scan: now + SCAN_EVERY,
            schedule,
            timeline: None,
            in_window: false,
            requests_done: 0,
            spans: Vec::new(),
            latency: Recorder::new()?,
            errors: Errors::default(),
            bytes_verified: 0,
            spread: false,
            next_source: 2u8.wrapping_add(plan.thread as u8 % 200),
            sources: [0; 4],
            ports_exhausted: 0,
            spec,
        })
    }

    /// Setup, then the handshake with the coordinator (`ready`, then the
    /// timeline on `go`), then the timed run. `ready` is always sent, even
    /// after a setup error, so the coordinator never waits forever.
    pub fn run(
        mut self,
        thread: usize,
        ready: Sender<usize>,
        go: Receiver<Timeline>,
        hold: Receiver<()>,
    ) -> io::Result<WorkerReport> {
        let setup = self.setup();
        let _ = ready.send(thread);
        drop(ready);
        setup?;
        let tl = go.recv().map_err(|_| {
            io::Error::new(
                io::ErrorKind::Interrupted,
                "load: run abandoned before start",
            )
        })?;
        self.timeline = Some(tl);
        self.start(tl.epoch)?;
        let mut cpu0 = None;
        loop {
            let boundary = if self.in_window {
                tl.window_end
            } else {
                tl.window_start
            };
            let now = self.step(boundary)?;
            if !self.in_window && now >= tl.window_start {
                cpu0 = Some(sys::thread_cpu()?);
                self.in_window = true;
            }
            if now >= tl.window_end {
                break;
            }
        }
        let (u1, s1) = sys::thread_cpu()?;
        let (u0, s0) = cpu0.unwrap_or((u1, s1));
        let openloop_missed = self.count_missed(tl);
        let idle = self.final_idle_check();
        // Connections stay open until `Running::join` (bounded, in case the
        // caller never joins): see `Running::hold`.
        let _ = hold.recv_timeout(Duration::from_secs(30));
        self.close_all();
        Ok(WorkerReport {
            requests: self.requests_done,
            latency: self.latency,
            errors: self.errors,
            bytes_verified: self.bytes_verified,
            cpu_user: u1.saturating_sub(u0),
            cpu_sys: s1.saturating_sub(s0),
            idle,
            sources: self.sources,
            ports_exhausted: self.ports_exhausted,
            openloop_missed,
            spans: self.spans,
        })
    }

    /// Open loop, at the window's end: every request that was due before
    /// it but not answered — the one in flight and those never sent, since
    /// a connection has one request outstanding — is counted and its
    /// latency recorded as `window_end - scheduled`, a lower bound (as
    /// wrk2 does). Without this a server that cannot keep up would show
    /// only the requests it managed to answer.
    fn count_missed(&mut self, tl: Timeline) -> u64 {
        let Some(sched) = self.schedule else {
            return 0;
        };
        let end_ns = u64::try_from((tl.window_end - tl.epoch).as_nanos()).unwrap_or(u64::MAX);
        let period = Duration::from_nanos(sched.slot_period_ns());
        let mut missed = 0;
        for s in self.slots.iter().filter(|s| s.role == Role::Active) {
            if matches!(s.state, State::Sending | State::Receiving) && s.origin < tl.window_end {
                missed += 1;
                self.latency.record(tl.window_end - s.origin);
            }
            let n = sched.due_before(s.global, s.k, end_ns);
            if n > 0 {
                let first = tl.epoch + Duration::from_nanos(sched.send_time_ns(s.global, s.k));
                self.latency
                    .record_descending(tl.window_end - first, period, n);
                missed += n;
            }
        }
        missed
    }

    /// Connects every ping-pong and idle slot (idle ones also get their one
    /// request answered) before the clock starts.
    fn setup(&mut self) -> io::Result<()> {
        self.pending = (0..self.slots.len())
            .filter(|&i| self.slots[i].role != Role::Crr)
            .collect();
        let far = Instant::now() + Duration::from_secs(3600);
        self.start_pending(Instant::now())?;
        while self.unresolved > 0 {
            self.step(far)?;
        }
        Ok(())
    }

    /// The window's go: ping-pong slots send their first request (or
    /// schedule it), connect slots start connecting.
    fn start(&mut self, epoch: Instant) -> io::Result<()> {
        let now = Instant::now();
        for idx in 0..self.slots.len() {
            match (self.slots[idx].role, self.slots[idx].state) {
                (Role::Active, State::Ready) => self.next_request(idx, now, epoch)?,
                (Role::Crr, _) => self.connect(idx, now)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// One wait (until `deadline` at the latest), its events, due timers,
    /// timeouts and pending connects. Returns the time after the work.
    fn step(&mut self, deadline: Instant) -> io::Result<Instant> {
        let now = Instant::now();
        let mut wake = deadline.min(self.next_scan);
        if let Some(Reverse((at, ..))) = self.timers.peek() {
            wake = wake.min(*at);
        }
        let n = self
            .ep
            .wait(&mut self.events, wake.saturating_duration_since(now))?;
        for i in 0..n {
            let ev = self.events[i];
            let (tok, flags) = (ev.u64, ev.events);
            self.dispatch(tok, flags)?;
        }
        let now = Instant::now();
        self.fire_timers(now)?;
        if now >= self.next_scan {
            self.scan_timeouts(now)?;
            self.next_scan = now + SCAN_EVERY;
        }
        self.start_pending(now)?;
        Ok(now)
    }

    fn dispatch(&mut self, tok: u64, flags: u32) -> io::Result<()> {
        let idx = (tok & 0xffff_ffff) as usize;
        let gen = (tok >> 32) as u32;
        match self.slots.get(idx) {
            Some(s) if s.gen == gen && s.fd.is_some() => {}
            _ => return Ok(()),
        }
        if self.slots[idx].state == State::Connecting {
            return self.on_connect_ready(idx);
        }
        if flags & (IN | ERR_HUP) != 0 {
            self.on_readable(idx)?;
        }
        let s = &self.slots[idx];
        if flags & OUT != 0 && s.gen == gen && s.state == State::Sending {
            self.write_more(idx)?;
        }
        Ok(())
    }

    fn fire_timers(&mut self, now: Instant) -> io::Result<()> {
        while let Some(Reverse((at, idx, gen, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let s = &self.slots[idx];
            if s.gen != gen {
                continue;
            }
            match (kind, s.state) {
                (Timer::Send, State::Waiting) => {
                    let epoch = self.timeline.map_or(now, |t| t.epoch);
                    self.next_request(idx, now, epoch)?;
                }
                (Timer::Reconnect, State::Closed) => self.connect(idx, now)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn start_pending(&mut self, now: Instant) -> io::Result<()> {
        while self.connecting < MAX_CONNECTING {
            let Some(idx) = self.pending.pop_front() else {
                break;
            };
            self.connect(idx, now)?;
        }
        Ok(())
    }

    fn set_state(&mut self, idx: usize, state: State) {
        let s = &mut self.slots[idx];
        if s.state == State::Connecting {
            self.connecting -= 1;
        }
        if state == State::Connecting {
            self.connecting += 1;
        }
        s.state = state;
    }

    fn set_interest(&mut self, idx: usize, interest: u32) -> io::Result<()> {
        let s = &mut self.slots[idx];
        if s.interest == interest {
            return Ok(());
        }
        if let Some(fd) = &s.fd {
            self.ep
                .modify(fd.as_raw_fd(), interest, token(idx, s.gen))?;
        }
        s.interest = interest;
        Ok(())
    }

    fn resolve(&mut self, idx: usize) {
        let s = &mut self.slots[idx];
        if !s.resolved {
            s.resolved = true;
            self.unresolved -= 1;
        }
    }

    /// Source addresses over 127.0.0.2-254, used once the kernel ran out of
    /// local ports for one (source, destination) pair.
    fn pick_source(&mut self) -> Ipv4Addr {
        let b = self.next_source;
        self.next_source = if b >= 254 { 2 } else { b + 1 };
        self.sources[usize::from(b) / 64] |= 1 << (b % 64);
        Ipv4Addr::new(127, 0, 0, b)
    }

    fn connect(&mut self, idx: usize, now: Instant) -> io::Result<()> {
        let can_spread = matches!(self.spec.target.ip(), IpAddr::V4(ip) if ip.is_loopback());
        // One attempt per source address at most: past that the ports are
        // really gone and it is an error.
        let crr = self.slots[idx].role == Role::Crr;
        // A connect-workload request goes out in one write and one segment
        // (loopback MSS is ~64 KiB): Nagle cannot delay it, so the syscall
        // that turns it off is saved.
        let nodelay = !crr || self.spec.size > NAGLE_SAFE;
        // Before the socket exists: the server may accept it before
        // connect() returns here (the handshake completes inside the call).
        let start_ns = if crr { sys::monotonic_ns() } else { 0 };
        for _ in 0..=253 {
            let fd = match sys::tcp_socket(&self.spec.target, nodelay) {
                Ok(fd) => fd,
                Err(e) => return self.fail(idx, classify(&e), "socket", &e, now),
            };
            if crr && self.spec.close == CloseMode::Rst {
                if let Err(e) = sys::set_linger_zero(fd.as_raw_fd()) {
                    return self.fail(idx, ErrorClass::Other, "setsockopt(SO_LINGER)", &e, now);
                }
            }
            if self.spread {
                let src = self.pick_source();
                if let Err(e) = sys::bind_source(fd.as_raw_fd(), src) {
                    return self.fail(idx, ErrorClass::Other, "bind(127.0.0.x)", &e, now);
                }
            }
            let done = match sys::connect(fd.as_raw_fd(), &self.target) {
                Ok(done) => done,
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && can_spread => {
                    self.ports_exhausted += 1;
                    self.spread = true;
                    continue;
                }
                Err(e) => return self.fail(idx, classify(&e), "connect", &e, now),
            };
            let s = &mut self.slots[idx];
            s.gen = s.gen.wrapping_add(1);
            s.since = now;
            s.origin = now;
            s.origin_ns = start_ns;
            s.timed_out = false;
            s.stream_off = 0;
            // Connect workload: over loopback the SYN, SYN-ACK and ACK are
            // processed inside this connect() (softirq in this thread), so
            // the socket is usually established when EINPROGRESS returns and
            // the request is sent at once. If not, the send gets EAGAIN
            // (SYN_SENT) and waits for EPOLLOUT; a refused connect shows as
            // the send's or recv's ECONNREFUSED. This saves the
            // getsockopt(SO_ERROR) and an epoll_ctl(MOD) per connection.
            let now_usable = done || crr;
            s.interest = if now_usable { IN } else { OUT };
            self.ep.add(fd.as_raw_fd(), s.interest, token(idx, s.gen))?;
            s.fd = Some(fd);
            if now_usable {
                self.set_state(idx, State::Ready);
                return self.on_connected(idx, now);
            }
            self.set_state(idx, State::Connecting);
            return Ok(());
        }
        let e = io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        self.fail(idx, ErrorClass::Other, "connect", &e, now)
    }

    fn on_connect_ready(&mut self, idx: usize) -> io::Result<()> {
        let now = Instant::now();
        let Some(fd) = &self.slots[idx].fd else {
            return Ok(());
        };
        match sys::take_socket_error(fd.as_raw_fd()) {
            Ok(None) => {
                self.set_state(idx, State::Ready);
                self.set_interest(idx, IN)?;
                self.on_connected(idx, now)
            }
            Ok(Some(e)) | Err(e) => self.fail(idx, classify(&e), "connect", &e, now),
        }
    }

    fn on_connected(&mut self, idx: usize, now: Instant) -> io::Result<()> {
        match self.slots[idx].role {
            Role::Active => {
                self.resolve(idx);
                match self.timeline {
                    Some(tl) => self.next_request(idx, now, tl.epoch),
                    None => Ok(()),
                }
            }
            Role::Idle => self.start_request(idx, now, now),
            // Connect latency counts from connect().
            Role::Crr => {
                let origin = self.slots[idx].origin;
                self.start_request(idx, now, origin)
            }
        }
    }

    /// Closed loop: send at once. Open loop: send if due (latency from the
    /// scheduled time), else wait for the timer.
    fn next_request(&mut self, idx: usize, now: Instant, epoch: Instant) -> io::Result<()> {
        let Some(sched) = self.schedule else {
            return self.start_request(idx, now, now);
        };
        let s = &self.slots[idx];
        let now_ns =
            u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
        match sched.next(s.global, s.k, now_ns) {
            Next::SendNow { scheduled_ns } => {
                self.start_request(idx, now, epoch + Duration::from_nanos(scheduled_ns))
            }
            Next::WaitUntil(t) => {
                let gen = s.gen;
                self.set_state(idx, State::Waiting);
                self.timers.push(Reverse((
                    epoch + Duration::from_nanos(t),
                    idx,
                    gen,
                    Timer::Send,
                )));
                Ok(())
            }
        }
    }

    fn start_request(&mut self, idx: usize, now: Instant, origin: Instant) -> io::Result<()> {
        let s = &mut self.slots[idx];
        s.payload = (s.global.wrapping_add(s.k as usize)) % PAYLOADS;
        s.k += 1;
        s.written = 0;
        s.verified = 0;
        s.origin = origin;
        s.since = now;
        s.timed_out = false;
        self.set_state(idx, State::Sending);
        self.write_more(idx)
    }

    fn write_more(&mut self, idx: usize) -> io::Result<()> {
        let s = &mut self.slots[idx];
        let Some(fd) = &s.fd else {
            return Ok(());
        };
        let req = &self.requests[s.payload];
        while s.written < req.len() {
            match sys::send(fd.as_raw_fd(), &req[s.written..]) {
                Ok(n) => s.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.set_interest(idx, IN | OUT);
                }
                Err(e) => return self.fail(idx, classify(&e), "send", &e, Instant::now()),
            }
        }
        self.set_state(idx, State::Receiving);
        self.set_interest(idx, IN)
    }

    fn on_readable(&mut self, idx: usize) -> io::Result<()> {
        loop {
            let s = &mut self.slots[idx];
            let Some(fd) = &s.fd else {
                return Ok(());
            };
            let n = match sys::recv(fd.as_raw_fd(), &mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let class = classify(&e);
                    if s.role == Role::Idle && class == ErrorClass::Reset {
                        return self.drop_idle(idx, PeerState::Reset);
                    }
                    return self.fail(idx, class, "recv", &e, Instant::now());
                }
            };
            if n == 0 {
                if s.role == Role::Idle {
                    return self.drop_idle(idx, PeerState::Eof);
                }
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {} of {} reply bytes", s.verified, self.spec.size),
                );
                return self.fail(idx, ErrorClass::Short, "recv", &e, Instant::now());
            }
            let expected: &[u8] = match s.state {
                State::Sending | State::Receiving => &self.replies[s.payload][s.verified..],
                _ => &[],
            };
            let got = &self.buf[..n];
            let bad = got
                .iter()
                .zip(expected)
                .position(|(g, e)| g != e)
                .or((n > expected.len()).then_some(expected.len()));
            if let Some(at) = bad {
                let msg = format!(
                    "connection {}: reply stream offset {}: expected {}, got {:#04x}",
                    s.global,
                    s.stream_off + at as u64,
                    expected
                        .get(at)
                        .map_or("nothing (no request pending)".to_string(), |b| format!(
                            "{b:#04x}"
                        )),
                    got[at]
                );
                let e = io::Error::new(io::ErrorKind::InvalidData, msg);
                return self.fail(idx, ErrorClass::Mismatch, "verify", &e, Instant::now());
            }
            s.verified += n;
            s.stream_off += n as u64;
            self.bytes_verified += n as u64;
            if s.verified == self.spec.size {
                return self.on_reply(idx);
            }
            if n < self.buf.len() {
                // A short read drained the socket; level triggering reports
                // the rest, so no extra recv just to see EAGAIN.
                return Ok(());
            }
        }
    }

    fn on_reply(&mut self, idx: usize) -> io::Result<()> {
        let now = Instant::now();
        let s = &mut self.slots[idx];
        if let Some(tl) = self.timeline {
            if now >= tl.window_start && now < tl.window_end && s.role != Role::Idle {
                self.requests_done += 1;
                self.latency.record(now.saturating_duration_since(s.origin));
                if s.role == Role::Crr {
                    self.spans.push(ConnectSpan {
                        start_ns: s.origin_ns,
                        end_ns: sys::monotonic_ns(),
                    });
                }
            }
        }
        match s.role {
            Role::Active => {
                let epoch = self.timeline.map_or(now, |t| t.epoch);
                self.next_request(idx, now, epoch)
            }
            Role::Idle => {
                s.served = true;
                self.set_state(idx, State::Parked);
                self.resolve(idx);
                Ok(())
            }
            Role::Crr => {
                self.close(idx);
                self.connect(idx, now)
            }
        }
    }

    /// Counts the error, closes the connection, and schedules a reconnect
    /// (ping-pong, connect) or gives the slot up (idle).
    fn fail(
        &mut self,
        idx: usize,
        class: ErrorClass,
        call: &str,
        e: &io::Error,
        now: Instant,
    ) -> io::Result<()> {
        let global = self.slots[idx].global;
        record(&mut self.errors, class, || {
            if self.slots[idx].role == Role::Idle {
                format!("{call} (idle connection): {e}")
            } else {
                format!("{call} (connection {global}): {e}")
            }
        });
        self.close(idx);
        self.resolve(idx);
        let s = &self.slots[idx];
        if s.role != Role::Idle {
            self.timers
                .push(Reverse((now + BACKOFF, idx, s.gen, Timer::Reconnect)));
        }
        Ok(())
    }

    fn drop_idle(&mut self, idx: usize, how: PeerState) -> io::Result<()> {
        self.slots[idx].dropped = Some(how);
        self.close(idx);
        self.resolve(idx);
        Ok(())
    }

    /// Closes the slot's socket (closing it removes it from the epoll set:
    /// it was never dup'ed). Connect slots in `rst` mode have SO_LINGER 0
    /// set since creation.
    fn close(&mut self, idx: usize) {
        self.set_state(idx, State::Closed);
        let s = &mut self.slots[idx];
        s.fd = None;
        s.interest = 0;
    }

    /// Connects and requests waiting past the timeout. A late reply is
    /// counted once and still awaited (it may come, and its latency is real);
    /// a connect that never completed is given up.
    fn scan_timeouts(&mut self, now: Instant) -> io::Result<()> {
        let limit = self.spec.timeout;
        for idx in 0..self.slots.len() {
            let s = &self.slots[idx];
            if now.saturating_duration_since(s.since) < limit {
                continue;
            }
            match s.state {
                State::Connecting => {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("not connected after {limit:?}"),
                    );
                    self.fail(idx, ErrorClass::Timeout, "connect", &e, now)?;
                }
                State::Sending | State::Receiving if !s.timed_out => {
                    if s.role == Role::Crr {
                        let e = io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no reply after {limit:?}"),
                        );
                        self.fail(idx, ErrorClass::Timeout, "recv", &e, now)?;
                    } else {
                        self.slots[idx].timed_out = true;
                        self.errors.timeout += 1;
                        self.resolve(idx);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// At the end: every idle connection still open is asked (MSG_PEEK,
    /// nothing consumed) whether the server closed or reset it meanwhile.
    fn final_idle_check(&mut self) -> IdleOutcome {
        let mut out = IdleOutcome::default();
        for idx in 0..self.slots.len() {
            if self.slots[idx].role != Role::Idle {
                continue;
            }
            out.requested += 1;
            if let Some(fd) = &self.slots[idx].fd {
                match sys::peek_state(fd.as_raw_fd()) {
                    PeerState::Open => {}
                    PeerState::Eof => self.slots[idx].dropped = Some(PeerState::Eof),
                    PeerState::Reset => self.slots[idx].dropped = Some(PeerState::Reset),
                    PeerState::Data => {
                        if self.slots[idx].state == State::Parked {
                            self.errors.mismatch += 1;
                            self.errors.first_mismatch.get_or_insert_with(|| {
                                "idle connection: bytes arrived that nobody asked for".into()
                            });
                        }
                    }
                    PeerState::Error(e) => record(&mut self.errors, ErrorClass::Other, || {
                        format!("recv(MSG_PEEK) (idle connection): {e}")
                    }),
                }
            }
            let s = &self.slots[idx];
            if s.served {
                out.served += 1;
            } else {
                out.unserved += 1;
            }
            match s.dropped {
                Some(PeerState::Eof) => out.dropped_eof += 1,
                Some(PeerState::Reset) => out.dropped_rst += 1,
                _ => {}
            }
        }
        out
    }

    /// Every socket left is closed with RST, so a run leaves no TIME_WAIT
    /// behind to exhaust local ports for the next one.
    fn close_all(&mut self) {
        for s in &mut self.slots {
            if let Some(fd) = s.fd.take() {
                let _ = sys::set_linger_zero(fd.as_raw_fd());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_start_lowercase_and_replies_are_the_transform() {
        let (req, rep) = payloads(300, 7);
        assert_eq!(req.len(), PAYLOADS);
        for (q, p) in req.iter().zip(&rep) {
            assert!(q[0].is_ascii_lowercase());
            assert_eq!(p[0], q[0] - 32);
            for (a, b) in q.iter().zip(p) {
                let want = if a.is_ascii_lowercase() { a - 32 } else { *a };
                assert_eq!(*b, want);
            }
        }
        // seeded: the same seed gives the same bytes, another seed others
        assert_eq!(payloads(300, 7).0, req);
        assert_ne!(payloads(300, 8).0, req);
    }

    #[test]
    fn token_round_trips_index_and_generation() {
        let t = token(123_456, 0xdead_beef);
        assert_eq!((t & 0xffff_ffff) as usize, 123_456);
        assert_eq!((t >> 32) as u32, 0xdead_beef);
    }
}
