//! The harness' layers point one way (STYLE.md, "The layers of the
//! harness"): every `crate::X` and `super::X` in `src/` is read, and an
//! import of a higher layer, or a cycle between the top-level modules or
//! between `report`'s sections, fails this test, so that a new one is
//! caught when it is written, not in a later review.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module's layer; a module may use its own layer and the
/// ones below. A module missing here fails the test: place it first.
const LAYERS: &[(&str, u8)] = &[
    // Data and vocabulary: no I/O, no policy.
    ("measurement", 1),
    ("spec", 1),
    ("stats", 1),
    ("env", 1),
    ("results", 1),
    // Instruments: start a server, offer load, read the kernel's counters.
    ("server", 2),
    ("load", 2),
    ("account", 2),
    // Procedures: one measurement, one conformance pass, one trace, the
    // timer floor, a switch's cost.
    ("run", 3),
    ("check", 3),
    ("phases", 3),
    ("floor", 3),
    ("switching", 3),
    // Drivers: what to run, in which order, how often.
    ("compare", 4),
    ("claims", 4),
    // Renders stored results only.
    ("report", 5),
];

/// A source file's module path: `src/report/markdown.rs` is
/// `["report", "markdown"]`, `src/account/mod.rs` is `["account"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        // `src/bin/`: binaries of their own, whose `crate::` is themselves.
        if path.is_dir() && !path.ends_with("src/bin") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (`//…` to the end of the line, doc comments
/// included), so that a path named in prose is not taken for an import.
/// A `//` inside a string literal would cut the line short; the harness has
/// none before a `crate::` on the same line.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every path after `prefix` (`crate::` or
/// `super::`), a `{a, b::c}` group giving `a` and `b`.
fn first_segments(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        // `harness::crate::` cannot occur, but `my_super::` can.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let after = rest.trim_start();
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        out.push(ident(item.trim()).to_owned());
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                item.push(c);
            }
            out.push(ident(item.trim()).to_owned());
        } else {
            out.push(ident(after).to_owned());
        }
    }
    out.retain(|s| !s.is_empty() && s != "self");
    out
}

/// Module → the modules it uses (edges to itself left out).
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The crate's edges between top-level modules, and between the submodules
/// of each top-level module that has them (`super::sibling`,
/// `crate::top::sibling`).
fn graphs() -> (Graph, BTreeMap<String, Graph>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let paths: Vec<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    let exists = |p: &[String]| paths.iter().any(|q| q == p);
    let mut top = Graph::new();
    let mut inner: BTreeMap<String, Graph> = BTreeMap::new();
    for (file, path) in files.iter().zip(&paths) {
        // lib.rs and main.rs sit above every layer.
        let Some(own) = path.first() else { continue };
        top.entry(own.clone()).or_default();
        let text = code(&fs::read_to_string(file).expect("read source"));
        let mut used: Vec<Vec<String>> = first_segments(&text, "crate::")
            .into_iter()
            .map(|seg| vec![seg])
            .collect();
        // `crate::own::sub` from inside `own`: an edge between its submodules.
        used.extend(
            text.split(&format!("crate::{own}::"))
                .skip(1)
                .map(|s| vec![own.clone(), ident(s).to_owned()])
                .filter(|p| exists(p)),
        );
        if path.len() >= 2 {
            let parent = &path[..path.len() - 1];
            for seg in first_segments(&text, "super::") {
                let mut sibling = parent.to_vec();
                sibling.push(seg);
                if exists(&sibling) {
                    used.push(sibling);
                }
            }
        }
        for u in used {
            if u[0] != *own {
                top.entry(own.clone()).or_default().insert(u[0].clone());
            } else if path.len() >= 2 && u.len() >= 2 && u[1] != path[1] {
                inner
                    .entry(own.clone())
                    .or_default()
                    .entry(path[1].clone())
                    .or_default()
                    .insert(u[1].clone());
            }
        }
    }
    (top, inner)
}

/// A cycle in `g`, as the path that closes it, if there is one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .unwrap_or_else(|| panic!("module `{module}` has no layer in tests/layers.rs"))
        .1
}

#[test]
fn every_import_points_to_the_same_layer_or_below() {
    let (top, _) = graphs();
    let upward: Vec<String> = top
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from, to)))
        .filter(|(from, to)| layer(to) > layer(from))
        .map(|(from, to)| {
            format!(
                "{from} (layer {}) uses {to} (layer {})",
                layer(from),
                layer(to)
            )
        })
        .collect();
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn no_cycle_between_top_level_modules() {
    let (top, _) = graphs();
    assert!(top.contains_key("report") && top["report"].contains("measurement"));
    if let Some(c) = cycle(&top) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn no_cycle_among_a_modules_submodules() {
    let (_, inner) = graphs();
    assert!(
        inner.contains_key("report"),
        "report's sections use each other"
    );
    for (module, g) in &inner {
        if let Some(c) = cycle(g) {
            panic!("import cycle inside {module}: {}", c.join(" -> "));
        }
    }
}

/// What the data layer must not touch: files, processes, sockets, the
/// kernel's calls. Reading the machine is an instrument's job.
const IO: &[&str] = &[
    "std::fs",
    "fs::",
    "std::process",
    "Command::",
    "std::net",
    "std::io",
    "io::",
    "libc::",
    "nix::",
];

#[test]
fn the_data_layer_does_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    let mut data_files = 0;
    for file in &files {
        let path = module_path(&src, file);
        if path.first().is_none_or(|m| layer(m) != 1) {
            continue;
        }
        data_files += 1;
        let text = code(&fs::read_to_string(file).expect("read source"));
        for word in IO.iter().filter(|w| text.contains(*w)) {
            found.push(format!("{}: {word}", file.display()));
        }
    }
    assert!(data_files >= 5, "the data layer's files were not found");
    assert!(
        found.is_empty(),
        "I/O in the data layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_reader_finds_imports_in_groups_and_ignores_comments() {
    let text = code(
        "use crate::{a::B, c, d::{e, f}};\n// crate::commented\nlet x = crate::g::h(); \
         use super::*; super::sib::X; my_super::no;",
    );
    assert_eq!(first_segments(&text, "crate::"), ["a", "c", "d", "g"]);
    assert_eq!(first_segments(&text, "super::"), ["sib"]);
}
