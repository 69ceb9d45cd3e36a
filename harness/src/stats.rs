//! The one statistics rule of every document the harness writes (the
//! report and `CLAIMS.md`): no I/O, no policy about what is compared.
//!
//! Runs are made in rounds: every model of a round is measured once, in a
//! random order, before the next round starts. Two models are compared by
//! the ratio of their values **in the same round** (a slow drift of the
//! machine, or a bad minute, hits both sides of a pair alike), as the
//! geometric mean of the per-round ratios with a 95 % confidence interval
//! from Student's t on the log-ratios. Whether a difference is claimed is
//! decided over every comparison of one document together, by the
//! Benjamini–Hochberg procedure at a false-discovery rate of 5 % (`Family`).
//! Where the whole interval lies inside the equivalence margin
//! (`EQUIVALENCE`) the verdict is "no measurable difference"; a discovery
//! outside it is a difference; anything else is "not resolved".

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The confidence of every interval the harness states.
pub const CONFIDENCE: f64 = 0.95;

/// The false-discovery rate the Benjamini–Hochberg procedure holds over a
/// document's comparisons.
pub const FDR: f64 = 0.05;

/// Two values whose ratio's whole interval lies within `1/(1+E) .. 1+E` are
/// called equivalent ("no measurable difference"): on this kind of machine
/// run-to-run noise is 10–20 %, so a smaller margin could rarely be shown.
pub const EQUIVALENCE: f64 = 0.10;

/// Pairs a comparison needs before an interval is stated at all: with two,
/// Student's t has one degree of freedom and the interval is ±12.7 s.d.
pub const MIN_PAIRS: usize = 3;

/// Samples one run needs before its percentile p (in %) is shown: 10/(1−p),
/// so that ten samples lie beyond it (p99: 1 000; p99.9: 10 000). The
/// maximum (p100) is shown as what it is, the largest sample.
pub fn samples_needed(p: f64) -> u64 {
    if p >= 100.0 {
        return 1;
    }
    (10.0 / (1.0 - p / 100.0)).round() as u64
}

/// The median of a set of values, and the smallest and largest.
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

    /// `median (min–max)`, each value through `f`; just the median for a
    /// single value.
    pub fn show(&self, f: impl Fn(f64) -> String) -> String {
        if self.n == 1 || self.min == self.max {
            f(self.median)
        } else {
            format!("{} ({}–{})", f(self.median), f(self.min), f(self.max))
        }
    }
}

/// The median of `v` (NaN for none).
pub fn median(v: &[f64]) -> f64 {
    Spread::of(v.iter().copied()).map_or(f64::NAN, |s| s.median)
}

/// A value measured in one round (the round's index, the value).
pub type InRound = (usize, f64);

/// `a` against `b`, paired by round: the ratio a/b with its interval.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    /// The geometric mean of the per-round ratios a/b.
    pub ratio: f64,
    /// The `CONFIDENCE` interval of that ratio.
    pub lo: f64,
    pub hi: f64,
    /// Two-sided p-value of "the ratio is 1" (Student's t on log-ratios).
    pub p: f64,
    /// Rounds in which both sides have a value.
    pub pairs: usize,
}

impl Paired {
    /// The interval's width relative to the ratio, `hi/lo − 1`: what a
    /// comparison of this run can resolve.
    pub fn resolution(&self) -> f64 {
        self.hi / self.lo - 1.0
    }

    /// Whether the whole interval lies within the equivalence margin.
    pub fn equivalent(&self) -> bool {
        self.lo >= 1.0 / (1.0 + EQUIVALENCE) && self.hi <= 1.0 + EQUIVALENCE
    }
}

/// The ratio of `a` to `b` over the rounds both have a positive value in;
/// `None` with fewer than `MIN_PAIRS` such rounds. A value that is zero or
/// negative has no logarithm and is left out: every metric compared this
/// way (CPU, latency, rates, memory) is positive when measured.
pub fn paired(a: &[InRound], b: &[InRound]) -> Option<Paired> {
    let bs: BTreeMap<usize, f64> = b
        .iter()
        .copied()
        .filter(|(_, v)| *v > 0.0 && v.is_finite())
        .collect();
    let d: Vec<f64> = a
        .iter()
        .filter(|(_, v)| *v > 0.0 && v.is_finite())
        .filter_map(|(r, va)| bs.get(r).map(|vb| (va / vb).ln()))
        .collect();
    let n = d.len();
    if n < MIN_PAIRS {
        return None;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let se = (var / n as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?;
    let crit = t.inverse_cdf(0.5 + CONFIDENCE / 2.0);
    let p = if se > 0.0 {
        2.0 * (1.0 - t.cdf((mean / se).abs()))
    } else if mean == 0.0 {
        1.0
    } else {
        // Every round gave exactly the same ratio, not 1.
        0.0
    };
    Some(Paired {
        ratio: mean.exp(),
        lo: (mean - crit * se).exp(),
        hi: (mean + crit * se).exp(),
        p,
        pairs: n,
    })
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the order given: a
/// comparison is a discovery at rate `FDR` when its q is below `FDR`.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[j].total_cmp(&p[i]));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for (k, &i) in order.iter().enumerate() {
        let rank = (m - k) as f64;
        running = running.min(p[i] * m as f64 / rank);
        q[i] = running.min(1.0);
    }
    q
}

/// What a comparison may say, after the multiplicity control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// A difference, a discovery among the document's comparisons, whose
    /// interval reaches past the equivalence margin.
    Differs { paired: Paired, q: f64 },
    /// The whole interval lies within the equivalence margin (whatever q).
    Equivalent { paired: Paired, q: f64 },
    /// Neither: the interval is too wide to say.
    NotResolved { paired: Paired, q: f64 },
    /// Fewer than `MIN_PAIRS` rounds with both values.
    TooFew { pairs: usize },
}

impl Verdict {
    pub fn paired(&self) -> Option<&Paired> {
        match self {
            Verdict::Differs { paired, .. }
            | Verdict::Equivalent { paired, .. }
            | Verdict::NotResolved { paired, .. } => Some(paired),
            Verdict::TooFew { .. } => None,
        }
    }
}

fn decide(paired: Option<Paired>, q: f64, pairs: usize) -> Verdict {
    match paired {
        None => Verdict::TooFew { pairs },
        // A difference inside the margin is none a reader should act on,
        // however consistently it shows.
        Some(paired) if paired.equivalent() => Verdict::Equivalent { paired, q },
        Some(paired) if q < FDR => Verdict::Differs { paired, q },
        Some(paired) => Verdict::NotResolved { paired, q },
    }
}

/// Every comparison of one document, controlled together.
///
/// A document is rendered twice: the first pass (`Family::collecting`)
/// records each comparison's p-value under its key; then `adjust` turns
/// them into Benjamini–Hochberg q-values, and the second pass reads each
/// verdict from them. The same key asked twice is one comparison.
#[derive(Debug, Default)]
pub struct Family {
    asked: RefCell<BTreeMap<String, f64>>,
    adjusted: Option<BTreeMap<String, f64>>,
}

impl Family {
    pub fn collecting() -> Family {
        Family::default()
    }

    /// The q-values of everything asked so far: the family for the second pass.
    pub fn adjust(self) -> Family {
        let asked = self.asked.into_inner();
        let keys: Vec<String> = asked.keys().cloned().collect();
        let p: Vec<f64> = asked.values().copied().collect();
        let q = benjamini_hochberg(&p);
        Family {
            asked: RefCell::new(asked),
            adjusted: Some(keys.into_iter().zip(q).collect()),
        }
    }

    /// How many comparisons the family holds.
    pub fn size(&self) -> usize {
        self.asked.borrow().len()
    }

    /// How many of them are discoveries.
    pub fn discoveries(&self) -> usize {
        self.adjusted
            .as_ref()
            .map_or(0, |q| q.values().filter(|q| **q < FDR).count())
    }

    /// `a` against `b` under `key` (unique per comparison in the document).
    pub fn judge(&self, key: &str, a: &[InRound], b: &[InRound]) -> Verdict {
        let pairs = count_pairs(a, b);
        let Some(p) = paired(a, b) else {
            return Verdict::TooFew { pairs };
        };
        self.asked.borrow_mut().insert(key.to_string(), p.p);
        // The first pass decides on the unadjusted p; only the second pass's
        // verdicts are published.
        let q = self
            .adjusted
            .as_ref()
            .and_then(|q| q.get(key).copied())
            .unwrap_or(p.p);
        decide(Some(p), q, pairs)
    }
}

fn count_pairs(a: &[InRound], b: &[InRound]) -> usize {
    a.iter()
        .filter(|(r, _)| b.iter().any(|(rb, _)| rb == r))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds(v: &[f64]) -> Vec<InRound> {
        v.iter().copied().enumerate().collect()
    }

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
    fn pairing_by_round_removes_a_shared_round_effect() {
        // Each round moves both sides by up to 2×; b is always 10 % above a.
        let round_effect = [1.0, 2.0, 1.3, 0.7, 1.6];
        let a: Vec<f64> = round_effect.iter().map(|e| 10.0 * e).collect();
        let b: Vec<f64> = round_effect.iter().map(|e| 11.0 * e).collect();
        let p = paired(&rounds(&a), &rounds(&b)).expect("5 pairs");
        assert!((p.ratio - 10.0 / 11.0).abs() < 1e-12, "{p:?}");
        assert_eq!(p.p, 0.0, "the same ratio in every round");
        assert_eq!(p.pairs, 5);
        // The same values unpaired (b's rounds shuffled) are far from it.
        let shuffled = [b[3], b[0], b[4], b[1], b[2]];
        let q = paired(&rounds(&a), &rounds(&shuffled)).expect("5 pairs");
        assert!(q.p > 0.3 && q.lo < 1.0 && q.hi > 1.0, "{q:?}");
    }

    #[test]
    fn the_interval_is_students_t_on_log_ratios() {
        // Log-ratios 0.1, 0.2, 0.3: mean 0.2, s.d. 0.1, se 0.1/√3,
        // t(2, 0.975) = 4.302653.
        let a: Vec<InRound> = rounds(&[0.1f64.exp(), 0.2f64.exp(), 0.3f64.exp()]);
        let b = rounds(&[1.0, 1.0, 1.0]);
        let p = paired(&a, &b).expect("3 pairs");
        let half = 4.302_653 * 0.1 / 3f64.sqrt();
        assert!((p.ratio - 0.2f64.exp()).abs() < 1e-9);
        assert!((p.lo - (0.2 - half).exp()).abs() < 1e-5, "{p:?}");
        assert!((p.hi - (0.2 + half).exp()).abs() < 1e-5, "{p:?}");
        // t = 0.2/(0.1/√3) = 3.464 on 2 d.f.: p = 0.0742.
        assert!((p.p - 0.0742).abs() < 1e-3, "{p:?}");
    }

    #[test]
    fn only_rounds_both_sides_measured_are_paired() {
        let a = vec![(0, 2.0), (1, 2.0), (3, 2.0), (4, 0.0)];
        let b = vec![(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)];
        assert_eq!(paired(&a, &b).expect("pairs").pairs, 3);
        assert_eq!(paired(&a[..2], &b), None, "two pairs are too few");
    }

    #[test]
    fn benjamini_hochberg_matches_the_textbook_example() {
        // p sorted: 0.01, 0.02, 0.03, 0.04, 0.5 (m = 5): q = p·m/rank,
        // made monotone from the top: 0.05, 0.05, 0.05, 0.05, 0.5.
        let q = benjamini_hochberg(&[0.04, 0.01, 0.5, 0.03, 0.02]);
        let want = [0.05, 0.05, 0.5, 0.05, 0.05];
        for (got, want) in q.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{q:?}");
        }
        let q = benjamini_hochberg(&[0.001, 0.9]);
        assert!((q[0] - 0.002).abs() < 1e-12 && (q[1] - 0.9).abs() < 1e-12);
    }

    #[test]
    fn a_family_withholds_a_discovery_that_many_comparisons_explain() {
        // One comparison at p ≈ 0.03 is a discovery alone ...
        let a = rounds(&[1.10, 1.02, 1.16, 1.04, 1.14]);
        let b = rounds(&[1.0; 5]);
        let first = Family::collecting();
        assert!(matches!(first.judge("x", &a, &b), Verdict::Differs { .. }));
        let alone = first.adjust();
        assert!(matches!(alone.judge("x", &a, &b), Verdict::Differs { .. }));
        // ... but not among 20 where the rest are noise.
        let first = Family::collecting();
        first.judge("x", &a, &b);
        for k in 0..19 {
            let noise = rounds(&[1.0, 1.01, 0.99, 1.0, 1.005]);
            first.judge(&format!("noise {k}"), &noise, &b);
        }
        let many = first.adjust();
        assert_eq!(many.size(), 20);
        let v = many.judge("x", &a, &b);
        assert!(
            matches!(v, Verdict::NotResolved { q, .. } if q >= FDR),
            "{v:?}"
        );
        // Noise within 1 %: equivalent, not "not resolved".
        let noise = rounds(&[1.0, 1.01, 0.99, 1.0, 1.005]);
        assert!(matches!(
            many.judge("noise 0", &noise, &b),
            Verdict::Equivalent { .. }
        ));
        assert_eq!(many.discoveries(), 0);
    }
}
