//! The turns a loop owes its sockets: fairness policy, not a readiness
//! mechanism.
//!
//! A mechanism that reports changes only (edge-triggered epoll, a SIGIO
//! signal) says once that a socket became readable or that connections were
//! queued. A loop that caps its reads or accepts per wake-up, so that one
//! busy socket cannot hold it while the others wait, leaves work behind that
//! nothing will report again. It owes that socket a turn, and serves what it
//! owes before it next sleeps. Why a socket is owed is the model's to say, at
//! the call site; the list only keeps the order.

use std::collections::VecDeque;

/// Whether a pass may have left work in a descriptor: data unread, or
/// connections not accepted. A mechanism that reports changes only (an
/// edge, a signal) reported that readiness once and will not report it
/// again, so the loop must remember it: on the owed list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    Nothing,
    Maybe,
}

/// Tokens the kernel will not report again though work is left, in the
/// order they were owed (first owed, first served: no connection waits
/// behind ones owed after it). Each token is on it at most once: the
/// caller's flag for the token's slot says whether it is, and the
/// listener's lives here. The two queues are swapped, never dropped: the
/// list costs no allocation per wake-up.
pub struct Owed<T> {
    tokens: VecDeque<T>,
    /// The queue being served this round, kept between rounds for its memory.
    spare: VecDeque<T>,
    /// The listener's token, and whether it is on the list.
    listener: T,
    listener_owed: bool,
}

impl<T: Copy> Owed<T> {
    pub fn new(listener: T) -> Owed<T> {
        Owed {
            tokens: VecDeque::new(),
            spare: VecDeque::new(),
            listener,
            listener_owed: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Owes a connection's token, unless its flag says it is owed already.
    pub fn owe(&mut self, token: T, owed: &mut bool) {
        if !*owed {
            *owed = true;
            self.tokens.push_back(token);
        }
    }

    /// The accept cap left connections queued, which nothing announces again.
    pub fn owe_listener(&mut self) {
        if !self.listener_owed {
            self.listener_owed = true;
            self.tokens.push_back(self.listener);
        }
    }

    /// This round's tokens, to be served in order. What is owed while they
    /// are served goes on the next round's list. A connection's flag is
    /// cleared by the caller when its token is served, the listener's here.
    pub fn take(&mut self) -> VecDeque<T> {
        self.listener_owed = false;
        std::mem::swap(&mut self.tokens, &mut self.spare);
        std::mem::take(&mut self.spare)
    }

    /// Hands back the (now empty) queue `take` gave, for its memory.
    pub fn give_back(&mut self, served: VecDeque<T>) {
        debug_assert!(served.is_empty(), "an owed turn handed back unserved");
        self.spare = served;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: u64 = u64::MAX;

    #[test]
    fn owed_tokens_come_back_once_each_in_the_order_owed() {
        let mut owed = Owed::new(LISTENER);
        let (mut seven, mut three) = (false, false);
        owed.owe(7, &mut seven);
        owed.owe_listener();
        owed.owe(3, &mut three);
        owed.owe(7, &mut seven);
        owed.owe_listener();
        assert!(seven && three);
        let mut round = owed.take();
        assert!(owed.is_empty());
        assert_eq!(round.drain(..).collect::<Vec<_>>(), [7, LISTENER, 3]);
        owed.give_back(round);
        // Served: a connection's flag is cleared by its handler, the
        // listener's by `take`; owed again, each goes on the next round.
        seven = false;
        owed.owe(7, &mut seven);
        owed.owe_listener();
        assert_eq!(owed.take().into_iter().collect::<Vec<_>>(), [7, LISTENER]);
    }

    #[test]
    fn a_token_owed_while_its_round_is_served_waits_for_the_next_round() {
        let mut owed = Owed::new(LISTENER);
        let (mut seven, mut three) = (false, false);
        owed.owe(7, &mut seven);
        owed.owe(3, &mut three);
        let mut round = owed.take();
        // 7 is served and owed again; 3, still waiting its turn, is owed again.
        assert_eq!(round.pop_front(), Some(7));
        seven = false;
        owed.owe(7, &mut seven);
        owed.owe(3, &mut three);
        assert_eq!(round.drain(..).collect::<Vec<_>>(), [3]);
        owed.give_back(round);
        assert_eq!(owed.take().into_iter().collect::<Vec<_>>(), [7]);
    }
}
