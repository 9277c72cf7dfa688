//! The monitoring state file: what a later run needs to continue where this one stopped.
//!
//! JSON, written atomically (temporary file, then rename). It holds the baseline run ID and
//! the plan hash it belongs to (a state of another release or plan is refused), the closed
//! windows with their statistics, every chart observation (so CUSUM and EWMA carry over), the
//! rows of the window still open, the SHA-256 of every log file read, and the watermark
//! `(timestamp, case ID)` of the last row accepted.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::InputSummary;
use super::engine::{ChartObs, WindowResult};
use super::log::StoredRow;
use crate::error::{Error, Result};

/// State format version.
pub const STATE_FORMAT: u32 = 1;

/// A log file already read (the same record the monitoring ledger lists).
pub use crate::trace::ledger::FileRecord;

/// The state between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorState {
    /// Format version.
    pub medgate_monitor_state: u32,
    /// Baseline run ID.
    pub baseline_run_id: String,
    /// SHA-256 of the plan's canonical JSON.
    pub plan_sha256: String,
    /// Input accounting so far.
    pub input: InputSummary,
    /// Last accepted `(epoch ms, case ID)`.
    pub watermark: Option<(i64, String)>,
    /// Rows in closed windows.
    pub rows_windowed: u64,
    /// Rows of the open window.
    pub pending: Vec<StoredRow>,
    /// Closed windows.
    pub windows: Vec<WindowResult>,
    /// Chart observations by chart key.
    pub chart_obs: BTreeMap<String, Vec<ChartObs>>,
}

impl MonitorState {
    /// A fresh state.
    pub fn new(baseline_run_id: &str, plan_sha256: &str) -> Self {
        MonitorState {
            medgate_monitor_state: STATE_FORMAT,
            baseline_run_id: baseline_run_id.to_string(),
            plan_sha256: plan_sha256.to_string(),
            input: InputSummary::default(),
            watermark: None,
            rows_windowed: 0,
            pending: Vec::new(),
            windows: Vec::new(),
            chart_obs: BTreeMap::new(),
        }
    }
}

/// Reads a state file.
pub fn load(path: &Path) -> Result<MonitorState> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let s: MonitorState = serde_json::from_str(&text).map_err(|e| {
        Error::input_hint(
            format!(
                "{}:{}:{}: not a monitoring state file: {e}",
                path.display(),
                e.line(),
                e.column()
            ),
            "restore it from backup, or start afresh with a new --state file",
        )
    })?;
    if s.medgate_monitor_state != STATE_FORMAT {
        return Err(Error::input(format!(
            "{}: state format {} (this medgate reads {STATE_FORMAT})",
            path.display(),
            s.medgate_monitor_state
        )));
    }
    Ok(s)
}

/// Writes a state file atomically.
pub fn save(path: &Path, s: &MonitorState) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let text = serde_json::to_string(s).map_err(|e| Error::Internal(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
