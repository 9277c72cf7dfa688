//! The harness: runs a model backend over every case of the golden set, journaling each
//! answer as it arrives so that a crash loses nothing.
//!
//! # Journal
//!
//! `journal.jsonl` in the output directory is append-only JSON Lines. The first line is a
//! header naming the journal format and the run key (model weights hash, prompt/task hash,
//! effective-settings hash). Every later line is one [`JournalEntry`]. Each entry is written
//! with a single `write` of a complete line and the file is synced after every batch, so a
//! killed process leaves at most a torn last line, which is detected and dropped on resume.
//!
//! Cases are keyed by (model weights hash, task hash, image hash, settings hash), never by a
//! model *name* (a cache keyed on names returns stale answers after a weights change). A
//! journal whose header key differs from the current run is refused, not mixed.
//!
//! On resume, cases already evaluated are never inferred again; cases that were not
//! evaluated (infrastructure failures) are retried, since they carry no result.

pub mod journal;

use std::collections::BTreeMap;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Answer, Backend, CaseInput, Prediction};
use crate::world::World;

pub use journal::{Journal, JournalEntry, JournalHeader};

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// A positive or negative answer with a score.
    Evaluated,
    /// An answer that could not be parsed (kept verbatim, analysed both ways).
    Equivocal,
    /// The model could not be run on the case; carries the reason.
    NotEvaluated,
}

/// One case's record, as journaled and as written to `cases.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Case ID.
    pub case_id: String,
    /// SHA-256 of the image.
    pub image_sha256: String,
    /// Outcome.
    pub status: CaseStatus,
    /// The prediction, when the model answered.
    pub prediction: Option<Prediction>,
    /// Why not evaluated.
    pub error: Option<String>,
    /// Wall-clock latency of the batch share for this case, milliseconds.
    pub latency_ms: f64,
}

impl CaseResult {
    fn from_outcome(
        case: &CaseInput,
        outcome: std::result::Result<Prediction, crate::model::CaseError>,
        latency_ms: f64,
    ) -> Self {
        match outcome {
            Ok(p) => CaseResult {
                case_id: case.case_id.clone(),
                image_sha256: case.image_sha256.clone(),
                status: if p.answer == Answer::Equivocal {
                    CaseStatus::Equivocal
                } else {
                    CaseStatus::Evaluated
                },
                prediction: Some(p),
                error: None,
                latency_ms,
            },
            Err(e) => CaseResult {
                case_id: case.case_id.clone(),
                image_sha256: case.image_sha256.clone(),
                status: CaseStatus::NotEvaluated,
                prediction: None,
                error: Some(e.reason),
                latency_ms,
            },
        }
    }
}

/// What a harness run did.
#[derive(Debug, Clone)]
pub struct HarnessOutput {
    /// One result per input case, in input order.
    pub results: Vec<CaseResult>,
    /// Cases inferred in this invocation (the rest came from the journal).
    pub inferred: usize,
    /// Cases taken from the journal.
    pub resumed: usize,
}

/// Options for [`run_cases`].
#[derive(Debug, Clone, Default)]
pub struct HarnessOptions {
    /// Show a progress bar on stderr (only drawn on a terminal).
    pub progress: bool,
    /// Stop after this many newly inferred cases (for tests of interruption); `None` = all.
    pub limit: Option<usize>,
}

/// The journal key of one case: (model hash, task hash, image hash, settings hash).
pub fn case_key(header: &JournalHeader, image_sha256: &str) -> String {
    crate::hash::sha256_hex(
        format!(
            "{}\n{}\n{}\n{}",
            header.model_sha256, header.task_sha256, image_sha256, header.settings_sha256
        )
        .as_bytes(),
    )
}

/// Runs `backend` over `cases`, journaling into `out_dir/journal.jsonl` and resuming from it.
pub fn run_cases(
    backend: &dyn Backend,
    cases: &[CaseInput],
    header: &JournalHeader,
    out_dir: &Path,
    world: &dyn World,
    opts: &HarnessOptions,
) -> Result<HarnessOutput> {
    let mut journal = Journal::open(&out_dir.join(journal::JOURNAL_FILE), header)?;
    let mut done: BTreeMap<String, CaseResult> = BTreeMap::new();
    for e in journal.entries() {
        if e.result.status != CaseStatus::NotEvaluated {
            done.insert(e.key.clone(), e.result.clone());
        }
    }
    let keys: Vec<String> = cases
        .iter()
        .map(|c| case_key(header, &c.image_sha256))
        .collect();
    let todo: Vec<usize> = (0..cases.len())
        .filter(|&i| !done.contains_key(&keys[i]))
        .collect();
    let todo: Vec<usize> = match opts.limit {
        Some(l) => todo.into_iter().take(l).collect(),
        None => todo,
    };
    let resumed = cases.len() - todo.len();

    let pb = if opts.progress {
        ProgressBar::with_draw_target(Some(todo.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cases  {per_sec}  ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut failures = 0usize;
    let mut fresh: BTreeMap<String, CaseResult> = BTreeMap::new();
    let batch = backend.batch_size().max(1);
    for chunk in todo.chunks(batch) {
        let inputs: Vec<CaseInput> = chunk.iter().map(|&i| cases[i].clone()).collect();
        let t0 = world.monotonic_s();
        let outcomes = backend.predict_batch(&inputs);
        let per_case_ms = (world.monotonic_s() - t0) * 1000.0 / inputs.len() as f64;
        if outcomes.len() != inputs.len() {
            return Err(crate::Error::Internal(format!(
                "backend returned {} results for {} cases",
                outcomes.len(),
                inputs.len()
            )));
        }
        let mut entries = Vec::with_capacity(inputs.len());
        for ((&i, input), outcome) in chunk.iter().zip(&inputs).zip(outcomes) {
            let r = CaseResult::from_outcome(input, outcome, per_case_ms);
            if r.status == CaseStatus::NotEvaluated {
                failures += 1;
            }
            entries.push(JournalEntry {
                key: keys[i].clone(),
                result: r.clone(),
            });
            fresh.insert(keys[i].clone(), r);
        }
        journal.append(&entries)?;
        pb.inc(inputs.len() as u64);
        if failures > 0 {
            pb.set_message(format!("{failures} not evaluated"));
        }
    }
    pb.finish_and_clear();

    let mut results = Vec::with_capacity(cases.len());
    for (i, c) in cases.iter().enumerate() {
        let r = fresh
            .get(&keys[i])
            .or_else(|| done.get(&keys[i]))
            .cloned()
            .unwrap_or_else(|| CaseResult {
                case_id: c.case_id.clone(),
                image_sha256: c.image_sha256.clone(),
                status: CaseStatus::NotEvaluated,
                prediction: None,
                error: Some("not run (interrupted before this case)".into()),
                latency_ms: 0.0,
            });
        // The journal is keyed by image content; the case ID comes from the manifest.
        results.push(CaseResult {
            case_id: c.case_id.clone(),
            ..r
        });
    }
    Ok(HarnessOutput {
        results,
        inferred: fresh.len(),
        resumed,
    })
}
