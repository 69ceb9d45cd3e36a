//! One connection's side of the loop: its RECV and SEND, each submission
//! beside its completion, back-pressure, and the two-step close.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::types::{CancelBuilder, Fd, Fixed};
use io_uring::{cqueue, opcode, squeue};
use lab::conn::{drop_on, Next};

use crate::serve::{tag, Loop, Op, BUF_GROUP};
use crate::slot::{Sending, Sock};
use crate::Mode;

impl Loop<'_> {
    pub fn arm_recv(&mut self, i: usize) {
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if slot.recv_in_flight || slot.starved || !slot.wants_recv() {
            return;
        }
        let (fd, fixed) = slot.sock.target();
        let room = slot.room();
        // Single mode: every slot has a buffer of its own; multishot: none.
        let sqe = match slot.recv_buf.as_mut() {
            // SQE: RECV fd, into the slot's buffer  // CQE: res = bytes, 0
            // at EOF, or -errno; once.
            Some(buf) => {
                let len = room.min(buf.len()) as u32;
                opcode::Recv::new(fd, buf.as_mut_ptr(), len).build()
            }
            // SQE: RECV fd, multishot, buffer from group BUF_GROUP  // CQE:
            // res = bytes (buffer id in flags), 0 at EOF, or -errno; one per
            // arrival, F_MORE while still armed.
            None if !self.features.bundle => opcode::RecvMulti::new(fd, BUF_GROUP).build(),
            // SQE: RECV fd, multishot bundle, buffers from group BUF_GROUP
            // // CQE: res = bytes, in consecutive ring entries from the
            // buffer named in flags; 0 at EOF, or -errno.
            None => opcode::RecvMultiBundle::new(fd, BUF_GROUP).build(),
        };
        self.pending
            .push_back(sqe.flags(fixed).user_data(tag(Op::Recv, i)));
        slot.recv_in_flight = true;
        slot.recv_cancelled = false;
    }

    /// CQE of a RECV on `conns[i]`, decided here as recv's return would be.
    pub fn on_readable(&mut self, i: usize, res: i32, flags: u32) {
        let mode = self.mode;
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if mode == Mode::Single || !cqueue::more(flags) {
            slot.recv_in_flight = false;
        }
        let picked = cqueue::buffer_select(flags);
        let mut next = Next::Keep;
        if res > 0 && !slot.closing {
            let n = res as usize;
            match (slot.recv_buf.take(), picked, self.bufs.as_mut()) {
                (Some(mut buf), _, _) => {
                    // Single mode. The RECV that wrote it has completed, so
                    // the buffer may be borrowed out of the slot meanwhile.
                    lab::echo::transform_in_place(&mut buf[..n]);
                    slot.queue_reply(&buf[..n]);
                    slot.recv_buf = Some(buf);
                }
                (None, Some(bid), Some(bufs)) => {
                    // Its bytes are copied into the reply, and the buffers
                    // the kernel is done with are handed back to it.
                    let copied = bufs.received(bid, n, cqueue::buffer_more(flags), |bytes| {
                        lab::echo::transform_in_place(bytes);
                        slot.queue_reply(bytes);
                    });
                    if let Err(e) = copied {
                        let e = lab::sys::named(e, format!("RECV({})", slot.sock.name()));
                        next = drop_on("uring", e);
                    }
                }
                // The kernel always names the buffer it picked; data without
                // one cannot be echoed, so this connection ends.
                (None, _, _) => {
                    let e = io::Error::other(format!(
                        "RECV({}): {n} bytes but no provided buffer named",
                        slot.sock.name()
                    ));
                    next = drop_on("uring", e);
                }
            }
        } else if let (Some(bid), Some(bufs)) = (picked, self.bufs.as_mut()) {
            // Data for a connection we are closing: dropped, buffers back.
            let n = res.max(0) as usize;
            if let Err(e) = bufs.received(bid, n, cqueue::buffer_more(flags), |_| {}) {
                lab::log!("uring: RECV({}): {e}", slot.sock.name());
            }
        }
        if res == 0 {
            // EOF: the peer shut down its write side. Send what is still
            // owed, then close (half-close). A multishot RECV ends here.
            slot.peer_closed = true;
        } else if res < 0 {
            let e = lab::sys::named(
                io::Error::from_raw_os_error(-res),
                format!("RECV({})", slot.sock.name()),
            );
            match -res {
                // Multishot: the provided-buffer ring ran dry and the kernel
                // ended this RECV. Re-armed after this round, once the
                // buffers its CQEs hold have been given back.
                libc::ENOBUFS if mode == Mode::Multishot => {
                    slot.starved = true;
                    self.starved.push(i);
                }
                // Our own ASYNC_CANCEL (back-pressure or close).
                libc::ECANCELED => {}
                // Nothing lost: submit again.
                libc::EINTR | libc::EAGAIN => {}
                _ if !slot.closing => next = drop_on("uring", e),
                _ => {}
            }
        }
        if next == Next::Close {
            self.close_conn(i);
        }
        self.after_io(i);
    }

    fn submit_send(&mut self, i: usize) {
        let skip = self.features.skip_send_cqe;
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        let (fd, fixed) = slot.sock.target();
        let rest = &slot.sending[slot.sent..];
        let send = opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32);
        // MSG_NOSIGNAL: a peer that closed gives -EPIPE, not a SIGPIPE.
        let sqe = if skip && !slot.congested {
            // SQE: SEND fd, `sending[sent..]`, MSG_DONTWAIT | MSG_WAITALL,
            // IOSQE_CQE_SKIP_SUCCESS  // CQE: none when it took every byte;
            // else res = the bytes it took (short) or -errno (-EAGAIN: none).
            // MSG_DONTWAIT: the kernel tries it once, inside our
            // io_uring_enter, and never parks it to wait for room (it fails
            // instead), so once the SQ has passed it the buffer is free.
            // MSG_WAITALL: taking fewer bytes than asked is then a failure,
            // which posts its CQE; a plain short send would be a success,
            // and silent.
            slot.send = Sending::Skipped;
            send.flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT | libc::MSG_WAITALL)
                .build()
                .flags(fixed | squeue::Flags::SKIP_SUCCESS)
        } else {
            // SQE: SEND fd, `sending[sent..]`, MSG_NOSIGNAL  // CQE: res =
            // bytes taken (a short send is possible) or -errno.
            slot.send = Sending::Posted;
            send.flags(libc::MSG_NOSIGNAL).build().flags(fixed)
        };
        self.pending.push_back(sqe.user_data(tag(Op::Send, i)));
    }

    /// Completion of a SEND on `conns[i]`, decided here as send's return
    /// would be: its CQE, or with `--skip-send-cqe` the silence that says
    /// it took every byte (`res` = all of them, `Loop::settle_skipped`).
    pub fn on_writable(&mut self, i: usize, res: i32) {
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        let skipped = matches!(slot.send, Sending::Skipped | Sending::Pushed);
        slot.send = Sending::Idle;
        if res >= 0 {
            self.stats.echoed(res as usize);
            if slot.took(res as usize) {
                slot.congested = false;
            } else if skipped {
                // Short: the socket's send buffer is full. The rest waits
                // for room in the kernel, as a SEND that posts its CQE.
                slot.congested = true;
            }
        } else {
            match -res {
                // A skipped SEND found no room: as a short one, above.
                libc::EAGAIN if skipped => slot.congested = true,
                // Nothing was sent: the rest is submitted again below.
                libc::EINTR | libc::EAGAIN => {}
                // Our own ASYNC_CANCEL at close.
                libc::ECANCELED => {}
                errno if !slot.closing => {
                    let e = lab::sys::named(
                        io::Error::from_raw_os_error(errno),
                        format!("SEND({})", slot.sock.name()),
                    );
                    drop_on("uring", e);
                    self.close_conn(i);
                }
                _ => {}
            }
        }
        self.after_io(i);
    }

    /// After any completion on `conns[i]`: free it if it is closing and done;
    /// otherwise send what is owed, apply or lift back-pressure, and close
    /// it once the peer has everything after its EOF.
    pub fn after_io(&mut self, i: usize) {
        let mode = self.mode;
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if slot.closing {
            if !slot.in_flight() {
                self.free_slot(i);
            }
            return;
        }
        if slot.send == Sending::Idle && slot.next_send() {
            self.submit_send(i);
        }
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if slot.is_finished() {
            self.close_conn(i);
            return;
        }
        if slot.recv_in_flight {
            // Multishot: back-pressure (at most 1 MiB of reply not yet sent
            // per connection). The armed RECV would keep posting data we have
            // no room for; cancel it, and re-arm once the peer has read (its
            // last CQE, -ECANCELED, clears the flag).
            if mode == Mode::Multishot && !slot.recv_cancelled && !slot.wants_recv() {
                slot.recv_cancelled = true;
                // SQE: ASYNC_CANCEL user_data of this RECV  // CQE: res = 0 or -ENOENT.
                let cancel = opcode::AsyncCancel2::new(CancelBuilder::user_data(tag(Op::Recv, i)));
                self.pending
                    .push_back(cancel.build().user_data(tag(Op::Cancel, i)));
            }
        } else {
            // Single: re-submitted after each completion, unless
            // back-pressure holds it (a one-shot RECV is then not
            // re-submitted). Multishot: re-armed after the kernel ended it
            // (no F_MORE: -ENOBUFS, a cancel, an error).
            self.arm_recv(i);
        }
    }

    /// Closes `conns[i]`, in two steps. The kernel may still be reading into
    /// or sending from this slot's buffers, and closing a descriptor does
    /// not end the operations in flight on it (they hold their own
    /// reference to the socket: a pending RECV would wait on forever). So
    /// first ASYNC_CANCEL every operation on the descriptor; the slot, its
    /// buffers and its descriptor stay until each has posted its last CQE
    /// (`free_slot`). Only then can the slot number, the descriptor number
    /// and the memory be reused, so a late CQE never lands on a newer
    /// connection: no generation counter is needed in `user_data`.
    pub fn close_conn(&mut self, i: usize) {
        let Some(slot) = self.conns[i].as_mut() else {
            return;
        };
        if slot.closing {
            return;
        }
        slot.closing = true;
        if slot.in_flight() {
            // SQE: ASYNC_CANCEL every request on fd  // CQE: res = how many
            // were found, or -ENOENT. Each cancelled one then posts -ECANCELED.
            let on = match &slot.sock {
                Sock::Fd(fd) => CancelBuilder::fd(Fd(fd.as_raw_fd())),
                Sock::Direct(index) => CancelBuilder::fd(Fixed(*index)),
            };
            let cancel = opcode::AsyncCancel2::new(on.all());
            self.pending
                .push_back(cancel.build().user_data(tag(Op::Cancel, i)));
        } else {
            self.free_slot(i);
        }
    }

    fn free_slot(&mut self, i: usize) {
        if let Some(Sock::Direct(index)) = self.conns[i].as_ref().map(|slot| &slot.sock) {
            let index = *index;
            // SQE: CLOSE direct index, IOSQE_CQE_SKIP_SUCCESS  // CQE: only
            // on failure, res = -errno. The table slot is free once it ran.
            let close = opcode::Close::new(Fixed(index)).build();
            self.pending.push_back(
                close
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(tag(Op::Close, i)),
            );
        }
        // Dropping the slot closes its descriptor (a process descriptor).
        self.conns[i] = None;
        self.free_slots.push(i);
        self.stats.release();
    }
}
