//! What each kernel feature behind a `uring` flag does, asserted on a ring
//! of the test's own or on the model itself: `--skip-send-cqe` (a SEND that
//! takes every byte posts no CQE, a short or failed one does, inside the
//! enter that submitted it), `--defer-taskrun` (a completion is posted only
//! inside a wait), `--fixed-files` (an accepted connection has no entry in
//! the process's descriptor table), `--sqpoll-cpu` (the poller runs on that
//! CPU only), `--min-wait` (a wait for a batch ends after the bound with
//! what has come), `--incremental-buffers` (small receives share one
//! buffer), `--bundle` (one CQE covers several buffers, consecutive in ring
//! order from the one it names). And a kernel without a flag's feature: a
//! clear error naming it, exit status 2.

mod support;

use support::next_cqe;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

const SEND: u64 = 1;
const RECV: u64 = 2;
const GROUP: u16 = 5;

fn submit_one(ring: &mut IoUring, sqe: &squeue::Entry) {
    // SAFETY: every buffer the entry points at outlives its completion.
    unsafe { ring.submission().push(sqe) }.expect("SQ has room");
    assert_eq!(ring.submit().expect("io_uring_enter"), 1);
}

/// The SEND `--skip-send-cqe` makes.
fn skipped_send(fd: &UnixStream, bytes: &[u8]) -> squeue::Entry {
    opcode::Send::new(Fd(fd.as_raw_fd()), bytes.as_ptr(), bytes.len() as u32)
        .flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT | libc::MSG_WAITALL)
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(SEND)
}

#[test]
fn skipped_send_posts_no_cqe_when_it_takes_everything_and_one_when_short_or_failed() {
    skip_without_io_uring!();
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let (mut peer, ours) = UnixStream::pair().expect("socketpair");

    submit_one(&mut ring, &skipped_send(&ours, b"hello"));
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).expect("read");
    assert_eq!(&got, b"hello", "the SEND took every byte");
    assert!(next_cqe(&mut ring).is_none(), "and posted no CQE");

    // More than the socket's buffer holds: it takes what fits, and posts a
    // CQE saying how much, already when the enter that submitted it returns.
    let big = vec![b'x'; 8 << 20];
    submit_one(&mut ring, &skipped_send(&ours, &big));
    let short = ring
        .completion()
        .next()
        .expect("a short SEND's CQE is posted inside the submitting enter");
    assert_eq!(short.user_data(), SEND);
    assert!(
        short.result() > 0 && (short.result() as usize) < big.len(),
        "res = the bytes it took: {}",
        short.result()
    );

    // The buffer still full: it takes nothing, -EAGAIN, and does not wait.
    submit_one(&mut ring, &skipped_send(&ours, b"more"));
    let full = ring.completion().next().expect("a failed SEND's CQE");
    assert_eq!(full.result(), -libc::EAGAIN);

    drop(peer);
    submit_one(&mut ring, &skipped_send(&ours, b"gone"));
    let gone = ring.completion().next().expect("a failed SEND's CQE");
    assert_eq!(gone.result(), -libc::EPIPE);
}

/// With DEFER_TASKRUN the data that arrives for an armed RECV is copied and
/// its CQE posted only when the ring's thread waits for completions; on a
/// plain ring it is posted as soon as the thread leaves the kernel.
#[test]
fn defer_taskrun_posts_completions_only_inside_the_wait() {
    skip_without_io_uring!();
    let deferred = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8);
    let mut deferred = match deferred {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!("SKIP: IORING_SETUP_DEFER_TASKRUN (Linux 6.1): {e}");
            return;
        }
        ring => ring.expect("io_uring_setup(DEFER_TASKRUN)"),
    };
    let mut plain = IoUring::new(8).expect("io_uring_setup");
    for (ring, is_deferred) in [(&mut deferred, true), (&mut plain, false)] {
        let (mut peer, ours) = UnixStream::pair().expect("socketpair");
        let mut buf = [0u8; 16];
        let recv = opcode::Recv::new(Fd(ours.as_raw_fd()), buf.as_mut_ptr(), 16)
            .build()
            .user_data(RECV);
        submit_one(ring, &recv);
        assert!(ring.completion().is_empty(), "nothing to read yet");
        peer.write_all(b"data").expect("write");
        std::thread::sleep(Duration::from_millis(100));
        let posted_outside = !ring.completion().is_empty();
        assert_eq!(
            posted_outside, !is_deferred,
            "deferred: {is_deferred}; posted without a wait: {posted_outside}"
        );
        ring.submit_and_wait(1).expect("io_uring_enter(GETEVENTS)");
        let cqe = ring.completion().next().expect("posted inside the wait");
        assert_eq!(cqe.result(), 4);
        assert_eq!(&buf[..4], b"data");
    }
}

/// A model server, started with `args`, and the address it listens on.
fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uring"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start uring");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the announcement");
    let addr = line.trim().strip_prefix("listening on ").map(str::to_owned);
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("{args:?}: no announcement: {line:?}");
    };
    (child, addr)
}

fn stop(mut child: Child) {
    // SAFETY: kill has no memory arguments; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}

/// How many of the process's descriptors are sockets.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn fixed_files_keeps_accepted_connections_out_of_the_descriptor_table() {
    skip_without_flags!(&["--fixed-files"]);
    for (args, direct) in [(&["--fixed-files"][..], true), (&[][..], false)] {
        let (child, addr) = start(args);
        let before = sockets(child.id());
        let mut conns: Vec<TcpStream> = (0..10)
            .map(|_| TcpStream::connect(&addr).expect("connect"))
            .collect();
        for (i, c) in conns.iter_mut().enumerate() {
            let msg = format!("conn {i}");
            c.write_all(msg.as_bytes()).expect("write");
            let mut reply = vec![0u8; msg.len()];
            c.read_exact(&mut reply).expect("the echo");
            assert_eq!(reply, msg.to_uppercase().as_bytes());
        }
        let during = sockets(child.id());
        if direct {
            assert_eq!(
                during, before,
                "10 connections served, none in /proc/PID/fd"
            );
        } else {
            assert_eq!(
                during,
                before + 10,
                "without the flag each one has a descriptor"
            );
        }
        stop(child);
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is the empty set, which sched_getaffinity
    // fills; its size is passed.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: CPU_ISSET reads inside the set for a cpu below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

#[test]
fn sqpoll_cpu_pins_the_poller_to_that_cpu() {
    let cpu = *allowed_cpus().last().expect("a CPU");
    let cpu_arg = cpu.to_string();
    let args = ["--sqpoll", "--sqpoll-cpu", &cpu_arg];
    skip_without_flags!(&args);
    let (child, addr) = start(&args);
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.write_all(b"pin").expect("write");
    let mut reply = [0u8; 3];
    conn.read_exact(&mut reply).expect("the echo");
    let pid = child.id();
    let poller = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read tasks")
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.starts_with("iou-sqp")))
        .expect("an iou-sqp thread");
    let status = std::fs::read_to_string(poller.join("status")).expect("status");
    let cpus = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim)
        .expect("Cpus_allowed_list");
    assert_eq!(cpus, cpu_arg, "the poller runs on CPU {cpu} only");
    stop(child);
}

/// A wait for 8 CQEs with a minimum timeout returns once the bound has
/// passed with the one that came, neither at once nor at the overall
/// timeout; the model's `--min-wait` asks for a batch this way.
#[test]
fn min_wait_ends_a_batch_wait_after_the_bound_with_what_has_come() {
    skip_without_flags!(&["--min-wait", "50"]);
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let (mut peer, ours) = UnixStream::pair().expect("socketpair");
    let mut buf = [0u8; 16];
    let recv = opcode::Recv::new(Fd(ours.as_raw_fd()), buf.as_mut_ptr(), 16)
        .build()
        .user_data(RECV);
    submit_one(&mut ring, &recv);
    peer.write_all(b"one").expect("write");
    let overall = Timespec::new().sec(10);
    let args = SubmitArgs::new().min_wait_usec(300_000).timespec(&overall);
    let started = Instant::now();
    ring.submitter()
        .submit_with_args(8, &args)
        .expect("io_uring_enter(min_wait)");
    let waited = started.elapsed();
    assert_eq!(ring.completion().count(), 1, "the one CQE that came");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "waited {waited:?}: about the 300 ms bound"
    );
}

/// A ring of provided buffers of `size` bytes in `storage`, registered with
/// `flags` as group `GROUP`: ring position `p` holds buffer id `bids[p]`
/// (`bids` a permutation of `0..count`). The mapping is leaked with the
/// test's ring.
fn provide(ring: &IoUring, storage: &mut [u8], bids: &[u16], size: usize, flags: u16) -> bool {
    let count = bids.len() as u16;
    let len = count as usize * std::mem::size_of::<BufRingEntry>();
    // SAFETY: an anonymous private mapping, page-aligned as the kernel wants.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(ptr, libc::MAP_FAILED, "mmap");
    let entries: *mut BufRingEntry = ptr.cast();
    // SAFETY: the mapping holds `count` entries and outlives the ring.
    match unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(ptr as u64, count, GROUP, flags)
    } {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return false,
        Err(e) => panic!("io_uring_register(PBUF_RING): {e}"),
    }
    for (position, &bid) in bids.iter().enumerate() {
        // SAFETY: `position < count`, inside the mapping, beyond the tail.
        let entry = unsafe { &mut *entries.add(position) };
        entry.set_addr(storage[bid as usize * size..].as_mut_ptr() as u64);
        entry.set_len(size as u32);
        entry.set_bid(bid);
    }
    // SAFETY: the tail is the u16 the kernel reads in the first entry.
    unsafe { (*(BufRingEntry::tail(entries) as *const AtomicU16)).store(count, Ordering::Release) };
    true
}

#[test]
fn incremental_buffers_put_small_receives_in_one_buffer() {
    const IOU_PBUF_RING_INC: u16 = 2;
    skip_without_flags!(&["--incremental-buffers"]);
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    let mut storage = vec![0u8; 2 * 4096];
    assert!(
        provide(&ring, &mut storage, &[0, 1], 4096, IOU_PBUF_RING_INC),
        "PBUF_RING_INC"
    );
    let (mut peer, ours) = UnixStream::pair().expect("socketpair");
    let recv = opcode::RecvMulti::new(Fd(ours.as_raw_fd()), GROUP)
        .build()
        .user_data(RECV);
    submit_one(&mut ring, &recv);
    let mut offset = 0;
    for msg in [&b"first"[..], b"second", b"third"] {
        peer.write_all(msg).expect("write");
        let cqe = next_cqe(&mut ring).expect("a CQE per arrival");
        assert_eq!(cqe.result(), msg.len() as i32);
        assert_eq!(
            cqueue::buffer_select(cqe.flags()),
            Some(0),
            "the same buffer"
        );
        assert!(
            cqueue::buffer_more(cqe.flags()),
            "F_BUF_MORE: the kernel keeps filling it"
        );
        assert_eq!(
            &storage[offset..offset + msg.len()],
            msg,
            "right after the last"
        );
        offset += msg.len();
    }
}

#[test]
fn a_bundle_fills_consecutive_ring_entries_and_names_the_first() {
    skip_without_flags!(&["--bundle"]);
    const SIZE: usize = 512;
    let mut ring = IoUring::new(8).expect("io_uring_setup");
    // Ring order is not id order: position p holds buffer `order[p]`.
    let order = [2usize, 0, 3, 1, 6, 4, 7, 5];
    let bids = order.map(|bid| bid as u16);
    let mut storage = vec![0u8; order.len() * SIZE];
    assert!(provide(&ring, &mut storage, &bids, SIZE, 0));
    let (mut peer, ours) = UnixStream::pair().expect("socketpair");
    let sent: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    peer.write_all(&sent).expect("write");
    let recv = opcode::RecvMultiBundle::new(Fd(ours.as_raw_fd()), GROUP)
        .build()
        .user_data(RECV);
    submit_one(&mut ring, &recv);
    // Each CQE names the buffer at the ring position where its bytes begin;
    // they fill that buffer and the ones after it in ring order, each full
    // but the last, and the next CQE begins at the next position.
    let mut position = 0;
    let mut received = Vec::new();
    let mut widest = 0;
    while received.len() < sent.len() {
        let cqe = next_cqe(&mut ring).expect("a CQE for the queued bytes");
        assert!(cqe.result() > 0, "res {}", cqe.result());
        assert!(cqueue::more(cqe.flags()), "still armed");
        assert_eq!(
            cqueue::buffer_select(cqe.flags()),
            Some(order[position] as u16),
            "the CQE names the buffer at ring position {position}"
        );
        let mut left = cqe.result() as usize;
        let mut spanned = 0;
        while left > 0 {
            let take = left.min(SIZE);
            let at = order[position] * SIZE;
            received.extend_from_slice(&storage[at..at + take]);
            left -= take;
            position += 1;
            spanned += 1;
        }
        widest = widest.max(spanned);
    }
    assert_eq!(received, sent, "in ring order, not id order");
    assert!(widest > 1, "one CQE covered {widest} buffers");
    // The next receive starts at the next ring position.
    peer.write_all(b"next").expect("write");
    let cqe = next_cqe(&mut ring).expect("a CQE per arrival");
    assert_eq!(cqe.result(), 4);
    assert_eq!(
        cqueue::buffer_select(cqe.flags()),
        Some(order[position] as u16)
    );
    let at = order[position] * SIZE;
    assert_eq!(&storage[at..at + 4], b"next");
}

/// `strace -e inject=io_uring_setup:error=EINVAL` makes the kernel look like
/// one without `IORING_SETUP_DEFER_TASKRUN`.
#[test]
fn a_kernel_without_a_flags_feature_gets_its_name_and_exit_status_2() {
    let strace = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status();
    if !strace.is_ok_and(|s| s.success()) {
        eprintln!("SKIP: strace is not installed; it injects the EINVAL");
        return;
    }
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null"])
        .args(["-e", "inject=io_uring_setup:error=EINVAL"])
        .arg(env!("CARGO_BIN_EXE_uring"))
        .arg("--defer-taskrun")
        .stdin(Stdio::null())
        .output()
        .expect("run uring under strace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("--defer-taskrun")
            && stderr.contains("IORING_SETUP_DEFER_TASKRUN")
            && stderr.contains("6.1"),
        "the message names the flag, the feature and its kernel: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing announced");
}

/// Bundles walk whole buffers in ring order; incremental buffers are taken a
/// part at a time. The command line refuses the pair (and bundles without
/// provided buffers) before any ring is made.
#[test]
fn bundle_is_refused_with_incremental_buffers_and_in_single_mode() {
    for (args, names) in [
        (
            &["--bundle", "--incremental-buffers"][..],
            "--incremental-buffers",
        ),
        (&["--mode", "single", "--bundle"], "--mode multishot"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_uring"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run uring");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--bundle") && stderr.contains(names),
            "{args:?}: the message names --bundle and {names}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing announced");
    }
}
