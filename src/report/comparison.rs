//! The report section "Comparison with the reference release": its view model and its forest
//! plot of paired differences (new - reference) against the protocol's margins.
//!
//! Self-contained so the section can be added to or removed from a template as one block
//! (`{% if r.comparison %}`): the view is [`ComparisonView`] under `r.comparison`, the plot is
//! `plots.comparison` (inline SVG for HTML) and `plots/comparison.svg` (PDF and Markdown),
//! written only when the evidence holds a comparison. Every number comes from
//! `evidence.comparison` and the difference criteria.

use serde::Serialize;

use crate::report::escape::html_escape;
use crate::trace::Evidence;
use crate::trace::comparison::ComparisonEvidence;

use super::view::{NA, fmt_p, fmt3};

/// One paired difference in the table and the plot.
#[derive(Debug, Clone, Serialize)]
pub struct DifferenceRow {
    /// `overall` or `attribute=value`.
    pub unit: String,
    /// `Sensitivity`, `Specificity`, `AUROC`.
    pub metric: String,
    /// Cases in the class the difference is computed on (positives, negatives, or all).
    pub n: u64,
    /// Reference value.
    pub reference: String,
    /// New value.
    pub new: String,
    /// `new - reference` with its interval, e.g. `+0.012 (-0.030 to +0.055)`.
    pub difference: String,
    /// Exact McNemar p (proportions) or `n/a`.
    pub exact_p: String,
    /// Mid-p McNemar (proportions) or DeLong z-test p (AUROC).
    pub p: String,
    /// Interval method.
    pub method: String,
}

/// Flip counts in one scope.
#[derive(Debug, Clone, Serialize)]
pub struct FlipRow {
    /// `overall` or `attribute=value`.
    pub unit: String,
    /// Cases.
    pub n: u64,
    /// New false negatives.
    pub new_fn: u64,
    /// New false positives.
    pub new_fp: u64,
    /// New true positives.
    pub new_tp: u64,
    /// New true negatives.
    pub new_tn: u64,
}

/// One changed decision (the first ones, new false negatives first).
#[derive(Debug, Clone, Serialize)]
pub struct FlipCase {
    /// Case ID.
    pub case_id: String,
    /// `1` or `0`.
    pub label: String,
    /// Direction, in words.
    pub direction: String,
    /// Reference score and answer.
    pub reference: String,
    /// New score and answer.
    pub new: String,
}

/// The comparison section.
#[derive(Debug, Clone, Serialize)]
pub struct ComparisonView {
    /// Reference name (or its run ID).
    pub reference_name: String,
    /// Reference run ID.
    pub reference_run_id: String,
    /// Reference protocol version.
    pub reference_protocol_version: String,
    /// Reference results hash.
    pub reference_results_sha256: String,
    /// Reference model hash.
    pub reference_model_sha256: String,
    /// New model hash.
    pub new_model_sha256: String,
    /// Reference threshold.
    pub reference_threshold: String,
    /// Reference verdict.
    pub reference_verdict: String,
    /// Change-control plan (e.g. PCCP ID).
    pub plan: String,
    /// Modification type.
    pub modification: String,
    /// What changed.
    pub change_description: String,
    /// Matched cases.
    pub matched: u64,
    /// Cases left out (not evaluated by a model).
    pub excluded: usize,
    /// How criteria were decided.
    pub decision: String,
    /// Paired differences overall and per level.
    pub rows: Vec<DifferenceRow>,
    /// Flip counts overall and per level.
    pub flips: Vec<FlipRow>,
    /// Total changed decisions.
    pub flips_total: u64,
    /// Changes for the worse.
    pub flips_worse: u64,
    /// Changes for the better.
    pub flips_better: u64,
    /// The first changed cases (at most 25; all are in `flips.csv`).
    pub flip_cases: Vec<FlipCase>,
    /// Whether more changed cases exist than listed.
    pub flip_cases_truncated: bool,
}

const LISTED: usize = 25;

fn signed(v: f64) -> String {
    format!("{v:+.3}")
}

fn rows(c: &ComparisonEvidence) -> Vec<DifferenceRow> {
    let mut out = Vec::new();
    let scopes = std::iter::once(&c.statistics.overall).chain(&c.statistics.subgroups);
    for s in scopes {
        let unit = match (&s.attribute, &s.value) {
            (Some(a), Some(v)) => format!("{a}={v}"),
            _ => "overall".into(),
        };
        for (name, d) in [
            ("Sensitivity", s.sensitivity.as_ref()),
            ("Specificity", s.specificity.as_ref()),
        ] {
            if let Some(d) = d {
                out.push(DifferenceRow {
                    unit: unit.clone(),
                    metric: name.into(),
                    n: d.n,
                    reference: fmt3(Some(d.reference)),
                    new: fmt3(Some(d.new)),
                    difference: format!(
                        "{} ({} to {})",
                        signed(d.difference),
                        signed(d.lower),
                        signed(d.upper)
                    ),
                    exact_p: fmt_p(d.exact_p),
                    p: fmt_p(d.mid_p),
                    method: "Newcombe method 10; mid-p McNemar".into(),
                });
            }
        }
        if let Some(a) = &s.auroc {
            out.push(DifferenceRow {
                unit: unit.clone(),
                metric: "AUROC".into(),
                n: s.n,
                reference: fmt3(Some(a.reference)),
                new: fmt3(Some(a.new)),
                difference: if a.degenerate {
                    format!("{} (degenerate variance)", signed(a.difference))
                } else {
                    format!(
                        "{} ({} to {})",
                        signed(a.difference),
                        signed(a.lower),
                        signed(a.upper)
                    )
                },
                exact_p: NA.into(),
                p: a.p_value.map(fmt_p).unwrap_or_else(|| NA.into()),
                method: "paired DeLong".into(),
            });
        }
    }
    out
}

fn direction_words(d: crate::trace::comparison::FlipDirection) -> &'static str {
    use crate::trace::comparison::FlipDirection::*;
    match d {
        NewFalseNegative => "new false negative",
        NewFalsePositive => "new false positive",
        NewTruePositive => "new true positive",
        NewTrueNegative => "new true negative",
    }
}

/// Printed as the run ID of an in-run reference model (`comparison.reference_model`).
const IN_RUN: &str = "in this run, on the same cases";
/// Printed as the results hash of an in-run reference model.
const IN_RUN_RESULTS: &str = "none (its answers are reference/journal.jsonl in this bundle)";

/// The section's view, when the evidence holds a comparison.
pub fn build(ev: &Evidence) -> Option<ComparisonView> {
    let c = ev.comparison.as_ref()?;
    let r = &c.reference;
    let cc = c.change_control.as_ref();
    let total = c.statistics.overall.flips;
    let answer = |s: Option<f64>, a: &str| match s {
        Some(v) => format!("{v:.3} ({a})"),
        None => a.to_string(),
    };
    Some(ComparisonView {
        reference_name: r
            .name
            .clone()
            .or_else(|| r.run_id.clone())
            .unwrap_or_else(|| r.model_name.clone()),
        reference_run_id: r.run_id.clone().unwrap_or_else(|| IN_RUN.into()),
        reference_protocol_version: r.protocol_version.clone(),
        reference_results_sha256: r
            .results_sha256
            .clone()
            .unwrap_or_else(|| IN_RUN_RESULTS.into()),
        reference_model_sha256: r.model_sha256.clone().unwrap_or_else(|| NA.into()),
        new_model_sha256: ev.model.sha256.clone().unwrap_or_else(|| NA.into()),
        reference_threshold: format!("{}", r.threshold),
        reference_verdict: r.verdict.map_or(NA, |v| v.label()).into(),
        plan: cc.map(|c| c.plan.clone()).unwrap_or_else(|| NA.into()),
        modification: cc
            .map(|c| c.modification.clone())
            .unwrap_or_else(|| NA.into()),
        change_description: cc.and_then(|c| c.description.clone()).unwrap_or_default(),
        matched: c.matched_cases,
        excluded: c.excluded.len(),
        decision: c.decision.clone(),
        rows: rows(c),
        flips: c
            .flip_summary
            .iter()
            .map(|f| FlipRow {
                unit: f.unit.clone(),
                n: f.n,
                new_fn: f.counts.new_false_negatives,
                new_fp: f.counts.new_false_positives,
                new_tp: f.counts.new_true_positives,
                new_tn: f.counts.new_true_negatives,
            })
            .collect(),
        flips_total: total.total(),
        flips_worse: total.worse(),
        flips_better: total.total() - total.worse(),
        flip_cases: c
            .flips
            .iter()
            .take(LISTED)
            .map(|f| FlipCase {
                case_id: f.case_id.clone(),
                label: (f.label as u8).to_string(),
                direction: direction_words(f.direction).into(),
                reference: answer(f.reference_score, &f.reference_answer),
                new: answer(f.new_score, &f.new_answer),
            })
            .collect(),
        flip_cases_truncated: c.flips.len() > LISTED,
    })
}

/// One line of the forest plot: label, difference, interval, and the margin to clear.
struct PlotRow {
    label: String,
    difference: f64,
    lower: f64,
    upper: f64,
    margin: Option<f64>,
    verdict: Option<crate::trace::Verdict>,
}

fn plot_rows(ev: &Evidence) -> Vec<PlotRow> {
    let mut out = Vec::new();
    for cr in &ev.criteria {
        let Some(of) = cr.metric.difference_of() else {
            continue;
        };
        let metric = of.as_str();
        for o in &cr.observations {
            if let (Some(e), Some(l), Some(u)) = (o.estimate, o.lower, o.upper) {
                out.push(PlotRow {
                    label: format!("{} {} {}", cr.id, metric, o.unit),
                    difference: e,
                    lower: l,
                    upper: u,
                    margin: (cr.comparator == crate::protocol::Comparator::AtLeast)
                        .then_some(cr.goal),
                    verdict: Some(o.verdict),
                });
            }
        }
    }
    if out.is_empty()
        && let Some(c) = &ev.comparison
    {
        let s = &c.statistics.overall;
        for (name, d) in [
            ("sensitivity", &s.sensitivity),
            ("specificity", &s.specificity),
        ] {
            if let Some(d) = d {
                out.push(PlotRow {
                    label: format!("{name} overall"),
                    difference: d.difference,
                    lower: d.lower,
                    upper: d.upper,
                    margin: None,
                    verdict: None,
                });
            }
        }
    }
    out
}

/// The forest plot of paired differences against their margins, as SVG; empty without a
/// comparison. Hand-written SVG (no plotting library): one row per difference criterion
/// observation, the interval as a bar, the point as a dot, the margin as a dashed red tick,
/// zero as a grey line.
pub(crate) fn forest_svg(ev: &Evidence) -> String {
    use std::fmt::Write;
    if ev.comparison.is_none() {
        return String::new();
    }
    let rows = plot_rows(ev);
    let (w, label_w, top, row_h) = (820.0, 330.0, 60.0, 30.0);
    let h = top + row_h * rows.len() as f64 + 50.0;
    let mut lo = -0.1f64;
    let mut hi = 0.1f64;
    for r in &rows {
        lo = lo.min(r.lower).min(r.margin.unwrap_or(0.0));
        hi = hi.max(r.upper);
    }
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (lo - pad, hi + pad);
    let x0 = label_w + 10.0;
    let x1 = w - 20.0;
    let x = |v: f64| x0 + (v - lo) / (hi - lo) * (x1 - x0);
    let font = super::plots::PLOT_FONT;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{font}" font-size="15"><rect width="{w}" height="{h}" fill="white"/><text x="{cx}" y="26" font-size="19" text-anchor="middle">Paired differences (new - reference) with confidence interval; dashed: margin</text>"#,
        cx = w / 2.0
    );
    let _ = write!(
        s,
        r##"<line x1="{z}" y1="{t}" x2="{z}" y2="{b}" stroke="#999" stroke-width="1"/>"##,
        z = x(0.0),
        t = top - 10.0,
        b = h - 40.0
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64 + row_h / 2.0;
        let colour = match r.verdict {
            Some(crate::trace::Verdict::Pass) => "#1a7f37",
            Some(crate::trace::Verdict::Fail) => "#cf222e",
            Some(crate::trace::Verdict::NotEvaluable) => "#9a6700",
            None => "#333333",
        };
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{label}</text><line x1="{a}" y1="{y}" x2="{b}" y2="{y}" stroke="{colour}" stroke-width="2.5"/><circle cx="{p}" cy="{y}" r="4.5" fill="{colour}"/>"#,
            lx = label_w,
            ty = y + 5.0,
            label = html_escape(&r.label),
            a = x(r.lower),
            b = x(r.upper),
            p = x(r.difference),
        );
        if let Some(m) = r.margin {
            let _ = write!(
                s,
                r##"<line x1="{mx}" y1="{a}" x2="{mx}" y2="{b}" stroke="#cf222e" stroke-width="2" stroke-dasharray="4 3"/>"##,
                mx = x(m),
                a = y - 11.0,
                b = y + 11.0
            );
        }
    }
    let axis_y = h - 40.0;
    let _ = write!(
        s,
        r##"<line x1="{x0}" y1="{axis_y}" x2="{x1}" y2="{axis_y}" stroke="#333"/>"##
    );
    let step = nice_step((hi - lo) / 6.0);
    let mut t = (lo / step).ceil() * step;
    while t <= hi + 1e-12 {
        let _ = write!(
            s,
            r##"<line x1="{tx}" y1="{axis_y}" x2="{tx}" y2="{b}" stroke="#333"/><text x="{tx}" y="{ly}" text-anchor="middle">{t:+.2}</text>"##,
            tx = x(t),
            b = axis_y + 5.0,
            ly = axis_y + 22.0
        );
        t += step;
    }
    s.push_str("</svg>\n");
    s
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let n = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    n * mag
}
