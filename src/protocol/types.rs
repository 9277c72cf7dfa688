//! The protocol format, v1: the data types a validation protocol deserialises into.
//!
//! These types are the contract between the protocol author and every later stage. Field
//! names are documented for users in `protocols/README.md`; the JSON Schema printed by
//! `medgate schema` is derived from these definitions, so the two cannot drift.
//!
//! Paths inside a protocol are relative to the protocol file's directory.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Current protocol format version.
pub const FORMAT_VERSION: u32 = 1;

/// Fewest usable resamples a bootstrap interval may rest on for a criterion on it to be
/// evaluable: 1000, the number Efron & Tibshirani (1993, An Introduction to the Bootstrap,
/// ch. 13) and Davison & Hinkley (1997, ch. 5) ask for percentile intervals at 95%.
pub const MIN_USABLE_RESAMPLES: u32 = 1000;

/// A validation protocol (the pre-specified statistical analysis plan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// Protocol format version; must be 1.
    #[schemars(extend("const" = 1))]
    pub medgate_protocol: u32,
    /// Document ID of the protocol, e.g. `VP-PTX-001`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub protocol: String,
    /// Human title.
    pub title: String,
    /// Protocol document version, e.g. `"1.0"`.
    pub version: String,
    /// Intended use statement of the device function under test.
    pub intended_use: String,
    /// The model under test and how to run it.
    pub model: ModelSpec,
    /// What the model is asked and the locked operating point.
    pub task: TaskSpec,
    /// The locked golden set.
    pub golden_set: GoldenSetSpec,
    /// Subgroup analysis plan.
    #[serde(default)]
    pub subgroups: SubgroupSpec,
    /// Statistical methods.
    #[serde(default)]
    pub statistics: StatisticsSpec,
    /// Acceptance criteria, each verifying a requirement.
    #[schemars(length(min = 1))]
    pub acceptance: Vec<Criterion>,
    /// Requirement and risk files the criteria trace to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceability: Option<TraceabilitySpec>,
    /// Report formats and signatories.
    #[serde(default)]
    pub report: ReportSpec,
    /// Audit ledger of golden-set use.
    #[serde(default)]
    pub ledger: LedgerSpec,
    /// Release comparison: the earlier release this model is validated against, on the same
    /// locked cases (criteria on `*_difference` metrics need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonSpec>,
    /// Change-control identity of the modification under validation (e.g. a PCCP reference),
    /// recorded in the evidence and printed in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_control: Option<ChangeControlSpec>,
    /// Post-market monitoring plan (`medgate monitor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<super::monitoring::MonitoringSpec>,
}

/// The reference release of a comparison: exactly one of `reference` (an earlier verified
/// bundle) and `reference_model` (a second model run in the same `medgate run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComparisonSpec {
    /// The reference: an earlier evidence bundle of the same protocol on the same locked set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceSpec>,
    /// The reference: a second model run on the same locked cases in this run, journaled
    /// into the bundle's `reference/journal.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_model: Option<ReferenceModelSpec>,
}

/// A reference model run in the same run as the model under test, on the same cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceModelSpec {
    /// A human name for the reference release, e.g. `"release 1.0 (cleared)"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The reference model and how to run it (same form as the protocol's `model`).
    pub model: ModelSpec,
    /// The reference's prompts for contrastive backends; default: the protocol's
    /// `task.prompts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Prompts>,
    /// The reference's locked operating point; default: the protocol's `task.threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: Option<f64>,
}

impl Protocol {
    /// The protocol the in-run reference model (`comparison.reference_model`) runs under:
    /// this protocol with `model` replaced, and `task.prompts` and `task.threshold` replaced
    /// where the reference pre-specifies them; no comparison and no difference criteria.
    /// `None` without a reference model.
    pub fn reference_protocol(&self) -> Option<Protocol> {
        let rm = self.comparison.as_ref()?.reference_model.as_ref()?;
        let mut p = self.clone();
        p.model = rm.model.clone();
        if let Some(pr) = &rm.prompts {
            p.task.prompts = Some(pr.clone());
        }
        if let Some(t) = rm.threshold {
            p.task.threshold = t;
        }
        p.comparison = None;
        p.acceptance.retain(|c| c.metric.difference_of().is_none());
        Some(p)
    }
}

/// An earlier verified evidence bundle, pinned by its results hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// The reference bundle directory (relative to the protocol file). It is verified before
    /// use and its cases are copied into the new bundle.
    pub bundle: PathBuf,
    /// The reference bundle's `results_sha256` (its evidence.json), pinned before unblinding.
    pub results_sha256: String,
    /// A human name for the reference release, e.g. `"release 1.0 (cleared)"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Change-control identity of a modification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeControlSpec {
    /// The change-control plan the modification falls under, e.g. a PCCP reference
    /// `PCCP-CXR-2026-01`.
    pub plan: String,
    /// The modification type as the plan names it, e.g. `retraining`, `prompt change`.
    pub modification: String,
    /// What changed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The model under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "backend", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// A CLIP-architecture checkpoint in Hugging Face layout, run in-process with candle.
    CandleClip(CandleClipSpec),
    /// Any OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp, Ollama, `medgate serve`).
    Openai(OpenaiSpec),
    /// Recorded predictions for a model that cannot run here.
    Replay(ReplaySpec),
    /// A generative vision-language model in Hugging Face layout, run in-process with candle.
    CandleVlm(CandleVlmSpec),
}

/// The kind of model backend, as recorded in the evidence (`candle-clip`, `openai`,
/// `replay`). The protocol's `model.backend` tag and `evidence.model.backend` use the same
/// spelling.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// A CLIP-architecture checkpoint run in-process with candle.
    CandleClip,
    /// An OpenAI-compatible chat-completions server.
    Openai,
    /// Recorded predictions.
    Replay,
    /// A generative vision-language model run in-process with candle.
    CandleVlm,
}

impl BackendKind {
    /// The name as written in protocols and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::CandleClip => "candle-clip",
            BackendKind::Openai => "openai",
            BackendKind::Replay => "replay",
            BackendKind::CandleVlm => "candle-vlm",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ModelSpec {
    /// The backend this spec selects.
    pub fn backend(&self) -> BackendKind {
        match self {
            ModelSpec::CandleClip(_) => BackendKind::CandleClip,
            ModelSpec::Openai(_) => BackendKind::Openai,
            ModelSpec::Replay(_) => BackendKind::Replay,
            ModelSpec::CandleVlm(_) => BackendKind::CandleVlm,
        }
    }

    /// The backend's name as written in the protocol.
    pub fn backend_name(&self) -> &'static str {
        self.backend().as_str()
    }

    /// The pinned SHA-256 of the weights (or of the predictions file for replay), if any.
    pub fn pinned_sha256(&self) -> Option<&str> {
        match self {
            ModelSpec::CandleClip(s) => s.sha256.as_deref(),
            ModelSpec::Openai(s) => s.sha256.as_deref(),
            ModelSpec::Replay(s) => s.sha256.as_deref(),
            ModelSpec::CandleVlm(s) => s.sha256.as_deref(),
        }
    }
}

/// Settings of the `candle-clip` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CandleClipSpec {
    /// Directory with `config.json`, `model.safetensors`, `tokenizer.json`.
    pub path: PathBuf,
    /// Pinned SHA-256 of `model.safetensors`; a mismatch refuses to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// `cpu`, `cuda:N` or `auto`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Images per forward pass.
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
    /// `f32` (default), or `bf16`/`f16` on GPU.
    #[serde(default = "default_precision")]
    pub precision: String,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_batch() -> usize {
    32
}
fn default_precision() -> String {
    "f32".into()
}

/// Settings of the `candle-vlm` backend (a generative vision-language model in-process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CandleVlmSpec {
    /// Directory in Hugging Face layout: `config.json`, `model.safetensors` or sharded
    /// `*.safetensors` with `model.safetensors.index.json`, `tokenizer.json`, the chat template
    /// (`chat_template.json`, `chat_template.jinja` or `tokenizer_config.json`) and
    /// `preprocessor_config.json`.
    pub path: PathBuf,
    /// Pinned weights hash: SHA-256 over every shard in the documented order (see
    /// `medgate::model::vlm`); a mismatch refuses to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `cpu`, `cuda:N` or `auto`.
    #[serde(default = "default_device")]
    pub device: String,
    /// `f32` (default), `bf16` or `f16`, on the CPU or a GPU. Half precision rounds where
    /// transformers rounds in the same dtype (softmax, norms, activations and rotary angles in
    /// f32), so it matches transformers run in that dtype, not the f32 model.
    #[serde(default = "default_precision")]
    pub precision: String,
    /// Cases per forward pass (left-padded); it can change answers in the last bits, so it is
    /// part of the journal key.
    #[serde(default = "default_vlm_batch")]
    pub batch_size: usize,
    /// Reuse keys and values while decoding (`false` recomputes the whole sequence per token).
    #[serde(default = "default_true")]
    pub kv_cache: bool,
    /// Greedy-decoded tokens for the raw answer.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Which result is the case's score: `logprobs` (p(positive) / (p(positive) +
    /// p(negative)) at the answer position) or `parsed` (1 / 0 / 0.5 from the decoded answer).
    #[serde(default)]
    pub score: VlmScore,
    /// Words whose tokens make up the positive and negative token sets (case and
    /// leading-space variants are added).
    #[serde(default)]
    pub answer_words: AnswerWords,
}

fn default_vlm_batch() -> usize {
    1
}

/// Which of a generative model's two results scores a case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VlmScore {
    /// Next-token probabilities at the answer position.
    #[default]
    Logprobs,
    /// The greedy answer parsed by the task's answer rules.
    Parsed,
}

/// The answer words a generative backend looks up in its tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerWords {
    /// Words meaning "finding present".
    pub positive: Vec<String>,
    /// Words meaning "finding absent".
    pub negative: Vec<String>,
}

impl Default for AnswerWords {
    fn default() -> Self {
        AnswerWords {
            positive: vec!["yes".into()],
            negative: vec!["no".into()],
        }
    }
}

/// Settings of the `openai` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenaiSpec {
    /// One or more base URLs (e.g. `http://127.0.0.1:8000/v1`); they share one queue of cases.
    #[schemars(length(min = 1))]
    pub base_urls: Vec<String>,
    /// Model name sent in each request.
    pub model: String,
    /// Name of the environment variable holding the API key (the key is never recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Model version or weights hash the server is expected to serve, recorded as the model hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// Sampling temperature (0 for validation).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub temperature: f64,
    /// Maximum tokens in the answer.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling seed sent to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Requests in flight at once (per server).
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1))]
    pub concurrency: usize,
    /// Per-request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Retries after the first attempt (backoff doubles from 0.5 s).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Ask for logprobs of the answer token to derive a continuous score.
    #[serde(default = "default_true")]
    pub logprobs: bool,
}

fn default_max_tokens() -> u32 {
    8
}
fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> f64 {
    60.0
}
fn default_retries() -> u32 {
    3
}
fn default_true() -> bool {
    true
}

/// Settings of the `replay` backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// CSV or Parquet with `case_id`, `score` and optionally `answer`.
    pub predictions: PathBuf,
    /// Pinned SHA-256 of the predictions file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// The task: what is asked and the locked operating point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Only `binary` in format v1.
    pub kind: TaskKind,
    /// Text prompts for contrastive (CLIP) backends; several per class are averaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Prompts>,
    /// The question put to a generative (chat) backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// How a generative answer is parsed.
    #[serde(default)]
    pub answer: AnswerRule,
    /// The locked operating point: positive when score >= threshold (scores are in [0, 1]).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: f64,
}

/// Task kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Finding present / absent.
    Binary,
}

/// Prompt ensembles for the positive and negative class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prompts {
    /// Texts describing a positive case.
    #[schemars(length(min = 1))]
    pub positive: Vec<String>,
    /// Texts describing a negative case.
    #[schemars(length(min = 1))]
    pub negative: Vec<String>,
}

/// How a generative answer maps to positive / negative / equivocal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRule {
    /// Case-insensitive regex: a match means positive.
    #[serde(default = "default_positive_re")]
    pub positive: String,
    /// Case-insensitive regex: a match means negative.
    #[serde(default = "default_negative_re")]
    pub negative: String,
}

impl Default for AnswerRule {
    fn default() -> Self {
        AnswerRule {
            positive: default_positive_re(),
            negative: default_negative_re(),
        }
    }
}

fn default_positive_re() -> String {
    r"^\W*yes\b".into()
}
fn default_negative_re() -> String {
    r"^\W*no\b".into()
}

/// Where the golden set is and which manifest columns mean what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoldenSetSpec {
    /// The set's directory.
    pub path: PathBuf,
    /// Lock file, relative to the set (default `LOCK`).
    #[serde(default = "default_lock")]
    pub lock: PathBuf,
    /// Manifest, relative to the set (default `manifest.csv`).
    #[serde(default = "default_manifest")]
    pub manifest: PathBuf,
    /// Column with the case ID.
    #[serde(default = "default_case_id")]
    pub case_id_column: String,
    /// Column with the ground-truth label (0/1 or true/false).
    pub label_column: String,
    /// Column with the image path, relative to the set.
    #[serde(default = "default_image")]
    pub image_column: String,
    /// Which frame of a multi-frame DICOM image the model sees (default `refuse`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub frames: FramePolicy,
    /// Which VOI transformation renders a grayscale DICOM image (default `window`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub voi: VoiPolicy,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Which frame of a multi-frame DICOM image the model sees (`golden_set.frames`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FramePolicy {
    /// Multi-frame images are not evaluated, with a reason naming the frame count.
    #[default]
    Refuse,
    /// The first frame.
    First,
    /// Frame `n / 2` (0-based) of `n`.
    Middle,
}

/// Which VOI transformation renders a grayscale DICOM image (`golden_set.voi`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoiPolicy {
    /// The file's first window (Window Center/Width), else min-max over the frame.
    #[default]
    Window,
    /// The file's first VOI LUT Sequence item, else its first window, else min-max.
    Lut,
    /// Min-max over the frame, ignoring the file's VOI attributes.
    Minmax,
}

fn default_lock() -> PathBuf {
    "LOCK".into()
}
fn default_manifest() -> PathBuf {
    "manifest.csv".into()
}
fn default_case_id() -> String {
    "case_id".into()
}
fn default_image() -> String {
    "image".into()
}

/// The subgroup analysis plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubgroupSpec {
    /// Manifest columns analysed level by level.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// Attribute combinations analysed jointly, e.g. `[[sex, age_band]]`.
    #[serde(default)]
    pub intersections: Vec<Vec<String>>,
}

/// Interval methods for proportions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IntervalMethod {
    /// Wilson score interval (FDA 2007 worked examples).
    #[default]
    Wilson,
    /// Exact Clopper-Pearson interval.
    ClopperPearson,
    /// Jeffreys equal-tailed Bayesian interval.
    Jeffreys,
    /// Stratified percentile bootstrap for AUROC; proportions then get Clopper-Pearson
    /// intervals (a percentile bootstrap undercovers a proportion near 0 or 1).
    Bootstrap,
}

impl IntervalMethod {
    /// Every method.
    pub const ALL: [IntervalMethod; 4] = [
        IntervalMethod::Wilson,
        IntervalMethod::ClopperPearson,
        IntervalMethod::Jeffreys,
        IntervalMethod::Bootstrap,
    ];

    /// Parses the protocol/JSON spelling (`wilson`, `clopper-pearson`, ...).
    pub fn parse(s: &str) -> Option<IntervalMethod> {
        IntervalMethod::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The name as written in protocols and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            IntervalMethod::Wilson => "wilson",
            IntervalMethod::ClopperPearson => "clopper-pearson",
            IntervalMethod::Jeffreys => "jeffreys",
            IntervalMethod::Bootstrap => "bootstrap",
        }
    }
}

impl std::fmt::Display for IntervalMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Multiplicity adjustment across the family of subgroup hypotheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Multiplicity {
    /// No adjustment.
    None,
    /// Bonferroni.
    Bonferroni,
    /// Holm-Bonferroni step-down.
    #[default]
    Holm,
}

/// Statistical methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatisticsSpec {
    /// Two-sided confidence level, e.g. 0.95.
    #[serde(default = "default_confidence")]
    #[schemars(extend("exclusiveMinimum" = 0.5, "exclusiveMaximum" = 1.0))]
    pub confidence: f64,
    /// Interval method for proportions.
    #[serde(default)]
    pub interval: IntervalMethod,
    /// Bootstrap resamples (for `bootstrap` intervals and subgroup gaps).
    #[serde(default = "default_resamples")]
    #[schemars(range(min = 1))]
    pub bootstrap_resamples: u32,
    /// Seed of the bootstrap RNG (ChaCha8).
    #[serde(default = "default_seed")]
    pub bootstrap_seed: u64,
    /// Multiplicity adjustment of the homogeneity p-values of the subgroup gaps the
    /// acceptance criteria name (the family); other gaps' p-values are informational.
    #[serde(default)]
    pub multiplicity: Multiplicity,
    /// Minimum denominator of a metric (positives for sensitivity and AUROC's smaller class,
    /// negatives for specificity, predicted positives for PPV...), overall and per subgroup
    /// level: criteria on a smaller denominator are not evaluable, and such levels make gap
    /// criteria not evaluable unless the criterion excludes them by name.
    #[serde(default = "default_min_subgroup")]
    #[schemars(range(min = 1))]
    pub min_subgroup_size: usize,
    /// Largest tolerated fraction of cases not evaluated (infrastructure failures) before the run
    /// is an infrastructure failure (exit 3).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_not_evaluated_fraction: f64,
    /// Which analysis the gate uses when some cases were not evaluated: `primary` (they are
    /// left out, and the all-wrong / all-right bounds are reported beside it) or `worst_case`
    /// (the gate uses the analysis with every not-evaluated case counted as wrong).
    #[serde(default, skip_serializing_if = "NotEvaluatedGate::is_primary")]
    pub not_evaluated_gate: NotEvaluatedGate,
    /// Prevalence of the condition in the intended-use population. When set, PPV and NPV are
    /// also reported adjusted to it (`ppv_at_prevalence`, `npv_at_prevalence`), and a criterion
    /// on the set's own PPV/NPV warns when the set's prevalence differs from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_use_prevalence: Option<f64>,
}

/// The analysis that gates when cases were not evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum NotEvaluatedGate {
    /// Not-evaluated cases are left out of the gated analysis.
    #[default]
    Primary,
    /// The gate uses the analysis with every not-evaluated case counted against the truth.
    WorstCase,
}

impl NotEvaluatedGate {
    fn is_primary(&self) -> bool {
        *self == NotEvaluatedGate::Primary
    }
}

impl Default for StatisticsSpec {
    fn default() -> Self {
        StatisticsSpec {
            confidence: default_confidence(),
            interval: IntervalMethod::default(),
            bootstrap_resamples: default_resamples(),
            bootstrap_seed: default_seed(),
            multiplicity: Multiplicity::default(),
            min_subgroup_size: default_min_subgroup(),
            max_not_evaluated_fraction: 0.0,
            not_evaluated_gate: NotEvaluatedGate::Primary,
            intended_use_prevalence: None,
        }
    }
}

fn default_confidence() -> f64 {
    0.95
}
fn default_resamples() -> u32 {
    2000
}
fn default_seed() -> u64 {
    20_070_315
}
fn default_min_subgroup() -> usize {
    30
}

/// Metrics a criterion may test. `*_gap` metrics are the largest difference between two
/// levels of an attribute.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// TP / (TP + FN).
    Sensitivity,
    /// TN / (TN + FP).
    Specificity,
    /// TP / (TP + FP).
    Ppv,
    /// TN / (TN + FN).
    Npv,
    /// (TP + TN) / n.
    Accuracy,
    /// Area under the ROC curve.
    Auroc,
    /// Harmonic mean of PPV and sensitivity.
    F1,
    /// Largest sensitivity difference between two levels of an attribute.
    SensitivityGap,
    /// Largest specificity difference between two levels of an attribute.
    SpecificityGap,
    /// Largest AUROC difference between two levels of an attribute.
    AurocGap,
    /// PPV adjusted to `statistics.intended_use_prevalence`.
    PpvAtPrevalence,
    /// NPV adjusted to `statistics.intended_use_prevalence`.
    NpvAtPrevalence,
    /// Expected calibration error (10 equal-width bins, weighted by bin size); scores must be
    /// probabilities.
    Ece,
    /// Calibration intercept (calibration-in-the-large, logistic recalibration with the
    /// logit of the score as offset); ideal 0.
    CalibrationIntercept,
    /// Calibration slope (logistic regression of the label on the logit of the score); ideal 1.
    CalibrationSlope,
    /// Spiegelhalter's z statistic; ideal 0.
    SpiegelhalterZ,
    /// Paired sensitivity difference, new minus reference release (needs `comparison`).
    SensitivityDifference,
    /// Paired specificity difference, new minus reference release (needs `comparison`).
    SpecificityDifference,
    /// Paired AUROC difference (DeLong), new minus reference release (needs `comparison`).
    AurocDifference,
}

impl Metric {
    /// Every metric, for "did you mean" suggestions and documentation.
    pub const ALL: [Metric; 19] = [
        Metric::Sensitivity,
        Metric::Specificity,
        Metric::Ppv,
        Metric::Npv,
        Metric::Accuracy,
        Metric::Auroc,
        Metric::F1,
        Metric::SensitivityGap,
        Metric::SpecificityGap,
        Metric::AurocGap,
        Metric::PpvAtPrevalence,
        Metric::NpvAtPrevalence,
        Metric::Ece,
        Metric::CalibrationIntercept,
        Metric::CalibrationSlope,
        Metric::SpiegelhalterZ,
        Metric::SensitivityDifference,
        Metric::SpecificityDifference,
        Metric::AurocDifference,
    ];

    /// The name as written in protocols and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Sensitivity => "sensitivity",
            Metric::Specificity => "specificity",
            Metric::Ppv => "ppv",
            Metric::Npv => "npv",
            Metric::Accuracy => "accuracy",
            Metric::Auroc => "auroc",
            Metric::F1 => "f1",
            Metric::SensitivityGap => "sensitivity_gap",
            Metric::SpecificityGap => "specificity_gap",
            Metric::AurocGap => "auroc_gap",
            Metric::PpvAtPrevalence => "ppv_at_prevalence",
            Metric::NpvAtPrevalence => "npv_at_prevalence",
            Metric::Ece => "ece",
            Metric::CalibrationIntercept => "calibration_intercept",
            Metric::CalibrationSlope => "calibration_slope",
            Metric::SpiegelhalterZ => "spiegelhalter_z",
            Metric::SensitivityDifference => "sensitivity_difference",
            Metric::SpecificityDifference => "specificity_difference",
            Metric::AurocDifference => "auroc_difference",
        }
    }

    /// For a release-comparison metric, the metric whose paired difference it is.
    pub fn difference_of(self) -> Option<Metric> {
        match self {
            Metric::SensitivityDifference => Some(Metric::Sensitivity),
            Metric::SpecificityDifference => Some(Metric::Specificity),
            Metric::AurocDifference => Some(Metric::Auroc),
            _ => None,
        }
    }

    /// For a gap metric, the metric whose gap it is.
    pub fn gap_of(self) -> Option<Metric> {
        match self {
            Metric::SensitivityGap => Some(Metric::Sensitivity),
            Metric::SpecificityGap => Some(Metric::Specificity),
            Metric::AurocGap => Some(Metric::Auroc),
            _ => None,
        }
    }

    /// Whether the metric is a calibration metric (computed for the whole set only, goals not
    /// restricted to `[0, 1]`).
    pub fn is_calibration(self) -> bool {
        matches!(
            self,
            Metric::Ece
                | Metric::CalibrationIntercept
                | Metric::CalibrationSlope
                | Metric::SpiegelhalterZ
        )
    }

    /// Parses the protocol/JSON spelling (`sensitivity`, `auroc_gap`, ...).
    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The name printed in reports (`Sensitivity`, `AUROC`, `Sensitivity gap`, ...).
    pub fn display_name(self) -> &'static str {
        match self {
            Metric::Sensitivity => "Sensitivity",
            Metric::Specificity => "Specificity",
            Metric::Ppv => "PPV",
            Metric::Npv => "NPV",
            Metric::Accuracy => "Accuracy",
            Metric::Auroc => "AUROC",
            Metric::F1 => "F1",
            Metric::SensitivityGap => "Sensitivity gap",
            Metric::SpecificityGap => "Specificity gap",
            Metric::AurocGap => "AUROC gap",
            Metric::SensitivityDifference => "Sensitivity difference (new - reference)",
            Metric::SpecificityDifference => "Specificity difference (new - reference)",
            Metric::AurocDifference => "AUROC difference (new - reference)",
            // Printed as written in the protocol.
            m @ (Metric::PpvAtPrevalence
            | Metric::NpvAtPrevalence
            | Metric::Ece
            | Metric::CalibrationIntercept
            | Metric::CalibrationSlope
            | Metric::SpiegelhalterZ) => m.as_str(),
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a criterion ranges over. Written in protocols and JSON as one string: `overall`,
/// `each_subgroup` (every level of every attribute), an attribute name (every level of that
/// attribute), or an intersection `a x b` (every combined level, as named in the
/// statistics' subgroup table).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Scope {
    /// The whole evaluated set.
    #[default]
    Overall,
    /// Every level of every (single) subgroup attribute.
    EachSubgroup,
    /// Every level of one attribute.
    Attribute(String),
    /// Every combined level of an attribute intersection, e.g. `sex x age_band`.
    Intersection(Vec<String>),
}

/// The separator of intersection names (`sex x age_band`), shared with the statistics.
const INTERSECTION_SEPARATOR: &str = " x ";

impl Scope {
    /// Parses the protocol/JSON spelling; every string is a scope (whether an attribute
    /// exists is for [`crate::protocol::check()`] to say).
    pub fn parse(s: &str) -> Scope {
        match s {
            "overall" => Scope::Overall,
            "each_subgroup" => Scope::EachSubgroup,
            _ if s.contains(INTERSECTION_SEPARATOR) => Scope::Intersection(
                s.split(INTERSECTION_SEPARATOR)
                    .map(|a| a.trim().to_string())
                    .collect(),
            ),
            _ => Scope::Attribute(s.to_string()),
        }
    }

    /// The scope of a subgroup table row named `attribute` (an attribute or an
    /// intersection).
    pub fn of_subgroup(attribute: &str) -> Scope {
        match Scope::parse(attribute) {
            Scope::Intersection(v) => Scope::Intersection(v),
            _ => Scope::Attribute(attribute.to_string()),
        }
    }

    /// True for a subgroup table row that belongs to an intersection.
    pub fn is_intersection_name(attribute: &str) -> bool {
        attribute.contains(INTERSECTION_SEPARATOR)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Overall => f.write_str("overall"),
            Scope::EachSubgroup => f.write_str("each_subgroup"),
            Scope::Attribute(a) => f.write_str(a),
            Scope::Intersection(v) => f.write_str(&v.join(INTERSECTION_SEPARATOR)),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Scope::parse(&s))
    }
}

impl JsonSchema for Scope {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scope".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

/// How a tested value is compared with its goal.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Comparator {
    /// Pass when tested >= goal.
    AtLeast,
    /// Pass when tested <= goal.
    AtMost,
}

impl Comparator {
    /// The protocol/JSON key (`at_least`, `at_most`).
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::AtLeast => "at_least",
            Comparator::AtMost => "at_most",
        }
    }
    /// The mathematical symbol (`≥`, `≤`), for reports.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparator::AtLeast => "≥",
            Comparator::AtMost => "≤",
        }
    }
    /// The ASCII symbol (`>=`, `<=`), for consoles and JUnit names.
    pub fn ascii(self) -> &'static str {
        match self {
            Comparator::AtLeast => ">=",
            Comparator::AtMost => "<=",
        }
    }
}

/// A criterion's goal: at least x, or at most x. No rounding is applied before comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Pass when tested >= x.
    AtLeast(f64),
    /// Pass when tested <= x.
    AtMost(f64),
}

impl Goal {
    /// Builds a goal from a comparator and a value.
    pub fn new(comparator: Comparator, value: f64) -> Goal {
        match comparator {
            Comparator::AtLeast => Goal::AtLeast(value),
            Comparator::AtMost => Goal::AtMost(value),
        }
    }
    /// The comparator.
    pub fn comparator(self) -> Comparator {
        match self {
            Goal::AtLeast(_) => Comparator::AtLeast,
            Goal::AtMost(_) => Comparator::AtMost,
        }
    }
    /// The goal value.
    pub fn value(self) -> f64 {
        match self {
            Goal::AtLeast(v) | Goal::AtMost(v) => v,
        }
    }
    /// Whether `tested` meets the goal.
    pub fn is_met(self, tested: f64) -> bool {
        match self {
            Goal::AtLeast(g) => tested >= g,
            Goal::AtMost(g) => tested <= g,
        }
    }
}

/// Which part of the estimate a criterion tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The point estimate.
    Point,
    /// The lower confidence bound.
    Lower,
    /// The upper confidence bound.
    Upper,
}

impl Bound {
    /// The name as written in protocols and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Point => "point",
            Bound::Lower => "lower",
            Bound::Upper => "upper",
        }
    }
}

/// One acceptance criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["at_least"]}, {"required": ["at_most"]}]))]
pub struct Criterion {
    /// Unique criterion ID, e.g. `AC-PTX-01`.
    pub id: String,
    /// The requirement it verifies, e.g. `SRS-PTX-010`.
    pub requirement: String,
    /// The risk control measure it verifies, if any, e.g. `RC-PTX-03`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_control: Option<String>,
    /// The metric tested.
    pub metric: Metric,
    /// `overall`, `each_subgroup` (every level of every attribute), or an attribute name
    /// (every level of that attribute).
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// Which bound is compared with the goal.
    #[serde(default = "default_bound")]
    pub bound: Bound,
    /// Pass when the tested value is >= this (exactly one of `at_least`, `at_most`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub at_least: Option<f64>,
    /// Pass when the tested value is <= this (exactly one of `at_least`, `at_most`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub at_most: Option<f64>,
    /// Free-text rationale (why this goal), shown in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// Gap criteria: subgroup levels the protocol excludes from the gap by name (a level
    /// below the minimum size that is not listed here makes the criterion not evaluable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_levels: Vec<String>,
}

fn default_scope() -> Scope {
    Scope::Overall
}

impl Criterion {
    /// The goal: `at_least` or `at_most`. The protocol file keeps the two keys (so that
    /// [`crate::protocol::check()`] can locate "both" and "neither" in one pass); a protocol
    /// that passed the check has exactly one, and every later stage reads it through here.
    pub fn goal(&self) -> Option<Goal> {
        match (self.at_least, self.at_most) {
            (Some(g), None) => Some(Goal::AtLeast(g)),
            (None, Some(g)) => Some(Goal::AtMost(g)),
            _ => None,
        }
    }
}
fn default_bound() -> Bound {
    Bound::Lower
}

/// Where requirements and risk controls are defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceabilitySpec {
    /// Software requirements file (YAML).
    pub requirements: PathBuf,
    /// Risk control measures file (YAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risks: Option<PathBuf>,
}

/// Report formats.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Typst-rendered PDF (and `report.typ`).
    Pdf,
    /// Self-contained HTML.
    Html,
    /// Markdown.
    Md,
}

/// Report settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    /// Formats rendered into the bundle.
    #[serde(default = "default_formats")]
    pub formats: Vec<ReportFormat>,
    /// A directory of site templates overriding `templates/` (same file names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<PathBuf>,
    /// Who signs the report.
    #[serde(default)]
    pub signatories: Vec<Signatory>,
    /// Case thumbnails in the HTML case explorer: the longer side in pixels, `0` for none
    /// (keeps `report.html` small for large sets; 64 adds about 5 KB per case).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(max = 1024))]
    pub thumbnails: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Default for ReportSpec {
    fn default() -> Self {
        ReportSpec {
            formats: default_formats(),
            templates: None,
            signatories: Vec::new(),
            thumbnails: 0,
        }
    }
}

fn default_formats() -> Vec<ReportFormat> {
    vec![ReportFormat::Pdf, ReportFormat::Html, ReportFormat::Md]
}

/// A signatory of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signatory {
    /// Role, e.g. `Author`, `QA reviewer`, `Approver`.
    pub role: String,
    /// Printed name.
    pub name: String,
    /// Meaning of the signature, e.g. `approved`.
    #[serde(default = "default_meaning")]
    pub meaning: String,
}

fn default_meaning() -> String {
    "reviewed".into()
}

/// Audit ledger settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LedgerSpec {
    /// Ledger file; default `LEDGER.jsonl` beside the golden set's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Warn when more distinct model versions than this have been run on the set.
    #[serde(default = "default_max_models")]
    pub max_model_versions: usize,
}

impl Default for LedgerSpec {
    fn default() -> Self {
        LedgerSpec {
            path: None,
            max_model_versions: default_max_models(),
        }
    }
}

fn default_max_models() -> usize {
    5
}
