//! `harness` — conformance checks and measurements for the lab's models.
//!
//! `harness check MODEL[:MODE]` runs the conformance suite against a model (or
//! `--target HOST:PORT`, any echo server), and `harness check --faults
//! MODEL[:MODE]` the same cases under injected kernel errors (strace);
//! `harness run` takes one
//! measurement; `harness compare` runs the standard matrix and writes
//! `results/`.

use clap::{Parser, Subcommand};
use std::io::{self, Write as _};
use std::process::ExitCode;

use harness::compare::{self, CompareArgs};
use harness::load::sys;
use harness::report;
use harness::run::RunArgs;

#[derive(Parser)]
#[command(
    version,
    about = "Conformance checks and measurements for the I/O-model lab"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the conformance suite against a model or a running server.
    Check(harness::check::CheckArgs),
    /// Take one measurement of one model (or of a running server).
    Run(harness::run::RunArgs),
    /// Run the standard matrix over every model and write results/.
    Compare(harness::compare::CompareArgs),
    /// Trace one request's system calls and sort them into Stevens' two
    /// phases (wait for data, copy data).
    Phases(harness::phases::PhasesArgs),
    /// Measure the course notes' claims C1–C18 and write CLAIMS.md.
    Claims(harness::claims::ClaimsArgs),
    /// Measure the machine's timer wake-up lateness on each CPU (the floor
    /// under every latency figure).
    Floor(harness::floor::FloorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check(args) => harness::check::main(args),
        Command::Run(args) => run(args),
        Command::Compare(args) => compare(args),
        Command::Phases(args) => harness::phases::main(args),
        Command::Claims(args) => harness::claims::main(args),
        Command::Floor(args) => harness::floor::main(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: {e}");
            ExitCode::from(1)
        }
    }
}

/// `harness run`: one measurement, printed as JSON or as a table.
fn run(args: RunArgs) -> io::Result<ExitCode> {
    let json = args.opts.json;
    let m = harness::run::main(args)?;
    let text = if json {
        serde_json::to_string_pretty(&m).map_err(io::Error::other)? + "\n"
    } else {
        report::run_table(&m)
    };
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A reader that stopped early (`| head`) is not a failed measurement.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(sys::named("write(stdout)", e)),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// `harness compare`: measure (`compare`), then render (`report`); or, with
/// `--report-from`, render an earlier record again.
fn compare(args: CompareArgs) -> io::Result<ExitCode> {
    if let Some(path) = &args.report_from {
        let written = report::rewrite(path, &args.out)?;
        eprintln!(
            "harness compare: rewrote {} files in {}",
            written.len(),
            args.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = args.out.clone();
    let compared = compare::main(args)?;
    let written = report::write_compared(&out, &compared)?;
    eprintln!(
        "harness compare: {:.0} s; wrote {}",
        compared.results.elapsed_s,
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
