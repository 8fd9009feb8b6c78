//! Sorting what a server lists, in bounded memory: entries are gathered, encoded, in a buffer
//! of [`RUN_BYTES`], each full buffer is sorted and written to a spill file as a run, and the
//! runs are merged at the end (a k-way merge that holds one entry and a small buffer per run).
//!
//! Why sort at all: S3 lists keys in byte order, but not every server does. SeaweedFS lists a
//! directory's keys before its siblings that sort ahead of `/` (`a/b` before `a-b` and
//! `a.txt`), and parallel listing of sub-prefixes returns parts in any order. A merge with the
//! walk that trusted the server's order would upload files again and delete objects that
//! still have files. So the run never trusts it: the order is made here, and checked again
//! where the merge consumes it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;

use super::spill::{Reader, Record, Spill, Spilled};

/// Bytes of encoded entries held before a run is sorted and spilled: about 80,000 listed
/// keys. Entries are held encoded, in one buffer, so a run costs its bytes and an offset each.
pub const RUN_BYTES: usize = 4 << 20;

/// An entry ordered by its key's bytes. Its encoding starts with its key, as
/// [`spill::put_str`](super::spill::put_str) writes it, so runs are sorted without decoding.
pub trait Keyed: Record {
    fn key(&self) -> &str;
}

/// The key at the start of an encoded [`Keyed`] entry.
fn encoded_key(mut b: &[u8]) -> &[u8] {
    let n = super::spill::get_u64(&mut b).unwrap_or(0) as usize;
    &b[..n.min(b.len())]
}

/// Gathers entries in any order; [`Sorter::finish`] yields them in key order, each key once
/// (a key listed twice, as the first page of a parallel listing is, is kept once).
pub struct Sorter<R> {
    /// Encoded entries of the run being gathered, and where each starts and ends.
    bytes: Vec<u8>,
    at: Vec<(u32, u32)>,
    cap: usize,
    spill: Option<Spill<R>>,
    /// (start offset, end offset) of each run in the spill.
    runs: Vec<(u64, u64)>,
    count: u64,
}

impl<R: Keyed> Sorter<R> {
    pub fn new() -> Self {
        Self::with_run(RUN_BYTES)
    }

    /// A sorter whose runs hold about `cap` bytes of encoded entries.
    pub fn with_run(cap: usize) -> Self {
        Sorter {
            bytes: Vec::new(),
            at: Vec::new(),
            cap: cap.max(1),
            spill: None,
            runs: Vec::new(),
            count: 0,
        }
    }

    pub fn push(&mut self, r: R) -> io::Result<()> {
        if self.bytes.capacity() == 0 {
            // Once, and no more: the buffer never grows past a run (no doubling beyond it).
            self.bytes.reserve_exact(self.cap.min(RUN_BYTES) + 4096);
        }
        let start = self.bytes.len();
        r.encode(&mut self.bytes);
        self.at.push((start as u32, self.bytes.len() as u32));
        self.count += 1;
        if self.bytes.len() >= self.cap {
            self.spill_run()?;
        }
        Ok(())
    }

    fn sort(&mut self) {
        let bytes = &self.bytes;
        self.at.sort_unstable_by(|&(a, b), &(c, d)| {
            encoded_key(&bytes[a as usize..b as usize])
                .cmp(encoded_key(&bytes[c as usize..d as usize]))
        });
    }

    fn spill_run(&mut self) -> io::Result<()> {
        self.sort();
        let spill = match &mut self.spill {
            Some(s) => s,
            None => self.spill.insert(Spill::new()?),
        };
        let start = spill.offset();
        for &(a, b) in &self.at {
            spill.push_encoded(&self.bytes[a as usize..b as usize])?;
        }
        self.runs.push((start, spill.offset()));
        self.bytes.clear();
        self.at.clear();
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<Sorted<R>> {
        if self.spill.is_none() {
            self.sort();
            let bytes = std::mem::take(&mut self.bytes);
            let mut held = Vec::with_capacity(self.at.len());
            for &(a, b) in &self.at {
                held.push(R::decode(&mut &bytes[a as usize..b as usize])?);
            }
            return Ok(Sorted {
                inner: Inner::Memory(held),
            });
        }
        if !self.at.is_empty() {
            self.spill_run()?;
        }
        let spilled = self.spill.take().expect("spilled").finish()?;
        Ok(Sorted {
            inner: Inner::Runs(spilled, self.runs),
        })
    }
}

impl<R: Keyed> Default for Sorter<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// Entries in key order, to be read any number of times.
pub struct Sorted<R> {
    inner: Inner<R>,
}

enum Inner<R> {
    Memory(Vec<R>),
    Runs(Spilled<R>, Vec<(u64, u64)>),
}

impl<R: Keyed + Clone> Sorted<R> {
    /// Every entry in key order, each key once.
    pub fn iter(&self) -> Merged<'_, R> {
        let state = match &self.inner {
            Inner::Memory(v) => State::Memory(v.iter()),
            Inner::Runs(spilled, runs) => {
                let mut readers: Vec<Reader<R>> =
                    runs.iter().map(|&(a, b)| spilled.range(a, b)).collect();
                let mut heap = BinaryHeap::new();
                let mut failed = None;
                for (i, r) in readers.iter_mut().enumerate() {
                    match r.next() {
                        Some(Ok(e)) => heap.push(Reverse(Head(e, i))),
                        Some(Err(e)) => failed = Some(e),
                        None => {}
                    }
                }
                State::Runs {
                    readers,
                    heap,
                    failed,
                }
            }
        };
        Merged { state, last: None }
    }
}

/// An entry at the head of a run, ordered by key, then by run (so a merge is stable).
struct Head<R>(R, usize);

impl<R: Keyed> PartialEq for Head<R> {
    fn eq(&self, o: &Self) -> bool {
        self.0.key() == o.0.key() && self.1 == o.1
    }
}
impl<R: Keyed> Eq for Head<R> {}
impl<R: Keyed> PartialOrd for Head<R> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<R: Keyed> Ord for Head<R> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(o.0.key()).then(self.1.cmp(&o.1))
    }
}

enum State<'a, R> {
    Memory(std::slice::Iter<'a, R>),
    Runs {
        readers: Vec<Reader<R>>,
        heap: BinaryHeap<Reverse<Head<R>>>,
        failed: Option<io::Error>,
    },
}

/// The merge of the runs.
pub struct Merged<'a, R> {
    state: State<'a, R>,
    last: Option<Box<str>>,
}

impl<R: Keyed + Clone> Merged<'_, R> {
    fn next_any(&mut self) -> Option<io::Result<R>> {
        match &mut self.state {
            State::Memory(it) => it.next().cloned().map(Ok),
            State::Runs {
                readers,
                heap,
                failed,
            } => {
                if let Some(e) = failed.take() {
                    return Some(Err(e));
                }
                let Reverse(Head(e, i)) = heap.pop()?;
                match readers[i].next() {
                    Some(Ok(n)) => heap.push(Reverse(Head(n, i))),
                    Some(Err(err)) => *failed = Some(err),
                    None => {}
                }
                Some(Ok(e))
            }
        }
    }
}

impl<R: Keyed + Clone> Iterator for Merged<'_, R> {
    type Item = io::Result<R>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let e = match self.next_any()? {
                Ok(e) => e,
                Err(err) => return Some(Err(err)),
            };
            if self.last.as_deref() == Some(e.key()) {
                continue;
            }
            self.last = Some(e.key().into());
            return Some(Ok(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Keyed for Box<str> {
        fn key(&self) -> &str {
            self
        }
    }

    fn sorted(keys: &[&str], run: usize) -> Vec<String> {
        let mut s = Sorter::<Box<str>>::with_run(run);
        for k in keys {
            s.push((*k).into()).unwrap();
        }
        let done = s.finish().unwrap();
        let first: Vec<String> = done.iter().map(|r| r.unwrap().to_string()).collect();
        let again: Vec<String> = done.iter().map(|r| r.unwrap().to_string()).collect();
        assert_eq!(first, again, "a second pass reads the same");
        first
    }

    #[test]
    fn keys_come_out_in_s3_byte_order_once_each() {
        // SeaweedFS's order: a directory's keys before its siblings that sort ahead of '/'.
        let listed = [
            "a/", "a/b", "a/b/c", "a/c/d", "a b", "a-b", "a.txt", "a0", "b\u{1}", "z", "é", "a-b",
        ];
        let want = [
            "a b", "a-b", "a.txt", "a/", "a/b", "a/b/c", "a/c/d", "a0", "b\u{1}", "z", "é",
        ];
        for run in [1, 8, 20, 1 << 20] {
            assert_eq!(sorted(&listed, run), want, "runs of {run}");
        }
    }
}
