//! Every rendered artifact checked: `junit.xml` and the reports (`report.pdf`, `.typ`,
//! `.html`, `.md`, `plots/*.svg`, site `assets/`) are rendered again from the *recomputed*
//! evidence and compared byte for byte with the bundle's files.
//!
//! Rendering is deterministic (no clock: the PDF's date is the run's `finished_at`; fonts are
//! embedded), so a report edited to say PASS on a FAIL evidence record, with `SHA256SUMS`
//! rewritten, is named here. Site templates are the auditor's (`--templates`, or the
//! protocol's `report.templates` resolved on the auditor's side of an anchored protocol),
//! never a directory inside the bundle. A PDF rendered with an external `typst` binary
//! (`run --typst-bin`) is not reproduced by the embedded compiler and is reported as such.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::Check;
use crate::protocol::Protocol;
use crate::trace::Evidence;
use crate::trace::bundle::{CASES_FILE, EVIDENCE_FILE, JUNIT_FILE, PROTOCOL_FILE};

/// The files of a bundle that are not renderings.
const DATA_FILES: [&str; 4] = [EVIDENCE_FILE, CASES_FILE, PROTOCOL_FILE, "journal.jsonl"];

/// The comparison's data files under `reference/`, by exact name: the reference bundle's copy
/// (`comparison.reference`) or the in-run reference model's journal and the file its corrupt
/// lines are moved to on resume (`comparison.reference_model`).
const REFERENCE_FILES: [&str; 5] = [
    "reference/evidence.json",
    "reference/cases.parquet",
    "reference/protocol.yaml",
    super::reference::REFERENCE_JOURNAL,
    "reference/journal.jsonl.rejected.jsonl",
];

/// Re-renders every artifact from `recomputed` and compares it with the bundle's file.
/// `listed` are the files `SHA256SUMS` lists; one that is neither data nor a rendering is a
/// problem too (`bundle.contents`). Returns one check per artifact.
pub(crate) fn check_renderings(
    dir: &Path,
    recomputed: &Evidence,
    protocol: &Protocol,
    templates: Option<&Path>,
    templates_named: Option<&str>,
    listed: &[String],
    thumbnails: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut produced: BTreeSet<String> = BTreeSet::new();
    // Renderings that cannot be reproduced here (report.html's thumbnails without the set).
    let mut skipped: Vec<String> = Vec::new();
    let mut compare = |rel: &str, bytes: &[u8], checks: &mut Vec<Check>| {
        produced.insert(rel.to_string());
        let name = format!("rendering.{rel}");
        match crate::fsx::read_inside(dir, Path::new(rel)) {
            Ok(b) if b == bytes => checks.push(super::check(
                &name,
                true,
                format!("{rel} is byte-identical to its re-rendering from the recomputed evidence"),
            )),
            Ok(b) => checks.push(super::check(
                &name,
                false,
                format!(
                    "{rel} differs from its re-rendering from the recomputed evidence ({} bytes recorded, {} re-rendered, sha256 {} vs {})",
                    b.len(),
                    bytes.len(),
                    crate::hash::short(&crate::hash::sha256_hex(&b)),
                    crate::hash::short(&crate::hash::sha256_hex(bytes))
                ),
            )),
            Err(e) => checks.push(super::check(
                &name,
                false,
                format!("{rel} is missing or unreadable ({e}) but the protocol's formats produce it"),
            )),
        }
    };
    let junit = crate::report::junit::render(recomputed);
    compare(JUNIT_FILE, junit.as_bytes(), &mut checks);

    if let (Some(named), None) = (templates_named, templates) {
        checks.push(super::check(
            "rendering.templates",
            false,
            format!(
                "the protocol renders with site templates ({}) that the auditor has not supplied: the reports cannot be re-rendered (pass --templates DIR, or anchor the protocol with --protocol/--repo)",
                crate::fsx::printable(named)
            ),
        ));
    } else {
        match render_to_temp(
            &dir.join(CASES_FILE),
            recomputed,
            protocol,
            templates,
            thumbnails.cloned().unwrap_or_default(),
        ) {
            Ok((tmp, files)) => {
                for rel in files {
                    // Without the golden set the thumbnails cannot be redrawn: report.html is
                    // listed as not recomputed (by the caller), not compared.
                    if thumbnails.is_none() && rel == "report.html" {
                        skipped.push(rel);
                        continue;
                    }
                    match std::fs::read(tmp.path().join(&rel)) {
                        Ok(bytes) => compare(&rel, &bytes, &mut checks),
                        Err(e) => checks.push(super::check(
                            "rendering",
                            false,
                            format!("re-rendered {rel} cannot be read back: {e}"),
                        )),
                    }
                }
            }
            Err(e) => checks.push(super::check(
                "rendering",
                false,
                format!("the reports cannot be re-rendered from the recomputed evidence: {e}"),
            )),
        }
    }
    produced.extend(skipped);
    let extra: Vec<&String> = listed
        .iter()
        .filter(|f| {
            !DATA_FILES.contains(&f.as_str())
                && !produced.contains(f.as_str())
                && f.as_str() != crate::trace::comparison::FLIPS_FILE
                && !REFERENCE_FILES.contains(&f.as_str())
                && !f.starts_with("journal.jsonl.rejected")
        })
        .collect();
    checks.push(super::check(
        "bundle.contents",
        extra.is_empty(),
        if extra.is_empty() {
            "every listed file is data (evidence, cases, protocol, journal, comparison) or a checked rendering"
                .to_string()
        } else {
            format!(
                "listed files that are neither data nor a rendering of the protocol's formats: {}",
                extra
                    .iter()
                    .map(|f| crate::fsx::printable(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    ));
    checks
}

fn render_to_temp(
    cases: &Path,
    ev: &Evidence,
    protocol: &Protocol,
    templates: Option<&Path>,
    thumbnails: std::collections::BTreeMap<String, String>,
) -> crate::Result<(tempfile::TempDir, Vec<String>)> {
    let tmp = tempfile::Builder::new()
        .prefix("medgate-verify-")
        .tempdir()
        .map_err(|e| crate::Error::infra(format!("cannot create a scratch directory: {e}")))?;
    // The HTML case explorer shows the bundle's own cases.parquet; its thumbnails (when the
    // protocol asks for them) are the ones redrawn from the auditor's golden set.
    let opts = crate::report::RenderOptions {
        templates: templates.map(PathBuf::from),
        typst_bin: None,
        cases_file: Some(cases.to_path_buf()),
        thumbnails,
        ..Default::default()
    };
    let written = crate::report::render_bundle(ev, &protocol.report.formats, &opts, tmp.path())?;
    let mut rels = Vec::new();
    for p in written {
        let rel = p
            .strip_prefix(tmp.path())
            .map_err(|_| crate::Error::Internal("rendered outside the scratch directory".into()))?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        rels.push(rel);
    }
    Ok((tmp, rels))
}
