//! `medgate plan`: how many cases a golden set needs for a sensitivity (or specificity) goal.
//!
//! Prints [`crate::stats::sample_size_positives`] and, given the expected prevalence, the total
//! number of cases to enrol; the formula and its references are in [`crate::stats::samplesize`].

use super::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::stats::sample_size_positives;

/// Arguments of `medgate plan`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  medgate plan --expected 0.9 --goal 0.8
  medgate plan --expected 0.92 --goal 0.85 --power 0.9 --prevalence 0.3 --format json

For a specificity goal the same numbers are negatives (pass 1 - prevalence as --prevalence).")]
pub struct PlanArgs {
    /// Expected sensitivity of the device.
    #[arg(long)]
    pub expected: f64,
    /// Performance goal the lower confidence bound must clear.
    #[arg(long)]
    pub goal: f64,
    /// Two-sided confidence level of the reported interval.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Probability that the lower bound clears the goal.
    #[arg(long, default_value_t = 0.8)]
    pub power: f64,
    /// Expected fraction of positives among enrolled cases (prints the total to enrol).
    #[arg(long)]
    pub prevalence: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate plan`.
pub fn run(args: PlanArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let positives = sample_size_positives(args.expected, args.goal, args.confidence, args.power)
        .ok_or_else(|| {
            Error::input_hint(
                format!(
                    "no sample size for expected {} against goal {} (confidence {}, power {})",
                    args.expected, args.goal, args.confidence, args.power
                ),
                "all values must lie strictly between 0 and 1, and --expected must exceed --goal",
            )
        })?;
    let total = match args.prevalence {
        Some(p) if p > 0.0 && p <= 1.0 => Some((positives as f64 / p).ceil() as u64),
        Some(p) => {
            return Err(Error::input_hint(
                format!("prevalence {p} is not in (0, 1]"),
                "give the expected fraction of positives, e.g. 0.3",
            ));
        }
        None => None,
    };
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "expected": args.expected,
                "goal": args.goal,
                "confidence": args.confidence,
                "power": args.power,
                "positives": positives,
                "prevalence": args.prevalence,
                "total_cases": total,
            });
            println!("{v}");
        }
        OutputFormat::Text => {
            println!(
                "{positives} positive cases give a {:.0}% chance that the {}% lower bound clears {} at an expected sensitivity of {}",
                args.power * 100.0,
                args.confidence * 100.0,
                args.goal,
                args.expected
            );
            if let (Some(t), Some(p)) = (total, args.prevalence) {
                println!("enrol about {t} cases at prevalence {p}");
            }
        }
    }
    Ok(Outcome::Pass)
}
