//! The binary against a real S3-compatible server (SeaweedFS on 127.0.0.1).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;

/// Keys of the files' objects (directory markers aside: tests/sync/directories.rs).
fn keys(bucket: &str) -> BTreeSet<String> {
    file_objects(bucket).into_keys().collect()
}

#[test]
fn initial_sync_then_noop_uploads_nothing() {
    let s = Scratch::new();
    s.write("a.txt", b"alpha");
    s.write("d/e/b.txt", b"bravo!");
    s.write("empty", b"");
    let b = bucket("noop");
    let o = run(&s, [s.src().as_os_str(), url(&b, "backup").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    // Files' objects: a marker of a directory changed in the second of its put is put once
    // more (tests/sync/directories.rs has the markers' no-op run).
    let first = file_objects(&b);
    let want: BTreeSet<String> = ["backup/a.txt", "backup/d/e/b.txt", "backup/empty"]
        .map(String::from)
        .into();
    assert_eq!(first.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(first["backup/d/e/b.txt"].size, 6);
    assert_eq!(get_object(&b, "backup/a.txt"), b"alpha");

    let o = run(&s, [s.src().as_os_str(), url(&b, "backup").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 0);
    assert_eq!(
        file_objects(&b),
        first,
        "a no-op run must not rewrite any object"
    );
}

#[test]
fn same_size_edit_with_newer_mtime_is_uploaded() {
    let s = Scratch::new();
    let p = s.write("f.txt", b"version-1");
    s.write("g.txt", b"untouched");
    let b = bucket("edit");
    assert_eq!(
        code(&run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()])),
        0
    );
    let before = objects(&b);
    std::fs::write(&p, b"version-2").unwrap();
    set_mtime(&p, SystemTime::now() + Duration::from_secs(120));
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 1);
    assert_eq!(get_object(&b, "p/f.txt"), b"version-2");
    assert_eq!(objects(&b)["p/g.txt"], before["p/g.txt"]);
}

#[test]
fn full_sync_deletes_extras_upload_only_keeps_them() {
    let s = Scratch::new();
    s.write("keep.txt", b"k");
    let b = bucket("extras");
    put_object(&b, "p/stale.txt", b"old");
    put_object(&b, "p/sub/stale2.txt", b"old");
    put_object(&b, "other/outside.txt", b"not under the prefix");
    put_object(&b, "p2/sibling.txt", b"a sibling prefix");

    let o = run(
        &s,
        ["-u".as_ref(), s.src().as_os_str(), url(&b, "p").as_ref()],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(keys(&b).contains("p/stale.txt"));
    assert!(s.logtext().contains("WARNING") && s.logtext().contains("stale.txt"));

    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let want: BTreeSet<String> = ["other/outside.txt", "p/keep.txt", "p2/sibling.txt"]
        .map(String::from)
        .into();
    assert_eq!(keys(&b), want);
}

#[test]
fn verify_only_reports_a_tampered_bucket_and_changes_nothing() {
    let s = Scratch::new();
    s.write("a.txt", b"aaaa");
    s.write("b.txt", b"bbbb");
    s.write("c.txt", b"cccc");
    let b = bucket("tamper");
    assert_eq!(
        code(&run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()])),
        0
    );
    // Clean verify passes.
    let o = run(
        &s,
        ["-v".as_ref(), s.src().as_os_str(), url(&b, "p").as_ref()],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));

    let c = client();
    rt().block_on(c.delete_object().bucket(&b).key("p/a.txt").send())
        .unwrap();
    put_object(&b, "p/b.txt", b"bb");
    put_object(&b, "p/extra.txt", b"x");
    let tampered = objects(&b);
    let o = run(
        &s,
        ["-v".as_ref(), s.src().as_os_str(), url(&b, "p").as_ref()],
    );
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert_eq!(objects(&b), tampered, "-v must change nothing");
    let log = s.logtext();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("[ERROR")).collect();
    assert!(errors.iter().any(|l| l.contains("a.txt")), "{log}");
    assert!(errors.iter().any(|l| l.contains("b.txt")), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("[WARNING") && l.contains("extra.txt")),
        "{log}"
    );
    // Errors go to the screen by default, one line per file.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("a.txt") && stdout.contains("b.txt"),
        "{stdout}"
    );
}

#[test]
fn odd_names_round_trip() {
    let s = Scratch::new();
    let names = [
        "with space.txt",
        "plus+percent%hash#q?amp&.txt",
        "Müller.doc",
        "日本語/ファイル.txt",
        "Ελληνικά.txt",
        "עברית.txt",
        "emoji 🎉.txt",
        "new\nline.txt",
        "tab\tand\u{1}ctrl\u{7f}.txt",
        "backup/backup-notes.txt",
        "a%20b",
        "x+y",
        "trailing space ",
        ".hidden",
    ];
    let b = bucket("names");
    if on_moto() {
        assert_moto_newline_bug(&b);
    }
    let names: Vec<&str> = names.into_iter().filter(|n| server_stores(n)).collect();
    for (i, n) in names.iter().enumerate() {
        s.write(n, format!("body {i}").as_bytes());
    }
    let o = run(&s, [s.src().as_os_str(), url(&b, "backup").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let want: BTreeSet<String> = names.iter().map(|n| format!("backup/{n}")).collect();
    assert_eq!(keys(&b), want);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            get_object(&b, &format!("backup/{n}")),
            format!("body {i}").as_bytes()
        );
    }
    let o = run(
        &s,
        [
            "-v".as_ref(),
            s.src().as_os_str(),
            url(&b, "backup").as_ref(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    // A log line never breaks on a newline inside a name.
    assert!(s
        .logtext()
        .lines()
        .all(|l| l.is_empty() || l.starts_with(char::is_numeric)));
}

#[test]
fn multipart_upload_of_a_large_file() {
    let s = Scratch::new();
    let size = (cback3_s3sync::s3::MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 17) as usize;
    let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    s.write("big.bin", &body);
    s.write("small.bin", b"s");
    let b = bucket("multipart");
    let o = run(
        &s,
        [
            "-O".as_ref(),
            "-d".as_ref(),
            s.src().as_os_str(),
            url(&b, "").as_ref(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        s.logtext().contains("CompleteMultipartUpload"),
        "{}",
        s.logtext()
    );
    assert_eq!(objects(&b)["big.bin"].size as usize, size);
    assert!(get_object(&b, "big.bin") == body, "content differs");
    assert_eq!(open_uploads(&b), Vec::<String>::new());
}

#[test]
fn bucket_root_and_trailing_slashes() {
    let s = Scratch::new();
    s.write("r.txt", b"root");
    s.write("d/x.txt", b"x");
    let b = bucket("root");
    for u in [format!("s3://{b}"), format!("s3://{b}/")] {
        let o = run(&s, [s.src().as_os_str(), u.as_ref()]);
        assert_eq!(code(&o), 0, "{u}: {}", show(&o));
        let want: BTreeSet<String> = ["d/x.txt", "r.txt"].map(String::from).into();
        assert_eq!(keys(&b), want, "{u}");
    }
    let b2 = bucket("slash");
    let mut src_slash = s.src().into_os_string();
    src_slash.push("/");
    let o = run(&s, [src_slash.as_os_str(), url(&b2, "p/q/").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let first = file_objects(&b2);
    let want: BTreeSet<String> = ["p/q/d/x.txt", "p/q/r.txt"].map(String::from).into();
    assert_eq!(first.keys().cloned().collect::<BTreeSet<_>>(), want);
    // `.` as the source, relative, and no trailing slash on the URL: same keys, no uploads.
    let o = command(&s)
        .current_dir(s.src())
        .args([".", &url(&b2, "p/q")])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 0);
    assert_eq!(file_objects(&b2), first);
    let o = command(&s)
        .current_dir(s.dir.path())
        .args(["src/", &url(&b2, "p/q")])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(file_objects(&b2), first);
}

#[test]
fn names_that_are_not_utf8_stop_the_run_unless_w() {
    let s = Scratch::new();
    s.write("good.txt", b"g");
    let bad = s
        .src()
        .join(std::ffi::OsString::from_vec(b"caf\xe9.txt".to_vec()));
    std::fs::write(&bad, b"latin-1 name").unwrap();
    let b = bucket("encoding");
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert!(keys(&b).is_empty(), "nothing may be uploaded");
    assert!(
        s.logtext()
            .lines()
            .any(|l| l.contains("[ERROR") && l.contains("caf\\xe9.txt")),
        "{}",
        s.logtext()
    );
    let o = run(
        &s,
        ["-w".as_ref(), s.src().as_os_str(), url(&b, "p").as_ref()],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(keys(&b), BTreeSet::from(["p/good.txt".to_string()]));
    assert!(s
        .logtext()
        .lines()
        .any(|l| l.contains("[WARNING") && l.contains("caf\\xe9.txt")));
}

#[test]
fn bad_input_is_one_line_and_exit_6() {
    let s = Scratch::new();
    s.write("a", b"a");
    let b = bucket("badinput");
    put_object(&b, "p/keep", b"k");
    let cases: Vec<(OsString, String, &str)> = vec![
        (s.src().into(), "b/p".into(), "does not start with s3://"),
        (s.src().into(), "s3://".into(), "no bucket name"),
        (s.src().into(), "s3://x/p".into(), "invalid bucket name"),
        (
            s.dir.path().join("missing").into(),
            url(&b, "p"),
            "does not exist",
        ),
        (s.src().join("a").into(), url(&b, "p"), "is not a directory"),
    ];
    for (src, u, want) in cases {
        let o = run(&s, [src.as_os_str(), u.as_ref()]);
        assert_eq!(code(&o), 6, "{u}: {}", show(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one line on screen: {stdout}");
        assert!(lines[0].contains(want), "{u}: {stdout}");
    }
    assert_eq!(keys(&b), BTreeSet::from(["p/keep".to_string()]));
}

#[test]
fn empty_source_refuses_to_empty_the_prefix() {
    let s = Scratch::new();
    let b = bucket("emptysrc");
    put_object(&b, "p/one", b"1");
    put_object(&b, "p/two", b"2");
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert_eq!(keys(&b).len(), 2, "nothing deleted");
    assert!(String::from_utf8_lossy(&o.stdout).contains("--allowEmptySource"));
    let o = run(
        &s,
        [
            "--allowEmptySource".as_ref(),
            s.src().as_os_str(),
            url(&b, "p").as_ref(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(keys(&b).is_empty());
}

#[test]
fn specials_are_skipped_with_a_warning() {
    let s = Scratch::new();
    s.write("real.txt", b"r");
    std::os::unix::fs::symlink(s.src().join("nowhere"), s.src().join("dangling")).unwrap();
    std::os::unix::fs::symlink(s.src().join("real.txt"), s.src().join("alias.txt")).unwrap();
    let fifo = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
        s.src().join("pipe").as_os_str(),
    ))
    .unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let b = bucket("specials");
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let want: BTreeSet<String> = ["p/alias.txt", "p/real.txt"].map(String::from).into();
    assert_eq!(keys(&b), want);
    let warnings: Vec<String> = s
        .logtext()
        .lines()
        .filter(|l| l.contains("[WARNING"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|l| l.contains("dangling")));
    assert!(warnings.iter().any(|l| l.contains("pipe")));
}

#[test]
fn wrong_credentials_fail_cleanly() {
    needs_seaweedfs("signature checks");
    let s = Scratch::new();
    s.write("a", b"a");
    let b = bucket("creds");
    let o = command(&s)
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("SignatureDoesNotMatch") || stdout.contains("AccessDenied"),
        "{stdout}"
    );
    assert!(!stdout.contains("wrong"), "the secret must not be shown");
    assert!(keys(&b).is_empty());
}

#[test]
fn profile_files_and_endpoint_url_are_honoured() {
    let s = Scratch::new();
    s.write("a", b"a");
    let b = bucket("profile");
    let srv = server();
    let env = |k: &str| srv.env.iter().find(|(a, _)| a == k).unwrap().1.clone();
    let aws = s.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile backup]\nregion = us-east-1\nendpoint_url = {}\nrequest_checksum_calculation = when_required\n",
            srv.endpoint
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            env("AWS_ACCESS_KEY_ID"),
            env("AWS_SECRET_ACCESS_KEY")
        ),
    )
    .unwrap();
    let mut c = command(&s);
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        c.env_remove(k);
    }
    let o = c
        .env("AWS_PROFILE", "backup")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(keys(&b), BTreeSet::from(["p/a".to_string()]));

    // The service-specific variable wins over the general one.
    let b2 = bucket("endpoint-s3");
    let o = command(&s)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_S3", &srv.endpoint)
        .env("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
        .args([s.src().as_os_str(), url(&b2, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(keys(&b2), BTreeSet::from(["p/a".to_string()]));
}

#[test]
fn missing_bucket_fails_with_its_name() {
    let s = Scratch::new();
    s.write("a", b"a");
    let o = run(
        &s,
        [s.src().as_os_str(), "s3://no-such-bucket-here/p".as_ref()],
    );
    assert_eq!(code(&o), 6, "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("NoSuchBucket"), "{stdout}");
}

#[test]
fn interrupted_run_aborts_multipart_deletes_nothing_then_rerun_completes() {
    let s = Scratch::new();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    let big = s.src().join("big.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        for _ in 0..256 {
            f.write_all(&chunk).unwrap();
        }
    }
    set_mtime(&big, SystemTime::now() - Duration::from_secs(3600));
    for i in 0..50 {
        s.write(format!("small/{i:03}.txt"), &chunk[..4096]);
    }
    let b = bucket("interrupt");
    put_object(&b, "p/stale.txt", b"would be deleted by a full sync");
    let mut child = command(&s)
        .args([
            "--maxConcurrency".as_ref(),
            "2".as_ref(),
            s.src().as_os_str(),
            url(&b, "p").as_ref(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    poll_until(
        "a multipart upload to start",
        Duration::from_secs(60),
        || !open_uploads(&b).is_empty(),
    );
    let signalled = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(20), "not prompt");
    assert_eq!(status.code(), Some(5), "{}", s.logtext());
    assert_eq!(
        open_uploads(&b),
        Vec::<String>::new(),
        "multipart upload left open"
    );
    assert!(keys(&b).contains("p/stale.txt"), "nothing may be deleted");
    assert!(!keys(&b).contains("p/big.bin"));

    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let all = keys(&b);
    assert_eq!(all.len(), 51);
    assert!(!all.contains("p/stale.txt"));
    assert_eq!(objects(&b)["p/big.bin"].size, 256 * 1024 * 1024);
}

#[test]
fn sigterm_also_interrupts() {
    let s = Scratch::new();
    let chunk = vec![7u8; 1024 * 1024];
    for i in 0..400 {
        s.write(format!("f{i:04}"), &chunk);
    }
    let b = bucket("sigterm");
    let mut child = command(&s)
        .args([
            "--maxConcurrency".as_ref(),
            "1".as_ref(),
            s.src().as_os_str(),
            url(&b, "p").as_ref(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    poll_until("the first upload", Duration::from_secs(60), || {
        !keys(&b).is_empty()
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(5), "{}", s.logtext());
    assert!(keys(&b).len() < 400);
}

#[test]
fn a_prefix_filled_by_the_original_tool_is_not_uploaded_again() {
    let s = Scratch::new();
    s.write("a.txt", b"alpha");
    s.write("dir/b.txt", b"bravo");
    s.write("dir/sub/c.bin", &[0u8; 70_000]);
    // No empty file: the original (through AWS CLI v1 here) reports a zero-byte file as
    // "apparently not uploaded" and fails.
    let b = bucket("original");
    let orig_log = s.dir.path().join("original.log");
    let mut py = std::process::Command::new("python3");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            py.env_remove(k);
        }
    }
    let o = py
        .envs(server().env.iter().map(|(k, v)| (k, v)))
        .env("HOME", s.home())
        .args([
            "-c",
            "import sys\nfrom CedarBackup3.tools.amazons3 import cli\nsys.exit(cli())",
            "-w",
            "-l",
        ])
        .arg(&orig_log)
        .arg(s.src())
        .arg(url(&b, "p"))
        .output()
        .expect("python3 with cedar-backup3 and awscli (pip install cedar-backup3 awscli)");
    assert_eq!(
        code(&o),
        0,
        "the original tool failed: {}\n{}",
        show(&o),
        std::fs::read_to_string(&orig_log).unwrap_or_default()
    );
    let filled = objects(&b);
    assert_eq!(filled.len(), 3, "{filled:?}");

    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 0);
    // Its objects as they were; only the directories' markers were added.
    assert_eq!(file_objects(&b), filled);
    let markers: Vec<String> = objects(&b)
        .into_keys()
        .filter(|k| !filled.contains_key(k))
        .collect();
    assert_eq!(markers, ["p/dir/", "p/dir/sub/"]);
}

#[test]
fn parallel_listing_covers_a_large_prefix_exactly_once() {
    // Over one page, so the listing splits along sub-prefixes; odd keys included.
    let b = bucket("listing");
    let c = client();
    let mut want = BTreeSet::new();
    let mut keys_to_put: Vec<String> = Vec::new();
    for i in 0..1300 {
        keys_to_put.push(format!("p/d{:02}/e{}/f{i}", i % 23, i % 3));
    }
    for k in [
        "p/top.txt",
        "p/dir-marker/",
        "p/sp ace/+plus%/x\ny",
        "p/deep/1/2/3/4/5/leaf",
        "p2/not-under-prefix",
        "p",
    ] {
        if server_stores(k) {
            keys_to_put.push(k.to_string());
        }
    }
    if on_moto() {
        assert_moto_newline_bug(&b);
    }
    rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for k in keys_to_put.clone() {
            let (c, b) = (c.clone(), b.clone());
            set.spawn(async move {
                c.put_object()
                    .bucket(b)
                    .key(k)
                    .body(b"1".to_vec().into())
                    .send()
                    .await
                    .unwrap()
            });
            if set.len() >= 32 {
                set.join_next().await.unwrap().unwrap();
            }
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    for k in &keys_to_put {
        if let Some(rel) = k.strip_prefix("p/") {
            want.insert(rel.to_string());
        }
    }
    let url = cback3_s3sync::bucket_url::BucketUrl::parse(&format!("s3://{b}/p")).unwrap();
    // The library's listing through a client configured explicitly (common::client), not
    // through the process environment: tests of other files share this process and spawn the
    // binary, and a variable set here would reach their children.
    let sdk_client = client();
    let listing = rt().block_on(async {
        cback3_s3sync::s3::listing::list(&sdk_client, &url, &Default::default())
            .await
            .unwrap()
    });
    let got: BTreeSet<String> = listing.keys().map(|k| k.to_string()).collect();
    // (No "a//b" keys: SeaweedFS stores them as "a/b".)
    assert_eq!(got.len(), want.len());
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert!(listing
        .iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .all(|(_, o)| o.size == 1));
}
