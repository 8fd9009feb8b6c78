//! What the command line can say ([`Options`]), its defaults and limits, and how it can be wrong
//! ([`OptionsError`]).

use std::path::PathBuf;

/// Default logfile shared with the rest of Cedar Backup.
pub const DEFAULT_LOGFILE: &str = "/var/log/cback3.log";
/// Default owner of a newly created logfile.
pub const DEFAULT_OWNER: (&str, &str) = ("root", "adm");
/// Default mode of a newly created logfile.
pub const DEFAULT_MODE: u32 = 0o640;
/// The default and the largest `--maxConcurrency`, defined once in the S3 layer (which the
/// profile's `max_concurrent_requests` also obeys).
pub use crate::s3::settings::{DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY};

/// Everything the command line can say. `None` means "not given" (the default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub help: bool,
    pub version: bool,
    pub verbose: bool,
    pub quiet: bool,
    pub logfile: Option<PathBuf>,
    pub owner: Option<(String, String)>,
    pub mode: Option<u32>,
    pub output: bool,
    pub debug: bool,
    pub stacktrace: bool,
    pub diagnostics: bool,
    pub verify_only: bool,
    pub upload_only: bool,
    pub ignore_warnings: bool,
    pub source_dir: Option<PathBuf>,
    pub s3_bucket_url: Option<String>,
    // Our own switches (long camelCase names only).
    /// `--maxConcurrency N`: bound on concurrent S3 requests (uploads, parts, deletes).
    pub max_concurrency: Option<usize>,
    /// `--allowEmptySource`: let a full sync of an empty source empty the prefix.
    pub allow_empty_source: bool,
    /// `--verifyContent`: also compare each file's checksum with the object's.
    pub verify_content: bool,
    /// `--dryRun`: log the plan, change nothing.
    pub dry_run: bool,
    /// `--summaryFile FILE`: write a JSON summary of the run there.
    pub summary_file: Option<PathBuf>,
    /// `--maxDeletes N`: refuse a full sync that would delete more than N objects.
    pub max_deletes: Option<usize>,
    /// `--maxBandwidth RATE`: upload at most this many bytes per second, over the whole run.
    pub max_bandwidth: Option<u64>,
    /// `--storageClass CLASS`: storage class of uploaded objects (one of [`STORAGE_CLASSES`]).
    pub storage_class: Option<String>,
    /// `--sse ALG`: server-side encryption of uploaded objects (one of [`SSE_ALGORITHMS`]).
    pub sse: Option<String>,
    /// `--sseKmsKeyId ID`: the KMS key for `--sse aws:kms`.
    pub sse_kms_key_id: Option<String>,
    /// `--restore`: copy the objects under the URL into the directory (the first positional
    /// argument, kept in `source_dir`) instead of syncing it up.
    pub restore: bool,
    /// `--overwrite`: with `--restore`, replace local files that differ from their object.
    pub overwrite: bool,
}

/// Storage classes `--storageClass` accepts: those `aws s3 sync --storage-class` accepts.
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
];

/// Server-side encryptions `--sse` accepts: those of `aws s3 sync --sse`.
pub const SSE_ALGORITHMS: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];

impl Options {
    pub fn logfile_path(&self) -> PathBuf {
        self.logfile
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOGFILE))
    }

    pub fn concurrency(&self) -> usize {
        self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY)
    }

    /// The checks the original makes after parsing: unless help, version or diagnostics
    /// were asked for, both positional arguments must be present.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if !(self.help || self.version || self.diagnostics)
            && (self.source_dir.is_none() || self.s3_bucket_url.is_none())
        {
            return Err(OptionsError::Value(
                "Exactly two arguments are needed: a source directory and an S3 bucket URL.".into(),
            ));
        }
        if let Some(n) = self.max_concurrency {
            if !(1..=MAX_CONCURRENCY).contains(&n) {
                return Err(OptionsError::Value(format!(
                    "--maxConcurrency needs a whole number from 1 to {MAX_CONCURRENCY}, not {n}."
                )));
            }
        }
        if self.sse_kms_key_id.is_some()
            && !self
                .sse
                .as_deref()
                .is_some_and(|s| s.starts_with("aws:kms"))
        {
            return Err(OptionsError::Value(
                "--sseKmsKeyId needs --sse aws:kms (or aws:kms:dsse).".into(),
            ));
        }
        self.validate_restore()
    }

    /// `--restore` takes none of the switches that only mean something to a sync, and
    /// `--overwrite` means something only to a restore.
    fn validate_restore(&self) -> Result<(), OptionsError> {
        if !self.restore {
            if self.overwrite {
                return Err(OptionsError::Value(
                    "--overwrite is only valid with --restore.".into(),
                ));
            }
            return Ok(());
        }
        let given: Vec<&str> = [
            (self.verify_only, "-v/--verifyOnly"),
            (self.upload_only, "-u/--uploadOnly"),
            (self.ignore_warnings, "-w/--ignoreWarnings"),
            (self.max_deletes.is_some(), "--maxDeletes"),
            (self.allow_empty_source, "--allowEmptySource"),
            (
                self.verify_content,
                "--verifyContent (a restore always verifies)",
            ),
            (self.storage_class.is_some(), "--storageClass"),
            (self.sse.is_some(), "--sse"),
            (self.sse_kms_key_id.is_some(), "--sseKmsKeyId"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if given.is_empty() {
            Ok(())
        } else {
            Err(OptionsError::Value(format!(
                "--restore cannot be combined with {}.",
                given.join(", ")
            )))
        }
    }
}

/// A command line the tool rejects (exit 2, usage on stderr).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// What Python's `getopt.GetoptError` reports, word for word.
    #[error("{0}")]
    Getopt(String),
    /// A switch value or positional argument that is not valid (Python: `ValueError`).
    #[error("{0}")]
    Value(String),
}
