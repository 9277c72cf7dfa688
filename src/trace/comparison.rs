//! Release comparison: the new run's cases matched with a reference release's, the paired
//! statistics ([`crate::stats::compare`]), the criteria on `*_difference` metrics, and the
//! list of changed decisions (flips) for clinical review.
//!
//! This module owns what a comparison *means*; it reads a bundle's case table but runs no
//! model and verifies nothing itself (`pipeline` verifies the reference bundle with the verify
//! stage before calling [`check_reference`]; `verify` recomputes [`compare`] from the two case
//! tables in the new bundle).
//!
//! The reference is either an earlier bundle (`comparison.reference`, [`load_reference`]) or
//! a second model run by `pipeline` in the same run (`comparison.reference_model`, under
//! [`crate::protocol::Protocol::reference_protocol`]; its cases from [`in_run_reference`], its
//! answers journaled in the bundle's `reference/journal.jsonl`, which `verify` reads back).
//! Both feed the same [`compare`].
//!
//! # Rules
//! - A bundle reference must be the same protocol (ID) on the same locked golden set (root
//!   hash), pinned by its `results_sha256`; every case is matched by case ID **and** image
//!   hash, and labels must agree. Any mismatch refuses the comparison with every reason named.
//!   An in-run reference runs on the new run's own verified cases.
//! - Decisions: the new model's at the protocol's threshold, the reference's at the threshold
//!   recorded in its evidence (a bundle) or its protocol's (`reference_model.threshold`, else
//!   `task.threshold`, for an in-run reference). An equivocal answer counts against the truth (a wrong
//!   decision; for AUROC a score beyond every real score of that model, on the wrong side).
//!   A case not evaluated by either model is left out of the paired analysis and listed.
//! - A difference criterion tests `new - reference` with the criterion's bound of the paired
//!   interval (Newcombe 1998 method 10 for sensitivity and specificity, paired DeLong for
//!   AUROC): `bound: lower, at_least: -0.05` is non-inferiority with a 5-point margin,
//!   `at_least: 0` superiority. An undefined difference, a denominator below
//!   `min_subgroup_size`, or a degenerate DeLong variance is NOT EVALUABLE.
//! - Flips (evidence, `flips.csv`) and their counts by subgroup carry only the protocol's
//!   declared subgroup attributes, never the golden set's other manifest columns.
//! - Minimum sizes apply to the difference's own denominator (positives for sensitivity,
//!   negatives for specificity, the smaller class for AUROC), overall as well as per level.
//! - Multiplicity: the difference criteria's observations form one family; their p-values
//!   (mid-p McNemar, DeLong z-test) are adjusted with the protocol's method (Holm or
//!   Bonferroni) and recorded on each observation (`p_value`, `p_adjusted`) and in
//!   `family`, as information. The verdict is decided by the interval only, as stated in the
//!   evidence (`decision`) and in each criterion's `method`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::harness::CaseStatus;
use crate::protocol::{Bound, ChangeControlSpec, Comparator, Criterion, Metric, Protocol, Scope};
use crate::stats::compare::{ComparisonScope, ModelAnswers, ReleaseComparison, compare_releases};
use crate::stats::{Factor, Method};

use super::analysis::CaseRow;
use super::criteria::combine;
use super::evidence::{CriterionResult, Evidence, Observation, Verdict};

/// Folder of the new bundle holding the reference bundle's copied files.
pub const REFERENCE_DIR: &str = "reference";
/// The flip list for clinical review.
pub const FLIPS_FILE: &str = "flips.csv";

/// One case of a bundle as the comparison needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedCase {
    /// Case ID.
    pub case_id: String,
    /// Image hash recorded for the case.
    pub image_sha256: Option<String>,
    /// Ground truth.
    pub label: bool,
    /// Outcome status.
    pub status: CaseStatus,
    /// Score when the model answered.
    pub score: Option<f64>,
}

/// The reference release: its identity and its cases.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceCases {
    /// Who the reference is.
    pub identity: ReferenceIdentity,
    /// Its cases, in its manifest order.
    pub cases: Vec<PairedCase>,
}

/// Where the reference release's answers come from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceSource {
    /// An earlier verified bundle (`comparison.reference`), copied into `reference/`.
    #[default]
    Bundle,
    /// A second model run in the same run (`comparison.reference_model`), journaled into
    /// `reference/journal.jsonl`.
    InRun,
}

impl ReferenceSource {
    /// True for [`ReferenceSource::Bundle`] (not written, so that bundle comparisons keep
    /// their evidence unchanged).
    pub fn is_bundle(&self) -> bool {
        *self == ReferenceSource::Bundle
    }
}

/// The identity of the reference release, as recorded in the new evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReferenceIdentity {
    /// Name from the protocol's `comparison.reference.name` (or `reference_model.name`).
    pub name: Option<String>,
    /// `bundle` (absent) or `in_run`.
    #[serde(default, skip_serializing_if = "ReferenceSource::is_bundle")]
    pub source: ReferenceSource,
    /// The reference run ID (absent for an in-run reference: it is this run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Its protocol ID.
    pub protocol: String,
    /// Its protocol version.
    pub protocol_version: String,
    /// Its `results_sha256` (equal to the protocol's pin; absent for an in-run reference,
    /// whose answers are covered by this bundle's SHA256SUMS and this run's results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_sha256: Option<String>,
    /// Its model backend.
    pub model_backend: String,
    /// Its model name.
    pub model_name: String,
    /// Its model weights hash.
    pub model_sha256: Option<String>,
    /// Its golden-set root hash.
    pub golden_set_root: String,
    /// medgate version that produced it.
    pub medgate_version: String,
    /// Its operating point.
    pub threshold: f64,
    /// Its recorded verdict (absent for an in-run reference: it has no evidence of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl ReferenceIdentity {
    /// The identity recorded in a reference bundle's evidence.
    pub fn of(evidence: &Evidence, name: Option<String>) -> Self {
        ReferenceIdentity {
            name,
            source: ReferenceSource::Bundle,
            run_id: Some(evidence.run_id.clone()),
            protocol: evidence.protocol.protocol.clone(),
            protocol_version: evidence.protocol.version.clone(),
            results_sha256: Some(evidence.results_sha256.clone()),
            model_backend: evidence.model.backend.to_string(),
            model_name: evidence.model.name.clone(),
            model_sha256: evidence.model.sha256.clone(),
            golden_set_root: evidence.golden_set.root_hash.clone(),
            medgate_version: evidence.provenance.medgate_version.clone(),
            threshold: evidence.statistics.threshold,
            verdict: Some(evidence.verdict),
        }
    }

    /// The identity of an in-run reference model: `protocol`'s `comparison.reference_model`
    /// run under [`Protocol::reference_protocol`] by a backend named `model_name` with weights
    /// `model_sha256`, on the set with root `golden_set_root`, by medgate `medgate_version`.
    pub fn in_run(
        protocol: &Protocol,
        model_name: String,
        model_sha256: Option<String>,
        golden_set_root: String,
        medgate_version: String,
    ) -> Option<Self> {
        let rm = protocol.comparison.as_ref()?.reference_model.as_ref()?;
        let rp = protocol.reference_protocol()?;
        Some(ReferenceIdentity {
            name: rm.name.clone(),
            source: ReferenceSource::InRun,
            run_id: None,
            protocol: protocol.protocol.clone(),
            protocol_version: protocol.version.clone(),
            results_sha256: None,
            model_backend: rp.model.backend_name().to_string(),
            model_name,
            model_sha256,
            golden_set_root,
            medgate_version,
            threshold: rp.task.threshold,
            verdict: None,
        })
    }
}

/// Direction of a changed decision.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FlipDirection {
    /// A positive the reference found and the new model misses.
    NewFalseNegative,
    /// A negative the reference cleared and the new model flags.
    NewFalsePositive,
    /// A positive the reference missed and the new model finds.
    NewTruePositive,
    /// A negative the reference flagged and the new model clears.
    NewTrueNegative,
}

impl FlipDirection {
    /// As written in `flips.csv` and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FlipDirection::NewFalseNegative => "new_false_negative",
            FlipDirection::NewFalsePositive => "new_false_positive",
            FlipDirection::NewTruePositive => "new_true_positive",
            FlipDirection::NewTrueNegative => "new_true_negative",
        }
    }
}

/// One changed decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Flip {
    /// Case ID.
    pub case_id: String,
    /// Ground truth.
    pub label: bool,
    /// Which way the decision changed.
    pub direction: FlipDirection,
    /// The reference's score (`None` when equivocal).
    pub reference_score: Option<f64>,
    /// The reference's answer: `positive`, `negative` or `equivocal`.
    pub reference_answer: String,
    /// The new model's score.
    pub new_score: Option<f64>,
    /// The new model's answer.
    pub new_answer: String,
    /// The case's values of the protocol's declared subgroup attributes (only those).
    pub attributes: BTreeMap<String, String>,
}

/// A case left out of the paired analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExcludedCase {
    /// Case ID.
    pub case_id: String,
    /// Why (`not evaluated by the new model`, `... by the reference`).
    pub reason: String,
}

/// The test behind a comparison p-value, as written in the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PairedTest {
    /// Mid-p McNemar test on the discordant pairs (paired sensitivity or specificity).
    MidPMcnemar,
    /// DeLong z test of the paired AUROC difference.
    DelongZ,
}

/// One p-value of the comparison family with its multiplicity adjustment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FamilyMember {
    /// Criterion ID.
    pub criterion: String,
    /// Scope unit (`overall`, `attribute=value`).
    pub unit: String,
    /// `mid_p_mcnemar` or `delong_z`.
    pub test: PairedTest,
    /// Unadjusted two-sided p-value.
    pub p_value: f64,
    /// After the protocol's multiplicity adjustment over the family.
    pub p_adjusted: f64,
}

/// Counts of changed decisions in one scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FlipSummary {
    /// `overall` or `attribute=value`.
    pub unit: String,
    /// Cases in the scope.
    pub n: u64,
    /// Counts by direction.
    pub counts: crate::stats::FlipCounts,
}

/// The comparison recorded in `evidence.json` (and recomputed by `verify`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ComparisonEvidence {
    /// The reference release.
    pub reference: ReferenceIdentity,
    /// The change-control identity of the modification.
    pub change_control: Option<ChangeControlSpec>,
    /// Cases in both analyses.
    pub matched_cases: u64,
    /// Cases left out (not evaluated by either model), sorted by case ID.
    pub excluded: Vec<ExcludedCase>,
    /// How the criteria on differences are decided.
    pub decision: String,
    /// Paired statistics overall and per subgroup level (new - reference).
    pub statistics: ReleaseComparison,
    /// Flip counts overall and per level.
    pub flip_summary: Vec<FlipSummary>,
    /// Every changed decision: new false negatives first, then new false positives, new true
    /// positives, new true negatives; by case ID within each.
    pub flips: Vec<Flip>,
    /// The multiplicity family of the difference criteria (informational p-values).
    pub family: Vec<FamilyMember>,
}

/// Reads the case table of a bundle (`cases.parquet`) with the image hashes.
pub fn read_paired_cases(path: &Path) -> Result<Vec<PairedCase>> {
    let rows = super::bundle::read_cases(path)?;
    let df = crate::table::read_table(path)?;
    let images: Vec<Option<String>> = match df.column("image_sha256") {
        Ok(c) => c
            .cast(&DataType::String)
            .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?
            .str()
            .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?
            .iter()
            .map(|v| v.map(String::from))
            .collect(),
        Err(_) => vec![None; rows.len()],
    };
    Ok(rows
        .into_iter()
        .zip(images)
        .map(|(r, image_sha256)| PairedCase {
            case_id: r.case_id,
            image_sha256,
            label: r.label,
            status: r.status,
            score: r.score,
        })
        .collect())
}

/// Reads a bundle's `evidence.json` and `cases.parquet` as a comparison reference (the
/// bundle itself for `medgate run`, its `reference/` copy for `medgate verify`). The bundle
/// is not verified here: `pipeline` verifies it with the verify stage first.
pub fn load_reference(dir: &Path, name: Option<String>) -> Result<(Evidence, ReferenceCases)> {
    let ev_path = dir.join(super::bundle::EVIDENCE_FILE);
    let text = std::fs::read_to_string(&ev_path).map_err(|e| Error::io(&ev_path, e))?;
    let evidence: Evidence = serde_json::from_str(&text).map_err(|e| {
        Error::input(format!(
            "{}: not a medgate evidence record: {e}",
            ev_path.display()
        ))
    })?;
    let cases = read_paired_cases(&dir.join(super::bundle::CASES_FILE))?;
    let identity = ReferenceIdentity::of(&evidence, name);
    Ok((evidence, ReferenceCases { identity, cases }))
}

/// For `medgate verify`: loads the reference copy in `bundle/reference/`, checks that it is
/// the pinned reference and that its recorded results are what its own case table and
/// protocol give (so the new bundle verifies on its own), reporting each check through
/// `check(name, ok, detail)`. `None` when the copy cannot be read (reported as a failed
/// check).
pub fn check_reference_copy(
    bundle: &Path,
    protocol: &Protocol,
    spec: &crate::protocol::ReferenceSpec,
    check: &mut dyn FnMut(&str, bool, String),
) -> Result<Option<ReferenceCases>> {
    let dir = bundle.join(REFERENCE_DIR);
    // The bundle is hostile input: each file of the copy must be a regular file inside it
    // (no symlink anywhere on its path) before it is parsed.
    for name in [
        super::bundle::EVIDENCE_FILE,
        super::bundle::CASES_FILE,
        super::bundle::PROTOCOL_FILE,
    ] {
        let rel = Path::new(REFERENCE_DIR).join(name);
        if let Err(e) = crate::fsx::open_inside(bundle, &rel) {
            check(
                "comparison.reference_copy",
                false,
                format!("the reference copy in {REFERENCE_DIR}/ cannot be read: {e}"),
            );
            return Ok(None);
        }
    }
    let (evidence, cases) = match load_reference(&dir, spec.name.clone()) {
        Ok(v) => v,
        Err(e) => {
            check(
                "comparison.reference_copy",
                false,
                format!("the reference copy in {REFERENCE_DIR}/ cannot be read: {e}"),
            );
            return Ok(None);
        }
    };
    let pinned = evidence.results_sha256 == spec.results_sha256;
    check(
        "comparison.reference_pin",
        pinned,
        format!(
            "{REFERENCE_DIR}/evidence.json results_sha256 {} {} the protocol's pin {}",
            evidence.results_sha256,
            if pinned { "equals" } else { "differs from" },
            spec.results_sha256
        ),
    );
    let same_set = evidence.protocol.protocol == protocol.protocol;
    check(
        "comparison.reference_protocol",
        same_set,
        format!(
            "reference protocol `{}`, this protocol `{}`",
            evidence.protocol.protocol, protocol.protocol
        ),
    );
    let ref_protocol_path = dir.join(super::bundle::PROTOCOL_FILE);
    let recomputed = std::fs::read_to_string(&ref_protocol_path)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            crate::protocol::parse_protocol(&ref_protocol_path.display().to_string(), &text)
                .map_err(|d| format!("{} problem(s) parsing it", d.len()))
        })
        .and_then(|rp| {
            if rp.comparison.is_some() {
                return Err("the reference is itself a comparison; verify its own bundle".into());
            }
            let rows = super::bundle::read_cases(&dir.join(super::bundle::CASES_FILE))
                .map_err(|e| e.to_string())?;
            super::analysis::analyze(&rp, &rows)
                .map(|a| a.results_sha256)
                .map_err(|e| e.to_string())
        });
    match recomputed {
        Ok(h) => check(
            "comparison.reference_recomputed",
            h == evidence.results_sha256,
            format!(
                "the reference's results recomputed from {REFERENCE_DIR}/cases.parquet and {REFERENCE_DIR}/protocol.yaml hash to {h}, recorded {}",
                evidence.results_sha256
            ),
        ),
        Err(e) => check(
            "comparison.reference_recomputed",
            false,
            format!("the reference's results cannot be recomputed: {e}"),
        ),
    }
    Ok(Some(cases))
}

/// Refuses a reference that is not the same protocol on the same locked set, not the pinned
/// results, or whose cases do not match the new run's (by case ID, image hash and label).
/// Every reason is named in one error; nothing has been written when this fails.
pub fn check_reference(
    protocol: &Protocol,
    golden_set_root: &str,
    new_cases: &[PairedCase],
    reference: &Evidence,
    reference_cases: &[PairedCase],
) -> Result<()> {
    let Some(spec) = protocol
        .comparison
        .as_ref()
        .and_then(|c| c.reference.as_ref())
    else {
        return Err(Error::Internal("no comparison reference bundle".into()));
    };
    let mut reasons: Vec<String> = Vec::new();
    if reference.results_sha256 != spec.results_sha256 {
        reasons.push(format!(
            "its results_sha256 is {}, the protocol pins {}",
            reference.results_sha256, spec.results_sha256
        ));
    }
    if reference.golden_set.root_hash != golden_set_root {
        reasons.push(format!(
            "it was run on another golden set: reference root {}, this run's root {}",
            reference.golden_set.root_hash, golden_set_root
        ));
    }
    if reference.protocol.protocol != protocol.protocol {
        reasons.push(format!(
            "it belongs to another protocol: `{}`, this protocol is `{}`",
            reference.protocol.protocol, protocol.protocol
        ));
    }
    reasons.extend(match_problems(new_cases, reference_cases));
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Error::input_hint(
            format!(
                "reference bundle {} refused: {}",
                spec.bundle.display(),
                reasons.join("; ")
            ),
            "a comparison needs the earlier bundle of the same protocol on the same locked set, pinned by its results_sha256",
        ))
    }
}

/// Case-matching problems between the new and the reference case tables (at most 10 named
/// per kind, then a count).
pub fn match_problems(new_cases: &[PairedCase], reference_cases: &[PairedCase]) -> Vec<String> {
    let by_id: HashMap<&str, &PairedCase> = reference_cases
        .iter()
        .map(|c| (c.case_id.as_str(), c))
        .collect();
    let new_ids: HashMap<&str, ()> = new_cases.iter().map(|c| (c.case_id.as_str(), ())).collect();
    let mut missing = Vec::new();
    let mut image = Vec::new();
    let mut label = Vec::new();
    for c in new_cases {
        match by_id.get(c.case_id.as_str()) {
            None => missing.push(c.case_id.clone()),
            Some(r) => {
                if r.image_sha256 != c.image_sha256 {
                    image.push(c.case_id.clone());
                }
                if r.label != c.label {
                    label.push(format!(
                        "{} ({} there, {} here)",
                        c.case_id, r.label as u8, c.label as u8
                    ));
                }
            }
        }
    }
    let extra: Vec<String> = reference_cases
        .iter()
        .filter(|c| !new_ids.contains_key(c.case_id.as_str()))
        .map(|c| c.case_id.clone())
        .collect();
    let name = |what: &str, v: &[String]| -> Option<String> {
        if v.is_empty() {
            return None;
        }
        let shown: Vec<&str> = v.iter().take(10).map(String::as_str).collect();
        let more = if v.len() > 10 {
            format!(" and {} more", v.len() - 10)
        } else {
            String::new()
        };
        Some(format!(
            "{} case(s) {what}: {}{more}",
            v.len(),
            shown.join(", ")
        ))
    };
    [
        name("missing from the reference", &missing),
        name("in the reference but not in this run", &extra),
        name("with a different image hash", &image),
        name("with a different label", &label),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The in-run reference model's cases: its harness results on the new run's locked set
/// (same cases, in manifest order, so case IDs, labels and image hashes match by
/// construction).
pub fn in_run_reference(
    identity: ReferenceIdentity,
    set: &crate::golden::GoldenSet,
    results: &[crate::harness::CaseResult],
) -> ReferenceCases {
    let cases = set
        .cases
        .iter()
        .zip(results)
        .map(|(c, r)| PairedCase {
            case_id: c.case_id.clone(),
            image_sha256: Some(c.image_sha256.clone()),
            label: c.label,
            status: r.status(),
            score: r.prediction().map(|p| p.score),
        })
        .collect();
    ReferenceCases { identity, cases }
}

/// A model's decision on one case: `Some(positive?)`, or `None` when equivocal.
fn decision(status: &CaseStatus, score: Option<f64>, threshold: f64) -> Option<bool> {
    match (status, score) {
        (CaseStatus::Evaluated, Some(s)) => Some(s >= threshold),
        _ => None,
    }
}

fn answer(d: Option<bool>) -> String {
    match d {
        Some(true) => "positive".into(),
        Some(false) => "negative".into(),
        None => "equivocal".into(),
    }
}

/// Computes the comparison and the difference criteria' results. `rows` and `new_images`
/// are the new run's cases (parallel slices); every one must match a reference case.
pub fn compare(
    protocol: &Protocol,
    rows: &[CaseRow],
    new_images: &[Option<String>],
    reference: &ReferenceCases,
) -> Result<(ComparisonEvidence, Vec<CriterionResult>)> {
    let new_cases: Vec<PairedCase> = rows
        .iter()
        .zip(new_images)
        .map(|(r, img)| PairedCase {
            case_id: r.case_id.clone(),
            image_sha256: img.clone(),
            label: r.label,
            status: r.status,
            score: r.score,
        })
        .collect();
    let problems = match_problems(&new_cases, &reference.cases);
    if !problems.is_empty() {
        return Err(Error::input(format!(
            "the reference cases do not match: {}",
            problems.join("; ")
        )));
    }
    let by_id: HashMap<&str, &PairedCase> = reference
        .cases
        .iter()
        .map(|c| (c.case_id.as_str(), c))
        .collect();
    let mut excluded = Vec::new();
    let mut pairs: Vec<(&CaseRow, &PairedCase)> = Vec::new();
    for r in rows {
        let rc = by_id[r.case_id.as_str()];
        let reason = match (
            r.status == CaseStatus::NotEvaluated,
            rc.status == CaseStatus::NotEvaluated,
        ) {
            (true, true) => Some("not evaluated by either model"),
            (true, false) => Some("not evaluated by the new model"),
            (false, true) => Some("not evaluated by the reference"),
            (false, false) => None,
        };
        match reason {
            Some(why) => excluded.push(ExcludedCase {
                case_id: r.case_id.clone(),
                reason: why.into(),
            }),
            None => pairs.push((r, rc)),
        }
    }
    excluded.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    let labels: Vec<bool> = pairs.iter().map(|(r, _)| r.label).collect();
    let new_t = protocol.task.threshold;
    let ref_t = reference.identity.threshold;
    let new_dec: Vec<Option<bool>> = pairs
        .iter()
        .map(|(r, _)| decision(&r.status, r.score, new_t))
        .collect();
    let ref_dec: Vec<Option<bool>> = pairs
        .iter()
        .map(|(_, c)| decision(&c.status, c.score, ref_t))
        .collect();
    let new_scores = imputed_scores(&labels, pairs.iter().map(|(r, _)| (&r.status, r.score)));
    let ref_scores = imputed_scores(&labels, pairs.iter().map(|(_, c)| (&c.status, c.score)));
    let against = |d: &[Option<bool>]| -> Vec<bool> {
        d.iter()
            .zip(&labels)
            .map(|(d, &y)| d.unwrap_or(!y))
            .collect()
    };
    let (new_pred, ref_pred) = (against(&new_dec), against(&ref_dec));
    let factors: Vec<Factor> = protocol
        .subgroups
        .attributes
        .iter()
        .map(|a| {
            Factor::from_values(
                a,
                pairs
                    .iter()
                    .map(|(r, _)| r.attributes.get(a).map(String::as_str).unwrap_or("")),
            )
        })
        .collect();
    let statistics = compare_releases(
        &labels,
        ModelAnswers {
            predicted: &new_pred,
            scores: &new_scores,
        },
        ModelAnswers {
            predicted: &ref_pred,
            scores: &ref_scores,
        },
        &factors,
        protocol.statistics.confidence,
    )
    .map_err(|e| Error::input(format!("comparison statistics: {e}")))?;
    let mut flips = Vec::new();
    for (i, (r, c)) in pairs.iter().enumerate() {
        let y = labels[i];
        let (new_right, ref_right) = (new_pred[i] == y, ref_pred[i] == y);
        let direction = match (y, new_right, ref_right) {
            (true, false, true) => FlipDirection::NewFalseNegative,
            (false, false, true) => FlipDirection::NewFalsePositive,
            (true, true, false) => FlipDirection::NewTruePositive,
            (false, true, false) => FlipDirection::NewTrueNegative,
            _ => continue,
        };
        flips.push(Flip {
            case_id: r.case_id.clone(),
            label: y,
            direction,
            reference_score: c.score.filter(|_| ref_dec[i].is_some()),
            reference_answer: answer(ref_dec[i]),
            new_score: r.score.filter(|_| new_dec[i].is_some()),
            new_answer: answer(new_dec[i]),
            attributes: declared_attributes(protocol, &r.attributes),
        });
    }
    flips.sort_by(|a, b| (a.direction, &a.case_id).cmp(&(b.direction, &b.case_id)));
    let mut flip_summary = vec![FlipSummary {
        unit: "overall".into(),
        n: statistics.overall.n,
        counts: statistics.overall.flips,
    }];
    for s in &statistics.subgroups {
        flip_summary.push(FlipSummary {
            unit: unit_name(s),
            n: s.n,
            counts: s.flips,
        });
    }
    let (criteria, family) = evaluate(protocol, &statistics);
    let evidence = ComparisonEvidence {
        reference: reference.identity.clone(),
        change_control: protocol.change_control.clone(),
        matched_cases: pairs.len() as u64,
        excluded,
        decision: "Each difference criterion is decided by its bound of the paired interval \
                   (new - reference): Newcombe (1998) method 10 for sensitivity and \
                   specificity, paired DeLong (1988) for AUROC; McNemar exact and mid-p \
                   and DeLong z-test p-values are reported, multiplicity-adjusted over the \
                   family, and decide nothing"
            .into(),
        statistics,
        flip_summary,
        flips,
        family,
    };
    Ok((evidence, criteria))
}

/// Scores for AUROC: a model's own scores, and for an equivocal answer a score strictly
/// beyond every real score of that model on the wrong side of the truth.
fn imputed_scores<'a>(
    labels: &[bool],
    cases: impl Iterator<Item = (&'a CaseStatus, Option<f64>)>,
) -> Vec<f64> {
    let cases: Vec<(&CaseStatus, Option<f64>)> = cases.collect();
    let real = cases
        .iter()
        .filter(|(s, _)| **s == CaseStatus::Evaluated)
        .filter_map(|(_, v)| *v);
    let (lo, hi) = real.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo - 1.0, hi + 1.0)
    } else {
        (-1.0, 1.0)
    };
    cases
        .iter()
        .zip(labels)
        .map(|((s, v), &y)| match (s, v) {
            (CaseStatus::Evaluated, Some(v)) => *v,
            _ => {
                if y {
                    lo
                } else {
                    hi
                }
            }
        })
        .collect()
}

/// The protocol's declared subgroup attributes of a case, and nothing else: the golden set's
/// other manifest columns (free text, identifiers an auditor did not ask for) stay out of the
/// evidence and `flips.csv`, and the flips read back from `cases.parquet` (which holds only
/// the declared attributes) by `verify` are the same.
fn declared_attributes(
    protocol: &Protocol,
    attributes: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    protocol
        .subgroups
        .attributes
        .iter()
        .filter_map(|a| attributes.get(a).map(|v| (a.clone(), v.clone())))
        .collect()
}

fn unit_name(s: &ComparisonScope) -> String {
    match (&s.attribute, &s.value) {
        (Some(a), Some(v)) => format!("{a}={v}"),
        _ => "overall".into(),
    }
}

/// One unit's tested interval, or why it is not evaluable.
struct Tested {
    estimate: f64,
    lower: f64,
    upper: f64,
    /// Mid-p McNemar or DeLong z-test p-value.
    p_value: Option<f64>,
    /// Which test gave `p_value`.
    test: PairedTest,
    /// `newcombe_paired` or `delong_paired`.
    method: Method,
    /// The difference's own denominator: positives, negatives, or the smaller class.
    denominator: u64,
    denominator_name: &'static str,
}

fn tested(s: &ComparisonScope, metric: Metric) -> std::result::Result<Tested, String> {
    let undefined = || "difference undefined (a class is absent)".to_string();
    let prop = |d: &crate::stats::PairedProportion, name: &'static str| Tested {
        estimate: d.difference,
        lower: d.lower,
        upper: d.upper,
        p_value: Some(d.mid_p),
        test: PairedTest::MidPMcnemar,
        method: Method::NewcombePaired,
        denominator: d.n,
        denominator_name: name,
    };
    match metric.difference_of() {
        Some(Metric::Sensitivity) => s
            .sensitivity
            .as_ref()
            .map(|d| prop(d, "positives"))
            .ok_or_else(undefined),
        Some(Metric::Specificity) => s
            .specificity
            .as_ref()
            .map(|d| prop(d, "negatives"))
            .ok_or_else(undefined),
        Some(Metric::Auroc) => match &s.auroc {
            None => Err(undefined()),
            Some(a) if a.degenerate => Err(
                "degenerate interval: zero DeLong variance of the difference (identical rankings, perfect separation or too few cases)"
                    .into(),
            ),
            Some(a) => Ok(Tested {
                estimate: a.difference,
                lower: a.lower,
                upper: a.upper,
                p_value: a.p_value,
                test: PairedTest::DelongZ,
                method: Method::DelongPaired,
                denominator: a.positives.min(a.negatives),
                denominator_name: "cases of the smaller class",
            }),
        },
        _ => Err("not a difference metric".into()),
    }
}

/// Evaluates the protocol's difference criteria against the comparison.
fn evaluate(
    protocol: &Protocol,
    cmp: &ReleaseComparison,
) -> (Vec<CriterionResult>, Vec<FamilyMember>) {
    let min = protocol.statistics.min_subgroup_size as u64;
    let mut results: Vec<CriterionResult> = Vec::new();
    let mut family = Vec::new();
    // (criterion index, observation index) of each family member.
    let mut slots = Vec::new();
    for c in protocol
        .acceptance
        .iter()
        .filter(|c| c.metric.difference_of().is_some())
    {
        let scopes: Vec<&ComparisonScope> = match &c.scope {
            Scope::Overall => vec![&cmp.overall],
            Scope::EachSubgroup => cmp.subgroups.iter().collect(),
            named => {
                let name = named.to_string();
                cmp.subgroups
                    .iter()
                    .filter(|s| s.attribute.as_deref() == Some(name.as_str()))
                    .collect()
            }
        };
        let mut observations = Vec::new();
        let mut method: Option<Method> = None;
        for s in scopes {
            let unit = unit_name(s);
            let obs = match tested(s, c.metric) {
                Err(why) => observation(unit.clone(), s.n, None, c, Some(why)),
                Ok(t) if t.denominator < min => {
                    let why = format!(
                        "{} {} (the difference's own denominator) below the protocol's minimum size {min}",
                        t.denominator, t.denominator_name
                    );
                    observation(unit.clone(), s.n, Some(&t), c, Some(why))
                }
                Ok(t) => {
                    method = Some(t.method);
                    if let Some(p) = t.p_value {
                        slots.push((results.len(), observations.len()));
                        family.push(FamilyMember {
                            criterion: c.id.clone(),
                            unit: unit.clone(),
                            test: t.test,
                            p_value: p,
                            p_adjusted: p,
                        });
                    }
                    observation(unit.clone(), s.n, Some(&t), c, None)
                }
            };
            observations.push(obs);
        }
        let verdict = combine(observations.iter().map(|o| o.verdict));
        let (comparator, goal) = match c.goal() {
            Some(g) => (g.comparator(), g.value()),
            None => (Comparator::AtLeast, 0.0),
        };
        let method = match method {
            Some(Method::NewcombePaired) => {
                "paired difference new - reference: Newcombe (1998) method 10 interval; mid-p McNemar p informational"
            }
            Some(Method::DelongPaired) => {
                "paired AUROC difference new - reference: DeLong (1988) interval; z-test p informational"
            }
            _ => "paired difference new - reference",
        };
        results.push(CriterionResult {
            id: c.id.clone(),
            requirement: c.requirement.clone(),
            risk_control: c.risk_control.clone(),
            metric: c.metric,
            scope: c.scope.clone(),
            bound: c.bound,
            comparator,
            goal,
            observations,
            verdict,
            rationale: c.rationale.clone(),
            method: method.into(),
            warnings: Vec::new(),
        });
    }
    let ps: Vec<f64> = family.iter().map(|f| f.p_value).collect();
    let adjusted = crate::stats::multiplicity::adjust(&ps, protocol.statistics.multiplicity);
    for ((f, a), (ci, oi)) in family.iter_mut().zip(adjusted).zip(slots) {
        f.p_adjusted = a;
        results[ci].observations[oi].p_adjusted = Some(a);
    }
    (results, family)
}

fn observation(
    unit: String,
    n: u64,
    t: Option<&Tested>,
    c: &Criterion,
    not_evaluable: Option<String>,
) -> Observation {
    let tested = t.map(|t| match c.bound {
        Bound::Point => t.estimate,
        Bound::Lower => t.lower,
        Bound::Upper => t.upper,
    });
    let verdict = match (tested, &not_evaluable) {
        (Some(v), None) => {
            let pass = match (c.at_least, c.at_most) {
                (Some(g), _) => v >= g,
                (None, Some(g)) => v <= g,
                (None, None) => false,
            };
            if pass { Verdict::Pass } else { Verdict::Fail }
        }
        _ => Verdict::NotEvaluable,
    };
    Observation {
        unit,
        n,
        estimate: t.map(|x| x.estimate),
        lower: t.map(|x| x.lower),
        upper: t.map(|x| x.upper),
        tested,
        verdict,
        note: not_evaluable,
        method: t.map(|x| x.method),
        denominator: t.map(|x| x.denominator),
        decided_by: None,
        resamples: None,
        p_value: t.and_then(|x| x.p_value),
        p_adjusted: None,
    }
}

/// Writes the comparison's files into the new bundle `out_dir`: the reference bundle's
/// evidence, cases and protocol copied into [`REFERENCE_DIR`] (so the new bundle verifies on
/// its own) and [`FLIPS_FILE`].
pub fn write_bundle_files(
    out_dir: &Path,
    reference_dir: &Path,
    cmp: &ComparisonEvidence,
    set: &crate::golden::GoldenSet,
    protocol: &Protocol,
) -> Result<()> {
    use super::bundle::{CASES_FILE, EVIDENCE_FILE, PROTOCOL_FILE};
    let copy_dir = out_dir.join(REFERENCE_DIR);
    std::fs::create_dir_all(&copy_dir).map_err(|e| Error::io(&copy_dir, e))?;
    for f in [EVIDENCE_FILE, CASES_FILE, PROTOCOL_FILE] {
        let (from, to) = (reference_dir.join(f), copy_dir.join(f));
        std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
    }
    write_flips_file(out_dir, cmp, set, protocol)
}

/// Writes [`FLIPS_FILE`] into the new bundle `out_dir` (for an in-run reference model, the
/// only comparison file besides the reference journal the harness wrote).
pub fn write_flips_file(
    out_dir: &Path,
    cmp: &ComparisonEvidence,
    set: &crate::golden::GoldenSet,
    protocol: &Protocol,
) -> Result<()> {
    let images: HashMap<String, String> = set
        .cases
        .iter()
        .map(|c| {
            (
                c.case_id.clone(),
                c.image.to_string_lossy().replace('\\', "/"),
            )
        })
        .collect();
    write_flips(
        &out_dir.join(FLIPS_FILE),
        cmp,
        &images,
        &protocol.subgroups.attributes,
    )
}

/// Writes `flips.csv`: case_id, image, label, direction, reference score and answer, new score
/// and answer, one column per subgroup attribute. `images` maps case ID to the image path in
/// the golden set.
fn write_flips(
    path: &Path,
    cmp: &ComparisonEvidence,
    images: &HashMap<String, String>,
    attributes: &[String],
) -> Result<()> {
    let mut out = String::from(
        "case_id,image,label,direction,reference_score,reference_answer,new_score,new_answer",
    );
    for a in attributes {
        out.push(',');
        out.push_str(&csv_field(a));
    }
    out.push('\n');
    let score = |s: Option<f64>| s.map(|v| format!("{v}")).unwrap_or_default();
    for f in &cmp.flips {
        let fields = [
            csv_field(&f.case_id),
            csv_field(images.get(&f.case_id).map(String::as_str).unwrap_or("")),
            (f.label as u8).to_string(),
            f.direction.as_str().to_string(),
            score(f.reference_score),
            f.reference_answer.clone(),
            score(f.new_score),
            f.new_answer.clone(),
        ];
        out.push_str(&fields.join(","));
        for a in attributes {
            out.push(',');
            out.push_str(&csv_field(
                f.attributes.get(a).map(String::as_str).unwrap_or(""),
            ));
        }
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// RFC 4180 quoting, and a leading `'` before `= + - @` so that a spreadsheet opening the
/// file does not execute a formula from a case ID or attribute value.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, img: &str, label: bool) -> PairedCase {
        PairedCase {
            case_id: id.into(),
            image_sha256: Some(img.into()),
            label,
            status: CaseStatus::Evaluated,
            score: Some(0.5),
        }
    }

    #[test]
    fn mismatched_cases_are_named() {
        let new = [
            case("a", "h1", true),
            case("b", "h2", false),
            case("c", "h3", true),
        ];
        let reference = [
            case("a", "h1", false),
            case("b", "hX", false),
            case("d", "h4", true),
        ];
        let p = match_problems(&new, &reference);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].contains("missing from the reference: c"));
        assert!(p[1].contains("not in this run: d"));
        assert!(p[2].contains("different image hash: b"));
        assert!(p[3].contains("different label: a (0 there, 1 here)"));
        assert!(match_problems(&new, &new).is_empty());
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    }

    #[test]
    fn equivocal_scores_lie_beyond_every_real_score() {
        let labels = [true, false, true, false];
        let st = [
            CaseStatus::Evaluated,
            CaseStatus::Evaluated,
            CaseStatus::Equivocal,
            CaseStatus::Equivocal,
        ];
        let sc = [Some(1.0), Some(0.0), None, None];
        let s = imputed_scores(&labels, st.iter().zip(sc));
        assert_eq!(s, vec![1.0, 0.0, -1.0, 2.0]);
    }
}
