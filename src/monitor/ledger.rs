//! The monitoring ledger: one append-only, hash-chained line per `medgate monitor` run, beside
//! the baseline bundle (21 CFR Part 11 style audit trail), so a reviewer sees every run.
//!
//! Each entry carries the SHA-256 of the previous entry and its own hash over its canonical
//! JSON without the `hash` field (as the golden-set ledger in [`crate::trace::ledger`]);
//! appending to a broken chain is refused.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::state::FileRecord;
use crate::error::{Error, Result};
use crate::trace::ledger::GENESIS;

/// What a run records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMonitorEntry {
    /// When (RFC 3339 UTC).
    pub time: String,
    /// Who.
    pub user: String,
    /// medgate version.
    pub medgate_version: String,
    /// Protocol ID and version.
    pub protocol: String,
    /// Baseline run ID.
    pub baseline_run_id: String,
    /// Log files read in this run.
    pub log_files: Vec<FileRecord>,
    /// Rows read in this run.
    pub rows_read: u64,
    /// Windows closed in this run.
    pub new_windows: u64,
    /// Windows so far.
    pub windows_total: u64,
    /// Alarms in the windows closed in this run.
    pub new_alarms: u64,
    /// Alarms so far.
    pub alarms_total: u64,
    /// `in_control` or `alarm`.
    pub status: String,
    /// `results_sha256` of the `monitor.json` written.
    pub results_sha256: String,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorLedgerEntry {
    /// 1-based position.
    pub seq: u64,
    /// The run.
    #[serde(flatten)]
    pub entry: NewMonitorEntry,
    /// Hash of the previous entry (zeros for the first).
    pub prev_hash: String,
    /// Hash of this entry without this field.
    pub hash: String,
}

fn entry_hash(e: &MonitorLedgerEntry) -> Result<String> {
    let mut v = serde_json::to_value(e).map_err(|er| Error::Internal(er.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("hash");
    }
    crate::hash::canonical_sha256(&v)
}

/// Reads a ledger (empty when the file does not exist).
pub fn read(path: &Path) -> Result<Vec<MonitorLedgerEntry>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::input(format!(
                    "{}:{}: not a monitoring ledger entry: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Every break in the chain, as `(line, problem)`.
pub fn verify(entries: &[MonitorLedgerEntry]) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    let mut prev = GENESIS.to_string();
    for (i, e) in entries.iter().enumerate() {
        if e.seq != i as u64 + 1 {
            out.push((
                i + 1,
                format!("sequence number {} where {} was expected", e.seq, i + 1),
            ));
        }
        if e.prev_hash != prev {
            out.push((i + 1, "previous-entry hash does not match".into()));
        }
        if entry_hash(e)? != e.hash {
            out.push((
                i + 1,
                "entry hash does not match its content (edited)".into(),
            ));
        }
        prev = e.hash.clone();
    }
    Ok(out)
}

/// Appends an entry; refuses a broken chain.
pub fn append(path: &Path, new: NewMonitorEntry) -> Result<MonitorLedgerEntry> {
    let entries = read(path)?;
    if let Some((line, problem)) = verify(&entries)?.first() {
        return Err(Error::input_hint(
            format!(
                "{}:{line}: monitoring ledger chain is broken: {problem}",
                path.display()
            ),
            "the audit trail has been altered; investigate before monitoring again",
        ));
    }
    let mut e = MonitorLedgerEntry {
        seq: entries.len() as u64 + 1,
        entry: new,
        prev_hash: entries
            .last()
            .map(|e| e.hash.clone())
            .unwrap_or_else(|| GENESIS.to_string()),
        hash: String::new(),
    };
    e.hash = entry_hash(&e)?;
    let mut line = serde_json::to_string(&e).map_err(|er| Error::Internal(er.to_string()))?;
    line.push('\n');
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|er| Error::io(parent, er))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|er| Error::io(path, er))?;
    f.write_all(line.as_bytes())
        .map_err(|er| Error::io(path, er))?;
    f.sync_data().map_err(|er| Error::io(path, er))?;
    Ok(e)
}
