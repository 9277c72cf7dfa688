//! The `candle-vlm` backend against Hugging Face transformers: a tiny random Qwen3-VL
//! checkpoint and, for 3 images x 2 questions, the image processor's output, the prompt
//! token ids, the next-token logits, the greedy tokens and p(positive), all computed by
//! transformers 5.24 / torch 2.15 (f32, CPU, eager attention) with
//! `tests/fixtures/vlm/make_fixture.py` (see that folder's README).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use medgate::golden::image::load_image;
use medgate::model::vlm::VlmBackend;
use medgate::protocol::{AnswerRule, AnswerWords, CandleVlmSpec, VlmScore};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vlm")
}

fn spec(kv_cache: bool, batch_size: usize) -> CandleVlmSpec {
    CandleVlmSpec {
        path: "tiny-qwen3-vl".into(),
        sha256: None,
        device: "cpu".into(),
        precision: "f32".into(),
        batch_size,
        kv_cache,
        max_tokens: 4,
        score: VlmScore::Logprobs,
        answer_words: AnswerWords::default(),
    }
}

struct Expected {
    tensors: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

fn expected() -> Expected {
    let dir = fixture();
    let tensors =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    Expected { tensors, meta }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn backend(question: &str, kv: bool, batch: usize) -> VlmBackend {
    VlmBackend::load(
        &spec(kv, batch),
        question,
        &AnswerRule::default(),
        &fixture(),
    )
    .unwrap()
}

#[test]
fn image_processor_prompt_logits_and_answers_match_transformers() {
    let ex = expected();
    let questions: Vec<String> = ex.meta["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q.as_str().unwrap().to_string())
        .collect();
    let cases = ex.meta["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for (qi, q) in questions.iter().enumerate() {
        let be = backend(q, true, 1);
        let (pos, neg) = be.answer_tokens();
        let ids = |k: &str| -> Vec<u32> {
            ex.meta[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        };
        assert_eq!(pos, ids("positive_token_ids").as_slice());
        assert_eq!(neg, ids("negative_token_ids").as_slice());
        for c in cases.iter().filter(|c| c["question_index"] == qi) {
            let i = c["image_index"].as_u64().unwrap();
            let name = c["image"].as_str().unwrap();
            let img = load_image(&fixture().join("images").join(name)).unwrap();
            let prep = be.prepare(&img).unwrap();
            // Image processor: grid and every patch value.
            let grid = ex.tensors[&format!("image_grid_thw.{i}")]
                .flatten_all()
                .unwrap()
                .to_vec1::<i64>()
                .unwrap();
            assert_eq!(
                [prep.grid.t, prep.grid.h, prep.grid.w]
                    .map(|v| v as i64)
                    .to_vec(),
                grid,
                "{name}: grid"
            );
            let want_px = f32s(&ex.tensors[&format!("pixel_values.{i}")]);
            let d = max_abs_diff(&prep.patches, &want_px);
            eprintln!("{name}: max |pixel difference| {d:e}");
            assert!(d <= 1e-6, "{name}: pixel values differ by {d}");
            // Vision tower + patch merger (projector) + DeepStack mergers, on their own.
            if qi == 0 {
                let px = Tensor::from_vec(
                    prep.patches.clone(),
                    (prep.grid.h * prep.grid.w, ()),
                    &Device::Cpu,
                )
                .unwrap();
                let (emb, deep) = be.model().image_features(&px, &[prep.grid]).unwrap();
                let d = max_abs_diff(
                    &f32s(&emb),
                    &f32s(&ex.tensors[&format!("image_embeds.{i}")]),
                );
                eprintln!("{name}: max |image embedding difference| {d:e}");
                assert!(d <= 1e-4, "{name}: image embeddings differ by {d}");
                assert_eq!(deep.len(), 2, "{name}: DeepStack layers");
                for (k, t) in deep.iter().enumerate() {
                    let d =
                        max_abs_diff(&f32s(t), &f32s(&ex.tensors[&format!("deepstack.{i}.{k}")]));
                    assert!(d <= 1e-4, "{name}: DeepStack feature {k} differs by {d}");
                }
            }
            // Chat template + placeholder expansion + tokenizer.
            let want_ids: Vec<u32> = ex.tensors[&format!("input_ids.{i}.{qi}")]
                .to_vec1::<i64>()
                .unwrap()
                .into_iter()
                .map(|v| v as u32)
                .collect();
            assert_eq!(
                be.prompt_ids(prep.grid).unwrap(),
                want_ids,
                "{name} q{qi}: prompt ids"
            );
            // Vision tower + projector + DeepStack + M-RoPE decoder.
            let logits = be.answer_logits(&[&prep]).unwrap();
            let want = f32s(&ex.tensors[&format!("logits.{i}.{qi}")]);
            let d = max_abs_diff(&logits[0], &want);
            eprintln!("{name} q{qi}: max |logit difference| {d:e}");
            assert!(d <= 1e-4, "{name} q{qi}: logits differ by {d}");
            // Score and greedy answer.
            let s = be.score_batch(&[&prep]).unwrap().remove(0);
            let want_p = c["p_positive"].as_f64().unwrap();
            assert!(
                (s.p_positive - want_p).abs() <= 1e-5,
                "{name} q{qi}: p {} vs {want_p}",
                s.p_positive
            );
            let want_gen: Vec<u32> = c["generated_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(s.tokens, want_gen, "{name} q{qi}: greedy tokens");
            assert_eq!(
                s.text,
                c["generated_text"].as_str().unwrap(),
                "{name} q{qi}: text"
            );
        }
    }
}

#[test]
fn batching_and_the_kv_cache_do_not_change_the_reference_results() {
    let ex = expected();
    let q = ex.meta["questions"][0].as_str().unwrap().to_string();
    let names = ["rgb_64x64.png", "grey_70x50.png", "rgb_200x150.png"];
    let batched = backend(&q, true, 3);
    let uncached = backend(&q, false, 1);
    let preps: Vec<_> = names
        .iter()
        .map(|n| {
            batched
                .prepare(&load_image(&fixture().join("images").join(n)).unwrap())
                .unwrap()
        })
        .collect();
    let refs: Vec<_> = preps.iter().collect();
    // Three prompts of different lengths, left-padded into one batch.
    let logits = batched.answer_logits(&refs).unwrap();
    let scored = batched.score_batch(&refs).unwrap();
    for (i, l) in logits.iter().enumerate() {
        let want = f32s(&ex.tensors[&format!("logits.{i}.0")]);
        let d = max_abs_diff(l, &want);
        assert!(d <= 1e-4, "batched image {i}: logits differ by {d}");
        let c = ex.meta["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["image_index"] == i as u64 && c["question_index"] == 0)
            .unwrap();
        let want_gen: Vec<u32> = c["generated_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            scored[i].tokens, want_gen,
            "batched image {i}: greedy tokens"
        );
        let u = uncached.score_batch(&[&preps[i]]).unwrap().remove(0);
        assert_eq!(u.tokens, want_gen, "no-cache image {i}: greedy tokens");
    }
}

#[test]
fn half_precisions_are_refused_on_the_cpu_and_every_setting_is_in_the_journal_key() {
    use medgate::model::Backend;
    let ex = expected();
    let q = ex.meta["questions"][0].as_str().unwrap().to_string();
    // candle's CPU backend has no bf16/f16 matmul: a clear input error, not a failed case.
    for precision in ["bf16", "f16"] {
        let mut s = spec(true, 1);
        s.precision = precision.into();
        let e = VlmBackend::load(&s, &q, &AnswerRule::default(), &fixture())
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), medgate::exit::INPUT);
        assert!(e.to_string().contains(precision), "{e}");
    }
    // Settings that can change answers change the settings hash (the journal key).
    let base = backend(&q, true, 1).info().settings;
    for other in [
        backend(&q, false, 1).info().settings,
        backend(&q, true, 2).info().settings,
    ] {
        assert_ne!(
            medgate::hash::canonical_sha256(&base).unwrap(),
            medgate::hash::canonical_sha256(&other).unwrap()
        );
    }
    for key in [
        "batch_size",
        "kv_cache",
        "precision",
        "device",
        "max_tokens",
        "score",
        "shards",
        "chat_template",
        "image_processor",
    ] {
        assert!(base.get(key).is_some(), "settings lack {key}");
    }
}
