//! DICOM writing for the demo set and for tests.
//!
//! medgate writes DICOM only to exercise its own reader: the demo set ships a few DICOM
//! cases, and tests build files with chosen attributes (a PatientName to trip the
//! de-identification screen, MONOCHROME1, rescale slope/intercept). Files are explicit VR
//! little endian, uncompressed, grayscale.

use std::path::Path;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;

use super::DemoCase;
use crate::error::{Error, Result};

/// Implementation Class UID written into medgate's DICOM files (a fixed UUID-derived UID,
/// so files do not change when the dicom-rs version does).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.166409012839540779123604431123400954473";

/// A grayscale image to write as DICOM.
#[derive(Debug, Clone)]
pub struct DicomSpec {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
    /// Stored pixel values, row-major; written as 8-bit when `bits_allocated` is 8.
    pub pixels: Vec<u16>,
    /// 8 or 16.
    pub bits_allocated: u16,
    /// Bits stored (<= bits_allocated).
    pub bits_stored: u16,
    /// `MONOCHROME1` or `MONOCHROME2`.
    pub photometric: String,
    /// Extra string-valued attributes `(tag, VR, value)` (PatientName, WindowCenter, ...).
    pub attributes: Vec<(Tag, VR, String)>,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
}

/// Writes `spec` as a DICOM Digital X-Ray (for presentation) file.
pub fn write_dicom(path: &Path, spec: &DicomSpec) -> Result<()> {
    let n = usize::from(spec.width) * usize::from(spec.height);
    if spec.pixels.len() != n {
        return Err(Error::Internal(format!(
            "DICOM writer: {} pixels for {}x{}",
            spec.pixels.len(),
            spec.width,
            spec.height
        )));
    }
    let mut obj = InMemDicomObject::new_empty();
    let mut s =
        |tag: Tag, vr: VR, v: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    s(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    );
    s(tags::SOP_INSTANCE_UID, VR::UI, &spec.sop_instance_uid);
    s(tags::MODALITY, VR::CS, "DX");
    s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, &spec.photometric);
    for (tag, vr, v) in &spec.attributes {
        s(*tag, *vr, v);
    }
    let mut us = |tag: Tag, v: u16| obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    us(tags::SAMPLES_PER_PIXEL, 1);
    us(tags::ROWS, spec.height);
    us(tags::COLUMNS, spec.width);
    us(tags::BITS_ALLOCATED, spec.bits_allocated);
    us(tags::BITS_STORED, spec.bits_stored);
    us(tags::HIGH_BIT, spec.bits_stored.saturating_sub(1));
    us(tags::PIXEL_REPRESENTATION, 0);
    let pixel_value = if spec.bits_allocated == 8 {
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(
                spec.pixels
                    .iter()
                    .map(|&p| p.min(255) as u8)
                    .collect::<Vec<u8>>(),
            ),
        )
    } else {
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(spec.pixels.clone().into()),
        )
    };
    obj.put(pixel_value);
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name("MEDGATE"),
        )
        .map_err(|e| Error::Internal(format!("DICOM meta for {}: {e}", path.display())))?;
    file.write_to_file(path)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

/// A deterministic `2.25.` UID (ITU-T X.667 form) from a name.
pub fn uid_from(name: &str) -> String {
    let h = crate::hash::sha256_hex(name.as_bytes());
    let v = u128::from_str_radix(&h[..32], 16).unwrap_or(0) >> 1;
    format!("2.25.{v}")
}

/// Writes a demo case as a de-identified 16-bit DICOM: stored value = 8-bit pixel x 16,
/// 12 bits stored, a full-range VOI window, so the loader's window maps it back to the PNG's
/// brightness.
pub fn write_demo_dicom(path: &Path, case: &DemoCase, seed: u64, index: u64) -> Result<()> {
    let at = |k: &str| case.attributes.get(k).cloned().unwrap_or_default();
    let spec = DicomSpec {
        width: case.image.width() as u16,
        height: case.image.height() as u16,
        pixels: case
            .image
            .as_raw()
            .iter()
            .map(|&p| u16::from(p) * 16)
            .collect(),
        bits_allocated: 16,
        bits_stored: 12,
        photometric: "MONOCHROME2".into(),
        attributes: vec![
            (tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES".into()),
            (
                tags::DEIDENTIFICATION_METHOD,
                VR::LO,
                "synthetic phantom, no patient data".into(),
            ),
            (tags::BURNED_IN_ANNOTATION, VR::CS, "NO".into()),
            (tags::MANUFACTURER, VR::LO, at("manufacturer")),
            (tags::VIEW_POSITION, VR::CS, at("view_position")),
            (tags::RESCALE_INTERCEPT, VR::DS, "0".into()),
            (tags::RESCALE_SLOPE, VR::DS, "1".into()),
            (tags::WINDOW_CENTER, VR::DS, "2040.5".into()),
            (tags::WINDOW_WIDTH, VR::DS, "4081".into()),
        ],
        sop_instance_uid: uid_from(&format!("medgate-demo/{seed}/{index}")),
    };
    write_dicom(path, &spec)
}
