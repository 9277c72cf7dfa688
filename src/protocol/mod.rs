//! The validation protocol: the declarative YAML plan that fixes, before unblinding, the
//! model, the prompt, the operating point, the golden set, the subgroups, the statistics and
//! the acceptance criteria (FDA's "pre-specified statistical analysis plan").
//!
//! This stage owns the protocol types ([`types`]), their loading ([`load`]) and their
//! semantic checks ([`check`]). Later stages receive a parsed, checked [`Protocol`] and
//! never re-read the YAML. The JSON Schema ([`json_schema`]) is derived from the same types.

pub mod check;
pub mod load;
pub mod monitoring;
pub mod types;

use std::path::Path;

pub use check::{ExternalFacts, check};
pub use load::{LoadedProtocol, parse_protocol};
pub use monitoring::MonitoringSpec;
pub use types::*;

use crate::error::{Error, Result};

/// Reads and parses a protocol file. Structural problems come back as
/// [`Error::Invalid`] with every diagnostic found.
pub fn load(path: &Path) -> Result<LoadedProtocol> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = path.display().to_string();
    let source = String::from_utf8(bytes.clone()).map_err(|e| {
        Error::Invalid(vec![crate::diag::Diagnostic::error(
            &file,
            None,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )])
    })?;
    let protocol = parse_protocol(&file, &source).map_err(Error::Invalid)?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok(LoadedProtocol {
        protocol,
        path: path.to_path_buf(),
        dir,
        source,
        sha256: crate::hash::sha256_hex(&bytes),
    })
}

/// The JSON Schema of the protocol format, for editors (yaml-language-server) and tooling.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Protocol);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}
