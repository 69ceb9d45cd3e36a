//! Medians with their spread over a cell's repeats, and the metrics the
//! report reads out of a `Measurement`.

use serde::{Deserialize, Serialize};

use super::results::Cell;
use crate::measurement::Measurement;
use crate::stats::{samples_needed, InRound};

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

    /// Whether every repeat of `self` lies above every repeat of `other`,
    /// with at least `MIN_REPEATS` on each side: then the rank test's p is
    /// at most 2/70 (4 against 4), below `SIGNIFICANCE`; with fewer repeats
    /// disjoint ranges happen by chance too often to count.
    pub fn all_above(&self, other: &Spread) -> bool {
        self.n >= MIN_REPEATS && other.n >= MIN_REPEATS && self.min > other.max
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

/// The level below which a rank test's p-value counts as a difference.
pub const SIGNIFICANCE: f64 = 0.05;

/// Repeats each side needs before a difference can be claimed at all: with
/// 3 against 3 the smallest two-sided p-value the rank test can give is
/// 0.1, so a finding from 3 repeats could only ever say "no difference".
pub const MIN_REPEATS: usize = 4;

/// The outcome of `compare`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compared {
    /// Every value of one side ranks above the other's often enough that
    /// chance explains it with probability `p` < `SIGNIFICANCE`.
    Higher {
        p: f64,
    },
    Lower {
        p: f64,
    },
    /// The rank test finds no difference at `SIGNIFICANCE`.
    NoDifference {
        p: f64,
    },
    /// Fewer than `MIN_REPEATS` values on one side.
    TooFewRepeats,
}

/// Whether the values `a` differ from `b`: the two-sided Mann–Whitney rank
/// test, at `SIGNIFICANCE`, with at least `MIN_REPEATS` values on each side.
/// A rank test assumes nothing about the shape of the distributions, which
/// for run-to-run noise on a shared machine (long right tails) matters.
pub fn compare(a: &[f64], b: &[f64]) -> Compared {
    if a.len() < MIN_REPEATS || b.len() < MIN_REPEATS {
        return Compared::TooFewRepeats;
    }
    let p = mann_whitney_p(a, b);
    let (ma, mb) = (median(a), median(b));
    if p >= SIGNIFICANCE {
        Compared::NoDifference { p }
    } else if ma > mb {
        Compared::Higher { p }
    } else {
        Compared::Lower { p }
    }
}

fn median(v: &[f64]) -> f64 {
    Spread::of(v.iter().copied()).map_or(f64::NAN, |s| s.median)
}

/// The Mann–Whitney U statistic of `a` against `b` (ties count one half)
/// and its two-sided p-value: exact (every arrangement of the ranks
/// counted) when there are no ties and both sides are small, else the
/// normal approximation with tie and continuity corrections.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let mut u: f64 = 0.0;
    let mut ties = false;
    for x in a {
        for y in b {
            if x > y {
                u += 1.0;
            } else if x == y {
                u += 0.5;
                ties = true;
            }
        }
    }
    let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
    all.sort_by(f64::total_cmp);
    ties |= all.windows(2).any(|w| w[0] == w[1]);
    let n1n2 = (n1 * n2) as f64;
    if !ties && n1 <= 30 && n2 <= 30 {
        let counts = u_distribution(n1, n2);
        let total: f64 = counts.iter().sum();
        // U is an integer without ties.
        let k = u.round() as usize;
        let below: f64 = counts[..=k].iter().sum::<f64>() / total;
        let above: f64 = counts[k..].iter().sum::<f64>() / total;
        return (2.0 * below.min(above)).min(1.0);
    }
    // Normal approximation, the variance reduced by the tied groups.
    let n = (n1 + n2) as f64;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let j = all[i..].iter().take_while(|v| **v == all[i]).count();
        let t = j as f64;
        tie_term += t * t * t - t;
        i += j;
    }
    let var = n1n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    let z = ((u - n1n2 / 2.0).abs() - 0.5).max(0.0) / var.sqrt();
    (2.0 * normal_upper_tail(z)).min(1.0)
}

/// How many arrangements of `n1` and `n2` distinct values give each U
/// (index 0 ..= n1 n2): the recurrence c(m, n, u) = c(m-1, n, u-n) +
/// c(m, n-1, u), counted bottom up.
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    let max = n1 * n2;
    // table[m][n] = distribution for m and n values.
    let mut table: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); n2 + 1]; n1 + 1];
    for m in 0..=n1 {
        for n in 0..=n2 {
            let mut d = vec![0.0; m * n + 1];
            if m == 0 || n == 0 {
                d[0] = 1.0;
            } else {
                for (u, slot) in d.iter_mut().enumerate() {
                    let from_m = if u >= n {
                        table[m - 1][n].get(u - n)
                    } else {
                        None
                    };
                    let from_n = table[m][n - 1].get(u);
                    *slot = from_m.copied().unwrap_or(0.0) + from_n.copied().unwrap_or(0.0);
                }
            }
            table[m][n] = d;
        }
    }
    let out = std::mem::take(&mut table[n1][n2]);
    debug_assert_eq!(out.len(), max + 1);
    out
}

/// P(Z > z) for a standard normal Z (Abramowitz and Stegun 7.1.26, error
/// below 1.5e-7: ample for a 0.05 threshold).
fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

/// A p-value as a reader takes it in: two significant digits, or a bound.
pub fn show_p(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {}", significant(p, 2))
    }
}

/// `v` with `digits` significant digits (no exponent).
pub fn significant(v: f64, digits: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = digits as i32 - 1 - magnitude;
    if decimals >= 0 {
        let decimals = decimals as usize;
        format!("{v:.decimals$}")
    } else {
        // 427.8 to two digits is 430: round away the units too.
        let unit = 10f64.powi(-decimals);
        format!("{:.0}", (v / unit).round() * unit)
    }
}

/// A ratio as precise as the spread of its two sides allows: the ratio of
/// the medians, with as many significant digits as the ratio's own range
/// (from the worst to the best pairing of the repeats) leaves meaningful.
pub fn show_ratio(a: &Spread, b: &Spread) -> String {
    let x = a.median / b.median;
    let (lo, hi) = (a.min / b.max, a.max / b.min);
    let width = (hi - lo).abs() / x.abs();
    // A range wider than 5 % leaves two significant digits, else three.
    let digits = if a.n < 2 || b.n < 2 || width > 0.05 || !width.is_finite() {
        2
    } else {
        3
    };
    let digits = if x.abs() >= 10.0 {
        digits.min(2)
    } else {
        digits
    };
    format!("{}×", significant(x, digits))
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

/// `si` without trailing zeros, for axis ticks (10k, 2.5k, 0.5).
pub fn si_tick(v: f64) -> String {
    trim_zeros(&si(v))
}

/// `micros` without trailing zeros, for axis ticks (20 ms, 500 µs).
pub fn micros_tick(us: f64) -> String {
    trim_zeros(&micros(us))
}

/// "20.0 ms" → "20 ms", "2.50k" → "2.5k": the zeros a tick does not need.
fn trim_zeros(s: &str) -> String {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let num = if num.contains('.') {
        num.trim_end_matches('0').trim_end_matches('.')
    } else {
        num
    };
    format!("{num}{unit}")
}

/// A share (1.0 = all) as a whole percentage.
pub fn percent(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
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
/// A run's p99 and p99.9 exist only where it holds `samples_needed` of them:
/// fewer, and the percentile rests on a handful of samples (or is the
/// maximum).
pub fn p99(m: &Measurement) -> Option<f64> {
    m.latency
        .as_ref()
        .filter(|l| l.samples >= samples_needed(99.0))
        .map(|l| l.p99_us)
}
pub fn p999(m: &Measurement) -> Option<f64> {
    m.latency
        .as_ref()
        .filter(|l| l.samples >= samples_needed(99.9))
        .map(|l| l.p999_us)
}

/// Why a cell shows no percentile `p`: its runs hold too few samples (the
/// fewest any run holds), if that is why.
pub fn too_few_samples(c: &Cell, p: f64) -> Option<String> {
    let fewest = c
        .runs
        .iter()
        .filter_map(|m| m.latency.as_ref().map(|l| l.samples))
        .min()?;
    (fewest < samples_needed(p)).then(|| {
        format!(
            "too few samples (p{p} needs {} a run, fewest {})",
            si(samples_needed(p) as f64),
            si(fewest as f64)
        )
    })
}
pub fn max_latency(m: &Measurement) -> Option<f64> {
    m.latency.as_ref().map(|l| l.max_us)
}
/// No CPU at all for requests served is not a measurement: the accounting
/// did not reach the processes that served them. Such a run has no value.
pub fn server_cpu(m: &Measurement) -> Option<f64> {
    m.server
        .cpu_per_request_us
        .filter(|us| *us > 0.0 || m.requests == 0)
}
/// The server's CPU over the window as a share of one CPU (1.0: a core).
pub fn server_utilisation(m: &Measurement) -> Option<f64> {
    let cpu = m
        .server
        .cpu_s
        .or_else(|| Some(m.server.user_s? + m.server.sys_s?))?;
    (m.window_s > 0.0).then(|| cpu / m.window_s)
}
/// The load generator's CPU over the window as a share of one CPU.
pub fn client_utilisation(m: &Measurement) -> Option<f64> {
    (m.window_s > 0.0).then(|| (m.client.user_s + m.client.sys_s) / m.window_s)
}
/// The share of a CPU at which a side counts as having run out of it.
pub const CPU_BOUND: f64 = 0.9;

/// Which side ran out of CPU in a cell that fell short of its offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limiter {
    Server,
    LoadGenerator,
    /// Both used at least `CPU_BOUND` of a CPU.
    Both,
    /// Neither did: the shortfall is waiting (wake-ups, queues), not work.
    Neither,
}

impl Limiter {
    /// From the medians of both sides' share of a CPU over the cell's runs.
    pub fn of(c: &Cell) -> Option<Limiter> {
        let server = c.spread(server_utilisation)?.median;
        let client = c.spread(client_utilisation)?.median;
        Some(match (server >= CPU_BOUND, client >= CPU_BOUND) {
            (true, true) => Limiter::Both,
            (true, false) => Limiter::Server,
            (false, true) => Limiter::LoadGenerator,
            (false, false) => Limiter::Neither,
        })
    }

    /// The mark a short cell carries in a table.
    pub fn mark(self) -> &'static str {
        match self {
            Limiter::Server => "‡S",
            Limiter::LoadGenerator => "‡L",
            Limiter::Both => "‡SL",
            Limiter::Neither => "‡",
        }
    }
}

/// Requests answered as a share of those offered (open loop only).
pub fn offered_share(m: &Measurement) -> Option<f64> {
    let offered = m.workload.rate?;
    (offered > 0.0).then(|| m.rate / offered)
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
        Spread::of(self.values(metric))
    }

    /// `metric` of every run that has it, in run order.
    pub fn values(&self, metric: Metric) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(metric)
            .filter(|v| !v.is_nan())
            .collect()
    }

    /// `metric` of every run that has it, with the run's round: what a
    /// paired comparison reads (`crate::stats::paired`).
    pub fn in_rounds(&self, metric: Metric) -> Vec<InRound> {
        self.runs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((self.round_of(i), metric(m)?)))
            .filter(|(_, v)| !v.is_nan())
            .collect()
    }

    /// Latency samples over all runs (each run's histogram count).
    pub fn samples(&self) -> u64 {
        self.runs
            .iter()
            .filter_map(|m| m.latency.as_ref().map(|l| l.samples))
            .sum()
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
    fn rank_test_exact_p_values_match_the_tables() {
        // 4 against 4, completely separated: 2 of the 70 arrangements are
        // as extreme (either direction), p = 2/70.
        let low = [1.0, 2.0, 3.0, 4.0];
        let high = [5.0, 6.0, 7.0, 8.0];
        let p = mann_whitney_p(&high, &low);
        assert!((p - 2.0 / 70.0).abs() < 1e-12, "{p}");
        assert_eq!(mann_whitney_p(&low, &high), p, "symmetric");
        assert!(matches!(compare(&high, &low), Compared::Higher { .. }));
        assert!(matches!(compare(&low, &high), Compared::Lower { .. }));
        // 3 against 3 cannot reach p < 0.05 even when fully separated.
        assert!((mann_whitney_p(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]) - 0.1).abs() < 1e-12);
        assert_eq!(
            compare(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]),
            Compared::TooFewRepeats
        );
        // Interleaved: U = 8 of 16 for 1,3,5,7 against 2,4,6,8? U counts
        // pairs a > b: (3>2)+(5>2,5>4)+(7>2,7>4,7>6) = 6, p = 2 P(U <= 6).
        let p = mann_whitney_p(&[1.0, 3.0, 5.0, 7.0], &[2.0, 4.0, 6.0, 8.0]);
        assert!(p > 0.5, "{p}");
        assert!(matches!(
            compare(&[1.0, 3.0, 5.0, 7.0], &[2.0, 4.0, 6.0, 8.0]),
            Compared::NoDifference { .. }
        ));
        // 5 against 5 separated: p = 2/252.
        let p = mann_whitney_p(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((p - 2.0 / 252.0).abs() < 1e-12, "{p}");
    }

    #[test]
    fn rank_test_with_ties_uses_the_corrected_normal_approximation() {
        // Identical samples: no difference at all.
        assert!((mann_whitney_p(&[1.0; 6], &[1.0; 6]) - 1.0).abs() < 1e-9);
        // Separated but with ties inside each side: still a difference.
        let a = [10.0, 10.0, 11.0, 12.0, 12.0, 13.0];
        let b = [1.0, 1.0, 2.0, 3.0, 3.0, 4.0];
        let p = mann_whitney_p(&a, &b);
        assert!(p < 0.01, "{p}");
        assert!(matches!(compare(&a, &b), Compared::Higher { .. }));
        assert!(matches!(compare(&b, &a), Compared::Lower { .. }));
    }

    #[test]
    fn disjoint_ranges_count_only_with_enough_repeats() {
        let low = Spread::of([1.0, 2.0, 3.0, 4.0]).expect("values");
        let high = Spread::of([5.0, 6.0, 7.0, 8.0]).expect("values");
        assert!(high.all_above(&low) && !low.all_above(&high));
        let three = Spread::of([5.0, 6.0, 7.0]).expect("values");
        assert!(!three.all_above(&low), "3 repeats: 1 in 10 by chance");
    }

    #[test]
    fn normal_tail_is_accurate_at_the_usual_points() {
        assert!((normal_upper_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn precision_follows_the_spread() {
        assert_eq!(significant(427.83, 2), "430");
        assert_eq!(significant(0.01234, 2), "0.012");
        let a = Spread::of([400.0, 430.0, 460.0]).expect("values");
        let b = Spread::of([1.0, 1.05, 1.1]).expect("values");
        assert_eq!(show_ratio(&a, &b), "410×");
        let a = Spread::of([2.50, 2.51, 2.52]).expect("values");
        let b = Spread::of([1.0, 1.001, 1.002]).expect("values");
        assert_eq!(show_ratio(&a, &b), "2.51×");
        assert_eq!(show_p(0.0286), "p = 0.029");
        assert_eq!(show_p(0.0001), "p < 0.001");
    }

    #[test]
    fn zero_server_cpu_for_served_requests_is_no_value() {
        let mut m: Measurement =
            serde_json::from_str(include_str!("testdata/measurement.json")).expect("fixture");
        m.requests = 100;
        m.server.cpu_per_request_us = Some(0.0);
        assert_eq!(server_cpu(&m), None);
        m.server.cpu_per_request_us = Some(3.0);
        assert_eq!(server_cpu(&m), Some(3.0));
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
        assert_eq!(micros_tick(20_000.0), "20 ms");
        assert_eq!(micros_tick(2.5), "2.5 µs");
        assert_eq!(si_tick(10_000.0), "10k");
        assert_eq!(si_tick(0.0), "0");
        let s = Spread::of([1.0, 2.0, 3.0]).expect("values");
        assert_eq!(s.show(si), "2.00 (1.00–3.00)");
    }
}
