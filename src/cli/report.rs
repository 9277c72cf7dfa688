//! `medgate report`: re-render a bundle's report from its `evidence.json` alone.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::exit::Outcome;
use crate::protocol::ReportFormat;
use crate::report::{RenderOptions, render_bundle};
use crate::trace::Evidence;

/// A report format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// PDF through the embedded Typst compiler (also writes report.typ and plots/).
    Pdf,
    /// Self-contained HTML.
    Html,
    /// Markdown (plots in plots/).
    Md,
}

impl From<FormatArg> for ReportFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Pdf => ReportFormat::Pdf,
            FormatArg::Html => ReportFormat::Html,
            FormatArg::Md => ReportFormat::Md,
        }
    }
}

/// Arguments of `medgate report`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate report bundles/ptx-2026-01-15
  medgate report bundles/ptx-2026-01-15 --format pdf,html,md
  medgate report bundles/ptx-2026-01-15 --format pdf --typst-bin /usr/local/bin/typst
  medgate report bundles/ptx-2026-01-15 --templates site-templates/
  medgate report bundles/ptx-2026-01-15 --signed --trusted-key keys/qa.pub

The report is rendered from BUNDLE/evidence.json alone and written into BUNDLE
(report.pdf, report.typ, report.html, report.md, plots/*.svg). Rendering the same
evidence with the same medgate version always gives the same bytes.

--signed renders, after `medgate sign`, a copy that shows each signature (name, meaning,
time, key fingerprint, verified or not) into BUNDLE/signatures/report-signed.{pdf,html,md}
and lists their SHA-256 in BUNDLE/signatures/report-signed.sha256. The signatures stay
bound to SHA256SUMS (which this never changes): the signed rendering is evidence *about*
the signatures, and `medgate verify` remains the check.")]
pub struct ReportArgs {
    /// The bundle directory written by `medgate run` (must contain evidence.json).
    pub bundle: PathBuf,
    /// Formats to render (comma-separated); default: the protocol's report.formats.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub format: Vec<FormatArg>,
    /// Render the PDF with this external `typst` binary instead of the embedded compiler.
    #[arg(long, value_name = "PATH")]
    pub typst_bin: Option<PathBuf>,
    /// Site templates overriding the built-in ones by file name (report.typ, report.html,
    /// report.md); default: the built-in ones (a directory the recorded protocol names is
    /// never taken: a bundle is hostile input).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Render the signed copy (report-signed.*, in BUNDLE/signatures/) showing the bundle's
    /// signatures as checked now.
    #[arg(long)]
    pub signed: bool,
    /// With --signed: public keys (KEY.pub) whose signatures count as trusted.
    #[arg(long, value_name = "FILE", requires = "signed")]
    pub trusted_key: Vec<PathBuf>,
}

/// Runs `medgate report`.
pub fn run(args: ReportArgs, global: &GlobalArgs) -> crate::Result<Outcome> {
    let path = args.bundle.join("evidence.json");
    if crate::fsx::is_symlink(&path) {
        return Err(Error::input(format!(
            "{}: is a symlink; medgate does not follow links inside a bundle",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::input_hint(
                format!("{} not found", path.display()),
                "pass the bundle directory written by `medgate run` (it holds evidence.json)",
            )
        } else {
            Error::io(&path, e)
        }
    })?;
    let evidence: Evidence = serde_json::from_str(&text).map_err(|e| {
        Error::input_hint(
            format!(
                "{}: line {} column {}: {e}",
                path.display(),
                e.line(),
                e.column()
            ),
            "evidence.json must be the unmodified file written by `medgate run`",
        )
    })?;
    let formats: Vec<ReportFormat> = if args.format.is_empty() {
        evidence.protocol.report.formats.clone()
    } else {
        args.format.iter().map(|&f| f.into()).collect()
    };
    // Templates come only from the command line: a directory named inside the evidence is
    // the bundle's say, and a bundle is hostile input (it could point into itself, or at a
    // symlink to a private file that the PDF would embed).
    let templates = match args.templates {
        Some(d) => {
            if crate::fsx::is_inside(&d, &args.bundle) {
                return Err(Error::input_hint(
                    format!(
                        "--templates {} lies inside the bundle {}",
                        d.display(),
                        args.bundle.display()
                    ),
                    "templates come from the protocol's repository side, never from inside a bundle",
                ));
            }
            Some(d)
        }
        None => {
            if let (Some(t), false) = (&evidence.protocol.report.templates, global.quiet) {
                {
                    eprintln!(
                        "warning: the protocol renders with site templates ({}); they are never taken from a path the bundle names: using the built-in templates (pass --templates DIR)",
                        crate::fsx::printable(&t.display().to_string())
                    );
                }
            }
            None
        }
    };
    let thumbnails = if formats.contains(&ReportFormat::Html) {
        case_thumbnails(&evidence, global.quiet)
    } else {
        Default::default()
    };
    let opts = RenderOptions {
        templates,
        typst_bin: args.typst_bin,
        thumbnails,
        ..Default::default()
    };
    if !global.quiet {
        eprintln!("rendering {} from {}", fmt_list(&formats), path.display());
    }
    if args.signed {
        return render_signed(&args.bundle, &evidence, &formats, opts, &args.trusted_key);
    }
    let written = render_bundle(&evidence, &formats, &opts, &args.bundle)?;
    for p in written {
        println!("{}", p.display());
    }
    Ok(Outcome::Pass)
}

/// File listing the SHA-256 of every file of the signed rendering (`sha256sum -c` format,
/// paths relative to the bundle).
pub const SIGNED_SUMS: &str = "report-signed.sha256";

/// `--signed`: checks the signatures, renders `report-signed.*` into `signatures/` and
/// writes [`SIGNED_SUMS`]. Exit 1 when any signature is not valid (the copy still shows it).
fn render_signed(
    bundle: &std::path::Path,
    evidence: &Evidence,
    formats: &[ReportFormat],
    mut opts: RenderOptions,
    trusted_keys: &[PathBuf],
) -> crate::Result<Outcome> {
    use crate::verify::sign;
    let trusted = trusted_keys
        .iter()
        .map(|p| sign::read_public_key(p))
        .collect::<crate::Result<Vec<_>>>()?;
    let checks = sign::check_signatures(bundle, &evidence.run_id, &trusted)?;
    if checks.is_empty() {
        return Err(Error::input_hint(
            format!("{}: the bundle has no signatures", bundle.display()),
            "sign it first: medgate sign BUNDLE --key KEY --name \"Printed Name\" --meaning approved",
        ));
    }
    let sums = sign::sums_sha256(bundle)?;
    let views: Vec<crate::report::view::SignatureView> = checks
        .iter()
        .map(|c| crate::report::view::SignatureView {
            name: c.name.clone(),
            meaning: c.meaning.clone(),
            signed_at: c.signed_at.clone(),
            key_fingerprint: c.key_fingerprint.clone(),
            valid: c.valid && (trusted.is_empty() || c.trusted),
            status: match (c.valid, trusted.is_empty(), c.trusted) {
                (true, false, true) => "verified, trusted key".into(),
                (true, false, false) => "NOT TRUSTED: key not among --trusted-key".into(),
                (true, true, _) => {
                    "verified (check the key fingerprint against your key register)".into()
                }
                (false, _, _) => format!("NOT VALID: {}", c.problems.join("; ")),
            },
        })
        .collect();
    let all_valid = views.iter().all(|v| v.valid);
    let out_dir = bundle.join(crate::trace::bundle::SIGNATURES_DIR);
    opts.stem = "report-signed".into();
    opts.cases_file = Some(bundle.join(crate::trace::bundle::CASES_FILE));
    opts.signatures = Some((sums, views));
    let written = render_bundle(evidence, formats, &opts, &out_dir)?;
    let mut list = String::new();
    for p in &written {
        let rel = p
            .strip_prefix(bundle)
            .unwrap_or(p)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let (h, _) = crate::hash::sha256_file(p)?;
        list.push_str(&format!("{h}  {rel}\n"));
    }
    let sums_path = out_dir.join(SIGNED_SUMS);
    std::fs::write(&sums_path, list).map_err(|e| Error::io(&sums_path, e))?;
    for p in written.iter().chain(std::iter::once(&sums_path)) {
        println!("{}", p.display());
    }
    Ok(if all_valid {
        Outcome::Pass
    } else {
        Outcome::Fail
    })
}

/// Thumbnails for the case explorer, when the protocol asks for them and the golden set is
/// reachable (and intact) from here; otherwise none, with a warning.
fn case_thumbnails(evidence: &Evidence, quiet: bool) -> std::collections::BTreeMap<String, String> {
    let px = evidence.protocol.report.thumbnails;
    if px == 0 {
        return Default::default();
    }
    let base = std::path::Path::new(&evidence.protocol_file.path)
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    match crate::golden::GoldenSet::open(&evidence.protocol.golden_set, &base, &[]) {
        Ok(set) => crate::report::cases::thumbnails(&set, px),
        Err(e) => {
            if !quiet {
                eprintln!(
                    "warning: no case thumbnails: the golden set is not readable from here ({e})"
                );
            }
            Default::default()
        }
    }
}

fn fmt_list(f: &[ReportFormat]) -> String {
    f.iter()
        .map(|f| match f {
            ReportFormat::Pdf => "pdf",
            ReportFormat::Html => "html",
            ReportFormat::Md => "md",
        })
        .collect::<Vec<_>>()
        .join(",")
}
