//! Evaluating acceptance criteria against the statistics: the step that turns numbers into
//! verdicts, and so the one an auditor reads most closely.
//!
//! # Rules
//!
//! - The tested value is the criterion's `bound` of the estimate: the point estimate, or the
//!   lower or upper confidence bound. Each observation records the interval method that
//!   produced it (`method`), and the criterion the summary (`CriterionResult::method`).
//! - `at_least: g` passes when tested >= g; `at_most: g` passes when tested <= g. No
//!   rounding is applied before comparison.
//! - NOT EVALUABLE (which fails the gate; domain notes, FDA 2007) when:
//!   - the metric is undefined (zero denominator, a class absent);
//!   - the metric's **own denominator** is below the protocol's `min_subgroup_size`
//!     (positives for sensitivity, negatives for specificity, predicted positives for PPV,
//!     predicted negatives for NPV, the smaller class for AUROC), overall as well as per level:
//!     its interval is too wide to support a claim either way;
//!   - the interval is degenerate (a zero DeLong variance from perfect separation or tied
//!     scores, a bootstrap distribution with one value): a zero-width interval would pass any
//!     goal;
//!   - a bootstrap interval rests on fewer than [`crate::stats::MIN_USABLE_RESAMPLES`] usable
//!     resamples.
//! - **Gap criteria** test the simultaneous Bonferroni bound on the range over *every pair* of
//!   eligible levels ([`crate::stats::gap`]); the observation names the pair that decided
//!   (`decided_by`). A level below the minimum size (or with the metric undefined) makes the
//!   criterion NOT EVALUABLE unless the criterion lists it in `exclude_levels`; listed levels
//!   are left out and the bound is recomputed over the rest.
//! - **Multiplicity**: the homogeneity p-values of the gaps the protocol's gap criteria name
//!   form the family adjusted with the protocol's `multiplicity` (Holm by default;
//!   [`adjust_gap_family`]). No p-value decides a verdict (bounds do); gaps outside the family
//!   keep `p_adjusted: null` and are informational.
//! - A criterion over several units (each level of an attribute) fails if any unit fails;
//!   otherwise it is not evaluable if any unit is; otherwise it passes.
//! - A criterion on the set's own PPV or NPV warns when the protocol states an
//!   `intended_use_prevalence` that differs from the set's prevalence by more than
//!   [`PREVALENCE_TOLERANCE`]: gate `ppv_at_prevalence` / `npv_at_prevalence` instead.

use crate::protocol::{Bound, Criterion, Goal, Metric, Protocol, Scope};
use crate::stats::{
    self, Estimate, Gap, MIN_USABLE_RESAMPLES, Method, Metrics, StatsReport, SubgroupResult,
};

use super::evidence::{CriterionResult, Observation, Verdict};

/// Absolute difference between the set's prevalence and the intended-use prevalence above
/// which a PPV/NPV criterion warns.
pub const PREVALENCE_TOLERANCE: f64 = 0.01;

fn metric_estimate(m: &Metrics, metric: Metric) -> Option<Estimate> {
    match metric {
        Metric::Sensitivity => m.sensitivity.clone(),
        Metric::Specificity => m.specificity.clone(),
        Metric::Ppv => m.ppv.clone(),
        Metric::Npv => m.npv.clone(),
        Metric::Accuracy => m.accuracy.clone(),
        Metric::Auroc => m.auroc.clone(),
        Metric::PpvAtPrevalence => m.ppv_at_prevalence.clone(),
        Metric::NpvAtPrevalence => m.npv_at_prevalence.clone(),
        Metric::F1 => m.f1.map(|v| Estimate {
            estimate: v,
            lower: v,
            upper: v,
            method: Some(Method::PointEstimateOnly),
            denominator: m.tp + m.fn_,
            ..Estimate::default()
        }),
        _ => None,
    }
}

fn calibration_estimate(stats: &StatsReport, metric: Metric) -> Option<Estimate> {
    let c = stats.calibration.as_ref()?;
    match metric {
        Metric::Ece => c.ece.clone(),
        Metric::CalibrationIntercept => c.intercept.clone(),
        Metric::CalibrationSlope => c.slope.clone(),
        Metric::SpiegelhalterZ => c.spiegelhalter_z.clone(),
        _ => None,
    }
}

/// What a metric's denominator counts, for notes.
pub(crate) fn denominator_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Sensitivity | Metric::SensitivityGap | Metric::F1 => "positives",
        Metric::Specificity | Metric::SpecificityGap => "negatives",
        Metric::Ppv => "predicted positives",
        Metric::Npv => "predicted negatives",
        Metric::Auroc | Metric::AurocGap => "cases of the smaller class",
        Metric::PpvAtPrevalence | Metric::NpvAtPrevalence => "cases of the smaller class",
        _ => "cases",
    }
}

fn judge(tested: f64, c: &Criterion) -> Verdict {
    // A criterion without exactly one goal never passes (protocol::check refuses it).
    if c.goal().is_some_and(|g| g.is_met(tested)) {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

fn blank(unit: String, n: u64) -> Observation {
    Observation {
        unit,
        n,
        estimate: None,
        lower: None,
        upper: None,
        tested: None,
        verdict: Verdict::NotEvaluable,
        note: None,
        method: None,
        denominator: None,
        decided_by: None,
        resamples: None,
        p_value: None,
        p_adjusted: None,
    }
}

fn pick(c: &Criterion, e: f64, l: f64, u: f64) -> f64 {
    match c.bound {
        Bound::Point => e,
        Bound::Lower => l,
        Bound::Upper => u,
    }
}

/// One estimate against the goal, with the evaluability rules of the module docs.
fn observe(
    unit: String,
    n: u64,
    est: Option<&Estimate>,
    c: &Criterion,
    min_den: u64,
) -> Observation {
    let mut o = blank(unit, n);
    let Some(e) = est else {
        o.note = Some("metric undefined (zero denominator or a class absent)".to_string());
        return o;
    };
    o.estimate = Some(e.estimate);
    o.lower = Some(e.lower);
    o.upper = Some(e.upper);
    o.method = e.method;
    o.denominator = Some(e.denominator);
    o.resamples = e.resamples.zip(e.usable_resamples).map(|(a, b)| [a, b]);
    let tested = pick(c, e.estimate, e.lower, e.upper);
    o.tested = Some(tested);
    o.verdict = Verdict::NotEvaluable;
    if !c.metric.is_calibration() && e.denominator < min_den {
        o.note = Some(format!(
            "{} {} ({}) below the protocol's minimum size {min_den}",
            e.denominator,
            denominator_name(c.metric),
            "the metric's own denominator"
        ));
    } else if let Some(d) = &e.degenerate {
        o.note = Some(format!("degenerate interval: {d}"));
    } else if let Some(u) = e.usable_resamples.filter(|&u| u < MIN_USABLE_RESAMPLES) {
        o.note = Some(format!(
            "bootstrap interval on {u} usable resamples, below the floor of {MIN_USABLE_RESAMPLES}"
        ));
    } else if !tested.is_finite() {
        o.note = Some("the tested bound is undefined".into());
    } else {
        o.verdict = judge(tested, c);
    }
    o
}

/// Combines unit verdicts: any FAIL fails; else any NOT EVALUABLE; else PASS (and an empty
/// set of units is NOT EVALUABLE: nothing was tested).
pub(crate) fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
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

/// Evaluates every criterion of `protocol` against `stats` (p-values of gaps not yet
/// adjusted: see [`adjust_gap_family`]).
pub fn evaluate(protocol: &Protocol, stats: &StatsReport) -> Vec<CriterionResult> {
    protocol
        .acceptance
        .iter()
        .map(|c| evaluate_one(c, protocol, stats))
        .collect()
}

/// Adjusts the homogeneity p-values of the gap units the criteria test (the protocol-named
/// family) with the protocol's multiplicity method, writing them into the observations and,
/// for gaps tested as reported (no `exclude_levels`), into `stats.gaps`.
pub fn adjust_gap_family(
    protocol: &Protocol,
    stats: &mut StatsReport,
    criteria: &mut [CriterionResult],
) {
    // Family members: (criterion index, observation index, p), one per distinct gap key.
    let mut keys: Vec<(String, Metric)> = Vec::new();
    let mut p: Vec<f64> = Vec::new();
    let mut at: Vec<Vec<(usize, usize)>> = Vec::new();
    for (ci, (cr, c)) in criteria.iter().zip(&protocol.acceptance).enumerate() {
        let Some(base) = c.metric.gap_of() else {
            continue;
        };
        for (oi, o) in cr.observations.iter().enumerate() {
            let Some(pv) = o.p_value else { continue };
            let attr = o.unit.split(':').next().unwrap_or("").to_string();
            let key = (format!("{attr}|{}", c.exclude_levels.join(",")), base);
            match keys.iter().position(|k| k == &key) {
                Some(i) => at[i].push((ci, oi)),
                None => {
                    keys.push(key);
                    p.push(pv);
                    at.push(vec![(ci, oi)]);
                }
            }
        }
    }
    let adj = stats::multiplicity::adjust(&p, protocol.statistics.multiplicity);
    for ((key, places), a) in keys.iter().zip(&at).zip(&adj) {
        for &(ci, oi) in places {
            criteria[ci].observations[oi].p_adjusted = Some(*a);
        }
        let (attr, excl) = key.0.split_once('|').unwrap_or((&key.0, ""));
        if excl.is_empty() {
            for g in stats
                .gaps
                .iter_mut()
                .filter(|g| g.attribute == attr && g.metric == key.1)
            {
                g.p_adjusted = Some(*a);
            }
        }
    }
}

fn gap_method(g: &Gap, confidence: f64) -> String {
    format!(
        "{} over {} pair{} of {} levels, each at {:.4}% (simultaneous {}%)",
        g.method,
        g.pairs,
        if g.pairs == 1 { "" } else { "s" },
        g.levels.len(),
        g.pair_confidence * 100.0,
        confidence * 100.0
    )
}

fn observe_gap(
    attr: &str,
    levels: &[SubgroupResult],
    base: Metric,
    c: &Criterion,
    stats: &StatsReport,
) -> (Observation, Option<String>) {
    let n: u64 = levels.iter().map(|s| s.n).sum();
    let min = stats.min_denominator;
    let excluded = stats::gap_excluded(levels, base, min, &c.exclude_levels);
    let gap = if c.exclude_levels.is_empty() {
        stats
            .gaps
            .iter()
            .find(|g| g.attribute == attr && g.metric == base)
            .cloned()
    } else {
        stats::gap_over(attr, levels, base, stats.confidence, min, &c.exclude_levels)
    };
    let mut o = blank(attr.to_string(), n);
    let method = gap.as_ref().map(|g| gap_method(g, stats.confidence));
    if let Some(g) = &gap {
        o.unit = format!("{attr}: {} vs {}", g.between[0], g.between[1]);
        o.estimate = Some(g.difference);
        o.lower = Some(g.lower);
        o.upper = Some(g.upper);
        o.method = Some(g.method);
        o.p_value = g.p_value;
        o.decided_by = Some(match c.bound {
            Bound::Upper => g.upper_pair.clone(),
            Bound::Lower => g.lower_pair.clone(),
            Bound::Point => g.between.clone(),
        });
        o.tested = Some(pick(c, g.difference, g.lower, g.upper));
    }
    if !excluded.is_empty() {
        o.note = Some(format!(
            "level{} {} of `{attr}` {} the metric undefined or fewer than {min} {}: a gap over the other levels says nothing about {}; list {} in the criterion's `exclude_levels` to exclude {} explicitly",
            if excluded.len() == 1 { "" } else { "s" },
            excluded.join(", "),
            if excluded.len() == 1 { "has" } else { "have" },
            denominator_name(base),
            if excluded.len() == 1 { "it" } else { "them" },
            if excluded.len() == 1 { "it" } else { "them" },
            if excluded.len() == 1 { "it" } else { "them" },
        ));
    } else if let Some(g) = &gap {
        if let Some(d) = &g.degenerate {
            o.note = Some(format!("degenerate interval: {d}"));
        } else {
            o.verdict = judge(o.tested.unwrap_or(f64::NAN), c);
        }
    } else {
        o.note = Some(format!(
            "fewer than two eligible levels of `{attr}` (after the criterion's exclusions)"
        ));
    }
    (o, method)
}

fn evaluate_one(c: &Criterion, protocol: &Protocol, stats: &StatsReport) -> CriterionResult {
    let mut observations = Vec::new();
    let mut methods: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let min = stats.min_denominator;
    let in_scope = |s: &SubgroupResult| match &c.scope {
        Scope::EachSubgroup => !Scope::is_intersection_name(&s.attribute),
        Scope::Attribute(_) | Scope::Intersection(_) => Scope::of_subgroup(&s.attribute) == c.scope,
        Scope::Overall => false,
    };
    let scope_name = c.scope.to_string();
    if let Some(base) = c.metric.gap_of() {
        let mut attrs: Vec<&str> = stats
            .subgroups
            .iter()
            .filter(|s| in_scope(s))
            .map(|s| s.attribute.as_str())
            .collect();
        attrs.dedup();
        if attrs.is_empty() && c.scope != Scope::EachSubgroup {
            attrs.push(scope_name.as_str());
        }
        for attr in attrs {
            let levels: Vec<SubgroupResult> = stats
                .subgroups
                .iter()
                .filter(|s| s.attribute == attr)
                .cloned()
                .collect();
            let (o, m) = observe_gap(attr, &levels, base, c, stats);
            observations.push(o);
            methods.extend(m);
        }
    } else if c.metric.is_calibration() {
        if c.scope == Scope::Overall {
            let e = calibration_estimate(stats, c.metric);
            let mut o = observe("overall".into(), stats.n, e.as_ref(), c, min);
            if e.is_none() {
                o.note = Some(
                    "calibration undefined: scores are not all probabilities in [0, 1], or the fit did not converge"
                        .into(),
                );
            }
            methods.extend(o.method.map(|m| m.to_string()));
            observations.push(o);
        } else {
            let mut o = blank(scope_name.clone(), stats.n);
            o.note = Some("calibration metrics are computed for the whole set only".into());
            observations.push(o);
        }
    } else if c.scope == Scope::Overall {
        let e = metric_estimate(&stats.overall, c.metric);
        let o = observe("overall".into(), stats.n, e.as_ref(), c, min);
        methods.extend(o.method.map(|m| m.to_string()));
        observations.push(o);
    } else {
        for s in stats.subgroups.iter().filter(|s| in_scope(s)) {
            let e = metric_estimate(&s.metrics, c.metric);
            let o = observe(
                format!("{}={}", s.attribute, s.value),
                s.n,
                e.as_ref(),
                c,
                min,
            );
            methods.extend(o.method.map(|m| m.to_string()));
            observations.push(o);
        }
    }
    if matches!(c.metric, Metric::Ppv | Metric::Npv)
        && let (Some(pi), Some(prev)) = (
            protocol.statistics.intended_use_prevalence,
            stats.overall.prevalence,
        )
        && (prev - pi).abs() > PREVALENCE_TOLERANCE
    {
        warnings.push(format!(
                    "criterion `{}` gates {} on a set with prevalence {prev:.3}, but the intended-use prevalence is {pi:.3}: the set's {} does not hold in the intended population; gate `{}_at_prevalence` instead",
                    c.id,
                    c.metric.as_str().to_uppercase(),
                    c.metric.as_str().to_uppercase(),
                    c.metric.as_str()
                ));
    }
    methods.sort();
    methods.dedup();
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
        method: methods.join("; "),
        warnings,
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
            estimate: Some(tested),
            tested: Some(tested),
            verdict,
            ..blank(unit.into(), 10)
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
