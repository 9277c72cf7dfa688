//! `medgate serve`: an image scorer behind the OpenAI-compatible chat-completions API.
//!
//! Why this exists: it lets a site host its validated contrastive model for others through
//! the same API that vLLM, TGI, llama.cpp server and Ollama speak, and it is the real server
//! the `openai` backend is tested and benchmarked against (no mock of the wire format).
//!
//! # Endpoints
//!
//! - `GET /v1/models`: `{"object":"list","data":[{"id": MODEL, "object":"model", ...}]}`;
//!   `GET /v1/models/MODEL` (the SDK's `models.retrieve`) answers that one object, any other
//!   ID 404.
//! - `POST /v1/chat/completions`: the request carries exactly one image as an `image_url`
//!   content part holding a base64 `data:` URL (PNG or JPEG); text parts are accepted and
//!   ignored (the contrastive model answers with its own prompt ensembles). The reply's
//!   content is `yes` when the score p >= 0.5, else `no`. When the request sets
//!   `"logprobs": true`, the first (only) content token carries `top_logprobs` for both
//!   tokens: `logprob(yes) = ln p`, `logprob(no) = ln(1 - p)`, each clamped below at -9999
//!   (JSON has no -inf), so a client computing `p(yes) / (p(yes) + p(no))` recovers p.
//!   `top_logprobs` (0-20, needs `logprobs: true`) is honoured up to the two tokens the model
//!   has. A `model` that is not the served one is answered 404, a malformed request 400, both
//!   in OpenAI's `{"error": {...}}` shape. Parameters that would change the reply are
//!   refused with 400 rather than silently ignored: `n` other than 1, `stream: true`, and any
//!   parameter not in [`ACCEPTED_PARAMS`] (sampling settings there cannot change a one-token
//!   deterministic answer). `usage.prompt_tokens` counts the prompt as [`prompt_tokens`] does
//!   (one per image, plus the text's words and punctuation marks: the scorer has no chat
//!   tokenizer, so this is a documented approximation, never 0 for a real request).
//!
//! # Threads and shutdown
//!
//! `threads` workers each take the next request from the listener (connections are
//! keep-alive), so up to `threads` images are scored at once. Workers poll a shutdown flag
//! every 100 ms; the CLI sets it from SIGINT/SIGTERM, so the server finishes the requests in
//! hand and exits cleanly.
//!
//! # Fault injection (tests and drills only)
//!
//! [`Chaos`] (in [`crate::testing::chaos`]) makes a request fail deterministically from a seeded hash of the request's
//! arrival number (so a client's retry of the same case gets a fresh draw): with probability
//! `fail_rate` an HTTP 500; else `slow_rate` an answer delayed by `slow_ms` (longer than the
//! client's timeout); else `garbage_rate` a 200 whose body is not JSON; else `equivocal_rate`
//! a well-formed completion whose text is [`EQUIVOCAL_TEXT`] and which has no logprobs. The
//! CLI exposes these as hidden `--chaos-*` flags.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::model::{Backend, CaseInput};
use crate::testing::chaos::{Chaos, Fault};

/// The answer text of an injected equivocal reply (exposed so tests can compare verbatim).
pub const EQUIVOCAL_TEXT: &str = "I cannot tell from this image.";

/// Largest request body accepted (a 4096x4096 16-bit PNG in base64 is about 45 MiB).
const MAX_BODY_BYTES: u64 = 64 << 20;

/// Request parameters accepted. Sampling settings cannot change the reply of a deterministic
/// one-token scorer, so they are accepted (and ignored); anything else is refused with 400.
pub const ACCEPTED_PARAMS: [&str; 14] = [
    "model",
    "messages",
    "logprobs",
    "top_logprobs",
    "n",
    "stream",
    "temperature",
    "top_p",
    "seed",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "user",
    "frequency_penalty",
];

/// Logprobs are clamped below at this value because JSON cannot carry -inf.
const MIN_LOGPROB: f64 = -9999.0;

/// Something that turns encoded images into probabilities of the positive class.
pub trait Scorer: Send + Sync {
    /// Scores encoded images (PNG or JPEG bytes, as decoded from the data URL); one
    /// probability in [0, 1] per image, in order.
    fn score_encoded(&self, images: &[&[u8]]) -> Result<Vec<f64>>;
}

/// Serves a `candle-clip` checkpoint: each image's bytes are written to a private temporary
/// file and scored through the backend's own [`Backend::predict_batch`], so the server
/// decodes and preprocesses exactly as a validation run does (same loader, same
/// conversions, same score).
pub struct ClipScorer {
    backend: crate::model::clip::ClipBackend,
    tmp: PathBuf,
    counter: AtomicU64,
}

impl std::fmt::Debug for ClipScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipScorer")
            .field("tmp", &self.tmp)
            .finish()
    }
}

impl ClipScorer {
    /// Wraps a loaded backend; creates a private temporary directory for decoding.
    pub fn new(backend: crate::model::clip::ClipBackend) -> Result<Self> {
        let tmp = std::env::temp_dir().join(format!("medgate-serve-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(ClipScorer {
            backend,
            tmp,
            counter: AtomicU64::new(0),
        })
    }

    /// Writes one image to a private temporary file and returns its case.
    fn stage(&self, bytes: &[u8]) -> Result<CaseInput> {
        let ext = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            "png"
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            "jpg"
        } else {
            return Err(Error::input("the image is neither PNG nor JPEG"));
        };
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let path = self.tmp.join(format!("{n}.{ext}"));
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        Ok(CaseInput {
            case_id: format!("request-{n}"),
            image_path: path,
            // No lock for a served image: nothing to check it against.
            image_sha256: String::new(),
        })
    }
}

impl Drop for ClipScorer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Scorer for ClipScorer {
    fn score_encoded(&self, images: &[&[u8]]) -> Result<Vec<f64>> {
        let cases = images
            .iter()
            .map(|b| self.stage(b))
            .collect::<Result<Vec<_>>>()?;
        let results = self.backend.predict_batch(&cases);
        for c in &cases {
            let _ = std::fs::remove_file(&c.image_path);
        }
        results
            .into_iter()
            .map(|r| r.map(|p| p.score).map_err(|e| Error::infra(e.reason)))
            .collect()
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind (loopback by default: exposing a medical model is a decision).
    pub host: String,
    /// Port; 0 picks a free one (read it back with [`Server::local_addr`]).
    pub port: u16,
    /// Worker threads (requests scored at once).
    pub threads: usize,
    /// The model ID served under `/v1/models` and required in requests.
    pub model_id: String,
    /// Fault injection (off by default).
    pub chaos: Chaos,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8000,
            threads: 4,
            model_id: "medgate".into(),
            chaos: Chaos::default(),
        }
    }
}

/// Counters reported when the server stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Requests received.
    pub requests: u64,
    /// Requests answered with a fault injected.
    pub faults: u64,
}

/// A bound, not yet running server.
pub struct Server {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    config: ServeConfig,
    scorer: Arc<dyn Scorer>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("config", &self.config)
            .finish()
    }
}

impl Server {
    /// Binds the listening socket (so the caller can print the address before serving).
    pub fn bind(config: ServeConfig, scorer: Arc<dyn Scorer>) -> Result<Server> {
        config.chaos.validate()?;
        if config.threads == 0 {
            return Err(Error::input_hint(
                "--threads 0",
                "use at least one worker thread",
            ));
        }
        let http = tiny_http::Server::http((config.host.as_str(), config.port)).map_err(|e| {
            Error::infra(format!(
                "cannot listen on {}:{}: {e}",
                config.host, config.port
            ))
        })?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::Internal("listener has no IP address".into()))?;
        Ok(Server {
            http: Arc::new(http),
            addr,
            config,
            scorer,
        })
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL clients use, e.g. `http://127.0.0.1:8000/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Serves until `shutdown` becomes true, then returns once the requests in hand are done.
    pub fn run(self, shutdown: Arc<AtomicBool>) -> Result<ServeStats> {
        let counter = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(AtomicU64::new(0));
        let state = Arc::new(State {
            config: self.config.clone(),
            scorer: self.scorer.clone(),
            counter: counter.clone(),
            faults: faults.clone(),
            shutdown: shutdown.clone(),
        });
        std::thread::scope(|s| {
            for _ in 0..self.config.threads {
                let http = self.http.clone();
                let state = state.clone();
                s.spawn(move || worker(&http, &state));
            }
        });
        Ok(ServeStats {
            requests: counter.load(Ordering::SeqCst),
            faults: faults.load(Ordering::SeqCst),
        })
    }

    /// Runs the server on a background thread (for tests and benchmarks); stop it with the
    /// returned handle.
    pub fn spawn(self) -> RunningServer {
        let shutdown = Arc::new(AtomicBool::new(false));
        let addr = self.addr;
        let flag = shutdown.clone();
        let join = std::thread::spawn(move || self.run(flag));
        RunningServer {
            addr,
            shutdown,
            join: Some(join),
        }
    }
}

/// A server running on a background thread; dropping it stops the server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<Result<ServeStats>>>,
}

impl RunningServer {
    /// The API base URL, e.g. `http://127.0.0.1:41234/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stops the server and returns its counters.
    pub fn stop(mut self) -> Result<ServeStats> {
        self.shutdown.store(true, Ordering::SeqCst);
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Internal("server thread panicked".into())),
            None => Ok(ServeStats::default()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

struct State {
    config: ServeConfig,
    scorer: Arc<dyn Scorer>,
    counter: Arc<AtomicU64>,
    faults: Arc<AtomicU64>,
    shutdown: Arc<AtomicBool>,
}

fn worker(http: &tiny_http::Server, state: &State) {
    while !state.shutdown.load(Ordering::SeqCst) {
        match http.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(req)) => handle(req, state),
            Ok(None) => {}
            Err(e) => {
                if !state.shutdown.load(Ordering::SeqCst) {
                    eprintln!("medgate serve: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// An HTTP reply: status and JSON (or, for injected garbage, raw) body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    fn error(status: u16, kind: &str, message: impl Into<String>) -> Reply {
        Reply::json(
            status,
            &json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}}),
        )
    }
}

fn handle(mut req: tiny_http::Request, state: &State) {
    let reply = route(&mut req, state);
    let mut resp = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    if let Ok(h) = "Content-Type: application/json".parse::<tiny_http::Header>() {
        resp = resp.with_header(h);
    }
    // A client that went away (e.g. timed out on a slow answer) is not our error.
    let _ = req.respond(resp);
}

fn route(req: &mut tiny_http::Request, state: &State) -> Reply {
    let path = req
        .url()
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (tiny_http::Method::Get, "/v1/models") => Reply::json(
            200,
            &json!({"object": "list", "data": [{
                "id": state.config.model_id, "object": "model", "created": 0, "owned_by": "medgate"
            }]}),
        ),
        (tiny_http::Method::Get, p) if p.starts_with("/v1/models/") => {
            let id = &p["/v1/models/".len()..];
            if id == state.config.model_id {
                Reply::json(
                    200,
                    &json!({"id": state.config.model_id, "object": "model", "created": 0, "owned_by": "medgate"}),
                )
            } else {
                Reply::error(
                    404,
                    "invalid_request_error",
                    format!(
                        "The model `{id}` does not exist; this server serves `{}`",
                        state.config.model_id
                    ),
                )
            }
        }
        (tiny_http::Method::Get, "/health") => Reply::json(200, &json!({"status": "ok"})),
        (tiny_http::Method::Post, "/v1/chat/completions") => {
            let n = state.counter.fetch_add(1, Ordering::SeqCst);
            let fault = state.config.chaos.fault(n);
            if fault != Fault::None {
                state.faults.fetch_add(1, Ordering::SeqCst);
            }
            match fault {
                Fault::Fail => {
                    return Reply::error(500, "server_error", "injected failure (chaos)");
                }
                Fault::Garbage => {
                    return Reply {
                        status: 200,
                        body: b"<html>\x00garbage{\"choices\": [".to_vec(),
                    };
                }
                Fault::Slow => {
                    sleep_unless_shutdown(state, Duration::from_millis(state.config.chaos.slow_ms))
                }
                Fault::None | Fault::Equivocal => {}
            }
            let mut body = Vec::new();
            if let Err(e) = req
                .as_reader()
                .take(MAX_BODY_BYTES + 1)
                .read_to_end(&mut body)
            {
                return Reply::error(
                    400,
                    "invalid_request_error",
                    format!("cannot read body: {e}"),
                );
            }
            if body.len() as u64 > MAX_BODY_BYTES {
                return Reply::error(413, "invalid_request_error", "request body over 64 MiB");
            }
            chat_completion(&body, state, n, fault == Fault::Equivocal)
        }
        (_, "/v1/models" | "/v1/chat/completions") => {
            Reply::error(405, "invalid_request_error", "method not allowed")
        }
        (_, p) => Reply::error(404, "invalid_request_error", format!("no route {p}")),
    }
}

fn sleep_unless_shutdown(state: &State, total: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < total && !state.shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20).min(total));
    }
}

/// The parts of a chat-completions request the server uses.
#[derive(Debug, PartialEq)]
struct ChatRequest {
    model: String,
    image: Vec<u8>,
    logprobs: bool,
    top_logprobs: usize,
    prompt_tokens: u64,
}

/// The prompt's size in tokens as this server counts it: one per image, plus each run of
/// letters or digits and each other non-space character of the text parts.
pub fn prompt_tokens(messages: &[Value]) -> u64 {
    let mut n = 0u64;
    let mut text = |t: &str| {
        let mut in_word = false;
        for c in t.chars() {
            if c.is_alphanumeric() {
                if !in_word {
                    n += 1;
                }
                in_word = true;
            } else {
                in_word = false;
                if !c.is_whitespace() {
                    n += 1;
                }
            }
        }
    };
    let mut images = 0u64;
    for m in messages {
        match m.get("content") {
            Some(Value::String(s)) => text(s),
            Some(Value::Array(parts)) => {
                for p in parts {
                    match p.get("type").and_then(Value::as_str) {
                        Some("text") => text(p.get("text").and_then(Value::as_str).unwrap_or("")),
                        Some("image_url") => images += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    n + images
}

fn parse_request(body: &[u8]) -> std::result::Result<ChatRequest, (u16, String)> {
    let bad = |m: String| (400u16, m);
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("the body must be a JSON object".into()))?;
    let unsupported: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !ACCEPTED_PARAMS.contains(k))
        .collect();
    if !unsupported.is_empty() {
        return Err(bad(format!(
            "unsupported parameter(s) {}: this server answers one deterministic yes/no token",
            unsupported.join(", ")
        )));
    }
    match v.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(n) => {
            return Err(bad(format!(
                "`n` is {n}: this server returns exactly one choice (n = 1)"
            )));
        }
    }
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(bad("`stream: true` is not supported".into()));
    }
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`model` (string) is required".into()))?
        .to_string();
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` (array) is required".into()))?;
    let mut urls = Vec::new();
    for m in messages {
        if let Some(parts) = m.get("content").and_then(Value::as_array) {
            for p in parts {
                if p.get("type").and_then(Value::as_str) == Some("image_url") {
                    let url = p
                        .get("image_url")
                        .and_then(|u| u.get("url").and_then(Value::as_str).or_else(|| u.as_str()))
                        .ok_or_else(|| bad("an image_url part has no `url`".into()))?;
                    urls.push(url);
                }
            }
        }
    }
    let url = match urls.as_slice() {
        [one] => *one,
        [] => {
            return Err(bad(
                "no image_url content part: this model needs exactly one image".into(),
            ));
        }
        _ => {
            return Err(bad(format!(
                "{} images sent: this model scores exactly one",
                urls.len()
            )));
        }
    };
    let image = decode_data_url(url).map_err(bad)?;
    let logprobs = v.get("logprobs").and_then(Value::as_bool).unwrap_or(false);
    let top_logprobs = match v.get("top_logprobs") {
        None | Some(Value::Null) => 0,
        Some(t) => match t.as_u64() {
            Some(k) if k <= 20 && logprobs => k as usize,
            Some(k) if k <= 20 => {
                return Err(bad("`top_logprobs` needs `logprobs: true`".into()));
            }
            _ => return Err(bad(format!("`top_logprobs` is {t}: must be 0 to 20"))),
        },
    };
    Ok(ChatRequest {
        model,
        image,
        logprobs,
        top_logprobs,
        prompt_tokens: prompt_tokens(messages),
    })
}

/// Decodes `data:<mime>;base64,<payload>` into bytes.
fn decode_data_url(url: &str) -> std::result::Result<Vec<u8>, String> {
    let rest = url.strip_prefix("data:").ok_or_else(|| {
        "only base64 data: URLs are accepted (the server fetches nothing)".to_string()
    })?;
    let (meta, payload) = rest
        .split_once(',')
        .ok_or_else(|| "data: URL without a comma".to_string())?;
    if !meta.ends_with(";base64") {
        return Err("data: URL is not base64-encoded".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| format!("data: URL payload is not valid base64: {e}"))
}

fn clamp_logprob(lp: f64) -> f64 {
    if lp.is_nan() {
        MIN_LOGPROB
    } else {
        lp.max(MIN_LOGPROB)
    }
}

/// The OpenAI `logprobs` object for a one-token yes/no answer with probability `p` of yes.
fn logprobs_json(answer: &str, p: f64, top: usize) -> Value {
    let lp_yes = clamp_logprob(p.ln());
    let lp_no = clamp_logprob((-p).ln_1p());
    let entry = |t: &str, lp: f64| json!({"token": t, "logprob": lp, "bytes": t.as_bytes()});
    let mut tops = if p >= 0.5 {
        vec![entry("yes", lp_yes), entry("no", lp_no)]
    } else {
        vec![entry("no", lp_no), entry("yes", lp_yes)]
    };
    // As many alternatives as asked, up to the two tokens this model has.
    tops.truncate(top.min(2));
    let chosen = if answer == "yes" { lp_yes } else { lp_no };
    json!({"content": [{
        "token": answer, "logprob": chosen, "bytes": answer.as_bytes(), "top_logprobs": tops
    }]})
}

fn chat_completion(body: &[u8], state: &State, n: u64, equivocal: bool) -> Reply {
    let req = match parse_request(body) {
        Ok(r) => r,
        Err((status, m)) => return Reply::error(status, "invalid_request_error", m),
    };
    if req.model != state.config.model_id {
        return Reply::error(
            404,
            "invalid_request_error",
            format!(
                "The model `{}` does not exist; this server serves `{}`",
                req.model, state.config.model_id
            ),
        );
    }
    let id = format!("chatcmpl-medgate-{n}");
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let completion = |content: &str, logprobs: Value| {
        json!({
            "id": id, "object": "chat.completion", "created": created, "model": state.config.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": logprobs, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": req.prompt_tokens, "completion_tokens": 1,
                      "total_tokens": req.prompt_tokens + 1}
        })
    };
    if equivocal {
        return Reply::json(200, &completion(EQUIVOCAL_TEXT, Value::Null));
    }
    let scores = match state.scorer.score_encoded(&[req.image.as_slice()]) {
        Ok(s) => s,
        Err(e @ (Error::Input { .. } | Error::Invalid(_))) => {
            return Reply::error(400, "invalid_request_error", e.to_string());
        }
        Err(e) => return Reply::error(500, "server_error", e.to_string()),
    };
    let p = match scores.first() {
        Some(p) if p.is_finite() => p.clamp(0.0, 1.0),
        _ => return Reply::error(500, "server_error", "the model returned no finite score"),
    };
    let answer = if p >= 0.5 { "yes" } else { "no" };
    let lp = if req.logprobs {
        logprobs_json(answer, p, req.top_logprobs)
    } else {
        Value::Null
    };
    Reply::json(200, &completion(answer, lp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scorer::MeanIntensityScorer;

    fn png_bytes(level: u8) -> Vec<u8> {
        let img = image::GrayImage::from_pixel(8, 8, image::Luma([level]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    fn data_url(bytes: &[u8]) -> String {
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    fn spawn(chaos: Chaos) -> RunningServer {
        let cfg = ServeConfig {
            port: 0,
            threads: 2,
            model_id: "m".into(),
            chaos,
            ..Default::default()
        };
        Server::bind(cfg, Arc::new(MeanIntensityScorer))
            .unwrap()
            .spawn()
    }

    fn post(base: &str, body: &Value) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(format!("{base}/chat/completions"))
            .send_json(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    fn request(model: &str, url: &str) -> Value {
        json!({"model": model, "logprobs": true, "top_logprobs": 5, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Is there a finding?"},
            {"type": "image_url", "image_url": {"url": url}}]}]})
    }

    #[test]
    fn answers_with_logprobs_that_recover_the_score() {
        let srv = spawn(Chaos::default());
        // 204/255 = 0.8 exactly.
        let (status, body) = post(&srv.base_url(), &request("m", &data_url(&png_bytes(204))));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "yes");
        let tok = &v["choices"][0]["logprobs"]["content"][0];
        let tops = tok["top_logprobs"].as_array().unwrap();
        assert_eq!(tops[0]["token"], "yes");
        let lp_yes = tops[0]["logprob"].as_f64().unwrap();
        let lp_no = tops[1]["logprob"].as_f64().unwrap();
        assert!((lp_yes - 0.8f64.ln()).abs() < 1e-12);
        assert!((lp_no - 0.2f64.ln()).abs() < 1e-12);
        let (status, body) = post(&srv.base_url(), &request("m", &data_url(&png_bytes(51))));
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "no");
        srv.stop().unwrap();
    }

    #[test]
    fn models_endpoint_and_errors() {
        let srv = spawn(Chaos::default());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .get(format!("{}/models", srv.base_url()))
            .call()
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(v["data"][0]["id"], "m");
        let (status, body) = post(&srv.base_url(), &request("other", &data_url(&png_bytes(1))));
        assert_eq!(status, 404);
        assert!(body.contains("does not exist"), "{body}");
        let (status, _) = post(&srv.base_url(), &request("m", "https://example.org/x.png"));
        assert_eq!(status, 400);
        let (status, body) = post(&srv.base_url(), &request("m", "data:image/png;base64,AAAA"));
        assert_eq!(status, 400, "{body}");
        let stats = srv.stop().unwrap();
        assert_eq!(stats.requests, 3);
    }

    #[test]
    fn logprobs_clamp_extremes() {
        let v = logprobs_json("yes", 1.0, 5);
        assert_eq!(v["content"][0]["top_logprobs"][1]["logprob"], -9999.0);
        assert_eq!(v["content"][0]["logprob"], 0.0);
    }
}
