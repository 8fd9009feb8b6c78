//! Bounded dispatch of a run's per-item work (uploads, content checks, downloads): at most
//! `limit` requests in flight, shared with the work itself (a multipart upload takes one per
//! part), and at most a few times that many tasks alive, so a stream of a million items
//! holds a bounded number of them. Every request runs inside the endpoint's health tracker
//! ([`crate::health`]): once it trips, nothing more is dispatched. A task that panics (or is
//! aborted) comes back as [`Finished::Lost`], which the caller counts as a failure.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// How a dispatched task ended.
#[derive(Debug)]
pub enum Finished<T> {
    Done(T),
    /// The task panicked or was aborted: its item (as named to [`Dispatch::spawn`]) is a
    /// failure with this message.
    Lost {
        item: String,
        why: String,
    },
}

/// Why no more work may be dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupted,
    /// The endpoint stopped answering.
    Unhealthy,
}

/// Tasks alive per request slot: a task waiting for its parts' permits, or for its file to
/// settle, holds no permit.
const TASKS_PER_SLOT: usize = 4;

pub struct Dispatch<T> {
    tasks: JoinSet<T>,
    /// The item of each task alive, to name it if it is lost.
    items: std::collections::HashMap<tokio::task::Id, String>,
    permits: Arc<Semaphore>,
    max_tasks: usize,
    health: Arc<Health>,
    cancel: CancellationToken,
}

impl<T: Send + 'static> Dispatch<T> {
    pub fn new(limit: usize, cancel: &CancellationToken) -> Self {
        let limit = limit.max(1);
        Dispatch {
            tasks: JoinSet::new(),
            items: std::collections::HashMap::new(),
            permits: Arc::new(Semaphore::new(limit)),
            max_tasks: limit * TASKS_PER_SLOT,
            health: Health::new(),
            cancel: cancel.clone(),
        }
    }

    /// The request limit, for work that takes more permits (parts of a multipart upload).
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Waits for room for one more task and one request permit, handing each task that
    /// finishes meanwhile to `done`. `Err` once the run is cancelled or the endpoint tripped.
    pub async fn slot(
        &mut self,
        done: &mut impl FnMut(Finished<T>),
    ) -> Result<OwnedSemaphorePermit, Stop> {
        loop {
            self.collect_ready(done);
            if self.cancel.is_cancelled() {
                return Err(Stop::Interrupted);
            }
            if self.health.tripped() {
                return Err(Stop::Unhealthy);
            }
            if self.tasks.len() >= self.max_tasks {
                tokio::select! {
                    _ = self.cancel.cancelled() => return Err(Stop::Interrupted),
                    Some(r) = self.tasks.join_next_with_id() => done(self.finished(r)),
                }
                continue;
            }
            let permit = tokio::select! {
                _ = self.cancel.cancelled() => return Err(Stop::Interrupted),
                p = self.permits.clone().acquire_owned() => p.expect("semaphore closed"),
            };
            // Failures arrive while the loop waits for a permit: checked once it has one.
            if self.health.tripped() {
                return Err(Stop::Unhealthy);
            }
            return Ok(permit);
        }
    }

    /// Starts `work` on `item` (after [`Dispatch::slot`]) inside the health tracker.
    pub fn spawn<F>(&mut self, item: String, work: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let h = self
            .tasks
            .spawn(crate::health::scope(self.health.clone(), work));
        self.items.insert(h.id(), item);
    }

    fn collect_ready(&mut self, done: &mut impl FnMut(Finished<T>)) {
        while let Some(r) = self.tasks.try_join_next_with_id() {
            done(self.finished(r));
        }
    }

    fn finished(&mut self, r: Result<(tokio::task::Id, T), tokio::task::JoinError>) -> Finished<T> {
        match r {
            Ok((id, t)) => {
                self.items.remove(&id);
                Finished::Done(t)
            }
            Err(e) => {
                let item = self.items.remove(&e.id()).unwrap_or_default();
                Finished::Lost {
                    item,
                    why: lost_why(e),
                }
            }
        }
    }

    /// Waits for every task; each is handed to `done`. Tasks see the run's cancellation
    /// themselves and end early.
    pub async fn finish(&mut self, done: &mut impl FnMut(Finished<T>)) {
        while let Some(r) = self.tasks.join_next_with_id().await {
            done(self.finished(r));
        }
    }
}

fn lost_why(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "internal error: the task was aborted".into();
    }
    let payload = e.into_panic();
    let why = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a task panicked".into());
    format!("internal error: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicked_task_comes_back_as_lost_and_the_others_as_done() {
        let cancel = CancellationToken::new();
        let mut d = Dispatch::new(2, &cancel);
        let (mut done, mut lost) = (0, Vec::new());
        let mut take = |f: Finished<u32>| match f {
            Finished::Done(_) => done += 1,
            Finished::Lost { item, why } => lost.push(format!("{item}: {why}")),
        };
        for i in 0..10u32 {
            let permit = d.slot(&mut take).await.unwrap();
            d.spawn(format!("item {i}"), async move {
                let _p = permit;
                if i == 3 {
                    panic!("item {i} broke");
                }
                i
            });
        }
        d.finish(&mut take).await;
        assert_eq!(done, 9);
        assert_eq!(lost, ["item 3: internal error: item 3 broke"]);
    }

    #[tokio::test]
    async fn no_slot_once_cancelled_or_unhealthy() {
        let cancel = CancellationToken::new();
        let mut d: Dispatch<()> = Dispatch::new(2, &cancel);
        for _ in 0..crate::health::TRIP_AFTER {
            d.health().failure();
        }
        assert_eq!(d.slot(&mut |_| {}).await.unwrap_err(), Stop::Unhealthy);
        let mut d: Dispatch<()> = Dispatch::new(2, &cancel);
        cancel.cancel();
        assert_eq!(d.slot(&mut |_| {}).await.unwrap_err(), Stop::Interrupted);
    }
}
