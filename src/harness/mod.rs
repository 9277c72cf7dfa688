//! The harness: runs a model backend over every case of the golden set, journaling each
//! answer as it arrives so that a crash loses nothing.
//!
//! # Streaming
//!
//! The backend delivers each case's result as soon as it is known
//! ([`crate::model::Backend::predict_stream`]; the `openai` backend answers case by case from
//! one queue shared by all its servers, batched backends chunk by chunk). The harness, on its
//! own thread, writes each result to the journal the moment it arrives, reports it to the
//! event sinks ([`events`]: progress bar, `--events FILE`, run summary) and syncs the journal
//! in groups ([`GROUP_COMMIT_CASES`] entries or [`GROUP_COMMIT_WINDOW`], whichever first).
//! Latency is measured per case, from hand-off to result.
//!
//! # Journal
//!
//! `journal.jsonl` in the output directory is append-only JSON Lines. The first line is a
//! header naming the journal format and the run key (model weights hash, prompt/task hash,
//! effective-settings hash). Every later line is one [`JournalEntry`]. Each entry is written
//! with a single `write` of a complete line, so a killed process leaves at most a torn last
//! line, which is detected and dropped on resume.
//!
//! Cases are keyed by (model weights hash, task hash, image hash, settings hash), never by a
//! model *name* (a cache keyed on names returns stale answers after a weights change). A
//! journal whose header key differs from the current run is refused, not mixed.
//!
//! On resume, cases already evaluated are never inferred again; cases that were not
//! evaluated (infrastructure failures) are retried, since they carry no result.

pub mod events;
pub mod journal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Answer, Backend, CaseInput, Delivery, Prediction};
use crate::world::World;

pub use events::{EventSink, HarnessEvent, JsonLinesSink, ProgressSink, SummarySink};
pub use journal::{Journal, JournalEntry, JournalHeader};

/// The status name of an outcome, as written in the journal and `cases.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// A positive or negative answer with a score.
    Evaluated,
    /// An answer that could not be parsed (kept verbatim, analysed both ways).
    Equivocal,
    /// The model could not be run on the case; carries the reason.
    NotEvaluated,
}

impl CaseStatus {
    /// Every status, in order.
    pub const ALL: [CaseStatus; 3] = [
        CaseStatus::Evaluated,
        CaseStatus::Equivocal,
        CaseStatus::NotEvaluated,
    ];

    /// The name written in the journal and `cases.parquet`.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Evaluated => "evaluated",
            CaseStatus::Equivocal => "equivocal",
            CaseStatus::NotEvaluated => "not_evaluated",
        }
    }

    /// Parses [`CaseStatus::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What happened to one case. Only legal combinations can be built: an evaluated case
/// always has its prediction (and so its score), a case not evaluated always has a reason
/// and never a prediction.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseOutcome {
    /// A positive or negative answer with a score.
    Evaluated(Prediction),
    /// An answer that could not be parsed: the prediction keeps the raw answer verbatim
    /// (and whatever score the backend derived, which the primary analysis does not use).
    Equivocal(Prediction),
    /// The model could not be run on the case, after the backend's retries.
    NotEvaluated {
        /// Why, e.g. `HTTP 503 after 4 attempts`.
        reason: String,
    },
}

impl CaseOutcome {
    /// Classifies a backend's result.
    pub fn from_backend(outcome: std::result::Result<Prediction, crate::model::CaseError>) -> Self {
        match outcome {
            Ok(p) if p.answer == Answer::Equivocal => CaseOutcome::Equivocal(p),
            Ok(p) => CaseOutcome::Evaluated(p),
            Err(e) => CaseOutcome::NotEvaluated { reason: e.reason },
        }
    }

    /// The status name.
    pub fn status(&self) -> CaseStatus {
        match self {
            CaseOutcome::Evaluated(_) => CaseStatus::Evaluated,
            CaseOutcome::Equivocal(_) => CaseStatus::Equivocal,
            CaseOutcome::NotEvaluated { .. } => CaseStatus::NotEvaluated,
        }
    }

    /// The prediction, when the model answered.
    pub fn prediction(&self) -> Option<&Prediction> {
        match self {
            CaseOutcome::Evaluated(p) | CaseOutcome::Equivocal(p) => Some(p),
            CaseOutcome::NotEvaluated { .. } => None,
        }
    }

    /// Why the case was not evaluated.
    pub fn error(&self) -> Option<&str> {
        match self {
            CaseOutcome::NotEvaluated { reason } => Some(reason),
            _ => None,
        }
    }
}

/// One case's record, as journaled and as written to `cases.parquet`.
///
/// On the wire (journal lines) it keeps the flat shape `case_id, image_sha256, status,
/// prediction, error, latency_ms` of earlier medgate versions, so old journals resume; a
/// line whose fields contradict each other (evaluated without a prediction) is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "CaseRecord", try_from = "CaseRecord")]
pub struct CaseResult {
    /// Case ID.
    pub case_id: String,
    /// SHA-256 of the image.
    pub image_sha256: String,
    /// Outcome.
    pub outcome: CaseOutcome,
    /// Wall-clock time from handing this case to the backend to its result, milliseconds.
    pub latency_ms: f64,
}

/// The flat serialised form of [`CaseResult`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CaseRecord {
    case_id: String,
    image_sha256: String,
    status: CaseStatus,
    prediction: Option<Prediction>,
    error: Option<String>,
    latency_ms: f64,
}

impl From<CaseResult> for CaseRecord {
    fn from(r: CaseResult) -> Self {
        let status = r.outcome.status();
        let (prediction, error) = match r.outcome {
            CaseOutcome::Evaluated(p) | CaseOutcome::Equivocal(p) => (Some(p), None),
            CaseOutcome::NotEvaluated { reason } => (None, Some(reason)),
        };
        CaseRecord {
            case_id: r.case_id,
            image_sha256: r.image_sha256,
            status,
            prediction,
            error,
            latency_ms: r.latency_ms,
        }
    }
}

impl TryFrom<CaseRecord> for CaseResult {
    type Error = String;
    fn try_from(r: CaseRecord) -> std::result::Result<Self, String> {
        let outcome = match (r.status, r.prediction) {
            (CaseStatus::Evaluated, Some(p)) => CaseOutcome::Evaluated(p),
            (CaseStatus::Equivocal, Some(p)) => CaseOutcome::Equivocal(p),
            (CaseStatus::NotEvaluated, None) => CaseOutcome::NotEvaluated {
                reason: r.error.unwrap_or_else(|| "unknown".into()),
            },
            (s @ (CaseStatus::Evaluated | CaseStatus::Equivocal), None) => {
                return Err(format!(
                    "case `{}` is `{}` but has no prediction",
                    r.case_id,
                    s.as_str()
                ));
            }
            (CaseStatus::NotEvaluated, Some(_)) => {
                return Err(format!(
                    "case `{}` is `not_evaluated` but has a prediction",
                    r.case_id
                ));
            }
        };
        Ok(CaseResult {
            case_id: r.case_id,
            image_sha256: r.image_sha256,
            outcome,
            latency_ms: r.latency_ms,
        })
    }
}

impl CaseResult {
    /// A result for `case`.
    pub fn new(case: &CaseInput, outcome: CaseOutcome, latency_ms: f64) -> Self {
        CaseResult {
            case_id: case.case_id.clone(),
            image_sha256: case.image_sha256.clone(),
            outcome,
            latency_ms,
        }
    }

    /// The status name.
    pub fn status(&self) -> CaseStatus {
        self.outcome.status()
    }

    /// The prediction, when the model answered.
    pub fn prediction(&self) -> Option<&Prediction> {
        self.outcome.prediction()
    }

    /// Why the case was not evaluated.
    pub fn error(&self) -> Option<&str> {
        self.outcome.error()
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
    /// Counts and per-case latencies of this invocation (the run summary's sink).
    pub summary: SummarySink,
}

/// Options for [`run_cases`].
#[derive(Debug, Clone, Default)]
pub struct HarnessOptions {
    /// Show a progress bar on stderr (only drawn on a terminal).
    pub progress: bool,
    /// Stop after this many newly inferred cases (for tests of interruption); `None` = all.
    pub limit: Option<usize>,
    /// Write every harness event to this file as JSON lines (see [`events`]).
    pub events: Option<PathBuf>,
}

/// Group commit: the journal is synced to disk when this many answered cases are unsynced
/// since the last sync...
pub const GROUP_COMMIT_CASES: usize = 64;
/// ...or when the oldest unsynced entry is this old, whichever comes first, and at the end.
/// Every entry is *written* (one `write` of one complete line) the moment its result
/// arrives, so killing the process loses only the cases in flight; the window bounds what
/// a power loss can lose.
pub const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(100);

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

/// The journal header of a run of protocol `p` with a backend that reported `info`: the
/// run key is (model hash, canonical task hash, canonical effective-settings hash).
pub fn journal_header(
    p: &crate::protocol::Protocol,
    info: &crate::model::BackendInfo,
) -> Result<JournalHeader> {
    Ok(JournalHeader {
        medgate_journal: journal::JOURNAL_FORMAT,
        protocol: p.protocol.clone(),
        model_sha256: info
            .model_sha256
            .clone()
            .unwrap_or_else(|| UNPINNED_MODEL.into()),
        task_sha256: crate::hash::canonical_sha256(&p.task)?,
        settings_sha256: crate::hash::canonical_sha256(&crate::hash::canonicalize(&info.settings))?,
    })
}

/// The model hash recorded (journal, ledger) for a backend that reports none.
pub const UNPINNED_MODEL: &str = "unpinned";

/// The backend's view of a verified golden set's cases, in manifest order.
pub fn case_inputs(set: &crate::golden::GoldenSet) -> Vec<CaseInput> {
    set.cases
        .iter()
        .map(|c| CaseInput {
            case_id: c.case_id.clone(),
            image_path: set.dir.join(&c.image),
            image_sha256: c.image_sha256.clone(),
        })
        .collect()
}

/// `--resume` means "continue": refuses when `out_dir` holds no journal to continue.
pub fn check_resumable(out_dir: &Path) -> Result<()> {
    if out_dir.join(journal::JOURNAL_FILE).is_file() {
        return Ok(());
    }
    Err(crate::Error::input_hint(
        format!(
            "nothing to resume: {} holds no {}",
            out_dir.display(),
            journal::JOURNAL_FILE
        ),
        "drop --resume to start a new run, or point --out at the interrupted run's directory",
    ))
}

/// The harness's own sinks plus the bookkeeping of event times.
struct Sinks {
    t0: f64,
    list: Vec<Box<dyn EventSink>>,
    summary: SummarySink,
}

impl Sinks {
    fn emit(&mut self, world: &dyn World, e: HarnessEvent) -> Result<()> {
        let t = world.monotonic_s() - self.t0;
        self.summary.event(t, &e)?;
        for s in &mut self.list {
            s.event(t, &e)?;
        }
        Ok(())
    }
}

/// Runs `backend` over `cases`, journaling into `out_dir/journal.jsonl` and resuming from it.
///
/// The backend delivers results as they complete ([`Backend::predict_stream`]); each one is
/// journaled at once (see [`GROUP_COMMIT_WINDOW`]) and reported to the event sinks.
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
        if e.result.status() != CaseStatus::NotEvaluated {
            done.insert(e.key.clone(), e.result.clone());
        }
    }
    let keys: Vec<String> = cases
        .iter()
        .map(|c| case_key(header, &c.image_sha256))
        .collect();
    // One inference per distinct key (two cases with the same image share an answer).
    let mut seen = std::collections::BTreeSet::new();
    let todo: Vec<usize> = (0..cases.len())
        .filter(|&i| !done.contains_key(&keys[i]) && seen.insert(keys[i].clone()))
        .collect();
    let todo: Vec<usize> = match opts.limit {
        Some(l) => todo.into_iter().take(l).collect(),
        None => todo,
    };
    // Cases answered from the journal (not those left out by `limit`).
    let resumed = keys.iter().filter(|k| done.contains_key(*k)).count();

    let mut sinks = Sinks {
        t0: world.monotonic_s(),
        list: Vec::new(),
        summary: SummarySink::default(),
    };
    if opts.progress {
        sinks.list.push(Box::new(ProgressSink::stderr()));
    }
    if let Some(path) = &opts.events {
        sinks.list.push(Box::new(JsonLinesSink::create(path)?));
    }
    sinks.emit(
        world,
        HarnessEvent::StageStarted {
            stage: "inference".into(),
            cases: todo.len(),
            resumed,
        },
    )?;

    let inputs: Vec<CaseInput> = todo.iter().map(|&i| cases[i].clone()).collect();
    let mut fresh: BTreeMap<String, CaseResult> = BTreeMap::new();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Delivery>();
    let mut failure: Option<crate::Error> = None;
    let backend_result = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let deliver = |d: Delivery| tx.send(d).is_ok() && !stop.load(Ordering::SeqCst);
            let clock = || world.monotonic_s();
            let r = backend.predict_stream(&inputs, &clock, &deliver);
            drop(tx);
            r
        });
        let mut unsynced = 0usize;
        let mut oldest_unsynced = 0.0f64;
        let window = GROUP_COMMIT_WINDOW.as_secs_f64();
        loop {
            // Wake up at the end of the group-commit window even when no result arrives.
            let wait = if unsynced > 0 {
                (oldest_unsynced + window - world.monotonic_s()).max(0.0)
            } else {
                3600.0
            };
            let d = match rx.recv_timeout(Duration::from_secs_f64(wait)) {
                Ok(d) => Some(d),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // After a failure, results still arriving are drained and dropped.
            if let Some(d) = d.filter(|_| failure.is_none()) {
                let r = record(
                    &mut journal,
                    &mut sinks,
                    world,
                    &keys,
                    &todo,
                    &inputs,
                    d,
                    &mut fresh,
                );
                match r {
                    Ok(()) => {
                        if unsynced == 0 {
                            oldest_unsynced = world.monotonic_s();
                        }
                        unsynced += 1;
                    }
                    Err(e) => {
                        failure = Some(e);
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            let due = unsynced >= GROUP_COMMIT_CASES
                || (unsynced > 0 && world.monotonic_s() - oldest_unsynced >= window);
            if due && failure.is_none() {
                if let Err(e) = journal.sync() {
                    failure = Some(e);
                    stop.store(true, Ordering::SeqCst);
                }
                unsynced = 0;
            }
        }
        worker
            .join()
            .unwrap_or_else(|_| Err(crate::Error::Internal("the backend panicked".into())))
    });
    if let Some(e) = failure {
        return Err(e);
    }
    journal.sync()?;
    backend_result?;
    sinks.emit(
        world,
        HarnessEvent::StageFinished {
            stage: "inference".into(),
            inferred: fresh.len(),
            not_evaluated: sinks.summary.not_evaluated,
            elapsed_s: world.monotonic_s() - sinks.t0,
        },
    )?;

    let mut results = Vec::with_capacity(cases.len());
    for (i, c) in cases.iter().enumerate() {
        let r = fresh
            .get(&keys[i])
            .or_else(|| done.get(&keys[i]))
            .cloned()
            .unwrap_or_else(|| CaseResult {
                case_id: c.case_id.clone(),
                image_sha256: c.image_sha256.clone(),
                outcome: CaseOutcome::NotEvaluated {
                    reason: "not run (interrupted before this case)".into(),
                },
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
        summary: sinks.summary,
    })
}

/// Journals one delivered result (written at once, synced by the caller's group commit)
/// and reports it to the sinks.
#[allow(clippy::too_many_arguments)]
fn record(
    journal: &mut Journal,
    sinks: &mut Sinks,
    world: &dyn World,
    keys: &[String],
    todo: &[usize],
    inputs: &[CaseInput],
    d: Delivery,
    fresh: &mut BTreeMap<String, CaseResult>,
) -> Result<()> {
    let Some(input) = inputs.get(d.index) else {
        return Err(crate::Error::Internal(format!(
            "backend delivered case #{} of {}",
            d.index,
            inputs.len()
        )));
    };
    let key = &keys[todo[d.index]];
    if fresh.contains_key(key) {
        return Err(crate::Error::Internal(format!(
            "backend delivered case `{}` twice",
            input.case_id
        )));
    }
    let attempts = match &d.result {
        Ok(p) => p.attempts,
        Err(e) => e.attempts,
    };
    let r = CaseResult::new(input, CaseOutcome::from_backend(d.result), d.latency_ms);
    journal.write_entry(&JournalEntry {
        key: key.clone(),
        result: r.clone(),
    })?;
    if attempts > 1 {
        sinks.emit(
            world,
            HarnessEvent::CaseRetried {
                case_id: input.case_id.clone(),
                attempts,
            },
        )?;
    }
    let event = match &r.outcome {
        CaseOutcome::Evaluated(p) | CaseOutcome::Equivocal(p) => HarnessEvent::CaseDone {
            case_id: input.case_id.clone(),
            status: r.status(),
            score: p.score,
            attempts,
            latency_ms: d.latency_ms,
        },
        CaseOutcome::NotEvaluated { reason } => HarnessEvent::NotEvaluated {
            case_id: input.case_id.clone(),
            reason: reason.clone(),
            attempts,
            latency_ms: d.latency_ms,
        },
    };
    sinks.emit(world, event)?;
    fresh.insert(key.clone(), r);
    Ok(())
}
