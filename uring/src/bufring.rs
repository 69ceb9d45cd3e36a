//! The provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19): an
//! array of `{addr, len, bid}` entries in memory we share with the kernel,
//! whose tail we advance to hand buffers over. A multishot RECV takes the
//! next one for each CQE and names it in the CQE's flags; we give it back
//! once its bytes are copied.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

pub struct BufRing {
    entries: *mut BufRingEntry,
    count: u16,
    /// Our copy of the tail; the kernel reads the shared one.
    tail: u16,
    /// Bytes per buffer.
    size: usize,
    storage: Vec<u8>,
}

impl BufRing {
    /// `count` buffers of `size` bytes (`count` a power of two, as the kernel
    /// requires), registered as group `group`, all handed to the kernel.
    pub fn register(ring: &IoUring, count: u16, size: usize, group: u16) -> io::Result<BufRing> {
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
            storage: vec![0; count as usize * size],
        };
        // SAFETY: the mapping holds `count` entries and lives until `bufs`
        // is dropped, which `serve` arranges after the ring is closed.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, count, group, 0)
        }
        .map_err(|e| lab::sys::named(e, "io_uring_register(PBUF_RING)".into()))?;
        for bid in 0..count {
            bufs.give_back(bid);
        }
        Ok(bufs)
    }

    pub fn buffer(&mut self, bid: u16) -> &mut [u8] {
        let at = bid as usize * self.size;
        &mut self.storage[at..at + self.size]
    }

    /// Hands buffer `bid` to the kernel again.
    pub fn give_back(&mut self, bid: u16) {
        let size = self.size as u32;
        let addr = self.buffer(bid).as_mut_ptr() as u64;
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index < count`, inside the mapping; the kernel reads
        // entries only up to the tail, which does not cover this one yet.
        let entry = unsafe { &mut *self.entries.add(index) };
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
