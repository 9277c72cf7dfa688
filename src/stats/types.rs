//! Result types of the statistics engine: the JSON shape `medgate stats --format json` prints
//! and `evidence.json` embeds. Keys may be added, never renamed.

use serde::{Deserialize, Serialize};

/// A point estimate with its two-sided confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Estimate {
    /// Point estimate.
    pub estimate: f64,
    /// Lower confidence bound.
    pub lower: f64,
    /// Upper confidence bound.
    pub upper: f64,
    /// Interval method, for AUROC (`delong` or `bootstrap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Confusion counts and every metric for one set of cases. An undefined metric (zero
/// denominator, or a class absent for AUROC) is `None` (`null` in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// The largest difference in one metric between two levels of an attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Gap {
    /// Attribute name.
    pub attribute: String,
    /// `sensitivity`, `specificity` or `auroc`.
    pub metric: String,
    /// `metric(between[0]) - metric(between[1])`, >= 0.
    pub difference: f64,
    /// Lower confidence bound of the difference: bootstrap percentile when resampled (see
    /// `method`), otherwise Newcombe's hybrid score interval (sensitivity,
    /// specificity) or the DeLong normal interval (AUROC) of two independent levels. See
    /// [`crate::stats`] ("Subgroups and gaps").
    pub lower: f64,
    /// Upper confidence bound of the difference (same method as `lower`).
    pub upper: f64,
    /// The two levels compared (higher first).
    pub between: [String; 2],
    /// Two-sided p-value for "no difference": bootstrap when resampled (see `method`),
    /// otherwise the pooled two-proportion z-test (sensitivity, specificity) or the DeLong
    /// z-test (AUROC).
    pub p_value: f64,
    /// p-value after the protocol's multiplicity adjustment.
    pub p_adjusted: f64,
    /// How the interval and p-value were computed: `bootstrap` (stratified percentile),
    /// `newcombe` (hybrid score interval, pooled z-test) or `delong` (AUROC, z-test).
    #[serde(default)]
    pub method: String,
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
    pub interval: String,
    /// All cases.
    pub overall: Metrics,
    /// Every level of every attribute (and intersections), sorted by attribute then value.
    pub subgroups: Vec<SubgroupResult>,
    /// Largest gap per attribute and metric.
    pub gaps: Vec<Gap>,
}
