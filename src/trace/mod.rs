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
        if let Some(rc) = &c.risk_control
            && !rc_ids.iter().any(|(id, _, _)| id == rc)
        {
            rc_ids.push((rc.clone(), String::new(), None));
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

/// The format of the start time inside a run ID (UTC, basic ISO 8601).
const RUN_ID_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The run ID (also the report ID): `<protocol ID>-<start time, UTC, RUN_ID_TIME_FORMAT>-<first
/// 8 hex digits of results_sha256>`. `medgate run` names the bundle with it and `medgate
/// verify` recomputes it, both through here.
pub fn run_id(
    protocol_id: &str,
    started: chrono::DateTime<chrono::Utc>,
    results_sha256: &str,
) -> String {
    format!(
        "{protocol_id}-{}-{}",
        started.format(RUN_ID_TIME_FORMAT),
        crate::fsx::prefix(results_sha256, 8)
    )
}

/// Warnings the results themselves raise: the criteria's own (e.g. PPV gated at the set's
/// prevalence), subgroup levels below the protocol's minimum
/// size, test-set reuse beyond the protocol's limit (`model_versions` distinct model
/// versions on this set, counting this run), and an infrastructure failure.
pub fn result_warnings(
    p: &crate::protocol::Protocol,
    a: &analysis::Analysis,
    model_versions: usize,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for c in &a.criteria {
        warnings.extend(c.warnings.iter().cloned());
    }
    for s in &a.statistics.subgroups {
        if s.small {
            warnings.push(format!(
                "subgroup {}={} has {} cases, below the minimum of {}: reported, not claimed",
                s.attribute, s.value, s.n, p.statistics.min_subgroup_size
            ));
        }
    }
    if model_versions > p.ledger.max_model_versions {
        warnings.push(format!(
            "test-set reuse: {model_versions} model versions have now been evaluated on this golden set (protocol limit {}); consider a fresh sequestered set",
            p.ledger.max_model_versions
        ));
    }
    if let Some(f) = &a.infrastructure_failure {
        warnings.push(format!("infrastructure failure: {f}"));
    }
    warnings
}

/// Everything the evidence record is assembled from, gathered by the stages that own each
/// part (see [`assemble_evidence`]).
#[derive(Debug)]
pub struct EvidenceParts<'a> {
    /// The protocol as loaded and checked.
    pub protocol: &'a crate::protocol::LoadedProtocol,
    /// The verified golden set.
    pub golden_set: &'a crate::golden::GoldenSet,
    /// What the backend reported about itself.
    pub model: &'a crate::model::BackendInfo,
    /// Statistics, criteria and verdict.
    pub analysis: &'a analysis::Analysis,
    /// Requirement and risk-control traceability.
    pub traceability: Traceability,
    /// Identities of the requirements and risks files (hash of the bytes parsed).
    pub trace_files: Vec<FileIdentity>,
    /// Git state of the protocol's repository.
    pub git: Option<GitState>,
    /// Warnings of every stage, in the order raised.
    pub warnings: Vec<String>,
    /// The command line.
    pub command: String,
    /// Whether this was a `--release` run.
    pub release: bool,
    /// Start and end of the run.
    pub started: chrono::DateTime<chrono::Utc>,
    /// End of the run.
    pub finished: chrono::DateTime<chrono::Utc>,
    /// Host facts.
    pub host: crate::world::HostInfo,
    /// Who ran it.
    pub user: String,
    /// The anchor of the ledger entry this run appends (recorded so that truncating or
    /// re-chaining the ledger afterwards is caught by `verify`).
    pub ledger_entry: Option<ledger::LedgerAnchor>,
}

/// Assembles the evidence record of a run.
pub fn assemble_evidence(parts: EvidenceParts<'_>) -> crate::error::Result<Evidence> {
    let lp = parts.protocol;
    let p = &lp.protocol;
    let set = parts.golden_set;
    let a = parts.analysis;
    let mut protocol_file = provenance::file_identity(&lp.path)?;
    // The hash of the bytes that were parsed, not of the file as it is now.
    protocol_file.sha256 = lp.sha256.clone();
    let rfc3339 =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(Evidence {
        medgate_evidence: EVIDENCE_FORMAT,
        run_id: run_id(&p.protocol, parts.started, &a.results_sha256),
        protocol: p.clone(),
        protocol_file,
        provenance: Provenance {
            git: parts.git,
            medgate_version: env!("CARGO_PKG_VERSION").into(),
            medgate_commit: provenance::BUILD_COMMIT.into(),
            command: parts.command,
            host: parts.host,
            user: parts.user,
            started_at: rfc3339(parts.started),
            finished_at: rfc3339(parts.finished),
            trace_files: parts.trace_files,
            release: parts.release,
        },
        golden_set: GoldenSetIdentity {
            path: p.golden_set.path.display().to_string(),
            root_hash: set.lock.root_hash.clone(),
            lock_sha256: set.lock_sha256.clone(),
            locked_at: set.lock.created.clone(),
            cases: set.cases.len() as u64,
        },
        model: ModelIdentity {
            backend: parts.model.backend,
            name: parts.model.model_name.clone(),
            sha256: parts.model.model_sha256.clone(),
            settings: crate::hash::canonicalize(&parts.model.settings),
        },
        accountability: a.accountability.clone(),
        statistics: a.statistics.clone(),
        equivocal_analyses: a.equivocal_analyses.clone(),
        not_evaluated_analyses: a.not_evaluated_analyses.clone(),
        gated_on: a.gated_on.clone(),
        curves: a.curves.clone(),
        criteria: a.criteria.clone(),
        traceability: parts.traceability,
        warnings: parts.warnings,
        comparison: a.comparison.clone(),
        verdict: a.verdict,
        results_sha256: a.results_sha256.clone(),
        ledger_entry: parts.ledger_entry,
    })
}
