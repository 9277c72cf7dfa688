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
unlocked: run `medgate lock` on it afterwards.

With --stream, OUT is a CSV production log instead: fresh phantoms scored by the protocol's
model, one case every --interval-minutes from 2026-03-02T00:00:00Z, labels for 70% of cases, and
from case --drift-from on every second case from a new manufacturer (NovaRay) whose images are
washed out (see src/monitor/stream.rs):
  medgate demo-data --stream runs/stream.csv --cases 4000 --drift-from 2000")]
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
    /// Write a synthetic production log (CSV) to OUT instead of a golden set.
    #[arg(long)]
    pub stream: bool,
    /// With --stream: the protocol whose model scores the cases.
    #[arg(long, default_value = "protocols/demo-cxr.yaml", requires = "stream")]
    pub protocol: PathBuf,
    /// With --stream: first drifted case (0-based); omit for a stream without drift.
    #[arg(long, requires = "stream")]
    pub drift_from: Option<u64>,
    /// With --stream: minutes between cases.
    #[arg(long, default_value_t = 6, requires = "stream")]
    pub interval_minutes: i64,
}

/// Runs `medgate demo-data`.
pub fn run(args: DemoDataArgs, global: &GlobalArgs) -> Result<Outcome> {
    if args.stream {
        let lp = crate::protocol::load(&args.protocol)?;
        let spec = crate::monitor::stream::StreamSpec {
            cases: args.cases as u64,
            seed: args.seed,
            drift_from: args.drift_from.unwrap_or(u64::MAX),
            start_ms: 1_772_409_600_000, // 2026-03-02T00:00:00Z
            interval_ms: args.interval_minutes * 60_000,
        };
        let n = crate::monitor::stream::write_stream(&lp, &spec, &args.out)?;
        if !global.quiet {
            eprintln!(
                "wrote a production log of {n} cases (seed {}, drift from {}) to {}",
                args.seed,
                args.drift_from
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "never".into()),
                args.out.display()
            );
        }
        println!("{}", args.out.display());
        return Ok(Outcome::Pass);
    }
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
