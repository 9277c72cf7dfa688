//! The monitoring computation: windows, per-window statistics against the baseline, control
//! charts over the windows, and the alarms. Pure functions of the baseline, the plan and the
//! rows (no I/O, no clock), so the same inputs give the same `monitor.json`.
//!
//! CUSUM charts are AIM-CU's (FDA DIDSR `aim-cu` 0.2.1): `h` from `(k, ARL0)` by
//! [`cusum_crit`] rounded as its `get_threshold`, and the statistic path, the alarm points and
//! the first alarm from [`aimcu_path`] / [`aimcu_signal`], the same code the reference tests
//! check against AIM-CU (`tests/fixtures/monitor/cusum.json`); there is no second CUSUM here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::log::{LogRow, RowOutcome};
use crate::protocol::monitoring::{
    ChartOf, Direction, InControl, MonitorKind, MonitorStatistic, MonitoringSpec, WindowSpec,
};
use crate::protocol::{Bound, IntervalMethod};
use crate::stats::cusum::{
    Cusum, Ewma, Side, aimcu_path, aimcu_signal, cusum_crit, mean_sd, round_to,
};
use crate::stats::drift::{
    bin_counts, chi2_contingency, ks_2samp, psi, quantile_edges, wasserstein,
};
use crate::stats::interval::proportion_interval;

/// Default alarm thresholds when the plan gives none.
pub const DEFAULT_PSI_ABOVE: f64 = 0.25;
/// Default KS p-value alarm threshold.
pub const DEFAULT_KS_P_BELOW: f64 = 0.001;
/// Default chi-square p-value alarm threshold.
pub const DEFAULT_MIX_P_BELOW: f64 = 0.001;
/// Default CUSUM reference value.
pub const DEFAULT_K: f64 = 0.5;
/// Default CUSUM target in-control ARL (windows).
pub const DEFAULT_ARL0: f64 = 370.0;
/// Default EWMA smoothing.
pub const DEFAULT_LAMBDA: f64 = 0.2;
/// Default EWMA limit width.
pub const DEFAULT_LIMIT: f64 = 3.0;
/// Gauss-Legendre nodes for the CUSUM ARL (AIM-CU's `r = 30`).
pub const ARL_NODES: usize = 30;

/// One baseline case (a row of the bundle's `cases.parquet`).
#[derive(Debug, Clone, PartialEq)]
pub struct BaseCase {
    /// Score when evaluated.
    pub score: Option<f64>,
    /// Called positive (score >= threshold) when evaluated.
    pub positive: Option<bool>,
    /// Ground truth.
    pub label: bool,
    /// Outcome.
    pub outcome: RowOutcome,
    /// Attribute values in plan attribute order.
    pub attrs: Vec<String>,
}

/// The baseline the log is compared with, from the verified release bundle.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// Subgroup attributes in order (the plan's columns).
    pub attributes: Vec<String>,
    /// Cases.
    pub cases: Vec<BaseCase>,
    /// Operating point.
    pub threshold: f64,
}

/// Summary of the baseline (overall or one subgroup level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseSummary {
    /// Cases.
    pub cases: u64,
    /// Cases with a score.
    pub evaluated: u64,
    /// Called positive.
    pub positives_called: u64,
    /// Positive rate among evaluated.
    pub positive_rate: Option<f64>,
    /// Mean score.
    pub mean_score: Option<f64>,
    /// Population standard deviation of the scores.
    pub sd_score: Option<f64>,
    /// Sensitivity (evaluated cases).
    pub sensitivity: Option<f64>,
    /// Specificity.
    pub specificity: Option<f64>,
    /// PPV.
    pub ppv: Option<f64>,
    /// Sorted scores (not serialised).
    #[serde(skip)]
    pub sorted: Vec<f64>,
}

impl Baseline {
    /// The summary of the cases matching `scope` (`None`: all).
    pub fn summary(&self, scope: Option<(usize, &str)>) -> BaseSummary {
        let sel: Vec<&BaseCase> = self
            .cases
            .iter()
            .filter(|c| scope.is_none_or(|(a, l)| c.attrs.get(a).map(String::as_str) == Some(l)))
            .collect();
        let mut sorted: Vec<f64> = sel.iter().filter_map(|c| c.score).collect();
        sorted.sort_by(f64::total_cmp);
        let ev: Vec<&&BaseCase> = sel.iter().filter(|c| c.positive.is_some()).collect();
        let pos = ev.iter().filter(|c| c.positive == Some(true)).count() as u64;
        let (mut tp, mut fp, mut tn, mut fne) = (0u64, 0u64, 0u64, 0u64);
        for c in &ev {
            match (c.label, c.positive == Some(true)) {
                (true, true) => tp += 1,
                (true, false) => fne += 1,
                (false, true) => fp += 1,
                (false, false) => tn += 1,
            }
        }
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let ms = mean_sd(&sorted);
        BaseSummary {
            cases: sel.len() as u64,
            evaluated: ev.len() as u64,
            positives_called: pos,
            positive_rate: ratio(pos, ev.len() as u64),
            mean_score: ms.map(|m| m.0),
            sd_score: ms.map(|m| m.1),
            sensitivity: ratio(tp, tp + fne),
            specificity: ratio(tn, tn + fp),
            ppv: ratio(tp, tp + fp),
            sorted,
        }
    }
}

/// A window's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowInfo {
    /// 1-based window number.
    pub index: u64,
    /// Timestamp of the first row (RFC 3339).
    pub first: String,
    /// Timestamp of the last row.
    pub last: String,
    /// For time windows, the window's span `[start, end)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<(String, String)>,
    /// First and last case ID.
    pub cases: (String, String),
    /// Rows in the window.
    pub rows: u64,
    /// Rows with a score or a positive/negative answer.
    pub evaluated: u64,
    /// Equivocal answers.
    pub equivocal: u64,
    /// Rows the model did not answer.
    pub not_evaluated: u64,
    /// Rows with a valid label.
    pub labelled: u64,
    /// Fewer evaluated rows than `min_window_cases`: reported, no alarms.
    pub small: bool,
}

/// One statistic in one window and scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatValue {
    /// Statistic ID from the plan.
    pub id: String,
    /// What it is.
    pub statistic: MonitorKind,
    /// `overall` or `attribute=level`.
    pub scope: String,
    /// The tested value (`null` when undefined in this window).
    pub value: Option<f64>,
    /// Interval lower bound (proportions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    /// Interval upper bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// The baseline's value of the same quantity, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// Cases the value rests on.
    pub n: u64,
    /// Secondary figures (KS D, chi-square statistic and dof, counts), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, serde_json::Value>,
    /// How the value and its p-value or interval were computed.
    pub method: String,
    /// The alarm rule, in words.
    pub rule: String,
    /// Whether this value raises an alarm.
    pub alarm: bool,
    /// Why no alarm could be raised, when so (small window, undefined value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One closed window with its statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// Identity and counts.
    pub window: WindowInfo,
    /// Every statistic, in plan order then scope order.
    pub values: Vec<StatValue>,
}

/// One observation a chart follows (per window), kept in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartObs {
    /// Window number.
    pub window: u64,
    /// The window's raw value of the charted quantity (`None` when undefined).
    pub raw: Option<f64>,
    /// Cases it rests on.
    pub n: u64,
}

/// The fixed design of one chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartDesign {
    /// `cusum` or `ewma`.
    pub chart: MonitorKind,
    /// Quantity followed.
    pub of: ChartOf,
    /// Where mu0/sigma came from.
    pub in_control: InControl,
    /// In-control mean of the charted quantity (raw units).
    pub mu0: Option<f64>,
    /// For `baseline`: the per-case standard deviation (mean score) or `sqrt(p0 (1 - p0))`
    /// (rates); for `windows`: the standard deviation of the window values.
    pub sigma: Option<f64>,
    /// CUSUM k.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<f64>,
    /// CUSUM h from (k, ARL0), rounded to 4 decimals as AIM-CU's `get_threshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h: Option<f64>,
    /// CUSUM target ARL0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arl0: Option<f64>,
    /// EWMA lambda.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// EWMA L.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// Alarm directions.
    pub direction: Direction,
}

/// One chart point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartPoint {
    /// Window number.
    pub window: u64,
    /// The raw window value.
    pub raw: Option<f64>,
    /// The charted observation: standardised for `in_control: baseline` (and for an EWMA with
    /// `in_control: windows`); the raw window value for a CUSUM with `in_control: windows`
    /// (AIM-CU charts the metric itself).
    pub x: Option<f64>,
    /// CUSUM S+ as AIM-CU computes it (`stats::cusum::aimcu_path`: in the units of `x`, rounded
    /// to 2 decimals), or EWMA Z; `None` for a side the chart does not monitor.
    pub upper_stat: Option<f64>,
    /// CUSUM S- (as S+), or EWMA lower limit.
    pub lower_stat: Option<f64>,
    /// CUSUM: `H = h sigma` in the units of `x` (so `h` itself for a baseline design, whose `x`
    /// is standardised); EWMA: upper control limit.
    pub limit: Option<f64>,
    /// Alarm side at this point.
    pub alarm: Option<Side>,
}

/// One chart over all windows so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// Statistic ID.
    pub id: String,
    /// Scope.
    pub scope: String,
    /// Design.
    pub design: ChartDesign,
    /// Points.
    pub points: Vec<ChartPoint>,
    /// First alarm (window, side).
    pub first_alarm: Option<(u64, Side)>,
    /// Why the chart could not run, when so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An alarm, traced to its requirement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Statistic ID.
    pub id: String,
    /// Statistic kind.
    pub statistic: MonitorKind,
    /// Scope.
    pub scope: String,
    /// Window number.
    pub window: u64,
    /// Window's first and last timestamps.
    pub window_first: String,
    /// See `window_first`.
    pub window_last: String,
    /// The value that alarmed.
    pub value: Option<f64>,
    /// The rule.
    pub rule: String,
    /// Requirement.
    pub requirement: String,
    /// Risk control.
    pub risk_control: Option<String>,
}

/// The key of a row's window: its sequence number / size, or its time bucket.
pub fn window_key(spec: WindowSpec, seq: u64, ts_ms: i64) -> i64 {
    match spec {
        WindowSpec::Cases(n) => (seq / n.max(1)) as i64,
        WindowSpec::Days(d) => ts_ms.div_euclid(86_400_000 * d.max(1) as i64),
        WindowSpec::Hours(h) => ts_ms.div_euclid(3_600_000 * h.max(1) as i64),
    }
}

/// The `[start, end)` span of a time window key.
pub fn window_span(spec: WindowSpec, key: i64) -> Option<(i64, i64)> {
    let len = match spec {
        WindowSpec::Cases(_) => return None,
        WindowSpec::Days(d) => 86_400_000 * d.max(1) as i64,
        WindowSpec::Hours(h) => 3_600_000 * h.max(1) as i64,
    };
    Some((key * len, (key + 1) * len))
}

/// PSI bins of one scope: interior edges and the baseline's counts.
pub type PsiBins = (Vec<f64>, Vec<u64>);

/// Everything a window evaluation needs besides its rows.
pub struct Context<'a> {
    /// The plan.
    pub plan: &'a MonitoringSpec,
    /// Baseline.
    pub baseline: &'a Baseline,
    /// Attribute names in row order.
    pub attributes: &'a [String],
    /// What was read from the logs: the level names per attribute
    /// ([`LogRead::levels`](super::log::LogRead::levels)) and each row's attribute codes
    /// ([`LogRead::attrs`](super::log::LogRead::attrs)).
    pub log: &'a super::log::LogRead,
    /// Confidence level.
    pub confidence: f64,
    /// Interval method for proportions (bootstrap falls back to Wilson).
    pub interval: IntervalMethod,
    /// Baseline summaries by scope (cache).
    pub summaries: std::cell::RefCell<BTreeMap<String, std::rc::Rc<BaseSummary>>>,
    /// PSI edges by scope (cache).
    pub edges: std::cell::RefCell<BTreeMap<String, std::rc::Rc<PsiBins>>>,
}

impl Context<'_> {
    /// Code of attribute `a` of row `r` (an index into `log.levels[a]`).
    fn code(&self, r: &LogRow, a: usize) -> u32 {
        self.log.attrs(r)[a]
    }

    fn attr_index(&self, name: &str) -> Option<usize> {
        self.attributes.iter().position(|a| a == name)
    }

    fn summary(&self, scope: &Scope) -> std::rc::Rc<BaseSummary> {
        let key = scope.label();
        if let Some(s) = self.summaries.borrow().get(&key) {
            return s.clone();
        }
        let s = std::rc::Rc::new(
            self.baseline
                .summary(scope.attr.as_ref().map(|(a, l)| (*a, l.as_str()))),
        );
        self.summaries.borrow_mut().insert(key, s.clone());
        s
    }

    fn psi_edges(&self, scope: &Scope, base: &BaseSummary) -> std::rc::Rc<PsiBins> {
        let key = scope.label();
        if let Some(s) = self.edges.borrow().get(&key) {
            return s.clone();
        }
        let e = quantile_edges(&base.sorted, self.plan.psi_bins);
        let c = bin_counts(&e, &base.sorted);
        let v = std::rc::Rc::new((e, c));
        self.edges.borrow_mut().insert(key, v.clone());
        v
    }

    fn interval(&self, k: u64, n: u64) -> Option<(f64, f64)> {
        let m = match self.interval {
            IntervalMethod::Bootstrap => IntervalMethod::Wilson,
            m => m,
        };
        proportion_interval(m, k, n, self.confidence)
    }

    fn interval_name(&self) -> &'static str {
        match self.interval {
            IntervalMethod::Bootstrap => IntervalMethod::Wilson.as_str(),
            m => m.as_str(),
        }
    }
}

/// A scope: overall, or one level of one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `(attribute index, level)`.
    pub attr: Option<(usize, String)>,
    name: Option<String>,
}

/// The label of the overall scope in monitor.json (`StatValue::scope`, `Chart::scope`,
/// `Alarm::scope`); a level's label is `attribute=level`, which never equals it.
pub const OVERALL: &str = "overall";

impl StatValue {
    /// Whether this value is over all rows of the window (not one attribute level).
    pub fn is_overall(&self) -> bool {
        self.scope == OVERALL
    }
}

impl Scope {
    /// The overall scope.
    pub fn overall() -> Self {
        Scope {
            attr: None,
            name: None,
        }
    }

    /// `overall` or `attribute=level`.
    pub fn label(&self) -> String {
        match (&self.name, &self.attr) {
            (Some(n), Some((_, l))) => format!("{n}={l}"),
            _ => OVERALL.into(),
        }
    }
}

/// The scopes of a statistic: overall, then each level of `by` seen in the baseline or in the
/// rows (string order).
pub fn scopes(ctx: &Context, s: &MonitorStatistic, extra_levels: &[String]) -> Vec<Scope> {
    let mut out = vec![Scope::overall()];
    if let Some(by) = &s.by
        && let Some(ai) = ctx.attr_index(by)
    {
        let mut levels: std::collections::BTreeSet<String> = ctx
            .baseline
            .cases
            .iter()
            .map(|c| c.attrs[ai].clone())
            .collect();
        levels.extend(extra_levels.iter().cloned());
        levels.extend(ctx.log.levels[ai].iter().cloned());
        for l in levels {
            out.push(Scope {
                attr: Some((ai, l)),
                name: Some(by.clone()),
            });
        }
    }
    out
}

/// The rows of `rows` in `scope`: the level's code is looked up once, then compared per row.
fn in_scope<'r>(ctx: &Context, rows: &'r [LogRow], scope: &Scope) -> Vec<&'r LogRow> {
    match &scope.attr {
        None => rows.iter().collect(),
        Some((a, l)) => match ctx.log.levels[*a].iter().position(|x| x == l) {
            None => Vec::new(),
            Some(code) => rows
                .iter()
                .filter(|r| ctx.code(r, *a) as usize == code)
                .collect(),
        },
    }
}

fn value(
    s: &MonitorStatistic,
    scope: &Scope,
    method: impl Into<String>,
    rule: impl Into<String>,
) -> StatValue {
    StatValue {
        id: s.id.clone(),
        statistic: s.statistic,
        scope: scope.label(),
        value: None,
        lower: None,
        upper: None,
        baseline: None,
        n: 0,
        detail: BTreeMap::new(),
        method: method.into(),
        rule: rule.into(),
        alarm: false,
        note: None,
    }
}

fn fmt(x: f64) -> String {
    format!("{x}")
}

/// The tested proportion of a rate statistic by its bound.
fn bound_value(b: Bound, point: Option<f64>, iv: Option<(f64, f64)>) -> Option<f64> {
    match b {
        Bound::Point => point,
        Bound::Lower => iv.map(|i| i.0),
        Bound::Upper => iv.map(|i| i.1),
    }
}

/// Evaluates every non-chart statistic of the plan on one window's rows.
pub fn evaluate_window(ctx: &Context, info: &WindowInfo, rows: &[LogRow]) -> Vec<StatValue> {
    let mut out = Vec::new();
    // The window's sorted scores by scope, sorted once for every score statistic (PSI, KS,
    // Wasserstein) of that scope.
    let mut sorted: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in &ctx.plan.statistics {
        if matches!(s.statistic, MonitorKind::Cusum | MonitorKind::Ewma) {
            continue;
        }
        let needs_scores = matches!(
            s.statistic,
            MonitorKind::Psi | MonitorKind::Ks | MonitorKind::Wasserstein
        );
        for scope in scopes(ctx, s, &[]) {
            let sel = in_scope(ctx, rows, &scope);
            if scope.attr.is_some() && sel.is_empty() {
                continue;
            }
            let base = ctx.summary(&scope);
            let scores: &[f64] = if needs_scores {
                sorted.entry(scope.label()).or_insert_with(|| {
                    let mut v: Vec<f64> = sel.iter().filter_map(|r| r.score).collect();
                    // Unstable is enough: values equal under total_cmp are the same bits.
                    v.sort_unstable_by(f64::total_cmp);
                    v
                })
            } else {
                &[]
            };
            let mut v = stat_value(ctx, s, &scope, &sel, &base, scores);
            if info.small && v.alarm {
                v.alarm = false;
                v.note = Some(format!(
                    "window has {} evaluated cases, fewer than min_window_cases {}: no alarm",
                    info.evaluated, ctx.plan.min_window_cases
                ));
            } else if info.small {
                v.note = Some(format!(
                    "window has {} evaluated cases, fewer than min_window_cases {}",
                    info.evaluated, ctx.plan.min_window_cases
                ));
            }
            out.push(v);
        }
    }
    out
}

fn stat_value(
    ctx: &Context,
    s: &MonitorStatistic,
    scope: &Scope,
    sel: &[&LogRow],
    base: &BaseSummary,
    scores: &[f64],
) -> StatValue {
    let evaluated: Vec<&&LogRow> = sel
        .iter()
        .filter(|r| r.outcome == RowOutcome::Evaluated && r.positive.is_some())
        .collect();
    let undefined = |v: &mut StatValue, why: &str| {
        v.note = Some(why.to_string());
    };
    match s.statistic {
        MonitorKind::Psi => {
            let th = s.alarm_above.unwrap_or(DEFAULT_PSI_ABOVE);
            let mut v = value(
                s,
                scope,
                format!(
                    "PSI over {} baseline-quantile bins, shares floored at 1e-4",
                    ctx.plan.psi_bins
                ),
                format!("alarm when PSI > {}", fmt(th)),
            );
            v.n = scores.len() as u64;
            if base.sorted.is_empty() {
                undefined(&mut v, "no baseline scores in this scope");
                return v;
            }
            let e = ctx.psi_edges(scope, base);
            let cur = bin_counts(&e.0, scores);
            v.value = psi(&e.1, &cur);
            v.alarm = v.value.is_some_and(|x| x > th);
            v
        }
        MonitorKind::Ks => {
            let th = s.alarm_below.unwrap_or(DEFAULT_KS_P_BELOW);
            let mut v = value(
                s,
                scope,
                "two-sample Kolmogorov-Smirnov, two-sided",
                format!("alarm when p < {}", fmt(th)),
            );
            v.n = scores.len() as u64;
            match ks_2samp(&base.sorted, scores) {
                Some(r) => {
                    v.value = Some(r.p_value);
                    v.detail.insert("d".into(), r.statistic.into());
                    v.method = format!(
                        "two-sample Kolmogorov-Smirnov, two-sided, {} p-value",
                        match r.method {
                            crate::stats::drift::KsMethod::Exact => "exact",
                            crate::stats::drift::KsMethod::Asymptotic => "asymptotic",
                        }
                    );
                    v.alarm = r.p_value < th;
                }
                None => undefined(&mut v, "no scores in the window or the baseline scope"),
            }
            v
        }
        MonitorKind::Wasserstein => {
            let mut v = value(
                s,
                scope,
                "first Wasserstein distance of the score distributions",
                s.alarm_above
                    .map(|t| format!("alarm when distance > {}", fmt(t)))
                    .unwrap_or_else(|| "reported only (no alarm_above)".into()),
            );
            v.n = scores.len() as u64;
            v.value = wasserstein(&base.sorted, scores);
            if v.value.is_none() {
                undefined(&mut v, "no scores in the window or the baseline scope");
            }
            v.alarm = matches!((v.value, s.alarm_above), (Some(x), Some(t)) if x > t);
            v
        }
        MonitorKind::PositiveRate => {
            let k = evaluated
                .iter()
                .filter(|r| r.positive == Some(true))
                .count() as u64;
            let n = evaluated.len() as u64;
            rate_value(ctx, s, scope, k, n, base.positive_rate, true)
        }
        MonitorKind::EquivocalRate => {
            let k = sel
                .iter()
                .filter(|r| r.outcome == RowOutcome::Equivocal)
                .count() as u64;
            rate_value(ctx, s, scope, k, sel.len() as u64, None, false)
        }
        MonitorKind::NotEvaluatedRate => {
            let k = sel
                .iter()
                .filter(|r| r.outcome == RowOutcome::NotEvaluated)
                .count() as u64;
            rate_value(ctx, s, scope, k, sel.len() as u64, None, false)
        }
        MonitorKind::Sensitivity | MonitorKind::Specificity | MonitorKind::Ppv => {
            let lab: Vec<(bool, bool)> = evaluated
                .iter()
                .filter_map(|r| r.label.map(|l| (l, r.positive == Some(true))))
                .collect();
            let (k, n, b) = match s.statistic {
                MonitorKind::Sensitivity => (
                    lab.iter().filter(|(l, p)| *l && *p).count(),
                    lab.iter().filter(|(l, _)| *l).count(),
                    base.sensitivity,
                ),
                MonitorKind::Specificity => (
                    lab.iter().filter(|(l, p)| !*l && !*p).count(),
                    lab.iter().filter(|(l, _)| !*l).count(),
                    base.specificity,
                ),
                _ => (
                    lab.iter().filter(|(l, p)| *l && *p).count(),
                    lab.iter().filter(|(_, p)| *p).count(),
                    base.ppv,
                ),
            };
            let bound = s.bound.unwrap_or(Bound::Upper);
            let bname = match bound {
                Bound::Point => "point estimate",
                Bound::Lower => "lower bound",
                Bound::Upper => "upper bound",
            };
            let mut v = value(
                s,
                scope,
                format!(
                    "{} of labelled cases, {} {} interval",
                    s.statistic.as_str(),
                    fmt(ctx.confidence),
                    ctx.interval_name()
                ),
                s.alarm_below
                    .map(|t| format!("alarm when the {bname} < {}", fmt(t)))
                    .unwrap_or_else(|| "reported only (no alarm_below)".into()),
            );
            v.n = n as u64;
            v.baseline = b;
            let point = (n > 0).then(|| k as f64 / n as f64);
            let iv = ctx.interval(k as u64, n as u64);
            v.value = point;
            v.lower = iv.map(|i| i.0);
            v.upper = iv.map(|i| i.1);
            v.detail.insert("k".into(), (k as u64).into());
            if n == 0 {
                undefined(&mut v, "no labelled cases for this metric in the window");
            }
            v.alarm = matches!((bound_value(bound, point, iv), s.alarm_below), (Some(x), Some(t)) if x < t);
            v
        }
        MonitorKind::AttributeMix => {
            let th = s.alarm_below.unwrap_or(DEFAULT_MIX_P_BELOW);
            let mut v = value(
                s,
                scope,
                "Pearson chi-square of level counts, window vs baseline (Yates when dof = 1)",
                format!("alarm when p < {}", fmt(th)),
            );
            let Some(ai) = s.attribute.as_deref().and_then(|a| ctx.attr_index(a)) else {
                undefined(&mut v, "no attribute");
                return v;
            };
            let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for c in &ctx.baseline.cases {
                if scope.attr.as_ref().is_none_or(|(a, l)| c.attrs[*a] == *l) {
                    counts.entry(c.attrs[ai].clone()).or_default().0 += 1;
                }
            }
            // Window counts by level code first (no string per row), then by level name.
            let mut by_code = vec![0u64; ctx.log.levels[ai].len()];
            for r in sel {
                if let Some(n) = by_code.get_mut(ctx.code(r, ai) as usize) {
                    *n += 1;
                }
            }
            for (code, n) in by_code.into_iter().enumerate() {
                if n > 0 {
                    counts
                        .entry(ctx.log.levels[ai][code].clone())
                        .or_default()
                        .1 += n;
                }
            }
            let table: Vec<Vec<u64>> = counts.values().map(|(b, w)| vec![*b, *w]).collect();
            v.n = sel.len() as u64;
            let new: Vec<serde_json::Value> = counts
                .iter()
                .filter(|(_, (b, w))| *b == 0 && *w > 0)
                .map(|(l, _)| l.clone().into())
                .collect();
            if !new.is_empty() {
                v.detail.insert("new_levels".into(), new.into());
            }
            let mix: serde_json::Map<String, serde_json::Value> = counts
                .iter()
                .map(|(l, (_, w))| (l.clone(), (*w).into()))
                .collect();
            v.detail.insert("window_counts".into(), mix.into());
            match chi2_contingency(&table) {
                Some(r) => {
                    v.value = Some(r.p_value);
                    v.detail.insert("chi2".into(), r.statistic.into());
                    v.detail.insert("dof".into(), r.dof.into());
                    v.alarm = r.p_value < th;
                }
                None => undefined(&mut v, "fewer than two levels or an empty sample"),
            }
            v
        }
        MonitorKind::Cusum | MonitorKind::Ewma => value(s, scope, "chart", "chart"),
    }
}

fn rate_value(
    ctx: &Context,
    s: &MonitorStatistic,
    scope: &Scope,
    k: u64,
    n: u64,
    baseline: Option<f64>,
    interval_rule: bool,
) -> StatValue {
    let rule = match (s.alarm_above, s.alarm_below) {
        (None, None) if interval_rule => format!(
            "alarm when the {} {} interval excludes the baseline rate",
            fmt(ctx.confidence),
            ctx.interval_name()
        ),
        (None, None) => "reported only (no alarm_above/alarm_below)".into(),
        (a, b) => {
            let mut parts = Vec::new();
            if let Some(a) = a {
                parts.push(format!("rate > {}", fmt(a)));
            }
            if let Some(b) = b {
                parts.push(format!("rate < {}", fmt(b)));
            }
            format!("alarm when {}", parts.join(" or "))
        }
    };
    let mut v = value(
        s,
        scope,
        format!(
            "proportion with {} {} interval",
            fmt(ctx.confidence),
            ctx.interval_name()
        ),
        rule,
    );
    v.n = n;
    v.baseline = baseline;
    v.detail.insert("k".into(), k.into());
    let point = (n > 0).then(|| k as f64 / n as f64);
    let iv = ctx.interval(k, n);
    v.value = point;
    v.lower = iv.map(|i| i.0);
    v.upper = iv.map(|i| i.1);
    if n == 0 {
        v.note = Some("no cases in this scope and window".into());
        return v;
    }
    v.alarm = match (s.alarm_above, s.alarm_below) {
        (None, None) if interval_rule => match (iv, baseline) {
            (Some((lo, hi)), Some(b)) => b < lo || b > hi,
            _ => false,
        },
        (a, b) => {
            let p = point.unwrap_or(0.0);
            a.is_some_and(|a| p > a) || b.is_some_and(|b| p < b)
        }
    };
    v
}

/// The window value of a chart's quantity: `(raw value, n)`.
pub fn chart_raw(of: ChartOf, rows: &[&LogRow]) -> (Option<f64>, u64) {
    let ev: Vec<&&LogRow> = rows.iter().filter(|r| r.positive.is_some()).collect();
    match of {
        ChartOf::MeanScore => {
            let s: Vec<f64> = rows.iter().filter_map(|r| r.score).collect();
            let n = s.len() as u64;
            ((n > 0).then(|| s.iter().sum::<f64>() / n as f64), n)
        }
        ChartOf::PositiveRate => {
            let n = ev.len() as u64;
            let k = ev.iter().filter(|r| r.positive == Some(true)).count();
            ((n > 0).then(|| k as f64 / n as f64), n)
        }
        ChartOf::Sensitivity | ChartOf::Specificity => {
            let want = of == ChartOf::Sensitivity;
            let sel: Vec<bool> = ev
                .iter()
                .filter(|r| r.label == Some(want))
                .map(|r| r.positive == Some(want))
                .collect();
            let n = sel.len() as u64;
            let k = sel.iter().filter(|x| **x).count();
            ((n > 0).then(|| k as f64 / n as f64), n)
        }
    }
}

/// Chart observations of one window, for every chart statistic and scope: `(key, obs)`.
pub fn chart_observations(ctx: &Context, index: u64, rows: &[LogRow]) -> Vec<(String, ChartObs)> {
    let mut out = Vec::new();
    for s in &ctx.plan.statistics {
        if !matches!(s.statistic, MonitorKind::Cusum | MonitorKind::Ewma) {
            continue;
        }
        let of = s.of.unwrap_or(ChartOf::MeanScore);
        for scope in scopes(ctx, s, &[]) {
            let sel = in_scope(ctx, rows, &scope);
            let (raw, n) = chart_raw(of, &sel);
            out.push((
                chart_key(&s.id, &scope.label()),
                ChartObs {
                    window: index,
                    raw,
                    n,
                },
            ));
        }
    }
    out
}

/// The state-file key of a chart.
pub fn chart_key(id: &str, scope: &str) -> String {
    format!("{id}|{scope}")
}

/// Builds every chart from its full observation history.
pub fn build_charts(ctx: &Context, obs: &BTreeMap<String, Vec<ChartObs>>) -> Vec<Chart> {
    let mut out = Vec::new();
    for s in &ctx.plan.statistics {
        if !matches!(s.statistic, MonitorKind::Cusum | MonitorKind::Ewma) {
            continue;
        }
        let of = s.of.unwrap_or(ChartOf::MeanScore);
        let mut extra: Vec<String> = Vec::new();
        for k in obs.keys() {
            if let Some(rest) = k.strip_prefix(&format!("{}|", s.id))
                && let Some((_, l)) = rest.split_once('=')
            {
                extra.push(l.to_string());
            }
        }
        for scope in scopes(ctx, s, &extra) {
            let label = scope.label();
            let empty = Vec::new();
            let series = obs.get(&chart_key(&s.id, &label)).unwrap_or(&empty);
            if scope.attr.is_some() && series.iter().all(|o| o.n == 0) {
                continue;
            }
            let base = ctx.summary(&scope);
            out.push(build_chart(s, of, &label, &base, series));
        }
    }
    out
}

fn build_chart(
    s: &MonitorStatistic,
    of: ChartOf,
    scope: &str,
    base: &BaseSummary,
    series: &[ChartObs],
) -> Chart {
    let k = s.k.unwrap_or(DEFAULT_K);
    let arl0 = s.arl0.unwrap_or(DEFAULT_ARL0);
    let lambda = s.lambda.unwrap_or(DEFAULT_LAMBDA);
    let limit = s.limit.unwrap_or(DEFAULT_LIMIT);
    let is_cusum = s.statistic == MonitorKind::Cusum;
    let h = if is_cusum {
        cusum_crit(k, arl0, ARL_NODES).map(|h| round_to(h, 4))
    } else {
        None
    };
    let (mu0, sigma) = match s.in_control {
        InControl::Baseline => match of {
            ChartOf::MeanScore => (base.mean_score, base.sd_score),
            ChartOf::PositiveRate => (
                base.positive_rate,
                base.positive_rate.map(|p| (p * (1.0 - p)).sqrt()),
            ),
            ChartOf::Sensitivity => (
                base.sensitivity,
                base.sensitivity.map(|p| (p * (1.0 - p)).sqrt()),
            ),
            ChartOf::Specificity => (
                base.specificity,
                base.specificity.map(|p| (p * (1.0 - p)).sqrt()),
            ),
        },
        InControl::Windows(n) => {
            let init: Vec<f64> = series
                .iter()
                .filter_map(|o| o.raw)
                .take(n as usize)
                .collect();
            if (init.len() as u64) < n {
                (None, None)
            } else {
                match mean_sd(&init) {
                    Some((m, sd)) => (Some(m), Some(sd)),
                    None => (None, None),
                }
            }
        }
    };
    let design = ChartDesign {
        chart: s.statistic,
        of,
        in_control: s.in_control,
        mu0,
        sigma,
        k: is_cusum.then_some(k),
        h,
        arl0: is_cusum.then_some(arl0),
        lambda: (!is_cusum).then_some(lambda),
        limit: (!is_cusum).then_some(limit),
        direction: s.direction,
    };
    let mut chart = Chart {
        id: s.id.clone(),
        scope: scope.to_string(),
        design,
        points: Vec::new(),
        first_alarm: None,
        note: None,
    };
    let (Some(mu0), Some(sigma)) = (mu0, sigma) else {
        chart.note = Some(match s.in_control {
            InControl::Windows(n) => format!("waiting for {n} in-control windows"),
            InControl::Baseline => "the baseline does not define this quantity".into(),
        });
        return chart;
    };
    if sigma.is_nan() || sigma <= 0.0 || (is_cusum && h.is_none()) {
        chart.note = Some("the in-control standard deviation is 0 (or h undefined)".into());
        return chart;
    }
    // Observation: standardised per window (baseline), or raw (windows, AIM-CU).
    let observe = |o: &ChartObs| -> Option<f64> {
        let raw = o.raw?;
        match s.in_control {
            InControl::Baseline => {
                if o.n == 0 {
                    return None;
                }
                Some((raw - mu0) / (sigma / (o.n as f64).sqrt()))
            }
            InControl::Windows(_) => Some((raw - mu0) / sigma),
        }
    };
    let allowed = |side: Side| match s.direction {
        Direction::Both => true,
        Direction::Upper => side == Side::Upper,
        Direction::Lower => side == Side::Lower,
    };
    if is_cusum {
        // AIM-CU's path (`stats::cusum::aimcu_path`) on the observations as charted: the
        // standardised window values (mu0 0, sigma 1) for a baseline design, the raw window
        // values with the in-control windows' mu0 and sigma for a windows design (AIM-CU's own
        // setting, so its 2-decimal rounding is in the metric's units). Windows without a value
        // are skipped.
        let (mu0, sigma) = match s.in_control {
            InControl::Baseline => (0.0, 1.0),
            InControl::Windows(_) => (mu0, sigma),
        };
        let c = Cusum {
            mu0,
            sigma,
            k,
            h: h.unwrap_or(0.0),
        };
        let xs: Vec<Option<f64>> = series
            .iter()
            .map(|o| match s.in_control {
                InControl::Baseline => observe(o),
                InControl::Windows(_) => o.raw,
            })
            .collect();
        let defined: Vec<f64> = xs.iter().flatten().copied().collect();
        let (path, _) = aimcu_path(&c, &defined);
        let mut path = path.into_iter();
        let (upper, lower) = (allowed(Side::Upper), allowed(Side::Lower));
        for (o, x) in series.iter().zip(xs) {
            let mut p = ChartPoint {
                window: o.window,
                raw: o.raw,
                x,
                upper_stat: None,
                lower_stat: None,
                limit: Some(c.h * c.sigma),
                alarm: None,
            };
            if x.is_some()
                && let Some(st) = path.next()
            {
                p.upper_stat = upper.then_some(st.s_hi);
                p.lower_stat = lower.then_some(st.s_lo);
                p.alarm = aimcu_signal(&c, &st, upper, lower);
            }
            if chart.first_alarm.is_none()
                && let Some(sd) = p.alarm
            {
                chart.first_alarm = Some((o.window, sd));
            }
            chart.points.push(p);
        }
    } else {
        let e = Ewma {
            mu0: 0.0,
            sigma: 1.0,
            lambda,
            l: limit,
        };
        let mut st = e.start();
        for o in series {
            let x = observe(o);
            let mut p = ChartPoint {
                window: o.window,
                raw: o.raw,
                x,
                upper_stat: None,
                lower_stat: None,
                limit: None,
                alarm: None,
            };
            if let Some(x) = x {
                let (n, pt, side) = e.step(st, x);
                st = n;
                p.upper_stat = Some(pt.z);
                p.lower_stat = Some(pt.lcl);
                p.limit = Some(pt.ucl);
                p.alarm = side.filter(|sd| allowed(*sd));
            }
            if chart.first_alarm.is_none()
                && let Some(sd) = p.alarm
            {
                chart.first_alarm = Some((o.window, sd));
            }
            chart.points.push(p);
        }
    }
    chart
}

/// Every alarm of the windows and charts, traced to the plan's requirement, sorted by window
/// then statistic ID then scope.
pub fn alarms(plan: &MonitoringSpec, windows: &[WindowResult], charts: &[Chart]) -> Vec<Alarm> {
    let find = |id: &str| plan.statistics.iter().find(|s| s.id == id);
    let win = |i: u64| windows.iter().find(|w| w.window.index == i);
    let mut out = Vec::new();
    for w in windows {
        for v in w.values.iter().filter(|v| v.alarm) {
            let Some(s) = find(&v.id) else { continue };
            out.push(Alarm {
                id: v.id.clone(),
                statistic: v.statistic,
                scope: v.scope.clone(),
                window: w.window.index,
                window_first: w.window.first.clone(),
                window_last: w.window.last.clone(),
                value: v.value,
                rule: v.rule.clone(),
                requirement: s.requirement.clone(),
                risk_control: s.risk_control.clone(),
            });
        }
    }
    for c in charts {
        let Some(s) = find(&c.id) else { continue };
        for p in c.points.iter().filter(|p| p.alarm.is_some()) {
            let w = win(p.window);
            let rule = match c.design.chart {
                MonitorKind::Cusum => format!(
                    "CUSUM of {} (k = {}, h = {} for ARL0 {}) exceeds h",
                    c.design.of.as_str(),
                    c.design.k.unwrap_or(0.0),
                    c.design.h.unwrap_or(0.0),
                    c.design.arl0.unwrap_or(0.0)
                ),
                _ => format!(
                    "EWMA of {} (lambda = {}, L = {}) outside its limits",
                    c.design.of.as_str(),
                    c.design.lambda.unwrap_or(0.0),
                    c.design.limit.unwrap_or(0.0)
                ),
            };
            out.push(Alarm {
                id: c.id.clone(),
                statistic: c.design.chart,
                scope: c.scope.clone(),
                window: p.window,
                window_first: w.map(|w| w.window.first.clone()).unwrap_or_default(),
                window_last: w.map(|w| w.window.last.clone()).unwrap_or_default(),
                value: match (c.design.chart, p.alarm) {
                    (MonitorKind::Cusum, Some(Side::Lower)) => p.lower_stat,
                    _ => p.upper_stat,
                },
                rule,
                requirement: s.requirement.clone(),
                risk_control: s.risk_control.clone(),
            });
        }
    }
    out.sort_by(|a, b| (a.window, &a.id, &a.scope).cmp(&(b.window, &b.id, &b.scope)));
    out
}
