//! The flags every model takes (the contract's table). Each model flattens
//! [`Common`] into its own `clap` parser and adds its `--mode` as an enum, so
//! an unknown mode is a clap error with exit status 2, like any bad flag.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Where to listen (HOST:PORT); port 0 asks the kernel for a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_addr)]
    pub addr: SocketAddr,

    /// Threads or processes, where the mode uses a pool.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: Option<u32>,

    /// Connections served at once; beyond it a new connection is closed at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_conns: Option<u64>,
}

impl Common {
    /// `--workers`, or the model's default when it was not given.
    pub fn workers_or(&self, default: u32) -> usize {
        self.workers.unwrap_or(default) as usize
    }
}

/// Accepts `127.0.0.1:0`, `[::1]:8080` and names such as `localhost:0`.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("not a HOST:PORT address ({e})"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        common: Common,
    }

    #[test]
    fn defaults_to_loopback_on_a_free_port() {
        let cli = Cli::try_parse_from(["model"]).expect("no flags is valid");
        assert_eq!(cli.common.addr, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(cli.common.workers_or(4), 4);
        assert_eq!(cli.common.max_conns, None);
    }

    #[test]
    fn ipv6_and_names_parse() {
        let cli = Cli::try_parse_from(["model", "--addr", "[::1]:0"]).expect("v6");
        assert!(cli.common.addr.is_ipv6());
        let cli = Cli::try_parse_from(["model", "--addr", "localhost:0"]).expect("name");
        assert!(cli.common.addr.ip().is_loopback());
    }

    #[test]
    fn bad_values_are_usage_errors_with_exit_status_2() {
        for args in [
            &["model", "--addr", "nowhere"][..],
            &["model", "--workers", "0"],
            &["model", "--max-conns", "0"],
            &["model", "--frobnicate"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("must be rejected");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
