//! The append-only journal file (see the module docs of [`crate::harness`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CaseResult;
use crate::error::{Error, Result};

/// File name of the journal inside the output directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// Journal format version.
pub const JOURNAL_FORMAT: u32 = 1;

/// The first line of a journal: what every entry was computed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalHeader {
    /// Journal format version.
    pub medgate_journal: u32,
    /// Protocol ID (informational; the hashes decide compatibility).
    pub protocol: String,
    /// SHA-256 of the model weights (or predictions file).
    pub model_sha256: String,
    /// SHA-256 of the canonical task (prompts, question, answer rule).
    pub task_sha256: String,
    /// SHA-256 of the canonical effective backend settings.
    pub settings_sha256: String,
}

impl JournalHeader {
    fn compatible(&self, other: &JournalHeader) -> bool {
        self.medgate_journal == other.medgate_journal
            && self.model_sha256 == other.model_sha256
            && self.task_sha256 == other.task_sha256
            && self.settings_sha256 == other.settings_sha256
    }
}

/// One journaled case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The case key (see [`super::case_key`]).
    pub key: String,
    /// The result.
    pub result: CaseResult,
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: Vec<JournalEntry>,
}

impl Journal {
    /// Opens (or creates) the journal at `path` for a run with `header`. An existing journal
    /// with a different header is refused. A torn last line (a kill mid-write) is dropped.
    pub fn open(path: &Path, header: &JournalHeader) -> Result<Journal> {
        let mut entries = Vec::new();
        if path.exists() {
            let f = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut lines = BufReader::new(f).lines();
            let first = lines.next().transpose().map_err(|e| Error::io(path, e))?;
            let existing: Option<JournalHeader> =
                first.as_deref().and_then(|l| serde_json::from_str(l).ok());
            match &existing {
                Some(h) if h.compatible(header) => {}
                Some(h) => {
                    return Err(Error::input_hint(
                        format!(
                            "{}: journal belongs to a different run (model {} / task {} / settings {}), not this one (model {} / task {} / settings {})",
                            path.display(),
                            short(&h.model_sha256),
                            short(&h.task_sha256),
                            short(&h.settings_sha256),
                            short(&header.model_sha256),
                            short(&header.task_sha256),
                            short(&header.settings_sha256)
                        ),
                        "results of different models or protocols are never mixed: use a new --out directory",
                    ));
                }
                None if first.as_deref().is_some_and(|l| !l.trim().is_empty()) => {
                    return Err(Error::input_hint(
                        format!(
                            "{}: not a medgate journal (bad header line)",
                            path.display()
                        ),
                        "use a new --out directory",
                    ));
                }
                None => {}
            }
            let mut good_bytes = first.as_ref().map(|l| l.len() + 1).unwrap_or(0);
            let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            for line in lines {
                let Ok(line) = line else { break };
                match serde_json::from_str::<JournalEntry>(&line) {
                    Ok(e) => {
                        entries.push(e);
                        good_bytes += line.len() + 1;
                    }
                    Err(_) => break,
                }
            }
            // Drop a torn tail so the next append starts on a clean line.
            if good_bytes < raw.len() {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                f.set_len(good_bytes as u64)
                    .map_err(|e| Error::io(path, e))?;
            }
            if existing.is_none() {
                write_header(path, header)?;
            }
        } else {
            write_header(path, header)?;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// Entries read when the journal was opened.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// Appends entries, one complete line per write, then syncs.
    pub fn append(&mut self, entries: &[JournalEntry]) -> Result<()> {
        for e in entries {
            self.write_entry(e)?;
        }
        self.sync()
    }

    /// Writes one entry as one complete line with a single `write` (no sync: the line is in
    /// the operating system's cache, so it survives a kill of this process; [`Journal::sync`]
    /// makes it survive a power loss too).
    pub fn write_entry(&mut self, e: &JournalEntry) -> Result<()> {
        let mut line = serde_json::to_string(e).map_err(|e| Error::Internal(e.to_string()))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes written entries to stable storage (`fdatasync`).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

fn write_header(path: &Path, header: &JournalHeader) -> Result<()> {
    let mut line = serde_json::to_string(header).map_err(|e| Error::Internal(e.to_string()))?;
    line.push('\n');
    std::fs::write(path, line).map_err(|e| Error::io(path, e))
}

use crate::hash::short;
