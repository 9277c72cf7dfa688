//! The auditor's trust model (issue #11, `docs/threat-model.md`): every attack tried on
//! `medgate verify`, `run`, `report` and `sign` as a test, driving the real binary on a copy
//! of a demo bundle. Each forgery must fail with exit 1 naming the discrepancy, or the unsafe
//! operation must be refused; an honest bundle must still verify IDENTICAL and anchored.
//!
//! The bundles come from the self-test's small replay project (120 synthetic cases, locked
//! set, recorded predictions), so no model weights are needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_medgate");

fn medgate(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .env("MEDGATE_USER", "tester")
        .env("NO_COLOR", "1")
        .output()
        .expect("run medgate")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: medgate::selftest::e2e::DemoProject,
    bundle: PathBuf,
}

/// A project (its protocol edited by `edit` first) and its bundle, written by `medgate run`.
fn fixture_with(edit: impl Fn(&str) -> String) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let project =
        medgate::selftest::e2e::write_demo_project(&root, &medgate::world::FixedWorld::default())
            .unwrap();
    let text = std::fs::read_to_string(&project.protocol).unwrap();
    std::fs::write(&project.protocol, edit(&text)).unwrap();
    let bundle = root.join("bundle");
    let o = medgate(
        &[
            "run",
            project.protocol.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
        &root,
    );
    // AC-ST-02 is designed to fail: exit 1, bundle written.
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(bundle.join("evidence.json").is_file());
    Fixture {
        _tmp: tmp,
        root,
        project,
        bundle,
    }
}

fn fixture() -> Fixture {
    fixture_with(|t| t.to_string())
}

fn verify_json(bundle: &Path, extra: &[&str], cwd: &Path) -> (i32, Value) {
    let mut args = vec!["verify", bundle.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let o = medgate(&args, cwd);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", all(&o)));
    (code(&o), v)
}

fn copy_dir(from: &Path, to: &Path) {
    medgate::selftest::e2e::copy_dir(from, to).unwrap();
}

fn reseal(bundle: &Path) {
    medgate::trace::bundle::write_sha256sums(bundle).unwrap();
}

fn failed_checks(v: &Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn check_detail(v: &Value, name: &str) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .map(|c| c["detail"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn anchor_state(v: &Value, name: &str) -> String {
    v["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| a["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    let mut t = serde_json::to_string_pretty(v).unwrap();
    t.push('\n');
    std::fs::write(p, t).unwrap();
}

/// A jsondiff path (`$.a.b[2]["c d"]`) as a JSON pointer.
fn pointer(path: &str) -> String {
    let mut out = String::new();
    let s = path.strip_prefix('$').unwrap();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let j = s[i + 1..]
                    .find(['.', '['])
                    .map(|k| i + 1 + k)
                    .unwrap_or(s.len());
                out.push('/');
                out.push_str(&s[i + 1..j].replace('~', "~0").replace('/', "~1"));
                i = j;
            }
            b'[' => {
                let j = i + s[i..].find(']').unwrap();
                let inner = &s[i + 1..j];
                let key = if inner.starts_with('"') {
                    serde_json::from_str::<String>(inner).unwrap()
                } else {
                    inner.to_string()
                };
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
                i = j + 1;
            }
            _ => panic!("bad path {path}"),
        }
    }
    out
}

/// The attacker's loop: patch every value verify recomputes into evidence.json (verify's own
/// JSON output as the oracle), fix the run ID, re-render the reports and JUnit from the
/// forged evidence, and reseal, until verify of the bundle alone finds nothing.
fn forge_until_consistent(bundle: &Path, cwd: &Path) {
    for _ in 0..6 {
        let (_, v) = verify_json(bundle, &[], cwd);
        let evp = bundle.join("evidence.json");
        let mut ev = read_json(&evp);
        for d in v["discrepancies"].as_array().unwrap() {
            let ptr = pointer(d["path"].as_str().unwrap());
            if let Some(x) = ev.pointer_mut(&ptr) {
                *x = d["expected"].clone();
            }
        }
        let run_id = check_detail(&v, "run_id");
        if let Some(rest) = run_id.split("should be ").nth(1) {
            ev["run_id"] = rest.split(' ').next().unwrap().into();
        }
        write_json(&evp, &ev);
        rerender(bundle, cwd);
        reseal(bundle);
        let (c, v) = verify_json(bundle, &[], cwd);
        if c == 0 {
            return;
        }
        let _ = v;
    }
    let (_, v) = verify_json(bundle, &[], cwd);
    panic!("could not forge a consistent bundle: {v:#}");
}

/// Re-renders JUnit and the reports from the bundle's (forged) evidence.
fn rerender(bundle: &Path, cwd: &Path) {
    let typed: medgate::trace::Evidence =
        serde_json::from_value(read_json(&bundle.join("evidence.json"))).unwrap();
    std::fs::write(
        bundle.join("junit.xml"),
        medgate::report::junit::render(&typed),
    )
    .unwrap();
    let o = medgate(&["report", bundle.to_str().unwrap()], cwd);
    assert_eq!(code(&o), 0, "{}", all(&o));
}

/// Rewrites `protocol.yaml` with `edit` and records its new hash (and parse) in the evidence,
/// as an attacker would.
fn forge_protocol(bundle: &Path, edit: impl Fn(&str) -> String) {
    let p = bundle.join("protocol.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    let edited = edit(&text);
    assert_ne!(text, edited, "the edit changed nothing");
    std::fs::write(&p, &edited).unwrap();
    let evp = bundle.join("evidence.json");
    let mut ev = read_json(&evp);
    ev["protocol_file"]["sha256"] = medgate::hash::sha256_hex(edited.as_bytes()).into();
    let parsed = medgate::protocol::parse_protocol("protocol.yaml", &edited).unwrap();
    ev["protocol"] = serde_json::to_value(parsed).unwrap();
    write_json(&evp, &ev);
}

/// Flips the label of every false positive in `cases.parquet` (negative case, evaluated,
/// predicted positive: the fixture fails on specificity), returning their IDs.
fn flip_false_positives(bundle: &Path) -> Vec<String> {
    use polars::prelude::*;
    let path = bundle.join("cases.parquet");
    let df = medgate::table::read_table(&path).unwrap();
    let labels: Vec<bool> = df
        .column("label")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let preds: Vec<Option<bool>> = df
        .column("prediction")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .collect();
    let ids: Vec<String> = df
        .column("case_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    let mut flipped = Vec::new();
    let new: Vec<bool> = labels
        .iter()
        .zip(&preds)
        .zip(&ids)
        .map(|((&l, &p), id)| {
            if !l && p == Some(true) {
                flipped.push(id.clone());
                true
            } else {
                l
            }
        })
        .collect();
    let mut df = df;
    df.replace("label", Column::new("label".into(), new))
        .unwrap();
    medgate::table::write_table(&path, &mut df).unwrap();
    flipped
}

#[test]
fn an_honest_bundle_verifies_identical_and_anchored() {
    let f = fixture();
    let key = f.root.join("qa.key");
    assert_eq!(
        code(&medgate(
            &["keygen", "--out", key.to_str().unwrap()],
            &f.root
        )),
        0
    );
    let o = medgate(
        &[
            "sign",
            f.bundle.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--name",
            "Q. Reviewer",
            "--meaning",
            "reviewed",
        ],
        &f.root,
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let public = f.root.join("qa.key.pub");
    let gs = f.project.golden_set.to_str().unwrap();
    let proto = f.project.protocol.to_str().unwrap();
    let args = [
        "--golden-set",
        gs,
        "--protocol",
        proto,
        "--trusted-key",
        public.to_str().unwrap(),
        "--require-anchored",
    ];
    let (c, v) = verify_json(&f.bundle, &args, &f.root);
    assert_eq!(c, 0, "{v:#}");
    assert_eq!(v["internally_consistent"], true);
    assert_eq!(v["anchored"], true);
    for a in ["golden_set", "protocol", "signature", "ledger"] {
        assert_eq!(anchor_state(&v, a), "anchored", "{a}: {v:#}");
    }
    // Every rendering was compared.
    let checks = v["checks"].to_string();
    for r in [
        "rendering.junit.xml",
        "rendering.report.md",
        "ledger.anchor",
        "warnings",
    ] {
        assert!(checks.contains(r), "{r} not checked");
    }
    // The text output states both levels.
    let mut targs = vec!["verify", f.bundle.to_str().unwrap()];
    targs.extend_from_slice(&args);
    let o = medgate(&targs, &f.root);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        stdout(&o).contains("result: IDENTICAL: internally consistent and anchored"),
        "{}",
        stdout(&o)
    );
    // Without anchors: identical, but says it is not anchored, and --require-anchored fails.
    let o = medgate(&["verify", f.bundle.to_str().unwrap()], &f.root);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(stdout(&o).contains("NOT anchored"), "{}", stdout(&o));
    let o = medgate(
        &["verify", f.bundle.to_str().unwrap(), "--require-anchored"],
        &f.root,
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
}

/// Attack 1: the forged PASS. Labels of the false positives flipped in cases.parquet, the
/// protocol copy pointing at a manifest outside the golden set (and at a ledger that does not
/// exist), every recomputed value patched in with verify's own output as the oracle, the
/// reports re-rendered, SHA256SUMS rewritten.
#[test]
fn a_forged_pass_with_an_outside_manifest_does_not_verify_against_the_golden_set() {
    let f = fixture();
    let forged = f.root.join("forged");
    copy_dir(&f.bundle, &forged);
    let flipped = flip_false_positives(&forged);
    assert!(!flipped.is_empty());
    // The outside manifest holds the same flipped labels.
    let outside = f.root.join("x");
    std::fs::create_dir_all(&outside).unwrap();
    let manifest = std::fs::read_to_string(f.project.golden_set.join("manifest.csv")).unwrap();
    let mut lines: Vec<String> = manifest.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|h| *h == "finding").unwrap();
    for l in lines.iter_mut().skip(1) {
        let mut cols: Vec<String> = l.split(',').map(String::from).collect();
        if flipped.contains(&cols[0]) {
            cols[col] = "1".into();
        }
        *l = cols.join(",");
    }
    std::fs::write(outside.join("manifest.csv"), lines.join("\n") + "\n").unwrap();
    forge_protocol(&forged, |t| {
        t.replace(
            "  label_column: finding\n",
            "  label_column: finding\n  manifest: ../../x/manifest.csv\n",
        )
    });
    forge_until_consistent(&forged, &f.root);
    // Pointing the ledger at a file that does not exist (to hide the FAIL recorded there)
    // is a discrepancy even with no anchor at all.
    let noledger = f.root.join("noledger");
    copy_dir(&forged, &noledger);
    forge_protocol(&noledger, |t| {
        t.replace(
            "report:\n",
            "ledger:\n  path: no/such/LEDGER.jsonl\nreport:\n",
        )
    });
    rerender(&noledger, &f.root);
    reseal(&noledger);
    let (c, v) = verify_json(&noledger, &[], &f.root);
    assert_eq!(c, 1, "{v:#}");
    assert_eq!(failed_checks(&v), ["ledger.present"]);
    let ev = read_json(&forged.join("evidence.json"));
    assert_eq!(ev["verdict"], "PASS", "the forgery turned FAIL into PASS");

    // The bundle alone is consistent: that is all it can show, and verify says so.
    let (c, v) = verify_json(&forged, &["--require-anchored"], &f.root);
    assert_eq!(c, 1);
    assert_eq!(v["internally_consistent"], true);
    assert_eq!(v["anchored"], false);

    // Against the auditor's golden set: the outside manifest is refused, the set's own LOCKed
    // manifest is read, every flipped case is named, and the missing ledger is a discrepancy.
    let gs = f.project.golden_set.to_str().unwrap();
    let (c, v) = verify_json(&forged, &["--golden-set", gs], &f.root);
    assert_eq!(c, 1, "{v:#}");
    let bad = failed_checks(&v);
    assert!(bad.contains(&"golden_set.paths".to_string()), "{bad:?}");
    assert!(
        check_detail(&v, "golden_set.paths").contains("../../x/manifest.csv"),
        "{v:#}"
    );
    let cases: Vec<&str> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["case_id"].as_str().unwrap())
        .collect();
    for id in &flipped {
        assert!(cases.contains(&id.as_str()), "{id} not named");
    }
    assert_eq!(anchor_state(&v, "golden_set"), "failed");

    // Against the auditor's protocol: the copy is not theirs.
    let (c, v) = verify_json(
        &forged,
        &["--protocol", f.project.protocol.to_str().unwrap()],
        &f.root,
    );
    assert_eq!(c, 1);
    assert!(failed_checks(&v).contains(&"protocol.anchor".to_string()));
    assert_eq!(anchor_state(&v, "protocol"), "failed");
}

/// Attack 1b: a laxer bound and a consistently swapped model hash, patched in the same way.
#[test]
fn a_laxer_bound_or_a_swapped_model_hash_fails_against_the_auditors_protocol() {
    let f = fixture();
    let lax = f.root.join("lax");
    copy_dir(&f.bundle, &lax);
    forge_protocol(&lax, |t| t.replace("at_least: 0.95", "at_least: 0.5"));
    forge_until_consistent(&lax, &f.root);
    assert_eq!(read_json(&lax.join("evidence.json"))["verdict"], "PASS");
    let proto = f.project.protocol.to_str().unwrap();
    let (c, v) = verify_json(&lax, &["--protocol", proto], &f.root);
    assert_eq!(c, 1, "{v:#}");
    assert!(failed_checks(&v).contains(&"protocol.anchor".to_string()));
    let paths = v["discrepancies"].to_string();
    assert!(
        paths.contains("$.protocol.acceptance[1].at_least"),
        "{paths}"
    );
    assert!(
        paths.contains("$.verdict"),
        "recomputed with the auditor's protocol: {paths}"
    );

    // The model: pinned in the forged copy, the evidence and the journal header all agreeing.
    let swapped = f.root.join("swapped");
    copy_dir(&f.bundle, &swapped);
    let fake = "ab".repeat(32);
    forge_protocol(&swapped, |t| {
        t.replace(
            "  predictions: predictions.csv\n",
            &format!("  predictions: predictions.csv\n  sha256: \"{fake}\"\n"),
        )
    });
    let evp = swapped.join("evidence.json");
    let mut ev = read_json(&evp);
    let real = ev["model"]["sha256"].as_str().unwrap().to_string();
    ev["model"]["sha256"] = fake.clone().into();
    write_json(&evp, &ev);
    // The journal's run key and every case key, recomputed for the swapped hash.
    let jp = swapped.join("journal.jsonl");
    let j = std::fs::read_to_string(&jp).unwrap().replace(&real, &fake);
    let mut lines = j.lines();
    let header: medgate::harness::JournalHeader =
        serde_json::from_str(lines.next().unwrap()).unwrap();
    let mut out = serde_json::to_string(&header).unwrap() + "\n";
    for l in lines {
        let mut e: medgate::harness::JournalEntry = serde_json::from_str(l).unwrap();
        e.key = medgate::harness::case_key(&header, &e.result.image_sha256);
        out.push_str(&serde_json::to_string(&e).unwrap());
        out.push('\n');
    }
    std::fs::write(&jp, out).unwrap();
    forge_until_consistent(&swapped, &f.root);
    let (c, v) = verify_json(&swapped, &["--protocol", proto], &f.root);
    assert_eq!(c, 1, "{v:#}");
    assert!(failed_checks(&v).contains(&"protocol.anchor".to_string()));
    assert!(v["discrepancies"].to_string().contains("$.protocol.model"));
}

/// Attack 2: the reports and JUnit edited to say PASS on a FAIL evidence, SHA256SUMS rewritten.
#[test]
fn reports_edited_to_pass_are_caught_by_re_rendering() {
    let f = fixture();
    let b = f.root.join("edited");
    copy_dir(&f.bundle, &b);
    for name in ["report.md", "junit.xml"] {
        let p = b.join(name);
        let t = std::fs::read_to_string(&p).unwrap();
        let edited = t
            .replace("FAIL", "PASS")
            .replace("failures=\"1\"", "failures=\"0\"");
        assert_ne!(t, edited, "{name}");
        std::fs::write(&p, edited).unwrap();
    }
    reseal(&b);
    let (c, v) = verify_json(&b, &[], &f.root);
    assert_eq!(c, 1, "{v:#}");
    let bad = failed_checks(&v);
    assert!(bad.contains(&"rendering.report.md".to_string()), "{bad:?}");
    assert!(bad.contains(&"rendering.junit.xml".to_string()), "{bad:?}");
    // A file added to the bundle and sealed is named too.
    std::fs::write(b.join("report-summary.txt"), "PASS").unwrap();
    reseal(&b);
    let (_, v) = verify_json(&b, &[], &f.root);
    assert!(check_detail(&v, "bundle.contents").contains("report-summary.txt"));
}

/// Attack 3: signatures removed (and provenance edited) while the auditor names a trusted key;
/// a signature by an unknown key; control characters in a signer's name.
#[test]
fn signatures_are_required_with_a_trusted_key_and_unknown_keys_are_never_ok() {
    let f = fixture_with(|t| {
        t.replace(
            "report:\n  formats: [md]\n",
            "report:\n  formats: [md]\n  signatories:\n    - role: Approver\n      name: R. Approver\n      meaning: approved\n",
        )
    });
    let key = f.root.join("qa.key");
    let other = f.root.join("eve.key");
    for k in [&key, &other] {
        assert_eq!(
            code(&medgate(&["keygen", "--out", k.to_str().unwrap()], &f.root)),
            0
        );
    }
    let public = f.root.join("qa.key.pub");
    let b = f.bundle.to_str().unwrap();
    let sign = |bundle: &str, key: &Path, name: &str, meaning: &str| {
        let o = medgate(
            &[
                "sign",
                bundle,
                "--key",
                key.to_str().unwrap(),
                "--name",
                name,
                "--meaning",
                meaning,
            ],
            &f.root,
        );
        assert_eq!(code(&o), 0, "{}", all(&o));
    };
    sign(b, &key, "R. Approver", "approved");

    // Removed signatures with a trusted key: not "none, IDENTICAL".
    let stripped = f.root.join("stripped");
    copy_dir(&f.bundle, &stripped);
    std::fs::remove_dir_all(stripped.join("signatures")).unwrap();
    let evp = stripped.join("evidence.json");
    let mut ev = read_json(&evp);
    ev["provenance"]["user"] = "someone-else".into();
    write_json(&evp, &ev);
    reseal(&stripped);
    let (c, v) = verify_json(
        &stripped,
        &["--trusted-key", public.to_str().unwrap()],
        &f.root,
    );
    assert_eq!(c, 1, "{v:#}");
    assert!(failed_checks(&v).contains(&"signatures.trusted".to_string()));
    // The edited user is caught by the ledger entry (with the golden set's ledger at hand).
    let gs = f.project.golden_set.to_str().unwrap();
    let (_, v) = verify_json(&stripped, &["--golden-set", gs], &f.root);
    assert!(
        check_detail(&v, "ledger.entry").contains("someone-else"),
        "{v:#}"
    );

    // A signature by an unknown key, with an escape sequence in its name.
    let eve = f.root.join("eve-signed");
    copy_dir(&f.bundle, &eve);
    std::fs::remove_dir_all(eve.join("signatures")).unwrap();
    sign(
        eve.to_str().unwrap(),
        &other,
        "R. Approver\x1b[2K\rtrusted",
        "approved",
    );
    let o = medgate(
        &[
            "verify",
            eve.to_str().unwrap(),
            "--trusted-key",
            public.to_str().unwrap(),
        ],
        &f.root,
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.contains("[untrusted]") || out.contains("UNTRUSTED"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "raw escape printed: {out:?}");
    assert!(out.contains("\\u{1b}"), "{out}");
    // Without any trusted key it is reported untrusted, never ok, and not anchored.
    let (c, v) = verify_json(&eve, &[], &f.root);
    assert_eq!(c, 0);
    assert_eq!(v["signatures"][0]["trusted"], false);
    assert_eq!(anchor_state(&v, "signature"), "not_given");

    // --require-signature: the protocol's approver, signed with a trusted key.
    let (c, v) = verify_json(
        &f.bundle,
        &[
            "--trusted-key",
            public.to_str().unwrap(),
            "--require-signature",
            "approved",
        ],
        &f.root,
    );
    assert_eq!(c, 0, "{v:#}");
    let (c, v) = verify_json(
        &eve,
        &[
            "--trusted-key",
            public.to_str().unwrap(),
            "--require-signature",
            "Approver",
        ],
        &f.root,
    );
    assert_eq!(c, 1);
    assert!(failed_checks(&v).contains(&"signatures.required".to_string()));
}

/// Attack 4: a bundle whose protocol names a server and a secret makes `verify --rerun`
/// refuse, without a single connection to that server.
#[test]
fn rerun_never_uses_the_bundles_server_or_secret() {
    let f = fixture();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let b = f.root.join("server");
    copy_dir(&f.bundle, &b);
    forge_protocol(&b, |t| {
        t.replace(
            "model:\n  backend: replay\n  predictions: predictions.csv\n",
            &format!(
                "model:\n  backend: openai\n  base_urls: [\"{url}\"]\n  model: m\n  api_key_env: SECRET_TOKEN\ntask:\n  question: Is there a finding?\n"
            ),
        )
        .replacen("task:\n  kind: binary\n", "  kind: binary\n", 1)
    });
    reseal(&b);
    let o = Command::new(BIN)
        .args(["verify", b.to_str().unwrap(), "--rerun"])
        .current_dir(&f.root)
        .env("SECRET_TOKEN", "hunter2")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(all(&o).contains("refusing to re-run"), "{}", all(&o));
    assert!(all(&o).contains("SECRET_TOKEN"), "says why: {}", all(&o));
    assert!(!all(&o).contains("hunter2"));
    assert!(
        listener.accept().is_err(),
        "verify connected to the bundle's server"
    );
}

#[cfg(unix)]
mod paths {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Attack 5a: `report` into a bundle whose report.md or plots/ is a symlink.
    #[test]
    fn report_never_writes_through_a_symlink_in_the_bundle() {
        let f = fixture();
        let victim = f.root.join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        let b = f.root.join("linked");
        copy_dir(&f.bundle, &b);
        std::fs::remove_file(b.join("report.md")).unwrap();
        symlink(&victim, b.join("report.md")).unwrap();
        let o = medgate(&["report", b.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(all(&o).contains("symlink"), "{}", all(&o));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_file(b.join("report.md")).unwrap();

        let outside = f.root.join("outside-dir");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::remove_dir_all(b.join("plots")).unwrap();
        symlink(&outside, b.join("plots")).unwrap();
        let o = medgate(&["report", b.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(all(&o).contains("symlink"), "{}", all(&o));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    /// Attack 5b: `run --out DIR` with evidence.json symlinked; into a directory of user files;
    /// a protocol ID of `..`.
    #[test]
    fn run_writes_only_into_an_empty_dir_or_its_own_bundle() {
        let f = fixture();
        let proto = f.project.protocol.to_str().unwrap();
        let victim = f.root.join("victim.json");
        std::fs::write(&victim, "precious").unwrap();
        let b = f.root.join("linked");
        copy_dir(&f.bundle, &b);
        std::fs::remove_file(b.join("evidence.json")).unwrap();
        symlink(&victim, b.join("evidence.json")).unwrap();
        let o = medgate(&["run", proto, "--out", b.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(all(&o).contains("symlink"), "{}", all(&o));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

        let user = f.root.join("my-documents");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("report.md"), "my notes").unwrap();
        let o = medgate(&["run", proto, "--out", user.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(all(&o).contains("not empty"), "{}", all(&o));
        assert_eq!(
            std::fs::read_to_string(user.join("report.md")).unwrap(),
            "my notes"
        );
        assert!(!user.join("SHA256SUMS").exists());

        // A bundle of another protocol is refused; the same protocol's bundle is resumed.
        let other = f.root.join("other");
        copy_dir(&f.bundle, &other);
        let jp = other.join("journal.jsonl");
        let j =
            std::fs::read_to_string(&jp)
                .unwrap()
                .replacen("VP-SELFTEST-001", "VP-OTHER-002", 1);
        std::fs::write(&jp, j).unwrap();
        let o = medgate(&["run", proto, "--out", other.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(all(&o).contains("VP-OTHER-002"), "{}", all(&o));
        let o = medgate(
            &["run", proto, "--out", f.bundle.to_str().unwrap()],
            &f.root,
        );
        assert_eq!(code(&o), 1, "{}", all(&o));

        // Protocol ID `..`.
        let bad = f.root.join("dotdot.yaml");
        let t = std::fs::read_to_string(proto)
            .unwrap()
            .replace("protocol: VP-SELFTEST-001", "protocol: \"..\"");
        std::fs::write(&bad, t).unwrap();
        let o = medgate(&["check", bad.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(all(&o).contains("protocol ID"), "{}", all(&o));
    }

    /// Attack 5c: `sign` through a symlinked signatures/.
    #[test]
    fn sign_never_writes_through_a_symlinked_signatures_dir() {
        let f = fixture();
        let key = f.root.join("k.key");
        assert_eq!(
            code(&medgate(
                &["keygen", "--out", key.to_str().unwrap()],
                &f.root
            )),
            0
        );
        let outside = f.root.join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, f.bundle.join("signatures")).unwrap();
        let o = medgate(
            &[
                "sign",
                f.bundle.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--name",
                "J",
                "--meaning",
                "approved",
            ],
            &f.root,
        );
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    /// Attack 5d: SHA256SUMS entries with `..`, absolute paths or symlinks; a symlink loop.
    #[test]
    fn unsafe_sha256sums_entries_and_symlink_loops_are_discrepancies_not_reads() {
        let f = fixture();
        let secret = f.root.join("secret.txt");
        std::fs::write(&secret, "top secret").unwrap();
        let h = medgate::hash::sha256_hex(b"top secret");
        let b = f.root.join("unsafe");
        copy_dir(&f.bundle, &b);
        let mut sums = std::fs::read_to_string(b.join("SHA256SUMS")).unwrap();
        sums.push_str(&format!("{h}  ../secret.txt\n{h}  {}\n", secret.display()));
        std::fs::write(b.join("SHA256SUMS"), sums).unwrap();
        let (c, v) = verify_json(&b, &[], &f.root);
        assert_eq!(c, 1, "{v:#}");
        let files = v["files"].to_string();
        assert!(
            files.contains("../secret.txt") && files.contains("unsafe path"),
            "{files}"
        );
        assert!(files.contains("is absolute"), "{files}");

        // A symlink in the bundle, sealed by a forger (`sha256sum` follows it).
        let l = f.root.join("linked");
        copy_dir(&f.bundle, &l);
        symlink(&secret, l.join("notes.txt")).unwrap();
        let mut sums = std::fs::read_to_string(l.join("SHA256SUMS")).unwrap();
        sums.push_str(&format!("{h}  notes.txt\n"));
        std::fs::write(l.join("SHA256SUMS"), sums).unwrap();
        let (c, v) = verify_json(&l, &[], &f.root);
        assert_eq!(c, 1);
        assert!(v["files"].to_string().contains("symlink"), "{v:#}");

        // A symlink loop: reported, not walked (the command returns).
        let lp = f.root.join("loop");
        copy_dir(&f.bundle, &lp);
        std::fs::create_dir(lp.join("d")).unwrap();
        symlink(&lp, lp.join("d/again")).unwrap();
        let (c, v) = verify_json(&lp, &[], &f.root);
        assert_eq!(c, 1);
        assert!(v["files"].to_string().contains("d/again"), "{v:#}");
    }

    /// Attack 6: templates named inside the evidence, and a template directory holding a
    /// symlink to a private file.
    #[test]
    fn templates_never_come_from_inside_a_bundle_nor_through_symlinks() {
        let f = fixture();
        let b = f.root.join("tpl");
        copy_dir(&f.bundle, &b);
        let inside = b.join("templates");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("report.md"), "HIJACKED {{ r.run_id }}\n").unwrap();
        let evp = b.join("evidence.json");
        let mut ev = read_json(&evp);
        ev["protocol"]["report"]["templates"] = inside.display().to_string().into();
        write_json(&evp, &ev);
        let o = medgate(&["report", b.to_str().unwrap()], &f.root);
        assert_eq!(code(&o), 0, "{}", all(&o));
        assert!(
            !std::fs::read_to_string(b.join("report.md"))
                .unwrap()
                .contains("HIJACKED")
        );
        assert!(
            all(&o).contains("never taken from a path the bundle names"),
            "{}",
            all(&o)
        );
        let o = medgate(
            &[
                "report",
                b.to_str().unwrap(),
                "--templates",
                inside.to_str().unwrap(),
            ],
            &f.root,
        );
        assert_eq!(code(&o), 2, "{}", all(&o));

        let site = f.root.join("site");
        std::fs::create_dir_all(&site).unwrap();
        let secret = f.root.join("id_rsa");
        std::fs::write(&secret, "PRIVATE KEY").unwrap();
        symlink(&secret, site.join("report.md")).unwrap();
        let o = medgate(
            &[
                "report",
                f.bundle.to_str().unwrap(),
                "--templates",
                site.to_str().unwrap(),
            ],
            &f.root,
        );
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(
            !std::fs::read_to_string(f.bundle.join("report.md"))
                .unwrap()
                .contains("PRIVATE")
        );
    }

    /// Attack 7b: a second run into a bundle in use; a rerun into a signed bundle.
    #[test]
    fn one_run_per_bundle_and_signed_bundles_need_force() {
        let f = fixture();
        let proto = f.project.protocol.to_str().unwrap();
        let lock = medgate::trace::bundle::lock_bundle(&f.bundle).unwrap();
        let o = medgate(
            &["run", proto, "--out", f.bundle.to_str().unwrap()],
            &f.root,
        );
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(
            all(&o).contains(&format!("PID {}", std::process::id())),
            "{}",
            all(&o)
        );
        drop(lock);

        let key = f.root.join("k.key");
        assert_eq!(
            code(&medgate(
                &["keygen", "--out", key.to_str().unwrap()],
                &f.root
            )),
            0
        );
        let b = f.bundle.to_str().unwrap();
        let o = medgate(
            &[
                "sign",
                b,
                "--key",
                key.to_str().unwrap(),
                "--name",
                "J",
                "--meaning",
                "approved",
            ],
            &f.root,
        );
        assert_eq!(code(&o), 0, "{}", all(&o));
        let o = medgate(&["run", proto, "--out", b], &f.root);
        assert_eq!(code(&o), 2, "{}", all(&o));
        assert!(all(&o).contains("--force"), "{}", all(&o));
        assert!(f.bundle.join("signatures/001-j.json").is_file());
        let o = medgate(&["run", proto, "--out", b, "--force"], &f.root);
        assert_eq!(code(&o), 1, "{}", all(&o));
        assert!(
            f.bundle
                .join("signatures/superseded-1/001-j.json")
                .is_file()
        );
        let ev = read_json(&f.bundle.join("evidence.json"));
        assert!(
            ev["warnings"].to_string().contains("superseded-1"),
            "{ev:#}"
        );
        let (c, v) = verify_json(&f.bundle, &[], &f.root);
        assert_eq!(c, 0, "{v:#}");
        assert_eq!(v["signatures"].as_array().unwrap().len(), 0);
    }
}

/// Attack 8: edited warnings and provenance; a re-chained and a truncated ledger.
#[test]
fn warnings_provenance_and_the_ledger_are_checked() {
    let f = fixture();
    let gs = f.project.golden_set.to_str().unwrap();
    // A warning removed (the small-subgroup warning is recomputed) or one invented.
    let w = f.root.join("warnings");
    copy_dir(&f.bundle, &w);
    let evp = w.join("evidence.json");
    let mut ev = read_json(&evp);
    ev["warnings"] = serde_json::json!(["all good"]);
    write_json(&evp, &ev);
    reseal(&w);
    let (c, v) = verify_json(&w, &[], &f.root);
    assert_eq!(c, 1, "{v:#}");
    assert!(check_detail(&v, "warnings").contains("all good"), "{v:#}");

    // A release flag claimed on a run that was not one.
    let r = f.root.join("release");
    copy_dir(&f.bundle, &r);
    let evp = r.join("evidence.json");
    let mut ev = read_json(&evp);
    ev["provenance"]["release"] = true.into();
    write_json(&evp, &ev);
    reseal(&r);
    let (c, v) = verify_json(&r, &[], &f.root);
    assert_eq!(c, 1);
    assert!(failed_checks(&v).contains(&"provenance.release".to_string()));

    // The ledger: one more run appended, then the first entry edited and every hash
    // re-chained, and separately the ledger truncated to its first line.
    let o = medgate(
        &[
            "run",
            f.project.protocol.to_str().unwrap(),
            "--out",
            f.root.join("second").to_str().unwrap(),
        ],
        &f.root,
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let ledger = f.project.golden_set.join("LEDGER.jsonl");
    let original = std::fs::read_to_string(&ledger).unwrap();
    let mut entries: Vec<medgate::trace::ledger::LedgerEntry> = original
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    entries[0].verdict = "PASS".into();
    let mut prev = medgate::trace::ledger::GENESIS.to_string();
    let mut text = String::new();
    for e in &mut entries {
        e.prev_hash = prev.clone();
        let mut v = serde_json::to_value(&*e).unwrap();
        v.as_object_mut().unwrap().remove("hash");
        e.hash = medgate::hash::canonical_sha256(&v).unwrap();
        prev = e.hash.clone();
        text.push_str(&serde_json::to_string(&*e).unwrap());
        text.push('\n');
    }
    std::fs::write(&ledger, &text).unwrap();
    let o = medgate(&["ledger", gs, "--verify"], &f.root);
    assert_eq!(code(&o), 0, "the chain alone looks intact: {}", all(&o));
    let second = f.root.join("second");
    let (c, v) = verify_json(&second, &["--golden-set", gs], &f.root);
    assert_eq!(c, 1, "{v:#}");
    assert!(
        check_detail(&v, "ledger.anchor").contains("re-chained"),
        "{v:#}"
    );

    let first_line = original.lines().next().unwrap().to_string() + "\n";
    std::fs::write(&ledger, first_line).unwrap();
    let (c, v) = verify_json(&second, &["--golden-set", gs], &f.root);
    assert_eq!(c, 1);
    assert!(
        failed_checks(&v).contains(&"ledger.anchor".to_string()),
        "{v:#}"
    );
    std::fs::write(&ledger, &original).unwrap();
    let (c, v) = verify_json(&second, &["--golden-set", gs], &f.root);
    assert_eq!(c, 0, "{v:#}");
}

/// Attack 9: multi-byte characters in hash fields never panic verify, sign, run's journal
/// reader or `ledger --verify`.
#[test]
fn multibyte_hash_fields_never_panic() {
    let f = fixture();
    let b = f.root.join("utf8");
    copy_dir(&f.bundle, &b);
    let jp = b.join("journal.jsonl");
    let t = std::fs::read_to_string(&jp).unwrap();
    let mut lines: Vec<String> = t.lines().map(String::from).collect();
    let mut h: Value = serde_json::from_str(&lines[0]).unwrap();
    h["model_sha256"] = "ééééééééééééééé".into();
    lines[0] = h.to_string();
    std::fs::write(&jp, lines.join("\n") + "\n").unwrap();
    let evp = b.join("evidence.json");
    let mut ev = read_json(&evp);
    ev["golden_set"]["root_hash"] = "ŕŕŕŕŕŕŕŕŕŕŕŕŕŕ".into();
    write_json(&evp, &ev);
    reseal(&b);
    let gs = f.project.golden_set.to_str().unwrap();
    let o = medgate(
        &["verify", b.to_str().unwrap(), "--golden-set", gs],
        &f.root,
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    // run's journal reader on the same journal.
    let o = medgate(
        &[
            "run",
            f.project.protocol.to_str().unwrap(),
            "--out",
            b.to_str().unwrap(),
        ],
        &f.root,
    );
    assert_eq!(code(&o), 2, "{}", all(&o));
    assert!(!all(&o).contains("panicked"), "{}", all(&o));
    // ledger --verify on a multi-byte model hash.
    let ledger = f.project.golden_set.join("LEDGER.jsonl");
    let mut e: Value = serde_json::from_str(
        std::fs::read_to_string(&ledger)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    e["model_sha256"] = "ñññññññññññññññ".into();
    let lf = f.root.join("L.jsonl");
    std::fs::write(&lf, format!("{e}\n")).unwrap();
    let o = medgate(&["ledger", lf.to_str().unwrap(), "--verify"], &f.root);
    assert_eq!(code(&o), 1, "{}", all(&o));
}

/// A corrupt journal line in the middle keeps every valid entry, moves the line aside with
/// its line number, and warns.
#[test]
fn a_corrupt_journal_line_in_the_middle_is_moved_aside_not_everything_after_it() {
    let f = fixture();
    let jp = f.bundle.join("journal.jsonl");
    let t = std::fs::read_to_string(&jp).unwrap();
    let mut lines: Vec<String> = t.lines().map(String::from).collect();
    let n = lines.len();
    lines[5] = "{\"key\": \"torn".into();
    std::fs::write(&jp, lines.join("\n") + "\n").unwrap();
    let o = medgate(
        &[
            "run",
            f.project.protocol.to_str().unwrap(),
            "--out",
            f.bundle.to_str().unwrap(),
            "--format",
            "json",
        ],
        &f.root,
    );
    assert_eq!(code(&o), 1, "{}", all(&o));
    let s: Value = serde_json::from_str(&stdout(&o)).unwrap();
    // Only the damaged case was inferred again; every later entry was kept.
    assert_eq!(s["inferred"], 1, "{s:#}");
    assert_eq!(s["resumed"].as_u64().unwrap() as usize, n - 2);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("(line 6)"),
        "{}",
        all(&o)
    );
    let rejected = std::fs::read_to_string(f.bundle.join("journal.jsonl.rejected.jsonl")).unwrap();
    assert!(rejected.contains("\"line\":6"), "{rejected}");
    let (c, v) = verify_json(&f.bundle, &[], &f.root);
    assert_eq!(c, 0, "{v:#}");
}

/// The "done when": the committed demo (protocols/demo-cxr.yaml, the bundled CLIP and
/// the locked golden-sets/demo-cxr), run exactly as the README runs it, signed, verifies
/// IDENTICAL and anchored against the committed golden set, the committed protocol and the
/// signer's trusted key. The run happens in a copy of the three folders so that its audit
/// ledger lands in the copy, not in this checkout's runs/; the anchors are the committed
/// originals.
#[test]
fn the_committed_demo_bundle_verifies_identical_and_anchored() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    for dir in [
        "protocols/trace",
        "golden-sets/demo-cxr",
        "models/demo-cxr-clip",
    ] {
        copy_dir(&repo.join(dir), &root.join(dir));
    }
    std::fs::copy(
        repo.join("protocols/demo-cxr.yaml"),
        root.join("protocols/demo-cxr.yaml"),
    )
    .unwrap();
    let bundle = root.join("bundle");
    let o = medgate(
        &[
            "run",
            "protocols/demo-cxr.yaml",
            "--out",
            bundle.to_str().unwrap(),
        ],
        &root,
    );
    assert_eq!(code(&o), 0, "the demo passes all its criteria: {}", all(&o));
    let key = root.join("qa.key");
    assert_eq!(
        code(&medgate(&["keygen", "--out", key.to_str().unwrap()], &root)),
        0
    );
    let o = medgate(
        &[
            "sign",
            bundle.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--name",
            "Q. Reviewer",
            "--meaning",
            "approved for release",
        ],
        &root,
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let committed_set = repo.join("golden-sets/demo-cxr");
    let committed_protocol = repo.join("protocols/demo-cxr.yaml");
    let ledger = root.join("runs/LEDGER.jsonl");
    let public = root.join("qa.key.pub");
    let args = [
        "--golden-set",
        committed_set.to_str().unwrap(),
        "--protocol",
        committed_protocol.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
        "--trusted-key",
        public.to_str().unwrap(),
        "--require-anchored",
    ];
    let (c, v) = verify_json(&bundle, &args, &root);
    assert_eq!(c, 0, "{v:#}");
    assert_eq!(v["internally_consistent"], true, "{v:#}");
    assert_eq!(v["anchored"], true, "{v:#}");
    for a in ["golden_set", "protocol", "signature", "ledger"] {
        assert_eq!(anchor_state(&v, a), "anchored", "{a}: {v:#}");
    }
    assert!(failed_checks(&v).is_empty(), "{:?}", failed_checks(&v));
    // The case explorer's thumbnails were redrawn from the committed set and compared too.
    assert!(
        v["checks"].to_string().contains("rendering.report.html"),
        "report.html not compared"
    );
    // And the text verdict a QA reader sees.
    let mut targs = vec!["verify", bundle.to_str().unwrap()];
    targs.extend_from_slice(&args);
    let o = medgate(&targs, &root);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        stdout(&o).contains("result: IDENTICAL: internally consistent and anchored"),
        "{}",
        stdout(&o)
    );
}
