//! Subgroup gaps: a confidence bound on the *range* of a metric across the levels of an
//! attribute that holds for every pair of levels at once, and a test of homogeneity.
//!
//! # Why not the extreme pair
//! The observed highest and lowest levels are chosen after looking at the data. Bounding only
//! their difference lets a small level that lies between them hide a large possible gap (A
//! 450/500, B 430/500, C 31/35: the A-B interval ends near 0.08, the A-C one near 0.16), and
//! testing only that pair inflates the type I error (with equal true sensitivity in every
//! level, `P(p < 0.05)` for the extreme pair is about 0.13 at 3 levels and 0.30 at 5).
//!
//! # Simultaneous bound (the method that decides a gap criterion)
//! For `k` eligible levels there are `m = k (k - 1) / 2` pairs. Each pair `(i, j)` gets a
//! two-sided interval `[L_ij, U_ij]` for `d_ij = v_i - v_j` at confidence `1 - a / m`
//! (Bonferroni), so all `m` intervals hold together with probability at least `1 - a`. On that
//! event the range `R = max |d_ij|` satisfies
//! `max_ij max(0, L_ij, -U_ij) <= R <= max_ij max(U_ij, -L_ij)`, which are the gap's `lower`
//! and `upper`; the pair attaining `upper` is `upper_pair` (it decides an `at_most` criterion
//! on the upper bound).
//! - Sensitivity, specificity: Newcombe's hybrid score interval (Newcombe 1998, Stat Med
//!   17:873, method 10; statsmodels `confint_proportions_2indep(method="newcomb")`).
//! - AUROC: `d +- z_{1-a/(2m)} sqrt(V_i + V_j)` with the DeLong variances of the two levels
//!   (independent cases), clipped to `[-1, 1]`.
//!
//! # Homogeneity test (informational unless the protocol names the gap)
//! - Proportions: Pearson's chi-square on the `k x 2` table (successes, failures) of the
//!   eligible levels, `k - 1` degrees of freedom, no continuity correction (scipy
//!   `chi2_contingency(correction=False)`); `p = 1` when every level has only successes or
//!   only failures.
//! - AUROC: the Wald statistic `Q = sum_i (A_i - A_w)^2 / V_i` with `A_w` the inverse-variance
//!   weighted mean, `k - 1` degrees of freedom (for two levels, the square of pROC's unpaired
//!   DeLong test `roc.test(paired = FALSE)`).
//!
//! Neither test looks at which pair is extreme, so its p-value does not depend on a data-driven
//! choice. Multiplicity across attributes is applied by the trace stage to the family of gaps
//! the protocol's criteria name ([`crate::trace::criteria`]).

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::compare::newcombe_independent;
use super::interval::z_value;
use super::types::HomogeneityTest;

/// One level's data for a gap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LevelValue {
    /// A proportion `k / n` (sensitivity: TP of positives; specificity: TN of negatives).
    Proportion {
        /// Successes.
        k: u64,
        /// Trials (the metric's denominator).
        n: u64,
    },
    /// An AUROC with its DeLong variance.
    Auc {
        /// Estimate.
        auc: f64,
        /// DeLong variance.
        variance: f64,
    },
}

impl LevelValue {
    /// The point estimate.
    pub fn value(&self) -> f64 {
        match *self {
            LevelValue::Proportion { k, n } => k as f64 / n as f64,
            LevelValue::Auc { auc, .. } => auc,
        }
    }
}

/// The simultaneous bound on the range over a set of levels.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeBound {
    /// Observed range.
    pub difference: f64,
    /// Indices of the highest and lowest level (ties: first in order).
    pub between: [usize; 2],
    /// Simultaneous lower bound of the range.
    pub lower: f64,
    /// Simultaneous upper bound of the range.
    pub upper: f64,
    /// The pair giving `upper` (higher estimate first).
    pub upper_pair: [usize; 2],
    /// The pair giving `lower` (higher estimate first).
    pub lower_pair: [usize; 2],
    /// Number of pairs.
    pub pairs: u32,
    /// Confidence of each pairwise interval.
    pub pair_confidence: f64,
    /// `bonferroni-newcombe` or `bonferroni-delong`.
    pub method: super::Method,
    /// Set when an AUROC variance is zero (the bound is then not informative).
    pub degenerate: Option<String>,
}

/// The interval of `v_i - v_j` at `confidence`.
fn pair_interval(a: LevelValue, b: LevelValue, confidence: f64) -> Option<(f64, f64)> {
    match (a, b) {
        (LevelValue::Proportion { k: k1, n: n1 }, LevelValue::Proportion { k: k2, n: n2 }) => {
            newcombe_independent(k1, n1, k2, n2, confidence)
        }
        (
            LevelValue::Auc {
                auc: a1,
                variance: v1,
            },
            LevelValue::Auc {
                auc: a2,
                variance: v2,
            },
        ) => {
            let h = z_value(confidence) * (v1.max(0.0) + v2.max(0.0)).sqrt();
            let d = a1 - a2;
            Some(((d - h).max(-1.0), (d + h).min(1.0)))
        }
        _ => None,
    }
}

/// The simultaneous (Bonferroni) bound on the range of `levels` (see the module docs);
/// `None` with fewer than two levels, mixed kinds, or an empty proportion.
pub fn simultaneous_range(levels: &[LevelValue], confidence: f64) -> Option<RangeBound> {
    let k = levels.len();
    if k < 2 {
        return None;
    }
    if levels
        .iter()
        .any(|l| matches!(l, LevelValue::Proportion { n: 0, .. }))
    {
        return None;
    }
    let values: Vec<f64> = levels.iter().map(LevelValue::value).collect();
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().position(|&v| v == max)?;
    let lo = (0..k).find(|&i| values[i] == min && i != hi)?;
    let pairs = (k * (k - 1) / 2) as u32;
    let pair_confidence = 1.0 - (1.0 - confidence) / f64::from(pairs);
    let mut upper = (f64::NEG_INFINITY, [hi, lo]);
    let mut lower = (f64::NEG_INFINITY, [hi, lo]);
    for i in 0..k {
        for j in i + 1..k {
            let (l, u) = pair_interval(levels[i], levels[j], pair_confidence)?;
            // Orient the pair higher estimate first (ties: level order).
            let pair = if values[j] > values[i] {
                [j, i]
            } else {
                [i, j]
            };
            let up = u.max(-l);
            let low = l.max(-u).max(0.0);
            if up > upper.0 {
                upper = (up, pair);
            }
            if low > lower.0 {
                lower = (low, pair);
            }
        }
    }
    let auc = matches!(levels[0], LevelValue::Auc { .. });
    let degenerate = levels.iter().enumerate().find_map(|(i, l)| match l {
        LevelValue::Auc { variance, .. } if *variance <= 0.0 => Some(format!(
            "level {} has a zero DeLong variance (perfect separation or all scores tied)",
            i + 1
        )),
        _ => None,
    });
    Some(RangeBound {
        difference: max - min,
        between: [hi, lo],
        lower: lower.0,
        upper: upper.0,
        upper_pair: upper.1,
        lower_pair: lower.1,
        pairs,
        pair_confidence,
        method: if auc {
            super::Method::BonferroniDelong
        } else {
            super::Method::BonferroniNewcombe
        },
        degenerate,
    })
}

/// A homogeneity test: statistic, degrees of freedom, p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homogeneity {
    /// Chi-square statistic.
    pub statistic: f64,
    /// Degrees of freedom.
    pub df: u32,
    /// Upper-tail p-value.
    pub p_value: f64,
    /// Which test.
    pub test: HomogeneityTest,
}

fn chi2_sf(x: f64, df: u32) -> f64 {
    // df >= 1 here, so the distribution exists.
    ChiSquared::new(f64::from(df)).map_or(f64::NAN, |d| d.sf(x.max(0.0)))
}

/// Pearson's chi-square test of homogeneity of `k_i / n_i` (no continuity correction).
///
/// # Formula
/// `p = sum k / sum n`, `X^2 = sum_i (k_i - n_i p)^2 / (n_i p) + (f_i - n_i (1 - p))^2 /
/// (n_i (1 - p))` with `f_i = n_i - k_i`; `df = levels - 1`. Reference: scipy
/// `chi2_contingency(correction=False)`.
pub fn chi_square_homogeneity(levels: &[(u64, u64)]) -> Option<Homogeneity> {
    if levels.len() < 2 || levels.iter().any(|&(k, n)| n == 0 || k > n) {
        return None;
    }
    let df = (levels.len() - 1) as u32;
    let (ks, ns): (u64, u64) = levels.iter().fold((0, 0), |(a, b), &(k, n)| (a + k, b + n));
    let p = ks as f64 / ns as f64;
    if ks == 0 || ks == ns {
        return Some(Homogeneity {
            statistic: 0.0,
            df,
            p_value: 1.0,
            test: HomogeneityTest::ChiSquare,
        });
    }
    let mut x2 = 0.0;
    for &(k, n) in levels {
        let (e1, e0) = (n as f64 * p, n as f64 * (1.0 - p));
        x2 += (k as f64 - e1).powi(2) / e1 + ((n - k) as f64 - e0).powi(2) / e0;
    }
    Some(Homogeneity {
        statistic: x2,
        df,
        p_value: chi2_sf(x2, df),
        test: HomogeneityTest::ChiSquare,
    })
}

/// Wald test of equal AUROC across independent levels; `None` with fewer than two levels or
/// a zero variance.
///
/// # Formula
/// `w_i = 1 / V_i`, `A_w = sum w_i A_i / sum w_i`, `Q = sum w_i (A_i - A_w)^2`, `df = k - 1`.
pub(crate) fn auc_homogeneity(levels: &[(f64, f64)]) -> Option<Homogeneity> {
    if levels.len() < 2 || levels.iter().any(|&(_, v)| v.is_nan() || v <= 0.0) {
        return None;
    }
    let df = (levels.len() - 1) as u32;
    let sw: f64 = levels.iter().map(|&(_, v)| 1.0 / v).sum();
    let aw = levels.iter().map(|&(a, v)| a / v).sum::<f64>() / sw;
    let q: f64 = levels.iter().map(|&(a, v)| (a - aw).powi(2) / v).sum();
    Some(Homogeneity {
        statistic: q,
        df,
        p_value: chi2_sf(q, df),
        test: HomogeneityTest::DelongWald,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example: the middle, smaller level C decides the bound, not the extreme
    /// pair. Reference values in `tests/fixtures/stats/gap_bounds.csv` (statsmodels).
    #[test]
    fn middle_level_decides() {
        let lv = [
            LevelValue::Proportion { k: 450, n: 500 },
            LevelValue::Proportion { k: 430, n: 500 },
            LevelValue::Proportion { k: 31, n: 35 },
        ];
        let r = simultaneous_range(&lv, 0.95).unwrap();
        assert_eq!(r.between, [0, 1]);
        assert_eq!(r.pairs, 3);
        // The A-B pair alone would end near 0.08; the bound is above 0.10 and comes from a
        // pair with C.
        assert!(r.upper > 0.10, "{}", r.upper);
        assert!(r.upper_pair.contains(&2), "{:?}", r.upper_pair);
    }
}
