//! The accept path's wake-ups, in order, per thread: which `epoll_wait`
//! returns were followed by `accept4` calls, and whether any of those got a
//! connection. Counts alone cannot say it (one wake-up may accept several
//! connections, another none), so this samples every return of `accept4`,
//! `epoll_wait` and `epoll_pwait` of the server's tree
//! (`syscalls:sys_exit_*` tracepoints, `sample_period = 1`,
//! `PERF_SAMPLE_TID | PERF_SAMPLE_RAW`: the thread and the return value)
//! into a perf ring buffer, and replays them.
//!
//! One buffer per thread, attached when the window begins (an event loop's
//! threads and a prefork server's workers exist by then); the thread's
//! other events write into it (`PERF_EVENT_IOC_SET_OUTPUT`). A thread
//! writes its records in the order it makes the calls, so its sequence is
//! read back in order without timestamps. Not inherited: the kernel refuses
//! to map the buffer of an inherited per-thread event (`EINVAL`: every
//! descendant would write into one buffer), so a thread created inside the
//! window is not traced, and `threads_untraced` says how many were. The
//! buffers are drained every few milliseconds; a full one drops records
//! and says how many (`PERF_RECORD_LOST`): then the figures are short by
//! that many, and say so.
//!
//! A wake-up here is one pass of an event loop: an `epoll_wait` return and
//! the calls up to the next one. It is a listener wake-up if it called
//! `accept4`, and wasted if none of those returned a connection. A thread
//! that never calls `epoll_wait` blocks in `accept4` itself: each return is
//! a wake-up, wasted if it returned no connection.
//!
//! The herd also has a form no syscall return shows: a waiter woken for a
//! listener another loop has drained meanwhile re-checks it in the kernel
//! (`epoll_wait` polls each ready item before reporting it; blocking
//! `accept` re-checks the queue), finds nothing, and sleeps again. So the
//! thread's switches to sleep (`sched:sched_switch` with a sleeping
//! `prev_state`, sampled the same way) are replayed too, with the entries
//! of the same calls (`syscalls:sys_enter_*`): every sleep inside one
//! `epoll_wait` or `accept4` call beyond the first is a wake-up that went
//! back to sleep (`kernel_wasted_wakes`). The entries keep a sleep outside
//! those calls (a blocking server's `read` between two `accept4`) from
//! counting as one.
//!
//! Each record is also stamped on `CLOCK_MONOTONIC` (`PERF_SAMPLE_TIME`
//! with `use_clockid`), so every `accept4` that returned a connection is
//! kept with its thread and time (`AcceptLog`): a client that noted its own
//! connections on the same clock can tell which loop served which
//! (`account::landed`).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::measurement::WakeCounts;

use super::perf::{open_attr, tree_tasks, PerfEventAttr, PERF_TYPE_TRACEPOINT};
use super::tracefs::{self, tracepoint_id};

const PERF_SAMPLE_TID: u64 = 1 << 1;
const PERF_SAMPLE_TIME: u64 = 1 << 2;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
/// `perf_event_attr.use_clockid`, bit 25 of the flags word: `time` is read
/// from `clockid` instead of the perf clock.
const ATTR_FLAG_USE_CLOCKID: u64 = 1 << 25;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
/// `_IO('$', 1)`, `_IO('$', 5)`: `libc` does not define them.
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
/// Offsets of `data_head` and `data_tail` in `struct perf_event_mmap_page`
/// (the first page of the mapping; the records follow it).
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
/// Pages of records per buffer (a power of two): 2 MiB with 4 KiB pages,
/// about 40 000 records, drained every `DRAIN_EVERY`.
const DATA_PAGES: usize = 512;
/// How often `Window` drains the buffers while the window runs.
pub const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(10);
/// Attach passes tried before giving up on a tree whose threads keep changing.
const ATTACH_ATTEMPTS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    Accept,
    Wait,
    /// Entry into `accept4`, `epoll_wait` or `epoll_pwait`.
    Enter,
    /// `sched_switch` away from the thread.
    Switch,
}

/// One thread's pass in progress: its `accept4` calls, and how many of
/// them returned a connection.
#[derive(Default)]
struct Pass {
    accepts: u64,
    got: u64,
}

#[derive(Default)]
struct Thread {
    /// Set once the thread returned from `epoll_wait`: an event loop.
    waits: bool,
    pass: Pass,
    /// Times the thread went to sleep inside the traced call it is in.
    sleeps: u64,
}

/// The connections the trace saw accepted, each with its thread and time,
/// and each traced thread's CPU time over the trace.
#[derive(Clone, Debug, Default)]
pub struct AcceptLog {
    /// (thread id, `CLOCK_MONOTONIC` ns of the `accept4` return), in the
    /// order the buffers were read (sort before searching).
    pub accepts: Vec<(u32, u64)>,
    /// Thread id → nanoseconds on a CPU between attach and finish
    /// (`/proc/TID/schedstat`); a thread that exited meanwhile is missing.
    pub cpu_ns: HashMap<u32, u64>,
}

/// Sampled syscall returns of a process tree, replayed per thread.
pub struct WakeTrace {
    /// Tracepoint id (`common_type` of a record) → which call it is.
    calls: Vec<(u16, Call)>,
    /// Where `ret` sits in a syscall return's raw data, and `prev_state` in
    /// a switch's (from the tracepoints' formats).
    ret_offset: usize,
    prev_state_offset: usize,
    events: Vec<OwnedFd>,
    buffers: Vec<RingBuffer>,
    root: i32,
    attached: Vec<i32>,
    threads: HashMap<u32, Thread>,
    counts: WakeCounts,
    log: AcceptLog,
    /// Each attached thread's `schedstat` CPU time at attach.
    cpu_at_attach: HashMap<u32, u64>,
}

impl WakeTrace {
    /// Attaches to every thread of the tree rooted at `root`, recording at
    /// once. `Err` carries the reason, to be reported as `n/a (reason)`.
    pub fn attach(root: i32) -> Result<WakeTrace, String> {
        let mut calls = Vec::new();
        for (name, call) in [
            ("sys_exit_accept4", Call::Accept),
            ("sys_exit_epoll_wait", Call::Wait),
            ("sys_exit_epoll_pwait", Call::Wait),
            ("sys_enter_accept4", Call::Enter),
            ("sys_enter_epoll_wait", Call::Enter),
            ("sys_enter_epoll_pwait", Call::Enter),
        ] {
            if let Some(id) = tracepoint_id("syscalls", name) {
                let id = u16::try_from(id).map_err(|_| format!("tracepoint {name}: id {id}"))?;
                calls.push((id, call));
            }
        }
        if !calls.iter().any(|(_, c)| *c == Call::Accept) {
            return Err(match tracefs::root() {
                Err(reason) => reason,
                Ok(root) => format!("{root}/events has no syscalls:sys_exit_accept4"),
            });
        }
        let ret_offset = field_offset("syscalls", "sys_exit_accept4", "ret")
            .ok_or("syscalls:sys_exit_accept4 has no `ret` field in its format")?;
        let switch = tracepoint_id("sched", "sched_switch")
            .and_then(|id| u16::try_from(id).ok())
            .ok_or("no sched:sched_switch tracepoint")?;
        calls.push((switch, Call::Switch));
        let prev_state_offset = field_offset("sched", "sched_switch", "prev_state")
            .ok_or("sched:sched_switch has no `prev_state` field in its format")?;
        let mut trace = WakeTrace {
            calls,
            ret_offset,
            prev_state_offset,
            events: Vec::new(),
            buffers: Vec::new(),
            root,
            attached: Vec::new(),
            threads: HashMap::new(),
            counts: WakeCounts::default(),
            log: AcceptLog::default(),
            cpu_at_attach: HashMap::new(),
        };
        for _ in 0..ATTACH_ATTEMPTS {
            let before = tree_tasks(root).map_err(|e| e.to_string())?;
            trace.events.clear();
            trace.buffers.clear();
            for &tid in &before {
                match trace.attach_thread(tid) {
                    Ok(()) => {}
                    // Exited since the listing: gone from the next one too.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            let after = tree_tasks(root).map_err(|e| e.to_string())?;
            if after.iter().all(|tid| before.contains(tid)) {
                trace.cpu_at_attach = cpu_times(&before);
                trace.attached = before;
                return Ok(trace);
            }
        }
        Err(format!(
            "threads of pid {root} kept appearing while the wake-up trace was attached"
        ))
    }

    /// Opens every call's event on `tid`, the first with the buffer, the
    /// others writing into it.
    fn attach_thread(&mut self, tid: i32) -> io::Result<()> {
        let mut first: Option<i32> = None;
        for &(id, _) in &self.calls {
            let attr = PerfEventAttr {
                kind: PERF_TYPE_TRACEPOINT,
                size: std::mem::size_of::<PerfEventAttr>() as u32,
                config: u64::from(id),
                sample_period: 1,
                sample_type: PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_RAW,
                flags: ATTR_FLAG_USE_CLOCKID,
                clockid: libc::CLOCK_MONOTONIC,
                ..PerfEventAttr::default()
            };
            let fd = open_attr(&attr, tid, &format!("sampled tracepoint {id}"))?;
            match first {
                None => {
                    self.buffers.push(RingBuffer::map(&fd)?);
                    first = Some(fd.as_raw_fd());
                }
                Some(output) => ioctl(&fd, PERF_EVENT_IOC_SET_OUTPUT, output as libc::c_ulong)?,
            }
            self.events.push(fd);
        }
        Ok(())
    }

    /// Replays what the buffers hold and frees their space.
    pub fn drain(&mut self) {
        let mut records = Vec::new();
        for buffer in &self.buffers {
            buffer.read_into(&mut records);
        }
        for record in records {
            self.replay(&record);
        }
    }

    /// Stops recording, replays the rest, and closes the passes in progress.
    pub fn finish(self) -> io::Result<WakeCounts> {
        self.finish_with_log().map(|(counts, _)| counts)
    }

    /// `finish`, and the connections accepted with their threads and times.
    pub fn finish_with_log(mut self) -> io::Result<(WakeCounts, AcceptLog)> {
        for fd in &self.events {
            ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)?;
        }
        self.drain();
        let now = cpu_times(&self.attached);
        self.log.cpu_ns = self
            .cpu_at_attach
            .iter()
            .filter_map(|(tid, before)| Some((*tid, now.get(tid)?.saturating_sub(*before))))
            .collect();
        if let Ok(now) = tree_tasks(self.root) {
            self.counts.threads_untraced = now
                .iter()
                .filter(|tid| !self.attached.contains(tid))
                .count() as u64;
        }
        for thread in std::mem::take(&mut self.threads).into_values() {
            if thread.waits {
                close_pass(&mut self.counts, &thread.pass);
            } else {
                // Never in `epoll_wait`: blocking accept, where each return
                // is a wake-up of its own.
                self.counts.listener_wakes += thread.pass.accepts;
                self.counts.wasted_wakes += thread.pass.accepts - thread.pass.got;
            }
        }
        Ok((self.counts, self.log))
    }

    fn replay(&mut self, record: &[u8]) {
        let kind = u32::from_ne_bytes(record[0..4].try_into().expect("4 bytes"));
        match kind {
            PERF_RECORD_LOST if record.len() >= 24 => {
                self.counts.lost_records +=
                    u64::from_ne_bytes(record[16..24].try_into().expect("8 bytes"));
            }
            PERF_RECORD_SAMPLE => {
                // header (8), pid (4), tid (4), time (8), raw size (4), raw data.
                let Some(raw) = record.get(28..) else { return };
                let tid = u32::from_ne_bytes(record[12..16].try_into().expect("4 bytes"));
                let time = u64::from_ne_bytes(record[16..24].try_into().expect("8 bytes"));
                let Some(common_type) = raw.get(0..2) else {
                    return;
                };
                let id = u16::from_ne_bytes(common_type.try_into().expect("2 bytes"));
                let Some(&(_, call)) = self.calls.iter().find(|(known, _)| *known == id) else {
                    return;
                };
                // `ret` of a return, `prev_state` of a switch: both a
                // long. An entry's arguments are not read.
                let at = match call {
                    Call::Switch => self.prev_state_offset,
                    Call::Accept | Call::Wait => self.ret_offset,
                    Call::Enter => return self.on_record(tid, call, 0),
                };
                let Some(value) = raw.get(at..at + 8) else {
                    return;
                };
                let value = i64::from_ne_bytes(value.try_into().expect("8 bytes"));
                if call == Call::Accept && value >= 0 {
                    self.log.accepts.push((tid, time));
                }
                self.on_record(tid, call, value);
            }
            _ => {}
        }
    }

    fn on_record(&mut self, tid: u32, call: Call, value: i64) {
        let counts = &mut self.counts;
        let thread = self.threads.entry(tid).or_default();
        if matches!(call, Call::Accept | Call::Wait) {
            // The call slept `sleeps` times before it returned: all but the
            // last wake-up found nothing and slept again.
            counts.kernel_wasted_wakes += thread.sleeps.saturating_sub(1);
            thread.sleeps = 0;
        }
        match call {
            Call::Enter => thread.sleeps = 0,
            Call::Switch => {
                // prev_state 0 is TASK_RUNNING: preempted, not asleep.
                if value != 0 {
                    thread.sleeps += 1;
                }
            }
            Call::Wait => {
                // Accepts seen before this thread's first return from the
                // wait (the window began mid-pass) count as one pass.
                close_pass(counts, &std::mem::take(&mut thread.pass));
                thread.waits = true;
            }
            Call::Accept => {
                if value >= 0 {
                    counts.accepted += 1;
                    thread.pass.got += 1;
                } else if value == -i64::from(libc::EAGAIN) {
                    counts.accept_eagain += 1;
                }
                thread.pass.accepts += 1;
            }
        }
    }
}

fn close_pass(counts: &mut WakeCounts, pass: &Pass) {
    if pass.accepts > 0 {
        counts.listener_wakes += 1;
        if pass.got == 0 {
            counts.wasted_wakes += 1;
        }
    }
}

/// Each thread's time on a CPU so far, in nanoseconds: the first field of
/// `/proc/TID/schedstat` (a thread of any process in the tree; one that
/// has exited is left out).
fn cpu_times(tids: &[i32]) -> HashMap<u32, u64> {
    tids.iter()
        .filter_map(|&tid| {
            let text = fs::read_to_string(format!("/proc/{tid}/schedstat")).ok()?;
            let ns = text.split_whitespace().next()?.parse().ok()?;
            Some((tid as u32, ns))
        })
        .collect()
}

/// The byte offset of `field` in the records of tracepoint
/// `category:name`, from its format file, whose lines read
/// `field:long ret; offset:16; size:8; signed:1;` (tab-separated).
fn field_offset(category: &str, name: &str, field: &str) -> Option<usize> {
    let format = tracefs::format(category, name)?;
    let declared = format!(" {field};");
    let line = format.lines().find(|l| l.contains(&declared))?;
    let offset = line.split("offset:").nth(1)?.split(';').next()?;
    offset.trim().parse().ok()
}

fn ioctl(fd: &OwnedFd, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these perf ioctls take an integer argument, no pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("ioctl(perf event fd {}, {request:#x}): {e}", fd.as_raw_fd()),
        ));
    }
    Ok(())
}

/// A perf ring buffer: one control page, then `DATA_PAGES` of records that
/// the kernel writes at `data_head` and we free by advancing `data_tail`.
struct RingBuffer {
    base: NonNull<u8>,
    page: usize,
}

impl RingBuffer {
    fn map(fd: &OwnedFd) -> io::Result<RingBuffer> {
        // SAFETY: sysconf has no memory arguments.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = page * (1 + DATA_PAGES);
        // SAFETY: a shared mapping of a perf event descriptor, no address hint.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mmap(perf event fd {}, {len} bytes): {e}", fd.as_raw_fd()),
            ));
        }
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(RingBuffer { base, page })
    }

    fn control(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: `offset` is DATA_HEAD or DATA_TAIL, 8-aligned u64 fields of
        // the control page, mapped for the life of `self`; the kernel
        // updates them concurrently, hence atomics.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// Appends every complete record in the buffer to `out`, each copied
    /// out (a record may wrap around the buffer's end), and frees them.
    fn read_into(&self, out: &mut Vec<Vec<u8>>) {
        let size = self.page * DATA_PAGES;
        // Acquire: the records up to `head` are written before it is published.
        let head = self.control(DATA_HEAD).load(Ordering::Acquire);
        let mut tail = self.control(DATA_TAIL).load(Ordering::Relaxed);
        // SAFETY: the data area follows the control page, `size` bytes long.
        let data = unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.page), size) };
        let byte = |at: u64| data[(at % size as u64) as usize];
        while tail + 8 <= head {
            let header: Vec<u8> = (0..8).map(|i| byte(tail + i)).collect();
            let len = u16::from_ne_bytes([header[6], header[7]]) as u64;
            if len < 8 || tail + len > head {
                break;
            }
            out.push((0..len).map(|i| byte(tail + i)).collect());
            tail += len;
        }
        // Release: we are done reading what precedes `tail`.
        self.control(DATA_TAIL).store(tail, Ordering::Release);
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are those of our own mapping, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.page * (1 + DATA_PAGES));
        }
    }
}
