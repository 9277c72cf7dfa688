//! Comparing two models (a predicate device, or the previous release) on the same cases, and
//! comparing two independent subgroup levels.
//!
//! Paired: the exact McNemar test on the discordant pairs and Newcombe's hybrid score interval
//! for the paired difference in sensitivity (on the positives) and specificity (on the
//! negatives), as the FDA 2007 guidance suggests for a comparison on the same cases.
//! Independent: Newcombe's hybrid score interval and the pooled two-proportion z-test, used for
//! subgroup gaps when intervals are not bootstrapped.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::beta::beta_reg;

use super::StatsError;
use super::interval::wilson;

/// Exact two-sided McNemar p-value from the discordant counts `b` (first model right, second
/// wrong) and `c` (the reverse).
///
/// # Formula
/// Under H0 each discordant pair is equally likely either way: `p = min(1, 2 P(X <= min(b, c)))`
/// with `X ~ Binomial(b + c, 1/2)`, computed as `I_{1/2}(b + c - m, m + 1)` (regularised
/// incomplete beta, `m = min(b, c)`); `p = 1` when `b + c = 0`. McNemar (1947); exact form as in
/// statsmodels `mcnemar(exact=True)`, the reference of the tests.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    let m = b.min(c);
    if n == 0 || m * 2 == n {
        return 1.0;
    }
    let cdf = beta_reg((n - m) as f64, (m + 1) as f64, 0.5);
    (2.0 * cdf).min(1.0)
}

/// A difference between two proportions with its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// First proportion.
    pub first: f64,
    /// Second proportion.
    pub second: f64,
    /// `first - second`.
    pub difference: f64,
    /// Lower confidence bound of the difference.
    pub lower: f64,
    /// Upper confidence bound of the difference.
    pub upper: f64,
    /// Two-sided p-value for "no difference" (exact McNemar when paired, pooled z-test when
    /// independent).
    pub p_value: f64,
}

/// The paired comparison of two models' predictions on the same cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    /// Difference in sensitivity (model A - model B), over the positives; `None` without
    /// positives.
    pub sensitivity: Option<Difference>,
    /// Difference in specificity (model A - model B), over the negatives; `None` without
    /// negatives.
    pub specificity: Option<Difference>,
    /// Positives where only A is right / only B is right.
    pub discordant_positives: [u64; 2],
    /// Negatives where only A is right / only B is right.
    pub discordant_negatives: [u64; 2],
}

/// Newcombe's hybrid score interval for a paired difference `(b - c) / n` from a paired 2x2
/// table: `a` both right, `b` only the first right, `c` only the second right, `d` both wrong.
///
/// # Formula
/// `p1 = (a + b)/n`, `p2 = (a + c)/n`, Wilson limits `(l1, u1)`, `(l2, u2)`;
/// `phi = C / sqrt((a+b)(c+d)(a+c)(b+d))` with `C = ad - bc - n/2` if `ad - bc > n/2`,
/// `C = 0` if `0 <= ad - bc <= n/2`, `C = ad - bc` if negative, and `phi = 0` when a margin is 0;
/// `L = D - sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2)`,
/// `U = D + sqrt((u1-p1)^2 - 2 phi (u1-p1)(p2-l2) + (p2-l2)^2)`.
/// Newcombe (1998), Stat Med 17:2635, method 10; Altman et al., Statistics with Confidence
/// (2000), p. 52.
pub fn newcombe_paired(a: u64, b: u64, c: u64, d: u64, confidence: f64) -> Option<(f64, f64)> {
    let n = a + b + c + d;
    let (l1, u1) = wilson(a + b, n, confidence)?;
    let (l2, u2) = wilson(a + c, n, confidence)?;
    let nf = n as f64;
    let (p1, p2) = ((a + b) as f64 / nf, (a + c) as f64 / nf);
    let diff = p1 - p2;
    let margins = (a + b) as f64 * (c + d) as f64 * (a + c) as f64 * (b + d) as f64;
    let cross = a as f64 * d as f64 - b as f64 * c as f64;
    let corrected = if cross > nf / 2.0 {
        cross - nf / 2.0
    } else if cross >= 0.0 {
        0.0
    } else {
        cross
    };
    let phi = if margins > 0.0 {
        corrected / margins.sqrt()
    } else {
        0.0
    };
    let dl = ((p1 - l1).powi(2) - 2.0 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2).powi(2)).max(0.0);
    let du = ((u1 - p1).powi(2) - 2.0 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2).powi(2)).max(0.0);
    Some(((diff - dl.sqrt()).max(-1.0), (diff + du.sqrt()).min(1.0)))
}

/// Newcombe's hybrid score interval for `k1/n1 - k2/n2` from independent samples.
///
/// # Formula
/// `L = D - sqrt((p1 - l1)^2 + (u2 - p2)^2)`, `U = D + sqrt((u1 - p1)^2 + (p2 - l2)^2)` with
/// Wilson limits `(l_i, u_i)`. Newcombe (1998), Stat Med 17:873, method 10. Reference:
/// statsmodels `confint_proportions_2indep(method="newcomb")`.
pub fn newcombe_independent(
    k1: u64,
    n1: u64,
    k2: u64,
    n2: u64,
    confidence: f64,
) -> Option<(f64, f64)> {
    let (l1, u1) = wilson(k1, n1, confidence)?;
    let (l2, u2) = wilson(k2, n2, confidence)?;
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let d = p1 - p2;
    Some((
        d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    ))
}

/// Two-sided pooled two-proportion z-test p-value for `k1/n1 = k2/n2`; `None` when a sample is
/// empty; 1 when the pooled proportion is 0 or 1 (no variation).
///
/// # Formula
/// `p = (k1 + k2)/(n1 + n2)`, `z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2))`,
/// `P = 2 (1 - Phi(|z|))`. Reference: statsmodels `proportions_ztest`.
pub fn two_proportion_z_test(k1: u64, n1: u64, k2: u64, n2: u64) -> Option<f64> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p = (k1 + k2) as f64 / (n1f + n2f);
    let var = p * (1.0 - p) * (1.0 / n1f + 1.0 / n2f);
    if var <= 0.0 {
        return Some(1.0);
    }
    let z = (k1 as f64 / n1f - k2 as f64 / n2f) / var.sqrt();
    Some(normal_two_sided(z))
}

/// `2 (1 - Phi(|z|))`, computed from the upper tail to keep precision for large `|z|`.
pub fn normal_two_sided(z: f64) -> f64 {
    let std = Normal::standard();
    (2.0 * std.sf(z.abs())).min(1.0)
}

/// Paired comparison of two models' binary predictions on the same cases.
///
/// Sensitivity is compared on the positives, specificity on the negatives; each with the
/// exact McNemar p-value and [`newcombe_paired`] interval of (A - B).
pub fn paired_difference(
    labels: &[bool],
    predicted_a: &[bool],
    predicted_b: &[bool],
    confidence: f64,
) -> Result<PairedComparison, StatsError> {
    let n = labels.len();
    for len in [predicted_a.len(), predicted_b.len()] {
        if len != n {
            return Err(StatsError::LengthMismatch {
                labels: n,
                scores: len,
            });
        }
    }
    check_confidence(confidence)?;
    // [both right, only A right, only B right, both wrong] per class.
    let mut pos = [0u64; 4];
    let mut neg = [0u64; 4];
    for i in 0..n {
        let (ra, rb) = (predicted_a[i] == labels[i], predicted_b[i] == labels[i]);
        let cell = match (ra, rb) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        if labels[i] {
            pos[cell] += 1;
        } else {
            neg[cell] += 1;
        }
    }
    let diff = |t: [u64; 4]| {
        let total = t.iter().sum::<u64>();
        let (lower, upper) = newcombe_paired(t[0], t[1], t[2], t[3], confidence)?;
        let first = (t[0] + t[1]) as f64 / total as f64;
        let second = (t[0] + t[2]) as f64 / total as f64;
        Some(Difference {
            first,
            second,
            difference: first - second,
            lower,
            upper,
            p_value: mcnemar_exact(t[1], t[2]),
        })
    };
    Ok(PairedComparison {
        sensitivity: diff(pos),
        specificity: diff(neg),
        discordant_positives: [pos[1], pos[2]],
        discordant_negatives: [neg[1], neg[2]],
    })
}

pub(crate) fn check_confidence(confidence: f64) -> Result<(), StatsError> {
    if confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(StatsError::Confidence(confidence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Vec<f64>> {
        text.lines()
            .skip(1)
            .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
            .collect()
    }

    #[test]
    fn mcnemar_matches_statsmodels() {
        for r in rows(include_str!("../../tests/fixtures/stats/mcnemar.csv")) {
            let p = mcnemar_exact(r[0] as u64, r[1] as u64);
            assert!((p - r[2]).abs() < 1e-9, "{r:?}: {p}");
        }
    }

    #[test]
    fn mcnemar_hand_checked() {
        // b = 0, c = 5: 2 * 0.5^5 = 0.0625. b = 1, c = 4: 2 * (1 + 5) / 32 = 0.375.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-12);
        assert!((mcnemar_exact(4, 1) - 0.375).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
    }

    #[test]
    fn independent_matches_statsmodels() {
        for r in rows(include_str!("../../tests/fixtures/stats/two_sample.csv")) {
            let [k1, n1, k2, n2] = [r[0], r[1], r[2], r[3]].map(|x| x as u64);
            let (lo, hi) = newcombe_independent(k1, n1, k2, n2, r[4]).unwrap();
            assert!(
                (lo - r[5]).abs() < 1e-9 && (hi - r[6]).abs() < 1e-9,
                "{r:?}: {lo} {hi}"
            );
            let p = two_proportion_z_test(k1, n1, k2, n2).unwrap();
            assert!((p - r[7]).abs() < 1e-9, "{r:?}: {p}");
        }
    }

    #[test]
    fn paired_matches_reference() {
        for r in rows(include_str!("../../tests/fixtures/stats/paired.csv")) {
            let [a, b, c, d] = [r[0], r[1], r[2], r[3]].map(|x| x as u64);
            let (lo, hi) = newcombe_paired(a, b, c, d, r[4]).unwrap();
            assert!(
                (lo - r[5]).abs() < 1e-9 && (hi - r[6]).abs() < 1e-9,
                "{r:?}: {lo} {hi}"
            );
        }
    }

    #[test]
    fn paired_difference_counts() {
        // Positives: A right on 3 of 4, B on 1 of 4; negatives: both right on both.
        let labels = [true, true, true, true, false, false];
        let a = [true, true, true, false, false, false];
        let b = [true, false, false, false, false, false];
        let cmp = paired_difference(&labels, &a, &b, 0.95).unwrap();
        let s = cmp.sensitivity.unwrap();
        assert_eq!(cmp.discordant_positives, [2, 0]);
        assert_eq!((s.first, s.second, s.difference), (0.75, 0.25, 0.5));
        assert!((s.p_value - 0.5).abs() < 1e-12);
        assert_eq!(cmp.specificity.unwrap().difference, 0.0);
        let none = paired_difference(&[false], &[false], &[true], 0.95).unwrap();
        assert!(none.sensitivity.is_none());
    }
}
