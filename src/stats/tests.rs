//! Reference-value and property tests of the whole engine. Fixture provenance:
//! `tests/fixtures/stats/README.md`.

use super::*;
use proptest::prelude::*;

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn proportion_intervals_match_statsmodels() {
    let rows = csv_rows(include_str!("../../tests/fixtures/stats/proportion_ci.csv"));
    assert!(rows.len() > 200);
    for r in rows {
        let (k, n): (u64, u64) = (r[1].parse().unwrap(), r[2].parse().unwrap());
        let conf: f64 = r[3].parse().unwrap();
        let (lo, hi): (f64, f64) = (r[4].parse().unwrap(), r[5].parse().unwrap());
        let got = match r[0].as_str() {
            "wilson" => wilson(k, n, conf),
            "clopper-pearson" => clopper_pearson(k, n, conf),
            _ => jeffreys(k, n, conf),
        }
        .unwrap();
        assert!(
            (got.0 - lo).abs() < 1e-9 && (got.1 - hi).abs() < 1e-9,
            "{r:?}: got {got:?}"
        );
    }
}

#[test]
fn f1_and_kappa_match_scikit_learn() {
    for r in csv_rows(include_str!("../../tests/fixtures/stats/agreement.csv")) {
        let v: Vec<u64> = r[..4].iter().map(|x| x.parse().unwrap()).collect();
        let c = Confusion {
            tp: v[0],
            fp: v[1],
            tn: v[2],
            fn_: v[3],
        };
        let f1: f64 = r[4].parse().unwrap();
        assert!((c.f1().unwrap() - f1).abs() < 1e-12, "{r:?}");
        match r[5].as_str() {
            "nan" => assert_eq!(c.kappa(), None),
            k => assert!((c.kappa().unwrap() - k.parse::<f64>().unwrap()).abs() < 1e-12),
        }
    }
}

/// The aSAH data (pROC) with gender as the subgroup attribute.
type Cases = (Vec<bool>, Vec<f64>, Vec<(String, Vec<String>)>);

fn asah() -> Cases {
    let mut labels = Vec::new();
    let mut scores = Vec::new();
    let mut gender = Vec::new();
    for r in csv_rows(include_str!("../../tests/fixtures/stats/asah.csv")) {
        labels.push(r[0] == "\"Poor\"");
        scores.push(r[1].parse().unwrap());
        gender.push(r[4].trim_matches('"').to_string());
    }
    (labels, scores, vec![("gender".to_string(), gender)])
}

#[test]
fn asah_overall_and_subgroup_match_proc() {
    let (labels, scores, attrs) = asah();
    let input = AnalysisInput {
        labels: &labels,
        scores: &scores,
        attributes: &attrs,
    };
    let cfg = AnalysisConfig {
        threshold: 10.0,
        ..AnalysisConfig::default()
    };
    let rep = analyze(&input, &cfg).unwrap();
    assert_eq!((rep.n, rep.positives, rep.negatives), (113, 41, 72));
    let a = rep.overall.auroc.as_ref().unwrap();
    assert_eq!(a.method.as_deref(), Some("delong"));
    assert!((a.estimate - 0.611957994579946).abs() < 1e-9);
    assert!((a.lower - 0.501244999271703).abs() < 1e-6);
    assert!((a.upper - 0.722670989888189).abs() < 1e-6);
    // The female level, computed from the shared sorted order, equals pROC on the subset.
    let female = rep.subgroups.iter().find(|s| s.value == "Female").unwrap();
    let fa = female.metrics.auroc.as_ref().unwrap();
    assert!((fa.estimate - 0.667_142_857_142_857).abs() < 1e-9);
    assert!((fa.lower - 0.526_139_828_092_854).abs() < 1e-6);
    assert!((fa.upper - 0.808_145_886_192_860).abs() < 1e-6);
    // Counts at the threshold agree with a direct count; sensitivity uses Wilson.
    let c = Confusion::at_threshold(&labels, &scores, 10.0);
    assert_eq!(
        (
            rep.overall.tp,
            rep.overall.fp,
            rep.overall.tn,
            rep.overall.fn_
        ),
        (c.tp, c.fp, c.tn, c.fn_)
    );
    let s = rep.overall.sensitivity.as_ref().unwrap();
    assert_eq!(
        (s.lower, s.upper),
        wilson(c.tp, c.tp + c.fn_, 0.95).unwrap()
    );
    assert_eq!(
        rep.subgroups
            .iter()
            .map(|s| s.value.as_str())
            .collect::<Vec<_>>(),
        ["Female", "Male"]
    );
}

#[test]
fn traps_empty_tied_and_no_positive_level() {
    // n = 0: every metric undefined, nothing panics.
    let rep = analyze(
        &AnalysisInput {
            labels: &[],
            scores: &[],
            attributes: &[],
        },
        &AnalysisConfig::default(),
    )
    .unwrap();
    assert_eq!(rep.n, 0);
    assert!(rep.overall.sensitivity.is_none() && rep.overall.auroc.is_none());
    assert!(rep.overall.kappa.is_none() && rep.overall.prevalence.is_none());

    // All scores tied: AUROC exactly 1/2 with a zero-width DeLong interval (as pROC).
    let labels = [true, false, true, false, false];
    let scores = [0.3; 5];
    let rep = analyze(
        &AnalysisInput {
            labels: &labels,
            scores: &scores,
            attributes: &[],
        },
        &AnalysisConfig::default(),
    )
    .unwrap();
    let a = rep.overall.auroc.unwrap();
    assert_eq!((a.estimate, a.lower, a.upper), (0.5, 0.5, 0.5));
    assert_eq!(rep.overall.tp + rep.overall.fp, 0);
    assert!(rep.overall.ppv.is_none());

    // A level with no positives: sensitivity and AUROC null, not in the sensitivity gap.
    let labels = [true, false, true, false, false, false, true, false];
    let scores = [0.9, 0.2, 0.4, 0.6, 0.1, 0.7, 0.8, 0.3];
    let site: Vec<String> = ["a", "a", "a", "a", "b", "b", "c", "c"]
        .map(String::from)
        .to_vec();
    let attrs = vec![("site".to_string(), site)];
    let cfg = AnalysisConfig {
        min_subgroup_size: 2,
        ..AnalysisConfig::default()
    };
    let rep = analyze(
        &AnalysisInput {
            labels: &labels,
            scores: &scores,
            attributes: &attrs,
        },
        &cfg,
    )
    .unwrap();
    let b = &rep.subgroups[1];
    assert_eq!((b.value.as_str(), b.n, b.positives), ("b", 2, 0));
    assert!(b.metrics.sensitivity.is_none() && b.metrics.auroc.is_none());
    assert_eq!(b.metrics.specificity.as_ref().unwrap().estimate, 0.5);
    let sens = rep.gaps.iter().find(|g| g.metric == "sensitivity").unwrap();
    // a: 1/2, c: 1/1 -> gap 0.5 between c and a.
    assert_eq!(sens.between, ["c".to_string(), "a".to_string()]);
    assert_eq!(sens.difference, 0.5);
    // AUROC needs two cases of each class in both levels: no level qualifies besides a.
    assert!(rep.gaps.iter().all(|g| g.metric != "auroc"));
}

#[test]
fn gaps_hand_checked_with_holm() {
    // Level F: 40/50 positives detected; level M: 30/50; level X: 1 case (small).
    let mut labels = Vec::new();
    let mut scores = Vec::new();
    let mut sex = Vec::new();
    for (level, tp, pos, tn, neg) in [
        ("F", 40, 50, 45, 50),
        ("M", 30, 50, 45, 50),
        ("X", 0, 1, 0, 0),
    ] {
        for i in 0..pos {
            labels.push(true);
            scores.push(if i < tp { 0.9 } else { 0.1 });
            sex.push(level.to_string());
        }
        for i in 0..neg {
            labels.push(false);
            scores.push(if i < tn { 0.2 } else { 0.8 });
            sex.push(level.to_string());
        }
    }
    let attrs = vec![("sex".to_string(), sex)];
    let cfg = AnalysisConfig::default();
    let rep = analyze(
        &AnalysisInput {
            labels: &labels,
            scores: &scores,
            attributes: &attrs,
        },
        &cfg,
    )
    .unwrap();
    assert!(rep.subgroups[2].small);
    let sens = &rep.gaps[0];
    assert_eq!(sens.metric, "sensitivity");
    assert_eq!(sens.between, ["F".to_string(), "M".to_string()]);
    assert!((sens.difference - 0.2).abs() < 1e-12);
    // statsmodels: newcomb (40,50,30,50) [0.02013390086920816, 0.3635923520553358],
    // proportions_ztest p = 0.029096331741252188.
    assert!((sens.lower - 0.02013390086920816).abs() < 1e-9);
    assert!((sens.upper - 0.3635923520553358).abs() < 1e-9);
    assert!((sens.p_value - 0.029096331741252188).abs() < 1e-9);
    // Specificity is equal in F and M (45/50): difference 0, p = 1.
    let spec = &rep.gaps[1];
    assert_eq!(spec.difference, 0.0);
    assert_eq!(spec.between, ["F".to_string(), "M".to_string()]);
    assert!((spec.p_value - 1.0).abs() < 1e-12);
    // Holm across the three gaps of the report.
    let p: Vec<f64> = rep.gaps.iter().map(|g| g.p_value).collect();
    let adj = holm(&p);
    assert_eq!(
        rep.gaps.iter().map(|g| g.p_adjusted).collect::<Vec<_>>(),
        adj
    );
    assert_eq!(rep.gaps.len(), 3);
}

#[test]
fn intersections_and_errors() {
    let labels = [true, false, true, false];
    let scores = [0.9, 0.1, 0.4, 0.6];
    let attrs = vec![
        (
            "sex".to_string(),
            ["F", "F", "M", "M"].map(String::from).to_vec(),
        ),
        (
            "age".to_string(),
            ["old", "young", "old", "old"].map(String::from).to_vec(),
        ),
    ];
    let input = AnalysisInput {
        labels: &labels,
        scores: &scores,
        attributes: &attrs,
    };
    let cfg = AnalysisConfig {
        intersections: vec![vec!["sex".into(), "age".into()]],
        ..AnalysisConfig::default()
    };
    let rep = analyze(&input, &cfg).unwrap();
    let x: Vec<(&str, &str, u64)> = rep
        .subgroups
        .iter()
        .map(|s| (s.attribute.as_str(), s.value.as_str(), s.n))
        .collect();
    assert_eq!(
        x,
        [
            ("sex", "F", 2),
            ("sex", "M", 2),
            ("age", "old", 3),
            ("age", "young", 1),
            ("sex x age", "F x old", 1),
            ("sex x age", "F x young", 1),
            ("sex x age", "M x old", 2),
        ]
    );
    let bad = AnalysisConfig {
        intersections: vec![vec!["sex".into(), "site".into()]],
        ..AnalysisConfig::default()
    };
    assert_eq!(
        analyze(&input, &bad),
        Err(StatsError::UnknownAttribute("site".into()))
    );
    let nan = [0.9, f64::NAN, 0.4, 0.6];
    let e = analyze(
        &AnalysisInput {
            labels: &labels,
            scores: &nan,
            attributes: &[],
        },
        &AnalysisConfig::default(),
    );
    assert_eq!(e, Err(StatsError::NanScore { index: 1 }));
    let e = analyze(
        &AnalysisInput {
            labels: &labels[..3],
            scores: &scores,
            attributes: &[],
        },
        &AnalysisConfig::default(),
    );
    assert!(matches!(e, Err(StatsError::LengthMismatch { .. })));
    // Thresholds outside [0, 1] are fine for raw scores.
    let raw = [3.0, -2.0, 1.5, 0.5];
    let rep = analyze(
        &AnalysisInput {
            labels: &labels,
            scores: &raw,
            attributes: &[],
        },
        &AnalysisConfig {
            threshold: 1.0,
            ..AnalysisConfig::default()
        },
    )
    .unwrap();
    assert_eq!((rep.overall.tp, rep.overall.fp), (2, 0));
}

#[test]
fn bootstrap_report_is_seeded() {
    let (labels, scores, attrs) = asah();
    let input = AnalysisInput {
        labels: &labels,
        scores: &scores,
        attributes: &attrs,
    };
    let cfg = AnalysisConfig {
        threshold: 10.0,
        interval: IntervalMethod::Bootstrap,
        bootstrap_resamples: 500,
        seed: 7,
        ..AnalysisConfig::default()
    };
    let a = analyze(&input, &cfg).unwrap();
    let b = analyze(&input, &cfg).unwrap();
    assert_eq!(a, b);
    let c = analyze(
        &input,
        &AnalysisConfig {
            seed: 8,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(a, c);
    let auc = a.overall.auroc.as_ref().unwrap();
    assert_eq!(auc.method.as_deref(), Some("bootstrap"));
    // The bootstrap interval is close to DeLong's [0.501, 0.723] (pROC's own bootstrap gives
    // about the same): a sanity bound, not a reference value.
    assert!(
        (auc.lower - 0.50).abs() < 0.03 && (auc.upper - 0.72).abs() < 0.03,
        "{auc:?}"
    );
    let s = a.overall.sensitivity.as_ref().unwrap();
    assert!(s.lower <= s.estimate && s.estimate <= s.upper);
    assert_eq!(a.gaps.len(), 3);
    assert!(
        a.gaps
            .iter()
            .all(|g| g.lower <= g.upper && (0.0..=1.0).contains(&g.p_value))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every level's numbers equal an analysis of that level's cases alone.
    #[test]
    fn level_equals_subset(cases in proptest::collection::vec((any::<bool>(), 0u8..10, 0u8..3), 1..60)) {
        let labels: Vec<bool> = cases.iter().map(|c| c.0).collect();
        let scores: Vec<f64> = cases.iter().map(|c| f64::from(c.1) / 9.0).collect();
        let level: Vec<String> = cases.iter().map(|c| format!("L{}", c.2)).collect();
        let attrs = vec![("g".to_string(), level.clone())];
        let cfg = AnalysisConfig::default();
        let rep = analyze(&AnalysisInput { labels: &labels, scores: &scores, attributes: &attrs }, &cfg).unwrap();
        for s in &rep.subgroups {
            let idx: Vec<usize> = (0..labels.len()).filter(|&i| level[i] == s.value).collect();
            let sl: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
            let ss: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
            let alone = analyze(&AnalysisInput { labels: &sl, scores: &ss, attributes: &[] }, &cfg).unwrap();
            prop_assert_eq!(&s.metrics.sensitivity, &alone.overall.sensitivity);
            prop_assert_eq!((s.metrics.tp, s.metrics.fp, s.metrics.tn, s.metrics.fn_),
                (alone.overall.tp, alone.overall.fp, alone.overall.tn, alone.overall.fn_));
            match (&s.metrics.auroc, &alone.overall.auroc) {
                (Some(a), Some(b)) => {
                    prop_assert!((a.estimate - b.estimate).abs() < 1e-12);
                    prop_assert!((a.lower - b.lower).abs() < 1e-9 && (a.upper - b.upper).abs() < 1e-9);
                }
                (None, None) => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }

    /// A weighted pass equals an unweighted pass over the cases repeated by their weights
    /// (what the bootstrap relies on).
    #[test]
    fn weights_equal_repetition(cases in proptest::collection::vec((any::<bool>(), 0u8..8, 0u8..2, 0u64..4), 1..40)) {
        let labels: Vec<bool> = cases.iter().map(|c| c.0).collect();
        let scores: Vec<f64> = cases.iter().map(|c| f64::from(c.1)).collect();
        let f = Factor::from_values("g", cases.iter().map(|c| if c.2 == 0 { "a" } else { "b" }));
        let prep = Prepared::new(&labels, &scores, std::slice::from_ref(&f), 3.5).unwrap();
        // Weight of each sorted position, via the original index order of the sort.
        let mut order: Vec<usize> = (0..cases.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        let w: Vec<u64> = order.iter().map(|&i| cases[i].3).collect();
        let mut acc = LevelCounts::new(prep.n_levels);
        count_pass(&prep, |p| w[p], &mut acc, &mut RunScratch::new(prep.n_levels));
        let (mut rl, mut rs, mut rg) = (Vec::new(), Vec::new(), Vec::new());
        for (i, c) in cases.iter().enumerate() {
            for _ in 0..c.3 {
                rl.push(labels[i]);
                rs.push(scores[i]);
                rg.push(f.levels[f.codes[i] as usize].as_str());
            }
        }
        let g2 = Factor::from_values("g", rg);
        let prep2 = Prepared::new(&rl, &rs, std::slice::from_ref(&g2), 3.5).unwrap();
        let mut acc2 = LevelCounts::new(prep2.n_levels);
        count_pass(&prep2, |_| 1, &mut acc2, &mut RunScratch::new(prep2.n_levels));
        // Level ids can differ when a level vanishes from the repetition; compare overall.
        prop_assert_eq!((acc.pos[0], acc.neg[0], acc.fn_[0], acc.tn[0], acc.mw2[0]),
            (acc2.pos[0], acc2.neg[0], acc2.fn_[0], acc2.tn[0], acc2.mw2[0]));
        if g2.levels == f.levels {
            prop_assert_eq!(&acc.mw2, &acc2.mw2);
            prop_assert_eq!(&acc.fn_, &acc2.fn_);
        }
    }
}

#[test]
fn bootstrap_refuses_absurd_level_counts() {
    let n = 10_000;
    let labels: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    let scores: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let ids: Vec<String> = (0..n).map(|i| format!("case{i}")).collect();
    let attrs = vec![("case_id".to_string(), ids)];
    let cfg = AnalysisConfig {
        interval: IntervalMethod::Bootstrap,
        bootstrap_resamples: 2000,
        ..AnalysisConfig::default()
    };
    let e = analyze(
        &AnalysisInput {
            labels: &labels,
            scores: &scores,
            attributes: &attrs,
        },
        &cfg,
    );
    assert_eq!(
        e,
        Err(StatsError::TooManyLevels {
            levels: n + 1,
            resamples: 2000
        })
    );
}

/// A protocol run bootstraps gaps while its proportions keep the closed-form interval: the
/// levels' Wilson intervals are unchanged, and only the gaps change method.
#[test]
fn bootstrap_gaps_leave_level_intervals_closed_form() {
    let n = 400;
    let labels: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let scores: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f64 / 1000.0 * 0.7 + if i % 3 == 0 { 0.3 } else { 0.0 })
        .collect();
    let site: Vec<String> = (0..n).map(|i| format!("s{}", i % 4)).collect();
    let attrs = vec![("site".to_string(), site)];
    let input = AnalysisInput {
        labels: &labels,
        scores: &scores,
        attributes: &attrs,
    };
    let closed = analyze(&input, &AnalysisConfig::default()).unwrap();
    let boot = analyze(
        &input,
        &AnalysisConfig {
            bootstrap_gaps: true,
            bootstrap_resamples: 300,
            ..AnalysisConfig::default()
        },
    )
    .unwrap();
    assert_eq!(closed.subgroups, boot.subgroups);
    assert_eq!(closed.overall, boot.overall);
    assert!(!closed.gaps.is_empty());
    for (c, b) in closed.gaps.iter().zip(&boot.gaps) {
        assert_eq!(
            (&c.attribute, &c.metric, c.difference),
            (&b.attribute, &b.metric, b.difference)
        );
        assert_ne!(c.method, "bootstrap");
        assert_eq!(b.method, "bootstrap");
        assert!(b.lower <= b.difference && b.difference <= b.upper, "{b:?}");
    }
    // The same seed gives the same bootstrap gaps.
    let again = analyze(
        &input,
        &AnalysisConfig {
            bootstrap_gaps: true,
            bootstrap_resamples: 300,
            ..AnalysisConfig::default()
        },
    )
    .unwrap();
    assert_eq!(again.gaps, boot.gaps);
}
