//! The directories of a restore. Every directory the restore creates is created private
//! (0700), so nothing of what it will hold is ever visible to other local users while the
//! files arrive. Once every file is in place, each directory that has a marker (see
//! [`crate::markers`]) gets the mode, owner and group (as root) its marker records, then its
//! mtime, deepest directory first: a child's changes come before its parent's time is set, and
//! chmod and chown do not move an mtime. Markers of empty directories create them.
//!
//! A directory without a recorded mode (a bucket written by the original tool or another one,
//! whose objects carry no markers) stays 0700: an exposure cannot be undone once another user
//! has read a file, while a directory too tight is visible and fixed with one chmod. The run
//! says so once, with the number of such directories.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::display::display_bytes;
use crate::metadata::Recorded;
use crate::report::RestoreCounts;
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
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(dir, name, 0700)`: true if it made it, false if something had the name.
pub fn make_private_dir(dir: &OwnedFd, name: &CString) -> std::io::Result<bool> {
    // SAFETY: a valid descriptor and a NUL-terminated name.
    let r = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), PRIVATE_DIR_MODE) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Opens `rel` under `root` one component at a time without following symlinks, creating
/// missing components private when `created` is given (and adding them to it).
fn open_rel(
    root: &OwnedFd,
    rel: &str,
    mut created: Option<&mut BTreeSet<String>>,
) -> Result<OwnedFd, String> {
    let comps: Vec<&str> = rel.split('/').collect();
    let mut fd: Option<OwnedFd> = None;
    for (i, c) in comps.iter().enumerate() {
        let name = CString::new(*c).map_err(|_| "a NUL in the name".to_string())?;
        let shown = || display_bytes(comps[..=i].join("/").as_bytes());
        let parent = fd.as_ref().unwrap_or(root);
        if let Some(set) = created.as_deref_mut() {
            match make_private_dir(parent, &name) {
                Ok(true) => {
                    set.insert(comps[..=i].join("/"));
                }
                Ok(false) => {}
                Err(e) => return Err(format!("cannot create directory {}: {e}", shown())),
            }
        }
        let next = open_dir_at(parent, &name).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => format!(
                "{} exists and is a symbolic link or not a directory; nothing is done through it",
                shown()
            ),
            _ => format!("cannot open directory {}: {e}", shown()),
        })?;
        fd = Some(next);
    }
    fd.ok_or_else(|| "an empty directory name".to_string())
}

/// Owner (as root, when recorded), permission bits and modification time, on an open file or
/// directory; `None` leaves that one as it is. What cannot be applied is returned, one
/// description each (the caller warns; the file or directory stays, with what did apply).
pub fn apply_recorded(
    file: &std::fs::File,
    mtime_ns: Option<i128>,
    mode: Option<u32>,
    rec: &Recorded,
    as_root: bool,
) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut problems = Vec::new();
    if as_root && (rec.uid.is_some() || rec.gid.is_some()) {
        // None leaves that id unchanged.
        if let Err(e) = std::os::unix::fs::fchown(file, rec.uid, rec.gid) {
            problems.push(format!(
                "cannot set owner {:?} and group {:?}: {e}",
                rec.uid, rec.gid
            ));
        }
    }
    if let Some(mode) = mode {
        if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(mode)) {
            problems.push(format!("cannot set mode {mode:o}: {e}"));
        }
    }
    if let Some(ns) = mtime_ns {
        let (secs, nanos) = crate::metadata::timespec_parts(ns);
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: secs as libc::time_t,
                tv_nsec: nanos as _,
            },
        ];
        // SAFETY: a valid descriptor and two timespecs.
        if unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) } != 0 {
            let e = std::io::Error::last_os_error();
            problems.push(format!(
                "cannot set the modification time {}: {e}",
                crate::metadata::format_mtime(ns)
            ));
        }
    }
    problems
}

/// What the marker of one directory records (one HeadObject), or why it could not be asked.
type Asked = Result<(Recorded, Vec<String>), String>;

async fn ask_markers(
    client: &Client,
    url: &BucketUrl,
    markers: &[String],
    concurrency: usize,
    cancel: &CancellationToken,
) -> Option<HashMap<String, Asked>> {
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for rel in markers {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return None,
            p = limit.clone().acquire_owned() => p.expect("semaphore closed"),
        };
        let (client, bucket, key, rel) = (
            client.clone(),
            url.bucket.clone(),
            url.key(&format!("{rel}/")),
            rel.clone(),
        );
        tasks.spawn(async move {
            let r = crate::s3::head_object(&client, &bucket, &key).await;
            drop(permit);
            let asked = r
                .map(|h| Recorded::from_metadata(h.metadata()))
                .map_err(|e| e.to_string());
            (rel, asked)
        });
    }
    let mut out = HashMap::new();
    loop {
        let done = tokio::select! {
            _ = cancel.cancelled() => return None,
            d = tasks.join_next() => d,
        };
        match done {
            None => return Some(out),
            Some(Ok((rel, asked))) => {
                out.insert(rel, asked);
            }
            Some(Err(e)) => log::error!(target: FLOW, "directory marker task failed: {e}"),
        }
    }
}

/// What the directory phase needs from the restore.
pub struct DirsJob<'a> {
    pub client: &'a Client,
    pub url: &'a BucketUrl,
    /// The target directory (`None`: a dry run of a target that does not exist yet).
    pub root: Option<&'a OwnedFd>,
    /// Directories with a marker, relative to the target (no trailing `/`).
    pub markers: Vec<String>,
    /// Directories the file phase created (private, no marker known to it).
    pub created: Vec<String>,
    pub dry_run: bool,
    pub as_root: bool,
    pub concurrency: usize,
    /// How a directory is shown in messages.
    pub shown: &'a (dyn Fn(&str) -> String + Sync),
}

/// Creates the marked directories that are missing, then gives every marked directory what
/// its marker records, deepest first; counts what it did, logs a WARNING per directory whose
/// metadata could not be read or applied and one for all directories left 0700. Returns the
/// failures (a marker that could not be asked, a directory that could not be made or opened).
/// `None`: interrupted.
pub async fn finish(
    job: DirsJob<'_>,
    counts: &mut RestoreCounts,
    cancel: &CancellationToken,
) -> Option<Vec<(String, String)>> {
    let mut failures = Vec::new();
    let Some(root) = job.root.filter(|_| !job.dry_run) else {
        if !job.markers.is_empty() {
            log::info!(target: FLOW, "(dryrun) {} directories would be created or given the mode, owner and time their markers record.", job.markers.len());
        }
        return Some(failures);
    };
    let asked = ask_markers(job.client, job.url, &job.markers, job.concurrency, cancel).await?;
    let mut created: BTreeSet<String> = job.created.into_iter().collect();
    for rel in &job.markers {
        if let Err(why) = open_rel(root, rel, Some(&mut created)) {
            failures.push((rel.clone(), why));
        }
    }
    let failed: BTreeSet<String> = failures.iter().map(|(r, _)| r.clone()).collect();
    let mut all: Vec<&String> = job.markers.iter().chain(created.iter()).collect();
    all.sort_by(|a, b| {
        let depth = |s: &str| s.matches('/').count();
        depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
    });
    all.dedup();
    let mut defaulted = 0;
    for rel in all {
        if failed.contains(rel) {
            continue;
        }
        let recorded = match asked.get(rel) {
            None => {
                // Created for files, with no marker: stays private.
                defaulted += 1;
                continue;
            }
            Some(Err(why)) => {
                failures.push((
                    rel.clone(),
                    format!("cannot read its directory marker: {why}"),
                ));
                continue;
            }
            Some(Ok(r)) => r,
        };
        let (rec, unusable) = recorded;
        let file = match open_rel(root, rel, None) {
            Ok(fd) => std::fs::File::from(fd),
            Err(why) => {
                failures.push((rel.clone(), why));
                continue;
            }
        };
        let mut problems = unusable.clone();
        problems.extend(apply_recorded(
            &file,
            rec.mtime_ns,
            rec.mode,
            rec,
            job.as_root,
        ));
        match rec.mode {
            Some(_) => counts.directories_restored += 1,
            None if created.contains(rel) => defaulted += 1,
            None => {}
        }
        if !problems.is_empty() {
            counts.metadata_warnings += 1;
            log::warn!(target: FLOW, "Directory {} restored without all of its recorded metadata: {}.", (job.shown)(rel), problems.join("; "));
        }
    }
    counts.directories_defaulted = defaulted;
    if defaulted > 0 {
        log::warn!(target: FLOW, "{defaulted} directories have no recorded mode (no directory marker: the bucket was written by the original tool or another one) and were left private (0700); give them their modes with chmod.");
    }
    for (rel, why) in &failures {
        log::error!(target: FLOW, "Failed to restore directory {}: {why}", (job.shown)(rel));
    }
    counts.failed += failures.len();
    Some(
        failures
            .into_iter()
            .map(|(rel, why)| ((job.shown)(&rel), why))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn directories_are_made_private_and_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let root: OwnedFd = std::fs::File::open(d.path()).unwrap().into();
        let mut created = BTreeSet::new();
        open_rel(&root, "a/b/c", Some(&mut created)).unwrap();
        assert_eq!(
            created.iter().map(String::as_str).collect::<Vec<_>>(),
            ["a", "a/b", "a/b/c"]
        );
        for rel in ["a", "a/b", "a/b/c"] {
            let m = std::fs::metadata(d.path().join(rel)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{rel}");
        }
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("link")).unwrap();
        let err = open_rel(&root, "link/b", Some(&mut created)).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        let file = std::fs::File::from(open_rel(&root, "a/b", None).unwrap());
        let rec = Recorded::default();
        let t = 13_569_465_600 * crate::metadata::NS + 5;
        assert!(apply_recorded(&file, Some(t), Some(0o750), &rec, false).is_empty());
        let m = std::fs::metadata(d.path().join("a/b")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o750);
        assert_eq!(crate::metadata::from_parts(m.mtime(), m.mtime_nsec()), t);
    }
}
