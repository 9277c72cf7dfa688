//! `medgate verify --rerun`: inference again with the backend and settings recorded in the
//! bundle, per-case scores compared within a stated tolerance, and the analysis repeated on
//! the new scores to say whether any verdict would change.
//!
//! Recomputation ([`super::verify_bundle`]) proves the numbers follow from the recorded
//! scores; a re-run proves the recorded scores follow from the model. It needs the model
//! (weights, server or predictions file) and the golden set's images, found through the
//! recorded protocol: relative paths resolve against the directory of the recorded protocol
//! path, or `--protocol-dir`; `--golden-set` overrides the set's location. Nothing is written:
//! the bundle and its journal are left as they are.
//!
//! # Network settings are the auditor's
//! A bundle is hostile input: its protocol may name a server (`backend: openai`, a base URL,
//! `api_key_env: SECRET_TOKEN`) that would receive the auditor's secret and the golden set's
//! images. So a re-run of a server backend uses only what the auditor supplies: their own
//! protocol (`--protocol` or `--repo`, i.e. an anchored protocol), or `--base-url` (and
//! `--api-key-env`) given on the command line. A bundle's protocol that names a server, with
//! neither, makes verify refuse to re-run and say why. The base URLs and key variable are then
//! left out of the settings comparison (they are the auditor's, not the run's).
//!
//! Bit-identical scores are not expected across machines for floating-point models (thread
//! count and instruction set change summation order), hence the tolerance, 1e-6 by default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::harness::{CaseOutcome, CaseStatus};
use crate::model::CaseInput;
use crate::protocol::Protocol;
use crate::trace::Evidence;
use crate::trace::Verdict;
use crate::trace::analysis::{self, CaseRow};
use crate::world::World;

use super::VerifyOptions;

/// One case whose re-run result differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MovedCase {
    /// Case ID.
    pub case_id: String,
    /// Recorded status.
    pub recorded_status: CaseStatus,
    /// Status now.
    pub rerun_status: CaseStatus,
    /// Recorded score.
    pub recorded_score: Option<f64>,
    /// Score now.
    pub rerun_score: Option<f64>,
    /// |recorded - now| when both exist.
    pub abs_diff: Option<f64>,
}

/// A criterion whose verdict the re-run would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerdictChange {
    /// Criterion ID (`overall` for the overall verdict).
    pub criterion: String,
    /// Verdict recorded.
    pub recorded: Verdict,
    /// Verdict on the re-run scores.
    pub rerun: Verdict,
}

/// What the re-run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RerunReport {
    /// Backend used.
    pub backend: crate::protocol::BackendKind,
    /// Model hash the backend reports now.
    pub model_sha256: Option<String>,
    /// Whether it equals the recorded model hash.
    pub model_sha256_matches: bool,
    /// Whether the effective settings equal the recorded ones.
    pub settings_match: bool,
    /// The tolerance on scores.
    pub tolerance: f64,
    /// Cases re-run.
    pub cases: usize,
    /// Largest absolute score difference among cases scored both times.
    pub max_abs_diff: f64,
    /// Cases whose status changed or whose score moved by more than the tolerance.
    pub moved: Vec<MovedCase>,
    /// Verdicts that would change (overall first).
    pub verdict_changes: Vec<VerdictChange>,
}

impl RerunReport {
    /// True when the model, settings, every score (within tolerance) and every verdict agree.
    pub fn consistent(&self) -> bool {
        self.model_sha256_matches
            && self.settings_match
            && self.moved.is_empty()
            && self.verdict_changes.is_empty()
    }

    /// Problems found, for counts.
    pub fn problem_count(&self) -> usize {
        usize::from(!self.model_sha256_matches)
            + usize::from(!self.settings_match)
            + self.moved.len()
            + self.verdict_changes.len()
    }
}

/// The protocol the re-run may use: a server backend's endpoint and key variable come from
/// the auditor (an anchored protocol, or `--base-url`/`--api-key-env`), never from the bundle.
/// Returns the protocol and whether the endpoint was overridden.
fn auditor_backend(
    protocol: &Protocol,
    opts: &VerifyOptions,
    protocol_anchored: bool,
) -> Result<(Protocol, bool)> {
    let mut p = protocol.clone();
    match &mut p.model {
        crate::protocol::ModelSpec::Openai(s) => {
            if let Some(url) = &opts.base_url {
                s.base_urls = vec![url.clone()];
                s.api_key_env = opts.api_key_env.clone();
                return Ok((p, true));
            }
            if opts.api_key_env.is_some() {
                return Err(Error::input_hint(
                    "--api-key-env without --base-url",
                    "name the server the key is for: --base-url URL --api-key-env VAR",
                ));
            }
            if protocol_anchored {
                return Ok((p, false));
            }
            let shown: Vec<String> = s
                .base_urls
                .iter()
                .map(|u| crate::fsx::printable(u))
                .collect();
            Err(Error::input_hint(
                format!(
                    "refusing to re-run: the bundle's protocol names a server (backend openai, base URL(s) {}{}); verify never sends the golden set's images or a secret where a bundle says",
                    shown.join(", "),
                    s.api_key_env
                        .as_deref()
                        .map(|k| format!(", API key from ${}", crate::fsx::printable(k)))
                        .unwrap_or_default()
                ),
                "pass your own endpoint: --rerun --base-url URL [--api-key-env VAR], or your copy of the protocol with --protocol FILE",
            ))
        }
        _ => {
            if opts.base_url.is_some() || opts.api_key_env.is_some() {
                return Err(Error::input(format!(
                    "--base-url/--api-key-env apply to the openai backend; this run used {}",
                    p.model.backend_name()
                )));
            }
            Ok((p, false))
        }
    }
}

/// Re-runs inference and compares (see the module docs).
pub fn rerun(
    evidence: &Evidence,
    protocol: &Protocol,
    rows: &[CaseRow],
    opts: &VerifyOptions,
    protocol_anchored: bool,
    world: &dyn World,
) -> Result<RerunReport> {
    let pdir = super::protocol_dir(evidence, opts);
    let (protocol, overridden) = auditor_backend(protocol, opts, protocol_anchored)?;
    let protocol = &protocol;
    let (spec, base) = match &opts.golden_set {
        Some(gs) => {
            let mut s = protocol.golden_set.clone();
            s.path = gs.clone();
            (s, Path::new(".").to_path_buf())
        }
        None => (protocol.golden_set.clone(), pdir.clone()),
    };
    let set = crate::golden::GoldenSet::open(&spec, &base, &protocol.subgroups.attributes).map_err(|e| {
        Error::input_hint(
            format!("--rerun needs the golden set's images: {e}"),
            "pass --golden-set DIR, or --protocol-dir DIR (the directory the protocol's relative paths resolve against)",
        )
    })?;
    let ids: Vec<String> = set.cases.iter().map(|c| c.case_id.clone()).collect();
    let backend = crate::model::build_backend(protocol, &pdir, &ids, world).map_err(|e| {
        Error::input_hint(
            format!("--rerun cannot load the model: {e}"),
            "the re-run needs the model the bundle records (weights, server or predictions); pass --protocol-dir DIR if the protocol's paths resolve elsewhere",
        )
    })?;
    let info = backend.info();
    let model_sha256_matches = info.model_sha256 == evidence.model.sha256;
    let strip = |v: &serde_json::Value| {
        let mut v = crate::hash::canonicalize(v);
        if overridden && let Some(m) = v.as_object_mut() {
            m.remove("base_urls");
            m.remove("api_key_env");
        }
        v
    };
    let settings_match = strip(&info.settings) == strip(&evidence.model.settings);

    // Infer every case of the bundle (matched by ID), in the backend's batch size.
    let by_id: BTreeMap<&str, &crate::golden::Case> =
        set.cases.iter().map(|c| (c.case_id.as_str(), c)).collect();
    let mut inputs = Vec::with_capacity(rows.len());
    for r in rows {
        let c = by_id.get(r.case_id.as_str()).ok_or_else(|| {
            Error::input(format!(
                "case {} of the bundle is not in the golden set {}",
                r.case_id,
                set.dir.display()
            ))
        })?;
        inputs.push(CaseInput {
            case_id: c.case_id.clone(),
            image_path: set.dir.join(&c.image),
            image_sha256: c.image_sha256.clone(),
        });
    }
    let mut outcomes = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(backend.batch_size().max(1)) {
        let out = backend.predict_batch(chunk);
        if out.len() != chunk.len() {
            return Err(Error::Internal(format!(
                "backend returned {} results for {} cases",
                out.len(),
                chunk.len()
            )));
        }
        outcomes.extend(out);
    }

    let mut new_rows = Vec::with_capacity(rows.len());
    let mut moved = Vec::new();
    let mut max_abs_diff: f64 = 0.0;
    for (r, o) in rows.iter().zip(outcomes) {
        let o = CaseOutcome::from_backend(o);
        let (status, score, error) = (
            o.status(),
            o.prediction().map(|p| p.score),
            o.error().map(str::to_string),
        );
        let abs_diff = match (r.score, score) {
            (Some(a), Some(b)) => Some((a - b).abs()),
            _ => None,
        };
        if let Some(d) = abs_diff {
            max_abs_diff = max_abs_diff.max(d);
        }
        let score_moved = match (r.score, score) {
            (Some(_), Some(_)) => abs_diff.is_none_or(|d| d.is_nan() || d > opts.tolerance),
            (None, None) => false,
            _ => true,
        };
        if status != r.status || score_moved {
            moved.push(MovedCase {
                case_id: r.case_id.clone(),
                recorded_status: r.status,
                rerun_status: status,
                recorded_score: r.score,
                rerun_score: score,
                abs_diff,
            });
        }
        new_rows.push(CaseRow {
            status,
            score,
            error,
            ..r.clone()
        });
    }

    let recorded = analysis::analyze(protocol, rows)?;
    let now = analysis::analyze(protocol, &new_rows)?;
    let mut verdict_changes = Vec::new();
    if recorded.verdict != now.verdict {
        verdict_changes.push(VerdictChange {
            criterion: "overall".into(),
            recorded: recorded.verdict,
            rerun: now.verdict,
        });
    }
    for (a, b) in recorded.criteria.iter().zip(&now.criteria) {
        if a.verdict != b.verdict {
            verdict_changes.push(VerdictChange {
                criterion: a.id.clone(),
                recorded: a.verdict,
                rerun: b.verdict,
            });
        }
    }
    Ok(RerunReport {
        backend: info.backend,
        model_sha256: info.model_sha256,
        model_sha256_matches,
        settings_match,
        tolerance: opts.tolerance,
        cases: rows.len(),
        max_abs_diff,
        moved,
        verdict_changes,
    })
}
