//! `medgate serve` against the official OpenAI Python SDK, without Python: the transcript in
//! `tests/fixtures/openai-sdk/transcript.json` was recorded by `record.py` (openai and httpx
//! versions inside it) driving a real `medgate serve`; this test replays every request the SDK
//! sent and requires the same status and the same JSON answer (minus the clock). The SDK's own
//! reading of each answer is in the transcript too and is checked here: `models.retrieve`
//! works, `n = 2` and unsupported parameters are refused with 400 (the SDK raised
//! `BadRequestError`), `top_logprobs` gives as many alternatives as asked up to the model's two,
//! and `usage.prompt_tokens` is not 0.

use std::sync::Arc;

use medgate::serve::{ServeConfig, Server};
use medgate::testing::scorer::MeanIntensityScorer;
use serde_json::Value;

fn transcript() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openai-sdk/transcript.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn call<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call"] == name)
        .unwrap_or_else(|| panic!("no call {name} in the transcript"))
}

#[test]
fn the_official_sdk_transcript_replays_identically() {
    let t = transcript();
    let cfg = ServeConfig {
        port: 0,
        threads: 1,
        model_id: "m".into(),
        ..Default::default()
    };
    let srv = Server::bind(cfg, Arc::new(MeanIntensityScorer))
        .unwrap()
        .spawn();
    let root = srv.base_url().trim_end_matches("/v1").to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut replayed = 0;
    for c in t["calls"].as_array().unwrap() {
        for x in c["exchanges"].as_array().unwrap() {
            let req = &x["request"];
            let url = format!("{root}{}", req["path"].as_str().unwrap());
            let mut resp = match req["method"].as_str().unwrap() {
                "GET" => agent.get(&url).call().unwrap(),
                "POST" => agent
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .send(serde_json::to_vec(&req["body"]).unwrap())
                    .unwrap(),
                m => panic!("method {m}"),
            };
            let status = resp.status().as_u16();
            let mut body: Value =
                serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
            if let Some(o) = body.as_object_mut() {
                o.remove("created");
            }
            assert_eq!(status, x["response"]["status"], "{}: status", c["call"]);
            assert_eq!(body, x["response"]["body"], "{}: body", c["call"]);
            replayed += 1;
        }
    }
    srv.stop().unwrap();
    assert!(replayed >= 10, "{replayed} exchanges");

    // What the SDK made of the answers.
    assert_eq!(
        call(&t, "models.list")["sdk"]["ok"],
        serde_json::json!(["m"])
    );
    assert_eq!(call(&t, "models.retrieve")["sdk"]["ok"], "m");
    assert_eq!(
        call(&t, "models.retrieve(unknown)")["sdk"]["error"],
        "NotFoundError"
    );
    for refused in [
        "chat(n=2)",
        "chat(tools)",
        "chat(response_format)",
        "chat(top_logprobs without logprobs)",
    ] {
        let sdk = &call(&t, refused)["sdk"];
        assert_eq!(sdk["error"], "BadRequestError", "{refused}: {sdk}");
        assert_eq!(sdk["status"], 400, "{refused}");
    }
    for (name, k) in [
        ("chat(logprobs, top_logprobs=2)", 2),
        ("chat(logprobs, top_logprobs=1)", 1),
        ("chat(logprobs, top_logprobs=0)", 0),
    ] {
        let ok = &call(&t, name)["sdk"]["ok"];
        assert_eq!(
            ok["top_logprobs"].as_array().unwrap().len(),
            k,
            "{name}: {ok}"
        );
        assert_eq!(ok["choices"], 1);
    }
    let ok = &call(&t, "chat")["sdk"]["ok"];
    let usage = ok["usage"].as_array().unwrap();
    // "Is there a pneumothorax? Answer yes or no." is 8 words and 2 marks, plus one image.
    assert_eq!(usage[0], 11, "{ok}");
    assert_eq!(
        usage[2],
        usage[0].as_u64().unwrap() + usage[1].as_u64().unwrap()
    );
    // A light grey image (191/255) is a "yes" from the mean-intensity scorer, and the
    // logprobs recover its score: exp(logprob(yes)) = 191/255.
    assert_eq!(ok["content"], "yes");
    let top = &call(&t, "chat(logprobs, top_logprobs=2)")["sdk"]["ok"]["top_logprobs"];
    let p_yes = top[0][1].as_f64().unwrap().exp();
    assert!((p_yes - 191.0 / 255.0).abs() < 1e-12, "{p_yes}");
}
