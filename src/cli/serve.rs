//! `medgate serve`: host a model behind the OpenAI-compatible chat-completions API.
//!
//! The command resolves its arguments into a [`crate::serve::ServeConfig`] and the model to
//! serve: a `candle-clip` scorer or a `candle-vlm` generative model, from `--protocol FILE`
//! (its `model` section, with its pinned hash checked) or `--model DIR` (the family is read
//! from the checkpoint: `config.json`'s `model_type` of a VLM family, else CLIP). It binds,
//! prints the bound address as the first line of stdout (so a script or a test that asked
//! for `--port 0` can read the real port), and serves until SIGINT or SIGTERM. The API key
//! comes from the environment variable `--api-key-env` names, never from the command line
//! (which other users can read in the process list). The HTTP logic lives in
//! [`crate::serve`].
//!
//! Hidden flags, for tests, drills and benchmarks only: `--chaos-fail-rate`,
//! `--chaos-slow-rate`, `--chaos-garbage-rate`, `--chaos-equivocal-rate`, `--chaos-slow-ms`,
//! `--chaos-seed` (fault injection, see [`crate::testing::chaos::Chaos`]) and
//! `--test-scorer mean-intensity` (serve the mean grey level instead of a model, to measure
//! the HTTP path alone).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::model::clip::ClipBackend;
use crate::model::vlm::VlmBackend;
use crate::protocol::{
    AnswerRule, AnswerWords, CandleClipSpec, CandleVlmSpec, ModelSpec, Prompts, Protocol, VlmScore,
};
use crate::serve::{ClipScorer, ServeConfig, Served, Server};
use crate::testing::chaos::Chaos;
use crate::testing::scorer::MeanIntensityScorer;

/// Arguments of `medgate serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate serve --model models/ptx-clip --prompts-positive 'a chest x-ray with a pneumothorax' \\
                --prompts-negative 'a normal chest x-ray'
  medgate serve --protocol protocols/ptx.yaml --port 8000 --threads 8
  medgate serve --protocol protocols/ptx.yaml --port 0      # prints the port it got
  medgate serve --protocol protocols/vlm-inprocess.yaml     # a generative VLM (candle-vlm)
  MEDGATE_KEY=$(openssl rand -hex 32) medgate serve --protocol protocols/ptx.yaml \\
                --host 0.0.0.0 --api-key-env MEDGATE_KEY     # other hosts: a key is required

The first line on stdout is `listening on http://HOST:PORT/v1`. Endpoints: GET /v1/models,
POST /v1/chat/completions (one base64 data-URL image; a CLIP model answers yes/no with
logprobs, a VLM its greedy answer with per-token logprobs; `stream: true` streams chunks).
Stops cleanly on Ctrl-C or SIGTERM.")]
pub struct ServeArgs {
    /// Checkpoint directory: a CLIP (config.json, model.safetensors, tokenizer.json) or a
    /// generative VLM in Hugging Face layout (config.json `model_type` `qwen3_vl`).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["protocol", "test_scorer"])]
    pub model: Option<PathBuf>,
    /// Take the model from a protocol's `candle-clip` (with `task.prompts`) or `candle-vlm`
    /// (with `task.question` and `task.answer`) model section.
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    pub protocol: Option<PathBuf>,
    /// A text describing a positive case (repeat for an ensemble).
    #[arg(long, value_name = "TEXT")]
    pub prompts_positive: Vec<String>,
    /// A text describing a negative case (repeat for an ensemble).
    #[arg(long, value_name = "TEXT")]
    pub prompts_negative: Vec<String>,
    /// Address to listen on; loopback by default (exposing a model is a decision).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port; 0 picks a free one.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Requests scored at once.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Connections served at once (one thread each); more are answered 503.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a request's head may take to arrive (then 408 and close).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub header_timeout: f64,
    /// Seconds a request's body may take to arrive after its head (then 408 and close).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub body_timeout: f64,
    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub idle_timeout: f64,
    /// Largest width x height an image may declare (checked before decoding; else 413).
    #[arg(long, default_value_t = crate::serve::DEFAULT_MAX_IMAGE_PIXELS, value_name = "N")]
    pub max_image_pixels: u64,
    /// Environment variable holding the API key clients must send as
    /// `Authorization: Bearer KEY` (required with a non-loopback --host).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Tokens a VLM generates when a request sets no max_tokens (--model DIR; a protocol
    /// names its own).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_tokens: u32,
    /// Device for --model: `cpu`, `cuda:N` or `auto` (a protocol names its own).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision for --model: `f32`, or `bf16` / `f16` (a VLM on any device, a CLIP on a GPU
    /// only; a protocol names its own).
    #[arg(
        long,
        default_value = "f32",
        value_name = "DTYPE",
        conflicts_with = "protocol"
    )]
    pub precision: String,
    /// Model ID served (default: the checkpoint directory's name).
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
    /// Fault injection: fraction of requests answered HTTP 500.
    #[arg(long, hide = true, default_value_t = 0.0)]
    pub chaos_fail_rate: f64,
    /// Fault injection: fraction of requests answered after --chaos-slow-ms.
    #[arg(long, hide = true, default_value_t = 0.0)]
    pub chaos_slow_rate: f64,
    /// Fault injection: fraction of requests answered with a body that is not JSON.
    #[arg(long, hide = true, default_value_t = 0.0)]
    pub chaos_garbage_rate: f64,
    /// Fault injection: fraction of requests answered with an equivocal text.
    #[arg(long, hide = true, default_value_t = 0.0)]
    pub chaos_equivocal_rate: f64,
    /// Fault injection: delay of a slow answer in milliseconds.
    #[arg(long, hide = true, default_value_t = 5000)]
    pub chaos_slow_ms: u64,
    /// Fault injection: seed of the per-request draws.
    #[arg(long, hide = true, default_value_t = 0)]
    pub chaos_seed: u64,
    /// Serve a built-in test scorer instead of a model (`mean-intensity`).
    #[arg(long, hide = true, value_name = "NAME")]
    pub test_scorer: Option<String>,
}

/// The model, the model ID it is served under, and its directory (kept out of replies).
fn resolve_model(args: &ServeArgs) -> Result<(Served, String, Option<PathBuf>)> {
    if let Some(name) = &args.test_scorer {
        return match name.as_str() {
            "mean-intensity" => Ok((
                Served::Scorer(Arc::new(MeanIntensityScorer)),
                args.model_name
                    .clone()
                    .unwrap_or_else(|| "mean-intensity".into()),
                None,
            )),
            other => Err(Error::input_hint(
                format!("unknown test scorer `{other}`"),
                "use mean-intensity",
            )),
        };
    }
    let name = |path: &std::path::Path| {
        args.model_name.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "medgate".into())
        })
    };
    if let Some(file) = &args.protocol {
        // The same loader as `check` and `run`: located diagnostics on a bad file.
        let loaded = crate::protocol::load(file)?;
        let dir = loaded.dir.clone();
        let protocol: Protocol = loaded.protocol;
        if let ModelSpec::CandleVlm(spec) = &protocol.model {
            let question = protocol.task.question.as_deref().unwrap_or("");
            let backend = VlmBackend::load(spec, question, &protocol.task.answer, &dir)?;
            let model_dir = crate::model::vlm::checkpoint_dir(spec, &dir);
            return Ok((
                Served::Generator(Arc::new(backend)),
                name(spec.path.as_path()),
                Some(model_dir),
            ));
        }
    } else if let Some(path) = &args.model
        && is_vlm_checkpoint(path)
    {
        let spec = CandleVlmSpec {
            path: path.clone(),
            sha256: None,
            device: args.device.clone(),
            precision: args.precision.clone(),
            batch_size: 1,
            kv_cache: true,
            max_tokens: args.max_tokens,
            score: VlmScore::Logprobs,
            answer_words: AnswerWords::default(),
        };
        let backend =
            VlmBackend::load(&spec, "", &AnswerRule::default(), std::path::Path::new("."))?;
        return Ok((
            Served::Generator(Arc::new(backend)),
            name(path.as_path()),
            Some(path.clone()),
        ));
    }
    let (scorer, id, dir) = clip_scorer(args)?;
    Ok((Served::Scorer(scorer), id, Some(dir)))
}

/// Whether `dir/config.json` names a generative VLM family (`model_type` in
/// [`crate::model::vlm::FAMILIES`]).
fn is_vlm_checkpoint(dir: &std::path::Path) -> bool {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("model_type")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        })
        .is_some_and(|t| crate::model::vlm::FAMILIES.contains(&t.as_str()))
}

/// Loads the `candle-clip` model from `--model` or `--protocol`; CLI prompts override the
/// protocol's.
fn clip_scorer(args: &ServeArgs) -> Result<(Arc<ClipScorer>, String, PathBuf)> {
    let (spec, protocol_prompts, dir) = match (&args.protocol, &args.model) {
        (Some(file), _) => {
            // The same loader as `check` and `run`: located diagnostics on a bad file.
            let loaded = crate::protocol::load(file)?;
            let dir = loaded.dir.clone();
            let protocol: Protocol = loaded.protocol;
            match protocol.model {
                ModelSpec::CandleClip(spec) => (spec, protocol.task.prompts, dir),
                other => {
                    return Err(Error::input_hint(
                        format!(
                            "{}: medgate serve hosts candle-clip and candle-vlm models; this protocol's backend is {}",
                            file.display(),
                            other.backend_name()
                        ),
                        "use a protocol whose model.backend is candle-clip or candle-vlm, or --model DIR",
                    ));
                }
            }
        }
        (None, Some(path)) => (
            CandleClipSpec {
                path: path.clone(),
                sha256: None,
                device: args.device.clone(),
                batch_size: 32,
                precision: args.precision.clone(),
            },
            None,
            PathBuf::from("."),
        ),
        (None, None) => {
            return Err(Error::input_hint(
                "no model to serve",
                "pass --model DIR or --protocol FILE",
            ));
        }
    };
    let prompts = if args.prompts_positive.is_empty() && args.prompts_negative.is_empty() {
        protocol_prompts.ok_or_else(|| {
            Error::input_hint(
                "no prompts: a contrastive model needs texts for both classes",
                "pass --prompts-positive TEXT and --prompts-negative TEXT (repeatable)",
            )
        })?
    } else {
        Prompts {
            positive: args.prompts_positive.clone(),
            negative: args.prompts_negative.clone(),
        }
    };
    let backend = ClipBackend::load(&spec, &prompts, &dir)?;
    let name = args.model_name.clone().unwrap_or_else(|| {
        spec.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "medgate".into())
    });
    let model_dir = crate::model::clip::checkpoint_dir(&spec, &dir);
    let scorer = ClipScorer::new(backend)?.with_max_pixels(args.max_image_pixels);
    Ok((Arc::new(scorer), name, model_dir))
}

fn seconds(flag: &str, v: f64) -> Result<Duration> {
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(Error::input_hint(
            format!("--{flag} {v}"),
            "give a number of seconds above 0 (at most a day)",
        ))
    }
}

/// The API key from the variable `--api-key-env` names.
fn api_key(args: &ServeArgs) -> Result<Option<String>> {
    let Some(var) = &args.api_key_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(k) if !k.trim().is_empty() => Ok(Some(k.trim().to_string())),
        _ => Err(Error::input_hint(
            format!("--api-key-env {var}: the variable is unset or empty"),
            format!("export {var}=\"$(openssl rand -hex 32)\" and give clients the same key"),
        )),
    }
}

/// Runs `medgate serve`.
pub fn run(args: ServeArgs, global: &GlobalArgs) -> Result<Outcome> {
    let api_key = api_key(&args)?;
    let timeouts = (
        seconds("header-timeout", args.header_timeout)?,
        seconds("body-timeout", args.body_timeout)?,
        seconds("idle-timeout", args.idle_timeout)?,
    );
    let (model, model_id, model_dir) = resolve_model(&args)?;
    let mut private_paths: Vec<PathBuf> = Vec::new();
    for p in [model_dir, args.model.clone(), args.protocol.clone()]
        .into_iter()
        .flatten()
    {
        if let Ok(c) = std::fs::canonicalize(&p) {
            private_paths.push(c);
        }
        private_paths.push(p);
    }
    let config = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        threads: args.threads,
        max_connections: args.max_connections,
        header_timeout: timeouts.0,
        body_timeout: timeouts.1,
        idle_timeout: timeouts.2,
        max_image_pixels: args.max_image_pixels,
        api_key,
        private_paths,
        model_id: model_id.clone(),
        chaos: Chaos {
            fail_rate: args.chaos_fail_rate,
            slow_rate: args.chaos_slow_rate,
            garbage_rate: args.chaos_garbage_rate,
            equivocal_rate: args.chaos_equivocal_rate,
            slow_ms: args.chaos_slow_ms,
            seed: args.chaos_seed,
        },
    };
    let server = Server::bind_model(config, model)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| Error::infra(format!("cannot install the SIGINT/SIGTERM handler: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", server.base_url())
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("<stdout>", e))?;
    drop(out);
    if !global.quiet {
        eprintln!(
            "serving model `{model_id}` with {} worker thread(s); Ctrl-C to stop",
            args.threads
        );
    }
    let stats = server.run(shutdown)?;
    if !global.quiet {
        eprintln!("stopped after {} request(s)", stats.requests);
    }
    Ok(Outcome::Pass)
}
