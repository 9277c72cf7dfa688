//! One image loader for PNG, JPEG and DICOM, into a normalised, tensor-ready buffer.
//!
//! Every model backend reads pixels through [`load_image`], so preprocessing differences
//! between formats cannot creep in per backend.
//!
//! # DICOM
//! Decoded with dicom-pixeldata (uncompressed, RLE and the natively supported codecs), first
//! frame only. Values go through the modality LUT (Rescale Slope/Intercept), then the first
//! VOI window when present (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT or SIGMOID), else a
//! min-max normalisation over the image; MONOCHROME1 is inverted so that bright always
//! means dense. RGB DICOM is scaled by its bits stored.

use std::path::Path;

use dicom_pixeldata::{PixelDecoder, VoiLutFunction};

use crate::error::{Error, Result};

/// A decoded image with samples in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Channels per pixel: 1 (grayscale) or 3 (RGB).
    pub channels: u32,
    /// Interleaved row-major samples in [0, 1] (`width * height * channels` values).
    pub data: Vec<f32>,
}

/// Image container formats medgate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// DICOM Part 10 file.
    Dicom,
}

impl ImageFormat {
    /// The format of a file, from its first bytes (and the `.dcm` extension).
    pub fn detect(path: &Path) -> Result<ImageFormat> {
        use std::io::Read;
        let mut head = Vec::with_capacity(132);
        std::fs::File::open(path)
            .and_then(|f| f.take(132).read_to_end(&mut head))
            .map_err(|e| Error::io(path, e))?;
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Ok(ImageFormat::Png)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Ok(ImageFormat::Jpeg)
        } else if head.len() == 132 && &head[128..] == b"DICM" || super::deid::is_dicom(path) {
            Ok(ImageFormat::Dicom)
        } else {
            Err(Error::input_hint(
                format!("{}: not a PNG, JPEG or DICOM file", path.display()),
                "medgate reads PNG, JPEG and DICOM (Part 10, with the DICM preamble)",
            ))
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Dicom => "dicom",
        }
    }
}

/// Loads a PNG, JPEG or DICOM image. Errors name the file and say what failed.
pub fn load_image(path: &Path) -> Result<LoadedImage> {
    match ImageFormat::detect(path)? {
        ImageFormat::Png | ImageFormat::Jpeg => load_raster(path),
        ImageFormat::Dicom => load_dicom(path),
    }
}

fn load_raster(path: &Path) -> Result<LoadedImage> {
    let img = image::open(path).map_err(|e| {
        Error::input_hint(
            format!("{}: cannot decode image: {e}", path.display()),
            "re-export the image as 8- or 16-bit PNG",
        )
    })?;
    let (width, height) = (img.width(), img.height());
    let gray = matches!(
        img.color(),
        image::ColorType::L8
            | image::ColorType::L16
            | image::ColorType::La8
            | image::ColorType::La16
    );
    Ok(if gray {
        LoadedImage {
            width,
            height,
            channels: 1,
            data: img.to_luma32f().into_raw(),
        }
    } else {
        LoadedImage {
            width,
            height,
            channels: 3,
            data: img.to_rgb32f().into_raw(),
        }
    })
}

fn dicom_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::input_hint(
        format!("{}: {what}: {e}", path.display()),
        "check the file with a DICOM viewer; medgate decodes uncompressed, RLE and baseline JPEG transfer syntaxes",
    )
}

fn is_jpeg(obj: &dicom_object::DefaultDicomObject) -> bool {
    obj.meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .starts_with("1.2.840.10008.1.2.4.")
}

/// The PS3.3 C.11.2.1.2 VOI functions, output in [0, 1].
fn voi(x: f64, center: f64, width: f64, f: VoiLutFunction) -> f64 {
    match f {
        VoiLutFunction::Linear => {
            let w = (width - 1.0).max(1.0);
            let c = center - 0.5;
            if x <= c - w / 2.0 {
                0.0
            } else if x > c + w / 2.0 {
                1.0
            } else {
                (x - c) / w + 0.5
            }
        }
        VoiLutFunction::LinearExact => {
            let w = width.max(f64::MIN_POSITIVE);
            ((x - center) / w + 0.5).clamp(0.0, 1.0)
        }
        VoiLutFunction::Sigmoid => {
            1.0 / (1.0 + (-4.0 * (x - center) / width.max(f64::MIN_POSITIVE)).exp())
        }
    }
}

fn load_dicom(path: &Path) -> Result<LoadedImage> {
    let obj = dicom_object::open_file(path).map_err(|e| dicom_err(path, "cannot read DICOM", e))?;
    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| dicom_err(path, "cannot decode pixel data", e))?;
    let (width, height) = (decoded.columns(), decoded.rows());
    let spp = u32::from(decoded.samples_per_pixel());
    let n = (width as usize) * (height as usize) * spp as usize;
    let photometric = decoded.photometric_interpretation().as_str().to_string();
    let values: Vec<f64> = decoded
        .to_vec::<f64>()
        .map_err(|e| dicom_err(path, "cannot convert pixel data", e))?;
    if values.len() < n {
        return Err(dicom_err(
            path,
            "pixel data",
            format!("{} samples for {width}x{height}x{spp}", values.len()),
        ));
    }
    let first = &values[..n];
    let data: Vec<f32> = match (spp, photometric.as_str()) {
        (1, "MONOCHROME1" | "MONOCHROME2") => {
            let window = decoded
                .window()
                .ok()
                .flatten()
                .and_then(|w| w.first().copied())
                .filter(|w| w.width > 0.0);
            let func = decoded
                .voi_lut_function()
                .ok()
                .flatten()
                .and_then(|f| f.first().copied())
                .unwrap_or(VoiLutFunction::Linear);
            let mut out: Vec<f64> = match window {
                Some(w) => first
                    .iter()
                    .map(|&x| voi(x, w.center, w.width, func))
                    .collect(),
                None => {
                    let lo = first.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = first.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let span = if hi > lo { hi - lo } else { 1.0 };
                    first.iter().map(|&x| (x - lo) / span).collect()
                }
            };
            if photometric == "MONOCHROME1" {
                out.iter_mut().for_each(|v| *v = 1.0 - *v);
            }
            out.into_iter().map(|v| v.clamp(0.0, 1.0) as f32).collect()
        }
        (3, "RGB") | (3, "YBR_FULL_422") | (3, "YBR_FULL")
            if photometric == "RGB" || is_jpeg(&obj) =>
        {
            // JPEG codestreams are decoded to RGB; uncompressed YBR is refused.
            let max = f64::from((1u32 << decoded.bits_stored().min(16)) - 1);
            first
                .iter()
                .map(|&v| (v / max).clamp(0.0, 1.0) as f32)
                .collect()
        }
        _ => {
            return Err(dicom_err(
                path,
                "unsupported image type",
                format!("{spp} sample(s) per pixel, {photometric}"),
            ));
        }
    };
    Ok(LoadedImage {
        width,
        height,
        channels: spp,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_voi_matches_ps3_3_formula() {
        // c = 2040.5, w = 4081: x/4080 exactly, the demo set's DICOM window.
        for x in [0.0, 16.0, 2040.0, 4080.0] {
            assert!((voi(x, 2040.5, 4081.0, VoiLutFunction::Linear) - x / 4080.0).abs() < 1e-12);
        }
        // PS3.3 example: c = 40, w = 400 (CT soft tissue): below c - 0.5 - 199.5 is 0.
        assert_eq!(voi(-160.0, 40.0, 400.0, VoiLutFunction::Linear), 0.0);
        assert_eq!(voi(240.0, 40.0, 400.0, VoiLutFunction::Linear), 1.0);
        assert!((voi(40.0, 40.0, 400.0, VoiLutFunction::Sigmoid) - 0.5).abs() < 1e-12);
    }
}
