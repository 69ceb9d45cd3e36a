//! The open-loop schedule (`--rate R`), as wrk2 does it: request `k` of a
//! connection has a fixed send time, decided before the run and never moved
//! by a slow reply. A connection whose previous reply came late sends at
//! once, and its latency is counted from the *scheduled* time — so a server
//! stall shows up in every request that should have been sent during it,
//! not just in the one that was in flight (no coordinated omission).
//!
//! Pure arithmetic on nanoseconds since the run's epoch, so it is tested
//! without clocks or sockets.

/// `rate` requests per second spread over `slots` connections: slot `s`
/// sends every `slots / rate` seconds starting at `s / rate`, so the union
/// of all slots is one request every `1 / rate` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    ns_per_request: f64,
    slots: u64,
}

/// What a slot does once its previous request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The request is due (or overdue): send it now; its latency starts at
    /// `scheduled_ns`.
    SendNow { scheduled_ns: u64 },
    /// Not due yet: wait until then.
    WaitUntil(u64),
}

impl Schedule {
    /// `None` unless `rate` is positive and finite and there is a slot.
    pub fn new(rate: f64, slots: usize) -> Option<Schedule> {
        (rate.is_finite() && rate > 0.0 && slots > 0).then(|| Schedule {
            ns_per_request: 1e9 / rate,
            slots: slots as u64,
        })
    }

    /// Scheduled send time of request `k` of slot `slot`, ns after the epoch.
    pub fn send_time_ns(&self, slot: usize, k: u64) -> u64 {
        let n = slot as u64 + k.saturating_mul(self.slots);
        (n as f64 * self.ns_per_request) as u64
    }

    /// Nanoseconds between two requests of one slot.
    pub fn slot_period_ns(&self) -> u64 {
        (self.slots as f64 * self.ns_per_request) as u64
    }

    /// How many of requests `k, k+1, ...` of `slot` are scheduled before
    /// `end_ns`.
    pub fn due_before(&self, slot: usize, k: u64, end_ns: u64) -> u64 {
        // First guess from the closed form, then corrected against
        // `send_time_ns` itself so float rounding cannot miscount.
        let guess = ((end_ns as f64 / self.ns_per_request - slot as f64) / self.slots as f64)
            .ceil()
            .max(0.0) as u64;
        let mut k_end = guess.max(k);
        while k_end > k && self.send_time_ns(slot, k_end - 1) >= end_ns {
            k_end -= 1;
        }
        while self.send_time_ns(slot, k_end) < end_ns {
            k_end += 1;
        }
        k_end - k
    }

    /// Request `k` of `slot`, asked at `now_ns`.
    pub fn next(&self, slot: usize, k: u64, now_ns: u64) -> Next {
        let t = self.send_time_ns(slot, k);
        if t <= now_ns {
            Next::SendNow { scheduled_ns: t }
        } else {
            Next::WaitUntil(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_meaningless_rates() {
        assert!(Schedule::new(0.0, 1).is_none());
        assert!(Schedule::new(-5.0, 1).is_none());
        assert!(Schedule::new(f64::NAN, 1).is_none());
        assert!(Schedule::new(f64::INFINITY, 1).is_none());
        assert!(Schedule::new(100.0, 0).is_none());
    }

    #[test]
    fn union_of_slots_is_evenly_spaced_at_the_rate() {
        let s = Schedule::new(1000.0, 4).unwrap();
        let mut times: Vec<u64> = (0..4)
            .flat_map(|slot| (0..250).map(move |k| s.send_time_ns(slot, k)))
            .collect();
        times.sort_unstable();
        assert_eq!(times.len(), 1000);
        for (i, t) in times.iter().enumerate() {
            // request i of the whole run is due at i ms
            assert!(
                t.abs_diff(i as u64 * 1_000_000) <= 1,
                "request {i} at {t} ns"
            );
        }
        // each slot on its own sends every slots / rate = 4 ms
        assert_eq!(s.send_time_ns(2, 1) - s.send_time_ns(2, 0), 4_000_000);
    }

    #[test]
    fn next_sends_now_when_due_and_waits_when_early() {
        let s = Schedule::new(100.0, 1).unwrap(); // every 10 ms
        assert_eq!(s.next(0, 3, 29_999_999), Next::WaitUntil(30_000_000));
        assert_eq!(
            s.next(0, 3, 30_000_000),
            Next::SendNow {
                scheduled_ns: 30_000_000
            }
        );
        // a reply 1 s late: the overdue request goes at once, latency from 30 ms
        assert_eq!(
            s.next(0, 3, 1_030_000_000),
            Next::SendNow {
                scheduled_ns: 30_000_000
            }
        );
    }

    #[test]
    fn due_before_counts_exactly_the_scheduled_requests() {
        for (rate, slots) in [(1000.0, 4), (333.0, 7), (400_000.0, 50)] {
            let s = Schedule::new(rate, slots).unwrap();
            for slot in [0, slots - 1] {
                for k in [0u64, 3, 50] {
                    for end in [0u64, 1, 2_999_999, 10_000_000, 123_456_789] {
                        let brute = (k..100_000)
                            .take_while(|&j| s.send_time_ns(slot, j) < end)
                            .count() as u64;
                        assert_eq!(s.due_before(slot, k, end), brute, "{rate} {slot} {k} {end}");
                    }
                }
            }
        }
    }

    /// One connection at 100 requests/s against a server answering in 1 ms,
    /// except one reply that takes 1 s. Measured from the schedule, the
    /// stall shows in the ~100 requests that were due during it; a closed
    /// loop (latency from the actual send) sees it in one request only.
    #[test]
    fn a_server_stall_shows_in_every_request_due_during_it() {
        let s = Schedule::new(100.0, 1).unwrap();
        let service = |k: u64| if k == 10 { 1_000_000_000 } else { 1_000_000 };
        let (mut now, mut open_loop, mut closed_loop) = (0u64, vec![], vec![]);
        for k in 0..300 {
            let scheduled = match s.next(0, k, now) {
                Next::SendNow { scheduled_ns } => scheduled_ns,
                Next::WaitUntil(t) => {
                    now = t;
                    t
                }
            };
            let sent = now;
            now += service(k);
            open_loop.push(now - scheduled);
            closed_loop.push(now - sent);
        }
        let slow = |v: &[u64]| v.iter().filter(|&&l| l > 100_000_000).count();
        assert_eq!(slow(&closed_loop), 1);
        assert!(slow(&open_loop) >= 85, "open loop saw {}", slow(&open_loop));
        // the schedule itself never moved: request 299 was due at 2.99 s
        assert_eq!(s.send_time_ns(0, 299), 2_990_000_000);
    }
}
