//! The published evidence format: `medgate schema --evidence` is the committed
//! `protocols/evidence.schema.json` (drift test), and a real run's `evidence.json` validates
//! against it with an independent validator (Python `jsonschema`, Draft 2020-12; skipped with
//! a message when Python or the package is absent).

use std::path::{Path, PathBuf};
use std::process::Command;

fn medgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medgate"));
    c.env("MEDGATE_USER", "test-user");
    c
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn live_schema() -> serde_json::Value {
    let out = medgate().args(["schema", "--evidence"]).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn evidence_schema_is_committed_and_current() {
    let live = live_schema();
    assert_eq!(live["title"], "Evidence");
    let props = live["properties"].as_object().unwrap();
    for key in [
        "medgate_evidence",
        "run_id",
        "protocol",
        "criteria",
        "results_sha256",
    ] {
        assert!(props.contains_key(key), "schema lacks {key}");
    }
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("protocols/evidence.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        live, committed,
        "protocols/evidence.schema.json is stale: run `medgate schema --evidence > protocols/evidence.schema.json`"
    );
}

/// A real run (the selftest's demo project: replayed predictions with equivocal answers,
/// subgroups, passing and failing criteria) written in-process.
fn real_evidence(dir: &Path) -> PathBuf {
    let world = medgate::world::FixedWorld::default();
    let project = medgate::selftest::e2e::write_demo_project(dir, &world).unwrap();
    let opts = medgate::pipeline::RunOptions {
        out: Some(dir.join("bundle")),
        command: "test".into(),
        ..Default::default()
    };
    medgate::pipeline::run(&project.protocol, &opts, &world).unwrap();
    dir.join("bundle/evidence.json")
}

#[test]
fn a_real_evidence_record_validates_against_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let evidence = real_evidence(dir.path());
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, serde_json::to_string(&live_schema()).unwrap()).unwrap();
    let script = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    print("SKIP: python3 has no jsonschema package")
    sys.exit(0)
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
bad = 0
for path in sys.argv[2:]:
    doc = json.load(open(path))
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.path))
    bad += len(errors)
    for e in errors[:20]:
        print("INVALID", path, "/".join(map(str, e.path)), e.message)
print("OK" if not bad else "FAIL", cls.__name__, jsonschema.__name__)
"#;
    let out = match Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .arg(&evidence)
        .arg(root().join("tests/fixtures/bundles/selftest-v1/evidence.json"))
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("SKIP: python3 not available ({e})");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    if text.starts_with("SKIP") {
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("OK"),
        "evidence.json does not validate:\n{text}"
    );
}

#[test]
fn verify_refuses_an_evidence_format_it_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let evidence = real_evidence(dir.path());
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&evidence).unwrap()).unwrap();
    v["medgate_evidence"] = serde_json::json!(medgate::trace::EVIDENCE_FORMAT + 1);
    std::fs::write(&evidence, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let out = medgate()
        .arg("verify")
        .arg(dir.path().join("bundle"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{all}");
    let found = format!("evidence format {}", medgate::trace::EVIDENCE_FORMAT + 1);
    assert!(all.contains(&found), "{all}");
    assert!(all.contains("newer medgate"), "{all}");
}

/// The bundle the previous landing wrote (tests/fixtures/bundles/README.md: evidence format 1,
/// medgate 0.1.0 at `2378e7b`) is refused by name, not reported as DIFFERENT: its statistics
/// were computed with the first landing's methods (issue 17 changed the subgroup gap bounds),
/// so a recomputation here would flag honest numbers. The refusal is an input error (exit 2)
/// that names the format found, the one read, and what to do. The typed contract still reads
/// its `evidence.json` and writes every value back unchanged (keys are only added).
#[test]
fn verify_refuses_a_bundle_written_by_the_predecessor_by_name() {
    let bundle = root().join("tests/fixtures/bundles/selftest-v1");
    let out = medgate().arg("verify").arg(&bundle).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{all}");
    let supported = format!("it reads format {}", medgate::trace::EVIDENCE_FORMAT);
    for says in [
        "evidence format 1 is not one this medgate reads",
        supported.as_str(),
        "verify it with the medgate version that wrote it",
        "re-run the protocol",
    ] {
        assert!(all.contains(says), "`{says}` missing:\n{all}");
    }
    assert!(!all.contains("DIFFERENT"), "{all}");
    // The typed contract reads the old JSON and writes it back value for value.
    let raw = std::fs::read_to_string(bundle.join("evidence.json")).unwrap();
    let ev: medgate::trace::Evidence = serde_json::from_str(&raw).unwrap();
    let again: serde_json::Value = serde_json::to_value(&ev).unwrap();
    let old: serde_json::Value = serde_json::from_str(&raw).unwrap();
    // Every value the old record holds comes back unchanged; keys added since appear with
    // their defaults ("keys may be added, never renamed").
    let mut diffs = Vec::new();
    subset(&old, &again, "$", &mut diffs);
    assert!(
        diffs.is_empty(),
        "the evidence round trip changed: {diffs:?}"
    );
}

/// A bundle of the current format whose `medgate_evidence` was edited back to 1 is tampering
/// (exit 1, evidence.json named), not a format refusal: the version may be the edit.
#[test]
fn an_edited_format_version_is_tampering_not_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let evidence = real_evidence(dir.path());
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&evidence).unwrap()).unwrap();
    v["medgate_evidence"] = serde_json::json!(1);
    std::fs::write(&evidence, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let out = medgate()
        .arg("verify")
        .arg(dir.path().join("bundle"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("evidence.json"), "{all}");
}

fn subset(old: &serde_json::Value, new: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => subset(v, w, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k} dropped")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                subset(v, w, &format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{at}: {a} -> {b}")),
    }
}
