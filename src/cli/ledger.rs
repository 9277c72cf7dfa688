//! `medgate ledger`: list or verify the audit ledger beside a golden set.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::trace::ledger;

/// List or verify the hash-chained audit ledger of a golden set.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate ledger golden-sets/demo-cxr
  medgate ledger golden-sets/demo-cxr --verify
  medgate ledger path/to/LEDGER.jsonl --format json

Exit status with --verify: 0 chain intact, 1 chain broken (an entry edited or removed).")]
pub struct LedgerArgs {
    /// A golden-set directory (its LEDGER.jsonl) or a ledger file.
    pub path: PathBuf,
    /// Verify the hash chain.
    #[arg(long)]
    pub verify: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate ledger`.
pub fn run(args: LedgerArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let file = if args.path.is_dir() {
        args.path.join(ledger::LEDGER_FILE)
    } else {
        args.path.clone()
    };
    if !file.exists() {
        return Err(Error::input_hint(
            format!("{}: no ledger", file.display()),
            "a ledger is created by the first `medgate run` on the set",
        ));
    }
    let entries = ledger::read(&file)?;
    let breaks = if args.verify {
        ledger::verify(&entries)?
    } else {
        Vec::new()
    };
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({ "ledger": file.display().to_string(), "entries": entries, "verified": args.verify, "breaks": breaks });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        OutputFormat::Text => {
            println!(
                "{:>4}  {:<20}  {:<10}  {:<24}  {:<12}  {:<14}  run",
                "seq", "time", "user", "protocol", "model", "verdict"
            );
            for e in &entries {
                println!(
                    "{:>4}  {:<20}  {:<10}  {:<24}  {:<12}  {:<14}  {}",
                    e.seq,
                    e.time,
                    e.user,
                    e.protocol,
                    crate::fsx::prefix(&e.model_sha256, 12),
                    e.verdict,
                    e.run_id
                );
            }
            if args.verify {
                if breaks.is_empty() {
                    println!("chain intact: {} entries", entries.len());
                } else {
                    for b in &breaks {
                        eprintln!("error: {}:{}: {}", file.display(), b.line, b.problem);
                    }
                }
            }
        }
    }
    Ok(if breaks.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail
    })
}
