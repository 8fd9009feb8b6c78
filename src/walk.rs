//! The source walk and the filename check: one pass over the tree feeds sync and verify.
//!
//! Regular files become objects; symlinks are followed (as `aws s3 sync` does) with loop
//! detection; broken links, FIFOs, sockets and devices are skipped with a warning. A path
//! whose name is not UTF-8 (S3 keys are UTF-8), or whose key would exceed S3's limit, is a
//! *name problem*: the run refuses to start unless `-w` says to skip those files.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::bucket_url::MAX_KEY_BYTES;
use crate::display::{display_bytes, display_path};

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
/// the bucket as a directory marker (see [`crate::markers`]).
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

/// The temporary name a `--restore` gives a file it writes, where it needs one (a file system
/// without `O_TMPFILE`, or the step before an atomic replace with `--overwrite`): a fixed
/// prefix, the byte 0xFF and the MD5 of the final name in hex. No S3 key holds the byte 0xFF
/// (keys are UTF-8, where it never occurs), so this is never a name the restore places,
/// whatever the bucket holds; it always fits a file name (41 bytes); and a rerun restoring the
/// same file computes the same name and removes one left by a killed run.
pub fn restore_temporary_name(final_name: &str) -> Vec<u8> {
    use md5::Digest as _;
    let digest = md5::Md5::digest(final_name.as_bytes());
    let mut name = RESTORE_TEMPORARY_PREFIX.to_vec();
    for b in digest {
        name.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    name
}

const RESTORE_TEMPORARY_PREFIX: &[u8] = b".cback3-\xff";

/// Is `name` (one path component) a temporary name of [`restore_temporary_name`]'s pattern?
/// The sync skips such files with a WARNING: they are a killed restore's leftovers, never
/// data, and their names cannot be keys.
pub fn is_restore_temporary(name: &[u8]) -> bool {
    name.strip_prefix(RESTORE_TEMPORARY_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The relative name of an entry as `/`-joined UTF-8, or `None` when some component is not UTF-8.
fn relative_name(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut out = String::new();
    for (i, c) in rel.components().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(OsStr::to_str(c.as_os_str())?);
    }
    Some(out)
}

/// Walks `root`, following symlinks. `prefix_len` is the byte length of the key prefix,
/// so keys that would be too long are found before anything is uploaded.
pub fn walk(root: &Path, prefix_len: usize) -> Result<SourceTree, SourceError> {
    walk_noting(root, prefix_len, &[]).map(|(tree, _)| tree)
}

/// [`walk`], also returning the indices of the files that are one of `noted` (device and
/// inode), such as the run's own logfile.
pub fn walk_noting(
    root: &Path,
    prefix_len: usize,
    noted: &[(u64, u64)],
) -> Result<(SourceTree, Vec<usize>), SourceError> {
    walk_noting_until(root, prefix_len, noted, &|| false)
}

/// [`walk_noting`] that ends early, with the part walked so far, once `stop` says so (a
/// signal: the walk of a large tree must not delay the run's exit).
pub fn walk_noting_until(
    root: &Path,
    prefix_len: usize,
    noted: &[(u64, u64)],
    stop: &dyn Fn() -> bool,
) -> Result<(SourceTree, Vec<usize>), SourceError> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let shown = display_path(root);
    match std::fs::metadata(root) {
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
        Ok(_) => {}
    }
    let mut tree = SourceTree {
        root: root.to_path_buf(),
        ..SourceTree::default()
    };
    for entry in WalkDir::new(root).follow_links(true).min_depth(1) {
        if stop() {
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                let path = err
                    .path()
                    .map(display_path)
                    .unwrap_or_else(|| shown.clone());
                if err.loop_ancestor().is_some() {
                    tree.skipped.push(Skipped {
                        path,
                        why: "symlink loop (its target is already being copied)",
                    });
                } else if err.io_error().map(|e| e.kind()) == Some(std::io::ErrorKind::NotFound)
                    && err
                        .path()
                        .is_some_and(|p| p.symlink_metadata().is_ok_and(|m| m.is_symlink()))
                {
                    tree.skipped.push(Skipped {
                        path,
                        why: "broken symlink",
                    });
                } else if err.depth() == 0 {
                    return Err(SourceError::Unreadable {
                        path,
                        error: err.to_string(),
                    });
                } else {
                    let error = err
                        .io_error()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| err.to_string());
                    tree.failures.push(WalkFailure { path, error });
                }
                continue;
            }
        };
        let ft = entry.file_type();
        if ft.is_dir() {
            note_dir(&mut tree, root, entry.path(), prefix_len);
            continue;
        }
        if !ft.is_file() {
            let why = if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "device"
            } else {
                "not a regular file"
            };
            tree.skipped.push(Skipped {
                path: display_path(entry.path()),
                why,
            });
            continue;
        }
        if is_restore_temporary(entry.file_name().as_bytes()) {
            tree.skipped.push(Skipped {
                path: display_path(entry.path()),
                why: "a temporary file left by a restore that was killed; a rerun of that restore removes it, or remove it by hand",
            });
            continue;
        }
        let Some(rel) = relative_name(root, entry.path()) else {
            tree.problems
                .push(NameProblem::NotUtf8(display_path(entry.path())));
            continue;
        };
        if prefix_len + rel.len() > MAX_KEY_BYTES {
            tree.problems.push(NameProblem::KeyTooLong {
                key_bytes: prefix_len + rel.len(),
                rel: display_bytes(rel.as_bytes()),
            });
            continue;
        }
        match entry.metadata() {
            Ok(meta) => {
                if noted.contains(&(meta.dev(), meta.ino())) {
                    found.push(tree.files.len());
                }
                tree.files.push(LocalFile {
                    rel: rel.into_boxed_str(),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                })
            }
            Err(err) => tree.failures.push(WalkFailure {
                path: display_path(entry.path()),
                error: err.to_string(),
            }),
        }
    }
    Ok((tree, found))
}

/// Records a directory for its marker (key `prefix + rel + "/"`). One whose name cannot be
/// a key gets no marker (a WARNING through `skipped`): its files are name problems of their
/// own, and an empty one is only left out.
fn note_dir(tree: &mut SourceTree, root: &Path, path: &Path, prefix_len: usize) {
    use std::os::unix::fs::MetadataExt;
    let rel = relative_name(root, path);
    let fits = rel
        .as_ref()
        .is_some_and(|r| prefix_len + r.len() < MAX_KEY_BYTES);
    let (Some(rel), true) = (rel, fits) else {
        tree.skipped.push(Skipped {
            path: display_path(path),
            why: "directory whose name cannot be an S3 key: no directory marker",
        });
        return;
    };
    // The walk follows symlinks: a linked directory is recorded as its target is.
    match std::fs::metadata(path) {
        Ok(m) => tree.dirs.push(LocalDir {
            rel: rel.into_boxed_str(),
            mtime_ns: mtime_ns(&m),
            ctime_ns: crate::metadata::from_parts(m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
        }),
        Err(err) => tree.failures.push(WalkFailure {
            path: display_path(path),
            error: err.to_string(),
        }),
    }
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
