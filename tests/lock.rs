//! One run per target: the lock does not depend on the environment, overlapping prefixes
//! exclude each other, siblings do not, and a lock directory others could use is refused.
//! The first "run" is the test itself holding the lock through the library, so nothing
//! depends on timing.

mod common;

use std::os::unix::fs::PermissionsExt;

use cback3_s3sync::bucket_url::BucketUrl;
use cback3_s3sync::lock::{self, RunLock, Target};
use common::*;

/// Holds the lock a run on `s3://bucket/prefix` would take in the default directory (this
/// user's; the test process must not use /run/lock).
fn hold(bucket: &str, prefix: &str) -> RunLock {
    let u = BucketUrl::parse(&url(bucket, prefix)).unwrap();
    lock::acquire_in(
        &lock::lock_dir().unwrap(),
        &Target::new(Some(&server().endpoint), &u),
    )
    .unwrap()
}

fn sync(s: &Scratch, bucket: &str, prefix: &str) -> std::process::Output {
    run(s, [s.src().as_os_str(), url(bucket, prefix).as_ref()])
}

fn refused(o: &std::process::Output, want: &str) {
    assert_eq!(code(o), 6, "{}", show(o));
    let lines = stdout_lines(o);
    assert_eq!(lines.len(), 1, "one line on screen: {}", show(o));
    assert!(lines[0].contains(want), "want {want:?}: {}", show(o));
}

#[test]
fn a_run_in_another_environment_sees_the_held_lock() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockenv");
    let held = hold(&b, "p");
    // A cron job and a login shell differ in all of these; the lock must not.
    let elsewhere = s.dir.path().join("elsewhere");
    for d in ["home", "tmp", "run"] {
        std::fs::create_dir_all(elsewhere.join(d)).unwrap();
    }
    let o = command(&s)
        .env("HOME", elsewhere.join("home"))
        .env("TMPDIR", elsewhere.join("tmp"))
        .env("XDG_RUNTIME_DIR", elsewhere.join("run"))
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    refused(&o, &format!("another run is already syncing s3://{b}/p/"));
    assert!(objects(&b).is_empty(), "the refused run changed the bucket");
    drop(held);
    let o = sync(&s, &b, "p");
    assert_eq!(code(&o), 0, "{}", show(&o));
    // The default directory is the user's (the tests run as root: /run), never $HOME's.
    assert!(!elsewhere.join("home/.cache").exists());
}

#[test]
fn overlapping_prefixes_are_refused_both_ways_and_siblings_run() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockoverlap");
    let outer = hold(&b, "p");
    refused(
        &sync(&s, &b, "p/sub"),
        &format!("another run is already syncing s3://{b}/p/, which contains s3://{b}/p/sub/"),
    );
    drop(outer);
    let inner = hold(&b, "p/sub");
    refused(
        &sync(&s, &b, "p"),
        &format!("another run is already syncing s3://{b}/p/ or a prefix under it"),
    );
    refused(&sync(&s, &b, ""), "or a prefix under it");
    // A sibling shares only the ancestors, which are shared locks.
    let o = sync(&s, &b, "p/other");
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/other/", &s.src()), 1);
    assert!(objects(&b).keys().all(|k| k.starts_with("p/other/")));
    drop(inner);
    let o = sync(&s, &b, "p/sub");
    assert_eq!(code(&o), 0, "{}", show(&o));
}

#[test]
fn lock_directories_others_could_use_are_refused() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockdir");
    let open = s.dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let theirs = s.dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    for (dir, want) in [
        (&open, "writable by group or others"),
        (&theirs, "belongs to user id 65534"),
    ] {
        let o = command(&s)
            .env(lock::LOCK_DIR_ENV, dir)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap();
        refused(&o, want);
        assert!(std::fs::read_dir(dir).unwrap().next().is_none());
    }
    assert!(objects(&b).is_empty());
}

#[test]
fn spellings_of_one_endpoint_and_bucket_case_are_one_target() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockspell");
    let held = hold(&b, "p");
    let port = server().endpoint.rsplit(':').next().unwrap().to_string();
    for endpoint in [
        format!("http://127.0.0.1:{port}/"),
        format!("HTTP://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        // Reach the same server: the resolver reads `127.1` as 127.0.0.1, and connecting to
        // the unspecified address or IPv4-mapped loopback reaches this host.
        format!("http://127.1:{port}"),
        format!("http://0.0.0.0:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
    ] {
        let o = command_via(&s, &endpoint)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap();
        refused(&o, "another run is already syncing");
    }
    // The refusal comes before any request, so the bucket need not exist in this case.
    let upper = run(
        &s,
        [s.src().as_os_str(), url(&b.to_uppercase(), "p").as_ref()],
    );
    refused(&upper, "another run is already syncing");
    assert!(objects(&b).is_empty(), "a refused run changed the bucket");
    drop(held);
    let o = command_via(&s, &format!("http://localhost:{port}/"))
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    // The numeric spellings do reach the server the lock protects. (moto takes a Host such
    // as `127.1` for a virtual-hosted bucket name, so only the lock half above runs there.)
    if on_moto() {
        return;
    }
    for endpoint in [
        format!("http://127.1:{port}"),
        format!("http://0.0.0.0:{port}"),
    ] {
        let o = command_via(&s, &endpoint)
            .args(["-v", s.src().to_str().unwrap(), &url(&b, "p")])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{endpoint}: {}", show(&o));
    }
}

#[test]
fn a_restore_and_a_sync_of_one_prefix_never_overlap() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockrestore");
    let o = sync(&s, &b, "p");
    assert_eq!(code(&o), 0, "{}", show(&o));
    let target = s.dir.path().join("restored");
    let restore = |prefix: &str| {
        command(&s)
            .arg("--restore")
            .args([target.as_os_str(), url(&b, prefix).as_ref()])
            .output()
            .unwrap()
    };
    // A sync of the prefix, of an enclosing one or of one inside it is running.
    for held_prefix in ["p", "", "p/sub"] {
        let held = hold(&b, held_prefix);
        let o = restore("p");
        assert_eq!(code(&o), 6, "{}", show(&o));
        assert!(
            s.logtext().contains("another run is already syncing"),
            "{}",
            show(&o)
        );
        assert!(
            !target.join("a.txt").exists(),
            "restored under a running sync"
        );
        drop(held);
    }
    let o = restore("p");
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"a");
}

/// A tmpfs mounted on a directory of the scratch area for the life of the value (the tests
/// run as root, as `lock_directories_others_could_use_are_refused` needs too).
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &std::path::Path, options: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount: {}", show(&o));
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_lock_directory_on_a_read_only_or_full_filesystem_is_one_line() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockro");
    let ro = s.dir.path().join("ro");
    let _ro = Mount::tmpfs(&ro, "ro,mode=700");
    // No inode left: the lock directory cannot be created.
    let full = s.dir.path().join("full");
    let _full = Mount::tmpfs(&full, "mode=700,nr_inodes=1");
    for (dir, want) in [
        (ro.clone(), "cannot open the run lock"),
        (ro.join("locks"), "Read-only file system"),
        (full.join("locks"), "No space left on device"),
    ] {
        let o = command(&s)
            .env(lock::LOCK_DIR_ENV, &dir)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap();
        refused(&o, want);
    }
    assert!(objects(&b).is_empty());
}

/// A lock file removed (a cleaner of `~/.cache`, an `rm`) or replaced while a run held it let
/// the next run lock a new file at that path: two runs changed one prefix at once, the first
/// deleting with its older view. The holder now checks its files before uploads and deletes.
#[test]
fn a_lock_file_removed_under_a_run_stops_it_before_any_delete() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("locklost");
    let locks = s.dir.path().join("locks");
    let o = command(&s)
        .env(lock::LOCK_DIR_ENV, &locks)
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    // Uploaded meanwhile by the run that took the new lock, for a file the first run never saw.
    put_object(&b, "p/new.txt", b"new");
    s.write("b.txt", b"b");

    let proxy = Proxy::start(3);
    proxy.set(r#"{"fault_rate": 1, "faults": ["stall"], "fault_methods": ["GET"], "stall_s": 30}"#);
    let child = command_via(&s, &proxy.endpoint())
        .env(lock::LOCK_DIR_ENV, &locks)
        .env("CBACK3_RESPONSE_TIMEOUT", "1")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_walk_and_stalled_listing(&s, &proxy);
    let mut removed = 0;
    for f in std::fs::read_dir(&locks).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
        removed += 1;
    }
    // The bucket root's and p/'s, of this endpoint (the proxy) and of the first run's.
    assert_eq!(removed, 4);
    // What the next run would do: it gets the lock, since the held file is gone.
    let _next = lock::acquire_in(
        &locks,
        &Target::new(
            Some(&proxy.endpoint()),
            &BucketUrl::parse(&url(&b, "p")).unwrap(),
        ),
    )
    .unwrap();
    proxy.set(r#"{"fault_rate": 0}"#);
    let o = wait_bounded(child, std::time::Duration::from_secs(60));
    refused(&o, "was removed or replaced while this run held it");
    let keys = objects(&b);
    assert!(keys.contains_key("p/new.txt"), "deleted under a lost lock");
    assert!(!keys.contains_key("p/b.txt"), "uploaded under a lost lock");
}

/// A directory owned by `nobody` (0700) under the scratch area.
fn nobody_dir(s: &Scratch, name: &str) -> std::path::PathBuf {
    let d = s.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// `base` (the scratch environment, through `endpoint`) run as `nobody` with its own HOME,
/// its own lock directory and its own logfile `log` (the same shared lock directory).
fn as_nobody(s: &Scratch, endpoint: &str, log: &std::path::Path) -> std::process::Command {
    for d in [s.dir.path(), &s.src()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
    for (k, v) in command_via(s, endpoint).get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("HOME", nobody_dir(s, "nobody-home"))
        .env(lock::LOCK_DIR_ENV, nobody_dir(s, "nobody-locks"))
        .arg("-l")
        .arg(log);
    c
}

/// Runs until `log` shows the walk done and `proxy` holds its listing: the run holds its lock.
fn wait_until_held(log: &std::path::Path, proxy: &Proxy) {
    poll_until(
        "the run to take its lock and stall in its listing",
        std::time::Duration::from_secs(30),
        || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains("Completed checking source filename encoding")
                && proxy.stats().get("stall").is_some_and(|n| *n >= 1)
        },
    );
}

/// Root's cron run and an administrator's run as himself (his own credentials, his own
/// private lock directory) on one target ran at once, the older view deleting the other's
/// new objects. Both now also lock in the shared directory: whichever starts second stops.
#[test]
fn runs_of_root_and_of_another_user_on_one_target_exclude_each_other() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockusers");
    let stall =
        r#"{"fault_rate": 1, "faults": ["stall"], "fault_methods": ["GET"], "stall_s": 30}"#;
    let nobody_log = s.dir.path().join("nobody.log");
    std::fs::write(&nobody_log, b"").unwrap();
    std::fs::set_permissions(&nobody_log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let args = |c: &mut std::process::Command| {
        c.env("CBACK3_RESPONSE_TIMEOUT", "1")
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    };

    // Root's run holds the lock; nobody's, on the same target (the same endpoint), stops.
    let proxy = Proxy::start(5);
    proxy.set(stall);
    let mut root = command_via(&s, &proxy.endpoint());
    args(&mut root);
    let root = root.spawn().unwrap();
    wait_until_held(&s.log(), &proxy);
    let mut other = as_nobody(&s, &proxy.endpoint(), &nobody_log);
    args(&mut other);
    let o = other.output().unwrap();
    refused(&o, &format!("another run is already syncing s3://{b}/p/"));
    proxy.set(r#"{"fault_rate": 0}"#);
    let o = wait_bounded(root, std::time::Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 1);

    // The other way round: nobody's run holds it, root's (on an enclosing prefix) stops.
    s.write("b.txt", b"b");
    proxy.set(stall);
    let mut other = as_nobody(&s, &proxy.endpoint(), &nobody_log);
    args(&mut other);
    let other = other.spawn().unwrap();
    wait_until_held(&nobody_log, &proxy);
    let o = command_via(&s, &proxy.endpoint())
        .args([s.src().as_os_str(), url(&b, "").as_ref()])
        .output()
        .unwrap();
    refused(
        &o,
        &format!("another run is already syncing s3://{b}/ or a prefix under it"),
    );
    assert!(!objects(&b).contains_key("p/b.txt"));
    proxy.set(r#"{"fault_rate": 0}"#);
    let o = wait_bounded(other, std::time::Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 2);
}

/// The shared directory is best effort against what another user can do to a name in it: a
/// lock file made unreadable, or a symlink, only removes the exclusion of other users' runs.
#[test]
fn a_shared_lock_file_another_user_made_unusable_does_not_stop_a_run() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockunusable");
    let shared = s.shared_locks();
    // `-D` says which shared directory runs use.
    let o = command(&s).arg("-D").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.lines().any(|l| l.contains("Shared locks")
            && l.contains(shared.to_str().unwrap())
            && l.contains("(in use")),
        "{out}"
    );
    // A first run creates the shared files readable by everyone, whatever its umask.
    let mut c = command(&s);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let o = c
        .args(["-d", s.src().to_str().unwrap(), &url(&b, "p")])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        s.logtext()
            .contains("Run lock also taken in the shared directory"),
        "{}",
        s.logtext()
    );
    let files: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "the bucket root's and p/'s: {files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(lock::SHARED_NAME_PREFIX), "{name}");
        assert_eq!(
            std::fs::metadata(f).unwrap().mode() & 0o7777,
            0o644,
            "{name}"
        );
    }
    // Root makes them unreadable: nobody's run goes on with its own lock only.
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    s.write("b.txt", b"b");
    let nobody_log = s.dir.path().join("nobody.log");
    std::fs::write(&nobody_log, b"").unwrap();
    std::fs::set_permissions(&nobody_log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = as_nobody(&s, &server().endpoint, &nobody_log)
        .args(["-d", s.src().to_str().unwrap(), &url(&b, "p")])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let log = std::fs::read_to_string(&nobody_log).unwrap();
    assert!(
        log.contains("[DEBUG") && log.contains("not used") && log.contains("Permission denied"),
        "{log}"
    );
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 2);
    // Nobody replaces them with symlinks: root's run does not follow them and goes on.
    for f in &files {
        std::fs::remove_file(f).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", f).unwrap();
        std::os::unix::fs::lchown(f, Some(65534), Some(65534)).unwrap();
    }
    s.write("c.txt", b"c");
    let o = run(&s, ["-d", s.src().to_str().unwrap(), &url(&b, "p")]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(s.logtext().contains("not used"), "{}", s.logtext());
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 3);
    assert!(files.iter().all(|f| f.is_symlink()));
}
