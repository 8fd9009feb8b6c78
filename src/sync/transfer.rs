//! One file's upload: opened once, read while it stays the same version, uploaded again from
//! its new version when it changes meanwhile; and one directory marker's put. The sync
//! dispatches these ([`crate::sync`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::display::display_bytes;
use crate::report::Cause;
use crate::s3::{self, Interrupted, OpError, UploadSettings};
use crate::sync::walk::{FileVersion, LocalFile};
use crate::FLOW;

/// Why one file failed: what kind of failure, and the message the log and summary show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub cause: Cause,
    pub message: String,
}

impl Failure {
    pub fn new(cause: Cause, message: impl Into<String>) -> Self {
        Failure {
            cause,
            message: message.into(),
        }
    }

    pub fn of(e: &OpError) -> Self {
        Failure::new(e.cause(), e.to_string())
    }
}

/// How one file's upload ended.
#[derive(Debug)]
pub enum FileOutcome {
    /// The object holds this version of the file; [`crate::s3::listing::etag_hash`] of its ETag
    /// (0: the server sent none).
    Uploaded(LocalFile, u64),
    Failed(Failure),
    /// Cancelled before it was stored.
    Interrupted,
}

/// An uploaded file whose mtime is later than this before the upload phase started may
/// be newer than its object's LastModified (whole seconds, truncated): its `mtime` metadata is
/// remembered (see [`crate::sync::mtime_cache`]).
pub const RECENT: std::time::Duration = std::time::Duration::from_secs(2);

/// How many times one run uploads a file that changes while it is read, each time from
/// its new version, before that file fails.
pub const ATTEMPTS: u32 = 3;

/// Opens a file for its upload without blocking (a FIFO or device that replaced the walked
/// file must not hang the run) and refuses anything but a regular file.
fn open_for_upload(path: &std::path::Path) -> Result<(std::fs::File, FileVersion), String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("vanished before its upload: {e}"),
            _ => format!("cannot open: {e}"),
        })?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "is now {what}, no longer the regular file the walk saw; not uploaded"
        ));
    }
    Ok((file, FileVersion::of(&meta)))
}

/// The kernel stamps mtime and ctime when a write *starts*, so a file changed this
/// recently may be in the middle of one write call that no later stat would show. Its
/// upload waits until its last change is this old before reading it.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// How long an upload waits for a file that keeps changing to be [`SETTLE`] old before it
/// gives the attempt up. A writer that works in steps (truncate, compute, write, set the
/// mtime back) spent all the attempts of a file within a second, each on a change made
/// before it read a byte.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits, if needed, until the file's last change is [`SETTLE`] old, following its changes
/// for up to [`SETTLE_LIMIT`]; the version then, or `None` if it was still changing.
async fn settled(file: &std::fs::File, version: FileVersion) -> Option<FileVersion> {
    let started = std::time::Instant::now();
    let mut version = version;
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let age = now - version.ctime_ns.max(version.mtime_ns);
        let settle = SETTLE.as_nanos() as i128;
        if age >= settle {
            return Some(version);
        }
        let wait = (settle - age.max(0)) as u64;
        tokio::time::sleep(std::time::Duration::from_nanos(wait)).await;
        let again = FileVersion::of(&file.metadata().ok()?);
        if again == version {
            return Some(version);
        }
        if started.elapsed() >= SETTLE_LIMIT {
            return None;
        }
        version = again;
    }
}

/// Is the open file, and the file at its path, still `version`?
fn same_version(file: &std::fs::File, path: &std::path::Path, version: &FileVersion) -> bool {
    let now = |m: std::io::Result<std::fs::Metadata>| m.ok().map(|m| FileVersion::of(&m));
    now(file.metadata()).as_ref() == Some(version)
        && now(std::fs::metadata(path)).as_ref() == Some(version)
}

/// How one attempt at uploading a file ended.
enum Attempt {
    /// The object holds this version of the file (and the hash of its ETag).
    Done(LocalFile, u64),
    /// The file changed while it was read. `wrote`: an object was written from it anyway
    /// (it may be torn).
    Changed {
        wrote: bool,
    },
    Failed(Failure),
    Interrupted,
}

struct Target<'a> {
    client: &'a Client,
    bucket: &'a str,
    key: &'a str,
    path: &'a std::path::Path,
    /// The run's own file (logfile, summary): copied as the walk saw it, never checked.
    own: bool,
    limit: &'a Arc<Semaphore>,
    cancel: &'a CancellationToken,
    settings: &'a UploadSettings,
}

async fn attempt(
    t: &Target<'_>,
    walked: &LocalFile,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Attempt {
    let name = display_bytes(walked.rel.as_bytes());
    let (file, version) = match open_for_upload(t.path) {
        Ok(x) => x,
        Err(e) => return Attempt::Failed(Failure::new(Cause::LocalIo, e)),
    };
    let version = match t.own {
        true => version,
        false => match tokio::select! {
            _ = t.cancel.cancelled() => return Attempt::Interrupted,
            v = settled(&file, version) => v,
        } {
            Some(v) => v,
            None => return Attempt::Changed { wrote: false },
        },
    };
    if !t.own && (version.size != walked.size || version.mtime_ns != walked.mtime_ns) {
        log::info!(target: FLOW, "{name} changed since the walk; uploading its current version ({} bytes).", version.size);
    }
    // The run's own logfile only grows: its first `walked.size` bytes are what the walk saw.
    let (size, mtime_ns) = if t.own {
        (walked.size.min(version.size), walked.mtime_ns)
    } else {
        (version.size, version.mtime_ns)
    };
    let file = Arc::new(file);
    let changed = AtomicBool::new(false);
    let unchanged = || -> Result<(), OpError> {
        if t.own || same_version(&file, t.path, &version) {
            Ok(())
        } else {
            changed.store(true, Ordering::Relaxed);
            Err(OpError::local(t.path, "changed while being read"))
        }
    };
    let src = s3::Source {
        file: file.clone(),
        path: t.path,
        size,
        mtime_ns,
        mode: version.mode,
        uid: version.uid,
        gid: version.gid,
        unchanged: &unchanged,
    };
    let multipart = size >= t.settings.multipart.threshold;
    if multipart {
        // A multipart upload takes a permit per part, so it must not hold one itself.
        *permit = None;
    } else if permit.is_none() {
        let p = tokio::select! {
            _ = t.cancel.cancelled() => return Attempt::Interrupted,
            p = t.limit.clone().acquire_owned() => p.expect("semaphore closed"),
        };
        *permit = Some(p);
    }
    let work = async {
        if multipart {
            s3::put_multipart(
                t.client,
                t.bucket,
                t.key,
                &src,
                t.settings,
                t.limit.clone(),
                t.cancel,
            )
            .await
        } else {
            s3::put(t.client, t.bucket, t.key, &src, t.settings).await
        }
    };
    let result = tokio::select! {
        // Multipart uploads watch the token themselves so that they can abort.
        _ = t.cancel.cancelled(), if !multipart => Err(OpError::Interrupted(Interrupted)),
        r = work => r,
    };
    match result {
        // Checked once more after the server answered: a change after this is later than
        // the object's LastModified, so the next run sees the file as newer.
        Ok(_) if unchanged().is_err() => Attempt::Changed { wrote: true },
        Ok(etag) => Attempt::Done(
            LocalFile {
                rel: walked.rel.clone(),
                size,
                mtime_ns,
            },
            etag.as_deref().map_or(0, crate::s3::listing::etag_hash),
        ),
        Err(_) if changed.load(Ordering::Relaxed) => Attempt::Changed { wrote: false },
        Err(OpError::Interrupted(_)) => Attempt::Interrupted,
        // A failed request of a file that changed (one that shrank cannot be read to its
        // end): try its new version. A single request that failed may still have been
        // stored (its answer lost), so its object counts as possibly torn.
        Err(_) if unchanged().is_err() => Attempt::Changed { wrote: !multipart },
        Err(e) => Attempt::Failed(Failure::of(&e)),
    }
}

/// Uploads one file, again from its new version when it changed while being read (at most
/// [`ATTEMPTS`] times). Returns the version the object now holds. An object written from a
/// changing file that no later attempt replaced is deleted, so no run takes it as current.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upload_one(
    client: Client,
    url: Arc<BucketUrl>,
    path: std::path::PathBuf,
    file: LocalFile,
    own: bool,
    limit: Arc<Semaphore>,
    cancel: CancellationToken,
    mut permit: Option<tokio::sync::OwnedSemaphorePermit>,
    settings: Arc<UploadSettings>,
) -> FileOutcome {
    let key = url.key(&file.rel);
    let name = display_bytes(file.rel.as_bytes());
    let t = Target {
        client: &client,
        bucket: &url.bucket,
        key: &key,
        path: &path,
        own,
        limit: &limit,
        cancel: &cancel,
        settings: &settings,
    };
    let mut torn = false;
    let mut result = FileOutcome::Interrupted;
    // Every attempt saw the file change (the message gets what the bucket keeps).
    let mut kept_changing = false;
    for n in 1..=ATTEMPTS {
        match attempt(&t, &file, &mut permit).await {
            Attempt::Done(v, etag) => {
                torn = false;
                result = FileOutcome::Uploaded(v, etag);
                break;
            }
            Attempt::Changed { wrote } => {
                torn |= wrote;
                if n < ATTEMPTS {
                    log::warn!(target: FLOW, "{name} changed while it was being uploaded (attempt {n} of {ATTEMPTS}); uploading its new version.");
                } else {
                    kept_changing = true;
                    result = FileOutcome::Failed(Failure::new(
                        Cause::LocalIo,
                        format!("changed while being uploaded, on each of {ATTEMPTS} attempts"),
                    ));
                }
            }
            Attempt::Failed(e) => {
                result = FileOutcome::Failed(e);
                break;
            }
            Attempt::Interrupted => {
                result = FileOutcome::Interrupted;
                break;
            }
        }
    }
    drop(permit);
    match result {
        FileOutcome::Uploaded(..) => result,
        _ if torn => {
            let shown = url.show_key(&key);
            let why = match &result {
                FileOutcome::Failed(f) => f.message.clone(),
                _ => "interrupted".to_string(),
            };
            match s3::delete_object(&client, &url.bucket, &key).await {
                Ok(()) => {
                    log::warn!(target: FLOW, "Deleted {shown}: it was written while {name} changed and may be torn.");
                    match result {
                        FileOutcome::Failed(f) => FileOutcome::Failed(Failure::new(
                            f.cause,
                            format!("{why}; the object written meanwhile was deleted, so the next run uploads it again"),
                        )),
                        other => other,
                    }
                }
                Err(d) => {
                    let cause = match &result {
                        FileOutcome::Failed(f) => f.cause,
                        _ => d.cause,
                    };
                    FileOutcome::Failed(Failure::new(cause, format!(
                        "{why}; {shown} was written while the file changed and may be torn, and could not be deleted ({d})"
                    )))
                }
            }
        }
        FileOutcome::Failed(f) if kept_changing => FileOutcome::Failed(Failure::new(
            f.cause,
            format!(
                "{}; nothing was written, the bucket keeps its previous object of this key (if any)",
                f.message
            ),
        )),
        other => other,
    }
}
