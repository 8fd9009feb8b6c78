//! `--verifyContent`: each local file's checksum against what the bucket stores for it.
//!
//! One HeadObject per file (checksum mode on; needs `s3:GetObject`) says what the object
//! carries; [`checksum::choose`] picks the comparison (CRC64NVME, CRC32, CRC32C, else the
//! ETag as MD5 for single-part objects) and the file is streamed through that hash only.
//! At most `concurrency` files are in progress and at most one hash per core runs at a time,
//! each with a fixed buffer, so memory stays bounded whatever the tree.
//!
//! A difference is an ERROR per file (the run fails). An object whose content cannot be
//! checked without downloading it (a multipart object of another tool, an SSE-KMS object
//! without checksum) is a WARNING per object plus a count, and does not fail the run: its
//! size was verified, and failing every run over objects that the tool cannot check would
//! teach people to ignore the failure.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::checksum;
use crate::display::display_bytes;
use crate::plan::Listing;
use crate::progress::Progress;
use crate::walk::SourceTree;
use crate::FLOW;

/// What content verification found.
#[derive(Debug, Default)]
pub struct ContentOutcome {
    pub verified: usize,
    /// Comparisons made, by method name.
    pub by_method: HashMap<&'static str, usize>,
    /// (file, why) for each file whose content differs or could not be compared because of an
    /// error (S3 or local); these fail the run.
    pub failures: Vec<(String, String)>,
    /// Files whose objects carry nothing to compare with.
    pub unverifiable: Vec<String>,
    pub interrupted: bool,
    /// Files not checked because the endpoint stopped answering (see [`crate::health`]).
    pub not_attempted: usize,
    /// Indices of the files whose content differs (also in `failures`).
    pub differs: Vec<usize>,
}

enum One {
    Same(&'static str),
    Differs(String),
    Unverifiable,
    Error(String),
}

async fn check_one(
    client: Client,
    bucket: String,
    key: String,
    path: std::path::PathBuf,
    hash_limit: Arc<Semaphore>,
) -> One {
    let stored = match crate::s3::head_checksums(&client, &bucket, &key).await {
        Ok(s) => s,
        Err(e) => return One::Error(e.to_string()),
    };
    let Some(method) = checksum::choose(&stored) else {
        return One::Unverifiable;
    };
    let _hashing = hash_limit.acquire_owned().await.expect("semaphore closed");
    let m = method.clone();
    let local = tokio::task::spawn_blocking(move || checksum::digest_file(&path, &m)).await;
    match local {
        Ok(Ok(v)) if v == method.expected() => One::Same(method.name()),
        Ok(Ok(v)) => One::Differs(format!(
            "{} of the file is {v} but the object has {}",
            method.name(),
            method.expected()
        )),
        Ok(Err(e)) => One::Error(format!("cannot read the file: {e}")),
        Err(e) => One::Error(format!("hash task failed: {e}")),
    }
}

/// Compares the content of every file that has an object of its size in `listing`.
/// A difference is logged at `differs_level` (lower when the caller will repair it).
#[allow(clippy::too_many_arguments)]
pub async fn verify_content(
    client: &Client,
    url: &BucketUrl,
    tree: &SourceTree,
    listing: &Listing,
    concurrency: usize,
    progress: Option<Arc<Progress>>,
    differs_level: log::Level,
    cancel: &CancellationToken,
) -> ContentOutcome {
    let limit = Arc::new(Semaphore::new(
        concurrency.clamp(1, crate::options::MAX_CONCURRENCY),
    ));
    let health = crate::health::Health::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hash_limit = Arc::new(Semaphore::new(cores));
    let mut out = ContentOutcome::default();
    let mut tasks: JoinSet<(usize, One)> = JoinSet::new();
    let record = |out: &mut ContentOutcome, idx: usize, one: One| {
        let f = &tree.files[idx];
        let name = display_bytes(f.rel.as_bytes());
        if let Some(p) = &progress {
            p.add_file();
            p.add_bytes(f.size);
        }
        if !matches!(one, One::Error(_)) {
            health.answered();
        }
        match one {
            One::Same(m) => {
                out.verified += 1;
                *out.by_method.entry(m).or_default() += 1;
            }
            One::Differs(why) => {
                log::log!(target: FLOW, differs_level, "File content differs [{name}]: {why}");
                out.failures.push((name, format!("content differs: {why}")));
                out.differs.push(idx);
            }
            One::Unverifiable => {
                log::warn!(target: FLOW, "Cannot verify the content of [{name}]: the object has no whole-object checksum and its ETag is not an MD5 (a multipart upload by another tool, or by this one on a server that rejected full-object checksums; or SSE-KMS)");
                out.unverifiable.push(name);
            }
            One::Error(why) => {
                log::error!(target: FLOW, "Cannot verify the content of [{name}]: {why}");
                out.failures
                    .push((name, format!("content not verified: {why}")));
            }
        }
    };
    let comparable =
        |f: &crate::walk::LocalFile| listing.get(&f.rel).is_some_and(|o| o.size == f.size);
    for (idx, f) in tree.files.iter().enumerate() {
        if !comparable(f) {
            continue;
        }
        let permit = tokio::select! {
            _ = cancel.cancelled() => { out.interrupted = true; break }
            p = limit.clone().acquire_owned() => p.expect("semaphore closed"),
        };
        if health.tripped() {
            out.not_attempted = tree.files[idx..].iter().filter(|f| comparable(f)).count();
            break;
        }
        let work = check_one(
            client.clone(),
            url.bucket.clone(),
            url.key(&f.rel),
            tree.path_of(f),
            hash_limit.clone(),
        );
        tasks.spawn(crate::health::scope(health.clone(), async move {
            let one = work.await;
            drop(permit);
            (idx, one)
        }));
        while let Some(done) = tasks.try_join_next() {
            if let Ok((i, one)) = done {
                record(&mut out, i, one);
            }
        }
    }
    loop {
        let done = tokio::select! {
            _ = cancel.cancelled() => {
                out.interrupted = true;
                tasks.abort_all();
                break;
            }
            d = tasks.join_next() => d,
        };
        match done {
            Some(Ok((i, one))) => record(&mut out, i, one),
            Some(Err(e)) => out
                .failures
                .push(("?".into(), format!("verify task failed: {e}"))),
            None => break,
        }
    }
    out
}
