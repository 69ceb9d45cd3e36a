//! Medians with their spread over a cell's repeats, and the metrics the
//! report reads out of a `Measurement`.

use serde::{Deserialize, Serialize};

use super::results::Cell;
use crate::measurement::Measurement;

/// The median of a cell's repeats, and the smallest and largest value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// `None` when no value is given (NaN values are dropped).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// How `self` compares with `other`: one is called higher only when
    /// every repeat of it lies above every repeat of the other, and only
    /// with at least two repeats on each side.
    pub fn compare(&self, other: &Spread) -> Compared {
        if self.n < 2 || other.n < 2 {
            Compared::TooFewRepeats
        } else if self.min > other.max {
            Compared::Higher
        } else if self.max < other.min {
            Compared::Lower
        } else {
            Compared::Overlap
        }
    }

    /// `median (min–max)`, each value through `f`; just the median for a
    /// single repeat.
    pub fn show(&self, f: impl Fn(f64) -> String) -> String {
        if self.n == 1 || self.min == self.max {
            f(self.median)
        } else {
            format!("{} ({}–{})", f(self.median), f(self.min), f(self.max))
        }
    }
}

/// The outcome of `Spread::compare`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compared {
    Higher,
    Lower,
    /// The ranges overlap: no difference can be claimed.
    Overlap,
    TooFewRepeats,
}

/// A number a reader can take in at a glance: three significant digits,
/// with k/M for thousands and millions.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.digits$}{unit}")
}

/// Microseconds as µs or ms.
pub fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", si(us / 1e3))
    } else {
        format!("{} µs", si(us))
    }
}

/// Bytes as MiB.
pub fn mib(kib: f64) -> String {
    format!("{} MiB", si(kib / 1024.0))
}

/// A value read out of one measurement.
pub type Metric = fn(&Measurement) -> Option<f64>;

/// A run that completed nothing counts as rate 0, not as a missing value:
/// dropping it would make a cell look better than its repeats were.
pub fn rate(m: &Measurement) -> Option<f64> {
    Some(m.rate)
}
pub fn p50(m: &Measurement) -> Option<f64> {
    m.latency.as_ref().map(|l| l.p50_us)
}
pub fn p99(m: &Measurement) -> Option<f64> {
    m.latency.as_ref().map(|l| l.p99_us)
}
pub fn p999(m: &Measurement) -> Option<f64> {
    m.latency.as_ref().map(|l| l.p999_us)
}
pub fn max_latency(m: &Measurement) -> Option<f64> {
    m.latency.as_ref().map(|l| l.max_us)
}
pub fn server_cpu(m: &Measurement) -> Option<f64> {
    m.server.cpu_per_request_us
}
pub fn server_user_share(m: &Measurement) -> Option<f64> {
    let (u, s) = (m.server.user_s?, m.server.sys_s?);
    (u + s > 0.0).then(|| u / (u + s))
}
pub fn client_cpu(m: &Measurement) -> Option<f64> {
    m.client.cpu_per_request_us
}
pub fn ctx_voluntary(m: &Measurement) -> Option<f64> {
    m.server.ctx_voluntary_per_request
}
pub fn ctx_involuntary(m: &Measurement) -> Option<f64> {
    m.server.ctx_involuntary_per_request
}
pub fn peak_rss_kib(m: &Measurement) -> Option<f64> {
    m.server.peak_rss_kib.map(|k| k as f64)
}
pub fn errors(m: &Measurement) -> Option<f64> {
    Some(m.errors.total() as f64)
}
pub fn idle_dropped(m: &Measurement) -> Option<f64> {
    m.idle.as_ref().map(|i| i.dropped() as f64)
}
pub fn idle_unserved(m: &Measurement) -> Option<f64> {
    m.idle.as_ref().map(|i| i.unserved as f64)
}

impl Cell {
    /// The spread of `metric` over the cell's runs.
    pub fn spread(&self, metric: Metric) -> Option<Spread> {
        Spread::of(self.runs.iter().filter_map(metric))
    }

    /// The median of one syscall's count per request over the runs.
    pub fn syscall(&self, name: &str) -> Option<Spread> {
        Spread::of(self.runs.iter().filter_map(|m| {
            m.server
                .syscalls_per_request
                .as_ref()
                .map(|s| s.get(name).copied().unwrap_or(0.0))
        }))
    }

    /// How many runs were attempted: those kept and those that failed.
    pub fn attempted(&self) -> usize {
        self.runs.len() + self.failures.len()
    }

    /// Why nothing can be shown for the cell, if nothing can.
    pub fn why_empty(&self) -> Option<String> {
        if let Some(reason) = &self.not_run {
            return Some(format!("not run: {reason}"));
        }
        if !self.runs.is_empty() {
            return None;
        }
        Some(match self.failures.first() {
            Some(f) => format!("failed: {}", f.reason),
            None => "no run".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Spread::of([3.0, 1.0, 2.0]).expect("values");
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Spread::of([4.0, 1.0, 2.0, 3.0]).expect("values");
        assert_eq!(s.median, 2.5);
        assert_eq!(Spread::of([]), None);
        assert_eq!(Spread::of([f64::NAN]), None);
    }

    #[test]
    fn a_difference_needs_disjoint_ranges_and_two_repeats() {
        let low = Spread::of([1.0, 2.0, 3.0]).expect("values");
        let high = Spread::of([3.5, 4.0, 9.0]).expect("values");
        let overlapping = Spread::of([2.5, 5.0, 6.0]).expect("values");
        let single = Spread::of([100.0]).expect("values");
        assert_eq!(high.compare(&low), Compared::Higher);
        assert_eq!(low.compare(&high), Compared::Lower);
        assert_eq!(overlapping.compare(&low), Compared::Overlap);
        assert_eq!(single.compare(&low), Compared::TooFewRepeats);
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(si(48_211.0), "48.2k");
        assert_eq!(si(1_250_000.0), "1.25M");
        assert_eq!(si(7.345), "7.34");
        assert_eq!(si(123.4), "123");
        assert_eq!(micros(85.0), "85.0 µs");
        assert_eq!(micros(1500.0), "1.50 ms");
        assert_eq!(mib(2048.0), "2.00 MiB");
        let s = Spread::of([1.0, 2.0, 3.0]).expect("values");
        assert_eq!(s.show(si), "2.00 (1.00–3.00)");
    }
}
