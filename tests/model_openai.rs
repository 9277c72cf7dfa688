//! The `openai` backend against the real `medgate serve` binary (and, where a test needs to
//! see headers or script replies, a small in-test HTTP double), and the `replay` backend.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medgate::model::openai::OpenaiBackend;
use medgate::model::replay::ReplayBackend;
use medgate::model::{Answer, Backend, CaseInput, ScoreSource};
use medgate::protocol::{OpenaiSpec, ReplaySpec, TaskSpec};
use medgate::serve::{EQUIVOCAL_TEXT, ServeConfig, Server};
use medgate::testing::scorer::MeanIntensityScorer;
use medgate::world::FixedWorld;
use serde_json::json;

/// The binary under test. `MEDGATE_TEST_BIN` overrides it for machines where several
/// checkouts share one target directory (and so one `target/debug/medgate`).
fn medgate_bin() -> PathBuf {
    std::env::var_os("MEDGATE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_medgate")))
}

/// A `medgate serve` child process; killed with SIGTERM on drop.
struct ServeProcess {
    child: Child,
    base_url: String,
}

impl ServeProcess {
    fn start(args: &[&str]) -> ServeProcess {
        let mut child = Command::new(medgate_bin())
            .arg("serve")
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start medgate serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base_url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        ServeProcess { child, base_url }
    }

    /// Sends SIGTERM and returns the exit status and stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `n` uniform grey PNGs; image i has level `levels(i)`; returns the cases.
fn grey_cases(dir: &Path, n: usize) -> (Vec<CaseInput>, Vec<f64>) {
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for i in 0..n {
        let level = ((i * 37 + 11) % 256) as u8;
        let path = dir.join(format!("img{i:03}.png"));
        image::GrayImage::from_pixel(16, 16, image::Luma([level]))
            .save(&path)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        cases.push(CaseInput {
            case_id: format!("C{i:03}"),
            image_path: path,
            image_sha256: medgate::hash::sha256_hex(&bytes),
        });
        expected.push(f64::from(level) / 255.0);
    }
    (cases, expected)
}

fn spec(base_urls: &[String], model: &str) -> OpenaiSpec {
    spec_with_timeout(base_urls, model, 0.5)
}

fn spec_with_timeout(base_urls: &[String], model: &str, timeout_s: f64) -> OpenaiSpec {
    serde_json::from_value(json!({
        "base_urls": base_urls, "model": model, "seed": 1, "concurrency": 4,
        "timeout_s": timeout_s, "retries": 3
    }))
    .unwrap()
}

fn task() -> TaskSpec {
    serde_json::from_value(json!({
        "kind": "binary", "question": "Is there a pneumothorax? Answer yes or no.", "threshold": 0.5
    }))
    .unwrap()
}

fn backend(spec: &OpenaiSpec) -> OpenaiBackend {
    OpenaiBackend::new(spec, &task(), &FixedWorld::default())
        .unwrap()
        .with_backoff_base(Duration::from_millis(5))
}

#[test]
fn scores_from_serve_logprobs_match_the_pixels_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, expected) = grey_cases(tmp.path(), 20);
    let srv = ServeProcess::start(&["--test-scorer", "mean-intensity", "--threads", "4"]);
    let b = backend(&spec(std::slice::from_ref(&srv.base_url), "mean-intensity"));
    let out = b.predict_batch(&cases);
    assert_eq!(out.len(), cases.len());
    for (i, (r, want)) in out.iter().zip(&expected).enumerate() {
        let p = r.as_ref().unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(p.score_source, ScoreSource::Logprobs);
        assert!(
            (p.score - want).abs() < 1e-12,
            "case {i}: {} vs {want}",
            p.score
        );
        let want_answer = if *want >= 0.5 {
            Answer::Positive
        } else {
            Answer::Negative
        };
        assert_eq!(p.answer, want_answer);
        assert_eq!(p.raw, if *want >= 0.5 { "yes" } else { "no" });
        assert_eq!(p.attempts, 1);
    }
    let (status, err) = srv.terminate();
    assert!(status.success(), "serve exited with {status:?}: {err}");
    assert!(err.contains("stopped after 20 request(s)"), "{err}");
}

#[test]
fn serve_hosts_a_clip_checkpoint_with_the_same_scores_as_in_process() {
    use medgate::model::clip::ClipBackend;
    use medgate::protocol::{CandleClipSpec, Prompts};
    use rand::{Rng, SeedableRng};

    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("tiny-clip");
    let texts = ["a photo of a lesion", "a lesion", "a normal photo"];
    medgate::testing::checkpoint::write_random_checkpoint(
        &ckpt,
        &medgate::testing::checkpoint::tiny_test_arch(),
        texts,
        7,
    )
    .unwrap();
    // Seeded RGB noise, not square, so resizing and cropping run on the server too.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut cases = Vec::new();
    for i in 0..20 {
        let img = image::RgbImage::from_fn(40, 48, |_, _| {
            image::Rgb([rng.random(), rng.random(), rng.random()])
        });
        let path = tmp.path().join(format!("{i}.png"));
        img.save(&path).unwrap();
        cases.push(CaseInput {
            case_id: format!("{i}"),
            image_sha256: medgate::hash::sha256_hex(&std::fs::read(&path).unwrap()),
            image_path: path,
        });
    }
    let prompts = Prompts {
        positive: vec![texts[0].into(), texts[1].into()],
        negative: vec![texts[2].into()],
    };
    let spec = CandleClipSpec {
        path: ckpt.clone(),
        sha256: None,
        device: "cpu".into(),
        batch_size: 1,
        precision: "f32".into(),
    };
    let local = ClipBackend::load(&spec, &prompts, Path::new(".")).unwrap();
    let want: Vec<f64> = local
        .predict_batch(&cases)
        .into_iter()
        .map(|r| r.unwrap().score)
        .collect();
    let spread = want.iter().cloned().fold(f64::MIN, f64::max)
        - want.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        spread > 1e-4,
        "the random model scores every image alike ({want:?}): the test would prove little"
    );

    let ckpt_arg = ckpt.to_string_lossy().into_owned();
    let srv = ServeProcess::start(&[
        "--model",
        &ckpt_arg,
        "--prompts-positive",
        texts[0],
        "--prompts-positive",
        texts[1],
        "--prompts-negative",
        texts[2],
        "--threads",
        "2",
    ]);
    let b = backend(&spec_with_timeout(
        std::slice::from_ref(&srv.base_url),
        "tiny-clip",
        30.0,
    ));
    let out = b.predict_batch(&cases);
    assert_eq!(out.len(), 20);
    for (i, (r, w)) in out.iter().zip(&want).enumerate() {
        let p = r.as_ref().unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(p.score_source, ScoreSource::Logprobs);
        assert!(
            (p.score - w).abs() < 1e-6,
            "case {i}: served {} vs in-process {w}",
            p.score
        );
        assert_eq!(p.answer == Answer::Positive, p.score >= 0.5, "case {i}");
    }
    let (status, err) = srv.terminate();
    assert!(status.success(), "{status:?}: {err}");

    // The same model and prompts taken from a protocol file.
    let protocol = format!(
        "medgate_protocol: 1
protocol: VP-TEST-001
title: Serve test
version: \"1.0\"
intended_use: Testing.
model:
  backend: candle-clip
  path: tiny-clip
  batch_size: 1
task:
  kind: binary
  prompts:
    positive: [\"{}\", \"{}\"]
    negative: [\"{}\"]
  threshold: 0.5
golden_set:
  path: set
  label_column: label
acceptance: []
",
        texts[0], texts[1], texts[2]
    );
    let pfile = write(tmp.path(), "protocol.yaml", &protocol);
    let srv = ServeProcess::start(&["--protocol", &pfile.to_string_lossy()]);
    let b = backend(&spec_with_timeout(
        std::slice::from_ref(&srv.base_url),
        "tiny-clip",
        30.0,
    ));
    let out = b.predict_batch(&cases[..3]);
    for (r, w) in out.iter().zip(&want) {
        assert!((r.as_ref().unwrap().score - w).abs() < 1e-6);
    }
}

#[test]
fn serve_refuses_a_protocol_for_another_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let pfile = write(
        tmp.path(),
        "p.yaml",
        "medgate_protocol: 1
protocol: P
title: T
version: \"1\"
intended_use: U
model:
  backend: replay
  predictions: p.csv
task:
  kind: binary
  threshold: 0.5
golden_set:
  path: set
  label_column: label
acceptance: []
",
    );
    let out = Command::new(medgate_bin())
        .args(["serve", "--port", "0", "--protocol"])
        .arg(&pfile)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hosts candle-clip and candle-vlm models; this protocol's backend is replay"),
        "{err}"
    );
}

#[test]
fn chaos_loses_nothing_and_keeps_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, expected) = grey_cases(tmp.path(), 24);
    let srv = ServeProcess::start(&[
        "--test-scorer",
        "mean-intensity",
        "--threads",
        "8",
        "--chaos-fail-rate",
        "0.25",
        "--chaos-slow-rate",
        "0.1",
        "--chaos-garbage-rate",
        "0.15",
        "--chaos-slow-ms",
        "1500",
        "--chaos-seed",
        "42",
    ]);
    let b = backend(&spec(std::slice::from_ref(&srv.base_url), "mean-intensity"));
    let out = b.predict_batch(&cases);
    assert_eq!(out.len(), cases.len(), "a case was lost");
    let mut retried = 0;
    let mut failed = 0;
    for (i, (r, want)) in out.iter().zip(&expected).enumerate() {
        match r {
            Ok(p) => {
                // The right score in the right slot: order survived the retries.
                assert!(
                    (p.score - want).abs() < 1e-12,
                    "case {i}: {} vs {want}",
                    p.score
                );
                assert!((1..=4).contains(&p.attempts));
                retried += usize::from(p.attempts > 1);
            }
            Err(e) => {
                assert_eq!(e.attempts, 4, "case {i}: {e}");
                assert!(e.reason.contains("after 4 attempts"), "{}", e.reason);
                failed += 1;
            }
        }
    }
    // Half of all requests are faulty: with 24 cases, some must have been retried.
    assert!(retried + failed > 0);
    // Every request the server saw was one of the client's counted attempts (a request still
    // queued when the client timed out may never be taken, hence <=).
    let attempts: u32 = out
        .iter()
        .map(|r| r.as_ref().map_or_else(|e| e.attempts, |p| p.attempts))
        .sum();
    let (status, err) = srv.terminate();
    assert!(status.success(), "{err}");
    let served: u32 = err
        .split("stopped after ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {err:?}"));
    assert!(
        served > cases.len() as u32 && served <= attempts,
        "served {served}, attempts {attempts}"
    );
}

#[test]
fn equivocal_answers_are_recorded_verbatim() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, _) = grey_cases(tmp.path(), 5);
    let srv = ServeProcess::start(&[
        "--test-scorer",
        "mean-intensity",
        "--chaos-equivocal-rate",
        "1",
    ]);
    let b = backend(&spec(std::slice::from_ref(&srv.base_url), "mean-intensity"));
    for r in b.predict_batch(&cases) {
        let p = r.unwrap();
        assert_eq!(p.answer, Answer::Equivocal);
        assert_eq!(p.raw, EQUIVOCAL_TEXT);
        assert_eq!(p.score, 0.5);
        assert_eq!(p.score_source, ScoreSource::Parsed);
    }
}

#[test]
fn client_errors_are_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, _) = grey_cases(tmp.path(), 3);
    let srv = ServeProcess::start(&["--test-scorer", "mean-intensity"]);
    let b = backend(&spec(std::slice::from_ref(&srv.base_url), "no-such-model"));
    for r in b.predict_batch(&cases) {
        let e = r.unwrap_err();
        assert_eq!(e.attempts, 1);
        assert!(e.reason.contains("HTTP 404"), "{}", e.reason);
        assert!(e.reason.contains("no-such-model"), "{}", e.reason);
    }
}

#[test]
fn unreachable_server_fails_every_case_after_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, _) = grey_cases(tmp.path(), 2);
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = backend(&spec(&[format!("http://127.0.0.1:{port}/v1")], "m"));
    for r in b.predict_batch(&cases) {
        let e = r.unwrap_err();
        assert_eq!(e.attempts, 4);
        assert!(e.reason.contains("connection"), "{}", e.reason);
    }
}

#[test]
fn servers_share_one_queue_and_every_case_is_answered_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, expected) = grey_cases(tmp.path(), 40);
    let start = || {
        let cfg = ServeConfig {
            port: 0,
            threads: 4,
            model_id: "m".into(),
            ..Default::default()
        };
        Server::bind(cfg, Arc::new(MeanIntensityScorer))
            .unwrap()
            .spawn()
    };
    let (a, c) = (start(), start());
    let b = backend(&spec(&[a.base_url(), format!("{}/", c.base_url())], "m"));
    let out = b.predict_batch(&cases);
    for (r, want) in out.iter().zip(&expected) {
        assert!((r.as_ref().unwrap().score - want).abs() < 1e-12);
    }
    let (na, nc) = (a.stop().unwrap().requests, c.stop().unwrap().requests);
    // No fixed assignment: both servers took work from the shared queue, and no case was
    // sent twice.
    assert_eq!(na + nc, 40);
    assert!(na > 0 && nc > 0, "{na} / {nc}");
}

#[test]
fn a_failing_server_is_taken_out_of_rotation_and_its_cases_go_to_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, expected) = grey_cases(tmp.path(), 60);
    let healthy = Server::bind(
        ServeConfig {
            port: 0,
            threads: 4,
            model_id: "m".into(),
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    )
    .unwrap()
    .spawn();
    let failing = Server::bind(
        ServeConfig {
            port: 0,
            threads: 4,
            model_id: "m".into(),
            chaos: medgate::testing::chaos::Chaos {
                fail_rate: 1.0,
                ..Default::default()
            },
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    )
    .unwrap()
    .spawn();
    let b = backend(&spec(&[failing.base_url(), healthy.base_url()], "m"));
    let t0 = std::time::Instant::now();
    let out = b.predict_batch(&cases);
    let elapsed = t0.elapsed();
    // Every case answered (its failed attempts were retried on the healthy server) with the
    // score its pixels imply.
    for (r, want) in out.iter().zip(&expected) {
        let p = r.as_ref().unwrap();
        assert!((p.score - want).abs() < 1e-12);
    }
    let bad = failing.stop().unwrap().requests;
    let good = healthy.stop().unwrap().requests;
    assert_eq!(good, 60);
    // The failing server saw at most a first round of attempts per worker before it was
    // benched (4 workers; benched after BENCH_AFTER failures in a row), not a share of 60.
    let bound = 4 + medgate::model::openai::BENCH_AFTER as u64 + 4;
    assert!(
        bad <= bound,
        "the failing server got {bad} requests (bound {bound}) in {elapsed:?}"
    );
}

/// A scripted HTTP double: replies from a list in turn and records the requests' headers.
fn scripted_server(
    replies: Vec<(u16, String)>,
) -> (String, Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", server.server_addr().to_ip().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let h = std::thread::spawn(move || {
        for (status, body) in replies {
            let mut req = server.recv().unwrap();
            let auth = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.to_string())
                .unwrap_or_default();
            let mut b = String::new();
            std::io::Read::read_to_string(req.as_reader(), &mut b).unwrap();
            seen2.lock().unwrap().push(format!("{auth}\n{b}"));
            req.respond(tiny_http::Response::from_string(body).with_status_code(status))
                .unwrap();
        }
    });
    (url, seen, h)
}

fn completion(content: &str) -> String {
    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
        .to_string()
}

#[test]
fn api_key_is_sent_but_never_recorded_and_429_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, _) = grey_cases(tmp.path(), 1);
    let (url, seen, h) = scripted_server(vec![
        (429, r#"{"error": {"message": "slow down"}}"#.into()),
        (503, "overloaded".into()),
        (200, completion("No, the lungs are clear.")),
    ]);
    let mut s = spec(&[url], "vlm");
    s.api_key_env = Some("MEDGATE_TEST_API_KEY".into());
    let mut world = FixedWorld::default();
    world
        .env
        .insert("MEDGATE_TEST_API_KEY".into(), "sk-very-secret-123".into());
    let b = OpenaiBackend::new(&s, &task(), &world)
        .unwrap()
        .with_backoff_base(Duration::from_millis(5));
    let p = b.predict_batch(&cases).pop().unwrap().unwrap();
    h.join().unwrap();
    // No logprobs in the reply: the score comes from the parsed answer.
    assert_eq!(p.answer, Answer::Negative);
    assert_eq!(
        (p.score, p.score_source, p.attempts),
        (0.0, ScoreSource::Parsed, 3)
    );
    assert_eq!(p.raw, "No, the lungs are clear.");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|r| r.starts_with("Bearer sk-very-secret-123\n"))
    );
    let body: serde_json::Value =
        serde_json::from_str(seen[0].split_once('\n').unwrap().1).unwrap();
    assert_eq!(body["model"], "vlm");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["seed"], 1);
    assert_eq!(body["logprobs"], true);
    assert_eq!(body["top_logprobs"], 5);
    assert_eq!(
        body["messages"][0]["content"][0]["text"],
        "Is there a pneumothorax? Answer yes or no."
    );
    assert!(
        body["messages"][0]["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBORw0KGgo")
    );
    let info = serde_json::to_string(&b.info()).unwrap();
    assert!(!info.contains("sk-very-secret"), "{info}");
    assert!(!format!("{b:?}").contains("sk-very-secret"));
    assert!(info.contains("MEDGATE_TEST_API_KEY"));
}

#[test]
fn changed_image_is_refused_without_a_request() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut cases, _) = grey_cases(tmp.path(), 1);
    cases[0].image_sha256 = "0".repeat(64);
    let b = backend(&spec(&["http://127.0.0.1:9/v1".into()], "m"));
    let e = b.predict_batch(&cases).pop().unwrap().unwrap_err();
    assert_eq!(e.attempts, 0);
    assert!(e.reason.contains("golden-set lock"), "{}", e.reason);
}

// ---------------------------------------------------------------------------------------
// replay

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn replay_spec(file: &str) -> ReplaySpec {
    ReplaySpec {
        predictions: file.into(),
        sha256: None,
    }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn replay_matches_case_ids_and_keeps_leading_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "p.csv",
        "case_id,score,answer\n007,0.9,yes\n008,0.2,\n009,0.6,equivocal\n",
    );
    let b = ReplayBackend::load(
        &replay_spec("p.csv"),
        tmp.path(),
        &ids(&["009", "007", "008"]),
    )
    .unwrap();
    let cases: Vec<CaseInput> = ["008", "007", "009"]
        .iter()
        .map(|id| CaseInput {
            case_id: id.to_string(),
            image_path: PathBuf::new(),
            image_sha256: String::new(),
        })
        .collect();
    let out: Vec<_> = b
        .predict_batch(&cases)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(out[0].score, 0.2);
    assert_eq!(out[0].answer, Answer::Negative); // no answer: score < 0.5
    assert_eq!(out[1].answer, Answer::Positive);
    assert_eq!(out[2].answer, Answer::Equivocal);
    assert!(out.iter().all(|p| p.score_source == ScoreSource::Replay));
    let info = b.info();
    let (sha, _) = medgate::hash::sha256_file(&p).unwrap();
    assert_eq!(info.model_sha256, Some(sha.clone()));
    // A pinned hash that does not match refuses.
    let mut s = replay_spec("p.csv");
    s.sha256 = Some("ab".repeat(32));
    let e = ReplayBackend::load(&s, tmp.path(), &ids(&["007", "008", "009"])).unwrap_err();
    assert!(e.to_string().contains("pinned"), "{e}");
    s.sha256 = Some(sha.to_uppercase());
    assert!(ReplayBackend::load(&s, tmp.path(), &ids(&["007", "008", "009"])).is_ok());
}

#[test]
fn replay_refuses_mismatched_case_ids_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "p.csv", "case_id,score\nA,0.1\nB,0.2\nX,0.3\n");
    let e = ReplayBackend::load(
        &replay_spec("p.csv"),
        tmp.path(),
        &ids(&["A", "B", "C", "D"]),
    )
    .unwrap_err();
    let msg = e.render();
    assert_eq!(e.exit_code(), 2);
    assert!(msg.contains("2 golden-set case(s) missing: C, D"), "{msg}");
    assert!(msg.contains("1 case(s) not in the golden set: X"), "{msg}");
}

#[test]
fn replay_refuses_nan_out_of_range_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let all = ids(&["A", "B"]);
    write(tmp.path(), "nan.csv", "case_id,score\nA,0.1\nB,NaN\n");
    let e = ReplayBackend::load(&replay_spec("nan.csv"), tmp.path(), &all).unwrap_err();
    assert!(
        e.to_string().contains("nan.csv line 3: case B: score NaN"),
        "{e}"
    );
    write(tmp.path(), "big.csv", "case_id,score\nA,1.5\nB,0.2\n");
    let e = ReplayBackend::load(&replay_spec("big.csv"), tmp.path(), &all).unwrap_err();
    assert!(e.to_string().contains("line 2: case A: score 1.5"), "{e}");
    write(tmp.path(), "txt.csv", "case_id,score\nA,high\nB,0.2\n");
    let e = ReplayBackend::load(&replay_spec("txt.csv"), tmp.path(), &all).unwrap_err();
    assert!(e.to_string().contains("`high` is not a number"), "{e}");
    write(
        tmp.path(),
        "dup.csv",
        "case_id,score\nA,0.1\nB,0.2\nA,0.3\n",
    );
    let e = ReplayBackend::load(&replay_spec("dup.csv"), tmp.path(), &all).unwrap_err();
    assert!(
        e.to_string()
            .contains("duplicate case IDs: A (dup.csv line 4)"),
        "{e}"
    );
    write(tmp.path(), "nocol.csv", "case,score\nA,0.1\n");
    let e = ReplayBackend::load(&replay_spec("nocol.csv"), tmp.path(), &all).unwrap_err();
    assert!(e.to_string().contains("no `case_id` column"), "{e}");
}

#[test]
fn replay_reads_parquet() {
    use polars::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let mut df = df!("case_id" => ["A", "B"], "score" => [0.25f64, 0.75]).unwrap();
    medgate::table::write_table(&tmp.path().join("p.parquet"), &mut df).unwrap();
    let b = ReplayBackend::load(&replay_spec("p.parquet"), tmp.path(), &ids(&["A", "B"])).unwrap();
    let case = CaseInput {
        case_id: "B".into(),
        image_path: PathBuf::new(),
        image_sha256: String::new(),
    };
    let p = b.predict_batch(&[case]).pop().unwrap().unwrap();
    assert_eq!((p.score, p.answer), (0.75, Answer::Positive));
}

#[test]
fn dicom_cases_are_sent_as_png_decoded_by_the_golden_loader() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("golden-sets/demo-cxr/images/cxr-00100.dcm");
    let img = medgate::golden::image::load_image(&path).unwrap();
    assert_eq!(img.channels, 1);
    // What the server must see: the loader's samples as 8-bit grey, mean / 255.
    let want = img
        .data
        .iter()
        .map(|v| f64::from((v.clamp(0.0, 1.0) * 255.0).round()))
        .sum::<f64>()
        / (img.data.len() as f64 * 255.0);
    let cfg = ServeConfig {
        port: 0,
        threads: 1,
        model_id: "m".into(),
        ..Default::default()
    };
    let srv = Server::bind(cfg, Arc::new(MeanIntensityScorer))
        .unwrap()
        .spawn();
    let b = backend(&spec(&[srv.base_url()], "m"));
    let case = CaseInput {
        case_id: "cxr-00100".into(),
        image_sha256: medgate::hash::sha256_hex(&std::fs::read(&path).unwrap()),
        image_path: path,
    };
    let p = b.predict_batch(&[case]).pop().unwrap().unwrap();
    assert!((p.score - want).abs() < 1e-6, "{} vs {want}", p.score);
}

/// A proxy that rejects every request (401): after FAIL_FAST_AFTER identical replies the
/// backend sends nothing more, and every case is not evaluated with the HTTP error named.
#[test]
fn identical_client_errors_stop_the_run_early_naming_the_http_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (cases, _) = grey_cases(tmp.path(), 12);
    let n = medgate::model::openai::FAIL_FAST_AFTER as usize;
    let reply = (
        401,
        json!({"error": {"message": "invalid API key"}}).to_string(),
    );
    let (url, seen, h) = scripted_server(vec![reply; n]);
    let mut s = spec(&[url], "m");
    s.concurrency = 1;
    let b = backend(&s);
    let out = b.predict_batch(&cases);
    h.join().unwrap();
    assert_eq!(
        seen.lock().unwrap().len(),
        n,
        "requests after the fail-fast point"
    );
    for (i, r) in out.iter().enumerate() {
        let e = r.as_ref().unwrap_err();
        assert!(e.reason.contains("HTTP 401"), "case {i}: {}", e.reason);
        assert!(
            e.reason.contains("invalid API key"),
            "case {i}: {}",
            e.reason
        );
        if i >= n {
            assert!(e.reason.contains("not sent"), "case {i}: {}", e.reason);
        }
    }
}
