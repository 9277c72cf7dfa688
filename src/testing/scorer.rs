//! A scorer for tests and benchmarks of `medgate serve`'s HTTP path.

use crate::error::{Error, Result};
use crate::serve::Scorer;

/// A scorer for tests and benchmarks of the HTTP path: the mean grey level of the image
/// divided by 255 (white = 1, black = 0). Cheap and exact, so a client's score can be
/// compared with the pixel data it sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct MeanIntensityScorer;

impl MeanIntensityScorer {
    /// The score of one decoded image.
    pub fn score_image(img: &image::DynamicImage) -> f64 {
        let g = img.to_luma8();
        let n = g.as_raw().len();
        if n == 0 {
            return 0.0;
        }
        let sum: u64 = g.as_raw().iter().map(|&v| u64::from(v)).sum();
        sum as f64 / (n as f64 * 255.0)
    }
}

impl Scorer for MeanIntensityScorer {
    fn score_encoded(&self, images: &[&[u8]]) -> Result<Vec<f64>> {
        images
            .iter()
            .map(|b| {
                image::load_from_memory(b)
                    .map(|img| Self::score_image(&img))
                    .map_err(|e| Error::input(format!("cannot decode image: {e}")))
            })
            .collect()
    }
}
