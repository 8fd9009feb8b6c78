//! Issue 7's switches against a real S3-compatible server (SeaweedFS on 127.0.0.1):
//! checksums and --verifyContent, --maxDeletes, --dryRun, --summaryFile, storage class and
//! SSE, progress on a terminal, and the man page.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::common::*;
use aws_sdk_s3::types::{ChecksumType, ServerSideEncryption, StorageClass};
use cback3_s3sync::checksum::{crc64nvme, crc_base64};

fn keys(bucket: &str) -> BTreeSet<String> {
    objects(bucket).into_keys().collect()
}

fn args<'a>(extra: &'a [&'a str], s: &'a Scratch, u: &'a str) -> Vec<&'a OsStr> {
    let mut v: Vec<&OsStr> = extra.iter().map(OsStr::new).collect();
    v.push(s.src().into_os_string().leak());
    v.push(OsStr::new(u));
    v
}

fn error_lines(s: &Scratch) -> Vec<String> {
    s.logtext()
        .lines()
        .filter(|l| l.contains("[ERROR"))
        .map(String::from)
        .collect()
}

const MIB: usize = 1024 * 1024;

#[test]
fn uploads_carry_a_full_object_crc64nvme_that_verify_content_checks() {
    let s = Scratch::new();
    let small = b"hello world".to_vec();
    // Over the multipart threshold (16 MiB): two parts.
    let big: Vec<u8> = (0..17 * MIB).map(|i| (i % 253) as u8).collect();
    s.write("small.txt", &small);
    s.write("big.bin", &big);
    let b = bucket("crc");
    let u = url(&b, "p");
    let o = run(&s, args(&[], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));

    let h = head(&b, "p/small.txt");
    assert_eq!(
        h.checksum_crc64_nvme(),
        Some(crc_base64(crc64nvme(&small), 8).as_str())
    );
    let h = head(&b, "p/big.bin");
    assert!(h.e_tag().unwrap().contains("-2"), "{:?}", h.e_tag());
    assert_eq!(h.checksum_type(), Some(&ChecksumType::FullObject));
    assert_eq!(
        h.checksum_crc64_nvme(),
        Some(crc_base64(crc64nvme(&big), 8).as_str())
    );

    let o = run(&s, args(&["-v", "--verifyContent"], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        s.logtext()
            .contains("Content of 2 files matches (2 by CRC64NVME)"),
        "{}",
        s.logtext()
    );
}

#[test]
fn verify_content_catches_a_corrupted_object_of_the_same_size() {
    let s = Scratch::new();
    s.write("a.txt", b"alpha-alpha");
    s.write("b.txt", b"bravo-bravo");
    s.write("c.txt", b"charlie-charlie");
    let b = bucket("corrupt");
    let u = url(&b, "p");
    assert_eq!(code(&run(&s, args(&[], &s, &u))), 0);
    // Same sizes, other content; the objects are newer than the files (an hour old), so a
    // sync sees nothing to upload. b.txt is rewritten with the SDK's default CRC32, c.txt
    // with a CRC64NVME.
    put_object(&b, "p/b.txt", b"BRAVO-BRAVO");
    rt().block_on(
        client()
            .put_object()
            .bucket(&b)
            .key("p/c.txt")
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme)
            .body(b"CHARLIE-CHARL!E".to_vec().into())
            .send(),
    )
    .unwrap();
    let corrupted = objects(&b);

    // Sizes alone see nothing wrong.
    let o = run(&s, args(&[], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 0);

    // With -v it only reports (a sync run repairs: tests/sync/integrity.rs).
    let o = run(&s, args(&["-v", "--verifyContent"], &s, &u));
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 0);
    assert_eq!(objects(&b), corrupted, "verify-only must not repair");
    let log = s.logtext();
    let run_log = &log[log.rfind("run started").unwrap()..];
    let errors: Vec<&str> = run_log
        .lines()
        .filter(|l| l.contains("[ERROR") && l.contains("content differs"))
        .collect();
    assert_eq!(errors.len(), 2, "{run_log}");
    assert!(errors
        .iter()
        .any(|l| l.contains("[b.txt]") && l.contains("CRC32 ")));
    assert!(errors
        .iter()
        .any(|l| l.contains("[c.txt]") && l.contains("CRC64NVME")));
    assert!(!run_log.contains("[a.txt]"), "{run_log}");
}

#[test]
fn verify_content_falls_back_to_the_md5_etag_and_names_what_it_cannot_check() {
    let s = Scratch::new();
    s.write("plain-ok.txt", b"same content");
    s.write("plain-bad.txt", b"good content");
    let part = vec![7u8; 5 * MIB];
    let mut multi = part.clone();
    multi.extend_from_slice(&part);
    s.write("multi.bin", &multi);
    let b = bucket("etag");
    let u = url(&b, "p");
    // Written the way older tools write: no checksum at all, only an ETag.
    let c = plain_client();
    rt().block_on(async {
        for (k, body) in [
            ("p/plain-ok.txt", &b"same content"[..]),
            ("p/plain-bad.txt", &b"evil content"[..]),
        ] {
            c.put_object()
                .bucket(&b)
                .key(k)
                .body(body.to_vec().into())
                .send()
                .await
                .unwrap();
        }
        let id = c
            .create_multipart_upload()
            .bucket(&b)
            .key("p/multi.bin")
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let mut parts = vec![];
        for n in 1..=2 {
            let r = c
                .upload_part()
                .bucket(&b)
                .key("p/multi.bin")
                .upload_id(&id)
                .part_number(n)
                .body(part.clone().into())
                .send()
                .await
                .unwrap();
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(r.e_tag().map(String::from))
                    .build(),
            );
        }
        c.complete_multipart_upload()
            .bucket(&b)
            .key("p/multi.bin")
            .upload_id(&id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    assert!(head(&b, "p/multi.bin").checksum_crc64_nvme().is_none());

    let o = run(&s, args(&["-v", "--verifyContent"], &s, &u));
    assert_eq!(code(&o), 6, "{}", show(&o));
    let log = s.logtext();
    let errors = error_lines(&s);
    let differs: Vec<&String> = errors
        .iter()
        .filter(|l| l.contains("content differs"))
        .collect();
    assert_eq!(differs.len(), 1, "{log}");
    assert!(differs[0].contains("[plain-bad.txt]") && differs[0].contains("MD5 (ETag)"));
    assert!(
        log.lines()
            .any(|l| l.contains("[WARNING")
                && l.contains("Cannot verify the content of [multi.bin]")),
        "{log}"
    );
    assert!(log.contains("1 objects have nothing to compare"), "{log}");
    assert!(
        log.contains("Content of 1 files matches (1 by MD5 (ETag))"),
        "{log}"
    );

    // Unverifiable objects alone do not fail the run.
    s.write("plain-bad.txt", b"evil content");
    let o = run(&s, args(&["-v", "--verifyContent"], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));
}

#[test]
fn max_deletes_stops_a_mass_deletion_after_uploading() {
    let s = Scratch::new();
    s.write("new.txt", b"new");
    let b = bucket("maxdel");
    for i in 0..5 {
        put_object(&b, &format!("p/stale{i}.txt"), b"old");
    }
    let u = url(&b, "p");
    let o = run(&s, args(&["--maxDeletes", "3"], &s, &u));
    assert_eq!(code(&o), 6, "{}", show(&o));
    let k = keys(&b);
    assert!(k.contains("p/new.txt"), "uploads happen first: {k:?}");
    assert_eq!(k.len(), 6, "nothing deleted: {k:?}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("would delete 5 objects") && stdout.contains("--maxDeletes 3"),
        "{stdout}"
    );

    // At the limit it goes through.
    let o = run(&s, args(&["--maxDeletes", "5"], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(keys(&b), BTreeSet::from(["p/new.txt".to_string()]));
}

#[test]
fn dry_run_prints_the_plan_and_leaves_the_bucket_byte_identical() {
    let s = Scratch::new();
    s.write("same.txt", b"unchanged");
    let grown = s.write("grown.txt", b"v1");
    let b = bucket("dry");
    let u = url(&b, "p");
    assert_eq!(code(&run(&s, args(&[], &s, &u))), 0);
    std::fs::write(&grown, b"version 2").unwrap();
    s.write("new.txt", b"new");
    put_object(&b, "p/stale.txt", b"old");
    let before = objects(&b);

    let o = run(&s, args(&["--dryRun"], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(objects(&b), before, "keys, sizes, ETags and LastModified");
    assert_eq!(open_uploads(&b), Vec::<String>::new());
    let stdout = String::from_utf8_lossy(&o.stdout);
    for want in [
        format!("(dryrun) upload: new.txt to s3://{b}/p/new.txt (not in the bucket)"),
        format!(
            "(dryrun) upload: grown.txt to s3://{b}/p/grown.txt (size differs (local 9, bucket 2))"
        ),
        format!("(dryrun) delete: s3://{b}/p/stale.txt"),
    ] {
        assert!(stdout.contains(&want), "{want}\n{stdout}");
    }
    assert!(!stdout.contains("same.txt"), "{stdout}");
    assert!(error_lines(&s).is_empty(), "{}", s.logtext());

    // A guard the real run would trip fails the dry run too, still changing nothing.
    let o = run(&s, args(&["--dryRun", "--maxDeletes", "0"], &s, &u));
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert_eq!(objects(&b), before);
    // With -v the check still runs (it changes nothing anyway) and sees grown.txt.
    let o = run(&s, args(&["--dryRun", "-v"], &s, &u));
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("File size differs [grown.txt]"));
    assert_eq!(objects(&b), before);
    // -q silences the plan.
    let o = run(&s, args(&["--dryRun", "-q"], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(o.stdout.is_empty(), "{}", show(&o));
}

fn summary_of(path: &std::path::Path) -> String {
    validate_json(path, "schema/summary.schema.json");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn summary_file_matches_the_schema_on_success_and_failure() {
    let s = Scratch::new();
    s.write("a.txt", b"aaaa");
    s.write("d/b.txt", b"bbbbbb");
    let b = bucket("summary");
    let u = url(&b, "p");
    let file = s.dir.path().join("out/summary.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let f = file.to_str().unwrap();

    let o = run(&s, args(&["--summaryFile", f], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));
    let text = summary_of(&file);
    for want in [
        "\"exit_status\": 0",
        "\"status\": \"success\"",
        "\"uploaded\": {\"files\": 2, \"bytes\": 10}",
        "\"verified\": 2",
        "\"failures\": []",
        "\"synchronize\": ",
        "\"verify\": ",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    // Only the summary is left in its directory (the temporary file was renamed).
    assert_eq!(
        std::fs::read_dir(file.parent().unwrap()).unwrap().count(),
        1
    );

    // A failed verification: the file and why.
    put_object(&b, "p/a.txt", b"a");
    let o = run(&s, args(&["-v", "--summaryFile", f], &s, &u));
    assert_eq!(code(&o), 6, "{}", show(&o));
    let text = summary_of(&file);
    for want in [
        "\"exit_status\": 6",
        "\"status\": \"failure\"",
        "{\"path\": \"a.txt\", \"reason\": \"size differs: file 4 bytes, object 1 bytes\"}",
        "\"error\": \"Verification failed",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }

    // A logfile that cannot be opened (exit 3) still gets a summary.
    let o = command(&s)
        .args(["-l", "/nonexistent-dir/x.log", "--summaryFile", f])
        .args(args(&[], &s, &u))
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", show(&o));
    let text = summary_of(&file);
    assert!(text.contains("\"exit_status\": 3"), "{text}");
}

#[test]
fn storage_class_and_sse_reach_the_bucket() {
    let s = Scratch::new();
    s.write("small.txt", b"small");
    s.write("big.bin", &vec![3u8; 17 * MIB]);
    let b = bucket("class");
    let u = url(&b, "p");
    let o = run(
        &s,
        args(
            &["--storageClass", "STANDARD_IA", "--sse", "AES256", "-d"],
            &s,
            &u,
        ),
    );
    assert_eq!(code(&o), 0, "{}", show(&o));
    for k in ["p/small.txt", "p/big.bin"] {
        let h = head(&b, k);
        assert_eq!(h.storage_class(), Some(&StorageClass::StandardIa), "{k}");
        assert_eq!(
            h.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256),
            "{k}"
        );
    }
    let listed = rt()
        .block_on(client().list_objects_v2().bucket(&b).send())
        .unwrap();
    for o in listed.contents() {
        assert_eq!(o.storage_class().map(|c| c.as_str()), Some("STANDARD_IA"));
    }
    assert!(s
        .logtext()
        .contains("(5 bytes, CRC64NVME, storage class STANDARD_IA, SSE AES256)"));
}

#[test]
fn bad_values_of_the_new_switches_are_usage_errors() {
    let s = Scratch::new();
    let u = "s3://b/p";
    for bad in [
        &["--storageClass", "COLD"][..],
        &["--storageClass", "standard_ia"],
        &["--sse", "aes256"],
        &["--sseKmsKeyId", "alias/k"],
        &["--sse", "AES256", "--sseKmsKeyId", "alias/k"],
        &["--maxDeletes", "-1"],
        &["--maxDeletes", "x"],
        &["--maxBandwidth", "fast"],
        &["--maxBandwidth", "10MB"],
        &["--maxBandwidth", "0"],
        &["--maxBand", "1MB/s"],
        &["--summaryFile", ""],
        &["--verifyCont"],
        &["--dry"],
    ] {
        let o = run(&s, args(bad, &s, u));
        assert_eq!(code(&o), 2, "{bad:?}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("Usage:") && err.contains("*** Error"),
            "{bad:?}: {err}"
        );
    }
}

/// A tiny S3 stand-in on 127.0.0.1 that answers every listing with an empty page and every
/// other request with 200, and records each request's head (line and headers, lowercased names).
fn recording_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let record = record.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        head += &lower;
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    let reply = if head.starts_with("get ") {
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bkt</Name><Prefix>p/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"
                    } else {
                        ""
                    };
                    record.lock().unwrap().push(head);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nETag: \"0\"\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[test]
fn sse_kms_and_storage_class_headers_are_sent() {
    // SeaweedFS has no KMS (it answers aws:kms with InternalError), so the request itself
    // is checked.
    let (endpoint, seen) = recording_server();
    let s = Scratch::new();
    s.write("f.txt", b"content");
    let o = command(&s)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .args([
            "--sse",
            "aws:kms",
            "--sseKmsKeyId",
            "alias/backup-key",
            "--storageClass",
            "GLACIER_IR",
        ])
        .args(args(&[], &s, "s3://bkt/p"))
        .output()
        .unwrap();
    // The stand-in lists nothing back, so verification fails; only the upload matters here.
    assert_eq!(code(&o), 6, "{}", show(&o));
    let seen = seen.lock().unwrap();
    let put: Vec<&String> = seen
        .iter()
        .filter(|h| h.starts_with("put /bkt/p/f.txt"))
        .collect();
    assert_eq!(put.len(), 1, "{seen:#?}\n{}\n{}", show(&o), s.logtext());
    for want in [
        "x-amz-server-side-encryption: aws:kms\r\n",
        "x-amz-server-side-encryption-aws-kms-key-id: alias/backup-key\r\n",
        "x-amz-storage-class: glacier_ir\r\n",
        "x-amz-checksum-crc64nvme: ",
    ] {
        assert!(put[0].contains(want), "{want}\n{}", put[0]);
    }
}

fn shell_quote(s: &OsStr) -> String {
    format!("'{}'", s.to_str().unwrap().replace('\'', "'\\''"))
}

/// Runs the binary under a pseudo-terminal (util-linux `script`), returning what the terminal
/// showed (stdout and stderr together) and the exit status.
fn run_on_terminal(s: &Scratch, extra: &[&str], u: &str) -> (String, i32) {
    let mut cmd = vec![
        shell_quote(OsStr::new(BIN)),
        "-l".into(),
        shell_quote(s.log().as_os_str()),
    ];
    cmd.extend(args(extra, s, u).into_iter().map(shell_quote));
    // The binary's environment as `command` sets it, and nothing else.
    let c = command(s);
    let mut script = std::process::Command::new("script");
    script
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm");
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    let o = script
        .args(["-q", "-e", "-c", &cmd.join(" "), "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux)");
    (String::from_utf8_lossy(&o.stdout).into_owned(), code(&o))
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let s = Scratch::new();
    for i in 0..3 {
        s.write(format!("f{i}.txt"), b"some bytes");
    }
    let b = bucket("progress");
    let u = url(&b, "p");
    let (screen, status) = run_on_terminal(&s, &[], &u);
    assert_eq!(status, 0, "{screen}");
    assert!(screen.contains("Uploading: "), "{screen:?}");
    assert!(
        screen.contains(" files, ") && screen.contains("/s, "),
        "{screen:?}"
    );
    assert!(
        screen.contains("\r\x1b[K"),
        "the line is erased at the end: {screen:?}"
    );
    assert!(!s.logtext().contains("Uploading: "), "never in the logfile");

    // -q: nothing, even on a terminal.
    s.write("g.txt", b"more");
    let (screen, status) = run_on_terminal(&s, &["-q", "--verifyContent"], &u);
    assert_eq!(status, 0, "{screen}");
    assert!(screen.is_empty(), "{screen:?}");

    // Content verification shows its own line.
    let (screen, status) = run_on_terminal(&s, &["-v", "--verifyContent"], &u);
    assert_eq!(status, 0, "{screen}");
    assert!(screen.contains("Verifying content: "), "{screen:?}");

    // Not a terminal (a pipe): no progress.
    s.write("h.txt", b"even more");
    let o = run(&s, args(&[], &s, &u));
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("Uploading") && !err.contains('\r'), "{err:?}");
}

#[test]
fn the_committed_man_page_is_generated_from_the_switch_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man/cback3-amazons3-sync.1");
    let want = cback3_s3sync::manpage::render();
    if std::env::var_os("UPDATE_MANPAGE").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "man/cback3-amazons3-sync.1 is out of date: run `UPDATE_MANPAGE=1 cargo test --test sync the_committed_man_page` and commit it"
    );
    for sw in cback3_s3sync::options::SWITCHES {
        assert!(have.contains(&format!("\\-\\-{}", sw.long)), "{}", sw.long);
    }
}
