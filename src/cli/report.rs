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

The report is rendered from BUNDLE/evidence.json alone and written into BUNDLE
(report.pdf, report.typ, report.html, report.md, plots/*.svg). Rendering the same
evidence with the same medgate version always gives the same bytes.")]
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
    let opts = RenderOptions {
        templates,
        typst_bin: args.typst_bin,
    };
    if !global.quiet {
        eprintln!("rendering {} from {}", fmt_list(&formats), path.display());
    }
    let written = render_bundle(&evidence, &formats, &opts, &args.bundle)?;
    for p in written {
        println!("{}", p.display());
    }
    Ok(Outcome::Pass)
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
