//! The command-line front end: argument types and one `run` function per subcommand.
//!
//! Conventions every subcommand follows:
//! - stdout is data (a text table, or JSON with `--format json`); stderr is progress and
//!   diagnostics;
//! - colour only on a TTY (or `--color always`);
//! - each command returns an [`Outcome`] or an [`Error`]; [`main`] maps both to the exit codes
//!   in [`crate::exit`], and nowhere else decides a process status.

pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub mod check;
pub mod completions;
pub mod diff;
pub mod keygen;
pub mod ledger;
pub mod run;
pub mod schema;
pub mod selftest;
pub mod sign;
pub mod summary;
pub mod verify;

use crate::error::Error;
use crate::exit::Outcome;

pub mod demo_data;
pub mod inspect;
pub mod lock;
pub mod monitor;
pub mod plan;
pub mod report;
pub mod stats;
pub mod verify_set;

/// Machine- or human-readable output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// A readable table or summary.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    /// Colour when stderr/stdout is a terminal.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Options shared by every subcommand.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct GlobalArgs {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

impl GlobalArgs {
    /// Whether to colour text written to stdout.
    pub fn color_stdout(&self) -> bool {
        use std::io::IsTerminal;
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }

    /// Whether to colour text written to stderr.
    pub fn color_stderr(&self) -> bool {
        use std::io::IsTerminal;
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

/// The environment variables medgate reads (shown by `--help` and in the man page).
pub const ENVIRONMENT_HELP: &str = "Environment:
  MEDGATE_USER       who ran it, recorded in evidence and the ledger (default: USER,
                     USERNAME, then the passwd entry)
  SOURCE_DATE_EPOCH  freeze the clock (seconds since 1970) for reproducible evidence
  NO_COLOR           never colour output (same as --color never)
  HOSTNAME           host name recorded in provenance when the system gives none
  <model.api_key_env> the variable a protocol names for an OpenAI-compatible server's key

Exit status: 0 pass, 1 criteria failed or bundle tampered, 2 input error, 3 infrastructure
or internal error (see `medgate man`).";

/// medgate: validation evidence for medical-imaging vision-language models.
#[derive(Debug, Parser)]
#[command(
    name = "medgate",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = ENVIRONMENT_HELP
)]
pub struct Cli {
    /// Shared options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check validation protocols (structure, semantics, files, traceability links).
    Check(check::CheckArgs),
    /// Print the JSON Schema of the protocol format.
    Schema(schema::SchemaArgs),
    /// Run a protocol: verify inputs, infer every case, compute statistics, write the bundle.
    Run(run::RunArgs),
    /// List or verify a hash-chained audit ledger (golden-set or monitoring runs).
    Ledger(ledger::LedgerArgs),
    /// Re-render a bundle's report (PDF, HTML, Markdown) from its evidence.json.
    Report(report::ReportArgs),
    /// Sensitivity, specificity, AUROC and subgroup gaps with confidence intervals for any
    /// table of predictions.
    Stats(stats::StatsArgs),
    /// Sample size: positive cases needed for a sensitivity goal.
    Plan(plan::PlanArgs),
    /// Write the deterministic synthetic demo golden set.
    DemoData(demo_data::DemoDataArgs),
    /// Hash every file of a golden set and write its LOCK.
    Lock(lock::LockArgs),
    /// Re-hash a golden set and compare it with its LOCK.
    VerifySet(verify_set::VerifySetArgs),
    /// Summarise a golden set: cases, labels, subgroups, images.
    Inspect(inspect::InspectArgs),
    /// Serve a model over the OpenAI-compatible chat-completions API.
    Serve(serve::ServeArgs),
    /// Verify an evidence bundle by recomputing it; check its signatures.
    Verify(verify::VerifyArgs),
    /// Compare two evidence bundles: identity, protocol text, every metric (paired when the
    /// cases match), criteria.
    Diff(diff::DiffArgs),
    /// Generate an Ed25519 key pair for signing bundles.
    Keygen(keygen::KeygenArgs),
    /// Sign an evidence bundle (printed name, date/time, meaning).
    Sign(sign::SignArgs),
    /// Validate this installation: reference values and an end-to-end protocol.
    Selftest(selftest::SelftestArgs),
    /// Post-market monitoring: a production log against the verified release bundle.
    Monitor(monitor::MonitorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), generated from the command-line definitions.
    Man(completions::ManArgs),
}

/// Writes `text` to standard output. A reader that closed the pipe early (`medgate monitor
/// ... | head`) ends the output quietly instead of a panic: the command has written its files
/// before it prints, and its exit status stands. Any other write error is an I/O error.
pub(crate) fn emit(text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("<stdout>", e)),
        _ => Ok(()),
    }
}

/// Runs a parsed command line and returns the process status.
pub fn main(cli: Cli) -> ExitCode {
    let global = cli.global.clone();
    let result: Result<Outcome, Error> = match cli.command {
        Command::Check(a) => check::run(a, &global),
        Command::Schema(a) => schema::run(a, &global),
        Command::Run(a) => run::run(a, &global),
        Command::Ledger(a) => ledger::run(a, &global),
        Command::Report(args) => report::run(args, &global),
        Command::Stats(args) => stats::run(args, &global),
        Command::Plan(args) => plan::run(args, &global),
        Command::DemoData(a) => demo_data::run(a, &global),
        Command::Lock(a) => lock::run(a, &global),
        Command::VerifySet(a) => verify_set::run(a, &global),
        Command::Inspect(a) => inspect::run(a, &global),
        Command::Serve(args) => serve::run(args, &global),
        Command::Verify(a) => verify::run(a, &global),
        Command::Diff(a) => diff::run(a, &global),
        Command::Keygen(a) => keygen::run(a, &global),
        Command::Sign(a) => sign::run(a, &global),
        Command::Selftest(a) => selftest::run(a, &global),
        Command::Monitor(a) => monitor::run(a, &global),
        Command::Completions(a) => completions::run_completions(a, &global),
        Command::Man(a) => completions::run_man(a, &global),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            // Errors print even with --quiet: quiet silences progress, never failures.
            let _ = global.quiet;
            eprintln!("{}", e.render());
            ExitCode::from(e.exit_code())
        }
    }
}
