//! What the kernel promises about signal-driven I/O on a TCP socket,
//! asserted with raw syscalls, and the model's answer to a full real-time
//! signal queue, asserted through the server.
//!
//! The model relies on each of these: an `F_SETSIG` signal names the socket
//! (`si_fd`) and the event (`si_band`), one queued signal per event; plain
//! SIGIO names nothing and merges events, so plain mode must sweep; a signal
//! comes on a change, not while data stays unread, so a sweep reads until
//! `EAGAIN`; a FIN queues a signal of its own, so rt mode may stop at a
//! short read.
//!
//! The signals here are read from a `signalfd` (the kernel's own copy of the
//! siginfo fields, named) and directed at the test's own thread with
//! `F_SETOWN_EX`: the test harness runs other threads, and a signal directed
//! at the process could go to one that does not block it and kill us all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// `<asm-generic/fcntl.h>`; the `libc` crate does not define these for glibc.
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;

/// `struct f_owner_ex` of fcntl(2).
#[repr(C)]
struct OwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// `si_code` of a signal the kernel raised for a socket that has data
/// (`<asm-generic/siginfo.h>`).
const POLL_IN: i32 = 1;

/// How long a signal that is coming may take, and how long we wait to be
/// sure that one is not.
const COMES_WITHIN: Duration = Duration::from_secs(2);
const QUIET_FOR: Duration = Duration::from_millis(200);

fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    server.set_nonblocking(true).expect("O_NONBLOCK");
    (client, server)
}

fn fcntl(fd: RawFd, cmd: libc::c_int, arg: libc::c_long) {
    // SAFETY: the commands used here take an integer argument.
    let rc = unsafe { libc::fcntl(fd, cmd, arg) };
    assert!(rc >= 0, "fcntl({cmd}): {}", std::io::Error::last_os_error());
}

/// Arms `fd` as the model does, but directs its signals at this thread;
/// `signal` 0 leaves plain SIGIO.
fn arm(fd: RawFd, signal: libc::c_int) {
    let owner = OwnerEx {
        kind: F_OWNER_TID,
        // SAFETY: gettid has no preconditions.
        pid: unsafe { libc::gettid() },
    };
    // SAFETY: F_SETOWN_EX reads one live `struct f_owner_ex`.
    let rc = unsafe { libc::fcntl(fd, F_SETOWN_EX, &owner as *const OwnerEx) };
    assert_eq!(rc, 0, "F_SETOWN_EX: {}", std::io::Error::last_os_error());
    if signal != 0 {
        fcntl(fd, F_SETSIG, signal as libc::c_long);
    }
    fcntl(
        fd,
        libc::F_SETFL,
        (libc::O_NONBLOCK | libc::O_ASYNC) as libc::c_long,
    );
}

/// Signals blocked in this thread and read from a signalfd.
struct Caught {
    fd: OwnedFd,
}

impl Caught {
    /// Blocks `signals` in the calling thread; anything already pending is
    /// discarded (a thread may run several tests).
    fn block(signals: &[libc::c_int]) -> Caught {
        // SAFETY: all-zero is a valid sigset_t, initialised by sigemptyset.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a live sigset_t in each call.
        unsafe {
            libc::sigemptyset(&mut set);
            for &sig in signals {
                assert_eq!(libc::sigaddset(&mut set, sig), 0);
            }
        }
        // SAFETY: `set` is initialised; the old mask is not asked for.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "pthread_sigmask");
        // SAFETY: `set` is initialised; -1 asks for a new descriptor.
        let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        assert!(raw >= 0, "signalfd: {}", std::io::Error::last_os_error());
        // SAFETY: a new descriptor that nothing else owns.
        let caught = Caught {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        };
        while caught.next(Duration::ZERO).is_some() {}
        caught
    }

    /// The next signal, waiting at most `within`.
    fn next(&self, within: Duration) -> Option<libc::signalfd_siginfo> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, within.as_millis() as i32) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        if n == 0 {
            return None;
        }
        // SAFETY: all-zero is a valid signalfd_siginfo.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is writable for `len` bytes.
        let got = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                len,
            )
        };
        assert_eq!(got, len as isize, "read(signalfd)");
        Some(info)
    }

    /// Every signal that arrives until none has for `QUIET_FOR`.
    fn all(&self) -> Vec<libc::signalfd_siginfo> {
        let mut all = Vec::new();
        while let Some(info) = self.next(QUIET_FOR) {
            all.push(info);
        }
        all
    }
}

/// The real-time signal these tests use.
fn rt_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

#[test]
fn rt_signal_names_the_socket_and_its_band() {
    let caught = Caught::block(&[rt_signal(), libc::SIGIO]);
    let (mut client_a, server_a) = tcp_pair();
    let (mut client_b, server_b) = tcp_pair();
    arm(server_a.as_raw_fd(), rt_signal());
    arm(server_b.as_raw_fd(), rt_signal());
    for (client, server) in [(&mut client_b, &server_b), (&mut client_a, &server_a)] {
        client.write_all(b"x").expect("write");
        let info = caught.next(COMES_WITHIN).expect("a signal for the write");
        assert_eq!(info.ssi_signo as i32, rt_signal());
        assert_eq!(info.ssi_code, POLL_IN, "the event, set by the kernel");
        assert_eq!(info.ssi_fd, server.as_raw_fd(), "the socket that has data");
        let band = info.ssi_band as libc::c_short;
        assert_ne!(band & libc::POLLIN, 0, "si_band {band:#x}");
    }
}

#[test]
fn rt_signals_queue_one_per_event_in_order() {
    let caught = Caught::block(&[rt_signal(), libc::SIGIO]);
    let (client_a, server_a) = tcp_pair();
    let (client_b, server_b) = tcp_pair();
    arm(server_a.as_raw_fd(), rt_signal());
    arm(server_b.as_raw_fd(), rt_signal());
    for client in [&client_a, &client_b, &client_a] {
        let mut client: &TcpStream = client;
        client.write_all(b"x").expect("write");
        // Each write its own segment: no coalescing on the way.
        thread::sleep(Duration::from_millis(20));
    }
    let fds: Vec<RawFd> = caught.all().iter().map(|info| info.ssi_fd).collect();
    let (a, b) = (server_a.as_raw_fd(), server_b.as_raw_fd());
    assert_eq!(fds, [a, b, a], "three events, three queued signals");
}

#[test]
fn plain_sigio_merges_events_and_names_no_socket() {
    let caught = Caught::block(&[libc::SIGIO]);
    let (mut client_a, server_a) = tcp_pair();
    let (mut client_b, server_b) = tcp_pair();
    arm(server_a.as_raw_fd(), 0);
    arm(server_b.as_raw_fd(), 0);
    client_a.write_all(b"x").expect("write");
    client_b.write_all(b"y").expect("write");
    thread::sleep(Duration::from_millis(20));
    let all = caught.all();
    assert_eq!(all.len(), 1, "a standard signal is pending at most once");
    let info = &all[0];
    assert_eq!(info.ssi_signo as i32, libc::SIGIO);
    assert_eq!(
        info.ssi_code,
        libc::SI_KERNEL,
        "sent as a bare kernel signal"
    );
    assert_eq!(
        info.ssi_fd, 0,
        "no descriptor: which socket, it does not say"
    );
    assert_eq!(info.ssi_band, 0, "no event either");
}

#[test]
fn a_signal_comes_on_arrival_not_while_data_stays_unread() {
    let caught = Caught::block(&[rt_signal(), libc::SIGIO]);
    let (mut client, server) = tcp_pair();
    arm(server.as_raw_fd(), rt_signal());
    client.write_all(b"first").expect("write");
    assert!(caught.next(COMES_WITHIN).is_some(), "the arrival signals");
    assert!(
        caught.next(QUIET_FOR).is_none(),
        "the data is still unread, and nothing reminds us of it"
    );
    client.write_all(b"second").expect("write");
    let info = caught.next(COMES_WITHIN).expect("new data signals again");
    assert_eq!(info.ssi_fd, server.as_raw_fd());
}

#[test]
fn a_fin_queues_a_signal_of_its_own_after_the_data() {
    let caught = Caught::block(&[rt_signal(), libc::SIGIO]);
    let (mut client, mut server) = tcp_pair();
    arm(server.as_raw_fd(), rt_signal());
    client.write_all(b"last words").expect("write");
    thread::sleep(Duration::from_millis(20));
    client.shutdown(Shutdown::Write).expect("shutdown");
    thread::sleep(Duration::from_millis(20));
    let first = caught.next(COMES_WITHIN).expect("the data's signal");
    assert_eq!(first.ssi_fd, server.as_raw_fd());
    let mut buf = [0u8; 64];
    let n = server.read(&mut buf).expect("read the data");
    assert_eq!(&buf[..n], b"last words", "a short read: all the data");
    let later = caught.all();
    assert!(
        !later.is_empty() && later.iter().all(|i| i.ssi_fd == server.as_raw_fd()),
        "the FIN behind the data is announced by a signal still queued"
    );
    assert_eq!(server.read(&mut buf).expect("read EOF"), 0);
}

/// Concurrent clients against a server whose real-time queue holds almost
/// nothing.
const OVERFLOW_CLIENTS: usize = 64;
const OVERFLOW_ROUNDS: usize = 50;
const OVERFLOW_MESSAGE: usize = 512;
/// Pending signals allowed to the server's user while it runs (the count
/// is per user: other processes' pending signals count too, which can only
/// make overflows more frequent).
const SIGPENDING_LIMIT: libc::rlim_t = 4;

/// A child that is killed and reaped if the test fails before it exits.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn rt_queue_overflow_falls_back_to_a_poll_sweep_and_loses_nothing() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigio"));
    cmd.args(["--addr", "127.0.0.1:0", "--mode", "rt"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure makes one raw system call
    // on a constant; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: SIGPENDING_LIMIT,
                rlim_max: SIGPENDING_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_SIGPENDING, &limit) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut server = Reaped(cmd.spawn().expect("spawn sigio"));
    let child = &mut server.0;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let clients: Vec<_> = (0..OVERFLOW_CLIENTS)
        .map(|c| {
            let addr = addr.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let message: Vec<u8> = (0..OVERFLOW_MESSAGE)
                    .map(|i| b'a' + ((i + c) % 26) as u8)
                    .collect();
                let expected = message.to_ascii_uppercase();
                let mut reply = vec![0u8; OVERFLOW_MESSAGE];
                for round in 0..OVERFLOW_ROUNDS {
                    stream.write_all(&message).expect("write");
                    stream
                        .read_exact(&mut reply)
                        .unwrap_or_else(|e| panic!("client {c} round {round}: {e}"));
                    assert_eq!(reply, expected, "client {c} round {round}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every client got every reply");
    }

    // SAFETY: signalling our own child, which we have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let started = Instant::now();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(2), "{stderr}");

    let total = (OVERFLOW_CLIENTS * OVERFLOW_ROUNDS * OVERFLOW_MESSAGE) as u64;
    assert!(
        stderr.contains(&format!("connections={OVERFLOW_CLIENTS} bytes={total} ")),
        "every byte echoed: {stderr}"
    );
    assert!(
        stderr.contains("real-time signal queue overflowed (RLIMIT_SIGPENDING)"),
        "the overflow was seen when it happened: {stderr}"
    );
    let overflows: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sigio: real-time signal queue overflows: "))
        .unwrap_or_else(|| panic!("no overflow count: {stderr}"))
        .parse()
        .expect("a count");
    assert!(overflows >= 1, "{stderr}");
}
