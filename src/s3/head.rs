//! Reading what an object stores about itself: its checksums and our mtime metadata (HeadObject).

use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;

use super::body::MTIME_METADATA;
use super::error::{s3_error, S3Error};
use crate::bucket_url::show_object;
use crate::checksum::StoredChecksums;
use crate::OUTPUT;

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
    log::debug!(target: OUTPUT, "HeadObject {}", show_object(bucket, key));
    Ok(StoredChecksums {
        crc64nvme: h.checksum_crc64_nvme().map(str::to_string),
        crc32: h.checksum_crc32().map(str::to_string),
        crc32c: h.checksum_crc32_c().map(str::to_string),
        checksum_type: h.checksum_type().map(|t| t.as_str().to_string()),
        etag: h.e_tag().map(str::to_string),
        sse: h.server_side_encryption().map(|e| e.as_str().to_string()),
    })
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
    log::debug!(target: OUTPUT, "HeadObject {} (mtime metadata)", show_object(bucket, key));
    Ok(h.metadata().and_then(|m| m.get(MTIME_METADATA)).cloned())
}
