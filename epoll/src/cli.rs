//! The command line: the trigger mode, and with `--workers N` how the loops
//! share the port (`lab::workers::Share`). Nothing here touches a socket.

use clap::{Parser, ValueEnum};
use lab::workers::Share;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Trigger {
    /// Reported while ready; interest edited on the rare transitions.
    Level,
    /// Reported on change; registered once, read until drained.
    Edge,
}

#[derive(Parser)]
#[command(
    name = "epoll",
    version,
    about = "Echo server: event loops on epoll(7), level- or edge-triggered"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: lab::cli::Common,
    #[arg(long, value_enum, default_value_t = Trigger::Level)]
    pub mode: Trigger,
    /// With --workers N: how the loops share the port.
    #[arg(long, value_enum, default_value_t = Share::ReusePort)]
    pub share: Share,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_level_and_reuseport() {
        let cli = Cli::try_parse_from(["epoll"]).expect("no flags is valid");
        assert_eq!((cli.mode, cli.share), (Trigger::Level, Share::ReusePort));
    }

    #[test]
    fn every_sharing_mode_parses_and_an_unknown_one_is_a_usage_error() {
        for (name, share) in [
            ("reuseport", Share::ReusePort),
            ("exclusive", Share::Exclusive),
            ("shared", Share::Shared),
        ] {
            let cli = Cli::try_parse_from(["epoll", "--share", name]).expect(name);
            assert_eq!(cli.share, share);
        }
        let err = Cli::try_parse_from(["epoll", "--share", "herd"])
            .err()
            .expect("rejected");
        assert_eq!(err.exit_code(), 2);
    }
}
