//! CLIP checkpoints in the Hugging Face layout: reading and writing `config.json`,
//! `preprocessor_config.json` and a word-level `tokenizer.json`.
//!
//! candle-transformers' `ClipConfig` has no serde support, so this module owns the mapping
//! between the HF JSON files and candle's config structs ([`ClipArch`]). Writing checkpoints
//! with seeded weights (for the demo model's training program, tests and benchmarks) lives
//! in [`crate::testing::checkpoint`].
//!
//! Two candle-transformers 0.11 gotchas are handled here (see `docs/deps.md`):
//! `vision_model.embeddings.class_embedding` and `logit_scale` are only stored (and saved)
//! if registered in the `VarMap` before `ClipModel::new`, and the text model pools at
//! `argmax(input_ids)`, so the end-of-text token must have the highest id.

use std::path::Path;

use candle_transformers::models::clip::{
    ClipConfig, text_model::Activation, text_model::ClipTextConfig, vision_model::ClipVisionConfig,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File names of a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer (Hugging Face `tokenizers` JSON).
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Optional image preprocessing settings.
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// CLIP's published image normalisation (RGB), used when a checkpoint gives none.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's published image normalisation standard deviations (RGB).
#[allow(clippy::excessive_precision)] // the published values, verbatim
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// `ln(1/0.07)`: CLIP's initial logit scale.
pub const LOGIT_SCALE_INIT: f32 = 2.6592;

/// Text tower of a CLIP checkpoint (the `text_config` of HF `config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextArch {
    /// Vocabulary size (token embedding rows).
    pub vocab_size: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Longest token sequence (positions).
    pub max_position_embeddings: usize,
}

/// Vision tower of a CLIP checkpoint (the `vision_config` of HF `config.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisionArch {
    /// Width of the transformer.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Image channels the patch embedding expects (3 for RGB checkpoints, 1 for grayscale).
    pub num_channels: usize,
    /// Input side length in pixels (square).
    pub image_size: usize,
    /// Patch side length in pixels.
    pub patch_size: usize,
}

/// The architecture of a CLIP checkpoint: what candle needs to build the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipArch {
    /// Text tower.
    pub text: TextArch,
    /// Vision tower.
    pub vision: VisionArch,
    /// Width of the shared image-text embedding space.
    pub projection_dim: usize,
    /// Initial `logit_scale` (only used when a checkpoint lacks one; we refuse those).
    pub logit_scale_init_value: f32,
}

impl ClipArch {
    /// The demo model's architecture: 64x64 grayscale, patch 8, width 64, 2+2 layers.
    pub fn demo(vocab_size: usize) -> Self {
        ClipArch {
            text: TextArch {
                vocab_size,
                hidden_size: 64,
                intermediate_size: 256,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                max_position_embeddings: 32,
            },
            vision: VisionArch {
                hidden_size: 64,
                intermediate_size: 256,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_channels: 1,
                image_size: 64,
                patch_size: 8,
            },
            projection_dim: 64,
            logit_scale_init_value: LOGIT_SCALE_INIT,
        }
    }

    /// candle-transformers' config for this architecture.
    pub fn to_candle(&self) -> ClipConfig {
        ClipConfig {
            text_config: ClipTextConfig {
                vocab_size: self.text.vocab_size,
                embed_dim: self.text.hidden_size,
                activation: Activation::QuickGelu,
                intermediate_size: self.text.intermediate_size,
                max_position_embeddings: self.text.max_position_embeddings,
                pad_with: None,
                num_hidden_layers: self.text.num_hidden_layers,
                num_attention_heads: self.text.num_attention_heads,
                projection_dim: self.projection_dim,
            },
            vision_config: ClipVisionConfig {
                embed_dim: self.vision.hidden_size,
                activation: Activation::QuickGelu,
                intermediate_size: self.vision.intermediate_size,
                num_hidden_layers: self.vision.num_hidden_layers,
                num_attention_heads: self.vision.num_attention_heads,
                projection_dim: self.projection_dim,
                num_channels: self.vision.num_channels,
                image_size: self.vision.image_size,
                patch_size: self.vision.patch_size,
            },
            logit_scale_init_value: self.logit_scale_init_value,
            image_size: self.vision.image_size,
        }
    }

    /// Checks the shapes fit together (heads divide widths, patches tile the image).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text;
        let v = &self.vision;
        let positive = [
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
            ("projection_dim", self.projection_dim),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err("text_config.hidden_size is not a multiple of num_attention_heads".into());
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(
                "vision_config.hidden_size is not a multiple of num_attention_heads".into(),
            );
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err("vision_config.image_size is not a multiple of patch_size".into());
        }
        if v.num_channels != 1 && v.num_channels != 3 {
            return Err(format!(
                "vision_config.num_channels is {}; only 1 (grayscale) or 3 (RGB) are supported",
                v.num_channels
            ));
        }
        Ok(())
    }

    /// Parses an HF `config.json` (`CLIPModel`); absent fields take the HF `CLIPConfig`
    /// defaults, unknown fields are ignored. `source` names the file in errors.
    pub fn from_hf_json(text: &str, source: &Path) -> Result<Self> {
        let raw: HfConfig = serde_json::from_str(text).map_err(|e| {
            Error::input_hint(
                format!("{}: not a CLIP config.json: {e}", source.display()),
                "expected the Hugging Face CLIPModel layout with text_config and vision_config",
            )
        })?;
        let tc = raw.text_config.unwrap_or_default();
        let vc = raw.vision_config.unwrap_or_default();
        for (tower, act) in [
            ("text_config", &tc.hidden_act),
            ("vision_config", &vc.hidden_act),
        ] {
            if let Some(a) = act.as_deref().filter(|a| *a != "quick_gelu") {
                return Err(Error::input_hint(
                    format!(
                        "{}: {tower}.hidden_act is \"{a}\"; candle's CLIP supports only \"quick_gelu\"",
                        source.display()
                    ),
                    "use a checkpoint with OpenAI CLIP's activation (quick_gelu)",
                ));
            }
        }
        for (tower, eps) in [
            ("text_config", tc.layer_norm_eps),
            ("vision_config", vc.layer_norm_eps),
        ] {
            if let Some(e) = eps.filter(|e| (e - 1e-5).abs() > 1e-12) {
                return Err(Error::input_hint(
                    format!(
                        "{}: {tower}.layer_norm_eps is {e}; candle's CLIP uses 1e-5",
                        source.display()
                    ),
                    "use a checkpoint with OpenAI CLIP's layer norm epsilon (1e-5)",
                ));
            }
        }
        let arch = ClipArch {
            text: TextArch {
                vocab_size: tc.vocab_size.unwrap_or(49408),
                hidden_size: tc.hidden_size.unwrap_or(512),
                intermediate_size: tc.intermediate_size.unwrap_or(2048),
                num_hidden_layers: tc.num_hidden_layers.unwrap_or(12),
                num_attention_heads: tc.num_attention_heads.unwrap_or(8),
                max_position_embeddings: tc.max_position_embeddings.unwrap_or(77),
            },
            vision: VisionArch {
                hidden_size: vc.hidden_size.unwrap_or(768),
                intermediate_size: vc.intermediate_size.unwrap_or(3072),
                num_hidden_layers: vc.num_hidden_layers.unwrap_or(12),
                num_attention_heads: vc.num_attention_heads.unwrap_or(12),
                num_channels: vc.num_channels.unwrap_or(3),
                image_size: vc.image_size.unwrap_or(224),
                patch_size: vc.patch_size.unwrap_or(32),
            },
            projection_dim: raw.projection_dim.unwrap_or(512),
            logit_scale_init_value: raw.logit_scale_init_value.unwrap_or(LOGIT_SCALE_INIT),
        };
        arch.validate().map_err(|m| {
            Error::input_hint(
                format!("{}: {m}", source.display()),
                "check the checkpoint's config.json",
            )
        })?;
        Ok(arch)
    }

    /// The HF `config.json` for this architecture (keys sorted; every field explicit).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let t = &self.text;
        let v = &self.vision;
        // Print the f32 as its shortest decimal (2.6592, not 2.6591999530792236).
        let logit_init: f64 = self
            .logit_scale_init_value
            .to_string()
            .parse()
            .unwrap_or(f64::from(LOGIT_SCALE_INIT));
        serde_json::json!({
            "architectures": ["CLIPModel"],
            "logit_scale_init_value": logit_init,
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "text_config": {
                "bos_token_id": 2,
                "eos_token_id": t.vocab_size - 1,
                "hidden_act": "quick_gelu",
                "hidden_size": t.hidden_size,
                "intermediate_size": t.intermediate_size,
                "layer_norm_eps": 1e-5,
                "max_position_embeddings": t.max_position_embeddings,
                "model_type": "clip_text_model",
                "num_attention_heads": t.num_attention_heads,
                "num_hidden_layers": t.num_hidden_layers,
                "pad_token_id": 0,
                "projection_dim": self.projection_dim,
                "vocab_size": t.vocab_size,
            },
            "torch_dtype": "float32",
            "vision_config": {
                "hidden_act": "quick_gelu",
                "hidden_size": v.hidden_size,
                "image_size": v.image_size,
                "intermediate_size": v.intermediate_size,
                "layer_norm_eps": 1e-5,
                "model_type": "clip_vision_model",
                "num_attention_heads": v.num_attention_heads,
                "num_channels": v.num_channels,
                "num_hidden_layers": v.num_hidden_layers,
                "patch_size": v.patch_size,
                "projection_dim": self.projection_dim,
            },
        })
    }
}

#[derive(Debug, Deserialize)]
struct HfConfig {
    text_config: Option<HfTower>,
    vision_config: Option<HfTower>,
    projection_dim: Option<usize>,
    logit_scale_init_value: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
struct HfTower {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    max_position_embeddings: Option<usize>,
    num_channels: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
}

/// Image preprocessing: resize the shortest edge to `size`, centre-crop `size` x `size`,
/// then normalise each channel with `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Output side length (the model's `image_size`).
    pub size: usize,
    /// Per-channel mean, one per model channel.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, one per model channel.
    pub std: Vec<f32>,
}

impl Preprocess {
    /// CLIP's defaults for `num_channels` channels (grayscale takes the channel average).
    pub fn clip_default(size: usize, num_channels: usize) -> Self {
        if num_channels == 1 {
            Preprocess {
                size,
                mean: vec![CLIP_MEAN.iter().sum::<f32>() / 3.0],
                std: vec![CLIP_STD.iter().sum::<f32>() / 3.0],
            }
        } else {
            Preprocess {
                size,
                mean: CLIP_MEAN.to_vec(),
                std: CLIP_STD.to_vec(),
            }
        }
    }

    /// Reads `preprocessor_config.json` (`image_mean`, `image_std`); the crop size is always
    /// the model's `image_size`, which is the only size its position embeddings accept.
    pub fn from_hf_json(text: &str, source: &Path, arch: &ClipArch) -> Result<Self> {
        #[derive(Deserialize)]
        struct Raw {
            image_mean: Option<Vec<f32>>,
            image_std: Option<Vec<f32>>,
        }
        let raw: Raw = serde_json::from_str(text).map_err(|e| {
            Error::input_hint(
                format!("{}: not a preprocessor config: {e}", source.display()),
                "expected a JSON object with image_mean and image_std arrays",
            )
        })?;
        let ch = arch.vision.num_channels;
        let mut p = Preprocess::clip_default(arch.vision.image_size, ch);
        for (name, given, slot) in [
            ("image_mean", raw.image_mean, &mut p.mean),
            ("image_std", raw.image_std, &mut p.std),
        ] {
            if let Some(v) = given {
                if v.len() != ch {
                    return Err(Error::input_hint(
                        format!(
                            "{}: {name} has {} values but the model has {ch} channel(s)",
                            source.display(),
                            v.len()
                        ),
                        "give one value per image channel",
                    ));
                }
                *slot = v;
            }
        }
        if p.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || p.mean.iter().any(|m| !m.is_finite())
        {
            return Err(Error::input_hint(
                format!(
                    "{}: image_std must be positive and image_mean finite",
                    source.display()
                ),
                "fix preprocessor_config.json",
            ));
        }
        Ok(p)
    }

    /// The HF `preprocessor_config.json` for these settings.
    pub fn to_hf_json(&self) -> serde_json::Value {
        // Shortest decimals of the f32 values (0.354, not 0.3540000021457672).
        let short = |v: &[f32]| -> Vec<f64> {
            v.iter()
                .map(|x| x.to_string().parse().unwrap_or(f64::from(*x)))
                .collect()
        };
        let (mean, std) = (short(&self.mean), short(&self.std));
        serde_json::json!({
            "crop_size": {"height": self.size, "width": self.size},
            "do_center_crop": true,
            "do_normalize": true,
            "do_resize": true,
            "image_mean": mean,
            "image_processor_type": "CLIPImageProcessor",
            "image_std": std,
            "resample": 2,
            "size": {"shortest_edge": self.size},
        })
    }
}

/// Special tokens of the word-level tokenizers written here. `[EOS]` always takes the
/// highest id (CLIP pools the text at `argmax(input_ids)`); `[PAD]` is 0.
pub const PAD: &str = "[PAD]";
/// Unknown word.
pub const UNK: &str = "[UNK]";
/// Start of text.
pub const BOS: &str = "[BOS]";
/// End of text: the highest id.
pub const EOS: &str = "[EOS]";

/// Splits text into the lower-case words a word-level tokenizer sees (the `Whitespace`
/// pre-tokenizer's `\w+|[^\w\s]+`, after lower-casing).
pub fn words(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_is_word = false;
    for c in lower.chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let w = c.is_alphanumeric() || c == '_';
        if !cur.is_empty() && w != cur_is_word {
            out.push(std::mem::take(&mut cur));
        }
        cur_is_word = w;
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::checkpoint::tiny_test_arch;

    #[test]
    fn words_split_like_the_whitespace_pre_tokenizer() {
        assert_eq!(
            words("A Chest X-ray, left-lower  lobe."),
            vec![
                "a", "chest", "x", "-", "ray", ",", "left", "-", "lower", "lobe", "."
            ]
        );
    }

    #[test]
    fn hf_config_round_trips_and_defaults_to_vit_b32() {
        let a = tiny_test_arch();
        let mut a = a.clone();
        a.text.vocab_size = 10;
        let json = a.to_hf_json().to_string();
        let back = ClipArch::from_hf_json(&json, Path::new("config.json")).unwrap();
        assert_eq!(back, a);
        // An empty object is HF's CLIPConfig(): ViT-B/32 with the 49408-token vocabulary.
        let d = ClipArch::from_hf_json("{}", Path::new("config.json")).unwrap();
        assert_eq!(d.vision.patch_size, 32);
        assert_eq!(d.vision.hidden_size, 768);
        assert_eq!(d.text.vocab_size, 49408);
        assert_eq!(d.projection_dim, 512);
    }

    #[test]
    fn hf_config_rejects_unsupported_activation_naming_the_file() {
        let e = ClipArch::from_hf_json(
            r#"{"vision_config": {"hidden_act": "gelu"}}"#,
            Path::new("/m/config.json"),
        )
        .unwrap_err();
        let s = e.render();
        assert!(s.contains("/m/config.json"), "{s}");
        assert!(s.contains("gelu"), "{s}");
        assert_eq!(e.exit_code(), crate::exit::INPUT);
    }
}
