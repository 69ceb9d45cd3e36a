//! Starting, watching and stopping a model's server process.
//!
//! ```no_run
//! use harness::server::{ModelSpec, Server, ServerConfig};
//! use nix::sys::signal::Signal;
//! # fn demo() -> std::io::Result<()> {
//! let spec: ModelSpec = "epoll:edge".parse().map_err(std::io::Error::other)?;
//! let config = ServerConfig::for_spec(&spec, &["--workers".into(), "2".into()])?
//!     .nofile(64)     // RLIMIT_NOFILE of the server, set between fork and exec
//!     .pin(vec![1]);  // sched_setaffinity of the server, likewise
//! let mut server = Server::start(&config)?;   // waits for `listening on HOST:PORT`
//! println!("{} on {} (pid {})", spec, server.addr(), server.pid());
//! let usage = server.tree_usage();            // fds, RSS, CPU over every descendant
//! # let _ = usage;
//! let stopped = server.stop(Signal::SIGTERM, std::time::Duration::from_secs(2))?;
//! println!("{:?} after {:?}: {:?}", stopped.status, stopped.elapsed, stopped.summary);
//! # Ok(()) }
//! ```
//!
//! What this module guarantees:
//! - the server's stdout and stderr are drained by background threads from
//!   the start, so a chatty server never blocks on a full pipe;
//! - a `Server` that is dropped while its process still runs (a failed test,
//!   a panic) SIGKILLs the whole process tree — the server and every
//!   descendant found in `/proc` — so nothing is left behind;
//! - the process tree is found by walking `/proc/PID/task/TID/children`
//!   down from the server, or, on a kernel without `CONFIG_PROC_CHILDREN`,
//!   by scanning `/proc/*/stat` for parent pids (`account::procfs`).

use crate::account::procfs::{self, read_stat};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use crate::spec::ModelSpec;

/// The path of a model's binary: next to the running executable
/// (`target/{debug,release}/MODEL`; from a test binary in `.../deps/`, one
/// level up), or, if it is not there, built with
/// `cargo build --release -p MODEL` (announced on stderr).
pub fn find_binary(model: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|e| io::Error::new(e.kind(), format!("current_exe: {e}")))?;
    if let Some(dir) = exe.parent() {
        let mut dirs = vec![dir.to_path_buf()];
        if dir.file_name().is_some_and(|name| name == "deps") {
            dirs.extend(dir.parent().map(Path::to_path_buf));
        }
        for dir in dirs {
            let candidate = dir.join(model);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    eprintln!(
        "harness: no `{model}` binary next to {}; building it: cargo build --release -p {model}",
        exe.display()
    );
    build_binary(model)
}

/// Why `model` cannot be measured here, if it cannot.
pub fn unavailable(model: &str) -> Option<String> {
    find_binary(model)
        .err()
        .map(|e| format!("no `{model}` binary next to the harness and none could be built ({e})"))
}

/// `cargo build --release -p MODEL`, in the workspace this harness was built
/// from; returns the executable cargo reports for the bin target `MODEL`.
fn build_binary(model: &str) -> io::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    // The reflector is a second binary of the harness package.
    let package = if model == "reflector" {
        "harness"
    } else {
        model
    };
    let output = Command::new(&cargo)
        .args(["build", "--release", "-p", package, "--bin", model])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("spawn {} build -p {model}: {e}", cargo.to_string_lossy()),
            )
        })?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "cargo build --release -p {model}: {}",
            output.status
        )));
    }
    // Each stdout line is one JSON message; the artifact of the bin target
    // named like the model carries the executable's path.
    for line in output.stdout.split(|&b| b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == model {
            if let Some(path) = msg["executable"].as_str() {
                return Ok(PathBuf::from(path));
            }
        }
    }
    Err(io::Error::other(format!(
        "cargo build --release -p {model} succeeded but reported no `{model}` executable"
    )))
}

/// How to start a server. Built with [`ServerConfig::new`] or
/// [`ServerConfig::for_spec`], then the builder methods.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub binary: PathBuf,
    /// Passed as `--mode MODE`; `None`: the model's default.
    pub mode: Option<String>,
    /// Appended after `--addr 127.0.0.1:0 [--mode MODE]`.
    pub args: Vec<String>,
    /// `RLIMIT_NOFILE` (soft and hard) of the server.
    pub nofile: Option<u64>,
    /// CPUs the server (and everything it forks) may run on.
    pub cpus: Option<Vec<usize>>,
    /// How long to wait for the `listening on` line.
    pub ready_timeout: Duration,
    /// A program the server runs under, with its arguments (e.g. `strace`
    /// and its options); the binary and its arguments follow them. The
    /// process started, watched and stopped is then that program.
    pub wrapper: Vec<String>,
}

impl ServerConfig {
    pub fn new(binary: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            binary: binary.into(),
            mode: None,
            args: Vec::new(),
            nofile: None,
            cpus: None,
            ready_timeout: Duration::from_secs(10),
            wrapper: Vec::new(),
        }
    }

    /// The binary of `spec.model` (see [`find_binary`]), its mode, and
    /// `extra_args` for the server.
    pub fn for_spec(spec: &ModelSpec, extra_args: &[String]) -> io::Result<ServerConfig> {
        Ok(ServerConfig::new(find_binary(&spec.model)?)
            .mode(spec.mode.clone())
            .args(extra_args.iter().cloned()))
    }

    pub fn mode(mut self, mode: Option<String>) -> ServerConfig {
        self.mode = mode;
        self
    }

    pub fn args<I, S>(mut self, args: I) -> ServerConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn nofile(mut self, limit: u64) -> ServerConfig {
        self.nofile = Some(limit);
        self
    }

    pub fn pin(mut self, cpus: Vec<usize>) -> ServerConfig {
        self.cpus = Some(cpus);
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> ServerConfig {
        self.ready_timeout = timeout;
        self
    }

    pub fn wrapped_in(mut self, wrapper: Vec<String>) -> ServerConfig {
        self.wrapper = wrapper;
        self
    }

    /// The command line, as a user would type it (for messages).
    pub fn command_line(&self) -> String {
        let mut line = String::new();
        for arg in &self.wrapper {
            line.push_str(arg);
            line.push(' ');
        }
        line.push_str(&format!("{} --addr 127.0.0.1:0", self.binary.display()));
        if let Some(mode) = &self.mode {
            line.push_str(&format!(" --mode {mode}"));
        }
        for arg in &self.args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    }
}

/// The exit summary line of the contract:
/// `summary: model=epoll:edge connections=12 bytes=3456 user=0.120s sys=0.340s`,
/// optionally followed by ` per_loop=5,7` (connections each loop admitted,
/// printed by models that run several loops).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub model: String,
    pub connections: u64,
    pub bytes: u64,
    pub user_s: f64,
    pub sys_s: f64,
    /// Empty when the line has no `per_loop=` field.
    pub per_loop: Vec<u64>,
}

impl Summary {
    /// Parses one line; `None` unless every field is present and well formed.
    pub fn parse(line: &str) -> Option<Summary> {
        let rest = line.trim_end().strip_prefix("summary: ")?;
        let mut fields = rest.split(' ');
        let mut next = |key: &str| fields.next()?.strip_prefix(key);
        let model = next("model=")?.to_owned();
        let connections = next("connections=")?.parse().ok()?;
        let bytes = next("bytes=")?.parse().ok()?;
        let user_s = next("user=")?.strip_suffix('s')?.parse().ok()?;
        let sys_s = next("sys=")?.strip_suffix('s')?.parse().ok()?;
        let per_loop = match fields.next() {
            None => Vec::new(),
            Some(field) => field
                .strip_prefix("per_loop=")?
                .split(',')
                .map(|n| n.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        if fields.next().is_some() || model.is_empty() {
            return None;
        }
        Some(Summary {
            model,
            connections,
            bytes,
            user_s,
            sys_s,
            per_loop,
        })
    }

    /// The last line of `stderr` that starts with `summary:`, parsed.
    /// `Err` carries the line when it is there but malformed.
    pub fn find(stderr: &str) -> Result<Option<Summary>, String> {
        match stderr.lines().rev().find(|l| l.starts_with("summary:")) {
            None => Ok(None),
            Some(line) => Summary::parse(line)
                .map(Some)
                .ok_or_else(|| format!("malformed summary line: {line:?}")),
        }
    }
}

/// What [`Server::stop`] saw.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    /// From the signal to the exit (to the SIGKILL, if it timed out).
    pub elapsed: Duration,
    /// The server did not exit within the timeout and was SIGKILLed (with
    /// its whole tree).
    pub timed_out: bool,
    /// Everything the server wrote to stderr.
    pub stderr: String,
    /// What it wrote to stdout after the `listening on` line (the contract
    /// allows nothing).
    pub stdout_after_ready: String,
    /// The summary line, parsed; `Err` if present but malformed.
    pub summary: Result<Option<Summary>, String>,
    /// Processes of the server's tree (seen just before the signal) still
    /// present after the server exited: orphans or unreaped children. They
    /// are SIGKILLed once listed.
    pub leftovers: Vec<Leftover>,
    /// The server tree's CPU over its whole life, shutdown included, as the
    /// kernel handed it to the harness when it reaped the server (growth of
    /// the harness' `RUSAGE_CHILDREN`; microsecond resolution). `None` if
    /// the server had been reaped before `stop`. Assumes no other child of
    /// the harness is reaped meanwhile (true of `run` and `compare`).
    pub reaped_cpu_s: Option<f64>,
}

/// A process that outlived the server it belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftover {
    pub pid: i32,
    /// The `state` letter of `/proc/PID/stat` when seen: `Z` is a zombie
    /// nobody reaped, anything else a live orphan.
    pub state: char,
}

/// Resource use summed over a process and all its descendants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    /// Processes of the tree that still run (zombies not counted: they hold
    /// no descriptor and no memory).
    pub processes: usize,
    /// Entries of `/proc/PID/fd`: threads share one table, so it is counted
    /// once per process.
    pub fds: usize,
    /// `VmRSS` of `/proc/PID/status`, bytes.
    pub rss_bytes: u64,
    /// `utime + stime + cutime + cstime` of `/proc/PID/stat` (every thread,
    /// plus children already reaped), in clock ticks (see [`clock_ticks`]).
    pub cpu_ticks: u64,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of
/// [`TreeUsage::cpu_ticks`].
pub fn clock_ticks() -> u64 {
    crate::account::clock_ticks_per_sec()
}

/// `root` and every descendant of it, found through the parent pids of
/// `/proc/*/stat`; `root` first. Empty if `root` is gone.
fn tree_pids(root: i32) -> Vec<i32> {
    procfs::tree_pids(root).unwrap_or_default()
}

/// Resource use of `root`'s tree. A process that exits while being read
/// simply stops counting.
pub fn tree_usage(root: i32) -> TreeUsage {
    let mut usage = TreeUsage::default();
    for pid in tree_pids(root) {
        let Ok(stat) = read_stat(pid) else { continue };
        if stat.state != b'Z' {
            usage.processes += 1;
        }
        usage.cpu_ticks += stat.cpu_ticks();
        if let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) {
            usage.fds += fds.count();
        }
        usage.rss_bytes += read_rss(pid).unwrap_or(0);
    }
    usage
}

fn read_rss(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sends `signal` to every process of the list, ignoring the ones already gone.
fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// A server's stderr, collected by a background thread. Bounded: the first
/// and the last `HALF_CAP` bytes are kept, so that both an early warning and
/// the final summary line survive a very chatty server.
#[derive(Default)]
struct Captured {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
    eof: bool,
}

const HALF_CAP: usize = 1 << 20;

impl Captured {
    fn push(&mut self, bytes: &[u8]) {
        let room = HALF_CAP - self.head.len();
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        self.tail.extend(rest);
        while self.tail.len() > HALF_CAP {
            self.tail.pop_front();
            self.dropped += 1;
        }
    }

    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!(
                "\n[... {} bytes of stderr dropped ...]\n",
                self.dropped
            ));
        }
        let (a, b) = self.tail.as_slices();
        text.push_str(&String::from_utf8_lossy(a));
        text.push_str(&String::from_utf8_lossy(b));
        text
    }
}

type Shared = Arc<(Mutex<Captured>, Condvar)>;

fn capture(pipe: impl Read + Send + 'static, into: Shared) {
    thread::spawn(move || drain(pipe, &into));
}

/// Appends everything read from `pipe` to `into` until EOF, then marks it.
fn drain(mut pipe: impl Read, into: &Shared) {
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => lock(&into.0).push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    lock(&into.0).eof = true;
    into.1.notify_all();
}

fn lock(m: &Mutex<Captured>) -> std::sync::MutexGuard<'_, Captured> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running model server. Dropping it SIGKILLs its whole tree if it still
/// runs.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    command: String,
    stderr: Shared,
    /// Stdout after the `listening on` line (the contract allows none).
    stdout_rest: Shared,
    exited: Option<ExitStatus>,
}

impl Server {
    /// Spawns the server with `--addr 127.0.0.1:0 [--mode MODE] ARGS...` and
    /// waits for its `listening on HOST:PORT` line.
    pub fn start(config: &ServerConfig) -> io::Result<Server> {
        let mut cmd = match config.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&config.binary);
                cmd
            }
            None => Command::new(&config.binary),
        };
        cmd.args(["--addr", "127.0.0.1:0"]);
        if let Some(mode) = &config.mode {
            cmd.args(["--mode", mode]);
        }
        cmd.args(&config.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let nofile = config.nofile;
        let cpuset = match &config.cpus {
            Some(cpus) => Some(cpu_set(cpus)?),
            None => None,
        };
        if nofile.is_some() || cpuset.is_some() {
            // SAFETY: between fork and exec the closure only makes two raw
            // system calls (setrlimit, sched_setaffinity) on data prepared
            // before the fork; it allocates nothing and takes no lock.
            unsafe {
                cmd.pre_exec(move || {
                    if let Some(limit) = nofile {
                        let rlim = libc::rlimit {
                            rlim_cur: limit as libc::rlim_t,
                            rlim_max: limit as libc::rlim_t,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) == -1 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    if let Some(set) = &cpuset {
                        let size = std::mem::size_of::<libc::cpu_set_t>();
                        if libc::sched_setaffinity(0, size, set) == -1 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                })
            };
        }
        let command = config.command_line();
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawn `{command}`: {e}")))?;
        let stderr: Shared = Arc::default();
        let stdout_rest: Shared = Arc::default();
        let err_pipe: ChildStderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr pipe"))?;
        capture(err_pipe, stderr.clone());
        let out_pipe: ChildStdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let (line_tx, line_rx) = mpsc::channel();
        let rest = stdout_rest.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(out_pipe);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            // The receiver may have given up (timeout): nothing to tell then.
            let _ = line_tx.send(first);
            // Whatever the reader buffered past the first line, then the
            // rest of the pipe until EOF.
            lock(&rest.0).push(reader.buffer());
            drain(reader.into_inner(), &rest);
        });

        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            command,
            stderr,
            stdout_rest,
            exited: None,
        };
        let first = match line_rx.recv_timeout(config.ready_timeout) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(server.startup_error(&format!("reading its stdout: {e}"))),
            Err(_) => {
                return Err(server.startup_error(&format!(
                    "no `listening on` line within {:?}",
                    config.ready_timeout
                )))
            }
        };
        let addr = first
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match addr {
            Some(addr) => server.addr = addr,
            None => {
                return Err(server.startup_error(&format!(
                    "first stdout line is {first:?}, not `listening on HOST:PORT`"
                )))
            }
        }
        Ok(server)
    }

    /// An error for a server that did not come up, with its stderr; the
    /// server is killed when `self` is dropped right after.
    fn startup_error(&mut self, what: &str) -> io::Error {
        // Give a dying server a moment to write its last words.
        thread::sleep(Duration::from_millis(100));
        let status = match self.try_status() {
            Some(status) => format!("exited with {status}"),
            None => "still running".to_owned(),
        };
        io::Error::other(format!(
            "`{}`: {what} ({status}); stderr: {}",
            self.command,
            self.stderr_so_far().trim_end()
        ))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The address from the `listening on` line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// `None` while it runs; its exit status once it has exited (it is then
    /// reaped).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.try_status()
    }

    pub fn is_alive(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Everything it has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        lock(&self.stderr.0).text()
    }

    /// Anything it printed to stdout after the `listening on` line (the
    /// contract says nothing should be there).
    pub fn stdout_after_ready(&self) -> String {
        lock(&self.stdout_rest.0).text()
    }

    /// The server and all its descendants (threads are not processes: they
    /// are not listed).
    pub fn tree_pids(&self) -> Vec<i32> {
        tree_pids(self.pid())
    }

    /// Processes of the tree that exited and were not reaped by their
    /// parent (state `Z`).
    pub fn tree_zombies(&self) -> Vec<i32> {
        self.tree_pids()
            .into_iter()
            .filter(|&pid| read_stat(pid).is_ok_and(|s| s.state == b'Z'))
            .collect()
    }

    /// Descriptors, RSS and CPU summed over the tree.
    pub fn tree_usage(&self) -> TreeUsage {
        tree_usage(self.pid())
    }

    /// Sends `signal` to the server process only.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        kill(Pid::from_raw(self.pid()), signal)
            .map_err(|e| io::Error::other(format!("kill({}, {signal}): {e}", self.pid())))
    }

    /// Sends `signal`, waits up to `timeout` for the exit (then SIGKILLs the
    /// tree), and reports what happened. The stderr read is complete unless a
    /// leftover process still holds the pipe.
    pub fn stop(&mut self, signal: Signal, timeout: Duration) -> io::Result<Stopped> {
        let before: Vec<(i32, u64)> = self
            .tree_pids()
            .into_iter()
            .filter_map(|pid| read_stat(pid).ok().map(|s| (pid, s.start_time)))
            .collect();
        // The kernel adds a reaped child's CPU, and that of every
        // descendant it reaped, to its parent's RUSAGE_CHILDREN: across our
        // reaping of the server, that grows by the whole tree's CPU of the
        // whole run, shutdown included. Only if the server is reaped here.
        let children_before = self
            .exited
            .is_none()
            .then(|| procfs::Usage::of(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok())
            .flatten();
        let sent = Instant::now();
        if self.try_status().is_none() {
            self.signal(signal)?;
        }
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = self.try_status() {
                break status;
            }
            if sent.elapsed() >= timeout {
                timed_out = true;
                self.kill_tree();
                break self.child.wait().map_err(|e| {
                    io::Error::new(e.kind(), format!("waitpid({}): {e}", self.pid()))
                })?;
            }
            thread::sleep(Duration::from_millis(5));
        };
        let elapsed = sent.elapsed();
        self.exited = Some(status);
        let reaped_cpu_s = children_before.and_then(|before| {
            let after = procfs::Usage::of(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok()?;
            Some(after.since(&before).cpu_s())
        });

        // A process of the old tree that still exists (same pid, same start
        // time) outlived the server: an orphan, or a child nobody reaped.
        // Zombies reparented to init are reaped by it shortly: give it a moment.
        let mut leftovers = Vec::new();
        for attempt in 0..10 {
            leftovers = before
                .iter()
                .filter(|(pid, _)| *pid != self.pid())
                .filter_map(|&(pid, start)| {
                    let stat = read_stat(pid).ok().filter(|s| s.start_time == start)?;
                    Some(Leftover {
                        pid,
                        state: char::from(stat.state),
                    })
                })
                .collect();
            if leftovers.is_empty() || attempt == 9 {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Leftovers must not survive the check; they are reported above.
        let pids: Vec<i32> = leftovers.iter().map(|l| l.pid).collect();
        signal_all(&pids, Signal::SIGKILL);

        let stderr = wait_eof(&self.stderr, Duration::from_millis(500));
        let stdout_after_ready = wait_eof(&self.stdout_rest, Duration::from_millis(100));
        let summary = Summary::find(&stderr);
        Ok(Stopped {
            status,
            elapsed,
            timed_out,
            stderr,
            stdout_after_ready,
            summary,
            leftovers,
            reaped_cpu_s,
        })
    }

    /// SIGKILL for the server and every descendant. The server is stopped
    /// (SIGSTOP) first, so it cannot fork a child between the scan of its
    /// tree and the kills.
    fn kill_tree(&mut self) {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGSTOP);
        let tree = self.tree_pids();
        signal_all(&tree, Signal::SIGKILL);
    }
}

/// The captured text once its pipe reached EOF, or as it is after `timeout`
/// (a leftover process may still hold the pipe open).
fn wait_eof(shared: &Shared, timeout: Duration) -> String {
    let (captured, cond) = &**shared;
    let guard = lock(captured);
    let (guard, _) = cond
        .wait_timeout_while(guard, timeout, |c| !c.eof)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.text()
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.kill_tree();
            let _ = self.child.wait();
        }
    }
}

fn cpu_set(cpus: &[usize]) -> io::Result<libc::cpu_set_t> {
    // SAFETY: all-zero is the empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus {
        if cpu >= max {
            return Err(io::Error::other(format!(
                "CPU {cpu} is beyond cpu_set_t ({max})"
            )));
        }
        // SAFETY: `cpu` is within the set, checked above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(set)
}

/// The exit code, or `killed by SIGNAME`, for messages.
pub fn describe_status(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => format!("{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_mode() {
        let spec: ModelSpec = "epoll:edge".parse().expect("valid");
        assert_eq!(spec.model, "epoll");
        assert_eq!(spec.mode.as_deref(), Some("edge"));
        assert_eq!(spec.to_string(), "epoll:edge");
        let spec: ModelSpec = "blocking".parse().expect("valid");
        assert_eq!(spec.mode, None);
        for bad in ["", ":edge", "epoll:", "ep oll", "a:b:c"] {
            assert!(bad.parse::<ModelSpec>().is_err(), "{bad:?}");
        }
        let row = "uring:multishot+sqpoll".parse::<ModelSpec>();
        assert_eq!(
            row.expect_err("a compare row"),
            "`uring:multishot+sqpoll`: `+FLAG` is a row of harness compare; here give the flag \
             to the server: `uring:multishot -- --sqpoll`"
        );
    }

    #[test]
    fn summary_line_parses_and_malformed_ones_do_not() {
        let s = Summary::parse(
            "summary: model=epoll:edge connections=12 bytes=3456 user=0.120s sys=0.340s",
        )
        .expect("valid");
        assert_eq!(s.model, "epoll:edge");
        assert_eq!((s.connections, s.bytes), (12, 3456));
        assert!((s.user_s - 0.12).abs() < 1e-9 && (s.sys_s - 0.34).abs() < 1e-9);
        assert!(s.per_loop.is_empty());
        let loops = Summary::parse(
            "summary: model=epoll:level connections=12 bytes=3456 user=0.1s sys=0.3s per_loop=5,7",
        )
        .expect("valid with per_loop");
        assert_eq!(loops.per_loop, [5, 7]);
        for bad in [
            "summary: model=x connections=1 bytes=2 user=0.1s",
            "summary: model=x connections=one bytes=2 user=0.1s sys=0.2s",
            "summary: model=x connections=1 bytes=2 user=0.1 sys=0.2s",
            "summary: model=x connections=1 bytes=2 user=0.1s sys=0.2s extra",
            "summary: model=x connections=1 bytes=2 user=0.1s sys=0.2s per_loop=1,x",
            "summary: model=x connections=1 bytes=2 user=0.1s sys=0.2s per_loop=1 extra",
        ] {
            assert!(Summary::parse(bad).is_none(), "{bad:?}");
        }
        let stderr = "warn\nsummary: model=x connections=1 bytes=2 user=0.1s sys=0.2s\n";
        assert_eq!(Summary::find(stderr).expect("ok").expect("found").bytes, 2);
        assert!(Summary::find("summary: nope\n").is_err());
        assert_eq!(Summary::find("nothing\n"), Ok(None));
    }

    #[test]
    fn tree_of_this_process_includes_a_child_and_counts_its_fds() {
        let mut child = Command::new("sleep").arg("5").spawn().expect("spawn sleep");
        let me = std::process::id() as i32;
        let tree = tree_pids(me);
        assert_eq!(tree[0], me);
        assert!(tree.contains(&(child.id() as i32)), "{tree:?}");
        let usage = tree_usage(me);
        assert!(usage.processes >= 2 && usage.fds >= 3 && usage.rss_bytes > 0);
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    #[test]
    fn captured_stderr_keeps_head_and_tail() {
        let mut c = Captured::default();
        c.push(&vec![b'a'; HALF_CAP]);
        c.push(&vec![b'b'; HALF_CAP + 10]);
        c.push(b"summary");
        let text = c.text();
        assert!(text.starts_with('a') && text.ends_with("summary"));
        assert!(text.contains("17 bytes of stderr dropped"));
    }
}
