//! The report's SVG figures, drawn with plotters: one line per model
//! (median of the repeats, with a bar from the smallest to the largest) over
//! a numeric x axis, or one bar per model.
//!
//! Both axes are drawn in their own units: a logarithmic axis is drawn as a
//! linear axis of log10(value) whose ticks sit at 1-2-5 values and are
//! labelled with the values, so that a log axis always carries labels where
//! the data is (plotters' own log axis labels powers of ten only). The
//! legend stands in its own column right of the plot, never over the data.

use std::error::Error;
use std::io;
use std::path::Path;

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

use super::stats::Spread;

/// One model's points: (x value, spread of the repeats).
pub struct Series {
    pub name: String,
    /// Index into the palette: the model's place in the matrix, so that a
    /// model has the same colour in every figure.
    pub color: usize,
    /// A reference (a peer): drawn dashed, so it reads as a yardstick.
    pub reference: bool,
    pub points: Vec<(f64, Spread)>,
    /// The x values of points whose cell fell short of its offered rate:
    /// drawn hollow, since their figures describe a backlog.
    pub short: Vec<f64>,
}

/// Tableau's twenty colours, black and four darker shades: distinguishable,
/// also in print, for up to twenty-five model:modes.
const PALETTE: [RGBColor; 25] = [
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
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0x39, 0x3b, 0x79),
    RGBColor(0x63, 0x79, 0x39),
    RGBColor(0x84, 0x3c, 0x39),
    RGBColor(0x7b, 0x41, 0x73),
    RGBColor(0xae, 0xc7, 0xe8),
    RGBColor(0xff, 0xbb, 0x78),
    RGBColor(0x98, 0xdf, 0x8a),
    RGBColor(0xff, 0x98, 0x96),
    RGBColor(0xc5, 0xb0, 0xd5),
    RGBColor(0xc4, 0x9c, 0x94),
    RGBColor(0xf7, 0xb6, 0xd2),
    RGBColor(0xc7, 0xc7, 0xc7),
    RGBColor(0xdb, 0xdb, 0x8d),
    RGBColor(0x9e, 0xda, 0xe5),
];

pub fn color(i: usize) -> RGBAColor {
    PALETTE[i % PALETTE.len()].to_rgba()
}

/// How an axis maps its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// log10; the axis title says "log scale".
    Log,
    /// Percentiles spaced by their nines: p90, p99, p99.9 equally apart
    /// (the position is -log10(1 - p/100)), as HdrHistogram plots them.
    Nines,
}

impl Scale {
    fn to_axis(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
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
            }
    }
}

/// One axis: its title (the unit in it), scale and tick label format.
#[derive(Clone, Copy)]
pub struct Axis<'a> {
    pub desc: &'a str,
    pub scale: Scale,
    pub format: fn(f64) -> String,
}

impl Axis<'_> {
    fn title(&self) -> String {
        match self.scale {
            Scale::Log => format!("{} (log scale)", self.desc),
            Scale::Nines => format!("{} (spaced by nines)", self.desc),
            Scale::Linear => self.desc.to_string(),
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
            let (lo, hi) = if hi / lo < 2.0 {
                (lo / 1.5, hi * 1.5)
            } else {
                (lo / 1.25, hi * 1.25)
            };
            (lo, hi)
        }
        Scale::Nines => (lo.min(40.0), hi.max(99.9)),
        Scale::Linear => {
            let lo = if from_zero && lo >= 0.0 { 0.0 } else { lo };
            let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
            let lo = if lo == 0.0 { 0.0 } else { lo - span * 0.05 };
            (lo, hi + span * 0.08)
        }
    })
}

/// Tick values inside `[lo, hi]`: 1-2-5 steps on a log axis (1..9 where
/// that leaves fewer than three), a round step on a linear one, the nines
/// on a percentile axis.
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
        Scale::Linear => {
            let raw = (hi - lo) / 6.0;
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
        Scale::Nines => [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
            .into_iter()
            .filter(|p| *p >= lo && *p <= hi)
            .collect(),
    }
}

/// Draws `chart` to `path`. Returns `false` (and writes nothing) when no
/// series has a point.
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
    wrap(path, draw_lines(path, chart, xb, yb))?;
    Ok(true)
}

const WIDTH: u32 = 1080;
const HEIGHT: u32 = 640;
const LEGEND_WIDTH: u32 = 230;

fn draw_lines(path: &Path, chart: &LineChart, xb: (f64, f64), yb: (f64, f64)) -> Drawn {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let (xs, ys) = (chart.x.scale, chart.y.scale);
    let x_ticks = ticks(xb.0, xb.1, xs);
    let y_ticks = ticks(yb.0, yb.1, ys);
    let x_range = Ticked {
        lo: xs.to_axis(xb.0),
        hi: xs.to_axis(xb.1),
        ticks: x_ticks.iter().map(|v| xs.to_axis(*v)).collect(),
    };
    let y_range = Ticked {
        lo: ys.to_axis(yb.0),
        hi: ys.to_axis(yb.1),
        ticks: y_ticks.iter().map(|v| ys.to_axis(*v)).collect(),
    };
    // The labels are the tick values the positions were made from.
    let label = |ticks: Vec<f64>, scale: Scale, format: fn(f64) -> String| {
        move |pos: &f64| {
            ticks
                .iter()
                .find(|t| (scale.to_axis(**t) - pos).abs() < 1e-9)
                .map(|t| format(*t))
                .unwrap_or_default()
        }
    };
    let x_label = label(x_ticks, xs, chart.x.format);
    let y_label = label(y_ticks, ys, chart.y.format);
    let mut c = ChartBuilder::on(&plot)
        .caption(chart.title, ("sans-serif", 24))
        .margin(18)
        .x_label_area_size(60)
        .y_label_area_size(96)
        .build_cartesian_2d(x_range, y_range)?;
    c.configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_desc(chart.x.title())
        .y_desc(chart.y.title())
        .draw()?;
    for s in chart.series {
        let color = color(s.color);
        let pts: Vec<(f64, Spread)> = s
            .points
            .iter()
            .filter(|(x, p)| xs.usable(*x) && ys.usable(p.median))
            .map(|(x, p)| (xs.to_axis(*x), *p))
            .collect();
        let line: Vec<(f64, f64)> = pts
            .iter()
            .map(|(x, p)| (*x, ys.to_axis(p.median)))
            .collect();
        if s.reference {
            c.draw_series(DashedLineSeries::new(line, 8, 5, color.stroke_width(3)))?;
        } else {
            c.draw_series(LineSeries::new(line, color.stroke_width(2)))?;
        }
        // A log axis has no zero: a bar's foot is cut at the axis bottom.
        let floor = ys.to_axis(yb.0);
        c.draw_series(pts.iter().filter(|(_, p)| p.max > p.min).map(|(x, p)| {
            let lo = if ys.usable(p.min) {
                ys.to_axis(p.min).max(floor)
            } else {
                floor
            };
            PathElement::new(vec![(*x, lo), (*x, ys.to_axis(p.max))], color)
        }))?;
        let hollow = |x: f64| s.short.iter().any(|v| xs.to_axis(*v) == x);
        c.draw_series(pts.iter().map(|(x, p)| {
            let style = if hollow(*x) {
                WHITE.filled()
            } else {
                color.filled()
            };
            Circle::new((*x, ys.to_axis(p.median)), 5, style)
        }))?;
        c.draw_series(
            pts.iter()
                .filter(|(x, _)| hollow(*x))
                .map(|(x, p)| Circle::new((*x, ys.to_axis(p.median)), 5, color.stroke_width(2))),
        )?;
    }
    draw_legend(&legend, chart.series)?;
    root.present()?;
    Ok(())
}

/// The legend, one row per series, in its own drawing area.
fn draw_legend(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, series: &[Series]) -> Drawn {
    let font = ("sans-serif", 16).into_font();
    for (i, s) in series.iter().enumerate() {
        let y = 70 + 24 * i as i32;
        let color = color(s.color);
        if s.reference {
            // Dashed, as the reference's line in the plot.
            let style = color.stroke_width(3);
            area.draw(&PathElement::new(vec![(4, y), (14, y)], style))?;
            area.draw(&PathElement::new(vec![(24, y), (34, y)], style))?;
        } else {
            area.draw(&PathElement::new(
                vec![(4, y), (34, y)],
                color.stroke_width(2),
            ))?;
        }
        area.draw(&Circle::new((19, y), 4, color.filled()))?;
        let name = if s.reference {
            format!("{} (ref.)", s.name)
        } else {
            s.name.clone()
        };
        area.draw(&Text::new(name, (42, y - 9), font.clone()))?;
    }
    if series.iter().any(|s| !s.short.is_empty()) {
        let y = 70 + 24 * series.len() as i32 + 16;
        area.draw(&Circle::new((19, y), 5, BLACK.stroke_width(2)))?;
        area.draw(&Text::new("rate not sustained", (42, y - 9), font.clone()))?;
    }
    Ok(())
}

/// Horizontal bars, one per model (median, with a line from min to max).
/// Returns `false` (and writes nothing) when there is no bar.
pub fn bar_chart(
    path: &Path,
    title: &str,
    x: &Axis,
    bars: &[(String, usize, Spread)],
) -> io::Result<bool> {
    let Some((_, hi)) = bounds(bars.iter().map(|(_, _, s)| s.max), Scale::Linear, true) else {
        return Ok(false);
    };
    wrap(path, draw_bars(path, title, x, bars, hi))?;
    Ok(true)
}

fn draw_bars(
    path: &Path,
    title: &str,
    x: &Axis,
    bars: &[(String, usize, Spread)],
    hi: f64,
) -> Drawn {
    let height = 140 + 34 * bars.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = bars.len();
    let names: Vec<String> = bars.iter().map(|(name, _, _)| name.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 0.01 && i >= 0.0 && (i as usize) < n {
            // Row 0 at the top.
            names.get(n - 1 - i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let x_ticks = ticks(0.0, hi, Scale::Linear);
    let fmt = x.format;
    let x_range = Ticked {
        lo: 0.0,
        hi,
        ticks: x_ticks,
    };
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(18)
        .x_label_area_size(60)
        .y_label_area_size(200)
        .build_cartesian_2d(x_range, -0.6..(n as f64 - 0.4))?;
    c.configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .y_labels(n * 2 + 1)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&|v| fmt(*v))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_desc(x.title())
        .draw()?;
    for (i, (_, palette_index, s)) in bars.iter().enumerate() {
        let row = (n - 1 - i) as f64;
        let color = color(*palette_index);
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, row - 0.35), (s.median, row + 0.35)],
            color.mix(0.7).filled(),
        )))?;
        if s.max > s.min {
            c.draw_series(std::iter::once(PathElement::new(
                vec![(s.min, row), (s.max, row)],
                BLACK.stroke_width(2),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stats::{micros_tick as micros, si_tick as si};

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
        }
        let path = dir.join("bars.svg");
        let bars = vec![("model-a".to_string(), 0, spread(&[5.0, 6.0]))];
        let x = Axis {
            desc: "connections/s",
            scale: Scale::Linear,
            format: si,
        };
        assert!(bar_chart(&path, "t", &x, &bars).expect("drawn"));
        assert!(std::fs::read_to_string(&path)
            .expect("svg")
            .contains("model-a"));
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
