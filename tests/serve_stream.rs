//! `stream: true` against the official OpenAI Python SDK, without Python: the transcript
//! `tests/fixtures/openai-sdk/stream.json` was recorded by `record_stream.py` (openai and
//! httpx versions inside it) streaming from real `medgate serve` processes (the
//! mean-intensity test scorer, and the tiny in-process Qwen3-VL). This test replays every
//! request against in-process servers configured the same way, requires byte-identical event
//! streams (the clock's `created` set to 0 on both sides), and parses them into the chunks the
//! SDK yielded, which must equal what the SDK recorded: role, content pieces, finish reason,
//! logprobs, usage, and the SDK's exception for an error reply.

use std::path::Path;
use std::sync::Arc;

use medgate::model::vlm::VlmBackend;
use medgate::protocol::{AnswerRule, AnswerWords, CandleVlmSpec, VlmScore};
use medgate::serve::{RunningServer, ServeConfig, Server};
use medgate::testing::scorer::MeanIntensityScorer;
use serde_json::{Value, json};

fn transcript() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openai-sdk/stream.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn config(id: &str) -> ServeConfig {
    ServeConfig {
        port: 0,
        threads: 1,
        model_id: id.into(),
        ..Default::default()
    }
}

fn scorer_server() -> RunningServer {
    Server::bind(config("m"), Arc::new(MeanIntensityScorer))
        .unwrap()
        .spawn()
}

/// As `medgate serve --model tests/fixtures/vlm/tiny-qwen3-vl --model-name tiny` builds it.
fn vlm_server() -> RunningServer {
    let spec = CandleVlmSpec {
        path: "tests/fixtures/vlm/tiny-qwen3-vl".into(),
        sha256: None,
        device: "cpu".into(),
        precision: "f32".into(),
        batch_size: 1,
        kv_cache: true,
        max_tokens: 16,
        score: VlmScore::Logprobs,
        answer_words: AnswerWords::default(),
    };
    let backend = VlmBackend::load(
        &spec,
        "",
        &AnswerRule::default(),
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap();
    Server::bind_generator(config("tiny"), Arc::new(backend))
        .unwrap()
        .spawn()
}

fn zero_created(s: &str) -> String {
    regex::Regex::new(r#""created":\d+"#)
        .unwrap()
        .replace_all(s, "\"created\":0")
        .into_owned()
}

/// What the SDK yields for an event stream, in the shape `record_stream.py` writes.
fn sdk_view(sse: &str) -> Value {
    let mut chunks = Vec::new();
    let mut content = String::new();
    for ev in sse.split("\n\n").filter(|e| !e.is_empty()) {
        let data = ev.strip_prefix("data: ").expect("data event");
        if data == "[DONE]" {
            break;
        }
        let ch: Value = serde_json::from_str(data).unwrap();
        assert!(ch.get("error").is_none(), "error event {ch}");
        let usage = match &ch["usage"] {
            Value::Null => Value::Null,
            u => json!([
                u["prompt_tokens"],
                u["completion_tokens"],
                u["total_tokens"]
            ]),
        };
        let choices = ch["choices"].as_array().unwrap();
        let mut row = json!({"id": ch["id"], "object": ch["object"], "choices": choices.len(), "usage": usage});
        if let Some(c0) = choices.first() {
            let delta = &c0["delta"];
            row["role"] = delta.get("role").cloned().unwrap_or(Value::Null);
            row["content"] = delta.get("content").cloned().unwrap_or(Value::Null);
            row["finish_reason"] = c0["finish_reason"].clone();
            row["logprobs"] = match c0["logprobs"]["content"].as_array() {
                None => Value::Null,
                Some(toks) => toks
                    .iter()
                    .map(|t| {
                        let tops: Vec<Value> = t["top_logprobs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| json!([a["token"], a["logprob"]]))
                            .collect();
                        json!([t["token"], t["logprob"], tops])
                    })
                    .collect(),
            };
            content.push_str(delta.get("content").and_then(Value::as_str).unwrap_or(""));
        }
        chunks.push(row);
    }
    json!({"chunks": chunks, "content": content})
}

#[test]
fn sdk_streams_replay_byte_identically_and_parse_as_the_sdk_parsed_them() {
    let t = transcript();
    let scorer = scorer_server();
    let vlm = vlm_server();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut streamed = 0;
    for c in t["calls"].as_array().unwrap() {
        let name = c["call"].as_str().unwrap();
        let srv = if name.starts_with("vlm:") {
            &vlm
        } else {
            &scorer
        };
        let root = srv.base_url().trim_end_matches("/v1").to_string();
        let x = &c["exchanges"][0];
        assert_eq!(c["exchanges"].as_array().unwrap().len(), 1, "{name}");
        let req = &x["request"];
        let mut resp = agent
            .post(format!("{root}{}", req["path"].as_str().unwrap()))
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(&req["body"]).unwrap())
            .unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = zero_created(&resp.body_mut().read_to_string().unwrap());
        assert_eq!(status, x["response"]["status"], "{name}: status");
        assert_eq!(ct, x["response"]["content_type"], "{name}: content type");
        assert_eq!(body, x["response"]["body"], "{name}: body");
        let sdk = &c["sdk"];
        if let Some(ok) = sdk.get("ok") {
            assert_eq!(&sdk_view(&body), ok, "{name}: what the SDK parsed");
            streamed += 1;
        }
    }
    assert!(streamed >= 5, "{streamed} streams");

    let call = |n: &str| {
        t["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["call"] == n)
            .unwrap_or_else(|| panic!("no call {n}"))["sdk"]
            .clone()
    };
    // An error before the stream starts is a plain error reply: the SDK raised it.
    assert_eq!(
        call("scorer: stream, unknown model")["error"],
        "NotFoundError"
    );
    // The scorer's one token, and its logprobs recovering the score (60/255).
    let ok = &call("scorer: stream, logprobs, top_logprobs=2")["ok"];
    assert_eq!(ok["content"], "no");
    let lp = &ok["chunks"][1]["logprobs"][0];
    let p_yes = lp[2][1][1].as_f64().unwrap().exp();
    assert!((p_yes - 60.0 / 255.0).abs() < 1e-12, "{p_yes}");
    // include_usage: a last chunk with no choices and the usage.
    let ok = &call("scorer: stream, include_usage")["ok"];
    let last = ok["chunks"].as_array().unwrap().last().unwrap();
    assert_eq!(last["choices"], 0);
    assert!(last["usage"][0].as_u64().unwrap() > 0);
    // The VLM streamed token by token, one logprobs entry per token, 3 alternatives each.
    let ok = &call("vlm: stream, logprobs, top_logprobs=3, include_usage")["ok"];
    let chunks = ok["chunks"].as_array().unwrap();
    let tokens: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["logprobs"].as_array())
        .flatten()
        .collect();
    assert!(!tokens.is_empty());
    assert!(tokens.iter().all(|t| t[2].as_array().unwrap().len() == 3));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(
        usage[1].as_u64().unwrap() as usize,
        tokens.len() + usize::from(chunks.iter().any(|c| c["finish_reason"] == "stop"))
    );
    let ok = &call("vlm: stream, max_tokens=3")["ok"];
    assert!(
        ok["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["finish_reason"] == "length")
    );
    scorer.stop().unwrap();
    vlm.stop().unwrap();
}
