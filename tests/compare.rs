//! Release comparison end to end: the demo reference release, the modified release compared
//! with it (protocols/demo-cxr-compare.yaml), verification of the comparison bundle on its
//! own, refusal of bad references with nothing written, and `medgate diff`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn medgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medgate"));
    c.env("MEDGATE_USER", "test-user")
        .env("SOURCE_DATE_EPOCH", "1767225600");
    c
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A demo protocol rewritten to absolute paths, its ledger in `dir`, Markdown and HTML
/// reports only (the PDF is covered elsewhere).
fn localise(name: &str, dir: &Path) -> String {
    std::fs::read_to_string(root().join("protocols").join(name))
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
            &format!("path: {}", dir.join("ledger.jsonl").display()),
        )
        .replace("formats: [pdf, html, md]", "formats: [md, html]")
}

fn pin_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("results_sha256: "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

fn run(protocol: &Path, out: &Path) -> Output {
    medgate()
        .args(["run", "--format", "json", "--out"])
        .arg(out)
        .arg(protocol)
        .output()
        .unwrap()
}

fn evidence(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("evidence.json")).unwrap()).unwrap()
}

struct Demo {
    dir: tempfile::TempDir,
    reference: PathBuf,
    reference_sha: String,
    compare_text: String,
}

impl Demo {
    /// Runs the reference release and prepares the comparison protocol pinned to it.
    fn new() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("demo.yaml");
        std::fs::write(&p, localise("demo-cxr.yaml", dir.path())).unwrap();
        let reference = dir.path().join("ref");
        let o = run(&p, &reference);
        assert!(
            matches!(o.status.code(), Some(0) | Some(1)),
            "{}",
            stderr(&o)
        );
        let reference_sha = evidence(&reference)["results_sha256"]
            .as_str()
            .unwrap()
            .to_string();
        let committed = localise("demo-cxr-compare.yaml", dir.path());
        let compare_text = committed
            .replace(&pin_of(&committed), &reference_sha)
            .replace(
                "bundle: ../runs/VP-CXR-DEMO-001",
                &format!("bundle: {}", reference.display()),
            );
        Demo {
            dir,
            reference,
            reference_sha,
            compare_text,
        }
    }

    /// Runs the comparison protocol pinned to the reference into `cmp/`, which must pass.
    fn run_comparison(&self) -> PathBuf {
        let p = self.write("compare.yaml", &self.compare_text);
        let out = self.dir.path().join("cmp");
        assert_eq!(run(&p, &out).status.code(), Some(0));
        out
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

#[test]
fn demo_comparison_passes_non_inferiority_lists_flips_and_verifies_alone() {
    let demo = Demo::new();
    // The committed demo pins the reference's results: it must be current.
    let committed =
        std::fs::read_to_string(root().join("protocols/demo-cxr-compare.yaml")).unwrap();
    assert_eq!(
        pin_of(&committed),
        demo.reference_sha,
        "protocols/demo-cxr-compare.yaml pins a stale reference: set its results_sha256 to the demo-cxr run's"
    );
    let p = demo.write("compare.yaml", &demo.compare_text);
    let out = demo.dir.path().join("cmp");
    let o = run(&p, &out);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ev = evidence(&out);
    let crit = ev["criteria"].as_array().unwrap();
    let ni = crit.iter().find(|c| c["id"] == "AC-CMP-01").unwrap();
    assert_eq!(ni["verdict"], "PASS");
    assert_eq!(ni["metric"], "sensitivity_difference");
    let obs = &ni["observations"][0];
    assert!(obs["lower"].as_f64().unwrap() >= -0.05);
    let cmp = &ev["comparison"];
    assert_eq!(
        cmp["reference"]["results_sha256"],
        demo.reference_sha.as_str()
    );
    assert_eq!(cmp["change_control"]["plan"], "PCCP-CXR-DEMO-2026-01");
    assert_eq!(cmp["matched_cases"], 1000);
    // Flips: new false negatives first, and flips.csv lists the same cases in that order.
    let flips = cmp["flips"].as_array().unwrap();
    assert!(
        !flips.is_empty(),
        "the demo modification should change some decisions"
    );
    let order: Vec<&str> = flips
        .iter()
        .map(|f| f["direction"].as_str().unwrap())
        .collect();
    let rank = |d: &str| {
        [
            "new_false_negative",
            "new_false_positive",
            "new_true_positive",
            "new_true_negative",
        ]
        .iter()
        .position(|x| *x == d)
        .unwrap()
    };
    assert!(order.windows(2).all(|w| rank(w[0]) <= rank(w[1])));
    let csv = std::fs::read_to_string(out.join("flips.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with(
        "case_id,image,label,direction,reference_score,reference_answer,new_score,new_answer"
    ));
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first[0], flips[0]["case_id"].as_str().unwrap());
    assert!(
        first[1].ends_with(".png") || first[1].ends_with(".dcm"),
        "{first:?}"
    );
    assert_eq!(csv.lines().count(), flips.len() + 1);
    // The flip counts by subgroup sum to the overall count for each attribute.
    let summary = cmp["flip_summary"].as_array().unwrap();
    let total = |u: &serde_json::Value| {
        let c = &u["counts"];
        [
            "new_false_negatives",
            "new_false_positives",
            "new_true_positives",
            "new_true_negatives",
        ]
        .iter()
        .map(|k| c[k].as_u64().unwrap())
        .sum::<u64>()
    };
    assert_eq!(total(&summary[0]), flips.len() as u64);
    let by_sex: u64 = summary
        .iter()
        .filter(|u| u["unit"].as_str().unwrap().starts_with("sex="))
        .map(total)
        .sum();
    assert_eq!(by_sex, flips.len() as u64);
    // The report has the section, with the change-control identity and the plot.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Comparison with the reference release"));
    assert!(html.contains("PCCP-CXR-DEMO-2026-01"));
    assert!(html.contains("Paired differences (new - reference)"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("### Comparison with the reference release"));
    assert!(out.join("plots/comparison.svg").is_file());

    // The bundle verifies on its own, with the reference copy inside it.
    std::fs::remove_dir_all(&demo.reference).unwrap();
    let v = medgate()
        .args(["verify", "--format", "json"])
        .arg(&out)
        .output()
        .unwrap();
    let vj: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v.status.code(), Some(0), "{vj:#}");
    let checks = vj["checks"].as_array().unwrap();
    for name in [
        "comparison.reference_pin",
        "comparison.reference_recomputed",
    ] {
        let c = checks.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(c["ok"], true, "{c}");
    }
}

#[test]
fn verify_recomputes_the_comparison_from_both_case_tables() {
    let demo = Demo::new();
    let out = demo.run_comparison();
    // Edit a recorded difference and re-seal SHA256SUMS as a forger would: the recomputation
    // from the two case tables catches it.
    let ev_path = out.join("evidence.json");
    let mut ev = evidence(&out);
    ev["comparison"]["statistics"]["overall"]["sensitivity"]["lower"] = serde_json::json!(0.5);
    std::fs::write(&ev_path, serde_json::to_string_pretty(&ev).unwrap() + "\n").unwrap();
    reseal(&out);
    let v = medgate()
        .args(["verify", "--format", "json"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(1));
    let vj: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    let paths: Vec<&str> = vj["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"$.comparison.statistics.overall.sensitivity.lower"),
        "{paths:?}"
    );
}

/// Rewrites SHA256SUMS over the bundle's current files.
fn reseal(dir: &Path) {
    let mut files = Vec::new();
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if p.is_dir() {
                if rel != "signatures" {
                    walk(root, &p, out);
                }
            } else if rel != "SHA256SUMS" {
                out.push(rel);
            }
        }
    }
    walk(dir, dir, &mut files);
    files.sort();
    let mut sums = String::new();
    for f in files {
        let bytes = std::fs::read(dir.join(&f)).unwrap();
        sums.push_str(&format!("{}  {f}\n", sha256_hex(&bytes)));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bad_references_are_refused_with_the_reason_and_nothing_written() {
    let demo = Demo::new();
    let refused = |name: &str, text: &str, expect: &[&str]| {
        let p = demo.write(&format!("{name}.yaml"), text);
        let out = demo.dir.path().join(format!("out-{name}"));
        let o = run(&p, &out);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        let e = stderr(&o);
        for x in expect {
            assert!(e.contains(x), "{name}: `{x}` not in: {e}");
        }
        assert!(!out.exists(), "{name}: something was written");
    };
    // The reference itself as the output directory: refused, the reference untouched.
    let before = std::fs::read(demo.reference.join("SHA256SUMS")).unwrap();
    let p = demo.write("over.yaml", &demo.compare_text);
    let o = run(&p, &demo.reference);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is the reference bundle"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(demo.reference.join("SHA256SUMS")).unwrap(),
        before
    );
    assert!(!demo.reference.join("flips.csv").exists());
    // A pin that is not the reference's results.
    let other = "0".repeat(64);
    refused(
        "pin",
        &demo.compare_text.replace(&demo.reference_sha, &other),
        &["results_sha256", &other],
    );
    // Another protocol ID.
    refused(
        "protocol",
        &demo
            .compare_text
            .replace("protocol: VP-CXR-DEMO-001", "protocol: VP-CXR-OTHER-002"),
        &["another protocol", "VP-CXR-DEMO-001"],
    );
    // A reference bundle that fails verification (an edited number).
    let tampered = demo.dir.path().join("tampered");
    copy_dir(&demo.reference, &tampered);
    let ev = std::fs::read_to_string(tampered.join("evidence.json")).unwrap();
    std::fs::write(
        tampered.join("evidence.json"),
        ev.replacen("\"tp\": ", "\"tp\": 1", 1),
    )
    .unwrap();
    refused(
        "tampered",
        &demo.compare_text.replace(
            &demo.reference.display().to_string(),
            &tampered.display().to_string(),
        ),
        &["fails verification"],
    );
    // Another golden set: one case dropped and one label flipped, re-locked.
    let set = demo.dir.path().join("set");
    copy_dir(&root().join("golden-sets/demo-cxr"), &set);
    let manifest = std::fs::read_to_string(set.join("manifest.csv")).unwrap();
    let header: Vec<&str> = manifest.lines().next().unwrap().split(',').collect();
    let label_col = header.iter().position(|h| *h == "finding").unwrap();
    let mut rows: Vec<String> = manifest.lines().map(String::from).collect();
    let dropped = rows.remove(1);
    let dropped_id = dropped.split(',').next().unwrap().to_string();
    let mut f: Vec<String> = rows[1].split(',').map(String::from).collect();
    let flipped_id = f[0].clone();
    f[label_col] = if f[label_col] == "1" {
        "0".into()
    } else {
        "1".into()
    };
    rows[1] = f.join(",");
    std::fs::write(set.join("manifest.csv"), rows.join("\n") + "\n").unwrap();
    let l = medgate()
        .arg("lock")
        .arg(&set)
        .arg("--force")
        .output()
        .unwrap();
    if !l.status.success() {
        let l2 = medgate().arg("lock").arg(&set).output().unwrap();
        assert!(l2.status.success(), "lock: {}", stderr(&l2));
    }
    refused(
        "set",
        &demo.compare_text.replace(
            &root().join("golden-sets/demo-cxr").display().to_string(),
            &set.display().to_string(),
        ),
        &[
            "another golden set",
            "reference root",
            &dropped_id,
            &flipped_id,
            "different label",
        ],
    );
}

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

#[test]
fn diff_pairs_the_two_bundles_in_text_json_and_html() {
    let demo = Demo::new();
    let p = demo.write("compare.yaml", &demo.compare_text);
    let out = demo.dir.path().join("cmp");
    assert_eq!(run(&p, &out).status.code(), Some(0));
    let j = medgate()
        .args(["diff", "--format", "json"])
        .arg(&demo.reference)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(j.status.code(), Some(0), "{}", stderr(&j));
    let d: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(d["cases_match"], true);
    assert_eq!(d["protocol_text_same"], false);
    let fields = d["fields"].as_array().unwrap();
    let field = |n: &str| fields.iter().find(|f| f["field"] == n).unwrap().clone();
    assert_eq!(field("golden_set.root_hash")["same"], true);
    assert_eq!(field("protocol.version")["same"], false);
    // The paired difference in the diff is the comparison bundle's own.
    let sens = d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["unit"] == "overall" && m["metric"] == "sensitivity")
        .unwrap()
        .clone();
    let ev = evidence(&out);
    assert_eq!(
        sens["paired_lower"],
        ev["comparison"]["statistics"]["overall"]["sensitivity"]["lower"]
    );
    let t = medgate()
        .arg("diff")
        .arg(&demo.reference)
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(text.contains("paired differences B - A"), "{text}");
    assert!(text.contains("- ") && text.contains("+ "));
    let html_path = demo.dir.path().join("diff.html");
    let h = medgate()
        .args(["diff", "--format", "html", "--out"])
        .arg(&html_path)
        .arg(&demo.reference)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(h.status.code(), Some(0));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("paired interval"));
}

/// The bundle is hostile input: a reference copy whose evidence.json is a symlink to a file
/// outside the bundle (with the same bytes, so every hash still matches) is refused, not
/// followed.
#[cfg(unix)]
#[test]
fn verify_refuses_a_symlinked_reference_copy() {
    let demo = Demo::new();
    let out = demo.run_comparison();
    let inside = out.join("reference").join("evidence.json");
    let outside = demo.dir.path().join("outside-evidence.json");
    std::fs::copy(&inside, &outside).unwrap();
    std::fs::remove_file(&inside).unwrap();
    std::os::unix::fs::symlink(&outside, &inside).unwrap();
    let v = medgate()
        .args(["verify", "--format", "json"])
        .arg(&out)
        .output()
        .unwrap();
    assert_ne!(v.status.code(), Some(0), "{}", stderr(&v));
    // SHA256SUMS lists the link as a file problem; the comparison check itself must also
    // refuse to read through it (not parse the outside file).
    let vj: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    let copy = vj["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "comparison.reference_copy")
        .unwrap_or_else(|| panic!("no comparison.reference_copy check: {vj}"));
    assert_eq!(copy["ok"], false, "{copy}");
    assert!(
        copy["detail"].as_str().unwrap().contains("is a symlink"),
        "{copy}"
    );
}

/// The demo set with one more manifest column that no protocol declares as a subgroup
/// attribute, re-locked in `dir/set-extra`.
fn set_with_undeclared_column(dir: &Path) -> PathBuf {
    let set = dir.join("set-extra");
    copy_dir(&root().join("golden-sets/demo-cxr"), &set);
    let manifest = std::fs::read_to_string(set.join("manifest.csv")).unwrap();
    let mut out = String::new();
    for (i, line) in manifest.lines().enumerate() {
        let extra = if i == 0 {
            "reader_comment".to_string()
        } else {
            format!("free text {i}")
        };
        out.push_str(&format!("{line},{extra}\n"));
    }
    std::fs::write(set.join("manifest.csv"), out).unwrap();
    let l = medgate()
        .arg("lock")
        .arg(&set)
        .arg("--force")
        .output()
        .unwrap();
    if !l.status.success() {
        let l2 = medgate().arg("lock").arg(&set).output().unwrap();
        assert!(l2.status.success(), "lock: {}", stderr(&l2));
    }
    set
}

#[test]
fn flips_carry_only_the_protocols_declared_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let set = set_with_undeclared_column(dir.path());
    let committed_set = root().join("golden-sets/demo-cxr").display().to_string();
    let on_set = |t: String| t.replace(&committed_set, &set.display().to_string());
    let p = dir.path().join("demo.yaml");
    std::fs::write(&p, on_set(localise("demo-cxr.yaml", dir.path()))).unwrap();
    let reference = dir.path().join("ref");
    let o = run(&p, &reference);
    assert!(
        matches!(o.status.code(), Some(0) | Some(1)),
        "{}",
        stderr(&o)
    );
    let sha = evidence(&reference)["results_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let committed = localise("demo-cxr-compare.yaml", dir.path());
    let text = on_set(committed.replace(&pin_of(&committed), &sha).replace(
        "bundle: ../runs/VP-CXR-DEMO-001",
        &format!("bundle: {}", reference.display()),
    ));
    let cp = dir.path().join("compare.yaml");
    std::fs::write(&cp, text).unwrap();
    let out = dir.path().join("cmp");
    let o = run(&cp, &out);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let declared = ["age_band", "manufacturer", "sex", "site", "view_position"];
    let cmp = &evidence(&out)["comparison"];
    let flips = cmp["flips"].as_array().unwrap();
    assert!(!flips.is_empty());
    for f in flips {
        let keys: Vec<&str> = f["attributes"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, declared, "{f}");
    }
    for u in cmp["flip_summary"].as_array().unwrap() {
        let unit = u["unit"].as_str().unwrap();
        assert!(
            unit == "overall" || declared.iter().any(|a| unit.starts_with(&format!("{a}="))),
            "{unit}"
        );
    }
    let csv = std::fs::read_to_string(out.join("flips.csv")).unwrap();
    assert!(!csv.contains("reader_comment") && !csv.contains("free text"));
    // verify re-derives the flips from cases.parquet, which holds only the declared
    // attributes: the recorded flips must be the same.
    let v = medgate()
        .args(["verify", "--format", "json"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

/// Runs the in-run comparison demo (protocols/demo-cxr-compare-inrun.yaml) in `dir` into
/// `dir/inrun`, which must pass.
fn run_inrun(dir: &Path) -> PathBuf {
    let p = dir.join("inrun.yaml");
    std::fs::write(&p, localise("demo-cxr-compare-inrun.yaml", dir)).unwrap();
    let out = dir.join("inrun");
    let o = run(&p, &out);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    out
}

fn verify_json(dir: &Path) -> (Option<i32>, serde_json::Value) {
    let v = medgate()
        .args(["verify", "--format", "json"])
        .arg(dir)
        .output()
        .unwrap();
    let vj = serde_json::from_slice(&v.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&v)));
    (v.status.code(), vj)
}

#[test]
fn in_run_reference_model_gives_the_bundle_comparisons_numbers_and_verifies() {
    // The same modification against the same reference, once from the earlier bundle and
    // once with the reference model run here: the paired statistics and flips must agree.
    let demo = Demo::new();
    let bundled = demo.run_comparison();
    let out = run_inrun(demo.dir.path());
    assert!(out.join("reference/journal.jsonl").is_file());
    assert!(!out.join("reference/evidence.json").exists());
    let (ev, eb) = (evidence(&out), evidence(&bundled));
    let cmp = &ev["comparison"];
    assert_eq!(cmp["reference"]["source"], "in_run");
    assert_eq!(
        cmp["reference"]["name"],
        "demo release 1.0 (protocols/demo-cxr.yaml prompts)"
    );
    assert!(cmp["reference"].get("results_sha256").is_none(), "{cmp:#}");
    assert_eq!(cmp["matched_cases"], 1000);
    assert!(!cmp["flips"].as_array().unwrap().is_empty());
    assert_eq!(cmp["statistics"], eb["comparison"]["statistics"]);
    assert_eq!(cmp["flips"], eb["comparison"]["flips"]);
    assert_eq!(cmp["flip_summary"], eb["comparison"]["flip_summary"]);
    assert_eq!(
        std::fs::read(out.join("flips.csv")).unwrap(),
        std::fs::read(bundled.join("flips.csv")).unwrap()
    );
    let crit = ev["criteria"].as_array().unwrap();
    let ni = crit.iter().find(|c| c["id"] == "AC-CMP-01").unwrap();
    assert_eq!(ni["metric"], "sensitivity_difference");
    assert_eq!(ni["verdict"], "PASS");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("### Comparison with the reference release"));
    assert!(md.contains("in this run, on the same cases"), "{md}");

    let (code, vj) = verify_json(&out);
    assert_eq!(code, Some(0), "{vj:#}");
    let c = vj["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "comparison.reference_journal")
        .unwrap_or_else(|| panic!("no comparison.reference_journal check: {vj:#}"));
    assert_eq!(c["ok"], true, "{c}");

    // Same inputs, same evidence: a second run into a fresh directory.
    let p = demo.dir.path().join("inrun.yaml");
    let again = demo.dir.path().join("inrun-again");
    assert_eq!(run(&p, &again).status.code(), Some(0));
    let mut e2 = evidence(&again);
    assert_eq!(ev["results_sha256"], e2["results_sha256"]);
    e2["comparison"]["reference"]["name"] = cmp["reference"]["name"].clone();
    assert_eq!(ev["comparison"], e2["comparison"]);
}

#[test]
fn a_tampered_reference_journal_fails_verify_even_resealed() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_inrun(dir.path());
    let journal = out.join("reference/journal.jsonl");
    let original = std::fs::read_to_string(&journal).unwrap();

    // One reference answer turned from negative to positive, SHA256SUMS re-sealed.
    let mut done = false;
    let edited: Vec<String> = original
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let score = v["result"]["prediction"]["score"].as_f64();
            if i > 0 && !done && score.is_some_and(|s| s < 0.36) {
                v["result"]["prediction"]["score"] = serde_json::json!(0.99);
                done = true;
            }
            if i == 0 { l.to_string() } else { v.to_string() }
        })
        .collect();
    assert!(done);
    std::fs::write(&journal, edited.join("\n") + "\n").unwrap();
    reseal(&out);
    let (code, vj) = verify_json(&out);
    assert_eq!(code, Some(1), "{vj:#}");
    let paths: Vec<&str> = vj["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().any(|p| p.starts_with("$.comparison.")),
        "{paths:?}"
    );

    // A header naming another task (prompts), SHA256SUMS re-sealed: the run key check fails.
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    let mut h: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    h["task_sha256"] = serde_json::json!("0".repeat(64));
    lines[0] = h.to_string();
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    reseal(&out);
    let (code, vj) = verify_json(&out);
    assert_eq!(code, Some(1), "{vj:#}");
    let c = vj["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "comparison.reference_journal")
        .unwrap();
    assert_eq!(c["ok"], false, "{c}");
    assert!(c["detail"].as_str().unwrap().contains("task"), "{c}");

    // The journal removed (and unlisted): refused, not taken as "no reference".
    std::fs::remove_file(&journal).unwrap();
    reseal(&out);
    let (code, vj) = verify_json(&out);
    assert_eq!(code, Some(1), "{vj:#}");
}

#[test]
fn check_refuses_a_comparison_with_both_a_bundle_and_a_reference_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = localise("demo-cxr-compare-inrun.yaml", dir.path()).replace(
        "comparison:\n",
        "comparison:\n  reference:\n    bundle: ../runs/VP-CXR-DEMO-001\n    results_sha256: \"eb705c6aec7acc6375439bcdd90e28716ab46b9ebbb9a56ae2566dfb5281576f\"\n",
    );
    // The diagnostic points at the `reference_model` mapping itself: its first key, on the
    // line after `reference_model:` (1-based), column 5.
    let line = text
        .lines()
        .position(|l| l == "  reference_model:")
        .unwrap()
        + 2;
    let p = dir.path().join("both.yaml");
    std::fs::write(&p, &text).unwrap();
    let o = medgate().arg("check").arg(&p).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let at = format!("both.yaml:{line}:5");
    assert!(
        all.lines()
            .any(|l| l.contains(&at) && l.contains("give exactly one")),
        "`{at}` and `give exactly one` not on one line in: {all}"
    );
    // And `run` refuses it the same way, writing nothing.
    let out = dir.path().join("out");
    let o = run(&p, &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn a_bad_reference_model_is_refused_where_it_is_written_and_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = localise("demo-cxr-compare-inrun.yaml", dir.path());
    // A threshold outside [0, 1] under reference_model: `check` names its line and column.
    let text = base.replace(
        "    prompts:\n      positive: [\"a chest radiograph with a lung nodule\", \"a chest radiograph with a pneumothorax\"]",
        "    threshold: 1.5\n    prompts:\n      positive: [\"a chest radiograph with a lung nodule\", \"a chest radiograph with a pneumothorax\"]",
    );
    assert_ne!(text, base);
    let line = text
        .lines()
        .position(|l| l == "    threshold: 1.5")
        .unwrap()
        + 1;
    let p = dir.path().join("thr.yaml");
    std::fs::write(&p, &text).unwrap();
    let o = medgate().arg("check").arg(&p).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let at = format!("thr.yaml:{line}:16");
    assert!(
        all.lines()
            .any(|l| l.contains(&at) && l.contains("threshold 1.5 is outside [0, 1]")),
        "`{at}` not in: {all}"
    );
    // A reference model whose weights differ from its pin: refused, nothing written.
    let pin = "46049007501d6af38c470d0561371dc412dd0ceca1877d86bf9321606e437905";
    let (first, rest) = base.split_at(base.find("reference_model:").unwrap());
    let text = format!("{first}{}", rest.replacen(pin, &"ab".repeat(32), 1));
    let p = dir.path().join("pin.yaml");
    std::fs::write(&p, &text).unwrap();
    let out = dir.path().join("out-pin");
    let o = run(&p, &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!out.exists(), "something was written");
}
