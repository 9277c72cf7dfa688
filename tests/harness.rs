//! The streaming harness end to end: a `medgate run` against a slow OpenAI-compatible server
//! (an in-process `medgate serve` whose scorer takes 25 ms and counts what it answered) is
//! killed with SIGKILL mid-run; the journal must hold every answered case except at most the
//! ones in flight. Then `--resume` finishes the run without asking again, `--events` writes
//! the documented JSON lines, and `--resume` without a journal is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use medgate::serve::{Scorer, ServeConfig, Server};

/// Requests in flight at once (the protocol's `concurrency`, one server).
const CONCURRENCY: usize = 4;
/// Cases in the set.
const CASES: usize = 240;

fn medgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medgate"));
    c.env("MEDGATE_USER", "test-user")
        .env("SOURCE_DATE_EPOCH", "1767225600");
    c
}

/// The mean grey level, after a delay, counting every answer it produced.
struct SlowCounting {
    delay: Duration,
    answered: Arc<AtomicUsize>,
}

impl Scorer for SlowCounting {
    fn score_encoded(&self, images: &[&[u8]]) -> medgate::Result<Vec<f64>> {
        std::thread::sleep(self.delay);
        let out = images
            .iter()
            .map(|b| {
                let img = image::load_from_memory(b).unwrap().to_luma8();
                let n = img.as_raw().len().max(1) as f64;
                img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / (n * 255.0)
            })
            .collect();
        self.answered.fetch_add(images.len(), Ordering::SeqCst);
        Ok(out)
    }
}

fn project(dir: &Path, base_url: &str) -> PathBuf {
    let set = dir.join("set");
    let st = medgate()
        .args(["demo-data"])
        .arg(&set)
        .args([
            "--cases",
            &CASES.to_string(),
            "--seed",
            "5",
            "--dicom-every",
            "0",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let st = medgate()
        .arg("lock")
        .arg(&set)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let protocol = format!(
        r#"medgate_protocol: 1
protocol: VP-STREAM-001
title: Streaming harness test
version: "1.0"
intended_use: Test.
model:
  backend: openai
  base_urls: ["{base_url}"]
  model: slow
  concurrency: {CONCURRENCY}
  timeout_s: 30
  retries: 0
task:
  kind: binary
  question: Is there a finding? Answer yes or no.
  threshold: 0.5
golden_set:
  path: set
  label_column: finding
statistics:
  bootstrap_resamples: 200
acceptance:
  - id: AC-1
    requirement: SRS-1
    metric: sensitivity
    bound: point
    at_least: 0.0
report:
  formats: [md]
ledger:
  path: ledger.jsonl
"#
    );
    let p = dir.join("protocol.yaml");
    std::fs::write(&p, protocol).unwrap();
    p
}

fn journal_entries(out: &Path) -> usize {
    std::fs::read_to_string(out.join("journal.jsonl"))
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

#[test]
fn kill_9_loses_at_most_the_cases_in_flight_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let server = Server::bind(
        ServeConfig {
            port: 0,
            threads: CONCURRENCY,
            model_id: "slow".into(),
            ..Default::default()
        },
        Arc::new(SlowCounting {
            delay: Duration::from_millis(25),
            answered: answered.clone(),
        }),
    )
    .unwrap()
    .spawn();
    let protocol = project(dir.path(), &server.base_url());
    let out = dir.path().join("out");
    let mut child = medgate()
        .args(["run", "--format", "json", "--out"])
        .arg(&out)
        .arg(&protocol)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it answer a few dozen cases (far fewer than one old-style batch of
    // concurrency x 32 = 128), then kill it without warning.
    let t0 = Instant::now();
    while answered.load(Ordering::SeqCst) < 40 && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let at_kill = answered.load(Ordering::SeqCst);
    // Requests already being scored finish on the server side after the client died.
    std::thread::sleep(Duration::from_millis(200));
    let answered_total = answered.load(Ordering::SeqCst);
    let kept = journal_entries(&out);
    eprintln!(
        "kill -9: server answered {at_kill} at the kill ({answered_total} in all), journal kept {kept}"
    );
    assert!((40..CASES).contains(&at_kill), "{at_kill}");
    assert!(kept <= answered_total, "journal has cases nobody answered");
    assert!(
        kept + CONCURRENCY >= at_kill,
        "lost more than the {CONCURRENCY} cases in flight: answered {at_kill}, journaled {kept}"
    );

    // Resume: every journaled case is reused, the rest are asked once.
    let before = answered.load(Ordering::SeqCst);
    let events = dir.path().join("events.jsonl");
    // A live clock for this run, so that latencies are measured (a frozen world records 0).
    let r = medgate()
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["run", "--resume", "--format", "json", "--out"])
        .arg(&out)
        .arg("--events")
        .arg(&events)
        .arg(&protocol)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&r.stderr));
    });
    assert_eq!(v["resumed"].as_u64().unwrap() as usize, kept);
    assert_eq!(v["inferred"].as_u64().unwrap() as usize, CASES - kept);
    assert_eq!(answered.load(Ordering::SeqCst) - before, CASES - kept);
    assert_eq!(journal_entries(&out), CASES);

    // The events file: one stage_started, one case_done per inferred case, one stage_finished.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"stage_started"));
    assert_eq!(kinds.last(), Some(&"stage_finished"));
    assert_eq!(lines[0]["cases"].as_u64().unwrap() as usize, CASES - kept);
    let done: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["event"] == "case_done").collect();
    assert_eq!(done.len(), CASES - kept);
    // Latency is measured per case: the server's 25 ms delay is a floor for each one.
    assert!(
        done.iter()
            .all(|d| d["latency_ms"].as_f64().unwrap() >= 25.0)
    );
    server.stop().unwrap();
}

#[test]
fn limit_then_resume_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let server = Server::bind(
        ServeConfig {
            port: 0,
            threads: CONCURRENCY,
            model_id: "slow".into(),
            ..Default::default()
        },
        Arc::new(SlowCounting {
            delay: Duration::from_millis(0),
            answered: answered.clone(),
        }),
    )
    .unwrap()
    .spawn();
    let protocol = project(dir.path(), &server.base_url());
    let run = |out: &str, extra: &[&str]| {
        let o = medgate()
            .args(["run", "--format", "json", "--out"])
            .arg(dir.path().join(out))
            .args(extra)
            .arg(&protocol)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        (o.status.code(), v)
    };
    let (_, full) = run("full", &[]);
    // `--resume` with nothing to resume is refused before anything runs.
    let (code, _) = {
        let o = medgate()
            .args(["run", "--resume", "--out"])
            .arg(dir.path().join("nothing"))
            .arg(&protocol)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("nothing to resume"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), ())
    };
    assert_eq!(code, Some(2));
    let (_, part) = run("cut", &["--limit", "100"]);
    assert_eq!(part["inferred"], 100);
    assert_eq!(journal_entries(&dir.path().join("cut")), 100);
    let (_, resumed) = run("cut", &["--resume"]);
    assert_eq!(resumed["resumed"], 100);
    assert_eq!(resumed["inferred"].as_u64().unwrap() as usize, CASES - 100);
    assert_eq!(resumed["results_sha256"], full["results_sha256"]);
    server.stop().unwrap();
}
