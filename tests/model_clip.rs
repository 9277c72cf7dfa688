//! Integration tests of the `candle-clip` backend: checkpoints written by the tests themselves
//! (random, HF layout) and the committed demo model.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::ClipModel;
use medgate::golden::image::LoadedImage;
use medgate::model::clip::ClipBackend;
use medgate::model::clip_ckpt::ClipArch;
use medgate::model::{Answer, Backend, CaseInput, ScoreSource};
use medgate::protocol::{CandleClipSpec, Prompts};

fn spec(path: &Path) -> CandleClipSpec {
    CandleClipSpec {
        path: path.to_path_buf(),
        sha256: None,
        device: "cpu".into(),
        batch_size: 3,
        precision: "f32".into(),
    }
}

fn prompts(pos: &[&str], neg: &[&str]) -> Prompts {
    Prompts {
        positive: pos.iter().map(|s| s.to_string()).collect(),
        negative: neg.iter().map(|s| s.to_string()).collect(),
    }
}

/// A deterministic RGB test pattern.
fn pattern(w: u32, h: u32, k: u32) -> LoadedImage {
    let data = (0..w * h * 3)
        .map(|i| (((i * 37 + k * 101) % 256) as f32) / 255.0)
        .collect();
    LoadedImage {
        width: w,
        height: h,
        channels: 3,
        data,
    }
}

const TEXTS: [&str; 3] = ["a photo of a lesion", "a lesion", "a normal photo"];

fn random_ckpt(dir: &Path, seed: u64) -> ClipArch {
    medgate::testing::checkpoint::write_random_checkpoint(
        dir,
        &medgate::testing::checkpoint::tiny_test_arch(),
        TEXTS,
        seed,
    )
    .unwrap()
}

#[test]
fn random_checkpoint_scores_match_candles_own_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = random_ckpt(tmp.path(), 42);
    let p = prompts(&["a photo of a lesion"], &["a normal photo"]);
    let backend = ClipBackend::load(&spec(tmp.path()), &p, Path::new("/")).unwrap();
    let images: Vec<LoadedImage> = (0..5).map(|k| pattern(32, 32, k)).collect();
    let scores = backend.score_images(&images).unwrap();

    // Independent path: candle's ClipModel::forward on the same weights, softmax over the
    // two prompts' logits_per_image (one prompt per class, so no ensembling involved).
    let dev = Device::Cpu;
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[tmp.path().join("model.safetensors")],
            DType::F32,
            &dev,
        )
        .unwrap()
    };
    let model = ClipModel::new(vb, &arch.to_candle()).unwrap();
    let tok = tokenizers::Tokenizer::from_file(tmp.path().join("tokenizer.json")).unwrap();
    let enc = |t: &str| tok.encode(t, true).unwrap().get_ids().to_vec();
    let (a, b) = (enc("a photo of a lesion"), enc("a normal photo"));
    // Pad the shorter with 0 (EOS has the highest id, so pooling is unaffected).
    let len = a.len().max(b.len());
    let mut ids = Vec::new();
    for v in [&a, &b] {
        ids.extend(v.iter().copied());
        ids.extend(std::iter::repeat_n(0u32, len - v.len()));
    }
    let ids = Tensor::from_vec(ids, (2, len), &dev).unwrap();
    let pre = backend.preprocess_settings().clone();
    let px: Vec<f32> = images
        .iter()
        .flat_map(|i| medgate::model::clip::preprocess_image(i, &pre, 3).unwrap())
        .collect();
    let x = Tensor::from_vec(px, (5, 3, 32, 32), &dev).unwrap();
    let (_, logits_per_image) = model.forward(&x, &ids).unwrap();
    let probs = candle_nn::ops::softmax(&logits_per_image, 1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (s, p) in scores.iter().zip(&probs) {
        assert!((s - f64::from(p[0])).abs() < 1e-5, "{s} vs {p:?}");
    }
    // Scores are probabilities and not all identical (the images differ).
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    assert!(scores.iter().any(|s| (s - scores[0]).abs() > 1e-6));
}

#[test]
fn same_seed_gives_the_same_file_and_reload_gives_the_same_scores() {
    let (t1, t2, t3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    random_ckpt(t1.path(), 7);
    random_ckpt(t2.path(), 7);
    random_ckpt(t3.path(), 8);
    let h = |d: &Path| {
        medgate::hash::sha256_file(&d.join("model.safetensors"))
            .unwrap()
            .0
    };
    assert_eq!(h(t1.path()), h(t2.path()));
    assert_ne!(h(t1.path()), h(t3.path()));
    let p = prompts(&["a lesion"], &["a normal photo"]);
    let img = [pattern(40, 32, 3)];
    let s1 = ClipBackend::load(&spec(t1.path()), &p, Path::new("/"))
        .unwrap()
        .score_images(&img)
        .unwrap();
    let s1b = ClipBackend::load(&spec(t1.path()), &p, Path::new("/"))
        .unwrap()
        .score_images(&img)
        .unwrap();
    let s2 = ClipBackend::load(&spec(t2.path()), &p, Path::new("/"))
        .unwrap()
        .score_images(&img)
        .unwrap();
    assert_eq!(s1, s1b);
    assert_eq!(s1, s2);
}

#[test]
fn prompt_ensemble_averages_normalised_text_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = random_ckpt(tmp.path(), 3);
    let one = ClipBackend::load(
        &spec(tmp.path()),
        &prompts(&["a lesion"], &["a normal photo"]),
        Path::new("/"),
    )
    .unwrap();
    let two = ClipBackend::load(
        &spec(tmp.path()),
        &prompts(&["a lesion", "a photo of a lesion"], &["a normal photo"]),
        Path::new("/"),
    )
    .unwrap();
    // Reference: unit text embeddings from candle, averaged and renormalised by hand.
    let model = one.model();
    let tok = tokenizers::Tokenizer::from_file(tmp.path().join("tokenizer.json")).unwrap();
    let emb = |t: &str| -> Vec<f64> {
        let ids = tok.encode(t, true).unwrap().get_ids().to_vec();
        let n = ids.len();
        let x = Tensor::from_vec(ids, (1, n), &Device::Cpu).unwrap();
        let f = model
            .get_text_features(&x)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let v: Vec<f64> = f[0].iter().map(|&x| f64::from(x)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter().map(|x| x / norm).collect()
    };
    let (a, b, n) = (
        emb("a lesion"),
        emb("a photo of a lesion"),
        emb("a normal photo"),
    );
    let mean: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
    let norm = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
    let pos: Vec<f64> = mean.iter().map(|x| x / norm).collect();
    // A probe image feature vector: the score must be the two-way softmax of the cosines.
    let f: Vec<f64> = (0..arch.projection_dim)
        .map(|i| (i as f64 * 0.7).sin())
        .collect();
    let fnorm = f.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cos = |c: &[f64]| f.iter().zip(c).map(|(x, y)| x * y).sum::<f64>() / fnorm;
    let t = 2.6592f64.exp(); // the seeded checkpoint's logit_scale
    let want = 1.0 / (1.0 + (-t * (cos(&pos) - cos(&n))).exp());
    let got = two.score_features(&f);
    assert!((got.p_positive - want).abs() < 1e-5, "{got:?} vs {want}");
    assert!((got.sim_positive - cos(&pos)).abs() < 1e-5);
    // And it differs from the single-prompt score.
    assert!((one.score_features(&f).p_positive - got.p_positive).abs() > 1e-6);
}

#[test]
fn pinned_sha256_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    random_ckpt(tmp.path(), 1);
    let (real, _) = medgate::hash::sha256_file(&tmp.path().join("model.safetensors")).unwrap();
    let p = prompts(&["a lesion"], &["a normal photo"]);
    let mut s = spec(tmp.path());
    s.sha256 = Some(real.to_uppercase());
    let b = ClipBackend::load(&s, &p, Path::new("/")).unwrap();
    let info = b.info();
    assert_eq!(info.model_sha256.as_deref(), Some(real.as_str()));
    assert_eq!(info.backend, medgate::protocol::BackendKind::CandleClip);
    assert_eq!(info.settings["device"], "cpu");
    let wrong = "0".repeat(64);
    s.sha256 = Some(wrong.clone());
    let e = ClipBackend::load(&s, &p, Path::new("/")).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let msg = e.render();
    assert!(msg.contains(&wrong) && msg.contains(&real), "{msg}");
}

#[test]
fn missing_files_and_incomplete_weights_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    random_ckpt(tmp.path(), 1);
    let p = prompts(&["a lesion"], &["a normal photo"]);
    // Relative paths resolve against the protocol directory.
    let parent = tmp.path().parent().unwrap();
    let rel = PathBuf::from(tmp.path().file_name().unwrap());
    assert!(ClipBackend::load(&spec(&rel), &p, parent).is_ok());

    let e = ClipBackend::load(&spec(Path::new("no-such-model")), &p, parent).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.render().contains("no-such-model"), "{}", e.render());

    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    let e = ClipBackend::load(&spec(tmp.path()), &p, Path::new("/")).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.render().contains("tokenizer.json"), "{}", e.render());

    // Weights without logit_scale would be completed with random values by candle: refused.
    let tmp2 = tempfile::tempdir().unwrap();
    random_ckpt(tmp2.path(), 1);
    let w = tmp2.path().join("model.safetensors");
    let mut t = candle_core::safetensors::load(&w, &Device::Cpu).unwrap();
    t.remove("logit_scale");
    candle_core::safetensors::save(&t, &w).unwrap();
    let e = ClipBackend::load(&spec(tmp2.path()), &p, Path::new("/")).unwrap_err();
    assert!(e.render().contains("logit_scale"), "{}", e.render());
}

#[test]
fn predict_batch_keeps_order_and_fails_only_bad_cases() {
    let tmp = tempfile::tempdir().unwrap();
    random_ckpt(tmp.path(), 5);
    let p = prompts(&["a lesion"], &["a normal photo"]);
    let b = ClipBackend::load(&spec(tmp.path()), &p, Path::new("/")).unwrap();
    let imgs = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for k in 0..5u8 {
        let path = imgs.path().join(format!("c{k}.png"));
        let g = image::GrayImage::from_fn(32, 32, |x, y| {
            image::Luma([((x * 7 + y * 3 + u32::from(k) * 40) % 256) as u8])
        });
        g.save(&path).unwrap();
        expected.push(medgate::golden::image::load_image(&path).unwrap());
        cases.push(CaseInput {
            case_id: format!("c{k}"),
            image_path: path,
            image_sha256: String::new(),
        });
    }
    // Case 2 is unreadable.
    std::fs::write(&cases[2].image_path, b"not a png").unwrap();
    let out = b.predict_batch(&cases);
    assert_eq!(out.len(), 5);
    let err = out[2].as_ref().unwrap_err();
    assert!(err.reason.contains("c2"), "{}", err.reason);
    let want = b
        .score_images(&[
            expected[0].clone(),
            expected[1].clone(),
            expected[3].clone(),
            expected[4].clone(),
        ])
        .unwrap();
    for (o, w) in [0, 1, 3, 4].iter().zip(want) {
        let pred = out[*o].as_ref().unwrap();
        assert_eq!(pred.score, w);
        assert_eq!(pred.score_source, ScoreSource::Softmax);
        assert_eq!(
            pred.answer,
            if w >= 0.5 {
                Answer::Positive
            } else {
                Answer::Negative
            }
        );
        assert!(pred.raw.starts_with("p(pos)="), "{}", pred.raw);
    }
}

/// The demo protocol's prompts (see `models/demo-cxr-clip/MODEL_CARD.md`).
fn demo_prompts() -> Prompts {
    medgate::demo::prompts()
}

#[test]
fn committed_demo_model_reproduces_its_recorded_scores() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = spec(Path::new("models/demo-cxr-clip"));
    s.sha256 = Some(DEMO_SHA256.into());
    let b = ClipBackend::load(&s, &demo_prompts(), root).unwrap();
    let arch = b.arch();
    assert_eq!(arch.vision.image_size, 64);
    assert_eq!(arch.vision.num_channels, 1);
    let set = root.join("golden-sets/demo-cxr/images");
    let images: Vec<LoadedImage> = DEMO_FIXTURE
        .iter()
        .map(|(id, _)| medgate::golden::image::load_image(&set.join(format!("{id}.png"))).unwrap())
        .collect();
    let got = b.score_images(&images).unwrap();
    for ((id, want), g) in DEMO_FIXTURE.iter().zip(&got) {
        assert!((g - want).abs() < 1e-5, "{id}: {g} vs recorded {want}");
    }
}

/// SHA-256 of the committed demo weights (also in its MODEL_CARD.md).
const DEMO_SHA256: &str = "46049007501d6af38c470d0561371dc412dd0ceca1877d86bf9321606e437905";

/// Scores recorded when the demo model was committed (eval_demo_model, 8 decimals).
const DEMO_FIXTURE: [(&str, f64); 5] = [
    ("cxr-00000", 0.19505551),
    ("cxr-00001", 0.20085368),
    ("cxr-00002", 0.12527739),
    ("cxr-00003", 0.11692292),
    ("cxr-00004", 0.45281564),
];
