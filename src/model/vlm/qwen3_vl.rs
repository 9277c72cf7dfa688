//! Qwen3-VL: the vision tower, the DeepStack mergers and the text decoder with interleaved
//! multimodal rotary positions (M-RoPE), written against Hugging Face transformers'
//! `modeling_qwen3_vl.py` and checked against it by the parity fixture in
//! `tests/fixtures/vlm/`.
//!
//! # Why not candle-transformers' `qwen3_vl` as it is
//! candle-transformers 0.11.1 ships a Qwen3-VL, and its vision tower is reused here almost
//! line for line (MIT/Apache-2.0, as candle). Its text side cannot be used for validation:
//! - the prompt (prefill) runs **without a causal mask** (the mask is only built for one-token
//!   steps), so every prompt token attends to the tokens after it;
//! - positions are plain 1-D RoPE, while Qwen3-VL rotates image tokens by their (t, h, w)
//!   grid coordinates with the interleaved M-RoPE layout (`mrope_section`);
//! - the patch merger uses the tanh approximation of GELU where transformers uses the exact
//!   erf form;
//! - the KV cache lives inside the layers with no way to clear it, and only the last
//!   position's logits come back.
//!
//! Each of these changes the next-token distribution, which is what medgate scores. This
//! module keeps the cache outside the model (so one loaded model serves many cases and
//! threads), builds the causal and padding mask itself, and returns the logits at the last
//! position of every sequence in a left-padded batch.
//!
//! # Half precision
//! In bf16 / f16 every step rounds where `modeling_qwen3_vl.py` rounds in that dtype, because
//! candle's own half-precision ops round elsewhere: the patch embedding is a matmul
//! (`PatchEmbed`); biased linears sum product and bias in f32 before one rounding
//! (`BiasLinear`); activations run in f32 (`in_f32`); the text RMSNorm normalises in f32,
//! rounds, then scales (`TextRmsNorm`); attention scores are scaled by the f32 scale and the
//! softmax runs in f32 (`scaled_scores`); the vision rotation and the position-embedding
//! interpolation run in f32; the text rotary cos / sin are rounded to the dtype. Except the
//! patch embedding (a matmul in f32 too), each of these is the identity in f32, where the f32
//! parity fixture holds at 1e-4.

use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{
    Activation, Embedding, LayerNorm, LayerNormConfig, Linear, RmsNorm, VarBuilder, embedding,
    layer_norm, linear, linear_b,
};
use serde::Deserialize;

/// The vision tower's settings (`config.json` → `vision_config`).
#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    /// Transformer blocks.
    pub depth: usize,
    /// Width of the tower.
    pub hidden_size: usize,
    /// Width of the merged tokens handed to the text model.
    pub out_hidden_size: usize,
    /// Activation of the block MLPs.
    #[serde(default = "default_vision_act")]
    pub hidden_act: Activation,
    /// Width of the block MLPs.
    pub intermediate_size: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Image channels (3).
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Patches merged per side into one text token.
    pub spatial_merge_size: usize,
    /// Frames per temporal patch (2; a still image is repeated).
    pub temporal_patch_size: usize,
    /// Learned position embeddings (a square grid, interpolated to the image's grid).
    pub num_position_embeddings: usize,
    /// Blocks whose output also feeds the text model (DeepStack).
    #[serde(default)]
    pub deepstack_visual_indexes: Vec<usize>,
    /// Axial rotary settings (`rope_theta`, default 10000).
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
}

fn default_vision_act() -> Activation {
    Activation::GeluPytorchTanh
}
fn default_in_channels() -> usize {
    3
}

/// Rotary settings, under `rope_parameters` (transformers 5) or `rope_scaling` (4.x).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct RopeParameters {
    /// Base of the rotary frequencies.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Frequencies given to the t, h and w coordinates.
    #[serde(default)]
    pub mrope_section: Option<Vec<usize>>,
    /// Whether the sections interleave (Qwen3-VL: true).
    #[serde(default)]
    pub mrope_interleaved: Option<bool>,
    /// Only the default rope type is implemented.
    #[serde(default)]
    pub rope_type: Option<String>,
}

/// The text decoder's settings (`config.json` → `text_config`).
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the decoder.
    pub hidden_size: usize,
    /// Width of the MLPs.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// MLP activation.
    #[serde(default = "default_text_act")]
    pub hidden_act: Activation,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base (4.x layout).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Rotary settings (transformers 5 layout).
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// Rotary settings (4.x layout).
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// Whether the output head shares the input embedding.
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Bias on q/k/v/o (Qwen3: false).
    #[serde(default)]
    pub attention_bias: bool,
}

fn default_text_act() -> Activation {
    Activation::Silu
}

/// A Qwen3-VL `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The text decoder.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// The placeholder token replaced by image embeddings.
    pub image_token_id: u32,
    /// Token opening an image.
    pub vision_start_token_id: u32,
    /// Token closing an image.
    pub vision_end_token_id: u32,
    /// Top-level tie flag (some exports put it here).
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
}

impl Config {
    /// Whether `lm_head` is the input embedding.
    pub fn tied(&self) -> bool {
        self.tie_word_embeddings
            .or(self.text_config.tie_word_embeddings)
            .unwrap_or(false)
    }

    /// Rotary base, M-RoPE sections and the interleave flag, checked.
    pub fn rope(&self) -> std::result::Result<(f64, [usize; 3]), String> {
        let t = &self.text_config;
        let p = t
            .rope_parameters
            .clone()
            .or_else(|| t.rope_scaling.clone())
            .unwrap_or_default();
        if let Some(rt) = p.rope_type.as_deref()
            && rt != "default"
        {
            return Err(format!(
                "text_config rope_type `{rt}` is not supported (only `default`)"
            ));
        }
        let theta = p
            .rope_theta
            .or(t.rope_theta)
            .ok_or("text_config has no rope_theta")?;
        let sec = p.mrope_section.ok_or("text_config has no mrope_section")?;
        let [a, b, c] = sec[..] else {
            return Err(format!(
                "mrope_section must have 3 entries, has {}",
                sec.len()
            ));
        };
        if a + b + c != t.head_dim / 2 {
            return Err(format!(
                "mrope_section {sec:?} must sum to head_dim / 2 = {}",
                t.head_dim / 2
            ));
        }
        if p.mrope_interleaved == Some(false) {
            return Err("mrope_interleaved: false (Qwen2.5-VL layout) is not Qwen3-VL".into());
        }
        Ok((theta, [a, b, c]))
    }
}

// ---------------------------------------------------------------- vision tower

/// The patch embedding. In transformers it is a `Conv3d` whose kernel and stride are one whole
/// patch (`temporal_patch_size x patch_size x patch_size`), so each output is one dot product
/// of a patch row (already flattened in the kernel's `(C, T, P, P)` order by the processor)
/// with one flattened kernel: a matmul, which candle runs in every precision on the CPU (its
/// CPU convolutions are slow or missing in bf16 / f16).
struct PatchEmbed {
    proj: BiasLinear,
    row_len: usize,
}

impl PatchEmbed {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("proj");
        let w = vb.get(
            (
                cfg.hidden_size,
                cfg.in_channels,
                cfg.temporal_patch_size,
                cfg.patch_size,
                cfg.patch_size,
            ),
            "weight",
        )?;
        let row_len = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size * cfg.patch_size;
        let w = w.reshape((cfg.hidden_size, row_len))?;
        Ok(Self {
            proj: BiasLinear::new(w, vb.get(cfg.hidden_size, "bias")?),
            row_len,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.proj.forward(&xs.reshape(((), self.row_len))?)
    }
}

/// A linear layer with a bias, rounded as torch's CPU `addmm` rounds in bf16 / f16: the
/// product and the bias summed in f32 and rounded once (candle's half-precision matmul rounds
/// the product, then the bias add rounds again). candle's CPU matmul widens half operands to
/// f32 anyway, so this costs a conversion, not a slower kernel. Plain `Linear` in f32.
#[derive(Debug, Clone)]
struct BiasLinear(Linear);

impl BiasLinear {
    fn new(w: Tensor, b: Tensor) -> Self {
        Self(Linear::new(w, Some(b)))
    }

    fn load(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self(linear(in_dim, out_dim, vb)?))
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dt = xs.dtype();
        let (Some(b), true) = (self.0.bias(), dt != DType::F32) else {
            return self.0.forward(xs);
        };
        let w = self.0.weight().to_dtype(DType::F32)?;
        let x = xs.to_dtype(DType::F32)?;
        let y = match *x.dims() {
            [b0, b1, _] => x
                .matmul(&w.broadcast_left(b0)?.t()?)?
                .reshape((b0, b1, ()))?,
            _ => x.matmul(&w.t()?)?,
        };
        y.broadcast_add(&b.to_dtype(DType::F32)?)?.to_dtype(dt)
    }
}

/// Attention scores `q k^T * scale` as torch forms them in bf16 / f16 (the product rounded,
/// scaled by the f32 scalar, rounded again), returned in f32 for the softmax. candle's own
/// half-precision scaling first rounds the scale itself to the half type (1/sqrt(32) moves by
/// 1e-4). In f32 exactly `q k^T * scale`.
fn scaled_scores(q: &Tensor, k: &Tensor, scale: f64) -> Result<Tensor> {
    let dt = q.dtype();
    let att = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? * scale)?;
    att.to_dtype(dt)?.to_dtype(DType::F32)
}

/// Runs `f` in f32 and rounds its result back to `xs`'s dtype once, as torch's CPU kernels do
/// for bf16 / f16 elementwise math (candle's half-precision activations round after every
/// step of the formula). A no-op wrapper in f32.
fn in_f32(xs: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let dt = xs.dtype();
    if dt == DType::F32 {
        return f(xs);
    }
    f(&xs.to_dtype(DType::F32)?)?.to_dtype(dt)
}

/// Qwen3-VL's text RMSNorm. In f32 candle's fused kernel; in half precision as transformers'
/// `Qwen3VLTextRMSNorm`: normalise in f32, round to the input dtype, then multiply by the
/// weight in that dtype (two roundings, where the fused kernel has one).
#[derive(Debug, Clone)]
struct TextRmsNorm {
    fused: RmsNorm,
    weight: Tensor,
    eps: f64,
}

impl TextRmsNorm {
    fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get(size, "weight")?;
        Ok(Self {
            fused: RmsNorm::new(weight.clone(), eps),
            weight,
            eps,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dt = xs.dtype();
        if dt == DType::F32 {
            return self.fused.forward(xs);
        }
        let x = xs.to_dtype(DType::F32)?;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let x = x.broadcast_mul(&(var + self.eps)?.sqrt()?.recip()?)?;
        x.to_dtype(dt)?.broadcast_mul(&self.weight)
    }
}

fn rotate_half(xs: &Tensor) -> Result<Tensor> {
    let last = xs.dim(D::Minus1)?;
    let a = xs.narrow(D::Minus1, 0, last / 2)?;
    let b = xs.narrow(D::Minus1, last / 2, last - last / 2)?;
    Tensor::cat(&[&b.neg()?, &a], D::Minus1)
}

struct VisionBlock {
    norm1: LayerNorm,
    norm2: LayerNorm,
    qkv: BiasLinear,
    proj: BiasLinear,
    fc1: BiasLinear,
    fc2: BiasLinear,
    act: Activation,
    num_heads: usize,
    head_dim: usize,
}

impl VisionBlock {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let ln = LayerNormConfig {
            eps: 1e-6,
            ..Default::default()
        };
        let h = cfg.hidden_size;
        Ok(Self {
            norm1: layer_norm(h, ln, vb.pp("norm1"))?,
            norm2: layer_norm(h, ln, vb.pp("norm2"))?,
            qkv: BiasLinear::load(h, 3 * h, vb.pp("attn.qkv"))?,
            proj: BiasLinear::load(h, h, vb.pp("attn.proj"))?,
            fc1: BiasLinear::load(h, cfg.intermediate_size, vb.pp("mlp.linear_fc1"))?,
            fc2: BiasLinear::load(cfg.intermediate_size, h, vb.pp("mlp.linear_fc2"))?,
            act: cfg.hidden_act,
            num_heads: cfg.num_heads,
            head_dim: h / cfg.num_heads,
        })
    }

    fn attention(&self, xs: &Tensor, cu: &[usize], cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let n = xs.dim(0)?;
        let qkv = self
            .qkv
            .forward(xs)?
            .reshape((n, 3, self.num_heads, self.head_dim))?
            .permute((1, 0, 2, 3))?;
        // transformers' `apply_rotary_pos_emb_vision`: the rotation in f32, q and k rounded
        // back to the run's dtype; eager attention then multiplies in that dtype with the
        // softmax in f32 (all no-ops in f32).
        let dt = xs.dtype();
        let q = qkv.i(0)?.to_dtype(DType::F32)?;
        let k = qkv.i(1)?.to_dtype(DType::F32)?;
        let v = qkv.i(2)?;
        let cos = cos.unsqueeze(1)?;
        let sin = sin.unsqueeze(1)?;
        let q = (q.broadcast_mul(&cos)? + rotate_half(&q)?.broadcast_mul(&sin)?)?.to_dtype(dt)?;
        let k = (k.broadcast_mul(&cos)? + rotate_half(&k)?.broadcast_mul(&sin)?)?.to_dtype(dt)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mut outs = Vec::new();
        for w in cu.windows(2) {
            let (s, len) = (w[0], w[1] - w[0]);
            let q = q.narrow(0, s, len)?.transpose(0, 1)?.contiguous()?;
            let k = k.narrow(0, s, len)?.transpose(0, 1)?.contiguous()?;
            let v = v.narrow(0, s, len)?.transpose(0, 1)?.contiguous()?;
            let att = scaled_scores(&q, &k, scale)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?.to_dtype(dt)?;
            let o = att.matmul(&v)?.transpose(0, 1)?.reshape((len, ()))?;
            outs.push(o);
        }
        let o = Tensor::cat(&outs, 0)?;
        self.proj.forward(&o)
    }

    fn forward(&self, xs: &Tensor, cu: &[usize], cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let xs = (xs + self.attention(&self.norm1.forward(xs)?, cu, cos, sin)?)?;
        let act = self.act;
        let h = in_f32(&self.fc1.forward(&self.norm2.forward(&xs)?)?, |x| {
            x.apply(&act)
        })?;
        xs + self.fc2.forward(&h)?
    }
}

struct PatchMerger {
    norm: LayerNorm,
    postshuffle: bool,
    merged: usize,
    fc1: BiasLinear,
    fc2: BiasLinear,
}

impl PatchMerger {
    fn new(cfg: &VisionConfig, postshuffle: bool, vb: VarBuilder) -> Result<Self> {
        let merged = cfg.hidden_size * cfg.spatial_merge_size.pow(2);
        let ln = LayerNormConfig {
            eps: 1e-6,
            ..Default::default()
        };
        Ok(Self {
            norm: layer_norm(
                if postshuffle { merged } else { cfg.hidden_size },
                ln,
                vb.pp("norm"),
            )?,
            postshuffle,
            merged,
            fc1: BiasLinear::load(merged, merged, vb.pp("linear_fc1"))?,
            fc2: BiasLinear::load(merged, cfg.out_hidden_size, vb.pp("linear_fc2"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = if self.postshuffle {
            self.norm.forward(&xs.reshape(((), self.merged))?)?
        } else {
            self.norm.forward(xs)?.reshape(((), self.merged))?
        };
        // transformers: nn.GELU() (erf), not the tanh approximation.
        self.fc2
            .forward(&in_f32(&self.fc1.forward(&xs)?, |x| x.gelu_erf())?)
    }
}

/// The grid of one image in patches: temporal, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Temporal patches (1 for a still image).
    pub t: usize,
    /// Patch rows.
    pub h: usize,
    /// Patch columns.
    pub w: usize,
}

struct VisionTower {
    patch_embed: PatchEmbed,
    pos_embed: Embedding,
    blocks: Vec<VisionBlock>,
    merger: PatchMerger,
    deepstack: Vec<PatchMerger>,
    deepstack_at: Vec<usize>,
    inv_freq: Vec<f32>,
    merge: usize,
    grid_side: usize,
    hidden: usize,
}

impl VisionTower {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..cfg.depth)
            .map(|i| VisionBlock::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let deepstack = (0..cfg.deepstack_visual_indexes.len())
            .map(|i| PatchMerger::new(cfg, true, vb.pp(format!("deepstack_merger_list.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let head_dim = cfg.hidden_size / cfg.num_heads;
        let dim = head_dim / 2;
        let theta = cfg
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .unwrap_or(10000.0) as f32;
        let inv_freq = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / theta.powf(i as f32 / dim as f32))
            .collect();
        let grid_side = (cfg.num_position_embeddings as f64).sqrt().round() as usize;
        if grid_side * grid_side != cfg.num_position_embeddings {
            candle_core::bail!(
                "vision_config.num_position_embeddings {} is not a perfect square",
                cfg.num_position_embeddings
            );
        }
        Ok(Self {
            patch_embed: PatchEmbed::new(cfg, vb.pp("patch_embed"))?,
            pos_embed: embedding(
                cfg.num_position_embeddings,
                cfg.hidden_size,
                vb.pp("pos_embed"),
            )?,
            blocks,
            merger: PatchMerger::new(cfg, false, vb.pp("merger"))?,
            deepstack,
            deepstack_at: cfg.deepstack_visual_indexes.clone(),
            inv_freq,
            merge: cfg.spatial_merge_size,
            grid_side,
            hidden: cfg.hidden_size,
        })
    }

    /// Bilinear interpolation of the learned position grid onto each image's grid, in the
    /// merged (block-major) token order (transformers' `fast_pos_embed_interpolate`).
    fn pos_embeds(&self, grids: &[Grid], device: &Device) -> Result<Tensor> {
        let n = self.grid_side;
        // transformers' align_corners source coordinate: i * (n - 1) / max(size - 1, 1), f32.
        let linspace = |steps: usize| -> Vec<f32> {
            let den = steps.saturating_sub(1).max(1) as f32;
            (0..steps)
                .map(|i| i as f32 * (n - 1) as f32 / den)
                .collect()
        };
        let mut out = Vec::new();
        for g in grids {
            let hv = linspace(g.h);
            let wv = linspace(g.w);
            let mut idx: [Vec<u32>; 4] = Default::default();
            let mut wts: [Vec<f32>; 4] = Default::default();
            for &y in &hv {
                let yf = y.floor() as usize;
                let yc = (yf + 1).min(n - 1);
                let dy = y - y.floor();
                for &x in &wv {
                    let xf = x.floor() as usize;
                    let xc = (xf + 1).min(n - 1);
                    let dx = x - x.floor();
                    let cells = [(yf, xf), (yf, xc), (yc, xf), (yc, xc)];
                    // Tap weights as transformers forms them: 1 - |src - tap|, clamped at 0.
                    let (wy0, wy1) = (1.0 - dy, (1.0 - (dy - 1.0).abs()).max(0.0));
                    let (wx0, wx1) = (1.0 - dx, (1.0 - (dx - 1.0).abs()).max(0.0));
                    let ws = [wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1];
                    for k in 0..4 {
                        idx[k].push((cells[k].0 * n + cells[k].1) as u32);
                        wts[k].push(ws[k]);
                    }
                }
            }
            // The table in the run's dtype, the weights and the weighted sum in f32 (torch
            // promotes a bf16 / f16 table times f32 weights to f32), rounded once at the end.
            let dt = self.pos_embed.embeddings().dtype();
            let mut acc: Option<Tensor> = None;
            for k in 0..4 {
                let ids = Tensor::from_vec(idx[k].clone(), idx[k].len(), device)?;
                let w = Tensor::from_vec(wts[k].clone(), (wts[k].len(), 1), device)?;
                let e = self
                    .pos_embed
                    .forward(&ids)?
                    .to_dtype(DType::F32)?
                    .broadcast_mul(&w)?;
                acc = Some(match acc {
                    None => e,
                    Some(a) => (a + e)?,
                });
            }
            let pe = acc.expect("four corners").to_dtype(dt)?.repeat((g.t, 1))?;
            let m = self.merge;
            let pe = pe
                .reshape((g.t, g.h / m, m, g.w / m, m, self.hidden))?
                .permute((0, 1, 3, 2, 4, 5))?
                .reshape((g.t * g.h * g.w, self.hidden))?;
            out.push(pe);
        }
        Tensor::cat(&out, 0)
    }

    /// cos and sin of the 2-D rotary angles (row, column) of every patch, in merged order.
    fn rotary(&self, grids: &[Grid], device: &Device) -> Result<(Tensor, Tensor)> {
        let m = self.merge;
        let nf = self.inv_freq.len();
        let mut ang: Vec<f32> = Vec::new();
        let mut rows = 0usize;
        for g in grids {
            for _ in 0..g.t {
                for br in 0..g.h / m {
                    for bc in 0..g.w / m {
                        for ir in 0..m {
                            for ic in 0..m {
                                let (r, c) = ((br * m + ir) as f32, (bc * m + ic) as f32);
                                let mut half: Vec<f32> = Vec::with_capacity(2 * nf);
                                half.extend(self.inv_freq.iter().map(|f| r * f));
                                half.extend(self.inv_freq.iter().map(|f| c * f));
                                ang.extend_from_slice(&half);
                                ang.extend_from_slice(&half);
                                rows += 1;
                            }
                        }
                    }
                }
            }
        }
        let t = Tensor::from_vec(ang, (rows, 4 * nf), device)?;
        Ok((t.cos()?, t.sin()?))
    }

    /// Image embeddings (one row per merged token, all images concatenated) and the DeepStack
    /// features, one tensor per DeepStack layer.
    fn forward(&self, pixels: &Tensor, grids: &[Grid]) -> Result<(Tensor, Vec<Tensor>)> {
        let device = pixels.device();
        let dt = self.pos_embed.embeddings().dtype();
        let xs = self.patch_embed.forward(&pixels.to_dtype(dt)?)?;
        let mut xs = (xs + self.pos_embeds(grids, device)?)?;
        let (cos, sin) = self.rotary(grids, device)?;
        let mut cu = vec![0usize];
        for g in grids {
            for _ in 0..g.t {
                cu.push(cu.last().copied().unwrap_or(0) + g.h * g.w);
            }
        }
        let mut deep = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            xs = b.forward(&xs, &cu, &cos, &sin)?;
            if let Some(j) = self.deepstack_at.iter().position(|&l| l == i) {
                deep.push(self.deepstack[j].forward(&xs)?);
            }
        }
        Ok((self.merger.forward(&xs)?, deep))
    }
}

// ---------------------------------------------------------------- text decoder

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: TextRmsNorm,
    k_norm: TextRmsNorm,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

struct Layer {
    attn: Attention,
    gate: Linear,
    up: Linear,
    down: Linear,
    act: Activation,
    ln1: TextRmsNorm,
    ln2: TextRmsNorm,
}

/// Keys and values of earlier positions, per layer: `(batch, kv_heads, seq, head_dim)`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .and_then(|(k, _)| k.dim(2).ok())
            .unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn repeat_kv(x: Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x);
    }
    let (b, h, s, d) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, h, n, s, d))?
        .reshape((b, h * n, s, d))
}

impl Layer {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let b = cfg.attention_bias;
        let a = vb.pp("self_attn");
        let attn = Attention {
            q: linear_b(h, cfg.num_attention_heads * hd, b, a.pp("q_proj"))?,
            k: linear_b(h, cfg.num_key_value_heads * hd, b, a.pp("k_proj"))?,
            v: linear_b(h, cfg.num_key_value_heads * hd, b, a.pp("v_proj"))?,
            o: linear_b(cfg.num_attention_heads * hd, h, b, a.pp("o_proj"))?,
            q_norm: TextRmsNorm::new(hd, cfg.rms_norm_eps, a.pp("q_norm"))?,
            k_norm: TextRmsNorm::new(hd, cfg.rms_norm_eps, a.pp("k_norm"))?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
        };
        let m = vb.pp("mlp");
        Ok(Self {
            attn,
            gate: linear_b(h, cfg.intermediate_size, false, m.pp("gate_proj"))?,
            up: linear_b(h, cfg.intermediate_size, false, m.pp("up_proj"))?,
            down: linear_b(cfg.intermediate_size, h, false, m.pp("down_proj"))?,
            act: cfg.hidden_act,
            ln1: TextRmsNorm::new(h, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            ln2: TextRmsNorm::new(h, cfg.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        cache: &mut Option<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let a = &self.attn;
        let (b, s, _) = xs.dims3()?;
        let h = self.ln1.forward(xs)?;
        let q = a.q.forward(&h)?.reshape((b, s, a.heads, a.head_dim))?;
        let k = a.k.forward(&h)?.reshape((b, s, a.kv_heads, a.head_dim))?;
        let v = a.v.forward(&h)?.reshape((b, s, a.kv_heads, a.head_dim))?;
        let q = a.q_norm.forward(&q)?.transpose(1, 2)?;
        let k = a.k_norm.forward(&k)?.transpose(1, 2)?;
        let v = v.transpose(1, 2)?.contiguous()?;
        // cos/sin: (b, s, head_dim) -> (b, 1, s, head_dim)
        let (c, sn) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
        let q = (q.broadcast_mul(&c)? + rotate_half(&q)?.broadcast_mul(&sn)?)?;
        let k = (k.broadcast_mul(&c)? + rotate_half(&k)?.broadcast_mul(&sn)?)?.contiguous()?;
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        let n_rep = a.heads / a.kv_heads;
        let k = repeat_kv(k, n_rep)?.contiguous()?;
        let v = repeat_kv(v, n_rep)?.contiguous()?;
        let scale = 1.0 / (a.head_dim as f64).sqrt();
        // Eager attention as transformers': scores in the run's dtype, mask and softmax in f32,
        // the weights rounded back before multiplying the values.
        let dt = q.dtype();
        let att = scaled_scores(&q.contiguous()?, &k, scale)?;
        let att = att.broadcast_add(&mask.to_dtype(DType::F32)?)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?.to_dtype(dt)?;
        let o = att.matmul(&v)?.transpose(1, 2)?.reshape((b, s, ()))?;
        let xs = (xs + a.o.forward(&o)?)?;
        let h = self.ln2.forward(&xs)?;
        let act = self.act;
        let h = (in_f32(&self.gate.forward(&h)?, |x| x.apply(&act))? * self.up.forward(&h)?)?;
        xs + self.down.forward(&h)?
    }
}

/// One sequence of a batch, ready for the decoder.
#[derive(Debug, Clone)]
pub struct SeqInput {
    /// Token ids (image placeholders already expanded).
    pub ids: Vec<u32>,
    /// The grid of each image, in the order their placeholders appear.
    pub grids: Vec<Grid>,
}

/// The loaded Qwen3-VL model.
pub struct Qwen3Vl {
    vision: VisionTower,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: TextRmsNorm,
    lm_head: Linear,
    inv_freq: Vec<f32>,
    mrope: [usize; 3],
    image_token_id: u32,
    vision_start_token_id: u32,
    merge: usize,
    dtype: DType,
    device: Device,
}

/// The state of a batch between decoding steps.
pub struct Decoding {
    /// Keys and values so far (empty when the cache is off).
    pub cache: Vec<Option<(Tensor, Tensor)>>,
    /// Per sequence: 0 for padding, 1 for real tokens, over all positions so far.
    pub real: Vec<Vec<bool>>,
    /// Per sequence: the next text position (M-RoPE: all three coordinates equal).
    pub next_pos: Vec<u32>,
}

impl Qwen3Vl {
    /// Builds the model from `vb` (tensor names as in the Hugging Face checkpoint).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (theta, mrope) = cfg.rope().map_err(candle_core::Error::Msg)?;
        let t = &cfg.text_config;
        let vision = VisionTower::new(&cfg.vision_config, vb.pp("model.visual"))?;
        let lm = vb.pp("model.language_model");
        let embed = embedding(t.vocab_size, t.hidden_size, lm.pp("embed_tokens"))?;
        let layers = (0..t.num_hidden_layers)
            .map(|i| Layer::new(t, lm.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let norm = TextRmsNorm::new(t.hidden_size, t.rms_norm_eps, lm.pp("norm"))?;
        let lm_head = if cfg.tied() {
            Linear::new(embed.embeddings().clone(), None)
        } else {
            linear_b(t.hidden_size, t.vocab_size, false, vb.pp("lm_head"))?
        };
        if cfg.vision_config.out_hidden_size != t.hidden_size {
            candle_core::bail!(
                "vision_config.out_hidden_size {} differs from text_config.hidden_size {}",
                cfg.vision_config.out_hidden_size,
                t.hidden_size
            );
        }
        let inv_freq = (0..t.head_dim)
            .step_by(2)
            .map(|i| 1.0 / (theta as f32).powf(i as f32 / t.head_dim as f32))
            .collect();
        Ok(Self {
            vision,
            embed,
            layers,
            norm,
            lm_head,
            inv_freq,
            mrope,
            image_token_id: cfg.image_token_id,
            vision_start_token_id: cfg.vision_start_token_id,
            merge: cfg.vision_config.spatial_merge_size,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The vision tower's output for `pixels` (all images' patch rows) of `grids`: the merged
    /// image tokens `(tokens, hidden)` and one DeepStack feature tensor per DeepStack layer.
    pub fn image_features(&self, pixels: &Tensor, grids: &[Grid]) -> Result<(Tensor, Vec<Tensor>)> {
        self.vision.forward(pixels, grids)
    }

    /// Text tokens one image grid takes.
    pub fn tokens_per_image(&self, g: Grid) -> usize {
        g.t * g.h * g.w / (self.merge * self.merge)
    }

    /// The image placeholder token id.
    pub fn image_token_id(&self) -> u32 {
        self.image_token_id
    }

    /// The (t, h, w) position of every token of one sequence (transformers' `get_rope_index`
    /// for images) and the next text position after it.
    pub fn rope_index(&self, seq: &SeqInput) -> std::result::Result<(Vec<[u32; 3]>, u32), String> {
        let mut pos: Vec<[u32; 3]> = Vec::with_capacity(seq.ids.len());
        let mut next = 0u32;
        let mut i = 0usize;
        let mut img = 0usize;
        while i < seq.ids.len() {
            if seq.ids[i] == self.image_token_id {
                let g = *seq
                    .grids
                    .get(img)
                    .ok_or("more image placeholders than images")?;
                let (gh, gw) = (g.h / self.merge, g.w / self.merge);
                let n = g.t * gh * gw;
                if i + n > seq.ids.len()
                    || seq.ids[i..i + n].iter().any(|&t| t != self.image_token_id)
                {
                    return Err(format!(
                        "image {img} needs {n} consecutive placeholder tokens"
                    ));
                }
                let st = next;
                let mut mx = st;
                for t in 0..g.t {
                    for y in 0..gh {
                        for x in 0..gw {
                            let p = [st + t as u32, st + y as u32, st + x as u32];
                            mx = mx.max(p[0]).max(p[1]).max(p[2]);
                            pos.push(p);
                        }
                    }
                }
                next = mx + 1;
                i += n;
                img += 1;
            } else {
                pos.push([next; 3]);
                next += 1;
                i += 1;
            }
        }
        if img != seq.grids.len() {
            return Err(format!(
                "{} images but {img} placeholder runs",
                seq.grids.len()
            ));
        }
        let _ = self.vision_start_token_id;
        Ok((pos, next))
    }

    /// cos and sin for positions `(batch, seq)` of (t, h, w), interleaved M-RoPE layout.
    fn rotary(&self, pos: &[Vec<[u32; 3]>]) -> Result<(Tensor, Tensor)> {
        let nf = self.inv_freq.len();
        let (b, s) = (pos.len(), pos[0].len());
        let mut ang = Vec::with_capacity(b * s * 2 * nf);
        for row in pos {
            for p in row {
                let mut half = Vec::with_capacity(nf);
                for (j, f) in self.inv_freq.iter().enumerate() {
                    let axis = if j % 3 == 1 && j < 3 * self.mrope[1] {
                        1
                    } else if j % 3 == 2 && j < 3 * self.mrope[2] {
                        2
                    } else {
                        0
                    };
                    half.push(p[axis] as f32 * f);
                }
                ang.extend_from_slice(&half);
                ang.extend_from_slice(&half);
            }
        }
        let t = Tensor::from_vec(ang, (b, s, 2 * nf), &self.device)?;
        Ok((
            t.cos()?.to_dtype(self.dtype)?,
            t.sin()?.to_dtype(self.dtype)?,
        ))
    }

    /// Additive mask `(b, 1, q, k)`: causal, padding keys hidden (a padding query sees itself
    /// so that no row is all `-inf`).
    fn mask(&self, real: &[Vec<bool>], q_len: usize) -> Result<Tensor> {
        let (b, k_len) = (real.len(), real[0].len());
        let off = k_len - q_len;
        let mut m = vec![0f32; b * q_len * k_len];
        for (bi, r) in real.iter().enumerate() {
            for qi in 0..q_len {
                let qa = off + qi;
                for ki in 0..k_len {
                    let ok = ki <= qa && (r[ki] || ki == qa);
                    if !ok {
                        m[(bi * q_len + qi) * k_len + ki] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Tensor::from_vec(m, (b, 1, q_len, k_len), &self.device)
    }

    /// Runs the prompt of every sequence (left-padded to one length) with their images, and
    /// returns the next-token logits `(batch, vocab)` in f32 and the decoding state.
    pub fn prefill(
        &self,
        seqs: &[SeqInput],
        pixels: Option<&Tensor>,
        keep_cache: bool,
    ) -> Result<(Tensor, Decoding)> {
        let b = seqs.len();
        let len = seqs.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(b * len);
        let mut pos = Vec::with_capacity(b);
        let mut real = Vec::with_capacity(b);
        let mut next_pos = Vec::with_capacity(b);
        let mut visual = vec![0u8; b * len];
        for (bi, s) in seqs.iter().enumerate() {
            let pad = len - s.ids.len();
            let (p, next) = self.rope_index(s).map_err(candle_core::Error::Msg)?;
            let mut row = vec![[0u32; 3]; pad];
            row.extend(p);
            pos.push(row);
            next_pos.push(next);
            let mut r = vec![false; pad];
            r.extend(std::iter::repeat_n(true, s.ids.len()));
            real.push(r);
            ids.extend(std::iter::repeat_n(0u32, pad));
            ids.extend_from_slice(&s.ids);
            for (i, &t) in s.ids.iter().enumerate() {
                if t == self.image_token_id {
                    visual[bi * len + pad + i] = 1;
                }
            }
        }
        let ids_t = Tensor::from_vec(ids, (b, len), &self.device)?;
        let mut xs = self.embed.forward(&ids_t)?;
        let hidden = xs.dim(2)?;
        let vis_idx: Vec<u32> = visual
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == 1)
            .map(|(i, _)| i as u32)
            .collect();
        let mut deep = Vec::new();
        if !vis_idx.is_empty() {
            let pixels = pixels
                .ok_or_else(|| candle_core::Error::Msg("image tokens without pixels".into()))?;
            let grids: Vec<Grid> = seqs.iter().flat_map(|s| s.grids.iter().copied()).collect();
            let (emb, ds) = self.vision.forward(pixels, &grids)?;
            if emb.dim(0)? != vis_idx.len() {
                candle_core::bail!(
                    "{} image embeddings for {} placeholder tokens",
                    emb.dim(0)?,
                    vis_idx.len()
                );
            }
            let idx = Tensor::from_vec(vis_idx.clone(), vis_idx.len(), &self.device)?;
            // Replace placeholder rows exactly: gather from [token embeddings; image embeddings].
            let n = b * len;
            let mut map: Vec<u32> = (0..n as u32).collect();
            for (k, &i) in vis_idx.iter().enumerate() {
                map[i as usize] = (n + k) as u32;
            }
            let table = Tensor::cat(&[&xs.reshape((n, hidden))?, &emb.to_dtype(self.dtype)?], 0)?;
            let map = Tensor::from_vec(map, n, &self.device)?;
            xs = table.index_select(&map, 0)?.reshape((b, len, hidden))?;
            deep = ds.into_iter().map(|d| (idx.clone(), d)).collect();
        }
        let (cos, sin) = self.rotary(&pos)?;
        let mask = self.mask(&real, len)?;
        let mut cache: Vec<Option<(Tensor, Tensor)>> = vec![None; self.layers.len()];
        for (li, layer) in self.layers.iter().enumerate() {
            xs = layer.forward(&xs, &cos, &sin, &mask, &mut cache[li])?;
            if let Some((idx, d)) = deep.get(li) {
                let flat = xs.reshape((b * len, hidden))?;
                xs = flat
                    .index_add(idx, &d.to_dtype(self.dtype)?, 0)?
                    .reshape((b, len, hidden))?;
            }
        }
        let last = xs.i((.., len - 1, ..))?.contiguous()?;
        let logits = self
            .lm_head
            .forward(&self.norm.forward(&last)?)?
            .to_dtype(DType::F32)?;
        if !keep_cache {
            cache = vec![None; self.layers.len()];
        }
        Ok((
            logits,
            Decoding {
                cache,
                real,
                next_pos,
            },
        ))
    }

    /// Feeds one new token per sequence (using the cache) and returns the next logits.
    pub fn step(&self, tokens: &[u32], st: &mut Decoding) -> Result<Tensor> {
        let b = tokens.len();
        let pos: Vec<Vec<[u32; 3]>> = st.next_pos.iter().map(|&p| vec![[p; 3]]).collect();
        for p in st.next_pos.iter_mut() {
            *p += 1;
        }
        for r in st.real.iter_mut() {
            r.push(true);
        }
        let ids = Tensor::from_vec(tokens.to_vec(), (b, 1), &self.device)?;
        let mut xs = self.embed.forward(&ids)?;
        let (cos, sin) = self.rotary(&pos)?;
        let mask = self.mask(&st.real, 1)?;
        for (li, layer) in self.layers.iter().enumerate() {
            xs = layer.forward(&xs, &cos, &sin, &mask, &mut st.cache[li])?;
        }
        let last = xs.i((.., 0, ..))?.contiguous()?;
        self.lm_head
            .forward(&self.norm.forward(&last)?)?
            .to_dtype(DType::F32)
    }
}

// ---------------------------------------------------------------- image processor

/// `preprocessor_config.json` of a Qwen2-VL-style image processor (Qwen3-VL uses it as is).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProcessorConfig {
    /// Resize before patching.
    #[serde(default = "yes")]
    pub do_resize: bool,
    /// Multiply by `rescale_factor`.
    #[serde(default = "yes")]
    pub do_rescale: bool,
    /// Subtract `image_mean`, divide by `image_std`.
    #[serde(default = "yes")]
    pub do_normalize: bool,
    /// Scale from 0..=255.
    #[serde(default = "default_rescale")]
    pub rescale_factor: f64,
    /// Per-channel mean.
    pub image_mean: Vec<f64>,
    /// Per-channel std.
    pub image_std: Vec<f64>,
    /// Pillow filter number (3 = bicubic).
    #[serde(default = "default_resample")]
    pub resample: u64,
    /// `shortest_edge` = min pixels, `longest_edge` = max pixels.
    #[serde(default)]
    pub size: Option<PixelBounds>,
    /// Older key for the minimum pixel count.
    #[serde(default)]
    pub min_pixels: Option<u64>,
    /// Older key for the maximum pixel count.
    #[serde(default)]
    pub max_pixels: Option<u64>,
    /// Patch side.
    pub patch_size: usize,
    /// Frames per temporal patch.
    pub temporal_patch_size: usize,
    /// Patches merged per side.
    pub merge_size: usize,
}

/// Pixel-count bounds of `smart_resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PixelBounds {
    /// Minimum pixels.
    pub shortest_edge: u64,
    /// Maximum pixels.
    pub longest_edge: u64,
}

fn yes() -> bool {
    true
}
fn default_rescale() -> f64 {
    1.0 / 255.0
}
fn default_resample() -> u64 {
    3
}

impl ProcessorConfig {
    /// (min_pixels, max_pixels) as transformers resolves them.
    pub fn bounds(&self) -> (u64, u64) {
        let (mut lo, mut hi) = self
            .size
            .map(|s| (s.shortest_edge, s.longest_edge))
            .unwrap_or((56 * 56, 28 * 28 * 1280));
        if let Some(v) = self.min_pixels {
            lo = v;
        }
        if let Some(v) = self.max_pixels {
            hi = v;
        }
        (lo, hi)
    }

    /// transformers' `smart_resize`: both sides multiples of `patch * merge`, the pixel count
    /// within bounds, the aspect ratio kept as well as possible.
    pub fn smart_resize(&self, h: usize, w: usize) -> std::result::Result<(usize, usize), String> {
        let factor = (self.patch_size * self.merge_size) as f64;
        let (lo, hi) = self.bounds();
        let (hf, wf) = (h as f64, w as f64);
        if h == 0 || w == 0 {
            return Err(format!("the image is {w}x{h} pixels"));
        }
        if hf.max(wf) / hf.min(wf) > 200.0 {
            return Err(format!(
                "aspect ratio {:.1} of a {w}x{h} image is above the processor's limit of 200",
                hf.max(wf) / hf.min(wf)
            ));
        }
        // Python's round() rounds half to even.
        let mut hb = (hf / factor).round_ties_even() * factor;
        let mut wb = (wf / factor).round_ties_even() * factor;
        if hb * wb > hi as f64 {
            let beta = (hf * wf / hi as f64).sqrt();
            hb = factor.max((hf / beta / factor).floor() * factor);
            wb = factor.max((wf / beta / factor).floor() * factor);
        } else if hb * wb < lo as f64 {
            let beta = (lo as f64 / (hf * wf)).sqrt();
            hb = (hf * beta / factor).ceil() * factor;
            wb = (wf * beta / factor).ceil() * factor;
        }
        if hb < factor || wb < factor {
            return Err(format!(
                "a {w}x{h} image resizes to {wb}x{hb}, smaller than one {factor}-pixel merged patch"
            ));
        }
        Ok((hb as usize, wb as usize))
    }

    /// Pixels of one image as the flat patch matrix `(grid_h * grid_w, C * T * P * P)` and
    /// its grid. `rgb8` is interleaved 8-bit RGB, `w x h`.
    pub fn process(
        &self,
        rgb8: &[u8],
        w: usize,
        h: usize,
    ) -> std::result::Result<(Vec<f32>, Grid), String> {
        let (nh, nw) = if self.do_resize {
            self.smart_resize(h, w)?
        } else {
            (h, w)
        };
        let factor = self.patch_size * self.merge_size;
        if !nh.is_multiple_of(factor) || !nw.is_multiple_of(factor) {
            return Err(format!(
                "a {nw}x{nh} image is not a multiple of {factor} pixels and do_resize is false"
            ));
        }
        let filter = super::pil::Filter::from_pil(self.resample).ok_or_else(|| {
            format!(
                "resample {} is not bilinear (2) or bicubic (3)",
                self.resample
            )
        })?;
        let px = super::pil::resize_u8(rgb8, w, h, 3, nw, nh, filter);
        if self.image_mean.len() != 3 || self.image_std.len() != 3 {
            return Err("image_mean and image_std need 3 values".into());
        }
        // rescale then normalise, in f32 as numpy does on the float32 array.
        let chan = |c: usize, v: u8| -> f32 {
            let mut x = f32::from(v);
            if self.do_rescale {
                x *= self.rescale_factor as f32;
            }
            if self.do_normalize {
                x = (x - self.image_mean[c] as f32) / self.image_std[c] as f32;
            }
            x
        };
        let (p, m, t) = (self.patch_size, self.merge_size, self.temporal_patch_size);
        let (gh, gw) = (nh / p, nw / p);
        let row_len = 3 * t * p * p;
        let mut out = Vec::with_capacity(gh * gw * row_len);
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (py0, px0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                        for c in 0..3 {
                            for _ in 0..t {
                                for y in 0..p {
                                    for x in 0..p {
                                        let v = px[((py0 + y) * nw + px0 + x) * 3 + c];
                                        out.push(chan(c, v));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok((out, Grid { t: 1, h: gh, w: gw }))
    }
}
