//! `medgate diff`: what differs between two evidence bundles.

use std::path::PathBuf;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::exit::Outcome;

/// Output formats of `medgate diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum DiffFormat {
    /// A readable summary.
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// A self-contained HTML page.
    Html,
}

/// Compare two evidence bundles.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Shows what differs between bundle A (older) and bundle B (newer): protocol ID,
version and text (line diff), model backend, name, hash and settings, golden-set root,
medgate version, verdict; every metric overall and per subgroup level; every criterion's
verdict. When both bundles hold the same cases (case ID, image hash, label), the
sensitivity, specificity and AUROC differences B - A are paired (Newcombe 1998 method 10
with mid-p McNemar; paired DeLong) and the changed decisions are counted.

Neither bundle is verified: run `medgate verify` on each first.

Examples:
  medgate diff runs/demo-cxr-ref runs/demo-cxr-compare
  medgate diff runs/A runs/B --format json
  medgate diff runs/A runs/B --format html --out diff.html

Exit status: 0 the bundles were compared (whatever differs), 2 a bundle cannot be read."
)]
pub struct DiffArgs {
    /// Bundle A (the older release).
    pub bundle_a: PathBuf,
    /// Bundle B (the newer release).
    pub bundle_b: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `medgate diff`.
pub fn run(args: DiffArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let d = crate::diff::diff_bundles(&args.bundle_a, &args.bundle_b)?;
    let text = match args.format {
        DiffFormat::Text => crate::diff::render_text(&d),
        DiffFormat::Json => {
            let mut s =
                serde_json::to_string_pretty(&d).map_err(|e| Error::Internal(e.to_string()))?;
            s.push('\n');
            s
        }
        DiffFormat::Html => crate::diff::render_html(&d),
    };
    match &args.out {
        Some(p) => std::fs::write(p, text).map_err(|e| Error::io(p, e))?,
        None => print!("{text}"),
    }
    Ok(Outcome::Pass)
}
