//! Latency histogram (HdrHistogram, nanoseconds, 3 significant digits) and
//! its summary in microseconds.

use crate::measurement::{Latency, SPECTRUM_PERCENTILES};
use hdrhistogram::Histogram;
use std::io;
use std::time::Duration;

/// Longest latency kept exactly; longer ones are clamped to it (and still
/// counted), since a request this late is already a timeout.
const MAX_NS: u64 = 600_000_000_000;

pub struct Recorder {
    hist: Histogram<u64>,
}

impl Recorder {
    pub fn new() -> io::Result<Recorder> {
        Histogram::new_with_bounds(1, MAX_NS, 3)
            .map(|hist| Recorder { hist })
            .map_err(|e| io::Error::other(format!("hdrhistogram: {e}")))
    }

    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(ns);
    }

    /// Records `hi`, `hi - step`, ... (`n` values, none below 1 ns). Runs
    /// of values closer together than the histogram's resolution are
    /// recorded as one value `n` times, so a huge count costs little.
    pub fn record_descending(&mut self, hi: Duration, step: Duration, n: u64) {
        let hi = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX);
        let step = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
        let mut done = 0u64;
        while done < n {
            let v = hi.saturating_sub(done.saturating_mul(step)).max(1);
            // 3 significant digits: values within v/2048 share a bucket.
            let group = (v / 2048).checked_div(step).unwrap_or(u64::MAX);
            let group = group.clamp(1, n - done);
            let mid = v
                .saturating_sub((group - 1).saturating_mul(step) / 2)
                .max(1);
            self.hist.saturating_record_n(mid, group);
            done += group;
        }
    }

    pub fn merge(&mut self, other: &Recorder) -> io::Result<()> {
        self.hist
            .add(&other.hist)
            .map_err(|e| io::Error::other(format!("hdrhistogram add: {e:?}")))
    }

    pub fn summary(&self) -> Option<Latency> {
        if self.hist.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Latency {
            samples: self.hist.len(),
            p50_us: us(self.hist.value_at_quantile(0.50)),
            p99_us: us(self.hist.value_at_quantile(0.99)),
            p999_us: us(self.hist.value_at_quantile(0.999)),
            max_us: us(self.hist.max()),
            mean_us: self.hist.mean() / 1000.0,
            spectrum: SPECTRUM_PERCENTILES
                .iter()
                .map(|p| (*p, us(self.hist.value_at_quantile(p / 100.0))))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::new().unwrap();
        assert!(r.summary().is_none());
        // 1..=1000 µs, one sample each
        for i in 1..=1000u64 {
            r.record(Duration::from_micros(i));
        }
        let s = r.summary().unwrap();
        assert_eq!(s.samples, 1000);
        let near = |v: f64, want: f64| (v - want).abs() <= want * 0.002;
        assert!(near(s.p50_us, 500.0), "p50 {}", s.p50_us);
        assert!(near(s.p99_us, 990.0), "p99 {}", s.p99_us);
        assert!(near(s.p999_us, 999.0), "p99.9 {}", s.p999_us);
        assert!(near(s.max_us, 1000.0), "max {}", s.max_us);
        assert!(near(s.mean_us, 500.5), "mean {}", s.mean_us);
        // The spectrum reads the same histogram at every listed percentile.
        assert_eq!(s.spectrum.len(), SPECTRUM_PERCENTILES.len());
        let at = |p: f64| s.spectrum.iter().find(|(q, _)| *q == p).map(|(_, v)| *v);
        assert!(near(at(90.0).unwrap(), 900.0), "{:?}", s.spectrum);
        assert!(near(at(99.99).unwrap(), 1000.0), "{:?}", s.spectrum);
        assert_eq!(at(99.0), Some(s.p99_us));
    }

    #[test]
    fn descending_runs_match_recording_each_value() {
        let (hi, step, n) = (
            Duration::from_millis(1500),
            Duration::from_micros(125),
            12_000,
        );
        let mut exact = Recorder::new().unwrap();
        for j in 0..n {
            exact.record(hi.saturating_sub(step * j as u32));
        }
        let mut fast = Recorder::new().unwrap();
        fast.record_descending(hi, step, n);
        let (e, f) = (exact.summary().unwrap(), fast.summary().unwrap());
        assert_eq!(e.samples, f.samples);
        for (a, b) in [
            (e.p50_us, f.p50_us),
            (e.p99_us, f.p99_us),
            (e.max_us, f.max_us),
        ] {
            assert!((a - b).abs() <= a * 0.002, "{a} vs {b}");
        }
        // Zero step and a run reaching below zero still count every value.
        let mut z = Recorder::new().unwrap();
        z.record_descending(Duration::from_millis(1), Duration::ZERO, 5);
        z.record_descending(Duration::from_micros(3), Duration::from_micros(2), 4);
        assert_eq!(z.summary().unwrap().samples, 9);
    }

    #[test]
    fn merge_adds_samples_and_huge_values_are_clamped_not_lost() {
        let mut a = Recorder::new().unwrap();
        let mut b = Recorder::new().unwrap();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_secs(3600));
        a.merge(&b).unwrap();
        let s = a.summary().unwrap();
        assert_eq!(s.samples, 2);
        assert!(s.max_us >= 599_000_000.0);
    }
}
