//! The OpenAI-compatible API of `medgate serve`: routes, authentication, the parsing of a
//! chat-completions request, and its answer as one `chat.completion` object or as a stream
//! of `chat.completion.chunk` events (see the module doc of [`crate::serve`] for the wire
//! format).

use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::http::{self, Request};
use super::model::{Served, check_declared_size, decode_for_generator};
use super::{EQUIVOCAL_TEXT, State};
use crate::error::Error;
use crate::testing::chaos::Fault;

/// Request parameters accepted. For a contrastive scorer the sampling settings cannot change
/// a one-token deterministic answer; a generative model decodes greedily whatever they say.
/// Anything else is refused with 400.
pub const ACCEPTED_PARAMS: [&str; 15] = [
    "model",
    "messages",
    "logprobs",
    "top_logprobs",
    "n",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "seed",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "user",
    "frequency_penalty",
];

/// Most tokens a generative model is asked to produce in one request.
pub const MAX_NEW_TOKENS: u64 = 1024;

/// Logprobs are clamped below at this value because JSON cannot carry -inf.
const MIN_LOGPROB: f64 = -9999.0;

/// An HTTP reply: status and JSON (or, for injected garbage, raw) body.
pub(super) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    pub(super) fn error(status: u16, kind: &str, message: impl Into<String>) -> Reply {
        Reply::json(
            status,
            &json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}}),
        )
    }
}

/// Writes `reply`; false when the client is gone.
pub(super) fn send(stream: &mut TcpStream, reply: &Reply, keep_alive: bool) -> bool {
    let extra: &[(&str, &str)] = if reply.status == 401 {
        &[("WWW-Authenticate", "Bearer")]
    } else if reply.status == 503 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    http::write_reply(
        stream,
        reply.status,
        "application/json",
        &reply.body,
        keep_alive,
        extra,
    )
    .is_ok()
}

/// SHA-256 of a key: keys are compared through their digests, so the comparison takes the
/// same time whatever the key's length or where the first difference is.
pub(super) fn key_digest(key: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes()).into()
}

fn authorized(req: &Request, digest: &[u8; 32]) -> bool {
    let Some(v) = req.header("authorization") else {
        return false;
    };
    let token = match v.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return false,
    };
    let got = key_digest(token);
    // Constant time: no early exit on the first differing byte.
    let diff = got
        .iter()
        .zip(digest)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// Answers one request; false when the connection must close.
pub(super) fn handle(
    stream: &mut TcpStream,
    req: Request,
    state: &State,
    keep_alive: bool,
) -> bool {
    let path = req.path.trim_end_matches('/').to_string();
    if path == "/health" && req.method == "GET" {
        return send(
            stream,
            &Reply::json(200, &json!({"status": "ok"})),
            keep_alive,
        );
    }
    if let Some(digest) = &state.key_digest
        && !authorized(&req, digest)
    {
        let r = Reply::json(
            401,
            &json!({"error": {
                "message": "missing or wrong API key: send `Authorization: Bearer KEY` with the key the server was started with",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        );
        return send(stream, &r, keep_alive);
    }
    let model_id = &state.config.model_id;
    let reply = match (req.method.as_str(), path.as_str()) {
        ("GET", "/v1/models") => Reply::json(
            200,
            &json!({"object": "list", "data": [{
                "id": model_id, "object": "model", "created": 0, "owned_by": "medgate"
            }]}),
        ),
        ("GET", p) if p.starts_with("/v1/models/") => {
            let id = &p["/v1/models/".len()..];
            if id == model_id {
                Reply::json(
                    200,
                    &json!({"id": model_id, "object": "model", "created": 0, "owned_by": "medgate"}),
                )
            } else {
                not_found_model(id, model_id)
            }
        }
        ("POST", "/v1/chat/completions") => {
            return chat_route(stream, &req, state, keep_alive);
        }
        (_, "/v1/models" | "/v1/chat/completions") => {
            Reply::error(405, "invalid_request_error", "method not allowed")
        }
        (_, p) => Reply::error(404, "invalid_request_error", format!("no route {p}")),
    };
    send(stream, &reply, keep_alive)
}

fn not_found_model(asked: &str, served: &str) -> Reply {
    Reply::error(
        404,
        "invalid_request_error",
        format!("The model `{asked}` does not exist; this server serves `{served}`"),
    )
}

fn chat_route(stream: &mut TcpStream, req: &Request, state: &State, keep_alive: bool) -> bool {
    let n = state.counter.fetch_add(1, Ordering::SeqCst);
    let fault = state.config.chaos.fault(n);
    if fault != Fault::None {
        state.faults.fetch_add(1, Ordering::SeqCst);
    }
    match fault {
        Fault::Fail => {
            let r = Reply::error(500, "server_error", "injected failure (chaos)");
            return send(stream, &r, keep_alive);
        }
        Fault::Garbage => {
            let r = Reply {
                status: 200,
                body: b"<html>\x00garbage{\"choices\": [".to_vec(),
            };
            return send(stream, &r, keep_alive);
        }
        Fault::Slow => {
            state.sleep_unless_shutdown(Duration::from_millis(state.config.chaos.slow_ms))
        }
        Fault::None | Fault::Equivocal => {}
    }
    chat_completion(
        stream,
        &req.body,
        state,
        n,
        fault == Fault::Equivocal,
        keep_alive,
    )
}

/// The parts of a chat-completions request the server uses.
#[derive(Debug, PartialEq)]
struct ChatRequest {
    model: String,
    image: Vec<u8>,
    logprobs: bool,
    top_logprobs: usize,
    prompt_tokens: u64,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<u64>,
    has_stop: bool,
    /// The text parts of the user turn, joined by newlines.
    question: String,
    /// Roles of the messages, in order.
    roles: Vec<String>,
}

/// The prompt's size in tokens as this server counts it for a contrastive scorer: one per
/// image, plus each run of letters or digits and each other non-space character of the text
/// parts.
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

fn question_of(messages: &[Value]) -> String {
    let mut texts = Vec::new();
    for m in messages {
        match m.get("content") {
            Some(Value::String(s)) => texts.push(s.clone()),
            Some(Value::Array(parts)) => {
                for p in parts {
                    if p.get("type").and_then(Value::as_str) == Some("text")
                        && let Some(t) = p.get("text").and_then(Value::as_str)
                    {
                        texts.push(t.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    texts.join("\n")
}

fn parse_request(body: &[u8]) -> Result<ChatRequest, (u16, String)> {
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
    let stream = match v.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(s) => return Err(bad(format!("`stream` is {s}: must be true or false"))),
    };
    let include_usage = match v.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(o) if !stream => {
            return Err(bad(format!("`stream_options` ({o}) needs `stream: true`")));
        }
        Some(o) => o
            .get("include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
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
    let max_tokens = match v
        .get("max_completion_tokens")
        .filter(|t| !t.is_null())
        .or_else(|| v.get("max_tokens").filter(|t| !t.is_null()))
    {
        None => None,
        Some(t) => match t.as_u64() {
            Some(k) if k >= 1 => Some(k),
            _ => {
                return Err(bad(format!(
                    "`max_tokens` is {t}: must be a positive integer"
                )));
            }
        },
    };
    let has_stop = match v.get("stop") {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    Ok(ChatRequest {
        model,
        image,
        logprobs,
        top_logprobs,
        prompt_tokens: prompt_tokens(messages),
        stream,
        include_usage,
        max_tokens,
        has_stop,
        question: question_of(messages),
        roles: messages
            .iter()
            .map(|m| {
                m.get("role")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect(),
    })
}

/// Decodes `data:<mime>;base64,<payload>` into bytes.
fn decode_data_url(url: &str) -> Result<Vec<u8>, String> {
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

/// The `logprobs.content` entry for a one-token yes/no answer with probability `p` of yes.
fn yes_no_entry(answer: &str, p: f64, top: usize) -> Value {
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
    json!({"token": answer, "logprob": chosen, "bytes": answer.as_bytes(), "top_logprobs": tops})
}

/// The `logprobs.content` entry of a generated token: its log-softmax under `logits` and the
/// `top` most likely tokens (ties broken by the lower id), each with its bytes.
fn token_entry(id: u32, logits: &[f32], top: usize, bytes_of: &dyn Fn(u32) -> Vec<u8>) -> Value {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = m + logits
        .iter()
        .map(|&l| (l as f64 - m).exp())
        .sum::<f64>()
        .ln();
    let lp = |i: u32| {
        clamp_logprob(
            logits
                .get(i as usize)
                .map_or(f64::NEG_INFINITY, |&l| l as f64 - lse),
        )
    };
    let entry = |i: u32| {
        let b = bytes_of(i);
        json!({"token": String::from_utf8_lossy(&b), "logprob": lp(i), "bytes": b})
    };
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let tops: Vec<Value> = order.into_iter().take(top).map(entry).collect();
    let mut e = entry(id);
    e["top_logprobs"] = Value::Array(tops);
    e
}

/// Where an answer goes: accumulated into one `chat.completion`, or streamed as chunks (the
/// event stream starts with the first piece, so an error before it is a plain JSON reply).
struct Sink<'a> {
    stream: &'a mut TcpStream,
    keep_alive: bool,
    streaming: bool,
    include_usage: bool,
    logprobs: bool,
    id: String,
    created: u64,
    model: String,
    started: bool,
    content: String,
    entries: Vec<Value>,
    gone: bool,
}

impl Sink<'_> {
    fn chunk(&self, delta: Value, logprobs: Value, finish: Value) -> Value {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    fn emit(&mut self, data: &str) {
        if !self.gone && http::send_event(self.stream, data).is_err() {
            self.gone = true;
        }
    }

    fn emit_json(&mut self, v: &Value) {
        let text = serde_json::to_string(v).unwrap_or_default();
        self.emit(&text);
    }

    /// Adds a piece of answer text with its token's logprobs entry; false when the client is gone.
    fn piece(&mut self, delta: &str, entry: Option<Value>) -> bool {
        self.content.push_str(delta);
        if self.streaming {
            if !self.started {
                self.started = true;
                if http::start_events(self.stream, self.keep_alive).is_err() {
                    self.gone = true;
                    return false;
                }
                let first = self.chunk(
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                    Value::Null,
                );
                self.emit_json(&first);
            }
            let lp = match (&entry, self.logprobs) {
                (Some(e), true) => json!({"content": [e]}),
                _ => Value::Null,
            };
            let c = self.chunk(json!({"content": delta}), lp, Value::Null);
            self.emit_json(&c);
        } else if let Some(e) = entry {
            self.entries.push(e);
        }
        !self.gone
    }

    /// Ends the answer; false when the connection must close.
    fn finish(mut self, finish_reason: &str, prompt: u64, completion: u64) -> bool {
        let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion});
        if !self.streaming {
            let logprobs = if self.logprobs {
                json!({"content": self.entries})
            } else {
                Value::Null
            };
            let v = json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.content},
                             "logprobs": logprobs, "finish_reason": finish_reason}],
                "usage": usage
            });
            return send(self.stream, &Reply::json(200, &v), self.keep_alive);
        }
        if !self.started && !self.piece("", None) {
            return false;
        }
        let last = self.chunk(json!({}), Value::Null, json!(finish_reason));
        self.emit_json(&last);
        if self.include_usage {
            let u = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model, "choices": [], "usage": usage});
            self.emit_json(&u);
        }
        self.done()
    }

    /// Ends a started stream with an error event (the SDK raises it as an `APIError`).
    fn fail_stream(mut self, message: &str) -> bool {
        let e = json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}});
        self.emit_json(&e);
        self.done();
        false
    }

    /// `data: [DONE]` (not JSON) and the end of the chunked body.
    fn done(mut self) -> bool {
        self.emit("[DONE]");
        !self.gone && http::finish_events(self.stream).is_ok() && self.keep_alive
    }
}

fn chat_completion(
    stream: &mut TcpStream,
    body: &[u8],
    state: &State,
    n: u64,
    equivocal: bool,
    keep_alive: bool,
) -> bool {
    let req = match parse_request(body) {
        Ok(r) => r,
        Err((status, m)) => {
            return send(
                stream,
                &Reply::error(status, "invalid_request_error", m),
                keep_alive,
            );
        }
    };
    if req.model != state.config.model_id {
        return send(
            stream,
            &not_found_model(&req.model, &state.config.model_id),
            keep_alive,
        );
    }
    if let Err((status, m)) = check_declared_size(&req.image, state.config.max_image_pixels) {
        return send(
            stream,
            &Reply::error(status, "invalid_request_error", m),
            keep_alive,
        );
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!("chatcmpl-medgate-{n}");
    let generator = matches!(state.model, Served::Generator(_));
    if generator && let Err(m) = generator_checks(&req) {
        return send(
            stream,
            &Reply::error(400, "invalid_request_error", m),
            keep_alive,
        );
    }
    let mut sink = Sink {
        stream,
        keep_alive,
        streaming: req.stream,
        include_usage: req.include_usage,
        logprobs: req.logprobs,
        id: id.clone(),
        created,
        model: state.config.model_id.clone(),
        started: false,
        content: String::new(),
        entries: Vec::new(),
        gone: false,
    };
    if equivocal {
        sink.piece(EQUIVOCAL_TEXT, None);
        sink.logprobs = false;
        return sink.finish("stop", req.prompt_tokens, 1);
    }
    match &state.model {
        Served::Scorer(scorer) => {
            let scores = {
                let _permit = state.permits.acquire();
                scorer.score_encoded(&[req.image.as_slice()])
            };
            let p = match scores {
                Ok(s) => match s.first() {
                    Some(p) if p.is_finite() => p.clamp(0.0, 1.0),
                    _ => {
                        let r = state.server_error(&id, "the model returned no finite score");
                        return send(sink.stream, &r, keep_alive);
                    }
                },
                Err(e) => return send(sink.stream, &state.error_reply(&id, e), keep_alive),
            };
            let answer = if p >= 0.5 { "yes" } else { "no" };
            let entry = yes_no_entry(answer, p, req.top_logprobs);
            sink.piece(answer, Some(entry));
            sink.finish("stop", req.prompt_tokens, 1)
        }
        Served::Generator(g) => {
            let img = match decode_for_generator(&req.image, state.config.max_image_pixels) {
                Ok(i) => i,
                Err(e) => return send(sink.stream, &state.error_reply(&id, e), keep_alive),
            };
            let max_tokens = req
                .max_tokens
                .map(|k| k as usize)
                .unwrap_or_else(|| g.default_max_tokens());
            let mut ids: Vec<u32> = Vec::new();
            let mut emitted = String::new();
            let top = req.top_logprobs;
            let bytes_of = |i: u32| g.token_bytes(i);
            let result = {
                let _permit = state.permits.acquire();
                let mut on_token = |tok: u32, logits: &[f32]| -> bool {
                    ids.push(tok);
                    let entry = token_entry(tok, logits, top, &bytes_of);
                    // Text so far, held back while it ends in a partial UTF-8 character.
                    let delta = match g.decode_text(&ids) {
                        Ok(full) if full.starts_with(&emitted) && !full.ends_with('\u{FFFD}') => {
                            let d = full[emitted.len()..].to_string();
                            emitted = full;
                            d
                        }
                        _ => String::new(),
                    };
                    sink.piece(&delta, Some(entry))
                };
                g.generate(&img, &req.question, max_tokens, &mut on_token)
            };
            let generation = match result {
                Ok(done) => done,
                Err(e) if sink.started => {
                    eprintln!("medgate serve: {id}: {e}");
                    return sink.fail_stream(&format!(
                        "the model failed on this request (logged on the server as {id})"
                    ));
                }
                Err(e) => return send(sink.stream, &state.error_reply(&id, e), keep_alive),
            };
            let full = match g.decode_text(&generation.tokens) {
                Ok(t) => t,
                Err(e) => return send(sink.stream, &state.error_reply(&id, e), keep_alive),
            };
            if sink.streaming {
                if let Some(rest) = full.strip_prefix(emitted.as_str())
                    && !rest.is_empty()
                {
                    sink.piece(rest, None);
                }
            } else {
                sink.content = full;
            }
            let finish = if generation.eos { "stop" } else { "length" };
            let completion = generation.tokens.len() + usize::from(generation.eos);
            sink.finish(finish, generation.prompt_tokens as u64, completion as u64)
        }
    }
}

/// What a generative model refuses that a contrastive scorer ignores.
fn generator_checks(req: &ChatRequest) -> Result<(), String> {
    if req.roles.len() != 1 || req.roles[0] != "user" {
        return Err(format!(
            "messages have roles [{}]: this server renders one user turn [image, question] with the model's chat template",
            req.roles.join(", ")
        ));
    }
    if req.has_stop {
        return Err(
            "`stop` is not supported: decoding is greedy and ends at an end-of-turn token or max_tokens"
                .into(),
        );
    }
    if req.max_tokens.is_some_and(|k| k > MAX_NEW_TOKENS) {
        return Err(format!(
            "`max_tokens` over this server's limit of {MAX_NEW_TOKENS}"
        ));
    }
    Ok(())
}

impl State {
    /// A 500 whose body says nothing of the server (the detail goes to the server's log).
    fn server_error(&self, id: &str, detail: &str) -> Reply {
        eprintln!("medgate serve: {id}: {detail}");
        Reply::error(
            500,
            "server_error",
            format!("the model failed on this request (logged on the server as {id})"),
        )
    }

    /// The reply for a scorer's error: 400 for bad input (server paths redacted), else 500.
    fn error_reply(&self, id: &str, e: Error) -> Reply {
        match e {
            e @ (Error::Input { .. } | Error::Invalid(_)) => {
                Reply::error(400, "invalid_request_error", self.redact(&e.to_string()))
            }
            e => self.server_error(id, &e.to_string()),
        }
    }

    /// `message` with every private path of the server replaced by `<server path>`.
    pub(super) fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        for p in &self.private {
            if !p.is_empty() {
                out = out.replace(p.as_str(), "<server path>");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_clamp_extremes() {
        let v = yes_no_entry("yes", 1.0, 5);
        assert_eq!(v["top_logprobs"][1]["logprob"], -9999.0);
        assert_eq!(v["logprob"], 0.0);
    }

    #[test]
    fn token_entries_are_log_softmax_with_ties_by_id() {
        let logits = [0.0f32, 2.0, 2.0, -1.0];
        let e = token_entry(2, &logits, 3, &|i| vec![b'a' + i as u8]);
        let lse = (1.0f64 + 2.0f64.exp() * 2.0 + (-1.0f64).exp()).ln();
        assert!((e["logprob"].as_f64().unwrap() - (2.0 - lse)).abs() < 1e-12);
        let tops: Vec<&str> = e["top_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["token"].as_str().unwrap())
            .collect();
        assert_eq!(tops, ["b", "c", "a"]);
        assert_eq!(e["token"], "c");
    }
}
