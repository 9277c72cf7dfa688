//! Composition of the stages for the commands that span several of them (`check`, `run`).
//!
//! Stages never call each other sideways; this module is the one place that wires them.

use std::path::Path;

use crate::diag::Diagnostic;
use crate::error::Error;
use crate::protocol::{self, ExternalFacts, LoadedProtocol};
use crate::trace::inputs;

/// The result of checking one protocol file.
#[derive(Debug)]
pub struct CheckReport {
    /// The parsed protocol, when it parsed.
    pub protocol: Option<LoadedProtocol>,
    /// Every problem found (errors and warnings).
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckReport {
    /// True when no diagnostic is an error.
    pub fn is_valid(&self) -> bool {
        self.protocol.is_some() && !self.diagnostics.iter().any(|d| d.is_error())
    }
}

fn diags_of(e: Error, file: &str) -> Vec<Diagnostic> {
    match e {
        Error::Invalid(d) => d,
        other => vec![Diagnostic::error(file, None, other.to_string())],
    }
}

/// Loads a protocol and runs every check: structure, semantics, manifest columns, and the
/// links to requirements and risk controls.
pub fn check_protocol(path: &Path) -> CheckReport {
    let file = path.display().to_string();
    let lp = match protocol::load(path) {
        Ok(lp) => lp,
        Err(e) => {
            return CheckReport {
                protocol: None,
                diagnostics: diags_of(e, &file),
            };
        }
    };
    let mut diagnostics = Vec::new();
    let mut facts = ExternalFacts::default();
    let g = &lp.protocol.golden_set;
    let manifest = lp.resolve(&g.path).join(&g.manifest);
    if manifest.is_file() {
        match crate::table::read_table_as_strings(&manifest) {
            Ok(df) => facts.manifest_columns = Some(crate::table::column_names(&df)),
            Err(e) => diagnostics.push(Diagnostic::error(
                manifest.display().to_string(),
                None,
                format!("cannot read the golden-set manifest: {e}"),
            )),
        }
    }
    if let Some(t) = &lp.protocol.traceability {
        let req = lp.resolve(&t.requirements);
        if req.is_file() {
            match inputs::load_requirements(&req) {
                Ok(r) => {
                    facts.requirement_ids = Some(r.requirements.into_iter().map(|r| r.id).collect())
                }
                Err(e) => diagnostics.extend(diags_of(e, &req.display().to_string())),
            }
        }
        if let Some(risks) = &t.risks {
            let rp = lp.resolve(risks);
            if rp.is_file() {
                match inputs::load_risks(&rp) {
                    Ok(r) => {
                        facts.risk_control_ids =
                            Some(r.risk_controls.into_iter().map(|r| r.id).collect())
                    }
                    Err(e) => diagnostics.extend(diags_of(e, &rp.display().to_string())),
                }
            }
        }
    }
    diagnostics.extend(protocol::check(&lp, &facts));
    CheckReport {
        protocol: Some(lp),
        diagnostics,
    }
}

// ---------------------------------------------------------------------------------------
// `medgate run`
// ---------------------------------------------------------------------------------------

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::exit::Outcome;
use crate::golden::GoldenSet;
use crate::harness::{self, HarnessOptions, JournalHeader};
use crate::model::{Backend, CaseInput};
use crate::protocol::ReportFormat;
use crate::trace::analysis::{self, CaseRow};
use crate::trace::{
    self, Evidence, GoldenSetIdentity, ModelIdentity, Provenance, comparison, ledger,
};
use crate::world::World;

/// Options of `medgate run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output (bundle) directory; default `runs/<protocol ID>`.
    pub out: Option<PathBuf>,
    /// Release mode: refuse a dirty tree, an unpinned model hash, an unlocked set.
    pub release: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// The command line, recorded for reproduction.
    pub command: String,
    /// Stop after inferring this many cases (tests of interruption).
    pub limit: Option<usize>,
    /// Render with an external typst binary instead of the embedded compiler.
    pub typst_bin: Option<PathBuf>,
    /// Rerun into a signed bundle: its signatures are moved aside (with a warning).
    pub force: bool,
}

/// What `medgate run` produced.
#[derive(Debug)]
pub struct RunSummary {
    /// The evidence written.
    pub evidence: Evidence,
    /// The bundle directory.
    pub out_dir: PathBuf,
    /// Files written into the bundle (sorted).
    pub files: Vec<String>,
    /// Cases inferred now / taken from the journal.
    pub inferred: usize,
    /// Cases taken from the journal.
    pub resumed: usize,
    /// The process outcome.
    pub outcome: Outcome,
    /// Set when more cases than tolerated were not evaluated.
    pub infrastructure_failure: Option<String>,
}

fn build_backend(
    lp: &LoadedProtocol,
    set: &GoldenSet,
    world: &dyn World,
) -> Result<Box<dyn Backend>> {
    let ids: Vec<String> = set.cases.iter().map(|c| c.case_id.clone()).collect();
    crate::model::build_backend(&lp.protocol, &lp.dir, &ids, world)
}

/// Runs a protocol end to end and writes the evidence bundle.
pub fn run(protocol_path: &Path, opts: &RunOptions, world: &dyn World) -> Result<RunSummary> {
    let started = world.now();
    // 1. Check the protocol, verify the golden set (every byte) and the model hash.
    let check = check_protocol(protocol_path);
    if !check.is_valid() {
        return Err(Error::Invalid(check.diagnostics));
    }
    let mut warnings: Vec<String> = check
        .diagnostics
        .iter()
        .filter(|d| !d.is_error())
        .map(|d| d.message.clone())
        .collect();
    let lp = check
        .protocol
        .ok_or_else(|| Error::Internal("valid check without a protocol".into()))?;
    let p = &lp.protocol;
    let set = GoldenSet::open(&p.golden_set, &lp.dir, &p.subgroups.attributes)?;
    // 1b. A release comparison's reference: verified and matched before anything is written.
    let reference = match &p.comparison {
        Some(spec) => Some(load_verified_reference(&lp, spec, &set, world)?),
        None => None,
    };

    // 2. Provenance, and the release gate on it.
    let git = trace::provenance::git_state(&lp.dir);
    if opts.release {
        match &git {
            None => {
                return Err(Error::input_hint(
                    "release run refused: the protocol is not in a git repository",
                    "commit the protocol, requirements and golden-set lock to version control",
                ));
            }
            Some(g) if g.dirty => {
                return Err(Error::input_hint(
                    format!(
                        "release run refused: the working tree is dirty ({})",
                        g.dirty_files.join(", ")
                    ),
                    "commit or stash every change first; a release record must name an exact commit",
                ));
            }
            _ => {}
        }
        if p.model.pinned_sha256().is_none() {
            return Err(Error::input_hint(
                "release run refused: the protocol does not pin the model's sha256",
                "add `sha256:` under `model` (medgate prints the weights hash in every run's evidence)",
            ));
        }
    }
    if let Some(g) = &git {
        if g.dirty {
            warnings.push(format!(
                "working tree is dirty ({} file(s)): not a release record",
                g.dirty_files.len()
            ));
        }
    }
    let backend = build_backend(&lp, &set, world)?;
    let info = backend.info();
    if let (Some(pinned), Some(actual)) = (p.model.pinned_sha256(), info.model_sha256.as_deref()) {
        if pinned != actual {
            return Err(Error::input_hint(
                format!(
                    "model hash mismatch: protocol pins {pinned}, the weights hash to {actual}"
                ),
                "the weights changed since the protocol was written: restore them, or re-approve the protocol with the new hash",
            ));
        }
    }
    let model_sha = info
        .model_sha256
        .clone()
        .unwrap_or_else(|| "unpinned".into());
    let settings = crate::hash::canonicalize(&info.settings);

    // 3. Inference with the journal.
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&p.protocol));
    if let Some((ref_dir, _)) = &reference {
        let same = match (ref_dir.canonicalize(), out_dir.canonicalize()) {
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
    }
    // One run per bundle, and only into an empty directory or a bundle of this protocol.
    let (_bundle_lock, out_warnings) =
        crate::trace::bundle::open_out_dir(&out_dir, &p.protocol, opts.force)?;
    warnings.extend(out_warnings);
    let header = JournalHeader {
        medgate_journal: harness::journal::JOURNAL_FORMAT,
        protocol: p.protocol.clone(),
        model_sha256: model_sha.clone(),
        task_sha256: crate::hash::canonical_sha256(&p.task)?,
        settings_sha256: crate::hash::canonical_sha256(&settings)?,
    };
    let inputs: Vec<CaseInput> = set
        .cases
        .iter()
        .map(|c| CaseInput {
            case_id: c.case_id.clone(),
            image_path: set.dir.join(&c.image),
            image_sha256: c.image_sha256.clone(),
        })
        .collect();
    let hopts = HarnessOptions {
        progress: opts.progress,
        limit: opts.limit,
    };
    let out = harness::run_cases(backend.as_ref(), &inputs, &header, &out_dir, world, &hopts)?;

    // 4. Statistics, criteria, evidence.
    let rows: Vec<CaseRow> = set
        .cases
        .iter()
        .zip(&out.results)
        .map(|(c, r)| CaseRow {
            case_id: c.case_id.clone(),
            label: c.label,
            status: r.status.clone(),
            score: r.prediction.as_ref().map(|p| p.score),
            error: r.error.clone(),
            attributes: c.attributes.clone(),
        })
        .collect();
    let new_images: Vec<Option<String>> = set
        .cases
        .iter()
        .map(|c| Some(c.image_sha256.clone()))
        .collect();
    let a = analysis::analyze_compared(
        p,
        &rows,
        reference.as_ref().map(|(_, r)| (&new_images[..], r)),
    )?;
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
    let (reqs, risks) = load_trace_inputs(&lp)?;
    let traceability = trace::build_traceability(&a.criteria, reqs.as_ref(), risks.as_ref());
    let ledger_path = p
        .ledger
        .path
        .as_ref()
        .map(|l| lp.resolve(l))
        .unwrap_or_else(|| set.dir.join(ledger::LEDGER_FILE));
    let prior = ledger::read(&ledger_path)?;
    let versions = ledger::model_versions(&prior, &set.lock.root_hash, Some(&model_sha));
    if versions > p.ledger.max_model_versions {
        warnings.push(format!(
            "test-set reuse: {versions} model versions have now been evaluated on this golden set (protocol limit {}); consider a fresh sequestered set",
            p.ledger.max_model_versions
        ));
    }
    if let Some(f) = &a.infrastructure_failure {
        warnings.push(format!("infrastructure failure: {f}"));
    }
    let finished = world.now();
    let run_id = format!(
        "{}-{}-{}",
        p.protocol,
        started.format("%Y%m%dT%H%M%SZ"),
        &a.results_sha256[..8]
    );
    // The ledger entry is built now and recorded in the evidence (its anchor), then appended
    // once the bundle is written.
    let ledger_entry = ledger::prepare(
        &ledger_path,
        ledger::NewEntry {
            time: finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            user: world.user(),
            protocol: format!("{} v{}", p.protocol, p.version),
            model_sha256: model_sha.clone(),
            set_root: set.lock.root_hash.clone(),
            run_id: run_id.clone(),
            verdict: a.verdict.label().into(),
        },
    )?;
    let mut trace_files = Vec::new();
    if let Some(t) = &p.traceability {
        trace_files.push(trace::provenance::file_identity(
            &lp.resolve(&t.requirements),
        )?);
        if let Some(r) = &t.risks {
            trace_files.push(trace::provenance::file_identity(&lp.resolve(r))?);
        }
    }
    let mut protocol_file = trace::provenance::file_identity(&lp.path)?;
    protocol_file.sha256 = lp.sha256.clone();
    let evidence = Evidence {
        medgate_evidence: trace::EVIDENCE_FORMAT,
        run_id: run_id.clone(),
        protocol: p.clone(),
        protocol_file,
        provenance: Provenance {
            git,
            medgate_version: env!("CARGO_PKG_VERSION").into(),
            medgate_commit: trace::provenance::BUILD_COMMIT.into(),
            command: opts.command.clone(),
            host: world.host(),
            user: world.user(),
            started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            finished_at: finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            trace_files,
            release: opts.release,
        },
        golden_set: GoldenSetIdentity {
            path: p.golden_set.path.display().to_string(),
            root_hash: set.lock.root_hash.clone(),
            lock_sha256: crate::hash::sha256_file(&set.dir.join(&p.golden_set.lock))?.0,
            locked_at: set.lock.created.clone(),
            cases: set.cases.len() as u64,
        },
        model: ModelIdentity {
            backend: info.backend.clone(),
            name: info.model_name.clone(),
            sha256: info.model_sha256.clone(),
            settings,
        },
        accountability: a.accountability.clone(),
        statistics: a.statistics.clone(),
        equivocal_analyses: a.equivocal_analyses.clone(),
        not_evaluated_analyses: a.not_evaluated_analyses.clone(),
        gated_on: a.gated_on.clone(),
        curves: a.curves.clone(),
        criteria: a.criteria.clone(),
        traceability,
        warnings,
        comparison: a.comparison.clone(),
        verdict: a.verdict,
        results_sha256: a.results_sha256.clone(),
        ledger_entry: Some(ledger::LedgerAnchor::of(&ledger_entry)),
    };

    // 5. The bundle.
    write_bundle(&out_dir, &lp, &set, &out.results, &evidence, opts)?;
    if let (Some((ref_dir, _)), Some(cmp)) = (&reference, &evidence.comparison) {
        write_comparison_files(&out_dir, ref_dir, cmp, &set, p)?;
    }
    ledger::commit(&ledger_path, &ledger_entry)?;
    let files = crate::trace::bundle::write_sha256sums(&out_dir)?;
    let outcome = if a.infrastructure_failure.is_some() {
        Outcome::Infrastructure
    } else if evidence.verdict == trace::Verdict::Pass {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    Ok(RunSummary {
        evidence,
        out_dir,
        files,
        inferred: out.inferred,
        resumed: out.resumed,
        outcome,
        infrastructure_failure: a.infrastructure_failure,
    })
}

type TraceInputs = (Option<inputs::RequirementsFile>, Option<inputs::RisksFile>);

fn load_trace_inputs(lp: &LoadedProtocol) -> Result<TraceInputs> {
    let Some(t) = &lp.protocol.traceability else {
        return Ok((None, None));
    };
    let reqs = inputs::load_requirements(&lp.resolve(&t.requirements))?;
    let risks = match &t.risks {
        Some(r) => Some(inputs::load_risks(&lp.resolve(r))?),
        None => None,
    };
    Ok((Some(reqs), risks))
}

fn write_bundle(
    out_dir: &Path,
    lp: &LoadedProtocol,
    set: &GoldenSet,
    results: &[harness::CaseResult],
    evidence: &Evidence,
    opts: &RunOptions,
) -> Result<()> {
    let p = &lp.protocol;
    use crate::fsx::write_inside;
    let mut json =
        serde_json::to_string_pretty(evidence).map_err(|e| Error::Internal(e.to_string()))?;
    json.push('\n');
    write_inside(
        out_dir,
        Path::new(crate::trace::bundle::EVIDENCE_FILE),
        json.as_bytes(),
    )?;
    write_inside(
        out_dir,
        Path::new(crate::trace::bundle::PROTOCOL_FILE),
        lp.source.as_bytes(),
    )?;
    let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in &p.subgroups.attributes {
        attrs.insert(
            a.clone(),
            set.cases
                .iter()
                .map(|c| c.attributes.get(a).cloned().unwrap_or_default())
                .collect(),
        );
    }
    let labels: Vec<bool> = set.cases.iter().map(|c| c.label).collect();
    let decode_opts = crate::golden::image::DecodeOptions::from_spec(&p.golden_set);
    let decode: Vec<Option<String>> = {
        use rayon::prelude::*;
        set.cases
            .par_iter()
            .map(|c| crate::golden::image::decode_note(&set.dir.join(&c.image), &decode_opts))
            .collect()
    };
    crate::trace::bundle::write_cases(
        &out_dir.join(crate::trace::bundle::CASES_FILE),
        results,
        &labels,
        &attrs,
        p.task.threshold,
        &decode,
    )?;
    let junit = crate::report::junit::render(evidence);
    write_inside(
        out_dir,
        Path::new(crate::trace::bundle::JUNIT_FILE),
        junit.as_bytes(),
    )?;
    let formats: Vec<ReportFormat> = p.report.formats.clone();
    let ropts = crate::report::RenderOptions {
        templates: p.report.templates.as_ref().map(|t| lp.resolve(t)),
        typst_bin: opts.typst_bin.clone(),
        thumbnails: if formats.contains(&ReportFormat::Html) {
            crate::report::cases::thumbnails(set, p.report.thumbnails)
        } else {
            Default::default()
        },
        ..Default::default()
    };
    crate::report::render_bundle(evidence, &formats, &ropts, out_dir)?;
    Ok(())
}

/// Verifies the reference bundle with the verify stage, loads it, and refuses it unless it is
/// the pinned run of the same protocol on the same locked set with the same cases.
fn load_verified_reference(
    lp: &LoadedProtocol,
    spec: &crate::protocol::ComparisonSpec,
    set: &GoldenSet,
    world: &dyn World,
) -> Result<(PathBuf, comparison::ReferenceCases)> {
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
    let report =
        crate::verify::verify_bundle(&dir, &crate::verify::VerifyOptions::default(), world)
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
    let new_cases: Vec<comparison::PairedCase> = set
        .cases
        .iter()
        .map(|c| comparison::PairedCase {
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
    Ok((dir, refc))
}

/// Copies the reference bundle's evidence, cases and protocol into `reference/` (so the new
/// bundle verifies on its own) and writes `flips.csv`.
fn write_comparison_files(
    out_dir: &Path,
    reference_dir: &Path,
    cmp: &comparison::ComparisonEvidence,
    set: &GoldenSet,
    p: &crate::protocol::Protocol,
) -> Result<()> {
    use crate::trace::bundle::{CASES_FILE, EVIDENCE_FILE, PROTOCOL_FILE};
    let copy_dir = out_dir.join(comparison::REFERENCE_DIR);
    std::fs::create_dir_all(&copy_dir).map_err(|e| Error::io(&copy_dir, e))?;
    for f in [EVIDENCE_FILE, CASES_FILE, PROTOCOL_FILE] {
        let (from, to) = (reference_dir.join(f), copy_dir.join(f));
        std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
    }
    let images: std::collections::HashMap<String, String> = set
        .cases
        .iter()
        .map(|c| {
            (
                c.case_id.clone(),
                c.image.to_string_lossy().replace('\\', "/"),
            )
        })
        .collect();
    comparison::write_flips(
        &out_dir.join(comparison::FLIPS_FILE),
        cmp,
        &images,
        &p.subgroups.attributes,
    )
}
