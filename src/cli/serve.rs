//! `medgate serve`: host a model behind the OpenAI-compatible chat-completions API.
//!
//! The command resolves its arguments into a [`crate::serve::ServeConfig`] and a
//! scorer, binds, prints the bound address as the first line of stdout (so a script or a
//! test that asked for `--port 0` can read the real port), and serves until SIGINT or
//! SIGTERM. The HTTP logic lives in [`crate::serve`].
//!
//! Hidden flags, for tests, drills and benchmarks only: `--chaos-fail-rate`,
//! `--chaos-slow-rate`, `--chaos-garbage-rate`, `--chaos-equivocal-rate`, `--chaos-slow-ms`,
//! `--chaos-seed` (fault injection, see [`crate::serve::Chaos`]) and
//! `--test-scorer mean-intensity` (serve the mean grey level instead of a model, to measure
//! the HTTP path alone).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::model::clip::ClipBackend;
use crate::protocol::{CandleClipSpec, ModelSpec, Prompts, Protocol};
use crate::serve::{Chaos, ClipScorer, MeanIntensityScorer, Scorer, ServeConfig, Server};

/// Arguments of `medgate serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate serve --model models/ptx-clip --prompts-positive 'a chest x-ray with a pneumothorax' \\
                --prompts-negative 'a normal chest x-ray'
  medgate serve --protocol protocols/ptx.yaml --port 8000 --threads 8
  medgate serve --protocol protocols/ptx.yaml --port 0      # prints the port it got

The first line on stdout is `listening on http://HOST:PORT/v1`. Endpoints: GET /v1/models,
POST /v1/chat/completions (one base64 data-URL image; answers yes/no with logprobs).
Stops cleanly on Ctrl-C or SIGTERM.")]
pub struct ServeArgs {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["protocol", "test_scorer"])]
    pub model: Option<PathBuf>,
    /// Take the model and prompts from a protocol's `candle-clip` model and `task.prompts`.
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
    /// Worker threads (requests scored at once).
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Device for --model: `cpu`, `cuda:N` or `auto` (a protocol names its own).
    #[arg(long, default_value = "cpu")]
    pub device: String,
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

/// The scorer and the model ID it is served under.
fn resolve_scorer(args: &ServeArgs) -> Result<(Arc<dyn Scorer>, String)> {
    if let Some(name) = &args.test_scorer {
        return match name.as_str() {
            "mean-intensity" => Ok((
                Arc::new(MeanIntensityScorer),
                args.model_name
                    .clone()
                    .unwrap_or_else(|| "mean-intensity".into()),
            )),
            other => Err(Error::input_hint(
                format!("unknown test scorer `{other}`"),
                "use mean-intensity",
            )),
        };
    }
    clip_scorer(args)
}

/// Loads the `candle-clip` model from `--model` or `--protocol`; CLI prompts override the
/// protocol's.
fn clip_scorer(args: &ServeArgs) -> Result<(Arc<dyn Scorer>, String)> {
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
                            "{}: medgate serve hosts candle-clip models; this protocol's backend is {}",
                            file.display(),
                            other.backend_name()
                        ),
                        "use a protocol whose model.backend is candle-clip, or --model DIR",
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
                precision: "f32".into(),
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
    Ok((Arc::new(ClipScorer::new(backend)?), name))
}

/// Runs `medgate serve`.
pub fn run(args: ServeArgs, global: &GlobalArgs) -> Result<Outcome> {
    let (scorer, model_id) = resolve_scorer(&args)?;
    let config = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        threads: args.threads,
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
    let server = Server::bind(config, scorer)?;
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
