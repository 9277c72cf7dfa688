//! `medgate sign`: a detached electronic signature over a bundle.

use std::path::PathBuf;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::trace::Evidence;
use crate::trace::bundle::{self, EVIDENCE_FILE};
use crate::verify::sign;
use crate::world::SystemWorld;

/// Sign an evidence bundle (printed name, date/time and meaning, bound to SHA256SUMS).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Adds signatures/<seq>-<name>.json: an Ed25519 signature over the SHA-256 of the
bundle's SHA256SUMS, the run ID, the printed name, the meaning and the time. Editing any
bundle file afterwards makes `medgate verify` fail. The bundle must be intact to be signed.

Examples:
  medgate sign runs/VP-PTX-001 --key ~/.medgate/jane-doe.key --name \"Jane Doe\" --meaning approved
  medgate sign runs/VP-PTX-001 --key keys/author.key --name \"A. Author\" --meaning authored

Exit status: 0 signed, 2 the bundle is not intact or the key cannot be read."
)]
pub struct SignArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Secret key file from `medgate keygen`.
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    /// Meaning of the signature, e.g. `approved`, `reviewed`, `authored`.
    #[arg(long)]
    pub meaning: String,
    /// The signer's printed name.
    #[arg(long)]
    pub name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `medgate sign`.
pub fn run(args: SignArgs, _global: &GlobalArgs) -> Result<Outcome> {
    let dir = &args.bundle;
    let ev_path = dir.join(EVIDENCE_FILE);
    if !ev_path.is_file() || !dir.join(bundle::SUMS_FILE).is_file() {
        return Err(Error::input_hint(
            format!(
                "{}: not a medgate evidence bundle (no evidence.json or SHA256SUMS)",
                dir.display()
            ),
            "pass the bundle directory written by `medgate run --out DIR`",
        ));
    }
    let problems = bundle::check_sha256sums(dir)?;
    if !problems.is_empty() {
        let list = problems
            .iter()
            .map(|p| format!("{} {}", p.problem, p.path))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::input_hint(
            format!(
                "{}: refusing to sign: files do not match SHA256SUMS ({list})",
                dir.display()
            ),
            "run `medgate verify` on the bundle; sign only an intact bundle",
        ));
    }
    let text = crate::fsx::read_inside_to_string(dir, std::path::Path::new(EVIDENCE_FILE))?;
    let evidence: Evidence = serde_json::from_str(&text).map_err(|e| {
        Error::input(format!(
            "{}: not a medgate evidence record: {e}",
            ev_path.display()
        ))
    })?;
    let key = sign::read_secret_key(&args.key)?;
    let world = SystemWorld::default();
    let (rel, record) = sign::sign_bundle(
        dir,
        &key,
        &evidence.run_id,
        &args.name,
        &args.meaning,
        &world,
    )?;
    match args.format {
        OutputFormat::Json => {
            let v = serde_json::json!({ "file": rel, "record": record, "key_fingerprint": sign::fingerprint(&key.verifying_key()) });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        OutputFormat::Text => {
            let s = &record.statement;
            use crate::fsx::printable as p;
            println!(
                "signed {} as \"{}\" by {} at {} (key {})",
                p(&s.run_id),
                p(&s.meaning),
                p(&s.name),
                s.signed_at,
                sign::fingerprint(&key.verifying_key())
            );
            println!("signature: {}", dir.join(&rel).display());
        }
    }
    Ok(Outcome::Pass)
}
