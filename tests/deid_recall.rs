//! Recall of the de-identification screen on a public corpus carrying identifiers.
//!
//! Corpus: the 74 public DICOM files of tests/fixtures/dicom/files (pydicom's test files
//! and pydicom-data, MIT). Ground truth: tests/fixtures/deid/expected.json, written by
//! tests/fixtures/deid/make_reference.py: every PS3.15 Table E.1-1 attribute (as
//! transcribed by dicom-anonymizer 2.1.0, UID-only and Retain Patient Characteristics rows
//! left out) that pydicom finds non-empty anywhere in each file. The figures printed here
//! are the ones quoted in golden-sets/README.md.

use std::collections::BTreeSet;
use std::path::Path;

use medgate::golden::deid::{identifying_attributes, screen_dicom};
use medgate::golden::pixels;

#[test]
fn screen_recall_on_the_public_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deid/expected.json")).unwrap())
            .unwrap();
    let (mut truth_pairs, mut hit_pairs, mut extra_pairs) = (0usize, 0usize, 0usize);
    let (mut files_with, mut files_flagged) = (0usize, 0usize);
    let mut missed = Vec::new();
    for (file, want) in v["files"].as_object().unwrap() {
        let want: BTreeSet<String> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        let path = root.join("dicom/files").join(file);
        let got: BTreeSet<String> = match pixels::open_header(&path) {
            Ok((obj, _)) => identifying_attributes(&obj)
                .0
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        truth_pairs += want.len();
        hit_pairs += want.intersection(&got).count();
        extra_pairs += got.difference(&want).count();
        for m in want.difference(&got) {
            missed.push(format!("{file} {m}"));
        }
        if !want.is_empty() {
            files_with += 1;
            if !screen_dicom(&path, file).is_empty() {
                files_flagged += 1;
            }
        }
    }
    let recall = hit_pairs as f64 / truth_pairs as f64;
    let old = v["old_screen_pairs_found"].as_u64().unwrap() as f64 / truth_pairs as f64;
    println!(
        "attribute recall {hit_pairs}/{truth_pairs} = {recall:.4} (previous 58-attribute screen {old:.4}); \
         files flagged {files_flagged}/{files_with}; {extra_pairs} findings pydicom does not see"
    );
    for m in &missed {
        println!("missed: {m}");
    }
    assert_eq!(
        files_flagged, files_with,
        "every file carrying identifiers is flagged"
    );
    assert!(recall >= 0.99, "attribute recall {recall}");
}
