//! `medgate check`: validate protocols without running anything.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::Result;
use crate::exit::Outcome;
use crate::pipeline::check_protocol;

/// Check one or more validation protocols.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  medgate check protocols/demo-cxr.yaml\n  medgate check protocols/*.yaml --format json\n\nExit status: 0 all valid, 2 any invalid."
)]
pub struct CheckArgs {
    /// Protocol files (YAML).
    #[arg(required = true)]
    pub protocols: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate check`.
pub fn run(args: CheckArgs, global: &GlobalArgs) -> Result<Outcome> {
    let mut all_valid = true;
    let mut json = Vec::new();
    for path in &args.protocols {
        let report = check_protocol(path);
        let valid = report.is_valid();
        all_valid &= valid;
        match args.format {
            OutputFormat::Json => json.push(serde_json::json!({
                "file": path.display().to_string(),
                "valid": valid,
                "protocol": report.protocol.as_ref().map(|p| p.protocol.protocol.clone()),
                "diagnostics": report.diagnostics,
            })),
            OutputFormat::Text => {
                for d in &report.diagnostics {
                    if d.is_error() || !global.quiet {
                        eprintln!("{d}");
                    }
                }
                if !global.quiet {
                    let errors = report.diagnostics.iter().filter(|d| d.is_error()).count();
                    let warnings = report.diagnostics.len() - errors;
                    if valid {
                        println!("{}: valid ({warnings} warning(s))", path.display());
                    } else {
                        println!(
                            "{}: invalid ({errors} error(s), {warnings} warning(s))",
                            path.display()
                        );
                    }
                }
            }
        }
    }
    if args.format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    }
    Ok(if all_valid {
        Outcome::Pass
    } else {
        Outcome::Invalid
    })
}
