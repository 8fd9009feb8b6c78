//! Exit statuses and the run summary.

use std::time::Duration;

/// The process exit status, as the original tool defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// Bad command line (usage printed).
    Usage,
    /// Logging could not be set up.
    Logging,
    /// Interrupted by Ctrl-C, SIGTERM or SIGHUP (or Python's KeyboardInterrupt).
    Interrupted,
    /// Anything else: bad input, S3 errors, verification differences.
    Failure,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Usage => 2,
            ExitStatus::Logging => 3,
            ExitStatus::Interrupted => 5,
            ExitStatus::Failure => 6,
        }
    }
}

/// What made a run, a phase or one file fail. The exit status (below) and the Python
/// exception (python.rs `exception_for`) are derived from it, each in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// An S3 request failed, and how.
    S3(S3Kind),
    /// A local file or directory could not be read or written.
    LocalIo,
    /// The bucket does not hold what the source does.
    Verification,
    /// Ctrl-C, SIGTERM, SIGHUP (or Python's KeyboardInterrupt).
    Interrupted,
    /// Bad input: the bucket URL, the source directory, file names that cannot be keys, or a
    /// guard that refused the plan (empty source, `--maxDeletes`).
    BadInput,
    /// Credentials, region, CA bundle or the profile's s3 settings.
    Config,
    /// Another run holds the target's lock.
    LockBusy,
    /// A task of the run itself failed (a bug).
    Internal,
}

/// How an S3 request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Kind {
    /// The server answered with an error.
    Service,
    /// No answer: refused or reset connection, timeout, a response cut off.
    NoAnswer,
    /// The server refused the credentials or the access (`AccessDenied`, `InvalidAccessKeyId`...).
    AccessDenied,
    /// `NoSuchBucket`.
    NoSuchBucket,
}

impl Cause {
    /// The exit status of a run that stopped for this cause.
    pub fn status(self) -> ExitStatus {
        match self {
            Cause::Interrupted => ExitStatus::Interrupted,
            Cause::S3(_)
            | Cause::LocalIo
            | Cause::Verification
            | Cause::BadInput
            | Cause::Config
            | Cause::LockBusy
            | Cause::Internal => ExitStatus::Failure,
        }
    }
}

/// What a run did; logged at the end of every run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub local_files: usize,
    pub local_bytes: u64,
    pub skipped: usize,
    pub name_problems: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub unchanged: usize,
    pub deleted: usize,
    /// Directories below the source, and the directory markers put and deleted (not in
    /// `uploaded` and `deleted`).
    pub local_dirs: usize,
    pub markers_put: usize,
    pub markers_deleted: usize,
    pub failed: usize,
    pub verified: usize,
    pub verify_errors: usize,
    pub extra_objects: usize,
    pub elapsed: Duration,
    /// What the plan held (for a dry run, what a real run would do).
    pub planned_uploads: usize,
    pub planned_upload_bytes: u64,
    pub planned_deletes: usize,
    /// `--verifyContent`: files whose checksum matched, and objects with nothing to compare.
    pub content_verified: usize,
    pub content_unverifiable: usize,
    /// Duration of each phase that ran, in order.
    pub phases: Vec<(&'static str, Duration)>,
    /// Each file or object that failed, and why.
    pub failures: Vec<(String, String)>,
    /// Why the run stopped, if it failed.
    pub error: Option<String>,
    /// What a `--restore` run did (`None` for a sync).
    pub restore: Option<RestoreCounts>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(r) = &self.restore {
            // A restore has its own counts: the sync's would all read 0.
            return write!(
                f,
                "{} objects; restored {} ({} bytes), already present {}, failed {}, not attempted {}; verified on disk {}, missing {}; checksum verified {}, size only {}; elapsed {:.3} s",
                r.objects,
                r.restored,
                r.restored_bytes,
                r.unchanged,
                r.problems(),
                r.not_attempted,
                r.verified,
                r.missing,
                r.checksum_verified,
                r.size_only,
                self.elapsed.as_secs_f64()
            );
        }
        write!(
            f,
            "{} local files ({} bytes), {} skipped, {} with unusable names; uploaded {} ({} bytes), unchanged {}, deleted {}, failed {}; verified {}, verify errors {}, extra objects {}; elapsed {:.3} s",
            self.local_files,
            self.local_bytes,
            self.skipped,
            self.name_problems,
            self.uploaded,
            self.uploaded_bytes,
            self.unchanged,
            self.deleted,
            self.failed,
            self.verified,
            self.verify_errors,
            self.extra_objects,
            self.elapsed.as_secs_f64()
        )
    }
}

/// What a restore did, for the log and the summary file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestoreCounts {
    /// Objects under the prefix (directory markers included).
    pub objects: usize,
    /// Files written (for a dry run: that would be written).
    pub restored: usize,
    pub restored_bytes: u64,
    /// Local files already identical to their object (same size and mtime): left alone.
    pub unchanged: usize,
    /// Files whose content matched a checksum, and those checked by size only.
    pub checksum_verified: usize,
    pub size_only: usize,
    /// Keys that cannot be safe paths.
    pub refused: usize,
    /// Objects in an archive storage class without a restored copy.
    pub archived: usize,
    /// Local files that differ from their object and were not overwritten.
    pub conflicts: usize,
    /// Downloads, checks or writes that failed.
    pub failed: usize,
    /// Zero-byte keys ending in `/`: directory markers (ours and rclone's carry the
    /// directory's mode, owner, group and mtime; S3 consoles' folders carry nothing).
    pub directory_markers: usize,
    /// Directories given their recorded mode (and owner, group, mtime) from a marker.
    pub directories_restored: usize,
    /// Directories created without a marker to say their mode: left private (0700).
    pub directories_defaulted: usize,
    /// Files restored without a recorded mode: given the private default (0600).
    pub files_defaulted: usize,
    /// Files and directories whose recorded metadata (mode, mtime, uid, gid) could not be
    /// read or applied: one WARNING each.
    pub metadata_warnings: usize,
    /// Files not dispatched because the endpoint stopped answering (see [`crate::health`]).
    pub not_attempted: usize,
    /// Files restored or already present that were found on disk at the end of the run, as
    /// a regular file of their object's size (0 for a dry run: nothing was placed).
    pub verified: usize,
    /// Files restored or already present that were not on disk at the end of the run (removed
    /// or replaced meanwhile): failures, and no longer counted as restored or present.
    pub missing: usize,
}

impl RestoreCounts {
    pub(crate) fn problems(&self) -> usize {
        self.refused + self.archived + self.conflicts + self.failed + self.missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_original() {
        let all = [
            (ExitStatus::Success, 0),
            (ExitStatus::Usage, 2),
            (ExitStatus::Logging, 3),
            (ExitStatus::Interrupted, 5),
            (ExitStatus::Failure, 6),
        ];
        for (s, c) in all {
            assert_eq!(s.code(), c);
        }
    }

    #[test]
    fn only_an_interruption_is_not_a_failure() {
        assert_eq!(Cause::Interrupted.status(), ExitStatus::Interrupted);
        for c in [
            Cause::S3(S3Kind::NoAnswer),
            Cause::LocalIo,
            Cause::Verification,
            Cause::BadInput,
            Cause::Config,
            Cause::LockBusy,
            Cause::Internal,
        ] {
            assert_eq!(c.status(), ExitStatus::Failure, "{c:?}");
        }
    }
}
