//! De-identification screen for DICOM files.
//!
//! Flags attributes of the DICOM PS3.15 Annex E Basic Application Level Confidentiality
//! Profile (Table E.1-1) that are present with a non-empty value, burned-in annotation
//! flags, and private attributes (which the Basic Profile removes). UIDs are not flagged: the
//! profile replaces them rather than removing them, so their presence says nothing. Patient
//! sex, age, size and weight are not flagged, following the profile's "Retain Patient
//! Characteristics" option, because subgroup analysis needs them.
//!
//! The screen reads only the header (up to Pixel Data), so it is cheap on large sets. A
//! finding is a reason to look, not proof of a leak; `medgate lock --waiver REASON` records a
//! deliberate exception in the LOCK.

use std::path::Path;

use dicom_core::Tag;
use dicom_core::header::Header;
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

use crate::diag::Diagnostic;

/// Attributes of PS3.15 Table E.1-1 checked for a non-empty value: `(tag, keyword)`.
pub const CONFIDENTIALITY_ATTRIBUTES: [(Tag, &str); 58] = [
    (Tag(0x0008, 0x0012), "InstanceCreationDate"),
    (Tag(0x0008, 0x0013), "InstanceCreationTime"),
    (Tag(0x0008, 0x0020), "StudyDate"),
    (Tag(0x0008, 0x0021), "SeriesDate"),
    (Tag(0x0008, 0x0022), "AcquisitionDate"),
    (Tag(0x0008, 0x0023), "ContentDate"),
    (Tag(0x0008, 0x0024), "OverlayDate"),
    (Tag(0x0008, 0x0025), "CurveDate"),
    (Tag(0x0008, 0x002A), "AcquisitionDateTime"),
    (Tag(0x0008, 0x0030), "StudyTime"),
    (Tag(0x0008, 0x0031), "SeriesTime"),
    (Tag(0x0008, 0x0032), "AcquisitionTime"),
    (Tag(0x0008, 0x0033), "ContentTime"),
    (Tag(0x0008, 0x0050), "AccessionNumber"),
    (Tag(0x0008, 0x0080), "InstitutionName"),
    (Tag(0x0008, 0x0081), "InstitutionAddress"),
    (Tag(0x0008, 0x0090), "ReferringPhysicianName"),
    (Tag(0x0008, 0x0092), "ReferringPhysicianAddress"),
    (Tag(0x0008, 0x0094), "ReferringPhysicianTelephoneNumbers"),
    (
        Tag(0x0008, 0x0096),
        "ReferringPhysicianIdentificationSequence",
    ),
    (Tag(0x0008, 0x1010), "StationName"),
    (Tag(0x0008, 0x1030), "StudyDescription"),
    (Tag(0x0008, 0x103E), "SeriesDescription"),
    (Tag(0x0008, 0x1040), "InstitutionalDepartmentName"),
    (Tag(0x0008, 0x1048), "PhysiciansOfRecord"),
    (Tag(0x0008, 0x1050), "PerformingPhysicianName"),
    (Tag(0x0008, 0x1060), "NameOfPhysiciansReadingStudy"),
    (Tag(0x0008, 0x1070), "OperatorsName"),
    (Tag(0x0008, 0x1080), "AdmittingDiagnosesDescription"),
    (Tag(0x0010, 0x0010), "PatientName"),
    (Tag(0x0010, 0x0020), "PatientID"),
    (Tag(0x0010, 0x0021), "IssuerOfPatientID"),
    (Tag(0x0010, 0x0030), "PatientBirthDate"),
    (Tag(0x0010, 0x0032), "PatientBirthTime"),
    (Tag(0x0010, 0x1000), "OtherPatientIDs"),
    (Tag(0x0010, 0x1001), "OtherPatientNames"),
    (Tag(0x0010, 0x1002), "OtherPatientIDsSequence"),
    (Tag(0x0010, 0x1005), "PatientBirthName"),
    (Tag(0x0010, 0x1040), "PatientAddress"),
    (Tag(0x0010, 0x1060), "PatientMotherBirthName"),
    (Tag(0x0010, 0x1080), "MilitaryRank"),
    (Tag(0x0010, 0x1090), "MedicalRecordLocator"),
    (Tag(0x0010, 0x2000), "MedicalAlerts"),
    (Tag(0x0010, 0x2110), "Allergies"),
    (Tag(0x0010, 0x2150), "CountryOfResidence"),
    (Tag(0x0010, 0x2152), "RegionOfResidence"),
    (Tag(0x0010, 0x2154), "PatientTelephoneNumbers"),
    (Tag(0x0010, 0x2160), "EthnicGroup"),
    (Tag(0x0010, 0x2180), "Occupation"),
    (Tag(0x0010, 0x21B0), "AdditionalPatientHistory"),
    (Tag(0x0010, 0x4000), "PatientComments"),
    (Tag(0x0018, 0x1000), "DeviceSerialNumber"),
    (Tag(0x0020, 0x0010), "StudyID"),
    (Tag(0x0020, 0x4000), "ImageComments"),
    (Tag(0x0032, 0x1032), "RequestingPhysician"),
    (Tag(0x0032, 0x1060), "RequestedProcedureDescription"),
    (Tag(0x0040, 0x0254), "PerformedProcedureStepDescription"),
    (Tag(0x0040, 0xA123), "PersonName"),
];

/// True for `.dcm`/`.dicom` files, or files carrying the `DICM` magic at offset 128.
pub fn is_dicom(path: &Path) -> bool {
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
    let obj = match OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
    {
        Ok(o) => o,
        Err(e) => {
            return vec![Diagnostic::error(
                rel,
                None,
                format!("cannot read DICOM header: {e}"),
            )];
        }
    };
    let mut found = Vec::new();
    for (tag, name) in CONFIDENTIALITY_ATTRIBUTES {
        if let Ok(e) = obj.element(tag) {
            let non_empty = match e.value() {
                dicom_core::DicomValue::Primitive(p) => {
                    !p.to_str().trim_matches(['\0', ' ']).is_empty()
                }
                dicom_core::DicomValue::Sequence(s) => !s.items().is_empty(),
                dicom_core::DicomValue::PixelSequence(_) => true,
            };
            if non_empty {
                found.push(name.to_string());
            }
        }
    }
    let mut d = Vec::new();
    if !found.is_empty() {
        d.push(
            Diagnostic::error(
                rel,
                None,
                format!(
                    "identifying attributes present (PS3.15 Basic Profile): {} (values not shown)",
                    found.join(", ")
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
    let private: Vec<String> = obj
        .iter()
        .map(|e| e.tag())
        .filter(|t| t.group() % 2 == 1)
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
