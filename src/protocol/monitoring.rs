//! The protocol's `monitoring:` section: the post-market monitoring plan `medgate monitor`
//! executes against the released baseline bundle.
//!
//! It states how the production log is read (columns), how it is cut into windows (by case
//! count or by calendar time), which statistics are computed per window, their alarm
//! thresholds, and the requirement (and risk control) each alarm traces to. Kept in its own
//! file so the core protocol types stay small; [`super::types::Protocol::monitoring`] holds it.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::Bound;

/// The post-market monitoring plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSpec {
    /// How the production log is cut into windows.
    pub window: WindowSpec,
    /// Column names of the production log.
    #[serde(default)]
    pub log: LogColumns,
    /// Number of fixed bins (baseline quantiles) for the population stability index.
    #[serde(default = "default_psi_bins")]
    pub psi_bins: usize,
    /// Windows with fewer evaluated cases are reported but raise no alarm (too small to read).
    #[serde(default = "default_min_window")]
    pub min_window_cases: usize,
    /// The monitored statistics, each with its alarm rule and trace.
    pub statistics: Vec<MonitorStatistic>,
    /// Monitoring ledger; default `<bundle>.monitoring.jsonl` beside the baseline bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<PathBuf>,
}

fn default_psi_bins() -> usize {
    10
}
fn default_min_window() -> usize {
    30
}

/// A window: a fixed number of consecutive cases, or a fixed span of calendar time (UTC,
/// aligned to 1970-01-01T00:00:00Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowSpec {
    /// Consecutive cases (in timestamp order) per window.
    Cases(u64),
    /// Calendar days (UTC) per window.
    Days(u64),
    /// Hours per window.
    Hours(u64),
}

/// Column names of the production log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogColumns {
    /// RFC 3339 timestamp (or integer seconds since the Unix epoch).
    #[serde(default = "c_timestamp")]
    pub timestamp: String,
    /// Case ID.
    #[serde(default = "c_case_id")]
    pub case_id: String,
    /// Model score (positive when score >= the released threshold); empty when the model did
    /// not answer.
    #[serde(default = "c_score")]
    pub score: String,
    /// Generative answer text (parsed with the protocol's answer rule when there is no score).
    #[serde(default = "c_answer")]
    pub answer: String,
    /// Late label from adjudication: 0, 1 or empty.
    #[serde(default = "c_label")]
    pub label: String,
    /// SHA-256 of the model that produced the row.
    #[serde(default = "c_model")]
    pub model_sha256: String,
}

impl Default for LogColumns {
    fn default() -> Self {
        LogColumns {
            timestamp: c_timestamp(),
            case_id: c_case_id(),
            score: c_score(),
            answer: c_answer(),
            label: c_label(),
            model_sha256: c_model(),
        }
    }
}

fn c_timestamp() -> String {
    "timestamp".into()
}
fn c_case_id() -> String {
    "case_id".into()
}
fn c_score() -> String {
    "score".into()
}
fn c_answer() -> String {
    "answer".into()
}
fn c_label() -> String {
    "label".into()
}
fn c_model() -> String {
    "model_sha256".into()
}

/// What a monitored statistic measures.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum MonitorKind {
    /// Population stability index of the scores over fixed baseline bins (alarm_above).
    Psi,
    /// Two-sample Kolmogorov-Smirnov p-value of the scores against the baseline (alarm_below).
    Ks,
    /// Wasserstein distance of the scores from the baseline (alarm_above).
    Wasserstein,
    /// Share of evaluated cases called positive. Without alarm_above/alarm_below: alarm when
    /// the window's interval excludes the baseline rate.
    PositiveRate,
    /// Chi-square p-value of the mix of `attribute` levels against the baseline (alarm_below).
    AttributeMix,
    /// Share of cases with an equivocal answer (alarm_above).
    EquivocalRate,
    /// Share of cases the model did not answer (alarm_above).
    NotEvaluatedRate,
    /// Sensitivity on labelled cases (alarm_below, tested on `bound`).
    Sensitivity,
    /// Specificity on labelled cases (alarm_below, tested on `bound`).
    Specificity,
    /// PPV on labelled cases (alarm_below, tested on `bound`).
    Ppv,
    /// CUSUM chart of `of` per window (k, arl0, direction).
    Cusum,
    /// EWMA chart of `of` per window (lambda, limit).
    Ewma,
}

impl MonitorKind {
    /// The name as written in protocols and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorKind::Psi => "psi",
            MonitorKind::Ks => "ks",
            MonitorKind::Wasserstein => "wasserstein",
            MonitorKind::PositiveRate => "positive_rate",
            MonitorKind::AttributeMix => "attribute_mix",
            MonitorKind::EquivocalRate => "equivocal_rate",
            MonitorKind::NotEvaluatedRate => "not_evaluated_rate",
            MonitorKind::Sensitivity => "sensitivity",
            MonitorKind::Specificity => "specificity",
            MonitorKind::Ppv => "ppv",
            MonitorKind::Cusum => "cusum",
            MonitorKind::Ewma => "ewma",
        }
    }
}

/// The per-window quantity a CUSUM or EWMA chart follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChartOf {
    /// Mean score of the window's evaluated cases.
    MeanScore,
    /// Share of evaluated cases called positive.
    PositiveRate,
    /// Sensitivity of the window's labelled cases.
    Sensitivity,
    /// Specificity of the window's labelled cases.
    Specificity,
}

impl ChartOf {
    /// The name as written in protocols and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ChartOf::MeanScore => "mean_score",
            ChartOf::PositiveRate => "positive_rate",
            ChartOf::Sensitivity => "sensitivity",
            ChartOf::Specificity => "specificity",
        }
    }
}

/// Which departures a chart alarms on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Increases and decreases (two one-sided charts, each with the one-sided `h`, as AIM-CU
    /// runs it: the combined in-control ARL is about half of `arl0`).
    #[default]
    Both,
    /// Increases only.
    Upper,
    /// Decreases only.
    Lower,
}

/// Where a chart's in-control mean and standard deviation come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum InControl {
    /// From the released baseline bundle: its mean score / rate / sensitivity / specificity,
    /// and each window's standard error from the baseline's spread and the window's size
    /// (the chart follows the standardised value).
    #[default]
    Baseline,
    /// From the first N windows of the log, mean and population standard deviation (AIM-CU's
    /// `set_init_stats(init_days)`).
    Windows(u64),
}

/// One monitored statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorStatistic {
    /// Unique ID, e.g. `MON-PSI-01`.
    pub id: String,
    /// What is measured.
    pub statistic: MonitorKind,
    /// The requirement an alarm traces to, e.g. `SRS-PTX-010`.
    pub requirement: String,
    /// The risk control measure an alarm traces to, e.g. `RC-PTX-03`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_control: Option<String>,
    /// Also compute the statistic per level of this subgroup attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The attribute whose mix `attribute_mix` tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// Alarm when the tested value exceeds this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_above: Option<f64>,
    /// Alarm when the tested value falls below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_below: Option<f64>,
    /// For sensitivity/specificity/PPV: which bound is tested (default: the upper bound, so an
    /// alarm means the performance is below the goal with the stated confidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
    /// For charts: the per-window quantity followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<ChartOf>,
    /// CUSUM: normalised reference value k (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<f64>,
    /// CUSUM: target in-control average run length in windows (default 370); h is derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arl0: Option<f64>,
    /// EWMA: smoothing constant lambda (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// EWMA: limit width L in standard deviations of the statistic (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// Charts: which departures alarm.
    #[serde(default)]
    pub direction: Direction,
    /// Charts: where the in-control mean and spread come from.
    #[serde(default)]
    pub in_control: InControl,
}
