//! `medgate run` and `medgate verify --rerun` end to end with the in-process VLM
//! (`protocols/vlm-inprocess.yaml`, tiny random Qwen3-VL, 1000 demo cases): the run completes,
//! every case is scored from logprobs with both results in `raw`, and an auditor's rerun
//! reproduces every score exactly.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_vlm_protocol_runs_and_reruns_identically() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let text = std::fs::read_to_string(root().join("protocols/vlm-inprocess.yaml"))
        .unwrap()
        .replace(
            "../golden-sets",
            &root().join("golden-sets").display().to_string(),
        )
        .replace("../tests", &root().join("tests").display().to_string())
        .replace(
            "requirements: trace/",
            &format!(
                "requirements: {}/",
                root().join("protocols/trace").display()
            ),
        )
        .replace(
            "risks: trace/",
            &format!("risks: {}/", root().join("protocols/trace").display()),
        )
        .replace(
            "path: ../runs/LEDGER.jsonl",
            &format!("path: {}", ledger.display()),
        )
        .replace("formats: [html, md]", "formats: [md]");
    let p = dir.path().join("vlm.yaml");
    std::fs::write(&p, text).unwrap();
    let out_dir = dir.path().join("bundle");
    let run = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .env("MEDGATE_USER", "test-user")
        .args(["run", "--out"])
        .arg(&out_dir)
        .arg(&p)
        .output()
        .unwrap();
    // A random model fails its sensitivity criterion: exit 1, not an error.
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ev: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("evidence.json")).unwrap())
            .unwrap();
    let text = ev.to_string();
    assert!(text.contains("candle-vlm"));
    assert!(text.contains("\"kv_cache\":true"), "settings recorded");
    let journal = std::fs::read_to_string(out_dir.join("journal.jsonl")).unwrap();
    let scored = journal
        .lines()
        .filter(|l| l.contains("p(pos)=") && l.contains("text="))
        .count();
    assert_eq!(
        scored, 1000,
        "every case carries both the logprob score and the greedy text"
    );
    let verify = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .args(["verify", "--rerun"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{so}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        so.contains("IDENTICAL") && so.contains("candle-vlm"),
        "{so}"
    );
}
