//! What `medgate serve` puts behind the API: a contrastive [`Scorer`] (one probability per
//! image, e.g. [`ClipScorer`]) or a generative [`Generator`] (image + question -> tokens,
//! e.g. the in-process `candle-vlm` backend, [`crate::model::vlm::VlmBackend`]).
//!
//! Images are decoded from memory ([`crate::golden::image::decode_raster`]: the decoder and
//! conversion a validation run uses for a PNG or JPEG file), never through a temporary file,
//! and only after the header's `width * height` has been checked against the server's limit.

use crate::error::{Error, Result};
use crate::golden::image::{LoadedImage, decode_raster};
use crate::model::vlm::{Generation, VlmBackend};

/// Default limit on an image's `width * height` (50 megapixels: above the largest
/// full-field mammograms, about 0.6 GB as f32 RGB samples).
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 50_000_000;

/// Something that turns encoded images into probabilities of the positive class.
pub trait Scorer: Send + Sync {
    /// Scores encoded images (PNG or JPEG bytes, as decoded from the data URL); one
    /// probability in [0, 1] per image, in order. The server has already checked each
    /// header's dimensions against its limit.
    fn score_encoded(&self, images: &[&[u8]]) -> Result<Vec<f64>>;
}

/// A generative model answering one image and one question with greedily decoded tokens.
pub trait Generator: Send + Sync {
    /// Answers `question` about `image`, at most `max_tokens` tokens; `on_token` gets each
    /// token id as it is chosen with the next-token logits it was chosen from, and returns
    /// false to stop. Input errors (an image the processor cannot take) are
    /// [`Error::Input`]; anything else is the server's failure.
    fn generate(
        &self,
        image: &LoadedImage,
        question: &str,
        max_tokens: usize,
        on_token: &mut dyn FnMut(u32, &[f32]) -> bool,
    ) -> Result<Generation>;
    /// The bytes a token stands for (OpenAI's `bytes` field).
    fn token_bytes(&self, id: u32) -> Vec<u8>;
    /// The answer text of `ids` (special tokens skipped).
    fn decode_text(&self, ids: &[u32]) -> Result<String>;
    /// `max_tokens` when a request does not set it.
    fn default_max_tokens(&self) -> usize;
}

impl Generator for VlmBackend {
    fn generate(
        &self,
        image: &LoadedImage,
        question: &str,
        max_tokens: usize,
        on_token: &mut dyn FnMut(u32, &[f32]) -> bool,
    ) -> Result<Generation> {
        let prepared = self.prepare(image)?;
        VlmBackend::generate(self, &prepared, question, max_tokens, on_token)
    }

    fn token_bytes(&self, id: u32) -> Vec<u8> {
        VlmBackend::token_bytes(self, id)
    }

    fn decode_text(&self, ids: &[u32]) -> Result<String> {
        VlmBackend::decode_text(self, ids)
    }

    fn default_max_tokens(&self) -> usize {
        self.max_tokens()
    }
}

/// Serves a `candle-clip` checkpoint: each image is decoded from memory as a validation run
/// decodes a file ([`decode_raster`]), checked by [`crate::model::clip::check_image`] and
/// scored by [`crate::model::clip::ClipBackend::score_images`]: the same preprocessing and
/// the same score as `predict_batch` gives for that image on disk.
pub struct ClipScorer {
    backend: crate::model::clip::ClipBackend,
    max_pixels: u64,
}

impl std::fmt::Debug for ClipScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipScorer")
            .field("max_pixels", &self.max_pixels)
            .finish()
    }
}

impl ClipScorer {
    /// Wraps a loaded backend (images up to [`DEFAULT_MAX_IMAGE_PIXELS`]).
    pub fn new(backend: crate::model::clip::ClipBackend) -> Result<Self> {
        Ok(ClipScorer {
            backend,
            max_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        })
    }

    /// Sets the `width * height` limit checked before decoding.
    pub fn with_max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }
}

impl Scorer for ClipScorer {
    fn score_encoded(&self, images: &[&[u8]]) -> Result<Vec<f64>> {
        let decoded = images
            .iter()
            .map(|b| {
                let img = decode_raster(b, self.max_pixels)?;
                crate::model::clip::check_image(&img)?;
                Ok(img)
            })
            .collect::<Result<Vec<_>>>()?;
        self.backend.score_images(&decoded)
    }
}

/// The model a server hosts.
#[derive(Clone)]
pub enum Served {
    /// A contrastive scorer: answers `yes`/`no` with its probability as logprobs.
    Scorer(std::sync::Arc<dyn Scorer>),
    /// A generative model: answers its greedy decoding, with per-token logprobs.
    Generator(std::sync::Arc<dyn Generator>),
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Served::Scorer(_) => "Served::Scorer",
            Served::Generator(_) => "Served::Generator",
        })
    }
}

/// Checks an encoded image's declared size against `max_pixels` before anything decodes it:
/// `Err((413, message))` when over, `Err((400, message))` when the header is unreadable.
pub fn check_declared_size(
    bytes: &[u8],
    max_pixels: u64,
) -> std::result::Result<(), (u16, String)> {
    if !(bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.starts_with(&[0xFF, 0xD8, 0xFF])) {
        return Err((400, "the image is neither PNG nor JPEG".into()));
    }
    let (w, h) = crate::golden::image::raster_dimensions(bytes).map_err(|m| (400, m))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err((
            413,
            format!(
                "the image declares {w}x{h} = {pixels} pixels, over this server's limit of {max_pixels} (--max-image-pixels)"
            ),
        ));
    }
    Ok(())
}

/// A decoded image for a generator, within the limit.
pub fn decode_for_generator(bytes: &[u8], max_pixels: u64) -> Result<LoadedImage> {
    decode_raster(bytes, max_pixels).map_err(|e| match e {
        e @ Error::Input { .. } => e,
        other => Error::input(other.to_string()),
    })
}
