//! Verification: every local file must have an object of the same size under the prefix,
//! found by merging the walk (as uploaded) with a listing in key order. Objects with no local
//! file are warnings after a verify-only or upload-only run and errors after a full sync (they
//! should be gone). Directory markers are neither files nor extra objects.
//!
//! `--verifyContent` compares each file whose object has its size with the checksum the bucket
//! stores: one HeadObject per file (checksum mode on; needs `s3:GetObject`) says what the
//! object carries; [`checksum::choose`] picks the comparison (CRC64NVME, CRC32, CRC32C, else
//! the ETag as MD5 for single-part objects) and the file is streamed through that hash only.
//! A difference is an ERROR per file (the run fails); a sync run (not `-v`) uploads that file
//! again and compares once more, so the run that finds a bad copy also replaces it. An object
//! whose content cannot be checked without downloading it (a multipart object of another
//! tool, an SSE-KMS object without checksum) is a WARNING per object plus a count, and does not
//! fail the run: its size was verified, and failing every run over objects the tool cannot
//! check would teach people to ignore the failure. At most `concurrency` files are in progress
//! and at most one hash per core runs at a time, each with a fixed buffer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::job::{Job, QUEUE};
use super::plan::{self, Check, Join, Mode};
use super::transfer;
use super::walk::{Local, LocalFile};
use crate::checksum;
use crate::display::display_bytes;
use crate::progress::{self, Progress};
use crate::report::{Cause, S3Kind};
use crate::run::dispatch::{Dispatch, Finished, Stop};
use crate::run::outcome::{Failures, ItemFailure, Stage};
use crate::run::sorted::Sorted;
use crate::run::spill::Spilled;
use crate::run::{failed, RunError};
use crate::s3::listing::Listed;
use crate::FLOW;

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
    pub failures: Failures,
}

/// The local side of a verification, in key order: the run's walk, or the Python API's list.
#[derive(Clone)]
pub enum LocalSide {
    Walked(Spilled<Local>),
    Listed(Arc<Vec<Local>>),
}

impl LocalSide {
    fn iter(&self) -> Box<dyn Iterator<Item = std::io::Result<Local>> + Send + '_> {
        match self {
            LocalSide::Walked(s) => Box::new(s.iter()),
            LocalSide::Listed(v) => Box::new(v.iter().cloned().map(Ok)),
        }
    }

    /// A list of files (any order, as the Python API gives them) in key order.
    pub fn from_files(mut files: Vec<LocalFile>, own: &[Box<str>]) -> Self {
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        LocalSide::Listed(Arc::new(
            files
                .into_iter()
                .map(|file| Local::File {
                    own: own.contains(&file.rel),
                    file,
                })
                .collect(),
        ))
    }
}

/// What the merge found, counted as it passed.
#[derive(Default)]
struct Tally {
    verified: usize,
    errors: usize,
    extras: usize,
    failures: Failures,
}

/// The merge of the verification, on its own thread: logs each difference and sends each file
/// whose content is to be compared to `content`.
fn compare(
    local: LocalSide,
    listing: Arc<Sorted<Listed>>,
    mode: Mode,
    versions: Arc<HashMap<Box<str>, LocalFile>>,
    content: Option<tokio::sync::mpsc::Sender<LocalFile>>,
) -> Result<Tally, RunError> {
    let mut t = Tally::default();
    let error = |t: &mut Tally, name: String, line: String, why: String| {
        log::error!(target: FLOW, "{line}");
        t.errors += 1;
        t.failures.push(ItemFailure::new(
            name,
            Stage::Verify,
            Cause::Verification,
            why,
        ));
    };
    // Files uploaded in another version than the walk saw are compared with that version.
    let as_uploaded = local.iter().map(|l| match l {
        Ok(Local::File { file, own }) => Ok(Local::File {
            file: versions.get(&file.rel).cloned().unwrap_or(file),
            own,
        }),
        other => other,
    });
    for pair in Join::new(as_uploaded, listing.iter()) {
        let pair =
            pair.map_err(|e| failed(Cause::Internal, format!("Verification stopped: {e}.")))?;
        match plan::check(pair) {
            Check::NotAFile => {}
            Check::Same { file, own, size } => {
                t.verified += 1;
                if own {
                    if size != file.size {
                        log::info!(target: FLOW, "[{}] is this run's own file: {} bytes now, its copy {size} bytes (copied as the walk saw it; not a difference).", display_bytes(file.rel.as_bytes()), file.size);
                    }
                } else if let Some(tx) = &content {
                    // An error: the content checks stopped, and say why.
                    let _ = tx.blocking_send(file);
                }
            }
            Check::Missing(f) => {
                let name = display_bytes(f.rel.as_bytes());
                let line = format!("File was apparently not uploaded: [{name}]");
                error(&mut t, name, line, "no object in the bucket".into());
            }
            Check::SizeDiffers { file, size } => {
                let name = display_bytes(file.rel.as_bytes());
                let line = format!(
                    "File size differs [{name}]: expected {} bytes but got {size} bytes",
                    file.size
                );
                let why = format!(
                    "size differs: file {} bytes, object {size} bytes",
                    file.size
                );
                error(&mut t, name, line, why);
            }
            Check::Extra(rel) => {
                t.extras += 1;
                let name = display_bytes(rel.as_bytes());
                if mode == Mode::Full {
                    let line = format!("Object has no local file and was not deleted: [{name}]");
                    error(&mut t, name, line, "object has no local file".into());
                } else {
                    log::warn!(target: FLOW, "Object has no local file: [{name}]");
                }
            }
        }
    }
    Ok(t)
}

/// Compares the tree with the bucket. `known` is a listing taken in this run after which
/// nothing changed; without it the prefix is listed again. `unreadable` paths of the walk fail
/// the run after the comparison. What it found goes into `summary`, whether it fails or not.
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    client: &Client,
    job: &Job,
    root: &Path,
    local: LocalSide,
    known: Option<Arc<Sorted<Listed>>>,
    versions: Arc<HashMap<Box<str>, LocalFile>>,
    unreadable: usize,
    summary: &mut Verified,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let listing = match known {
        Some(l) => l,
        None => Arc::new(crate::s3::listing::list_sorted(client, &job.url, cancel).await?),
    };
    let (tx, rx) = match job.features.verify_content {
        true => {
            let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let mode = job.mode;
    let comparing =
        tokio::task::spawn_blocking(move || compare(local, listing, mode, versions, tx));
    let mut content_failures = 0;
    let mut stop = None;
    if let Some(rx) = rx {
        // A sync run repairs what it finds; `-v` only reports.
        let repair = job.mode != Mode::VerifyOnly;
        let c = content(client, job, root, rx, repair, summary, cancel).await;
        content_failures = c.failures;
        stop = c.stop;
    }
    let t = comparing
        .await
        .map_err(|e| failed(Cause::Internal, format!("verification failed: {e}")))??;
    summary.verified = t.verified;
    summary.verify_errors += t.errors;
    summary.extra_objects = t.extras;
    let mut failures = t.failures;
    failures.extend(std::mem::take(&mut summary.failures));
    summary.failures = failures;
    match stop {
        Some((Stop::Interrupted, _)) => return Err(RunError::Interrupted),
        Some((Stop::Unhealthy, not_attempted)) => {
            return Err(failed(
                Cause::S3(S3Kind::NoAnswer),
                crate::health::stopped_answering(content_failures, not_attempted, "content checks"),
            ))
        }
        None => {}
    }
    if cancel.is_cancelled() {
        return Err(RunError::Interrupted);
    }
    if t.errors > 0 || content_failures > 0 {
        log::error!(target: FLOW, "There were differences between source directory and target S3 bucket.");
        return Err(failed(
            Cause::Verification,
            format!(
                "Verification failed: {} differences between {} and {}.",
                t.errors + content_failures,
                crate::display::display_path(root),
                job.url
            ),
        ));
    }
    if unreadable == 0 {
        log::info!(target: FLOW, "Verified {} files in {}.", t.verified, job.url);
        log::info!(target: FLOW, "Completed verifying Amazon S3 bucket contents (no problems found).");
        Ok(())
    } else {
        Err(failed(
            Cause::LocalIo,
            format!("{unreadable} paths could not be read and were not verified."),
        ))
    }
}

/// How one file's content check ended.
enum One {
    Same(&'static str),
    Differs(String),
    Unverifiable,
    Error(String),
    /// Differed, was uploaded again, and now matches.
    Repaired(&'static str, u64),
    /// Differed and could not be uploaded again.
    NotRepaired(String, transfer::Failure),
}

async fn check_one(
    client: &Client,
    bucket: &str,
    key: &str,
    path: PathBuf,
    hash_limit: &Arc<Semaphore>,
) -> One {
    let stored = match crate::s3::head_checksums(client, bucket, key).await {
        Ok(s) => s,
        Err(e) => return One::Error(e.to_string()),
    };
    let Some(method) = checksum::choose(&stored) else {
        return One::Unverifiable;
    };
    let _hashing = hash_limit
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore closed");
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

/// What the content checks came to.
struct Content {
    /// Differences and errors: these fail the run.
    failures: usize,
    /// Why dispatch stopped, and how many files were not checked.
    stop: Option<(Stop, usize)>,
}

/// `--verifyContent`: checks each file sent on `rx`; with `repair`, a file whose object
/// differs is uploaded again and compared once more (a WARNING, then a line saying whether
/// it was repaired).
async fn content(
    client: &Client,
    job: &Job,
    root: &Path,
    mut rx: tokio::sync::mpsc::Receiver<LocalFile>,
    repair: bool,
    summary: &mut Verified,
    cancel: &CancellationToken,
) -> Content {
    log::info!(target: FLOW, "Verifying the content of each file against the checksum the bucket stores.");
    let counters = Progress::new(0, 0);
    let shown = progress::Display::start("Verifying content", counters.clone());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hash_limit = Arc::new(Semaphore::new(cores));
    let mut dispatch: Dispatch<(LocalFile, One)> = Dispatch::new(job.concurrency, cancel);
    let mut by_method: HashMap<&'static str, usize> = HashMap::new();
    let (mut failures, mut unverifiable) = (0, 0);
    let differs_level = if repair {
        log::Level::Warn
    } else {
        log::Level::Error
    };
    let mut record = |f: Finished<(LocalFile, One)>| {
        let (file, one) = match f {
            Finished::Done(d) => d,
            Finished::Lost { item, why } => {
                log::error!(target: FLOW, "Cannot verify the content of [{item}]: {why}");
                failures += 1;
                summary
                    .failures
                    .push(ItemFailure::new(item, Stage::Content, Cause::Internal, why));
                return;
            }
        };
        counters.add_file();
        counters.add_bytes(file.size);
        let name = display_bytes(file.rel.as_bytes());
        let mut fail = |why: String, cause: Cause| {
            failures += 1;
            summary.verify_errors += 1;
            summary
                .failures
                .push(ItemFailure::new(name.clone(), Stage::Content, cause, why));
        };
        match one {
            One::Same(m) => {
                summary.content_verified += 1;
                *by_method.entry(m).or_default() += 1;
            }
            One::Repaired(m, bytes) => {
                log::warn!(target: FLOW, "Repaired [{name}]: uploaded again, and its content now matches.");
                summary.content_verified += 1;
                summary.uploaded += 1;
                summary.uploaded_bytes += bytes;
                *by_method.entry(m).or_default() += 1;
            }
            One::Differs(why) => {
                log::log!(target: FLOW, differs_level, "File content differs [{name}]: {why}");
                fail(format!("content differs: {why}"), Cause::Verification);
            }
            One::NotRepaired(why, f) => {
                log::error!(target: FLOW, "Failed to upload {name}: {}", f.message);
                summary.failed += 1;
                fail(
                    format!(
                        "content differs: {why}; uploading it again failed: {}",
                        f.message
                    ),
                    f.cause,
                );
            }
            One::Unverifiable => {
                log::warn!(target: FLOW, "Cannot verify the content of [{name}]: the object has no whole-object checksum and its ETag is not an MD5 (a multipart upload by another tool, or by this one on a server that rejected full-object checksums; or SSE-KMS)");
                unverifiable += 1;
            }
            One::Error(why) => {
                log::error!(target: FLOW, "Cannot verify the content of [{name}]: {why}");
                fail(format!("content not verified: {why}"), Cause::Verification);
            }
        }
    };
    let mut stop = None;
    while let Some(file) = rx.recv().await {
        if let Some((_, n)) = &mut stop {
            *n += 1;
            continue;
        }
        counters.add_planned(file.size);
        let permit = match dispatch.slot(&mut record).await {
            Ok(p) => p,
            Err(s) => {
                stop = Some((s, 1));
                if s == Stop::Interrupted {
                    break;
                }
                continue;
            }
        };
        let (client, url, hash_limit, cancel) = (
            client.clone(),
            Arc::new(job.url.clone()),
            hash_limit.clone(),
            cancel.clone(),
        );
        let settings = Arc::new(job.features.upload.clone());
        let limit = dispatch.permits();
        let path = root.join(&*file.rel);
        dispatch.spawn(display_bytes(file.rel.as_bytes()), async move {
            let key = url.key(&file.rel);
            let one = check_one(&client, &url.bucket, &key, path.clone(), &hash_limit).await;
            drop(permit);
            let One::Differs(why) = one else {
                return (file, one);
            };
            if !repair {
                return (file, One::Differs(why));
            }
            log::warn!(target: FLOW, "File content differs [{}]: {why}; uploading it again.", display_bytes(file.rel.as_bytes()));
            let again = transfer::upload_one(client.clone(), url.clone(), path.clone(), file.clone(), false, limit, cancel, None, settings).await;
            let stored = match again {
                transfer::FileOutcome::Uploaded(stored, _) => stored,
                transfer::FileOutcome::Failed(f) => return (file, One::NotRepaired(why, f)),
                transfer::FileOutcome::Interrupted => return (file, One::Error("interrupted".into())),
            };
            match check_one(&client, &url.bucket, &key, path, &hash_limit).await {
                One::Same(m) => (file, One::Repaired(m, stored.size)),
                One::Differs(why) | One::Error(why) => (file, One::Differs(why)),
                other => (file, other),
            }
        });
    }
    drop(rx);
    dispatch.finish(&mut record).await;
    shown.finish().await;
    summary.content_unverifiable = unverifiable;
    let mut methods: Vec<_> = by_method.iter().collect();
    methods.sort();
    let methods: Vec<String> = methods.iter().map(|(m, n)| format!("{n} by {m}")).collect();
    log::info!(target: FLOW, "Content of {} files matches ({}).", summary.content_verified, methods.join(", "));
    if unverifiable > 0 {
        log::warn!(target: FLOW, "{unverifiable} objects have nothing to compare their content with (sizes were checked); upload them with this tool, to a server that takes full-object checksums, to make them verifiable.");
    }
    Content { failures, stop }
}
