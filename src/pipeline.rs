//! Composition of the stages for the commands that span several of them (`check`, `run`).
//!
//! Stages never call each other sideways; this module is the one place that wires them.
//! [`run`] is the pipeline table of the crate docs, one stage entry per step; what a step
//! does lives in its stage. Each input file is read once: [`check_protocol`] reads the
//! protocol, the manifest (kept as bytes for [`crate::golden::GoldenSet::open_read`], which
//! hashes and parses exactly those), the requirements and the risks; the golden set reads its
//! LOCK once; the ledger is read once for the run's entry (and checked again, on purpose,
//! just before the entry is appended, so that a concurrent append is refused).

use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::error::Error;
use crate::protocol::{self, ExternalFacts, LoadedProtocol};
use crate::trace::inputs::{self, TraceInputs};

/// The result of checking one protocol file.
#[derive(Debug)]
pub struct CheckReport {
    /// The parsed protocol, when it parsed.
    pub protocol: Option<LoadedProtocol>,
    /// Every problem found (errors and warnings).
    pub diagnostics: Vec<Diagnostic>,
    /// The requirements and risks files, read and parsed once.
    pub trace: TraceInputs,
    /// The golden-set manifest as read for its columns (path, bytes), so that `run` hashes
    /// against the LOCK and parses exactly these bytes instead of reading the file again.
    pub manifest: Option<(PathBuf, Vec<u8>)>,
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
                manifest: None,
            };
        }
    };
    let mut diagnostics = Vec::new();
    let mut facts = ExternalFacts::default();
    let mut trace = TraceInputs::default();
    let g = &lp.protocol.golden_set;
    let manifest = lp.resolve(&g.path).join(&g.manifest);
    let mut manifest_bytes = None;
    if manifest.is_file() {
        let parsed = std::fs::read(&manifest)
            .map_err(|e| Error::io(&manifest, e))
            .and_then(|b| Ok((crate::table::parse_table_as_strings(&manifest, &b)?, b)));
        match parsed {
            Ok((df, bytes)) => {
                facts.manifest_columns = Some(crate::table::column_names(&df));
                manifest_bytes = Some((manifest.clone(), bytes));
            }
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
            match inputs::read_file(&req, inputs::parse_requirements) {
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
                match inputs::read_file(&rp, inputs::parse_risks) {
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
        manifest: manifest_bytes,
    }
}

// ---------------------------------------------------------------------------------------
// `medgate run`
// ---------------------------------------------------------------------------------------

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
    // protocol: load and check (the protocol, manifest, requirements and risks read once).
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
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&p.protocol));
    // golden: every byte verified against the LOCK (the manifest bytes the check read).
    let set = GoldenSet::open_read(
        &p.golden_set,
        &lp.dir,
        &p.subgroups.attributes,
        check.manifest,
    )?;
    // verify: a release comparison's reference bundle, verified and matched before anything
    // is written (an in-run reference model is run below, after the model under test).
    let reference = match &p.comparison {
        Some(spec) if spec.reference.is_some() => Some(crate::verify::reference::load_verified(
            &lp, spec, &set, &out_dir, world,
        )?),
        _ => None,
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
    // model: an in-run reference model (`comparison.reference_model`), built now so that a
    // weights hash that differs from its pin refuses the run before anything is written.
    let reference_model = match p.reference_protocol() {
        Some(rp) => {
            if opts.release && rp.model.pinned_sha256().is_none() {
                return Err(Error::input_hint(
                    "release run refused: the protocol does not pin the reference model's sha256",
                    "add `sha256:` under `comparison.reference_model.model`",
                ));
            }
            let b = crate::model::build_backend(&rp, &lp.dir, &ids, world)?;
            Some((rp, b))
        }
        None => None,
    };
    // harness: every case, journaled as it completes, into a bundle of this protocol only.
    if opts.resume {
        harness::check_resumable(&out_dir)?;
    }
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
    // harness: the in-run reference model on the same cases, journaled into reference/.
    let in_run = match &reference_model {
        Some((rp, rb)) => {
            let rinfo = rb.info();
            let rheader = harness::journal_header(rp, &rinfo)?;
            let rdir =
                crate::fsx::create_dir_inside(&out_dir, Path::new(comparison::REFERENCE_DIR))?;
            let ropts = HarnessOptions {
                progress: opts.progress,
                limit: opts.limit,
                events: None,
            };
            let rout = harness::run_cases(rb.as_ref(), &inputs, &rheader, &rdir, world, &ropts)?;
            let identity = comparison::ReferenceIdentity::in_run(
                p,
                rinfo.model_name.clone(),
                rinfo.model_sha256.clone(),
                set.lock.root_hash.clone(),
                env!("CARGO_PKG_VERSION").into(),
            )
            .ok_or_else(|| Error::Internal("reference model without a comparison".into()))?;
            Some(comparison::in_run_reference(identity, &set, &rout.results))
        }
        None => None,
    };
    // stats and trace: analysis, criteria, traceability, warnings, evidence.
    let rows = analysis::case_rows(&set, &out.results);
    let reference_cases = reference.as_ref().map(|r| &r.1).or(in_run.as_ref());
    let a = analysis::analyze_against(p, &rows, &set, reference_cases)?;
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
    // trace: the ledger entry, built now and recorded in the evidence (its anchor), appended
    // once the bundle is written.
    let ledger_entry = ledger::prepare(
        &ledger_path,
        &prior,
        ledger::NewEntry::of_run(p, &header.model_sha256, &set, &a, started, finished, world),
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
    let ropts = crate::report::RenderOptions::for_run(&lp, &set, opts.typst_bin.clone());
    crate::report::render_bundle(&evidence, &p.report.formats, &ropts, &out_dir)?;
    match (&reference, &evidence.comparison) {
        (Some((ref_dir, _)), Some(cmp)) => {
            comparison::write_bundle_files(&out_dir, ref_dir, cmp, &set, p)?
        }
        (None, Some(cmp)) => comparison::write_flips_file(&out_dir, cmp, &set, p)?,
        _ => {}
    }
    ledger::commit(&ledger_path, &ledger_entry)?;
    let files = trace::bundle::write_sha256sums(&out_dir)?;
    Ok(RunSummary {
        outcome: Outcome::of_run(
            a.infrastructure_failure.is_some(),
            evidence.verdict == trace::Verdict::Pass,
        ),
        evidence,
        out_dir,
        files,
        inferred: out.inferred,
        resumed: out.resumed,
        infrastructure_failure: a.infrastructure_failure,
    })
}
