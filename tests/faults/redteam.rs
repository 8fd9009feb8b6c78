//! Red-team findings after the field hardening: each test is one class of fault that the
//! merged tool still had, against the real server (and tests/s3proxy.py where timing matters).

use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// `--verifyContent` hashed each file through a blocking `open`: a FIFO put in the place of a
/// walked file hung the run for ever (no writer ever comes), with `-v` as in a sync run.
#[test]
fn verify_content_never_blocks_on_a_fifo_that_replaced_a_walked_file() {
    let s = Scratch::new();
    let bucket = bucket("rt-vc-fifo");
    let victim = s.write("victim.txt", b"a regular file at walk time");
    s.write("other.txt", b"other");
    let o = run(&s, [s.src().to_str().unwrap(), &url(&bucket, "p")]);
    assert_eq!(code(&o), 0, "{}", show(&o));

    let proxy = Proxy::start(1);
    // The listing (a GET) is held until the walk is done and the file is replaced.
    proxy.set(r#"{"fault_rate": 1, "faults": ["stall"], "fault_methods": ["GET"], "stall_s": 30}"#);
    let child = command_via(&s, &proxy.endpoint())
        .env("CBACK3_RESPONSE_TIMEOUT", "1")
        .args([
            "-v",
            "--verifyContent",
            s.src().to_str().unwrap(),
            &url(&bucket, "p"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_walk_and_stalled_listing(&s, &proxy);
    std::fs::remove_file(&victim).unwrap();
    mkfifo(&victim);
    proxy.set(r#"{"fault_rate": 0}"#);
    let out = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(code(&out), 6, "{}", show(&out));
    let log = s.logtext();
    assert!(
        log.lines()
            .any(|l| l.contains("Cannot verify the content of [victim.txt]")
                && l.contains("no longer a regular file")),
        "{log}"
    );
}

/// SIGTERM during the walk waited for the whole tree to be walked (seconds for 10^5 files,
/// minutes for a large or slow file system: a service manager's stop timeout then kills the
/// run before its summary is written). The walk now stops at the signal.
#[test]
fn sigterm_during_the_walk_stops_it() {
    let s = Scratch::new();
    let bucket = bucket("rt-walk-term");
    for d in 0..300 {
        let dir = s.src().join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..200 {
            std::fs::File::create(dir.join(f.to_string())).unwrap();
        }
    }
    let summary = s.home().join("summary.json");
    let child = command(&s)
        .args(["--summaryFile", summary.to_str().unwrap()])
        .args([s.src().to_str().unwrap(), &url(&bucket, "p")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Logged just before the walk starts.
    poll_until("the walk to start", Duration::from_secs(30), || {
        s.logtext().contains("Source ")
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(code(&out), 5, "{}", show(&out));
    let text = std::fs::read_to_string(&summary).expect("summary written");
    // The whole tree of 60,000 files was not walked after the signal.
    assert!(text.contains(r#""local": {"files": 0,"#), "{text}");
    assert!(objects(&bucket).is_empty());
}

/// SeaweedFS stores the key `p/back\slash` as `p/back/slash`. A full sync then uploaded the
/// file `back\slash` on every run and deleted `p/back/slash` right after, as an object
/// without a local file: the file's only copy, every run. Objects that an upload of a new
/// file may have been stored as are not deleted; the run fails naming them.
#[test]
fn an_object_an_upload_may_have_been_stored_as_is_not_deleted() {
    let s = Scratch::new();
    let bucket = bucket("rt-alias");
    s.write("back\\slash", b"the only copy");
    s.write("keep.txt", b"keep");
    // What an earlier run left on a server that rewrites '\' (on others: a stale object).
    put_object(&bucket, "p/back/slash", b"before");
    put_object(&bucket, "p/gone.txt", b"gone");
    let o = run(&s, [s.src().to_str().unwrap(), &url(&bucket, "p")]);
    assert_eq!(code(&o), 6, "{}", show(&o));
    let log = s.logtext();
    let objs = objects(&bucket);
    assert!(objs.contains_key("p/back/slash"), "{objs:?}\n{log}");
    if !on_moto() {
        assert_eq!(get_object(&bucket, "p/back/slash"), b"the only copy");
    }
    // Other deletes go ahead.
    assert!(!objs.contains_key("p/gone.txt"), "{objs:?}");
    assert!(
        log.lines().any(
            |l| l.contains(&format!("s3://{bucket}/p/back/slash not deleted"))
                && l.contains("back\\slash")
        ),
        "{log}"
    );
}

/// A profile whose `credential_process` never answers; it records the pids of itself and of
/// a child it started, one line per call.
fn hanging_credential_process(s: &Scratch) -> std::path::PathBuf {
    let pids = s.dir.path().join("pids");
    let script = s.dir.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 1000 &\necho $$ $! >> '{}'\nwait\n",
            pids.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let aws = s.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[default]\nregion = us-east-1\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    pids
}

fn credential_process_command(s: &Scratch) -> std::process::Command {
    let mut c = command(s);
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        c.env_remove(k);
    }
    c
}

fn recorded_pids(file: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Gone, or a zombie waiting for init: not running any more.
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .starts_with('Z'),
    }
}

fn assert_all_ended(pids: &[u32]) {
    assert!(!pids.is_empty(), "the credential_process never ran");
    poll_until(
        "the credential processes to end",
        Duration::from_secs(10),
        || pids.iter().all(|p| ended(*p)),
    );
}

/// A `credential_process` that never exits held the run for 125 s (the SDK's load timeout
/// derived from our retry settings) and was left running after the run ended, with its
/// children: an orphan per night. Now finding credentials has its own bound and the run ends
/// every process it started.
#[test]
fn a_hanging_credential_process_is_bounded_and_never_outlives_the_run() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("rt-credproc");
    let pids = hanging_credential_process(&s);
    let started = Instant::now();
    let child = credential_process_command(&s)
        .env("CBACK3_CREDENTIALS_TIMEOUT", "2")
        .args([s.src().to_str().unwrap(), &url(&b, "p")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(30));
    assert_eq!(code(&out), 6, "{}", show(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "{}", show(&out));
    assert!(
        lines[0].contains("no credentials: finding them took too long"),
        "{}",
        show(&out)
    );
    assert_all_ended(&recorded_pids(&pids));
    assert!(objects(&b).is_empty());
}

/// SIGTERM while the run waits for credentials: exit 5 at once, summary written, and the
/// `credential_process` ended with it (default bound: the run would wait 30 s otherwise).
#[test]
fn sigterm_while_waiting_for_credentials_exits_5_and_ends_the_credential_process() {
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("rt-credterm");
    let pids = hanging_credential_process(&s);
    let child = credential_process_command(&s)
        .args([s.src().to_str().unwrap(), &url(&b, "p")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll_until(
        "the credential_process to start",
        Duration::from_secs(20),
        || !recorded_pids(&pids).is_empty(),
    );
    let sent = Instant::now();
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = wait_bounded(child, Duration::from_secs(10));
    assert_eq!(code(&out), 5, "{}", show(&out));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    let log = s.logtext();
    assert!(log.contains("Summary: "), "{log}");
    assert!(log.contains("completed with status 5."), "{log}");
    assert_all_ended(&recorded_pids(&pids));
}

/// An endpoint that accepts TCP connections and never answers, with the DEFAULT retry
/// settings (8 attempts, backoff up to 45 s in all): the listing, the first request of a run
/// and outside the uploads' circuit breaker, is bounded by its retries: 8 response timeouts
/// plus the backoff. With the 60 s default that is at most 8 x 60 + 45 s, about 9 minutes;
/// here the response timeout is 0.3 s, so at most 2.4 + 45 s.
#[test]
fn an_endpoint_that_never_answers_fails_the_listing_within_its_retry_bound() {
    let s = Scratch::new();
    for i in 0..20 {
        s.write(format!("f{i}"), b"x");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in listener.incoming() {
                held.push(c);
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let started = Instant::now();
    let child = command_via(&s, &format!("http://127.0.0.1:{port}"))
        .env("CBACK3_RESPONSE_TIMEOUT", "0.3")
        .args([s.src().to_str().unwrap(), "s3://never-answers/p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(90));
    let took = started.elapsed();
    assert_eq!(code(&out), 6, "{}", show(&out));
    assert!(took < Duration::from_secs(8 * 3 / 10 + 45 + 5), "{took:?}");
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "{}", show(&out));
    assert!(
        lines[0].contains("ListObjectsV2") && lines[0].contains("no response within 0.3 s"),
        "{}",
        show(&out)
    );
    // Every attempt was made (the default 8), not given up after the SDK's usual 3.
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 8);
    assert!(s.logtext().contains("Summary: "));
}
