//! `results/REPORT.md`: a one-screen summary, the environment stamp, then
//! one section per question a reader brings (`SECTIONS`), and the checks of
//! the measurement itself (the instrument's floor, accounting
//! cross-check, this machine's distortions).

use std::fmt::Write as _;

use super::questions::{self, Answer};
use super::stats::{self, significant, Spread};
use super::table::{label, repeat_command, Table};
use super::Ctx;
use crate::results::{is_reference, Cell, CompareResults, Purpose, Workload, EXCLUDED};

fn timing<'a>(r: &'a CompareResults, model: &str, w: &Workload) -> Option<&'a Cell> {
    r.cell(model, w, Purpose::Timing)
}

/// How the run was made and how its numbers are read.
fn method(x: &Ctx) -> String {
    let r = x.r;
    let order = match r.seed {
        Some(seed) => format!(
            "in a random order drawn from seed {seed} (each run's place is recorded in \
             `compare.json`, `order`)"
        ),
        None => "in a fixed order (a record from before the order was drawn)".into(),
    };
    let windows = if (r.duration_s - r.min_window_s).abs() < 1e-9 || r.min_window_s == 0.0 {
        format!("a {} s window", r.duration_s)
    } else {
        format!(
            "a window of {} to {} s: an open-loop run lasts {}/rate s within those bounds, \
             so that it holds the samples p99.9 needs",
            r.min_window_s,
            r.duration_s,
            crate::stats::samples_needed(99.9)
        )
    };
    format!(
        "- **Rounds.** The questions run in blocks (one per open-loop rate, one per other \
           workload; the idle counts together, so that idle 0 is measured in the same rounds \
           as idle 1000). In each of {rounds} rounds every row of a block runs once, {order}; \
           tables show the median, the smallest and largest round in parentheses, and `n=` \
           the runs the cell holds.\n\
         - **A run** starts the server pinned to its own CPU (the load generator on the other), \
           connects, warms up for {warmup} s, measures {windows}, and stops the server with \
           SIGTERM. Requests are {size} B; every reply byte is checked. Open-loop latency \
           counts from each request's scheduled time (no coordinated omission).\n\
         - **Samples before percentiles.** A percentile p is shown, drawn or compared only where \
           every run of the cell holds at least 10/(1−p) samples (p99: 1 000; p99.9: 10 000); \
           elsewhere the cell says what it lacks.\n\
         - **server CPU/req**: the server's CPU in the window (every thread, every child \
           process, reaped children included; each process's CPU-time clock) divided by the \
           requests completed in it. **share of a CPU**: CPU time over the window's length, \
           for both sides; a side at {bound:.0} % or more of a CPU ran out of it.\n\
         - **Comparisons** are paired by round: the ratio of two rows' values in the same round, \
           summarised as the geometric mean with a 95 % confidence interval (Student's t on the \
           log-ratios) and its p-value. Whether a difference is claimed is decided over all \
           {family} comparisons of this report together, by the Benjamini–Hochberg procedure at \
           a false-discovery rate of {fdr:.0} % ({found} discoveries; q is each one's adjusted \
           p-value). An interval entirely within ±{margin:.0} % reads \"no measurable \
           difference\"; one that is neither a discovery nor inside that margin reads \"not \
           resolved\". The A/A control shows what this rule finds between identical servers.\n\
         - **No doubted number.** A run whose own cross-check (the harness' reading of the \
           server's CPU against the server's exit summary) disagrees is excluded from every \
           table, figure and finding, and listed under *Cells not run or failed*.\n\
         - A cell that cannot run (a model's documented limit, or a rate above one it could not \
           sustain) says so instead of hanging; every run has a timeout (up to {timeout} s). † \
           marks a cell explained under *Cells not run or failed*.\n",
        rounds = r.repeats,
        warmup = r.warmup_s,
        size = r.size,
        bound = stats::CPU_BOUND * 100.0,
        family = x.family.size(),
        fdr = crate::stats::FDR * 100.0,
        found = x.family.discoveries(),
        margin = crate::stats::EQUIVALENCE * 100.0,
        timeout = r.cell_timeout_s,
    )
}

/// The whole-run cross-check of every run that has one: how many agreed
/// within 5 %, how many were judged by the clock-tick floor instead (and
/// what that floor is against their CPU), and the runs excluded.
fn cross_check(r: &CompareResults) -> String {
    let mut by_share = 0;
    let mut by_floor = Vec::new();
    // The largest relative difference among runs judged by the 5 % rule.
    let mut worst: Option<f64> = None;
    for m in r.cells.iter().flat_map(|c| &c.runs) {
        let Some(a) = &m.server.summary_agreement else {
            continue;
        };
        if a.judged_by_ticks {
            by_floor.push(if a.summary_cpu_s > 0.0 {
                a.tolerance_share
            } else {
                f64::INFINITY
            });
        } else {
            by_share += 1;
            let rel = (a.ratio - 1.0).abs();
            worst = Some(worst.map_or(rel, |w| w.max(rel)));
        }
    }
    let excluded: Vec<String> = r
        .cells
        .iter()
        .flat_map(|c| {
            c.failures
                .iter()
                .filter(|f| f.reason.starts_with(EXCLUDED))
                .map(move |f| {
                    format!(
                        "{} / {} round {}",
                        c.model,
                        c.workload.label(),
                        f.repeat + 1
                    )
                })
        })
        .collect();
    let kept = by_share + by_floor.len();
    if kept + excluded.len() == 0 {
        return "No run recorded a cross-check (the servers' exit summaries were not available).\n"
            .into();
    }
    let mut out = format!(
        "Over each whole run, the harness' reading of the server's CPU (every thread, live \
         descendant and reaped child, read just before SIGTERM) was compared with the server's \
         own exit summary (`getrusage` SELF + CHILDREN). Of the {} runs that had one, {} \
         disagreed and were excluded. Of the {kept} kept, {by_share} were held to 5 % of \
         their CPU{}",
        kept + excluded.len(),
        excluded.len(),
        match worst {
            Some(w) => format!(" (largest difference {:.1} %)", w * 100.0),
            None => String::new(),
        }
    );
    match Spread::of(by_floor.iter().copied().filter(|v| v.is_finite())) {
        Some(s) => out.push_str(&format!(
            "; {} used so little CPU over the run that 5 % is less than the clock-tick floor \
             (two ticks plus the summary's 1 ms rounding), and were held to that floor instead: \
             {} of their CPU at the median ({} to {}), a check that says the accounting reached \
             the server, not that it agrees to 5 %.\n",
            by_floor.len(),
            stats::percent(s.median),
            stats::percent(s.min),
            stats::percent(s.max)
        )),
        None if !by_floor.is_empty() => out.push_str(&format!(
            "; {} used no CPU the summary could see and were held to the clock-tick floor.\n",
            by_floor.len()
        )),
        None => out.push_str(".\n"),
    }
    if !excluded.is_empty() {
        out.push_str(&format!(
            "\nExcluded (each listed with its disagreement under *Cells not run or failed*): {}.\n",
            excluded.join("; ")
        ));
    }
    out
}

/// Where this machine bends the numbers, with what the data says about it.
fn distortions(r: &CompareResults) -> String {
    let env = &r.environment;
    let mut out = String::new();
    let pins = r
        .cells
        .iter()
        .flat_map(|c| c.runs.first())
        .next()
        .map(|m| (m.workload.load_cpus.clone(), m.workload.server_cpus.clone()));
    let _ = writeln!(
        out,
        "- **{} CPUs{}.** {} The other processes of this machine compete for the same CPUs; \
         every repeat's range is printed so that a disturbed run shows.",
        env.cpus,
        if env.virtualised { ", virtualised" } else { "" },
        match pins {
            Some((load, server)) if !server.is_empty() => format!(
                "The load generator ran pinned to CPU {load:?} and the server to CPU {server:?}: \
                 the measurement shares the machine with what it measures."
            ),
            _ => "The load generator and the server share the machine.".to_string(),
        }
    );
    let _ = writeln!(
        out,
        "- **Cross-CPU wake-ups.** A request sent from the load generator's CPU wakes the server on \
         the other CPU with an inter-processor interrupt{}; at one connection every request pays \
         for two of them, so the c=1 latencies measure the wake-up path more than the model.",
        if env.virtualised {
            ", which in a virtual machine is a trip through the hypervisor (tens of µs)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- **Loopback softirq work is charged to the sender.** Over loopback the receiving half of \
         TCP runs in the softirq raised by the sending `write`, on the sender's CPU and in its \
         system time: part of the server's receive work is billed to the client and part of the \
         client's to the server. Compare the sum of client and server CPU per request, or the \
         user share (`cells.csv`), rather than system time alone."
    );
    let _ = writeln!(
        out,
        "- **CPU time resolution.** `/proc` reports CPU in {} Hz ticks, rounded down per \
         process; the per-request CPU therefore comes from each server process's CPU-time \
         clock (`clock_getcpuclockid` + `clock_gettime`, nanoseconds, exited threads \
         included: what `getrusage` reports), and only the user/system split (`server_user_share` in \
         `cells.csv`) from `/proc`. That split is sampled at ticks: a server that runs in \
         short bursts between sleeps can be missed by most ticks, so on this machine its \
         user share can read 0 % or n/a while its CPU is plainly not zero. \
         The perf counters attached to every server thread (for syscall and context-switch \
         counts) add a little to each of its context switches.",
        env.clock_ticks_per_sec
    );
    // What counting syscalls costs, from the runs that did both.
    let mut slowdown = Vec::new();
    for c in r.cells.iter().filter(|c| c.purpose == Purpose::Syscalls) {
        let counted = c.spread(stats::server_cpu);
        let timed = timing(r, &c.model, &c.workload).and_then(|t| t.spread(stats::server_cpu));
        if let (Some(a), Some(b)) = (counted, timed) {
            slowdown.push(a.median / b.median);
        }
    }
    if let Some(s) = Spread::of(slowdown) {
        let _ = writeln!(
            out,
            "- **Counting syscalls.** In the syscall-counting runs the servers' CPU per request \
             was {:.1}× that of the timing runs' median (from {:.1}× to {:.1}× over {} \
             model/workload pairs; one counting run each, so no interval: a description of the \
             tracing's cost, not a comparison). The counts come from separate runs because a \
             syscall tracepoint sends every syscall on the machine through the kernel's tracing \
             path; those runs feed no other table.",
            s.median, s.min, s.max, s.n
        );
    }
    // Cells where the client, not the server, may have set the rate.
    let mut client_bound = Vec::new();
    let mut measured = 0;
    for c in r.cells.iter().filter(|c| c.purpose == Purpose::Timing) {
        if let (Some(cl), Some(sv)) = (c.spread(stats::client_cpu), c.spread(stats::server_cpu)) {
            measured += 1;
            if cl.median > sv.median {
                client_bound.push(format!("{} / {}", c.model, c.workload.label()));
            }
        }
    }
    if client_bound.is_empty() {
        let _ = writeln!(
            out,
            "- **Client cost.** In every cell the load generator used less CPU per request than the \
             server."
        );
    } else {
        let _ = writeln!(
            out,
            "- **Client cost.** In {} of {measured} cells the load generator used more CPU per \
             request than the server (medians), so their rates may be the client's limit as much \
             as the server's: {}.",
            client_bound.len(),
            client_bound.join("; ")
        );
    }
    out
}

fn environment(r: &CompareResults) -> String {
    let e = &r.environment;
    let mut t = Table::new(&["", ""]);
    let mut row = |k: &str, v: String| t.rows.push(vec![k.to_string(), v]);
    row(
        "commit measured",
        e.git_commit
            .clone()
            .unwrap_or_else(|| "unknown (not a git checkout)".into()),
    );
    if let Some(by) = &r.rendered_by {
        row("report rendered by", format!("{by} (`--report-from`)"));
    }
    row("kernel", e.kernel.clone());
    row(
        "CPU",
        format!(
            "{}{} — {} usable, {} online{}",
            e.cpu_model,
            e.cpu_mhz
                .map(|m| format!(
                    ", {} MHz (mean of `cpu MHz` at the start)",
                    significant(m, 4)
                ))
                .unwrap_or_default(),
            e.cpus,
            e.cpus_online,
            if e.virtualised {
                ", virtual machine (`hypervisor` flag)"
            } else {
                ""
            }
        ),
    );
    row(
        "steal time over the run",
        match r.steal_share {
            Some(s) => format!(
                "{} % of all CPU time (`/proc/stat`): time the hypervisor gave to others",
                significant(s * 100.0, 2)
            ),
            None => "not recorded".into(),
        },
    );
    row("memory", e.memory_total.clone());
    row(
        "rustc",
        e.rustc.clone().unwrap_or_else(|| "not recorded".into()),
    );
    row("harness build", e.harness_build.clone());
    row(
        "RLIMIT_NOFILE (harness)",
        format!("{} soft / {} hard", e.rlimit_nofile.0, e.rlimit_nofile.1),
    );
    row("clock ticks", format!("{} Hz", e.clock_ticks_per_sec));
    row(
        "perf",
        format!(
            "perf_event_paranoid = {}, syscall tracepoints {}",
            e.perf_event_paranoid.as_deref().unwrap_or("?"),
            if e.syscall_tracepoints {
                "available"
            } else {
                "not available"
            }
        ),
    );
    let mut out = t.render();
    if !e.vulnerabilities.is_empty() {
        out.push_str("\nCPU vulnerabilities and their mitigations (`/sys/devices/system/cpu/vulnerabilities`):\n\n");
        for (k, v) in &e.vulnerabilities {
            let _ = writeln!(out, "- `{k}`: {v}");
        }
    }
    out
}

/// One line per workload of the run: the command that repeats any of its
/// cells, and the rows whose runs differed from it (a longer window where
/// a thread per connection must be read), each with its own.
fn repeat_table(r: &CompareResults) -> Option<String> {
    let mut t = Table::new(&["workload", "repeat one cell with"]);
    for purpose in [Purpose::Timing, Purpose::Syscalls] {
        let mut seen: Vec<Workload> = Vec::new();
        for c in r.cells.iter().filter(|c| c.purpose == purpose) {
            if seen.contains(&c.workload) {
                continue;
            }
            seen.push(c.workload);
            // Each command, with the rows whose first run it repeats.
            let mut commands: Vec<(String, Vec<&str>)> = Vec::new();
            for other in r
                .cells
                .iter()
                .filter(|o| o.purpose == purpose && o.workload == c.workload)
            {
                let Some(m) = other.runs.first() else {
                    continue;
                };
                let flag = (purpose == Purpose::Syscalls).then_some("--syscalls");
                let cmd = repeat_command(m, "MODEL", flag, false);
                match commands.iter_mut().find(|(k, _)| *k == cmd) {
                    Some((_, rows)) => rows.push(&other.model),
                    None => commands.push((cmd, vec![&other.model])),
                }
            }
            // The command most rows share first.
            commands.sort_by_key(|(_, rows)| std::cmp::Reverse(rows.len()));
            let Some(((common, _), rest)) = commands.split_first() else {
                continue;
            };
            let mut text = format!("`{common}`");
            for (cmd, rows) in rest {
                let _ = write!(text, "; for {}: `{cmd}`", rows.join(", "));
            }
            t.rows.push(vec![
                format!(
                    "{}{}",
                    c.workload.label(),
                    if purpose == Purpose::Syscalls {
                        " (syscalls)"
                    } else {
                        ""
                    }
                ),
                text,
            ]);
        }
    }
    (!t.rows.is_empty()).then(|| {
        format!(
            "MODEL is the row's model:mode; a row `MODEL:MODE+FLAG` adds `-- --FLAG` (`+FLAG=V`: \
             `-- --FLAG V`), `blocking:pool` and `blocking:prefork` add `-- --workers 128` (the \
             *Models* table lists each row's server arguments), and `--seed N` repeats round N's \
             payloads. The A/A twin `epoll:level#aa` is `epoll:level`.\n\n{}",
            t.render()
        )
    })
}

fn models_table(r: &CompareResults) -> String {
    let mut t = Table::new(&["model", "status", "server arguments"]);
    for m in &r.models {
        t.rows.push(vec![
            label(&m.model),
            match &m.unavailable {
                Some(why) => format!("NOT RUN: {why}"),
                None => "run".into(),
            },
            if m.server_args.is_empty() {
                "—".into()
            } else {
                format!("`{}`", m.server_args.join(" "))
            },
        ]);
    }
    t.render()
}

fn not_run_table(r: &CompareResults) -> Option<String> {
    let mut t = Table::new(&["model", "workload", "what happened"]);
    for c in &r.cells {
        let what = format!(
            "{}{}",
            c.workload.label(),
            if c.purpose == Purpose::Syscalls {
                " (syscalls)"
            } else {
                ""
            }
        );
        if let Some(why) = &c.not_run {
            t.rows.push(vec![
                label(&c.model),
                what.clone(),
                format!("not run: {why}"),
            ]);
        }
        for f in &c.failures {
            t.rows.push(vec![
                label(&c.model),
                what.clone(),
                format!("repeat {} failed: {}", f.repeat + 1, f.reason),
            ]);
        }
    }
    (!t.rows.is_empty()).then(|| t.render())
}

/// A part of the report after the summary and the environment: its title
/// and how it is written (`None`: nothing measured for it, left out).
/// Adding a section is one line here and its function in its own file.
pub struct Section {
    pub title: &'static str,
    pub render: fn(&Ctx) -> Option<Answer>,
}

/// The questions a reader brings, in the order the report answers them.
pub const SECTIONS: &[Section] = &[
    Section {
        title: "Which model, when?",
        render: super::when::which_when,
    },
    Section {
        title: "The instrument's floor",
        render: super::instrument::floor,
    },
    Section {
        title: "How fine can this run resolve? The A/A control",
        render: super::control::aa_control,
    },
    Section {
        title: "What does a request cost at a given load?",
        render: questions::request_cost,
    },
    Section {
        title: "What do more active connections change?",
        render: super::axes::connections,
    },
    Section {
        title: "What does the message size change?",
        render: super::axes::sizes,
    },
    Section {
        title: "What does an idle connection cost?",
        render: questions::idle_cost,
    },
    Section {
        title: "How fast does each accept connections?",
        render: questions::accept_rate,
    },
    Section {
        title: "Where does the tail latency come from?",
        render: questions::tail_latency,
    },
    Section {
        title: "How many system calls per request, by call?",
        render: questions::syscalls,
    },
    Section {
        title: "Closed-loop saturation (throughput, not cost)",
        render: questions::saturation,
    },
    Section {
        title: "io_uring at its best: the ablation ladder",
        render: super::ladder::ladder,
    },
    Section {
        title: "What does a server flag change?",
        render: super::flags::flag_cost,
    },
];

/// The summary and every section's text, as rendered from `x`.
pub fn answers(x: &Ctx) -> Vec<(&'static str, Answer)> {
    SECTIONS
        .iter()
        .filter_map(|s| Some((s.title, (s.render)(x)?)))
        .collect()
}

/// The whole REPORT.md.
pub fn render(x: &Ctx) -> String {
    let r = x.r;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# The I/O-model lab: measured comparison\n");
    let _ = writeln!(
        w,
        "Produced by `{}` from {} to {} ({:.0} s). Every number below was measured in that run \
         and computed from [`compare.json`](compare.json) (every cell also in \
         [`cells.csv`](cells.csv)); text that is not a measurement says so.\n",
        r.command, r.started_at, r.finished_at, r.elapsed_s
    );
    if r.finished_at == "(in progress)" {
        let _ = writeln!(
            w,
            "> This comparison did not finish: the report covers the {:.0} s measured before it \
             stopped (`compare.partial.json`); cells after that point are empty.\n",
            r.elapsed_s
        );
    }
    if r.quick {
        let _ = writeln!(
            w,
            "> This is a `--quick` run: a reduced matrix, {} round(s) of {} s windows. It shows that \
             the pipeline works; with fewer than {} rounds no interval can be stated, so do not \
             draw conclusions from it.\n",
            r.repeats,
            r.duration_s,
            crate::stats::MIN_PAIRS
        );
    }
    let answered = answers(x);
    let _ = writeln!(w, "## Summary\n");
    match questions::yardstick(r) {
        Some(y) if is_reference(&y) => {
            let _ = writeln!(
                w,
                "Yardstick: {} — what a reader would use instead of the lab's loops.\n",
                label(&y)
            );
        }
        Some(y) => {
            let _ = writeln!(w, "Yardstick: {y} (no peer was measured in this run).\n");
        }
        None => {}
    }
    let lines: Vec<&String> = answered
        .iter()
        .filter_map(|(_, a)| a.summary.as_ref())
        .collect();
    if lines.is_empty() {
        let _ = writeln!(w, "Nothing was measured that answers a question.\n");
    }
    for l in lines {
        let _ = writeln!(w, "- {l}");
    }
    let missing: Vec<String> = r
        .models
        .iter()
        .filter(|m| m.unavailable.is_some())
        .map(|m| label(&m.model))
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            w,
            "- **Not run**: {} (the reason is under *Models*).",
            missing.join(", ")
        );
    }
    let _ = writeln!(
        w,
        "\nRanges are medians of the repeats; whether two models differ is tested in each \
         section's findings.\n"
    );
    let _ = writeln!(w, "## Environment\n\n{}", environment(r));
    let _ = writeln!(w, "## Method\n\n{}", method(x));
    let _ = writeln!(w, "## Models\n\n{}", models_table(r));
    for (title, a) in &answered {
        let _ = writeln!(w, "## {title}\n\n{}", a.body);
    }
    let _ = writeln!(w, "## Accounting cross-check\n\n{}", cross_check(r));
    let _ = writeln!(w, "## This machine's distortions\n\n{}", distortions(r));
    if let Some(t) = repeat_table(r) {
        let _ = writeln!(w, "## Repeating a cell\n\n{t}");
    }
    if let Some(t) = not_run_table(r) {
        let _ = writeln!(w, "## Cells not run or failed\n\n{t}");
    }
    let _ = writeln!(
        w,
        "## Raw data\n\n`compare.json` holds everything (this report can be rewritten from it with \
         `harness compare --report-from results/compare.json`); `cells.csv` one row per cell; \
         `pingpong.json`, `connect.json`, `idle.json` and `openloop.json` the same runs by workload."
    );
    out
}
