//! The listener's side of the loop: the ACCEPT, its completion, and what a
//! full descriptor table asks of a ring.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::types::{DestinationSlot, Fd, Fixed};
use io_uring::{cqueue, opcode, squeue};
use lab::net::{IoMode, Refusal};
use lab::policy::AcceptError;

use crate::serve::{tag, Loop, Op};
use crate::slot::{Slot, Sock};
use crate::Mode;

impl Loop<'_> {
    pub fn arm_accept(&mut self) {
        if self.accept_in_flight {
            return;
        }
        let listener = Fd(self.listener.as_raw_fd());
        // SOCK_CLOEXEC as accept4's flags; no SOCK_NONBLOCK: io_uring
        // waits for readiness itself, and socket calls never block us here.
        // --fixed-files: the kernel installs the socket in a free slot of
        // the ring's file table (IORING_FILE_INDEX_ALLOC), not in ours, and
        // `res` is that slot's index. No SOCK_CLOEXEC then: a direct
        // descriptor is never inherited, and the kernel refuses the flag
        // (EINVAL).
        let direct = self.features.fixed_files;
        let flags = if direct { 0 } else { libc::SOCK_CLOEXEC };
        let sqe = match self.mode {
            // SQE: ACCEPT listener  // CQE: res = new fd (or index) or
            // -errno, once.
            Mode::Single => {
                opcode::Accept::new(listener, std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(flags)
                    .file_index(direct.then(DestinationSlot::auto_target))
                    .build()
            }
            // SQE: ACCEPT listener, multishot  // CQE: res = new fd (or
            // index) or -errno, one per connection, F_MORE while still armed.
            Mode::Multishot => opcode::AcceptMulti::new(listener)
                .flags(flags)
                .allocate_file_index(direct)
                .build(),
        };
        self.pending.push_back(sqe.user_data(tag(Op::Accept, 0)));
        self.accept_in_flight = true;
    }

    /// Leaves the listener alone for `ACCEPT_PAUSE`: a TIMEOUT, whose CQE
    /// re-arms the ACCEPT. Re-arming at once would spin.
    fn pause_accepting(&mut self) {
        // SQE: TIMEOUT 100 ms  // CQE: res = -ETIME when it expires.
        let sqe = opcode::Timeout::new(&self.pause).build();
        self.pending
            .push_back(sqe.user_data(tag(Op::AcceptPause, 0)));
    }

    /// SQE: POLL_ADD listener, POLLIN  // CQE: res = revents once a
    /// connection is queued; then the ACCEPT is armed again.
    fn await_listener(&mut self) {
        let sqe = opcode::PollAdd::new(Fd(self.listener.as_raw_fd()), libc::POLLIN as u32).build();
        self.pending
            .push_back(sqe.user_data(tag(Op::ListenerReady, 0)));
    }

    /// CQE of an ACCEPT: `res` is the new descriptor or `-errno`, decided
    /// here as accept4's errno would be.
    pub fn on_accept(&mut self, res: i32, flags: u32) -> io::Result<()> {
        // A one-shot ACCEPT completes once; a multishot one stays armed
        // while F_MORE is set. Any error ends it (no F_MORE).
        let armed = self.mode == Mode::Multishot && cqueue::more(flags);
        if !armed {
            self.accept_in_flight = false;
        }
        if res >= 0 {
            let sock = if self.features.fixed_files {
                Sock::Direct(res as u32)
            } else {
                // SAFETY: the kernel installed a new descriptor for us that
                // nothing else owns.
                Sock::Fd(unsafe { OwnedFd::from_raw_fd(res) })
            };
            self.admit(sock);
            if !armed {
                self.arm_accept();
            }
            return Ok(());
        }
        let e = lab::sys::named(
            io::Error::from_raw_os_error(-res),
            format!("ACCEPT(fd {})", self.listener.as_raw_fd()),
        );
        match AcceptError::classify(&e).warned("uring", &e) {
            // EAGAIN: the kernel found nothing queued after all; EINTR.
            AcceptError::Drained | AcceptError::Retry => self.arm_accept(),
            // That one connection failed while queued: take the next.
            AcceptError::Skip => self.arm_accept(),
            // --fixed-files, ENFILE: the ring's file table is full. A direct
            // ACCEPT takes the connection first and a table slot after, so
            // the kernel has already closed the one it took (a refusal) and
            // an empty queue makes the next ACCEPT wait: re-arm.
            AcceptError::Exhausted if self.features.fixed_files => self.arm_accept(),
            // An accept takes a descriptor slot before it looks at the
            // queue: with our table full it fails whether or not a
            // connection is queued. A readiness loop accepts only once the
            // listener is readable; an ACCEPT is tried as soon as it is
            // submitted, so re-arming it at once would spin. Refuse a queued
            // connection with the spare; if none is queued, wait until one
            // is (a POLL_ADD on the listener), as a readiness loop would.
            AcceptError::Exhausted => {
                self.spare.refill();
                match self
                    .spare
                    .refuse_one(self.listener.as_raw_fd(), IoMode::NonBlocking)
                {
                    Refusal::Refused => self.arm_accept(),
                    Refusal::NothingPending => self.await_listener(),
                    Refusal::TableFull => self.pause_accepting(),
                }
            }
            // ENOBUFS, ENOMEM: nothing says when memory is back.
            AcceptError::BackOff => self.pause_accepting(),
            AcceptError::Fatal => return Err(e),
        }
        Ok(())
    }

    /// CQE of the TIMEOUT that paused accepting: `res` = -ETIME. Descriptors
    /// may have been freed meanwhile: take the spare back.
    pub fn on_pause_over(&mut self) {
        self.spare.refill();
        self.arm_accept();
    }

    fn admit(&mut self, sock: Sock) {
        if !self.stats.admit(self.max_conns) {
            // --max-conns reached: connection N+1 is closed at once.
            if let Sock::Direct(index) = sock {
                // SQE: CLOSE direct index  // CQE: only on failure.
                let close = opcode::Close::new(Fixed(index)).build();
                self.pending.push_back(
                    close
                        .flags(squeue::Flags::SKIP_SUCCESS)
                        .user_data(tag(Op::Close, 0)),
                );
            }
            return;
        }
        self.stats.served_by(self.index);
        let slot = Slot::new(sock, self.mode);
        let i = match self.free_slots.pop() {
            Some(i) => {
                self.conns[i] = Some(slot);
                i
            }
            None => {
                self.conns.push(Some(slot));
                self.conns.len() - 1
            }
        };
        self.arm_recv(i);
    }
}
