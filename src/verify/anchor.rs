//! Anchors: what the auditor holds, against which a bundle is checked.
//!
//! A bundle alone can only be *internally consistent*: whoever edits it can make every file
//! agree with every other (recompute the statistics, rewrite `SHA256SUMS`). What it cannot
//! forge is what the auditor holds independently:
//!
//! - **the protocol**: the auditor's own copy (`--protocol FILE`), or the git blob at the
//!   recorded commit in the auditor's clone (`--repo DIR`): the bundle's `protocol.yaml` must
//!   be byte-identical to it, and the recomputation uses the anchored text;
//! - **the golden set** (`--golden-set DIR`): its LOCK root must equal the recorded one, and the
//!   manifest, labels and attributes come from the set's own LOCKed manifest, never from a path
//!   the bundle names;
//! - **trusted keys** (`--trusted-key`): at least one valid signature by one of them;
//! - **the model** (`--rerun`): scores reproduced from the weights.
//!
//! [`Anchor`] records which were used and how each ended.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::trace::Evidence;

/// How one anchor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorState {
    /// Checked against what the auditor holds, and it holds.
    Anchored,
    /// Checked, and the bundle disagrees with the auditor's copy.
    Failed,
    /// The auditor gave nothing to check against.
    NotGiven,
}

/// One anchor: `golden_set`, `protocol`, `signature`, `ledger` or `model`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anchor {
    /// Which anchor.
    pub name: String,
    /// How it ended.
    pub state: AnchorState,
    /// What it was checked against, or why not.
    pub detail: String,
}

impl Anchor {
    /// A new anchor record.
    pub fn new(name: &str, state: AnchorState, detail: impl Into<String>) -> Anchor {
        Anchor {
            name: name.into(),
            state,
            detail: detail.into(),
        }
    }
}

/// The protocol text the auditor vouches for, and where its relative paths resolve.
#[derive(Debug, Clone)]
pub struct AnchoredProtocol {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// Where they came from (for messages).
    pub source: String,
    /// Directory the protocol's relative paths resolve against on the auditor's side.
    pub dir: PathBuf,
}

/// Reads the auditor's protocol copy.
pub fn from_file(path: &Path) -> Result<AnchoredProtocol> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(AnchoredProtocol {
        bytes,
        source: path.display().to_string(),
        dir,
    })
}

/// The path inside the tree that a recorded path (as given on the run's machine, relative to
/// some working directory or absolute) names: the longest trailing run of its components that
/// is a blob in `tree`.
fn find_in_tree<'r>(
    repo: &'r git2::Repository,
    tree: &git2::Tree<'r>,
    recorded: &str,
) -> Option<(String, git2::Oid)> {
    let parts: Vec<String> = Path::new(recorded)
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    for k in 0..parts.len() {
        let rel = parts[k..].join("/");
        if let Ok(entry) = tree.get_path(Path::new(&rel))
            && entry.kind() == Some(git2::ObjectType::Blob)
            && repo.find_blob(entry.id()).is_ok()
        {
            return Some((rel, entry.id()));
        }
    }
    None
}

/// The outcome of looking the recorded protocol up in the auditor's repository.
pub struct RepoLookup {
    /// The blob, when found.
    pub protocol: Option<AnchoredProtocol>,
    /// Problems (commit unknown, path absent, blob ID differs).
    pub problems: Vec<String>,
    /// What was found, for the anchor's detail.
    pub detail: String,
    /// Trace files: (recorded path, problem or None when its blob at the commit matches).
    pub trace_files: Vec<(String, Option<String>)>,
}

/// Looks up the protocol (and the requirement and risk files) at the commit recorded in
/// `evidence.provenance.git` in the auditor's clone `repo_dir`. With `expected` (a revision:
/// the approved commit, a tag, a branch), the recorded commit must be that one: otherwise a
/// bundle could name an older commit whose protocol was laxer.
pub(crate) fn from_repo(
    repo_dir: &Path,
    evidence: &Evidence,
    expected: Option<&str>,
) -> Result<RepoLookup> {
    let repo = git2::Repository::open(repo_dir).map_err(|e| {
        Error::input_hint(
            format!(
                "--repo {}: not a git repository: {}",
                repo_dir.display(),
                e.message()
            ),
            "pass the directory of your clone of the repository the protocol lives in",
        )
    })?;
    let mut out = RepoLookup {
        protocol: None,
        problems: Vec::new(),
        detail: String::new(),
        trace_files: Vec::new(),
    };
    let Some(git) = &evidence.provenance.git else {
        out.problems.push(
            "the evidence records no git commit (the protocol was not in a repository)".into(),
        );
        return Ok(out);
    };
    let commit = match git2::Oid::from_str(&git.commit).and_then(|o| repo.find_commit(o)) {
        Ok(c) => c,
        Err(_) => {
            out.problems.push(format!(
                "commit {} recorded in provenance.git is not in {}",
                crate::fsx::printable(&git.commit),
                repo_dir.display()
            ));
            return Ok(out);
        }
    };
    if let Some(rev) = expected {
        match repo.revparse_single(rev).and_then(|o| o.peel_to_commit()) {
            Ok(c) if c.id() == commit.id() => {}
            Ok(c) => out.problems.push(format!(
                "the bundle was run at commit {}, not at {rev} ({})",
                crate::hash::short(&git.commit),
                crate::fsx::prefix(&c.id().to_string(), 12)
            )),
            Err(e) => {
                return Err(Error::input(format!(
                    "--commit {rev}: not a commit in {}: {}",
                    repo_dir.display(),
                    e.message()
                )));
            }
        }
    }
    let tree = commit
        .tree()
        .map_err(|e| Error::infra(format!("{}: {}", repo_dir.display(), e.message())))?;
    let recorded = &evidence.protocol_file.path;
    match find_in_tree(&repo, &tree, recorded) {
        None => out.problems.push(format!(
            "the recorded protocol path {} is not a file at commit {}",
            crate::fsx::printable(recorded),
            crate::hash::short(&git.commit)
        )),
        Some((rel, oid)) => {
            if let Some(b) = &evidence.protocol_file.git_blob
                && b != &oid.to_string()
            {
                out.problems.push(format!(
                    "protocol_file.git_blob {} is not the blob of {rel} at commit {} ({})",
                    crate::fsx::printable(b),
                    crate::hash::short(&git.commit),
                    oid
                ));
            }
            let blob = repo
                .find_blob(oid)
                .map_err(|e| Error::infra(format!("{rel}: {}", e.message())))?;
            let workdir = repo.workdir().unwrap_or(repo_dir).to_path_buf();
            let dir = Path::new(&rel)
                .parent()
                .map(|p| workdir.join(p))
                .unwrap_or(workdir);
            out.detail = format!(
                "{rel} at commit {} in {}",
                crate::hash::short(&git.commit),
                repo_dir.display()
            );
            out.protocol = Some(AnchoredProtocol {
                bytes: blob.content().to_vec(),
                source: out.detail.clone(),
                dir,
            });
        }
    }
    for tf in &evidence.provenance.trace_files {
        let problem = match find_in_tree(&repo, &tree, &tf.path) {
            None => Some(format!(
                "{} is not a file at the recorded commit",
                crate::fsx::printable(&tf.path)
            )),
            Some((rel, oid)) => {
                let blob = repo
                    .find_blob(oid)
                    .map_err(|e| Error::infra(format!("{rel}: {}", e.message())))?;
                let sha = crate::hash::sha256_hex(blob.content());
                (sha != tf.sha256).then(|| {
                    format!(
                        "{rel} at the recorded commit hashes to {}, the evidence records {}",
                        crate::hash::short(&sha),
                        crate::hash::short(&tf.sha256)
                    )
                })
            }
        };
        out.trace_files.push((tf.path.clone(), problem));
    }
    Ok(out)
}
