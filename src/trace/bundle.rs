//! The evidence bundle on disk: file names, `cases.parquet`, and `SHA256SUMS`.
//!
//! # Layout
//!
//! | file | content |
//! |---|---|
//! | `evidence.json` | [`super::Evidence`] |
//! | `cases.parquet` | one row per case (see [`write_cases`]) |
//! | `protocol.yaml` | the protocol exactly as run |
//! | `journal.jsonl` | the harness journal (raw answers as they arrived) |
//! | `junit.xml` | one test case per acceptance criterion |
//! | `report.*` | PDF, Typst source, HTML, Markdown renderings |
//! | `SHA256SUMS` | `sha256sum`-compatible list of every other file (sorted) |
//! | `signatures/` | detached signatures over `SHA256SUMS` (not listed in it) |
//! | `.medgate-lock` | the running `medgate run`'s PID, exclusively locked (not listed) |
//!
//! # Safety
//! A bundle directory is hostile input: `SHA256SUMS` entries must be plain relative paths
//! (no `..`, not absolute) naming regular files, never symlinks; walks never follow links
//! (see [`crate::fsx`]). `run --out` writes only into an empty directory or an existing bundle
//! of the same protocol ([`open_out_dir`]), holding an exclusive lock for the whole run.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::harness::{CaseResult, CaseStatus};

use super::analysis::CaseRow;

/// `evidence.json`.
pub const EVIDENCE_FILE: &str = "evidence.json";
/// `cases.parquet`.
pub const CASES_FILE: &str = "cases.parquet";
/// `protocol.yaml`.
pub const PROTOCOL_FILE: &str = "protocol.yaml";
/// `junit.xml`.
pub const JUNIT_FILE: &str = "junit.xml";
/// `SHA256SUMS`.
pub const SUMS_FILE: &str = "SHA256SUMS";
/// Signature directory.
pub const SIGNATURES_DIR: &str = "signatures";

fn pe(path: &Path, e: PolarsError) -> Error {
    Error::Internal(format!("{}: {e}", path.display()))
}

fn status_str(s: &CaseStatus) -> &'static str {
    match s {
        CaseStatus::Evaluated => "evaluated",
        CaseStatus::Equivocal => "equivocal",
        CaseStatus::NotEvaluated => "not_evaluated",
    }
}

/// Writes `cases.parquet`: case_id, image_sha256, label, one column per subgroup attribute
/// (named `attr:<name>`), status, answer, score, score_source, prediction (score >=
/// threshold; null when not evaluated), raw, error, attempts, latency_ms. Rows are in
/// manifest order.
pub fn write_cases(
    path: &Path,
    results: &[CaseResult],
    labels: &[bool],
    attributes: &BTreeMap<String, Vec<String>>,
    threshold: f64,
    decode: &[Option<String>],
) -> Result<()> {
    let mut cols: Vec<Column> = vec![
        Column::new(
            "case_id".into(),
            results
                .iter()
                .map(|r| r.case_id.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "image_sha256".into(),
            results
                .iter()
                .map(|r| r.image_sha256.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new("label".into(), labels.to_vec()),
    ];
    for (name, vals) in attributes {
        cols.push(Column::new(format!("attr:{name}").into(), vals.clone()));
    }
    fn pred(r: &CaseResult) -> Option<&crate::model::Prediction> {
        r.prediction.as_ref()
    }
    cols.push(Column::new(
        "status".into(),
        results
            .iter()
            .map(|r| status_str(&r.status))
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "answer".into(),
        results
            .iter()
            .map(|r| {
                pred(r).map(|p| {
                    serde_json::to_value(p.answer)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                })
            })
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "score".into(),
        results
            .iter()
            .map(|r| pred(r).map(|p| p.score))
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "score_source".into(),
        results
            .iter()
            .map(|r| {
                pred(r).map(|p| {
                    serde_json::to_value(p.score_source)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                })
            })
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "prediction".into(),
        results
            .iter()
            .map(|r| match r.status {
                CaseStatus::Evaluated => pred(r).map(|p| p.score >= threshold),
                _ => None,
            })
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "raw".into(),
        results
            .iter()
            .map(|r| pred(r).map(|p| p.raw.clone()))
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "error".into(),
        results.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "attempts".into(),
        results
            .iter()
            .map(|r| pred(r).map(|p| p.attempts))
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "latency_ms".into(),
        results.iter().map(|r| r.latency_ms).collect::<Vec<_>>(),
    ));
    // How each DICOM image was rendered for the model (VOI actually applied, frame,
    // inversion); empty for PNG/JPEG.
    cols.push(Column::new(
        "decode".into(),
        (0..results.len())
            .map(|i| decode.get(i).cloned().flatten())
            .collect::<Vec<Option<String>>>(),
    ));
    let mut df = DataFrame::new_infer_height(cols).map_err(|e| pe(path, e))?;
    crate::table::write_table(path, &mut df)
}

/// Reads `cases.parquet` back into the rows the analysis needs.
pub fn read_cases(path: &Path) -> Result<Vec<CaseRow>> {
    let df = crate::table::read_table(path)?;
    let bad = |what: &str| Error::input(format!("{}: {what}", path.display()));
    let s = |name: &str| -> Result<Vec<Option<String>>> {
        let c = df
            .column(name)
            .map_err(|_| bad(&format!("missing column `{name}`")))?;
        let c = c.cast(&DataType::String).map_err(|e| pe(path, e))?;
        let ca = c.str().map_err(|e| pe(path, e))?;
        Ok(ca.iter().map(|v| v.map(String::from)).collect())
    };
    let ids = s("case_id")?;
    let labels: Vec<Option<bool>> = df
        .column("label")
        .map_err(|_| bad("missing column `label`"))?
        .bool()
        .map_err(|e| pe(path, e))?
        .iter()
        .collect();
    let status = s("status")?;
    let errors = s("error")?;
    let scores: Vec<Option<f64>> = df
        .column("score")
        .map_err(|_| bad("missing column `score`"))?
        .cast(&DataType::Float64)
        .map_err(|e| pe(path, e))?
        .f64()
        .map_err(|e| pe(path, e))?
        .iter()
        .collect();
    let mut attrs: Vec<(String, Vec<Option<String>>)> = Vec::new();
    for name in df.get_column_names() {
        if let Some(a) = name.strip_prefix("attr:") {
            attrs.push((a.to_string(), s(name)?));
        }
    }
    let mut rows = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let status = match status[i].as_deref() {
            Some("evaluated") => CaseStatus::Evaluated,
            Some("equivocal") => CaseStatus::Equivocal,
            Some("not_evaluated") => CaseStatus::NotEvaluated,
            other => return Err(bad(&format!("row {}: unknown status {other:?}", i + 1))),
        };
        rows.push(CaseRow {
            case_id: ids[i]
                .clone()
                .ok_or_else(|| bad(&format!("row {}: empty case_id", i + 1)))?,
            label: labels[i].ok_or_else(|| bad(&format!("row {}: empty label", i + 1)))?,
            status,
            score: scores[i],
            error: errors[i].clone(),
            attributes: attrs
                .iter()
                .map(|(n, v)| (n.clone(), v[i].clone().unwrap_or_default()))
                .collect(),
        });
    }
    Ok(rows)
}

/// File holding the PID of the `medgate run` writing the bundle (exclusively locked).
pub const LOCK_FILE: &str = ".medgate-lock";

/// Top-level names that are not bundle content (never listed in `SHA256SUMS`).
const NOT_CONTENT: [&str; 3] = [SUMS_FILE, SIGNATURES_DIR, LOCK_FILE];

/// Every file in the bundle except `SHA256SUMS`, `signatures/` and the lock file, as sorted
/// relative paths with '/' separators. A symlink anywhere in the bundle is an error (a bundle
/// never contains links, and sealing one would seal whatever it points to).
pub fn bundle_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in crate::fsx::walk(dir, &NOT_CONTENT)? {
        match e {
            crate::fsx::Entry::File(f) => out.push(f),
            crate::fsx::Entry::Symlink(f) | crate::fsx::Entry::Other(f) => {
                return Err(Error::input_hint(
                    format!(
                        "{}: `{f}` is a symlink or special file; a bundle holds regular files only",
                        dir.display()
                    ),
                    "remove it; medgate never seals or follows links inside a bundle",
                ));
            }
        }
    }
    Ok(out)
}

/// Writes `SHA256SUMS` (format of `sha256sum`: `<hex>  <path>`); returns the files listed.
pub fn write_sha256sums(dir: &Path) -> Result<Vec<String>> {
    let files = bundle_files(dir)?;
    let mut text = String::new();
    for f in &files {
        let (h, _) = sha256_inside(dir, f)?;
        text.push_str(&format!("{h}  {f}\n"));
    }
    crate::fsx::write_inside(dir, Path::new(SUMS_FILE), text.as_bytes())?;
    Ok(files)
}

/// SHA-256 of `dir/rel`, opened without following symlinks.
fn sha256_inside(dir: &Path, rel: &str) -> Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let p = dir.join(rel);
    let mut f = crate::fsx::open_inside(dir, Path::new(rel))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(&p, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

/// One problem found checking `SHA256SUMS`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SumProblem {
    /// Relative path.
    pub path: String,
    /// `changed`, `missing`, `unlisted`, `unsafe path` (`..`, absolute), `symlink`,
    /// `not a file`, or `malformed line N`.
    pub problem: String,
}

fn problem(path: impl Into<String>, what: impl Into<String>) -> SumProblem {
    SumProblem {
        path: path.into(),
        problem: what.into(),
    }
}

/// Checks every file against `SHA256SUMS`: changed, missing and unlisted files, and entries
/// that are not plain relative paths to regular files (`..`, absolute paths, symlinks) or not
/// well-formed lines: each is a problem, never something read.
pub fn check_sha256sums(dir: &Path) -> Result<Vec<SumProblem>> {
    let text = crate::fsx::read_inside_to_string(dir, Path::new(SUMS_FILE))?;
    let mut listed = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ok_hash = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
        match line.split_once("  ") {
            Some((h, f)) if ok_hash(h) => {
                if let Some(why) = crate::fsx::check_rel(Path::new(f)) {
                    problems.push(problem(
                        crate::fsx::printable(f),
                        format!("unsafe path ({why})"),
                    ));
                } else if listed
                    .insert(f.to_string(), h.to_ascii_lowercase())
                    .is_some()
                {
                    problems.push(problem(f, format!("listed twice (line {})", i + 1)));
                }
            }
            _ => problems.push(problem(
                SUMS_FILE,
                format!("malformed line {} (not `<sha256>  <path>`)", i + 1),
            )),
        }
    }
    for (f, h) in &listed {
        if NOT_CONTENT
            .iter()
            .any(|n| f == n || f.starts_with(&format!("{n}/")))
        {
            problems.push(problem(f, "unsafe path (not bundle content)"));
            continue;
        }
        match crate::fsx::safe_join(dir, Path::new(f)) {
            Err(_) => problems.push(problem(f, "symlink")),
            Ok(fp) => match std::fs::symlink_metadata(&fp) {
                Err(_) => problems.push(problem(f, "missing")),
                Ok(m) if m.file_type().is_symlink() => problems.push(problem(f, "symlink")),
                Ok(m) if !m.is_file() => problems.push(problem(f, "not a file")),
                Ok(_) => match sha256_inside(dir, f) {
                    Ok((actual, _)) if &actual == h => {}
                    Ok(_) => problems.push(problem(f, "changed")),
                    Err(_) => problems.push(problem(f, "symlink")),
                },
            },
        }
    }
    for e in crate::fsx::walk(dir, &NOT_CONTENT)? {
        match e {
            crate::fsx::Entry::File(f) => {
                if !listed.contains_key(&f) {
                    problems.push(problem(f, "unlisted"));
                }
            }
            crate::fsx::Entry::Symlink(f) => {
                if !listed.contains_key(&f) {
                    problems.push(problem(f, "symlink"));
                }
            }
            crate::fsx::Entry::Other(f) => problems.push(problem(f, "not a file")),
        }
    }
    Ok(problems)
}

/// The exclusive lock on a bundle directory held by a running `medgate run`; released when
/// dropped (and by the operating system if the process dies).
#[derive(Debug)]
pub struct BundleLock {
    _file: std::fs::File,
}

/// Takes the exclusive lock on `dir` (creating `.medgate-lock` holding this process' PID).
/// A second run into the same directory is refused, naming the holder's PID.
pub fn lock_bundle(dir: &Path) -> Result<BundleLock> {
    use std::io::{Read, Seek, Write};
    let p = crate::fsx::safe_join(dir, Path::new(LOCK_FILE))?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .map_err(|e| Error::io(&p, e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = crate::fsx::prefix(holder.trim(), 20).to_string();
            return Err(Error::input_hint(
                format!(
                    "{}: another `medgate run` (PID {}) is writing this bundle",
                    dir.display(),
                    if holder.is_empty() {
                        "unknown"
                    } else {
                        &holder
                    }
                ),
                "wait for it to finish, or use another --out directory",
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&p, e)),
    }
    f.set_len(0).map_err(|e| Error::io(&p, e))?;
    f.rewind().map_err(|e| Error::io(&p, e))?;
    writeln!(f, "{}", std::process::id()).map_err(|e| Error::io(&p, e))?;
    f.sync_data().map_err(|e| Error::io(&p, e))?;
    Ok(BundleLock { _file: f })
}

/// Prepares `dir` as the output of a run of `protocol_id`: creates it when absent, takes the
/// exclusive lock, and accepts only an empty directory or an existing bundle of the same
/// protocol (its journal's header names it). A directory holding a symlink is refused. A
/// signed bundle is refused unless `force`, which moves the old signatures aside into
/// `signatures/superseded-N/` and returns a warning saying so.
pub fn open_out_dir(
    dir: &Path,
    protocol_id: &str,
    force: bool,
) -> Result<(BundleLock, Vec<String>)> {
    if crate::fsx::is_symlink(dir) && !dir.is_dir() {
        return Err(Error::input(format!(
            "{}: a symlink that does not point to a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let lock = lock_bundle(dir)?;
    let refuse = |why: String| {
        Error::input_hint(
            format!(
                "{}: refusing to write the bundle here: {why}",
                dir.display()
            ),
            "--out must be an empty directory, or the bundle of an earlier run of this protocol",
        )
    };
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            names.push(name);
        }
    }
    let mut warnings = Vec::new();
    if names.is_empty() {
        return Ok((lock, warnings));
    }
    let journal = crate::harness::journal::JOURNAL_FILE;
    let header: Option<crate::harness::JournalHeader> =
        crate::fsx::read_inside_to_string(dir, Path::new(journal))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| serde_json::from_str(l).ok()));
    match header {
        None => {
            return Err(refuse(format!(
                "it is not empty ({} entries) and holds no medgate journal",
                names.len()
            )));
        }
        Some(h) if h.protocol != protocol_id => {
            return Err(refuse(format!(
                "it holds a bundle of protocol `{}`, not `{protocol_id}`",
                crate::fsx::printable(&h.protocol)
            )));
        }
        Some(_) => {}
    }
    for e in crate::fsx::walk(dir, &[LOCK_FILE])? {
        if let crate::fsx::Entry::Symlink(f) | crate::fsx::Entry::Other(f) = e {
            return Err(refuse(format!(
                "`{}` is a symlink or special file",
                crate::fsx::printable(&f)
            )));
        }
    }
    let sigs = crate::fsx::walk(dir, &[])?
        .into_iter()
        .filter_map(|e| match e {
            crate::fsx::Entry::File(f)
                if f.starts_with("signatures/") && f.matches('/').count() == 1 =>
            {
                Some(f)
            }
            _ => None,
        })
        .collect::<Vec<_>>();
    if !sigs.is_empty() {
        if !force {
            return Err(Error::input_hint(
                format!(
                    "{}: the bundle is signed ({} signature(s)); rerunning would invalidate them",
                    dir.display(),
                    sigs.len()
                ),
                "use a new --out directory, or pass --force to move the signatures aside",
            ));
        }
        let mut n = 1;
        let aside = loop {
            let rel = format!("{SIGNATURES_DIR}/superseded-{n}");
            if std::fs::symlink_metadata(dir.join(&rel)).is_err() {
                break rel;
            }
            n += 1;
        };
        crate::fsx::create_dir_inside(dir, Path::new(&aside))?;
        for f in &sigs {
            let name = f.trim_start_matches("signatures/");
            let to = dir.join(&aside).join(name);
            std::fs::rename(dir.join(f), &to).map_err(|e| Error::io(&to, e))?;
        }
        warnings.push(format!(
            "--force: {} signature(s) of the earlier run moved to {aside}/; they do not cover this run",
            sigs.len()
        ));
    }
    Ok((lock, warnings))
}
