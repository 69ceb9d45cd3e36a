//! Stevens' figure of the five I/O models, measured: one lane per model,
//! time to the right, the representative request of `harness phases` drawn
//! as its wait and copy phases. `harness compare` adds it to `REPORT.md`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

use super::plots::{self, Ticked};
use super::stats::micros_tick;
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

/// The time axis' right end, ms before a lane's last call returned: the
/// last call ends at 0, which a log axis cannot show.
const END_MS: f64 = 0.005;
/// A call narrower than this many pixels is drawn this wide, to be seen.
const MIN_PX: f64 = 3.0;
const WIDTH: u32 = 1100;
const NAMES_W: u32 = 150;

/// Where a time `t_ms` after the lane's first call sits on the axis: the
/// log of the time left until the lane's `end_ms`, negated so that time
/// runs left to right. The copies at a request's end, tens of µs long, get
/// as much room as the 20 ms wait before them.
fn position(t_ms: f64, end_ms: f64) -> f64 {
    -(end_ms - t_ms).max(END_MS).log10()
}

/// Draws the lanes; `false` if there is nothing to draw.
pub fn draw(path: &Path, lanes: &[Lane]) -> io::Result<bool> {
    let longest = lanes
        .iter()
        .filter_map(|l| l.segments.last().map(|s| s.end_ms))
        .fold(0.0, f64::max);
    if longest <= 0.0 {
        return Ok(false);
    }
    let drawn = draw_lanes(path, lanes, longest * 1.3);
    drawn.map_err(|e| io::Error::other(format!("drawing {}: {e}", path.display())))?;
    Ok(true)
}

fn draw_lanes(
    path: &Path,
    lanes: &[Lane],
    start_ms: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = lanes.len();
    let root = SVGBackend::new(path, (WIDTH, 190 + 60 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, foot) = root.split_vertically(150 + 60 * n as u32);
    let names: Vec<String> = lanes.iter().map(|l| l.model.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 0.01 && i >= 0.0 {
            names.get(n - 1 - i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let tick_values = plots::ticks(END_MS, start_ms, plots::Scale::Log);
    let x_range = Ticked {
        lo: -start_ms.log10(),
        hi: -END_MS.log10(),
        ticks: tick_values.iter().map(|v| -v.log10()).collect(),
    };
    let span = x_range.hi - x_range.lo;
    let x_fmt = |p: &f64| {
        tick_values
            .iter()
            .find(|v| (-v.log10() - p).abs() < 1e-9)
            .map(|v| micros_tick(v * 1e3))
            .unwrap_or_default()
    };
    let mut c = ChartBuilder::on(&plot)
        .caption(
            "The two phases of one request, per model (harness phases)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(NAMES_W)
        .build_cartesian_2d(x_range, -0.6..(n as f64 - 0.4))?;
    c.configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .y_labels(n * 2)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .x_desc(
            "time left until the lane's last call returned (log scale; time runs left to right; \
             a call under 3 px is drawn 3 px wide)",
        )
        .draw()?;
    let min_w = span * MIN_PX / f64::from(WIDTH - NAMES_W - 32);
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
                (-start_ms.log10() + span * 0.01, row),
                ("sans-serif", 13),
            )))?;
            continue;
        }
        let end = lane.segments.last().map_or(0.0, |s| s.end_ms);
        let lane_ms = lane.segments.first().map_or(0.0, |s| end - s.start_ms);
        for span_ in &lane.segments {
            let a = position(span_.start_ms, end);
            let b = position(span_.end_ms, end).max(a + min_w);
            let rect = |a: f64, b: f64, color: RGBAColor| {
                Rectangle::new([(a, row - 0.3), (b, row + 0.3)], color.filled())
            };
            let parts = match span_.phase {
                Phase::Wait => vec![rect(a, b, WAIT)],
                Phase::Copy => vec![rect(a, b, COPY)],
                // One call, both phases: blocked waiting, then the copy at
                // its end (its length is not separable; drawn minimal).
                Phase::WaitThenCopy => vec![rect(a, b, WAIT), rect(b - min_w, b, COPY)],
                Phase::Other => vec![rect(a, b, OTHER)],
            };
            c.draw_series(parts)?;
            // Name the long calls: where the lane spends its time.
            if span_.end_ms - span_.start_ms > lane_ms * 0.15 {
                c.draw_series(std::iter::once(Text::new(
                    span_.call.clone(),
                    (a + span * 0.01, row + 0.05),
                    ("sans-serif", 14),
                )))?;
            }
        }
    }
    // The key, in the colours drawn.
    let font = ("sans-serif", 14)
        .into_font()
        .into_text_style(&foot)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = NAMES_W as i32;
    for (name, color) in [("wait for data", WAIT), ("copy", COPY), ("other", OTHER)] {
        foot.draw(&Rectangle::new([(x, 8), (x + 16, 24)], color.filled()))?;
        foot.draw(&Text::new(name, (x + 22, 16), font.clone()))?;
        x += 150;
    }
    foot.draw(&Text::new(
        "a call that waits, then copies (a blocking read): blue with a red end",
        (x, 16),
        font,
    ))?;
    root.present()?;
    Ok(())
}

const WAIT: RGBAColor = RGBAColor(0x9e, 0xc5, 0xe4, 1.0);
const COPY: RGBAColor = RGBAColor(0xd6, 0x27, 0x28, 1.0);
const OTHER: RGBAColor = RGBAColor(0xaa, 0xaa, 0xaa, 1.0);

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
