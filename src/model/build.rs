//! From a protocol's `model` section to a backend: the one place that builds it, so that
//! `medgate run` and `medgate verify --rerun` construct the model in exactly the same way.

use std::path::Path;

use super::Backend;
use crate::error::{Error, Result};
use crate::protocol::{ModelSpec, Protocol};
use crate::world::World;

/// Builds the backend `p` names. `protocol_dir` is where the protocol's relative paths
/// resolve; `case_ids` are the golden set's cases in manifest order (the replay backend checks
/// that its file covers exactly these).
pub fn build_backend(
    p: &Protocol,
    protocol_dir: &Path,
    case_ids: &[String],
    world: &dyn World,
) -> Result<Box<dyn Backend>> {
    let decode = crate::golden::image::DecodeOptions::from_spec(&p.golden_set);
    let backend: Box<dyn Backend> = match &p.model {
        ModelSpec::CandleClip(spec) => {
            let prompts = p
                .task
                .prompts
                .as_ref()
                .ok_or_else(|| Error::input("candle-clip needs task.prompts"))?;
            Box::new(
                super::clip::ClipBackend::load(spec, prompts, protocol_dir)?.with_decode(decode),
            )
        }
        ModelSpec::Openai(spec) => {
            Box::new(super::openai::OpenaiBackend::new(spec, &p.task, world)?.with_decode(decode))
        }
        ModelSpec::CandleVlm(spec) => {
            let question = p
                .task
                .question
                .as_deref()
                .ok_or_else(|| Error::input("candle-vlm needs task.question"))?;
            Box::new(
                super::vlm::VlmBackend::load(spec, question, &p.task.answer, protocol_dir)?
                    .with_decode(decode),
            )
        }
        ModelSpec::Replay(spec) => Box::new(super::replay::ReplayBackend::load(
            spec,
            protocol_dir,
            case_ids,
        )?),
    };
    // Every backend checks its own weights against the pin as it loads them; this is the
    // contract's last word: the hash recorded as evidence is the one the protocol pinned.
    if let (Some(pinned), Some(actual)) = (
        p.model.pinned_sha256(),
        backend.info().model_sha256.as_deref(),
    ) && !pinned.trim().eq_ignore_ascii_case(actual.trim())
    {
        return Err(Error::input_hint(
            format!("model hash mismatch: protocol pins {pinned}, the weights hash to {actual}"),
            "the weights changed since the protocol was written: restore them, or re-approve the protocol with the new hash",
        ));
    }
    Ok(backend)
}
