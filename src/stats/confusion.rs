//! The 2x2 table against the reference standard and the point metrics derived from it.
//!
//! The FDA 2007 guidance asks for the raw 2x2 table first, then the metrics; every metric here
//! is `None` when its denominator is zero (an empty subgroup, a level with no positives), so an
//! undefined value can never leak into a report as NaN.
//!
//! # Notation
//! `TP, FP, TN, FN` the four cells; `n = TP + FP + TN + FN`. A case is predicted positive when
//! its score is `>= threshold`.

/// Confusion counts for one set of cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Label 1, predicted positive.
    pub tp: u64,
    /// Label 0, predicted positive.
    pub fp: u64,
    /// Label 0, predicted negative.
    pub tn: u64,
    /// Label 1, predicted negative.
    pub fn_: u64,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

impl Confusion {
    /// Counts cases: `labels[i]` is the truth, `predicted[i]` the prediction. Lengths must match
    /// (extra elements of the longer slice are ignored).
    pub fn from_predictions(labels: &[bool], predicted: &[bool]) -> Confusion {
        let mut c = Confusion::default();
        for (&y, &p) in labels.iter().zip(predicted) {
            match (y, p) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        c
    }

    /// Counts cases with prediction `score >= threshold`.
    pub fn at_threshold(labels: &[bool], scores: &[f64], threshold: f64) -> Confusion {
        let mut c = Confusion::default();
        for (&y, &s) in labels.iter().zip(scores) {
            match (y, s >= threshold) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        c
    }

    /// `n = TP + FP + TN + FN`.
    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// Cases with label 1: `TP + FN`.
    pub fn positives(&self) -> u64 {
        self.tp + self.fn_
    }

    /// Cases with label 0: `TN + FP`.
    pub fn negatives(&self) -> u64 {
        self.tn + self.fp
    }

    /// Sensitivity `TP / (TP + FN)`.
    pub fn sensitivity(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Specificity `TN / (TN + FP)`.
    pub fn specificity(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fp)
    }

    /// Positive predictive value `TP / (TP + FP)`.
    pub fn ppv(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    /// Negative predictive value `TN / (TN + FN)`.
    pub fn npv(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fn_)
    }

    /// Accuracy `(TP + TN) / n`.
    pub fn accuracy(&self) -> Option<f64> {
        ratio(self.tp + self.tn, self.n())
    }

    /// Prevalence `(TP + FN) / n`.
    pub fn prevalence(&self) -> Option<f64> {
        ratio(self.tp + self.fn_, self.n())
    }

    /// F1 score.
    ///
    /// # Formula
    /// `F1 = 2 TP / (2 TP + FP + FN)` (harmonic mean of sensitivity and PPV); `None` when
    /// `2 TP + FP + FN = 0`. Reference: scikit-learn `f1_score`.
    pub fn f1(&self) -> Option<f64> {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// Cohen's kappa between prediction and truth.
    ///
    /// # Formula
    /// `po = (TP + TN) / n`, `pe = ((TP + FP)(TP + FN) + (FN + TN)(FP + TN)) / n^2`,
    /// `kappa = (po - pe) / (1 - pe)`; `None` when `n = 0` or `pe = 1` (both raters constant
    /// and equal). Cohen (1960). Reference: scikit-learn `cohen_kappa_score`.
    pub fn kappa(&self) -> Option<f64> {
        let n = self.n();
        if n == 0 {
            return None;
        }
        let nf = n as f64;
        let po = (self.tp + self.tn) as f64 / nf;
        let pe = ((self.tp + self.fp) as f64 * (self.tp + self.fn_) as f64
            + (self.fn_ + self.tn) as f64 * (self.fp + self.tn) as f64)
            / (nf * nf);
        if pe >= 1.0 {
            return None;
        }
        Some((po - pe) / (1.0 - pe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fda_style_table() {
        // The example table.
        let c = Confusion {
            tp: 408,
            fp: 121,
            tn: 931,
            fn_: 40,
        };
        assert_eq!(c.n(), 1500);
        assert_eq!(c.positives(), 448);
        assert!((c.sensitivity().unwrap() - 408.0 / 448.0).abs() < 1e-15);
        assert!((c.specificity().unwrap() - 931.0 / 1052.0).abs() < 1e-15);
        assert!((c.ppv().unwrap() - 408.0 / 529.0).abs() < 1e-15);
        assert!((c.npv().unwrap() - 931.0 / 971.0).abs() < 1e-15);
        assert!((c.f1().unwrap() - 816.0 / 977.0).abs() < 1e-15);
    }

    #[test]
    fn kappa_hand_checked() {
        // tp=20 fp=5 tn=15 fn=10, n=50: po=0.7, pe=(25*30+25*20)/2500=0.5, kappa=0.4.
        let c = Confusion {
            tp: 20,
            fp: 5,
            tn: 15,
            fn_: 10,
        };
        assert!((c.kappa().unwrap() - 0.4).abs() < 1e-12);
    }

    #[test]
    fn undefined_metrics_are_none() {
        let c = Confusion::default();
        assert_eq!(c.sensitivity(), None);
        assert_eq!(c.accuracy(), None);
        assert_eq!(c.kappa(), None);
        assert_eq!(c.f1(), None);
        // No positives: sensitivity undefined, specificity defined.
        let c = Confusion::at_threshold(&[false, false], &[0.2, 0.9], 0.5);
        assert_eq!(c.sensitivity(), None);
        assert_eq!(c.specificity(), Some(0.5));
        // All predicted negative on all-negative cases: pe = 1, kappa undefined.
        let c = Confusion::at_threshold(&[false, false], &[0.2, 0.1], 0.5);
        assert_eq!(c.kappa(), None);
    }
}
