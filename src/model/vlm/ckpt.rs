//! Reading a Hugging Face model directory: which weight files make up the model, their hash,
//! the tensors they hold, the chat template and small JSON side files.
//!
//! # The weights hash
//! The shards are the files named in `model.safetensors.index.json`'s `weight_map`
//! (deduplicated), or `model.safetensors` alone when there is no index. They are sorted by
//! file name (byte order) and the pinned hash is
//!
//! `SHA-256( for each shard: lowercase-hex SHA-256 of the file, two spaces, file name, "\n" )`,
//!
//! i.e. the SHA-256 of `sha256sum`'s output over the sorted shards. An auditor recomputes it
//! in the model directory with
//! `LC_ALL=C sha256sum $(LC_ALL=C ls model*.safetensors) | sha256sum`
//! (when those are exactly the shards the index names). Each shard's bytes are hashed and then
//! parsed from the same buffer: the bytes hashed are the bytes loaded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// The index file of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The weights of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

/// One weight file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// File name inside the model directory.
    pub name: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// Every tensor of the checkpoint, with the file each came from.
pub struct Weights {
    /// Tensor name -> tensor (as stored; converted to the run's precision when the model is
    /// built).
    pub tensors: HashMap<String, Tensor>,
    /// Tensor name -> shard file name.
    pub origin: BTreeMap<String, String>,
    /// The shards, sorted by name.
    pub shards: Vec<Shard>,
    /// The pinned hash (see the module docs).
    pub sha256: String,
}

fn plain_name(dir: &Path, index: &Path, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.contains('/')
        && !name.contains('\\')
        && name != "."
        && name != ".."
        && name.ends_with(".safetensors");
    if ok {
        Ok(())
    } else {
        Err(Error::input_hint(
            format!(
                "{}: weight_map names `{name}`, which is not a .safetensors file name inside {}",
                index.display(),
                dir.display()
            ),
            "shards must sit beside the index (no directories, no `..`)",
        ))
    }
}

/// Tensor name -> shard file name, as an index's `weight_map` gives it.
pub type WeightMap = BTreeMap<String, String>;

/// The shard names (sorted) and, for an index, tensor -> shard.
pub fn shard_plan(dir: &Path) -> Result<(Vec<String>, Option<WeightMap>)> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::input(format!(
                "{}:{}:{}: not valid JSON: {e}",
                index.display(),
                e.line(),
                e.column()
            ))
        })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| {
                Error::input(format!("{}: has no `weight_map` object", index.display()))
            })?;
        let mut wm = BTreeMap::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| {
                Error::input(format!(
                    "{}: weight_map entry `{tensor}` is not a file name",
                    index.display()
                ))
            })?;
            plain_name(dir, &index, file)?;
            wm.insert(tensor.clone(), file.to_string());
        }
        if wm.is_empty() {
            return Err(Error::input(format!(
                "{}: weight_map is empty",
                index.display()
            )));
        }
        let names: BTreeSet<String> = wm.values().cloned().collect();
        for n in &names {
            if !dir.join(n).is_file() {
                let t = wm
                    .iter()
                    .find(|(_, f)| *f == n)
                    .map(|(t, _)| t.as_str())
                    .unwrap_or("");
                return Err(Error::input_hint(
                    format!(
                        "{}: names shard `{n}` (e.g. for tensor `{t}`), which is missing from {}",
                        index.display(),
                        dir.display()
                    ),
                    "the download is incomplete: fetch every shard the index lists",
                ));
            }
        }
        Ok((names.into_iter().collect(), Some(wm)))
    } else if dir.join(SINGLE_FILE).is_file() {
        Ok((vec![SINGLE_FILE.to_string()], None))
    } else {
        Err(Error::input_hint(
            format!(
                "{}: no weights: neither {INDEX_FILE} nor {SINGLE_FILE}",
                dir.display()
            ),
            "point model.path at a Hugging Face model directory with its safetensors files",
        ))
    }
}

/// The manifest hash of `shards` (see the module docs).
pub fn manifest_sha256(shards: &[Shard]) -> String {
    let mut m = String::new();
    for s in shards {
        m.push_str(&format!("{}  {}\n", s.sha256, s.name));
    }
    crate::hash::sha256_hex(m.as_bytes())
}

/// Hashes and reads every shard onto `device`. Every tensor an index names must be in the
/// shard it names; a tensor in two shards is an error.
pub fn load_weights(dir: &Path, device: &Device) -> Result<Weights> {
    let (names, wm) = shard_plan(dir)?;
    let mut tensors = HashMap::new();
    let mut origin = BTreeMap::new();
    let mut shards = Vec::new();
    for name in &names {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        shards.push(Shard {
            name: name.clone(),
            sha256: crate::hash::sha256_hex(&bytes),
            bytes: bytes.len() as u64,
        });
        let ts = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
            Error::input_hint(
                format!("{}: not a readable safetensors file: {e}", path.display()),
                "the file is truncated or corrupt: download it again",
            )
        })?;
        for (t, v) in ts {
            if let Some(prev) = origin.get(&t) {
                return Err(Error::input(format!(
                    "{}: tensor `{t}` is also in {prev}",
                    path.display()
                )));
            }
            origin.insert(t.clone(), name.clone());
            tensors.insert(t, v);
        }
    }
    if let Some(wm) = &wm {
        for (t, f) in wm {
            match origin.get(t) {
                Some(g) if g == f => {}
                Some(g) => {
                    return Err(Error::input(format!(
                        "{}: the index puts tensor `{t}` in {f}, but it is in {g}",
                        dir.join(INDEX_FILE).display()
                    )));
                }
                None => {
                    return Err(Error::input_hint(
                        format!(
                            "{}: has no tensor `{t}` (the index says it is there)",
                            dir.join(f).display()
                        ),
                        "the shard does not belong to this index: download the checkpoint again",
                    ));
                }
            }
        }
    }
    let sha256 = manifest_sha256(&shards);
    Ok(Weights {
        tensors,
        origin,
        shards,
        sha256,
    })
}

/// Names the file a candle error is about: candle names the tensor, we add its shard.
pub fn locate(err: &candle_core::Error, origin: &BTreeMap<String, String>, dir: &Path) -> String {
    let msg = err.to_string();
    let hit = origin
        .iter()
        .filter(|(t, _)| msg.contains(t.as_str()))
        .max_by_key(|(t, _)| t.len());
    match hit {
        Some((t, f)) => format!("{}: tensor `{t}`: {msg}", dir.join(f).display()),
        None => format!("{}: {msg}", dir.display()),
    }
}

/// Reads and parses a JSON file, errors naming file, line and column.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::input(format!(
            "{}:{}:{}: not valid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

/// The chat template and the file it came from: `chat_template.jinja`, then
/// `chat_template.json` (`{"chat_template": ...}`), then `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of `{name, template}` where `default` is taken).
pub fn chat_template(dir: &Path) -> Result<(String, PathBuf)> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let t = std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?;
        return Ok((t, jinja));
    }
    for f in ["chat_template.json", "tokenizer_config.json"] {
        let p = dir.join(f);
        if !p.is_file() {
            continue;
        }
        let v = read_json(&p)?;
        match v.get("chat_template") {
            Some(serde_json::Value::String(s)) => return Ok((s.clone(), p)),
            Some(serde_json::Value::Array(list)) => {
                let pick = list
                    .iter()
                    .find(|e| e.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|e| e.get("template"))
                    .and_then(|t| t.as_str());
                if let Some(t) = pick {
                    return Ok((t.to_string(), p));
                }
                return Err(Error::input(format!(
                    "{}: chat_template is a list without a `default` entry",
                    p.display()
                )));
            }
            _ => {}
        }
    }
    Err(Error::input_hint(
        format!("{}: no chat template", dir.display()),
        "expected chat_template.jinja, chat_template.json or a chat_template in tokenizer_config.json",
    ))
}
