//! `evidence.json`: the record that ties requirement -> acceptance criterion -> result ->
//! evidence, with the configuration identification of every item (protocol, golden set,
//! model, medgate itself) as IEC 62304 and ISO 13485 7.3.6 expect of a verification record.
//!
//! Every number in every report comes from this structure; `medgate verify` recomputes it
//! from `cases.parquet` and the protocol copy in the bundle. Keys may be added, never renamed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::protocol::{BackendKind, Bound, Comparator, Goal, Metric, Protocol, Scope};
use crate::stats::StatsReport;
use crate::world::HostInfo;

/// Evidence format version (`medgate_evidence`).
///
/// - **1**: the first landing (medgate 0.1.0 up to commit `2378e7b`).
/// - **2**: the typed evidence contract (issue 12) with the step-2 statistics (issue 17):
///   subgroup gaps are simultaneous Bonferroni-Newcombe / Bonferroni-DeLong bounds on the
///   range, criteria record their deciding observation, PPV/NPV at the intended-use
///   prevalence, calibration and the not-evaluated bounds are new. Recomputing a format 1
///   bundle with these statistics gives other numbers, so a format 1 bundle is refused by
///   name rather than reported as DIFFERENT.
///
/// Within a format keys are only ever added, never renamed. A bundle of another format is
/// refused by `medgate verify` with a message naming both versions ([`check_format`]).
pub const EVIDENCE_FORMAT: u32 = 2;

/// Refuses evidence of a format this medgate cannot read, naming both versions and what to
/// do instead.
pub fn check_format(found: Option<u64>) -> std::result::Result<(), String> {
    match found {
        Some(v) if v == u64::from(EVIDENCE_FORMAT) => Ok(()),
        Some(v) if v > u64::from(EVIDENCE_FORMAT) => Err(format!(
            "evidence format {v} is not one this medgate reads (it reads format {EVIDENCE_FORMAT}): it was written by a newer medgate; verify it with that version"
        )),
        Some(v) => Err(format!(
            "evidence format {v} is not one this medgate reads (it reads format {EVIDENCE_FORMAT}): the bundle was written by an earlier medgate whose statistics differ (subgroup gap bounds, deciding observations), so recomputing it here would report differences that are not tampering; verify it with the medgate version that wrote it (provenance.medgate_version, provenance.medgate_commit), or re-run the protocol with this medgate for a format {EVIDENCE_FORMAT} bundle"
        )),
        None => Err(
            "not a medgate evidence record: `medgate_evidence` (the format version) is missing"
                .into(),
        ),
    }
}

/// The JSON Schema of `evidence.json` (derived from these types; `medgate schema
/// --evidence`, committed as `protocols/evidence.schema.json`), so a QMS tool can validate a
/// bundle.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Evidence);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}

/// The whole evidence record of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    /// Evidence format version.
    pub medgate_evidence: u32,
    /// Unique run ID (also the report ID), derived from the results and start time.
    pub run_id: String,
    /// The protocol as run (a full copy, so the bundle is self-contained).
    pub protocol: Protocol,
    /// Identification of the protocol file.
    pub protocol_file: FileIdentity,
    /// Where, when, with what.
    pub provenance: Provenance,
    /// The golden set used.
    pub golden_set: GoldenSetIdentity,
    /// The model used.
    pub model: ModelIdentity,
    /// Every enrolled case accounted for.
    pub accountability: Accountability,
    /// Statistics with equivocal answers scored as the protocol's primary analysis
    /// (equivocal counted as negative for positives and positive for negatives: the worse case).
    pub statistics: StatsReport,
    /// Sensitivity analyses: equivocal counted as positive, and as negative.
    pub equivocal_analyses: Vec<EquivocalAnalysis>,
    /// Bounds for cases not evaluated: all counted against the truth (`as_wrong`) and all
    /// with it (`as_right`); empty when every case was evaluated.
    #[serde(default)]
    pub not_evaluated_analyses: Vec<EquivocalAnalysis>,
    /// The analysis the criteria were judged on: `primary`, or `not_evaluated_as_wrong` when
    /// the protocol's `not_evaluated_gate` is `worst_case` and cases were not evaluated.
    #[serde(default = "default_gated_on")]
    pub gated_on: String,
    /// ROC and calibration curves for the report's plots.
    pub curves: Curves,
    /// Every acceptance criterion with its verdict.
    pub criteria: Vec<CriterionResult>,
    /// Requirement and risk-control traceability.
    pub traceability: Traceability,
    /// Warnings raised during the run (small subgroups, test-set reuse, dirty tree...).
    pub warnings: Vec<String>,
    /// The release comparison (reference identity, paired statistics, flips), when the
    /// protocol compares with a reference release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<super::comparison::ComparisonEvidence>,
    /// Overall verdict: pass only if every criterion passes.
    pub verdict: Verdict,
    /// SHA-256 of the canonical JSON of the results content (accountability, statistics,
    /// equivocal analyses, criteria, verdict): no clock, no host, no paths.
    pub results_sha256: String,
    /// This run's entry in the golden set's audit ledger, which anchors the ledger (see
    /// [`super::ledger`]): a rewritten, re-chained or truncated ledger no longer holds it.
    /// Absent in evidence written before medgate recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_entry: Option<super::ledger::LedgerAnchor>,
}

fn default_gated_on() -> String {
    "primary".into()
}

/// A file identified by path and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileIdentity {
    /// Path as given (relative to the repository where possible).
    pub path: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Git blob ID of the file at HEAD, when it is tracked.
    pub git_blob: Option<String>,
}

/// Provenance of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Provenance {
    /// Git state of the repository the protocol lives in.
    pub git: Option<GitState>,
    /// medgate version.
    pub medgate_version: String,
    /// Commit medgate was built from (or `unknown`).
    pub medgate_commit: String,
    /// The exact command line, for reproduction.
    pub command: String,
    /// Host facts.
    pub host: HostInfo,
    /// Who ran it.
    pub user: String,
    /// Start time (RFC 3339, UTC).
    pub started_at: String,
    /// End time (RFC 3339, UTC).
    pub finished_at: String,
    /// Requirements and risk files with hashes.
    pub trace_files: Vec<FileIdentity>,
    /// Whether this was a `--release` run (clean tree, pinned model, locked set enforced).
    pub release: bool,
}

/// Git state of the protocol's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GitState {
    /// HEAD commit ID.
    pub commit: String,
    /// Whether tracked files differ from HEAD or untracked files exist.
    pub dirty: bool,
    /// The paths that differ (sorted).
    pub dirty_files: Vec<String>,
}

/// The golden set as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GoldenSetIdentity {
    /// Directory as given.
    pub path: String,
    /// Root hash from the LOCK (verified before the run).
    pub root_hash: String,
    /// SHA-256 of the LOCK file.
    pub lock_sha256: String,
    /// When the set was locked.
    pub locked_at: String,
    /// Cases in the manifest.
    pub cases: u64,
}

/// The model as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelIdentity {
    /// Backend.
    pub backend: BackendKind,
    /// Model name.
    pub name: String,
    /// SHA-256 of the weights (or predictions file, or pinned value for a server).
    pub sha256: Option<String>,
    /// Every effective setting.
    pub settings: serde_json::Value,
}

/// Case accountability (FDA 2007: every enrolled case accounted for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Accountability {
    /// Cases in the golden set.
    pub enrolled: u64,
    /// Cases excluded before inference, by reason.
    pub excluded: BTreeMap<String, u64>,
    /// Cases with a positive or negative answer and a score.
    pub evaluated: u64,
    /// Cases whose answer could not be parsed (analysed both ways).
    pub equivocal: u64,
    /// Cases the model could not be run on, by case ID, with reasons.
    pub not_evaluated: Vec<NotEvaluated>,
}

/// One case that could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotEvaluated {
    /// Case ID.
    pub case_id: String,
    /// Why.
    pub reason: String,
}

/// How a one-sided equivocal analysis scores equivocal answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EquivocalAs {
    /// Every equivocal answer counted as positive.
    AsPositive,
    /// Every equivocal answer counted as negative.
    AsNegative,
    /// Sensitivity analysis: every case not evaluated counted as wrong.
    NotEvaluatedAsWrong,
    /// Sensitivity analysis: every case not evaluated counted as right.
    NotEvaluatedAsRight,
}

impl EquivocalAs {
    /// The JSON spelling (`as_positive`, `as_negative`).
    pub fn as_str(self) -> &'static str {
        match self {
            EquivocalAs::AsPositive => "as_positive",
            EquivocalAs::AsNegative => "as_negative",
            EquivocalAs::NotEvaluatedAsWrong => "not_evaluated_as_wrong",
            EquivocalAs::NotEvaluatedAsRight => "not_evaluated_as_right",
        }
    }
}

/// A sensitivity analysis of equivocal answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EquivocalAnalysis {
    /// `as_positive` or `as_negative`.
    pub equivocal_as: EquivocalAs,
    /// Statistics under that rule.
    pub statistics: StatsReport,
}

/// Curves drawn in the report (computed from the primary analysis' scores).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Curves {
    /// ROC curve, from (0,0) to (1,1), one point per distinct score.
    pub roc: Vec<RocPoint>,
    /// Calibration: cases binned by score into ten equal-width bins.
    pub calibration: Vec<CalibrationBin>,
}

/// One point of the ROC curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RocPoint {
    /// False positive rate (1 - specificity).
    pub fpr: f64,
    /// True positive rate (sensitivity).
    pub tpr: f64,
    /// Score threshold giving this point (positive when score >= threshold).
    pub threshold: f64,
}

/// One calibration bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CalibrationBin {
    /// Lower edge of the score bin (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive, inclusive for the last bin).
    pub upper: f64,
    /// Cases in the bin.
    pub n: u64,
    /// Mean score in the bin (None when empty).
    pub mean_score: Option<f64>,
    /// Observed fraction positive (None when empty).
    pub observed: Option<f64>,
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The criterion is met.
    Pass,
    /// The criterion is not met.
    Fail,
    /// The metric is undefined or the subgroup too small: fails the gate.
    NotEvaluable,
}

impl Verdict {
    /// As printed in reports.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotEvaluable => "NOT EVALUABLE",
        }
    }
}

/// One acceptance criterion with its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CriterionResult {
    /// Criterion ID.
    pub id: String,
    /// Requirement verified.
    pub requirement: String,
    /// Risk control verified.
    pub risk_control: Option<String>,
    /// Metric.
    pub metric: Metric,
    /// Scope as written.
    pub scope: Scope,
    /// Which bound is tested.
    pub bound: Bound,
    /// `at_least` or `at_most` (with `goal`, the criterion's [`Goal`]).
    pub comparator: Comparator,
    /// The goal value.
    pub goal: f64,
    /// One observation per scope unit (overall, or each subgroup level), sorted.
    pub observations: Vec<Observation>,
    /// Pass only if every observation passes; not evaluable if any is not evaluable and none fails.
    pub verdict: Verdict,
    /// Rationale from the protocol.
    pub rationale: Option<String>,
    /// The statistical method that produced the tested values (interval method; for gaps the
    /// simultaneous bound and the number of pairs).
    #[serde(default)]
    pub method: String,
    /// Warnings about the criterion (e.g. PPV gated at the set's own prevalence).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl CriterionResult {
    /// The goal as one value.
    pub fn target(&self) -> Goal {
        Goal::new(self.comparator, self.goal)
    }

    /// The observation that decides the criterion, the one every rendering (console
    /// summary, JUnit, HTML, Markdown, PDF) shows as "observed": the first failing unit,
    /// else the first not evaluable unit, else the passing unit closest to the goal (the
    /// lowest tested value for `at_least`, the highest for `at_most`). None when the
    /// criterion has no units.
    pub fn deciding(&self) -> Option<&Observation> {
        let first = |v: Verdict| self.observations.iter().find(|o| o.verdict == v);
        first(Verdict::Fail)
            .or_else(|| first(Verdict::NotEvaluable))
            .or_else(|| {
                let units = self.observations.iter();
                match self.comparator {
                    Comparator::AtMost => units.max_by(|a, b| {
                        a.tested
                            .unwrap_or(f64::NEG_INFINITY)
                            .total_cmp(&b.tested.unwrap_or(f64::NEG_INFINITY))
                    }),
                    Comparator::AtLeast => units.min_by(|a, b| {
                        a.tested
                            .unwrap_or(f64::INFINITY)
                            .total_cmp(&b.tested.unwrap_or(f64::INFINITY))
                    }),
                }
            })
    }
}

/// The tested value for one scope unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Observation {
    /// `overall`, or `attribute=value`.
    pub unit: String,
    /// Cases in the unit.
    pub n: u64,
    /// Point estimate (None when undefined).
    pub estimate: Option<f64>,
    /// Lower bound.
    pub lower: Option<f64>,
    /// Upper bound.
    pub upper: Option<f64>,
    /// The value compared with the goal (the chosen bound).
    pub tested: Option<f64>,
    /// Verdict for this unit.
    pub verdict: Verdict,
    /// Why not evaluable, if so.
    pub note: Option<String>,
    /// Interval method of the tested value (`wilson`, `clopper-pearson`, `delong`,
    /// `bootstrap`, `bonferroni-newcombe`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<crate::stats::Method>,
    /// The metric's denominator at this unit (minimum sizes apply to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<u64>,
    /// Gap criteria: the pair of levels whose interval gave the tested bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<[String; 2]>,
    /// Bootstrap intervals: resamples asked for and usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resamples: Option<[u32; 2]>,
    /// Gap criteria: homogeneity p-value across the levels (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Gap criteria: p-value adjusted over the family of gaps the protocol's criteria name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<f64>,
}

/// Requirement -> criteria -> result, and risk control -> criteria -> result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Traceability {
    /// Every requirement from the requirements file (or named by a criterion).
    pub requirements: Vec<TracedItem>,
    /// Every risk control from the risks file (or named by a criterion).
    pub risk_controls: Vec<TracedItem>,
    /// Requirement IDs no criterion verifies (coverage gaps).
    pub uncovered_requirements: Vec<String>,
}

/// One traced requirement or risk control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TracedItem {
    /// ID.
    pub id: String,
    /// Text (requirement) or control description (risk).
    pub text: String,
    /// Source (e.g. user need, standard clause) or hazard.
    pub source: Option<String>,
    /// Criteria verifying it.
    pub criteria: Vec<String>,
    /// Combined verdict of those criteria (None when uncovered).
    pub verdict: Option<Verdict>,
    /// Evidence files in the bundle supporting it.
    pub evidence: Vec<String>,
}
