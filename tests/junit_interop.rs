//! `junit.xml` as CI systems read it: the file medgate renders for the sample evidence is
//! compared byte for byte with `tests/fixtures/junit/junit.xml`, which junitparser (PyPI) read
//! back into `junitparser.json` after it validated against the Jenkins xunit-plugin
//! `junit-10.xsd` (see the fixture's README). This test checks that reading: every criterion
//! a test case, failures where the criterion is not PASS, the observed value and interval of
//! *passing* criteria in `<system-out>`, and the suite `time` the real run duration.

use std::path::Path;

const FIXTURE: &str = "tests/fixtures/junit";

#[test]
fn junit_is_the_file_junitparser_read_and_the_xsd_accepted() {
    let ev = medgate::testing::sample::sample_evidence();
    let xml = medgate::report::junit::render(&ev);
    let fixture = Path::new(FIXTURE).join("junit.xml");
    if std::env::var_os("MEDGATE_REGENERATE").is_some() {
        std::fs::write(&fixture, &xml).unwrap();
    }
    assert_eq!(
        xml,
        std::fs::read_to_string(&fixture).unwrap(),
        "junit.xml changed: regenerate the fixture and re-read it (see {FIXTURE}/README.md)"
    );
    let read: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(FIXTURE).join("junitparser.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(read["xsd_valid"], true);
    let suite = &read["suites"][0];
    assert_eq!(suite["tests"], ev.criteria.len());
    let failing = ev
        .criteria
        .iter()
        .filter(|c| c.verdict != medgate::trace::Verdict::Pass)
        .count();
    assert_eq!(suite["failures"], failing);
    // The run's real duration, from the evidence's start and end times.
    let secs = (chrono::DateTime::parse_from_rfc3339(&ev.provenance.finished_at).unwrap()
        - chrono::DateTime::parse_from_rfc3339(&ev.provenance.started_at).unwrap())
    .num_milliseconds() as f64
        / 1000.0;
    assert!(secs > 0.0);
    assert_eq!(suite["time"].as_f64(), Some(secs));
    let cases = suite["cases"].as_array().unwrap();
    assert_eq!(cases.len(), ev.criteria.len());
    for (c, case) in ev.criteria.iter().zip(cases) {
        assert_eq!(
            case["passed"],
            c.verdict == medgate::trace::Verdict::Pass,
            "{}",
            c.id
        );
        let out = case["system_out"].as_str().unwrap_or_default();
        assert!(out.starts_with(&c.id), "{}: {out}", c.id);
        for o in &c.observations {
            if let (Some(e), Some(l), Some(u)) = (o.estimate, o.lower, o.upper) {
                let want = format!("estimate={e:.4} [{l:.4}, {u:.4}]");
                assert!(out.contains(&want), "{}: {want} not in {out}", c.id);
            }
        }
    }
}
