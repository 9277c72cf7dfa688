//! Configuration identification (IEC 62304 8.1): the git state of the repository holding the
//! protocol, the blob IDs of the files that define the test, and medgate's own build.

use std::path::Path;

use super::evidence::{FileIdentity, GitState};
use crate::error::Result;

/// The commit medgate was built from (set by `build.rs`), or `unknown`.
pub const BUILD_COMMIT: &str = match option_env!("MEDGATE_BUILD_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// Git state of the repository containing `path`, or `None` when it is not in one.
pub fn git_state(path: &Path) -> Option<GitState> {
    let repo = git2::Repository::discover(path).ok()?;
    let commit = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| c.id().to_string())
        .unwrap_or_else(|| "none (no commits)".into());
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let mut dirty_files: Vec<String> = repo
        .statuses(Some(&mut opts))
        .map(|st| {
            st.iter()
                .filter(|e| {
                    e.status() != git2::Status::CURRENT
                        && !e.status().contains(git2::Status::IGNORED)
                })
                .filter_map(|e| e.path().ok().map(|p| p.to_string()))
                .collect()
        })
        .unwrap_or_default();
    dirty_files.sort();
    Some(GitState {
        commit,
        dirty: !dirty_files.is_empty(),
        dirty_files,
    })
}

/// Identifies a file: path as given, SHA-256 of its bytes, and its git blob ID at HEAD when
/// tracked (so an auditor can `git cat-file -p <blob>` to see exactly what was used).
pub(crate) fn file_identity(path: &Path) -> Result<FileIdentity> {
    let (sha256, _) = crate::hash::sha256_file(path)?;
    Ok(FileIdentity {
        path: path.display().to_string(),
        sha256,
        git_blob: blob_at_head(path),
    })
}

fn blob_at_head(path: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(path).ok()?;
    let repo = git2::Repository::discover(abs.parent()?).ok()?;
    let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
    let rel = abs.strip_prefix(&workdir).ok()?;
    let tree = repo.head().ok()?.peel_to_tree().ok()?;
    let entry = tree.get_path(rel).ok()?;
    Some(entry.id().to_string())
}

/// The release gate on configuration identification: a `--release` run (`release`) needs
/// the protocol in a git repository with a clean tree and a pinned model hash, or it is
/// refused before anything runs. Returns the warnings a non-release run records instead (a
/// dirty tree: not a release record).
pub fn release_gate(
    release: bool,
    git: Option<&GitState>,
    protocol: &crate::protocol::Protocol,
) -> Result<Vec<String>> {
    use crate::error::Error;
    if release {
        match git {
            None => {
                return Err(Error::input_hint(
                    "release run refused: the protocol is not in a git repository",
                    "commit the protocol, requirements and golden-set lock to version control",
                ));
            }
            Some(g) if g.dirty => {
                return Err(Error::input_hint(
                    format!(
                        "release run refused: the working tree is dirty ({})",
                        g.dirty_files.join(", ")
                    ),
                    "commit or stash every change first; a release record must name an exact commit",
                ));
            }
            _ => {}
        }
        if protocol.model.pinned_sha256().is_none() {
            return Err(Error::input_hint(
                "release run refused: the protocol does not pin the model's sha256",
                "add `sha256:` under `model` (medgate prints the weights hash in every run's evidence)",
            ));
        }
    }
    Ok(match git {
        Some(g) if g.dirty => vec![format!(
            "working tree is dirty ({} file(s)): not a release record",
            g.dirty_files.len()
        )],
        _ => Vec::new(),
    })
}

/// Identifies a file from bytes already read (so the hash is of exactly what was parsed):
/// path as given, SHA-256 of `bytes`, and its git blob ID at HEAD when tracked.
pub(crate) fn identity_of_bytes(path: &Path, bytes: &[u8]) -> FileIdentity {
    FileIdentity {
        path: path.display().to_string(),
        sha256: crate::hash::sha256_hex(bytes),
        git_blob: blob_at_head(path),
    }
}
