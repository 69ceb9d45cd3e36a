//! `harness check` (being built).

use std::io;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {}

pub fn main(_args: CheckArgs) -> io::Result<ExitCode> {
    eprintln!("harness check: not built yet");
    Ok(ExitCode::from(2))
}
