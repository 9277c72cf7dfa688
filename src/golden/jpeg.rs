//! Sequential DCT JPEG (ITU-T T.81 processes 1, 2 and 4 with Huffman coding: JPEG Baseline
//! and JPEG Extended, 8- and 12-bit samples), decoded to the samples pydicom gives.
//!
//! pydicom decodes these transfer syntaxes with pylibjpeg-libjpeg, which wraps Thomas
//! Richter's libjpeg (the ISO/IEC 10918 reference implementation) and asks it for no colour
//! transform. jpeg-decoder (dicom-pixeldata's JPEG codec) refuses 12-bit precision and
//! applies its own YCbCr rules, so medgate decodes JPEG Baseline and Extended here and
//! reproduces that library's arithmetic step by step:
//!
//! * dequantisation and the integer IDCT of its `dct/idct.cpp` (9 fractional bits in the
//!   constants, rows then columns, the DC level shift added to the DC term, the result kept
//!   with 4 fractional bits and not clamped);
//! * its centred chroma upsampling for 2:1 horizontal and/or vertical subsampling
//!   (`upsampling/upsampler.cpp`: 3/4 + 1/4 taps, vertical pass first, on the fixed-point
//!   values, with its alternating rounding, its edge replication, and the in-place
//!   filtering that makes the second output of each 8-wide block read the third);
//! * rounding to integers and clamping to `0..=2^P-1` last, and no colour transform at all:
//!   the samples are the coded components (YCbCr stays YCbCr, RGB stays RGB). The caller
//!   applies the DICOM Photometric Interpretation the way pydicom does.
//!
//! Progressive, lossless, hierarchical and arithmetic-coded streams, and sampling ratios
//! other than 1 and 2, are [`Error::Unsupported`] (the caller may fall back to another
//! decoder). The frame header is checked against the caller's pixel cap before anything is
//! allocated, so a hostile header cannot make this module allocate more than a bounded frame.

use std::fmt;

/// Why a stream was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A valid JPEG feature this decoder does not implement.
    Unsupported(String),
    /// A damaged or truncated stream.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported(s) => write!(f, "unsupported JPEG: {s}"),
            Error::Invalid(s) => write!(f, "invalid JPEG stream: {s}"),
        }
    }
}

fn bad<T>(s: impl Into<String>) -> Result<T, Error> {
    Err(Error::Invalid(s.into()))
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Samples per line.
    pub width: u32,
    /// Lines.
    pub height: u32,
    /// Sample precision in bits (8 or 12).
    pub precision: u8,
    /// Component identifiers from the frame header, in frame order.
    pub component_ids: Vec<u8>,
    /// True when an APPn segment before the frame header starts with `JFIF` (what pydicom
    /// checks to decide the colour space).
    pub jfif: bool,
    /// The Adobe APP14 transform flag, when a well-formed Adobe segment is present.
    pub adobe_transform: Option<u8>,
    /// Samples, interleaved by component, row-major.
    pub samples: Vec<u16>,
}

/// Zig-zag position to natural (row-major) index.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Bits of fixed-point precision the IDCT output keeps (libjpeg's `ColorTrafo::COLOR_BITS`).
const COLOR_BITS: u32 = 4;
/// Fractional bits of the IDCT constants (libjpeg's `IDCT::FIX_BITS`).
const FIX_BITS: u32 = 9;

/// `TO_FIX(x)` of libjpeg's idct.cpp: `WORD(x * 2^9 + 0.5)`.
const fn to_fix(x: f64) -> i64 {
    (x * (1u32 << FIX_BITS) as f64 + 0.5) as i16 as i64
}
const F0541: i64 = to_fix(0.541196100);
const F0765: i64 = to_fix(0.765366865);
const F1847: i64 = to_fix(1.847759065);
const F1175: i64 = to_fix(1.175875602);
const F0298: i64 = to_fix(0.298631336);
const F2053: i64 = to_fix(2.053119869);
const F3072: i64 = to_fix(3.072711026);
const F1501: i64 = to_fix(1.501321110);
const F0899: i64 = to_fix(0.899976223);
const F2562: i64 = to_fix(2.562915447);
const F1961: i64 = to_fix(1.961570560);
const F0390: i64 = to_fix(0.390180644);

/// libjpeg's `IDCT<4, LONG>::InverseTransformBlock`: `coef` in natural order, `quant` the
/// quantiser already shifted by [`COLOR_BITS`], `dc` the level shift `2^(P-1)`. The output
/// carries [`COLOR_BITS`] fractional bits.
fn idct(coef: &[i16; 64], quant: &[i64; 64], dc: i64, out: &mut [i32; 64]) {
    let mut tmp = [0i64; 64];
    let f2i = |x: i64| (x + (1 << (FIX_BITS - 1))) >> FIX_BITS;
    let mut dcoff = dc << (COLOR_BITS + 3);
    for row in 0..8 {
        let s = |k: usize| i64::from(coef[row * 8 + k]) * quant[row * 8 + k];
        let (tz2, tz3) = (s(2), s(6));
        let z1 = (tz2 + tz3) * F0541;
        let tmp2 = z1 + tz3 * -F1847;
        let tmp3 = z1 + tz2 * F0765;
        let tz2 = s(0) + dcoff;
        let tz3 = s(4);
        let tmp0 = (tz2 + tz3) << FIX_BITS;
        let tmp1 = (tz2 - tz3) << FIX_BITS;
        let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (t0, t1, t2, t3) = (s(7), s(5), s(3), s(1));
        let (o0, o1, o2, o3) = odd(t0, t1, t2, t3);
        let d = &mut tmp[row * 8..row * 8 + 8];
        d[0] = f2i(tmp10 + o3);
        d[7] = f2i(tmp10 - o3);
        d[1] = f2i(tmp11 + o2);
        d[6] = f2i(tmp11 - o2);
        d[2] = f2i(tmp12 + o1);
        d[5] = f2i(tmp12 - o1);
        d[3] = f2i(tmp13 + o0);
        d[4] = f2i(tmp13 - o0);
        dcoff = 0;
    }
    let shift = FIX_BITS + 3;
    let fi = |x: i64| ((x + (1 << (shift - 1))) >> shift) as i32;
    for col in 0..8 {
        let d = |k: usize| tmp[k * 8 + col];
        let (tz2, tz3) = (d(2), d(6));
        let z1 = (tz2 + tz3) * F0541;
        let tmp2 = z1 + tz3 * -F1847;
        let tmp3 = z1 + tz2 * F0765;
        let tmp0 = (d(0) + d(4)) << FIX_BITS;
        let tmp1 = (d(0) - d(4)) << FIX_BITS;
        let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (o0, o1, o2, o3) = odd(d(7), d(5), d(3), d(1));
        out[col] = fi(tmp10 + o3);
        out[7 * 8 + col] = fi(tmp10 - o3);
        out[8 + col] = fi(tmp11 + o2);
        out[6 * 8 + col] = fi(tmp11 - o2);
        out[2 * 8 + col] = fi(tmp12 + o1);
        out[5 * 8 + col] = fi(tmp12 - o1);
        out[3 * 8 + col] = fi(tmp13 + o0);
        out[4 * 8 + col] = fi(tmp13 - o0);
    }
}

/// The odd part of libjpeg's IDCT (inputs at frequencies 7, 5, 3, 1).
fn odd(t0: i64, t1: i64, t2: i64, t3: i64) -> (i64, i64, i64, i64) {
    let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
    let z5 = (z3 + z4) * F1175;
    let z1 = z1 * -F0899;
    let z2 = z2 * -F2562;
    let z3 = z3 * -F1961 + z5;
    let z4 = z4 * -F0390 + z5;
    (
        t0 * F0298 + z1 + z3,
        t1 * F2053 + z2 + z4,
        t2 * F3072 + z2 + z3,
        t3 * F1501 + z1 + z4,
    )
}

/// A Huffman table (T.81 Annex C / F.2.2.3) with a 9-bit lookahead.
#[derive(Clone)]
struct Huffman {
    /// `(length << 8 | value)` for codes of at most [`LOOKAHEAD`] bits, 0 if longer.
    fast: Vec<u16>,
    maxcode: [i32; 18],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

const LOOKAHEAD: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Huffman, Error> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total != values.len() || total > 256 {
            return bad("Huffman table counts do not match its values");
        }
        let mut h = Huffman {
            fast: vec![0; 1 << LOOKAHEAD],
            maxcode: [-1; 18],
            valptr: [0; 17],
            mincode: [0; 17],
            values,
        };
        let mut code: i32 = 0;
        let mut k = 0usize;
        for len in 1..=16usize {
            let n = i32::from(counts[len - 1]);
            h.valptr[len] = k as i32;
            h.mincode[len] = code;
            if n > 0 {
                for _ in 0..n {
                    if code >= 1 << len {
                        return bad("Huffman table has more codes than its lengths allow");
                    }
                    if len as u32 <= LOOKAHEAD {
                        let shift = LOOKAHEAD - len as u32;
                        let first = (code as usize) << shift;
                        for e in &mut h.fast[first..first + (1 << shift)] {
                            *e = (len as u16) << 8 | u16::from(h.values[k]);
                        }
                    }
                    code += 1;
                    k += 1;
                }
                h.maxcode[len] = code - 1;
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX;
        Ok(h)
    }
}

/// Entropy-coded data reader: byte stuffing removed, stops (feeding zeros) at a marker.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    at_marker: bool,
    /// Zero bytes fed because the data ended without a marker.
    past_end: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits {
            data,
            pos,
            acc: 0,
            n: 0,
            at_marker: false,
            past_end: 0,
        }
    }

    fn fill(&mut self) {
        while self.n <= 56 {
            let byte = if self.at_marker {
                0
            } else if self.pos >= self.data.len() {
                self.past_end += 1;
                0
            } else {
                let b = self.data[self.pos];
                if b == 0xFF {
                    match self.data.get(self.pos + 1) {
                        Some(0) => {
                            self.pos += 2;
                            0xFF
                        }
                        _ => {
                            self.at_marker = true;
                            0
                        }
                    }
                } else {
                    self.pos += 1;
                    b
                }
            };
            self.acc |= u64::from(byte) << (56 - self.n);
            self.n += 8;
        }
    }

    fn peek(&mut self, k: u32) -> u32 {
        if self.n < k {
            self.fill();
        }
        (self.acc >> (64 - k)) as u32
    }

    fn skip(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
    }

    fn get(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        let v = self.peek(k);
        self.skip(k);
        v
    }

    /// True when bits beyond the end of the data were consumed.
    fn overrun(&self) -> bool {
        self.past_end * 8 > self.n
    }

    fn decode(&mut self, h: &Huffman) -> Result<u8, Error> {
        let look = self.peek(LOOKAHEAD) as usize;
        let e = h.fast[look];
        if e != 0 {
            self.skip(u32::from(e >> 8));
            return Ok(e as u8);
        }
        let word = self.peek(16) as i32;
        for len in (LOOKAHEAD as usize + 1)..=16 {
            let code = word >> (16 - len);
            if code <= h.maxcode[len] {
                self.skip(len as u32);
                let i = h.valptr[len] + code - h.mincode[len];
                return h
                    .values
                    .get(i as usize)
                    .copied()
                    .ok_or_else(|| Error::Invalid("bad Huffman code".into()));
            }
        }
        bad("bad Huffman code")
    }

    /// Byte-aligns and consumes an RSTn marker if one follows.
    fn restart(&mut self) {
        self.acc = 0;
        self.n = 0;
        self.at_marker = false;
        let d = self.data;
        let mut p = self.pos;
        while p + 1 < d.len() {
            if d[p] == 0xFF && (0xD0..=0xD7).contains(&d[p + 1]) {
                self.pos = p + 2;
                return;
            }
            if d[p] == 0xFF && d[p + 1] != 0 && d[p + 1] != 0xFF {
                // Some other marker: no restart marker here; leave it for the caller.
                self.pos = p;
                return;
            }
            p += 1;
        }
    }
}

fn extend(v: u32, t: u32) -> i32 {
    if t == 0 {
        0
    } else if v < 1 << (t - 1) {
        v as i32 - (1 << t) + 1
    } else {
        v as i32
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Blocks per line and lines of blocks allocated (MCU-padded).
    bw: usize,
    bh: usize,
    /// Blocks a non-interleaved scan codes.
    scan_bw: usize,
    scan_bh: usize,
    coef: Vec<[i16; 64]>,
    quant: Option<[i64; 64]>,
    pred: i32,
}

fn u16_at(d: &[u8], p: usize) -> Result<usize, Error> {
    match d.get(p..p + 2) {
        Some(s) => Ok(usize::from(u16::from_be_bytes([s[0], s[1]]))),
        None => bad("stream ends inside a marker segment"),
    }
}

/// Position of the next marker at or after `p` in entropy-coded data.
fn next_marker(d: &[u8], mut p: usize) -> usize {
    while p + 1 < d.len() {
        if d[p] == 0xFF {
            let m = d[p + 1];
            if m != 0 && m != 0xFF && !(0xD0..=0xD7).contains(&m) {
                return p;
            }
        }
        p += 1;
    }
    d.len()
}

/// Decodes a JPEG Baseline / Extended (sequential DCT, Huffman) stream. `max_pixels` caps
/// `width * height`.
pub fn decode(data: &[u8], max_pixels: u64) -> Result<Image, Error> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return bad("no SOI marker at the start of the frame");
    }
    let mut pos = 2;
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc_tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac_tables: [Option<Huffman>; 4] = [None, None, None, None];
    let mut restart = 0usize;
    let mut jfif = false;
    let mut adobe = None;
    let mut frame: Option<(u8, usize, usize, Vec<Component>)> = None;
    let mut scans = 0;
    loop {
        // Skip fill bytes before a marker.
        while pos < data.len() && data[pos] == 0xFF && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 1 >= data.len() {
            if scans > 0 {
                break; // no EOI: accept what the scans coded
            }
            return bad("stream ends before any scan");
        }
        if data[pos] != 0xFF {
            return bad(format!("expected a marker at byte {pos}"));
        }
        let m = data[pos + 1];
        pos += 2;
        match m {
            0xD9 => break,
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let len = u16_at(data, pos)?;
        if len < 2 || pos + len > data.len() {
            return bad(format!(
                "marker segment FF{m:02X} at byte {} runs past the end",
                pos - 2
            ));
        }
        let seg = &data[pos + 2..pos + len];
        match m {
            0xE0..=0xEF => {
                if frame.is_none() && seg.starts_with(b"JFIF") {
                    jfif = true;
                }
                if m == 0xEE && seg.len() == 12 && seg.starts_with(b"Adobe") {
                    adobe = Some(seg[11]);
                }
            }
            0xDB => {
                let mut p = 0;
                while p < seg.len() {
                    let (pq, tq) = (seg[p] >> 4, usize::from(seg[p] & 15));
                    if tq > 3 || pq > 1 {
                        return bad("invalid quantisation table header");
                    }
                    let w = if pq == 0 { 1 } else { 2 };
                    let body = seg
                        .get(p + 1..p + 1 + 64 * w)
                        .ok_or_else(|| Error::Invalid("quantisation table cut off".into()))?;
                    let mut t = [0u16; 64];
                    for (k, z) in ZIGZAG.iter().enumerate() {
                        t[*z] = if w == 1 {
                            u16::from(body[k])
                        } else {
                            u16::from_be_bytes([body[2 * k], body[2 * k + 1]])
                        };
                    }
                    qt[tq] = Some(t);
                    p += 1 + 64 * w;
                }
            }
            0xC4 => {
                let mut p = 0;
                while p < seg.len() {
                    let (tc, th) = (seg[p] >> 4, usize::from(seg[p] & 15));
                    if tc > 1 || th > 3 {
                        return bad("invalid Huffman table header");
                    }
                    let counts: [u8; 16] =
                        seg.get(p + 1..p + 17)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| Error::Invalid("Huffman table cut off".into()))?;
                    let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let values = seg
                        .get(p + 17..p + 17 + n)
                        .ok_or_else(|| Error::Invalid("Huffman table cut off".into()))?
                        .to_vec();
                    let table = Huffman::new(&counts, values)?;
                    if tc == 0 {
                        dc_tables[th] = Some(table);
                    } else {
                        ac_tables[th] = Some(table);
                    }
                    p += 17 + n;
                }
            }
            0xDD => restart = u16_at(seg, 0)?,
            0xC0 | 0xC1 => {
                if frame.is_some() {
                    return Err(Error::Unsupported("more than one frame".into()));
                }
                frame = Some(read_frame(seg, max_pixels)?);
            }
            0xC2 => return Err(Error::Unsupported("progressive DCT (SOF2)".into())),
            0xC3 | 0xC7 | 0xCB | 0xCF => {
                return Err(Error::Unsupported(format!(
                    "lossless process (SOF{})",
                    m - 0xC0
                )));
            }
            0xC5 | 0xC6 | 0xDE | 0xDF => {
                return Err(Error::Unsupported("hierarchical process".into()));
            }
            0xC9 | 0xCA | 0xCD | 0xCE => {
                return Err(Error::Unsupported("arithmetic coding".into()));
            }
            0xDC => {
                return Err(Error::Unsupported(
                    "DNL marker (height defined after the scan)".into(),
                ));
            }
            0xDA => {
                let Some((_, w, h, comps)) = frame.as_mut() else {
                    return bad("scan before the frame header");
                };
                let end = scan(
                    data,
                    pos + len,
                    seg,
                    (*w, *h),
                    comps,
                    &qt,
                    &dc_tables,
                    &ac_tables,
                    restart,
                )?;
                scans += 1;
                pos = end;
                continue;
            }
            _ => {}
        }
        pos += len;
    }
    let (precision, w, h, comps) = frame.ok_or_else(|| Error::Invalid("no frame header".into()))?;
    Ok(Image {
        width: w as u32,
        height: h as u32,
        precision,
        component_ids: comps.iter().map(|c| c.id).collect(),
        jfif,
        adobe_transform: adobe,
        samples: reconstruct(precision, w, h, &comps)?,
    })
}

type Frame = (u8, usize, usize, Vec<Component>);

fn read_frame(seg: &[u8], max_pixels: u64) -> Result<Frame, Error> {
    if seg.len() < 6 {
        return bad("frame header cut off");
    }
    let p = seg[0];
    if p != 8 && p != 12 {
        return Err(Error::Unsupported(format!("{p}-bit DCT precision")));
    }
    let h = usize::from(u16::from_be_bytes([seg[1], seg[2]]));
    let w = usize::from(u16::from_be_bytes([seg[3], seg[4]]));
    let n = usize::from(seg[5]);
    if h == 0 {
        return Err(Error::Unsupported(
            "height 0 (defined by a DNL marker)".into(),
        ));
    }
    if w == 0 || n == 0 || n > 4 || seg.len() < 6 + 3 * n {
        return bad(format!("frame header of {w}x{h} with {n} components"));
    }
    if (w as u64) * (h as u64) > max_pixels {
        return bad(format!(
            "frame of {w}x{h} is above the cap of {max_pixels} pixels"
        ));
    }
    let mut comps = Vec::with_capacity(n);
    for k in 0..n {
        let c = &seg[6 + 3 * k..9 + 3 * k];
        let (hs, vs) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
        if !(1..=4).contains(&hs) || !(1..=4).contains(&vs) || c[2] > 3 {
            return bad("invalid component sampling factors or table");
        }
        comps.push(Component {
            id: c[0],
            h: hs,
            v: vs,
            tq: usize::from(c[2]),
            bw: 0,
            bh: 0,
            scan_bw: 0,
            scan_bh: 0,
            coef: Vec::new(),
            quant: None,
            pred: 0,
        });
    }
    let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
    for c in &comps {
        let (sx, sy) = (hmax / c.h, vmax / c.v);
        if !hmax.is_multiple_of(c.h) || !vmax.is_multiple_of(c.v) || sx > 2 || sy > 2 {
            return Err(Error::Unsupported(format!(
                "sampling factors {}x{} of {}x{}",
                c.h, c.v, hmax, vmax
            )));
        }
    }
    let (mcux, mcuy) = (w.div_ceil(8 * hmax), h.div_ceil(8 * vmax));
    let single = n == 1;
    for c in &mut comps {
        let cw = (w * c.h).div_ceil(hmax);
        let ch = (h * c.v).div_ceil(vmax);
        c.scan_bw = cw.div_ceil(8);
        c.scan_bh = ch.div_ceil(8);
        if single {
            c.bw = c.scan_bw;
            c.bh = c.scan_bh;
        } else {
            c.bw = mcux * c.h;
            c.bh = mcuy * c.v;
        }
        c.coef = vec![[0i16; 64]; c.bw * c.bh];
    }
    Ok((p, w, h, comps))
}

/// Decodes one scan whose entropy-coded data starts at `start`; returns where it ends.
#[allow(clippy::too_many_arguments)]
fn scan(
    data: &[u8],
    start: usize,
    seg: &[u8],
    (w, h): (usize, usize),
    comps: &mut [Component],
    qt: &[Option<[u16; 64]>; 4],
    dc_tables: &[Option<Huffman>; 4],
    ac_tables: &[Option<Huffman>; 4],
    restart: usize,
) -> Result<usize, Error> {
    let ns = usize::from(
        *seg.first()
            .ok_or_else(|| Error::Invalid("empty scan header".into()))?,
    );
    if ns == 0 || ns > 4 || seg.len() < 1 + 2 * ns + 3 {
        return bad("scan header cut off");
    }
    let (ss, se, ahal) = (seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns]);
    if ss != 0 || se != 63 || ahal != 0 {
        return bad(format!(
            "sequential DCT scan with spectral selection {ss}..{se} and approximation {ahal:#04x} (must be 0..63 and 0)"
        ));
    }
    let mut members = Vec::with_capacity(ns);
    for k in 0..ns {
        let (id, t) = (seg[1 + 2 * k], seg[2 + 2 * k]);
        let ci = comps.iter().position(|c| c.id == id).ok_or_else(|| {
            Error::Invalid(format!("scan names component {id}, not in the frame"))
        })?;
        let dc = dc_tables[usize::from(t >> 4) & 3]
            .as_ref()
            .ok_or_else(|| Error::Invalid("scan uses an undefined DC Huffman table".into()))?;
        let ac = ac_tables[usize::from(t & 15) & 3]
            .as_ref()
            .ok_or_else(|| Error::Invalid("scan uses an undefined AC Huffman table".into()))?;
        let c = &mut comps[ci];
        if c.quant.is_none() {
            let q = qt[c.tq].ok_or_else(|| {
                Error::Invalid("component uses an undefined quantisation table".into())
            })?;
            let mut s = [0i64; 64];
            for (o, &v) in s.iter_mut().zip(q.iter()) {
                *o = i64::from(v) << COLOR_BITS;
            }
            c.quant = Some(s);
        }
        c.pred = 0;
        members.push((ci, dc, ac));
    }
    let mut bits = Bits::new(data, start);
    let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
    // (scan member, block x, block y) of each block of one MCU.
    let (units, mcux, mcuy) = if ns == 1 {
        let c = &comps[members[0].0];
        (vec![(0, 0, 0)], c.scan_bw, c.scan_bh)
    } else {
        let mut u = Vec::new();
        for (k, m) in members.iter().enumerate() {
            let c = &comps[m.0];
            for by in 0..c.v {
                for bx in 0..c.h {
                    u.push((k, bx, by));
                }
            }
        }
        if u.len() > 10 {
            return bad("more than 10 blocks in an MCU");
        }
        (u, w.div_ceil(8 * hmax), h.div_ceil(8 * vmax))
    };
    let total = mcux * mcuy;
    for mcu in 0..total {
        if restart > 0 && mcu > 0 && mcu.is_multiple_of(restart) {
            bits.restart();
            for m in &members {
                comps[m.0].pred = 0;
            }
        }
        let (mx, my) = (mcu % mcux, mcu / mcux);
        for &(k, bx, by) in &units {
            let (ci, dc, ac) = members[k];
            let c = &mut comps[ci];
            let (x, y) = if ns == 1 {
                (mx, my)
            } else {
                (mx * c.h + bx, my * c.v + by)
            };
            let mut blk = [0i16; 64];
            let t = u32::from(bits.decode(dc)?);
            if t > 16 {
                return bad("DC difference category above 16");
            }
            let diff = extend(bits.get(t), t);
            c.pred = c.pred.wrapping_add(diff);
            blk[0] = c.pred.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            let mut z = 1;
            while z < 64 {
                let rs = bits.decode(ac)?;
                let (r, s) = (usize::from(rs >> 4), u32::from(rs & 15));
                if s == 0 {
                    if r == 15 {
                        z += 16;
                        continue;
                    }
                    break;
                }
                z += r;
                if z > 63 {
                    return bad("AC coefficients run past the block");
                }
                blk[ZIGZAG[z]] = extend(bits.get(s), s) as i16;
                z += 1;
            }
            if let Some(slot) = c.coef.get_mut(y * c.bw + x) {
                *slot = blk;
            }
        }
        if bits.overrun() {
            return bad(format!(
                "entropy-coded data ends after {} of {total} MCUs (truncated pixel stream)",
                mcu + 1
            ));
        }
    }
    Ok(if bits.at_marker {
        bits.pos
    } else {
        next_marker(data, bits.pos)
    })
}

/// IDCT, upsampling, rounding and clamping (see the module docs).
fn reconstruct(precision: u8, w: usize, h: usize, comps: &[Component]) -> Result<Vec<u16>, Error> {
    let n = comps.len();
    let maxval = (1i32 << precision) - 1;
    let dc = i64::from((maxval + 1) >> 1);
    let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
    let mut out = vec![0u16; w * h * n];
    let to_int =
        |x: i64| ((x + (1 << (COLOR_BITS - 1))) >> COLOR_BITS).clamp(0, i64::from(maxval)) as u16;
    for (ci, c) in comps.iter().enumerate() {
        let quant = c
            .quant
            .ok_or_else(|| Error::Invalid(format!("component {} is in no scan", c.id)))?;
        let (sx, sy) = (hmax / c.h, vmax / c.v);
        // The component's own size (libjpeg's upsampler width and line count).
        let (cw, ch) = (w.div_ceil(sx), h.div_ceil(sy));
        let mut block = [0i32; 64];
        if sx == 1 && sy == 1 {
            for by in 0..h.div_ceil(8) {
                for bx in 0..w.div_ceil(8) {
                    idct(&c.coef[by * c.bw + bx], &quant, dc, &mut block);
                    for yy in 0..8 {
                        let y = by * 8 + yy;
                        if y >= h {
                            break;
                        }
                        for xx in 0..8 {
                            let x = bx * 8 + xx;
                            if x >= w {
                                break;
                            }
                            out[(y * w + x) * n + ci] = to_int(i64::from(block[yy * 8 + xx]));
                        }
                    }
                }
            }
            continue;
        }
        // Subsampled: the component's fixed-point plane, then libjpeg's upsampler.
        let pw = cw.div_ceil(8) * 8;
        let mut plane = vec![0i32; pw * ch];
        for by in 0..ch.div_ceil(8) {
            for bx in 0..cw.div_ceil(8) {
                idct(&c.coef[by * c.bw + bx], &quant, dc, &mut block);
                for yy in 0..8 {
                    let y = by * 8 + yy;
                    if y >= ch {
                        break;
                    }
                    plane[y * pw + bx * 8..y * pw + bx * 8 + 8]
                        .copy_from_slice(&block[yy * 8..yy * 8 + 8]);
                }
            }
        }
        let at = |col: isize, row: usize| {
            i64::from(plane[row * pw + col.clamp(0, cw as isize - 1) as usize])
        };
        // Vertical pass value at sub-sampled column `col` for output line `y`.
        let vert = |col: isize, y: usize| -> i64 {
            if sy == 1 {
                return at(col, y);
            }
            let s = y / 2;
            // Position parity inside libjpeg's 8-wide line buffer decides the rounding.
            let k_even = (col + isize::from(sx > 1)) & 1 == 0;
            let (nb, round) = if y.is_multiple_of(2) {
                (s.saturating_sub(1), if k_even { 2 } else { 1 })
            } else {
                ((s + 1).min(ch - 1), if k_even { 1 } else { 2 })
            };
            (at(col, nb) + 3 * at(col, s) + round) >> 2
        };
        for y in 0..h {
            for x in 0..w {
                let v = if sx == 1 {
                    vert(x as isize, y)
                } else {
                    let j = (x / 2) as isize;
                    if x % 8 == 1 {
                        // libjpeg's HorizontalFilterCore<2> filters in place and reads
                        // its own output[2] where it means input[1] for output[1].
                        let o2 = (vert(j, y) + 3 * vert(j + 1, y) + 2) >> 2;
                        (o2 + 3 * vert(j, y) + 1) >> 2
                    } else if x.is_multiple_of(2) {
                        (vert(j - 1, y) + 3 * vert(j, y) + 2) >> 2
                    } else {
                        (vert(j + 1, y) + 3 * vert(j, y) + 1) >> 2
                    }
                };
                out[(y * w + x) * n + ci] = to_int(v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idct_constants_are_libjpegs() {
        // TO_FIX(x) = WORD(x * 512 + 0.5), as in libjpeg's dct/idct.cpp.
        assert_eq!(
            [
                F0541, F0765, F1847, F1175, F0298, F2053, F3072, F1501, F0899, F2562, F1961, F0390
            ],
            [
                277, 392, 946, 602, 153, 1051, 1573, 769, 461, 1312, 1004, 200
            ]
        );
    }

    #[test]
    fn flat_block_is_the_dc_value() {
        // A DC-only block: (coef * q) / 8 + level shift, here 8 * 2 / 8 + 128 = 130.
        let mut coef = [0i16; 64];
        coef[0] = 8;
        let quant = [2i64 << COLOR_BITS; 64];
        let mut out = [0i32; 64];
        idct(&coef, &quant, 128, &mut out);
        assert!(out.iter().all(|&v| v == 130 << COLOR_BITS), "{out:?}");
    }

    #[test]
    fn damaged_streams_are_errors_not_panics() {
        assert!(matches!(decode(b"", 100), Err(Error::Invalid(_))));
        assert!(matches!(
            decode(&[0xFF, 0xD8, 0xFF], 100),
            Err(Error::Invalid(_))
        ));
        // SOF1 claiming 65535 x 65535: refused by the pixel cap before allocating.
        let sof = [
            0xFF, 0xD8, 0xFF, 0xC1, 0, 11, 12, 0xFF, 0xFF, 0xFF, 0xFF, 1, 1, 0x11, 0,
        ];
        let e = decode(&sof, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("cap"), "{e}");
        // A DHT with five 1-bit codes (only two exist).
        let mut dht = vec![0xFF, 0xD8, 0xFF, 0xC4, 0, 24, 0x00, 5];
        dht.extend([0u8; 15]);
        dht.extend([0, 1, 2, 3, 4]);
        assert!(matches!(decode(&dht, 100), Err(Error::Invalid(_))));
        // Progressive is reported as unsupported (the caller falls back).
        let prog = [0xFF, 0xD8, 0xFF, 0xC2, 0, 11, 8, 0, 8, 0, 8, 1, 1, 0x11, 0];
        assert!(matches!(decode(&prog, 1 << 20), Err(Error::Unsupported(_))));
    }
}
