//! The reference-value cases of the self-test: every statistics fixture under
//! `tests/fixtures/stats/` (see its README for how each file was generated), rerun through the
//! public functions of [`crate::stats`].
//!
//! The fixtures are compiled into the binary, so the self-test needs no source tree;
//! `--fixtures DIR` reads the same file names from a directory instead (a QA team can add
//! cases, and a test can alter one expected value to see the self-test fail).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::SelftestCase;
use crate::error::{Error, Result};
use crate::protocol::{IntervalMethod, Multiplicity};
use crate::stats;

/// Fixture files the self-test reads, with their embedded content.
pub const EMBEDDED: [(&str, &str); 10] = [
    (
        "proportion_ci.csv",
        include_str!("../../tests/fixtures/stats/proportion_ci.csv"),
    ),
    (
        "delong_cases.csv",
        include_str!("../../tests/fixtures/stats/delong_cases.csv"),
    ),
    (
        "delong_expected.csv",
        include_str!("../../tests/fixtures/stats/delong_expected.csv"),
    ),
    (
        "mcnemar.csv",
        include_str!("../../tests/fixtures/stats/mcnemar.csv"),
    ),
    (
        "multiplicity.csv",
        include_str!("../../tests/fixtures/stats/multiplicity.csv"),
    ),
    (
        "agreement.csv",
        include_str!("../../tests/fixtures/stats/agreement.csv"),
    ),
    (
        "two_sample.csv",
        include_str!("../../tests/fixtures/stats/two_sample.csv"),
    ),
    (
        "paired.csv",
        include_str!("../../tests/fixtures/stats/paired.csv"),
    ),
    (
        "versions_R.txt",
        include_str!("../../tests/fixtures/stats/versions_R.txt"),
    ),
    (
        "versions_python.txt",
        include_str!("../../tests/fixtures/stats/versions_python.txt"),
    ),
];

/// Tolerance for closed-form intervals, p-values and agreement statistics: the reference tools
/// and medgate evaluate the same formulas with different special-function libraries
/// (Boost/Cephes in scipy, statrs here), which agree to about 1e-12; 1e-9 leaves margin while
/// catching any error a reader could see at the reported precision.
pub const TOL_CLOSED_FORM: f64 = 1e-9;
/// Tolerance for AUROC and DeLong variances (exact rational arithmetic on counts): 1e-12.
pub const TOL_EXACT: f64 = 1e-12;

/// The fixture texts, embedded or from `dir`.
pub struct Fixtures {
    files: BTreeMap<&'static str, String>,
    /// `embedded` or the directory read.
    pub origin: String,
}

impl Fixtures {
    /// The fixtures compiled into medgate.
    pub fn embedded() -> Self {
        Fixtures {
            files: EMBEDDED.iter().map(|(n, t)| (*n, t.to_string())).collect(),
            origin: "embedded (tests/fixtures/stats of this build)".into(),
        }
    }

    /// The same files read from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut files = BTreeMap::new();
        for (name, _) in EMBEDDED {
            let p = dir.join(name);
            let t = std::fs::read_to_string(&p).map_err(|e| {
                Error::input_hint(
                    format!("{}: {e}", p.display()),
                    format!(
                        "--fixtures DIR must hold every fixture file: {}",
                        EMBEDDED.map(|(n, _)| n).join(", ")
                    ),
                )
            })?;
            files.insert(name, t);
        }
        Ok(Fixtures {
            files,
            origin: dir.display().to_string(),
        })
    }

    fn text(&self, name: &str) -> &str {
        self.files.get(name).map(String::as_str).unwrap_or("")
    }

    /// Data rows (header skipped) as fields, with the 1-based line number.
    fn rows(&self, name: &str) -> Vec<(usize, Vec<String>)> {
        self.text(name)
            .lines()
            .enumerate()
            .skip(1)
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                (
                    i + 1,
                    l.split(',')
                        .map(|f| f.trim().trim_matches('"').to_string())
                        .collect(),
                )
            })
            .collect()
    }

    fn versions(&self, name: &str) -> String {
        self.text(name)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn num(s: &str, file: &str, line: usize) -> Result<f64> {
    match s {
        "nan" | "NaN" | "NA" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|_| Error::input(format!("{file}:{line}: `{s}` is not a number"))),
    }
}

fn int(s: &str, file: &str, line: usize) -> Result<u64> {
    s.parse::<u64>()
        .map_err(|_| Error::input(format!("{file}:{line}: `{s}` is not a count")))
}

fn field<'a>(r: &'a [String], i: usize, file: &str, line: usize) -> Result<&'a str> {
    r.get(i)
        .map(String::as_str)
        .ok_or_else(|| Error::input(format!("{file}:{line}: expected at least {} fields", i + 1)))
}

/// Whether every observed value is within `tol` of the expected one (NaN expected means the
/// value must be undefined, written as `null`).
fn close(expected: &[f64], observed: &[Option<f64>], tol: f64) -> bool {
    expected.len() == observed.len()
        && expected
            .iter()
            .zip(observed)
            .all(|(e, o)| match (e.is_nan(), o) {
                (true, None) => true,
                (false, Some(v)) => (e - v).abs() <= tol,
                _ => false,
            })
}

fn jv(v: &[f64]) -> Value {
    Value::Array(
        v.iter()
            .map(|x| if x.is_nan() { Value::Null } else { json!(x) })
            .collect(),
    )
}

fn jo(v: &[Option<f64>]) -> Value {
    Value::Array(
        v.iter()
            .map(|x| x.map(|f| json!(f)).unwrap_or(Value::Null))
            .collect(),
    )
}

#[allow(clippy::too_many_arguments)]
fn case(
    id: String,
    group: &str,
    description: String,
    source: &str,
    expected: &[f64],
    observed: &[Option<f64>],
    tol: f64,
) -> SelftestCase {
    SelftestCase {
        id,
        group: group.into(),
        description,
        source: source.into(),
        expected: jv(expected),
        observed: jo(observed),
        tolerance: Some(tol),
        pass: close(expected, observed, tol),
    }
}

/// Every reference-value case.
pub fn cases(fx: &Fixtures) -> Result<Vec<SelftestCase>> {
    let py = format!(
        "generated by tests/fixtures/stats/gen_statsmodels.py ({})",
        fx.versions("versions_python.txt")
    );
    let r = format!(
        "generated by tests/fixtures/stats/gen_proc.R ({})",
        fx.versions("versions_R.txt")
    );
    let mut out = Vec::new();

    // Proportion intervals vs statsmodels proportion_confint.
    let f = "proportion_ci.csv";
    for (line, row) in fx.rows(f) {
        let method = match field(&row, 0, f, line)? {
            "wilson" => IntervalMethod::Wilson,
            "clopper-pearson" => IntervalMethod::ClopperPearson,
            "jeffreys" => IntervalMethod::Jeffreys,
            other => {
                return Err(Error::input(format!(
                    "{f}:{line}: unknown method `{other}`"
                )));
            }
        };
        let k = int(field(&row, 1, f, line)?, f, line)?;
        let n = int(field(&row, 2, f, line)?, f, line)?;
        let conf = num(field(&row, 3, f, line)?, f, line)?;
        let exp = [
            num(field(&row, 4, f, line)?, f, line)?,
            num(field(&row, 5, f, line)?, f, line)?,
        ];
        let got = stats::proportion_interval(method, k, n, conf);
        out.push(case(
            format!("ci/{}/{k}-of-{n}/{conf}", method.as_str()),
            "proportion interval",
            format!(
                "{} interval of {k}/{n} at confidence {conf} ({f} line {line})",
                method.as_str()
            ),
            &format!("statsmodels proportion_confint, {py}"),
            &exp,
            &[got.map(|g| g.0), got.map(|g| g.1)],
            TOL_CLOSED_FORM,
        ));
    }

    // DeLong AUROC vs R pROC.
    let mut data: BTreeMap<String, (Vec<bool>, Vec<f64>)> = BTreeMap::new();
    let f = "delong_cases.csv";
    for (line, row) in fx.rows(f) {
        let e = data
            .entry(field(&row, 0, f, line)?.to_string())
            .or_default();
        e.0.push(num(field(&row, 1, f, line)?, f, line)? != 0.0);
        e.1.push(num(field(&row, 2, f, line)?, f, line)?);
    }
    let f = "delong_expected.csv";
    for (line, row) in fx.rows(f) {
        let name = field(&row, 0, f, line)?;
        let conf = num(field(&row, 1, f, line)?, f, line)?;
        let exp: Vec<f64> = (2..6)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let (labels, scores) = data.get(name).ok_or_else(|| {
            Error::input(format!(
                "{f}:{line}: no data for `{name}` in delong_cases.csv"
            ))
        })?;
        let got =
            stats::delong(labels, scores).map_err(|e| Error::input(format!("{f}:{line}: {e}")))?;
        let auc = got.as_ref().map(|d| d.auc);
        let var = got.as_ref().and_then(|d| d.variance);
        let ci = got.as_ref().and_then(|d| d.interval(conf));
        let source =
            format!("R pROC roc() / var(method = \"delong\") / ci.auc(method = \"delong\"), {r}");
        out.push(case(
            format!("delong/{name}/auc-variance"),
            "AUROC and DeLong variance",
            format!(
                "AUROC and DeLong variance of `{name}` ({} cases; {f} line {line})",
                labels.len()
            ),
            &source,
            &exp[..2],
            &[auc, var],
            TOL_EXACT,
        ));
        out.push(case(
            format!("delong/{name}/ci/{conf}"),
            "DeLong interval",
            format!("{conf} DeLong interval of the AUROC of `{name}` ({f} line {line})"),
            &source,
            &exp[2..],
            &[ci.map(|c| c.0), ci.map(|c| c.1)],
            TOL_CLOSED_FORM,
        ));
    }

    // Exact McNemar.
    let f = "mcnemar.csv";
    for (line, row) in fx.rows(f) {
        let b = int(field(&row, 0, f, line)?, f, line)?;
        let c = int(field(&row, 1, f, line)?, f, line)?;
        let exp = num(field(&row, 2, f, line)?, f, line)?;
        out.push(case(
            format!("mcnemar/{b}-{c}"),
            "exact McNemar test",
            format!("exact McNemar p-value for discordant pairs b={b}, c={c} ({f} line {line})"),
            &format!("statsmodels mcnemar(exact=True), {py}"),
            &[exp],
            &[Some(stats::mcnemar_exact(b, c))],
            TOL_CLOSED_FORM,
        ));
    }

    // Multiplicity.
    let f = "multiplicity.csv";
    for (line, row) in fx.rows(f) {
        let method = field(&row, 0, f, line)?;
        let list = |s: &str| -> Result<Vec<f64>> {
            s.split_whitespace().map(|x| num(x, f, line)).collect()
        };
        let p = list(field(&row, 1, f, line)?)?;
        let exp = list(field(&row, 2, f, line)?)?;
        let got = match method {
            "holm" => crate::stats::multiplicity::adjust(&p, Multiplicity::Holm),
            "bonferroni" => crate::stats::multiplicity::adjust(&p, Multiplicity::Bonferroni),
            other => {
                return Err(Error::input(format!(
                    "{f}:{line}: unknown method `{other}`"
                )));
            }
        };
        out.push(case(
            format!("multiplicity/{method}"),
            "multiplicity adjustment",
            format!(
                "{method} adjustment of {} p-values ({f} line {line})",
                p.len()
            ),
            &format!("statsmodels multipletests, {py}"),
            &exp,
            &got.into_iter().map(Some).collect::<Vec<_>>(),
            TOL_CLOSED_FORM,
        ));
    }

    // F1 and Cohen's kappa.
    let f = "agreement.csv";
    for (line, row) in fx.rows(f) {
        let v: Vec<u64> = (0..4)
            .map(|i| field(&row, i, f, line).and_then(|s| int(s, f, line)))
            .collect::<Result<_>>()?;
        let exp = [
            num(field(&row, 4, f, line)?, f, line)?,
            num(field(&row, 5, f, line)?, f, line)?,
        ];
        let c = stats::Confusion {
            tp: v[0],
            fp: v[1],
            tn: v[2],
            fn_: v[3],
        };
        out.push(case(
            format!("agreement/{}-{}-{}-{}", v[0], v[1], v[2], v[3]),
            "F1 and Cohen's kappa",
            format!(
                "F1 and kappa of TP={} FP={} TN={} FN={} ({f} line {line})",
                v[0], v[1], v[2], v[3]
            ),
            &format!("scikit-learn f1_score / cohen_kappa_score, {py}"),
            &exp,
            &[c.f1(), c.kappa()],
            TOL_CLOSED_FORM,
        ));
    }

    // Independent two-sample difference.
    let f = "two_sample.csv";
    for (line, row) in fx.rows(f) {
        let v: Vec<u64> = (0..4)
            .map(|i| field(&row, i, f, line).and_then(|s| int(s, f, line)))
            .collect::<Result<_>>()?;
        let conf = num(field(&row, 4, f, line)?, f, line)?;
        let exp: Vec<f64> = (5..8)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let ci = stats::compare::newcombe_independent(v[0], v[1], v[2], v[3], conf);
        let p = stats::compare::two_proportion_z_test(v[0], v[1], v[2], v[3]);
        out.push(case(
            format!("two-sample/{}-{}-{}-{}/{conf}", v[0], v[1], v[2], v[3]),
            "difference of independent proportions",
            format!(
                "Newcombe interval and pooled z-test of {}/{} - {}/{} at {conf} ({f} line {line})",
                v[0], v[1], v[2], v[3]
            ),
            &format!("statsmodels confint_proportions_2indep(method=\"newcomb\") / proportions_ztest, {py}"),
            &exp,
            &[ci.map(|c| c.0), ci.map(|c| c.1), p],
            TOL_CLOSED_FORM,
        ));
    }

    // Paired difference (Newcombe method 10).
    let f = "paired.csv";
    for (line, row) in fx.rows(f) {
        let v: Vec<u64> = (0..4)
            .map(|i| field(&row, i, f, line).and_then(|s| int(s, f, line)))
            .collect::<Result<_>>()?;
        let conf = num(field(&row, 4, f, line)?, f, line)?;
        let exp = [
            num(field(&row, 5, f, line)?, f, line)?,
            num(field(&row, 6, f, line)?, f, line)?,
        ];
        let ci = stats::compare::newcombe_paired(v[0], v[1], v[2], v[3], conf);
        out.push(case(
            format!("paired/{}-{}-{}-{}/{conf}", v[0], v[1], v[2], v[3]),
            "difference of paired proportions",
            format!(
                "Newcombe paired interval for a={} b={} c={} d={} at {conf} ({f} line {line})",
                v[0], v[1], v[2], v[3]
            ),
            &format!("Newcombe (1998) method 10 with statsmodels Wilson limits, {py}"),
            &exp,
            &[ci.map(|c| c.0), ci.map(|c| c.1)],
            TOL_CLOSED_FORM,
        ));
    }
    Ok(out)
}
