//! Speed target: the `openai` backend against `medgate serve` reaches at least 90% of the
//! throughput of a plain HTTP loop sending the same requests with the same concurrency.
//!
//! Both sides talk to the same in-process `medgate serve` server (`medgate::serve`),
//! by default hosting a randomly initialised CLIP checkpoint with the demo model's
//! architecture (64x64 grey, patch 8, width 64, 2+2 layers: the size of the model medgate's
//! demo trains), so each request costs what a small real model costs. With
//! `MEDGATE_BENCH_SCORER=mean-intensity` the server does almost nothing and the comparison
//! becomes a worst case that measures client overhead alone; on a machine where client and
//! server share two cores that overhead is taken straight from the server. The plain loop
//! posts pre-built request bodies from `concurrency` threads and only reads the replies; the
//! backend does everything a run does per case (read the file, check its SHA-256, base64,
//! JSON, parse the answer and logprobs, retry bookkeeping) and is fed in chunks of its own
//! `batch_size()`, as the harness feeds it. Rounds alternate plain / backend, and the verdict
//! is the median of the paired ratios, to even out machine noise.
//!
//! Run: `cargo bench --bench openai_vs_http` (release; numbers worth quoting), or
//! `cargo bench --profile dev --bench openai_vs_http` for a quick look (our crate unoptimised,
//! which penalises the backend's JSON and base64 work more than the plain loop's; add
//! `--config 'profile.dev.package.medgate.opt-level=3'` to optimise only medgate itself
//! without rebuilding every dependency in release). Env: `MEDGATE_BENCH_CASES` default 400,
//! `MEDGATE_BENCH_CONCURRENCY` default 8, `MEDGATE_BENCH_ROUNDS` default 5,
//! `MEDGATE_BENCH_SCORER` `clip` (default) or `mean-intensity`, `MEDGATE_BENCH_BASE_URL` +
//! `MEDGATE_BENCH_MODEL` to measure an external server such as `medgate serve` or vLLM).
//! Exits 1 when the ratio is below 0.9.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use medgate::model::clip::ClipBackend;
use medgate::model::clip_ckpt;
use medgate::model::openai::OpenaiBackend;
use medgate::model::{Backend, CaseInput};
use medgate::protocol::{CandleClipSpec, OpenaiSpec, Prompts, TaskSpec};
use medgate::serve::{ClipScorer, MeanIntensityScorer, Scorer, ServeConfig, Server};
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
    let rounds = env_usize("MEDGATE_BENCH_ROUNDS", 5);
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
            let scorer: Arc<dyn Scorer> = if std::env::var("MEDGATE_BENCH_SCORER").as_deref()
                == Ok("mean-intensity")
            {
                Arc::new(MeanIntensityScorer)
            } else {
                let ckpt = dir.path().join("bench-clip");
                let texts = ["a scan with a finding", "a normal scan"];
                clip_ckpt::write_random_checkpoint(&ckpt, &clip_ckpt::ClipArch::demo(0), texts, 1)
                    .expect("checkpoint");
                let spec = CandleClipSpec {
                    path: ckpt,
                    sha256: None,
                    device: "cpu".into(),
                    batch_size: 1,
                    precision: "f32".into(),
                };
                let prompts = Prompts {
                    positive: vec![texts[0].into()],
                    negative: vec![texts[1].into()],
                };
                let clip = ClipBackend::load(&spec, &prompts, dir.path()).expect("load checkpoint");
                Arc::new(ClipScorer::new(clip).expect("scorer"))
            };
            let s = Server::bind(cfg, scorer).expect("bind").spawn();
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
    // Rounds alternate plain / backend; each adjacent pair gives a ratio, and the median of
    // those ratios is the verdict (robust to a round disturbed by other work on the machine).
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let p = plain();
        let b = via_backend();
        println!(
            "round {r}: plain HTTP {p:.1} req/s, openai backend {b:.1} req/s, ratio {:.3}",
            b / p
        );
        ratios.push(b / p);
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    println!(
        "median ratio over {rounds} rounds: {ratio:.3} (target >= 0.90) {}",
        if ratio >= 0.9 { "PASS" } else { "FAIL" }
    );
    if ratio < 0.9 {
        std::process::exit(1);
    }
}
