//! The report stage: renders an [`Evidence`] record as the human-readable design-verification
//! record (IEC 62304 5.6.7/5.7.5, ISO 13485 7.3.6) that QA staff and auditors read: a PDF
//! (through the embedded Typst compiler), a self-contained HTML page and Markdown.
//!
//! # How it works
//! 1. [`view::build`] turns the evidence into a view model: every number formatted once
//!    (`0.911 (0.881-0.934)`, `n/a` for undefined), so the three renderings agree and every
//!    number in them comes from `evidence.json`.
//! 2. [`plots::render`] draws the ROC, forest and calibration plots as SVG.
//! 3. minijinja renders `templates/report.typ`, `report.html` and `report.md` (embedded in
//!    the binary; a site may override any of them by file name with the protocol's
//!    `report.templates` directory). Every interpolated value is escaped for its output
//!    language unless a template explicitly marks it safe: see [`escape`].
//! 4. [`pdf::compile_pdf`] compiles the Typst source with a `World` of our own (bundled
//!    fonts, plots from memory, the run date as `today()`), so the same medgate version
//!    renders the same bytes on any machine.
//!
//! The report only reads; it never recomputes statistics or verdicts.

pub mod cases;
pub mod comparison;
pub mod escape;
pub mod junit;
pub mod pdf;
pub mod plots;
pub mod view;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, Value};

use crate::protocol::ReportFormat;
use crate::trace::Evidence;

/// Built-in templates, by file name (a site override directory uses the same names).
pub const TEMPLATES: [(&str, &str); 3] = [
    ("report.typ", include_str!("../../templates/report.typ")),
    ("report.html", include_str!("../../templates/report.html")),
    ("report.md", include_str!("../../templates/report.md")),
];

/// The case explorer's script, inlined into `report.html` (kept in `templates/` so it is
/// reviewed as source, not generated).
const CASES_JS: &str = include_str!("../../templates/cases.js");

/// How to render.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// A directory of site templates overriding the built-in ones by file name.
    pub templates: Option<PathBuf>,
    /// Render the PDF with this external `typst` binary instead of the embedded compiler.
    pub typst_bin: Option<PathBuf>,
    /// Case thumbnails for the HTML case explorer, by case ID (`data:` URIs; see
    /// [`cases::thumbnails`]); empty for none.
    pub thumbnails: BTreeMap<String, String>,
    /// File name stem of the reports written (`report` when empty): `report-signed` for a
    /// signed rendering.
    pub stem: String,
    /// The `cases.parquet` the HTML case explorer shows; default `OUT_DIR/cases.parquet`.
    pub cases_file: Option<PathBuf>,
    /// The bundle's signatures, for a signed rendering: the SHA-256 of the SHA256SUMS they
    /// cover, and each signature as checked.
    pub signatures: Option<(String, Vec<view::SignatureView>)>,
}

impl RenderOptions {
    /// The options of `medgate run`: the protocol's site templates (relative to it) and, when
    /// it asks for HTML, the set's case thumbnails at the protocol's size.
    pub fn for_run(
        lp: &crate::protocol::LoadedProtocol,
        set: &crate::golden::GoldenSet,
        typst_bin: Option<PathBuf>,
    ) -> RenderOptions {
        let r = &lp.protocol.report;
        RenderOptions {
            templates: r.templates.as_ref().map(|t| lp.resolve(t)),
            typst_bin,
            thumbnails: if r.formats.contains(&ReportFormat::Html) {
                cases::thumbnails(set, r.thumbnails)
            } else {
                Default::default()
            },
            ..Default::default()
        }
    }
}

/// Which escaping a template gets, by its file name.
fn auto_escape_for(name: &str) -> AutoEscape {
    if name.ends_with(".html") || name.ends_with(".htm") || name.ends_with(".svg") {
        AutoEscape::Html
    } else if name.ends_with(".typ") {
        AutoEscape::Custom("typst".into())
    } else if name.ends_with(".md") {
        AutoEscape::Custom("markdown".into())
    } else {
        AutoEscape::None
    }
}

fn filter_typst(v: Value) -> Value {
    Value::from_safe_string(escape::typst_escape(&value_text(&v)))
}
fn filter_typst_str(v: Value) -> Value {
    Value::from_safe_string(escape::typst_str_escape(&value_text(&v)))
}
/// For an indented Markdown code block: literal text, one line (a newline would end the block).
fn filter_md_code(v: Value) -> Value {
    let text: String = value_text(&v)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Value::from_safe_string(text)
}
/// Text with backtick spans rendered as code, escaped for the template's output language.
fn filter_code(state: &minijinja::State, v: Value) -> Value {
    let text = value_text(&v);
    Value::from_safe_string(match state.auto_escape() {
        AutoEscape::Html => escape::html_code_spans(&text),
        AutoEscape::Custom(name) if name == "typst" => escape::typst_code_spans(&text),
        AutoEscape::Custom(name) if name == "markdown" => escape::md_code_spans(&text),
        _ => text,
    })
}
fn filter_md(v: Value) -> Value {
    Value::from_safe_string(escape::md_escape(&value_text(&v)))
}

/// The text of a value as a template would print it (`none`/undefined print as nothing).
fn value_text(v: &Value) -> String {
    if v.is_none() || v.is_undefined() {
        String::new()
    } else if let Some(s) = v.as_str() {
        s.to_string()
    } else {
        v.to_string()
    }
}

/// Converts JSON into a template value (minijinja is built without its serde feature).
fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => a.iter().map(to_value).collect(),
        serde_json::Value::Object(o) => Value::from_object(
            o.iter()
                .map(|(k, v)| (Value::from(k.as_str()), to_value(v)))
                .collect::<std::collections::BTreeMap<Value, Value>>(),
        ),
    }
}

/// The template environment: built-in templates, site overrides, escaping filters and an
/// escaping formatter for every output language.
fn environment(overrides: Option<&Path>) -> crate::Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| Error::Internal(format!("template syntax: {e}")))?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(auto_escape_for);
    env.set_formatter(|out, state, value| {
        let custom = match state.auto_escape() {
            AutoEscape::Custom(name) => Some(name.to_string()),
            _ => None,
        };
        match custom {
            Some(kind) if !value.is_safe() => {
                let text = value_text(value);
                let escaped = if kind == "typst" {
                    escape::typst_escape(&text)
                } else {
                    escape::md_escape(&text)
                };
                out.write_str(&escaped).map_err(minijinja::Error::from)
            }
            Some(_) => out
                .write_str(&value_text(value))
                .map_err(minijinja::Error::from),
            None => minijinja::escape_formatter(out, state, value),
        }
    });
    env.add_filter("typst_escape", filter_typst);
    env.add_filter("typst_str", filter_typst_str);
    env.add_filter("md_escape", filter_md);
    env.add_filter("md_code", filter_md_code);
    env.add_filter("code", filter_code);
    for (name, src) in TEMPLATES {
        // Site templates are read without following symlinks (a link could pull any file the
        // user can read into the report).
        let text = match overrides.map(|d| d.join(name)) {
            Some(p) if std::fs::symlink_metadata(&p).is_ok() => crate::fsx::read_inside_to_string(
                overrides.unwrap_or(Path::new(".")),
                Path::new(name),
            )?,
            _ => src.to_string(),
        };
        env.add_template_owned(name.to_string(), text)
            .map_err(|e| template_error(name, overrides, &e))?;
    }
    Ok(env)
}

/// The template environment with medgate's escaping rules plus `extra` templates (name,
/// source), for documents other than the verification report (the monitoring report).
pub fn environment_with(extra: &[(&str, &str)]) -> crate::Result<Environment<'static>> {
    let mut env = environment(None)?;
    for (name, src) in extra {
        env.add_template_owned(name.to_string(), src.to_string())
            .map_err(|e| template_error(name, None, &e))?;
    }
    Ok(env)
}

/// JSON as a template value (for [`environment_with`] users).
pub fn json_value(v: &serde_json::Value) -> Value {
    to_value(v)
}

use crate::error::Error;

fn template_error(name: &str, overrides: Option<&Path>, e: &minijinja::Error) -> Error {
    let mut msg = format!("template {name}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    match overrides {
        Some(d) if d.join(name).is_file() => Error::input_hint(
            msg,
            format!(
                "fix the site template {} (or remove it to use the built-in one)",
                d.join(name).display()
            ),
        ),
        _ => Error::Internal(msg),
    }
}

/// The case explorer as the HTML template sees it: `cases.n`, `cases.thumbnails` (pixels),
/// `cases.json` and `cases.script` (both safe to place inside `<script>`).
fn cases_context(
    table: Option<&cases::CaseTable>,
    thumbs: &BTreeMap<String, String>,
    px: u32,
) -> Value {
    match table {
        None => Value::from(()),
        Some(t) => minijinja::context! {
            n => t.rows.len(),
            thumbnails => if thumbs.is_empty() { 0 } else { px },
            json => Value::from_safe_string(cases::explorer_json(t, thumbs)),
            script => Value::from_safe_string(CASES_JS.replace("</", "<\\/")),
        },
    }
}

/// Renders one template with the view model of `ev` and the plot SVGs.
fn render_template(
    env: &Environment<'static>,
    name: &str,
    ev: &Evidence,
    plots: &plots::Plots,
    overrides: Option<&Path>,
) -> crate::Result<String> {
    render_template_cases(env, name, ev, plots, overrides, Value::from(()), None)
}

fn render_template_cases(
    env: &Environment<'static>,
    name: &str,
    ev: &Evidence,
    plots: &plots::Plots,
    overrides: Option<&Path>,
    cases: Value,
    signed: Option<&(String, Vec<view::SignatureView>)>,
) -> crate::Result<String> {
    let mut view = view::build(ev);
    if let Some((sums, sigs)) = signed {
        view.apply_signatures(sums, sigs);
    }
    let ctx = minijinja::context! {
        r => to_value(&serde_json::to_value(&view).map_err(|e| Error::Internal(format!("report view: {e}")))?),
        plots => minijinja::context! {
            roc => Value::from_safe_string(plots.roc.clone()),
            forest => Value::from_safe_string(plots.forest.clone()),
            calibration => Value::from_safe_string(plots.calibration.clone()),
            comparison => Value::from_safe_string(comparison::forest_svg(ev)),
        },
        cases => cases,
    };
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| template_error(name, overrides, &e))
}

/// Renders the Markdown report (plots referenced as `plots/*.svg` beside it).
pub fn render_markdown(ev: &Evidence) -> crate::Result<String> {
    render_with(ev, "report.md", None)
}

/// Renders the self-contained HTML report (plots inline).
pub fn render_html(ev: &Evidence) -> crate::Result<String> {
    render_with(ev, "report.html", None)
}

/// Renders the HTML report with a case explorer over `table` (and optional thumbnails).
pub fn render_html_with_cases(
    ev: &Evidence,
    table: &cases::CaseTable,
    thumbs: &BTreeMap<String, String>,
) -> crate::Result<String> {
    let plots = plots::render(ev)?;
    let env = environment(None)?;
    let ctx = cases_context(Some(table), thumbs, ev.protocol.report.thumbnails);
    render_template_cases(&env, "report.html", ev, &plots, None, ctx, None)
}

/// Renders the Typst source of the report (plots referenced as `plots/*.svg`).
pub fn render_typst(ev: &Evidence) -> crate::Result<String> {
    render_with(ev, "report.typ", None)
}

/// Renders the PDF with the embedded Typst compiler.
pub fn render_pdf(ev: &Evidence) -> crate::Result<Vec<u8>> {
    let plots = plots::render(ev)?;
    let env = environment(None)?;
    let src = render_template(&env, "report.typ", ev, &plots, None)?;
    pdf::compile_pdf(
        src,
        &with_comparison_plot(plot_files(&plots), ev),
        &ev.provenance.finished_at,
        &ev.run_id,
    )
}

/// Renders one named template (`report.typ`, `report.html`, `report.md`), with optional site
/// overrides.
fn render_with(ev: &Evidence, name: &str, overrides: Option<&Path>) -> crate::Result<String> {
    let plots = plots::render(ev)?;
    let env = environment(overrides)?;
    render_template(&env, name, ev, &plots, overrides)
}

/// Image files a site template directory provides (logos), served to Typst as `assets/NAME`
/// and copied into the bundle's `assets/` so `typst compile report.typ` finds them too.
fn site_assets(dir: &Path) -> crate::Result<Vec<(String, Vec<u8>)>> {
    const EXT: [&str; 5] = ["png", "jpg", "jpeg", "svg", "gif"];
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // file_type() does not follow symlinks: a linked "logo" is not embedded.
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if regular && EXT.contains(&ext.as_str()) {
            let bytes = crate::fsx::read_inside(dir, Path::new(name))?;
            out.push((name.to_string(), bytes));
        }
    }
    // Directory order is not stable across file systems.
    out.sort();
    Ok(out)
}

/// Adds `plots/comparison.svg` when the evidence holds a release comparison.
fn with_comparison_plot(
    mut files: Vec<(String, Vec<u8>)>,
    ev: &Evidence,
) -> Vec<(String, Vec<u8>)> {
    if ev.comparison.is_some() {
        files.push((
            "plots/comparison.svg".into(),
            comparison::forest_svg(ev).into_bytes(),
        ));
    }
    files
}

fn plot_files(plots: &plots::Plots) -> Vec<(String, Vec<u8>)> {
    plots
        .files()
        .iter()
        .map(|(n, s)| (format!("plots/{n}"), s.as_bytes().to_vec()))
        .collect()
}

/// Writes `out_dir/rel` without following a symlink planted in the bundle (see
/// [`crate::fsx::write_inside`]).
fn write(out_dir: &Path, rel: &str, bytes: &[u8], written: &mut Vec<PathBuf>) -> crate::Result<()> {
    let p = crate::fsx::write_inside(out_dir, Path::new(rel), bytes)?;
    written.push(p);
    Ok(())
}

/// Renders `evidence` into `out_dir` in each of `formats` and returns the files written
/// (sorted): `report.pdf` + `report.typ` for PDF, `report.html`, `report.md`, and the plots
/// under `plots/` (which `report.typ` and `report.md` reference). Images in a site template
/// directory (`*.png`, `*.jpg`, `*.svg`, `*.gif`: logos) are copied to `assets/` and can be
/// used from a site `report.typ` as `image("assets/logo.png")`.
pub fn render_bundle(
    evidence: &Evidence,
    formats: &[ReportFormat],
    opts: &RenderOptions,
    out_dir: &Path,
) -> crate::Result<Vec<PathBuf>> {
    if let Some(d) = &opts.templates
        && !d.is_dir()
    {
        return Err(Error::input_hint(
            format!("report templates directory {} does not exist", d.display()),
            "report.templates in the protocol (or --templates) must name a directory holding \
             report.typ, report.html and/or report.md",
        ));
    }
    let plots = plots::render(evidence)?;
    let env = environment(opts.templates.as_deref())?;
    let overrides = opts.templates.as_deref();
    let stem = if opts.stem.is_empty() {
        "report"
    } else {
        opts.stem.as_str()
    };
    if stem != "report" && opts.typst_bin.is_some() {
        return Err(Error::input(
            "--typst-bin renders report.typ only; a signed rendering uses the embedded compiler",
        ));
    }
    let signed = opts.signatures.as_ref();
    let mut written = Vec::new();
    let mut formats = formats.to_vec();
    formats.sort();
    formats.dedup();
    let needs_plots = formats
        .iter()
        .any(|f| matches!(f, ReportFormat::Pdf | ReportFormat::Md));
    if needs_plots {
        for (name, svg) in plots.files() {
            write(
                out_dir,
                &format!("plots/{name}"),
                svg.as_bytes(),
                &mut written,
            )?;
        }
        if evidence.comparison.is_some() {
            let svg = comparison::forest_svg(evidence);
            write(
                out_dir,
                "plots/comparison.svg",
                svg.as_bytes(),
                &mut written,
            )?;
        }
    }
    for f in formats {
        match f {
            ReportFormat::Pdf => {
                let src = render_template_cases(
                    &env,
                    "report.typ",
                    evidence,
                    &plots,
                    overrides,
                    Value::from(()),
                    signed,
                )?;
                write(
                    out_dir,
                    &format!("{stem}.typ"),
                    src.as_bytes(),
                    &mut written,
                )?;
                let pdf_path = out_dir.join(format!("{stem}.pdf"));
                let mut files = with_comparison_plot(plot_files(&plots), evidence);
                if let Some(d) = overrides {
                    let assets = site_assets(d)?;
                    if !assets.is_empty() {
                        for (name, bytes) in assets {
                            write(out_dir, &format!("assets/{name}"), &bytes, &mut written)?;
                            files.push((format!("assets/{name}"), bytes));
                        }
                    }
                }
                match &opts.typst_bin {
                    Some(bin) => {
                        pdf::compile_external(bin, out_dir, &evidence.provenance.finished_at)?;
                        written.push(pdf_path);
                    }
                    None => {
                        let bytes = pdf::compile_pdf(
                            src,
                            &files,
                            &evidence.provenance.finished_at,
                            &evidence.run_id,
                        )?;
                        write(out_dir, &format!("{stem}.pdf"), &bytes, &mut written)?;
                    }
                }
            }
            ReportFormat::Html => {
                // The explorer shows the bundle's own cases.parquet when it is there.
                let cases_path = opts
                    .cases_file
                    .clone()
                    .unwrap_or_else(|| out_dir.join(crate::trace::bundle::CASES_FILE));
                let table = if cases_path.is_file() {
                    Some(cases::read_cases(
                        &cases_path,
                        evidence.statistics.threshold,
                    )?)
                } else {
                    None
                };
                let ctx = cases_context(
                    table.as_ref(),
                    &opts.thumbnails,
                    evidence.protocol.report.thumbnails,
                );
                let s = render_template_cases(
                    &env,
                    "report.html",
                    evidence,
                    &plots,
                    overrides,
                    ctx,
                    signed,
                )?;
                write(out_dir, &format!("{stem}.html"), s.as_bytes(), &mut written)?;
            }
            ReportFormat::Md => {
                let s = render_template_cases(
                    &env,
                    "report.md",
                    evidence,
                    &plots,
                    overrides,
                    Value::from(()),
                    signed,
                )?;
                write(out_dir, &format!("{stem}.md"), s.as_bytes(), &mut written)?;
            }
        }
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_html_render_every_section() {
        let ev = crate::testing::sample::sample_evidence();
        let md = render_markdown(&ev).unwrap();
        let html = render_html(&ev).unwrap();
        for doc in [&md, &html] {
            for needle in [
                "OVERALL VERDICT: FAIL",
                "VP-PTX-001",
                "RUN-20260115-7f3a9c2e",
                "4e1d2c3b4a5968776655443322110ffeeddccbba",
                "AC-PTX-01",
                "AC-PTX-05",
                "SRS-PTX-020",
                "0.887 (0.829-0.928)",
                "Wilson score",
                "DeLong",
                "DIRTY",
                "Dr. Jane Roe",
                "0.024",
                "medgate verify BUNDLE_DIR",
            ] {
                assert!(
                    doc.contains(needle) || doc.contains(&escape::md_escape(needle)),
                    "missing {needle}"
                );
            }
        }
        assert!(html.contains("<svg"));
        assert!(md.contains("](plots/forest.svg)"));
    }

    /// An evidence record with nothing in it: no cases, no criteria, no subgroups, no curves,
    /// no git. Every format must still render (with `n/a`, never `NaN`).
    fn empty_evidence() -> Evidence {
        let mut ev = crate::testing::sample::sample_evidence();
        let zero = crate::stats::Metrics {
            tp: 0,
            fp: 0,
            tn: 0,
            fn_: 0,
            sensitivity: None,
            specificity: None,
            ppv: None,
            npv: None,
            accuracy: None,
            auroc: None,
            f1: None,
            kappa: None,
            prevalence: None,
            ..Default::default()
        };
        ev.statistics.n = 0;
        ev.statistics.positives = 0;
        ev.statistics.negatives = 0;
        ev.statistics.overall = zero;
        ev.statistics.subgroups.clear();
        ev.statistics.gaps.clear();
        ev.equivocal_analyses.clear();
        ev.curves = Default::default();
        ev.criteria.clear();
        ev.traceability = Default::default();
        ev.warnings.clear();
        ev.provenance.git = None;
        ev.protocol.report.signatories.clear();
        ev.accountability.not_evaluated.clear();
        ev.accountability.excluded.clear();
        ev.accountability.equivocal = 0;
        ev
    }

    #[test]
    fn empty_evidence_renders_every_format() {
        let ev = empty_evidence();
        let dir = tempfile::tempdir().unwrap();
        let files = render_bundle(
            &ev,
            &[ReportFormat::Pdf, ReportFormat::Html, ReportFormat::Md],
            &RenderOptions::default(),
            dir.path(),
        )
        .unwrap();
        assert_eq!(files.len(), 7);
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(
            md.contains("| Sensitivity | 0/0 | n/a | Wilson score |"),
            "{md}"
        );
        assert!(!md.contains("NaN"));
        let pdf = std::fs::read(dir.path().join("report.pdf")).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
    }

    #[test]
    fn typst_source_escapes_user_strings() {
        let ev = crate::testing::sample::escaping_corpus();
        let typ = render_typst(&ev).unwrap();
        assert!(typ.contains(r"\#sys\.exit\(\)"));
        assert!(!typ.contains("[#sys.exit()"));
        let md = render_markdown(&ev).unwrap();
        assert!(!md.contains("<script>"));
        let html = render_html(&ev).unwrap();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        // A template expression inside data is data, not template code.
        assert!(html.contains("{{ 7*7 }}"));
    }
}
