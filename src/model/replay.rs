//! The `replay` backend: recorded predictions for a model that cannot run here (a vendor's
//! cloud model, a device on another network).
//!
//! Why so strict: replayed scores are evidence produced elsewhere, so the only guarantees
//! medgate can give are that they are exactly the cases of the locked golden set (no case
//! missing, none extra, none twice), that each score is a number in [0, 1], and that the file
//! is the one the protocol pinned (its SHA-256 is recorded as the model hash). Anything else
//! is refused before any statistic is computed.
//!
//! # Format
//!
//! CSV (header row) or Parquet with columns `case_id`, `score` (a number in [0, 1]; higher
//! means more likely positive) and optionally `answer` (`yes`/`positive`/`1`/`true`,
//! `no`/`negative`/`0`/`false`, or `equivocal`, case-insensitive). Case IDs are read as text,
//! so `007` stays `007` in CSV. Without an answer column (or with an empty cell), the answer
//! is positive when score >= 0.5, the same convention as the `candle-clip` backend; the
//! protocol's threshold is applied later by the harness either way.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use polars::prelude::{Column, DataType};

use crate::error::{Error, Result};
use crate::model::{Answer, Backend, BackendInfo, CaseError, CaseInput, Prediction, ScoreSource};
use crate::protocol::ReplaySpec;
use crate::table::TableFormat;

/// How many IDs an error message lists before "and N more".
const SHOW_IDS: usize = 5;

/// One recorded row.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    score: f64,
    answer: Answer,
    raw: String,
}

/// The `replay` backend.
#[derive(Debug)]
pub struct ReplayBackend {
    rows: HashMap<String, Row>,
    sha256: String,
    path_shown: String,
    has_answer_column: bool,
}

fn list_ids<'a>(ids: impl IntoIterator<Item = &'a String>, total: usize) -> String {
    let shown: Vec<&str> = ids.into_iter().take(SHOW_IDS).map(String::as_str).collect();
    let more = total.saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Parses an answer cell.
fn parse_answer(s: &str) -> Option<Answer> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "positive" | "1" | "true" => Some(Answer::Positive),
        "no" | "negative" | "0" | "false" => Some(Answer::Negative),
        "equivocal" => Some(Answer::Equivocal),
        _ => None,
    }
}

/// The column's cells as text (None for null).
fn column_strings(col: &Column, path: &Path) -> Result<Vec<Option<String>>> {
    let c = col
        .cast(&DataType::String)
        .map_err(|e| Error::input(format!("{}: column `{}`: {e}", path.display(), col.name())))?;
    let s = c
        .str()
        .map_err(|e| Error::input(format!("{}: column `{}`: {e}", path.display(), col.name())))?;
    Ok(s.iter().map(|v| v.map(str::to_string)).collect())
}

/// The score column's cells as numbers; an error text per cell that is not one.
fn column_scores(col: &Column, path: &Path) -> Result<Vec<std::result::Result<f64, String>>> {
    let parse = |v: Option<&str>| match v.map(str::trim) {
        None | Some("") => Err("empty".to_string()),
        Some(t) => t
            .parse::<f64>()
            .map_err(|_| format!("`{t}` is not a number")),
    };
    if col.dtype() == &DataType::String {
        return Ok(column_strings(col, path)?
            .iter()
            .map(|v| parse(v.as_deref()))
            .collect());
    }
    let c = col.cast(&DataType::Float64).map_err(|e| {
        Error::input_hint(
            format!(
                "{}: column `score` ({}) is not numeric: {e}",
                path.display(),
                col.dtype()
            ),
            "scores must be numbers in [0, 1]",
        )
    })?;
    let f = c
        .f64()
        .map_err(|e| Error::input(format!("{}: column `score`: {e}", path.display())))?;
    Ok(f.iter()
        .map(|v| v.ok_or_else(|| "empty".to_string()))
        .collect())
}

impl ReplayBackend {
    /// Reads and checks the predictions file against the golden set's case IDs.
    pub fn load(
        spec: &ReplaySpec,
        protocol_dir: &Path,
        expected_case_ids: &[String],
    ) -> Result<Self> {
        let path = protocol_dir.join(&spec.predictions);
        let shown = spec.predictions.display().to_string();
        let (sha256, _) = crate::hash::sha256_file(&path)?;
        if let Some(pinned) = &spec.sha256
            && !pinned.trim().eq_ignore_ascii_case(&sha256)
        {
            return Err(Error::input_hint(
                format!("{shown}: SHA-256 {sha256} differs from the pinned model.sha256 {pinned}"),
                "the predictions file changed after the protocol was approved; restore it or revise the protocol",
            ));
        }
        let format = TableFormat::from_path(&path)?;
        let df = match format {
            // Strings so that IDs like `007` survive; scores are parsed below.
            TableFormat::Csv => crate::table::read_table_as_strings(&path)?,
            TableFormat::Parquet => crate::table::read_table(&path)?,
        };
        let where_row = |i: usize| match format {
            TableFormat::Csv => format!("{shown} line {}", i + 2),
            TableFormat::Parquet => format!("{shown} row {}", i + 1),
        };
        let column = |name: &str| {
            df.column(name).map_err(|_| {
                Error::input_hint(
                    format!(
                        "{shown}: no `{name}` column (found: {})",
                        crate::table::column_names(&df).join(", ")
                    ),
                    "a predictions file needs columns case_id, score and optionally answer",
                )
            })
        };
        let ids = column_strings(column("case_id")?, &path)?;
        let scores = column_scores(column("score")?, &path)?;
        let answers = match df.column("answer") {
            Ok(c) => Some(column_strings(c, &path)?),
            Err(_) => None,
        };

        let mut rows: HashMap<String, Row> = HashMap::with_capacity(ids.len());
        let mut duplicates: Vec<String> = Vec::new();
        for (i, (id, score)) in ids.iter().zip(&scores).enumerate() {
            let id = match id.as_deref().map(str::trim) {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => {
                    return Err(Error::input_hint(
                        format!("{}: empty case_id", where_row(i)),
                        "every row needs a case ID",
                    ));
                }
            };
            let score = match score {
                Ok(s) if s.is_finite() && (0.0..=1.0).contains(s) => *s,
                Ok(s) => {
                    return Err(Error::input_hint(
                        format!(
                            "{}: case {id}: score {s} is not a finite number in [0, 1]",
                            where_row(i)
                        ),
                        "record probabilities (e.g. a softmax or sigmoid output), not logits or NaN",
                    ));
                }
                Err(why) => {
                    return Err(Error::input_hint(
                        format!("{}: case {id}: score is {why}", where_row(i)),
                        "every case needs a numeric score in [0, 1]",
                    ));
                }
            };
            let cell = answers
                .as_ref()
                .and_then(|a| a[i].clone())
                .filter(|s| !s.trim().is_empty());
            let answer = match &cell {
                Some(text) => parse_answer(text).ok_or_else(|| {
                    Error::input_hint(
                        format!(
                            "{}: case {id}: answer `{text}` is not recognised",
                            where_row(i)
                        ),
                        "use yes/no, positive/negative, 1/0, true/false or equivocal",
                    )
                })?,
                None if score >= 0.5 => Answer::Positive,
                None => Answer::Negative,
            };
            let raw = cell.unwrap_or_else(|| score.to_string());
            if rows
                .insert(id.clone(), Row { score, answer, raw })
                .is_some()
            {
                duplicates.push(format!("{id} ({})", where_row(i)));
            }
        }
        if !duplicates.is_empty() {
            return Err(Error::input_hint(
                format!(
                    "{shown}: duplicate case IDs: {}",
                    list_ids(&duplicates, duplicates.len())
                ),
                "each case must have exactly one recorded prediction",
            ));
        }
        let expected: BTreeSet<&String> = expected_case_ids.iter().collect();
        let got: BTreeSet<&String> = rows.keys().collect();
        let missing: Vec<&String> = expected.difference(&got).copied().collect();
        let extra: Vec<&String> = got.difference(&expected).copied().collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!(
                    "{} golden-set case(s) missing: {}",
                    missing.len(),
                    list_ids(missing.iter().copied(), missing.len())
                ));
            }
            if !extra.is_empty() {
                parts.push(format!(
                    "{} case(s) not in the golden set: {}",
                    extra.len(),
                    list_ids(extra.iter().copied(), extra.len())
                ));
            }
            return Err(Error::input_hint(
                format!(
                    "{shown}: case IDs do not match the golden set: {}",
                    parts.join("; ")
                ),
                "replayed predictions must cover exactly the locked golden set's cases",
            ));
        }
        Ok(ReplayBackend {
            rows,
            sha256,
            path_shown: shown,
            has_answer_column: answers.is_some(),
        })
    }
}

impl Backend for ReplayBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: crate::protocol::BackendKind::Replay,
            model_sha256: Some(self.sha256.clone()),
            model_name: self.path_shown.clone(),
            settings: serde_json::json!({
                "answer_column": self.has_answer_column,
                "cases": self.rows.len(),
                "predictions": self.path_shown,
            }),
        }
    }

    fn batch_size(&self) -> usize {
        1024
    }

    fn predict_batch(
        &self,
        cases: &[CaseInput],
    ) -> Vec<std::result::Result<Prediction, CaseError>> {
        cases
            .iter()
            .map(|c| match self.rows.get(&c.case_id) {
                Some(r) => Ok(Prediction {
                    raw: r.raw.clone(),
                    score: r.score,
                    answer: r.answer,
                    score_source: ScoreSource::Replay,
                    attempts: 1,
                }),
                None => Err(CaseError {
                    reason: format!("case {} is not in {}", c.case_id, self.path_shown),
                    attempts: 0,
                }),
            })
            .collect()
    }
}
