//! The plan: what to do with each file, directory and object, decided one key at a time as
//! the walk and the listing pass side by side in key order ([`Join`]). Pure: no I/O,
//! table-tested.
//!
//! The rule is `aws s3 sync`'s, so a prefix filled by the original tool is not uploaded
//! again: upload when no object has the key, when the sizes differ, or when the local
//! mtime is newer than the object's LastModified. Both sides are merged by key, so both must
//! be in the same order: the walk yields S3's byte order itself, and the listing is sorted
//! by the run (not every server lists in that order; see [`crate::run::sorted`]). [`Join`]
//! checks the order of both as they pass and stops the run on the first key out of place
//! (an order mismatch has made `aws s3 sync` upload and delete the same file in one run).
//!
//! A same-size file whose mtime is newer than LastModified is *ambiguous*: LastModified has
//! whole seconds and mtimes nanoseconds (a file stamped within the second of its upload), and
//! a file dated in the future (a wrong clock, an archive's dates) is newer than any upload.
//! Such a file may or may not have changed after its upload; the object's `mtime` metadata,
//! which every upload writes (rclone's format), decides ([`resolve_ambiguous`]): the same
//! mtime is unchanged, another is an upload, none (objects of the original tool and other
//! tools) is the rule above, an upload. The sync reads that metadata from its cache of
//! earlier answers when the listing shows the same object (size, LastModified, ETag), and
//! asks the object (HeadObject) otherwise (see [`crate::sync::mtime_cache`]).

use std::cmp::Ordering;

use crate::metadata::NS;
pub use crate::s3::listing::{etag_hash, Listed, Listing, RemoteObject};
use crate::sync::walk::{Local, LocalDir, LocalFile};

/// What a run may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Upload, then delete objects that have no local file.
    Full,
    /// Upload; never delete (`-u`).
    UploadOnly,
    /// Change nothing (`-v`).
    VerifyOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadReason {
    New,
    SizeDiffers {
        local: u64,
        remote: u64,
    },
    Newer,
    /// Ambiguous (see the module docs), and the object's `mtime` metadata is another mtime.
    MtimeMetadataDiffers,
    /// `--verifyContent` found the object's content different (a repair).
    ContentDiffers,
}

impl std::fmt::Display for UploadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadReason::New => f.write_str("not in the bucket"),
            UploadReason::SizeDiffers { local, remote } => {
                write!(f, "size differs (local {local}, bucket {remote})")
            }
            UploadReason::Newer => f.write_str("local file is newer"),
            UploadReason::MtimeMetadataDiffers => {
                f.write_str("local file is newer (mtime differs from the object's mtime metadata)")
            }
            UploadReason::ContentDiffers => f.write_str("content differs"),
        }
    }
}

/// Same size, and the file's mtime is newer than LastModified (by less than its one-second
/// resolution, or dated after the upload): the listing cannot tell whether it changed after
/// the upload; the object's `mtime` metadata can.
pub fn is_ambiguous(local: &LocalFile, remote: &RemoteObject) -> bool {
    local.size == remote.size && local.mtime_ns > i128::from(remote.last_modified_ns)
}

/// The decision for an ambiguous file from its object's `mtime` metadata: the same mtime
/// means unchanged; another, or none (objects of other tools), means upload.
pub fn resolve_ambiguous(local: &LocalFile, metadata: Option<&str>) -> Option<UploadReason> {
    match metadata.map(crate::metadata::parse_mtime) {
        Some(Some(ns)) if ns == local.mtime_ns => None,
        Some(Some(_)) => Some(UploadReason::MtimeMetadataDiffers),
        _ => Some(UploadReason::Newer),
    }
}

/// Should this local file be uploaded over what the bucket holds?
pub fn upload_reason(local: &LocalFile, remote: Option<&RemoteObject>) -> Option<UploadReason> {
    match remote {
        None => Some(UploadReason::New),
        Some(r) if r.size != local.size => Some(UploadReason::SizeDiffers {
            local: local.size,
            remote: r.size,
        }),
        Some(r) if local.mtime_ns > i128::from(r.last_modified_ns) => Some(UploadReason::Newer),
        Some(_) => None,
    }
}

/// A directory marker: a zero-byte key ending in `/` below the prefix (not the prefix
/// itself). See [`crate::metadata`] for what it records.
pub fn is_marker(rel: &str, obj: &RemoteObject) -> bool {
    rel.len() > 1 && crate::metadata::is_directory_marker(rel, obj.size)
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

/// Changed (its ctime) at or after the marker's LastModified second: every change of a
/// directory (an entry added or removed, chmod, chown, its mtime set) sets its ctime, which
/// no user can set, so a directory unchanged since its marker was put is older than the
/// marker's second and costs nothing (see [`crate::metadata`]).
pub fn changed_since(dir: &LocalDir, marker: &RemoteObject) -> bool {
    dir.ctime_ns.div_euclid(NS) >= i128::from(marker.last_modified_ns).div_euclid(NS)
}

/// One key of the merge: on the local side only, in the bucket only, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pair {
    Local(Local),
    Remote(Listed),
    Both(Local, Listed),
}

/// Compares a local entry's key (a directory's is its name and `/`) with a listed key.
pub fn cmp_key(local: &Local, rel: &str) -> Ordering {
    match local {
        Local::File { file, .. } => file.rel.as_bytes().cmp(rel.as_bytes()),
        Local::Dir(d) => d
            .rel
            .as_bytes()
            .iter()
            .chain(b"/")
            .cmp(rel.as_bytes().iter()),
    }
}

/// Why a merge stopped: a side failed to read, or was out of order (which would make the
/// merge upload and delete the wrong things: the run stops before it deletes anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("{0}")]
    Read(String),
    #[error("the {side} is not in key order: [{after}] came after [{before}]")]
    Order {
        side: &'static str,
        before: String,
        after: String,
    },
}

/// Merges the walk and the listing, both in key order, one key at a time.
pub struct Join<L: Iterator, R: Iterator> {
    local: std::iter::Peekable<L>,
    remote: std::iter::Peekable<R>,
    last_local: String,
    last_remote: Option<String>,
    failed: bool,
}

impl<L, R> Join<L, R>
where
    L: Iterator<Item = std::io::Result<Local>>,
    R: Iterator<Item = std::io::Result<Listed>>,
{
    pub fn new(local: L, remote: R) -> Self {
        Join {
            local: local.peekable(),
            remote: remote.peekable(),
            last_local: String::new(),
            last_remote: None,
            failed: false,
        }
    }

    fn next_local(&mut self) -> Result<Option<Local>, JoinError> {
        let Some(l) = self
            .local
            .next()
            .transpose()
            .map_err(|e| JoinError::Read(format!("cannot read the walk back: {e}")))?
        else {
            return Ok(None);
        };
        let key = l.key();
        if !self.last_local.is_empty() && key.as_bytes() <= self.last_local.as_bytes() {
            return Err(JoinError::Order {
                side: "walk",
                before: std::mem::take(&mut self.last_local),
                after: key.into_owned(),
            });
        }
        self.last_local.clear();
        self.last_local.push_str(&key);
        Ok(Some(l))
    }

    fn next_remote(&mut self) -> Result<Option<Listed>, JoinError> {
        let Some(r) = self
            .remote
            .next()
            .transpose()
            .map_err(|e| JoinError::Read(format!("cannot read the listing back: {e}")))?
        else {
            return Ok(None);
        };
        if let Some(last) = &self.last_remote {
            if r.rel.as_bytes() <= last.as_bytes() {
                return Err(JoinError::Order {
                    side: "listing",
                    before: last.to_string(),
                    after: r.rel.to_string(),
                });
            }
        }
        match &mut self.last_remote {
            Some(last) => {
                last.clear();
                last.push_str(&r.rel);
            }
            None => self.last_remote = Some(r.rel.to_string()),
        }
        Ok(Some(r))
    }

    fn step(&mut self) -> Result<Option<Pair>, JoinError> {
        let order = match (self.local.peek(), self.remote.peek()) {
            (None, None) => return Ok(None),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(Ok(l)), Some(Ok(r))) => cmp_key(l, &r.rel),
            // An error is taken from its side, which reports it.
            (Some(Err(_)), _) => Ordering::Less,
            (_, Some(Err(_))) => Ordering::Greater,
        };
        Ok(Some(match order {
            Ordering::Less => Pair::Local(self.next_local()?.expect("peeked")),
            Ordering::Greater => Pair::Remote(self.next_remote()?.expect("peeked")),
            Ordering::Equal => {
                let l = self.next_local()?.expect("peeked");
                Pair::Both(l, self.next_remote()?.expect("peeked"))
            }
        }))
    }
}

impl<L, R> Iterator for Join<L, R>
where
    L: Iterator<Item = std::io::Result<Local>>,
    R: Iterator<Item = std::io::Result<Listed>>,
{
    type Item = Result<Pair, JoinError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.step().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

/// What the sync does with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Upload {
        file: LocalFile,
        own: bool,
        reason: UploadReason,
    },
    Unchanged,
    /// Same size, newer than LastModified: the object's `mtime` metadata decides
    /// ([`resolve_ambiguous`]).
    Ambiguous {
        file: LocalFile,
        own: bool,
        remote: RemoteObject,
    },
    PutMarker(LocalDir, MarkerReason),
    MarkerUnchanged,
    /// An object with no local file (`Full`): deleted once every upload succeeded.
    Delete(Box<str>),
    /// A marker whose directory is gone (`Full`): deleted after the files' deletes.
    DeleteMarker(Box<str>),
    /// An object with no local file that `-u` keeps.
    Keep,
}

/// Decides one key of the merge for `mode` (`-v` changes nothing and does not plan).
pub fn decide(pair: Pair, mode: Mode) -> Step {
    match pair {
        Pair::Local(Local::File { file, own }) => Step::Upload {
            file,
            own,
            reason: UploadReason::New,
        },
        Pair::Local(Local::Dir(d)) => Step::PutMarker(d, MarkerReason::New),
        Pair::Both(Local::File { file, own }, r) => {
            if is_ambiguous(&file, &r.obj) {
                return Step::Ambiguous {
                    file,
                    own,
                    remote: r.obj,
                };
            }
            match upload_reason(&file, Some(&r.obj)) {
                Some(reason) => Step::Upload { file, own, reason },
                None => Step::Unchanged,
            }
        }
        // A key ending in `/` with content is not a marker: the marker replaces it.
        Pair::Both(Local::Dir(d), r) if !is_marker(&r.rel, &r.obj) => {
            Step::PutMarker(d, MarkerReason::New)
        }
        Pair::Both(Local::Dir(d), r) if changed_since(&d, &r.obj) => {
            Step::PutMarker(d, MarkerReason::Changed)
        }
        Pair::Both(Local::Dir(_), _) => Step::MarkerUnchanged,
        Pair::Remote(_) if mode != Mode::Full => Step::Keep,
        Pair::Remote(r) if is_marker(&r.rel, &r.obj) => Step::DeleteMarker(r.rel),
        Pair::Remote(r) => Step::Delete(r.rel),
    }
}

/// What verification finds for one key (markers are neither files nor extra objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The object has the file's size (or the file is one of the run's own, which only
    /// needs its object to exist).
    Same {
        file: LocalFile,
        own: bool,
        size: u64,
    },
    Missing(LocalFile),
    SizeDiffers {
        file: LocalFile,
        size: u64,
    },
    /// An object no local file accounts for.
    Extra(Box<str>),
    /// A directory or marker: not verified.
    NotAFile,
}

/// Verifies one key of the merge of the tree (as uploaded) and the listing.
pub fn check(pair: Pair) -> Check {
    match pair {
        Pair::Local(Local::File { file, .. }) => Check::Missing(file),
        Pair::Both(Local::File { file, own }, r) if own || r.obj.size == file.size => Check::Same {
            file,
            own,
            size: r.obj.size,
        },
        Pair::Both(Local::File { file, .. }, r) => Check::SizeDiffers {
            file,
            size: r.obj.size,
        },
        Pair::Remote(r) if !is_marker(&r.rel, &r.obj) => Check::Extra(r.rel),
        Pair::Local(Local::Dir(_)) | Pair::Both(Local::Dir(_), _) | Pair::Remote(_) => {
            Check::NotAFile
        }
    }
}

/// A key as a server that rewrites keys may store it: `\` as `/` (SeaweedFS) and runs of `/`
/// as one.
pub fn server_form(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        let c = if c == '\\' { '/' } else { c };
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn f(rel: &str, size: u64, mtime_s: i64) -> LocalFile {
        LocalFile {
            rel: rel.into(),
            size,
            mtime_ns: i128::from(mtime_s * S),
        }
    }

    fn obj(size: u64, t: i64) -> RemoteObject {
        RemoteObject {
            size,
            last_modified_ns: t * S,
            archived: None,
            etag: 0,
        }
    }

    fn listed(items: &[(&str, u64, i64)]) -> Vec<std::io::Result<Listed>> {
        items
            .iter()
            .map(|(k, size, t)| {
                Ok(Listed {
                    rel: (*k).into(),
                    obj: obj(*size, *t),
                })
            })
            .collect()
    }

    fn file(rel: &str, size: u64, mtime_s: i64) -> std::io::Result<Local> {
        Ok(Local::File {
            file: f(rel, size, mtime_s),
            own: false,
        })
    }

    fn dir(rel: &str, ctime_s: i128) -> std::io::Result<Local> {
        Ok(Local::Dir(LocalDir {
            rel: rel.into(),
            mtime_ns: 0,
            ctime_ns: ctime_s * NS + 400_000_000,
            mode: 0o40700,
            uid: 0,
            gid: 0,
        }))
    }

    /// The steps of a whole merge, shortened to (key, what).
    fn plan(
        local: Vec<std::io::Result<Local>>,
        remote: Vec<std::io::Result<Listed>>,
        mode: Mode,
    ) -> Vec<(String, String)> {
        Join::new(local.into_iter(), remote.into_iter())
            .map(|p| match decide(p.unwrap(), mode) {
                Step::Upload { file, reason, .. } => {
                    (file.rel.to_string(), format!("upload {reason}"))
                }
                Step::Unchanged => (String::new(), "unchanged".into()),
                Step::Ambiguous { file, .. } => (file.rel.to_string(), "ambiguous".into()),
                Step::PutMarker(d, why) => (marker_rel(&d), format!("marker {why}")),
                Step::MarkerUnchanged => (String::new(), "marker unchanged".into()),
                Step::Delete(k) => (k.to_string(), "delete".into()),
                Step::DeleteMarker(k) => (k.to_string(), "delete marker".into()),
                Step::Keep => (String::new(), "keep".into()),
            })
            .collect()
    }

    #[test]
    fn the_aws_sync_rule() {
        let remote = RemoteObject {
            size: 10,
            last_modified_ns: 100 * S,
            archived: None,
            etag: 0,
        };
        let cases = [
            (f("a", 10, 50), Some(remote), None),
            (f("a", 10, 100), Some(remote), None),
            (f("a", 10, 101), Some(remote), Some(UploadReason::Newer)),
            (
                f("a", 11, 50),
                Some(remote),
                Some(UploadReason::SizeDiffers {
                    local: 11,
                    remote: 10,
                }),
            ),
            (f("a", 10, 50), None, Some(UploadReason::New)),
        ];
        for (local, remote, want) in cases {
            assert_eq!(upload_reason(&local, remote.as_ref()), want, "{local:?}");
        }
        // Sub-second: newer by one nanosecond counts.
        let mut g = f("a", 10, 100);
        g.mtime_ns += 1;
        assert_eq!(upload_reason(&g, Some(&remote)), Some(UploadReason::Newer));
    }

    /// The whole decision for one file whose object has the same key: the listing, then the
    /// `mtime` metadata where the listing cannot tell.
    fn decide_one(
        local: &LocalFile,
        remote: &RemoteObject,
        metadata: Option<&str>,
    ) -> Option<UploadReason> {
        let pair = Pair::Both(
            Local::File {
                file: local.clone(),
                own: false,
            },
            Listed {
                rel: local.rel.clone(),
                obj: *remote,
            },
        );
        match decide(pair, Mode::Full) {
            Step::Ambiguous { file, .. } => resolve_ambiguous(&file, metadata),
            Step::Upload { reason, .. } => Some(reason),
            Step::Unchanged => None,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn files_newer_than_their_object_are_settled_by_the_recorded_mtime() {
        const Y2100: i64 = 4_102_444_800;
        let uploaded = 100 * S; // LastModified: whole seconds
        let remote = RemoteObject {
            size: 10,
            last_modified_ns: uploaded,
            archived: None,
            etag: 1,
        };
        let at = |ns: i64| LocalFile {
            rel: "a".into(),
            size: 10,
            mtime_ns: i128::from(ns),
        };
        let day = 86_400 * S;
        // (file mtime, recorded mtime metadata, decision)
        let cases: [(i64, Option<&str>, Option<UploadReason>); 19] = [
            // Not newer than LastModified: unchanged, whatever is recorded (no HeadObject).
            (100 * S - 1, None, None),
            (100 * S, Some("3"), None),
            // Stamped within the second of the upload: the recorded mtime decides.
            (100 * S + 500_000_000, Some("100.5"), None),
            (100 * S + 500_000_000, Some("100.500000000"), None),
            (
                100 * S + 500_000_000,
                Some("100.4"),
                Some(UploadReason::MtimeMetadataDiffers),
            ),
            (
                100 * S + 1,
                Some("100"),
                Some(UploadReason::MtimeMetadataDiffers),
            ),
            // Newer by a second or more: changed after the upload unless it is the mtime
            // the upload recorded (a file dated in the future).
            (101 * S, Some("101"), None),
            (
                105 * S,
                Some("100"),
                Some(UploadReason::MtimeMetadataDiffers),
            ),
            (uploaded + day, Some("86500"), None),
            (
                uploaded + day,
                Some("86500.000000001"),
                Some(UploadReason::MtimeMetadataDiffers),
            ),
            (Y2100 * S, Some("4102444800"), None),
            (
                Y2100 * S + 7,
                Some("4102444800"),
                Some(UploadReason::MtimeMetadataDiffers),
            ),
            (
                Y2100 * S,
                Some("4102444801"),
                Some(UploadReason::MtimeMetadataDiffers),
            ),
            // Nothing (or nothing readable) recorded, as with the original tool's objects:
            // the listing rule, an upload of every file newer than its object.
            (100 * S + 1, None, Some(UploadReason::Newer)),
            (101 * S, None, Some(UploadReason::Newer)),
            (Y2100 * S, None, Some(UploadReason::Newer)),
            (105 * S, Some("yesterday"), Some(UploadReason::Newer)),
            (105 * S, Some(""), Some(UploadReason::Newer)),
            (-5 * S, None, None),
        ];
        for (mtime, meta, want) in cases {
            assert_eq!(
                decide_one(&at(mtime), &remote, meta),
                want,
                "{mtime} {meta:?}"
            );
            assert_eq!(
                is_ambiguous(&at(mtime), &remote),
                mtime > uploaded,
                "{mtime}"
            );
        }
        // Another size is an upload at once, however the dates stand.
        for mtime in [50 * S, 100 * S + 1, Y2100 * S] {
            let mut f = at(mtime);
            f.size = 11;
            assert!(!is_ambiguous(&f, &remote));
            assert_eq!(
                decide_one(&f, &remote, Some("100")),
                Some(UploadReason::SizeDiffers {
                    local: 11,
                    remote: 10
                })
            );
        }
    }

    #[test]
    fn modes() {
        let local = || vec![file("grown", 2, 1), file("keep", 1, 1), file("new", 1, 1)];
        let remote = || {
            listed(&[
                ("gone", 3, 5),
                ("grown", 1, 5),
                ("keep", 1, 5),
                ("z/gone2", 3, 5),
            ])
        };
        let s = |k: &str, w: &str| (k.to_string(), w.to_string());
        assert_eq!(
            plan(local(), remote(), Mode::Full),
            [
                s("gone", "delete"),
                s("grown", "upload size differs (local 2, bucket 1)"),
                s("", "unchanged"),
                s("new", "upload not in the bucket"),
                s("z/gone2", "delete"),
            ]
        );
        let up = plan(local(), remote(), Mode::UploadOnly);
        assert_eq!(up.iter().filter(|(_, w)| w == "keep").count(), 2);
        assert!(!up.iter().any(|(_, w)| w.starts_with("delete")));
    }

    #[test]
    fn keys_that_sort_around_a_slash_meet_their_objects() {
        // The walk's order: `a b`, `a-b`, `a.txt`, then the directory `a` as `a/`, its
        // contents, `a0`, and non-ASCII last. A plain directory walk (`a` before `a-b`) would
        // see every one of these as new and every object as one to delete.
        let local = vec![
            file("a b", 1, 1),
            file("a-b", 1, 1),
            file("a.txt", 1, 1),
            dir("a", 1),
            file("a/b", 1, 1),
            file("a/b\u{1}", 1, 1),
            file("a0", 1, 1),
            file("é", 1, 1),
        ];
        let remote = listed(&[
            ("a b", 1, 5),
            ("a-b", 1, 5),
            ("a.txt", 1, 5),
            ("a/", 0, 5),
            ("a/b", 1, 5),
            ("a/b\u{1}", 1, 5),
            ("a0", 1, 5),
            ("é", 1, 5),
        ]);
        let steps = plan(local, remote, Mode::Full);
        assert!(
            steps
                .iter()
                .all(|(_, w)| w == "unchanged" || w == "marker unchanged"),
            "{steps:?}"
        );
        assert_eq!(steps.len(), 8);
    }

    #[test]
    fn directories_and_markers() {
        let s = |k: &str, w: &str| (k.to_string(), w.to_string());
        let local = vec![
            dir("a", 1),
            dir("b", 9),
            dir("c", 1),
            file("c/f", 1, 1),
            dir("n", 1),
        ];
        let remote = listed(&[
            ("a/", 0, 5),
            ("b/", 0, 5),
            ("c/", 4, 5),
            ("c/f", 1, 5),
            ("d/", 0, 5),
            ("d/e/", 0, 5),
        ]);
        assert_eq!(
            plan(local, remote, Mode::Full),
            [
                s("", "marker unchanged"),
                s("b/", "marker directory changed since its marker"),
                // A key `c/` with content is not a marker: the marker replaces it.
                s("c/", "marker no directory marker"),
                s("", "unchanged"),
                s("d/", "delete marker"),
                s("d/e/", "delete marker"),
                s("n/", "marker no directory marker"),
            ]
        );
    }

    #[test]
    fn a_side_out_of_order_stops_the_merge() {
        // SeaweedFS's own order, unsorted: the merge must refuse it, not delete by it.
        let local = vec![file("a-b", 1, 1), file("a/b", 1, 1)];
        let remote = listed(&[("a/b", 1, 5), ("a-b", 1, 5)]);
        let got: Vec<_> = Join::new(local.into_iter(), remote.into_iter()).collect();
        assert!(
            matches!(
                got.last(),
                Some(Err(JoinError::Order {
                    side: "listing",
                    ..
                }))
            ),
            "{got:?}"
        );
        let local = vec![file("b", 1, 1), file("a", 1, 1)];
        let got: Vec<_> = Join::new(local.into_iter(), Vec::new().into_iter()).collect();
        assert!(
            matches!(got.last(), Some(Err(JoinError::Order { side: "walk", .. }))),
            "{got:?}"
        );
    }

    #[test]
    fn verification_of_each_key() {
        let local = vec![
            dir("d", 1),
            file("missing", 1, 1),
            file("ok", 2, 1),
            file("short", 3, 1),
        ];
        let remote = listed(&[("d/", 0, 5), ("extra", 1, 5), ("ok", 2, 5), ("short", 2, 5)]);
        let got: Vec<String> = Join::new(local.into_iter(), remote.into_iter())
            .map(|p| match check(p.unwrap()) {
                Check::Same { file, .. } => format!("same {}", file.rel),
                Check::Missing(f) => format!("missing {}", f.rel),
                Check::SizeDiffers { file, size } => format!("differs {} {size}", file.rel),
                Check::Extra(k) => format!("extra {k}"),
                Check::NotAFile => "dir".into(),
            })
            .collect();
        assert_eq!(
            got,
            [
                "dir",
                "extra extra",
                "missing missing",
                "same ok",
                "differs short 2"
            ]
        );
        // The run's own file only needs its object.
        let own = Pair::Both(
            Local::File {
                file: f("log", 9, 1),
                own: true,
            },
            Listed {
                rel: "log".into(),
                obj: obj(3, 5),
            },
        );
        assert!(matches!(check(own), Check::Same { size: 3, .. }));
    }

    #[test]
    fn server_forms() {
        assert_eq!(server_form("a\\b"), "a/b");
        assert_eq!(server_form("a//b"), "a/b");
        assert_eq!(server_form("a.b"), "a.b");
    }

    #[test]
    fn markers_are_zero_byte_keys_ending_in_a_slash() {
        assert!(is_marker("a/", &obj(0, 1)));
        assert!(is_marker("a/b/", &obj(0, 1)));
        assert!(!is_marker("/", &obj(0, 1)), "the prefix itself");
        assert!(!is_marker("", &obj(0, 1)));
        assert!(!is_marker("a", &obj(0, 1)));
        assert!(
            !is_marker("a/", &obj(3, 1)),
            "an object with content is a file's"
        );
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
            let d = LocalDir {
                rel: "d".into(),
                mtime_ns: m * NS + 400_000_000,
                ctime_ns: c * NS + 400_000_000,
                mode: 0o40700,
                uid: 0,
                gid: 0,
            };
            assert_eq!(changed_since(&d, &obj(0, lm)), want, "{m} {c} {lm}");
        }
    }
}
