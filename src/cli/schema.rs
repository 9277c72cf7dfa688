//! `medgate schema`: print the JSON Schema of the protocol format.

use crate::cli::GlobalArgs;
use crate::error::Result;
use crate::exit::Outcome;

/// Print the protocol format's JSON Schema (for yaml-language-server and other editors).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  medgate schema > protocols/protocol.schema.json\n\nThen start a protocol with:\n  # yaml-language-server: $schema=./protocol.schema.json"
)]
pub struct SchemaArgs {}

/// Runs `medgate schema`.
pub fn run(_args: SchemaArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let schema = crate::protocol::json_schema();
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    );
    Ok(Outcome::Pass)
}
