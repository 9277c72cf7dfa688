//! Verdict logic against independent references (issue 17): every expected number below comes
//! from a fixture produced by R pROC or statsmodels (`tests/fixtures/stats/README.md`), or is a
//! count a reader can check by hand.

use std::collections::BTreeMap;

use medgate::harness::CaseStatus;
use medgate::protocol::{Protocol, parse_protocol};
use medgate::trace::Verdict;
use medgate::trace::analysis::{CaseRow, analyze};

fn protocol(statistics: &str, subgroups: &str, acceptance: &str) -> Protocol {
    let text = format!(
        "medgate_protocol: 1
protocol: VP-TEST-017
title: verdict logic
version: '1'
intended_use: test
model:
  backend: replay
  predictions: p.csv
task:
  kind: binary
  threshold: 0.5
golden_set:
  path: set
  label_column: label
subgroups:
{subgroups}
statistics:
{statistics}
acceptance:
{acceptance}"
    );
    parse_protocol("test.yaml", &text).unwrap_or_else(|d| panic!("{d:?}\n{text}"))
}

fn row(i: usize, label: bool, score: Option<f64>, status: CaseStatus, site: &str) -> CaseRow {
    CaseRow {
        case_id: format!("c{i:05}"),
        label,
        status,
        score,
        error: None,
        attributes: BTreeMap::from([("site".to_string(), site.to_string())]),
    }
}

/// Positives of each site: `(site, detected, positives)`, plus 200 negatives per site (all
/// correct), scores 0/1.
fn sites(levels: &[(&str, usize, usize)]) -> Vec<CaseRow> {
    let mut rows = Vec::new();
    for &(site, tp, pos) in levels {
        for i in 0..pos {
            let s = if i < tp { 1.0 } else { 0.0 };
            rows.push(row(rows.len(), true, Some(s), CaseStatus::Evaluated, site));
        }
        for _ in 0..200 {
            rows.push(row(
                rows.len(),
                false,
                Some(0.0),
                CaseStatus::Evaluated,
                site,
            ));
        }
    }
    rows
}

fn fixture(name: &str) -> Vec<Vec<String>> {
    let path = format!("{}/tests/fixtures/stats/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

/// Issue 17 item 2: A 450/500, B 430/500, C 31/35. The observed extreme pair is A-B (upper
/// bound near 0.08), but C lies between them with a wide interval: the simultaneous bound over
/// the three pairs (statsmodels newcomb at alpha 0.05/3, `gap_bounds.csv` line 2) is 0.2017,
/// decided by A vs C, so `sensitivity_gap <= 0.10` on the upper bound must fail.
#[test]
fn gap_bound_covers_every_pair() {
    let p = protocol(
        "  min_subgroup_size: 30",
        "  attributes: [site]",
        "  - {id: AC-GAP, requirement: R1, metric: sensitivity_gap, scope: site, bound: upper, at_most: 0.10}",
    );
    let a = analyze(
        &p,
        &sites(&[("A", 450, 500), ("B", 430, 500), ("C", 31, 35)]),
    )
    .unwrap();
    let c = &a.criteria[0];
    assert_eq!(c.verdict, Verdict::Fail);
    let o = &c.observations[0];
    let want = &fixture("gap_bounds.csv")[0];
    assert_eq!(want[0], "450/500 430/500 31/35");
    let upper: f64 = want[3].parse().unwrap();
    assert!((o.upper.unwrap() - upper).abs() < 1e-9, "{o:?}");
    assert_eq!(o.decided_by, Some(["A".to_string(), "C".to_string()]));
    assert!(o.unit.contains("A vs B"), "{}", o.unit);
    assert!(
        c.method.contains("bonferroni-newcombe over 3 pairs"),
        "{}",
        c.method
    );
    // The homogeneity p is in the family the protocol names: adjusted (one member: equal).
    assert_eq!(o.p_adjusted, o.p_value);
    let g = a
        .statistics
        .gaps
        .iter()
        .find(|g| g.metric == medgate::protocol::Metric::Sensitivity)
        .unwrap();
    assert_eq!(g.p_adjusted, o.p_value);
    // The specificity gap is not named by any criterion: informational.
    let spec = a
        .statistics
        .gaps
        .iter()
        .find(|g| g.metric == medgate::protocol::Metric::Specificity)
        .unwrap();
    assert_eq!(spec.p_adjusted, None);
}

/// A level below the minimum size makes a gap criterion NOT EVALUABLE unless the protocol
/// excludes it by name; excluded, the bound is over the remaining pair (statsmodels newcomb,
/// `gap_bounds.csv` line 4: 90/100 vs 80/100 at 95%, one pair).
#[test]
fn small_level_is_not_evaluable_unless_excluded() {
    let levels = [("A", 90, 100), ("B", 80, 100), ("C", 5, 10)];
    let p = protocol(
        "  min_subgroup_size: 30",
        "  attributes: [site]",
        "  - {id: AC-GAP, requirement: R1, metric: sensitivity_gap, scope: site, bound: upper, at_most: 0.25}",
    );
    let a = analyze(&p, &sites(&levels)).unwrap();
    let c = &a.criteria[0];
    assert_eq!(c.verdict, Verdict::NotEvaluable);
    assert!(c.observations[0].note.as_ref().unwrap().contains("C"));
    let p = protocol(
        "  min_subgroup_size: 30",
        "  attributes: [site]",
        "  - {id: AC-GAP, requirement: R1, metric: sensitivity_gap, scope: site, bound: upper, at_most: 0.25, exclude_levels: [C]}",
    );
    let a = analyze(&p, &sites(&levels)).unwrap();
    let c = &a.criteria[0];
    let want = &fixture("gap_bounds.csv")[2];
    assert_eq!(want[0], "90/100 80/100");
    let upper: f64 = want[3].parse().unwrap();
    let o = &c.observations[0];
    assert!((o.upper.unwrap() - upper).abs() < 1e-9, "{o:?}");
    assert_eq!(c.verdict, Verdict::Pass);
}

/// Issue 17 item 6: the minimum size applies to the metric's own denominator, overall too; a
/// zero DeLong variance (perfect separation) is flagged and not evaluable.
#[test]
fn denominators_and_degenerate_auroc() {
    // 20 positives, 200 negatives, perfectly separated.
    let mut rows = Vec::new();
    for i in 0..20 {
        rows.push(row(i, true, Some(0.9), CaseStatus::Evaluated, "A"));
    }
    for i in 20..220 {
        rows.push(row(i, false, Some(0.1), CaseStatus::Evaluated, "A"));
    }
    let p = protocol(
        "  min_subgroup_size: 10",
        "  attributes: [site]",
        "  - {id: AC-AUC, requirement: R1, metric: auroc, bound: lower, at_least: 0.9}
  - {id: AC-SE, requirement: R1, metric: sensitivity, bound: lower, at_least: 0.5}",
    );
    let a = analyze(&p, &rows).unwrap();
    let auc = a.statistics.overall.auroc.as_ref().unwrap();
    assert_eq!((auc.lower, auc.upper), (1.0, 1.0));
    assert!(auc.degenerate.is_some());
    assert_eq!(a.criteria[0].verdict, Verdict::NotEvaluable);
    // Sensitivity 20/20 on 20 positives: Wilson lower 0.8389 passes with minimum 10 ...
    assert_eq!(a.criteria[1].verdict, Verdict::Pass);
    // ... but not with minimum 30: 20 positives, although the set has 220 cases.
    let p = protocol(
        "  min_subgroup_size: 30",
        "  attributes: [site]",
        "  - {id: AC-SE, requirement: R1, metric: sensitivity, bound: lower, at_least: 0.5}",
    );
    let a = analyze(&p, &rows).unwrap();
    assert_eq!(a.criteria[0].verdict, Verdict::NotEvaluable);
    assert_eq!(a.criteria[0].observations[0].denominator, Some(20));
}

/// Issue 17 item 1: with 0/1 scores, equivocal negatives imputed at the maximum real score tie
/// with every true positive at 1.0. 100 positives (90 at 1), 100 negatives (15 at 1), 10 + 10
/// equivocal: pROC gives 0.72314 strictly beyond (0.76033 tied), `equivocal_auc.csv`.
#[test]
fn equivocal_worst_case_is_worst_for_auroc() {
    let mut rows = Vec::new();
    for i in 0..100 {
        rows.push(row(
            i,
            true,
            Some(if i < 90 { 1.0 } else { 0.0 }),
            CaseStatus::Evaluated,
            "A",
        ));
        rows.push(row(
            100 + i,
            false,
            Some(if i < 15 { 1.0 } else { 0.0 }),
            CaseStatus::Evaluated,
            "A",
        ));
    }
    for i in 0..10 {
        rows.push(row(200 + i, true, None, CaseStatus::Equivocal, "A"));
        rows.push(row(210 + i, false, None, CaseStatus::Equivocal, "A"));
    }
    let p = protocol(
        "  min_subgroup_size: 30",
        "  attributes: [site]",
        "  - {id: AC-AUC, requirement: R1, metric: auroc, bound: point, at_least: 0.5}",
    );
    let a = analyze(&p, &rows).unwrap();
    let want: f64 = fixture("equivocal_auc.csv")[0][1].parse().unwrap();
    let got = a.statistics.overall.auroc.as_ref().unwrap().estimate;
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

/// Issue 17 item 10: not-evaluated cases are bounded both ways, and `worst_case` gates on the
/// all-wrong bound. 60 positives, 55 detected, 5 not evaluated: primary 55/55 (Wilson lower
/// 0.935), all wrong 55/60 (Wilson lower 0.8193), all right 60/60.
#[test]
fn not_evaluated_bounds_and_worst_case_gate() {
    let mut rows = Vec::new();
    for i in 0..55 {
        rows.push(row(i, true, Some(0.9), CaseStatus::Evaluated, "A"));
    }
    for i in 55..60 {
        let mut r = row(i, true, None, CaseStatus::NotEvaluated, "A");
        r.error = Some("timeout".into());
        rows.push(r);
    }
    for i in 60..160 {
        rows.push(row(i, false, Some(0.1), CaseStatus::Evaluated, "A"));
    }
    let crit =
        "  - {id: AC-SE, requirement: R1, metric: sensitivity, bound: lower, at_least: 0.85}";
    let p = protocol(
        "  max_not_evaluated_fraction: 0.05",
        "  attributes: [site]",
        crit,
    );
    let a = analyze(&p, &rows).unwrap();
    assert_eq!(a.gated_on, "primary");
    assert_eq!(a.criteria[0].verdict, Verdict::Pass);
    let wrong = &a.not_evaluated_analyses[0];
    assert_eq!(wrong.equivocal_as.as_str(), "not_evaluated_as_wrong");
    assert_eq!(
        (wrong.statistics.overall.tp, wrong.statistics.overall.fn_),
        (55, 5)
    );
    let right = &a.not_evaluated_analyses[1];
    assert_eq!(
        (right.statistics.overall.tp, right.statistics.overall.fn_),
        (60, 0)
    );
    let p = protocol(
        "  max_not_evaluated_fraction: 0.05\n  not_evaluated_gate: worst_case",
        "  attributes: [site]",
        crit,
    );
    let a = analyze(&p, &rows).unwrap();
    assert_eq!(a.gated_on, "not_evaluated_as_wrong");
    // statsmodels proportion_confint(55, 60, method="wilson")[0] = 0.8193105798166558
    let lower = a.criteria[0].observations[0].tested.unwrap();
    assert!((lower - 0.819_310_579_816_655_8).abs() < 1e-9, "{lower}");
    assert_eq!(a.criteria[0].verdict, Verdict::Fail);
}

/// Issue 17 item 9: PPV gated on an enriched set warns; the prevalence-adjusted PPV matches the
/// Mercaldo et al. (2007) transcription in `ppv_adjusted.csv` (line 2: TP 90, FN 10, TN 170,
/// FP 30 at prevalence 0.05).
#[test]
fn ppv_at_intended_use_prevalence() {
    let mut rows = Vec::new();
    for i in 0..100 {
        let s = if i < 90 { 0.9 } else { 0.1 };
        rows.push(row(i, true, Some(s), CaseStatus::Evaluated, "A"));
    }
    for i in 0..200 {
        let s = if i < 170 { 0.1 } else { 0.9 };
        rows.push(row(100 + i, false, Some(s), CaseStatus::Evaluated, "A"));
    }
    let p = protocol(
        "  min_subgroup_size: 30\n  intended_use_prevalence: 0.05",
        "  attributes: [site]",
        "  - {id: AC-PPV, requirement: R1, metric: ppv, bound: lower, at_least: 0.5}
  - {id: AC-PPV-ADJ, requirement: R1, metric: ppv_at_prevalence, bound: lower, at_least: 0.1}",
    );
    let a = analyze(&p, &rows).unwrap();
    assert!(a.criteria[0].warnings[0].contains("intended-use prevalence is 0.050"));
    assert!(a.criteria[1].warnings.is_empty());
    let want: Vec<f64> = fixture("ppv_adjusted.csv")[0][6..12]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let adj = a.statistics.overall.ppv_at_prevalence.as_ref().unwrap();
    assert!((adj.estimate - want[0]).abs() < 1e-9);
    assert!((adj.lower - want[1]).abs() < 1e-9 && (adj.upper - want[2]).abs() < 1e-9);
    assert_eq!(a.criteria[1].verdict, Verdict::Pass);
}
