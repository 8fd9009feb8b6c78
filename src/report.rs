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
    /// Zero-byte keys ending in `/` (folders made by S3 consoles): nothing to write.
    pub directory_markers: usize,
}

impl RestoreCounts {
    pub(crate) fn problems(&self) -> usize {
        self.refused + self.archived + self.conflicts + self.failed
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
}
