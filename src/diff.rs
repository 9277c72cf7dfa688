//! `medgate diff BUNDLE_A BUNDLE_B`: what differs between two evidence bundles.
//!
//! A consumer beside the stages (it reads bundles, it writes nothing): the identity of each
//! bundle (protocol ID, version and text, model hash, golden-set root, medgate version,
//! verdict), a line diff of the two protocol texts, every metric overall and per subgroup
//! level side by side, every criterion's verdict, and, when the two case tables hold the same
//! cases (case ID, image hash and label), the paired differences B - A of the release
//! comparison ([`crate::stats::compare`]: Newcombe method 10, exact and mid-p McNemar, paired
//! DeLong) with the flip counts. B is read as the newer bundle.
//!
//! Neither bundle is verified here: run `medgate verify` on each first (the text output says
//! so).

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::protocol::Metric;
use crate::report::escape::html_escape;
use crate::stats::Metrics;
use crate::trace::Evidence;
use crate::trace::analysis::CaseRow;
use crate::trace::bundle::{CASES_FILE, EVIDENCE_FILE, PROTOCOL_FILE, read_cases};
use crate::trace::comparison::{self, ComparisonEvidence, ReferenceCases, ReferenceIdentity};

/// One identity field of the two bundles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// Field name, e.g. `model.sha256`.
    pub field: String,
    /// Value in A.
    pub a: String,
    /// Value in B.
    pub b: String,
    /// Whether they are equal.
    pub same: bool,
}

/// One metric in one scope, in both bundles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDiff {
    /// `overall` or `attribute=value`.
    pub unit: String,
    /// The metric.
    pub metric: Metric,
    /// Estimate in A.
    pub a: Option<f64>,
    /// Estimate in B.
    pub b: Option<f64>,
    /// `b - a` (unpaired point difference).
    pub difference: Option<f64>,
    /// Paired interval of `b - a` when the cases match (sensitivity, specificity, AUROC).
    pub paired_lower: Option<f64>,
    /// Upper bound of the paired interval.
    pub paired_upper: Option<f64>,
    /// Paired p-value (mid-p McNemar, DeLong z-test).
    pub paired_p: Option<f64>,
}

/// One criterion's verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriterionDiff {
    /// Criterion ID.
    pub id: String,
    /// Verdict in A (`None` when A has no such criterion).
    pub a: Option<String>,
    /// Verdict in B.
    pub b: Option<String>,
}

/// One line of the protocol-text diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineDiff {
    /// `' '` same, `'-'` only in A, `'+'` only in B.
    pub op: char,
    /// The line.
    pub text: String,
}

/// Everything `medgate diff` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleDiff {
    /// Bundle A's directory.
    pub bundle_a: String,
    /// Bundle B's directory.
    pub bundle_b: String,
    /// Identity fields.
    pub fields: Vec<FieldDiff>,
    /// Whether the protocol texts are identical.
    pub protocol_text_same: bool,
    /// Line diff of `protocol.yaml` (changed lines with up to 2 lines of context).
    pub protocol_text: Vec<LineDiff>,
    /// Every metric overall and per level.
    pub metrics: Vec<MetricDiff>,
    /// Criteria verdicts.
    pub criteria: Vec<CriterionDiff>,
    /// Whether the two case tables hold the same cases (ID, image hash, label).
    pub cases_match: bool,
    /// Why not, when they do not.
    pub cases_mismatch: Vec<String>,
    /// The paired comparison B - A when the cases match.
    pub paired: Option<ComparisonEvidence>,
}

struct Bundle {
    evidence: Evidence,
    protocol_text: String,
    rows: Vec<CaseRow>,
    cases: Vec<comparison::PairedCase>,
}

fn load(dir: &Path) -> Result<Bundle> {
    let ev_path = dir.join(EVIDENCE_FILE);
    let text = std::fs::read_to_string(&ev_path).map_err(|e| Error::io(&ev_path, e))?;
    let evidence: Evidence = serde_json::from_str(&text).map_err(|e| {
        Error::input(format!(
            "{}: not a medgate evidence record: {e}",
            ev_path.display()
        ))
    })?;
    let pp = dir.join(PROTOCOL_FILE);
    let protocol_text = std::fs::read_to_string(&pp).map_err(|e| Error::io(&pp, e))?;
    let rows = read_cases(&dir.join(CASES_FILE))?;
    let cases = comparison::read_paired_cases(&dir.join(CASES_FILE))?;
    Ok(Bundle {
        evidence,
        protocol_text,
        rows,
        cases,
    })
}

/// Compares two bundles (A older, B newer).
pub fn diff_bundles(a_dir: &Path, b_dir: &Path) -> Result<BundleDiff> {
    let a = load(a_dir)?;
    let b = load(b_dir)?;
    let (ea, eb) = (&a.evidence, &b.evidence);
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "(none)".into());
    let field = |name: &str, x: String, y: String| FieldDiff {
        field: name.into(),
        same: x == y,
        a: x,
        b: y,
    };
    let fields = vec![
        field("run_id", ea.run_id.clone(), eb.run_id.clone()),
        field(
            "protocol",
            ea.protocol.protocol.clone(),
            eb.protocol.protocol.clone(),
        ),
        field(
            "protocol.version",
            ea.protocol.version.clone(),
            eb.protocol.version.clone(),
        ),
        field(
            "protocol.sha256",
            ea.protocol_file.sha256.clone(),
            eb.protocol_file.sha256.clone(),
        ),
        field(
            "model.backend",
            ea.model.backend.to_string(),
            eb.model.backend.to_string(),
        ),
        field("model.name", ea.model.name.clone(), eb.model.name.clone()),
        field("model.sha256", opt(&ea.model.sha256), opt(&eb.model.sha256)),
        field(
            "model.settings",
            ea.model.settings.to_string(),
            eb.model.settings.to_string(),
        ),
        field(
            "golden_set.root_hash",
            ea.golden_set.root_hash.clone(),
            eb.golden_set.root_hash.clone(),
        ),
        field(
            "golden_set.cases",
            ea.golden_set.cases.to_string(),
            eb.golden_set.cases.to_string(),
        ),
        field(
            "medgate_version",
            ea.provenance.medgate_version.clone(),
            eb.provenance.medgate_version.clone(),
        ),
        field(
            "threshold",
            ea.statistics.threshold.to_string(),
            eb.statistics.threshold.to_string(),
        ),
        field(
            "verdict",
            ea.verdict.label().into(),
            eb.verdict.label().into(),
        ),
        field(
            "results_sha256",
            ea.results_sha256.clone(),
            eb.results_sha256.clone(),
        ),
    ];
    let protocol_text = line_diff(&a.protocol_text, &b.protocol_text);
    let protocol_text_same = a.protocol_text == b.protocol_text;

    // Paired comparison when the cases match.
    let mismatch = comparison::match_problems(&b.cases, &a.cases);
    let cases_match = mismatch.is_empty();
    let paired = if cases_match {
        let reference = ReferenceCases {
            identity: ReferenceIdentity::of(ea, None),
            cases: a.cases.clone(),
        };
        let images: Vec<Option<String>> = b.cases.iter().map(|c| c.image_sha256.clone()).collect();
        let mut protocol = eb.protocol.clone();
        protocol
            .acceptance
            .retain(|c| c.metric.difference_of().is_none());
        Some(comparison::compare(&protocol, &b.rows, &images, &reference)?.0)
    } else {
        None
    };

    // Metrics side by side.
    let mut metrics = Vec::new();
    // A unit is the whole set (`None`) or one subgroup level (`Some((attribute, value))`).
    let scope_of = |unit: Option<(&str, &str)>| {
        paired.as_ref().and_then(|p| match unit {
            None => Some(&p.statistics.overall),
            Some((a, v)) => p
                .statistics
                .subgroups
                .iter()
                .find(|s| s.attribute.as_deref() == Some(a) && s.value.as_deref() == Some(v)),
        })
    };
    type Unit<'a> = Option<(&'a str, &'a str)>;
    let mut units: Vec<(Unit, Option<&Metrics>, Option<&Metrics>)> = vec![(
        None,
        Some(&ea.statistics.overall),
        Some(&eb.statistics.overall),
    )];
    for s in &ea.statistics.subgroups {
        let other = eb
            .statistics
            .subgroups
            .iter()
            .find(|t| t.attribute == s.attribute && t.value == s.value);
        units.push((
            Some((s.attribute.as_str(), s.value.as_str())),
            Some(&s.metrics),
            other.map(|o| &o.metrics),
        ));
    }
    for s in &eb.statistics.subgroups {
        if !ea
            .statistics
            .subgroups
            .iter()
            .any(|t| t.attribute == s.attribute && t.value == s.value)
        {
            units.push((
                Some((s.attribute.as_str(), s.value.as_str())),
                None,
                Some(&s.metrics),
            ));
        }
    }
    for (key, ma, mb) in units {
        let sc = scope_of(key);
        let unit = key.map_or_else(|| "overall".to_string(), |(a, v)| format!("{a}={v}"));
        for name in [
            Metric::Sensitivity,
            Metric::Specificity,
            Metric::Ppv,
            Metric::Npv,
            Metric::Accuracy,
            Metric::Auroc,
        ] {
            let get = |m: Option<&Metrics>| m.and_then(|m| m.estimate(name)).map(|e| e.estimate);
            let (x, y) = (get(ma), get(mb));
            let (pl, pu, pp) = match (name, sc) {
                (Metric::Sensitivity, Some(s)) => {
                    s.sensitivity.as_ref().map_or((None, None, None), |d| {
                        (Some(d.lower), Some(d.upper), Some(d.mid_p))
                    })
                }
                (Metric::Specificity, Some(s)) => {
                    s.specificity.as_ref().map_or((None, None, None), |d| {
                        (Some(d.lower), Some(d.upper), Some(d.mid_p))
                    })
                }
                (Metric::Auroc, Some(s)) => s
                    .auroc
                    .as_ref()
                    .filter(|a| !a.degenerate)
                    .map_or((None, None, None), |d| {
                        (Some(d.lower), Some(d.upper), d.p_value)
                    }),
                _ => (None, None, None),
            };
            metrics.push(MetricDiff {
                unit: unit.clone(),
                metric: name,
                a: x,
                b: y,
                difference: x.zip(y).map(|(x, y)| y - x),
                paired_lower: pl,
                paired_upper: pu,
                paired_p: pp,
            });
        }
    }
    let mut criteria: Vec<CriterionDiff> = ea
        .criteria
        .iter()
        .map(|c| CriterionDiff {
            id: c.id.clone(),
            a: Some(c.verdict.label().into()),
            b: eb
                .criteria
                .iter()
                .find(|d| d.id == c.id)
                .map(|d| d.verdict.label().into()),
        })
        .collect();
    for c in &eb.criteria {
        if !ea.criteria.iter().any(|d| d.id == c.id) {
            criteria.push(CriterionDiff {
                id: c.id.clone(),
                a: None,
                b: Some(c.verdict.label().into()),
            });
        }
    }
    Ok(BundleDiff {
        bundle_a: a_dir.display().to_string(),
        bundle_b: b_dir.display().to_string(),
        fields,
        protocol_text_same,
        protocol_text,
        metrics,
        criteria,
        cases_match,
        cases_mismatch: mismatch,
        paired,
    })
}

/// A line diff (longest common subsequence) keeping 2 lines of context around changes.
pub fn line_diff(a: &str, b: &str) -> Vec<LineDiff> {
    let x: Vec<&str> = a.lines().collect();
    let y: Vec<&str> = b.lines().collect();
    let (n, m) = (x.len(), y.len());
    let mut l = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if x[i] == y[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let mut all = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            all.push((' ', x[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || l[i + 1][j] >= l[i][j + 1]) {
            all.push(('-', x[i]));
            i += 1;
        } else {
            all.push(('+', y[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..all.len()).filter(|&k| all[k].0 != ' ').collect();
    all.iter()
        .enumerate()
        .filter(|(k, _)| changed.iter().any(|&c| c.abs_diff(*k) <= 2))
        .map(|(_, (op, t))| LineDiff {
            op: *op,
            text: t.to_string(),
        })
        .collect()
}

fn f4(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

fn signed(v: Option<f64>) -> String {
    v.map(|x| format!("{x:+.4}"))
        .unwrap_or_else(|| "n/a".into())
}

fn interval(m: &MetricDiff) -> String {
    match (m.paired_lower, m.paired_upper) {
        (Some(l), Some(u)) => format!("[{l:+.4}, {u:+.4}]"),
        _ => String::new(),
    }
}

/// The text rendering.
pub fn render_text(d: &BundleDiff) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "A: {}\nB: {}", d.bundle_a, d.bundle_b);
    let _ = writeln!(
        o,
        "(neither bundle is verified by `diff`: run `medgate verify` on each)\n"
    );
    for f in &d.fields {
        if f.same {
            let _ = writeln!(o, "  {:<22} {}", f.field, f.a);
        } else {
            let _ = writeln!(o, "* {:<22} A {}\n  {:<22} B {}", f.field, f.a, "", f.b);
        }
    }
    let _ = writeln!(o);
    if d.protocol_text_same {
        let _ = writeln!(o, "protocol.yaml: identical");
    } else {
        let _ = writeln!(o, "protocol.yaml:");
        for l in &d.protocol_text {
            let _ = writeln!(o, "  {} {}", l.op, l.text);
        }
    }
    let _ = writeln!(o);
    if d.cases_match {
        let _ = writeln!(
            o,
            "cases: the same in both bundles (case ID, image hash, label): paired differences B - A"
        );
    } else {
        let _ = writeln!(
            o,
            "cases: not the same ({}): unpaired differences only",
            d.cases_mismatch.join("; ")
        );
    }
    let _ = writeln!(
        o,
        "{:<28} {:<12} {:>8} {:>8} {:>8}  {:<20} {:>8}",
        "scope", "metric", "A", "B", "B - A", "paired interval", "p"
    );
    for m in &d.metrics {
        if m.a.is_none() && m.b.is_none() {
            continue;
        }
        let _ = writeln!(
            o,
            "{:<28} {:<12} {:>8} {:>8} {:>8}  {:<20} {:>8}",
            m.unit,
            m.metric.as_str(),
            f4(m.a),
            f4(m.b),
            signed(m.difference),
            interval(m),
            f4(m.paired_p)
        );
    }
    if let Some(p) = &d.paired {
        let f = p.statistics.overall.flips;
        let _ = writeln!(
            o,
            "\nflips (B vs A): {} changed decisions: {} new false negatives, {} new false positives, {} new true positives, {} new true negatives",
            f.total(),
            f.new_false_negatives,
            f.new_false_positives,
            f.new_true_positives,
            f.new_true_negatives
        );
    }
    let _ = writeln!(o, "\ncriteria:");
    for c in &d.criteria {
        let a = c.a.as_deref().unwrap_or("-");
        let b = c.b.as_deref().unwrap_or("-");
        let mark = if a == b { ' ' } else { '*' };
        let _ = writeln!(o, "{mark} {:<16} A {:<14} B {}", c.id, a, b);
    }
    o
}

/// A self-contained HTML page (every value escaped).
pub fn render_html(d: &BundleDiff) -> String {
    use std::fmt::Write;
    let e = html_escape;
    let mut o = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>medgate diff</title>\n<style>body{font-family:system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.changed td{background:#fff4d6}pre{background:#f6f6f6;padding:1em}.add{color:#116611}.del{color:#aa1111}</style></head><body>\n<h1>Bundle comparison</h1>\n",
    );
    let _ = writeln!(
        o,
        "<p>A: <code>{}</code><br>B: <code>{}</code></p><p>Neither bundle is verified by <code>medgate diff</code>: run <code>medgate verify</code> on each.</p>",
        e(&d.bundle_a),
        e(&d.bundle_b)
    );
    o.push_str("<h2>Identity</h2><table><tr><th>field</th><th>A</th><th>B</th></tr>\n");
    for f in &d.fields {
        let _ = writeln!(
            o,
            "<tr{}><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            if f.same { "" } else { " class=\"changed\"" },
            e(&f.field),
            e(&f.a),
            e(&f.b)
        );
    }
    o.push_str("</table>\n<h2>Protocol text</h2>\n");
    if d.protocol_text_same {
        o.push_str("<p>Identical.</p>\n");
    } else {
        o.push_str("<pre>");
        for l in &d.protocol_text {
            let class = match l.op {
                '+' => "add",
                '-' => "del",
                _ => "",
            };
            let _ = writeln!(o, "<span class=\"{class}\">{} {}</span>", l.op, e(&l.text));
        }
        o.push_str("</pre>\n");
    }
    o.push_str("<h2>Metrics</h2>\n");
    let _ = writeln!(
        o,
        "<p>{}</p>",
        if d.cases_match {
            "The two bundles hold the same cases: paired differences B - A (Newcombe 1998 method 10, mid-p McNemar; paired DeLong for AUROC).".to_string()
        } else {
            format!(
                "The cases differ ({}): unpaired differences only.",
                e(&d.cases_mismatch.join("; "))
            )
        }
    );
    o.push_str("<table><tr><th>scope</th><th>metric</th><th>A</th><th>B</th><th>B - A</th><th>paired interval</th><th>p</th></tr>\n");
    for m in &d.metrics {
        if m.a.is_none() && m.b.is_none() {
            continue;
        }
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            e(&m.unit),
            e(m.metric.as_str()),
            f4(m.a),
            f4(m.b),
            signed(m.difference),
            interval(m),
            f4(m.paired_p)
        );
    }
    o.push_str("</table>\n");
    if let Some(p) = &d.paired {
        let f = p.statistics.overall.flips;
        let _ = writeln!(
            o,
            "<p>Changed decisions (B vs A): {} in all; {} new false negatives, {} new false positives, {} new true positives, {} new true negatives.</p>",
            f.total(),
            f.new_false_negatives,
            f.new_false_positives,
            f.new_true_positives,
            f.new_true_negatives
        );
    }
    o.push_str("<h2>Criteria</h2><table><tr><th>criterion</th><th>A</th><th>B</th></tr>\n");
    for c in &d.criteria {
        let _ = writeln!(
            o,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td></tr>",
            if c.a == c.b { "" } else { " class=\"changed\"" },
            e(&c.id),
            e(c.a.as_deref().unwrap_or("-")),
            e(c.b.as_deref().unwrap_or("-"))
        );
    }
    o.push_str("</table>\n</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_marks_changes_with_context() {
        let a = "a\nb\nc\nd\ne\nf\ng\n";
        let b = "a\nb\nc\nD\ne\nf\ng\n";
        let d = line_diff(a, b);
        let ops: String = d.iter().map(|l| l.op).collect();
        let text: Vec<&str> = d.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(ops, "  -+  ");
        assert_eq!(text, ["b", "c", "d", "D", "e", "f"]);
        assert!(line_diff(a, a).is_empty());
    }
}
