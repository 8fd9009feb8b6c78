//! The real binary's logfile (mode, owner, appending, format), screen levels, exit codes
//! of the informational switches, and logging failures. Every run here fails before any S3
//! request (malformed bucket URL), after logging, with exit status 6.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_cback3-amazons3-sync");
const BAD_URL: &str = "s3:/x";

fn command(umask: &str, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TZ", "XYZ-3");
    c
}

fn run(args: &[&str]) -> Output {
    command("022", args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn uid_of(user: &str) -> Option<u32> {
    let c = CString::new(user).unwrap();
    // SAFETY: getpwnam returns null or a pointer to static data, read at once.
    let p = unsafe { libc::getpwnam(c.as_ptr()) };
    (!p.is_null()).then(|| unsafe { (*p).pw_uid })
}

fn gid_of(group: &str) -> Option<u32> {
    let c = CString::new(group).unwrap();
    // SAFETY: as above.
    let p = unsafe { libc::getgrnam(c.as_ptr()) };
    (!p.is_null()).then(|| unsafe { (*p).gr_gid })
}

/// Runs with a bad URL and a fresh logfile in a temp dir; returns (output, log text, path).
fn failing_run(extra: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cback3.log");
    let mut args = vec!["-l", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[dir.path().to_str().unwrap(), BAD_URL]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    let content = fs::read_to_string(&log).unwrap();
    (out, content)
}

/// `YYYY-MM-DDTHH:MM:SS TZ --> [LEVEL  ] message`, checked by hand.
fn check_line(line: &str) -> (&str, &str) {
    let (stamp, rest) = line
        .split_once(" --> [")
        .unwrap_or_else(|| panic!("no separator: {line:?}"));
    let b = stamp.as_bytes();
    assert!(b.len() > 20, "{line:?}");
    for (i, c) in b[..19].iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-', "{line:?}"),
            10 => assert_eq!(*c, b'T', "{line:?}"),
            13 | 16 => assert_eq!(*c, b':', "{line:?}"),
            _ => assert!(c.is_ascii_digit(), "{line:?}"),
        }
    }
    assert_eq!(&stamp[19..], " XYZ", "local time zone name: {line:?}");
    let level = &rest[..7];
    assert!(
        ["DEBUG  ", "INFO   ", "WARNING", "ERROR  "].contains(&level),
        "{line:?}"
    );
    assert_eq!(&rest[7..9], "] ", "{line:?}");
    (level.trim_end(), &rest[9..])
}

fn levels_in(log: &str) -> Vec<&str> {
    log.lines().map(|l| check_line(l).0).collect()
}

#[test]
fn every_line_has_the_cedar_format_and_the_run_is_framed() {
    let (_, log) = failing_run(&["--maxConcurrency=3"]);
    let msgs: Vec<&str> = log.lines().map(|l| check_line(l).1).collect();
    assert_eq!(msgs[0], "Cedar Backup Amazon S3 sync run started.");
    assert!(
        msgs[1].starts_with("Options were [--logfile \""),
        "{}",
        msgs[1]
    );
    assert!(msgs[1].contains("\" --maxConcurrency 3 \""), "{}", msgs[1]);
    assert!(
        msgs[1].ends_with(&format!("\"{BAD_URL}\" ]")),
        "{}",
        msgs[1]
    );
    assert!(msgs[2].starts_with("Logfile is ["), "{}", msgs[2]);
    let titles: Vec<&str> = msgs[3..9]
        .iter()
        .map(|m| m.split('.').next().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Encoding",
            "Interpreter",
            "Locale",
            "Platform",
            "Timestamp",
            "Version"
        ]
    );
    assert!(msgs.iter().any(|m| m.contains(BAD_URL)));
    assert_eq!(
        *msgs.last().unwrap(),
        "Cedar Backup Amazon S3 sync run completed with status 6."
    );
}

#[test]
fn screen_and_file_levels_follow_the_switches() {
    // (switches, DEBUG in file, lines on screen: ERROR only / INFO too / DEBUG too / none)
    #[derive(Debug, PartialEq)]
    enum Screen {
        Errors,
        Info,
        Debug,
        Nothing,
    }
    let cases: &[(&[&str], bool, Screen)] = &[
        (&[], false, Screen::Errors),
        (&["-q"], false, Screen::Nothing),
        (&["-b"], false, Screen::Info),
        (&["-d"], true, Screen::Errors),
        (&["-b", "-d"], true, Screen::Debug),
        (&["-q", "-b", "-d"], true, Screen::Nothing),
        (&["-O"], false, Screen::Errors),
    ];
    for (switches, file_debug, screen) in cases {
        let (out, log) = failing_run(switches);
        let levels = levels_in(&log);
        assert!(levels.contains(&"INFO"), "{switches:?}");
        assert!(levels.contains(&"ERROR"), "{switches:?}");
        assert_eq!(
            levels.contains(&"DEBUG"),
            *file_debug,
            "{switches:?}: {log}"
        );
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let error_line = lines
            .iter()
            .any(|l| l.contains(BAD_URL) && !l.contains('['));
        let info_line = lines.contains(&"Cedar Backup Amazon S3 sync run started.");
        let debug_line = lines.iter().any(|l| l.starts_with("Parsed options: "));
        let got = match (error_line, info_line, debug_line) {
            (false, false, false) if lines.is_empty() => Screen::Nothing,
            (true, false, false) if lines.len() == 1 => Screen::Errors,
            (true, true, false) => Screen::Info,
            (true, true, true) => Screen::Debug,
            _ => panic!("{switches:?}: unexpected screen {stdout:?}"),
        };
        assert_eq!(&got, screen, "{switches:?}: {stdout:?}");
        // Screen lines are bare messages.
        assert!(lines.iter().all(|l| !l.contains(" --> [")), "{stdout:?}");
        assert_eq!(text(&out.stderr), "", "{switches:?}");
    }
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn new_logfile_gets_the_mode_whatever_the_umask() {
    for (umask, mode, want) in [
        ("077", "644", 0o644),
        ("022", "600", 0o600),
        ("077", "0o666", 0o666),
        ("000", "640", 0o640),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        let out = command(
            umask,
            &["-m", mode, "-l", log.to_str().unwrap(), "src", BAD_URL],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(6));
        assert_eq!(mode_of(&log), want, "umask {umask}, -m {mode}");
    }
    // Default mode 640, under a umask that would remove group read.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.log");
    let out = command("077", &["-l", log.to_str().unwrap(), "src", BAD_URL])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(mode_of(&log), 0o640);
}

#[test]
fn new_logfile_gets_the_owner_if_it_exists() {
    let nobody = uid_of("nobody").expect("user nobody");
    let nogroup = gid_of("nogroup").expect("group nogroup");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("o.log");
    let l = log.to_str().unwrap();
    assert_eq!(
        run(&["-o", "nobody:nogroup", "-l", l, "s", BAD_URL])
            .status
            .code(),
        Some(6)
    );
    let md = fs::metadata(&log).unwrap();
    assert_eq!((md.uid(), md.gid()), (nobody, nogroup));
    assert!(fs::read_to_string(&log).unwrap().contains("run started"));

    // An unknown user (or group) leaves the new file with the creator's owner.
    let me = (unsafe { libc::geteuid() }, unsafe { libc::getegid() });
    for owner in ["no-such-user-xyz:nogroup", "nobody:no-such-group-xyz"] {
        let log = dir.path().join(format!("{}.log", owner.len()));
        let l = log.to_str().unwrap();
        assert_eq!(
            run(&["-o", owner, "-l", l, "s", BAD_URL]).status.code(),
            Some(6)
        );
        let md = fs::metadata(&log).unwrap();
        assert_eq!((md.uid(), md.gid()), me, "{owner}");
    }

    // Default owner root:adm (when both exist, which is where Cedar Backup runs).
    let log = dir.path().join("default.log");
    assert_eq!(
        run(&["-l", log.to_str().unwrap(), "s", BAD_URL])
            .status
            .code(),
        Some(6)
    );
    let md = fs::metadata(&log).unwrap();
    let want = match (uid_of("root"), gid_of("adm")) {
        (Some(u), Some(g)) => (u, g),
        _ => me,
    };
    assert_eq!((md.uid(), md.gid()), want);
}

#[test]
fn existing_logfile_keeps_mode_and_owner_and_is_appended_to() {
    let nobody = uid_of("nobody").expect("user nobody");
    let nogroup = gid_of("nogroup").expect("group nogroup");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("old.log");
    fs::write(&log, "an earlier line\n").unwrap();
    fs::set_permissions(&log, fs::Permissions::from_mode(0o604)).unwrap();
    std::os::unix::fs::chown(&log, Some(nobody), Some(nogroup)).unwrap();
    let l = log.to_str().unwrap();
    for _ in 0..2 {
        let out = run(&["-m", "600", "-o", "root:root", "-l", l, "s", BAD_URL]);
        assert_eq!(out.status.code(), Some(6));
    }
    let md = fs::metadata(&log).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o604);
    assert_eq!((md.uid(), md.gid()), (nobody, nogroup));
    let content = fs::read_to_string(&log).unwrap();
    assert!(content.starts_with("an earlier line\n"));
    assert_eq!(content.matches("run started.").count(), 2, "{content}");
    levels_in(content.split_once('\n').unwrap().1);
}

#[test]
fn unusable_logfile_exits_3_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/x.log");
    for log in [missing.to_str().unwrap(), dir.path().to_str().unwrap()] {
        let out = run(&["-l", log, "s", BAD_URL]);
        assert_eq!(out.status.code(), Some(3), "{log}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("Error setting up logging: "), "{err}");
        assert!(err.contains(log), "{err}");
        assert_eq!(text(&out.stdout), "");
        // -s: the whole chain of causes.
        let out = run(&["-s", "-l", log, "s", BAD_URL]);
        assert_eq!(out.status.code(), Some(3));
        assert!(
            text(&out.stderr).lines().count() > 1,
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!missing.exists());
}

#[test]
fn informational_switches() {
    let out = run(&["-V"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(&format!("cback3-s3sync) {}", env!("CARGO_PKG_VERSION"))));
    assert_eq!(text(&out.stderr), "");

    let out = run(&["--diag"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    // The diagnostics block; the effective configuration follows it (tests/aws/user_setup.rs).
    let (stdout, configuration) = stdout.split_once("Effective configuration").unwrap();
    assert!(configuration.contains("Region..."), "{configuration}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("..: ")).collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert!(lines.iter().all(|l| l.find(": ") == lines[0].find(": ")));

    let out = run(&["-h"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "");
    let usage = text(&out.stderr);
    for name in [
        "--verifyOnly",
        "--maxConcurrency",
        "--allowEmptySource",
        "-l, --logfile",
    ] {
        assert!(usage.contains(name), "{name}");
    }

    // Help and version need no positionals and touch no logfile.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("never.log");
    let out = run(&["-l", log.to_str().unwrap(), "-V", "-D", "-h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!log.exists());
}

#[test]
fn bad_command_lines_exit_2_with_usage_and_one_error_line() {
    for (args, msg) in [
        (&["-x", "a", "b"][..], "option -x not recognized"),
        (&["--ver"][..], "option --ver not a unique prefix"),
        (&["-l"][..], "option -l requires argument"),
        (&["-m", "999", "a", "b"][..], "mode"),
        (&["onlyone"][..], "source directory"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stdout), "", "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("Usage: cback3-amazons3-sync"), "{err}");
        let last = err.lines().last().unwrap();
        assert!(last.starts_with(" *** Error: "), "{last}");
        assert!(last.contains(msg), "{args:?}: {last}");
        assert_eq!(err.matches("*** Error").count(), 1);
    }
}
