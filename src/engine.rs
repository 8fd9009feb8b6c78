//! One run, in phases: prepare (walk + name check), synchronize (plan, uploads, deletes),
//! verify. Each phase is public so the Python shim can offer the original's lower-level
//! functions; [`run`] chains them for the command line.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::display::display_bytes;
use crate::lock::RunLock;
use crate::options::Options;
use crate::plan::{self, Listing, Mode};
use crate::progress::{self, Progress};
use crate::report::{Cause, S3Kind, Summary};
use crate::s3::{self, UploadSettings};
use crate::walk::{self, SourceTree};
use crate::{content, markers, transfer, verify, FLOW, OUTPUT};

pub use crate::run::{failed, RunError};

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
    /// Indices in the tree of the run's own files (its logfile, summary file and lock file
    /// when they are in the source): copied as the walk saw them, never a reason to fail.
    pub own_files: Vec<usize>,
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
            own_files: Vec::new(),
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
        upload.bandwidth = rate
            .as_ref()
            .map(|(r, _)| std::sync::Arc::new(Bandwidth::new(*r)));
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

/// Walks the source and checks every name. Name problems fail the run unless
/// `ignore_warnings`, in which case those files are left out (and counted).
pub fn prepare(
    source: &Path,
    url: &BucketUrl,
    ignore_warnings: bool,
) -> Result<SourceTree, RunError> {
    prepare_noting(source, url, ignore_warnings, &[], &|| false)
        .1
        .map(|(tree, _)| tree)
}

/// What the prepare phase found, for the run's summary (also when it fails).
#[derive(Debug, Default)]
pub struct Found {
    pub local_files: usize,
    pub local_bytes: u64,
    pub local_dirs: usize,
    pub skipped: usize,
    pub name_problems: usize,
    /// Each path that could not be read or named, and why.
    pub failures: Vec<(String, String)>,
}

/// [`prepare`], also returning the indices of the files that are one of `own` (device and
/// inode): the run's own logfile, summary file and lock file; and what it found, whether it
/// failed or not.
pub fn prepare_noting(
    source: &Path,
    url: &BucketUrl,
    ignore_warnings: bool,
    own: &[(u64, u64)],
    stop: &dyn Fn() -> bool,
) -> (Found, Result<(SourceTree, Vec<usize>), RunError>) {
    let mut found = Found::default();
    let result = prepare_finding(source, url, ignore_warnings, own, stop, &mut found);
    (found, result)
}

fn prepare_finding(
    source: &Path,
    url: &BucketUrl,
    ignore_warnings: bool,
    own: &[(u64, u64)],
    stop: &dyn Fn() -> bool,
    found: &mut Found,
) -> Result<(SourceTree, Vec<usize>), RunError> {
    let (tree, own) = walk::walk_noting_until(source, url.prefix.len(), own, stop)
        .map_err(|e| failed(Cause::BadInput, e.to_string()))?;
    if stop() {
        // A signal: the tree is only partly walked, so nothing of it is reported.
        return Err(RunError::Interrupted);
    }
    found.local_files = tree.files.len();
    found.local_bytes = tree.total_bytes();
    found.local_dirs = tree.dirs.len();
    found.skipped = tree.skipped.len();
    found.name_problems = tree.problems.len();
    for s in &tree.skipped {
        log::warn!(target: FLOW, "Skipping {} ({})", s.path, s.why);
    }
    for f in &tree.failures {
        log::error!(target: FLOW, "Cannot read {}: {}", f.path, f.error);
        found
            .failures
            .push((f.path.clone(), format!("cannot read: {}", f.error)));
    }
    if tree.problems.is_empty() {
        log::info!(target: FLOW, "Completed checking source filename encoding (no problems found).");
    } else {
        if ignore_warnings {
            for p in &tree.problems {
                log::warn!(target: FLOW, "Skipping: {p}");
            }
            log::warn!(target: FLOW, "Skipped {} files whose names cannot be S3 keys (-w given).", tree.problems.len());
        } else {
            for p in &tree.problems {
                log::error!(target: FLOW, "{p}");
                let path = match p {
                    walk::NameProblem::NotUtf8(p) => p.clone(),
                    walk::NameProblem::KeyTooLong { rel, .. } => rel.clone(),
                };
                found.failures.push((path, p.to_string()));
            }
            return Err(failed(Cause::BadInput, format!("{} files have names that cannot be S3 keys; nothing was uploaded. Rename them, or use -w to skip them.", tree.problems.len())));
        }
    }
    for &i in &own {
        log::info!(target: FLOW, "{} is this run's own file: it is copied as the walk saw it and checked only for presence.", display_bytes(tree.files[i].rel.as_bytes()));
    }
    Ok((tree, own))
}

/// What the sync phase did (also when it fails): the listing taken before it, whether the
/// bucket changed, and its counts for the run's summary.
#[derive(Default)]
pub struct Synced {
    pub listing: Listing,
    pub changed: bool,
    /// Files uploaded in another version than the walk saw, by index: verify compares with these.
    pub versions: Vec<(usize, walk::LocalFile)>,
    pub unchanged: usize,
    pub planned_uploads: usize,
    pub planned_upload_bytes: u64,
    pub planned_deletes: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub deleted: usize,
    /// Directory markers put and deleted (see [`crate::markers`]).
    pub markers_put: usize,
    pub markers_deleted: usize,
    pub failed: usize,
    /// Each upload or delete that failed (or delete left out), and why.
    pub failures: Vec<(String, String)>,
}

/// What the verify phase did (also when it fails), for the run's summary.
#[derive(Debug, Default)]
pub struct Verified {
    pub verified: usize,
    pub verify_errors: usize,
    pub extra_objects: usize,
    pub content_verified: usize,
    pub content_unverifiable: usize,
    /// What `--verifyContent` uploaded again to repair differing objects.
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub failed: usize,
    /// Each file or object that failed verification (or its repair), and why.
    pub failures: Vec<(String, String)>,
}

/// Takes the run lock for the job's target (see [`crate::lock`]), without waiting. Both front
/// ends take it before they list the prefix, and [`synchronize`] asks for it.
pub fn lock(job: &Job, endpoint: Option<&str>) -> Result<RunLock, RunError> {
    Ok(crate::lock::acquire(&crate::lock::Target::new(
        endpoint, &job.url,
    ))?)
}

/// Plans from `listing` (the prefix as listed in this run, after `lock` was taken), uploads,
/// and deletes only if everything before succeeded. Returns what it did, whether it failed
/// or not.
pub async fn synchronize(
    client: &Client,
    job: &Job,
    lock: &RunLock,
    tree: &SourceTree,
    listing: Listing,
    cancel: &CancellationToken,
) -> (Synced, Result<(), RunError>) {
    let mut synced = Synced {
        listing,
        ..Synced::default()
    };
    let result = synchronize_into(client, job, lock, tree, &mut synced, cancel).await;
    (synced, result)
}

async fn synchronize_into(
    client: &Client,
    job: &Job,
    lock: &RunLock,
    tree: &SourceTree,
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
    // Directory markers are planned on their own: the files' plan never sees them.
    let (files, marker_listing) = markers::split(std::mem::take(&mut summary.listing));
    summary.listing = files;
    let mplan = markers::plan(&tree.dirs, &marker_listing, job.mode);
    let first_markers = marker_listing.is_empty();
    let mut plan = plan::plan(&tree.files, &summary.listing, job.mode);
    let mut answers = crate::mtime_cache::MtimeCache::load(&lock.target);
    resolve_ambiguous(
        client,
        job,
        tree,
        &summary.listing,
        &mut answers,
        &mut plan,
        cancel,
    )
    .await?;
    summary.unchanged = plan.unchanged;
    summary.planned_uploads = plan.uploads.len();
    summary.planned_upload_bytes = plan.uploads.iter().map(|&(i, _)| tree.files[i].size).sum();
    summary.planned_deletes = plan.deletes.len() + mplan.deletes.len();
    if job.mode == Mode::Full
        && tree.files.is_empty()
        && summary.planned_deletes > 0
        && !job.allow_empty_source
    {
        return Err(failed(Cause::BadInput, format!("Source directory {} has no files but {url} holds {} objects; refusing to delete them all (use --allowEmptySource if that is intended).", crate::display::display_path(&tree.root), summary.planned_deletes)));
    }
    if job.features.dry_run {
        return dry_run(job, tree, &plan, &mplan);
    }
    lock.check()?;
    if !plan.uploads.is_empty() {
        log::info!(target: FLOW, "Uploading {} files.", plan.uploads.len());
        let mut settings = job.features.upload.clone();
        let counters = Progress::new(plan.uploads.len() as u64, summary.planned_upload_bytes);
        settings.progress = Some(counters.clone());
        let shown = progress::Display::start("Uploading", counters);
        let mut up = transfer::upload(
            client,
            url,
            tree,
            &plan,
            &job.features.own_files,
            job.concurrency,
            &settings,
            cancel,
        )
        .await;
        shown.finish().await;
        summary.uploaded = up.uploaded;
        summary.uploaded_bytes = up.bytes;
        summary.failed = up.failed();
        summary.failures.extend(up.failed_lines());
        summary.changed = up.uploaded > 0 || up.failed() > 0;
        summary.versions = std::mem::take(&mut up.versions);
        for (stored, etag) in &up.recent {
            answers.uploaded(stored, *etag);
        }
        if up.interrupted {
            log::error!(target: FLOW, "Interrupted after {} uploads; nothing was deleted.", up.uploaded);
            return Err(RunError::Interrupted);
        }
        if up.not_attempted > 0 {
            return Err(failed(
                Cause::S3(S3Kind::NoAnswer),
                format!(
                    "{} Nothing was deleted.",
                    crate::health::stopped_answering(up.failed(), up.not_attempted, "uploads")
                ),
            ));
        }
        if up.failed() > 0 {
            return Err(failed(
                up.cause(),
                format!("{} uploads failed; nothing was deleted.", up.failed()),
            ));
        }
    }
    // An object that a new file's upload may have been stored as (the server rewrote its key)
    // is not deleted: it may be that file's only copy. The run fails, as verification would.
    let aliased = plan::aliased_deletes(&tree.files, &plan);
    for (key, i) in &aliased {
        let (shown, file) = (
            display_bytes(key.as_bytes()),
            display_bytes(tree.files[*i].rel.as_bytes()),
        );
        let why = format!("not deleted: the server may store the upload of {file} under this key (it rewrites keys)");
        log::error!(target: FLOW, "{} {why}", url.show(key));
        summary.failures.push((shown, why));
    }
    plan.deletes
        .retain(|k| !aliased.iter().any(|(a, _)| a == k));
    put_markers(client, job, tree, &mplan, summary, cancel).await?;
    if first_markers && summary.markers_put > 0 {
        check_marker_metadata(client, job, tree, &mplan).await;
    }
    deletes_allowed(job, tree, plan.deletes.len() + mplan.deletes.len())?;
    if !plan.deletes.is_empty() {
        lock.check()?;
        log::info!(target: FLOW, "Deleting {} objects that have no local file.", plan.deletes.len());
        let out = transfer::delete(client, url, &plan, cancel).await;
        summary.deleted = out.deleted;
        summary.failed += out.failures.len();
        summary.failures.extend(
            out.failures
                .iter()
                .map(|(n, f)| (n.clone(), f.message.clone())),
        );
        summary.changed = true;
        if out.interrupted || out.unknown > 0 || cancel.is_cancelled() {
            let unknown = match out.unknown {
                0 => String::new(),
                n => format!(" ({n} more may or may not be gone: their request was cut off)"),
            };
            log::error!(target: FLOW, "Interrupted: {} of {} deletes done{unknown}.", out.deleted, plan.deletes.len());
            return Err(RunError::Interrupted);
        }
        if !out.failures.is_empty() {
            return Err(failed(
                out.cause(),
                format!("{} deletes failed.", out.failures.len()),
            ));
        }
    }
    delete_markers(client, job, &mplan, summary, cancel).await?;
    if !aliased.is_empty() {
        return Err(failed(Cause::Verification, format!("{} objects were not deleted: the server stores some uploaded keys under another name (as a backslash made a slash); rename those files.", aliased.len())));
    }
    answers.save();
    Ok(())
}

/// Settles the plan's ambiguous files (same size, mtime newer than LastModified) by their
/// objects' `mtime` metadata: from `cache` when it knows the object as listed, otherwise one
/// HeadObject each (at most `concurrency` at a time), whose answer the cache learns. An
/// object without it (or that cannot be asked) is uploaded, as the listing rule alone would do.
async fn resolve_ambiguous(
    client: &Client,
    job: &Job,
    tree: &SourceTree,
    listing: &Listing,
    cache: &mut crate::mtime_cache::MtimeCache,
    plan: &mut plan::Plan,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let ambiguous = std::mem::take(&mut plan.ambiguous);
    if ambiguous.is_empty() {
        return Ok(());
    }
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(job.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut answers = Vec::with_capacity(ambiguous.len());
    let mut asked = Vec::new();
    for &idx in &ambiguous {
        let rel = &tree.files[idx].rel;
        if let Some(known) = listing.get(rel).and_then(|r| cache.lookup(rel, r)) {
            answers.push((idx, Ok(Some(known.into()))));
            continue;
        }
        asked.push(idx);
        let permit = tokio::select! {
            _ = cancel.cancelled() => return Err(RunError::Interrupted),
            p = limit.clone().acquire_owned() => p.expect("semaphore closed"),
        };
        let (client, bucket) = (client.clone(), job.url.bucket.clone());
        let key = job.url.key(&tree.files[idx].rel);
        tasks.spawn(async move {
            let r = s3::head_mtime(&client, &bucket, &key).await;
            drop(permit);
            (idx, r)
        });
        while let Some(Ok(done)) = tasks.try_join_next() {
            answers.push(done);
        }
    }
    loop {
        let done = tokio::select! {
            _ = cancel.cancelled() => return Err(RunError::Interrupted),
            d = tasks.join_next() => d,
        };
        match done {
            Some(Ok(a)) => answers.push(a),
            Some(Err(e)) => {
                return Err(failed(
                    Cause::Internal,
                    format!("HeadObject task failed: {e}"),
                ))
            }
            None => break,
        }
    }
    let mut same = 0;
    for (idx, answer) in answers {
        let meta: Option<String> = answer.unwrap_or_else(|e| {
            log::debug!(target: OUTPUT, "{e} (taken as no mtime metadata)");
            None
        });
        let rel = &tree.files[idx].rel;
        if let (Some(m), Some(remote)) = (&meta, listing.get(rel)) {
            cache.learn(rel, remote, m);
        }
        match plan::resolve_ambiguous(&tree.files[idx], meta.as_deref()) {
            Some(reason) => plan.uploads.push((idx, reason)),
            None => {
                plan.unchanged += 1;
                same += 1;
            }
        }
    }
    plan.uploads.sort_by_key(|&(i, _)| i);
    log::debug!(target: OUTPUT, "mtime metadata of {} objects whose files are newer than their LastModified ({} known from earlier runs, {} asked with HeadObject): {same} unchanged.", ambiguous.len(), ambiguous.len() - asked.len(), asked.len());
    Ok(())
}

/// The guards between the uploads and the deletes, shared by a real run and a dry run: no
/// deletes when part of the tree could not be read, nor more than `--maxDeletes`.
fn deletes_allowed(job: &Job, tree: &SourceTree, deletes: usize) -> Result<(), RunError> {
    if !tree.failures.is_empty() {
        return Err(failed(
            Cause::LocalIo,
            format!(
                "{} paths could not be read; nothing was deleted.",
                tree.failures.len()
            ),
        ));
    }
    match job.features.max_deletes {
        Some(max) if deletes > max => Err(failed(Cause::BadInput, format!(
            "This sync would delete {deletes} objects under {}, more than --maxDeletes {max}; deleted none.",
            job.url
        ))),
        _ => Ok(()),
    }
}

/// `--dryRun`: logs each upload with its reason and each delete, as `aws s3 sync --dryrun`
/// prints them, and applies the guards the real run would (so the exit status says whether it
/// could run). Changes nothing.
fn dry_run(
    job: &Job,
    tree: &SourceTree,
    plan: &plan::Plan,
    mplan: &markers::MarkerPlan,
) -> Result<(), RunError> {
    let url = &job.url;
    for &(idx, reason) in &plan.uploads {
        let rel = &tree.files[idx].rel;
        log::info!(target: FLOW, "(dryrun) upload: {} to {} ({reason})", display_bytes(rel.as_bytes()), url.show(rel));
    }
    for &(idx, reason) in &mplan.puts {
        log::info!(target: FLOW, "(dryrun) directory marker: {} ({reason})", url.show(&markers::marker_rel(&tree.dirs[idx])));
    }
    for rel in plan.deletes.iter().chain(&mplan.deletes) {
        log::info!(target: FLOW, "(dryrun) delete: {}", url.show(rel));
    }
    log::info!(target: FLOW, "(dryrun) {} uploads ({} bytes), {} deletes, {} files unchanged, {} directory markers to put; nothing was changed.", plan.uploads.len(), plan.uploads.iter().map(|&(i, _)| tree.files[i].size).sum::<u64>(), plan.deletes.len() + mplan.deletes.len(), plan.unchanged, mplan.puts.len());
    deletes_allowed(job, tree, plan.deletes.len() + mplan.deletes.len())
}

/// Puts the planned directory markers, after the files' uploads succeeded and before any
/// delete; a marker that cannot be put fails the run (nothing is deleted).
async fn put_markers(
    client: &Client,
    job: &Job,
    tree: &SourceTree,
    mplan: &markers::MarkerPlan,
    summary: &mut Synced,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    if mplan.puts.is_empty() {
        return Ok(());
    }
    log::info!(target: FLOW, "Putting {} directory markers.", mplan.puts.len());
    let out = transfer::put_markers(
        client,
        &job.url,
        tree,
        mplan,
        job.concurrency,
        &job.features.upload,
        cancel,
    )
    .await;
    summary.markers_put = out.put;
    summary.changed = true;
    summary.failed += out.failures.len();
    summary.failures.extend(
        out.failures
            .iter()
            .map(|(n, f)| (n.clone(), f.message.clone())),
    );
    if out.interrupted || cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    if let Some((_, f)) = out.failures.first() {
        return Err(failed(
            f.cause,
            format!(
                "{} directory markers could not be put; nothing was deleted.",
                out.failures.len()
            ),
        ));
    }
    Ok(())
}

/// Reads back one marker the first run that puts markers under the prefix put: a server
/// that keeps no metadata on keys ending in `/` (SeaweedFS stores them as directories) makes
/// a restore give every directory the private default, which is said once, here, rather than
/// found on the day of the restore. One HeadObject, in that run only; a failure to ask is a
/// DEBUG line.
async fn check_marker_metadata(
    client: &Client,
    job: &Job,
    tree: &SourceTree,
    mplan: &markers::MarkerPlan,
) {
    let Some(&(idx, _)) = mplan.puts.first() else {
        return;
    };
    let rel = markers::marker_rel(&tree.dirs[idx]);
    let key = job.url.key(&rel);
    match s3::head::head_mtime(client, &job.url.bucket, &key).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            log::warn!(target: FLOW, "The server kept no metadata on the directory marker {}: a restore from it will give directories mode 0700 and no recorded owner or time (files keep theirs).", job.url.show(&rel))
        }
        Err(e) => {
            log::debug!(target: FLOW, "Could not read back the directory marker {}: {e}", job.url.show(&rel))
        }
    }
}

/// Deletes the markers of directories that are gone, after the files' deletes.
async fn delete_markers(
    client: &Client,
    job: &Job,
    mplan: &markers::MarkerPlan,
    summary: &mut Synced,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    if mplan.deletes.is_empty() {
        return Ok(());
    }
    let plan = plan::Plan {
        deletes: mplan.deletes.clone(),
        ..plan::Plan::default()
    };
    let out = transfer::delete(client, &job.url, &plan, cancel).await;
    summary.markers_deleted = out.deleted;
    summary.changed = true;
    summary.failed += out.failures.len();
    summary.failures.extend(
        out.failures
            .iter()
            .map(|(n, f)| (n.clone(), f.message.clone())),
    );
    if out.interrupted || out.unknown > 0 || cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    if !out.failures.is_empty() {
        return Err(failed(
            out.cause(),
            format!(
                "{} deletes of directory markers failed.",
                out.failures.len()
            ),
        ));
    }
    Ok(())
}

/// Compares the tree with the bucket. `known` is a listing taken in this run after which
/// nothing changed; without it the prefix is listed again. Returns what it found, whether it
/// failed or not.
pub async fn verify(
    client: &Client,
    job: &Job,
    tree: &SourceTree,
    known: Option<Listing>,
    cancel: &CancellationToken,
) -> (Verified, Result<(), RunError>) {
    let mut verified = Verified::default();
    let result = verify_into(client, job, tree, known, &mut verified, cancel).await;
    (verified, result)
}

async fn verify_into(
    client: &Client,
    job: &Job,
    tree: &SourceTree,
    known: Option<Listing>,
    summary: &mut Verified,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let listing = match known {
        Some(l) => l,
        None => crate::s3::listing::list(client, &job.url, cancel).await?,
    };
    // Directory markers are neither missing files nor extra objects.
    let listing = markers::split(listing).0;
    let v = verify::verify(tree, &listing, job.mode, &job.features.own_files);
    summary.verified = v.verified;
    summary.verify_errors = v.errors.len();
    summary.extra_objects = v.extras;
    summary.failures.extend(v.failed);
    let mut content_failures = 0;
    if job.features.verify_content {
        // A sync run repairs what it finds; `-v` only reports.
        let repair = job.mode != Mode::VerifyOnly;
        let c = verify_content(client, job, tree, &listing, repair, summary, cancel).await;
        if c.interrupted {
            return Err(RunError::Interrupted);
        }
        if c.not_attempted > 0 {
            return Err(failed(
                Cause::S3(S3Kind::NoAnswer),
                crate::health::stopped_answering(
                    c.failures.len(),
                    c.not_attempted,
                    "content checks",
                ),
            ));
        }
        content_failures = c.failures.len();
        if repair && !c.differs.is_empty() {
            content_failures -=
                repair_content(client, job, tree, &c.differs, summary, cancel).await?;
        }
    }
    if !v.errors.is_empty() || content_failures > 0 {
        log::error!(target: FLOW, "There were differences between source directory and target S3 bucket.");
        return Err(failed(
            Cause::Verification,
            format!(
                "Verification failed: {} differences between {} and {}.",
                v.errors.len() + content_failures,
                crate::display::display_path(&tree.root),
                job.url
            ),
        ));
    }
    if tree.failures.is_empty() {
        log::info!(target: FLOW, "Verified {} files in {}.", v.verified, job.url);
        log::info!(target: FLOW, "Completed verifying Amazon S3 bucket contents (no problems found).");
        Ok(())
    } else {
        Err(failed(
            Cause::LocalIo,
            format!(
                "{} paths could not be read and were not verified.",
                tree.failures.len()
            ),
        ))
    }
}

/// `--verifyContent` after the size check: logs its findings and records them in the summary.
/// With `repair` a difference is a WARNING (the caller uploads the file again).
async fn verify_content(
    client: &Client,
    job: &Job,
    tree: &SourceTree,
    listing: &Listing,
    repair: bool,
    summary: &mut Verified,
    cancel: &CancellationToken,
) -> content::ContentOutcome {
    log::info!(target: FLOW, "Verifying the content of each file against the checksum the bucket stores.");
    // The run's own files are copies of what the walk saw, so their content is not compared.
    let trimmed;
    let listing = if job.features.own_files.is_empty() {
        listing
    } else {
        let mut l = listing.clone();
        for &i in &job.features.own_files {
            l.remove(&tree.files[i].rel);
        }
        trimmed = l;
        &trimmed
    };
    let counters = Progress::new(summary.verified as u64, 0);
    counters.bytes_total.store(
        tree.files
            .iter()
            .filter(|f| listing.get(&f.rel).is_some_and(|o| o.size == f.size))
            .map(|f| f.size)
            .sum(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let shown = progress::Display::start("Verifying content", counters.clone());
    let c = content::verify_content(
        client,
        &job.url,
        tree,
        listing,
        job.concurrency,
        Some(counters),
        if repair {
            log::Level::Warn
        } else {
            log::Level::Error
        },
        cancel,
    )
    .await;
    shown.finish().await;
    summary.content_verified = c.verified;
    summary.content_unverifiable = c.unverifiable.len();
    summary.verify_errors += c.failures.len();
    summary.failures.extend(c.failures.iter().cloned());
    let mut methods: Vec<_> = c.by_method.iter().collect();
    methods.sort();
    let methods: Vec<String> = methods.iter().map(|(m, n)| format!("{n} by {m}")).collect();
    log::info!(target: FLOW, "Content of {} files matches ({}).", c.verified, methods.join(", "));
    if !c.unverifiable.is_empty() {
        log::warn!(target: FLOW, "{} objects have nothing to compare their content with (sizes were checked); upload them with this tool, to a server that takes full-object checksums, to make them verifiable.", c.unverifiable.len());
    }
    c
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

/// A sync run with `--verifyContent`: uploads the files whose objects' content differs
/// again and compares them once more, so the run that finds a bad copy also replaces it.
/// Returns how many were repaired (and takes them out of the summary's failures).
async fn repair_content(
    client: &Client,
    job: &Job,
    tree: &SourceTree,
    differs: &[usize],
    summary: &mut Verified,
    cancel: &CancellationToken,
) -> Result<usize, RunError> {
    log::warn!(target: FLOW, "Uploading {} files again whose objects' content differs.", differs.len());
    let plan = plan::Plan {
        uploads: differs
            .iter()
            .map(|&i| (i, plan::UploadReason::ContentDiffers))
            .collect(),
        ..Default::default()
    };
    let up = transfer::upload(
        client,
        &job.url,
        tree,
        &plan,
        &job.features.own_files,
        job.concurrency,
        &job.features.upload,
        cancel,
    )
    .await;
    if up.interrupted {
        return Err(RunError::Interrupted);
    }
    summary.uploaded += up.uploaded;
    summary.uploaded_bytes += up.bytes;
    summary.failed += up.failed_files.len();
    let not_uploaded: std::collections::HashSet<String> =
        up.failed_files.iter().map(|(n, _)| n.clone()).collect();
    summary.failures.extend(up.failed_lines());
    let files: Vec<walk::LocalFile> = differs
        .iter()
        .filter(|&&i| !not_uploaded.contains(&display_bytes(tree.files[i].rel.as_bytes())))
        .map(|&i| {
            up.versions
                .iter()
                .find(|(j, _)| *j == i)
                .map_or_else(|| tree.files[i].clone(), |(_, v)| v.clone())
        })
        .collect();
    // The objects just written have the sizes of the versions uploaded.
    let listing: Listing = files
        .iter()
        .map(|f| {
            let size = f.size;
            (
                f.rel.clone(),
                plan::RemoteObject {
                    size,
                    last_modified_ns: 0,
                    archived: None,
                    etag: 0,
                },
            )
        })
        .collect();
    let again = SourceTree {
        root: tree.root.clone(),
        files,
        ..SourceTree::default()
    };
    let c = content::verify_content(
        client,
        &job.url,
        &again,
        &listing,
        job.concurrency,
        None,
        log::Level::Error,
        cancel,
    )
    .await;
    if c.interrupted {
        return Err(RunError::Interrupted);
    }
    let mut still: std::collections::HashSet<String> =
        c.failures.iter().map(|(n, _)| n.clone()).collect();
    still.extend(c.unverifiable.iter().cloned());
    let mut repaired = 0;
    for f in &again.files {
        let name = display_bytes(f.rel.as_bytes());
        if still.contains(&name) {
            continue;
        }
        log::warn!(target: FLOW, "Repaired [{name}]: uploaded again, and its content now matches.");
        summary
            .failures
            .retain(|(n, why)| !(n == &name && why.starts_with("content differs")));
        repaired += 1;
    }
    summary.verify_errors -= repaired;
    summary.content_verified += repaired;
    Ok(repaired)
}

/// The run's own files, by device and inode: its logfile, summary file and lock file. A
/// source that contains them (backing up /var/log) must not fail because they change.
fn own_identities(opts: &Options, lock: Option<&crate::lock::RunLock>) -> Vec<(u64, u64)> {
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
    verified: Option<Verified>,
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
            failures,
            ..Summary::default()
        }
    }
}

/// [`run`] with the reason a run stopped, for front ends that raise it (the Python shim),
/// and the summary of what it did (also when it failed).
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
    // The walk (blocking, on its own thread) and the listing run at the same time.
    let (url, ignore) = (job.url.clone(), job.ignore_warnings);
    let own = own_identities(opts, lock.as_ref());
    let started = Instant::now();
    let walk_cancel = cancel.clone();
    let walking = tokio::task::spawn_blocking(move || {
        let stop = || walk_cancel.is_cancelled();
        prepare_noting(&source, &url, ignore, &own, &stop)
    });
    let listing_task = {
        let (client, url, cancel) = (client.clone(), job.url.clone(), cancel.clone());
        tokio::spawn(async move { crate::s3::listing::list(&client, &url, &cancel).await })
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
    let prepared = walking
        .await
        .map_err(|e| failed(Cause::Internal, format!("source walk failed: {e}")))?;
    phases.found = prepared.0;
    let tree = match prepared.1 {
        Ok((t, own)) => {
            job.features.own_files = own;
            t
        }
        Err(e) => {
            listing_task.abort();
            return Err(e);
        }
    };
    if cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    let listing = listing_task
        .await
        .map_err(|e| failed(Cause::Internal, format!("listing failed: {e}")))??;
    if let Some(t) = strays_task.0.take() {
        // Best effort, but finished before any upload starts.
        if let Ok(Err(why)) = t.await {
            log::warn!(target: FLOW, "{why}");
        }
    }
    phases.durations.push(("prepare", started.elapsed()));
    let (known, versions) = match &lock {
        None => (Some(listing), Vec::new()),
        Some(lock) => {
            let started = Instant::now();
            let (mut synced, result) =
                synchronize(&client, &job, lock, &tree, listing, cancel).await;
            phases.durations.push(("synchronize", started.elapsed()));
            let listing = std::mem::take(&mut synced.listing);
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
    // Files that changed after the walk are verified as the version that was uploaded.
    let uploaded;
    let tree = if versions.is_empty() {
        &tree
    } else {
        let mut files = tree.files.clone();
        for (i, v) in versions {
            files[i] = v;
        }
        uploaded = SourceTree {
            root: tree.root.clone(),
            files,
            failures: tree.failures.clone(),
            ..SourceTree::default()
        };
        &uploaded
    };
    // With -v there is nothing to dry-run: the check itself changes nothing, so it runs.
    if job.features.dry_run && job.mode != Mode::VerifyOnly {
        log::info!(target: FLOW, "Dry run: verification skipped (nothing was uploaded).");
        return Ok(());
    }
    let started = Instant::now();
    let (verified, result) = verify(&client, &job, tree, known, cancel).await;
    phases.durations.push(("verify", started.elapsed()));
    phases.verified = Some(verified);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_adds_up_what_each_phase_returned() {
        let phases = Phases {
            found: Found {
                local_files: 4,
                local_bytes: 40,
                local_dirs: 2,
                skipped: 1,
                name_problems: 0,
                failures: vec![("a".into(), "cannot read: gone".into())],
            },
            synced: Some(Synced {
                unchanged: 1,
                planned_uploads: 3,
                planned_upload_bytes: 30,
                planned_deletes: 2,
                uploaded: 2,
                uploaded_bytes: 20,
                deleted: 2,
                markers_put: 3,
                markers_deleted: 1,
                failed: 1,
                failures: vec![("b".into(), "upload failed".into())],
                ..Synced::default()
            }),
            verified: Some(Verified {
                verified: 3,
                verify_errors: 1,
                extra_objects: 5,
                content_verified: 2,
                content_unverifiable: 1,
                uploaded: 1,
                uploaded_bytes: 10,
                failed: 1,
                failures: vec![("c".into(), "content differs".into())],
            }),
            durations: vec![("prepare", Duration::from_millis(1))],
        };
        let s = phases.summary();
        assert_eq!(
            (
                s.local_files,
                s.local_bytes,
                s.skipped,
                s.unchanged,
                s.deleted
            ),
            (4, 40, 1, 1, 2)
        );
        assert_eq!((s.local_dirs, s.markers_put, s.markers_deleted), (2, 3, 1));
        // A repair's uploads and failures add to the sync's.
        assert_eq!((s.uploaded, s.uploaded_bytes, s.failed), (3, 30, 2));
        assert_eq!(
            (s.planned_uploads, s.planned_upload_bytes, s.planned_deletes),
            (3, 30, 2)
        );
        assert_eq!((s.verified, s.verify_errors, s.extra_objects), (3, 1, 5));
        assert_eq!((s.content_verified, s.content_unverifiable), (2, 1));
        let names: Vec<&str> = s.failures.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "in the order the phases ran");
        assert_eq!(s.phases, [("prepare", Duration::from_millis(1))]);
        assert_eq!((s.error, s.restore), (None, None));
    }

    #[test]
    fn a_run_stopped_by_its_walk_reports_what_the_walk_found() {
        let s = Phases {
            found: Found {
                local_files: 2,
                name_problems: 1,
                failures: vec![("x".into(), "bad name".into())],
                ..Found::default()
            },
            ..Phases::default()
        }
        .summary();
        assert_eq!(
            (s.local_files, s.name_problems, s.failures.len()),
            (2, 1, 1)
        );
        assert_eq!((s.uploaded, s.verified, s.failed), (0, 0, 0));
        assert!(s.phases.is_empty());
    }
}
