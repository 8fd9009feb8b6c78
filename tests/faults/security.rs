//! Secrets stay secret, the logfile gets its mode at creation, and a run touches nothing
//! outside its source tree (locally) and its prefix (in the bucket).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::common::*;

fn secret() -> String {
    server()
        .env
        .iter()
        .find(|(k, _)| k == "AWS_SECRET_ACCESS_KEY")
        .unwrap()
        .1
        .clone()
}

fn assert_no_secrets(what: &str, text: &str) {
    for needle in [
        secret().as_str(),
        "Signature=",
        "X-Amz-Signature",
        "AWS4-HMAC-SHA256",
        "session-token-value",
    ] {
        assert!(
            !text.contains(needle),
            "{what} contains {needle:?}:\n{text}"
        );
    }
}

#[test]
fn secrets_never_reach_the_screen_or_the_logfile() {
    needs_seaweedfs("a wrong secret rejected");
    let s = Scratch::new();
    s.write("a.txt", b"a");
    s.write("d/b.txt", b"b");
    let big: Vec<u8> = vec![3u8; 17 * 1024 * 1024];
    s.write("big.bin", &big);
    let b = bucket("secrets");
    put_object(&b, "p/stale", b"deleted by the run");
    let loud = ["-d", "-O", "-b", "-s"];
    // A good run (uploads, a multipart upload, a delete, verify), all with full detail.
    let o = command(&s)
        .args(loud)
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        s.logtext().contains("PutObject") && s.logtext().contains("CompleteMultipartUpload"),
        "-d -O records every operation: {}",
        s.logtext()
    );
    // Failing runs: a wrong secret, a session token the server rejects, and server errors.
    let proxy = Proxy::start(9);
    proxy.set(r#"{"fault_rate": 1, "faults": ["500"]}"#);
    let runs = [
        command(&s)
            .env("AWS_SECRET_ACCESS_KEY", format!("{}-wrong", secret()))
            .args(loud)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap(),
        command(&s)
            .env("AWS_SESSION_TOKEN", "session-token-value")
            .args(loud)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap(),
        command_via(&s, &proxy.endpoint())
            .env("AWS_MAX_ATTEMPTS", "2")
            .args(loud)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap(),
    ];
    for o in &runs {
        assert_eq!(code(o), 6, "{}", show(o));
        assert_no_secrets("stdout", &String::from_utf8_lossy(&o.stdout));
        assert_no_secrets("stderr", &String::from_utf8_lossy(&o.stderr));
    }
    assert_no_secrets("stdout", &stdout);
    assert_no_secrets("stderr", &String::from_utf8_lossy(&o.stderr));
    assert_no_secrets("the logfile", &s.logtext());
    assert!(
        s.logtext().contains("[DEBUG"),
        "the logfile has debug detail"
    );
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn logfile_mode_is_set_at_creation_and_an_existing_one_keeps_its_mode() {
    let s = Scratch::new();
    s.write("a", b"a");
    let b = bucket("logmode");
    for (mode, umask) in [("600", 0o000), ("640", 0o077), ("644", 0o022)] {
        let log = s.dir.path().join(format!("new-{mode}.log"));
        let mut c = command(&s);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
        let o = c
            .args(["-m", mode, "-l"])
            .arg(&log)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", show(&o));
        assert_eq!(
            mode_of(&log),
            u32::from_str_radix(mode, 8).unwrap(),
            "-m {mode} under umask {umask:o}"
        );
        assert!(std::fs::read_to_string(&log)
            .unwrap()
            .contains("completed with status 0"));
    }
    let existing = s.dir.path().join("existing.log");
    std::fs::write(&existing, b"earlier lines\n").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o604)).unwrap();
    let o = command(&s)
        .args(["-m", "600", "-l"])
        .arg(&existing)
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(mode_of(&existing), 0o604);
    assert!(std::fs::read_to_string(&existing)
        .unwrap()
        .starts_with("earlier lines\n"));
}

/// Names, sizes, mtimes and bytes of everything under a directory (not following links).
fn snapshot(root: &Path) -> BTreeMap<String, (u64, i64, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if m.is_dir() {
                stack.push(p.clone());
            }
            let body = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.insert(
                rel,
                (m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000, body),
            );
        }
    }
    out
}

#[test]
fn nothing_outside_the_tree_or_the_prefix_is_touched() {
    let s = Scratch::new();
    s.write("a.txt", b"inside");
    let outside = s.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("o.txt"), b"followed through a link").unwrap();
    std::os::unix::fs::symlink(&outside, s.src().join("linked")).unwrap();
    let b = bucket("confined");
    let neighbours = ["p2/x", "p-old/y", "p", "pp/z", "q/p/w", "top"];
    for k in neighbours {
        put_object(&b, k, k.as_bytes());
    }
    put_object(&b, "p/stale", b"deleted");
    let before_outside = snapshot(&outside);
    let before_src = snapshot(&s.src());
    let before_objs = objects(&b);
    for args in [vec![], vec!["-u"], vec!["-v"], vec![]] {
        let o = command(&s)
            .args(&args)
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{args:?}: {}", show(&o));
    }
    let after = objects(&b);
    for k in neighbours {
        assert_eq!(
            after.get(k),
            before_objs.get(k),
            "{k} outside the prefix changed"
        );
    }
    let under: Vec<&String> = after.keys().filter(|k| k.starts_with("p/")).collect();
    // The linked directory is copied as the directory it leads to: its marker too.
    assert_eq!(under, ["p/a.txt", "p/linked/", "p/linked/o.txt"]);
    assert_eq!(get_object(&b, "p/linked/o.txt"), b"followed through a link");
    assert_eq!(
        snapshot(&outside),
        before_outside,
        "the link target was changed"
    );
    assert_eq!(snapshot(&s.src()), before_src, "the source was changed");
}
