//! Model backends: run the model the user will ship, one case at a time or in batches.
//!
//! Four backends sit behind one trait, [`Backend`]: `candle-clip` (a CLIP-architecture
//! checkpoint run in-process with candle), `candle-vlm` (a generative vision-language model
//! run in-process, [`vlm`]), `openai` (any OpenAI-compatible chat-completions server) and
//! `replay` (recorded predictions). Each produces, per case, the raw response, a
//! score in [0, 1], the parsed answer and timing. A backend never turns a failure into a
//! negative answer: a case that fails after retries comes back as `Err`, and the harness
//! records it as "not evaluated".

pub mod build;
pub mod openai;
pub mod replay;
pub mod vlm;

use std::path::PathBuf;

pub mod clip;
pub mod clip_ckpt;

pub use build::build_backend;
pub use clip::ClipBackend;

use serde::{Deserialize, Serialize};

/// One case handed to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseInput {
    /// Case ID from the manifest.
    pub case_id: String,
    /// Absolute path of the image file.
    pub image_path: PathBuf,
    /// SHA-256 of the image file (from the golden-set lock).
    pub image_sha256: String,
}

/// The parsed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The finding is present.
    Positive,
    /// The finding is absent.
    Negative,
    /// The answer could not be parsed as either: recorded verbatim, analysed both ways.
    Equivocal,
}

/// Where a case's score came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreSource {
    /// Softmax over image-text similarities (contrastive backends).
    Softmax,
    /// Probability of the positive answer token from the server's logprobs.
    Logprobs,
    /// 1 or 0 from the parsed answer (no logprobs available).
    Parsed,
    /// Taken from a recorded predictions file.
    Replay,
}

/// One case's result from a backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The model's raw response (text, or a description of the logits for CLIP).
    pub raw: String,
    /// Score in [0, 1]; higher means more likely positive.
    pub score: f64,
    /// Parsed answer (for CLIP: Positive when score >= 0.5 of the class softmax; the
    /// protocol's threshold is applied later by the harness).
    pub answer: Answer,
    /// Where the score came from.
    pub score_source: ScoreSource,
    /// Attempts made (1 = first try succeeded).
    pub attempts: u32,
}

/// Why a case could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{reason}")]
pub struct CaseError {
    /// Human-readable reason, e.g. `HTTP 503 after 4 attempts`.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
}

/// What a backend reports about itself, recorded as provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `candle-clip`, `openai` or `replay`.
    pub backend: String,
    /// SHA-256 of the weights (or predictions file, or the pinned value for a remote server).
    pub model_sha256: Option<String>,
    /// A human name for the model (checkpoint directory name, served model name).
    pub model_name: String,
    /// Every effective setting (device, precision, batch size, prompts, generation
    /// parameters...), sorted keys. Secrets (API keys) never appear here.
    pub settings: serde_json::Value,
}

/// A model backend.
pub trait Backend: Send + Sync {
    /// Provenance: name, weight hash, effective settings.
    fn info(&self) -> BackendInfo;
    /// How many cases the harness should hand over per call.
    fn batch_size(&self) -> usize;
    /// Predicts a batch. Returns one entry per input, in input order; a failed case is
    /// `Err` (after the backend's own retries), never a made-up prediction.
    fn predict_batch(&self, cases: &[CaseInput]) -> Vec<Result<Prediction, CaseError>>;
}
