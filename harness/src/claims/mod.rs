//! `harness claims`: the course notes' eighteen claims (C1–C18), each with a
//! verdict measured on this machine, written to `CLAIMS.md`.
//!
//! Each group of claims has its file, and in it each claim has three parts
//! side by side: what it measures (a `harness run`, `harness phases` or one
//! of `probe`'s measurements, each with the command that reproduces it),
//! the figures it keeps, and its verdict rule, a pure function of those
//! figures (tested on fixed inputs in both directions). Comparisons use the
//! report's one statistics rule (`crate::stats`): runs in paired rounds,
//! the ratio's 95 % interval, Benjamini–Hochberg over every comparison of
//! `CLAIMS.md` (its own family), "no measurable difference" only where the
//! whole interval lies within ±`stats::EQUIVALENCE`, otherwise "not
//! resolved" unless it is a discovery. So every claim is measured first,
//! and its rule is read twice: once to collect the family's p-values, once
//! to decide. A claim whose model is not in this workspace is "not yet
//! measured", with the reason; one this machine cannot decide is "not
//! decided here", with what would decide it.

mod coroutines;
mod lab;
mod probe;
mod processes;
mod readiness;
mod traced;

use crate::account;
use crate::env::Environment;
use crate::stats::{self, Family};
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub use probe::{Creation, IdleUse, Zombie};

#[derive(clap::Args, Debug)]
pub struct ClaimsArgs {
    /// Where the table goes.
    #[arg(long, default_value = "CLAIMS.md")]
    pub out: PathBuf,
    /// Only these claims (comma-separated), e.g. `C4,C7`; the file then
    /// holds only their rows.
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Run `cargo bench -p coroutine --bench switch` first (a few minutes
    /// with its build); without it, C12 reads what an earlier run left in
    /// target/criterion, if anything.
    #[arg(long)]
    pub bench: bool,
}

/// A claim's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Holds,
    /// Holds, with what it leaves out.
    HoldsWithCaveat(String),
    DoesNotHold(String),
    /// Not something any measurement decides, and why.
    NotApplicable(String),
    /// Not decidable on this machine, and what would decide it.
    NotDecidedHere(String),
    /// The whole interval of the comparison lies within the equivalence
    /// margin.
    NoMeasurableDifference(String),
    /// The interval is too wide to say either way.
    NotResolved(String),
    /// Its model or instrument is not here yet, and why.
    NotYetMeasured(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Holds => f.write_str("**holds**"),
            Verdict::HoldsWithCaveat(c) => write!(f, "**holds with a caveat**: {c}"),
            Verdict::DoesNotHold(why) => write!(f, "**does not hold**: {why}"),
            Verdict::NotApplicable(why) => write!(f, "**not applicable here**: {why}"),
            Verdict::NotDecidedHere(why) => write!(f, "**not decided here**: {why}"),
            Verdict::NoMeasurableDifference(what) => {
                write!(f, "**no measurable difference**: {what}")
            }
            Verdict::NotResolved(what) => write!(f, "**not resolved**: {what}"),
            Verdict::NotYetMeasured(why) => write!(f, "**not yet measured**: {why}"),
        }
    }
}

/// One row of `CLAIMS.md`.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: &'static str,
    pub claim: &'static str,
    pub verdict: Verdict,
    pub figures: String,
    pub commands: Vec<String>,
}

/// A claim measured: its rule over its figures, asked of the document's
/// family (verdict and figures).
pub type Judge = Box<dyn Fn(&Family) -> (Verdict, String)>;
/// A claim's measurement, or why there is none.
pub type Measured = Result<Judge, String>;

/// A verdict that needs no comparison.
fn fixed(verdict: Verdict, figures: String) -> Judge {
    Box::new(move |_| (verdict.clone(), figures.clone()))
}

/// The claims, as `SEED-CLAIMS.md` translates them.
pub const CLAIMS: &[(&str, &str)] = &[
    ("C1", "A blocking `recv` goes through two phases, waiting for the data and copying it from the kernel, and the process is blocked in both."),
    ("C2", "Giving every connection its own thread or process means one blocked connection does not hold up the others."),
    ("C3", "Thread-per-connection serves small numbers of clients conveniently and efficiently, but hits a wall with thousands or tens of thousands of clients; a thread pool or connection pool relieves some of that pressure but does not solve it."),
    ("C4", "Non-blocking I/O never blocks, so the process is \"very efficient\", but it busy-polls: it keeps asking the kernel and wastes CPU doing so."),
    ("C5", "A `select` event loop serves many clients from a single thread, uses few resources and little CPU."),
    ("C6", "`select` can watch at most 1024 sockets and fails beyond that; this is a design flaw of `select` itself, and epoll is the final answer to it."),
    ("C7", "Multiplexing works by `select`/`epoll` continuously polling every socket it is responsible for, and telling the process when one has data."),
    ("C8", "Replying with `send` directly after `select` says readable is wrong, because the send buffer may be full and `send` would block: the socket must first be handed to `select` for writability."),
    ("C9", "Signal-driven I/O is rarely used in practice (so the notes skip it)."),
    ("C10", "In asynchronous I/O the process is blocked in neither phase: the kernel waits for the data, copies it, and then notifies the process."),
    ("C11", "I/O does not use the CPU; computation does."),
    ("C12", "Switching between coroutines costs far less than switching between threads: it happens in the program, the operating system does not see it, and no kernel context switch is involved."),
    ("C13", "Switching between tasks when there is no I/O to wait for only slows a program down; switching pays only when a task would otherwise block on I/O."),
    ("C14", "Coroutines run in one thread and cannot use several cores; combine them with processes to use every core, for very high performance."),
    ("C15", "\"5 processes x 20 threads x 500 coroutines\" is the usual combination, and gives 50 000 requests per second."),
    ("C16", "gevent's monkey patching turns blocking calls into non-blocking ones, so code written in the blocking style gets concurrency without being rewritten."),
    ("C17", "A zombie is a child that has exited but whose parent has not yet waited for it; zombies hold system resources until the parent calls `waitpid`."),
    ("C18", "Creating a thread is cheap; creating a process means copying the parent."),
];

/// Measures claim `id`: its judge, and the commands that repeat it.
fn measure(lab: &mut lab::Lab, id: &str) -> (Measured, Vec<String>) {
    let mut commands = Vec::new();
    let measured = match id {
        "C1" => traced::c1(lab, &mut commands),
        "C2" => processes::c2(&mut commands),
        "C3" => processes::c3(&mut commands),
        "C4" => readiness::c4(&mut commands),
        "C5" => readiness::c5(&mut commands),
        "C6" => readiness::c6(&mut commands),
        "C7" => traced::c7(lab, &mut commands),
        "C8" => traced::c8(lab, &mut commands),
        "C9" => readiness::c9(&mut commands),
        "C10" => traced::c10(lab, &mut commands),
        "C11" => readiness::c11(&mut commands),
        "C12" => coroutines::c12(lab, &mut commands),
        "C13" => coroutines::c13(lab, &mut commands),
        "C14" => coroutines::c14(lab, &mut commands),
        "C15" => coroutines::c15(lab, &mut commands),
        "C16" => traced::c16(lab, &mut commands),
        "C17" => processes::c17(&mut commands),
        "C18" => processes::c18(&mut commands),
        _ => Err(format!("no measurement for {id}")),
    };
    (measured, commands)
}

/// A claim's row, its rule asked of `family`.
fn row(
    id: &'static str,
    claim: &'static str,
    m: &Measured,
    commands: &[String],
    family: &Family,
) -> Row {
    let (verdict, figures) = match m {
        Ok(judge) => judge(family),
        // A model not in the workspace, or a failed measurement: never a
        // verdict.
        Err(why) if why.starts_with("no `") => {
            (Verdict::NotYetMeasured(why.clone()), String::new())
        }
        Err(why) => (
            Verdict::NotYetMeasured(format!("the measurement failed: {why}")),
            String::new(),
        ),
    };
    Row {
        id,
        claim,
        verdict,
        figures,
        commands: commands.to_vec(),
    }
}

/// Every row, the rules read twice: the first pass collects the family's
/// p-values, the second decides on their Benjamini–Hochberg q-values.
fn rows(measured: &[(&'static str, &'static str, Measured, Vec<String>)]) -> (Vec<Row>, Family) {
    let first = Family::collecting();
    for (id, claim, m, c) in measured {
        row(id, claim, m, c, &first);
    }
    let family = first.adjust();
    let rows = measured
        .iter()
        .map(|(id, claim, m, c)| row(id, claim, m, c, &family))
        .collect();
    (rows, family)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `CLAIMS.md`.
pub fn render(rows: &[Row], family: &Family, env: &Environment, elapsed_s: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# The course notes' claims, measured\n");
    let _ = writeln!(
        out,
        "Written by `harness claims` (commit {}, {}) in {elapsed_s:.0} s on {}, {} CPUs \
         ({}). Re-run it on your machine (`cargo run --release -p harness -- claims`) to get \
         your own verdicts; each row's command repeats its measurement. The claims are those \
         of the course notes the lab started from (C1–C18), translated. Verdict rules are in \
         `harness/src/claims/`, next to each claim's measurement. Comparisons follow the \
         report's rule: runs in paired rounds (the order alternating), the ratio of the two \
         sides with its {:.0} % interval (Student's t on the per-round log-ratios), \
         Benjamini–Hochberg at a false-discovery rate of {:.0} % over this document's {} \
         comparisons ({} discoveries); \"no measurable difference\" only where the whole \
         interval lies within ±{:.0} %, \"not resolved\" where it is neither. A claim whose \
         model is not in the workspace is \"not yet measured\"; one this machine cannot \
         decide is \"not decided here\", with what would decide it.\n",
        env.git_commit.as_deref().unwrap_or("unknown"),
        env.harness_build,
        env.kernel,
        env.cpus,
        env.cpu_model,
        stats::CONFIDENCE * 100.0,
        stats::FDR * 100.0,
        family.size(),
        family.discoveries(),
        stats::EQUIVALENCE * 100.0
    );
    let _ = writeln!(out, "| id | claim | verdict | figures | command |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for r in rows {
        let commands: Vec<String> = r.commands.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.id,
            cell(r.claim),
            cell(&r.verdict.to_string()),
            cell(&r.figures),
            commands.join("<br>")
        );
    }
    out
}

pub fn main(args: ClaimsArgs) -> io::Result<ExitCode> {
    let wanted: Vec<String> = args
        .only
        .iter()
        .flatten()
        .map(|s| s.trim().to_ascii_uppercase())
        .collect();
    if let Some(bad) = wanted
        .iter()
        .find(|w| !CLAIMS.iter().any(|(id, _)| id == w))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--only {bad}: no such claim (C1–C18)"),
        ));
    }
    let started = Instant::now();
    let mut lab = lab::Lab {
        run_bench: args.bench,
        ..lab::Lab::default()
    };
    let mut measured = Vec::new();
    for (id, claim) in CLAIMS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == id) {
            continue;
        }
        let t0 = Instant::now();
        let (m, commands) = measure(&mut lab, id);
        eprintln!(
            "harness claims: {id} measured in {:.1} s{}",
            t0.elapsed().as_secs_f64(),
            m.as_ref().err().map_or(String::new(), |e| format!(": {e}"))
        );
        measured.push((*id, *claim, m, commands));
    }
    let (rows, family) = rows(&measured);
    for r in &rows {
        eprintln!("harness claims: {}: {}", r.id, r.verdict);
    }
    let text = render(
        &rows,
        &family,
        &account::environment(),
        started.elapsed().as_secs_f64(),
    );
    fs::write(&args.out, text)
        .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", args.out.display())))?;
    eprintln!(
        "harness claims: {:.0} s; wrote {}",
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
