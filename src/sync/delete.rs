//! The end of a sync, once every upload succeeded: the directory markers are put, the guards
//! are checked, then the objects that have no local file are deleted, and the markers of
//! directories that are gone, deepest first. All of it is read back from the merge's spill
//! files, a batch at a time.

use aws_sdk_s3::Client;
use tokio_util::sync::CancellationToken;

use super::job::{temp_failed, Found, Job, Synced};
use super::merge::Merged;
use super::plan::{self, Mode};
use super::walk::Local;
use crate::display::display_bytes;
use crate::report::Cause;
use crate::run::dispatch::{Dispatch, Finished};
use crate::run::outcome::{ItemFailure, Stage};
use crate::run::{failed, RunError};
use crate::s3;
use crate::{FLOW, OUTPUT};

/// Keys per delete request (DeleteObjects takes up to 1000).
const BATCH: usize = 1000;

/// The guards between the uploads and the deletes, shared by a real run and a dry run: no
/// deletes when part of the tree could not be read, nor more than `--maxDeletes`.
pub(super) fn deletes_allowed(job: &Job, found: &Found, deletes: usize) -> Result<(), RunError> {
    if found.unreadable > 0 {
        return Err(failed(
            Cause::LocalIo,
            format!(
                "{} paths could not be read; nothing was deleted.",
                found.unreadable
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

/// `--dryRun`: the uploads were logged as the merge decided them; logs each marker and
/// delete, as `aws s3 sync --dryrun` prints them, and applies the guards the real run would
/// (so the exit status says whether it could run). Changes nothing.
pub(super) fn dry_run(
    job: &Job,
    found: &Found,
    merged: &Merged,
    summary: &Synced,
) -> Result<(), RunError> {
    let url = &job.url;
    for d in merged.marker_puts.iter() {
        if let Local::Dir(d) = d.map_err(temp_failed)? {
            log::info!(target: FLOW, "(dryrun) directory marker: {}", url.show(&plan::marker_rel(&d)));
        }
    }
    for rel in merged.deletes.iter().chain(merged.marker_deletes.rev()) {
        log::info!(target: FLOW, "(dryrun) delete: {}", url.show(&rel.map_err(temp_failed)?));
    }
    log::info!(target: FLOW, "(dryrun) {} uploads ({} bytes), {} deletes, {} files unchanged, {} directory markers to put; nothing was changed.", summary.planned_uploads, summary.planned_upload_bytes, summary.planned_deletes, summary.unchanged, merged.marker_puts.len());
    deletes_allowed(job, found, summary.planned_deletes)
}

/// Puts the planned directory markers, after the files' uploads succeeded and before any
/// delete; a marker that cannot be put fails the run (nothing is deleted). The first run that
/// puts markers under a prefix reads one back: a server that keeps no metadata on keys ending
/// in `/` (SeaweedFS stores them as directories) makes a restore give every directory the
/// private default, which is said once, here, rather than found on the day of the restore.
pub(super) async fn put_markers(
    client: &Client,
    job: &Job,
    merged: &Merged,
    summary: &mut Synced,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    if merged.marker_puts.is_empty() {
        return Ok(());
    }
    log::info!(target: FLOW, "Putting {} directory markers.", merged.marker_puts.len());
    summary.changed = true;
    let mut dispatch: Dispatch<Result<(), s3::OpError>> = Dispatch::new(job.concurrency, cancel);
    let mut first = None;
    let (mut put, mut failures) = (0, 0);
    let mut cause = None;
    let mut collect = |f: Finished<Result<(), s3::OpError>>| match f {
        Finished::Done(Ok(())) => put += 1,
        Finished::Done(Err(s3::OpError::Interrupted(_))) => {}
        Finished::Done(Err(e)) => {
            failures += 1;
            cause.get_or_insert(e.cause());
            log::error!(target: FLOW, "Failed to put a directory marker: {e}");
            summary.failures.push(ItemFailure::new(
                String::new(),
                Stage::Marker,
                e.cause(),
                e.to_string(),
            ));
        }
        Finished::Lost { item, why } => {
            failures += 1;
            cause.get_or_insert(Cause::Internal);
            log::error!(target: FLOW, "Failed to put the directory marker [{item}]: {why}");
            summary
                .failures
                .push(ItemFailure::new(item, Stage::Marker, Cause::Internal, why));
        }
    };
    for d in merged.marker_puts.iter() {
        let Local::Dir(d) = d.map_err(temp_failed)? else {
            continue;
        };
        let Ok(permit) = dispatch.slot(&mut collect).await else {
            break;
        };
        let rel = plan::marker_rel(&d);
        let key = job.url.key(&rel);
        first.get_or_insert_with(|| key.clone());
        log::info!(target: OUTPUT, "upload: directory marker {}", job.url.show_key(&key));
        let meta = crate::metadata::record(d.mtime_ns, d.mode, d.uid, d.gid);
        let (client, bucket, settings) = (
            client.clone(),
            job.url.bucket.clone(),
            job.features.upload.clone(),
        );
        dispatch.spawn(display_bytes(rel.as_bytes()), async move {
            let _permit = permit;
            s3::put_marker(&client, &bucket, &key, meta, &settings).await
        });
    }
    dispatch.finish(&mut collect).await;
    summary.markers_put = put;
    summary.failed += failures;
    if cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    if failures > 0 {
        return Err(failed(
            cause.unwrap_or(Cause::Internal),
            format!("{failures} directory markers could not be put; nothing was deleted."),
        ));
    }
    if let (0, Some(key)) = (merged.remote_markers, first) {
        match s3::head::head_mtime(client, &job.url.bucket, &key).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                log::warn!(target: FLOW, "The server kept no metadata on the directory marker {}: a restore from it will give directories mode 0700 and no recorded owner or time (files keep theirs).", job.url.show_key(&key))
            }
            Err(e) => {
                log::debug!(target: FLOW, "Could not read back the directory marker {}: {e}", job.url.show_key(&key))
            }
        }
    }
    Ok(())
}

/// What deleting one batch came to, beyond the counts it adds to the summary.
#[derive(Default)]
struct Batch {
    failed: usize,
    /// The cause of the first delete that failed.
    cause: Option<Cause>,
    /// Keys whose request was cut off by an interruption and could not be checked.
    unknown: usize,
    interrupted: bool,
}

/// Deletes a batch of keys (relative to the prefix); counts and logs what happened.
async fn delete_batch(
    client: &Client,
    job: &Job,
    rels: &[Box<str>],
    summary: &mut Synced,
    markers: bool,
    cancel: &CancellationToken,
) -> Batch {
    let url = &job.url;
    let keys: Vec<String> = rels.iter().map(|rel| url.key(rel)).collect();
    for k in &keys {
        log::info!(target: OUTPUT, "delete: {}", url.show_key(k));
    }
    let done = s3::delete(client, &url.bucket, &keys, cancel).await;
    for e in &done.failures {
        log::error!(target: FLOW, "Failed to delete {}: {}", url.show_key(&e.target), e.detail);
        let shown = display_bytes(url.relative(&e.target).unwrap_or(&e.target).as_bytes());
        summary.failures.push(ItemFailure::new(
            shown,
            Stage::Delete,
            e.cause,
            format!("delete failed: {}", e.detail),
        ));
    }
    for key in &done.unknown {
        log::warn!(target: FLOW, "Not known whether {} was deleted (its request was interrupted).", url.show_key(key));
    }
    if markers {
        summary.markers_deleted += done.deleted;
    } else {
        summary.deleted += done.deleted;
    }
    summary.failed += done.failures.len();
    Batch {
        failed: done.failures.len(),
        cause: done.failures.first().map(|e| e.cause),
        unknown: done.unknown.len(),
        interrupted: done.interrupted,
    }
}

/// The deletes of a full sync: objects without a file, then markers without a directory
/// (deepest first: the spill is read backwards, and in key order a directory's marker comes
/// before those below it). An object a new file's upload may have been stored as (the server
/// rewrote its key) is not deleted: it may be that file's only copy; the run fails, as
/// verification would.
pub(super) async fn delete_all(
    client: &Client,
    job: &Job,
    merged: &Merged,
    summary: &mut Synced,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    if job.mode != Mode::Full || summary.planned_deletes == 0 {
        return Ok(());
    }
    let url = &job.url;
    let mut aliased = 0;
    let (mut unknown, mut interrupted) = (0, false);
    let mut cause = None;
    if !merged.deletes.is_empty() {
        log::info!(target: FLOW, "Deleting {} objects that have no local file.", merged.deletes.len());
        summary.changed = true;
    }
    for (markers, rels) in [
        (
            false,
            Box::new(merged.deletes.iter()) as Box<dyn Iterator<Item = _> + Send>,
        ),
        (true, Box::new(merged.marker_deletes.rev())),
    ] {
        let (mut batch, mut failed_now) = (Vec::with_capacity(BATCH), 0);
        let mut rels = rels.peekable();
        while rels.peek().is_some() && !interrupted {
            batch.clear();
            for rel in rels.by_ref() {
                let rel: Box<str> = rel.map_err(temp_failed)?;
                if let Some(file) = merged.aliases.get(&plan::server_form(&rel)) {
                    let why = format!("not deleted: the server may store the upload of {} under this key (it rewrites keys)", display_bytes(file.as_bytes()));
                    log::error!(target: FLOW, "{} {why}", url.show(&rel));
                    summary.failures.push(ItemFailure::new(
                        display_bytes(rel.as_bytes()),
                        Stage::Delete,
                        Cause::Verification,
                        why,
                    ));
                    aliased += 1;
                    continue;
                }
                batch.push(rel);
                if batch.len() == BATCH {
                    break;
                }
            }
            if batch.is_empty() {
                break;
            }
            summary.changed = true;
            let b = delete_batch(client, job, &batch, summary, markers, cancel).await;
            unknown += b.unknown;
            interrupted |= b.interrupted || cancel.is_cancelled();
            failed_now += b.failed;
            cause = cause.or(b.cause);
        }
        if interrupted {
            break;
        }
        if failed_now > 0 {
            let what = if markers { " of directory markers" } else { "" };
            return Err(failed(
                cause.unwrap_or(Cause::S3(crate::report::S3Kind::Service)),
                format!("{failed_now} deletes{what} failed."),
            ));
        }
    }
    if interrupted || unknown > 0 {
        let unknown = match unknown {
            0 => String::new(),
            n => format!(" ({n} more may or may not be gone: their request was cut off)"),
        };
        log::error!(target: FLOW, "Interrupted: {} of {} deletes done{unknown}.", summary.deleted, merged.deletes.len());
        return Err(RunError::Interrupted);
    }
    if aliased > 0 {
        return Err(failed(Cause::Verification, format!("{aliased} objects were not deleted: the server stores some uploaded keys under another name (as a backslash made a slash); rename those files.")));
    }
    Ok(())
}
