//! Traceability: requirement -> acceptance criterion -> result -> evidence.
//!
//! This stage owns the evidence record ([`evidence::Evidence`]), the requirement and risk
//! inputs ([`inputs`]), the evaluation of acceptance criteria against the statistics
//! ([`criteria`]), configuration identification ([`provenance`]) and the audit ledger of
//! golden-set use ([`ledger`]).

pub mod analysis;
pub mod bundle;
pub mod comparison;
pub mod criteria;
pub mod evidence;
pub mod inputs;
pub mod ledger;
pub mod provenance;

pub use evidence::*;

use inputs::{RequirementsFile, RisksFile};

/// Builds the traceability matrix: every requirement and risk control with the criteria
/// that verify it, their combined verdict and the evidence files, plus coverage gaps.
pub fn build_traceability(
    criteria: &[CriterionResult],
    requirements: Option<&RequirementsFile>,
    risks: Option<&RisksFile>,
) -> Traceability {
    let evidence_files = vec!["evidence.json".to_string(), "cases.parquet".to_string()];
    let mut req_ids: Vec<(String, String, Option<String>)> = requirements
        .map(|r| {
            r.requirements
                .iter()
                .map(|q| (q.id.clone(), q.text.clone(), q.source.clone()))
                .collect()
        })
        .unwrap_or_default();
    for c in criteria {
        if !req_ids.iter().any(|(id, _, _)| id == &c.requirement) {
            req_ids.push((c.requirement.clone(), String::new(), None));
        }
    }
    let mut rc_ids: Vec<(String, String, Option<String>)> = risks
        .map(|r| {
            r.risk_controls
                .iter()
                .map(|q| (q.id.clone(), q.control.clone(), Some(q.hazard.clone())))
                .collect()
        })
        .unwrap_or_default();
    for c in criteria {
        if let Some(rc) = &c.risk_control {
            if !rc_ids.iter().any(|(id, _, _)| id == rc) {
                rc_ids.push((rc.clone(), String::new(), None));
            }
        }
    }
    let item = |(id, text, source): (String, String, Option<String>),
                linked: Vec<&CriterionResult>| {
        let verdict =
            (!linked.is_empty()).then(|| criteria::combine(linked.iter().map(|c| c.verdict)));
        TracedItem {
            criteria: linked.iter().map(|c| c.id.clone()).collect(),
            evidence: if linked.is_empty() {
                Vec::new()
            } else {
                evidence_files.clone()
            },
            id,
            text,
            source,
            verdict,
        }
    };
    let requirements: Vec<TracedItem> = req_ids
        .into_iter()
        .map(|r| {
            let linked: Vec<&CriterionResult> =
                criteria.iter().filter(|c| c.requirement == r.0).collect();
            item(r, linked)
        })
        .collect();
    let risk_controls: Vec<TracedItem> = rc_ids
        .into_iter()
        .map(|r| {
            let linked: Vec<&CriterionResult> = criteria
                .iter()
                .filter(|c| c.risk_control.as_deref() == Some(r.0.as_str()))
                .collect();
            item(r, linked)
        })
        .collect();
    let uncovered_requirements = requirements
        .iter()
        .filter(|r| r.criteria.is_empty())
        .map(|r| r.id.clone())
        .collect();
    Traceability {
        requirements,
        risk_controls,
        uncovered_requirements,
    }
}
