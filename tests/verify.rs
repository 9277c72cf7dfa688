//! `medgate verify`, `keygen`, `sign` and `selftest`, end to end through the binary.
//!
//! Each test builds the self-test's small replay project (120 synthetic cases, locked set,
//! recorded predictions) in a temporary directory and runs `medgate run` on it, so no model
//! weights are needed and a bundle takes well under a second.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_medgate");

fn medgate(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .env("MEDGATE_USER", "tester")
        .env("NO_COLOR", "1")
        .output()
        .expect("run medgate")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: medgate::selftest::e2e::DemoProject,
    bundle: PathBuf,
}

/// A project and its bundle, written by `medgate run`.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let project =
        medgate::selftest::e2e::write_demo_project(&root, &medgate::world::FixedWorld::default())
            .unwrap();
    let bundle = root.join("bundle");
    let o = medgate(
        &[
            "run",
            project.protocol.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
        &root,
    );
    // AC-ST-02 is designed to fail: exit 1, bundle written.
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(bundle.join("evidence.json").is_file());
    Fixture {
        _tmp: tmp,
        root,
        project,
        bundle,
    }
}

fn verify_json(bundle: &Path, extra: &[&str], cwd: &Path) -> (i32, Value) {
    let mut args = vec!["verify", bundle.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let o = medgate(&args, cwd);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", all(&o)));
    (code(&o), v)
}

fn copy_dir(from: &Path, to: &Path) {
    medgate::selftest::e2e::copy_dir(from, to).unwrap();
}

fn reseal(bundle: &Path) {
    medgate::trace::bundle::write_sha256sums(bundle).unwrap();
}

#[test]
fn a_fresh_bundle_verifies_identical_with_its_golden_set() {
    let f = fixture();
    let o = medgate(&["verify", f.bundle.to_str().unwrap()], &f.root);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("result: IDENTICAL"), "{}", stdout(&o));

    let gs = f.project.golden_set.to_str().unwrap().to_string();
    let (c, v) = verify_json(&f.bundle, &["--golden-set", &gs], &f.root);
    assert_eq!(c, 0, "{v:#}");
    assert_eq!(v["identical"], true);
    assert_eq!(v["discrepancies"].as_array().unwrap().len(), 0);
    // Every metric of every subgroup, the curves, criteria and verdicts were recomputed.
    assert!(
        v["values_compared"].as_u64().unwrap() > 300,
        "{}",
        v["values_compared"]
    );
    let checks: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "protocol.sha256",
        "protocol.parsed",
        "run_id",
        "journal.header",
        "golden_set.intact",
        "golden_set.root_hash",
        "ledger.chain",
        "ledger.entry",
    ] {
        assert!(checks.contains(&want), "{want} not in {checks:?}");
    }
}

#[test]
fn one_edited_number_is_caught_by_recomputation_and_named_by_path() {
    let f = fixture();
    let evp = f.bundle.join("evidence.json");
    let mut v =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&evp).unwrap()).unwrap();
    let x = v
        .pointer_mut("/statistics/overall/specificity/upper")
        .unwrap();
    let old = x.as_f64().unwrap();
    *x = serde_json::json!(old + 0.01);
    std::fs::write(&evp, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    // Re-seal, so that only the recomputation can catch the edit.
    reseal(&f.bundle);
    let (c, v) = verify_json(&f.bundle, &[], &f.root);
    assert_eq!(c, 1);
    let d = v["discrepancies"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0]["path"], "$.statistics.overall.specificity.upper");
    assert_eq!(d[0]["expected"].as_f64().unwrap(), old);
    assert_eq!(d[0]["found"].as_f64().unwrap(), old + 0.01);
    let o = medgate(&["verify", f.bundle.to_str().unwrap()], &f.root);
    assert!(
        stdout(&o).contains("$.statistics.overall.specificity.upper: recomputed"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn one_changed_case_row_is_caught_and_the_case_named() {
    use polars::prelude::*;
    let f = fixture();
    let path = f.bundle.join("cases.parquet");
    let mut df = medgate::table::read_table(&path).unwrap();
    let scores: Vec<Option<f64>> = df.column("score").unwrap().f64().unwrap().iter().collect();
    let ids: Vec<String> = df
        .column("case_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.unwrap().to_string())
        .collect();
    // Move the first case across the threshold.
    let mut new = scores.clone();
    new[0] = Some(1.0 - scores[0].unwrap());
    df.with_column(Column::new("score".into(), new)).unwrap();
    medgate::table::write_table(&path, &mut df).unwrap();
    reseal(&f.bundle);
    let (c, v) = verify_json(&f.bundle, &[], &f.root);
    assert_eq!(c, 1, "{v:#}");
    // The statistics no longer follow from the rows...
    let paths: Vec<&str> = v["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.iter().any(|p| p.starts_with("$.statistics.overall.")),
        "{paths:?}"
    );
    assert!(paths.contains(&"$.results_sha256"), "{paths:?}");
    // ...and the journal names the case whose row changed.
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{cases:#?}");
    assert_eq!(cases[0]["case_id"], ids[0].as_str());
    assert!(
        cases[0]["problem"].as_str().unwrap().contains("score"),
        "{}",
        cases[0]
    );
}

#[test]
fn one_flipped_byte_in_any_file_is_caught_and_the_file_named() {
    let f = fixture();
    let files = medgate::trace::bundle::bundle_files(&f.bundle).unwrap();
    assert!(files.len() >= 5, "{files:?}");
    for (i, file) in files.iter().enumerate() {
        let copy = f.root.join(format!("flip-{i}"));
        copy_dir(&f.bundle, &copy);
        let p = copy.join(file);
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&p, bytes).unwrap();
        let o = medgate(&["verify", copy.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 1, "{file}: {}", all(&o));
        let out = stdout(&o);
        assert!(out.contains(&format!("changed   {file}")), "{file}: {out}");
    }
}

#[test]
fn unreadable_bundles_exit_2() {
    let f = fixture();
    // evidence.json or SHA256SUMS deleted while the rest of the bundle is there: a
    // difference (exit 1, "tampered or incomplete bundle"), not a wrong directory.
    for gone in ["evidence.json", "SHA256SUMS"] {
        let a = f.root.join(format!("no-{gone}"));
        copy_dir(&f.bundle, &a);
        std::fs::remove_file(a.join(gone)).unwrap();
        let o = medgate(&["verify", a.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 1, "{gone}: {}", all(&o));
        assert!(
            all(&o).contains("tampered or incomplete bundle") && all(&o).contains(gone),
            "{}",
            all(&o)
        );
    }
    // Not JSON, and sealed that way (so not a tampered file but a broken bundle).
    let b = f.root.join("garbage");
    copy_dir(&f.bundle, &b);
    std::fs::write(b.join("evidence.json"), "{ not json").unwrap();
    reseal(&b);
    let o = medgate(&["verify", b.to_str().unwrap()], &f.root);
    assert_eq!(code(&o), 2, "{}", all(&o));
    // A directory that is not a bundle.
    let o = medgate(&["verify", f.root.to_str().unwrap()], &f.root);
    assert_eq!(code(&o), 2, "{}", all(&o));
}

#[test]
fn signatures_verify_and_any_edit_after_signing_fails() {
    let f = fixture();
    let key = f.root.join("keys").join("jane.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let o = medgate(&["keygen", "--out", key.to_str().unwrap()], &f.root);
    assert_eq!(code(&o), 0, "{}", all(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let public = f.root.join("keys").join("jane.key.pub");
    assert!(public.is_file());
    // keygen never overwrites.
    assert_eq!(
        code(&medgate(
            &["keygen", "--out", key.to_str().unwrap()],
            &f.root
        )),
        2
    );

    let b = f.bundle.to_str().unwrap();
    let o = medgate(
        &[
            "sign",
            b,
            "--key",
            key.to_str().unwrap(),
            "--name",
            "Jane Doe",
            "--meaning",
            "approved",
        ],
        &f.root,
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(f.bundle.join("signatures/001-jane-doe.json").is_file());
    let o = medgate(
        &["verify", b, "--trusted-key", public.to_str().unwrap()],
        &f.root,
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.contains("Jane Doe \"approved\"")
            && out.contains("2026-01-01T00:00:00Z")
            && out.contains("trusted key"),
        "{out}"
    );

    // A key that is not trusted makes verification fail.
    let other = f.root.join("keys").join("other.key");
    assert_eq!(
        code(&medgate(
            &["keygen", "--out", other.to_str().unwrap()],
            &f.root
        )),
        0
    );
    let other_pub = f.root.join("keys").join("other.key.pub");
    assert_eq!(
        code(&medgate(
            &["verify", b, "--trusted-key", other_pub.to_str().unwrap()],
            &f.root
        )),
        1
    );

    // Editing a file after signing, even with SHA256SUMS rewritten, fails every signature.
    let edited = f.root.join("edited");
    copy_dir(&f.bundle, &edited);
    let junit = edited.join("junit.xml");
    let mut text = std::fs::read_to_string(&junit).unwrap();
    text.push_str("<!-- edited -->\n");
    std::fs::write(&junit, text).unwrap();
    reseal(&edited);
    let (c, v) = verify_json(&edited, &[], &f.root);
    assert_eq!(c, 1, "{v:#}");
    let s = &v["signatures"][0];
    assert_eq!(s["valid"], false);
    assert!(
        s["problems"]
            .to_string()
            .contains("SHA256SUMS changed since signing"),
        "{s}"
    );

    // Editing a file without touching SHA256SUMS: the files check fails, and so does the
    // signature (what was approved is the files SHA256SUMS lists).
    let unsealed = f.root.join("unsealed");
    copy_dir(&f.bundle, &unsealed);
    std::fs::write(unsealed.join("junit.xml"), "<edited/>").unwrap();
    let (c, v) = verify_json(&unsealed, &[], &f.root);
    assert_eq!(c, 1);
    assert_eq!(v["files"][0]["path"], "junit.xml");
    assert_eq!(v["signatures"][0]["valid"], false);

    // Changing the meaning inside the signature file breaks the signature itself.
    let forged = f.root.join("forged");
    copy_dir(&f.bundle, &forged);
    let sig = forged.join("signatures/001-jane-doe.json");
    let text = std::fs::read_to_string(&sig)
        .unwrap()
        .replace("\"approved\"", "\"reviewed\"");
    std::fs::write(&sig, text).unwrap();
    let (c, v) = verify_json(&forged, &[], &f.root);
    assert_eq!(c, 1);
    assert!(
        v["signatures"][0]["problems"]
            .to_string()
            .contains("does not match"),
        "{v:#}"
    );

    // A bundle that is not intact is not signed.
    let o = medgate(
        &[
            "sign",
            edited.parent().unwrap().join("flip").to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--name",
            "J",
            "--meaning",
            "approved",
        ],
        &f.root,
    );
    assert_eq!(code(&o), 2);
    std::fs::write(edited.join("junit.xml"), "x").unwrap();
    let o = medgate(
        &[
            "sign",
            edited.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--name",
            "J",
            "--meaning",
            "approved",
        ],
        &f.root,
    );
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(all(&o).contains("refusing to sign"), "{}", all(&o));
}

#[test]
fn rerun_reproduces_the_scores_and_reports_cases_that_moved() {
    let f = fixture();
    let (c, v) = verify_json(&f.bundle, &["--rerun"], &f.root);
    assert_eq!(c, 0, "{v:#}");
    let r = &v["rerun"];
    assert_eq!(r["backend"], "replay");
    assert_eq!(r["cases"], 120);
    assert_eq!(r["max_abs_diff"].as_f64().unwrap(), 0.0);
    assert_eq!(r["moved"].as_array().unwrap().len(), 0);

    // Change one recorded prediction: the re-run finds the moved case and the changed model
    // (predictions) hash.
    let preds = std::fs::read_to_string(&f.project.predictions).unwrap();
    let mut lines: Vec<String> = preds.lines().map(String::from).collect();
    let cols: Vec<String> = lines[1].split(',').map(String::from).collect();
    let (id, score) = (cols[0].clone(), cols[1].parse::<f64>().unwrap());
    lines[1] = format!("{id},{:.3},{}", 1.0 - score, cols[2]);
    std::fs::write(&f.project.predictions, lines.join("\n") + "\n").unwrap();
    let (c, v) = verify_json(&f.bundle, &["--rerun", "--tolerance", "1e-9"], &f.root);
    assert_eq!(c, 1, "{v:#}");
    let r = &v["rerun"];
    assert_eq!(r["model_sha256_matches"], false);
    let moved = r["moved"].as_array().unwrap();
    assert_eq!(moved.len(), 1, "{moved:#?}");
    assert_eq!(moved[0]["case_id"], id.as_str());
    // The recomputation of the bundle itself still holds.
    assert_eq!(v["discrepancies"].as_array().unwrap().len(), 0);
}

#[test]
fn a_relabelled_case_in_the_golden_set_is_caught() {
    let f = fixture();
    let manifest = f.project.golden_set.join("manifest.csv");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut cols: Vec<String> = lines[1].split(',').map(String::from).collect();
    let id = cols[0].clone();
    cols[2] = if cols[2] == "1" {
        "0".into()
    } else {
        "1".into()
    };
    lines[1] = cols.join(",");
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    let gs = f.project.golden_set.to_str().unwrap().to_string();
    let (c, v) = verify_json(&f.bundle, &["--golden-set", &gs], &f.root);
    assert_eq!(c, 1, "{v:#}");
    let intact = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "golden_set.intact")
        .unwrap();
    assert_eq!(intact["ok"], false);
    let cases = v["cases"].as_array().unwrap();
    assert!(
        cases.iter().any(
            |c| c["case_id"] == id.as_str() && c["problem"].as_str().unwrap().contains("label")
        ),
        "{cases:#?}"
    );
}

#[test]
fn selftest_passes_and_writes_the_validation_record() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("record");
    let o = medgate(&["selftest", "--out", out.to_str().unwrap()], tmp.path());
    assert_eq!(code(&o), 0, "{}", all(&o));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tool-validation.json")).unwrap())
            .unwrap();
    assert_eq!(v["failed"], 0);
    assert!(v["total"].as_u64().unwrap() > 250, "{}", v["total"]);
    assert_eq!(v["medgate_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["date"], "2026-01-01T00:00:00Z");
    let ids: Vec<&str> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for want in [
        "delong/asah_ndka/ci/0.95",
        "ci/wilson/0-of-10/0.95",
        "compare/paired/59-6-16-80/0.95",
        "compare/mcnemar/0-3",
        "compare/paired-delong/asah_s100b_vs_ndka/0.95",
        "e2e/verdicts",
        "e2e/verify-identical",
        "e2e/signature",
    ] {
        assert!(ids.contains(&want), "{want} missing");
    }
    let md = std::fs::read_to_string(out.join("tool-validation.md")).unwrap();
    assert!(md.contains("| conclusion | **PASS"), "{md}");
    assert!(md.contains("R pROC"), "sources named");
}

#[test]
fn selftest_fails_when_a_fixture_expected_value_is_altered() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stats");
    let compare = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compare");
    let monitor = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/monitor");
    let fx = tmp.path().join("fixtures");
    copy_dir(&src, &fx);
    copy_dir(&compare, &fx.join("compare"));
    copy_dir(&monitor, &fx.join("monitor"));
    // pROC gives 0.501244999271703 for the lower 95% bound of aSAH ndka; alter it by 1e-6.
    let p = fx.join("delong_expected.csv");
    let text = std::fs::read_to_string(&p).unwrap();
    let altered = text.replacen("0.50124499927170263", "0.50124599927170263", 1);
    assert_ne!(text, altered);
    std::fs::write(&p, altered).unwrap();
    let o = medgate(
        &["selftest", "--fixtures", fx.to_str().unwrap(), "--skip-e2e"],
        tmp.path(),
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let out = stdout(&o);
    assert!(out.contains("FAIL delong/asah_ndka/ci/0.95"), "{out}");
    assert_eq!(
        out.matches("\nFAIL ").count() + usize::from(out.starts_with("FAIL ")),
        1,
        "{out}"
    );
    // An altered paired reference of the release comparison is caught too: pROC's lower 95%
    // bound of the aSAH s100b - ndka AUROC difference, moved by 1e-6.
    let fx2 = tmp.path().join("fixtures-compare");
    copy_dir(&src, &fx2);
    copy_dir(&compare, &fx2.join("compare"));
    copy_dir(&monitor, &fx2.join("monitor"));
    let p = fx2.join("compare/paired_delong_expected.csv");
    let text = std::fs::read_to_string(&p).unwrap();
    let altered = text.replacen("-0.048870606422809354", "-0.048869606422809354", 1);
    assert_ne!(text, altered);
    std::fs::write(&p, altered).unwrap();
    let o = medgate(
        &[
            "selftest",
            "--fixtures",
            fx2.to_str().unwrap(),
            "--skip-e2e",
        ],
        tmp.path(),
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.contains("FAIL compare/paired-delong/asah_s100b_vs_ndka/0.95"),
        "{out}"
    );
    assert_eq!(
        out.matches("\nFAIL ").count() + usize::from(out.starts_with("FAIL ")),
        1,
        "{out}"
    );
    // An altered drift reference of the monitor is caught: scipy's exact KS p-value for a
    // 10 000-score window against a 397-case baseline, moved by 1e-6 of itself.
    let fx3 = tmp.path().join("fixtures-monitor");
    copy_dir(&src, &fx3);
    copy_dir(&compare, &fx3.join("compare"));
    copy_dir(&monitor, &fx3.join("monitor"));
    let p = fx3.join("monitor/drift.json");
    let text = std::fs::read_to_string(&p).unwrap();
    let altered = text.replacen("0.0022083413375836593", "0.0022083435459249969", 1);
    assert_ne!(text, altered);
    std::fs::write(&p, altered).unwrap();
    let o = medgate(
        &[
            "selftest",
            "--fixtures",
            fx3.to_str().unwrap(),
            "--skip-e2e",
        ],
        tmp.path(),
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.contains("FAIL monitor/ks/window-10000-397-shift"),
        "{out}"
    );
    assert_eq!(
        out.matches("\nFAIL ").count() + usize::from(out.starts_with("FAIL ")),
        1,
        "{out}"
    );
    // A directory without the compare/ files is refused as unreadable fixtures.
    let stats_only = tmp.path().join("stats-only");
    copy_dir(&src, &stats_only);
    let o = medgate(
        &[
            "selftest",
            "--fixtures",
            stats_only.to_str().unwrap(),
            "--skip-e2e",
        ],
        tmp.path(),
    );
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(all(&o).contains("compare/paired_tables.csv"), "{}", all(&o));
    // Unaltered fixtures from the directory pass.
    copy_dir(&src, &tmp.path().join("clean"));
    copy_dir(&compare, &tmp.path().join("clean/compare"));
    copy_dir(&monitor, &tmp.path().join("clean/monitor"));
    let o = medgate(
        &[
            "selftest",
            "--fixtures",
            tmp.path().join("clean").to_str().unwrap(),
            "--skip-e2e",
        ],
        tmp.path(),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
}

#[test]
fn edited_provenance_is_caught_by_the_consistency_checks() {
    let f = fixture();
    let failed = |v: &Value| -> Vec<String> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    // The protocol copy edited (operating point moved) and the bundle re-sealed.
    let a = f.root.join("protocol-edited");
    copy_dir(&f.bundle, &a);
    let p = a.join("protocol.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    let edited = text.replace("threshold: 0.5", "threshold: 0.6");
    assert_ne!(text, edited);
    std::fs::write(&p, edited).unwrap();
    reseal(&a);
    let (c, v) = verify_json(&a, &[], &f.root);
    assert_eq!(c, 1);
    let bad = failed(&v);
    assert!(
        bad.contains(&"protocol.sha256".to_string())
            && bad.contains(&"protocol.parsed".to_string()),
        "{bad:?}"
    );
    let paths: Vec<&str> = v["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"$.protocol.task.threshold"), "{paths:?}");
    assert!(paths.contains(&"$.statistics.threshold"), "{paths:?}");

    // The recorded model hash edited: the journal's run key no longer matches, and the reports
    // (which print the model hash) no longer re-render from the evidence.
    let b = f.root.join("model-edited");
    copy_dir(&f.bundle, &b);
    let evp = b.join("evidence.json");
    let mut ev =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&evp).unwrap()).unwrap();
    ev["model"]["sha256"] = Value::String("0".repeat(64));
    std::fs::write(&evp, serde_json::to_string_pretty(&ev).unwrap()).unwrap();
    reseal(&b);
    let (c, v) = verify_json(&b, &[], &f.root);
    assert_eq!(c, 1);
    assert_eq!(
        failed(&v),
        [
            "rendering.junit.xml",
            "rendering.report.md",
            "journal.header"
        ]
    );
    assert_eq!(v["discrepancies"].as_array().unwrap().len(), 0);
}

/// Case thumbnails come from the golden set's images: with `--golden-set` the HTML report is
/// re-rendered with them and compared byte for byte (so an edited thumbnail is caught);
/// without it, report.html is listed as not recomputed instead of failing an honest bundle.
#[test]
fn reports_with_case_thumbnails_verify_against_the_golden_set() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let project =
        medgate::selftest::e2e::write_demo_project(&root, &medgate::world::FixedWorld::default())
            .unwrap();
    let text = std::fs::read_to_string(&project.protocol).unwrap();
    assert!(text.contains("report:\n  formats: [md]\n"), "{text}");
    let text = text.replace(
        "report:\n  formats: [md]\n",
        "report:\n  formats: [md, html]\n  thumbnails: 16\n",
    );
    std::fs::write(&project.protocol, text).unwrap();
    let bundle = root.join("bundle");
    let o = medgate(
        &[
            "run",
            project.protocol.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
        &root,
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let html = std::fs::read_to_string(bundle.join("report.html")).unwrap();
    assert!(
        html.contains("data:image/png;base64,"),
        "no thumbnail embedded"
    );

    let gs = project.golden_set.to_str().unwrap().to_string();
    let (c, v) = verify_json(&bundle, &["--golden-set", &gs], &root);
    assert_eq!(c, 0, "{v:#}");
    assert_eq!(v["identical"], true, "{v:#}");
    let html_check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rendering.report.html")
        .unwrap_or_else(|| panic!("report.html not compared: {v:#}"));
    assert_eq!(html_check["ok"], true, "{html_check}");

    let (c, v) = verify_json(&bundle, &[], &root);
    assert_eq!(c, 0, "{v:#}");
    let listed = v["not_recomputed"].to_string();
    assert!(listed.contains("report.html"), "{listed}");

    // An edited thumbnail is a discrepancy once the set is at hand.
    let at = html.find("data:image/png;base64,").unwrap() + "data:image/png;base64,".len() + 40;
    let mut bytes = html.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(bundle.join("report.html"), bytes).unwrap();
    reseal(&bundle);
    let (c, v) = verify_json(&bundle, &["--golden-set", &gs], &root);
    assert_eq!(c, 1, "{v:#}");
    let html_check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rendering.report.html")
        .unwrap();
    assert_eq!(html_check["ok"], false, "{html_check}");
}
