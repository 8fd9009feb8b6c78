//! Per-item outcomes of a run, typed: which file or object, what was being done, and the
//! kind of failure ([`Cause`], which decides the exit status). The run keeps the first
//! [`KEPT`] for its summary and counts the rest (each was logged when it happened), so a
//! run where everything fails still holds a bounded list.

use crate::report::Cause;

/// What was being done to the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Read,
    Name,
    Upload,
    Marker,
    Delete,
    Verify,
    Content,
    Download,
    Place,
}

/// One item that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    /// The file (relative path) or object (relative key), as shown in the log.
    pub item: String,
    pub stage: Stage,
    pub cause: Cause,
    pub message: String,
}

impl ItemFailure {
    pub fn new(item: String, stage: Stage, cause: Cause, message: impl Into<String>) -> Self {
        ItemFailure {
            item,
            stage,
            cause,
            message: message.into(),
        }
    }
}

/// Failures kept in full for the summary.
pub const KEPT: usize = 1000;

/// The failures of a run: the first [`KEPT`] in full, and how many in all.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Failures {
    kept: Vec<ItemFailure>,
    total: usize,
}

impl Failures {
    pub fn push(&mut self, f: ItemFailure) {
        self.total += 1;
        if self.kept.len() < KEPT {
            self.kept.push(f);
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// The kind of the first failure: what a phase that failed reports.
    pub fn first_cause(&self) -> Option<Cause> {
        self.kept.first().map(|f| f.cause)
    }

    pub fn kept(&self) -> &[ItemFailure] {
        &self.kept
    }

    pub fn extend(&mut self, other: Failures) {
        let beyond = other.total - other.kept.len();
        for f in other.kept {
            self.push(f);
        }
        self.total += beyond;
    }

    /// As the summary lists them: (item, why), and a last line for those not listed.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .kept
            .iter()
            .map(|f| (f.item.clone(), f.message.clone()))
            .collect();
        if self.total > self.kept.len() {
            v.push((
                format!("({} more)", self.total - self.kept.len()),
                "not listed here; each is in the log".into(),
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_failures_keeps_a_bounded_list_and_the_count() {
        let mut f = Failures::default();
        for i in 0..KEPT + 5 {
            f.push(ItemFailure::new(
                i.to_string(),
                Stage::Upload,
                Cause::LocalIo,
                "x",
            ));
        }
        assert_eq!((f.total(), f.kept().len()), (KEPT + 5, KEPT));
        let lines = f.lines();
        assert_eq!(lines.len(), KEPT + 1);
        assert_eq!(lines[KEPT].0, "(5 more)");
    }
}
