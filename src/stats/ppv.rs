//! PPV and NPV at the intended-use prevalence.
//!
//! A golden set enriched with positives gives a PPV (and NPV) that does not hold in the
//! population the device is meant for. With the prevalence `pi` the protocol states
//! (`statistics.intended_use_prevalence`), Bayes' theorem gives
//! `PPV = pi Se / (pi Se + (1 - pi)(1 - Sp))` and
//! `NPV = (1 - pi) Sp / ((1 - pi) Sp + pi (1 - Se))`, from the sensitivity on the `n1`
//! positives and the specificity on the `n0` negatives of the golden set.
//!
//! # Interval (Mercaldo, Lau & Zhou 2007, Stat Med 26:2170, "adjusted logit")
//! With `z = z_{1-a/2}`, adjusted `Se' = (TP + z^2/2) / (n1 + z^2)`,
//! `Sp' = (TN + z^2/2) / (n0 + z^2)`, `n1' = n1 + z^2`, `n0' = n0 + z^2`:
//! `logit PPV' = ln(pi Se' / ((1 - pi)(1 - Sp')))`,
//! `Var = (1 - Se') / (n1' Se') + Sp' / (n0' (1 - Sp'))`, interval
//! `expit(logit PPV' +- z sqrt(Var))`; for NPV `logit NPV' = ln((1 - pi) Sp' / (pi (1 - Se')))`
//! with `Var = Se' / (n1' (1 - Se')) + (1 - Sp') / (n0' Sp')`. The adjustment keeps the interval
//! defined when `Se` or `Sp` is 0 or 1. The point estimate is the unadjusted Bayes formula; where
//! the adjusted interval would not contain it (`Sp = 1` gives `PPV = 1`), the interval is
//! widened to contain it.
//! Reference: `tests/fixtures/stats/ppv_adjusted.csv` (a Python transcription of the paper's
//! formulas with scipy's normal quantile).

use super::Estimate;
use super::interval::z_value;

fn expit(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Prevalence-adjusted PPV and NPV with adjusted-logit intervals; `None` where undefined
/// (no positives or no negatives, or a zero denominator in the Bayes formula).
pub fn adjusted_ppv_npv(
    tp: u64,
    fn_: u64,
    tn: u64,
    fp: u64,
    prevalence: f64,
    confidence: f64,
) -> (Option<Estimate>, Option<Estimate>) {
    let (n1, n0) = ((tp + fn_) as f64, (tn + fp) as f64);
    if n1 == 0.0 || n0 == 0.0 || !(prevalence > 0.0 && prevalence < 1.0) {
        return (None, None);
    }
    let pi = prevalence;
    let (se, sp) = (tp as f64 / n1, tn as f64 / n0);
    let z = z_value(confidence);
    let z2 = z * z;
    let (n1a, n0a) = (n1 + z2, n0 + z2);
    let sea = (tp as f64 + z2 / 2.0) / n1a;
    let spa = (tn as f64 + z2 / 2.0) / n0a;
    let ppv_den = pi * se + (1.0 - pi) * (1.0 - sp);
    let npv_den = (1.0 - pi) * sp + pi * (1.0 - se);
    let ppv = (ppv_den > 0.0).then(|| {
        let l = (pi * sea / ((1.0 - pi) * (1.0 - spa))).ln();
        let h = z * ((1.0 - sea) / (n1a * sea) + spa / (n0a * (1.0 - spa))).sqrt();
        Estimate {
            estimate: pi * se / ppv_den,
            lower: expit(l - h).min(pi * se / ppv_den),
            upper: expit(l + h).max(pi * se / ppv_den),
            method: Some(super::Method::MercaldoAdjustedLogit),
            denominator: tp + fp,
            ..Estimate::default()
        }
    });
    let npv = (npv_den > 0.0).then(|| {
        let l = ((1.0 - pi) * spa / (pi * (1.0 - sea))).ln();
        let h = z * (sea / (n1a * (1.0 - sea)) + (1.0 - spa) / (n0a * spa)).sqrt();
        Estimate {
            estimate: (1.0 - pi) * sp / npv_den,
            lower: expit(l - h).min((1.0 - pi) * sp / npv_den),
            upper: expit(l + h).max((1.0 - pi) * sp / npv_den),
            method: Some(super::Method::MercaldoAdjustedLogit),
            denominator: tn + fn_,
            ..Estimate::default()
        }
    });
    (ppv, npv)
}
