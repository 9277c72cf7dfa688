//! Trains the demo CLIP model committed in `models/demo-cxr-clip/`.
//!
//! ```text
//! cargo run --example train_demo_model -- --out models/demo-cxr-clip --steps 1500
//! ```
//!
//! A tiny CLIP-architecture model (ViT 64x64/8 grayscale, width 64, 2 layers per tower) is
//! trained contrastively from scratch on synthetic phantoms of the demo generator
//! (`medgate::demo::render_case`) with data seed 7, never the golden set's seed
//! (20261128). Captions are the generator's varied free-text captions, plus (with probability
//! `--template-p`) one of three plain templates that the demo protocol's prompts use. Same-
//! caption pairs in a batch count as positives of each other (a multi-positive InfoNCE), so
//! repeated templates do not fight the loss.
//!
//! Everything is seeded: weights from `--init-seed`, batch sampling and caption choice from
//! `--sample-seed`, data from `--data-seed`. The learning rate is constant after warm-up, so
//! a run with `--steps N` reproduces the first N steps of a longer run (snapshots written with
//! `--snapshots DIR` at each evaluation are therefore reproducible by `--steps`). CPU float
//! sums are multi-threaded, so the last bits may differ across machines.
//!
//! Progress and the held-out AUROC (seed 7, cases 1,000,000 onwards: disjoint from training)
//! go to stderr.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use candle_transformers::models::clip::{ClipModel, div_l2_norm};
use clap::Parser;
use medgate::demo::render_case;
use medgate::model::clip_ckpt::{self, ClipArch, Preprocess};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// The prompts of the demo protocol (also used as training templates).
const POS_NODULE: &str = "a chest radiograph with a lung nodule";
const POS_PTX: &str = "a chest radiograph with a pneumothorax";
const NEG: &str = "a normal chest radiograph";
const TEMPLATES: [&str; 3] = [NEG, POS_NODULE, POS_PTX];

#[derive(Debug, Parser)]
struct Args {
    /// Output checkpoint directory.
    #[arg(long)]
    out: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Seed of the demo generator for training data (never the golden set's 20261128).
    #[arg(long, default_value_t = 7)]
    data_seed: u64,
    /// Training cases (indices 0..N of the data seed).
    #[arg(long, default_value_t = 4000)]
    train_cases: u64,
    /// Held-out cases (indices 1,000,000.. of the data seed) for the AUROC printout.
    #[arg(long, default_value_t = 400)]
    heldout_cases: u64,
    /// Seed of the weight initialisation.
    #[arg(long, default_value_t = 1)]
    init_seed: u64,
    /// Seed of batch sampling and caption choice.
    #[arg(long, default_value_t = 2)]
    sample_seed: u64,
    /// Probability of replacing the free-text caption with the plain template.
    #[arg(long, default_value_t = 0.5)]
    template_p: f64,
    /// Weight of the template-classification term (0 = pure caption InfoNCE).
    #[arg(long, default_value_t = 2.0)]
    class_weight: f64,
    /// Vision patch size in pixels (8 or 16 on the 64x64 phantoms).
    #[arg(long, default_value_t = 16)]
    patch: usize,
    /// Fraction of each batch drawn from positive cases (class-balanced sampling).
    #[arg(long, default_value_t = 0.5)]
    pos_fraction: f64,
    /// Evaluate (and snapshot) every N steps.
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Continue from the weights of this checkpoint (same vocabulary and architecture)
    /// instead of the seeded initialisation.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Write a checkpoint at each evaluation to DIR/step-N.
    #[arg(long)]
    snapshots: Option<PathBuf>,
}

struct Sample {
    pixels: Vec<f32>,
    label: bool,
    caption: String,
    template: &'static str,
}

fn template(finding: Option<&str>) -> &'static str {
    match finding {
        Some("nodule") => POS_NODULE,
        Some(_) => POS_PTX,
        None => NEG,
    }
}

fn render(seed: u64, range: std::ops::Range<u64>) -> Vec<Sample> {
    range
        .into_par_iter()
        .map(|i| {
            let c = render_case(seed, i);
            Sample {
                pixels: c
                    .image
                    .as_raw()
                    .iter()
                    .map(|&v| f32::from(v) / 255.0)
                    .collect(),
                label: c.label,
                template: template(c.finding.as_deref()),
                caption: c.caption,
            }
        })
        .collect()
}

/// Rank-based AUROC (Mann-Whitney U with mid-ranks for ties).
fn auroc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let np = labels.iter().filter(|&&l| l).count() as f64;
    let nn = labels.len() as f64 - np;
    let sum_pos: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    (sum_pos - np * (np + 1.0) / 2.0) / (np * nn)
}

struct Tok {
    tokenizer: tokenizers::Tokenizer,
    cache: HashMap<String, Vec<u32>>,
    max: usize,
}

impl Tok {
    fn ids(&mut self, text: &str) -> Vec<u32> {
        if let Some(v) = self.cache.get(text) {
            return v.clone();
        }
        let mut ids = self
            .tokenizer
            .encode(text, true)
            .expect("tokenise")
            .get_ids()
            .to_vec();
        if ids.len() > self.max {
            let last = ids[ids.len() - 1];
            ids.truncate(self.max - 1);
            ids.push(last);
        }
        self.cache.insert(text.to_string(), ids.clone());
        ids
    }

    /// A padded (n, len) id tensor.
    fn batch(&mut self, texts: &[&str], dev: &Device) -> candle_core::Result<Tensor> {
        let all: Vec<Vec<u32>> = texts.iter().map(|t| self.ids(t)).collect();
        let len = all.iter().map(Vec::len).max().unwrap_or(1);
        let mut flat = Vec::with_capacity(all.len() * len);
        for ids in &all {
            flat.extend(ids);
            flat.extend(std::iter::repeat_n(0u32, len - ids.len()));
        }
        Tensor::from_vec(flat, (all.len(), len), dev)
    }
}

fn normalise(pixels: &[f32], pre: &Preprocess) -> Vec<f32> {
    pixels
        .iter()
        .map(|v| (v - pre.mean[0]) / pre.std[0])
        .collect()
}

/// Zero-shot AUROC on `set` with the demo prompts, scored as the backend scores.
fn evaluate(
    model: &ClipModel,
    tok: &mut Tok,
    set: &[Sample],
    pre: &Preprocess,
    dev: &Device,
) -> candle_core::Result<f64> {
    let text = tok.batch(&[POS_NODULE, POS_PTX, NEG], dev)?;
    let t = div_l2_norm(&model.get_text_features(&text)?)?;
    // Positive class: renormalised mean of the two positive prompts.
    let pos = div_l2_norm(&((t.get(0)? + t.get(1)?)? / 2.0)?.unsqueeze(0)?)?;
    let classes = Tensor::cat(&[pos, t.get(2)?.unsqueeze(0)?], 0)?;
    let mut scores = Vec::with_capacity(set.len());
    for chunk in set.chunks(64) {
        let px: Vec<f32> = chunk
            .iter()
            .flat_map(|s| normalise(&s.pixels, pre))
            .collect();
        let x = Tensor::from_vec(px, (chunk.len(), 1, 64, 64), dev)?;
        let f = div_l2_norm(&model.get_image_features(&x)?)?;
        let sims = f.matmul(&classes.t()?)?.to_vec2::<f32>()?;
        scores.extend(sims.iter().map(|s| f64::from(s[0] - s[1])));
    }
    let labels: Vec<bool> = set.iter().map(|s| s.label).collect();
    Ok(auroc(&scores, &labels))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dev = Device::Cpu;
    let t0 = Instant::now();

    eprintln!(
        "rendering {} training cases (seed {})",
        args.train_cases, args.data_seed
    );
    let train = render(args.data_seed, 0..args.train_cases);
    let heldout = render(args.data_seed, 1_000_000..1_000_000 + args.heldout_cases);
    let prevalence = train.iter().filter(|s| s.label).count() as f64 / train.len() as f64;
    eprintln!(
        "  prevalence {prevalence:.3}; {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    // Vocabulary from every training caption and the templates (sorted: reproducible).
    let texts: Vec<&str> = train
        .iter()
        .map(|s| s.caption.as_str())
        .chain([POS_NODULE, POS_PTX, NEG])
        .collect();
    let vocab = clip_ckpt::build_vocab(texts);
    let mut arch = ClipArch::demo(vocab.len());
    arch.vision.patch_size = args.patch;
    arch.validate()?;
    // Normalisation from the training pixels, rounded so the config reads cleanly.
    let n_px = (train.len() * 64 * 64) as f64;
    let mean = train
        .iter()
        .flat_map(|s| &s.pixels)
        .map(|&v| f64::from(v))
        .sum::<f64>()
        / n_px;
    let var = train
        .iter()
        .flat_map(|s| &s.pixels)
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n_px;
    let round3 = |x: f64| ((x * 1000.0).round() / 1000.0) as f32;
    let pre = Preprocess {
        size: 64,
        mean: vec![round3(mean)],
        std: vec![round3(var.sqrt())],
    };
    eprintln!(
        "vocabulary {} tokens; mean {} std {}",
        vocab.len(),
        pre.mean[0],
        pre.std[0]
    );
    let tokenizer: tokenizers::Tokenizer = clip_ckpt::word_level_tokenizer_json(&vocab)
        .to_string()
        .parse()
        .map_err(|e| format!("tokenizer: {e}"))?;
    let mut tok = Tok {
        tokenizer,
        cache: HashMap::new(),
        max: arch.text.max_position_embeddings,
    };

    let (mut vm, model) = clip_ckpt::seeded_varmap(&arch, args.init_seed, &dev)?;
    if let Some(dir) = &args.init_from {
        vm.load(dir.join(clip_ckpt::WEIGHTS_FILE))?;
        eprintln!("continuing from {}", dir.display());
    }
    let n_params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    eprintln!("parameters {n_params}");
    let mut opt = AdamW::new(
        vm.all_vars(),
        ParamsAdamW {
            lr: args.lr,
            weight_decay: 1e-3,
            ..Default::default()
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.sample_seed);
    let pos_idx: Vec<usize> = (0..train.len()).filter(|&i| train[i].label).collect();
    let neg_idx: Vec<usize> = (0..train.len()).filter(|&i| !train[i].label).collect();
    let b = args.batch;
    let t_train = Instant::now();
    let mut loss_acc = 0.0;
    for step in 1..=args.steps {
        let lr = args.lr * (step.min(args.warmup) as f64 / args.warmup.max(1) as f64);
        opt.set_learning_rate(lr);
        let idx: Vec<usize> = (0..b)
            .map(|_| {
                let pool = if rng.random::<f64>() < args.pos_fraction {
                    &pos_idx
                } else {
                    &neg_idx
                };
                pool[rng.random_range(0..pool.len())]
            })
            .collect();
        let caps: Vec<&str> = idx
            .iter()
            .map(|&i| {
                if rng.random::<f64>() < args.template_p {
                    train[i].template
                } else {
                    train[i].caption.as_str()
                }
            })
            .collect();
        let px: Vec<f32> = idx
            .iter()
            .flat_map(|&i| normalise(&train[i].pixels, &pre))
            .collect();
        let x = Tensor::from_vec(px, (b, 1, 64, 64), &dev)?;
        let ids = tok.batch(&caps, &dev)?;
        // Multi-positive targets: texts equal to text j are all correct for image j.
        let mut tgt = vec![0f32; b * b];
        for i in 0..b {
            let same: Vec<usize> = (0..b).filter(|&j| caps[j] == caps[i]).collect();
            for &j in &same {
                tgt[i * b + j] = 1.0 / same.len() as f32;
            }
        }
        let tgt = Tensor::from_vec(tgt, (b, b), &dev)?;
        let scale = {
            let data = vm.data().lock().map_err(|_| "lock")?;
            data["logit_scale"].as_tensor().exp()?
        };
        let img = div_l2_norm(&model.get_image_features(&x)?)?;
        let cap = div_l2_norm(&model.get_text_features(&ids)?)?;
        let logits_per_image = img.matmul(&cap.t()?)?.broadcast_mul(&scale)?;
        let li = candle_nn::ops::log_softmax(&logits_per_image, D::Minus1)?;
        let lt = candle_nn::ops::log_softmax(&logits_per_image.t()?, D::Minus1)?;
        let nce = ((tgt.mul(&li)?.sum_all()? + tgt.mul(&lt)?.sum_all()?)? * (-0.5 / b as f64))?;
        // Template classification: each image against the three plain templates (CLIP's
        // zero-shot head, trained directly), so the finding is learnt, not only the view.
        let txt = div_l2_norm(&model.get_text_features(&tok.batch(&TEMPLATES, &dev)?)?)?;
        let cls_logits = img.matmul(&txt.t()?)?.broadcast_mul(&scale)?;
        let cls_target: Vec<u32> = idx
            .iter()
            .map(|&i| {
                TEMPLATES
                    .iter()
                    .position(|t| *t == train[i].template)
                    .unwrap_or(0) as u32
            })
            .collect();
        let cls_target = Tensor::from_vec(cls_target, b, &dev)?;
        let ce = candle_nn::loss::cross_entropy(&cls_logits, &cls_target)?;
        let loss = (nce + (ce * args.class_weight)?)?;
        opt.backward_step(&loss)?;
        // Keep exp(logit_scale) <= 100, as CLIP does.
        {
            let data = vm.data().lock().map_err(|_| "lock")?;
            let ls = &data["logit_scale"];
            let v = ls.as_tensor().to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if v > 100f32.ln() {
                ls.set(&Tensor::new(100f32.ln(), &dev)?)?;
            }
        }
        loss_acc += loss.to_scalar::<f32>()? as f64;
        if step % args.eval_every == 0 || step == args.steps {
            let n = if step % args.eval_every == 0 {
                args.eval_every
            } else {
                step % args.eval_every
            };
            let au = evaluate(&model, &mut tok, &heldout, &pre, &dev)?;
            let secs = t_train.elapsed().as_secs_f64();
            eprintln!(
                "step {step:5}  loss {:.4}  held-out AUROC {au:.4}  {:.3} s/step  {secs:.0}s",
                loss_acc / n as f64,
                secs / step as f64
            );
            loss_acc = 0.0;
            if let Some(dir) = &args.snapshots {
                clip_ckpt::write_checkpoint(
                    &dir.join(format!("step-{step}")),
                    &arch,
                    &vm,
                    &vocab,
                    &pre,
                )?;
            }
        }
    }
    clip_ckpt::write_checkpoint(&args.out, &arch, &vm, &vocab, &pre)?;
    eprintln!(
        "wrote {} ({} steps, {:.0}s training, {:.0}s total)",
        args.out.display(),
        args.steps,
        t_train.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
