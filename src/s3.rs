//! Talking to S3: the client (configured as the AWS CLI resolves it), listing, uploads
//! (single request and multipart, streamed from disk) and deletes.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart, Delete,
    ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::checksum::{self, StoredChecksums};
use crate::progress::Progress;
use crate::OUTPUT;

/// How objects are written, beyond their content: storage class and server-side encryption
/// (`--storageClass`, `--sse`, `--sseKmsKeyId`), and the counters that progress reads.
/// Every upload also carries a full-object CRC64NVME unless the configuration turned request
/// checksums off (`request_checksum_calculation = when_required`) for a server that rejects them.
#[derive(Debug, Clone, Default)]
pub struct UploadSettings {
    pub storage_class: Option<StorageClass>,
    pub sse: Option<ServerSideEncryption>,
    pub sse_kms_key_id: Option<String>,
    pub progress: Option<Arc<Progress>>,
}

impl UploadSettings {
    fn describe(&self, checksums: bool) -> String {
        let mut s = String::new();
        if checksums {
            s += ", CRC64NVME";
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

/// Whether uploads should carry checksums: yes unless the configuration asked for them
/// only where an operation requires one.
fn checksums_on(client: &Client) -> bool {
    !matches!(
        client.config().request_checksum_calculation(),
        Some(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
    )
}

/// The checksums and ETag S3 keeps for an object (HeadObject with checksum mode enabled,
/// which needs `s3:GetObject`).
pub async fn head_checksums(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<StoredChecksums, S3Error> {
    let h = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|e| s3_error("HeadObject", key, &e))?;
    log::debug!(target: OUTPUT, "HeadObject s3://{bucket}/{}", crate::walk::display_bytes(key.as_bytes()));
    Ok(StoredChecksums {
        crc64nvme: h.checksum_crc64_nvme().map(str::to_string),
        crc32: h.checksum_crc32().map(str::to_string),
        crc32c: h.checksum_crc32_c().map(str::to_string),
        checksum_type: h.checksum_type().map(|t| t.as_str().to_string()),
        etag: h.e_tag().map(str::to_string),
        sse: h.server_side_encryption().map(|e| e.as_str().to_string()),
    })
}

/// Files of this size or more go up as multipart uploads.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Smallest part we send (S3's minimum is 5 MiB; bigger parts mean fewer requests).
pub const MIN_PART_SIZE: u64 = 16 * 1024 * 1024;
/// S3's limits on multipart uploads.
pub const MAX_PARTS: u64 = 10_000;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The largest object a multipart upload can make (10,000 parts of 5 GiB).
pub const MAX_OBJECT_SIZE: u64 = MAX_PARTS * MAX_PART_SIZE;
/// Files up to this size are read into memory for their PutObject (at most one per
/// concurrent request, so memory stays bounded by the concurrency).
pub const IN_MEMORY_BODY: u64 = 1024 * 1024;
/// DeleteObjects takes at most this many keys per request.
const DELETE_BATCH: usize = 1000;

/// One S3 failure, as one line: the operation, the key, and the server's code and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} {target}: {detail}")]
pub struct S3Error {
    pub op: &'static str,
    pub target: String,
    pub detail: String,
    /// The service's error code, when it sent one (for example `NoSuchBucket`).
    pub code: Option<String>,
}

/// The work was cancelled (Ctrl-C, SIGTERM, or Python's KeyboardInterrupt).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error("{path}: {message}")]
    Local { path: String, message: String },
}

impl OpError {
    /// A failure of a local file, named as log lines show paths.
    pub fn local(path: &Path, message: impl Into<String>) -> Self {
        OpError::Local {
            path: crate::walk::display_path(path),
            message: message.into(),
        }
    }
}

pub(crate) fn s3_error<E, R>(op: &'static str, target: &str, err: &SdkError<E, R>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, detail) = match err.as_service_error() {
        Some(service) if service.code().is_some() => {
            let code = service.code().unwrap_or_default().to_string();
            let msg = service.message().unwrap_or_default();
            (
                Some(code.clone()),
                format!("{code}: {msg}").trim_end_matches(": ").to_string(),
            )
        }
        _ => (
            err.code().map(str::to_string),
            one_line(&DisplayErrorContext(err).to_string()),
        ),
    };
    S3Error {
        op,
        target: target.to_string(),
        detail,
        code,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Is an endpoint other than AWS's configured (env or profile), as the AWS CLI would find it?
fn custom_endpoint(sdk: &aws_types::SdkConfig) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_string))
}

/// Attempts per request when the user configures no retries: a backup runs unattended, so
/// it rides out a minute of trouble instead of the SDK's 3 attempts (about 3 s).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Backoff before the first retry (full jitter: a random wait up to this), doubling each time.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Cap on one backoff: with 8 attempts the waits add up to at most 1+2+4+8+10+10+10 = 45 s.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A TCP (and TLS) connection that is not up by then is a failed attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A request whose body has been sent and that gets no response headers by then is a failed
/// attempt (the AWS CLI's read timeout is also 60 s). See [`crate::http_timeout`].
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Overrides [`RESPONSE_TIMEOUT`] (seconds, fractions allowed); the fault tests use it.
pub const RESPONSE_TIMEOUT_ENV: &str = "CBACK3_RESPONSE_TIMEOUT";

/// Has the user set `AWS_MAX_ATTEMPTS`, `AWS_RETRY_MODE`, or `max_attempts` / `retry_mode` in
/// the selected profile? Then their retry settings apply unchanged.
async fn retries_configured() -> bool {
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_some()
        || std::env::var_os("AWS_RETRY_MODE").is_some()
    {
        return true;
    }
    use aws_types::os_shim_internal::{Env, Fs};
    match aws_config::profile::load(&Fs::real(), &Env::real(), &Default::default(), None).await {
        Ok(profiles) => {
            profiles.get("max_attempts").is_some() || profiles.get("retry_mode").is_some()
        }
        Err(_) => false,
    }
}

fn response_timeout() -> Duration {
    std::env::var(RESPONSE_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(RESPONSE_TIMEOUT)
}

/// Builds the S3 client from the standard AWS configuration chain: environment,
/// `~/.aws/config` and `~/.aws/credentials`, `AWS_PROFILE`, `AWS_ENDPOINT_URL[_S3]` and
/// `endpoint_url`, checksum and retry settings. A custom endpoint gets path-style
/// addressing, which S3-compatible servers need.
///
/// Retries: the user's settings if any, otherwise standard mode with
/// [`DEFAULT_MAX_ATTEMPTS`] and backoff from [`INITIAL_BACKOFF`] to [`MAX_BACKOFF`].
/// Timeouts: [`CONNECT_TIMEOUT`] to connect, [`RESPONSE_TIMEOUT`] for an answer once a
/// request is sent, and the SDK's stalled-stream protection (no progress for 20 s) while a
/// body moves. So a request can fail for good only after bounded time, and an unreachable
/// endpoint fails the run within about a minute.
pub async fn client() -> Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let endpoint = custom_endpoint(&sdk);
    let mut builder = aws_sdk_s3::config::Builder::from(&sdk);
    if let Some(url) = &endpoint {
        log::debug!(target: OUTPUT, "S3 endpoint {url} (path-style addressing)");
        builder = builder.force_path_style(true);
    }
    if !retries_configured().await {
        builder = builder.retry_config(
            RetryConfig::standard()
                .with_max_attempts(DEFAULT_MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        );
    }
    builder = builder.timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build(),
    );
    let http = sdk
        .http_client()
        .unwrap_or_else(crate::http_timeout::default_https_client);
    builder = builder.http_client(crate::http_timeout::with_response_timeout(
        http,
        response_timeout(),
    ));
    let conf = builder.build();
    if let Some(r) = conf.retry_config() {
        log::debug!(target: OUTPUT, "S3 retries: {:?} mode, {} attempts, backoff {:?} to {:?}", r.mode(), r.max_attempts(), r.initial_backoff(), r.max_backoff());
    }
    Client::from_conf(conf)
}

/// Part size for a file: at least [`MIN_PART_SIZE`], large enough to stay within 10,000 parts.
pub fn part_size(size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    needed.max(MIN_PART_SIZE)
}

/// Bytes per positioned read of a streamed body.
const BODY_CHUNK: u64 = 256 * 1024;

/// A request body of `remaining` bytes of an open file from `offset`, read by positioned
/// reads (`pread`) on a blocking thread. It reads the file the upload opened and checked,
/// whatever happens to its path meanwhile (the SDK's path body reopens by name).
struct FileRange {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    reading: Option<tokio::task::JoinHandle<std::io::Result<bytes::Bytes>>>,
}

impl http_body::Body for FileRange {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let reading = this.reading.get_or_insert_with(|| {
            let (file, offset) = (this.file.clone(), this.offset);
            let len = this.remaining.min(BODY_CHUNK) as usize;
            tokio::task::spawn_blocking(move || read_exact_at(&file, offset, len).map(Into::into))
        });
        let done = std::task::ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        Poll::Ready(Some(match done {
            Ok(Ok(bytes)) => {
                this.offset += bytes.len() as u64;
                this.remaining -= bytes.len() as u64;
                Ok(http_body::Frame::data(bytes))
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(std::io::Error::other(e)),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// Reads exactly `len` bytes at `offset`; a file that ends earlier has shrunk.
fn read_exact_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while being read",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// A retryable body of `len` bytes of `file` from `offset` (each attempt reads afresh).
fn stream(file: &Arc<File>, offset: u64, len: u64) -> ByteStream {
    let file = file.clone();
    ByteStream::new(aws_smithy_types::body::SdkBody::retryable(move || {
        aws_smithy_types::body::SdkBody::from_body_1_x(FileRange {
            file: file.clone(),
            offset,
            remaining: len,
            reading: None,
        })
    }))
}

/// The open file an upload reads, and what it writes of it. `unchanged` says whether the
/// file is still the version that was opened (see `transfer`); it is asked after a body
/// read into memory, before that body is sent, and before a multipart upload is completed.
pub struct Source<'a> {
    pub file: Arc<File>,
    /// For messages.
    pub path: &'a Path,
    /// Bytes to upload (from the start of the file).
    pub size: u64,
    /// The mtime of the version read, stored as the object's `mtime` metadata.
    pub mtime_ns: i64,
    pub unchanged: &'a (dyn Fn() -> Result<(), OpError> + Send + Sync),
}

/// HeadObject for the object's `mtime` user metadata (written by this tool and rclone);
/// `Ok(None)` when the object has none.
pub async fn head_mtime(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<String>, S3Error> {
    let h = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error("HeadObject", key, &e))?;
    log::debug!(target: OUTPUT, "HeadObject s3://{bucket}/{} (mtime metadata)", crate::walk::display_bytes(key.as_bytes()));
    Ok(h.metadata().and_then(|m| m.get(MTIME_METADATA)).cloned())
}

/// Deletes one object (a copy that may be torn, so that the next run sees it missing).
pub async fn delete_object(client: &Client, bucket: &str, key: &str) -> Result<(), S3Error> {
    let req = client.delete_object().bucket(bucket).key(key).send();
    match tokio::time::timeout(Duration::from_secs(60), req).await {
        Ok(Ok(_)) => {
            log::debug!(target: OUTPUT, "DeleteObject s3://{bucket}/{}", crate::walk::display_bytes(key.as_bytes()));
            Ok(())
        }
        Ok(Err(e)) => Err(s3_error("DeleteObject", key, &e)),
        Err(_) => Err(S3Error {
            op: "DeleteObject",
            target: key.to_string(),
            detail: "timed out".into(),
            code: None,
        }),
    }
}

/// The user metadata key (`x-amz-meta-mtime`) that holds the file's mtime, as rclone writes it.
pub const MTIME_METADATA: &str = "mtime";

/// Uploads one file with a single PutObject (small files read into memory, larger ones
/// streamed from the open file).
pub async fn put(
    client: &Client,
    bucket: &str,
    key: &str,
    src: &Source<'_>,
    settings: &UploadSettings,
) -> Result<(), OpError> {
    let (size, path) = (src.size, src.path);
    let body = if size <= IN_MEMORY_BODY {
        // Small files are read whole: one read instead of a streaming body, and the SDK can
        // send the checksum as a header instead of an aws-chunked trailer.
        let file = src.file.clone();
        let bytes = tokio::task::spawn_blocking(move || read_exact_at(&file, 0, size as usize))
            .await
            .map_err(|e| OpError::local(path, e.to_string()))?
            .map_err(|e| OpError::local(path, e.to_string()))?;
        (src.unchanged)()?;
        ByteStream::from(bytes)
    } else {
        stream(&src.file, 0, size)
    };
    let checksums = checksums_on(client);
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_length(size as i64)
        .metadata(MTIME_METADATA, crate::plan::format_mtime(src.mtime_ns))
        .set_checksum_algorithm(checksums.then_some(ChecksumAlgorithm::Crc64Nvme))
        .set_storage_class(settings.storage_class.clone())
        .set_server_side_encryption(settings.sse.clone())
        .set_ssekms_key_id(settings.sse_kms_key_id.clone())
        .body(body)
        .send()
        .await
        .map_err(|e| s3_error("PutObject", key, &e))?;
    log::debug!(target: OUTPUT, "PutObject s3://{bucket}/{} ({size} bytes{})", crate::walk::display_bytes(key.as_bytes()), settings.describe(checksums));
    settings.bytes_done(size);
    settings.file_done();
    Ok(())
}

/// Uploads one file as a multipart upload whose parts go up concurrently, each part
/// streamed from its range of the file and each holding one permit of `limit`.
/// On any failure or cancellation, or when the file changed while its parts were read,
/// the upload is aborted (never completed), so no parts are left billed.
pub async fn put_multipart(
    client: &Client,
    bucket: &str,
    key: &str,
    src: &Source<'_>,
    settings: &UploadSettings,
    limit: Arc<Semaphore>,
    cancel: &CancellationToken,
) -> Result<(), OpError> {
    let (size, path) = (src.size, src.path);
    if size > MAX_OBJECT_SIZE {
        return Err(OpError::local(
            path,
            format!("{size} bytes is over S3's object size limit of {MAX_OBJECT_SIZE}"),
        ));
    }
    let checksums = checksums_on(client);
    // FULL_OBJECT: S3 keeps one CRC64NVME of the whole content (which later checks can compare
    // with the file's) instead of a checksum of the parts' checksums.
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .metadata(MTIME_METADATA, crate::plan::format_mtime(src.mtime_ns))
        .set_checksum_algorithm(checksums.then_some(ChecksumAlgorithm::Crc64Nvme))
        .set_checksum_type(checksums.then_some(ChecksumType::FullObject))
        .set_storage_class(settings.storage_class.clone())
        .set_server_side_encryption(settings.sse.clone())
        .set_ssekms_key_id(settings.sse_kms_key_id.clone())
        .send()
        .await
        .map_err(|e| s3_error("CreateMultipartUpload", key, &e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let shown = crate::walk::display_bytes(key.as_bytes());
    log::debug!(target: OUTPUT, "CreateMultipartUpload s3://{bucket}/{shown} id {upload_id}{}", settings.describe(checksums));
    let part_settings = PartSettings {
        checksums,
        progress: settings.progress.clone(),
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
        limit,
        cancel,
    )
    .await
    .and_then(|parts| (src.unchanged)().map(|()| parts));
    match result {
        Ok(parts) => {
            let full = checksums
                .then(|| full_object_crc64nvme(&parts, size))
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
                .map_err(|e| s3_error("CompleteMultipartUpload", key, &e));
            match done {
                Ok(_) => {
                    log::debug!(target: OUTPUT, "CompleteMultipartUpload s3://{bucket}/{shown} ({size} bytes)");
                    settings.file_done();
                    abort_strays(client, bucket, key, &upload_id).await;
                    Ok(())
                }
                Err(e) => {
                    abort(client, bucket, key, &upload_id).await;
                    abort_strays(client, bucket, key, &upload_id).await;
                    Err(e.into())
                }
            }
        }
        Err(e) => {
            abort(client, bucket, key, &upload_id).await;
            abort_strays(client, bucket, key, &upload_id).await;
            Err(e)
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
    let listed = match tokio::time::timeout(Duration::from_secs(30), listed).await {
        Ok(Ok(l)) => l,
        // Best effort: the upload itself is settled either way.
        _ => return,
    };
    for u in listed.uploads() {
        let (Some(raw), Some(id)) = (u.key(), u.upload_id()) else {
            continue;
        };
        if id != ours && crate::listing::decode_key(raw) == key {
            abort(client, bucket, key, id).await;
        }
    }
}

/// Aborts a multipart upload; bounded in time so an unreachable server cannot hang an
/// interrupted run.
async fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let shown = crate::walk::display_bytes(key.as_bytes());
    let req = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send();
    match tokio::time::timeout(std::time::Duration::from_secs(30), req).await {
        Ok(Ok(_)) => {
            log::debug!(target: OUTPUT, "AbortMultipartUpload s3://{bucket}/{shown} id {upload_id}")
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
fn full_object_crc64nvme(parts: &[CompletedPart], size: u64) -> Option<String> {
    let psize = part_size(size);
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
    checksums: bool,
    progress: Option<Arc<Progress>>,
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
    let psize = part_size(size);
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
            let body = stream(file, offset, len);
            let (checksums, progress) = (settings.checksums, settings.progress.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let out = client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(number as i32)
                    .content_length(len as i64)
                    .set_checksum_algorithm(checksums.then_some(ChecksumAlgorithm::Crc64Nvme))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| s3_error("UploadPart", &key, &e))?;
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

/// Deletes objects by key, in batches. Returns the keys deleted and the failures.
pub async fn delete(
    client: &Client,
    bucket: &str,
    keys: &[String],
    cancel: &CancellationToken,
) -> (usize, Vec<S3Error>) {
    let mut deleted = 0;
    let mut failures = Vec::new();
    for batch in keys.chunks(DELETE_BATCH) {
        if cancel.is_cancelled() {
            break;
        }
        let objects: Vec<ObjectIdentifier> = batch
            .iter()
            .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
            .collect();
        let request = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .expect("objects are set");
        match client
            .delete_objects()
            .bucket(bucket)
            .delete(request)
            .send()
            .await
        {
            Ok(out) => {
                let errors = out.errors();
                for e in errors {
                    failures.push(S3Error {
                        op: "DeleteObjects",
                        target: e.key().unwrap_or_default().to_string(),
                        detail: format!(
                            "{}: {}",
                            e.code().unwrap_or_default(),
                            e.message().unwrap_or_default()
                        ),
                        code: e.code().map(str::to_string),
                    });
                }
                deleted += batch.len() - errors.len();
                for k in batch {
                    log::debug!(target: OUTPUT, "DeleteObjects s3://{bucket}/{}", crate::walk::display_bytes(k.as_bytes()));
                }
            }
            Err(e) => failures.push(s3_error("DeleteObjects", bucket, &e)),
        }
    }
    (deleted, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_stay_within_limits() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(part_size(20 * MIB), MIN_PART_SIZE);
        assert_eq!(part_size(1024 * MIB), MIN_PART_SIZE);
        for size in [MIN_PART_SIZE * MAX_PARTS + 1, 5 << 40, MAX_OBJECT_SIZE] {
            let p = part_size(size);
            assert!(size.div_ceil(p) <= MAX_PARTS, "{size}");
            assert!(p <= MAX_PART_SIZE, "{size}");
        }
    }
}
