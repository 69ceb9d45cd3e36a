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

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The kernel's `IOU_PBUF_RING_INC` (`io_uring_register_pbuf_ring_flags`).
const IOU_PBUF_RING_INC: u16 = 2;

pub struct BufRing {
    entries: *mut BufRingEntry,
    count: u16,
    /// Our copy of the tail; the kernel reads the shared one.
    tail: u16,
    /// Bytes per buffer.
    size: usize,
    storage: Vec<u8>,
    /// Incremental: how much of each buffer the kernel has filled so far.
    filled: Vec<usize>,
    /// Buffers handed to the kernel so far (`0..handed`); the others'
    /// pages have never been touched.
    handed: u16,
}

// SAFETY: the mapping and the storage belong to this value alone; the kernel
// reads them through the ring, which moves to the same thread with it.
unsafe impl Send for BufRing {}

impl BufRing {
    /// `count` buffers of `size` bytes (`count` a power of two, as the kernel
    /// requires), registered as group `group`, all handed to the kernel.
    pub fn register(
        ring: &IoUring,
        count: u16,
        size: usize,
        group: u16,
        incremental: bool,
    ) -> io::Result<BufRing> {
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
            filled: vec![0; count as usize],
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

    /// The `n` bytes a RECV's CQE says it put in buffer `bid`, handed to
    /// `copy`; then the buffer is given back if the kernel is done with it.
    /// `buf_more`: the CQE's `IORING_CQE_F_BUF_MORE` (incremental: the
    /// kernel keeps filling this buffer, after these bytes).
    pub fn received(&mut self, bid: u16, n: usize, buf_more: bool, copy: impl FnOnce(&mut [u8])) {
        let at = bid as usize * self.size + self.filled[bid as usize];
        copy(&mut self.storage[at..at + n]);
        if buf_more {
            self.filled[bid as usize] += n;
        } else {
            self.filled[bid as usize] = 0;
            self.give_back(bid);
        }
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
