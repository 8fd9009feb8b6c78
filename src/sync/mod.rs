//! The sync, as one stream: [`walk`] the source in key order into a spill file (the name
//! check finishes there, before anything is uploaded), list the prefix in key order
//! ([`crate::s3::listing::list_sorted`]), merge the two and decide each key as it passes
//! ([`plan`]), upload through bounded dispatch as the decisions come ([`transfer`]), and keep
//! only what must wait for the end in spill files: the deletes and the directory markers, done
//! once every upload succeeded ([`delete`]). Then [`verify`] merges the walk with a listing
//! again. Memory does not grow with the tree: one directory's names per level of the walk,
//! one sort buffer of the listing, a bounded queue of decisions and the tasks in flight.

pub mod delete;
pub mod job;
pub mod merge;
pub mod mtime_cache;
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
use crate::options::Options;
use crate::progress::{self, Progress};
use crate::report::{Cause, S3Kind, Summary};
use crate::run::dispatch::{Dispatch, Finished, Stop};
use crate::run::outcome::{ItemFailure, Stage};
use crate::run::sorted::Sorted;
use crate::run::spill::Spilled;
use crate::run::{failed, RunError};
use crate::s3;
use crate::s3::listing::Listed;
use crate::sync::mtime_cache::MtimeCache;
use crate::{FLOW, OUTPUT};
use job::QUEUE;
pub use job::{temp_failed, walk_checked, walk_to_spill, Features, Found, Job, Synced};
use merge::{merge, Work};
use plan::{Mode, UploadReason};
use walk::{Local, LocalFile};

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
/// and deletes only if everything before succeeded. What it did goes into `summary`, whether
/// it fails or not.
#[allow(clippy::too_many_arguments)]
pub async fn synchronize(
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
            log::info!(target: FLOW, "Uploading files as the merge finds them.");
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
                        counters.add_planned(file.size);
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
    if uploads_started {
        log::info!(target: FLOW, "Uploaded {} files ({} bytes).", summary.uploaded, summary.uploaded_bytes);
    }
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
            let mut synced = Synced::default();
            let result = synchronize(
                &client,
                &job,
                &source,
                lock,
                &walked,
                &phases.found,
                listing.clone(),
                &mut synced,
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
    let mut verified = verify::Verified::default();
    let result = verify::verify(
        &client,
        &job,
        &source,
        verify::LocalSide::Walked(walked),
        known,
        Arc::new(versions),
        phases.found.unreadable,
        &mut verified,
        cancel,
    )
    .await;
    phases.durations.push(("verify", started.elapsed()));
    phases.verified = Some(verified);
    result
}
