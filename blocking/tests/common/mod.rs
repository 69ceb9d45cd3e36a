//! Starting the `blocking` binary, talking to it, and looking at its
//! processes through /proc. Shared by the integration tests of this crate.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const MODES: [&str; 5] = ["iterative", "thread", "pool", "fork", "prefork"];

/// The contract's limits.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(1);
pub const STOP_LIMIT: Duration = Duration::from_secs(2);

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Server::spawn(args, None)
    }

    /// Starts the server with `RLIMIT_NOFILE` set to `nofile`.
    pub fn start_with_nofile(args: &[&str], nofile: u64) -> Server {
        Server::spawn(args, Some((libc::RLIMIT_NOFILE, nofile, None)))
    }

    /// Starts the server as user `nobody` (65534) with `RLIMIT_NPROC` set
    /// to `nproc` tasks. Needs root: the limit does not apply to root.
    pub fn start_as_nobody_with_nproc(args: &[&str], nproc: u64) -> Server {
        Server::spawn(args, Some((libc::RLIMIT_NPROC, nproc, Some(65534))))
    }

    fn spawn(
        args: &[&str],
        limit: Option<(libc::__rlimit_resource_t, u64, Option<u32>)>,
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_blocking"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((resource, n, user)) = limit {
            // SAFETY: between fork and exec only setrlimit, setgroups,
            // setgid and setuid run: async-signal-safe, no allocation.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(resource, &lim) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if let Some(id) = user {
                        if libc::setgroups(0, std::ptr::null()) == -1
                            || libc::setgid(id) == -1
                            || libc::setuid(id) == -1
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                })
            };
        }
        let mut child = cmd.spawn().expect("spawn blocking");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read listening line");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stdout line: {line:?}"))
            .trim()
            .parse()
            .expect("address");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        // Drained continuously so the server never blocks on a full pipe.
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Server {
            child,
            addr,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill takes no pointers; the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill");
    }

    /// Waits for the server to exit; `None` if it did not within `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some((status, start.elapsed()));
            }
            if start.elapsed() > limit {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the server wrote to stderr so far (after its exit: all of
    /// it, once the pipe reader has caught up).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the stderr pipe reaches EOF (the server and every child
    /// holding it have exited), at most 2 s.
    pub fn stderr_after_exit(&self) -> String {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if self.stderr().contains("summary:") {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        self.stderr()
    }

    /// SIGTERM, then asserts exit status 0 within the contract's 2 s and
    /// returns the stderr text.
    pub fn stop(&mut self) -> String {
        self.signal(libc::SIGTERM);
        let (status, took) = self
            .wait(STOP_LIMIT)
            .unwrap_or_else(|| panic!("still running {STOP_LIMIT:?} after SIGTERM"));
        assert!(status.success(), "exit status {status}: {}", self.stderr());
        assert!(took <= STOP_LIMIT, "took {took:?}");
        self.stderr_after_exit()
    }

    /// The server's children, as /proc shows them now.
    pub fn children(&self) -> Vec<Proc> {
        procs()
            .into_iter()
            .filter(|p| p.ppid == self.pid())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One process as /proc/PID/stat describes it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
}

pub fn procs() -> Vec<Proc> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(p) = proc_stat(pid) {
            out.push(p);
        }
    }
    out
}

/// `None` once the process is gone (reaped).
pub fn proc_stat(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Proc { pid, ppid, state })
}

/// CPU time (user + system) of one process so far, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').expect(")") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from `state` as field 3.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// The transform of the contract, written out independently of `lab`.
pub fn expected(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b.is_ascii_lowercase() { b - 32 } else { b })
        .collect()
}

/// Sends `bytes` (from a second thread, so that neither side's buffers can
/// fill up and deadlock), half-closes, and returns everything read until EOF.
pub fn echo_all(addr: SocketAddr, bytes: Vec<u8>) -> Vec<u8> {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        for chunk in bytes.chunks(7919) {
            writer.write_all(chunk).expect("write");
        }
        writer.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    });
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read to EOF");
    sender.join().expect("sender");
    reply
}

/// One request on an open connection; returns how long the answer took.
pub fn ping(stream: &mut TcpStream, request: &[u8]) -> Duration {
    let start = Instant::now();
    stream.write_all(request).expect("write");
    let mut reply = vec![0u8; request.len()];
    stream.read_exact(&mut reply).expect("read reply");
    assert_eq!(reply, expected(request));
    start.elapsed()
}

/// Whether the server closed `stream` (EOF or reset) without answering,
/// within `limit`.
pub fn closed_without_answer(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let _ = stream.write_all(b"x");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// The `summary:` line's `connections=` and `bytes=` values. With several
/// workers the line ends in `per_loop=N,N,...`, which must add up to
/// `connections=`.
pub fn summary_counts(stderr: &str, model: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary line in stderr: {stderr}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(fields.len() == 6 || fields.len() == 7, "{line}");
    assert_eq!(fields[1], format!("model={model}"), "{line}");
    let value = |i: usize, key: &str| -> String {
        fields[i]
            .strip_prefix(key)
            .unwrap_or_else(|| panic!("field {i} of {line} is not {key}"))
            .to_string()
    };
    for (i, key) in [(4, "user="), (5, "sys=")] {
        let secs = value(i, key);
        let secs = secs.strip_suffix('s').expect("seconds end in s");
        assert_eq!(secs.split('.').nth(1).map(str::len), Some(3), "{line}");
        secs.parse::<f64>().expect("seconds");
    }
    let connections: u64 = value(2, "connections=").parse().expect("connections");
    if fields.len() == 7 {
        let per_loop: u64 = value(6, "per_loop=")
            .split(',')
            .map(|n| n.parse::<u64>().expect("per-loop count"))
            .sum();
        assert_eq!(per_loop, connections, "{line}");
    }
    (connections, value(3, "bytes=").parse().expect("bytes"))
}
