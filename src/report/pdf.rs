//! PDF rendering with the Typst compiler embedded as a library.
//!
//! We implement Typst's `World` ourselves so that compilation is a pure function of the
//! report source: the main file is the rendered `report.typ`, the only other files are the
//! plot SVGs (served from memory under `plots/`), the fonts are the ones bundled in the binary
//! (`typst-assets`), and `today()` and the PDF creation date are the evidence's run date, not
//! the clock. Nothing is read from the file system or the network, so a fresh machine with
//! nothing installed renders the same bytes for the same medgate version. The font book is
//! built once per process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, OnceLock};

use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Duration, Smart};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};

/// Fonts bundled with Typst, loaded once per process.
struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

static FONTS: LazyLock<Fonts> = LazyLock::new(|| {
    let fonts: Vec<Font> = typst_assets::fonts()
        .flat_map(|data| Font::iter(Bytes::new(data)))
        .collect();
    let book = FontBook::from_fonts(fonts.iter());
    Fonts {
        book: LazyHash::new(book),
        fonts,
    }
});

static LIBRARY: OnceLock<LazyHash<Library>> = OnceLock::new();

/// A Typst world holding one report: its source, its plots and its date.
pub struct ReportWorld {
    main: Source,
    files: HashMap<FileId, Bytes>,
    date: Option<Datetime>,
}

fn file_id(path: &str) -> FileResult<FileId> {
    let vpath = VirtualPath::new(path).map_err(|_| FileError::AccessDenied)?;
    Ok(RootedPath::new(VirtualRoot::Project, vpath).intern())
}

impl ReportWorld {
    /// A world whose main file is `source` (as `/report.typ`), with `files` (path relative to
    /// the report, e.g. `plots/roc.svg`) and `today()` = `date` (`YYYY-MM-DD...`).
    pub fn new(source: String, files: &[(String, Vec<u8>)], date: &str) -> crate::Result<Self> {
        let id = file_id("report.typ")
            .map_err(|e| crate::Error::Internal(format!("typst main file id: {e}")))?;
        let mut map = HashMap::new();
        for (path, bytes) in files {
            let fid = file_id(path)
                .map_err(|e| crate::Error::Internal(format!("typst file id {path}: {e}")))?;
            map.insert(fid, Bytes::new(bytes.clone()));
        }
        Ok(ReportWorld {
            main: Source::new(id, source),
            files: map,
            date: parse_date(date),
        })
    }
}

/// `YYYY-MM-DD` (and optionally `THH:MM:SS`) to a Typst datetime.
fn parse_date(s: &str) -> Option<Datetime> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    match (num(11..13), num(14..16), num(17..19)) {
        (Some(h), Some(mi), Some(se)) => {
            Datetime::from_ymd_hms(y as i32, m as u8, d as u8, h as u8, mi as u8, se as u8)
        }
        _ => Datetime::from_ymd(y as i32, m as u8, d as u8),
    }
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        LIBRARY.get_or_init(|| LazyHash::new(Library::default()))
    }
    fn book(&self) -> &LazyHash<FontBook> {
        &FONTS.book
    }
    fn main(&self) -> FileId {
        self.main.id()
    }
    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::NotSource)
        }
    }
    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == self.main.id() {
            return Ok(Bytes::from_string(self.main.clone()));
        }
        self.files
            .get(&id)
            .cloned()
            .ok_or_else(|| FileError::NotFound(id.vpath().get_with_slash().into()))
    }
    fn font(&self, index: usize) -> Option<Font> {
        FONTS.fonts.get(index).cloned()
    }
    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        // The report's date is the run's (UTC) date; the offset is ignored on purpose so the
        // document does not depend on where it is rendered.
        self.date
            .and_then(|d| Datetime::from_ymd(d.year()?, d.month()?, d.day()?))
    }
}

fn render_diags(world: &ReportWorld, diags: &[SourceDiagnostic]) -> String {
    let text = world.main.text();
    diags
        .iter()
        .map(|d| {
            let loc = typst::WorldExt::range(world, d.span)
                .map(|r| {
                    let line = text[..r.start].matches('\n').count() + 1;
                    let snippet: String = text[r.clone()].chars().take(60).collect();
                    format!("report.typ:{line}: near `{snippet}`: ")
                })
                .unwrap_or_default();
            let hints: String = d
                .hints
                .iter()
                .map(|h| format!(" (hint: {})", h.v))
                .collect();
            format!("{loc}{}{hints}", d.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compiles a report's Typst source and its plot files to PDF bytes.
///
/// `date` is the run's finish time (RFC 3339): it is `today()` in the document and the PDF's
/// creation date. `ident` makes the PDF document ID stable (the run ID).
pub fn compile_pdf(
    source: String,
    files: &[(String, Vec<u8>)],
    date: &str,
    ident: &str,
) -> crate::Result<Vec<u8>> {
    let world = ReportWorld::new(source, files, date)?;
    let doc = typst::compile(&world)
        .output
        .map_err(|errs| crate::Error::Input {
            message: format!(
                "the report template does not compile:\n{}",
                render_diags(&world, &errs)
            ),
            hint: Some(
                "if the protocol's report.templates directory overrides report.typ, check it; \
                 otherwise this is a bug in medgate"
                    .into(),
            ),
        })?;
    let options = typst_pdf::PdfOptions {
        ident: Smart::Custom(ident.to_string()),
        creator: Smart::Custom(Some(format!(
            "medgate {} (Typst 0.15)",
            env!("CARGO_PKG_VERSION")
        ))),
        timestamp: world.date.map(typst_pdf::Timestamp::new_utc),
        ..Default::default()
    };
    typst_pdf::pdf(&doc, &options).map_err(|errs| {
        crate::Error::Internal(format!("PDF export: {}", render_diags(&world, &errs)))
    })
}

/// Renders with an external `typst` binary: `typst compile report.typ report.pdf` in `dir`
/// (which must already hold `report.typ` and `plots/`), with `SOURCE_DATE_EPOCH` set from the
/// run date so the external tool is reproducible too.
pub(crate) fn compile_external(bin: &Path, dir: &Path, date: &str) -> crate::Result<()> {
    let epoch = chrono::DateTime::parse_from_rfc3339(date)
        .map(|d| d.timestamp())
        .unwrap_or(0);
    let out = std::process::Command::new(bin)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args(["compile", "report.typ", "report.pdf"])
        .output()
        .map_err(|e| crate::Error::Input {
            message: format!("cannot run the Typst binary {}: {e}", bin.display()),
            hint: Some("pass the path of a `typst` executable, or omit --typst-bin to use the embedded compiler".into()),
        })?;
    if !out.status.success() {
        return Err(crate::Error::infra(format!(
            "{} compile report.typ failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_minimal_document_deterministically_with_fixed_date() {
        let src = "#set page(width: 10cm, height: 5cm)\nHello #datetime.today().display()\n#image(\"plots/x.svg\", width: 1cm)".to_string();
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>"#.to_vec();
        let files = vec![("plots/x.svg".to_string(), svg)];
        let a = compile_pdf(src.clone(), &files, "2026-01-15T09:14:41Z", "RUN-1").unwrap();
        let b = compile_pdf(src, &files, "2026-01-15T09:14:41Z", "RUN-1").unwrap();
        assert!(a.starts_with(b"%PDF-"));
        assert_eq!(a, b);
        // The creation date is the run's, not the clock's.
        let text = String::from_utf8_lossy(&a);
        assert!(
            text.contains("D:20260115091441"),
            "creation date from evidence"
        );
    }

    #[test]
    fn compile_error_is_reported_with_location() {
        let e = compile_pdf("#let x = (".into(), &[], "2026-01-15", "x").unwrap_err();
        assert!(e.to_string().contains("report.typ:1"), "{e}");
    }

    #[test]
    fn dates_parse() {
        let d = parse_date("2026-01-15T09:14:41Z").unwrap();
        assert_eq!(
            (d.year(), d.month(), d.day()),
            (Some(2026), Some(1), Some(15))
        );
        assert!(parse_date("garbage").is_none());
    }
}
