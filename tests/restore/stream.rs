//! The restore as a stream: keys in S3's byte order (which is not the order of a directory
//! walk), and a download task that panics counted as a failure.

use std::path::Path;

use crate::common::*;
use crate::restore::{restore_counts, summary_line};

/// "failed" of the summary file's top level (the run's failures in all).
fn summary_failed(summary: &Path) -> u64 {
    let text = std::fs::read_to_string(summary).unwrap();
    let at = text.find("\"failed\": ").expect("failed") + 10;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

fn restore_cmd(s: &Scratch, target: &Path, u: &str, summary: &Path) -> std::process::Command {
    let mut c = command(s);
    c.args(["--restore", "--maxConcurrency", "2"])
        .arg(format!("--summaryFile={}", summary.display()))
        .arg(target)
        .arg(u);
    c
}

/// Keys whose byte order differs from a directory walk's (`a b`, `a-b`, `a.txt` sort between
/// the directory `a` and its contents; `a0` after them; non-ASCII last) all come back, beside
/// a directory marker and nested directories, with the right counts; a rerun finds every one
/// already present.
#[test]
fn keys_in_s3_order_unlike_a_walk_all_come_back_with_right_counts() {
    let s = Scratch::new();
    let b = bucket("order");
    let files = [
        "a b",
        "a+b",
        "a-b",
        "a.txt",
        "a/b",
        "a/b-c/d",
        "a/b.c",
        "a/b0/c",
        "a/é",
        "a0",
        "b/a.txt",
        "b/a/x",
        "é",
        "é/ü.txt",
        "ü-1",
    ];
    // `é` beside `é/ü.txt` is refused; every other name is a file.
    let refused = ["é"];
    for f in files {
        put_object(&b, &format!("p/{f}"), f.as_bytes());
    }
    put_object(&b, "p/a/", b"");
    let target = s.dir.path().join("t");
    let summary = s.dir.path().join("summary.json");
    let o = restore_cmd(&s, &target, &url(&b, "p"), &summary)
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "the refused key fails the run: {}", show(&o));
    let restored = files.len() - refused.len();
    for f in files.iter().filter(|f| !refused.contains(f)) {
        assert_eq!(std::fs::read(target.join(f)).unwrap(), f.as_bytes(), "{f}");
    }
    assert!(target.join("é").is_dir());
    let c = restore_counts(&summary);
    let want = [
        ("objects", files.len() as u64 + 1),
        ("restored", restored as u64),
        ("verified", restored as u64),
        ("unchanged", 0),
        ("refused", 1),
        ("failed", 0),
        ("missing", 0),
        ("directory_markers", 1),
    ];
    for (k, v) in want {
        assert_eq!(c[k], v, "{k}: {c:?}");
    }
    let errs: Vec<String> = s
        .logtext()
        .lines()
        .filter(|l| l.contains("[ERROR"))
        .map(String::from)
        .collect();
    assert!(
        errs.iter()
            .any(|l| l.contains("Refusing object") && l.contains("/p/é:")),
        "{errs:?}"
    );
    // A rerun: everything that came back is already present.
    let o = restore_cmd(&s, &target, &url(&b, "p"), &summary)
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    let c = restore_counts(&summary);
    assert_eq!(
        (c["restored"], c["unchanged"], c["verified"]),
        (0, restored as u64, restored as u64),
        "{c:?}"
    );
    let line = summary_line(&s);
    assert!(
        line.contains(&format!("already present {restored}")),
        "{line}"
    );
}

/// A download task that panics (the debug build's test hook, for keys containing a marker
/// string) is a counted failure with its file named, never lost: the run exits 6, the summary
/// counts it, and every other file is restored.
#[test]
fn a_panicked_download_task_is_a_counted_failure() {
    let s = Scratch::new();
    let b = bucket("panic");
    let names = ["a", "b/boom-here", "b/c", "d", "e/f"];
    for n in names {
        put_object(&b, &format!("p/{n}"), n.as_bytes());
    }
    let target = s.dir.path().join("t");
    let summary = s.dir.path().join("summary.json");
    let o = restore_cmd(&s, &target, &url(&b, "p"), &summary)
        .env("CBACK3_TEST_RESTORE_PANIC", "boom")
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    for n in names.iter().filter(|n| !n.contains("boom")) {
        assert_eq!(std::fs::read(target.join(n)).unwrap(), n.as_bytes(), "{n}");
    }
    assert!(!target.join("b/boom-here").exists());
    let c = restore_counts(&summary);
    assert_eq!(
        (c["restored"], c["failed"], c["verified"], c["missing"]),
        (4, 1, 4, 0),
        "{c:?}"
    );
    assert_eq!(summary_failed(&summary), 1);
    let line = summary_line(&s);
    assert!(
        line.contains("restored 4 (") && line.contains("failed 1"),
        "{line}"
    );
    let log = s.logtext();
    assert!(
        log.lines().any(|l| l.contains("[ERROR")
            && l.contains("b/boom-here")
            && l.contains("internal error: test hook")),
        "{log}"
    );
    // Without the hook the rerun completes what is left.
    let o = restore_cmd(&s, &target, &url(&b, "p"), &summary)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(
        std::fs::read(target.join("b/boom-here")).unwrap(),
        b"b/boom-here"
    );
}
