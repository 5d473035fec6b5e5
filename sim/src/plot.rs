//! SVG plots of runs (`--svg DIR`), drawn with `plotters`' SVG backend into strings.
//!
//! - [`utilisation_svg`]: allocated share of the online GPUs over time, one line per run;
//! - [`wait_cdf_svg`]: the distribution of waits from submit to first start, one line per
//!   run, on a log time axis (a wait of 0 is drawn at 1 s); jobs never started keep a curve
//!   below 100%;
//! - [`comparison_svg`]: bars side by side: wait p95 and p99, GPU utilisation, and jobs
//!   rejected or never started, per run.
//!
//! Plots are pure functions of the summaries (no IO; the binary writes the files), so the
//! same seed gives the same SVG, byte for byte.

use plotters::backend::SVGBackend;
use plotters::prelude::*;

use crate::run::{quantile, RunSummary};

/// Plot size in pixels.
const SIZE: (u32, u32) = (900, 520);
/// Most points of a CDF line.
const CDF_POINTS: usize = 400;
/// Colours of runs, in order: blue, orange, green, red, purple, brown.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// A run's legend label: `baseline (best-fit)`.
pub fn label(run: &RunSummary) -> String {
    format!("{} ({})", run.label, run.policy)
}

fn draw_error<E: std::fmt::Debug>(e: E) -> String {
    format!("plot: {e:?}")
}

/// Utilisation over time.
pub fn utilisation_svg(title: &str, runs: &[&RunSummary]) -> Result<String, String> {
    let lines: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            r.series_pct
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let mid_ms =
                        r.series_start_ms as f64 + (i as f64 + 0.5) * r.series_bucket_ms as f64;
                    p.map(|p| (mid_ms / 3_600_000.0, p))
                })
                .collect()
        })
        .collect();
    let x_max = lines
        .iter()
        .flatten()
        .map(|p| p.0)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let x_min = lines
        .iter()
        .flatten()
        .map(|p| p.0)
        .fold(x_max, f64::min)
        .min(x_max - 1.0)
        .max(0.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(x_min..x_max, 0f64..100f64)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("time (hours)")
            .y_desc("GPUs allocated (% of online)")
            .draw()
            .map_err(draw_error)?;
        draw_lines(&mut chart, runs, lines)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// One line per run, coloured in order, with the runs' legend in the lower right.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    runs: &[&RunSummary],
    lines: Vec<Vec<(f64, f64)>>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (run, points)) in runs.iter().zip(lines).enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(draw_error)?
            .label(label(run))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)
}

/// The waits' distribution.
pub fn wait_cdf_svg(title: &str, runs: &[&RunSummary]) -> Result<String, String> {
    let max_s = runs
        .iter()
        .filter_map(|r| r.all.waits_ms.last())
        .map(|&w| w as f64 / 1_000.0)
        .fold(10.0f64, f64::max);
    let lines: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            let waits = &r.all.waits_ms;
            let accepted = (r.all.started + r.all.never_started).max(1) as f64;
            if waits.is_empty() {
                return Vec::new();
            }
            // A step function: flat until the next wait, then up.
            let mut points: Vec<(f64, f64)> = vec![(1.0, -1.0)];
            let n = waits.len().min(CDF_POINTS);
            for k in 1..=n {
                let q = k as f64 / n as f64;
                let w = quantile(waits, q);
                let x = (w as f64 / 1_000.0).max(1.0);
                let below = waits.partition_point(|&v| v <= w) as f64;
                let last = points.last().expect("not empty").1;
                points.push((x, last));
                points.push((x, 100.0 * below / accepted));
            }
            points.push((max_s, points.last().expect("not empty").1));
            points
        })
        .collect();
    // Zoom in on the curves: the y axis starts at the lowest share of jobs that did not wait,
    // rounded down to 10%.
    let y_min = lines
        .iter()
        .filter_map(|points| points.get(2).map(|p| p.1))
        .fold(100.0f64, f64::min);
    let y_min = ((y_min / 10.0).floor() * 10.0).clamp(0.0, 90.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (1f64..max_s).log_scale().with_key_points(
                    WAIT_TICKS_S
                        .iter()
                        .copied()
                        .filter(|&t| t <= max_s)
                        .collect::<Vec<f64>>(),
                ),
                y_min..100f64,
            )
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("wait from submit to start (seconds, log; 0 drawn at 1)")
            .y_desc("jobs started within (% of accepted)")
            .x_label_formatter(&|x| human_seconds(*x))
            .draw()
            .map_err(draw_error)?;
        draw_lines(&mut chart, runs, lines)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Ticks of the wait axis: 1 s, 10 s, 1 min, 10 min, 1 h, 6 h, 1 d, 1 w, 4 w.
const WAIT_TICKS_S: [f64; 9] = [
    1.0,
    10.0,
    60.0,
    600.0,
    3_600.0,
    21_600.0,
    86_400.0,
    604_800.0,
    2_419_200.0,
];

fn human_seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3_600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.0} h", s / 3_600.0)
    } else if s < 604_800.0 {
        format!("{:.0} d", s / 86_400.0)
    } else {
        format!("{:.0} w", s / 604_800.0)
    }
}

/// A group of bars: one bar per run.
struct Group {
    name: String,
    values: Vec<f64>,
}

/// Bars, grouped: every job and each tenant side by side for wait p95 and p99 (hours) and
/// jobs rejected or never started; GPU utilisation (%) per run.
pub fn comparison_svg(title: &str, runs: &[&RunSummary]) -> Result<String, String> {
    let hours = |ms: u64| ms as f64 / 3_600_000.0;
    let mut tenants: Vec<&str> = Vec::new();
    for r in runs {
        for t in &r.tenants {
            if !tenants.contains(&t.tenant.as_str()) {
                tenants.push(&t.tenant);
            }
        }
    }
    let by_tenant = |metric: &dyn Fn(&crate::run::TenantSummary) -> f64| -> Vec<Group> {
        let mut groups = vec![Group {
            name: "all jobs".into(),
            values: runs.iter().map(|r| metric(&r.all)).collect(),
        }];
        for t in &tenants {
            groups.push(Group {
                name: t.to_string(),
                values: runs
                    .iter()
                    .map(|r| {
                        r.tenants
                            .iter()
                            .find(|x| x.tenant == *t)
                            .map_or(0.0, metric)
                    })
                    .collect(),
            });
        }
        groups
    };
    let panels: [(&str, Vec<Group>); 4] = [
        (
            "wait p95 (hours)",
            by_tenant(&|t| t.wait().map_or(0.0, |w| hours(w.p95_ms))),
        ),
        (
            "wait p99 (hours)",
            by_tenant(&|t| t.wait().map_or(0.0, |w| hours(w.p99_ms))),
        ),
        (
            "GPUs (% of online)",
            vec![
                Group {
                    name: "allocated".into(),
                    values: runs
                        .iter()
                        .map(|r| r.utilisation_pct.unwrap_or(0.0))
                        .collect(),
                },
                Group {
                    name: "unallocated while jobs wait".into(),
                    values: runs
                        .iter()
                        .map(|r| r.unallocated_pct.unwrap_or(0.0))
                        .collect(),
                },
            ],
        ),
        (
            "jobs rejected or never started",
            by_tenant(&|t| (t.rejected + t.never_started) as f64),
        ),
    ];
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (SIZE.0 + 100, SIZE.1 + 120)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(draw_error)?;
        let (legend, body) = root.split_vertically(28);
        let font = ("sans-serif", 13).into_font();
        let mut x = 20;
        for (r, run) in runs.iter().enumerate() {
            let text = label(run);
            legend
                .draw(&Rectangle::new([(x, 8), (x + 14, 22)], colour(r).filled()))
                .map_err(draw_error)?;
            legend
                .draw(&Text::new(text.clone(), (x + 20, 9), font.clone()))
                .map_err(draw_error)?;
            x += 40 + 8 * text.chars().count() as i32;
        }
        for (area, (name, groups)) in body.split_evenly((2, 2)).iter().zip(panels) {
            bar_panel(area, name, &groups, runs)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// One panel of grouped bars.
fn bar_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    name: &str,
    groups: &[Group],
    runs: &[&RunSummary],
) -> Result<(), String> {
    let n_groups = groups.len().max(1);
    let n_runs = runs.len().max(1);
    let top = groups
        .iter()
        .flat_map(|g| g.values.iter().copied())
        .fold(0.0f64, f64::max);
    let top = if top <= 0.0 { 1.0 } else { top * 1.25 };
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d((0..n_groups - 1).into_segmented(), 0f64..top)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n_groups)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < groups.len() => groups[*i].name.clone(),
            _ => String::new(),
        })
        .draw()
        .map_err(draw_error)?;
    // Bars share each group's segment: pixel margins place run `r` in its slot.
    let segment_px = chart.plotting_area().dim_in_pixel().0 as f64 / n_groups as f64;
    let slot_px = segment_px * 0.8 / n_runs as f64;
    for r in 0..runs.len() {
        let c = colour(r);
        let left = (segment_px * 0.1 + slot_px * r as f64).round() as u32;
        let right = (segment_px - segment_px * 0.1 - slot_px * (r + 1) as f64).round() as u32;
        let bars = groups.iter().enumerate().map(move |(g, group)| {
            let v = group.values.get(r).copied().unwrap_or(0.0);
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(g), 0.0),
                    (SegmentValue::Exact(g + 1), v),
                ],
                c.filled(),
            );
            bar.set_margin(0, 0, left, right);
            bar
        });
        chart.draw_series(bars).map_err(draw_error)?;
    }
    if n_runs <= 4 && n_groups * n_runs <= 16 {
        // Values above the bars when they fit.
        let texts = groups.iter().enumerate().flat_map(|(g, group)| {
            group.values.iter().enumerate().map(move |(r, &v)| {
                let x = segment_px * (0.1 - 0.5) + slot_px * (r as f64 + 0.5);
                (g, x, v)
            })
        });
        let style = ("sans-serif", 11).into_font();
        let elements: Vec<_> = texts
            .map(|(g, dx, v)| {
                EmptyElement::at((SegmentValue::CenterOf(g), v))
                    + Text::new(format_value(v), (dx as i32 - 8, -14), style.clone())
            })
            .collect();
        chart.draw_series(elements).map_err(draw_error)?;
    }
    Ok(())
}

fn format_value(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
