//! The copy phase (phase 2: `recv`, transform, `send`, queue the rest) is
//! kept in each model's loop file on purpose, so that each file reads as one
//! page. The copies must not drift: this test compares them.
//!
//! `sigio`'s two loops also share their accept pass, which arms each socket.
//!
//! Convention: a copy sits between a line `// copy-phase: begin NAME` and
//! the next line `// copy-phase: end`. Every copy of NAME must be the same
//! text once the model's own name for what a short write waits for is
//! replaced (`POLLOUT` → `WRITABLE`); the model's name in messages is its
//! file's `MODEL` constant, outside the copy. Nothing else may differ, not
//! even a comment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A loop file, the copies it must hold, and its own names (its word, then
/// the common one).
type Copies = (&'static str, &'static [&'static str], Names);
type Names = &'static [(&'static str, &'static str)];

const COPIES: &[Copies] = &[
    (
        "poll/src/event_loop.rs",
        &["on_readable", "reply"],
        &[("POLLOUT", "WRITABLE")],
    ),
    (
        "select/src/event_loop.rs",
        &["on_readable", "reply"],
        &[("the write set", "WRITABLE")],
    ),
    (
        "epoll/src/level.rs",
        &["on_readable", "reply"],
        &[("EPOLLOUT", "WRITABLE")],
    ),
    ("epoll/src/edge.rs", &["reply"], &[("EPOLLOUT", "WRITABLE")]),
    (
        "nonblocking/src/sweep.rs",
        &["reply"],
        &[("the next sweep", "WRITABLE")],
    ),
    (
        "sigio/src/plain.rs",
        &["reply", "sigio_accept_all"],
        &[("a POLL_OUT signal", "WRITABLE")],
    ),
    (
        "sigio/src/rt.rs",
        &["reply", "sigio_accept_all"],
        &[("a POLL_OUT signal", "WRITABLE")],
    ),
];

const BEGIN: &str = "// copy-phase: begin ";
const END: &str = "// copy-phase: end";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lab sits in the workspace")
        .to_path_buf()
}

/// The copies in `text`, by name, in the order they appear.
fn regions(file: &str, text: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut open: Option<(String, String)> = None;
    for (number, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", number + 1);
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix(BEGIN) {
            assert!(open.is_none(), "{at}: copy-phase begins inside another");
            open = Some((name.trim().to_string(), String::new()));
        } else if trimmed == END {
            let (name, body) = open
                .take()
                .unwrap_or_else(|| panic!("{at}: end without begin"));
            assert!(
                found.insert(name.clone(), body).is_none(),
                "{at}: copy-phase {name} twice in one file"
            );
        } else if let Some((_, body)) = open.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    assert!(open.is_none(), "{file}: copy-phase never ends");
    found
}

fn normalised(body: &str, names: Names) -> String {
    names.iter().fold(body.to_string(), |text, (own, common)| {
        text.replace(own, common)
    })
}

/// The first line where two copies part, for the failure message.
fn first_difference(a: &str, b: &str) -> String {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for line in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => break,
            (x, y) if x == y => continue,
            (x, y) => return format!("line {line} of the copy:\n  {x:?}\n  {y:?}"),
        }
    }
    "no difference".into()
}

/// Every copy of every region, normalised, with the file it came from.
fn all_copies() -> BTreeMap<String, Vec<(&'static str, String)>> {
    let root = workspace();
    let mut by_name: BTreeMap<String, Vec<(&'static str, String)>> = BTreeMap::new();
    for (file, expected, names) in COPIES {
        let text =
            std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
        let found = regions(file, &text);
        let mut have: Vec<&str> = found.keys().map(String::as_str).collect();
        let mut want = expected.to_vec();
        have.sort_unstable();
        want.sort_unstable();
        assert_eq!(have, want, "{file}: the copy-phase regions it holds");
        for (name, body) in found {
            assert!(
                !body.trim().is_empty(),
                "{file}: copy-phase {name} is empty"
            );
            by_name
                .entry(name)
                .or_default()
                .push((file, normalised(&body, names)));
        }
    }
    by_name
}

#[test]
fn every_copy_of_the_copy_phase_is_the_same_text_apart_from_names() {
    for (name, copies) in all_copies() {
        assert!(copies.len() >= 2, "copy-phase {name} has a single copy");
        let (first_file, first) = &copies[0];
        for (file, copy) in &copies[1..] {
            assert!(
                copy == first,
                "copy-phase {name}: {file} differs from {first_file} at {}",
                first_difference(first, copy)
            );
        }
    }
}

#[test]
fn a_changed_comment_in_one_copy_is_caught() {
    let (file, _, names) = COPIES[0];
    let text = std::fs::read_to_string(workspace().join(file)).expect("read");
    let original = regions(file, &text);
    let drifted = regions(
        file,
        &text.replacen("Bytes already queued go first", "Queued bytes go first", 1),
    );
    assert_ne!(
        normalised(&original["reply"], names),
        normalised(&drifted["reply"], names),
        "the comparison must see a one-comment drift"
    );
}
