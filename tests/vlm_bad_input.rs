//! Bad input to the `candle-vlm` backend: every refusal names the file and the tensor or token,
//! nothing panics, and no case is scored from a half-loaded model (the load fails as a whole).
//! The weights hash is checked against coreutils' `sha256sum`.

use std::path::{Path, PathBuf};

use medgate::model::vlm::VlmBackend;
use medgate::model::{Backend, CaseInput};
use medgate::protocol::{AnswerRule, AnswerWords, CandleVlmSpec, VlmScore};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vlm")
}

fn copy_ckpt() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("ckpt");
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(fixture().join("tiny-qwen3-vl")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    (tmp, dst)
}

fn spec(path: &Path) -> CandleVlmSpec {
    CandleVlmSpec {
        path: path.to_path_buf(),
        sha256: None,
        device: "cpu".into(),
        precision: "f32".into(),
        batch_size: 2,
        kv_cache: true,
        max_tokens: 2,
        score: VlmScore::Logprobs,
        answer_words: AnswerWords::default(),
    }
}

fn load(s: &CandleVlmSpec) -> medgate::error::Result<VlmBackend> {
    VlmBackend::load(
        s,
        "Is there a nodule? Answer yes or no.",
        &AnswerRule::default(),
        Path::new("/"),
    )
}

fn err(s: &CandleVlmSpec) -> String {
    match load(s) {
        Ok(_) => panic!("expected the load to fail"),
        Err(e) => e.to_string(),
    }
}

fn shards(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    v.sort();
    v
}

#[test]
fn weights_hash_is_sha256sum_of_the_sorted_shards_and_is_enforced() {
    let (_t, dir) = copy_ckpt();
    let names = shards(&dir);
    let Ok(out) = std::process::Command::new("sha256sum")
        .args(&names)
        .current_dir(&dir)
        .output()
    else {
        eprintln!("skipped: sha256sum not installed");
        return;
    };
    let manifest = out.stdout;
    let Ok(mut child) = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        return;
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&manifest).unwrap();
    let out = child.wait_with_output().unwrap();
    let want = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let be = load(&spec(&dir)).unwrap();
    assert_eq!(be.sha256(), want);
    assert_eq!(be.info().model_sha256.as_deref(), Some(want.as_str()));
    let mut pinned = spec(&dir);
    pinned.sha256 = Some(want.clone());
    assert!(load(&pinned).is_ok());
    pinned.sha256 = Some("0".repeat(64));
    let e = err(&pinned);
    assert!(e.contains("SHA-256 mismatch") && e.contains(&want), "{e}");
}

#[test]
fn a_missing_shard_is_named() {
    let (_t, dir) = copy_ckpt();
    let victim = shards(&dir)[1].clone();
    std::fs::remove_file(dir.join(&victim)).unwrap();
    let e = err(&spec(&dir));
    assert!(
        e.contains("model.safetensors.index.json") && e.contains(&victim),
        "{e}"
    );
}

#[test]
fn an_index_naming_an_absent_shard_or_tensor_is_named() {
    let (_t, dir) = copy_ckpt();
    let ip = dir.join("model.safetensors.index.json");
    let orig = std::fs::read_to_string(&ip).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&orig).unwrap();
    v["weight_map"]["model.extra.weight"] = "model-00009-of-00009.safetensors".into();
    std::fs::write(&ip, v.to_string()).unwrap();
    let e = err(&spec(&dir));
    assert!(
        e.contains("model-00009-of-00009.safetensors") && e.contains("model.extra.weight"),
        "{e}"
    );
    // A tensor the index puts in a shard that lacks it.
    let mut v: serde_json::Value = serde_json::from_str(&orig).unwrap();
    let first = shards(&dir)[0].clone();
    v["weight_map"]["model.ghost.weight"] = first.clone().into();
    std::fs::write(&ip, v.to_string()).unwrap();
    let e = err(&spec(&dir));
    assert!(
        e.contains(&first) && e.contains("model.ghost.weight"),
        "{e}"
    );
    // A shard name that escapes the directory.
    let mut v: serde_json::Value = serde_json::from_str(&orig).unwrap();
    v["weight_map"]["lm_head.weight"] = "../elsewhere.safetensors".into();
    std::fs::write(&ip, v.to_string()).unwrap();
    let e = err(&spec(&dir));
    assert!(e.contains("../elsewhere.safetensors"), "{e}");
}

#[test]
fn a_tensor_of_the_wrong_shape_names_its_shard_and_tensor() {
    let (_t, dir) = copy_ckpt();
    let ip = dir.join("model.safetensors.index.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ip).unwrap()).unwrap();
    let name = "model.language_model.norm.weight";
    let shard = v["weight_map"][name].as_str().unwrap().to_string();
    let path = dir.join(&shard);
    let mut ts = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    ts.insert(
        name.to_string(),
        candle_core::Tensor::zeros(63, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&ts, &path).unwrap();
    let e = err(&spec(&dir));
    assert!(e.contains(&shard) && e.contains(name), "{e}");
}

#[test]
fn a_truncated_shard_is_named() {
    let (_t, dir) = copy_ckpt();
    let victim = shards(&dir)[0].clone();
    let bytes = std::fs::read(dir.join(&victim)).unwrap();
    std::fs::write(dir.join(&victim), &bytes[..bytes.len() / 2]).unwrap();
    let e = err(&spec(&dir));
    assert!(e.contains(&victim), "{e}");
}

#[test]
fn a_tokenizer_without_the_answer_words_is_named() {
    let (_t, dir) = copy_ckpt();
    let mut s = spec(&dir);
    s.answer_words.positive = vec!["affirmative".into()];
    let rule = AnswerRule {
        positive: r"^\W*(yes|affirmative)\b".into(),
        negative: r"^\W*no\b".into(),
    };
    let e = VlmBackend::load(&s, "Q?", &rule, Path::new("/"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("`affirmative`"),
        "{e}"
    );
    // Answer words that contradict the answer rules are refused too.
    let mut s = spec(&dir);
    s.answer_words.positive = vec!["no".into()];
    let e = err(&s);
    assert!(
        e.contains("answer_words.positive") && e.contains("`no`"),
        "{e}"
    );
}

#[test]
fn an_unknown_model_type_is_an_input_error() {
    let (_t, dir) = copy_ckpt();
    let cp = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    v["model_type"] = "llava_next".into();
    std::fs::write(&cp, v.to_string()).unwrap();
    let e = load(&spec(&dir)).err().unwrap();
    assert_eq!(e.exit_code(), medgate::exit::INPUT);
    let e = e.to_string();
    assert!(
        e.contains("config.json") && e.contains("llava_next") && e.contains("qwen3_vl"),
        "{e}"
    );
}

#[test]
fn an_image_the_processor_cannot_take_fails_only_its_case() {
    let (t, dir) = copy_ckpt();
    let be = load(&spec(&dir)).unwrap();
    // 1 x 300: aspect ratio 300 > the processor's limit of 200.
    let thin = t.path().join("thin.png");
    image::GrayImage::from_pixel(300, 1, image::Luma([90u8]))
        .save(&thin)
        .unwrap();
    let junk = t.path().join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let good = fixture().join("images/rgb_64x64.png");
    let case = |id: &str, p: &Path| CaseInput {
        case_id: id.into(),
        image_path: p.to_path_buf(),
        image_sha256: String::new(),
    };
    let out = be.predict_batch(&[
        case("thin", &thin),
        case("good", &good),
        case("junk", &junk),
    ]);
    let e = out[0].as_ref().err().unwrap().reason.clone();
    assert!(e.contains("thin") && e.contains("aspect ratio"), "{e}");
    assert!(out[1].is_ok(), "{:?}", out[1]);
    let e = out[2].as_ref().err().unwrap().reason.clone();
    assert!(e.contains("junk"), "{e}");
}
