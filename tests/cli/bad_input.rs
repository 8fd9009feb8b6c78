//! Bad input: each case gives a clear message, the documented exit code, and leaves the
//! bucket (and the source) as it was.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// A bucket holding `p/keep` (which has a local file) and `p/stale` (which has none).
fn prepared(s: &Scratch, tag: &str) -> (String, BTreeMap<String, Obj>) {
    s.write("keep", b"k");
    let b = bucket(tag);
    let o = run(s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    put_object(&b, "p/stale", b"no local file");
    let before = objects(&b);
    (b, before)
}

fn one_line(o: &std::process::Output, want: &str) {
    let lines = stdout_lines(o);
    assert_eq!(lines.len(), 1, "one line on screen: {}", show(o));
    assert!(lines[0].contains(want), "want {want:?}: {}", show(o));
}

#[test]
fn bad_sources_and_urls() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "badsrc");
    let file = s.src().join("keep");
    let missing = s.dir.path().join("missing");
    let u = url(&b, "p");
    let cases: [(&std::path::Path, &str, &str); 6] = [
        (&missing, &u, "does not exist"),
        (&file, &u, "is not a directory"),
        (&s.src(), "s3:/b/p", "s3://"),
        (&s.src(), "http://b/p", "s3://"),
        (&s.src(), "s3://x/p", "invalid bucket name"),
        (&s.src(), "s3://", "no bucket name"),
    ];
    for (src, u, want) in cases {
        let o = run(&s, [src.as_os_str(), u.as_ref()]);
        assert_eq!(code(&o), 6, "{u}: {}", show(&o));
        one_line(&o, want);
    }
    assert_eq!(objects(&b), before);
}

/// Runs the binary as `nobody` (who can read everything in the scratch tree but what the
/// caller locked) with the scratch environment, syncing to `s3://b/p`.
fn run_as_nobody(s: &Scratch, b: &str) -> std::process::Output {
    for d in [s.dir.path(), &s.src(), &s.home()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(s.log(), b"").unwrap();
    std::fs::set_permissions(s.log(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
    let probe = command(s);
    for (k, v) in probe.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    // nobody's home (/nonexistent) cannot hold its run lock: give it a directory of its own.
    let locks = s.dir.path().join("locks");
    std::fs::create_dir(&locks).unwrap();
    std::os::unix::fs::chown(&locks, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o700)).unwrap();
    c.env(cback3_s3sync::lock::LOCK_DIR_ENV, &locks);
    c.arg("-l")
        .arg(s.log())
        .args([s.src().as_os_str(), url(b, "p").as_ref()])
        .output()
        .unwrap()
}

fn assert_unchanged(b: &str, before: &BTreeMap<String, Obj>) -> BTreeMap<String, Obj> {
    let after = objects(b);
    for (k, v) in before {
        assert_eq!(after.get(k), Some(v), "{k} changed");
    }
    after
}

/// The guard between uploads and deletes: a directory that cannot be read means the run does
/// not know what is in it, so it deletes nothing, although every upload succeeded.
#[test]
fn an_unreadable_directory_blocks_deletes() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "unreadable");
    s.write("open/ok.txt", b"readable");
    s.write("secret/inner.txt", b"unreadable directory");
    for f in ["keep", "open/ok.txt"] {
        std::fs::set_permissions(s.src().join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(s.src().join("open"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        s.src().join("secret"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let o = run_as_nobody(&s, &b);
    assert_eq!(code(&o), 6, "{}\n{}", show(&o), s.logtext());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("secret"), "{out}");
    // The uploads ran and succeeded: it is the guard, not an upload failure, that stopped it.
    assert!(!s.logtext().contains("Failed to upload"), "{}", s.logtext());
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains("1 paths could not be read; nothing was deleted."),
        "{out}"
    );
    let after = assert_unchanged(&b, &before);
    assert_eq!(get_object(&b, "p/open/ok.txt"), b"readable");
    assert!(
        after.contains_key("p/stale"),
        "the guard let a delete through"
    );
}

/// A file that can be listed but not read fails its upload; the run deletes nothing.
#[test]
fn an_unreadable_file_fails_its_upload_and_deletes_nothing() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "unreadablefile");
    s.write("locked.txt", b"unreadable file");
    std::fs::set_permissions(s.src().join("keep"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        s.src().join("locked.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let o = run_as_nobody(&s, &b);
    assert_eq!(code(&o), 6, "{}\n{}", show(&o), s.logtext());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("locked.txt"), "{out}");
    assert!(
        out.lines().last().unwrap().contains("nothing was deleted"),
        "{out}"
    );
    let after = assert_unchanged(&b, &before);
    assert!(!after.contains_key("p/locked.txt"));
}

#[test]
fn keys_over_1024_bytes_stop_the_run_unless_w() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "longkey");
    let long = format!(
        "{}/{}/{}/{}/{}",
        "a".repeat(250),
        "b".repeat(250),
        "c".repeat(250),
        "d".repeat(250),
        "e".repeat(30)
    );
    s.write(&long, b"deep");
    s.write("new.txt", b"fine");
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 6, "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("over S3's limit of 1024"), "{out}");
    assert!(
        out.lines().last().unwrap().contains("nothing was uploaded"),
        "{out}"
    );
    assert_eq!(objects(&b), before);
    let o = run(
        &s,
        ["-w".as_ref(), s.src().as_os_str(), url(&b, "p").as_ref()],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    let keys: Vec<String> = file_objects(&b).into_keys().collect();
    assert_eq!(keys, ["p/keep", "p/new.txt"]);
}

#[test]
fn missing_bucket_access_denied_and_credentials() {
    needs_seaweedfs("a read-only identity and unknown key ids");
    let s = Scratch::new();
    let (b, before) = prepared(&s, "denied");
    s.write("new.txt", b"new");
    // Missing bucket.
    let o = run(
        &s,
        [
            s.src().as_os_str(),
            "s3://no-such-bucket-anywhere/p".as_ref(),
        ],
    );
    assert_eq!(code(&o), 6, "{}", show(&o));
    one_line(&o, "NoSuchBucket");
    // An identity that may list but not write: the upload fails, nothing is deleted.
    let o = command(&s)
        .env("AWS_ACCESS_KEY_ID", "AKREADONLY")
        .env("AWS_SECRET_ACCESS_KEY", "SKREADONLY-secret")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("AccessDenied"), "{out}");
    assert!(
        out.lines().last().unwrap().contains("nothing was deleted"),
        "{out}"
    );
    assert_eq!(objects(&b), before);
    // Unknown key id.
    let o = command(&s)
        .env("AWS_ACCESS_KEY_ID", "AKNOBODY")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert_eq!(stdout_lines(&o).len(), 1, "{}", show(&o));
    // No credentials at all (empty HOME, metadata service disabled): fails at once.
    let started = Instant::now();
    let o = command(&s)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    one_line(&o, "credentials");
    assert_eq!(objects(&b), before);
}

#[test]
fn logfile_in_a_missing_directory_is_exit_3() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "logdir");
    s.write("new.txt", b"new");
    let o = command(&s)
        .arg("-l")
        .arg(s.dir.path().join("no/such/dir/x.log"))
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no/such/dir/x.log"), "{err}");
    assert_eq!(objects(&b), before);
}

/// Grows or shrinks a large file while its multipart upload is in flight.
fn changed_during_upload(grow: bool) {
    let s = Scratch::new();
    let b = bucket(if grow { "grow" } else { "shrink" });
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 241) as u8).collect();
    let big = s.src().join("big.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        for _ in 0..64 {
            f.write_all(&chunk).unwrap();
        }
    }
    let child = command(&s)
        .args(["--maxConcurrency", "1"])
        .arg(s.src())
        .arg(url(&b, "p"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    poll_until(
        "the multipart upload to start",
        Duration::from_secs(60),
        || !open_uploads(&b).is_empty(),
    );
    {
        use std::io::Write;
        let f = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
        if grow {
            (&f).write_all(b"appended while uploading").unwrap();
        } else {
            f.set_len(20 * 1024 * 1024).unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    // The same run notices the change, uploads the new version and verifies that one.
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert!(
        s.logtext()
            .contains("big.bin changed while it was being uploaded (attempt 1 of 3)"),
        "{}",
        s.logtext()
    );
    assert_eq!(open_uploads(&b), Vec::<String>::new());
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 1);
    // Nothing is left for the next run.
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 0, "{}", s.logtext());
}

#[test]
fn a_file_that_grows_during_its_upload_is_uploaded_again_in_the_same_run() {
    changed_during_upload(true);
}

#[test]
fn a_file_that_shrinks_during_its_upload_is_uploaded_again_in_the_same_run() {
    changed_during_upload(false);
}

#[test]
fn symlink_loops_are_skipped_with_a_warning() {
    let s = Scratch::new();
    s.write("d/a.txt", b"a");
    std::os::unix::fs::symlink(s.src(), s.src().join("d/loop")).unwrap();
    std::os::unix::fs::symlink(s.src().join("d"), s.src().join("d/self")).unwrap();
    let b = bucket("loops");
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let keys: Vec<String> = objects(&b).into_keys().collect();
    // The files' object and the marker of `d`; the loops have neither.
    assert_eq!(keys, ["p/d/", "p/d/a.txt"]);
    let warnings = s
        .logtext()
        .lines()
        .filter(|l| l.contains("[WARNING") && l.contains("symlink loop"))
        .count();
    assert_eq!(warnings, 2, "{}", s.logtext());
}

#[test]
fn a_second_run_on_the_same_prefix_is_refused_while_one_runs() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "lock");
    s.write("new.txt", b"new");
    let target = cback3_s3sync::bucket_url::BucketUrl::parse(&url(&b, "p/")).unwrap();
    let target = cback3_s3sync::lock::Target::new(Some(&server().endpoint), &target);
    // The lock a run of this user would take.
    let held = cback3_s3sync::lock::acquire_in(&cback3_s3sync::lock::lock_dir().unwrap(), &target)
        .unwrap();
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 6, "{}", show(&o));
    one_line(&o, "another run is already syncing");
    assert_eq!(objects(&b), before);
    // Verifying changes nothing, so it needs no lock (and reports the missing file).
    let o = run(
        &s,
        ["-v".as_ref(), s.src().as_os_str(), url(&b, "p").as_ref()],
    );
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("new.txt"));
    // Another prefix of the same bucket is not blocked.
    let o = run(
        &s,
        ["-u".as_ref(), s.src().as_os_str(), url(&b, "q").as_ref()],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    drop(held);
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 2);
}

#[test]
fn out_of_range_values_are_usage_errors_not_panics() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "ranges");
    s.write("new.txt", b"new");
    let u = url(&b, "p");
    // 2^61 is tokio's semaphore limit: it used to panic (exit 101).
    for (args, want) in [
        (
            &["--maxConcurrency", "2305843009213693952"][..],
            "--maxConcurrency needs a whole number from 1 to 1000",
        ),
        (&["--maxConcurrency", "1001"], "from 1 to 1000"),
        (
            &["--maxConcurrency", "18446744073709551616"],
            "from 1 to 1000",
        ),
        (&["--maxConcurrency", "0"], "from 1 to 1000"),
        (
            &["--maxDeletes", "18446744073709551616"],
            "--maxDeletes needs a whole number",
        ),
        (&["--maxDeletes", "-1"], "--maxDeletes needs a whole number"),
        (&["-m", "77777777777"], "octal number"),
    ] {
        let o = command(&s)
            .args(args)
            .args([s.src().as_os_str(), u.as_ref()])
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "{args:?}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains(want), "{args:?}: {}", show(&o));
    }
    assert_eq!(objects(&b), before);
    // The largest value runs.
    let o = command(&s)
        .args(["-u", "--maxConcurrency", "1000"])
        .args([s.src().as_os_str(), u.as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
}

#[test]
fn urls_with_empty_or_dot_segments_are_refused() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "segments");
    s.write("new.txt", b"new");
    for u in [
        format!("s3://{b}//p"),
        format!("s3://{b}/p//q"),
        format!("s3://{b}/p//"),
        format!("s3://{b}//"),
        format!("s3://{b}/q/../p"),
    ] {
        let o = run(&s, [s.src().as_os_str(), u.as_ref()]);
        assert_eq!(code(&o), 6, "{u}: {}", show(&o));
        one_line(&o, "empty, '.' or '..' path segment");
    }
    assert_eq!(objects(&b), before);
}

#[test]
fn credential_and_transport_errors_are_one_short_line() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let u = "s3://some-bucket/p";
    let no_profile = || {
        let mut c = command(&s);
        c.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_REGION")
            .env("AWS_PROFILE", "foo");
        c
    };
    let o = no_profile()
        .args([s.src().as_os_str(), u.as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    one_line(
        &o,
        "no credentials: profile `foo` named by AWS_PROFILE is not in ~/.aws/config or ~/.aws/credentials",
    );
    assert!(stdout_lines(&o)[0].len() < 200, "{}", show(&o));
    // -s shows the whole chain; -d keeps it in the logfile.
    let o = no_profile()
        .args(["-s", "-d"])
        .args([s.src().as_os_str(), u.as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("DispatchFailure"),
        "{}",
        show(&o)
    );
    assert!(
        s.logtext().contains("[DEBUG  ] ListObjectsV2"),
        "{}",
        s.logtext()
    );
    // Nothing listens: what failed, in a few words.
    let o = command_via(&s, &format!("http://127.0.0.1:{}", closed_port()))
        .env("AWS_MAX_ATTEMPTS", "1")
        .args([s.src().as_os_str(), u.as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    one_line(&o, "cannot reach the endpoint: Connection refused");
    assert!(stdout_lines(&o)[0].len() < 200, "{}", show(&o));
}

#[test]
fn a_logfile_that_refuses_writes_is_exit_3_before_anything_is_done() {
    let s = Scratch::new();
    let (b, before) = prepared(&s, "devfull");
    s.write("new.txt", b"new");
    let o = command(&s)
        .args(["-q", "-l", "/dev/full"])
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Error setting up logging: cannot write to logfile /dev/full"),
        "{err}"
    );
    assert_eq!(objects(&b), before);
}
