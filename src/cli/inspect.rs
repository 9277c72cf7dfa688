//! `medgate inspect`: what a statistician looks at before running anything.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;

/// Summarise a golden set: cases, label balance, subgroup sizes, image formats and sizes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate inspect golden-sets/demo-cxr
  medgate inspect golden-sets/demo-cxr --min-subgroup 50 --format json

Subgroup levels with fewer cases than --min-subgroup are flagged SMALL. Exit 0, or 2 when
rows name missing or unreadable images.")]
pub struct InspectArgs {
    /// The golden-set directory.
    pub dir: PathBuf,
    /// Flag subgroup levels with fewer cases than this.
    #[arg(long, default_value_t = 30)]
    pub min_subgroup: u64,
    /// Image path column.
    #[arg(long, default_value = "image")]
    pub image_column: String,
    /// Case-ID column.
    #[arg(long, default_value = "case_id")]
    pub case_id_column: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate inspect`.
pub fn run(args: InspectArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let r = crate::golden::inspect::inspect(
        &args.dir,
        &args.image_column,
        &args.case_id_column,
        args.min_subgroup,
    )?;
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| Error::Internal(e.to_string()))?
        ),
        OutputFormat::Text => print!("{}", r.render_text()),
    }
    Ok(if r.problems.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Invalid
    })
}
