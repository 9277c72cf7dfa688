//! From per-case results to verdicts: the one function both `medgate run` and
//! `medgate verify` call, so that an auditor's recomputation is the run's computation.
//!
//! # Equivocal answers and cases not evaluated
//!
//! - Cases not evaluated (the model could not be run) are excluded from the statistics and
//!   accounted for by ID and reason. Never scored as negative.
//! - Equivocal answers are kept. The primary analysis, which the gate uses, imputes each
//!   equivocal answer *against* the truth: a positive case gets a score strictly below every
//!   real score and the threshold, a negative case one strictly above them. Strictly, so that
//!   no real score ties with an imputed one (a tie would count 1/2 in the AUROC: with 0/1
//!   scores, every true positive at 1.0 would half-beat the imputed negatives); so it is the
//!   worst case for sensitivity, specificity and AUROC at once, and the gate can only be
//!   stricter than either one-sided rule. The one-sided analyses (equivocal as positive, as
//!   negative), which FDA 2007 asks to see, are reported beside it.
//! - When cases were not evaluated (and the protocol tolerates it), two bounding analyses are
//!   reported as for equivocal answers: every not-evaluated case counted against the truth
//!   (`not_evaluated_as_wrong`) and with it (`not_evaluated_as_right`). With
//!   `statistics.not_evaluated_gate: worst_case` the criteria are judged on the first
//!   (`gated_on` says which analysis the gate used).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::harness::CaseStatus;
use crate::protocol::{NotEvaluatedGate, Protocol};
use crate::stats::{self, StatsReport};

use super::criteria;
use super::evidence::{
    Accountability, CalibrationBin, CriterionResult, Curves, EquivocalAnalysis, EquivocalAs,
    NotEvaluated, RocPoint, Verdict,
};

/// One case as the analysis needs it (a row of `cases.parquet`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRow {
    /// Case ID.
    pub case_id: String,
    /// Ground truth.
    pub label: bool,
    /// Outcome status.
    pub status: CaseStatus,
    /// Score when the model answered.
    pub score: Option<f64>,
    /// Why not evaluated.
    pub error: Option<String>,
    /// Subgroup attribute values, by attribute name.
    pub attributes: BTreeMap<String, String>,
}

/// Everything computed from the case rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Case accountability.
    pub accountability: Accountability,
    /// Primary statistics (equivocal imputed against the truth).
    pub statistics: StatsReport,
    /// One-sided equivocal analyses (empty when there are no equivocal answers).
    pub equivocal_analyses: Vec<EquivocalAnalysis>,
    /// Not-evaluated bounds (empty when every case was evaluated).
    pub not_evaluated_analyses: Vec<EquivocalAnalysis>,
    /// The analysis the criteria were judged on (`primary` or `not_evaluated_as_wrong`).
    pub gated_on: String,
    /// ROC and calibration curves.
    pub curves: Curves,
    /// Criteria with verdicts.
    pub criteria: Vec<CriterionResult>,
    /// Overall verdict.
    pub verdict: Verdict,
    /// Whether more cases were not evaluated than the protocol tolerates.
    pub infrastructure_failure: Option<String>,
    /// The release comparison, when the protocol has one and the reference was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<super::comparison::ComparisonEvidence>,
    /// SHA-256 of the canonical JSON of this analysis (without this field).
    pub results_sha256: String,
}

/// The content `results_sha256` covers: results only, no clock, host or paths.
#[derive(Serialize)]
struct ResultsContent<'a> {
    accountability: &'a Accountability,
    statistics: &'a StatsReport,
    equivocal_analyses: &'a [EquivocalAnalysis],
    #[serde(skip_serializing_if = "<[EquivocalAnalysis]>::is_empty")]
    not_evaluated_analyses: &'a [EquivocalAnalysis],
    gated_on: &'a str,
    criteria: &'a [CriterionResult],
    verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison: Option<&'a super::comparison::ComparisonEvidence>,
}

/// The statistics configuration a protocol implies.
fn stats_config(p: &Protocol) -> stats::AnalysisConfig {
    stats::AnalysisConfig {
        threshold: p.task.threshold,
        confidence: p.statistics.confidence,
        interval: p.statistics.interval,
        bootstrap_resamples: p.statistics.bootstrap_resamples,
        seed: p.statistics.bootstrap_seed,
        min_subgroup_size: p.statistics.min_subgroup_size,
        intersections: p.subgroups.intersections.clone(),
        intended_use_prevalence: p.statistics.intended_use_prevalence,
        calibration: p.acceptance.iter().any(|c| c.metric.is_calibration()),
    }
}

/// How imputed cases are scored.
#[derive(Clone, Copy, PartialEq)]
enum Imputation {
    AgainstTruth,
    AsPositive,
    AsNegative,
}

/// Scores strictly beyond every real score and the threshold, both ways (see the module docs).
pub fn imputation_scores(scores: impl Iterator<Item = f64>, threshold: f64) -> (f64, f64) {
    let (mut max, mut min) = (threshold, threshold);
    for s in scores {
        max = max.max(s);
        min = min.min(s);
    }
    // Adding at least 1 (or |x|) moves a finite value strictly outward.
    (max + max.abs().max(1.0), min - min.abs().max(1.0))
}

/// Rows to analyse and how not-evaluated ones (if included) are scored.
fn run_stats(
    p: &Protocol,
    rows: &[&CaseRow],
    how: Imputation,
    not_evaluated: Option<Imputation>,
) -> Result<StatsReport> {
    let mut labels = Vec::with_capacity(rows.len());
    let mut scores = Vec::with_capacity(rows.len());
    let attrs = &p.subgroups.attributes;
    let mut columns: Vec<(String, Vec<String>)> = attrs
        .iter()
        .map(|a| (a.clone(), Vec::with_capacity(rows.len())))
        .collect();
    // Scores for imputed cases lie strictly beyond every real score and the threshold, so the
    // imputed answer holds at any threshold and never ties with a real score.
    let (hi, lo) = imputation_scores(
        rows.iter()
            .filter(|r| r.status == CaseStatus::Evaluated)
            .filter_map(|r| r.score)
            .filter(|s| s.is_finite()),
        p.task.threshold,
    );
    let impute = |how: Imputation, label: bool| match how {
        Imputation::AgainstTruth => {
            if label {
                lo
            } else {
                hi
            }
        }
        Imputation::AsPositive => hi,
        Imputation::AsNegative => lo,
    };
    for r in rows {
        let score = match (r.status, r.score) {
            (CaseStatus::Evaluated, Some(s)) => s,
            (CaseStatus::Equivocal, _) => impute(how, r.label),
            (CaseStatus::NotEvaluated, _) => match not_evaluated {
                // Against the truth is AgainstTruth; with it, the opposite imputation.
                Some(Imputation::AgainstTruth) => impute(Imputation::AgainstTruth, r.label),
                Some(_) => impute(Imputation::AgainstTruth, !r.label),
                None => continue,
            },
            _ => continue,
        };
        labels.push(r.label);
        scores.push(score);
        for (name, col) in columns.iter_mut() {
            col.push(r.attributes.get(name).cloned().unwrap_or_default());
        }
    }
    let input = stats::AnalysisInput {
        labels: &labels,
        scores: &scores,
        attributes: &columns,
    };
    stats::analyze(&input, &stats_config(p)).map_err(|e| Error::input(format!("statistics: {e}")))
}

/// The analysis rows of a run: each golden-set case (label, attributes) with its result.
pub fn case_rows(
    set: &crate::golden::GoldenSet,
    results: &[crate::harness::CaseResult],
) -> Vec<CaseRow> {
    set.cases
        .iter()
        .zip(results)
        .map(|(c, r)| CaseRow {
            case_id: c.case_id.clone(),
            label: c.label,
            status: r.status(),
            score: r.prediction().map(|p| p.score),
            error: r.error().map(str::to_string),
            attributes: c.attributes.clone(),
        })
        .collect()
}

/// Computes accountability, statistics, curves, criteria and the verdict from case rows.
///
/// A protocol with a `comparison` section analysed without its reference (e.g. by `medgate
/// stats`) gets its difference criteria NOT EVALUABLE; use [`analyze_compared`].
pub fn analyze(p: &Protocol, rows: &[CaseRow]) -> Result<Analysis> {
    analyze_compared(p, rows, None)
}

/// The new run's image hashes (parallel to its case rows) and the reference release's cases.
pub type ReferenceInput<'a> = (&'a [Option<String>], &'a super::comparison::ReferenceCases);

/// [`analyze_compared`] for a run on `set`, the new cases' image hashes taken from the set.
pub fn analyze_against(
    p: &Protocol,
    rows: &[CaseRow],
    set: &crate::golden::GoldenSet,
    reference: Option<&super::comparison::ReferenceCases>,
) -> Result<Analysis> {
    let images: Vec<Option<String>> = set
        .cases
        .iter()
        .map(|c| Some(c.image_sha256.clone()))
        .collect();
    analyze_compared(p, rows, reference.map(|r| (&images[..], r)))
}

/// [`analyze`] with the release comparison of [`super::comparison::compare`]: its criteria
/// replace the difference criteria (in protocol order) and count in the verdict, and it is
/// covered by `results_sha256`.
pub fn analyze_compared(
    p: &Protocol,
    rows: &[CaseRow],
    reference: Option<ReferenceInput<'_>>,
) -> Result<Analysis> {
    let mut not_evaluated: Vec<NotEvaluated> = rows
        .iter()
        .filter(|r| r.status == CaseStatus::NotEvaluated)
        .map(|r| NotEvaluated {
            case_id: r.case_id.clone(),
            reason: r.error.clone().unwrap_or_else(|| "unknown".into()),
        })
        .collect();
    not_evaluated.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    let equivocal = rows
        .iter()
        .filter(|r| r.status == CaseStatus::Equivocal)
        .count() as u64;
    let evaluated = rows
        .iter()
        .filter(|r| r.status == CaseStatus::Evaluated)
        .count() as u64;
    let accountability = Accountability {
        enrolled: rows.len() as u64,
        excluded: BTreeMap::new(),
        evaluated,
        equivocal,
        not_evaluated,
    };
    let analysed: Vec<&CaseRow> = rows
        .iter()
        .filter(|r| r.status != CaseStatus::NotEvaluated)
        .collect();
    let all: Vec<&CaseRow> = rows.iter().collect();
    let mut statistics = run_stats(p, &analysed, Imputation::AgainstTruth, None)?;
    let equivocal_analyses = if equivocal > 0 {
        vec![
            EquivocalAnalysis {
                equivocal_as: EquivocalAs::AsPositive,
                statistics: run_stats(p, &analysed, Imputation::AsPositive, None)?,
            },
            EquivocalAnalysis {
                equivocal_as: EquivocalAs::AsNegative,
                statistics: run_stats(p, &analysed, Imputation::AsNegative, None)?,
            },
        ]
    } else {
        Vec::new()
    };
    let mut not_evaluated_analyses = if accountability.not_evaluated.is_empty() {
        Vec::new()
    } else {
        vec![
            EquivocalAnalysis {
                equivocal_as: EquivocalAs::NotEvaluatedAsWrong,
                statistics: run_stats(
                    p,
                    &all,
                    Imputation::AgainstTruth,
                    Some(Imputation::AgainstTruth),
                )?,
            },
            EquivocalAnalysis {
                equivocal_as: EquivocalAs::NotEvaluatedAsRight,
                statistics: run_stats(
                    p,
                    &all,
                    Imputation::AgainstTruth,
                    Some(Imputation::AsPositive),
                )?,
            },
        ]
    };
    let worst = p.statistics.not_evaluated_gate == NotEvaluatedGate::WorstCase
        && !not_evaluated_analyses.is_empty();
    let gated_on = if worst {
        "not_evaluated_as_wrong"
    } else {
        "primary"
    };
    let curves = curves(&analysed);
    let gated = if worst {
        &mut not_evaluated_analyses[0].statistics
    } else {
        &mut statistics
    };
    let mut criteria = criteria::evaluate(p, gated);
    criteria::adjust_gap_family(p, gated, &mut criteria);
    let comparison = match reference {
        Some((images, refc)) => {
            let (cmp, diff_criteria) = super::comparison::compare(p, rows, images, refc)?;
            for d in diff_criteria {
                if let Some(slot) = criteria.iter_mut().find(|c| c.id == d.id) {
                    *slot = d;
                }
            }
            Some(cmp)
        }
        None => None,
    };
    let verdict = criteria::combine(criteria.iter().map(|c| c.verdict));
    let frac = if rows.is_empty() {
        0.0
    } else {
        accountability.not_evaluated.len() as f64 / rows.len() as f64
    };
    let infrastructure_failure = (frac > p.statistics.max_not_evaluated_fraction
        || (rows.len() as u64) == 0
        || analysed.is_empty())
    .then(|| {
        // Name the most common reason, so the console shows e.g. the HTTP error of a server
        // that rejected every request instead of only a count.
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &accountability.not_evaluated {
            *by.entry(n.reason.as_str()).or_default() += 1;
        }
        let common = by
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(r, k)| format!("; most common reason ({k} cases): {r}"))
            .unwrap_or_default();
        format!(
            "{} of {} cases not evaluated ({:.1}%), more than the protocol tolerates ({:.1}%){common}",
            accountability.not_evaluated.len(),
            rows.len(),
            frac * 100.0,
            p.statistics.max_not_evaluated_fraction * 100.0
        )
    });
    let results_sha256 = crate::hash::canonical_sha256(&ResultsContent {
        accountability: &accountability,
        statistics: &statistics,
        equivocal_analyses: &equivocal_analyses,
        not_evaluated_analyses: &not_evaluated_analyses,
        gated_on,
        criteria: &criteria,
        verdict,
        comparison: comparison.as_ref(),
    })?;
    Ok(Analysis {
        accountability,
        statistics,
        equivocal_analyses,
        not_evaluated_analyses,
        gated_on: gated_on.to_string(),
        curves,
        criteria,
        verdict,
        infrastructure_failure,
        comparison,
        results_sha256,
    })
}

/// ROC (one point per distinct score, from (0,0) to (1,1)) and ten-bin calibration, from
/// the model's own scores (evaluated cases only; imputed equivocal scores are not drawn).
fn curves(rows: &[&CaseRow]) -> Curves {
    let mut pts: Vec<(f64, bool)> = rows
        .iter()
        .filter(|r| r.status == CaseStatus::Evaluated)
        .filter_map(|r| r.score.map(|s| (s, r.label)))
        .collect();
    pts.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = pts.iter().filter(|p| p.1).count() as f64;
    let neg = pts.len() as f64 - pos;
    let mut roc = Vec::new();
    if pos > 0.0 && neg > 0.0 {
        roc.push(RocPoint {
            fpr: 0.0,
            tpr: 0.0,
            threshold: f64::MAX,
        });
        let (mut tp, mut fp) = (0.0, 0.0);
        let mut i = 0;
        while i < pts.len() {
            let s = pts[i].0;
            while i < pts.len() && pts[i].0 == s {
                if pts[i].1 {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
                i += 1;
            }
            roc.push(RocPoint {
                fpr: fp / neg,
                tpr: tp / pos,
                threshold: s,
            });
        }
        // f64::MAX would not survive every JSON reader; the first point needs no threshold
        // beyond "above every score".
        if let Some(first) = roc.first_mut() {
            first.threshold = pts.first().map(|p| p.0 + 1.0).unwrap_or(1.0);
        }
    }
    let mut calibration = Vec::new();
    if !pts.is_empty() {
        let min = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let max = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if min >= 0.0 && max <= 1.0 {
            (0.0, 1.0)
        } else {
            (min, max)
        };
        let width = ((hi - lo) / 10.0).max(f64::MIN_POSITIVE);
        for b in 0..10 {
            let l = lo + width * b as f64;
            let u = if b == 9 {
                hi
            } else {
                lo + width * (b + 1) as f64
            };
            let inside: Vec<&(f64, bool)> = pts
                .iter()
                .filter(|p| p.0 >= l && (p.0 < u || (b == 9 && p.0 <= u)))
                .collect();
            let n = inside.len() as u64;
            calibration.push(CalibrationBin {
                lower: l,
                upper: u,
                n,
                mean_score: (n > 0).then(|| inside.iter().map(|p| p.0).sum::<f64>() / n as f64),
                observed: (n > 0).then(|| inside.iter().filter(|p| p.1).count() as f64 / n as f64),
            });
        }
    }
    Curves { roc, calibration }
}
