//! The directories of a restore. Every directory the restore creates is created private
//! (0700), so nothing of what it will hold is ever visible to other local users while the
//! files arrive. Directories are opened one component at a time from the target's descriptor
//! with `O_NOFOLLOW`, so nothing is written outside the target, also not through a symlink
//! already inside it.
//!
//! A directory marker (see [`crate::metadata::is_directory_marker`]) comes before the keys under it in key order:
//! its directory is created as it passes and the marker is spilled. Once every file is in
//! place, each marked directory gets the mode, owner and group (as root) its marker records,
//! then its mtime, deepest first (the spill read backwards: in key order a child's marker
//! comes after its parent's), so a parent recorded without search permission does not hide
//! its children and its time is set after its contents changed.
//!
//! A directory without a recorded mode (a bucket written by the original tool or another one,
//! whose objects carry no markers) stays 0700: an exposure cannot be undone once another user
//! has read a file, while a directory too tight is visible and fixed with one chmod. The run
//! says so once, with the number of such directories.

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio_util::sync::CancellationToken;

use super::place::{apply_recorded, cstring, last_os_error};
use crate::bucket_url::BucketUrl;
use crate::display::{display_bytes, display_path};
use crate::metadata::Recorded;
use crate::report::{Cause, RestoreCounts};
use crate::run::outcome::{Failures, ItemFailure, Stage};
use crate::run::spill::{self, Record, Spilled};
use crate::run::{failed, RunError};
use crate::FLOW;

/// The mode the restore creates directories with.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// `openat(dir, name, O_DIRECTORY|O_NOFOLLOW)`.
fn open_dir_at(dir: &OwnedFd, name: &CString) -> std::io::Result<OwnedFd> {
    // SAFETY: a valid descriptor and a NUL-terminated name; the result is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(dir, name, 0700)`: true if it made it, false if something had the name.
fn make_private_dir(dir: &OwnedFd, name: &CString) -> std::io::Result<bool> {
    // SAFETY: a valid descriptor and a NUL-terminated name.
    let r = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), PRIVATE_DIR_MODE) };
    if r == 0 {
        return Ok(true);
    }
    let e = last_os_error();
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The directories on the way to the current key, opened one component at a time from the
/// target's descriptor. Keys come in key order (files held by the key check a little later),
/// so the keys under one directory come together and only the chain of the current key's
/// ancestors stays open.
pub struct Dirs {
    /// (component, descriptor); the first is the target itself with an empty name.
    chain: Vec<(String, Arc<OwnedFd>)>,
    create: bool,
    /// Directories this restore created without a marker (left private).
    pub created_unmarked: usize,
}

impl Dirs {
    /// From the target's descriptor; `create`: make missing directories (not in a dry run,
    /// nor in the check at the end).
    pub fn new(root: Arc<OwnedFd>, create: bool) -> Dirs {
        Dirs {
            chain: vec![(String::new(), root)],
            create,
            created_unmarked: 0,
        }
    }

    /// The directory holding `rel`, created when missing (unless `create` is off: then `None`
    /// for a directory that does not exist).
    pub fn parent_of(&mut self, rel: &str) -> Result<Option<Arc<OwnedFd>>, String> {
        let comps: Vec<&str> = rel.split('/').collect();
        Ok(self.open(&comps[..comps.len() - 1])?.map(|(fd, _)| fd))
    }

    /// The directory of a marker, created when missing. True if this made it.
    pub fn marked(&mut self, dir: &str) -> Result<bool, String> {
        let comps: Vec<&str> = dir.split('/').collect();
        let made = self.open(&comps)?.is_some_and(|(_, made)| made);
        if made {
            self.created_unmarked -= 1;
        }
        Ok(made)
    }

    /// Opens (and creates) `comps` below the target; with whether the last one was made.
    fn open(&mut self, comps: &[&str]) -> Result<Option<(Arc<OwnedFd>, bool)>, String> {
        let mut keep = 1;
        while keep < self.chain.len()
            && keep - 1 < comps.len()
            && self.chain[keep].0 == comps[keep - 1]
        {
            keep += 1;
        }
        self.chain.truncate(keep);
        let shown = |i: usize| display_bytes(comps[..=i].join("/").as_bytes());
        let mut made = false;
        for (i, c) in comps.iter().enumerate().skip(keep - 1) {
            let parent = self.chain.last().expect("the target is first").1.clone();
            made = false;
            if self.create {
                match make_private_dir(&parent, &cstring(c)) {
                    Ok(m) => made = m,
                    Err(e) => return Err(format!("cannot create directory {}: {e}", shown(i))),
                }
                self.created_unmarked += usize::from(made);
            }
            match open_dir_at(&parent, &cstring(c)) {
                Ok(fd) => self.chain.push((c.to_string(), Arc::new(fd))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.create => {
                    return Ok(None)
                }
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) =>
                {
                    return Err(format!(
                        "{} exists and is a symbolic link or not a directory; nothing is written through it",
                        shown(i)
                    ))
                }
                Err(e) => return Err(format!("cannot open directory {}: {e}", shown(i))),
            }
        }
        let fd = self.chain.last().expect("the target is first").1.clone();
        Ok(Some((fd, made)))
    }
}

/// The target directory, created when missing (not in a dry run: then `None` when missing).
pub fn open_target(target: &Path, dry_run: bool) -> Result<Option<Arc<OwnedFd>>, RunError> {
    if !dry_run {
        use std::os::unix::fs::DirBuilderExt;
        // Private, as every directory the restore creates (see the module).
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(PRIVATE_DIR_MODE);
        builder.create(target).map_err(|e| {
            failed(
                Cause::LocalIo,
                format!(
                    "Cannot create the target directory {}: {e}",
                    display_path(target)
                ),
            )
        })?;
    }
    let c = CString::new(target.as_os_str().as_bytes()).map_err(|_| {
        failed(
            Cause::BadInput,
            format!(
                "The target directory {} has a NUL byte.",
                display_path(target)
            ),
        )
    })?;
    // SAFETY: NUL-terminated path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = last_os_error();
        if dry_run && e.kind() == std::io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(failed(
            Cause::LocalIo,
            format!(
                "Cannot open the target directory {}: {e}",
                display_path(target)
            ),
        ));
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(Some(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })))
}

/// A directory with a marker, as spilled: relative to the target, no trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerDir {
    pub rel: Box<str>,
    /// This restore created it.
    pub created: bool,
}

impl Record for MarkerDir {
    fn encode(&self, out: &mut Vec<u8>) {
        spill::put_str(out, &self.rel);
        out.push(u8::from(self.created));
    }
    fn decode(buf: &mut &[u8]) -> std::io::Result<Self> {
        let rel = spill::get_str(buf)?;
        let (&created, rest) = buf
            .split_first()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        *buf = rest;
        Ok(MarkerDir {
            rel,
            created: created != 0,
        })
    }
}

/// A directory that could not be made, opened or given its metadata: an ERROR and a failure.
pub fn dir_failed(
    counts: &mut RestoreCounts,
    failures: &mut Failures,
    shown: String,
    cause: Cause,
    why: String,
) {
    log::error!(target: FLOW, "Failed to restore directory {shown}: {why}");
    counts.failed += 1;
    failures.push(ItemFailure::new(shown, Stage::Place, cause, why));
}

/// What the directory phase needs from the restore.
pub struct DirsJob<'a> {
    pub client: &'a Client,
    pub url: &'a BucketUrl,
    /// The target directory (`None`: a dry run of a target that does not exist yet).
    pub root: Option<&'a OwnedFd>,
    /// Directories with a marker, in key order.
    pub markers: Spilled<MarkerDir>,
    /// Directories the run created without a marker.
    pub created_unmarked: usize,
    pub dry_run: bool,
    pub as_root: bool,
    /// HeadObject requests of markers in flight at once.
    pub concurrency: usize,
    /// How a directory is shown in messages.
    pub shown: &'a (dyn Fn(&str) -> String + Sync),
}

/// What the marker of one directory records, or why it could not be asked.
type Asked = Result<(Recorded, Vec<String>), String>;

/// Gives every marked directory what its marker records, deepest first: the markers are
/// asked (HeadObject) `concurrency` at a time, in the order they are applied. Counts what it
/// did, logs a WARNING per directory whose metadata could not be read or applied and one for
/// all directories left 0700. `Err`: interrupted, or the spill could not be read.
pub async fn finish(
    job: DirsJob<'_>,
    counts: &mut RestoreCounts,
    failures: &mut Failures,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let Some(root) = job.root.filter(|_| !job.dry_run) else {
        if !job.markers.is_empty() {
            log::info!(target: FLOW, "(dryrun) {} directories would be created or given the mode, owner and time their markers record.", job.markers.len());
        }
        return Ok(());
    };
    let mut defaulted = job.created_unmarked;
    let mut markers = job.markers.rev();
    let mut asking: VecDeque<(MarkerDir, tokio::task::JoinHandle<Asked>)> = VecDeque::new();
    let width = job.concurrency.max(1);
    let stop = |asking: &mut VecDeque<(MarkerDir, tokio::task::JoinHandle<Asked>)>| {
        for (_, h) in asking.drain(..) {
            h.abort();
        }
    };
    loop {
        while asking.len() < width {
            let m = match markers.next() {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    stop(&mut asking);
                    return Err(failed(
                        Cause::LocalIo,
                        format!("cannot read the directory markers back: {e}"),
                    ));
                }
            };
            let (client, bucket) = (job.client.clone(), job.url.bucket.clone());
            let key = job.url.key(&format!("{}/", m.rel));
            let h = tokio::spawn(async move {
                crate::s3::head_object(&client, &bucket, &key)
                    .await
                    .map(|h| Recorded::from_metadata(h.metadata()))
                    .map_err(|e| e.to_string())
            });
            asking.push_back((m, h));
        }
        let Some((m, mut h)) = asking.pop_front() else {
            break;
        };
        let joined = tokio::select! {
            _ = cancel.cancelled() => {
                h.abort();
                stop(&mut asking);
                return Err(RunError::Interrupted);
            }
            j = &mut h => j,
        };
        let shown = (job.shown)(&m.rel);
        let (rec, unusable) = match joined {
            Ok(Ok(r)) => r,
            Ok(Err(why)) => {
                let why = format!("cannot read its directory marker: {why}");
                dir_failed(counts, failures, shown, Cause::LocalIo, why);
                continue;
            }
            Err(e) => {
                let why = format!("internal error: the directory marker task failed: {e}");
                dir_failed(counts, failures, shown, Cause::Internal, why);
                continue;
            }
        };
        let file = match open_rel(root, &m.rel) {
            Ok(fd) => std::fs::File::from(fd),
            Err(why) => {
                dir_failed(counts, failures, shown, Cause::LocalIo, why);
                continue;
            }
        };
        let mut problems = unusable;
        problems.extend(apply_recorded(
            &file,
            rec.mtime_ns,
            rec.mode,
            &rec,
            job.as_root,
        ));
        match rec.mode {
            Some(_) => counts.directories_restored += 1,
            None if m.created => defaulted += 1,
            None => {}
        }
        if !problems.is_empty() {
            counts.metadata_warnings += 1;
            log::warn!(target: FLOW, "Directory {shown} restored without all of its recorded metadata: {}.", problems.join("; "));
        }
    }
    counts.directories_defaulted = defaulted;
    if defaulted > 0 {
        log::warn!(target: FLOW, "{defaulted} directories have no recorded mode (no directory marker: the bucket was written by the original tool or another one) and were left private (0700); give them their modes with chmod.");
    }
    Ok(())
}

/// Opens `rel` under `root` one component at a time without following symlinks.
fn open_rel(root: &OwnedFd, rel: &str) -> Result<OwnedFd, String> {
    let comps: Vec<&str> = rel.split('/').collect();
    let mut fd: Option<OwnedFd> = None;
    for (i, c) in comps.iter().enumerate() {
        let name = CString::new(*c).map_err(|_| "a NUL in the name".to_string())?;
        let parent = fd.as_ref().unwrap_or(root);
        let next = open_dir_at(parent, &name).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => format!(
                "{} exists and is a symbolic link or not a directory; nothing is done through it",
                display_bytes(comps[..=i].join("/").as_bytes())
            ),
            _ => format!(
                "cannot open directory {}: {e}",
                display_bytes(comps[..=i].join("/").as_bytes())
            ),
        })?;
        fd = Some(next);
    }
    fd.ok_or_else(|| "an empty directory name".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn directories_are_made_private_and_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let root: Arc<OwnedFd> = Arc::new(std::fs::File::open(d.path()).unwrap().into());
        let mut dirs = Dirs::new(root.clone(), true);
        assert!(dirs.parent_of("a/b/c/f").unwrap().is_some());
        assert_eq!(dirs.created_unmarked, 3);
        // A marker's own directory made now is not counted as unmarked; its parents are.
        assert!(dirs.marked("a/b/m").unwrap());
        assert!(!dirs.marked("a/b").unwrap());
        assert_eq!(dirs.created_unmarked, 3);
        for rel in ["a", "a/b", "a/b/c", "a/b/m"] {
            let m = std::fs::metadata(d.path().join(rel)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{rel}");
        }
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("link")).unwrap();
        let err = dirs.parent_of("link/b/f").unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        let err = open_rel(&root, "link/b").unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        // Without creating: a missing directory is `None`.
        let mut look = Dirs::new(root.clone(), false);
        assert!(look.parent_of("x/y/f").unwrap().is_none());
        assert!(!d.path().join("x").exists());
        let file = std::fs::File::from(open_rel(&root, "a/b").unwrap());
        let rec = Recorded::default();
        let t = 13_569_465_600 * crate::metadata::NS + 5;
        assert!(apply_recorded(&file, Some(t), Some(0o750), &rec, false).is_empty());
        let m = std::fs::metadata(d.path().join("a/b")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o750);
        assert_eq!(crate::metadata::from_parts(m.mtime(), m.mtime_nsec()), t);
    }
}
