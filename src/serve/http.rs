//! The HTTP/1.1 layer of `medgate serve`: reading one request off a connection under
//! deadlines, and writing a reply (whole, or as a chunked event stream).
//!
//! Why its own: the server must bound what a client can hold. A request's head must arrive
//! within `header_timeout` of its first byte (of the connection's accept for the first
//! request), its body within `body_timeout` of the head, and an idle keep-alive connection
//! is closed after `idle_timeout`; every wait also wakes every 100 ms to notice shutdown.
//! Heads are at most [`MAX_HEAD_BYTES`], bodies at most the configured limit and need a
//! `Content-Length` (a chunked request body is answered 411). `Expect: 100-continue` is
//! honoured. Nothing else of HTTP is implemented: no upgrades, no trailers, no ranges.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 << 10;

/// How often a blocked read wakes to check the shutdown flag.
const POLL: Duration = Duration::from_millis(100);

/// Deadlines and sizes of request reading.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Largest body.
    pub max_body: u64,
}

/// One parsed request.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The target without its query string.
    pub path: String,
    /// Header names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
    /// Whether the connection stays open after the reply.
    pub keep_alive: bool,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request was read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed (or stayed idle past `idle_timeout`) between requests: nothing to answer.
    Closed,
    /// The server is stopping.
    Shutdown,
    /// The head or the body did not arrive in time: answer 408 and close.
    Timeout(&'static str),
    /// A request this layer refuses: answer `status` with `message` and close.
    Refused(u16, String),
}

enum Got {
    Bytes,
    Eof,
    Timeout,
    Shutdown,
}

/// Reads more bytes into `buf`, waiting until `deadline` at most.
fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    shutdown: &AtomicBool,
) -> Got {
    let mut tmp = [0u8; 16 << 10];
    loop {
        if shutdown.load(Ordering::SeqCst) {
            return Got::Shutdown;
        }
        let now = Instant::now();
        if now >= deadline {
            return Got::Timeout;
        }
        let wait = (deadline - now).min(POLL).max(Duration::from_millis(1));
        if stream.set_read_timeout(Some(wait)).is_err() {
            return Got::Eof;
        }
        match stream.read(&mut tmp) {
            Ok(0) => return Got::Eof,
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return Got::Bytes;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return Got::Eof,
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Reads the next request. `buf` carries bytes already read past the previous request;
/// `first` says whether this is the connection's first request (whose head deadline runs
/// from the accept rather than after an idle wait).
pub fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limits: &Limits,
    shutdown: &AtomicBool,
    first: bool,
) -> Result<Request, ReadError> {
    // Wait for the first byte (idle keep-alive), then for the whole head.
    if buf.is_empty() {
        let idle = if first {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        match fill(stream, buf, Instant::now() + idle, shutdown) {
            Got::Bytes => {}
            Got::Eof => return Err(ReadError::Closed),
            Got::Shutdown => return Err(ReadError::Shutdown),
            Got::Timeout if first => return Err(ReadError::Timeout("request head")),
            Got::Timeout => return Err(ReadError::Closed),
        }
    }
    let head_deadline = Instant::now() + limits.header_timeout;
    let head_end = loop {
        if let Some(end) = find_head_end(buf) {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(ReadError::Refused(
                431,
                format!("request head over {MAX_HEAD_BYTES} bytes"),
            ));
        }
        match fill(stream, buf, head_deadline, shutdown) {
            Got::Bytes => {}
            Got::Eof => return Err(ReadError::Closed),
            Got::Shutdown => return Err(ReadError::Shutdown),
            Got::Timeout => return Err(ReadError::Timeout("request head")),
        }
    };
    if head_end > MAX_HEAD_BYTES {
        return Err(ReadError::Refused(
            431,
            format!("request head over {MAX_HEAD_BYTES} bytes"),
        ));
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let bad = |m: &str| ReadError::Refused(400, m.to_string());
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => (m, t, v),
        _ => return Err(bad("malformed request line")),
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Refused(
            505,
            "only HTTP/1.0 and HTTP/1.1".to_string(),
        ));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed header line"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        headers,
        body: Vec::new(),
        keep_alive: false,
    };
    let connection = req.header("connection").map(str::to_ascii_lowercase);
    req.keep_alive = match version {
        "HTTP/1.0" => connection.as_deref() == Some("keep-alive"),
        _ => connection.as_deref() != Some("close"),
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Refused(
            411,
            "send the body with a Content-Length (chunked request bodies are not accepted)"
                .to_string(),
        ));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| bad("Content-Length is not a number"))?,
    };
    if len > limits.max_body {
        return Err(ReadError::Refused(
            413,
            format!("request body over {} MiB", limits.max_body >> 20),
        ));
    }
    if len > 0
        && req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        && buf.is_empty()
    {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let body_deadline = Instant::now() + limits.body_timeout;
    let len = len as usize;
    while buf.len() < len {
        match fill(stream, buf, body_deadline, shutdown) {
            Got::Bytes => {}
            Got::Eof => return Err(ReadError::Closed),
            Got::Shutdown => return Err(ReadError::Shutdown),
            Got::Timeout => return Err(ReadError::Timeout("request body")),
        }
    }
    req.body = buf.drain(..len).collect();
    Ok(req)
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Writes a whole reply.
pub fn write_reply(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()
}

/// Sends the head of a 200 `text/event-stream` reply whose events follow as HTTP chunks
/// ([`send_event`], then [`finish_events`]).
pub fn start_events(stream: &mut TcpStream, keep_alive: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    stream.write_all(head.as_bytes())?;
    stream.flush()
}

/// Sends one server-sent event `data: DATA\n\n` as one chunk.
pub fn send_event(stream: &mut TcpStream, data: &str) -> std::io::Result<()> {
    let ev = format!("data: {data}\n\n");
    let chunk = format!("{:x}\r\n{ev}\r\n", ev.len());
    stream.write_all(chunk.as_bytes())?;
    stream.flush()
}

/// Ends an event stream (the last, empty chunk).
pub fn finish_events(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}
