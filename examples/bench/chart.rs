//! The latency-over-time chart (plotters, PNG), with the events marked.

use std::path::Path;

use plotters::prelude::*;

use crate::events::{Event, EventRun};

/// A TrueType font for the labels: plotters draws text with ab_glyph from
/// font bytes, so no system font library is needed, only a font file
/// (Debian: fonts-dejavu-core).
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn register_font() -> Result<(), String> {
    let bytes = FONT_PATHS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no DejaVuSans.ttf found (apt-get install fonts-dejavu-core)")?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
        .map_err(|_| "unusable font file".to_owned())
}

pub(crate) fn draw(run: &EventRun, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let end = run.windows.last().map_or(1.0, |w| w.start_s) + run.window.as_secs_f64();
    let top = run.windows.iter().map(|w| w.p999).max().unwrap_or(1).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "IAM pool, {}: latency per {} ms window; events marked",
                run.workload.name(),
                run.window.as_millis()
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("latency (µs)")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (kind, color) in [
        (Event::Rotation, RGBColor(90, 140, 220)),
        (Event::Reauth, RGBColor(240, 160, 40)),
        (Event::Recycle, RGBColor(200, 60, 60)),
        (Event::Reconnect, RGBColor(120, 60, 20)),
    ] {
        let name = match kind {
            Event::Rotation => "token rotation",
            Event::Reauth => "re-auth",
            Event::Recycle => "recycle (closed at deadline)",
            Event::Reconnect => "new connection",
        };
        let lines = run
            .events
            .iter()
            .filter(|(_, e)| *e == kind)
            .map(|(at, _)| PathElement::new(vec![(*at, 0.0), (*at, top)], color.mix(0.35)));
        chart
            .draw_series(lines)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    for (label, color, pick) in [
        ("p50", RGBColor(40, 40, 40), 0),
        ("p99", RGBColor(30, 120, 60), 1),
        ("p99.9", RGBColor(150, 40, 160), 2),
    ] {
        // One line per stretch of windows with operations: no line across
        // the rests.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for w in &run.windows {
            if w.ops == 0 {
                segments.push(Vec::new());
                continue;
            }
            let v = [w.p50, w.p99, w.p999][pick];
            let middle = w.start_s + run.window.as_secs_f64() / 2.0;
            segments.last_mut().expect("one").push((middle, v as f64));
        }
        let style = color.stroke_width(2);
        let mut first = true;
        for segment in segments.into_iter().filter(|s| !s.is_empty()) {
            let series = chart.draw_series(LineSeries::new(segment, style))?;
            if std::mem::take(&mut first) {
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
        }
    }
    legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
    root.present()?;
    Ok(())
}

/// The series' legend, at `position`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// The scale chart: set-up time of the whole set, and memory per
/// connection, against the number of connections (log scale).
pub(crate) fn draw_scale(
    rows: &[crate::scale::Row],
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    /// One panel: its area, title, unit, and the value it shows.
    type Panel<'a, A> = (&'a A, &'a str, &'a str, fn(&crate::scale::Row) -> f64);
    let panels: [Panel<'_, _>; 2] = [
        (&left, "set-up of the whole set", "ms", |r| {
            r.setup_ms.max(0.01)
        }),
        (&right, "resident memory per connection", "KiB", |r| {
            r.rss_kib_per_connection.max(0.01)
        }),
    ];
    for (area, title, unit, value) in panels {
        let top = rows.iter().map(value).fold(1.0, f64::max) * 2.0;
        let bottom = rows.iter().map(value).fold(f64::MAX, f64::min) / 2.0;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0.8f64..1500.0).log_scale(), (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("connections")
            .y_desc(unit)
            .label_style(("sans-serif", 14))
            .draw()?;
        for (kind, label, color) in [
            ("pool", "pool", RGBColor(200, 60, 60)),
            ("shared", "shared handle", RGBColor(30, 120, 60)),
        ] {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| (r.n as f64, value(r)))
                .collect();
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    root.present()?;
    Ok(())
}
