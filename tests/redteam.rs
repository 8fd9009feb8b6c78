//! Red-team findings after the field hardening: each test is one class of fault that the
//! merged tool still had, against the real server (and tests/s3proxy.py where timing matters).

mod common;

use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

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
    poll_until(
        "the walk to end and the listing to stall",
        Duration::from_secs(30),
        || {
            s.logtext()
                .contains("Completed checking source filename encoding")
                && proxy.stats().get("stall").is_some_and(|n| *n >= 1)
        },
    );
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
