//! The sync as a stream: the walk and the listing meet in S3's key order whatever order the
//! server lists in, what waits for the end waits in temporary files (TMPDIR), and a task that
//! panics is a counted failure.

use std::collections::BTreeSet;

use crate::common::*;

/// Names whose key order differs from a plain directory walk: `a` (a directory, so `a/`) sorts
/// after `a b`, `a!`, `a-b` and `a.txt`, and before `a0`; non-ASCII sorts after ASCII.
const TRICKY: [&str; 11] = [
    "a b", "a!", "a-b", "a.txt", "a/b", "a/b-c/d", "a/b.c", "a0", "ab/c", "é.txt", "z/é/ü",
];

/// The summary file's count of files uploaded.
fn uploaded(text: &str) -> u64 {
    summary_number(text, r#"uploaded": {"files"#)
}

fn summary(s: &Scratch, b: &str, extra: &[&str]) -> (std::process::Output, String) {
    let file = s.home().join("summary.json");
    let o = command(s)
        .args(extra)
        .arg(format!("--summaryFile={}", file.display()))
        .arg(s.src())
        .arg(url(b, "p"))
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    (o, text)
}

#[test]
fn keys_in_another_order_than_a_directory_walk_sync_once_then_nothing() {
    let s = Scratch::new();
    for (i, name) in TRICKY.iter().enumerate() {
        s.write(name, format!("body {i}").as_bytes());
    }
    let b = bucket("order");
    // Objects with no file, sorting between the files: deleted, and nothing else.
    put_object(&b, "p/a-a", b"stale");
    put_object(&b, "p/a/b-b", b"stale");
    put_object(&b, "p/a/c", b"stale");
    put_object(&b, "p/ä", b"stale");
    let (o, text) = summary(&s, &b, &[]);
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert_eq!(uploaded(&text), TRICKY.len() as u64, "{text}");
    assert_eq!(summary_number(&text, "deleted"), 4, "{text}");
    let want: BTreeSet<String> = TRICKY.iter().map(|n| format!("p/{n}")).collect();
    assert_eq!(file_objects(&b).into_keys().collect::<BTreeSet<_>>(), want);
    assert_mirror(&b, "p/", &s.src());
    // The second run finds every file's object, whatever order the server lists them in
    // (SeaweedFS lists `a/b` before `a-b`).
    let before = file_objects(&b);
    let (o, text) = summary(&s, &b, &[]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(uploaded(&text), 0, "{text}");
    assert_eq!(summary_number(&text, "deleted"), 0, "{text}");
    assert_eq!(
        summary_number(&text, "unchanged"),
        TRICKY.len() as u64,
        "{text}"
    );
    assert_eq!(file_objects(&b), before);
}

#[test]
fn deletes_wait_on_disk_and_a_run_without_a_usable_tmpdir_changes_nothing() {
    let s = Scratch::new();
    s.write("keep.txt", b"k");
    let b = bucket("spill");
    // More than one DeleteObjects batch (1000 keys), read back from the spill file in order.
    let stale = 2500;
    let client = client();
    rt().block_on(async {
        let mut puts = tokio::task::JoinSet::new();
        for i in 0..stale {
            let (c, b) = (client.clone(), b.clone());
            puts.spawn(async move {
                c.put_object()
                    .bucket(b)
                    .key(format!("p/old/{i:05}"))
                    .body(Vec::from(&b"x"[..]).into())
                    .send()
                    .await
                    .unwrap();
            });
            if puts.len() >= 32 {
                puts.join_next().await;
            }
        }
        while puts.join_next().await.is_some() {}
    });
    // The spill files live in TMPDIR: where it cannot be written, the run fails with one line
    // before it changes anything.
    let nowhere = s.home().join("no-such-dir");
    let o = command(&s)
        .env("TMPDIR", &nowhere)
        .arg(s.src())
        .arg(url(&b, "p"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    assert!(
        s.logtext().contains("cannot use a temporary file (TMPDIR)"),
        "{}",
        s.logtext()
    );
    assert_eq!(file_objects(&b).len(), stale, "nothing deleted");
    assert!(
        !file_objects(&b).contains_key("p/keep.txt"),
        "nothing uploaded"
    );

    // With a TMPDIR of its own, the run deletes every stale object and leaves nothing there.
    let tmp = s.home().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let file = s.home().join("summary.json");
    let o = command(&s)
        .env("TMPDIR", &tmp)
        .arg(format!("--summaryFile={}", file.display()))
        .arg(s.src())
        .arg(url(&b, "p"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(summary_number(&text, "deleted"), stale as u64, "{text}");
    assert_eq!(
        file_objects(&b).into_keys().collect::<Vec<_>>(),
        ["p/keep.txt"]
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "no temporary file left"
    );
}

#[test]
fn a_panicked_upload_task_is_a_counted_failure_and_nothing_is_deleted() {
    let s = Scratch::new();
    for i in 0..20 {
        s.write(format!("f{i:02}.txt"), b"data");
    }
    s.write("boom.txt", b"this one's task panics");
    let b = bucket("panic");
    put_object(&b, "p/stale.txt", b"old");
    let file = s.home().join("summary.json");
    let o = command(&s)
        .env("CBACK3_TEST_PANIC_UPLOAD", "boom")
        .arg(format!("--summaryFile={}", file.display()))
        .arg(s.src())
        .arg(url(&b, "p"))
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_ne!(code(&o), 0, "{}", show(&o));
    assert_eq!(summary_number(&text, "failed"), 1, "{text}");
    assert_eq!(uploaded(&text), 20, "{text}");
    assert!(
        text.contains("boom.txt") && text.contains("test hook"),
        "{text}"
    );
    assert!(
        s.logtext()
            .contains("1 uploads failed; nothing was deleted"),
        "{}",
        s.logtext()
    );
    let keys = file_objects(&b);
    assert!(
        keys.contains_key("p/stale.txt"),
        "nothing deleted after a failure"
    );
    assert!(!keys.contains_key("p/boom.txt"));
    assert_eq!(keys.len(), 21);
}
