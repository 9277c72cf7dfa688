//! Speed target: the `openai` backend against `medgate serve` reaches at least 90% of the
//! throughput of a plain HTTP loop sending the same requests with the same concurrency.
//!
//! Both sides talk to the same in-process `medgate serve` server (the `mean-intensity` test
//! scorer, so the model costs almost nothing and any client overhead shows). The plain loop
//! posts pre-built request bodies from `concurrency` threads and only reads the replies; the
//! backend does everything a run does per case (read the file, check its SHA-256, base64,
//! JSON, parse the answer and logprobs, retry bookkeeping) and is fed in chunks of its own
//! `batch_size()`, as the harness feeds it. Rounds alternate to even out machine noise.
//!
//! Run: `cargo bench --bench openai_vs_http` (env: `MEDGATE_BENCH_CASES` default 400,
//! `MEDGATE_BENCH_CONCURRENCY` default 8, `MEDGATE_BENCH_ROUNDS` default 3,
//! `MEDGATE_BENCH_BASE_URL` + `MEDGATE_BENCH_MODEL` to measure an external server instead).
//! Exits 1 when the ratio is below 0.9.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use medgate::model::openai::OpenaiBackend;
use medgate::model::serve::{MeanIntensityScorer, ServeConfig, Server};
use medgate::model::{Backend, CaseInput};
use medgate::protocol::{OpenaiSpec, TaskSpec};
use rand::{Rng, SeedableRng};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let n = env_usize("MEDGATE_BENCH_CASES", 400);
    let conc = env_usize("MEDGATE_BENCH_CONCURRENCY", 8);
    let rounds = env_usize("MEDGATE_BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut cases = Vec::new();
    for i in 0..n {
        let img = image::GrayImage::from_fn(64, 64, |_, _| image::Luma([rng.random::<u8>()]));
        let path = dir.path().join(format!("{i}.png"));
        img.save(&path).expect("write png");
        let bytes = std::fs::read(&path).expect("read png");
        cases.push(CaseInput {
            case_id: format!("{i}"),
            image_path: path,
            image_sha256: medgate::hash::sha256_hex(&bytes),
        });
    }

    let (_server, base, model) = match std::env::var("MEDGATE_BENCH_BASE_URL") {
        Ok(url) => (
            None,
            url,
            std::env::var("MEDGATE_BENCH_MODEL").unwrap_or_else(|_| "medgate".into()),
        ),
        Err(_) => {
            let cfg = ServeConfig {
                port: 0,
                threads: conc,
                model_id: "bench".into(),
                ..Default::default()
            };
            let s = Server::bind(cfg, Arc::new(MeanIntensityScorer))
                .expect("bind")
                .spawn();
            let b = s.base_url();
            (Some(s), b, "bench".to_string())
        }
    };
    let spec: OpenaiSpec = serde_json::from_value(serde_json::json!({
        "base_urls": [base], "model": model, "concurrency": conc, "timeout_s": 60, "seed": 0
    }))
    .expect("spec");
    let task: TaskSpec = serde_json::from_value(serde_json::json!({
        "kind": "binary", "question": "Is there a finding? Answer yes or no.", "threshold": 0.5
    }))
    .expect("task");
    let backend =
        OpenaiBackend::new(&spec, &task, &medgate::world::SystemWorld::default()).expect("backend");

    // The plain loop's request bodies, built before timing.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        cases
            .iter()
            .map(|c| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&c.image_path).expect("read"));
                serde_json::to_vec(&serde_json::json!({
                    "model": model, "temperature": 0.0, "max_tokens": 8, "seed": 0, "logprobs": true,
                    "top_logprobs": 5, "messages": [{"role": "user", "content": [
                        {"type": "text", "text": "Is there a finding? Answer yes or no."},
                        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}}]}]
                }))
                .expect("json")
            })
            .collect(),
    );
    let endpoint = format!("{}/chat/completions", base.trim_end_matches('/'));

    let plain = || {
        let next = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..conc {
                let (next, bodies, endpoint) = (next.clone(), bodies.clone(), endpoint.clone());
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(60)))
                        .build()
                        .into();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(b) = bodies.get(i) else { break };
                        let mut r = agent
                            .post(&endpoint)
                            .header("Content-Type", "application/json")
                            .send(b.as_slice())
                            .expect("post");
                        assert_eq!(r.status().as_u16(), 200);
                        r.body_mut().read_to_string().expect("body");
                    }
                });
            }
        });
        n as f64 / t.elapsed().as_secs_f64()
    };
    let via_backend = || {
        let t = Instant::now();
        let mut ok = 0;
        for chunk in cases.chunks(backend.batch_size()) {
            ok += backend
                .predict_batch(chunk)
                .iter()
                .filter(|r| r.is_ok())
                .count();
        }
        assert_eq!(ok, n, "some cases failed");
        n as f64 / t.elapsed().as_secs_f64()
    };

    plain(); // warm-up: connections, caches
    via_backend();
    let (mut best_plain, mut best_backend) = (0.0f64, 0.0f64);
    for r in 0..rounds {
        let p = plain();
        let b = via_backend();
        println!("round {r}: plain HTTP {p:.1} req/s, openai backend {b:.1} req/s");
        best_plain = best_plain.max(p);
        best_backend = best_backend.max(b);
    }
    let ratio = best_backend / best_plain;
    println!(
        "best of {rounds}: plain {best_plain:.1} req/s, backend {best_backend:.1} req/s, ratio {ratio:.3} (target >= 0.90) {}",
        if ratio >= 0.9 { "PASS" } else { "FAIL" }
    );
    if ratio < 0.9 {
        std::process::exit(1);
    }
}
