//! `medgate ledger`: list or verify a hash-chained audit ledger, of either record kind (see
//! [`crate::trace::ledger`]): the golden-set ledger beside a set, or the monitoring ledger
//! beside a release bundle. Both are checked by the same chain code.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::trace::ledger::{self, LedgerRecord};

/// List or verify a hash-chained audit ledger (golden-set runs or monitoring runs).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate ledger golden-sets/demo-cxr
  medgate ledger golden-sets/demo-cxr --verify
  medgate ledger runs/demo --verify            (the monitoring ledger runs/demo.monitoring.jsonl)
  medgate ledger path/to/LEDGER.jsonl --format json

Exit status with --verify: 0 chain intact, 1 chain broken (an entry edited or removed).")]
pub struct LedgerArgs {
    /// A golden-set directory (its LEDGER.jsonl), a release bundle directory (the monitoring
    /// ledger BUNDLE.monitoring.jsonl beside it) or a ledger file.
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
        if args
            .path
            .join(crate::trace::bundle::EVIDENCE_FILE)
            .is_file()
        {
            crate::monitor::default_ledger(&args.path)
        } else {
            args.path.join(ledger::LEDGER_FILE)
        }
    } else {
        args.path.clone()
    };
    if !file.exists() {
        return Err(Error::input_hint(
            format!("{}: no ledger", file.display()),
            "a golden-set ledger is created by the first `medgate run` on the set, a monitoring ledger by the first `medgate monitor` on the bundle",
        ));
    }
    let entries: Vec<LedgerRecord> = ledger::read_chain(&file)?;
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
            let runs = entries.iter().any(|e| matches!(e, LedgerRecord::Run(_)));
            let monitors = entries
                .iter()
                .any(|e| matches!(e, LedgerRecord::Monitor(_)));
            if runs || !monitors {
                println!(
                    "{:>4}  {:<20}  {:<10}  {:<24}  {:<12}  {:<14}  run",
                    "seq", "time", "user", "protocol", "model", "verdict"
                );
            }
            if monitors {
                println!(
                    "{:>4}  {:<20}  {:<10}  {:<24}  {:<10}  {:>7}  {:>7}  {:>6}  baseline",
                    "seq", "time", "user", "protocol", "status", "rows", "windows", "alarms"
                );
            }
            for e in &entries {
                match e {
                    LedgerRecord::Run(e) => println!(
                        "{:>4}  {:<20}  {:<10}  {:<24}  {:<12}  {:<14}  {}",
                        e.seq,
                        e.time,
                        e.user,
                        e.protocol,
                        crate::hash::short(&e.model_sha256),
                        e.verdict,
                        e.run_id
                    ),
                    LedgerRecord::Monitor(e) => println!(
                        "{:>4}  {:<20}  {:<10}  {:<24}  {:<10}  {:>7}  {:>7}  {:>6}  {}",
                        e.seq,
                        e.time,
                        e.user,
                        e.protocol,
                        e.status,
                        e.rows_read,
                        format!("+{}", e.new_windows),
                        format!("+{}", e.new_alarms),
                        e.baseline_run_id
                    ),
                }
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
