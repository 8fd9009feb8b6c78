//! Servers that reject the 2025 SDK checksums (Backblaze B2, older S3-compatible stores):
//! through tests/s3proxy.py's `reject_checksums`, a run falls back by itself, once, with one
//! WARNING, and every object still equals its file. A rejection of something else is not
//! taken for one.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a test may show what it saw

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumType;

const MIB: usize = 1024 * 1024;
const CONCURRENCY: u64 = 4;
/// Files that go up as multipart uploads (their CreateMultipartUpload holds no permit).
const MULTIPART_FILES: u64 = 1;

/// Small files (one PutObject each, checksum as a header), a streamed 3 MiB file (aws-chunked
/// with the checksum as a trailer) and a 20 MiB multipart upload (two parts).
fn fill(s: &Scratch) {
    for i in 0..12 {
        s.write(
            format!("small/f{i:02}.txt"),
            format!("small file {i} ").repeat(i * 50 + 1).as_bytes(),
        );
    }
    let pattern = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    s.write("streamed.bin", &pattern(3 * MIB + 17, 7));
    s.write("big/multipart.bin", &pattern(20 * MIB + 5, 11));
    // A directory changed in the very second its marker is put gets the marker put once more
    // by the next run (src/sync/plan.rs, changed_since), and that PUT would be rejected too. The first run
    // starts in a later second than the tree's last change, so the later runs put nothing.
    let changed = ["small", "big"]
        .iter()
        .map(|d| std::fs::metadata(s.src().join(d)).unwrap().ctime())
        .max()
        .unwrap();
    poll_until(
        "a second later than the tree",
        Duration::from_secs(3),
        || {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            now.as_secs() as i64 > changed
        },
    );
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>, k: &str) -> u64 {
    after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0)
}

/// The WARNING lines the logfile got since `from` bytes.
fn warnings_since(s: &Scratch, from: usize) -> Vec<String> {
    s.logtext()[from..]
        .lines()
        .filter(|l| l.contains("[WARNING"))
        // SeaweedFS keeps no metadata on directory markers, which a first run says once.
        .filter(|l| !l.contains("no metadata on the directory marker"))
        .map(String::from)
        .collect()
}

/// Syncs the tree through a proxy rejecting `mode`, then checks what the brief asks of a
/// fallback; returns the one WARNING line.
fn falls_back(mode: &str, tag: &str) -> (String, HeadObjectOutput) {
    let s = Scratch::new();
    fill(&s);
    let b = bucket(tag);
    let target = format!("s3://{b}/p");
    let proxy = Proxy::start(5);
    proxy.set(&format!(r#"{{"reject_checksums": "{mode}"}}"#));
    let conc = format!("--maxConcurrency={CONCURRENCY}");
    let sync = |extra: &[&str]| {
        command_via(&s, &proxy.endpoint())
            .args(extra)
            .arg(&conc)
            .arg(s.src())
            .arg(&target)
            .output()
            .unwrap()
    };

    let from = s.logtext().len();
    let o = sync(&[]);
    assert_eq!(code(&o), 0, "{mode}: {}\n{}", show(&o), s.logtext());
    let warnings = warnings_since(&s, from);
    assert_eq!(warnings.len(), 1, "{mode}: one WARNING: {warnings:#?}");
    let stats = proxy.stats();
    let rejections = stats.get("checksum_rejections").copied().unwrap_or(0);
    assert!(rejections >= 1, "{mode}: nothing was rejected: {stats:?}");
    // Only requests already in flight when the run switched were rejected.
    assert!(
        rejections <= CONCURRENCY + MULTIPART_FILES,
        "{mode}: {rejections} rejections: the run did not switch for good"
    );
    assert_eq!(last_uploaded(&s), 14, "{mode}: each file counted once");
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 14);
    assert_eq!(open_uploads(&b), Vec::<String>::new(), "{mode}");

    // A second run finds everything in place; -v and --verifyContent agree.
    let o = sync(&[]);
    assert_eq!(code(&o), 0, "{mode}: {}", show(&o));
    assert_eq!(last_uploaded(&s), 0, "{mode}: second run uploaded again");
    let o = sync(&["-v"]);
    assert_eq!(code(&o), 0, "{mode}: {}", show(&o));
    let o = sync(&["-v", "--verifyContent"]);
    assert_eq!(code(&o), 0, "{mode}: {}\n{}", show(&o), s.logtext());
    let after = proxy.finish();
    assert_eq!(
        delta(&after, &stats, "checksum_rejections"),
        0,
        "{mode}: later runs sent nothing the server rejects"
    );
    eprintln!("{mode}: {rejections} rejections; {}", warnings[0]);
    let multipart = head(&b, "p/big/multipart.bin");
    (warnings.into_iter().next().unwrap(), multipart)
}

#[test]
fn a_server_rejecting_every_checksum_header_gets_none() {
    let (w, multipart) = falls_back("all", "rej-all");
    assert_eq!(multipart.checksum_crc32(), None);
    assert_eq!(multipart.checksum_crc64_nvme(), None);
    assert!(
        w.contains("Unsupported header") && w.contains("no request checksums"),
        "{w}"
    );
    assert!(
        w.contains("request_checksum_calculation = when_required")
            && w.contains("AWS_REQUEST_CHECKSUM_CALCULATION"),
        "{w}"
    );
}

/// The multipart object carries a CRC32 of its parts' CRC32s (COMPOSITE), which the content
/// check must not take for a checksum of the whole file.
fn assert_composite_crc32(h: &aws_sdk_s3::operation::head_object::HeadObjectOutput) {
    assert!(h.checksum_crc32().is_some());
    if on_moto() {
        // moto 5.2.5's own bug: no ChecksumType and no "-N" suffix on a composite value. What
        // it does right: the CRC32 is there, and `-v --verifyContent` (in `falls_back`) does
        // not take it for the file's.
        assert_eq!(h.checksum_type(), None);
    } else {
        assert_eq!(h.checksum_type(), Some(&ChecksumType::Composite));
    }
}

#[test]
fn a_server_rejecting_crc64nvme_gets_crc32() {
    let (w, multipart) = falls_back("crc64nvme", "rej-crc64");
    assert_composite_crc32(&multipart);
    assert!(
        w.contains("CRC64NVME") && w.contains("CRC32 checksums instead"),
        "{w}"
    );
}

#[test]
fn a_server_rejecting_full_object_multipart_checksums_gets_composite_crc32() {
    let (w, multipart) = falls_back("full_object", "rej-full");
    assert_composite_crc32(&multipart);
    assert!(
        w.contains("FULL_OBJECT") && w.contains("CreateMultipartUpload"),
        "{w}"
    );
}

#[test]
fn an_unrelated_invalid_argument_is_not_a_checksum_rejection() {
    let s = Scratch::new();
    for i in 0..3 {
        s.write(format!("f{i}"), b"data");
    }
    let b = bucket("rej-other");
    let proxy = Proxy::start(5);
    // B2's wording, for a header that has nothing to do with checksums: every upload has it.
    proxy.set(r#"{"reject_header": "x-amz-meta-mtime"}"#);
    let o = command_via(&s, &proxy.endpoint())
        .arg(s.src())
        .arg(format!("s3://{b}/p"))
        .output()
        .unwrap();
    let stats = proxy.finish();
    assert_eq!(code(&o), 6, "{}", show(&o));
    let log = s.logtext();
    assert!(
        log.contains("InvalidArgument: Unsupported header 'x-amz-meta-mtime'"),
        "{log}"
    );
    assert!(!log.contains("[WARNING"), "no fallback: {log}");
    // Each file tried once: no retry with fewer checksums.
    assert_eq!(
        stats.get("header_rejections").copied(),
        Some(3),
        "{stats:?}"
    );
    assert!(objects(&b).is_empty());
}

#[test]
fn deletes_still_work_when_the_server_rejects_every_checksum_header() {
    let s = Scratch::new();
    s.write("kept.txt", b"kept");
    let b = bucket("rej-del");
    for i in 0..3 {
        put_object(&b, &format!("p/gone{i}.txt"), b"no local file");
    }
    let proxy = Proxy::start(5);
    proxy.set(r#"{"reject_checksums": "all"}"#);
    let o = command_via(&s, &proxy.endpoint())
        .arg(s.src())
        .arg(format!("s3://{b}/p"))
        .output()
        .unwrap();
    let stats = proxy.finish();
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    // DeleteObjects must carry a checksum (the SDK sends a CRC32, no Content-MD5): refused,
    // the keys go one by one with DeleteObject, which needs none.
    let log = s.logtext();
    assert!(log.contains("DeleteObjects of 3 keys was refused"), "{log}");
    assert!(stats["checksum_rejections"] >= 2, "{stats:?}");
    assert_mirror(&b, "p/", &s.src());
}

#[test]
fn a_multipart_upload_whose_parts_are_rejected_starts_again_without_checksums() {
    let s = Scratch::new();
    let body: Vec<u8> = (0..20 * MIB + 3).map(|i| (i % 251) as u8).collect();
    s.write("big.bin", &body);
    let b = bucket("rej-part");
    let proxy = Proxy::start(5);
    // CreateMultipartUpload (POST) goes through; its parts (PUT) are refused.
    proxy.set(r#"{"reject_checksums": "all", "reject_methods": ["PUT"]}"#);
    let o = command_via(&s, &proxy.endpoint())
        .arg(s.src())
        .arg(format!("s3://{b}/p"))
        .output()
        .unwrap();
    let stats = proxy.finish();
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    let warnings = warnings_since(&s, 0);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("UploadPart"), "{}", warnings[0]);
    // At most the two parts were in flight with checksums.
    let rejections = stats["checksum_rejections"];
    assert!((1..=2).contains(&rejections), "{stats:?}");
    assert_eq!(last_uploaded(&s), 1);
    assert_mirror(&b, "p/", &s.src());
    assert_eq!(
        open_uploads(&b),
        Vec::<String>::new(),
        "the first upload was aborted"
    );
}
