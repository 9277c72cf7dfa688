//! The golden set's `LOCK`: what every file's bytes were when the set was frozen.
//!
//! # Format
//! `LOCK` is UTF-8 text meant to be read in a code review and diffed in version control:
//!
//! ```text
//! # medgate golden-set LOCK (do not edit; `medgate verify-set DIR` checks it)
//! format: 1
//! algorithm: sha256
//! root: <64 hex>
//! manifest: manifest.csv
//! manifest_sha256: <64 hex>
//! files: <count>
//! bytes: <total>
//! cases: <rows in the manifest>
//! prevalence.<column>: <positives>/<cases>        (one line per 0/1 column)
//! deid_screen: pass | waived | not-run
//! waiver: <reason>                                 (only when waived)
//! decode_preflight: pass | waived: <reason> (<n> undecodable)   (absent in older LOCKs)
//! locked_by: <user>
//! locked_at: <RFC 3339 UTC>
//! note: <free text, one line>
//!
//! files:
//! <sha256>  <size>  <path>                         (sorted by path, bytewise)
//!
//! history:
//! - <previous lock's locked_at>  <locked_by>  root <root>  note: <note>
//! ```
//!
//! # Root hash
//! `root` = SHA-256 over the concatenation, for every file in path order, of
//! `path \0 size \0 sha256 \n` (path relative to the set with `/` separators, size in
//! decimal, hash in lowercase hex). One value therefore fixes every path, size and byte.
//!
//! # What is hashed
//! Every regular file under the set's directory, recursively, except the LOCK file itself and
//! top-level files whose names start with `LEDGER` (the harness appends its audit ledger,
//! `LEDGER.jsonl`, beside the data; it changes on every run by design and is protected by
//! its own hash chain). A symbolic link is hashed as the file it points to when that file is
//! inside the set; a link that leaves the set, a link to a directory, and a non-UTF-8 or
//! multi-line file name are errors. Files are hashed in parallel (rayon), each streamed in
//! 1 MiB blocks, so memory stays bounded whatever the set's size.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The LOCK format version this build writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// Default LOCK file name.
pub const LOCK_FILE: &str = "LOCK";

/// One hashed file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockedFile {
    /// Path relative to the set, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// Positives of a 0/1 label column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCount {
    /// Rows with 1/true.
    pub positive: u64,
    /// Rows in the manifest.
    pub total: u64,
}

/// A parsed LOCK file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    /// Format version (`1`).
    pub format: String,
    /// Hash algorithm (`sha256`).
    pub algorithm: String,
    /// Root hash over every file (see the module docs).
    pub root_hash: String,
    /// Manifest path relative to the set.
    pub manifest: String,
    /// SHA-256 of the manifest.
    pub manifest_sha256: String,
    /// Number of manifest rows.
    pub cases: u64,
    /// Positives per 0/1 column of the manifest.
    pub prevalence: BTreeMap<String, LabelCount>,
    /// `pass`, `waived` or `not-run`.
    pub deid_screen: String,
    /// Reason given for a de-identification waiver.
    pub waiver: Option<String>,
    /// Image decoding pre-flight: `pass`, or `waived: <reason> (<n> undecodable)`;
    /// `None` in LOCKs written before the pre-flight existed.
    pub decode_preflight: Option<String>,
    /// Who locked the set.
    pub created_by: String,
    /// When the set was locked (RFC 3339, UTC).
    pub created: String,
    /// Free-text note.
    pub note: String,
    /// Every hashed file, sorted by path.
    pub files: Vec<LockedFile>,
    /// Earlier locks of this set, newest last.
    pub history: Vec<String>,
}

impl Lock {
    /// Total bytes of the hashed files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The locked file at `path` (relative, `/`-separated).
    pub fn file(&self, path: &str) -> Option<&LockedFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Renders the LOCK text (see the module docs for the format).
    pub fn render(&self) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        let mut s = String::new();
        s.push_str("# medgate golden-set LOCK (do not edit; `medgate verify-set DIR` checks it)\n");
        s.push_str("# root = sha256 over \"path\\0size\\0sha256\\n\" of every file below, sorted by path\n");
        let _ = writeln!(s, "format: {}", self.format);
        let _ = writeln!(s, "algorithm: {}", self.algorithm);
        let _ = writeln!(s, "root: {}", self.root_hash);
        let _ = writeln!(s, "manifest: {}", self.manifest);
        let _ = writeln!(s, "manifest_sha256: {}", self.manifest_sha256);
        let _ = writeln!(s, "files: {}", self.files.len());
        let _ = writeln!(s, "bytes: {}", self.total_bytes());
        let _ = writeln!(s, "cases: {}", self.cases);
        for (col, c) in &self.prevalence {
            let _ = writeln!(s, "prevalence.{col}: {}/{}", c.positive, c.total);
        }
        let _ = writeln!(s, "deid_screen: {}", self.deid_screen);
        if let Some(w) = &self.waiver {
            let _ = writeln!(s, "waiver: {}", one_line(w));
        }
        if let Some(p) = &self.decode_preflight {
            let _ = writeln!(s, "decode_preflight: {}", one_line(p));
        }
        let _ = writeln!(s, "locked_by: {}", one_line(&self.created_by));
        let _ = writeln!(s, "locked_at: {}", self.created);
        let _ = writeln!(s, "note: {}", one_line(&self.note));
        s.push_str("\nfiles:\n");
        for f in &self.files {
            let _ = writeln!(s, "{}  {}  {}", f.sha256, f.size, f.path);
        }
        s.push_str("\nhistory:\n");
        for h in &self.history {
            let _ = writeln!(s, "- {}", one_line(h));
        }
        s
    }

    /// Parses LOCK text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Lock> {
        let bad = |line: usize, msg: String| {
            Error::input_hint(
                format!("{}:{line}: {msg}", origin.display()),
                "a LOCK is written by `medgate lock`; restore it from version control rather than editing it",
            )
        };
        let mut header: BTreeMap<String, String> = BTreeMap::new();
        let mut prevalence = BTreeMap::new();
        let mut files = Vec::new();
        let mut history = Vec::new();
        #[derive(PartialEq)]
        enum Section {
            Header,
            Files,
            History,
        }
        let mut section = Section::Header;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            match line {
                "files:" => {
                    section = Section::Files;
                    continue;
                }
                "history:" => {
                    section = Section::History;
                    continue;
                }
                _ => {}
            }
            match section {
                Section::Header => {
                    let (k, v) = line
                        .split_once(": ")
                        .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
                        .ok_or_else(|| bad(n, format!("expected `key: value`, found `{line}`")))?;
                    if let Some(col) = k.strip_prefix("prevalence.") {
                        let (p, t) = v
                            .split_once('/')
                            .and_then(|(p, t)| Some((p.parse().ok()?, t.parse().ok()?)))
                            .ok_or_else(|| {
                                bad(
                                    n,
                                    format!("prevalence must be `positives/total`, found `{v}`"),
                                )
                            })?;
                        prevalence.insert(
                            col.to_string(),
                            LabelCount {
                                positive: p,
                                total: t,
                            },
                        );
                    } else if header.insert(k.to_string(), v.to_string()).is_some() {
                        return Err(bad(n, format!("duplicate key `{k}`")));
                    }
                }
                Section::Files => {
                    let mut parts = line.splitn(3, "  ");
                    let (Some(h), Some(sz), Some(p)) = (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(bad(
                            n,
                            format!("expected `<sha256>  <size>  <path>`, found `{line}`"),
                        ));
                    };
                    if h.len() != 64
                        || !h
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    {
                        return Err(bad(n, format!("`{h}` is not a lowercase SHA-256")));
                    }
                    let size = sz
                        .parse()
                        .map_err(|_| bad(n, format!("`{sz}` is not a size")))?;
                    files.push(LockedFile {
                        path: p.to_string(),
                        size,
                        sha256: h.to_string(),
                    });
                }
                Section::History => {
                    history.push(line.strip_prefix("- ").unwrap_or(line).to_string());
                }
            }
        }
        let get = |k: &str| -> Result<String> {
            header
                .get(k)
                .cloned()
                .ok_or_else(|| bad(1, format!("missing `{k}:` line")))
        };
        let format = get("format")?;
        if format != FORMAT_VERSION {
            return Err(bad(
                1,
                format!(
                    "LOCK format {format} is not supported (this medgate reads {FORMAT_VERSION})"
                ),
            ));
        }
        let algorithm = get("algorithm")?;
        if algorithm != "sha256" {
            return Err(bad(
                1,
                format!("hash algorithm `{algorithm}` is not supported"),
            ));
        }
        for w in files.windows(2) {
            if w[0].path >= w[1].path {
                return Err(bad(
                    1,
                    format!(
                        "file list is not sorted or has a duplicate at `{}`",
                        w[1].path
                    ),
                ));
            }
        }
        let lock = Lock {
            format,
            algorithm,
            root_hash: get("root")?,
            manifest: get("manifest")?,
            manifest_sha256: get("manifest_sha256")?,
            cases: get("cases")?
                .parse()
                .map_err(|_| bad(1, "`cases:` is not a number".into()))?,
            prevalence,
            deid_screen: get("deid_screen")?,
            waiver: header.get("waiver").cloned(),
            decode_preflight: header.get("decode_preflight").cloned(),
            created_by: get("locked_by")?,
            created: get("locked_at")?,
            note: header.get("note").cloned().unwrap_or_default(),
            files,
            history,
        };
        if let Some(c) = header
            .get("files")
            .filter(|c| c.parse::<usize>().ok() != Some(lock.files.len()))
        {
            return Err(bad(
                1,
                format!("`files: {c}` but {} file lines", lock.files.len()),
            ));
        }
        let root = root_hash(&lock.files);
        if root != lock.root_hash {
            return Err(bad(
                1,
                format!(
                    "the root hash does not match the file list (recorded {}, computed {root}): the LOCK was edited",
                    lock.root_hash
                ),
            ));
        }
        Ok(lock)
    }
}

/// Reads and parses a LOCK file (checking that its root matches its own file list).
pub fn read_lock(path: &Path) -> Result<Lock> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Lock::parse(&text, path)
}

/// The root hash over files sorted by path (see the module docs).
pub fn root_hash(files: &[LockedFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0u8]);
        h.update(f.size.to_string().as_bytes());
        h.update([0u8]);
        h.update(f.sha256.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Whether a top-level file is excluded from hashing (ledger files).
fn excluded(rel: &str, lock_rel: Option<&str>) -> bool {
    Some(rel) == lock_rel || (!rel.contains('/') && rel.starts_with("LEDGER"))
}

/// Lists every file of the set that is hashed, sorted by relative path, with its absolute path.
/// `lock_file` is excluded when it lies inside `dir`.
pub(crate) fn list_files(dir: &Path, lock_file: &Path) -> Result<Vec<(String, PathBuf)>> {
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    if !root.is_dir() {
        return Err(Error::input(format!("{}: not a directory", dir.display())));
    }
    let lock_rel = lock_file
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| {
            let name = lock_file.file_name()?;
            p.join(name).strip_prefix(&root).ok().map(rel_string)
        })
        .and_then(|r| r.ok());
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(&d, e))?;
            let path = e.path();
            let rel = rel_string(path.strip_prefix(&root).unwrap_or(&path))?;
            let ft = e.file_type().map_err(|e| Error::io(&path, e))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_symlink() {
                let target = path.canonicalize().map_err(|e| {
                    Error::input_hint(
                        format!("{}: broken symbolic link ({e})", path.display()),
                        "replace the link with the file itself",
                    )
                })?;
                if !target.starts_with(&root) {
                    return Err(Error::input_hint(
                        format!(
                            "{rel}: symbolic link points outside the golden set (to {})",
                            target.display()
                        ),
                        "copy the file into the set; a golden set must be self-contained",
                    ));
                }
                if target.is_dir() {
                    return Err(Error::input_hint(
                        format!("{rel}: symbolic link to a directory"),
                        "replace the link with a real directory",
                    ));
                }
                if !excluded(&rel, lock_rel.as_deref()) {
                    out.push((rel, path));
                }
            } else if ft.is_file() {
                if !excluded(&rel, lock_rel.as_deref()) {
                    out.push((rel, path));
                }
            } else {
                return Err(Error::input(format!(
                    "{rel}: not a regular file (device, socket or pipe)"
                )));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A relative path as a `/`-separated UTF-8 string, refusing names a LOCK cannot hold.
fn rel_string(p: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        let s = c.as_os_str().to_str().ok_or_else(|| {
            Error::input_hint(
                format!("{}: file name is not valid UTF-8", p.display()),
                "rename the file with a UTF-8 name",
            )
        })?;
        if s.contains(['\n', '\r']) {
            return Err(Error::input_hint(
                format!(
                    "{:?}: file name contains a line break",
                    p.display().to_string()
                ),
                "rename the file",
            ));
        }
        parts.push(s.to_string());
    }
    Ok(parts.join("/"))
}

/// Hashes every file of the set (in parallel, streaming), sorted by path.
pub fn hash_files(dir: &Path, lock_file: &Path) -> Result<Vec<LockedFile>> {
    hash_files_known(dir, lock_file, &[])
}

/// Like [`hash_files`], except that a file listed in `known` (by its path relative to the
/// set) is not read again: the caller read it, hashed exactly those bytes, and uses them.
fn hash_files_known(dir: &Path, lock_file: &Path, known: &[LockedFile]) -> Result<Vec<LockedFile>> {
    let files = list_files(dir, lock_file)?;
    files
        .par_iter()
        .map(|(rel, abs)| {
            if let Some(k) = known.iter().find(|k| &k.path == rel) {
                return Ok(k.clone());
            }
            let (sha256, size) = crate::hash::sha256_file(abs)?;
            Ok(LockedFile {
                path: rel.clone(),
                size,
                sha256,
            })
        })
        .collect()
}

/// A file whose size or content differs from the LOCK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    /// Path relative to the set.
    pub path: String,
    /// Size and hash in the LOCK.
    pub locked_size: u64,
    /// SHA-256 in the LOCK.
    pub locked_sha256: String,
    /// Size now.
    pub size: u64,
    /// SHA-256 now (empty in `--sizes-only` mode).
    pub sha256: String,
}

/// The result of comparing a set's files with its LOCK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The set's directory.
    pub dir: String,
    /// The LOCK file.
    pub lock_file: String,
    /// Root hash recorded in the LOCK.
    pub lock_root_hash: String,
    /// Root hash of the files as they are now (equal to `lock_root_hash` when intact; empty
    /// in sizes-only mode).
    pub root_hash: String,
    /// Files checked.
    pub files: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Whether every byte was hashed (false in sizes-only mode).
    pub full: bool,
    /// Files present but not in the LOCK.
    pub added: Vec<String>,
    /// Files in the LOCK but absent.
    pub missing: Vec<String>,
    /// Files whose size or content changed.
    pub changed: Vec<ChangedFile>,
}

impl VerifyReport {
    /// True when no file was added, removed or changed.
    pub fn is_intact(&self) -> bool {
        self.added.is_empty() && self.missing.is_empty() && self.changed.is_empty()
    }

    /// Every difference as one line (`added: PATH`, ...), in path order per kind.
    pub fn problems(&self) -> Vec<String> {
        let mut v: Vec<String> = self.added.iter().map(|p| format!("added: {p}")).collect();
        v.extend(self.missing.iter().map(|p| format!("missing: {p}")));
        v.extend(self.changed.iter().map(|c| format!("changed: {}", c.path)));
        v
    }

    /// The error a pipeline stage returns for a set that is not intact (exit 2).
    pub fn to_error(&self) -> Error {
        let list = self.problems();
        let shown: Vec<&str> = list.iter().take(50).map(String::as_str).collect();
        let more = if list.len() > shown.len() {
            format!("\n  ... and {} more", list.len() - shown.len())
        } else {
            String::new()
        };
        Error::input_hint(
            format!(
                "golden set {} does not match its LOCK ({} added, {} missing, {} changed):\n  {}{more}",
                self.dir,
                self.added.len(),
                self.missing.len(),
                self.changed.len(),
                shown.join("\n  ")
            ),
            "restore the set from version control, or re-lock it deliberately with `medgate lock --force` (the old root is kept in the LOCK's history)",
        )
    }
}

/// Re-hashes every byte of the set in `dir` and compares it with `lock_file`.
pub fn verify_set(dir: &Path, lock_file: &Path) -> Result<VerifyReport> {
    verify_with(dir, lock_file, true)
}

/// Like [`verify_set`], but `full = false` compares only paths and sizes (fast, not a
/// content check: never use it as evidence).
pub fn verify_with(dir: &Path, lock_file: &Path, full: bool) -> Result<VerifyReport> {
    let lock = read_lock(lock_file)?;
    verify_against(dir, lock_file, &lock, full)
}

/// Like [`verify_with`], against a LOCK already read and parsed (so that the caller hashes
/// and uses exactly the LOCK bytes it verified against).
fn verify_against(dir: &Path, lock_file: &Path, lock: &Lock, full: bool) -> Result<VerifyReport> {
    verify_against_known(dir, lock_file, lock, full, &[])
}

/// Like [`verify_against`] (full), where the files in `known` were already read by the
/// caller, who hashed the bytes it uses (the manifest, read once by
/// [`crate::golden::GoldenSet::open`]): they are compared by that hash, not read again.
pub(crate) fn verify_against_known(
    dir: &Path,
    lock_file: &Path,
    lock: &Lock,
    full: bool,
    known: &[LockedFile],
) -> Result<VerifyReport> {
    let current: Vec<LockedFile> = if full {
        hash_files_known(dir, lock_file, known)?
    } else {
        list_files(dir, lock_file)?
            .into_iter()
            .map(|(rel, abs)| {
                let size = std::fs::metadata(&abs)
                    .map_err(|e| Error::io(&abs, e))?
                    .len();
                Ok(LockedFile {
                    path: rel,
                    size,
                    sha256: String::new(),
                })
            })
            .collect::<Result<_>>()?
    };
    let locked: BTreeMap<&str, &LockedFile> =
        lock.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let now: BTreeMap<&str, &LockedFile> = current.iter().map(|f| (f.path.as_str(), f)).collect();
    let added = now
        .keys()
        .filter(|p| !locked.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    let missing = locked
        .keys()
        .filter(|p| !now.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    let changed = now
        .iter()
        .filter_map(|(p, f)| {
            let l = locked.get(p)?;
            let differs = l.size != f.size || (full && l.sha256 != f.sha256);
            differs.then(|| ChangedFile {
                path: p.to_string(),
                locked_size: l.size,
                locked_sha256: l.sha256.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
            })
        })
        .collect();
    Ok(VerifyReport {
        dir: dir.display().to_string(),
        lock_file: lock_file.display().to_string(),
        lock_root_hash: lock.root_hash.clone(),
        root_hash: if full {
            root_hash(&current)
        } else {
            String::new()
        },
        files: current.len() as u64,
        bytes: current.iter().map(|f| f.size).sum(),
        full,
        added,
        missing,
        changed,
    })
}

/// Locks `dir` with the defaults (`case_id`, `image`, auto-detected manifest, no waiver, no
/// force) and the system clock and user: the convenience form for tools and tests.
pub fn lock(dir: &Path, lock_file: &Path, note: &str) -> Result<Lock> {
    let mut opts = super::LockOptions::new(dir);
    opts.lock_file = lock_file.to_path_buf();
    opts.note = note.to_string();
    Ok(super::lock_set(dir, &opts, &crate::world::SystemWorld::default())?.lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        let files = vec![
            LockedFile {
                path: "a b.txt".into(),
                size: 3,
                sha256: crate::hash::sha256_hex(b"abc"),
            },
            LockedFile {
                path: "images/x.png".into(),
                size: 0,
                sha256: crate::hash::sha256_hex(b""),
            },
        ];
        Lock {
            format: FORMAT_VERSION.into(),
            algorithm: "sha256".into(),
            root_hash: root_hash(&files),
            manifest: "manifest.csv".into(),
            manifest_sha256: "0".repeat(64),
            cases: 2,
            prevalence: [(
                "finding".to_string(),
                LabelCount {
                    positive: 1,
                    total: 2,
                },
            )]
            .into(),
            deid_screen: "waived".into(),
            waiver: Some("public phantom".into()),
            decode_preflight: Some("pass".into()),
            created_by: "qa".into(),
            created: "2026-01-01T00:00:00Z".into(),
            note: "first".into(),
            files,
            history: vec!["2025-12-01T00:00:00Z  qa  root abc  note: old".into()],
        }
    }

    #[test]
    fn render_parse_round_trip() {
        let l = sample();
        let text = l.render();
        assert_eq!(Lock::parse(&text, Path::new("LOCK")).unwrap(), l);
        assert!(text.contains(&format!(
            "{}  3  a b.txt\n",
            crate::hash::sha256_hex(b"abc")
        )));
    }

    #[test]
    fn root_hash_is_sha256_of_the_documented_lines() {
        let l = sample();
        let mut s = String::new();
        for f in &l.files {
            s.push_str(&format!("{}\0{}\0{}\n", f.path, f.size, f.sha256));
        }
        assert_eq!(root_hash(&l.files), crate::hash::sha256_hex(s.as_bytes()));
    }

    #[test]
    fn an_edited_file_line_is_caught_by_the_root() {
        let text = sample().render().replace("  3  a b.txt", "  4  a b.txt");
        let e = Lock::parse(&text, Path::new("LOCK"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("root hash does not match"), "{e}");
    }
}
