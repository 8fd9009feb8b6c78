//! What a sync run is asked to do ([`Job`]), what its walk found ([`Found`]) and what its
//! sync phase did ([`Synced`]); the walk with its name check into a spill file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::plan::Mode;
use super::walk::{self, Local, LocalFile};
use crate::bucket_url::BucketUrl;
use crate::display::display_bytes;
use crate::options::Options;
use crate::report::Cause;
use crate::run::outcome::{Failures, ItemFailure, Stage};
use crate::run::spill::{Spill, Spilled};
use crate::run::{failed, RunError};
use crate::s3::UploadSettings;
use crate::FLOW;

/// Decisions waiting for a slot: a bounded queue between a merge and the dispatch.
pub const QUEUE: usize = 256;

/// What a run may do, resolved from the options.
#[derive(Debug, Clone)]
pub struct Job {
    pub url: BucketUrl,
    pub mode: Mode,
    pub concurrency: usize,
    pub allow_empty_source: bool,
    pub ignore_warnings: bool,
    pub features: Features,
}

/// What this project adds to a run beyond the original's switches; the default is the
/// original's behaviour.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// `--dryRun`: log the plan and change nothing; the verify step is skipped.
    pub dry_run: bool,
    /// `--maxDeletes`: a full sync that would delete more objects deletes none and fails.
    pub max_deletes: Option<usize>,
    /// `--verifyContent`: compare checksums as well as sizes.
    pub verify_content: bool,
    /// Storage class and server-side encryption of uploads.
    pub upload: UploadSettings,
}

impl Features {
    pub fn from_options(opts: &Options) -> Self {
        use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
        Features {
            dry_run: opts.dry_run,
            max_deletes: opts.max_deletes,
            verify_content: opts.verify_content,
            upload: UploadSettings {
                storage_class: opts.storage_class.as_deref().map(StorageClass::from),
                sse: opts.sse.as_deref().map(ServerSideEncryption::from),
                sse_kms_key_id: opts.sse_kms_key_id.clone(),
                progress: None,
                ..UploadSettings::default()
            },
        }
    }
}

impl Job {
    /// Applies the profile's `s3` settings (see [`crate::s3::settings`]) where the command
    /// line did not decide: concurrency, multipart sizes, bandwidth.
    pub fn apply_s3_settings(
        &mut self,
        s3: &crate::s3::settings::ProfileS3,
        max_concurrency: Option<usize>,
        max_bandwidth: Option<u64>,
    ) {
        use crate::s3::settings::{show_rate, Bandwidth, Multipart};
        if let (None, Some(n)) = (max_concurrency, s3.max_concurrent_requests) {
            self.concurrency = n;
        }
        let upload = &mut self.features.upload;
        upload.multipart = Multipart::from_profile(s3);
        let rate = crate::s3::settings::rate_limit(s3, max_bandwidth);
        upload.bandwidth = rate.as_ref().map(|(r, _)| Arc::new(Bandwidth::new(*r)));
        if let Some((r, from)) = rate {
            log::info!(target: FLOW, "Uploads limited to {} in all ({from}).", show_rate(r));
        }
        log::debug!(target: FLOW, "{} requests at a time; multipart from {} bytes, parts of {} bytes", self.concurrency, upload.multipart.threshold, upload.multipart.part_size);
    }

    pub fn from_options(opts: &Options) -> Result<Self, RunError> {
        let Some(raw) = &opts.s3_bucket_url else {
            return Err(failed(
                Cause::BadInput,
                "Source directory and S3 bucket URL are both required.".into(),
            ));
        };
        let url = BucketUrl::parse(raw).map_err(|e| failed(Cause::BadInput, e.to_string()))?;
        let mode = if opts.verify_only {
            Mode::VerifyOnly
        } else if opts.upload_only {
            Mode::UploadOnly
        } else {
            Mode::Full
        };
        Ok(Job {
            url,
            mode,
            concurrency: opts.concurrency(),
            allow_empty_source: opts.allow_empty_source,
            ignore_warnings: opts.ignore_warnings,
            features: Features::from_options(opts),
        })
    }
}

/// What the walk found, for the run's summary (also when it fails).
#[derive(Debug, Default)]
pub struct Found {
    pub local_files: usize,
    pub local_bytes: u64,
    pub local_dirs: usize,
    pub skipped: usize,
    pub name_problems: usize,
    /// Paths that could not be read: the run deletes nothing.
    pub unreadable: usize,
    pub failures: Failures,
}

/// Walks `source` in key order, checking every name, and hands each entry to `entry`; logs
/// and counts everything else as it is met. Name problems fail the run unless
/// `ignore_warnings`, in which case those files are left out (and counted). `own` are the run's
/// own files (device and inode).
pub fn walk_checked(
    source: &Path,
    url: &BucketUrl,
    ignore_warnings: bool,
    own: &[(u64, u64)],
    stop: &dyn Fn() -> bool,
    entry: &mut dyn FnMut(Local) -> std::io::Result<()>,
) -> (Found, Result<(), RunError>) {
    let found = std::cell::RefCell::new(Found::default());
    let walked = walk::walk_sorted(
        source,
        url.prefix.len(),
        own,
        stop,
        &mut |e: Local| {
            let mut f = found.borrow_mut();
            match &e {
                Local::File { file, own } => {
                    f.local_files += 1;
                    f.local_bytes += file.size;
                    if *own {
                        log::info!(target: FLOW, "{} is this run's own file: it is copied as the walk saw it and checked only for presence.", display_bytes(file.rel.as_bytes()));
                    }
                }
                Local::Dir(_) => f.local_dirs += 1,
            }
            entry(e)
        },
        &mut |met| {
            let mut f = found.borrow_mut();
            match met {
                walk::Found::Skipped(s) => {
                    log::warn!(target: FLOW, "Skipping {} ({})", s.path, s.why);
                    f.skipped += 1;
                }
                walk::Found::Failure(w) => {
                    log::error!(target: FLOW, "Cannot read {}: {}", w.path, w.error);
                    f.unreadable += 1;
                    f.failures.push(ItemFailure::new(
                        w.path,
                        Stage::Read,
                        Cause::LocalIo,
                        format!("cannot read: {}", w.error),
                    ));
                }
                walk::Found::Problem(p) => {
                    f.name_problems += 1;
                    if ignore_warnings {
                        log::warn!(target: FLOW, "Skipping: {p}");
                    } else {
                        log::error!(target: FLOW, "{p}");
                        let path = match &p {
                            walk::NameProblem::NotUtf8(p) => p.clone(),
                            walk::NameProblem::KeyTooLong { rel, .. } => rel.clone(),
                        };
                        f.failures.push(ItemFailure::new(
                            path,
                            Stage::Name,
                            Cause::BadInput,
                            p.to_string(),
                        ));
                    }
                }
            }
        },
    );
    let found = found.into_inner();
    let result = match walked {
        Err(e) => Err(failed(Cause::BadInput, e.to_string())),
        // A signal: the tree is only partly walked, so nothing of it is reported.
        Ok(()) if stop() => return (Found::default(), Err(RunError::Interrupted)),
        Ok(()) if found.name_problems == 0 => {
            log::info!(target: FLOW, "Completed checking source filename encoding (no problems found).");
            Ok(())
        }
        Ok(()) if ignore_warnings => {
            log::warn!(target: FLOW, "Skipped {} files whose names cannot be S3 keys (-w given).", found.name_problems);
            Ok(())
        }
        Ok(()) => Err(failed(Cause::BadInput, format!("{} files have names that cannot be S3 keys; nothing was uploaded. Rename them, or use -w to skip them.", found.name_problems))),
    };
    (found, result)
}

/// The walk into a spill file: what the merge and the verification read back.
pub fn walk_to_spill(
    source: &Path,
    url: &BucketUrl,
    ignore_warnings: bool,
    own: &[(u64, u64)],
    stop: &dyn Fn() -> bool,
) -> (Found, Result<Spilled<Local>, RunError>) {
    let mut spill = match Spill::new() {
        Ok(s) => s,
        Err(e) => return (Found::default(), Err(temp_failed(e))),
    };
    let (found, result) = walk_checked(source, url, ignore_warnings, own, stop, &mut |e| {
        spill.push(&e)
    });
    let result = result.and_then(|()| spill.finish().map_err(temp_failed));
    (found, result)
}

/// A spill file could not be written or read back.
pub fn temp_failed(e: impl std::fmt::Display) -> RunError {
    failed(
        Cause::LocalIo,
        format!("cannot use a temporary file (TMPDIR): {e}"),
    )
}

/// What the sync phase did (also when it fails), for the run's summary.
#[derive(Default)]
pub struct Synced {
    /// Whether the bucket changed (so verification lists it again).
    pub changed: bool,
    /// Files uploaded in another version than the walk saw (changed meanwhile), by relative
    /// name: verification compares their objects with these. Grows with the files that change
    /// during the run, not with the tree.
    pub versions: HashMap<Box<str>, LocalFile>,
    pub unchanged: usize,
    pub planned_uploads: usize,
    pub planned_upload_bytes: u64,
    pub planned_deletes: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub deleted: usize,
    /// Directory markers put and deleted.
    pub markers_put: usize,
    pub markers_deleted: usize,
    pub failed: usize,
    pub failures: Failures,
}
