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
    /// The requirements and risks files, read and parsed once.
    pub trace: TraceInputs,
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

/// The requirements and risks files as read once by [`check_protocol`]: parsed, with the
/// identity (path, SHA-256 of exactly the bytes parsed, git blob) the evidence records.
#[derive(Debug, Clone, Default)]
pub struct TraceInputs {
    /// The requirements file, when the protocol names one and it parsed.
    pub requirements: Option<(inputs::RequirementsFile, crate::trace::FileIdentity)>,
    /// The risks file, likewise.
    pub risks: Option<(inputs::RisksFile, crate::trace::FileIdentity)>,
}

impl TraceInputs {
    /// The identities, requirements first.
    pub fn identities(&self) -> Vec<crate::trace::FileIdentity> {
        let r = self.requirements.as_ref().map(|r| r.1.clone());
        let k = self.risks.as_ref().map(|r| r.1.clone());
        r.into_iter().chain(k).collect()
    }
}

fn read_trace_file<T>(
    path: &Path,
    parse: impl Fn(&Path, &str) -> Result<T>,
) -> Result<(T, crate::trace::FileIdentity)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Error::input(format!("{}: not UTF-8 text", path.display())))?;
    let value = parse(path, &text)?;
    Ok((
        value,
        crate::trace::provenance::identity_of_bytes(path, &bytes),
    ))
}

/// Loads a protocol and runs every check: structure, semantics, manifest columns, and the
/// links to requirements and risk controls. Each file is read once; the parsed
/// requirements and risks come back in [`CheckReport::trace`].
pub fn check_protocol(path: &Path) -> CheckReport {
    let file = path.display().to_string();
    let lp = match protocol::load(path) {
        Ok(lp) => lp,
        Err(e) => {
            return CheckReport {
                protocol: None,
                diagnostics: diags_of(e, &file),
                trace: TraceInputs::default(),
            };
        }
    };
    let mut diagnostics = Vec::new();
    let mut facts = ExternalFacts::default();
    let mut trace = TraceInputs::default();
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
            match read_trace_file(&req, inputs::parse_requirements) {
                Ok(r) => {
                    facts.requirement_ids =
                        Some(r.0.requirements.iter().map(|r| r.id.clone()).collect());
                    trace.requirements = Some(r);
                }
                Err(e) => diagnostics.extend(diags_of(e, &req.display().to_string())),
            }
        }
        if let Some(risks) = &t.risks {
            let rp = lp.resolve(risks);
            if rp.is_file() {
                match read_trace_file(&rp, inputs::parse_risks) {
                    Ok(r) => {
                        facts.risk_control_ids =
                            Some(r.0.risk_controls.iter().map(|r| r.id.clone()).collect());
                        trace.risks = Some(r);
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
        trace,
    }
}

// ---------------------------------------------------------------------------------------
// `medgate run`
// ---------------------------------------------------------------------------------------

use std::path::PathBuf;

use crate::error::Result;
use crate::exit::Outcome;
use crate::golden::GoldenSet;
use crate::harness::{self, HarnessOptions};
use crate::trace::analysis;
use crate::trace::{self, Evidence, comparison, ledger};
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
    /// Write the harness events to this file as JSON lines (`--events`).
    pub events: Option<PathBuf>,
    /// `--resume`: refuse to start unless the output directory holds a journal.
    pub resume: bool,
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

/// Runs a protocol end to end and writes the evidence bundle. Composition only: each step
/// is one stage's entry point (the table in the crate docs).
pub fn run(protocol_path: &Path, opts: &RunOptions, world: &dyn World) -> Result<RunSummary> {
    let started = world.now();
    // protocol: load and check (the protocol, requirements and risks files read once).
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
    let trace_inputs = check.trace;
    let lp = check
        .protocol
        .ok_or_else(|| Error::Internal("valid check without a protocol".into()))?;
    let p = &lp.protocol;
    // golden: every byte verified against the LOCK.
    let set = GoldenSet::open(&p.golden_set, &lp.dir, &p.subgroups.attributes)?;
    // trace: a release comparison's reference, verified and matched before anything is written.
    let reference = match &p.comparison {
        Some(spec) => Some(load_verified_reference(&lp, spec, &set, world)?),
        None => None,
    };
    // trace: configuration identification and the release gate.
    let git = trace::provenance::git_state(&lp.dir);
    warnings.extend(trace::provenance::release_gate(
        opts.release,
        git.as_ref(),
        p,
    )?);
    // model: the backend, its weights checked against the pin.
    let ids: Vec<String> = set.cases.iter().map(|c| c.case_id.clone()).collect();
    let backend = crate::model::build_backend(p, &lp.dir, &ids, world)?;
    let info = backend.info();
    // harness: every case, journaled as it completes.
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
    if opts.resume {
        harness::check_resumable(&out_dir)?;
    }
    // One run per bundle, and only into an empty directory or a bundle of this protocol.
    let (_bundle_lock, out_warnings) =
        trace::bundle::open_out_dir(&out_dir, &p.protocol, opts.force)?;
    warnings.extend(out_warnings);
    let header = harness::journal_header(p, &info)?;
    let hopts = HarnessOptions {
        progress: opts.progress,
        limit: opts.limit,
        events: opts.events.clone(),
    };
    let inputs = harness::case_inputs(&set);
    let out = harness::run_cases(backend.as_ref(), &inputs, &header, &out_dir, world, &hopts)?;
    // stats and trace: analysis, criteria, traceability, warnings, evidence.
    let rows = analysis::case_rows(&set, &out.results);
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
    let ledger_path = ledger::path_for(&p.ledger, &lp.dir, &set.dir);
    let prior = ledger::read(&ledger_path)?;
    let versions = ledger::model_versions(&prior, &set.lock.root_hash, Some(&header.model_sha256));
    warnings.extend(trace::result_warnings(p, &a, versions));
    let traceability = trace::build_traceability(
        &a.criteria,
        trace_inputs.requirements.as_ref().map(|r| &r.0),
        trace_inputs.risks.as_ref().map(|r| &r.0),
    );
    let finished = world.now();
    // The ledger entry is built now and recorded in the evidence (its anchor), then appended
    // once the bundle is written.
    let ledger_entry = ledger::prepare(
        &ledger_path,
        ledger::NewEntry {
            time: finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            user: world.user(),
            protocol: format!("{} v{}", p.protocol, p.version),
            model_sha256: header.model_sha256.clone(),
            set_root: set.lock.root_hash.clone(),
            run_id: trace::run_id(&p.protocol, started, &a.results_sha256),
            verdict: a.verdict.label().into(),
        },
    )?;
    let evidence = trace::assemble_evidence(trace::EvidenceParts {
        protocol: &lp,
        golden_set: &set,
        model: &info,
        analysis: &a,
        traceability,
        trace_files: trace_inputs.identities(),
        git,
        warnings,
        command: opts.command.clone(),
        release: opts.release,
        started,
        finished,
        host: world.host(),
        user: world.user(),
        ledger_entry: Some(ledger::LedgerAnchor::of(&ledger_entry)),
    })?;
    // The bundle: the run's records, then the reports, the ledger entry, SHA256SUMS last.
    trace::bundle::write_records(&out_dir, &lp, &set, &out.results, &evidence)?;
    crate::report::junit::write(&evidence, &out_dir)?;
    let ropts = crate::report::RenderOptions {
        templates: p.report.templates.as_ref().map(|t| lp.resolve(t)),
        typst_bin: opts.typst_bin.clone(),
        thumbnails: if p
            .report
            .formats
            .contains(&crate::protocol::ReportFormat::Html)
        {
            crate::report::cases::thumbnails(&set, p.report.thumbnails)
        } else {
            Default::default()
        },
        ..Default::default()
    };
    crate::report::render_bundle(&evidence, &p.report.formats, &ropts, &out_dir)?;
    if let (Some((ref_dir, _)), Some(cmp)) = (&reference, &evidence.comparison) {
        write_comparison_files(&out_dir, ref_dir, cmp, &set, p)?;
    }
    ledger::commit(&ledger_path, &ledger_entry)?;
    let files = trace::bundle::write_sha256sums(&out_dir)?;
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
