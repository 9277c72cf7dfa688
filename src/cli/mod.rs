//! The command-line front end: argument types and one `run` function per subcommand.
//!
//! Conventions every subcommand follows:
//! - stdout is data (a text table, or JSON with `--format json`); stderr is progress and
//!   diagnostics;
//! - colour only on a TTY (or `--color always`);
//! - each command returns an [`Outcome`] or an [`Error`]; [`main`] maps both to the exit codes
//!   in [`crate::exit`], and nowhere else decides a process status.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::Error;
use crate::exit::Outcome;

pub mod demo_data;
pub mod inspect;
pub mod lock;
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
    /// Whether to colour text written to stderr.
    pub fn color_stderr(&self) -> bool {
        use std::io::IsTerminal;
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

/// medgate: validation evidence for medical-imaging vision-language models.
#[derive(Debug, Parser)]
#[command(name = "medgate", version, about, long_about = None, propagate_version = true)]
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
    /// Write the deterministic synthetic demo golden set.
    DemoData(demo_data::DemoDataArgs),
    /// Hash every file of a golden set and write its LOCK.
    Lock(lock::LockArgs),
    /// Re-hash a golden set and compare it with its LOCK.
    VerifySet(verify_set::VerifySetArgs),
    /// Summarise a golden set: cases, labels, subgroups, images.
    Inspect(inspect::InspectArgs),
}

/// Runs a parsed command line and returns the process status.
pub fn main(cli: Cli) -> ExitCode {
    let global = cli.global.clone();
    let result: Result<Outcome, Error> = match cli.command {
        Command::DemoData(a) => demo_data::run(a, &global),
        Command::Lock(a) => lock::run(a, &global),
        Command::VerifySet(a) => verify_set::run(a, &global),
        Command::Inspect(a) => inspect::run(a, &global),
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
