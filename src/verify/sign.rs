//! Electronic signatures over an evidence bundle, in the manner of 21 CFR Part 11 (11.50,
//! 11.70): each signature shows the signer's printed name, the date and time, and the meaning
//! of the signature, and is bound to exactly what was signed.
//!
//! # What is signed
//! A signature covers a [`SignedStatement`]: the SHA-256 of the bundle's `SHA256SUMS` file
//! (its exact bytes), the bundle's run ID, the printed name, the meaning and the time. The
//! signed message is the domain tag [`MESSAGE_TAG`] followed by the canonical JSON of the
//! statement (keys sorted, compact), so name, meaning and time cannot be altered without
//! breaking the signature. Because `SHA256SUMS` lists the SHA-256 of every other file in the
//! bundle, editing any file after signing either breaks `SHA256SUMS` (caught by its check) or
//! requires rewriting it (caught here: its hash no longer matches the signed one).
//!
//! # Files
//! - Secret key (`medgate keygen --out KEY`): one line, the 32-byte Ed25519 seed in hex, file
//!   mode 0600. Public key (`KEY.pub`): one line, the 32-byte verifying key in hex.
//! - Signatures: `signatures/<seq>-<slug>.json` in the bundle (not listed in `SHA256SUMS`, so
//!   signing never changes what earlier signers signed), each a [`SignatureRecord`].
//!
//! # Trust
//! A signature proves that the holder of the embedded public key signed the statement. Who
//! that key belongs to is outside the bundle: anyone can make a key and sign a forged bundle.
//! So a signature is *trusted* only when its key is one of the auditor's `--trusted-key`s;
//! a signature by any other key is reported as untrusted (never as ok), with its fingerprint
//! for the reader to check against the organisation's key register. With `--trusted-key`,
//! `medgate verify` requires at least one valid trusted signature (removing the signatures
//! does not make a bundle pass), and `--require-signature ROLE` requires one by the
//! protocol's signatory of that role. Names are printed with control characters escaped.
//!
//! Ed25519 (RFC 8032) through ed25519-dalek, verified with `verify_strict` (rejects weak keys
//! and malleable signatures).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::trace::bundle::{SIGNATURES_DIR, SUMS_FILE};
use crate::world::World;

/// Signature record format version.
const SIGNATURE_FORMAT: u32 = 1;

/// Domain separation: the bytes signed are this tag, then the canonical statement JSON.
pub const MESSAGE_TAG: &str = "medgate-bundle-signature-v1\n";

/// What a signer attests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatement {
    /// Run ID of the bundle (from `evidence.json`).
    pub run_id: String,
    /// SHA-256 of the exact bytes of the bundle's `SHA256SUMS`.
    pub sha256sums_sha256: String,
    /// The signer's printed name.
    pub name: String,
    /// The meaning of the signature (e.g. `approved`, `reviewed`, `authored`).
    pub meaning: String,
    /// When it was signed (RFC 3339, UTC).
    pub signed_at: String,
}

impl SignedStatement {
    /// The exact bytes that are signed.
    pub fn message(&self) -> Result<Vec<u8>> {
        let mut m = MESSAGE_TAG.as_bytes().to_vec();
        m.extend_from_slice(crate::hash::canonical_json(self)?.as_bytes());
        Ok(m)
    }
}

/// One `signatures/*.json` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRecord {
    /// Format version.
    pub medgate_signature: u32,
    /// Always `ed25519`.
    pub algorithm: String,
    /// What was signed.
    pub statement: SignedStatement,
    /// The signer's Ed25519 public key (hex, 32 bytes).
    pub public_key: String,
    /// The Ed25519 signature over [`SignedStatement::message`] (hex, 64 bytes).
    pub signature: String,
}

/// The result of checking one signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureCheck {
    /// The file, relative to the bundle (`signatures/001-jane-doe.json`).
    pub file: String,
    /// Printed name (empty when the file is unreadable).
    pub name: String,
    /// Meaning.
    pub meaning: String,
    /// When.
    pub signed_at: String,
    /// Fingerprint of the public key: first 16 hex digits of its SHA-256.
    pub key_fingerprint: String,
    /// Whether the key is one of the auditor's `--trusted-key`s (false when none were given:
    /// an unknown key is never trusted).
    pub trusted: bool,
    /// The signature is mathematically valid and covers the bundle as it is now (says
    /// nothing about who made it: see `trusted`).
    pub valid: bool,
    /// Why not valid (or a note).
    pub problems: Vec<String>,
}

/// Fingerprint of a public key as shown to people: the first 16 hex digits of its SHA-256.
pub fn fingerprint(key: &VerifyingKey) -> String {
    crate::hash::sha256_hex(key.as_bytes())[..16].to_string()
}

fn decode_hex<const N: usize>(s: &str, what: &str, file: &Path) -> Result<[u8; N]> {
    let bytes = hex::decode(s.trim())
        .map_err(|e| Error::input(format!("{}: {what} is not hex: {e}", file.display())))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        Error::input(format!(
            "{}: {what} has {} bytes, expected {N}",
            file.display(),
            b.len()
        ))
    })
}

/// The path of the public key written beside a secret key (`KEY.pub`).
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_os_string();
    s.push(".pub");
    PathBuf::from(s)
}

/// Generates a key pair from the operating system's CSPRNG and writes the secret key to
/// `out` (mode 0600, never overwriting) and the public key to `out.pub`. Returns the public key.
pub fn keygen(out: &Path) -> Result<VerifyingKey> {
    use rand::TryRngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut seed).map_err(|e| {
        Error::infra(format!(
            "the operating system's random number generator failed: {e}"
        ))
    })?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key();
    let pub_path = public_key_path(out);
    for p in [out, pub_path.as_path()] {
        if p.exists() {
            return Err(Error::input_hint(
                format!("{}: already exists", p.display()),
                "keys are never overwritten: choose another --out, or remove the old key deliberately",
            ));
        }
    }
    write_secret(out, &format!("{}\n", hex::encode(seed)))?;
    std::fs::write(&pub_path, format!("{}\n", hex::encode(public.as_bytes())))
        .map_err(|e| Error::io(&pub_path, e))?;
    Ok(public)
}

#[cfg(unix)]
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

#[cfg(not(unix))]
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
}

/// Reads a secret key file written by [`keygen`].
pub fn read_secret_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let seed: [u8; 32] = decode_hex(&text, "the secret key", path).map_err(|e| {
        Error::input_hint(
            e.to_string(),
            "pass the secret key written by `medgate keygen --out KEY` (not KEY.pub)",
        )
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a public key file (`KEY.pub`).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bytes: [u8; 32] = decode_hex(&text, "the public key", path)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| {
        Error::input(format!(
            "{}: not an Ed25519 public key: {e}",
            path.display()
        ))
    })
}

/// SHA-256 of the bundle's `SHA256SUMS` bytes (read without following a symlink).
pub fn sums_sha256(bundle: &Path) -> Result<String> {
    let bytes = crate::fsx::read_inside(bundle, Path::new(SUMS_FILE))?;
    Ok(crate::hash::sha256_hex(&bytes))
}

/// Lower-case ASCII words of a name joined by `-`, for file names.
fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "signer".into()
    } else {
        s.chars().take(40).collect()
    }
}

/// Signature files in a bundle (relative paths, sorted): `signatures/*.json`, symlinks
/// included (they are checked, and fail, rather than silently skipped). A symlinked
/// `signatures/` directory is an error.
fn signature_files(bundle: &Path) -> Result<Vec<String>> {
    let dir = crate::fsx::safe_join(bundle, Path::new(SIGNATURES_DIR))?;
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let e = e.map_err(|e| Error::io(&dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let t = e.file_type().map_err(|er| Error::io(e.path(), er))?;
        if name.ends_with(".json") && (t.is_file() || t.is_symlink()) {
            out.push(format!("{SIGNATURES_DIR}/{name}"));
        }
    }
    out.sort();
    Ok(out)
}

/// Signs the bundle: writes `signatures/<seq>-<slug>.json` and returns its relative path and
/// the record. The caller must have checked `SHA256SUMS` against the files first (one does not
/// sign a bundle that is already inconsistent); `run_id` comes from its `evidence.json`.
pub fn sign_bundle(
    bundle: &Path,
    key: &SigningKey,
    run_id: &str,
    name: &str,
    meaning: &str,
    world: &dyn World,
) -> Result<(String, SignatureRecord)> {
    if name.trim().is_empty() || meaning.trim().is_empty() {
        return Err(Error::input_hint(
            "a signature needs the signer's printed name and its meaning",
            "e.g. --name \"Jane Doe\" --meaning approved",
        ));
    }
    let statement = SignedStatement {
        run_id: run_id.to_string(),
        sha256sums_sha256: sums_sha256(bundle)?,
        name: name.trim().to_string(),
        meaning: meaning.trim().to_string(),
        signed_at: world
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let signature: Signature = key.sign(&statement.message()?);
    let record = SignatureRecord {
        medgate_signature: SIGNATURE_FORMAT,
        algorithm: "ed25519".into(),
        statement,
        public_key: hex::encode(key.verifying_key().as_bytes()),
        signature: hex::encode(signature.to_bytes()),
    };
    crate::fsx::create_dir_inside(bundle, Path::new(SIGNATURES_DIR))?;
    let seq = signature_files(bundle)?
        .iter()
        .filter_map(|f| {
            f.trim_start_matches("signatures/")
                .split('-')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0)
        + 1;
    let rel = format!("{SIGNATURES_DIR}/{seq:03}-{}.json", slug(name));
    let path = crate::fsx::safe_join(bundle, Path::new(&rel))?;
    let mut json =
        serde_json::to_string_pretty(&record).map_err(|e| Error::Internal(e.to_string()))?;
    json.push('\n');
    // create_new: a signature file is never overwritten, nor a planted symlink followed.
    {
        use std::io::Write;
        let mut f = crate::fsx::create_new(&path)?;
        f.write_all(json.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok((rel, record))
}

/// Checks every signature in the bundle against the current `SHA256SUMS` and run ID.
/// `trusted`: the auditor's keys; a signature by any other key is reported untrusted.
pub fn check_signatures(
    bundle: &Path,
    run_id: &str,
    trusted: &[VerifyingKey],
) -> Result<Vec<SignatureCheck>> {
    let files = signature_files(bundle)?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let current = sums_sha256(bundle)?;
    let mut out = Vec::new();
    for rel in files {
        out.push(check_one(bundle, &rel, &current, run_id, trusted));
    }
    Ok(out)
}

fn check_one(
    bundle: &Path,
    rel: &str,
    current_sums: &str,
    run_id: &str,
    trusted: &[VerifyingKey],
) -> SignatureCheck {
    let mut c = SignatureCheck {
        file: rel.to_string(),
        name: String::new(),
        meaning: String::new(),
        signed_at: String::new(),
        key_fingerprint: String::new(),
        trusted: false,
        valid: false,
        problems: Vec::new(),
    };
    let path = bundle.join(rel);
    let record: SignatureRecord = match crate::fsx::read_inside_to_string(bundle, Path::new(rel))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            c.problems.push(format!("unreadable signature file: {e}"));
            return c;
        }
    };
    c.name = record.statement.name.clone();
    c.meaning = record.statement.meaning.clone();
    c.signed_at = record.statement.signed_at.clone();
    if record.medgate_signature != SIGNATURE_FORMAT || record.algorithm != "ed25519" {
        c.problems.push(format!(
            "unsupported signature format {} / algorithm {}",
            record.medgate_signature, record.algorithm
        ));
        return c;
    }
    let key = match decode_hex::<32>(&record.public_key, "public_key", &path)
        .and_then(|b| VerifyingKey::from_bytes(&b).map_err(|e| Error::input(e.to_string())))
    {
        Ok(k) => k,
        Err(e) => {
            c.problems.push(format!("bad public key: {e}"));
            return c;
        }
    };
    c.key_fingerprint = fingerprint(&key);
    c.trusted = trusted.iter().any(|t| t.as_bytes() == key.as_bytes());
    let sig = match decode_hex::<64>(&record.signature, "signature", &path) {
        Ok(b) => Signature::from_bytes(&b),
        Err(e) => {
            c.problems.push(e.to_string());
            return c;
        }
    };
    let mut ok = true;
    match record.statement.message() {
        Ok(m) => {
            if key.verify_strict(&m, &sig).is_err() {
                ok = false;
                c.problems.push("signature does not match the signed statement (name, meaning, time or hash altered)".into());
            }
        }
        Err(e) => {
            ok = false;
            c.problems.push(e.to_string());
        }
    }
    if record.statement.sha256sums_sha256 != current_sums {
        ok = false;
        c.problems.push(format!(
            "SHA256SUMS changed since signing (signed {}, now {}): the bundle was modified after this signature",
            short(&record.statement.sha256sums_sha256),
            short(current_sums)
        ));
    }
    if record.statement.run_id != run_id {
        ok = false;
        c.problems.push(format!(
            "signed run {} but the bundle is run {run_id}",
            record.statement.run_id
        ));
    }
    if !c.trusted {
        // Not a failure of the signature itself, but never reported as ok.
        c.problems.push(if trusted.is_empty() {
            format!(
                "key {} is unknown: no --trusted-key given, so nothing says who holds it",
                c.key_fingerprint
            )
        } else {
            format!(
                "key {} is not among the --trusted-key keys (untrusted)",
                c.key_fingerprint
            )
        });
    }
    c.valid = ok;
    c
}

use crate::hash::short;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::FixedWorld;

    fn bundle() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("evidence.json"), "{}").unwrap();
        crate::trace::bundle::write_sha256sums(d.path()).unwrap();
        d
    }

    #[test]
    fn rfc8032_test_vector_1_signs_as_published() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let k = SigningKey::from_bytes(&seed);
        assert_eq!(
            hex::encode(k.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(k.sign(b"").to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn keygen_sign_and_check_then_tamper() {
        let d = bundle();
        let keys = tempfile::tempdir().unwrap();
        let kp = keys.path().join("qa.key");
        let public = keygen(&kp).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&kp).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(keygen(&kp).is_err(), "never overwrites a key");
        assert_eq!(read_public_key(&public_key_path(&kp)).unwrap(), public);
        let key = read_secret_key(&kp).unwrap();
        let w = FixedWorld::default();
        let (rel, rec) =
            sign_bundle(d.path(), &key, "RUN-1", "Jane Q. Doe", "approved", &w).unwrap();
        assert_eq!(rel, "signatures/001-jane-q-doe.json");
        assert_eq!(rec.statement.signed_at, "2026-01-01T00:00:00Z");
        let checks = check_signatures(d.path(), "RUN-1", &[]).unwrap();
        assert_eq!(checks.len(), 1);
        assert!(checks[0].valid, "{:?}", checks[0].problems);
        assert!(!checks[0].trusted, "an unknown key is never trusted");
        // Trusted with the right key, untrusted with another.
        let c = &check_signatures(d.path(), "RUN-1", &[public]).unwrap()[0];
        assert!(c.valid && c.trusted && c.problems.is_empty(), "{c:?}");
        let other = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        assert!(!check_signatures(d.path(), "RUN-1", &[other]).unwrap()[0].trusted);
        // A second signature gets the next number.
        let (rel2, _) =
            sign_bundle(d.path(), &key, "RUN-1", "Jane Q. Doe", "reviewed", &w).unwrap();
        assert_eq!(rel2, "signatures/002-jane-q-doe.json");

        // Editing the meaning in the signature file breaks it.
        let p = d.path().join(&rel);
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\"approved\"", "\"reviewed\"");
        std::fs::write(&p, text).unwrap();
        let c = &check_signatures(d.path(), "RUN-1", &[]).unwrap()[0];
        assert!(!c.valid);
        assert!(c.problems[0].contains("does not match"), "{:?}", c.problems);

        // Rewriting SHA256SUMS after an edit is caught by every signature.
        std::fs::write(d.path().join("evidence.json"), "{\"x\":1}").unwrap();
        crate::trace::bundle::write_sha256sums(d.path()).unwrap();
        let cs = check_signatures(d.path(), "RUN-1", &[]).unwrap();
        assert!(cs.iter().all(|c| !c.valid));
        assert!(
            cs[1]
                .problems
                .iter()
                .any(|p| p.contains("SHA256SUMS changed")),
            "{:?}",
            cs[1].problems
        );
    }
}
