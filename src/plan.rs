//! The plan: which files to upload and which objects to delete. Pure: no I/O, table-tested.
//!
//! The rule is `aws s3 sync`'s, so a prefix filled by the original tool is not uploaded
//! again: upload when no object has the key, when the sizes differ, or when the local
//! mtime is newer than the object's LastModified. Objects are matched by exact key in a
//! hash map, never by merging two sorted listings (a sort-order mismatch has made
//! `aws s3 sync` upload and delete the same file in one run).

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
    SizeDiffers { local: u64, remote: u64 },
    Newer,
}

impl std::fmt::Display for UploadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadReason::New => f.write_str("not in the bucket"),
            UploadReason::SizeDiffers { local, remote } => {
                write!(f, "size differs (local {local}, bucket {remote})")
            }
            UploadReason::Newer => f.write_str("local file is newer"),
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
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.uploads.is_empty() && self.deletes.is_empty()
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
        Some(r) if local.mtime_ns > r.last_modified_ns => Some(UploadReason::Newer),
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
        match upload_reason(f, listing.get(&f.rel)) {
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

    const S: i64 = 1_000_000_000;

    fn f(rel: &str, size: u64, mtime_s: i64) -> LocalFile {
        LocalFile {
            rel: rel.into(),
            size,
            mtime_ns: mtime_s * S,
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
