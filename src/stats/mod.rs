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
//! - [`bootstrap`]: the stratified percentile bootstrap of the AUROC and its documented
//!   seeded RNG.
//! - [`gap`]: simultaneous bounds on subgroup ranges and homogeneity tests.
//! - [`compare`]: release comparison (exact and mid-p McNemar, Newcombe paired interval,
//!   paired DeLong, flips) and independent differences of proportions.
//! - [`multiplicity`]: Holm and Bonferroni.
//! - [`samplesize`]: exact binomial planning for a sensitivity goal (Flahault 2005, Chu & Cole
//!   2007) and AUROC planning (Hanley-McNeil or Obuchowski variance, the latter as R pROC's
//!   `power.roc.test`).
//! - [`calibration`]: ECE, calibration intercept and slope, Spiegelhalter's z.
//! - [`ppv`]: prevalence-adjusted PPV and NPV (Mercaldo, Lau & Zhou 2007).
//! - [`drift`] and [`cusum`]: post-market monitoring statistics (PSI, Kolmogorov-Smirnov,
//!   Wasserstein, chi-square of attribute mix; CUSUM as AIM-CU designs it, EWMA).
//!
//! # Subgroups and gaps
//! Every level of every attribute, then every requested intersection, is reported, sorted by
//! attribute (in the order given) then level (string order). Levels with fewer than
//! `min_subgroup_size` cases are reported with `small: true`.
//!
//! **Minimum sizes apply to each metric's own denominator** (`Estimate::denominator`):
//! positives for sensitivity, negatives for specificity, predicted positives for PPV,
//! predicted negatives for NPV, cases for accuracy, the smaller class for AUROC; overall as
//! well as per level. The trace stage makes a criterion on an estimate whose denominator is
//! below `min_subgroup_size` NOT EVALUABLE.
//!
//! For each attribute (and intersection) and each of sensitivity, specificity and AUROC, the
//! gap is the range of the metric over the **eligible** levels (metric defined, denominator at
//! least `min_subgroup_size`, for AUROC a DeLong variance), with the **simultaneous
//! Bonferroni bound over all `k (k - 1) / 2` pairs** of [`gap`] and a test of homogeneity
//! across those levels. Levels that are not eligible are listed in `Gap::excluded`, never
//! silently dropped: a gap criterion is NOT EVALUABLE while one is excluded, unless the
//! protocol names it as excluded. The gap bound is closed-form in every interval mode, so it
//! never depends on resampling. `p_adjusted` is left empty here: only the trace stage knows the
//! family of hypotheses the protocol names.
//!
//! # Bootstrap mode (`interval: bootstrap`)
//! - AUROC: stratified percentile bootstrap within each level ([`bootstrap`]); each interval
//!   reports the resamples asked for and the usable ones. A criterion on a bootstrap interval
//!   with fewer than [`MIN_USABLE_RESAMPLES`] usable resamples is NOT EVALUABLE.
//! - Proportions: **Clopper-Pearson**, not percentiles. A percentile bootstrap of a binomial
//!   proportion collapses to `[1, 1]` at `k = n` and covers 0.65-0.88 near 0 or 1; the exact
//!   interval's coverage is at least the nominal level for every `n` and `p` (Clopper & Pearson
//!   1934; Brown, Cai & DasGupta 2001, Stat Sci 16:101), which `tests::bootstrap_mode_coverage`
//!   checks by seeded simulation.
//!
//! # Degenerate variances
//! A DeLong variance of zero (perfect separation, every score tied) or a bootstrap
//! distribution with a single value gives a zero-width interval that would pass any
//! lower-bound goal; such estimates carry `degenerate` with the reason, and criteria on them are
//! NOT EVALUABLE.
//!
//! # Determinism
//! Same inputs and seed give bit-identical reports on every machine and thread count: one sort
//! with the case index breaking ties, integer counting, float sums in a fixed order, and the
//! per-resample RNG streams described in [`bootstrap`].

pub mod auroc;
pub mod bootstrap;
pub mod calibration;
pub mod compare;
pub mod confusion;
pub mod cusum;
pub mod drift;
pub mod gap;
pub mod interval;
pub mod multiplicity;
pub mod ppv;
pub mod samplesize;
pub mod subgroup;
pub mod types;

pub use auroc::{DelongAuc, RocPoint, delong, roc_curve};
pub use compare::{
    ComparisonScope, FlipCounts, ModelAnswers, PairedAuroc, PairedProportion, ReleaseComparison,
    compare_releases, mcnemar_exact, mcnemar_mid_p, paired_delong,
};
pub use confusion::Confusion;
pub use interval::{clopper_pearson, jeffreys, proportion_interval, wilson};
pub use multiplicity::{bonferroni, holm};
pub use samplesize::sample_size_positives;
pub use subgroup::{Factor, LevelKey, LevelSegment, ScoreOrder};
pub use types::*;

use crate::protocol::{IntervalMethod, Metric};
use subgroup::{LevelCounts, Prepared, counts_and_variances};

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

/// The most resampled AUROC values (levels x resamples, 8 bytes each) a bootstrap keeps in
/// memory: 100 million, 800 MB. A subgroup column with one level per case (an ID column passed
/// by mistake) stops here with an error instead of exhausting memory.
pub const MAX_BOOTSTRAP_VALUES: u64 = 100_000_000;

/// Fewest usable resamples a bootstrap interval may rest on for a criterion to be evaluable
/// (defined with the protocol format: [`crate::protocol::MIN_USABLE_RESAMPLES`]).
pub const MIN_USABLE_RESAMPLES: u32 = crate::protocol::MIN_USABLE_RESAMPLES;
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
    /// Interval method for proportions; `Bootstrap` bootstraps the AUROC and gives
    /// proportions Clopper-Pearson intervals (see "Bootstrap mode").
    pub interval: IntervalMethod,
    /// Bootstrap resamples (used when `interval` is `Bootstrap`).
    pub bootstrap_resamples: u32,
    /// Bootstrap seed.
    pub seed: u64,
    /// Minimum denominator: levels with fewer cases are flagged `small`, and a metric with a
    /// smaller denominator is left out of gaps (listed in `excluded`).
    pub min_subgroup_size: usize,
    /// Attribute combinations analysed jointly.
    pub intersections: Vec<Vec<String>>,
    /// Prevalence in the intended-use population: adds prevalence-adjusted PPV and NPV.
    pub intended_use_prevalence: Option<f64>,
    /// Compute the calibration metrics of the whole set ([`calibration`]; its ECE interval
    /// costs `bootstrap_resamples` passes over the cases).
    pub calibration: bool,
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
            min_subgroup_size: s.min_subgroup_size,
            intersections: Vec::new(),
            intended_use_prevalence: None,
            calibration: false,
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
    analyze_ordered(labels, scores, &ScoreOrder::new(scores)?, factors, cfg)
}

/// [`analyze_factors`] with the scores already sorted ([`ScoreOrder::new`]), for a caller
/// that sorts while it codes the attributes.
pub fn analyze_ordered(
    labels: &[bool],
    scores: &[f64],
    order: &ScoreOrder,
    factors: &[Factor],
    cfg: &AnalysisConfig,
) -> Result<StatsReport, StatsError> {
    if cfg.threshold.is_nan() {
        return Err(StatsError::NanThreshold);
    }
    compare::check_confidence(cfg.confidence)?;
    let boot = cfg.interval == IntervalMethod::Bootstrap;
    if (boot || cfg.calibration) && cfg.bootstrap_resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let mut intersections: Vec<Factor> = Vec::new();
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
        intersections.push(Factor::intersection(&parts));
    }
    let all: Vec<&Factor> = factors.iter().chain(&intersections).collect();
    let prep = Prepared::with_order(labels, scores, order, &all, cfg.threshold)?;
    if boot && prep.n_levels as u64 * u64::from(cfg.bootstrap_resamples) > MAX_BOOTSTRAP_VALUES {
        return Err(StatsError::TooManyLevels {
            levels: prep.n_levels,
            resamples: cfg.bootstrap_resamples,
        });
    }
    let (counts, variances) = counts_and_variances(&prep);
    let auc_boot: Vec<Vec<f64>> = if boot {
        bootstrap::level_orders(&prep)
            .iter()
            .enumerate()
            .map(|(l, o)| bootstrap::auc_resamples(o, l, cfg.bootstrap_resamples, cfg.seed))
            .collect()
    } else {
        Vec::new()
    };
    let ctx = Ctx {
        cfg,
        counts: &counts,
        variances: &variances,
        auc_boot: boot.then_some(auc_boot.as_slice()),
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
        for metric in [Metric::Sensitivity, Metric::Specificity, Metric::Auroc] {
            if let Some(g) = gap_of(&f.name, &levels, metric, cfg) {
                gaps.push(g);
            }
        }
        subgroups.extend(levels);
    }
    Ok(StatsReport {
        n: counts.pos[0] + counts.neg[0],
        positives: counts.pos[0],
        negatives: counts.neg[0],
        threshold: cfg.threshold,
        confidence: cfg.confidence,
        interval: cfg.interval,
        overall: ctx.metrics(0),
        subgroups,
        gaps,
        min_denominator: cfg.min_subgroup_size as u64,
        bootstrap_resamples: boot.then_some(cfg.bootstrap_resamples),
        intended_use_prevalence: cfg.intended_use_prevalence,
        calibration: if cfg.calibration {
            calibration::calibration(
                labels,
                scores,
                cfg.confidence,
                cfg.bootstrap_resamples,
                cfg.seed,
            )
        } else {
            None
        },
        min_usable_resamples: boot.then_some(MIN_USABLE_RESAMPLES),
    })
}

/// The data a gap needs from one level's metrics: `None` when the metric is undefined there.
fn level_value(m: &Metrics, metric: Metric) -> Option<gap::LevelValue> {
    match metric {
        Metric::Sensitivity => m.sensitivity.as_ref().map(|_| gap::LevelValue::Proportion {
            k: m.tp,
            n: m.tp + m.fn_,
        }),
        Metric::Specificity => m.specificity.as_ref().map(|_| gap::LevelValue::Proportion {
            k: m.tn,
            n: m.tn + m.fp,
        }),
        Metric::Auroc => m.auroc.as_ref().and_then(|e| {
            e.se.map(|se| gap::LevelValue::Auc {
                auc: e.estimate,
                variance: se * se,
            })
        }),
        _ => None,
    }
}

/// The denominator of `metric` at one level (see "Subgroups and gaps"), 0 when undefined.
fn metric_denominator(m: &Metrics, metric: Metric) -> u64 {
    let get = |e: &Option<Estimate>| e.as_ref().map_or(0, |e| e.denominator);
    match metric {
        Metric::Sensitivity => get(&m.sensitivity),
        Metric::Specificity => get(&m.specificity),
        Metric::Ppv => get(&m.ppv),
        Metric::Npv => get(&m.npv),
        Metric::Accuracy => get(&m.accuracy),
        Metric::Auroc => get(&m.auroc),
        _ => 0,
    }
}

/// The gap of `metric` over `levels` of one attribute, leaving out (and listing) levels whose
/// metric is undefined or whose denominator is below the minimum, and levels in `exclude`
/// (listed nowhere: the protocol excluded them). `None` when fewer than two levels remain
/// (use [`gap_excluded`] to say which were left out).
pub fn gap_over(
    attribute: &str,
    levels: &[SubgroupResult],
    metric: Metric,
    confidence: f64,
    min_denominator: u64,
    exclude: &[String],
) -> Option<Gap> {
    let mut used: Vec<(&SubgroupResult, gap::LevelValue)> = Vec::new();
    let mut excluded = Vec::new();
    for s in levels.iter().filter(|s| !exclude.contains(&s.value)) {
        match level_value(&s.metrics, metric) {
            Some(v) if metric_denominator(&s.metrics, metric) >= min_denominator => {
                used.push((s, v));
            }
            _ => excluded.push(s.value.clone()),
        }
    }
    let values: Vec<gap::LevelValue> = used.iter().map(|u| u.1).collect();
    let name = |i: usize| used[i].0.value.clone();
    let range = gap::simultaneous_range(&values, confidence);
    let test = match metric {
        Metric::Auroc => gap::auc_homogeneity(
            &values
                .iter()
                .filter_map(|v| match *v {
                    gap::LevelValue::Auc { auc, variance } => Some((auc, variance)),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        _ => gap::chi_square_homogeneity(
            &values
                .iter()
                .filter_map(|v| match *v {
                    gap::LevelValue::Proportion { k, n } => Some((k, n)),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
    };
    let r = range?;
    let degenerate = r.degenerate.clone().map(|d| {
        // Name the level instead of its position.
        match d
            .split_whitespace()
            .nth(1)
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) if i >= 1 && i <= used.len() => format!(
                "level {} has a zero DeLong variance (perfect separation or all scores tied)",
                used[i - 1].0.value
            ),
            _ => d,
        }
    });
    Some(Gap {
        attribute: attribute.to_string(),
        metric,
        difference: r.difference,
        lower: r.lower,
        upper: r.upper,
        between: [name(r.between[0]), name(r.between[1])],
        upper_pair: [name(r.upper_pair[0]), name(r.upper_pair[1])],
        lower_pair: [name(r.lower_pair[0]), name(r.lower_pair[1])],
        pairs: r.pairs,
        pair_confidence: r.pair_confidence,
        levels: used.iter().map(|u| u.0.value.clone()).collect(),
        excluded,
        statistic: test.map(|t| t.statistic),
        df: test.map_or(0, |t| t.df),
        p_value: test.map(|t| t.p_value),
        p_adjusted: None,
        method: r.method,
        test: test.map_or(HomogeneityTest::NotTested, |t| t.test),
        degenerate,
    })
}

/// The levels [`gap_over`] leaves out of a gap of `metric` (undefined, or denominator below
/// `min_denominator`), ignoring those in `exclude`.
pub fn gap_excluded(
    levels: &[SubgroupResult],
    metric: Metric,
    min_denominator: u64,
    exclude: &[String],
) -> Vec<String> {
    levels
        .iter()
        .filter(|s| !exclude.contains(&s.value))
        .filter(|s| {
            level_value(&s.metrics, metric).is_none()
                || metric_denominator(&s.metrics, metric) < min_denominator
        })
        .map(|s| s.value.clone())
        .collect()
}

fn gap_of(
    attribute: &str,
    levels: &[SubgroupResult],
    metric: Metric,
    cfg: &AnalysisConfig,
) -> Option<Gap> {
    gap_over(
        attribute,
        levels,
        metric,
        cfg.confidence,
        cfg.min_subgroup_size as u64,
        &[],
    )
}

/// What building metrics needs from one analysis.
struct Ctx<'a> {
    cfg: &'a AnalysisConfig,
    counts: &'a LevelCounts,
    variances: &'a [Option<f64>],
    /// Bootstrap AUROC values per level (only with `interval = bootstrap`).
    auc_boot: Option<&'a [Vec<f64>]>,
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

    fn proportion(&self, num: u64, den: u64) -> Option<Estimate> {
        if den == 0 {
            return None;
        }
        // Bootstrap mode: Clopper-Pearson (see "Bootstrap mode" in the module docs).
        let method = match self.cfg.interval {
            IntervalMethod::Bootstrap => IntervalMethod::ClopperPearson,
            m => m,
        };
        let (lower, upper) = proportion_interval(method, num, den, self.cfg.confidence)?;
        Some(Estimate {
            estimate: num as f64 / den as f64,
            lower,
            upper,
            method: Some(method.into()),
            denominator: den,
            ..Estimate::default()
        })
    }

    fn auroc(&self, l: usize) -> Option<Estimate> {
        let auc = self.counts.auc(l)?;
        let (pos, neg) = (self.counts.pos[l], self.counts.neg[l]);
        let se = self.variances[l].map(|v| v.max(0.0).sqrt());
        let mut e = Estimate {
            estimate: auc,
            denominator: pos.min(neg),
            se,
            ..Estimate::default()
        };
        match self.auc_boot {
            Some(boot) => {
                let mut v: Vec<f64> = boot[l].iter().copied().filter(|v| !v.is_nan()).collect();
                let usable = v.len() as u32;
                let spread = v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    - v.iter().copied().fold(f64::INFINITY, f64::min);
                let (lower, upper) = bootstrap::percentile_interval(&mut v, self.cfg.confidence)
                    .unwrap_or((f64::NAN, f64::NAN));
                e.lower = lower;
                e.upper = upper;
                e.method = Some(Method::Bootstrap);
                e.resamples = Some(self.cfg.bootstrap_resamples);
                e.usable_resamples = Some(usable);
                if usable > 0 && spread == 0.0 {
                    e.degenerate = Some(format!(
                        "every usable resample gives AUROC {auc} (zero-width bootstrap interval)"
                    ));
                } else if usable == 0 {
                    e.degenerate = Some("no usable resample".into());
                }
            }
            None => {
                let d = DelongAuc {
                    auc,
                    variance: self.variances[l],
                    positives: pos,
                    negatives: neg,
                };
                e.method = Some(Method::Delong);
                match d.interval(self.cfg.confidence) {
                    Some((lower, upper)) => {
                        e.lower = lower;
                        e.upper = upper;
                    }
                    None => {
                        // One case of a class: the variance is undefined. Report the
                        // uninformative interval, flagged, rather than drop the estimate.
                        e.lower = 0.0;
                        e.upper = 1.0;
                        e.degenerate =
                            Some("DeLong variance undefined (a class has one case)".into());
                    }
                }
            }
        }
        if e.degenerate.is_none()
            && self.variances[l] == Some(0.0)
            && e.method == Some(Method::Delong)
        {
            e.degenerate = Some(if auc == 1.0 || auc == 0.0 {
                "zero DeLong variance: perfect separation".into()
            } else {
                "zero DeLong variance (all scores tied or one distinct score per class)".into()
            });
        }
        Some(e)
    }

    fn metrics(&self, l: usize) -> Metrics {
        let c = self.confusion(l);
        let (ppv_at_prevalence, npv_at_prevalence) = match self.cfg.intended_use_prevalence {
            Some(pi) => ppv::adjusted_ppv_npv(c.tp, c.fn_, c.tn, c.fp, pi, self.cfg.confidence),
            None => (None, None),
        };
        Metrics {
            tp: c.tp,
            fp: c.fp,
            tn: c.tn,
            fn_: c.fn_,
            sensitivity: self.proportion(c.tp, c.tp + c.fn_),
            specificity: self.proportion(c.tn, c.tn + c.fp),
            ppv: self.proportion(c.tp, c.tp + c.fp),
            npv: self.proportion(c.tn, c.tn + c.fn_),
            accuracy: self.proportion(c.tp + c.tn, c.n()),
            auroc: self.auroc(l),
            f1: c.f1(),
            kappa: c.kappa(),
            prevalence: c.prevalence(),
            ppv_at_prevalence,
            npv_at_prevalence,
        }
    }
}

#[cfg(test)]
mod tests;
