//! Speed target (issue 12): with a server where 5% of replies take 10x longer, the `openai`
//! backend fed as the harness feeds it (one [`Backend::predict_stream`] over every case) keeps
//! at least 95% of the throughput of a bare load generator with the same concurrency.
//!
//! The server is an in-process `medgate serve` whose scorer sleeps `BASE` ms per request and
//! `10 * BASE` ms for every 20th request (5%), then returns the mean grey level, so the
//! measurement is about scheduling, not compute (sleeps cost no CPU, which keeps the figure
//! meaningful on a shared two-core machine). The bare load generator is `concurrency`
//! threads taking the next pre-built request body from one shared counter and only reading
//! the reply: the best any client can do at that concurrency. Three feeds are timed per round:
//!
//! - `plain`: the load generator;
//! - `stream`: `predict_stream` over all cases (the streaming harness, this landing);
//! - `chunked`: `predict_batch` on consecutive chunks of `batch_size()` cases, waiting for each
//!   chunk, which is how the previous harness fed every backend (the "before" figure: a slow
//!   reply stalls the start of the next chunk).
//!
//! Run: `cargo bench --bench openai_stream` (release), or `cargo bench --profile dev --bench
//! openai_stream` for a quick look. Env: `MEDGATE_BENCH_CASES` (default 2000),
//! `MEDGATE_BENCH_CONCURRENCY` (8), `MEDGATE_BENCH_BASE_MS` (4), `MEDGATE_BENCH_ROUNDS` (3).
//! Prints per-round figures and the median ratios; exits 1 when stream / plain < 0.95.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use medgate::model::openai::OpenaiBackend;
use medgate::model::{Backend, CaseInput, Delivery};
use medgate::protocol::{OpenaiSpec, TaskSpec};
use medgate::serve::{Scorer, ServeConfig, Server};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Sleeps `base` per request, `10 * base` for every 20th; scores the mean grey level.
struct HeavyTail {
    base: Duration,
    count: AtomicUsize,
}

impl Scorer for HeavyTail {
    fn score_encoded(&self, images: &[&[u8]]) -> medgate::Result<Vec<f64>> {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(if n % 20 == 19 {
            self.base * 10
        } else {
            self.base
        });
        Ok(images
            .iter()
            .map(|b| {
                let g = image::load_from_memory(b).map(|i| i.to_luma8()).ok();
                g.map(|g| {
                    g.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>()
                        / (g.as_raw().len().max(1) as f64 * 255.0)
                })
                .unwrap_or(0.0)
            })
            .collect())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n = env_usize("MEDGATE_BENCH_CASES", 2000);
    let conc = env_usize("MEDGATE_BENCH_CONCURRENCY", 8);
    let base_ms = env_usize("MEDGATE_BENCH_BASE_MS", 4) as u64;
    let rounds = env_usize("MEDGATE_BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cases = Vec::new();
    for i in 0..n {
        let img = image::GrayImage::from_pixel(16, 16, image::Luma([(i % 256) as u8]));
        let path = dir.path().join(format!("{i}.png"));
        img.save(&path).expect("write png");
        let bytes = std::fs::read(&path).expect("read png");
        cases.push(CaseInput {
            case_id: format!("{i}"),
            image_path: path,
            image_sha256: medgate::hash::sha256_hex(&bytes),
        });
    }
    let server = Server::bind(
        ServeConfig {
            port: 0,
            threads: conc,
            model_id: "bench".into(),
            ..Default::default()
        },
        Arc::new(HeavyTail {
            base: Duration::from_millis(base_ms),
            count: AtomicUsize::new(0),
        }),
    )
    .expect("bind")
    .spawn();
    let base = server.base_url();
    let spec: OpenaiSpec = serde_json::from_value(serde_json::json!({
        "base_urls": [base], "model": "bench", "concurrency": conc, "timeout_s": 60, "seed": 0
    }))
    .expect("spec");
    let task: TaskSpec = serde_json::from_value(serde_json::json!({
        "kind": "binary", "question": "Is there a finding? Answer yes or no.", "threshold": 0.5
    }))
    .expect("task");
    let backend =
        OpenaiBackend::new(&spec, &task, &medgate::world::SystemWorld::default()).expect("backend");

    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        cases
            .iter()
            .map(|c| {
                let b64 = base64::engine::general_purpose::STANDARD
                    .encode(std::fs::read(&c.image_path).expect("read"));
                serde_json::to_vec(&serde_json::json!({
                    "model": "bench", "temperature": 0.0, "max_tokens": 8, "seed": 0, "logprobs": true,
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
    let stream = || {
        let ok = AtomicUsize::new(0);
        let t = Instant::now();
        backend
            .predict_stream(&cases, &|| 0.0, &|d: Delivery| {
                if d.result.is_ok() {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                true
            })
            .expect("stream");
        assert_eq!(ok.load(Ordering::SeqCst), n, "some cases failed");
        n as f64 / t.elapsed().as_secs_f64()
    };
    let chunked = || {
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

    plain();
    stream();
    let (mut rs, mut rc) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let p = plain();
        let s = stream();
        let c = chunked();
        println!(
            "round {r}: plain {p:.1} req/s, stream {s:.1} ({:.3}), chunked by {} {c:.1} ({:.3})",
            s / p,
            backend.batch_size(),
            c / p
        );
        rs.push(s / p);
        rc.push(c / p);
    }
    let (ms, mc) = (median(rs), median(rc));
    println!(
        "median over {rounds} rounds ({n} cases, concurrency {conc}, {base_ms} ms / {} ms replies): stream/plain {ms:.3} (target >= 0.95) {}, chunked/plain {mc:.3}",
        base_ms * 10,
        if ms >= 0.95 { "PASS" } else { "FAIL" }
    );
    server.stop().expect("stop");
    if ms < 0.95 {
        std::process::exit(1);
    }
}
