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

use crate::protocol::{Bound, Criterion, Goal, Metric, Protocol, Scope};
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
    }
}

fn judge(tested: f64, goal: Option<Goal>) -> Verdict {
    // A criterion without exactly one goal never passes (protocol::check refuses it).
    if goal.is_some_and(|g| g.is_met(tested)) {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
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
        (Some(t), false) => (judge(t, c.goal()), None),
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
        let attrs: Vec<&str> = match &c.scope {
            Scope::EachSubgroup => {
                let mut a: Vec<&str> = stats
                    .subgroups
                    .iter()
                    .map(|s| s.attribute.as_str())
                    .filter(|a| !Scope::is_intersection_name(a))
                    .collect();
                a.dedup();
                a
            }
            Scope::Attribute(a) => vec![a.as_str()],
            // Gaps are computed per attribute only; an intersection or overall scope has no
            // gap units (protocol::check refuses `overall`; it is kept as one undefined unit).
            Scope::Overall => vec!["overall"],
            Scope::Intersection(_) => Vec::new(),
        };
        for attr in attrs {
            let gap = stats
                .gaps
                .iter()
                .find(|g| g.attribute == attr && Metric::parse(&g.metric) == Some(base));
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
    } else if c.scope == Scope::Overall {
        let e = metric_estimate(&stats.overall, c.metric).map(|e| (e.estimate, e.lower, e.upper));
        observations.push(observe("overall".into(), stats.n, e, c, false));
    } else {
        for s in &stats.subgroups {
            let in_scope = match &c.scope {
                Scope::EachSubgroup => !Scope::is_intersection_name(&s.attribute),
                Scope::Attribute(_) | Scope::Intersection(_) => {
                    Scope::of_subgroup(&s.attribute) == c.scope
                }
                Scope::Overall => false,
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
    let goal = c.goal().unwrap_or(Goal::AtLeast(0.0));
    CriterionResult {
        id: c.id.clone(),
        requirement: c.requirement.clone(),
        risk_control: c.risk_control.clone(),
        metric: c.metric,
        scope: c.scope.clone(),
        bound: c.bound,
        comparator: goal.comparator(),
        goal: goal.value(),
        observations,
        verdict,
        rationale: c.rationale.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::harness::CaseStatus;
    use crate::protocol::Comparator;
    use crate::trace::analysis::{CaseRow, analyze};
    use crate::trace::{CriterionResult, Observation};

    /// Reference: R 4.x, `prop.test(8, 10, correct = FALSE)$conf.int` (the Wilson score
    /// interval): 0.490162471536642, 0.943317848545625.
    const WILSON_8_10_LOWER: f64 = 0.490162471536642;

    fn row(i: usize, site: &str, label: bool, score: f64) -> CaseRow {
        CaseRow {
            case_id: format!("c{i:02}"),
            label,
            status: CaseStatus::Evaluated,
            score: Some(score),
            error: None,
            attributes: BTreeMap::from([("site".to_string(), site.to_string())]),
        }
    }

    /// Site A: 8 positives (7 found), 10 negatives (all cleared); site B: 6 negatives (its
    /// sensitivity is undefined); site C: 2 positives (1 found) and 1 negative (3 cases,
    /// below the minimum of 5). Overall sensitivity 8/10, specificity 17/17.
    fn rows() -> Vec<CaseRow> {
        let mut v = Vec::new();
        let mut push = |site: &str, label: bool, score: f64| {
            let i = v.len();
            v.push(row(i, site, label, score));
        };
        for k in 0..8 {
            push("A", true, if k < 7 { 0.9 } else { 0.1 });
        }
        for _ in 0..10 {
            push("A", false, 0.2);
        }
        for _ in 0..6 {
            push("B", false, 0.3);
        }
        push("C", true, 0.8);
        push("C", true, 0.4);
        push("C", false, 0.1);
        v
    }

    fn protocol(criteria: &str) -> Protocol {
        let yaml = format!(
            r#"medgate_protocol: 1
protocol: VP-T
title: t
version: "1"
intended_use: t
model:
  backend: replay
  predictions: p.csv
task:
  kind: binary
  threshold: 0.5
golden_set:
  path: set
  label_column: y
subgroups:
  attributes: [site]
statistics:
  bootstrap_resamples: 200
  min_subgroup_size: 5
acceptance:
{criteria}"#
        );
        crate::protocol::parse_protocol("t.yaml", &yaml).unwrap()
    }

    fn verdicts(criteria: &str) -> Vec<CriterionResult> {
        analyze(&protocol(criteria), &rows()).unwrap().criteria
    }

    fn crit(id: &str, metric: &str, scope: &str, bound: &str, goal: &str) -> String {
        format!(
            "  - {{id: {id}, requirement: R, metric: {metric}, scope: {scope}, bound: {bound}, {goal}}}\n"
        )
    }

    #[test]
    fn bounds_are_compared_without_rounding_against_the_wilson_reference() {
        let c = verdicts(
            &[
                crit("AC-1", "sensitivity", "overall", "lower", "at_least: 0.49"),
                crit(
                    "AC-2",
                    "sensitivity",
                    "overall",
                    "lower",
                    "at_least: 0.4902",
                ),
                crit("AC-3", "sensitivity", "overall", "point", "at_least: 0.8"),
                crit("AC-4", "sensitivity", "overall", "upper", "at_most: 0.9"),
            ]
            .concat(),
        );
        let lower = c[0].observations[0].tested.unwrap();
        assert!((lower - WILSON_8_10_LOWER).abs() < 1e-9, "{lower}");
        assert_eq!(c[0].verdict, Verdict::Pass);
        assert_eq!(c[1].verdict, Verdict::Fail, "0.49016 < 0.4902");
        // 0.8 >= 0.8 exactly: the point estimate 8/10 meets the goal.
        assert_eq!(c[2].observations[0].tested, Some(0.8));
        assert_eq!(c[2].verdict, Verdict::Pass);
        // Upper bound 0.943 > 0.9.
        assert_eq!(c[3].verdict, Verdict::Fail);
        assert_eq!(c[3].comparator, Comparator::AtMost);
        assert_eq!(c[3].goal, 0.9);
    }

    #[test]
    fn undefined_metrics_and_small_subgroups_are_not_evaluable() {
        let c = verdicts(
            &[
                crit("AC-1", "sensitivity", "site", "point", "at_least: 0.5"),
                crit("AC-2", "specificity", "site", "point", "at_least: 0.99"),
                crit("AC-3", "sensitivity", "site", "point", "at_least: 0.9"),
            ]
            .concat(),
        );
        let units: Vec<(&str, Verdict)> = c[0]
            .observations
            .iter()
            .map(|o| (o.unit.as_str(), o.verdict))
            .collect();
        assert_eq!(
            units,
            [
                ("site=A", Verdict::Pass),
                ("site=B", Verdict::NotEvaluable),
                ("site=C", Verdict::NotEvaluable)
            ]
        );
        assert!(
            c[0].observations[1]
                .note
                .as_deref()
                .unwrap()
                .contains("undefined")
        );
        assert!(
            c[0].observations[2]
                .note
                .as_deref()
                .unwrap()
                .contains("minimum size")
        );
        assert_eq!(c[0].verdict, Verdict::NotEvaluable);
        // Specificity is defined at B (6/6), C is small.
        assert_eq!(c[1].observations[1].verdict, Verdict::Pass);
        assert_eq!(c[1].verdict, Verdict::NotEvaluable);
        // A failing unit (A: 7/8 = 0.875 < 0.9) beats the not-evaluable ones.
        assert_eq!(c[2].verdict, Verdict::Fail);
        assert_eq!(c[2].deciding().unwrap().unit, "site=A");
    }

    #[test]
    fn each_subgroup_skips_intersections_and_gap_scopes_name_their_attribute() {
        let c = verdicts(
            &[
                crit(
                    "AC-1",
                    "specificity",
                    "each_subgroup",
                    "point",
                    "at_least: 0.5",
                ),
                crit("AC-2", "sensitivity_gap", "site", "point", "at_most: 1.0"),
            ]
            .concat(),
        );
        assert_eq!(c[0].scope, Scope::EachSubgroup);
        assert_eq!(c[0].observations.len(), 3);
        assert_eq!(c[1].scope, Scope::Attribute("site".into()));
        assert_eq!(c[1].metric, Metric::SensitivityGap);
        assert_eq!(c[1].observations.len(), 1);
        assert!(c[1].observations[0].unit.starts_with("site"));
    }

    #[test]
    fn combine_fails_first_then_not_evaluable_and_empty_is_not_evaluable() {
        use Verdict::*;
        assert_eq!(combine([Pass, NotEvaluable, Fail]), Fail);
        assert_eq!(combine([Pass, NotEvaluable]), NotEvaluable);
        assert_eq!(combine([Pass, Pass]), Pass);
        assert_eq!(combine([]), NotEvaluable);
    }

    fn obs(unit: &str, tested: f64, verdict: Verdict) -> Observation {
        Observation {
            unit: unit.into(),
            n: 10,
            estimate: Some(tested),
            lower: None,
            upper: None,
            tested: Some(tested),
            verdict,
            note: None,
        }
    }

    #[test]
    fn the_deciding_observation_is_the_one_closest_to_the_goal_when_all_pass() {
        let mut c = verdicts(&crit(
            "AC-1",
            "sensitivity",
            "overall",
            "point",
            "at_least: 0.5",
        ))
        .remove(0);
        c.observations = vec![
            obs("a=1", 0.745, Verdict::Pass),
            obs("a=2", 0.680, Verdict::Pass),
            obs("a=3", 0.900, Verdict::Pass),
        ];
        // The console used to show the first unit (0.745) and the report the lowest (0.680).
        assert_eq!(c.deciding().unwrap().unit, "a=2");
        c.comparator = Comparator::AtMost;
        assert_eq!(c.deciding().unwrap().unit, "a=3");
        c.observations[2].verdict = Verdict::NotEvaluable;
        c.observations[0].verdict = Verdict::Fail;
        assert_eq!(c.deciding().unwrap().unit, "a=1");
        c.observations.clear();
        assert!(c.deciding().is_none());
    }
}
