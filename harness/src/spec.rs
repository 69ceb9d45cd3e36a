//! The vocabulary every layer shares for naming what runs: `MODEL[:MODE]`
//! (`ModelSpec`), and the rows of `harness compare`,
//! `MODEL:MODE[+FLAG[=VALUE]]...[#TAG]` (`row`). No I/O.

use std::fmt;
use std::str::FromStr;

/// The A/A control: `epoll:level` measured a second time under another
/// label, in the same rounds, so that the report shows what the method
/// finds between two identical servers (nothing, it must) and what it can
/// resolve in this run (the width of their interval).
pub const AA_ROW: &str = "epoll:level#aa";

/// The instrument's floor: the cheapest reflector there is (one thread
/// busy-polling epoll, no wake-up on the server's side), measured like a
/// model, so that the load generator's own latency and CPU per request are
/// known in the same rounds as everything it measures.
pub const FLOOR_ROW: &str = "reflector";

/// The model:modes of the standard matrix, in report order. A row
/// `MODEL:MODE+FLAG` is that model:mode run with `--FLAG` (see `row`).
pub const STANDARD_MODELS: &[&str] = &[
    "blocking:iterative",
    "blocking:thread",
    "blocking:pool",
    "blocking:fork",
    "blocking:prefork",
    "nonblocking:spin",
    "nonblocking:sleep",
    "select",
    "poll",
    "epoll:level",
    "epoll:edge",
    "sigio:plain",
    "sigio:rt",
    "uring:single",
    "uring:multishot",
    "uring:multishot+sqpoll",
    "coroutine:stackful",
    "coroutine:async",
    "peers:tokio",
    "peers:polling",
];

/// Open loop: below this share of the offered rate the run says so.
pub const OFFERED_SHARE: f64 = 0.95;

/// io_uring's best combination, a named row: every ladder feature that
/// goes together (see `uring/README.md`).
pub const URING_BEST: &str =
    "uring:multishot+defer-taskrun+skip-send-cqe+fixed-files+incremental-buffers";

/// The pairs a reader weighs ("Which model, when?"), as (row, against,
/// what the question is).
pub const PAIRS: &[(&str, &str, &str)] = &[
    (
        "uring:multishot",
        "epoll:level",
        "io_uring or epoll: what does completion-based I/O save per request?",
    ),
    (
        URING_BEST,
        "epoll:level",
        "io_uring at its best (the ladder's best combination) against epoll",
    ),
    (
        "coroutine:async",
        "blocking:thread",
        "a coroutine (async task) against a thread per connection",
    ),
    (
        "coroutine:stackful",
        "blocking:thread",
        "a stackful coroutine against a thread per connection",
    ),
    (
        "epoll:level",
        "peers:tokio",
        "what tokio's portability costs against raw epoll (epoll against tokio)",
    ),
];

/// Every row of `PAIRS`, once: what the matrix's crossover blocks (active
/// connections, message size) measure.
pub const PAIR_ROWS: &[&str] = &[
    "epoll:level",
    "uring:multishot",
    URING_BEST,
    "coroutine:stackful",
    "coroutine:async",
    "blocking:thread",
    "peers:tokio",
];

/// Whether a row is a model a reader weighs: not the A/A twin of another
/// row, not the instrument's floor.
pub fn is_model_row(label: &str) -> bool {
    twin_of(label).is_none() && label != FLOOR_ROW
}

/// `MODEL[:MODE]`, e.g. `epoll:edge` or `blocking` (the model's default mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    pub model: String,
    pub mode: Option<String>,
}

impl FromStr for ModelSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<ModelSpec, String> {
        if let Some((spec, tag)) = text.split_once('#') {
            return Err(format!(
                "`{text}`: `#{tag}` names a second row of harness compare (the A/A control); \
                 here give the model itself: `{spec}`"
            ));
        }
        if let Some((spec, flags)) = text.split_once('+') {
            return Err(format!(
                "`{text}`: `+FLAG` is a row of harness compare; here give the flag to the \
                 server: `{spec} -- --{}`",
                flags.replace('+', " --")
            ));
        }
        let (model, mode) = match text.split_once(':') {
            Some((model, mode)) => (model, Some(mode)),
            None => (text, None),
        };
        let is_name = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !is_name(model) {
            return Err(format!("`{text}`: expected MODEL[:MODE], e.g. epoll:edge"));
        }
        if let Some(mode) = mode {
            if !is_name(mode) {
                return Err(format!("`{text}`: empty or malformed MODE after `:`"));
            }
        }
        Ok(ModelSpec {
            model: model.to_owned(),
            mode: mode.map(str::to_owned),
        })
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Some(mode) => write!(f, "{}:{mode}", self.model),
            None => f.write_str(&self.model),
        }
    }
}

/// The model:mode a row of the comparison runs and the arguments it adds.
/// `uring:multishot+sqpoll` is `uring:multishot` with `--sqpoll`, a row of
/// its own in every table, set beside `uring:multishot` where the report
/// asks what the flag changes; `+min-wait=50` adds `--min-wait 50`.
/// `epoll:level#aa` runs `epoll:level` unchanged under another label: the
/// A/A control.
pub fn row(label: &str) -> Result<(ModelSpec, Vec<String>), String> {
    let untagged = match label.split_once('#') {
        Some((_, tag)) if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            return Err(format!("`{label}`: empty or malformed TAG after `#`"))
        }
        Some((row, _)) => row,
        None => label,
    };
    let mut parts = untagged.split('+');
    let spec: ModelSpec = parts.next().unwrap_or_default().parse()?;
    let mut args = Vec::new();
    for flag in parts {
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        let named =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let valued = value.is_none_or(|v| {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        });
        if !(named && valued) {
            return Err(format!(
                "`{label}`: empty or malformed FLAG after `+` (FLAG or FLAG=VALUE)"
            ));
        }
        args.push(format!("--{name}"));
        args.extend(value.map(str::to_string));
    }
    Ok((spec, args))
}

/// The row a `+FLAG` row is compared with: the label before its first `+`.
pub fn base_row(label: &str) -> Option<&str> {
    label
        .split_once('#')
        .map_or(label, |(row, _)| row)
        .split_once('+')
        .map(|(base, _)| base)
}

/// The row an A/A twin (`epoll:level#aa`) measures again: the label before `#`.
pub fn twin_of(label: &str) -> Option<&str> {
    label.split_once('#').map(|(row, _)| row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_rows_are_exactly_the_rows_the_pairs_name() {
        let mut named: Vec<&str> = PAIRS.iter().flat_map(|(a, b, _)| [*a, *b]).collect();
        named.sort();
        named.dedup();
        let mut rows = PAIR_ROWS.to_vec();
        rows.sort();
        assert_eq!(named, rows);
        for r in PAIR_ROWS {
            assert!(row(r).is_ok(), "{r}");
        }
    }
}
