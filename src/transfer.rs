//! Runs a plan: uploads with bounded concurrency, then (only if every upload succeeded)
//! deletes. Each file's outcome is reported; one failure does not stop the others.

use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::plan::Plan;
use crate::s3::{self, Interrupted, OpError, UploadSettings, MULTIPART_THRESHOLD};
use crate::walk::{display_bytes, LocalFile, SourceTree};
use crate::{FLOW, OUTPUT};

/// What the upload phase did.
#[derive(Debug, Default)]
pub struct UploadOutcome {
    pub uploaded: usize,
    pub bytes: u64,
    /// One line per file that failed: the file and why.
    pub failures: Vec<String>,
    /// The same failures as (file, why), for the summary file.
    pub failed_files: Vec<(String, String)>,
    pub interrupted: bool,
    /// Files not dispatched because the endpoint stopped answering (see [`crate::health`]).
    pub not_attempted: usize,
}

fn still_same(path: &std::path::Path, f: &LocalFile) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("vanished during upload: {e}"))?;
    if meta.len() != f.size || crate::walk::mtime_ns(&meta) != f.mtime_ns {
        return Err(format!(
            "changed during upload (size {} -> {}); it will be uploaded again on the next run",
            f.size,
            meta.len()
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn upload_one(
    client: Client,
    url: Arc<BucketUrl>,
    path: std::path::PathBuf,
    file: LocalFile,
    limit: Arc<Semaphore>,
    cancel: CancellationToken,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    settings: Arc<UploadSettings>,
) -> Result<u64, String> {
    let key = url.key_for(file.rel.split('/'));
    let work = async {
        if file.size >= MULTIPART_THRESHOLD {
            s3::put_multipart(
                &client,
                &url.bucket,
                &key,
                &path,
                file.size,
                &settings,
                limit,
                &cancel,
            )
            .await
        } else {
            s3::put(&client, &url.bucket, &key, &path, file.size, &settings).await
        }
    };
    let result = tokio::select! {
        // Multipart uploads watch the token themselves so that they can abort.
        _ = cancel.cancelled(), if permit.is_some() => Err(OpError::Interrupted(Interrupted)),
        r = work => r,
    };
    drop(permit);
    match result {
        Ok(()) => still_same(&path, &file).map(|()| file.size),
        Err(OpError::Interrupted(_)) => Err(String::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// Uploads the planned files. At most `concurrency` requests (whole small files or parts
/// of large ones) are in flight at once.
pub async fn upload(
    client: &Client,
    url: &BucketUrl,
    tree: &SourceTree,
    plan: &Plan,
    concurrency: usize,
    settings: &UploadSettings,
    cancel: &CancellationToken,
) -> UploadOutcome {
    let settings = Arc::new(settings.clone());
    let limit = Arc::new(Semaphore::new(
        concurrency.clamp(1, crate::options::MAX_CONCURRENCY),
    ));
    let health = crate::health::Health::new();
    let url = Arc::new(url.clone());
    let mut out = UploadOutcome::default();
    let mut tasks: JoinSet<(usize, Result<u64, String>)> = JoinSet::new();
    let collect =
        |out: &mut UploadOutcome, tree: &SourceTree, idx: usize, r: Result<u64, String>| {
            let name = display_bytes(tree.files[idx].rel.as_bytes());
            match r {
                Ok(bytes) => {
                    health.answered();
                    out.uploaded += 1;
                    out.bytes += bytes;
                }
                Err(e) if e.is_empty() => out.interrupted = true,
                Err(e) => {
                    log::error!(target: FLOW, "Failed to upload {name}: {e}");
                    out.failures.push(format!("{name}: {e}"));
                    out.failed_files.push((name, e));
                }
            }
        };
    for (n, &(idx, reason)) in plan.uploads.iter().enumerate() {
        let file = &tree.files[idx];
        let permit = tokio::select! {
            _ = cancel.cancelled() => { out.interrupted = true; break }
            p = limit.clone().acquire_owned() => p.expect("semaphore closed"),
        };
        // Checked once a slot is free, as failures arrive while the loop waits for one.
        if health.tripped() {
            out.not_attempted = plan.uploads.len() - n;
            break;
        }
        log::info!(target: OUTPUT, "upload: {} to s3://{}/{}{} ({reason})", display_bytes(file.rel.as_bytes()), url.bucket, url.prefix, display_bytes(file.rel.as_bytes()));
        // A multipart upload takes a permit per part, so it must not hold one itself.
        let permit = (file.size < MULTIPART_THRESHOLD).then_some(permit);
        let fut = upload_one(
            client.clone(),
            url.clone(),
            tree.path_of(file),
            file.clone(),
            limit.clone(),
            cancel.clone(),
            permit,
            settings.clone(),
        );
        tasks.spawn(crate::health::scope(health.clone(), async move {
            (idx, fut.await)
        }));
        while let Some(done) = tasks.try_join_next() {
            if let Ok((i, r)) = done {
                collect(&mut out, tree, i, r);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, r)) => collect(&mut out, tree, i, r),
            Err(e) => out.failures.push(format!("upload task failed: {e}")),
        }
    }
    if cancel.is_cancelled() {
        out.interrupted = true;
    }
    out
}

/// What the delete phase did.
#[derive(Debug, Default)]
pub struct DeleteOutcome {
    /// Objects known to be gone.
    pub deleted: usize,
    /// Each key that could not be deleted (relative to the prefix, as shown) and why.
    pub failures: Vec<(String, String)>,
    /// Cancelled before every object was tried.
    pub interrupted: bool,
    /// Objects whose delete request got no answer before the interruption and that could not
    /// be checked afterwards: they may or may not be gone.
    pub unknown: usize,
}

/// Deletes the planned objects. Call only after every upload succeeded.
pub async fn delete(
    client: &Client,
    url: &BucketUrl,
    plan: &Plan,
    cancel: &CancellationToken,
) -> DeleteOutcome {
    let keys: Vec<String> = plan
        .deletes
        .iter()
        .map(|rel| format!("{}{}", url.prefix, rel))
        .collect();
    for k in &keys {
        log::info!(target: OUTPUT, "delete: s3://{}/{}", url.bucket, display_bytes(k.as_bytes()));
    }
    let done = s3::delete(client, &url.bucket, &keys, cancel).await;
    let shown = |key: &str| display_bytes(url.relative(key).unwrap_or(key).as_bytes());
    let failures = done
        .failures
        .into_iter()
        .map(|e| {
            log::error!(target: FLOW, "Failed to delete s3://{}/{}: {}", url.bucket, display_bytes(e.target.as_bytes()), e.detail);
            (shown(&e.target), format!("delete failed: {}", e.detail))
        })
        .collect();
    for key in &done.unknown {
        log::warn!(target: FLOW, "Not known whether s3://{}/{} was deleted (its request was interrupted).", url.bucket, display_bytes(key.as_bytes()));
    }
    DeleteOutcome {
        deleted: done.deleted,
        failures,
        interrupted: done.interrupted,
        unknown: done.unknown.len(),
    }
}
