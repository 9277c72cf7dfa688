//! Parity with pydicom on public DICOM test files (tests/fixtures/dicom/).
//!
//! `expected.json` was written by `tests/fixtures/dicom/make_fixtures.py` with pydicom,
//! pylibjpeg, pylibjpeg-openjpeg and pylibjpeg-libjpeg (versions recorded in the file).
//! For each case medgate must give:
//! * stored values: exactly pydicom's `pixel_array` (SHA-256 over float64) for lossless
//!   transfer syntaxes and for JPEG Baseline / Extended ([`EXACT_LOSSY`]: medgate's decoder
//!   reproduces the arithmetic of the libjpeg that pylibjpeg-libjpeg wraps); for the other
//!   lossy ones every strided sample within [`LOSSY_TOLERANCE`];
//! * rendered grey levels (apply_modality_lut + apply_voi_lut, normalised): every strided
//!   sample within one grey level (other lossy: [`LOSSY_TOLERANCE`]), the mean within half
//!   that, and a histogram that such a shift can explain;
//! * an error, with a reason, where pydicom fails too (truncated pixel data, a JPEG scan
//!   header libjpeg rejects) and where the frame policy refuses a multi-frame image.

use std::path::{Path, PathBuf};

use medgate::golden::image::{DecodeOptions, FramePolicy, VoiPolicy, decode_dicom};
use medgate::golden::pixels;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Lossy transfer syntaxes whose stored values must nevertheless equal pydicom's exactly:
/// JPEG Baseline (Process 1) and JPEG Extended (Processes 2 & 4, 8- and 12-bit), decoded by
/// `golden::jpeg` with libjpeg's IDCT, upsampling and (absent) colour transform.
const EXACT_LOSSY: [&str; 2] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"];

/// Largest difference in stored values (and so in 8-bit grey levels) accepted for the other
/// lossy transfer syntaxes (JPEG-LS near-lossless through CharLS, JPEG 2000 / HTJ2K through
/// OpenJPEG): a decoder of the same standard may round differently from pydicom's.
const LOSSY_TOLERANCE: f64 = 2.0;

/// Where medgate knowingly differs from pydicom: `(file, what medgate must say or do)`.
/// None at present; an entry that starts matching pydicom fails the test until removed.
const KNOWN_DIFFERENT: [(&str, &str); 0] = [];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom")
}

fn opts(case: &Value) -> DecodeOptions {
    DecodeOptions {
        frames: match case["frames"].as_str().unwrap() {
            "first" => FramePolicy::First,
            "middle" => FramePolicy::Middle,
            _ => FramePolicy::Refuse,
        },
        voi: match case["voi"].as_str().unwrap() {
            "lut" => VoiPolicy::Lut,
            "minmax" => VoiPolicy::Minmax,
            _ => VoiPolicy::Window,
        },
    }
}

fn samples(v: &Value) -> (usize, Vec<f64>) {
    (
        v["stride"].as_u64().unwrap() as usize,
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect(),
    )
}

fn stored_values(path: &Path, o: &DecodeOptions) -> Result<Vec<f64>, String> {
    let (obj, file) = pixels::open(path)?;
    let h = pixels::ImageHeader::read(&obj)?;
    let index = match (h.frames, o.frames) {
        (1, _) | (_, FramePolicy::First) => 0,
        (n, FramePolicy::Middle) => n / 2,
        (_, FramePolicy::Refuse) => return Err("multi-frame".into()),
    };
    Ok(pixels::stored_frame(&obj, &file.transfer_syntax, &h, index)?.values)
}

fn check_case(case: &Value) -> Result<String, String> {
    let name = case["file"].as_str().unwrap();
    let path = dir().join("files").join(name);
    let o = opts(case);
    let ts = case["transfer_syntax"].as_str().unwrap();
    let decoded = decode_dicom(&path, &o);
    if let Some(e) = case.get("pydicom_error") {
        return match decoded {
            Err(why) => Ok(format!("both refuse: pydicom `{e}`, medgate `{why}`")),
            Ok(_) => Err(format!("pydicom fails (`{e}`) but medgate decoded it")),
        };
    }
    if case.get("refused").is_some() {
        return match decoded {
            Err(why) if why.contains("multi-frame") => Ok(format!("refused: {why}")),
            other => Err(format!("expected a multi-frame refusal, got {other:?}")),
        };
    }
    let (img, info) = decoded.map_err(|e| format!("medgate cannot decode: {e}"))?;
    // Stored values.
    let stored = stored_values(&path, &o)?;
    let exp = &case["stored"];
    if stored.len() as u64 != exp["count"].as_u64().unwrap() {
        return Err(format!(
            "stored: {} samples, pydicom {}",
            stored.len(),
            exp["count"]
        ));
    }
    let mut h = Sha256::new();
    for v in &stored {
        h.update(v.to_le_bytes());
    }
    let sha = hex::encode(h.finalize());
    let (step, want) = samples(exp);
    let worst = want
        .iter()
        .enumerate()
        .map(|(k, w)| (stored[k * step] - w).abs())
        .fold(0.0, f64::max);
    let lossless = pixels::is_lossless(ts);
    let exact = lossless || EXACT_LOSSY.contains(&ts);
    if exact {
        if sha != exp["sha256"].as_str().unwrap() {
            return Err(format!(
                "stored values differ from pydicom ({ts}, must be exact); worst strided sample diff {worst}"
            ));
        }
    } else if worst > LOSSY_TOLERANCE {
        return Err(format!(
            "stored values differ by {worst} (> {LOSSY_TOLERANCE}) from pydicom (lossy {ts})"
        ));
    }
    // Rendered grey levels.
    let grey: Vec<u8> = img
        .data
        .iter()
        .map(|&v| (f64::from(v) * 255.0).round() as u8)
        .collect();
    let r = &case["rendered"];
    if grey.len() as u64 != r["count"].as_u64().unwrap() {
        return Err(format!(
            "rendered: {} samples, pydicom {}",
            grey.len(),
            r["count"]
        ));
    }
    let (step, want) = samples(r);
    let gworst = want
        .iter()
        .enumerate()
        .map(|(k, w)| (f64::from(grey[k * step]) - w).abs())
        .fold(0.0, f64::max);
    let grey_tolerance = if exact { 1.0 } else { LOSSY_TOLERANCE };
    if gworst > grey_tolerance {
        return Err(format!(
            "rendered grey differs by {gworst} levels from pydicom (voi {} / medgate {})",
            r["voi"],
            info.voi.describe()
        ));
    }
    let mean = grey.iter().map(|&g| f64::from(g)).sum::<f64>() / grey.len() as f64;
    let want_mean = r["mean"].as_f64().unwrap();
    if (mean - want_mean).abs() > 0.5 * grey_tolerance {
        return Err(format!("rendered mean {mean} vs pydicom {want_mean}"));
    }
    let hist_ref: Vec<u64> = r["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let mut hist = vec![0u64; 256];
    grey.iter().for_each(|&g| hist[g as usize] += 1);
    // A per-pixel difference of at most t levels keeps each cumulative count between
    // its neighbours': C(k-t) <= C_ref(k) <= C(k+t).
    let t = grey_tolerance as usize;
    let cum = |h: &[u64]| {
        h.iter()
            .scan(0u64, |s, &x| {
                *s += x;
                Some(*s)
            })
            .collect::<Vec<u64>>()
    };
    let (c, cr) = (cum(&hist), cum(&hist_ref));
    for k in 0..256 {
        let lo = if k < t { 0 } else { c[k - t] };
        let hi = c[(k + t).min(255)];
        if cr[k] < lo || cr[k] > hi {
            return Err(format!(
                "rendered histogram cannot be a one-level shift of pydicom's at level {k}"
            ));
        }
    }
    let same = if sha == exp["sha256"].as_str().unwrap() {
        "exact"
    } else {
        "within tolerance"
    };
    Ok(format!(
        "stored {same} (worst {worst}), grey worst {gworst}, {}",
        info.voi.describe()
    ))
}

#[test]
fn decodes_like_pydicom() {
    let text = std::fs::read_to_string(dir().join("expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    for case in v["cases"].as_array().unwrap() {
        let label = format!(
            "{} (frames {}, voi {}, {})",
            case["file"].as_str().unwrap(),
            case["frames"].as_str().unwrap(),
            case["voi"].as_str().unwrap(),
            case["transfer_syntax"].as_str().unwrap()
        );
        let known = KNOWN_DIFFERENT
            .iter()
            .find(|(f, _)| *f == case["file"].as_str().unwrap());
        match std::panic::catch_unwind(|| check_case(case)) {
            Ok(Err(e)) if known.is_some_and(|(_, why)| e.contains(why)) => {
                println!("known difference {label}: {e}")
            }
            Ok(Ok(msg)) if known.is_some() => failures.push(format!(
                "{label}: listed as a known difference but now {msg}"
            )),
            Ok(Ok(msg)) => println!("ok   {label}: {msg}"),
            Ok(Err(e)) => failures.push(format!("{label}: {e}")),
            Err(_) => failures.push(format!("{label}: PANIC")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from pydicom:\n{}",
        failures.len(),
        v["cases"].as_array().unwrap().len(),
        failures.join("\n")
    );
}

#[test]
fn jpeg_streams_decode_like_libjpeg() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg");
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for case in cases {
        let name = case["file"].as_str().unwrap();
        let data = std::fs::read(dir.join(name)).unwrap();
        let img = match medgate::golden::jpeg::decode(&data, 1 << 24) {
            Ok(img) => img,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        assert_eq!(
            (
                img.width as u64,
                img.height as u64,
                img.component_ids.len() as u64
            ),
            (
                case["width"].as_u64().unwrap(),
                case["height"].as_u64().unwrap(),
                case["components"].as_u64().unwrap()
            ),
            "{name}"
        );
        let bytes: Vec<u8> = img.samples.iter().map(|&s| s as u8).collect();
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != case["sha256"].as_str().unwrap() {
            failures.push(format!("{name}: decoded samples differ from libjpeg's"));
        } else {
            println!("ok   {name}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
