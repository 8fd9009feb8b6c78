//! cback3-s3sync: mirror a local directory into an S3 bucket prefix and prove the copy is complete.
//!
//! A run flows through these modules, in order:
//!
//! argv ([`options`]) → logging ([`logging`]) → source walk and filename check ([`walk`]) →
//! bucket listing ([`s3::listing`]) → plan ([`plan`], pure; the recorded mtimes it needs come
//! from [`mtime_cache`] or a HeadObject) → uploads, then deletes ([`transfer`]) →
//! verification ([`verify`]) → exit status ([`report`]). Every S3 request goes through [`s3`]
//! (client, listing, uploads, deletes, errors); `--restore` is [`restore`]. What an object
//! records about its file (mtime, mode, owner) is read and written by [`metadata`] alone;
//! directories are recorded as [`markers`] and restored by [`restore::dirs`].
//!
//! [`engine`] runs the phases; [`cli::run`] ties them together and is shared by the binary and the Python extension.
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
