//! The report's charts, drawn with plotters into SVG text: response-time percentiles and
//! requests per second over the run, and the response-time distribution.
//!
//! Text goes into the SVG as `<text>` elements that the browser sets in its own sans-serif font.
//! plotters only estimates their size, with its built-in rule of thumb: its font features, which
//! read font files through system libraries (fontconfig, freetype) or need one embedded, are off.

use std::fmt;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Answer, Bucket, Percentiles, Second, BUCKETS, DECADE_STEPS, EDGES_US, SLA_BUCKET};
use crate::stats::{self, SLA};

/// Width of every chart, in pixels: the page's column.
pub const WIDTH_PX: u32 = 1200;
/// Height of every chart, in pixels.
pub const HEIGHT_PX: u32 = 420;

/// Lowest response time a log axis shows, in milliseconds: a loopback answer takes longer.
const AXIS_MIN_MS: f64 = 0.01;

/// Width of the strip right of the last second that holds the percentile chart's legend, as a
/// share of the run's length: the legend's 150 pixels in 1,100.
const LEGEND_STRIP: f64 = 0.16;

const FONT: &str = "sans-serif";
const LABEL_PX: u32 = 17;
const DESC_PX: u32 = 18;
const LINE_PX: u32 = 2;

const INK_BLUE: RGBColor = RGBColor(31, 119, 180);
const INK_ORANGE: RGBColor = RGBColor(230, 120, 20);
const INK_PURPLE: RGBColor = RGBColor(148, 83, 189);
const INK_GREY: RGBColor = RGBColor(110, 110, 110);
const INK_GREEN: RGBColor = RGBColor(44, 160, 44);
const INK_RED: RGBColor = RGBColor(214, 39, 40);

/// Why a chart could not be drawn (plotters' error, as text).
#[derive(Debug)]
pub struct ChartError(String);

impl fmt::Display for ChartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drawing a chart: {}", self.0)
    }
}

impl std::error::Error for ChartError {}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for ChartError {
    fn from(error: DrawingAreaErrorKind<E>) -> ChartError {
        ChartError(error.to_string())
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws into a new SVG document of the chart size.
fn svg(draw: impl FnOnce(&Area<'_>) -> Result<(), ChartError>) -> Result<String, ChartError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(text)
}

/// One line of the percentile chart: its label, its colour and the figure it draws.
type PercentileLine = (&'static str, RGBColor, fn(&Percentiles) -> u64);

/// The response-time lines of the percentile chart.
const PERCENTILE_LINES: [PercentileLine; 4] = [
    ("p50", INK_BLUE, |p| p.p50_us),
    ("p95", INK_ORANGE, |p| p.p95_us),
    ("p99", INK_PURPLE, |p| p.p99_us),
    ("max", INK_GREY, |p| p.max_us),
];

/// p50, p95, p99 and max of each second's requests on a log scale, with the SLA's line.
pub fn percentiles(seconds: &[Second]) -> Result<String, ChartError> {
    let sla_ms = ms(stats::micros(SLA));
    let all = || seconds.iter().filter_map(|second| second.latency);
    let highest_ms = all().map(|p| ms(p.max_us)).fold(sla_ms, f64::max);
    let lowest_ms = all().map(|p| ms(p.p50_us)).fold(sla_ms, f64::min);
    let y_range = (lowest_ms / 1.5).max(AXIS_MIN_MS)..highest_ms * 3.0;
    // The last second, then a strip on the right that holds the legend.
    let run_end = seconds.len().max(1) as f64;
    let x_end = run_end * (1.0 + LEGEND_STRIP);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_end, y_range.log_scale())?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first request (by start time)")
            .y_desc("response time, ms (log scale)")
            .x_label_formatter(&|&s| second_label(s, run_end))
            .y_label_formatter(&|v| ms_label(*v))
            .label_style((FONT, LABEL_PX))
            .axis_desc_style((FONT, DESC_PX))
            .light_line_style(WHITE)
            .draw()?;
        for (label, colour, figure) in PERCENTILE_LINES {
            let points = seconds.iter().enumerate().filter_map(|(index, second)| {
                let p = second.latency.as_ref()?;
                Some((index as f64, ms(figure(p)).max(AXIS_MIN_MS)))
            });
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(LINE_PX)))?
                .label(label)
                .legend(move |(x, y)| legend_line(x, y, colour));
        }
        let sla = [(0.0, sla_ms), (run_end, sla_ms)];
        chart
            .draw_series(DashedLineSeries::new(
                sla,
                8,
                6,
                INK_RED.stroke_width(LINE_PX),
            ))?
            .label("SLA: 250 ms")
            .legend(|(x, y)| legend_line(x, y, INK_RED));
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// The colour of each kind of answer, in [`Answer::ALL`]'s order.
const ANSWER_COLOURS: [RGBColor; 5] = [INK_GREEN, INK_BLUE, INK_ORANGE, INK_PURPLE, INK_RED];

/// Requests started each second: in all, by what came back (the kinds that occurred), and KO.
pub fn requests_per_second(seconds: &[Second]) -> Result<String, ChartError> {
    let highest = seconds.iter().map(Second::requests).max().unwrap_or(0);
    // Room above the highest line for the legend, which sits where the ramp starts.
    let y_end = (highest as f64 * 1.6).max(1.0);
    let x_end = seconds.len().max(1) as f64;
    let series = |count: fn(&Second) -> u64| {
        let points: Vec<(f64, f64)> = (seconds.iter().enumerate())
            .map(|(index, second)| (index as f64, count(second) as f64))
            .collect();
        points
    };
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_end, 0.0..y_end)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first request (by start time)")
            .y_desc("requests started per second")
            .x_label_formatter(&|s| format!("{s:.0}"))
            .y_label_formatter(&|n| format!("{n:.0}"))
            .label_style((FONT, LABEL_PX))
            .axis_desc_style((FONT, DESC_PX))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                series(Second::requests),
                INK_GREY.stroke_width(LINE_PX),
            ))?
            .label("all")
            .legend(|(x, y)| legend_line(x, y, INK_GREY));
        for (answer, colour) in Answer::ALL.into_iter().zip(ANSWER_COLOURS) {
            if seconds
                .iter()
                .all(|second| second.answers[answer.index()] == 0)
            {
                continue;
            }
            let points = (seconds.iter().enumerate())
                .map(|(index, second)| (index as f64, second.answers[answer.index()] as f64));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(LINE_PX)))?
                .label(answer.label())
                .legend(move |(x, y)| legend_line(x, y, colour));
        }
        if seconds.iter().any(|second| second.ko > 0) {
            let ko = series(|second| second.ko);
            chart
                .draw_series(DashedLineSeries::new(ko, 6, 4, BLACK.stroke_width(LINE_PX)))?
                .label("KO (a failed check or no answer)")
                .legend(|(x, y)| legend_line(x, y, BLACK));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Requests per response-time bucket, on log scales, with the band that counts against the SLA.
pub fn distribution(buckets: &[Bucket]) -> Result<String, ChartError> {
    assert_eq!(buckets.len(), BUCKETS, "every bucket, empty ones too");
    let filled = || (0..BUCKETS).filter(|&index| buckets[index].requests > 0);
    // From the decade of the first filled bucket to the one after the last, always showing the
    // SLA band's first buckets.
    let first = filled().next().unwrap_or(SLA_BUCKET).min(SLA_BUCKET);
    let last = filled()
        .next_back()
        .unwrap_or(SLA_BUCKET)
        .max(SLA_BUCKET + 3);
    let decade_start = match first {
        0 => 0,
        first => 1 + (first - 1) / DECADE_STEPS.len() * DECADE_STEPS.len(),
    };
    let (x_start, x_end) = (decade_start as i32, (last + 2).min(BUCKETS) as i32);
    let highest = buckets
        .iter()
        .map(|bucket| bucket.requests)
        .max()
        .unwrap_or(0);
    // Bars rise from half a request, so that a bucket of one shows on the log scale.
    let floor = 0.5;
    let y_end = (highest as f64 * 3.0).max(10.0);
    // Ticks at each decade (0.1 ms, 1 ms, ...) and at the SLA.
    let decades = (0..EDGES_US.len()).step_by(DECADE_STEPS.len());
    let mut ticks: Vec<i32> = (decades.map(|edge| edge + 1))
        .chain([SLA_BUCKET])
        .map(|index| index as i32)
        .filter(|index| (x_start..=x_end).contains(index))
        .collect();
    ticks.sort_unstable();
    svg(|root| {
        let x_axis = (x_start..x_end).with_key_points(ticks);
        let mut chart = ChartBuilder::on(root)
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x_axis, (floor..y_end).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("response time (log scale; each bar from its left edge to the next)")
            .y_desc("requests (log scale)")
            .x_label_formatter(&|&index| bucket_label(index))
            .y_label_formatter(&|n| format!("{n:.0}"))
            .label_style((FONT, LABEL_PX))
            .axis_desc_style((FONT, DESC_PX))
            .light_line_style(WHITE)
            .draw()?;
        let band = [(SLA_BUCKET as i32, floor), (x_end, y_end)];
        chart
            .draw_series([Rectangle::new(band, INK_RED.mix(0.12).filled())])?
            .label("250 ms or more: against the SLA")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 6), (x + 24, y + 6)], INK_RED.mix(0.3).filled())
            });
        let bars = (first..=last)
            .filter(|&index| buckets[index].requests > 0)
            .map(|index| {
                let (left, right) = (index as i32, index as i32 + 1);
                let top = buckets[index].requests as f64;
                let mut bar = Rectangle::new([(left, floor), (right, top)], INK_BLUE.filled());
                // A pixel between neighbours, so that equal bars stay apart.
                bar.set_margin(0, 0, 1, 0);
                bar
            });
        chart
            .draw_series(bars)?
            .label("requests")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], INK_BLUE.filled()));
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// The legend at `position`, over a white background.
fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), ChartError>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, LABEL_PX))
        .draw()?;
    Ok(())
}

fn legend_line(x: i32, y: i32, colour: RGBColor) -> PathElement<(i32, i32)> {
    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(LINE_PX + 1))
}

/// A second as an axis label, none in the legend's strip after `run_end`.
fn second_label(second: f64, run_end: f64) -> String {
    if second <= run_end {
        format!("{second:.0}")
    } else {
        String::new()
    }
}

/// The lower edge of bucket `index`, as an axis label.
fn bucket_label(index: i32) -> String {
    match usize::try_from(index) {
        Ok(0) => "0".to_string(),
        Ok(index) if index <= EDGES_US.len() => ms_label(ms(EDGES_US[index - 1])),
        _ => String::new(),
    }
}

/// A time in milliseconds as a short label: `0.1 ms`, `250 ms`, `1 s`.
fn ms_label(value_ms: f64) -> String {
    if value_ms >= 1_000.0 {
        format!("{} s", trimmed(value_ms / 1_000.0))
    } else {
        format!("{} ms", trimmed(value_ms))
    }
}

/// `value` with up to three decimals and no trailing zeros.
fn trimmed(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::report::{histogram, seconds};
    use crate::stats::Sample;

    /// Draws the three charts of `samples` and checks that each is one SVG document holding
    /// `texts` among its text elements.
    #[track_caller]
    fn check(samples: &[Sample], texts: [&[&str]; 3]) {
        let seconds = seconds(samples);
        let charts = [
            percentiles(&seconds),
            requests_per_second(&seconds),
            distribution(&histogram(samples)),
        ];
        for (chart, texts) in charts.into_iter().zip(texts) {
            let chart = chart.expect("a chart of any recording draws");
            assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
            assert_eq!(chart.matches("<svg").count(), 1);
            for text in texts {
                let element = format!(">\n{text}\n</text>");
                assert!(chart.contains(&element), "the chart labels {text}");
            }
        }
    }

    #[test]
    fn charts_of_nothing_and_of_a_few_requests() {
        check(&[], [&["SLA: 250 ms"], &["all"], &["250 ms", "requests"]]);
        let epoch = Instant::now();
        let sample = |at_ms, latency_ms, status, ok| {
            let started = epoch + Duration::from_millis(at_ms);
            Sample::new("x", started, Duration::from_millis(latency_ms), status, ok)
        };
        let samples = [
            sample(0, 1, Some(200), true),
            sample(1_500, 300, None, false),
            sample(2_100, 2, Some(404), true),
        ];
        let statuses = [
            "all",
            "200",
            "404",
            "no answer",
            "KO (a failed check or no answer)",
        ];
        check(&samples, [&["p50", "max"], &statuses, &["1 ms", "250 ms"]]);
    }

    #[test]
    fn axis_labels() {
        let cases: &[(i32, &str)] = &[
            (0, "0"),
            (1, "0.1 ms"),
            (11, "1 ms"),
            (SLA_BUCKET as i32, "250 ms"),
            (41, "1 s"),
            (61, "100 s"),
            (62, ""),
            (-1, ""),
        ];
        for &(index, expected) in cases {
            assert_eq!(bucket_label(index), expected, "bucket {index}");
        }
        assert_eq!(ms_label(0.0125), "0.013 ms");
        assert_eq!(ms_label(1_500.0), "1.5 s");
    }
}
