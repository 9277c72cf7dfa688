//! The reference bundle of a release comparison, as `medgate run` takes it: verified by this
//! stage first ([`crate::verify::verify_bundle`]), then loaded and matched to the new run by
//! [`crate::trace::comparison`]. It lives here, not in trace, because trace comes before
//! verify and may not call it.

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
    let dir = lp.resolve(&spec.reference.bundle);
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
    let (ev, refc) = comparison::load_reference(&dir, spec.reference.name.clone())?;
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
