//! `--restore`: the objects under the prefix back into a directory, each checked against the
//! checksum S3 keeps for it before it takes its final name.
//!
//! One streaming pipeline, in memory that does not grow with the number of objects:
//! - [`list`]: the prefix is listed in S3's byte order of keys (sorted in bounded memory by
//!   [`crate::s3::listing::list_sorted`]) and consumed as a stream; the key checks (a key
//!   used as another's directory) hold back only the keys whose fate is still open.
//! - [`plan`]: a pure decision per key (file, directory marker, refused) and per object
//!   (fetch, already present, conflict, archived...) from what is on disk.
//! - [`object`] with [`fetch`], [`check`] and [`place`]: one task per file, through the run's
//!   bounded [`Dispatch`]: GET (whole or ranged) into an unnamed file in the target directory,
//!   checked against the object's checksum, given its recorded metadata, then its name.
//! - [`count`]: outcomes into counts and typed, bounded failures; every file counted restored
//!   or already present goes to a spill file that the check at the end reads.
//! - [`dirs`]: directories created private as the keys pass; the markers are spilled and
//!   applied at the end, deepest first, reading the spill backwards.
//!
//! An interrupted or killed run leaves no partial file under a final name and nothing a
//! rerun does not remove; a rerun skips what is already there (same size and mtime).

pub mod check;
pub mod count;
pub mod dirs;
pub mod fetch;
pub mod list;
pub mod object;
pub mod place;
pub mod plan;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::display::display_path;
use crate::options::Options;
use crate::progress::{self, Progress};
use crate::report::{Cause, RestoreCounts, S3Kind, Summary};
use crate::run::dispatch::{Dispatch, Stop};
use crate::run::outcome::{Failures, Stage};
use crate::run::sorted::Sorted;
use crate::run::spill::Spill;
use crate::run::{failed, RunError};
use crate::s3::listing::Listed;
use crate::s3::{self};
use crate::FLOW;
use count::{Outcome, Tally};
use dirs::{Dirs, MarkerDir};
use fetch::Transfer;
use object::{Ctx, Done, Job};
use plan::Key;

pub use plan::{is_directory_marker, path_problem};

/// What the phases of a restore returned, as far as it got.
#[derive(Default)]
struct Phases {
    /// The restore phase's counts and failures, if it ran.
    restored: Option<(RestoreCounts, Failures)>,
    durations: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// The restore's summary, assembled from what its phases did.
    fn summary(self) -> Summary {
        let mut summary = Summary {
            phases: self.durations,
            ..Summary::default()
        };
        if let Some((c, failures)) = self.restored {
            summary.failed = c.problems();
            summary.content_verified = c.checksum_verified;
            summary.content_unverifiable = c.size_only;
            summary.failures = failures.lines();
            summary.restore = Some(c);
        }
        summary
    }
}

/// [`run`] with the reason a restore stopped, for front ends that raise it, and the summary
/// of what it did (also when it failed).
pub async fn run_phases(
    opts: &Options,
    cancel: &CancellationToken,
) -> (Summary, Result<(), RunError>) {
    let mut phases = Phases::default();
    let result = run_collecting(opts, cancel, &mut phases).await;
    (phases.summary(), result)
}

async fn run_collecting(
    opts: &Options,
    cancel: &CancellationToken,
    phases: &mut Phases,
) -> Result<(), RunError> {
    let (Some(target), Some(raw)) = (opts.source_dir.clone(), opts.s3_bucket_url.as_deref()) else {
        return Err(failed(
            Cause::BadInput,
            "Target directory and S3 bucket URL are both required.".into(),
        ));
    };
    let url = BucketUrl::parse(raw).map_err(|e| failed(Cause::BadInput, e.to_string()))?;
    log::info!(target: FLOW, "Restoring {url} into {}{}.", display_path(&target), if opts.dry_run { " (dry run)" } else { "" });
    let started = Instant::now();
    let (client, endpoint, s3_settings) = s3::client_for_run()
        .await
        .map_err(|e| failed(Cause::Config, e))?;
    let transfer = Transfer::resolve(opts, &s3_settings);
    // The same lock as a sync of the prefix: a sync running under it would delete or replace
    // objects this restore has listed (each a failed file here), so the two never overlap.
    let _lock = crate::lock::acquire(&crate::lock::Target::new(endpoint.as_deref(), &url))?;
    let listing = crate::s3::listing::list_sorted(&client, &url, cancel).await?;
    let totals = list::totals(&listing)
        .map_err(|e| failed(Cause::LocalIo, format!("Cannot read the listing back: {e}")))?;
    if totals.objects == 0 {
        return Err(failed(
            Cause::BadInput,
            nothing_to_restore(&client, &url).await,
        ));
    }
    // Created only now: a mistyped URL leaves no empty target behind.
    let root = dirs::open_target(&target, opts.dry_run)?;
    phases.durations.push(("prepare", started.elapsed()));
    let started = Instant::now();
    let Restored {
        counts: c,
        failures,
        cause: first_cause,
        result,
    } = restore_listing(
        &client, &url, &target, root, &listing, &totals, opts, &transfer, cancel,
    )
    .await;
    phases.durations.push(("restore", started.elapsed()));
    phases.restored = Some((c.clone(), failures));
    result?;
    if c.not_attempted > 0 {
        return Err(failed(
            Cause::S3(S3Kind::NoAnswer),
            crate::health::stopped_answering(c.failed, c.not_attempted, "downloads"),
        ));
    }
    let (would, dry) = if opts.dry_run {
        ("would be restored", "(dryrun) ")
    } else {
        ("restored", "")
    };
    log::info!(target: FLOW, "{dry}{} files {would} ({} bytes), {} already present and unchanged, {} directory markers.", c.restored, c.restored_bytes, c.unchanged, c.directory_markers);
    if !opts.dry_run {
        log::info!(target: FLOW, "{} files found on disk as restored at the end, {} missing.", c.verified, c.missing);
    }
    if c.size_only > 0 {
        log::warn!(target: FLOW, "{} files were checked by size only: their objects carry no whole-object checksum and no MD5 ETag.", c.size_only);
    }
    if c.problems() > 0 {
        // Failed downloads or writes first (S3's cause when S3 refused or did not answer),
        // then files gone from disk; otherwise what was refused needs the admin's eye.
        let cause = if c.failed > 0 {
            first_cause.unwrap_or(Cause::LocalIo)
        } else if c.missing > 0 {
            Cause::LocalIo
        } else {
            Cause::BadInput
        };
        let first = match first_cause {
            Some(cause) if c.failed > 0 => format!("; the first failure: {}", cause_words(cause)),
            _ => String::new(),
        };
        return Err(failed(cause, format!(
            "{} objects under {url} were not restored ({} unsafe keys, {} archived, {} differing local files, {} failures, {} missing from disk at the end){first}.",
            c.problems(),
            c.refused,
            c.archived,
            c.conflicts,
            c.failed,
            c.missing
        )));
    }
    log::info!(target: FLOW, "Completed restoring {url} into {}.", display_path(&target));
    Ok(())
}

/// What kind of failure a download or write was, for the run's last line: S3's refusal or
/// silence is told apart from a local file that could not be written.
fn cause_words(cause: Cause) -> &'static str {
    match cause {
        Cause::S3(S3Kind::AccessDenied) => "S3 denied access",
        Cause::S3(S3Kind::NoAnswer) => "S3 did not answer",
        Cause::S3(S3Kind::NoSuchBucket) => "S3 has no such bucket",
        Cause::S3(S3Kind::Service) => "S3 answered with an error",
        Cause::LocalIo => "a local file or directory could not be written",
        Cause::Verification => "the downloaded content did not match the object",
        Cause::Config => "the S3 configuration",
        Cause::Interrupted => "interrupted",
        Cause::BadInput => "bad input",
        Cause::LockBusy => "another run holds the lock",
        Cause::Internal => "an internal failure",
    }
}

/// The one line a restore of a prefix without objects fails with: restoring nothing is never
/// what a disaster recovery meant (a mistyped bucket or prefix; keys are case-sensitive). A URL
/// naming one object is said to be one.
async fn nothing_to_restore(client: &Client, url: &BucketUrl) -> String {
    let key = url.prefix.trim_end_matches('/');
    let one_object = !key.is_empty() && s3::head_object(client, &url.bucket, key).await.is_ok();
    if one_object {
        format!("s3://{}/{key} is one object, not a prefix: nothing to restore under it. Restore the prefix that holds it.", url.bucket)
    } else {
        format!("No objects under {url}: nothing to restore. Check the bucket and the prefix (keys are case-sensitive).")
    }
}

/// What the restore phase did.
struct Restored {
    counts: RestoreCounts,
    failures: Failures,
    /// The cause of the first failed download or write.
    cause: Option<Cause>,
    result: Result<(), RunError>,
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
async fn restore_listing(
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
                let in_flight = tally.in_flight(&rel);
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
                dispatch.spawn(async move {
                    let _slot = slot;
                    let size = job.obj.size;
                    let done = tokio::select! {
                        _ = cancel2.cancelled() => Done::Interrupted,
                        d = object::restore_one(ctx2, job, permit) => d,
                    };
                    Outcome {
                        rel: in_flight.done(),
                        size,
                        done,
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::outcome::ItemFailure;

    #[test]
    fn the_restore_summary_comes_from_the_restore_phase() {
        let none = Phases::default().summary();
        assert_eq!((none.restore, none.failed), (None, 0));
        let c = RestoreCounts {
            restored: 3,
            checksum_verified: 2,
            size_only: 1,
            refused: 1,
            failed: 2,
            ..RestoreCounts::default()
        };
        let mut f = Failures::default();
        f.push(ItemFailure::new(
            "k".into(),
            Stage::Name,
            Cause::BadInput,
            "unsafe key: ..",
        ));
        let s = Phases {
            restored: Some((c.clone(), f)),
            durations: vec![("restore", Duration::from_millis(2))],
        }
        .summary();
        assert_eq!(
            (s.failed, s.content_verified, s.content_unverifiable),
            (3, 2, 1)
        );
        assert_eq!(
            s.failures,
            [("k".to_string(), "unsafe key: ..".to_string())]
        );
        assert_eq!(s.phases, [("restore", Duration::from_millis(2))]);
        assert_eq!(s.restore, Some(c));
    }
}
