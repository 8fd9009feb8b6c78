//! The sync, as one stream: [`walk`] the source in key order into a spill file (the name
//! check finishes there, before anything is uploaded), list the prefix in key order
//! ([`crate::s3::listing::list_sorted`]), merge the two and decide each key as it passes
//! ([`plan`]), upload through bounded dispatch as the decisions come ([`transfer`]), and keep
//! only what must wait for the end in spill files: the deletes and the directory markers, done
//! once every upload succeeded ([`delete`]). Then [`verify`] merges the walk with a listing
//! again. Memory does not grow with the tree: one directory's names per level of the walk,
//! one sort buffer of the listing, a bounded queue of decisions and the tasks in flight.

pub mod delete;
pub mod plan;
pub mod transfer;
pub mod verify;
pub mod walk;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::display::display_bytes;
use crate::lock::RunLock;
use crate::mtime_cache::MtimeCache;
use crate::options::Options;
use crate::progress::{self, Progress};
use crate::report::{Cause, S3Kind, Summary};
use crate::run::dispatch::{Dispatch, Finished, Stop};
use crate::run::outcome::{Failures, ItemFailure, Stage};
use crate::run::sorted::Sorted;
use crate::run::spill::{Spill, Spilled};
use crate::run::{failed, RunError};
use crate::s3::listing::Listed;
use crate::s3::{self, UploadSettings};
use crate::{FLOW, OUTPUT};
use plan::{Mode, Step, UploadReason};
use walk::{Local, LocalFile};

/// What a run may do, resolved from the options.
#[derive(Debug, Clone)]
pub struct Job {
    pub url: BucketUrl,
    pub mode: Mode,
    pub concurrency: usize,
    pub allow_empty_source: bool,
    pub ignore_warnings: bool,
    pub features: Features,
}

/// What this project adds to a run beyond the original's switches; the default is the
/// original's behaviour.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// `--dryRun`: log the plan and change nothing; the verify step is skipped.
    pub dry_run: bool,
    /// `--maxDeletes`: a full sync that would delete more objects deletes none and fails.
    pub max_deletes: Option<usize>,
    /// `--verifyContent`: compare checksums as well as sizes.
    pub verify_content: bool,
    /// Storage class and server-side encryption of uploads.
    pub upload: UploadSettings,
}

impl Features {
    pub fn from_options(opts: &Options) -> Self {
        use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
        Features {
            dry_run: opts.dry_run,
            max_deletes: opts.max_deletes,
            verify_content: opts.verify_content,
            upload: UploadSettings {
                storage_class: opts.storage_class.as_deref().map(StorageClass::from),
                sse: opts.sse.as_deref().map(ServerSideEncryption::from),
                sse_kms_key_id: opts.sse_kms_key_id.clone(),
                progress: None,
                ..UploadSettings::default()
            },
        }
    }
}

impl Job {
    /// Applies the profile's `s3` settings (see [`crate::s3::settings`]) where the command
    /// line did not decide: concurrency, multipart sizes, bandwidth.
    pub fn apply_s3_settings(
        &mut self,
        s3: &crate::s3::settings::ProfileS3,
        max_concurrency: Option<usize>,
        max_bandwidth: Option<u64>,
    ) {
        use crate::s3::settings::{show_rate, Bandwidth, Multipart};
        if let (None, Some(n)) = (max_concurrency, s3.max_concurrent_requests) {
            self.concurrency = n;
        }
        let upload = &mut self.features.upload;
        upload.multipart = Multipart::from_profile(s3);
        let rate = crate::s3::settings::rate_limit(s3, max_bandwidth);
        upload.bandwidth = rate.as_ref().map(|(r, _)| Arc::new(Bandwidth::new(*r)));
        if let Some((r, from)) = rate {
            log::info!(target: FLOW, "Uploads limited to {} in all ({from}).", show_rate(r));
        }
        log::debug!(target: FLOW, "{} requests at a time; multipart from {} bytes, parts of {} bytes", self.concurrency, upload.multipart.threshold, upload.multipart.part_size);
    }

    pub fn from_options(opts: &Options) -> Result<Self, RunError> {
        let Some(raw) = &opts.s3_bucket_url else {
            return Err(failed(
                Cause::BadInput,
                "Source directory and S3 bucket URL are both required.".into(),
            ));
        };
        let url = BucketUrl::parse(raw).map_err(|e| failed(Cause::BadInput, e.to_string()))?;
        let mode = if opts.verify_only {
            Mode::VerifyOnly
        } else if opts.upload_only {
            Mode::UploadOnly
        } else {
            Mode::Full
        };
        Ok(Job {
            url,
            mode,
            concurrency: opts.concurrency(),
            allow_empty_source: opts.allow_empty_source,
            ignore_warnings: opts.ignore_warnings,
            features: Features::from_options(opts),
        })
    }
}

/// What the walk found, for the run's summary (also when it fails).
#[derive(Debug, Default)]
pub struct Found {
    pub local_files: usize,
    pub local_bytes: u64,
    pub local_dirs: usize,
    pub skipped: usize,
    pub name_problems: usize,
    /// Paths that could not be read: the run deletes nothing.
    pub unreadable: usize,
    pub failures: Failures,
}

/// Walks `source` in key order, checking every name, and hands each entry to `entry`; logs
/// and counts everything else as it is met. Name problems fail the run unless
/// `ignore_warnings`, in which case those files are left out (and counted). `own` are the run's
/// own files (device and inode).
pub fn walk_checked(
    source: &Path,
    url: &BucketUrl,
    ignore_warnings: bool,
    own: &[(u64, u64)],
    stop: &dyn Fn() -> bool,
    entry: &mut dyn FnMut(Local) -> std::io::Result<()>,
) -> (Found, Result<(), RunError>) {
    let found = std::cell::RefCell::new(Found::default());
    let walked = walk::walk_sorted(
        source,
        url.prefix.len(),
        own,
        stop,
        &mut |e: Local| {
            let mut f = found.borrow_mut();
            match &e {
                Local::File { file, own } => {
                    f.local_files += 1;
                    f.local_bytes += file.size;
                    if *own {
                        log::info!(target: FLOW, "{} is this run's own file: it is copied as the walk saw it and checked only for presence.", display_bytes(file.rel.as_bytes()));
                    }
                }
                Local::Dir(_) => f.local_dirs += 1,
            }
            entry(e)
        },
        &mut |met| {
            let mut f = found.borrow_mut();
            match met {
                walk::Found::Skipped(s) => {
                    log::warn!(target: FLOW, "Skipping {} ({})", s.path, s.why);
                    f.skipped += 1;
                }
                walk::Found::Failure(w) => {
                    log::error!(target: FLOW, "Cannot read {}: {}", w.path, w.error);
                    f.unreadable += 1;
                    f.failures.push(ItemFailure::new(
                        w.path,
                        Stage::Read,
                        Cause::LocalIo,
                        format!("cannot read: {}", w.error),
                    ));
                }
                walk::Found::Problem(p) => {
                    f.name_problems += 1;
                    if ignore_warnings {
                        log::warn!(target: FLOW, "Skipping: {p}");
                    } else {
                        log::error!(target: FLOW, "{p}");
                        let path = match &p {
                            walk::NameProblem::NotUtf8(p) => p.clone(),
                            walk::NameProblem::KeyTooLong { rel, .. } => rel.clone(),
                        };
                        f.failures.push(ItemFailure::new(
                            path,
                            Stage::Name,
                            Cause::BadInput,
                            p.to_string(),
                        ));
                    }
                }
            }
        },
    );
    let found = found.into_inner();
    let result = match walked {
        Err(e) => Err(failed(Cause::BadInput, e.to_string())),
        // A signal: the tree is only partly walked, so nothing of it is reported.
        Ok(()) if stop() => Err(RunError::Interrupted),
        Ok(()) if found.name_problems == 0 => {
            log::info!(target: FLOW, "Completed checking source filename encoding (no problems found).");
            Ok(())
        }
        Ok(()) if ignore_warnings => {
            log::warn!(target: FLOW, "Skipped {} files whose names cannot be S3 keys (-w given).", found.name_problems);
            Ok(())
        }
        Ok(()) => Err(failed(Cause::BadInput, format!("{} files have names that cannot be S3 keys; nothing was uploaded. Rename them, or use -w to skip them.", found.name_problems))),
    };
    (found, result)
}

/// The walk into a spill file: what the merge and the verification read back.
pub fn walk_to_spill(
    source: &Path,
    url: &BucketUrl,
    ignore_warnings: bool,
    own: &[(u64, u64)],
    stop: &dyn Fn() -> bool,
) -> (Found, Result<Spilled<Local>, RunError>) {
    let mut spill = match Spill::new() {
        Ok(s) => s,
        Err(e) => return (Found::default(), Err(temp_failed(e))),
    };
    let (found, result) = walk_checked(source, url, ignore_warnings, own, stop, &mut |e| {
        spill.push(&e)
    });
    let result = result.and_then(|()| spill.finish().map_err(temp_failed));
    (found, result)
}

/// A spill file could not be written or read back.
pub fn temp_failed(e: impl std::fmt::Display) -> RunError {
    failed(
        Cause::LocalIo,
        format!("cannot use a temporary file (TMPDIR): {e}"),
    )
}

/// What the sync phase did (also when it fails), for the run's summary.
#[derive(Default)]
pub struct Synced {
    /// Whether the bucket changed (so verification lists it again).
    pub changed: bool,
    /// Files uploaded in another version than the walk saw (changed meanwhile), by relative
    /// name: verification compares their objects with these. Grows with the files that change
    /// during the run, not with the tree.
    pub versions: HashMap<Box<str>, LocalFile>,
    pub unchanged: usize,
    pub planned_uploads: usize,
    pub planned_upload_bytes: u64,
    pub planned_deletes: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub deleted: usize,
    /// Directory markers put and deleted.
    pub markers_put: usize,
    pub markers_deleted: usize,
    pub failed: usize,
    pub failures: Failures,
}

/// One decision of the merge that needs the network.
enum Work {
    Upload {
        file: LocalFile,
        own: bool,
        reason: UploadReason,
    },
    /// Same size, newer than LastModified, and the cache does not know the object: asked.
    Ambiguous {
        file: LocalFile,
        own: bool,
        remote: plan::RemoteObject,
    },
}

/// What the merge kept for the end of the sync.
struct Merged {
    unchanged: usize,
    /// Deletes of files' objects and of markers (relative keys, key order).
    deletes: Spilled<Box<str>>,
    marker_deletes: Spilled<Box<str>>,
    /// Markers to put, with the reason (key order).
    marker_puts: Spilled<Local>,
    /// Markers the listing held (none: this is the first run that puts markers here).
    remote_markers: usize,
    /// The server's form of each planned upload whose key a server that rewrites keys may
    /// store under another name (`a\b` as `a/b`): such an object is not deleted. Grows with
    /// such names only.
    aliases: HashMap<String, Box<str>>,
    /// Decisions not sent because the uploads had stopped.
    not_sent: usize,
}

/// Decisions waiting for a slot: a bounded queue between the merge and the uploads.
const QUEUE: usize = 256;

/// The merge, on its own thread: reads the walk back and the sorted listing, decides each
/// key, sends what needs the network to `tx`, spills the rest.
fn merge(
    walked: Spilled<Local>,
    listing: Arc<Sorted<Listed>>,
    job: &Job,
    cache: &Mutex<MtimeCache>,
    tx: tokio::sync::mpsc::Sender<Work>,
    planned: &Progress,
) -> Result<Merged, RunError> {
    let mut deletes = Spill::new().map_err(temp_failed)?;
    let mut marker_deletes = Spill::new().map_err(temp_failed)?;
    let mut marker_puts = Spill::new().map_err(temp_failed)?;
    let (mut unchanged, mut remote_markers, mut not_sent) = (0, 0, 0);
    let mut aliases = HashMap::new();
    let url = &job.url;
    let dry_run = job.features.dry_run;
    let send = |w: Work, not_sent: &mut usize| {
        if tx.blocking_send(w).is_err() {
            *not_sent += 1;
        }
    };
    for pair in plan::Join::new(walked.iter(), listing.iter()) {
        let pair = pair.map_err(|e| {
            failed(
                Cause::Internal,
                format!("The sync stopped before it changed anything it should not: {e}."),
            )
        })?;
        if let plan::Pair::Remote(r) | plan::Pair::Both(_, r) = &pair {
            if plan::is_marker(&r.rel, &r.obj) {
                remote_markers += 1;
            }
        }
        match plan::decide(pair, job.mode) {
            Step::Unchanged | Step::MarkerUnchanged | Step::Keep => unchanged += 1,
            Step::Upload { file, own, reason } => {
                planned
                    .files_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                planned
                    .bytes_total
                    .fetch_add(file.size, std::sync::atomic::Ordering::Relaxed);
                let form = plan::server_form(&file.rel);
                if form != *file.rel {
                    aliases.insert(form, file.rel.clone());
                }
                if dry_run {
                    log::info!(target: FLOW, "(dryrun) upload: {} to {} ({reason})", display_bytes(file.rel.as_bytes()), url.show(&file.rel));
                } else {
                    send(Work::Upload { file, own, reason }, &mut not_sent);
                }
            }
            Step::Ambiguous { file, own, remote } => {
                let known = cache.lock().expect("cache").lookup(&file.rel, &remote);
                match known {
                    Some(m) => match plan::resolve_ambiguous(&file, Some(&m)) {
                        None => unchanged += 1,
                        Some(reason) => {
                            planned
                                .files_total
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            planned
                                .bytes_total
                                .fetch_add(file.size, std::sync::atomic::Ordering::Relaxed);
                            if dry_run {
                                log::info!(target: FLOW, "(dryrun) upload: {} to {} ({reason})", display_bytes(file.rel.as_bytes()), url.show(&file.rel));
                            } else {
                                send(Work::Upload { file, own, reason }, &mut not_sent);
                            }
                        }
                    },
                    None => send(Work::Ambiguous { file, own, remote }, &mut not_sent),
                }
            }
            Step::PutMarker(d, _) => marker_puts.push(&Local::Dir(d)).map_err(temp_failed)?,
            Step::Delete(k) => deletes.push(&k).map_err(temp_failed)?,
            Step::DeleteMarker(k) => marker_deletes.push(&k).map_err(temp_failed)?,
        }
    }
    Ok(Merged {
        unchanged,
        deletes: deletes.finish().map_err(temp_failed)?,
        marker_deletes: marker_deletes.finish().map_err(temp_failed)?,
        marker_puts: marker_puts.finish().map_err(temp_failed)?,
        remote_markers,
        aliases,
        not_sent,
    })
}

/// How one dispatched decision ended.
enum Done {
    Uploaded {
        walked: LocalFile,
        stored: LocalFile,
        etag: u64,
    },
    /// An ambiguous file whose recorded mtime is its own: unchanged.
    Same,
    /// Dry run: an ambiguous file that a real run would upload.
    WouldUpload,
    Failed(String, transfer::Failure),
    Interrupted,
}

/// A test hook of debug builds: the upload task of a file whose name contains this text
/// panics, to prove a panicked task is counted.
fn panic_hook(rel: &str) {
    #[cfg(debug_assertions)]
    if let Some(t) = std::env::var_os("CBACK3_TEST_PANIC_UPLOAD") {
        if rel.contains(&*t.to_string_lossy()) {
            panic!("test hook: upload of {rel}");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = rel;
}

/// Settles an ambiguous file (see [`plan::resolve_ambiguous`]) with one HeadObject, whose
/// answer the cache learns. `Some(reason)`: upload.
async fn ask(
    client: &Client,
    url: &BucketUrl,
    file: &LocalFile,
    remote: &plan::RemoteObject,
    cache: &Mutex<MtimeCache>,
) -> Option<UploadReason> {
    let meta = s3::head_mtime(client, &url.bucket, &url.key(&file.rel))
        .await
        .unwrap_or_else(|e| {
            log::debug!(target: OUTPUT, "{e} (taken as no mtime metadata)");
            None
        });
    if let Some(m) = &meta {
        cache.lock().expect("cache").learn(&file.rel, remote, m);
    }
    plan::resolve_ambiguous(file, meta.as_deref())
}

/// Plans from the walk and the listing (taken in this run, after `lock` was taken), uploads,
/// and deletes only if everything before succeeded. Returns what it did, whether it failed
/// or not.
pub async fn synchronize(
    client: &Client,
    job: &Job,
    root: &Path,
    lock: &RunLock,
    walked: &Spilled<Local>,
    found: &Found,
    listing: Arc<Sorted<Listed>>,
    cancel: &CancellationToken,
) -> (Synced, Result<(), RunError>) {
    let mut synced = Synced::default();
    let result = synchronize_into(
        client,
        job,
        root,
        lock,
        walked,
        found,
        listing,
        &mut synced,
        cancel,
    )
    .await;
    (synced, result)
}

#[allow(clippy::too_many_arguments)]
async fn synchronize_into(
    client: &Client,
    job: &Job,
    root: &Path,
    lock: &RunLock,
    walked: &Spilled<Local>,
    found: &Found,
    listing: Arc<Sorted<Listed>>,
    summary: &mut Synced,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let url = &job.url;
    debug_assert_eq!(&lock.target.url, url, "the lock is for another target");
    log::info!(target: FLOW, "Synchronizing local source directory up to Amazon S3.");
    match job.mode {
        Mode::UploadOnly => {
            log::info!(target: FLOW, "Sync process will only upload new data, never removing files in S3")
        }
        _ => {
            log::info!(target: FLOW, "This will be a full sync process, removing any S3 files that do not exist in the source")
        }
    }
    if !job.features.dry_run {
        lock.check()?;
    }
    let cache = Arc::new(Mutex::new(MtimeCache::load(&lock.target)));
    let counters = Progress::new(0, 0);
    let mut settings = job.features.upload.clone();
    settings.progress = Some(counters.clone());
    let settings = Arc::new(settings);
    let (tx, mut rx) = tokio::sync::mpsc::channel(QUEUE);
    let merging = {
        let (walked, job, cache, counters) =
            (walked.clone(), job.clone(), cache.clone(), counters.clone());
        tokio::task::spawn_blocking(move || merge(walked, listing, &job, &cache, tx, &counters))
    };
    let shown = progress::Display::start("Uploading", counters.clone());
    let mut dispatch: Dispatch<Done> = Dispatch::new(job.concurrency, cancel);
    let recent_from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.saturating_sub(transfer::RECENT).as_nanos() as i128);
    let (mut uploads_started, mut stopped, mut not_attempted) = (false, None, 0usize);
    let mut interrupted = false;
    let mut collect = |f: Finished<Done>| match f {
        Finished::Done(Done::Uploaded {
            walked,
            stored,
            etag,
        }) => {
            summary.uploaded += 1;
            summary.uploaded_bytes += stored.size;
            summary.changed = true;
            if etag != 0 && stored.mtime_ns >= recent_from {
                cache.lock().expect("cache").uploaded(&stored, etag);
            }
            if stored != walked {
                summary.versions.insert(stored.rel.clone(), stored);
            }
        }
        Finished::Done(Done::Same) => summary.unchanged += 1,
        Finished::Done(Done::WouldUpload) => {}
        Finished::Done(Done::Interrupted) => interrupted = true,
        Finished::Done(Done::Failed(name, f)) => {
            log::error!(target: FLOW, "Failed to upload {name}: {}", f.message);
            summary.changed = true;
            summary.failed += 1;
            summary
                .failures
                .push(ItemFailure::new(name, Stage::Upload, f.cause, f.message));
        }
        Finished::Lost { item, why } => {
            log::error!(target: FLOW, "Failed to upload {item}: {why}");
            summary.changed = true;
            summary.failed += 1;
            summary
                .failures
                .push(ItemFailure::new(item, Stage::Upload, Cause::Internal, why));
        }
    };
    while let Some(work) = rx.recv().await {
        if stopped.is_some() {
            not_attempted += 1;
            continue;
        }
        let permit = match dispatch.slot(&mut collect).await {
            Ok(p) => p,
            Err(s) => {
                stopped = Some(s);
                not_attempted += 1;
                if s == Stop::Interrupted {
                    break;
                }
                continue;
            }
        };
        if !uploads_started && matches!(work, Work::Upload { .. }) {
            uploads_started = true;
            log::info!(target: FLOW, "Uploading files.");
        }
        let (client, url, settings, cancel, cache) = (
            client.clone(),
            Arc::new(job.url.clone()),
            settings.clone(),
            cancel.clone(),
            cache.clone(),
        );
        let limit = dispatch.permits();
        let dry_run = job.features.dry_run;
        let (file, own, reason, remote) = match work {
            Work::Upload { file, own, reason } => (file, own, Some(reason), None),
            Work::Ambiguous { file, own, remote } => (file, own, None, Some(remote)),
        };
        let name = display_bytes(file.rel.as_bytes());
        let counters = counters.clone();
        let path = root.join(&*file.rel);
        dispatch.spawn(name.clone(), async move {
            panic_hook(&file.rel);
            let reason = match (reason, remote) {
                (Some(r), _) => r,
                (None, Some(remote)) => match ask(&client, &url, &file, &remote, &cache).await {
                    None => return Done::Same,
                    Some(r) => {
                        counters.files_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        counters.bytes_total.fetch_add(file.size, std::sync::atomic::Ordering::Relaxed);
                        if dry_run {
                            log::info!(target: FLOW, "(dryrun) upload: {name} to {} ({r})", url.show(&file.rel));
                            return Done::WouldUpload;
                        }
                        r
                    }
                },
                (None, None) => unreachable!("a decision is an upload or a question"),
            };
            log::info!(target: OUTPUT, "upload: {name} to {} ({reason})", url.show(&file.rel));
            // A multipart upload takes a permit per part, so it must not hold one itself.
            let permit = (file.size < settings.multipart.threshold).then_some(permit);
            match transfer::upload_one(client, url, path, file.clone(), own, limit, cancel, permit, settings).await {
                transfer::FileOutcome::Uploaded(stored, etag) => Done::Uploaded { walked: file, stored, etag },
                transfer::FileOutcome::Failed(f) => Done::Failed(name, f),
                transfer::FileOutcome::Interrupted => Done::Interrupted,
            }
        });
    }
    drop(rx);
    dispatch.finish(&mut collect).await;
    shown.finish().await;
    let merged = merging
        .await
        .map_err(|e| failed(Cause::Internal, format!("the merge failed: {e}")))??;
    not_attempted += merged.not_sent;
    summary.unchanged += merged.unchanged;
    summary.planned_uploads = counters
        .files_total
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    summary.planned_upload_bytes = counters
        .bytes_total
        .load(std::sync::atomic::Ordering::Relaxed);
    summary.planned_deletes = (merged.deletes.len() + merged.marker_deletes.len()) as usize;
    if interrupted || stopped == Some(Stop::Interrupted) || cancel.is_cancelled() {
        log::error!(target: FLOW, "Interrupted after {} uploads; nothing was deleted.", summary.uploaded);
        return Err(RunError::Interrupted);
    }
    if stopped == Some(Stop::Unhealthy) {
        return Err(failed(
            Cause::S3(S3Kind::NoAnswer),
            format!(
                "{} Nothing was deleted.",
                crate::health::stopped_answering(summary.failed, not_attempted, "uploads")
            ),
        ));
    }
    if summary.failed > 0 {
        return Err(failed(
            summary.failures.first_cause().unwrap_or(Cause::Internal),
            format!("{} uploads failed; nothing was deleted.", summary.failed),
        ));
    }
    if job.mode == Mode::Full
        && found.local_files == 0
        && summary.planned_deletes > 0
        && !job.allow_empty_source
    {
        return Err(failed(Cause::BadInput, format!("Source directory {} has no files but {url} holds {} objects; refusing to delete them all (use --allowEmptySource if that is intended).", crate::display::display_path(root), summary.planned_deletes)));
    }
    if job.features.dry_run {
        return delete::dry_run(job, found, &merged, summary);
    }
    delete::put_markers(client, job, &merged, summary, cancel).await?;
    delete::deletes_allowed(job, found, summary.planned_deletes)?;
    lock.check()?;
    delete::delete_all(client, job, &merged, summary, cancel).await?;
    cache.lock().expect("cache").save();
    Ok(())
}

/// The run's own files, by device and inode: its logfile, summary file and lock file. A
/// source that contains them (backing up /var/log) must not fail because they change.
fn own_identities(opts: &Options, lock: Option<&RunLock>) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    [
        Some(opts.logfile_path()),
        opts.summary_file.clone(),
        lock.map(|l| l.path.clone()),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| std::fs::metadata(p).ok())
    .map(|m| (m.dev(), m.ino()))
    .collect()
}

/// What each phase of a run returned, as far as the run got.
#[derive(Default)]
struct Phases {
    found: Found,
    synced: Option<Synced>,
    verified: Option<verify::Verified>,
    durations: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// The run's summary, assembled from what its phases did.
    fn summary(self) -> Summary {
        let synced = self.synced.unwrap_or_default();
        let verified = self.verified.unwrap_or_default();
        let mut failures = self.found.failures;
        failures.extend(synced.failures);
        failures.extend(verified.failures);
        Summary {
            local_files: self.found.local_files,
            local_bytes: self.found.local_bytes,
            local_dirs: self.found.local_dirs,
            markers_put: synced.markers_put,
            markers_deleted: synced.markers_deleted,
            skipped: self.found.skipped,
            name_problems: self.found.name_problems,
            uploaded: synced.uploaded + verified.uploaded,
            uploaded_bytes: synced.uploaded_bytes + verified.uploaded_bytes,
            unchanged: synced.unchanged,
            deleted: synced.deleted,
            failed: synced.failed + verified.failed,
            verified: verified.verified,
            verify_errors: verified.verify_errors,
            extra_objects: verified.extra_objects,
            planned_uploads: synced.planned_uploads,
            planned_upload_bytes: synced.planned_upload_bytes,
            planned_deletes: synced.planned_deletes,
            content_verified: verified.content_verified,
            content_unverifiable: verified.content_unverifiable,
            phases: self.durations,
            failures: failures.lines(),
            ..Summary::default()
        }
    }
}

/// A whole sync run (walk, sync, verify) with the reason it stopped, for the command and the
/// Python shim, and the summary of what it did (also when it failed).
pub async fn run_phases(
    opts: &Options,
    cancel: &CancellationToken,
) -> (Summary, Result<(), RunError>) {
    let mut phases = Phases::default();
    let result = run_collecting(opts, cancel, &mut phases, true).await;
    (phases.summary(), result)
}

/// [`run_phases`] without the verify phase: what the Python `_synchronizeBucket` runs (the
/// lock, stray uploads aborted, the run's own files, the sync itself).
pub async fn sync_phases(
    opts: &Options,
    cancel: &CancellationToken,
) -> (Summary, Result<(), RunError>) {
    let mut phases = Phases::default();
    let result = run_collecting(opts, cancel, &mut phases, false).await;
    (phases.summary(), result)
}

/// A spawned task that is aborted when dropped before it was awaited.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

/// Takes the run lock for the job's target (see [`crate::lock`]), without waiting. Both front
/// ends take it before they list the prefix.
pub fn lock(job: &Job, endpoint: Option<&str>) -> Result<RunLock, RunError> {
    Ok(crate::lock::acquire(&crate::lock::Target::new(
        endpoint, &job.url,
    ))?)
}

async fn run_collecting(
    opts: &Options,
    cancel: &CancellationToken,
    phases: &mut Phases,
    verify_after: bool,
) -> Result<(), RunError> {
    let mut job = Job::from_options(opts)?;
    if cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    let Some(source) = opts.source_dir.clone() else {
        return Err(failed(
            Cause::BadInput,
            "Source directory and S3 bucket URL are both required.".into(),
        ));
    };
    let (client, endpoint, s3_settings) = s3::client_for_run()
        .await
        .map_err(|e| failed(Cause::Config, e))?;
    job.apply_s3_settings(&s3_settings, opts.max_concurrency, opts.max_bandwidth);
    // One changing run per target at a time (see `lock`), taken before the listing and
    // held until the run returns.
    let lock = match job.mode {
        Mode::VerifyOnly => None,
        _ => Some(lock(&job, endpoint.as_deref())?),
    };
    log::info!(target: FLOW, "Source {} to {} ({:?})", crate::display::display_path(&source), job.url, job.mode);
    // The walk (blocking, on its own thread, into a spill file) and the listing run at the
    // same time.
    let (url, ignore) = (job.url.clone(), job.ignore_warnings);
    let own = own_identities(opts, lock.as_ref());
    let started = Instant::now();
    let walking = {
        let (cancel, source) = (cancel.clone(), source.clone());
        tokio::task::spawn_blocking(move || {
            walk_to_spill(&source, &url, ignore, &own, &|| cancel.is_cancelled())
        })
    };
    let listing_task = {
        let (client, url, cancel) = (client.clone(), job.url.clone(), cancel.clone());
        AbortOnDrop(Some(tokio::spawn(async move {
            crate::s3::listing::list_sorted(&client, &url, &cancel).await
        })))
    };
    // Open multipart uploads under the prefix are leftovers of killed runs (the lock excludes
    // other runs here, and this run's uploads start later): aborted while the listing runs.
    // Aborted if the run stops first (a failed listing says all there is to say).
    let mut strays_task = AbortOnDrop((job.mode != Mode::VerifyOnly).then(|| {
        let (client, url, cancel) = (client.clone(), job.url.clone(), cancel.clone());
        let dry_run = job.features.dry_run;
        tokio::spawn(async move {
            s3::abort_prefix_strays(&client, &url.bucket, &url.prefix, dry_run, &cancel).await
        })
    }));
    let (found, walked) = walking
        .await
        .map_err(|e| failed(Cause::Internal, format!("source walk failed: {e}")))?;
    phases.found = found;
    let walked = walked?;
    if cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    let mut listing_task = listing_task;
    let listing = listing_task
        .0
        .take()
        .expect("listing task")
        .await
        .map_err(|e| failed(Cause::Internal, format!("listing failed: {e}")))??;
    let listing = Arc::new(listing);
    if let Some(t) = strays_task.0.take() {
        // Best effort, but finished before any upload starts.
        if let Ok(Err(why)) = t.await {
            log::warn!(target: FLOW, "{why}");
        }
    }
    phases.durations.push(("prepare", started.elapsed()));
    let (known, versions) = match &lock {
        None => (Some(listing), HashMap::new()),
        Some(lock) => {
            let started = Instant::now();
            let (mut synced, result) = synchronize(
                &client,
                &job,
                &source,
                lock,
                &walked,
                &phases.found,
                listing.clone(),
                cancel,
            )
            .await;
            phases.durations.push(("synchronize", started.elapsed()));
            let versions = std::mem::take(&mut synced.versions);
            let changed = synced.changed;
            phases.synced = Some(synced);
            result?;
            ((!changed).then_some(listing), versions)
        }
    };
    if !verify_after {
        return Ok(());
    }
    // With -v there is nothing to dry-run: the check itself changes nothing, so it runs.
    if job.features.dry_run && job.mode != Mode::VerifyOnly {
        log::info!(target: FLOW, "Dry run: verification skipped (nothing was uploaded).");
        return Ok(());
    }
    let started = Instant::now();
    let (verified, result) = verify::verify(
        &client,
        &job,
        &source,
        verify::LocalSide::Walked(walked),
        known,
        Arc::new(versions),
        phases.found.unreadable,
        cancel,
    )
    .await;
    phases.durations.push(("verify", started.elapsed()));
    phases.verified = Some(verified);
    result
}
