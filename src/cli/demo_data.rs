//! `medgate demo-data`: writes the deterministic synthetic demo golden set.

use std::path::PathBuf;

use crate::cli::GlobalArgs;
use crate::error::Result;
use crate::exit::Outcome;

/// Generate a synthetic chest-radiograph phantom golden set (not real patient data).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate demo-data golden-sets/demo-cxr --cases 1000 --seed 20261128 --dicom-every 100
  medgate lock golden-sets/demo-cxr --note \"synthetic demo set\"

The same --cases/--seed/--dicom-every always give byte-identical files. The set is written
unlocked: run `medgate lock` on it afterwards.")]
pub struct DemoDataArgs {
    /// Output directory (created; must not already hold a manifest.csv).
    pub out: PathBuf,
    /// Number of cases.
    #[arg(long, default_value_t = 1000)]
    pub cases: usize,
    /// Random seed; each case is rendered from (seed, case index) alone.
    #[arg(long, default_value_t = 20261128)]
    pub seed: u64,
    /// Store every K-th case (K, 2K, ...) as DICOM instead of PNG; 0 for none.
    #[arg(long, default_value_t = 100)]
    pub dicom_every: usize,
}

/// Runs `medgate demo-data`.
pub fn run(args: DemoDataArgs, global: &GlobalArgs) -> Result<Outcome> {
    crate::demo::write_demo_set(&args.out, args.cases, args.seed, args.dicom_every)?;
    if !global.quiet {
        eprintln!(
            "wrote {} synthetic cases (seed {}) to {}",
            args.cases,
            args.seed,
            args.out.display()
        );
    }
    println!("{}", args.out.display());
    Ok(Outcome::Pass)
}
