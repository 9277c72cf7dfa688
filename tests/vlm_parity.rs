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
    spec_in("f32", kv_cache, batch_size)
}

fn spec_in(precision: &str, kv_cache: bool, batch_size: usize) -> CandleVlmSpec {
    CandleVlmSpec {
        path: "tiny-qwen3-vl".into(),
        sha256: None,
        device: "cpu".into(),
        precision: precision.into(),
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

/// `STEM.safetensors` + `STEM.json` from the fixture directory.
fn load_expected(stem: &str) -> Expected {
    let dir = fixture();
    let tensors =
        candle_core::safetensors::load(dir.join(format!("{stem}.safetensors")), &Device::Cpu)
            .unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap())
            .unwrap();
    Expected { tensors, meta }
}

fn expected() -> Expected {
    load_expected("expected")
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
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
fn an_unknown_precision_is_refused_and_every_setting_is_in_the_journal_key() {
    use medgate::model::Backend;
    let ex = expected();
    let q = ex.meta["questions"][0].as_str().unwrap().to_string();
    for precision in ["f64", "fp16", ""] {
        let e = VlmBackend::load(
            &spec_in(precision, true, 1),
            &q,
            &AnswerRule::default(),
            &fixture(),
        )
        .err()
        .unwrap();
        assert_eq!(e.exit_code(), medgate::exit::INPUT);
        assert!(e.to_string().contains("precision"), "{e}");
    }
    // Settings that can change answers change the settings hash (the journal key).
    let base = backend(&q, true, 1).info().settings;
    let half = |p: &str| {
        VlmBackend::load(&spec_in(p, true, 1), &q, &AnswerRule::default(), &fixture())
            .unwrap()
            .info()
            .settings
    };
    for other in [
        backend(&q, false, 1).info().settings,
        backend(&q, true, 2).info().settings,
        half("bf16"),
        half("f16"),
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

// ---------------------------------------------------------------- half precision

/// transformers' own outputs with the checkpoint loaded in bf16 / f16
/// (`make_half_fixture.py`, same versions; see the fixture README).
fn expected_half() -> Expected {
    load_expected("expected_half")
}

/// Checks the backend in `precision` against transformers in the same dtype: logits within
/// `tol` (nats), image embeddings within `emb_tol`, p(positive) within `tol / 2`, and the
/// greedy tokens equal up to the first step where transformers' own top-2 logit gap is at
/// most `2 * tol` (there the other implementation may rightly pick the other token). Returns
/// the largest logit and embedding differences and how many greedy tokens were compared.
fn half_parity(precision: &str, tol: f32, emb_tol: f32) -> (f32, f32, usize) {
    let ex = expected();
    let half = expected_half();
    let questions: Vec<String> = ex.meta["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q.as_str().unwrap().to_string())
        .collect();
    let cases = half.meta["cases"][precision].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    let (mut worst, mut worst_emb, mut compared) = (0f32, 0f32, 0usize);
    for (qi, q) in questions.iter().enumerate() {
        let be = VlmBackend::load(
            &spec_in(precision, true, 1),
            q,
            &AnswerRule::default(),
            &fixture(),
        )
        .unwrap();
        for c in cases.iter().filter(|c| c["question_index"] == qi) {
            let i = c["image_index"].as_u64().unwrap();
            let name = c["image"].as_str().unwrap();
            let img = load_image(&fixture().join("images").join(name)).unwrap();
            let prep = be.prepare(&img).unwrap();
            if qi == 0 {
                let px = Tensor::from_vec(
                    prep.patches.clone(),
                    (prep.grid.h * prep.grid.w, ()),
                    &Device::Cpu,
                )
                .unwrap();
                let (emb, _) = be.model().image_features(&px, &[prep.grid]).unwrap();
                assert_eq!(
                    emb.dtype().as_str(),
                    precision,
                    "the vision tower runs in {precision}"
                );
                let want = f32s(&half.tensors[&format!("{precision}.image_embeds.{i}")]);
                let d = max_abs_diff(&f32s(&emb), &want);
                eprintln!(
                    "{precision} {name}: max |image embedding difference| {d:e}, max |embedding| {}",
                    want.iter().fold(0f32, |a, b| a.max(b.abs()))
                );
                worst_emb = worst_emb.max(d);
                assert!(
                    d <= emb_tol,
                    "{precision} {name}: image embeddings differ by {d}"
                );
            }
            let logits = be.answer_logits(&[&prep]).unwrap();
            let want = f32s(&half.tensors[&format!("{precision}.logits.{i}.{qi}")]);
            let d = max_abs_diff(&logits[0], &want);
            let f32_ref = f32s(&ex.tensors[&format!("logits.{i}.{qi}")]);
            let mean = |a: &[f32], b: &[f32]| {
                a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
            };
            eprintln!(
                "{precision} {name} q{qi}: max |logit difference| {d:e}, max |logit| {}, mean |d| vs transformers-{precision} {:e}, vs transformers-f32 {:e}, transformers {precision} vs f32 {:e}",
                want.iter().fold(0f32, |a, b| a.max(b.abs())),
                mean(&logits[0], &want),
                mean(&logits[0], &f32_ref),
                mean(&want, &f32_ref)
            );
            worst = worst.max(d);
            assert!(d <= tol, "{precision} {name} q{qi}: logits differ by {d}");
            // The head really ran in half precision: every logit is a value of that type.
            let dt = match precision {
                "bf16" => candle_core::DType::BF16,
                _ => candle_core::DType::F16,
            };
            let t = Tensor::new(logits[0].as_slice(), &Device::Cpu).unwrap();
            assert_eq!(
                f32s(&t.to_dtype(dt).unwrap()),
                logits[0],
                "{precision} {name} q{qi}: logits are not {precision} values"
            );
            let s = be.score_batch(&[&prep]).unwrap().remove(0);
            let want_p = c["p_positive"].as_f64().unwrap();
            eprintln!(
                "{precision} {name} q{qi}: |p(positive) difference| {:e}",
                (s.p_positive - want_p).abs()
            );
            assert!(
                (s.p_positive - want_p).abs() <= f64::from(tol) / 2.0,
                "{precision} {name} q{qi}: p {} vs {want_p}",
                s.p_positive
            );
            let want_gen: Vec<u64> = c["generated_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let margins: Vec<f64> = c["greedy_step_margins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            for (k, (&want_t, &m)) in want_gen.iter().zip(&margins).enumerate() {
                // Identical logits pick the identical token, even at a tie (both take the
                // lowest id); otherwise only a gap above 2 * tol forces the same choice.
                let forced = m > 2.0 * f64::from(tol) || (k == 0 && d == 0.0);
                if !forced {
                    eprintln!(
                        "{precision} {name} q{qi}: step {k} has a top-2 gap of {m}: tokens compared up to here"
                    );
                    break;
                }
                assert_eq!(
                    s.tokens.get(k).map(|&t| u64::from(t)),
                    Some(want_t),
                    "{precision} {name} q{qi}: greedy token {k} (reference gap {m})"
                );
                compared += 1;
            }
        }
    }
    (worst, worst_emb, compared)
}

// Tolerances. Both sides round to the half type at the same points (see the model module
// docs), so most of the six cases agree bit for bit in bf16; where one vision-tower value
// rounds the other way (one ulp of a ~25-wide embedding), the difference grows through the
// decoder to a few ulps of the logits. Measured max |logit difference| on this machine: bf16
// 0.055 (the largest |logit| is 5, where one bf16 ulp is 0.031), f16 0.0085 (one f16 ulp at
// 4..8 is 0.0039). The tolerances are about 2.3x and 3.5x that: bf16 0.125 (4 ulps), f16 0.03
// (8 ulps). For scale, transformers' own bf16 and f16 logits are 0.062 and 0.011 from its f32
// ones. p(positive) is within tol / 2 by construction (log-sum-exp moves at most tol, the
// log-odds at most 2 tol, the logistic at most a quarter of that).

#[test]
fn bf16_on_the_cpu_matches_transformers_in_bf16() {
    let (worst, worst_emb, compared) = half_parity("bf16", 0.125, 0.5);
    eprintln!(
        "bf16: max logit diff {worst:e}, max embedding diff {worst_emb:e}, {compared} greedy tokens compared"
    );
    assert!(compared >= 8, "only {compared} greedy tokens were compared");
}

#[test]
fn f16_on_the_cpu_matches_transformers_in_f16() {
    let (worst, worst_emb, compared) = half_parity("f16", 0.03, 0.125);
    eprintln!(
        "f16: max logit diff {worst:e}, max embedding diff {worst_emb:e}, {compared} greedy tokens compared"
    );
    assert!(
        compared >= 12,
        "only {compared} greedy tokens were compared"
    );
}

#[test]
fn a_left_padded_bf16_batch_matches_transformers_in_bf16() {
    // Three prompts of different lengths in one batch: the padding mask, added in f32 to
    // bf16 scores, must leave every sequence's logits as transformers computes them alone.
    let ex = expected();
    let half = expected_half();
    let q = ex.meta["questions"][0].as_str().unwrap().to_string();
    let be = VlmBackend::load(
        &spec_in("bf16", true, 3),
        &q,
        &AnswerRule::default(),
        &fixture(),
    )
    .unwrap();
    let preps: Vec<_> = ["rgb_64x64.png", "grey_70x50.png", "rgb_200x150.png"]
        .iter()
        .map(|n| {
            be.prepare(&load_image(&fixture().join("images").join(n)).unwrap())
                .unwrap()
        })
        .collect();
    let refs: Vec<_> = preps.iter().collect();
    for (i, l) in be.answer_logits(&refs).unwrap().iter().enumerate() {
        let want = f32s(&half.tensors[&format!("bf16.logits.{i}.0")]);
        let d = max_abs_diff(l, &want);
        eprintln!("bf16 batched image {i}: max |logit difference| {d:e}");
        assert!(d <= 0.125, "bf16 batched image {i}: logits differ by {d}");
    }
}
