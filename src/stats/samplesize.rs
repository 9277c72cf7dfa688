//! Sample size: how many positive cases a golden set needs (ISO 13485 7.3.6 asks for a
//! rationale for sample size).
//!
//! # Exact binomial planning (the method `medgate plan` uses)
//! The goal is met when the one-sided exact (Clopper-Pearson) lower confidence bound at level
//! `1 - a` exceeds the performance goal `p0`, i.e. when the exact test of `H0: Se <= p0`
//! rejects: `X >= k*(n)` with `k*(n)` the smallest `k` such that `P(X >= k | n, p0) <= a`.
//! At the expected sensitivity `p1` the power is `P(X >= k*(n) | n, p1)` (Flahault, Cadilhac &
//! Thomas 2005, J Clin Epidemiol 58:859). Because `k*` is an integer the power is a saw-tooth
//! in `n`, so two sizes are given:
//! - `exact`: the smallest `n` with power >= target (Flahault et al.'s tables);
//! - `safe`: the smallest `n` from which the power stays >= target for every larger `n`
//!   (Chu & Cole 2007, J Clin Epidemiol 60:1201), found by scanning up to [`SCAN_LIMIT_FACTOR`]
//!   times the exact size plus [`SCAN_LIMIT_EXTRA`].
//!
//! Published check: Se 0.95 against a goal of 0.85, one-sided `a = 0.05`, power 0.95 gives 93
//! exact and 102 safe (Chu & Cole 2007, table 1; reproduced in `tests/fixtures/stats/`). A
//! two-sided confidence `c` on the report corresponds to one-sided `a = (1 - c) / 2`.
//!
//! # Normal approximation (kept for comparison)
//! `n = ceil((z_{1-a} sqrt(p0 (1 - p0)) + z_{1-b} sqrt(p1 (1 - p1)))^2 / (p1 - p0)^2)`
//! (Machin et al., Sample Size Tables for Clinical Studies, 3rd ed., 2009, ch. 3).
//!
//! # AUROC
//! Positives `n_P` and negatives `n_N = ceil(ratio n_P)` so that a one-sided level-`a` test of
//! `H0: A <= A0` has power `1 - b` at `A1` (Obuchowski 1998, Stat Methods Med Res 7:371):
//! the smallest `n_P` with `z_{1-a} SE(A0) + z_{1-b} SE(A1) <= A1 - A0`, where `SE(A)^2` is
//! the Hanley & McNeil (1982, Radiology 143:29) variance
//! `(A (1 - A) + (n_P - 1)(Q1 - A^2) + (n_N - 1)(Q2 - A^2)) / (n_P n_N)`,
//! `Q1 = A / (2 - A)`, `Q2 = 2 A^2 / (1 + A)`.
//!
//! With [`AurocVariance::Obuchowski`] `SE(A)^2 = V(A, k) / n_P` instead, the binormal
//! (equal-variance) approximation of Obuchowski (1994, Acad Radiol 1:345) that R pROC's
//! `power.roc.test` uses: `V(A, k) = 0.0099 exp(-a^2 / 2) ((5 a^2 + 8) + (a^2 + 8) / k)` with
//! `a = 1.414 Phi^-1(A)` (the published constants, kept as printed) and `k = n_N / n_P`. Its
//! real-valued size is closed form, `n_P = (z_{1-a} sqrt(V(A0)) + z_{1-b} sqrt(V(A1)))^2 /
//! (A1 - A0)^2` ([`obuchowski_positives`]); pROC tests only `A0 = 0.5` (where
//! `V = 0.0792 (1 + 1/k)`), this takes the null variance at the goal. Checked against pROC 1.18.0
//! in `tests/fixtures/stats/power_roc*.csv`.
//!
//! Both variances give the integer plan the same way: the smallest `n_P` (scanned from 1) whose
//! power `Phi(((A1 - A0) - z_{1-a} SE(A0)) / SE(A1))` with `n_N = ceil(ratio n_P)` reaches the
//! target ([`auroc_power`] at a given size).

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::beta::beta_reg;

/// The safe size is searched up to `SCAN_LIMIT_FACTOR * exact + SCAN_LIMIT_EXTRA`.
pub const SCAN_LIMIT_FACTOR: u64 = 3;
/// See [`SCAN_LIMIT_FACTOR`].
pub const SCAN_LIMIT_EXTRA: u64 = 200;
/// Largest `n` searched for an exact size.
const MAX_N: u64 = 1_000_000;

/// `P(X >= k)` for `X ~ Bin(n, p)`.
fn binom_sf_ge(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        1.0
    } else if k > n || p <= 0.0 {
        0.0
    } else if p >= 1.0 {
        1.0
    } else {
        beta_reg(k as f64, (n - k + 1) as f64, p)
    }
}

/// The smallest `k` with `P(X >= k | n, p0) <= alpha` (`n + 1` when none: no outcome
/// rejects).
fn critical_value(n: u64, p0: f64, alpha: f64) -> u64 {
    // P(X >= k) decreases in k: bisect on [0, n + 1].
    let (mut lo, mut hi) = (0u64, n + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if binom_sf_ge(mid, n, p0) <= alpha {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Exact power at `n` of the one-sided level-`alpha` exact test of `Se <= goal` when the true
/// sensitivity is `expected`.
pub fn exact_power(n: u64, expected: f64, goal: f64, alpha: f64) -> f64 {
    binom_sf_ge(critical_value(n, goal, alpha), n, expected)
}

/// An exact sample-size plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactPlan {
    /// Smallest `n` with power >= target (Flahault et al. 2005).
    pub exact: u64,
    /// Power at `exact`.
    pub exact_power: f64,
    /// Smallest `n` from which power stays >= target (Chu & Cole 2007).
    pub safe: u64,
    /// Power at `safe`.
    pub safe_power: f64,
    /// Critical number of successes at `safe`.
    pub safe_critical: u64,
    /// Largest `n` scanned for `safe`.
    pub scanned_to: u64,
}

fn open(x: f64) -> bool {
    x > 0.0 && x < 1.0
}

/// Exact binomial plan (see the module docs); `alpha` is one-sided. `None` when
/// `expected <= goal`, an argument is outside `(0, 1)`, or no `n <= MAX_N` suffices.
pub fn exact_plan(expected: f64, goal: f64, alpha: f64, power: f64) -> Option<ExactPlan> {
    if !(open(expected) && open(goal) && open(alpha) && open(power)) || expected <= goal {
        return None;
    }
    let exact = (1..=MAX_N).find(|&n| exact_power(n, expected, goal, alpha) >= power)?;
    let scanned_to = exact
        .saturating_mul(SCAN_LIMIT_FACTOR)
        .saturating_add(SCAN_LIMIT_EXTRA);
    let last_short = (exact..=scanned_to)
        .rev()
        .find(|&n| exact_power(n, expected, goal, alpha) < power);
    let safe = last_short.map_or(exact, |n| n + 1);
    Some(ExactPlan {
        exact,
        exact_power: exact_power(exact, expected, goal, alpha),
        safe,
        safe_power: exact_power(safe, expected, goal, alpha),
        safe_critical: critical_value(safe, goal, alpha),
        scanned_to,
    })
}

/// Normal-approximation positives (see the module docs) for one-sided `alpha`; `None` for
/// invalid arguments.
pub fn normal_approx_positives(expected: f64, goal: f64, alpha: f64, power: f64) -> Option<u64> {
    if !(open(expected) && open(goal) && open(alpha) && open(power)) || expected <= goal {
        return None;
    }
    let std = Normal::standard();
    let za = std.inverse_cdf(1.0 - alpha);
    let zb = std.inverse_cdf(power);
    let num = za * (goal * (1.0 - goal)).sqrt() + zb * (expected * (1.0 - expected)).sqrt();
    let n = (num / (expected - goal)).powi(2);
    // Guard against 107.00000000000001 style rounding pushing an exact integer up.
    Some((n - 1e-9).ceil().max(1.0) as u64)
}

/// Positive cases needed so that, at sensitivity `expected`, the lower bound of the two-sided
/// `confidence` interval exceeds `goal` with probability `power`: the Chu & Cole safe size of
/// the exact plan at one-sided `a = (1 - confidence) / 2`.
pub fn sample_size_positives(expected: f64, goal: f64, confidence: f64, power: f64) -> Option<u64> {
    if !open(confidence) {
        return None;
    }
    exact_plan(expected, goal, (1.0 - confidence) / 2.0, power).map(|p| p.safe)
}

/// Hanley & McNeil (1982) variance of an AUROC `a` from `np` positives and `nn` negatives.
fn hanley_mcneil_variance(a: f64, np: f64, nn: f64) -> f64 {
    let q1 = a / (2.0 - a);
    let q2 = 2.0 * a * a / (1.0 + a);
    (a * (1.0 - a) + (np - 1.0) * (q1 - a * a) + (nn - 1.0) * (q2 - a * a)) / (np * nn)
}

/// Which variance of the AUROC an AUROC plan uses (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AurocVariance {
    /// Hanley & McNeil (1982), exponential-score approximation.
    #[default]
    HanleyMcNeil,
    /// Obuchowski (1994) binormal approximation, as R pROC's `power.roc.test`.
    Obuchowski,
}

impl AurocVariance {
    /// How `medgate plan` names the method.
    pub fn method(self) -> &'static str {
        match self {
            Self::HanleyMcNeil => {
                "Obuchowski (1998) with the Hanley & McNeil (1982) variance, normal approximation"
            }
            Self::Obuchowski => {
                "Obuchowski (1998) with the Obuchowski (1994) binormal variance (as R pROC power.roc.test), normal approximation"
            }
        }
    }

    /// Variance of the AUROC `a` from `np` positives and `nn` negatives.
    fn variance(self, a: f64, np: f64, nn: f64) -> f64 {
        match self {
            Self::HanleyMcNeil => hanley_mcneil_variance(a, np, nn),
            Self::Obuchowski => obuchowski_unit_variance(a, nn / np) / np,
        }
    }
}

/// Obuchowski's `V(A, k)`: `n_P` times the variance of the AUROC `a` at `k = n_N / n_P`
/// negatives per positive (pROC's `var.theta.obuchowski`).
pub fn obuchowski_unit_variance(a: f64, kappa: f64) -> f64 {
    let std = Normal::standard();
    let z = std.inverse_cdf(a) * 1.414;
    0.0099 * (-z * z / 2.0).exp() * ((5.0 * z * z + 8.0) + (z * z + 8.0) / kappa)
}

/// Real-valued positives for the Obuchowski plan at `kappa` negatives per positive (pROC's
/// `ncases`; `None` for invalid arguments).
pub fn obuchowski_positives(
    expected: f64,
    goal: f64,
    alpha: f64,
    power: f64,
    kappa: f64,
) -> Option<f64> {
    if !valid_auroc_args(expected, goal, alpha, power, kappa) {
        return None;
    }
    let std = Normal::standard();
    let (za, zb) = (std.inverse_cdf(1.0 - alpha), std.inverse_cdf(power));
    let v0 = obuchowski_unit_variance(goal, kappa);
    let v1 = obuchowski_unit_variance(expected, kappa);
    Some((za * v0.sqrt() + zb * v1.sqrt()).powi(2) / (expected - goal).powi(2))
}

fn valid_auroc_args(expected: f64, goal: f64, alpha: f64, power: f64, ratio: f64) -> bool {
    open(expected)
        && open(goal)
        && open(alpha)
        && open(power)
        && expected > goal
        && ratio > 0.0
        && ratio.is_finite()
}

/// Normal-approximation power at `np` positives and `nn` negatives of the one-sided level-`alpha`
/// test of `A <= goal` when the AUROC is `expected`; `None` for invalid arguments.
pub fn auroc_power(
    variance: AurocVariance,
    expected: f64,
    goal: f64,
    alpha: f64,
    np: u64,
    nn: u64,
) -> Option<f64> {
    if !(open(expected) && open(goal) && open(alpha)) || expected <= goal || np == 0 || nn == 0 {
        return None;
    }
    let std = Normal::standard();
    let za = std.inverse_cdf(1.0 - alpha);
    let s0 = variance.variance(goal, np as f64, nn as f64).sqrt();
    let s1 = variance.variance(expected, np as f64, nn as f64).sqrt();
    Some(std.cdf(((expected - goal) - za * s0) / s1))
}

/// An AUROC plan: positives, negatives, and the normal-approximation power achieved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AurocPlan {
    /// Positives.
    pub positives: u64,
    /// Negatives (`ceil(ratio * positives)`).
    pub negatives: u64,
    /// `Phi(((A1 - A0) - z_{1-a} SE(A0)) / SE(A1))` at that size.
    pub power: f64,
}

/// AUROC plan (see the module docs): `ratio` negatives per positive, one-sided `alpha`.
pub fn auroc_plan(
    variance: AurocVariance,
    expected: f64,
    goal: f64,
    alpha: f64,
    power: f64,
    ratio: f64,
) -> Option<AurocPlan> {
    if !valid_auroc_args(expected, goal, alpha, power, ratio) {
        return None;
    }
    let negatives = |np: u64| (ratio * np as f64).ceil().max(1.0) as u64;
    // Hanley-McNeil's variance has `n - 1` terms: one positive is no plan.
    let first = match variance {
        AurocVariance::HanleyMcNeil => 2,
        AurocVariance::Obuchowski => 1,
    };
    let (np, achieved) = (first..=MAX_N).find_map(|np| {
        let p = auroc_power(variance, expected, goal, alpha, np, negatives(np))?;
        (p >= power).then_some((np, p))
    })?;
    Some(AurocPlan {
        positives: np,
        negatives: negatives(np),
        power: achieved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chu & Cole (2007) table 1 / Flahault et al. (2005): the reference rows are in
    /// `tests/fixtures/stats/samplesize.csv` (scipy binomial scan) and checked in
    /// `tests/stats.rs`; this pins the published example.
    #[test]
    fn published_example() {
        let p = exact_plan(0.95, 0.85, 0.05, 0.95).unwrap();
        assert_eq!((p.exact, p.safe), (93, 102));
        assert!(p.exact_power >= 0.95 && exact_power(92, 0.95, 0.85, 0.05) < 0.95);
        // The saw-tooth: some n between exact and safe falls short.
        assert!((94..102).any(|n| exact_power(n, 0.95, 0.85, 0.05) < 0.95));
    }

    #[test]
    fn invalid_inputs() {
        assert_eq!(sample_size_positives(0.8, 0.9, 0.95, 0.8), None);
        assert_eq!(sample_size_positives(0.9, 0.9, 0.95, 0.8), None);
        assert_eq!(sample_size_positives(0.9, 0.8, 1.0, 0.8), None);
        assert_eq!(
            auroc_plan(AurocVariance::HanleyMcNeil, 0.8, 0.9, 0.05, 0.8, 1.0),
            None
        );
        assert_eq!(
            auroc_plan(AurocVariance::Obuchowski, 0.9, 0.8, 0.05, 0.8, 0.0),
            None
        );
        assert_eq!(obuchowski_positives(0.9, 0.8, 0.05, 1.0, 1.0), None);
        assert_eq!(
            auroc_power(AurocVariance::Obuchowski, 0.9, 0.8, 0.05, 0, 5),
            None
        );
    }
}
