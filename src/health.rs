//! Is the endpoint still answering? A run stops dispatching new work once it clearly is not.
//!
//! Without this, a server that stops answering makes every remaining file wait out its own
//! timeouts and retries: thousands of files take hours to fail. The upload and
//! `--verifyContent` loops each keep a [`Health`] and run every request of theirs inside
//! [`scope`]; [`crate::s3::s3_error`] reports each request that failed for good without an
//! answer (timeout, refused or reset connection, cut-off response: after the SDK's retries)
//! with [`transport_failure`], and any answer from the server (success or a service error)
//! with [`answered`]. After [`TRIP_AFTER`] such failures in a row the tracker trips: the loop
//! dispatches nothing more, lets in-flight work finish or fail, and the run fails saying how
//! many files were not attempted. Nothing is deleted after a failed upload phase anyway.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Requests that must fail in a row, without any answer in between, to call the endpoint
/// down. Each of them already exhausted its retries (8 attempts by default), so a few are
/// plenty; fewer than the default concurrency, so a run stops within the first wave.
pub const TRIP_AFTER: usize = 5;

/// Consecutive transport failures of one phase.
#[derive(Debug, Default)]
pub struct Health {
    consecutive: AtomicUsize,
    tripped: AtomicBool,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// A request failed without an answer from the server.
    pub fn failure(&self) {
        if self.consecutive.fetch_add(1, Ordering::SeqCst) + 1 >= TRIP_AFTER {
            self.tripped.store(true, Ordering::SeqCst);
        }
    }

    /// The server answered (a success, or an error it described).
    pub fn answered(&self) {
        self.consecutive.store(0, Ordering::SeqCst);
    }

    /// Has the endpoint stopped answering? Once true, stays true for this phase.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }
}

tokio::task_local! {
    static CURRENT: Arc<Health>;
}

/// Runs `work` with `health` as the tracker its S3 requests report to.
pub fn scope<F: Future>(health: Arc<Health>, work: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(health, work)
}

/// Reports a failure without an answer to the current task's tracker, if any.
pub fn transport_failure() {
    let _ = CURRENT.try_with(|h| h.failure());
}

/// Reports an answer from the server to the current task's tracker, if any.
pub fn answered() {
    let _ = CURRENT.try_with(|h| h.answered());
}

/// The one line a phase fails with once its tracker tripped.
pub fn stopped_answering(failed: usize, not_attempted: usize, what: &str) -> String {
    format!(
        "The S3 endpoint stopped answering ({TRIP_AFTER} requests in a row failed without an answer after their retries): {failed} {what} failed and {not_attempted} files were not attempted."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_consecutive_failures_only() {
        let h = Health::new();
        for _ in 0..TRIP_AFTER - 1 {
            h.failure();
        }
        h.answered();
        for _ in 0..TRIP_AFTER - 1 {
            h.failure();
        }
        assert!(!h.tripped());
        h.failure();
        assert!(h.tripped());
        h.answered();
        assert!(h.tripped(), "a late answer does not resume dispatching");
    }

    #[tokio::test]
    async fn reports_reach_the_scoped_tracker_only() {
        transport_failure(); // outside any scope: ignored
        let h = Health::new();
        scope(h.clone(), async {
            for _ in 0..TRIP_AFTER {
                transport_failure();
            }
        })
        .await;
        assert!(h.tripped());
    }
}
