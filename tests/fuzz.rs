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

/// Seed production logs for the monitor's reader (CSV and JSON lines, with a bad row of each
/// kind: no case ID, another model, a bad timestamp, a bad score, a bad label, a duplicate).
fn log_seeds() -> Vec<Vec<u8>> {
    let m = "ab".repeat(32);
    let csv = format!(
        "timestamp,case_id,score,label,model_sha256,site\n\
         1772409600,C1,0.25,0,{m},site-A\n\
         2026-03-02T08:00:00Z,C2,0.75,1,{m},\"site, B\"\n\
         1772409700,,0.5,,{m},site-A\n\
         1772409800,C3,0.5,,{},site-A\n\
         soon,C4,0.5,,{m},site-A\n\
         1772409900,C5,high,1,{m},site-A\n\
         1772410000,C6,0.1,2,{m},\n\
         1772410000,C1,0.9,1,{m},site-C\n",
        "cd".repeat(32)
    );
    let jsonl = format!(
        "{{\"timestamp\":\"2026-03-02T08:00:00Z\",\"case_id\":\"J1\",\"score\":0.3,\"model_sha256\":\"{m}\",\"site\":\"A\"}}\n\
         {{\"timestamp\":1772409600,\"case_id\":\"J2\",\"answer\":\"yes\",\"label\":1,\"model_sha256\":\"{m}\"}}\n\
         {{\"timestamp\":1772409601,\"case_id\":\"J3\",\"answer\":\"maybe\",\"model_sha256\":\"{m}\",\"site\":null}}\n"
    );
    vec![csv.into_bytes(), jsonl.into_bytes()]
}

/// Reads a mutated log as CSV or JSON lines: Ok or Err, never a panic; and when it reads, every
/// row is accounted for (accepted or excluded with a reason, never dropped).
fn monitor_log(bytes: &[u8], jsonl: bool) -> Option<medgate::monitor::log::LogRead> {
    use medgate::monitor::log::{LogSpec, read_logs};
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(if jsonl { "log.jsonl" } else { "log.csv" });
    std::fs::write(&f, bytes).unwrap();
    let spec = LogSpec {
        columns: Default::default(),
        attributes: vec!["site".into()],
        required_attributes: vec![],
        model_sha256: Some("ab".repeat(32)),
        threshold: 0.5,
        answer_positive: "yes".into(),
        answer_negative: "no".into(),
    };
    if let Ok(r) = read_logs(&[f], &spec, &[]) {
        let excluded: u64 = r.excluded.values().sum();
        assert_eq!(r.rows.len() as u64 + excluded, r.rows_read, "{r:?}");
        for row in &r.rows {
            assert_eq!(r.attrs(row).len(), 1);
        }
        return Some(r);
    }
    None
}

#[test]
fn monitor_log_seeds_are_read_and_every_row_accounted_for() {
    let s = log_seeds();
    // CSV: 8 rows; no case ID, another model, a bad timestamp, a bad score and the repeated C1
    // are excluded; C6 is kept with its bad label set aside.
    let csv = monitor_log(&s[0], false).expect("the CSV seed reads");
    assert_eq!((csv.rows_read, csv.rows.len()), (8, 3));
    assert_eq!(csv.set_aside.values().sum::<u64>(), 1);
    let jsonl = monitor_log(&s[1], true).expect("the JSON-lines seed reads");
    assert_eq!((jsonl.rows_read, jsonl.rows.len()), (3, 3));
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn mutated_monitor_logs_never_panic(b in mutated(log_seeds()), jsonl in any::<bool>()) {
        let _ = monitor_log(&b, jsonl);
    }
}
