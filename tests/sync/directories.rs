//! Directories and recorded metadata against a real S3-compatible server (SeaweedFS on
//! 127.0.0.1, and moto): directory markers put, kept, put again and deleted by the sync; a
//! restore that never exposes a directory the source protected; exact mtimes in any year;
//! unusable metadata is a WARNING and a count.
//!
//! SeaweedFS 4.x stores `dir/` objects as its own directories and drops their user metadata
//! (a HeadObject answers none), so there a restore gives every directory the private default;
//! moto keeps it, and the round trip of modes, owners and times is checked there.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a test may show what it saw

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

const NS: i128 = 1_000_000_000;

fn at(ns: i128) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos((-ns) as u64)
    }
}

fn set_time(p: &Path, ns: i128) {
    // futimens on a read-only descriptor: works for directories too.
    std::fs::File::open(p)
        .unwrap()
        .set_modified(at(ns))
        .unwrap();
}

fn mtime_ns(p: &Path) -> i128 {
    let m = std::fs::symlink_metadata(p).unwrap();
    i128::from(m.mtime()) * NS + i128::from(m.mtime_nsec())
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn as_root() -> bool {
    (unsafe { libc::geteuid() }) == 0
}

fn restore(s: &Scratch, extra: &[&str], target: &Path, u: &str) -> std::process::Output {
    let mut v: Vec<std::ffi::OsString> = vec!["--restore".into()];
    v.extend(extra.iter().map(|a| OsStr::new(a).to_os_string()));
    v.push(target.as_os_str().to_os_string());
    v.push(u.into());
    run(s, v)
}

fn sync(s: &Scratch, extra: &[&str], u: &str) -> std::process::Output {
    let mut v: Vec<std::ffi::OsString> = extra.iter().map(|a| a.into()).collect();
    v.push(s.src().into_os_string());
    v.push(u.into());
    run(s, v)
}

/// Keys of the directory markers in the bucket.
fn marker_keys(bucket: &str) -> Vec<String> {
    objects(bucket)
        .into_iter()
        .filter(|(k, o)| is_marker(k, o))
        .map(|(k, _)| k)
        .collect()
}

fn put_with(bucket: &str, key: &str, body: &[u8], meta: &[(&str, &str)]) {
    let c = client();
    let mut req = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into());
    for (k, v) in meta {
        req = req.metadata(*k, *v);
    }
    rt().block_on(req.send()).unwrap();
}

/// Whether the server keeps user metadata on a `dir/` object (moto does; SeaweedFS 4.x
/// answers a HeadObject of one with none).
fn markers_keep_metadata(bucket: &str) -> bool {
    put_with(bucket, "probe/", b"", &[("mode", "040700")]);
    let kept = head(bucket, "probe/")
        .metadata()
        .is_some_and(|m| m.contains_key("mode"));
    rt().block_on(client().delete_object().bucket(bucket).key("probe/").send())
        .unwrap();
    kept
}

/// Waits until the clock is past the second of the directories' last changes, so that a
/// sync from now on writes markers whose LastModified second is later than those changes
/// (as a nightly run always is): the state the marker rule settles in.
fn wait_past_changes(root: &Path, dirs: &[&str]) {
    let last = dirs
        .iter()
        .map(|d| std::fs::metadata(root.join(d)).unwrap().ctime())
        .max()
        .unwrap();
    poll_until("the next second", Duration::from_secs(5), || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            > last
    });
}

const DIRS: [&str; 7] = [
    "home",
    "home/alice",
    "shared",
    "empty",
    "old",
    "old/a",
    "old/a/b",
];

/// A tree whose directories differ in mode, owner and time: a private home (0700 holding
/// 0644 files), a group directory (0750), an empty one, nested ones with old times (one in
/// the year 2400).
fn protected_tree(s: &Scratch) {
    s.write("home/alice/notes.txt", b"private notes");
    s.write("shared/doc.txt", b"for the group");
    s.write("old/a/b/f.txt", b"old");
    s.write("top.txt", b"top");
    std::fs::create_dir_all(s.src().join("empty")).unwrap();
    for (d, m) in [
        ("home", 0o755),
        ("home/alice", 0o700),
        ("shared", 0o750),
        ("empty", 0o755),
        ("old", 0o755),
        ("old/a", 0o711),
        ("old/a/b", 0o755),
    ] {
        std::fs::set_permissions(s.src().join(d), std::fs::Permissions::from_mode(m)).unwrap();
    }
    std::fs::set_permissions(
        s.src().join("home/alice/notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    if as_root() {
        std::os::unix::fs::chown(s.src().join("home/alice"), Some(1234), Some(5678)).unwrap();
    }
    // Times last, deepest first (a child's change moves its parent's mtime).
    for (d, t) in [
        ("old/a/b", 13_569_465_600 * NS + 7),
        ("old/a", 1_100_000_000 * NS + 250_000_000),
        ("old", 1_000_000_000 * NS),
        ("home/alice", 1_500_000_000 * NS + 123_456_789),
        ("home", 1_400_000_000 * NS),
        ("shared", 1_450_000_000 * NS + 500_000_000),
        ("empty", 1_300_000_000 * NS + 1),
    ] {
        set_time(&s.src().join(d), t);
    }
}

#[test]
fn directories_come_back_with_their_modes_owners_and_times_and_never_exposed() {
    let s = Scratch::new();
    protected_tree(&s);
    let b = bucket("dirs");
    let keeps = markers_keep_metadata(&b);
    let u = url(&b, "p");
    wait_past_changes(&s.src(), &DIRS);
    let o = sync(&s, &[], &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    // One marker per directory below the source; none for the source itself.
    let mut want: Vec<String> = DIRS.iter().map(|d| format!("p/{d}/")).collect();
    want.sort();
    assert_eq!(marker_keys(&b), want);
    if keeps {
        let m = head(&b, "p/home/alice/").metadata().cloned().unwrap();
        assert_eq!(m.get("mode").map(String::as_str), Some("040700"));
        assert_eq!(
            m.get("mtime").map(String::as_str),
            Some("1500000000.123456789")
        );
    }
    // Markers are neither missing files nor extra objects.
    let o = sync(&s, &["-v"], &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert!(
        !s.logtext().contains("has no local file"),
        "{}",
        s.logtext()
    );

    // A no-op run asks nothing and writes nothing.
    let proxy = Proxy::start(1);
    let o = command_via(&s, &proxy.endpoint())
        .arg(s.src())
        .arg(&u)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    let stats = proxy.finish();
    assert_eq!(
        (stats.get("method_PUT"), stats.get("method_HEAD")),
        (None, None),
        "{stats:?}"
    );

    // A dry run creates nothing.
    let dry = s.dir.path().join("dry");
    let o = restore(&s, &["--dryRun"], &dry, &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert!(!dry.exists());

    let target = s.dir.path().join("restored");
    let summary = s.dir.path().join("summary.json");
    let o = restore(
        &s,
        &[&format!("--summaryFile={}", summary.display())],
        &target,
        &u,
    );
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert_eq!(local_files(&target), local_files(&s.src()));
    assert!(target.join("empty").is_dir(), "the empty directory is back");
    validate_json(&summary, "schema/summary.schema.json");
    let text = std::fs::read_to_string(&summary).unwrap();
    for d in DIRS {
        let (src, got) = (s.src().join(d), target.join(d));
        if keeps {
            assert_eq!(mode(&got), mode(&src), "mode of {d}");
            assert_eq!(mtime_ns(&got), mtime_ns(&src), "mtime of {d}");
            if as_root() {
                let (a, b) = (
                    std::fs::metadata(&got).unwrap(),
                    std::fs::metadata(&src).unwrap(),
                );
                assert_eq!((a.uid(), a.gid()), (b.uid(), b.gid()), "owner of {d}");
            }
        } else {
            // Nothing recorded: private, never wider than the source.
            assert_eq!(mode(&got), 0o700, "mode of {d}");
        }
    }
    if keeps {
        assert_eq!(summary_number(&text, "directories_restored"), 7, "{text}");
        assert_eq!(summary_number(&text, "directories_defaulted"), 0, "{text}");
    } else {
        assert_eq!(summary_number(&text, "directories_defaulted"), 7, "{text}");
        assert!(
            s.logtext().contains("7 directories have no recorded mode"),
            "{}",
            s.logtext()
        );
    }
    assert_eq!(summary_number(&text, "directory_markers"), 7, "{text}");
    assert_eq!(summary_number(&text, "metadata_warnings"), 0, "{text}");
}

#[test]
fn a_chmod_puts_only_that_marker_again_and_a_removed_directory_loses_its_marker() {
    let s = Scratch::new();
    s.write("a/f", b"f");
    s.write("b/g", b"g");
    std::fs::create_dir_all(s.src().join("c/d")).unwrap();
    for f in ["a/f", "b/g"] {
        set_mtime(&s.src().join(f), at(1_600_000_000 * NS));
    }
    let b = bucket("chmod");
    let keeps = markers_keep_metadata(&b);
    let u = url(&b, "p");
    wait_past_changes(&s.src(), &["a", "b", "c", "c/d"]);
    let o = sync(&s, &[], &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert_eq!(marker_keys(&b), ["p/a/", "p/b/", "p/c/", "p/c/d/"]);

    std::fs::set_permissions(s.src().join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let proxy = Proxy::start(2);
    let summary = s.dir.path().join("s.json");
    let o = command_via(&s, &proxy.endpoint())
        .arg(format!("--summaryFile={}", summary.display()))
        .arg(s.src())
        .arg(&u)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    let stats = proxy.finish();
    assert_eq!(stats.get("method_PUT"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("method_HEAD"), None, "{stats:?}");
    // The first run that put markers read one back and said whether the server dropped
    // their metadata (SeaweedFS), once, instead of leaving that to the day of a restore.
    let said = "The server kept no metadata on the directory marker";
    assert_eq!(
        s.logtext().matches(said).count(),
        usize::from(!keeps),
        "{}",
        s.logtext()
    );
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(summary_number(&text, "markers_put"), 1, "{text}");
    assert_eq!(last_uploaded(&s), 0);
    if keeps {
        let m = head(&b, "p/a/").metadata().cloned().unwrap();
        assert_eq!(m.get("mode").map(String::as_str), Some("040700"));
    }

    // A removed directory: its markers are deletes like a file's object, and count as such.
    std::fs::remove_dir_all(s.src().join("c")).unwrap();
    let o = sync(&s, &["--maxDeletes=1"], &u);
    assert_eq!(code(&o), 6, "{}\n{}", show(&o), s.logtext());
    assert!(
        s.logtext().contains("would delete 2 objects"),
        "{}",
        s.logtext()
    );
    assert_eq!(marker_keys(&b).len(), 4);
    let o = sync(&s, &[&format!("--summaryFile={}", summary.display())], &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert_eq!(marker_keys(&b), ["p/a/", "p/b/"]);
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(summary_number(&text, "markers_deleted"), 2, "{text}");
    assert_eq!(summary_number(&text, "deleted"), 0, "{text}");
    let o = sync(&s, &["-v"], &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
}

#[test]
fn a_bucket_without_markers_restores_private_directories_with_one_warning() {
    let s = Scratch::new();
    let b = bucket("nomarkers");
    put_object(&b, "p/etc/ssh/sshd_config", b"config");
    put_object(&b, "p/etc/hosts", b"hosts");
    put_object(&b, "p/top", b"top");
    let target = s.dir.path().join("t");
    let summary = s.dir.path().join("s.json");
    let o = restore(
        &s,
        &[&format!("--summaryFile={}", summary.display())],
        &target,
        &url(&b, "p"),
    );
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    for d in ["etc", "etc/ssh"] {
        assert_eq!(mode(&target.join(d)), 0o700, "{d}");
    }
    assert_eq!(mode(&target), 0o700, "the target the restore created");
    let log = s.logtext();
    // One WARNING for the directories, one for the files: owner only, both.
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no recorded mode"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings.iter().all(|w| w.contains("WARNING")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("2 directories")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("3 files")),
        "{warnings:?}"
    );
    for f in ["etc/ssh/sshd_config", "etc/hosts", "top"] {
        assert_eq!(mode(&target.join(f)) & 0o077, 0, "{f}");
    }
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(summary_number(&text, "directories_defaulted"), 2, "{text}");
    assert_eq!(summary_number(&text, "files_defaulted"), 3, "{text}");
}

#[test]
fn a_marker_beside_a_file_of_its_name_is_a_conflicting_key() {
    let s = Scratch::new();
    let b = bucket("conflict");
    put_object(&b, "p/x", b"a file named x");
    let both = rt().block_on(
        client()
            .put_object()
            .bucket(&b)
            .key("p/x/")
            .metadata("mode", "040755")
            .body(Vec::new().into())
            .send(),
    );
    if !on_moto() {
        // SeaweedFS keeps `x/` as a directory of its own namespace: a bucket of it cannot
        // hold both (the moto run checks the restore).
        let e = both.expect_err("SeaweedFS now stores a file and a directory of one name");
        assert_eq!(
            aws_sdk_s3::error::ProvideErrorMetadata::code(&e),
            Some("ExistingObjectIsFile")
        );
        return;
    }
    both.unwrap();
    put_object(&b, "p/y", b"y");
    let target = s.dir.path().join("t");
    let o = restore(&s, &[], &target, &url(&b, "p"));
    assert_eq!(code(&o), 6, "{}\n{}", show(&o), s.logtext());
    assert!(target.join("x").is_dir(), "the marker's directory is made");
    assert_eq!(std::fs::read(target.join("y")).unwrap(), b"y");
    assert!(
        s.logtext()
            .contains("other keys use this name as a directory"),
        "{}",
        s.logtext()
    );
}

#[test]
fn mtimes_after_2262_and_before_1970_go_up_and_come_back_exactly() {
    let s = Scratch::new();
    // 2400-01-01 (after i64 nanoseconds end in 2262; ext4 keeps times until 2446) and 1960.
    let cases: [(&str, i128, &str); 3] = [
        (
            "future",
            13_569_465_600 * NS + 123_456_789,
            "13569465600.123456789",
        ),
        (
            "past",
            -315_619_200 * NS + 500_000_001,
            "-315619199.499999999",
        ),
        ("d/deep", 14_000_000_000 * NS + 1, "14000000000.000000001"),
    ];
    for (rel, t, _) in cases {
        let p = s.write(rel, rel.as_bytes());
        set_mtime(&p, at(t));
    }
    let b = bucket("years");
    let u = url(&b, "p");
    let o = sync(&s, &[], &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    for (rel, _, text) in cases {
        let m = head(&b, &format!("p/{rel}")).metadata().cloned().unwrap();
        assert_eq!(m.get("mtime").map(String::as_str), Some(text), "{rel}");
    }
    let target = s.dir.path().join("t");
    let o = restore(&s, &[], &target, &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    for (rel, t, _) in cases {
        assert_eq!(mtime_ns(&target.join(rel)), t, "{rel}");
    }
    // A rerun sees the restored files as they are (no 2262 clamp making them differ).
    let o = restore(&s, &[], &target, &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert!(s.logtext().contains("0 files restored"), "{}", s.logtext());
}

#[test]
fn unusable_recorded_metadata_is_one_warning_per_object_and_a_count() {
    let s = Scratch::new();
    let b = bucket("junk");
    put_with(
        &b,
        "p/junk",
        b"junk",
        &[("mtime", "yesterday"), ("mode", "rw-r--r--"), ("uid", "-1")],
    );
    put_with(
        &b,
        "p/fine",
        b"fine",
        &[("mtime", "+7"), ("mode", "100600")],
    );
    let target = s.dir.path().join("t");
    let summary = s.dir.path().join("s.json");
    let o = restore(
        &s,
        &[&format!("--summaryFile={}", summary.display())],
        &target,
        &url(&b, "p"),
    );
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    let log = s.logtext();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("without all of its recorded metadata"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    for part in ["junk", "yesterday", "rw-r--r--", "uid \"-1\""] {
        assert!(warned[0].contains(part), "{}", warned[0]);
    }
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(summary_number(&text, "metadata_warnings"), 1, "{text}");
    // The junk object's file is there, with the object's LastModified and the default mode.
    assert_eq!(std::fs::read(target.join("junk")).unwrap(), b"junk");
    let lm = objects(&b)["p/junk"].last_modified.0;
    assert_eq!(mtime_ns(&target.join("junk")), i128::from(lm) * NS);
    assert_eq!(mtime_ns(&target.join("fine")), 7 * NS);
    assert_eq!(mode(&target.join("fine")), 0o600);
}

/// The original tool (CedarBackup3 through the AWS CLI), run with `args`.
fn original(s: &Scratch, args: &[&OsStr]) -> std::process::Output {
    let mut py = std::process::Command::new("python3");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            py.env_remove(k);
        }
    }
    py.envs(server().env.iter().map(|(k, v)| (k, v)))
        .env("HOME", s.home())
        .args([
            "-c",
            "import sys\nfrom CedarBackup3.tools.amazons3 import cli\nsys.exit(cli())",
        ])
        .args(args)
        .output()
        .expect("python3 with cedar-backup3 and awscli (pip install cedar-backup3 awscli)")
}

#[test]
fn switching_back_to_the_original_is_safe_with_markers_in_the_bucket() {
    let s = Scratch::new();
    // No empty file and no empty directory: the original fails on a zero-byte file.
    s.write("a.txt", b"alpha");
    s.write("dir/b.txt", b"bravo");
    s.write("dir/sub/c.txt", b"charlie");
    let b = bucket("switchback");
    let u = url(&b, "p");
    let o = sync(&s, &[], &u);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert_eq!(marker_keys(&b), ["p/dir/", "p/dir/sub/"]);
    let files: BTreeMap<String, Obj> = file_objects(&b);
    let log = s.dir.path().join("original.log");
    let o = original(
        &s,
        &[
            "-v".as_ref(),
            "-w".as_ref(),
            "-l".as_ref(),
            log.as_os_str(),
            s.src().as_os_str(),
            u.as_ref(),
        ],
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code(&o), 0, "the original's -v: {}\n{text}", show(&o));
    // Its sync: nothing lost but markers.
    let o = original(
        &s,
        &[
            "-w".as_ref(),
            "-l".as_ref(),
            log.as_os_str(),
            s.src().as_os_str(),
            u.as_ref(),
        ],
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code(&o), 0, "the original's sync: {}\n{text}", show(&o));
    let after = objects(&b);
    for (k, o) in &files {
        assert_eq!(after.get(k).map(|a| &a.etag), Some(&o.etag), "{k}");
    }
    assert!(
        after
            .keys()
            .all(|k| files.contains_key(k) || k.ends_with('/')),
        "{after:?}"
    );
}
