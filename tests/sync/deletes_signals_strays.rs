//! Deletes that cannot be batched or fail, signals at any moment of a run, and stray multipart
//! uploads, against the real server (and tests/s3proxy.py where a fault is needed).

use std::collections::BTreeSet;

use crate::common::*;

/// Keys of the files' objects (directory markers aside).
fn keys(bucket: &str) -> BTreeSet<String> {
    file_objects(bucket).into_keys().collect()
}

fn summary_text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).expect("summary file written")
}

/// Names XML 1.0 cannot carry (U+0001, U+001F, U+FFFE) and one with CR, beside ordinary ones.
const ODD_NAMES: [&str; 4] = ["a\u{1}b.txt", "c\u{1f}d.txt", "e\u{fffe}f.txt", "g\rh.txt"];

#[test]
fn keys_xml_cannot_carry_are_deleted_one_by_one() {
    let s = Scratch::new();
    for n in ODD_NAMES {
        s.write(n, b"odd");
    }
    s.write("plain.txt", b"plain");
    s.write("dir/plain2.txt", b"plain2");
    s.write("keep.txt", b"keep");
    let b = bucket("oddkeys");
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert_eq!(keys(&b).len(), 7);

    for n in ODD_NAMES.iter().chain(&["plain.txt", "dir/plain2.txt"]) {
        std::fs::remove_file(s.src().join(n)).unwrap();
    }
    let o = run(
        &s,
        ["-O".as_ref(), s.src().as_os_str(), url(&b, "p").as_ref()],
    );
    let log = s.logtext();
    assert_eq!(code(&o), 0, "{}\n{log}", show(&o));
    assert_eq!(keys(&b), BTreeSet::from(["p/keep.txt".to_string()]));
    // The odd keys went one by one from the start: the batch of the others was not refused.
    assert!(!log.contains("was refused"), "{log}");
    for n in ODD_NAMES.iter().chain(&["plain.txt", "dir/plain2.txt"]) {
        let shown = n
            .replace('\u{1}', "\\u{1}")
            .replace('\u{1f}', "\\u{1f}")
            .replace('\r', "\\r");
        assert!(
            log.contains(&format!("delete: s3://{b}/p/{shown}")),
            "no delete line for {shown:?}:\n{log}"
        );
    }
}

#[test]
fn a_batch_refused_as_a_whole_is_deleted_key_by_key() {
    let s = Scratch::new();
    s.write("keep.txt", b"keep");
    let b = bucket("refused");
    for k in ["p/old1.txt", "p/sub/old2.txt", "p/old3.txt"] {
        put_object(&b, k, b"old");
    }
    let proxy = Proxy::start(1);
    // Only DeleteObjects is a POST here (keep.txt is a small PutObject).
    proxy.set(r#"{"fault_rate": 1, "faults": ["400"], "fault_methods": ["POST"]}"#);
    let o = command_via(&s, &proxy.endpoint())
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    let log = s.logtext();
    assert_eq!(code(&o), 0, "{}\n{log}", show(&o));
    assert_eq!(keys(&b), BTreeSet::from(["p/keep.txt".to_string()]));
    assert!(
        log.contains("DeleteObjects of 3 keys was refused (MalformedXML"),
        "{log}"
    );
    assert!(proxy.finish().get("400").copied().unwrap_or(0) >= 1);
}

#[test]
fn a_failed_delete_names_the_key_in_the_summary() {
    let s = Scratch::new();
    s.write("keep.txt", b"keep");
    let b = bucket("delfail");
    put_object(&b, "p/sub/stale.txt", b"old");
    let summary = s.dir.path().join("summary.json");
    let proxy = Proxy::start(1);
    proxy.set(r#"{"fault_rate": 1, "faults": ["500"], "fault_methods": ["POST"]}"#);
    let o = command_via(&s, &proxy.endpoint())
        .env("AWS_MAX_ATTEMPTS", "1")
        .arg("--summaryFile")
        .arg(&summary)
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    let log = s.logtext();
    assert_eq!(code(&o), 6, "{}\n{log}", show(&o));
    let text = summary_text(&summary);
    assert!(
        text.contains(r#"{"path": "sub/stale.txt", "reason": "delete failed: InternalError"#),
        "{text}"
    );
    assert!(!text.contains(&format!("\"path\": \"{b}\"")), "{text}");
    assert!(
        log.contains(&format!("Failed to delete s3://{b}/p/sub/stale.txt")),
        "{log}"
    );
    assert!(keys(&b).contains("p/sub/stale.txt"));
    validate_json(&summary, "schema/summary.schema.json");
}

/// Starts a multipart upload of `key` with one part and leaves it open; returns its id.
fn stray_upload(bucket: &str, key: &str) -> String {
    let c = client();
    rt().block_on(async {
        let id = c
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        c.upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(1)
            .body(vec![1u8; 1024].into())
            .send()
            .await
            .unwrap();
        id
    })
}

fn open_upload_ids(bucket: &str) -> BTreeSet<String> {
    open_uploads_with_ids(bucket)
        .into_iter()
        .map(|(_, id)| id)
        .collect()
}

#[test]
fn stray_uploads_under_the_prefix_are_aborted_others_are_not() {
    let s = Scratch::new();
    s.write("here.txt", b"here");
    let b = bucket("strays");
    let ours = stray_upload(&b, "p/gone/killed.bin");
    let neighbour = stray_upload(&b, "p2/killed.bin");
    let elsewhere = stray_upload(&b, "other/killed.bin");
    let all = BTreeSet::from([ours.clone(), neighbour.clone(), elsewhere.clone()]);
    assert_eq!(open_upload_ids(&b), all);

    // -v changes nothing, a dry run only says what it would abort.
    let o = run(
        &s,
        ["-v".as_ref(), s.src().as_os_str(), url(&b, "p").as_ref()],
    );
    assert_eq!(code(&o), 6, "{}", show(&o)); // here.txt is not uploaded yet
    assert_eq!(open_upload_ids(&b), all);
    let o = run(
        &s,
        [
            "--dryRun".as_ref(),
            s.src().as_os_str(),
            url(&b, "p").as_ref(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(open_upload_ids(&b), all);
    assert!(s.logtext().contains(&format!(
        "(dryrun) would abort stray multipart upload of s3://{b}/p/gone/killed.bin"
    )));

    for mode in [&["-u"][..], &[]] {
        let o = command(&s)
            .args(mode)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", show(&o));
    }
    assert_eq!(
        open_upload_ids(&b),
        BTreeSet::from([neighbour, elsewhere]),
        "only the stray under p/ is aborted"
    );
    let log = s.logtext();
    let line = log
        .lines()
        .find(|l| l.contains("Aborting stray multipart upload of"))
        .expect("stray logged");
    assert!(line.contains("WARNING"), "{line}");
    assert!(
        line.contains(&format!("s3://{b}/p/gone/killed.bin (initiated 20")),
        "{line}"
    );
    assert!(line.contains(&format!("upload id {ours}")), "{line}");
    assert_eq!(
        log.matches("Aborting stray multipart upload").count(),
        1,
        "{log}"
    );
    assert_eq!(keys(&b), BTreeSet::from(["p/here.txt".to_string()]));
}

fn kill(child: &std::process::Child, sig: libc::c_int) {
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "SIGHUP",
    }
}

#[test]
fn sighup_during_a_multipart_upload_aborts_it_and_writes_the_summary() {
    let s = Scratch::new();
    s.write("big.bin", &vec![5u8; 17 * 1024 * 1024]);
    let b = bucket("hupmulti");
    let summary = s.dir.path().join("summary.json");
    let proxy = Proxy::start(1);
    // Parts are PUTs: held unanswered; CreateMultipartUpload (POST) and the abort go through.
    proxy
        .set(r#"{"fault_rate": 1, "faults": ["stall"], "fault_methods": ["PUT"], "stall_s": 120}"#);
    let mut child = command_via(&s, &proxy.endpoint())
        .arg("--summaryFile")
        .arg(&summary)
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    poll_until(
        "a part to be held",
        std::time::Duration::from_secs(60),
        || proxy.stats().get("stall").copied().unwrap_or(0) >= 1,
    );
    assert_eq!(open_uploads(&b), vec!["p/big.bin".to_string()]);
    kill(&child, libc::SIGHUP);
    let status = child.wait().unwrap();
    let log = s.logtext();
    assert_eq!(status.code(), Some(5), "{log}");
    assert_eq!(
        open_uploads(&b),
        Vec::<String>::new(),
        "multipart upload left open"
    );
    assert!(log.contains("Interrupted by SIGHUP"), "{log}");
    let text = summary_text(&summary);
    assert!(text.contains(r#""status": "interrupted""#), "{text}");
    assert_eq!(summary_number(&text, "exit_status"), 5);
    assert!(keys(&b).is_empty());
}

#[test]
fn a_signal_during_deletes_reports_what_the_bucket_shows() {
    // "stall": the DeleteObjects never reaches the server; "hold": the server deletes, the
    // answer never comes. Either way the count must match the bucket.
    for (fault, sig, expect) in [("stall", libc::SIGTERM, 2), ("hold", libc::SIGHUP, 5)] {
        let s = Scratch::new();
        s.write("keep.txt", b"keep");
        let b = bucket(&format!("delsig-{fault}"));
        put_object(&b, "p/keep.txt", b"keep");
        // Two keys go one by one (DELETE), three in a batch (POST, the one held).
        for k in [
            "p/x\u{1}.txt",
            "p/y\r.txt",
            "p/a.txt",
            "p/b.txt",
            "p/sub/c.txt",
        ] {
            put_object(&b, k, b"old");
        }
        let summary = s.dir.path().join("summary.json");
        let proxy = Proxy::start(1);
        proxy.set(&format!(
            r#"{{"fault_rate": 1, "faults": ["{fault}"], "fault_methods": ["POST"], "stall_s": 120}}"#
        ));
        let mut child = command_via(&s, &proxy.endpoint())
            .arg("--summaryFile")
            .arg(&summary)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        poll_until(
            "the DeleteObjects to be held",
            std::time::Duration::from_secs(60),
            || proxy.stats().get(fault).copied().unwrap_or(0) >= 1,
        );
        kill(&child, sig);
        let status = child.wait().unwrap();
        let log = s.logtext();
        assert_eq!(status.code(), Some(5), "{fault}: {log}");
        let left = keys(&b).len() as u64 - 1; // keep.txt stays
        let text = summary_text(&summary);
        let deleted = summary_number(&text, "deleted");
        assert_eq!(
            deleted,
            5 - left,
            "{fault}: summary says {deleted}, bucket shows {left} left\n{text}"
        );
        assert_eq!(deleted, expect, "{fault}\n{log}");
        assert!(
            log.contains(&format!("Interrupted: {expect} of 5 deletes done.")),
            "{fault}: {log}"
        );
        assert!(
            log.contains(&format!("Interrupted by {}", signal_name(sig))),
            "{log}"
        );
    }
}

#[test]
fn a_signal_right_after_start_gives_exit_5() {
    // Twenty runs, each signalled as soon as it has reached main (the marker is written right
    // after the early handlers are installed; a signal before main ran at all would kill any
    // program, so the test waits for the marker). The endpoint holds every request, so no run
    // can finish before its signal.
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("early");
    let proxy = Proxy::start(1);
    proxy.set(r#"{"fault_rate": 1, "faults": ["stall"], "stall_s": 120}"#);
    for i in 0..20 {
        let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP][i % 3];
        let marker = s.dir.path().join(format!("started-{i}"));
        let summary = s.dir.path().join(format!("summary-{i}.json"));
        let mut child = command_via(&s, &proxy.endpoint())
            .env("CBACK3_TEST_STARTED", &marker)
            .arg("--summaryFile")
            .arg(&summary)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        poll_until("main", std::time::Duration::from_secs(20), || {
            marker.exists()
        });
        kill(&child, sig);
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(5),
            "run {i}, {}: {status:?}",
            signal_name(sig)
        );
        assert!(summary_text(&summary).contains(r#""status": "interrupted""#));
    }
    assert!(keys(&b).is_empty());
}

#[test]
fn a_signal_before_the_runtime_exists_gives_exit_5() {
    // The process holds right after installing its early handlers (test hook), so the signal
    // surely arrives before tokio's handlers exist.
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("prert");
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let marker = s.dir.path().join(format!("started-{sig}"));
        let mut child = command(&s)
            .env("CBACK3_TEST_STARTED", &marker)
            .env("CBACK3_TEST_HOLD_STDIN", "1")
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        poll_until("main", std::time::Duration::from_secs(20), || {
            marker.exists()
        });
        kill(&child, sig);
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        let log = s.logtext();
        assert_eq!(
            status.code(),
            Some(5),
            "{}: {status:?}\n{log}",
            signal_name(sig)
        );
        assert!(
            log.contains(&format!(
                "Interrupted by {} while starting",
                signal_name(sig)
            )),
            "{log}"
        );
    }
    assert!(keys(&b).is_empty(), "nothing uploaded");
}

#[test]
fn sighup_stays_ignored_under_nohup() {
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    s.write("a.txt", b"a");
    let b = bucket("nohup");
    let marker = s.dir.path().join("started");
    let mut c = command(&s);
    c.env("CBACK3_TEST_STARTED", &marker)
        .env("CBACK3_TEST_HOLD_STDIN", "1")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    // What nohup does before it runs the command.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        })
    };
    let mut child = c.spawn().unwrap();
    poll_until("main", std::time::Duration::from_secs(20), || {
        marker.exists()
    });
    kill(&child, libc::SIGHUP);
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", s.logtext());
    assert_eq!(keys(&b), BTreeSet::from(["p/a.txt".to_string()]));
}
