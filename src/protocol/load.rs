//! Loading a protocol: YAML text -> [`Protocol`], with every problem located.
//!
//! Structural problems (bad YAML, wrong types, unknown or misspelled fields) come from
//! serde-saphyr with line and column. Serde stops at the first error, so to report *all*
//! unknown fields at once we blank the offending key (and the block under it) and parse
//! again, up to a bound; any other structural error ends the loop. Semantic problems
//! (duplicate IDs, out-of-range bounds, missing files...) are found by [`super::check()`] on a
//! parsed protocol, using a span-carrying shadow parse to point at the right line.

use std::path::{Path, PathBuf};

use serde_saphyr::Error as YamlError;

use super::types::Protocol;
use crate::diag::Diagnostic;

/// A parsed protocol with what later checks need to point into its source.
#[derive(Debug, Clone)]
pub struct LoadedProtocol {
    /// The protocol.
    pub protocol: Protocol,
    /// The file as the user named it.
    pub path: PathBuf,
    /// The directory relative paths resolve against.
    pub dir: PathBuf,
    /// The source text.
    pub source: String,
    /// SHA-256 of the source bytes.
    pub sha256: String,
}

impl LoadedProtocol {
    /// Resolves a path written in the protocol against the protocol's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

/// How far apart two words are (Levenshtein distance), for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lw, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn position(e: &YamlError) -> Option<(usize, usize)> {
    e.location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .filter(|(l, _)| *l > 0)
}

/// Turns a serde-saphyr error into a diagnostic with an expectation and a hint.
fn yaml_diagnostic(file: &str, source: &str, e: &YamlError) -> Diagnostic {
    let pos = position(e);
    match e.without_snippet() {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            let mut d = Diagnostic::error(
                file,
                pos,
                format!(
                    "unknown field `{field}`; expected one of: {}",
                    expected.join(", ")
                ),
            );
            if let Some(n) = nearest(field, expected.iter().copied()) {
                d = d.with_hint(format!("did you mean `{n}`?"));
            }
            d
        }
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let mut d = Diagnostic::error(
                file,
                pos,
                format!(
                    "unknown value `{variant}`; expected one of: {}",
                    expected.join(", ")
                ),
            );
            if let Some(n) = nearest(variant, expected.iter().copied()) {
                d = d.with_hint(format!("did you mean `{n}`?"));
            }
            d
        }
        other => {
            let msg = other.to_string();
            // serde-saphyr prefixes its own location; ours is in the diagnostic already.
            let msg = msg
                .split_once(" at line ")
                .map(|(m, _)| m.to_string())
                .unwrap_or(msg);
            // serde-saphyr loses the field path on type errors: name the key on that line.
            let key = pos
                .and_then(|(l, _)| source.lines().nth(l.saturating_sub(1)))
                .and_then(|line| line.trim_start().trim_start_matches("- ").split_once(':'))
                .map(|(k, _)| k.trim().to_string())
                .filter(|k| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            match key {
                Some(k) if !msg.starts_with("missing field") => {
                    Diagnostic::error(file, pos, format!("`{k}`: {msg}")).with_hint(
                        "see `medgate schema` or protocols/README.md for the field's type",
                    )
                }
                _ => Diagnostic::error(file, pos, msg),
            }
        }
    }
}

/// Blanks the line `line` (1-based) and every following line indented deeper than it, so a
/// re-parse can continue past an unknown key.
fn blank_block(source: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let idx = line.checked_sub(1)?;
    let first = lines.get(idx)?;
    let indent = first.len() - first.trim_start().len();
    let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    // A key that opens a list item (`- key: v`) keeps the dash, so the item and its sibling
    // keys (indented two more) survive; only the key's own children are blanked.
    let (replacement, child_indent) = if first.trim_start().starts_with("- ") {
        (format!("{}-", " ".repeat(indent)), indent + 2)
    } else {
        (String::new(), indent)
    };
    out[idx] = replacement;
    let mut j = idx + 1;
    while j < lines.len() {
        let l = lines[j];
        let ind = l.len() - l.trim_start().len();
        if l.trim().is_empty() || ind > child_indent {
            out[j] = String::new();
            j += 1;
        } else {
            break;
        }
    }
    Some(out.join("\n"))
}

/// Parses protocol text. Returns the protocol, or every structural diagnostic found.
pub fn parse_protocol(file: &str, source: &str) -> Result<Protocol, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut text = source.to_string();
    for _ in 0..64 {
        match serde_saphyr::from_str::<Protocol>(&text) {
            Ok(p) => {
                return if diags.is_empty() { Ok(p) } else { Err(diags) };
            }
            Err(e) => {
                let d = yaml_diagnostic(file, &text, &e);
                let unknown = matches!(e.without_snippet(), YamlError::SerdeUnknownField { .. });
                let line = d.line;
                diags.push(d);
                match (unknown, line.and_then(|l| blank_block(&text, l))) {
                    (true, Some(t)) if t != text => text = t,
                    _ => break,
                }
            }
        }
    }
    Err(diags)
}
