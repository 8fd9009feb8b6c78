//! One run per target and user: the lock does not depend on the environment, overlapping
//! prefixes exclude each other, siblings do not, a lock directory others could use is
//! refused, no other user can stop a run, and a user without a writable home can run. The
//! first "run" is the test itself holding the lock through the library, or a run stalled in
//! its listing by the proxy, so nothing depends on timing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Child;

use crate::common::*;
use cback3_s3sync::bucket_url::BucketUrl;
use cback3_s3sync::lock::{self, RunLock, Target};

/// Holds the lock a run on `s3://bucket/prefix` would take in this user's directory.
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
        (ro.clone(), "Read-only file system"),
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
fn nobody_dir(s: &Scratch, name: &str) -> PathBuf {
    let d = s.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// The binary run as `nobody` (the scratch environment, through `endpoint`) with its logfile
/// `log`, as cron runs it: HOME is its home in the password database, `/nonexistent`.
/// With `read_only_home`, in a mount namespace of its own where the password database gives
/// it that home instead: its own, with the lock directory of earlier runs in it, mounted
/// read-only.
fn as_nobody(
    s: &Scratch,
    endpoint: &str,
    log: &Path,
    read_only_home: Option<&Path>,
) -> std::process::Command {
    for d in [s.dir.path(), &s.src()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if !log.exists() {
        std::fs::write(log, b"").unwrap();
        std::fs::set_permissions(log, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups", BIN];
    let mut c = match read_only_home {
        None => std::process::Command::new("setpriv"),
        Some(home) => {
            let locks = home.join(".cache/cback3-s3sync/locks");
            std::fs::create_dir_all(&locks).unwrap();
            for d in [
                home,
                &home.join(".cache"),
                &home.join(".cache/cback3-s3sync"),
                &locks,
            ] {
                std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
            let passwd: String = std::fs::read_to_string("/etc/passwd")
                .unwrap()
                .lines()
                .map(|l| match l.strip_prefix("nobody:") {
                    Some(rest) => {
                        let mut f: Vec<&str> = rest.split(':').collect();
                        f[4] = home.to_str().unwrap();
                        format!("nobody:{}\n", f.join(":"))
                    }
                    None => format!("{l}\n"),
                })
                .collect();
            let file = s.dir.path().join("passwd");
            std::fs::write(&file, passwd).unwrap();
            let script = [
                r#"mount --bind "$1" /etc/passwd"#,
                r#"mount --bind "$2" "$2""#,
                r#"mount -o remount,bind,ro "$2""#,
                r#"shift 2"#,
                r#"exec setpriv "$@""#,
            ];
            let mut c = std::process::Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(script.join(" && "))
                .arg("sh")
                .args([&file, home]);
            c
        }
    };
    c.args(nobody);
    for (k, v) in command_via(s, endpoint).get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("HOME", "/nonexistent").arg("-l").arg(log);
    c
}

/// Paths removed (files, or directories with their content) when the value is dropped.
struct Removed(Vec<PathBuf>);

impl Drop for Removed {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

/// Where runs before issue 17 also locked a target's prefix, for every user: in `/run/lock`
/// (world-writable), named after the endpoint, the bucket and the prefix (FNV-1a).
fn run_lock_file(endpoint: &str, bucket: &str, prefix: &str) -> PathBuf {
    let h = format!("{endpoint}\0{bucket}\0{prefix}\0")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    PathBuf::from(format!("/run/lock/cback3-s3sync-{bucket}-{h:016x}.lock"))
}

/// Blocks the proxy's GETs (the listing) until [`unstall`].
fn stall(proxy: &Proxy) {
    proxy.set(r#"{"fault_rate": 1, "faults": ["stall"], "fault_methods": ["GET"], "stall_s": 30}"#);
}

fn unstall(proxy: &Proxy) {
    proxy.set(r#"{"fault_rate": 0}"#);
}

/// Starts `c` on `s3://b/p/` and returns once its listing stalls in `proxy` (set to stall):
/// it holds its lock then.
fn started_and_holding(c: &mut std::process::Command, b: &str, proxy: &Proxy) -> Child {
    let before = proxy.stats().get("stall").copied().unwrap_or(0);
    let child = c
        .env("CBACK3_RESPONSE_TIMEOUT", "1")
        .arg(url(b, "p"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    poll_until(
        "the run to take its lock and stall in its listing",
        std::time::Duration::from_secs(30),
        || proxy.stats().get("stall").is_some_and(|n| *n > before),
    );
    child
}

/// Any local user could make root's runs exit 6, every night: by holding the lock file its
/// runs also took in world-writable `/run/lock` (or the bucket root's, which stops every
/// prefix), or by making it and removing it during root's run. Root's runs lock only in
/// their own directory now.
#[test]
fn another_user_cannot_stop_roots_runs_through_run_lock() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockothers");
    let proxy = Proxy::start(7);
    let endpoint = proxy.endpoint();
    let files = vec![
        run_lock_file(&endpoint, &b, ""),
        run_lock_file(&endpoint, &b, "p/"),
    ];
    let _removed = Removed(files.clone());
    // `nobody` makes the files (0644: root's runs could open them), and they are held (by
    // the test process: who holds a flock does not matter to the runs it stops).
    let as_nobody = |tool: &str| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", tool]);
        c.args(&files);
        assert!(c.status().unwrap().success());
    };
    as_nobody("touch");
    let held: Vec<std::fs::File> = files
        .iter()
        .map(|f| {
            assert_eq!(std::fs::metadata(f).unwrap().uid(), 65534);
            let h = std::fs::File::open(f).unwrap();
            h.try_lock().unwrap();
            h
        })
        .collect();
    let o = command_via(&s, &endpoint)
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 1);
    let target = s.dir.path().join("restored");
    let o = command_via(&s, &endpoint)
        .arg("--restore")
        .args([target.as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"a");
    drop(held);

    // Made by `nobody` before root's run and removed during it (its own files, so the sticky
    // bit let it): that run went on to fail before its deletes.
    put_object(&b, "p/gone.txt", b"no local file: deleted by a full sync");
    s.write("b.txt", b"b");
    stall(&proxy);
    let mut c = command_via(&s, &endpoint);
    c.arg(s.src());
    let root = started_and_holding(&mut c, &b, &proxy);
    as_nobody("rm");
    assert!(files.iter().all(|f| !f.exists()));
    unstall(&proxy);
    let o = wait_bounded(root, std::time::Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 2);
}

/// A user whose home is missing (`nobody`, `/nonexistent`) or read-only could not run at all
/// ("cannot use the lock directory"). Its runs now lock in directories of its own under
/// /var/tmp, which another user cannot make for it, and still exclude each other.
#[test]
fn a_user_without_a_writable_home_runs_and_its_runs_exclude_each_other() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("lockhomeless");
    assert!(
        !lock::passwd_home(65534).unwrap().exists(),
        "nobody has a home"
    );
    let proxy = Proxy::start(11);
    let endpoint = proxy.endpoint();
    // Another user (root, here) made the names nobody's runs could have used: the plain
    // one, and one of the pattern, open to all, where the target's lock is held.
    let squatted = vec![
        PathBuf::from("/var/tmp/cback3-s3sync-65534"),
        PathBuf::from(format!("/var/tmp/cback3-s3sync-65534.{b}")),
    ];
    let _removed = Removed(squatted.clone());
    for d in &squatted {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let u = BucketUrl::parse(&url(&b, "p")).unwrap();
    let _held = lock::acquire_in(&squatted[1], &Target::new(Some(&endpoint), &u)).unwrap();
    let log = s.dir.path().join("nobody.log");
    let ro_home = s.dir.path().join("ro-home");
    let nobody = |ro: bool| as_nobody(&s, &endpoint, &log, ro.then_some(ro_home.as_path()));

    let o = nobody(false)
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 1);
    let target = nobody_dir(&s, "nobody-out").join("restored");
    let o = nobody(false)
        .arg("--restore")
        .args([target.as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"a");
    // `-D` names the directory: nobody's own, in /var/tmp, not one of the squatted names.
    let o = nobody(false).arg("-D").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out.lines().find(|l| l.contains("Lock directory")).unwrap();
    let dir = line.rsplit(' ').next().unwrap();
    assert!(dir.starts_with("/var/tmp/cback3-s3sync-65534."), "{out}");
    assert!(squatted.iter().all(|d| d.to_str() != Some(dir)), "{out}");
    let meta = std::fs::symlink_metadata(dir).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o700));

    // One of nobody's runs holds the lock: its others stop, with the home missing or
    // read-only.
    s.write("b.txt", b"b");
    stall(&proxy);
    let mut c = nobody(false);
    c.arg(s.src());
    let first = started_and_holding(&mut c, &b, &proxy);
    for ro in [false, true] {
        let o = nobody(ro)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap();
        refused(&o, &format!("another run is already syncing s3://{b}/p/"));
    }
    unstall(&proxy);
    let o = wait_bounded(first, std::time::Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 2);
    // With the read-only home alone, the run goes through.
    s.write("c.txt", b"c");
    let o = nobody(true)
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 3);
}
