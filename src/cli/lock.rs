//! `medgate lock`: hash every file of a golden set and write its LOCK.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::golden::{LockOptions, lock_set};
use crate::world::SystemWorld;

/// Lock a golden set: hash every file (SHA-256) and write DIR/LOCK.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate lock golden-sets/demo-cxr --note \"v1, reviewed by QA\"
  medgate lock golden-sets/site-x --force --note \"relabelled case 17 (CAPA-42)\"
  medgate lock golden-sets/legacy --waiver \"InstitutionName kept: approved by DPO, ticket 881\"

Before writing, the manifest is checked (paths inside the set, unique case IDs, no image
twice, no missing image), screened for identifiers (manifest columns, DICOM headers per
the PS3.15 Basic Profile), and every image is decoded the way the model backends will
(`medgate inspect DIR --decode` shows the same pre-flight). Exit 0 locked, 2 refused (reasons
listed).")]
pub struct LockArgs {
    /// The golden-set directory.
    pub dir: PathBuf,
    /// Note recorded in the LOCK (why it was locked, by whose review).
    #[arg(long, default_value = "")]
    pub note: String,
    /// Replace an existing LOCK; its root hash is kept in the history section.
    #[arg(long)]
    pub force: bool,
    /// Lock despite de-identification findings, recording this reason in the LOCK.
    #[arg(long, value_name = "REASON")]
    pub waiver: Option<String>,
    /// Lock despite images that cannot be decoded, recording this reason in the LOCK.
    #[arg(long, value_name = "REASON")]
    pub waive_undecodable: Option<String>,
    /// Multi-frame DICOM policy for the decoding pre-flight (the protocol's `golden_set.frames`).
    #[arg(long, value_parser = ["refuse", "first", "middle"], default_value = "refuse")]
    pub frames: String,
    /// VOI choice for the decoding pre-flight (the protocol's `golden_set.voi`).
    #[arg(long, value_parser = ["window", "lut", "minmax"], default_value = "window")]
    pub voi: String,
    /// Manifest relative to the set (default: manifest.csv or manifest.parquet).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Case-ID column.
    #[arg(long, default_value = "case_id")]
    pub case_id_column: String,
    /// Image path column (repeat for several).
    #[arg(long = "image-column", default_values_t = vec!["image".to_string()])]
    pub image_columns: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate lock`.
pub fn run(args: LockArgs, global: &GlobalArgs) -> Result<Outcome> {
    let mut opts = LockOptions::new(&args.dir);
    opts.manifest = args.manifest;
    opts.case_id_column = args.case_id_column;
    opts.image_columns = args.image_columns;
    opts.note = args.note;
    opts.force = args.force;
    opts.waiver = args.waiver;
    opts.undecodable_waiver = args.waive_undecodable;
    opts.decode = crate::cli::inspect::decode_options(&args.frames, &args.voi);
    let out = lock_set(&args.dir, &opts, &SystemWorld::default())?;
    if !global.quiet {
        for d in out.waived.iter().chain(&out.undecodable) {
            eprintln!("waived: {d}");
        }
    }
    let l = &out.lock;
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "lock_file": opts.lock_file.display().to_string(),
                "root": l.root_hash,
                "files": l.files.len(),
                "bytes": l.total_bytes(),
                "cases": l.cases,
                "deid_screen": l.deid_screen,
                "waived": out.waived,
                "decode_preflight": l.decode_preflight,
                "undecodable": out.undecodable,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| Error::Internal(e.to_string()))?
            );
        }
        OutputFormat::Text => println!(
            "locked {}: {} files, {} bytes, {} cases, root {}",
            args.dir.display(),
            l.files.len(),
            l.total_bytes(),
            l.cases,
            l.root_hash
        ),
    }
    Ok(Outcome::Pass)
}
