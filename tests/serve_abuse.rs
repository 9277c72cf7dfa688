//! `medgate serve` under abuse (issue 11, deliverable 9), each attack against a real server on
//! loopback: stalled clients, too many connections, a decompression bomb, planted temporary
//! files, server paths in error replies, a missing or wrong API key, and a non-loopback bind
//! without a key. The timing margins are generous (seconds where milliseconds would do): the
//! tests assert what happens, never how fast.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use medgate::serve::{Scorer, ServeConfig, Server};
use medgate::testing::scorer::MeanIntensityScorer;
use serde_json::{Value, json};

fn png(w: u32, h: u32, level: u8) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(w, h, image::Luma([level]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A valid 8x8 PNG whose IHDR is rewritten to claim `w` x `h` (CRC fixed): a few hundred
/// bytes that a decoder would try to expand to `w * h` pixels.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut b = png(8, 8, 100);
    // Signature (8), length (4), "IHDR" (4), then width and height.
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

fn request(model: &str, image: &[u8]) -> Value {
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(image)
    );
    json!({"model": model, "logprobs": true, "top_logprobs": 2, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Is there a finding?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn post(base: &str, body: &Value, key: Option<&str>) -> (u16, String) {
    let mut r = agent().post(format!("{base}/chat/completions"));
    if let Some(k) = key {
        r = r.header("Authorization", format!("Bearer {k}"));
    }
    let mut resp = r.send_json(body).unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

fn serve(cfg: ServeConfig, scorer: Arc<dyn Scorer>) -> medgate::serve::RunningServer {
    Server::bind(
        ServeConfig {
            port: 0,
            model_id: "m".into(),
            ..cfg
        },
        scorer,
    )
    .unwrap()
    .spawn()
}

/// Opens a connection that sends part of a request and then nothing.
fn stall(addr: std::net::SocketAddr, partial: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(partial).unwrap();
    s
}

fn read_all(mut s: TcpStream, limit: Duration) -> String {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn stalled_clients_do_not_stall_the_server() {
    // One scoring thread and timeouts far longer than the test: a normal request must be
    // answered while eight clients sit on partial heads and bodies.
    let srv = serve(
        ServeConfig {
            threads: 1,
            header_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(120),
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    );
    let addr = srv.local_addr();
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(stall(
            addr,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le",
        ));
    }
    for _ in 0..4 {
        stalled.push(stall(
            addr,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"model\":",
        ));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (status, body) = post(&srv.base_url(), &request("m", &png(8, 8, 204)), None);
    assert_eq!(status, 200, "{body}");
    // Far below the 120 s the stalled clients could hold a reader for.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    drop(stalled);
    srv.stop().unwrap();
}

#[test]
fn a_stalled_head_or_body_is_answered_408_and_closed() {
    let srv = serve(
        ServeConfig {
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    );
    let addr = srv.local_addr();
    let head = stall(addr, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n");
    let body = stall(
        addr,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
    );
    // The server closes them itself (read_to_end returns); 60 s is only a safety net.
    for (s, what) in [(head, "head"), (body, "body")] {
        let reply = read_all(s, Duration::from_secs(60));
        assert!(reply.starts_with("HTTP/1.1 408"), "{what}: {reply}");
        assert!(
            reply.contains(&format!("request {what} did not arrive")),
            "{reply}"
        );
    }
    srv.stop().unwrap();
}

#[test]
fn connections_beyond_the_limit_get_503_and_the_server_recovers() {
    let srv = serve(
        ServeConfig {
            max_connections: 2,
            header_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    );
    let addr = srv.local_addr();
    let a = stall(addr, b"GET /v1/mod");
    let b = stall(addr, b"GET /v1/mod");
    std::thread::sleep(Duration::from_millis(500));
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_all(c, Duration::from_secs(60));
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("Retry-After: 1"), "{reply}");
    assert!(reply.contains("connection limit"), "{reply}");
    // Once the stalled ones time out (2 s), connections are served again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut r = agent()
            .get(format!("{}/models", srv.base_url()))
            .call()
            .unwrap();
        if r.status() == 200 {
            assert!(r.body_mut().read_to_string().unwrap().contains("\"m\""));
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((a, b));
    srv.stop().unwrap();
}

#[test]
fn a_png_claiming_huge_dimensions_is_refused_413_before_decoding() {
    let srv = serve(ServeConfig::default(), Arc::new(MeanIntensityScorer));
    // 100000 x 100000 would be 10 G pixels; the file is a few hundred bytes.
    let bomb = png_claiming(100_000, 100_000);
    assert!(bomb.len() < 1000);
    let (status, body) = post(&srv.base_url(), &request("m", &bomb), None);
    assert_eq!(status, 413, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("100000x100000"), "{msg}");
    assert!(msg.contains("--max-image-pixels"), "{msg}");
    srv.stop().unwrap();

    // A real image over a lowered limit: the same refusal, and one under it is scored.
    let srv = serve(
        ServeConfig {
            max_image_pixels: 10_000,
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    );
    let (status, body) = post(&srv.base_url(), &request("m", &png(101, 100, 9)), None);
    assert_eq!(status, 413, "{body}");
    let (status, body) = post(&srv.base_url(), &request("m", &png(100, 100, 9)), None);
    assert_eq!(status, 200, "{body}");
    // A header that cannot be read is a 400 with a JSON error, not a 500.
    let mut cut = png(8, 8, 1);
    cut.truncate(20);
    let (status, body) = post(&srv.base_url(), &request("m", &cut), None);
    assert_eq!(status, 400, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].is_string());
    srv.stop().unwrap();
}

/// A scorer that fails the way a model loader does: with errors naming server files.
struct LeakyScorer;

impl Scorer for LeakyScorer {
    fn score_encoded(&self, images: &[&[u8]]) -> medgate::Result<Vec<f64>> {
        if images[0].len().is_multiple_of(2) {
            Err(medgate::Error::io(
                "/tmp/medgate-private/weights.safetensors",
                std::io::Error::other("disk on fire"),
            ))
        } else {
            Err(medgate::Error::input(
                "/srv/models/secret-model/preprocessor_config.json: bad mean",
            ))
        }
    }
}

#[test]
fn error_replies_name_no_server_path() {
    let srv = serve(
        ServeConfig {
            private_paths: vec!["/srv/models/secret-model".into()],
            ..Default::default()
        },
        Arc::new(LeakyScorer),
    );
    let mut seen = std::collections::BTreeSet::new();
    for level in 0..8u8 {
        let img = png(8, 8, level * 30);
        let (status, body) = post(&srv.base_url(), &request("m", &img), None);
        seen.insert(status);
        assert!(status == 400 || status == 500, "{status} {body}");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_object());
        for leak in ["/tmp", "/srv/models", "secret-model", "weights.safetensors"] {
            assert!(!body.contains(leak), "{leak} in {body}");
        }
    }
    assert_eq!(seen.len(), 2, "both kinds of failure exercised: {seen:?}");
    srv.stop().unwrap();
}

#[test]
fn the_api_key_is_required_when_set() {
    let srv = serve(
        ServeConfig {
            api_key: Some("s3cret-key".into()),
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    );
    let req = request("m", &png(8, 8, 204));
    for key in [None, Some("wrong"), Some("s3cret-ke"), Some("s3cret-key2")] {
        let (status, body) = post(&srv.base_url(), &req, key);
        assert_eq!(status, 401, "{key:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
    let r = agent()
        .get(format!("{}/models", srv.base_url()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, body) = post(&srv.base_url(), &req, Some("s3cret-key"));
    assert_eq!(status, 200, "{body}");
    let root = srv.base_url().trim_end_matches("/v1").to_string();
    let r = agent().get(format!("{root}/health")).call().unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().unwrap();
}

#[test]
fn a_non_loopback_bind_without_a_key_is_refused() {
    let err = Server::bind(
        ServeConfig {
            host: "0.0.0.0".into(),
            port: 0,
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("without an API key"), "{err}");
    // With a key it binds.
    let ok = Server::bind(
        ServeConfig {
            host: "0.0.0.0".into(),
            port: 0,
            api_key: Some("k".into()),
            ..Default::default()
        },
        Arc::new(MeanIntensityScorer),
    );
    assert!(ok.is_ok());

    // The CLI says how to fix it, and exits without serving.
    let out = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .args([
            "serve",
            "--test-scorer",
            "mean-intensity",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--api-key-env"), "{stderr}");
    assert!(out.stdout.is_empty());
    let out = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .args([
            "serve",
            "--test-scorer",
            "mean-intensity",
            "--api-key-env",
            "MEDGATE_TEST_UNSET_KEY",
        ])
        .env_remove("MEDGATE_TEST_UNSET_KEY")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unset or empty"));
}

/// Kills the child server when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_cli_server_writes_no_temporary_file_and_leaks_no_path() {
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().unwrap();
    // A planted symlink where the old server wrote its predictable temporary directory.
    let target = tmp.path().join("target-of-symlink");
    std::fs::create_dir(&target).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .current_dir(root)
        .args([
            "serve",
            "--protocol",
            "protocols/demo-cxr.yaml",
            "--port",
            "0",
            "--model-name",
            "m",
        ])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    let child = Child(child);
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let pid = child.0.id();
    std::os::unix::fs::symlink(&target, tmp.path().join(format!("medgate-serve-{pid}"))).unwrap();
    let (status, body) = post(&base, &request("m", &png(64, 64, 120)), None);
    assert_eq!(status, 200, "{body}");
    // A PNG that is cut off after its header: a decode error, 400, naming no server path.
    let mut cut = png(64, 64, 120);
    cut.truncate(cut.len() - 20);
    let (status, body) = post(&base, &request("m", &cut), None);
    assert_eq!(status, 400, "{body}");
    let tmp_str = tmp.path().display().to_string();
    for leak in [
        root,
        "/tmp",
        tmp_str.as_str(),
        "models/demo-cxr-clip",
        "protocols/",
    ] {
        assert!(!body.contains(leak), "{leak} in {body}");
    }
    // Nothing was written: not in TMPDIR, not through the planted symlink.
    let entries: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    drop(child);
}
