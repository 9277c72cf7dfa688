//! Semantic checks of a parsed protocol: everything serde cannot see.
//!
//! All problems are returned at once as [`Diagnostic`]s. Positions come from a shadow parse
//! of the same text into span-carrying types (serde-saphyr's `Spanned`), so "duplicate
//! criterion ID" points at the second `id:` and "bound out of range" at the number itself.
//! Checks that need other stages' files (the golden-set manifest's columns, the
//! requirement and risk files) take their facts as arguments, so this stage reads nothing
//! beyond the paths it checks for existence.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::load::{LoadedProtocol, nearest};
use super::types::{Comparator, FORMAT_VERSION, Goal, IntervalMethod, Metric, ModelSpec, Scope};
use crate::diag::Diagnostic;

type Pos = Option<(usize, usize)>;

fn pos<T>(s: &Spanned<T>) -> Pos {
    let l = s.referenced;
    (l.line() > 0).then(|| (l.line() as usize, l.column() as usize))
}

#[derive(Deserialize, Default)]
struct Shadow {
    #[serde(default)]
    medgate_protocol: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    protocol: Option<Spanned<String>>,
    #[serde(default)]
    model: Option<ShadowModel>,
    #[serde(default)]
    task: Option<ShadowTask>,
    #[serde(default)]
    golden_set: Option<ShadowGolden>,
    #[serde(default)]
    subgroups: Option<ShadowSubgroups>,
    #[serde(default)]
    statistics: Option<ShadowStats>,
    #[serde(default)]
    acceptance: Option<Spanned<Vec<ShadowCriterion>>>,
    #[serde(default)]
    traceability: Option<ShadowTrace>,
    #[serde(default)]
    report: Option<ShadowReport>,
    #[serde(default)]
    comparison: Option<Spanned<ShadowComparison>>,
}

#[derive(Deserialize, Default)]
struct ShadowComparison {
    #[serde(default)]
    reference: Option<Spanned<ShadowReference>>,
    #[serde(default)]
    reference_model: Option<Spanned<ShadowReferenceModel>>,
}

#[derive(Deserialize, Default)]
struct ShadowReference {
    #[serde(default)]
    results_sha256: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
struct ShadowReferenceModel {
    #[serde(default)]
    model: Option<ShadowModel>,
    #[serde(default)]
    threshold: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    prompts: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct ShadowModel {
    #[serde(default)]
    backend: Option<Spanned<String>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    predictions: Option<Spanned<String>>,
    #[serde(default)]
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    device: Option<Spanned<String>>,
    #[serde(default)]
    batch_size: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    precision: Option<Spanned<String>>,
    #[serde(default)]
    base_urls: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    concurrency: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    timeout_s: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    temperature: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct ShadowTask {
    #[serde(default)]
    threshold: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    prompts: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    question: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
struct ShadowGolden {
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    lock: Option<Spanned<String>>,
    #[serde(default)]
    manifest: Option<Spanned<String>>,
    #[serde(default)]
    case_id_column: Option<Spanned<String>>,
    #[serde(default)]
    label_column: Option<Spanned<String>>,
    #[serde(default)]
    image_column: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
struct ShadowSubgroups {
    #[serde(default)]
    attributes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    intersections: Option<Vec<Vec<Spanned<String>>>>,
}

#[derive(Deserialize, Default)]
struct ShadowStats {
    #[serde(default)]
    confidence: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    bootstrap_resamples: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    max_not_evaluated_fraction: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct ShadowCriterion {
    #[serde(default)]
    id: Option<Spanned<String>>,
    #[serde(default)]
    requirement: Option<Spanned<String>>,
    #[serde(default)]
    risk_control: Option<Spanned<String>>,
    #[serde(default)]
    metric: Option<Spanned<String>>,
    #[serde(default)]
    scope: Option<Spanned<String>>,
    #[serde(default)]
    at_least: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    at_most: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct ShadowTrace {
    #[serde(default)]
    requirements: Option<Spanned<String>>,
    #[serde(default)]
    risks: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
struct ShadowReport {
    #[serde(default)]
    templates: Option<Spanned<String>>,
    #[serde(default)]
    signatories: Option<Vec<Spanned<serde_json::Value>>>,
}

/// Facts from other files that some checks need; `None` skips those checks.
#[derive(Debug, Clone, Default)]
pub struct ExternalFacts {
    /// Columns of the golden-set manifest.
    pub manifest_columns: Option<Vec<String>>,
    /// Requirement IDs from the requirements file.
    pub requirement_ids: Option<Vec<String>>,
    /// Risk control IDs from the risks file.
    pub risk_control_ids: Option<Vec<String>>,
}

/// Collects diagnostics for one file.
struct Checker<'a> {
    file: &'a str,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(self.file, pos, msg));
        self.diags.last_mut().expect("just pushed")
    }
    fn warn(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic::warning(self.file, pos, msg));
    }
}

fn hint(d: &mut Diagnostic, h: impl Into<String>) {
    d.hint = Some(h.into());
}

/// The documented pattern of a protocol ID. The ID names the default bundle directory
/// (`runs/<ID>`), so it must be one safe path component: it starts with a letter or digit (so
/// never `.` or `..`), holds only `A-Z a-z 0-9 - _ .`, and is at most 64 characters.
const PROTOCOL_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

/// Whether `id` matches [`PROTOCOL_ID_PATTERN`].
fn safe_protocol_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 64
        && chars.all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
}

/// Checks a parsed protocol. Returns errors and warnings (warnings alone leave it valid).
pub fn check(lp: &LoadedProtocol, facts: &ExternalFacts) -> Vec<Diagnostic> {
    let file = lp.path.display().to_string();
    let shadow: Shadow = serde_saphyr::from_str(&lp.source).unwrap_or_default();
    let mut c = Checker {
        file: &file,
        diags: Vec::new(),
    };
    let p = &lp.protocol;

    if p.medgate_protocol != FORMAT_VERSION {
        let at = shadow.medgate_protocol.as_ref().and_then(pos);
        let d = c.error(
            at,
            format!(
                "unsupported protocol format version {}; this medgate reads version {FORMAT_VERSION}",
                p.medgate_protocol
            ),
        );
        hint(d, format!("write `medgate_protocol: {FORMAT_VERSION}`"));
    }
    let pid_pos = shadow.protocol.as_ref().and_then(pos);
    if !safe_protocol_id(&p.protocol) {
        let d = c.error(
            pid_pos,
            format!(
                "protocol ID `{}` must match {PROTOCOL_ID_PATTERN}: a letter or digit, then up to 63 letters, digits, `-`, `_` or `.` (it names the bundle directory)",
                crate::fsx::printable(&p.protocol)
            ),
        );
        hint(d, "use a document ID such as `VP-PTX-001`");
    }

    check_model(&mut c, lp, &p.model, shadow.model.as_ref());
    check_task(&mut c, &p.task, &p.model, shadow.task.as_ref());
    check_golden(&mut c, lp, &shadow, facts);
    check_statistics(&mut c, lp, &shadow);
    check_criteria(&mut c, lp, &shadow, facts);
    check_comparison(&mut c, lp, &shadow);
    check_report(&mut c, lp, &shadow);
    c.diags
}

fn check_path_exists(
    c: &mut Checker<'_>,
    lp: &LoadedProtocol,
    raw: &std::path::Path,
    at: Pos,
    what: &str,
    dir: bool,
) {
    let full = lp.resolve(raw);
    let ok = if dir { full.is_dir() } else { full.is_file() };
    if !ok {
        let d = c.error(
            at,
            format!(
                "{what} `{}` not found (resolved to {})",
                raw.display(),
                full.display()
            ),
        );
        hint(
            d,
            "paths in a protocol are relative to the protocol file's directory",
        );
    }
}

fn check_model(
    c: &mut Checker<'_>,
    lp: &LoadedProtocol,
    model: &ModelSpec,
    sm: Option<&ShadowModel>,
) {
    let pinned = model.pinned_sha256();
    if let Some(h) = pinned
        && (h.len() != 64
            || !h
                .chars()
                .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()))
    {
        let at = sm.and_then(|m| m.sha256.as_ref()).and_then(pos);
        let d = c.error(at, format!("sha256 `{h}` is not 64 lowercase hex digits"));
        hint(d, "compute it with `sha256sum model.safetensors`");
    }
    match model {
        ModelSpec::CandleClip(s) => {
            let at = sm.and_then(|m| m.path.as_ref()).and_then(pos);
            check_path_exists(c, lp, &s.path, at, "model directory", true);
            let dir = lp.resolve(&s.path);
            if dir.is_dir() {
                for f in ["config.json", "model.safetensors", "tokenizer.json"] {
                    if !dir.join(f).is_file() {
                        let d = c.error(
                            at,
                            format!("model directory `{}` has no `{f}`", s.path.display()),
                        );
                        hint(
                            d,
                            "a candle-clip checkpoint needs config.json, model.safetensors and tokenizer.json (Hugging Face layout)",
                        );
                    }
                }
            }
            let dev = s.device.as_str();
            let dev_ok = dev == "cpu"
                || dev == "auto"
                || dev == "cuda"
                || dev
                    .strip_prefix("cuda:")
                    .is_some_and(|n| n.parse::<usize>().is_ok());
            if !dev_ok {
                let at = sm.and_then(|m| m.device.as_ref()).and_then(pos);
                let d = c.error(
                    at,
                    format!("unknown device `{dev}`; expected `cpu`, `cuda:N` or `auto`"),
                );
                hint(
                    d,
                    "use `cpu` unless medgate was built with `--features cuda`",
                );
            }
            if s.batch_size == 0 {
                let at = sm.and_then(|m| m.batch_size.as_ref()).and_then(pos);
                c.error(at, "batch_size must be at least 1");
            }
            if !["f32", "bf16", "f16"].contains(&s.precision.as_str()) {
                let at = sm.and_then(|m| m.precision.as_ref()).and_then(pos);
                c.error(
                    at,
                    format!(
                        "unknown precision `{}`; expected f32, bf16 or f16",
                        s.precision
                    ),
                );
            } else if s.precision != "f32" && s.device == "cpu" {
                let at = sm.and_then(|m| m.precision.as_ref()).and_then(pos);
                c.warn(
                    at,
                    format!(
                        "precision {} on CPU is slow and rarely supported; f32 is the CPU default",
                        s.precision
                    ),
                );
            }
        }
        ModelSpec::Openai(s) => {
            if s.base_urls.is_empty() {
                let at = sm.and_then(|m| m.backend.as_ref()).and_then(pos);
                c.error(at, "openai backend needs at least one entry in `base_urls`");
            }
            for (i, u) in s.base_urls.iter().enumerate() {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    let at = sm
                        .and_then(|m| m.base_urls.as_ref())
                        .and_then(|v| v.get(i))
                        .and_then(pos);
                    let d = c.error(
                        at,
                        format!("base URL `{u}` must start with http:// or https://"),
                    );
                    hint(d, "e.g. `http://127.0.0.1:8000/v1`");
                }
            }
            if s.concurrency == 0 {
                let at = sm.and_then(|m| m.concurrency.as_ref()).and_then(pos);
                c.error(at, "concurrency must be at least 1");
            }
            if !(s.timeout_s.is_finite() && s.timeout_s > 0.0) {
                let at = sm.and_then(|m| m.timeout_s.as_ref()).and_then(pos);
                c.error(at, "timeout_s must be a positive number of seconds");
            }
            if s.temperature != 0.0 {
                let at = sm.and_then(|m| m.temperature.as_ref()).and_then(pos);
                c.warn(at, "temperature is not 0: answers may not be reproducible");
            }
        }
        ModelSpec::Replay(s) => {
            let at = sm.and_then(|m| m.predictions.as_ref()).and_then(pos);
            check_path_exists(c, lp, &s.predictions, at, "predictions file", false);
        }
        ModelSpec::CandleVlm(s) => {
            let at = sm.and_then(|m| m.path.as_ref()).and_then(pos);
            check_path_exists(c, lp, &s.path, at, "model directory", true);
            let dir = lp.resolve(&s.path);
            if dir.is_dir() {
                for f in ["config.json", "tokenizer.json"] {
                    if !dir.join(f).is_file() {
                        let d = c.error(
                            at,
                            format!("model directory `{}` has no `{f}`", s.path.display()),
                        );
                        hint(
                            d,
                            "a candle-vlm checkpoint is a Hugging Face model directory (config.json, *.safetensors, tokenizer.json, preprocessor_config.json)",
                        );
                    }
                }
            }
            if s.batch_size == 0 {
                let at = sm.and_then(|m| m.batch_size.as_ref()).and_then(pos);
                c.error(at, "batch_size must be at least 1");
            }
            if s.max_tokens == 0 {
                let at = sm.and_then(|m| m.backend.as_ref()).and_then(pos);
                c.error(at, "max_tokens must be at least 1");
            }
            if !["f32", "bf16", "f16"].contains(&s.precision.as_str()) {
                let at = sm.and_then(|m| m.precision.as_ref()).and_then(pos);
                c.error(
                    at,
                    format!(
                        "unknown precision `{}`; expected f32, bf16 or f16",
                        s.precision
                    ),
                );
            }
            if s.answer_words.positive.is_empty() || s.answer_words.negative.is_empty() {
                let at = sm.and_then(|m| m.backend.as_ref()).and_then(pos);
                c.error(
                    at,
                    "answer_words needs at least one positive and one negative word",
                );
            }
        }
    }
}

fn check_task(
    c: &mut Checker<'_>,
    t: &super::types::TaskSpec,
    model: &ModelSpec,
    st: Option<&ShadowTask>,
) {
    if !t.threshold.is_finite() {
        let at = st.and_then(|s| s.threshold.as_ref()).and_then(pos);
        c.error(at, "threshold must be a finite number");
    } else if !(0.0..=1.0).contains(&t.threshold) {
        // Every backend scores a case in [0, 1] (candle-clip: softmax; openai: logprobs or the
        // parsed answer; replay: checked on load), so a threshold outside it makes every case
        // one class.
        let at = st.and_then(|s| s.threshold.as_ref()).and_then(pos);
        let d = c.error(
            at,
            format!(
                "threshold {} is outside [0, 1], but this backend's score is a probability: every case would be {}",
                t.threshold,
                if t.threshold > 1.0 { "negative" } else { "positive" }
            ),
        );
        hint(d, "set `task.threshold` to a probability, e.g. 0.5");
    }
    match model {
        ModelSpec::CandleClip(_) => {
            match &t.prompts {
                None => {
                    let at = st.and_then(|s| s.threshold.as_ref()).and_then(pos);
                    let d = c.error(at, "the candle-clip backend needs `task.prompts` (positive and negative texts)");
                    hint(
                        d,
                        "add `prompts: {positive: [\"...\"], negative: [\"...\"]}` under `task`",
                    );
                }
                Some(pr) => {
                    if pr.positive.is_empty() || pr.negative.is_empty() {
                        let at = st.and_then(|s| s.prompts.as_ref()).and_then(pos);
                        c.error(
                            at,
                            "prompts need at least one positive and one negative text",
                        );
                    }
                }
            }
        }
        ModelSpec::Openai(_) => {
            if t.question.as_deref().is_none_or(|q| q.trim().is_empty()) {
                let at = st.and_then(|s| s.question.as_ref()).and_then(pos);
                let d = c.error(at, "the openai backend needs `task.question`");
                hint(
                    d,
                    "e.g. `question: \"Is there a pneumothorax? Answer yes or no.\"`",
                );
            }
        }
        ModelSpec::CandleVlm(_) => {
            if t.question.as_deref().is_none_or(|q| q.trim().is_empty()) {
                let at = st.and_then(|s| s.question.as_ref()).and_then(pos);
                let d = c.error(at, "the candle-vlm backend needs `task.question`");
                hint(
                    d,
                    "e.g. `question: \"Is there a pneumothorax? Answer yes or no.\"`",
                );
            }
        }
        ModelSpec::Replay(_) => {}
    }
}

fn check_golden(c: &mut Checker<'_>, lp: &LoadedProtocol, shadow: &Shadow, facts: &ExternalFacts) {
    let g = &lp.protocol.golden_set;
    let sg = shadow.golden_set.as_ref();
    let at = sg.and_then(|s| s.path.as_ref()).and_then(pos);
    check_path_exists(c, lp, &g.path, at, "golden-set directory", true);
    let dir = lp.resolve(&g.path);
    if dir.is_dir() {
        let at_lock = sg.and_then(|s| s.lock.as_ref()).and_then(pos).or(at);
        if !dir.join(&g.lock).is_file() {
            let d = c.error(
                at_lock,
                format!(
                    "golden set `{}` has no lock file `{}`",
                    g.path.display(),
                    g.lock.display()
                ),
            );
            hint(
                d,
                format!("lock it first: `medgate lock {}`", g.path.display()),
            );
        }
        let at_man = sg.and_then(|s| s.manifest.as_ref()).and_then(pos).or(at);
        if !dir.join(&g.manifest).is_file() {
            c.error(
                at_man,
                format!(
                    "golden set `{}` has no manifest `{}`",
                    g.path.display(),
                    g.manifest.display()
                ),
            );
        }
    }
    let Some(cols) = &facts.manifest_columns else {
        return;
    };
    let mut need: Vec<(&str, Pos, &str)> = vec![
        (
            &g.case_id_column,
            sg.and_then(|s| s.case_id_column.as_ref()).and_then(pos),
            "case ID column",
        ),
        (
            &g.label_column,
            sg.and_then(|s| s.label_column.as_ref()).and_then(pos),
            "label column",
        ),
        (
            &g.image_column,
            sg.and_then(|s| s.image_column.as_ref()).and_then(pos),
            "image column",
        ),
    ];
    let ssub = shadow.subgroups.as_ref();
    for (i, a) in lp.protocol.subgroups.attributes.iter().enumerate() {
        let p = ssub
            .and_then(|s| s.attributes.as_ref())
            .and_then(|v| v.get(i))
            .and_then(pos);
        need.push((a, p, "subgroup column"));
    }
    for (i, inter) in lp.protocol.subgroups.intersections.iter().enumerate() {
        for (j, a) in inter.iter().enumerate() {
            let p = ssub
                .and_then(|s| s.intersections.as_ref())
                .and_then(|v| v.get(i))
                .and_then(|v| v.get(j))
                .and_then(pos);
            need.push((a, p, "intersection column"));
        }
    }
    for (col, p, what) in need {
        if !cols.iter().any(|c| c == col) {
            let d = c.error(
                p,
                format!(
                    "{what} `{col}` is not in the golden-set manifest (columns: {})",
                    cols.join(", ")
                ),
            );
            if let Some(n) = nearest(col, cols.iter().map(|s| s.as_str())) {
                hint(d, format!("did you mean `{n}`?"));
            }
        }
    }
}

fn check_statistics(c: &mut Checker<'_>, lp: &LoadedProtocol, shadow: &Shadow) {
    let s = &lp.protocol.statistics;
    let ss = shadow.statistics.as_ref();
    if !(s.confidence > 0.5 && s.confidence < 1.0) {
        let at = ss.and_then(|x| x.confidence.as_ref()).and_then(pos);
        let d = c.error(
            at,
            format!(
                "confidence {} must be between 0.5 and 1 (exclusive)",
                s.confidence
            ),
        );
        hint(d, "write it as a fraction, e.g. `confidence: 0.95`");
    }
    let uses_bootstrap = s.interval == IntervalMethod::Bootstrap
        || lp
            .protocol
            .acceptance
            .iter()
            .any(|c| c.metric.is_calibration());
    if uses_bootstrap && (200..super::types::MIN_USABLE_RESAMPLES).contains(&s.bootstrap_resamples)
    {
        let at = ss
            .and_then(|x| x.bootstrap_resamples.as_ref())
            .and_then(pos);
        c.warn(
            at,
            format!(
                "bootstrap_resamples {} is below the floor of {} usable resamples: criteria on bootstrap intervals will be NOT EVALUABLE",
                s.bootstrap_resamples,
                super::types::MIN_USABLE_RESAMPLES
            ),
        );
    }
    if let Some(pi) = s.intended_use_prevalence
        && !(pi > 0.0 && pi < 1.0)
    {
        c.error(
            None,
            format!("intended_use_prevalence {pi} must be strictly between 0 and 1"),
        );
    }
    if uses_bootstrap && s.bootstrap_resamples < 200 {
        let at = ss
            .and_then(|x| x.bootstrap_resamples.as_ref())
            .and_then(pos);
        let d = c.error(
            at,
            format!(
                "bootstrap_resamples {} is too few for a percentile interval",
                s.bootstrap_resamples
            ),
        );
        hint(d, "use at least 1000 (2000 is the usual default)");
    }
    if !(0.0..=1.0).contains(&s.max_not_evaluated_fraction) {
        let at = ss
            .and_then(|x| x.max_not_evaluated_fraction.as_ref())
            .and_then(pos);
        c.error(at, "max_not_evaluated_fraction must be in [0, 1]");
    }
}

fn check_comparison(c: &mut Checker<'_>, lp: &LoadedProtocol, shadow: &Shadow) {
    let Some(cmp) = &lp.protocol.comparison else {
        return;
    };
    let sc = shadow.comparison.as_ref();
    let sref = sc.and_then(|s| s.value.reference.as_ref());
    let smodel = sc.and_then(|s| s.value.reference_model.as_ref());
    match (&cmp.reference, &cmp.reference_model) {
        (Some(_), Some(_)) => {
            let at = smodel.and_then(pos).or_else(|| sc.and_then(pos));
            let d = c.error(
                at,
                "`comparison` names both `reference` (an earlier bundle) and `reference_model` (a model run in this run): give exactly one",
            );
            hint(
                d,
                "keep `reference: {bundle, results_sha256}` to compare with a verified earlier bundle, or `reference_model: {model, ...}` to run the reference here",
            );
        }
        (None, None) => {
            let at = sc.and_then(pos);
            let d = c.error(
                at,
                "`comparison` names no reference: give `reference` (an earlier bundle) or `reference_model` (a model run in this run)",
            );
            hint(
                d,
                "e.g. `comparison: {reference: {bundle: ..., results_sha256: ...}}`",
            );
        }
        _ => {}
    }
    if let Some(r) = &cmp.reference {
        let pin = &r.results_sha256;
        if pin.len() != 64 || !pin.chars().all(|ch| ch.is_ascii_hexdigit()) {
            let at = sref
                .and_then(|s| s.value.results_sha256.as_ref())
                .and_then(pos);
            let d = c.error(
                at,
                format!(
                    "comparison.reference.results_sha256 `{pin}` is not a SHA-256 (64 hex digits)"
                ),
            );
            hint(
                d,
                "copy `results_sha256` from the reference bundle's evidence.json (`medgate verify BUNDLE` prints it)",
            );
        }
    }
    if let (Some(_), Some(rp)) = (&cmp.reference_model, lp.protocol.reference_protocol()) {
        let sm = smodel.map(|s| &s.value);
        check_model(c, lp, &rp.model, sm.and_then(|s| s.model.as_ref()));
        let st = ShadowTask {
            threshold: sm.and_then(|s| s.threshold.clone()),
            prompts: sm.and_then(|s| s.prompts.clone()),
            question: None,
        };
        check_task(c, &rp.task, &rp.model, Some(&st));
        if rp.model == lp.protocol.model && rp.task == lp.protocol.task {
            let at = smodel.and_then(pos);
            c.warn(
                at,
                "the reference model, its prompts and threshold are those of the model under test: every difference is zero",
            );
        }
    }
    if !lp
        .protocol
        .acceptance
        .iter()
        .any(|cr| cr.metric.difference_of().is_some())
    {
        c.warn(
            None,
            "the protocol names a reference release but no criterion tests a `*_difference` metric: the comparison is reported, not gated",
        );
    }
    if lp.protocol.change_control.is_none() {
        c.warn(
            None,
            "a release comparison without `change_control` (plan ID and modification type): the report cannot name the change",
        );
    }
}

fn check_criteria(
    c: &mut Checker<'_>,
    lp: &LoadedProtocol,
    shadow: &Shadow,
    facts: &ExternalFacts,
) {
    let crit = &lp.protocol.acceptance;
    let sc = shadow.acceptance.as_ref();
    if crit.is_empty() {
        let at = sc.and_then(pos);
        let d = c.error(at, "the protocol has no acceptance criteria");
        hint(d, "add at least one criterion under `acceptance`");
    }
    let attrs: BTreeSet<&str> = lp
        .protocol
        .subgroups
        .attributes
        .iter()
        .map(|s| s.as_str())
        .collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, cr) in crit.iter().enumerate() {
        let sh = sc.and_then(|v| v.value.get(i));
        let at_id = sh.and_then(|s| s.id.as_ref()).and_then(pos);
        if cr.id.trim().is_empty() {
            c.error(at_id, "criterion ID is empty");
        }
        if let Some(first) = seen.insert(&cr.id, i) {
            let d = c.error(at_id, format!("duplicate criterion ID `{}`", cr.id));
            hint(
                d,
                format!(
                    "criterion IDs must be unique; `{}` is also criterion #{}",
                    cr.id,
                    first + 1
                ),
            );
        }
        let at_metric = sh.and_then(|s| s.metric.as_ref()).and_then(pos);
        let at_bound = sh
            .and_then(|s| s.at_least.as_ref().or(s.at_most.as_ref()))
            .and_then(pos)
            .or(at_id);
        match (cr.at_least, cr.at_most) {
            (None, None) => {
                let d = c.error(
                    at_id,
                    format!("criterion `{}` has neither `at_least` nor `at_most`", cr.id),
                );
                hint(
                    d,
                    "e.g. `at_least: 0.80` for sensitivity, `at_most: 0.10` for a gap",
                );
            }
            (Some(_), Some(_)) => {
                let d = c.error(
                    at_bound,
                    format!("criterion `{}` has both `at_least` and `at_most`", cr.id),
                );
                hint(d, "split it into two criteria");
            }
            (Some(v), None) | (None, Some(v)) if cr.metric.difference_of().is_some() => {
                if !(-1.0..=1.0).contains(&v) || !v.is_finite() {
                    let d = c.error(
                        at_bound,
                        format!("criterion `{}` goal {v} is outside [-1, 1]", cr.id),
                    );
                    hint(
                        d,
                        "a difference of proportions: `at_least: -0.05` reads \"not worse by more than 5 points\"",
                    );
                }
            }
            (Some(v), None) | (None, Some(v)) => {
                if !v.is_finite() || (!cr.metric.is_calibration() && !(0.0..=1.0).contains(&v)) {
                    let d = c.error(
                        at_bound,
                        format!("criterion `{}` goal {v} is outside [0, 1]", cr.id),
                    );
                    hint(d, "metrics are proportions: write 80% as 0.80");
                }
            }
        }
        let at_scope = sh.and_then(|s| s.scope.as_ref()).and_then(pos).or(at_id);
        let scope_name = cr.scope.to_string();
        let scope = scope_name.as_str();
        let is_overall = cr.scope == Scope::Overall;
        let scope_ok = match &cr.scope {
            Scope::Overall | Scope::EachSubgroup => true,
            Scope::Attribute(_) | Scope::Intersection(_) => attrs.contains(scope),
        };
        if !scope_ok {
            let d = c.error(
                at_scope,
                format!("criterion `{}` scope `{scope}` is not `overall`, `each_subgroup` or a subgroup attribute", cr.id),
            );
            let mut cands: Vec<&str> = vec!["overall", "each_subgroup"];
            cands.extend(attrs.iter().copied());
            match nearest(scope, cands) {
                Some(n) => hint(d, format!("did you mean `{n}`?")),
                None => hint(
                    d,
                    "declare the attribute under `subgroups.attributes` first",
                ),
            }
        }
        if cr.metric.gap_of().is_some() && is_overall {
            let d = c.error(
                at_metric,
                format!(
                    "criterion `{}`: `{}` compares subgroup levels and needs a subgroup scope",
                    cr.id,
                    cr.metric.as_str()
                ),
            );
            hint(d, "use `scope: each_subgroup` or an attribute name");
        }
        if (cr.scope == Scope::EachSubgroup || cr.metric.gap_of().is_some()) && attrs.is_empty() {
            c.error(
                at_scope,
                format!(
                    "criterion `{}` needs subgroups, but `subgroups.attributes` is empty",
                    cr.id
                ),
            );
        }
        if cr.metric.is_calibration() && !is_overall {
            c.error(
                at_scope,
                format!(
                    "criterion `{}`: calibration metrics are computed for the whole set only; use `scope: overall`",
                    cr.id
                ),
            );
        }
        if matches!(cr.metric, Metric::PpvAtPrevalence | Metric::NpvAtPrevalence)
            && lp.protocol.statistics.intended_use_prevalence.is_none()
        {
            c.error(
                at_metric,
                format!(
                    "criterion `{}` gates `{}` but `statistics.intended_use_prevalence` is not set",
                    cr.id,
                    cr.metric.as_str()
                ),
            );
        }
        if !cr.exclude_levels.is_empty() && cr.metric.gap_of().is_none() {
            c.error(
                at_id,
                format!(
                    "criterion `{}`: `exclude_levels` applies to gap criteria only",
                    cr.id
                ),
            );
        }
        if cr.metric.difference_of().is_some() && lp.protocol.comparison.is_none() {
            let d = c.error(
                at_metric,
                format!(
                    "criterion `{}`: `{}` compares with a reference release, but the protocol has no `comparison` section",
                    cr.id,
                    cr.metric.as_str()
                ),
            );
            hint(
                d,
                "add `comparison: {reference: {bundle: ..., results_sha256: ...}}` naming the earlier bundle",
            );
        }
        if cr.metric.gap_of().is_some()
            && cr.goal().map(Goal::comparator) == Some(Comparator::AtLeast)
        {
            c.warn(at_bound, format!("criterion `{}` sets a minimum on a gap; gaps are usually capped with `at_most`", cr.id));
        }
        if let Some(ids) = &facts.requirement_ids
            && !ids.iter().any(|r| r == &cr.requirement)
        {
            let at = sh
                .and_then(|s| s.requirement.as_ref())
                .and_then(pos)
                .or(at_id);
            let d = c.error(
                at,
                format!(
                    "criterion `{}` names unknown requirement `{}`",
                    cr.id, cr.requirement
                ),
            );
            match nearest(&cr.requirement, ids.iter().map(|s| s.as_str())) {
                Some(n) => hint(d, format!("did you mean `{n}`?")),
                None => hint(
                    d,
                    "add it to the requirements file named under `traceability.requirements`",
                ),
            }
        }
        if let (Some(ids), Some(rc)) = (&facts.risk_control_ids, &cr.risk_control)
            && !ids.iter().any(|r| r == rc)
        {
            let at = sh
                .and_then(|s| s.risk_control.as_ref())
                .and_then(pos)
                .or(at_id);
            let d = c.error(
                at,
                format!("criterion `{}` names unknown risk control `{rc}`", cr.id),
            );
            match nearest(rc, ids.iter().map(|s| s.as_str())) {
                Some(n) => hint(d, format!("did you mean `{n}`?")),
                None => hint(
                    d,
                    "add it to the risks file named under `traceability.risks`",
                ),
            }
        }
    }
    if let Some(ids) = &facts.requirement_ids {
        for r in ids {
            if !crit.iter().any(|c| &c.requirement == r) {
                let at = shadow
                    .traceability
                    .as_ref()
                    .and_then(|t| t.requirements.as_ref())
                    .and_then(pos);
                c.warn(at, format!("requirement `{r}` is not verified by any acceptance criterion (coverage gap)"));
            }
        }
    }
    if let Some(t) = &lp.protocol.traceability {
        let st = shadow.traceability.as_ref();
        check_path_exists(
            c,
            lp,
            &t.requirements,
            st.and_then(|s| s.requirements.as_ref()).and_then(pos),
            "requirements file",
            false,
        );
        if let Some(r) = &t.risks {
            check_path_exists(
                c,
                lp,
                r,
                st.and_then(|s| s.risks.as_ref()).and_then(pos),
                "risks file",
                false,
            );
        }
    } else if crit.iter().any(|c| c.risk_control.is_some()) {
        c.warn(None, "criteria name risk controls but no `traceability` files are given: links cannot be checked");
    }
}

fn check_report(c: &mut Checker<'_>, lp: &LoadedProtocol, shadow: &Shadow) {
    let r = &lp.protocol.report;
    let sr = shadow.report.as_ref();
    if let Some(t) = &r.templates {
        check_path_exists(
            c,
            lp,
            t,
            sr.and_then(|s| s.templates.as_ref()).and_then(pos),
            "templates directory",
            true,
        );
    }
    for (i, s) in r.signatories.iter().enumerate() {
        if s.name.trim().is_empty() || s.role.trim().is_empty() {
            let at = sr
                .and_then(|x| x.signatories.as_ref())
                .and_then(|v| v.get(i))
                .and_then(pos);
            c.error(at, "a signatory needs a role and a printed name");
        }
    }
    if r.formats.is_empty() {
        c.warn(
            None,
            "no report formats: only evidence.json and JUnit will be written",
        );
    }
}

#[cfg(test)]
mod id_tests {
    use super::safe_protocol_id;

    #[test]
    fn protocol_ids_are_one_safe_path_component() {
        for ok in ["VP-PTX-001", "a", "v1.2_x", "A..B"] {
            assert!(safe_protocol_id(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "é",
            long.as_str(),
        ] {
            assert!(!safe_protocol_id(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const HEAD: &str = r#"medgate_protocol: 1
protocol: VP-T-001
title: t
version: "1"
intended_use: t
model:
  backend: replay
  predictions: p.csv
task:
  kind: binary
  threshold: 0.5
golden_set:
  path: set
  label_column: y
subgroups:
  attributes: [site, sex]
acceptance:
"#;

    /// Checks a whole protocol `source` (no external files), returning the diagnostics whose
    /// message contains `topic`.
    fn diags_about(source: String, topic: &str) -> Vec<Diagnostic> {
        let protocol = crate::protocol::parse_protocol("t.yaml", &source).unwrap();
        let lp = LoadedProtocol {
            protocol,
            path: PathBuf::from("t.yaml"),
            dir: PathBuf::from("/nonexistent-medgate-test"),
            sha256: crate::hash::sha256_hex(source.as_bytes()),
            source,
        };
        check(&lp, &ExternalFacts::default())
            .into_iter()
            .filter(|d| d.message.contains(topic))
            .collect()
    }

    /// Checks `HEAD` + `acceptance`, returning every criterion diagnostic.
    fn diags(acceptance: &str) -> Vec<Diagnostic> {
        diags_about(format!("{HEAD}{acceptance}"), "criterion")
    }

    fn one(acceptance: &str, needle: &str) -> Diagnostic {
        let d = diags(acceptance);
        d.into_iter()
            .find(|d| d.message.contains(needle))
            .unwrap_or_else(|| panic!("no diagnostic containing {needle:?}"))
    }

    #[test]
    fn a_valid_criterion_has_no_criterion_diagnostics() {
        let d = diags(
            "  - {id: AC-1, requirement: R, metric: sensitivity, scope: site, at_least: 0.8}\n",
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn both_and_neither_goals_are_located_errors() {
        let d = one(
            "  - id: AC-1\n    requirement: R\n    metric: sensitivity\n    at_least: 0.8\n    at_most: 0.9\n",
            "both `at_least` and `at_most`",
        );
        assert!(d.is_error());
        // Located at the first goal key: line 21 (HEAD is 17 lines, then id, requirement,
        // metric, at_least).
        assert_eq!(d.line, Some(21));
        let d = one(
            "  - {id: AC-1, requirement: R, metric: sensitivity}\n",
            "neither `at_least` nor `at_most`",
        );
        assert!(d.hint.unwrap().contains("at_least: 0.80"));
    }

    #[test]
    fn an_unknown_scope_suggests_the_nearest_attribute() {
        let d = one(
            "  - {id: AC-1, requirement: R, metric: sensitivity, scope: sitee, at_least: 0.8}\n",
            "scope `sitee`",
        );
        assert!(d.is_error());
        assert_eq!(d.hint.as_deref(), Some("did you mean `site`?"));
    }

    #[test]
    fn an_intersection_scope_is_not_an_attribute() {
        let d = one(
            "  - {id: AC-1, requirement: R, metric: sensitivity, scope: site x sex, at_least: 0.8}\n",
            "scope `site x sex`",
        );
        assert!(d.is_error());
    }

    #[test]
    fn gaps_need_a_subgroup_scope_and_warn_on_a_minimum() {
        let d = one(
            "  - {id: AC-1, requirement: R, metric: auroc_gap, at_most: 0.1}\n",
            "needs a subgroup scope",
        );
        assert!(d.is_error());
        let d = one(
            "  - {id: AC-1, requirement: R, metric: auroc_gap, scope: site, at_least: 0.1}\n",
            "sets a minimum on a gap",
        );
        assert!(!d.is_error());
    }

    #[test]
    fn goals_outside_the_unit_interval_are_errors() {
        let d = one(
            "  - {id: AC-1, requirement: R, metric: sensitivity, at_least: 80}\n",
            "outside [0, 1]",
        );
        assert!(d.is_error());
        assert!(d.hint.unwrap().contains("0.80"));
    }

    #[test]
    fn candle_vlm_takes_half_precision_on_the_cpu_and_refuses_an_unknown_one() {
        let precision_diags = |precision: &str| -> Vec<Diagnostic> {
            let head = format!(
                "{HEAD}  - {{id: AC-1, requirement: R, metric: sensitivity, scope: site, at_least: 0.8}}\n"
            );
            let source = head.replace(
                "  backend: replay\n  predictions: p.csv\n",
                &format!(
                    "  backend: candle-vlm\n  path: m\n  device: cpu\n  precision: {precision}\n"
                ),
            );
            diags_about(source, "precision")
        };
        for ok in ["f32", "bf16", "f16"] {
            assert!(
                precision_diags(ok).is_empty(),
                "{ok}: {:?}",
                precision_diags(ok)
            );
        }
        let d = precision_diags("fp16");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].is_error() && d[0].message.contains("unknown precision"));
    }
}
