//! What a download task is given and what it hands back: the run's shared context, the file
//! to restore, and how it ended.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_s3::Client;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::plan;
use crate::bucket_url::BucketUrl;
use crate::display::display_path;
use crate::health::Health;
use crate::progress::Progress;
use crate::report::Cause;
use crate::s3::settings::{Bandwidth, Multipart};

/// What every download shares.
pub struct Ctx {
    pub client: Client,
    pub url: BucketUrl,
    pub target: PathBuf,
    /// The request limit (`--maxConcurrency`): the dispatch's, which ranged GETs share.
    pub limit: Arc<Semaphore>,
    pub multipart: Multipart,
    pub bandwidth: Option<Arc<Bandwidth>>,
    pub cancel: CancellationToken,
    pub overwrite: bool,
    pub dry_run: bool,
    pub progress: Arc<Progress>,
    pub default_mode: u32,
    pub as_root: bool,
    /// The restore's tracker: ranged GETs run in their own tasks and report to it too.
    pub health: Arc<Health>,
    /// Test hook (debug builds only): a task whose key contains this panics.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub panic_on: Option<String>,
}

impl Ctx {
    pub fn shown_path(&self, rel: &str) -> String {
        display_path(&self.target.join(rel))
    }
    pub fn shown_url(&self, key: &str) -> String {
        self.url.show_key(key)
    }
}

/// What happened to one object.
pub enum Done {
    Restored {
        bytes: u64,
        method: Option<&'static str>,
        /// Recorded metadata that could not be read or applied (the file is in place).
        unusable: Vec<String>,
        /// No mode was recorded: the file got the private default.
        mode_defaulted: bool,
    },
    Unchanged,
    Conflict(String),
    Archived(String),
    /// Failed, and why: an S3 cause when S3 refused or did not answer.
    Failed(Cause, String),
    Interrupted,
}

pub fn io_failed(what: &str, e: impl std::fmt::Display) -> Done {
    Done::Failed(Cause::LocalIo, format!("{what}: {e}"))
}

/// One file to restore.
pub struct Job {
    pub rel: Box<str>,
    pub obj: plan::Object,
    /// Its directory (`None`: does not exist yet, dry run only).
    pub dir: Option<Arc<OwnedFd>>,
}
