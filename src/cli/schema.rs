//! `medgate schema`: print the JSON Schema of the protocol format, or with `--evidence` of
//! the evidence record (`evidence.json`).

use crate::cli::GlobalArgs;
use crate::error::Result;
use crate::exit::Outcome;

/// Print the protocol format's JSON Schema (for yaml-language-server and other editors), or
/// the evidence record's (for QMS tools that validate bundles).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  medgate schema > protocols/protocol.schema.json\n  medgate schema --evidence > protocols/evidence.schema.json\n\nThen start a protocol with:\n  # yaml-language-server: $schema=./protocol.schema.json"
)]
pub struct SchemaArgs {
    /// Print the schema of `evidence.json` instead of the protocol's.
    #[arg(long)]
    pub evidence: bool,
}

/// Runs `medgate schema`.
pub fn run(args: SchemaArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let schema = if args.evidence {
        crate::trace::evidence::json_schema()
    } else {
        crate::protocol::json_schema()
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    );
    Ok(Outcome::Pass)
}
