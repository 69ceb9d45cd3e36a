//! What the kernel does with the operations `uring` relies on, asserted
//! on a ring of the test's own: a multishot RECV posts one CQE per arrival
//! for a single submission; a one-shot RECV posts exactly one; a multishot
//! RECV whose buffer group runs dry ends with `-ENOBUFS` and no
//! `IORING_CQE_F_MORE`. And the model's answer to a kernel without
//! io_uring (a clear message and exit status 2), and its `--sqpoll` ring;
//! and what SQPOLL's kernel thread does: it runs where its creator may,
//! spins after a submission and sleeps `sq_thread_idle` ms after the last.

mod support;

use support::next_cqe;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use io_uring::types::Fd;
use io_uring::{cqueue, opcode, IoUring};

const RECV: u64 = 7;
const PROVIDE: u64 = 8;
const GROUP: u16 = 3;
const BUF_LEN: usize = 64;

/// Hands `count` buffers of `BUF_LEN` bytes in `storage` to group `GROUP`
/// (PROVIDE_BUFFERS) and waits for that to complete.
fn provide(ring: &mut IoUring, storage: &mut [u8], count: u16) {
    let sqe = opcode::ProvideBuffers::new(storage.as_mut_ptr(), BUF_LEN as i32, count, GROUP, 0)
        .build()
        .user_data(PROVIDE);
    // SAFETY: `storage` outlives the ring's use of it (the test ends first).
    unsafe { ring.submission().push(&sqe) }.expect("SQ has room");
    ring.submit_and_wait(1).expect("io_uring_enter");
    let cqe = ring.completion().next().expect("PROVIDE_BUFFERS completes");
    assert_eq!(cqe.user_data(), PROVIDE);
    assert!(cqe.result() >= 0, "PROVIDE_BUFFERS: {}", cqe.result());
}

fn submit_one(ring: &mut IoUring, sqe: &io_uring::squeue::Entry) {
    // SAFETY: every buffer the entry points at outlives its completion.
    unsafe { ring.submission().push(sqe) }.expect("SQ has room");
    assert_eq!(ring.submit().expect("io_uring_enter"), 1);
}

#[test]
fn multishot_recv_posts_a_cqe_per_arrival_for_one_submission() {
    skip_without_io_uring!();
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let mut storage = vec![0u8; 8 * BUF_LEN];
    provide(&mut ring, &mut storage, 8);
    let (mut peer, ours) = UnixStream::pair().expect("socketpair");
    let recv = opcode::RecvMulti::new(Fd(ours.as_raw_fd()), GROUP)
        .build()
        .user_data(RECV);
    submit_one(&mut ring, &recv);
    let mut buffers = Vec::new();
    for msg in [&b"one"[..], b"two", b"three"] {
        peer.write_all(msg).expect("write");
        let cqe = next_cqe(&mut ring).expect("a CQE per arrival");
        assert_eq!(cqe.user_data(), RECV);
        assert_eq!(cqe.result(), msg.len() as i32);
        assert!(cqueue::more(cqe.flags()), "still armed: F_MORE");
        let bid = cqueue::buffer_select(cqe.flags()).expect("the buffer it picked") as usize;
        assert_eq!(&storage[bid * BUF_LEN..][..msg.len()], msg);
        buffers.push(bid);
    }
    buffers.sort_unstable();
    buffers.dedup();
    assert_eq!(buffers.len(), 3, "each CQE took a buffer of its own");
    drop(peer);
    let eof = next_cqe(&mut ring).expect("EOF ends it");
    assert_eq!(eof.result(), 0);
    assert!(!cqueue::more(eof.flags()), "EOF ends the multishot");
}

#[test]
fn one_shot_recv_posts_exactly_one_cqe() {
    skip_without_io_uring!();
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let (mut peer, ours) = UnixStream::pair().expect("socketpair");
    let mut buf = [0u8; BUF_LEN];
    let recv = opcode::Recv::new(Fd(ours.as_raw_fd()), buf.as_mut_ptr(), BUF_LEN as u32)
        .build()
        .user_data(RECV);
    submit_one(&mut ring, &recv);
    peer.write_all(b"first").expect("write");
    let cqe = next_cqe(&mut ring).expect("the RECV completes");
    assert_eq!(cqe.result(), 5);
    assert!(!cqueue::more(cqe.flags()), "a one-shot never says F_MORE");
    assert_eq!(&buf[..5], b"first");
    peer.write_all(b"second").expect("write");
    assert!(
        next_cqe(&mut ring).is_none(),
        "data after the one completion posts nothing until a new RECV"
    );
}

#[test]
fn multishot_recv_with_its_buffers_used_up_ends_with_enobufs_and_no_more() {
    skip_without_io_uring!();
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let mut storage = vec![0u8; BUF_LEN];
    provide(&mut ring, &mut storage, 1);
    let (mut peer, ours) = UnixStream::pair().expect("socketpair");
    let recv = opcode::RecvMulti::new(Fd(ours.as_raw_fd()), GROUP)
        .build()
        .user_data(RECV);
    submit_one(&mut ring, &recv);
    peer.write_all(b"takes the only buffer").expect("write");
    let first = next_cqe(&mut ring).expect("data");
    assert_eq!(first.result(), 21);
    assert!(cqueue::more(first.flags()));
    peer.write_all(b"finds none").expect("write");
    let dry = next_cqe(&mut ring).expect("the RECV ends");
    assert_eq!(dry.user_data(), RECV);
    assert_eq!(dry.result(), -libc::ENOBUFS);
    assert!(
        !cqueue::more(dry.flags()),
        "the kernel ended the multishot: it must be re-armed"
    );
}

/// `strace -e inject=io_uring_setup:error=ENOSYS` makes the kernel look
/// like one built without io_uring, without touching any sysctl.
#[test]
fn a_kernel_without_io_uring_gets_a_clear_error_and_exit_status_2() {
    let strace = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status();
    if !strace.is_ok_and(|s| s.success()) {
        eprintln!("SKIP: strace is not installed; it injects the ENOSYS");
        return;
    }
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "inject=io_uring_setup:error=ENOSYS",
        ])
        .arg(env!("CARGO_BIN_EXE_uring"))
        .stdin(Stdio::null())
        .output()
        .expect("run uring under strace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("io_uring_setup") && stderr.contains("io_uring is not available"),
        "the message names the call and the reason: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing announced: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `--sqpoll` sets the ring up differently (IORING_SETUP_SQPOLL, and no
/// COOP_TASKRUN, which the kernel refuses beside it): it must start, echo,
/// and stop on SIGTERM like the default.
#[test]
fn sqpoll_ring_starts_echoes_and_stops() {
    skip_without_io_uring!();
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_uring"))
        .args(["--mode", "single", "--sqpoll"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start uring --sqpoll");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the announcement");
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let mut stderr = String::new();
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr);
        panic!("no announcement: {line:?}; stderr: {stderr}");
    };
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.write_all(b"sqpoll").expect("write");
    let mut reply = [0u8; 6];
    conn.read_exact(&mut reply).expect("read the echo");
    assert_eq!(&reply, b"SQPOLL");
    // SAFETY: kill has no memory arguments; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Set in the child process of the test below, which lowers its own
/// `RLIMIT_NOFILE` (a limit the other tests of this process must not feel).
const EMFILE_CHILD: &str = "URING_SEMANTICS_EMFILE_CHILD";

/// An accept, `accept4` or an io_uring ACCEPT, reserves a descriptor before
/// it looks at the listen queue: with the table full it fails with
/// `EMFILE` although no connection is queued. A readiness loop calls
/// `accept4` only once the listener is readable, so it never sees this; an
/// ACCEPT is tried as soon as it is submitted, so a ring that re-armed it
/// at once after refusing a connection would spin. The model polls the
/// listener first.
#[test]
fn accept_with_a_full_table_fails_with_emfile_though_nothing_is_queued() {
    skip_without_io_uring!();
    if std::env::var_os(EMFILE_CHILD).is_none() {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "accept_with_a_full_table_fails_with_emfile_though_nothing_is_queued",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(EMFILE_CHILD, "1")
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "child: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    // The lowest free descriptor is the next one accept would get; allow
    // exactly the ones below it.
    let probe = std::fs::File::open("/dev/null").expect("open");
    let next_fd = probe.as_raw_fd() as libc::rlim_t;
    drop(probe);
    let limit = libc::rlimit {
        rlim_cur: next_fd,
        rlim_max: next_fd,
    };
    // SAFETY: `limit` is a valid rlimit for the duration of the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let accept = opcode::Accept::new(
        Fd(listener.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .build()
    .user_data(RECV);
    submit_one(&mut ring, &accept);
    let cqe = next_cqe(&mut ring).expect("the ACCEPT completes at once");
    assert_eq!(cqe.result(), -libc::EMFILE, "no connection is queued");
    // SAFETY: null address pointers are allowed; it fails before using them.
    let rc = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK,
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EMFILE),
        "accept4 on the same full table fails the same way, queue empty or not"
    );
}

/// What `--sqpoll` costs, on a ring of the test's own: the kernel starts a
/// thread of this process, `iou-sqp-PID`, that (on this kernel) may run only
/// where the thread setting the ring up may: a server pinned to one CPU
/// shares that CPU with its poller. After a submission it stays runnable,
/// spinning without once going to sleep, until `sq_thread_idle` ms pass
/// without one; then it sets `IORING_SQ_NEED_WAKEUP` and sleeps, costing
/// nothing until woken. Judged by the scheduler's state and switch counts,
/// not by how much CPU the spin got on a shared machine.
#[test]
fn sqpoll_thread_runs_where_its_creator_may_spins_then_sleeps() {
    use harness::account::{thread_cpu_ns, thread_state, thread_switches, threads_named};
    use std::time::{Duration, Instant};
    skip_without_io_uring!();
    const IDLE_MS: u32 = 1000;
    let pid = std::process::id() as i32;
    // A thread of its own: the affinity set here must not reach other tests.
    std::thread::spawn(move || {
        // SAFETY: a zeroed cpu_set_t is the empty set, which
        // sched_getaffinity fills; its size is passed.
        let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&allowed), &mut allowed) };
        assert_eq!(
            rc,
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: CPU_ISSET reads inside the set for a cpu below CPU_SETSIZE.
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
            .expect("a CPU this thread may use");
        // SAFETY: as above; CPU_SET writes inside the set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut one) };
        // SAFETY: `one` lives across the call and its size is passed.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&one), &one) };
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );

        let before: Vec<i32> = threads_named(pid, "iou-sqp")
            .into_iter()
            .map(|t| t.0)
            .collect();
        let mut ring: IoUring = IoUring::builder()
            .setup_sqpoll(IDLE_MS)
            .build(8)
            .expect("io_uring_setup(SQPOLL)");
        // The thread names itself once it first runs, not at setup.
        let started = Instant::now();
        let poller = loop {
            let new: Vec<i32> = threads_named(pid, "iou-sqp")
                .into_iter()
                .map(|t| t.0)
                .filter(|t| !before.contains(t))
                .collect();
            if !new.is_empty() || started.elapsed() > Duration::from_secs(2) {
                break new;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(poller.len(), 1, "one new iou-sqp thread, got {poller:?}");
        let poller = poller[0];
        let status = std::fs::read_to_string(format!("/proc/self/task/{poller}/status"))
            .expect("read status");
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .expect("Cpus_allowed_list");
        assert_eq!(cpus, cpu.to_string(), "the poller's CPUs");

        let nop = opcode::Nop::new().build().user_data(1);
        // SAFETY: a NOP references no memory.
        unsafe { ring.submission().push(&nop) }.expect("push NOP");
        ring.submit_and_wait(1).expect("io_uring_enter");
        assert_eq!(ring.completion().next().map(|c| c.user_data()), Some(1));
        let submitted = Instant::now();
        let switches = || {
            thread_switches(pid, poller)
                .expect("the poller's switches")
                .0
        };
        let (slept_before, cpu_before) =
            (switches(), thread_cpu_ns(pid, poller).expect("schedstat"));
        std::thread::sleep(Duration::from_millis(200));
        let spun = (thread_state(pid, poller), switches());
        assert!(
            submitted.elapsed() < Duration::from_millis(u64::from(IDLE_MS)),
            "the test itself was held past the idle time: nothing to judge"
        );
        assert_eq!(
            spun.0,
            Some(b'R'),
            "within sq_thread_idle the poller is runnable"
        );
        assert_eq!(spun.1, slept_before, "and has not gone to sleep once");
        assert!(
            thread_cpu_ns(pid, poller).expect("schedstat") > cpu_before,
            "and it has run meanwhile"
        );

        std::thread::sleep(Duration::from_millis(u64::from(IDLE_MS) + 500));
        assert_eq!(
            thread_state(pid, poller),
            Some(b'S'),
            "past sq_thread_idle it sleeps"
        );
        assert!(
            switches() > slept_before,
            "a voluntary switch: it went to sleep"
        );
        let asleep_cpu = thread_cpu_ns(pid, poller).expect("schedstat");
        std::thread::sleep(Duration::from_millis(200));
        let ran = thread_cpu_ns(pid, poller)
            .expect("schedstat")
            .saturating_sub(asleep_cpu);
        assert!(
            ran < 1_000_000,
            "asleep, it does not run: {ran} ns in 200 ms"
        );
        assert!(
            ring.submission().need_wakeup(),
            "a sleeping poller sets IORING_SQ_NEED_WAKEUP"
        );
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}
