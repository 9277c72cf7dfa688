//! Evaluating acceptance criteria against the statistics: the step that turns numbers into
//! verdicts, and so the one an auditor reads most closely.
//!
//! # Rules
//!
//! - The tested value is the criterion's `bound` of the estimate: the point estimate, or the
//!   lower or upper confidence bound (for gaps: the bootstrap interval of the difference).
//! - `at_least: g` passes when tested >= g; `at_most: g` passes when tested <= g. No
//!   rounding is applied before comparison.
//! - A metric that is undefined (zero denominator, a class absent) is NOT EVALUABLE. So is
//!   a subgroup level below the protocol's `min_subgroup_size` (flagged `small`): its
//!   interval is too wide to support a claim either way, and silently passing it would
//!   over-read it. NOT EVALUABLE fails the gate (domain notes, FDA 2007).
//! - A criterion over several units (each level of an attribute) fails if any unit fails;
//!   otherwise it is not evaluable if any unit is; otherwise it passes.

use crate::protocol::{Bound, Criterion, Metric, Protocol};
use crate::stats::{Estimate, Metrics, StatsReport};

use super::evidence::{CriterionResult, Observation, Verdict};

fn metric_estimate(m: &Metrics, metric: Metric) -> Option<Estimate> {
    match metric {
        Metric::Sensitivity => m.sensitivity.clone(),
        Metric::Specificity => m.specificity.clone(),
        Metric::Ppv => m.ppv.clone(),
        Metric::Npv => m.npv.clone(),
        Metric::Accuracy => m.accuracy.clone(),
        Metric::Auroc => m.auroc.clone(),
        Metric::F1 => m.f1.map(|v| Estimate {
            estimate: v,
            lower: v,
            upper: v,
            method: None,
        }),
        Metric::SensitivityGap | Metric::SpecificityGap | Metric::AurocGap => None,
        // Evaluated by `super::comparison` against the reference release.
        Metric::SensitivityDifference | Metric::SpecificityDifference | Metric::AurocDifference => {
            None
        }
    }
}

fn judge(tested: f64, c: &Criterion) -> Verdict {
    let pass = match (c.at_least, c.at_most) {
        (Some(g), _) => tested >= g,
        (None, Some(g)) => tested <= g,
        (None, None) => false,
    };
    if pass { Verdict::Pass } else { Verdict::Fail }
}

fn observe(
    unit: String,
    n: u64,
    est: Option<(f64, f64, f64)>,
    c: &Criterion,
    small: bool,
) -> Observation {
    let tested = est.map(|(e, l, u)| match c.bound {
        Bound::Point => e,
        Bound::Lower => l,
        Bound::Upper => u,
    });
    let (verdict, note) = match (tested, small) {
        (None, _) => (
            Verdict::NotEvaluable,
            Some("metric undefined (zero denominator or a class absent)".to_string()),
        ),
        (Some(_), true) => (
            Verdict::NotEvaluable,
            Some("subgroup below the protocol's minimum size".to_string()),
        ),
        (Some(t), false) => (judge(t, c), None),
    };
    Observation {
        unit,
        n,
        estimate: est.map(|e| e.0),
        lower: est.map(|e| e.1),
        upper: est.map(|e| e.2),
        tested,
        verdict,
        note,
    }
}

/// Combines unit verdicts: any FAIL fails; else any NOT EVALUABLE; else PASS (and an empty
/// set of units is NOT EVALUABLE: nothing was tested).
pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let v: Vec<Verdict> = verdicts.into_iter().collect();
    if v.is_empty() {
        Verdict::NotEvaluable
    } else if v.contains(&Verdict::Fail) {
        Verdict::Fail
    } else if v.contains(&Verdict::NotEvaluable) {
        Verdict::NotEvaluable
    } else {
        Verdict::Pass
    }
}

/// Evaluates every criterion of `protocol` against `stats`.
pub fn evaluate(protocol: &Protocol, stats: &StatsReport) -> Vec<CriterionResult> {
    protocol
        .acceptance
        .iter()
        .map(|c| evaluate_one(c, stats))
        .collect()
}

fn evaluate_one(c: &Criterion, stats: &StatsReport) -> CriterionResult {
    let mut observations = Vec::new();
    if let Some(base) = c.metric.gap_of() {
        let attrs: Vec<&str> = if c.scope == "each_subgroup" {
            let mut a: Vec<&str> = stats
                .subgroups
                .iter()
                .map(|s| s.attribute.as_str())
                .collect();
            a.dedup();
            a
        } else {
            vec![c.scope.as_str()]
        };
        for attr in attrs {
            if attr.contains(" x ") {
                continue;
            }
            let gap = stats
                .gaps
                .iter()
                .find(|g| g.attribute == attr && g.metric == base.as_str());
            let n: u64 = stats
                .subgroups
                .iter()
                .filter(|s| s.attribute == attr)
                .map(|s| s.n)
                .sum();
            let unit = match gap {
                Some(g) => format!("{attr}: {} vs {}", g.between[0], g.between[1]),
                None => attr.to_string(),
            };
            observations.push(observe(
                unit,
                n,
                gap.map(|g| (g.difference, g.lower, g.upper)),
                c,
                false,
            ));
        }
    } else if c.scope == "overall" {
        let e = metric_estimate(&stats.overall, c.metric).map(|e| (e.estimate, e.lower, e.upper));
        observations.push(observe("overall".into(), stats.n, e, c, false));
    } else {
        for s in &stats.subgroups {
            let in_scope = if c.scope == "each_subgroup" {
                !s.attribute.contains(" x ")
            } else {
                s.attribute == c.scope
            };
            if in_scope {
                let e =
                    metric_estimate(&s.metrics, c.metric).map(|e| (e.estimate, e.lower, e.upper));
                observations.push(observe(
                    format!("{}={}", s.attribute, s.value),
                    s.n,
                    e,
                    c,
                    s.small,
                ));
            }
        }
    }
    let verdict = combine(observations.iter().map(|o| o.verdict));
    let (comparator, goal) = match (c.at_least, c.at_most) {
        (Some(g), _) => ("at_least", g),
        (None, Some(g)) => ("at_most", g),
        (None, None) => ("at_least", 0.0),
    };
    CriterionResult {
        id: c.id.clone(),
        requirement: c.requirement.clone(),
        risk_control: c.risk_control.clone(),
        metric: c.metric.as_str().into(),
        scope: c.scope.clone(),
        bound: c.bound,
        comparator: comparator.into(),
        goal,
        observations,
        verdict,
        rationale: c.rationale.clone(),
    }
}
