//! `medgate monitor` end to end: a replay release bundle as the baseline, synthetic production
//! logs written here (in control, drifted, malformed), incremental runs with a state file, the
//! ledger, and the demo stream from the demo model.

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

/// Deterministic uniform numbers in [0, 1) (SplitMix64), so the logs are the same everywhere.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Baseline: 600 replay cases (30% positive, scores uniform on class-dependent ranges), sex and
/// site attributes; protocol with a monitoring plan.
struct Ws {
    dir: tempfile::TempDir,
    model: String,
}

fn score(rng: &mut Rng, label: bool, shift: f64) -> f64 {
    let u = rng.next();
    let s = if label { 0.3 + 0.7 * u } else { 0.65 * u };
    (s + shift).clamp(0.0, 1.0)
}

const PLAN: &str = r#"
monitoring:
  window:
    cases: 200
  min_window_cases: 50
  statistics:
    - id: MON-PSI
      statistic: psi
      alarm_above: 0.25
      requirement: SRS-1
      risk_control: RC-1
    - id: MON-KS
      statistic: ks
      alarm_below: 0.0001
      requirement: SRS-1
    - id: MON-W1
      statistic: wasserstein
      requirement: SRS-1
    - id: MON-POS
      statistic: positive_rate
      alarm_above: 0.6
      requirement: SRS-2
    - id: MON-MIX
      statistic: attribute_mix
      attribute: site
      alarm_below: 0.0001
      requirement: SRS-3
      risk_control: RC-3
    - id: MON-SENS
      statistic: sensitivity
      by: sex
      alarm_below: 0.5
      requirement: SRS-1
    - id: MON-CUSUM
      statistic: cusum
      of: mean_score
      k: 1.0
      arl0: 370
      requirement: SRS-1
      risk_control: RC-1
    - id: MON-EWMA
      statistic: ewma
      of: positive_rate
      lambda: 0.2
      limit: 3.5
      requirement: SRS-2
"#;

impl Ws {
    fn new() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let set = dir.path().join("set");
        std::fs::create_dir_all(set.join("img")).unwrap();
        let mut manifest = String::from("case_id,image,finding,sex,site\n");
        let mut preds = String::from("case_id,score\n");
        let mut rng = Rng(7);
        // one tiny PNG shared by content is fine for a replay run: write distinct files
        for i in 0..600 {
            let label = i % 10 < 3;
            let sex = if i % 2 == 0 { "F" } else { "M" };
            let site = ["A", "B", "C"][i % 3];
            let img = format!("img/c{i:04}.png");
            let mut im = image::GrayImage::new(2, 2);
            im.put_pixel(0, 0, image::Luma([(i % 256) as u8]));
            im.put_pixel(1, 0, image::Luma([(i / 256) as u8]));
            im.save(set.join(&img)).unwrap();
            manifest.push_str(&format!("c{i:04},{img},{},{sex},{site}\n", u8::from(label)));
            preds.push_str(&format!("c{i:04},{:.6}\n", score(&mut rng, label, 0.0)));
        }
        std::fs::write(set.join("manifest.csv"), manifest).unwrap();
        let model = medgate::hash::sha256_hex(preds.as_bytes());
        let model_ref = &model;
        std::fs::write(dir.path().join("preds.csv"), preds).unwrap();
        let out = medgate()
            .args(["lock", "set", "--note", "test"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let protocol = format!(
            r#"medgate_protocol: 1
protocol: VP-MON-001
title: Monitoring end-to-end test
version: "1.0"
intended_use: Test.
model:
  backend: replay
  predictions: preds.csv
  sha256: "{model_ref}"
task:
  kind: binary
  threshold: 0.5
golden_set:
  path: set
  label_column: finding
subgroups:
  attributes: [sex, site]
statistics:
  bootstrap_resamples: 200
acceptance:
  - id: AC-1
    requirement: SRS-1
    metric: sensitivity
    bound: point
    at_least: 0.5
report:
  formats: [md]
ledger:
  path: ledger.jsonl
"#
        );
        std::fs::write(dir.path().join("release.yaml"), &protocol).unwrap();
        std::fs::write(dir.path().join("monitor.yaml"), format!("{protocol}{PLAN}")).unwrap();
        let out = medgate()
            .current_dir(dir.path())
            .env("SOURCE_DATE_EPOCH", "1767225600")
            .args(["run", "release.yaml", "--out", "bundle", "--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(1),
            "run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ws { dir, model }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A log of `n` rows: the baseline's distribution, scores shifted by `shift` from row
    /// `onset` on. Row `i` is at 2026-03-02T00:00Z + i minutes (epoch seconds).
    fn log(&self, name: &str, n: usize, onset: usize, shift: f64, seed: u64) -> PathBuf {
        let mut rng = Rng(seed);
        let model = &self.model;
        let mut t = String::from("timestamp,case_id,score,label,model_sha256,sex,site\n");
        for i in 0..n {
            let label = rng.next() < 0.3;
            let s = score(&mut rng, label, if i >= onset { shift } else { 0.0 });
            let sex = if rng.next() < 0.5 { "F" } else { "M" };
            let site = ["A", "B", "C"][(rng.next() * 3.0) as usize % 3];
            let lab = if i % 4 == 3 {
                ""
            } else if label {
                "1"
            } else {
                "0"
            };
            t.push_str(&format!(
                "{},L{i:06},{s:.6},{lab},{model},{sex},{site}\n",
                1_772_409_600 + 60 * i as i64
            ));
        }
        let p = self.path(name);
        std::fs::write(&p, t).unwrap();
        p
    }

    fn monitor(&self, out: &str, logs: &[&Path], extra: &[&str]) -> std::process::Output {
        self.monitor_with("monitor.yaml", out, logs, extra)
    }

    /// Writes `name`: the released protocol with the monitoring section `plan` added.
    fn monitor_protocol(&self, name: &str, plan: &str) {
        let release = std::fs::read_to_string(self.path("release.yaml")).unwrap();
        std::fs::write(self.path(name), format!("{release}{plan}")).unwrap();
    }

    fn monitor_with(
        &self,
        protocol: &str,
        out: &str,
        logs: &[&Path],
        extra: &[&str],
    ) -> std::process::Output {
        let mut c = medgate();
        c.current_dir(self.dir.path())
            .args([
                "monitor",
                protocol,
                "--baseline",
                "bundle",
                "--out",
                out,
                "--no-pdf",
            ])
            .arg("--log")
            .args(logs)
            .args(extra);
        c.output().unwrap()
    }

    fn report(&self, out: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.path(out).join("monitor.json")).unwrap())
            .unwrap()
    }
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn in_control_log_passes_and_drift_alarms_with_trace() {
    let ws = Ws::new();
    let calm = ws.log("calm.csv", 2000, usize::MAX, 0.0, 11);
    let o = ws.monitor("m-calm", &[&calm], &[]);
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let r = ws.report("m-calm");
    assert_eq!(r["status"], "in_control");
    assert_eq!(r["windows"].as_array().unwrap().len(), 10);
    assert!(r["alarms"].as_array().unwrap().is_empty());
    // JUnit: one test case per statistic and scope, none failing.
    let junit = std::fs::read_to_string(ws.path("m-calm/junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert!(cases.len() >= 9, "{} test cases", cases.len());
    assert!(!doc.descendants().any(|n| n.has_tag_name("failure")));

    // Scores shift up by 0.2 from row 1000 (window 6).
    let drift = ws.log("drift.csv", 2000, 1000, 0.2, 11);
    let o = ws.monitor("m-drift", &[&drift], &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let r = ws.report("m-drift");
    assert_eq!(r["status"], "alarm");
    let alarms = r["alarms"].as_array().unwrap();
    // Nothing before the onset window; the CUSUM fires in the onset window (within 200 cases).
    assert!(
        alarms.iter().all(|a| a["window"].as_u64().unwrap() >= 6),
        "{alarms:?}"
    );
    let cusum = alarms
        .iter()
        .find(|a| a["id"] == "MON-CUSUM")
        .expect("CUSUM alarm");
    assert_eq!(cusum["window"], 6);
    assert_eq!(cusum["requirement"], "SRS-1");
    assert_eq!(cusum["risk_control"], "RC-1");
    assert!(alarms.iter().any(|a| a["id"] == "MON-PSI"));
    // The CUSUM design is AIM-CU's h for (k = 1, ARL0 = 370): spc xcusum.crit -> 2.6645 (rounded).
    let chart = r["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "MON-CUSUM")
        .unwrap();
    let h = chart["design"]["h"].as_f64().unwrap();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/monitor/cusum.json")).unwrap(),
    )
    .unwrap();
    let want = fixture["crit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["k"] == 1.0 && c["arl0"] == 370.0)
        .unwrap()["h_aimcu"]
        .as_f64()
        .unwrap();
    assert_eq!(h, want);
    let junit = std::fs::read_to_string(ws.path("m-drift/junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    assert!(doc.descendants().any(|n| n.has_tag_name("failure")));
    let html = std::fs::read_to_string(ws.path("m-drift/monitor.html")).unwrap();
    assert!(html.contains("MON-CUSUM") && html.contains("SRS-1") && html.contains("<svg"));
}

#[test]
fn bad_rows_are_excluded_and_counted_never_dropped_silently() {
    let ws = Ws::new();
    let mut t = String::from("timestamp,case_id,score,label,model_sha256,sex,site,extra\n");
    let model = ws.model.clone();
    let other = "bbbb000000000000000000000000000000000000000000000000000000000002";
    for i in 0..300 {
        let ts = 1_772_409_600 + 60 * i as i64;
        let (ts, model, label, score) = match i {
            10 => (ts.to_string(), model.as_str(), "0", "0.2"),
            20..=24 => (ts.to_string(), other, "1", "0.9"), // another model: excluded
            30 => ("yesterday".to_string(), model.as_str(), "0", "0.1"), // bad timestamp
            40 => (ts.to_string(), model.as_str(), "2", "0.3"), // label not 0/1: kept
            50 => (ts.to_string(), model.as_str(), "1", "abc"), // bad score
            60 => ((ts - 600).to_string(), model.as_str(), "0", "0.2"), // out of order
            _ => (ts.to_string(), model.as_str(), "0", "0.3"),
        };
        let id = if i == 70 {
            "L000069".to_string()
        } else {
            format!("L{i:06}")
        }; // duplicate
        t.push_str(&format!("{ts},{id},{score},{label},{model},F,Z,x\n"));
    }
    std::fs::write(ws.path("bad.csv"), t).unwrap();
    let o = ws.monitor("m-bad", &[&ws.path("bad.csv")], &["--flush"]);
    assert!(code(&o) == 0 || code(&o) == 1, "{}", stderr(&o));
    let r = ws.report("m-bad");
    let inp = &r["input"];
    assert_eq!(inp["rows_read"], 300);
    assert_eq!(inp["excluded"]["other_model"], 5);
    assert_eq!(inp["excluded"]["bad_timestamp"], 1);
    assert_eq!(inp["excluded"]["bad_score"], 1);
    assert_eq!(inp["excluded"]["duplicate_case_id"], 1);
    assert_eq!(inp["set_aside"]["bad_label"], 1);
    assert_eq!(inp["rows_accepted"], 300 - 8);
    assert!(inp["unsorted_rows"].as_u64().unwrap() >= 1);
    assert_eq!(inp["ignored_columns"][0], "extra");
    let problems = inp["problems"].as_array().unwrap();
    let p = problems
        .iter()
        .find(|p| p["reason"] == "bad_timestamp")
        .unwrap();
    assert_eq!(p["row"], 31);
    assert_eq!(p["case_id"], "L000030");
    // Every accepted row is in a window (flushed).
    let in_windows: u64 = r["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["window"]["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(in_windows, 292);
    // An unknown site level is kept and reported as new by the mix statistic.
    let mix = r["windows"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "MON-MIX")
        .unwrap();
    assert_eq!(mix["detail"]["new_levels"][0], "Z");

    // A log without the model column is an input error.
    std::fs::write(
        ws.path("nomodel.csv"),
        "timestamp,case_id,score\n1772409600,a,0.5\n",
    )
    .unwrap();
    let o = ws.monitor("m-x", &[&ws.path("nomodel.csv")], &[]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("model_sha256"), "{}", stderr(&o));
}

#[test]
fn tampered_baseline_or_other_protocol_is_refused() {
    let ws = Ws::new();
    let calm = ws.log("calm.csv", 400, usize::MAX, 0.0, 3);
    // Another protocol (threshold changed) is not the released one.
    let text = std::fs::read_to_string(ws.path("monitor.yaml"))
        .unwrap()
        .replace("threshold: 0.5", "threshold: 0.4");
    std::fs::write(ws.path("other.yaml"), text).unwrap();
    let o = medgate()
        .current_dir(ws.dir.path())
        .args([
            "monitor",
            "other.yaml",
            "--baseline",
            "bundle",
            "--no-pdf",
            "--log",
        ])
        .arg(&calm)
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("released under"), "{}", stderr(&o));
    // A bundle whose evidence was edited does not verify.
    let ev = ws.path("bundle/evidence.json");
    let text = std::fs::read_to_string(&ev)
        .unwrap()
        .replacen("\"threshold\"", "\"threshold\" ", 1);
    std::fs::write(&ev, text).unwrap();
    let o = ws.monitor("m-t", &[&calm], &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
}

#[test]
fn incremental_runs_equal_one_run_and_reruns_change_nothing() {
    let ws = Ws::new();
    let all = ws.log("all.csv", 1500, 900, 0.2, 5);
    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Day 1: rows 0..700 (window 4 is open at the end), day 2: the rest.
    let day1 = format!("{}\n{}\n", lines[0], lines[1..701].join("\n"));
    let day2 = format!("{}\n{}\n", lines[0], lines[701..].join("\n"));
    std::fs::write(ws.path("day1.csv"), day1).unwrap();
    std::fs::write(ws.path("day2.csv"), day2).unwrap();
    let o = ws.monitor("m-one", &[&ws.path("day1.csv"), &ws.path("day2.csv")], &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let one = ws.report("m-one");

    let o = ws.monitor("m-inc", &[&ws.path("day1.csv")], &["--state", "state.json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let first = ws.report("m-inc");
    assert_eq!(first["windows"].as_array().unwrap().len(), 3);
    assert_eq!(first["pending"]["rows"], 100);
    let o = ws.monitor(
        "m-inc",
        &[&ws.path("day1.csv"), &ws.path("day2.csv")],
        &["--state", "state.json"],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let inc = ws.report("m-inc");
    for key in ["windows", "charts", "alarms", "pending", "status"] {
        assert_eq!(
            inc[key], one[key],
            "{key} differs between incremental and single run"
        );
    }
    // CUSUM carried over: its path is continuous across the two runs.
    let bytes = std::fs::read(ws.path("m-inc/monitor.json")).unwrap();
    let o = ws.monitor(
        "m-inc",
        &[&ws.path("day1.csv"), &ws.path("day2.csv")],
        &["--state", "state.json"],
    );
    assert_eq!(code(&o), 1);
    assert_eq!(
        std::fs::read(ws.path("m-inc/monitor.json")).unwrap(),
        bytes,
        "rerun changed monitor.json"
    );

    // The ledger beside the bundle has one chained entry per run (one run used the default).
    let ledger = std::fs::read_to_string(ws.path("bundle.monitoring.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = ledger
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 4);
    for w in entries.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["hash"]);
    }
    assert_eq!(entries[3]["rows_read"], 0);
    // An edited ledger entry stops the next run.
    let edited = ledger.replacen("\"in_control\"", "\"alarm\"", 1);
    std::fs::write(ws.path("bundle.monitoring.jsonl"), edited).unwrap();
    let o = ws.monitor("m-inc", &[&ws.path("day2.csv")], &["--state", "state.json"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ledger chain is broken"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn fresh_runs_are_byte_identical_and_jsonl_matches_csv() {
    let ws = Ws::new();
    let log = ws.log("l.csv", 800, 400, 0.15, 9);
    ws.monitor("a", &[&log], &[]);
    ws.monitor("b", &[&log], &[]);
    assert_eq!(
        std::fs::read(ws.path("a/monitor.json")).unwrap(),
        std::fs::read(ws.path("b/monitor.json")).unwrap()
    );
    // The same rows as JSON lines give the same windows.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut jl = String::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let mut m = serde_json::Map::new();
        for (h, v) in header.iter().zip(&f) {
            let val = match *h {
                "score" => serde_json::json!(v.parse::<f64>().unwrap()),
                "label" if v.is_empty() => serde_json::Value::Null,
                "label" => serde_json::json!(v.parse::<u8>().unwrap()),
                _ => serde_json::json!(v),
            };
            m.insert(h.to_string(), val);
        }
        jl.push_str(&serde_json::to_string(&m).unwrap());
        jl.push('\n');
    }
    std::fs::write(ws.path("l.jsonl"), jl).unwrap();
    ws.monitor("c", &[&ws.path("l.jsonl")], &[]);
    assert_eq!(ws.report("a")["windows"], ws.report("c")["windows"]);
}

/// The demo: the demo model's release bundle on the demo golden set, and two production logs
/// from `demo-data --stream` (fresh phantoms scored by the same model). Stated operating
/// characteristics of `protocols/demo-monitor.yaml` on them:
/// - with the NovaRay drift from case 1600 (the first case of window 9), the first alarm
///   (CUSUM of the mean score among them) fires in window 9, i.e. within 200 cases of onset;
/// - without drift, no statistic alarms over 3000 cases (15 windows).
#[test]
fn demo_stream_alarm_fires_within_200_cases_and_not_without_drift() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("protocols/demo-monitor.yaml"))
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
            &format!("path: {}", dir.path().join("ledger.jsonl").display()),
        )
        .replace("formats: [pdf, html, md]", "formats: [md]");
    let p = dir.path().join("demo-monitor.yaml");
    std::fs::write(&p, text).unwrap();
    let run = medgate()
        .current_dir(dir.path())
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .args([
            "run",
            "demo-monitor.yaml",
            "--out",
            "bundle",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let stream = |name: &str, drift: Option<&str>| {
        let mut c = medgate();
        c.current_dir(dir.path()).args([
            "demo-data",
            "--stream",
            name,
            "--cases",
            "3000",
            "--protocol",
            "demo-monitor.yaml",
        ]);
        if let Some(d) = drift {
            c.args(["--drift-from", d]);
        }
        let o = c.output().unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    };
    stream("drift.csv", Some("1600"));
    stream("calm.csv", None);
    let monitor = |log: &str, out: &str| {
        medgate()
            .current_dir(dir.path())
            .args([
                "monitor",
                "demo-monitor.yaml",
                "--baseline",
                "bundle",
                "--no-pdf",
                "--out",
                out,
                "--log",
                log,
            ])
            .output()
            .unwrap()
    };
    let o = monitor("calm.csv", "m-calm");
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("m-calm/monitor.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(r["windows"].as_array().unwrap().len(), 15);
    assert!(r["alarms"].as_array().unwrap().is_empty());
    assert!(r["baseline"]["plan_in_release"].as_bool().unwrap());

    let o = monitor("drift.csv", "m-drift");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("m-drift/monitor.json")).unwrap(),
    )
    .unwrap();
    let alarms = r["alarms"].as_array().unwrap();
    let first = alarms
        .iter()
        .map(|a| a["window"].as_u64().unwrap())
        .min()
        .unwrap();
    assert_eq!(first, 9, "first alarm in window {first}");
    let cusum = alarms.iter().find(|a| a["id"] == "MON-CXR-08").unwrap();
    assert_eq!(cusum["window"], 9);
    assert_eq!(cusum["risk_control"], "RC-CXR-02");
    // The new manufacturer is named by the attribute-mix statistic.
    let w9 = &r["windows"][8]["values"];
    let mix = w9
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "MON-CXR-05")
        .unwrap();
    assert_eq!(mix["detail"]["new_levels"][0], "NovaRay");
}

/// The `<path>` elements of an SVG with stroke `color`: their vertices `(x, y)` in pixels.
fn svg_paths(svg: &str, color: &str) -> Vec<Vec<(f64, f64)>> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("path") && n.attribute("stroke") == Some(color))
        .map(|n| {
            let toks: Vec<&str> = n.attribute("d").unwrap().split_whitespace().collect();
            toks.chunks(2)
                .map(|c| {
                    let x = c[0].trim_start_matches(['M', 'L']).parse::<f64>().unwrap();
                    (x, c[1].parse::<f64>().unwrap())
                })
                .collect()
        })
        .collect()
}

/// The monitor's CUSUM is AIM-CU's, end to end. For every run of the AIM-CU 0.2.1 fixture
/// (`tests/fixtures/monitor/cusum.json`, from `generate.py`: AIM-CU `CUSUM()`,
/// `set_init_stats(init_days)`, `change_detection(k, get_threshold(k, ARL0))`), a log of one
/// case per window whose scores are the fixture's observations, charted as `mean_score` with
/// `in_control: {windows: init_days}`, so the chart's input is exactly AIM-CU's series. Then
/// monitor.json's k, h, in-control mean and sd, H, the S+/S- path, the alarm windows and the
/// first alarm's window and time must be AIM-CU's, and the chart's SVG must draw that path
/// against that H. Every expected value comes from the fixture, none from medgate.
#[test]
fn cusum_chart_is_aimcu_end_to_end() {
    let ws = Ws::new();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/monitor/cusum.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(fixture["versions"]["aim-cu"], "0.2.1");
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let fs = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let runs = fixture["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        let name = run["name"].as_str().unwrap();
        let x = fs(&run["x"]);
        let (s_hi, s_lo) = (fs(&run["s_hi"]), fs(&run["s_lo"]));
        let (k, arl0, h, big_h) = (f(&run["k"]), f(&run["arl0"]), f(&run["h"]), f(&run["H"]));
        let init = run["init_days"].as_u64().unwrap();
        let alarm_index = run["alarm_index"].as_u64().map(|a| a as usize);
        ws.monitor_protocol(
            &format!("{name}.yaml"),
            &format!(
                r#"
monitoring:
  window:
    cases: 1
  min_window_cases: 1
  statistics:
    - id: MON-AIMCU
      statistic: cusum
      of: mean_score
      k: {k}
      arl0: {arl0}
      in_control:
        windows: {init}
      requirement: SRS-9
      risk_control: RC-9
"#
            ),
        );
        // Row i at 2026-03-02T00:00:00Z + i minutes, written as RFC 3339.
        let stamp = |i: usize| format!("2026-03-02T{:02}:{:02}:00Z", i / 60, i % 60);
        let mut t = String::from("timestamp,case_id,score,label,model_sha256,sex,site\n");
        for (i, v) in x.iter().enumerate() {
            t.push_str(&format!("{},A{i:04},{v},,{},F,A\n", stamp(i), ws.model));
        }
        let log = ws.path(&format!("{name}.csv"));
        std::fs::write(&log, t).unwrap();
        let out = format!("m-{name}");
        let o = ws.monitor_with(&format!("{name}.yaml"), &out, &[&log], &[]);
        assert_eq!(
            code(&o),
            if alarm_index.is_some() { 1 } else { 0 },
            "{name}: {}",
            stderr(&o)
        );
        let r = ws.report(&out);
        let chart = r["charts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "MON-AIMCU" && c["scope"] == "overall")
            .unwrap_or_else(|| panic!("{name}: no chart"));
        let d = &chart["design"];
        assert_eq!(f(&d["k"]), k, "{name}: k");
        assert_eq!(f(&d["h"]), h, "{name}: h (AIM-CU get_threshold)");
        let close = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{name}: {what} {a} vs AIM-CU {b}"
            )
        };
        close(f(&d["mu0"]), f(&run["in_mu"]), "in-control mean");
        close(f(&d["sigma"]), f(&run["in_std"]), "in-control sd");
        let pts = chart["points"].as_array().unwrap();
        assert_eq!(pts.len(), x.len(), "{name}: one point per window");
        for (t, p) in pts.iter().enumerate() {
            assert_eq!(p["window"], t as u64 + 1);
            assert_eq!(f(&p["raw"]), x[t], "{name}: window {} value", t + 1);
            assert_eq!(f(&p["upper_stat"]), s_hi[t], "{name}: S_hi[{t}]");
            assert_eq!(f(&p["lower_stat"]), s_lo[t], "{name}: S_lo[{t}]");
            close(f(&p["limit"]), big_h, "H");
            // Every point past H alarms (AIM-CU reports S- when both cross).
            let want = if s_lo[t] > big_h {
                Some("lower")
            } else if s_hi[t] > big_h {
                Some("upper")
            } else {
                None
            };
            assert_eq!(p["alarm"].as_str(), want, "{name}: alarm at index {t}");
        }
        match alarm_index {
            Some(a) => {
                let side = if s_lo[a] > big_h { "lower" } else { "upper" };
                assert_eq!(
                    chart["first_alarm"],
                    serde_json::json!([a as u64 + 1, side]),
                    "{name}: first alarm"
                );
                let first = r["alarms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|al| al["id"] == "MON-AIMCU")
                    .unwrap();
                assert_eq!(first["window"], a as u64 + 1, "{name}: alarm window");
                assert_eq!(first["window_first"], stamp(a), "{name}: alarm time");
                assert_eq!(first["requirement"], "SRS-9");
                assert_eq!(first["risk_control"], "RC-9");
                assert_eq!(r["status"], "alarm");
            }
            None => {
                assert!(chart["first_alarm"].is_null(), "{name}");
                assert!(r["alarms"].as_array().unwrap().is_empty(), "{name}");
                assert_eq!(r["status"], "in_control");
            }
        }
        // The plotted chart draws this path against this H: one vertex per window, each on
        // the side of the H line that AIM-CU's value is on.
        let svg = std::fs::read_to_string(ws.path(&out).join("plots/chart-MON-AIMCU-overall.svg"))
            .unwrap();
        let hline = &svg_paths(&svg, "#7a7a7a")[0];
        assert_eq!(hline.len(), x.len());
        let hy = hline[0].1;
        assert!(hline.iter().all(|p| p.1 == hy), "{name}: H is one level");
        let top = s_hi.iter().chain(&s_lo).cloned().fold(big_h, f64::max);
        for (color, want) in [("#1f57a0", &s_hi), ("#c85a14", &s_lo)] {
            let line = &svg_paths(&svg, color)[0];
            assert_eq!(line.len(), x.len(), "{name}: {color} vertices");
            for (t, (px, py)) in line.iter().enumerate() {
                assert_eq!(*px, hline[t].0);
                if (want[t] - big_h).abs() > 1e-3 * top {
                    assert_eq!(*py < hy, want[t] > big_h, "{name}: {color} vertex {t}");
                }
            }
        }
        let marks = roxmltree::Document::parse(&svg)
            .unwrap()
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count();
        let crossings = (0..x.len())
            .filter(|&t| s_hi[t] > big_h || s_lo[t] > big_h)
            .count();
        assert_eq!(marks, crossings, "{name}: alarm markers");
    }
}

/// The monitoring ledger is a record kind on trace's hash chain: `medgate ledger` verifies it
/// (from the bundle directory or the file), names an edited or a deleted record, a run on a
/// broken chain is refused before it writes anything, the monitor never appends into a
/// golden-set ledger, and ledger files written before the move (tests/fixtures/ledger, their
/// chains checked by Python's hashlib in `check_chain.py`) still verify.
#[test]
fn monitoring_ledger_is_on_the_trace_chain() {
    let ledger_cmd = |args: &[&str], dir: &Path| {
        medgate()
            .current_dir(dir)
            .arg("ledger")
            .args(args)
            .output()
            .unwrap()
    };
    let stdout = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).to_string();

    // Files in the earlier format, hashes as Python computed them.
    let fx = root().join("tests/fixtures/ledger");
    for (file, kind_key, hashes) in [
        (
            "monitoring-v1.jsonl",
            "baseline_run_id",
            &["a781e43a4b93", "55bbcc6e1955"][..],
        ),
        ("golden-v1.jsonl", "set_root", &["f75190d608ca"][..]),
    ] {
        let o = ledger_cmd(&[file, "--verify", "--format", "json"], &fx);
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let e = v["entries"].as_array().unwrap();
        assert_eq!(e.len(), hashes.len());
        for (e, h) in e.iter().zip(hashes) {
            assert!(e[kind_key].is_string(), "{file}: {e}");
            assert!(e["hash"].as_str().unwrap().starts_with(h), "{file}: {e}");
        }
        assert!(v["breaks"].as_array().unwrap().is_empty());
    }

    let ws = Ws::new();
    let day1 = ws.log("day1.csv", 1000, usize::MAX, 0.0, 21);
    let day2 = ws.log("day2.csv", 600, usize::MAX, 0.0, 22);
    for d in [&day1, &day2] {
        let o = ws.monitor("m", &[d], &["--state", "state.json"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let o = ledger_cmd(&["bundle", "--verify"], ws.path("").as_path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("chain intact: 2 entries"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("in_control"), "{}", stdout(&o));
    // The golden-set ledger of the same workspace is checked by the same verb.
    let o = ledger_cmd(&["ledger.jsonl", "--verify"], ws.path("").as_path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let lp = ws.path("bundle.monitoring.jsonl");
    let original = std::fs::read_to_string(&lp).unwrap();
    assert_eq!(original.lines().count(), 2);
    // Edited record: named by line.
    std::fs::write(
        &lp,
        original.replacen("\"rows_read\":1000", "\"rows_read\":999", 1),
    )
    .unwrap();
    let o = ledger_cmd(
        &["bundle.monitoring.jsonl", "--verify"],
        ws.path("").as_path(),
    );
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("bundle.monitoring.jsonl:1: entry hash does not match"),
        "{}",
        stderr(&o)
    );
    // A run on the broken chain is refused and leaves the state as it was.
    let state = std::fs::read(ws.path("state.json")).unwrap();
    let day3 = ws.log("day3.csv", 400, usize::MAX, 0.0, 23);
    let o = ws.monitor("m", &[&day3], &["--state", "state.json"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("ledger chain is broken"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(ws.path("state.json")).unwrap(), state);
    // Deleted record: the next one no longer chains.
    let first_removed: String = original.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&lp, first_removed).unwrap();
    let o = ledger_cmd(&["bundle", "--verify"], ws.path("").as_path());
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(":1: sequence number 2 where 1 was expected"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&lp, &original).unwrap();
    let o = ws.monitor("m", &[&day3], &["--state", "state.json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = ledger_cmd(&["bundle", "--verify"], ws.path("").as_path());
    assert!(
        stdout(&o).contains("chain intact: 3 entries"),
        "{}",
        stdout(&o)
    );

    // A plan pointing the monitoring ledger at the golden-set ledger is refused, not mixed in.
    let golden = std::fs::read(ws.path("ledger.jsonl")).unwrap();
    ws.monitor_protocol(
        "into-golden.yaml",
        &PLAN.replace("monitoring:\n", "monitoring:\n  ledger: ledger.jsonl\n"),
    );
    let o = ws.monitor_with("into-golden.yaml", "m2", &[&day1], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("not a monitoring ledger entry"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(ws.path("ledger.jsonl")).unwrap(), golden);
}

/// `medgate monitor ... | head`: a reader that closes the pipe before the summary is printed
/// does not turn the run into a panic (exit 101). The run has already written its files and
/// ledger entry, so its own status (0 in control) stands.
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let ws = Ws::new();
    let calm = ws.log("calm.csv", 400, usize::MAX, 0.0, 5);
    for format in ["text", "json"] {
        let out = format!("m-pipe-{format}");
        let mut c = medgate();
        c.current_dir(ws.dir.path())
            .args([
                "monitor",
                "monitor.yaml",
                "--format",
                format,
                "--baseline",
                "bundle",
            ])
            .args(["--out", &out, "--no-pdf", "--log"])
            .arg(&calm)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take()); // the reader goes away before anything is written
        let o = child.wait_with_output().unwrap();
        assert_eq!(code(&o), 0, "{format}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{format}: {}", stderr(&o));
        assert!(ws.path(&out).join("monitor.json").is_file());
    }
}
