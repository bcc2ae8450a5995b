//! The pictures of a run: latency percentiles and throughput against the load of each step, drawn
//! with plotters into one SVG (text stays text, so the file is small and sharp at any size). An
//! earlier run given with `--compare` is drawn dashed under the same axes.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::Report;
use super::stats::StepResult;

/// Width and height of the picture, in pixels.
const SIZE: (u32, u32) = (1100, 440);
/// One colour per plotted percentile, in `Percentiles::named` order.
const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(100, 100, 100),
];

/// The SVG of `report`, with `earlier` overlaid when given.
pub fn svg(report: &Report, earlier: Option<&Report>) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        latency_chart(&left, report, earlier)?;
        throughput_chart(&right, report, earlier)?;
        root.present().map_err(draw_error)?;
    }
    Ok(text)
}

fn draw_error(error: impl std::fmt::Display) -> String {
    format!("cannot draw the plot: {error}")
}

/// A log axis over `values` with a little room on both sides (a single value gets a decade).
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if low > high {
        return 0.1..10.0;
    }
    (low / 1.5).max(1e-3)..(high * 1.5).max(low * 3.0)
}

fn loads(steps: &[StepResult]) -> impl Iterator<Item = f64> + '_ {
    steps.iter().map(|s| s.load.value())
}

/// The ticks of the load axis: every step's load (a log axis alone labels only powers of ten).
fn load_ticks(runs: &[&Report]) -> Vec<f64> {
    let mut ticks: Vec<f64> = runs.iter().flat_map(|r| loads(&r.steps)).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    ticks
}

/// 1-2-5 ticks inside `range` (e.g. 0.5, 1, 2, 5, 10 ms).
fn log_ticks(range: &std::ops::Range<f64>) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powi(range.start.log10().floor() as i32);
    while decade <= range.end {
        for factor in [1.0, 2.0, 5.0] {
            let tick = decade * factor;
            if range.contains(&tick) {
                ticks.push(tick);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn load_axis(report: &Report) -> &'static str {
    if report.is_open_loop() {
        "scheduled rate (requests/s)"
    } else {
        "concurrency (requests in flight)"
    }
}

fn latency_chart(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    report: &Report,
    earlier: Option<&Report>,
) -> Result<(), String> {
    let runs: Vec<&Report> = std::iter::once(report).chain(earlier).collect();
    let x = log_range(runs.iter().flat_map(|r| loads(&r.steps)));
    let y = log_range(runs.iter().flat_map(|r| {
        r.steps
            .iter()
            .flat_map(|s| s.headline().named().into_iter().map(|(_, v)| v))
    }));
    let caption = if report.is_open_loop() {
        "Latency (ms, from when each request was due)"
    } else {
        "Latency (ms, corrected as wrk does)"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            x.log_scale().with_key_points(load_ticks(&runs)),
            y.clone().log_scale().with_key_points(log_ticks(&y)),
        )
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc(load_axis(report))
        .y_desc("ms")
        .light_line_style(WHITE)
        .x_label_formatter(&|v| compact(*v))
        .y_label_formatter(&|v| compact(*v))
        .draw()
        .map_err(draw_error)?;
    for (index, name) in ["p50", "p90", "p99", "p99.9", "max"].iter().enumerate() {
        let points = |r: &Report| -> Vec<(f64, f64)> {
            r.steps
                .iter()
                .map(|s| (s.load.value(), s.headline().named()[index].1))
                .collect()
        };
        let before = earlier.map(points);
        measured(
            &mut chart,
            points(report),
            before,
            COLOURS[index],
            name,
            None,
        )?;
    }
    let uncorrected: Vec<(f64, f64)> = report
        .steps
        .iter()
        .map(|s| (s.load.value(), s.latency_ms.p99))
        .collect();
    dotted(
        &mut chart,
        uncorrected,
        COLOURS[2],
        "p99 from the send (uncorrected)",
    )?;
    legend(&mut chart)
}

fn throughput_chart(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    report: &Report,
    earlier: Option<&Report>,
) -> Result<(), String> {
    let runs: Vec<&Report> = std::iter::once(report).chain(earlier).collect();
    let x = log_range(runs.iter().flat_map(|r| loads(&r.steps)));
    let top = runs
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.throughput))
        .fold(1.0_f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput (answers/s)", ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.log_scale().with_key_points(load_ticks(&runs)), 0.0..top)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc(load_axis(report))
        .y_desc("answers/s")
        .light_line_style(WHITE)
        .x_label_formatter(&|v| compact(*v))
        .y_label_formatter(&|v| compact(*v))
        .draw()
        .map_err(draw_error)?;
    let points = |r: &Report| -> Vec<(f64, f64)> {
        r.steps
            .iter()
            .map(|s| (s.load.value(), s.throughput))
            .collect()
    };
    let before = earlier.map(points);
    let earlier_label = Some("earlier run (--compare)");
    measured(
        &mut chart,
        points(report),
        before,
        COLOURS[0],
        "this run",
        earlier_label,
    )?;
    if report.is_open_loop() {
        // The schedule: answers/s equal to the rate while the server keeps up.
        let ideal: Vec<(f64, f64)> = report
            .steps
            .iter()
            .map(|s| (s.load.value(), s.load.value()))
            .collect();
        dotted(&mut chart, ideal, COLOURS[4], "scheduled")?;
    }
    legend(&mut chart)
}

/// A measured series: a solid line through its points (legend `label`), and the earlier run's
/// dashed under it when given (legend `earlier_label`, when given).
fn measured<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    now: Vec<(f64, f64)>,
    earlier: Option<Vec<(f64, f64)>>,
    colour: RGBColor,
    label: &str,
    earlier_label: Option<&str>,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(now.clone(), colour.stroke_width(2)))
        .map_err(draw_error)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    chart
        .draw_series(now.iter().map(|p| Circle::new(*p, 3, colour.filled())))
        .map_err(draw_error)?;
    if let Some(earlier) = earlier {
        let drawn = chart
            .draw_series(DashedLineSeries::new(earlier, 6, 4, colour.into()))
            .map_err(draw_error)?;
        if let Some(label) = earlier_label {
            drawn
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
        }
    }
    Ok(())
}

/// A reference line, dotted: the uncorrected p99, the schedule.
fn dotted<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    label: &str,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    chart
        .draw_series(DashedLineSeries::new(points, 2, 4, colour.into()))
        .map_err(draw_error)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
    Ok(())
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(draw_error)
}

/// 1200 → "1.2k", 0.25 → "0.25".
pub fn compact(value: f64) -> String {
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    if value >= 1e6 {
        format!("{}M", trim(format!("{:.1}", value / 1e6)))
    } else if value >= 1e3 {
        format!("{}k", trim(format!("{:.1}", value / 1e3)))
    } else if value >= 1.0 {
        trim(format!("{value:.1}"))
    } else {
        trim(format!("{value:.3}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_are_compact() {
        assert_eq!(compact(1200.0), "1.2k");
        assert_eq!(compact(64.0), "64");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(compact(2_500_000.0), "2.5M");
    }

    #[test]
    fn log_ticks_are_one_two_five() {
        assert_eq!(log_ticks(&(0.3..30.0)), [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
        assert_eq!(log_ticks(&(2.0..7.0)), [2.0, 5.0]);
    }

    #[test]
    fn log_ranges_have_room_and_survive_one_value() {
        let one = log_range([4.0].into_iter());
        assert!(one.start < 4.0 && one.end > 4.0);
        let none = log_range(std::iter::empty());
        assert!(none.start > 0.0 && none.start < none.end);
    }
}
