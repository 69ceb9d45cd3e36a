//! Stevens' figure of the five I/O models, measured: one lane per model,
//! time to the right, the representative request of `harness phases` drawn
//! as its wait and copy phases. `harness compare` adds it to `REPORT.md`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::stats::micros_tick;
use super::{io_err, write_file, write_json};
use crate::phases::lanes::Lane;
use crate::phases::Phase;

const FIGURE: &str = "phases.svg";
const DATA: &str = "phases.json";

/// A call narrower than this many pixels is drawn this wide, to be seen.
const MIN_PX: f64 = 3.0;
const WIDTH: u32 = 1200;
const NAMES_W: u32 = 150;
/// The share of the plot width the whole-request panel gets; the zoom on
/// the request's end gets the rest.
const OVERVIEW: f64 = 0.42;

/// The zoom's length, ms before each lane's end: every call after the
/// lane's longest one (its main wait), rounded up to 1-2-5.
fn zoom_ms(lanes: &[Lane]) -> f64 {
    let tail = lanes
        .iter()
        .filter_map(|l| {
            let end = l.segments.last()?.end_ms;
            let longest = l
                .segments
                .iter()
                .max_by(|a, b| (a.end_ms - a.start_ms).total_cmp(&(b.end_ms - b.start_ms)))?;
            Some(end - longest.end_ms)
        })
        .fold(0.0, f64::max);
    let raw = (tail * 1.15).max(0.05);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|v| *v >= raw)
        .unwrap_or(mag * 10.0)
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
    let drawn = draw_lanes(path, lanes, longest * 1.04, zoom_ms(lanes));
    drawn.map_err(|e| io::Error::other(format!("drawing {}: {e}", path.display())))?;
    Ok(true)
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// One panel of the figure: every lane over `range` (ms). With `zoom`,
/// each lane is shifted so that its last call ends at 0.
struct Panel<'a> {
    caption: &'a str,
    desc: &'a str,
    range: std::ops::Range<f64>,
    zoom: bool,
    names: bool,
}

fn draw_lanes(path: &Path, lanes: &[Lane], end: f64, zoom: f64) -> Drawn {
    let n = lanes.len();
    let height = 214 + 60 * n as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, rest) = root.split_vertically(44);
    head.draw(&Text::new(
        "The two phases of one request, per model (harness phases)",
        (WIDTH as i32 / 2, 24),
        ("sans-serif", 22)
            .into_font()
            .into_text_style(&head)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    let (body, foot) = rest.split_vertically(height - 44 - 64);
    let split = NAMES_W + (f64::from(WIDTH - NAMES_W) * OVERVIEW) as u32;
    let (left, right) = body.split_horizontally(split);
    let zoom_caption = format!("its end: the last {} of each lane", micros_tick(zoom * 1e3));
    draw_panel(
        &left,
        lanes,
        &Panel {
            caption: "the whole request",
            desc: "ms from the request's first call",
            range: 0.0..end,
            zoom: false,
            names: true,
        },
    )?;
    draw_panel(
        &right,
        lanes,
        &Panel {
            caption: &zoom_caption,
            desc: "time before the lane's last call returned",
            range: -zoom..zoom * 0.02,
            zoom: true,
            names: false,
        },
    )?;
    // The key, in the colours drawn.
    let font = ("sans-serif", 14)
        .into_font()
        .into_text_style(&foot)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = 24;
    for (name, color) in [("wait for data", WAIT), ("copy", COPY), ("other", OTHER)] {
        foot.draw(&Rectangle::new([(x, 12), (x + 16, 28)], color.filled()))?;
        foot.draw(&Text::new(name, (x + 22, 20), font.clone()))?;
        x += 140;
    }
    foot.draw(&Text::new(
        "a call that waits, then copies (a blocking read): wait-coloured,",
        (x, 12),
        font.clone(),
    ))?;
    foot.draw(&Text::new(
        "its copy a 3 px red mark at its end (not separable); calls under 3 px drawn 3 px wide",
        (x, 30),
        font,
    ))?;
    root.present()?;
    Ok(())
}

fn draw_panel(area: &DrawingArea<SVGBackend, Shift>, lanes: &[Lane], p: &Panel) -> Drawn {
    let n = lanes.len();
    let names: Vec<String> = lanes.iter().map(|l| l.model.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 0.01 && i >= 0.0 {
            names.get(n - 1 - i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let x_fmt = |v: &f64| {
        let ms = if p.zoom { -v } else { *v };
        if ms.abs() < 1e-9 {
            "0".to_string()
        } else {
            micros_tick(ms * 1e3)
        }
    };
    let (lo, hi) = (p.range.start, p.range.end);
    let width = area
        .dim_in_pixel()
        .0
        .saturating_sub(if p.names { NAMES_W } else { 0 } + 24);
    let min_w = (hi - lo) * MIN_PX / f64::from(width.max(1));
    let mut c = ChartBuilder::on(area)
        .caption(p.caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(if p.names { NAMES_W } else { 0 })
        .build_cartesian_2d(p.range.clone(), -0.6..(n as f64 - 0.4))?;
    c.configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .x_labels(6)
        .y_labels(n * 2)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .x_desc(p.desc)
        .draw()?;
    for (i, lane) in lanes.iter().enumerate() {
        let row = (n - 1 - i) as f64;
        if let Some(why) = &lane.missing {
            if p.names {
                // The reason without its parenthesised detail (in the table).
                let text: String = why
                    .split(" (")
                    .next()
                    .unwrap_or(why)
                    .chars()
                    .take(70)
                    .collect();
                c.draw_series(std::iter::once(Text::new(
                    text,
                    (lo + (hi - lo) * 0.01, row),
                    ("sans-serif", 13),
                )))?;
            }
            continue;
        }
        let end = lane.segments.last().map_or(0.0, |s| s.end_ms);
        let lane_ms = lane.segments.first().map_or(0.0, |s| end - s.start_ms);
        let shift = if p.zoom { end } else { 0.0 };
        for span in &lane.segments {
            let a = (span.start_ms - shift).max(lo);
            let b = (span.end_ms - shift).max(a + min_w);
            if b <= lo {
                continue;
            }
            let rect = |a: f64, b: f64, color: RGBAColor| {
                Rectangle::new([(a, row - 0.3), (b, row + 0.3)], color.filled())
            };
            let parts = match span.phase {
                Phase::Wait => vec![rect(a, b, WAIT)],
                Phase::Copy => vec![rect(a, b, COPY)],
                // One call, both phases: blocked waiting, then the copy at
                // its end (its length is not separable; drawn minimal).
                Phase::WaitThenCopy => vec![rect(a, b, WAIT), rect(b - min_w, b, COPY)],
                Phase::Other => vec![rect(a, b, OTHER)],
            };
            c.draw_series(parts)?;
            // Name the long calls, where the lane spends its time, in the
            // whole-request panel.
            if !p.zoom && span.end_ms - span.start_ms > lane_ms * 0.15 {
                c.draw_series(std::iter::once(Text::new(
                    span.call.clone(),
                    (a + (hi - lo) * 0.01, row + 0.05),
                    ("sans-serif", 14),
                )))?;
            }
        }
        // The copy strace cannot see: the kernel runs it at the end of the
        // long io_uring_enter, when the socket's data wakes the thread.
        let main = lane
            .segments
            .iter()
            .filter(|s| s.phase == Phase::Wait)
            .max_by(|x, y| (x.end_ms - x.start_ms).total_cmp(&(y.end_ms - y.start_ms)));
        if let (Some(k), Some(span)) = (&lane.kernel_copy, main) {
            let b = (span.end_ms - shift).max(lo + min_w);
            let w = (k.run_us.unwrap_or(0.0) / 1e3).max(min_w);
            c.draw_series(std::iter::once(Rectangle::new(
                [(b - w, row - 0.3), (b, row + 0.3)],
                COPY.filled(),
            )))?;
            if !p.zoom {
                c.draw_series(std::iter::once(Text::new(
                    k.label(),
                    (lo + (hi - lo) * 0.01, row - 0.32),
                    ("sans-serif", 12),
                )))?;
            }
        }
    }
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
    for l in lanes {
        if let Some(k) = &l.kernel_copy {
            let _ = writeln!(
                out,
                "\n`{}` makes no copy call, but its RECVs are still copied by a CPU: the kernel's \
                 io_uring tracepoints (a second, strace-free run) put {} of {} in {}{} — the red \
                 mark at the end of its wait.",
                l.model,
                k.recvs,
                k.of,
                k.place,
                k.run_us.map_or(String::new(), |us| format!(
                    ", {us:.0} µs from the thread's wake-up to the completion posted (µs clock)"
                ))
            );
        }
    }
    out
}

/// Saves the lanes just traced (`traced`; or, `None`, reads the lanes an
/// earlier run saved), draws the figure and appends its section to
/// `REPORT.md` in `dir`; returns the files written.
pub fn write(dir: &Path, traced: Option<Vec<Lane>>) -> io::Result<Vec<PathBuf>> {
    let data = dir.join(DATA);
    let fresh = traced.is_some();
    let lanes: Vec<Lane> = if let Some(lanes) = traced {
        lanes
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
    use crate::phases::lanes::{KernelCopy, Span};
    use crate::phases::Totals;

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
                kernel_copy: None,
            },
            Lane {
                model: "uring:single".into(),
                segments: Vec::new(),
                totals: None,
                main_wait: None,
                missing: Some("not yet measured: no `uring` binary".into()),
                kernel_copy: None,
            },
        ]
    }

    #[test]
    fn the_uring_lane_shows_the_copy_the_kernel_trace_placed() {
        let uring = Lane {
            model: "uring:single".into(),
            segments: vec![Span {
                start_ms: 0.0,
                end_ms: 20.0,
                phase: Phase::Wait,
                call: "io_uring_enter".into(),
            }],
            totals: Some(Totals::default()),
            main_wait: Some("io_uring_enter".into()),
            missing: None,
            kernel_copy: Some(KernelCopy {
                place: "task work of the server thread, inside io_uring_enter".into(),
                recvs: 5,
                of: 5,
                run_us: Some(11.0),
            }),
        };
        let dir = std::env::temp_dir().join(format!("harness-phases-uring-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FIGURE);
        assert!(draw(&path, std::slice::from_ref(&uring)).unwrap());
        let svg = fs::read_to_string(&path).unwrap();
        assert!(svg.contains("copy: task work of the server thread, inside io_uring_enter, 11 µs"));
        let hex = format!("#{:02X}{:02X}{:02X}", COPY.0, COPY.1, COPY.2);
        let marks = widths(&svg, &hex);
        assert!(
            marks.len() >= 2,
            "the key's swatch and the copy mark: {marks:?}"
        );
        let no_copy = Lane {
            kernel_copy: None,
            ..uring.clone()
        };
        assert!(draw(&path, &[no_copy]).unwrap());
        let svg = fs::read_to_string(&path).unwrap();
        assert_eq!(widths(&svg, &hex), [16.0], "only the key's swatch");
        fs::remove_dir_all(&dir).unwrap();
        let s = section(&[uring], true);
        assert!(
            s.contains(
                "put 5 of 5 in task work of the server thread, inside io_uring_enter, 11 µs"
            ),
            "{s}"
        );
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

    /// The `width` of every `<rect>` filled with `color` (`#RRGGBB`).
    fn widths(svg: &str, color: &str) -> Vec<f64> {
        svg.split("<rect")
            .skip(1)
            .filter(|r| r.contains(&format!("fill=\"{color}\"")))
            .filter_map(|r| {
                let w = r.split("width=\"").nth(1)?.split('"').next()?;
                w.parse().ok()
            })
            .collect()
    }

    #[test]
    fn every_phase_is_visible_and_the_key_has_the_drawn_colours() {
        // The copy after the 20 ms wait lasts 30 µs: the zoom on the lane's
        // end covers the last 0.2 ms, after everything but the wait.
        assert_eq!(zoom_ms(&lanes()), 0.2);
        let dir = std::env::temp_dir().join(format!("harness-phases-vis-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FIGURE);
        assert!(draw(&path, &lanes()).unwrap());
        let svg = fs::read_to_string(&path).unwrap();
        let hex = |c: RGBAColor| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        let copies = widths(&svg, &hex(COPY));
        // In the zoom the 30 µs sendto is a bar tens of pixels wide, not a
        // sliver; the key's swatch is one of the copy-coloured rects.
        assert!(copies.iter().any(|w| *w >= 40.0), "{copies:?}");
        assert!(copies.contains(&16.0), "{copies:?}");
        assert!(widths(&svg, &hex(WAIT)).contains(&16.0));
        for name in ["wait for data", "copy", "other"] {
            assert!(svg.contains(&format!("\n{name}\n</text>")), "{name}");
        }
        assert!(!svg.contains("dark: copy"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
