//! What `harness compare` collected: the matrix it ran, every raw
//! measurement, and why any cell or run is missing.

use serde::{Deserialize, Serialize};

use crate::env::Environment;
use crate::measurement::{Measurement, TimerWakeups};

/// One workload of the standard matrix (request size fixed per compare run).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workload {
    /// Closed-loop ping-pong over `conns` connections.
    Pingpong { conns: usize },
    /// Connect, one request, close; `conns` connections in flight.
    Connect { conns: usize },
    /// `idle` connections held open plus `active` ping-pong ones; with a
    /// `rate`, the active ones are driven open loop at that many requests/s
    /// (a fixed load, so that CPU per request measures cost, not 1/rate).
    Idle {
        idle: usize,
        active: usize,
        #[serde(default)]
        rate: Option<u64>,
    },
    /// Open loop: `rate` requests/s scheduled over `conns` connections.
    OpenLoop { conns: usize, rate: u64 },
    /// Open loop as `OpenLoop`, with requests (and replies) of `size`
    /// bytes instead of the run's: the message-size question, whose sizes
    /// run in one block so that they are paired by round.
    Message {
        size: usize,
        conns: usize,
        rate: u64,
    },
}

impl Workload {
    /// A short name, also used in file names.
    pub fn label(&self) -> String {
        match self {
            Workload::Pingpong { conns } => format!("pingpong c={conns}"),
            Workload::Connect { conns } => format!("connect c={conns}"),
            Workload::Idle {
                idle,
                active,
                rate: None,
            } => format!("idle {idle} + {active} active"),
            Workload::Idle {
                idle,
                active,
                rate: Some(rate),
            } => format!("idle {idle} + {active} active at {rate}/s"),
            Workload::OpenLoop { conns, rate } => format!("open loop {rate}/s c={conns}"),
            Workload::Message { size, conns, rate } => {
                format!("open loop {rate}/s c={conns} {size} B")
            }
        }
    }

    /// Connections the server must hold at once.
    pub fn concurrent_conns(&self) -> usize {
        match *self {
            Workload::Pingpong { conns }
            | Workload::Connect { conns }
            | Workload::OpenLoop { conns, .. }
            | Workload::Message { conns, .. } => conns,
            Workload::Idle { idle, active, .. } => idle + active,
        }
    }

    /// The offered rate, requests/s, of an open-loop workload.
    pub fn offered_rate(&self) -> Option<u64> {
        match *self {
            Workload::OpenLoop { rate, .. } | Workload::Message { rate, .. } => Some(rate),
            Workload::Idle { rate, .. } => rate,
            _ => None,
        }
    }

    /// Request size, bytes, where the workload sets its own (else the
    /// run's).
    pub fn size(&self) -> Option<usize> {
        match *self {
            Workload::Message { size, .. } => Some(size),
            _ => None,
        }
    }

    /// The `results/*.json` file its raw runs go to.
    pub fn family(&self) -> &'static str {
        match self {
            Workload::Pingpong { .. } => "pingpong",
            Workload::Connect { .. } => "connect",
            Workload::Idle { .. } => "idle",
            Workload::OpenLoop { .. } => "openloop",
            Workload::Message { .. } => "message",
        }
    }
}

/// Two threads handing a value back and forth with nothing else to do,
/// pinned to one CPU (so every hand-off is a kernel context switch), and
/// the same hand-off as a plain function call.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Switching {
    pub thread_handoff_ns: f64,
    /// Voluntary context switches of the pinging thread per round trip
    /// (two hand-offs): 1 when it blocks every time it waits for the reply.
    pub switches_per_round_trip: f64,
    pub call_ns: f64,
    /// One switch between a corosensei coroutine and its caller (half of a
    /// resume and the suspend back), in this thread: no kernel involved.
    pub coroutine_switch_ns: f64,
}

/// Why a run was made: timing runs feed rates, latencies and CPU; a
/// syscall run has the syscall tracepoints on (which slow every syscall
/// down) and feeds only the syscall table; a profile run traces the
/// server's calls and switches (`harness run --profile`) and feeds only
/// the table of where its CPU goes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Timing,
    Syscalls,
    Profile,
}

/// Whether `model` is a reference (the `peers` crate: what a reader would
/// use instead of the lab's loops), measured beside the models but not one.
pub fn is_reference(model: &str) -> bool {
    model == "peers" || model.starts_with("peers:")
}

/// How a cell's `not_run` reason starts when the model was not asked for a
/// rate past one it could not sustain (`compare::saturated_below`).
pub const SATURATED: &str = "saturated";

/// A model:mode and whether it could be run at all.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelStatus {
    /// `epoll:level`.
    pub model: String,
    /// The binary used, if found.
    pub binary: Option<String>,
    /// Extra server arguments compare passed (e.g. `--workers 128`).
    pub server_args: Vec<String>,
    /// Why the model was not run (binary missing, failed to start).
    pub unavailable: Option<String>,
}

/// One repeat of one cell that produced no measurement, or one whose
/// measurement the accounting itself doubts (excluded, never averaged in).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunFailure {
    /// The round it belonged to.
    pub repeat: usize,
    pub reason: String,
}

/// How a failure's reason starts when the run measured, but its own
/// cross-check disagreed (`Cell::push_run`).
pub const EXCLUDED: &str = "excluded: the accounting cross-check disagreed";

/// One model on one workload: every repeat's measurement, or why not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Cell {
    pub model: String,
    pub workload: Workload,
    pub purpose: Purpose,
    pub runs: Vec<Measurement>,
    /// The round of each run (`runs[i]` ran in round `rounds[i]`); empty in
    /// a record from before rounds were kept, where run i is round i.
    #[serde(default)]
    pub rounds: Vec<usize>,
    pub failures: Vec<RunFailure>,
    /// Set when the cell was not attempted, with the reason (a limit of
    /// the model, e.g. `select` and FD_SETSIZE).
    pub not_run: Option<String>,
}

impl Cell {
    pub fn new(model: &str, workload: Workload, purpose: Purpose) -> Cell {
        Cell {
            model: model.to_string(),
            workload,
            purpose,
            runs: Vec::new(),
            rounds: Vec::new(),
            failures: Vec::new(),
            not_run: None,
        }
    }

    /// Keeps the measurement of round `round`, unless its own cross-check
    /// (the harness' reading of the server's CPU against the server's exit
    /// summary) disagreed: then it is recorded as a failure with the
    /// disagreement, and no table, figure or finding uses it.
    pub fn push_run(&mut self, round: usize, m: Measurement) {
        match &m.server.summary_agreement {
            Some(a) if !a.agrees => self.failures.push(RunFailure {
                repeat: round,
                reason: format!(
                    "{EXCLUDED}: the harness read {:.4} s of server CPU, the server's exit \
                     summary {:.4} s (allowed: {:.4} s)",
                    a.harness_cpu_s, a.summary_cpu_s, a.tolerance_s
                ),
            }),
            _ => {
                self.rounds.push(round);
                self.runs.push(m);
            }
        }
    }

    /// The round of run `i`.
    pub fn round_of(&self, i: usize) -> usize {
        self.rounds.get(i).copied().unwrap_or(i)
    }

    /// Moves every run whose cross-check disagreed to the failures (a
    /// record written before `push_run` excluded them).
    pub fn exclude_doubted(&mut self) {
        let runs = std::mem::take(&mut self.runs);
        let rounds: Vec<usize> = (0..runs.len()).map(|i| self.round_of(i)).collect();
        self.rounds.clear();
        for (round, m) in rounds.into_iter().zip(runs) {
            self.push_run(round, m);
        }
    }
}

/// One run of the matrix, in the order it ran.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunKey {
    pub model: String,
    pub workload: Workload,
    pub purpose: Purpose,
    pub round: usize,
}

/// Everything one `harness compare` produced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CompareResults {
    /// The command line, as typed.
    pub command: String,
    pub quick: bool,
    /// Rounds of the repeated questions.
    pub repeats: usize,
    /// Request size, bytes.
    pub size: usize,
    pub warmup_s: f64,
    /// The longest timed window of the run, seconds.
    pub duration_s: f64,
    /// The shortest timed window, seconds (each window is as long as its
    /// rate needs for the percentiles shown, within these two).
    #[serde(default)]
    pub min_window_s: f64,
    /// The seed of the rounds' random order.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Every run, in the order it ran.
    #[serde(default)]
    pub order: Vec<RunKey>,
    /// The machine's timer wake-up lateness on each CPU, measured before
    /// the matrix (`crate::floor`): the floor under every latency.
    #[serde(default)]
    pub wakeups: Vec<TimerWakeups>,
    /// A coroutine switch against a thread hand-off, measured once per
    /// round before the matrix (`crate::switching`).
    #[serde(default)]
    pub switching: Vec<Switching>,
    /// The longest per-run timeout, seconds (runs that open more connections
    /// get more time).
    pub cell_timeout_s: f64,
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_s: f64,
    pub environment: Environment,
    /// The share of CPU time the hypervisor gave to others over the run
    /// (`steal` in `/proc/stat`, all CPUs), if it could be read.
    #[serde(default)]
    pub steal_share: Option<f64>,
    /// The commit that rendered the report, when it differs from the one
    /// measured (`--report-from`); set when the report is written.
    #[serde(default)]
    pub rendered_by: Option<String>,
    pub models: Vec<ModelStatus>,
    /// The workloads of the matrix, in the order they were run.
    pub workloads: Vec<Workload>,
    pub cells: Vec<Cell>,
}

impl CompareResults {
    pub fn cell(&self, model: &str, workload: &Workload, purpose: Purpose) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.model == model && c.workload == *workload && c.purpose == purpose)
    }

    /// The models that were run, in matrix order.
    pub fn available_models(&self) -> impl Iterator<Item = &ModelStatus> {
        self.models.iter().filter(|m| m.unavailable.is_none())
    }
}
