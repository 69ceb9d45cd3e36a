//! `harness compare` (being built).

use std::io;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {}

pub fn main(_args: CompareArgs) -> io::Result<ExitCode> {
    eprintln!("harness compare: not built yet");
    Ok(ExitCode::from(2))
}
