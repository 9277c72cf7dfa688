//! Verification of an evidence bundle by recomputation: the auditor's stage.
//!
//! An auditor trusts only what they can recompute. [`verify_bundle`] takes a bundle written by
//! `medgate run` (possibly on another machine, offline) and checks, without trusting any
//! number in it:
//!
//! 1. **Integrity**: every file against `SHA256SUMS` (changed, missing, unlisted files).
//! 2. **Recomputation**: accountability, statistics, equivocal analyses, curves, criteria,
//!    verdict and `results_sha256` are recomputed from `cases.parquet` and the bundle's
//!    `protocol.yaml` by [`crate::trace::analysis::analyze`], the very function `run` used,
//!    and compared exactly with `evidence.json`, value by value ([`jsondiff`]); so is the
//!    traceability matrix, rebuilt from the requirement and risk texts recorded in it.
//! 3. **Provenance consistency**: `protocol.yaml` hashes to the recorded protocol hash and
//!    parses to the recorded protocol; the case count, the run ID and the pinned model hash
//!    agree; the journal's run key and every journaled answer agree with `cases.parquet`;
//!    with `--golden-set`, the set is intact, its root hash is the recorded one, and its
//!    labels, case IDs and image hashes are those of `cases.parquet` (a relabelled case is
//!    caught); and the set's audit ledger, when at hand, records this run with the same
//!    verdict, model and set, in an intact hash chain.
//! 4. **Signatures** ([`sign`]): every `signatures/*.json` is a valid Ed25519 signature over
//!    the current `SHA256SUMS`.
//! 5. **Re-run** ([`rerun`], optional): inference again with the recorded backend and
//!    settings, per-case scores compared within a tolerance, and whether any verdict would
//!    change.
//!
//! 6. **Renderings** ([`render`]): `junit.xml` and every report file re-rendered from the
//!    recomputed evidence and compared byte for byte.
//! 7. **Anchors** ([`anchor`]): the protocol, the golden set, the ledger and the signers
//!    checked against what the auditor holds, never against paths the bundle names.
//!
//! # Two levels
//! *Internally consistent*: every file agrees with every other and with the recomputation
//! (what the bundle alone can show; whoever edits a bundle can also make it consistent).
//! *Anchored*: the golden set (`--golden-set`), the protocol (`--protocol` or `--repo`) and a
//! signature by a trusted key (`--trusted-key`) all check out against the auditor's own
//! copies. `--require-anchored` exits 1 unless the bundle is both. See
//! `docs/threat-model.md`.
//!
//! # Outcome
//! [`VerifyReport::identical`] is true when nothing differs: exit 0. Any difference, invalid
//! signature or moved case: exit 1. A bundle that cannot be read at all (no `evidence.json`,
//! no `SHA256SUMS`, unparseable files that `SHA256SUMS` does not flag as changed): an
//! [`Error::Input`], exit 2. A file that does not parse *and* no longer matches its recorded
//! hash was tampered with: that is a difference (exit 1), named by file.
//!
//! # Format (`medgate verify --format json`)
//! One object: the fields of [`VerifyReport`] plus `identical` (bool). `files`: `{path,
//! problem}` with problem `changed`, `missing` or `unlisted`. `discrepancies`: `{path,
//! expected, found, kind}`, `expected` being the recomputed value and `found` the recorded one,
//! `kind` one of `value`, `missing`, `unexpected`, `length`. `checks`: `{name, ok, detail}`.
//! `cases`: `{case_id, problem}`. `signatures`: `{file, name, meaning, signed_at,
//! key_fingerprint, trusted, valid, problems}`. `rerun` (with `--rerun`): `{backend,
//! model_sha256, model_sha256_matches, settings_match, tolerance, cases, max_abs_diff, moved,
//! verdict_changes}`.
//!
//! `verify` imports only earlier stages; it never calls the `run` composition, so a bug there
//! cannot hide itself here beyond the shared analysis function.

pub mod anchor;
pub mod jsondiff;
pub mod reference;
pub mod render;
pub mod rerun;
pub mod sign;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::harness::CaseStatus;
use crate::protocol::Protocol;
use crate::trace::analysis::{self, CaseRow};
use crate::trace::bundle::{self, CASES_FILE, EVIDENCE_FILE, PROTOCOL_FILE, SUMS_FILE, SumProblem};
use crate::trace::inputs::{Requirement, RequirementsFile, RiskControl, RisksFile};
use crate::trace::{Evidence, Traceability};
use crate::world::World;

pub use anchor::{Anchor, AnchorState};
pub use jsondiff::Discrepancy;
pub use rerun::RerunReport;
pub use sign::SignatureCheck;

/// Options of [`verify_bundle`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The golden set to check the recorded identity and labels against.
    pub golden_set: Option<PathBuf>,
    /// Re-run inference and compare per-case scores.
    pub rerun: bool,
    /// Directory relative paths in the recorded protocol resolve against (default: the
    /// directory of the recorded protocol path).
    pub protocol_dir: Option<PathBuf>,
    /// Largest tolerated absolute difference of a re-run score.
    pub tolerance: f64,
    /// The auditor's keys: at least one valid signature by one of them is required when
    /// any is given; a signature by another key is reported untrusted.
    pub trusted_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// The auditor's copy of the protocol (anchors the protocol).
    pub protocol: Option<PathBuf>,
    /// The auditor's clone of the protocol's repository (anchors the protocol through the
    /// git blob at the recorded commit).
    pub repo: Option<PathBuf>,
    /// With `repo`: the approved revision the recorded commit must be.
    pub commit: Option<String>,
    /// The audit ledger to check (default: the anchored protocol's, else beside the set).
    pub ledger: Option<PathBuf>,
    /// The auditor's site templates for re-rendering the reports.
    pub templates: Option<PathBuf>,
    /// Fail unless the golden set, the protocol and a trusted signature all anchor.
    pub require_anchored: bool,
    /// Protocol signatory roles (or meanings) that must each have a valid trusted signature.
    pub require_signatures: Vec<String>,
    /// For `--rerun` of a server backend: the auditor's endpoint (never the bundle's).
    pub base_url: Option<String>,
    /// For `--rerun` of a server backend: the auditor's API-key variable (never the bundle's).
    pub api_key_env: Option<String>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            golden_set: None,
            rerun: false,
            protocol_dir: None,
            tolerance: 1e-6,
            trusted_keys: Vec::new(),
            protocol: None,
            repo: None,
            commit: None,
            ledger: None,
            templates: None,
            require_anchored: false,
            require_signatures: Vec::new(),
            base_url: None,
            api_key_env: None,
        }
    }
}

/// One named consistency check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Short name, e.g. `protocol.sha256`.
    pub name: String,
    /// Whether it holds.
    pub ok: bool,
    /// What was compared, and the values when it does not hold.
    pub detail: String,
}

/// A problem with one case (journal or golden set disagreeing with `cases.parquet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseProblem {
    /// Case ID (row number when the ID is unknown).
    pub case_id: String,
    /// What differs.
    pub problem: String,
}

/// Everything `medgate verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The bundle directory.
    pub bundle: String,
    /// Run ID recorded in the bundle.
    pub run_id: String,
    /// Protocol ID recorded in the bundle.
    pub protocol: String,
    /// Overall verdict recorded in the bundle (`PASS`, `FAIL`, `NOT EVALUABLE`).
    pub verdict: String,
    /// Files listed in `SHA256SUMS` that were checked.
    pub files_checked: usize,
    /// Files that are changed, missing or unlisted.
    pub files: Vec<SumProblem>,
    /// Values recomputed and compared.
    pub values_compared: usize,
    /// Recorded values that differ from the recomputation, by JSON path.
    pub discrepancies: Vec<Discrepancy>,
    /// Provenance and cross-file consistency checks.
    pub checks: Vec<Check>,
    /// Cases whose journal entry or golden-set record disagrees with `cases.parquet`.
    pub cases: Vec<CaseProblem>,
    /// Every signature, valid or not.
    pub signatures: Vec<SignatureCheck>,
    /// The re-run, when asked for.
    pub rerun: Option<RerunReport>,
    /// Which anchors were used and how each ended.
    pub anchors: Vec<Anchor>,
    /// Evidence fields that are recorded facts of the run's machine and cannot be recomputed
    /// (each with what, if anything, it was cross-checked against).
    pub not_recomputed: Vec<String>,
    /// `--require-anchored` was given.
    pub require_anchored: bool,
}

impl VerifyReport {
    /// True when nothing differs: the bundle is internally consistent and every anchor that
    /// was given holds.
    pub fn internally_consistent(&self) -> bool {
        self.files.is_empty()
            && self.discrepancies.is_empty()
            && self.checks.iter().all(|c| c.ok)
            && self.cases.is_empty()
            && self.signatures.iter().all(|s| s.valid)
            && self.rerun.as_ref().is_none_or(|r| r.consistent())
    }

    /// True when the golden set, the protocol and a trusted signature all anchored.
    pub fn anchored(&self) -> bool {
        ["golden_set", "protocol", "signature"].iter().all(|n| {
            self.anchors
                .iter()
                .any(|a| a.name == *n && a.state == AnchorState::Anchored)
        })
    }

    /// The exit decision: internally consistent, and anchored when that was required.
    pub fn identical(&self) -> bool {
        self.internally_consistent() && (!self.require_anchored || self.anchored())
    }

    /// A one-line count of every kind of problem found.
    pub fn problem_count(&self) -> usize {
        self.files.len()
            + self.discrepancies.len()
            + self.checks.iter().filter(|c| !c.ok).count()
            + self.cases.len()
            + self.signatures.iter().filter(|s| !s.valid).count()
            + self.rerun.as_ref().map(|r| r.problem_count()).unwrap_or(0)
            + usize::from(self.require_anchored && !self.anchored())
    }
}

pub(crate) fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_string(),
        ok,
        detail: detail.into(),
    }
}

/// How a bundle file that fails to load is classed: a tampered file is a difference, an
/// unreadable file that still matches its recorded hash (or was never sealed) is an input error.
enum Loaded<T> {
    Ok(T),
    Tampered(String),
}

fn load_or_classify<T>(rel: &str, changed: &[SumProblem], r: Result<T>) -> Result<Loaded<T>> {
    match r {
        Ok(v) => Ok(Loaded::Ok(v)),
        Err(e) if changed.iter().any(|p| p.path == rel) => Ok(Loaded::Tampered(format!(
            "{rel} cannot be read ({e}) and no longer matches SHA256SUMS"
        ))),
        Err(e) => Err(Error::input_hint(
            format!("{rel}: unreadable bundle file: {e}"),
            "the bundle is damaged or was not written by `medgate run`; restore it from the archive",
        )),
    }
}

/// The protocol directory relative paths resolve against: `--protocol-dir`, else the directory
/// of the protocol path recorded in the evidence.
pub fn protocol_dir(evidence: &Evidence, opts: &VerifyOptions) -> PathBuf {
    opts.protocol_dir.clone().unwrap_or_else(|| {
        Path::new(&evidence.protocol_file.path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    })
}

/// Verifies a bundle (see the module docs).
pub fn verify_bundle(dir: &Path, opts: &VerifyOptions, world: &dyn World) -> Result<VerifyReport> {
    if !dir.is_dir() {
        return Err(Error::input_hint(
            format!("{}: not a directory", dir.display()),
            "pass the bundle directory written by `medgate run --out DIR`",
        ));
    }
    // A symlink is not a bundle file (it could point anywhere).
    let is_file =
        |f: &str| std::fs::symlink_metadata(dir.join(f)).is_ok_and(|m| m.file_type().is_file());
    let missing: Vec<&str> = [EVIDENCE_FILE, SUMS_FILE]
        .into_iter()
        .filter(|f| !is_file(f))
        .collect();
    if !missing.is_empty() {
        // The rest of a bundle is there: a sealed file was removed. That is a difference
        // (exit 1), not a wrong directory (exit 2).
        // Files only a bundle has (a protocol.yaml alone may be a project directory).
        let rest: Vec<&str> = [EVIDENCE_FILE, SUMS_FILE, CASES_FILE, bundle::JUNIT_FILE]
            .into_iter()
            .filter(|f| is_file(f))
            .collect();
        if rest.is_empty() {
            return Err(Error::input_hint(
                format!(
                    "{}: no {} (or it is a symlink): not a medgate evidence bundle",
                    dir.display(),
                    missing.join(" or ")
                ),
                "pass the bundle directory written by `medgate run --out DIR`",
            ));
        }
        return Ok(VerifyReport {
            bundle: dir.display().to_string(),
            run_id: String::new(),
            protocol: String::new(),
            verdict: String::new(),
            files_checked: 0,
            files: Vec::new(),
            values_compared: 0,
            discrepancies: Vec::new(),
            checks: vec![check(
                "bundle.complete",
                false,
                format!(
                    "tampered or incomplete bundle: {} missing ({} present)",
                    missing.join(" and "),
                    rest.join(", ")
                ),
            )],
            cases: Vec::new(),
            signatures: Vec::new(),
            rerun: None,
            anchors: Vec::new(),
            not_recomputed: Vec::new(),
            require_anchored: opts.require_anchored,
        });
    }
    let files = bundle::check_sha256sums(dir)?;
    let sums_text = crate::fsx::read_inside_to_string(dir, Path::new(SUMS_FILE))?;
    let listed: Vec<String> = sums_text
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, f)| f.to_string()))
        .collect();
    let files_checked = sums_text.lines().filter(|l| !l.trim().is_empty()).count();
    let mut report = VerifyReport {
        bundle: dir.display().to_string(),
        run_id: String::new(),
        protocol: String::new(),
        verdict: String::new(),
        files_checked,
        files,
        values_compared: 0,
        discrepancies: Vec::new(),
        checks: Vec::new(),
        cases: Vec::new(),
        signatures: Vec::new(),
        rerun: None,
        anchors: Vec::new(),
        not_recomputed: Vec::new(),
        require_anchored: opts.require_anchored,
    };

    // evidence.json: raw JSON (every key as written) and typed.
    let mut format_refusal: Option<String> = None;
    let parsed = crate::fsx::read_inside_to_string(dir, Path::new(EVIDENCE_FILE)).and_then(|t| {
        // serde_json is built with `float_roundtrip`, so every double reads back exactly
        // as `medgate run` wrote it (the default fast parser can land one ulp off).
        let raw: Value =
            serde_json::from_str(&t).map_err(|e| Error::input(format!("not JSON: {e}")))?;
        // The format version first, so a bundle from another format is refused by name
        // rather than by whichever field fails to parse, or recomputed with statistics it
        // was not written with.
        crate::trace::evidence::check_format(raw.get("medgate_evidence").and_then(Value::as_u64))
            .map_err(|m| {
            format_refusal = Some(m.clone());
            Error::input(m)
        })?;
        let ev: Evidence = serde_json::from_value(raw.clone())
            .map_err(|e| Error::input(format!("not a medgate evidence record: {e}")))?;
        Ok((raw, ev))
    });
    // A format this medgate does not read is an input error (exit 2), unless evidence.json no
    // longer matches SHA256SUMS: then the version may be the edit, and that is tampering.
    if let Some(m) = format_refusal
        && !report.files.iter().any(|p| p.path == EVIDENCE_FILE)
    {
        return Err(Error::input_hint(
            format!("{}: {m}", dir.join(EVIDENCE_FILE).display()),
            "nothing was compared; the bundle itself is untouched",
        ));
    }
    let (raw, evidence) = match load_or_classify(EVIDENCE_FILE, &report.files, parsed)? {
        Loaded::Ok(v) => v,
        Loaded::Tampered(msg) => {
            report.checks.push(check("evidence.readable", false, msg));
            return Ok(report);
        }
    };
    report.run_id = crate::fsx::printable(&evidence.run_id);
    report.protocol = crate::fsx::printable(&evidence.protocol.protocol);
    report.verdict = evidence.verdict.label().to_string();
    report.checks.push(check(
        "evidence.format",
        evidence.medgate_evidence == crate::trace::EVIDENCE_FORMAT,
        format!(
            "evidence format {}, this medgate reads {}",
            evidence.medgate_evidence,
            crate::trace::EVIDENCE_FORMAT
        ),
    ));

    // Signatures do not depend on recomputation: check them even if the rest fails.
    report.signatures = sign::check_signatures(dir, &evidence.run_id, &opts.trusted_keys)?;
    // A signature covers SHA256SUMS; what the signer approved is the files it lists.
    if !report.files.is_empty() {
        for s in &mut report.signatures {
            s.valid = false;
            s.problems.push(format!(
                "the bundle's files no longer match the SHA256SUMS this signature covers ({} problem(s))",
                report.files.len()
            ));
        }
    }

    // The protocol as run (the bundle's copy), then anchored against the auditor's.
    let bundle_protocol = check_protocol_copy(dir, &evidence, &raw, &mut report)?;
    let (protocol, anchor_dir) =
        anchor_protocol(dir, &evidence, bundle_protocol, opts, &mut report)?;

    // cases.parquet.
    let cases_path = match crate::fsx::safe_join(dir, Path::new(CASES_FILE)) {
        Ok(p) => p,
        Err(e) => {
            report
                .checks
                .push(check("cases.readable", false, e.to_string()));
            return Ok(report);
        }
    };
    let cases_read = if crate::fsx::is_symlink(&cases_path) {
        Err(Error::input(format!("{CASES_FILE} is a symlink")))
    } else {
        bundle::read_cases(&cases_path)
    };
    let rows = match load_or_classify(CASES_FILE, &report.files, cases_read)? {
        Loaded::Ok(r) => r,
        Loaded::Tampered(msg) => {
            report.checks.push(check("cases.readable", false, msg));
            return Ok(report);
        }
    };

    // The release comparison: recomputed from the two case tables in this bundle.
    // A bundle reference: its copy in reference/; an in-run reference model: its journal.
    let new_images: Vec<Option<String>> =
        read_image_hashes(&dir.join(CASES_FILE)).unwrap_or_else(|| vec![None; rows.len()]);
    let reference = match protocol
        .comparison
        .as_ref()
        .map(|c| (&c.reference, &c.reference_model))
    {
        Some((Some(spec), None)) => Some(crate::trace::comparison::check_reference_copy(
            dir,
            &protocol,
            spec,
            &mut |name, ok, detail| report.checks.push(check(name, ok, detail)),
        )?),
        Some((None, Some(_))) => Some(reference::check_reference_journal(
            dir,
            &protocol,
            evidence.comparison.as_ref().map(|c| &c.reference),
            &evidence.golden_set.root_hash,
            &rows,
            &new_images,
            &mut |name, ok, detail| report.checks.push(check(name, ok, detail)),
        )?),
        Some(_) => {
            report.checks.push(check(
                "comparison.reference",
                false,
                "the protocol's `comparison` names both or neither of `reference` and `reference_model`",
            ));
            Some(None)
        }
        None => None,
    };
    let analysed = match &reference {
        Some(Some(r)) => analysis::analyze_compared(&protocol, &rows, Some((&new_images, r))),
        _ => analysis::analyze(&protocol, &rows),
    };

    // Recompute everything and compare.
    let mut recomputed: Option<Evidence> = None;
    let mut infrastructure_failure = None;
    match analysed {
        Ok(a) => {
            let mut d = Vec::new();
            let mut n = 0;
            let mut cmp = |key: &str, value: Value, d: &mut Vec<Discrepancy>| {
                n += count_leaves(&value);
                jsondiff::diff(
                    &format!("$.{key}"),
                    &value,
                    raw.get(key).unwrap_or(&Value::Null),
                    d,
                );
            };
            cmp("accountability", to_value(&a.accountability)?, &mut d);
            cmp("statistics", to_value(&a.statistics)?, &mut d);
            cmp(
                "equivocal_analyses",
                to_value(&a.equivocal_analyses)?,
                &mut d,
            );
            cmp(
                "not_evaluated_analyses",
                to_value(&a.not_evaluated_analyses)?,
                &mut d,
            );
            cmp("gated_on", Value::String(a.gated_on.clone()), &mut d);
            cmp("curves", to_value(&a.curves)?, &mut d);
            cmp("criteria", to_value(&a.criteria)?, &mut d);
            if a.comparison.is_some() || raw.get("comparison").is_some() {
                cmp("comparison", to_value(&a.comparison)?, &mut d);
            }
            cmp("verdict", to_value(&a.verdict)?, &mut d);
            cmp(
                "results_sha256",
                Value::String(a.results_sha256.clone()),
                &mut d,
            );
            let traceability = recompute_traceability(&a.criteria, &evidence.traceability);
            cmp("traceability", to_value(&traceability)?, &mut d);
            report.values_compared += n;
            report.discrepancies.extend(d);
            infrastructure_failure = a.infrastructure_failure.clone();
            check_run_id(&evidence, &a.results_sha256, &mut report);
            let mut ev = evidence.clone();
            ev.protocol = protocol.clone();
            ev.accountability = a.accountability.clone();
            ev.statistics = a.statistics.clone();
            ev.equivocal_analyses = a.equivocal_analyses.clone();
            ev.not_evaluated_analyses = a.not_evaluated_analyses.clone();
            ev.gated_on = a.gated_on.clone();
            ev.comparison = a.comparison.clone();
            ev.curves = a.curves.clone();
            ev.criteria = a.criteria.clone();
            ev.verdict = a.verdict;
            ev.results_sha256 = a.results_sha256.clone();
            ev.traceability = traceability;
            recomputed = Some(ev);
        }
        Err(e) => report.checks.push(check(
            "recomputation",
            false,
            format!("the statistics cannot be recomputed from {CASES_FILE}: {e}"),
        )),
    }

    // Every rendered artifact, re-rendered from the recomputed evidence.
    if let Some(ev) = &recomputed {
        let named = protocol
            .report
            .templates
            .as_ref()
            .map(|t| t.display().to_string());
        let templates = match (&opts.templates, &named, &anchor_dir) {
            (Some(t), _, _) => Some(t.clone()),
            (None, Some(t), Some(d)) => Some(d.join(t)),
            _ => None,
        };
        if let Some(t) = &templates
            && crate::fsx::is_inside(t, dir)
        {
            return Err(Error::input_hint(
                format!(
                    "templates {} lie inside the bundle: never rendered from",
                    t.display()
                ),
                "templates come from the protocol's repository side, never from a bundle",
            ));
        }
        // Case thumbnails (report.thumbnails > 0) are drawn from the golden set's images, so
        // report.html is reproduced only from the auditor's --golden-set.
        let thumbnails = protocol.report.thumbnails > 0
            && protocol
                .report
                .formats
                .contains(&crate::protocol::ReportFormat::Html);
        let thumbs = match (&opts.golden_set, thumbnails) {
            (Some(gs), true) => Some(thumbnails_from(gs, &protocol)?),
            (None, true) => None,
            (_, false) => Some(Default::default()),
        };
        report.checks.extend(render::check_renderings(
            dir,
            ev,
            &protocol,
            templates.as_deref(),
            named.as_deref(),
            &listed,
            thumbs.as_ref(),
        ));
        if thumbs.is_none() {
            report.not_recomputed.push(
                "report.html: its case thumbnails come from the golden set's images; it is re-rendered and compared only with --golden-set".into(),
            );
        }
    }

    check_provenance(&evidence, &protocol, &rows, &mut report);
    let images = read_image_hashes(&cases_path);
    check_journal(
        dir,
        &evidence,
        &protocol,
        &rows,
        images.as_deref(),
        &mut report,
    )?;
    if let Some(gs) = &opts.golden_set {
        check_golden_set(
            gs,
            &evidence,
            &protocol,
            &rows,
            images.as_deref(),
            &mut report,
        )?;
    } else {
        report.anchors.push(Anchor::new(
            "golden_set",
            AnchorState::NotGiven,
            "no --golden-set: labels, case IDs and images are only as the bundle states them",
        ));
    }
    // The ledger: the auditor's --ledger, else the anchored protocol's, else beside the set.
    let ledger_path = match (&opts.ledger, &protocol.ledger.path) {
        (Some(l), _) => Some(l.clone()),
        (None, Some(p)) if p.is_absolute() => Some(p.clone()),
        (None, Some(p)) => Some(
            anchor_dir
                .clone()
                .unwrap_or_else(|| protocol_dir(&evidence, opts))
                .join(p),
        ),
        (None, None) => opts
            .golden_set
            .as_ref()
            .map(|gs| gs.join(crate::trace::ledger::LEDGER_FILE)),
    };
    let ledger_entries = match &ledger_path {
        Some(l) => check_ledger(
            l,
            opts.ledger.is_some() || protocol.ledger.path.is_some(),
            &evidence,
            &mut report,
        )?,
        None => {
            report.anchors.push(Anchor::new(
                "ledger",
                AnchorState::NotGiven,
                "no ledger at hand (pass --ledger FILE or --golden-set DIR)",
            ));
            None
        }
    };
    check_warnings(
        &evidence,
        recomputed.as_ref(),
        infrastructure_failure.as_deref(),
        ledger_entries.as_deref(),
        &mut report,
    );
    check_signature_requirements(&protocol, opts, &mut report);
    if opts.rerun {
        let r = rerun::rerun(
            &evidence,
            &protocol,
            &rows,
            opts,
            report_protocol_anchored(&report),
            world,
        )?;
        report.anchors.push(Anchor::new(
            "model",
            if r.consistent() {
                AnchorState::Anchored
            } else {
                AnchorState::Failed
            },
            format!("re-run with backend {}", r.backend),
        ));
        report.rerun = Some(r);
    } else {
        report.anchors.push(Anchor::new(
            "model",
            AnchorState::NotGiven,
            "no --rerun: the recorded scores are taken as the model's",
        ));
    }
    let mut listed_not_recomputed = not_recomputed(&evidence, opts);
    listed_not_recomputed.append(&mut report.not_recomputed);
    report.not_recomputed = listed_not_recomputed;
    Ok(report)
}

fn report_protocol_anchored(r: &VerifyReport) -> bool {
    r.anchors
        .iter()
        .any(|a| a.name == "protocol" && a.state == AnchorState::Anchored)
}

/// Anchors the protocol: the auditor's copy (`--protocol`) or the blob at the recorded commit
/// of the auditor's clone (`--repo`). The bundle's `protocol.yaml` must be byte-identical to
/// it. Returns the protocol to recompute with (the anchored one when given) and the
/// directory its relative paths resolve against on the auditor's side.
fn anchor_protocol(
    dir: &Path,
    evidence: &Evidence,
    bundle_protocol: Protocol,
    opts: &VerifyOptions,
    report: &mut VerifyReport,
) -> Result<(Protocol, Option<PathBuf>)> {
    let mut problems = Vec::new();
    let anchored = if let Some(p) = &opts.protocol {
        Some(anchor::from_file(p)?)
    } else if let Some(r) = &opts.repo {
        let found = anchor::from_repo(r, evidence, opts.commit.as_deref())?;
        problems.extend(found.problems);
        for (path, problem) in &found.trace_files {
            report.checks.push(check(
                "provenance.trace_files",
                problem.is_none(),
                problem.clone().unwrap_or_else(|| {
                    format!(
                        "{} at the recorded commit hashes as recorded",
                        crate::fsx::printable(path)
                    )
                }),
            ));
        }
        if found.protocol.is_some() {
            report.checks.push(check(
                "provenance.git",
                true,
                format!("the recorded commit is in {}", r.display()),
            ));
        }
        found.protocol
    } else {
        None
    };
    let Some(a) = anchored else {
        if problems.is_empty() {
            report.anchors.push(Anchor::new(
                "protocol",
                AnchorState::NotGiven,
                "no --protocol or --repo: the bundle's own protocol.yaml was used",
            ));
        } else {
            report
                .checks
                .push(check("protocol.anchor", false, problems.join("; ")));
            report.anchors.push(Anchor::new(
                "protocol",
                AnchorState::Failed,
                problems.join("; "),
            ));
        }
        return Ok((bundle_protocol, None));
    };
    let sha = crate::hash::sha256_hex(&a.bytes);
    let copy = crate::fsx::read_inside(dir, Path::new(PROTOCOL_FILE))
        .map(|b| crate::hash::sha256_hex(&b))
        .unwrap_or_default();
    if sha != copy {
        problems.push(format!(
            "{PROTOCOL_FILE} in the bundle ({}) is not the auditor's protocol ({})",
            crate::hash::short(&copy),
            crate::hash::short(&sha)
        ));
    }
    if sha != evidence.protocol_file.sha256 {
        problems.push(format!(
            "the evidence records protocol_file.sha256 {}, the auditor's protocol hashes to {}",
            crate::hash::short(&evidence.protocol_file.sha256),
            crate::hash::short(&sha)
        ));
    }
    let text = String::from_utf8_lossy(&a.bytes);
    let protocol = match crate::protocol::parse_protocol(&a.source, &text) {
        Ok(p) => p,
        Err(d) => {
            return Err(Error::input(format!(
                "the auditor's protocol {} does not parse: {}",
                a.source,
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
    };
    let ok = problems.is_empty();
    report.checks.push(check(
        "protocol.anchor",
        ok,
        if ok {
            format!("{PROTOCOL_FILE} is byte-identical to {}", a.source)
        } else {
            problems.join("; ")
        },
    ));
    if !ok {
        // Recomputing with the auditor's protocol names every number the edit moved.
        let before = report.discrepancies.len();
        jsondiff::diff(
            "$.protocol",
            &to_value(&protocol)?,
            &to_value(&evidence.protocol)?,
            &mut report.discrepancies,
        );
        report.values_compared += report.discrepancies.len() - before;
    }
    report.anchors.push(Anchor::new(
        "protocol",
        if ok {
            AnchorState::Anchored
        } else {
            AnchorState::Failed
        },
        if ok {
            a.source.clone()
        } else {
            problems.join("; ")
        },
    ));
    Ok((protocol, Some(a.dir)))
}

/// Evidence fields that are facts of the run's machine, with what they were cross-checked
/// against.
fn not_recomputed(evidence: &Evidence, opts: &VerifyOptions) -> Vec<String> {
    let mut v = vec![
        "provenance.host, provenance.command, provenance.medgate_version, provenance.medgate_commit: facts of the run's machine, recorded as stated".to_string(),
        "protocol_file.path, golden_set.path: paths as given on the run's machine".to_string(),
        "provenance.started_at: checked against the run ID; provenance.finished_at and provenance.user: checked against the ledger entry when the ledger is at hand".to_string(),
        "model.name, model.settings: checked against the journal's run key; reproduced only with --rerun".to_string(),
        "traceability texts: rebuilt from the recorded requirement and risk texts; their files are checked only with --repo".to_string(),
    ];
    if evidence.provenance.git.is_some() && opts.repo.is_none() {
        v.push(
            "provenance.git: the recorded commit and dirty state are checked only with --repo"
                .into(),
        );
    } else if evidence.provenance.git.is_some() {
        v.push("provenance.git.dirty, provenance.git.dirty_files: the state of the run's working tree, recorded as stated".into());
    }
    v
}

/// The recorded warnings against the recomputation: warnings that follow from the data
/// (small subgroups, infrastructure failure, a dirty tree, test-set reuse when the ledger is
/// at hand) must be recorded, and every recorded warning must be explained by the
/// recomputation, by the protocol check, or by a documented run-time event (`--force`).
fn check_warnings(
    evidence: &Evidence,
    recomputed: Option<&Evidence>,
    infrastructure_failure: Option<&str>,
    ledger: Option<&[crate::trace::ledger::LedgerEntry]>,
    report: &mut VerifyReport,
) {
    let Some(ev) = recomputed else { return };
    let p = &ev.protocol;
    let mut required: Vec<String> = Vec::new();
    if let Some(g) = &evidence.provenance.git
        && g.dirty
    {
        required.push(format!(
            "working tree is dirty ({} file(s)): not a release record",
            g.dirty_files.len()
        ));
    }
    for s in &ev.statistics.subgroups {
        if s.small {
            required.push(format!(
                "subgroup {}={} has {} cases, below the minimum of {}: reported, not claimed",
                s.attribute, s.value, s.n, p.statistics.min_subgroup_size
            ));
        }
    }
    let model = evidence
        .model
        .sha256
        .clone()
        .unwrap_or_else(|| "unpinned".into());
    if let (Some(entries), Some(anchor)) = (ledger, &evidence.ledger_entry) {
        let upto = usize::try_from(anchor.seq.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(entries.len());
        let versions = crate::trace::ledger::model_versions(
            &entries[..upto],
            &evidence.golden_set.root_hash,
            Some(&model),
        );
        if versions > p.ledger.max_model_versions {
            required.push(format!(
                "test-set reuse: {versions} model versions have now been evaluated on this golden set (protocol limit {}); consider a fresh sequestered set",
                p.ledger.max_model_versions
            ));
        }
    }
    if let Some(f) = infrastructure_failure {
        required.push(format!("infrastructure failure: {f}"));
    }
    // Warnings of the protocol check, reproduced from the protocol and the recorded
    // requirement and risk IDs (those about files at the run's site are accepted as recorded).
    let mut explained: Vec<String> = Vec::new();
    {
        // Positions come from the source text; messages do not need them.
        let lp = crate::protocol::LoadedProtocol {
            protocol: p.clone(),
            path: PathBuf::from(&evidence.protocol_file.path),
            dir: PathBuf::from("."),
            source: String::new(),
            sha256: String::new(),
        };
        let implicit = |t: &crate::trace::TracedItem| t.text.is_empty() && t.source.is_none();
        let facts = crate::protocol::ExternalFacts {
            requirement_ids: p.traceability.as_ref().map(|_| {
                evidence
                    .traceability
                    .requirements
                    .iter()
                    .filter(|t| !implicit(t))
                    .map(|t| t.id.clone())
                    .collect()
            }),
            risk_control_ids: p.traceability.as_ref().map(|_| {
                evidence
                    .traceability
                    .risk_controls
                    .iter()
                    .filter(|t| !implicit(t))
                    .map(|t| t.id.clone())
                    .collect()
            }),
            ..Default::default()
        };
        explained.extend(
            crate::protocol::check(&lp, &facts)
                .into_iter()
                .filter(|d| !d.is_error())
                .map(|d| d.message),
        );
    }
    let mut missing = Vec::new();
    let mut recorded: Vec<&String> = evidence.warnings.iter().collect();
    for r in &required {
        match recorded.iter().position(|w| *w == r) {
            Some(i) => {
                recorded.remove(i);
            }
            None => missing.push(r.clone()),
        }
    }
    let mut unexplained = Vec::new();
    let mut accepted = 0usize;
    for w in recorded {
        let reuse_unknown = ledger.is_none() && w.starts_with("test-set reuse:");
        let site = w.contains("does not exist") || w.contains("not found");
        if explained.contains(w) {
        } else if reuse_unknown || w.starts_with("--force:") || site {
            accepted += 1;
        } else {
            unexplained.push(crate::fsx::printable(w));
        }
    }
    let ok = missing.is_empty() && unexplained.is_empty();
    let mut detail = Vec::new();
    if !missing.is_empty() {
        detail.push(format!(
            "the recomputation raises warnings the evidence does not record: {}",
            missing.join(" | ")
        ));
    }
    if !unexplained.is_empty() {
        detail.push(format!(
            "recorded warnings the recomputation does not raise: {}",
            unexplained.join(" | ")
        ));
    }
    report.checks.push(check(
        "warnings",
        ok,
        if ok {
            format!(
                "{} warning(s) recorded, each reproduced{}",
                evidence.warnings.len(),
                if accepted > 0 {
                    format!(
                        " ({accepted} about the run's site or a --force rerun, accepted as recorded)"
                    )
                } else {
                    String::new()
                }
            )
        } else {
            detail.join("; ")
        },
    ));
}

/// Signatures the auditor requires: with trusted keys, at least one valid trusted signature;
/// with `--require-signature ROLE`, one whose meaning and name are the protocol signatory's.
fn check_signature_requirements(
    protocol: &Protocol,
    opts: &VerifyOptions,
    report: &mut VerifyReport,
) {
    let good: Vec<&sign::SignatureCheck> = report
        .signatures
        .iter()
        .filter(|s| s.valid && s.trusted)
        .collect();
    if !opts.trusted_keys.is_empty() {
        report.checks.push(check(
            "signatures.trusted",
            !good.is_empty(),
            if good.is_empty() {
                format!(
                    "--trusted-key given but no valid signature by a trusted key ({} signature(s) in the bundle)",
                    report.signatures.len()
                )
            } else {
                format!("{} valid signature(s) by a trusted key", good.len())
            },
        ));
    }
    for role in &opts.require_signatures {
        let r = role.trim().to_lowercase();
        let Some(s) = protocol
            .report
            .signatories
            .iter()
            .find(|s| s.role.to_lowercase() == r || s.meaning.to_lowercase() == r)
        else {
            report.checks.push(check(
                "signatures.required",
                false,
                format!(
                    "--require-signature {}: the protocol has no signatory of that role or meaning",
                    crate::fsx::printable(role)
                ),
            ));
            continue;
        };
        let found = good
            .iter()
            .any(|g| g.meaning.trim() == s.meaning.trim() && g.name.trim() == s.name.trim());
        report.checks.push(check(
            "signatures.required",
            found,
            format!(
                "{} ({}, \"{}\"): {}",
                crate::fsx::printable(&s.role),
                crate::fsx::printable(&s.name),
                crate::fsx::printable(&s.meaning),
                if found {
                    "signed with a trusted key"
                } else if opts.trusted_keys.is_empty() {
                    "no trusted signature (no --trusted-key given)"
                } else {
                    "no valid signature by a trusted key with that name and meaning"
                }
            ),
        ));
    }
    let state = if opts.trusted_keys.is_empty() {
        AnchorState::NotGiven
    } else if good.is_empty() {
        AnchorState::Failed
    } else {
        AnchorState::Anchored
    };
    report.anchors.push(Anchor::new(
        "signature",
        state,
        match state {
            AnchorState::NotGiven => {
                "no --trusted-key: nothing says who holds the signing keys".to_string()
            }
            AnchorState::Failed => "no valid signature by a trusted key".to_string(),
            AnchorState::Anchored => good
                .iter()
                .map(|g| format!("{} ({})", crate::fsx::printable(&g.name), g.key_fingerprint))
                .collect::<Vec<_>>()
                .join(", "),
        },
    ));
}

fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("serialise: {e}")))
}

fn count_leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(count_leaves).sum(),
        Value::Array(a) => a.iter().map(count_leaves).sum(),
        _ => 1,
    }
}

/// Reads `protocol.yaml`, checks its hash and that it parses to the recorded protocol, and
/// returns the protocol to recompute with (the file's, when it parses).
fn check_protocol_copy(
    dir: &Path,
    evidence: &Evidence,
    raw: &Value,
    report: &mut VerifyReport,
) -> Result<Protocol> {
    let bytes = match crate::fsx::read_inside(dir, Path::new(PROTOCOL_FILE)) {
        Ok(b) => b,
        Err(e) => {
            report.checks.push(check(
                "protocol.present",
                false,
                format!("{PROTOCOL_FILE} cannot be read ({e}); recomputing with the protocol recorded in {EVIDENCE_FILE}"),
            ));
            return Ok(evidence.protocol.clone());
        }
    };
    let sha = crate::hash::sha256_hex(&bytes);
    let recorded = &evidence.protocol_file.sha256;
    report.checks.push(check(
        "protocol.sha256",
        &sha == recorded,
        if &sha == recorded {
            format!(
                "{PROTOCOL_FILE} hashes to the recorded protocol_file.sha256 {}",
                short(recorded)
            )
        } else {
            format!("{PROTOCOL_FILE} hashes to {sha}, evidence records {recorded}")
        },
    ));
    let text = String::from_utf8_lossy(&bytes);
    match crate::protocol::parse_protocol(PROTOCOL_FILE, &text) {
        Ok(p) => {
            let before = report.discrepancies.len();
            let pv = to_value(&p)?;
            report.values_compared += count_leaves(&pv);
            jsondiff::diff(
                "$.protocol",
                &pv,
                raw.get("protocol").unwrap_or(&Value::Null),
                &mut report.discrepancies,
            );
            let same = report.discrepancies.len() == before;
            report.checks.push(check(
                "protocol.parsed",
                same,
                if same {
                    format!("{PROTOCOL_FILE} parses to the protocol recorded in {EVIDENCE_FILE}")
                } else {
                    format!("{PROTOCOL_FILE} differs from the protocol recorded in {EVIDENCE_FILE} (see $.protocol differences)")
                },
            ));
            Ok(p)
        }
        Err(diags) => {
            let msg = diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            report.checks.push(check(
                "protocol.parsed",
                false,
                format!("{PROTOCOL_FILE} does not parse ({msg}); recomputing with the protocol recorded in {EVIDENCE_FILE}"),
            ));
            Ok(evidence.protocol.clone())
        }
    }
}

/// Rebuilds the requirements and risk files from the texts recorded in the traceability
/// matrix and runs [`crate::trace::build_traceability`] on the recomputed criteria.
///
/// Items the run added implicitly (a criterion naming an ID absent from the files) carry no
/// text and no source; they are left out here so that `build_traceability` adds them again in
/// the same way and order.
fn recompute_traceability(
    criteria: &[crate::trace::CriterionResult],
    recorded: &Traceability,
) -> Traceability {
    let implicit = |t: &crate::trace::TracedItem| t.text.is_empty() && t.source.is_none();
    let reqs: Vec<Requirement> = recorded
        .requirements
        .iter()
        .filter(|t| !implicit(t))
        .map(|t| Requirement {
            id: t.id.clone(),
            text: t.text.clone(),
            source: t.source.clone(),
        })
        .collect();
    let risks: Vec<RiskControl> = recorded
        .risk_controls
        .iter()
        .filter(|t| !implicit(t))
        .map(|t| RiskControl {
            id: t.id.clone(),
            hazard: t.source.clone().unwrap_or_default(),
            control: t.text.clone(),
            requirements: Vec::new(),
        })
        .collect();
    let reqs = (!reqs.is_empty()).then_some(RequirementsFile { requirements: reqs });
    let risks = (!risks.is_empty()).then_some(RisksFile {
        risk_controls: risks,
    });
    crate::trace::build_traceability(criteria, reqs.as_ref(), risks.as_ref())
}

use crate::hash::short;

/// The run ID is `<protocol>-<start time>-<first 8 of results_sha256>` ([`crate::trace::run_id`]):
/// checks it against the recorded protocol, start time and the recomputed results hash.
fn check_run_id(evidence: &Evidence, results_sha256: &str, report: &mut VerifyReport) {
    let id = &evidence.run_id;
    let expected = match chrono::DateTime::parse_from_rfc3339(&evidence.provenance.started_at) {
        Ok(t) => crate::trace::run_id(
            &evidence.protocol.protocol,
            t.with_timezone(&chrono::Utc),
            results_sha256,
        ),
        Err(_) => format!(
            "{}-<unreadable provenance.started_at>-{}",
            evidence.protocol.protocol,
            crate::fsx::prefix(results_sha256, 8)
        ),
    };
    let ok = id == &expected;
    report.checks.push(check(
        "run_id",
        ok,
        if ok {
            format!("run ID {id} names the protocol, start time and recomputed results hash")
        } else {
            format!("run ID {id} should be {expected} (protocol ID, provenance.started_at, results hash)")
        },
    ));
}

fn check_provenance(
    evidence: &Evidence,
    protocol: &Protocol,
    rows: &[CaseRow],
    report: &mut VerifyReport,
) {
    let n = rows.len() as u64;
    report.checks.push(check(
        "golden_set.cases",
        evidence.golden_set.cases == n,
        format!(
            "{CASES_FILE} has {n} cases, evidence records {} cases in the golden set",
            evidence.golden_set.cases
        ),
    ));
    let backend = protocol.model.backend();
    report.checks.push(check(
        "model.backend",
        evidence.model.backend == backend,
        format!(
            "protocol backend {backend}, evidence records {}",
            evidence.model.backend
        ),
    ));
    if evidence.provenance.release {
        let mut bad = Vec::new();
        match &evidence.provenance.git {
            None => bad.push("no git state recorded".to_string()),
            Some(g) if g.dirty => bad.push("the recorded working tree is dirty".to_string()),
            _ => {}
        }
        if protocol.model.pinned_sha256().is_none() {
            bad.push("the protocol does not pin the model hash".into());
        }
        report.checks.push(check(
            "provenance.release",
            bad.is_empty(),
            if bad.is_empty() {
                "a release run: clean recorded tree, pinned model".to_string()
            } else {
                format!(
                    "recorded as a release run, but {}: `run --release` refuses that",
                    bad.join(" and ")
                )
            },
        ));
    }
    let times = (
        chrono::DateTime::parse_from_rfc3339(&evidence.provenance.started_at),
        chrono::DateTime::parse_from_rfc3339(&evidence.provenance.finished_at),
    );
    report.checks.push(check(
        "provenance.times",
        matches!(&times, (Ok(a), Ok(b)) if a <= b),
        format!(
            "started {} <= finished {}",
            crate::fsx::printable(&evidence.provenance.started_at),
            crate::fsx::printable(&evidence.provenance.finished_at)
        ),
    ));
    if let Some(pinned) = protocol.model.pinned_sha256() {
        let recorded = evidence.model.sha256.as_deref().unwrap_or("none");
        let ok = recorded.eq_ignore_ascii_case(pinned.trim());
        report.checks.push(check(
            "model.sha256",
            ok,
            format!(
                "protocol pins {}, evidence records {}",
                short(pinned),
                short(recorded)
            ),
        ));
    }
}

/// The `image_sha256` column of `cases.parquet`, when present.
fn read_image_hashes(path: &Path) -> Option<Vec<Option<String>>> {
    let df = crate::table::read_table(path).ok()?;
    let c = df
        .column("image_sha256")
        .ok()?
        .cast(&polars::prelude::DataType::String)
        .ok()?;
    let ca = c.str().ok()?;
    Some(ca.iter().map(|v| v.map(String::from)).collect())
}

fn status_name(s: &CaseStatus) -> &'static str {
    s.as_str()
}

fn fmt_score(s: Option<f64>) -> String {
    s.map(|v| format!("{v}")).unwrap_or_else(|| "none".into())
}

/// Checks the journal's run key against the evidence, and every case's journaled answer
/// (the last entry for its key, as the harness uses it) against `cases.parquet`.
fn check_journal(
    dir: &Path,
    evidence: &Evidence,
    protocol: &Protocol,
    rows: &[CaseRow],
    images: Option<&[Option<String>]>,
    report: &mut VerifyReport,
) -> Result<()> {
    let rel = Path::new(crate::harness::journal::JOURNAL_FILE);
    let text = match crate::fsx::read_inside_to_string(dir, rel) {
        Ok(t) => t,
        Err(e) => {
            report.checks.push(check(
                "journal.present",
                false,
                format!(
                    "{} cannot be read ({e}): every run writes one, and it records every answer as it arrived",
                    rel.display()
                ),
            ));
            return Ok(());
        }
    };
    let parsed = crate::harness::journal::parse_text(&text);
    let Some(h) = parsed.header else {
        report.checks.push(check(
            "journal.header",
            false,
            "journal.jsonl has no readable header line",
        ));
        return Ok(());
    };
    let model = evidence
        .model
        .sha256
        .clone()
        .unwrap_or_else(|| "unpinned".into());
    let task = crate::hash::canonical_sha256(&protocol.task)?;
    let settings =
        crate::hash::canonical_sha256(&crate::hash::canonicalize(&evidence.model.settings))?;
    let mut bad = Vec::new();
    if h.protocol != evidence.protocol.protocol {
        bad.push(format!(
            "protocol {} vs evidence {}",
            crate::fsx::printable(&h.protocol),
            crate::fsx::printable(&evidence.protocol.protocol)
        ));
    }
    if h.model_sha256 != model {
        bad.push(format!(
            "model {} vs evidence {}",
            short(&h.model_sha256),
            short(&model)
        ));
    }
    if h.task_sha256 != task {
        bad.push(format!(
            "task {} vs protocol task {}",
            short(&h.task_sha256),
            short(&task)
        ));
    }
    if h.settings_sha256 != settings {
        bad.push(format!(
            "settings {} vs evidence model.settings {}",
            short(&h.settings_sha256),
            short(&settings)
        ));
    }
    report.checks.push(check(
        "journal.header",
        bad.is_empty(),
        if bad.is_empty() {
            "the journal's run key (model, task, settings hashes) matches the evidence".to_string()
        } else {
            format!("the journal's run key differs: {}", bad.join("; "))
        },
    ));
    let Some(images) = images else {
        return Ok(());
    };
    let (last, torn) = (parsed.last, parsed.torn);
    if torn > 0 {
        report.checks.push(check(
            "journal.entries",
            false,
            format!("{torn} journal line(s) cannot be read"),
        ));
    }
    for (row, img) in rows.iter().zip(images) {
        let Some(img) = img else { continue };
        let key = crate::harness::case_key(&h, img);
        let Some(e) = last.get(&key) else {
            // A case the run never reached (interrupted, `--limit`) has no entry by design.
            if row.status == CaseStatus::NotEvaluated {
                continue;
            }
            report.cases.push(CaseProblem {
                case_id: row.case_id.clone(),
                problem: "no journal entry for this case (the journal records every answer)".into(),
            });
            continue;
        };
        let jscore = e.result.prediction().map(|p| p.score);
        let mut diffs = Vec::new();
        if e.result.status() != row.status {
            diffs.push(format!(
                "status {} in {CASES_FILE}, {} in the journal",
                status_name(&row.status),
                status_name(&e.result.status())
            ));
        }
        if jscore.map(f64::to_bits) != row.score.map(f64::to_bits) && jscore != row.score {
            diffs.push(format!(
                "score {} in {CASES_FILE}, {} in the journal",
                fmt_score(row.score),
                fmt_score(jscore)
            ));
        }
        if !diffs.is_empty() {
            report.cases.push(CaseProblem {
                case_id: row.case_id.clone(),
                problem: diffs.join("; "),
            });
        }
    }
    Ok(())
}

/// The HTML case explorer's thumbnails as `medgate run` drew them, from the auditor's golden
/// set (opened with the set's own LOCKed manifest, every byte verified).
fn thumbnails_from(
    gs: &Path,
    protocol: &Protocol,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut spec = protocol.golden_set.clone();
    spec.path = gs.to_path_buf();
    if crate::fsx::check_rel(&spec.lock).is_some() {
        spec.lock = PathBuf::from(crate::golden::lock::LOCK_FILE);
    }
    let lock = crate::golden::read_lock(&crate::fsx::safe_join(gs, &spec.lock)?)?;
    spec.manifest = PathBuf::from(&lock.manifest);
    let set = crate::golden::GoldenSet::open(&spec, Path::new(""), &protocol.subgroups.attributes)?;
    Ok(crate::report::cases::thumbnails(
        &set,
        protocol.report.thumbnails,
    ))
}

/// Checks the golden set: intact against its LOCK, the recorded root and LOCK hashes, and the
/// case IDs, labels, image hashes and subgroup attributes of `cases.parquet`.
fn check_golden_set(
    gs: &Path,
    evidence: &Evidence,
    protocol: &Protocol,
    rows: &[CaseRow],
    images: Option<&[Option<String>]>,
    report: &mut VerifyReport,
) -> Result<()> {
    // The LOCK and the manifest are the set's own: plain names inside it, the manifest the one
    // its LOCK fixes. A protocol (possibly the bundle's, possibly edited) naming a file
    // elsewhere is a discrepancy, never a path to read.
    let mut spec = protocol.golden_set.clone();
    let mut bad_paths = Vec::new();
    if let Some(why) = crate::fsx::check_rel(&spec.lock) {
        bad_paths.push(format!(
            "golden_set.lock `{}` {why}",
            crate::fsx::printable(&spec.lock.display().to_string())
        ));
        spec.lock = PathBuf::from(crate::golden::lock::LOCK_FILE);
    }
    let lock_path = crate::fsx::safe_join(gs, &spec.lock)?;
    let lock = crate::golden::read_lock(&lock_path)?;
    if Path::new(&lock.manifest) != spec.manifest {
        bad_paths.push(format!(
            "the protocol names the manifest `{}`, the set's LOCK fixes `{}`",
            crate::fsx::printable(&spec.manifest.display().to_string()),
            crate::fsx::printable(&lock.manifest)
        ));
    }
    spec.manifest = PathBuf::from(&lock.manifest);
    if let Some(why) = crate::fsx::check_rel(&spec.manifest) {
        return Err(Error::input(format!(
            "{}: the LOCK's manifest `{}` {why}",
            lock_path.display(),
            crate::fsx::printable(&lock.manifest)
        )));
    }
    report.checks.push(check(
        "golden_set.paths",
        bad_paths.is_empty(),
        if bad_paths.is_empty() {
            format!(
                "LOCK {} and manifest {} are the set's own",
                spec.lock.display(),
                spec.manifest.display()
            )
        } else {
            format!(
                "{}; the set's own LOCK and manifest were used",
                bad_paths.join("; ")
            )
        },
    ));
    let v = crate::golden::verify_set(gs, &lock_path)?;
    let intact = v.is_intact();
    report.checks.push(check(
        "golden_set.intact",
        intact,
        if intact {
            format!("{} matches its LOCK", gs.display())
        } else {
            format!(
                "{} does not match its LOCK: {} added, {} missing, {} changed",
                gs.display(),
                v.added.len(),
                v.missing.len(),
                v.changed.len()
            )
        },
    ));
    let root = &v.root_hash;
    let root_ok = root == &evidence.golden_set.root_hash;
    report.checks.push(check(
        "golden_set.root_hash",
        root_ok,
        format!(
            "set root {}, evidence records {}",
            short(root),
            short(&evidence.golden_set.root_hash)
        ),
    ));
    let lock_sha = crate::hash::sha256_file(&lock_path)?.0;
    report.checks.push(check(
        "golden_set.lock_sha256",
        lock_sha == evidence.golden_set.lock_sha256,
        format!(
            "LOCK hashes to {}, evidence records {}",
            short(&lock_sha),
            short(&evidence.golden_set.lock_sha256)
        ),
    ));
    report.checks.push(check(
        "golden_set.locked_at",
        lock.created == evidence.golden_set.locked_at,
        format!(
            "LOCK locked at {}, evidence records {}",
            crate::fsx::printable(&lock.created),
            crate::fsx::printable(&evidence.golden_set.locked_at)
        ),
    ));
    let before = report.cases.len();
    let set_cases = match golden_cases(gs, &spec, protocol) {
        Ok(c) => c,
        Err(e) => {
            report.checks.push(check(
                "golden_set.open",
                false,
                format!("the set does not open as a locked golden set ({e}); comparing with its manifest as it is"),
            ));
            manifest_cases(gs, &spec, protocol)?
        }
    };
    compare_set_cases(&set_cases, protocol, rows, images, report);
    let ok = intact && root_ok && bad_paths.is_empty() && report.cases.len() == before;
    report.anchors.push(Anchor::new(
        "golden_set",
        if ok {
            AnchorState::Anchored
        } else {
            AnchorState::Failed
        },
        format!("{} (root {})", gs.display(), short(root)),
    ));
    Ok(())
}

/// Compares the set's cases with `cases.parquet`: IDs, labels, image hashes, attributes.
fn compare_set_cases(
    set_cases: &[SetCase],
    protocol: &Protocol,
    rows: &[CaseRow],
    images: Option<&[Option<String>]>,
    report: &mut VerifyReport,
) {
    let by_id: BTreeMap<&str, &SetCase> =
        set_cases.iter().map(|c| (c.case_id.as_str(), c)).collect();
    let mut seen = std::collections::BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        seen.insert(row.case_id.as_str());
        let Some(c) = by_id.get(row.case_id.as_str()) else {
            report.cases.push(CaseProblem {
                case_id: row.case_id.clone(),
                problem: "in the bundle but not in the golden set's manifest".into(),
            });
            continue;
        };
        let mut diffs = Vec::new();
        match c.label {
            Some(l) if l == row.label => {}
            Some(l) => diffs.push(format!(
                "label {} in the manifest, {} in {CASES_FILE} (relabelled?)",
                u8::from(l),
                u8::from(row.label)
            )),
            None => diffs.push("the manifest's label is not 0/1 or true/false".into()),
        }
        if let (Some(Some(img)), Some(set_img)) = (images.and_then(|im| im.get(i)), &c.image_sha256)
            && img != set_img
        {
            diffs.push(format!(
                "image hash {} in the set, {} in {CASES_FILE}",
                short(set_img),
                short(img)
            ));
        }
        for a in &protocol.subgroups.attributes {
            let set_v = c.attributes.get(a).cloned().unwrap_or_default();
            let row_v = row.attributes.get(a).cloned().unwrap_or_default();
            if set_v != row_v {
                diffs.push(format!(
                    "{a} `{set_v}` in the manifest, `{row_v}` in {CASES_FILE}"
                ));
            }
        }
        if !diffs.is_empty() {
            report.cases.push(CaseProblem {
                case_id: row.case_id.clone(),
                problem: diffs.join("; "),
            });
        }
    }
    for c in set_cases {
        if !seen.contains(c.case_id.as_str()) {
            report.cases.push(CaseProblem {
                case_id: c.case_id.clone(),
                problem: format!("in the golden set's manifest but not in {CASES_FILE}"),
            });
        }
    }
}

/// Checks that the audit ledger records this run (same verdict, model, set, user and time),
/// that its hash chain is intact, and that it still holds the exact entry the evidence
/// anchored (sequence number and hashes: a re-chained or truncated ledger fails). A ledger
/// the protocol names (`named`) but that is not there is a discrepancy; one only expected
/// beside the set is reported as not at hand. Returns the entries when read.
fn check_ledger(
    path: &Path,
    named: bool,
    evidence: &Evidence,
    report: &mut VerifyReport,
) -> Result<Option<Vec<crate::trace::ledger::LedgerEntry>>> {
    use crate::trace::ledger;
    if !path.is_file() {
        if named {
            report.checks.push(check(
                "ledger.present",
                false,
                format!(
                    "the protocol's audit ledger {} is not there: the run's record of unblinding the set cannot be checked (pass --ledger FILE)",
                    path.display()
                ),
            ));
            report.anchors.push(Anchor::new(
                "ledger",
                AnchorState::Failed,
                format!("{} missing", path.display()),
            ));
        } else {
            report.anchors.push(Anchor::new(
                "ledger",
                AnchorState::NotGiven,
                format!("no ledger at {}", path.display()),
            ));
        }
        return Ok(None);
    }
    let entries = match ledger::read(path) {
        Ok(e) => e,
        Err(e) => {
            report.checks.push(check(
                "ledger.chain",
                false,
                format!("{}: {e}", path.display()),
            ));
            report.anchors.push(Anchor::new(
                "ledger",
                AnchorState::Failed,
                format!("{} unreadable", path.display()),
            ));
            return Ok(None);
        }
    };
    let breaks = ledger::verify(&entries)?;
    report.checks.push(check(
        "ledger.chain",
        breaks.is_empty(),
        if breaks.is_empty() {
            format!(
                "{}: hash chain intact ({} entries)",
                path.display(),
                entries.len()
            )
        } else {
            let b: Vec<String> = breaks
                .iter()
                .map(|b| format!("line {}: {}", b.line, b.problem))
                .collect();
            format!("{}: {}", path.display(), b.join("; "))
        },
    ));
    let model = evidence
        .model
        .sha256
        .clone()
        .unwrap_or_else(|| "unpinned".into());
    let verdict = evidence.verdict.label();
    let protocol = format!(
        "{} v{}",
        evidence.protocol.protocol, evidence.protocol.version
    );
    let (ok, detail) = match entries.iter().find(|e| e.run_id == evidence.run_id) {
        None => (
            false,
            format!(
                "run {} is not recorded in {}",
                crate::fsx::printable(&evidence.run_id),
                path.display()
            ),
        ),
        Some(e) => {
            let mut bad = Vec::new();
            if e.verdict != verdict {
                bad.push(format!(
                    "verdict {} in the ledger, {verdict} in the evidence",
                    crate::fsx::printable(&e.verdict)
                ));
            }
            if e.model_sha256 != model {
                bad.push(format!(
                    "model {} in the ledger, {} in the evidence",
                    short(&e.model_sha256),
                    short(&model)
                ));
            }
            if e.set_root != evidence.golden_set.root_hash {
                bad.push(format!(
                    "set root {} in the ledger, {} in the evidence",
                    short(&e.set_root),
                    short(&evidence.golden_set.root_hash)
                ));
            }
            if e.user != evidence.provenance.user {
                bad.push(format!(
                    "user {} in the ledger, {} in the evidence",
                    crate::fsx::printable(&e.user),
                    crate::fsx::printable(&evidence.provenance.user)
                ));
            }
            if e.time != evidence.provenance.finished_at {
                bad.push(format!(
                    "time {} in the ledger, finished_at {} in the evidence",
                    crate::fsx::printable(&e.time),
                    crate::fsx::printable(&evidence.provenance.finished_at)
                ));
            }
            if e.protocol != protocol {
                bad.push(format!(
                    "protocol {} in the ledger, {} in the evidence",
                    crate::fsx::printable(&e.protocol),
                    crate::fsx::printable(&protocol)
                ));
            }
            if bad.is_empty() {
                (
                    true,
                    format!(
                        "entry {} records this run ({verdict}, same model, set, user and time)",
                        e.seq
                    ),
                )
            } else {
                (false, format!("entry {}: {}", e.seq, bad.join("; ")))
            }
        }
    };
    report.checks.push(check("ledger.entry", ok, detail));
    let anchored = match &evidence.ledger_entry {
        Some(a) => {
            let bad = ledger::check_anchor(&entries, a)?;
            report.checks.push(check(
                "ledger.anchor",
                bad.is_empty(),
                if bad.is_empty() {
                    format!(
                        "entry {} and the chain before it are exactly as the evidence recorded",
                        a.seq
                    )
                } else {
                    bad.join("; ")
                },
            ));
            bad.is_empty()
        }
        None => {
            report.not_recomputed.push(
                "ledger_entry: absent (evidence written before medgate anchored the ledger); the ledger's chain is checked, not its completeness".into(),
            );
            false
        }
    };
    let all_ok = ok && breaks.is_empty() && anchored;
    report.anchors.push(Anchor::new(
        "ledger",
        if all_ok {
            AnchorState::Anchored
        } else {
            AnchorState::Failed
        },
        path.display().to_string(),
    ));
    Ok(Some(entries))
}

/// One case of the golden set as the verifier compares it.
struct SetCase {
    case_id: String,
    label: Option<bool>,
    image_sha256: Option<String>,
    attributes: BTreeMap<String, String>,
}

/// The cases of a locked golden set, through the golden stage (verifies it too).
fn golden_cases(
    gs: &Path,
    spec: &crate::protocol::GoldenSetSpec,
    protocol: &Protocol,
) -> Result<Vec<SetCase>> {
    let mut spec = spec.clone();
    spec.path = gs.to_path_buf();
    let set =
        crate::golden::GoldenSet::open(&spec, Path::new("."), &protocol.subgroups.attributes)?;
    Ok(set
        .cases
        .iter()
        .map(|c| SetCase {
            case_id: c.case_id.clone(),
            label: Some(c.label),
            image_sha256: Some(c.image_sha256.clone()),
            attributes: c.attributes.clone(),
        })
        .collect())
}

/// The manifest read as it is, for a set that no longer opens (changed after locking), so that
/// a relabelled case is still named.
fn manifest_cases(
    gs: &Path,
    g: &crate::protocol::GoldenSetSpec,
    protocol: &Protocol,
) -> Result<Vec<SetCase>> {
    let path = crate::fsx::safe_join(gs, &g.manifest)?;
    let df = crate::table::read_table_as_strings(&path)?;
    let col = |name: &str| -> Result<Vec<String>> {
        let c = df
            .column(name)
            .map_err(|_| Error::input(format!("{}: no `{name}` column", path.display())))?;
        let s = c
            .str()
            .map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
        Ok(s.iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let ids = col(&g.case_id_column)?;
    let labels = col(&g.label_column)?;
    let attrs: Vec<(String, Vec<String>)> = protocol
        .subgroups
        .attributes
        .iter()
        .map(|a| Ok((a.clone(), col(a)?)))
        .collect::<Result<_>>()?;
    Ok(ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| SetCase {
            case_id: id,
            label: crate::golden::manifest::parse_label(&labels[i]),
            image_sha256: None,
            attributes: attrs
                .iter()
                .map(|(a, v)| (a.clone(), v[i].clone()))
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{TracedItem, Verdict};

    fn item(
        id: &str,
        text: &str,
        source: Option<&str>,
        criteria: &[&str],
        verdict: Option<Verdict>,
    ) -> TracedItem {
        TracedItem {
            id: id.into(),
            text: text.into(),
            source: source.map(String::from),
            criteria: criteria.iter().map(|s| s.to_string()).collect(),
            verdict,
            evidence: if criteria.is_empty() {
                Vec::new()
            } else {
                vec!["evidence.json".into(), "cases.parquet".into()]
            },
        }
    }

    #[test]
    fn traceability_rebuilt_from_recorded_texts_matches_the_original() {
        let crit =
            |id: &str, req: &str, rc: Option<&str>, v: Verdict| crate::trace::CriterionResult {
                id: id.into(),
                requirement: req.into(),
                risk_control: rc.map(String::from),
                metric: crate::protocol::Metric::Sensitivity,
                scope: crate::protocol::Scope::Overall,
                bound: crate::protocol::Bound::Lower,
                comparator: crate::protocol::Comparator::AtLeast,
                goal: 0.8,
                observations: Vec::new(),
                verdict: v,
                rationale: None,
                method: "wilson".into(),
                warnings: Vec::new(),
            };
        let criteria = vec![
            crit("AC-1", "SRS-1", Some("RC-1"), Verdict::Pass),
            crit("AC-2", "SRS-9", Some("RC-9"), Verdict::Fail),
        ];
        let reqs = RequirementsFile {
            requirements: vec![
                Requirement {
                    id: "SRS-1".into(),
                    text: "detect".into(),
                    source: Some("UN-1".into()),
                },
                Requirement {
                    id: "SRS-2".into(),
                    text: "uncovered".into(),
                    source: None,
                },
            ],
        };
        let risks = RisksFile {
            risk_controls: vec![RiskControl {
                id: "RC-1".into(),
                hazard: "missed finding".into(),
                control: "verified sensitivity".into(),
                requirements: vec!["SRS-1".into()],
            }],
        };
        let original = crate::trace::build_traceability(&criteria, Some(&reqs), Some(&risks));
        // SRS-9 and RC-9 are implicit (named only by a criterion).
        assert_eq!(
            original.requirements[2],
            item("SRS-9", "", None, &["AC-2"], Some(Verdict::Fail))
        );
        assert_eq!(recompute_traceability(&criteria, &original), original);
        // A verdict edited in the recorded matrix is not reproduced.
        let mut edited = original.clone();
        edited.requirements[0].verdict = Some(Verdict::Fail);
        assert_ne!(recompute_traceability(&criteria, &edited), edited);
    }
}
