//! The report's SVG figures, drawn with plotters: lines over a numeric or
//! categorical x axis, one small panel per family of models (`Family`), so
//! that no panel holds more than eight lines; horizontal bars, one per
//! model or sharing mode; stacked bars (system calls by call); and the
//! crossover map, a grid of squares per pair of models coloured by a ratio
//! on a diverging scale where the difference is resolved.
//!
//! Every axis is drawn in its own units: a logarithmic axis is drawn as a
//! linear axis of log10(value) whose ticks sit at 1-2-5 values inside the
//! data's range and are labelled with the values (plotters' own log axis
//! labels powers of ten only). A line's point is the median of the
//! repeats; its whisker, drawn over the marker with caps, runs from the
//! smallest to the largest. A bar with the value 0 is drawn and labelled
//! "0"; a bar without a measurement is labelled so and not drawn.

use std::error::Error;
use std::io;
use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::stats::{significant, Spread};

/// The families the report draws as panels, in the report's order. A row's
/// family follows from its model name alone (`Family::of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Blocking,
    Readiness,
    Completion,
    Coroutines,
    References,
    /// The load generator's floor (`reflector`): the instrument, not a model.
    Instrument,
    /// A model added later and not yet placed in a family.
    Other,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Blocking,
        Family::Readiness,
        Family::Completion,
        Family::Coroutines,
        Family::References,
        Family::Instrument,
        Family::Other,
    ];

    /// The family of a row label (`epoll:edge`, `uring:multishot+sqpoll`):
    /// decided by the model name before `:` or `+`. The one place this
    /// mapping is written.
    pub fn of(label: &str) -> Family {
        let model = label.split([':', '+']).next().unwrap_or(label);
        match model {
            "blocking" => Family::Blocking,
            "nonblocking" | "select" | "poll" | "epoll" | "sigio" => Family::Readiness,
            "uring" => Family::Completion,
            "coroutine" => Family::Coroutines,
            "peers" => Family::References,
            "reflector" => Family::Instrument,
            _ => Family::Other,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Family::Blocking => "blocking: a thread or process per connection",
            Family::Readiness => "readiness loops: nonblocking, select, poll, epoll, sigio",
            Family::Completion => "completion: io_uring",
            Family::Coroutines => "coroutines on epoll",
            Family::References => "references (peers)",
            Family::Instrument => {
                "the instrument's floor: the load generator against the reflector"
            }
            Family::Other => "other models",
        }
    }

    /// Its name in a colour key.
    pub fn short(self) -> &'static str {
        match self {
            Family::Blocking => "blocking",
            Family::Readiness => "readiness loops",
            Family::Completion => "completion",
            Family::Coroutines => "coroutines",
            Family::References => "references",
            Family::Instrument => "instrument",
            Family::Other => "other",
        }
    }

    /// Its colour where a figure colours by family.
    pub fn color(self) -> usize {
        Family::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// One model's points: (x value, spread of the repeats).
pub struct Series {
    pub name: String,
    /// Index into the palette: the model's place among its family's rows in
    /// the matrix, so that a model has the same colour in every panel of a
    /// run.
    pub color: usize,
    /// A reference (a peer): drawn dashed, so it reads as a yardstick.
    pub reference: bool,
    pub points: Vec<(f64, Spread)>,
    /// The x values of points whose cell fell short of its offered rate:
    /// drawn hollow, since their figures describe a backlog.
    pub short: Vec<f64>,
}

/// Tableau 10: ten qualitative colours, distinguishable also in print and
/// by most colour-blind readers; a panel holds at most eight lines.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

pub fn color(i: usize) -> RGBAColor {
    PALETTE[i % PALETTE.len()].to_rgba()
}

/// How an axis maps its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale<'a> {
    Linear,
    /// log10; the axis title says "log scale".
    Log,
    /// Percentiles spaced by their nines: p90, p99, p99.9 equally apart
    /// (the position is -log10(1 - p/100)), as HdrHistogram plots them.
    Nines,
    /// Evenly spaced categories: the value is the index into these labels.
    /// For x values a log axis cannot show (0 idle connections).
    Categories(&'a [String]),
}

impl Scale<'_> {
    fn to_axis(self, v: f64) -> f64 {
        match self {
            Scale::Linear | Scale::Categories(_) => v,
            Scale::Log => v.log10(),
            Scale::Nines => -(1.0 - v / 100.0).log10(),
        }
    }

    fn usable(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Scale::Linear => true,
                Scale::Log => v > 0.0,
                Scale::Nines => v < 100.0,
                Scale::Categories(c) => v >= 0.0 && v.round() == v && (v as usize) < c.len(),
            }
    }
}

/// One axis: its title (the unit in it), scale and tick label format.
#[derive(Clone, Copy)]
pub struct Axis<'a> {
    pub desc: &'a str,
    pub scale: Scale<'a>,
    pub format: fn(f64) -> String,
}

impl Axis<'_> {
    fn title(&self) -> String {
        match self.scale {
            Scale::Log => format!("{} (log scale)", self.desc),
            Scale::Nines => format!("{} (spaced by nines)", self.desc),
            Scale::Linear | Scale::Categories(_) => self.desc.to_string(),
        }
    }

    /// A tick's label: the category, or the value through `format`.
    fn label(&self, v: f64) -> String {
        match self.scale {
            Scale::Categories(c) => c.get(v as usize).cloned().unwrap_or_default(),
            _ => (self.format)(v),
        }
    }
}

pub struct LineChart<'a> {
    pub title: &'a str,
    pub x: Axis<'a>,
    pub y: Axis<'a>,
    pub series: &'a [Series],
}

type Drawn = Result<(), Box<dyn Error>>;
type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

/// A linear coordinate whose ticks are the given positions (plotters picks
/// its own otherwise): the axes of this module are linear in their drawn
/// position, log or nines being applied before.
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let share = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (share * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

fn wrap(path: &Path, drawn: Drawn) -> io::Result<()> {
    drawn.map_err(|e| io::Error::other(format!("drawing {}: {e}", path.display())))
}

/// The range an axis shows for `values`, in value space, with room at the
/// ends; `None` without a usable value.
fn bounds(values: impl Iterator<Item = f64>, scale: Scale, from_zero: bool) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.filter(|x| scale.usable(*x)).collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        return None;
    }
    Some(match scale {
        Scale::Log => {
            if hi / lo < 2.0 {
                (lo / 1.5, hi * 1.5)
            } else {
                (lo / 1.25, hi * 1.25)
            }
        }
        Scale::Nines => (lo.min(40.0), hi.max(99.9)),
        Scale::Categories(c) => (-0.5, c.len() as f64 - 0.5),
        Scale::Linear => {
            let lo = if from_zero && lo >= 0.0 { 0.0 } else { lo };
            let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
            let lo = if lo == 0.0 { 0.0 } else { lo - span * 0.05 };
            (lo, hi + span * 0.08)
        }
    })
}

/// Round steps (1, 2, 2.5, 5 times a power of ten) inside `[lo, hi]`, about
/// `count` of them.
fn linear_ticks(lo: f64, hi: f64, count: f64) -> Vec<f64> {
    let raw = (hi - lo) / count;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(mag * 10.0);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Tick values inside `[lo, hi]`: 1-2-5 steps on a log axis (1..9 where
/// that leaves fewer than three), a round step on a linear one, the nines
/// on a percentile axis, every category on a categorical one.
pub fn ticks(lo: f64, hi: f64, scale: Scale) -> Vec<f64> {
    match scale {
        Scale::Log => {
            let decades = (lo.log10().floor() as i32)..=(hi.log10().ceil() as i32);
            let pick = |mantissas: &[f64]| -> Vec<f64> {
                decades
                    .clone()
                    .flat_map(|d| mantissas.iter().map(move |m| m * 10f64.powi(d)))
                    .filter(|v| *v >= lo && *v <= hi)
                    .collect()
            };
            let coarse = pick(&[1.0]);
            if coarse.len() >= 4 {
                return coarse;
            }
            let v = pick(&[1.0, 2.0, 5.0]);
            if v.len() >= 3 {
                v
            } else {
                pick(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
            }
        }
        Scale::Linear => linear_ticks(lo, hi, 6.0),
        Scale::Nines => [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
            .into_iter()
            .filter(|p| *p >= lo && *p <= hi)
            .collect(),
        Scale::Categories(c) => (0..c.len()).map(|i| i as f64).collect(),
    }
}

/// The panels of a line chart: the series of each family present, in the
/// families' order; a family without a series has no panel.
pub fn panels(series: &[Series]) -> Vec<(Family, Vec<&Series>)> {
    Family::ALL
        .iter()
        .map(|f| {
            let of: Vec<&Series> = series
                .iter()
                .filter(|s| Family::of(&s.name) == *f)
                .collect();
            (*f, of)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// Draws `chart` to `path`, one panel per family, every panel on the same
/// axes. Returns `false` (and writes nothing) when no series has a point.
pub fn line_chart(path: &Path, chart: &LineChart) -> io::Result<bool> {
    let xs = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|(x, _)| *x));
    let ys: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|(_, p)| [p.min, p.max]))
        .collect();
    let (Some(xb), Some(yb)) = (
        bounds(xs, chart.x.scale, false),
        bounds(ys.into_iter(), chart.y.scale, true),
    ) else {
        return Ok(false);
    };
    wrap(path, draw_panels(path, chart, xb, yb))?;
    Ok(true)
}

const PANEL_W: u32 = 680;
const PANEL_H: u32 = 400;
const PANEL_LEGEND: u32 = 200;
const TITLE_H: u32 = 48;
const FOOT_H: u32 = 44;

fn draw_panels(path: &Path, chart: &LineChart, xb: (f64, f64), yb: (f64, f64)) -> Drawn {
    let panels = panels(chart.series);
    let cols = if panels.len() > 1 { 2 } else { 1 };
    let rows = panels.len().div_ceil(cols);
    let size = (
        PANEL_W * cols as u32,
        TITLE_H + PANEL_H * rows as u32 + FOOT_H,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(TITLE_H);
    head.draw(&Text::new(
        chart.title.to_string(),
        (size.0 as i32 / 2, TITLE_H as i32 / 2),
        ("sans-serif", 24)
            .into_font()
            .into_text_style(&head)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    let (grid, foot) = body.split_vertically(PANEL_H * rows as u32);
    for ((family, series), area) in panels.iter().zip(grid.split_evenly((rows, cols))) {
        draw_panel(&area, family.title(), chart, series, xb, yb)?;
    }
    let mut notes = vec![
        "dot: median of the repeats",
        "whisker: smallest to largest",
        "points moved apart sideways by a few pixels so that whiskers do not overlap",
    ];
    if chart.series.iter().any(|s| !s.short.is_empty()) {
        notes.push("hollow: rate not sustained");
    }
    if chart.series.iter().any(|s| s.reference) {
        notes.push("dashed: a reference");
    }
    foot.draw(&Text::new(
        format!("Every panel has the same axes. {}.", notes.join("; ")).replacen("dot", "Dot", 1),
        (16, FOOT_H as i32 / 2),
        ("sans-serif", 15)
            .into_font()
            .into_text_style(&foot)
            .pos(Pos::new(HPos::Left, VPos::Center)),
    ))?;
    root.present()?;
    Ok(())
}

/// The axis positions (linear, log or nines applied) of a value range and
/// its ticks.
fn ticked(b: (f64, f64), scale: Scale) -> (Ticked, Vec<f64>) {
    let values = ticks(b.0, b.1, scale);
    let t = Ticked {
        lo: scale.to_axis(b.0),
        hi: scale.to_axis(b.1),
        ticks: values.iter().map(|v| scale.to_axis(*v)).collect(),
    };
    (t, values)
}

/// An axis' tick labels: the tick values the positions were made from.
fn tick_labels<'a>(ticks: Vec<f64>, axis: Axis<'a>) -> impl Fn(&f64) -> String + 'a {
    move |pos: &f64| {
        ticks
            .iter()
            .find(|t| (axis.scale.to_axis(**t) - pos).abs() < 1e-9)
            .map(|t| axis.label(*t))
            .unwrap_or_default()
    }
}

fn draw_panel(
    area: &Area,
    title: &str,
    chart: &LineChart,
    series: &[&Series],
    xb: (f64, f64),
    yb: (f64, f64),
) -> Drawn {
    let (plot, legend) = area.split_horizontally(PANEL_W - PANEL_LEGEND);
    let (xs, ys) = (chart.x.scale, chart.y.scale);
    let (x_range, x_ticks) = ticked(xb, xs);
    let (y_range, y_ticks) = ticked(yb, ys);
    let x_span = x_range.hi - x_range.lo;
    let floor = y_range.lo;
    let x_label = tick_labels(x_ticks, chart.x);
    let y_label = tick_labels(y_ticks, chart.y);
    let mut c = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(84)
        .build_cartesian_2d(x_range, y_range)?;
    c.configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .x_desc(chart.x.title())
        .y_desc(chart.y.title())
        .draw()?;
    let k = series.len() as f64;
    for (i, s) in series.iter().enumerate() {
        let color = color(s.color);
        // Side by side rather than on top of each other: a few pixels.
        let dodge = (i as f64 - (k - 1.0) / 2.0) * x_span * 0.006;
        let hollow = |x: f64| s.short.contains(&x);
        let pts: Vec<(f64, Spread, bool)> = s
            .points
            .iter()
            .filter(|(x, p)| xs.usable(*x) && ys.usable(p.median))
            .map(|(x, p)| (xs.to_axis(*x) + dodge, *p, hollow(*x)))
            .collect();
        let line: Vec<(f64, f64)> = pts
            .iter()
            .map(|(x, p, _)| (*x, ys.to_axis(p.median)))
            .collect();
        if s.reference {
            c.draw_series(DashedLineSeries::new(line, 7, 4, color.stroke_width(2)))?;
        } else {
            c.draw_series(LineSeries::new(line, color.stroke_width(2)))?;
        }
        c.draw_series(pts.iter().map(|(x, p, hollow)| {
            let at = (*x, ys.to_axis(p.median));
            let style = if *hollow {
                color.stroke_width(2)
            } else {
                color.filled()
            };
            Circle::new(at, 3, style)
        }))?;
        // Whiskers over the markers, with caps; a log axis has no zero,
        // so a whisker's foot is cut at the axis bottom.
        for (x, p, _) in pts.iter().filter(|(_, p, _)| p.max > p.min) {
            let lo = if ys.usable(p.min) {
                ys.to_axis(p.min).max(floor)
            } else {
                floor
            };
            let hi = ys.to_axis(p.max);
            let style = color.stroke_width(2);
            c.draw_series([PathElement::new(vec![(*x, lo), (*x, hi)], style)])?;
            c.draw_series([lo, hi].map(|y| {
                EmptyElement::at((*x, y)) + PathElement::new(vec![(-4, 0), (4, 0)], style)
            }))?;
        }
    }
    draw_legend(&legend, series)?;
    Ok(())
}

/// A panel's legend, one row per series, in its own drawing area.
fn draw_legend(area: &Area, series: &[&Series]) -> Drawn {
    let font = ("sans-serif", 14)
        .into_font()
        .into_text_style(area)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, s) in series.iter().enumerate() {
        let y = 56 + 22 * i as i32;
        let color = color(s.color);
        if s.reference {
            // Dashed, as the reference's line in the plot.
            let style = color.stroke_width(2);
            area.draw(&PathElement::new(vec![(2, y), (10, y)], style))?;
            area.draw(&PathElement::new(vec![(18, y), (26, y)], style))?;
        } else {
            area.draw(&PathElement::new(
                vec![(2, y), (26, y)],
                color.stroke_width(2),
            ))?;
        }
        area.draw(&Circle::new((14, y), 3, color.filled()))?;
        let name = if s.reference {
            format!("{} (ref.)", s.name)
        } else {
            s.name.clone()
        };
        area.draw(&Text::new(name, (32, y), font.clone()))?;
    }
    Ok(())
}

/// One horizontal bar: the median of the repeats with a whisker from the
/// smallest to the largest, or `None` where there is no measurement.
pub struct Bar {
    pub name: String,
    pub color: usize,
    pub value: Option<Spread>,
}

const WIDTH: u32 = 1080;
const ROW_H: u32 = 30;
const NAME_W: u32 = 210;

/// The width a bar chart's name column needs for its longest name (about
/// 7 px a character at the axis' 12 px type), at least `NAME_W`: a long
/// `+FLAG` row is not cut off.
fn name_w<'a>(names: impl Iterator<Item = &'a str>) -> u32 {
    let longest = names.map(|n| n.chars().count()).max().unwrap_or(0) as u32;
    (longest * 7 + 16).max(NAME_W)
}

/// The text style of labels that sit left-aligned right of a point.
fn left_text(size: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Left, VPos::Center))
}

/// A row of coloured swatches naming what each colour means.
fn draw_key(area: &Area, key: &[(&str, usize)], y: i32) -> Drawn {
    let mut x = 16;
    for (name, c) in key {
        area.draw(&Rectangle::new(
            [(x, y - 7), (x + 14, y + 7)],
            color(*c).mix(0.8).filled(),
        ))?;
        area.draw(&Text::new(name.to_string(), (x + 20, y), left_text(14)))?;
        x += 34 + 8 * name.chars().count() as i32;
    }
    Ok(())
}

/// Horizontal bars, one per row, labelled with their median; `key` names
/// the colours (empty: no key). Returns `false` (and writes nothing) when
/// no bar has a measurement.
pub fn bar_chart(
    path: &Path,
    title: &str,
    x: &Axis,
    bars: &[Bar],
    key: &[(&str, usize)],
) -> io::Result<bool> {
    let values = bars.iter().filter_map(|b| b.value.map(|s| s.max));
    let Some((_, hi)) = bounds(values, Scale::Linear, true) else {
        return Ok(false);
    };
    // Room right of the longest bar for its label.
    wrap(path, draw_bars(path, title, x, bars, key, hi * 1.12))?;
    Ok(true)
}

fn draw_bars(
    path: &Path,
    title: &str,
    x: &Axis,
    bars: &[Bar],
    key: &[(&str, usize)],
    hi: f64,
) -> Drawn {
    let n = bars.len();
    let key_h = if key.is_empty() { 0 } else { 36 };
    let height = 130 + ROW_H * n as u32 + key_h;
    let name_w = name_w(bars.iter().map(|b| b.name.as_str()));
    let root = SVGBackend::new(path, (WIDTH + name_w - NAME_W, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, foot) = root.split_vertically(height - key_h);
    let names: Vec<String> = bars.iter().map(|b| b.name.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 0.01 && i >= 0.0 && (i as usize) < n {
            // Row 0 at the top.
            names.get(n - 1 - i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let x_range = Ticked {
        lo: 0.0,
        hi,
        ticks: ticks(0.0, hi, Scale::Linear),
    };
    let fmt = x.format;
    let mut c = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(name_w)
        .build_cartesian_2d(x_range, -0.6..(n as f64 - 0.4))?;
    c.configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .y_labels(n * 2 + 1)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&|v| fmt(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .x_desc(x.title())
        .draw()?;
    for (i, bar) in bars.iter().enumerate() {
        let row = (n - 1 - i) as f64;
        let Some(s) = bar.value else {
            c.draw_series([EmptyElement::at((0.0, row))
                + Text::new(
                    "no measurement",
                    (8, 0),
                    left_text(14).color(&RGBColor(0x70, 0x70, 0x70)),
                )])?;
            continue;
        };
        let color = color(bar.color);
        c.draw_series([Rectangle::new(
            [(0.0, row - 0.32), (s.median, row + 0.32)],
            color.mix(0.75).filled(),
        )])?;
        if s.median == 0.0 {
            // A zero is a measured value: a mark on the axis, not a gap.
            c.draw_series([Rectangle::new(
                [(0.0, row - 0.32), (hi * 0.003, row + 0.32)],
                BLACK.filled(),
            )])?;
        }
        if s.max > s.min {
            let style = BLACK.stroke_width(2);
            c.draw_series([PathElement::new(vec![(s.min, row), (s.max, row)], style)])?;
            c.draw_series([s.min, s.max].map(|v| {
                EmptyElement::at((v, row)) + PathElement::new(vec![(0, -5), (0, 5)], style)
            }))?;
        }
        c.draw_series([EmptyElement::at((s.max.max(s.median), row))
            + Text::new(fmt(s.median), (8, 0), left_text(14))])?;
    }
    if !key.is_empty() {
        draw_key(&foot, key, 14)?;
    }
    root.present()?;
    Ok(())
}

/// One stacked bar: its parts in drawing order, each a named amount with
/// the index of its colour; `None` where nothing was measured.
pub struct Stack {
    pub name: String,
    pub parts: Option<Vec<(String, usize, f64)>>,
}

impl Stack {
    fn total(&self) -> f64 {
        self.parts.iter().flatten().map(|(_, _, v)| v).sum()
    }
}

/// A count as precise as it is useful beside others: two significant
/// digits below 10 (1.9, 0.93), whole numbers above (84, 118).
pub fn count_label(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v <= 0.0 {
        format!("{v}")
    } else {
        // Rounded to two digits first: 0.9997 is "1.0", not "1.00".
        let unit = 10f64.powi(v.log10().floor() as i32 - 1);
        let rounded = (v / unit).round() * unit;
        let decimals = (1 - rounded.log10().floor() as i32).max(0) as usize;
        format!("{rounded:.decimals$}")
    }
}

/// Where to break a linear axis so that totals an order of magnitude apart
/// stay readable: above the largest total within four times the median,
/// rounded up, when the largest total lies beyond three times that.
pub fn break_at(totals: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = totals.iter().copied().filter(|t| *t > 0.0).collect();
    v.sort_by(f64::total_cmp);
    let median = *v.get(v.len() / 2)?;
    let top = *v.last()?;
    let below = v.iter().copied().rfind(|t| *t <= 4.0 * median)?;
    let raw = below * 1.1;
    let mag = 10f64.powf(raw.log10().floor());
    let at = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(mag * 10.0);
    (top > 3.0 * at).then_some(at)
}

/// A linear axis drawn in two parts: `[0, at]` over the first `LEFT` of
/// the width, a gap, then `(at, top]` compressed into the rest.
struct Broken {
    at: Option<f64>,
    top: f64,
}

const LEFT: f64 = 0.68;
const GAP: f64 = 0.03;

impl Broken {
    fn pos(&self, v: f64) -> f64 {
        match self.at {
            None => v / self.top,
            Some(at) if v <= at => v / at * LEFT,
            Some(at) => LEFT + GAP + (v - at) / (self.top - at) * (1.0 - LEFT - GAP),
        }
    }

    /// Tick values: round steps in each part.
    fn ticks(&self) -> Vec<f64> {
        match self.at {
            None => linear_ticks(0.0, self.top, 6.0),
            Some(at) => {
                let mut t = linear_ticks(0.0, at, 5.0);
                t.extend(
                    linear_ticks(at, self.top, 3.0)
                        .into_iter()
                        .filter(|v| *v > at * 1.5),
                );
                t
            }
        }
    }

    /// `[a, b]` as drawn: two pieces where it spans the break.
    fn pieces(&self, a: f64, b: f64) -> Vec<(f64, f64)> {
        match self.at {
            Some(at) if a < at && b > at => vec![(self.pos(a), LEFT), (LEFT + GAP, self.pos(b))],
            _ => vec![(self.pos(a), self.pos(b))],
        }
    }
}

/// Stacked horizontal bars, one per row, each labelled with its total and
/// its parts; the axis broken (`break_at`) where one total dwarfs the
/// rest. `key` names the colours. Returns `false` (and writes nothing)
/// without a non-zero total.
pub fn stacked_bar_chart(
    path: &Path,
    title: &str,
    desc: &str,
    stacks: &[Stack],
    key: &[(&str, usize)],
) -> io::Result<bool> {
    let totals: Vec<f64> = stacks.iter().map(Stack::total).collect();
    let top = totals.iter().copied().fold(0.0, f64::max);
    if top <= 0.0 {
        return Ok(false);
    }
    let axis = Broken {
        at: break_at(&totals),
        top: top * 1.04,
    };
    wrap(path, draw_stacks(path, title, desc, stacks, key, &axis))?;
    Ok(true)
}

const STACK_W: u32 = 1480;
const STACK_PLOT_W: u32 = 800;

fn draw_stacks(
    path: &Path,
    title: &str,
    desc: &str,
    stacks: &[Stack],
    key: &[(&str, usize)],
    axis: &Broken,
) -> Drawn {
    let n = stacks.len();
    let height = 170 + ROW_H * n as u32;
    let name_w = name_w(stacks.iter().map(|s| s.name.as_str()));
    let root = SVGBackend::new(path, (STACK_W + name_w - NAME_W, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, foot) = root.split_vertically(height - 40);
    let (plot, text) = plot.split_horizontally(STACK_PLOT_W + name_w - NAME_W);
    let names: Vec<String> = stacks.iter().map(|s| s.name.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 0.01 && i >= 0.0 && (i as usize) < n {
            names.get(n - 1 - i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let tick_values = axis.ticks();
    let x_range = Ticked {
        lo: 0.0,
        hi: 1.0,
        ticks: tick_values.iter().map(|v| axis.pos(*v)).collect(),
    };
    let x_fmt = |p: &f64| {
        tick_values
            .iter()
            .find(|v| (axis.pos(**v) - p).abs() < 1e-9)
            .map(|v| count_label(*v))
            .unwrap_or_default()
    };
    let x_desc = match axis.at {
        Some(at) => format!(
            "{desc} (linear; axis broken at {}: the part right of the gap is compressed)",
            count_label(at)
        ),
        None => desc.to_string(),
    };
    let mut c = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(name_w)
        .build_cartesian_2d(x_range, -0.6..(n as f64 - 0.4))?;
    c.configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .y_labels(n * 2 + 1)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .x_desc(x_desc)
        .draw()?;
    if axis.at.is_some() {
        // The gap, blank over the grid, with the break's slashes on the
        // axis.
        let mid = LEFT + GAP / 2.0;
        c.draw_series([Rectangle::new(
            [(LEFT, -0.6), (LEFT + GAP, n as f64 - 0.4)],
            WHITE.filled(),
        )])?;
        c.draw_series([-6, 2].map(|dx| {
            EmptyElement::at((mid, -0.6))
                + PathElement::new(vec![(dx, 7), (dx + 6, -7)], BLACK.stroke_width(2))
        }))?;
    }
    let text_top = text.get_pixel_range().1.start;
    for (i, stack) in stacks.iter().enumerate() {
        let row = (n - 1 - i) as f64;
        let y = c.backend_coord(&(0.0, row)).1 - text_top;
        let Some(stack_parts) = &stack.parts else {
            text.draw(&Text::new(
                "no measurement",
                (4, y),
                left_text(14).color(&RGBColor(0x70, 0x70, 0x70)),
            ))?;
            continue;
        };
        let mut from = 0.0;
        for (_, group, v) in stack_parts {
            let to = from + v;
            for (a, b) in axis.pieces(from, to) {
                c.draw_series([Rectangle::new(
                    [(a, row - 0.32), (b, row + 0.32)],
                    color(*group).mix(0.85).filled(),
                )])?;
            }
            from = to;
        }
        // Total and parts, largest first, in the column on the right.
        let mut parts: Vec<&(String, usize, f64)> =
            stack_parts.iter().filter(|(_, _, v)| *v > 0.0).collect();
        parts.sort_by(|a, b| b.2.total_cmp(&a.2));
        let detail: Vec<String> = parts
            .iter()
            .map(|(name, _, v)| format!("{name} {}", count_label(*v)))
            .collect();
        text.draw(&Text::new(
            format!("{} = {}", count_label(stack.total()), detail.join(" + ")),
            (4, y),
            left_text(14),
        ))?;
    }
    draw_key(&foot, key, 16)?;
    root.present()?;
    Ok(())
}

/// One square of the crossover map: how a pair's cell came out under the
/// report's comparison rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mark {
    /// A resolved difference: the ratio row/rival and its interval.
    Resolved { ratio: f64, lo: f64, hi: f64 },
    /// No measurable difference: the whole interval lies within the margin.
    Same { lo: f64, hi: f64 },
    /// The interval is too wide to say either.
    Unresolved { lo: f64, hi: f64 },
    /// A side fell short of the offer, was not measured there, or ran in
    /// too few rounds.
    NotCompared,
}

/// One panel of the crossover map: a pair, `cells[rate][connections]`,
/// and a strip over message size, `sizes[size]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossPanel {
    pub title: String,
    pub cells: Vec<Vec<Mark>>,
    pub sizes: Vec<Mark>,
}

/// The crossover map: one panel per pair, every panel over the same
/// categories and on the same colour scale.
pub struct Crossover<'a> {
    pub title: &'a str,
    /// The connection counts, left to right.
    pub conns: &'a [String],
    /// The offered rates, ascending: drawn bottom to top.
    pub rates: &'a [String],
    /// The message sizes of each panel's strip, left to right, and where
    /// they were measured (empty: no strip).
    pub sizes: &'a [String],
    pub sizes_at: &'a str,
    pub panels: &'a [CrossPanel],
    /// What a square is, written under the key.
    pub note: &'a str,
}

/// ColorBrewer's RdBu (9 classes), blue to red: a diverging scale around a
/// near-white middle, legible by most colour-blind readers.
const DIVERGING: [RGBColor; 9] = [
    RGBColor(0x21, 0x66, 0xac),
    RGBColor(0x43, 0x93, 0xc3),
    RGBColor(0x92, 0xc5, 0xde),
    RGBColor(0xd1, 0xe5, 0xf0),
    RGBColor(0xf7, 0xf7, 0xf7),
    RGBColor(0xfd, 0xdb, 0xc7),
    RGBColor(0xf4, 0xa5, 0x82),
    RGBColor(0xd6, 0x60, 0x4d),
    RGBColor(0xb2, 0x18, 0x2b),
];

/// "No measurable difference": a flat grey, outside the diverging scale.
const SAME_FILL: RGBColor = RGBColor(0xd4, 0xd4, 0xd4);
const GRID_LINE: RGBColor = RGBColor(0xb0, 0xb0, 0xb0);
const MUTED: RGBColor = RGBColor(0x70, 0x70, 0x70);

/// The scale's reach: the smallest of 2×, 4× and 10× either way that holds
/// every ratio (beyond 10× the colour saturates; the square's text says
/// the value).
pub fn ratio_extent(ratios: impl Iterator<Item = f64>) -> f64 {
    let far = ratios
        .filter(|r| *r > 0.0 && r.is_finite())
        .map(|r| r.max(1.0 / r))
        .fold(1.0, f64::max);
    [2.0, 4.0].into_iter().find(|e| far <= *e).unwrap_or(10.0)
}

/// The key's ticks for an extent: symmetric on the log scale.
fn extent_ticks(extent: f64) -> Vec<f64> {
    if extent <= 2.0 {
        vec![0.5, 0.8, 1.0, 1.25, 2.0]
    } else if extent <= 4.0 {
        vec![0.25, 0.5, 1.0, 2.0, 4.0]
    } else {
        vec![0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
    }
}

/// A ratio's colour, log-symmetric around 1 over `1/extent ..= extent`:
/// below 1 (the row cheaper) blue, above 1 (the row costlier) red, 1 the
/// neutral middle.
pub fn ratio_color(ratio: f64, extent: f64) -> RGBColor {
    let t = (ratio.ln() / extent.ln()).clamp(-1.0, 1.0);
    let x = (t + 1.0) / 2.0 * (DIVERGING.len() - 1) as f64;
    let i = (x.floor() as usize).min(DIVERGING.len() - 2);
    let f = x - i as f64;
    let (a, b) = (DIVERGING[i], DIVERGING[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// How a square is drawn.
#[derive(Debug, PartialEq)]
struct Look {
    fill: RGBColor,
    hatched: bool,
    /// The large text: the ratio, or the mark.
    text: String,
    /// The small text under it: the interval, where one was computed.
    detail: Option<String>,
    ink: RGBColor,
}

fn times(v: f64) -> String {
    format!("{}×", significant(v, 3))
}

fn interval(lo: f64, hi: f64) -> String {
    format!("{}–{}", significant(lo, 3), significant(hi, 3))
}

/// The text colour of a fill: black or white, whichever contrasts more
/// (WCAG's ratio of relative luminances); a mid-tone red takes black.
fn ink_on(fill: RGBColor) -> RGBColor {
    let linear = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * linear(fill.0) + 0.7152 * linear(fill.1) + 0.0722 * linear(fill.2);
    // Against black (L = 0): (l + 0.05) / 0.05; against white: 1.05 / (l + 0.05).
    if (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) {
        BLACK
    } else {
        WHITE
    }
}

/// Only a resolved difference is coloured; the other outcomes are marks
/// on fills the diverging scale never takes.
fn look(mark: &Mark, extent: f64) -> Look {
    match *mark {
        Mark::Resolved { ratio, lo, hi } => {
            let fill = ratio_color(ratio, extent);
            Look {
                fill,
                hatched: false,
                text: times(ratio),
                detail: Some(interval(lo, hi)),
                ink: ink_on(fill),
            }
        }
        Mark::Same { lo, hi } => Look {
            fill: SAME_FILL,
            hatched: false,
            text: "=".into(),
            detail: Some(interval(lo, hi)),
            ink: BLACK,
        },
        Mark::Unresolved { lo, hi } => Look {
            fill: WHITE,
            hatched: true,
            text: "?".into(),
            detail: Some(interval(lo, hi)),
            ink: BLACK,
        },
        Mark::NotCompared => Look {
            fill: WHITE,
            hatched: false,
            text: "—".into(),
            detail: None,
            ink: MUTED,
        },
    }
}

/// `text` broken into lines of at most about `width` characters, at spaces
/// and before a `+` (a row's flags), so that a long row name stays whole
/// word by word.
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for (i, part) in text.split('+').enumerate() {
        let part = if i == 0 {
            part.to_string()
        } else {
            format!("+{part}")
        };
        for (j, w) in part.split(' ').enumerate() {
            if j > 0 {
                words.push(" ".into());
            }
            words.push(w.to_string());
        }
    }
    let mut lines = vec![String::new()];
    for w in words {
        let line = lines.last_mut().expect("one line at least");
        if !line.trim().is_empty() && line.chars().count() + w.chars().count() > width {
            lines.push(w.trim_start().to_string());
        } else {
            line.push_str(&w);
        }
    }
    lines.into_iter().map(|l| l.trim().to_string()).collect()
}

/// Draws the crossover map to `path`. Returns `false` (and writes nothing)
/// without a panel.
pub fn crossover_chart(path: &Path, chart: &Crossover) -> io::Result<bool> {
    if chart.panels.is_empty() || chart.conns.is_empty() || chart.rates.is_empty() {
        return Ok(false);
    }
    wrap(path, draw_crossover(path, chart))?;
    Ok(true)
}

const CELL: i32 = 78;
const RATE_W: i32 = 84;
const CROSS_MIN_W: i32 = 330;
const CROSS_MAX_W: i32 = 1500;
const CROSS_X_LABELS: i32 = 50;
const CROSS_KEY_W: i32 = 420;

fn text_at(size: u32, h: HPos, color: RGBColor) -> TextStyle<'static> {
    let mut style =
        TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(h, VPos::Center));
    style.color = color.to_backend_color();
    style
}

fn draw_crossover(path: &Path, chart: &Crossover) -> Drawn {
    let (nc, nr) = (chart.conns.len() as i32, chart.rates.len() as i32);
    let ns = chart.sizes.len() as i32;
    let panel_w = (RATE_W + nc.max(ns) * CELL + 24).max(CROSS_MIN_W);
    // The size strip: a gap, its row of squares and its labels.
    let strip_h = if ns > 0 {
        24 + CELL + CROSS_X_LABELS
    } else {
        0
    };
    let per_row = ((CROSS_MAX_W / panel_w) as usize).clamp(1, 3);
    let per_row = per_row.min(chart.panels.len());
    let rows = chart.panels.len().div_ceil(per_row) as i32;
    let titles: Vec<Vec<String>> = chart
        .panels
        .iter()
        .map(|p| wrap_words(&p.title, (panel_w as usize - 24) / 8))
        .collect();
    let title_h = 24 + 20 * titles.iter().map(Vec::len).max().unwrap_or(1) as i32;
    let panel_h = title_h + nr * CELL + CROSS_X_LABELS + strip_h;
    let width = (panel_w * per_row as i32).max(2 * CROSS_KEY_W + 120);
    let note = wrap_words(chart.note, (width as usize - 32) / 8);
    let foot_h = 150 + 20 * note.len() as i32;
    let height = TITLE_H as i32 + rows * panel_h + foot_h;
    let root = SVGBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    root.draw(&Text::new(
        chart.title.to_string(),
        (width / 2, TITLE_H as i32 / 2),
        text_at(24, HPos::Center, BLACK),
    ))?;
    let extent = ratio_extent(chart.panels.iter().flat_map(|p| {
        p.cells
            .iter()
            .flatten()
            .chain(&p.sizes)
            .filter_map(|m| match m {
                Mark::Resolved { ratio, .. } => Some(*ratio),
                _ => None,
            })
    }));
    for (k, (panel, title)) in chart.panels.iter().zip(&titles).enumerate() {
        let x0 = panel_w * (k % per_row) as i32;
        let y0 = TITLE_H as i32 + panel_h * (k / per_row) as i32;
        for (i, line) in title.iter().enumerate() {
            root.draw(&Text::new(
                line.clone(),
                (x0 + panel_w / 2, y0 + 14 + 20 * i as i32),
                text_at(16, HPos::Center, BLACK),
            ))?;
        }
        let gx = x0 + RATE_W;
        let gy = y0 + title_h;
        // The rates ascend upward: the last row of `cells` on top.
        for (ri, rate) in chart.rates.iter().enumerate() {
            let top = gy + (nr - 1 - ri as i32) * CELL;
            root.draw(&Text::new(
                rate.clone(),
                (gx - 8, top + CELL / 2),
                text_at(14, HPos::Right, BLACK),
            ))?;
            for ci in 0..nc {
                let mark = panel
                    .cells
                    .get(ri)
                    .and_then(|r| r.get(ci as usize))
                    .unwrap_or(&Mark::NotCompared);
                draw_square(&root, (gx + ci * CELL, top), &look(mark, extent))?;
            }
        }
        let below = gy + nr * CELL;
        for (ci, c) in chart.conns.iter().enumerate() {
            root.draw(&Text::new(
                c.clone(),
                (gx + ci as i32 * CELL + CELL / 2, below + 12),
                text_at(14, HPos::Center, BLACK),
            ))?;
        }
        root.draw(&Text::new(
            "connections",
            (gx + nc * CELL / 2, below + 34),
            text_at(14, HPos::Center, MUTED),
        ))?;
        root.draw(&Text::new(
            "offered",
            (gx - 8, gy - 10),
            text_at(13, HPos::Right, MUTED),
        ))?;
        if ns > 0 {
            let top = below + CROSS_X_LABELS + 24;
            root.draw(&Text::new(
                "size",
                (gx - 8, top + CELL / 2),
                text_at(14, HPos::Right, BLACK),
            ))?;
            for (si, size) in chart.sizes.iter().enumerate() {
                let mark = panel.sizes.get(si).unwrap_or(&Mark::NotCompared);
                draw_square(&root, (gx + si as i32 * CELL, top), &look(mark, extent))?;
                root.draw(&Text::new(
                    size.clone(),
                    (gx + si as i32 * CELL + CELL / 2, top + CELL + 12),
                    text_at(14, HPos::Center, BLACK),
                ))?;
            }
            root.draw(&Text::new(
                chart.sizes_at.to_string(),
                (gx + ns * CELL / 2, top + CELL + 34),
                text_at(14, HPos::Center, MUTED),
            ))?;
        }
    }
    let foot_y = TITLE_H as i32 + rows * panel_h + 10;
    draw_ratio_key(&root, (32, foot_y), extent)?;
    draw_mark_key(&root, (CROSS_KEY_W + 100, foot_y))?;
    for (i, line) in note.iter().enumerate() {
        root.draw(&Text::new(
            line.clone(),
            (16, foot_y + 128 + 20 * i as i32),
            text_at(14, HPos::Left, BLACK),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// A square of the map with its top-left corner at `at`: its fill, the
/// hatching of an unresolved cell, and its text.
fn draw_square(root: &Area, at: (i32, i32), look: &Look) -> Drawn {
    let s = CELL - 4;
    let (x, y) = (at.0 + 2, at.1 + 2);
    root.draw(&Rectangle::new(
        [(x, y), (x + s, y + s)],
        look.fill.filled(),
    ))?;
    if look.hatched {
        hatch(root, (x, y), s, 10)?;
    }
    root.draw(&Rectangle::new(
        [(x, y), (x + s, y + s)],
        GRID_LINE.stroke_width(1),
    ))?;
    let mid = (x + s / 2, y + s / 2);
    let (text_at_y, size) = match look.detail {
        Some(_) => (mid.1 - 9, 18),
        None => (mid.1, 22),
    };
    if look.hatched {
        // The text on a clear patch, not across the hatching.
        root.draw(&Rectangle::new(
            [(x + 8, text_at_y - 13), (x + s - 8, mid.1 + 22)],
            WHITE.filled(),
        ))?;
    }
    root.draw(&Text::new(
        look.text.clone(),
        (mid.0, text_at_y),
        text_at(size, HPos::Center, look.ink),
    ))?;
    if let Some(detail) = &look.detail {
        root.draw(&Text::new(
            detail.clone(),
            (mid.0, mid.1 + 13),
            text_at(11, HPos::Center, look.ink),
        ))?;
    }
    Ok(())
}

/// Diagonals `step` apart over the square of side `s` at `at`: the
/// hatching of "not resolved".
fn hatch(root: &Area, at: (i32, i32), s: i32, step: usize) -> Drawn {
    let (x, y) = at;
    for c in (step as i32..2 * s).step_by(step) {
        // The line u + v = c, clipped to the square.
        let (a, b) = if c <= s {
            ((x + c, y), (x, y + c))
        } else {
            ((x + s, y + c - s), (x + c - s, y + s))
        };
        root.draw(&PathElement::new(vec![a, b], GRID_LINE.stroke_width(1)))?;
    }
    Ok(())
}

/// The diverging scale as a bar with its ticks (0.5×, 0.8×, 1×, ...).
fn draw_ratio_key(root: &Area, at: (i32, i32), extent: f64) -> Drawn {
    let (x, y) = (at.0, at.1 + 34);
    let (w, h) = (CROSS_KEY_W, 18);
    root.draw(&Text::new(
        "resolved: the row's CPU per request over its rival's",
        (x, at.1 + 12),
        text_at(14, HPos::Left, BLACK),
    ))?;
    let steps = 120;
    for i in 0..steps {
        let t = (i as f64 + 0.5) / steps as f64 * 2.0 - 1.0;
        let c = ratio_color(extent.powf(t), extent);
        let a = x + w * i / steps;
        let b = x + w * (i + 1) / steps;
        root.draw(&Rectangle::new([(a, y), (b, y + h)], c.filled()))?;
    }
    root.draw(&Rectangle::new(
        [(x, y), (x + w, y + h)],
        GRID_LINE.stroke_width(1),
    ))?;
    for v in extent_ticks(extent) {
        let t = (v.ln() / extent.ln() + 1.0) / 2.0;
        let tx = x + (t * w as f64).round() as i32;
        root.draw(&PathElement::new(
            vec![(tx, y + h), (tx, y + h + 5)],
            BLACK.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            format!("{v}×"),
            (tx, y + h + 16),
            text_at(13, HPos::Center, BLACK),
        ))?;
    }
    root.draw(&Text::new(
        "← row cheaper",
        (x, y + h + 40),
        text_at(13, HPos::Left, DIVERGING[0]),
    ))?;
    root.draw(&Text::new(
        "row costlier →",
        (x + w, y + h + 40),
        text_at(13, HPos::Right, DIVERGING[8]),
    ))?;
    Ok(())
}

/// What the squares that are not coloured mean, one swatch each.
fn draw_mark_key(root: &Area, at: (i32, i32)) -> Drawn {
    let said = [
        (
            Mark::Same { lo: 1.0, hi: 1.0 },
            "no measurable difference (interval within ±10 %)",
        ),
        (
            Mark::Unresolved { lo: 1.0, hi: 1.0 },
            "not resolved by this run",
        ),
        (
            Mark::NotCompared,
            "not compared (a side fell short of the offer, or was not measured)",
        ),
    ];
    let small = 30;
    for (i, (mark, what)) in said.iter().enumerate() {
        let look = look(mark, 2.0);
        let (x, y) = (at.0, at.1 + 4 + 38 * i as i32);
        root.draw(&Rectangle::new(
            [(x, y), (x + small, y + small)],
            look.fill.filled(),
        ))?;
        if look.hatched {
            hatch(root, (x, y), small, 8)?;
        }
        root.draw(&Rectangle::new(
            [(x, y), (x + small, y + small)],
            GRID_LINE.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            look.text.clone(),
            (x + small / 2, y + small / 2),
            text_at(18, HPos::Center, look.ink),
        ))?;
        root.draw(&Text::new(
            what.to_string(),
            (x + small + 10, y + small / 2),
            text_at(14, HPos::Left, BLACK),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stats::{micros_tick as micros, si_tick as si};
    use crate::spec::STANDARD_MODELS;

    fn spread(v: &[f64]) -> Spread {
        Spread::of(v.iter().copied()).expect("values")
    }

    #[test]
    fn log_ticks_fall_where_the_data_is() {
        // 0.4-1 ms: labels inside that range, not only at 1 ms.
        let t = ticks(400.0, 1000.0, Scale::Log);
        assert!(
            t.len() >= 3 && t.iter().all(|v| (400.0..=1000.0).contains(v)),
            "{t:?}"
        );
        // Over four decades, the powers of ten.
        assert_eq!(
            ticks(0.5, 9000.0, Scale::Log),
            vec![1.0, 10.0, 100.0, 1000.0]
        );
        assert_eq!(
            ticks(0.0, 10.0, Scale::Linear),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(
            ticks(50.0, 99.99, Scale::Nines),
            vec![50.0, 90.0, 99.0, 99.9, 99.99]
        );
    }

    #[test]
    fn log_ticks_lie_inside_the_range_shown_for_any_data() {
        for (lo, hi) in [(11.0, 25.0), (0.04, 200.0), (48.0, 17_000.0), (9.0, 11.0)] {
            let (a, b) = bounds([lo, hi].into_iter(), Scale::Log, true).expect("bounds");
            let t = ticks(a, b, Scale::Log);
            assert!(t.len() >= 3, "{lo}-{hi}: {t:?}");
            assert!(t.iter().all(|v| *v >= a && *v <= b), "{lo}-{hi}: {t:?}");
        }
    }

    #[test]
    fn every_standard_row_has_a_family_and_the_families_are_the_issues() {
        for label in STANDARD_MODELS {
            assert_ne!(Family::of(label), Family::Other, "{label}");
        }
        assert_eq!(Family::of("epoll:edge"), Family::Readiness);
        assert_eq!(Family::of("nonblocking:spin"), Family::Readiness);
        assert_eq!(Family::of("select"), Family::Readiness);
        assert_eq!(Family::of("sigio:rt"), Family::Readiness);
        assert_eq!(Family::of("blocking:fork"), Family::Blocking);
        assert_eq!(Family::of("uring:multishot+sqpoll"), Family::Completion);
        assert_eq!(Family::of("coroutine:async"), Family::Coroutines);
        assert_eq!(Family::of("peers:tokio"), Family::References);
        assert_eq!(Family::of("kqueue"), Family::Other);
        // No panel holds more lines than the palette has colours.
        for f in Family::ALL {
            let n = STANDARD_MODELS
                .iter()
                .filter(|m| Family::of(m) == f)
                .count();
            assert!(n <= PALETTE.len(), "{f:?}: {n}");
        }
    }

    #[test]
    fn a_panel_is_drawn_only_for_a_family_with_a_series() {
        let s = |name: &str| Series {
            name: name.into(),
            color: 0,
            reference: false,
            points: vec![(1.0, spread(&[1.0]))],
            short: vec![],
        };
        let series = vec![s("peers:tokio"), s("epoll:level"), s("poll")];
        let p = panels(&series);
        let got: Vec<(Family, usize)> = p.iter().map(|(f, s)| (*f, s.len())).collect();
        assert_eq!(got, vec![(Family::Readiness, 2), (Family::References, 1)]);
    }

    #[test]
    fn a_categorical_axis_shows_zero_and_labels_the_categories() {
        let cats = vec!["0".to_string(), "1000".into(), "10000".into()];
        let scale = Scale::Categories(&cats);
        assert!(scale.usable(0.0) && scale.usable(2.0) && !scale.usable(3.0));
        assert_eq!(ticks(-0.5, 2.5, scale), vec![0.0, 1.0, 2.0]);
        let axis = Axis {
            desc: "idle",
            scale,
            format: si,
        };
        assert_eq!(axis.label(0.0), "0");
        assert_eq!(axis.label(2.0), "10000");
    }

    #[test]
    fn a_broken_axis_keeps_small_totals_readable_beside_large_ones() {
        let totals = [1.9, 2.9, 2.9, 3.9, 3.0, 7.7, 84.0, 118.0, 1.9, 2.0];
        assert_eq!(break_at(&totals), Some(10.0));
        // Nothing dwarfs the rest: no break.
        assert_eq!(break_at(&[1.9, 2.9, 3.9, 7.7]), None);
        let axis = Broken {
            at: Some(10.0),
            top: 120.0,
        };
        // 1.9 and 2.9 are a tenth of the width apart, not a hundredth.
        assert!(axis.pos(2.9) - axis.pos(1.9) > 0.05);
        assert!(axis.pos(118.0) <= 1.0 && axis.pos(84.0) > LEFT + GAP);
        assert_eq!(axis.pieces(1.0, 50.0).len(), 2);
        assert!(axis.ticks().iter().all(|t| *t >= 0.0 && *t <= 120.0));
        assert_eq!(count_label(1.94), "1.9");
        assert_eq!(count_label(0.93), "0.93");
        assert_eq!(count_label(0.9997), "1.0");
        assert_eq!(count_label(118.2), "118");
        assert_eq!(count_label(0.0), "0");
    }

    #[test]
    fn the_ratio_scale_is_centred_on_one() {
        for extent in [2.0, 4.0, 10.0] {
            // 1 is the middle of the diverging scale, the near-white.
            assert_eq!(ratio_color(1.0, extent), DIVERGING[DIVERGING.len() / 2]);
            assert_eq!(ratio_color(1.0, extent), RGBColor(0xf7, 0xf7, 0xf7));
            // Cheaper is blue, costlier red, by the same amount on the log
            // scale: a ratio and its inverse sit at mirrored places.
            for r in [0.95, 0.8, 0.5, 0.3] {
                let (lo, hi) = (ratio_color(r, extent), ratio_color(1.0 / r, extent));
                assert!(lo.2 > lo.0, "{r}: {lo:?} is not blue");
                assert!(hi.0 > hi.2, "{}: {hi:?} is not red", 1.0 / r);
            }
            assert_eq!(ratio_color(1.0 / extent, extent), DIVERGING[0]);
            assert_eq!(ratio_color(extent, extent), DIVERGING[DIVERGING.len() - 1]);
            // Beyond the extent the colour saturates.
            assert_eq!(
                ratio_color(extent * 3.0, extent),
                DIVERGING[DIVERGING.len() - 1]
            );
        }
        // Further from 1, darker: the fill's brightness falls either way.
        let luma = |c: RGBColor| c.0 as u32 + c.1 as u32 + c.2 as u32;
        assert!(luma(ratio_color(0.6, 2.0)) < luma(ratio_color(0.9, 2.0)));
        assert!(luma(ratio_color(1.6, 2.0)) < luma(ratio_color(1.1, 2.0)));
        assert_eq!(ratio_extent([0.6, 1.5].into_iter()), 2.0);
        assert_eq!(ratio_extent([0.333, 1.5].into_iter()), 4.0);
        assert_eq!(ratio_extent([12.0].into_iter()), 10.0);
        assert_eq!(ratio_extent(std::iter::empty()), 2.0);
        // The key's ticks are symmetric about 1 on the log scale.
        for extent in [2.0, 4.0, 10.0] {
            let t = extent_ticks(extent);
            assert!(t.contains(&1.0) && t.contains(&extent) && t.contains(&(1.0 / extent)));
            for v in &t {
                assert!(t.iter().any(|w| (v * w - 1.0).abs() < 1e-9), "{v} in {t:?}");
            }
        }
    }

    #[test]
    fn only_a_resolved_difference_is_coloured() {
        let extent: f64 = 2.0;
        // Every colour the scale can give a resolved cell.
        let ramp: Vec<RGBColor> = (0..=400)
            .map(|i| ratio_color(extent.powf(i as f64 / 200.0 - 1.0), extent))
            .collect();
        for mark in [
            Mark::Same { lo: 0.95, hi: 1.05 },
            Mark::Unresolved { lo: 0.4, hi: 0.9 },
            Mark::NotCompared,
        ] {
            let l = look(&mark, extent);
            assert!(!ramp.contains(&l.fill), "{mark:?} filled {:?}", l.fill);
            assert!(!l.text.contains('×'), "{mark:?} reads as a ratio");
        }
        assert_eq!(look(&Mark::Same { lo: 0.95, hi: 1.05 }, extent).text, "=");
        let unresolved = look(&Mark::Unresolved { lo: 0.4, hi: 0.9 }, extent);
        assert!(unresolved.hatched && unresolved.text == "?");
        assert_eq!(unresolved.detail.as_deref(), Some("0.400–0.900"));
        assert_eq!(look(&Mark::NotCompared, extent).text, "—");
        let resolved = look(
            &Mark::Resolved {
                ratio: 0.5,
                lo: 0.45,
                hi: 0.55,
            },
            extent,
        );
        assert_eq!(resolved.fill, DIVERGING[0]);
        assert_eq!(resolved.text, "0.500×");
        assert_eq!(resolved.ink, WHITE, "dark fill, light text");
        assert_eq!(ink_on(DIVERGING[DIVERGING.len() - 1]), WHITE);
        assert_eq!(ink_on(DIVERGING[7]), BLACK, "a mid-tone red takes black");
        assert_eq!(ink_on(SAME_FILL), BLACK);
        assert!(!resolved.hatched);
    }

    #[test]
    fn a_bar_charts_name_column_fits_its_longest_name() {
        assert_eq!(name_w(["poll", "epoll:level"].into_iter()), NAME_W);
        let best = "uring:multishot+defer-taskrun+skip-send-cqe+fixed-files+incremental-buffers";
        let w = name_w(["poll", best].into_iter());
        assert!(w > NAME_W && w >= best.len() as u32 * 7, "{w}");
    }

    #[test]
    fn a_long_row_name_wraps_at_its_flags() {
        let title = "uring:multishot+defer-taskrun+skip-send-cqe over epoll:level";
        let lines = wrap_words(title, 30);
        assert_eq!(
            lines,
            [
                "uring:multishot+defer-taskrun",
                "+skip-send-cqe over",
                "epoll:level"
            ]
        );
        assert_eq!(wrap_words("a over b", 30), ["a over b"]);
    }

    #[test]
    fn a_crossover_map_without_a_panel_is_not_drawn() {
        let path = std::env::temp_dir().join(format!("lab-cross-{}.svg", std::process::id()));
        let cats = vec!["100".to_string()];
        let chart = Crossover {
            title: "t",
            conns: &cats,
            rates: &cats,
            sizes: &cats,
            sizes_at: "",
            panels: &[],
            note: "",
        };
        assert!(!crossover_chart(&path, &chart).expect("no error"));
        assert!(!path.exists());
    }

    #[test]
    fn charts_write_svg_with_every_series_name_and_unit() {
        let dir = std::env::temp_dir().join(format!("lab-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let series = vec![
            Series {
                name: "model-a".into(),
                color: 0,
                reference: false,
                points: vec![(10.0, spread(&[400.0, 500.0])), (1000.0, spread(&[3000.0]))],
                short: vec![1000.0],
            },
            Series {
                name: "peers:tokio".into(),
                color: 1,
                reference: true,
                points: vec![(100.0, spread(&[900.0, 1200.0, 1100.0]))],
                short: vec![],
            },
        ];
        for scale in [Scale::Linear, Scale::Log] {
            let path = dir.join(format!("lines-{scale:?}.svg"));
            let chart = LineChart {
                title: "t",
                x: Axis {
                    desc: "connections",
                    scale: Scale::Log,
                    format: si,
                },
                y: Axis {
                    desc: "latency",
                    scale,
                    format: micros,
                },
                series: &series,
            };
            assert!(line_chart(&path, &chart).expect("drawn"));
            let svg = std::fs::read_to_string(&path).expect("svg written");
            assert!(svg.starts_with("<svg") && svg.contains("model-a"));
            assert!(svg.contains("peers:tokio (ref.)"), "a reference is marked");
            assert!(
                svg.contains("rate not sustained"),
                "hollow points explained"
            );
            assert!(
                svg.contains("ms") && svg.contains("µs"),
                "units on the ticks"
            );
            assert_eq!(svg.contains("latency (log scale)"), scale == Scale::Log);
            // One panel per family: the unknown model's and the peers'.
            assert!(svg.contains(Family::Other.title()));
            assert!(svg.contains(Family::References.title()));
            assert!(!svg.contains(Family::Blocking.title()));
        }
        let path = dir.join("bars.svg");
        let bars = vec![
            Bar {
                name: "model-a".into(),
                color: 0,
                value: Some(spread(&[5.0, 6.0])),
            },
            Bar {
                name: "model-zero".into(),
                color: 1,
                value: Some(spread(&[0.0, 0.0])),
            },
            Bar {
                name: "model-none".into(),
                color: 2,
                value: None,
            },
        ];
        let x = Axis {
            desc: "connections/s",
            scale: Scale::Linear,
            format: si,
        };
        assert!(bar_chart(&path, "t", &x, &bars, &[("blocking", 0)]).expect("drawn"));
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.contains("model-a") && svg.contains("blocking"));
        // A zero is labelled as a value, a missing bar as missing.
        assert!(
            svg.contains("\n0\n</text>") && svg.contains("no measurement"),
            "{svg}"
        );
        assert!(!bar_chart(&path, "t", &x, &bars[2..], &[]).expect("no error"));
        let path = dir.join("stacks.svg");
        let stacks = vec![
            Stack {
                name: "epoll:level".into(),
                parts: Some(vec![
                    ("epoll_wait".into(), 0, 0.97),
                    ("recvfrom".into(), 1, 0.9997),
                ]),
            },
            Stack {
                name: "nonblocking:spin".into(),
                parts: Some(vec![("recvfrom".into(), 1, 115.0)]),
            },
            Stack {
                name: "blocking:iterative".into(),
                parts: None,
            },
        ];
        assert!(stacked_bar_chart(&path, "t", "calls", &stacks, &[("wait", 0)]).expect("drawn"));
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(
            svg.contains("2.0 = recvfrom 1.0 + epoll_wait 0.97"),
            "{svg}"
        );
        assert!(svg.contains("115 = recvfrom 115"), "{svg}");
        assert!(svg.contains("no measurement"), "{svg}");
        let empty = LineChart {
            title: "t",
            x: Axis {
                desc: "x",
                scale: Scale::Linear,
                format: si,
            },
            y: Axis {
                desc: "y",
                scale: Scale::Linear,
                format: si,
            },
            series: &[],
        };
        assert!(!line_chart(&dir.join("empty.svg"), &empty).expect("no error"));
        assert!(!dir.join("empty.svg").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
