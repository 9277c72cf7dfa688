//! Throughput of the `candle-clip` backend on the demo model (CPU) against a bare candle
//! forward loop on the same batches. Target: backend overhead under 5%.
//!
//! ```text
//! cargo bench --bench clip_throughput            # 512 images, batch 32
//! cargo bench --bench clip_throughput -- 1024 64 # images, batch size
//! cargo bench --profile dev --bench clip_throughput  # reuse the dev build (deps at opt 3)
//! ```
//!
//! Measured (dev profile, 2 shared CPU cores, 512 images, batch 32): backend 1998 images/s,
//! bare loop 1968 images/s, overhead -1.6% (noise); batching + normalising took 4.9 ms of
//! 285 ms.
//!
//! "Backend" is `ClipBackend::score_images` on decoded images: preprocessing (normalisation,
//! batching), the forward pass, and the host-side cosine/softmax scoring. "Bare" is
//! `ClipModel::get_image_features` on tensors built before the clock starts, copied back to
//! the host. The rounds alternate and the median of each is reported.

use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use medgate::demo::render_case;
use medgate::golden::image::LoadedImage;
use medgate::model::clip::ClipBackend;
use medgate::protocol::{CandleClipSpec, Prompts};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(512);
    let batch: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo-cxr-clip");
    let spec = CandleClipSpec {
        path: dir,
        sha256: None,
        device: "cpu".into(),
        batch_size: batch,
        precision: "f32".into(),
    };
    let prompts = Prompts {
        positive: vec![
            "a chest radiograph with a lung nodule".into(),
            "a chest radiograph with a pneumothorax".into(),
        ],
        negative: vec!["a normal chest radiograph".into()],
    };
    let backend = ClipBackend::load(&spec, &prompts, Path::new("/"))?;
    let images: Vec<LoadedImage> = (0..n as u64)
        .map(|i| {
            let c = render_case(20261128, i);
            LoadedImage {
                width: c.image.width(),
                height: c.image.height(),
                channels: 1,
                data: c
                    .image
                    .as_raw()
                    .iter()
                    .map(|&v| f32::from(v) / 255.0)
                    .collect(),
            }
        })
        .collect();
    // The bare loop's inputs: the same batches, preprocessed and on the device in advance.
    let batches: Vec<Tensor> = images
        .chunks(batch)
        .map(|c| {
            let px: Vec<Vec<f32>> = c
                .iter()
                .map(|i| backend.preprocess(i))
                .collect::<Result<_, _>>()?;
            backend.batch_tensor(&px)
        })
        .collect::<Result<_, _>>()?;

    let run_backend = || -> Result<f64, Box<dyn std::error::Error>> {
        let t = Instant::now();
        let s = backend.score_images(&images)?;
        assert_eq!(s.len(), n);
        Ok(n as f64 / t.elapsed().as_secs_f64())
    };
    let run_bare = || -> Result<f64, Box<dyn std::error::Error>> {
        let t = Instant::now();
        let mut count = 0;
        for x in &batches {
            let f = backend.model().get_image_features(x)?.to_vec2::<f32>()?;
            count += f.len();
        }
        assert_eq!(count, n);
        Ok(n as f64 / t.elapsed().as_secs_f64())
    };
    run_backend()?;
    run_bare()?;
    let (mut b, mut r) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        b.push(run_backend()?);
        r.push(run_bare()?);
    }
    // Where the backend's time goes: batching + normalisation, then forward + scoring.
    let t = Instant::now();
    let tensors: Vec<Tensor> = images
        .chunks(batch)
        .map(|c| backend.images_tensor(&c.iter().collect::<Vec<_>>()))
        .collect::<Result<_, _>>()?;
    let t_prep = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for x in &tensors {
        backend.score_tensor(x)?;
    }
    let t_score = t.elapsed().as_secs_f64();
    let (b, r) = (median(b), median(r));
    let overhead = (r - b) / r * 100.0;
    println!("candle-clip demo model, CPU, {n} images, batch {batch}");
    println!("  backend (score_images): {b:8.1} images/s");
    println!("  bare forward loop:      {r:8.1} images/s");
    println!("  backend overhead:       {overhead:8.2} % (target < 5 %)");
    println!(
        "  backend breakdown: batching+normalising {:.1} ms, forward+scoring {:.1} ms",
        t_prep * 1e3,
        t_score * 1e3
    );
    Ok(())
}
