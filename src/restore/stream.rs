//! The stream of objects: each checked key decided as it passes, files dispatched (a bounded
//! number of tasks), directory markers spilled; then the check on disk and the directories'
//! recorded metadata.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::count::{Outcome, Tally};
use super::dirs::{self, Dirs, MarkerDir};
use super::fetch::Transfer;
use super::job::{Ctx, Done, Job};
use super::object;
use super::plan::{self, Key};
use super::{check, list, place};
use crate::bucket_url::BucketUrl;
use crate::options::Options;
use crate::progress::{self, Progress};
use crate::report::{Cause, RestoreCounts};
use crate::run::dispatch::{Dispatch, Stop};
use crate::run::outcome::{Failures, Stage};
use crate::run::sorted::Sorted;
use crate::run::spill::Spill;
use crate::run::{failed, RunError};
use crate::s3::listing::Listed;
use crate::FLOW;

/// What the restore phase did.
pub struct Restored {
    pub counts: RestoreCounts,
    pub failures: Failures,
    /// The cause of the first failed download or write.
    pub cause: Option<Cause>,
    pub result: Result<(), RunError>,
}

/// Test hook: in a debug build, `CBACK3_TEST_RESTORE_PANIC=TEXT` makes the download task of
/// every key containing TEXT panic, so a test sees a lost task counted as a failure.
fn test_panic_hook() -> Option<String> {
    #[cfg(debug_assertions)]
    {
        std::env::var("CBACK3_TEST_RESTORE_PANIC")
            .ok()
            .filter(|s| !s.is_empty())
    }
    #[cfg(not(debug_assertions))]
    {
        None
    }
}

/// The stream: each checked key decided as it passes, files dispatched, markers spilled;
/// then the check on disk and the directories' metadata.
#[allow(clippy::too_many_arguments)]
pub async fn restore_listing(
    client: &Client,
    url: &BucketUrl,
    target: &Path,
    root: Option<Arc<OwnedFd>>,
    listing: &Sorted<Listed>,
    totals: &list::Totals,
    opts: &Options,
    transfer: &Transfer,
    cancel: &CancellationToken,
) -> Restored {
    let spills = Tally::new(totals.objects).and_then(|t| Ok((t, Spill::<MarkerDir>::new()?)));
    let (mut tally, mut markers) = match spills {
        Ok(x) => x,
        Err(e) => {
            return Restored {
                counts: RestoreCounts::default(),
                failures: Failures::default(),
                cause: None,
                result: Err(failed(
                    Cause::LocalIo,
                    format!("Cannot create a spill file: {e}"),
                )),
            }
        }
    };
    let mut dispatch: Dispatch<Outcome> = Dispatch::new(transfer.concurrency, cancel);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        url: url.clone(),
        target: target.to_path_buf(),
        limit: dispatch.permits(),
        multipart: transfer.multipart,
        bandwidth: transfer.bandwidth.clone(),
        cancel: cancel.clone(),
        overwrite: opts.overwrite,
        dry_run: opts.dry_run,
        progress: Progress::new(totals.files, totals.bytes),
        default_mode: place::default_mode(),
        // SAFETY: geteuid has no preconditions.
        as_root: unsafe { libc::geteuid() } == 0,
        health: dispatch.health().clone(),
        panic_on: test_panic_hook(),
    });
    // Files in flight, as many as requests: a large object gives back its request permit
    // once its ranges start, and without this the loop would start more large objects (a
    // temporary file open for each; fewer left "not attempted" when the endpoint stops
    // answering). Taken before the request permit, so the order cannot deadlock.
    let files = Arc::new(Semaphore::new(
        transfer
            .concurrency
            .clamp(1, crate::options::MAX_CONCURRENCY),
    ));
    let shown_progress = progress::Display::start("Restoring", ctx.progress.clone());
    let mut dirs = root.clone().map(|r| Dirs::new(r, !opts.dry_run));
    let mut stop: Option<RunError> = None;
    let mut files_seen = 0u64;
    for item in list::checked(listing) {
        let c = match item {
            Ok(c) => c,
            Err(e) => {
                let why = format!("Cannot read the listing back: {e}");
                stop = Some(failed(Cause::LocalIo, why));
                break;
            }
        };
        let Listed { rel, obj } = c.listed;
        match plan::key(&rel, obj.size, c.used_as_dir) {
            Key::PrefixMarker => tally.counts.directory_markers += 1,
            Key::Marker(dir) => {
                tally.counts.directory_markers += 1;
                let created = match dirs.as_mut().filter(|_| !opts.dry_run) {
                    None => false,
                    Some(d) => match d.marked(dir) {
                        Ok(made) => made,
                        Err(why) => {
                            let (counts, fails) = (&mut tally.counts, &mut tally.failures);
                            dirs::dir_failed(
                                counts,
                                fails,
                                ctx.shown_path(dir),
                                Cause::LocalIo,
                                why,
                            );
                            continue;
                        }
                    },
                };
                let m = MarkerDir {
                    rel: dir.into(),
                    created,
                };
                if let Err(e) = markers.push(&m) {
                    stop = Some(failed(
                        Cause::LocalIo,
                        format!("Cannot keep the directory markers: {e}"),
                    ));
                    break;
                }
            }
            Key::Refused { marker, why } => tally.refused(url.show(&rel), marker, why),
            Key::File => {
                files_seen += 1;
                let dir = match dirs.as_mut().map(|d| d.parent_of(&rel)) {
                    None => None,
                    Some(Ok(d)) => d,
                    Some(Err(why)) => {
                        tally.failed(ctx.shown_path(&rel), Stage::Place, Cause::LocalIo, why);
                        continue;
                    }
                };
                let slot = tokio::select! {
                    _ = cancel.cancelled() => { stop = Some(RunError::Interrupted); break }
                    p = files.clone().acquire_owned() => p.expect("semaphore closed"),
                };
                let permit = match dispatch.slot(&mut |f| tally.finished(&ctx, f)).await {
                    Ok(p) => p,
                    Err(Stop::Interrupted) => {
                        stop = Some(RunError::Interrupted);
                        break;
                    }
                    Err(Stop::Unhealthy) => {
                        tally.counts.not_attempted = (totals.files - files_seen + 1) as usize;
                        break;
                    }
                };
                let (ctx2, cancel2) = (ctx.clone(), cancel.clone());
                let job = Job {
                    rel,
                    obj: plan::Object {
                        size: obj.size,
                        last_modified_ns: obj.last_modified_ns,
                        archived: obj.archived,
                    },
                    dir,
                };
                dispatch.spawn(job.rel.to_string(), async move {
                    let _slot = slot;
                    let size = job.obj.size;
                    let rel = job.rel.clone();
                    let done = tokio::select! {
                        _ = cancel2.cancelled() => Done::Interrupted,
                        d = object::restore_one(ctx2, job, permit) => d,
                    };
                    Outcome { rel, size, done }
                });
            }
        }
    }
    // Tasks see the run's cancellation themselves and end at once.
    dispatch.finish(&mut |f| tally.finished(&ctx, f)).await;
    shown_progress.finish().await;
    let c = &tally.counts;
    if c.files_defaulted > 0 {
        log::warn!(target: FLOW, "{} files have no recorded mode (objects written by the original tool or another one) and were restored private (0600); give them their modes with chmod.", c.files_defaulted);
    }
    if stop.is_none() && cancel.is_cancelled() {
        stop = Some(RunError::Interrupted);
    }
    if stop.is_none() {
        stop = finish(
            client,
            url,
            target,
            root.as_ref(),
            &ctx,
            &mut tally,
            markers,
            dirs,
            opts,
            cancel,
        )
        .await
        .err();
    }
    if matches!(stop, Some(RunError::Interrupted)) || cancel.is_cancelled() {
        log::error!(target: FLOW, "Interrupted after restoring {} files; temporary files were removed.", tally.counts.restored);
        stop = Some(RunError::Interrupted);
    }
    Restored {
        counts: tally.counts,
        failures: tally.failures,
        cause: tally.first_cause,
        result: stop.map_or(Ok(()), Err),
    }
}

/// After the last file: what is on disk is checked before directories get their recorded
/// modes (a directory recorded without search permission would hide its own files from the
/// check of a run that is not root's), then the directories, deepest first.
#[allow(clippy::too_many_arguments)]
async fn finish(
    client: &Client,
    url: &BucketUrl,
    target: &Path,
    root: Option<&Arc<OwnedFd>>,
    ctx: &Ctx,
    tally: &mut Tally,
    markers: Spill<MarkerDir>,
    dirs: Option<Dirs>,
    opts: &Options,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let local = |what: &str, e: std::io::Error| failed(Cause::LocalIo, format!("{what}: {e}"));
    let placed = tally
        .placed()
        .map_err(|e| local("Cannot keep the list of restored files", e))?;
    if let Some(root) = root.filter(|_| !opts.dry_run) {
        check::on_disk(
            root,
            &placed,
            &mut tally.counts,
            &mut tally.failures,
            target,
        )
        .map_err(|e| local("Cannot read the list of restored files back", e))?;
    }
    let markers = markers
        .finish()
        .map_err(|e| local("Cannot keep the directory markers", e))?;
    let shown_dir = |rel: &str| ctx.shown_path(rel);
    let job = dirs::DirsJob {
        client,
        url,
        root: root.map(|r| &**r),
        markers,
        created_unmarked: dirs.map_or(0, |d| d.created_unmarked),
        dry_run: opts.dry_run,
        as_root: ctx.as_root,
        concurrency: opts.concurrency(),
        shown: &shown_dir,
    };
    dirs::finish(job, &mut tally.counts, &mut tally.failures, cancel).await
}
