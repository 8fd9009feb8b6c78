//! What each object's outcome adds to the run: its counts, its failures (typed and bounded,
//! [`Failures`]), and for every file counted as restored or already present a record in the
//! spill the check at the end reads ([`Placed`]).

use std::io;

use super::check::{How, Placed};
use super::job::{Ctx, Done};
use crate::report::{Cause, RestoreCounts};
use crate::run::dispatch::Finished;
use crate::run::outcome::{Failures, ItemFailure, Stage};
use crate::run::spill::{Spill, Spilled};
use crate::FLOW;

/// What a download task hands back.
pub struct Outcome {
    pub rel: Box<str>,
    pub size: u64,
    pub done: Done,
}

/// The restore's counts and failures as the objects pass.
pub struct Tally {
    pub counts: RestoreCounts,
    pub failures: Failures,
    /// The cause of the first failed download or write.
    pub first_cause: Option<Cause>,
    /// `None` once handed on.
    placed: Option<Spill<Placed>>,
    /// The spill could not be written: the run fails (the check at the end cannot be made).
    pub spill_error: Option<io::Error>,
}

impl Tally {
    pub fn new(objects: usize) -> io::Result<Tally> {
        Ok(Tally {
            counts: RestoreCounts {
                objects,
                ..RestoreCounts::default()
            },
            failures: Failures::default(),
            first_cause: None,
            placed: Some(Spill::new()?),
            spill_error: None,
        })
    }

    /// A key that cannot be restored (`shown`: its URL).
    pub fn refused(&mut self, shown: String, marker: bool, why: String) {
        let what = if marker { "directory marker" } else { "object" };
        log::error!(target: FLOW, "Refusing {what} {shown}: {why}; it is not restored.");
        self.counts.refused += 1;
        let why = format!("unsafe key: {why}");
        self.failures
            .push(ItemFailure::new(shown, Stage::Name, Cause::BadInput, why));
    }

    /// A download or write that failed (`shown`: the local path).
    pub fn failed(&mut self, shown: String, stage: Stage, cause: Cause, why: String) {
        log::error!(target: FLOW, "Failed to restore {shown}: {why}");
        self.first_cause.get_or_insert(cause);
        self.counts.failed += 1;
        self.failures
            .push(ItemFailure::new(shown, stage, cause, why));
    }

    /// A task ended.
    pub fn finished(&mut self, ctx: &Ctx, f: Finished<Outcome>) {
        match f {
            Finished::Done(o) => self.done(ctx, o),
            // Aborted or panicked while the run was being interrupted: nothing to count.
            Finished::Lost { .. } if ctx.cancel.is_cancelled() => {}
            Finished::Lost { item, why } => {
                let shown = ctx.shown_path(&item);
                self.failed(shown, Stage::Download, Cause::Internal, why);
            }
        }
    }

    fn done(&mut self, ctx: &Ctx, o: Outcome) {
        let name = ctx.shown_path(&o.rel);
        let c = &mut self.counts;
        let how = match o.done {
            Done::Restored {
                bytes,
                method,
                unusable,
                mode_defaulted,
            } => {
                ctx.health.answered();
                c.files_defaulted += usize::from(mode_defaulted);
                if !unusable.is_empty() {
                    c.metadata_warnings += 1;
                    log::warn!(target: FLOW, "Restored {name} without all of its recorded metadata: {}.", unusable.join("; "));
                }
                c.restored += 1;
                c.restored_bytes += bytes;
                match method {
                    Some(_) => c.checksum_verified += 1,
                    None if !ctx.dry_run => {
                        c.size_only += 1;
                        log::warn!(target: FLOW, "Restored {name} checked by size only: the object has no whole-object checksum and its ETag is not an MD5 (multipart upload by another tool, or SSE-KMS).");
                    }
                    None => {}
                }
                How::Restored {
                    checksum: method.is_some(),
                }
            }
            Done::Unchanged => {
                c.unchanged += 1;
                ctx.progress.add_file();
                ctx.progress.add_bytes(o.size);
                if ctx.dry_run {
                    log::info!(target: FLOW, "(dryrun) skip: {name} (already restored)");
                } else {
                    log::debug!(target: FLOW, "Unchanged: {name}");
                }
                How::AlreadyPresent
            }
            Done::Conflict(why) => {
                log::error!(target: FLOW, "Not restoring {name}: {why}");
                c.conflicts += 1;
                self.failures
                    .push(ItemFailure::new(name, Stage::Place, Cause::BadInput, why));
                return;
            }
            Done::Archived(why) => {
                log::error!(target: FLOW, "Cannot restore {name}: {why}");
                c.archived += 1;
                self.failures.push(ItemFailure::new(
                    name,
                    Stage::Download,
                    Cause::BadInput,
                    why,
                ));
                return;
            }
            Done::Failed(cause, why) => {
                let stage = if cause == Cause::LocalIo {
                    Stage::Place
                } else {
                    Stage::Download
                };
                self.failed(name, stage, cause, why);
                return;
            }
            Done::Interrupted => return,
        };
        // A dry run places nothing, and nothing is checked at its end.
        let keep = self.spill_error.is_none() && !ctx.dry_run;
        let Some(spill) = self.placed.as_mut().filter(|_| keep) else {
            return;
        };
        let placed = Placed {
            rel: o.rel,
            size: o.size,
            how,
        };
        if let Err(e) = spill.push(&placed) {
            self.spill_error = Some(e);
        }
    }

    /// The files placed, for the check at the end.
    pub fn placed(&mut self) -> io::Result<Spilled<Placed>> {
        if let Some(e) = self.spill_error.take() {
            return Err(e);
        }
        self.placed
            .take()
            .ok_or_else(|| io::Error::other("the list of placed files was handed on before"))?
            .finish()
    }
}
