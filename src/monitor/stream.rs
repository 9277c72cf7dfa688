//! `medgate demo-data --stream`: a synthetic production log from the demo model on fresh
//! phantoms, with a documented drift, for demonstrating and testing `medgate monitor`.
//!
//! # The stream
//! Case `i` (0-based) is the demo phantom `render_case(seed, STREAM_OFFSET + i)`: the golden
//! set's generator, but case indices no golden set uses, so the phantoms are fresh. Scored by the protocol's candle-clip model exactly as
//! `medgate run` scores the golden set. Its timestamp is `start + i * interval`; its case ID
//! `P` followed by `i + 1` in 7 digits; its label is logged for cases with `i mod 10 < 7`
//! (70%, the adjudicated share; the rest arrive later or never).
//!
//! # The drift
//! From case `drift_from` on, every case whose index is even is acquired on a new scanner,
//! manufacturer `NovaRay` (a level the golden set does not have), whose processing washes the
//! image out: each pixel value `v` (in [0, 1]) becomes `0.45 + 0.4 v` (lower contrast, brighter
//! background). Its subgroup attributes are otherwise unchanged. With `drift_from` beyond the
//! stream's length the stream has no drift.

use std::path::Path;

use crate::error::{Error, Result};
use crate::golden::image::LoadedImage;
use crate::model::clip::ClipBackend;
use crate::protocol::{LoadedProtocol, ModelSpec};

/// Offset of stream case indices in the phantom generator (golden sets use `0 .. cases`).
pub const STREAM_OFFSET: u64 = 1_000_000_000;

/// The new manufacturer of the drift.
pub const DRIFT_MANUFACTURER: &str = "NovaRay";

/// Settings of one stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Cases.
    pub cases: u64,
    /// Phantom seed.
    pub seed: u64,
    /// First drifted case index (0-based); `u64::MAX` for none.
    pub drift_from: u64,
    /// Timestamp of case 0 (epoch ms).
    pub start_ms: i64,
    /// Time between cases (ms).
    pub interval_ms: i64,
}

/// The NovaRay washout.
pub fn washout(v: f32) -> f32 {
    0.45 + 0.4 * v
}

/// Writes the stream as CSV to `out`; returns the number of rows.
pub fn write_stream(lp: &LoadedProtocol, spec: &StreamSpec, out: &Path) -> Result<u64> {
    let p = &lp.protocol;
    let ModelSpec::CandleClip(clip) = &p.model else {
        return Err(Error::input(
            "demo-data --stream needs a candle-clip protocol (e.g. protocols/demo-cxr.yaml)",
        ));
    };
    let prompts = p
        .task
        .prompts
        .as_ref()
        .ok_or_else(|| Error::input("the protocol has no task.prompts"))?;
    let backend = ClipBackend::load(clip, prompts, &lp.dir)?;
    let model = backend.sha256().to_string();
    let attrs = ["sex", "age_band", "view_position", "manufacturer", "site"];
    let mut text = String::from("timestamp,case_id,score,label,model_sha256");
    for a in attrs {
        text.push(',');
        text.push_str(a);
    }
    text.push('\n');
    let chunk = 256u64;
    let mut i0 = 0u64;
    while i0 < spec.cases {
        let i1 = (i0 + chunk).min(spec.cases);
        let mut images = Vec::new();
        let mut metas = Vec::new();
        for i in i0..i1 {
            let mut c = crate::demo::render_case(spec.seed, STREAM_OFFSET + i);
            let drifted = i >= spec.drift_from && i % 2 == 0;
            let mut data: Vec<f32> = c
                .image
                .as_raw()
                .iter()
                .map(|b| f32::from(*b) / 255.0)
                .collect();
            if drifted {
                for v in &mut data {
                    *v = washout(*v);
                }
                c.attributes
                    .insert("manufacturer".into(), DRIFT_MANUFACTURER.into());
            }
            images.push(LoadedImage {
                width: c.image.width(),
                height: c.image.height(),
                channels: 1,
                data,
            });
            metas.push((i, c.label, c.attributes));
        }
        let scores = backend.score_images(&images)?;
        for ((i, label, a), s) in metas.into_iter().zip(scores) {
            let ts = super::log::format_timestamp(spec.start_ms + i as i64 * spec.interval_ms);
            let lab = if i % 10 < 7 {
                if label { "1" } else { "0" }
            } else {
                ""
            };
            text.push_str(&format!("{ts},P{:07},{s:.6},{lab},{model}", i + 1));
            for k in attrs {
                text.push(',');
                text.push_str(a.get(k).map(String::as_str).unwrap_or(""));
            }
            text.push('\n');
        }
        i0 = i1;
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::write(out, text).map_err(|e| Error::io(out, e))?;
    Ok(spec.cases)
}
