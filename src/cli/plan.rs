//! `medgate plan`: how many cases a golden set needs for a sensitivity (or specificity) goal,
//! or for an AUROC goal.
//!
//! Prints the exact binomial plan of [`crate::stats::samplesize`] (Flahault et al. 2005's
//! smallest `n` and Chu & Cole 2007's saw-tooth-safe `n`, with the exact power achieved at
//! each) or the AUROC plan with the Hanley-McNeil or the Obuchowski (pROC `power.roc.test`)
//! variance (`--auroc-variance`), always naming the method used.

use clap::builder::{PossibleValuesParser, TypedValueParser as _};

use super::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::protocol::Metric;
use crate::stats::samplesize::{
    AurocVariance, auroc_plan, auroc_power, exact_plan, normal_approx_positives,
};

/// `--auroc-variance`: the variance of the AUROC the plan uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum AurocVarianceArg {
    /// Hanley & McNeil (1982).
    #[default]
    HanleyMcneil,
    /// Obuchowski (1994) binormal, as R pROC's power.roc.test.
    Obuchowski,
}

impl From<AurocVarianceArg> for AurocVariance {
    fn from(v: AurocVarianceArg) -> Self {
        match v {
            AurocVarianceArg::HanleyMcneil => Self::HanleyMcNeil,
            AurocVarianceArg::Obuchowski => Self::Obuchowski,
        }
    }
}

/// Arguments of `medgate plan`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  medgate plan --expected 0.9 --goal 0.8
  medgate plan --expected 0.95 --goal 0.85 --one-sided-alpha 0.05 --power 0.95
  medgate plan --expected 0.92 --goal 0.85 --power 0.9 --prevalence 0.3 --format json
  medgate plan --metric auroc --expected 0.9 --goal 0.8 --ratio 2
  medgate plan --metric auroc --auroc-variance obuchowski --expected 0.9 --goal 0.8
  medgate plan --metric auroc --expected 0.9 --goal 0.8 --positives 100 --ratio 1

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
    /// AUROC only: the variance of the AUROC.
    #[arg(long, value_enum, default_value_t = AurocVarianceArg::HanleyMcneil)]
    pub auroc_variance: AurocVarianceArg,
    /// AUROC only: print the power at this many positives (negatives `ceil(ratio * N)`)
    /// instead of a size.
    #[arg(long, value_name = "N")]
    pub positives: Option<u64>,
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
        return run_auroc(&args, alpha);
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

/// The AUROC branch of `medgate plan`: a size, or the power at `--positives`.
fn run_auroc(args: &PlanArgs, alpha: f64) -> Result<Outcome> {
    let variance = AurocVariance::from(args.auroc_variance);
    let method = variance.method();
    let (plan, at_given) = match args.positives {
        Some(np) => {
            let nn = (args.ratio * np as f64).ceil().max(1.0) as u64;
            let bad = || {
                Error::input_hint(
                    format!("no power for {np} positives and {nn} negatives"),
                    "--expected must exceed --goal, both in (0, 1), and --positives at least 1",
                )
            };
            if !(args.ratio > 0.0 && args.ratio.is_finite()) {
                return Err(bad());
            }
            let power =
                auroc_power(variance, args.expected, args.goal, alpha, np, nn).ok_or_else(bad)?;
            let plan = crate::stats::samplesize::AurocPlan {
                positives: np,
                negatives: nn,
                power,
            };
            (plan, true)
        }
        None => (
            auroc_plan(
                variance,
                args.expected,
                args.goal,
                alpha,
                args.power,
                args.ratio,
            )
            .ok_or_else(|| invalid(args, alpha))?,
            false,
        ),
    };
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "metric": "auroc",
                "method": method,
                "variance": match variance {
                    AurocVariance::HanleyMcNeil => "hanley-mcneil",
                    AurocVariance::Obuchowski => "obuchowski",
                },
                "expected": args.expected,
                "goal": args.goal,
                "one_sided_alpha": alpha,
                "power": if at_given { None } else { Some(args.power) },
                "ratio": args.ratio,
                "positives": plan.positives,
                "negatives": plan.negatives,
                "achieved_power": plan.power,
            })
        ),
        OutputFormat::Text => {
            if at_given {
                println!(
                    "{} positives and {} negatives: power {:.4} that the one-sided {alpha} lower bound of the AUROC clears {} at an expected AUROC of {}",
                    plan.positives, plan.negatives, plan.power, args.goal, args.expected
                );
            } else {
                println!(
                    "{} positives and {} negatives: power {:.4} (target {}) that the one-sided {alpha} lower bound of the AUROC clears {} at an expected AUROC of {}",
                    plan.positives,
                    plan.negatives,
                    plan.power,
                    args.power,
                    args.goal,
                    args.expected
                );
            }
            println!("method: {method}");
        }
    }
    Ok(Outcome::Pass)
}
