//! The validation protocol: the declarative YAML plan that fixes, before unblinding, the
//! model, the prompt, the operating point, the golden set, the subgroups, the statistics and
//! the acceptance criteria (FDA's "pre-specified statistical analysis plan").
//!
//! This stage owns the protocol types ([`types`]), their loading ([`load`](mod@load)) and their
//! semantic checks ([`check`](mod@check)). Later stages receive a parsed, checked [`Protocol`] and
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
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            let mut d = crate::diag::Diagnostic::error(&file, None, "no such protocol file");
            d.hint = Some(missing_file_hint(path));
            Error::Invalid(vec![d])
        } else {
            Error::io(path, e)
        }
    })?;
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

/// A hint for a protocol path that does not exist: the closest YAML file in its directory
/// (a typo), or the YAML files there, or that the directory itself is missing.
fn missing_file_hint(path: &Path) -> String {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return format!("the directory {} does not exist either", dir.display());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    names.sort();
    let wanted = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let shown = |n: &str| {
        if dir == Path::new(".") && path.parent().is_none_or(|p| p.as_os_str().is_empty()) {
            n.to_string()
        } else {
            dir.join(n).display().to_string()
        }
    };
    if let Some(n) = load::nearest(wanted, names.iter().map(String::as_str)) {
        format!("did you mean {}?", shown(n))
    } else if names.is_empty() {
        format!("{} holds no .yaml protocol files", dir.display())
    } else {
        let list: Vec<String> = names.iter().take(5).map(|n| shown(n)).collect();
        format!("protocols in {}: {}", dir.display(), list.join(", "))
    }
}

/// The JSON Schema of the protocol format, for editors (yaml-language-server) and tooling.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Protocol);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod missing_file_tests {
    use super::*;

    #[test]
    fn a_mistyped_protocol_path_suggests_the_closest_file_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo-cxr.yaml"), "x").unwrap();
        std::fs::write(dir.path().join("other.yaml"), "x").unwrap();
        let wrong = dir.path().join("demo-cxe.yaml");
        let e = load(&wrong).unwrap_err();
        let text = e.render();
        assert_eq!(
            text.matches(&wrong.display().to_string()).count(),
            1,
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "did you mean {}?",
                dir.path().join("demo-cxr.yaml").display()
            )),
            "{text}"
        );
        assert_eq!(e.exit_code(), crate::exit::INPUT);
        let far = dir.path().join("zzzzzzzzzzzz.yaml");
        assert!(missing_file_hint(&far).contains("other.yaml"));
        assert!(missing_file_hint(&dir.path().join("no/x.yaml")).contains("does not exist"));
    }
}
