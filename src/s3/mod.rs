//! Talking to S3: the client (configured as the AWS CLI resolves it), listing, uploads
//! (single request and multipart, streamed from disk) and deletes.
//!
//! Layers, lowest first (no file imports one below it in this list): [`error`], [`limits`],
//! [`settings`], [`http`] (the connector), [`client`], then the operations: [`listing`],
//! [`checksum_fallback`], [`body`], [`head`], [`upload`], [`delete`].

pub mod body;
pub mod checksum_fallback;
pub mod client;
pub mod config_files;
pub mod delete;
pub mod error;
pub mod head;
pub mod http;
pub mod limits;
pub mod listing;
pub mod settings;
pub mod upload;

// The API as `crate::s3::X`, as before the split.
pub use body::{Source, MTIME_METADATA};
pub use checksum_fallback::{checksum_rejection, ChecksumFallback, ChecksumLevel, Rejected};
pub use client::{
    client, client_for_run, client_with_endpoint, effective_configuration, CaBundle,
    CONNECT_TIMEOUT, DEFAULT_MAX_ATTEMPTS, INITIAL_BACKOFF, MAX_BACKOFF, RESPONSE_TIMEOUT,
    RESPONSE_TIMEOUT_ENV,
};
pub use delete::{delete, delete_object, fits_delete_xml, Deleted, DELETE_GRACE};
pub(crate) use error::s3_error;
pub use error::{Interrupted, OpError, S3Error};
pub use head::{head_checksums, head_mtime, head_object, stored_checksums};
pub use limits::{
    IN_MEMORY_BODY, MAX_OBJECT_SIZE, MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE, MULTIPART_THRESHOLD,
    S3_MIN_PART_SIZE,
};
pub use upload::{abort_prefix_strays, part_size, put, put_marker, put_multipart, UploadSettings};
