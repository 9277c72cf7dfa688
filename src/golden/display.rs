//! The DICOM grayscale display pipeline (PS3.14, PS3.3 C.11), and palette colour.
//!
//! Stored values -> Modality LUT (Modality LUT Sequence, else Rescale Slope/Intercept) ->
//! VOI (a window with VOI LUT Function LINEAR, LINEAR_EXACT or SIGMOID, a VOI LUT Sequence,
//! or min-max) -> Presentation (MONOCHROME1, or Presentation LUT Shape INVERSE on
//! MONOCHROME2, inverts) -> samples in [0, 1]. Each step follows pydicom's
//! `apply_modality_lut` / `apply_voi_lut` (the reference the fixtures under
//! `tests/fixtures/dicom/` check against); the VOI output is normalised to [0, 1] by its
//! output range (the window's `y_min..y_max`, or `2^bits - 1` of the VOI LUT's entries).
//! PALETTE COLOR goes through the Red/Green/Blue Palette Color LUTs and is normalised by
//! the LUT's bit depth, as pydicom's `apply_color_lut` reads it.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

pub use crate::protocol::VoiPolicy;

/// A LUT: `(entries, first mapped value, bits per entry, data)`.
#[derive(Debug, Clone, PartialEq)]
struct Lut {
    first: i64,
    bits: u32,
    data: Vec<u16>,
}

impl Lut {
    fn read(item: &InMemDicomObject) -> Result<Lut, String> {
        let desc = item
            .get(tags::LUT_DESCRIPTOR)
            .ok_or("LUT Descriptor (0028,3002) missing")?
            .to_multi_int::<i64>()
            .map_err(|e| format!("LUT Descriptor: {e}"))?;
        if desc.len() != 3 {
            return Err(format!(
                "LUT Descriptor has {} values, expected 3",
                desc.len()
            ));
        }
        let entries = if desc[0] == 0 {
            65536
        } else {
            desc[0].rem_euclid(65536) as usize
        };
        let data = lut_words(
            item.get(tags::LUT_DATA)
                .ok_or("LUT Data (0028,3006) missing")?,
        )?;
        if data.len() < entries {
            return Err(format!(
                "LUT Data has {} entries but its descriptor says {entries} (a short LUT)",
                data.len()
            ));
        }
        Ok(Lut {
            first: desc[1],
            bits: desc[2].clamp(1, 16) as u32,
            data: data[..entries].to_vec(),
        })
    }

    /// pydicom: values below the first mapped get entry 0, above the last the last entry;
    /// float inputs are truncated toward zero (numpy's cast to an unsigned index).
    fn map(&self, x: f64) -> f64 {
        let n = self.data.len() as f64;
        let i = if x >= self.first as f64 {
            (x - self.first as f64).trunc().clamp(0.0, n - 1.0)
        } else {
            0.0
        };
        f64::from(self.data[i as usize])
    }
}

fn lut_words(e: &dicom_object::mem::InMemElement) -> Result<Vec<u16>, String> {
    use dicom_core::PrimitiveValue;
    match e.value().primitive() {
        Some(PrimitiveValue::U16(v)) => Ok(v.to_vec()),
        Some(PrimitiveValue::U8(v)) => Ok(v
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()),
        Some(p) => p
            .to_multi_int::<u16>()
            .map_err(|e| format!("LUT Data: {e}")),
        None => Err("LUT Data is not a primitive value".into()),
    }
}

fn first_item(obj: &DefaultDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)
        .and_then(|e| e.value().items())
        .and_then(|items| items.first())
}

fn floats(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.get(tag)
        .and_then(|e| e.to_multi_float64().ok())
        .filter(|v| !v.is_empty())
}

/// What the Modality LUT step did.
#[derive(Debug, Clone, PartialEq)]
pub enum Modality {
    /// Modality LUT Sequence item 0; its bits per entry.
    Lut(u32),
    /// Rescale Slope and Intercept.
    Rescale(f64, f64),
    /// Neither present: identity.
    Identity,
}

/// Applies the Modality LUT in place (pydicom `apply_modality_lut`).
pub fn modality(obj: &DefaultDicomObject, v: &mut [f64]) -> Result<Modality, String> {
    if let Some(item) = first_item(obj, tags::MODALITY_LUT_SEQUENCE) {
        let lut = Lut::read(item).map_err(|e| format!("Modality LUT Sequence: {e}"))?;
        v.iter_mut().for_each(|x| *x = lut.map(*x));
        return Ok(Modality::Lut(lut.bits));
    }
    let slope = floats(obj, tags::RESCALE_SLOPE).map(|s| s[0]);
    let intercept = floats(obj, tags::RESCALE_INTERCEPT).map(|s| s[0]);
    if let (Some(s), Some(i)) = (slope, intercept) {
        if !s.is_finite() || !i.is_finite() {
            return Err(format!("Rescale Slope {s} / Intercept {i} are not finite"));
        }
        v.iter_mut().for_each(|x| *x = *x * s + i);
        return Ok(Modality::Rescale(s, i));
    }
    Ok(Modality::Identity)
}

/// The VOI function of PS3.3 C.11.2.1.2 / C.11.2.1.3, output in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VoiFunction {
    /// LINEAR (the default).
    Linear,
    /// LINEAR_EXACT.
    LinearExact,
    /// SIGMOID.
    Sigmoid,
}

impl VoiFunction {
    fn name(self) -> &'static str {
        match self {
            VoiFunction::Linear => "LINEAR",
            VoiFunction::LinearExact => "LINEAR_EXACT",
            VoiFunction::Sigmoid => "SIGMOID",
        }
    }
}

/// One window applied to `x`, as a fraction of the output range.
pub fn window(x: f64, center: f64, width: f64, f: VoiFunction) -> f64 {
    match f {
        VoiFunction::Linear | VoiFunction::LinearExact => {
            let (c, w) = if f == VoiFunction::Linear {
                (center - 0.5, width - 1.0)
            } else {
                (center, width)
            };
            if x <= c - w / 2.0 {
                0.0
            } else if x > c + w / 2.0 {
                1.0
            } else {
                (x - c) / w + 0.5
            }
        }
        VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - center) / width).exp()),
    }
}

/// The VOI step that was applied, as recorded in the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VoiApplied {
    /// A window from the file.
    Window {
        /// Window Center.
        center: f64,
        /// Window Width.
        width: f64,
        /// VOI LUT Function.
        function: VoiFunction,
    },
    /// VOI LUT Sequence item 0.
    Lut {
        /// Entries.
        entries: usize,
        /// Bits per entry.
        bits: u32,
    },
    /// Min-max over the frame.
    Minmax {
        /// Smallest value after the Modality LUT.
        min: f64,
        /// Largest value after the Modality LUT.
        max: f64,
        /// Why min-max was used.
        reason: String,
    },
    /// Colour image: no VOI (PALETTE COLOR through its palette, RGB scaled by its bits).
    Colour {
        /// What was done.
        note: String,
    },
}

impl VoiApplied {
    /// One line for text output and the case record, e.g. `window C=40 W=400 LINEAR`.
    pub fn describe(&self) -> String {
        match self {
            VoiApplied::Window {
                center,
                width,
                function,
            } => format!("window C={center} W={width} {}", function.name()),
            VoiApplied::Lut { entries, bits } => {
                format!("VOI LUT ({entries} entries, {bits}-bit)")
            }
            VoiApplied::Minmax { min, max, reason } => {
                format!("min-max [{min}, {max}] ({reason})")
            }
            VoiApplied::Colour { note } => note.clone(),
        }
    }
}

fn file_window(obj: &DefaultDicomObject) -> Result<Option<(f64, f64, VoiFunction)>, String> {
    let (Some(c), Some(w)) = (
        floats(obj, tags::WINDOW_CENTER),
        floats(obj, tags::WINDOW_WIDTH),
    ) else {
        return Ok(None);
    };
    let f = match super::pixels::str_attr(obj, tags::VOILUT_FUNCTION)
        .map(|s| s.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("") | Some("LINEAR") => VoiFunction::Linear,
        Some("LINEAR_EXACT") => VoiFunction::LinearExact,
        Some("SIGMOID") => VoiFunction::Sigmoid,
        Some(other) => {
            return Err(format!(
                "VOI LUT Function `{other}` is not defined by PS3.3"
            ));
        }
    };
    let (c, w) = (c[0], w[0]);
    let ok = match f {
        VoiFunction::Linear => w >= 1.0,
        _ => w > 0.0,
    };
    if !ok || !c.is_finite() || !w.is_finite() {
        return Err(format!(
            "window C={c} W={w} is invalid for {} (width must be >= 1 for LINEAR, > 0 otherwise)",
            f.name()
        ));
    }
    Ok(Some((c, w, f)))
}

/// Applies the VOI step in place, leaving values in [0, 1].
pub fn voi(
    obj: &DefaultDicomObject,
    v: &mut [f64],
    policy: VoiPolicy,
) -> Result<VoiApplied, String> {
    let lut_item = first_item(obj, tags::VOILUT_SEQUENCE);
    if let (VoiPolicy::Lut, Some(item)) = (policy, lut_item) {
        let lut = Lut::read(item).map_err(|e| format!("VOI LUT Sequence: {e}"))?;
        let max = f64::from((1u32 << lut.bits) - 1);
        v.iter_mut()
            .for_each(|x| *x = (lut.map(*x) / max).clamp(0.0, 1.0));
        return Ok(VoiApplied::Lut {
            entries: lut.data.len(),
            bits: lut.bits,
        });
    }
    let why = if policy != VoiPolicy::Minmax {
        match file_window(obj)? {
            Some((c, w, f)) => {
                v.iter_mut()
                    .for_each(|x| *x = window(*x, c, w, f).clamp(0.0, 1.0));
                return Ok(VoiApplied::Window {
                    center: c,
                    width: w,
                    function: f,
                });
            }
            None if policy == VoiPolicy::Lut => "no VOI LUT Sequence or window in the file",
            None => "no window in the file",
        }
    } else {
        "protocol voi: minmax"
    };
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = max - min;
    v.iter_mut().for_each(|x| {
        *x = if span > 0.0 { (*x - min) / span } else { 0.0 };
    });
    Ok(VoiApplied::Minmax {
        min: if min.is_finite() { min } else { 0.0 },
        max: if max.is_finite() { max } else { 0.0 },
        reason: why.into(),
    })
}

/// The VOI step [`voi`] will apply, decided from the header alone (for the per-case record):
/// its [`VoiApplied::describe`] line, with `min-max` bounds left out.
pub fn voi_plan(obj: &DefaultDicomObject, policy: VoiPolicy) -> Result<String, String> {
    if let (VoiPolicy::Lut, Some(item)) = (policy, first_item(obj, tags::VOILUT_SEQUENCE)) {
        let lut = Lut::read(item).map_err(|e| format!("VOI LUT Sequence: {e}"))?;
        return Ok(VoiApplied::Lut {
            entries: lut.data.len(),
            bits: lut.bits,
        }
        .describe());
    }
    if policy == VoiPolicy::Minmax {
        return Ok("min-max (protocol voi: minmax)".into());
    }
    Ok(match file_window(obj)? {
        Some((center, width, function)) => VoiApplied::Window {
            center,
            width,
            function,
        }
        .describe(),
        None if policy == VoiPolicy::Lut => {
            "min-max (no VOI LUT Sequence or window in the file)".into()
        }
        None => "min-max (no window in the file)".into(),
    })
}

/// Whether the presentation inverts: MONOCHROME1, or MONOCHROME2 with Presentation LUT
/// Shape INVERSE (PS3.3 C.11.6: INVERSE on MONOCHROME1 is the same single inversion).
pub fn inverts(obj: &DefaultDicomObject, photometric: &str) -> bool {
    let shape =
        super::pixels::str_attr(obj, tags::PRESENTATION_LUT_SHAPE).map(|s| s.to_ascii_uppercase());
    photometric == "MONOCHROME1" || shape.as_deref() == Some("INVERSE")
}

/// Maps palette indices through the Palette Color LUTs (pydicom `apply_color_lut`),
/// returning interleaved RGB in [0, 1] and the LUT's bit depth.
pub fn palette(obj: &DefaultDicomObject, idx: &[f64]) -> Result<(Vec<f64>, u32), String> {
    if obj
        .get(tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)
        .is_some()
        && obj.get(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA).is_none()
    {
        return Err("segmented palette colour LUTs are not supported".into());
    }
    let desc = obj
        .get(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR)
        .ok_or("PALETTE COLOR without a Red Palette Color Lookup Table Descriptor")?
        .to_multi_int::<i64>()
        .map_err(|e| format!("palette descriptor: {e}"))?;
    if desc.len() != 3 {
        return Err(format!(
            "palette descriptor has {} values, expected 3",
            desc.len()
        ));
    }
    let entries = if desc[0] == 0 {
        65536
    } else {
        desc[0].rem_euclid(65536) as usize
    };
    let first = desc[1];
    let mut luts = Vec::new();
    let mut depth = 0;
    for (tag, name) in [
        (tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA, "Red"),
        (tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA, "Green"),
        (tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA, "Blue"),
    ] {
        let bytes = obj
            .get(tag)
            .ok_or_else(|| format!("{name} Palette Color Lookup Table Data missing"))?
            .to_bytes()
            .map_err(|e| format!("{name} palette data: {e}"))?;
        let d = if bytes.len() == entries {
            8
        } else if bytes.len() == 2 * entries || bytes.len() == 2 * entries + 1 {
            16
        } else {
            return Err(format!(
                "{name} palette LUT has {} bytes, but its descriptor's {entries} entries need {entries} (8-bit) or {} (16-bit) bytes (a short palette LUT)",
                bytes.len(),
                2 * entries
            ));
        };
        depth = d;
        let lut: Vec<u16> = if d == 8 {
            bytes.iter().map(|&b| u16::from(b)).collect()
        } else {
            bytes
                .chunks_exact(2)
                .take(entries)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        luts.push(lut);
    }
    let max = f64::from((1u32 << depth) - 1);
    let mut out = Vec::with_capacity(idx.len() * 3);
    for &x in idx {
        let i = if x >= first as f64 {
            ((x - first as f64) as usize).min(entries - 1)
        } else {
            0
        };
        for lut in &luts {
            out.push(f64::from(lut[i]) / max);
        }
    }
    Ok((out, depth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_matches_ps3_3_formula() {
        // c = 2040.5, w = 4081: x/4080 exactly, the demo set's DICOM window.
        for x in [0.0, 16.0, 2040.0, 4080.0] {
            assert!((window(x, 2040.5, 4081.0, VoiFunction::Linear) - x / 4080.0).abs() < 1e-12);
        }
        // PS3.3 C.11.2.1.2.1: c = 40, w = 400 (CT soft tissue).
        assert_eq!(window(-160.0, 40.0, 400.0, VoiFunction::Linear), 0.0);
        assert_eq!(window(240.0, 40.0, 400.0, VoiFunction::Linear), 1.0);
        assert!((window(40.0, 40.0, 400.0, VoiFunction::Sigmoid) - 0.5).abs() < 1e-12);
        // LINEAR_EXACT (C.11.2.1.3.2): (x - c) / w + 0.5.
        assert!((window(140.0, 40.0, 400.0, VoiFunction::LinearExact) - 0.75).abs() < 1e-12);
    }
}
