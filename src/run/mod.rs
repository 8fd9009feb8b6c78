//! What the sync and the restore share: one run's machinery. Both are a stream of items
//! (files walked, objects listed) merged in key order, decided by a pure plan, and worked
//! through [`dispatch`]; what must wait for the end goes to a [`spill`] file; the listing is
//! put in order by [`sorted`]; each item's failure is an [`outcome::ItemFailure`]. Nothing here
//! is process-wide: every piece belongs to one run and ends with it.

pub mod dispatch;
pub mod outcome;
pub mod sorted;
pub mod spill;

use crate::report::{Cause, ExitStatus, Summary};
use crate::FLOW;

/// Why a phase stopped, and what kind of failure it was. Details were already logged, one
/// line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("interrupted")]
    Interrupted,
    #[error("{message}")]
    Failed { cause: Cause, message: String },
}

impl RunError {
    /// What kind of failure stopped the phase.
    pub fn cause(&self) -> Cause {
        match self {
            RunError::Interrupted => Cause::Interrupted,
            RunError::Failed { cause, .. } => *cause,
        }
    }

    pub fn status(&self) -> ExitStatus {
        self.cause().status()
    }
}

/// Logs the reason a run stops, in the original's words, and makes the error.
pub fn failed(cause: Cause, message: String) -> RunError {
    log::error!(target: FLOW, "Error executing backup: {message}");
    RunError::Failed { cause, message }
}

impl From<crate::lock::LockError> for RunError {
    fn from(e: crate::lock::LockError) -> Self {
        use crate::lock::LockError;
        let cause = match e {
            LockError::Busy { .. } | LockError::Contained { .. } | LockError::Lost { .. } => {
                Cause::LockBusy
            }
            LockError::Dir { .. } | LockError::Open { .. } => Cause::LocalIo,
        };
        failed(cause, e.to_string())
    }
}

/// A run's summary and status from what its phases returned: the reason it stopped, if it
/// failed, goes into the summary. Shared by the sync and the restore.
pub fn finish((mut summary, result): (Summary, Result<(), RunError>)) -> (Summary, ExitStatus) {
    let status = match result {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            summary.error = Some(e.to_string());
            e.status()
        }
    };
    (summary, status)
}
