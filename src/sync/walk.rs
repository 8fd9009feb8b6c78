//! The source walk and the filename check: one pass over the tree, in S3's key order, feeds
//! the sync's merge with the listing (through a spill file: see [`crate::sync`]).
//!
//! Regular files become objects; symlinks are followed (as `aws s3 sync` does) with loop
//! detection; broken links, FIFOs, sockets and devices are skipped with a warning. A path
//! whose name is not UTF-8 (S3 keys are UTF-8), or whose key would exceed S3's limit, is a
//! *name problem*: the run refuses to start unless `-w` says to skip those files.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::bucket_url::MAX_KEY_BYTES;
use crate::display::{display_bytes, display_path};
use crate::run::spill::{self, Record};

/// A local regular file, by its path relative to the source (components joined with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub rel: Box<str>,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (exact, any year a file
    /// system keeps).
    pub mtime_ns: i128,
}

/// A directory below the source (not the source itself), by its relative name: recorded in
/// the bucket as a directory marker (see [`crate::sync::plan::is_marker`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDir {
    pub rel: Box<str>,
    pub mtime_ns: i128,
    /// The last change of its inode: chmod and chown change it, not the mtime.
    pub ctime_ns: i128,
    /// `st_mode` (type and permission bits), owner and group.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Why a path cannot become an object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// Some component of the name is not valid UTF-8; the path is shown with bytes escaped.
    NotUtf8(String),
    /// The key would be longer than S3 allows.
    KeyTooLong { rel: String, key_bytes: usize },
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameProblem::NotUtf8(p) => write!(f, "file name is not valid UTF-8: {p}"),
            NameProblem::KeyTooLong { rel, key_bytes } => write!(
                f,
                "object key would be {key_bytes} bytes, over S3's limit of {MAX_KEY_BYTES}: {rel}"
            ),
        }
    }
}

/// Something in the tree that is not uploaded and does not fail the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub why: &'static str,
}

/// A failure to read part of the tree: the run cannot know what is there, so it fails
/// and deletes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkFailure {
    pub path: String,
    pub error: String,
}

/// The result of walking the source.
#[derive(Debug, Default)]
pub struct SourceTree {
    pub root: PathBuf,
    pub files: Vec<LocalFile>,
    /// Directories below the root, parents before their children.
    pub dirs: Vec<LocalDir>,
    pub problems: Vec<NameProblem>,
    pub skipped: Vec<Skipped>,
    pub failures: Vec<WalkFailure>,
}

impl SourceTree {
    /// The on-disk path of a file of this tree.
    pub fn path_of(&self, file: &LocalFile) -> PathBuf {
        self.root.join(&*file.rel)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The source directory cannot be walked at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source directory {0} does not exist")]
    Missing(String),
    #[error("source {0} is not a directory")]
    NotADirectory(String),
    #[error("source directory {path} cannot be read: {error}")]
    Unreadable { path: String, error: String },
}

/// Modification time in nanoseconds since the epoch, exactly.
pub fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    crate::metadata::from_parts(meta.mtime(), meta.mtime_nsec())
}

/// One version of a file: what must stay the same while it is read for its copy to be
/// the file's content at one moment. A file rewritten in place changes mtime and ctime; a
/// file replaced by another (rename, new file) changes inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    /// `st_mode` (file type and permission bits), owner and group: recorded with the object
    /// so that a restore can give them back.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl FileVersion {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            ctime_ns: crate::metadata::from_parts(meta.ctime(), meta.ctime_nsec()),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// One entry of the walk, yielded in S3's key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// A regular file; `own` when it is one of the run's own files (its logfile, summary
    /// file or lock file), which change as it runs.
    File { file: LocalFile, own: bool },
    /// A directory below the source: its key is its name followed by `/`.
    Dir(LocalDir),
}

impl Local {
    /// The key of the entry relative to the prefix: a directory's ends in `/`.
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Local::File { file, .. } => std::borrow::Cow::Borrowed(&file.rel),
            Local::Dir(d) => std::borrow::Cow::Owned(format!("{}/", d.rel)),
        }
    }
}

impl Record for Local {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Local::File { file, own } => {
                out.push(if *own { 1 } else { 0 });
                spill::put_str(out, &file.rel);
                spill::put_u64(out, file.size);
                spill::put_i128(out, file.mtime_ns);
            }
            Local::Dir(d) => {
                out.push(2);
                spill::put_str(out, &d.rel);
                spill::put_i128(out, d.mtime_ns);
                spill::put_i128(out, d.ctime_ns);
                spill::put_u64(out, u64::from(d.mode));
                spill::put_u64(out, u64::from(d.uid));
                spill::put_u64(out, u64::from(d.gid));
            }
        }
    }

    fn decode(buf: &mut &[u8]) -> std::io::Result<Self> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad walk record");
        let (&tag, rest) = buf.split_first().ok_or_else(bad)?;
        *buf = rest;
        let rel = spill::get_str(buf)?;
        if tag < 2 {
            return Ok(Local::File {
                file: LocalFile {
                    rel,
                    size: spill::get_u64(buf)?,
                    mtime_ns: spill::get_i128(buf)?,
                },
                own: tag == 1,
            });
        }
        let small = |v: u64| u32::try_from(v).map_err(|_| bad());
        Ok(Local::Dir(LocalDir {
            rel,
            mtime_ns: spill::get_i128(buf)?,
            ctime_ns: spill::get_i128(buf)?,
            mode: small(spill::get_u64(buf)?)?,
            uid: small(spill::get_u64(buf)?)?,
            gid: small(spill::get_u64(buf)?)?,
        }))
    }
}

/// What the walk meets besides the entries it yields: each is logged and counted by the
/// caller as it comes, never gathered by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Skipped(Skipped),
    Problem(NameProblem),
    Failure(WalkFailure),
}

/// A child of a directory being walked, with the type it has once links are followed.
struct Child {
    name: std::ffi::OsString,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    /// FIFO, socket, device, broken link, unreadable link: decided when it is reached.
    Other,
}

impl Child {
    /// Compares as S3 compares keys: a directory's name is followed by `/`.
    fn cmp_key(&self, other: &Child) -> std::cmp::Ordering {
        let slash = |c: &Child| {
            if c.kind == Kind::Dir {
                &b"/"[..]
            } else {
                &b""[..]
            }
        };
        let a = self.name.as_bytes().iter().chain(slash(self));
        let b = other.name.as_bytes().iter().chain(slash(other));
        a.cmp(b)
    }
}

/// The children of `dir`, in key order. A symlink's kind is its target's.
fn children(dir: &Path) -> std::io::Result<Vec<Child>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let kind = if ft.is_symlink() {
            match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_dir() => Kind::Dir,
                Ok(m) if m.is_file() => Kind::File,
                _ => Kind::Other,
            }
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        out.push(Child {
            name: entry.file_name(),
            kind,
        });
    }
    out.sort_unstable_by(Child::cmp_key);
    Ok(out)
}

/// A directory whose children are being yielded.
struct Level {
    path: PathBuf,
    /// Its name relative to the root, as bytes (`None` for the root).
    rel: Vec<u8>,
    children: std::vec::IntoIter<Child>,
    id: (u64, u64),
}

/// Walks `root`, following symlinks, and hands every regular file and directory below it to
/// `entry` in S3's key order (so it can be merged with a listing as it goes), and everything
/// else it meets to `found`. Memory is one directory's names per level of depth, whatever the
/// size of the tree. `prefix_len` is the byte length of the key prefix, so keys that would be
/// too long are found before anything is uploaded; `noted` are the run's own files (device and
/// inode). Ends early, with the part walked so far, once `stop` says so.
pub fn walk_sorted(
    root: &Path,
    prefix_len: usize,
    noted: &[(u64, u64)],
    stop: &dyn Fn() -> bool,
    entry: &mut dyn FnMut(Local) -> std::io::Result<()>,
    found: &mut dyn FnMut(Found),
) -> Result<(), SourceError> {
    use std::os::unix::fs::MetadataExt;
    let shown = display_path(root);
    let meta = match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::Missing(shown))
        }
        Err(e) => {
            return Err(SourceError::Unreadable {
                path: shown,
                error: e.to_string(),
            })
        }
        Ok(m) if !m.is_dir() => return Err(SourceError::NotADirectory(shown)),
        Ok(m) => m,
    };
    let first = children(root).map_err(|e| SourceError::Unreadable {
        path: shown.clone(),
        error: e.to_string(),
    })?;
    let sink = |e: std::io::Error| SourceError::Unreadable {
        path: shown.clone(),
        error: format!("cannot keep the walk: {e}"),
    };
    let mut stack = vec![Level {
        path: root.to_path_buf(),
        rel: Vec::new(),
        children: first.into_iter(),
        id: (meta.dev(), meta.ino()),
    }];
    let mut seen = 0u32;
    while let Some(level) = stack.last_mut() {
        let Some(child) = level.children.next() else {
            stack.pop();
            continue;
        };
        seen = seen.wrapping_add(1);
        if seen.is_multiple_of(1024) && stop() {
            return Ok(());
        }
        let path = level.path.join(&child.name);
        let mut rel = level.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(child.name.as_bytes());
        match child.kind {
            Kind::Other => {
                let why = match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(&path) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "broken symlink",
                        Err(e) => {
                            found(Found::Failure(WalkFailure {
                                path: display_path(&path),
                                error: e.to_string(),
                            }));
                            continue;
                        }
                        Ok(_) => "not a regular file",
                    },
                    Ok(m) if m.file_type().is_fifo() => "FIFO",
                    Ok(m) if m.file_type().is_socket() => "socket",
                    Ok(m) if m.file_type().is_block_device() || m.file_type().is_char_device() => {
                        "device"
                    }
                    Ok(_) => "not a regular file",
                    Err(e) => {
                        found(Found::Failure(WalkFailure {
                            path: display_path(&path),
                            error: e.to_string(),
                        }));
                        continue;
                    }
                };
                found(Found::Skipped(Skipped {
                    path: display_path(&path),
                    why,
                }));
            }
            Kind::Dir => {
                let m = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        found(Found::Failure(WalkFailure {
                            path: display_path(&path),
                            error: e.to_string(),
                        }));
                        continue;
                    }
                };
                let id = (m.dev(), m.ino());
                if stack.iter().any(|l| l.id == id) {
                    found(Found::Skipped(Skipped {
                        path: display_path(&path),
                        why: "symlink loop (its target is already being copied)",
                    }));
                    continue;
                }
                match std::str::from_utf8(&rel) {
                    Ok(r) if prefix_len + r.len() < MAX_KEY_BYTES => {
                        // The walk follows symlinks: a linked directory is recorded as its
                        // target is.
                        entry(Local::Dir(LocalDir {
                            rel: r.into(),
                            mtime_ns: mtime_ns(&m),
                            ctime_ns: crate::metadata::from_parts(m.ctime(), m.ctime_nsec()),
                            mode: m.mode(),
                            uid: m.uid(),
                            gid: m.gid(),
                        }))
                        .map_err(sink)?;
                    }
                    // Its files are name problems of their own; an empty one is only left out.
                    _ => found(Found::Skipped(Skipped {
                        path: display_path(&path),
                        why: "directory whose name cannot be an S3 key: no directory marker",
                    })),
                }
                match children(&path) {
                    Ok(c) => stack.push(Level {
                        path,
                        rel,
                        children: c.into_iter(),
                        id,
                    }),
                    Err(e) => found(Found::Failure(WalkFailure {
                        path: display_path(&path),
                        error: e.to_string(),
                    })),
                }
            }
            Kind::File => {
                if crate::metadata::is_restore_temporary(child.name.as_bytes()) {
                    found(Found::Skipped(Skipped {
                        path: display_path(&path),
                        why: "a temporary file left by a restore that was killed; a rerun of that restore removes it, or remove it by hand",
                    }));
                    continue;
                }
                let Ok(r) = std::str::from_utf8(&rel) else {
                    found(Found::Problem(NameProblem::NotUtf8(display_path(&path))));
                    continue;
                };
                if prefix_len + r.len() > MAX_KEY_BYTES {
                    found(Found::Problem(NameProblem::KeyTooLong {
                        key_bytes: prefix_len + r.len(),
                        rel: display_bytes(r.as_bytes()),
                    }));
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(m) => entry(Local::File {
                        own: noted.contains(&(m.dev(), m.ino())),
                        file: LocalFile {
                            rel: r.into(),
                            size: m.len(),
                            mtime_ns: mtime_ns(&m),
                        },
                    })
                    .map_err(sink)?,
                    Err(e) => found(Found::Failure(WalkFailure {
                        path: display_path(&path),
                        error: e.to_string(),
                    })),
                }
            }
        }
    }
    Ok(())
}

/// Walks `root` into memory, in key order: the Python API's lists, and tests.
pub fn walk(root: &Path, prefix_len: usize) -> Result<SourceTree, SourceError> {
    let mut tree = SourceTree {
        root: root.to_path_buf(),
        ..SourceTree::default()
    };
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut found = Vec::new();
    walk_sorted(
        root,
        prefix_len,
        &[],
        &|| false,
        &mut |e| {
            match e {
                Local::File { file, .. } => files.push(file),
                Local::Dir(d) => dirs.push(d),
            }
            Ok(())
        },
        &mut |f| found.push(f),
    )?;
    tree.files = files;
    tree.dirs = dirs;
    for f in found {
        match f {
            Found::Skipped(s) => tree.skipped.push(s),
            Found::Problem(p) => tree.problems.push(p),
            Found::Failure(w) => tree.failures.push(w),
        }
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    #[test]
    fn encoding_rule_is_utf8_validity() {
        let dir = tempfile::tempdir().unwrap();
        let names: &[&[u8]] = &[
            "Müller.doc".as_bytes(),
            "naïve".as_bytes(),
            "x’s.html".as_bytes(),
            "日本語.txt".as_bytes(),
            "Привет".as_bytes(),
            "مرحبا".as_bytes(),
            "emoji-🎉".as_bytes(),
            b"line\nbreak",
            b"latin1-\xe9t\xe9",
            b"cp437-\x81ber",
        ];
        for n in names {
            let p = dir.path().join(std::ffi::OsString::from_vec(n.to_vec()));
            std::fs::write(p, b"x").unwrap();
        }
        let tree = walk(dir.path(), 0).unwrap();
        assert_eq!(tree.files.len(), 8, "{:?}", tree.files);
        let mut bad: Vec<String> = tree.problems.iter().map(|p| p.to_string()).collect();
        bad.sort();
        assert_eq!(bad.len(), 2);
        assert!(bad[0].ends_with("cp437-\\x81ber"), "{}", bad[0]);
        assert!(bad[1].ends_with("latin1-\\xe9t\\xe9"), "{}", bad[1]);
        assert!(tree.files.iter().any(|f| &*f.rel == "line\nbreak"));
    }

    #[test]
    fn follows_symlinks_skips_specials_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("o.txt"), b"outside").unwrap();
        std::fs::write(root.join("sub/a.txt"), b"aaa").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("linkdir")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.txt"), root.join("linkfile")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("broken")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
        let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        let tree = walk(&root, 0).unwrap();
        let mut rels: Vec<&str> = tree.files.iter().map(|f| &*f.rel).collect();
        rels.sort();
        assert_eq!(rels, ["linkdir/o.txt", "linkfile", "sub/a.txt"]);
        let mut whys: Vec<&str> = tree.skipped.iter().map(|s| s.why).collect();
        whys.sort();
        assert_eq!(whys.len(), 3, "{:?}", tree.skipped);
        assert!(whys.contains(&"FIFO") && whys.contains(&"broken symlink"));
        assert!(tree.failures.is_empty());
        let size = tree
            .files
            .iter()
            .find(|f| &*f.rel == "linkfile")
            .unwrap()
            .size;
        assert_eq!(size, 3);
    }

    #[test]
    fn source_forms_give_the_same_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"1").unwrap();
        let with_slash = PathBuf::from(format!("{}/", dir.path().display()));
        let dotted = dir.path().join(".");
        for root in [dir.path().to_path_buf(), with_slash, dotted] {
            let tree = walk(&root, 0).unwrap();
            let rels: Vec<&str> = tree.files.iter().map(|f| &*f.rel).collect();
            assert_eq!(rels, ["d/f"], "{}", root.display());
        }
    }

    #[test]
    fn missing_and_non_directory_sources() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            walk(&dir.path().join("no"), 0),
            Err(SourceError::Missing(_))
        ));
        std::fs::write(dir.path().join("f"), b"").unwrap();
        assert!(matches!(
            walk(&dir.path().join("f"), 0),
            Err(SourceError::NotADirectory(_))
        ));
    }

    #[test]
    fn too_long_keys_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x".repeat(200)), b"").unwrap();
        assert!(walk(dir.path(), 824).unwrap().problems.is_empty());
        let tree = walk(dir.path(), 825).unwrap();
        assert!(matches!(
            tree.problems[0],
            NameProblem::KeyTooLong {
                key_bytes: 1025,
                ..
            }
        ));
    }
}
