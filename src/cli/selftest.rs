//! `medgate selftest`: the tool-validation record (ISO 13485 4.1.6).

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::selftest::{self, SelftestOptions};
use crate::world::SystemWorld;

/// Validate this installation of medgate: reference values and an end-to-end protocol.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reruns medgate's reference-value cases (statistics fixtures with values from
statsmodels, scikit-learn, R pROC and R contingencytables, the release comparison's paired
statistics included) and a small end-to-end protocol (synthetic golden set,
run, independent recomputation, verification, tamper and signature controls), and writes a
tool-validation record a QA team can file (tool-validation.md and tool-validation.json).

Examples:
  medgate selftest
  medgate selftest --out validation/medgate-0.1.0
  medgate selftest --fixtures my-fixtures/ --format json

Exit status: 0 every case passed, 1 a case failed, 2 unreadable fixtures."
)]
pub struct SelftestArgs {
    /// Write tool-validation.md and tool-validation.json into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Read the reference fixtures from this directory instead of the built-in ones (the
    /// files of tests/fixtures/stats in DIR, those of tests/fixtures/compare in DIR/compare).
    #[arg(long, value_name = "DIR")]
    pub fixtures: Option<PathBuf>,
    /// Keep the end-to-end project in this directory (default: a temporary one, removed).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Run only the reference-value cases.
    #[arg(long)]
    pub skip_e2e: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate selftest`.
pub fn run(args: SelftestArgs, global: &GlobalArgs) -> Result<Outcome> {
    let world = SystemWorld::default();
    let opts = SelftestOptions {
        fixtures: args.fixtures.clone(),
        work_dir: args.work_dir.clone(),
        skip_e2e: args.skip_e2e,
    };
    let report = selftest::run_selftest(&opts, &world)?;
    if let Some(dir) = &args.out {
        let [md, js] = selftest::write_report(&report, dir)?;
        if !global.quiet {
            eprintln!("wrote {} and {}", md.display(), js.display());
        }
    }
    match args.format {
        OutputFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report)
                    .map_err(|e| Error::Internal(e.to_string()))?
            );
        }
        OutputFormat::Text => {
            let mut groups: Vec<&str> = Vec::new();
            for c in &report.cases {
                if !groups.contains(&c.group.as_str()) {
                    groups.push(&c.group);
                }
            }
            if !global.quiet {
                println!(
                    "medgate {} ({}) self-test, fixtures: {}",
                    report.medgate_version, report.medgate_commit, report.fixtures
                );
                for g in groups {
                    let n = report.cases.iter().filter(|c| c.group == g).count();
                    let p = report
                        .cases
                        .iter()
                        .filter(|c| c.group == g && c.pass)
                        .count();
                    println!(
                        "  {:<40} {p:>4}/{n:<4} {}",
                        g,
                        if p == n { "pass" } else { "FAIL" }
                    );
                }
            }
            for c in report.cases.iter().filter(|c| !c.pass) {
                println!(
                    "FAIL {}: {}: expected {}, observed {} ({})",
                    c.id, c.description, c.expected, c.observed, c.source
                );
            }
            println!(
                "{}: {} of {} cases passed",
                if report.all_passed() { "PASS" } else { "FAIL" },
                report.passed,
                report.total
            );
        }
    }
    Ok(if report.all_passed() {
        Outcome::Pass
    } else {
        Outcome::Fail
    })
}
