//! One image loader for PNG, JPEG and DICOM, into a normalised, tensor-ready buffer.
//!
//! Every model backend reads pixels through [`load_image`], so preprocessing differences
//! between formats cannot creep in per backend.
//!
//! # DICOM
//! [`load_image_with`] decodes one frame (the protocol's `frames` policy; multi-frame
//! images are refused by default) through [`super::pixels`] (bounded reading, every
//! transfer syntax dicom-pixeldata has a codec for, stored values as pydicom's
//! `pixel_array` gives them) and renders it through [`super::display`] (Modality LUT, the
//! protocol's `voi` choice, MONOCHROME1 / Presentation LUT Shape inversion). Colour images
//! (RGB, YBR converted to RGB, PALETTE COLOR through its palette) come back as 3 channels.
//! [`DecodeInfo`] says what was done, so the evidence can record the VOI actually applied.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::display::{self, VoiApplied};
use super::pixels;
pub use crate::protocol::{FramePolicy, VoiPolicy};

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
        ImageFormat::Dicom => load_image_with(path, &DecodeOptions::default()).map(|d| d.image),
    }
}

fn load_raster(path: &Path) -> Result<LoadedImage> {
    let img = image::open(path).map_err(|e| {
        Error::input_hint(
            format!("{}: cannot decode image: {e}", path.display()),
            "re-export the image as 8- or 16-bit PNG",
        )
    })?;
    Ok(to_loaded(&img))
}

/// The dimensions an encoded PNG or JPEG declares in its header, read without decoding the
/// pixels (so a server can refuse an image before allocating for it).
pub fn raster_dimensions(bytes: &[u8]) -> std::result::Result<(u32, u32), String> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .into_dimensions()
        .map_err(|e| format!("cannot read the image header: {e}"))
}

/// Decodes an encoded PNG or JPEG held in memory, exactly as [`load_image`] decodes a file
/// (the same decoder and the same conversion to samples in [0, 1]). `max_pixels` bounds
/// `width * height` as declared by the header, checked before any pixel is decoded. Errors
/// name no file (there is none).
pub fn decode_raster(bytes: &[u8], max_pixels: u64) -> Result<LoadedImage> {
    if !(bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.starts_with(&[0xFF, 0xD8, 0xFF])) {
        return Err(Error::input("the image is neither PNG nor JPEG"));
    }
    let (w, h) = raster_dimensions(bytes).map_err(Error::input)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(Error::input(format!(
            "the image is {w}x{h} = {pixels} pixels, over the limit of {max_pixels}"
        )));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::input(format!("cannot read the image: {e}")))?;
    let mut limits = image::Limits::default();
    // 16-bit RGBA is the widest sample layout PNG has: 8 bytes a pixel, plus slack.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(1 << 20));
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::input(format!("cannot decode image: {e}")))?;
    Ok(to_loaded(&img))
}

fn to_loaded(img: &image::DynamicImage) -> LoadedImage {
    let (width, height) = (img.width(), img.height());
    let gray = matches!(
        img.color(),
        image::ColorType::L8
            | image::ColorType::L16
            | image::ColorType::La8
            | image::ColorType::La16
    );
    if gray {
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
    }
}

/// How DICOM images are decoded: the protocol's `golden_set.frames` and `golden_set.voi`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Which frame of a multi-frame image.
    pub frames: FramePolicy,
    /// Which VOI transformation.
    pub voi: VoiPolicy,
}

impl DecodeOptions {
    /// The options a protocol's golden set names.
    pub fn from_spec(spec: &crate::protocol::GoldenSetSpec) -> DecodeOptions {
        DecodeOptions {
            frames: spec.frames,
            voi: spec.voi,
        }
    }
}

/// What decoding a DICOM image did (absent for PNG and JPEG files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodeInfo {
    /// Transfer syntax UID.
    pub transfer_syntax: String,
    /// Its name.
    pub transfer_syntax_name: String,
    /// `present`, or how a file without File Meta was read.
    pub file_meta: String,
    /// Photometric Interpretation as stored.
    pub photometric: String,
    /// `WxH`, samples per pixel, bits allocated/stored, signedness.
    pub layout: String,
    /// Frames in the file and the 1-based frame used.
    pub frame: String,
    /// The Modality LUT step.
    pub modality: String,
    /// The VOI step actually applied.
    pub voi: VoiApplied,
    /// Whether the output was inverted (MONOCHROME1 or Presentation LUT Shape INVERSE).
    pub inverted: bool,
}

/// A decoded image and, for DICOM, what decoding did.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The model input.
    pub image: LoadedImage,
    /// DICOM decoding facts.
    pub info: Option<DecodeInfo>,
}

/// [`load_image`] with explicit DICOM options, also returning what was done.
pub fn load_image_with(path: &Path, opts: &DecodeOptions) -> Result<Decoded> {
    match ImageFormat::detect(path)? {
        ImageFormat::Png | ImageFormat::Jpeg => Ok(Decoded {
            image: load_raster(path)?,
            info: None,
        }),
        ImageFormat::Dicom => {
            let (image, info) = decode_dicom(path, opts).map_err(|why| {
                Error::input_hint(
                    format!("{}: {why}", path.display()),
                    "check the file with a DICOM viewer; `medgate inspect SET --decode` lists every image's decodability",
                )
            })?;
            Ok(Decoded {
                image,
                info: Some(info),
            })
        }
    }
}

/// Decodes and renders one DICOM file; the error is a one-line reason.
pub fn decode_dicom(
    path: &Path,
    opts: &DecodeOptions,
) -> std::result::Result<(LoadedImage, DecodeInfo), String> {
    let (obj, file) = pixels::open(path)?;
    render_dicom(&obj, &file, opts)
}

/// Renders an opened DICOM object (see [`decode_dicom`]).
fn render_dicom(
    obj: &dicom_object::DefaultDicomObject,
    file: &pixels::FileInfo,
    opts: &DecodeOptions,
) -> std::result::Result<(LoadedImage, DecodeInfo), String> {
    let h = pixels::ImageHeader::read(obj)?;
    let index = match (h.frames, opts.frames) {
        (1, _) | (_, FramePolicy::First) => 0,
        (n, FramePolicy::Middle) => n / 2,
        (n, FramePolicy::Refuse) => {
            return Err(format!(
                "multi-frame image ({n} frames): the protocol's `golden_set.frames` is `refuse` (the default); set it to `first` or `middle` to evaluate one frame"
            ));
        }
    };
    let frame = pixels::stored_frame(obj, &file.transfer_syntax, &h, index)?;
    let mut values = frame.values;
    let (width, height) = (h.columns, h.rows);
    let pi = h.photometric.as_str();
    let (channels, modality, voi_applied, inverted, data) = match (frame.samples, pi) {
        (1, "MONOCHROME1" | "MONOCHROME2") => {
            let m = display::modality(obj, &mut values)?;
            let v = display::voi(obj, &mut values, opts.voi)?;
            let inv = display::inverts(obj, pi);
            if inv {
                values.iter_mut().for_each(|x| *x = 1.0 - *x);
            }
            let m = match m {
                display::Modality::Lut(bits) => format!("Modality LUT Sequence ({bits}-bit)"),
                display::Modality::Rescale(s, i) => format!("rescale slope {s} intercept {i}"),
                display::Modality::Identity => "identity".into(),
            };
            (1, m, v, inv, values)
        }
        (1, "PALETTE COLOR") => {
            let (rgb, depth) = display::palette(obj, &values)?;
            (
                3,
                "identity".into(),
                VoiApplied::Colour {
                    note: format!("palette colour LUT ({depth}-bit)"),
                },
                false,
                rgb,
            )
        }
        (3, "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT" | "YBR_PARTIAL_420") => {
            let max = ((1u64 << h.bits_stored.min(32)) - 1) as f64;
            values.iter_mut().for_each(|x| *x /= max);
            (
                3,
                "identity".into(),
                VoiApplied::Colour {
                    note: format!("RGB scaled by {} bits stored", h.bits_stored),
                },
                false,
                values,
            )
        }
        (spp, pi) => {
            return Err(format!(
                "unsupported image type: {spp} sample(s) per pixel, {pi}"
            ));
        }
    };
    let data: Vec<f32> = data
        .into_iter()
        .map(|v| {
            if v.is_nan() {
                0.0
            } else {
                v.clamp(0.0, 1.0) as f32
            }
        })
        .collect();
    let info = DecodeInfo {
        transfer_syntax: file.transfer_syntax.clone(),
        transfer_syntax_name: pixels::transfer_syntax_name(&file.transfer_syntax).into(),
        file_meta: file.file_meta.clone(),
        photometric: h.photometric.clone(),
        layout: format!(
            "{}x{}x{}, {} bits allocated, {} stored, {}{}",
            width,
            height,
            h.samples,
            h.bits_allocated,
            h.bits_stored,
            match h.float {
                Some(pixels::FloatKind::Float) => "float",
                Some(pixels::FloatKind::Double) => "double float",
                None if h.signed => "signed",
                None => "unsigned",
            },
            if h.planar && h.samples == 3 {
                ", planar"
            } else {
                ""
            }
        ),
        frame: format!("{} of {}", index + 1, h.frames),
        modality,
        voi: voi_applied,
        inverted,
    };
    Ok((
        LoadedImage {
            width,
            height,
            channels,
            data,
        },
        info,
    ))
}

/// What decoding will do to a DICOM image, from its header alone, as one line for the
/// per-case record (`decode` column of `cases.parquet`): the VOI (or colour handling),
/// the frame, and the inversion; `None` for PNG and JPEG files. A file that cannot be
/// decoded gives `not decodable: <reason>`.
pub fn decode_note(path: &Path, opts: &DecodeOptions) -> Option<String> {
    if !matches!(ImageFormat::detect(path), Ok(ImageFormat::Dicom)) {
        return None;
    }
    let note = (|| -> std::result::Result<String, String> {
        let (obj, _) = pixels::open_header(path)?;
        let h = pixels::ImageHeader::read(&obj)?;
        let frame = match (h.frames, opts.frames) {
            (1, _) | (_, FramePolicy::First) => 1,
            (n, FramePolicy::Middle) => n / 2 + 1,
            (n, FramePolicy::Refuse) => {
                return Err(format!("multi-frame image ({n} frames), frames: refuse"));
            }
        };
        let what = match (h.samples, h.photometric.as_str()) {
            (1, pi @ ("MONOCHROME1" | "MONOCHROME2")) => format!(
                "VOI {}{}",
                display::voi_plan(&obj, opts.voi)?,
                if display::inverts(&obj, pi) {
                    ", inverted"
                } else {
                    ""
                }
            ),
            (_, pi) => format!("colour ({pi})"),
        };
        Ok(format!("{what}; frame {frame} of {}", h.frames))
    })();
    Some(note.unwrap_or_else(|e| format!("not decodable: {e}")))
}

/// Encodes a decoded image (samples in [0, 1]) as an 8-bit PNG: each sample is
/// `round(clamp(v, 0, 1) * 255)`, as the `openai` backend sends it.
pub fn encode_png(img: &LoadedImage) -> std::result::Result<Vec<u8>, String> {
    let px: Vec<u8> = img
        .data
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let dynamic = match img.channels {
        1 => image::GrayImage::from_raw(img.width, img.height, px)
            .map(image::DynamicImage::ImageLuma8),
        3 => {
            image::RgbImage::from_raw(img.width, img.height, px).map(image::DynamicImage::ImageRgb8)
        }
        c => return Err(format!("cannot encode an image with {c} channels")),
    }
    .ok_or_else(|| "decoded image has the wrong number of samples".to_string())?;
    let mut out = std::io::Cursor::new(Vec::new());
    dynamic
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok(out.into_inner())
}
