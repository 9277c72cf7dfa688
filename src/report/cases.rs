//! The case explorer's data: one row per case of `cases.parquet`, with its outcome against the
//! reference standard and, optionally, a thumbnail of the image as the model saw it.
//!
//! The HTML report embeds this table as JSON (`<script type="application/json">`, every `<`,
//! `>` and `&` written as a `\u` escape so no case text can end the element) and
//! `templates/cases.js` renders it: filters by outcome and subgroup level, sort by score,
//! virtualised rows. The table is read from the bundle's own `cases.parquet`, so the explorer
//! shows exactly the rows `medgate verify` recomputes from; nothing here is computed but the
//! outcome class (TP/FN/FP/TN from the recorded prediction and label).
//!
//! Thumbnails are made from [`crate::golden::image::load_image`], the one loader every model
//! backend reads pixels through (DICOM modality LUT and VOI window applied), scaled so the
//! longer side is the protocol's `report.thumbnails` pixels, PNG-encoded and embedded as
//! `data:` URIs: the file stays self-contained and needs no network.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::golden::GoldenSet;
use crate::harness::CaseStatus;

/// One case as the explorer shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseView {
    /// Case ID.
    pub id: String,
    /// Reference-standard label.
    pub label: bool,
    /// Model score (none when not evaluated).
    pub score: Option<f64>,
    /// Parsed answer (`positive`, `negative`, `equivocal`) or empty.
    pub answer: String,
    /// `evaluated`, `equivocal` or `not_evaluated`.
    pub status: String,
    /// `TP`, `FN`, `FP`, `TN`, `equivocal` or `not evaluated`.
    pub outcome: String,
    /// Subgroup attribute values, in [`CaseTable::attributes`] order.
    pub attributes: Vec<String>,
    /// The model's raw answer.
    pub raw: String,
    /// Why the case was not evaluated, or empty.
    pub error: String,
}

/// Every case of a bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaseTable {
    /// Subgroup attribute names (the `attr:` columns, without the prefix).
    pub attributes: Vec<String>,
    /// Rows in manifest order.
    pub rows: Vec<CaseView>,
}

/// The outcome classes, in the order the explorer lists them.
const OUTCOMES: [&str; 6] = ["TP", "FN", "FP", "TN", "equivocal", "not evaluated"];

/// The outcome class of a case (`status` as read; `None` when unreadable).
pub fn outcome(status: Option<CaseStatus>, label: bool, prediction: Option<bool>) -> &'static str {
    match (status, prediction) {
        (Some(CaseStatus::Equivocal), _) => "equivocal",
        (Some(CaseStatus::Evaluated), Some(p)) => match (label, p) {
            (true, true) => "TP",
            (true, false) => "FN",
            (false, true) => "FP",
            (false, false) => "TN",
        },
        _ => "not evaluated",
    }
}

fn pe(path: &Path, e: PolarsError) -> Error {
    Error::input(format!("{}: {e}", path.display()))
}

/// Reads the explorer's table from a bundle's `cases.parquet`. `threshold` decides a case
/// whose `prediction` column is empty but whose status is `evaluated` (older bundles).
pub fn read_cases(path: &Path, threshold: f64) -> Result<CaseTable> {
    let df = crate::table::read_table(path)?;
    let strings = |name: &str| -> Result<Vec<String>> {
        let Ok(c) = df.column(name) else {
            return Ok(vec![String::new(); df.height()]);
        };
        let c = c.cast(&DataType::String).map_err(|e| pe(path, e))?;
        let ca = c.str().map_err(|e| pe(path, e))?;
        Ok(ca.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let bools = |name: &str| -> Result<Vec<Option<bool>>> {
        let Ok(c) = df.column(name) else {
            return Ok(vec![None; df.height()]);
        };
        let c = c.cast(&DataType::Boolean).map_err(|e| pe(path, e))?;
        Ok(c.bool().map_err(|e| pe(path, e))?.iter().collect())
    };
    let ids = strings("case_id")?;
    let labels = bools("label")?;
    let status = strings("status")?;
    let answers = strings("answer")?;
    let raw = strings("raw")?;
    let errors = strings("error")?;
    let preds = bools("prediction")?;
    let scores: Vec<Option<f64>> = match df.column("score") {
        Ok(c) => c
            .cast(&DataType::Float64)
            .map_err(|e| pe(path, e))?
            .f64()
            .map_err(|e| pe(path, e))?
            .iter()
            .collect(),
        Err(_) => vec![None; df.height()],
    };
    let mut attributes = Vec::new();
    let mut attr_vals = Vec::new();
    for name in df.get_column_names() {
        if let Some(a) = name.strip_prefix("attr:") {
            attributes.push(a.to_string());
            attr_vals.push(strings(name)?);
        }
    }
    let rows = (0..df.height())
        .map(|i| {
            let label = labels[i].unwrap_or(false);
            let pred = preds[i].or_else(|| scores[i].map(|s| s >= threshold));
            CaseView {
                id: ids[i].clone(),
                label,
                score: scores[i].filter(|s| s.is_finite()),
                answer: answers[i].clone(),
                status: status[i].clone(),
                outcome: outcome(CaseStatus::parse(&status[i]), label, pred).into(),
                attributes: attr_vals.iter().map(|v| v[i].clone()).collect(),
                raw: raw[i].clone(),
                error: errors[i].clone(),
            }
        })
        .collect();
    Ok(CaseTable { attributes, rows })
}

/// Thumbnails of every case of `set` whose image loads, by case ID: the longer side scaled to
/// `px` pixels, PNG, as a `data:image/png;base64,` URI. `px == 0` gives none.
pub fn thumbnails(set: &GoldenSet, px: u32) -> BTreeMap<String, String> {
    if px == 0 {
        return BTreeMap::new();
    }
    set.cases
        .par_iter()
        .filter_map(|c| {
            let img = set.load_image(c).ok()?;
            thumbnail_uri(&img, px).map(|u| (c.case_id.clone(), u))
        })
        .collect()
}

/// One image as a PNG `data:` URI whose longer side is `px` pixels (never upscaled).
pub fn thumbnail_uri(img: &crate::golden::image::LoadedImage, px: u32) -> Option<String> {
    let (w, h) = (img.width, img.height);
    if w == 0 || h == 0 || px == 0 {
        return None;
    }
    let to8 = |v: &f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let bytes: Vec<u8> = img.data.iter().map(to8).collect();
    let dynimg = match img.channels {
        1 => image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, bytes)?),
        3 => image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, bytes)?),
        _ => return None,
    };
    let scale = (px as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let small = dynimg.resize_exact(tw, th, image::imageops::FilterType::Triangle);
    let mut png = Vec::new();
    small
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .ok()?;
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    ))
}

/// The explorer's JSON, safe to place inside `<script type="application/json">`: column-wise
/// row arrays (`[id, label, score, answer, status, outcome, [attributes], raw, error, thumb]`)
/// to keep a 100,000-case file small, with every `<`, `>`, `&` and line separator escaped.
pub(crate) fn explorer_json(table: &CaseTable, thumbs: &BTreeMap<String, String>) -> String {
    let rows: Vec<serde_json::Value> = table
        .rows
        .iter()
        .map(|r| {
            serde_json::json!([
                r.id,
                r.label,
                r.score,
                r.answer,
                r.status,
                r.outcome,
                r.attributes,
                r.raw,
                r.error,
                thumbs.get(&r.id),
            ])
        })
        .collect();
    let doc = serde_json::json!({
        "attributes": table.attributes,
        "outcomes": OUTCOMES,
        "rows": rows,
    });
    script_safe(&doc.to_string())
}

/// Escapes JSON text for an HTML `<script>` element (the JSON value is unchanged).
fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A synthetic table of `n` cases (for the browser test and the 100,000-case measurement):
/// deterministic, every outcome class and two attributes present.
pub fn synthetic(n: usize) -> CaseTable {
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let label = i % 3 == 0;
        let score = ((i * 7919) % 1000) as f64 / 1000.0;
        let (status, answer) = match i % 50 {
            7 => (CaseStatus::Equivocal, "equivocal"),
            13 => (CaseStatus::NotEvaluated, ""),
            _ if score >= 0.5 => (CaseStatus::Evaluated, "positive"),
            _ => (CaseStatus::Evaluated, "negative"),
        };
        let answered = status != CaseStatus::NotEvaluated;
        let pred = (status == CaseStatus::Evaluated).then_some(score >= 0.5);
        rows.push(CaseView {
            id: format!("CASE-{i:06}"),
            label,
            score: answered.then_some(score),
            answer: answer.into(),
            status: status.as_str().into(),
            outcome: outcome(Some(status), label, pred).into(),
            attributes: vec![
                ["F", "M"][i % 2].to_string(),
                ["A", "B", "C"][i % 3].to_string(),
            ],
            raw: if !answered {
                String::new()
            } else {
                format!("{answer} <b>{i}</b>")
            },
            error: if !answered {
                "HTTP 503 from the server".into()
            } else {
                String::new()
            },
        });
    }
    CaseTable {
        attributes: vec!["sex".into(), "site".into()],
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_classes_follow_label_and_prediction() {
        let (ev, eq, ne) = (
            Some(CaseStatus::Evaluated),
            Some(CaseStatus::Equivocal),
            Some(CaseStatus::NotEvaluated),
        );
        assert_eq!(outcome(ev, true, Some(true)), "TP");
        assert_eq!(outcome(ev, true, Some(false)), "FN");
        assert_eq!(outcome(ev, false, Some(true)), "FP");
        assert_eq!(outcome(ev, false, Some(false)), "TN");
        assert_eq!(outcome(eq, true, None), "equivocal");
        assert_eq!(outcome(ne, true, None), "not evaluated");
        assert_eq!(outcome(None, true, Some(true)), "not evaluated");
    }

    #[test]
    fn json_cannot_close_the_script_element() {
        let mut t = synthetic(3);
        t.rows[0].raw = "</script><script>alert(1)</script> & \u{2028}".into();
        let j = explorer_json(&t, &BTreeMap::new());
        assert!(!j.contains('<') && !j.contains('>') && !j.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(back["rows"][0][7], t.rows[0].raw.as_str());
    }

    #[test]
    fn thumbnail_keeps_aspect_and_is_png() {
        let img = crate::golden::image::LoadedImage {
            width: 200,
            height: 100,
            channels: 1,
            data: (0..20_000).map(|i| (i % 200) as f32 / 199.0).collect(),
        };
        let uri = thumbnail_uri(&img, 64).unwrap();
        let b64 = uri.strip_prefix("data:image/png;base64,").unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let back = image::load_from_memory(&png).unwrap();
        assert_eq!((back.width(), back.height()), (64, 32));
        assert_eq!(thumbnail_uri(&img, 0), None);
    }
}
