//! Calibration of probability scores: expected calibration error, calibration intercept and
//! slope, Spiegelhalter's z (domain notes, "Calibration"; Van Calster et al. 2016, J Clin
//! Epidemiol 74:167, for the hierarchy). Computed for the whole analysed set when every score
//! lies in `[0, 1]`; otherwise undefined.
//!
//! # Definitions (each matches FDA DIDSR's `calzone-tool` 0.1.0; see
//! `tests/fixtures/stats/calibration.csv`)
//! - **ECE**: [`ECE_BINS`] = 10 equal-width bins on `[0, 1]`, bin `b` holding scores in
//!   `(b/10, (b+1)/10]` (a score of exactly 0 joins the first bin), weighted by bin size:
//!   `ECE = sum_b (n_b / N) |mean score_b - fraction positive_b|` (calzone `ECE-H`, class 1).
//!   Interval: stratified (by class) percentile bootstrap with the protocol's resamples and
//!   seed, generator stream `u32::MAX << 32 | r` (see [`super::bootstrap`]).
//! - **Calibration slope**: `b` of the logistic regression `logit P(y = 1) = a + b logit(s)`
//!   (Cox 1958), scores clipped to `[1e-7, 1 - 1e-7]` (calzone's epsilon); ideal 1.
//! - **Calibration intercept** (calibration-in-the-large): `a` of
//!   `logit P(y = 1) = a + logit(s)` (slope fixed at 1, the logit as offset); ideal 0.
//!   Both fitted by Newton-Raphson to a step below 1e-12 (at most 100 steps; no convergence,
//!   e.g. under separation, leaves the metric undefined), Wald intervals `estimate +- z SE`
//!   from the observed information, as statsmodels `Logit` / `GLM(offset=...)` report.
//! - **Spiegelhalter's z**: `Z = sum (y - s)(1 - 2 s) / sqrt(sum (1 - 2 s)^2 s (1 - s))`
//!   (Spiegelhalter 1986, Stat Med 5:421), ideal 0, with `p = 2 (1 - Phi(|Z|))`; its interval
//!   is `Z +- z_{1-a/2}` (Z has unit variance under the model).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Estimate;
use super::bootstrap::{percentile_interval, resample_rng, uniform_below};
use super::compare::normal_two_sided;
use super::interval::z_value;

/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 10;
/// Clipping of scores before the logit.
const LOGIT_EPS: f64 = 1e-7;

/// Calibration metrics of one set of cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Calibration {
    /// Bins of the ECE (equal width on `[0, 1]`, right-closed).
    pub ece_bins: u32,
    /// Expected calibration error (bootstrap interval).
    pub ece: Option<Estimate>,
    /// Calibration intercept (Wald interval).
    pub intercept: Option<Estimate>,
    /// Calibration slope (Wald interval).
    pub slope: Option<Estimate>,
    /// Spiegelhalter's z (interval `Z +- z`).
    pub spiegelhalter_z: Option<Estimate>,
    /// Two-sided p-value of Spiegelhalter's test (informational).
    pub spiegelhalter_p: Option<f64>,
}

/// Edge `b` of the bins as numpy's `linspace(0, 1, 11)` computes it (`b * 0.1`, last edge
/// exactly 1), so that scores on an edge fall in the same bin as in the reference.
fn edge(b: usize) -> f64 {
    if b >= ECE_BINS {
        1.0
    } else {
        b as f64 * (1.0 / ECE_BINS as f64)
    }
}

fn bin_of(s: f64) -> usize {
    // (edge b, edge b+1], with 0 in the first bin.
    let mut c = ((s * ECE_BINS as f64).ceil() as usize)
        .saturating_sub(1)
        .min(ECE_BINS - 1);
    while c > 0 && s <= edge(c) {
        c -= 1;
    }
    while c < ECE_BINS - 1 && s > edge(c + 1) {
        c += 1;
    }
    c
}

/// ECE from per-bin (count, score sum, positives).
fn ece_from(bins: &[(f64, f64, f64)]) -> f64 {
    let total: f64 = bins.iter().map(|b| b.0).sum();
    bins.iter()
        .filter(|b| b.0 > 0.0)
        .map(|&(n, s, y)| n / total * (s / n - y / n).abs())
        .sum()
}

/// Expected calibration error (see the module docs).
pub fn ece(labels: &[bool], scores: &[f64]) -> Option<f64> {
    if labels.is_empty() || scores.iter().any(|s| !(0.0..=1.0).contains(s)) {
        return None;
    }
    let mut bins = [(0.0, 0.0, 0.0); ECE_BINS];
    for (&y, &s) in labels.iter().zip(scores) {
        let b = &mut bins[bin_of(s)];
        b.0 += 1.0;
        b.1 += s;
        b.2 += f64::from(u8::from(y));
    }
    Some(ece_from(&bins))
}

fn logit(s: f64) -> f64 {
    let p = s.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Logistic fit of `y` on `x`: `(a, b, se_a, se_b)` for `a + b x`, or with `slope_fixed` the
/// intercept of `a + x` (then `b = 1`, `se_b = 0`). `None` without convergence.
fn logistic_fit(y: &[bool], x: &[f64], slope_fixed: bool) -> Option<(f64, f64, f64, f64)> {
    let (mut a, mut b) = (0.0f64, if slope_fixed { 1.0 } else { 0.0 });
    for _ in 0..100 {
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&yi, &xi) in y.iter().zip(x) {
            let m = sigmoid(a + b * xi);
            let r = f64::from(u8::from(yi)) - m;
            let w = m * (1.0 - m);
            g0 += r;
            g1 += r * xi;
            h00 += w;
            h01 += w * xi;
            h11 += w * xi * xi;
        }
        let (da, db) = if slope_fixed {
            if h00 <= 0.0 {
                return None;
            }
            (g0 / h00, 0.0)
        } else {
            let det = h00 * h11 - h01 * h01;
            if det.is_nan() || det <= 0.0 {
                return None;
            }
            ((h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det)
        };
        a += da;
        b += db;
        if !(a.is_finite() && b.is_finite()) {
            return None;
        }
        if da.abs().max(db.abs()) < 1e-12 {
            // Standard errors from the information at the solution.
            let (mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0);
            for &xi in x {
                let m = sigmoid(a + b * xi);
                let w = m * (1.0 - m);
                h00 += w;
                h01 += w * xi;
                h11 += w * xi * xi;
            }
            if slope_fixed {
                return Some((a, 1.0, (1.0 / h00).sqrt(), 0.0));
            }
            let det = h00 * h11 - h01 * h01;
            return Some((a, b, (h11 / det).sqrt(), (h00 / det).sqrt()));
        }
    }
    None
}

/// Spiegelhalter's z and its two-sided p-value; `None` when the variance is zero.
pub fn spiegelhalter(labels: &[bool], scores: &[f64]) -> Option<(f64, f64)> {
    let (mut num, mut var) = (0.0, 0.0);
    for (&y, &s) in labels.iter().zip(scores) {
        let c = 1.0 - 2.0 * s;
        num += (f64::from(u8::from(y)) - s) * c;
        var += c * c * s * (1.0 - s);
    }
    if var.is_nan() || var <= 0.0 {
        return None;
    }
    let z = num / var.sqrt();
    Some((z, normal_two_sided(z)))
}

fn wald(est: f64, se: f64, z: f64, n: u64) -> Estimate {
    Estimate {
        estimate: est,
        lower: est - z * se,
        upper: est + z * se,
        method: Some(super::Method::Wald),
        denominator: n,
        se: Some(se),
        ..Estimate::default()
    }
}

/// Every calibration metric (see the module docs); `None` when a score lies outside `[0, 1]`
/// or there are no cases.
pub fn calibration(
    labels: &[bool],
    scores: &[f64],
    confidence: f64,
    resamples: u32,
    seed: u64,
) -> Option<Calibration> {
    let point = ece(labels, scores)?;
    let n = labels.len() as u64;
    let z = z_value(confidence);
    let x: Vec<f64> = scores.iter().map(|&s| logit(s)).collect();
    let slope = logistic_fit(labels, &x, false).map(|(_, b, _, sb)| wald(b, sb, z, n));
    let intercept = logistic_fit(labels, &x, true).map(|(a, _, sa, _)| wald(a, sa, z, n));
    let sp = spiegelhalter(labels, scores);
    // ECE bootstrap, stratified by class.
    let pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i]).collect();
    let neg: Vec<usize> = (0..labels.len()).filter(|&i| !labels[i]).collect();
    let mut boot: Vec<f64> = (0..resamples)
        .into_par_iter()
        .map(|r| {
            let mut rng = resample_rng(seed, (u64::from(u32::MAX) << 32) | u64::from(r));
            let mut bins = [(0.0, 0.0, 0.0); ECE_BINS];
            for class in [&pos, &neg] {
                for _ in 0..class.len() {
                    let i = class[uniform_below(&mut rng, class.len() as u32) as usize];
                    let b = &mut bins[bin_of(scores[i])];
                    b.0 += 1.0;
                    b.1 += scores[i];
                    b.2 += f64::from(u8::from(labels[i]));
                }
            }
            ece_from(&bins)
        })
        .collect();
    let usable = boot.len() as u32;
    let (lower, upper) = percentile_interval(&mut boot, confidence).unwrap_or((point, point));
    let ece = Estimate {
        estimate: point,
        lower,
        upper,
        method: Some(super::Method::Bootstrap),
        denominator: n,
        resamples: Some(resamples),
        usable_resamples: Some(usable),
        ..Estimate::default()
    };
    Some(Calibration {
        ece_bins: ECE_BINS as u32,
        ece: Some(ece),
        intercept,
        slope,
        spiegelhalter_z: sp.map(|(zs, _)| Estimate {
            estimate: zs,
            lower: zs - z,
            upper: zs + z,
            method: Some(super::Method::UnitVariance),
            denominator: n,
            ..Estimate::default()
        }),
        spiegelhalter_p: sp.map(|s| s.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_right_closed() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(0.1), 0);
        assert_eq!(bin_of(0.10001), 1);
        assert_eq!(bin_of(1.0), 9);
        // numpy's linspace puts the third edge at 0.30000000000000004, so 0.3 is in bin 2.
        assert_eq!(bin_of(0.3), 2);
        assert_eq!(bin_of(0.7), 6);
        assert_eq!(ece(&[true], &[1.5]), None);
    }
}
