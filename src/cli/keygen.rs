//! `medgate keygen`: an Ed25519 key pair for signing bundles.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::Result;
use crate::exit::Outcome;
use crate::verify::sign;

/// Generate an Ed25519 key pair for `medgate sign`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes the secret key to KEYFILE (mode 0600; keep it private, one per person)
and the public key to KEYFILE.pub (register it; pass it to `medgate verify --trusted-key`).
Existing files are never overwritten.

Examples:
  medgate keygen --out ~/.medgate/jane-doe.key
  medgate keygen --out keys/qa-lead.key --format json"
)]
pub struct KeygenArgs {
    /// Secret key file to create (the public key goes to FILE.pub).
    #[arg(long, value_name = "KEYFILE")]
    pub out: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate keygen`.
pub fn run(args: KeygenArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let public = sign::keygen(&args.out)?;
    let pub_path = sign::public_key_path(&args.out);
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({
                "secret_key": args.out.display().to_string(),
                "public_key": pub_path.display().to_string(),
                "public_key_hex": hex::encode(public.as_bytes()),
                "fingerprint": sign::fingerprint(&public),
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        OutputFormat::Text => {
            println!(
                "secret key: {} (mode 0600: keep it private)",
                args.out.display()
            );
            println!("public key: {}", pub_path.display());
            println!("fingerprint: {}", sign::fingerprint(&public));
        }
    }
    Ok(Outcome::Pass)
}
