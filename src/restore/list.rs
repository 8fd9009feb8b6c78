//! The listing as the restore consumes it: a stream in S3's byte order of keys
//! ([`crate::s3::listing::list_sorted`]), checked as it passes, in memory bounded by the
//! length of a key, never by the number of keys.
//!
//! The check that needs more than one key: a key that other keys use as a directory (`a`
//! beside `a/b`, or beside a marker `a/`) cannot be a file. The keys that start with `a` are
//! contiguous in byte order, so a key is held back on a stack while the keys after it start
//! with it (`a-b`, `a.txt` sort between `a` and `a/`); any of those that continues it with a
//! `/` makes it a directory; the first key that does not start with it settles it (no later
//! key can). Each key on the stack is a prefix of the one above it, so the stack is never
//! deeper than a key is long. Directory markers are never refused for this and pass at once,
//! so they come out in key order (a parent's marker before its children's); held files come
//! out later than the keys after them, which nothing downstream depends on.

use std::collections::VecDeque;
use std::io;

use crate::metadata::is_directory_marker;
use crate::run::sorted::Sorted;
use crate::s3::listing::Listed;

/// A listed object and what the streaming check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub listed: Listed,
    /// Other keys use it as a directory.
    pub used_as_dir: bool,
}

/// Keys held until their fate is known (each a prefix of the next), and the last key seen.
#[derive(Debug, Default)]
pub struct KeyChecks {
    held: Vec<Checked>,
    /// The last key seen (a buffer reused from key to key).
    last: String,
    started: bool,
}

impl KeyChecks {
    /// Takes the next key in order; what is settled goes to `out`. A key out of order (or
    /// twice) is an error: the decisions above would be wrong.
    pub fn push(&mut self, l: Listed, out: &mut VecDeque<Checked>) -> io::Result<()> {
        if self.started && *l.rel <= *self.last {
            return Err(io::Error::other(format!(
                "the listing is not in key order at {:?}",
                l.rel
            )));
        }
        while let Some(top) = self.held.last() {
            if l.rel.starts_with(&*top.listed.rel) {
                break;
            }
            out.push_back(self.held.pop().expect("a top"));
        }
        // Everything still held is a prefix of this key.
        for h in &mut self.held {
            if l.rel.as_bytes().get(h.listed.rel.len()) == Some(&b'/') {
                h.used_as_dir = true;
            }
        }
        self.last.clear();
        self.last.push_str(&l.rel);
        self.started = true;
        let marker = is_directory_marker(&l.rel, l.obj.size);
        let c = Checked {
            listed: l,
            used_as_dir: false,
        };
        if marker {
            out.push_back(c);
        } else {
            self.held.push(c);
        }
        Ok(())
    }

    /// The end of the listing settles every key still held.
    pub fn finish(&mut self, out: &mut VecDeque<Checked>) {
        while let Some(c) = self.held.pop() {
            out.push_back(c);
        }
    }
}

/// A stream of listed objects, checked.
pub struct Checks<I> {
    inner: I,
    keys: KeyChecks,
    ready: VecDeque<Checked>,
    done: bool,
}

impl<I: Iterator<Item = io::Result<Listed>>> Iterator for Checks<I> {
    type Item = io::Result<Checked>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Some(Ok(c));
            }
            if self.done {
                return None;
            }
            let failed = match self.inner.next() {
                None => {
                    self.done = true;
                    self.keys.finish(&mut self.ready);
                    continue;
                }
                Some(Ok(l)) => self.keys.push(l, &mut self.ready).err(),
                Some(Err(e)) => Some(e),
            };
            if let Some(e) = failed {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

/// `listed` (in key order) with the checks.
pub fn checks<I: Iterator<Item = io::Result<Listed>>>(listed: I) -> Checks<I> {
    Checks {
        inner: listed,
        keys: KeyChecks::default(),
        ready: VecDeque::new(),
        done: false,
    }
}

/// One pass over a sorted listing, checked. A sorted listing can be read any number of times.
pub fn checked(sorted: &Sorted<Listed>) -> Checks<impl Iterator<Item = io::Result<Listed>> + '_> {
    checks(sorted.iter())
}

/// What a first pass over the listing finds: objects in all, and the files that pass the key
/// checks (the progress display's totals).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub objects: usize,
    pub files: u64,
    pub bytes: u64,
}

/// A pass over the sorted listing (read from its spill, not held), counting.
pub fn totals(sorted: &Sorted<Listed>) -> io::Result<Totals> {
    let mut t = Totals::default();
    for c in checked(sorted) {
        let c = c?;
        t.objects += 1;
        let (rel, size) = (&c.listed.rel, c.listed.obj.size);
        if super::plan::key(rel, size, c.used_as_dir) == super::plan::Key::File {
            t.files += 1;
            t.bytes += size;
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::listing::RemoteObject;

    fn listed(rel: &str) -> Listed {
        let marker = rel.ends_with('/');
        Listed {
            rel: rel.into(),
            obj: RemoteObject {
                size: if marker { 0 } else { 1 },
                last_modified_ns: 0,
                archived: None,
                etag: 0,
            },
        }
    }

    /// (key, used as a directory) in the order they come out.
    fn run(keys: &[&str]) -> io::Result<Vec<(String, bool)>> {
        checks(keys.iter().map(|k| Ok(listed(k))))
            .map(|c| c.map(|c| (c.listed.rel.to_string(), c.used_as_dir)))
            .collect()
    }

    #[test]
    fn a_key_used_as_a_directory_is_found_as_the_keys_pass() {
        // (keys in S3's byte order, the keys found used as a directory)
        let table: [(&[&str], &[&str]); 9] = [
            (&["a", "a\u{1}", "a-b", "a.txt", "a/b", "é"], &["a"]),
            // A marker makes its name a directory as much as a key under it.
            (&["a", "a-b", "a.txt", "a/", "é"], &["a"]),
            (
                &["a", "a\u{1}", "a-b", "a.txt", "a/", "a/b", "é", "é/x"],
                &["a", "é"],
            ),
            (&["a", "a-b", "a.txt", "a0", "é"], &[]),
            (&["a/b", "a/b/c", "ab"], &["a/b"]),
            (&["a", "a/b", "a/b/c"], &["a", "a/b"]),
            (&["a-b", "a-b/c", "a.txt"], &["a-b"]),
            (&["é", "é-1", "é/ü"], &["é"]),
            (&[], &[]),
        ];
        for (keys, dirs) in table {
            let got = run(keys).unwrap();
            let mut names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
            names.sort();
            assert_eq!(names, keys, "every key comes out once: {keys:?}");
            let mut found: Vec<&str> = got
                .iter()
                .filter(|(_, d)| *d)
                .map(|(k, _)| k.as_str())
                .collect();
            found.sort();
            assert_eq!(found, dirs, "{keys:?}");
        }
    }

    #[test]
    fn markers_come_out_in_key_order_and_at_once() {
        let got = run(&["a", "a-b", "a/", "a/b/", "a/b/c", "a/c/", "b"]).unwrap();
        let markers: Vec<&str> = got
            .iter()
            .filter(|(k, _)| k.ends_with('/'))
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(markers, ["a/", "a/b/", "a/c/"]);
        // `a` is held while keys start with it; the marker `a/` is not.
        let at = |k: &str| got.iter().position(|(g, _)| g == k).unwrap();
        assert!(at("a/") < at("a"));
    }

    #[test]
    fn keys_out_of_order_are_an_error() {
        assert!(run(&["b", "a"]).is_err());
        assert!(run(&["a", "a"]).is_err());
        assert!(run(&["a/b", "a-b"]).is_err());
    }

    #[test]
    fn what_is_held_is_bounded_by_a_key_length() {
        let mut k = KeyChecks::default();
        let mut out = VecDeque::new();
        let mut most = 0;
        for i in 0..10_000 {
            k.push(listed(&format!("f{i:06}")), &mut out).unwrap();
            most = most.max(k.held.len() + out.len());
            out.clear();
        }
        assert!(most <= 2, "{most}");
    }
}
