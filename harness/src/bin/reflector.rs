//! reflector — the cheapest echo server the lab can write, to measure the
//! load generator against: whatever latency and client CPU per request
//! `harness run reflector` shows is the instrument's own floor.
//!
//! One thread; every socket O_NONBLOCK; `epoll_wait` with timeout 0 in a
//! loop (busy polling: the server never sleeps, so no wake-up of its own is
//! in any latency). A request costs one `recv` and one `send`. It burns its
//! whole CPU by design, so its CPU per request means nothing.
//! Keeps the lab's contract: `listening on ADDR`, echo with a-z → A-Z,
//! half-close honoured, at most 1 MiB owed per connection (then it stops
//! reading that one), SIGINT/SIGTERM → the one-line summary, exit 0.
//! Run: `harness run reflector --rate 10000 --conns 100`

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use harness::load::sys::{self, Epoll};

/// A connection stops being read while this much reply is owed.
const MAX_OWED: usize = 1 << 20;
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;
const IN: u32 = libc::EPOLLIN as u32;

#[derive(Parser)]
#[command(
    version,
    about = "Busy-polling echo server: the load generator's floor"
)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Accepted for the lab's contract; the reflector has one mode.
    #[arg(long)]
    mode: Option<String>,
    /// Connections served at once; beyond it a new one is closed at once.
    #[arg(long)]
    max_conns: Option<usize>,
}

struct Conn {
    stream: TcpStream,
    owed: Vec<u8>,
    /// The peer shut its write side: close once nothing is owed.
    eof: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match serve(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reflector: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGINT and SIGTERM blocked and read from a signalfd, so a signal is one
/// more readable descriptor in the busy loop.
fn signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: all-zero is a valid sigset_t, filled by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for the three calls; SIGPIPE is
    // ignored so a write to a reset peer is EPIPE, not death.
    let fd = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::other("pthread_sigmask(SIG_BLOCK)"));
        }
        libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
    };
    if fd < 0 {
        return Err(sys::named("signalfd", io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn serve(cli: &Cli) -> io::Result<()> {
    let signals = signal_fd()?;
    let listener = TcpListener::bind(cli.addr).map_err(|e| sys::named("bind", e))?;
    listener.set_nonblocking(true)?;
    let ep = Epoll::new()?;
    ep.add(listener.as_raw_fd(), IN, LISTENER)?;
    ep.add(signals.as_raw_fd(), IN, SIGNALS)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_token = 0u64;
    let (mut served, mut bytes) = (0u64, 0u64);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Timeout 0: returns at once; the loop is the wait.
        let n = ep.wait(&mut events, Duration::ZERO)?;
        for ev in &events[..n] {
            match ev.u64 {
                LISTENER => loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            served += 1;
                            if cli.max_conns.is_some_and(|max| conns.len() >= max) {
                                continue; // dropped: closed at once
                            }
                            stream.set_nonblocking(true)?;
                            stream.set_nodelay(true)?;
                            next_token += 1;
                            ep.add(stream.as_raw_fd(), IN, next_token)?;
                            let conn = Conn {
                                stream,
                                owed: Vec::new(),
                                eof: false,
                            };
                            conns.insert(next_token, conn);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // ECONNABORTED, EMFILE, EINTR...: try again next turn.
                        Err(_) => break,
                    }
                },
                SIGNALS => {
                    summary(served, bytes);
                    return Ok(());
                }
                token => {
                    let Some(conn) = conns.get_mut(&token) else {
                        continue;
                    };
                    if conn.owed.len() < MAX_OWED && !conn.eof {
                        on_readable(conn, &mut buf, &mut bytes);
                    }
                }
            }
        }
        // Owed replies (a short send) and finished connections.
        conns.retain(|_, conn| {
            if !conn.owed.is_empty() {
                flush(conn);
            }
            !(conn.eof && conn.owed.is_empty())
        });
    }
}

/// One `recv`, transformed in place, one `send`; what the send left owed.
/// An error drops the connection (marked as at EOF with nothing owed).
fn on_readable(conn: &mut Conn, buf: &mut [u8], bytes: &mut u64) {
    match conn.stream.read(buf) {
        Ok(0) => conn.eof = true,
        Ok(n) => {
            buf[..n].make_ascii_uppercase();
            *bytes += n as u64;
            if conn.owed.is_empty() {
                match conn.stream.write(&buf[..n]) {
                    Ok(w) => conn.owed.extend_from_slice(&buf[w..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        conn.owed.extend_from_slice(&buf[..n])
                    }
                    Err(_) => drop_conn(conn),
                }
            } else {
                conn.owed.extend_from_slice(&buf[..n]);
            }
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
        Err(_) => drop_conn(conn),
    }
}

fn flush(conn: &mut Conn) {
    match conn.stream.write(&conn.owed) {
        Ok(w) => {
            conn.owed.drain(..w);
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
        Err(_) => drop_conn(conn),
    }
}

/// ECONNRESET, EPIPE and the like: this connection only is given up.
fn drop_conn(conn: &mut Conn) {
    conn.owed.clear();
    conn.eof = true;
}

fn summary(connections: u64, bytes: u64) {
    // SAFETY: all-zero is a valid rusage, filled by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` outlives the call; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    eprintln!(
        "summary: model=reflector connections={connections} bytes={bytes} user={:.3}s sys={:.3}s",
        secs(ru.ru_utime),
        secs(ru.ru_stime)
    );
}
