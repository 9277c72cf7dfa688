//! Path safety for every command that reads or writes inside a directory it was given (a
//! bundle, a template directory): a shared module, used by `run`, `report`, `sign` and
//! `verify`.
//!
//! A bundle is hostile input (see `docs/threat-model.md`): whoever hands it over may have
//! planted symlinks (`report.md -> ~/.bashrc`, `plots -> /etc`), `..` entries in
//! `SHA256SUMS`, or a symlink loop. The rules here:
//!
//! - A relative path inside a root has only normal components ([`check_rel`]): no `..`, no
//!   root, no prefix, no empty or `.` component. Anything else is refused, never normalised.
//! - No component under the root may be a symlink ([`safe_join`]), for reading or writing; the
//!   root itself is what the user named and may be a link.
//! - Reads open the file and check that what was opened is the regular file that was
//!   `lstat`ed (same device and inode), so a symlink swapped in between is not followed.
//! - Writes go to a fresh, exclusively created temporary file in the same directory, then
//!   `rename` over the target: a symlink at the target is replaced, never written through.
//! - Directory walks never follow symlinks, so a loop is reported, not walked.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Why a relative path is not acceptable inside a root, or `None` when it is.
pub fn check_rel(rel: &Path) -> Option<String> {
    if rel.as_os_str().is_empty() {
        return Some("empty path".into());
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) => {}
            Component::ParentDir => return Some("contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Some("is absolute".into()),
            Component::CurDir => return Some("contains `.`".into()),
        }
    }
    // `Path::components` drops `.` and doubled separators silently; check the text too.
    let s = rel.to_string_lossy();
    if s.split('/').any(|p| p.is_empty() || p == ".") {
        return Some("has an empty or `.` component".into());
    }
    if s.chars().any(|c| c.is_control() || c == '\\') {
        return Some("contains a control character or a backslash".into());
    }
    None
}

/// Whether `p` itself (not what it points to) is a symlink.
pub fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// `root/rel` after checking that `rel` has only normal components and that no existing
/// component under `root` is a symlink. Components that do not exist yet are fine.
pub fn safe_join(root: &Path, rel: &Path) -> Result<PathBuf> {
    if let Some(why) = check_rel(rel) {
        return Err(Error::input(format!(
            "{}: refusing the path `{}` inside {}: it {why}",
            root.join(rel).display(),
            rel.display(),
            root.display()
        )));
    }
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::input_hint(
                    format!(
                        "{}: is a symlink; medgate does not follow links inside {}",
                        p.display(),
                        root.display()
                    ),
                    "replace the link with the real file, or use a fresh directory",
                ));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(root.join(rel))
}

/// Opens `root/rel` for reading: a regular file, reached without following any symlink.
pub fn open_inside(root: &Path, rel: &Path) -> Result<File> {
    let p = safe_join(root, rel)?;
    open_regular(&p)
}

/// Opens `p` for reading only if `p` itself is a regular file (not a symlink), and checks that
/// the opened file is the one that was examined.
pub fn open_regular(p: &Path) -> Result<File> {
    let before = std::fs::symlink_metadata(p).map_err(|e| Error::io(p, e))?;
    if before.file_type().is_symlink() {
        return Err(Error::input(format!(
            "{}: is a symlink; medgate does not follow it",
            p.display()
        )));
    }
    if !before.is_file() {
        return Err(Error::input(format!("{}: not a regular file", p.display())));
    }
    let f = File::open(p).map_err(|e| Error::io(p, e))?;
    let after = f.metadata().map_err(|e| Error::io(p, e))?;
    if !same_file(&before, &after) {
        return Err(Error::input(format!(
            "{}: changed while being opened; refusing it",
            p.display()
        )));
    }
    Ok(f)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && b.is_file()
}

/// Reads `root/rel` (see [`open_inside`]).
pub fn read_inside(root: &Path, rel: &Path) -> Result<Vec<u8>> {
    let p = root.join(rel);
    let mut f = open_inside(root, rel)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| Error::io(&p, e))?;
    Ok(buf)
}

/// Reads `root/rel` as UTF-8 text (see [`open_inside`]).
pub fn read_inside_to_string(root: &Path, rel: &Path) -> Result<String> {
    let bytes = read_inside(root, rel)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::input(format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            root.join(rel).display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Creates the directory `root/rel` and every missing parent under `root`, refusing any
/// symlink on the way.
pub fn create_dir_inside(root: &Path, rel: &Path) -> Result<PathBuf> {
    safe_join(root, rel)?;
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::input(format!(
                    "{}: exists and is not a directory",
                    p.display()
                )));
            }
            Err(_) => match std::fs::create_dir(&p) {
                Ok(()) => {}
                // Another writer created it meanwhile: accept only a real directory.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                        return Err(Error::io(&p, e));
                    }
                }
                Err(e) => return Err(Error::io(&p, e)),
            },
        }
    }
    Ok(p)
}

/// A fresh, unpredictable name for a temporary file beside `target`.
fn temp_name(target: &Path) -> PathBuf {
    use rand::Rng;
    let tag: u64 = rand::rng().random();
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{tag:016x}.tmp"))
}

/// Creates `p` exclusively (never an existing file or a symlink) for writing.
pub fn create_new(p: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .map_err(|e| Error::io(p, e))
}

/// Writes `bytes` to `root/rel`: parents created under `root` without following symlinks,
/// the bytes written to a fresh exclusive temporary file, which is then renamed over the
/// target (a symlink there is replaced, never written through). Returns the path written.
pub fn write_inside(root: &Path, rel: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let target = safe_join(root, rel)?;
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_inside(root, parent)?;
    }
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        return Err(Error::input(format!(
            "{}: is a directory, expected a file",
            target.display()
        )));
    }
    let tmp = temp_name(&target);
    let result = (|| {
        let mut f = create_new(&tmp)?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_data().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

/// One entry found by [`walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file (relative path with `/` separators).
    File(String),
    /// A symlink (never followed).
    Symlink(String),
    /// Something else: a FIFO, socket or device.
    Other(String),
}

/// Every file under `root`, recursively, without following symlinks (a symlink, to a file or
/// a directory, is reported as [`Entry::Symlink`]; a loop is therefore never walked). Paths are
/// relative with `/` separators, sorted; `skip` names top-level entries left out.
pub fn walk(root: &Path, skip: &[&str]) -> Result<Vec<Entry>> {
    fn go(
        root: &Path,
        dir: &Path,
        skip: &[&str],
        depth: usize,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        if depth > 64 {
            return Err(Error::input(format!(
                "{}: directories nested more than 64 deep",
                dir.display()
            )));
        }
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .map_err(|_| Error::Internal("path outside the walked root".into()))?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if depth == 0 && skip.contains(&rel.as_str()) {
                continue;
            }
            // DirEntry::file_type does not follow symlinks.
            let t = e.file_type().map_err(|er| Error::io(&p, er))?;
            if t.is_symlink() {
                out.push(Entry::Symlink(rel));
            } else if t.is_dir() {
                go(root, &p, skip, depth + 1, out)?;
            } else if t.is_file() {
                out.push(Entry::File(rel));
            } else {
                out.push(Entry::Other(rel));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(root, root, skip, 0, &mut out)?;
    out.sort_by(|a, b| entry_path(a).cmp(entry_path(b)));
    Ok(out)
}

/// The relative path of an [`Entry`].
pub fn entry_path(e: &Entry) -> &str {
    match e {
        Entry::File(p) | Entry::Symlink(p) | Entry::Other(p) => p,
    }
}

/// Whether `inner` (canonicalised) lies inside `outer` (canonicalised). False when either
/// cannot be resolved.
pub fn is_inside(inner: &Path, outer: &Path) -> bool {
    match (std::fs::canonicalize(inner), std::fs::canonicalize(outer)) {
        (Ok(i), Ok(o)) => i.starts_with(o),
        _ => false,
    }
}

/// Text for a terminal: control characters (ANSI escapes, newlines, bidi overrides) shown
/// as `\u{..}` escapes, so a name in a signature cannot rewrite what the reader sees.
pub fn printable(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if c.is_control() || bidi {
            o.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            o.push(c);
        }
    }
    o
}

/// The first `n` characters of `s` (never splits a character: `&s[..n]` on user text panics
/// on a multi-byte character).
pub fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_with_dotdot_or_root_are_refused() {
        for bad in [
            "../x",
            "a/../b",
            "/etc/passwd",
            "",
            "a//b",
            "./a",
            "a/./b",
            "a\\b",
        ] {
            assert!(check_rel(Path::new(bad)).is_some(), "{bad}");
        }
        for good in ["a", "plots/roc.svg", "signatures/001-x.json", "a..b"] {
            assert!(check_rel(Path::new(good)).is_none(), "{good}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn writes_replace_a_symlink_instead_of_following_it() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside.txt");
        std::fs::write(&outside, "keep").unwrap();
        let root = d.path().join("bundle");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("report.md")).unwrap();
        write_inside(&root, Path::new("report.md"), b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert!(!is_symlink(&root.join("report.md")));
        // A symlinked directory on the way is refused.
        std::os::unix::fs::symlink(d.path(), root.join("plots")).unwrap();
        assert!(write_inside(&root, Path::new("plots/roc.svg"), b"x").is_err());
        assert!(!d.path().join("roc.svg").exists());
        // Reads refuse symlinks too.
        std::os::unix::fs::symlink(&outside, root.join("evidence.json")).unwrap();
        assert!(read_inside(&root, Path::new("evidence.json")).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_listed_not_walked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::os::unix::fs::symlink(d.path(), d.path().join("a/loop")).unwrap();
        std::fs::write(d.path().join("a/f"), "x").unwrap();
        let e = walk(d.path(), &[]).unwrap();
        assert_eq!(
            e,
            vec![Entry::File("a/f".into()), Entry::Symlink("a/loop".into())]
        );
    }

    #[test]
    fn printable_escapes_controls_and_prefix_respects_characters() {
        assert_eq!(printable("Jane\x1b[2J\nDoe"), "Jane\\u{1b}[2J\\u{a}Doe");
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(prefix("ééééé", 2), "éé");
        assert_eq!(prefix("ab", 12), "ab");
    }
}
