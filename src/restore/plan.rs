//! The restore's decisions, pure: what a listed key is (a file, a directory marker, a key
//! refused), and what to do with one object given what is on disk at its name. No I/O here:
//! the caller looks at the disk and asks S3, and hands the answers in.

/// Longest file name most Linux file systems take.
pub const NAME_MAX: usize = 255;

/// Why a key (relative to the prefix) cannot be a path under the target, if it cannot.
pub fn path_problem(rel: &str) -> Option<String> {
    if rel.contains('\0') {
        return Some("the key contains a NUL character".into());
    }
    for c in rel.split('/') {
        match c {
            "" => {
                return Some(
                    "the key has an empty path component (a leading, trailing or double '/')"
                        .into(),
                )
            }
            "." | ".." => return Some(format!("the key has a '{c}' path component")),
            c if c.len() > NAME_MAX => {
                return Some(format!(
                    "a path component is {} bytes, over the limit of {NAME_MAX}",
                    c.len()
                ))
            }
            _ => {}
        }
    }
    None
}

/// What a listed key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// A file at this relative path.
    File,
    /// The marker of this directory (relative to the target, no trailing `/`).
    Marker(&'a str),
    /// The marker of the prefix itself: the target, nothing to do.
    PrefixMarker,
    /// Not restored, and why (`marker`: it was a directory marker).
    Refused { marker: bool, why: String },
}

/// What the key `rel` of `size` bytes is; `used_as_dir`: other keys have it as a directory
/// (`a` beside `a/b` or a marker `a/`; see [`super::list`]).
pub fn key(rel: &str, size: u64, used_as_dir: bool) -> Key<'_> {
    if crate::metadata::is_directory_marker(rel, size) {
        if rel.is_empty() {
            return Key::PrefixMarker;
        }
        let dir = &rel[..rel.len() - 1];
        return match path_problem(dir) {
            Some(why) => Key::Refused { marker: true, why },
            None => Key::Marker(dir),
        };
    }
    let why = path_problem(rel).or_else(|| {
        used_as_dir.then(|| {
            "other keys use this name as a directory (a path cannot be both a file and a directory)"
                .to_string()
        })
    });
    match why {
        Some(why) => Key::Refused { marker: false, why },
        None => Key::File,
    }
}

/// What the listing says of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object {
    pub size: u64,
    pub last_modified_ns: i64,
    /// The archive storage class, if it is in one (GLACIER, DEEP_ARCHIVE).
    pub archived: Option<&'static str>,
}

/// What is at the object's final name now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    Nothing,
    File {
        size: u64,
        mtime_ns: i128,
    },
    Directory,
    /// A symlink, a FIFO, a device...
    Other,
}

/// Can an archived object be read? (HeadObject's `x-amz-restore`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    Yes,
    /// An S3 restore request made no copy yet.
    RestoreInProgress,
    /// No restore request was made.
    NeedsRestoreRequest,
}

impl Readable {
    /// From the `x-amz-restore` header (`None`: absent).
    pub fn from_restore_header(h: Option<&str>) -> Readable {
        match h {
            Some(r) if r.contains("ongoing-request=\"false\"") => Readable::Yes,
            Some(_) => Readable::RestoreInProgress,
            None => Readable::NeedsRestoreRequest,
        }
    }
}

/// What a HeadObject told, where a decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The modification time the object records (ours and rclone's metadata), if any.
    pub recorded_mtime_ns: Option<i128>,
    pub readable: Readable,
}

/// What to do with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask HeadObject and decide again with its answer.
    Head,
    /// Download it; `replace`: over what is at the name (`--overwrite`).
    Fetch { replace: bool },
    /// A dry run: say it would be downloaded.
    WouldFetch,
    /// The local file is the object's already (same size and mtime): left alone.
    AlreadyPresent,
    /// A local file differs and is not overwritten.
    Conflict(String),
    /// Archived and not readable yet.
    Archived(String),
    /// A directory has the file's name: a failure, never replaced.
    Blocked(String),
}

/// The decision for one object: archived objects need a readable copy, then what is on disk
/// decides (nothing: fetch; the same file: leave it; a different one: a conflict unless
/// `overwrite`). `head` is HeadObject's answer once [`Action::Head`] asked for it.
pub fn decide(
    obj: &Object,
    disk: &OnDisk,
    head: Option<&Head>,
    overwrite: bool,
    dry_run: bool,
) -> Action {
    if let Some(class) = obj.archived {
        let Some(h) = head else {
            return Action::Head;
        };
        let state = match h.readable {
            Readable::Yes => None,
            Readable::RestoreInProgress => Some("a restore request is still in progress"),
            Readable::NeedsRestoreRequest => Some(
                "an S3 restore request (RestoreObject, or the console's \"Initiate restore\") is needed first",
            ),
        };
        if let Some(state) = state {
            return Action::Archived(format!(
                "the object is in the {class} storage class and cannot be read yet: {state}"
            ));
        }
    }
    let fetch = |replace| {
        if dry_run {
            Action::WouldFetch
        } else {
            Action::Fetch { replace }
        }
    };
    let differs = match *disk {
        OnDisk::Nothing => return fetch(false),
        OnDisk::Directory => {
            return Action::Blocked("a directory has the file's name; not replaced".into())
        }
        OnDisk::Other if !overwrite => {
            return Action::Conflict(
                "something other than a regular file (a symlink, say) has the file's name; not replaced (--overwrite replaces it, never writing through it)".into(),
            )
        }
        OnDisk::Other => return fetch(true),
        OnDisk::File { size, .. } if size != obj.size => {
            format!("local {size} bytes, object {} bytes", obj.size)
        }
        OnDisk::File { mtime_ns, .. } => {
            let Some(h) = head else {
                return Action::Head;
            };
            let wanted = h
                .recorded_mtime_ns
                .unwrap_or(i128::from(obj.last_modified_ns));
            if same_mtime(mtime_ns, wanted) {
                return Action::AlreadyPresent;
            }
            "same size, different modification time".into()
        }
    };
    if overwrite {
        fetch(true)
    } else {
        Action::Conflict(format!(
            "the local file differs from the object ({differs}); not overwritten (--overwrite replaces it)"
        ))
    }
}

/// Same mtime: equal to the nanosecond, or to the second on a file system that keeps no
/// fractions (the local value then has none).
pub fn same_mtime(local: i128, wanted: i128) -> bool {
    local == wanted
        || (local.rem_euclid(1_000_000_000) == 0
            && local == wanted - wanted.rem_euclid(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_keys_are_named() {
        for ok in [
            "a",
            "a b/c",
            "é/\u{1}\n+%#?&",
            "x/.hidden",
            "..a/b..",
            &"n".repeat(255),
        ] {
            assert_eq!(path_problem(ok), None, "{ok:?}");
        }
        for bad in [
            "../x",
            "a/../x",
            "a/./y",
            "a//z",
            "/abs",
            "a/",
            "",
            ".",
            "a\0b",
            &"n".repeat(256),
        ] {
            assert!(path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn what_a_key_is() {
        // (rel, size, used as a directory) -> what it is ("refused" / "refused marker")
        let table = [
            ("a", 3, false, "file"),
            ("a", 0, false, "file"),
            ("a", 3, true, "refused"),
            ("a/", 0, false, "marker a"),
            ("a/b/", 0, false, "marker a/b"),
            ("a/", 0, true, "marker a"),
            ("", 0, false, "prefix"),
            ("", 5, false, "refused"),
            ("a/", 5, false, "refused"),
            ("../", 0, false, "refused marker"),
            ("a//", 0, false, "refused marker"),
            ("a/../b", 1, false, "refused"),
            ("é\u{1}", 1, false, "file"),
        ];
        for (rel, size, dir, want) in table {
            let got = match key(rel, size, dir) {
                Key::File => "file".to_string(),
                Key::Marker(d) => format!("marker {d}"),
                Key::PrefixMarker => "prefix".into(),
                Key::Refused { marker: false, .. } => "refused".into(),
                Key::Refused { marker: true, .. } => "refused marker".into(),
            };
            assert_eq!(got, want, "{rel:?} {size} {dir}");
        }
        // A path problem is named before the directory conflict.
        let Key::Refused { why, .. } = key("a//b", 1, true) else {
            panic!("refused")
        };
        assert!(why.contains("empty path component"), "{why}");
    }

    /// An action in short: its kind and its message, if any.
    fn short(a: &Action) -> (&'static str, &str) {
        match a {
            Action::Head => ("head", ""),
            Action::Fetch { replace: false } => ("fetch", ""),
            Action::Fetch { replace: true } => ("replace", ""),
            Action::WouldFetch => ("would fetch", ""),
            Action::AlreadyPresent => ("present", ""),
            Action::Conflict(m) => ("conflict", m),
            Action::Archived(m) => ("archived", m),
            Action::Blocked(m) => ("blocked", m),
        }
    }

    #[test]
    fn the_decision_for_one_object() {
        const S: i128 = 1_000_000_000;
        let plain = Object {
            size: 10,
            last_modified_ns: 7_000_000_005,
            archived: None,
        };
        let glacier = Object {
            archived: Some("GLACIER"),
            ..plain
        };
        let head = |mtime: Option<i128>, readable| {
            Some(Head {
                recorded_mtime_ns: mtime,
                readable,
            })
        };
        let yes = Readable::Yes;
        let file = |size, mtime_ns| OnDisk::File { size, mtime_ns };
        let (none, dir, other) = (OnDisk::Nothing, OnDisk::Directory, OnDisk::Other);
        // (object, on disk, HeadObject's answer, overwrite, dry run) -> (kind, in its message)
        let table = [
            (plain, none, None, false, false, ("fetch", "")),
            (plain, none, None, true, false, ("fetch", "")),
            (plain, none, None, false, true, ("would fetch", "")),
            // Same size: the recorded mtime decides, so HeadObject first.
            (plain, file(10, 3 * S), None, false, false, ("head", "")),
            (plain, file(10, 3 * S), head(Some(3 * S), yes), false, false, ("present", "")),
            (plain, file(10, 3 * S), head(Some(3 * S), yes), true, true, ("present", "")),
            // A file system without fractions of a second.
            (plain, file(10, 3 * S), head(Some(3 * S + 9), yes), false, false, ("present", "")),
            // No recorded mtime: LastModified.
            (plain, file(10, 7 * S + 5), head(None, yes), false, false, ("present", "")),
            (plain, file(10, 8 * S), head(None, yes), false, false, ("conflict", "different modification time")),
            (plain, file(10, 8 * S), head(None, yes), true, false, ("replace", "")),
            (plain, file(10, 8 * S), head(None, yes), true, true, ("would fetch", "")),
            // A different size needs no HeadObject.
            (plain, file(4, 7 * S + 5), None, false, false, ("conflict", "local 4 bytes, object 10 bytes")),
            (plain, file(4, 7 * S + 5), None, true, false, ("replace", "")),
            (plain, dir, None, true, false, ("blocked", "a directory has the file's name")),
            (plain, other, None, false, false, ("conflict", "other than a regular file")),
            (plain, other, None, true, false, ("replace", "")),
            // Archived: a readable copy first, whatever is on disk.
            (glacier, none, None, false, false, ("head", "")),
            (glacier, none, head(None, Readable::RestoreInProgress), false, false, ("archived", "GLACIER storage class and cannot be read yet: a restore request is still in progress")),
            (glacier, file(4, 0), head(None, Readable::NeedsRestoreRequest), true, false, ("archived", "restore request (RestoreObject")),
            (glacier, none, head(None, yes), false, false, ("fetch", "")),
            (glacier, file(10, 7 * S + 5), head(None, yes), false, false, ("present", "")),
        ];
        for (i, (obj, disk, head, overwrite, dry, (kind, says))) in table.into_iter().enumerate() {
            let got = decide(&obj, &disk, head.as_ref(), overwrite, dry);
            let (k, m) = short(&got);
            assert!(
                k == kind && m.contains(says),
                "row {i}: {obj:?} {disk:?} {head:?} overwrite {overwrite} dry {dry}: {got:?}"
            );
        }
    }

    #[test]
    fn restore_headers() {
        use Readable::*;
        for (h, want) in [
            (None, NeedsRestoreRequest),
            (Some("ongoing-request=\"true\""), RestoreInProgress),
            (
                Some("ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\""),
                Yes,
            ),
        ] {
            assert_eq!(Readable::from_restore_header(h), want, "{h:?}");
        }
    }

    #[test]
    fn markers() {
        assert!(crate::metadata::is_directory_marker("a/", 0));
        assert!(crate::metadata::is_directory_marker("", 0));
        assert!(!crate::metadata::is_directory_marker("a/", 3));
        assert!(!crate::metadata::is_directory_marker("a", 0));
    }

    #[test]
    fn mtimes_compare_at_the_file_systems_precision() {
        assert!(same_mtime(5_000_000_123, 5_000_000_123));
        assert!(same_mtime(5_000_000_000, 5_000_000_123));
        assert!(!same_mtime(5_000_000_100, 5_000_000_123));
        assert!(!same_mtime(4_000_000_000, 5_000_000_123));
    }
}
