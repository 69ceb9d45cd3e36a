//! What every claim's measurement shares: a short `harness run` and its
//! command line, runs in paired rounds, the traces and micro-benchmark
//! taken once for several claims, and how a comparison of the one
//! statistics rule (`crate::stats`) is worded in a row.

use crate::measurement::{Measurement, WorkloadKind};
use crate::phases::{self, Traced};
use crate::run::{self, MeasureSpec, ServerChoice};
use crate::server::ModelSpec;
use crate::stats::{self, InRound};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Rounds of every comparison: one more than `stats::MIN_PAIRS`, so one bad
/// round still leaves an interval.
pub const ROUNDS: usize = 4;

/// One run's measurements, each with its round.
pub type Rounds = Vec<(usize, Measurement)>;

/// Runs `runs` in [`ROUNDS`] rounds, every run once per round, the order
/// alternating (as listed in even rounds, reversed in odd ones) so that a
/// drift of the machine within a round does not always favour one side.
/// Returns each run's measurements with their round, and the order, said.
pub fn in_rounds(runs: &[Run]) -> Result<(Vec<Rounds>, String), String> {
    let mut out: Vec<Rounds> = runs.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..runs.len()).collect()
        } else {
            (0..runs.len()).rev().collect()
        };
        for i in order {
            let m = runs[i]
                .measure()
                .map_err(|e| format!("{} (round {}): {e}", runs[i].command(), round + 1))?;
            out[i].push((round, m));
        }
    }
    Ok((
        out,
        format!(
            "{ROUNDS} paired rounds, each run once per round, the order alternating \
             (as listed in rounds 1 and 3, reversed in 2 and 4)"
        ),
    ))
}

/// One metric of one run's rounds.
pub fn metric(ms: &[(usize, Measurement)], f: impl Fn(&Measurement) -> f64) -> Vec<InRound> {
    ms.iter().map(|(r, m)| (*r, f(m))).collect()
}

/// Values of every round, `median (min–max)`.
pub fn spread(v: &[InRound], digits: usize) -> String {
    stats::Spread::of(v.iter().map(|(_, x)| *x))
        .map_or("–".into(), |s| s.show(|x| format!("{x:.digits$}")))
}

/// What a paired comparison says, in the claims' words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Said {
    /// a is lower than b, a discovery past the equivalence margin.
    Lower,
    Higher,
    /// "no measurable difference": the interval is inside the margin.
    Same,
    /// "not resolved": neither.
    NotResolved,
    /// Fewer than `stats::MIN_PAIRS` rounds.
    TooFew,
}

pub fn said(v: &stats::Verdict) -> Said {
    match v {
        stats::Verdict::Differs { paired, .. } if paired.ratio < 1.0 => Said::Lower,
        stats::Verdict::Differs { .. } => Said::Higher,
        stats::Verdict::Equivalent { .. } => Said::Same,
        stats::Verdict::NotResolved { .. } => Said::NotResolved,
        stats::Verdict::TooFew { .. } => Said::TooFew,
    }
}

/// `×0.52 [0.48–0.57] (q 0.001): lower`: the ratio a/b, its 95 % interval,
/// the Benjamini–Hochberg q, and the words.
pub fn ratio(v: &stats::Verdict) -> String {
    let words = match said(v) {
        Said::Lower => "lower",
        Said::Higher => "higher",
        Said::Same => "no measurable difference",
        Said::NotResolved => "not resolved",
        Said::TooFew => "too few rounds",
    };
    match v {
        stats::Verdict::Differs { paired, q }
        | stats::Verdict::Equivalent { paired, q }
        | stats::Verdict::NotResolved { paired, q } => format!(
            "×{:.2} [{:.2}–{:.2}] (q {:.3}): {words}",
            paired.ratio, paired.lo, paired.hi, q
        ),
        stats::Verdict::TooFew { pairs } => format!("{pairs} paired rounds: {words}"),
    }
}

/// What `cargo bench -p coroutine --bench switch` measured (criterion's
/// mean estimates, ns), read from `target/criterion/`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwitchBench {
    /// How long before this run criterion wrote the estimates, minutes.
    pub minutes_old: f64,
    /// A corosensei coroutine's resume and its suspend back.
    pub stackful_ns: f64,
    /// One byte to another thread through a pipe and one byte back.
    pub thread_round_trip_ns: f64,
    /// 16 KiB transformed straight through.
    pub straight_line_ns: f64,
    /// The same work as a coroutine suspending after every 64 bytes.
    pub switching_ns: f64,
}

/// The micro-benchmark C12 and C13 cite.
pub const SWITCH_BENCH: &str = "cargo bench -p coroutine --bench switch";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where criterion keeps benchmark `id`'s latest estimates (it names the
/// directory after the id, `/` made `_`).
fn criterion_estimates(id: &str) -> PathBuf {
    target_dir()
        .join("criterion")
        .join(id.replace('/', "_"))
        .join("new/estimates.json")
}

/// Criterion's mean estimate of benchmark `id`, ns.
fn criterion_ns(id: &str) -> Result<f64, String> {
    let path = criterion_estimates(id);
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    json["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no mean.point_estimate", path.display()))
}

/// The benchmarks of `SWITCH_BENCH` the claims read.
const BENCH_IDS: &[&str] = &[
    "switch/stackful_resume_suspend",
    "switch/thread_pipe_round_trip",
    "no_io/straight_line_16KiB",
    "no_io/stackful_switch_per_64B_16KiB",
];

/// Runs the micro-benchmark (`run`), then reads its estimates; `Err` says
/// why there are none.
pub fn switch_bench(run: bool) -> Result<SwitchBench, String> {
    if run {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = std::process::Command::new(&cargo)
            .args([
                "bench",
                "-p",
                "coroutine",
                "--bench",
                "switch",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("spawn {SWITCH_BENCH}: {e}"))?;
        if !status.success() {
            return Err(format!("{SWITCH_BENCH}: {status}"));
        }
    }
    let minutes_old = fs::metadata(criterion_estimates(BENCH_IDS[0]))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(f64::NAN, |age| age.as_secs_f64() / 60.0);
    Ok(SwitchBench {
        minutes_old,
        stackful_ns: criterion_ns(BENCH_IDS[0])?,
        thread_round_trip_ns: criterion_ns(BENCH_IDS[1])?,
        straight_line_ns: criterion_ns(BENCH_IDS[2])?,
        switching_ns: criterion_ns(BENCH_IDS[3])?,
    })
}

pub fn bench_figures(bench: &Result<SwitchBench, String>) -> String {
    match bench {
        Ok(b) => format!(
            "{SWITCH_BENCH} (criterion means, written {:.0} min before this table): coroutine \
             resume+suspend {:.0} ns, thread round trip through a pipe {:.0} ns; 16 KiB \
             transformed straight {:.0} ns, with a switch every 64 B {:.0} ns",
            b.minutes_old,
            b.stackful_ns,
            b.thread_round_trip_ns,
            b.straight_line_ns,
            b.switching_ns
        ),
        Err(why) => format!(
            "micro-benchmark not run (`harness claims --bench` runs it, or `{SWITCH_BENCH}` \
             first): {why}"
        ),
    }
}

pub fn spec(text: &str) -> ModelSpec {
    match text.parse() {
        Ok(s) => s,
        Err(e) => panic!("model spec constant {text:?}: {e}"),
    }
}

/// A short `harness run`, and the command line that repeats it.
#[derive(Clone)]
pub struct Run {
    pub model: &'static str,
    pub kind: WorkloadKind,
    pub conns: usize,
    pub idle: usize,
    pub rate: Option<f64>,
    pub server_args: &'static [&'static str],
    pub server_cpus: Option<Vec<usize>>,
    pub timeout_s: f64,
    /// Count system calls (tracepoints on: costs CPU per call).
    pub syscalls: bool,
}

pub const WARMUP_S: f64 = 0.3;
pub const DURATION_S: f64 = 1.5;

impl Run {
    pub fn pingpong(model: &'static str, conns: usize) -> Run {
        Run {
            model,
            kind: WorkloadKind::Pingpong,
            conns,
            idle: 0,
            rate: None,
            server_args: &[],
            server_cpus: None,
            timeout_s: 5.0,
            syscalls: false,
        }
    }

    pub fn idle(model: &'static str, idle: usize, active: usize) -> Run {
        Run {
            kind: WorkloadKind::Idle,
            idle,
            ..Run::pingpong(model, active)
        }
    }

    pub fn command(&self) -> String {
        let mut c = format!("harness run {}", self.model);
        match self.kind {
            WorkloadKind::Idle => {
                let _ = write!(
                    c,
                    " --workload idle --idle {} --active {}",
                    self.idle, self.conns
                );
            }
            _ => {
                let _ = write!(c, " --conns {}", self.conns);
            }
        }
        if let Some(r) = self.rate {
            let _ = write!(c, " --rate {r}");
        }
        let _ = write!(c, " --warmup {WARMUP_S} --duration {DURATION_S}");
        if self.timeout_s != 5.0 {
            let _ = write!(c, " --timeout {}", self.timeout_s);
        }
        if let Some(cpus) = &self.server_cpus {
            let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
            let _ = write!(c, " --server-cpus {}", list.join(","));
        }
        if !self.server_args.is_empty() {
            let _ = write!(c, " -- {}", self.server_args.join(" "));
        }
        c
    }

    pub fn measure(&self) -> io::Result<Measurement> {
        let mut m = MeasureSpec::quick(ServerChoice::Model(spec(self.model)), self.kind);
        m.conns = self.conns;
        m.idle = self.idle;
        m.rate = self.rate;
        m.server_args = self.server_args.iter().map(|s| s.to_string()).collect();
        m.warmup = Duration::from_secs_f64(WARMUP_S);
        m.duration = Duration::from_secs_f64(DURATION_S);
        m.timeout = Duration::from_secs_f64(self.timeout_s);
        m.count_syscalls = self.syscalls;
        m.server_cpus = self.server_cpus.clone();
        run::measure(&m)
    }
}

pub fn cpu_us(m: &Measurement) -> f64 {
    m.server.cpu_per_request_us.unwrap_or(f64::NAN)
}

/// Everything measured so far, so that a run or trace two claims need is
/// taken once.
#[derive(Default)]
pub struct Lab {
    pub traces: BTreeMap<String, Result<Traced, String>>,
    pub missing: BTreeMap<String, Option<String>>,
    pub run_bench: bool,
    pub bench: Option<Result<SwitchBench, String>>,
}

impl Lab {
    pub fn missing(&mut self, model: &str) -> Option<String> {
        let name = model.split(':').next().unwrap_or(model).to_owned();
        self.missing
            .entry(name.clone())
            .or_insert_with(|| crate::server::unavailable(&name))
            .clone()
    }

    pub fn bench(&mut self) -> Result<SwitchBench, String> {
        let run = self.run_bench;
        self.bench.get_or_insert_with(|| switch_bench(run)).clone()
    }

    pub fn phases(&mut self, model: &str) -> Result<Traced, String> {
        if let Some(why) = self.missing(model) {
            return Err(why);
        }
        self.traces
            .entry(model.to_owned())
            .or_insert_with(|| {
                phases::trace(&spec(model), &[]).map_err(|e| format!("harness phases {model}: {e}"))
            })
            .clone()
    }
}

pub fn phase_figures(t: &Traced) -> String {
    format!(
        "`{}` request {}: wait {:.2} ms in {}, copy {:.3} ms, {} calls, {} moving bytes, {} \
         blocked in both phases",
        t.spec,
        phases::REPRESENTATIVE + 1,
        t.totals.wait_s * 1e3,
        phases::main_wait(&t.calls).unwrap_or_else(|| "nothing".into()),
        t.totals.copy_s * 1e3,
        t.totals.calls,
        t.totals.copies,
        t.totals.wait_then_copy
    )
}
