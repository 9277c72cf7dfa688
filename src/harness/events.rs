//! Typed harness events and the sinks that consume them.
//!
//! The harness reports what it does as [`HarnessEvent`]s, in the order they happen, to every
//! [`EventSink`] it was given. Three sinks ship: [`ProgressSink`] (the progress bar, drawn
//! only on a terminal), [`JsonLinesSink`] (`medgate run --events FILE`) and [`SummarySink`]
//! (the counts the run summary prints). Events are observations, never evidence: they carry
//! wall-clock timings and are not hashed.
//!
//! # `--events FILE` format (JSON Lines, one object per line, flushed per line)
//!
//! Every line has `"event"` (the kind below) and `"t_s"` (seconds since the harness started,
//! monotonic). Kinds and their other fields:
//!
//! | `event` | fields |
//! |---|---|
//! | `stage_started` | `stage` (`inference`), `cases` (to infer now), `resumed` (taken from the journal) |
//! | `case_done` | `case_id`, `status` (`evaluated` / `equivocal`), `score`, `attempts`, `latency_ms` |
//! | `case_retried` | `case_id`, `attempts` (the case needed more than one attempt; sent before its `case_done` / `not_evaluated`) |
//! | `not_evaluated` | `case_id`, `reason`, `attempts`, `latency_ms` |
//! | `stage_finished` | `stage`, `inferred`, `not_evaluated`, `elapsed_s` |
//!
//! Fields may be added in later versions; none will be renamed.

use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::CaseStatus;
use crate::error::{Error, Result};

/// Something the harness did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HarnessEvent {
    /// A stage began.
    StageStarted {
        /// The stage (`inference`).
        stage: String,
        /// Cases to infer in this invocation.
        cases: usize,
        /// Cases taken from the journal.
        resumed: usize,
    },
    /// A case was answered (evaluated or equivocal) and journaled.
    CaseDone {
        /// Case ID.
        case_id: String,
        /// `evaluated` or `equivocal`.
        status: CaseStatus,
        /// The score.
        score: f64,
        /// Attempts made.
        attempts: u32,
        /// Milliseconds from hand-off to result.
        latency_ms: f64,
    },
    /// A case needed more than one attempt.
    CaseRetried {
        /// Case ID.
        case_id: String,
        /// Attempts made in all.
        attempts: u32,
    },
    /// A case could not be evaluated (journaled; retried on the next resume).
    NotEvaluated {
        /// Case ID.
        case_id: String,
        /// Why.
        reason: String,
        /// Attempts made.
        attempts: u32,
        /// Milliseconds from hand-off to giving up.
        latency_ms: f64,
    },
    /// A stage ended.
    StageFinished {
        /// The stage (`inference`).
        stage: String,
        /// Cases inferred in this invocation.
        inferred: usize,
        /// Of those, cases not evaluated.
        not_evaluated: usize,
        /// Seconds the stage took.
        elapsed_s: f64,
    },
}

/// A consumer of harness events.
pub trait EventSink {
    /// Receives one event; `t_s` is seconds since the harness started. A sink that fails
    /// (a full disk under `--events`) returns the error, which ends the run.
    fn event(&mut self, t_s: f64, e: &HarnessEvent) -> Result<()>;
}

/// The progress bar on stderr, drawn only when stderr is a terminal.
#[derive(Debug)]
pub struct ProgressSink {
    bar: ProgressBar,
    failures: usize,
}

impl ProgressSink {
    /// A progress bar on stderr (hidden unless stderr is a terminal).
    pub fn stderr() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cases  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        ProgressSink { bar, failures: 0 }
    }
}

impl EventSink for ProgressSink {
    fn event(&mut self, _t_s: f64, e: &HarnessEvent) -> Result<()> {
        match e {
            HarnessEvent::StageStarted { cases, .. } => self.bar.set_length(*cases as u64),
            HarnessEvent::CaseDone { .. } => self.bar.inc(1),
            HarnessEvent::NotEvaluated { .. } => {
                self.failures += 1;
                self.bar.inc(1);
                self.bar
                    .set_message(format!("{} not evaluated", self.failures));
            }
            HarnessEvent::CaseRetried { .. } => {}
            HarnessEvent::StageFinished { .. } => self.bar.finish_and_clear(),
        }
        Ok(())
    }
}

/// `--events FILE`: every event as one JSON line (format in the module docs), written and
/// flushed as it happens.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonLinesSink {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(JsonLinesSink {
            path: path.to_path_buf(),
            file,
        })
    }
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    event: &'a HarnessEvent,
    t_s: f64,
}

impl EventSink for JsonLinesSink {
    fn event(&mut self, t_s: f64, e: &HarnessEvent) -> Result<()> {
        let mut line = serde_json::to_string(&Line { event: e, t_s })
            .map_err(|e| Error::Internal(format!("serialise event: {e}")))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Counts for the run summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummarySink {
    /// Cases answered (evaluated or equivocal) in this invocation.
    pub done: usize,
    /// Cases not evaluated in this invocation.
    pub not_evaluated: usize,
    /// Cases that needed more than one attempt.
    pub retried: usize,
    /// Per-case latencies in milliseconds, in completion order.
    pub latencies_ms: Vec<f64>,
}

impl SummarySink {
    /// The `q`-quantile (0..=1) of the per-case latencies (nearest rank), if any.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    }
}

impl EventSink for SummarySink {
    fn event(&mut self, _t_s: f64, e: &HarnessEvent) -> Result<()> {
        match e {
            HarnessEvent::CaseDone { latency_ms, .. } => {
                self.done += 1;
                self.latencies_ms.push(*latency_ms);
            }
            HarnessEvent::NotEvaluated { latency_ms, .. } => {
                self.not_evaluated += 1;
                self.latencies_ms.push(*latency_ms);
            }
            HarnessEvent::CaseRetried { .. } => self.retried += 1,
            HarnessEvent::StageStarted { .. } | HarnessEvent::StageFinished { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_the_documented_shape() {
        let e = HarnessEvent::CaseDone {
            case_id: "c1".into(),
            status: CaseStatus::Evaluated,
            score: 0.25,
            attempts: 2,
            latency_ms: 12.5,
        };
        let v: serde_json::Value = serde_json::from_str(
            &serde_json::to_string(&Line {
                event: &e,
                t_s: 1.5,
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "case_done", "case_id": "c1", "status": "evaluated",
                "score": 0.25, "attempts": 2, "latency_ms": 12.5, "t_s": 1.5})
        );
    }

    #[test]
    fn latency_quantiles_use_nearest_rank() {
        let s = SummarySink {
            latencies_ms: vec![4.0, 1.0, 3.0, 2.0],
            ..Default::default()
        };
        // Nearest rank: ceil(0.5 * 4) = 2nd smallest; ceil(0.95 * 4) = 4th.
        assert_eq!(s.latency_quantile_ms(0.5), Some(2.0));
        assert_eq!(s.latency_quantile_ms(0.95), Some(4.0));
        assert_eq!(SummarySink::default().latency_quantile_ms(0.5), None);
    }
}
