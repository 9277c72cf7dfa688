//! The audit ledger of golden-set use (21 CFR Part 11 style audit trail).
//!
//! Every run that unblinds a golden set appends one line to `LEDGER.jsonl` beside the set (or
//! the protocol's `ledger.path`). Entries are hash-chained: each carries the SHA-256 of the
//! previous entry's canonical JSON, and its own hash over its canonical JSON without the
//! `hash` field, so editing or removing any entry breaks the chain at that point and
//! `medgate ledger --verify` names it. The ledger also counts distinct model versions per
//! set, so test-set reuse (a GMLP concern) is visible before it becomes a problem.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default ledger file name, beside the golden set's files.
pub const LEDGER_FILE: &str = "LEDGER.jsonl";

/// The hash that stands before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// 1-based position in the chain.
    pub seq: u64,
    /// When the set was unblinded (RFC 3339 UTC).
    pub time: String,
    /// Who ran it.
    pub user: String,
    /// Protocol ID and version.
    pub protocol: String,
    /// Model weights hash.
    pub model_sha256: String,
    /// Golden-set root hash.
    pub set_root: String,
    /// Run ID.
    pub run_id: String,
    /// Overall verdict.
    pub verdict: String,
    /// Hash of the previous entry (GENESIS for the first).
    pub prev_hash: String,
    /// SHA-256 of this entry's canonical JSON without this field.
    pub hash: String,
}

/// The hash of an entry: SHA-256 of its canonical JSON with the `hash` field left out.
fn entry_hash(e: &LedgerEntry) -> Result<String> {
    let mut v = serde_json::to_value(e).map_err(|er| Error::Internal(er.to_string()))?;
    if let serde_json::Value::Object(m) = &mut v {
        m.remove("hash");
    }
    crate::hash::canonical_sha256(&v)
}

/// The ledger a protocol uses: its `ledger.path` (relative to the protocol's directory), or
/// [`LEDGER_FILE`] in the golden set's directory. `medgate run` and `medgate verify` both
/// resolve it here.
pub fn path_for(
    spec: &crate::protocol::LedgerSpec,
    protocol_dir: &Path,
    set_dir: &Path,
) -> std::path::PathBuf {
    match &spec.path {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => protocol_dir.join(p),
        None => set_dir.join(LEDGER_FILE),
    }
}

/// Reads every entry (no verification); none when the file does not exist.
pub fn read(path: &Path) -> Result<Vec<LedgerEntry>> {
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
                    "{}:{}: not a ledger entry: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// A break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// 1-based line of the entry.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Verifies the hash chain; returns every break found.
pub fn verify(entries: &[LedgerEntry]) -> Result<Vec<ChainBreak>> {
    let mut breaks = Vec::new();
    let mut prev = GENESIS.to_string();
    for (i, e) in entries.iter().enumerate() {
        if e.seq != i as u64 + 1 {
            breaks.push(ChainBreak {
                line: i + 1,
                problem: format!(
                    "sequence number {} where {} was expected (an entry was removed or inserted)",
                    e.seq,
                    i + 1
                ),
            });
        }
        if e.prev_hash != prev {
            breaks.push(ChainBreak {
                line: i + 1,
                problem:
                    "previous-entry hash does not match (an earlier entry was edited or removed)"
                        .into(),
            });
        }
        let h = entry_hash(e)?;
        if h != e.hash {
            breaks.push(ChainBreak {
                line: i + 1,
                problem: "entry hash does not match its content (this entry was edited)".into(),
            });
        }
        prev = e.hash.clone();
    }
    Ok(breaks)
}

/// The fields of a new entry; `seq`, `prev_hash` and `hash` are filled by [`append`].
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Time (RFC 3339 UTC).
    pub time: String,
    /// User.
    pub user: String,
    /// Protocol ID and version.
    pub protocol: String,
    /// Model hash.
    pub model_sha256: String,
    /// Set root hash.
    pub set_root: String,
    /// Run ID.
    pub run_id: String,
    /// Verdict.
    pub verdict: String,
}

/// Appends an entry, chaining it to the last one. Refuses to extend a broken chain.
pub fn append(path: &Path, new: NewEntry) -> Result<LedgerEntry> {
    let entries = read(path)?;
    let breaks = verify(&entries)?;
    if let Some(b) = breaks.first() {
        return Err(Error::input_hint(
            format!(
                "{}:{}: ledger chain is broken: {}",
                path.display(),
                b.line,
                b.problem
            ),
            "the audit trail has been altered; investigate before running again (`medgate ledger --verify`)",
        ));
    }
    let prev = entries
        .last()
        .map(|e| e.hash.clone())
        .unwrap_or_else(|| GENESIS.to_string());
    let mut e = LedgerEntry {
        seq: entries.len() as u64 + 1,
        time: new.time,
        user: new.user,
        protocol: new.protocol,
        model_sha256: new.model_sha256,
        set_root: new.set_root,
        run_id: new.run_id,
        verdict: new.verdict,
        prev_hash: prev,
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

/// Distinct model hashes run on the set with `set_root`, counting `current` (the run about
/// to be recorded) too when given.
pub fn model_versions(entries: &[LedgerEntry], set_root: &str, current: Option<&str>) -> usize {
    let mut m: Vec<&str> = entries
        .iter()
        .filter(|e| e.set_root == set_root)
        .map(|e| e.model_sha256.as_str())
        .chain(current)
        .collect();
    m.sort_unstable();
    m.dedup();
    m.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(i: u32) -> NewEntry {
        NewEntry {
            time: format!("2026-01-0{i}T00:00:00Z"),
            user: "qa".into(),
            protocol: "VP-1 v1".into(),
            model_sha256: format!("m{}", i % 2),
            set_root: "root".into(),
            run_id: format!("run{i}"),
            verdict: "PASS".into(),
        }
    }

    #[test]
    fn chain_detects_edit_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        for i in 1..=3 {
            append(&p, new(i)).unwrap();
        }
        let entries = read(&p).unwrap();
        assert!(verify(&entries).unwrap().is_empty());
        assert_eq!(model_versions(&entries, "root", None), 2);
        assert_eq!(model_versions(&entries, "root", Some("m0")), 2);
        assert_eq!(model_versions(&entries, "root", Some("m9")), 3);

        let mut edited = entries.clone();
        edited[1].verdict = "FAIL".into();
        let b = verify(&edited).unwrap();
        assert_eq!(b[0].line, 2);
        assert!(b[0].problem.contains("edited"));

        let removed = vec![entries[0].clone(), entries[2].clone()];
        let b = verify(&removed).unwrap();
        assert_eq!(b[0].line, 2);

        // A broken chain is never extended.
        let text: String = edited
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        std::fs::write(&p, text).unwrap();
        assert!(append(&p, new(4)).is_err());
    }
}
