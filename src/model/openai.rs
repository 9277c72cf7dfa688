//! The `openai` backend: any OpenAI-compatible chat-completions server (vLLM, TGI,
//! llama.cpp server, Ollama, a hosted API, or `medgate serve`).
//!
//! Why it looks like this: a validation run must account for every case, so the client never
//! turns a transport failure into an answer. Each case is one request; failures that may pass
//! (HTTP 429, 5xx, timeouts, connection errors, a body that is not a completion) are retried
//! with exponential backoff, and a case that still fails comes back as a [`CaseError`] that the
//! harness records as "not evaluated". Other 4xx answers (bad model name, bad key) are not
//! retried: repeating them cannot help.
//!
//! # Request
//!
//! `POST {base_url}/chat/completions` with
//! `{"model", "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION},
//! {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]}],
//! "temperature", "max_tokens", "seed" (when set), "logprobs": true, "top_logprobs": 5}`
//! (the last two only when the protocol asks for logprobs). PNG and JPEG files are sent as
//! they are; DICOM files are decoded by the golden set's loader (`crate::golden::image`:
//! modality LUT, VOI window, MONOCHROME1 inverted) and sent as 8-bit PNG; the API key, if the protocol names an environment variable, goes in an
//! `Authorization: Bearer` header and nowhere else (never in [`BackendInfo`]).
//!
//! # Answer and score
//!
//! The answer text (`choices[0].message.content`, trimmed) is matched against the protocol's
//! case-insensitive regexes: positive only -> [`Answer::Positive`], negative only ->
//! [`Answer::Negative`], both or neither -> [`Answer::Equivocal`], with the text kept verbatim
//! in [`Prediction::raw`].
//!
//! The score, when the server returns logprobs, is
//! `p(yes) / (p(yes) + p(no))` where, over the **first content token that contains a letter
//! or digit**, `p(yes)` sums `exp(logprob)` of the candidates (its `top_logprobs` entries and
//! the sampled token itself, each token text counted once) whose text matches the positive
//! rule and not the negative one, and `p(no)` likewise for the negative rule
//! ([`ScoreSource::Logprobs`]). When there are no logprobs, or no candidate matches either
//! rule, the score is 1.0 or 0.0 from the parsed answer ([`ScoreSource::Parsed`]). An
//! equivocal answer always scores 0.5 with [`ScoreSource::Parsed`]: the harness analyses
//! equivocal cases both ways, so the value is only a placeholder that sorts them in the middle.
//!
//! # Concurrency and scheduling
//!
//! All cases wait in one queue shared by every base URL. Each server runs `concurrency`
//! workers (so with `n` servers `n * concurrency` requests run at once); a worker takes the
//! next ready case, so a slow server simply takes fewer cases. A case whose attempt fails
//! with a retryable error goes back into the queue, ready after its backoff, and may be
//! retried by any server. A server that fails [`BENCH_AFTER`] attempts in a row is taken out
//! of rotation for [`BENCH_FOR`] (its workers idle; the others take its cases), unless every
//! other server is out too. Results are delivered as each case completes
//! ([`Backend::predict_stream`]); [`Backend::predict_batch`] collects them in input order.
//!
//! # Retries
//!
//! Attempt `k` (1-based) of a case that fails with a retryable error makes the case wait
//! `min(base * 2^(k-1), 30 s)` (base 0.5 s; see [`OpenaiBackend::with_backoff_base`]), or the
//! server's `Retry-After` seconds when longer (capped the same way), before it is handed out
//! again, up to `1 + retries` attempts in all. The error of the last attempt, naming its
//! server, is the case's "not evaluated" reason.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use regex::{Regex, RegexBuilder};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::model::{
    Answer, Backend, BackendInfo, CaseError, CaseInput, Clock, Deliver, Delivery, Prediction,
    ScoreSource,
};
use crate::protocol::{AnswerRule, OpenaiSpec, TaskSpec};

/// How many alternatives per token the client asks for.
pub const TOP_LOGPROBS: u32 = 5;

/// Longest wait between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// A server whose attempts fail this many times in a row is taken out of rotation...
pub const BENCH_AFTER: u32 = 3;
/// ...for this long (then it gets cases again; one more failure benches it again).
pub const BENCH_FOR: Duration = Duration::from_secs(5);

/// The `openai` backend.
pub struct OpenaiBackend {
    spec: OpenaiSpec,
    question: String,
    rule: AnswerRule,
    positive: Regex,
    negative: Regex,
    api_key: Option<String>,
    servers: Vec<ServerConn>,
    backoff_base: Duration,
    /// The request JSON split where the image's data URL goes.
    template: (String, String),
    /// How DICOM images are decoded (the protocol's `golden_set.frames` / `voi`).
    decode: crate::golden::image::DecodeOptions,
}

struct ServerConn {
    /// `{base}/chat/completions`.
    endpoint: String,
    /// The base URL with any `user:password@` removed, for messages and provenance.
    shown: String,
    agent: ureq::Agent,
    /// The last client-error reply (HTTP 4xx other than 429) and how many came in a row.
    rejections: std::sync::Mutex<(String, u32)>,
    /// Set after [`FAIL_FAST_AFTER`] identical client errors in a row: no more requests go
    /// to this server, and every remaining case is not evaluated with this reason.
    stopped: std::sync::OnceLock<String>,
}

/// Identical client-error replies in a row (401, 403, 400 from a proxy...) after which a
/// server gets no more requests: an authentication or configuration failure is the same for
/// every case, so the run stops early (its cases not evaluated, never scored) instead of
/// sending the whole set. The reason names the HTTP error, so the console shows it.
pub const FAIL_FAST_AFTER: u32 = 3;

impl ServerConn {
    /// Records the outcome of one exchange for the fail-fast rule.
    fn record(&self, client_error: Option<&str>) {
        let mut r = self
            .rejections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match client_error {
            None => *r = (String::new(), 0),
            Some(msg) => {
                if r.0 == msg {
                    r.1 += 1;
                } else {
                    *r = (msg.to_string(), 1);
                }
                if r.1 >= FAIL_FAST_AFTER {
                    let _ = self.stopped.set(msg.to_string());
                }
            }
        }
    }
}

impl std::fmt::Debug for OpenaiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so that the API key can never reach a log through `{:?}`.
        f.debug_struct("OpenaiBackend")
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.shown).collect::<Vec<_>>(),
            )
            .field("model", &self.spec.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The request JSON (see the module docs) split around the image URL's value.
fn request_template(spec: &OpenaiSpec, question: &str) -> Result<(String, String)> {
    const HOLE: &str = "\u{1}medgate-image-url\u{1}";
    let mut body = json!({
        "model": spec.model,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": question},
            {"type": "image_url", "image_url": {"url": HOLE}}
        ]}],
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
    });
    if let Some(seed) = spec.seed {
        body["seed"] = json!(seed);
    }
    if spec.logprobs {
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(TOP_LOGPROBS);
    }
    let text =
        serde_json::to_string(&body).map_err(|e| Error::Internal(format!("request JSON: {e}")))?;
    // The hole serialises as `\u0001medgate-image-url\u0001` and occurs exactly once.
    let hole =
        serde_json::to_string(HOLE).map_err(|e| Error::Internal(format!("request JSON: {e}")))?;
    let hole = &hole[1..hole.len() - 1];
    match text.split_once(hole) {
        Some((head, tail)) if !tail.contains(hole) => Ok((head.to_string(), tail.to_string())),
        _ => Err(Error::Internal(
            "request template has no single image slot".into(),
        )),
    }
}

/// Removes `user:password@` from a URL so it can be shown and recorded.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_string()
}

pub(crate) fn compile_rule(which: &str, pattern: &str) -> Result<Regex> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .map_err(|e| {
            Error::input_hint(
                format!("task.answer.{which}: invalid regex `{pattern}`: {e}"),
                "write a Rust regex, e.g. `^\\W*yes\\b`",
            )
        })
}

impl OpenaiBackend {
    /// Checks the settings, reads the API key from the environment variable the protocol
    /// names, and prepares one connection pool per server. Sends nothing.
    pub fn new(
        spec: &OpenaiSpec,
        task: &TaskSpec,
        world: &dyn crate::world::World,
    ) -> Result<Self> {
        let question = task.question.clone().ok_or_else(|| {
            Error::input_hint(
                "task.question is required by the openai backend",
                "add `question: \"Is there ...? Answer yes or no.\"` under `task`",
            )
        })?;
        if spec.base_urls.is_empty() {
            return Err(Error::input_hint(
                "model.base_urls is empty",
                "list at least one server, e.g. `base_urls: [\"http://127.0.0.1:8000/v1\"]`",
            ));
        }
        if spec.concurrency == 0 {
            return Err(Error::input_hint(
                "model.concurrency is 0",
                "use at least 1",
            ));
        }
        if !(spec.timeout_s.is_finite() && spec.timeout_s > 0.0) {
            return Err(Error::input_hint(
                format!(
                    "model.timeout_s {} is not a positive number of seconds",
                    spec.timeout_s
                ),
                "e.g. `timeout_s: 60`",
            ));
        }
        if !(spec.temperature.is_finite() && spec.temperature >= 0.0) {
            return Err(Error::input_hint(
                format!("model.temperature {} is invalid", spec.temperature),
                "use 0 for validation runs",
            ));
        }
        if spec.max_tokens == 0 {
            return Err(Error::input_hint(
                "model.max_tokens is 0",
                "use at least 1 (e.g. 8)",
            ));
        }
        let positive = compile_rule("positive", &task.answer.positive)?;
        let negative = compile_rule("negative", &task.answer.negative)?;
        let api_key = match &spec.api_key_env {
            Some(name) => Some(world.env(name).filter(|k| !k.is_empty()).ok_or_else(|| {
                Error::input_hint(
                    format!("environment variable {name} (model.api_key_env) is not set"),
                    format!("export {name}=... with the server's API key"),
                )
            })?),
            None => None,
        };
        let timeout = Duration::from_secs_f64(spec.timeout_s);
        let mut servers = Vec::with_capacity(spec.base_urls.len());
        for url in &spec.base_urls {
            let base = url.trim().trim_end_matches('/');
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(Error::input_hint(
                    format!(
                        "model.base_urls: `{}` is not an http(s) URL",
                        redact_url(base)
                    ),
                    "e.g. http://127.0.0.1:8000/v1",
                ));
            }
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .max_idle_connections(spec.concurrency.max(1) * 2)
                .max_idle_connections_per_host(spec.concurrency.max(1))
                .user_agent(concat!("medgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .into();
            servers.push(ServerConn {
                endpoint: format!("{base}/chat/completions"),
                shown: redact_url(base),
                agent,
                rejections: Default::default(),
                stopped: Default::default(),
            });
        }
        let template = request_template(spec, &question)?;
        Ok(OpenaiBackend {
            template,
            spec: spec.clone(),
            question,
            rule: task.answer.clone(),
            positive,
            negative,
            api_key,
            servers,
            backoff_base: Duration::from_millis(500),
            decode: Default::default(),
        })
    }

    /// Decodes DICOM images with `decode` (the protocol's frame and VOI choices).
    pub fn with_decode(mut self, decode: crate::golden::image::DecodeOptions) -> Self {
        self.decode = decode;
        self
    }

    /// Sets the first backoff delay (default 0.5 s); tests use a few milliseconds.
    pub fn with_backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// The wait before attempt `attempt + 1` after attempt `attempt` (1-based) failed.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(16));
        exp.max(retry_after.unwrap_or_default()).min(BACKOFF_CAP)
    }

    /// The request body for one image (PNG or JPEG bytes): the prepared JSON template with
    /// the data URL spliced in. Base64 and MIME types never need JSON escaping, so the big
    /// string is copied once instead of run through a serialiser.
    fn request_body(&self, mime: &str, image: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(image);
        let (head, tail) = &self.template;
        let mut body = Vec::with_capacity(head.len() + tail.len() + mime.len() + b64.len() + 16);
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(b"data:");
        body.extend_from_slice(mime.as_bytes());
        body.extend_from_slice(b";base64,");
        body.extend_from_slice(b64.as_bytes());
        body.extend_from_slice(tail.as_bytes());
        body
    }

    /// One HTTP exchange.
    fn attempt(
        &self,
        server: &ServerConn,
        body: &[u8],
    ) -> std::result::Result<Completion, AttemptError> {
        let mut req = server
            .agent
            .post(&server.endpoint)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => {
                return Err(AttemptError::retry(format!(
                    "timed out after {} s",
                    self.spec.timeout_s
                )));
            }
            Err(e @ (ureq::Error::BadUri(_) | ureq::Error::RequireHttpsOnly(_))) => {
                return Err(AttemptError::fatal(e.to_string()));
            }
            Err(e) => return Err(AttemptError::retry(format!("connection error: {e}"))),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|h| h.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let text = match resp.body_mut().read_to_string() {
            Ok(t) => t,
            Err(ureq::Error::Timeout(_)) => {
                return Err(AttemptError::retry(format!(
                    "timed out after {} s",
                    self.spec.timeout_s
                )));
            }
            Err(e) => {
                return Err(AttemptError::retry(format!(
                    "HTTP {status}: unreadable body: {e}"
                )));
            }
        };
        if !(200..300).contains(&status) {
            let msg = format!("HTTP {status}: {}", error_message(&text));
            return if status == 429 || status >= 500 {
                Err(AttemptError {
                    message: msg,
                    retryable: true,
                    retry_after,
                })
            } else {
                Err(AttemptError::fatal(msg))
            };
        }
        parse_completion(&text).map_err(AttemptError::retry)
    }

    /// Runs the shared queue (see the module docs) until every case is delivered.
    fn run_queue(&self, cases: &[CaseInput], clock: &Clock<'_>, deliver: &Deliver<'_>) {
        let queue = Queue {
            state: Mutex::new(QueueState {
                ready: (0..cases.len()).map(Job::new).collect(),
                waiting: Vec::new(),
                in_flight: 0,
                stop: false,
                servers: vec![ServerHealth::default(); self.servers.len()],
            }),
            wake: Condvar::new(),
        };
        let workers = self.spec.concurrency.max(1).min(cases.len().max(1));
        std::thread::scope(|s| {
            for si in 0..self.servers.len() {
                for _ in 0..workers {
                    let queue = &queue;
                    s.spawn(move || self.worker(si, cases, queue, clock, deliver));
                }
            }
        });
    }

    /// One worker of server `si`: takes ready cases until the queue is drained.
    fn worker(
        &self,
        si: usize,
        cases: &[CaseInput],
        q: &Queue,
        clock: &Clock<'_>,
        deliver: &Deliver<'_>,
    ) {
        let server = &self.servers[si];
        let max_attempts = self.spec.retries.saturating_add(1);
        while let Some(mut job) = q.take(si) {
            let case = &cases[job.index];
            let started = *job.started.get_or_insert_with(clock);
            let body = match job.body.take() {
                Some(b) => Ok(b),
                None => read_image(case, &self.decode)
                    .map(|(mime, bytes)| self.request_body(mime, &bytes)),
            };
            let body = match body {
                Ok(b) => b,
                Err(reason) => {
                    let ok = deliver(Delivery {
                        index: job.index,
                        result: Err(CaseError {
                            reason,
                            attempts: 0,
                        }),
                        latency_ms: (clock() - started) * 1000.0,
                    });
                    q.finish(si, None, !ok);
                    continue;
                }
            };
            if let Some(msg) = server.stopped.get() {
                // Fail fast: an authentication or request error repeated FAIL_FAST_AFTER
                // times is not a case failure; the remaining cases are not sent.
                let ok = deliver(Delivery {
                    index: job.index,
                    result: Err(CaseError {
                        reason: format!(
                            "{}: not sent: the server answered {FAIL_FAST_AFTER} requests in a row with {msg}",
                            server.shown
                        ),
                        attempts: job.attempts,
                    }),
                    latency_ms: (clock() - started) * 1000.0,
                });
                q.finish(si, None, !ok);
                continue;
            }
            job.attempts += 1;
            let outcome = self.attempt(server, &body);
            match &outcome {
                Err(e) if !e.retryable && e.message.starts_with("HTTP 4") => {
                    server.record(Some(&e.message))
                }
                Ok(_) => server.record(None),
                Err(_) => {}
            }
            let server_ok = match &outcome {
                Ok(_) => Some(true),
                Err(e) if e.retryable => Some(false),
                // A fatal answer (a bad model name or key) says nothing about health.
                Err(_) => None,
            };
            match outcome {
                Err(e) if e.retryable && job.attempts < max_attempts => {
                    let wait = self.backoff(job.attempts, e.retry_after);
                    job.body = Some(body);
                    q.retry(si, server_ok, job, Instant::now() + wait);
                }
                outcome => {
                    let attempts = job.attempts;
                    let result = outcome.map(|c| self.interpret(c, attempts)).map_err(|e| {
                        let plural = if attempts == 1 { "" } else { "s" };
                        CaseError {
                            reason: format!(
                                "{}: {} (after {attempts} attempt{plural})",
                                server.shown, e.message
                            ),
                            attempts,
                        }
                    });
                    let ok = deliver(Delivery {
                        index: job.index,
                        result,
                        latency_ms: (clock() - started) * 1000.0,
                    });
                    q.finish(si, server_ok, !ok);
                }
            }
        }
    }

    /// Turns a completion into a prediction (see the module docs for the rules).
    fn interpret(&self, c: Completion, attempts: u32) -> Prediction {
        let answer = parse_answer(&c.content, &self.positive, &self.negative);
        let (score, score_source) = match answer {
            Answer::Equivocal => (0.5, ScoreSource::Parsed),
            _ => match c
                .tokens
                .as_deref()
                .and_then(|t| score_from_logprobs(t, &self.positive, &self.negative))
            {
                Some(p) => (p, ScoreSource::Logprobs),
                None => (
                    if answer == Answer::Positive { 1.0 } else { 0.0 },
                    ScoreSource::Parsed,
                ),
            },
        };
        Prediction {
            raw: c.content,
            score,
            answer,
            score_source,
            attempts,
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
struct AttemptError {
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl AttemptError {
    fn retry(message: String) -> Self {
        AttemptError {
            message,
            retryable: true,
            retry_after: None,
        }
    }
    fn fatal(message: String) -> Self {
        AttemptError {
            message,
            retryable: false,
            retry_after: None,
        }
    }
}

/// The parts of a completion the backend uses.
#[derive(Debug, Clone, PartialEq)]
struct Completion {
    content: String,
    /// `choices[0].logprobs.content`, when present.
    tokens: Option<Vec<Value>>,
}

/// The message of an OpenAI-style error body, or the start of the body.
fn error_message(text: &str) -> String {
    let from_json = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        v.get("error").and_then(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| e.as_str().map(str::to_string))
        })
    });
    let s = from_json.unwrap_or_else(|| text.trim().to_string());
    truncate(&s, 200)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

fn parse_completion(text: &str) -> std::result::Result<Completion, String> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| format!("response is not JSON ({e}): {:?}", truncate(text, 80)))?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| format!("response has no choices: {}", truncate(text, 120)))?;
    let message = choice
        .get("message")
        .ok_or_else(|| format!("response choice has no message: {}", truncate(text, 120)))?;
    let content = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let tokens = choice
        .get("logprobs")
        .and_then(|l| l.get("content"))
        .and_then(Value::as_array)
        .cloned();
    Ok(Completion { content, tokens })
}

/// Reads a case's image and checks it is the locked file; returns its MIME type and bytes.
fn read_image(
    case: &CaseInput,
    decode: &crate::golden::image::DecodeOptions,
) -> std::result::Result<(&'static str, Vec<u8>), String> {
    let bytes = std::fs::read(&case.image_path)
        .map_err(|e| format!("{}: cannot read image: {e}", case.image_path.display()))?;
    if !case.image_sha256.is_empty() {
        let got = crate::hash::sha256_hex(&bytes);
        if !got.eq_ignore_ascii_case(&case.image_sha256) {
            return Err(format!(
                "{}: SHA-256 {got} differs from the golden-set lock ({}); the file changed after locking",
                case.image_path.display(),
                case.image_sha256
            ));
        }
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(("image/png", bytes));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(("image/jpeg", bytes));
    }
    // DICOM (or anything else the golden loader reads): decode with the same loader every
    // backend uses (modality LUT, VOI window, MONOCHROME1 inverted) and send an 8-bit PNG.
    let img = crate::golden::image::load_image_with(&case.image_path, decode)
        .map_err(|e| e.to_string())?
        .image;
    Ok((
        "image/png",
        crate::golden::image::encode_png(&img)
            .map_err(|e| format!("{}: {e}", case.image_path.display()))?,
    ))
}

/// Maps an answer text to positive / negative / equivocal with the protocol's rule.
pub fn parse_answer(text: &str, positive: &Regex, negative: &Regex) -> Answer {
    let t = text.trim();
    match (positive.is_match(t), negative.is_match(t)) {
        (true, false) => Answer::Positive,
        (false, true) => Answer::Negative,
        _ => Answer::Equivocal,
    }
}

/// `p(yes) / (p(yes) + p(no))` over the first content token with a letter or digit (see the
/// module docs); `None` when no candidate matches either rule.
pub fn score_from_logprobs(tokens: &[Value], positive: &Regex, negative: &Regex) -> Option<f64> {
    let tok = tokens.iter().find(|t| {
        t.get("token")
            .and_then(Value::as_str)
            .is_some_and(|s| s.chars().any(char::is_alphanumeric))
    })?;
    let mut seen: Vec<&str> = Vec::new();
    let mut candidates: Vec<(&str, f64)> = Vec::new();
    let tops = tok.get("top_logprobs").and_then(Value::as_array);
    for c in tops.into_iter().flatten().chain(std::iter::once(tok)) {
        let (Some(t), Some(lp)) = (
            c.get("token").and_then(Value::as_str),
            c.get("logprob").and_then(Value::as_f64),
        ) else {
            continue;
        };
        if !seen.contains(&t) {
            seen.push(t);
            candidates.push((t, lp));
        }
    }
    let (mut p_yes, mut p_no) = (0.0f64, 0.0f64);
    for (t, lp) in candidates {
        let p = lp.exp();
        if !p.is_finite() {
            continue;
        }
        match (positive.is_match(t), negative.is_match(t)) {
            (true, false) => p_yes += p,
            (false, true) => p_no += p,
            _ => {}
        }
    }
    let total = p_yes + p_no;
    (total > 0.0 && total.is_finite()).then(|| (p_yes / total).clamp(0.0, 1.0))
}

impl Backend for OpenaiBackend {
    fn info(&self) -> BackendInfo {
        let settings = json!({
            "answer_rule": {"negative": self.rule.negative, "positive": self.rule.positive},
            "api_key_env": self.spec.api_key_env,
            "backoff_base_s": self.backoff_base.as_secs_f64(),
            "backoff_cap_s": BACKOFF_CAP.as_secs_f64(),
            "base_urls": self.servers.iter().map(|s| s.shown.clone()).collect::<Vec<_>>(),
            "concurrency_per_server": self.spec.concurrency,
            "logprobs": self.spec.logprobs,
            "max_tokens": self.spec.max_tokens,
            "model": self.spec.model,
            "question": self.question,
            "retries": self.spec.retries,
            "score_rule": if self.spec.logprobs {
                "p(yes)/(p(yes)+p(no)) over the first alphanumeric answer token's top_logprobs; else 1/0 from the parsed answer; equivocal 0.5"
            } else {
                "1/0 from the parsed answer; equivocal 0.5"
            },
            "seed": self.spec.seed,
            "scheduling": "one queue shared by all base_urls; retries go back to the queue; a server failing 3 attempts in a row is out of rotation for 5 s",
            "temperature": self.spec.temperature,
            "timeout_s": self.spec.timeout_s,
            "top_logprobs": if self.spec.logprobs { Some(TOP_LOGPROBS) } else { None },
        });
        BackendInfo {
            backend: crate::protocol::BackendKind::Openai,
            model_sha256: self.spec.sha256.clone(),
            model_name: self.spec.model.clone(),
            settings: crate::hash::canonicalize(&settings),
        }
    }

    fn batch_size(&self) -> usize {
        // Enough cases that every worker of every server stays busy for several rounds, so the
        // wait for the slowest case at the end of a batch costs little throughput.
        self.spec.concurrency.max(1) * self.servers.len() * 32
    }

    fn predict_batch(
        &self,
        cases: &[CaseInput],
    ) -> Vec<std::result::Result<Prediction, CaseError>> {
        let results: Mutex<Vec<Option<std::result::Result<Prediction, CaseError>>>> =
            Mutex::new(vec![None; cases.len()]);
        // No latency is returned here, so no clock is needed.
        self.run_queue(cases, &|| 0.0, &|d: Delivery| {
            if let Ok(mut r) = results.lock() {
                r[d.index] = Some(d.result);
            }
            true
        });
        results
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(CaseError {
                        reason: "internal error: no result was produced for this case".into(),
                        attempts: 0,
                    })
                })
            })
            .collect()
    }

    fn predict_stream(
        &self,
        cases: &[CaseInput],
        clock: &Clock<'_>,
        deliver: &Deliver<'_>,
    ) -> Result<()> {
        self.run_queue(cases, clock, deliver);
        Ok(())
    }
}

/// One case in the shared queue.
#[derive(Debug)]
struct Job {
    index: usize,
    attempts: u32,
    /// When the first attempt started, on the run's clock (latency runs from here).
    started: Option<f64>,
    /// The request body, kept for retries.
    body: Option<Vec<u8>>,
}

impl Job {
    fn new(index: usize) -> Self {
        Job {
            index,
            attempts: 0,
            started: None,
            body: None,
        }
    }
}

/// A server's recent record.
#[derive(Debug, Clone, Copy, Default)]
struct ServerHealth {
    /// Retryable failures in a row.
    failures_in_a_row: u32,
    /// Out of rotation until then.
    benched_until: Option<Instant>,
}

#[derive(Debug)]
struct QueueState {
    /// Cases ready to be handed out, in order.
    ready: VecDeque<Job>,
    /// Cases waiting out their backoff, with the time they are ready again.
    waiting: Vec<(Instant, Job)>,
    /// Cases handed out and not yet finished or re-queued.
    in_flight: usize,
    /// The receiver asked to stop: hand nothing more out.
    stop: bool,
    servers: Vec<ServerHealth>,
}

/// The queue shared by every worker of every server.
struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

impl Queue {
    /// The next case for a worker of server `si`, waiting while the server is out of
    /// rotation or no case is ready; `None` once every case is finished (or on stop).
    fn take(&self, si: usize) -> Option<Job> {
        let Ok(mut st) = self.state.lock() else {
            return None;
        };
        loop {
            if st.stop {
                return None;
            }
            let now = Instant::now();
            // Move cases whose backoff is over to the ready queue (oldest first).
            let mut i = 0;
            while i < st.waiting.len() {
                if st.waiting[i].0 <= now {
                    let (_, job) = st.waiting.swap_remove(i);
                    st.ready.push_back(job);
                } else {
                    i += 1;
                }
            }
            if st.ready.is_empty() && st.waiting.is_empty() && st.in_flight == 0 {
                return None;
            }
            let benched = st.servers[si].benched_until.filter(|&t| t > now);
            let mut next_wake = st.waiting.iter().map(|w| w.0).min();
            if let Some(t) = benched {
                next_wake = Some(next_wake.map_or(t, |w| w.min(t)));
            } else if let Some(job) = st.ready.pop_front() {
                st.in_flight += 1;
                return Some(job);
            }
            let wait = next_wake
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(50))
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            st = match self.wake.wait_timeout(st, wait) {
                Ok((g, _)) => g,
                Err(_) => return None,
            };
        }
    }

    /// Records an attempt's effect on server `si`'s health (`None`: no effect).
    fn note(st: &mut QueueState, si: usize, ok: Option<bool>) {
        match ok {
            Some(true) => st.servers[si].failures_in_a_row = 0,
            Some(false) => {
                st.servers[si].failures_in_a_row += 1;
                let now = Instant::now();
                let others_in_rotation = st
                    .servers
                    .iter()
                    .enumerate()
                    .any(|(j, h)| j != si && h.benched_until.is_none_or(|t| t <= now));
                if st.servers[si].failures_in_a_row >= BENCH_AFTER && others_in_rotation {
                    st.servers[si].benched_until = Some(now + BENCH_FOR);
                    st.servers[si].failures_in_a_row = 0;
                }
            }
            None => {}
        }
    }

    /// A handed-out case is finished (delivered).
    fn finish(&self, si: usize, ok: Option<bool>, stop: bool) {
        if let Ok(mut st) = self.state.lock() {
            st.in_flight -= 1;
            st.stop |= stop;
            Self::note(&mut st, si, ok);
        }
        self.wake.notify_all();
    }

    /// A handed-out case failed an attempt and waits until `ready_at` for another.
    fn retry(&self, si: usize, ok: Option<bool>, job: Job, ready_at: Instant) {
        if let Ok(mut st) = self.state.lock() {
            st.in_flight -= 1;
            st.waiting.push((ready_at, job));
            Self::note(&mut st, si, ok);
        }
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> (Regex, Regex) {
        let r = AnswerRule::default();
        (
            compile_rule("positive", &r.positive).unwrap(),
            compile_rule("negative", &r.negative).unwrap(),
        )
    }

    #[test]
    fn parses_answers_with_default_rule() {
        let (p, n) = rules();
        assert_eq!(parse_answer("Yes.", &p, &n), Answer::Positive);
        assert_eq!(
            parse_answer("  **No**, there is none", &p, &n),
            Answer::Negative
        );
        assert_eq!(parse_answer("Not sure", &p, &n), Answer::Equivocal);
        assert_eq!(parse_answer("yesterday", &p, &n), Answer::Equivocal);
        assert_eq!(parse_answer("", &p, &n), Answer::Equivocal);
    }

    #[test]
    fn logprob_score_sums_matching_variants() {
        let (p, n) = rules();
        // p(Yes)=0.6, p(yes)=0.1, p(No)=0.2, p(maybe)=0.1: score = 0.7 / 0.9.
        let tokens = vec![
            json!({"token": " ", "logprob": 0.0, "top_logprobs": []}),
            json!({"token": "Yes", "logprob": 0.6f64.ln(), "top_logprobs": [
                {"token": "Yes", "logprob": 0.6f64.ln()},
                {"token": "No", "logprob": 0.2f64.ln()},
                {"token": "yes", "logprob": 0.1f64.ln()},
                {"token": "maybe", "logprob": 0.1f64.ln()},
            ]}),
        ];
        let s = score_from_logprobs(&tokens, &p, &n).unwrap();
        assert!((s - 0.7 / 0.9).abs() < 1e-12, "{s}");
        // No matching candidate: no score.
        let tokens = vec![
            json!({"token": "The", "logprob": -0.1, "top_logprobs": [{"token": "The", "logprob": -0.1}]}),
        ];
        assert_eq!(score_from_logprobs(&tokens, &p, &n), None);
        // Only the sampled token, no alternatives: p(yes) only -> 1.
        let tokens = vec![json!({"token": "yes", "logprob": -0.2})];
        assert_eq!(score_from_logprobs(&tokens, &p, &n), Some(1.0));
    }

    #[test]
    fn redacts_credentials_in_urls() {
        assert_eq!(
            redact_url("https://u:secret@h.example/v1"),
            "https://h.example/v1"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8000/v1"),
            "http://127.0.0.1:8000/v1"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let spec: OpenaiSpec =
            serde_json::from_value(json!({"base_urls": ["http://127.0.0.1:1/v1"], "model": "m"}))
                .unwrap();
        let task: TaskSpec =
            serde_json::from_value(json!({"kind": "binary", "question": "q?", "threshold": 0.5}))
                .unwrap();
        let b = OpenaiBackend::new(&spec, &task, &crate::world::FixedWorld::default()).unwrap();
        assert_eq!(b.backoff(1, None), Duration::from_millis(500));
        assert_eq!(b.backoff(3, None), Duration::from_secs(2));
        assert_eq!(b.backoff(10, None), BACKOFF_CAP);
        assert_eq!(
            b.backoff(1, Some(Duration::from_secs(4))),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn missing_key_and_question_are_input_errors() {
        let spec: OpenaiSpec = serde_json::from_value(
            json!({"base_urls": ["http://127.0.0.1:1/v1"], "model": "m", "api_key_env": "MEDGATE_TEST_KEY"}),
        )
        .unwrap();
        let task: TaskSpec =
            serde_json::from_value(json!({"kind": "binary", "question": "q?", "threshold": 0.5}))
                .unwrap();
        let e = OpenaiBackend::new(&spec, &task, &crate::world::FixedWorld::default()).unwrap_err();
        assert!(e.to_string().contains("MEDGATE_TEST_KEY"), "{e}");
        let task: TaskSpec =
            serde_json::from_value(json!({"kind": "binary", "threshold": 0.5})).unwrap();
        let e = OpenaiBackend::new(&spec, &task, &crate::world::FixedWorld::default()).unwrap_err();
        assert!(e.to_string().contains("task.question"), "{e}");
    }
}
