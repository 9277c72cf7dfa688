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

/// Every file in the bundle except `SHA256SUMS` and `signatures/`, as sorted relative paths
/// with '/' separators.
pub fn bundle_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .map_err(|_| Error::Internal("path outside bundle".into()))?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if rel == SUMS_FILE || rel == SIGNATURES_DIR {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out)?;
            } else {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Writes `SHA256SUMS` (format of `sha256sum`: `<hex>  <path>`); returns the files listed.
pub fn write_sha256sums(dir: &Path) -> Result<Vec<String>> {
    let files = bundle_files(dir)?;
    let mut text = String::new();
    for f in &files {
        let (h, _) = crate::hash::sha256_file(&dir.join(f))?;
        text.push_str(&format!("{h}  {f}\n"));
    }
    let p = dir.join(SUMS_FILE);
    std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    Ok(files)
}

/// One problem found checking `SHA256SUMS`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SumProblem {
    /// Relative path.
    pub path: String,
    /// `changed`, `missing` or `unlisted`.
    pub problem: String,
}

/// Checks every file against `SHA256SUMS`: changed, missing and unlisted files.
pub fn check_sha256sums(dir: &Path) -> Result<Vec<SumProblem>> {
    let p = dir.join(SUMS_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let mut listed = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let (h, f) = line.split_once("  ").ok_or_else(|| {
            Error::input(format!(
                "{}:{}: not a `<sha256>  <path>` line",
                p.display(),
                i + 1
            ))
        })?;
        listed.insert(f.to_string(), h.to_string());
    }
    let mut problems = Vec::new();
    for (f, h) in &listed {
        let fp = dir.join(f);
        if !fp.is_file() {
            problems.push(SumProblem {
                path: f.clone(),
                problem: "missing".into(),
            });
        } else if &crate::hash::sha256_file(&fp)?.0 != h {
            problems.push(SumProblem {
                path: f.clone(),
                problem: "changed".into(),
            });
        }
    }
    for f in bundle_files(dir)? {
        if !listed.contains_key(&f) {
            problems.push(SumProblem {
                path: f,
                problem: "unlisted".into(),
            });
        }
    }
    Ok(problems)
}
