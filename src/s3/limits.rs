//! Sizes of uploads: our defaults and S3's own limits on multipart uploads.

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
