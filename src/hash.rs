//! SHA-256 helpers and canonical JSON, shared by every stage that fingerprints content.
//!
//! Hashes are lowercase hex (sha2 0.11's digest no longer formats as hex itself). Canonical
//! JSON is serde_json's compact output of a value whose maps are sorted by key and whose
//! floats print in shortest round-trip form, so the same content always hashes the same.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The first 12 characters of a hash, for messages (the whole hash goes into records).
pub fn short(h: &str) -> &str {
    // By characters, not bytes: a crafted hash field may hold multi-byte characters.
    crate::fsx::prefix(h, 12)
}

/// SHA-256 of a byte slice, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a file, streamed in 1 MiB blocks (bounded memory), with its size.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Re-serialises a value with every object's keys sorted (recursively).
pub fn canonicalize(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), canonicalize(&m[k]));
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(canonicalize).collect())
        }
        other => other.clone(),
    }
}

/// Canonical compact JSON of any serialisable value.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<String> {
    let v = serde_json::to_value(value).map_err(|e| Error::Internal(format!("serialise: {e}")))?;
    serde_json::to_string(&canonicalize(&v)).map_err(|e| Error::Internal(format!("serialise: {e}")))
}

/// SHA-256 of the canonical JSON of a value.
pub fn canonical_sha256<T: serde::Serialize>(value: &T) -> Result<String> {
    Ok(sha256_hex(canonical_json(value)?.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc_matches_fips_180_2() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v = serde_json::json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": 0.1}});
        assert_eq!(
            canonical_json(&v).unwrap(),
            r#"{"a":{"c":0.1,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }
}
