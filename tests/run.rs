//! `medgate run` end to end: the demo, determinism, resume after `--limit`, refusals, JUnit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn medgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medgate"));
    c.env("MEDGATE_USER", "test-user");
    c
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies a directory tree (the demo golden set is small).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let name = e.file_name();
        if name.to_string_lossy().starts_with("LEDGER") {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(&name));
        } else {
            std::fs::copy(&p, to.join(&name)).unwrap();
        }
    }
}

/// A workspace with a copy of the demo golden set, replay predictions derived from the
/// manifest (a deterministic, imperfect "model"), and a replay protocol.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let set = dir.path().join("set");
        copy_dir(&root().join("golden-sets/demo-cxr"), &set);
        let manifest = std::fs::read_to_string(set.join("manifest.csv")).unwrap();
        let mut lines = manifest.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let id_col = header.iter().position(|h| *h == "case_id").unwrap();
        let label_col = header.iter().position(|h| *h == "finding").unwrap();
        let mut preds = String::from("case_id,score\n");
        for (i, l) in lines.enumerate() {
            let f: Vec<&str> = l.split(',').collect();
            let label = f[label_col] == "1";
            // Scores overlap between classes so every metric is strictly between 0 and 1.
            let jitter = ((i * 7919) % 1000) as f64 / 1000.0;
            let score = if label {
                0.25 + 0.75 * jitter
            } else {
                0.7 * jitter
            };
            preds.push_str(&format!("{},{score:.6}\n", f[id_col]));
        }
        std::fs::write(dir.path().join("preds.csv"), preds).unwrap();
        let protocol = r#"medgate_protocol: 1
protocol: VP-REPLAY-001
title: Replay end-to-end test
version: "1.0"
intended_use: Test.
model:
  backend: replay
  predictions: preds.csv
task:
  kind: binary
  threshold: 0.5
golden_set:
  path: set
  label_column: finding
subgroups:
  attributes: [sex, site]
statistics:
  bootstrap_resamples: 500
acceptance:
  - id: AC-1
    requirement: SRS-1
    metric: sensitivity
    bound: lower
    at_least: 0.5
  - id: AC-2
    requirement: SRS-2
    metric: specificity
    scope: sex
    bound: point
    at_least: 0.5
  - id: AC-3
    requirement: SRS-3
    metric: sensitivity_gap
    scope: site
    bound: point
    at_most: 0.9
report:
  formats: [md]
"#;
        std::fs::write(dir.path().join("protocol.yaml"), protocol).unwrap();
        Workspace { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, out: &str, extra: &[&str]) -> std::process::Output {
        medgate()
            .current_dir(self.dir.path())
            .env("SOURCE_DATE_EPOCH", "1767225600")
            .args(["run", "protocol.yaml", "--out", out, "--format", "json"])
            .args(extra)
            .output()
            .unwrap()
    }
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn replay_run_writes_a_complete_bundle_and_is_deterministic() {
    let ws = Workspace::new();
    let a = ws.run("out-a", &[]);
    assert_eq!(
        a.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&a.stderr)
    );
    let ja = json(&a);
    assert_eq!(ja["verdict"], "PASS");
    assert_eq!(ja["accountability"]["enrolled"], 1000);
    for f in [
        "evidence.json",
        "cases.parquet",
        "junit.xml",
        "protocol.yaml",
        "journal.jsonl",
        "SHA256SUMS",
        "report.md",
    ] {
        assert!(ws.path("out-a").join(f).is_file(), "bundle lacks {f}");
    }
    let b = ws.run("out-b", &[]);
    let jb = json(&b);
    assert_eq!(ja["results_sha256"], jb["results_sha256"]);
    let ca = std::fs::read(ws.path("out-a/cases.parquet")).unwrap();
    let cb = std::fs::read(ws.path("out-b/cases.parquet")).unwrap();
    assert_eq!(ca, cb, "cases.parquet differs between identical runs");
    let ea = std::fs::read_to_string(ws.path("out-a/evidence.json")).unwrap();
    let eb = std::fs::read_to_string(ws.path("out-b/evidence.json")).unwrap();
    // With SOURCE_DATE_EPOCH the clock is frozen: only the bundle paths differ, and each run's
    // own entry in the golden set's ledger (the second run is entry 2, chained to the first).
    let unanchored = |t: &str| {
        let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
        let anchor = v.as_object_mut().unwrap().remove("ledger_entry");
        (v.to_string(), anchor)
    };
    let (na, la) = unanchored(&ea);
    let (nb, lb) = unanchored(&eb);
    assert_eq!(na.replace("out-a", "out-X"), nb.replace("out-b", "out-X"));
    assert_eq!(la.unwrap()["seq"], 1);
    let lb = lb.unwrap();
    assert_eq!(lb["seq"], 2);
    assert_eq!(la_hash(&ws), lb["prev_hash"]);

    fn la_hash(ws: &Workspace) -> serde_json::Value {
        let e: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(ws.path("out-a/evidence.json")).unwrap())
                .unwrap();
        e["ledger_entry"]["hash"].clone()
    }

    // The evidence numbers are the engine's: sensitivity estimate = tp / (tp + fn).
    let ev: serde_json::Value = serde_json::from_str(&ea).unwrap();
    let o = &ev["statistics"]["overall"];
    let (tp, fnn) = (o["tp"].as_f64().unwrap(), o["fn"].as_f64().unwrap());
    assert_eq!(
        o["sensitivity"]["estimate"].as_f64().unwrap(),
        tp / (tp + fnn)
    );
    assert_eq!(ev["criteria"].as_array().unwrap().len(), 3);

    // A rerun into the same directory resumes: nothing is inferred again.
    let c = ws.run("out-a", &["--resume"]);
    let jc = json(&c);
    assert_eq!(jc["inferred"], 0);
    assert_eq!(jc["resumed"], 1000);
    assert_eq!(jc["results_sha256"], ja["results_sha256"]);
}

#[test]
fn junit_parses_and_has_one_testcase_per_criterion() {
    let ws = Workspace::new();
    // Make one criterion fail: specificity at least 0.99 by sex.
    let p = ws.path("protocol.yaml");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "    bound: point\n    at_least: 0.5",
        "    bound: point\n    at_least: 0.99",
    );
    std::fs::write(&p, text).unwrap();
    let out = ws.run("out", &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = std::fs::read_to_string(ws.path("out/junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 3);
    let failed: Vec<_> = cases
        .iter()
        .filter(|c| c.children().any(|k| k.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap().to_string())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("AC-2"), "{failed:?}");
    let suites = doc.root_element();
    assert_eq!(suites.attribute("failures"), Some("1"));
}

#[test]
fn tampered_golden_set_is_refused_naming_the_file() {
    let ws = Workspace::new();
    let img_dir = ws.path("set/images");
    let mut imgs: Vec<PathBuf> = std::fs::read_dir(&img_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    imgs.sort();
    let victim = &imgs[imgs.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::write(victim, bytes).unwrap();
    let out = ws.run("out", &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = victim.file_name().unwrap().to_string_lossy();
    assert!(
        stderr.contains(name.as_ref()),
        "stderr does not name {name}:\n{stderr}"
    );
    assert!(
        !ws.path("out/evidence.json").exists(),
        "nothing may be written for a tampered set"
    );
}

#[test]
fn journal_from_another_model_is_refused() {
    let ws = Workspace::new();
    assert_eq!(ws.run("out", &[]).status.code(), Some(0));
    // Different predictions = a different model hash.
    let preds = std::fs::read_to_string(ws.path("preds.csv")).unwrap();
    std::fs::write(ws.path("preds.csv"), preds.replacen(",0.", ",0.0", 1)).unwrap();
    let out = ws.run("out", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("journal belongs to a different run"));
}

#[test]
fn release_mode_refuses_a_dirty_tree_and_an_unpinned_model() {
    let ws = Workspace::new();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .current_dir(ws.dir.path())
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    std::fs::write(ws.path(".gitignore"), "out*/\n").unwrap();
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "baseline"]);
    // Unpinned model hash.
    let out = ws.run("out", &["--release"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not pin the model"));
    // Pin it, commit, and the release run goes through.
    let (sha, _) = medgate::hash::sha256_file(&ws.path("preds.csv")).unwrap();
    let p = ws.path("protocol.yaml");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "  predictions: preds.csv",
        &format!("  predictions: preds.csv\n  sha256: {sha}"),
    );
    std::fs::write(&p, text).unwrap();
    git(&["commit", "-q", "-am", "pin model"]);
    let out = ws.run("out", &["--release"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.path("out/evidence.json")).unwrap())
            .unwrap();
    assert_eq!(ev["provenance"]["git"]["dirty"], false);
    assert_eq!(ev["provenance"]["release"], true);
    // A dirty tree is refused and the dirty file is named.
    std::fs::write(ws.path("notes.txt"), "uncommitted").unwrap();
    let out = ws.run("out2", &["--release"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dirty") && stderr.contains("notes.txt"),
        "{stderr}"
    );
    // A wrong pinned hash is refused.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(&sha, &"ab".repeat(32));
    std::fs::write(&p, text).unwrap();
    let out = ws.run("out3", &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("differs from the pinned") || stderr.contains("mismatch"),
        "{stderr}"
    );
}

#[test]
fn ledger_records_each_run_and_detects_edits() {
    let ws = Workspace::new();
    assert_eq!(ws.run("o1", &[]).status.code(), Some(0));
    assert_eq!(ws.run("o2", &[]).status.code(), Some(0));
    let out = medgate()
        .args(["ledger", "--verify", "--format", "json"])
        .arg(ws.path("set"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    assert_eq!(v["entries"][0]["user"], "test-user");
    let lp = ws.path("set/LEDGER.jsonl");
    let text = std::fs::read_to_string(&lp)
        .unwrap()
        .replacen("\"PASS\"", "\"FAIL\"", 1);
    std::fs::write(&lp, text).unwrap();
    let out = medgate()
        .args(["ledger", "--verify"])
        .arg(ws.path("set"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":1:"));
}

/// The README's first command, on the bundled demo (CLIP model over 1,000 cases), stopped
/// after 300 cases and resumed: the result equals an uninterrupted run and no case is
/// inferred twice.
#[test]
fn demo_run_stopped_after_300_cases_resumes_without_reinference() {
    let dir = tempfile::tempdir().unwrap();
    let protocol = root().join("protocols/demo-cxr.yaml");
    let ledger = dir.path().join("ledger.jsonl");
    // Keep the test's runs out of the committed set's ledger.
    let text = std::fs::read_to_string(&protocol)
        .unwrap()
        .replace(
            "../golden-sets",
            &root().join("golden-sets").display().to_string(),
        )
        .replace("../models", &root().join("models").display().to_string())
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
        .replace("formats: [pdf, html, md]", "formats: [md]");
    let p = dir.path().join("demo.yaml");
    std::fs::write(&p, text).unwrap();

    let full = medgate()
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .args(["run", "--format", "json", "--out"])
        .arg(dir.path().join("full"))
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        matches!(full.status.code(), Some(0) | Some(1)),
        "stderr: {}",
        String::from_utf8_lossy(&full.stderr)
    );
    let jfull = json(&full);
    assert_eq!(jfull["accountability"]["evaluated"], 1000);

    // Interrupt deterministically with `--limit` (no race against the clock; the SIGKILL
    // case, against a slow server, is tests/harness.rs).
    let out = dir.path().join("killed");
    let cut = medgate()
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .args(["run", "--limit", "300", "--format", "json", "--out"])
        .arg(&out)
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(json(&cut)["inferred"], 300);
    let journal = out.join("journal.jsonl");
    let before = std::fs::read_to_string(&journal).unwrap().lines().count() - 1;
    assert_eq!(before, 300);

    let resumed = medgate()
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .args(["run", "--resume", "--format", "json", "--out"])
        .arg(&out)
        .arg(&p)
        .output()
        .unwrap();
    let jr = json(&resumed);
    assert_eq!(jr["results_sha256"], jfull["results_sha256"]);
    let inferred = jr["inferred"].as_u64().unwrap() as usize;
    assert_eq!(jr["resumed"].as_u64().unwrap() as usize, before);
    assert_eq!(
        inferred + before,
        1000,
        "a case was inferred twice or not at all"
    );
    // Every journal key appears exactly once.
    let text = std::fs::read_to_string(&journal).unwrap();
    let mut keys: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "duplicate journal entries");
    assert_eq!(n, 1000);
    // Full-precision CLIP scores read back from the journal exactly: the resumed bundle
    // verifies, journal included.
    let v = medgate().arg("verify").arg(&out).output().unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

#[test]
fn reusing_a_golden_set_for_more_model_versions_than_allowed_warns() {
    let ws = Workspace::new();
    let p = ws.path("protocol.yaml");
    let text = std::fs::read_to_string(&p).unwrap() + "ledger:\n  max_model_versions: 1\n";
    std::fs::write(&p, text).unwrap();
    let first = json(&ws.run("o1", &[]));
    assert!(
        !first["warnings"].to_string().contains("test-set reuse"),
        "{first:#}"
    );
    // A second model version (different predictions, so a different model hash).
    let preds = std::fs::read_to_string(ws.path("preds.csv")).unwrap();
    std::fs::write(ws.path("preds.csv"), preds.replacen(",0.", ",0.0", 1)).unwrap();
    let second = json(&ws.run("o2", &[]));
    let w = second["warnings"].to_string();
    assert!(w.contains("test-set reuse: 2 model versions"), "{second:#}");
}
