//! Comparing two models on the same cases (a release against the release it replaces, or
//! against a predicate device), and two independent subgroup levels.
//!
//! This module owns the paired statistics of a release comparison; it does no I/O. The
//! orientation is always **new minus reference**: a positive difference means the new model is
//! better, and a non-inferiority margin reads "the lower bound of (new - reference) is at least
//! -margin".
//!
//! # Paired proportions (sensitivity on the positives, specificity on the negatives)
//! The cases of one class form a paired 2x2 table: `a` both models right, `b` only the new
//! model right, `c` only the reference right, `d` both wrong (`n = a + b + c + d`).
//!
//! - **Difference**: `D = (b - c) / n` (= new proportion `(a + b)/n` minus reference
//!   proportion `(a + c)/n`).
//! - **Interval: Newcombe (1998) method 10**, the hybrid score ("square-and-add") interval
//!   with a correlation correction (Newcombe RG, Improved confidence intervals for the
//!   difference between binomial proportions based on paired data, *Stat Med* 17:2635-2650,
//!   1998; Fagerland, Lydersen & Laake, *Statistical Analysis of Contingency Tables*, 2017,
//!   ch. 8, who recommend it beside Tango's interval). With Wilson limits `(l1, u1)` of
//!   `p1 = (a+b)/n` and `(l2, u2)` of `p2 = (a+c)/n`, `A = ad - bc`,
//!   `phi = (A - n/2)/sqrt(R)` if `A > n/2`, `0` if `0 <= A <= n/2`, `A/sqrt(R)` if `A < 0`,
//!   with `R = (a+b)(c+d)(a+c)(b+d)` (and `phi = 0` when `R = 0`):
//!   `L = D - sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2)`,
//!   `U = D + sqrt((u1-p1)^2 - 2 phi (u1-p1)(p2-l2) + (p2-l2)^2)`.
//!   Chosen over Tango's score interval because it is closed form (no root finding, so the
//!   auditor's recomputation is exact), has coverage close to nominal in Newcombe's and
//!   Fagerland's evaluations, and reduces to the Wilson interval a reviewer already knows.
//! - **Tests: exact and mid-p McNemar** on the discordant pairs (Fagerland, Lydersen & Laake,
//!   The McNemar test for binary matched-pairs data: mid-p and asymptotic are better than
//!   exact conditional, *BMC Med Res Methodol* 13:91, 2013). With `X ~ Bin(b + c, 1/2)` and
//!   `m = min(b, c)`: exact `P = min(1, 2 P(X <= m))`; mid-p `P - P(X = b)` when `b != c`,
//!   and `1 - P(X = b)/2` when `b = c` (the definition of Fagerland's own implementation,
//!   R package contingencytables 3.0.0, `McNemar_midP_test_paired_2x2`).
//!
//! The test and the interval are different procedures and can disagree near the boundary (a
//! mid-p below 0.05 with an interval that touches 0): [`PairedProportion::agreement`] says so,
//! and the evidence records both, so the disagreement cannot go unnoticed. A criterion is
//! decided by the interval only.
//!
//! # Paired AUROC (DeLong, DeLong & Clarke-Pearson 1988)
//! For model `r` the structural components are `V10_r(i) = (1/N) sum_j psi(X_ri, Y_rj)` for
//! each positive `i` and `V01_r(j) = (1/M) sum_i psi(X_ri, Y_rj)` for each negative `j`
//! (`psi = 1` if `X > Y`, `1/2` if equal, `0` otherwise; higher score = positive, pROC
//! `direction = "<"`), `AUC_r` their mean. `S10` and `S01` are the 2x2 sample covariance
//! matrices of the components (denominators `M - 1` and `N - 1`);
//! `Var(AUC_r) = S10_rr/M + S01_rr/N`, `Cov = S10_12/M + S01_12/N`,
//! `Var(D) = Var_new + Var_ref - 2 Cov`, `z = D / sqrt(Var(D))`, two-sided `p = 2(1 - Phi(|z|))`,
//! interval `D +- z_(1-a/2) sqrt(Var(D))` (clipped to `[-1, 1]`). Reference: R pROC 1.18
//! `roc.test(r1, r2, paired = TRUE, method = "delong")`, `var()` and `cov()`.
//! `Var(D) = 0` (identical rankings, or both models separating perfectly) is **degenerate**:
//! flagged, no z and no p-value, and a criterion on it is not evaluable.
//!
//! # Flips
//! A case flips when the two models' decisions differ. On a positive, `reference right, new
//! wrong` is a **new false negative** (the clinically important direction, listed first) and
//! the reverse a new true positive; on a negative, a new false positive or a new true negative.
//! [`compare_releases`] counts them overall and per subgroup level.
//!
//! # Independent levels
//! Newcombe's hybrid score interval and the pooled two-proportion z-test, used for subgroup
//! gaps when intervals are not bootstrapped.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::beta::beta_reg;
use statrs::function::factorial::ln_binomial;

use super::StatsError;
use super::interval::{wilson, z_value};
use super::subgroup::Factor;

/// Exact two-sided McNemar p-value from the discordant counts `b` (first model right, second
/// wrong) and `c` (the reverse).
///
/// # Formula
/// Under H0 each discordant pair is equally likely either way: `p = min(1, 2 P(X <= min(b, c)))`
/// with `X ~ Binomial(b + c, 1/2)`, computed as `I_{1/2}(b + c - m, m + 1)` (regularised
/// incomplete beta, `m = min(b, c)`); `p = 1` when `b + c = 0`. McNemar (1947); exact form as in
/// statsmodels `mcnemar(exact=True)` and contingencytables `McNemar_exact_cond_test_paired_2x2`,
/// the references of the tests.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    let m = b.min(c);
    if n == 0 || m * 2 == n {
        return 1.0;
    }
    let cdf = beta_reg((n - m) as f64, (m + 1) as f64, 0.5);
    (2.0 * cdf).min(1.0)
}

/// `P(X = k)` for `X ~ Binomial(n, 1/2)`.
fn binomial_half_pmf(k: u64, n: u64) -> f64 {
    (ln_binomial(n, k) - n as f64 * std::f64::consts::LN_2).exp()
}

/// Mid-p McNemar test from the discordant counts (Fagerland, Lydersen & Laake 2013).
///
/// # Formula
/// `X ~ Bin(b + c, 1/2)`: `mid-p = P_exact - P(X = b)` when `b != c`, `1 - P(X = b)/2` when
/// `b = c` (so `0.5` when `b = c = 0`). Reference: contingencytables 3.0.0
/// `McNemar_midP_test_paired_2x2`.
pub fn mcnemar_mid_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    let point = binomial_half_pmf(b, n);
    if b == c {
        1.0 - 0.5 * point
    } else {
        (mcnemar_exact(b, c) - point).clamp(0.0, 1.0)
    }
}

/// Newcombe's hybrid score interval for a paired difference `(b - c) / n` from a paired 2x2
/// table: `a` both right, `b` only the first right, `c` only the second right, `d` both wrong.
/// `None` when `n = 0`. See the module documentation for the formula (Newcombe 1998, Stat Med
/// 17:2635, method 10); reference: contingencytables 3.0.0
/// `Newcombe_square_and_add_CI_paired_2x2`.
pub fn newcombe_paired(a: u64, b: u64, c: u64, d: u64, confidence: f64) -> Option<(f64, f64)> {
    let n = a + b + c + d;
    let (l1, u1) = wilson(a + b, n, confidence)?;
    let (l2, u2) = wilson(a + c, n, confidence)?;
    let nf = n as f64;
    let (p1, p2) = ((a + b) as f64 / nf, (a + c) as f64 / nf);
    let diff = (b as f64 - c as f64) / nf;
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

/// A paired difference of two proportions on one class (sensitivity on the positives,
/// specificity on the negatives), new minus reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PairedProportion {
    /// Cases in the class.
    pub n: u64,
    /// Both models right.
    pub both_right: u64,
    /// Only the new model right.
    pub only_new_right: u64,
    /// Only the reference right.
    pub only_reference_right: u64,
    /// Both wrong.
    pub both_wrong: u64,
    /// The new model's proportion `(a + b) / n`.
    pub new: f64,
    /// The reference's proportion `(a + c) / n`.
    pub reference: f64,
    /// `new - reference`.
    pub difference: f64,
    /// Lower bound of the Newcombe method 10 interval.
    pub lower: f64,
    /// Upper bound of the Newcombe method 10 interval.
    pub upper: f64,
    /// Exact conditional McNemar p-value.
    pub exact_p: f64,
    /// Mid-p McNemar p-value.
    pub mid_p: f64,
    /// Interval method: `newcombe_paired` (Newcombe 1998 method 10).
    pub method: super::Method,
}

impl PairedProportion {
    /// The paired difference from the table's four cells; `None` when `n = 0`.
    pub fn from_table(a: u64, b: u64, c: u64, d: u64, confidence: f64) -> Option<Self> {
        let (lower, upper) = newcombe_paired(a, b, c, d, confidence)?;
        let n = a + b + c + d;
        let nf = n as f64;
        Some(PairedProportion {
            n,
            both_right: a,
            only_new_right: b,
            only_reference_right: c,
            both_wrong: d,
            new: (a + b) as f64 / nf,
            reference: (a + c) as f64 / nf,
            difference: (b as f64 - c as f64) / nf,
            lower,
            upper,
            exact_p: mcnemar_exact(b, c),
            mid_p: mcnemar_mid_p(b, c),
            method: super::Method::NewcombePaired,
        })
    }

    /// Whether the mid-p test at `1 - confidence` and the interval agree about "no
    /// difference": `true` when both reject or neither does. They are different procedures,
    /// so a disagreement is possible near the boundary and is reported, never hidden.
    pub fn agreement(&self, confidence: f64) -> bool {
        let rejects_test = self.mid_p < 1.0 - confidence;
        let rejects_interval = self.lower > 0.0 || self.upper < 0.0;
        rejects_test == rejects_interval
    }
}

/// The paired DeLong comparison of two AUROCs on the same cases, new minus reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PairedAuroc {
    /// Positives.
    pub positives: u64,
    /// Negatives.
    pub negatives: u64,
    /// The new model's AUROC.
    pub new: f64,
    /// The reference's AUROC.
    pub reference: f64,
    /// `new - reference`.
    pub difference: f64,
    /// DeLong variance of the new AUROC; `None` with fewer than two cases of a class.
    pub variance_new: Option<f64>,
    /// DeLong variance of the reference AUROC.
    pub variance_reference: Option<f64>,
    /// DeLong covariance of the two AUROCs.
    pub covariance: Option<f64>,
    /// `difference / sqrt(Var(D))`; `None` when degenerate.
    pub z: Option<f64>,
    /// Two-sided p-value for "no difference"; `None` when degenerate.
    pub p_value: Option<f64>,
    /// Lower bound `D - z sqrt(Var(D))`; equals `difference` when degenerate.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// `Var(D)` is zero or undefined: the interval has no width and decides nothing.
    pub degenerate: bool,
    /// Interval method: `delong_paired`.
    pub method: super::Method,
}

/// DeLong structural components of one model: `(V10 per positive, V01 per negative, AUC)`.
fn components(pos: &[f64], neg: &[f64]) -> (Vec<f64>, Vec<f64>, f64) {
    let mut sp = pos.to_vec();
    let mut sn = neg.to_vec();
    sp.sort_unstable_by(f64::total_cmp);
    sn.sort_unstable_by(f64::total_cmp);
    let (m, n) = (pos.len() as f64, neg.len() as f64);
    // psi summed over the other class: count strictly below plus half the ties.
    let below_half = |sorted: &[f64], x: f64| {
        let less = sorted.partition_point(|&y| y < x);
        let leq = sorted.partition_point(|&y| y <= x);
        less as f64 + 0.5 * (leq - less) as f64
    };
    let v10: Vec<f64> = pos.iter().map(|&x| below_half(&sn, x) / n).collect();
    let v01: Vec<f64> = neg
        .iter()
        .map(|&y| {
            let less = sp.partition_point(|&x| x < y);
            let leq = sp.partition_point(|&x| x <= y);
            ((sp.len() - leq) as f64 + 0.5 * (leq - less) as f64) / m
        })
        .collect();
    let auc = v10.iter().sum::<f64>() / m;
    (v10, v01, auc)
}

/// Sample covariance with denominator `len - 1`.
fn sample_cov(x: &[f64], mx: f64, y: &[f64], my: f64) -> f64 {
    let s: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    s / (x.len() as f64 - 1.0)
}

/// Paired DeLong test and interval for `AUROC(new) - AUROC(reference)` on the same cases.
///
/// `Ok(None)` when a class is absent. See the module documentation for the formula; the
/// reference is R pROC 1.18 `roc.test(paired = TRUE, method = "delong")`.
pub fn paired_delong(
    labels: &[bool],
    new_scores: &[f64],
    reference_scores: &[f64],
    confidence: f64,
) -> Result<Option<PairedAuroc>, StatsError> {
    let n = labels.len();
    for len in [new_scores.len(), reference_scores.len()] {
        if len != n {
            return Err(StatsError::LengthMismatch {
                labels: n,
                scores: len,
            });
        }
    }
    check_confidence(confidence)?;
    for (i, (a, b)) in new_scores.iter().zip(reference_scores).enumerate() {
        if a.is_nan() || b.is_nan() {
            return Err(StatsError::NanScore { index: i });
        }
    }
    let split = |scores: &[f64]| {
        let mut pos = Vec::new();
        let mut neg = Vec::new();
        for (&y, &s) in labels.iter().zip(scores) {
            if y { pos.push(s) } else { neg.push(s) }
        }
        (pos, neg)
    };
    let (pn, nn) = split(new_scores);
    let (pr, nr) = split(reference_scores);
    if pn.is_empty() || nn.is_empty() {
        return Ok(None);
    }
    let (v10n, v01n, auc_n) = components(&pn, &nn);
    let (v10r, v01r, auc_r) = components(&pr, &nr);
    let (m, q) = (pn.len() as f64, nn.len() as f64);
    let difference = auc_n - auc_r;
    let (var_n, var_r, cov) = if pn.len() >= 2 && nn.len() >= 2 {
        let var = |v10: &[f64], v01: &[f64], auc: f64| {
            sample_cov(v10, auc, v10, auc) / m + sample_cov(v01, auc, v01, auc) / q
        };
        let cov =
            sample_cov(&v10n, auc_n, &v10r, auc_r) / m + sample_cov(&v01n, auc_n, &v01r, auc_r) / q;
        (
            Some(var(&v10n, &v01n, auc_n)),
            Some(var(&v10r, &v01r, auc_r)),
            Some(cov),
        )
    } else {
        (None, None, None)
    };
    let var_d = match (var_n, var_r, cov) {
        (Some(a), Some(b), Some(c)) => Some(a + b - 2.0 * c),
        _ => None,
    };
    // Rounding can leave a tiny positive Var(D) for identical rankings: treat a variance below
    // 1e-12 of the scale of the two variances as zero.
    let scale = var_n.unwrap_or(0.0) + var_r.unwrap_or(0.0);
    let usable = var_d.filter(|&v| v > 1e-12 * scale.max(f64::MIN_POSITIVE) && v > 0.0);
    let (z, p_value, lower, upper, degenerate) = match usable {
        Some(v) => {
            let se = v.sqrt();
            let z = difference / se;
            let h = z_value(confidence) * se;
            (
                Some(z),
                Some(normal_two_sided(z)),
                (difference - h).max(-1.0),
                (difference + h).min(1.0),
                false,
            )
        }
        None => (None, None, difference, difference, true),
    };
    Ok(Some(PairedAuroc {
        positives: pn.len() as u64,
        negatives: nn.len() as u64,
        new: auc_n,
        reference: auc_r,
        difference,
        variance_new: var_n,
        variance_reference: var_r,
        covariance: cov,
        z,
        p_value,
        lower,
        upper,
        degenerate,
        method: super::Method::DelongPaired,
    }))
}

/// Decisions that changed between the reference and the new model.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct FlipCounts {
    /// Positives the reference found and the new model misses (listed first for review).
    pub new_false_negatives: u64,
    /// Negatives the reference cleared and the new model flags.
    pub new_false_positives: u64,
    /// Positives the reference missed and the new model finds.
    pub new_true_positives: u64,
    /// Negatives the reference flagged and the new model clears.
    pub new_true_negatives: u64,
}

impl FlipCounts {
    /// All changed decisions.
    pub fn total(&self) -> u64 {
        self.new_false_negatives
            + self.new_false_positives
            + self.new_true_positives
            + self.new_true_negatives
    }
    /// Changes for the worse (new false negatives and new false positives).
    pub fn worse(&self) -> u64 {
        self.new_false_negatives + self.new_false_positives
    }
}

/// The paired comparison over one scope: all cases, or one subgroup level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ComparisonScope {
    /// Attribute (`None` for all cases).
    pub attribute: Option<String>,
    /// Level (`None` for all cases).
    pub value: Option<String>,
    /// Cases.
    pub n: u64,
    /// Positives.
    pub positives: u64,
    /// Sensitivity difference over the positives; `None` without positives.
    pub sensitivity: Option<PairedProportion>,
    /// Specificity difference over the negatives; `None` without negatives.
    pub specificity: Option<PairedProportion>,
    /// AUROC difference; `None` when a class is absent.
    pub auroc: Option<PairedAuroc>,
    /// Changed decisions.
    pub flips: FlipCounts,
}

/// The paired comparison of a new release with its reference on the same cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleaseComparison {
    /// Two-sided confidence level of every interval.
    pub confidence: f64,
    /// All cases.
    pub overall: ComparisonScope,
    /// Every level of every factor given, in factor then level order.
    pub subgroups: Vec<ComparisonScope>,
}

/// One model's answers on the matched cases, in case order.
#[derive(Debug, Clone, Copy)]
pub struct ModelAnswers<'a> {
    /// Decision (positive or not) per case.
    pub predicted: &'a [bool],
    /// Score per case (higher = more likely positive), for AUROC.
    pub scores: &'a [f64],
}

/// Paired comparison of `new` against `reference` on the same cases, overall and for every
/// level of every factor: sensitivity and specificity differences (Newcombe method 10,
/// exact and mid-p McNemar), the paired DeLong AUROC difference, and the flip counts.
pub fn compare_releases(
    labels: &[bool],
    new: ModelAnswers<'_>,
    reference: ModelAnswers<'_>,
    factors: &[Factor],
    confidence: f64,
) -> Result<ReleaseComparison, StatsError> {
    let n = labels.len();
    for len in [
        new.predicted.len(),
        new.scores.len(),
        reference.predicted.len(),
        reference.scores.len(),
    ] {
        if len != n {
            return Err(StatsError::LengthMismatch {
                labels: n,
                scores: len,
            });
        }
    }
    for f in factors {
        if f.codes.len() != n {
            return Err(StatsError::AttributeLength {
                name: f.name.clone(),
                got: f.codes.len(),
                expected: n,
            });
        }
    }
    check_confidence(confidence)?;
    let all: Vec<usize> = (0..n).collect();
    let overall = scope(labels, new, reference, &all, None, confidence)?;
    let mut subgroups = Vec::new();
    for f in factors {
        for (code, level) in f.levels.iter().enumerate() {
            let idx: Vec<usize> = (0..n).filter(|&i| f.codes[i] as usize == code).collect();
            subgroups.push(scope(
                labels,
                new,
                reference,
                &idx,
                Some((f.name.clone(), level.clone())),
                confidence,
            )?);
        }
    }
    Ok(ReleaseComparison {
        confidence,
        overall,
        subgroups,
    })
}

/// The comparison restricted to the cases `idx`.
fn scope(
    labels: &[bool],
    new: ModelAnswers<'_>,
    reference: ModelAnswers<'_>,
    idx: &[usize],
    level: Option<(String, String)>,
    confidence: f64,
) -> Result<ComparisonScope, StatsError> {
    // [both right, only new right, only reference right, both wrong] per class.
    let mut pos = [0u64; 4];
    let mut neg = [0u64; 4];
    for &i in idx {
        let y = labels[i];
        let cell = match (new.predicted[i] == y, reference.predicted[i] == y) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        if y {
            pos[cell] += 1;
        } else {
            neg[cell] += 1;
        }
    }
    let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let sub_labels: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
    let auroc = paired_delong(
        &sub_labels,
        &pick(new.scores),
        &pick(reference.scores),
        confidence,
    )?;
    let table = |t: [u64; 4]| PairedProportion::from_table(t[0], t[1], t[2], t[3], confidence);
    let (attribute, value) = match level {
        Some((a, v)) => (Some(a), Some(v)),
        None => (None, None),
    };
    Ok(ComparisonScope {
        attribute,
        value,
        n: idx.len() as u64,
        positives: pos.iter().sum(),
        sensitivity: table(pos),
        specificity: table(neg),
        auroc,
        flips: FlipCounts {
            new_false_negatives: pos[2],
            new_false_positives: neg[2],
            new_true_positives: pos[1],
            new_true_negatives: neg[1],
        },
    })
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
pub(crate) fn normal_two_sided(z: f64) -> f64 {
    let std = Normal::standard();
    (2.0 * std.sf(z.abs())).min(1.0)
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
        for file in [
            include_str!("../../tests/fixtures/stats/mcnemar.csv"),
            include_str!("../../tests/fixtures/compare/mcnemar_statsmodels.csv"),
        ] {
            for r in rows(file) {
                let p = mcnemar_exact(r[0] as u64, r[1] as u64);
                assert!((p - r[2]).abs() < 1e-9, "{r:?}: {p}");
            }
        }
    }

    #[test]
    fn mcnemar_hand_checked() {
        // b = 0, c = 5: 2 * 0.5^5 = 0.0625. b = 1, c = 4: 2 * (1 + 5) / 32 = 0.375.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-12);
        assert!((mcnemar_exact(4, 1) - 0.375).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Mid-p: b = 1, c = 4: 0.375 - 5/32 = 0.21875; b = c = 2: 1 - 6/16/2 = 0.8125.
        assert!((mcnemar_mid_p(1, 4) - 0.21875).abs() < 1e-12);
        assert!((mcnemar_mid_p(2, 2) - 0.8125).abs() < 1e-12);
    }

    /// Newcombe method 10, exact and mid-p McNemar against the R package contingencytables
    /// 3.0.0 (Fagerland, Lydersen & Laake), `tests/fixtures/compare/gen_compare.R`.
    #[test]
    fn paired_tables_match_contingencytables() {
        let fixture = rows(include_str!(
            "../../tests/fixtures/compare/paired_tables.csv"
        ));
        assert!(fixture.len() >= 60);
        for r in fixture {
            let [a, b, c, d] = [r[0], r[1], r[2], r[3]].map(|x| x as u64);
            let t = PairedProportion::from_table(a, b, c, d, r[4]).unwrap();
            for (got, want, what) in [
                (t.difference, r[5], "estimate"),
                (t.lower, r[6], "lower"),
                (t.upper, r[7], "upper"),
                (t.exact_p, r[8], "exact p"),
                (t.mid_p, r[9], "mid-p"),
            ] {
                assert!((got - want).abs() < 1e-9, "{r:?} {what}: {got} vs {want}");
            }
        }
    }

    /// Values printed in Fagerland, Lydersen & Laake (2017), ch. 8, for Cavo et al. (2012)
    /// (59, 6 / 16, 80), as the contingencytables test suite reproduces them (4 or 6
    /// decimals, so compared to half a unit in the last place).
    #[test]
    fn published_book_values() {
        let cavo = PairedProportion::from_table(59, 6, 16, 80, 0.95).unwrap();
        assert!((cavo.difference - -0.0621).abs() < 5e-5);
        assert!((cavo.lower - -0.1186).abs() < 5e-5, "{}", cavo.lower);
        assert!((cavo.upper - -0.0046).abs() < 5e-5, "{}", cavo.upper);
        assert!((cavo.exact_p - 0.052479).abs() < 5e-7);
        assert!((cavo.mid_p - 0.034690).abs() < 5e-7);
        // Here the mid-p test rejects at 5% and the interval excludes 0: they agree.
        assert!(cavo.agreement(0.95));
        let tiny = PairedProportion::from_table(1, 0, 0, 1, 0.95).unwrap();
        assert!((tiny.lower - -0.5734).abs() < 5e-5 && (tiny.upper - 0.5734).abs() < 5e-5);
    }

    #[test]
    fn test_and_interval_disagreement_is_detected() {
        // Bentur et al. (2009), 1, 1 / 7, 12: mid-p 0.039 rejects at 5% and the interval
        // [-0.507, -0.026] excludes 0, so they agree. `agreement` must flag exactly the
        // fixture tables where the reference's mid-p and interval disagree, and the grid
        // holds at least one such table.
        let t = PairedProportion::from_table(1, 1, 7, 12, 0.95).unwrap();
        assert!(t.agreement(0.95));
        let mut found = false;
        for r in rows(include_str!(
            "../../tests/fixtures/compare/paired_tables.csv"
        )) {
            let [a, b, c, d] = [r[0], r[1], r[2], r[3]].map(|x| x as u64);
            let t = PairedProportion::from_table(a, b, c, d, r[4]).unwrap();
            let test_rejects = r[9] < 1.0 - r[4];
            let interval_rejects = r[6] > 0.0 || r[7] < 0.0;
            assert_eq!(t.agreement(r[4]), test_rejects == interval_rejects, "{r:?}");
            found |= test_rejects != interval_rejects;
        }
        assert!(found, "the grid should hold a table where the two disagree");
    }

    type DelongCase = (String, Vec<bool>, Vec<f64>, Vec<f64>);

    fn delong_cases() -> Vec<DelongCase> {
        let mut cases: Vec<DelongCase> = Vec::new();
        for line in include_str!("../../tests/fixtures/compare/paired_delong_cases.csv")
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split(',').collect();
            if cases.last().is_none_or(|c| c.0 != f[0]) {
                cases.push((f[0].to_string(), Vec::new(), Vec::new(), Vec::new()));
            }
            let c = cases.last_mut().unwrap();
            c.1.push(f[1] == "1");
            c.2.push(f[2].parse().unwrap());
            c.3.push(f[3].parse().unwrap());
        }
        cases
    }

    /// Paired DeLong against R pROC 1.18 `roc.test(paired = TRUE, method = "delong")`,
    /// `var()` and `cov()` (`tests/fixtures/compare/gen_compare.R`).
    #[test]
    fn paired_delong_matches_proc() {
        let cases = delong_cases();
        let expected = include_str!("../../tests/fixtures/compare/paired_delong_expected.csv");
        let mut checked = 0;
        for line in expected.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let v: Vec<f64> = f[1..].iter().map(|s| s.parse().unwrap()).collect();
            let case = cases.iter().find(|c| c.0 == f[0]).unwrap();
            let r = paired_delong(&case.1, &case.2, &case.3, v[0])
                .unwrap()
                .unwrap();
            assert!(!r.degenerate, "{}", f[0]);
            for (got, want, what) in [
                (r.new, v[1], "auc new"),
                (r.reference, v[2], "auc ref"),
                (r.variance_new.unwrap(), v[3], "var new"),
                (r.variance_reference.unwrap(), v[4], "var ref"),
                (r.covariance.unwrap(), v[5], "cov"),
                (r.z.unwrap(), v[6], "z"),
                (r.p_value.unwrap(), v[7], "p"),
                (r.lower, v[8], "lower"),
                (r.upper, v[9], "upper"),
            ] {
                assert!(
                    (got - want).abs() < 1e-9,
                    "{} {what}: {got} vs {want}",
                    f[0]
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 14);
    }

    #[test]
    fn identical_rankings_are_degenerate() {
        let labels = [true, true, false, false, true, false];
        let s = [0.9, 0.4, 0.3, 0.5, 0.7, 0.1];
        // A monotone transform ranks the cases identically: Var(D) = 0.
        let t: Vec<f64> = s.iter().map(|x| x * x).collect();
        let r = paired_delong(&labels, &t, &s, 0.95).unwrap().unwrap();
        assert!(r.degenerate);
        assert_eq!((r.z, r.p_value), (None, None));
        assert_eq!((r.difference, r.lower, r.upper), (0.0, 0.0, 0.0));
        assert!(
            paired_delong(&[true, true], &[0.1, 0.2], &[0.3, 0.4], 0.95)
                .unwrap()
                .is_none()
        );
        assert!(paired_delong(&[true], &[f64::NAN], &[0.3], 0.95).is_err());
    }

    #[test]
    fn release_comparison_counts_flips_by_level() {
        // Six positives, four negatives; two sites.
        let labels = [
            true, true, true, true, true, true, false, false, false, false,
        ];
        let reference = [
            true, true, true, false, true, true, false, true, false, false,
        ];
        let new = [
            true, false, true, true, true, false, false, false, true, false,
        ];
        let scores_ref = [0.9, 0.8, 0.7, 0.4, 0.8, 0.9, 0.1, 0.6, 0.2, 0.3];
        let scores_new = [0.9, 0.3, 0.7, 0.6, 0.8, 0.2, 0.1, 0.2, 0.6, 0.3];
        let site = Factor::from_values("site", ["a", "a", "a", "b", "b", "b", "a", "a", "b", "b"]);
        let cmp = compare_releases(
            &labels,
            ModelAnswers {
                predicted: &new,
                scores: &scores_new,
            },
            ModelAnswers {
                predicted: &reference,
                scores: &scores_ref,
            },
            std::slice::from_ref(&site),
            0.95,
        )
        .unwrap();
        // Positives: cases 1 and 5 lost (new FN), case 3 gained; negatives: case 7 cleared,
        // case 8 newly flagged.
        let f = cmp.overall.flips;
        assert_eq!(
            (f.new_false_negatives, f.new_true_positives),
            (2, 1),
            "{f:?}"
        );
        assert_eq!((f.new_false_positives, f.new_true_negatives), (1, 1));
        assert_eq!((f.total(), f.worse()), (5, 3));
        let se = cmp.overall.sensitivity.as_ref().unwrap();
        assert_eq!(
            (
                se.both_right,
                se.only_new_right,
                se.only_reference_right,
                se.both_wrong
            ),
            (3, 1, 2, 0)
        );
        assert!((se.difference - -1.0 / 6.0).abs() < 1e-15);
        let a = &cmp.subgroups[0];
        assert_eq!((a.value.as_deref(), a.n, a.positives), (Some("a"), 5, 3));
        assert_eq!(a.flips.new_false_negatives, 1);
        assert_eq!(a.flips.new_true_negatives, 1);
        let b = &cmp.subgroups[1];
        assert_eq!(
            (b.flips.new_false_negatives, b.flips.new_true_positives),
            (1, 1)
        );
        assert_eq!(b.flips.new_false_positives, 1);
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
}
