//! `harness run` (being built).

use std::io;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct RunArgs {}

pub fn main(_args: RunArgs) -> io::Result<ExitCode> {
    eprintln!("harness run: not built yet");
    Ok(ExitCode::from(2))
}
