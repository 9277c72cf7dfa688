//! The end-to-end part of the self-test: a small protocol run through the whole pipeline,
//! with every checked value computed independently here (counts by direct tally, Wilson
//! bounds from the closed form, AUROC by the O(n^2) pair count), then the bundle verified and
//! two negative controls (a tampered number, an edit after signing) that must be caught.
//!
//! [`write_demo_project`] is public so that integration tests build the same small project.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::SelftestCase;
use crate::error::{Error, Result};
use crate::world::World;

/// Cases in the demo golden set.
pub const CASES: usize = 120;
/// Seed of the demo set and of the predictions.
pub const SEED: u64 = 20_260_101;
/// Protocol ID of the demo project.
pub const PROTOCOL_ID: &str = "VP-SELFTEST-001";

/// A small project on disk: a locked synthetic golden set, replayed predictions and a protocol.
#[derive(Debug, Clone)]
pub struct DemoProject {
    /// The protocol file.
    pub protocol: PathBuf,
    /// The golden-set directory.
    pub golden_set: PathBuf,
    /// The predictions file.
    pub predictions: PathBuf,
    /// Case IDs in manifest order.
    pub case_ids: Vec<String>,
    /// Truth per case.
    pub labels: Vec<bool>,
    /// Score per case (exactly as written to the predictions file).
    pub scores: Vec<f64>,
    /// Whether the recorded answer is equivocal ([`EQUIVOCAL_EVERY`]).
    pub equivocal: Vec<bool>,
}

/// Every case whose index is 7 modulo this has an equivocal recorded answer (3 of 120), so the
/// run exercises the primary (worst-case) imputation and the one-sided equivocal analyses.
pub const EQUIVOCAL_EVERY: usize = 40;

/// The protocol's operating point.
pub const THRESHOLD: f64 = 0.5;
/// Goal of AC-ST-01 (sensitivity, lower 95% Wilson bound, at least).
pub const SENS_GOAL: f64 = 0.5;
/// Goal of AC-ST-02 (specificity, point estimate, at least): set above what the synthetic
/// model reaches, so this criterion must fail.
pub const SPEC_GOAL: f64 = 0.95;

/// Writes a demo golden set (locked at `world`'s time), predictions for it and a protocol
/// into `dir`.
pub fn write_demo_project(dir: &Path, world: &dyn World) -> Result<DemoProject> {
    let set = dir.join("golden-set");
    std::fs::create_dir_all(&set).map_err(|e| Error::io(&set, e))?;
    crate::demo::write_demo_set(&set, CASES, SEED, 0)?;
    let mut lock = crate::golden::LockOptions::new(&set);
    lock.note = "medgate selftest".into();
    crate::golden::lock_set(&set, &lock, world)?;

    let manifest = crate::table::read_table_as_strings(&set.join("manifest.csv"))?;
    let col = |name: &str| -> Result<Vec<String>> {
        let c = manifest
            .column(name)
            .map_err(|_| Error::Internal(format!("demo manifest has no `{name}` column")))?;
        let s = c.str().map_err(|e| Error::Internal(e.to_string()))?;
        Ok(s.iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let case_ids = col("case_id")?;
    let labels: Vec<bool> = col("finding")?.iter().map(|v| v.trim() == "1").collect();

    // A synthetic model: about 85% of positives and 80% of negatives on the right side of the
    // threshold, scores on a 1/1000 grid (so ties occur, as with real models).
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut text = String::from("case_id,score,answer\n");
    let mut scores = Vec::with_capacity(labels.len());
    let mut equivocal = Vec::with_capacity(labels.len());
    for (i, (id, &y)) in case_ids.iter().zip(&labels).enumerate() {
        let right: bool = rng.random::<f64>() < if y { 0.85 } else { 0.80 };
        let high = right == y;
        let u: f64 = rng.random();
        let s = if high { 0.5 + 0.5 * u } else { 0.4999 * u };
        let shown = format!("{s:.3}");
        scores.push(
            shown
                .parse::<f64>()
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
        let eq = i % EQUIVOCAL_EVERY == 7;
        equivocal.push(eq);
        text.push_str(&format!(
            "{id},{shown},{}\n",
            if eq { "equivocal" } else { "" }
        ));
    }
    let predictions = dir.join("predictions.csv");
    std::fs::write(&predictions, text).map_err(|e| Error::io(&predictions, e))?;

    let protocol = dir.join("protocol.yaml");
    std::fs::write(&protocol, protocol_text()).map_err(|e| Error::io(&protocol, e))?;
    Ok(DemoProject {
        protocol,
        golden_set: set,
        predictions,
        case_ids,
        labels,
        scores,
        equivocal,
    })
}

fn protocol_text() -> String {
    format!(
        r#"medgate_protocol: 1
protocol: {PROTOCOL_ID}
title: medgate self-test protocol
version: "1.0"
intended_use: Software validation of medgate itself; not a device function.
model:
  backend: replay
  predictions: predictions.csv
task:
  kind: binary
  threshold: {THRESHOLD}
golden_set:
  path: golden-set
  label_column: finding
subgroups:
  attributes: [sex]
statistics:
  confidence: 0.95
  interval: wilson
  min_subgroup_size: 10
acceptance:
  - id: AC-ST-01
    requirement: SRS-ST-01
    metric: sensitivity
    bound: lower
    at_least: {SENS_GOAL}
    rationale: Known to pass on the synthetic model.
  - id: AC-ST-02
    requirement: SRS-ST-02
    metric: specificity
    bound: point
    at_least: {SPEC_GOAL}
    rationale: Known to fail on the synthetic model.
report:
  formats: [md]
"#
    )
}

/// Wilson score interval from its closed form (FDA 2007; domain notes), independent of
/// [`crate::stats`].
pub fn wilson_reference(k: u64, n: u64) -> Option<(f64, f64, f64)> {
    if n == 0 {
        return None;
    }
    let z: f64 = 1.959_963_984_540_054;
    let (k, n) = (k as f64, n as f64);
    let centre = (k + z * z / 2.0) / (n + z * z);
    let half = z / (n + z * z) * (k * (n - k) / n + z * z / 4.0).sqrt();
    Some((k / n, (centre - half).max(0.0), (centre + half).min(1.0)))
}

/// AUROC by counting every positive-negative pair (ties 1/2), independent of [`crate::stats`].
pub fn auroc_reference(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let pos: Vec<f64> = labels
        .iter()
        .zip(scores)
        .filter(|p| *p.0)
        .map(|p| *p.1)
        .collect();
    let neg: Vec<f64> = labels
        .iter()
        .zip(scores)
        .filter(|p| !*p.0)
        .map(|p| *p.1)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut s = 0.0;
    for p in &pos {
        for n in &neg {
            s += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(s / (pos.len() * neg.len()) as f64)
}

fn exact(
    id: &str,
    description: &str,
    source: &str,
    expected: Value,
    observed: Value,
) -> SelftestCase {
    SelftestCase {
        id: id.into(),
        group: "end to end".into(),
        description: description.into(),
        source: source.into(),
        pass: expected == observed,
        expected,
        observed,
        tolerance: None,
    }
}

fn within(
    id: &str,
    description: &str,
    source: &str,
    expected: &[Option<f64>],
    observed: &[Option<f64>],
    tol: f64,
) -> SelftestCase {
    let pass = expected.len() == observed.len()
        && expected.iter().zip(observed).all(|(e, o)| match (e, o) {
            (Some(e), Some(o)) => (e - o).abs() <= tol,
            (None, None) => true,
            _ => false,
        });
    SelftestCase {
        id: id.into(),
        group: "end to end".into(),
        description: description.into(),
        source: source.into(),
        expected: json!(expected),
        observed: json!(observed),
        tolerance: Some(tol),
        pass,
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for e in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let e = e.map_err(|e| Error::io(from, e))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    Ok(())
}

/// Runs the end-to-end cases in `dir` (created; must not hold an earlier self-test).
pub fn cases(dir: &Path, world: &dyn World) -> Result<Vec<SelftestCase>> {
    if dir.join("protocol.yaml").exists() {
        return Err(Error::input_hint(
            format!("{}: already holds a self-test project", dir.display()),
            "use an empty or new work directory",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let project = write_demo_project(dir, world)?;
    let bundle = dir.join("bundle");
    let opts = crate::pipeline::RunOptions {
        out: Some(bundle.clone()),
        command: "medgate selftest".into(),
        ..Default::default()
    };
    let run = crate::pipeline::run(&project.protocol, &opts, world)?;
    let ev = &run.evidence;
    let mut out = Vec::new();
    let tally = "independent tally of the generated labels, scores and equivocal answers";

    // Independent expectations. The primary analysis counts an equivocal answer against the
    // truth (a positive as missed, a negative as a false alarm; domain notes): give it a score
    // below or above every real one.
    let primary: Vec<f64> = project
        .labels
        .iter()
        .zip(&project.scores)
        .zip(&project.equivocal)
        .map(|((&y, &s), &eq)| match (eq, y) {
            (false, _) => s,
            (true, true) => -1.0,
            (true, false) => 2.0,
        })
        .collect();
    let n_eq = project.equivocal.iter().filter(|e| **e).count();
    let (mut tp, mut fp, mut tn, mut fn_) = (0u64, 0u64, 0u64, 0u64);
    for (&y, &s) in project.labels.iter().zip(&primary) {
        match (y, s >= THRESHOLD) {
            (true, true) => tp += 1,
            (true, false) => fn_ += 1,
            (false, false) => tn += 1,
            (false, true) => fp += 1,
        }
    }
    let a = &ev.accountability;
    out.push(exact(
        "e2e/accountability",
        "every enrolled case accounted for: enrolled, evaluated, equivocal, not evaluated",
        tally,
        json!([CASES, CASES - n_eq, n_eq, 0]),
        json!([a.enrolled, a.evaluated, a.equivocal, a.not_evaluated.len()]),
    ));
    let o = &ev.statistics.overall;
    out.push(exact(
        "e2e/confusion",
        "2x2 table at the locked threshold: TP, FP, TN, FN",
        tally,
        json!([tp, fp, tn, fn_]),
        json!([o.tp, o.fp, o.tn, o.fn_]),
    ));
    let est = |e: &Option<crate::stats::Estimate>| match e {
        Some(e) => [Some(e.estimate), Some(e.lower), Some(e.upper)],
        None => [None, None, None],
    };
    let wil = |k, n| match wilson_reference(k, n) {
        Some((p, l, u)) => [Some(p), Some(l), Some(u)],
        None => [None, None, None],
    };
    let wsrc = "Wilson closed form (FDA 2007 statistical guidance), computed independently in the self-test";
    out.push(within(
        "e2e/sensitivity",
        "sensitivity with its 95% Wilson interval, as written to evidence.json",
        wsrc,
        &wil(tp, tp + fn_),
        &est(&o.sensitivity),
        1e-12,
    ));
    out.push(within(
        "e2e/specificity",
        "specificity with its 95% Wilson interval, as written to evidence.json",
        wsrc,
        &wil(tn, tn + fp),
        &est(&o.specificity),
        1e-12,
    ));
    out.push(within(
        "e2e/auroc",
        "AUROC (Mann-Whitney, ties 1/2; equivocal answers counted against the truth), as written to evidence.json",
        "pairwise count over every positive-negative pair, computed independently in the self-test",
        &[auroc_reference(&project.labels, &primary)],
        &[o.auroc.as_ref().map(|e| e.estimate)],
        1e-12,
    ));
    let sens_lower = wilson_reference(tp, tp + fn_).map(|w| w.1).unwrap_or(0.0);
    let spec = if tn + fp > 0 {
        tn as f64 / (tn + fp) as f64
    } else {
        0.0
    };
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    let (v1, v2) = (sens_lower >= SENS_GOAL, spec >= SPEC_GOAL);
    out.push(exact(
        "e2e/verdicts",
        "criterion verdicts AC-ST-01, AC-ST-02 and the overall verdict",
        "goals of the self-test protocol applied to the independently computed values",
        json!([verdict(v1), verdict(v2), verdict(v1 && v2)]),
        json!(
            ev.criteria
                .iter()
                .map(|c| c.verdict.label())
                .chain([ev.verdict.label()])
                .collect::<Vec<_>>()
        ),
    ));
    out.push(exact(
        "e2e/exit-code",
        "exit status of the run (0 pass, 1 a criterion failed)",
        "exit-code contract (README, crate::exit)",
        json!(if v1 && v2 { 0 } else { 1 }),
        json!(run.outcome.code()),
    ));

    // The bundle verifies.
    let vopts = crate::verify::VerifyOptions {
        golden_set: Some(project.golden_set.clone()),
        ..Default::default()
    };
    let rep = crate::verify::verify_bundle(&bundle, &vopts, world)?;
    out.push(exact(
        "e2e/verify-identical",
        "medgate verify on the fresh bundle (with its golden set) finds no difference",
        "a bundle verifies against itself by construction",
        json!({"identical": true, "problems": 0}),
        json!({"identical": rep.identical(), "problems": rep.problem_count()}),
    ));

    // Negative control 1: one number changed (and SHA256SUMS rewritten so only the
    // recomputation can catch it).
    let tampered = dir.join("bundle-tampered");
    copy_dir(&bundle, &tampered)?;
    let evp = tampered.join(crate::trace::bundle::EVIDENCE_FILE);
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&evp).map_err(|e| Error::io(&evp, e))?)
            .map_err(|e| Error::Internal(e.to_string()))?;
    let target = "$.statistics.overall.sensitivity.lower";
    if let Some(x) = v.pointer_mut("/statistics/overall/sensitivity/lower") {
        *x = json!(x.as_f64().unwrap_or(0.0) + 0.001);
    }
    std::fs::write(
        &evp,
        serde_json::to_string_pretty(&v).map_err(|e| Error::Internal(e.to_string()))?,
    )
    .map_err(|e| Error::io(&evp, e))?;
    crate::trace::bundle::write_sha256sums(&tampered)?;
    let rep =
        crate::verify::verify_bundle(&tampered, &crate::verify::VerifyOptions::default(), world)?;
    let paths: Vec<&str> = rep.discrepancies.iter().map(|d| d.path.as_str()).collect();
    out.push(exact(
        "e2e/verify-detects-tampered-number",
        "negative control: one number edited in evidence.json (SHA256SUMS rewritten) is caught and named",
        "the edit made by the self-test",
        json!({"identical": false, "names": target}),
        json!({"identical": rep.identical(), "names": if paths.contains(&target) { target.to_string() } else { paths.join(" ") }}),
    ));

    // Negative control 2: a signature, then an edit after signing.
    let signed = dir.join("bundle-signed");
    copy_dir(&bundle, &signed)?;
    let key_path = dir.join("selftest.key");
    crate::verify::sign::keygen(&key_path)?;
    let key = crate::verify::sign::read_secret_key(&key_path)?;
    crate::verify::sign::sign_bundle(
        &signed,
        &key,
        &ev.run_id,
        "medgate selftest",
        "tested",
        world,
    )?;
    let before =
        crate::verify::verify_bundle(&signed, &crate::verify::VerifyOptions::default(), world)?;
    let md = signed.join(crate::trace::bundle::JUNIT_FILE);
    let mut text = std::fs::read(&md).map_err(|e| Error::io(&md, e))?;
    text.extend_from_slice(b"\nedited after signing\n");
    std::fs::write(&md, text).map_err(|e| Error::io(&md, e))?;
    crate::trace::bundle::write_sha256sums(&signed)?;
    let after =
        crate::verify::verify_bundle(&signed, &crate::verify::VerifyOptions::default(), world)?;
    let valid = |r: &crate::verify::VerifyReport| r.signatures.iter().filter(|s| s.valid).count();
    out.push(exact(
        "e2e/signature",
        "an Ed25519 signature verifies, and fails once a bundle file is edited after signing (SHA256SUMS rewritten)",
        "21 CFR Part 11 signature binding, by construction",
        json!({"signatures": 1, "valid_before_edit": 1, "valid_after_edit": 0, "identical_after_edit": false}),
        json!({"signatures": before.signatures.len(), "valid_before_edit": valid(&before), "valid_after_edit": valid(&after), "identical_after_edit": after.identical()}),
    ));
    Ok(out)
}
