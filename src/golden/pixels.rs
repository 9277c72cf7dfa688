//! DICOM reading with bounded allocation, and a frame's stored values.
//!
//! This module owns the part of DICOM decoding that has to be careful with hostile or
//! damaged files: it reads a file into memory (up to [`MAX_FILE_BYTES`]), walks every
//! element header of the data set before dicom-rs parses it, and refuses a file whose
//! header claims more bytes than the file holds (a length that lies) or whose image would
//! need more than [`MAX_FRAME_PIXELS`] pixels per frame. Only then is the file handed to
//! dicom-rs, so no header value can make medgate allocate more than the file's own size
//! plus one bounded frame.
//!
//! # Files without a File Meta group
//! A file with neither the `DICM` preamble nor a group-0002 header is read the way
//! pydicom's `dcmread(force=True)` reads it: the transfer syntax is guessed from the first
//! element (byte order from its group number, explicit VR when bytes 4..6 spell a VR),
//! and [`FileInfo::file_meta`] records that it was guessed.
//!
//! # Stored values
//! [`stored_frame`] returns one frame's samples the way pydicom's `pixel_array` does with
//! its default options: unused high bits cleared (unsigned) or sign-extended from Bits
//! Stored (signed), YBR_FULL and YBR_FULL_422 converted to RGB with pydicom's formula,
//! planar configuration 1 interleaved, BitsAllocated 1 unpacked to 0/1, Float and Double
//! Float Pixel Data as floats. RLE Lossless is decoded here, JPEG Baseline and Extended
//! (8- and 12-bit) by [`super::jpeg`] (libjpeg's arithmetic, as pydicom + pylibjpeg-libjpeg
//! decode them), the other compressed syntaxes by dicom-pixeldata's codecs (JPEG lossless:
//! jpeg-decoder; JPEG 2000 and HTJ2K: OpenJPEG; JPEG-LS: CharLS; JPEG XL: jxl-oxide).
//!
//! # JPEG colour
//! The JPEG decoder applies no colour transform; as in pydicom, the samples are converted
//! from YCbCr to RGB only when the effective Photometric Interpretation is YBR_FULL or
//! YBR_FULL_422, where the effective one is pydicom's: RGB when the frame's component IDs
//! are `R G B` (or `r g b`), YBR_FULL_422 when a JFIF APP0 segment is present and the
//! file's value has no `YBR`, otherwise the file's value. A 3-component JPEG without JFIF
//! or Adobe markers stored as RGB therefore stays RGB (libjpeg's own default for such a
//! stream would be YCbCr, but pylibjpeg asks it for no transform).

use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

/// Largest file medgate reads (bytes): the whole file is held in memory while decoding.
pub const MAX_FILE_BYTES: u64 = 2 << 30;
/// Largest frame medgate decodes (rows x columns): 8192 x 8192.
pub const MAX_FRAME_PIXELS: u64 = 8192 * 8192;
/// Deepest nesting of sequences accepted.
const MAX_DEPTH: u32 = 32;

/// How the file's encoding was determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Transfer syntax UID used to read the data set.
    pub transfer_syntax: String,
    /// `present`, or `absent (transfer syntax guessed as pydicom force=True would)`.
    pub file_meta: String,
    /// For [`open_header`] only: the header was damaged at some element, and only the
    /// elements before it were read (why, and where).
    pub damaged: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

impl Enc {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(match self {
            Enc::ExplicitBe => u16::from_be_bytes(s),
            _ => u16::from_le_bytes(s),
        })
    }
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(match self {
            Enc::ExplicitBe => u32::from_be_bytes(s),
            _ => u32::from_le_bytes(s),
        })
    }
    fn from_uid(uid: &str) -> Option<Enc> {
        match uid {
            "1.2.840.10008.1.2" => Some(Enc::ImplicitLe),
            "1.2.840.10008.1.2.2" => Some(Enc::ExplicitBe),
            // Deflated data sets are inflated by dicom-rs; their headers are not pre-walked.
            "1.2.840.10008.1.2.1.99" => None,
            _ => Some(Enc::ExplicitLe),
        }
    }
}

const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];
const ALL_VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

fn tag_str(g: u16, e: u16) -> String {
    format!("({g:04X},{e:04X})")
}

fn implicit_is_sq(tag: Tag) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| format!("{:?}", e.vr()).contains("SQ"))
}

/// Walks the elements in `b[pos..end]`; with `until_delim`, stops after an item
/// delimitation item. Returns the position after the last element.
fn walk(
    b: &[u8],
    pos: usize,
    end: usize,
    enc: Enc,
    depth: u32,
    until_delim: bool,
) -> Result<usize, String> {
    walk_tracked(b, pos, end, enc, depth, until_delim, &mut 0)
}

/// [`walk`], recording in `good` where the last complete top-level element ends.
fn walk_tracked(
    b: &[u8],
    mut pos: usize,
    end: usize,
    enc: Enc,
    depth: u32,
    until_delim: bool,
    good: &mut usize,
) -> Result<usize, String> {
    if depth > MAX_DEPTH {
        return Err(format!("sequences nested deeper than {MAX_DEPTH} levels"));
    }
    while pos + 8 <= end {
        if depth == 0 {
            *good = pos;
        }
        let (g, e) = (
            enc.u16(b, pos).unwrap_or(0),
            enc.u16(b, pos + 2).unwrap_or(0),
        );
        if depth == 0 && b[pos..end].iter().all(|&x| x == 0) {
            // Zero bytes after the last element: padding, not data.
            return Ok(end);
        }
        if g == 0xFFFE && e == 0xE00D {
            if until_delim {
                return Ok(pos + 8);
            }
            return Err(format!("stray item delimiter at byte {pos}"));
        }
        let (vr, len, header): (Option<[u8; 2]>, u32, usize) = match enc {
            Enc::ImplicitLe => (None, enc.u32(b, pos + 4).unwrap_or(0), 8),
            _ => {
                let vr: [u8; 2] = [b[pos + 4], b[pos + 5]];
                if LONG_VRS.iter().any(|v| **v == vr) {
                    let len = enc.u32(b, pos + 8).ok_or_else(|| {
                        format!("element {} header cut off at byte {pos}", tag_str(g, e))
                    })?;
                    (Some(vr), len, 12)
                } else if ALL_VRS.iter().any(|v| **v == vr) {
                    (Some(vr), u32::from(enc.u16(b, pos + 6).unwrap_or(0)), 8)
                } else {
                    return Err(format!(
                        "element {} at byte {pos} has an invalid VR {:?}",
                        tag_str(g, e),
                        String::from_utf8_lossy(&vr)
                    ));
                }
            }
        };
        let start = pos + header;
        let is_sq = vr
            .map(|v| &v == b"SQ")
            .unwrap_or_else(|| implicit_is_sq(Tag(g, e)));
        if len == u32::MAX {
            let un = vr.is_some_and(|v| &v == b"UN");
            let inner = if un { Enc::ImplicitLe } else { enc };
            pos = if (g, e) == (0x7FE0, 0x0010) {
                walk_fragments(b, start, end, enc)?
            } else {
                walk_items(b, start, end, inner, depth + 1, None)?
            };
            continue;
        }
        let len = len as usize;
        if start + len > end {
            return Err(format!(
                "element {} at byte {pos} claims {len} bytes but only {} remain (a length that lies, or a truncated file)",
                tag_str(g, e),
                end.saturating_sub(start)
            ));
        }
        if is_sq {
            walk_items(b, start, start + len, enc, depth + 1, Some(start + len))?;
        }
        pos = start + len;
    }
    if until_delim {
        return Err("item without its delimiter (truncated file)".into());
    }
    Ok(pos)
}

/// Walks sequence items from `pos`: up to `bounded` (defined-length sequence) or to the
/// sequence delimiter.
fn walk_items(
    b: &[u8],
    mut pos: usize,
    end: usize,
    enc: Enc,
    depth: u32,
    bounded: Option<usize>,
) -> Result<usize, String> {
    let limit = bounded.unwrap_or(end);
    while pos + 8 <= limit {
        let (g, e) = (
            enc.u16(b, pos).unwrap_or(0),
            enc.u16(b, pos + 2).unwrap_or(0),
        );
        let len = enc.u32(b, pos + 4).unwrap_or(0);
        match (g, e) {
            (0xFFFE, 0xE0DD) => return Ok(pos + 8),
            (0xFFFE, 0xE000) => {
                let start = pos + 8;
                if len == u32::MAX {
                    pos = walk(b, start, limit, enc, depth, true)?;
                } else {
                    let len = len as usize;
                    if start + len > limit {
                        return Err(format!(
                            "sequence item at byte {pos} claims {len} bytes but only {} remain",
                            limit.saturating_sub(start)
                        ));
                    }
                    walk(b, start, start + len, enc, depth, false)?;
                    pos = start + len;
                }
            }
            _ => {
                return Err(format!(
                    "expected a sequence item at byte {pos}, found {}",
                    tag_str(g, e)
                ));
            }
        }
    }
    match bounded {
        Some(l) => Ok(l),
        None => Err("sequence without its delimiter (truncated file)".into()),
    }
}

fn walk_fragments(b: &[u8], mut pos: usize, end: usize, enc: Enc) -> Result<usize, String> {
    while pos + 8 <= end {
        let (g, e) = (
            enc.u16(b, pos).unwrap_or(0),
            enc.u16(b, pos + 2).unwrap_or(0),
        );
        let len = enc.u32(b, pos + 4).unwrap_or(0) as usize;
        match (g, e) {
            (0xFFFE, 0xE0DD) => return Ok(pos + 8),
            (0xFFFE, 0xE000) => {
                if pos + 8 + len > end {
                    return Err(format!(
                        "pixel data fragment at byte {pos} claims {len} bytes but only {} remain (truncated pixel stream)",
                        end.saturating_sub(pos + 8)
                    ));
                }
                pos += 8 + len;
            }
            _ => {
                return Err(format!(
                    "expected a pixel data fragment at byte {pos}, found {}",
                    tag_str(g, e)
                ));
            }
        }
    }
    Err("encapsulated pixel data without its sequence delimiter (truncated pixel stream)".into())
}

/// Guesses the encoding of a data set without File Meta (pydicom `force=True`).
fn guess_encoding(b: &[u8]) -> Option<(Enc, &'static str)> {
    if b.len() < 8 {
        return None;
    }
    let le = u16::from_le_bytes([b[0], b[1]]);
    let be = u16::from_be_bytes([b[0], b[1]]);
    let little = le <= be;
    let explicit = ALL_VRS.iter().any(|v| **v == [b[4], b[5]]);
    let group = if little { le } else { be };
    if group == 0 || group > 0x7FE0 {
        return None;
    }
    Some(match (little, explicit) {
        (true, false) => (Enc::ImplicitLe, "1.2.840.10008.1.2"),
        (true, true) => (Enc::ExplicitLe, "1.2.840.10008.1.2.1"),
        (false, _) => (Enc::ExplicitBe, "1.2.840.10008.1.2.2"),
    })
}

/// Reads the file meta group at `b[pos..]`: `(transfer syntax, end of group)`.
fn read_meta(b: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let enc = Enc::ExplicitLe;
    let mut ts = None;
    while pos + 8 <= b.len() && enc.u16(b, pos) == Some(0x0002) {
        let e = enc.u16(b, pos + 2).unwrap_or(0);
        let vr = [b[pos + 4], b[pos + 5]];
        let (len, header) = if LONG_VRS.iter().any(|v| **v == vr) {
            (enc.u32(b, pos + 8).unwrap_or(u32::MAX) as usize, 12)
        } else {
            (usize::from(enc.u16(b, pos + 6).unwrap_or(0)), 8)
        };
        let start = pos + header;
        if start + len > b.len() {
            return Err(format!(
                "file meta element {} claims {len} bytes but only {} remain",
                tag_str(2, e),
                b.len().saturating_sub(start)
            ));
        }
        if e == 0x0010 {
            ts = Some(
                String::from_utf8_lossy(&b[start..start + len])
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            );
        }
        pos = start + len;
    }
    let ts = ts.ok_or("the file meta group has no Transfer Syntax UID (0002,0010)")?;
    Ok((ts, pos))
}

/// Opens a DICOM file with bounded allocation (see the module docs).
pub fn open(path: &Path) -> Result<(DefaultDicomObject, FileInfo), String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "file is {size} bytes, above medgate's cap of {MAX_FILE_BYTES} bytes per DICOM file"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    open_bytes(&bytes, false)
}

/// [`open`], keeping only the elements before the pixel data (for header screens).
pub fn open_header(path: &Path) -> Result<(DefaultDicomObject, FileInfo), String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "file is {size} bytes, above medgate's cap of {MAX_FILE_BYTES} bytes per DICOM file"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    open_bytes(&bytes, true)
}

/// [`open`] on bytes already in memory; `header_only` stops before the pixel data.
pub fn open_bytes(
    bytes: &[u8],
    header_only: bool,
) -> Result<(DefaultDicomObject, FileInfo), String> {
    let options = || {
        let o = dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Never);
        if header_only {
            o.read_until(tags::PIXEL_DATA)
        } else {
            o
        }
    };
    let preamble = bytes.len() >= 132 && &bytes[128..132] == b"DICM";
    let meta_at = if preamble {
        Some(132)
    } else if bytes.starts_with(b"DICM") {
        Some(4)
    } else if bytes.len() >= 8
        && bytes[0..2] == [2, 0]
        && ALL_VRS.iter().any(|v| **v == [bytes[4], bytes[5]])
    {
        Some(0)
    } else {
        None
    };
    let (ts, data_at, file_meta) = match meta_at {
        Some(at) => {
            let (ts, end) = read_meta(bytes, at)?;
            (ts, end, "present".to_string())
        }
        None => {
            let (_, ts) = guess_encoding(bytes).ok_or(
                "not a DICOM file: no DICM preamble, no File Meta group, and the first bytes are not a data element",
            )?;
            (
                ts.to_string(),
                0,
                format!(
                    "absent: read as pydicom dcmread(force=True) reads it, transfer syntax guessed as {ts}"
                ),
            )
        }
    };
    let mut damaged = None;
    let mut bytes = bytes;
    let mut read_ts = ts.clone();
    let mut file_meta = file_meta;
    if let Some(enc) = Enc::from_uid(&ts) {
        let mut good = data_at;
        let mut walked = walk_tracked(bytes, data_at, bytes.len(), enc, 0, false, &mut good);
        if enc == Enc::ExplicitLe
            && good == data_at
            && walked.as_ref().is_err_and(|e| e.contains("invalid VR"))
            && walk(bytes, data_at, bytes.len(), Enc::ImplicitLe, 0, false).is_ok()
        {
            // The data set is implicit VR although the transfer syntax says explicit:
            // pydicom warns and reads it as implicit VR; so does medgate.
            walked = Ok(0);
            read_ts = "1.2.840.10008.1.2".into();
            file_meta = format!(
                "{file_meta}; the data set is encoded in implicit VR although the transfer syntax is explicit (read as pydicom reads it)"
            );
        }
        if let Err(e) = walked {
            if !header_only {
                return Err(e);
            }
            // A header screen reads what precedes the damage rather than nothing.
            damaged = Some(format!("{e}; only the {} bytes before it were read", good));
            bytes = &bytes[..good];
        }
    }
    let parsed = match meta_at {
        _ if read_ts != ts => Err(String::new()),
        Some(at @ (4 | 132)) => options()
            .from_reader(&bytes[at - 4..])
            .map_err(|e| format!("cannot parse: {e}")),
        _ => Err(String::new()),
    };
    // A meta group dicom-rs rejects (no group length, odd layout), or none at all: the
    // data set is parsed behind a freshly built meta group naming the same transfer syntax.
    let obj = match parsed {
        Ok(o) => o,
        Err(first) => rebuilt(&read_ts, &bytes[data_at..], options())
            .map_err(|e| if first.is_empty() { e } else { first })?,
    };
    let mut obj = obj;
    if read_ts != ts {
        // Pixel data still needs the file's codec.
        obj.meta_mut().transfer_syntax = ts.clone();
    }
    Ok((
        obj,
        FileInfo {
            transfer_syntax: ts,
            file_meta,
            damaged,
        },
    ))
}

/// Prefixes a data set with `DICM` and a fresh meta group naming `ts`, then parses it.
fn rebuilt(
    ts: &str,
    dataset: &[u8],
    options: dicom_object::OpenFileOptions,
) -> Result<DefaultDicomObject, String> {
    let meta = dicom_object::FileMetaTableBuilder::new()
        .transfer_syntax(ts)
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid("2.25.0")
        .build()
        .map_err(|e| format!("cannot build a file meta group: {e}"))?;
    let mut buf = b"DICM".to_vec();
    meta.write(&mut buf)
        .map_err(|e| format!("cannot build a file meta group: {e}"))?;
    buf.extend_from_slice(dataset);
    options
        .from_reader(buf.as_slice())
        .map_err(|e| format!("cannot parse: {e}"))
}

/// Image attributes of group 0028 that decoding needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageHeader {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// Samples per pixel.
    pub samples: u32,
    /// Photometric Interpretation (trimmed).
    pub photometric: String,
    /// Bits Allocated.
    pub bits_allocated: u32,
    /// Bits Stored.
    pub bits_stored: u32,
    /// Pixel Representation 1 (two's complement).
    pub signed: bool,
    /// Planar Configuration 1 (colour-by-plane).
    pub planar: bool,
    /// Number of Frames.
    pub frames: u32,
    /// Which pixel data element holds the pixels.
    pub float: Option<FloatKind>,
}

/// Float or Double Float Pixel Data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatKind {
    /// (7FE0,0008) Float Pixel Data, 32-bit IEEE.
    Float,
    /// (7FE0,0009) Double Float Pixel Data, 64-bit IEEE.
    Double,
}

/// An attribute's integer value, if present and parseable.
pub fn int_attr(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag).and_then(|e| e.to_int::<i64>().ok())
}

/// An attribute's string value (trimmed), if present.
pub fn str_attr(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(['\0', ' ']).to_string())
}

impl ImageHeader {
    /// Reads and checks the header against medgate's caps.
    pub fn read(obj: &DefaultDicomObject) -> Result<ImageHeader, String> {
        let need = |tag: Tag, name: &str| {
            int_attr(obj, tag).ok_or_else(|| format!("{name} {} is missing", tag_str(tag.0, tag.1)))
        };
        let float = if obj.get(tags::PIXEL_DATA).is_some() {
            None
        } else if obj.get(tags::FLOAT_PIXEL_DATA).is_some() {
            Some(FloatKind::Float)
        } else if obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some() {
            Some(FloatKind::Double)
        } else {
            return Err("no Pixel Data (7FE0,0010), Float Pixel Data or Double Float Pixel Data: not an image".into());
        };
        let rows = need(tags::ROWS, "Rows")?;
        let columns = need(tags::COLUMNS, "Columns")?;
        let samples = int_attr(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        let bits_allocated = match float {
            Some(FloatKind::Float) => int_attr(obj, tags::BITS_ALLOCATED).unwrap_or(32),
            Some(FloatKind::Double) => int_attr(obj, tags::BITS_ALLOCATED).unwrap_or(64),
            None => need(tags::BITS_ALLOCATED, "Bits Allocated")?,
        };
        let bits_stored = int_attr(obj, tags::BITS_STORED).unwrap_or(bits_allocated);
        let frames = int_attr(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
        let photometric =
            str_attr(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
        if rows <= 0 || columns <= 0 {
            return Err(format!("image is {columns}x{rows}: nothing to decode"));
        }
        let pixels = (rows as u64) * (columns as u64);
        if pixels > MAX_FRAME_PIXELS {
            return Err(format!(
                "image is {columns}x{rows} ({pixels} pixels), above medgate's cap of {MAX_FRAME_PIXELS} pixels per frame"
            ));
        }
        if !matches!(samples, 1 | 3) {
            return Err(format!(
                "Samples per Pixel is {samples}; medgate decodes 1 or 3"
            ));
        }
        let allowed: &[i64] = if float.is_some() {
            &[32, 64]
        } else {
            &[1, 8, 16, 32]
        };
        if !allowed.contains(&bits_allocated) {
            return Err(format!(
                "Bits Allocated is {bits_allocated}; medgate decodes 1, 8, 16, 32 (and 32/64 float)"
            ));
        }
        if bits_stored < 1 || bits_stored > bits_allocated {
            return Err(format!(
                "Bits Stored is {bits_stored} with Bits Allocated {bits_allocated}: Bits Stored must be 1..=Bits Allocated"
            ));
        }
        if frames > 1_000_000 {
            return Err(format!(
                "Number of Frames is {frames}, beyond any real image"
            ));
        }
        Ok(ImageHeader {
            rows: rows as u32,
            columns: columns as u32,
            samples: samples as u32,
            photometric,
            bits_allocated: bits_allocated as u32,
            bits_stored: bits_stored as u32,
            signed: int_attr(obj, tags::PIXEL_REPRESENTATION) == Some(1),
            planar: int_attr(obj, tags::PLANAR_CONFIGURATION) == Some(1),
            frames: frames as u32,
            float,
        })
    }

    /// Pixels per frame.
    pub fn pixels(&self) -> usize {
        self.rows as usize * self.columns as usize
    }
}

/// One frame's stored values (after colour conversion to RGB where pydicom does it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFrame {
    /// Samples per pixel after conversion (1 or 3).
    pub samples: u32,
    /// Interleaved samples, row-major.
    pub values: Vec<f64>,
    /// True when the values came out of a YBR to RGB conversion or a decoder that
    /// outputs RGB.
    pub rgb: bool,
}

fn is_native(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.2"
            | "1.2.840.10008.1.2.1.99"
    )
}

/// Human name of a transfer syntax.
pub fn transfer_syntax_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.1.98" => "Encapsulated Uncompressed Explicit VR Little Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline (Process 1)",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended (Process 2 & 4)",
        "1.2.840.10008.1.2.4.57" => "JPEG Lossless, Non-Hierarchical (Process 14)",
        "1.2.840.10008.1.2.4.70" => {
            "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)"
        }
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Lossy (Near-Lossless)",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 (Lossless Only)",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.4.201" => "HTJ2K (Lossless Only)",
        "1.2.840.10008.1.2.4.202" => "HTJ2K with RPCL Options (Lossless Only)",
        "1.2.840.10008.1.2.4.203" => "HTJ2K",
        "1.2.840.10008.1.2.4.110" => "JPEG XL Lossless",
        "1.2.840.10008.1.2.4.111" => "JPEG XL JPEG Recompression",
        "1.2.840.10008.1.2.4.112" => "JPEG XL",
        _ => "unknown transfer syntax",
    }
}

/// True for transfer syntaxes whose decoded values are exact (lossless or uncompressed).
pub fn is_lossless(uid: &str) -> bool {
    !matches!(
        uid,
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.81"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.203"
            | "1.2.840.10008.1.2.4.112"
    )
}

fn fix_bits(raw: u64, h: &ImageHeader) -> f64 {
    let bs = h.bits_stored.min(63);
    let v = raw & ((1u64 << bs) - 1);
    if h.signed && v >> (bs - 1) & 1 == 1 {
        (v as i64 - (1i64 << bs)) as f64
    } else {
        v as f64
    }
}

/// pydicom's YBR_FULL to RGB (float32 matrix, round half up, clip to 0..=255).
fn ybr_to_rgb(v: &mut [f64]) {
    let m01 = (-0.114f64 * 1.772 / 0.587) as f32;
    let m21 = (-0.299f64 * 1.402 / 0.587) as f32;
    for px in v.chunks_exact_mut(3) {
        let y = px[0] as f32;
        let cb = px[1] as f32 - 128.0;
        let cr = px[2] as f32 - 128.0;
        let r = y + 0.0 * cb + 1.402f32 * cr;
        let g = y + m01 * cb + m21 * cr;
        let b = y + 1.772f32 * cb + 0.0 * cr;
        for (o, c) in px.iter_mut().zip([r, g, b]) {
            *o = f64::from((c + 0.5).floor().clamp(0.0, 255.0));
        }
    }
}

/// Decodes frame `index` (0-based) to stored values.
pub fn stored_frame(
    obj: &DefaultDicomObject,
    ts: &str,
    h: &ImageHeader,
    index: u32,
) -> Result<StoredFrame, String> {
    let px = h.pixels();
    let spp = h.samples as usize;
    if let Some(kind) = h.float {
        let tag = match kind {
            FloatKind::Float => tags::FLOAT_PIXEL_DATA,
            FloatKind::Double => tags::DOUBLE_FLOAT_PIXEL_DATA,
        };
        let e = obj.get(tag).ok_or("float pixel data missing")?;
        let bytes = e.to_bytes().map_err(|e| format!("float pixel data: {e}"))?;
        let w = if kind == FloatKind::Float { 4 } else { 8 };
        let n = px * spp;
        let from = index as usize * n * w;
        let chunk = bytes.get(from..from + n * w).ok_or_else(|| {
            format!(
                "truncated pixel data: {} bytes, frame {} needs bytes {from}..{}",
                bytes.len(),
                index + 1,
                from + n * w
            )
        })?;
        let values = chunk
            .chunks_exact(w)
            .map(|c| {
                if w == 4 {
                    f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                } else {
                    f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
                }
            })
            .collect();
        return Ok(StoredFrame {
            samples: h.samples,
            values,
            rgb: false,
        });
    }
    let ybr = matches!(h.photometric.as_str(), "YBR_FULL" | "YBR_FULL_422");
    if is_native(ts) {
        let e = obj.get(tags::PIXEL_DATA).ok_or("pixel data missing")?;
        let bytes = e.to_bytes().map_err(|e| format!("pixel data: {e}"))?;
        let big = ts == "1.2.840.10008.1.2.2";
        let values = native_frame(&bytes, h, index, big)?;
        let mut values = values;
        if spp == 3 && h.planar {
            let mut inter = vec![0.0; values.len()];
            for (i, v) in inter.iter_mut().enumerate() {
                *v = values[(i % 3) * px + i / 3];
            }
            values = inter;
        }
        if ybr && spp == 3 && h.bits_allocated == 8 {
            ybr_to_rgb(&mut values);
        }
        return Ok(StoredFrame {
            samples: h.samples,
            values,
            rgb: spp == 3,
        });
    }
    if ts == "1.2.840.10008.1.2.5" {
        let mut values = rle_frame(obj, h, index)?;
        if spp == 3 && ybr && h.bits_allocated == 8 {
            ybr_to_rgb(&mut values);
        }
        return Ok(StoredFrame {
            samples: h.samples,
            values,
            rgb: spp == 3,
        });
    }
    if matches!(ts, "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51")
        && let Some(values) = jpeg_frame(obj, ts, h, index)?
    {
        return Ok(StoredFrame {
            samples: h.samples,
            values,
            rgb: spp == 3,
        });
    }
    use dicom_pixeldata::PixelDecoder;
    let decoded = obj
        .decode_pixel_data_frame(index)
        .map_err(|e| format!("cannot decode {} pixel data: {e}", transfer_syntax_name(ts)))?;
    let data = decoded.data();
    let n = px * spp;
    if n == 0 || data.len() < n {
        return Err(format!(
            "decoder returned {} bytes for a {}x{}x{} frame (truncated pixel stream?)",
            data.len(),
            h.columns,
            h.rows,
            spp
        ));
    }
    let w = data.len() / n;
    let mut values: Vec<f64> = match w {
        1 => data[..n]
            .iter()
            .map(|&b| fix_bits(u64::from(b), h))
            .collect(),
        2 => data[..2 * n]
            .chunks_exact(2)
            .map(|c| fix_bits(u64::from(u16::from_le_bytes([c[0], c[1]])), h))
            .collect(),
        4 => data[..4 * n]
            .chunks_exact(4)
            .map(|c| fix_bits(u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])), h))
            .collect(),
        _ => {
            return Err(format!(
                "decoder returned {} bytes for {n} samples: not 1, 2 or 4 bytes per sample",
                data.len()
            ));
        }
    };
    // Codecs that transform colour themselves (JPEG, JPEG 2000 with MCT) hand back RGB;
    // RLE and encapsulated uncompressed keep the stored colour space, as does J2K without MCT.
    let codec_converts = ts.starts_with("1.2.840.10008.1.2.4.5")
        || ts.starts_with("1.2.840.10008.1.2.4.7")
        || ts.starts_with("1.2.840.10008.1.2.4.11");
    if spp == 3 && ybr && !codec_converts && h.bits_allocated == 8 {
        ybr_to_rgb(&mut values);
    }
    Ok(StoredFrame {
        samples: h.samples,
        values,
        rgb: spp == 3,
    })
}

/// The bytes of frame `index` of encapsulated pixel data, the way pydicom's `get_frame`
/// finds them: all fragments for a single frame, one fragment per frame when the counts
/// match, else the Basic Offset Table. `None` when none of these applies.
fn encapsulated_frame(
    obj: &DefaultDicomObject,
    h: &ImageHeader,
    index: u32,
) -> Result<Option<Vec<u8>>, String> {
    let value = obj
        .get(tags::PIXEL_DATA)
        .ok_or("pixel data missing")?
        .value();
    let frags = value
        .fragments()
        .ok_or("compressed pixel data is not encapsulated")?;
    let i = index as usize;
    if h.frames <= 1 {
        return Ok(Some(frags.concat()));
    }
    if frags.len() == h.frames as usize {
        return Ok(frags.get(i).cloned());
    }
    let table = value.offset_table().unwrap_or(&[]);
    if table.len() != h.frames as usize {
        return Ok(None);
    }
    let (start, end) = (
        u64::from(table[i]),
        table.get(i + 1).map_or(u64::MAX, |&o| u64::from(o)),
    );
    let mut at = 0u64;
    let mut out = Vec::new();
    for f in frags {
        if at >= start && at < end {
            out.extend_from_slice(f);
        }
        at += 8 + f.len() as u64;
    }
    Ok((!out.is_empty()).then_some(out))
}

/// JPEG Baseline / Extended through [`super::jpeg`], colour as in the module docs.
/// `Ok(None)` when that decoder does not implement the stream's coding process (the caller
/// falls back to dicom-pixeldata).
fn jpeg_frame(
    obj: &DefaultDicomObject,
    ts: &str,
    h: &ImageHeader,
    index: u32,
) -> Result<Option<Vec<f64>>, String> {
    let Some(data) = encapsulated_frame(obj, h, index)? else {
        return Ok(None);
    };
    let name = transfer_syntax_name(ts);
    let img = match super::jpeg::decode(&data, MAX_FRAME_PIXELS) {
        Ok(img) => img,
        Err(super::jpeg::Error::Unsupported(_)) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot decode {name} pixel data (frame {}): {e}",
                index + 1
            ));
        }
    };
    if (img.width, img.height) != (h.columns, h.rows)
        || img.component_ids.len() != h.samples as usize
    {
        return Err(format!(
            "{name} frame {} is {}x{} with {} component(s), but the header says {}x{} with {} sample(s) per pixel",
            index + 1,
            img.width,
            img.height,
            img.component_ids.len(),
            h.columns,
            h.rows,
            h.samples
        ));
    }
    let mut values: Vec<f64> = img
        .samples
        .iter()
        .map(|&v| fix_bits(u64::from(v), h))
        .collect();
    if h.samples == 3 && h.bits_allocated == 8 {
        let ids = img.component_ids.as_slice();
        let pi = if ids == [82, 71, 66] || ids == [114, 103, 98] {
            "RGB"
        } else if img.jfif && !h.photometric.contains("YBR") {
            "YBR_FULL_422"
        } else {
            h.photometric.as_str()
        };
        if matches!(pi, "YBR_FULL" | "YBR_FULL_422") {
            ybr_to_rgb(&mut values);
        }
    }
    Ok(Some(values))
}

fn native_frame(bytes: &[u8], h: &ImageHeader, index: u32, big: bool) -> Result<Vec<f64>, String> {
    let px = h.pixels();
    let spp = h.samples as usize;
    let truncated = |need: usize| {
        format!(
            "truncated pixel data: {} bytes, but frame {} of a {}x{}x{} image at {} bits allocated ends at byte {need}",
            bytes.len(),
            index + 1,
            h.columns,
            h.rows,
            spp,
            h.bits_allocated
        )
    };
    if h.bits_allocated == 1 {
        let n = px * spp;
        let first_bit = index as usize * n;
        let need = (first_bit + n).div_ceil(8);
        if bytes.len() < need {
            return Err(truncated(need));
        }
        return Ok((first_bit..first_bit + n)
            .map(|bit| f64::from((bytes[bit / 8] >> (bit % 8)) & 1))
            .collect());
    }
    let w = h.bits_allocated as usize / 8;
    if h.photometric == "YBR_FULL_422" && spp == 3 && w == 1 {
        // Two pixels share one Cb, Cr pair: Y1 Y2 Cb Cr.
        let frame = px * 2;
        let from = index as usize * frame;
        let chunk = bytes
            .get(from..from + frame)
            .ok_or_else(|| truncated(from + frame))?;
        let mut out = Vec::with_capacity(px * 3);
        for q in chunk.chunks_exact(4) {
            for y in [q[0], q[1]] {
                out.extend([f64::from(y), f64::from(q[2]), f64::from(q[3])]);
            }
        }
        if px % 2 == 1 {
            out.truncate(px * 3);
        }
        return Ok(out);
    }
    let frame = px * spp * w;
    let from = index as usize * frame;
    let chunk = bytes
        .get(from..from + frame)
        .ok_or_else(|| truncated(from + frame))?;
    Ok(match w {
        1 => chunk.iter().map(|&b| fix_bits(u64::from(b), h)).collect(),
        2 => chunk
            .chunks_exact(2)
            .map(|c| fix_bits(u64::from(u16::from_le_bytes([c[0], c[1]])), h))
            .collect(),
        _ => chunk
            .chunks_exact(4)
            .map(|c| {
                // Big endian OW is read by dicom-rs as 16-bit words: swap them back.
                let v = if big {
                    u32::from(u16::from_le_bytes([c[0], c[1]])) << 16
                        | u32::from(u16::from_le_bytes([c[2], c[3]]))
                } else {
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                };
                fix_bits(u64::from(v), h)
            })
            .collect(),
    })
}

/// RLE Lossless (PS3.5 Annex G), decoded here rather than by dicom-rs so that every Bits
/// Allocated pydicom decodes (8, 16, 32) works: one fragment per frame, a 64-byte header of
/// segment offsets, one PackBits segment per byte plane (most significant first) per sample.
fn rle_frame(obj: &DefaultDicomObject, h: &ImageHeader, index: u32) -> Result<Vec<f64>, String> {
    let frag = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.value().fragments())
        .ok_or("RLE Lossless pixel data is not encapsulated")?;
    let data = frag.get(index as usize).ok_or_else(|| {
        format!(
            "RLE Lossless: frame {} has no fragment ({} fragments; one per frame is required)",
            index + 1,
            frag.len()
        )
    })?;
    if !h.bits_allocated.is_multiple_of(8) {
        return Err(format!(
            "RLE Lossless with Bits Allocated {}",
            h.bits_allocated
        ));
    }
    let bpp = h.bits_allocated as usize / 8;
    let spp = h.samples as usize;
    let px = h.pixels();
    let want = bpp * spp;
    if data.len() < 64 {
        return Err(
            "RLE Lossless: fragment shorter than its 64-byte header (truncated pixel stream)"
                .into(),
        );
    }
    let word = |i: usize| {
        u32::from_le_bytes([
            data[4 * i],
            data[4 * i + 1],
            data[4 * i + 2],
            data[4 * i + 3],
        ]) as usize
    };
    let nseg = word(0);
    if nseg != want {
        return Err(format!(
            "RLE Lossless: {nseg} segments, but {spp} sample(s) of {} bits need {want}",
            h.bits_allocated
        ));
    }
    let mut planes = Vec::with_capacity(nseg);
    for s in 0..nseg {
        let start = word(1 + s);
        let end = if s + 1 < nseg {
            word(2 + s)
        } else {
            data.len()
        };
        if start < 64 || start > end || end > data.len() {
            return Err(format!(
                "RLE Lossless: segment {} spans bytes {start}..{end} of a {}-byte fragment (truncated pixel stream?)",
                s + 1,
                data.len()
            ));
        }
        let seg = &data[start..end];
        let mut out = Vec::with_capacity(px);
        let mut i = 0;
        while i < seg.len() && out.len() < px {
            let n = seg[i] as i8;
            i += 1;
            if n >= 0 {
                let k = n as usize + 1;
                out.extend_from_slice(&seg[i.min(seg.len())..(i + k).min(seg.len())]);
                i += k;
            } else if n != -128 {
                let k = (1 - isize::from(n)) as usize;
                if let Some(&b) = seg.get(i) {
                    out.extend(std::iter::repeat_n(b, k));
                }
                i += 1;
            }
        }
        if out.len() < px {
            return Err(format!(
                "RLE Lossless: segment {} decodes to {} bytes, the frame needs {px} (truncated pixel stream)",
                s + 1,
                out.len()
            ));
        }
        out.truncate(px);
        planes.push(out);
    }
    let values = (0..px * spp)
        .map(|i| {
            let (p, smp) = (i / spp, i % spp);
            let v = planes[smp * bpp..(smp + 1) * bpp]
                .iter()
                .fold(0u64, |v, plane| v << 8 | u64::from(plane[p]));
            fix_bits(v, h)
        })
        .collect();
    Ok(values)
}
