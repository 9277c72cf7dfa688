//! Reading production logs: CSV and Parquet through polars, JSON lines through serde_json
//! (line by line, so a bad line is named by its number; polars' JSON reader would need the
//! `json` feature, which rebuilds polars-core with `dtype-struct` for every build).
//!
//! Each row is validated here and either kept (possibly with its label or score set aside and
//! the reason counted) or excluded with a reason: nothing is dropped silently. File-level
//! problems (missing required column, unreadable file) are input errors (exit 2).
//!
//! Built for ten million rows (issue 16): cells are read in place from polars' columns (no
//! `String` per cell; a value is spelled out only to name a bad cell), rows are validated in
//! parallel blocks merged in file order, a row holds its case ID as an index into one shared
//! buffer ([`CaseIds`]) and its attribute values as codes in one flat table indexed the same way
//! ([`LogRead::attrs`]: a row is 40 bytes, with no allocation of its own), and
//! duplicate case IDs are found by sorting row hashes rather than probing a hash set.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::protocol::monitoring::LogColumns;

/// What the model produced for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOutcome {
    /// A score (or a parsed positive/negative answer).
    Evaluated,
    /// An answer that is neither positive nor negative.
    Equivocal,
    /// No score and no answer: the model did not answer.
    NotEvaluated,
}

/// One accepted log row. Small and allocation-free: the case ID is an index into
/// [`LogRead::cases`] (one shared buffer), and the same index finds the row's attribute codes
/// ([`LogRead::attrs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// Case ID, as an index into [`LogRead::cases`] (see [`LogRead::case_id`]).
    pub case: usize,
    /// Model score.
    pub score: Option<f64>,
    /// Called positive (score >= threshold, or a positive answer); `None` unless evaluated.
    pub positive: Option<bool>,
    /// Outcome.
    pub outcome: RowOutcome,
    /// Late label, when present and valid.
    pub label: Option<bool>,
}

/// The case IDs of the accepted rows, in one buffer (a `String` per row would cost one
/// allocation per row and about 40 bytes of overhead each).
#[derive(Debug, Clone, Default)]
pub struct CaseIds {
    text: String,
    ends: Vec<usize>,
}

impl CaseIds {
    /// Adds an ID; returns its index.
    pub fn push(&mut self, id: &str) -> usize {
        self.text.push_str(id);
        self.ends.push(self.text.len());
        self.ends.len() - 1
    }

    /// The ID of index `i` (empty when out of range).
    pub fn get(&self, i: usize) -> &str {
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..end]
    }
}

/// A row as the state file keeps it (attribute values spelled out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRow {
    /// See [`LogRow::ts_ms`].
    pub ts_ms: i64,
    /// Case ID.
    pub case_id: String,
    /// Score.
    pub score: Option<f64>,
    /// Called positive.
    pub positive: Option<bool>,
    /// Outcome.
    pub outcome: RowOutcome,
    /// Label.
    pub label: Option<bool>,
    /// Attribute values in attribute order.
    pub attrs: Vec<String>,
}

/// One problem with a row: where, which case, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct RowProblem {
    /// File as given.
    pub file: String,
    /// 1-based data row (CSV/Parquet, header excluded) or line (JSON lines).
    pub row: u64,
    /// Case ID, when readable.
    pub case_id: String,
    /// Reason code (see [`Reason`]).
    pub reason: String,
    /// Detail, e.g. the offending value.
    pub detail: String,
}

/// Reason codes for excluded rows and set-aside values.
pub struct Reason;

impl Reason {
    /// Row from another model version (excluded).
    pub const OTHER_MODEL: &'static str = "other_model";
    /// Timestamp missing or unparseable (excluded).
    pub const BAD_TIMESTAMP: &'static str = "bad_timestamp";
    /// Case ID missing (excluded).
    pub const MISSING_CASE_ID: &'static str = "missing_case_id";
    /// Score not a finite number (excluded).
    pub const BAD_SCORE: &'static str = "bad_score";
    /// Same case ID as an earlier row (excluded).
    pub const DUPLICATE_CASE: &'static str = "duplicate_case_id";
    /// Label not 0/1 (row kept, label ignored).
    pub const BAD_LABEL: &'static str = "bad_label";
    /// Row at or before the state's watermark (already processed, or arrived late).
    pub const SEEN: &'static str = "already_processed";
}

/// What the reader needs to know beyond the column names.
#[derive(Debug, Clone)]
pub struct LogSpec {
    /// Column names.
    pub columns: LogColumns,
    /// Subgroup attribute columns, in order.
    pub attributes: Vec<String>,
    /// Attributes a monitored statistic needs (missing column: input error).
    pub required_attributes: Vec<String>,
    /// The released model's hash; rows of any other hash are excluded.
    pub model_sha256: Option<String>,
    /// The released operating point.
    pub threshold: f64,
    /// Answer rule (positive, negative regexes, case-insensitive).
    pub answer_positive: String,
    /// See `answer_positive`.
    pub answer_negative: String,
}

/// Everything read from the log files.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    /// Accepted rows in file order.
    pub rows: Vec<LogRow>,
    /// Rows read.
    pub rows_read: u64,
    /// Excluded rows by reason.
    pub excluded: BTreeMap<String, u64>,
    /// Kept rows with a value set aside, by reason.
    pub set_aside: BTreeMap<String, u64>,
    /// Every problem (excluded rows and set-aside values).
    pub problems: Vec<RowProblem>,
    /// Columns present that the plan does not use.
    pub ignored_columns: Vec<String>,
    /// Protocol attributes with no column in some file (their values are empty).
    pub missing_attributes: Vec<String>,
    /// Rows whose timestamp is earlier than the previous row's (sorted stably before use).
    pub unsorted_rows: u64,
    /// Rows with the same timestamp as the previous row.
    pub duplicate_timestamps: u64,
    /// Per attribute: the distinct values seen, indexed by the codes of [`LogRead::attrs`].
    pub levels: Vec<Vec<String>>,
    /// Case IDs of the rows, indexed by [`LogRow::case`].
    pub cases: CaseIds,
    /// Attribute codes of the rows, `levels.len()` per row, in the order of [`LogRow::case`]
    /// (see [`LogRead::attrs`]).
    pub codes: Vec<u32>,
    dict: Vec<std::collections::HashMap<String, u32>>,
    /// Per attribute: the short values among the levels as one integer each, with their code
    /// (see [`LogRead::intern`]).
    short: Vec<Vec<(u128, u32)>>,
}

/// Examples kept in [`LogRead::problems`] (every problem is counted; this bounds the list).
pub const MAX_PROBLEMS: usize = 1000;

impl LogRead {
    fn new(attributes: usize) -> Self {
        LogRead {
            levels: vec![Vec::new(); attributes],
            dict: vec![std::collections::HashMap::new(); attributes],
            short: vec![Vec::new(); attributes],
            ..LogRead::default()
        }
    }

    /// The index of value `v` of attribute `a`, adding it when new.
    pub fn intern(&mut self, a: usize, v: &str) -> u32 {
        // Attributes have few levels: a short scan beats hashing the value, and a value of at
        // most 15 bytes is compared as one integer.
        let levels = &self.levels[a];
        let key = crate::stats::subgroup::short_key(v);
        if levels.len() <= 16 {
            let hit = match key {
                Some(k) => self.short[a].iter().find(|e| e.0 == k).map(|e| e.1),
                None => levels.iter().position(|l| l == v).map(|i| i as u32),
            };
            if let Some(i) = hit {
                return i;
            }
        } else if let Some(i) = self.dict[a].get(v) {
            return *i;
        }
        let i = self.levels[a].len() as u32;
        self.levels[a].push(v.to_string());
        self.dict[a].insert(v.to_string(), i);
        if let Some(k) = key {
            self.short[a].push((k, i));
        }
        i
    }

    /// Appends the rows and accounting of `part` (read after everything already here),
    /// mapping its case IDs and attribute codes into this one's.
    fn merge(&mut self, part: LogRead) {
        let remap: Vec<Vec<u32>> = part
            .levels
            .iter()
            .enumerate()
            .map(|(a, lv)| lv.iter().map(|v| self.intern(a, v)).collect())
            .collect();
        let base = self.cases.ends.len();
        self.cases.text.push_str(&part.cases.text);
        let shift = self.cases.text.len() - part.cases.text.len();
        self.cases
            .ends
            .extend(part.cases.ends.iter().map(|e| e + shift));
        let n = remap.len().max(1);
        self.codes.extend(
            part.codes
                .iter()
                .enumerate()
                .map(|(j, c)| remap[j % n][*c as usize]),
        );
        self.rows.extend(part.rows.into_iter().map(|mut r| {
            r.case += base;
            r
        }));
        self.rows_read += part.rows_read;
        for (k, v) in part.excluded {
            *self.excluded.entry(k).or_insert(0) += v;
        }
        for (k, v) in part.set_aside {
            *self.set_aside.entry(k).or_insert(0) += v;
        }
        let room = MAX_PROBLEMS.saturating_sub(self.problems.len());
        self.problems.extend(part.problems.into_iter().take(room));
    }

    /// The attribute codes of a row, in the order of [`LogSpec::attributes`], as indices into
    /// [`LogRead::levels`] (the empty string when absent).
    pub fn attrs(&self, r: &LogRow) -> &[u32] {
        let n = self.levels.len();
        &self.codes[r.case * n..(r.case + 1) * n]
    }

    /// The case ID of a row.
    pub fn case_id(&self, r: &LogRow) -> &str {
        self.cases.get(r.case)
    }

    /// A row spelled out for the state file.
    pub fn store(&self, r: &LogRow) -> StoredRow {
        StoredRow {
            ts_ms: r.ts_ms,
            case_id: self.case_id(r).to_string(),
            score: r.score,
            positive: r.positive,
            outcome: r.outcome,
            label: r.label,
            attrs: self
                .attrs(r)
                .iter()
                .enumerate()
                .map(|(a, i)| self.levels[a][*i as usize].clone())
                .collect(),
        }
    }
}

/// Parses a timestamp: RFC 3339 (`2026-03-01T08:00:00Z`), or integer seconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// RFC 3339 text (UTC, seconds; milliseconds when not whole) of epoch milliseconds.
pub fn format_timestamp(ms: i64) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) {
        Some(d) if ms % 1000 == 0 => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

/// The cells of one column: a polars string column (CSV, Parquet: borrowed in place, no copy
/// per cell) or the strings of a JSON-lines file.
enum Cells {
    /// The column's chunks as polars read them, with each chunk's first row (not rechunked:
    /// that would copy the column while the frame still holds it).
    Polars(StringChunked, Vec<usize>),
    Owned(Vec<Option<String>>),
}

impl Cells {
    fn polars(ca: StringChunked) -> Self {
        let mut starts = Vec::with_capacity(ca.chunks().len());
        let mut at = 0;
        for len in ca.chunk_lengths() {
            starts.push(at);
            at += len;
        }
        Cells::Polars(ca, starts)
    }
}

/// One polars string chunk.
type StrArray = <StringType as PolarsDataType>::Array;

/// Reads one column's cells in row order: it keeps the chunk that held the last row asked
/// for, so the next row costs a bounds check rather than a search over the chunks and a
/// downcast.
struct Cursor<'a> {
    cells: Option<&'a Cells>,
    arr: Option<&'a StrArray>,
    start: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn new(cells: Option<&'a Cells>) -> Self {
        Cursor {
            cells,
            arr: None,
            start: 0,
            end: 0,
        }
    }

    /// The raw cell of row `i` (`None` when the column is absent or the cell null).
    fn raw(&mut self, i: usize) -> Option<&'a str> {
        match self.cells? {
            Cells::Owned(v) => v.get(i).and_then(|c| c.as_deref()),
            Cells::Polars(ca, starts) => {
                if i < self.start || i >= self.end {
                    let k = starts.partition_point(|s| *s <= i).checked_sub(1)?;
                    let arr = ca.downcast_get(k)?;
                    self.arr = Some(arr);
                    self.start = starts[k];
                    self.end = starts[k] + arr.len();
                    if i >= self.end {
                        return None;
                    }
                }
                self.arr?.get(i - self.start)
            }
        }
    }

    /// Cell `i`, trimmed; `None` when the column is absent or the cell null or blank.
    fn get(&mut self, i: usize) -> Option<&'a str> {
        self.raw(i).map(trim).filter(|s| !s.is_empty())
    }
}

/// The raw cells of one file, as optional strings (scores may come as floats).
struct RawTable {
    height: usize,
    names: Vec<String>,
    cols: BTreeMap<String, Cells>,
    score_f64: Option<Float64Chunked>,
}

fn polars_err(path: &Path, e: PolarsError) -> Error {
    Error::input(format!("{}: {e}", path.display()))
}

fn string_column(path: &Path, c: &Column) -> Result<Cells> {
    let c = c.cast(&DataType::String).map_err(|e| polars_err(path, e))?;
    let ca = c.str().map_err(|e| polars_err(path, e))?;
    Ok(Cells::polars(ca.clone()))
}

fn read_polars(path: &Path, score_col: &str, wanted: &[&str]) -> Result<RawTable> {
    let is_csv = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let df = if is_csv {
        crate::table::read_table_as_strings(path)?
    } else {
        crate::table::read_table(path)?
    };
    let names = crate::table::column_names(&df);
    let mut cols = BTreeMap::new();
    let mut score_f64 = None;
    for name in wanted {
        let Ok(c) = df.column(name) else { continue };
        if *name == score_col && c.dtype().is_float() {
            let c = c
                .cast(&DataType::Float64)
                .map_err(|e| polars_err(path, e))?;
            let ca = c.f64().map_err(|e| polars_err(path, e))?;
            score_f64 = Some(ca.rechunk().into_owned());
            continue;
        }
        if !cols.contains_key(*name) {
            cols.insert(name.to_string(), string_column(path, c)?);
        }
    }
    Ok(RawTable {
        height: df.height(),
        names,
        cols,
        score_f64,
    })
}

fn read_jsonl(path: &Path, wanted: &[&str]) -> Result<RawTable> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut names: Vec<String> = Vec::new();
    let mut cols: BTreeMap<String, Vec<Option<String>>> =
        wanted.iter().map(|w| (w.to_string(), Vec::new())).collect();
    let mut height = 0usize;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| {
                Error::input(format!(
                    "{}:{}:{}: not a JSON object: {e}",
                    path.display(),
                    i + 1,
                    e.column()
                ))
            })?;
        for k in v.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
        for (w, col) in cols.iter_mut() {
            col.push(match v.get(w) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            });
        }
        height += 1;
    }
    // A column is present when any line has the key.
    cols.retain(|k, _| names.contains(k));
    Ok(RawTable {
        height,
        names,
        cols: cols
            .into_iter()
            .map(|(k, v)| (k, Cells::Owned(v)))
            .collect(),
        score_f64: None,
    })
}

/// Rows validated per parallel block.
const ROW_BLOCK: usize = 1 << 18;

/// The columns of one file, looked up once (no name lookup per cell).
struct FileColumns<'a> {
    case: Option<&'a Cells>,
    model: Option<&'a Cells>,
    ts: Option<&'a Cells>,
    score: Option<&'a Cells>,
    answer: Option<&'a Cells>,
    label: Option<&'a Cells>,
    attrs: Vec<Option<&'a Cells>>,
    score_f64: Option<&'a Float64Chunked>,
}

/// Validates rows `range` of one file into a fresh accumulator; also returns each accepted
/// row's 1-based row number.
fn read_block(
    cols: &FileColumns,
    spec: &LogSpec,
    pos: &Regex,
    neg: &Regex,
    file: &str,
    range: std::ops::Range<usize>,
) -> (LogRead, Vec<u64>) {
    let mut out = LogRead::new(spec.attributes.len());
    let mut origin = Vec::with_capacity(range.len());
    out.rows.reserve(range.len());
    out.codes.reserve(range.len() * spec.attributes.len());
    let mut case_c = Cursor::new(cols.case);
    let mut model_c = Cursor::new(cols.model);
    let mut ts_c = Cursor::new(cols.ts);
    let mut score_c = Cursor::new(cols.score);
    let mut answer_c = Cursor::new(cols.answer);
    let mut label_c = Cursor::new(cols.label);
    let mut attr_c: Vec<Cursor> = cols.attrs.iter().map(|c| Cursor::new(*c)).collect();
    for i in range {
        out.rows_read += 1;
        let row = (i + 1) as u64;
        let case_id = case_c.get(i).unwrap_or("");
        let exclude = |out: &mut LogRead, reason: &str, detail: String| {
            *out.excluded.entry(reason.to_string()).or_insert(0) += 1;
            problem(out, file, row, case_id, reason, detail);
        };
        if case_id.is_empty() {
            exclude(&mut out, Reason::MISSING_CASE_ID, String::new());
            continue;
        }
        let model = model_c.get(i).unwrap_or("");
        if let Some(m) = &spec.model_sha256
            && !model.eq_ignore_ascii_case(m)
        {
            exclude(&mut out, Reason::OTHER_MODEL, format!("model {model:?}"));
            continue;
        }
        let t = ts_c.get(i);
        let Some(ts_ms) = t.and_then(parse_timestamp) else {
            let t = t.unwrap_or("");
            exclude(&mut out, Reason::BAD_TIMESTAMP, format!("{t:?}"));
            continue;
        };
        let score = match cols.score_f64 {
            Some(v) => v.get(i),
            None => match score_c.get(i) {
                None => None,
                Some(s) => match s.parse::<f64>() {
                    Ok(x) => Some(x),
                    Err(_) => {
                        exclude(&mut out, Reason::BAD_SCORE, format!("{s:?}"));
                        continue;
                    }
                },
            },
        };
        if let Some(x) = score
            && !x.is_finite()
        {
            exclude(&mut out, Reason::BAD_SCORE, format!("{x}"));
            continue;
        }
        let (outcome, positive) = match score {
            Some(x) => (RowOutcome::Evaluated, Some(x >= spec.threshold)),
            None => match answer_c.get(i) {
                None => (RowOutcome::NotEvaluated, None),
                Some(a) if pos.is_match(a) => (RowOutcome::Evaluated, Some(true)),
                Some(a) if neg.is_match(a) => (RowOutcome::Evaluated, Some(false)),
                Some(_) => (RowOutcome::Equivocal, None),
            },
        };
        let label = match label_c.get(i) {
            None => None,
            Some("0") | Some("0.0") | Some("false") | Some("False") => Some(false),
            Some("1") | Some("1.0") | Some("true") | Some("True") => Some(true),
            Some(other) => {
                *out.set_aside
                    .entry(Reason::BAD_LABEL.to_string())
                    .or_insert(0) += 1;
                problem(
                    &mut out,
                    file,
                    row,
                    case_id,
                    Reason::BAD_LABEL,
                    format!("{other:?} (row kept, label ignored)"),
                );
                None
            }
        };
        for (ai, c) in attr_c.iter_mut().enumerate() {
            let code = out.intern(ai, c.get(i).unwrap_or(""));
            out.codes.push(code);
        }
        let case = out.cases.push(case_id);
        origin.push(row);
        out.rows.push(LogRow {
            ts_ms,
            case,
            score,
            positive,
            outcome,
            label,
        });
    }
    (out, origin)
}

/// For each row, whether its case ID is the first occurrence of that ID. The rows' IDs are
/// hashed (SipHash with a random key, so that no log can be crafted to collide) and the
/// `(hash, row)` pairs sorted: equal IDs become neighbours, and only rows whose hashes are equal
/// are compared as strings. One cache-friendly sort instead of ten million random probes of a
/// hash set; the result does not depend on the key.
fn first_occurrences(cases: &CaseIds, rows: &[LogRow]) -> Vec<bool> {
    use rayon::prelude::*;
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let mut keys: Vec<(u64, usize)> = rows
        .par_iter()
        .enumerate()
        .map(|(i, r)| (state.hash_one(cases.get(r.case)), i))
        .collect();
    keys.par_sort_unstable();
    let mut keep = vec![true; rows.len()];
    let id = |k: &(u64, usize)| cases.get(rows[k.1].case);
    let mut s = 0;
    while s < keys.len() {
        let mut e = s + 1;
        while e < keys.len() && keys[e].0 == keys[s].0 {
            e += 1;
        }
        // Within a run the rows are in file order: a row repeats an ID when an earlier kept
        // row of the run has it (almost always the run's first row, so this is linear).
        for j in s + 1..e {
            let me = id(&keys[j]);
            if keys[s..j].iter().any(|k| keep[k.1] && id(k) == me) {
                keep[keys[j].1] = false;
            }
        }
        s = e;
    }
    keep
}

/// `str::trim`, with a fast path for the usual cell that starts and ends with a printable
/// ASCII character (never white space).
fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let plain = |c: u8| c > b' ' && c < 0x7f;
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) if plain(f) && plain(l) => s,
        _ => s.trim(),
    }
}

fn problem(out: &mut LogRead, file: &str, row: u64, case_id: &str, reason: &str, detail: String) {
    if out.problems.len() >= MAX_PROBLEMS {
        return;
    }
    out.problems.push(RowProblem {
        file: file.to_string(),
        row,
        case_id: case_id.to_string(),
        reason: reason.to_string(),
        detail,
    });
}

/// Reads and validates every log file, in the order given, after the `pending` rows a state
/// file carried over (rows of an incomplete window from the previous run).
pub fn read_logs(
    files: &[std::path::PathBuf],
    spec: &LogSpec,
    pending: &[StoredRow],
) -> Result<LogRead> {
    read_logs_in_blocks(files, spec, pending, ROW_BLOCK)
}

/// [`read_logs`] with rows validated in parallel blocks of `block` rows.
fn read_logs_in_blocks(
    files: &[std::path::PathBuf],
    spec: &LogSpec,
    pending: &[StoredRow],
    block: usize,
) -> Result<LogRead> {
    let block = block.max(1);
    let c = &spec.columns;
    let pos = Regex::new(&format!("(?i){}", spec.answer_positive))
        .map_err(|e| Error::input(format!("task.answer.positive: {e}")))?;
    let neg = Regex::new(&format!("(?i){}", spec.answer_negative))
        .map_err(|e| Error::input(format!("task.answer.negative: {e}")))?;
    let mut wanted: Vec<&str> = vec![
        &c.timestamp,
        &c.case_id,
        &c.score,
        &c.answer,
        &c.label,
        &c.model_sha256,
    ];
    wanted.extend(spec.attributes.iter().map(String::as_str));
    let mut out = LogRead::new(spec.attributes.len());
    for p in pending {
        for a in 0..spec.attributes.len() {
            let code = out.intern(a, p.attrs.get(a).map(String::as_str).unwrap_or(""));
            out.codes.push(code);
        }
        let case = out.cases.push(&p.case_id);
        out.rows.push(LogRow {
            ts_ms: p.ts_ms,
            case,
            score: p.score,
            positive: p.positive,
            outcome: p.outcome,
            label: p.label,
        });
    }
    // (file, row) of each new row, for naming duplicates afterwards.
    let mut origin: Vec<(usize, u64)> = vec![(usize::MAX, 0); out.rows.len()];
    for (fi, path) in files.iter().enumerate() {
        let file = path.display().to_string();
        let lower = file.to_ascii_lowercase();
        let raw = if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            read_jsonl(path, &wanted)?
        } else if lower.ends_with(".csv") || lower.ends_with(".parquet") || lower.ends_with(".pq") {
            read_polars(path, &c.score, &wanted)?
        } else {
            return Err(Error::input_hint(
                format!("{file}: unknown log format"),
                "use .csv, .parquet or .jsonl (JSON lines)",
            ));
        };
        for req in [&c.timestamp, &c.case_id, &c.model_sha256] {
            if !raw.cols.contains_key(req.as_str()) {
                return Err(Error::input_hint(
                    format!("{file}: no column `{req}`"),
                    "the log needs timestamp, case ID and model hash columns (names under monitoring.log)",
                ));
            }
        }
        let has_score = raw.score_f64.is_some() || raw.cols.contains_key(c.score.as_str());
        if !has_score && !raw.cols.contains_key(c.answer.as_str()) {
            return Err(Error::input(format!(
                "{file}: neither a `{}` nor an `{}` column",
                c.score, c.answer
            )));
        }
        for a in &spec.attributes {
            if !raw.cols.contains_key(a.as_str()) {
                if spec.required_attributes.contains(a) {
                    return Err(Error::input_hint(
                        format!("{file}: no column `{a}`, which a monitored statistic needs"),
                        "log every subgroup attribute the monitoring plan names",
                    ));
                }
                if !out.missing_attributes.contains(a) {
                    out.missing_attributes.push(a.clone());
                }
            }
        }
        for n in &raw.names {
            if !wanted.contains(&n.as_str()) && !out.ignored_columns.contains(n) {
                out.ignored_columns.push(n.clone());
            }
        }
        // Rows are validated in parallel blocks, each into its own accumulator, then merged in
        // file order: counts, problems (capped in order), case IDs and attribute codes come out
        // as one pass over the file would give them.
        let cols = FileColumns {
            case: raw.cols.get(&c.case_id),
            model: raw.cols.get(&c.model_sha256),
            ts: raw.cols.get(&c.timestamp),
            score: raw.cols.get(&c.score),
            answer: raw.cols.get(&c.answer),
            label: raw.cols.get(&c.label),
            attrs: spec.attributes.iter().map(|a| raw.cols.get(a)).collect(),
            score_f64: raw.score_f64.as_ref(),
        };
        let parts: Vec<(LogRead, Vec<u64>)> = {
            use rayon::prelude::*;
            let blocks: Vec<std::ops::Range<usize>> = (0..raw.height)
                .step_by(block)
                .map(|s| s..(s + block).min(raw.height))
                .collect();
            blocks
                .into_par_iter()
                .map(|range| read_block(&cols, spec, &pos, &neg, &file, range))
                .collect()
        };
        out.rows.reserve(raw.height);
        out.codes.reserve(raw.height * spec.attributes.len());
        origin.reserve(raw.height);
        for (part, rows) in parts {
            out.merge(part);
            origin.extend(rows.into_iter().map(|r| (fi, r)));
        }
    }
    let keep = first_occurrences(&out.cases, &out.rows);
    if keep.iter().any(|k| !k) {
        let mut rows = Vec::with_capacity(out.rows.len());
        let taken = std::mem::take(&mut out.rows);
        for (i, r) in taken.into_iter().enumerate() {
            if keep[i] {
                rows.push(r);
            } else {
                *out.excluded
                    .entry(Reason::DUPLICATE_CASE.to_string())
                    .or_insert(0) += 1;
                let (fi, row) = origin[i];
                let file = files
                    .get(fi)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let case_id = out.cases.get(r.case).to_string();
                problem(
                    &mut out,
                    &file,
                    row,
                    &case_id,
                    Reason::DUPLICATE_CASE,
                    "same case ID as an earlier row".into(),
                );
            }
        }
        out.rows = rows;
    }
    for w in out.rows.windows(2) {
        if w[1].ts_ms < w[0].ts_ms {
            out.unsorted_rows += 1;
        } else if w[1].ts_ms == w[0].ts_ms {
            out.duplicate_timestamps += 1;
        }
    }
    // Stable sort: rows with equal timestamps keep their file order (already sorted: nothing
    // to do).
    if out.unsorted_rows > 0 {
        out.rows.sort_by_key(|r| r.ts_ms);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading in blocks of a few rows gives exactly what one pass gives: rows (case IDs and
    /// attribute codes included), counts, the problems in file order and the levels in
    /// first-seen order, with duplicates, exclusions and new levels spread over the blocks.
    #[test]
    fn blocks_merge_as_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let model = "ab".repeat(32);
        let mut t = String::from("timestamp,case_id,score,label,model_sha256,site\n");
        for i in 0..200u64 {
            let ts = 1772409600 + (i * 7919 % 200) * 60; // unsorted, with repeats of no ts
            let id = if i % 37 == 5 {
                format!("C{}", i - 3)
            } else {
                format!("C{i}")
            };
            let m = if i % 41 == 7 {
                "cd".repeat(32)
            } else {
                model.clone()
            };
            let ts = if i % 53 == 9 {
                "soon".to_string()
            } else {
                ts.to_string()
            };
            let score = match i % 29 {
                3 => "high".to_string(),
                4 => String::new(),
                _ => format!("0.{}", (i * 31) % 1000),
            };
            let label = ["0", "1", "", "2"][(i % 4) as usize];
            let site = format!("site-{}", (i * i) % 11);
            t.push_str(&format!("{ts},{id},{score},{label},{m},{site}\n"));
        }
        let f = dir.path().join("log.csv");
        std::fs::write(&f, t).unwrap();
        let spec = LogSpec {
            columns: LogColumns::default(),
            attributes: vec!["site".into(), "view".into()],
            required_attributes: vec![],
            model_sha256: Some(model),
            threshold: 0.5,
            answer_positive: "yes".into(),
            answer_negative: "no".into(),
        };
        let pending = vec![StoredRow {
            ts_ms: 1772409600000,
            case_id: "C7".into(),
            score: Some(0.4),
            positive: Some(false),
            outcome: RowOutcome::Evaluated,
            label: None,
            attrs: vec!["site-x".into(), String::new()],
        }];
        let files = vec![f];
        let one = read_logs_in_blocks(&files, &spec, &pending, usize::MAX).unwrap();
        assert!(one.excluded.len() >= 4, "{:?}", one.excluded);
        assert!(one.unsorted_rows > 0);
        for block in [1, 3, 64] {
            let b = read_logs_in_blocks(&files, &spec, &pending, block).unwrap();
            assert_eq!(b.rows, one.rows, "block {block}");
            let ids = |r: &LogRead| -> Vec<String> {
                r.rows.iter().map(|x| r.case_id(x).to_string()).collect()
            };
            assert_eq!(ids(&b), ids(&one));
            let codes = |r: &LogRead| -> Vec<Vec<u32>> {
                r.rows.iter().map(|x| r.attrs(x).to_vec()).collect()
            };
            assert_eq!(codes(&b), codes(&one));
            assert_eq!(b.levels, one.levels);
            assert_eq!(b.problems, one.problems);
            assert_eq!(b.excluded, one.excluded);
            assert_eq!(b.set_aside, one.set_aside);
            assert_eq!(b.rows_read, one.rows_read);
            assert_eq!(b.unsorted_rows, one.unsorted_rows);
            assert_eq!(b.duplicate_timestamps, one.duplicate_timestamps);
        }
    }
}
