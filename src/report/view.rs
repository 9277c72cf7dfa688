//! The report's view model: everything the templates print, taken from [`Evidence`] and
//! formatted once, here, so the three renderings (Typst, HTML, Markdown) cannot disagree.
//!
//! Numbers are formatted with fixed decimals (three for metrics, `0.911 (0.881-0.934)` for an
//! estimate with its interval) and an undefined value (`None`, or a non-finite float that
//! should never occur) prints as `n/a`, never `NaN`. No value here is computed from anything
//! but the evidence record, so every number in a report can be found in `evidence.json`.

use serde::Serialize;

use crate::stats::{Estimate, Metrics, StatsReport};
use crate::trace::{CriterionResult, Evidence, Observation, TracedItem, Verdict};

/// Placeholder for an undefined value.
pub const NA: &str = "n/a";

/// A number with `decimals` decimals, or `n/a` when absent or not finite: the one number
/// formatter of every rendering (reports, JUnit, console summary).
pub(crate) fn fmt_fixed(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => NA.into(),
    }
}

/// A number with three decimals, or `n/a`.
pub fn fmt3(v: Option<f64>) -> String {
    fmt_fixed(v, 3)
}

/// An estimate with its interval, `0.911 (0.881-0.934)`, or `n/a`.
fn fmt_est(e: Option<&Estimate>) -> String {
    match e {
        Some(e) if e.estimate.is_finite() => format!(
            "{} ({}-{})",
            fmt3(Some(e.estimate)),
            fmt3(Some(e.lower)),
            fmt3(Some(e.upper))
        ),
        _ => NA.into(),
    }
}

/// An interval from optional bounds, `(0.881-0.934)`, or empty when either is missing.
fn fmt_interval(lower: Option<f64>, upper: Option<f64>) -> String {
    match (lower, upper) {
        (Some(l), Some(u)) if l.is_finite() && u.is_finite() => {
            format!("({}-{})", fmt3(Some(l)), fmt3(Some(u)))
        }
        _ => String::new(),
    }
}

/// A p-value: three decimals, `<0.001` below that.
pub(crate) fn fmt_p(p: f64) -> String {
    if !p.is_finite() {
        NA.into()
    } else if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// A fraction as a percentage with one decimal, or `n/a`.
pub fn fmt_pct(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{:.1}%", x * 100.0),
        _ => NA.into(),
    }
}

/// The human name of a criterion's method text: a method's display name when the text is
/// one method's JSON spelling, else the text as recorded.
fn interval_name(method: &str) -> String {
    crate::stats::Method::parse(method)
        .map_or_else(|| method.to_string(), |m| m.display_name().to_string())
}

/// CSS / colour class of a verdict: `pass`, `fail` or `ne`.
fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::NotEvaluable => "ne",
    }
}

/// A verdict as the templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictView {
    /// `PASS`, `FAIL`, `NOT EVALUABLE`.
    pub label: String,
    /// `pass`, `fail`, `ne`.
    pub class: String,
}

impl From<Verdict> for VerdictView {
    fn from(v: Verdict) -> Self {
        VerdictView {
            label: v.label().into(),
            class: verdict_class(v).into(),
        }
    }
}

/// The whole view model.
#[derive(Debug, Clone, Serialize)]
pub struct ReportView {
    /// Document control.
    pub doc: DocControl,
    /// Signature block.
    pub signatories: Vec<SignatoryView>,
    /// Overall verdict.
    pub verdict: VerdictView,
    /// Criteria tallies.
    pub tally: Tally,
    /// One row per acceptance criterion.
    pub criteria: Vec<CriterionView>,
    /// Traceability matrix.
    pub trace: TraceView,
    /// Test set description.
    pub testset: TestSetView,
    /// Results.
    pub results: ResultsView,
    /// Environment and reproduction.
    pub env: EnvView,
    /// Anomalies and deviations.
    pub anomalies: AnomaliesView,
    /// Comparison with the reference release (`None` without one).
    pub comparison: Option<super::comparison::ComparisonView>,
    /// Set when this rendering shows the bundle's signatures (`medgate report --signed`):
    /// what they were checked against.
    pub signed: Option<SignedView>,
}

/// What a signed rendering's signatures were checked against.
#[derive(Debug, Clone, Serialize)]
pub struct SignedView {
    /// SHA-256 of the bundle's SHA256SUMS, which every signature covers.
    pub sha256sums_sha256: String,
    /// Signatures valid over the bundle as it is.
    pub valid: usize,
    /// Signatures found.
    pub total: usize,
}

/// A signature on the bundle, as a signed rendering shows it (from `medgate verify`'s check).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignatureView {
    /// Printed name.
    pub name: String,
    /// Meaning.
    pub meaning: String,
    /// When (RFC 3339).
    pub signed_at: String,
    /// Key fingerprint (first 16 hex digits of the key's SHA-256).
    pub key_fingerprint: String,
    /// Valid over the bundle as it is now.
    pub valid: bool,
    /// `verified`, `verified, trusted key`, or why not.
    pub status: String,
}

impl ReportView {
    /// Fills the approval block with the bundle's signatures: each signatory whose printed
    /// name signed gets the signature and its date; signatures by anyone else are added as
    /// rows of their own.
    pub fn apply_signatures(&mut self, sums_sha256: &str, sigs: &[SignatureView]) {
        let mut used = vec![false; sigs.len()];
        for s in &mut self.signatories {
            if let Some(i) = sigs
                .iter()
                .enumerate()
                .position(|(i, g)| !used[i] && g.name.trim() == s.name.trim())
            {
                used[i] = true;
                s.fill(&sigs[i]);
            }
        }
        for (i, g) in sigs.iter().enumerate() {
            if !used[i] {
                let mut row = SignatoryView {
                    role: "(not a listed signatory)".into(),
                    name: g.name.clone(),
                    meaning: g.meaning.clone(),
                    ..Default::default()
                };
                row.fill(g);
                self.signatories.push(row);
            }
        }
        self.signed = Some(SignedView {
            sha256sums_sha256: sums_sha256.to_string(),
            valid: sigs.iter().filter(|g| g.valid).count(),
            total: sigs.len(),
        });
    }
}

impl SignatoryView {
    fn fill(&mut self, g: &SignatureView) {
        self.signature = format!(
            "Ed25519, key {}: {}{}",
            g.key_fingerprint,
            g.status,
            if g.meaning == self.meaning {
                String::new()
            } else {
                format!(" (signed as: {})", g.meaning)
            }
        );
        self.signed_at = g.signed_at.clone();
        self.signed = true;
        self.valid = g.valid;
    }
}

/// Document control facts.
#[derive(Debug, Clone, Serialize)]
pub struct DocControl {
    /// Protocol document ID.
    pub protocol_id: String,
    /// Protocol title.
    pub title: String,
    /// Protocol document version.
    pub protocol_version: String,
    /// Intended use statement.
    pub intended_use: String,
    /// Report ID (the run ID).
    pub report_id: String,
    /// Report date (UTC date the run finished).
    pub date: String,
    /// Run start (RFC 3339).
    pub started_at: String,
    /// Run end (RFC 3339).
    pub finished_at: String,
    /// Who ran it.
    pub user: String,
    /// medgate version.
    pub medgate_version: String,
    /// Commit medgate was built from.
    pub medgate_commit: String,
    /// Repository commit (or `n/a` outside git).
    pub repo_commit: String,
    /// Whether the repository had uncommitted changes.
    pub dirty: bool,
    /// The changed paths.
    pub dirty_files: Vec<String>,
    /// Release run.
    pub release: bool,
    /// Protocol file path.
    pub protocol_path: String,
    /// SHA-256 of the protocol file.
    pub protocol_sha256: String,
    /// Git blob of the protocol file.
    pub protocol_git_blob: String,
    /// Golden-set directory.
    pub golden_path: String,
    /// Golden-set root hash.
    pub golden_root: String,
    /// SHA-256 of the LOCK file.
    pub golden_lock_sha256: String,
    /// When the set was locked.
    pub golden_locked_at: String,
    /// Model backend.
    pub model_backend: String,
    /// Model name.
    pub model_name: String,
    /// Model weights hash.
    pub model_sha256: String,
    /// Hash of the results content.
    pub results_sha256: String,
    /// Requirement and risk files.
    pub trace_files: Vec<FileView>,
}

/// A file with its hash.
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    /// Path.
    pub path: String,
    /// SHA-256.
    pub sha256: String,
}

/// One signature line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignatoryView {
    /// Role.
    pub role: String,
    /// Printed name.
    pub name: String,
    /// Meaning of the signature.
    pub meaning: String,
    /// The electronic signature (signed renderings only), or empty for a wet signature.
    pub signature: String,
    /// When it was signed, or empty.
    pub signed_at: String,
    /// Whether a signature by this name was found.
    pub signed: bool,
    /// Whether it is valid over the bundle as it is.
    pub valid: bool,
}

/// Counts of criteria by verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Tally {
    /// All criteria.
    pub total: usize,
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Not evaluable.
    pub not_evaluable: usize,
}

/// One acceptance criterion.
#[derive(Debug, Clone, Serialize)]
pub struct CriterionView {
    /// ID.
    pub id: String,
    /// Requirement ID.
    pub requirement: String,
    /// Risk control ID or empty.
    pub risk_control: String,
    /// Metric (human name).
    pub metric: String,
    /// Scope.
    pub scope: String,
    /// `point`, `lower` or `upper`.
    pub bound: String,
    /// `≥` or `≤`.
    pub comparator: String,
    /// Goal, three decimals.
    pub goal: String,
    /// The deciding observation: `0.911 (0.881-0.934)`, prefixed by its unit when the scope
    /// has several.
    pub observed: String,
    /// The tested value (the bound compared with the goal).
    pub tested: String,
    /// Verdict.
    pub verdict: VerdictView,
    /// Rationale or empty.
    pub rationale: String,
    /// The statistical method that decided the verdict: the interval method, for gaps the
    /// simultaneous bound and the deciding pair, for bootstrap intervals the usable resamples.
    pub method: String,
    /// Every unit.
    pub observations: Vec<ObservationView>,
}

/// One scope unit of a criterion.
#[derive(Debug, Clone, Serialize)]
pub struct ObservationView {
    /// `overall` or `attribute=value`.
    pub unit: String,
    /// Cases.
    pub n: u64,
    /// Estimate with interval.
    pub value: String,
    /// Tested value.
    pub tested: String,
    /// Verdict.
    pub verdict: VerdictView,
    /// Note or empty.
    pub note: String,
}

/// Traceability matrix.
#[derive(Debug, Clone, Serialize)]
pub struct TraceView {
    /// Requirements.
    pub requirements: Vec<TracedView>,
    /// Risk controls.
    pub risk_controls: Vec<TracedView>,
    /// Requirements no criterion verifies.
    pub uncovered: Vec<String>,
}

/// One traced item.
#[derive(Debug, Clone, Serialize)]
pub struct TracedView {
    /// ID.
    pub id: String,
    /// Text.
    pub text: String,
    /// Source or hazard, or empty.
    pub source: String,
    /// Criteria IDs.
    pub criteria: Vec<String>,
    /// Verdict, or `NOT COVERED`.
    pub verdict: VerdictView,
    /// Evidence files.
    pub evidence: Vec<String>,
}

/// Test set description.
#[derive(Debug, Clone, Serialize)]
pub struct TestSetView {
    /// Cases enrolled.
    pub enrolled: u64,
    /// Exclusions by reason.
    pub excluded: Vec<CountView>,
    /// Total excluded.
    pub excluded_total: u64,
    /// Evaluated.
    pub evaluated: u64,
    /// Equivocal.
    pub equivocal: u64,
    /// Not evaluated (count).
    pub not_evaluated_total: u64,
    /// Not evaluated, by case.
    pub not_evaluated: Vec<NotEvaluatedView>,
    /// Not evaluated, grouped by identical reason (most frequent first): a server that
    /// rejects every request gives one line with a count, not one per case.
    pub not_evaluated_reasons: Vec<ReasonView>,
    /// Cases analysed.
    pub analysed: u64,
    /// Label-positive cases analysed.
    pub positives: u64,
    /// Label-negative cases analysed.
    pub negatives: u64,
    /// Label prevalence.
    pub prevalence: String,
    /// Cases in the manifest.
    pub manifest_cases: u64,
    /// Lock root hash.
    pub lock_root: String,
    /// Lock date.
    pub locked_at: String,
    /// Subgroup counts.
    pub subgroups: Vec<SubgroupCountView>,
    /// Minimum subgroup size from the protocol.
    pub min_subgroup_size: usize,
}

/// A reason with a count.
#[derive(Debug, Clone, Serialize)]
pub struct CountView {
    /// Reason.
    pub reason: String,
    /// Cases.
    pub n: u64,
}

/// One reason cases were not evaluated, with how many and which.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonView {
    /// Reason.
    pub reason: String,
    /// Cases with this reason.
    pub n: u64,
    /// The first case IDs (at most [`REASON_EXAMPLES`]).
    pub cases: Vec<String>,
    /// Cases not listed.
    pub more: u64,
}

/// Case IDs listed per not-evaluated reason (all are in cases.parquet and the explorer).
pub const REASON_EXAMPLES: usize = 5;

/// Groups not-evaluated cases by reason: most frequent first, then by reason text.
fn group_reasons(list: &[crate::trace::NotEvaluated]) -> Vec<ReasonView> {
    let mut by: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for n in list {
        by.entry(n.reason.as_str())
            .or_default()
            .push(n.case_id.as_str());
    }
    let mut out: Vec<ReasonView> = by
        .into_iter()
        .map(|(reason, ids)| ReasonView {
            reason: reason.to_string(),
            n: ids.len() as u64,
            cases: ids
                .iter()
                .take(REASON_EXAMPLES)
                .map(|s| s.to_string())
                .collect(),
            more: ids.len().saturating_sub(REASON_EXAMPLES) as u64,
        })
        .collect();
    out.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.reason.cmp(&b.reason)));
    out
}

/// A case not evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct NotEvaluatedView {
    /// Case ID.
    pub case_id: String,
    /// Reason.
    pub reason: String,
}

/// Counts of one subgroup level.
#[derive(Debug, Clone, Serialize)]
pub struct SubgroupCountView {
    /// Attribute.
    pub attribute: String,
    /// Level.
    pub value: String,
    /// Cases.
    pub n: u64,
    /// Positives.
    pub positives: u64,
    /// Negatives.
    pub negatives: u64,
    /// Prevalence.
    pub prevalence: String,
    /// Below the minimum size.
    pub small: bool,
}

/// Results section.
#[derive(Debug, Clone, Serialize)]
pub struct ResultsView {
    /// Operating point.
    pub threshold: String,
    /// Confidence level, e.g. `95%`.
    pub confidence: String,
    /// Interval method for proportions (human name).
    pub interval: String,
    /// Interval method for AUROC (human name).
    pub auroc_interval: String,
    /// Multiplicity adjustment.
    pub multiplicity: String,
    /// Bootstrap resamples and seed.
    pub bootstrap: String,
    /// The 2x2 table.
    pub confusion: ConfusionView,
    /// Overall metrics.
    pub metrics: Vec<MetricRow>,
    /// F1, kappa.
    pub f1: String,
    /// Cohen's kappa.
    pub kappa: String,
    /// Per-subgroup metrics.
    pub subgroups: Vec<SubgroupView>,
    /// Whether any subgroup is small.
    pub any_small: bool,
    /// Subgroup gaps.
    pub gaps: Vec<GapView>,
    /// Equivocal sensitivity analyses.
    pub equivocal: Vec<EquivocalView>,
    /// Per-criterion details (units).
    pub multi_unit_criteria: Vec<CriterionView>,
}

/// The 2x2 table.
#[derive(Debug, Clone, Serialize)]
pub struct ConfusionView {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    pub fn_: u64,
    /// TP + FP.
    pub test_pos: u64,
    /// FN + TN.
    pub test_neg: u64,
    /// TP + FN.
    pub ref_pos: u64,
    /// FP + TN.
    pub ref_neg: u64,
    /// All.
    pub n: u64,
}

/// One metric row.
#[derive(Debug, Clone, Serialize)]
pub struct MetricRow {
    /// Metric name.
    pub name: String,
    /// Counts, e.g. `123/135`.
    pub counts: String,
    /// Estimate with interval.
    pub value: String,
    /// Interval method.
    pub method: String,
}

/// Metrics of one subgroup level.
#[derive(Debug, Clone, Serialize)]
pub struct SubgroupView {
    /// Attribute.
    pub attribute: String,
    /// Level.
    pub value: String,
    /// Cases.
    pub n: u64,
    /// Positives.
    pub positives: u64,
    /// Small flag.
    pub small: bool,
    /// Sensitivity with interval.
    pub sensitivity: String,
    /// Specificity with interval.
    pub specificity: String,
    /// PPV with interval.
    pub ppv: String,
    /// NPV with interval.
    pub npv: String,
    /// AUROC with interval.
    pub auroc: String,
    /// Sensitivity counts `TP/(TP+FN)`.
    pub sensitivity_kn: String,
    /// Specificity counts `TN/(TN+FP)`.
    pub specificity_kn: String,
    /// PPV counts `TP/(TP+FP)`.
    pub ppv_kn: String,
    /// NPV counts `TN/(TN+FN)`.
    pub npv_kn: String,
}

/// One subgroup gap.
#[derive(Debug, Clone, Serialize)]
pub struct GapView {
    /// Attribute.
    pub attribute: String,
    /// Metric (human name).
    pub metric: String,
    /// Difference with bootstrap interval.
    pub difference: String,
    /// Higher level.
    pub higher: String,
    /// Lower level.
    pub lower: String,
    /// Raw p-value.
    pub p_value: String,
    /// Adjusted p-value.
    pub p_adjusted: String,
    /// Adjusted p below 1 - confidence.
    pub significant: bool,
}

/// An equivocal sensitivity analysis.
#[derive(Debug, Clone, Serialize)]
pub struct EquivocalView {
    /// `as positive` / `as negative`.
    pub rule: String,
    /// Sensitivity.
    pub sensitivity: String,
    /// Specificity.
    pub specificity: String,
    /// PPV.
    pub ppv: String,
    /// NPV.
    pub npv: String,
    /// 2x2 counts `TP/FP/TN/FN`.
    pub counts: String,
}

/// Environment and reproduction.
#[derive(Debug, Clone, Serialize)]
pub struct EnvView {
    /// Backend settings, flattened `key = value`.
    pub settings: Vec<KeyValue>,
    /// Host facts.
    pub host: Vec<KeyValue>,
    /// The command line as run.
    pub command: String,
    /// How to check out the exact sources.
    pub checkout: String,
    /// How to verify the bundle.
    pub verify: String,
    /// How to re-render this report.
    pub rerender: String,
}

/// A key and a value.
#[derive(Debug, Clone, Serialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// Anomalies and deviations.
#[derive(Debug, Clone, Serialize)]
pub struct AnomaliesView {
    /// Criteria that failed or were not evaluable, with the failing units.
    pub failures: Vec<String>,
    /// Run warnings.
    pub warnings: Vec<String>,
    /// Equivocal answers (count) and how they were handled.
    pub equivocal: String,
    /// Cases not evaluated.
    pub not_evaluated: u64,
    /// Small subgroup levels.
    pub small_subgroups: Vec<String>,
    /// Nothing to report.
    pub none: bool,
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn obs_value(o: &Observation) -> String {
    match o.estimate {
        Some(e) if e.is_finite() => {
            let iv = fmt_interval(o.lower, o.upper);
            if iv.is_empty() {
                fmt3(Some(e))
            } else {
                format!("{} {iv}", fmt3(Some(e)))
            }
        }
        _ => NA.into(),
    }
}

/// The method line of a criterion (see [`CriterionView::method`]).
fn method_text(c: &CriterionResult, dec: Option<&Observation>) -> String {
    let mut parts = vec![interval_name(&c.method)];
    if let Some(o) = dec {
        if let Some([a, b]) = &o.decided_by {
            parts.push(format!("decided by the pair {a} vs {b}"));
        }
        if let Some([asked, usable]) = o.resamples {
            parts.push(format!("{usable} of {asked} resamples usable"));
        }
        if let Some(p) = o.p_adjusted {
            parts.push(format!(
                "homogeneity p {} (adjusted over the protocol's gap criteria; informational)",
                fmt_p(p)
            ));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join("; ")
}

fn criterion_view(c: &CriterionResult) -> CriterionView {
    let dec = c.deciding();
    let observed = match dec {
        Some(o) if c.observations.len() > 1 => format!("{}: {}", o.unit, obs_value(o)),
        Some(o) => obs_value(o),
        None => NA.into(),
    };
    CriterionView {
        id: c.id.clone(),
        requirement: c.requirement.clone(),
        risk_control: opt(&c.risk_control),
        metric: c.metric.display_name().into(),
        scope: c.scope.to_string(),
        bound: c.bound.as_str().into(),
        comparator: c.comparator.symbol().into(),
        goal: fmt3(Some(c.goal)),
        observed,
        tested: fmt3(dec.and_then(|o| o.tested)),
        verdict: c.verdict.into(),
        rationale: opt(&c.rationale),
        method: method_text(c, dec),
        observations: c
            .observations
            .iter()
            .map(|o| ObservationView {
                unit: o.unit.clone(),
                n: o.n,
                value: obs_value(o),
                tested: fmt3(o.tested),
                verdict: o.verdict.into(),
                note: opt(&o.note),
            })
            .collect(),
    }
}

fn traced_view(t: &TracedItem) -> TracedView {
    TracedView {
        id: t.id.clone(),
        text: t.text.clone(),
        source: opt(&t.source),
        criteria: t.criteria.clone(),
        verdict: match t.verdict {
            Some(v) => v.into(),
            None => VerdictView {
                label: "NOT COVERED".into(),
                class: "ne".into(),
            },
        },
        evidence: t.evidence.clone(),
    }
}

fn ratio(k: u64, n: u64) -> String {
    format!("{k}/{n}")
}

fn metric_rows(m: &Metrics, interval: crate::protocol::IntervalMethod) -> Vec<MetricRow> {
    let iv = crate::stats::Method::from(interval)
        .display_name()
        .to_string();
    let auroc_method = m
        .auroc
        .as_ref()
        .and_then(|a| a.method)
        .map_or_else(|| NA.into(), |m| m.display_name().to_string());
    vec![
        MetricRow {
            name: "Sensitivity".into(),
            counts: ratio(m.tp, m.tp + m.fn_),
            value: fmt_est(m.sensitivity.as_ref()),
            method: iv.clone(),
        },
        MetricRow {
            name: "Specificity".into(),
            counts: ratio(m.tn, m.tn + m.fp),
            value: fmt_est(m.specificity.as_ref()),
            method: iv.clone(),
        },
        MetricRow {
            name: "PPV".into(),
            counts: ratio(m.tp, m.tp + m.fp),
            value: fmt_est(m.ppv.as_ref()),
            method: iv.clone(),
        },
        MetricRow {
            name: "NPV".into(),
            counts: ratio(m.tn, m.tn + m.fn_),
            value: fmt_est(m.npv.as_ref()),
            method: iv.clone(),
        },
        MetricRow {
            name: "Accuracy".into(),
            counts: ratio(m.tp + m.tn, m.tp + m.tn + m.fp + m.fn_),
            value: fmt_est(m.accuracy.as_ref()),
            method: iv,
        },
        MetricRow {
            name: "AUROC".into(),
            counts: String::new(),
            value: fmt_est(m.auroc.as_ref()),
            method: auroc_method,
        },
    ]
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<KeyValue>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Null => out.push(KeyValue {
            key: prefix.into(),
            value: "null".into(),
        }),
        serde_json::Value::String(s) => out.push(KeyValue {
            key: prefix.into(),
            value: s.clone(),
        }),
        other => out.push(KeyValue {
            key: prefix.into(),
            value: other.to_string(),
        }),
    }
}

fn equivocal_view(rule: &str, s: &StatsReport) -> EquivocalView {
    let m = &s.overall;
    EquivocalView {
        rule: rule.replace('_', " "),
        sensitivity: fmt_est(m.sensitivity.as_ref()),
        specificity: fmt_est(m.specificity.as_ref()),
        ppv: fmt_est(m.ppv.as_ref()),
        npv: fmt_est(m.npv.as_ref()),
        counts: format!("{}/{}/{}/{}", m.tp, m.fp, m.tn, m.fn_),
    }
}

/// Builds the view model from an evidence record.
pub fn build(ev: &Evidence) -> ReportView {
    let p = &ev.protocol;
    let prov = &ev.provenance;
    let st = &ev.statistics;
    let date = prov
        .finished_at
        .get(..10)
        .unwrap_or(&prov.finished_at)
        .to_string();
    let doc = DocControl {
        protocol_id: p.protocol.clone(),
        title: p.title.clone(),
        protocol_version: p.version.clone(),
        intended_use: p.intended_use.clone(),
        report_id: ev.run_id.clone(),
        date,
        started_at: prov.started_at.clone(),
        finished_at: prov.finished_at.clone(),
        user: prov.user.clone(),
        medgate_version: prov.medgate_version.clone(),
        medgate_commit: prov.medgate_commit.clone(),
        repo_commit: prov
            .git
            .as_ref()
            .map(|g| g.commit.clone())
            .unwrap_or_else(|| NA.into()),
        dirty: prov.git.as_ref().is_some_and(|g| g.dirty),
        dirty_files: prov
            .git
            .as_ref()
            .map(|g| g.dirty_files.clone())
            .unwrap_or_default(),
        release: prov.release,
        protocol_path: ev.protocol_file.path.clone(),
        protocol_sha256: ev.protocol_file.sha256.clone(),
        protocol_git_blob: ev
            .protocol_file
            .git_blob
            .clone()
            .unwrap_or_else(|| NA.into()),
        golden_path: ev.golden_set.path.clone(),
        golden_root: ev.golden_set.root_hash.clone(),
        golden_lock_sha256: ev.golden_set.lock_sha256.clone(),
        golden_locked_at: ev.golden_set.locked_at.clone(),
        model_backend: ev.model.backend.to_string(),
        model_name: ev.model.name.clone(),
        model_sha256: ev.model.sha256.clone().unwrap_or_else(|| NA.into()),
        results_sha256: ev.results_sha256.clone(),
        trace_files: prov
            .trace_files
            .iter()
            .map(|f| FileView {
                path: f.path.clone(),
                sha256: f.sha256.clone(),
            })
            .collect(),
    };
    let signatories = p
        .report
        .signatories
        .iter()
        .map(|s| SignatoryView {
            role: s.role.clone(),
            name: s.name.clone(),
            meaning: s.meaning.clone(),
            ..Default::default()
        })
        .collect();
    let count = |v: Verdict| ev.criteria.iter().filter(|c| c.verdict == v).count();
    let tally = Tally {
        total: ev.criteria.len(),
        pass: count(Verdict::Pass),
        fail: count(Verdict::Fail),
        not_evaluable: count(Verdict::NotEvaluable),
    };
    let criteria: Vec<CriterionView> = ev.criteria.iter().map(criterion_view).collect();

    let trace = TraceView {
        requirements: ev
            .traceability
            .requirements
            .iter()
            .map(traced_view)
            .collect(),
        risk_controls: ev
            .traceability
            .risk_controls
            .iter()
            .map(traced_view)
            .collect(),
        uncovered: ev.traceability.uncovered_requirements.clone(),
    };

    let acc = &ev.accountability;
    let testset = TestSetView {
        enrolled: acc.enrolled,
        excluded: acc
            .excluded
            .iter()
            .map(|(r, n)| CountView {
                reason: r.clone(),
                n: *n,
            })
            .collect(),
        excluded_total: acc.excluded.values().sum(),
        evaluated: acc.evaluated,
        equivocal: acc.equivocal,
        not_evaluated_total: acc.not_evaluated.len() as u64,
        not_evaluated: acc
            .not_evaluated
            .iter()
            .map(|n| NotEvaluatedView {
                case_id: n.case_id.clone(),
                reason: n.reason.clone(),
            })
            .collect(),
        not_evaluated_reasons: group_reasons(&acc.not_evaluated),
        analysed: st.n,
        positives: st.positives,
        negatives: st.negatives,
        prevalence: fmt3(st.overall.prevalence),
        manifest_cases: ev.golden_set.cases,
        lock_root: ev.golden_set.root_hash.clone(),
        locked_at: ev.golden_set.locked_at.clone(),
        subgroups: st
            .subgroups
            .iter()
            .map(|s| SubgroupCountView {
                attribute: s.attribute.clone(),
                value: s.value.clone(),
                n: s.n,
                positives: s.positives,
                negatives: s.n.saturating_sub(s.positives),
                prevalence: fmt3(s.metrics.prevalence),
                small: s.small,
            })
            .collect(),
        min_subgroup_size: p.statistics.min_subgroup_size,
    };

    let m = &st.overall;
    let alpha = 1.0 - st.confidence;
    let results = ResultsView {
        threshold: fmt3(Some(st.threshold)),
        confidence: format!("{}%", fmt_num(st.confidence * 100.0)),
        interval: crate::stats::Method::from(st.interval)
            .display_name()
            .to_string(),
        auroc_interval: m
            .auroc
            .as_ref()
            .and_then(|a| a.method)
            .map_or_else(|| NA.into(), |m| m.display_name().to_string()),
        multiplicity: match p.statistics.multiplicity {
            crate::protocol::Multiplicity::None => "none".into(),
            crate::protocol::Multiplicity::Bonferroni => "Bonferroni".into(),
            crate::protocol::Multiplicity::Holm => "Holm-Bonferroni".into(),
        },
        bootstrap: format!(
            "{} resamples, seed {}",
            p.statistics.bootstrap_resamples, p.statistics.bootstrap_seed
        ),
        confusion: ConfusionView {
            tp: m.tp,
            fp: m.fp,
            tn: m.tn,
            fn_: m.fn_,
            test_pos: m.tp + m.fp,
            test_neg: m.fn_ + m.tn,
            ref_pos: m.tp + m.fn_,
            ref_neg: m.fp + m.tn,
            n: m.tp + m.fp + m.tn + m.fn_,
        },
        metrics: metric_rows(m, st.interval),
        f1: fmt3(m.f1),
        kappa: fmt3(m.kappa),
        subgroups: st
            .subgroups
            .iter()
            .map(|s| SubgroupView {
                attribute: s.attribute.clone(),
                value: s.value.clone(),
                n: s.n,
                positives: s.positives,
                small: s.small,
                sensitivity: fmt_est(s.metrics.sensitivity.as_ref()),
                specificity: fmt_est(s.metrics.specificity.as_ref()),
                ppv: fmt_est(s.metrics.ppv.as_ref()),
                npv: fmt_est(s.metrics.npv.as_ref()),
                auroc: fmt_est(s.metrics.auroc.as_ref()),
                sensitivity_kn: ratio(s.metrics.tp, s.metrics.tp + s.metrics.fn_),
                specificity_kn: ratio(s.metrics.tn, s.metrics.tn + s.metrics.fp),
                ppv_kn: ratio(s.metrics.tp, s.metrics.tp + s.metrics.fp),
                npv_kn: ratio(s.metrics.tn, s.metrics.tn + s.metrics.fn_),
            })
            .collect(),
        any_small: st.subgroups.iter().any(|s| s.small),
        gaps: st
            .gaps
            .iter()
            .map(|g| GapView {
                attribute: g.attribute.clone(),
                metric: g.metric.display_name().to_string(),
                difference: format!(
                    "{} ({}-{})",
                    fmt3(Some(g.difference)),
                    fmt3(Some(g.lower)),
                    fmt3(Some(g.upper))
                ),
                higher: g.between[0].clone(),
                lower: g.between[1].clone(),
                p_value: g.p_value.map_or_else(|| NA.to_string(), fmt_p),
                // Outside the protocol-named family the p-value is informational.
                p_adjusted: g
                    .p_adjusted
                    .map_or_else(|| "informational".to_string(), fmt_p),
                significant: g.p_adjusted.is_some_and(|p| p < alpha),
            })
            .collect(),
        equivocal: ev
            .equivocal_analyses
            .iter()
            .chain(&ev.not_evaluated_analyses)
            .map(|a| equivocal_view(a.equivocal_as.as_str(), &a.statistics))
            .collect(),
        multi_unit_criteria: ev
            .criteria
            .iter()
            .zip(&criteria)
            .filter(|(c, _)| c.observations.len() > 1 || c.scope != crate::protocol::Scope::Overall)
            .map(|(_, v)| v.clone())
            .collect(),
    };

    let mut settings = Vec::new();
    settings.push(KeyValue {
        key: "backend".into(),
        value: ev.model.backend.to_string(),
    });
    settings.push(KeyValue {
        key: "model".into(),
        value: ev.model.name.clone(),
    });
    flatten("", &ev.model.settings, &mut settings);
    let h = &prov.host;
    let host = vec![
        KeyValue {
            key: "hostname".into(),
            value: h.hostname.clone(),
        },
        KeyValue {
            key: "os".into(),
            value: h.os.clone(),
        },
        KeyValue {
            key: "arch".into(),
            value: h.arch.clone(),
        },
        KeyValue {
            key: "cpu".into(),
            value: format!("{} ({} logical)", h.cpu, h.cpus),
        },
        KeyValue {
            key: "user".into(),
            value: prov.user.clone(),
        },
    ];
    let env = EnvView {
        settings,
        host,
        command: prov.command.clone(),
        checkout: match &prov.git {
            Some(g) => format!("git checkout {}", g.commit),
            None => "(protocol not in a git repository)".into(),
        },
        verify: "medgate verify BUNDLE_DIR".into(),
        rerender: "medgate report BUNDLE_DIR --format pdf,html,md".into(),
    };

    let mut failures = Vec::new();
    for c in &ev.criteria {
        if c.verdict == Verdict::Pass {
            continue;
        }
        let units: Vec<String> = c
            .observations
            .iter()
            .filter(|o| o.verdict != Verdict::Pass)
            .map(|o| {
                let mut s = format!(
                    "{} {} (tested {} vs goal {})",
                    o.unit,
                    o.verdict.label(),
                    fmt3(o.tested),
                    fmt3(Some(c.goal))
                );
                if let Some(n) = &o.note {
                    s.push_str(": ");
                    s.push_str(n);
                }
                s
            })
            .collect();
        failures.push(format!(
            "{} {}: {}",
            c.id,
            c.verdict.label(),
            units.join("; ")
        ));
    }
    let small_subgroups: Vec<String> = st
        .subgroups
        .iter()
        .filter(|s| s.small)
        .map(|s| format!("{}={} (n={})", s.attribute, s.value, s.n))
        .collect();
    let equivocal = if acc.equivocal == 0 {
        "No equivocal answers.".into()
    } else {
        format!(
            "{} equivocal answer(s): the primary analysis scores them against the model \
             (a positive case as negative, a negative case as positive); sensitivity analyses \
             counting them as positive and as negative are in the results.",
            acc.equivocal
        )
    };
    let mut warnings = ev.warnings.clone();
    if doc.dirty {
        warnings.push(format!(
            "The repository had uncommitted changes: {}",
            doc.dirty_files.join(", ")
        ));
    }
    let warnings = count_repeats(warnings);
    let anomalies = AnomaliesView {
        none: failures.is_empty()
            && warnings.is_empty()
            && acc.equivocal == 0
            && acc.not_evaluated.is_empty()
            && small_subgroups.is_empty(),
        failures,
        warnings,
        equivocal,
        not_evaluated: acc.not_evaluated.len() as u64,
        small_subgroups,
    };

    ReportView {
        doc,
        signatories,
        verdict: ev.verdict.into(),
        tally,
        criteria,
        trace,
        testset,
        results,
        env,
        anomalies,
        comparison: super::comparison::build(ev),
        signed: None,
    }
}

/// Identical lines once each, in first-seen order, with how often a repeated one occurred
/// (`... (12 times)`), so that a warning raised for a thousand cases or criteria reads once.
fn count_repeats(lines: Vec<String>) -> Vec<String> {
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = Default::default();
    for l in lines {
        match at.get(&l) {
            Some(&i) => order[i].1 += 1,
            None => {
                at.insert(l.clone(), order.len());
                order.push((l, 1));
            }
        }
    }
    order
        .into_iter()
        .map(|(l, n)| if n > 1 { format!("{l} ({n} times)") } else { l })
        .collect()
}

/// A number without trailing zeros (for the confidence level).
fn fmt_num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_warnings_read_once_with_their_count() {
        let w = |s: &str| s.to_string();
        let mut lines = vec![w("b"), w("a")];
        lines.extend(std::iter::repeat_n(w("server said 401"), 1000));
        lines.push(w("a"));
        assert_eq!(
            count_repeats(lines),
            vec![w("b"), w("a (2 times)"), w("server said 401 (1000 times)")]
        );
    }

    #[test]
    fn numbers_have_fixed_decimals_and_na() {
        assert_eq!(fmt3(Some(0.9114)), "0.911");
        assert_eq!(fmt3(Some(1.0)), "1.000");
        assert_eq!(fmt3(None), "n/a");
        assert_eq!(fmt3(Some(f64::NAN)), "n/a");
        let e = Estimate {
            estimate: 0.9114,
            lower: 0.8806,
            upper: 0.9341,
            method: None,
            ..Estimate::default()
        };
        assert_eq!(fmt_est(Some(&e)), "0.911 (0.881-0.934)");
        assert_eq!(fmt_est(None), "n/a");
        assert_eq!(fmt_p(0.0004), "<0.001");
        assert_eq!(fmt_p(0.0123), "0.012");
        assert_eq!(fmt_pct(Some(0.25)), "25.0%");
        assert_eq!(fmt_num(95.0), "95");
        assert_eq!(fmt_num(99.5), "99.5");
    }
}
