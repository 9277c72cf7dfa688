//! Two-sided confidence intervals for a binomial proportion `k / n`.
//!
//! These are the intervals the FDA 2007 diagnostic-test guidance reports (Wilson in its worked
//! examples, Clopper-Pearson as the exact alternative) plus the Jeffreys interval. Each
//! function returns `None` when the proportion is undefined (`n = 0`, or `k > n`), never NaN,
//! and every bound lies in `[0, 1]` and contains `k / n`: the boundary conventions of
//! `shared/docs/domain.md` are applied exactly rather than left to rounding.
//!
//! # Notation
//! `k` successes of `n` trials, confidence `1 - a`, `z = Phi^-1(1 - a/2)` (standard normal
//! quantile), `BetaInv(q; x, y)` the `q` quantile of a Beta(x, y) distribution.
//!
//! # Precision
//! Beta quantiles are found by bisecting the IEEE-754 bit pattern of `x` against statrs'
//! regularised incomplete beta function, so the quantile is the double nearest the root of that
//! (monotone) function. Upper-tail quantiles are taken from the mirrored distribution so a
//! tiny tail probability keeps its precision. Reference tests against statsmodels / scipy
//! (`tests/fixtures/stats/README.md`) use 1e-9, down to k = 0 and k = n at 99.9999%.

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::beta::beta_reg;

use crate::protocol::IntervalMethod;

/// The two-sided standard normal quantile `z = Phi^-1(1 - (1 - confidence)/2)`.
///
/// # Formula
/// `z = Phi^-1((1 + confidence) / 2)`; 1.959963984540054 for 0.95.
pub(crate) fn z_value(confidence: f64) -> f64 {
    // Normal::new(0, 1) cannot fail.
    let std = Normal::standard();
    std.inverse_cdf(0.5 + confidence / 2.0)
}

/// The `q` quantile of Beta(`a`, `b`) (`a`, `b` > 0), to within one ulp of the root of statrs'
/// `beta_reg(a, b, x) = q`.
///
/// Bisection runs on the bit pattern of non-negative doubles (which orders them), so it ends
/// in at most 64 steps whatever the magnitude of the answer, including tiny quantiles such as
/// Clopper-Pearson lower bounds at small `k` with a very small `a`.
fn beta_quantile(q: f64, a: f64, b: f64) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    if q >= 1.0 {
        return 1.0;
    }
    let mut lo: u64 = 0; // bits of 0.0
    let mut hi: u64 = 1.0f64.to_bits();
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let x = f64::from_bits(mid);
        if beta_reg(a, b, x) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // Pick the closer of the two neighbouring doubles.
    let (xl, xh) = (f64::from_bits(lo), f64::from_bits(hi));
    if (q - beta_reg(a, b, xl)).abs() <= (beta_reg(a, b, xh) - q).abs() {
        xl
    } else {
        xh
    }
}

/// The upper-tail quantile `BetaInv(1 - tail; a, b)`, computed as `1 - BetaInv(tail; b, a)`:
/// passing `1 - tail` to the lower quantile would lose the tail's precision to rounding (with
/// `tail = 5e-11` the error reaches 1e-8).
fn upper_quantile(tail: f64, a: f64, b: f64) -> f64 {
    1.0 - beta_quantile(tail, b, a)
}

fn valid(k: u64, n: u64, confidence: f64) -> bool {
    n > 0 && k <= n && confidence > 0.0 && confidence < 1.0
}

/// Keeps an interval inside `[0, 1]` and around the point estimate despite rounding.
fn tidy(k: u64, n: u64, lower: f64, upper: f64) -> (f64, f64) {
    let p = k as f64 / n as f64;
    let mut lo = lower.clamp(0.0, 1.0).min(p);
    let mut hi = upper.clamp(0.0, 1.0).max(p);
    if k == 0 {
        lo = 0.0;
    }
    if k == n {
        hi = 1.0;
    }
    (lo, hi)
}

/// Wilson score interval.
///
/// # Formula
/// centre `c = (k + z^2/2) / (n + z^2)`, half-width
/// `h = z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4)`; interval `[c - h, c + h]` clipped to
/// `[0, 1]`, with the lower bound exactly 0 at `k = 0` and the upper exactly 1 at `k = n`.
/// Wilson (1927), JASA 22:209. Reference: statsmodels `proportion_confint(method="wilson")`.
pub fn wilson(k: u64, n: u64, confidence: f64) -> Option<(f64, f64)> {
    if !valid(k, n, confidence) {
        return None;
    }
    let z = z_value(confidence);
    let (kf, nf) = (k as f64, n as f64);
    let z2 = z * z;
    let centre = (kf + z2 / 2.0) / (nf + z2);
    let half = z / (nf + z2) * (kf * (nf - kf) / nf + z2 / 4.0).sqrt();
    Some(tidy(k, n, centre - half, centre + half))
}

/// Clopper-Pearson ("exact") interval.
///
/// # Formula
/// `lower = BetaInv(a/2; k, n - k + 1)` (0 when `k = 0`),
/// `upper = BetaInv(1 - a/2; k + 1, n - k)` (1 when `k = n`).
/// Clopper & Pearson (1934), Biometrika 26:404. Reference: statsmodels
/// `proportion_confint(method="beta")`.
pub fn clopper_pearson(k: u64, n: u64, confidence: f64) -> Option<(f64, f64)> {
    if !valid(k, n, confidence) {
        return None;
    }
    let a = 1.0 - confidence;
    let (kf, nf) = (k as f64, n as f64);
    let lower = if k == 0 {
        0.0
    } else {
        beta_quantile(a / 2.0, kf, nf - kf + 1.0)
    };
    let upper = if k == n {
        1.0
    } else {
        upper_quantile(a / 2.0, kf + 1.0, nf - kf)
    };
    Some(tidy(k, n, lower, upper))
}

/// Jeffreys equal-tailed interval.
///
/// # Formula
/// The `a/2` and `1 - a/2` quantiles of Beta(`k + 1/2`, `n - k + 1/2`), with the lower bound
/// 0 when `k = 0` and the upper bound 1 when `k = n` (Brown, Cai & DasGupta 2001, Stat Sci
/// 16:101). Reference: statsmodels `proportion_confint(method="jeffreys")` (which does not
/// apply the boundary convention; the fixtures apply it on top).
pub fn jeffreys(k: u64, n: u64, confidence: f64) -> Option<(f64, f64)> {
    if !valid(k, n, confidence) {
        return None;
    }
    let a = 1.0 - confidence;
    let (kf, nf) = (k as f64, n as f64);
    let lower = if k == 0 {
        0.0
    } else {
        beta_quantile(a / 2.0, kf + 0.5, nf - kf + 0.5)
    };
    let upper = if k == n {
        1.0
    } else {
        upper_quantile(a / 2.0, kf + 0.5, nf - kf + 0.5)
    };
    Some(tidy(k, n, lower, upper))
}

/// The closed-form interval for `method`; `None` for [`IntervalMethod::Bootstrap`] (which
/// needs the cases, see [`crate::stats::analyze`]) or an undefined proportion.
pub fn proportion_interval(
    method: IntervalMethod,
    k: u64,
    n: u64,
    confidence: f64,
) -> Option<(f64, f64)> {
    match method {
        IntervalMethod::Wilson => wilson(k, n, confidence),
        IntervalMethod::ClopperPearson => clopper_pearson(k, n, confidence),
        IntervalMethod::Jeffreys => jeffreys(k, n, confidence),
        IntervalMethod::Bootstrap => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn z_matches_published_quantile() {
        assert!((z_value(0.95) - 1.959_963_984_540_054).abs() < 1e-12);
    }

    #[test]
    fn undefined_when_n_is_zero() {
        for f in [wilson, clopper_pearson, jeffreys] {
            assert_eq!(f(0, 0, 0.95), None);
            assert_eq!(f(3, 2, 0.95), None);
        }
    }

    #[test]
    fn beta_quantile_tiny_tail() {
        // Clopper-Pearson upper bound at k = 0, n = 10 has the closed form 1 - (a/2)^(1/n).
        let conf = 1.0 - 1e-10;
        let a = 1.0 - conf;
        let (_, up) = clopper_pearson(0, 10, conf).unwrap();
        let exact = 1.0 - (a / 2.0).powf(0.1);
        assert!((up - exact).abs() < 1e-12, "{up} vs {exact}");
        // And the lower bound at k = n: (a/2)^(1/n).
        let (lo, _) = clopper_pearson(10, 10, conf).unwrap();
        assert!((lo - (a / 2.0).powf(0.1)).abs() < 1e-12);
    }

    /// `P(X >= k)` for `X ~ Bin(n, p)` by summing the pmf in log space: independent of the
    /// incomplete beta function the intervals use.
    fn tail_by_sum(k: u64, n: u64, p: f64) -> f64 {
        use statrs::function::factorial::ln_binomial;
        (k..=n)
            .map(|j| {
                (ln_binomial(n, j) + j as f64 * p.ln() + (n - j) as f64 * (1.0 - p).ln()).exp()
            })
            .sum()
    }

    proptest! {
        /// Each bound is the root of the test it inverts: Wilson's bounds make the score
        /// statistic equal z; Clopper-Pearson's make the exact binomial tail equal a/2.
        #[test]
        fn bounds_invert_their_tests(n in 1u64..300, kf in 0.0f64..=1.0, conf in 0.5f64..0.999) {
            let k = ((n as f64) * kf).round() as u64;
            let p = k as f64 / n as f64;
            let z = z_value(conf);
            let (lo, hi) = wilson(k, n, conf).unwrap();
            for b in [lo, hi] {
                if b > 0.0 && b < 1.0 {
                    let score = (p - b).abs() * (n as f64).sqrt() / (b * (1.0 - b)).sqrt();
                    prop_assert!((score - z).abs() < 1e-7 * z.max(1.0), "wilson {k}/{n}: {score} vs {z}");
                }
            }
            let a = 1.0 - conf;
            let (lo, hi) = clopper_pearson(k, n, conf).unwrap();
            if k > 0 {
                prop_assert!((tail_by_sum(k, n, lo) - a / 2.0).abs() < 1e-9, "cp lower {k}/{n}");
            }
            if k < n {
                // P(X <= k | hi) = a/2, i.e. 1 - P(X >= k + 1 | hi).
                prop_assert!((1.0 - tail_by_sum(k + 1, n, hi) - a / 2.0).abs() < 1e-9, "cp upper {k}/{n}");
            }
        }
    }
}
