//! `medgate run`: protocol to evidence bundle.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::Result;
use crate::exit::Outcome;
use crate::pipeline::{self, RunOptions};
use crate::world::SystemWorld;

/// Run a validation protocol and write the evidence bundle.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate run protocols/demo-cxr.yaml
  medgate run protocols/demo-cxr.yaml --out runs/release-1.4 --release
  medgate run protocols/demo-cxr.yaml --resume --format json

Exit status: 0 every criterion passed, 1 a criterion failed or was not evaluable,
2 input error (invalid protocol, tampered golden set, model hash mismatch),
3 infrastructure failure (more cases not evaluated than the protocol tolerates).")]
pub struct RunArgs {
    /// The validation protocol (YAML).
    pub protocol: PathBuf,
    /// Bundle directory [default: runs/<protocol ID>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Release mode: refuse a dirty git tree or an unpinned model hash.
    #[arg(long)]
    pub release: bool,
    /// Continue an interrupted run from the journal in --out (a rerun into the same
    /// directory resumes anyway; this flag documents the intent).
    #[arg(long)]
    pub resume: bool,
    /// Render the PDF with this external `typst` binary instead of the embedded compiler.
    #[arg(long, value_name = "PATH")]
    pub typst_bin: Option<PathBuf>,
    /// Rerun into a signed bundle: its signatures are moved to signatures/superseded-N/
    /// (they do not cover the new run), with a warning. Without it, a signed bundle is refused.
    #[arg(long)]
    pub force: bool,
    /// Stop after inferring N cases (for testing interruption and resume).
    #[arg(long, hide = true)]
    pub limit: Option<usize>,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate run`.
pub fn run(args: RunArgs, global: &GlobalArgs) -> Result<Outcome> {
    let world = SystemWorld::default();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let opts = RunOptions {
        out: args.out.clone(),
        release: args.release,
        progress: !global.quiet && args.format == OutputFormat::Text,
        command,
        limit: args.limit,
        typst_bin: args.typst_bin.clone(),
        force: args.force,
    };
    let s = pipeline::run(&args.protocol, &opts, &world)?;
    let ev = &s.evidence;
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "run_id": ev.run_id,
                "protocol": ev.protocol.protocol,
                "verdict": ev.verdict,
                "exit_code": s.outcome.code(),
                "bundle": s.out_dir.display().to_string(),
                "results_sha256": ev.results_sha256,
                "inferred": s.inferred,
                "resumed": s.resumed,
                "accountability": ev.accountability,
                "criteria": ev.criteria.iter().map(|c| serde_json::json!({
                    "id": c.id, "requirement": c.requirement, "verdict": c.verdict,
                })).collect::<Vec<_>>(),
                "warnings": ev.warnings,
                "infrastructure_failure": s.infrastructure_failure,
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        OutputFormat::Text => {
            if !global.quiet {
                print!(
                    "{}",
                    crate::cli::summary::run_summary(&s, global.color_stdout())
                );
            }
        }
    }
    Ok(s.outcome)
}
