//! `medgate plan`: how many cases a golden set needs for a sensitivity (or specificity) goal,
//! or for an AUROC goal.
//!
//! Prints the exact binomial plan of [`crate::stats::samplesize`] (Flahault et al. 2005's
//! smallest `n` and Chu & Cole 2007's saw-tooth-safe `n`, with the exact power achieved at
//! each) or the Obuchowski / Hanley-McNeil AUROC plan, always naming the method used.

use clap::builder::{PossibleValuesParser, TypedValueParser as _};

use super::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::protocol::Metric;
use crate::stats::samplesize::{auroc_plan, exact_plan, normal_approx_positives};

/// Arguments of `medgate plan`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  medgate plan --expected 0.9 --goal 0.8
  medgate plan --expected 0.95 --goal 0.85 --one-sided-alpha 0.05 --power 0.95
  medgate plan --expected 0.92 --goal 0.85 --power 0.9 --prevalence 0.3 --format json
  medgate plan --metric auroc --expected 0.9 --goal 0.8 --ratio 2

For a specificity goal the same numbers are negatives (pass 1 - prevalence as --prevalence).
The exact plan uses the one-sided exact (Clopper-Pearson) lower bound; a two-sided
--confidence C corresponds to one-sided alpha (1 - C) / 2.")]
pub struct PlanArgs {
    /// What the goal is on: `sensitivity` (also specificity) or `auroc`.
    #[arg(
        long,
        default_value = "sensitivity",
        value_parser = PossibleValuesParser::new(["sensitivity", "specificity", "auroc"])
            .map(|s| Metric::parse(&s).unwrap_or(Metric::Sensitivity))
    )]
    pub metric: Metric,
    /// Expected value of the metric for the device.
    #[arg(long)]
    pub expected: f64,
    /// Performance goal the lower confidence bound must clear.
    #[arg(long)]
    pub goal: f64,
    /// Two-sided confidence level of the reported interval.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// One-sided alpha (overrides --confidence), e.g. 0.05 to reproduce published tables.
    #[arg(long, value_name = "A")]
    pub one_sided_alpha: Option<f64>,
    /// Probability that the lower bound clears the goal.
    #[arg(long, default_value_t = 0.8)]
    pub power: f64,
    /// AUROC only: negatives per positive.
    #[arg(long, default_value_t = 1.0)]
    pub ratio: f64,
    /// Expected fraction of positives among enrolled cases (prints the total to enrol).
    #[arg(long)]
    pub prevalence: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

fn invalid(args: &PlanArgs, alpha: f64) -> Error {
    Error::input_hint(
        format!(
            "no sample size for expected {} against goal {} (one-sided alpha {alpha}, power {})",
            args.expected, args.goal, args.power
        ),
        "all values must lie strictly between 0 and 1, and --expected must exceed --goal",
    )
}

/// Runs `medgate plan`.
pub fn run(args: PlanArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let alpha = args
        .one_sided_alpha
        .unwrap_or((1.0 - args.confidence) / 2.0);
    let total = |positives: u64| -> Result<Option<u64>> {
        match args.prevalence {
            Some(p) if p > 0.0 && p <= 1.0 => Ok(Some((positives as f64 / p).ceil() as u64)),
            Some(p) => Err(Error::input_hint(
                format!("prevalence {p} is not in (0, 1]"),
                "give the expected fraction of positives, e.g. 0.3",
            )),
            None => Ok(None),
        }
    };
    if args.metric == Metric::Auroc {
        let plan = auroc_plan(args.expected, args.goal, alpha, args.power, args.ratio)
            .ok_or_else(|| invalid(&args, alpha))?;
        let method =
            "Obuchowski (1998) with the Hanley & McNeil (1982) variance, normal approximation";
        match args.format {
            OutputFormat::Json => println!(
                "{}",
                serde_json::json!({
                    "metric": "auroc",
                    "method": method,
                    "expected": args.expected,
                    "goal": args.goal,
                    "one_sided_alpha": alpha,
                    "power": args.power,
                    "ratio": args.ratio,
                    "positives": plan.positives,
                    "negatives": plan.negatives,
                    "achieved_power": plan.power,
                })
            ),
            OutputFormat::Text => {
                println!(
                    "{} positives and {} negatives: power {:.4} (target {}) that the one-sided {alpha} lower bound of the AUROC clears {} at an expected AUROC of {}",
                    plan.positives,
                    plan.negatives,
                    plan.power,
                    args.power,
                    args.goal,
                    args.expected
                );
                println!("method: {method}");
            }
        }
        return Ok(Outcome::Pass);
    }
    let plan = exact_plan(args.expected, args.goal, alpha, args.power)
        .ok_or_else(|| invalid(&args, alpha))?;
    let normal = normal_approx_positives(args.expected, args.goal, alpha, args.power);
    let total = total(plan.safe)?;
    let method = "exact binomial (Clopper-Pearson lower bound; Flahault, Cadilhac & Thomas 2005), saw-tooth-safe size (Chu & Cole 2007)";
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "metric": args.metric,
                "method": method,
                "expected": args.expected,
                "goal": args.goal,
                "confidence": args.confidence,
                "one_sided_alpha": alpha,
                "power": args.power,
                "positives": plan.safe,
                "exact_n": plan.exact,
                "exact_power": plan.exact_power,
                "safe_n": plan.safe,
                "safe_power": plan.safe_power,
                "critical_successes": plan.safe_critical,
                "scanned_to": plan.scanned_to,
                "normal_approximation_n": normal,
                "prevalence": args.prevalence,
                "total_cases": total,
            });
            println!("{v}");
        }
        OutputFormat::Text => {
            let unit = if args.metric == Metric::Specificity {
                "negative"
            } else {
                "positive"
            };
            println!(
                "{} {unit} cases (power {:.4}, target {}; power stays above target from here on) for the one-sided {alpha} exact lower bound to clear {} at an expected {} of {}",
                plan.safe, plan.safe_power, args.power, args.goal, args.metric, args.expected
            );
            println!(
                "smallest n reaching the target: {} (power {:.4}); pass needs at least {} of {} correct",
                plan.exact, plan.exact_power, plan.safe_critical, plan.safe
            );
            if let Some(n) = normal {
                println!("normal approximation (for comparison only): {n}");
            }
            println!("method: {method}");
            if let (Some(t), Some(p)) = (total, args.prevalence) {
                println!("enrol about {t} cases at prevalence {p}");
            }
        }
    }
    Ok(Outcome::Pass)
}
