//! `medgate check` and `medgate schema`, run as a user would: the binary, real files.
//!
//! The malformed corpus lives in `tests/fixtures/protocols/`; `expected.json` names, for each
//! file, the line the first error must point at and a substring its message must contain.

use std::path::{Path, PathBuf};
use std::process::Command;

fn medgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medgate"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protocols")
}

fn check_json(path: &Path) -> (i32, serde_json::Value) {
    let out = medgate()
        .args(["check", "--format", "json"])
        .arg(path)
        .output()
        .expect("run medgate");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: stdout is not JSON ({e}): {}\nstderr: {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn example_protocols_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for p in [
        "protocols/demo-cxr.yaml",
        "protocols/openai-vllm.yaml",
        "protocols/vlm-inprocess.yaml",
        "tests/fixtures/protocols/valid.yaml",
    ] {
        let (code, v) = check_json(&root.join(p));
        assert_eq!(code, 0, "{p}: {v:#}");
        assert_eq!(v[0]["valid"], true, "{p}");
    }
}

#[test]
fn demo_protocol_warns_about_an_uncovered_requirement() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, v) = check_json(&root.join("protocols/demo-cxr.yaml"));
    assert_eq!(code, 0);
    let diags = v[0]["diagnostics"].as_array().unwrap();
    assert!(
        diags.iter().any(|d| d["severity"] == "warning"
            && d["message"]
                .as_str()
                .unwrap()
                .contains("`SRS-CXR-030` is not verified")),
        "{diags:#?}"
    );
}

#[test]
fn malformed_corpus_fails_with_exit_2_at_the_right_line() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let cases = expected.as_object().unwrap();
    assert!(
        cases.len() >= 20,
        "the corpus must hold at least 20 malformed protocols"
    );
    for (name, exp) in cases {
        let path = fixtures().join(format!("{name}.yaml"));
        let out = medgate().arg("check").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: exit code; stderr:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name} panicked:\n{stderr}");
        let (_, v) = check_json(&path);
        let diags = v[0]["diagnostics"].as_array().unwrap();
        let line = exp["line"].as_u64().unwrap();
        let msg = exp["message"].as_str().unwrap();
        let hit = diags.iter().find(|d| {
            let text = format!(
                "{} {}",
                d["message"].as_str().unwrap(),
                d["hint"].as_str().unwrap_or("")
            );
            d["severity"] == "error"
                && d["line"].as_u64() == Some(line)
                && d["column"].as_u64().is_some_and(|c| c >= 1)
                && text.contains(msg)
        });
        assert!(
            hit.is_some(),
            "{name}: no error at line {line} containing {msg:?}:\n{diags:#?}"
        );
        // The text form names file:line:column.
        let needle = format!("{}:{line}:", path.display());
        assert!(
            stderr.contains(&needle),
            "{name}: text output lacks {needle}:\n{stderr}"
        );
    }
}

#[test]
fn every_problem_in_a_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join("valid.yaml"))
        .unwrap()
        .replace(
            "  threshold: 0.5",
            "  threshhold: 0.5\n  thresold: 0.5\n  threshold: 0.5",
        )
        .replace("  - id: AC-2", "  - id: AC-1")
        .replace("    at_least: 0.5\n  - id", "    at_least: 1.5\n  - id")
        .replace(
            "../../../golden-sets",
            &format!("{}/golden-sets", env!("CARGO_MANIFEST_DIR")),
        )
        .replace(
            "preds.csv",
            &fixtures().join("preds.csv").display().to_string(),
        )
        .replace(
            "reqs.yaml",
            &fixtures().join("reqs.yaml").display().to_string(),
        )
        .replace(
            "risks.yaml",
            &fixtures().join("risks.yaml").display().to_string(),
        );
    let p = dir.path().join("multi.yaml");
    std::fs::write(&p, text).unwrap();
    let (code, v) = check_json(&p);
    assert_eq!(code, 2);
    let msgs: Vec<String> = v[0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("unknown field `threshhold`")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("unknown field `thresold`")),
        "{msgs:#?}"
    );
    // Structural errors stop semantic checks only when the document cannot be parsed at all;
    // here it can once the unknown keys are set aside, so these are reported in a second run.
    let fixed = std::fs::read_to_string(&p)
        .unwrap()
        .replace("  threshhold: 0.5\n  thresold: 0.5\n", "");
    std::fs::write(&p, fixed).unwrap();
    let (code, v) = check_json(&p);
    assert_eq!(code, 2);
    let msgs: Vec<String> = v[0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("duplicate criterion ID `AC-1`")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("goal 1.5 is outside [0, 1]")),
        "{msgs:#?}"
    );
}

#[test]
fn missing_file_and_non_utf8_are_input_errors() {
    let out = medgate()
        .args(["check", "/nonexistent/protocol.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bin.yaml");
    std::fs::write(&p, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let out = medgate().arg("check").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not UTF-8"));
}

#[test]
fn schema_is_valid_json_and_matches_the_committed_copy() {
    let out = medgate().arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let live: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let props = &live["properties"];
    for key in [
        "protocol",
        "model",
        "task",
        "golden_set",
        "acceptance",
        "statistics",
    ] {
        assert!(props.get(key).is_some(), "schema lacks {key}");
    }
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("protocols/protocol.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        live, committed,
        "protocols/protocol.schema.json is stale: run `medgate schema > protocols/protocol.schema.json`"
    );
}

#[test]
fn help_has_examples_for_every_subcommand() {
    let out = medgate().arg("--help").output().unwrap();
    let top = String::from_utf8_lossy(&out.stdout).to_string();
    let subs: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|s| s != "help")
        .collect();
    assert!(subs.len() >= 3, "{top}");
    for s in subs {
        let out = medgate().args([s.as_str(), "--help"]).output().unwrap();
        let h = String::from_utf8_lossy(&out.stdout);
        assert!(
            h.contains("Examples:"),
            "`medgate {s} --help` has no examples:\n{h}"
        );
    }
}
