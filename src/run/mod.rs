//! What the sync and the restore share: one run's machinery. Both are a stream of items
//! (files walked, objects listed) merged in key order, decided by a pure plan, and worked
//! through [`dispatch`]; what must wait for the end goes to a [`spill`] file; the listing is
//! put in order by [`sorted`]; each item's failure is an [`outcome::ItemFailure`]. Nothing here
//! is process-wide: every piece belongs to one run and ends with it.

pub mod dispatch;
pub mod outcome;
pub mod sorted;
pub mod spill;
