//! The checksum ladder: which checksums uploads carry, stepped down for the rest of the run
//! when the server rejects what it was sent.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::ChecksumAlgorithm;
use aws_sdk_s3::Client;

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
    pub(super) fn algorithm(self) -> Option<ChecksumAlgorithm> {
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
pub(super) fn rejection_of<E: ProvideErrorMetadata>(
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

/// The run's checksum level, shared by every upload of the run (clones of [`UploadSettings`](super::UploadSettings)
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
    pub(super) fn rejected(
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
            log::warn!(target: crate::FLOW, "The S3 server rejected {rejected} ({op} {}: {detail}); the rest of this run sends {}. {permanent}", crate::display::display_bytes(key.as_bytes()), next.describe());
        }
        Some(ChecksumLevel::from_u8(
            self.level.load(std::sync::atomic::Ordering::SeqCst),
        ))
    }
}

/// A per-request configuration that sends no checksum the operation does not require.
pub(super) fn when_required() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Config::builder()
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
