//! The AWS CLI's `s3 =` settings of the selected profile (in a scratch `AWS_CONFIG_FILE`) and
//! `--maxBandwidth`, against the real test server: multipart threshold and part size,
//! concurrency, the bandwidth limit over the whole run, and one-line errors for bad values.

use std::ffi::OsStr;
use std::process::{Command, Output};

use crate::common::*;

const MIB: usize = 1024 * 1024;

/// `command` with `AWS_CONFIG_FILE` holding a default profile with this `s3` block (the
/// endpoint, region and keys still come from the server's environment variables).
fn with_s3_block(s: &Scratch, block: &str) -> Command {
    let config = s.dir.path().join("aws-config");
    std::fs::write(&config, format!("[default]\ns3 =\n{block}\n")).unwrap();
    let mut c = command(s);
    c.env("AWS_CONFIG_FILE", &config);
    c
}

fn sync_args<'a>(extra: &'a [&'a str], s: &Scratch, u: &'a str) -> Vec<&'a OsStr> {
    let mut v: Vec<&OsStr> = extra.iter().map(OsStr::new).collect();
    v.push(s.src().into_os_string().leak());
    v.push(OsStr::new(u));
    v
}

/// The `-D` line that starts with `title`.
fn diag_line(o: &Output, title: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find(|l| l.trim_start().starts_with(title))
        .unwrap_or_else(|| panic!("no {title} line in\n{out}"))
        .to_string()
}

#[test]
fn the_profiles_multipart_threshold_and_chunksize_decide_how_a_file_goes_up() {
    let s = Scratch::new();
    // 12 MiB: one PutObject with our defaults (16 MiB threshold).
    let body: Vec<u8> = (0..12 * MIB).map(|i| (i % 251) as u8).collect();
    s.write("twelve.bin", &body);
    let block = "  multipart_threshold = 8MB\n  multipart_chunksize = 5MB";
    let o = with_s3_block(&s, block).arg("-D").output().unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let line = diag_line(&o, "Multipart");
    assert!(
        line.contains("files of 8 MiB or more (s3 multipart_threshold of profile default)")
            && line.contains("in parts of 5 MiB (s3 multipart_chunksize of profile default"),
        "{line}"
    );

    let b = bucket("profmp");
    let u = format!("s3://{b}/p");
    let o = with_s3_block(&s, block)
        .args(sync_args(&[], &s, &u))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let etag = head(&b, "p/twelve.bin").e_tag().unwrap().to_string();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "3 parts of 5, 5, 2 MiB: {etag}"
    );
    assert_eq!(get_object(&b, "p/twelve.bin"), body);

    // A chunk size under S3's minimum is raised to 5 MiB, as the AWS CLI does.
    let o = with_s3_block(&s, "  multipart_chunksize = 1MB")
        .arg("-D")
        .output()
        .unwrap();
    assert!(
        diag_line(&o, "Multipart").contains("in parts of 5 MiB"),
        "{}",
        show(&o)
    );
}

#[test]
fn the_profiles_max_concurrent_requests_is_the_default_concurrency() {
    let s = Scratch::new();
    let block = "  max_concurrent_requests = 3";
    let o = with_s3_block(&s, block).arg("-D").output().unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        diag_line(&o, "Max concurrency")
            .contains("3 requests (s3 max_concurrent_requests of profile default)"),
        "{}",
        show(&o)
    );
    // The switch wins.
    let o = with_s3_block(&s, block)
        .args(["-D", "--maxConcurrency", "7"])
        .output()
        .unwrap();
    assert!(diag_line(&o, "Max concurrency").contains("7 requests (--maxConcurrency)"));

    // And a run uses it.
    for i in 0..5 {
        s.write(format!("f{i}"), b"x");
    }
    let b = bucket("profconc");
    let u = format!("s3://{b}/p");
    let o = with_s3_block(&s, block)
        .args(sync_args(&["-d"], &s, &u))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        s.logtext().contains("3 requests at a time"),
        "{}",
        s.logtext()
    );
    assert_eq!(objects(&b).len(), 5);
}

#[test]
fn bad_s3_settings_fail_the_run_with_one_line() {
    let s = Scratch::new();
    s.write("f", b"x");
    let b = bucket("profbad");
    let u = format!("s3://{b}/p");
    for (block, want) in [
        (
            "  max_concurrent_requests = 0",
            "s3 setting max_concurrent_requests of profile default: needs a whole number from 1 to 1000, not \"0\"",
        ),
        (
            "  multipart_chunksize = 5.5MB",
            "s3 setting multipart_chunksize of profile default: \"5.5MB\" is not a size",
        ),
        (
            "  max_bandwidth = fast",
            "s3 setting max_bandwidth of profile default: \"fast\" is not a rate",
        ),
        // The test server is a custom endpoint: no Transfer Acceleration there.
        (
            "  use_accelerate_endpoint = true",
            "s3 setting use_accelerate_endpoint = true of profile default cannot be used with the custom endpoint",
        ),
    ] {
        let o = with_s3_block(&s, block)
            .args(sync_args(&[], &s, &u))
            .output()
            .unwrap();
        assert_eq!(code(&o), 6, "{block}: {}", show(&o));
        let log = s.logtext();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        let last = errors.last().copied().unwrap_or_default();
        assert!(last.contains(want), "{block}: {log}");
        assert!(objects(&b).is_empty(), "{block}: nothing is uploaded");
        // -D names the problem instead of failing.
        let o = with_s3_block(&s, block).arg("-D").output().unwrap();
        assert_eq!(code(&o), 0, "{}", show(&o));
        assert!(diag_line(&o, "S3 settings").contains(want), "{}", show(&o));
    }
}

/// Seconds the synchronize phase took, from the summary file.
fn synchronize_seconds(summary: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(summary).unwrap();
    let at = text.find("\"synchronize\":").expect("synchronize phase") + 14;
    let rest = text[at..].trim_start();
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim().parse().unwrap()
}

#[test]
fn max_bandwidth_limits_all_uploads_of_a_run_together() {
    let s = Scratch::new();
    // 6 MiB in all: two streamed files and two read whole, all going up at once.
    s.write("a.bin", &vec![1u8; 2 * MIB]);
    s.write("b.bin", &vec![2u8; 2 * MIB]);
    s.write("c.bin", &vec![3u8; MIB]);
    s.write("d.bin", &vec![4u8; MIB]);
    // The profile's limit would take well over an hour: the switch must win.
    let block = "  max_bandwidth = 1KB/s";
    let o = with_s3_block(&s, block).arg("-D").output().unwrap();
    assert!(
        diag_line(&o, "Max bandwidth")
            .contains("1 KiB/s for all uploads (a restore: downloads) together (s3 max_bandwidth of profile default)"),
        "{}",
        show(&o)
    );
    let o = with_s3_block(&s, block)
        .args(["-D", "--maxBandwidth", "2MB/s"])
        .output()
        .unwrap();
    assert!(diag_line(&o, "Max bandwidth")
        .contains("2 MiB/s for all uploads (a restore: downloads) together (--maxBandwidth)"));

    let b = bucket("bandwidth");
    let u = format!("s3://{b}/p");
    let summary = s.dir.path().join("summary.json");
    let summary_arg = format!("--summaryFile={}", summary.display());
    let o = with_s3_block(&s, block)
        .args(sync_args(
            &["--maxBandwidth", "2MB/s", &summary_arg],
            &s,
            &u,
        ))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(objects(&b).len(), 4);
    let took = synchronize_seconds(&summary);
    // 6 MiB at 2 MiB/s, less the bucket's burst (64 KiB at this rate): at least 2.97 s.
    let least = (6 * MIB - 64 * 1024) as f64 / (2 * MIB) as f64;
    assert!(took >= least - 0.05, "{took} s for 6 MiB at 2 MiB/s");
    assert!(took < 10.0, "{took} s for 6 MiB at 2 MiB/s");
    assert!(s
        .logtext()
        .contains("Uploads limited to 2 MiB/s in all (--maxBandwidth)."));
}

#[test]
fn addressing_style_decides_path_or_virtual_hosted_addressing() {
    let s = Scratch::new();
    // The test server is a custom endpoint: auto (and no setting) means path style.
    for (block, want) in [
        (
            "",
            "path-style addressing (auto: path-style with a custom endpoint)",
        ),
        (
            "  addressing_style = auto",
            "path-style addressing (s3 addressing_style = auto of profile default)",
        ),
        (
            "  addressing_style = virtual",
            "virtual-hosted addressing (s3 addressing_style = virtual of profile default)",
        ),
    ] {
        let o = with_s3_block(&s, block).arg("-D").output().unwrap();
        assert_eq!(code(&o), 0, "{}", show(&o));
        assert!(
            diag_line(&o, "Endpoint").contains(want),
            "{block}: {}",
            show(&o)
        );
    }
    // (A run cannot show it here: against an IP-address endpoint the SDK's endpoint rules
    // fall back to path style whatever the setting.)
}

/// The ERROR lines of the run's log.
fn error_lines(s: &Scratch) -> Vec<String> {
    s.logtext()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_string)
        .collect()
}

/// A config or credentials file that does not parse (a section header without its `]`, a
/// line of an `s3 =` block that is no setting, text that is not UTF-8) dropped every setting
/// in it without a word: the run used defaults nobody chose. Now the run refuses, as the AWS
/// CLI does, with one line naming the file and exit 6 (the code of every AWS configuration
/// problem), before anything is uploaded; `-D` names it instead of failing.
#[test]
fn a_config_file_that_does_not_parse_fails_the_run_with_one_line() {
    let s = Scratch::new();
    s.write("f", b"x");
    let b = bucket("cfgparse");
    let u = format!("s3://{b}/p");
    let file = s.dir.path().join("aws-file");
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "AWS_CONFIG_FILE",
            b"[default]\nregion = us-east-1\n[profile backup\nregion = eu-west-1\n",
            "line 3: Profile definition must end with ']'",
        ),
        (
            "AWS_CONFIG_FILE",
            b"[default]\ns3 =\n  max_concurrent_requests = 2\n  max_bandwidth\n",
            "line 4:",
        ),
        (
            "AWS_CONFIG_FILE",
            b"[default]\nregion = caf\xe9\n",
            "not UTF-8 text",
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            b"[default\naws_access_key_id = x\n",
            "line 1: Profile definition must end with ']'",
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            b"aws_access_key_id = x\n",
            "line 1: Expected a profile definition",
        ),
    ];
    for (var, text, why) in cases {
        std::fs::write(&file, text).unwrap();
        let shown = String::from_utf8_lossy(text);
        let want = format!("Unable to parse config file: {} ({why}", file.display());
        let o = command(&s)
            .env(var, &file)
            .args(sync_args(&[], &s, &u))
            .output()
            .unwrap();
        assert_eq!(code(&o), 6, "{var} {shown:?}: {}", show(&o));
        let errors = error_lines(&s);
        assert!(
            errors.last().is_some_and(|l| l.contains(&want)),
            "{var} {shown:?}: want {want}\n{}",
            s.logtext()
        );
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            stdout
                .lines()
                .filter(|l| l.contains("Unable to parse"))
                .count(),
            1,
            "{}",
            show(&o)
        );
        assert!(
            objects(&b).is_empty(),
            "{var} {shown:?}: nothing is uploaded"
        );
        let o = command(&s).env(var, &file).arg("-D").output().unwrap();
        assert_eq!(code(&o), 0, "{}", show(&o));
        assert!(diag_line(&o, "AWS files").contains(&want), "{}", show(&o));
        std::fs::write(s.log(), b"").unwrap();
    }
    // The same file, once it parses, is used.
    std::fs::write(&file, b"[default]\ns3 =\n  max_concurrent_requests = 2\n").unwrap();
    let o = command(&s)
        .env("AWS_CONFIG_FILE", &file)
        .args(sync_args(&[], &s, &u))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(objects(&b).len(), 1);
}

/// `AWS_CONFIG_FILE` (or the credentials file) naming a directory, or a file the user cannot
/// read: the SDK reads nothing from it and says nothing. One WARNING naming it, and the run
/// goes on (as the AWS CLI's does).
#[test]
fn a_config_file_that_cannot_be_read_is_one_warning_and_the_run_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    s.write("f", b"x");
    let b = bucket("cfgdir");
    let u = format!("s3://{b}/p");
    let dir = s.dir.path().join("conf.d");
    std::fs::create_dir(&dir).unwrap();
    for var in ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"] {
        std::fs::write(s.log(), b"").unwrap();
        let o = command(&s)
            .env(var, &dir)
            .args(sync_args(&[], &s, &u))
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{var}: {}", show(&o));
        let warnings: Vec<String> = s
            .logtext()
            .lines()
            .filter(|l| l.contains("WARNING"))
            .map(str::to_string)
            .collect();
        assert_eq!(warnings.len(), 1, "{var}: {}", s.logtext());
        assert!(
            warnings[0].contains(&format!("{} (see {var}) is a directory", dir.display())),
            "{}",
            warnings[0]
        );
    }
    assert_eq!(objects(&b).len(), 1);
    // A file the variable names that does not exist (a typo in a crontab).
    let missing = s.dir.path().join("no-such-config");
    std::fs::write(s.log(), b"").unwrap();
    let o = command(&s)
        .env("AWS_CONFIG_FILE", &missing)
        .args(sync_args(&[], &s, &u))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let log = s.logtext();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARNING")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains(&format!(
            "The AWS config file {} named by AWS_CONFIG_FILE does not exist",
            missing.display()
        )),
        "{}",
        warnings[0]
    );

    // A file the running user cannot read (root reads everything: run as nobody; `-v`
    // takes no lock, so nobody needs no directory of its own).
    let unreadable = s.dir.path().join("private-config");
    std::fs::write(&unreadable, b"[default]\nregion = us-east-1\n").unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o600)).unwrap();
    for d in [s.dir.path(), &s.src(), &s.home()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(s.src().join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(s.log(), b"").unwrap();
    std::fs::set_permissions(s.log(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
    for (k, v) in command(&s).get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = c
        .env("AWS_CONFIG_FILE", &unreadable)
        .arg("-l")
        .arg(s.log())
        .args(sync_args(&["-v"], &s, &u))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    let log = s.logtext();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARNING")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains(&format!(
            "Cannot read the AWS config file {} (see AWS_CONFIG_FILE): Permission denied",
            unreadable.display()
        )),
        "{}",
        warnings[0]
    );
}

/// A `credential_process` printing credentials whose `Expiration` has passed: the SDK used
/// them as they were (the test server does not check it, so the run went through). They are
/// refused with one line; the same process with an `Expiration` ahead is used.
#[test]
fn expired_credentials_from_credential_process_are_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    s.write("f", b"x");
    let b = bucket("credexp");
    let u = format!("s3://{b}/p");
    let env: std::collections::HashMap<_, _> = server().env.iter().cloned().collect();
    let script = s.dir.path().join("creds.sh");
    let config = s.dir.path().join("aws-config");
    std::fs::write(
        &config,
        format!("[default]\ncredential_process = {}\n", script.display()),
    )
    .unwrap();
    for (expiration, ok) in [
        ("2001-02-03T04:05:06Z", false),
        ("2999-01-01T00:00:00Z", true),
    ] {
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{}\", \"SecretAccessKey\": \"{}\", \"Expiration\": \"{expiration}\"}}'\n",
                env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(s.log(), b"").unwrap();
        let o = command(&s)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_CONFIG_FILE", &config)
            .args(sync_args(&[], &s, &u))
            .output()
            .unwrap();
        if ok {
            assert_eq!(code(&o), 0, "{}", show(&o));
            assert_eq!(objects(&b).len(), 1);
            continue;
        }
        assert_eq!(code(&o), 6, "{}", show(&o));
        let errors = error_lines(&s);
        assert!(
            errors.iter().any(|l| l.contains(
                "no credentials: expired credentials: the credentials from the credential_process of the profile expired at 2001-02-03T04:05:06Z"
            )),
            "{}",
            s.logtext()
        );
        assert!(objects(&b).is_empty(), "nothing is uploaded");
    }
}
