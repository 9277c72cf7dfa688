//! Crafted files never panic a reader: every committed corpus seed (tests/fixtures/fuzz,
//! tests/fixtures/dicom/files, tests/fixtures/jpeg) replayed as is, then mutated by proptest (byte flips,
//! insertions, truncations). The property is only "returns, Ok or Err"; a panic fails.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn seeds(dir: &str) -> Vec<Vec<u8>> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{dir}: no seeds");
    out.into_iter().map(|(_, b)| b).collect()
}

/// A mutation of one of `seeds`: pick a seed, then apply up to 8 byte edits.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (
        0..n,
        proptest::collection::vec((0u8..3, any::<usize>(), any::<u8>()), 0..8),
    )
        .prop_map(move |(i, edits)| {
            let mut b = seeds[i].clone();
            for (kind, at, byte) in edits {
                let at = if b.is_empty() { 0 } else { at % (b.len() + 1) };
                match kind {
                    0 if at < b.len() => b[at] ^= byte | 1,
                    1 => b.insert(at, byte),
                    _ => b.truncate(at),
                }
            }
            b
        })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_202),
        ..ProptestConfig::default()
    }
}

fn protocol(bytes: &[u8]) {
    let _ = medgate::protocol::parse_protocol("fuzz.yaml", &String::from_utf8_lossy(bytes));
}

fn sums(bytes: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("evidence.json"), "{}").unwrap();
    std::fs::write(d.path().join("SHA256SUMS"), bytes).unwrap();
    let _ = medgate::trace::bundle::check_sha256sums(d.path());
}

fn ledger(bytes: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("LEDGER.jsonl");
    std::fs::write(&p, bytes).unwrap();
    if let Ok(e) = medgate::trace::ledger::read(&p) {
        let _ = medgate::trace::ledger::verify(&e);
        if let Some(first) = e.first() {
            let _ = medgate::trace::ledger::check_anchor(
                &e,
                &medgate::trace::ledger::LedgerAnchor::of(first),
            );
        }
    }
    // Either record kind, as `medgate ledger` reads it.
    use medgate::trace::ledger::{LedgerRecord, MonitorEntry, read_chain, verify};
    if let Ok(e) = read_chain::<LedgerRecord>(&p) {
        let _ = verify(&e);
    }
    if let Ok(e) = read_chain::<MonitorEntry>(&p) {
        let _ = verify(&e);
    }
}

fn journal(bytes: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("journal.jsonl");
    std::fs::write(&p, bytes).unwrap();
    let h = medgate::harness::JournalHeader {
        medgate_journal: 1,
        protocol: "VP-1".into(),
        model_sha256: "m".into(),
        task_sha256: "t".into(),
        settings_sha256: "s".into(),
    };
    let _ = medgate::harness::journal::Journal::open(&p, &h);
}

fn evidence(bytes: &[u8]) {
    let _ = serde_json::from_slice::<medgate::trace::Evidence>(bytes);
}

fn manifest(bytes: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("manifest.csv"), bytes).unwrap();
    let _ = medgate::golden::Manifest::read(d.path(), Path::new("manifest.csv"));
}

fn openai(bytes: &[u8]) {
    let pos = regex::Regex::new("(?i)^\\W*yes").unwrap();
    let neg = regex::Regex::new("(?i)^\\W*no").unwrap();
    let text = String::from_utf8_lossy(bytes);
    let _ = medgate::model::openai::parse_answer(&text, &pos, &neg);
    if let Ok(serde_json::Value::Array(tokens)) = serde_json::from_slice(bytes) {
        let _ = medgate::model::openai::score_from_logprobs(&tokens, &pos, &neg);
    }
}

fn dicom(bytes: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.dcm");
    std::fs::write(&p, bytes).unwrap();
    let _ = medgate::golden::image::load_image(&p);
}

fn jpeg(bytes: &[u8]) {
    let _ = medgate::golden::jpeg::decode(bytes, 1 << 20);
}

/// The JPEG streams of tests/fixtures/jpeg (Baseline: grey, 4:4:4, 4:2:2, 4:2:0, restarts).
fn jpeg_seeds() -> Vec<Vec<u8>> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg");
    let mut p: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    p.sort();
    assert!(!p.is_empty());
    p.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The evidence corpus also gets a full, valid record to mutate.
fn evidence_seeds() -> Vec<Vec<u8>> {
    let mut s = seeds("tests/fixtures/fuzz/evidence");
    s.push(serde_json::to_vec(&medgate::testing::sample::sample_evidence()).unwrap());
    s
}

/// The smallest committed DICOM files (the large ones would make each case slow).
fn dicom_seeds() -> Vec<Vec<u8>> {
    let mut s = seeds("tests/fixtures/dicom/files");
    s.sort_by_key(|b| b.len());
    s.truncate(3);
    s
}

macro_rules! fuzz {
    ($name:ident, $reader:ident, $seeds:expr) => {
        #[test]
        fn $name() {
            for s in $seeds {
                $reader(&s);
            }
            proptest!(config(), |(b in mutated($seeds))| {
                $reader(&b);
            });
        }
    };
}

fuzz!(
    protocol_reader_never_panics,
    protocol,
    seeds("tests/fixtures/fuzz/protocol")
);
fuzz!(
    sha256sums_reader_never_panics,
    sums,
    seeds("tests/fixtures/fuzz/sha256sums")
);
fuzz!(
    ledger_reader_never_panics,
    ledger,
    seeds("tests/fixtures/fuzz/ledger")
);
fuzz!(
    journal_reader_never_panics,
    journal,
    seeds("tests/fixtures/fuzz/journal")
);
fuzz!(evidence_reader_never_panics, evidence, evidence_seeds());
fuzz!(
    manifest_reader_never_panics,
    manifest,
    seeds("tests/fixtures/fuzz/manifest")
);
fuzz!(
    openai_reply_reader_never_panics,
    openai,
    seeds("tests/fixtures/fuzz/openai")
);
fuzz!(dicom_reader_never_panics, dicom, dicom_seeds());
fuzz!(jpeg_decoder_never_panics, jpeg, jpeg_seeds());
