//! Reference-value and property tests of the whole engine. Fixture provenance:
//! `tests/fixtures/stats/README.md`.

use super::*;
use proptest::prelude::*;
use subgroup::{RunScratch, count_pass};

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
    assert_eq!(a.method, Some(Method::Delong));
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

    // All scores tied: AUROC exactly 1/2 with a zero-width DeLong interval (as pROC), which
    // is flagged degenerate so that no criterion can pass on it.
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
    assert!(a.degenerate.is_some(), "{a:?}");
    assert_eq!(rep.overall.tp + rep.overall.fp, 0);
    assert!(rep.overall.ppv.is_none());

    // A level with no positives: sensitivity and AUROC null, listed as excluded from the
    // sensitivity gap.
    let labels = [true, false, true, false, false, false, true, false];
    let scores = [0.9, 0.2, 0.4, 0.6, 0.1, 0.7, 0.8, 0.3];
    let site: Vec<String> = ["a", "a", "a", "a", "b", "b", "c", "c"]
        .map(String::from)
        .to_vec();
    let attrs = vec![("site".to_string(), site)];
    let cfg = AnalysisConfig {
        min_subgroup_size: 1,
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
    let sens = rep
        .gaps
        .iter()
        .find(|g| g.metric == Metric::Sensitivity)
        .unwrap();
    // a: 1/2, c: 1/1 -> gap 0.5 between c and a.
    assert_eq!(sens.between, ["c".to_string(), "a".to_string()]);
    assert_eq!(sens.difference, 0.5);
    assert_eq!(sens.excluded, ["b".to_string()]);
    // AUROC needs a DeLong variance (two cases of each class): only a qualifies.
    assert!(rep.gaps.iter().all(|g| g.metric != Metric::Auroc));
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
    assert_eq!(sens.metric, Metric::Sensitivity);
    assert_eq!(sens.between, ["F".to_string(), "M".to_string()]);
    assert!((sens.difference - 0.2).abs() < 1e-12);
    // X (one positive) is below the minimum: excluded and listed, not silently dropped.
    assert_eq!(sens.excluded, ["X".to_string()]);
    // Two eligible levels, one pair: the Bonferroni bound is Newcombe at 95%. statsmodels:
    // newcomb (40,50,30,50) [0.02013390086920816, 0.3635923520553358]; for a 2 x 2 table the
    // chi-square p equals proportions_ztest's 0.029096331741252188.
    assert_eq!((sens.pairs, sens.pair_confidence), (1, 0.95));
    assert!((sens.lower - 0.02013390086920816).abs() < 1e-9);
    assert!((sens.upper - 0.3635923520553358).abs() < 1e-9);
    assert!((sens.p_value.unwrap() - 0.029096331741252188).abs() < 1e-9);
    // Specificity is equal in F and M (45/50): difference 0, p = 1.
    let spec = &rep.gaps[1];
    assert_eq!(spec.difference, 0.0);
    assert_eq!(spec.between, ["F".to_string(), "M".to_string()]);
    assert!((spec.p_value.unwrap() - 1.0).abs() < 1e-12);
    // Without a protocol no family is named: every p-value is informational.
    assert!(rep.gaps.iter().all(|g| g.p_adjusted.is_none()));
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
    assert_eq!(auc.method, Some(Method::Bootstrap));
    // The bootstrap interval is close to DeLong's [0.501, 0.723] (pROC's own bootstrap gives
    // about the same): a sanity bound, not a reference value.
    assert!(
        (auc.lower - 0.50).abs() < 0.03 && (auc.upper - 0.72).abs() < 0.03,
        "{auc:?}"
    );
    assert_eq!(
        (auc.resamples, auc.usable_resamples),
        (Some(500), Some(500))
    );
    // Proportions are Clopper-Pearson in bootstrap mode (statsmodels beta interval).
    let s = a.overall.sensitivity.as_ref().unwrap();
    assert_eq!(s.method, Some(Method::ClopperPearson));
    let c = Confusion::at_threshold(&labels, &scores, 10.0);
    assert_eq!(
        (s.lower, s.upper),
        clopper_pearson(c.tp, c.tp + c.fn_, 0.95).unwrap()
    );
    // Gaps keep the closed-form simultaneous bound whatever the interval mode.
    let closed = analyze(
        &input,
        &AnalysisConfig {
            threshold: 10.0,
            ..AnalysisConfig::default()
        },
    )
    .unwrap();
    assert_eq!(a.gaps, closed.gaps);
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

/// The stratified percentile bootstrap of the AUROC against R pROC 1.18.0's
/// `ci.auc(method = "bootstrap", boot.stratified = TRUE, boot.n = 10000)` on aSAH
/// (`boot_auc.csv`, `gen_proc_boot.R`). Both are Monte-Carlo estimates: the standard error of a
/// 2.5% / 97.5% percentile is about `2.7 sd / sqrt(B)` (sd of the AUROC about 0.04-0.06), i.e.
/// 0.0015 for pROC's 10,000 resamples and 0.0024 for medgate's 4,000, so 0.012 is about four
/// combined standard errors (the fixture's median column is informational).
#[test]
fn bootstrap_interval_agrees_with_proc_ci_auc_bootstrap() {
    let rows = csv_rows(include_str!("../../tests/fixtures/stats/asah.csv"));
    let labels: Vec<bool> = rows.iter().map(|r| r[0] == "\"Poor\"").collect();
    let cfg = AnalysisConfig {
        threshold: 0.5,
        interval: IntervalMethod::Bootstrap,
        bootstrap_resamples: 4000,
        seed: 20_261_203,
        ..AnalysisConfig::default()
    };
    let want = csv_rows(include_str!("../../tests/fixtures/stats/boot_auc.csv"));
    assert_eq!(want.len(), 3);
    for w in want {
        let col = match w[0].as_str() {
            "ndka" => 1,
            "s100b" => 2,
            "wfns" => 3,
            other => panic!("{other}"),
        };
        let scores: Vec<f64> = rows
            .iter()
            .map(|r| r[col].trim_matches('"').parse().unwrap())
            .collect();
        let input = AnalysisInput {
            labels: &labels,
            scores: &scores,
            attributes: &[],
        };
        let a = analyze(&input, &cfg).unwrap().overall.auroc.unwrap();
        assert_eq!(a.method, Some(Method::Bootstrap));
        assert_eq!(a.usable_resamples, Some(4000));
        let (lo, hi): (f64, f64) = (w[2].parse().unwrap(), w[3].parse().unwrap());
        assert!(
            (a.lower - lo).abs() < 0.012 && (a.upper - hi).abs() < 0.012,
            "{w:?}: {a:?}"
        );
    }
}

#[test]
fn bootstrap_refuses_absurd_level_counts() {
    let n = 60_000;
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

/// Issue 17 item 2: the simultaneous bound over all pairs equals the maximum over pairs of
/// statsmodels' Newcombe interval at alpha / pairs (`gap_bounds.csv`), and the deciding pair
/// is the one statsmodels' intervals name.
#[test]
fn gap_bounds_match_statsmodels() {
    let rows = csv_rows(include_str!("../../tests/fixtures/stats/gap_bounds.csv"));
    assert!(rows.len() >= 10);
    for r in rows {
        let levels: Vec<gap::LevelValue> = r[0]
            .split(' ')
            .map(|kn| {
                let (k, n) = kn.split_once('/').unwrap();
                gap::LevelValue::Proportion {
                    k: k.parse().unwrap(),
                    n: n.parse().unwrap(),
                }
            })
            .collect();
        let conf: f64 = r[1].parse().unwrap();
        let b = gap::simultaneous_range(&levels, conf).unwrap();
        assert_eq!(b.pairs.to_string(), r[2], "{r:?}");
        let (up, low): (f64, f64) = (r[3].parse().unwrap(), r[4].parse().unwrap());
        assert!((b.upper - up).abs() < 1e-9, "{r:?}: {b:?}");
        assert!((b.lower - low).abs() < 1e-9, "{r:?}: {b:?}");
        assert_eq!(
            format!("{} {}", b.upper_pair[0], b.upper_pair[1]),
            r[5],
            "{r:?}"
        );
        if low > 0.0 {
            assert_eq!(
                format!("{} {}", b.lower_pair[0], b.lower_pair[1]),
                r[6],
                "{r:?}"
            );
        }
    }
}

/// Issue 17 item 3: the homogeneity test is scipy's `chi2_contingency(correction=False)`.
#[test]
fn homogeneity_matches_scipy() {
    for r in csv_rows(include_str!("../../tests/fixtures/stats/homogeneity.csv")) {
        let levels: Vec<(u64, u64)> = r[0]
            .split(' ')
            .map(|kn| {
                let (k, n) = kn.split_once('/').unwrap();
                (k.parse().unwrap(), n.parse().unwrap())
            })
            .collect();
        let h = gap::chi_square_homogeneity(&levels).unwrap();
        let (x2, p): (f64, f64) = (r[1].parse().unwrap(), r[3].parse().unwrap());
        assert!((h.statistic - x2).abs() < 1e-9, "{r:?}: {h:?}");
        assert_eq!(h.df.to_string(), r[2]);
        assert!((h.p_value - p).abs() < 1e-9, "{r:?}: {h:?}");
    }
}

/// Issue 17 item 3: with equal sensitivity in five levels the chi-square homogeneity test
/// rejects at 5% about 5% of the time (seeded simulation, 4000 data sets), where the extreme
/// pair's two-proportion test rejects about 30% of the time.
#[test]
fn homogeneity_test_holds_its_level_where_the_extreme_pair_does_not() {
    use rand::RngCore;
    let mut rng = bootstrap::resample_rng(17, 0);
    let (reps, k, n, p) = (4000, 5, 60, 0.8);
    let (mut chi, mut pair) = (0, 0);
    for _ in 0..reps {
        let levels: Vec<(u64, u64)> = (0..k)
            .map(|_| {
                let hits = (0..n)
                    .filter(|_| (rng.next_u32() as f64) < p * 4_294_967_296.0)
                    .count() as u64;
                (hits, n)
            })
            .collect();
        if gap::chi_square_homogeneity(&levels).unwrap().p_value < 0.05 {
            chi += 1;
        }
        let hi = levels.iter().max().unwrap();
        let lo = levels.iter().min().unwrap();
        if compare::two_proportion_z_test(hi.0, hi.1, lo.0, lo.1).unwrap() < 0.05 {
            pair += 1;
        }
    }
    let (chi, pair) = (chi as f64 / reps as f64, pair as f64 / reps as f64);
    assert!((0.035..0.065).contains(&chi), "chi-square rejects {chi}");
    assert!(pair > 0.2, "extreme pair rejects {pair}");
}

/// Issue 17 items 2, 3, 6: per-level AUROC and DeLong variance, and the Wald homogeneity
/// statistic across levels, against R pROC (`auc_groups_expected.csv`; for two levels Q is the
/// square of pROC's unpaired `roc.test` statistic).
#[test]
fn auroc_homogeneity_matches_proc() {
    let cases = csv_rows(include_str!(
        "../../tests/fixtures/stats/auc_groups_cases.csv"
    ));
    for r in csv_rows(include_str!(
        "../../tests/fixtures/stats/auc_groups_expected.csv"
    )) {
        let mine: Vec<&Vec<String>> = cases.iter().filter(|c| c[0] == r[0]).collect();
        let labels: Vec<bool> = mine.iter().map(|c| c[2] == "1").collect();
        let scores: Vec<f64> = mine.iter().map(|c| c[3].parse().unwrap()).collect();
        let level: Vec<String> = mine.iter().map(|c| c[1].clone()).collect();
        let attrs = vec![("g".to_string(), level)];
        let rep = analyze(
            &AnalysisInput {
                labels: &labels,
                scores: &scores,
                attributes: &attrs,
            },
            &AnalysisConfig {
                min_subgroup_size: 2,
                ..AnalysisConfig::default()
            },
        )
        .unwrap();
        let aucs: Vec<f64> = r[2].split(' ').map(|x| x.parse().unwrap()).collect();
        let vars: Vec<f64> = r[3].split(' ').map(|x| x.parse().unwrap()).collect();
        for ((s, a), v) in rep.subgroups.iter().zip(&aucs).zip(&vars) {
            let e = s.metrics.auroc.as_ref().unwrap();
            assert!((e.estimate - a).abs() < 1e-12, "{r:?}");
            assert!((e.se.unwrap().powi(2) - v).abs() < 1e-12, "{r:?}");
        }
        let g = rep.gaps.iter().find(|g| g.metric == Metric::Auroc).unwrap();
        assert_eq!(g.test, HomogeneityTest::DelongWald);
        let (q, p): (f64, f64) = (r[4].parse().unwrap(), r[6].parse().unwrap());
        assert!((g.statistic.unwrap() - q).abs() < 1e-9, "{r:?} {g:?}");
        assert!((g.p_value.unwrap() - p).abs() < 1e-9, "{r:?} {g:?}");
        if r[7] != "NA" {
            let z: f64 = r[7].parse().unwrap();
            assert!((g.statistic.unwrap() - z * z).abs() < 1e-9);
        }
    }
}

/// Issue 17 item 7: the exact binomial plan reproduces a scipy scan of the exact test's power,
/// whose first row is the published example (Se 0.95 vs 0.85, one-sided 0.05, power 0.95:
/// 93 exact, 102 safe; Chu & Cole 2007).
#[test]
fn exact_sample_size_matches_scipy_and_published_table() {
    let rows = csv_rows(include_str!("../../tests/fixtures/stats/samplesize.csv"));
    assert_eq!(
        &rows[0][..8],
        [
            "0.95",
            "0.85",
            "0.05",
            "0.95",
            "93",
            rows[0][5].as_str(),
            "102",
            rows[0][7].as_str()
        ]
    );
    for r in rows {
        let v: Vec<f64> = r.iter().map(|x| x.parse().unwrap()).collect();
        let plan = samplesize::exact_plan(v[0], v[1], v[2], v[3]).unwrap();
        assert_eq!((plan.exact as f64, plan.safe as f64), (v[4], v[6]), "{r:?}");
        assert!((plan.exact_power - v[5]).abs() < 1e-9, "{r:?} {plan:?}");
        assert!((plan.safe_power - v[7]).abs() < 1e-9, "{r:?} {plan:?}");
    }
}

/// Issue 17 item 7, AUROC: the Obuchowski-variance plan against R pROC 1.18.0
/// `power.roc.test` (`power_roc.csv`, `power_roc_at_n.csv`, from `gen_power_roc.R`): the
/// real-valued size and the power are closed form (1e-9); the integer sizes exactly.
#[test]
fn auroc_sample_size_matches_proc_power_roc_test() {
    use samplesize::{AurocVariance, auroc_plan, auroc_power, obuchowski_positives};
    let rows = csv_rows(include_str!("../../tests/fixtures/stats/power_roc.csv"));
    assert!(rows.len() >= 10);
    for r in rows {
        let v: Vec<f64> = r.iter().map(|x| x.parse().unwrap()).collect();
        let real = obuchowski_positives(v[0], v[1], v[2], v[3], v[4]).unwrap();
        assert!((real - v[5]).abs() < 1e-9, "{r:?}: {real}");
        let plan = auroc_plan(AurocVariance::Obuchowski, v[0], v[1], v[2], v[3], v[4]).unwrap();
        assert_eq!(
            (plan.positives as f64, plan.negatives as f64),
            (v[7], v[8]),
            "{r:?}"
        );
        assert!((plan.power - v[9]).abs() < 1e-9, "{r:?}: {plan:?}");
    }
    let rows = csv_rows(include_str!(
        "../../tests/fixtures/stats/power_roc_at_n.csv"
    ));
    assert!(rows.len() >= 5);
    for r in rows {
        let v: Vec<f64> = r.iter().map(|x| x.parse().unwrap()).collect();
        let (np, nn) = (r[3].parse().unwrap(), r[4].parse().unwrap());
        let p = auroc_power(AurocVariance::Obuchowski, v[0], v[1], v[2], np, nn).unwrap();
        assert!((p - v[5]).abs() < 1e-9, "{r:?}: {p}");
    }
}

/// Issue 17 item 9: prevalence-adjusted PPV/NPV against the transcription of Mercaldo, Lau &
/// Zhou (2007) in `ppv_adjusted.csv`.
#[test]
fn adjusted_ppv_npv_match_reference() {
    for r in csv_rows(include_str!("../../tests/fixtures/stats/ppv_adjusted.csv")) {
        let c: Vec<u64> = r[..4].iter().map(|x| x.parse().unwrap()).collect();
        let v: Vec<f64> = r[4..].iter().map(|x| x.parse().unwrap()).collect();
        let (ppv, npv) = ppv::adjusted_ppv_npv(c[0], c[1], c[2], c[3], v[0], v[1]);
        let (ppv, npv) = (ppv.unwrap(), npv.unwrap());
        let got = [
            ppv.estimate,
            ppv.lower,
            ppv.upper,
            npv.estimate,
            npv.lower,
            npv.upper,
        ];
        for (g, w) in got.iter().zip(&v[2..]) {
            assert!((g - w).abs() < 1e-9, "{r:?}: {got:?}");
        }
    }
}

/// Calibration metrics against FDA DIDSR's calzone-tool 0.1.0 and statsmodels
/// (`calibration.csv`): ECE-H and Spiegelhalter's z to 1e-9 (closed form), slope and
/// intercept with their Wald intervals to 1e-6 (iterative fits).
#[test]
fn calibration_matches_calzone_and_statsmodels() {
    let cases = csv_rows(include_str!(
        "../../tests/fixtures/stats/calibration_cases.csv"
    ));
    for r in csv_rows(include_str!("../../tests/fixtures/stats/calibration.csv")) {
        let mine: Vec<&Vec<String>> = cases.iter().filter(|c| c[0] == r[0]).collect();
        let labels: Vec<bool> = mine.iter().map(|c| c[1] == "1").collect();
        let scores: Vec<f64> = mine.iter().map(|c| c[2].parse().unwrap()).collect();
        let v: Vec<f64> = r[1..].iter().map(|x| x.parse().unwrap()).collect();
        let c = calibration::calibration(&labels, &scores, 0.95, 200, 1).unwrap();
        let ece = c.ece.unwrap();
        assert!((ece.estimate - v[0]).abs() < 1e-9, "{r:?} {ece:?}");
        let z = c.spiegelhalter_z.unwrap();
        assert!((z.estimate - v[1]).abs() < 1e-9, "{r:?}");
        assert!((c.spiegelhalter_p.unwrap() - v[2]).abs() < 1e-9, "{r:?}");
        let s = c.slope.unwrap();
        let i = c.intercept.unwrap();
        for (g, w) in [s.estimate, s.lower, s.upper, i.estimate, i.lower, i.upper]
            .iter()
            .zip(&v[3..])
        {
            assert!((g - w).abs() < 1e-6, "{r:?}: {s:?} {i:?}");
        }
        assert_eq!(ece.usable_resamples, Some(200));
    }
}

/// Issue 17 item 4: under `interval: bootstrap` a proportion gets an interval whose coverage is
/// at least 0.94 at 95% over a grid of n and p, including p near 0 and 1 (seeded simulation,
/// 2000 data sets per point), and 5/5 gets Clopper-Pearson [0.478, 1] (statsmodels
/// `proportion_confint(5, 5, method="beta")`), not the percentile bootstrap's [1, 1].
#[test]
fn bootstrap_mode_coverage() {
    use rand::RngCore;
    let cfg = AnalysisConfig {
        interval: IntervalMethod::Bootstrap,
        bootstrap_resamples: 1,
        ..AnalysisConfig::default()
    };
    let labels = [true; 5];
    let scores = [1.0; 5];
    let rep = analyze(
        &AnalysisInput {
            labels: &labels,
            scores: &scores,
            attributes: &[],
        },
        &cfg,
    )
    .unwrap();
    let s = rep.overall.sensitivity.unwrap();
    assert!(
        (s.lower - 0.4781762498950185).abs() < 1e-9 && s.upper == 1.0,
        "{s:?}"
    );
    let mut rng = bootstrap::resample_rng(20_070_315, 4);
    let reps = 2000;
    for n in [5usize, 12, 30, 80, 200] {
        for p in [0.01, 0.05, 0.3, 0.5, 0.9, 0.97, 0.995] {
            let labels = vec![true; n];
            let mut covered = 0;
            for _ in 0..reps {
                let scores: Vec<f64> = (0..n)
                    .map(|_| {
                        if (rng.next_u32() as f64) < p * 4_294_967_296.0 {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let rep = analyze(
                    &AnalysisInput {
                        labels: &labels,
                        scores: &scores,
                        attributes: &[],
                    },
                    &cfg,
                )
                .unwrap();
                let s = rep.overall.sensitivity.unwrap();
                if s.lower <= p && p <= s.upper {
                    covered += 1;
                }
            }
            let cov = covered as f64 / reps as f64;
            assert!(cov >= 0.94, "coverage {cov} at n = {n}, p = {p}");
        }
    }
}
