//! A realistic sample evidence record, so the report can be rendered, tested and previewed
//! without running a model: criteria that pass, fail and are not evaluable, a dirty
//! repository, small subgroups, subgroup gaps, equivocal and not-evaluated cases, so every
//! section of the report has something to show.
//!
//! [`escaping_corpus`] returns the same record with hostile strings (Typst code, HTML, Markdown
//! and math markup, backslashes, right-to-left text) in every user-provided field, for the
//! escaping tests. The numbers are illustrative, not computed from any data set.

use serde_json::json;

use crate::trace::Evidence;

/// Strings that must render literally in every output format.
pub const HOSTILE: [&str; 9] = [
    "#sys.exit()",
    "]",
    "<script>alert(1)</script>",
    "$x$",
    "*bold*",
    r"back\slash \\ end",
    "שלום عربي",
    "`code` _it_ @ref",
    "{{ 7*7 }}",
];

fn est(e: f64, l: f64, u: f64) -> serde_json::Value {
    json!({"estimate": e, "lower": l, "upper": u})
}

/// Builds a metrics JSON object from a 2x2 table with illustrative intervals.
fn metrics(tp: u64, fp: u64, tn: u64, fn_: u64, auc: Option<(f64, f64, f64)>) -> serde_json::Value {
    let prop = |k: u64, n: u64| -> serde_json::Value {
        if n == 0 {
            return serde_json::Value::Null;
        }
        // Wilson score interval at 95%, so the sample is at least self-consistent.
        let (k, n) = (k as f64, n as f64);
        let z = 1.959_963_984_540_054_f64;
        let p = k / n;
        let centre = (k + z * z / 2.0) / (n + z * z);
        let half = z / (n + z * z) * (k * (n - k) / n + z * z / 4.0).sqrt();
        est(p, (centre - half).max(0.0), (centre + half).min(1.0))
    };
    let n = tp + fp + tn + fn_;
    let sens = if tp + fn_ > 0 {
        Some(tp as f64 / (tp + fn_) as f64)
    } else {
        None
    };
    let ppv = if tp + fp > 0 {
        Some(tp as f64 / (tp + fp) as f64)
    } else {
        None
    };
    let f1 = match (sens, ppv) {
        (Some(s), Some(p)) if s + p > 0.0 => Some(2.0 * s * p / (s + p)),
        _ => None,
    };
    json!({
        "tp": tp, "fp": fp, "tn": tn, "fn": fn_,
        "sensitivity": prop(tp, tp + fn_),
        "specificity": prop(tn, tn + fp),
        "ppv": prop(tp, tp + fp),
        "npv": prop(tn, tn + fn_),
        "accuracy": prop(tp + tn, n),
        "auroc": auc.map(|(e, l, u)| json!({"estimate": e, "lower": l, "upper": u, "method": "delong"})),
        "f1": f1,
        "kappa": if n > 0 { Some(0.71) } else { None },
        "prevalence": if n > 0 { Some((tp + fn_) as f64 / n as f64) } else { None },
    })
}

fn subgroup(
    attr: &str,
    value: &str,
    tp: u64,
    fp: u64,
    tn: u64,
    fn_: u64,
    small: bool,
) -> serde_json::Value {
    let auc = if tp + fn_ > 0 && tn + fp > 0 {
        Some((0.93, 0.88, 0.97))
    } else {
        None
    };
    json!({
        "attribute": attr, "value": value, "n": tp + fp + tn + fn_, "positives": tp + fn_,
        "small": small, "metrics": metrics(tp, fp, tn, fn_, auc),
    })
}

fn stats(tp: u64, fp: u64, tn: u64, fn_: u64, site_c: &str) -> serde_json::Value {
    json!({
        "n": tp + fp + tn + fn_, "positives": tp + fn_, "negatives": tn + fp,
        "threshold": 0.5, "confidence": 0.95, "interval": "wilson",
        "overall": metrics(tp, fp, tn, fn_, Some((0.941, 0.918, 0.964))),
        "subgroups": [
            subgroup("age_band", "18-39", 8, 2, 13, 1, true),
            subgroup("age_band", "40-64", 70, 12, 105, 8, false),
            subgroup("age_band", "65+", 64, 12, 96, 9, false),
            subgroup("sex", "F", 66, 11, 104, 7, false),
            subgroup("sex", "M", 76, 15, 110, 11, false),
            subgroup("site", "A", 90, 14, 140, 8, false),
            subgroup("site", "B", 48, 10, 66, 6, false),
            subgroup("site", site_c, 4, 2, 8, 4, true),
        ],
        "gaps": [
            {"attribute": "age_band", "metric": "sensitivity", "difference": 0.135, "lower": 0.021,
             "upper": 0.262, "between": ["18-39", "65+"], "p_value": 0.004, "p_adjusted": 0.024, "method": "bonferroni-newcombe"},
            {"attribute": "sex", "metric": "sensitivity", "difference": 0.033, "lower": -0.041,
             "upper": 0.108, "between": ["F", "M"], "p_value": 0.41, "p_adjusted": 1.0, "method": "bonferroni-newcombe"},
            {"attribute": "site", "metric": "specificity", "difference": 0.042, "lower": -0.031,
             "upper": 0.119, "between": ["A", "B"], "p_value": 0.23, "p_adjusted": 0.92, "method": "bonferroni-newcombe"},
        ],
    })
}

/// The sample evidence record.
pub fn sample_evidence() -> Evidence {
    build(&Strings::plain())
}

/// The sample with hostile strings in every user-provided field.
pub fn escaping_corpus() -> Evidence {
    build(&Strings::hostile())
}

struct Strings {
    title: String,
    requirement_text: String,
    rationale: String,
    site_c: String,
    signatory: String,
    exclusion: String,
    warning: String,
    case_id: String,
    user: String,
}

impl Strings {
    fn plain() -> Self {
        Strings {
            title: "Pneumothorax detection on frontal chest radiographs".into(),
            requirement_text: "The software shall detect pneumothorax with a sensitivity of at least 0.85 (lower 95% bound)."
                .into(),
            rationale: "Predicate device performance minus a 5-point non-inferiority margin.".into(),
            site_c: "C".into(),
            signatory: "Dr. Jane Roe".into(),
            exclusion: "image unreadable".into(),
            warning: "golden set used by 4 model versions (limit 5)".into(),
            case_id: "case-0193".into(),
            user: "alex".into(),
        }
    }

    fn hostile() -> Self {
        let all = HOSTILE.join(" ");
        Strings {
            title: format!("Title {all}"),
            requirement_text: format!("Requirement {all}"),
            rationale: format!("Rationale {all}"),
            site_c: HOSTILE[0].into(),
            signatory: HOSTILE[6].into(),
            exclusion: HOSTILE[2].into(),
            warning: format!("Warning {all}"),
            case_id: HOSTILE[1].into(),
            user: r#"quote" back\ #user"#.into(),
        }
    }
}

fn build(s: &Strings) -> Evidence {
    let roc: Vec<serde_json::Value> = (0..=100)
        .map(|i| {
            let fpr = i as f64 / 100.0;
            // 1 - (1 - fpr)^19 passes near the sample's operating point (0.108, 0.8875).
            json!({"fpr": fpr, "tpr": 1.0 - (1.0 - fpr).powi(19), "threshold": 1.0 - fpr})
        })
        .collect();
    let calibration: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let lower = i as f64 / 10.0;
            if i == 4 {
                return json!({"lower": lower, "upper": lower + 0.1, "n": 0, "mean_score": null, "observed": null});
            }
            let mean = lower + 0.05;
            let observed = (mean + 0.06 * ((i as f64) - 4.5) / 4.5).clamp(0.0, 1.0);
            json!({"lower": lower, "upper": lower + 0.1, "n": 40 - (i as u64 % 4) * 3,
                   "mean_score": mean, "observed": observed})
        })
        .collect();
    let v = json!({
        "medgate_evidence": 2,
        "run_id": "RUN-20260115-7f3a9c2e",
        "protocol": {
            "medgate_protocol": 1,
            "protocol": "VP-PTX-001",
            "title": s.title,
            "version": "1.2",
            "intended_use": "Triage aid flagging suspected pneumothorax on adult frontal chest radiographs for prioritised reading by a radiologist.",
            "model": {"backend": "replay", "predictions": "predictions.csv",
                      "sha256": "9b1c7e4a2f0d8e6b5a4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a"},
            "task": {"kind": "binary", "question": "Is there a pneumothorax? Answer yes or no.", "threshold": 0.5},
            "golden_set": {"path": "golden/ptx-v3", "label_column": "pneumothorax"},
            "subgroups": {"attributes": ["age_band", "sex", "site"]},
            "statistics": {"confidence": 0.95, "interval": "wilson", "multiplicity": "holm", "min_subgroup_size": 30},
            "acceptance": [],
            "report": {"formats": ["pdf", "html", "md"], "signatories": [
                {"role": "Author", "name": "Alex Doe", "meaning": "authored"},
                {"role": "QA reviewer", "name": s.signatory, "meaning": "reviewed"},
                {"role": "Approver", "name": "Sam Poe", "meaning": "approved"},
            ]},
        },
        "protocol_file": {"path": "protocols/ptx.yaml",
                          "sha256": "3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f21",
                          "git_blob": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"},
        "provenance": {
            "git": {"commit": "4e1d2c3b4a5968776655443322110ffeeddccbba", "dirty": true,
                    "dirty_files": ["protocols/ptx.yaml", "notes.txt"]},
            "medgate_version": "0.1.0",
            "medgate_commit": "10d3e25b7c4f1a2e3d4c5b6a79808f7e6d5c4b3a",
            "command": "medgate run protocols/ptx.yaml --out bundles/ptx-2026-01-15",
            "host": {"hostname": "qa-runner-01", "os": "linux 6.8.0", "arch": "x86_64",
                     "cpu": "AMD EPYC 7763 64-Core Processor", "cpus": 16},
            "user": s.user,
            "started_at": "2026-01-15T09:12:03Z",
            "finished_at": "2026-01-15T09:14:41Z",
            "trace_files": [
                {"path": "requirements/srs.yaml", "sha256": "aa11bb22cc33dd44ee55ff6677889900aabbccddeeff00112233445566778899", "git_blob": null},
                {"path": "requirements/risks.yaml", "sha256": "bb22cc33dd44ee55ff6677889900aabbccddeeff0011223344556677889900aa", "git_blob": null},
            ],
            "release": false,
        },
        "golden_set": {"path": "golden/ptx-v3",
                       "root_hash": "d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d",
                       "lock_sha256": "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
                       "locked_at": "2025-12-01T10:00:00Z", "cases": 412},
        "model": {"backend": "replay", "name": "ptx-clip-b16",
                  "sha256": "9b1c7e4a2f0d8e6b5a4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a",
                  "settings": {"predictions": "predictions.csv", "answer": {"positive": "^\\W*yes\\b", "negative": "^\\W*no\\b"}, "threshold": 0.5}},
        "accountability": {
            "enrolled": 412,
            "excluded": {"duplicate patient": 3, (s.exclusion.clone()): 5},
            "evaluated": 396,
            "equivocal": 6,
            "not_evaluated": [
                {"case_id": s.case_id, "reason": "DICOM decode error: unsupported transfer syntax"},
                {"case_id": "case-0311", "reason": "model timeout after 3 retries"},
            ],
        },
        "statistics": stats(142, 26, 214, 18, &s.site_c),
        "equivocal_analyses": [
            {"equivocal_as": "as_positive", "statistics": stats(145, 29, 211, 15, &s.site_c)},
            {"equivocal_as": "as_negative", "statistics": stats(142, 26, 217, 18, &s.site_c)},
        ],
        "curves": {"roc": roc, "calibration": calibration},
        "criteria": [
            {"id": "AC-PTX-01", "requirement": "SRS-PTX-010", "risk_control": "RC-PTX-03",
             "metric": "sensitivity", "scope": "overall", "bound": "lower", "comparator": "at_least",
             "goal": 0.80, "verdict": "PASS", "rationale": s.rationale,
             "observations": [{"unit": "overall", "n": 160, "estimate": 0.8875, "lower": 0.8293,
                               "upper": 0.9277, "tested": 0.8293, "verdict": "PASS", "note": null}]},
            {"id": "AC-PTX-02", "requirement": "SRS-PTX-011", "risk_control": null,
             "metric": "specificity", "scope": "overall", "bound": "lower", "comparator": "at_least",
             "goal": 0.90, "verdict": "FAIL", "rationale": null,
             "observations": [{"unit": "overall", "n": 240, "estimate": 0.8917, "lower": 0.8468,
                               "upper": 0.9245, "tested": 0.8468, "verdict": "FAIL", "note": null}]},
            {"id": "AC-PTX-03", "requirement": "SRS-PTX-012", "risk_control": "RC-PTX-07",
             "metric": "sensitivity", "scope": "site", "bound": "point", "comparator": "at_least",
             "goal": 0.80, "verdict": "NOT_EVALUABLE", "rationale": null,
             "observations": [
                {"unit": "site=A", "n": 252, "estimate": 0.9184, "lower": 0.8469, "upper": 0.958, "tested": 0.9184, "verdict": "PASS", "note": null},
                {"unit": "site=B", "n": 130, "estimate": 0.8889, "lower": 0.7847, "upper": 0.9451, "tested": 0.8889, "verdict": "PASS", "note": null},
                {"unit": format!("site={}", s.site_c), "n": 18, "estimate": 0.5, "lower": 0.2152, "upper": 0.7848, "tested": null, "verdict": "NOT_EVALUABLE",
                 "note": "n = 18 is below min_subgroup_size 30"}]},
            {"id": "AC-PTX-04", "requirement": "SRS-PTX-013", "risk_control": "RC-PTX-08",
             "metric": "sensitivity_gap", "scope": "each_subgroup", "bound": "point", "comparator": "at_most",
             "goal": 0.15, "verdict": "PASS", "rationale": "Equity of performance across demographic subgroups.",
             "observations": [
                {"unit": "age_band", "n": 400, "estimate": 0.135, "lower": 0.021, "upper": 0.262, "tested": 0.135, "verdict": "PASS", "note": null},
                {"unit": "sex", "n": 400, "estimate": 0.033, "lower": -0.041, "upper": 0.108, "tested": 0.033, "verdict": "PASS", "note": null}]},
            {"id": "AC-PTX-05", "requirement": "SRS-PTX-014", "risk_control": null,
             "metric": "auroc", "scope": "overall", "bound": "lower", "comparator": "at_least",
             "goal": 0.90, "verdict": "PASS", "rationale": null,
             "observations": [{"unit": "overall", "n": 400, "estimate": 0.941, "lower": 0.918,
                               "upper": 0.964, "tested": 0.918, "verdict": "PASS", "note": null}]},
        ],
        "traceability": {
            "requirements": [
                {"id": "SRS-PTX-010", "text": s.requirement_text, "source": "UN-03", "criteria": ["AC-PTX-01"], "verdict": "PASS", "evidence": ["evidence.json", "cases.parquet"]},
                {"id": "SRS-PTX-011", "text": "The software shall keep false alarms low: specificity of at least 0.90 (lower 95% bound).", "source": "UN-03", "criteria": ["AC-PTX-02"], "verdict": "FAIL", "evidence": ["evidence.json", "cases.parquet"]},
                {"id": "SRS-PTX-012", "text": "Sensitivity shall be at least 0.80 at every acquisition site.", "source": "UN-05", "criteria": ["AC-PTX-03"], "verdict": "NOT_EVALUABLE", "evidence": ["evidence.json", "cases.parquet"]},
                {"id": "SRS-PTX-013", "text": "Sensitivity shall not differ by more than 0.15 between demographic subgroups.", "source": "UN-06", "criteria": ["AC-PTX-04"], "verdict": "PASS", "evidence": ["evidence.json", "cases.parquet"]},
                {"id": "SRS-PTX-014", "text": "Discrimination (AUROC) shall be at least 0.90 (lower 95% bound).", "source": null, "criteria": ["AC-PTX-05"], "verdict": "PASS", "evidence": ["evidence.json", "cases.parquet"]},
                {"id": "SRS-PTX-020", "text": "The software shall report its confidence for each case.", "source": "UN-07", "criteria": [], "verdict": null, "evidence": []},
            ],
            "risk_controls": [
                {"id": "RC-PTX-03", "text": "Minimum sensitivity verified before release.", "source": "HAZ-01 missed pneumothorax", "criteria": ["AC-PTX-01"], "verdict": "PASS", "evidence": ["evidence.json"]},
                {"id": "RC-PTX-07", "text": "Per-site performance verified.", "source": "HAZ-04 site shift", "criteria": ["AC-PTX-03"], "verdict": "NOT_EVALUABLE", "evidence": ["evidence.json"]},
                {"id": "RC-PTX-08", "text": "Subgroup equity verified.", "source": "HAZ-05 bias", "criteria": ["AC-PTX-04"], "verdict": "PASS", "evidence": ["evidence.json"]},
            ],
            "uncovered_requirements": ["SRS-PTX-020"],
        },
        "warnings": [
            "subgroup age_band=18-39 has 24 cases (< 30): criteria on it are not evaluable",
            format!("subgroup site={} has 18 cases (< 30): criteria on it are not evaluable", s.site_c),
            s.warning,
        ],
        "verdict": "FAIL",
        "results_sha256": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
    });
    let mut ev: Evidence =
        serde_json::from_value(v).expect("the sample evidence matches the evidence types");
    // Criteria in the protocol copy mirror the results (the report reads the results).
    ev.protocol.acceptance = Vec::new();
    ev
}
