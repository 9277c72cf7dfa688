//! Damaged and hostile DICOM files: a clear reason, no panic, no unbounded allocation.
//!
//! Every file is crafted here byte by byte (explicit VR little endian unless said
//! otherwise), so each test states exactly what is wrong with it. Reference for what is
//! valid: PS3.5 section 7 (data element encoding) and PS3.3 C.7.6.3 (Image Pixel module).

use std::path::PathBuf;

use medgate::golden::image::{DecodeOptions, FramePolicy, decode_dicom};
use medgate::golden::pixels::{MAX_FRAME_PIXELS, open_bytes};

/// One explicit VR little endian element.
fn el(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(group.to_le_bytes());
    v.extend(elem.to_le_bytes());
    v.extend(vr);
    let long = matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT" | b"OF" | b"OD");
    if long {
        v.extend([0, 0]);
        v.extend((value.len() as u32).to_le_bytes());
    } else {
        v.extend((value.len() as u16).to_le_bytes());
    }
    v.extend(value);
    v
}

fn us(group: u16, elem: u16, x: u16) -> Vec<u8> {
    el(group, elem, b"US", &x.to_le_bytes())
}

fn text(group: u16, elem: u16, vr: &[u8; 2], s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    if b.len() % 2 == 1 {
        b.push(if vr == b"UI" { 0 } else { b' ' });
    }
    el(group, elem, vr, &b)
}

/// Preamble, DICM and a File Meta group naming `ts`.
fn meta(ts: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(el(0x0002, 0x0001, b"OB", &[0, 1]));
    body.extend(text(0x0002, 0x0002, b"UI", "1.2.840.10008.5.1.4.1.1.7"));
    body.extend(text(0x0002, 0x0003, b"UI", "2.25.1"));
    body.extend(text(0x0002, 0x0010, b"UI", ts));
    body.extend(text(0x0002, 0x0012, b"UI", "2.25.2"));
    let mut v = vec![0u8; 128];
    v.extend(b"DICM");
    v.extend(el(
        0x0002,
        0x0000,
        b"UL",
        &(body.len() as u32).to_le_bytes(),
    ));
    v.extend(body);
    v
}

/// A grayscale image header (group 0028) of `cols` x `rows`.
fn image_header(rows: u16, cols: u16, bits_alloc: u16, bits_stored: u16, pi: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(us(0x0028, 0x0002, 1));
    v.extend(text(0x0028, 0x0004, b"CS", pi));
    v.extend(us(0x0028, 0x0010, rows));
    v.extend(us(0x0028, 0x0011, cols));
    v.extend(us(0x0028, 0x0100, bits_alloc));
    v.extend(us(0x0028, 0x0101, bits_stored));
    v.extend(us(0x0028, 0x0102, bits_stored.saturating_sub(1)));
    v.extend(us(0x0028, 0x0103, 0));
    v
}

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (t, p)
}

fn reason(bytes: &[u8]) -> String {
    let (_t, p) = write("bad.dcm", bytes);
    match decode_dicom(&p, &DecodeOptions::default()) {
        Ok(_) => panic!("decoded a damaged file"),
        Err(e) => e,
    }
}

fn good_file() -> Vec<u8> {
    let mut f = meta(EXPLICIT_LE);
    f.extend(image_header(4, 4, 16, 12, "MONOCHROME2"));
    let px: Vec<u8> = (0..16u16).flat_map(|i| (i * 100).to_le_bytes()).collect();
    f.extend(el(0x7FE0, 0x0010, b"OW", &px));
    f
}

#[test]
fn the_crafted_baseline_decodes() {
    let (_t, p) = write("ok.dcm", &good_file());
    let (img, info) = decode_dicom(&p, &DecodeOptions::default()).unwrap();
    assert_eq!((img.width, img.height, img.channels), (4, 4, 1));
    assert_eq!(info.file_meta, "present");
    // min-max: 0 and 1500 are the extremes.
    assert_eq!(img.data[0], 0.0);
    assert_eq!(img.data[15], 1.0);
}

#[test]
fn truncated_pixel_stream_is_named() {
    let mut f = meta(EXPLICIT_LE);
    f.extend(image_header(16, 16, 16, 12, "MONOCHROME2"));
    f.extend(el(0x7FE0, 0x0010, b"OW", &[0u8; 200])); // 512 bytes needed
    let r = reason(&f);
    assert!(
        r.contains("truncated pixel data") && r.contains("200 bytes"),
        "{r}"
    );
}

#[test]
fn truncated_encapsulated_fragment_is_named() {
    let mut f = meta("1.2.840.10008.1.2.4.90");
    f.extend(image_header(16, 16, 16, 12, "MONOCHROME2"));
    f.extend([
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    f.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]); // empty offset table
    f.extend([0xFE, 0xFF, 0x00, 0xE0, 0x00, 0x10, 0, 0]); // fragment claims 4096 bytes
    f.extend([0xFF, 0x4F, 0xFF, 0x51]); // ... but 4 follow
    let r = reason(&f);
    assert!(r.contains("truncated pixel stream"), "{r}");
}

#[test]
fn bits_stored_above_bits_allocated_is_refused() {
    let mut f = meta(EXPLICIT_LE);
    f.extend(image_header(4, 4, 16, 20, "MONOCHROME2"));
    f.extend(el(0x7FE0, 0x0010, b"OW", &[0u8; 32]));
    let r = reason(&f);
    assert!(r.contains("Bits Stored is 20"), "{r}");
    let mut f = meta(EXPLICIT_LE);
    f.extend(image_header(4, 4, 12, 12, "MONOCHROME2"));
    f.extend(el(0x7FE0, 0x0010, b"OW", &[0u8; 32]));
    let r = reason(&f);
    assert!(r.contains("Bits Allocated is 12"), "{r}");
}

#[test]
fn a_length_that_lies_is_refused_before_parsing() {
    // A private OB element claiming 1000 bytes where 10 remain.
    let mut f = meta(EXPLICIT_LE);
    f.extend(image_header(4, 4, 16, 12, "MONOCHROME2"));
    f.extend([0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    f.extend(1000u32.to_le_bytes());
    f.extend([0u8; 10]);
    let r = reason(&f);
    assert!(
        r.contains("(0009,1010)") && r.contains("claims 1000 bytes but only 10 remain"),
        "{r}"
    );
    // The same inside a sequence item (the item is honest, the element in it is not).
    let mut inner = Vec::new();
    inner.extend([0x08, 0x00, 0x00, 0x01, b'S', b'H']);
    inner.extend(60000u16.to_le_bytes());
    inner.extend(b"AB");
    let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
    item.extend((inner.len() as u32).to_le_bytes());
    item.extend(&inner);
    let mut f = meta(EXPLICIT_LE);
    f.extend(el(0x0008, 0x1140, b"SQ", &item));
    f.extend(image_header(4, 4, 16, 12, "MONOCHROME2"));
    f.extend(el(0x7FE0, 0x0010, b"OW", &[0u8; 32]));
    let r = reason(&f);
    assert!(
        r.contains("(0008,0100) at byte") && r.contains("claims 60000"),
        "{r}"
    );
}

#[test]
fn ten_gigabytes_claimed_are_refused_without_allocating() {
    // Pixel Data claims 0xFFFFFFF0 bytes (4 GiB, the most a 32-bit length can say).
    let mut f = meta(EXPLICIT_LE);
    f.extend(image_header(4, 4, 16, 12, "MONOCHROME2"));
    f.extend([0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
    f.extend(0xFFFF_FFF0u32.to_le_bytes());
    f.extend([0u8; 32]);
    let r = reason(&f);
    assert!(r.contains("claims 4294967280 bytes"), "{r}");
    // A header asking for 60000 x 60000 x 3 frames of 16 bits: 21.6 GB decoded.
    let mut f = meta(EXPLICIT_LE);
    f.extend(text(0x0028, 0x0008, b"IS", "3"));
    f.extend(image_header(60000, 60000, 16, 12, "MONOCHROME2"));
    f.extend(el(0x7FE0, 0x0010, b"OW", &[0u8; 64]));
    let r = reason(&f);
    assert!(
        r.contains("60000x60000") && r.contains(&format!("cap of {MAX_FRAME_PIXELS} pixels")),
        "{r}"
    );
}

#[test]
fn a_short_palette_lut_is_named() {
    let mut f = meta(EXPLICIT_LE);
    f.extend(image_header(4, 4, 8, 8, "PALETTE COLOR"));
    let desc: Vec<u8> = [256u16, 0, 16]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    for e in [0x1101u16, 0x1102, 0x1103] {
        f.extend(el(0x0028, e, b"US", &desc));
    }
    for e in [0x1201u16, 0x1202, 0x1203] {
        f.extend(el(0x0028, e, b"OW", &[0u8; 100])); // 512 bytes needed
    }
    f.extend(el(0x7FE0, 0x0010, b"OB", &[0u8; 16]));
    let r = reason(&f);
    assert!(
        r.contains("short palette LUT") && r.contains("100 bytes"),
        "{r}"
    );
}

#[test]
fn a_short_modality_lut_is_named() {
    let mut lut_item = Vec::new();
    let desc: Vec<u8> = [4096u16, 0, 12]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    lut_item.extend(el(0x0028, 0x3002, b"US", &desc));
    lut_item.extend(el(0x0028, 0x3006, b"OW", &[0u8; 64])); // 32 entries of 4096
    let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
    item.extend((lut_item.len() as u32).to_le_bytes());
    item.extend(lut_item);
    let mut f = meta(EXPLICIT_LE);
    f.extend(image_header(4, 4, 16, 12, "MONOCHROME2"));
    f.extend(el(0x0028, 0x3000, b"SQ", &item));
    f.extend(el(0x7FE0, 0x0010, b"OW", &[0u8; 32]));
    let r = reason(&f);
    assert!(
        r.contains("Modality LUT Sequence") && r.contains("short LUT"),
        "{r}"
    );
}

#[test]
fn a_sequence_without_its_delimiter_is_named() {
    let mut f = meta(EXPLICIT_LE);
    f.extend([
        0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    f.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    f.extend(text(0x0008, 0x1150, b"UI", "1.2.3"));
    let r = reason(&f);
    assert!(r.contains("without its delimiter"), "{r}");
}

#[test]
fn multi_frame_follows_the_policy() {
    let mut f = meta(EXPLICIT_LE);
    f.extend(text(0x0028, 0x0008, b"IS", "3"));
    f.extend(image_header(2, 2, 8, 8, "MONOCHROME2"));
    f.extend(el(
        0x7FE0,
        0x0010,
        b"OB",
        &[0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 24],
    ));
    let r = reason(&f);
    assert!(
        r.contains("multi-frame image (3 frames)") && r.contains("refuse"),
        "{r}"
    );
    let (_t, p) = write("mf.dcm", &f);
    for (policy, frame, last) in [
        (FramePolicy::First, "1 of 3", 3.0),
        (FramePolicy::Middle, "2 of 3", 13.0),
    ] {
        let o = DecodeOptions {
            frames: policy,
            ..Default::default()
        };
        let (img, info) = decode_dicom(&p, &o).unwrap();
        assert_eq!(info.frame, frame);
        // min-max over the chosen frame: its last pixel is its maximum.
        assert_eq!(img.data[3], 1.0, "{last}");
    }
}

#[test]
fn a_file_without_file_meta_is_read_like_pydicom_force() {
    // Implicit VR little endian data set, no preamble, no DICM, no group 0002.
    let imp = |g: u16, e: u16, v: &[u8]| {
        let mut b = Vec::new();
        b.extend(g.to_le_bytes());
        b.extend(e.to_le_bytes());
        b.extend((v.len() as u32).to_le_bytes());
        b.extend(v);
        b
    };
    let mut f = Vec::new();
    f.extend(imp(0x0008, 0x0060, b"OT"));
    f.extend(imp(0x0028, 0x0002, &1u16.to_le_bytes()));
    f.extend(imp(0x0028, 0x0004, b"MONOCHROME2 "));
    f.extend(imp(0x0028, 0x0010, &2u16.to_le_bytes()));
    f.extend(imp(0x0028, 0x0011, &2u16.to_le_bytes()));
    f.extend(imp(0x0028, 0x0100, &8u16.to_le_bytes()));
    f.extend(imp(0x0028, 0x0101, &8u16.to_le_bytes()));
    f.extend(imp(0x0028, 0x0103, &0u16.to_le_bytes()));
    f.extend(imp(0x7FE0, 0x0010, &[0, 50, 100, 200]));
    let (obj, info) = open_bytes(&f, false).unwrap();
    assert!(info.file_meta.starts_with("absent"), "{}", info.file_meta);
    assert_eq!(info.transfer_syntax, "1.2.840.10008.1.2");
    drop(obj);
    let (_t, p) = write("nometa.dcm", &f);
    let (img, info) = decode_dicom(&p, &DecodeOptions::default()).unwrap();
    assert!(info.file_meta.contains("force=True"));
    assert_eq!(img.data, vec![0.0, 0.25, 0.5, 1.0]);
}

#[test]
fn garbage_is_not_a_dicom_file() {
    let r = reason(b"this is not DICOM at all, just some text in a .dcm file");
    assert!(
        r.contains("not a DICOM file") || r.contains("invalid VR") || r.contains("claims"),
        "{r}"
    );
}

/// The 12-bit JPEG Extended stream of the parity fixture `JPGExtended.dcm` (256 x 1024).
fn jpeg_extended_stream() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dicom/files/JPGExtended.dcm"
    );
    let b = std::fs::read(path).unwrap();
    let soi = b.windows(3).position(|w| w == [0xFF, 0xD8, 0xFF]).unwrap();
    let eoi = b.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap();
    b[soi..eoi + 2].to_vec()
}

/// A JPEG Extended file whose single fragment holds `stream`.
fn jpeg_file(rows: u16, cols: u16, stream: &[u8]) -> Vec<u8> {
    let mut f = meta("1.2.840.10008.1.2.4.51");
    f.extend(image_header(rows, cols, 16, 12, "MONOCHROME2"));
    f.extend([
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    f.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]); // empty offset table
    let mut s = stream.to_vec();
    if s.len() % 2 == 1 {
        s.push(0);
    }
    f.extend([0xFE, 0xFF, 0x00, 0xE0]);
    f.extend((s.len() as u32).to_le_bytes());
    f.extend(s);
    f.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    f
}

#[test]
fn a_12_bit_jpeg_decodes_and_a_cut_one_is_named() {
    let stream = jpeg_extended_stream();
    let (_t, p) = write("ok.dcm", &jpeg_file(1024, 256, &stream));
    let (img, _) = decode_dicom(&p, &DecodeOptions::default()).unwrap();
    assert_eq!((img.width, img.height), (256, 1024));
    // The entropy-coded data cut in half (whole fragment, so only the JPEG decoder sees it).
    let r = reason(&jpeg_file(1024, 256, &stream[..stream.len() / 2]));
    assert!(
        r.contains("JPEG Extended") && r.contains("truncated pixel stream"),
        "{r}"
    );
}

#[test]
fn a_jpeg_frame_that_contradicts_the_header_is_named() {
    let r = reason(&jpeg_file(512, 256, &jpeg_extended_stream()));
    assert!(r.contains("256x1024") && r.contains("256x512"), "{r}");
}
