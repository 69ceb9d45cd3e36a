//! The standard matrix of `harness compare`: which rows answer which
//! question, in blocks of rounds, and how long each window is. Data and
//! policy only: `compare` runs it.

use super::{herd, limit};
use crate::results::{Purpose, Workload};
use crate::spec::{AA_ROW, FLOOR_ROW, PAIR_ROWS, STANDARD_MODELS, URING_BEST};
use crate::stats::samples_needed;

/// The rows of the open-loop sweep past its lowest rate, and of the idle
/// question: the loops that multiplex (the question is where each one
/// saturates, and what an idle connection costs it), a thread per
/// connection as the classic alternative, the references, the A/A twin and
/// the floor. The other rows are measured at the lowest rate and on every
/// other workload; `--full` runs every row everywhere.
pub const SWEEP_ROWS: &[&str] = &[
    "select",
    "poll",
    "epoll:level",
    AA_ROW,
    "epoll:edge",
    "sigio:rt",
    "uring:single",
    "uring:multishot",
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
    "peers:polling",
    FLOOR_ROW,
];

/// io_uring's ablation ladder: `uring:multishot` (a row of the standard
/// matrix), one row per kernel feature, each alone on the base, and the
/// best combination (`report::ladder` sets each against the base, and the
/// combination against the base too). The batch wait is 50 µs; the SQPOLL
/// thread is pinned to CPU 0, the load generator's (on two CPUs there is no
/// core of its own: the limiter column says what that costs).
pub const LADDER_ROWS: &[&str] = &[
    "uring:multishot+defer-taskrun",
    "uring:multishot+skip-send-cqe",
    "uring:multishot+fixed-files",
    "uring:multishot+incremental-buffers",
    "uring:multishot+bundle",
    "uring:multishot+min-wait=50",
    "uring:multishot+sqpoll+sqpoll-cpu=0",
    URING_BEST,
];

/// The rows measured beside the ladder where only the ladder runs: its
/// base and the readiness loop it is weighed against.
pub const LADDER_BESIDE: &[&str] = &["uring:multishot", "epoll:level"];

/// Beside the ladder over 1 000 connections in the default matrix: the
/// other pairs of "Which model, when?", so that each is answered at two
/// connection counts.
pub const MANY_ROWS: &[&str] = &[
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
];

/// The ladder's second connection count, and the rate near the event
/// loops' saturation it is measured at besides the sweep's first.
pub const LADDER_CONNS: usize = 1_000;
pub const LADDER_HIGH: u64 = 40_000;

/// The rows whose CPU is traced part by part, once each, over LADDER_CONNS
/// at LADDER_HIGH (`harness run --profile`; the report's "Where the
/// server's time goes"): where the paired rounds cannot resolve the best
/// combination's CPU against epoll:level's, this says where each spends it.
/// The default matrix traces the goal's pair; `--full` the ladder's base too.
pub const PROFILE_ROWS: &[&str] = &["epoll:level", URING_BEST];
pub const PROFILE_FULL_ROWS: &[&str] = &["epoll:level", "uring:multishot", URING_BEST];

/// A profile run's window, seconds: its user/kernel split is the scheduler
/// tick's (250 Hz here, reported in 1/100 s), so it needs as many ticks of
/// the server's CPU as the budget allows, not the few dozen a percentile
/// window gives (at 40 000/s an event loop uses some 0.4 s of CPU a second:
/// 1 s gives ±2/100 s, ±0.5 µs per request, on the user/kernel split).
pub const PROFILE_WINDOW_S: f64 = 1.0;
/// What setting the trace up, reading and replaying it add to a profile
/// run: seconds, plus seconds per second of window (measured on the lab
/// machine: 0.65 s for a 1 s window of epoll:level at 40 000/s over 1 000
/// connections, some 250 000 events).
const PROFILE_READ_S: f64 = 0.35;
const PROFILE_READ_PER_S: f64 = 0.3;

/// The active-connection counts of the crossover map beyond the sweep's
/// and the ladder's (each connection sending, open loop; over 1 000 the
/// ladder's blocks hold these rows too). The default matrix measures the
/// ones past the first at the sweep's first rate over `PAIR_ROWS`;
/// `--full` all of them, at `LADDER_HIGH` too, over the pairs' rows and
/// `CROSSOVER_MORE`, the other readiness loops. One connection carries one request
/// at a time, so its rate is bounded by the round trip (about 10 000/s
/// here): a question for `--full`.
pub const CROSSOVER_CONNS: &[usize] = &[1, 10, 10_000];
pub const CROSSOVER_MORE: &[&str] = &["epoll:edge", "poll", "uring:single", "peers:polling"];

/// The message-size question: request (and reply) sizes from a small
/// request to a streaming-sized one, at one rate and connection count,
/// all in one block so that each row's sizes are paired by round. The rate
/// is the one the load generator sustains at 64 KiB on one CPU here, where
/// 10 000/s fell short: it sends, receives and checks 128 KiB a request.
pub const MESSAGE_SIZES: &[usize] = &[64, 1_024, 16_384, 65_536];
pub const MESSAGE_RATE: u64 = 5_000;

/// Workers given to `blocking:pool` and `blocking:prefork`: each worker
/// serves one connection at a time, so this is how many they serve at once.
pub const POOL_WORKERS: usize = 128;

/// Connections of the open-loop sweep and of the idle workloads' active
/// side: enough that a model must multiplex, few enough for every model.
pub const SWEEP_CONNS: usize = 100;

/// The rows of the idle question in the default matrix: the loops whose
/// cost per idle connection is the question (the A/A twin among them, so
/// that the idle-0 against idle-1000 ratio has its control), a thread per
/// connection and the reference.
pub const IDLE_ROWS: &[&str] = &[
    "epoll:level",
    AA_ROW,
    "uring:multishot",
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
];

/// The rows whose memory at 10 000 idle connections the default matrix
/// measures (once each: a figure, not a comparison): the idle question's
/// rows and io_uring's ladder rungs that change its buffers.
pub const MEMORY_ROWS: &[&str] = &[
    "epoll:level",
    "uring:multishot",
    "uring:multishot+incremental-buffers",
    URING_BEST,
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
];

/// The fixed load under which the idle workloads measure what idle
/// connections cost: the sweep's lowest rate.
pub const IDLE_RATE: u64 = 10_000;

/// The open-loop sweep's first rate; each next one doubles it, up to
/// `SWEEP_TOP`, and a model is asked for a rate only while it sustained
/// the one below (`saturated_below`).
pub const SWEEP_FROM: u64 = 10_000;
pub const SWEEP_TOP: u64 = 160_000;

/// What `harness compare` promises to finish within on the lab's 2-CPU
/// machine, seconds.
pub const BUDGET_DEFAULT_S: f64 = 600.0;
pub const BUDGET_QUICK_S: f64 = 120.0;

/// What one run costs beyond its warm-up and window, seconds: the child
/// `harness run`, server start and SIGTERM stop, and the drain of a run
/// past saturation (measured in the default compare of 4fab04d: 0.08 s on
/// average over its 660 timing runs, at most 2.0 s).
const RUN_OVERHEAD_S: f64 = 0.08;
/// What a syscall-counting run adds: opening a tracepoint counter per
/// syscall on every thread of the server, and closing them (measured in
/// the same run: 1.4 s on average over 23 runs).
const SYSCALLS_OVERHEAD_S: f64 = 1.5;
/// What opening one held connection adds to a run, seconds: an event loop
/// accepts it (measured in the same run: 10 100 connections added 0.2 to
/// 0.8 s, median 0.7 s, to the event loops' runs), a thread-per-connection
/// server starts a thread too (2.0 s for blocking:thread).
const CONNECT_COST_S: f64 = 0.000_1;
const CONNECT_TASK_COST_S: f64 = 0.000_2;

/// The rows whose server holds a thread or a process per connection: the
/// harness reads each one's counters from /proc at both ends of the
/// window, and a read much slower than the window is refused by the
/// accounting (`account`), so their windows grow with the connections.
const TASK_PER_CONNECTION: &[&str] = &["blocking:thread", "blocking:fork"];
/// Reading one thread's counters, seconds (measured: 10 000 threads of
/// blocking:thread in 0.47 to 1.1 s on the lab machine, under load).
const TASK_READ_S: f64 = 0.000_11;

fn task_per_connection(row: &str) -> bool {
    // The model:mode a row runs, whatever its flags or tag.
    let model = row.split(['+', '#']).next().unwrap_or(row);
    TASK_PER_CONNECTION.contains(&model)
}

fn connect_cost_s(row: &str) -> f64 {
    if task_per_connection(row) {
        CONNECT_TASK_COST_S
    } else {
        CONNECT_COST_S
    }
}

/// The phases figure traced after the matrix (`phases::lanes`; measured:
/// about 2.5 s, and 1.75 s three times in a row on the lab machine).
const PHASES_S: f64 = 2.5;
/// The wake-up floor before the matrix: 2 s, every CPU at once.
const FLOOR_S: f64 = 2.0;
/// Starting and stopping each model once before the matrix (`probe`;
/// measured: 1.7 s for the 11 lab model:modes).
const PROBE_S: f64 = 0.2;

/// Which matrix to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// One round of a few cells: does the pipeline work (≤ 2 minutes).
    Quick,
    /// Every question, in paired rounds, windows long enough for the
    /// percentiles shown (≤ 10 minutes): `SWEEP_ROWS` past the lowest rate.
    Default,
    /// Every row on every question, more rounds, longer windows.
    Full,
}

/// Which rows a block measures.
#[derive(Clone, Debug, PartialEq)]
pub enum Rows {
    /// Every row of the matrix.
    All,
    /// Only those of the matrix in one of these lists.
    Only(&'static [&'static [&'static str]]),
}

/// One question's runs: its workloads, measured in `rounds` rounds. In each
/// round every (row, workload) of the block runs once, in a random order,
/// so that everything compared within the block (two rows, or a row at two
/// workloads: idle 0 against idle 1000) is paired by round.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub workloads: Vec<Workload>,
    pub rows: Rows,
    pub rounds: usize,
    pub purpose: Purpose,
}

/// What a compare run will measure.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub models: Vec<String>,
    /// In the order they run. The open-loop rates are blocks of their own,
    /// ascending: a model that cannot sustain one is not asked for the next
    /// (`saturated_below`).
    pub blocks: Vec<Block>,
    pub size: usize,
    pub warmup_s: f64,
    /// Every window this long, instead of `window_s`'s rule.
    pub duration_s: Option<f64>,
    /// The shortest and longest window `window_s` chooses.
    pub min_window_s: f64,
    pub max_window_s: f64,
}

impl Matrix {
    /// The standard matrix at `scale`.
    pub fn standard(scale: Scale) -> Matrix {
        let open = |rate| Workload::OpenLoop {
            conns: SWEEP_CONNS,
            rate,
        };
        let idle = |idle| Workload::Idle {
            idle,
            active: SWEEP_CONNS,
            rate: Some(IDLE_RATE),
        };
        let pp = |conns| Workload::Pingpong { conns };
        let connect = Workload::Connect { conns: 4 };
        let block = |workloads: Vec<Workload>, rows: Rows, rounds: usize| Block {
            workloads,
            rows,
            rounds,
            purpose: Purpose::Timing,
        };
        let sweep: Vec<u64> = std::iter::successors(Some(SWEEP_FROM), |r| Some(r * 2))
            .take_while(|r| *r <= SWEEP_TOP)
            .collect();
        let (rounds, warmup_s, min_window_s, max_window_s) = match scale {
            Scale::Quick => (1, 0.1, 0.2, 0.2),
            Scale::Default => (4, 0.1, 0.25, 0.4),
            Scale::Full => (6, 1.0, 1.0, 3.0),
        };
        // Past the first rate the sweep's rows; the ladder's rungs at
        // LADDER_HIGH and the rate above it (near the base's saturation).
        let past_first = |rate: u64| match scale {
            Scale::Full => Rows::All,
            _ if rate == LADDER_HIGH || rate == 2 * LADDER_HIGH => {
                Rows::Only(&[SWEEP_ROWS, LADDER_ROWS])
            }
            _ => Rows::Only(&[SWEEP_ROWS]),
        };
        let mut blocks = Vec::new();
        match scale {
            Scale::Quick => {
                blocks.push(block(vec![open(SWEEP_FROM)], Rows::All, 1));
                blocks.push(block(vec![open(2 * SWEEP_FROM)], Rows::All, 1));
                blocks.push(block(vec![pp(100)], Rows::All, 1));
                blocks.push(block(vec![connect], Rows::All, 1));
                blocks.push(block(
                    vec![idle(0), idle(1_000)],
                    Rows::Only(&[IDLE_ROWS]),
                    1,
                ));
            }
            Scale::Default | Scale::Full => {
                for (i, rate) in sweep.iter().enumerate() {
                    let rows = if i == 0 { Rows::All } else { past_first(*rate) };
                    blocks.push(block(vec![open(*rate)], rows, rounds));
                }
                let pingpong: &[usize] = match scale {
                    Scale::Full => &[1, 10, 100, 1000],
                    _ => &[100],
                };
                // io_uring's ladder over 1 000 connections, at the sweep's
                // first rate and at LADDER_HIGH (where it is in the sweep
                // over 100 connections too).
                for rate in [SWEEP_FROM, LADDER_HIGH] {
                    let many = Workload::OpenLoop {
                        conns: LADDER_CONNS,
                        rate,
                    };
                    let rows = match scale {
                        Scale::Full => {
                            Rows::Only(&[LADDER_ROWS, LADDER_BESIDE, PAIR_ROWS, CROSSOVER_MORE])
                        }
                        _ => Rows::Only(&[LADDER_ROWS, LADDER_BESIDE, MANY_ROWS]),
                    };
                    blocks.push(block(vec![many], rows, rounds));
                }
                // Closed loops and accepting are throughput questions: the
                // sweep's rows, and for accepting every model (a process or
                // a thread per connection is what it is about) and the twin.
                // The crossover map: active connections from 1 to 10 000
                // (100 and 1 000 are the blocks above), for the pairs a
                // reader weighs.
                let (crossover_conns, crossover_rates, crossover_rows): (&[usize], &[u64], Rows) =
                    match scale {
                        Scale::Full => (
                            CROSSOVER_CONNS,
                            &[SWEEP_FROM, LADDER_HIGH],
                            Rows::Only(&[PAIR_ROWS, CROSSOVER_MORE]),
                        ),
                        _ => (
                            &CROSSOVER_CONNS[1..],
                            &[SWEEP_FROM],
                            Rows::Only(&[PAIR_ROWS]),
                        ),
                    };
                for conns in crossover_conns {
                    for rate in crossover_rates {
                        let w = Workload::OpenLoop {
                            conns: *conns,
                            rate: *rate,
                        };
                        blocks.push(block(vec![w], crossover_rows.clone(), rounds));
                    }
                }
                // Message sizes, one block: each size a workload of it.
                let sizes = MESSAGE_SIZES
                    .iter()
                    .map(|size| Workload::Message {
                        size: *size,
                        conns: SWEEP_CONNS,
                        rate: MESSAGE_RATE,
                    })
                    .collect();
                blocks.push(block(sizes, crossover_rows, rounds));
                let closed = match scale {
                    Scale::Full => Rows::All,
                    _ => Rows::Only(&[SWEEP_ROWS]),
                };
                for c in pingpong {
                    blocks.push(block(vec![pp(*c)], closed.clone(), rounds));
                }
                let accepting = match scale {
                    Scale::Full => Rows::All,
                    _ => Rows::Only(&[STANDARD_MODELS, &[AA_ROW]]),
                };
                blocks.push(block(vec![connect], accepting, rounds));
                let (idles, idle_rows): (Vec<Workload>, Rows) = match scale {
                    // 500: the largest count below select's FD_SETSIZE.
                    Scale::Full => ([0, 100, 500, 1_000, 10_000].map(idle).to_vec(), Rows::All),
                    _ => (vec![idle(0), idle(1_000)], Rows::Only(&[IDLE_ROWS])),
                };
                blocks.push(block(idles, idle_rows, rounds));
                if scale == Scale::Default {
                    // Memory at 10 000 idle connections, once per row: a
                    // figure, not a comparison.
                    blocks.push(block(vec![idle(10_000)], Rows::Only(&[MEMORY_ROWS]), 1));
                }
            }
        }
        let syscalls: Vec<Workload> = match scale {
            Scale::Quick => vec![open(SWEEP_FROM)],
            Scale::Default => vec![open(SWEEP_FROM)],
            Scale::Full => vec![open(SWEEP_FROM), pp(1), pp(100)],
        };
        if scale != Scale::Quick {
            // The crossover map's far ends counted too: the most
            // connections and the largest message, for the pairs' rows.
            let most = CROSSOVER_CONNS.iter().copied().max().unwrap_or(SWEEP_CONNS);
            let largest = MESSAGE_SIZES.iter().copied().max().unwrap_or(64);
            blocks.push(Block {
                workloads: vec![
                    Workload::OpenLoop {
                        conns: most,
                        rate: SWEEP_FROM,
                    },
                    Workload::Message {
                        size: largest,
                        conns: SWEEP_CONNS,
                        rate: MESSAGE_RATE,
                    },
                ],
                rows: Rows::Only(&[PAIR_ROWS]),
                rounds: 1,
                purpose: Purpose::Syscalls,
            });
            blocks.push(Block {
                workloads: vec![Workload::OpenLoop {
                    conns: LADDER_CONNS,
                    rate: LADDER_HIGH,
                }],
                rows: match scale {
                    Scale::Full => Rows::Only(&[PROFILE_FULL_ROWS]),
                    _ => Rows::Only(&[PROFILE_ROWS]),
                },
                rounds: 1,
                purpose: Purpose::Profile,
            });
        }
        blocks.push(Block {
            workloads: syscalls,
            // Every model and rung; not the A/A twin (its counts would say
            // nothing its original's do not) nor the floor (it busy-polls).
            rows: Rows::Only(&[STANDARD_MODELS, LADDER_ROWS]),
            rounds: 1,
            purpose: Purpose::Syscalls,
        });
        let mut models: Vec<String> = STANDARD_MODELS.iter().map(|s| s.to_string()).collect();
        // --quick checks the pipeline: of the ladder, only its best.
        let ladder: &[&str] = match scale {
            Scale::Quick => &[URING_BEST],
            _ => LADDER_ROWS,
        };
        models.extend(ladder.iter().map(|s| s.to_string()));
        models.push(AA_ROW.into());
        models.push(FLOOR_ROW.into());
        Matrix {
            models,
            blocks,
            size: 64,
            warmup_s,
            duration_s: None,
            min_window_s,
            max_window_s,
        }
    }

    /// The timed window of a run of `w`: long enough that each run holds
    /// `samples_needed(99.9)` latency samples at an open-loop rate if the
    /// matrix's longest window allows, else what p99 needs, never shorter
    /// than the shortest window (closed loops, whose rate is not known in
    /// advance, get the shortest: at this size every model answers more
    /// than 4 000 requests/s, p99's need in 0.25 s).
    pub fn window_s(&self, w: &Workload) -> f64 {
        if let Some(d) = self.duration_s {
            return d;
        }
        let Some(rate) = w.offered_rate() else {
            return self.min_window_s;
        };
        let need = |p| samples_needed(p) as f64 / rate as f64;
        let s = if need(99.9) <= self.max_window_s {
            need(99.9)
        } else {
            need(99.0)
        };
        s.clamp(self.min_window_s, self.max_window_s)
    }

    /// The timed window of `row`'s run of `w` made for `purpose`:
    /// `window_s`, or, for a row with a thread or process per connection,
    /// at least four times what reading all of them takes, so that the
    /// accounting's reads at either end are short against the window
    /// (`TASK_PER_CONNECTION`); a profile's is `PROFILE_WINDOW_S`, or the
    /// matrix's longest window if longer.
    pub fn window_for(&self, row: &str, w: &Workload, purpose: Purpose) -> f64 {
        if purpose == Purpose::Profile {
            return PROFILE_WINDOW_S.max(self.max_window_s);
        }
        let base = self.window_s(w);
        if self.duration_s.is_some() || !task_per_connection(row) {
            return base;
        }
        base.max(4.0 * TASK_READ_S * w.concurrent_conns() as f64)
    }

    /// Seconds a run of `w` may take before it is killed: the window, plus
    /// time to start and stop the server and to open the connections (a
    /// fork-per-connection server forks once for each).
    pub fn run_timeout_s(&self, row: &str, w: &Workload, purpose: Purpose) -> f64 {
        self.warmup_s
            + self.window_for(row, w, purpose)
            + 30.0
            + w.concurrent_conns() as f64 / 500.0
    }

    /// The seconds one run of `w` is planned to take.
    pub fn planned_run_s(&self, row: &str, w: &Workload, purpose: Purpose) -> f64 {
        let window = self.window_for(row, w, purpose);
        let traced = match purpose {
            Purpose::Timing => 0.0,
            Purpose::Syscalls => SYSCALLS_OVERHEAD_S,
            Purpose::Profile => PROFILE_READ_S + PROFILE_READ_PER_S * window,
        };
        traced
            + self.warmup_s
            + window
            + RUN_OVERHEAD_S
            + w.concurrent_conns() as f64 * connect_cost_s(row)
    }

    /// The rows of the matrix `block` measures, in matrix order.
    pub fn rows<'a>(&'a self, block: &Block) -> Vec<&'a str> {
        self.models
            .iter()
            .map(String::as_str)
            .filter(|m| match &block.rows {
                Rows::All => true,
                Rows::Only(lists) => lists.iter().any(|l| l.contains(m)),
            })
            .collect()
    }

    /// Every workload a timing block measures, in the order first run.
    pub fn timing_workloads(&self) -> Vec<Workload> {
        let mut v = Vec::new();
        for b in self.blocks.iter().filter(|b| b.purpose == Purpose::Timing) {
            for w in &b.workloads {
                if !v.contains(w) {
                    v.push(*w);
                }
            }
        }
        v
    }

    /// The runs of the matrix at most (cells a model's limit excuses left
    /// out, before those saturation excuses), and their planned seconds, the herd section's
    /// connect runs and the phases traces after the matrix included.
    pub fn plan(&self) -> (usize, f64) {
        let mut runs = 0;
        let mut seconds = self.models.len() as f64 * PROBE_S + PHASES_S + FLOOR_S;
        for b in &self.blocks {
            for w in &b.workloads {
                // A cell a model cannot serve by design is never run.
                let rows: Vec<&str> = self
                    .rows(b)
                    .into_iter()
                    .filter(|m| limit(m, w).is_none())
                    .collect();
                runs += rows.len() * b.rounds;
                for row in &rows {
                    seconds += b.rounds as f64 * self.planned_run_s(row, w, b.purpose);
                }
            }
        }
        let rounds = self.repeated_rounds();
        let herd = rounds * herd::runs_per_round();
        runs += herd;
        seconds += herd as f64
            * self.planned_run_s(
                "epoll:level",
                &Workload::Connect { conns: 4 },
                Purpose::Timing,
            );
        (runs, seconds)
    }

    /// The rounds of the repeated questions (the most any block has).
    pub fn repeated_rounds(&self) -> usize {
        self.blocks.iter().map(|b| b.rounds).max().unwrap_or(1)
    }

    /// Sets every repeated block's rounds to `rounds`.
    pub fn set_rounds(&mut self, rounds: usize) {
        for b in self.blocks.iter_mut().filter(|b| b.rounds > 1) {
            b.rounds = rounds;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::row;

    #[test]
    fn every_block_holds_unique_workloads_and_the_sweep_doubles() {
        for scale in [Scale::Quick, Scale::Default, Scale::Full] {
            let m = Matrix::standard(scale);
            for purpose in [Purpose::Timing, Purpose::Syscalls, Purpose::Profile] {
                let mut seen: Vec<Workload> = m
                    .blocks
                    .iter()
                    .filter(|b| b.purpose == purpose)
                    .flat_map(|b| b.workloads.clone())
                    .collect();
                let all = seen.len();
                seen.sort();
                seen.dedup();
                assert_eq!(seen.len(), all, "{scale:?}");
            }
            let rates: Vec<u64> = m
                .timing_workloads()
                .iter()
                .filter(|w| matches!(w, Workload::OpenLoop { conns, .. } if *conns == SWEEP_CONNS))
                .filter_map(|w| w.offered_rate())
                .collect();
            assert!(rates.windows(2).all(|p| p[0] < p[1]), "{rates:?}");
            assert_eq!(rates[0], SWEEP_FROM);
            if scale != Scale::Quick {
                assert!(rates.windows(2).all(|p| p[1] == 2 * p[0]), "{rates:?}");
                // One rate a block, so saturation at one stops the next.
                assert!(m
                    .blocks
                    .iter()
                    .filter(|b| b.purpose == Purpose::Timing)
                    .all(|b| b.workloads.len() == 1
                        || b.workloads
                            .iter()
                            .all(|w| !matches!(w, Workload::OpenLoop { .. }))));
            }
            // The A/A twin and the floor are rows of every matrix.
            assert!(m.models.iter().any(|r| r == AA_ROW));
            assert!(m.models.iter().any(|r| r == FLOOR_ROW));
        }
        let (quick, default, full) = (
            Matrix::standard(Scale::Quick),
            Matrix::standard(Scale::Default),
            Matrix::standard(Scale::Full),
        );
        assert!(quick.timing_workloads().len() < default.timing_workloads().len());
        assert!(default.timing_workloads().len() < full.timing_workloads().len());
        // --full maps active connections from 1 to 10 000.
        for conns in [1, 10, 100, 1_000, 10_000] {
            assert!(full.timing_workloads().contains(&Workload::OpenLoop {
                conns,
                rate: SWEEP_FROM
            }));
        }
        // Paired intervals need rounds enough for Student's t to say something.
        assert!(default.repeated_rounds() >= 4);
        assert!(full.repeated_rounds() > default.repeated_rounds());
        // The idle baseline (0 idle) is measured in the same block, so in
        // the same rounds, as what it is compared with.
        let idle_block = default
            .blocks
            .iter()
            .find(|b| {
                b.workloads
                    .iter()
                    .any(|w| matches!(w, Workload::Idle { idle: 1_000, .. }))
            })
            .expect("an idle block");
        assert!(idle_block
            .workloads
            .iter()
            .any(|w| matches!(w, Workload::Idle { idle: 0, .. })));
        // The rows past the first rate include the twin and the floor.
        assert!(SWEEP_ROWS.contains(&AA_ROW) && SWEEP_ROWS.contains(&FLOOR_ROW));
    }

    #[test]
    fn the_ladder_runs_beside_its_base_and_epoll_at_two_connection_counts() {
        let m = Matrix::standard(Scale::Default);
        for rung in LADDER_ROWS {
            let (spec, args) = row(rung).expect("a row");
            assert_eq!(spec.to_string(), "uring:multishot");
            // Flags, each with its value after it where it takes one.
            assert!(args[0].starts_with("--"), "{args:?}");
            assert!(
                args.windows(2)
                    .all(|p| p[0].starts_with("--") || p[1].starts_with("--")),
                "{args:?}"
            );
            assert!(m.models.iter().any(|r| r == rung));
        }
        for conns in [SWEEP_CONNS, LADDER_CONNS] {
            for rate in [SWEEP_FROM, LADDER_HIGH] {
                let w = Workload::OpenLoop { conns, rate };
                let block = m
                    .blocks
                    .iter()
                    .find(|b| b.purpose == Purpose::Timing && b.workloads.contains(&w))
                    .expect("a ladder block");
                let rows = m.rows(block);
                for r in LADDER_ROWS.iter().chain(LADDER_BESIDE) {
                    assert!(rows.contains(r), "{r} at {w:?}");
                }
            }
        }
    }

    #[test]
    fn the_default_matrix_profiles_epoll_and_the_ladder_once_near_saturation() {
        let m = Matrix::standard(Scale::Default);
        let profiled: Vec<&Block> = m
            .blocks
            .iter()
            .filter(|b| b.purpose == Purpose::Profile)
            .collect();
        assert_eq!(profiled.len(), 1);
        let b = profiled[0];
        let w = Workload::OpenLoop {
            conns: LADDER_CONNS,
            rate: LADDER_HIGH,
        };
        assert_eq!((b.workloads.as_slice(), b.rounds), (&[w][..], 1));
        assert_eq!(m.rows(b), PROFILE_ROWS.to_vec());
        let full = Matrix::standard(Scale::Full);
        let b = full
            .blocks
            .iter()
            .find(|b| b.purpose == Purpose::Profile)
            .expect("a profile block");
        assert_eq!(full.rows(b), PROFILE_FULL_ROWS.to_vec());
        // Long enough for the tick's split, unlike the percentile window.
        assert!(m.window_for("epoll:level", &w, Purpose::Profile) > m.window_s(&w));
        assert_eq!(
            m.window_for("epoll:level", &w, Purpose::Timing),
            m.window_s(&w)
        );
        assert!(!Matrix::standard(Scale::Quick)
            .blocks
            .iter()
            .any(|b| b.purpose == Purpose::Profile));
    }

    #[test]
    fn windows_hold_the_samples_their_percentiles_need() {
        let m = Matrix::standard(Scale::Default);
        assert_eq!(samples_needed(99.9), 10_000);
        assert_eq!(samples_needed(99.0), 1_000);
        for w in m.timing_workloads() {
            let Some(rate) = w.offered_rate() else {
                continue;
            };
            let samples = rate as f64 * m.window_s(&w);
            // Every open-loop window holds p99's samples; up to the longest
            // window, p99.9's too.
            assert!(samples >= samples_needed(99.0) as f64, "{w:?}");
            if (samples_needed(99.9) as f64 / rate as f64) <= m.max_window_s {
                assert!(samples >= samples_needed(99.9) as f64, "{w:?}: {samples}");
            }
        }
        // A thread per connection: a window long enough to read them all,
        // whatever the row's flags or tag; an event loop keeps the rule's.
        let many = Workload::OpenLoop {
            conns: 10_000,
            rate: SWEEP_FROM,
        };
        for row in ["blocking:thread", "blocking:fork", "blocking:thread#b"] {
            assert!(
                m.window_for(row, &many, Purpose::Timing) >= 4.0 * TASK_READ_S * 10_000.0,
                "{row}"
            );
        }
        assert_eq!(
            m.window_for("epoll:level", &many, Purpose::Timing),
            m.window_s(&many)
        );
        let fixed = Matrix {
            duration_s: Some(2.0),
            ..Matrix::standard(Scale::Default)
        };
        assert_eq!(fixed.window_s(&Workload::Pingpong { conns: 1 }), 2.0);
    }

    #[test]
    fn planned_runs_fit_the_budgets() {
        for (scale, budget) in [
            (Scale::Quick, BUDGET_QUICK_S),
            (Scale::Default, BUDGET_DEFAULT_S),
        ] {
            let m = Matrix::standard(scale);
            let (runs, seconds) = m.plan();
            assert!(
                seconds <= budget,
                "{scale:?}: {runs} runs planned at {seconds:.0} s, over the {budget:.0} s budget"
            );
        }
        let m = Matrix::standard(Scale::Default);
        let one = Workload::Pingpong { conns: 1 };
        assert!(
            (m.planned_run_s("epoll:level", &one, Purpose::Timing)
                - (0.1 + 0.25 + RUN_OVERHEAD_S + CONNECT_COST_S))
                .abs()
                < 1e-9
        );
        // The plan counts exactly the runs the blocks and the herd make.
        let (runs, _) = m.plan();
        let blocks: usize = m
            .blocks
            .iter()
            .flat_map(|b| b.workloads.iter().map(move |w| (b, w)))
            .map(|(b, w)| m.rows(b).iter().filter(|r| limit(r, w).is_none()).count() * b.rounds)
            .sum();
        // blocking:iterative serves one connection at a time: not planned
        // where the workload holds more.
        let first = m.blocks.first().expect("a block");
        assert!(m.rows(first).contains(&"blocking:iterative"));
        assert!(
            blocks
                < m.blocks
                    .iter()
                    .map(|b| m.rows(b).len() * b.workloads.len() * b.rounds)
                    .sum::<usize>()
        );
        assert_eq!(runs, blocks + m.repeated_rounds() * herd::runs_per_round());
    }
}
