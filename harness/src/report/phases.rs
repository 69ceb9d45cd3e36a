//! Stevens' figure of the five I/O models, measured: one lane per model,
//! time to the right, the representative request of `harness phases` drawn
//! as its wait and copy phases. `harness compare` adds it to `REPORT.md`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::{io_err, write_file, write_json};
use crate::phases::{self, Phase, Totals};

/// The five models of Stevens' figure, in his order: blocking, nonblocking,
/// I/O multiplexing, signal-driven, asynchronous.
pub const FIVE_MODELS: &[&str] = &[
    "blocking:iterative",
    "nonblocking:spin",
    "epoll:level",
    "sigio:plain",
    "uring:single",
];

const FIGURE: &str = "phases.svg";
const DATA: &str = "phases.json";

/// One lane: a model's request as segments in ms from its first call, or
/// why it could not be traced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub model: String,
    pub segments: Vec<Span>,
    pub totals: Option<Totals>,
    pub main_wait: Option<String>,
    pub missing: Option<String>,
}

/// One segment of a lane, in ms from the request's first call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub start_ms: f64,
    pub end_ms: f64,
    pub phase: Phase,
    /// The call, or `EAGAIN ×N` for a busy-poll run.
    pub call: String,
}

/// Traces one model for its lane; a model that is not in the workspace or
/// fails to trace gets a lane that says why.
pub fn lane(model: &str) -> Lane {
    let traced = match model.parse() {
        Err(e) => Err(e),
        Ok(spec) => match crate::claims::unavailable(&model_name(model)) {
            Some(why) => Err(format!("not yet measured: {why}")),
            None => phases::trace(&spec, &[]).map_err(|e| format!("trace failed: {e}")),
        },
    };
    match traced {
        Err(why) => Lane {
            model: model.into(),
            segments: Vec::new(),
            totals: None,
            main_wait: None,
            missing: Some(why),
        },
        Ok(t) => {
            let origin = t.calls.first().map_or(0.0, |c| c.start);
            Lane {
                model: model.into(),
                segments: phases::segments(&t.calls)
                    .iter()
                    .map(|s| Span {
                        start_ms: (s.start - origin) * 1e3,
                        end_ms: (s.end - origin) * 1e3,
                        phase: s.phase,
                        call: if s.is_busy_poll() {
                            format!("EAGAIN ×{}", s.calls.len())
                        } else {
                            s.calls[0].name.clone()
                        },
                    })
                    .collect(),
                totals: Some(t.totals),
                main_wait: phases::main_wait(&t.calls),
                missing: None,
            }
        }
    }
}

fn model_name(model: &str) -> String {
    model.split(':').next().unwrap_or(model).to_owned()
}

/// Copy calls last microseconds: drawn at least this wide (ms) to be seen.
const MIN_COPY_MS: f64 = 0.25;

/// Draws the lanes; `false` if there is nothing to draw.
pub fn draw(path: &Path, lanes: &[Lane]) -> io::Result<bool> {
    let end = lanes
        .iter()
        .flat_map(|l| l.segments.iter().map(|s| s.end_ms))
        .fold(0.0, f64::max);
    if end <= 0.0 {
        return Ok(false);
    }
    let drawn = draw_lanes(path, lanes, end * 1.08);
    drawn.map_err(|e| io::Error::other(format!("drawing {}: {e}", path.display())))?;
    Ok(true)
}

fn draw_lanes(path: &Path, lanes: &[Lane], end: f64) -> Result<(), Box<dyn std::error::Error>> {
    let n = lanes.len();
    let root = SVGBackend::new(path, (960, 140 + 60 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let names: Vec<String> = lanes.iter().map(|l| l.model.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 0.01 && i >= 0.0 {
            names.get(n - 1 - i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut c = ChartBuilder::on(&root)
        .caption(
            "The two phases of one request, per model (harness phases)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(150)
        .build_cartesian_2d(0.0..end, -0.6..(n as f64 - 0.4))?;
    c.configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2)
        .y_label_formatter(&y_fmt)
        .x_desc("ms from the request's first call (light: wait for data; dark: copy; grey: other)")
        .draw()?;
    let wait = RGBColor(0x1f, 0x77, 0xb4).mix(0.35);
    let copy = RGBColor(0xd6, 0x27, 0x28).mix(0.9);
    let other = RGBColor(0x7f, 0x7f, 0x7f).mix(0.5);
    for (i, lane) in lanes.iter().enumerate() {
        let row = (n - 1 - i) as f64;
        if let Some(why) = &lane.missing {
            // The reason without its parenthesised detail (in the table).
            let text: String = why
                .split(" (")
                .next()
                .unwrap_or(why)
                .chars()
                .take(110)
                .collect();
            c.draw_series(std::iter::once(Text::new(
                text,
                (end * 0.01, row),
                ("sans-serif", 13),
            )))?;
            continue;
        }
        for span in &lane.segments {
            let (start, stop, phase) = (span.start_ms, span.end_ms, span.phase);
            let rect = |a: f64, b: f64, color: RGBAColor| {
                Rectangle::new([(a, row - 0.3), (b, row + 0.3)], color.filled())
            };
            let copy_end = |b: f64| (b - MIN_COPY_MS).max(start);
            let parts = match phase {
                Phase::Wait => vec![rect(start, stop, wait)],
                Phase::Copy => vec![rect(start, stop.max(start + MIN_COPY_MS), copy)],
                // One call, both phases: blocked waiting, then the copy at
                // its end (its length is not separable; drawn minimal).
                Phase::WaitThenCopy => {
                    vec![rect(start, stop, wait), rect(copy_end(stop), stop, copy)]
                }
                Phase::Other => vec![rect(start, stop.max(start + MIN_COPY_MS / 2.0), other)],
            };
            c.draw_series(parts)?;
            // Name the long calls: where the lane spends its time.
            if stop - start > end * 0.15 {
                c.draw_series(std::iter::once(Text::new(
                    span.call.clone(),
                    (start + end * 0.01, row + 0.05),
                    ("sans-serif", 14),
                )))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// The section `REPORT.md` gets.
fn section(lanes: &[Lane], drawn: bool) -> String {
    let mut out = String::from("\n## The five models' two phases, measured\n\n");
    out.push_str(
        "Stevens' figure, from `harness phases MODEL:MODE` (strace of the server while one \
         connection sends a request every 20 ms): the third request's calls, each in its phase. \
         Absolute durations carry strace's overhead; which call blocks, and where, is the point.\n\n",
    );
    if drawn {
        let _ = writeln!(out, "![the five models' phases]({FIGURE})\n");
    }
    out.push_str(
        "| model | wait ms | copy ms | calls | waits in |\n| --- | --- | --- | --- | --- |\n",
    );
    for l in lanes {
        match (&l.totals, &l.missing) {
            (Some(t), _) => {
                let _ = writeln!(
                    out,
                    "| {} | {:.3} | {:.3} | {} | {} |",
                    l.model,
                    t.wait_s * 1e3,
                    t.copy_s * 1e3,
                    t.calls,
                    l.main_wait.as_deref().unwrap_or("nothing")
                );
            }
            (None, why) => {
                let _ = writeln!(
                    out,
                    "| {} | – | – | – | {} |",
                    l.model,
                    why.as_deref().unwrap_or("not traced").replace('|', "\\|")
                );
            }
        }
    }
    out
}

/// Traces the five models (or, `fresh` false, reads the lanes an earlier
/// run saved), draws the figure and appends its section to `REPORT.md` in
/// `dir`; returns the files written.
pub fn write(dir: &Path, fresh: bool) -> io::Result<Vec<PathBuf>> {
    let data = dir.join(DATA);
    let lanes: Vec<Lane> = if fresh {
        FIVE_MODELS.iter().map(|m| lane(m)).collect()
    } else {
        match fs::read_to_string(&data) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| io_err(&data, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&data, e)),
        }
    };
    let mut written = Vec::new();
    if fresh {
        write_json(&data, &lanes)?;
        written.push(data);
    }
    let figure = dir.join(FIGURE);
    let drawn = draw(&figure, &lanes)?;
    if drawn {
        written.push(figure);
    }
    let report = dir.join("REPORT.md");
    let mut text = fs::read_to_string(&report).map_err(|e| io_err(&report, e))?;
    text.push_str(&section(&lanes, drawn));
    write_file(&report, &text)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes() -> Vec<Lane> {
        vec![
            Lane {
                model: "blocking:iterative".into(),
                segments: vec![
                    Span {
                        start_ms: 0.0,
                        end_ms: 20.1,
                        phase: Phase::WaitThenCopy,
                        call: "read".into(),
                    },
                    Span {
                        start_ms: 20.2,
                        end_ms: 20.23,
                        phase: Phase::Copy,
                        call: "sendto".into(),
                    },
                ],
                totals: Some(Totals {
                    wait_s: 0.0201,
                    copy_s: 0.00003,
                    calls: 2,
                    wait_then_copy: 1,
                    copies: 2,
                    ..Totals::default()
                }),
                main_wait: Some("read".into()),
                missing: None,
            },
            Lane {
                model: "uring:single".into(),
                segments: Vec::new(),
                totals: None,
                main_wait: None,
                missing: Some("not yet measured: no `uring` binary".into()),
            },
        ]
    }

    #[test]
    fn the_section_has_a_row_per_lane_and_says_what_is_missing() {
        let s = section(&lanes(), true);
        assert!(s.contains("![the five models' phases](phases.svg)"), "{s}");
        assert!(
            s.contains("| blocking:iterative | 20.100 | 0.030 | 2 | read |"),
            "{s}"
        );
        assert!(s.contains("| uring:single | – | – | – | not yet measured: no `uring` binary |"));
    }

    #[test]
    fn the_figure_is_drawn_from_lanes_and_not_from_nothing() {
        let dir = std::env::temp_dir().join(format!("harness-phases-fig-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FIGURE);
        assert!(draw(&path, &lanes()).unwrap());
        let svg = fs::read_to_string(&path).unwrap();
        assert!(svg.contains("blocking:iterative") && svg.contains("not yet measured"));
        // The long call is named in its lane, the short one is not.
        assert!(svg.contains("read") && !svg.contains("sendto"));
        assert!(!draw(&path, &lanes()[1..]).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
