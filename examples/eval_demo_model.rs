//! Scores the demo golden set with a candle-clip checkpoint through the backend and prints
//! the AUROC overall and per subgroup (the numbers in `models/demo-cxr-clip/MODEL_CARD.md`).
//!
//! ```text
//! cargo run --example eval_demo_model -- models/demo-cxr-clip golden-sets/demo-cxr
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use medgate::golden::image::load_image;
use medgate::model::clip::ClipBackend;
use medgate::protocol::CandleClipSpec;

fn auroc(scores: &[f64], labels: &[bool]) -> f64 {
    let np = labels.iter().filter(|&&l| l).count() as f64;
    let nn = labels.len() as f64 - np;
    let mut u = 0.0;
    for (s, l) in scores.iter().zip(labels) {
        if !*l {
            continue;
        }
        for (t, m) in scores.iter().zip(labels) {
            if !*m {
                u += if s > t {
                    1.0
                } else if s == t {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    u / (np * nn)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = PathBuf::from(args.first().map_or("models/demo-cxr-clip", String::as_str));
    let set = PathBuf::from(args.get(1).map_or("golden-sets/demo-cxr", String::as_str));
    let spec = CandleClipSpec {
        path: model,
        sha256: None,
        device: "cpu".into(),
        batch_size: 64,
        precision: "f32".into(),
    };
    let prompts = medgate::demo::prompts();
    let backend = ClipBackend::load(&spec, &prompts, std::path::Path::new("."))?;
    eprintln!("sha256 {}", backend.sha256());
    let text = std::fs::read_to_string(set.join("manifest.csv"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty manifest")?.split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("no column {name}"))
    };
    let (ci, ii, fi) = (col("case_id")?, col("image")?, col("finding")?);
    let images = rows
        .iter()
        .map(|r| load_image(&set.join(r[ii])))
        .collect::<Result<Vec<_>, _>>()?;
    let scores = backend.score_images(&images)?;
    let labels: Vec<bool> = rows.iter().map(|r| r[fi] == "1").collect();
    println!(
        "overall AUROC {:.4} (n={})",
        auroc(&scores, &labels),
        rows.len()
    );
    for attr in ["sex", "age_band", "view_position", "manufacturer", "site"] {
        let a = col(attr)?;
        let mut groups: BTreeMap<&str, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for ((r, s), l) in rows.iter().zip(&scores).zip(&labels) {
            let g = groups.entry(r[a]).or_default();
            g.0.push(*s);
            g.1.push(*l);
        }
        for (k, (s, l)) in groups {
            let p = l.iter().filter(|&&x| x).count();
            println!(
                "  {attr}={k:28} AUROC {:.4} (n={}, positives={p})",
                auroc(&s, &l),
                s.len()
            );
        }
    }
    let acc = scores
        .iter()
        .zip(&labels)
        .filter(|(s, l)| (**s >= 0.5) == **l)
        .count() as f64
        / scores.len() as f64;
    println!("accuracy at 0.5: {acc:.4}");
    for (r, s) in rows.iter().zip(&scores).take(8) {
        println!("  {} {} {:.8}", r[ci], r[fi], s);
    }
    Ok(())
}
