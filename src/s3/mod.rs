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
use crate::s3::settings::{Addressing, Bandwidth, Multipart, ProfileS3};
use crate::OUTPUT;

pub mod http;
pub mod listing;
pub mod settings;

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

/// Whether uploads should carry checksums: yes unless the configuration asked for them
/// only where an operation requires one.
fn checksums_on(client: &Client) -> bool {
    !matches!(
        client.config().request_checksum_calculation(),
        Some(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
    )
}

/// Which checksums uploads carry. A run starts at the top and steps down, for the rest of
/// the run, when the server rejects what it was sent (see [`ChecksumFallback`]):
/// 1. `Crc64Nvme`: every PutObject and UploadPart carries a CRC64NVME; multipart uploads are
///    `ChecksumType=FULL_OBJECT` with the whole-file value on CompleteMultipartUpload.
/// 2. `Crc32`: after a rejection of CRC64NVME or of FULL_OBJECT. CRC32 on every request, the
///    algorithm older servers know; multipart uploads without a checksum type (COMPOSITE, the
///    pre-2025 kind: a server that lacks CRC64NVME lacks FULL_OBJECT too).
/// 3. `Off`: after a rejection of any checksum header, or of CRC32. No request checksums
///    (`request_checksum_calculation = when_required` for these requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChecksumLevel {
    Crc64Nvme = 0,
    Crc32 = 1,
    Off = 2,
}

impl ChecksumLevel {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => ChecksumLevel::Crc64Nvme,
            1 => ChecksumLevel::Crc32,
            _ => ChecksumLevel::Off,
        }
    }

    /// The algorithm each PutObject and UploadPart names.
    fn algorithm(self) -> Option<ChecksumAlgorithm> {
        match self {
            ChecksumLevel::Crc64Nvme => Some(ChecksumAlgorithm::Crc64Nvme),
            ChecksumLevel::Crc32 => Some(ChecksumAlgorithm::Crc32),
            ChecksumLevel::Off => None,
        }
    }

    /// What a run at this level does, for the fallback WARNING.
    fn describe(self) -> &'static str {
        match self {
            ChecksumLevel::Crc64Nvme => "CRC64NVME on every upload",
            ChecksumLevel::Crc32 => {
                "CRC32 checksums instead (multipart uploads: a CRC32 per part, no full-object checksum)"
            }
            ChecksumLevel::Off => {
                "no request checksums (the server no longer checks the uploads' content on arrival)"
            }
        }
    }
}

/// What a server's rejection of our checksum headers was about (see [`checksum_rejection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The CRC64NVME algorithm.
    Crc64Nvme,
    /// `ChecksumType=FULL_OBJECT` on a multipart upload.
    FullObject,
    /// Checksum headers as such (B2: `Unsupported header 'x-amz-sdk-checksum-algorithm'`).
    Any,
}

/// Is this error answer a server refusing our checksum headers, rather than any other
/// failure? A 400 (or a 501 NotImplemented) with code InvalidArgument, InvalidRequest or
/// NotImplemented whose message names a checksum header or algorithm. Wordings seen:
/// Backblaze B2 `InvalidArgument: Unsupported header 'x-amz-sdk-checksum-algorithm' received
/// for this API call.` (also `'x-amz-checksum-sha256'`), emulators `InvalidRequest: Checksum
/// algorithm not supported ...: CRC32C`, gateways `x-amz-sdk-checksum-algorithm specified, but
/// no corresponding x-amz-checksum-* or x-amz-trailer headers were found` (a trailer they cannot
/// read). A checksum that did not match (BadDigest, "mismatch") is not a rejection: the data
/// was wrong, and sending less would hide it.
pub fn checksum_rejection(status: u16, code: &str, message: &str) -> Option<Rejected> {
    let code_fits = match code {
        "InvalidArgument" | "InvalidRequest" => status == 400,
        "NotImplemented" => status == 400 || status == 501,
        _ => false,
    };
    if !code_fits {
        return None;
    }
    let m = message.to_ascii_lowercase();
    let about_checksums = ["checksum", "crc64", "crc32", "x-amz-trailer", "full_object"]
        .iter()
        .any(|w| m.contains(w));
    let a_mismatch = [
        "mismatch",
        "did not match",
        "does not match",
        "do not match",
    ]
    .iter()
    .any(|w| m.contains(w));
    if !about_checksums || a_mismatch {
        return None;
    }
    Some(
        if m.contains("full_object") || m.contains("checksum type") || m.contains("checksum-type") {
            Rejected::FullObject
        } else if m.contains("crc64") {
            Rejected::Crc64Nvme
        } else {
            Rejected::Any
        },
    )
}

/// [`checksum_rejection`] of an SDK error (only answers from the server qualify).
fn rejection_of<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> Option<Rejected> {
    let SdkError::ServiceError(s) = err else {
        return None;
    };
    let e = s.err();
    checksum_rejection(
        s.raw().status().as_u16(),
        e.code()?,
        e.message().unwrap_or_default(),
    )
}

/// The run's checksum level, shared by every upload of the run (clones of [`UploadSettings`]
/// share it, repairs included), so that concurrent uploads step down once and the WARNING is
/// logged once per step.
#[derive(Debug, Default)]
pub struct ChecksumFallback {
    level: std::sync::atomic::AtomicU8,
}

impl ChecksumFallback {
    /// The level uploads use now: `Off` from the start when the configuration asked for
    /// checksums only where required.
    pub fn level(&self, client: &Client) -> ChecksumLevel {
        if !checksums_on(client) {
            return ChecksumLevel::Off;
        }
        ChecksumLevel::from_u8(self.level.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// A request sent at `used` was rejected for `what`: steps the run down (logging the one
    /// WARNING of this step if this call made it) and returns the level to retry with, or
    /// `None` when there is nothing left to drop (the error stands).
    fn rejected(
        &self,
        used: ChecksumLevel,
        what: Rejected,
        op: &str,
        key: &str,
        detail: &str,
    ) -> Option<ChecksumLevel> {
        crate::health::answered();
        let next = match (used, what) {
            (ChecksumLevel::Off, _) => return None,
            (ChecksumLevel::Crc64Nvme, Rejected::Crc64Nvme | Rejected::FullObject) => {
                ChecksumLevel::Crc32
            }
            _ => ChecksumLevel::Off,
        };
        let before = ChecksumLevel::from_u8(
            self.level
                .fetch_max(next as u8, std::sync::atomic::Ordering::SeqCst),
        );
        if before < next {
            let rejected = match what {
                Rejected::Crc64Nvme => "the CRC64NVME checksum",
                Rejected::FullObject => {
                    "the full-object (FULL_OBJECT) checksum of multipart uploads"
                }
                Rejected::Any if used == ChecksumLevel::Crc32 => "CRC32 checksums",
                Rejected::Any => "checksum headers",
            };
            let permanent = match next {
                ChecksumLevel::Off => "To make this permanent (and skip the rejected request): request_checksum_calculation = when_required in the AWS profile, or AWS_REQUEST_CHECKSUM_CALCULATION=when_required.",
                _ => "Every run falls back like this by itself; request_checksum_calculation = when_required in the AWS profile (or AWS_REQUEST_CHECKSUM_CALCULATION=when_required) turns upload checksums off from the start.",
            };
            log::warn!(target: crate::FLOW, "The S3 server rejected {rejected} ({op} {}: {detail}); the rest of this run sends {}. {permanent}", crate::walk::display_bytes(key.as_bytes()), next.describe());
        }
        Some(ChecksumLevel::from_u8(
            self.level.load(std::sync::atomic::Ordering::SeqCst),
        ))
    }
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

/// Files of this size or more go up as multipart uploads (default; the profile's
/// `multipart_threshold` replaces it).
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Smallest part we send by default (bigger parts mean fewer requests; the profile's
/// `multipart_chunksize` replaces it).
pub const MIN_PART_SIZE: u64 = 16 * 1024 * 1024;
/// S3's smallest part (all but the last).
pub const S3_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
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
    if is_transport(err) {
        crate::health::transport_failure();
    } else if matches!(err, SdkError::ServiceError(_)) {
        crate::health::answered();
    }
    let (code, detail) = match err.as_service_error() {
        Some(service) if service.code().is_some() => {
            let code = service.code().unwrap_or_default().to_string();
            let msg = service.message().unwrap_or_default();
            (
                Some(code.clone()),
                format!("{code}: {msg}").trim_end_matches(": ").to_string(),
            )
        }
        _ => {
            // The SDK's whole context is long (every credential provider tried, every
            // wrapper): the logfile gets it at -d, the screen with -s; otherwise one line.
            let full = one_line(&DisplayErrorContext(err).to_string());
            log::debug!(target: crate::FLOW, "{op} {}: {full}", crate::walk::display_bytes(target.as_bytes()));
            let detail = if crate::diagnostics::full_chain() {
                full
            } else {
                brief(err)
            };
            (err.code().map(str::to_string), detail)
        }
    };
    S3Error {
        op,
        target: target.to_string(),
        detail,
        code,
    }
}

/// Did the request fail without an answer from the server (timeout, refused or reset
/// connection, cut-off response), after the SDK's own retries?
fn is_transport<E, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
        _ => false,
    }
}

/// Set when the client is built: a configuration problem that explains errors before any
/// request is sent (a profile named by `AWS_PROFILE` that does not exist).
static CONFIG_PROBLEM: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// One readable line for an error the service did not describe: what failed, and the
/// innermost cause (which is the specific one: "Connection refused", "A region must be set").
fn brief<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let mut causes: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut next = std::error::Error::source(err);
    while let Some(c) = next {
        causes.push(c);
        next = c.source();
    }
    let innermost = one_line(&causes.last().map_or(err.to_string(), |c| c.to_string()));
    let credentials = causes
        .iter()
        .any(|c| format!("{c:?}").starts_with("CredentialsNotLoaded"));
    let problem = CONFIG_PROBLEM.lock().ok().and_then(|p| p.clone());
    match err {
        SdkError::DispatchFailure(d) if d.is_io() => {
            format!("cannot reach the endpoint: {innermost}")
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            format!("no connection to the endpoint in time: {innermost}")
        }
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => {
            if let Some(p) = problem {
                format!("no credentials: {p}")
            } else if credentials {
                "no credentials: none in the environment (AWS_ACCESS_KEY_ID), in the profile's \
                 ~/.aws/credentials or ~/.aws/config entries, from web identity, the container \
                 or the instance metadata service"
                    .to_string()
            } else if innermost.contains("region") {
                format!("no region: set AWS_REGION or `region` in the profile ({innermost})")
            } else {
                format!("the request could not be sent: {innermost}")
            }
        }
        SdkError::TimeoutError(_) => format!("no answer in time: {innermost}"),
        SdkError::ResponseError(_) => {
            format!("the response was cut off or unreadable: {innermost}")
        }
        _ => innermost,
    }
}

/// `AWS_PROFILE` names a profile that no configuration file defines?
async fn missing_profile() -> Option<String> {
    let name = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|n| !n.is_empty())?;
    use aws_types::os_shim_internal::{Env, Fs};
    let found =
        match aws_config::profile::load(&Fs::real(), &Env::real(), &Default::default(), None).await
        {
            Ok(profiles) => profiles.get_profile(&name).is_some(),
            Err(_) => false,
        };
    let file = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    (!found).then(|| {
        format!(
            "profile `{name}` named by AWS_PROFILE is not in {} or {}",
            file("AWS_CONFIG_FILE", "~/.aws/config"),
            file("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
        )
    })
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
/// attempt (the AWS CLI's read timeout is also 60 s). See [`crate::s3::http`].
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
        // A value too large for a Duration (1e300) would panic in from_secs_f64.
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(RESPONSE_TIMEOUT)
}

/// A PEM file of CA certificates to trust instead of the system's roots, and where its
/// path was found (`AWS_CA_BUNDLE`, or `ca_bundle` in the named profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: std::path::PathBuf,
    pub source: String,
}

/// The selected profile of `~/.aws/config` and `~/.aws/credentials` (or `AWS_CONFIG_FILE` /
/// `AWS_SHARED_CREDENTIALS_FILE`): `AWS_PROFILE`, else `default`. None when the files
/// cannot be parsed (the SDK then reports the problem where it matters).
async fn profile_set() -> Option<aws_config::profile::ProfileSet> {
    use aws_types::os_shim_internal::{Env, Fs};
    aws_config::profile::load(&Fs::real(), &Env::real(), &Default::default(), None)
        .await
        .ok()
}

/// The CA bundle as the AWS CLI finds it: `AWS_CA_BUNDLE`, then the selected profile's
/// `ca_bundle`. A leading `~/` means the home directory.
fn ca_bundle(profiles: Option<&aws_config::profile::ProfileSet>) -> Option<CaBundle> {
    let (raw, source) = match std::env::var("AWS_CA_BUNDLE") {
        Ok(v) if !v.trim().is_empty() => (v, "AWS_CA_BUNDLE".to_string()),
        _ => {
            let p = profiles?;
            let v = p.get("ca_bundle").filter(|v| !v.trim().is_empty())?;
            (
                v.to_string(),
                format!("ca_bundle of profile {}", p.selected_profile()),
            )
        }
    };
    let raw = raw.trim();
    let path = match (raw.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => raw.into(),
    };
    Some(CaBundle { path, source })
}

/// Reads the CA bundle and checks every certificate in it (the HTTP client would panic on
/// one it cannot parse). The result trusts these certificates only, as the AWS CLI does.
fn load_ca_bundle(ca: &CaBundle) -> Result<aws_smithy_http_client::tls::TlsContext, String> {
    use aws_smithy_http_client::tls::{TlsContext, TrustStore};
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let what = format!("CA bundle {} (from {})", ca.path.display(), ca.source);
    let pem = std::fs::read(&ca.path).map_err(|e| format!("cannot read the {what}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} is not a valid PEM file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} in the {what} cannot be used: {e}", i + 1))?;
    }
    TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
        .build()
        .map_err(|e| format!("the {what} cannot be used: {e}"))
}

/// What the S3 client is built from, resolved as the AWS CLI resolves it.
struct Setup {
    sdk: aws_types::SdkConfig,
    endpoint: Option<String>,
    user_retries: bool,
    ca: Option<CaBundle>,
    /// The selected profile's `s3` settings.
    s3: ProfileS3,
}

/// Whether the `s3` settings can be used together with the endpoint: S3 Transfer
/// Acceleration and dual-stack have endpoints of their own, and acceleration needs
/// virtual-hosted addressing.
fn check_s3_settings(s3: &ProfileS3, endpoint: Option<&str>) -> Result<(), String> {
    let p = &s3.profile;
    for (on, key) in [
        (s3.use_accelerate_endpoint, "use_accelerate_endpoint"),
        (s3.use_dualstack_endpoint, "use_dualstack_endpoint"),
    ] {
        if let (Some(true), Some(url)) = (on, endpoint) {
            return Err(format!(
                "s3 setting {key} = true of profile {p} cannot be used with the custom endpoint {url}"
            ));
        }
    }
    if s3.use_accelerate_endpoint == Some(true) && s3.addressing_style == Some(Addressing::Path) {
        return Err(format!(
            "s3 setting use_accelerate_endpoint = true of profile {p} cannot be used with addressing_style = path"
        ));
    }
    Ok(())
}

/// Path-style addressing? `addressing_style` of the profile's `s3` settings; `auto` (and no
/// setting) means path style with a custom endpoint, virtual-hosted against AWS.
fn path_style(s3: &ProfileS3, endpoint: Option<&str>) -> bool {
    match s3.addressing_style.unwrap_or(Addressing::Auto) {
        Addressing::Path => true,
        Addressing::Virtual => false,
        Addressing::Auto => endpoint.is_some(),
    }
}

/// Resolves the configuration. The HTTPS client (with the CA bundle, if any) is given to the
/// loader too, so credential providers that call out (SSO, STS) trust the same roots.
async fn setup() -> Result<Setup, String> {
    let profiles = profile_set().await;
    let s3 = ProfileS3::from_profiles(profiles.as_ref())?;
    let ca = ca_bundle(profiles.as_ref());
    let tls = ca.as_ref().map(load_ca_bundle).transpose()?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(crate::s3::http::default_https_client(tls))
        .load()
        .await;
    let endpoint = custom_endpoint(&sdk);
    check_s3_settings(&s3, endpoint.as_deref())?;
    let user_retries = retries_configured().await;
    Ok(Setup {
        sdk,
        endpoint,
        user_retries,
        ca,
        s3,
    })
}

fn s3_config(setup: &Setup) -> aws_sdk_s3::Config {
    let sdk = &setup.sdk;
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    if path_style(&setup.s3, setup.endpoint.as_deref()) {
        builder = builder.force_path_style(true);
    }
    if setup.s3.use_accelerate_endpoint == Some(true) {
        builder = builder.accelerate(true);
    }
    if let Some(on) = setup.s3.use_dualstack_endpoint {
        builder = builder.use_dual_stack(on);
    }
    if !setup.user_retries {
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
        .unwrap_or_else(|| crate::s3::http::default_https_client(None));
    builder = builder.http_client(crate::s3::http::with_response_timeout(
        http,
        response_timeout(),
    ));
    builder.build()
}

/// Builds the S3 client from the standard AWS configuration chain: environment,
/// `~/.aws/config` and `~/.aws/credentials`, `AWS_PROFILE`, `AWS_ENDPOINT_URL[_S3]` and
/// `endpoint_url`, checksum and retry settings, `AWS_CA_BUNDLE` and `ca_bundle`. A custom
/// endpoint gets path-style addressing, which S3-compatible servers need.
///
/// Retries: the user's settings if any, otherwise standard mode with
/// [`DEFAULT_MAX_ATTEMPTS`] and backoff from [`INITIAL_BACKOFF`] to [`MAX_BACKOFF`].
/// Timeouts: [`CONNECT_TIMEOUT`] to connect, [`RESPONSE_TIMEOUT`] for an answer once a
/// request is sent, and the SDK's stalled-stream protection (no progress for 20 s) while a
/// body moves. So a request can fail for good only after bounded time, and an unreachable
/// endpoint fails the run within about a minute.
///
/// A CA bundle that cannot be read or holds no usable certificate is an error (one line).
pub async fn client() -> Result<Client, String> {
    client_with_endpoint().await.map(|(client, _)| client)
}

/// [`client`], and the custom endpoint it talks to (`None`: AWS itself), which the run lock
/// needs to tell targets apart.
pub async fn client_with_endpoint() -> Result<(Client, Option<String>), String> {
    client_for_run()
        .await
        .map(|(client, endpoint, _)| (client, endpoint))
}

/// [`client_with_endpoint`], and the profile's `s3` settings that the run applies itself
/// (concurrency, multipart sizes, bandwidth). A value the AWS CLI would refuse, or one that
/// cannot go with the endpoint, is an error (one line).
pub async fn client_for_run() -> Result<(Client, Option<String>, ProfileS3), String> {
    let problem = missing_profile().await;
    if let Ok(mut p) = CONFIG_PROBLEM.lock() {
        *p = problem;
    }
    let setup = setup().await?;
    if let Some(url) = &setup.endpoint {
        log::debug!(target: OUTPUT, "S3 endpoint {url}");
    }
    let path = path_style(&setup.s3, setup.endpoint.as_deref());
    log::debug!(target: OUTPUT, "S3 addressing: {}{}{}", if path { "path-style" } else { "virtual-hosted" },
        if setup.s3.use_accelerate_endpoint == Some(true) { ", Transfer Acceleration" } else { "" },
        if setup.s3.use_dualstack_endpoint == Some(true) { ", dual-stack" } else { "" });
    for key in &setup.s3.not_used {
        log::debug!(target: OUTPUT, "s3 setting {key} of profile {} is not used by this tool", setup.s3.profile);
    }
    if let Some(ca) = &setup.ca {
        log::debug!(target: OUTPUT, "Trusting only the CA bundle {} (from {})", ca.path.display(), ca.source);
    }
    let conf = s3_config(&setup);
    if let Some(r) = conf.retry_config() {
        log::debug!(target: OUTPUT, "S3 retries: {:?} mode, {} attempts, backoff {:?} to {:?}", r.mode(), r.max_attempts(), r.initial_backoff(), r.max_backoff());
    }
    Ok((Client::from_conf(conf), setup.endpoint.clone(), setup.s3))
}

/// The configuration a run would use, as (title, value) lines for `-D`: where the profile,
/// region, endpoint and CA bundle come from, addressing, sizes, checksums, retries and
/// timeouts, and whether credentials were found and from which kind of source. Never a
/// secret: no key, token or credential value is shown. `max_concurrency` and
/// `max_bandwidth` are the command line's `--maxConcurrency` and `--maxBandwidth`, if given.
pub async fn effective_configuration(
    max_concurrency: Option<usize>,
    max_bandwidth: Option<u64>,
) -> Vec<(&'static str, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut out = Vec::new();
    let profiles = profile_set().await;
    let profile_name = profiles
        .as_ref()
        .map(|p| p.selected_profile().to_string())
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let profile_from = if env("AWS_PROFILE").is_some() {
        "from AWS_PROFILE"
    } else {
        "no AWS_PROFILE"
    };
    let files = |var: &str, default: &str| {
        let path = env(var).unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.aws/{default}")
        });
        let state = if std::path::Path::new(&path).is_file() {
            ""
        } else {
            " (missing)"
        };
        format!("{path}{state}")
    };
    out.push((
        "AWS profile",
        format!(
            "{profile_name} ({profile_from}; {}, {})",
            files("AWS_CONFIG_FILE", "config"),
            files("AWS_SHARED_CREDENTIALS_FILE", "credentials")
        ),
    ));
    let in_profile = |key: &str| profiles.as_ref().and_then(|p| p.get(key)).is_some();
    let ca = ca_bundle(profiles.as_ref());
    out.push((
        "CA bundle",
        match &ca {
            None => "none: the system's root certificates".into(),
            Some(c) => match load_ca_bundle(c) {
                Ok(_) => format!(
                    "{} (from {}; instead of the system's roots)",
                    c.path.display(),
                    c.source
                ),
                Err(e) => format!("UNUSABLE: {e}"),
            },
        },
    ));
    let s3 = ProfileS3::from_profiles(profiles.as_ref());
    let setup = match setup().await {
        Ok(s) => s,
        Err(_) => {
            // The CA bundle or the s3 settings are unusable (each shown): resolve the rest
            // without them.
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            Setup {
                endpoint: custom_endpoint(&sdk),
                sdk,
                user_retries: retries_configured().await,
                ca,
                s3: s3.clone().unwrap_or_default(),
            }
        }
    };
    if let Err(e) = s3.and_then(|s| check_s3_settings(&s, setup.endpoint.as_deref())) {
        out.push(("s3 settings", format!("UNUSABLE (a run fails): {e}")));
    }
    let s3 = &setup.s3;
    let from_profile = |set: bool, key: &str| {
        if set {
            format!("s3 {key} of profile {profile_name}")
        } else {
            "default".to_string()
        }
    };
    let conf = s3_config(&setup);
    let region_from = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find(|k| env(k).is_some())
        .map(|k| format!("from {k}"))
        .unwrap_or_else(|| {
            if in_profile("region") {
                format!("from profile {profile_name}")
            } else {
                "from instance metadata, if any".into()
            }
        });
    out.push((
        "region",
        match conf.region() {
            Some(r) => format!("{r} ({region_from})"),
            None => "none (set AWS_REGION or region in the profile)".into(),
        },
    ));
    let endpoint_from = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find(|k| env(k).is_some())
        .map(|k| format!("from {k}"))
        .unwrap_or_else(|| format!("from profile {profile_name}"));
    let style = format!(
        "{} addressing ({})",
        if path_style(s3, setup.endpoint.as_deref()) {
            "path-style"
        } else {
            "virtual-hosted"
        },
        match s3.addressing_style {
            Some(a) => format!(
                "s3 addressing_style = {} of profile {profile_name}",
                format!("{a:?}").to_lowercase()
            ),
            None => "auto: path-style with a custom endpoint".into(),
        }
    );
    let mut extras = String::new();
    if s3.use_accelerate_endpoint == Some(true) {
        extras += &format!(
            ", Transfer Acceleration (s3 use_accelerate_endpoint of profile {profile_name})"
        );
    }
    if s3.use_dualstack_endpoint == Some(true) {
        extras += &format!(", dual-stack (s3 use_dualstack_endpoint of profile {profile_name})");
    }
    out.push((
        "endpoint",
        match &setup.endpoint {
            Some(url) => format!("{url} ({endpoint_from}), {style}{extras}"),
            None => format!("AWS S3 for the region, {style}{extras}"),
        },
    ));
    out.push((
        "max concurrency",
        match (max_concurrency, s3.max_concurrent_requests) {
            (Some(n), _) => format!("{n} requests (--maxConcurrency)"),
            (None, Some(n)) => format!(
                "{n} requests ({})",
                from_profile(true, "max_concurrent_requests")
            ),
            (None, None) => format!(
                "{} requests (default)",
                crate::options::DEFAULT_MAX_CONCURRENCY
            ),
        },
    ));
    let multipart = Multipart::from_profile(s3);
    out.push((
        "multipart",
        format!(
            "files of {} or more ({}), in parts of {} ({}; more for files over {}: at most {MAX_PARTS} parts)",
            crate::s3::settings::show_size(multipart.threshold),
            from_profile(s3.multipart_threshold.is_some(), "multipart_threshold"),
            crate::s3::settings::show_size(multipart.part_size),
            from_profile(s3.multipart_chunksize.is_some(), "multipart_chunksize"),
            crate::s3::settings::show_size(multipart.part_size * MAX_PARTS)
        ),
    ));
    out.push((
        "max bandwidth",
        match (max_bandwidth, s3.max_bandwidth) {
            (Some(r), _) => format!(
                "{} for all uploads together (--maxBandwidth)",
                crate::s3::settings::show_rate(r)
            ),
            (None, Some(r)) => format!(
                "{} for all uploads together ({})",
                crate::s3::settings::show_rate(r),
                from_profile(true, "max_bandwidth")
            ),
            (None, None) => "no limit (default)".into(),
        },
    ));
    if !s3.not_used.is_empty() {
        out.push((
            "s3 settings not used",
            format!("{} (see the README)", s3.not_used.join(", ")),
        ));
    }
    let request = match conf.request_checksum_calculation() {
        Some(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired) => {
            "when_required (uploads carry no checksum)"
        }
        _ => "when_supported (CRC64NVME on every upload)",
    };
    let response = match conf.response_checksum_validation() {
        Some(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired) => "when_required",
        _ => "when_supported",
    };
    out.push((
        "checksums",
        format!("request_checksum_calculation {request}, response_checksum_validation {response}"),
    ));
    out.push((
        "retries",
        match conf.retry_config() {
            Some(r) => format!(
                "{} mode, {} attempts, backoff {} s to {} s ({})",
                format!("{:?}", r.mode()).to_lowercase(),
                r.max_attempts(),
                r.initial_backoff().as_secs_f64(),
                r.max_backoff().as_secs_f64(),
                if setup.user_retries {
                    "the user's AWS_MAX_ATTEMPTS / AWS_RETRY_MODE / profile"
                } else {
                    "this tool's default"
                }
            ),
            None => "none".into(),
        },
    ));
    let response_from = if env(RESPONSE_TIMEOUT_ENV).is_some() {
        format!(" (from {RESPONSE_TIMEOUT_ENV})")
    } else {
        String::new()
    };
    out.push((
        "timeouts",
        format!(
            "connect {} s, response {} s{response_from}, stalled body 20 s",
            CONNECT_TIMEOUT.as_secs_f64(),
            response_timeout().as_secs_f64()
        ),
    ));
    out.push(("credentials", credentials_source(&setup.sdk).await));
    out
}

/// Whether credentials can be found, and the kind of source they came from (never a value).
async fn credentials_source(sdk: &aws_types::SdkConfig) -> String {
    use aws_credential_types::credential_feature::AwsCredentialFeature as F;
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = sdk.credentials_provider() else {
        return "none configured".into();
    };
    let found = tokio::time::timeout(Duration::from_secs(20), provider.provide_credentials());
    let creds = match found.await {
        Err(_) => return "NOT FOUND: no answer within 20 s".into(),
        Ok(Err(e)) => {
            return format!(
                "NOT FOUND in the environment, the profile's files, SSO, web identity, \
                 container or instance metadata ({})",
                one_line(&e.to_string())
            )
        }
        Ok(Ok(c)) => c,
    };
    let kinds: Vec<&str> = creds
        .get_property::<Vec<F>>()
        .map(|features| {
            features
                .iter()
                .filter_map(|f| match f {
                    F::CredentialsEnvVars => Some("environment variables"),
                    F::CredentialsProfile => Some("profile (static keys)"),
                    F::CredentialsProfileSourceProfile => Some("profile source_profile"),
                    F::CredentialsProfileNamedProvider => Some("profile credential_source"),
                    F::CredentialsSso | F::CredentialsProfileSso => Some("SSO"),
                    F::CredentialsProcess | F::CredentialsProfileProcess => {
                        Some("credential_process")
                    }
                    F::CredentialsStsAssumeRole => Some("assumed role (STS)"),
                    F::CredentialsEnvVarsStsWebIdToken
                    | F::CredentialsProfileStsWebIdToken
                    | F::CredentialsStsAssumeRoleWebId => Some("web identity"),
                    F::CredentialsHttp => Some("container endpoint"),
                    F::CredentialsImds => Some("EC2 instance metadata"),
                    F::CredentialsLogin | F::CredentialsProfileLogin => Some("console login"),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut kinds_unique: Vec<&str> = Vec::new();
    for k in kinds {
        if !kinds_unique.contains(&k) {
            kinds_unique.push(k);
        }
    }
    if kinds_unique.is_empty() {
        "found (source not reported by the SDK)".into()
    } else {
        format!("found, from {}", kinds_unique.join(", "))
    }
}

/// Part size for a file: at least `min` (the configured part size), large enough to stay
/// within 10,000 parts.
pub fn part_size(size: u64, min: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    needed.max(min)
}

/// Bytes per positioned read of a streamed body.
const BODY_CHUNK: u64 = 256 * 1024;

/// A request body of `remaining` bytes of an open file from `offset`, read by positioned
/// reads (`pread`) on a blocking thread. It reads the file the upload opened and checked,
/// whatever happens to its path meanwhile (the SDK's path body reopens by name).
/// With a bandwidth limit, each chunk is read once the limit grants it (waiting on a timer).
struct FileRange {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    reading: Option<tokio::task::JoinHandle<std::io::Result<bytes::Bytes>>>,
    bandwidth: Option<Arc<Bandwidth>>,
    /// Bytes the limit granted for the next read (0: none asked yet).
    granted: u64,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
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
        if let (None, Some(bw)) = (&this.reading, &this.bandwidth) {
            if this.granted == 0 {
                this.granted = this.remaining.min(bw.chunk());
                this.waiting = bw
                    .reserve(this.granted)
                    .map(|when| Box::pin(tokio::time::sleep_until(when)));
            }
            if let Some(w) = &mut this.waiting {
                std::task::ready!(w.as_mut().poll(cx));
                this.waiting = None;
            }
        }
        let reading = this.reading.get_or_insert_with(|| {
            let (file, offset) = (this.file.clone(), this.offset);
            let len = match this.granted {
                0 => this.remaining.min(BODY_CHUNK),
                n => n,
            } as usize;
            tokio::task::spawn_blocking(move || read_exact_at(&file, offset, len).map(Into::into))
        });
        let done = std::task::ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        this.granted = 0;
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

/// A retryable body of `len` bytes of `file` from `offset` (each attempt reads afresh, and
/// counts against the bandwidth limit again).
fn stream(
    file: &Arc<File>,
    offset: u64,
    len: u64,
    bandwidth: Option<&Arc<Bandwidth>>,
) -> ByteStream {
    let file = file.clone();
    let bandwidth = bandwidth.cloned();
    ByteStream::new(aws_smithy_types::body::SdkBody::retryable(move || {
        aws_smithy_types::body::SdkBody::from_body_1_x(FileRange {
            file: file.clone(),
            offset,
            remaining: len,
            reading: None,
            bandwidth: bandwidth.clone(),
            granted: 0,
            waiting: None,
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
    /// `st_mode`, owner and group of the version read (`mode`, `uid`, `gid` metadata).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub unchanged: &'a (dyn Fn() -> Result<(), OpError> + Send + Sync),
}

impl Source<'_> {
    /// The user metadata every upload carries, in rclone's names and formats so that rclone
    /// and other tools read it back: `mtime` (seconds since the epoch with up to 9 decimals),
    /// `mode` (octal `st_mode` with its file type, `0100644`), `uid` and `gid` (decimal).
    pub fn metadata(&self) -> std::collections::HashMap<String, String> {
        [
            (MTIME_METADATA, crate::plan::format_mtime(self.mtime_ns)),
            ("mode", format!("0{:o}", self.mode)),
            ("uid", self.uid.to_string()),
            ("gid", self.gid.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
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
    let mut level = settings.checksums.level(client);
    loop {
        let body = match &in_memory {
            Some(b) => ByteStream::from(b.clone()),
            None => stream(&src.file, 0, size, settings.bandwidth.as_ref()),
        };
        let request = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(size as i64)
            .set_metadata(Some(src.metadata()))
            .set_checksum_algorithm(level.algorithm())
            .set_storage_class(settings.storage_class.clone())
            .set_server_side_encryption(settings.sse.clone())
            .set_ssekms_key_id(settings.sse_kms_key_id.clone())
            .body(body);
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
            Ok(_) => break,
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
    log::debug!(target: OUTPUT, "PutObject s3://{bucket}/{} ({size} bytes{})", crate::walk::display_bytes(key.as_bytes()), settings.describe(level));
    settings.bytes_done(size);
    settings.file_done();
    Ok(())
}

/// A per-request configuration that sends no checksum the operation does not require.
fn when_required() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Config::builder()
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
}

/// The server's code and message of an error answer, as one line.
fn s3_error_detail<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> String {
    let code = err.code().unwrap_or_default();
    let msg = err.message().unwrap_or_default();
    one_line(&format!("{code}: {msg}"))
        .trim_end_matches(": ")
        .to_string()
}

/// Uploads one file as a multipart upload whose parts go up concurrently, each part
/// streamed from its range of the file and each holding one permit of `limit`.
/// On any failure or cancellation, or when the file changed while its parts were read,
/// the upload is aborted (never completed), so no parts are left billed. When the server
/// rejects the upload's checksums (on any of its requests), the upload is aborted and the
/// file uploaded again at once with what the run falls back to ([`ChecksumLevel`]).
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
    let mut level = settings.checksums.level(client);
    loop {
        let once = multipart_once(client, bucket, key, src, settings, &limit, cancel, level);
        match once.await {
            Ok(()) => return Ok(()),
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
) -> Result<(), MultipartFailure> {
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
    let shown = crate::walk::display_bytes(key.as_bytes());
    log::debug!(target: OUTPUT, "CreateMultipartUpload s3://{bucket}/{shown} id {upload_id}{}", settings.describe(level));
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
                Ok(_) => {
                    log::debug!(target: OUTPUT, "CompleteMultipartUpload s3://{bucket}/{shown} ({size} bytes)");
                    settings.file_done();
                    abort_strays(client, bucket, key, &upload_id).await;
                    Ok(())
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
    let listed = match tokio::time::timeout(Duration::from_secs(30), listed).await {
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
                "Could not list open multipart uploads under s3://{bucket}/{prefix}: {}",
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
            let shown = crate::walk::display_bytes(key.as_bytes());
            let initiated = u
                .initiated()
                .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
                .unwrap_or_else(|| "unknown".into());
            if dry_run {
                log::warn!(target: crate::FLOW, "(dryrun) would abort stray multipart upload of s3://{bucket}/{shown} (initiated {initiated}, upload id {id})");
                continue;
            }
            log::warn!(target: crate::FLOW, "Aborting stray multipart upload of s3://{bucket}/{shown} (initiated {initiated}, upload id {id}), left open by an earlier run");
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

/// How long an in-flight delete request may still take to answer once the run is interrupted.
/// Without its answer the run cannot know what it deleted, so it waits a little, then checks.
pub const DELETE_GRACE: Duration = Duration::from_secs(5);
/// Bound on checking, after an interruption, which keys of an unanswered request are gone.
const DELETE_CHECK_TIME: Duration = Duration::from_secs(10);

/// What deleting a list of keys did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Keys known to be gone (answered, or checked after an unanswered request).
    pub deleted: usize,
    /// Keys that could not be deleted, each with the key as its target.
    pub failures: Vec<S3Error>,
    /// Cancelled before every key was tried.
    pub interrupted: bool,
    /// Keys whose request got no answer before the interruption and whose state the check
    /// could not establish.
    pub unknown: Vec<String>,
}

/// Can `key` travel in a DeleteObjects XML body and arrive unchanged? XML 1.0 has no way to
/// carry U+0001..U+0008, U+000B, U+000C, U+000E..U+001F, U+FFFE and U+FFFF (even as character
/// references: the server answers MalformedXML for the whole batch). CR is valid XML but parsers
/// turn CR and CRLF in text into LF. The SDK sends it as `&#xD;`, which survives that (SeaweedFS
/// deletes such keys in a batch), but a server that got it wrong would delete a key that does not
/// exist, answer success in quiet mode, and leave ours for ever: CR goes one by one as well.
pub fn fits_delete_xml(key: &str) -> bool {
    key.chars().all(|c| match c {
        '\t' | '\n' => true,
        '\r' | '\u{FFFE}' | '\u{FFFF}' => false,
        c => c >= ' ',
    })
}

/// Waits for an S3 request; once `cancel` fires it gets [`DELETE_GRACE`] more to answer.
/// `None`: interrupted without an answer (the request may or may not have been carried out).
async fn answer<F: std::future::Future>(
    request: F,
    cancel: &CancellationToken,
) -> Option<F::Output> {
    tokio::pin!(request);
    tokio::select! {
        r = &mut request => return Some(r),
        _ = cancel.cancelled() => {}
    }
    tokio::time::timeout(DELETE_GRACE, request).await.ok()
}

/// Deletes objects by key: keys that XML cannot carry one by one with DeleteObject (the key is
/// in the URL), the rest with DeleteObjects in batches of [`DELETE_BATCH`]. On cancellation no
/// new request starts, and what the last one did is established (its answer, or a check).
pub async fn delete(
    client: &Client,
    bucket: &str,
    keys: &[String],
    cancel: &CancellationToken,
) -> Deleted {
    let mut out = Deleted::default();
    let (singles, batched): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| !fits_delete_xml(k));
    for key in singles {
        if cancel.is_cancelled() {
            break;
        }
        delete_one(client, bucket, key, cancel, &mut out).await;
    }
    for batch in batched.chunks(DELETE_BATCH) {
        if cancel.is_cancelled() {
            break;
        }
        delete_batch(client, bucket, batch, cancel, &mut out).await;
    }
    out.interrupted =
        cancel.is_cancelled() && out.deleted + out.failures.len() + out.unknown.len() < keys.len();
    out
}

/// One key with DeleteObject.
async fn delete_one(
    client: &Client,
    bucket: &str,
    key: &str,
    cancel: &CancellationToken,
    out: &mut Deleted,
) {
    let request = client.delete_object().bucket(bucket).key(key).send();
    match answer(request, cancel).await {
        Some(Ok(_)) => {
            out.deleted += 1;
            log::debug!(target: OUTPUT, "DeleteObject s3://{bucket}/{}", crate::walk::display_bytes(key.as_bytes()));
        }
        Some(Err(e)) => out.failures.push(s3_error("DeleteObject", key, &e)),
        None => check_unanswered(client, bucket, &[key], out).await,
    }
}

/// One DeleteObjects request. Per-key errors in the answer stay per key; a request the server
/// rejects as a whole (4xx: MalformedXML from a stricter server, say) is retried key by key,
/// so one bad key never blocks the rest; server and transport failures (already retried by
/// the SDK) fail each key of the batch.
async fn delete_batch(
    client: &Client,
    bucket: &str,
    batch: &[&String],
    cancel: &CancellationToken,
    out: &mut Deleted,
) {
    let objects: Vec<ObjectIdentifier> = batch
        .iter()
        .filter_map(|k| ObjectIdentifier::builder().key(k.as_str()).build().ok())
        .collect();
    let request = Delete::builder()
        .set_objects(Some(objects))
        .quiet(true)
        .build()
        .expect("objects are set");
    let sent = client
        .delete_objects()
        .bucket(bucket)
        .delete(request)
        .send();
    match answer(sent, cancel).await {
        Some(Ok(answer)) => {
            let errors = answer.errors();
            for e in errors {
                out.failures.push(S3Error {
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
            out.deleted += batch.len() - errors.len();
            for k in batch {
                log::debug!(target: OUTPUT, "DeleteObjects s3://{bucket}/{}", crate::walk::display_bytes(k.as_bytes()));
            }
        }
        Some(Err(e)) if rejected_as_a_whole(&e) => {
            let why = s3_error("DeleteObjects", bucket, &e);
            log::warn!(target: crate::FLOW, "DeleteObjects of {} keys was refused ({}); deleting them one by one.", batch.len(), why.detail);
            for key in batch {
                if cancel.is_cancelled() {
                    break;
                }
                delete_one(client, bucket, key, cancel, out).await;
            }
        }
        Some(Err(e)) => {
            for key in batch {
                out.failures.push(s3_error("DeleteObjects", key, &e));
            }
        }
        None => check_unanswered(client, bucket, batch, out).await,
    }
}

/// Did the server refuse the request itself (a 4xx answer), rather than fail to carry it out?
fn rejected_as_a_whole<E>(e: &SdkError<E>) -> bool {
    matches!(e, SdkError::ServiceError(s) if s.raw().status().is_client_error())
}

/// After an interruption cut a delete request off unanswered: which of its keys are gone?
/// HeadObject each (bounded in time); those that cannot be checked are reported unknown.
async fn check_unanswered(
    client: &Client,
    bucket: &str,
    keys: &[impl AsRef<str>],
    out: &mut Deleted,
) {
    log::warn!(target: crate::FLOW, "A delete request for {} keys got no answer before the interruption; checking which are gone.", keys.len());
    let limit = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys {
        let (client, bucket, key, limit) = (
            client.clone(),
            bucket.to_string(),
            key.as_ref().to_string(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let head = client.head_object().bucket(&bucket).key(&key).send().await;
            let gone = match head {
                Ok(_) => Some(false),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Some(true),
                Err(_) => None,
            };
            (key, gone)
        });
    }
    let mut pending: std::collections::HashSet<String> =
        keys.iter().map(|k| k.as_ref().to_string()).collect();
    let _ = tokio::time::timeout(DELETE_CHECK_TIME, async {
        while let Some(done) = tasks.join_next().await {
            let Ok((key, gone)) = done else { continue };
            match gone {
                Some(true) => {
                    out.deleted += 1;
                    pending.remove(&key);
                }
                Some(false) => {
                    pending.remove(&key);
                }
                None => {}
            }
        }
    })
    .await;
    tasks.abort_all();
    out.unknown.extend(pending);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_xml_cannot_carry_are_not_batched() {
        for k in [
            "a\u{1}", "\u{8}", "\u{b}", "\u{c}", "\u{e}", "\u{1f}", "\u{fffe}", "\u{ffff}", "a\rb",
        ] {
            assert!(!fits_delete_xml(k), "{k:?}");
        }
        for k in [
            "plain",
            "tab\there",
            "lf\nhere",
            "caf\u{e9}",
            "\u{85}\u{2028}",
            "\u{fffd}",
        ] {
            assert!(fits_delete_xml(k), "{k:?}");
        }
    }

    #[test]
    fn checksum_rejections_are_told_from_other_errors() {
        use Rejected::*;
        let cases: &[(u16, &str, &str, Option<Rejected>)] = &[
            // Backblaze B2.
            (400, "InvalidArgument", "Unsupported header 'x-amz-sdk-checksum-algorithm' received for this API call.", Some(Any)),
            (400, "InvalidArgument", "Unsupported header 'x-amz-checksum-sha256' received for this API call.", Some(Any)),
            (400, "InvalidArgument", "Unsupported header 'x-amz-checksum-crc64nvme' received for this API call.", Some(Crc64Nvme)),
            // Emulators and gateways.
            (400, "InvalidRequest", "Checksum algorithm not supported in this build: CRC64NVME.", Some(Crc64Nvme)),
            (400, "InvalidRequest", "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found.", Some(Any)),
            (501, "NotImplemented", "The FULL_OBJECT checksum type is not implemented.", Some(FullObject)),
            (400, "InvalidRequest", "Checksum type FULL_OBJECT is not supported for this algorithm.", Some(FullObject)),
            // Not rejections: wrong data, other headers, other codes or statuses.
            (400, "BadDigest", "The CRC64NVME you specified did not match the calculated checksum.", None),
            (400, "InvalidRequest", "Checksum Type mismatch occurred, expected checksum Type: CRC32, actual checksum Type: null", None),
            (400, "InvalidArgument", "Unsupported header 'x-amz-storage-class' received for this API call.", None),
            (400, "InvalidArgument", "Invalid argument.", None),
            (500, "InvalidRequest", "checksum", None),
            (501, "InvalidArgument", "Unsupported header 'x-amz-trailer'", None),
            (403, "AccessDenied", "checksum", None),
        ];
        for (status, code, msg, want) in cases {
            assert_eq!(
                checksum_rejection(*status, code, msg),
                *want,
                "{status} {code}: {msg}"
            );
        }
    }

    #[test]
    fn the_checksum_level_steps_down_once_per_step() {
        use ChecksumLevel::*;
        let f = ChecksumFallback::default();
        let now = || ChecksumLevel::from_u8(f.level.load(std::sync::atomic::Ordering::SeqCst));
        // Two uploads in flight at the top both see FULL_OBJECT rejected: one step.
        assert_eq!(
            f.rejected(Crc64Nvme, Rejected::FullObject, "op", "k", "d"),
            Some(Crc32)
        );
        assert_eq!(
            f.rejected(Crc64Nvme, Rejected::Crc64Nvme, "op", "k", "d"),
            Some(Crc32)
        );
        assert_eq!(now(), Crc32);
        // A late rejection of a request sent before a deeper step does not undo it.
        assert_eq!(f.rejected(Crc32, Rejected::Any, "op", "k", "d"), Some(Off));
        assert_eq!(
            f.rejected(Crc64Nvme, Rejected::Crc64Nvme, "op", "k", "d"),
            Some(Off)
        );
        // Nothing left to drop: the error stands.
        assert_eq!(f.rejected(Off, Rejected::Any, "op", "k", "d"), None);
        assert_eq!(now(), Off);
        // Rejecting every checksum header skips CRC32.
        let g = ChecksumFallback::default();
        assert_eq!(
            g.rejected(Crc64Nvme, Rejected::Any, "op", "k", "d"),
            Some(Off)
        );
    }

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
