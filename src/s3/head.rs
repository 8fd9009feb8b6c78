//! Reading what an object stores about itself: its checksums and our mtime metadata (HeadObject).

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;

use super::body::MTIME_METADATA;
use super::error::{s3_error, S3Error};
use crate::bucket_url::show_object;
use crate::checksum::StoredChecksums;
use crate::OUTPUT;

/// HeadObject with checksum mode enabled (which needs `s3:GetObject`), logged like every
/// operation: the object's size, checksums, metadata and restore state in one answer.
pub async fn head_object(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<HeadObjectOutput, S3Error> {
    let h = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|e| s3_error("HeadObject", key, &e))?;
    log::debug!(target: OUTPUT, "HeadObject {}", show_object(bucket, key));
    Ok(h)
}

/// The checksums and ETag a HeadObject answer says S3 keeps for the object.
pub fn stored_checksums(h: &HeadObjectOutput) -> StoredChecksums {
    StoredChecksums {
        crc64nvme: h.checksum_crc64_nvme().map(str::to_string),
        crc32: h.checksum_crc32().map(str::to_string),
        crc32c: h.checksum_crc32_c().map(str::to_string),
        checksum_type: h.checksum_type().map(|t| t.as_str().to_string()),
        etag: h.e_tag().map(str::to_string),
        sse: h.server_side_encryption().map(|e| e.as_str().to_string()),
    }
}

/// The checksums and ETag S3 keeps for an object.
pub async fn head_checksums(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<StoredChecksums, S3Error> {
    head_object(client, bucket, key)
        .await
        .map(|h| stored_checksums(&h))
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
