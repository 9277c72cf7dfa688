//! The project's hash-chained audit ledgers (21 CFR Part 11 style audit trail): the one chain
//! implementation (record hashing, reading, verification, appending) and its record kinds.
//!
//! # Record kinds
//! - [`LedgerEntry`]: a run that unblinded a golden set. Every such run appends one line to
//!   `LEDGER.jsonl` beside the set (or the protocol's `ledger.path`).
//! - [`MonitorEntry`]: a `medgate monitor` run, appended to the monitoring ledger beside the
//!   baseline bundle (`<bundle>.monitoring.jsonl`, or the plan's `ledger`).
//!
//! Both are flat JSON objects with the chain fields `seq`, `prev_hash` and `hash` beside their
//! own ([`ChainRecord`]); [`LedgerRecord`] reads either, so `medgate ledger --verify` checks
//! both with [`verify`]. A ledger file holds one kind: the golden-set pipeline reads only
//! [`LedgerEntry`] lines and the monitor appends only after [`MonitorEntry`] lines, so neither
//! writes into the other's file. The monitoring ledger's lines are unchanged from the format
//! `src/monitor/ledger.rs` wrote before it moved here (same fields, same hash), so earlier
//! files verify as they are (`tests/fixtures/ledger/`).
//!
//! # Chain
//! Entries are hash-chained: each carries the SHA-256 of the previous entry's canonical JSON,
//! and its own hash over its canonical JSON without the `hash` field, so editing or removing
//! any entry breaks the chain at that point and `medgate ledger --verify` names it. The golden
//! ledger also counts distinct model versions per set, so test-set reuse (a GMLP concern) is
//! visible before it becomes a problem.
//!
//! # Anchoring
//! A hash chain alone proves nothing against someone who rewrites the whole file: re-chaining
//! every entry after an edit, or truncating the ledger, leaves an intact chain. So each run
//! records its own entry ([`LedgerAnchor`]: sequence number, previous hash and entry hash) in
//! its evidence, which the bundle's `SHA256SUMS` and signatures then cover: the entry is built
//! with [`prepare`] before the evidence is written and appended with [`commit`] after. A ledger
//! that no longer holds that exact entry at that position, or whose chain up to it changed,
//! fails `medgate verify` ([`check_anchor`]). Lines with unknown fields are errors, so
//! nothing can ride along unhashed. Monitoring runs are not anchored this way yet: their
//! `monitor.json` does not record its ledger entry, so only the chain protects them.

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
#[serde(deny_unknown_fields)]
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

/// A record kind of the chain: a flat JSON object with `seq`, `prev_hash` and `hash` beside its
/// own fields (unknown fields refused, so nothing rides along unhashed).
pub trait ChainRecord: Serialize + serde::de::DeserializeOwned {
    /// What a line of this kind is, for messages ("golden-set ledger entry").
    const WHAT: &'static str;
    /// 1-based position in the chain.
    fn seq(&self) -> u64;
    /// Hash of the previous record (GENESIS for the first).
    fn prev_hash(&self) -> &str;
    /// SHA-256 of this record's canonical JSON without `hash`.
    fn hash(&self) -> &str;
    /// Sets the chain fields.
    fn set_link(&mut self, seq: u64, prev_hash: String, hash: String);
}

/// `ChainRecord` for a record struct with the fields `seq`, `prev_hash` and `hash`.
macro_rules! chain_record {
    ($t:ty, $what:literal) => {
        impl ChainRecord for $t {
            const WHAT: &'static str = $what;
            fn seq(&self) -> u64 {
                self.seq
            }
            fn prev_hash(&self) -> &str {
                &self.prev_hash
            }
            fn hash(&self) -> &str {
                &self.hash
            }
            fn set_link(&mut self, seq: u64, prev_hash: String, hash: String) {
                (self.seq, self.prev_hash, self.hash) = (seq, prev_hash, hash);
            }
        }
    };
}

chain_record!(LedgerEntry, "ledger entry");

/// A log file a monitoring run read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Path as given.
    pub path: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

/// One `medgate monitor` run (the monitoring ledger's record kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorEntry {
    /// 1-based position in the chain.
    pub seq: u64,
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
    /// Hash of the previous entry (GENESIS for the first).
    pub prev_hash: String,
    /// SHA-256 of this entry's canonical JSON without this field.
    pub hash: String,
}

chain_record!(MonitorEntry, "monitoring ledger entry");

/// A line of either kind (what `medgate ledger` reads): a line with `baseline_run_id` is a
/// [`MonitorEntry`], any other a [`LedgerEntry`]; each then parses with its own unknown-field
/// check. Serializes as the inner record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LedgerRecord {
    /// A golden-set run.
    Run(LedgerEntry),
    /// A monitoring run.
    Monitor(MonitorEntry),
}

impl<'de> Deserialize<'de> for LedgerRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        if v.get("baseline_run_id").is_some() {
            serde_json::from_value(v)
                .map(LedgerRecord::Monitor)
                .map_err(D::Error::custom)
        } else {
            serde_json::from_value(v)
                .map(LedgerRecord::Run)
                .map_err(D::Error::custom)
        }
    }
}

impl LedgerRecord {
    fn inner(&self) -> &dyn LinkView {
        match self {
            LedgerRecord::Run(e) => e,
            LedgerRecord::Monitor(e) => e,
        }
    }
}

/// Object-safe view of the chain fields (for [`LedgerRecord`]'s delegation).
trait LinkView {
    fn seq(&self) -> u64;
    fn prev_hash(&self) -> &str;
    fn hash(&self) -> &str;
}

impl<T: ChainRecord> LinkView for T {
    fn seq(&self) -> u64 {
        ChainRecord::seq(self)
    }
    fn prev_hash(&self) -> &str {
        ChainRecord::prev_hash(self)
    }
    fn hash(&self) -> &str {
        ChainRecord::hash(self)
    }
}

impl ChainRecord for LedgerRecord {
    const WHAT: &'static str = "ledger entry (golden-set or monitoring run)";
    fn seq(&self) -> u64 {
        self.inner().seq()
    }
    fn prev_hash(&self) -> &str {
        self.inner().prev_hash()
    }
    fn hash(&self) -> &str {
        self.inner().hash()
    }
    fn set_link(&mut self, seq: u64, prev_hash: String, hash: String) {
        match self {
            LedgerRecord::Run(e) => e.set_link(seq, prev_hash, hash),
            LedgerRecord::Monitor(e) => e.set_link(seq, prev_hash, hash),
        }
    }
}

/// The hash of a record: SHA-256 of its canonical JSON with the `hash` field left out.
fn entry_hash<R: Serialize>(e: &R) -> Result<String> {
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

/// Reads every golden-set run entry (no verification); none when the file does not exist.
pub fn read(path: &Path) -> Result<Vec<LedgerEntry>> {
    read_chain(path)
}

/// Reads every record of kind `R` (no verification); none when the file does not exist. A
/// line that is not a record of that kind is an error naming the file and line.
pub fn read_chain<R: ChainRecord>(path: &Path) -> Result<Vec<R>> {
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
                    "{}:{}: not a {}: {e}",
                    path.display(),
                    i + 1,
                    R::WHAT
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

/// Verifies the hash chain of records of any kind; returns every break found.
pub fn verify<R: ChainRecord>(entries: &[R]) -> Result<Vec<ChainBreak>> {
    let mut breaks = Vec::new();
    let mut prev = GENESIS.to_string();
    for (i, e) in entries.iter().enumerate() {
        if e.seq() != i as u64 + 1 {
            breaks.push(ChainBreak {
                line: i + 1,
                problem: format!(
                    "sequence number {} where {} was expected (an entry was removed or inserted)",
                    e.seq(),
                    i + 1
                ),
            });
        }
        if e.prev_hash() != prev {
            breaks.push(ChainBreak {
                line: i + 1,
                problem:
                    "previous-entry hash does not match (an earlier entry was edited or removed)"
                        .into(),
            });
        }
        let h = entry_hash(e)?;
        if h != e.hash() {
            breaks.push(ChainBreak {
                line: i + 1,
                problem: "entry hash does not match its content (this entry was edited)".into(),
            });
        }
        prev = e.hash().to_string();
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

impl NewEntry {
    /// The entry of a run of `p` on `set` with the model `model_sha256`, analysed as `a`,
    /// started and finished at those times (its run ID is [`super::run_id`]).
    pub fn of_run(
        p: &crate::protocol::Protocol,
        model_sha256: &str,
        set: &crate::golden::GoldenSet,
        a: &super::analysis::Analysis,
        started: chrono::DateTime<chrono::Utc>,
        finished: chrono::DateTime<chrono::Utc>,
        world: &dyn crate::world::World,
    ) -> NewEntry {
        NewEntry {
            time: finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            user: world.user(),
            protocol: format!("{} v{}", p.protocol, p.version),
            model_sha256: model_sha256.to_string(),
            set_root: set.lock.root_hash.clone(),
            run_id: super::run_id(&p.protocol, started, &a.results_sha256),
            verdict: a.verdict.label().into(),
        }
    }
}

/// Where a run's entry sits in the ledger, as recorded in its evidence (`ledger_entry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LedgerAnchor {
    /// Sequence number of the run's entry.
    pub seq: u64,
    /// Hash of the entry before it (the chain head the run extended).
    pub prev_hash: String,
    /// Hash of the run's own entry.
    pub hash: String,
}

impl LedgerAnchor {
    /// The anchor of an entry.
    pub fn of(e: &LedgerEntry) -> LedgerAnchor {
        LedgerAnchor {
            seq: e.seq,
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// Builds the next entry of the ledger at `path`, whose entries as read once by the caller
/// ([`read`]) are `entries` (sequence number, previous hash and its own hash filled in),
/// without writing it. Refuses to extend a broken chain.
pub fn prepare(path: &Path, entries: &[LedgerEntry], new: NewEntry) -> Result<LedgerEntry> {
    seal(
        path,
        entries,
        LedgerEntry {
            seq: 0,
            time: new.time,
            user: new.user,
            protocol: new.protocol,
            model_sha256: new.model_sha256,
            set_root: new.set_root,
            run_id: new.run_id,
            verdict: new.verdict,
            prev_hash: String::new(),
            hash: String::new(),
        },
    )
}

/// Places `record` after `entries` (the ledger at `path` as read once by the caller): its
/// sequence number, previous hash and own hash filled in, nothing written. Refuses to extend a
/// broken chain.
pub fn seal<R: ChainRecord>(path: &Path, entries: &[R], mut record: R) -> Result<R> {
    let breaks = verify(entries)?;
    if let Some(b) = breaks.first() {
        return Err(Error::input_hint(
            format!(
                "{}:{}: ledger chain is broken: {}",
                path.display(),
                b.line,
                b.problem
            ),
            format!(
                "the audit trail has been altered; investigate before running again (`medgate ledger {} --verify`)",
                path.display()
            ),
        ));
    }
    let prev = entries
        .last()
        .map(|e| e.hash().to_string())
        .unwrap_or_else(|| GENESIS.to_string());
    record.set_link(entries.len() as u64 + 1, prev.clone(), String::new());
    let h = entry_hash(&record)?;
    record.set_link(entries.len() as u64 + 1, prev, h);
    Ok(record)
}

/// Appends an entry built by [`prepare`], after checking that the ledger's head is still the
/// one it was chained to (another run appending meanwhile is refused, not silently forked).
/// That check re-reads the file on purpose: it is about the ledger as it is now, not as the
/// run read it.
pub fn commit<R: ChainRecord>(path: &Path, e: &R) -> Result<()> {
    let entries: Vec<R> = read_chain(path)?;
    let head = entries
        .last()
        .map(|e| e.hash().to_string())
        .unwrap_or_else(|| GENESIS.to_string());
    if head != e.prev_hash() || entries.len() as u64 + 1 != e.seq() {
        return Err(Error::infra(format!(
            "{}: the ledger changed while this run was in progress (its head is now entry {}); this run's entry was not appended",
            path.display(),
            entries.len()
        )));
    }
    let mut line = serde_json::to_string(e).map_err(|er| Error::Internal(er.to_string()))?;
    line.push('\n');
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|er| Error::io(parent, er))?;
    }
    if crate::fsx::is_symlink(path) {
        return Err(Error::input(format!(
            "{}: the ledger is a symlink; medgate does not write through links",
            path.display()
        )));
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|er| Error::io(path, er))?;
    f.write_all(line.as_bytes())
        .map_err(|er| Error::io(path, er))?;
    f.sync_data().map_err(|er| Error::io(path, er))?;
    Ok(())
}

/// Appends an entry, chaining it to the last one. Refuses to extend a broken chain.
pub fn append(path: &Path, new: NewEntry) -> Result<LedgerEntry> {
    let e = prepare(path, &read(path)?, new)?;
    commit(path, &e)?;
    Ok(e)
}

/// Appends a record of kind `R` (its chain fields are filled here) to the ledger at `path`,
/// whose every line must be of that kind. Refuses to extend a broken chain.
pub fn append_record<R: ChainRecord>(path: &Path, record: R) -> Result<R> {
    let e = seal(path, &read_chain::<R>(path)?, record)?;
    commit(path, &e)?;
    Ok(e)
}

/// Checks a run's recorded anchor against the ledger's entries: the entry at that sequence
/// number exists, has that hash and previous hash, and the chain up to it is intact. Returns
/// the problems found (empty when it holds).
pub fn check_anchor(entries: &[LedgerEntry], anchor: &LedgerAnchor) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let upto = usize::try_from(anchor.seq).unwrap_or(usize::MAX);
    if anchor.seq == 0 || upto > entries.len() {
        bad.push(format!(
            "the evidence records entry {} but the ledger has {} entries (truncated?)",
            anchor.seq,
            entries.len()
        ));
        return Ok(bad);
    }
    for b in verify(&entries[..upto])? {
        bad.push(format!("line {}: {}", b.line, b.problem));
    }
    let e = &entries[upto - 1];
    if e.hash != anchor.hash {
        bad.push(format!(
            "entry {} hashes to {}, the evidence recorded {} (rewritten or re-chained)",
            anchor.seq,
            crate::hash::short(&e.hash),
            crate::hash::short(&anchor.hash)
        ));
    }
    if e.prev_hash != anchor.prev_hash {
        bad.push(format!(
            "entry {} chains to {}, the evidence recorded {} (an earlier entry changed)",
            anchor.seq,
            crate::hash::short(&e.prev_hash),
            crate::hash::short(&anchor.prev_hash)
        ));
    }
    Ok(bad)
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

    #[test]
    fn a_rechained_or_truncated_ledger_fails_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let mut anchors = Vec::new();
        for i in 1..=3 {
            anchors.push(LedgerAnchor::of(&append(&p, new(i)).unwrap()));
        }
        let entries = read(&p).unwrap();
        assert!(check_anchor(&entries, &anchors[1]).unwrap().is_empty());
        // Truncated to its first line: the chain is intact, the anchor of run 2 is not.
        assert!(verify(&entries[..1]).unwrap().is_empty());
        assert!(!check_anchor(&entries[..1], &anchors[1]).unwrap().is_empty());
        // Entry 1 edited and every hash recomputed: an intact chain, a broken anchor.
        let mut rechained = Vec::new();
        let mut prev = GENESIS.to_string();
        for (i, e) in entries.iter().enumerate() {
            let mut e = e.clone();
            if i == 0 {
                e.verdict = "FAIL".into();
            }
            e.prev_hash = prev.clone();
            e.hash = entry_hash(&e).unwrap();
            prev = e.hash.clone();
            rechained.push(e);
        }
        assert!(verify(&rechained).unwrap().is_empty());
        let bad = check_anchor(&rechained, &anchors[2]).unwrap();
        assert!(bad.iter().any(|b| b.contains("re-chained")), "{bad:?}");
        // An unknown field is an error, not ignored.
        let mut line = serde_json::to_value(&entries[0]).unwrap();
        line["note"] = "unhashed".into();
        std::fs::write(&p, format!("{line}\n")).unwrap();
        assert!(read(&p).is_err());
    }
}
