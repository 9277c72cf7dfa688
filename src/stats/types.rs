//! Result types of the statistics engine: the JSON shape `medgate stats --format json` prints
//! and `evidence.json` embeds. Keys may be added, never renamed.

use serde::{Deserialize, Serialize};

/// The homogeneity test across a gap's eligible levels, as written in the statistics JSON.
/// `NotTested` (written as an empty string, the spelling of earlier records) when no test was
/// possible (fewer than two eligible levels).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum HomogeneityTest {
    /// No homogeneity test (fewer than two eligible levels).
    #[default]
    #[serde(rename = "")]
    NotTested,
    /// Pearson's chi-square on the levels x {success, failure} table (scipy
    /// `chi2_contingency(correction=False)`).
    #[serde(rename = "chi-square")]
    ChiSquare,
    /// The Wald statistic of the per-level DeLong AUROC estimates and variances.
    #[serde(rename = "delong-wald")]
    DelongWald,
}

impl HomogeneityTest {
    /// The serialized spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HomogeneityTest::NotTested => "",
            HomogeneityTest::ChiSquare => "chi-square",
            HomogeneityTest::DelongWald => "delong-wald",
        }
    }
}

/// The method that produced an estimate's interval (or a gap's simultaneous bound, or a
/// paired difference), as written in the statistics JSON. The spelling is that of every
/// earlier record (kebab-case, except the paired comparisons' `newcombe_paired` and
/// `delong_paired` and F1's `point estimate only`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Wilson score interval.
    Wilson,
    /// Exact Clopper-Pearson interval.
    ClopperPearson,
    /// Jeffreys equal-tailed interval.
    Jeffreys,
    /// DeLong normal interval (AUROC).
    Delong,
    /// Stratified percentile bootstrap.
    Bootstrap,
    /// Mercaldo, Lau & Zhou adjusted logit (PPV/NPV at a prevalence).
    MercaldoAdjustedLogit,
    /// Wald interval (calibration intercept and slope).
    Wald,
    /// Unit-variance normal reference (Spiegelhalter's z).
    UnitVariance,
    /// No interval: the point estimate only (F1).
    #[serde(rename = "point estimate only")]
    PointEstimateOnly,
    /// Simultaneous Bonferroni bound over Newcombe hybrid score intervals (proportion gaps).
    BonferroniNewcombe,
    /// Simultaneous Bonferroni bound over DeLong normal intervals (AUROC gaps).
    BonferroniDelong,
    /// Newcombe's paired-difference interval, method 10 (release comparison).
    #[serde(rename = "newcombe_paired")]
    NewcombePaired,
    /// Paired DeLong interval of an AUROC difference (release comparison).
    #[serde(rename = "delong_paired")]
    DelongPaired,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 13] = [
        Method::Wilson,
        Method::ClopperPearson,
        Method::Jeffreys,
        Method::Delong,
        Method::Bootstrap,
        Method::MercaldoAdjustedLogit,
        Method::Wald,
        Method::UnitVariance,
        Method::PointEstimateOnly,
        Method::BonferroniNewcombe,
        Method::BonferroniDelong,
        Method::NewcombePaired,
        Method::DelongPaired,
    ];

    /// Parses the JSON spelling.
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The name as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Wilson => "wilson",
            Method::ClopperPearson => "clopper-pearson",
            Method::Jeffreys => "jeffreys",
            Method::Delong => "delong",
            Method::Bootstrap => "bootstrap",
            Method::MercaldoAdjustedLogit => "mercaldo-adjusted-logit",
            Method::Wald => "wald",
            Method::UnitVariance => "unit-variance",
            Method::PointEstimateOnly => "point estimate only",
            Method::BonferroniNewcombe => "bonferroni-newcombe",
            Method::BonferroniDelong => "bonferroni-delong",
            Method::NewcombePaired => "newcombe_paired",
            Method::DelongPaired => "delong_paired",
        }
    }

    /// The name printed in reports (`Wilson score`, `DeLong`, ...).
    pub fn display_name(self) -> &'static str {
        match self {
            Method::Wilson => "Wilson score",
            Method::ClopperPearson => "Clopper-Pearson (exact)",
            Method::Jeffreys => "Jeffreys (equal-tailed)",
            Method::Bootstrap => "stratified percentile bootstrap",
            Method::Delong => "DeLong",
            other => other.as_str(),
        }
    }
}

impl From<crate::protocol::IntervalMethod> for Method {
    fn from(m: crate::protocol::IntervalMethod) -> Method {
        use crate::protocol::IntervalMethod as I;
        match m {
            I::Wilson => Method::Wilson,
            I::ClopperPearson => Method::ClopperPearson,
            I::Jeffreys => Method::Jeffreys,
            I::Bootstrap => Method::Bootstrap,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point estimate with its two-sided confidence interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Estimate {
    /// Point estimate.
    pub estimate: f64,
    /// Lower confidence bound.
    pub lower: f64,
    /// Upper confidence bound.
    pub upper: f64,
    /// Interval method: `wilson`, `clopper-pearson`, `jeffreys` (proportions), `delong` or
    /// `bootstrap` (AUROC). Under `interval: bootstrap` proportions are `clopper-pearson` (see
    /// [`crate::stats`], "Bootstrap mode").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The metric's own denominator: positives (sensitivity), negatives (specificity),
    /// predicted positives (PPV), predicted negatives (NPV), cases (accuracy), the smaller
    /// class (AUROC). Minimum sizes apply to it.
    #[serde(default)]
    pub denominator: u64,
    /// DeLong standard error (AUROC; computed in bootstrap mode too, for gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se: Option<f64>,
    /// Bootstrap resamples asked for (bootstrap intervals only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resamples: Option<u32>,
    /// Resamples in which the metric was defined and entered the percentile interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usable_resamples: Option<u32>,
    /// Why the interval is degenerate (zero width from a zero variance: perfect separation,
    /// all scores tied, every resample equal), `None` when it is not. A criterion on a
    /// degenerate interval is NOT EVALUABLE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degenerate: Option<String>,
}

/// Confusion counts and every metric for one set of cases. An undefined metric (zero
/// denominator, or a class absent for AUROC) is `None` (`null` in JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Metrics {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// TP / (TP + FN).
    pub sensitivity: Option<Estimate>,
    /// TN / (TN + FP).
    pub specificity: Option<Estimate>,
    /// TP / (TP + FP).
    pub ppv: Option<Estimate>,
    /// TN / (TN + FN).
    pub npv: Option<Estimate>,
    /// (TP + TN) / n.
    pub accuracy: Option<Estimate>,
    /// Area under the ROC curve (DeLong or bootstrap interval).
    pub auroc: Option<Estimate>,
    /// F1 score (point estimate only).
    pub f1: Option<f64>,
    /// Cohen's kappa between prediction and truth (point estimate only).
    pub kappa: Option<f64>,
    /// Fraction of positives.
    pub prevalence: Option<f64>,
    /// PPV at the protocol's `intended_use_prevalence` (Mercaldo, Lau & Zhou 2007; see
    /// [`crate::stats::ppv`]); absent when no prevalence is stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppv_at_prevalence: Option<Estimate>,
    /// NPV at the protocol's `intended_use_prevalence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npv_at_prevalence: Option<Estimate>,
}

impl Metrics {
    /// The estimate of `metric` here: `None` when it is undefined, or not a metric of one set
    /// of cases with an interval (F1, gaps, differences, calibration).
    pub fn estimate(&self, metric: crate::protocol::Metric) -> Option<&Estimate> {
        use crate::protocol::Metric as M;
        match metric {
            M::Sensitivity => self.sensitivity.as_ref(),
            M::Specificity => self.specificity.as_ref(),
            M::Ppv => self.ppv.as_ref(),
            M::Npv => self.npv.as_ref(),
            M::Accuracy => self.accuracy.as_ref(),
            M::Auroc => self.auroc.as_ref(),
            M::PpvAtPrevalence => self.ppv_at_prevalence.as_ref(),
            M::NpvAtPrevalence => self.npv_at_prevalence.as_ref(),
            _ => None,
        }
    }
}

/// Metrics for one level of one attribute (or an intersection, `attribute` = `sex x age_band`,
/// `value` = `F x 40-64`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubgroupResult {
    /// Attribute name.
    pub attribute: String,
    /// Level.
    pub value: String,
    /// Cases in the level.
    pub n: u64,
    /// Positives in the level.
    pub positives: u64,
    /// True when `n` is below the protocol's minimum subgroup size.
    pub small: bool,
    /// The level's metrics.
    pub metrics: Metrics,
}

/// The range of one metric across the eligible levels of an attribute (the largest
/// difference between any two of them), with a confidence interval that holds for every pair
/// at once. See [`crate::stats::gap`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Gap {
    /// Attribute name.
    pub attribute: String,
    /// `sensitivity`, `specificity` or `auroc`.
    pub metric: crate::protocol::Metric,
    /// The observed range `metric(between[0]) - metric(between[1])`, >= 0.
    pub difference: f64,
    /// Simultaneous lower confidence bound of the range: the largest lower bound of `|d|`
    /// over all pairs (see `method`).
    pub lower: f64,
    /// Simultaneous upper confidence bound of the range: the largest upper bound of `|d|`
    /// over all pairs; `upper_pair` is the pair that gives it.
    pub upper: f64,
    /// The two levels with the highest and lowest estimate (higher first).
    pub between: [String; 2],
    /// The pair whose interval gives `upper` (the pair that decides an `at_most` criterion on
    /// the upper bound), higher estimate first.
    #[serde(default)]
    pub upper_pair: [String; 2],
    /// The pair whose interval gives `lower`.
    #[serde(default)]
    pub lower_pair: [String; 2],
    /// Pairs bounded simultaneously, `k (k - 1) / 2` for `k` eligible levels.
    #[serde(default)]
    pub pairs: u32,
    /// Confidence of each pairwise interval, `1 - (1 - confidence) / pairs` (Bonferroni).
    #[serde(default)]
    pub pair_confidence: f64,
    /// The eligible levels the range is taken over, in level order.
    #[serde(default)]
    pub levels: Vec<String>,
    /// Levels left out: the metric is undefined or its denominator is below the minimum
    /// size. A gap criterion with excluded levels is NOT EVALUABLE unless the protocol
    /// excludes them by name.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Test of homogeneity across the eligible levels (see `test`): Pearson's chi-square
    /// statistic on the levels x {success, failure} table, or the DeLong Wald statistic for
    /// AUROC.
    #[serde(default)]
    pub statistic: Option<f64>,
    /// Degrees of freedom of the homogeneity test (levels - 1).
    #[serde(default)]
    pub df: u32,
    /// p-value of the homogeneity test (no selection of an extreme pair is involved); `None`
    /// when the test is undefined (a zero AUROC variance).
    pub p_value: Option<f64>,
    /// Holm- (or the protocol's method) adjusted p-value over the family of subgroup gap
    /// hypotheses the protocol's criteria name; `None` when this gap is in no such family: its
    /// p-value is then informational only.
    #[serde(default)]
    pub p_adjusted: Option<f64>,
    /// Interval method: `bonferroni-newcombe` (sensitivity, specificity: Newcombe hybrid score
    /// intervals at `pair_confidence`) or `bonferroni-delong` (AUROC: normal intervals with the
    /// DeLong variances of the two independent levels).
    pub method: Method,
    /// `chi-square` or `delong-wald` (empty when no test was possible).
    #[serde(default)]
    pub test: HomogeneityTest,
    /// Why the bound is degenerate (a level's AUROC variance is zero), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degenerate: Option<String>,
}

/// The full output of the statistics engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatsReport {
    /// Cases analysed.
    pub n: u64,
    /// Cases with label 1.
    pub positives: u64,
    /// Cases with label 0.
    pub negatives: u64,
    /// Operating point: positive when score >= threshold.
    pub threshold: f64,
    /// Two-sided confidence level.
    pub confidence: f64,
    /// Interval method for proportions.
    pub interval: crate::protocol::IntervalMethod,
    /// All cases.
    pub overall: Metrics,
    /// Every level of every attribute (and intersections), sorted by attribute then value.
    pub subgroups: Vec<SubgroupResult>,
    /// Largest gap per attribute and metric.
    pub gaps: Vec<Gap>,
    /// Minimum denominator of a metric (the protocol's `min_subgroup_size`), overall and per
    /// level.
    #[serde(default)]
    pub min_denominator: u64,
    /// Bootstrap resamples asked for (`None` with closed-form intervals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_resamples: Option<u32>,
    /// Calibration of the whole set (when asked for and every score is in `[0, 1]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<super::calibration::Calibration>,
    /// The intended-use prevalence PPV and NPV were adjusted to, when the protocol states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_use_prevalence: Option<f64>,
    /// Fewest usable resamples a bootstrap interval may rest on before a criterion on it is NOT
    /// EVALUABLE ([`crate::stats::MIN_USABLE_RESAMPLES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_usable_resamples: Option<u32>,
}
