//! The measurements `harness claims` takes besides `harness run` and
//! `harness phases`: idle CPU, whether a client is answered beside a
//! misbehaving one, and micro-measurements of the kernel (thread hand-off,
//! fork, zombies, `select` beyond `FD_SETSIZE`).

use crate::account::procfs::{thread_ids, tree_pids};
use crate::account::Snapshot;
use crate::load::sys;
use crate::server::{ModelSpec, Server, ServerConfig};
use nix::sys::signal::Signal;
use std::fs;
use std::hint::black_box;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

fn start(spec: &ModelSpec, args: &[String]) -> io::Result<Server> {
    sys::raise_nofile_limit()?;
    Server::start(&ServerConfig::for_spec(spec, args)?)
}

fn stop(mut server: Server) -> io::Result<()> {
    server
        .stop(Signal::SIGTERM, Duration::from_secs(2))
        .map(drop)
}

fn connect(server: &Server) -> io::Result<TcpStream> {
    TcpStream::connect(server.addr())
        .map_err(|e| io::Error::new(e.kind(), format!("connect {}: {e}", server.addr())))
}

/// One request on `stream`, its reply awaited up to `timeout`: the
/// milliseconds it took, or `None` if no full reply came in time.
fn ping(stream: &mut TcpStream, timeout: Duration) -> io::Result<Option<f64>> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| sys::named("setsockopt(SO_RCVTIMEO)", e))?;
    let t0 = Instant::now();
    stream
        .write_all(b"ping\n")
        .map_err(|e| sys::named("send", e))?;
    let mut reply = [0u8; 5];
    match stream.read_exact(&mut reply) {
        Ok(()) if &reply == b"PING\n" => Ok(Some(t0.elapsed().as_secs_f64() * 1e3)),
        Ok(()) => Err(io::Error::other(format!("reply {reply:?} is not PING"))),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
        Err(e) => Err(sys::named("recv", e)),
    }
}

/// What a server did with one second in which nobody sent anything.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IdleUse {
    /// CPU time used, as a share of one CPU.
    pub cpu: f64,
    /// Time on a CPU or runnable waiting for one (`/proc/PID/task/*/
    /// schedstat`), as a share of one CPU: what it would use on a machine
    /// of its own. On a shared machine `cpu` alone understates a spinner.
    pub runnable: f64,
}

/// Nanoseconds on a CPU plus nanoseconds runnable on a run queue, over
/// every thread of the tree.
fn runnable_ns(root: i32) -> u64 {
    tree_pids(root)
        .unwrap_or_default()
        .iter()
        .flat_map(|pid| thread_ids(*pid).into_iter().map(move |tid| (*pid, tid)))
        .filter_map(|(pid, tid)| {
            let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
            let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
            Some(fields.next()?? + fields.next()??)
        })
        .sum()
}

/// How much of a CPU the server uses while `idle` connections are open and
/// nobody sends anything, over one second (after a settling pause).
pub fn idle_use(spec: &ModelSpec, idle: usize) -> io::Result<IdleUse> {
    let server = start(spec, &[])?;
    let conns: Vec<TcpStream> = (0..idle)
        .map(|_| connect(&server))
        .collect::<io::Result<_>>()?;
    thread::sleep(Duration::from_millis(300));
    let before = Snapshot::take(server.pid())?;
    let runnable_before = runnable_ns(server.pid());
    thread::sleep(Duration::from_secs(1));
    let after = Snapshot::take(server.pid())?;
    let runnable_after = runnable_ns(server.pid());
    drop(conns);
    stop(server)?;
    let span = after.at.duration_since(before.at).as_secs_f64();
    Ok(IdleUse {
        cpu: (after.cpu_s() - before.cpu_s()) / span,
        runnable: runnable_after.saturating_sub(runnable_before) as f64 / 1e9 / span,
    })
}

/// How a misbehaving client holds its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hog {
    /// Connects and sends nothing.
    Silent,
    /// Sends until its own socket buffer is full and never reads a reply.
    NotReading,
}

/// Whether a second client is answered within one second while the hog
/// holds its connection: the milliseconds, or `None`.
pub fn answered_beside(spec: &ModelSpec, hog: Hog) -> io::Result<Option<f64>> {
    let server = start(spec, &[])?;
    let mut hog_conn = connect(&server)?;
    if hog == Hog::NotReading {
        hog_conn
            .set_nonblocking(true)
            .map_err(|e| sys::named("fcntl(O_NONBLOCK)", e))?;
        let chunk = vec![b'x'; 64 << 10];
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut stalled_since: Option<Instant> = None;
        // Until the kernel refuses more for 200 ms: the server has stopped
        // reading (its reply buffer is full, back-pressure) or is stuck.
        while Instant::now() < deadline {
            match hog_conn.write(&chunk) {
                Ok(_) => stalled_since = None,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(200) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(sys::named("send (hog)", e)),
            }
        }
    } else {
        // Let the server take the hog first (an iterative server then
        // serves it alone).
        thread::sleep(Duration::from_millis(100));
    }
    let mut probe = connect(&server)?;
    let answered = ping(&mut probe, Duration::from_secs(1))?;
    drop(probe);
    drop(hog_conn);
    stop(server)?;
    Ok(answered)
}

/// Nanoseconds each thread of the tree has spent on a CPU
/// (`/proc/PID/task/TID/schedstat`, first field).
fn run_ns_by_thread(root: i32) -> Vec<(i32, u64)> {
    tree_pids(root)
        .unwrap_or_default()
        .iter()
        .flat_map(|pid| thread_ids(*pid).into_iter().map(move |tid| (*pid, tid)))
        .filter_map(|(pid, tid)| {
            let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
            Some((tid, text.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// Requests each connection of [`threads_serving`] sends.
const SERVING_ROUNDS: usize = 200;

/// The server's threads, and how many of them ran while `conns`
/// connections were served [`SERVING_ROUNDS`] requests each (a thread that
/// only waits for signals, or an idle main thread, does not run).
pub fn threads_serving(spec: &ModelSpec, conns: usize) -> io::Result<(usize, usize)> {
    let server = start(spec, &[])?;
    let mut open = Vec::with_capacity(conns);
    for _ in 0..conns {
        open.push(connect(&server)?);
    }
    thread::sleep(Duration::from_millis(100));
    let before = run_ns_by_thread(server.pid());
    for _ in 0..SERVING_ROUNDS {
        for c in &mut open {
            if ping(c, Duration::from_secs(2))?.is_none() {
                return Err(io::Error::other("no reply within 2 s"));
            }
        }
    }
    let after = run_ns_by_thread(server.pid());
    let ran = after
        .iter()
        .filter(|(tid, ns)| {
            let was = before.iter().find(|(t, _)| t == tid).map_or(0, |(_, n)| *n);
            *ns > was
        })
        .count();
    drop(open);
    stop(server)?;
    Ok((after.len(), ran))
}

/// What a zombie holds, read from `/proc` while it is one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Zombie {
    /// `/proc/PID/stat` state was `Z` before `waitpid`.
    pub was_zombie: bool,
    /// `VmRSS` of the zombie, KiB (0 when the line is absent: no memory).
    pub rss_kib: u64,
    /// Entries of `/proc/PID/fd` (0 when unreadable: no descriptor table).
    pub fds: usize,
    /// `/proc/PID` gone once the parent waited.
    pub gone_after_wait: bool,
}

/// Forks a child that exits at once, looks at it before and after `waitpid`.
pub fn zombie() -> io::Result<Zombie> {
    // SAFETY: the child only calls _exit, which is async-signal-safe, so
    // forking a multi-threaded process is sound here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sys::named("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(0) };
    }
    let state = || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while state() != Some('Z') && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let was_zombie = state() == Some('Z');
    let rss_kib = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let mut status = 0;
    // SAFETY: pid is our own child; status is a valid out-pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        return Err(sys::named("waitpid", io::Error::last_os_error()));
    }
    let gone_after_wait = fs::metadata(format!("/proc/{pid}")).is_err();
    Ok(Zombie {
        was_zombie,
        rss_kib,
        fds,
        gone_after_wait,
    })
}

/// Mean microseconds of `fork` + child `_exit` + `waitpid`.
fn fork_us(rounds: usize) -> io::Result<f64> {
    let t0 = Instant::now();
    for _ in 0..rounds {
        // SAFETY: as in `zombie`: the child only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(sys::named("fork", io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: pid is our own child; status is a valid out-pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            return Err(sys::named("waitpid", io::Error::last_os_error()));
        }
    }
    Ok(t0.elapsed().as_secs_f64() * 1e6 / rounds as f64)
}

/// What creating a thread and a process cost here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Creation {
    /// `thread::spawn` of an empty closure + `join`, µs.
    pub thread_us: f64,
    /// `fork` + `_exit` + `waitpid` from this process as it is, µs.
    pub fork_us: f64,
    /// The same with [`BIG_PARENT_MIB`] more of touched memory, µs.
    pub fork_big_us: f64,
    /// Copying those [`BIG_PARENT_MIB`] into fresh memory, µs: what fork
    /// would add if it copied the parent.
    pub copy_big_us: f64,
}

/// Memory the parent touches before the second fork measurement.
pub const BIG_PARENT_MIB: usize = 128;
const CREATION_ROUNDS: usize = 100;

pub fn creation() -> io::Result<Creation> {
    let t0 = Instant::now();
    for _ in 0..CREATION_ROUNDS {
        thread::spawn(|| black_box(()))
            .join()
            .map_err(|_| io::Error::other("empty thread panicked"))?;
    }
    let thread_us = t0.elapsed().as_secs_f64() * 1e6 / CREATION_ROUNDS as f64;
    let small = fork_us(CREATION_ROUNDS)?;
    // Every page written, so that each is mapped and its page-table entry
    // must be copied (copy-on-write copies the tables, not the pages).
    let mut big = vec![0u8; BIG_PARENT_MIB << 20];
    for page in big.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(&big);
    let with_big = fork_us(CREATION_ROUNDS)?;
    let t0 = Instant::now();
    let copy = black_box(big.clone());
    let copy_big_us = t0.elapsed().as_secs_f64() * 1e6;
    drop(copy);
    drop(big);
    Ok(Creation {
        thread_us,
        fork_us: small,
        fork_big_us: with_big,
        copy_big_us,
    })
}

/// The `select` probe watches the lowest free descriptor from here: above
/// `FD_SETSIZE`.
pub const HIGH_FD: i32 = 1500;
/// Bits in the probe's bitmap: room for a descriptor up to 2047.
const BITMAP_BITS: usize = 2048;

/// Whether the kernel's `pselect6` watches a descriptor >= 1024 when given
/// a bitmap large enough for it (glibc's `fd_set` cannot hold one): a
/// readable pipe is duplicated to the lowest free descriptor from
/// [`HIGH_FD`] and asked about.
pub fn kernel_select_beyond_fd_setsize() -> io::Result<bool> {
    sys::raise_nofile_limit()?;
    let mut fds = [0i32; 2];
    // SAFETY: fds is a writable array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(sys::named("pipe2", io::Error::last_os_error()));
    }
    let close = |fd: i32| {
        // SAFETY: fd is one this function opened and closes once.
        unsafe { libc::close(fd) };
    };
    // SAFETY: writes one byte from a valid buffer to our own pipe.
    let wrote = unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
    // F_DUPFD takes the lowest free descriptor >= HIGH_FD, so no descriptor
    // of this process is replaced.
    // SAFETY: fds[0] is our pipe's read end; fcntl only reads its arguments.
    let high = unsafe { libc::fcntl(fds[0], libc::F_DUPFD_CLOEXEC, HIGH_FD) };
    let result = if wrote != 1 {
        Err(sys::named("write(pipe)", io::Error::last_os_error()))
    } else if high < 0 {
        Err(sys::named(
            "fcntl(F_DUPFD_CLOEXEC)",
            io::Error::last_os_error(),
        ))
    } else if high as usize >= BITMAP_BITS {
        Err(io::Error::other(format!(
            "fcntl(F_DUPFD_CLOEXEC) gave descriptor {high}, beyond the probe's {BITMAP_BITS}-bit bitmap"
        )))
    } else {
        let mut bitmap = [0u64; BITMAP_BITS / 64];
        let (word, bit) = (high as usize / 64, high as usize % 64);
        bitmap[word] |= 1 << bit;
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: bitmap holds BITMAP_BITS bits, more than nfds = high + 1;
        // the other sets and the sigmask are NULL, as pselect6 allows.
        let n = unsafe {
            libc::syscall(
                libc::SYS_pselect6,
                high + 1,
                bitmap.as_mut_ptr(),
                std::ptr::null_mut::<u64>(),
                std::ptr::null_mut::<u64>(),
                &timeout as *const libc::timespec,
                std::ptr::null::<u8>(),
            )
        };
        if n < 0 {
            Err(sys::named("pselect6", io::Error::last_os_error()))
        } else {
            Ok(n == 1 && bitmap[word] & (1 << bit) != 0)
        }
    };
    if high >= 0 {
        close(high);
    }
    close(fds[0]);
    close(fds[1]);
    result
}
