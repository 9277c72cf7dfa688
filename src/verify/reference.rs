//! The reference of a release comparison as this stage sees it.
//!
//! - A reference bundle (`comparison.reference`), as `medgate run` takes it: verified by this
//!   stage first ([`crate::verify::verify_bundle`]), then loaded and matched to the new run by
//!   [`crate::trace::comparison`] ([`load_verified`]). It lives here, not in trace, because
//!   trace comes before verify and may not call it.
//! - An in-run reference model (`comparison.reference_model`), as `medgate verify` reads it
//!   back: its journal in the bundle, checked and joined with the bundle's case table
//!   ([`check_reference_journal`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::golden::GoldenSet;
use crate::protocol::{ComparisonSpec, LoadedProtocol};
use crate::trace::comparison::{self, PairedCase, ReferenceCases};
use crate::world::World;

/// Verifies the reference bundle named by `spec`, loads it, and refuses it unless it is the
/// pinned run of the same protocol on the same locked set with the same cases, and unless
/// `out_dir` (the new run's bundle) is another directory. Nothing is written either way.
pub fn load_verified(
    lp: &LoadedProtocol,
    spec: &ComparisonSpec,
    set: &GoldenSet,
    out_dir: &Path,
    world: &dyn World,
) -> Result<(PathBuf, ReferenceCases)> {
    let Some(rs) = &spec.reference else {
        return Err(Error::Internal("no comparison reference bundle".into()));
    };
    let dir = lp.resolve(&rs.bundle);
    let refused = |why: String| {
        Error::input_hint(
            format!("reference bundle {} refused: {why}", dir.display()),
            "name the earlier bundle under `comparison.reference.bundle` and pin its results_sha256; nothing was written",
        )
    };
    if !dir.is_dir() {
        return Err(refused("not a directory".into()));
    }
    let report = super::verify_bundle(&dir, &super::VerifyOptions::default(), world)
        .map_err(|e| refused(format!("it cannot be verified: {e}")))?;
    if !report.identical() {
        let mut what: Vec<String> = Vec::new();
        what.extend(
            report
                .files
                .iter()
                .map(|f| format!("{} {}", f.path, f.problem)),
        );
        what.extend(report.discrepancies.iter().map(|d| d.path.clone()));
        what.extend(
            report
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail)),
        );
        what.extend(
            report
                .cases
                .iter()
                .map(|c| format!("{}: {}", c.case_id, c.problem)),
        );
        what.truncate(5);
        return Err(refused(format!(
            "it fails verification ({} problem(s): {})",
            report.problem_count(),
            what.join("; ")
        )));
    }
    let (ev, refc) = comparison::load_reference(&dir, rs.name.clone())?;
    let new_cases: Vec<PairedCase> = set
        .cases
        .iter()
        .map(|c| PairedCase {
            case_id: c.case_id.clone(),
            image_sha256: Some(c.image_sha256.clone()),
            label: c.label,
            status: crate::harness::CaseStatus::Evaluated,
            score: None,
        })
        .collect();
    comparison::check_reference(
        &lp.protocol,
        &set.lock.root_hash,
        &new_cases,
        &ev,
        &refc.cases,
    )?;
    let same = match (dir.canonicalize(), out_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::input_hint(
            format!(
                "the output directory {} is the reference bundle: the run would overwrite it",
                out_dir.display()
            ),
            "pass another `--out DIR` for the comparison run",
        ));
    }
    Ok((dir, refc))
}

/// File of the in-run reference model's journal inside the bundle.
pub const REFERENCE_JOURNAL: &str = "reference/journal.jsonl";

/// For `medgate verify` of an in-run comparison (`comparison.reference_model`): reads the
/// reference model's journal, `reference/journal.jsonl`, checks its header against the
/// reference the protocol names (protocol ID, the task the reference ran under, the pinned
/// weights hash when there is one, the weights hash recorded in the evidence), and rebuilds
/// the reference's answers on the bundle's own cases (`cases.parquet`: case IDs, labels,
/// image hashes) by journal key, the last entry of each key as on resume. A case without an
/// entry was not evaluated. Each check is reported through `check(name, ok, detail)`; `None`
/// when the journal cannot be read (reported as a failed check).
///
/// The reference's identity is rebuilt from the protocol and the journal header; the two
/// fields neither states (the backend's model name and the medgate version) are taken from
/// `recorded`, the identity in the evidence. The caller recomputes the comparison from the
/// result and compares it with the evidence.
#[allow(clippy::too_many_arguments)]
pub fn check_reference_journal(
    bundle: &Path,
    protocol: &crate::protocol::Protocol,
    recorded: Option<&comparison::ReferenceIdentity>,
    golden_set_root: &str,
    rows: &[crate::trace::analysis::CaseRow],
    images: &[Option<String>],
    check: &mut dyn FnMut(&str, bool, String),
) -> Result<Option<ReferenceCases>> {
    let Some(rp) = protocol.reference_protocol() else {
        return Err(Error::Internal("no comparison reference model".into()));
    };
    let text = match crate::fsx::read_inside_to_string(bundle, Path::new(REFERENCE_JOURNAL)) {
        Ok(t) => t,
        Err(e) => {
            check(
                "comparison.reference_journal",
                false,
                format!(
                    "{REFERENCE_JOURNAL} cannot be read ({e}): an in-run comparison journals every answer of the reference model there"
                ),
            );
            return Ok(None);
        }
    };
    let parsed = crate::harness::journal::parse_text(&text);
    let Some(h) = parsed.header else {
        check(
            "comparison.reference_journal",
            false,
            format!("{REFERENCE_JOURNAL} has no readable header line"),
        );
        return Ok(None);
    };
    let task = crate::hash::canonical_sha256(&rp.task)?;
    let recorded_model = recorded
        .and_then(|r| r.model_sha256.clone())
        .unwrap_or_else(|| crate::harness::UNPINNED_MODEL.into());
    let mut bad = Vec::new();
    if h.protocol != protocol.protocol {
        bad.push(format!(
            "protocol {} vs this protocol {}",
            crate::fsx::printable(&h.protocol),
            crate::fsx::printable(&protocol.protocol)
        ));
    }
    if h.task_sha256 != task {
        bad.push(format!(
            "task {} vs the reference model's task {} (its prompts and threshold)",
            crate::hash::short(&h.task_sha256),
            crate::hash::short(&task)
        ));
    }
    if let Some(pin) = rp.model.pinned_sha256()
        && h.model_sha256 != pin
    {
        bad.push(format!(
            "model {} vs the protocol's pin {}",
            crate::hash::short(&h.model_sha256),
            crate::hash::short(pin)
        ));
    }
    if h.model_sha256 != recorded_model {
        bad.push(format!(
            "model {} vs evidence comparison.reference.model_sha256 {}",
            crate::hash::short(&h.model_sha256),
            crate::hash::short(&recorded_model)
        ));
    }
    if parsed.torn > 0 {
        bad.push(format!("{} line(s) cannot be read", parsed.torn));
    }
    check(
        "comparison.reference_journal",
        bad.is_empty(),
        if bad.is_empty() {
            format!(
                "{REFERENCE_JOURNAL}: the reference model's run key (protocol, task, weights) matches the protocol and the evidence"
            )
        } else {
            format!("{REFERENCE_JOURNAL}: {}", bad.join("; "))
        },
    );
    let cases: Vec<PairedCase> = rows
        .iter()
        .zip(images)
        .map(|(r, img)| {
            let e = img
                .as_deref()
                .and_then(|img| parsed.last.get(&crate::harness::case_key(&h, img)));
            PairedCase {
                case_id: r.case_id.clone(),
                image_sha256: img.clone(),
                label: r.label,
                status: e.map_or(crate::harness::CaseStatus::NotEvaluated, |e| {
                    e.result.status()
                }),
                score: e.and_then(|e| e.result.prediction().map(|p| p.score)),
            }
        })
        .collect();
    let model_sha256 =
        (h.model_sha256 != crate::harness::UNPINNED_MODEL).then(|| h.model_sha256.clone());
    let identity = comparison::ReferenceIdentity::in_run(
        protocol,
        recorded.map(|r| r.model_name.clone()).unwrap_or_default(),
        model_sha256,
        golden_set_root.to_string(),
        recorded
            .map(|r| r.medgate_version.clone())
            .unwrap_or_default(),
    )
    .ok_or_else(|| Error::Internal("no comparison reference model".into()))?;
    Ok(Some(ReferenceCases { identity, cases }))
}
