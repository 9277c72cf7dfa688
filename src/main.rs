//! The `medgate` binary: parse the command line, hand it to the library.
use clap::Parser;

fn main() -> std::process::ExitCode {
    medgate::cli::main(medgate::cli::Cli::parse())
}
