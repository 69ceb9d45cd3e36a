//! The provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): an
//! array of `{addr, len, bid}` entries in memory we share with the kernel,
//! whose tail we advance to hand buffers over. A multishot RECV takes the
//! next one for each CQE and names it in the CQE's flags; we give it back
//! once its bytes are copied.
//!
//! `--incremental-buffers`
//! (`IOU_PBUF_RING_INC`, Linux 6.12): a RECV takes from the head buffer only
//! the bytes it brings, and the next RECV continues in the same buffer
//! (`IORING_CQE_F_BUF_MORE` while some is left), so a small message costs
//! its size in buffer memory, not a whole buffer's pages; and the kernel is
//! handed one buffer at first, more only when it finds none (`-ENOBUFS`,
//! `grow`), so a quiet loop touches the pages of a few buffers, not all.
//!
//! `--bundle` (`IORING_RECVSEND_BUNDLE`, Linux 6.10): one RECV takes as many
//! buffers as the bytes queued need, from the ring's head on, and its CQE
//! names only the first. The bytes fill the buffers that follow it in ring
//! order (not id order), each to the length its entry had when the kernel
//! took it; only the first can be shorter than a whole buffer (the kernel
//! cuts it to the bytes queued and writes that length into the entry) and
//! only the last is partly filled. So we give buffers back in ring order
//! only, each once every buffer taken before it is back: the entry at each
//! position then always holds the same buffer (its id is its position), and
//! no entry is rewritten before the CQE that used it has been read.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The kernel's `IOU_PBUF_RING_INC` (`io_uring_register_pbuf_ring_flags`).
const IOU_PBUF_RING_INC: u16 = 2;

/// How RECVs take the ring's buffers, which decides how we give them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consume {
    /// One buffer per CQE, given back once its bytes are copied.
    Whole,
    /// `--incremental-buffers`: a RECV takes part of the head buffer.
    Incremental,
    /// `--bundle`: consecutive buffers per CQE, given back in ring order.
    Bundle,
}

pub struct BufRing {
    entries: *mut BufRingEntry,
    count: u16,
    /// Our copy of the tail; the kernel reads the shared one.
    tail: u16,
    /// Bytes per buffer.
    size: usize,
    storage: Vec<u8>,
    consume: Consume,
    /// Incremental: how much of each buffer the kernel has filled so far.
    filled: Vec<usize>,
    /// Bundle: the buffers whose bytes we have copied, not yet given back
    /// because one taken before them is not back yet.
    copied: Vec<bool>,
    /// Buffers handed to the kernel so far (`0..handed`); the others'
    /// pages have never been touched.
    handed: u16,
}

// SAFETY: the mapping and the storage belong to this value alone; the kernel
// reads them through the ring, which moves to the same thread with it.
unsafe impl Send for BufRing {}

impl BufRing {
    /// `count` buffers of `size` bytes (`count` a power of two, as the kernel
    /// requires), registered as group `group`, all handed to the kernel
    /// (incremental: the first), buffer `i` at ring position `i`.
    pub fn register(
        ring: &IoUring,
        count: u16,
        size: usize,
        group: u16,
        consume: Consume,
    ) -> io::Result<BufRing> {
        let incremental = consume == Consume::Incremental;
        let len = count as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping with no address hint; the
        // kernel wants the ring page-aligned, which mmap gives.
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
        if ptr == libc::MAP_FAILED {
            return Err(lab::sys::named(
                io::Error::last_os_error(),
                "mmap(provided-buffer ring)".into(),
            ));
        }
        let mut bufs = BufRing {
            entries: ptr.cast(),
            count,
            tail: 0,
            size,
            // Zeroed by the allocator's fresh mapping: a page costs memory
            // only once the kernel first writes into it.
            storage: vec![0; count as usize * size],
            consume,
            filled: match consume {
                Consume::Incremental => vec![0; count as usize],
                _ => Vec::new(),
            },
            copied: match consume {
                Consume::Bundle => vec![false; count as usize],
                _ => Vec::new(),
            },
            handed: if incremental { 1 } else { count },
        };
        let flags = if incremental { IOU_PBUF_RING_INC } else { 0 };
        // SAFETY: the mapping holds `count` entries and lives until `bufs`
        // is dropped, which `serve` arranges after the ring is closed.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, count, group, flags)
        }
        .map_err(|e| lab::sys::named(e, "io_uring_register(PBUF_RING)".into()))?;
        for bid in 0..bufs.handed {
            bufs.give_back(bid);
        }
        Ok(bufs)
    }

    /// A RECV found no buffer (`-ENOBUFS`): hand the kernel as many new
    /// ones as it has now, up to all of them.
    pub fn grow(&mut self) {
        let more = self.handed.min(self.count - self.handed);
        for bid in self.handed..self.handed + more {
            self.give_back(bid);
        }
        self.handed += more;
    }

    /// The `n` bytes a RECV's CQE says it put in buffer `bid` (bundle: from
    /// buffer `bid` on), handed to `copy` a buffer at a time; then the
    /// buffers the kernel is done with are given back. `buf_more`: the CQE's
    /// `IORING_CQE_F_BUF_MORE` (incremental: the kernel keeps filling this
    /// buffer, after these bytes).
    pub fn received(
        &mut self,
        bid: u16,
        n: usize,
        buf_more: bool,
        mut copy: impl FnMut(&mut [u8]),
    ) -> io::Result<()> {
        match self.consume {
            Consume::Whole => {
                let at = bid as usize * self.size;
                copy(&mut self.storage[at..at + n]);
                self.give_back(bid);
            }
            Consume::Incremental => {
                let at = bid as usize * self.size + self.filled[bid as usize];
                copy(&mut self.storage[at..at + n]);
                if buf_more {
                    self.filled[bid as usize] += n;
                } else {
                    self.filled[bid as usize] = 0;
                    self.give_back(bid);
                }
            }
            Consume::Bundle => {
                let mut position = bid;
                let mut left = n;
                // At most every buffer once: a CQE cannot name more bytes
                // than the ring holds.
                for _ in 0..self.count {
                    if left == 0 {
                        break;
                    }
                    // SAFETY: `position < count`, inside the mapping. The
                    // kernel wrote this entry's length, if at all, before it
                    // posted the CQE we are reading, and does not touch it
                    // again until we give the buffer back.
                    let len = unsafe { &*self.entries.add(position as usize) }.len() as usize;
                    let len = len.min(self.size).min(left);
                    let at = position as usize * self.size;
                    copy(&mut self.storage[at..at + len]);
                    self.copied[position as usize] = true;
                    left -= len;
                    position = (position + 1) & (self.count - 1);
                }
                if left > 0 {
                    return Err(io::Error::other(format!(
                        "a bundle of {n} bytes from buffer {bid}: more than the ring's buffers hold"
                    )));
                }
                // Back in ring order: the oldest buffer taken is the one at
                // the tail's position, a whole ring behind it.
                while self.copied[(self.tail & (self.count - 1)) as usize] {
                    let position = self.tail & (self.count - 1);
                    self.copied[position as usize] = false;
                    self.give_back(position);
                }
            }
        }
        Ok(())
    }

    /// Hands buffer `bid` to the kernel again.
    fn give_back(&mut self, bid: u16) {
        let size = self.size as u32;
        let addr = self.storage[bid as usize * self.size..].as_mut_ptr() as u64;
        let index = self.tail & (self.count - 1);
        // SAFETY: `index < count`, inside the mapping; the kernel reads
        // entries only up to the tail, which does not cover this one yet.
        let entry = unsafe { &mut *self.entries.add(index as usize) };
        entry.set_addr(addr);
        entry.set_len(size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the u16 the kernel reads in the first entry;
        // the Release store publishes the entry written above before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let len = self.count as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: our own mapping, unmapped once, after the ring is closed.
        unsafe { libc::munmap(self.entries.cast(), len) };
    }
}
