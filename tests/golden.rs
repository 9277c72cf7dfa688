//! Golden-set integration tests: lock, verify, tampering, path safety, de-identification,
//! image loading and the demo generator, through the binary and the library.

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::VR;
use dicom_dictionary_std::tags;
use medgate::demo::dicom::{DicomSpec, write_dicom};
use medgate::golden::image::load_image;
use medgate::golden::{GoldenSet, LockOptions, lock_set, verify_set};
use medgate::protocol::GoldenSetSpec;
use medgate::world::FixedWorld;

fn medgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .args(args)
        .env("MEDGATE_USER", "tester")
        .output()
        .expect("run medgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small demo set (24 cases, cases 10 and 20 as DICOM) in a fresh temp dir.
fn demo_set(locked: bool) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("set");
    medgate::demo::write_demo_set(&dir, 24, 5, 10).unwrap();
    if locked {
        lock_set(&dir, &LockOptions::new(&dir), &FixedWorld::default()).unwrap();
    }
    (t, dir)
}

fn spec(dir: &Path) -> GoldenSetSpec {
    GoldenSetSpec {
        path: dir.to_path_buf(),
        lock: "LOCK".into(),
        manifest: "manifest.csv".into(),
        case_id_column: "case_id".into(),
        label_column: "finding".into(),
        image_column: "image".into(),
        frames: Default::default(),
        voi: Default::default(),
    }
}

#[test]
fn lock_then_verify_is_clean() {
    let (_t, dir) = demo_set(false);
    let (rc, out, err) = medgate(&["lock", s(&dir), "--note", "first lock"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("26 files") && out.contains("24 cases"),
        "{out}"
    );
    let lock = std::fs::read_to_string(dir.join("LOCK")).unwrap();
    assert!(lock.contains("locked_by: tester\n"));
    assert!(lock.contains("note: first lock\n"));
    assert!(lock.contains("deid_screen: pass\n"));
    let (rc, out, err) = medgate(&["verify-set", s(&dir), "--format", "json"]);
    assert_eq!(rc, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["intact"], true);
    assert_eq!(v["files"], 26);
    assert_eq!(v["root_hash"], v["lock_root_hash"]);
    // The root in the LOCK is the documented hash over its own file lines.
    let l = medgate::golden::read_lock(&dir.join("LOCK")).unwrap();
    let mut text = String::new();
    for f in &l.files {
        let (h, size) = medgate::hash::sha256_file(&dir.join(&f.path)).unwrap();
        assert_eq!((h.as_str(), size), (f.sha256.as_str(), f.size));
        text.push_str(&format!("{}\0{}\0{}\n", f.path, f.size, f.sha256));
    }
    assert_eq!(l.root_hash, medgate::hash::sha256_hex(text.as_bytes()));
    let pos = std::fs::read_to_string(dir.join("manifest.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|r| r.split(',').nth(2) == Some("1"))
        .count() as u64;
    assert_eq!(l.prevalence["finding"].positive, pos);
    assert_eq!(l.prevalence["finding"].total, 24);
}

#[test]
fn flipping_one_byte_in_any_file_is_caught_by_path() {
    let (_t, dir) = demo_set(true);
    for rel in [
        "manifest.csv",
        "DATASHEET.md",
        "images/cxr-00003.png",
        "images/cxr-00010.dcm",
    ] {
        let p = dir.join(rel);
        let orig = std::fs::read(&p).unwrap();
        let mut bytes = orig.clone();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        std::fs::write(&p, &bytes).unwrap();
        let (rc, out, _) = medgate(&["verify-set", s(&dir)]);
        assert_eq!(rc, 2, "{rel}");
        assert_eq!(out.trim(), format!("changed: {rel}"));
        // The library reports the same, and GoldenSet::open refuses naming the file.
        let r = verify_set(&dir, &dir.join("LOCK")).unwrap();
        assert_eq!(r.changed.len(), 1);
        let e = GoldenSet::open(&spec(&dir), Path::new("."), &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains(&format!("changed: {rel}")), "{e}");
        std::fs::write(&p, &orig).unwrap();
    }
    assert_eq!(medgate(&["verify-set", s(&dir)]).0, 0);
}

#[test]
fn adding_deleting_and_renaming_are_named() {
    let (_t, dir) = demo_set(true);
    std::fs::write(dir.join("images/extra.png"), b"x").unwrap();
    let (rc, out, _) = medgate(&["verify-set", s(&dir)]);
    assert_eq!((rc, out.trim()), (2, "added: images/extra.png"));
    std::fs::remove_file(dir.join("images/extra.png")).unwrap();

    std::fs::remove_file(dir.join("images/cxr-00004.png")).unwrap();
    let (rc, out, _) = medgate(&["verify-set", s(&dir)]);
    assert_eq!((rc, out.trim()), (2, "missing: images/cxr-00004.png"));

    std::fs::rename(
        dir.join("images/cxr-00005.png"),
        dir.join("images/renamed.png"),
    )
    .unwrap();
    let (rc, out, _) = medgate(&["verify-set", s(&dir), "--format", "json"]);
    assert_eq!(rc, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(v["added"], serde_json::json!(["images/renamed.png"]));
    assert_eq!(
        v["missing"],
        serde_json::json!(["images/cxr-00004.png", "images/cxr-00005.png"])
    );

    // Ledger files beside the data are not part of the set.
    let (_t2, dir2) = demo_set(true);
    std::fs::write(dir2.join("LEDGER.jsonl"), b"{}\n").unwrap();
    assert_eq!(medgate(&["verify-set", s(&dir2)]).0, 0);
}

#[test]
fn lock_refuses_to_overwrite_without_force_and_keeps_history() {
    let (_t, dir) = demo_set(true);
    let first = medgate::golden::read_lock(&dir.join("LOCK")).unwrap();
    let (rc, _, err) = medgate(&["lock", s(&dir)]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    // New content that still decodes (the lock's decoding pre-flight refuses garbage).
    let png = dir.join("images/cxr-00001.png");
    let mut im = image::open(&png).unwrap().to_luma8();
    let p0 = im.get_pixel(0, 0)[0];
    im.put_pixel(0, 0, image::Luma([p0 ^ 1]));
    im.save(&png).unwrap();
    let (rc, _, err) = medgate(&["lock", s(&dir), "--force", "--note", "relabel"]);
    assert_eq!(rc, 0, "{err}");
    let second = medgate::golden::read_lock(&dir.join("LOCK")).unwrap();
    assert_ne!(second.root_hash, first.root_hash);
    assert_eq!(second.history.len(), 1);
    assert!(second.history[0].contains(&format!("root {}", first.root_hash)));
    assert_eq!(medgate(&["verify-set", s(&dir)]).0, 0);
}

fn write_manifest(dir: &Path, rows: &[(&str, &str, &str)]) {
    let mut t = String::from("case_id,image,finding,site\n");
    for (id, img, label) in rows {
        t.push_str(&format!("{id},{img},{label},A\n"));
    }
    std::fs::write(dir.join("manifest.csv"), t).unwrap();
}

#[test]
fn path_escapes_duplicates_and_missing_images_are_rejected() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("set");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(t.path().join("outside.png"), b"secret").unwrap();
    std::fs::write(dir.join("images/a.png"), b"aaa").unwrap();
    std::fs::write(dir.join("images/b.png"), b"aaa").unwrap(); // same content as a.png
    std::fs::write(dir.join("images/c.png"), b"ccc").unwrap();
    std::os::unix::fs::symlink(t.path().join("outside.png"), dir.join("images/link.png")).unwrap();
    write_manifest(
        &dir,
        &[
            ("c1", "images/a.png", "1"),
            ("c2", "../outside.png", "0"),
            ("c3", "/etc/passwd", "0"),
            ("c1", "images/c.png", "0"),
            ("c5", "images/b.png", "1"),
            ("c6", "images/gone.png", "0"),
        ],
    );
    // The outside symlink is refused while listing the files.
    let (rc, _, err) = medgate(&["lock", s(&dir)]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("images/link.png") && err.contains("outside the golden set"),
        "{err}"
    );
    std::fs::remove_file(dir.join("images/link.png")).unwrap();
    let (rc, _, err) = medgate(&["lock", s(&dir)]);
    assert_eq!(rc, 2, "{err}");
    for want in [
        "manifest.csv:3:1: case `c2`: `../outside.png` escapes the set",
        "manifest.csv:4:1: case `c3`: `/etc/passwd` is absolute",
        "manifest.csv:5:1: duplicate case ID `c1` (first on line 2)",
        "manifest.csv:6:1: case `c5`: image `images/b.png` has the same content as `images/a.png`",
        "manifest.csv:7:1: case `c6`: image `images/gone.png` is missing",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    assert!(!dir.join("LOCK").exists());
}

fn gray_spec(pixels: Vec<u16>, attributes: Vec<(dicom_core::Tag, VR, String)>) -> DicomSpec {
    DicomSpec {
        width: 2,
        height: 2,
        pixels,
        bits_allocated: 16,
        bits_stored: 12,
        photometric: "MONOCHROME2".into(),
        attributes,
        sop_instance_uid: medgate::demo::dicom::uid_from("test"),
    }
}

#[test]
fn a_dicom_with_a_patient_name_fails_the_screen_unless_waived() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("set");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    write_dicom(
        &dir.join("images/p.dcm"),
        &gray_spec(
            vec![0, 1, 2, 3],
            vec![
                (tags::PATIENT_NAME, VR::PN, "Doe^Jane".into()),
                (tags::PATIENT_ID, VR::LO, "".into()),
                (tags::BURNED_IN_ANNOTATION, VR::CS, "YES".into()),
            ],
        ),
    )
    .unwrap();
    write_manifest(&dir, &[("c1", "images/p.dcm", "1")]);
    let (rc, _, err) = medgate(&["lock", s(&dir)]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("images/p.dcm") && err.contains("PatientName"),
        "{err}"
    );
    assert!(
        !err.contains("PatientID"),
        "an empty attribute is not a finding: {err}"
    );
    assert!(err.contains("BurnedInAnnotation is YES"), "{err}");
    assert!(!err.contains("Doe"), "values must not be echoed: {err}");
    assert!(!dir.join("LOCK").exists());
    let (rc, _, err) = medgate(&["lock", s(&dir), "--waiver", "test fixture, synthetic name"]);
    assert_eq!(rc, 0, "{err}");
    let lock = std::fs::read_to_string(dir.join("LOCK")).unwrap();
    assert!(lock.contains("deid_screen: waived\n"));
    assert!(
        lock.contains("waiver: test fixture, synthetic name (2 finding(s))\n"),
        "{lock}"
    );
}

#[test]
fn manifest_identifier_columns_fail_the_screen() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("set");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("images/a.png"), b"a").unwrap();
    std::fs::write(
        dir.join("manifest.csv"),
        "case_id,image,finding,MRN,seen\nc1,images/a.png,1,12345,1961-07-04\n",
    )
    .unwrap();
    let (rc, _, err) = medgate(&["lock", s(&dir)]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("column `MRN` is named like a direct identifier"),
        "{err}"
    );
    assert!(
        err.contains("column `seen` holds values that look like a full date"),
        "{err}"
    );
    assert!(!err.contains("1961"), "{err}");
}

#[test]
fn dicom_loader_applies_rescale_window_and_monochrome1() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("a.dcm");
    // Rescale y = 2x - 100, then window c = 100, w = 201 (LINEAR): (y - 99.5)/200 + 0.5.
    let attrs = vec![
        (tags::RESCALE_SLOPE, VR::DS, "2".into()),
        (tags::RESCALE_INTERCEPT, VR::DS, "-100".into()),
        (tags::WINDOW_CENTER, VR::DS, "100".into()),
        (tags::WINDOW_WIDTH, VR::DS, "201".into()),
    ];
    write_dicom(&p, &gray_spec(vec![0, 50, 100, 150], attrs.clone())).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!((img.width, img.height, img.channels), (2, 2, 1));
    let expect = |x: f64| {
        let y = 2.0 * x - 100.0;
        ((y - 99.5) / 200.0 + 0.5).clamp(0.0, 1.0)
    };
    for (v, x) in img.data.iter().zip([0.0, 50.0, 100.0, 150.0]) {
        assert!(
            (f64::from(*v) - expect(x)).abs() < 1e-6,
            "{v} vs {}",
            expect(x)
        );
    }
    // MONOCHROME1: the same values, inverted.
    let mut spec = gray_spec(vec![0, 50, 100, 150], attrs);
    spec.photometric = "MONOCHROME1".into();
    write_dicom(&p, &spec).unwrap();
    let inv = load_image(&p).unwrap();
    for (a, b) in inv.data.iter().zip(&img.data) {
        assert!((a + b - 1.0).abs() < 1e-6);
    }
    // No window: min-max over the image.
    write_dicom(&p, &gray_spec(vec![10, 20, 30, 50], vec![])).unwrap();
    assert_eq!(load_image(&p).unwrap().data, vec![0.0, 0.25, 0.5, 1.0]);
    // Unreadable images name the file.
    std::fs::write(t.path().join("bad.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let e = load_image(&t.path().join("bad.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.png"), "{e}");
}

#[test]
fn demo_dicom_cases_load_like_their_png_pixels() {
    let (_t, dir) = demo_set(false);
    let dcm = load_image(&dir.join("images/cxr-00010.dcm")).unwrap();
    let case = medgate::demo::render_case(5, 10);
    assert_eq!((dcm.width, dcm.height, dcm.channels), (64, 64, 1));
    for (a, b) in dcm.data.iter().zip(case.image.as_raw()) {
        assert!((f64::from(*a) - f64::from(*b) / 255.0).abs() < 1e-6);
    }
    let png = load_image(&dir.join("images/cxr-00011.png")).unwrap();
    let case = medgate::demo::render_case(5, 11);
    let want: Vec<f32> = case
        .image
        .as_raw()
        .iter()
        .map(|&p| f32::from(p) / 255.0)
        .collect();
    assert_eq!(png.data, want);
}

#[test]
fn golden_set_open_reads_cases_and_checks_labels() {
    let (_t, dir) = demo_set(true);
    let attrs = vec!["sex".to_string(), "site".to_string()];
    let set = GoldenSet::open(&spec(&dir), Path::new("."), &attrs).unwrap();
    assert_eq!(set.cases.len(), 24);
    let c = &set.cases[10];
    assert_eq!(c.case_id, "cxr-00010");
    assert_eq!(c.image, PathBuf::from("images/cxr-00010.dcm"));
    assert_eq!(
        c.image_sha256,
        medgate::hash::sha256_file(&dir.join(&c.image)).unwrap().0
    );
    let demo = medgate::demo::render_case(5, 10);
    let img = set.load_image(c).unwrap();
    assert_eq!(img.data.len(), 64 * 64);
    assert!((f64::from(img.data[0]) - f64::from(demo.image.as_raw()[0]) / 255.0).abs() < 1e-6);
    assert_eq!(c.label, demo.label);
    assert_eq!(c.attributes["site"], demo.attributes["site"]);
    // A missing subgroup column is an input error naming it.
    let e = GoldenSet::open(&spec(&dir), Path::new("."), &["race".into()]).unwrap_err();
    assert!(e.to_string().contains("no column `race`"), "{e}");
    // A bad label names the row and case (re-lock the edited manifest first).
    let m = std::fs::read_to_string(dir.join("manifest.csv")).unwrap();
    let edited = m.replacen(
        "cxr-00002,images/cxr-00002.png,0,",
        "cxr-00002,images/cxr-00002.png,maybe,",
        1,
    );
    let edited = edited.replacen(
        "cxr-00002,images/cxr-00002.png,1,",
        "cxr-00002,images/cxr-00002.png,maybe,",
        1,
    );
    std::fs::write(dir.join("manifest.csv"), edited).unwrap();
    let mut o = LockOptions::new(&dir);
    o.force = true;
    lock_set(&dir, &o, &FixedWorld::default()).unwrap();
    let e = GoldenSet::open(&spec(&dir), Path::new("."), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("manifest.csv:4:1: case `cxr-00002`: label `finding` is `maybe`"),
        "{e}"
    );
}

#[test]
fn training_overlap_is_reported() {
    let (_t, dir) = demo_set(true);
    let train = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("images/cxr-00007.png"),
        train.path().join("t1.png"),
    )
    .unwrap();
    std::fs::write(train.path().join("t2.png"), b"other").unwrap();
    let (rc, out, _) = medgate(&["verify-set", s(&dir), "--training", s(train.path())]);
    assert_eq!(rc, 2);
    assert_eq!(
        out.trim(),
        "in training set: images/cxr-00007.png (= t1.png)"
    );
    std::fs::write(train.path().join("manifest.csv"), "image\nt2.png\n").unwrap();
    let (rc, _, _) = medgate(&[
        "verify-set",
        s(&dir),
        "--training",
        s(&train.path().join("manifest.csv")),
    ]);
    assert_eq!(rc, 0);
}

#[test]
fn demo_data_is_deterministic_for_a_seed() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    for (d, seed) in [(&a, "3"), (&b, "3"), (&c, "4")] {
        let (rc, _, err) = medgate(&[
            "demo-data",
            s(d),
            "--cases",
            "30",
            "--seed",
            seed,
            "--dicom-every",
            "7",
        ]);
        assert_eq!(rc, 0, "{err}");
    }
    let root = |d: &Path| {
        let files = medgate::golden::lock::hash_files(d, &d.join("LOCK")).unwrap();
        (files.len(), medgate::golden::lock::root_hash(&files))
    };
    assert_eq!(root(&a), root(&b));
    assert_eq!(root(&a).0, 32);
    assert_ne!(root(&a).1, root(&c).1);
    let (rc, out, _) = medgate(&["inspect", s(&a), "--format", "json"]);
    assert_eq!(rc, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cases"], 30);
    assert_eq!(v["formats"]["dicom"], 4);
    assert_eq!(v["formats"]["png"], 26);
    assert_eq!(v["dimensions"]["64x64x1"], 30);
}

#[test]
fn committed_demo_set_verifies_and_opens() {
    // The bundled set must stay intact and match its generator (regenerating it is a
    // deliberate, re-locked change).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden-sets/demo-cxr");
    let r = verify_set(&dir, &dir.join("LOCK")).unwrap();
    assert!(r.is_intact(), "{:?}", r.problems());
    assert_eq!(r.files, 1002);
    let set = GoldenSet::open(&spec(&dir), Path::new("."), &["sex".into(), "site".into()]).unwrap();
    assert_eq!(set.cases.len(), 1000);
    for i in [0u64, 1, 100, 999] {
        let demo = medgate::demo::render_case(20261128, i);
        let c = &set.cases[i as usize];
        assert_eq!(c.label, demo.label, "case {i}");
        assert_eq!(c.attributes["site"], demo.attributes["site"]);
        let img = set.load_image(c).unwrap();
        for (a, b) in img.data.iter().zip(demo.image.as_raw()) {
            assert!(
                (f64::from(*a) - f64::from(*b) / 255.0).abs() < 1e-6,
                "case {i}"
            );
        }
    }
}

#[test]
fn lock_refuses_undecodable_images_unless_waived() {
    let (_t, dir) = demo_set(false);
    std::fs::write(dir.join("images/cxr-00003.png"), b"not an image").unwrap();
    let (rc, _, err) = medgate(&["lock", s(&dir)]);
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("case `cxr-00003`") && err.contains("cannot be decoded"),
        "{err}"
    );
    let (rc, _, err) = medgate(&["inspect", s(&dir), "--decode"]);
    assert_eq!(rc, 2, "{err}");
    let (rc, _, err) = medgate(&[
        "lock",
        s(&dir),
        "--waive-undecodable",
        "case 3 excluded from analysis (CAPA-7)",
    ]);
    assert_eq!(rc, 0, "{err}");
    let lock = std::fs::read_to_string(dir.join("LOCK")).unwrap();
    assert!(
        lock.contains(
            "decode_preflight: waived: case 3 excluded from analysis (CAPA-7) (1 undecodable)"
        ),
        "{lock}"
    );
}

#[test]
fn inspect_decode_lists_the_voi_and_render_writes_the_model_input() {
    let (_t, dir) = demo_set(false);
    let (rc, out, err) = medgate(&["inspect", s(&dir), "--decode"]);
    assert_eq!(rc, 0, "{err}");
    // The demo's DICOM cases carry a full-range window; PNG cases have no DICOM facts.
    assert!(
        out.contains("ok   cxr-00010") && out.contains("VOI window C=2040.5 W=4081 LINEAR"),
        "{out}"
    );
    assert!(out.contains("Patient Identity Removed YES"), "{out}");
    assert!(
        out.contains("24 image(s): 24 decodable, 0 not decodable"),
        "{out}"
    );
    let png = dir.join("case.png");
    let (rc, out, err) = medgate(&[
        "inspect",
        s(&dir),
        "--render",
        "cxr-00010",
        "--out",
        s(&png),
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("wrote"), "{out}");
    // The PNG is the decoded model input: same pixels as the loader gives.
    let loaded = load_image(&dir.join("images/cxr-00010.dcm")).unwrap();
    let written = image::open(&png).unwrap().to_luma8();
    assert_eq!(written.width(), loaded.width);
    for (a, b) in written.as_raw().iter().zip(&loaded.data) {
        assert_eq!(*a, (b * 255.0).round() as u8);
    }
}
