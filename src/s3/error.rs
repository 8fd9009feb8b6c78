//! The error type of S3 operations: one readable line per failure (operation, key, the
//! server's code and message, or the innermost cause of a failure without an answer).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::report::{Cause, S3Kind};

/// `-s` of the run in progress. Process-wide because S3 failures are described deep inside
/// spawned tasks; scoped by [`FullChain`], so it never outlives the run that set it (a
/// Python host runs many).
static FULL_CHAIN: AtomicBool = AtomicBool::new(false);

/// While it lives, S3 failures without an answer are described in full (`-s`) or in one
/// line (see [`s3_error`]); dropped at the end of the run, the next run starts with one line.
#[must_use = "the setting lasts as long as the guard"]
pub struct FullChain(());

impl FullChain {
    pub fn scope(on: bool) -> Self {
        FULL_CHAIN.store(on, Ordering::Relaxed);
        FullChain(())
    }
}

impl Drop for FullChain {
    /// The run is over: the next run (a Python host runs many) starts with one-line
    /// failures and without this run's configuration problem.
    fn drop(&mut self) {
        FULL_CHAIN.store(false, Ordering::Relaxed);
        if let Ok(mut p) = CONFIG_PROBLEM.lock() {
            *p = None;
        }
    }
}

/// Whether failures are described in full (`-s`) in the run in progress.
pub fn full_chain() -> bool {
    FULL_CHAIN.load(Ordering::Relaxed)
}

/// One S3 failure, as one line: the operation, the key, and the server's code and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} {target}: {detail}")]
pub struct S3Error {
    pub op: &'static str,
    pub target: String,
    pub detail: String,
    /// The service's error code, when it sent one (for example `NoSuchBucket`).
    pub code: Option<String>,
    /// What kind of failure it was (no answer, access denied, no credentials...).
    pub cause: Cause,
}

/// The cause of an error answer with this code.
pub(crate) fn answer_cause(code: Option<&str>) -> Cause {
    match code {
        Some("NoSuchBucket") => Cause::S3(S3Kind::NoSuchBucket),
        Some(
            "AccessDenied"
            | "AllAccessDisabled"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AccountProblem",
        ) => Cause::S3(S3Kind::AccessDenied),
        _ => Cause::S3(S3Kind::Service),
    }
}

/// The cause of an SDK error: no answer, an error answer, or a request that could not be
/// made (credentials, region: configuration).
fn sdk_cause<E, R>(err: &SdkError<E, R>) -> Cause
where
    E: ProvideErrorMetadata,
{
    match err {
        _ if is_transport(err) => Cause::S3(S3Kind::NoAnswer),
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => Cause::Config,
        _ => answer_cause(err.code()),
    }
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
    /// What kind of failure it was.
    pub fn cause(&self) -> Cause {
        match self {
            OpError::S3(e) => e.cause,
            OpError::Interrupted(_) => Cause::Interrupted,
            OpError::Local { .. } => Cause::LocalIo,
        }
    }

    /// A failure of a local file, named as log lines show paths.
    pub fn local(path: &Path, message: impl Into<String>) -> Self {
        OpError::Local {
            path: crate::display::display_path(path),
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
            log::debug!(target: crate::FLOW, "{op} {}: {full}", crate::display::display_bytes(target.as_bytes()));
            let detail = if full_chain() { full } else { brief(err) };
            (err.code().map(str::to_string), detail)
        }
    };
    S3Error {
        op,
        target: target.to_string(),
        detail,
        code,
        cause: sdk_cause(err),
    }
}

/// Did the request fail without an answer from the server (timeout, refused or reset
/// connection, cut-off response), after the SDK's own retries?
fn is_transport<E, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        // A connection closed before the whole answer came (hyper's IncompleteMessage) is
        // an unclassified error of the transient kind: no answer too.
        SdkError::DispatchFailure(d) => {
            d.is_io()
                || d.is_timeout()
                || d.as_other() == Some(aws_smithy_types::retry::ErrorKind::TransientError)
        }
        _ => false,
    }
}

/// Set when the client is built: a configuration problem that explains errors before any
/// request is sent (a profile named by `AWS_PROFILE` that does not exist).
pub(super) static CONFIG_PROBLEM: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// How the error of credentials refused for their past expiry starts (see
/// [`super::client`]).
pub(super) const EXPIRED_CREDENTIALS: &str = "expired credentials";

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
            } else if innermost.starts_with(EXPIRED_CREDENTIALS) {
                format!("no credentials: {innermost}")
            } else if credentials {
                "no credentials: none in the environment (AWS_ACCESS_KEY_ID), in the profile's \
                 ~/.aws/credentials or ~/.aws/config entries, from web identity, the container \
                 or the instance metadata service"
                    .to_string()
            } else if innermost.starts_with("identity resolver timed out") {
                format!(
                    "no credentials: finding them took too long ({innermost}; a \
                     credential_process, SSO or instance metadata that does not answer)"
                )
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

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The server's code and message of an error answer, as one line.
pub(super) fn s3_error_detail<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> String {
    let code = err.code().unwrap_or_default();
    let msg = err.message().unwrap_or_default();
    one_line(&format!("{code}: {msg}"))
        .trim_end_matches(": ")
        .to_string()
}

impl From<OpError> for crate::run::RunError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Interrupted(_) => crate::run::RunError::Interrupted,
            other => crate::run::failed(other.cause(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_chain_ends_with_its_run() {
        {
            let _run = FullChain::scope(true);
            assert!(full_chain());
        }
        assert!(!full_chain(), "a later run describes failures in one line");
    }

    #[test]
    fn error_codes_give_the_cause() {
        assert_eq!(
            answer_cause(Some("NoSuchBucket")),
            Cause::S3(S3Kind::NoSuchBucket)
        );
        assert_eq!(
            answer_cause(Some("AccessDenied")),
            Cause::S3(S3Kind::AccessDenied)
        );
        assert_eq!(
            answer_cause(Some("InvalidAccessKeyId")),
            Cause::S3(S3Kind::AccessDenied)
        );
        assert_eq!(answer_cause(Some("SlowDown")), Cause::S3(S3Kind::Service));
        assert_eq!(answer_cause(None), Cause::S3(S3Kind::Service));
    }
}
