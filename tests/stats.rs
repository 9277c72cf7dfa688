//! End-to-end tests of `medgate stats`: the binary on the aSAH predictions fixture (reference
//! values from statsmodels and pROC, see tests/fixtures/stats/README.md), a Parquet file
//! written here, and the input errors (exit code 2, row named).

use std::path::{Path, PathBuf};
use std::process::Command;

use polars::prelude::*;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stats")
        .join(name)
}

fn medgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .args(args)
        .output()
        .expect("run medgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn close(v: &Value, want: f64, tol: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((got - want).abs() < tol, "{got} vs {want}");
}

/// metric -> (estimate, lower, upper) from asah_cli_expected.csv.
fn expected() -> Vec<(String, [f64; 3])> {
    std::fs::read_to_string(fixture("asah_cli_expected.csv"))
        .unwrap()
        .lines()
        .skip(2)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                [
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                ],
            )
        })
        .collect()
}

#[test]
fn csv_json_matches_references() {
    let input = fixture("asah_predictions.csv");
    let (code, out, err) = medgate(&[
        "stats",
        "--input",
        input.to_str().unwrap(),
        "--label",
        "label",
        "--score",
        "ndka",
        "--threshold",
        "12",
        "--subgroup",
        "gender",
        "--min-subgroup-size",
        "10",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["n"], 113);
    assert_eq!(v["positives"], 41);
    assert_eq!(v["negatives"], 72);
    assert_eq!(v["interval"], "wilson");
    let o = &v["overall"];
    assert_eq!(
        (
            o["tp"].as_u64(),
            o["fp"].as_u64(),
            o["tn"].as_u64(),
            o["fn"].as_u64()
        ),
        (Some(25), Some(32), Some(40), Some(16))
    );
    for (metric, [e, lo, hi]) in expected() {
        close(&o[&metric]["estimate"], e, 1e-12);
        close(&o[&metric]["lower"], lo, 1e-9);
        close(&o[&metric]["upper"], hi, 1e-9);
    }
    // pROC DeLong on aSAH/ndka (domain.md).
    close(&o["auroc"]["estimate"], 0.611957994579946, 1e-9);
    close(&o["auroc"]["lower"], 0.501244999271703, 1e-6);
    close(&o["auroc"]["upper"], 0.722670989888189, 1e-6);
    assert_eq!(o["auroc"]["method"], "delong");
    let subgroups = v["subgroups"].as_array().unwrap();
    assert_eq!(subgroups.len(), 2);
    assert_eq!(subgroups[0]["attribute"], "gender");
    assert_eq!(subgroups[0]["value"], "Female");
    // pROC on the female cases alone.
    close(
        &subgroups[0]["metrics"]["auroc"]["estimate"],
        0.667_142_857_142_857,
        1e-9,
    );
    close(
        &subgroups[0]["metrics"]["auroc"]["lower"],
        0.526_139_828_092_854,
        1e-6,
    );
    let gaps = v["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 3);
    assert_eq!(gaps[0]["metric"], "sensitivity");
    // AUROC gap between the two genders: the homogeneity p is pROC's unpaired DeLong
    // roc.test (fixtures/stats/auc_groups_expected.csv, row gender).
    let auc = gaps.iter().find(|g| g["metric"] == "auroc").unwrap();
    assert_eq!(auc["test"], "delong-wald");
    close(&auc["p_value"], 0.327_637_272_001_366_83, 1e-9);
    assert_eq!(auc["pairs"], 1);
}

#[test]
fn text_format_shows_table_and_intervals() {
    let input = fixture("asah_predictions.csv");
    let (code, out, err) = medgate(&[
        "stats",
        "--input",
        input.to_str().unwrap(),
        "--label",
        "label",
        "--score",
        "ndka",
        "--threshold",
        "12",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("113 cases (41 positive, 72 negative)"),
        "{out}"
    );
    // Sensitivity 25/41 with the statsmodels Wilson interval, as 0.610 (0.457-0.743).
    assert!(out.contains("sensitivity  0.610 (0.457-0.743)"), "{out}");
    assert!(
        out.contains("auroc        0.612 (0.501-0.723) delong"),
        "{out}"
    );
}

#[test]
fn parquet_input_and_bootstrap_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preds.parquet");
    // Boolean labels, raw scores with a threshold outside [0, 1], an integer subgroup column.
    let n = 200usize;
    let labels: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let scores: Vec<f64> = (0..n)
        .map(|i| (i as f64 * 0.37).sin() * 3.0 + if i % 3 == 0 { 1.5 } else { 0.0 })
        .collect();
    let site: Vec<i64> = (0..n).map(|i| (i % 4) as i64).collect();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new("y".into(), labels.clone()),
            Column::new("logit".into(), scores.clone()),
            Column::new("site".into(), site),
        ],
    )
    .unwrap();
    let f = std::fs::File::create(&path).unwrap();
    ParquetWriter::new(f).finish(&mut df).unwrap();
    let args = [
        "stats",
        "--input",
        path.to_str().unwrap(),
        "--label",
        "y",
        "--score",
        "logit",
        "--threshold",
        "1",
        "--subgroup",
        "site",
        "--interval",
        "bootstrap",
        "--bootstrap",
        "300",
        "--seed",
        "42",
        "--format",
        "json",
    ];
    let (code, out1, err) = medgate(&args);
    assert_eq!(code, 0, "{err}");
    let (_, out2, _) = medgate(&args);
    assert_eq!(out1, out2, "same seed, same bytes");
    let v: Value = serde_json::from_str(&out1).unwrap();
    let tp = labels
        .iter()
        .zip(&scores)
        .filter(|(y, s)| **y && **s >= 1.0)
        .count();
    assert_eq!(v["overall"]["tp"].as_u64(), Some(tp as u64));
    assert_eq!(v["interval"], "bootstrap");
    assert_eq!(v["overall"]["auroc"]["method"], "bootstrap");
    let values: Vec<&str> = v["subgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["0", "1", "2", "3"]);
}

#[test]
fn bad_label_names_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, "label,score\n1,0.9\n0,0.2\n2,0.4\n").unwrap();
    let (code, _, err) = medgate(&[
        "stats",
        "--input",
        path.to_str().unwrap(),
        "--label",
        "label",
        "--score",
        "score",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("row 3 (line 4)") && err.contains("`2`"),
        "{err}"
    );
    std::fs::write(&path, "label,score\nyes,0.9\n").unwrap();
    let (code, _, err) = medgate(&[
        "stats",
        "--input",
        path.to_str().unwrap(),
        "--label",
        "label",
        "--score",
        "score",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("row 1 (line 2)") && err.contains("0/1 or true/false"),
        "{err}"
    );
}

#[test]
fn nan_score_names_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.csv");
    std::fs::write(&path, "label,score\ntrue,0.9\nfalse,NaN\ntrue,0.4\n").unwrap();
    let (code, _, err) = medgate(&[
        "stats",
        "--input",
        path.to_str().unwrap(),
        "--label",
        "label",
        "--score",
        "score",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("row 2 (line 3)") && err.contains("NaN"),
        "{err}"
    );
}

#[test]
fn missing_column_and_file_are_input_errors() {
    let input = fixture("asah_predictions.csv");
    let (code, _, err) = medgate(&[
        "stats",
        "--input",
        input.to_str().unwrap(),
        "--label",
        "truth",
        "--score",
        "ndka",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no label column `truth`") && err.contains("case_id"),
        "{err}"
    );
    let (code, _, _) = medgate(&[
        "stats",
        "--input",
        "/nonexistent/x.csv",
        "--label",
        "a",
        "--score",
        "b",
    ]);
    assert_eq!(code, 2);
}

#[test]
fn plan_prints_sample_size() {
    // Exact binomial plan at one-sided 0.025 (two-sided 95%): scipy scan in
    // fixtures/stats/samplesize.csv (0.9 vs 0.8, power 0.8): 107 exact, 113 safe; / 0.3 -> 377.
    let (code, out, err) = medgate(&[
        "plan",
        "--expected",
        "0.9",
        "--goal",
        "0.8",
        "--prevalence",
        "0.3",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["positives"], 113);
    assert_eq!(v["exact_n"], 107);
    assert_eq!(v["total_cases"], 377);
    assert!(v["method"].as_str().unwrap().contains("Flahault"));
    // The published example (Chu & Cole 2007): 93 exact, 102 safe.
    let (code, out, err) = medgate(&[
        "plan",
        "--expected",
        "0.95",
        "--goal",
        "0.85",
        "--one-sided-alpha",
        "0.05",
        "--power",
        "0.95",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("102 positive cases"), "{out}");
    assert!(out.contains("smallest n reaching the target: 93"), "{out}");
    assert!(out.contains("method: exact binomial"), "{out}");
    let (code, _, err) = medgate(&["plan", "--expected", "0.8", "--goal", "0.9"]);
    assert_eq!(code, 2);
    assert!(err.contains("must exceed --goal"), "{err}");
}

/// `plan --metric auroc --auroc-variance obuchowski` against R pROC 1.18.0 power.roc.test
/// (`fixtures/stats/power_roc.csv` row 7: AUROC 0.9 vs 0.8, one-sided 0.05, power 0.9, 2
/// negatives per positive: 68 + 136, power 0.90433480270096989; `power_roc_at_n.csv` row 5:
/// 37 + 91 positives/negatives at one-sided 0.05 give power 0.67773611229749608).
#[test]
fn plan_auroc_obuchowski_matches_proc() {
    let args = [
        "plan",
        "--metric",
        "auroc",
        "--auroc-variance",
        "obuchowski",
        "--expected",
        "0.9",
        "--goal",
        "0.8",
        "--one-sided-alpha",
        "0.05",
        "--power",
        "0.9",
        "--ratio",
        "2",
        "--format",
        "json",
    ];
    let (code, out, err) = medgate(&args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["positives"].as_u64(), v["negatives"].as_u64()),
        (Some(68), Some(136))
    );
    close(&v["achieved_power"], 0.904_334_802_700_97, 1e-9);
    assert_eq!(v["variance"], "obuchowski");
    assert!(v["method"].as_str().unwrap().contains("pROC"), "{out}");
    let mut at_n = args.to_vec();
    at_n[14] = "2.45";
    at_n.extend(["--positives", "37"]);
    let (code, out, err) = medgate(&at_n);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["positives"].as_u64(), v["negatives"].as_u64()),
        (Some(37), Some(91))
    );
    close(&v["achieved_power"], 0.677_736_112_297_496, 1e-9);
    // The default stays Hanley-McNeil, and says so.
    let default: Vec<&str> = args[..3].iter().chain(&args[5..13]).copied().collect();
    let (code, out, err) = medgate(&default);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("method: Obuchowski (1998) with the Hanley & McNeil"),
        "{out}"
    );
}

#[test]
fn negative_threshold_and_intersections() {
    let input = fixture("asah_predictions.csv");
    let (code, out, err) = medgate(&[
        "stats",
        "--input",
        input.to_str().unwrap(),
        "--label",
        "label",
        "--score",
        "ndka",
        "--threshold",
        "-1",
        "--subgroup",
        "gender",
        "--subgroup",
        "wfns",
        "--intersect",
        "gender,wfns",
        "--interval",
        "clopper-pearson",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    // Every case is positive at threshold -1: specificity 0/72 with the exact upper bound
    // 1 - 0.025^(1/72).
    let spec = &v["overall"]["specificity"];
    close(&spec["estimate"], 0.0, 1e-15);
    close(&spec["upper"], 1.0 - 0.025f64.powf(1.0 / 72.0), 1e-12);
    assert!(v["overall"]["npv"].is_null());
    let subgroups = v["subgroups"].as_array().unwrap();
    assert!(
        subgroups
            .iter()
            .any(|s| s["attribute"] == "gender x wfns" && s["value"] == "Female x 1")
    );
    // Small levels (< 30 cases) are flagged.
    assert!(subgroups.iter().any(|s| s["small"] == true));
}
