//! De-identification screen for DICOM files.
//!
//! Flags attributes of the DICOM PS3.15 Annex E Basic Application Level Confidentiality
//! Profile (Table E.1-1, all of its rows: [`BASIC_PROFILE`]) that are present with a
//! non-empty value anywhere in the data set (inside sequences too, and the masked overlay
//! and curve groups), burned-in annotation flags, and private attributes (which the Basic
//! Profile removes). UIDs are not flagged: the profile replaces them rather than removing
//! them, so their presence says nothing. Patient sex, age, size, weight and sex neutered are
//! not flagged, following the profile's "Retain Patient Characteristics" option, because
//! subgroup analysis needs them. Each finding also says what the file claims about itself
//! ([`DeidClaims`]: Patient Identity Removed, De-identification Method and the PS3.15
//! options of its De-identification Method Code Sequence). Recall on a public corpus is
//! measured by `tests/deid_recall.rs` (see golden-sets/README.md).
//!
//! The screen reads only the header (up to Pixel Data), with the same bounded reader as
//! the image decoder ([`super::pixels`]), so a lying length cannot exhaust memory. A
//! finding is a reason to look, not proof of a leak; `medgate lock --waiver REASON` records a
//! deliberate exception in the LOCK.

use std::path::Path;

use dicom_core::Tag;
use dicom_core::header::Header;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::diag::Diagnostic;

pub use super::deid_table::BASIC_PROFILE;

/// PS3.16 CID 7050 "De-identification Method": the PS3.15 profile and options a file claims
/// in De-identification Method Code Sequence (0012,0064).
const CID_7050: [(&str, &str); 13] = [
    ("113100", "Basic Application Confidentiality Profile"),
    ("113101", "Clean Pixel Data Option"),
    ("113102", "Clean Recognizable Visual Features Option"),
    ("113103", "Clean Graphics Option"),
    ("113104", "Clean Structured Content Option"),
    ("113105", "Clean Descriptors Option"),
    (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    ("113108", "Retain Patient Characteristics Option"),
    ("113109", "Retain Device Identity Option"),
    ("113110", "Retain UIDs Option"),
    ("113111", "Retain Safe Private Option"),
    ("113112", "Retain Institution Identity Option"),
];

/// What a file says about its own de-identification.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeidClaims {
    /// Patient Identity Removed (0012,0062): `YES`, `NO`, or absent.
    pub patient_identity_removed: Option<String>,
    /// De-identification Method (0012,0063), every value.
    pub method: Vec<String>,
    /// PS3.15 profile and options from De-identification Method Code Sequence (0012,0064),
    /// by CID 7050 meaning (unknown codes as `scheme:value meaning`).
    pub options: Vec<String>,
    /// Longitudinal Temporal Information Modified (0028,0303).
    pub temporal_modified: Option<String>,
}

impl DeidClaims {
    /// Reads the claims of a data set.
    pub fn read(obj: &InMemDicomObject) -> DeidClaims {
        let s = |t| {
            obj.get(t)
                .and_then(|e| e.to_str().ok())
                .map(|v| v.trim_matches(['\0', ' ']).to_string())
                .filter(|v| !v.is_empty())
        };
        let method = obj
            .get(tags::DEIDENTIFICATION_METHOD)
            .and_then(|e| e.value().to_multi_str().ok().map(|v| v.to_vec()))
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.trim_matches(['\0', ' ']).to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let mut options = Vec::new();
        if let Some(items) = obj
            .get(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
            .and_then(|e| e.value().items())
        {
            for item in items {
                let get = |t| {
                    item.get(t)
                        .and_then(|e| e.to_str().ok())
                        .map(|v| v.trim_matches(['\0', ' ']).to_string())
                        .unwrap_or_default()
                };
                let (code, scheme, meaning) = (
                    get(tags::CODE_VALUE),
                    get(tags::CODING_SCHEME_DESIGNATOR),
                    get(tags::CODE_MEANING),
                );
                match CID_7050.iter().find(|(c, _)| *c == code) {
                    Some((_, name)) if scheme == "DCM" || scheme.is_empty() => {
                        options.push((*name).to_string())
                    }
                    _ => options.push(format!("{scheme}:{code} {meaning}")),
                }
            }
        }
        DeidClaims {
            patient_identity_removed: s(tags::PATIENT_IDENTITY_REMOVED),
            method,
            options,
            temporal_modified: s(tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED),
        }
    }

    /// One line: `Patient Identity Removed YES; method "..."; options: ...`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "Patient Identity Removed {}",
            self.patient_identity_removed.as_deref().unwrap_or("absent")
        )];
        if !self.method.is_empty() {
            parts.push(format!(
                "De-identification Method \"{}\"",
                self.method.join("\\")
            ));
        }
        if !self.options.is_empty() {
            parts.push(format!(
                "PS3.15 options claimed: {}",
                self.options.join(", ")
            ));
        }
        if let Some(t) = &self.temporal_modified {
            parts.push(format!("Longitudinal Temporal Information Modified {t}"));
        }
        parts.join("; ")
    }
}

fn non_empty(e: &dicom_object::mem::InMemElement) -> bool {
    match e.value() {
        dicom_core::DicomValue::Primitive(p) => match p {
            dicom_core::PrimitiveValue::Empty => false,
            dicom_core::PrimitiveValue::U8(b) => b.iter().any(|&x| x != 0 && x != b' '),
            _ => p
                .to_str()
                .trim_matches(['\0', ' ', '\\'])
                .chars()
                .next()
                .is_some(),
        },
        dicom_core::DicomValue::Sequence(s) => !s.items().is_empty(),
        dicom_core::DicomValue::PixelSequence(_) => true,
    }
}

fn profile_entry(tag: Tag) -> Option<&'static (u16, u16, u16, u16, &'static str, &'static str)> {
    BASIC_PROFILE
        .iter()
        .find(|(g, e, gm, em, _, _)| tag.0 & gm == *g && tag.1 & em == *e)
}

/// Table E.1-1 attributes present with a non-empty value anywhere in the data set
/// (sequences included), as `(GGGG,EEEE)` of the table row, sorted, with keywords; and
/// private tags found at the top level.
pub fn identifying_attributes(obj: &InMemDicomObject) -> (Vec<(String, &'static str)>, Vec<Tag>) {
    fn visit(
        obj: &InMemDicomObject,
        depth: u32,
        found: &mut std::collections::BTreeMap<String, &'static str>,
        private: &mut Vec<Tag>,
    ) {
        for e in obj.iter() {
            let tag = e.tag();
            if depth == 0 && tag.group() % 2 == 1 {
                private.push(tag);
            }
            if let Some((g, el, _, _, name, _)) = profile_entry(tag)
                && non_empty(e)
            {
                found.insert(format!("({g:04X},{el:04X})"), name);
            }
            if let Some(items) = e.value().items().filter(|_| depth < 16) {
                for item in items {
                    visit(item, depth + 1, found, private);
                }
            }
        }
    }
    let mut found = std::collections::BTreeMap::new();
    let mut private = Vec::new();
    visit(obj, 0, &mut found, &mut private);
    (found.into_iter().collect(), private)
}

/// True for `.dcm`/`.dicom` files, or files carrying the `DICM` magic at offset 128.
pub(crate) fn is_dicom(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    if matches!(ext.as_deref(), Some("dcm") | Some("dicom")) {
        return true;
    }
    if ext.is_some() {
        return false;
    }
    use std::io::Read;
    let mut buf = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map(|_| &buf[128..] == b"DICM")
        .unwrap_or(false)
}

/// Screens one DICOM file; `rel` names it in the diagnostics. An unreadable file is itself a
/// finding (it cannot be shown to be clean).
pub fn screen_dicom(path: &Path, rel: &str) -> Vec<Diagnostic> {
    let hint = "de-identify with a PS3.15 Basic Profile tool, or lock with --waiver REASON";
    let mut d = Vec::new();
    let obj = match super::pixels::open_header(path) {
        Ok((o, info)) => {
            if let Some(why) = info.damaged {
                d.push(
                    Diagnostic::error(
                        rel,
                        None,
                        format!(
                            "DICOM header damaged ({why}): the rest cannot be shown to be clean"
                        ),
                    )
                    .with_hint("repair or replace the file, or lock with --waiver REASON"),
                );
            }
            o
        }
        Err(e) => {
            return vec![Diagnostic::error(
                rel,
                None,
                format!("cannot read DICOM header: {e}"),
            )];
        }
    };
    let claims = DeidClaims::read(&obj);
    let (attrs, private) = identifying_attributes(&obj);
    let found: Vec<String> = attrs
        .iter()
        .map(|(t, name)| format!("{name} {t}"))
        .collect();
    if !found.is_empty() {
        d.push(
            Diagnostic::error(
                rel,
                None,
                format!(
                    "identifying attributes present (PS3.15 Table E.1-1): {} (values not shown); the file claims: {}",
                    found.join(", "),
                    claims.describe()
                ),
            )
            .with_hint(hint),
        );
    }
    for (tag, name) in [
        (tags::BURNED_IN_ANNOTATION, "BurnedInAnnotation"),
        (
            tags::RECOGNIZABLE_VISUAL_FEATURES,
            "RecognizableVisualFeatures",
        ),
    ] {
        let yes = obj
            .element(tag)
            .ok()
            .and_then(|e| e.value().to_str().ok())
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("YES"));
        if yes {
            d.push(
                Diagnostic::error(
                    rel,
                    None,
                    format!(
                        "{name} is YES: text or features in the pixels may identify the patient"
                    ),
                )
                .with_hint("mask the pixels and set the flag to NO, or lock with --waiver REASON"),
            );
        }
    }
    let private: Vec<String> = private
        .iter()
        .map(|t| format!("({:04X},{:04X})", t.group(), t.element()))
        .collect();
    if !private.is_empty() {
        d.push(
            Diagnostic::error(
                rel,
                None,
                format!(
                    "{} private attribute(s) present, e.g. {} (the Basic Profile removes them)",
                    private.len(),
                    private[0]
                ),
            )
            .with_hint(hint),
        );
    }
    d
}
