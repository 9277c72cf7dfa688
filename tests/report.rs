//! End-to-end tests of `medgate report`: render a sample bundle to PDF, HTML and Markdown
//! through the binary, check the content, determinism, HTML well-formedness and escaping.

use std::path::Path;
use std::process::Command;

use medgate::testing::sample;
use medgate::trace::Evidence;

fn bundle(ev: &Evidence) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("evidence.json"),
        serde_json::to_string_pretty(ev).unwrap(),
    )
    .unwrap();
    dir
}

fn report(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medgate"))
        .arg("report")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

/// Text of a PDF via `pdftotext`, when poppler-utils is installed.
fn pdf_text(pdf: &Path) -> Option<String> {
    let out = Command::new("pdftotext")
        .args(["-layout"])
        .arg(pdf)
        .arg("-")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A small well-formedness check: every non-void element is closed in order, and no
/// `<script` element loads anything (the case explorer's script is inline).
fn check_html(html: &str) -> Result<(), String> {
    const VOID: [&str; 6] = ["meta", "br", "hr", "img", "link", "input"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        let self_closing = tag.ends_with('/');
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!("bad tag <{tag}>"));
        }
        if name == "script" && !closing {
            // Only the inline case explorer: never a script loaded from anywhere.
            if tag.contains("src") {
                return Err(format!("external script <{tag}>"));
            }
            let close = rest.find("</script>").ok_or("unclosed script")?;
            rest = &rest[close + "</script>".len()..];
            continue;
        }
        if name == "style" && !closing {
            let close = rest.find("</style>").ok_or("unclosed style")?;
            rest = &rest[close + "</style>".len()..];
            continue;
        }
        if closing {
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else if !self_closing && !VOID.contains(&name.as_str()) {
            stack.push(name);
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed: {stack:?}"))
    }
}

#[test]
fn renders_all_formats_deterministically() {
    let ev = sample::sample_evidence();
    let dir = bundle(&ev);
    let out = report(dir.path(), &["--format", "pdf,html,md"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    for f in [
        "report.pdf",
        "report.typ",
        "report.html",
        "report.md",
        "plots/roc.svg",
        "plots/forest.svg",
        "plots/calibration.svg",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
        assert!(listed.contains(f), "{f} not listed on stdout");
    }
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let first: Vec<(&str, Vec<u8>)> = ["report.pdf", "report.typ", "report.html", "report.md"]
        .iter()
        .map(|f| (*f, read(f)))
        .collect();

    // PDF: valid header and trailer, fixed creation date from the evidence.
    let pdf = &first[0].1;
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(String::from_utf8_lossy(&pdf[pdf.len() - 32..]).contains("%%EOF"));

    // The Typst source carries the numbers and IDs (checked without external tools).
    let typ = String::from_utf8_lossy(&first[1].1);
    assert!(typ.contains(r"VP\-PTX\-001"));
    assert!(typ.contains("4e1d2c3b4a5968776655443322110ffeeddccbba"));
    assert!(typ.contains(r"0\.887 \(0\.829\-0\.928\)"));

    match pdf_text(&dir.path().join("report.pdf")) {
        Some(text) => {
            for needle in [
                "VP-PTX-001",
                "RUN-20260115-7f3a9c2e",
                "4e1d2c3b4a5968776655443322110ffeeddccbba",
                "OVERALL VERDICT: FAIL",
                "AC-PTX-01",
                "AC-PTX-02",
                "AC-PTX-03",
                "AC-PTX-04",
                "AC-PTX-05",
                "0.887 (0.829-0.928)",
            ] {
                assert!(text.contains(needle), "PDF text lacks {needle}");
            }
        }
        None => eprintln!("notice: pdftotext not installed; PDF text check skipped"),
    }

    // HTML parses (balanced tags, no scripts) and carries the verdict.
    let html = String::from_utf8_lossy(&first[2].1);
    check_html(&html).unwrap();
    assert!(html.contains("OVERALL VERDICT: FAIL"));

    let md = String::from_utf8_lossy(&first[3].1);
    assert!(md.contains("| AC-PTX-02 | SRS-PTX-011 |"));
    assert!(md.contains("**FAIL**"));

    // Rendering again gives identical bytes.
    let out = report(dir.path(), &["--format", "pdf,html,md"]);
    assert!(out.status.success());
    for (f, bytes) in &first {
        assert_eq!(&read(f), bytes, "{f} differs between two renderings");
    }
}

#[test]
fn escaping_corpus_renders_literally() {
    let ev = sample::escaping_corpus();
    let dir = bundle(&ev);
    let out = report(dir.path(), &["--format", "pdf,html,md"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    check_html(&html).unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;"));
    assert!(!html.contains("<script"));
    assert!(html.contains("#sys.exit()"));
    assert!(html.contains("שלום عربي"));
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains(r"\<script\>alert(1)\</script\>"));
    assert!(md.contains(r"\*bold\*"));
    assert!(md.contains(r"\$x\$"));
    assert!(md.contains(r"back\\slash \\\\ end"));
    let typ = std::fs::read_to_string(dir.path().join("report.typ")).unwrap();
    assert!(typ.contains(r"\#sys\.exit\(\)"));
    // In a Typst string literal (the PDF author) only quotes and backslashes are escaped.
    assert!(typ.contains(r#"author: "quote\" back\\ #user","#));
    assert!(typ.contains(r"\$x\$"));
    match pdf_text(&dir.path().join("report.pdf")) {
        Some(text) => {
            let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
            for s in [
                "#sys.exit()",
                "<script>alert(1)</script>",
                "$x$",
                "*bold*",
                r"back\slash",
            ] {
                assert!(flat.contains(s), "PDF text lacks literal {s}");
            }
        }
        None => eprintln!("notice: pdftotext not installed; PDF text check skipped"),
    }
}

#[test]
fn site_templates_override_by_file_name() {
    let ev = sample::sample_evidence();
    let dir = bundle(&ev);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("report.md"),
        "ACME Corp header\nProtocol {{ r.doc.protocol_id }} verdict {{ r.verdict.label }} {{ r.doc.title }}\n",
    )
    .unwrap();
    let out = report(
        dir.path(),
        &[
            "--format",
            "md,html",
            "--templates",
            site.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert_eq!(
        md,
        "ACME Corp header\nProtocol VP-PTX-001 verdict FAIL Pneumothorax detection on frontal chest radiographs\n"
    );
    // A site report.typ with its own logo compiles through the embedded Typst.
    std::fs::write(
        site.path().join("logo.svg"),
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="navy"/></svg>"#,
    )
    .unwrap();
    std::fs::write(
        site.path().join("report.typ"),
        "#image(\"assets/logo.svg\", width: 2cm)\nACME Corp validation record {{ r.doc.protocol_id }}: {{ r.verdict.label }}\n",
    )
    .unwrap();
    let out = report(
        dir.path(),
        &[
            "--format",
            "pdf",
            "--templates",
            site.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("assets/logo.svg").is_file());
    if let Some(text) = pdf_text(&dir.path().join("report.pdf")) {
        assert!(
            text.contains("ACME Corp validation record VP-PTX-001: FAIL"),
            "{text}"
        );
    }
    // Templates not overridden stay built in.
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("OVERALL VERDICT: FAIL"));
}

#[test]
fn broken_site_template_is_an_input_error_naming_the_file() {
    let ev = sample::sample_evidence();
    let dir = bundle(&ev);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("report.md"), "{{ r.no_such_field }}\n").unwrap();
    let out = report(
        dir.path(),
        &[
            "--format",
            "md",
            "--templates",
            site.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("template report.md"), "{err}");
    assert!(err.contains("report.md (or remove it"), "{err}");
}

#[test]
fn missing_evidence_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = report(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("evidence.json not found"), "{err}");
    assert!(err.contains("hint"), "{err}");
}

#[cfg(unix)]
#[test]
fn typst_bin_renders_externally_with_reproducible_date() {
    use std::os::unix::fs::PermissionsExt;
    let ev = sample::sample_evidence();
    let dir = bundle(&ev);
    // A stand-in for the `typst` CLI that records how it was called.
    let tools = tempfile::tempdir().unwrap();
    let fake = tools.path().join("typst");
    std::fs::write(
        &fake,
        "#!/bin/sh\ntest -f report.typ && test -f plots/roc.svg || exit 3\necho \"$SOURCE_DATE_EPOCH $*\" > report.pdf\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = report(
        dir.path(),
        &["--format", "pdf", "--typst-bin", fake.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pdf = std::fs::read_to_string(dir.path().join("report.pdf")).unwrap();
    // 2026-01-15T09:14:41Z, the run's finish time, as SOURCE_DATE_EPOCH.
    assert_eq!(pdf.trim(), "1768468481 compile report.typ report.pdf");

    // A failing external Typst is reported, not ignored.
    std::fs::write(&fake, "#!/bin/sh\necho 'error: boom' >&2\nexit 1\n").unwrap();
    let out = report(
        dir.path(),
        &["--format", "pdf", "--typst-bin", fake.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: boom"));
}

/// After `keygen` and `sign`, `report --signed` renders report-signed.{pdf,html,md} into
/// signatures/ showing each signature, lists them in report-signed.sha256, and leaves the
/// bundle's signed content (SHA256SUMS and every file it lists) untouched.
#[test]
fn signed_rendering_shows_signatures_in_a_separate_hashed_file() {
    let ev = sample::sample_evidence();
    let dir = bundle(&ev);
    let out = report(dir.path(), &["--format", "pdf,html,md"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    medgate::trace::bundle::write_sha256sums(dir.path()).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("qa.key");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(env!("CARGO_BIN_EXE_medgate"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    run(&["keygen".as_ref(), "--out".as_ref(), key.as_os_str()]);
    // The sample protocol lists Dr. Jane Roe as a signatory.
    run(&[
        "sign".as_ref(),
        dir.path().as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
        "--name".as_ref(),
        "Dr. Jane Roe".as_ref(),
        "--meaning".as_ref(),
        "approved".as_ref(),
    ]);
    let sums_before = std::fs::read(dir.path().join("SHA256SUMS")).unwrap();
    let pdf_before = std::fs::read(dir.path().join("report.pdf")).unwrap();
    let pubkey = medgate::verify::sign::public_key_path(&key);
    let o = report(
        dir.path(),
        &[
            "--signed",
            "--format",
            "pdf,html,md",
            "--trusted-key",
            pubkey.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("SHA256SUMS")).unwrap(),
        sums_before
    );
    assert_eq!(
        std::fs::read(dir.path().join("report.pdf")).unwrap(),
        pdf_before
    );
    let sig = dir.path().join("signatures");
    let fp = {
        let k = medgate::verify::sign::read_public_key(&pubkey).unwrap();
        medgate::verify::sign::fingerprint(&k)
    };
    let html = std::fs::read_to_string(sig.join("report-signed.html")).unwrap();
    let md = std::fs::read_to_string(sig.join("report-signed.md")).unwrap();
    for doc in [&html, &md] {
        assert!(doc.contains("SIGNED"), "no signature shown");
        assert!(doc.contains(&fp), "no key fingerprint {fp}");
        assert!(doc.contains("verified, trusted key"));
        assert!(doc.contains(&medgate::hash::sha256_hex(&sums_before)));
    }
    if let Some(text) = pdf_text(&sig.join("report-signed.pdf")) {
        assert!(text.contains("SIGNED") && text.contains(&fp), "{text}");
    }
    // Every rendered file is listed with its real SHA-256.
    let list = std::fs::read_to_string(sig.join("report-signed.sha256")).unwrap();
    for name in [
        "report-signed.pdf",
        "report-signed.html",
        "report-signed.md",
    ] {
        let line = list
            .lines()
            .find(|l| l.ends_with(&format!("  signatures/{name}")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"));
        let (h, _) = medgate::hash::sha256_file(&sig.join(name)).unwrap();
        assert!(line.starts_with(&h), "{line}");
    }
    // The bundle still verifies as signed: the new files are outside SHA256SUMS.
    let problems = medgate::trace::bundle::check_sha256sums(dir.path()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}
