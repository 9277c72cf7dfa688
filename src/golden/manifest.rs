//! The golden set's manifest: one row per case, read as strings, and the checks that keep it
//! honest (paths inside the set, unique case IDs, no image twice, every image present, no
//! direct identifiers).
//!
//! Problems are returned as [`Diagnostic`]s located at the manifest row (line 1 is the
//! header, so row `i` is line `i + 2`), all at once, so a curator fixes them in one pass.
//! Identifier findings never echo the suspicious value: printing a patient's name into a CI
//! log would itself be a disclosure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::diag::Diagnostic;
use crate::error::{Error, Result};

/// Manifest file names tried, in order, when none is given.
const MANIFEST_NAMES: [&str; 2] = ["manifest.csv", "manifest.parquet"];

/// A manifest read entirely as strings (nulls become empty strings).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Path relative to the set.
    pub rel_path: String,
    /// Column names in file order.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<String>>,
}

impl Manifest {
    /// Reads `rel` (relative to `dir`) as strings.
    pub fn read(dir: &Path, rel: &Path) -> Result<Manifest> {
        let path = dir.join(rel);
        let df = crate::table::read_table_as_strings(&path)?;
        Manifest::from_frame(rel, &path, df)
    }

    /// Parses `bytes`, the content of `dir/rel` as already read (and hashed) by the caller.
    pub fn parse(dir: &Path, rel: &Path, bytes: &[u8]) -> Result<Manifest> {
        let path = dir.join(rel);
        let df = crate::table::parse_table_as_strings(&path, bytes)?;
        Manifest::from_frame(rel, &path, df)
    }

    fn from_frame(rel: &Path, path: &Path, df: polars::prelude::DataFrame) -> Result<Manifest> {
        let columns = crate::table::column_names(&df);
        let mut rows = vec![Vec::with_capacity(columns.len()); df.height()];
        for name in &columns {
            let col = df
                .column(name)
                .and_then(|c| c.cast(&polars::prelude::DataType::String))
                .map_err(|e| Error::input(format!("{}: column `{name}`: {e}", path.display())))?;
            let s = col
                .str()
                .map_err(|e| Error::input(format!("{}: column `{name}`: {e}", path.display())))?;
            for (row, v) in rows.iter_mut().zip(s.iter()) {
                row.push(v.unwrap_or("").to_string());
            }
        }
        Ok(Manifest {
            rel_path: rel.to_string_lossy().replace('\\', "/"),
            columns,
            rows,
        })
    }

    /// Finds the manifest in `dir` (`manifest.csv`, then `manifest.parquet`).
    pub fn locate(dir: &Path) -> Result<PathBuf> {
        MANIFEST_NAMES
            .iter()
            .map(PathBuf::from)
            .find(|m| dir.join(m).is_file())
            .ok_or_else(|| {
                Error::input_hint(
                    format!("{}: no manifest.csv or manifest.parquet", dir.display()),
                    "a golden set holds manifest.csv (one row per case), images/, DATASHEET.md",
                )
            })
    }

    /// Index of a column, or an error naming the columns that exist.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            Error::input_hint(
                format!(
                    "{}: no column `{name}` (columns: {})",
                    self.rel_path,
                    self.columns.join(", ")
                ),
                "fix the column name in the protocol or the command line",
            )
        })
    }

    /// The values of a column.
    pub fn values(&self, col: usize) -> impl Iterator<Item = &str> {
        self.rows.iter().map(move |r| r[col].as_str())
    }

    /// Columns whose every non-empty value is 0/1/true/false (candidate labels), with the
    /// count of positives, excluding `skip`.
    pub fn binary_columns(&self, skip: &[&str]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (i, name) in self.columns.iter().enumerate() {
            if skip.contains(&name.as_str()) {
                continue;
            }
            let mut pos = 0;
            let mut any = false;
            let mut ok = true;
            for v in self.values(i) {
                match parse_label(v) {
                    Some(b) => {
                        any = true;
                        pos += u64::from(b);
                    }
                    None if v.trim().is_empty() => {}
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok && any {
                out.insert(name.clone(), pos);
            }
        }
        out
    }
}

/// A label value: `0`/`1`/`true`/`false` (any case, trimmed); anything else is `None`.
pub fn parse_label(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Normalises a manifest path to a `/`-separated path relative to the set, refusing absolute
/// paths, `..` components, backslashes and empty values. The error is a sentence.
pub(crate) fn normalize_rel(value: &str) -> std::result::Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("empty image path".into());
    }
    if v.contains('\\') {
        return Err(format!("`{v}` contains a backslash; use `/` separators"));
    }
    let p = Path::new(v);
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().to_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("`{v}` escapes the set with `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`{v}` is absolute; manifest paths are relative to the set"
                ));
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("`{v}` names no file"));
    }
    Ok(parts.join("/"))
}

/// Checks the manifest's structure against the set's files: safe relative paths that exist,
/// do not leave the set through a symlink, unique case IDs, and no image (by content hash)
/// used twice. `hashes` maps each file of the set to its SHA-256.
pub(crate) fn check_manifest(
    dir: &Path,
    m: &Manifest,
    case_id_column: &str,
    image_columns: &[String],
    hashes: &BTreeMap<String, String>,
) -> Result<Vec<Diagnostic>> {
    let mut d = Vec::new();
    let file = m.rel_path.clone();
    let id_col = m.column(case_id_column)?;
    let img_cols: Vec<usize> = image_columns
        .iter()
        .map(|c| m.column(c))
        .collect::<Result<_>>()?;
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_hash: BTreeMap<&str, (usize, String)> = BTreeMap::new();
    for (i, row) in m.rows.iter().enumerate() {
        let line = Some((i + 2, 1));
        let id = row[id_col].trim();
        if id.is_empty() {
            d.push(Diagnostic::error(&file, line, "empty case ID"));
        } else if let Some(first) = ids.insert(id, i) {
            d.push(
                Diagnostic::error(
                    &file,
                    line,
                    format!("duplicate case ID `{id}` (first on line {})", first + 2),
                )
                .with_hint("case IDs must be unique"),
            );
            ids.insert(id, first);
        }
        for &c in &img_cols {
            let rel = match normalize_rel(&row[c]) {
                Ok(r) => r,
                Err(msg) => {
                    d.push(Diagnostic::error(
                        &file,
                        line,
                        format!("case `{id}`: {msg}"),
                    ));
                    continue;
                }
            };
            let abs = dir.join(&rel);
            if let Ok(target) = abs.canonicalize()
                && !target.starts_with(&root)
            {
                d.push(Diagnostic::error(
                    &file,
                    line,
                    format!("case `{id}`: `{rel}` is a link that points outside the set"),
                ));
                continue;
            }
            match hashes.get(&rel) {
                None => d.push(
                    Diagnostic::error(
                        &file,
                        line,
                        format!("case `{id}`: image `{rel}` is missing"),
                    )
                    .with_hint(
                        "add the image, or remove the row and record the exclusion in DATASHEET.md",
                    ),
                ),
                Some(h) => {
                    if let Some((first, first_rel)) = by_hash.get(h.as_str()) {
                        d.push(
                            Diagnostic::error(
                                &file,
                                line,
                                format!(
                                    "case `{id}`: image `{rel}` has the same content as `{first_rel}` (line {}): the same image twice",
                                    first + 2
                                ),
                            )
                            .with_hint("duplicate images leak between cases; keep one"),
                        );
                    } else {
                        by_hash.insert(h.as_str(), (i, rel));
                    }
                }
            }
        }
    }
    Ok(d)
}

/// Column names that are direct identifiers (compared lowercased, with `_`, `-`, spaces removed).
const IDENTIFIER_NAMES: [&str; 24] = [
    "name",
    "patientname",
    "firstname",
    "lastname",
    "surname",
    "fullname",
    "givenname",
    "mrn",
    "medicalrecordnumber",
    "patientid",
    "ssn",
    "socialsecuritynumber",
    "dob",
    "dateofbirth",
    "birthdate",
    "patientbirthdate",
    "email",
    "emailaddress",
    "phone",
    "phonenumber",
    "telephone",
    "address",
    "accessionnumber",
    "nhsnumber",
];

fn looks_like_email(v: &str) -> bool {
    let Some((user, domain)) = v.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && !v.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

fn looks_like_phone(v: &str) -> bool {
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let allowed = v
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let has_sep = v.starts_with('+') || v.contains(['(', ' ', '-']);
    allowed && has_sep && (9..=15).contains(&digits) && !looks_like_date(v)
}

/// A full calendar date (day precision): `YYYY-MM-DD`, `YYYY/MM/DD`, `DD/MM/YYYY`,
/// `MM-DD-YYYY`, `DD.MM.YYYY` or DICOM `YYYYMMDD` (19xx/20xx).
fn looks_like_date(v: &str) -> bool {
    let v = v.trim();
    let b = v.as_bytes();
    let num = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let year = |s: &[u8]| num(s) && (s.starts_with(b"19") || s.starts_with(b"20"));
    let small = |s: &[u8], max: u32| {
        num(s)
            && std::str::from_utf8(s)
                .ok()
                .and_then(|t| t.parse::<u32>().ok())
                .is_some_and(|n| (1..=max).contains(&n))
    };
    match b.len() {
        8 => year(&b[..4]) && small(&b[4..6], 12) && small(&b[6..], 31),
        10 => {
            let seps = |i: usize, j: usize| b[i] == b[j] && matches!(b[i], b'-' | b'/' | b'.');
            (seps(4, 7) && year(&b[..4]) && small(&b[5..7], 12) && small(&b[8..], 31))
                || (seps(2, 5) && year(&b[6..]) && small(&b[..2], 31) && small(&b[3..5], 31))
        }
        // Dates with a time part: look at the date.
        n if n > 10 && matches!(b[10], b'T' | b' ') => looks_like_date(&v[..10]),
        _ => false,
    }
}

/// A value detector.
type Detector = fn(&str) -> bool;

/// `Lastname^Firstname`, the DICOM person-name form.
fn looks_like_person_name(v: &str) -> bool {
    let parts: Vec<&str> = v.split('^').collect();
    parts.len() >= 2
        && parts
            .iter()
            .take(2)
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphabetic() || " '-.".contains(c)))
}

/// Screens manifest columns for direct identifiers: identifying column names, and values that
/// look like e-mail addresses, phone numbers, full dates or DICOM person names. One
/// diagnostic per column (at its first offending row); values are never echoed.
pub(crate) fn screen_manifest(m: &Manifest) -> Vec<Diagnostic> {
    let mut d = Vec::new();
    let file = m.rel_path.clone();
    let hint = "remove or coarsen the column (e.g. age band instead of birth date), or lock with --waiver REASON";
    for (ci, name) in m.columns.iter().enumerate() {
        let norm: String = name
            .to_lowercase()
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' ' | '.'))
            .collect();
        if IDENTIFIER_NAMES.contains(&norm.as_str()) {
            d.push(
                Diagnostic::error(
                    &file,
                    Some((1, 1)),
                    format!("column `{name}` is named like a direct identifier"),
                )
                .with_hint(hint),
            );
            continue;
        }
        let checks: [(&str, Detector); 4] = [
            ("an e-mail address", looks_like_email),
            ("a phone number", looks_like_phone),
            ("a full date (day precision)", looks_like_date),
            ("a person's name (Last^First)", looks_like_person_name),
        ];
        let mut kinds = BTreeSet::new();
        let mut first_row = None;
        for (ri, v) in m.values(ci).enumerate() {
            for (what, f) in &checks {
                if f(v.trim()) {
                    kinds.insert(*what);
                    first_row.get_or_insert(ri);
                }
            }
        }
        if let Some(r) = first_row {
            let kinds: Vec<&str> = kinds.into_iter().collect();
            d.push(
                Diagnostic::error(
                    &file,
                    Some((r + 2, 1)),
                    format!("column `{name}` holds values that look like {} (first on this row; value not shown)", kinds.join(", ")),
                )
                .with_hint(hint),
            );
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_or_refused() {
        assert_eq!(normalize_rel("images/a.png").unwrap(), "images/a.png");
        assert_eq!(normalize_rel("./images//a.png").unwrap(), "images/a.png");
        assert!(normalize_rel("../x.png").unwrap_err().contains("escapes"));
        assert!(
            normalize_rel("images/../../x.png")
                .unwrap_err()
                .contains("escapes")
        );
        assert!(
            normalize_rel("/etc/passwd")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            normalize_rel("images\\a.png")
                .unwrap_err()
                .contains("backslash")
        );
        assert!(normalize_rel(" ").is_err());
    }

    #[test]
    fn identifier_value_detectors() {
        assert!(looks_like_email("jane.doe@example.org"));
        assert!(!looks_like_email("a@b"));
        assert!(looks_like_phone("+1 (555) 123-4567"));
        assert!(looks_like_phone("020 7946 0958"));
        assert!(
            !looks_like_phone("123456789"),
            "a bare number is an ID, not a phone"
        );
        assert!(!looks_like_phone("40-64"));
        assert!(looks_like_date("1961-07-04"));
        assert!(looks_like_date("04/07/1961"));
        assert!(looks_like_date("19610704"));
        assert!(looks_like_date("2019-03-01T10:00:00"));
        assert!(!looks_like_date("1961"));
        assert!(!looks_like_date("cxr-00001"));
        assert!(!looks_like_date("20261399"));
        assert!(looks_like_person_name("Doe^Jane"));
        assert!(!looks_like_person_name("PA"));
    }

    #[test]
    fn screen_flags_columns_not_values() {
        let m = Manifest {
            rel_path: "manifest.csv".into(),
            columns: vec![
                "case_id".into(),
                "Patient Name".into(),
                "contact".into(),
                "site".into(),
            ],
            rows: vec![
                vec!["c1".into(), "x".into(), "".into(), "A".into()],
                vec![
                    "c2".into(),
                    "y".into(),
                    "jane@example.org".into(),
                    "B".into(),
                ],
            ],
        };
        let d = screen_manifest(&m);
        assert_eq!(d.len(), 2);
        assert!(d[0].message.contains("`Patient Name`"));
        assert!(d[1].message.contains("`contact`") && d[1].message.contains("e-mail"));
        assert_eq!(d[1].line, Some(3));
        assert!(
            !d[1].message.contains("jane@"),
            "the value itself must not be echoed"
        );
    }

    #[test]
    fn labels_parse() {
        assert_eq!(parse_label(" TRUE "), Some(true));
        assert_eq!(parse_label("0"), Some(false));
        assert_eq!(parse_label("yes"), None);
    }
}
