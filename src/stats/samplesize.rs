//! Sample size: how many positive cases a golden set needs (ISO 13485 7.3.6 asks for a
//! rationale for sample size).
//!
//! # Formula
//! With expected sensitivity `p1`, performance goal `p0 < p1`, two-sided confidence `1 - a`
//! (the lower bound of the reported interval must clear `p0`) and power `1 - b`:
//!
//! `n = ceil( (z_{1-a/2} sqrt(p0 (1 - p0)) + z_{1-b} sqrt(p1 (1 - p1)))^2 / (p1 - p0)^2 )`
//!
//! the normal-approximation size of a one-sample test of a proportion against `p0` at
//! one-sided level `a/2` (Machin et al., Sample Size Tables for Clinical Studies, 3rd ed.,
//! 2009, ch. 3; Flahault, Cadilhac & Thomas 2005, J Clin Epidemiol 58:859). The same formula
//! gives negatives for a specificity goal.

use statrs::distribution::{ContinuousCDF, Normal};

use super::interval::z_value;

/// Positive cases needed so that, at sensitivity `expected`, the lower confidence bound
/// (two-sided `confidence`) exceeds `goal` with probability `power`; `None` when
/// `expected <= goal` or an argument is outside `(0, 1)`.
pub fn sample_size_positives(expected: f64, goal: f64, confidence: f64, power: f64) -> Option<u64> {
    let open = |x: f64| x > 0.0 && x < 1.0;
    if !(open(expected) && open(goal) && open(confidence) && open(power)) || expected <= goal {
        return None;
    }
    let za = z_value(confidence);
    let zb = Normal::standard().inverse_cdf(power);
    let num = za * (goal * (1.0 - goal)).sqrt() + zb * (expected * (1.0 - expected)).sqrt();
    let n = (num / (expected - goal)).powi(2);
    // Guard against 107.00000000000001 style rounding pushing an exact integer up.
    Some((n - 1e-9).ceil().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // p1 = 0.9, p0 = 0.8, 95%, 80% power: (1.959964 * 0.4 + 0.841621 * 0.3)^2 / 0.01
        // = 1.036472^2 / 0.01 = 107.43 -> 108.
        assert_eq!(sample_size_positives(0.9, 0.8, 0.95, 0.8), Some(108));
        // p1 = 0.95, p0 = 0.9, 95%, 90% power:
        // (1.959964 * 0.3 + 1.281552 * 0.217945)^2 / 0.0025 = (0.587989 + 0.279308)^2 / 0.0025
        // = 0.752204 / 0.0025 = 300.9 -> 301.
        assert_eq!(sample_size_positives(0.95, 0.9, 0.95, 0.9), Some(301));
    }

    #[test]
    fn invalid_inputs() {
        assert_eq!(sample_size_positives(0.8, 0.9, 0.95, 0.8), None);
        assert_eq!(sample_size_positives(0.9, 0.9, 0.95, 0.8), None);
        assert_eq!(sample_size_positives(0.9, 0.8, 1.0, 0.8), None);
    }

    #[test]
    fn more_power_needs_more_cases() {
        let a = sample_size_positives(0.9, 0.85, 0.95, 0.8).unwrap();
        let b = sample_size_positives(0.9, 0.85, 0.95, 0.9).unwrap();
        assert!(b > a);
    }
}
