//! SVG plots of reports (plotters): throughput against concurrency from a sweep, and
//! latency percentiles of one report with its side-by-side baselines.

use std::path::Path;

use plotters::prelude::*;

use crate::harness::{BenchResult, Report};

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One named line of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend text.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// The label of a report's own line: its backend plus, when present, its `variant`
/// (or `hot_technique`) field (e.g. `postgres, combiner` against `postgres, none`).
fn label(report: &Report) -> String {
    let backend = report.get_str("backend").unwrap_or("ours");
    match report
        .get_str("variant")
        .or_else(|| report.get_str("hot_technique"))
    {
        Some(v) => format!("{backend}, {v}"),
        None => backend.to_owned(),
    }
}

/// The series of a concurrency sweep: `ops_per_sec` per label, and the baseline's
/// `baseline_ops_per_sec` (named by the report's `baseline` field, else "baseline").
pub fn sweep_series(points: &[(usize, Report)]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    let mut push = |name: String, x: f64, y: f64| match out.iter_mut().find(|s| s.name == name) {
        Some(s) => s.points.push((x, y)),
        None => out.push(Series {
            name,
            points: vec![(x, y)],
        }),
    };
    for (concurrency, report) in points {
        let x = *concurrency as f64;
        if let Some(y) = report.get_f64("ops_per_sec") {
            push(label(report), x, y);
        }
        if let Some(y) = report.get_f64("baseline_ops_per_sec") {
            let base = report.get_str("baseline").unwrap_or("baseline");
            // Each variant measures its own baseline beside it.
            let name = match report
                .get_str("variant")
                .or_else(|| report.get_str("hot_technique"))
            {
                Some(v) => format!("{base} (beside {v})"),
                None => base.to_owned(),
            };
            push(name, x, y);
        }
    }
    out
}

/// Throughput against concurrency (log-scaled x), one line per series.
pub fn throughput_svg(path: &Path, title: &str, series: &[Series]) -> BenchResult<()> {
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (860, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((0.9..max_x * 1.1).log_scale(), 0.0..max_y * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("concurrent tasks")
        .y_desc("operations per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    draw_lines(&mut chart, series)?;
    root.present()?;
    Ok(())
}

/// Draws each series as a line with dots, and the legend.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> BenchResult<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The percentiles a report may carry, as (label, field suffix).
const PERCENTILES: [(&str, &str); 4] = [
    ("p50", "p50_ms"),
    ("p90", "p90_ms"),
    ("p99", "p99_ms"),
    ("p99.9", "p999_ms"),
];

/// Latency series of one report: ours (`p50_ms`, ...) and every side-by-side
/// measurement that prints the same fields under a prefix (`raw_p50_ms`, `pg_p99_ms`,
/// `fuzzy_p99_ms`, ...). Empty when the report has fewer than two percentiles.
pub fn latency_series(report: &Report, prefixes: &[&str]) -> Vec<Series> {
    let mut out = Vec::new();
    for prefix in std::iter::once("").chain(prefixes.iter().copied()) {
        let points: Vec<(f64, f64)> = PERCENTILES
            .iter()
            .enumerate()
            .filter_map(|(i, (_, suffix))| {
                report
                    .get_f64(&format!("{prefix}{suffix}"))
                    .map(|v| (i as f64, v.max(0.001)))
            })
            .collect();
        if points.len() >= 2 {
            let name = if prefix.is_empty() {
                label(report)
            } else {
                prefix.trim_end_matches('_').to_owned()
            };
            out.push(Series { name, points });
        }
    }
    out
}

/// The prefixes of side-by-side latency figures in `report` (`pg_` for `pg_p99_ms`).
pub fn latency_prefixes(report: &Report) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in report.keys() {
        for (_, suffix) in PERCENTILES {
            if let Some(prefix) = key.strip_suffix(suffix) {
                if !prefix.is_empty() && !out.iter().any(|p| p == prefix) {
                    out.push(prefix.to_owned());
                }
            }
        }
    }
    out
}

/// Latency percentiles (log-scaled milliseconds), one line per series.
pub fn latency_svg(path: &Path, title: &str, series: &[Series]) -> BenchResult<()> {
    let max_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.01, f64::max);
    let min_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(max_y, f64::min);
    let root = SVGBackend::new(path, (860, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(
            -0.2..(PERCENTILES.len() as f64 - 0.8),
            (min_y * 0.7..max_y * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .x_labels(PERCENTILES.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.05 && i >= 0.0 {
                PERCENTILES
                    .get(i as usize)
                    .map(|p| p.0.to_owned())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    draw_lines(&mut chart, series)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_and_latency_plots_render() {
        let dir = std::env::temp_dir().join(format!("commerce-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let points: Vec<(usize, Report)> = [1usize, 4, 16, 64]
            .iter()
            .map(|&c| {
                let r = Report::new("inventory-hot", "postgres")
                    .field("variant", "combiner")
                    .field("ops_per_sec", 100.0 * c as f64)
                    .field("baseline", "pgbench");
                (c, r.baseline(50.0 * c as f64))
            })
            .collect();
        let series = sweep_series(&points);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].name, "postgres, combiner");
        assert_eq!(series[1].name, "pgbench (beside combiner)");
        assert_eq!(series[1].points[3], (64.0, 3200.0));
        let path = dir.join("sweep.svg");
        throughput_svg(&path, "inventory-hot", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("pgbench"));

        let report = Report::new("search-query", "tantivy")
            .field("p50_ms", 0.4)
            .field("p90_ms", 0.9)
            .field("p99_ms", 2.5)
            .field("pg_p50_ms", 2.0)
            .field("pg_p99_ms", 90.0)
            .field("raw_p50_ms", 0.35);
        let series = latency_series(&report, &["raw_", "pg_"]);
        // raw_ has one percentile only: not a line.
        assert_eq!(
            series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["tantivy", "pg"]
        );
        let path = dir.join("latency.svg");
        latency_svg(&path, "search-query", &series).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("p99"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
