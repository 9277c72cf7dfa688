//! Cases per second of the `candle-vlm` backend on the tiny random Qwen3-VL of
//! `tests/fixtures/vlm/`, to compare with `benches/vlm_transformers.py` (HF transformers on the
//! same CPU, checkpoint, images and question). A case is what the harness asks for: decode the
//! PNG, preprocess, render and tokenize the prompt, one forward pass for p(yes), and greedy
//! decoding of `max_tokens` (4) tokens with the KV cache.
//!
//! ```text
//! cargo bench --profile dev --bench vlm_throughput            # 60 cases, batch 1
//! cargo bench --profile dev --bench vlm_throughput -- 120 4   # cases, batch size
//! ```

use std::path::Path;
use std::time::Instant;

use medgate::model::vlm::VlmBackend;
use medgate::model::{Backend, CaseInput};
use medgate::protocol::{AnswerRule, AnswerWords, CandleVlmSpec, VlmScore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(60);
    let batch: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vlm");
    let spec = CandleVlmSpec {
        path: fx.join("tiny-qwen3-vl"),
        sha256: None,
        device: "cpu".into(),
        precision: "f32".into(),
        batch_size: batch,
        kv_cache: true,
        max_tokens: 4,
        score: VlmScore::Logprobs,
        answer_words: AnswerWords::default(),
    };
    let q = "Is there a pneumothorax? Answer yes or no.";
    let be = VlmBackend::load(&spec, q, &AnswerRule::default(), Path::new("/"))?;
    let images = ["rgb_64x64.png", "grey_70x50.png", "rgb_200x150.png"];
    let cases: Vec<CaseInput> = (0..n)
        .map(|i| CaseInput {
            case_id: format!("c{i}"),
            image_path: fx.join("images").join(images[i % 3]),
            image_sha256: String::new(),
        })
        .collect();
    // Warm-up.
    let _ = be.predict_batch(&cases[..3.min(n)]);
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for chunk in cases.chunks(batch) {
            for r in be.predict_batch(chunk) {
                r.map_err(|e| e.reason)?;
            }
        }
        rounds.push(n as f64 / t.elapsed().as_secs_f64());
    }
    rounds.sort_by(f64::total_cmp);
    println!(
        "candle-vlm: {n} cases, batch {batch}: {:.1} cases/s (median of 3 rounds; all {:?})",
        rounds[1],
        rounds
            .iter()
            .map(|r| (r * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    Ok(())
}
