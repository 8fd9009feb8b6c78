//! Deletes that cannot be batched or fail, signals at any moment of a run, and stray multipart
//! uploads, against the real server (and tests/s3proxy.py where a fault is needed).

mod common;

use std::collections::BTreeSet;

use common::*;

fn url(bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{prefix}")
}

fn keys(bucket: &str) -> BTreeSet<String> {
    objects(bucket).into_keys().collect()
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
