//! `cases.parquet` opens in older Arrow readers: the file medgate writes is compared byte for
//! byte with `tests/fixtures/parquet-compat/cases.parquet`, which pyarrow 14.0.2 (an Arrow
//! reader that rejects polars' default `Utf8View` schema) read back into
//! `pyarrow-14.json`; this test checks that reading against the rows written. The fixture's
//! README names the command that regenerates both. With `MEDGATE_PYARROW_PYTHON` set to a
//! Python that has pyarrow, the fresh file is also read live.

use std::collections::BTreeMap;
use std::path::Path;

use medgate::harness::{CaseOutcome, CaseResult, CaseStatus};
use medgate::model::{Answer, Prediction, ScoreSource};

const FIXTURE: &str = "tests/fixtures/parquet-compat";

fn results() -> (Vec<CaseResult>, Vec<bool>, BTreeMap<String, Vec<String>>) {
    let pred = |raw: &str, score: f64, answer| Prediction {
        raw: raw.into(),
        score,
        answer,
        score_source: ScoreSource::Logprobs,
        attempts: 1,
    };
    let r = |id: &str, status, p: Option<Prediction>, error: Option<&str>| CaseResult {
        case_id: id.into(),
        image_sha256: format!("{:0>64}", id.len()),
        outcome: match (status, p) {
            (CaseStatus::Evaluated, Some(p)) => CaseOutcome::Evaluated(p),
            (CaseStatus::Equivocal, Some(p)) => CaseOutcome::Equivocal(p),
            _ => CaseOutcome::NotEvaluated {
                reason: error.unwrap_or("unknown").into(),
            },
        },
        latency_ms: 12.5,
    };
    let results = vec![
        r(
            "C-001",
            CaseStatus::Evaluated,
            Some(pred("Yes.", 0.91, Answer::Positive)),
            None,
        ),
        r(
            "C-002",
            CaseStatus::Evaluated,
            Some(pred("No", 0.12, Answer::Negative)),
            None,
        ),
        r(
            "C-003",
            CaseStatus::Equivocal,
            Some(pred("Maybe | é ✓", 0.5, Answer::Equivocal)),
            None,
        ),
        r(
            "C-004",
            CaseStatus::NotEvaluated,
            None,
            Some("HTTP 401 Unauthorized"),
        ),
    ];
    let labels = vec![true, false, true, false];
    let mut attrs = BTreeMap::new();
    attrs.insert(
        "sex".to_string(),
        vec!["F".into(), "M".into(), "F".into(), "".into()],
    );
    (results, labels, attrs)
}

fn write(path: &Path) {
    let (results, labels, attrs) = results();
    let decode = vec![None, None, Some("DICOM VOI window 1".to_string()), None];
    medgate::trace::bundle::write_cases(path, &results, &labels, &attrs, 0.5, &decode).unwrap();
}

#[test]
fn cases_parquet_is_the_file_pyarrow_14_read() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("cases.parquet");
    write(&fresh);
    let fixture = Path::new(FIXTURE).join("cases.parquet");
    if std::env::var_os("MEDGATE_REGENERATE").is_some() {
        std::fs::copy(&fresh, &fixture).unwrap();
    }
    assert_eq!(
        std::fs::read(&fresh).unwrap(),
        std::fs::read(&fixture).unwrap(),
        "cases.parquet changed: regenerate the fixture and re-read it with pyarrow 14 (see {FIXTURE}/README.md)"
    );
    let read: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(FIXTURE).join("pyarrow-14.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(read["pyarrow"], "14.0.2");
    // Plain Arrow string types, no view types, and every value as written.
    let schema = read["schema"].as_object().unwrap();
    for (col, ty) in schema {
        let ty = ty.as_str().unwrap();
        assert!(!ty.contains("view"), "{col}: {ty}");
    }
    assert_eq!(schema["case_id"], "large_string");
    assert_eq!(schema["label"], "bool");
    assert_eq!(schema["score"], "double");
    let rows = read["rows"].as_array().unwrap();
    let (results, labels, attrs) = results();
    assert_eq!(rows.len(), results.len());
    for (i, (row, r)) in rows.iter().zip(&results).enumerate() {
        assert_eq!(row["case_id"], r.case_id.as_str());
        assert_eq!(row["label"], labels[i]);
        assert_eq!(row["attr:sex"], attrs["sex"][i].as_str());
        assert_eq!(row["error"], serde_json::json!(r.error()));
        match r.prediction() {
            Some(p) => {
                assert_eq!(row["raw"], p.raw.as_str());
                assert_eq!(row["score"].as_f64(), Some(p.score));
            }
            None => assert!(row["raw"].is_null() && row["score"].is_null()),
        }
    }
    if let Some(py) = std::env::var_os("MEDGATE_PYARROW_PYTHON") {
        let out = std::process::Command::new(py)
            .arg(Path::new(FIXTURE).join("read_with_pyarrow.py"))
            .arg(&fresh)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let live: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(live["rows"], read["rows"]);
    }
}
