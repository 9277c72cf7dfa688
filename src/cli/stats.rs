//! `medgate stats`: the statistics engine applied to any table of predictions.
//!
//! Reads a CSV or Parquet file (via [`crate::table`]), turns the label, score and subgroup
//! columns into the engine's inputs (every bad value is reported with its row), runs
//! [`crate::stats::analyze_ordered`] and prints the [`crate::stats::StatsReport`] as a table or
//! as JSON. All statistics live in [`crate::stats`]; this module only reads and prints.
//!
//! Reading is most of the time on a large table, so the scores are read and sorted
//! ([`crate::stats::ScoreOrder`]) while the subgroup columns are coded, and a string column is
//! coded straight from polars' string views (a name of at most 12 bytes lives inside its view,
//! so the view is the name's key) without building a `&str` per row.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};

use super::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::protocol::{IntervalMethod, Multiplicity};
use crate::stats::{
    self, AnalysisConfig, Estimate, Factor, LevelKey, LevelSegment, Metrics, ScoreOrder,
    StatsError, StatsReport,
};
use crate::table::{TableFormat, column_names, read_table};

/// Arguments of `medgate stats`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  medgate stats --input predictions.csv --label truth --score prob
  medgate stats --input preds.parquet --label y --score logit --threshold 0 --subgroup sex \\
      --subgroup site --format json
  medgate stats --input preds.csv --label y --score p --subgroup sex --subgroup age_band \\
      --intersect sex,age_band --interval bootstrap --bootstrap 2000 --seed 1

Labels are 0/1 or true/false. A case is predicted positive when score >= threshold.
Undefined metrics (zero denominator) print as n/a (null in JSON).")]
pub struct StatsArgs {
    /// Table of predictions (.csv with a header row, or .parquet).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Column with the ground truth (0/1 or true/false).
    #[arg(long, value_name = "COL")]
    pub label: String,
    /// Column with the model score.
    #[arg(long, value_name = "COL")]
    pub score: String,
    /// Operating point: positive when score >= T (any value, for raw scores too).
    #[arg(
        long,
        value_name = "T",
        default_value_t = 0.5,
        allow_hyphen_values = true
    )]
    pub threshold: f64,
    /// Subgroup attribute column (repeat for several).
    #[arg(long, value_name = "COL")]
    pub subgroup: Vec<String>,
    /// Analyse a combination of subgroup attributes jointly, e.g. `sex,age_band` (repeatable).
    #[arg(long, value_name = "COL,COL")]
    pub intersect: Vec<String>,
    /// Two-sided confidence level.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Interval method (bootstrap: percentile bootstrap for AUROC, Clopper-Pearson for
    /// proportions).
    #[arg(
        long,
        default_value = "wilson",
        value_parser = PossibleValuesParser::new(["wilson", "clopper-pearson", "jeffreys", "bootstrap"])
            .map(|s| IntervalMethod::parse(&s).unwrap_or_default())
    )]
    pub interval: IntervalMethod,
    /// Bootstrap resamples.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub bootstrap: u32,
    /// Bootstrap seed.
    #[arg(long, value_name = "S", default_value_t = 20_070_315)]
    pub seed: u64,
    /// Minimum denominator: levels with fewer cases are flagged small, and a level whose
    /// metric has a smaller denominator is left out of that gap (and listed).
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub min_subgroup_size: usize,
    /// Adjustment of the gaps' homogeneity p-values, over every gap printed.
    #[arg(
        long,
        default_value = "holm",
        value_parser = PossibleValuesParser::new(["holm", "bonferroni", "none"]).map(|s| match s.as_str() {
            "bonferroni" => Multiplicity::Bonferroni,
            "none" => Multiplicity::None,
            _ => Multiplicity::Holm,
        })
    )]
    pub multiplicity: Multiplicity,
    /// Also compute calibration (ECE, intercept, slope, Spiegelhalter's z); scores must be
    /// probabilities.
    #[arg(long)]
    pub calibration: bool,
    /// Prevalence in the intended-use population: adds prevalence-adjusted PPV and NPV.
    #[arg(long, value_name = "P")]
    pub intended_use_prevalence: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate stats`.
pub fn run(args: StatsArgs, global: &GlobalArgs) -> Result<Outcome> {
    let interval = args.interval;
    let multiplicity = args.multiplicity;
    let cfg = AnalysisConfig {
        threshold: args.threshold,
        confidence: args.confidence,
        interval,
        bootstrap_resamples: args.bootstrap,
        seed: args.seed,
        min_subgroup_size: args.min_subgroup_size,
        intersections: args
            .intersect
            .iter()
            .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
            .collect(),
        intended_use_prevalence: args.intended_use_prevalence,
        calibration: args.calibration,
    };
    let path = args.input.as_path();
    let df = read_table(path)?;
    let columns = PredictionColumns::read(path, &df, &args.label, &args.score, &args.subgroup)?;
    if columns.labels.is_empty() {
        return Err(Error::input_hint(
            format!("{}: the table has no rows", path.display()),
            "statistics need at least one case",
        ));
    }
    if global.verbose > 0 {
        eprintln!(
            "read {} cases from {}",
            columns.labels.len(),
            path.display()
        );
    }
    let mut report = stats::analyze_ordered(
        &columns.labels,
        &columns.scores,
        &columns.order,
        &columns.factors,
        &cfg,
    )
    .map_err(|e| stats_error(path, e))?;
    // Without a protocol, the family is every gap this command prints.
    let p: Vec<f64> = report.gaps.iter().filter_map(|g| g.p_value).collect();
    let mut adj = stats::multiplicity::adjust(&p, multiplicity).into_iter();
    for g in report.gaps.iter_mut().filter(|g| g.p_value.is_some()) {
        g.p_adjusted = adj.next();
    }
    match args.format {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Internal(format!("serialising the report: {e}")))?;
            super::emit(&format!("{json}\n"))?;
        }
        OutputFormat::Text => super::emit(&render_text(path, &report, multiplicity))?,
    }
    Ok(Outcome::Pass)
}

/// The engine's inputs read from a table.
#[derive(Debug)]
pub struct PredictionColumns {
    /// Truth per row.
    pub labels: Vec<bool>,
    /// Score per row.
    pub scores: Vec<f64>,
    /// The rows in score order (sorted while the attributes are coded).
    pub order: ScoreOrder,
    /// Subgroup attributes, coded.
    pub factors: Vec<Factor>,
}

/// "row 7 (line 8)" for CSV, "row 7" for Parquet: rows are 1-based data rows.
fn where_row(path: &Path, i: usize) -> String {
    match TableFormat::from_path(path) {
        Ok(TableFormat::Csv) => format!("row {} (line {})", i + 1, i + 2),
        _ => format!("row {}", i + 1),
    }
}

fn column<'a>(path: &Path, df: &'a DataFrame, name: &str, role: &str) -> Result<&'a Column> {
    df.column(name).map_err(|_| {
        Error::input_hint(
            format!("{}: no {role} column `{name}`", path.display()),
            format!("columns are: {}", column_names(df).join(", ")),
        )
    })
}

fn polars_err(path: &Path, e: PolarsError) -> Error {
    Error::input(format!("{}: {e}", path.display()))
}

impl PredictionColumns {
    /// Reads and checks the label, score and subgroup columns of `df` (read from `path`).
    pub fn read(
        path: &Path,
        df: &DataFrame,
        label: &str,
        score: &str,
        subgroups: &[String],
    ) -> Result<PredictionColumns> {
        let label_col = column(path, df, label, "label")?;
        let score_col = column(path, df, score, "score")?;
        let subgroup_cols = subgroups
            .iter()
            .map(|name| column(path, df, name, "subgroup"))
            .collect::<Result<Vec<_>>>()?;
        // Labels and scores are read while the attributes are coded (the slowest part of
        // reading: every segment of every attribute is a task).
        let ((labels, scores), factors) = rayon::join(
            || {
                let scores = read_scores(path, score_col).and_then(|s| {
                    let order = ScoreOrder::new(&s).map_err(|e| stats_error(path, e))?;
                    Ok((s, order))
                });
                (read_labels(path, label_col), scores)
            },
            || {
                subgroup_cols
                    .iter()
                    .map(|col| read_factor(path, col))
                    .collect::<Result<Vec<_>>>()
            },
        );
        let (labels, (scores, order), factors) = (labels?, scores?, factors?);
        Ok(PredictionColumns {
            labels,
            scores,
            order,
            factors,
        })
    }
}

/// The name a missing attribute value is analysed under.
const MISSING: &str = "(missing)";

/// Polars' string array (Arrow's string view layout).
type StrArray = <StringType as PolarsDataType>::Array;

/// Rows `start..start + len` of one chunk of a string column, as a [`LevelSegment`] keyed by
/// the chunk's 16-byte views: a name of at most 12 bytes is stored inline in its view (length,
/// then bytes), so the view with the bytes past the length masked is the name's packed key and
/// a lookup never touches the string. Longer names are keyed by the name.
struct ViewSegment<'a> {
    arr: &'a StrArray,
    start: usize,
    len: usize,
    has_nulls: bool,
}

/// A view's bytes past an inline name of `len` bytes (4 length bytes, then the name) masked.
fn inline_key(view: u128, len: u32) -> u128 {
    let bits = 32 + 8 * len;
    if bits >= 128 {
        view
    } else {
        view & ((1u128 << bits) - 1)
    }
}

impl LevelSegment for ViewSegment<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn key(&self, i: usize) -> LevelKey<'_> {
        let j = self.start + i;
        if self.has_nulls && self.arr.get(j).is_none() {
            let v = MISSING.as_bytes();
            let mut view = [0u8; 16];
            view[..4].copy_from_slice(&(v.len() as u32).to_le_bytes());
            view[4..4 + v.len()].copy_from_slice(v);
            return LevelKey::Packed(u128::from_le_bytes(view));
        }
        let view = self.arr.views()[j];
        if view.length <= 12 {
            LevelKey::Packed(inline_key(view.as_u128(), view.length))
        } else {
            LevelKey::Name(self.name(i))
        }
    }

    fn name(&self, i: usize) -> &str {
        let j = self.start + i;
        if self.has_nulls && self.arr.get(j).is_none() {
            MISSING
        } else {
            self.arr.value(j)
        }
    }
}

/// Codes one subgroup column (any type; non-strings are coded by their text).
fn read_factor(path: &Path, col: &Column) -> Result<Factor> {
    const ROWS: usize = 1 << 16;
    let s = col
        .cast(&DataType::String)
        .map_err(|e| polars_err(path, e))?;
    let ca = s.str().map_err(|e| polars_err(path, e))?;
    let mut segments = Vec::new();
    let has_nulls = ca.null_count() > 0;
    for arr in ca.downcast_iter() {
        for start in (0..arr.len()).step_by(ROWS) {
            segments.push(ViewSegment {
                arr,
                start,
                len: ROWS.min(arr.len() - start),
                has_nulls,
            });
        }
    }
    Ok(Factor::from_segments(col.name(), &segments))
}

fn bad_label(path: &Path, col: &Column, i: usize, value: &str) -> Error {
    Error::input_hint(
        format!(
            "{}: {}: label `{}` is `{value}`",
            path.display(),
            where_row(path, i),
            col.name()
        ),
        "labels must be 0/1 or true/false",
    )
}

fn read_labels(path: &Path, col: &Column) -> Result<Vec<bool>> {
    let err = |e| polars_err(path, e);
    match col.dtype() {
        DataType::Boolean => col
            .bool()
            .map_err(err)?
            .iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| bad_label(path, col, i, "empty")))
            .collect(),
        DataType::String => col
            .str()
            .map_err(err)?
            .iter()
            .enumerate()
            .map(
                |(i, v)| match v.map(|s| (s, crate::golden::manifest::parse_label(s))) {
                    Some((_, Some(b))) => Ok(b),
                    Some((other, None)) => Err(bad_label(path, col, i, other.trim())),
                    None => Err(bad_label(path, col, i, "empty")),
                },
            )
            .collect(),
        dt if dt.is_primitive_numeric() => {
            let f = col.cast(&DataType::Float64).map_err(err)?;
            f.f64()
                .map_err(err)?
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Some(1.0) => Ok(true),
                    Some(0.0) => Ok(false),
                    Some(x) => Err(bad_label(path, col, i, &x.to_string())),
                    None => Err(bad_label(path, col, i, "empty")),
                })
                .collect()
        }
        other => Err(Error::input_hint(
            format!(
                "{}: label column `{}` has type {other}",
                path.display(),
                col.name()
            ),
            "labels must be 0/1 or true/false",
        )),
    }
}

fn bad_score(path: &Path, col: &Column, i: usize, value: &str) -> Error {
    Error::input_hint(
        format!(
            "{}: {}: score `{}` is {value}",
            path.display(),
            where_row(path, i),
            col.name()
        ),
        "every case needs a numeric, non-NaN score; remove or re-score the case",
    )
}

fn read_scores(path: &Path, col: &Column) -> Result<Vec<f64>> {
    let err = |e| polars_err(path, e);
    let values: Vec<Option<f64>> = match col.dtype() {
        DataType::String => col
            .str()
            .map_err(err)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Some(s) => s
                    .trim()
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| bad_score(path, col, i, &format!("`{s}`, not a number"))),
                None => Ok(None),
            })
            .collect::<Result<_>>()?,
        dt if dt.is_primitive_numeric() => {
            let f = col.cast(&DataType::Float64).map_err(err)?;
            let ca = f.f64().map_err(err)?;
            if ca.null_count() == 0 {
                // The common case, copied chunk by chunk; only a NaN needs its row named.
                let mut out = Vec::with_capacity(ca.len());
                for arr in ca.downcast_iter() {
                    out.extend_from_slice(arr.values());
                }
                if let Some(i) = out.iter().position(|x| x.is_nan()) {
                    return Err(bad_score(path, col, i, "NaN"));
                }
                return Ok(out);
            }
            ca.iter().collect()
        }
        other => {
            return Err(Error::input_hint(
                format!(
                    "{}: score column `{}` has type {other}",
                    path.display(),
                    col.name()
                ),
                "scores must be numbers",
            ));
        }
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(x) if x.is_nan() => Err(bad_score(path, col, i, "NaN")),
            Some(x) => Ok(x),
            None => Err(bad_score(path, col, i, "empty")),
        })
        .collect()
}

fn stats_error(path: &Path, e: StatsError) -> Error {
    match e {
        StatsError::NanScore { index } => Error::input_hint(
            format!(
                "{}: {}: score is NaN",
                path.display(),
                where_row(path, index)
            ),
            "every case needs a non-NaN score",
        ),
        StatsError::UnknownAttribute(a) => Error::input_hint(
            format!("--intersect names `{a}`, which is not a --subgroup column"),
            "list each intersected column with --subgroup too",
        ),
        StatsError::Confidence(c) => Error::input_hint(
            format!("--confidence {c} is not strictly between 0 and 1"),
            "give a level such as 0.95",
        ),
        StatsError::NoResamples => Error::input_hint(
            "--interval bootstrap with --bootstrap 0",
            "use at least 1000 resamples, e.g. --bootstrap 2000",
        ),
        StatsError::NanThreshold => {
            Error::input_hint("--threshold is NaN", "give a number, e.g. --threshold 0.5")
        }
        other => Error::input(format!("{}: {other}", path.display())),
    }
}

fn est(e: &Option<Estimate>) -> String {
    match e {
        Some(e) => format!("{:.3} ({:.3}-{:.3})", e.estimate, e.lower, e.upper),
        None => "n/a".to_string(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.3}"))
}

fn metrics_block(out: &mut String, m: &Metrics) {
    let _ = writeln!(out, "                 predicted +  predicted -");
    let _ = writeln!(out, "  label 1 {:>13} {:>12}", m.tp, m.fn_);
    let _ = writeln!(out, "  label 0 {:>13} {:>12}", m.fp, m.tn);
    let _ = writeln!(out);
    for (name, e) in [
        ("sensitivity", &m.sensitivity),
        ("specificity", &m.specificity),
        ("ppv", &m.ppv),
        ("npv", &m.npv),
        ("accuracy", &m.accuracy),
    ] {
        let _ = writeln!(out, "  {name:<12} {}", est(e));
    }
    let method = m
        .auroc
        .as_ref()
        .and_then(|a| a.method)
        .map_or("", |m| m.as_str());
    let _ = writeln!(out, "  {:<12} {} {method}", "auroc", est(&m.auroc));
    let _ = writeln!(
        out,
        "  f1 {}  kappa {}  prevalence {}",
        opt(m.f1),
        opt(m.kappa),
        opt(m.prevalence)
    );
}

/// The text report: the overall 2x2 table and metrics, a row per subgroup level, the gaps.
pub fn render_text(path: &Path, r: &StatsReport, multiplicity: Multiplicity) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "medgate stats: {}", path.display());
    let _ = writeln!(
        out,
        "{} cases ({} positive, {} negative); positive when score >= {}; {}% {} intervals",
        r.n,
        r.positives,
        r.negatives,
        r.threshold,
        r.confidence * 100.0,
        r.interval
    );
    let _ = writeln!(out, "\nOverall");
    metrics_block(&mut out, &r.overall);
    if !r.subgroups.is_empty() {
        let _ = writeln!(out, "\nSubgroups");
        let wa = r
            .subgroups
            .iter()
            .map(|s| s.attribute.len())
            .max()
            .unwrap_or(0)
            .max(9);
        let wv = r
            .subgroups
            .iter()
            .map(|s| s.value.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let _ = writeln!(
            out,
            "  {:<wa$}  {:<wv$} {:>8} {:>8}  {:<20} {:<20} auroc",
            "attribute", "level", "n", "pos", "sensitivity", "specificity"
        );
        for s in &r.subgroups {
            let _ = writeln!(
                out,
                "  {:<wa$}  {:<wv$} {:>8} {:>8}  {:<20} {:<20} {}{}",
                s.attribute,
                s.value,
                s.n,
                s.positives,
                est(&s.metrics.sensitivity),
                est(&s.metrics.specificity),
                est(&s.metrics.auroc),
                if s.small { "  small" } else { "" }
            );
        }
    }
    if !r.gaps.is_empty() {
        let adj = match multiplicity {
            Multiplicity::Holm => "holm",
            Multiplicity::Bonferroni => "bonferroni",
            Multiplicity::None => "none",
        };
        let _ = writeln!(
            out,
            "\nGaps (range over levels; simultaneous bound over all pairs; homogeneity p adjusted over the gaps printed: {adj})"
        );
        let p = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.4}"));
        for g in &r.gaps {
            let _ = writeln!(
                out,
                "  {:<12} {:<12} {:.3} ({:.3} to {:.3})  {} vs {}  upper from {} vs {}  {} over {} pairs  {} p {}  p_adj {}{}",
                g.attribute,
                g.metric.as_str(),
                g.difference,
                g.lower,
                g.upper,
                g.between[0],
                g.between[1],
                g.upper_pair[0],
                g.upper_pair[1],
                g.method,
                g.pairs,
                g.test.as_str(),
                p(g.p_value),
                p(g.p_adjusted),
                if g.excluded.is_empty() {
                    String::new()
                } else {
                    format!("  excluded: {}", g.excluded.join(", "))
                }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_keys_code_like_a_sorted_map_with_nulls_long_names_and_chunks() {
        // Names around the 12 bytes a view holds inline, the empty name, a null (analysed as
        // "(missing)", like the literal), and a chunk longer than one segment.
        let names = [
            "",
            "a",
            "a\0",
            "exactly12byt",
            "exactly13byte",
            "exactly12byu",
            "a-much-longer-level-name",
            "(missing)",
        ];
        let mut values: Vec<Option<&str>> = Vec::new();
        for i in 0..140_000usize {
            values.push(if i % 97 == 5 {
                None
            } else {
                Some(names[(i * 7 + i / 3) % names.len()])
            });
        }
        let (a, b) = values.split_at(100_003);
        let mut s = Series::new("x".into(), a);
        s.append(&Series::new("x".into(), b)).unwrap();
        assert!(s.n_chunks() > 1);
        let col = Column::from(s);
        let f = read_factor(Path::new("t.csv"), &col).unwrap();
        let as_name = |v: &Option<&str>| v.unwrap_or(MISSING).to_string();
        let sorted: std::collections::BTreeSet<String> = values.iter().map(as_name).collect();
        let levels: Vec<String> = sorted.into_iter().collect();
        assert_eq!(f.levels, levels);
        for (code, v) in f.codes.iter().zip(&values) {
            assert_eq!(levels[*code as usize], as_name(v));
        }
    }
}
