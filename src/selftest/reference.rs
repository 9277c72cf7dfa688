//! The reference-value cases of the self-test: every statistics fixture under
//! `tests/fixtures/stats/` and the release comparison's paired fixtures under
//! `tests/fixtures/compare/` (see each README for how each file was generated), rerun through
//! the public functions of [`crate::stats`].
//!
//! The fixtures are compiled into the binary, so the self-test needs no source tree;
//! `--fixtures DIR` reads the same file names from a directory instead: the `stats` files in
//! `DIR`, the `compare` files in `DIR/compare/` (a QA team can add cases, and a test can alter
//! one expected value to see the self-test fail).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::SelftestCase;
use crate::error::{Error, Result};
use crate::protocol::{IntervalMethod, Multiplicity};
use crate::stats;

/// Fixture files the self-test reads, with their embedded content.
pub const EMBEDDED: [(&str, &str); 29] = [
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
        "gap_bounds.csv",
        include_str!("../../tests/fixtures/stats/gap_bounds.csv"),
    ),
    (
        "homogeneity.csv",
        include_str!("../../tests/fixtures/stats/homogeneity.csv"),
    ),
    (
        "auc_groups_cases.csv",
        include_str!("../../tests/fixtures/stats/auc_groups_cases.csv"),
    ),
    (
        "auc_groups_expected.csv",
        include_str!("../../tests/fixtures/stats/auc_groups_expected.csv"),
    ),
    (
        "equivocal_auc.csv",
        include_str!("../../tests/fixtures/stats/equivocal_auc.csv"),
    ),
    (
        "samplesize.csv",
        include_str!("../../tests/fixtures/stats/samplesize.csv"),
    ),
    (
        "power_roc.csv",
        include_str!("../../tests/fixtures/stats/power_roc.csv"),
    ),
    (
        "power_roc_at_n.csv",
        include_str!("../../tests/fixtures/stats/power_roc_at_n.csv"),
    ),
    (
        "ppv_adjusted.csv",
        include_str!("../../tests/fixtures/stats/ppv_adjusted.csv"),
    ),
    (
        "calibration_cases.csv",
        include_str!("../../tests/fixtures/stats/calibration_cases.csv"),
    ),
    (
        "calibration.csv",
        include_str!("../../tests/fixtures/stats/calibration.csv"),
    ),
    (
        "versions_step2.txt",
        include_str!("../../tests/fixtures/stats/versions_step2.txt"),
    ),
    (
        "versions_R.txt",
        include_str!("../../tests/fixtures/stats/versions_R.txt"),
    ),
    (
        "versions_python.txt",
        include_str!("../../tests/fixtures/stats/versions_python.txt"),
    ),
    // The release comparison's paired references (tests/fixtures/compare/README.md); with
    // `--fixtures DIR` they are read from `DIR/compare/`.
    (
        "compare/paired_tables.csv",
        include_str!("../../tests/fixtures/compare/paired_tables.csv"),
    ),
    (
        "compare/mcnemar_statsmodels.csv",
        include_str!("../../tests/fixtures/compare/mcnemar_statsmodels.csv"),
    ),
    (
        "compare/paired_delong_cases.csv",
        include_str!("../../tests/fixtures/compare/paired_delong_cases.csv"),
    ),
    (
        "compare/paired_delong_expected.csv",
        include_str!("../../tests/fixtures/compare/paired_delong_expected.csv"),
    ),
    (
        "compare/versions_R.txt",
        include_str!("../../tests/fixtures/compare/versions_R.txt"),
    ),
    (
        "compare/versions_python.txt",
        include_str!("../../tests/fixtures/compare/versions_python.txt"),
    ),
    (
        "monitor/drift.json",
        include_str!("../../tests/fixtures/monitor/drift.json"),
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
            origin: "embedded (tests/fixtures/stats, compare and monitor/drift.json of this build)"
                .into(),
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
        let name = field(&row, 0, f, line)?;
        let method = match IntervalMethod::parse(name) {
            Some(m) if m != IntervalMethod::Bootstrap => m,
            _ => {
                return Err(Error::input(format!("{f}:{line}: unknown method `{name}`")));
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
    step2_cases(fx, &r, &mut out)?;
    compare_cases(fx, &mut out)?;
    monitor_cases(fx, &mut out)?;
    Ok(out)
}

/// The monitor's drift statistics (`stats::drift`, used by `medgate monitor`) against
/// tests/fixtures/monitor/drift.json from scipy and numpy: the two-sample KS statistic and
/// p-value (the p-value relative to scipy's, so that tiny ones count), the Wasserstein
/// distance, PSI on baseline-quantile bins, and the chi-square test of an attribute mix.
fn monitor_cases(fx: &Fixtures, out: &mut Vec<SelftestCase>) -> Result<()> {
    use crate::stats::drift;
    let f = "monitor/drift.json";
    let doc: Value = serde_json::from_str(fx.text(f))
        .map_err(|e| Error::input(format!("{f}:{}:{}: {e}", e.line(), e.column())))?;
    let v = &doc["versions"];
    let src = format!(
        "generated by tests/fixtures/monitor/generate.py (scipy {}, numpy {}, python {})",
        v["scipy"].as_str().unwrap_or("?"),
        v["numpy"].as_str().unwrap_or("?"),
        v["python"].as_str().unwrap_or("?")
    );
    let bad = |what: &str| Error::input(format!("{f}: {what} is missing or malformed"));
    let floats = |x: &Value, what: &str| -> Result<Vec<f64>> {
        x.as_array()
            .ok_or_else(|| bad(what))?
            .iter()
            .map(|y| y.as_f64().ok_or_else(|| bad(what)))
            .collect()
    };
    let counts = |x: &Value, what: &str| -> Result<Vec<u64>> {
        x.as_array()
            .ok_or_else(|| bad(what))?
            .iter()
            .map(|y| y.as_u64().ok_or_else(|| bad(what)))
            .collect()
    };
    let number = |x: &Value, what: &str| x.as_f64().ok_or_else(|| bad(what));
    for s in doc["samples"].as_array().ok_or_else(|| bad("samples"))? {
        let name = s["name"].as_str().ok_or_else(|| bad("a sample name"))?;
        let a = floats(&s["a"], "a")?;
        let b = floats(&s["b"], "b")?;
        let (n, m) = (a.len(), b.len());
        let ks = drift::ks_2samp(&a, &b);
        let exact = s["ks_method"].as_str() == Some("exact");
        let p_ref = number(
            if exact {
                &s["ks_pvalue_scipy_auto"]
            } else {
                &s["ks_pvalue_kstwobign"]
            },
            "a KS p-value",
        )?;
        out.push(case(
            format!("monitor/ks/{name}"),
            "Kolmogorov-Smirnov drift test (monitor)",
            format!(
                "two-sample KS statistic and p-value / reference p-value, n = {n}, m = {m} ({})",
                if exact { "exact" } else { "asymptotic" }
            ),
            &if exact {
                format!("scipy.stats.ks_2samp (method auto), {src}")
            } else {
                format!("scipy.stats.kstwobign.sf, {src}")
            },
            &[number(&s["ks_statistic"], "ks_statistic")?, 1.0],
            &[
                ks.as_ref().map(|k| k.statistic),
                ks.as_ref().map(|k| k.p_value / p_ref),
            ],
            TOL_CLOSED_FORM,
        ));
        out.push(case(
            format!("monitor/wasserstein/{name}"),
            "Wasserstein drift distance (monitor)",
            format!("first Wasserstein distance, n = {n}, m = {m}"),
            &format!("scipy.stats.wasserstein_distance, {src}"),
            &[number(&s["wasserstein"], "wasserstein")?],
            &[drift::wasserstein(&a, &b)],
            TOL_CLOSED_FORM,
        ));
        let bins = s["psi_bins"].as_u64().ok_or_else(|| bad("psi_bins"))? as usize;
        let edges = drift::quantile_edges(&a, bins);
        let (cb, cc) = (drift::bin_counts(&edges, &a), drift::bin_counts(&edges, &b));
        let same_bins = cb == counts(&s["psi_base_counts"], "psi_base_counts")?
            && cc == counts(&s["psi_cur_counts"], "psi_cur_counts")?;
        out.push(case(
            format!("monitor/psi/{name}"),
            "population stability index (monitor)",
            format!("PSI over {bins} baseline-quantile bins (bin counts must agree too)"),
            &format!("numpy quantile (type 7) + searchsorted, {src}"),
            &[number(&s["psi"], "psi")?],
            &[drift::psi(&cb, &cc).filter(|_| same_bins)],
            TOL_CLOSED_FORM,
        ));
    }
    for c in doc["chi2"].as_array().ok_or_else(|| bad("chi2"))? {
        let name = c["name"].as_str().ok_or_else(|| bad("a chi2 name"))?;
        let table: Vec<Vec<u64>> = c["table"]
            .as_array()
            .ok_or_else(|| bad("a chi2 table"))?
            .iter()
            .map(|r| counts(r, "a chi2 table row"))
            .collect::<Result<_>>()?;
        let r = drift::chi2_contingency(&table);
        out.push(case(
            format!("monitor/chi2/{name}"),
            "chi-square test of an attribute mix (monitor)",
            format!(
                "Pearson chi-square statistic, degrees of freedom and p-value, {} levels",
                table.len()
            ),
            &format!("scipy.stats.chi2_contingency (Yates when dof = 1), {src}"),
            &[
                number(&c["statistic"], "statistic")?,
                number(&c["dof"], "dof")?,
                number(&c["pvalue"], "pvalue")?,
            ],
            &[
                r.as_ref().map(|x| x.statistic),
                r.as_ref().map(|x| x.dof as f64),
                r.as_ref().map(|x| x.p_value),
            ],
            TOL_CLOSED_FORM,
        ));
    }
    Ok(())
}

/// The release comparison's paired statistics (`stats::compare`, used by `comparison:`
/// protocols) against tests/fixtures/compare: Newcombe method 10 and exact / mid-p McNemar
/// from the R package contingencytables, exact McNemar from statsmodels, and the paired
/// DeLong test and interval from R pROC.
fn compare_cases(fx: &Fixtures, out: &mut Vec<SelftestCase>) -> Result<()> {
    let r = format!(
        "generated by tests/fixtures/compare/gen_compare.R ({})",
        fx.versions("compare/versions_R.txt")
    );
    let py = format!(
        "generated by tests/fixtures/compare/gen_statsmodels.py ({})",
        fx.versions("compare/versions_python.txt")
    );

    let f = "compare/paired_tables.csv";
    for (line, row) in fx.rows(f) {
        let v: Vec<u64> = (0..4)
            .map(|i| field(&row, i, f, line).and_then(|s| int(s, f, line)))
            .collect::<Result<_>>()?;
        let conf = num(field(&row, 4, f, line)?, f, line)?;
        let exp: Vec<f64> = (5..10)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let t = stats::compare::PairedProportion::from_table(v[0], v[1], v[2], v[3], conf);
        out.push(case(
            format!("compare/paired/{}-{}-{}-{}/{conf}", v[0], v[1], v[2], v[3]),
            "paired difference and McNemar (release comparison)",
            format!(
                "paired difference, Newcombe method 10 interval, exact and mid-p McNemar for \
                 a={} b={} c={} d={} at {conf} ({f} line {line})",
                v[0], v[1], v[2], v[3]
            ),
            &format!(
                "R contingencytables Newcombe_square_and_add_CI_paired_2x2 / \
                 McNemar_exact_cond_test_paired_2x2 / McNemar_midP_test_paired_2x2, {r}"
            ),
            &exp,
            &[
                t.as_ref().map(|t| t.difference),
                t.as_ref().map(|t| t.lower),
                t.as_ref().map(|t| t.upper),
                t.as_ref().map(|t| t.exact_p),
                t.as_ref().map(|t| t.mid_p),
            ],
            TOL_CLOSED_FORM,
        ));
    }

    let f = "compare/mcnemar_statsmodels.csv";
    for (line, row) in fx.rows(f) {
        let b = int(field(&row, 0, f, line)?, f, line)?;
        let c = int(field(&row, 1, f, line)?, f, line)?;
        let exp = num(field(&row, 2, f, line)?, f, line)?;
        out.push(case(
            format!("compare/mcnemar/{b}-{c}"),
            "exact McNemar test (release comparison)",
            format!("exact McNemar p-value for discordant pairs b={b}, c={c} ({f} line {line})"),
            &format!("statsmodels mcnemar(exact=True), {py}"),
            &[exp],
            &[Some(stats::compare::mcnemar_exact(b, c))],
            TOL_CLOSED_FORM,
        ));
    }

    type Paired = (Vec<bool>, Vec<f64>, Vec<f64>);
    let mut data: BTreeMap<String, Paired> = BTreeMap::new();
    let f = "compare/paired_delong_cases.csv";
    for (line, row) in fx.rows(f) {
        let e = data
            .entry(field(&row, 0, f, line)?.to_string())
            .or_default();
        e.0.push(num(field(&row, 1, f, line)?, f, line)? != 0.0);
        e.1.push(num(field(&row, 2, f, line)?, f, line)?);
        e.2.push(num(field(&row, 3, f, line)?, f, line)?);
    }
    let f = "compare/paired_delong_expected.csv";
    for (line, row) in fx.rows(f) {
        let name = field(&row, 0, f, line)?;
        let conf = num(field(&row, 1, f, line)?, f, line)?;
        let exp: Vec<f64> = (2..11)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let (labels, new, reference) = data.get(name).ok_or_else(|| {
            Error::input(format!(
                "{f}:{line}: no data for `{name}` in paired_delong_cases.csv"
            ))
        })?;
        let got = stats::compare::paired_delong(labels, new, reference, conf)
            .map_err(|e| Error::input(format!("{f}:{line}: {e}")))?;
        let g = got.as_ref();
        out.push(case(
            format!("compare/paired-delong/{name}/{conf}"),
            "paired DeLong AUROC difference (release comparison)",
            format!(
                "paired AUROCs, DeLong variances and covariance, z, p and {conf} interval of \
                 the difference for `{name}` ({} cases; {f} line {line})",
                labels.len()
            ),
            &format!("R pROC roc.test(paired = TRUE, method = \"delong\") / var() / cov(), {r}"),
            &exp,
            &[
                g.map(|d| d.new),
                g.map(|d| d.reference),
                g.and_then(|d| d.variance_new),
                g.and_then(|d| d.variance_reference),
                g.and_then(|d| d.covariance),
                g.and_then(|d| d.z),
                g.and_then(|d| d.p_value),
                g.map(|d| d.lower),
                g.map(|d| d.upper),
            ],
            TOL_CLOSED_FORM,
        ));
    }
    Ok(())
}

/// Tolerance for iterative fits (logistic recalibration): 1e-6.
pub const TOL_ITERATIVE: f64 = 1e-6;

fn counts_list(s: &str, f: &str, line: usize) -> Result<Vec<(u64, u64)>> {
    s.split(' ')
        .map(|kn| {
            let (k, n) = kn
                .split_once('/')
                .ok_or_else(|| Error::input(format!("{f}:{line}: `{kn}` is not k/n")))?;
            Ok((int(k, f, line)?, int(n, f, line)?))
        })
        .collect()
}

fn nums(s: &str, f: &str, line: usize) -> Result<Vec<f64>> {
    s.split(' ').map(|x| num(x, f, line)).collect()
}

/// The reference cases of issue 17 (simultaneous gap bounds, homogeneity tests, exact sample
/// size, prevalence-adjusted PPV/NPV, calibration, equivocal imputation); fixtures from
/// `gen_step2.py` and `gen_proc_gaps.R`.
fn step2_cases(fx: &Fixtures, r: &str, out: &mut Vec<SelftestCase>) -> Result<()> {
    let py = format!(
        "generated by tests/fixtures/stats/gen_step2.py ({})",
        fx.versions("versions_step2.txt")
    );
    let rg = r.replace("gen_proc.R", "gen_proc_gaps.R");

    let f = "gap_bounds.csv";
    for (line, row) in fx.rows(f) {
        let levels: Vec<stats::gap::LevelValue> = counts_list(field(&row, 0, f, line)?, f, line)?
            .into_iter()
            .map(|(k, n)| stats::gap::LevelValue::Proportion { k, n })
            .collect();
        let conf = num(field(&row, 1, f, line)?, f, line)?;
        let exp = [
            num(field(&row, 3, f, line)?, f, line)?,
            num(field(&row, 4, f, line)?, f, line)?,
        ];
        let b = stats::gap::simultaneous_range(&levels, conf);
        out.push(case(
            format!("gap/{}/{conf}", row[0].replace(' ', "-")),
            "simultaneous subgroup gap bound",
            format!(
                "upper and lower simultaneous bounds of the sensitivity range over every pair of {} at {conf} ({f} line {line})",
                row[0]
            ),
            &format!("statsmodels confint_proportions_2indep(method=\"newcomb\") at alpha/pairs, maximised over pairs, {py}"),
            &exp,
            &[b.as_ref().map(|b| b.upper), b.as_ref().map(|b| b.lower)],
            TOL_CLOSED_FORM,
        ));
    }

    let f = "homogeneity.csv";
    for (line, row) in fx.rows(f) {
        let levels = counts_list(field(&row, 0, f, line)?, f, line)?;
        let exp = [
            num(field(&row, 1, f, line)?, f, line)?,
            num(field(&row, 3, f, line)?, f, line)?,
        ];
        let h = stats::gap::chi_square_homogeneity(&levels);
        out.push(case(
            format!("homogeneity/{}", row[0].replace(' ', "-")),
            "homogeneity test across subgroup levels",
            format!(
                "Pearson chi-square statistic and p of {} ({f} line {line})",
                row[0]
            ),
            &format!("scipy chi2_contingency(correction=False), {py}"),
            &exp,
            &[h.map(|h| h.statistic), h.map(|h| h.p_value)],
            TOL_CLOSED_FORM,
        ));
    }

    type Group = (Vec<bool>, Vec<f64>, Vec<String>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let f = "auc_groups_cases.csv";
    for (line, row) in fx.rows(f) {
        let e = groups
            .entry(field(&row, 0, f, line)?.to_string())
            .or_default();
        e.2.push(field(&row, 1, f, line)?.to_string());
        e.0.push(num(field(&row, 2, f, line)?, f, line)? != 0.0);
        e.1.push(num(field(&row, 3, f, line)?, f, line)?);
    }
    let f = "auc_groups_expected.csv";
    for (line, row) in fx.rows(f) {
        let name = field(&row, 0, f, line)?;
        let (labels, scores, level) = groups
            .get(name)
            .ok_or_else(|| Error::input(format!("{f}:{line}: no cases for `{name}`")))?;
        let attrs = vec![("g".to_string(), level.clone())];
        let rep = stats::analyze(
            &stats::AnalysisInput {
                labels,
                scores,
                attributes: &attrs,
            },
            &stats::AnalysisConfig {
                min_subgroup_size: 2,
                ..stats::AnalysisConfig::default()
            },
        )
        .map_err(|e| Error::input(format!("{f}:{line}: {e}")))?;
        let mut exp = nums(field(&row, 3, f, line)?, f, line)?;
        exp.push(num(field(&row, 4, f, line)?, f, line)?);
        exp.push(num(field(&row, 6, f, line)?, f, line)?);
        let mut got: Vec<Option<f64>> = rep
            .subgroups
            .iter()
            .map(|s| s.metrics.auroc.as_ref().and_then(|a| a.se).map(|v| v * v))
            .collect();
        let g = rep
            .gaps
            .iter()
            .find(|g| g.metric == crate::protocol::Metric::Auroc);
        got.push(g.and_then(|g| g.statistic));
        got.push(g.and_then(|g| g.p_value));
        out.push(case(
            format!("auroc-homogeneity/{name}"),
            "homogeneity test across subgroup levels",
            format!(
                "per-level DeLong variances and the Wald homogeneity statistic and p of AUROC over the levels of `{name}` ({f} line {line})"
            ),
            &format!("R pROC var(method = \"delong\") per level, Q computed in R (= roc.test(paired = FALSE) squared for two levels), {rg}"),
            &exp,
            &got,
            TOL_CLOSED_FORM,
        ));
    }

    let f = "equivocal_auc.csv";
    if let Some((line, row)) = fx.rows(f).into_iter().next() {
        // 100 positives (90 at 1), 100 negatives (15 at 1), 10 + 10 equivocal imputed against
        // the truth by the trace stage's rule.
        let mut labels = Vec::new();
        let mut scores = Vec::new();
        for i in 0..100 {
            labels.push(true);
            scores.push(if i < 90 { 1.0 } else { 0.0 });
            labels.push(false);
            scores.push(if i < 15 { 1.0 } else { 0.0 });
        }
        let (hi, lo) = crate::trace::analysis::imputation_scores(scores.iter().copied(), 0.5);
        for _ in 0..10 {
            labels.push(true);
            scores.push(lo);
            labels.push(false);
            scores.push(hi);
        }
        let got = stats::delong(&labels, &scores)
            .map_err(|e| Error::input(format!("{f}:{line}: {e}")))?
            .map(|d| d.auc);
        out.push(case(
            "equivocal/auroc-worst-case-with-0-1-scores".into(),
            "equivocal imputation",
            format!(
                "AUROC with 20 equivocal answers imputed against the truth when real scores reach 1.0 ({f} line {line})"
            ),
            &format!("R pROC auc() with the equivocal cases scored strictly beyond every score, {rg}"),
            &[num(field(&row, 1, f, line)?, f, line)?],
            &[got],
            TOL_EXACT,
        ));
    }

    let f = "samplesize.csv";
    for (line, row) in fx.rows(f) {
        let v: Vec<f64> = (0..8)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let plan = stats::samplesize::exact_plan(v[0], v[1], v[2], v[3]);
        out.push(case(
            format!("samplesize/{}-vs-{}/{}/{}", v[0], v[1], v[2], v[3]),
            "sample size",
            format!(
                "exact (Flahault 2005) and saw-tooth-safe (Chu & Cole 2007) positives and power for Se {} vs goal {}, one-sided alpha {}, power {} ({f} line {line})",
                v[0], v[1], v[2], v[3]
            ),
            &format!("scipy.stats.binom scan of the exact test's power (first row: the published 93 / 102), {py}"),
            &v[4..8],
            &[
                plan.map(|p| p.exact as f64),
                plan.map(|p| p.exact_power),
                plan.map(|p| p.safe as f64),
                plan.map(|p| p.safe_power),
            ],
            TOL_CLOSED_FORM,
        ));
    }

    let rp = r.replace("gen_proc.R", "gen_power_roc.R");
    let ob = stats::samplesize::AurocVariance::Obuchowski;
    let f = "power_roc.csv";
    for (line, row) in fx.rows(f) {
        let v: Vec<f64> = (0..10)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let real = stats::samplesize::obuchowski_positives(v[0], v[1], v[2], v[3], v[4]);
        let plan = stats::samplesize::auroc_plan(ob, v[0], v[1], v[2], v[3], v[4]);
        out.push(case(
            format!("auroc-samplesize/{}-vs-{}/{}/{}/k{}", v[0], v[1], v[2], v[3], v[4]),
            "sample size",
            format!(
                "AUROC plan, Obuchowski variance: real-valued positives, integer positives and negatives and their power for AUROC {} vs goal {}, one-sided alpha {}, power {}, {} negatives per positive ({f} line {line})",
                v[0], v[1], v[2], v[3], v[4]
            ),
            &format!("R pROC power.roc.test (goal 0.5) or its var.theta.obuchowski / solve.nd with the null variance at the goal, {rp}"),
            &[v[5], v[7], v[8], v[9]],
            &[
                real,
                plan.map(|p| p.positives as f64),
                plan.map(|p| p.negatives as f64),
                plan.map(|p| p.power),
            ],
            TOL_CLOSED_FORM,
        ));
    }
    let f = "power_roc_at_n.csv";
    for (line, row) in fx.rows(f) {
        let v: Vec<f64> = (0..6)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let (np, nn) = (
            int(field(&row, 3, f, line)?, f, line)?,
            int(field(&row, 4, f, line)?, f, line)?,
        );
        out.push(case(
            format!("auroc-power/{}-vs-{}/{}/{np}+{nn}", v[0], v[1], v[2]),
            "sample size",
            format!(
                "AUROC power, Obuchowski variance, at {np} positives and {nn} negatives for AUROC {} vs goal {}, one-sided alpha {} ({f} line {line})",
                v[0], v[1], v[2]
            ),
            &format!("R pROC power.roc.test(auc, ncases, ncontrols, sig.level) (goal 0.5) or its solve.zbeta with the null variance at the goal, {rp}"),
            &[v[5]],
            &[stats::samplesize::auroc_power(ob, v[0], v[1], v[2], np, nn)],
            TOL_CLOSED_FORM,
        ));
    }

    let f = "ppv_adjusted.csv";
    for (line, row) in fx.rows(f) {
        let c: Vec<u64> = (0..4)
            .map(|i| field(&row, i, f, line).and_then(|s| int(s, f, line)))
            .collect::<Result<_>>()?;
        let v: Vec<f64> = (4..12)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let (ppv, npv) = stats::ppv::adjusted_ppv_npv(c[0], c[1], c[2], c[3], v[0], v[1]);
        let e = |x: &Option<stats::Estimate>, i: usize| {
            x.as_ref().map(|e| [e.estimate, e.lower, e.upper][i])
        };
        out.push(case(
            format!(
                "ppv-at-prevalence/{}-{}-{}-{}/{}",
                c[0], c[1], c[2], c[3], v[0]
            ),
            "prevalence-adjusted PPV and NPV",
            format!(
                "PPV and NPV at prevalence {} from TP={} FN={} TN={} FP={} at {} ({f} line {line})",
                v[0], c[0], c[1], c[2], c[3], v[1]
            ),
            &format!("Mercaldo, Lau & Zhou (2007) adjusted logit, transcribed with scipy, {py}"),
            &v[2..8],
            &[
                e(&ppv, 0),
                e(&ppv, 1),
                e(&ppv, 2),
                e(&npv, 0),
                e(&npv, 1),
                e(&npv, 2),
            ],
            TOL_CLOSED_FORM,
        ));
    }

    let mut sets: BTreeMap<String, (Vec<bool>, Vec<f64>)> = BTreeMap::new();
    let f = "calibration_cases.csv";
    for (line, row) in fx.rows(f) {
        let e = sets
            .entry(field(&row, 0, f, line)?.to_string())
            .or_default();
        e.0.push(num(field(&row, 1, f, line)?, f, line)? != 0.0);
        e.1.push(num(field(&row, 2, f, line)?, f, line)?);
    }
    let f = "calibration.csv";
    for (line, row) in fx.rows(f) {
        let name = field(&row, 0, f, line)?;
        let v: Vec<f64> = (1..10)
            .map(|i| field(&row, i, f, line).and_then(|s| num(s, f, line)))
            .collect::<Result<_>>()?;
        let (labels, scores) = sets
            .get(name)
            .ok_or_else(|| Error::input(format!("{f}:{line}: no cases for `{name}`")))?;
        let c = stats::calibration::calibration(labels, scores, 0.95, 1, 0);
        let g = |x: Option<&Option<stats::Estimate>>, i: usize| {
            x.and_then(|e| e.as_ref())
                .map(|e| [e.estimate, e.lower, e.upper][i])
        };
        let c = c.as_ref();
        out.push(case(
            format!("calibration/{name}/ece-spiegelhalter"),
            "calibration",
            format!("ECE (10 equal-width bins) and Spiegelhalter's z and p of `{name}` ({f} line {line})"),
            &format!("calzone-tool CalibrationMetrics ECE-H / SpiegelhalterZ, {py}"),
            &v[..3],
            &[g(c.map(|c| &c.ece), 0), g(c.map(|c| &c.spiegelhalter_z), 0), c.and_then(|c| c.spiegelhalter_p)],
            TOL_CLOSED_FORM,
        ));
        out.push(case(
            format!("calibration/{name}/slope-intercept"),
            "calibration",
            format!("calibration slope and intercept (logistic recalibration) with Wald 95% intervals of `{name}` ({f} line {line})"),
            &format!("calzone cox_regression_analysis (statsmodels Logit) and statsmodels GLM(offset=logit), {py}"),
            &v[3..9],
            &[
                g(c.map(|c| &c.slope), 0),
                g(c.map(|c| &c.slope), 1),
                g(c.map(|c| &c.slope), 2),
                g(c.map(|c| &c.intercept), 0),
                g(c.map(|c| &c.intercept), 1),
                g(c.map(|c| &c.intercept), 2),
            ],
            TOL_ITERATIVE,
        ));
    }
    Ok(())
}
