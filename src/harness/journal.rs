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
pub(crate) const JOURNAL_FORMAT: u32 = 1;

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

/// Where corrupt journal lines are moved, beside the journal (`<journal>.rejected.jsonl`):
/// one JSON object per line, `{"line": N, "text": "..."}`, never deleted.
const REJECTED_SUFFIX: &str = ".rejected.jsonl";

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: Vec<JournalEntry>,
    warnings: Vec<String>,
}

impl Journal {
    /// Opens (or creates) the journal at `path` for a run with `header`. An existing journal
    /// with a different header is refused. Corrupt lines (a torn last line after a kill
    /// mid-write, or damage anywhere) are moved to `<journal>.rejected.jsonl` with their line
    /// numbers and every valid entry is kept; damage other than a torn tail is warned about.
    pub fn open(path: &Path, header: &JournalHeader) -> Result<Journal> {
        let mut entries = Vec::new();
        let mut journal_warnings = Vec::new();
        if crate::fsx::is_symlink(path) {
            return Err(Error::input(format!(
                "{}: the journal is a symlink; medgate does not follow links in a bundle",
                path.display()
            )));
        }
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
            // Keep every valid entry. A corrupt line (a torn tail after a kill mid-write, or
            // damage in the middle) is moved aside with its line number, never silently
            // dropped together with everything after it.
            let mut good = String::new();
            if let Some(f) = &first {
                good.push_str(f);
                good.push('\n');
            }
            let mut rejected: Vec<(usize, String)> = Vec::new();
            let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let text = String::from_utf8_lossy(&raw);
            let torn_tail = !text.ends_with('\n');
            let body: Vec<&str> = text.lines().skip(1).collect();
            let last = body.len();
            for (i, line) in body.into_iter().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<JournalEntry>(line) {
                    Ok(e) => {
                        entries.push(e);
                        good.push_str(line);
                        good.push('\n');
                    }
                    Err(_) => rejected.push((i + 2, line.to_string())),
                }
            }
            drop(lines);
            if !rejected.is_empty() || good.len() != raw.len() {
                let mut warnings = Vec::new();
                if !rejected.is_empty() {
                    let aside = rejected_path(path);
                    let mut out = String::new();
                    for (n, t) in &rejected {
                        let v = serde_json::json!({ "line": n, "text": t });
                        out.push_str(&v.to_string());
                        out.push('\n');
                    }
                    let mut f = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&aside)
                        .map_err(|e| Error::io(&aside, e))?;
                    f.write_all(out.as_bytes())
                        .map_err(|e| Error::io(&aside, e))?;
                    f.sync_data().map_err(|e| Error::io(&aside, e))?;
                    let only_tail = torn_tail && rejected.len() == 1 && rejected[0].0 == last + 1;
                    if !only_tail {
                        warnings.push(format!(
                            "{}: {} corrupt journal line(s) (line {}) moved to {}; {} valid entries kept",
                            path.display(),
                            rejected.len(),
                            line_list(rejected.iter().map(|(n, _)| *n)),
                            aside.display(),
                            entries.len()
                        ));
                    }
                }
                // Rewrite atomically: the journal keeps exactly its valid lines.
                let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                crate::fsx::write_inside(
                    dir.unwrap_or(Path::new(".")),
                    Path::new(&name),
                    good.as_bytes(),
                )?;
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
                journal_warnings = warnings;
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
            warnings: journal_warnings,
        })
    }

    /// Warnings from opening: corrupt lines moved aside (a torn last line is not warned).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
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

/// A journal's text as `medgate verify` reads it back: the header (when the first line is
/// one), the last entry of each case key (a retried case's later answer wins, as on resume),
/// and how many lines are unreadable.
#[derive(Debug, Clone, Default)]
pub struct JournalText {
    /// The header line, when it parses.
    pub header: Option<JournalHeader>,
    /// The last entry of each key.
    pub last: std::collections::BTreeMap<String, JournalEntry>,
    /// Lines after the header that are not entries.
    pub torn: usize,
}

/// Parses a journal's text (see [`JournalText`]); never fails.
pub fn parse_text(text: &str) -> JournalText {
    let mut lines = text.lines();
    let header = lines.next().and_then(|l| serde_json::from_str(l).ok());
    let mut out = JournalText {
        header,
        ..JournalText::default()
    };
    for l in lines {
        match serde_json::from_str::<JournalEntry>(l) {
            Ok(e) => {
                out.last.insert(e.key.clone(), e);
            }
            Err(_) => out.torn += 1,
        }
    }
    out
}

/// `journal.jsonl` -> `journal.jsonl.rejected.jsonl`.
fn rejected_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(REJECTED_SUFFIX);
    PathBuf::from(s)
}

fn write_header(path: &Path, header: &JournalHeader) -> Result<()> {
    let mut line = serde_json::to_string(header).map_err(|e| Error::Internal(e.to_string()))?;
    line.push('\n');
    std::fs::write(path, line).map_err(|e| Error::io(path, e))
}

use crate::hash::short;

/// At most the first ten line numbers, then "and N more": a journal with thousands of corrupt
/// lines yields one readable warning, and every line number is in the `.rejected` file.
fn line_list(lines: impl Iterator<Item = usize>) -> String {
    let all: Vec<usize> = lines.collect();
    let shown: Vec<String> = all.iter().take(10).map(|n| n.to_string()).collect();
    match all.len().saturating_sub(10) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod line_list_tests {
    #[test]
    fn ten_line_numbers_then_a_count() {
        assert_eq!(super::line_list([6].into_iter()), "6");
        assert_eq!(
            super::line_list(2..=1001),
            "2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 990 more"
        );
    }
}
