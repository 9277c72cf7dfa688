//! Writing CLIP checkpoints in the Hugging Face layout, with seeded weights.
//!
//! The demo model's training program (`examples/train_demo_model.rs`), the tests and the
//! benchmarks build tiny CLIP-architecture models from scratch, and they must be
//! reproducible, so weights are initialised here from an explicit seed (candle's own
//! initialisers are not seeded). The reading side (config, preprocessor, tokenizer files)
//! stays in [`crate::model::clip_ckpt`], which the `candle-clip` backend uses.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use candle_transformers::models::clip;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::model::clip_ckpt::{
    BOS, CONFIG_FILE, ClipArch, EOS, LOGIT_SCALE_INIT, PAD, PREPROCESSOR_FILE, Preprocess,
    TOKENIZER_FILE, TextArch, UNK, VisionArch, WEIGHTS_FILE, words,
};

/// The vocabulary (token -> id) for `texts`: `[PAD]`=0, `[UNK]`=1, `[BOS]`=2, the words in
/// sorted order, then `[EOS]` last.
pub fn build_vocab<'a>(texts: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u32> {
    let mut set = std::collections::BTreeSet::new();
    for t in texts {
        set.extend(words(t));
    }
    let mut vocab = BTreeMap::new();
    for (i, s) in [PAD, UNK, BOS].iter().enumerate() {
        vocab.insert((*s).to_string(), i as u32);
    }
    for w in set {
        let id = vocab.len() as u32;
        vocab.entry(w).or_insert(id);
    }
    let id = vocab.len() as u32;
    vocab.insert(EOS.to_string(), id);
    vocab
}

/// A Hugging Face `tokenizer.json` for a word-level vocabulary made by [`build_vocab`]:
/// lower-casing, whitespace/punctuation split, `[BOS] text [EOS]` template.
pub fn word_level_tokenizer_json(vocab: &BTreeMap<String, u32>) -> serde_json::Value {
    let id = |s: &str| vocab.get(s).copied().unwrap_or(0);
    let added: Vec<_> = [PAD, UNK, BOS, EOS]
        .iter()
        .map(|s| {
            serde_json::json!({"id": id(s), "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let mut by_id: Vec<(&String, &u32)> = vocab.iter().collect();
    by_id.sort_by_key(|(_, i)| **i);
    let mut v = serde_json::Map::new();
    for (w, i) in by_id {
        v.insert(w.clone(), serde_json::json!(i));
    }
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": BOS, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": EOS, "type_id": 0}}
            ],
            "pair": [
                {"SpecialToken": {"id": BOS, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": EOS, "type_id": 0}}
            ],
            "special_tokens": {
                BOS: {"id": BOS, "ids": [id(BOS)], "tokens": [BOS]},
                EOS: {"id": EOS, "ids": [id(EOS)], "tokens": [EOS]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": v, "unk_token": UNK}
    })
}

/// Draws from N(0, std^2) with Box-Muller from a seeded stream.
fn normal(rng: &mut ChaCha8Rng, std: f64) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
}

/// The initial value of parameter `name` of shape `dims`, drawn from `rng`.
fn init_values(name: &str, dims: &[usize], rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n: usize = dims.iter().product();
    if name == "logit_scale" {
        return vec![LOGIT_SCALE_INIT; n];
    }
    if name.ends_with(".bias") {
        return vec![0.0; n];
    }
    let is_norm = name.contains("norm") || name.contains("layrnorm");
    if is_norm && name.ends_with(".weight") {
        return vec![1.0; n];
    }
    let std = if name.ends_with("class_embedding") {
        (dims[0] as f64).powf(-0.5)
    } else if name.contains("embedding.weight") && !name.contains("patch_embedding") {
        0.02
    } else {
        // Linear / conv weights: fan-in scaling keeps activations O(1) through the layers.
        let fan_in: usize = dims.iter().skip(1).product();
        (fan_in.max(1) as f64).powf(-0.5)
    };
    (0..n).map(|_| normal(rng, std)).collect()
}

/// A `VarMap` holding every parameter of a CLIP model of architecture `arch`, initialised
/// from `seed` (same seed, same weights on every machine), and the model reading it.
///
/// `class_embedding` and `logit_scale` are registered before the model is built so that they
/// are trainable and saved (candle-transformers otherwise makes them fresh random tensors).
pub fn seeded_varmap(
    arch: &ClipArch,
    seed: u64,
    device: &Device,
) -> Result<(VarMap, clip::ClipModel)> {
    let cfg = arch.to_candle();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, device);
    let c = |e: candle_core::Error| Error::Internal(format!("building CLIP model: {e}"));
    vb.get_with_hints(
        arch.vision.hidden_size,
        "vision_model.embeddings.class_embedding",
        Init::Const(0.0),
    )
    .map_err(c)?;
    vb.get_with_hints((), "logit_scale", Init::Const(LOGIT_SCALE_INIT as f64))
        .map_err(c)?;
    let model = clip::ClipModel::new(vb, &cfg).map_err(c)?;
    // Overwrite candle's unseeded initial values, in sorted name order, from one stream.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = vm
        .data()
        .lock()
        .map_err(|_| Error::Internal("VarMap lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let values = init_values(name, &dims, &mut rng);
        let t = Tensor::from_vec(values, dims.as_slice(), device).map_err(c)?;
        var.set(&t).map_err(c)?;
    }
    drop(data);
    Ok((vm, model))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut s = serde_json::to_string_pretty(&crate::hash::canonicalize(value))
        .map_err(|e| Error::Internal(format!("serialise {}: {e}", path.display())))?;
    s.push('\n');
    std::fs::write(path, s).map_err(|e| Error::io(path, e))
}

/// Writes a checkpoint directory in HF layout: `config.json`, `model.safetensors` (every
/// variable of `vm`), `tokenizer.json` (word-level, from `vocab`) and
/// `preprocessor_config.json` (from `pre`).
pub fn write_checkpoint(
    dir: &Path,
    arch: &ClipArch,
    vm: &VarMap,
    vocab: &BTreeMap<String, u32>,
    pre: &Preprocess,
) -> Result<()> {
    if vocab.len() != arch.text.vocab_size {
        return Err(Error::Internal(format!(
            "vocabulary has {} tokens but the architecture {}",
            vocab.len(),
            arch.text.vocab_size
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_json(&dir.join(CONFIG_FILE), &arch.to_hf_json())?;
    write_json(&dir.join(PREPROCESSOR_FILE), &pre.to_hf_json())?;
    write_json(&dir.join(TOKENIZER_FILE), &word_level_tokenizer_json(vocab))?;
    let weights = dir.join(WEIGHTS_FILE);
    vm.save(&weights)
        .map_err(|e| Error::infra(format!("{}: writing weights: {e}", weights.display())))
}

/// Writes a randomly initialised CLIP-architecture checkpoint (HF layout) to `dir`: weights
/// from `seed`, and a word-level tokenizer whose vocabulary covers `texts` (the vocabulary
/// size of `arch` is replaced by the one this vocabulary needs). Returns the architecture
/// written. For tests and for trying the backend without a real checkpoint.
pub fn write_random_checkpoint<'a>(
    dir: &Path,
    arch: &ClipArch,
    texts: impl IntoIterator<Item = &'a str>,
    seed: u64,
) -> Result<ClipArch> {
    let vocab = build_vocab(texts);
    let mut arch = arch.clone();
    arch.text.vocab_size = vocab.len();
    arch.validate().map_err(Error::Internal)?;
    let (vm, _model) = seeded_varmap(&arch, seed, &Device::Cpu)?;
    let pre = Preprocess::clip_default(arch.vision.image_size, arch.vision.num_channels);
    write_checkpoint(dir, &arch, &vm, &vocab, &pre)?;
    Ok(arch)
}

/// A tiny architecture for tests: 32x32 RGB, patch 16, width 16, 1 layer per tower.
pub fn tiny_test_arch() -> ClipArch {
    ClipArch {
        text: TextArch {
            vocab_size: 0,
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            max_position_embeddings: 16,
        },
        vision: VisionArch {
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_channels: 3,
            image_size: 32,
            patch_size: 16,
        },
        projection_dim: 8,
        logit_scale_init_value: LOGIT_SCALE_INIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_puts_eos_last_and_pad_first() {
        let v = build_vocab(["b a", "c"]);
        assert_eq!(v[PAD], 0);
        assert_eq!(v[UNK], 1);
        assert_eq!(v[BOS], 2);
        assert_eq!(v["a"], 3);
        assert_eq!(v["b"], 4);
        assert_eq!(v["c"], 5);
        assert_eq!(v[EOS], 6);
    }

    #[test]
    fn tokenizer_json_loads_and_wraps_with_bos_eos() {
        let v = build_vocab(["a normal chest radiograph"]);
        let json = word_level_tokenizer_json(&v).to_string();
        let tok: tokenizers::Tokenizer = json.parse().unwrap();
        let enc = tok.encode("A NORMAL radiograph, unseen", true).unwrap();
        let ids = enc.get_ids();
        let eos = v[EOS];
        assert_eq!(
            ids,
            &[
                v[BOS],
                v["a"],
                v["normal"],
                v["radiograph"],
                v[UNK],
                v[UNK],
                eos
            ]
        );
        assert_eq!(eos as usize, v.len() - 1);
    }

    #[test]
    fn seeded_init_is_reproducible_and_seed_dependent() {
        let mut a = tiny_test_arch();
        a.text.vocab_size = 8;
        let get = |seed| {
            let (vm, _) = seeded_varmap(&a, seed, &Device::Cpu).unwrap();
            let d = vm.data().lock().unwrap();
            let t = d["vision_model.embeddings.class_embedding"]
                .as_tensor()
                .clone();
            let ls = d["logit_scale"].as_tensor().to_scalar::<f32>().unwrap();
            (t.to_vec1::<f32>().unwrap(), ls)
        };
        let (x1, ls) = get(1);
        let (x2, _) = get(1);
        let (y, _) = get(2);
        assert_eq!(x1, x2);
        assert_ne!(x1, y);
        assert_eq!(ls, LOGIT_SCALE_INIT);
        // std hidden^-0.5 = 0.25: the sample's spread is in the right range.
        let var = x1.iter().map(|v| v * v).sum::<f32>() / x1.len() as f32;
        assert!(var > 0.01 && var < 0.2, "{var}");
    }
}
