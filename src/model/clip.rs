//! The `candle-clip` backend: zero-shot classification with a CLIP-architecture checkpoint
//! run in-process by candle.
//!
//! # What it does
//! 1. [`ClipBackend::load`] reads a checkpoint directory in the Hugging Face layout
//!    (`config.json`, `model.safetensors`, `tokenizer.json`, optional
//!    `preprocessor_config.json`), hashes the weight file (refusing to run when the protocol
//!    pins a different SHA-256), builds candle-transformers' `ClipModel`, and embeds the
//!    protocol's prompts once. Nothing is downloaded.
//! 2. Images are converted to the model's channel count (grey is replicated to RGB; RGB is
//!    reduced to luma with ITU-R BT.601 weights for a grayscale model), resized so the shorter
//!    side is the model's `image_size` (antialiased bilinear, as PIL does when downscaling),
//!    centre-cropped to a square and normalised with the checkpoint's mean and std.
//! 3. # Score
//!    Each class (positive, negative) is represented by the **average of the L2-normalised
//!    text embeddings of its prompts, renormalised** (a prompt ensemble, as in the CLIP paper's
//!    ImageNet prompt ensembling). With `s_k = cos(image, class_k)` and `t = exp(logit_scale)`
//!    from the checkpoint:
//!
//!    `score = exp(t s_pos) / (exp(t s_pos) + exp(t s_neg))`,
//!
//!    the softmax probability of the positive class. `answer` is Positive when
//!    `score >= 0.5`; the protocol's own threshold is applied later by the harness. The
//!    `raw` field records `p(pos)=... sims=[s_pos,s_neg]`.
//!
//! The last step (normalisation, cosines, softmax) runs on the host in f64 so the score is
//! the same whatever precision the forward pass used up to the image embedding.
//!
//! # Why refuse rather than guess
//! A checkpoint without `logit_scale` or `vision_model.embeddings.class_embedding` would be
//! silently completed by candle with fresh random values, giving different scores on every
//! run; we refuse such checkpoints. Likewise for activations and layer-norm epsilons candle's
//! CLIP does not implement (see [`super::clip_ckpt`]).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::ClipModel;

use super::clip_ckpt::{
    CONFIG_FILE, ClipArch, PREPROCESSOR_FILE, Preprocess, TOKENIZER_FILE, WEIGHTS_FILE,
};
use super::{Answer, Backend, BackendInfo, CaseError, CaseInput, Prediction, ScoreSource};
use crate::error::{Error, Result};
use crate::golden::image::{DecodeOptions, LoadedImage, load_image_with};
use crate::protocol::{CandleClipSpec, Prompts};

/// Parses a device setting: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA device 0 when medgate
/// was built with the `cuda` feature and a GPU is present, else the CPU).
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim();
    let cuda = |n: usize| {
        Device::new_cuda(n).map_err(|e| {
            let hint = if cfg!(feature = "cuda") {
                "check the GPU index and the CUDA libraries, or set `device: cpu`"
            } else {
                "this medgate was built without the `cuda` feature: rebuild with \
                 `cargo build --release --features cuda` (needs nvcc), or set `device: cpu`"
            };
            Error::input_hint(format!("model.device `{s}` is not available: {e}"), hint)
        })
    };
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                Ok(Device::new_cuda(0).unwrap_or(Device::Cpu))
            } else {
                Ok(Device::Cpu)
            }
        }
        "cuda" => cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n),
            _ => Err(Error::input_hint(
                format!("model.device `{s}` is not a device"),
                "use `cpu`, `cuda:N` (e.g. `cuda:0`) or `auto`",
            )),
        },
    }
}

/// The name a device is recorded under: `cpu` or `cuda:N`.
pub fn device_name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Parses a precision setting for `device`: `f32` anywhere, `bf16` / `f16` on a GPU only.
pub fn parse_precision(s: &str, device: &Device) -> Result<DType> {
    let dt = match s.trim() {
        "f32" => return Ok(DType::F32),
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        other => {
            return Err(Error::input_hint(
                format!("model.precision `{other}` is not a precision"),
                "use `f32`, or `bf16` / `f16` on a GPU",
            ));
        }
    };
    if device.is_cpu() {
        return Err(Error::input_hint(
            format!("model.precision `{s}` is only supported on a GPU; the device is the CPU"),
            "use `precision: f32` on the CPU",
        ));
    }
    Ok(dt)
}

/// Softmax score of one image against the two class embeddings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScore {
    /// Probability of the positive class.
    pub p_positive: f64,
    /// Cosine similarity to the positive class embedding.
    pub sim_positive: f64,
    /// Cosine similarity to the negative class embedding.
    pub sim_negative: f64,
}

impl ClassScore {
    /// The compact `raw` string recorded for a prediction.
    pub fn raw(&self) -> String {
        format!(
            "p(pos)={:.6} sims=[{:.6},{:.6}]",
            self.p_positive, self.sim_positive, self.sim_negative
        )
    }

    /// The prediction this score makes.
    pub fn prediction(&self) -> Prediction {
        Prediction {
            raw: self.raw(),
            score: self.p_positive,
            answer: if self.p_positive >= 0.5 {
                Answer::Positive
            } else {
                Answer::Negative
            },
            score_source: ScoreSource::Softmax,
            attempts: 1,
        }
    }
}

/// A loaded CLIP checkpoint with the protocol's prompts embedded, ready to score images.
#[derive(Debug)]
pub struct ClipBackend {
    model: ClipModel,
    device: Device,
    dtype: DType,
    arch: ClipArch,
    pre: Preprocess,
    /// Unit-length class embeddings: positive, negative.
    classes: [Vec<f64>; 2],
    /// `exp(logit_scale)`.
    temperature: f64,
    sha256: String,
    model_name: String,
    batch_size: usize,
    settings: serde_json::Value,
    /// How DICOM images are decoded (the protocol's `golden_set.frames` / `voi`).
    decode: DecodeOptions,
}

fn candle_err(what: impl std::fmt::Display) -> impl Fn(candle_core::Error) -> Error {
    move |e| Error::infra(format!("{what}: {e}"))
}

fn l2_normalised(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl ClipBackend {
    /// Decodes DICOM images with `decode` (the protocol's frame and VOI choices).
    pub fn with_decode(mut self, decode: DecodeOptions) -> Self {
        self.decode = decode;
        self
    }

    /// Loads the checkpoint at `spec.path` (relative to `protocol_dir`) and embeds `prompts`.
    ///
    /// Errors (exit 2): a missing directory or file (named), an unreadable or unsupported
    /// config, weights whose SHA-256 differs from `spec.sha256` (both hashes printed),
    /// weights that do not match the config, an empty prompt list, a bad device or precision.
    pub fn load(spec: &CandleClipSpec, prompts: &Prompts, protocol_dir: &Path) -> Result<Self> {
        let dir = protocol_dir.join(&spec.path);
        if !dir.is_dir() {
            return Err(Error::input_hint(
                format!(
                    "candle-clip checkpoint directory {} not found",
                    dir.display()
                ),
                format!(
                    "model.path is relative to the protocol's directory; the checkpoint needs \
                     {CONFIG_FILE}, {WEIGHTS_FILE} and {TOKENIZER_FILE} in Hugging Face layout"
                ),
            ));
        }
        for f in [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE] {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(Error::input_hint(
                    format!("{}: missing from the candle-clip checkpoint", p.display()),
                    format!(
                        "a candle-clip checkpoint directory needs {CONFIG_FILE}, {WEIGHTS_FILE} \
                         and {TOKENIZER_FILE} (Hugging Face layout)"
                    ),
                ));
            }
        }
        if spec.batch_size == 0 {
            return Err(Error::input_hint(
                "model.batch_size is 0",
                "use a positive batch size, e.g. 32",
            ));
        }
        for (name, list) in [
            ("positive", &prompts.positive),
            ("negative", &prompts.negative),
        ] {
            if list.is_empty() || list.iter().any(|p| p.trim().is_empty()) {
                return Err(Error::input_hint(
                    format!("task.prompts.{name} is empty or has an empty prompt"),
                    "give at least one non-empty text per class for zero-shot classification",
                ));
            }
        }
        let device = parse_device(&spec.device)?;
        let dtype = parse_precision(&spec.precision, &device)?;

        let cfg_path = dir.join(CONFIG_FILE);
        let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let arch = ClipArch::from_hf_json(&cfg_text, &cfg_path)?;
        let pre_path = dir.join(PREPROCESSOR_FILE);
        let pre = if pre_path.is_file() {
            let t = std::fs::read_to_string(&pre_path).map_err(|e| Error::io(&pre_path, e))?;
            Preprocess::from_hf_json(&t, &pre_path, &arch)?
        } else {
            Preprocess::clip_default(arch.vision.image_size, arch.vision.num_channels)
        };

        // Read the weights once: the bytes hashed are the bytes loaded.
        let w_path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&w_path).map_err(|e| Error::io(&w_path, e))?;
        let sha256 = crate::hash::sha256_hex(&bytes);
        if let Some(pinned) = &spec.sha256 {
            let pinned = pinned.trim().to_ascii_lowercase();
            if pinned != sha256 {
                return Err(Error::input_hint(
                    format!(
                        "{}: SHA-256 mismatch: the protocol pins {pinned} but the file is {sha256}",
                        w_path.display()
                    ),
                    "the weights are not the ones the protocol was written for; restore them, \
                     or (for a new model version) amend the protocol's model.sha256",
                ));
            }
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &device).map_err(|e| {
            Error::input_hint(
                format!("{}: not a readable safetensors file: {e}", w_path.display()),
                "re-export the weights as safetensors",
            )
        })?;
        drop(bytes);
        for required in ["logit_scale", "vision_model.embeddings.class_embedding"] {
            if !tensors.contains_key(required) {
                return Err(Error::input_hint(
                    format!("{}: has no tensor `{required}`", w_path.display()),
                    "the checkpoint is incomplete (candle would fill the gap with random \
                     values, making scores irreproducible); export the full CLIPModel",
                ));
            }
        }
        let log_scale = tensors["logit_scale"]
            .to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f64>())
            .map_err(candle_err(format!("{}: logit_scale", w_path.display())))?;
        let temperature = match log_scale.as_slice() {
            [v] if v.is_finite() => v.exp(),
            _ => {
                return Err(Error::input_hint(
                    format!("{}: logit_scale is not one finite number", w_path.display()),
                    "check the checkpoint",
                ));
            }
        };
        let vb = VarBuilder::from_tensors(tensors, dtype, &device);
        let model = ClipModel::new(vb, &arch.to_candle()).map_err(|e| {
            Error::input_hint(
                format!(
                    "{}: weights do not match {}: {e}",
                    w_path.display(),
                    cfg_path.display()
                ),
                "the config and weights must come from the same checkpoint",
            )
        })?;

        let tok_path = dir.join(TOKENIZER_FILE);
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| {
            Error::input_hint(
                format!("{}: not a readable tokenizer: {e}", tok_path.display()),
                "expected a Hugging Face tokenizers JSON file",
            )
        })?;

        let mut backend = ClipBackend {
            model,
            device,
            dtype,
            arch,
            pre,
            classes: [Vec::new(), Vec::new()],
            temperature,
            sha256,
            model_name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string()),
            batch_size: spec.batch_size,
            settings: serde_json::Value::Null,
            decode: DecodeOptions::default(),
        };
        let pos = backend.class_embedding(&tokenizer, &prompts.positive, &tok_path)?;
        let neg = backend.class_embedding(&tokenizer, &prompts.negative, &tok_path)?;
        backend.classes = [pos, neg];
        backend.settings = crate::hash::canonicalize(&serde_json::json!({
            "batch_size": spec.batch_size,
            "device": device_name(&backend.device),
            "device_requested": spec.device,
            "image_mean": backend.pre.mean,
            "image_size": backend.pre.size,
            "image_std": backend.pre.std,
            "logit_scale_exp": temperature,
            "path": spec.path,
            "precision": format!("{:?}", backend.dtype).to_lowercase(),
            "preprocess": "channels to model; shortest edge resize (antialiased bilinear); centre crop; (x-mean)/std",
            "prompts": {"negative": prompts.negative, "positive": prompts.positive},
            "score": "softmax(exp(logit_scale) * cos(image, class)) [positive]; class = renormalised mean of L2-normalised prompt embeddings",
        }));
        Ok(backend)
    }

    /// Token ids of `text`, truncated to the model's context keeping the final (EOS) token.
    fn token_ids(
        &self,
        tokenizer: &tokenizers::Tokenizer,
        text: &str,
        tok_path: &Path,
    ) -> Result<Vec<u32>> {
        let enc = tokenizer.encode(text, true).map_err(|e| {
            Error::input_hint(
                format!(
                    "{}: cannot tokenise prompt {text:?}: {e}",
                    tok_path.display()
                ),
                "check the tokenizer file",
            )
        })?;
        let mut ids = enc.get_ids().to_vec();
        let max = self.arch.text.max_position_embeddings;
        if ids.len() > max {
            let last = ids[ids.len() - 1];
            ids.truncate(max - 1);
            ids.push(last);
        }
        if ids.is_empty() {
            return Err(Error::input_hint(
                format!("prompt {text:?} tokenises to nothing"),
                "use a prompt with words the tokenizer knows",
            ));
        }
        if let Some(bad) = ids
            .iter()
            .find(|&&i| i as usize >= self.arch.text.vocab_size)
        {
            return Err(Error::input_hint(
                format!(
                    "{}: token id {bad} is outside the model's vocabulary ({} tokens)",
                    tok_path.display(),
                    self.arch.text.vocab_size
                ),
                "the tokenizer and config must come from the same checkpoint",
            ));
        }
        Ok(ids)
    }

    /// The unit-length mean of the unit-length embeddings of `prompts`.
    fn class_embedding(
        &self,
        tokenizer: &tokenizers::Tokenizer,
        prompts: &[String],
        tok_path: &Path,
    ) -> Result<Vec<f64>> {
        let mut sum = vec![0f64; self.arch.projection_dim];
        for p in prompts {
            let ids = self.token_ids(tokenizer, p, tok_path)?;
            let n = ids.len();
            let ctx = || format!("embedding prompt {p:?}");
            let t = Tensor::from_vec(ids, (1, n), &self.device).map_err(candle_err(ctx()))?;
            let f = self
                .model
                .get_text_features(&t)
                .and_then(|f| f.to_dtype(DType::F64))
                .and_then(|f| f.squeeze(0))
                .and_then(|f| f.to_vec1::<f64>())
                .map_err(candle_err(ctx()))?;
            for (s, v) in sum.iter_mut().zip(l2_normalised(&f)) {
                *s += v;
            }
        }
        Ok(l2_normalised(&sum))
    }

    /// The architecture read from the checkpoint.
    pub fn arch(&self) -> &ClipArch {
        &self.arch
    }

    /// The preprocessing applied to images.
    pub fn preprocess_settings(&self) -> &Preprocess {
        &self.pre
    }

    /// The candle model (for benchmarks comparing against a bare forward loop).
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// SHA-256 of `model.safetensors`.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Preprocesses one image into the model's planar `(channels, size, size)` layout,
    /// normalised.
    pub fn preprocess(&self, img: &LoadedImage) -> Result<Vec<f32>> {
        preprocess_image(img, &self.pre, self.arch.vision.num_channels)
    }

    /// Stacks preprocessed images into a batch tensor on the model's device and dtype.
    pub fn batch_tensor(&self, pixels: &[Vec<f32>]) -> Result<Tensor> {
        let s = self.pre.size;
        let c = self.arch.vision.num_channels;
        let flat: Vec<f32> = pixels.concat();
        Tensor::from_vec(flat, (pixels.len(), c, s, s), &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(candle_err("building the image batch"))
    }

    /// Whether `img` is already the model's size and channel count: then it is batched and
    /// normalised by candle ops in one go, with no per-pixel Rust loop.
    fn is_model_shaped(&self, img: &LoadedImage) -> bool {
        let (s, c) = (self.pre.size, self.arch.vision.num_channels);
        img.width as usize == s
            && img.height as usize == s
            && img.channels as usize == c
            && img.data.len() == s * s * c
    }

    /// The normalised batch tensor `(n, channels, size, size)` for decoded images.
    ///
    /// Grayscale images already at the model's size (the common case for the demo model) are
    /// concatenated and normalised by one candle `affine` op; everything else goes through
    /// [`preprocess_image`]. Both compute `x * (1/std) + (-mean/std)` in f32, so both paths
    /// give identical values.
    pub fn images_tensor(&self, images: &[&LoadedImage]) -> Result<Tensor> {
        let c = self.arch.vision.num_channels;
        if c != 1 || !images.iter().all(|i| self.is_model_shaped(i)) {
            let px = images
                .iter()
                .map(|i| self.preprocess(i))
                .collect::<Result<Vec<_>>>()?;
            return self.batch_tensor(&px);
        }
        let (n, s) = (images.len(), self.pre.size);
        let mut flat = Vec::with_capacity(n * s * s);
        for i in images {
            flat.extend_from_slice(&i.data);
        }
        let (mul, add) = affine_coefficients(self.pre.mean[0], self.pre.std[0]);
        Tensor::from_vec(flat, (n, 1, s, s), &self.device)
            .and_then(|x| x.affine(f64::from(mul), f64::from(add)))
            .and_then(|x| x.to_dtype(self.dtype))
            .map_err(candle_err("building the image batch"))
    }

    /// Scores a batch tensor `(n, channels, size, size)`.
    pub fn score_tensor(&self, pixels: &Tensor) -> Result<Vec<ClassScore>> {
        let feats = self
            .model
            .get_image_features(pixels)
            .and_then(|f| f.to_dtype(DType::F32))
            .and_then(|f| f.to_vec2::<f32>())
            .map_err(candle_err("CLIP image forward pass"))?;
        Ok(feats
            .iter()
            .map(|f| {
                let f: Vec<f64> = f.iter().map(|&x| x as f64).collect();
                self.score_features(&f)
            })
            .collect())
    }

    /// Scores one (unnormalised) image embedding.
    pub fn score_features(&self, image_features: &[f64]) -> ClassScore {
        let u = l2_normalised(image_features);
        let sp = dot(&u, &self.classes[0]);
        let sn = dot(&u, &self.classes[1]);
        // Two-way softmax, written as a logistic of the difference for stability.
        let p = 1.0 / (1.0 + (-(self.temperature * (sp - sn))).exp());
        ClassScore {
            p_positive: p,
            sim_positive: sp,
            sim_negative: sn,
        }
    }

    /// Scores decoded images (in batches of `batch_size`), returning full score details.
    pub fn score_images_detailed(&self, images: &[LoadedImage]) -> Result<Vec<ClassScore>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.batch_size) {
            let refs: Vec<&LoadedImage> = chunk.iter().collect();
            out.extend(self.score_tensor(&self.images_tensor(&refs)?)?);
        }
        Ok(out)
    }

    /// The probability of the positive class for each image, in input order.
    pub fn score_images(&self, images: &[LoadedImage]) -> Result<Vec<f64>> {
        Ok(self
            .score_images_detailed(images)?
            .into_iter()
            .map(|s| s.p_positive)
            .collect())
    }
}

impl Backend for ClipBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "candle-clip".into(),
            model_sha256: Some(self.sha256.clone()),
            model_name: self.model_name.clone(),
            settings: self.settings.clone(),
        }
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn predict_batch(&self, cases: &[CaseInput]) -> Vec<Result<Prediction, CaseError>> {
        let fail = |reason: String| CaseError {
            reason,
            attempts: 1,
        };
        // Decode and check each case on its own: one unreadable image fails only itself.
        let mut out: Vec<Option<Result<Prediction, CaseError>>> = vec![None; cases.len()];
        let mut ready: Vec<(usize, LoadedImage)> = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            match load_image_with(&case.image_path, &self.decode)
                .map(|d| d.image)
                .and_then(|img| check_image(&img).map(|()| img))
            {
                Ok(img) => ready.push((i, img)),
                Err(e) => out[i] = Some(Err(fail(format!("case {}: {e}", case.case_id)))),
            }
        }
        for chunk in ready.chunks(self.batch_size) {
            let refs: Vec<&LoadedImage> = chunk.iter().map(|(_, img)| img).collect();
            match self
                .images_tensor(&refs)
                .and_then(|t| self.score_tensor(&t))
            {
                Ok(scores) => {
                    for ((i, _), s) in chunk.iter().zip(scores) {
                        out[*i] = Some(Ok(s.prediction()));
                    }
                }
                Err(e) => {
                    for (i, _) in chunk {
                        out[*i] = Some(Err(fail(e.to_string())));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(fail("internal: case not scored".into()))))
            .collect()
    }
}

/// Antialiased linear-resampling weights (PIL's `BILINEAR` filter): for each output index,
/// the first input index and the normalised weights of the inputs it covers.
fn resample_weights(input: usize, output: usize, offset: f64, span: f64) -> Vec<(usize, Vec<f32>)> {
    // `span` input pixels map onto `output` pixels, starting at input coordinate `offset`.
    let scale = span / output as f64;
    let support = scale.max(1.0);
    (0..output)
        .map(|o| {
            let center = offset + (o as f64 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(input);
            let mut w: Vec<f64> = (lo..hi)
                .map(|i| {
                    let d = ((i as f64 + 0.5) - center).abs() / support;
                    (1.0 - d).max(0.0)
                })
                .collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|x| *x /= sum);
            } else {
                // Degenerate (output beyond input): nearest pixel.
                let n = (center.floor().max(0.0) as usize).min(input - 1);
                return (n, vec![1.0]);
            }
            (lo, w.into_iter().map(|x| x as f32).collect())
        })
        .collect()
}

/// `(1/std, -mean/std)` rounded to f32 exactly as candle's `affine(mul, add)` rounds them.
fn affine_coefficients(mean: f32, std: f32) -> (f32, f32) {
    let mul = 1.0 / f64::from(std);
    let add = -f64::from(mean) / f64::from(std);
    (mul as f32, add as f32)
}

/// Checks a decoded image is something [`preprocess_image`] can handle.
pub fn check_image(img: &LoadedImage) -> Result<()> {
    let (w, h, c) = (
        img.width as usize,
        img.height as usize,
        img.channels as usize,
    );
    if w == 0 || h == 0 || !(1..=4).contains(&c) || img.data.len() != w * h * c {
        return Err(Error::input(format!(
            "image is {w}x{h} with {c} channel(s) and {} samples; cannot preprocess",
            img.data.len()
        )));
    }
    Ok(())
}

/// Converts, resizes (shortest edge, then centre crop) and normalises one image into planar
/// `(channels, size, size)` f32, the layout the patch embedding expects.
pub fn preprocess_image(img: &LoadedImage, pre: &Preprocess, channels: usize) -> Result<Vec<f32>> {
    check_image(img)?;
    let (w, h, c) = (
        img.width as usize,
        img.height as usize,
        img.channels as usize,
    );
    // 1. Planar planes in the model's channel count, at the source resolution.
    let px = |i: usize, k: usize| img.data[i * c + k];
    let planes: Vec<Vec<f32>> = match (channels, c) {
        (3, 1 | 2) => {
            let g: Vec<f32> = (0..w * h).map(|i| px(i, 0)).collect();
            vec![g.clone(), g.clone(), g]
        }
        (3, _) => (0..3)
            .map(|k| (0..w * h).map(|i| px(i, k)).collect())
            .collect(),
        (_, 1 | 2) => vec![(0..w * h).map(|i| px(i, 0)).collect()],
        (_, _) => vec![
            (0..w * h)
                .map(|i| 0.299 * px(i, 0) + 0.587 * px(i, 1) + 0.114 * px(i, 2))
                .collect(),
        ],
    };
    // 2. Resize the shorter side to `size` (the longer to floor(size * long / short), as HF's
    //    CLIPImageProcessor does), then centre-crop; done as one resampling of the crop window.
    let s = pre.size;
    let (rw, rh) = if w <= h {
        (s, (s as f64 * h as f64 / w as f64).floor() as usize)
    } else {
        ((s as f64 * w as f64 / h as f64).floor() as usize, s)
    };
    let (left, top) = ((rw - s) / 2, (rh - s) / 2);
    let resized: Vec<Vec<f32>> = if w == s && h == s {
        planes
    } else {
        let sx = w as f64 / rw as f64;
        let sy = h as f64 / rh as f64;
        let wx = resample_weights(w, s, left as f64 * sx, s as f64 * sx);
        let wy = resample_weights(h, s, top as f64 * sy, s as f64 * sy);
        planes
            .iter()
            .map(|p| {
                // Horizontal pass: h rows of s.
                let mut tmp = vec![0f32; h * s];
                for y in 0..h {
                    let row = &p[y * w..(y + 1) * w];
                    for (x, (lo, ws)) in wx.iter().enumerate() {
                        tmp[y * s + x] =
                            ws.iter().enumerate().map(|(k, wt)| row[lo + k] * wt).sum();
                    }
                }
                // Vertical pass: s rows of s.
                let mut outp = vec![0f32; s * s];
                for (y, (lo, ws)) in wy.iter().enumerate() {
                    for x in 0..s {
                        outp[y * s + x] = ws
                            .iter()
                            .enumerate()
                            .map(|(k, wt)| tmp[(lo + k) * s + x] * wt)
                            .sum();
                    }
                }
                outp
            })
            .collect()
    };
    // 3. Normalise: x * (1/std) + (-mean/std), as candle's `affine` computes it.
    let mut out = Vec::with_capacity(channels * s * s);
    for (k, p) in resized.iter().enumerate() {
        let (mul, add) = affine_coefficients(pre.mean[k], pre.std[k]);
        out.extend(p.iter().map(|v| v * mul + add));
    }
    Ok(out)
}

/// The directory a protocol's `model.path` resolves to.
pub fn checkpoint_dir(spec: &CandleClipSpec, protocol_dir: &Path) -> PathBuf {
    protocol_dir.join(&spec.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(w: u32, h: u32, data: Vec<f32>) -> LoadedImage {
        LoadedImage {
            width: w,
            height: h,
            channels: 1,
            data,
        }
    }

    fn unit_pre(size: usize, ch: usize) -> Preprocess {
        Preprocess {
            size,
            mean: vec![0.0; ch],
            std: vec![1.0; ch],
        }
    }

    #[test]
    fn devices_parse_and_bad_ones_are_input_errors() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cuda:-1", ""] {
            let e = parse_device(bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::exit::INPUT, "{bad}");
            assert!(e.render().contains("cuda:N"), "{}", e.render());
        }
        if !cfg!(feature = "cuda") {
            // Without the feature `auto` falls back to the CPU and `cuda:0` says how to fix it.
            assert!(parse_device("auto").unwrap().is_cpu());
            let e = parse_device("cuda:0").unwrap_err().render();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }

    #[test]
    fn half_precision_is_refused_on_the_cpu() {
        assert_eq!(parse_precision("f32", &Device::Cpu).unwrap(), DType::F32);
        let e = parse_precision("bf16", &Device::Cpu).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::INPUT);
        assert!(parse_precision("f64", &Device::Cpu).is_err());
    }

    #[test]
    fn same_size_image_is_only_normalised() {
        let img = gray(2, 2, vec![0.0, 0.25, 0.5, 1.0]);
        let pre = Preprocess {
            size: 2,
            mean: vec![0.5],
            std: vec![0.25],
        };
        assert_eq!(
            preprocess_image(&img, &pre, 1).unwrap(),
            vec![-2.0, -1.0, 0.0, 2.0]
        );
        // A 3-channel model gets the grey plane three times.
        let pre3 = unit_pre(2, 3);
        let out = preprocess_image(&img, &pre3, 3).unwrap();
        assert_eq!(out.len(), 12);
        assert_eq!(&out[0..4], &out[8..12]);
    }

    #[test]
    fn downscale_matches_pil_bilinear_weights() {
        // 4x4 with columns 0, 1/3, 2/3, 1 -> 2x2. PIL's antialiased bilinear at scale 2 has
        // support 2 and weights (3/7, 3/7, 1/7) for output 0 and (1/7, 3/7, 3/7) for output 1
        // (hand-derived from PIL's ImagingResample: filter(x) = 1 - |x| on (x - centre) / 2).
        let row = [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0];
        let data: Vec<f32> = (0..4).flat_map(|_| row).collect();
        let out = preprocess_image(&gray(4, 4, data), &unit_pre(2, 1), 1).unwrap();
        let (a, b) = (5.0 / 21.0, 16.0 / 21.0);
        for (got, want) in out.iter().zip([a, b, a, b]) {
            assert!((got - want).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn non_square_images_are_resized_on_the_short_side_and_centre_cropped() {
        // 8 wide x 4 high, value = column index. Short side 4 -> 2: the resized image is 4x2,
        // the crop keeps resized columns 1 and 2, i.e. source columns 2..6 (centre 3.0 and
        // 5.0 with weights (1/7, 3/7, 3/7... ) symmetric around them).
        let data: Vec<f32> = (0..4).flat_map(|_| (0..8).map(|x| x as f32)).collect();
        let out = preprocess_image(&gray(8, 4, data), &unit_pre(2, 1), 1).unwrap();
        // Symmetric weights around centres 3.0 and 5.0 (pixel centres at i + 0.5): values
        // 2.5 and 4.5.
        for (got, want) in out.iter().zip([2.5, 4.5, 2.5, 4.5]) {
            assert!((got - want).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn rgb_to_grayscale_uses_bt601_luma() {
        let img = LoadedImage {
            width: 1,
            height: 1,
            channels: 3,
            data: vec![1.0, 0.5, 0.0],
        };
        let out = preprocess_image(&img, &unit_pre(1, 1), 1).unwrap();
        assert!((out[0] - (0.299 + 0.5 * 0.587)).abs() < 1e-6);
    }

    #[test]
    fn malformed_images_are_errors_not_panics() {
        let bad = gray(2, 2, vec![0.0; 3]);
        assert!(preprocess_image(&bad, &unit_pre(2, 1), 1).is_err());
        let empty = gray(0, 0, vec![]);
        assert!(preprocess_image(&empty, &unit_pre(2, 1), 1).is_err());
    }

    #[test]
    fn raw_and_answer_follow_the_softmax() {
        let s = ClassScore {
            p_positive: 0.5,
            sim_positive: 0.3,
            sim_negative: 0.3,
        };
        let p = s.prediction();
        assert_eq!(p.answer, Answer::Positive);
        assert_eq!(p.score_source, ScoreSource::Softmax);
        assert_eq!(p.raw, "p(pos)=0.500000 sims=[0.300000,0.300000]");
    }
}
