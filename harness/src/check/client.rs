//! The suite's clients: seeded streams, a blocking one-shot `ping`, and a
//! `poll(2)` driver that runs any number of connections at once from one
//! thread, verifying every reply byte as it arrives.
//!
//! The transform is written here again on purpose: the suite must not trust
//! the code it checks (`lab::echo`).

use crate::load::sys::{self, RawAddr};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The contract's echo transform: ASCII `a`-`z` to `A`-`Z`, nothing else.
pub fn transform(byte: u8) -> u8 {
    if byte.is_ascii_lowercase() {
        byte - (b'a' - b'A')
    } else {
        byte
    }
}

/// `len` bytes from a ChaCha8 stream seeded with `seed`: every byte value,
/// lowercase letters included, and the same bytes on every run.
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// A TCP connect to `addr` started without blocking (`SOCK_NONBLOCK`); it
/// completes when the socket becomes writable. A full accept queue makes the
/// kernel drop our SYN and retry it (1 s, 3 s, ...), which a blocking
/// `connect` would wait out one connection at a time.
pub fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let fd = sys::tcp_socket(&addr, false)
        .map_err(|e| io::Error::new(e.kind(), format!("socket(): {e}")))?;
    let stream = TcpStream::from(fd);
    sys::connect(stream.as_raw_fd(), &RawAddr::new(&addr))
        .map_err(|e| io::Error::new(e.kind(), format!("connect({addr}): {e}")))?;
    Ok(stream)
}

/// `SO_LINGER {on, 0}`: the next `close` sends RST and discards whatever is
/// unsent or unread, instead of a FIN.
pub fn set_linger_zero(stream: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a valid option value of the given size for the call.
    let ret = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if ret == -1 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("setsockopt(SO_LINGER 0): {e}"),
        ));
    }
    Ok(())
}

/// Closes with RST (see [`set_linger_zero`]).
pub fn close_with_rst(stream: TcpStream) {
    // If SO_LINGER cannot be set the close is a FIN: still a close.
    let _ = set_linger_zero(&stream);
    drop(stream);
}

/// Why a ping got no (correct) answer.
#[derive(Debug)]
pub enum PingError {
    /// No full reply within the time allowed: the server is slow or stalled.
    Timeout { received: usize },
    /// A reply byte differed from the transform of the byte sent.
    Mismatch {
        offset: usize,
        expected: u8,
        got: u8,
    },
    /// The server closed (FIN) or reset before the whole reply.
    Closed { received: usize, how: String },
    /// Connect or another I/O error.
    Io(String),
}

impl std::fmt::Display for PingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PingError::Timeout { received } => {
                write!(f, "no full reply in time ({received} bytes received)")
            }
            PingError::Mismatch {
                offset,
                expected,
                got,
            } => {
                write!(
                    f,
                    "reply byte {offset} is {got:#04x}, expected {expected:#04x}"
                )
            }
            PingError::Closed { received, how } => {
                write!(f, "connection {how} after {received} reply bytes")
            }
            PingError::Io(e) => f.write_str(e),
        }
    }
}

impl PingError {
    /// A timeout is the server being slow; anything else is a wrong answer.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PingError::Timeout { .. })
    }
}

fn is_timeout_kind(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Connects, sends `payload`, reads its whole reply and verifies it, all
/// within `timeout`; returns the time it took.
pub fn ping(addr: SocketAddr, payload: &[u8], timeout: Duration) -> Result<Duration, PingError> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        if is_timeout_kind(&e) {
            PingError::Timeout { received: 0 }
        } else {
            PingError::Io(format!("connect({addr}): {e}"))
        }
    })?;
    ping_on(&mut stream, payload, start + timeout)?;
    Ok(start.elapsed())
}

/// Sends `payload` on an open connection and verifies its whole reply by
/// `deadline`.
pub fn ping_on(stream: &mut TcpStream, payload: &[u8], deadline: Instant) -> Result<(), PingError> {
    let remaining = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| PingError::Io(format!("{what}: deadline passed")))
    };
    let set = |stream: &TcpStream, d: Duration| {
        stream
            .set_write_timeout(Some(d))
            .and_then(|()| stream.set_read_timeout(Some(d)))
            .map_err(|e| PingError::Io(format!("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO): {e}")))
    };
    set(stream, remaining("write")?)?;
    // Small payloads fit in the socket buffers: writing all before reading
    // cannot deadlock.
    stream.write_all(payload).map_err(|e| {
        if is_timeout_kind(&e) {
            PingError::Timeout { received: 0 }
        } else {
            PingError::Closed {
                received: 0,
                how: format!("failed on write ({e})"),
            }
        }
    })?;
    let mut received = 0;
    let mut buf = [0u8; 4096];
    while received < payload.len() {
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Err(PingError::Timeout { received });
        };
        set(stream, left)?;
        let want = (payload.len() - received).min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(PingError::Closed {
                    received,
                    how: "closed by the server (EOF)".into(),
                })
            }
            Ok(n) => {
                for (i, &got) in buf[..n].iter().enumerate() {
                    let expected = transform(payload[received + i]);
                    if got != expected {
                        return Err(PingError::Mismatch {
                            offset: received + i,
                            expected,
                            got,
                        });
                    }
                }
                received += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout_kind(&e) => return Err(PingError::Timeout { received }),
            Err(e) => {
                return Err(PingError::Closed {
                    received,
                    how: format!("failed ({e})"),
                })
            }
        }
    }
    Ok(())
}

/// How a driven connection ended badly.
#[derive(Debug, Clone)]
pub enum Failure {
    Connect(String),
    /// A reply byte differed (or came beyond the end of the request stream).
    Mismatch {
        offset: usize,
        expected: Option<u8>,
        got: u8,
    },
    /// EOF before the whole reply.
    Eof {
        received: usize,
    },
    /// ECONNRESET/EPIPE or another error, before the whole reply.
    Reset {
        received: usize,
        error: String,
    },
    /// No progress until the driver gave up.
    Stalled {
        sent: usize,
        received: usize,
    },
}

impl Failure {
    /// Whether the server dropped the connection before sending any reply
    /// byte (what `select` does to a descriptor >= FD_SETSIZE, and
    /// `--max-conns` to connection N+1).
    pub fn closed_before_reply(&self) -> bool {
        matches!(
            self,
            Failure::Eof { received: 0 } | Failure::Reset { received: 0, .. }
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect failed: {e}"),
            Failure::Mismatch {
                offset,
                expected: Some(expected),
                got,
            } => write!(
                f,
                "first mismatch at reply offset {offset}: got {got:#04x}, expected {expected:#04x}"
            ),
            Failure::Mismatch {
                offset,
                expected: None,
                got,
            } => write!(
                f,
                "extra reply byte {got:#04x} at offset {offset}, beyond what was sent"
            ),
            Failure::Eof { received } => {
                write!(f, "EOF from the server after {received} reply bytes")
            }
            Failure::Reset { received, error } => {
                write!(f, "{error} after {received} reply bytes")
            }
            Failure::Stalled { sent, received } => {
                write!(
                    f,
                    "stalled: {sent} bytes sent, {received} reply bytes received"
                )
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    /// Connected; waits for `go` before sending.
    Parked,
    Exchanging,
    /// Whole reply received; waiting for the server's EOF (half-close).
    AwaitEof,
    Done,
    Failed,
}

/// One connection driven by [`drive`]: it sends `data` (in fixed or seeded
/// random chunk sizes), reads and verifies the reply as it arrives, and
/// optionally shuts down its write side and waits for EOF.
pub struct Conn {
    stream: Option<TcpStream>,
    data: Vec<u8>,
    sent: usize,
    received: usize,
    stage: Stage,
    chunk_rng: Option<ChaCha8Rng>,
    max_chunk: usize,
    half_close: bool,
    close_when_done: bool,
    /// Exchanging may start once connected.
    pub go: bool,
    connected: bool,
    failure: Option<Failure>,
}

impl Conn {
    /// A connection to `addr` (started now, not blocking) that will send `data`.
    pub fn connect(addr: SocketAddr, data: Vec<u8>) -> Conn {
        let (stream, stage, failure) = match start_connect(addr) {
            Ok(s) => (Some(s), Stage::Connecting, None),
            Err(e) => (None, Stage::Failed, Some(Failure::Connect(e.to_string()))),
        };
        Conn {
            stream,
            data,
            sent: 0,
            received: 0,
            stage,
            chunk_rng: None,
            max_chunk: 64 * 1024,
            half_close: false,
            close_when_done: false,
            go: true,
            connected: false,
            failure,
        }
    }

    /// Writes of random sizes in `1..=max` drawn from a seeded generator.
    pub fn random_chunks(mut self, seed: u64, max: usize) -> Conn {
        self.chunk_rng = Some(ChaCha8Rng::seed_from_u64(seed));
        self.max_chunk = max.max(1);
        self
    }

    /// After sending everything: `shutdown(SHUT_WR)`, and after the whole
    /// reply expect EOF (and nothing more).
    pub fn half_close(mut self) -> Conn {
        self.half_close = true;
        self
    }

    /// Close the socket as soon as the reply is verified.
    pub fn close_when_done(mut self) -> Conn {
        self.close_when_done = true;
        self
    }

    /// Connected, but not to send until `go` is set.
    pub fn parked(mut self) -> Conn {
        self.go = false;
        self
    }

    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Whether its connect completed (it may have failed since).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    pub fn take_stream(&mut self) -> Option<TcpStream> {
        self.stream.take()
    }

    /// A stalled connection stays open (the caller decides when it
    /// closes: a stall may be a server's limit that the case goes on
    /// observing); any other failure closes it.
    fn fail(&mut self, failure: Failure) {
        self.stage = Stage::Failed;
        if !matches!(failure, Failure::Stalled { .. }) {
            self.stream = None;
        }
        self.failure = Some(failure);
    }

    fn finish(&mut self) {
        self.stage = Stage::Done;
        if self.close_when_done {
            self.stream = None;
        }
    }

    /// Whether `drive` has something left to wait for on this connection.
    fn active(&self) -> bool {
        match self.stage {
            Stage::Connecting | Stage::Exchanging | Stage::AwaitEof => true,
            Stage::Parked => self.go,
            Stage::Done | Stage::Failed => false,
        }
    }

    fn interest(&self) -> libc::c_short {
        match self.stage {
            Stage::Connecting => libc::POLLOUT,
            Stage::Parked if self.go => libc::POLLOUT,
            Stage::Exchanging if self.sent < self.data.len() => libc::POLLIN | libc::POLLOUT,
            Stage::Exchanging | Stage::AwaitEof => libc::POLLIN,
            _ => 0,
        }
    }

    /// Handles readiness; returns whether anything moved.
    fn on_ready(&mut self, revents: libc::c_short) -> bool {
        let Some(stream) = self.stream.as_ref() else {
            return false;
        };
        let mut progress = false;
        if self.stage == Stage::Connecting {
            if revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) == 0 {
                return false;
            }
            match stream.take_error() {
                Ok(None) => {
                    self.stage = Stage::Parked;
                    self.connected = true;
                    progress = true;
                }
                Ok(Some(e)) | Err(e) => {
                    self.fail(Failure::Connect(e.to_string()));
                    return true;
                }
            }
        }
        if self.stage == Stage::Parked {
            if !self.go {
                return progress;
            }
            self.stage = Stage::Exchanging;
            if self.data.is_empty() {
                self.after_sent();
            }
        }
        if self.stage == Stage::Exchanging && self.sent < self.data.len() {
            progress |= self.write_some();
        }
        if matches!(self.stage, Stage::Exchanging | Stage::AwaitEof)
            && revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0
        {
            progress |= self.read_some();
        }
        progress
    }

    fn write_some(&mut self) -> bool {
        let mut progress = false;
        for _ in 0..16 {
            let Some(mut stream) = self.stream.as_ref() else {
                return progress;
            };
            let chunk = match &mut self.chunk_rng {
                Some(rng) => rng.gen_range(1..=self.max_chunk),
                None => self.max_chunk,
            };
            let end = (self.sent + chunk).min(self.data.len());
            match stream.write(&self.data[self.sent..end]) {
                Ok(n) => {
                    self.sent += n;
                    progress = true;
                    if self.sent == self.data.len() {
                        self.after_sent();
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return progress,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(Failure::Reset {
                        received: self.received,
                        error: format!("write: {e}"),
                    });
                    return true;
                }
            }
        }
        progress
    }

    fn after_sent(&mut self) {
        if self.half_close {
            if let Some(stream) = &self.stream {
                if let Err(e) = stream.shutdown(Shutdown::Write) {
                    let received = self.received;
                    self.fail(Failure::Reset {
                        received,
                        error: format!("shutdown(SHUT_WR): {e}"),
                    });
                    return;
                }
            }
        }
        self.check_complete();
    }

    fn check_complete(&mut self) {
        if self.stage == Stage::Exchanging
            && self.received == self.data.len()
            && self.sent == self.data.len()
        {
            if self.half_close {
                self.stage = Stage::AwaitEof;
            } else {
                self.finish();
            }
        }
    }

    fn read_some(&mut self) -> bool {
        let mut buf = [0u8; 64 * 1024];
        let mut progress = false;
        for _ in 0..16 {
            let Some(mut stream) = self.stream.as_ref() else {
                return progress;
            };
            match stream.read(&mut buf) {
                Ok(0) => {
                    if self.stage == Stage::AwaitEof {
                        self.finish();
                    } else {
                        let received = self.received;
                        self.fail(Failure::Eof { received });
                    }
                    return true;
                }
                Ok(n) => {
                    progress = true;
                    for (i, &got) in buf[..n].iter().enumerate() {
                        let offset = self.received + i;
                        let expected = self.data.get(offset).map(|&b| transform(b));
                        if expected != Some(got) {
                            self.fail(Failure::Mismatch {
                                offset,
                                expected,
                                got,
                            });
                            return true;
                        }
                    }
                    self.received += n;
                    self.check_complete();
                    if !matches!(self.stage, Stage::Exchanging | Stage::AwaitEof) {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return progress,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let received = self.received;
                    self.fail(Failure::Reset {
                        received,
                        error: format!("read: {e}"),
                    });
                    return true;
                }
            }
        }
        progress
    }
}

/// Runs every connection until each is done, failed, or parked (connected,
/// `go == false`); gives up after `stall` without any progress or `cap` in
/// all, marking the unfinished ones `Stalled`.
pub fn drive(conns: &mut [Conn], stall: Duration, cap: Duration) {
    let start = Instant::now();
    let mut last_progress = Instant::now();
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(conns.len());
    let mut index: Vec<usize> = Vec::with_capacity(conns.len());
    loop {
        fds.clear();
        index.clear();
        for (i, conn) in conns.iter().enumerate() {
            if conn.active() {
                if let Some(stream) = &conn.stream {
                    fds.push(libc::pollfd {
                        fd: stream.as_raw_fd(),
                        events: conn.interest(),
                        revents: 0,
                    });
                    index.push(i);
                }
            }
        }
        if fds.is_empty() {
            return;
        }
        let now = Instant::now();
        if now.duration_since(last_progress) >= stall || now.duration_since(start) >= cap {
            for &i in &index {
                let (sent, received) = (conns[i].sent, conns[i].received);
                conns[i].fail(Failure::Stalled { sent, received });
            }
            return;
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // poll only fails on EINTR, ENOMEM or a bad array: give up on all.
            for &i in &index {
                let received = conns[i].received;
                conns[i].fail(Failure::Reset {
                    received,
                    error: format!("poll({} fds): {e}", fds.len()),
                });
            }
            return;
        }
        for (fd, &i) in fds.iter().zip(&index) {
            if fd.revents != 0 && conns[i].on_ready(fd.revents) {
                last_progress = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_changes_only_lowercase_ascii() {
        let changed: Vec<(u8, u8)> = (0..=255u8)
            .filter(|&b| transform(b) != b)
            .map(|b| (b, transform(b)))
            .collect();
        let expected: Vec<(u8, u8)> = (b'a'..=b'z').zip(b'A'..=b'Z').collect();
        assert_eq!(changed, expected);
    }

    #[test]
    fn seeded_streams_repeat_and_differ_by_seed() {
        assert_eq!(seeded_bytes(7, 1000), seeded_bytes(7, 1000));
        assert_ne!(seeded_bytes(7, 1000), seeded_bytes(8, 1000));
    }
}
