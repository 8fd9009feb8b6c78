//! Uploads: a single PutObject or a multipart upload (parts in parallel, aborted and
//! retried without checksums when the server rejects them), and stray multipart cleanup.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumType, CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::body::{read_exact_at, stream, Source};
use super::checksum_fallback::{
    rejection_of, when_required, ChecksumFallback, ChecksumLevel, Rejected,
};
use super::error::{s3_error, s3_error_detail, Interrupted, OpError};
use super::limits::{IN_MEMORY_BODY, MAX_OBJECT_SIZE, MAX_PARTS};
use super::settings::{Bandwidth, Multipart};
use crate::bucket_url::show_object;
use crate::checksum;
use crate::progress::Progress;
use crate::OUTPUT;

/// Bound on each request that cleans up multipart uploads (aborting ours after a failure or
/// an interruption, listing and aborting leftovers): cleanup is best effort (a failure is
/// only warned about), so a server slow to answer costs at most this much instead of
/// hanging an interrupted run.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How objects are written, beyond their content: storage class and server-side encryption
/// (`--storageClass`, `--sse`, `--sseKmsKeyId`), and the counters that progress reads.
/// Every upload also carries a full-object CRC64NVME unless the configuration turned request
/// checksums off (`request_checksum_calculation = when_required`) or the server rejected it
/// earlier in the run ([`ChecksumLevel`]).
#[derive(Debug, Clone, Default)]
pub struct UploadSettings {
    pub storage_class: Option<StorageClass>,
    pub sse: Option<ServerSideEncryption>,
    pub sse_kms_key_id: Option<String>,
    pub progress: Option<Arc<Progress>>,
    /// The run's checksum level, stepped down when the server rejects checksums.
    pub checksums: Arc<ChecksumFallback>,
    /// Multipart threshold and part size (the profile's `s3` settings, else ours).
    pub multipart: Multipart,
    /// `--maxBandwidth` or the profile's `max_bandwidth`: one limit for the whole run.
    pub bandwidth: Option<Arc<Bandwidth>>,
}

impl UploadSettings {
    fn describe(&self, checksums: ChecksumLevel) -> String {
        let mut s = String::new();
        match checksums {
            ChecksumLevel::Crc64Nvme => s += ", CRC64NVME",
            ChecksumLevel::Crc32 => s += ", CRC32",
            ChecksumLevel::Off => {}
        }
        if let Some(c) = &self.storage_class {
            s += &format!(", storage class {}", c.as_str());
        }
        if let Some(e) = &self.sse {
            s += &format!(", SSE {}", e.as_str());
        }
        if let Some(k) = &self.sse_kms_key_id {
            s += &format!(" key {k}");
        }
        s
    }

    fn bytes_done(&self, n: u64) {
        if let Some(p) = &self.progress {
            p.add_bytes(n);
        }
    }

    fn file_done(&self) {
        if let Some(p) = &self.progress {
            p.add_file();
        }
    }
}

/// Part size for a file: at least `min` (the configured part size), large enough to stay
/// within 10,000 parts.
pub fn part_size(size: u64, min: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    needed.max(min)
}

/// Uploads one file with a single PutObject (small files read into memory, larger ones
/// streamed from the open file). Returns the object's ETag, if the server sent one.
pub async fn put(
    client: &Client,
    bucket: &str,
    key: &str,
    src: &Source<'_>,
    settings: &UploadSettings,
) -> Result<Option<String>, OpError> {
    let (size, path) = (src.size, src.path);
    let in_memory = if size <= IN_MEMORY_BODY {
        // Small files are read whole: one read instead of a streaming body, and the SDK can
        // send the checksum as a header instead of an aws-chunked trailer.
        let file = src.file.clone();
        let bytes = tokio::task::spawn_blocking(move || read_exact_at(&file, 0, size as usize))
            .await
            .map_err(|e| OpError::local(path, e.to_string()))?
            .map_err(|e| OpError::local(path, e.to_string()))?;
        (src.unchanged)()?;
        // The whole body is handed over at once: it waits for its share of the limit first.
        if let Some(bw) = &settings.bandwidth {
            bw.take(size).await;
        }
        Some(bytes::Bytes::from(bytes))
    } else {
        None
    };
    let (out, level) = put_with_fallback(client, settings, key, |level| {
        let body = match &in_memory {
            Some(b) => ByteStream::from(b.clone()),
            None => stream(&src.file, 0, size, settings.bandwidth.as_ref()),
        };
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(size as i64)
            .set_metadata(Some(src.metadata()))
            .set_checksum_algorithm(level.algorithm())
            .set_storage_class(settings.storage_class.clone())
            .set_server_side_encryption(settings.sse.clone())
            .set_ssekms_key_id(settings.sse_kms_key_id.clone())
            .body(body)
    })
    .await?;
    let etag = out.e_tag().map(str::to_string);
    log::debug!(target: OUTPUT, "PutObject {} ({size} bytes{})", show_object(bucket, key), settings.describe(level));
    settings.bytes_done(size);
    settings.file_done();
    Ok(etag)
}

/// Sends a PutObject built by `build` for the run's checksum level, and again at a lower level
/// each time the server rejects the checksum (the run then stays at that level: see
/// `ChecksumFallback::rejected`). Returns the answer and the level it was sent with.
async fn put_with_fallback(
    client: &Client,
    settings: &UploadSettings,
    key: &str,
    build: impl Fn(ChecksumLevel) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
) -> Result<
    (
        aws_sdk_s3::operation::put_object::PutObjectOutput,
        ChecksumLevel,
    ),
    OpError,
> {
    let mut level = settings.checksums.level(client);
    loop {
        let request = build(level);
        let sent = match level {
            ChecksumLevel::Off => {
                request
                    .customize()
                    .config_override(when_required())
                    .send()
                    .await
            }
            _ => request.send().await,
        };
        match sent {
            Ok(out) => return Ok((out, level)),
            Err(e) => {
                let retry = rejection_of(&e).and_then(|what| {
                    let shown = s3_error_detail(&e);
                    settings
                        .checksums
                        .rejected(level, what, "PutObject", key, &shown)
                });
                match retry {
                    Some(next) => level = next,
                    None => return Err(s3_error("PutObject", key, &e).into()),
                }
            }
        }
    }
}

/// Puts a directory marker (see [`crate::sync::plan::is_marker`]): a zero-byte object carrying the
/// directory's recorded `metadata`, with the run's checksum level (and its fallback) and
/// server-side encryption. Not its storage class: archive and infrequent-access classes
/// bill a zero-byte object as 40 to 128 KB, and a marker is never read but by HeadObject.
pub async fn put_marker(
    client: &Client,
    bucket: &str,
    key: &str,
    metadata: std::collections::HashMap<String, String>,
    settings: &UploadSettings,
) -> Result<(), OpError> {
    let (_, level) = put_with_fallback(client, settings, key, |level| {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(0)
            .set_metadata(Some(metadata.clone()))
            .set_checksum_algorithm(level.algorithm())
            .set_server_side_encryption(settings.sse.clone())
            .set_ssekms_key_id(settings.sse_kms_key_id.clone())
            .body(ByteStream::from_static(b""))
    })
    .await?;
    log::debug!(target: OUTPUT, "PutObject {} (directory marker{})", show_object(bucket, key), settings.describe(level));
    Ok(())
}

/// Uploads one file as a multipart upload whose parts go up concurrently, each part
/// streamed from its range of the file and each holding one permit of `limit`.
/// On any failure or cancellation, or when the file changed while its parts were read,
/// the upload is aborted (never completed), so no parts are left billed. When the server
/// rejects the upload's checksums (on any of its requests), the upload is aborted and the
/// file uploaded again at once with what the run falls back to ([`ChecksumLevel`]).
/// Returns the object's ETag, if the server sent one.
pub async fn put_multipart(
    client: &Client,
    bucket: &str,
    key: &str,
    src: &Source<'_>,
    settings: &UploadSettings,
    limit: Arc<Semaphore>,
    cancel: &CancellationToken,
) -> Result<Option<String>, OpError> {
    let (size, path) = (src.size, src.path);
    if size > MAX_OBJECT_SIZE {
        return Err(OpError::local(
            path,
            format!("{size} bytes is over S3's object size limit of {MAX_OBJECT_SIZE}"),
        ));
    }
    let mut level = settings.checksums.level(client);
    loop {
        let once = multipart_once(client, bucket, key, src, settings, &limit, cancel, level);
        match once.await {
            Ok(etag) => return Ok(etag),
            Err(MultipartFailure::Failed(e)) => return Err(e),
            Err(MultipartFailure::Rejected {
                what,
                op,
                detail,
                error,
            }) => match settings.checksums.rejected(level, what, op, key, &detail) {
                Some(next) if !cancel.is_cancelled() => level = next,
                _ => return Err(error),
            },
        }
    }
}

/// How one multipart upload at a checksum level ended, when not completed.
enum MultipartFailure {
    /// The server rejected its checksums (the upload is aborted); `error` is the failure
    /// to report if the run cannot fall back any further.
    Rejected {
        what: Rejected,
        op: &'static str,
        detail: String,
        error: OpError,
    },
    Failed(OpError),
}

impl MultipartFailure {
    /// Classifies a failed request of the upload.
    fn of<E>(
        op: &'static str,
        key: &str,
        e: &SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match rejection_of(e) {
            Some(what) => MultipartFailure::Rejected {
                what,
                op,
                detail: s3_error_detail(e),
                error: s3_error(op, key, e).into(),
            },
            None => MultipartFailure::Failed(s3_error(op, key, e).into()),
        }
    }
}

/// One multipart upload of the file, with the checksums of `level`.
#[allow(clippy::too_many_arguments)]
async fn multipart_once(
    client: &Client,
    bucket: &str,
    key: &str,
    src: &Source<'_>,
    settings: &UploadSettings,
    limit: &Arc<Semaphore>,
    cancel: &CancellationToken,
    level: ChecksumLevel,
) -> Result<Option<String>, MultipartFailure> {
    let (size, path) = (src.size, src.path);
    // FULL_OBJECT: S3 keeps one CRC64NVME of the whole content (which later checks can compare
    // with the file's) instead of a checksum of the parts' checksums. At the CRC32 level the
    // type is left out: COMPOSITE, what servers from before 2025 know.
    let full_object = level == ChecksumLevel::Crc64Nvme;
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_metadata(Some(src.metadata()))
        .set_checksum_algorithm(level.algorithm())
        .set_checksum_type(full_object.then_some(ChecksumType::FullObject))
        .set_storage_class(settings.storage_class.clone())
        .set_server_side_encryption(settings.sse.clone())
        .set_ssekms_key_id(settings.sse_kms_key_id.clone())
        .send()
        .await
        .map_err(|e| MultipartFailure::of("CreateMultipartUpload", key, &e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let shown = show_object(bucket, key);
    log::debug!(target: OUTPUT, "CreateMultipartUpload {shown} id {upload_id}{}", settings.describe(level));
    let part_settings = PartSettings {
        level,
        progress: settings.progress.clone(),
        rejected: Default::default(),
        part_size: part_size(size, settings.multipart.part_size),
        bandwidth: settings.bandwidth.clone(),
    };
    let result = upload_parts(
        client,
        bucket,
        key,
        &upload_id,
        &src.file,
        path,
        size,
        &part_settings,
        limit.clone(),
        cancel,
    )
    .await
    .and_then(|parts| (src.unchanged)().map(|()| parts));
    match result {
        Ok(parts) => {
            let full = full_object
                .then(|| full_object_crc64nvme(&parts, size, part_settings.part_size))
                .flatten();
            let done = client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .set_checksum_type(full.is_some().then_some(ChecksumType::FullObject))
                .set_checksum_crc64_nvme(full)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| MultipartFailure::of("CompleteMultipartUpload", key, &e));
            match done {
                Ok(out) => {
                    log::debug!(target: OUTPUT, "CompleteMultipartUpload {shown} ({size} bytes)");
                    settings.file_done();
                    abort_strays(client, bucket, key, &upload_id).await;
                    Ok(out.e_tag().map(str::to_string))
                }
                Err(e) => {
                    abort(client, bucket, key, &upload_id).await;
                    abort_strays(client, bucket, key, &upload_id).await;
                    Err(e)
                }
            }
        }
        Err(e) => {
            abort(client, bucket, key, &upload_id).await;
            abort_strays(client, bucket, key, &upload_id).await;
            let rejected = part_settings
                .rejected
                .lock()
                .ok()
                .and_then(|mut r| r.take());
            Err(match rejected {
                Some((what, detail)) if !cancel.is_cancelled() => MultipartFailure::Rejected {
                    what,
                    op: "UploadPart",
                    detail,
                    error: e,
                },
                _ => MultipartFailure::Failed(e),
            })
        }
    }
}

/// Aborts other open multipart uploads of exactly this key. When the answer to a
/// CreateMultipartUpload is lost, the SDK's retry creates a second upload and the first one
/// stays open (and billed) with nobody knowing its id; an earlier run that could not abort
/// leaves one too. The prefix belongs to this tool (a full sync deletes whatever else is
/// in it), so an open upload of a key being written now is such a leftover.
async fn abort_strays(client: &Client, bucket: &str, key: &str, ours: &str) {
    let listed = client
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(key)
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .send();
    let listed = match tokio::time::timeout(CLEANUP_TIMEOUT, listed).await {
        Ok(Ok(l)) => l,
        // Best effort: the upload itself is settled either way.
        _ => return,
    };
    for u in listed.uploads() {
        let (Some(raw), Some(id)) = (u.key(), u.upload_id()) else {
            continue;
        };
        if id != ours && crate::s3::listing::decode_key(raw) == key {
            abort(client, bucket, key, id).await;
        }
    }
}

/// Aborts every open multipart upload under `prefix` (ListMultipartUploads, all pages), one
/// WARNING each; with `dry_run` only logs them. Called by a run that holds the prefix's lock
/// before it starts uploading, so none of them is this run's: they are leftovers of runs that
/// were killed (a file gone by now keeps its upload open, and billed, for ever otherwise).
/// Best effort: a failure to abort is a WARNING here; a failure to list is returned, as the
/// WARNING line to log (the caller drops it when the run fails for the same reason anyway).
/// Returns how many were found.
pub async fn abort_prefix_strays(
    client: &Client,
    bucket: &str,
    prefix: &str,
    dry_run: bool,
    cancel: &CancellationToken,
) -> Result<usize, String> {
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    let mut found = 0;
    loop {
        let request = client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            // One attempt: a failure leaves the strays to the next run, and must neither slow
            // a run that is failing anyway nor spend the retry quota the real work needs.
            .customize()
            .config_override(
                aws_sdk_s3::config::Config::builder().retry_config(RetryConfig::disabled()),
            )
            .send();
        let page = tokio::select! {
            _ = cancel.cancelled() => return Ok(found),
            r = request => r,
        };
        let page = page.map_err(|e| {
            format!(
                "Could not list open multipart uploads under {}: {}",
                show_object(bucket, prefix),
                s3_error("ListMultipartUploads", prefix, &e).detail
            )
        })?;
        for u in page.uploads() {
            let (Some(raw), Some(id)) = (u.key(), u.upload_id()) else {
                continue;
            };
            let key = crate::s3::listing::decode_key(raw);
            if !key.starts_with(prefix) {
                continue;
            }
            found += 1;
            let shown = show_object(bucket, &key);
            let initiated = u
                .initiated()
                .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
                .unwrap_or_else(|| "unknown".into());
            if dry_run {
                log::warn!(target: crate::FLOW, "(dryrun) would abort stray multipart upload of {shown} (initiated {initiated}, upload id {id})");
                continue;
            }
            log::warn!(target: crate::FLOW, "Aborting stray multipart upload of {shown} (initiated {initiated}, upload id {id}), left open by an earlier run");
            if cancel.is_cancelled() {
                return Ok(found);
            }
            abort(client, bucket, &key, id).await;
        }
        if page.is_truncated() != Some(true) {
            return Ok(found);
        }
        key_marker = page.next_key_marker().map(crate::s3::listing::decode_key);
        id_marker = page.next_upload_id_marker().map(str::to_string);
        if key_marker.is_none() && id_marker.is_none() {
            return Ok(found);
        }
    }
}

/// Aborts a multipart upload; bounded in time so an unreachable server cannot hang an
/// interrupted run.
async fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let shown = crate::display::display_bytes(key.as_bytes());
    let req = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send();
    match tokio::time::timeout(CLEANUP_TIMEOUT, req).await {
        Ok(Ok(_)) => {
            log::debug!(target: OUTPUT, "AbortMultipartUpload {} id {upload_id}", show_object(bucket, key))
        }
        Ok(Err(e)) => {
            log::warn!(target: crate::FLOW, "could not abort multipart upload {upload_id} of {shown}: {}", s3_error("AbortMultipartUpload", key, &e))
        }
        Err(_) => {
            log::warn!(target: crate::FLOW, "could not abort multipart upload {upload_id} of {shown}: timed out")
        }
    }
}

/// The full-object CRC64NVME of a multipart upload, combined from the parts' values (in part
/// order) without reading the file again; `None` if the server did not return them all.
fn full_object_crc64nvme(parts: &[CompletedPart], size: u64, psize: u64) -> Option<String> {
    let mut whole: Option<u64> = None;
    let mut offset = 0u64;
    for p in parts {
        let crc = checksum::parse_crc64nvme(p.checksum_crc64_nvme()?)?;
        let len = psize.min(size - offset);
        whole = Some(match whole {
            None => crc,
            Some(w) => checksum::crc64nvme_combine(w, crc, len),
        });
        offset += len;
    }
    whole.map(|w| checksum::crc_base64(w, 8))
}

/// What each part request needs to know of the upload's settings.
struct PartSettings {
    level: ChecksumLevel,
    progress: Option<Arc<Progress>>,
    /// Set by a part the server answered with a rejection of its checksum.
    rejected: Arc<std::sync::Mutex<Option<(Rejected, String)>>>,
    /// The part size of this file.
    part_size: u64,
    bandwidth: Option<Arc<Bandwidth>>,
}

#[allow(clippy::too_many_arguments)]
async fn upload_parts(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    file: &Arc<File>,
    path: &Path,
    size: u64,
    settings: &PartSettings,
    limit: Arc<Semaphore>,
    cancel: &CancellationToken,
) -> Result<Vec<CompletedPart>, OpError> {
    let psize = settings.part_size;
    let count = size.div_ceil(psize).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut parts: Vec<CompletedPart> = Vec::with_capacity(count as usize);
    let mut next = 0u64;
    let mut first_error: Option<OpError> = None;
    loop {
        // Start parts while permits are free; collect finished ones otherwise.
        while next < count && first_error.is_none() {
            let permit = match limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) if tasks.is_empty() => tokio::select! {
                    _ = cancel.cancelled() => { first_error = Some(Interrupted.into()); break }
                    p = limit.clone().acquire_owned() => p.expect("semaphore closed"),
                },
                Err(_) => break,
            };
            let number = next + 1;
            let offset = next * psize;
            let len = psize.min(size - offset);
            let (client, bucket, key, upload_id) = (
                client.clone(),
                bucket.to_string(),
                key.to_string(),
                upload_id.to_string(),
            );
            let body = stream(file, offset, len, settings.bandwidth.as_ref());
            let (level, progress) = (settings.level, settings.progress.clone());
            let rejected = settings.rejected.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let request = client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(number as i32)
                    .content_length(len as i64)
                    .set_checksum_algorithm(level.algorithm())
                    .body(body);
                let sent = match level {
                    ChecksumLevel::Off => {
                        let r = request.customize().config_override(when_required());
                        r.send().await
                    }
                    _ => request.send().await,
                };
                let out = sent.map_err(|e| {
                    if let Some(what) = rejection_of(&e) {
                        if let Ok(mut r) = rejected.lock() {
                            r.get_or_insert((what, s3_error_detail(&e)));
                        }
                    }
                    s3_error("UploadPart", &key, &e)
                })?;
                if let Some(p) = &progress {
                    p.add_bytes(len);
                }
                Ok::<_, OpError>(
                    CompletedPart::builder()
                        .part_number(number as i32)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_string))
                        .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_string))
                        .set_checksum_sha1(out.checksum_sha1().map(str::to_string))
                        .set_checksum_sha256(out.checksum_sha256().map(str::to_string))
                        .build(),
                )
            });
            next += 1;
        }
        if tasks.is_empty() {
            break;
        }
        let joined = tokio::select! {
            _ = cancel.cancelled() => {
                first_error.get_or_insert(Interrupted.into());
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
            j = tasks.join_next() => j,
        };
        match joined {
            Some(Ok(Ok(part))) => parts.push(part),
            Some(Ok(Err(e))) => {
                first_error.get_or_insert(e);
                tasks.abort_all();
            }
            Some(Err(join)) if join.is_cancelled() => {}
            Some(Err(join)) => {
                first_error
                    .get_or_insert(OpError::local(path, format!("upload task failed: {join}")));
            }
            None => {}
        }
        if next >= count && tasks.is_empty() {
            break;
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    parts.sort_by_key(|p| p.part_number());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::limits::{
        MAX_OBJECT_SIZE, MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE, S3_MIN_PART_SIZE,
    };

    #[test]
    fn part_sizes_stay_within_limits() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(part_size(20 * MIB, MIN_PART_SIZE), MIN_PART_SIZE);
        assert_eq!(part_size(1024 * MIB, MIN_PART_SIZE), MIN_PART_SIZE);
        assert_eq!(part_size(12 * MIB, S3_MIN_PART_SIZE), S3_MIN_PART_SIZE);
        for min in [S3_MIN_PART_SIZE, MIN_PART_SIZE, MAX_PART_SIZE] {
            for size in [MIN_PART_SIZE * MAX_PARTS + 1, 5 << 40, MAX_OBJECT_SIZE] {
                let p = part_size(size, min);
                assert!(size.div_ceil(p) <= MAX_PARTS, "{size}");
                assert!(p <= MAX_PART_SIZE, "{size}");
            }
        }
    }
}
