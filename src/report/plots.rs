//! The report's plots, drawn with plotters as SVG: the ROC curve with the operating point, a
//! forest plot of sensitivity and specificity by subgroup, and a calibration plot.
//!
//! plotters measures text with ab_glyph and has no fallback font, so before drawing we
//! register Libertinus Serif from the fonts Typst bundles (`typst-assets`): the same bytes
//! on every machine, never a system font a fresh machine may lack. The SVG names that family,
//! which the embedded Typst compiler resolves from the same bundled fonts when it places the
//! plot in the PDF; a browser without the font substitutes a serif. Every value drawn comes
//! from [`Evidence`]; the output is a pure function of it (no clock, no randomness).

use std::sync::OnceLock;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::protocol::Metric;
use crate::stats::{Estimate, SubgroupResult};
use crate::trace::Evidence;

/// Font family the plots use (registered from the Typst bundled fonts).
pub(crate) const PLOT_FONT: &str = "Libertinus Serif";

/// The rendered plots, SVG source each.
#[derive(Debug, Clone)]
pub struct Plots {
    /// ROC curve with the operating point.
    pub roc: String,
    /// Forest plot of sensitivity and specificity by subgroup.
    pub forest: String,
    /// Calibration plot.
    pub calibration: String,
}

impl Plots {
    /// `(file name under plots/, svg)` pairs.
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            ("roc.svg", &self.roc),
            ("forest.svg", &self.forest),
            ("calibration.svg", &self.calibration),
        ]
    }
}

fn register_fonts() -> crate::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut regular = None;
        let mut bold = None;
        for data in typst_assets::fonts() {
            let Some(font) = typst::text::Font::new(typst::foundations::Bytes::new(data), 0) else {
                continue;
            };
            let info = font.info();
            if info.family != PLOT_FONT || info.variant.style != typst::text::FontStyle::Normal {
                continue;
            }
            match info.variant.weight.to_number() {
                400 => regular = Some(data),
                700 => bold = Some(data),
                _ => {}
            }
        }
        let regular = regular.ok_or("Libertinus Serif Regular is not in typst-assets")?;
        plotters::style::register_font(PLOT_FONT, FontStyle::Normal, regular)
            .map_err(|_| "cannot parse Libertinus Serif Regular".to_string())?;
        plotters::style::register_font(PLOT_FONT, FontStyle::Bold, bold.unwrap_or(regular))
            .map_err(|_| "cannot parse Libertinus Serif Bold".to_string())?;
        Ok(())
    })
    .clone()
    .map_err(|e| crate::Error::Internal(format!("plot font: {e}")))
}

fn err<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> crate::Error + '_ {
    move |e| crate::Error::Internal(format!("drawing the {what} plot: {e:?}"))
}

const BLUE: RGBColor = RGBColor(31, 87, 160);
const ORANGE: RGBColor = RGBColor(200, 90, 20);
const GREY: RGBColor = RGBColor(150, 150, 150);

/// Draws every plot for an evidence record.
pub fn render(ev: &Evidence) -> crate::Result<Plots> {
    register_fonts()?;
    Ok(Plots {
        roc: roc(ev)?,
        forest: forest(ev)?,
        calibration: calibration(ev)?,
    })
}

fn font(size: f64) -> TextStyle<'static> {
    (PLOT_FONT, size).into_font().into()
}

/// A captioned chart over the unit square with the mesh and axis labels both square plots
/// (ROC and calibration) share.
fn unit_square_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    what: &'static str,
) -> crate::Result<
    ChartContext<
        'a,
        SVGBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, font(20.0))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(58)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(err(what))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(font(16.0))
        .axis_desc_style(font(17.0))
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .light_line_style(WHITE)
        .draw()
        .map_err(err(what))?;
    Ok(chart)
}

fn roc(ev: &Evidence) -> crate::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (460, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err("ROC"))?;
        let auc = ev.statistics.overall.auroc.as_ref().map(|a| a.estimate);
        let caption = match auc {
            Some(a) if a.is_finite() => format!("ROC curve (AUROC {a:.3})"),
            _ => "ROC curve (AUROC n/a)".into(),
        };
        let mut chart = unit_square_chart(
            &root,
            &caption,
            "1 - specificity (false positive rate)",
            "Sensitivity (true positive rate)",
            "ROC",
        )?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                GREY.stroke_width(1),
            ))
            .map_err(err("ROC"))?;
        let pts: Vec<(f64, f64)> = ev
            .curves
            .roc
            .iter()
            .filter(|p| p.fpr.is_finite() && p.tpr.is_finite())
            .map(|p| (p.fpr, p.tpr))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
            .map_err(err("ROC"))?
            .label("ROC")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE.stroke_width(2)));
        let m = &ev.statistics.overall;
        if let (Some(se), Some(sp)) = (&m.sensitivity, &m.specificity) {
            let op = (1.0 - sp.estimate, se.estimate);
            chart
                .draw_series([Circle::new(op, 6, RED.filled())])
                .map_err(err("ROC"))?
                .label(format!(
                    "operating point (threshold {:.3})",
                    ev.statistics.threshold
                ))
                .legend(|(x, y)| Circle::new((x + 9, y), 5, RED.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(font(15.0))
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .draw()
            .map_err(err("ROC"))?;
        root.present().map_err(err("ROC"))?;
    }
    Ok(svg)
}

fn calibration(ev: &Evidence) -> crate::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (460, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err("calibration"))?;
        let mut chart = unit_square_chart(
            &root,
            "Calibration (10 equal-width score bins)",
            "Mean score in bin",
            "Observed fraction positive",
            "calibration",
        )?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], GREY))
            .map_err(err("calibration"))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], GREY));
        let pts: Vec<(f64, f64, u64)> = ev
            .curves
            .calibration
            .iter()
            .filter_map(|b| match (b.mean_score, b.observed) {
                (Some(s), Some(o)) if s.is_finite() && o.is_finite() => Some((s, o, b.n)),
                _ => None,
            })
            .collect();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(s, o, _)| (s, o)),
                BLUE.stroke_width(2),
            ))
            .map_err(err("calibration"))?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(s, o, _)| Circle::new((s, o), 4, BLUE.filled())),
            )
            .map_err(err("calibration"))?
            .label("observed (bins with cases)")
            .legend(|(x, y)| Circle::new((x + 9, y), 4, BLUE.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(font(15.0))
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .draw()
            .map_err(err("calibration"))?;
        root.present().map_err(err("calibration"))?;
    }
    Ok(svg)
}

struct Row {
    label: String,
    small: bool,
    sens: Option<Estimate>,
    spec: Option<Estimate>,
}

fn row_of(s: &SubgroupResult) -> Row {
    Row {
        label: format!(
            "{}={} (n={}){}",
            s.attribute,
            s.value,
            s.n,
            if s.small { " small" } else { "" }
        ),
        small: s.small,
        sens: s.metrics.sensitivity.clone(),
        spec: s.metrics.specificity.clone(),
    }
}

/// The distinct goals of the criteria on `metric` (sorted), drawn as acceptance thresholds.
fn threshold_goals(ev: &Evidence, metric: Metric) -> Vec<f64> {
    let mut goals: Vec<f64> = ev
        .criteria
        .iter()
        .filter(|c| c.metric == metric && c.goal.is_finite() && (0.0..=1.0).contains(&c.goal))
        .map(|c| c.goal)
        .collect();
    goals.sort_by(f64::total_cmp);
    goals.dedup();
    goals
}

fn forest(ev: &Evidence) -> crate::Result<String> {
    let st = &ev.statistics;
    let mut rows = vec![Row {
        label: format!("Overall (n={})", st.n),
        small: false,
        sens: st.overall.sensitivity.clone(),
        spec: st.overall.specificity.clone(),
    }];
    rows.extend(st.subgroups.iter().map(row_of));
    let n = rows.len() as i32;
    let height = (100 + 30 * rows.len()) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err("forest"))?;
        let root = root
            .titled(
                "Sensitivity and specificity by subgroup (point estimate and confidence interval)",
                font(20.0),
            )
            .map_err(err("forest"))?;
        let (left, right) = root.split_horizontally(540);
        let panels = [
            (left, "Sensitivity", 290u32, true),
            (right, "Specificity", 0u32, false),
        ];
        for (area, name, label_w, is_sens) in panels {
            let mut chart = ChartBuilder::on(&area)
                .margin(8)
                .margin_right(if is_sens { 28 } else { 14 })
                .x_label_area_size(46)
                .y_label_area_size(label_w)
                .build_cartesian_2d(0f64..1f64, (0..n - 1).into_segmented())
                .map_err(err("forest"))?;
            let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
            let fmt_y = move |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) => labels
                    .get((n - 1 - *i) as usize)
                    .cloned()
                    .unwrap_or_default(),
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .x_desc(name)
                .label_style(font(16.0))
                .axis_desc_style(font(17.0))
                .x_labels(6)
                .x_label_formatter(&|v| format!("{v:.1}"))
                .y_labels(rows.len())
                .y_label_formatter(&fmt_y)
                .disable_y_mesh()
                .light_line_style(WHITE)
                .draw()
                .map_err(err("forest"))?;
            let overall = if is_sens {
                &rows[0].sens
            } else {
                &rows[0].spec
            };
            if let Some(o) = overall {
                chart
                    .draw_series([PathElement::new(
                        [
                            (o.estimate, SegmentValue::Exact(0)),
                            (o.estimate, SegmentValue::Last),
                        ],
                        GREY.stroke_width(1),
                    )])
                    .map_err(err("forest"))?;
            }
            // The acceptance thresholds on this metric (one dashed line per distinct goal).
            let metric = if is_sens {
                Metric::Sensitivity
            } else {
                Metric::Specificity
            };
            for goal in threshold_goals(ev, metric) {
                chart
                    .draw_series([plotters::element::DashedPathElement::new(
                        [(goal, SegmentValue::Exact(0)), (goal, SegmentValue::Last)],
                        5,
                        4,
                        RED.stroke_width(2),
                    )])
                    .map_err(err("forest"))?;
            }
            for (k, r) in rows.iter().enumerate() {
                let e = if is_sens { &r.sens } else { &r.spec };
                let Some(e) = e else { continue };
                if !(e.estimate.is_finite() && e.lower.is_finite() && e.upper.is_finite()) {
                    continue;
                }
                let y = SegmentValue::CenterOf(n - 1 - k as i32);
                let colour = if r.small {
                    GREY
                } else if is_sens {
                    BLUE
                } else {
                    ORANGE
                };
                chart
                    .draw_series([PathElement::new(
                        [(e.lower, y.clone()), (e.upper, y.clone())],
                        colour.stroke_width(2),
                    )])
                    .map_err(err("forest"))?;
                let marker = if k == 0 { 6 } else { 4 };
                chart
                    .draw_series([Circle::new((e.estimate, y), marker, colour.filled())])
                    .map_err(err("forest"))?;
            }
        }
        root.present().map_err(err("forest"))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_bundled_font_and_are_deterministic() {
        let ev = crate::testing::sample::sample_evidence();
        let a = render(&ev).unwrap();
        let b = render(&ev).unwrap();
        assert_eq!(a.roc, b.roc);
        assert_eq!(a.forest, b.forest);
        for (name, svg) in a.files() {
            assert!(svg.starts_with("<svg"), "{name}");
            assert!(svg.contains("font-family=\"Libertinus Serif\""), "{name}");
        }
        // The forest plot labels every subgroup level, and the ROC names the operating point.
        assert!(a.forest.contains("age_band=18-39 (n=24) small"));
        assert!(a.forest.contains("Overall (n=400)"));
        // The acceptance threshold of the sensitivity criterion is drawn: a dashed red line.
        assert_eq!(threshold_goals(&ev, Metric::Sensitivity), vec![0.80]);
        assert_eq!(threshold_goals(&ev, Metric::Specificity), vec![0.90]);
        assert!(a.forest.contains("#FF0000"), "no red threshold line");
        assert!(a.roc.contains("operating point (threshold 0.500)"));
        assert!(a.roc.contains("AUROC 0.941"));
    }
}
