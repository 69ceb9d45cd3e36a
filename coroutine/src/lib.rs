//! The `coroutine` model's parts, as a library so that `benches/switch.rs`
//! measures the very executor and stacks the binary uses. The model's
//! header is in `main.rs`.

pub mod hub;
pub mod stackful;
pub mod stackless;

/// One read's worth of request, transformed in place and written back: the
/// same as `blocking`'s. On the heap, so that a coroutine's stack (and a
/// future's state) stays small.
pub const BUF_LEN: usize = 16 << 10;

/// Nobody preempts a coroutine: a handler that never hits `EAGAIN` (a
/// client that keeps the socket readable and writable) would keep its hub
/// forever. After this many reads without a park it gives up its turn (as
/// `epoll --mode edge` caps the reads per wake-up).
pub const READS_PER_TURN: usize = 16;
