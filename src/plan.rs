//! The plan: which files to upload and which objects to delete. Pure: no I/O, table-tested.
//!
//! The rule is `aws s3 sync`'s, so a prefix filled by the original tool is not uploaded
//! again: upload when no object has the key, when the sizes differ, or when the local
//! mtime is newer than the object's LastModified. Objects are matched by exact key in a
//! hash map, never by merging two sorted listings (a sort-order mismatch has made
//! `aws s3 sync` upload and delete the same file in one run).
//!
//! A same-size file whose mtime is newer than LastModified is *ambiguous*: LastModified has
//! whole seconds and mtimes nanoseconds (a file stamped within the second of its upload), and
//! a file dated in the future (a wrong clock, an archive's dates) is newer than any upload.
//! Such a file may or may not have changed after its upload; the object's `mtime` metadata,
//! which every upload writes (rclone's format), decides ([`resolve_ambiguous`]): the same
//! mtime is unchanged, another is an upload, none (objects of the original tool and other
//! tools) is the rule above, an upload. The sync reads that metadata from its cache of
//! earlier answers when the listing shows the same object (size, LastModified, ETag), and
//! asks the object (HeadObject) otherwise (see [`crate::mtime_cache`]).

use std::collections::HashMap;

use crate::walk::LocalFile;

/// What the bucket holds for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteObject {
    pub size: u64,
    /// LastModified in nanoseconds since the Unix epoch.
    pub last_modified_ns: i64,
    /// The storage class when it is an archive one (`GLACIER`, `DEEP_ARCHIVE`), whose objects
    /// cannot be read before an S3 restore request; `None` for every readable class.
    pub archived: Option<&'static str>,
    /// [`etag_hash`] of the object's ETag (0: none listed): enough to tell that an object is
    /// the one a cached answer is about, in 8 bytes.
    pub etag: u64,
}

/// A 64-bit FNV-1a hash of an ETag, quotes removed (listings and upload answers quote it).
pub fn etag_hash(etag: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in etag.trim_matches('"').bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The listing of a prefix, keyed by the path relative to the prefix.
pub type Listing = HashMap<Box<str>, RemoteObject>;

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

/// The plan as data. Uploads name files by their index in the source tree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub uploads: Vec<(usize, UploadReason)>,
    /// Relative names (under the prefix) of objects to delete, sorted.
    pub deletes: Vec<Box<str>>,
    pub unchanged: usize,
    /// Files whose objects must be asked for their `mtime` metadata (see the module docs).
    pub ambiguous: Vec<usize>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.uploads.is_empty() && self.deletes.is_empty() && self.ambiguous.is_empty()
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

/// Computes the plan for `mode` from the local files and the listing of the prefix.
pub fn plan(files: &[LocalFile], listing: &Listing, mode: Mode) -> Plan {
    let mut out = Plan::default();
    if mode == Mode::VerifyOnly {
        return out;
    }
    for (i, f) in files.iter().enumerate() {
        let remote = listing.get(&f.rel);
        if remote.is_some_and(|r| is_ambiguous(f, r)) {
            out.ambiguous.push(i);
            continue;
        }
        match upload_reason(f, remote) {
            Some(reason) => out.uploads.push((i, reason)),
            None => out.unchanged += 1,
        }
    }
    if mode == Mode::Full {
        let local: std::collections::HashSet<&str> = files.iter().map(|f| &*f.rel).collect();
        out.deletes = listing
            .keys()
            .filter(|k| !local.contains(&***k))
            .cloned()
            .collect();
        out.deletes.sort();
    }
    out
}

/// A key as a server that rewrites keys may store it: `\` as `/` (SeaweedFS) and runs of `/`
/// as one.
fn server_form(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        let c = if c == '\\' { '/' } else { c };
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Planned deletes that a planned upload of a new file may write (or have written on an
/// earlier run) under the server's form of its name: `a\b` stored as `a/b`. Deleting such
/// an object would remove the only copy of that file, every run. As (object, file index).
pub fn aliased_deletes(files: &[LocalFile], plan: &Plan) -> Vec<(Box<str>, usize)> {
    let uploads: HashMap<String, usize> = plan
        .uploads
        .iter()
        .filter(|(i, _)| server_form(&files[*i].rel) != *files[*i].rel)
        .map(|&(i, _)| (server_form(&files[i].rel), i))
        .collect();
    if uploads.is_empty() {
        return Vec::new();
    }
    plan.deletes
        .iter()
        .filter_map(|k| uploads.get(&server_form(k)).map(|&i| (k.clone(), i)))
        .collect()
}

/// Objects under the prefix that no local file accounts for (for verification), sorted.
pub fn extras<'a>(files: &[LocalFile], listing: &'a Listing) -> Vec<&'a str> {
    let local: std::collections::HashSet<&str> = files.iter().map(|f| &*f.rel).collect();
    let mut v: Vec<&str> = listing
        .keys()
        .map(|k| &**k)
        .filter(|k| !local.contains(k))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_a_rewritten_upload_key_may_hit_are_found() {
        let f = |rel: &str| LocalFile {
            rel: rel.into(),
            size: 1,
            mtime_ns: 0,
        };
        let files = [f("a\\b"), f("c"), f("x\\y")];
        let plan = Plan {
            uploads: vec![(0, UploadReason::New), (1, UploadReason::New)],
            deletes: vec!["a/b".into(), "a//b".into(), "d".into(), "x/y".into()],
            ..Plan::default()
        };
        let got = aliased_deletes(&files, &plan);
        assert_eq!(got, vec![("a/b".into(), 0), ("a//b".into(), 0)]);
    }

    const S: i64 = 1_000_000_000;

    fn f(rel: &str, size: u64, mtime_s: i64) -> LocalFile {
        LocalFile {
            rel: rel.into(),
            size,
            mtime_ns: i128::from(mtime_s * S),
        }
    }

    fn listing(items: &[(&str, u64, i64)]) -> Listing {
        items
            .iter()
            .map(|(k, size, t)| {
                (
                    (*k).into(),
                    RemoteObject {
                        size: *size,
                        last_modified_ns: t * S,
                        archived: None,
                        etag: 0,
                    },
                )
            })
            .collect()
    }

    fn boxed(v: &[&str]) -> Vec<Box<str>> {
        v.iter().map(|s| Box::from(*s)).collect()
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
    fn decide(
        local: &LocalFile,
        remote: &RemoteObject,
        metadata: Option<&str>,
    ) -> Option<UploadReason> {
        let files = [local.clone()];
        let l: Listing = [(local.rel.clone(), *remote)].into_iter().collect();
        let p = plan(&files, &l, Mode::Full);
        match (p.ambiguous.as_slice(), p.uploads.as_slice()) {
            ([0], []) => resolve_ambiguous(local, metadata),
            ([], [(0, reason)]) => Some(*reason),
            ([], []) => {
                assert_eq!(p.unchanged, 1);
                None
            }
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
            assert_eq!(decide(&at(mtime), &remote, meta), want, "{mtime} {meta:?}");
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
                decide(&f, &remote, Some("100")),
                Some(UploadReason::SizeDiffers {
                    local: 11,
                    remote: 10
                })
            );
        }
    }

    #[test]
    fn modes() {
        let files = vec![f("keep", 1, 1), f("new", 1, 1), f("grown", 2, 1)];
        let remote = listing(&[
            ("keep", 1, 5),
            ("grown", 1, 5),
            ("gone", 3, 5),
            ("z/gone2", 3, 5),
        ]);
        let full = plan(&files, &remote, Mode::Full);
        assert_eq!(
            full.uploads,
            vec![
                (1, UploadReason::New),
                (
                    2,
                    UploadReason::SizeDiffers {
                        local: 2,
                        remote: 1
                    }
                )
            ]
        );
        assert_eq!(full.deletes, boxed(&["gone", "z/gone2"]));
        assert_eq!(full.unchanged, 1);
        let up = plan(&files, &remote, Mode::UploadOnly);
        assert_eq!(up.uploads.len(), 2);
        assert!(up.deletes.is_empty());
        assert!(plan(&files, &remote, Mode::VerifyOnly).is_empty());
        assert_eq!(extras(&files, &remote), vec!["gone", "z/gone2"]);
    }

    #[test]
    fn keys_that_are_prefixes_of_each_other_are_distinct() {
        let files = vec![f("a", 1, 1), f("a/b", 1, 1)];
        let remote = listing(&[("a", 1, 5), ("a/b", 1, 5), ("a/", 0, 5)]);
        let p = plan(&files, &remote, Mode::Full);
        assert!(p.uploads.is_empty());
        assert_eq!(p.deletes, boxed(&["a/"]));
    }
}
