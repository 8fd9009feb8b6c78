//! The merge of the walk and the listing, on its own thread: decides each key as it passes
//! ([`super::plan::decide`]), sends what needs the network down a bounded queue, and keeps what
//! must wait for the end (deletes, markers) in spill files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::job::{temp_failed, Job};
use super::mtime_cache::MtimeCache;
use super::plan::{self, Step, UploadReason};
use super::walk::{Local, LocalFile};
use crate::display::display_bytes;
use crate::progress::Progress;
use crate::report::Cause;
use crate::run::sorted::Sorted;
use crate::run::spill::{Spill, Spilled};
use crate::run::{failed, RunError};
use crate::s3::listing::Listed;
use crate::FLOW;

/// One decision of the merge that needs the network.
pub enum Work {
    Upload {
        file: LocalFile,
        own: bool,
        reason: UploadReason,
    },
    /// Same size, newer than LastModified, and the cache does not know the object: asked.
    Ambiguous {
        file: LocalFile,
        own: bool,
        remote: plan::RemoteObject,
    },
}

/// What the merge kept for the end of the sync.
pub struct Merged {
    pub unchanged: usize,
    /// Deletes of files' objects and of markers (relative keys, key order).
    pub deletes: Spilled<Box<str>>,
    pub marker_deletes: Spilled<Box<str>>,
    /// Markers to put, with the reason (key order).
    pub marker_puts: Spilled<Local>,
    /// Markers the listing held (none: this is the first run that puts markers here).
    pub remote_markers: usize,
    /// The server's form of each planned upload whose key a server that rewrites keys may
    /// store under another name (`a\b` as `a/b`): such an object is not deleted. Grows with
    /// such names only.
    pub aliases: HashMap<String, Box<str>>,
    /// Decisions not sent because the uploads had stopped.
    pub not_sent: usize,
}

/// The merge, on its own thread: reads the walk back and the sorted listing, decides each
/// key, sends what needs the network to `tx`, spills the rest.
pub fn merge(
    walked: Spilled<Local>,
    listing: Arc<Sorted<Listed>>,
    job: &Job,
    cache: &Mutex<MtimeCache>,
    tx: tokio::sync::mpsc::Sender<Work>,
    planned: &Progress,
) -> Result<Merged, RunError> {
    let mut deletes = Spill::new().map_err(temp_failed)?;
    let mut marker_deletes = Spill::new().map_err(temp_failed)?;
    let mut marker_puts = Spill::new().map_err(temp_failed)?;
    let (mut unchanged, mut remote_markers, mut not_sent) = (0, 0, 0);
    let mut aliases = HashMap::new();
    let url = &job.url;
    let dry_run = job.features.dry_run;
    let send = |w: Work, not_sent: &mut usize| {
        if tx.blocking_send(w).is_err() {
            *not_sent += 1;
        }
    };
    for pair in plan::Join::new(walked.iter(), listing.iter()) {
        if tx.is_closed() {
            // The run was interrupted: what the merge has not decided is not reported.
            break;
        }
        let pair = pair.map_err(|e| {
            failed(
                Cause::Internal,
                format!("The sync stopped before it changed anything it should not: {e}."),
            )
        })?;
        if let plan::Pair::Remote(r) | plan::Pair::Both(_, r) = &pair {
            if plan::is_marker(&r.rel, &r.obj) {
                remote_markers += 1;
            }
        }
        // An ambiguous file the cache knows about is decided here; the others are asked.
        let step = match plan::decide(pair, job.mode) {
            Step::Ambiguous { file, own, remote } => {
                let known = cache.lock().expect("cache").lookup(&file.rel, &remote);
                match known.map(|m| plan::resolve_ambiguous(&file, Some(&m))) {
                    Some(None) => Step::Unchanged,
                    Some(Some(reason)) => Step::Upload { file, own, reason },
                    None => {
                        send(Work::Ambiguous { file, own, remote }, &mut not_sent);
                        continue;
                    }
                }
            }
            step => step,
        };
        match step {
            Step::Unchanged => unchanged += 1,
            Step::MarkerUnchanged | Step::Keep | Step::Ambiguous { .. } => {}
            Step::Upload { file, own, reason } => {
                planned.add_planned(file.size);
                let form = plan::server_form(&file.rel);
                if form != *file.rel {
                    aliases.insert(form, file.rel.clone());
                }
                if dry_run {
                    log::info!(target: FLOW, "(dryrun) upload: {} to {} ({reason})", display_bytes(file.rel.as_bytes()), url.show(&file.rel));
                } else {
                    send(Work::Upload { file, own, reason }, &mut not_sent);
                }
            }
            Step::PutMarker(d, _) => marker_puts.push(&Local::Dir(d)).map_err(temp_failed)?,
            Step::Delete(k) => deletes.push(&k).map_err(temp_failed)?,
            Step::DeleteMarker(k) => marker_deletes.push(&k).map_err(temp_failed)?,
        }
    }
    Ok(Merged {
        unchanged,
        deletes: deletes.finish().map_err(temp_failed)?,
        marker_deletes: marker_deletes.finish().map_err(temp_failed)?,
        marker_puts: marker_puts.finish().map_err(temp_failed)?,
        remote_markers,
        aliases,
        not_sent,
    })
}
