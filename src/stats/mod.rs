//! The statistics engine: pure computation, no I/O.
//!
//! Given each case's truth, score and subgroup levels, [`analyze`] produces the
//! [`StatsReport`] every later stage consumes (evidence, report, verification) and that
//! `medgate stats` prints. Definitions follow `shared/docs/domain.md` (FDA 2007 diagnostic
//! test guidance, DeLong 1988, pROC's bootstrap); each statistic's function carries a
//! `# Formula` section with its reference.
//!
//! # Overview
//! - [`confusion`]: the 2x2 table and point metrics (sensitivity, specificity, PPV, NPV,
//!   accuracy, F1, Cohen's kappa, prevalence).
//! - [`interval`]: Wilson, Clopper-Pearson, Jeffreys intervals.
//! - [`auroc`]: Mann-Whitney AUROC with DeLong variance, ROC curve points.
//! - [`subgroup`]: the single sorted order and the linear passes that give every level's
//!   counts, AUROC and DeLong variance.
//! - [`bootstrap`]: the stratified percentile bootstrap and its documented seeded RNG.
//! - [`compare`]: exact McNemar, paired and independent differences of proportions.
//! - [`multiplicity`]: Holm and Bonferroni.
//! - [`samplesize`]: positives needed for a sensitivity goal.
//! - [`drift`] and [`cusum`]: post-market monitoring statistics (PSI, Kolmogorov-Smirnov,
//!   Wasserstein, chi-square of attribute mix; CUSUM as AIM-CU designs it, EWMA).
//!
//! # Subgroups and gaps
//! Every level of every attribute, then every requested intersection, is reported, sorted by
//! attribute (in the order given) then level (string order). Levels with fewer than
//! `min_subgroup_size` cases are reported with `small: true` and are **excluded from gaps**, so
//! a tiny level cannot manufacture the largest gap. For each attribute (and intersection) and
//! each of sensitivity, specificity and AUROC, the gap compares the level with the highest and
//! the level with the lowest point estimate among eligible levels (defined metric; for AUROC at
//! least two cases of each class), ties going to the first level in string order. Its interval
//! and p-value for "no difference" are:
//! - with `interval = bootstrap`: the percentile interval of the within-resample difference
//!   between those two levels, and the two-sided bootstrap p-value
//!   `min(1, 2 min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (B + 1))` over the `B` resamples where
//!   both are defined (Davison & Hinkley 1997, ch. 4);
//! - otherwise (closed-form intervals, so that no resampling is needed): Newcombe's hybrid
//!   score interval and the pooled two-proportion z-test for sensitivity and specificity
//!   ([`compare::newcombe_independent`], [`compare::two_proportion_z_test`]), and
//!   `d +- z sqrt(Var1 + Var2)` with the DeLong variances of the two independent levels and the
//!   matching z-test for AUROC.
//!
//! `p_adjusted` applies the configured multiplicity method across **all** gaps in the report.
//! Choosing the extreme pair after looking at the data makes the unadjusted p-value
//! optimistic; the gap is a screening statistic, as the FDA guidance treats subgroup results.
//!
//! # Determinism
//! Same inputs and seed give bit-identical reports on every machine and thread count: one sort
//! with the case index breaking ties, integer counting, float sums in a fixed order, and the
//! per-resample RNG streams described in [`bootstrap`].

pub mod auroc;
pub mod bootstrap;
pub mod compare;
pub mod confusion;
pub mod cusum;
pub mod drift;
pub mod interval;
pub mod multiplicity;
pub mod samplesize;
pub mod subgroup;
pub mod types;

pub use auroc::{DelongAuc, RocPoint, delong, roc_curve};
pub use compare::{Difference, PairedComparison, mcnemar_exact, paired_difference};
pub use confusion::Confusion;
pub use interval::{clopper_pearson, jeffreys, proportion_interval, wilson};
pub use multiplicity::{bonferroni, holm};
pub use samplesize::sample_size_positives;
pub use subgroup::Factor;
pub use types::*;

use crate::protocol::{IntervalMethod, Multiplicity};
use bootstrap::Resamples;
use subgroup::{LevelCounts, Prepared, RunScratch, count_pass, delong_variances};

/// Why an analysis could not run. Indices are 0-based positions in the input slices; callers
/// that read a file translate them into rows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// Labels and scores (or predictions) differ in length.
    #[error("{labels} labels but {scores} scores")]
    LengthMismatch {
        /// Number of labels.
        labels: usize,
        /// Number of scores.
        scores: usize,
    },
    /// An attribute has a different number of values than there are cases.
    #[error("attribute `{name}` has {got} values for {expected} cases")]
    AttributeLength {
        /// Attribute name.
        name: String,
        /// Values given.
        got: usize,
        /// Cases.
        expected: usize,
    },
    /// A score is NaN.
    #[error("the score of case {index} (0-based) is NaN")]
    NanScore {
        /// 0-based case index.
        index: usize,
    },
    /// The threshold is NaN.
    #[error("the threshold is NaN")]
    NanThreshold,
    /// The confidence level is not strictly between 0 and 1.
    #[error("confidence {0} is not strictly between 0 and 1")]
    Confidence(f64),
    /// Bootstrap intervals were asked for with no resamples.
    #[error("bootstrap intervals need at least one resample")]
    NoResamples,
    /// An intersection names an attribute that is not in the input.
    #[error("intersection names unknown attribute `{0}`")]
    UnknownAttribute(String),
    /// Bootstrapping this many levels would hold more resampled values in memory than
    /// [`MAX_BOOTSTRAP_VALUES`].
    #[error(
        "{levels} subgroup levels x {resamples} resamples is too many to bootstrap; use fewer or coarser subgroup attributes, or fewer resamples"
    )]
    TooManyLevels {
        /// Levels including the whole set.
        levels: usize,
        /// Resamples asked for.
        resamples: u32,
    },
    /// An intersection lists fewer than two attributes.
    #[error("an intersection needs at least two attributes, got {0:?}")]
    ShortIntersection(Vec<String>),
}

/// The most resampled metric values (levels x 6 metrics x resamples, 8 bytes each) a bootstrap
/// keeps in memory: 100 million, 800 MB. A subgroup column with one level per case (an ID
/// column passed by mistake) stops here with an error instead of exhausting memory.
pub const MAX_BOOTSTRAP_VALUES: u64 = 100_000_000;

/// The cases to analyse.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisInput<'a> {
    /// Truth per case (`true` = positive).
    pub labels: &'a [bool],
    /// Model score per case; predicted positive when `score >= threshold`.
    pub scores: &'a [f64],
    /// Subgroup attributes: name and the level of each case.
    pub attributes: &'a [(String, Vec<String>)],
}

/// How to analyse (the protocol's `statistics` and `subgroups` sections plus the threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisConfig {
    /// Operating point: positive when `score >= threshold` (any finite or infinite value).
    pub threshold: f64,
    /// Two-sided confidence level.
    pub confidence: f64,
    /// Interval method for proportions; `Bootstrap` also bootstraps AUROC and gaps.
    pub interval: IntervalMethod,
    /// Bootstrap resamples (used when `interval` is `Bootstrap`).
    pub bootstrap_resamples: u32,
    /// Bootstrap seed.
    pub seed: u64,
    /// Adjustment of gap p-values.
    pub multiplicity: Multiplicity,
    /// Levels with fewer cases are flagged `small` and left out of gaps.
    pub min_subgroup_size: usize,
    /// Attribute combinations analysed jointly.
    pub intersections: Vec<Vec<String>>,
    /// Bootstrap the subgroup gaps even when proportions use a closed-form interval. A
    /// protocol run sets it (the domain notes ask for a bootstrap interval on gaps);
    /// `medgate stats` leaves it off unless `--gap-bootstrap` is given, so that its default
    /// stays a single linear pass.
    pub bootstrap_gaps: bool,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        let s = crate::protocol::StatisticsSpec::default();
        AnalysisConfig {
            threshold: 0.5,
            confidence: s.confidence,
            interval: s.interval,
            bootstrap_resamples: s.bootstrap_resamples,
            seed: s.bootstrap_seed,
            multiplicity: s.multiplicity,
            min_subgroup_size: s.min_subgroup_size,
            intersections: Vec::new(),
            bootstrap_gaps: false,
        }
    }
}

/// Analyses `input`: overall metrics, every subgroup level, gaps.
pub fn analyze(input: &AnalysisInput, cfg: &AnalysisConfig) -> Result<StatsReport, StatsError> {
    let factors: Vec<Factor> = input
        .attributes
        .iter()
        .map(|(name, values)| Factor::from_values(name, values.iter().map(String::as_str)))
        .collect();
    analyze_factors(input.labels, input.scores, &factors, cfg)
}

/// [`analyze`] with attributes already coded as [`Factor`]s (saves building a `String` per
/// case when the caller has columns at hand).
pub fn analyze_factors(
    labels: &[bool],
    scores: &[f64],
    factors: &[Factor],
    cfg: &AnalysisConfig,
) -> Result<StatsReport, StatsError> {
    if cfg.threshold.is_nan() {
        return Err(StatsError::NanThreshold);
    }
    compare::check_confidence(cfg.confidence)?;
    let boot = cfg.interval == IntervalMethod::Bootstrap;
    // Resampling is needed for bootstrap intervals, and for gaps when asked.
    let resample = boot || cfg.bootstrap_gaps;
    if resample && cfg.bootstrap_resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let mut all: Vec<Factor> = factors.to_vec();
    for names in &cfg.intersections {
        if names.len() < 2 {
            return Err(StatsError::ShortIntersection(names.clone()));
        }
        let parts = names
            .iter()
            .map(|n| {
                factors
                    .iter()
                    .find(|f| &f.name == n)
                    .ok_or_else(|| StatsError::UnknownAttribute(n.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        all.push(Factor::intersection(&parts));
    }
    let prep = Prepared::new(labels, scores, &all, cfg.threshold)?;
    if resample
        && prep.n_levels as u64
            * bootstrap::BOOT_METRICS.len() as u64
            * u64::from(cfg.bootstrap_resamples)
            > MAX_BOOTSTRAP_VALUES
    {
        return Err(StatsError::TooManyLevels {
            levels: prep.n_levels,
            resamples: cfg.bootstrap_resamples,
        });
    }
    let mut counts = LevelCounts::new(prep.n_levels);
    count_pass(
        &prep,
        |_| 1,
        &mut counts,
        &mut RunScratch::new(prep.n_levels),
    );
    let variances = if boot {
        vec![None; prep.n_levels]
    } else {
        delong_variances(&prep, &counts)
    };
    let resamples = resample.then(|| bootstrap::run(&prep, cfg.bootstrap_resamples, cfg.seed));
    let ctx = Ctx {
        cfg,
        counts: &counts,
        variances: &variances,
        resamples: if boot { resamples.as_ref() } else { None },
        gap_resamples: resamples.as_ref(),
    };

    let mut subgroups = Vec::new();
    let mut gaps = Vec::new();
    for (f, &offset) in all.iter().zip(&prep.offsets) {
        let mut levels = Vec::new();
        for (i, value) in f.levels.iter().enumerate() {
            let l = offset + i;
            let n = counts.pos[l] + counts.neg[l];
            levels.push(SubgroupResult {
                attribute: f.name.clone(),
                value: value.clone(),
                n,
                positives: counts.pos[l],
                small: (n as usize) < cfg.min_subgroup_size,
                metrics: ctx.metrics(l),
            });
        }
        for (metric, k) in [("sensitivity", 0), ("specificity", 1), ("auroc", 5)] {
            if let Some(g) = ctx.gap(f, offset, &levels, metric, k) {
                gaps.push(g);
            }
        }
        subgroups.extend(levels);
    }
    let p: Vec<f64> = gaps.iter().map(|g| g.p_value).collect();
    for (g, adj) in gaps
        .iter_mut()
        .zip(multiplicity::adjust(&p, cfg.multiplicity))
    {
        g.p_adjusted = adj;
    }
    Ok(StatsReport {
        n: counts.pos[0] + counts.neg[0],
        positives: counts.pos[0],
        negatives: counts.neg[0],
        threshold: cfg.threshold,
        confidence: cfg.confidence,
        interval: cfg.interval.as_str().to_string(),
        overall: ctx.metrics(0),
        subgroups,
        gaps,
    })
}

/// What building metrics and gaps needs from one analysis.
struct Ctx<'a> {
    cfg: &'a AnalysisConfig,
    counts: &'a LevelCounts,
    variances: &'a [Option<f64>],
    /// Resamples for level intervals (only with `interval = bootstrap`).
    resamples: Option<&'a Resamples>,
    /// Resamples for gap intervals (bootstrap intervals, or `bootstrap_gaps`).
    gap_resamples: Option<&'a Resamples>,
}

impl Ctx<'_> {
    fn confusion(&self, l: usize) -> Confusion {
        let c = self.counts;
        Confusion {
            tp: c.pos[l] - c.fn_[l],
            fp: c.neg[l] - c.tn[l],
            tn: c.tn[l],
            fn_: c.fn_[l],
        }
    }

    /// The bootstrap percentile interval of metric `k` of level `l`; the whole `[0, 1]` when the
    /// metric is undefined in every resample.
    fn boot_interval(&self, r: &Resamples, l: usize, k: usize) -> (f64, f64) {
        bootstrap::percentile_interval(&mut r.metric(l, k), self.cfg.confidence)
            .unwrap_or((0.0, 1.0))
    }

    fn proportion(&self, l: usize, k: usize, num: u64, den: u64) -> Option<Estimate> {
        if den == 0 {
            return None;
        }
        let (lower, upper) = match self.resamples {
            Some(r) => self.boot_interval(r, l, k),
            None => proportion_interval(self.cfg.interval, num, den, self.cfg.confidence)?,
        };
        Some(Estimate {
            estimate: num as f64 / den as f64,
            lower,
            upper,
            method: None,
        })
    }

    fn auroc(&self, l: usize) -> Option<Estimate> {
        let auc = self.counts.auc(l)?;
        let ((lower, upper), method) = match self.resamples {
            Some(r) => (self.boot_interval(r, l, 5), "bootstrap"),
            None => {
                let d = DelongAuc {
                    auc,
                    variance: self.variances[l],
                    positives: self.counts.pos[l],
                    negatives: self.counts.neg[l],
                };
                // One case of a class: the variance is undefined; report the uninformative
                // interval rather than drop a defined estimate.
                (
                    d.interval(self.cfg.confidence).unwrap_or((0.0, 1.0)),
                    "delong",
                )
            }
        };
        Some(Estimate {
            estimate: auc,
            lower,
            upper,
            method: Some(method.to_string()),
        })
    }

    fn metrics(&self, l: usize) -> Metrics {
        let c = self.confusion(l);
        Metrics {
            tp: c.tp,
            fp: c.fp,
            tn: c.tn,
            fn_: c.fn_,
            sensitivity: self.proportion(l, 0, c.tp, c.tp + c.fn_),
            specificity: self.proportion(l, 1, c.tn, c.tn + c.fp),
            ppv: self.proportion(l, 2, c.tp, c.tp + c.fp),
            npv: self.proportion(l, 3, c.tn, c.tn + c.fn_),
            accuracy: self.proportion(l, 4, c.tp + c.tn, c.n()),
            auroc: self.auroc(l),
            f1: c.f1(),
            kappa: c.kappa(),
            prevalence: c.prevalence(),
        }
    }

    /// The gap of one metric across one factor's levels (see the module docs).
    fn gap(
        &self,
        f: &Factor,
        offset: usize,
        levels: &[SubgroupResult],
        metric: &str,
        k: usize,
    ) -> Option<Gap> {
        let value = |s: &SubgroupResult| match k {
            0 => s.metrics.sensitivity.as_ref().map(|e| e.estimate),
            1 => s.metrics.specificity.as_ref().map(|e| e.estimate),
            _ => s.metrics.auroc.as_ref().map(|e| e.estimate),
        };
        let eligible: Vec<(usize, f64)> = levels
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.small)
            .filter(|(_, s)| k != 5 || (s.positives >= 2 && s.n - s.positives >= 2))
            .filter_map(|(i, s)| value(s).map(|v| (i, v)))
            .collect();
        if eligible.len() < 2 {
            return None;
        }
        let max = eligible
            .iter()
            .map(|e| e.1)
            .fold(f64::NEG_INFINITY, f64::max);
        let min = eligible.iter().map(|e| e.1).fold(f64::INFINITY, f64::min);
        let hi = eligible.iter().find(|e| e.1 == max)?.0;
        let lo = eligible.iter().find(|e| e.1 == min && e.0 != hi)?.0;
        let difference = max - min;
        let (lh, ll) = (offset + hi, offset + lo);
        let method = if self.gap_resamples.is_some() {
            "bootstrap"
        } else if k == 5 {
            "delong"
        } else {
            "newcombe"
        };
        let (lower, upper, p_value) = match self.gap_resamples {
            Some(r) => {
                let mut d: Vec<f64> = r
                    .values
                    .iter()
                    .map(|row| row[lh * 6 + k] - row[ll * 6 + k])
                    .filter(|v| !v.is_nan())
                    .collect();
                let b = d.len() as f64;
                let le = d.iter().filter(|&&v| v <= 0.0).count() as f64;
                let ge = d.iter().filter(|&&v| v >= 0.0).count() as f64;
                let p = (2.0 * (1.0 + le.min(ge)) / (b + 1.0)).min(1.0);
                let (lo_b, hi_b) = bootstrap::percentile_interval(&mut d, self.cfg.confidence)
                    .unwrap_or((-1.0, 1.0));
                (lo_b, hi_b, p)
            }
            None => self.analytic_gap(lh, ll, k, difference)?,
        };
        Some(Gap {
            attribute: f.name.clone(),
            metric: metric.to_string(),
            difference,
            lower,
            upper,
            between: [levels[hi].value.clone(), levels[lo].value.clone()],
            p_value,
            p_adjusted: p_value,
            method: method.to_string(),
        })
    }

    fn analytic_gap(&self, lh: usize, ll: usize, k: usize, d: f64) -> Option<(f64, f64, f64)> {
        let conf = self.cfg.confidence;
        let (ch, cl) = (self.confusion(lh), self.confusion(ll));
        let (k1, n1, k2, n2) = match k {
            0 => (ch.tp, ch.positives(), cl.tp, cl.positives()),
            1 => (ch.tn, ch.negatives(), cl.tn, cl.negatives()),
            _ => {
                let v = self.variances[lh]? + self.variances[ll]?;
                let h = interval::z_value(conf) * v.sqrt();
                let p = if v > 0.0 {
                    compare::normal_two_sided(d / v.sqrt())
                } else if d == 0.0 {
                    1.0
                } else {
                    0.0
                };
                return Some(((d - h).max(-1.0), (d + h).min(1.0), p));
            }
        };
        let (lo, hi) = compare::newcombe_independent(k1, n1, k2, n2, conf)?;
        let p = compare::two_proportion_z_test(k1, n1, k2, n2)?;
        Some((lo, hi, p))
    }
}

#[cfg(test)]
mod tests;
