//! `medgate selftest`: the tool-validation kit (ISO 13485:2016 4.1.6, software used in the
//! quality system is validated for its intended use).
//!
//! medgate ships the evidence of its own correctness in a form a QA team can rerun on the
//! machine where it is installed, and file as the software-validation record:
//!
//! - **Reference values** ([`mod@reference`]): every statistics fixture (intervals, DeLong AUROC,
//!   McNemar, multiplicity, agreement, two-sample and paired differences, simultaneous subgroup
//!   gap bounds, homogeneity tests, exact sample sizes, prevalence-adjusted PPV/NPV,
//!   calibration, equivocal imputation with 0/1 scores, and the release comparison's paired
//!   statistics: Newcombe method 10, exact and mid-p McNemar, paired DeLong; and the
//!   monitor's drift statistics: two-sample KS, Wasserstein, PSI, chi-square of an attribute
//!   mix) recomputed by this build and compared with the value an independent tool (statsmodels, scipy,
//!   scikit-learn, calzone-tool, R pROC, R contingencytables, a published table) produced,
//!   within a stated tolerance.
//! - **End to end** ([`e2e`]): a small synthetic golden set is generated and locked, a
//!   protocol with known acceptance criteria is run through the whole pipeline, the counts,
//!   intervals and verdicts are compared with values computed independently here, the bundle
//!   is verified, and negative controls (a tampered number, a file edited after signing) must
//!   be caught.
//!
//! The report ([`SelftestReport`]) names what was tested, the source of each expected value,
//! expected vs observed, the tolerance, pass/fail, the medgate version and build commit, the
//! host and the date. [`render_markdown`] gives the human record; the JSON is the same data.
//!
//! This module is a front-end composition (like `pipeline`): it may call every stage.

pub mod e2e;
pub mod reference;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::world::{HostInfo, World};

/// One self-test case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelftestCase {
    /// Stable ID, e.g. `ci/wilson/3-of-7/0.95`.
    pub id: String,
    /// What kind of computation.
    pub group: String,
    /// What was tested.
    pub description: String,
    /// Where the expected value comes from.
    pub source: String,
    /// Expected value(s).
    pub expected: Value,
    /// Observed value(s).
    pub observed: Value,
    /// Largest tolerated absolute difference (None: exact equality).
    pub tolerance: Option<f64>,
    /// Whether it passed.
    pub pass: bool,
}

/// Options of [`run_selftest`].
#[derive(Debug, Clone, Default)]
pub struct SelftestOptions {
    /// Read the fixtures from this directory instead of the embedded ones.
    pub fixtures: Option<PathBuf>,
    /// Work directory for the end-to-end run (default: a fresh directory under the system
    /// temporary directory, removed afterwards).
    pub work_dir: Option<PathBuf>,
    /// Skip the end-to-end part.
    pub skip_e2e: bool,
}

/// The tool-validation record.
#[derive(Debug, Clone, Serialize)]
pub struct SelftestReport {
    /// Report format version.
    pub medgate_selftest: u32,
    /// medgate version.
    pub medgate_version: String,
    /// Commit medgate was built from.
    pub medgate_commit: String,
    /// When the self-test ran (RFC 3339, UTC).
    pub date: String,
    /// Who ran it.
    pub user: String,
    /// Where it ran.
    pub host: HostInfo,
    /// Where the reference fixtures came from.
    pub fixtures: String,
    /// Cases run.
    pub total: usize,
    /// Cases passed.
    pub passed: usize,
    /// Cases failed.
    pub failed: usize,
    /// Every case.
    pub cases: Vec<SelftestCase>,
}

impl SelftestReport {
    /// True when every case passed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0 && self.total > 0
    }
}

/// Runs the reference-value cases and the end-to-end protocol.
pub fn run_selftest(opts: &SelftestOptions, world: &dyn World) -> Result<SelftestReport> {
    let fx = match &opts.fixtures {
        Some(d) => reference::Fixtures::from_dir(d)?,
        None => reference::Fixtures::embedded(),
    };
    let mut cases = reference::cases(&fx)?;
    if !opts.skip_e2e {
        let (dir, temporary) = match &opts.work_dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "medgate-selftest-{}-{}",
                    std::process::id(),
                    world.now().timestamp_nanos_opt().unwrap_or_default()
                )),
                true,
            ),
        };
        let r = e2e::cases(&dir, world);
        if temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        cases.extend(r?);
    }
    let passed = cases.iter().filter(|c| c.pass).count();
    Ok(SelftestReport {
        medgate_selftest: 1,
        medgate_version: env!("CARGO_PKG_VERSION").into(),
        medgate_commit: crate::trace::provenance::BUILD_COMMIT.into(),
        date: world
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        user: world.user(),
        host: world.host(),
        fixtures: fx.origin.clone(),
        total: cases.len(),
        passed,
        failed: cases.len() - passed,
        cases,
    })
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn compact(v: &Value) -> String {
    match v {
        Value::Array(a) => a.iter().map(compact).collect::<Vec<_>>().join(", "),
        Value::Null => "undefined".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The Markdown tool-validation report.
pub fn render_markdown(r: &SelftestReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "# medgate tool-validation record\n");
    let _ = writeln!(
        o,
        "Software validation of medgate for use in the quality system (ISO 13485:2016 4.1.6). \
         Each case recomputes a value with this build of medgate and compares it with a value from \
         an independent source, within the stated tolerance.\n"
    );
    let _ = writeln!(o, "| item | value |\n|---|---|");
    let _ = writeln!(o, "| medgate version | {} |", r.medgate_version);
    let _ = writeln!(o, "| build commit | `{}` |", r.medgate_commit);
    let _ = writeln!(o, "| date | {} |", r.date);
    let _ = writeln!(o, "| run by | {} |", md_escape(&r.user));
    let _ = writeln!(
        o,
        "| host | {} ({}, {}, {} CPUs: {}) |",
        md_escape(&r.host.hostname),
        md_escape(&r.host.os),
        r.host.arch,
        r.host.cpus,
        md_escape(&r.host.cpu)
    );
    let _ = writeln!(o, "| reference fixtures | {} |", md_escape(&r.fixtures));
    let _ = writeln!(
        o,
        "| cases | {} run, {} passed, {} failed |",
        r.total, r.passed, r.failed
    );
    let _ = writeln!(
        o,
        "| conclusion | **{}** |\n",
        if r.all_passed() {
            "PASS: every case met its acceptance criterion"
        } else {
            "FAIL: at least one case did not; do not rely on this installation until resolved"
        }
    );
    let mut groups: Vec<&str> = Vec::new();
    for c in &r.cases {
        if !groups.contains(&c.group.as_str()) {
            groups.push(&c.group);
        }
    }
    let _ = writeln!(
        o,
        "## Summary by area\n\n| area | cases | passed | failed |\n|---|---|---|---|"
    );
    for g in &groups {
        let in_g: Vec<&SelftestCase> = r.cases.iter().filter(|c| &c.group == g).collect();
        let p = in_g.iter().filter(|c| c.pass).count();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            md_escape(g),
            in_g.len(),
            p,
            in_g.len() - p
        );
    }
    if r.failed > 0 {
        let _ = writeln!(o, "\n## Failed cases\n");
        for c in r.cases.iter().filter(|c| !c.pass) {
            let _ = writeln!(
                o,
                "- `{}`: {}; expected {}, observed {} (source: {})",
                c.id,
                c.description,
                compact(&c.expected),
                compact(&c.observed),
                c.source
            );
        }
    }
    let _ = writeln!(o, "\n## Every case\n");
    let _ = writeln!(
        o,
        "| id | what was tested | source of expected value | expected | observed | tolerance | result |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for c in &r.cases {
        let _ = writeln!(
            o,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            c.id,
            md_escape(&c.description),
            md_escape(&c.source),
            md_escape(&compact(&c.expected)),
            md_escape(&compact(&c.observed)),
            c.tolerance
                .map(|t| format!("{t:e}"))
                .unwrap_or_else(|| "exact".into()),
            if c.pass { "pass" } else { "**FAIL**" }
        );
    }
    let _ = writeln!(
        o,
        "\nRe-run with `medgate selftest --out DIR`; the JSON record (`tool-validation.json`) holds the same data."
    );
    let _ = writeln!(o, "\n## Review and approval\n");
    let _ = writeln!(
        o,
        "| role | printed name | signature | date |\n|---|---|---|---|"
    );
    for role in ["Executed by", "Reviewed by (QA)", "Approved by"] {
        let _ = writeln!(o, "| {role} | | | |");
    }
    o
}

/// Writes `tool-validation.md` and `tool-validation.json` into `dir`; returns their paths.
pub fn write_report(r: &SelftestReport, dir: &Path) -> Result<[PathBuf; 2]> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    let md = dir.join("tool-validation.md");
    std::fs::write(&md, render_markdown(r)).map_err(|e| crate::Error::io(&md, e))?;
    let js = dir.join("tool-validation.json");
    let mut text =
        serde_json::to_string_pretty(r).map_err(|e| crate::Error::Internal(e.to_string()))?;
    text.push('\n');
    std::fs::write(&js, text).map_err(|e| crate::Error::io(&js, e))?;
    Ok([md, js])
}
