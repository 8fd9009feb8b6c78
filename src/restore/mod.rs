//! `--restore`: the objects under the prefix back into a directory, each checked against the
//! checksum S3 keeps for it before it takes its final name.
//!
//! One streaming pipeline, in memory that does not grow with the number of objects:
//! - [`list`]: the prefix is listed in S3's byte order of keys (sorted in bounded memory by
//!   [`crate::s3::listing::list_sorted`]) and consumed as a stream; the key checks (a key
//!   used as another's directory) hold back only the keys whose fate is still open.
//! - [`plan`]: a pure decision per key (file, directory marker, refused) and per object
//!   (fetch, already present, conflict, archived...) from what is on disk.
//! - [`stream`]: the loop that decides each key as it passes and dispatches the files
//!   through the run's bounded [`crate::run::dispatch::Dispatch`].
//! - [`object`] with [`fetch`], [`check`] and [`place`]: one task per file: GET (whole or
//!   ranged) into an unnamed file in the target directory, checked against the object's
//!   checksum, given its recorded metadata, then its name.
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
pub mod job;
pub mod list;
pub mod object;
pub mod place;
pub mod plan;
pub mod stream;

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::display::display_path;
use crate::options::Options;
use crate::report::{Cause, RestoreCounts, S3Kind, Summary};
use crate::run::outcome::Failures;
use crate::run::{failed, RunError};
use crate::s3;
use crate::FLOW;
use fetch::Transfer;
use stream::Restored;

pub use crate::metadata::is_directory_marker;
pub use plan::path_problem;

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

/// A restore: the reason it stopped (for front ends that raise it), and the summary of what
/// it did (also when it failed).
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
    } = stream::restore_listing(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::outcome::{ItemFailure, Stage};

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
