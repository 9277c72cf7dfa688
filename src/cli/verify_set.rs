//! `medgate verify-set`: re-hash every byte of a golden set and compare it with its LOCK.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::golden::{lock, read_lock, training_overlap};

/// Verify a golden set against its LOCK (every byte, by default).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate verify-set golden-sets/demo-cxr
  medgate verify-set golden-sets/demo-cxr --format json
  medgate verify-set golden-sets/demo-cxr --training data/train/manifest.csv

Exit 0: every file matches. Exit 2: files were added, are missing or changed (each listed by
path), or an image also appears in the training data given with --training.
--sizes-only compares paths and sizes without reading content: a quick look, never evidence.")]
pub struct VerifySetArgs {
    /// The golden-set directory.
    pub dir: PathBuf,
    /// LOCK file (default DIR/LOCK).
    #[arg(long)]
    pub lock: Option<PathBuf>,
    /// Compare only paths and sizes (fast; does not check content).
    #[arg(long)]
    pub sizes_only: bool,
    /// A training set (directory or manifest): fail if any golden image's content is in it.
    #[arg(long, value_name = "DIR|MANIFEST")]
    pub training: Option<PathBuf>,
    /// Image column of a training manifest.
    #[arg(long, default_value = "image")]
    pub training_image_column: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate verify-set`.
pub fn run(args: VerifySetArgs, global: &GlobalArgs) -> Result<Outcome> {
    let lock_file = args
        .lock
        .clone()
        .unwrap_or_else(|| args.dir.join(lock::LOCK_FILE));
    if !lock_file.is_file() {
        return Err(Error::input_hint(
            format!("{}: no LOCK file", lock_file.display()),
            format!("lock the set first: medgate lock {}", args.dir.display()),
        ));
    }
    let report = lock::verify_with(&args.dir, &lock_file, !args.sizes_only)?;
    let overlaps = match &args.training {
        Some(t) => Some(training_overlap(
            &read_lock(&lock_file)?,
            t,
            &args.training_image_column,
        )?),
        None => None,
    };
    let ok = report.is_intact() && overlaps.as_ref().is_none_or(|o| o.is_empty());
    match args.format {
        OutputFormat::Json => {
            let mut v =
                serde_json::to_value(&report).map_err(|e| Error::Internal(e.to_string()))?;
            v["intact"] = serde_json::Value::Bool(report.is_intact());
            if let Some(o) = &overlaps {
                v["training_overlap"] =
                    serde_json::to_value(o).map_err(|e| Error::Internal(e.to_string()))?;
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| Error::Internal(e.to_string()))?
            );
        }
        OutputFormat::Text => {
            for p in report.problems() {
                println!("{p}");
            }
            if let Some(o) = &overlaps {
                for x in o {
                    println!("in training set: {} (= {})", x.golden_path, x.training_path);
                }
            }
            if !global.quiet || !ok {
                let mode = if report.full {
                    "every byte"
                } else {
                    "sizes only"
                };
                if report.is_intact() {
                    eprintln!(
                        "{}: intact ({} files, {} bytes, {mode}; root {})",
                        args.dir.display(),
                        report.files,
                        report.bytes,
                        report.lock_root_hash
                    );
                } else {
                    eprintln!(
                        "{}: DOES NOT MATCH its LOCK: {} added, {} missing, {} changed",
                        args.dir.display(),
                        report.added.len(),
                        report.missing.len(),
                        report.changed.len()
                    );
                }
                if let Some(o) = overlaps.as_ref().filter(|o| !o.is_empty()) {
                    eprintln!(
                        "{} golden image(s) also in the training data: test data must be independent",
                        o.len()
                    );
                }
            }
        }
    }
    Ok(if ok { Outcome::Pass } else { Outcome::Invalid })
}
