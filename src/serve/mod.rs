//! `medgate serve`: a validated model behind the OpenAI-compatible chat-completions API.
//!
//! Why this exists: it lets a site host its validated model for others through the same API
//! that vLLM, TGI, llama.cpp server and Ollama speak, and it is the real server the `openai`
//! backend is tested and benchmarked against (no mock of the wire format). It hosts either a
//! contrastive scorer (`candle-clip`, [`ClipScorer`]) or the in-process generative VLM
//! (`candle-vlm`, [`crate::model::vlm::VlmBackend`] as a [`Generator`]): a hash-pinned model
//! behind the API a team's other tools already use.
//!
//! # Modules
//! - [`http`]: HTTP/1.1 request reading under deadlines and size limits, replies, chunked
//!   event streams.
//! - [`api`]: routes, API-key check, chat-completions parsing, answers (whole or streamed).
//! - [`model`]: the [`Scorer`] and [`Generator`] traits, [`ClipScorer`], in-memory image
//!   decoding under the pixel limit.
//!
//! # Endpoints
//!
//! - `GET /health`: `{"status":"ok"}` (never needs the API key).
//! - `GET /v1/models`: `{"object":"list","data":[{"id": MODEL, "object":"model", ...}]}`;
//!   `GET /v1/models/MODEL` (the SDK's `models.retrieve`) answers that one object, any other
//!   ID 404.
//! - `POST /v1/chat/completions`: the request carries exactly one image as an `image_url`
//!   content part holding a base64 `data:` URL (PNG or JPEG). A `model` that is not the
//!   served one is answered 404, a malformed request 400, all errors in OpenAI's
//!   `{"error": {...}}` shape. Refused with 400 rather than silently ignored: `n` other than
//!   1 and any parameter not in [`ACCEPTED_PARAMS`].
//!   - **Contrastive scorer**: text parts are accepted and ignored (the model answers with
//!     its own prompt ensembles). The content is `yes` when the score p >= 0.5, else `no`.
//!     With `"logprobs": true` the one content token carries `top_logprobs` for both tokens:
//!     `logprob(yes) = ln p`, `logprob(no) = ln(1 - p)`, each clamped below at -9999 (JSON
//!     has no -inf), so a client computing `p(yes) / (p(yes) + p(no))` recovers p.
//!     `top_logprobs` (0-20) is honoured up to the two tokens the model has. Sampling
//!     settings cannot change a one-token deterministic answer and are ignored.
//!     `usage.prompt_tokens` counts the prompt as [`prompt_tokens`] does (a documented
//!     approximation: the scorer has no chat tokenizer).
//!   - **Generative model**: exactly one message, a `user` turn; its text parts (joined by
//!     newlines) are the question, rendered with the image by the model's own chat template
//!     as `[image, question]` (the prompt a validation run builds from `task.question`). The
//!     content is the greedy decoding, up to `max_tokens` / `max_completion_tokens` (default:
//!     the backend's `max_tokens`; at most [`api::MAX_NEW_TOKENS`]) or an end-of-turn token
//!     (`finish_reason` `length` / `stop`). Decoding is greedy whatever `temperature`,
//!     `top_p` or `seed` say; `stop` and other roles are refused with 400. With logprobs,
//!     every generated token has its log-softmax and the `top_logprobs` most likely tokens
//!     (ties by lower id), each with its bytes (byte-level BPE tokens mapped back to bytes).
//!     `usage` counts real tokens (prompt with image placeholders expanded; completion with
//!     the end-of-turn token).
//!
//! # Streaming (`"stream": true`)
//! As OpenAI streams: `Content-Type: text/event-stream`, HTTP chunked, one event per
//! `data: {...}\n\n`, each a `chat.completion.chunk` with the completion's `id`, `created`
//! and `model`: first `delta: {"role":"assistant","content":""}`, then one chunk per token
//! with `delta: {"content": PIECE}` (and that token's `logprobs` when asked), then
//! `delta: {}` with the `finish_reason`, with `stream_options.include_usage` a last chunk with
//! `choices: []` and the `usage` (every other chunk then carries `"usage": null`), and
//! `data: [DONE]`. A generator's tokens are sent as they are generated; a piece that would end
//! inside a UTF-8 character is held back until it completes, so the pieces concatenate to the
//! non-streamed content. An error before the first token is a plain JSON error reply; after
//! it, an `{"error": ...}` event and `[DONE]`.
//!
//! # Abuse (see docs/threat-model.md, "serve")
//! - **Slow clients**: a request head must arrive within `header_timeout` (default 10 s) of
//!   its first byte, its body within `body_timeout` (60 s); late ones get 408 and the
//!   connection is closed; idle keep-alive connections close after `idle_timeout` (30 s).
//!   Reading is done by per-connection threads, scoring by `threads` permits, so stalled
//!   clients hold no scoring slot.
//! - **Bounded threads**: one acceptor plus at most `max_connections` (default 64) connection
//!   threads; a connection beyond that is answered 503 with `Retry-After: 1` at once. At most
//!   `threads` requests are scored at a time; the others wait their turn.
//! - **Decompression bombs**: an image's header dimensions are checked against
//!   `max_image_pixels` (default [`DEFAULT_MAX_IMAGE_PIXELS`]) before it is decoded: 413.
//!   Bodies over 64 MiB: 413; heads over 16 KiB: 431.
//! - **No temporary files**: images are decoded from memory.
//! - **No server paths in replies**: a model failure is answered 500 with the request's ID
//!   only (the detail goes to stderr); input errors have the server's private paths
//!   (`private_paths`: the model directory, the working and temporary directories) redacted.
//! - **API key**: with `api_key` set, every route but `/health` needs
//!   `Authorization: Bearer KEY` (compared through SHA-256 digests, in constant time) or is
//!   answered 401. Binding to an address that is not loopback without a key is refused.
//!
//! # Shutdown
//! Every wait wakes at least every 100 ms to check the shutdown flag; the CLI sets it from
//! SIGINT/SIGTERM, so the server finishes the requests being scored and exits cleanly.
//!
//! # Fault injection (tests and drills only)
//!
//! [`Chaos`] (in [`crate::testing::chaos`]) makes a request fail deterministically from a
//! seeded hash of the request's arrival number (so a client's retry of the same case gets a
//! fresh draw): with probability `fail_rate` an HTTP 500; else `slow_rate` an answer delayed
//! by `slow_ms` (longer than the client's timeout); else `garbage_rate` a 200 whose body is
//! not JSON; else `equivocal_rate` a well-formed completion whose text is [`EQUIVOCAL_TEXT`]
//! and which has no logprobs. The CLI exposes these as hidden `--chaos-*` flags.

pub mod api;
pub mod http;
pub mod model;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use api::{ACCEPTED_PARAMS, prompt_tokens};
pub use model::{ClipScorer, DEFAULT_MAX_IMAGE_PIXELS, Generator, Scorer, Served};

use crate::error::{Error, Result};
use crate::testing::chaos::Chaos;

/// The answer text of an injected equivocal reply (exposed so tests can compare verbatim).
pub const EQUIVOCAL_TEXT: &str = "I cannot tell from this image.";

/// Largest request body accepted (a 4096x4096 16-bit PNG in base64 is about 45 MiB).
const MAX_BODY_BYTES: u64 = 64 << 20;

/// How long a reply may take to be written to a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind (loopback by default: exposing a medical model is a decision).
    pub host: String,
    /// Port; 0 picks a free one (read it back with [`Server::local_addr`]).
    pub port: u16,
    /// Requests scored at once.
    pub threads: usize,
    /// Connections served at once (one thread each); more are answered 503.
    pub max_connections: usize,
    /// From a request's first byte (or the accept) to the end of its head.
    pub header_timeout: Duration,
    /// From the end of a request's head to the end of its body.
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Largest `width * height` an image may declare.
    pub max_image_pixels: u64,
    /// Bearer token required on every route but `/health`; `None`: no authentication
    /// (allowed on loopback addresses only).
    pub api_key: Option<String>,
    /// Paths never to appear in a reply (redacted from error messages).
    pub private_paths: Vec<PathBuf>,
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
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            api_key: None,
            private_paths: Vec::new(),
            model_id: "medgate".into(),
            chaos: Chaos::default(),
        }
    }
}

/// Counters reported when the server stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Chat-completion requests received.
    pub requests: u64,
    /// Requests answered with a fault injected.
    pub faults: u64,
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    config: ServeConfig,
    model: Served,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("model", &self.model)
            .finish()
    }
}

impl Server {
    /// Binds the listening socket for a contrastive scorer (so the caller can print the
    /// address before serving).
    pub fn bind(config: ServeConfig, scorer: Arc<dyn Scorer>) -> Result<Server> {
        Server::bind_model(config, Served::Scorer(scorer))
    }

    /// Binds the listening socket for a generative model.
    pub fn bind_generator(config: ServeConfig, generator: Arc<dyn Generator>) -> Result<Server> {
        Server::bind_model(config, Served::Generator(generator))
    }

    /// Binds the listening socket for `model`. Refuses a non-loopback address without an
    /// API key, an empty key, and zero threads or connections.
    pub fn bind_model(config: ServeConfig, model: Served) -> Result<Server> {
        config.chaos.validate()?;
        if config.threads == 0 {
            return Err(Error::input_hint(
                "--threads 0",
                "use at least one worker thread",
            ));
        }
        if config.max_connections == 0 {
            return Err(Error::input_hint(
                "--max-connections 0",
                "allow at least one connection",
            ));
        }
        if config
            .api_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(Error::input_hint(
                "the API key is empty",
                "put a long random secret in the variable --api-key-env names",
            ));
        }
        let listener = TcpListener::bind((config.host.as_str(), config.port)).map_err(|e| {
            Error::infra(format!(
                "cannot listen on {}:{}: {e}",
                config.host, config.port
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::infra(format!("listener has no address: {e}")))?;
        if !addr.ip().is_loopback() && config.api_key.is_none() {
            return Err(Error::input_hint(
                format!(
                    "refusing to serve on {} without an API key: that address is reachable from other machines, and a medical model must not answer anyone who connects",
                    config.host
                ),
                "set --api-key-env VAR (VAR holding a long random secret; clients send `Authorization: Bearer SECRET`), \
                 or listen on 127.0.0.1 behind an authenticating reverse proxy",
            ));
        }
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::infra(format!("listener: {e}")))?;
        Ok(Server {
            listener,
            addr,
            config,
            model,
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
        let mut private: Vec<String> = self
            .config
            .private_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        private.extend(
            [
                std::env::temp_dir(),
                std::env::current_dir().unwrap_or_default(),
            ]
            .iter()
            .map(|p| p.display().to_string())
            .filter(|p| p.len() > 1),
        );
        // Longest first, so a path is redacted whole before any prefix of it.
        private.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let state = State {
            key_digest: self.config.api_key.as_deref().map(api::key_digest),
            permits: Permits::new(self.config.threads),
            limits: http::Limits {
                header_timeout: self.config.header_timeout,
                body_timeout: self.config.body_timeout,
                idle_timeout: self.config.idle_timeout,
                max_body: MAX_BODY_BYTES,
            },
            private,
            config: self.config,
            model: self.model,
            counter: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            shutdown,
        };
        let state = &state;
        std::thread::scope(|s| {
            while !state.shutdown.load(Ordering::SeqCst) {
                match self.listener.accept() {
                    Ok((stream, _)) => {
                        if state.active.load(Ordering::SeqCst) >= state.config.max_connections {
                            refuse_busy(stream);
                            continue;
                        }
                        state.active.fetch_add(1, Ordering::SeqCst);
                        s.spawn(move || {
                            connection(stream, state);
                            state.active.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        eprintln!("medgate serve: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
        Ok(ServeStats {
            requests: state.counter.load(Ordering::SeqCst),
            faults: state.faults.load(Ordering::SeqCst),
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

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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

/// A counting semaphore: at most `threads` requests are scored at once.
struct Permits {
    free: Mutex<usize>,
    cv: Condvar,
}

struct Permit<'a>(&'a Permits);

impl Permits {
    fn new(n: usize) -> Permits {
        Permits {
            free: Mutex::new(n),
            cv: Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.cv.notify_one();
    }
}

pub(crate) struct State {
    config: ServeConfig,
    model: Served,
    counter: AtomicU64,
    faults: AtomicU64,
    active: AtomicUsize,
    shutdown: Arc<AtomicBool>,
    permits: Permits,
    limits: http::Limits,
    key_digest: Option<[u8; 32]>,
    /// Private paths as strings, longest first.
    private: Vec<String>,
}

impl State {
    fn sleep_unless_shutdown(&self, total: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < total && !self.shutdown.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(total));
        }
    }
}

/// Answers a connection over the limit with 503 and closes it (from the acceptor: a fresh
/// socket's send buffer takes the short reply without blocking).
fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let r = api::Reply::error(
        503,
        "server_error",
        "the server is at its connection limit (--max-connections); retry shortly",
    );
    api::send(&mut stream, &r, false);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Serves the requests of one connection until it closes, times out or the server stops.
fn connection(mut stream: TcpStream, state: &State) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        match http::read_request(&mut stream, &mut buf, &state.limits, &state.shutdown, first) {
            Ok(req) => {
                first = false;
                let keep = req.keep_alive && !state.shutdown.load(Ordering::SeqCst);
                if !api::handle(&mut stream, req, state, keep) || !keep {
                    break;
                }
            }
            Err(http::ReadError::Closed | http::ReadError::Shutdown) => break,
            Err(http::ReadError::Timeout(what)) => {
                let secs = if what == "request body" {
                    state.config.body_timeout
                } else {
                    state.config.header_timeout
                }
                .as_secs_f64();
                let r = api::Reply::error(
                    408,
                    "invalid_request_error",
                    format!("the {what} did not arrive within {secs} s"),
                );
                api::send(&mut stream, &r, false);
                break;
            }
            Err(http::ReadError::Refused(status, message)) => {
                let r = api::Reply::error(status, "invalid_request_error", message);
                api::send(&mut stream, &r, false);
                break;
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scorer::MeanIntensityScorer;
    use base64::Engine as _;
    use serde_json::{Value, json};

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

    fn raw(addr: SocketAddr, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn oversized_heads_and_bodies_and_chunked_bodies_are_refused() {
        let srv = spawn(Chaos::default());
        let addr = srv.addr;
        let mut big = b"GET /v1/models HTTP/1.1\r\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 20 << 10));
        big.extend_from_slice(b"\r\n\r\n");
        assert!(raw(addr, &big).starts_with("HTTP/1.1 431"));
        let huge = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n";
        let r = raw(addr, huge);
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        let chunked =
            b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert!(raw(addr, chunked).starts_with("HTTP/1.1 411"));
        // Keep-alive with two pipelined requests: both answered on one connection.
        let two =
            b"GET /v1/models HTTP/1.1\r\n\r\nGET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert_eq!(raw(addr, two).matches("HTTP/1.1 200").count(), 2);
        srv.stop().unwrap();
    }
}
