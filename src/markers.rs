//! Directory markers: each directory below the source is recorded as a zero-byte object whose
//! key is its path with a trailing `/` (`home/alice/`), carrying the same metadata as a file's
//! object (`mtime`, `mode` with the directory type, `040700`, `uid`, `gid`; see
//! [`crate::metadata`]). These are rclone's directory markers, so rclone reads them too; a
//! restore gives each directory its mode, owner, group and mtime back, and empty directories
//! come back. The source directory itself (the prefix) gets none, as with rclone: its mode is
//! the restore target's, which the administrator chooses.
//!
//! When a marker is put, with no HeadObject in steady state: every change of a directory
//! (an entry added, removed or renamed; chmod, chown; its mtime set) sets its ctime to the
//! current time, and no user can set a ctime. The marker is put again when the directory's
//! ctime, in whole seconds, is at or after the marker's LastModified second. The marker was
//! written after the walk that read the directory, so a directory that did not change since is
//! older than its marker's second and costs nothing; a change in the very second of the put
//! cannot be told apart (LastModified has whole seconds) and is put once more, after which the
//! marker is newer and the rule settles. The mtime takes no part: a directory dated in the
//! future (a clock set wrong, an unpacked archive) would otherwise be put every run. As with
//! files, a server clock behind this machine's re-puts (cheap zero-byte PUTs) and one ahead of
//! it can miss a change made within the gap after the put.
//!
//! Markers are not files: the plan of files ([`crate::plan`]) and verification never see them
//! ([`split`]); a marker whose directory is gone is deleted after the files' deletes.

use std::collections::HashSet;

use crate::metadata::NS;
use crate::plan::{Listing, Mode, RemoteObject};
use crate::walk::LocalDir;

/// A directory marker: a zero-byte key ending in `/` below the prefix (not the prefix itself).
pub fn is_marker(rel: &str, obj: &RemoteObject) -> bool {
    obj.size == 0 && rel.len() > 1 && rel.ends_with('/')
}

/// The listing of a prefix split into the objects of files and the directory markers.
pub fn split(listing: Listing) -> (Listing, Listing) {
    listing.into_iter().partition(|(k, o)| !is_marker(k, o))
}

/// The key of a directory's marker, relative to the prefix.
pub fn marker_rel(dir: &LocalDir) -> String {
    format!("{}/", dir.rel)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerReason {
    /// The directory has no marker.
    New,
    /// The directory changed (mode, owner, entries, mtime) at or after the marker's second.
    Changed,
}

impl std::fmt::Display for MarkerReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MarkerReason::New => "no directory marker",
            MarkerReason::Changed => "directory changed since its marker",
        })
    }
}

/// The markers to put (by index in the tree's directories) and to delete (relative keys,
/// deepest first).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MarkerPlan {
    pub puts: Vec<(usize, MarkerReason)>,
    pub deletes: Vec<Box<str>>,
    pub unchanged: usize,
}

/// Changed (its ctime) at or after the marker's LastModified second (the rule in the
/// module docs).
pub fn changed_since(dir: &LocalDir, marker: &RemoteObject) -> bool {
    dir.ctime_ns.div_euclid(NS) >= i128::from(marker.last_modified_ns).div_euclid(NS)
}

/// Plans the markers for `mode`: `-v` changes nothing, `-u` deletes nothing.
pub fn plan(dirs: &[LocalDir], markers: &Listing, mode: Mode) -> MarkerPlan {
    let mut out = MarkerPlan::default();
    if mode == Mode::VerifyOnly {
        return out;
    }
    for (i, d) in dirs.iter().enumerate() {
        match markers.get(marker_rel(d).as_str()) {
            None => out.puts.push((i, MarkerReason::New)),
            Some(m) if changed_since(d, m) => out.puts.push((i, MarkerReason::Changed)),
            Some(_) => out.unchanged += 1,
        }
    }
    if mode == Mode::Full {
        let local: HashSet<String> = dirs.iter().map(marker_rel).collect();
        out.deletes = markers
            .keys()
            .filter(|k| !local.contains(&***k))
            .cloned()
            .collect();
        // Children before their parents (some servers keep a directory object while it
        // has entries).
        out.deletes.sort_by(|a, b| b.cmp(a));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = NS;

    fn dir(rel: &str, mtime_s: i128, ctime_s: i128) -> LocalDir {
        LocalDir {
            rel: rel.into(),
            mtime_ns: mtime_s * S + 400_000_000,
            ctime_ns: ctime_s * S + 400_000_000,
            mode: 0o40700,
            uid: 0,
            gid: 0,
        }
    }

    fn marker(secs: i64) -> RemoteObject {
        RemoteObject {
            size: 0,
            last_modified_ns: secs * 1_000_000_000,
            archived: None,
            etag: 0,
        }
    }

    #[test]
    fn markers_are_zero_byte_keys_ending_in_a_slash() {
        assert!(is_marker("a/", &marker(1)));
        assert!(is_marker("a/b/", &marker(1)));
        assert!(!is_marker("/", &marker(1)), "the prefix itself");
        assert!(!is_marker("", &marker(1)));
        assert!(!is_marker("a", &marker(1)));
        let mut sized = marker(1);
        sized.size = 3;
        assert!(
            !is_marker("a/", &sized),
            "an object with content is a file's"
        );
        let listing: Listing = [("a/".into(), marker(1)), ("a/f".into(), marker(1))]
            .into_iter()
            .collect();
        let (files, markers) = split(listing);
        assert_eq!(files.keys().collect::<Vec<_>>(), [&Box::<str>::from("a/f")]);
        assert_eq!(markers.len(), 1);
    }

    #[test]
    fn a_marker_is_put_again_only_for_a_change_at_or_after_its_second() {
        // (dir mtime s, dir ctime s, marker LastModified s, put again?)
        let cases = [
            (100, 100, 101, false),
            (100, 100, 100, true),
            (100, 105, 101, true), // chmod after the put: only ctime moved
            (105, 105, 101, true),
            (90, 100, 200, false),
            (-5, 50, 100, false),             // an mtime before 1970
            (13_569_465_600, 50, 100, false), // an mtime in 2400: no put every run
        ];
        for (m, c, lm, want) in cases {
            assert_eq!(
                changed_since(&dir("d", m, c), &marker(lm)),
                want,
                "{m} {c} {lm}"
            );
        }
    }

    #[test]
    fn the_plan_of_markers() {
        let dirs = [dir("a", 10, 10), dir("a/b", 10, 50), dir("c", 10, 10)];
        let markers: Listing = [
            ("a/".into(), marker(20)),
            ("a/b/".into(), marker(20)),
            ("gone/".into(), marker(20)),
            ("gone/deeper/".into(), marker(20)),
        ]
        .into_iter()
        .collect();
        let p = plan(&dirs, &markers, Mode::Full);
        assert_eq!(p.puts, [(1, MarkerReason::Changed), (2, MarkerReason::New)]);
        assert_eq!(p.unchanged, 1);
        let deletes: Vec<&str> = p.deletes.iter().map(|k| &**k).collect();
        assert_eq!(deletes, ["gone/deeper/", "gone/"]);
        let up = plan(&dirs, &markers, Mode::UploadOnly);
        assert_eq!(up.puts.len(), 2);
        assert!(up.deletes.is_empty());
        assert_eq!(
            plan(&dirs, &markers, Mode::VerifyOnly),
            MarkerPlan::default()
        );
    }
}
