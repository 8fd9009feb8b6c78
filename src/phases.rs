//! The run's steps one at a time, as the Python module's `_checkSourceFiles`,
//! `_synchronizeBucket`, `_verifyBucketContents` and `_executeAction` call them. Each takes
//! plain arguments and decides here (defaults, limits, the lock, the profile's s3 settings),
//! so that the Python extension only translates.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::engine::{self, Job, RunError};
use crate::options::{self, Options, OptionsError};
use crate::plan::Mode;
use crate::report::Cause;
use crate::walk::SourceTree;

/// Runs a blocking step (the walk) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(RunError::Failed {
            cause: Cause::Internal,
            message: format!("source walk failed: {e}"),
        })
    })
}

/// Where a bucket URL is not needed (the name check), names are checked as if the files
/// went to the root of a bucket.
fn bucket_root() -> BucketUrl {
    BucketUrl {
        bucket: "bucket".into(),
        prefix: String::new(),
    }
}

/// The work of a run without its start and end lines: a restore or a sync, as the options say.
pub async fn run_action(opts: &Options, cancel: &CancellationToken) -> Result<(), RunError> {
    if opts.restore {
        crate::restore::run_phases(opts, cancel).await.1
    } else {
        engine::run_phases(opts, cancel).await.1
    }
}

/// Fails if any name under `source_dir` cannot be an object key (one log line each).
pub async fn check_source_files(source_dir: PathBuf) -> Result<(), RunError> {
    blocking(move || engine::prepare(&source_dir, &bucket_root(), false).map(|_| ())).await
}

/// The job `_synchronizeBucket` runs: a full (or upload-only) sync that skips names which
/// cannot be keys. A `max_concurrency` outside 1..=[`options::MAX_CONCURRENCY`] is refused.
pub fn sync_job(
    url: BucketUrl,
    upload_only: bool,
    max_concurrency: Option<usize>,
    allow_empty_source: bool,
) -> Result<Job, OptionsError> {
    if let Some(n) = max_concurrency {
        if !(1..=options::MAX_CONCURRENCY).contains(&n) {
            return Err(OptionsError::Value(format!(
                "max_concurrency must be from 1 to {}, not {n}",
                options::MAX_CONCURRENCY
            )));
        }
    }
    Ok(Job {
        url,
        mode: if upload_only {
            Mode::UploadOnly
        } else {
            Mode::Full
        },
        concurrency: max_concurrency.unwrap_or(options::DEFAULT_MAX_CONCURRENCY),
        allow_empty_source,
        ignore_warnings: true,
        features: Default::default(),
    })
}

/// Makes the prefix a mirror of `source_dir` as `job` says, as a run would: under the run
/// lock, with the profile's s3 settings (`max_concurrency`: the one given, which the
/// profile's does not override).
pub async fn synchronize(
    source_dir: PathBuf,
    mut job: Job,
    max_concurrency: Option<usize>,
    cancel: CancellationToken,
) -> Result<(), RunError> {
    let url = job.url.clone();
    let tree = blocking(move || engine::prepare(&source_dir, &url, true)).await?;
    let (client, endpoint, s3_settings) =
        crate::s3::client_for_run()
            .await
            .map_err(|message| RunError::Failed {
                cause: Cause::Config,
                message,
            })?;
    job.apply_s3_settings(&s3_settings, max_concurrency, None);
    let lock = engine::lock(&job, endpoint.as_deref())?;
    let listing = crate::s3::listing::list(&client, &job.url, &cancel).await?;
    engine::synchronize(&client, &job, &lock, &tree, listing, &cancel)
        .await
        .1
}

/// Checks that every file of `tree` has an object of the same size under `url`.
pub async fn verify(
    tree: Arc<SourceTree>,
    url: BucketUrl,
    cancel: CancellationToken,
) -> Result<(), RunError> {
    let job = Job {
        url,
        mode: Mode::VerifyOnly,
        concurrency: options::DEFAULT_MAX_CONCURRENCY,
        allow_empty_source: false,
        ignore_warnings: true,
        features: Default::default(),
    };
    let client = crate::s3::client()
        .await
        .map_err(|message| RunError::Failed {
            cause: Cause::Config,
            message,
        })?;
    engine::verify(&client, &job, &tree, None, &cancel).await.1
}
