//! cback3-s3sync: mirror a local directory into an S3 bucket prefix and prove the copy is complete.
//!
//! A run flows through these modules, in order:
//!
//! argv ([`options`]) → logging ([`logging`]) → [`cli::action`] (shared by the binary and the
//! Python extension) → one of two pipelines of the same shape, streams in S3's key order on the
//! pieces of [`run`] (spill files, the sorted listing, bounded dispatch, typed failures):
//! - the sync, [`sync`]: walk and name check ([`sync::walk`]) → listing
//!   ([`s3::listing::list_sorted`]) → merge, each key decided by [`sync::plan`] (pure; the
//!   recorded mtimes it needs come from [`sync::mtime_cache`] or a HeadObject) → uploads
//!   ([`sync::transfer`]) → markers and deletes ([`sync::delete`]) → [`sync::verify`];
//! - the restore, [`restore`]: listing → plan (per object, pure) → fetch → check → place.
//!
//! → exit status ([`report`]). Every S3 request goes through [`s3`] (client, listing, uploads,
//! deletes, errors). What an object records about its file or directory (mtime, mode, owner,
//! what a directory marker is) is read and written by [`metadata`] alone.
//! The library never exits the process and never prints: it logs through the `log` facade
//! under Cedar Backup's logger names ([`FLOW`], [`OUTPUT`]).

pub mod bucket_url;
pub mod checksum;
pub mod cli;
pub mod command_check;
pub mod diagnostics;
pub mod display;
pub mod health;
pub mod lock;
pub mod logging;
pub mod manpage;
pub mod metadata;
pub mod options;
pub mod phases;
pub mod progress;
pub mod report;
pub mod restore;
pub mod run;
pub mod s3;
pub mod summary_file;
pub mod sync;

#[cfg(feature = "python")]
mod python;

/// `log` target of the flow log; becomes the Python logger `CedarBackup3.log.tools.amazons3`.
pub const FLOW: &str = "CedarBackup3::log::tools::amazons3";
/// `log` target of the S3 operation detail ("output" log); Python logger `CedarBackup3.output`.
pub const OUTPUT: &str = "CedarBackup3::output";

/// Version reported by `-V` and the diagnostics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
