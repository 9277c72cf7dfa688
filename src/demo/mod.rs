//! The bundled synthetic demo golden set: deterministic chest-radiograph-like phantoms.
//!
//! No real patient image may ship with medgate, yet every stage needs a realistic golden set
//! to run against. This module draws each case's subgroup attributes from real aggregate
//! strata (NIH ChestX-ray14 for sex x age band x view position and per-stratum finding rates;
//! PadChest for manufacturer given projection; see [`NIH_STRATA`] and [`PADCHEST_STRATA`]) and
//! renders a 64x64 grayscale phantom: body outline, lungs, mediastinum and heart, spine, ribs,
//! lung markings, exposure variation and noise, with a labelled finding (a nodule or a
//! pneumothorax-like apical lucency) of varying size and contrast.
//!
//! # Why the image quality depends on attributes
//! A subgroup analysis is only worth demonstrating if subgroup differences are real. Some
//! attributes therefore change the image, as they do in practice:
//! - `site = site-C`: an older detector, noise sigma 0.07 instead of 0.025;
//! - `view_position = AP` (portable): Gaussian blur (sigma 1.1 px) and a magnified heart;
//! - `age_band = 65+`: denser lung markings (more structured background around a nodule);
//! - `sex = F`: breast soft-tissue overlay on the lower lung zones, a slimmer body outline;
//! - `manufacturer`: a different tone curve (gamma) per vendor's processing.
//!
//! Measured difficulty (a pixel + high-pass logistic regression trained on 4,000 cases of
//! seed 7, tested on the 991 PNG cases of the bundled set, seed 20261128): AUROC 0.85
//! overall; site-A 0.92 vs site-C 0.70; PA 0.87 vs AP 0.82; F 0.88 vs M 0.83. A small
//! convolutional or CLIP model should land near the 0.85-0.95 the demo aims for, with real
//! subgroup gaps.
//!
//! # Determinism
//! Every case is rendered from its own ChaCha8 stream: key = `seed`, stream = `index`
//! ([`case_rng`]). Uniform variates are taken as the top 53 bits of `next_u64` and normals by
//! Box-Muller, both computed here, so the output depends only on the ChaCha8 algorithm (not on
//! `rand`'s distribution code) and any case can be rendered alone, in any order, in parallel.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use image::GrayImage;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};

pub mod dicom;

/// The demo protocol's positive prompts (`protocols/demo-cxr.yaml`, `task.prompts`), also the
/// demo model's training templates: the one copy the examples, benchmarks and tests use.
pub const PROMPTS_POSITIVE: [&str; 2] = [
    "a chest radiograph with a lung nodule",
    "a chest radiograph with a pneumothorax",
];
/// The demo protocol's negative prompt.
pub const PROMPT_NEGATIVE: &str = "a normal chest radiograph";

/// The demo protocol's prompt ensembles.
pub fn prompts() -> crate::protocol::Prompts {
    crate::protocol::Prompts {
        positive: PROMPTS_POSITIVE.iter().map(|s| s.to_string()).collect(),
        negative: vec![PROMPT_NEGATIVE.to_string()],
    }
}

/// Side length of every demo phantom, in pixels.
pub const SIZE: u32 = 64;

/// Target overall prevalence after enrichment (the real strata give ~10.4% pneumothorax or
/// nodule labels per image).
pub const TARGET_PREVALENCE: f64 = 0.30;

/// NIH ChestX-ray14 strata (Data_Entry_2017_v2020, adults 18-100):
/// `(sex, age_band, view_position, images, pneumothorax, nodule)`.
/// Copied from `nih-cxr14-strata.csv` (aggregated from the label file shipped in
/// torchxrayvision 1.5.7).
pub const NIH_STRATA: [(&str, &str, &str, u32, u32, u32); 12] = [
    ("F", "18-39", "AP", 5204, 176, 194),
    ("F", "18-39", "PA", 8477, 445, 345),
    ("F", "40-64", "AP", 9676, 385, 499),
    ("F", "40-64", "PA", 16878, 1079, 1164),
    ("F", "65+", "AP", 2636, 126, 131),
    ("F", "65+", "PA", 3590, 258, 235),
    ("M", "18-39", "AP", 7546, 356, 360),
    ("M", "18-39", "PA", 9810, 463, 461),
    ("M", "40-64", "AP", 13606, 541, 744),
    ("M", "40-64", "PA", 19974, 785, 1466),
    ("M", "65+", "AP", 3468, 125, 129),
    ("M", "65+", "PA", 5853, 239, 432),
];

/// PadChest (BIMCV 160K release) images per `(manufacturer, projection)`; AP and
/// AP_horizontal both count as AP. Copied from `padchest-manufacturer-projection.csv`.
pub const PADCHEST_STRATA: [(&str, &str, u32); 5] = [
    ("ImagingDynamicsCompanyLtd", "AP", 369),
    ("ImagingDynamicsCompanyLtd", "PA", 54870),
    ("PhilipsMedicalSystems", "AP", 4190 + 14346),
    ("PhilipsMedicalSystems", "PA", 36858),
    // Lateral and costal projections are not frontal views and are not drawn.
    ("PhilipsMedicalSystems", "L", 0),
];

/// Acquisition sites and their weights (synthetic; real strata carry no site).
pub const SITES: [(&str, f64); 4] = [
    ("site-A", 0.35),
    ("site-B", 0.30),
    ("site-C", 0.20),
    ("site-D", 0.15),
];

/// One rendered demo case.
#[derive(Debug, Clone)]
pub struct DemoCase {
    /// The 64x64 grayscale phantom.
    pub image: GrayImage,
    /// Ground truth: a finding is present.
    pub label: bool,
    /// Subgroup attributes: `sex`, `age_band`, `view_position`, `manufacturer`, `site`.
    pub attributes: BTreeMap<String, String>,
    /// The finding's kind (`nodule` or `pneumothorax`), `None` for a negative case.
    pub finding: Option<String>,
    /// A varied free-text description (for contrastive training and for humans).
    pub caption: String,
}

/// The random stream of one case: ChaCha8 keyed by `seed`, stream `index`.
pub fn case_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Uniform in [0, 1) from the top 53 bits.
fn unif(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn range(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unif(rng)
}

/// Standard normal by Box-Muller (one value per call; simple beats fast here).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - unif(rng); // (0, 1]
    let u2 = unif(rng);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Index drawn with probability proportional to `weights`.
fn weighted(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = unif(rng) * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options[(unif(rng) * options.len() as f64) as usize % options.len()]
}

/// Overall NIH finding rate (pneumothorax + nodule per image) used to scale each stratum.
fn nih_overall_rate() -> f64 {
    let (n, k) = NIH_STRATA
        .iter()
        .fold((0u32, 0u32), |(n, k), s| (n + s.3, k + s.4 + s.5));
    f64::from(k) / f64::from(n)
}

/// Probability that a case from NIH stratum `i` is positive: the stratum's real rate scaled
/// so the overall prevalence is [`TARGET_PREVALENCE`] (enrichment keeps relative risks).
pub fn stratum_prevalence(i: usize) -> f64 {
    let s = NIH_STRATA[i];
    let rate = f64::from(s.4 + s.5) / f64::from(s.3);
    (rate / nih_overall_rate() * TARGET_PREVALENCE).min(0.9)
}

/// Per-case parameters of the phantom (drawn first, then rendered).
struct Anatomy {
    dx: f64,
    dy: f64,
    scale: f64,
    body_ax: f64,
    heart_ax: f64,
    markings_amp: f64,
    breast: bool,
    blur: f64,
    noise: f64,
    gain: f64,
    gamma: f64,
}

enum Finding {
    Nodule {
        x: f64,
        y: f64,
        r: f64,
        contrast: f64,
    },
    Pneumothorax {
        right: bool,
        width: f64,
        contrast: f64,
    },
}

// Lung ellipses in normalised image coordinates (x right, y down), before jitter.
// The patient's right lung appears on the image's left (radiological convention).
const RIGHT_LUNG: (f64, f64, f64, f64) = (0.31, 0.47, 0.15, 0.29);
const LEFT_LUNG: (f64, f64, f64, f64) = (0.69, 0.47, 0.14, 0.28);

/// Renders case `index` of the demo set with `seed`. Pure: the same arguments always give
/// the same pixels, attributes and caption.
pub fn render_case(seed: u64, index: u64) -> DemoCase {
    let mut rng = case_rng(seed, index);

    // 1. Attributes from the real strata.
    let w: Vec<f64> = NIH_STRATA.iter().map(|s| f64::from(s.3)).collect();
    let si = weighted(&mut rng, &w);
    let (sex, age_band, view, ..) = NIH_STRATA[si];
    let manu: Vec<(&str, f64)> = PADCHEST_STRATA
        .iter()
        .filter(|m| m.1 == view)
        .map(|m| (m.0, f64::from(m.2)))
        .collect();
    let mi = weighted(&mut rng, &manu.iter().map(|m| m.1).collect::<Vec<_>>());
    let manufacturer = manu[mi].0;
    let site = SITES[weighted(&mut rng, &SITES.map(|s| s.1))].0;

    // 2. Label and finding type (nodule vs pneumothorax in the stratum's real proportion).
    let label = unif(&mut rng) < stratum_prevalence(si);
    let s = NIH_STRATA[si];
    let p_nodule = f64::from(s.5) / f64::from(s.4 + s.5);
    let nodule = unif(&mut rng) < p_nodule;

    // 3. Anatomy and acquisition.
    let a = Anatomy {
        dx: range(&mut rng, -0.03, 0.03),
        dy: range(&mut rng, -0.03, 0.03),
        scale: range(&mut rng, 0.94, 1.05),
        body_ax: if sex == "F" { 0.43 } else { 0.47 } * range(&mut rng, 0.95, 1.05),
        heart_ax: if view == "AP" { 0.2 } else { 0.165 } * range(&mut rng, 0.9, 1.1),
        markings_amp: if age_band == "65+" { 0.055 } else { 0.03 },
        breast: sex == "F",
        blur: if view == "AP" { 1.1 } else { 0.0 },
        noise: if site == "site-C" { 0.07 } else { 0.025 },
        gain: range(&mut rng, 0.9, 1.1),
        gamma: if manufacturer.starts_with("Philips") {
            0.9
        } else {
            1.1
        },
    };

    // 4. The finding's geometry and conspicuity.
    let finding = if !label {
        None
    } else if nodule {
        let right = unif(&mut rng) < 0.5;
        let (cx, cy, ax, ay) = if right { RIGHT_LUNG } else { LEFT_LUNG };
        // Uniform point in the inner 75% of the lung ellipse.
        let t = range(&mut rng, 0.0, 2.0 * std::f64::consts::PI);
        let rr = 0.75 * unif(&mut rng).sqrt();
        Some(Finding::Nodule {
            x: cx + ax * rr * t.cos(),
            y: cy + ay * rr * t.sin(),
            r: range(&mut rng, 0.022, 0.065),
            contrast: range(&mut rng, 0.05, 0.28),
        })
    } else {
        Some(Finding::Pneumothorax {
            right: unif(&mut rng) < 0.5,
            width: range(&mut rng, 0.12, 0.40),
            contrast: range(&mut rng, 0.05, 0.14),
        })
    };

    // 5. Lung-marking texture: a few random plane waves.
    let waves: Vec<(f64, f64, f64)> = (0..6)
        .map(|_| {
            let ang = range(&mut rng, 0.0, std::f64::consts::PI);
            let freq = range(&mut rng, 9.0, 22.0);
            let phase = range(&mut rng, 0.0, 2.0 * std::f64::consts::PI);
            (freq * ang.cos(), freq * ang.sin(), phase)
        })
        .collect();

    let mut img = draw(&a, finding.as_ref(), &waves);
    if a.blur > 0.0 {
        img = gaussian_blur(&img, a.blur);
    }
    let mut pixels = Vec::with_capacity(img.len());
    for v in img {
        let v = (a.gain * v).clamp(0.0, 1.0).powf(a.gamma) + a.noise * normal(&mut rng);
        pixels.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
    }
    let image = GrayImage::from_raw(SIZE, SIZE, pixels).unwrap_or_default();

    // 6. Caption (drawn last so it never perturbs the pixels).
    let caption = caption(&mut rng, view, finding.as_ref());

    let mut attributes = BTreeMap::new();
    attributes.insert("sex".to_string(), sex.to_string());
    attributes.insert("age_band".to_string(), age_band.to_string());
    attributes.insert("view_position".to_string(), view.to_string());
    attributes.insert("manufacturer".to_string(), manufacturer.to_string());
    attributes.insert("site".to_string(), site.to_string());
    DemoCase {
        image,
        label,
        attributes,
        finding: finding.as_ref().map(|f| match f {
            Finding::Nodule { .. } => "nodule".to_string(),
            Finding::Pneumothorax { .. } => "pneumothorax".to_string(),
        }),
        caption,
    }
}

fn smoothstep(edge0: f64, edge1: f64, x: f64) -> f64 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Normalised elliptical radius of (x, y) in ellipse (cx, cy, ax, ay).
fn erad(x: f64, y: f64, e: (f64, f64, f64, f64)) -> f64 {
    (((x - e.0) / e.2).powi(2) + ((y - e.1) / e.3).powi(2)).sqrt()
}

/// Draws the noise-free phantom as linear values in [0, 1].
fn draw(a: &Anatomy, finding: Option<&Finding>, waves: &[(f64, f64, f64)]) -> Vec<f64> {
    let n = SIZE as usize;
    let mut out = Vec::with_capacity(n * n);
    for py in 0..n {
        for px in 0..n {
            // Pixel centre in patient-anchored coordinates (undo jitter and scale).
            let x = ((px as f64 + 0.5) / n as f64 - 0.5 - a.dx) / a.scale + 0.5;
            let y = ((py as f64 + 0.5) / n as f64 - 0.5 - a.dy) / a.scale + 0.5;

            // Body: soft-tissue ellipse on dark air.
            let body = 1.0 - smoothstep(0.95, 1.03, erad(x, y, (0.5, 0.58, a.body_ax, 0.58)));
            let mut v = 0.05 + 0.45 * body;

            // Lungs: darker ellipses with soft margins, with markings and ribs.
            let rl = erad(x, y, RIGHT_LUNG);
            let ll = erad(x, y, LEFT_LUNG);
            let right_side = x < 0.5;
            let lr = if right_side { rl } else { ll };
            let lung = 1.0 - smoothstep(0.9, 1.02, lr);
            let mut markings: f64 = waves
                .iter()
                .map(|(fx, fy, ph)| {
                    (fx * x * std::f64::consts::TAU + fy * y * std::f64::consts::TAU + ph).sin()
                })
                .sum::<f64>()
                / (waves.len() as f64).sqrt();
            markings *= a.markings_amp * (1.0 - 0.5 * lr.min(1.0)); // denser at the hila
            let mut lung_v = 0.17 + markings;

            // Pneumothorax: peripheral apical/lateral rim without markings, darker, with a
            // thin pleural line at its inner edge.
            if let Some(Finding::Pneumothorax {
                right,
                width,
                contrast,
            }) = finding.filter(
                |f| matches!(f, Finding::Pneumothorax { right, .. } if *right == right_side),
            ) {
                let e = if *right { RIGHT_LUNG } else { LEFT_LUNG };
                let lateral = if *right { e.0 - x } else { x - e.0 };
                // Only the upper and lateral part of the lung.
                let region = lateral > -0.02 || y < e.1 - 0.1;
                let edge = 1.0 - width;
                if region && y < e.1 + 0.12 {
                    if lr > edge {
                        lung_v = 0.17 - contrast;
                    }
                    lung_v += 0.09 * (-((lr - edge) / 0.025).powi(2)).exp();
                }
            }

            // Ribs: posterior arcs, brighter bands across each lung.
            let mut rib = 0.0f64;
            let cx = if right_side {
                RIGHT_LUNG.0
            } else {
                LEFT_LUNG.0
            };
            for k in 0..8 {
                let y0 = 0.2 + 0.075 * k as f64;
                let curve = y0
                    + 1.6 * (x - cx - if right_side { -0.08 } else { 0.08 }).powi(2) * 4.0
                    - 0.05;
                rib = rib.max((-((y - curve) / 0.014).powi(2)).exp());
            }
            lung_v += 0.07 * rib;

            // Breast soft tissue over the lower lateral zones.
            if a.breast {
                let bx = if right_side { 0.27 } else { 0.73 };
                let b = 1.0 - smoothstep(0.6, 1.0, erad(x, y, (bx, 0.78, 0.2, 0.14)));
                lung_v += 0.08 * b;
            }
            v = v * (1.0 - lung) + lung_v * lung;

            // Mediastinum, spine and heart.
            let med = 1.0 - smoothstep(0.07, 0.1, (x - 0.5).abs());
            let med = med * smoothstep(0.12, 0.2, y);
            v = v.max(0.62 * med * body);
            let spine = 1.0 - smoothstep(0.025, 0.04, (x - 0.5).abs());
            v += 0.08 * spine * body;
            let heart = 1.0 - smoothstep(0.92, 1.02, erad(x, y, (0.56, 0.65, a.heart_ax, 0.13)));
            v = v.max(0.6 * heart);

            // Nodule: a Gaussian blob added on top of whatever it overlies.
            if let Some(Finding::Nodule {
                x: nx,
                y: ny,
                r,
                contrast,
            }) = finding
            {
                let d2 = (x - nx).powi(2) + (y - ny).powi(2);
                v += contrast * (-d2 / (2.0 * r * r)).exp();
            }
            out.push(v);
        }
    }
    out
}

/// Separable Gaussian blur with clamped edges.
fn gaussian_blur(img: &[f64], sigma: f64) -> Vec<f64> {
    let n = SIZE as usize;
    let rad = (3.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-rad..=rad)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let ks: f64 = k.iter().sum();
    let pass = |src: &[f64], horizontal: bool| -> Vec<f64> {
        let mut dst = vec![0.0; n * n];
        for y in 0..n {
            for x in 0..n {
                let mut acc = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    let o = j as isize - rad;
                    let (sx, sy) = if horizontal {
                        ((x as isize + o).clamp(0, n as isize - 1) as usize, y)
                    } else {
                        (x, (y as isize + o).clamp(0, n as isize - 1) as usize)
                    };
                    acc += kv * src[sy * n + sx];
                }
                dst[y * n + x] = acc / ks;
            }
        }
        dst
    };
    pass(&pass(img, true), false)
}

fn caption(rng: &mut ChaCha8Rng, view: &str, finding: Option<&Finding>) -> String {
    let view_text = if view == "AP" {
        pick(
            rng,
            &[
                "portable AP chest radiograph",
                "AP chest x-ray",
                "frontal chest radiograph, AP projection",
            ],
        )
    } else {
        pick(
            rng,
            &[
                "PA chest radiograph",
                "frontal chest x-ray, PA view",
                "posteroanterior chest radiograph",
            ],
        )
    };
    match finding {
        None => {
            let neg = pick(
                rng,
                &[
                    "no acute finding",
                    "lungs are clear",
                    "normal chest",
                    "no nodule or pneumothorax",
                    "clear lungs, no focal lesion",
                ],
            );
            format!("{view_text}, {neg}")
        }
        Some(Finding::Nodule { x, y, r, .. }) => {
            let side = if *x < 0.5 { "right" } else { "left" };
            let zone = if *y < 0.4 {
                "upper"
            } else if *y < 0.56 {
                "middle"
            } else {
                "lower"
            };
            let size = if *r < 0.035 {
                "small"
            } else if *r < 0.05 {
                "medium"
            } else {
                "large"
            };
            match (unif(rng) * 3.0) as u32 {
                0 => format!("{view_text} with a {size} nodule in the {side} {zone} lung"),
                1 => format!("{view_text} showing a {size} pulmonary nodule, {side} {zone} zone"),
                _ => format!("{view_text}: {side} {zone} lung nodule"),
            }
        }
        Some(Finding::Pneumothorax { right, width, .. }) => {
            let side = if *right { "right" } else { "left" };
            let size = if *width < 0.2 {
                "small"
            } else if *width < 0.3 {
                "moderate"
            } else {
                "large"
            };
            match (unif(rng) * 3.0) as u32 {
                0 => format!("{view_text} with a {size} {side} pneumothorax"),
                1 => format!("{view_text} showing a {side}-sided pneumothorax"),
                _ => format!("{view_text}: {size} {side} apical pneumothorax"),
            }
        }
    }
}

/// The columns of the demo manifest, in order.
pub const MANIFEST_COLUMNS: [&str; 8] = [
    "case_id",
    "image",
    "finding",
    "sex",
    "age_band",
    "view_position",
    "manufacturer",
    "site",
];

/// The case ID of case `index` (`cxr-00000` ...).
pub fn case_id(index: u64) -> String {
    format!("cxr-{index:05}")
}

/// Writes a demo golden set (not locked) into `out`: `images/` (PNG, and DICOM for every
/// `dicom_every`-th case when `dicom_every > 0`), `manifest.csv` (columns
/// [`MANIFEST_COLUMNS`], sorted by case ID) and `DATASHEET.md`. Byte-identical for the same
/// arguments. Refuses to write into a directory that already has a manifest.
pub fn write_demo_set(out: &Path, cases: usize, seed: u64, dicom_every: usize) -> Result<()> {
    if cases == 0 {
        return Err(Error::input_hint(
            "--cases must be at least 1",
            "e.g. --cases 1000",
        ));
    }
    if out.join("manifest.csv").exists() {
        return Err(Error::input_hint(
            format!("{}: already holds a manifest.csv", out.display()),
            "choose an empty or new directory",
        ));
    }
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| Error::io(&images, e))?;

    let rendered: Vec<(DemoCase, String)> = (0..cases as u64)
        .into_par_iter()
        .map(|i| {
            let case = render_case(seed, i);
            let dicom = dicom_every > 0 && (i as usize).is_multiple_of(dicom_every) && i > 0;
            let ext = if dicom { "dcm" } else { "png" };
            let rel = format!("images/{}.{ext}", case_id(i));
            let path = out.join(&rel);
            if dicom {
                dicom::write_demo_dicom(&path, &case, seed, i)?;
            } else {
                write_png(&path, &case.image)?;
            }
            Ok((case, rel))
        })
        .collect::<Result<_>>()?;

    let mut csv = MANIFEST_COLUMNS.join(",");
    csv.push('\n');
    for (i, (c, rel)) in rendered.iter().enumerate() {
        let at = |k: &str| c.attributes.get(k).map(String::as_str).unwrap_or("");
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            case_id(i as u64),
            rel,
            u8::from(c.label),
            at("sex"),
            at("age_band"),
            at("view_position"),
            at("manufacturer"),
            at("site")
        );
    }
    let manifest = out.join("manifest.csv");
    std::fs::write(&manifest, csv).map_err(|e| Error::io(&manifest, e))?;
    let ds = out.join("DATASHEET.md");
    std::fs::write(&ds, datasheet(&rendered, cases, seed, dicom_every))
        .map_err(|e| Error::io(&ds, e))?;
    Ok(())
}

/// Encodes a grayscale PNG (deterministic: no timestamps or text chunks).
pub fn write_png(path: &Path, img: &GrayImage) -> Result<()> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

fn count_table(out: &mut String, rendered: &[(DemoCase, String)], attr: &str) {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (c, _) in rendered {
        let e = counts
            .entry(c.attributes.get(attr).map(String::as_str).unwrap_or(""))
            .or_default();
        e.0 += 1;
        e.1 += usize::from(c.label);
    }
    let _ = writeln!(
        out,
        "\n| {attr} | cases | positive | prevalence |\n|---|---:|---:|---:|"
    );
    for (level, (n, k)) in counts {
        let _ = writeln!(out, "| {level} | {n} | {k} | {:.3} |", k as f64 / n as f64);
    }
}

fn datasheet(
    rendered: &[(DemoCase, String)],
    cases: usize,
    seed: u64,
    dicom_every: usize,
) -> String {
    let pos = rendered.iter().filter(|(c, _)| c.label).count();
    let nod = rendered
        .iter()
        .filter(|(c, _)| c.finding.as_deref() == Some("nodule"))
        .count();
    let dcm = rendered.iter().filter(|(_, p)| p.ends_with(".dcm")).count();
    let mut s = String::new();
    let _ = write!(
        s,
        "# Datasheet: synthetic demo chest-radiograph golden set

**SYNTHETIC DATA. NOT FOR CLINICAL CLAIMS.** Every image here is a computer-generated
phantom. No image, and no row, comes from a real patient. Performance measured on this set
says nothing about any device's clinical performance; the set exists to demonstrate and test
the medgate pipeline (locking, verification, subgroup statistics, reports).

## Provenance
Generated by medgate's deterministic phantom renderer (`src/golden/demo.rs`) with:

```
medgate demo-data OUT --cases {cases} --seed {seed} --dicom-every {dicom_every}
```

The same command always gives byte-identical files. Each case is rendered from its own
ChaCha8 random stream (key = seed, stream = case index).

## Composition
- Cases: {cases} ({n_png} PNG, {dcm} DICOM), 64x64 8-bit grayscale.
- Label column `finding`: 1 = a finding is present ({pos} cases, prevalence {prev:.3}:
  {nod} nodules, {ptx} pneumothorax-like lucencies), 0 = no finding ({neg} cases).
- Subgroup columns: `sex`, `age_band`, `view_position`, `manufacturer`, `site`.

## How attributes and labels were drawn
- `sex` x `age_band` x `view_position` follow the image counts of the NIH Clinical Center
  ChestX-ray14 release (Data_Entry_2017_v2020; adults 18-100; Wang et al., CVPR 2017).
- `manufacturer` given the projection follows PadChest (BIMCV, 160K release; Bustos et al.,
  Medical Image Analysis 2020); AP and AP_horizontal both count as AP.
- Both tables are aggregate counts computed from the label files shipped in the
  torchxrayvision 1.5.7 package; no per-patient data was used.
- `site` (site-A..site-D, weights 0.35/0.30/0.20/0.15) is synthetic: the real data has none.
- Prevalence is **enriched**: each NIH stratum's real rate of pneumothorax or nodule labels
  (overall {real:.3}) is scaled so the overall expected prevalence is {target:.2}, keeping
  the strata's relative risks. The finding type follows the stratum's nodule:pneumothorax
  ratio.
- Ground truth is exact by construction (the renderer knows what it drew); there is no
  reader variability, unlike real reference standards.

## Images and deliberate subgroup effects
Each phantom has a body outline, two lungs with markings and posterior ribs, mediastinum,
spine and heart, random positioning and exposure, and Gaussian noise. A nodule is a Gaussian
blob (radius 1.4-4.2 px, contrast 0.05-0.28); a pneumothorax is a peripheral apical/lateral
lucency without lung markings bounded by a thin pleural line (width 12-40% of the lung,
contrast 0.05-0.14). Faint findings are meant to be missed sometimes.

Image quality depends on attributes, so subgroup differences are real and detectable:
- `site-C`: noisier detector (noise sigma 0.07 vs 0.025);
- `view_position` AP (portable): blurred (Gaussian sigma 1.1 px), magnified heart;
- `age_band` 65+: denser lung markings;
- `sex` F: breast soft-tissue overlay on the lower lung zones;
- `manufacturer`: vendor tone curve (gamma 0.9 Philips, 1.1 Imaging Dynamics).

## Inclusion and exclusion
All generated cases are included; none was excluded or selected after generation.
Every {dicom_every}th case (from case 1 x {dicom_every}) is stored as DICOM (Digital X-Ray,
explicit VR little endian, 16-bit, 12 bits stored, with a VOI window) to exercise the DICOM
loader; its pixels are the PNG pixels times 16. The DICOM files carry no patient identifiers
(Patient Identity Removed = YES).

## Licence
Apache-2.0, like medgate. The cited strata remain under their sources' terms (NIH
ChestX-ray14: public release by the NIH Clinical Center; PadChest: BIMCV research licence);
only aggregate counts were used.
",
        n_png = cases - dcm,
        prev = pos as f64 / cases as f64,
        ptx = pos - nod,
        neg = cases - pos,
        real = nih_overall_rate(),
        target = TARGET_PREVALENCE,
    );
    let _ = writeln!(s, "\n## Counts by subgroup");
    for attr in ["sex", "age_band", "view_position", "manufacturer", "site"] {
        count_table(&mut s, rendered, attr);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_protocol_uses_the_one_copy_of_the_demo_prompts() {
        let text = include_str!("../../protocols/demo-cxr.yaml");
        let p = crate::protocol::parse_protocol("demo-cxr.yaml", text).unwrap();
        assert_eq!(p.task.prompts, Some(prompts()));
    }

    #[test]
    fn render_is_deterministic_and_independent_of_order() {
        let a = render_case(7, 42);
        // Render other cases in between: the stream of case 42 must not depend on them.
        let _ = render_case(7, 41);
        let b = render_case(7, 42);
        assert_eq!(a.image.as_raw(), b.image.as_raw());
        assert_eq!(a.attributes, b.attributes);
        assert_eq!(a.caption, b.caption);
        assert_eq!(a.label, b.label);
        assert_eq!(a.image.dimensions(), (64, 64));
    }

    #[test]
    fn different_seeds_and_indices_differ() {
        let a = render_case(1, 0);
        assert_ne!(a.image.as_raw(), render_case(2, 0).image.as_raw());
        assert_ne!(a.image.as_raw(), render_case(1, 1).image.as_raw());
    }

    #[test]
    fn fixed_seed_gives_pinned_pixels() {
        // Pinning the hash catches accidental changes to the renderer: the committed demo
        // set (seed 20261128) is locked, so any change here must be deliberate.
        let c = render_case(20261128, 0);
        let h = crate::hash::sha256_hex(c.image.as_raw());
        assert_eq!(
            h, PINNED_CASE0,
            "renderer output changed; caption {}",
            c.caption
        );
    }

    const PINNED_CASE0: &str = "4bf4ec231dd2f516df0e71c5dd1b44c21bfffa3b9c8465a2cb7b0c2cc60a0817";

    #[test]
    fn prevalence_and_strata_match_design() {
        // Expected prevalence over the strata mixture is TARGET_PREVALENCE (up to the 0.9 cap,
        // which no stratum reaches).
        let total: f64 = NIH_STRATA.iter().map(|s| f64::from(s.3)).sum();
        let expected: f64 = (0..NIH_STRATA.len())
            .map(|i| stratum_prevalence(i) * f64::from(NIH_STRATA[i].3) / total)
            .sum();
        assert!((expected - TARGET_PREVALENCE).abs() < 1e-12);
        let n = 2000;
        let cases: Vec<DemoCase> = (0..n).map(|i| render_case(3, i)).collect();
        let pos = cases.iter().filter(|c| c.label).count() as f64 / n as f64;
        // Binomial sd at n = 2000 is ~0.010; 4 sd.
        assert!((pos - 0.30).abs() < 0.041, "prevalence {pos}");
        let ap = cases
            .iter()
            .filter(|c| c.attributes["view_position"] == "AP")
            .count() as f64
            / n as f64;
        // NIH: 42,136 AP of 106,718 = 0.395.
        assert!((ap - 0.395).abs() < 0.045, "AP share {ap}");
        for c in &cases {
            assert_eq!(c.label, c.finding.is_some());
            assert!(!c.caption.is_empty());
            if c.attributes["view_position"] == "AP" {
                assert!(c.caption.contains("AP"), "{}", c.caption);
            }
        }
    }

    #[test]
    fn both_finding_kinds_occur() {
        let kinds: std::collections::BTreeSet<String> =
            (0..200).filter_map(|i| render_case(5, i).finding).collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            vec!["nodule", "pneumothorax"]
        );
    }

    #[test]
    fn a_nodule_adds_its_contrast_at_its_centre() {
        let a = Anatomy {
            dx: 0.0,
            dy: 0.0,
            scale: 1.0,
            body_ax: 0.45,
            heart_ax: 0.165,
            markings_amp: 0.03,
            breast: false,
            blur: 0.0,
            noise: 0.0,
            gain: 1.0,
            gamma: 1.0,
        };
        // Nodule centred on pixel (20, 24)'s centre.
        let (x, y) = (20.5 / 64.0, 24.5 / 64.0);
        let f = Finding::Nodule {
            x,
            y,
            r: 0.04,
            contrast: 0.2,
        };
        let waves = [(10.0, 3.0, 0.5)];
        let without = draw(&a, None, &waves);
        let with = draw(&a, Some(&f), &waves);
        let diff: Vec<f64> = with.iter().zip(&without).map(|(a, b)| a - b).collect();
        assert!((diff[24 * 64 + 20] - 0.2).abs() < 1e-12);
        // One pixel away: 0.2 * exp(-(1/64)^2 / (2 * 0.04^2)).
        let expect = 0.2 * (-(1.0f64 / 64.0).powi(2) / (2.0 * 0.04 * 0.04)).exp();
        assert!((diff[24 * 64 + 21] - expect).abs() < 1e-12);
        // Far away: untouched.
        assert!(diff[60 * 64 + 60].abs() < 1e-12);
    }

    #[test]
    fn write_demo_set_is_byte_identical_for_a_seed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_demo_set(a.path(), 25, 9, 10).unwrap();
        write_demo_set(b.path(), 25, 9, 10).unwrap();
        let mut names = Vec::new();
        for e in walk(a.path()) {
            let rel = e.strip_prefix(a.path()).unwrap().to_path_buf();
            assert_eq!(
                std::fs::read(&e).unwrap(),
                std::fs::read(b.path().join(&rel)).unwrap(),
                "{}",
                rel.display()
            );
            names.push(rel.display().to_string());
        }
        // 25 images (cases 10 and 20 as DICOM) + manifest + datasheet.
        assert_eq!(names.len(), 27);
        assert!(names.contains(&"images/cxr-00010.dcm".to_string()));
        assert!(names.contains(&"images/cxr-00011.png".to_string()));
        let manifest = std::fs::read_to_string(a.path().join("manifest.csv")).unwrap();
        assert_eq!(manifest.lines().count(), 26);
        assert!(
            manifest.starts_with(
                "case_id,image,finding,sex,age_band,view_position,manufacturer,site\n"
            )
        );
        // Refuses to overwrite.
        assert!(write_demo_set(a.path(), 25, 9, 10).is_err());
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn site_c_is_noisier() {
        // Noise estimate: mean absolute difference between horizontal neighbours in the
        // dark background corner (outside the body), averaged over cases per site.
        let mut by_site: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for i in 0..300 {
            let c = render_case(11, i);
            if c.attributes["view_position"] != "PA" {
                continue;
            }
            let px = c.image.as_raw();
            let mut d = 0.0;
            for y in 0..6 {
                for x in 0..5 {
                    d += (f64::from(px[y * 64 + x]) - f64::from(px[y * 64 + x + 1])).abs();
                }
            }
            let e = by_site.entry(c.attributes["site"].clone()).or_default();
            e.0 += d / 30.0;
            e.1 += 1;
        }
        let c = by_site["site-C"].0 / by_site["site-C"].1 as f64;
        let a = by_site["site-A"].0 / by_site["site-A"].1 as f64;
        assert!(c > 2.0 * a, "site-C {c} vs site-A {a}");
    }
}
