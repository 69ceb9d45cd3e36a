//! The herd runs of `harness compare` (issue 13): several loops sharing
//! one port, each sharing mode measured with `harness run MODEL --workload
//! connect -- --workers 2 ...` in alternating order, then `reuseport` and
//! `exclusive` again under skew. `report::herd` renders what they stored
//! (`herd.json`).

use serde::{Deserialize, Serialize};

use crate::measurement::Measurement;

/// Loops (threads or processes) in every herd run: the machine this lab
/// was written on has 2 CPUs; beyond that the section estimates.
pub const LOOPS: usize = 2;

/// Busy ping-pong connections beside the skewed runs: fewer than the
/// loops, so that one loop is busy and the other is not.
pub const BUSY: usize = 1;
/// Idle connections beside them, held by every loop alike.
pub const IDLE: usize = 200;
/// New connections in flight under skew: one, so that no two connections'
/// spans overlap and each is attributed to the loop that accepted it.
pub const SKEW_IN_FLIGHT: usize = 1;

/// One way of sharing the port.
#[derive(Clone, Copy, Debug)]
pub struct Sharing {
    pub label: &'static str,
    pub model: &'static str,
    /// Server arguments besides `--workers`.
    pub args: &'static [&'static str],
}

/// The sharing modes, in the report's order.
pub const SHARINGS: &[Sharing] = &[
    Sharing {
        label: "shared",
        model: "epoll:level",
        args: &["--share", "shared"],
    },
    Sharing {
        label: "exclusive",
        model: "epoll:level",
        args: &["--share", "exclusive"],
    },
    Sharing {
        label: "reuseport",
        model: "epoll:level",
        args: &["--share", "reuseport"],
    },
    Sharing {
        label: "prefork",
        model: "blocking:prefork",
        args: &[],
    },
];

/// The two remedies, compared under skew.
pub const SKEWED: &[&str] = &["exclusive", "reuseport"];

/// One run: the measurement, or why there is none.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct HerdRun {
    pub sharing: String,
    /// Measured under skew (`BUSY`, `IDLE`, `SKEW_IN_FLIGHT`).
    pub skewed: bool,
    pub measurement: Option<Measurement>,
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct HerdResults {
    pub runs: Vec<HerdRun>,
}

/// `harness run` arguments for one run.
pub fn run_args(s: &Sharing, skewed: bool, warmup_s: f64, duration_s: f64) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        s.model,
        "--workload",
        "connect",
        "--json",
        "--warmup",
        &warmup_s.to_string(),
        "--duration",
        &duration_s.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    if skewed {
        for (flag, n) in [
            ("--conns", SKEW_IN_FLIGHT),
            ("--busy", BUSY),
            ("--idle", IDLE),
        ] {
            args.extend([flag.to_string(), n.to_string()]);
        }
    }
    args.extend(["--".to_string(), "--workers".to_string(), LOOPS.to_string()]);
    args.extend(s.args.iter().map(|a| a.to_string()));
    args
}

/// The runs of one round of `measure` (every sharing, then the skewed ones).
pub fn runs_per_round() -> usize {
    SHARINGS.len() + SKEWED.len()
}

/// Every run, `repeats` rounds, each round in the opposite order of the
/// last (the machine's drift then falls on every mode alike). `run` takes
/// `harness run` arguments and returns its measurement.
pub fn measure(
    repeats: usize,
    warmup_s: f64,
    duration_s: f64,
    run: impl Fn(&[String]) -> Result<Measurement, String>,
) -> HerdResults {
    let mut plan: Vec<(&Sharing, bool)> = SHARINGS.iter().map(|s| (s, false)).collect();
    plan.extend(
        SHARINGS
            .iter()
            .filter(|s| SKEWED.contains(&s.label))
            .map(|s| (s, true)),
    );
    let mut results = HerdResults::default();
    for round in 0..repeats {
        let order: Vec<&(&Sharing, bool)> = if round % 2 == 0 {
            plan.iter().collect()
        } else {
            plan.iter().rev().collect()
        };
        for &(s, skewed) in order {
            let args = run_args(s, skewed, warmup_s, duration_s);
            eprintln!("harness compare (herd): {}", args.join(" "));
            let (measurement, error) = match run(&args) {
                Ok(m) => (Some(m), None),
                Err(e) => (None, Some(e)),
            };
            results.runs.push(HerdRun {
                sharing: s.label.into(),
                skewed,
                measurement,
                error,
            });
        }
    }
    results
}
