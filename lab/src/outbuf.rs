//! The bounded per-connection output buffer: reply bytes the peer has not
//! taken yet.
//!
//! The bound is the contract's back-pressure: a server holds at most
//! [`OUTBUF_LIMIT`] unsent bytes per connection and reads no more from that
//! connection until the peer drains some. Without it a client that sends but
//! never reads grows the server's memory without limit. Models read at most
//! [`OutBuf::room`] bytes, so the bound holds by construction.

/// At most this many unsent reply bytes per connection (1 MiB).
pub const OUTBUF_LIMIT: usize = 1 << 20;

/// A buffer that ever held more than this gives its memory back once drained,
/// so one burst does not pin a megabyte per idle connection.
const KEEP_CAPACITY: usize = 64 << 10;

#[derive(Debug, Default)]
pub struct OutBuf {
    bytes: Vec<u8>,
    /// Bytes before `start` were already sent.
    start: usize,
}

impl OutBuf {
    pub fn new() -> OutBuf {
        OutBuf::default()
    }

    /// Unsent bytes held.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many more bytes may be read from the peer before back-pressure.
    pub fn room(&self) -> usize {
        OUTBUF_LIMIT - self.len()
    }

    /// Back-pressure: stop reading from this connection until it drains.
    pub fn is_full(&self) -> bool {
        self.room() == 0
    }

    /// Queues reply bytes the socket did not take.
    ///
    /// Panics if `reply` exceeds [`OutBuf::room`]: a caller that read more
    /// than `room()` bytes broke the bound.
    pub fn push(&mut self, reply: &[u8]) {
        assert!(
            reply.len() <= self.room(),
            "output buffer bound exceeded: {} + {} > {OUTBUF_LIMIT}",
            self.len(),
            reply.len()
        );
        if self.start > 0 && self.bytes.len() + reply.len() > self.bytes.capacity() {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(reply);
    }

    /// The bytes owed to the peer, oldest first.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Marks `n` bytes as sent (a write took them; it may take fewer than
    /// offered).
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consumed more than pending");
        self.start += n;
        if self.start == self.bytes.len() {
            self.start = 0;
            self.bytes.clear();
            if self.bytes.capacity() > KEEP_CAPACITY {
                self.bytes = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_shrinks_to_zero_at_the_limit_and_reopens_after_consume() {
        let mut out = OutBuf::new();
        out.push(&vec![7u8; OUTBUF_LIMIT - 10]);
        assert_eq!(out.room(), 10);
        out.push(&[1; 10]);
        assert!(out.is_full());
        out.consume(100);
        assert_eq!(out.room(), 100);
        assert_eq!(out.pending().len(), OUTBUF_LIMIT - 100);
    }

    #[test]
    #[should_panic(expected = "bound exceeded")]
    fn pushing_past_the_limit_is_refused() {
        let mut out = OutBuf::new();
        out.push(&vec![0u8; OUTBUF_LIMIT + 1]);
    }

    #[test]
    fn order_is_kept_across_partial_consumes_and_compaction() {
        let mut out = OutBuf::new();
        let mut expected = Vec::new();
        let mut sent = Vec::new();
        for round in 0..200u32 {
            let chunk: Vec<u8> = (0..(round * 37 % 5000))
                .map(|i| (i + round) as u8)
                .collect();
            out.push(&chunk);
            expected.extend_from_slice(&chunk);
            let take = out.len() / 2;
            sent.extend_from_slice(&out.pending()[..take]);
            out.consume(take);
        }
        sent.extend_from_slice(out.pending());
        assert_eq!(sent, expected);
    }

    #[test]
    fn drained_buffer_gives_memory_back() {
        let mut out = OutBuf::new();
        out.push(&vec![0u8; 512 << 10]);
        out.consume(512 << 10);
        assert!(out.is_empty());
        assert!(out.bytes.capacity() <= KEEP_CAPACITY);
    }
}
