//! The `candle-vlm` backend: a generative vision-language model (image + question -> answer)
//! run in-process by candle, pinned by the hash of the weights it loads.
//!
//! # Why in-process
//! A model behind an OpenAI-compatible server cannot prove which weights answered. Here medgate
//! hashes every shard it reads (see [`ckpt`] for the documented order) and refuses to run when
//! the protocol pins another hash: the configuration identity IEC 62304 asks for.
//!
//! # Families
//! `config.json`'s `model_type` picks the family; an unknown one is an input error. One module
//! per family, so a second family is a new module, not a rewrite:
//! - `qwen3_vl` ([`qwen3_vl`]): chosen first because the open medical VLMs are mostly built on
//!   the Qwen-VL line (Lingshu and HuatuoGPT-Vision on Qwen2.5-VL, MedVLM-R1 on Qwen2-VL,
//!   Hulu-Med on Qwen2.5/Qwen3, and the Qwen3-VL fine-tunes that followed), whereas MedGemma
//!   builds on Gemma 3, not the Gemma 4 that candle-transformers 0.11 ships. Qwen3-VL's text
//!   side is also a plain dense decoder (no sliding windows or soft-capping), which keeps the
//!   parity proof small. candle-transformers' own Qwen3-VL text model is not usable as is
//!   (no causal mask on the prompt, 1-D positions): see [`qwen3_vl`].
//!
//! # What a case goes through
//! 1. The image is decoded ([`crate::golden::image::load_image`]), quantised to 8-bit RGB (grey
//!    replicated, as PIL's `convert("RGB")`), resized by the family's processor rule with
//!    Pillow's exact resampling ([`pil`]), normalised and cut into patches.
//! 2. The prompt is the model's own chat template (rendered by minijinja with Python string
//!    methods) applied to one user message `[image, question]` with the generation prompt;
//!    each image placeholder is expanded to the image's token count, as the HF processor does.
//! 3. One forward pass gives the next-token distribution at the answer position:
//!    `p_pos = sum of p(t)` over the positive token set, `p_neg` likewise, and
//!    `p(positive) = p_pos / (p_pos + p_neg)`. The token sets are every single-token spelling
//!    of the answer words (lower, Capitalised, UPPER; with and without a leading space).
//! 4. Greedy decoding continues up to `max_tokens` (or an end-of-turn token) and the text is
//!    parsed by the task's answer rules (equivocal when it matches neither or both).
//! 5. Both results are recorded in `raw`; `model.score` says which is the case's score:
//!    `logprobs` (default, [`ScoreSource::Logprobs`]) or `parsed` (1 / 0, or 0.5 when
//!    equivocal, [`ScoreSource::Parsed`]). `answer` is always the parsed greedy answer.
//!
//! # Precision
//! `precision: f32` (default), `bf16` or `f16`, on the CPU or a GPU (`--features cuda`,
//! `device: cuda:N`). The weights are converted to that dtype at load (half the memory in
//! bf16 / f16) and the model runs in it, rounding where transformers rounds when it runs the
//! same checkpoint in that dtype: matmuls accumulate in f32 and round once (biased linears add
//! the bias before rounding, as torch's `addmm`); the softmax, the norms' statistics, the
//! activations (SiLU, GELU), the rotary angles and the rotation of the vision tower's q / k,
//! the position-embedding interpolation and the attention scale are computed in f32 and
//! rounded to the dtype as transformers does ([`qwen3_vl`] says where). The patch embedding
//! (a `Conv3d` whose kernel is one whole patch) is one matmul, which candle runs in every
//! precision on the CPU. So a half-precision run is checked against transformers in the same
//! dtype, not against the f32 model: on the parity fixture most logits agree bit for bit in
//! bf16, and all within 0.055 (bf16) / 0.0085 (f16) nats, against 0.062 / 0.011 between
//! transformers' own half and f32 runs (`tests/vlm_parity.rs`). Answers can differ from the
//! f32 model's where two tokens are nearly tied. The weights are held in the chosen dtype
//! (half the bytes of f32), but on the CPU half precision is slower, not faster: candle
//! widens half operands to f32 for each matmul (1000 tiny-checkpoint cases: f32 3.9 s user,
//! bf16 6.1 s, f16 5.8 s; see the README).
//!
//! # Batching, cache
//! Cases are batched `batch_size` at a time, left-padded (padding keys are masked). Batch size,
//! precision and the KV-cache switch can change the last bits of a logit and, rarely, an answer:
//! all are in [`BackendInfo::settings`], so they are in the evidence and the journal key.
//!
//! # Refusals
//! Missing shards, an index naming an absent shard or tensor, a tensor of the wrong shape, a
//! tokenizer without a single-token spelling of an answer word, an unknown `model_type`: the
//! load fails with the file and tensor or token named, before any case is scored. An image the
//! processor cannot take fails that case only ("not evaluated", with the reason).

pub mod ckpt;
pub mod pil;
pub mod qwen3_vl;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use regex::Regex;
use serde_json::json;

use super::clip::{device_name, parse_device};
use super::openai::{compile_rule, parse_answer};
use super::{Answer, Backend, BackendInfo, CaseError, CaseInput, Prediction, ScoreSource};
use crate::error::{Error, Result};
use crate::golden::image::{LoadedImage, load_image_with};
use crate::protocol::{AnswerRule, CandleVlmSpec, VlmScore};
use qwen3_vl::{Grid, ProcessorConfig, Qwen3Vl, SeqInput};

/// Families this build knows, by `config.json` `model_type`.
pub const FAMILIES: [&str; 1] = ["qwen3_vl"];

/// A prepared image: its patch rows and grid.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `(grid_h * grid_w) x row_len` values, row-major.
    pub patches: Vec<f32>,
    /// Patch grid.
    pub grid: Grid,
}

/// The two results of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// `p_pos / (p_pos + p_neg)` at the answer position.
    pub p_positive: f64,
    /// `p_pos + p_neg`: how much of the distribution the answer words take.
    pub answer_mass: f64,
    /// The greedy answer text (special tokens skipped).
    pub text: String,
    /// The greedy token ids.
    pub tokens: Vec<u32>,
    /// `text` parsed by the answer rules.
    pub parsed: Answer,
}

/// A loaded generative VLM, ready to answer cases.
pub struct VlmBackend {
    model: Qwen3Vl,
    pre: ProcessorConfig,
    tokenizer: tokenizers::Tokenizer,
    template: String,
    special: serde_json::Value,
    image_token: String,
    pos_ids: Vec<u32>,
    neg_ids: Vec<u32>,
    eos_ids: Vec<u32>,
    question: String,
    positive: Regex,
    negative: Regex,
    spec: CandleVlmSpec,
    device: Device,
    sha256: String,
    model_name: String,
    settings: serde_json::Value,
    /// How DICOM images are decoded (the protocol's `golden_set.frames` / `voi`).
    decode: crate::golden::image::DecodeOptions,
}

fn family_of(dir: &Path, cfg: &serde_json::Value) -> Result<String> {
    let p = dir.join("config.json");
    let mt = cfg
        .get("model_type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::input(format!("{}: has no `model_type`", p.display())))?;
    if FAMILIES.contains(&mt) {
        Ok(mt.to_string())
    } else {
        Err(Error::input_hint(
            format!(
                "{}: model_type `{mt}` is not a family the candle-vlm backend implements (supported: {})",
                p.display(),
                FAMILIES.join(", ")
            ),
            "serve other models with an OpenAI-compatible server and use the openai backend",
        ))
    }
}

/// Renders `template` for one user turn `[image, question]` with the generation prompt.
pub fn render_prompt(
    template: &str,
    question: &str,
    special: &serde_json::Value,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| Error::input(format!("chat template does not parse: {e:#}")))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| Error::Internal(e.to_string()))?;
    let ctx = json!({
        "messages": [{"role": "user", "content": [
            {"type": "image"},
            {"type": "text", "text": question},
        ]}],
        "add_generation_prompt": true,
        "bos_token": special.get("bos_token").cloned().unwrap_or(json!("")),
        "eos_token": special.get("eos_token").cloned().unwrap_or(json!("")),
    });
    tmpl.render(json_value(&ctx))
        .map_err(|e| Error::input(format!("chat template fails to render: {e:#}")))
}

/// JSON into a template value (minijinja is built without its serde feature; the same
/// conversion as the report's, which this stage cannot import).
fn json_value(v: &serde_json::Value) -> minijinja::Value {
    use minijinja::Value;
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => a.iter().map(json_value).collect(),
        serde_json::Value::Object(o) => Value::from_object(
            o.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_value(v)))
                .collect::<std::collections::BTreeMap<Value, Value>>(),
        ),
    }
}

/// Single-token spellings of `words`: each of lower, Capitalised and UPPER, with and
/// without a leading space. A word without any single-token spelling is an error.
pub fn answer_token_ids(
    tok: &tokenizers::Tokenizer,
    words: &[String],
    which: &str,
    tok_path: &Path,
) -> Result<Vec<u32>> {
    let mut ids = std::collections::BTreeSet::new();
    for w in words {
        let w = w.trim();
        let mut cap = w.to_lowercase();
        if let Some(f) = cap.get(0..1) {
            cap = f.to_uppercase() + &cap[1..];
        }
        let mut tried = Vec::new();
        let mut found = false;
        for v in [w.to_lowercase(), cap, w.to_uppercase()] {
            for s in [v.clone(), format!(" {v}")] {
                let enc = tok.encode(s.as_str(), false).map_err(|e| {
                    Error::input(format!("{}: cannot encode `{s}`: {e}", tok_path.display()))
                })?;
                if enc.get_ids().len() == 1 {
                    ids.insert(enc.get_ids()[0]);
                    found = true;
                }
                tried.push(format!("`{s}`"));
            }
        }
        if !found {
            return Err(Error::input_hint(
                format!(
                    "{}: no single token spells the {which} answer word `{w}` (tried {})",
                    tok_path.display(),
                    tried.join(", ")
                ),
                "choose model.answer_words the tokenizer has as whole tokens",
            ));
        }
    }
    Ok(ids.into_iter().collect())
}

fn eos_ids(
    dir: &Path,
    tok: &tokenizers::Tokenizer,
    special: &serde_json::Value,
) -> Result<Vec<u32>> {
    let mut ids = std::collections::BTreeSet::new();
    let gen_cfg = dir.join("generation_config.json");
    if gen_cfg.is_file() {
        match ckpt::read_json(&gen_cfg)?.get("eos_token_id") {
            Some(serde_json::Value::Number(n)) => {
                ids.extend(n.as_u64().map(|v| v as u32));
            }
            Some(serde_json::Value::Array(a)) => {
                ids.extend(a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32));
            }
            _ => {}
        }
    }
    if let Some(t) = special.get("eos_token").and_then(|v| v.as_str()) {
        ids.extend(tok.token_to_id(t));
    }
    for t in ["<|im_end|>", "<|endoftext|>"] {
        ids.extend(tok.token_to_id(t));
    }
    Ok(ids.into_iter().collect())
}

fn special_tokens(dir: &Path) -> Result<serde_json::Value> {
    let p = dir.join("tokenizer_config.json");
    if !p.is_file() {
        return Ok(json!({}));
    }
    let v = ckpt::read_json(&p)?;
    let s = |k: &str| match v.get(k) {
        Some(serde_json::Value::String(s)) => json!(s),
        Some(o) => o.get("content").cloned().unwrap_or(json!("")),
        None => json!(""),
    };
    Ok(json!({"bos_token": s("bos_token"), "eos_token": s("eos_token")}))
}

/// `f32`, `bf16` or `f16`, on any device (the CPU included: see the module docs for how half
/// precision follows transformers there).
pub fn parse_precision(s: &str) -> Result<DType> {
    match s.trim() {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(Error::input_hint(
            format!("model.precision `{other}` is not a precision"),
            "use `f32`, `bf16` or `f16`",
        )),
    }
}

/// The model directory a spec names, resolved against the protocol's directory.
pub fn checkpoint_dir(spec: &CandleVlmSpec, protocol_dir: &Path) -> PathBuf {
    protocol_dir.join(&spec.path)
}

impl VlmBackend {
    /// Loads the checkpoint `spec.path` for `question` and the answer rules.
    pub fn load(
        spec: &CandleVlmSpec,
        question: &str,
        rule: &AnswerRule,
        protocol_dir: &Path,
    ) -> Result<Self> {
        let dir = checkpoint_dir(spec, protocol_dir);
        if !dir.is_dir() {
            return Err(Error::input_hint(
                format!("candle-vlm model directory {} not found", dir.display()),
                "download the model (config.json, *.safetensors, tokenizer files) and set model.path",
            ));
        }
        if spec.batch_size == 0 || spec.max_tokens == 0 {
            return Err(Error::input(
                "model.batch_size and model.max_tokens must be at least 1",
            ));
        }
        let positive = compile_rule("positive", &rule.positive)?;
        let negative = compile_rule("negative", &rule.negative)?;
        for (words, want, which) in [
            (&spec.answer_words.positive, Answer::Positive, "positive"),
            (&spec.answer_words.negative, Answer::Negative, "negative"),
        ] {
            if words.is_empty() {
                return Err(Error::input(format!("model.answer_words.{which} is empty")));
            }
            for w in words {
                if parse_answer(w, &positive, &negative) != want {
                    return Err(Error::input_hint(
                        format!(
                            "model.answer_words.{which} `{w}` is not a {which} answer under task.answer"
                        ),
                        "the answer words and the answer rules must agree",
                    ));
                }
            }
        }
        let device = parse_device(&spec.device)?;
        let dtype = parse_precision(&spec.precision)?;

        let cfg_path = dir.join("config.json");
        let cfg_json = ckpt::read_json(&cfg_path)?;
        let family = family_of(&dir, &cfg_json)?;
        let cfg: qwen3_vl::Config = serde_json::from_value(cfg_json.clone()).map_err(|e| {
            Error::input(format!(
                "{}: not a {family} config: {e}",
                cfg_path.display()
            ))
        })?;
        cfg.rope()
            .map_err(|e| Error::input(format!("{}: {e}", cfg_path.display())))?;
        let pre_path = dir.join("preprocessor_config.json");
        let pre: ProcessorConfig =
            serde_json::from_value(ckpt::read_json(&pre_path)?).map_err(|e| {
                Error::input(format!(
                    "{}: not an image processor config: {e}",
                    pre_path.display()
                ))
            })?;
        let v = &cfg.vision_config;
        if pre.patch_size != v.patch_size
            || pre.merge_size != v.spatial_merge_size
            || pre.temporal_patch_size != v.temporal_patch_size
        {
            return Err(Error::input(format!(
                "{}: patch_size/merge_size/temporal_patch_size ({}/{}/{}) differ from {} ({}/{}/{})",
                pre_path.display(),
                pre.patch_size,
                pre.merge_size,
                pre.temporal_patch_size,
                cfg_path.display(),
                v.patch_size,
                v.spatial_merge_size,
                v.temporal_patch_size
            )));
        }

        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| {
            Error::input_hint(
                format!("{}: not a readable tokenizer: {e}", tok_path.display()),
                "expected a Hugging Face tokenizers JSON file",
            )
        })?;
        let image_token = tokenizer.id_to_token(cfg.image_token_id).ok_or_else(|| {
            Error::input(format!(
                "{}: has no token for image_token_id {} of {}",
                tok_path.display(),
                cfg.image_token_id,
                cfg_path.display()
            ))
        })?;
        let pos_ids = answer_token_ids(
            &tokenizer,
            &spec.answer_words.positive,
            "positive",
            &tok_path,
        )?;
        let neg_ids = answer_token_ids(
            &tokenizer,
            &spec.answer_words.negative,
            "negative",
            &tok_path,
        )?;
        if let Some(t) = pos_ids.iter().find(|t| neg_ids.contains(t)) {
            return Err(Error::input(format!(
                "{}: token {t} is in both the positive and the negative answer set",
                tok_path.display()
            )));
        }
        let special = special_tokens(&dir)?;
        let (template, template_path) = ckpt::chat_template(&dir)?;
        // Render once now: a template that cannot render fails the load, not every case.
        let example = render_prompt(&template, question, &special)
            .map_err(|e| Error::input(format!("{}: {e}", template_path.display())))?;
        if !example.contains(&image_token) {
            return Err(Error::input(format!(
                "{}: the rendered prompt has no image placeholder `{image_token}`",
                template_path.display()
            )));
        }
        let eos_ids = eos_ids(&dir, &tokenizer, &special)?;

        // Weights last: everything cheap is checked before gigabytes are read.
        let weights = ckpt::load_weights(&dir, &device)?;
        if let Some(pinned) = &spec.sha256 {
            let pinned = pinned.trim().to_ascii_lowercase();
            if pinned != weights.sha256 {
                return Err(Error::input_hint(
                    format!(
                        "{}: weights SHA-256 mismatch: the protocol pins {pinned} but the shards hash to {}",
                        dir.display(),
                        weights.sha256
                    ),
                    "the weights are not the ones the protocol was written for; restore them, \
                     or (for a new model version) amend the protocol's model.sha256",
                ));
            }
        }
        let origin = weights.origin.clone();
        let shards = weights.shards.clone();
        let sha256 = weights.sha256.clone();
        let vb = VarBuilder::from_tensors(weights.tensors, dtype, &device);
        let model =
            Qwen3Vl::new(&cfg, vb).map_err(|e| Error::input(ckpt::locate(&e, &origin, &dir)))?;

        let (min_px, max_px) = pre.bounds();
        let template_sha = crate::hash::sha256_hex(template.as_bytes());
        let tok_strings = |ids: &[u32]| -> Vec<serde_json::Value> {
            ids.iter()
                .map(|&i| json!({"id": i, "token": tokenizer.id_to_token(i).unwrap_or_default()}))
                .collect()
        };
        let settings = json!({
            "family": family,
            "device": device_name(&device),
            "precision": spec.precision.trim(),
            "batch_size": spec.batch_size,
            "kv_cache": spec.kv_cache,
            "max_tokens": spec.max_tokens,
            "decoding": "greedy",
            "score": match spec.score { VlmScore::Logprobs => "logprobs", VlmScore::Parsed => "parsed" },
            "score_rule": "p_pos / (p_pos + p_neg) over the answer token sets at the first answer position",
            "question": question,
            "answer_rule": {"positive": rule.positive, "negative": rule.negative},
            "answer_words": {"positive": spec.answer_words.positive, "negative": spec.answer_words.negative},
            "positive_tokens": tok_strings(&pos_ids),
            "negative_tokens": tok_strings(&neg_ids),
            "eos_token_ids": eos_ids,
            "chat_template": {"file": template_path.file_name().map(|f| f.to_string_lossy().into_owned()), "sha256": template_sha},
            "prompt": example,
            "image_processor": {
                "resize": pre.do_resize, "resample": pre.resample, "min_pixels": min_px, "max_pixels": max_px,
                "rescale": pre.do_rescale, "rescale_factor": pre.rescale_factor,
                "normalize": pre.do_normalize, "image_mean": pre.image_mean, "image_std": pre.image_std,
                "patch_size": pre.patch_size, "merge_size": pre.merge_size, "temporal_patch_size": pre.temporal_patch_size,
            },
            "tokenizer_sha256": crate::hash::sha256_file(&tok_path)?.0,
            "config_sha256": crate::hash::sha256_file(&cfg_path)?.0,
            "weights_hash": "sha256 of `sha256sum` lines over the shards sorted by name",
            "shards": shards.iter().map(|s| json!({"file": s.name, "sha256": s.sha256, "bytes": s.bytes})).collect::<Vec<_>>(),
        });
        Ok(VlmBackend {
            model,
            pre,
            tokenizer,
            template,
            special,
            image_token,
            pos_ids,
            neg_ids,
            eos_ids,
            question: question.to_string(),
            positive,
            negative,
            spec: spec.clone(),
            device,
            sha256,
            model_name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
            settings: crate::hash::canonicalize(&settings),
            decode: Default::default(),
        })
    }

    /// Decodes DICOM images with `decode` (the protocol's frame and VOI choices).
    pub fn with_decode(mut self, decode: crate::golden::image::DecodeOptions) -> Self {
        self.decode = decode;
        self
    }

    /// The pinned weights hash.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The loaded model.
    pub fn model(&self) -> &Qwen3Vl {
        &self.model
    }

    /// The positive and negative answer token sets.
    pub fn answer_tokens(&self) -> (&[u32], &[u32]) {
        (&self.pos_ids, &self.neg_ids)
    }

    /// Image -> patch rows, as the checkpoint's image processor does.
    pub fn prepare(&self, img: &LoadedImage) -> Result<Prepared> {
        let (w, h) = (img.width as usize, img.height as usize);
        let ch = img.channels as usize;
        if !(ch == 1 || ch == 3) || img.data.len() != w * h * ch {
            return Err(Error::input(format!(
                "a {w}x{h} image with {ch} channels and {} samples cannot be processed",
                img.data.len()
            )));
        }
        let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        let mut rgb = Vec::with_capacity(w * h * 3);
        if ch == 1 {
            for &v in &img.data {
                let b = q(v);
                rgb.extend_from_slice(&[b, b, b]);
            }
        } else {
            rgb.extend(img.data.iter().map(|&v| q(v)));
        }
        let (patches, grid) = self.pre.process(&rgb, w, h).map_err(|e| {
            Error::input(format!("the image processor cannot take this image: {e}"))
        })?;
        Ok(Prepared { patches, grid })
    }

    /// The prompt token ids for an image of `grid` (placeholder expanded).
    pub fn prompt_ids(&self, grid: Grid) -> Result<Vec<u32>> {
        self.prompt_ids_for(grid, &self.question)
    }

    /// The prompt token ids for an image of `grid` asked `question` (a served request's own
    /// question; [`Self::prompt_ids`] asks the protocol's).
    pub fn prompt_ids_for(&self, grid: Grid, question: &str) -> Result<Vec<u32>> {
        let text = render_prompt(&self.template, question, &self.special)?;
        let n = self.model.tokens_per_image(grid);
        let text = text.replacen(&self.image_token, &self.image_token.repeat(n), 1);
        let enc = self
            .tokenizer
            .encode(text.as_str(), true)
            .map_err(|e| Error::input(format!("cannot tokenize the prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    fn pixels(&self, items: &[&Prepared]) -> Result<Tensor> {
        let row = items
            .first()
            .map(|p| p.patches.len() / (p.grid.h * p.grid.w).max(1))
            .unwrap_or(1);
        let all: Vec<f32> = items
            .iter()
            .flat_map(|p| p.patches.iter().copied())
            .collect();
        let n = all.len() / row;
        Tensor::from_vec(all, (n, row), &self.device)
            .map_err(|e| Error::infra(format!("pixel tensor: {e}")))
    }

    /// The next-token logits at the answer position for each prepared image (one batch).
    pub fn answer_logits(&self, items: &[&Prepared]) -> Result<Vec<Vec<f32>>> {
        let seqs = items
            .iter()
            .map(|p| {
                Ok(SeqInput {
                    ids: self.prompt_ids(p.grid)?,
                    grids: vec![p.grid],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let px = self.pixels(items)?;
        let (logits, _) = self
            .model
            .prefill(&seqs, Some(&px), false)
            .map_err(|e| Error::infra(format!("forward pass: {e}")))?;
        logits
            .to_vec2::<f32>()
            .map_err(|e| Error::infra(format!("logits: {e}")))
    }

    /// Scores a batch of prepared images: the answer-position distribution and the greedy
    /// answer.
    pub fn score_batch(&self, items: &[&Prepared]) -> Result<Vec<Scored>> {
        let infra = |what: &str| {
            let what = what.to_string();
            move |e: candle_core::Error| Error::infra(format!("{what}: {e}"))
        };
        let mut seqs = items
            .iter()
            .map(|p| {
                Ok(SeqInput {
                    ids: self.prompt_ids(p.grid)?,
                    grids: vec![p.grid],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let px = self.pixels(items)?;
        let (logits, mut st) = self
            .model
            .prefill(&seqs, Some(&px), self.spec.kv_cache)
            .map_err(infra("forward pass"))?;
        let first = logits.to_vec2::<f32>().map_err(infra("logits"))?;
        let b = items.len();
        let mut generated: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        let mut cur = first.clone();
        for step in 0..self.spec.max_tokens as usize {
            let next: Vec<u32> = cur.iter().map(|l| argmax(l)).collect();
            for i in 0..b {
                if !done[i] {
                    if self.eos_ids.contains(&next[i]) {
                        done[i] = true;
                    } else {
                        generated[i].push(next[i]);
                    }
                }
            }
            if done.iter().all(|d| *d) || step + 1 == self.spec.max_tokens as usize {
                break;
            }
            // Finished sequences keep being fed (their extra tokens are discarded).
            let l = if self.spec.kv_cache {
                self.model
                    .step(&next, &mut st)
                    .map_err(infra("decode step"))?
            } else {
                for (s, &t) in seqs.iter_mut().zip(&next) {
                    s.ids.push(t);
                }
                self.model
                    .prefill(&seqs, Some(&px), false)
                    .map_err(infra("decode step"))?
                    .0
            };
            cur = l.to_vec2::<f32>().map_err(infra("logits"))?;
        }
        let mut out = Vec::with_capacity(b);
        for (i, l) in first.iter().enumerate() {
            let (p_pos, p_neg) = answer_probs(l, &self.pos_ids, &self.neg_ids);
            let mass = p_pos + p_neg;
            if !(mass > 0.0 && mass.is_finite()) {
                return Err(Error::infra(format!(
                    "the answer tokens have probability {mass} at the answer position"
                )));
            }
            let text = self
                .tokenizer
                .decode(&generated[i], true)
                .map_err(|e| Error::infra(format!("decode: {e}")))?;
            let parsed = parse_answer(&text, &self.positive, &self.negative);
            out.push(Scored {
                p_positive: p_pos / mass,
                answer_mass: mass,
                text,
                tokens: generated[i].clone(),
                parsed,
            });
        }
        Ok(out)
    }

    /// Greedy decoding of one prepared image asked `question`, for `medgate serve`: the same
    /// prompt construction, forward pass and greedy rule as [`Self::score_batch`] (a batch of
    /// one, the KV-cache switch of the spec), but the question is the caller's and each step
    /// is handed to `on_token` as soon as it is chosen: the token id and the next-token logits
    /// it was chosen from (so a server can stream and report logprobs). `on_token` returns
    /// false to stop early. An end-of-turn token ends decoding; it is not handed on.
    pub fn generate(
        &self,
        p: &Prepared,
        question: &str,
        max_tokens: usize,
        on_token: &mut dyn FnMut(u32, &[f32]) -> bool,
    ) -> Result<Generation> {
        let infra = |what: &str| {
            let what = what.to_string();
            move |e: candle_core::Error| Error::infra(format!("{what}: {e}"))
        };
        let mut seq = SeqInput {
            ids: self.prompt_ids_for(p.grid, question)?,
            grids: vec![p.grid],
        };
        let prompt_tokens = seq.ids.len();
        let px = self.pixels(&[p])?;
        let (logits, mut st) = self
            .model
            .prefill(std::slice::from_ref(&seq), Some(&px), self.spec.kv_cache)
            .map_err(infra("forward pass"))?;
        let mut cur = first_row(&logits)?;
        let mut generated = Vec::new();
        let mut eos = false;
        for step in 0..max_tokens {
            let next = argmax(&cur);
            if self.eos_ids.contains(&next) {
                eos = true;
                break;
            }
            generated.push(next);
            if !on_token(next, &cur) || step + 1 == max_tokens {
                break;
            }
            let l = if self.spec.kv_cache {
                self.model
                    .step(&[next], &mut st)
                    .map_err(infra("decode step"))?
            } else {
                seq.ids.push(next);
                self.model
                    .prefill(std::slice::from_ref(&seq), Some(&px), false)
                    .map_err(infra("decode step"))?
                    .0
            };
            cur = first_row(&l)?;
        }
        Ok(Generation {
            prompt_tokens,
            tokens: generated,
            eos,
        })
    }

    /// The text of `ids`, special tokens skipped (as a case's answer text is decoded).
    pub fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::infra(format!("decode: {e}")))
    }

    /// The bytes one token stands for: a byte-level BPE token (GPT-2 / Qwen style) mapped
    /// back through its byte alphabet; any other token as the tokenizer decodes it alone.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        if let Some(t) = self.tokenizer.id_to_token(id)
            && let Some(b) = byte_level_bytes(&t)
        {
            return b;
        }
        self.tokenizer
            .decode(&[id], false)
            .unwrap_or_default()
            .into_bytes()
    }

    /// The spec's `max_tokens` (a served request's default).
    pub fn max_tokens(&self) -> usize {
        self.spec.max_tokens as usize
    }

    /// The prediction recorded for a scored case.
    pub fn prediction(&self, s: &Scored) -> Prediction {
        let (score, source) = match self.spec.score {
            VlmScore::Logprobs => (s.p_positive, ScoreSource::Logprobs),
            VlmScore::Parsed => (
                match s.parsed {
                    Answer::Positive => 1.0,
                    Answer::Negative => 0.0,
                    Answer::Equivocal => 0.5,
                },
                ScoreSource::Parsed,
            ),
        };
        let parsed = match s.parsed {
            Answer::Positive => "positive",
            Answer::Negative => "negative",
            Answer::Equivocal => "equivocal",
        };
        Prediction {
            raw: format!(
                "text={} p(pos)={:.6} mass={:.6} parsed={parsed}",
                serde_json::Value::String(s.text.clone()),
                s.p_positive,
                s.answer_mass
            ),
            score,
            answer: s.parsed,
            score_source: source,
            attempts: 1,
        }
    }
}

/// What [`VlmBackend::generate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Prompt length in tokens (image placeholders expanded).
    pub prompt_tokens: usize,
    /// The tokens generated (the end-of-turn token excluded).
    pub tokens: Vec<u32>,
    /// Whether an end-of-turn token ended decoding (else `max_tokens` or the caller did).
    pub eos: bool,
}

fn first_row(logits: &Tensor) -> Result<Vec<f32>> {
    logits
        .to_vec2::<f32>()
        .map_err(|e| Error::infra(format!("logits: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("no logits row".into()))
}

/// The bytes of a byte-level BPE token string (GPT-2's `bytes_to_unicode` alphabet
/// inverted), or `None` when a character is outside that alphabet.
fn byte_level_bytes(token: &str) -> Option<Vec<u8>> {
    token
        .chars()
        .map(|c| {
            let c = c as u32;
            let printable = |b: u32| {
                (0x21..=0x7E).contains(&b)
                    || (0xA1..=0xAC).contains(&b)
                    || (0xAE..=0xFF).contains(&b)
            };
            if printable(c) {
                return Some(c as u8);
            }
            // The other 68 byte values map to U+0100 onwards, in byte order.
            let k = c.checked_sub(0x100)?;
            (0u32..256)
                .filter(|b| !printable(*b))
                .nth(k as usize)
                .map(|b| b as u8)
        })
        .collect()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// `(p_pos, p_neg)` from logits: a softmax in f64 summed over each token set.
pub fn answer_probs(logits: &[f32], pos: &[u32], neg: &[u32]) -> (f64, f64) {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64 - m).exp()).sum();
    let p = |ids: &[u32]| -> f64 {
        ids.iter()
            .filter_map(|&i| logits.get(i as usize))
            .map(|&l| (l as f64 - m).exp() / z)
            .sum()
    };
    (p(pos), p(neg))
}

impl Backend for VlmBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: crate::protocol::BackendKind::CandleVlm,
            model_sha256: Some(self.sha256.clone()),
            model_name: self.model_name.clone(),
            settings: self.settings.clone(),
        }
    }

    fn batch_size(&self) -> usize {
        self.spec.batch_size
    }

    fn predict_batch(&self, cases: &[CaseInput]) -> Vec<Result<Prediction, CaseError>> {
        let fail = |reason: String| CaseError {
            reason,
            attempts: 1,
        };
        let mut out: Vec<Option<Result<Prediction, CaseError>>> = vec![None; cases.len()];
        let mut ready: Vec<(usize, Prepared)> = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            match load_image_with(&case.image_path, &self.decode)
                .and_then(|d| self.prepare(&d.image))
            {
                Ok(p) => ready.push((i, p)),
                Err(e) => out[i] = Some(Err(fail(format!("case {}: {e}", case.case_id)))),
            }
        }
        for chunk in ready.chunks(self.spec.batch_size.max(1)) {
            let refs: Vec<&Prepared> = chunk.iter().map(|(_, p)| p).collect();
            match self.score_batch(&refs) {
                Ok(scores) => {
                    for ((i, _), s) in chunk.iter().zip(scores) {
                        out[*i] = Some(Ok(self.prediction(&s)));
                    }
                }
                Err(e) => {
                    for (i, _) in chunk {
                        out[*i] = Some(Err(fail(format!("case {}: {e}", cases[*i].case_id))));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(fail("internal: case not scored".into()))))
            .collect()
    }
}
