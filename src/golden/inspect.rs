//! `inspect`: what a statistician looks at before running anything.
//!
//! Case count, label balance, subgroup level counts (flagging levels below a minimum size,
//! because estimates on a handful of cases are noise), image formats and dimensions, and any
//! rows whose image is missing or unreadable. Inspection does not need a LOCK and changes
//! nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::image::ImageFormat;
use super::manifest::{self, Manifest};
use crate::error::Result;

/// Columns with more distinct values than this are not treated as subgroups.
const MAX_LEVELS: usize = 50;

/// Counts of one subgroup level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    /// The level's value.
    pub value: String,
    /// Cases.
    pub cases: u64,
    /// Positive cases per label column.
    pub positives: BTreeMap<String, u64>,
    /// Below the minimum subgroup size.
    pub small: bool,
}

/// The inspection of one set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectReport {
    /// The set's directory.
    pub dir: String,
    /// Manifest path relative to the set.
    pub manifest: String,
    /// Rows.
    pub cases: u64,
    /// Whether a LOCK file is present (not verified here: use `verify-set`).
    pub locked: bool,
    /// Positives per 0/1 column.
    pub labels: BTreeMap<String, u64>,
    /// Subgroup columns (few distinct values) with their levels.
    pub subgroups: BTreeMap<String, Vec<Level>>,
    /// Columns with too many distinct values to be subgroups.
    pub other_columns: Vec<String>,
    /// The minimum subgroup size used for flags.
    pub min_subgroup: u64,
    /// Image files by format.
    pub formats: BTreeMap<String, u64>,
    /// Image dimensions (`WxH`, with `xC` channels) by count.
    pub dimensions: BTreeMap<String, u64>,
    /// Total image bytes.
    pub image_bytes: u64,
    /// Problems found (missing or unreadable images, unsafe paths), by row.
    pub problems: Vec<String>,
}

/// Inspects the set in `dir`. `image_column` names the image path column, `min_subgroup` the
/// level size below which a level is flagged.
pub fn inspect(
    dir: &Path,
    image_column: &str,
    case_id_column: &str,
    min_subgroup: u64,
) -> Result<InspectReport> {
    use rayon::prelude::*;
    let rel = Manifest::locate(dir)?;
    let m = Manifest::read(dir, &rel)?;
    let img_col = m.column(image_column)?;
    let skip = [case_id_column, image_column];
    let labels = m.binary_columns(&skip);
    let mut subgroups = BTreeMap::new();
    let mut other_columns = Vec::new();
    for (ci, name) in m.columns.iter().enumerate() {
        if skip.contains(&name.as_str()) || labels.contains_key(name) {
            continue;
        }
        let mut levels: BTreeMap<&str, Level> = BTreeMap::new();
        for row in &m.rows {
            let l = levels.entry(row[ci].as_str()).or_insert_with(|| Level {
                value: row[ci].clone(),
                cases: 0,
                positives: labels.keys().map(|k| (k.clone(), 0)).collect(),
                small: false,
            });
            l.cases += 1;
            for (k, v) in l.positives.iter_mut() {
                let lc = m.column(k)?;
                *v += u64::from(manifest::parse_label(&row[lc]).unwrap_or(false));
            }
        }
        if levels.len() > MAX_LEVELS {
            other_columns.push(name.clone());
            continue;
        }
        let mut v: Vec<Level> = levels.into_values().collect();
        for l in &mut v {
            l.small = l.cases < min_subgroup;
        }
        subgroups.insert(name.clone(), v);
    }
    // Images: format and dimensions from headers only.
    let facts: Vec<std::result::Result<(String, String, u64), String>> = m
        .rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| {
            let line = i + 2;
            let rel =
                manifest::normalize_rel(&row[img_col]).map_err(|e| format!("line {line}: {e}"))?;
            let p = dir.join(&rel);
            let size = std::fs::metadata(&p)
                .map_err(|_| format!("line {line}: image `{rel}` is missing"))?
                .len();
            let fmt = ImageFormat::detect(&p).map_err(|e| format!("line {line}: {e}"))?;
            let dims = match fmt {
                ImageFormat::Png | ImageFormat::Jpeg => image::ImageReader::open(&p)
                    .ok()
                    .and_then(|r| r.with_guessed_format().ok())
                    .and_then(|r| r.into_decoder().ok())
                    .map(|d| {
                        use image::ImageDecoder;
                        let (w, h) = d.dimensions();
                        format!("{w}x{h}x{}", d.color_type().channel_count())
                    }),
                ImageFormat::Dicom => dicom_dims(&p),
            }
            .ok_or_else(|| format!("line {line}: image `{rel}` is unreadable"))?;
            Ok((fmt.name().to_string(), dims, size))
        })
        .collect();
    let mut formats = BTreeMap::new();
    let mut dimensions = BTreeMap::new();
    let mut image_bytes = 0;
    let mut problems = Vec::new();
    for f in facts {
        match f {
            Ok((fmt, dims, size)) => {
                *formats.entry(fmt).or_insert(0) += 1;
                *dimensions.entry(dims).or_insert(0) += 1;
                image_bytes += size;
            }
            Err(e) => problems.push(e),
        }
    }
    Ok(InspectReport {
        dir: dir.display().to_string(),
        manifest: m.rel_path.clone(),
        cases: m.rows.len() as u64,
        locked: dir.join(super::lock::LOCK_FILE).is_file(),
        labels,
        subgroups,
        other_columns,
        min_subgroup,
        formats,
        dimensions,
        image_bytes,
        problems,
    })
}

fn dicom_dims(p: &Path) -> Option<String> {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(p)
        .ok()?;
    let get = |t| obj.element(t).ok().and_then(|e| e.to_int::<u32>().ok());
    Some(format!(
        "{}x{}x{}",
        get(tags::COLUMNS)?,
        get(tags::ROWS)?,
        get(tags::SAMPLES_PER_PIXEL).unwrap_or(1)
    ))
}

impl InspectReport {
    /// The human-readable summary.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "golden set {} ({}; {})",
            self.dir,
            self.manifest,
            if self.locked {
                "LOCK present"
            } else {
                "not locked"
            }
        );
        let _ = writeln!(s, "cases: {}", self.cases);
        for (k, p) in &self.labels {
            let _ = writeln!(
                s,
                "label {k}: {p} positive, {} negative (prevalence {:.3})",
                self.cases - p,
                *p as f64 / self.cases.max(1) as f64
            );
        }
        for (col, levels) in &self.subgroups {
            let _ = writeln!(s, "\n{col}:");
            for l in levels {
                let pos: Vec<String> = l
                    .positives
                    .iter()
                    .map(|(k, v)| format!("{k}+ {v}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "  {:<28} {:>6}  {}{}",
                    if l.value.is_empty() {
                        "(empty)"
                    } else {
                        &l.value
                    },
                    l.cases,
                    pos.join("  "),
                    if l.small {
                        format!("  SMALL (< {})", self.min_subgroup)
                    } else {
                        String::new()
                    }
                );
            }
        }
        if !self.other_columns.is_empty() {
            let _ = writeln!(
                s,
                "\nother columns (> {MAX_LEVELS} levels): {}",
                self.other_columns.join(", ")
            );
        }
        let _ = writeln!(s, "\nimages: {} bytes", self.image_bytes);
        for (f, n) in &self.formats {
            let _ = writeln!(s, "  format {f}: {n}");
        }
        for (d, n) in &self.dimensions {
            let _ = writeln!(s, "  size {d}: {n}");
        }
        if !self.problems.is_empty() {
            let _ = writeln!(s, "\nproblems ({}):", self.problems.len());
            for p in &self.problems {
                let _ = writeln!(s, "  {p}");
            }
        }
        s
    }
}

/// One image's pre-flight: can medgate decode it, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageCheck {
    /// Manifest line (1-based, header = 1).
    pub line: usize,
    /// Case ID.
    pub case_id: String,
    /// Image path relative to the set.
    pub image: String,
    /// Decodable with the protocol's options.
    pub decodable: bool,
    /// Why not, when not decodable.
    pub reason: Option<String>,
    /// DICOM decoding facts (transfer syntax, layout, frame, Modality LUT, VOI applied).
    pub dicom: Option<super::image::DecodeInfo>,
    /// What a DICOM file claims about its de-identification.
    pub deid: Option<super::deid::DeidClaims>,
    /// `WxHxC` of the decoded image.
    pub decoded: Option<String>,
}

/// Decodes every image of the set with `opts` (in parallel), the way the model backends
/// will, and reports per image whether it decodes, why not, and which VOI was applied.
pub fn preflight(
    dir: &Path,
    manifest_rel: Option<&Path>,
    image_column: &str,
    case_id_column: &str,
    opts: &super::image::DecodeOptions,
) -> Result<Vec<ImageCheck>> {
    use rayon::prelude::*;
    let rel = match manifest_rel {
        Some(r) => r.to_path_buf(),
        None => Manifest::locate(dir)?,
    };
    let m = Manifest::read(dir, &rel)?;
    let img_col = m.column(image_column)?;
    let id_col = m.column(case_id_column)?;
    Ok(m.rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| {
            let mut c = ImageCheck {
                line: i + 2,
                case_id: row[id_col].trim().to_string(),
                image: row[img_col].clone(),
                decodable: false,
                reason: None,
                dicom: None,
                deid: None,
                decoded: None,
            };
            let rel = match manifest::normalize_rel(&row[img_col]) {
                Ok(r) => r,
                Err(e) => {
                    c.reason = Some(e);
                    return c;
                }
            };
            let p = dir.join(&rel);
            if super::deid::is_dicom(&p)
                && let Ok((obj, _)) = super::pixels::open_header(&p)
            {
                c.deid = Some(super::deid::DeidClaims::read(&obj));
            }
            match super::image::load_image_with(&p, opts) {
                Ok(d) => {
                    c.decodable = true;
                    c.decoded = Some(format!(
                        "{}x{}x{}",
                        d.image.width, d.image.height, d.image.channels
                    ));
                    c.dicom = d.info;
                }
                Err(e) => c.reason = Some(e.to_string()),
            }
            c
        })
        .collect())
}

/// Renders the pre-flight as text: one line per image, then a count.
pub fn render_preflight(checks: &[ImageCheck]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for c in checks {
        match (&c.reason, &c.dicom) {
            (Some(r), _) => {
                let _ = writeln!(s, "FAIL {} ({}, line {}): {r}", c.case_id, c.image, c.line);
            }
            (None, Some(d)) => {
                let _ = writeln!(
                    s,
                    "ok   {} ({}): {}, {}, {}, frame {}, modality {}, VOI {}{}",
                    c.case_id,
                    c.image,
                    d.transfer_syntax_name,
                    d.photometric,
                    d.layout,
                    d.frame,
                    d.modality,
                    d.voi.describe(),
                    if d.inverted { ", inverted" } else { "" }
                );
                if d.file_meta != "present" {
                    let _ = writeln!(s, "       file meta {}", d.file_meta);
                }
                if let Some(deid) = &c.deid {
                    let _ = writeln!(s, "       de-identification: {}", deid.describe());
                }
            }
            (None, None) => {
                let _ = writeln!(
                    s,
                    "ok   {} ({}): {}",
                    c.case_id,
                    c.image,
                    c.decoded.as_deref().unwrap_or("")
                );
            }
        }
    }
    let bad = checks.iter().filter(|c| !c.decodable).count();
    let _ = writeln!(
        s,
        "\n{} image(s): {} decodable, {bad} not decodable",
        checks.len(),
        checks.len() - bad
    );
    s
}

/// Writes case `case_id`'s model input (the decoded image, 8-bit, as every backend receives
/// it before its own resizing) as a PNG at `out`.
pub fn render_case(
    dir: &Path,
    image_column: &str,
    case_id_column: &str,
    case_id: &str,
    opts: &super::image::DecodeOptions,
    out: &Path,
) -> Result<super::image::Decoded> {
    let rel = Manifest::locate(dir)?;
    let m = Manifest::read(dir, &rel)?;
    let img_col = m.column(image_column)?;
    let id_col = m.column(case_id_column)?;
    let row = m
        .rows
        .iter()
        .find(|r| r[id_col].trim() == case_id)
        .ok_or_else(|| {
            crate::error::Error::input_hint(
                format!("{}: no case `{case_id}` in {}", dir.display(), m.rel_path),
                format!("case IDs are in the `{case_id_column}` column"),
            )
        })?;
    let rel = manifest::normalize_rel(&row[img_col])
        .map_err(|e| crate::error::Error::input(format!("case `{case_id}`: {e}")))?;
    let d = super::image::load_image_with(&dir.join(&rel), opts)?;
    let png = super::image::encode_png(&d.image)
        .map_err(|e| crate::error::Error::Internal(format!("case `{case_id}`: {e}")))?;
    std::fs::write(out, png).map_err(|e| crate::error::Error::io(out, e))?;
    Ok(d)
}
