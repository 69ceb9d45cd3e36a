//! `lab` — what every model of the I/O-model lab shares, and nothing more.
//!
//! The echo transform, the command line, listener setup, signals as a
//! descriptor, the exit summary, the bounded output buffer, the one
//! syscall wrapper, the error policy (what an `accept` or wait errno
//! means for the loop), the ordered list of turns a loop owes its sockets,
//! `--workers N` (binding, spawning and stopping N loops), and epoll's calls
//! as one method each (one system call, no retry, no policy). Deliberately
//! absent: any wait, read or write made on the model's behalf. The model's
//! own file makes each of those calls, where a reader can see which phase
//! (waiting for data, copying it) blocks and where, and decides each errno
//! there.

pub mod sys;

pub mod cli;
pub mod conn;
pub mod echo;
pub mod epoll;
pub mod net;
pub mod outbuf;
pub mod owed;
pub mod policy;
pub mod signals;
pub mod stats;
pub mod workers;

pub use outbuf::{OutBuf, OUTBUF_LIMIT};
pub use stats::Stats;
