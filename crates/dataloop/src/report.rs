//! Statistics (issue item 8; seed ¶64): the history of triggers, training and evaluation as a
//! text table, and an SVG plot of ADE/FDE over model versions beside constant velocity.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::registry::Registry;

/// The registry as a text table, one line per model version.
pub fn history_table(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>3} {:<20} {:<9} {:<18} {:>6} {:>6} {:<11} {:>4} {:>7} {:>7} {:>7} {:>7} {:>6} {:<8}",
        "ver",
        "fired_at",
        "trigger",
        "rule",
        "clips",
        "train",
        "mode",
        "wh_v",
        "ade_m",
        "fde_m",
        "cv_ade",
        "cv_fde",
        "miss",
        "promoted"
    );
    for v in &registry.versions {
        let champion = if registry.champion == Some(v.version) {
            " *"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:>3} {:<20} {:<9} {:<18} {:>6} {:>6} {:<11} {:>4} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>6.3} {:<8}",
            v.version,
            v.trigger.fired_at.get(..19).unwrap_or(&v.trigger.fired_at),
            v.trigger.kind,
            v.trigger.rule.as_deref().unwrap_or("-"),
            v.trigger.clips,
            v.train_windows,
            v.mode.as_str(),
            v.warehouse_version,
            v.metrics.ade_m,
            v.metrics.fde_m,
            v.metrics.cv_ade_m,
            v.metrics.cv_fde_m,
            v.metrics.miss_rate,
            format!("{}{champion}", if v.promoted { "yes" } else { "no" }),
        );
    }
    if let Some(c) = registry.champion_record() {
        let _ = writeln!(
            out,
            "champion: v{} (* above); pass rate per category on {} eval windows:",
            c.version, c.metrics.windows
        );
        for (cat, p) in &c.metrics.per_category {
            let _ = writeln!(
                out,
                "  {cat:<13} {:>4} windows  model {:>5.1}%  cv {:>5.1}%",
                p.windows,
                100.0 * p.pass_rate,
                100.0 * p.cv_pass_rate
            );
        }
    } else {
        out.push_str("champion: none (constant velocity)\n");
    }
    out
}

/// Draws ADE and FDE per model version, with constant velocity on the same windows, as SVG.
///
/// # Errors
/// [`Error::Plot`] when drawing or writing fails.
pub fn plot(registry: &Registry, path: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Plot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let versions = &registry.versions;
    let max_x = versions.last().map_or(1, |v| v.version).max(1);
    let max_y = versions
        .iter()
        .flat_map(|v| [v.metrics.fde_m, v.metrics.cv_fde_m])
        .fold(1.0_f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "dataloop: displacement error on the evaluation split",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5_f64..f64::from(max_x) + 0.5, 0.0..max_y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("model version (filled: promoted to champion)")
        .x_label_formatter(&|x| format!("v{x:.0}"))
        .y_desc("metres")
        .x_labels(usize::try_from(max_x).unwrap_or(10).min(20))
        .draw()
        .map_err(|e| err(&e))?;
    type Series = (
        &'static str,
        fn(&crate::registry::ModelVersion) -> f64,
        RGBColor,
    );
    let series: [Series; 4] = [
        ("model ADE", |v| v.metrics.ade_m, BLUE),
        ("model FDE", |v| v.metrics.fde_m, RED),
        ("const-vel ADE", |v| v.metrics.cv_ade_m, CYAN),
        ("const-vel FDE", |v| v.metrics.cv_fde_m, MAGENTA),
    ];
    for (name, f, color) in series {
        let points: Vec<(f64, f64)> = versions
            .iter()
            .map(|v| (f64::from(v.version), f(v)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(versions.iter().zip(&points).map(|(v, &p)| {
                let style = if v.promoted {
                    color.filled()
                } else {
                    color.stroke_width(2)
                };
                Circle::new(p, 4, style)
            }))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes `text` (which ends with its own newline) to stdout; a closed pipe is not an error
/// ([`svckit::cli::stdout_line`]).
///
/// # Errors
/// Other write errors.
pub fn out(text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    svckit::cli::stdout_line(text.strip_suffix('\n').unwrap_or(text)).context("writing to stdout")
}
