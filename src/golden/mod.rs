//! The golden set: sequestered, locked test data, and the tools that keep it honest.
//!
//! A golden set is a directory `golden-sets/NAME/` holding `manifest.csv` (or `.parquet`; one
//! row per case: case ID, image path(s) relative to the set, label column(s), subgroup
//! attributes), `images/`, `DATASHEET.md` and `LOCK`. This stage owns:
//!
//! | module | what |
//! |---|---|
//! | [`lock`] | the LOCK format, hashing every file, [`verify_set`] |
//! | [`manifest`] | reading the manifest, path safety, duplicate and identifier checks |
//! | [`deid`] | the DICOM de-identification screen (PS3.15 Basic Profile) |
//! | [`image`] | one loader for PNG, JPEG and DICOM |
//! | [`pixels`] | DICOM reading with bounded allocation; a frame's stored values |
//! | [`jpeg`] | JPEG Baseline / Extended (8- and 12-bit) decoded as pydicom's libjpeg does |
//! | [`display`] | the DICOM display pipeline: Modality LUT, VOI, presentation, palette |
//! | [`inspect`] | what a statistician looks at before running anything |
//!
//! The deterministic synthetic demo set (and the DICOM writer) live in [`crate::demo`], a
//! consumer beside the stages.
//!
//! A golden set's integrity is the first thing an auditor checks, so later stages reach the
//! data only through [`GoldenSet::open`], which re-hashes every byte against the LOCK first
//! and refuses (exit 2, naming every added, missing and changed file) otherwise.

pub mod deid;
#[rustfmt::skip]
mod deid_table;
pub mod display;
pub mod image;
pub mod inspect;
pub mod jpeg;
pub mod lock;
pub mod manifest;
pub mod pixels;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use lock::{Lock, LockedFile, VerifyReport, read_lock, verify_set};
pub use manifest::Manifest;

use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::protocol::GoldenSetSpec;
use crate::world::World;

/// One case of a verified golden set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Case ID (unique).
    pub case_id: String,
    /// Image path relative to the set (`/`-separated).
    pub image: PathBuf,
    /// SHA-256 of the image, from the verified LOCK.
    pub image_sha256: String,
    /// Ground truth.
    pub label: bool,
    /// Every other manifest column (subgroup attributes and extra columns), by name.
    pub attributes: BTreeMap<String, String>,
}

/// A golden set whose every byte matched its LOCK when it was opened.
#[derive(Debug, Clone)]
pub struct GoldenSet {
    /// The set's directory.
    pub dir: PathBuf,
    /// The LOCK it was verified against.
    pub lock: Lock,
    /// SHA-256 of the LOCK file's bytes (the ones parsed and verified against).
    pub lock_sha256: String,
    /// The verification that was done on open.
    pub verification: VerifyReport,
    /// Manifest path relative to the set.
    pub manifest: PathBuf,
    /// Cases in manifest order.
    pub cases: Vec<Case>,
}

impl GoldenSet {
    /// Verifies every byte of the set named by `spec` (relative to `protocol_dir`) against
    /// its LOCK, then reads the manifest: the label column must hold 0/1/true/false, every
    /// column in `attributes` must exist, every image must be locked, case IDs unique.
    pub fn open(
        spec: &GoldenSetSpec,
        protocol_dir: &Path,
        attributes: &[String],
    ) -> Result<GoldenSet> {
        GoldenSet::open_read(spec, protocol_dir, attributes, None)
    }

    /// Like [`GoldenSet::open`], with the manifest's bytes as the caller already read them
    /// (`(path, bytes)`, from `medgate check`'s column check): those bytes are hashed against
    /// the LOCK and parsed, so the manifest is read once per run. When the path is not the
    /// manifest's, or no bytes are given, the manifest is read here, once.
    pub fn open_read(
        spec: &GoldenSetSpec,
        protocol_dir: &Path,
        attributes: &[String],
        manifest_bytes: Option<(PathBuf, Vec<u8>)>,
    ) -> Result<GoldenSet> {
        let dir = protocol_dir.join(&spec.path);
        if !dir.is_dir() {
            return Err(Error::input_hint(
                format!("golden set {}: no such directory", dir.display()),
                "check `golden_set.path` in the protocol (relative to the protocol file)",
            ));
        }
        let lock_file = dir.join(&spec.lock);
        if !lock_file.is_file() {
            return Err(Error::input_hint(
                format!(
                    "golden set {} has no LOCK ({})",
                    dir.display(),
                    lock_file.display()
                ),
                format!("lock it first: medgate lock {}", dir.display()),
            ));
        }
        // The LOCK is read once: the same bytes are parsed, verified against and hashed.
        let lock_bytes = std::fs::read(&lock_file).map_err(|e| Error::io(&lock_file, e))?;
        let lock_text = String::from_utf8(lock_bytes.clone())
            .map_err(|_| Error::input(format!("{}: not UTF-8 text", lock_file.display())))?;
        let lock = Lock::parse(&lock_text, &lock_file)?;
        let lock_sha256 = crate::hash::sha256_hex(&lock_bytes);
        // The manifest is read once: the same bytes are verified against the LOCK and parsed.
        let manifest_path = dir.join(&spec.manifest);
        let manifest_bytes = match manifest_bytes {
            Some((p, b)) if p == manifest_path => b,
            _ => std::fs::read(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?,
        };
        let known = [lock::LockedFile {
            path: spec.manifest.to_string_lossy().replace('\\', "/"),
            size: manifest_bytes.len() as u64,
            sha256: crate::hash::sha256_hex(&manifest_bytes),
        }];
        let verification = lock::verify_against_known(&dir, &lock_file, &lock, true, &known)?;
        if !verification.is_intact() {
            return Err(verification.to_error());
        }
        let m = Manifest::parse(&dir, &spec.manifest, &manifest_bytes)?;
        let id_col = m.column(&spec.case_id_column)?;
        let label_col = m.column(&spec.label_column)?;
        let image_col = m.column(&spec.image_column)?;
        for a in attributes {
            m.column(a)?;
        }
        if m.rows.is_empty() {
            return Err(Error::input(format!(
                "{}: the manifest has no cases",
                dir.join(&spec.manifest).display()
            )));
        }
        let hashes: BTreeMap<String, String> = lock
            .files
            .iter()
            .map(|f| (f.path.clone(), f.sha256.clone()))
            .collect();
        let mut diags = manifest::check_manifest(
            &dir,
            &m,
            &spec.case_id_column,
            std::slice::from_ref(&spec.image_column),
            &hashes,
        )?;
        let file = dir.join(&spec.manifest).display().to_string();
        let mut cases = Vec::with_capacity(m.rows.len());
        for (i, row) in m.rows.iter().enumerate() {
            let id = row[id_col].trim().to_string();
            let label = match manifest::parse_label(&row[label_col]) {
                Some(b) => b,
                None => {
                    diags.push(
                        Diagnostic::error(
                            &file,
                            Some((i + 2, 1)),
                            format!("case `{id}`: label `{}` is `{}`; expected 0/1/true/false", spec.label_column, row[label_col]),
                        )
                        .with_hint("every case needs a reference-standard label; exclude unlabelled cases in the DATASHEET"),
                    );
                    continue;
                }
            };
            let Ok(rel) = manifest::normalize_rel(&row[image_col]) else {
                continue; // reported by check_manifest
            };
            let Some(f) = lock.file(&rel) else {
                continue; // reported by check_manifest
            };
            let attributes = m
                .columns
                .iter()
                .enumerate()
                .filter(|(c, _)| ![id_col, label_col, image_col].contains(c))
                .map(|(c, name)| (name.clone(), row[c].clone()))
                .collect();
            cases.push(Case {
                case_id: id,
                image: PathBuf::from(rel),
                image_sha256: f.sha256.clone(),
                label,
                attributes,
            });
        }
        let diags: Vec<Diagnostic> = diags.into_iter().filter(Diagnostic::is_error).collect();
        if !diags.is_empty() {
            return Err(Error::Invalid(diags));
        }
        Ok(GoldenSet {
            dir,
            lock,
            lock_sha256,
            verification,
            manifest: spec.manifest.clone(),
            cases,
        })
    }
}

impl GoldenSet {
    /// Loads a case's image ([`image::load_image`]); an unreadable image is an input error
    /// naming the case.
    pub fn load_image(&self, case: &Case) -> Result<image::LoadedImage> {
        image::load_image(&self.dir.join(&case.image)).map_err(|e| {
            Error::input_hint(
                format!(
                    "case `{}`: image {}: {e}",
                    case.case_id,
                    case.image.display()
                ),
                "replace the image or exclude the case (and re-lock the set)",
            )
        })
    }
}

/// The column names of the manifest a protocol's golden set names (for `medgate check`).
pub fn manifest_columns(spec: &GoldenSetSpec, protocol_dir: &Path) -> Result<Vec<String>> {
    let path = protocol_dir.join(&spec.path).join(&spec.manifest);
    let df = crate::table::read_table_as_strings(&path)?;
    Ok(crate::table::column_names(&df))
}

/// Options of [`lock_set`].
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// The LOCK file to write (usually `DIR/LOCK`).
    pub lock_file: PathBuf,
    /// Manifest relative to the set; `None` finds `manifest.csv` or `manifest.parquet`.
    pub manifest: Option<PathBuf>,
    /// Case-ID column.
    pub case_id_column: String,
    /// Image path column(s).
    pub image_columns: Vec<String>,
    /// Free-text note recorded in the LOCK.
    pub note: String,
    /// Replace an existing LOCK (its root goes to the history section).
    pub force: bool,
    /// Lock despite de-identification findings, for this recorded reason.
    pub waiver: Option<String>,
    /// How the decoding pre-flight decodes images (the protocol's frames/voi choices).
    pub decode: image::DecodeOptions,
    /// Lock despite undecodable images, for this recorded reason.
    pub undecodable_waiver: Option<String>,
}

impl LockOptions {
    /// Defaults for `dir`: `DIR/LOCK`, auto-detected manifest, `case_id`, `image`.
    pub fn new(dir: &Path) -> LockOptions {
        LockOptions {
            lock_file: dir.join(lock::LOCK_FILE),
            manifest: None,
            case_id_column: "case_id".into(),
            image_columns: vec!["image".into()],
            note: String::new(),
            force: false,
            waiver: None,
            decode: image::DecodeOptions::default(),
            undecodable_waiver: None,
        }
    }
}

/// What [`lock_set`] did.
#[derive(Debug, Clone)]
pub struct LockOutcome {
    /// The LOCK written.
    pub lock: Lock,
    /// De-identification findings that the waiver covered (empty when the screen passed).
    pub waived: Vec<Diagnostic>,
    /// Undecodable images that the undecodable waiver covered.
    pub undecodable: Vec<Diagnostic>,
}

/// Hashes every file of the set, checks the manifest (paths, duplicates, missing images) and
/// screens for identifiers (manifest columns, DICOM headers), then writes the LOCK.
///
/// Refuses: an existing LOCK without `force`; any manifest error; identifier findings without
/// a waiver. `who`/`when` come from `world`. Hashed content never includes the clock: only the
/// LOCK (which is not hashed) records when.
pub fn lock_set(dir: &Path, opts: &LockOptions, world: &dyn World) -> Result<LockOutcome> {
    let previous = if opts.lock_file.exists() {
        if !opts.force {
            return Err(Error::input_hint(
                format!(
                    "{} already exists: the set is locked",
                    opts.lock_file.display()
                ),
                "verify it with `medgate verify-set`; re-lock deliberately with --force (the old root is kept in the history)",
            ));
        }
        Some(read_lock(&opts.lock_file).ok())
    } else {
        None
    };
    if opts.waiver.as_ref().is_some_and(|w| w.trim().is_empty()) {
        return Err(Error::input("--waiver needs a reason"));
    }
    let files = lock::hash_files(dir, &opts.lock_file)?;
    let manifest_rel = match &opts.manifest {
        Some(m) => m.clone(),
        None => Manifest::locate(dir)?,
    };
    let m = Manifest::read(dir, &manifest_rel)?;
    let hashes: BTreeMap<String, String> = files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    let problems =
        manifest::check_manifest(dir, &m, &opts.case_id_column, &opts.image_columns, &hashes)?;
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let mut screen = manifest::screen_manifest(&m);
    let dicoms: Vec<&LockedFile> = files
        .iter()
        .filter(|f| deid::is_dicom(&dir.join(&f.path)))
        .collect();
    {
        use rayon::prelude::*;
        let found: Vec<Vec<Diagnostic>> = dicoms
            .par_iter()
            .map(|f| deid::screen_dicom(&dir.join(&f.path), &f.path))
            .collect();
        screen.extend(found.into_iter().flatten());
    }
    if opts
        .undecodable_waiver
        .as_ref()
        .is_some_and(|w| w.trim().is_empty())
    {
        return Err(Error::input("--waive-undecodable needs a reason"));
    }
    // Decoding pre-flight: every image decodes the way the model backends will decode it.
    let file = manifest_rel.display().to_string();
    let mut undecodable = Vec::new();
    for col in &opts.image_columns {
        for c in inspect::preflight(
            dir,
            Some(&manifest_rel),
            col,
            &opts.case_id_column,
            &opts.decode,
        )? {
            if let Some(why) = c.reason {
                undecodable.push(
                    Diagnostic::error(
                        &file,
                        Some((c.line, 1)),
                        format!("case `{}`: image `{}` cannot be decoded: {why}", c.case_id, c.image),
                    )
                    .with_hint("replace or exclude the image, or lock with --waive-undecodable REASON (the cases will be `not evaluated`)"),
                );
            }
        }
    }
    let mut refused = Vec::new();
    if !screen.is_empty() && opts.waiver.is_none() {
        refused.extend(screen.iter().cloned());
    }
    if !undecodable.is_empty() && opts.undecodable_waiver.is_none() {
        refused.extend(undecodable.iter().cloned());
    }
    if !refused.is_empty() {
        return Err(Error::Invalid(refused));
    }
    let manifest_key = manifest_rel.to_string_lossy().replace('\\', "/");
    let manifest_sha256 = hashes.get(&manifest_key).cloned().ok_or_else(|| {
        Error::input(format!(
            "{}: the manifest must be inside the set",
            manifest_rel.display()
        ))
    })?;
    let skip: Vec<&str> = std::iter::once(opts.case_id_column.as_str())
        .chain(opts.image_columns.iter().map(String::as_str))
        .collect();
    let total = m.rows.len() as u64;
    let prevalence = m
        .binary_columns(&skip)
        .into_iter()
        .map(|(c, positive)| (c, lock::LabelCount { positive, total }))
        .collect();
    let mut history = Vec::new();
    if let Some(prev) = previous {
        match prev {
            Some(p) => {
                history.extend(p.history.iter().cloned());
                history.push(format!(
                    "{}  {}  root {}  note: {}",
                    p.created, p.created_by, p.root_hash, p.note
                ));
            }
            None => history.push("previous LOCK unreadable; replaced with --force".into()),
        }
    }
    let l = Lock {
        format: lock::FORMAT_VERSION.into(),
        algorithm: "sha256".into(),
        root_hash: lock::root_hash(&files),
        manifest: manifest_key,
        manifest_sha256,
        cases: total,
        prevalence,
        deid_screen: if screen.is_empty() {
            "pass".into()
        } else {
            "waived".into()
        },
        waiver: if screen.is_empty() {
            None
        } else {
            opts.waiver
                .as_ref()
                .map(|w| format!("{} ({} finding(s))", w.trim(), screen.len()))
        },
        decode_preflight: Some(match &opts.undecodable_waiver {
            Some(w) if !undecodable.is_empty() => {
                format!("waived: {} ({} undecodable)", w.trim(), undecodable.len())
            }
            _ => "pass".into(),
        }),
        created_by: world.user(),
        created: world
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        note: opts.note.clone(),
        files,
        history,
    };
    let tmp = opts.lock_file.with_extension("medgate-tmp");
    std::fs::write(&tmp, l.render()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &opts.lock_file).map_err(|e| Error::io(&opts.lock_file, e))?;
    Ok(LockOutcome {
        lock: l,
        waived: screen,
        undecodable,
    })
}

/// An image found in both the golden set and a training set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    /// SHA-256 of the shared content.
    pub sha256: String,
    /// Path in the golden set.
    pub golden_path: String,
    /// Path in the training set (relative to its directory).
    pub training_path: String,
}

/// Extensions treated as images in overlap checks (and files without an extension).
const IMAGE_EXTS: [&str; 5] = ["png", "jpg", "jpeg", "dcm", "dicom"];

fn is_image_path(p: &str) -> bool {
    match Path::new(p).extension().and_then(|e| e.to_str()) {
        Some(e) => IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()),
        None => true,
    }
}

/// Training-set independence: every golden-set image whose content (SHA-256) also appears
/// in `training`, a directory (every image file under it) or a manifest (its `image_column`,
/// relative to the manifest's directory).
pub fn training_overlap(lock: &Lock, training: &Path, image_column: &str) -> Result<Vec<Overlap>> {
    use rayon::prelude::*;
    let train: Vec<(String, PathBuf)> = if training.is_dir() {
        lock::list_files(training, &training.join(lock::LOCK_FILE))?
            .into_iter()
            .filter(|(rel, _)| is_image_path(rel))
            .collect()
    } else {
        let base = training.parent().unwrap_or(Path::new("."));
        let name = training.file_name().map(PathBuf::from).unwrap_or_default();
        let m = Manifest::read(base, &name)?;
        let c = m.column(image_column)?;
        let set: BTreeSet<String> = m
            .values(c)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        set.into_iter()
            .map(|v| {
                let abs = base.join(&v);
                (v, abs)
            })
            .collect()
    };
    let hashed: Vec<(String, String)> = train
        .par_iter()
        .map(|(rel, abs)| Ok((crate::hash::sha256_file(abs)?.0, rel.clone())))
        .collect::<Result<_>>()?;
    let mut by_hash: BTreeMap<&str, &str> = BTreeMap::new();
    for (h, rel) in &hashed {
        by_hash.entry(h.as_str()).or_insert(rel.as_str());
    }
    Ok(lock
        .files
        .iter()
        .filter(|f| is_image_path(&f.path))
        .filter_map(|f| {
            by_hash.get(f.sha256.as_str()).map(|t| Overlap {
                sha256: f.sha256.clone(),
                golden_path: f.path.clone(),
                training_path: t.to_string(),
            })
        })
        .collect())
}
