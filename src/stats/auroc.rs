//! AUROC of one set of cases: the Mann-Whitney estimate, its DeLong variance, and ROC curve
//! points for plots.
//!
//! The estimate and variance are computed by the same linear passes over a once-sorted order
//! as the subgroup engine ([`super::subgroup`]), so the whole-set and per-level numbers come
//! from one implementation: `O(n log n)` for the sort, `O(n)` after it.
//!
//! # Formula
//! `A = (1 / (P N)) sum_i sum_j psi(X_i, Y_j)` over positive scores `X` and negative scores
//! `Y`, `psi = 1` if `X > Y`, `1/2` if `X = Y`, else 0 (Mann-Whitney; direction: higher score
//! means positive, pROC `direction = "<"`). DeLong variance: see
//! [`super::subgroup::delong_variances`]. Interval `A +- z sqrt(Var)` clipped to `[0, 1]`.
//! Reference: R pROC 1.18 `ci.auc(method = "delong")` on the aSAH data and generated vectors
//! (`tests/fixtures/stats/`), agreement to 1e-6 (observed ~1e-15).

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::interval::z_value;
use super::subgroup::{LevelCounts, Prepared, RunScratch, count_pass, delong_variances};

/// AUROC with its DeLong variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelongAuc {
    /// Mann-Whitney AUROC (ties 1/2).
    pub auc: f64,
    /// DeLong variance; `None` when a class has fewer than two cases.
    pub variance: Option<f64>,
    /// Positives.
    pub positives: u64,
    /// Negatives.
    pub negatives: u64,
}

impl DelongAuc {
    /// The two-sided DeLong interval `auc +- z sqrt(variance)`, clipped to `[0, 1]`; `None`
    /// when the variance is undefined.
    pub fn interval(&self, confidence: f64) -> Option<(f64, f64)> {
        let v = self.variance?;
        let h = z_value(confidence) * v.max(0.0).sqrt();
        Some(((self.auc - h).max(0.0), (self.auc + h).min(1.0)))
    }
}

/// AUROC and DeLong variance of one set of cases; `Ok(None)` when a class is absent.
pub fn delong(labels: &[bool], scores: &[f64]) -> Result<Option<DelongAuc>, StatsError> {
    let prep = Prepared::new(labels, scores, &[], f64::INFINITY)?;
    let mut counts = LevelCounts::new(1);
    count_pass(&prep, |_| 1, &mut counts, &mut RunScratch::new(1));
    let Some(auc) = counts.auc(0) else {
        return Ok(None);
    };
    let variance = delong_variances(&prep, &counts)[0];
    Ok(Some(DelongAuc {
        auc,
        variance,
        positives: counts.pos[0],
        negatives: counts.neg[0],
    }))
}

/// One point of an ROC curve: predicting positive when `score >= threshold` gives this
/// false-positive and true-positive rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// Operating point: positive when `score >= threshold`.
    pub threshold: f64,
    /// 1 - specificity.
    pub fpr: f64,
    /// Sensitivity.
    pub tpr: f64,
}

/// The smallest double greater than `x` (`x` itself for `+inf`).
fn next_above(x: f64) -> f64 {
    if x == f64::INFINITY {
        x
    } else if x == 0.0 {
        f64::from_bits(1)
    } else if x > 0.0 {
        f64::from_bits(x.to_bits() + 1)
    } else {
        f64::from_bits(x.to_bits() - 1)
    }
}

/// ROC curve points from `(0, 0)` to `(1, 1)`, one per distinct score in descending order;
/// empty when a class is absent. The origin's threshold is the next double above the highest
/// score (no case is predicted positive there).
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Result<Vec<RocPoint>, StatsError> {
    let prep = Prepared::new(labels, scores, &[], f64::INFINITY)?;
    let p = prep.positive.iter().filter(|&&y| y).count() as f64;
    let q = prep.n as f64 - p;
    if p == 0.0 || q == 0.0 {
        return Ok(Vec::new());
    }
    // Sorted scores, for the thresholds; same order as `prep`.
    let mut sorted: Vec<f64> = scores.iter().map(|s| s + 0.0).collect();
    sorted.sort_unstable_by(|a, b| a.total_cmp(b));
    // The origin's threshold is the smallest double above every score (finite, so it survives
    // a JSON round trip, unlike infinity).
    let top = sorted.last().copied().unwrap_or(0.0);
    let mut points = vec![RocPoint {
        threshold: next_above(top),
        fpr: 0.0,
        tpr: 0.0,
    }];
    let (mut tp, mut fp) = (0.0, 0.0);
    for r in (0..prep.runs.len() - 1).rev() {
        for i in prep.runs[r]..prep.runs[r + 1] {
            if prep.positive[i] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
        }
        points.push(RocPoint {
            threshold: sorted[prep.runs[r]],
            fpr: fp / q,
            tpr: tp / p,
        });
    }
    Ok(points)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct O(n^2) DeLong from the definition, the independent check of the fast passes.
    pub(crate) fn naive_delong(labels: &[bool], scores: &[f64]) -> Option<(f64, Option<f64>)> {
        let x: Vec<f64> = (0..labels.len())
            .filter(|&i| labels[i])
            .map(|i| scores[i])
            .collect();
        let y: Vec<f64> = (0..labels.len())
            .filter(|&i| !labels[i])
            .map(|i| scores[i])
            .collect();
        let (m, n) = (x.len() as f64, y.len() as f64);
        if x.is_empty() || y.is_empty() {
            return None;
        }
        let psi = |a: f64, b: f64| {
            if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            }
        };
        let v10: Vec<f64> = x
            .iter()
            .map(|&a| y.iter().map(|&b| psi(a, b)).sum::<f64>() / n)
            .collect();
        let v01: Vec<f64> = y
            .iter()
            .map(|&b| x.iter().map(|&a| psi(a, b)).sum::<f64>() / m)
            .collect();
        let auc = v10.iter().sum::<f64>() / m;
        if x.len() < 2 || y.len() < 2 {
            return Some((auc, None));
        }
        let s10 = v10.iter().map(|v| (v - auc).powi(2)).sum::<f64>() / (m - 1.0);
        let s01 = v01.iter().map(|v| (v - auc).powi(2)).sum::<f64>() / (n - 1.0);
        Some((auc, Some(s10 / m + s01 / n)))
    }

    /// One pROC case: name, labels, scores.
    pub(crate) type ProcCase = (String, Vec<bool>, Vec<f64>);
    /// One pROC expectation: case, confidence, [auc, variance, lower, upper].
    pub(crate) type ProcExpected = (String, f64, [f64; 4]);

    /// The pROC fixtures.
    pub(crate) fn proc_fixtures() -> (Vec<ProcCase>, Vec<ProcExpected>) {
        let mut cases: Vec<(String, Vec<bool>, Vec<f64>)> = Vec::new();
        for line in include_str!("../../tests/fixtures/stats/delong_cases.csv")
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split(',').collect();
            if cases.last().is_none_or(|c| c.0 != f[0]) {
                cases.push((f[0].to_string(), Vec::new(), Vec::new()));
            }
            let c = cases.last_mut().unwrap();
            c.1.push(f[1] == "1");
            c.2.push(f[2].parse().unwrap());
        }
        let expected = include_str!("../../tests/fixtures/stats/delong_expected.csv")
            .lines()
            .skip(1)
            .map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                let v: Vec<f64> = f[1..].iter().map(|s| s.parse().unwrap()).collect();
                (f[0].to_string(), v[0], [v[1], v[2], v[3], v[4]])
            })
            .collect();
        (cases, expected)
    }

    #[test]
    fn matches_proc_delong() {
        let (cases, expected) = proc_fixtures();
        assert_eq!(expected.len(), 16);
        for (case, conf, [auc, var, lo, hi]) in expected {
            let (_, labels, scores) = cases.iter().find(|c| c.0 == case).unwrap();
            let d = delong(labels, scores).unwrap().unwrap();
            let (l, h) = d.interval(conf).unwrap();
            for (got, want, what) in [
                (d.auc, auc, "auc"),
                (d.variance.unwrap(), var, "var"),
                (l, lo, "lower"),
                (h, hi, "upper"),
            ] {
                assert!(
                    (got - want).abs() < 1e-6,
                    "{case} {conf} {what}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn asah_ndka_domain_reference() {
        let (cases, _) = proc_fixtures();
        let (_, labels, scores) = cases.iter().find(|c| c.0 == "asah_ndka").unwrap();
        assert_eq!(labels.len(), 113);
        assert_eq!(labels.iter().filter(|&&y| y).count(), 41);
        let d = delong(labels, scores).unwrap().unwrap();
        let (l, h) = d.interval(0.95).unwrap();
        assert!((d.auc - 0.611957994579946).abs() < 1e-9);
        assert!((l - 0.501244999271703).abs() < 1e-6);
        assert!((h - 0.722670989888189).abs() < 1e-6);
    }

    #[test]
    fn class_absent_and_singletons() {
        assert_eq!(delong(&[true, true], &[0.1, 0.2]).unwrap(), None);
        assert_eq!(delong(&[], &[]).unwrap(), None);
        let d = delong(&[true, false, false], &[0.9, 0.1, 0.9])
            .unwrap()
            .unwrap();
        assert_eq!(d.auc, 0.75);
        assert_eq!(d.variance, None);
        assert!(matches!(
            delong(&[true, false], &[0.3, f64::NAN]),
            Err(StatsError::NanScore { index: 1 })
        ));
    }

    #[test]
    fn roc_points() {
        let pts = roc_curve(&[true, false, true, false], &[0.9, 0.8, 0.8, 0.1]).unwrap();
        let got: Vec<(f64, f64, f64)> = pts.iter().map(|p| (p.threshold, p.fpr, p.tpr)).collect();
        assert_eq!(
            got,
            [
                (f64::from_bits(0.9f64.to_bits() + 1), 0.0, 0.0),
                (0.9, 0.0, 0.5),
                (0.8, 0.5, 1.0),
                (0.1, 1.0, 1.0)
            ]
        );
        assert_eq!(next_above(-1.0), f64::from_bits((-1.0f64).to_bits() - 1));
        assert_eq!(next_above(0.0), f64::from_bits(1));
        assert!(roc_curve(&[true], &[0.5]).unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn fast_delong_equals_naive(cases in proptest::collection::vec((any::<bool>(), 0u8..12), 0..80)) {
            let labels: Vec<bool> = cases.iter().map(|c| c.0).collect();
            // Few distinct scores, so ties are common.
            let scores: Vec<f64> = cases.iter().map(|c| c.1 as f64 / 4.0 - 1.0).collect();
            let fast = delong(&labels, &scores).unwrap();
            let naive = naive_delong(&labels, &scores);
            match (fast, naive) {
                (None, None) => {}
                (Some(f), Some((auc, var))) => {
                    prop_assert!((f.auc - auc).abs() < 1e-12);
                    match (f.variance, var) {
                        (None, None) => {}
                        (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-12, "{a} vs {b}"),
                        other => prop_assert!(false, "{other:?}"),
                    }
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
