//! The report's SVG figures, drawn with plotters: one line per model
//! (median of the repeats, with a bar from the smallest to the largest), or
//! one bar per model.

use std::error::Error;
use std::io;
use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::stats::{si, Spread};

/// One model's points: (index on the x axis, spread of the repeats).
pub struct Series {
    pub name: String,
    /// Index into the palette: the model's place in the matrix, so that a
    /// model has the same colour in every figure.
    pub color: usize,
    pub points: Vec<(usize, Spread)>,
}

/// Tableau's ten colours and black: distinguishable, also in print.
const PALETTE: [RGBColor; 11] = [
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
];

pub fn color(i: usize) -> RGBAColor {
    PALETTE[i % PALETTE.len()].to_rgba()
}

/// A line chart over categorical x positions (connection counts, idle
/// counts, percentiles): evenly spaced, which for 1/10/100/1000 is a
/// logarithmic axis.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub x_labels: &'a [String],
    pub y_desc: &'a str,
    pub log_y: bool,
    pub series: &'a [Series],
}

type Drawn = Result<(), Box<dyn Error>>;

fn wrap(path: &Path, drawn: Drawn) -> io::Result<()> {
    drawn.map_err(|e| io::Error::other(format!("drawing {}: {e}", path.display())))
}

fn y_bounds(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let v: Vec<f64> = values
        .filter(|x| x.is_finite() && (!log || *x > 0.0))
        .collect();
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    if v.is_empty() {
        return None;
    }
    Some(if log {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.0, if hi > 0.0 { hi * 1.1 } else { 1.0 })
    })
}

/// Draws `chart` to `path`. Returns `false` (and writes nothing) when no
/// series has a point.
pub fn line_chart(path: &Path, chart: &LineChart) -> io::Result<bool> {
    let values = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|(_, p)| [p.min, p.max]));
    let values: Vec<f64> = values.collect();
    let Some((lo, hi)) = y_bounds(values.iter().copied(), chart.log_y) else {
        return Ok(false);
    };
    // plotters labels a log axis at powers of ten only: over less than
    // about one decade that leaves the axis bare, so draw it linear.
    if chart.log_y && hi / lo < 20.0 {
        let (lo, hi) = y_bounds(values.into_iter(), false).unwrap_or((0.0, 1.0));
        wrap(path, draw_lines(path, chart, false, lo, hi))?;
    } else {
        wrap(path, draw_lines(path, chart, chart.log_y, lo, hi))?;
    }
    Ok(true)
}

fn draw_lines(path: &Path, chart: &LineChart, log_y: bool, lo: f64, hi: f64) -> Drawn {
    let y_desc = if log_y {
        format!("{} (log scale)", chart.y_desc)
    } else {
        chart.y_desc.to_string()
    };
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = chart.x_labels.len().max(1);
    let x_range = -0.3..(n as f64 - 0.7);
    let labels = chart.x_labels.to_vec();
    let x_fmt = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 0.01 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80);
    // The two axis types differ in type only: one generic body draws both.
    if log_y {
        let c = builder.build_cartesian_2d(x_range, (lo..hi).log_scale())?;
        // A log axis has no zero: a bar's foot is cut at the axis bottom.
        draw_series(c, chart, n, &x_fmt, &y_desc, Some(lo))?;
    } else {
        let c = builder.build_cartesian_2d(x_range, lo..hi)?;
        draw_series(c, chart, n, &x_fmt, &y_desc, None)?;
    }
    root.present()?;
    Ok(())
}

/// Draws the axes, one line per series with its min-max bars, and the
/// legend into `c`, whose y axis is linear or logarithmic. `bar_floor` cuts
/// the bars' feet (a log axis cannot draw down to zero).
fn draw_series<'a, Y>(
    mut c: ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    chart: &LineChart,
    n: usize,
    x_fmt: &dyn Fn(&f64) -> String,
    y_desc: &str,
    bar_floor: Option<f64>,
) -> Drawn
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    c.configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(n * 2)
        .x_label_formatter(x_fmt)
        .y_label_formatter(&|y| si(*y))
        .x_desc(chart.x_desc)
        .y_desc(y_desc)
        .draw()?;
    for s in chart.series {
        let color = color(s.color);
        let pts: Vec<(f64, Spread)> = s.points.iter().map(|(x, p)| (*x as f64, *p)).collect();
        c.draw_series(LineSeries::new(
            pts.iter().map(|(x, p)| (*x, p.median)),
            color.stroke_width(2),
        ))?
        .label(s.name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        c.draw_series(pts.iter().map(|(x, p)| {
            PathElement::new(
                vec![
                    (*x, bar_floor.map_or(p.min, |lo| p.min.max(lo))),
                    (*x, p.max),
                ],
                color,
            )
        }))?;
        c.draw_series(
            pts.iter()
                .map(|(x, p)| Circle::new((*x, p.median), 3, color.filled())),
        )?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// Horizontal bars, one per model (median, with a line from min to max).
/// Returns `false` (and writes nothing) when there is no bar.
pub fn bar_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    bars: &[(String, usize, Spread)],
) -> io::Result<bool> {
    let Some((_, hi)) = y_bounds(bars.iter().map(|(_, _, s)| s.max), false) else {
        return Ok(false);
    };
    wrap(path, draw_bars(path, title, x_desc, bars, hi))?;
    Ok(true)
}

fn draw_bars(
    path: &Path,
    title: &str,
    x_desc: &str,
    bars: &[(String, usize, Spread)],
    hi: f64,
) -> Drawn {
    let height = 120 + 40 * bars.len() as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = bars.len();
    let names: Vec<String> = bars.iter().map(|(name, _, _)| name.clone()).collect();
    let y_fmt = move |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 0.01 && i >= 0.0 {
            // Row 0 at the top.
            names.get(n - 1 - i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(150)
        .build_cartesian_2d(0.0..hi, -0.6..(n as f64 - 0.4))?;
    c.configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(n * 2)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&|x| si(*x))
        .x_desc(x_desc)
        .draw()?;
    for (i, (_, palette_index, s)) in bars.iter().enumerate() {
        let row = (n - 1 - i) as f64;
        let color = color(*palette_index);
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, row - 0.35), (s.median, row + 0.35)],
            color.mix(0.7).filled(),
        )))?;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(s.min, row), (s.max, row)],
            BLACK.stroke_width(2),
        )))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(v: &[f64]) -> Spread {
        Spread::of(v.iter().copied()).expect("values")
    }

    #[test]
    fn charts_write_svg_with_every_series_name() {
        let dir = std::env::temp_dir().join(format!("lab-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let series = vec![
            Series {
                name: "model-a".into(),
                color: 0,
                points: vec![(0, spread(&[1.0, 2.0])), (1, spread(&[3.0]))],
            },
            Series {
                name: "model-b".into(),
                color: 1,
                points: vec![(1, spread(&[10.0, 12.0, 11.0]))],
            },
        ];
        let labels = vec!["1".to_string(), "10".to_string()];
        for log_y in [false, true] {
            let path = dir.join(format!("lines-{log_y}.svg"));
            let chart = LineChart {
                title: "t",
                x_desc: "connections",
                x_labels: &labels,
                y_desc: "y",
                log_y,
                series: &series,
            };
            assert!(line_chart(&path, &chart).expect("drawn"));
            let svg = std::fs::read_to_string(&path).expect("svg written");
            assert!(svg.starts_with("<svg") && svg.contains("model-a") && svg.contains("model-b"));
        }
        let path = dir.join("bars.svg");
        let bars = vec![("model-a".to_string(), 0, spread(&[5.0, 6.0]))];
        assert!(bar_chart(&path, "t", "x", &bars).expect("drawn"));
        assert!(std::fs::read_to_string(&path)
            .expect("svg")
            .contains("model-a"));
        let empty = LineChart {
            title: "t",
            x_desc: "x",
            x_labels: &labels,
            y_desc: "y",
            log_y: false,
            series: &[],
        };
        assert!(!line_chart(&dir.join("empty.svg"), &empty).expect("no error"));
        assert!(!dir.join("empty.svg").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
