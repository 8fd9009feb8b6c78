//! Cron realism: the binary started as cron starts it (HOME, PATH=/usr/bin:/bin, LANG=C, no
//! terminal, no XDG_RUNTIME_DIR, stdin from /dev/null, output to files, the absolute path of
//! the binary, cwd HOME) with its settings only in `~/.aws/config` and `~/.aws/credentials`,
//! behaves exactly as from a login shell with the same files.
//!
//! The only AWS variable either environment gets is `AWS_EC2_METADATA_DISABLED=true`: the SDK
//! reads it from the environment only (aws-config's IMDS providers have no profile key for
//! it), and without it a machine with no credentials would ask 169.254.169.254.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// How the binary is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shell {
    /// `env -i`-like: what cron gives a job.
    Cron,
    /// The same user logged in: a terminal type, a runtime directory, a UTF-8 locale and a
    /// longer PATH (output still goes to files, so both runs can be compared byte for byte).
    Login,
}

/// What one run left behind.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    log: String,
}

impl Ran {
    fn show(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}\nlog:\n{}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr),
            self.log
        )
    }

    /// The summary's "uploaded N".
    fn uploaded(&self) -> usize {
        summary_uploaded(&self.log).unwrap_or_else(|| panic!("no summary line\n{}", self.show()))
    }

    /// The logfile without what legitimately differs between two runs: the timestamp of each
    /// line, the Timestamp diagnostic, the elapsed time, and the names given to this run (its
    /// logfile, its bucket). The Locale diagnostic stays: it shows the language without its
    /// codeset, `C` for both LANG=C and LANG=C.UTF-8, as Cedar Backup's does.
    fn normalized_log(&self, logfile: &Path, bucket: &str) -> Vec<String> {
        let logfile = logfile.to_str().unwrap();
        self.log
            .lines()
            .map(|l| {
                let l = l.split_once(" --> ").map_or(l, |(_, rest)| rest);
                let l = l.replace(logfile, "<LOGFILE>").replace(bucket, "<BUCKET>");
                if l.contains("Timestamp.....:") {
                    return l.split_once(':').unwrap().0.to_string();
                }
                match l.find("elapsed ") {
                    Some(at) => format!("{}elapsed <T>", &l[..at]),
                    None => l,
                }
            })
            .collect()
    }
}

fn server_var(k: &str) -> String {
    server()
        .env
        .iter()
        .find(|(a, _)| a == k)
        .unwrap_or_else(|| panic!("the test server gave no {k}"))
        .1
        .clone()
}

/// Writes `~/.aws/config` and `~/.aws/credentials` under the scratch HOME: a default profile
/// and a profile `named`, as an administrator would, each with the server's keys, its region
/// and the given endpoint (path-style addressing, as S3-compatible servers need). `extra`
/// lines go into the default profile.
fn aws_files(s: &Scratch, default_endpoint: &str, named_endpoint: &str, extra: &str) {
    let aws = s.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    let region = server_var("AWS_REGION");
    std::fs::write(
        aws.join("config"),
        format!(
            "[default]\nregion = {region}\nendpoint_url = {default_endpoint}\n\
             s3 =\n    addressing_style = path\n{extra}\n\
             [profile named]\nregion = {region}\nendpoint_url = {named_endpoint}\n\
             s3 =\n    addressing_style = path\n"
        ),
    )
    .unwrap();
    let (id, secret) = (
        server_var("AWS_ACCESS_KEY_ID"),
        server_var("AWS_SECRET_ACCESS_KEY"),
    );
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n\n\
             [named]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"
        ),
    )
    .unwrap();
}

/// Both profiles point at the test server.
fn standard_aws_files(s: &Scratch) {
    let endpoint = server().endpoint.clone();
    aws_files(s, &endpoint, &endpoint, "");
}

/// Starts the binary (by its absolute path) in the given environment with `-l logfile`, stdin
/// from /dev/null and stdout/stderr into files, and waits for it. `profile` is AWS_PROFILE.
fn launch(
    s: &Scratch,
    shell: Shell,
    profile: Option<&str>,
    logfile: &Path,
    args: &[&std::ffi::OsStr],
) -> Ran {
    let bin = Path::new(BIN);
    assert!(bin.is_absolute(), "{BIN}");
    let home = s.home();
    let tag = logfile.file_stem().unwrap().to_str().unwrap();
    let out = s.dir.path().join(format!("{tag}.stdout"));
    let err = s.dir.path().join(format!("{tag}.stderr"));
    let mut c = Command::new(bin);
    // The lock directory is the real one (what cron and a login shell must agree on).
    c.env_clear()
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(&home)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap());
    match shell {
        Shell::Cron => {
            c.env("PATH", "/usr/bin:/bin").env("LANG", "C");
        }
        Shell::Login => {
            let runtime = s.dir.path().join("run-user");
            std::fs::create_dir_all(&runtime).unwrap();
            c.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("TERM", "xterm-256color")
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("SHELL", "/bin/bash");
        }
    }
    if let Some(p) = profile {
        c.env("AWS_PROFILE", p);
    }
    let status = c.arg("-l").arg(logfile).args(args).status().unwrap();
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
        log: std::fs::read_to_string(logfile).unwrap_or_default(),
    }
}

/// Key, size and ETag of every object, for comparing two buckets.
fn content(bucket: &str) -> BTreeMap<String, (i64, String)> {
    objects(bucket)
        .into_iter()
        .map(|(k, o)| (k, (o.size, o.etag)))
        .collect()
}

#[test]
fn cron_and_login_shell_runs_agree_and_never_reupload_each_others_files() {
    let s = Scratch::new();
    standard_aws_files(&s);
    s.write("a.txt", b"alpha");
    s.write("docs/naïve café.txt", "ü日本".as_bytes());
    s.write("docs/deep/b.bin", &[7u8; 3000]);
    s.write("empty", b"");
    let src = s.src();
    let (cron_b, login_b) = (bucket("cron"), bucket("login"));
    for b in [&cron_b, &login_b] {
        put_object(b, "p/stale", b"no local file");
    }
    let log = |n: &str| s.dir.path().join(format!("{n}.log"));

    let cron = launch(
        &s,
        Shell::Cron,
        None,
        &log("cron1"),
        &[src.as_os_str(), url(&cron_b, "p").as_ref()],
    );
    let login = launch(
        &s,
        Shell::Login,
        None,
        &log("login1"),
        &[src.as_os_str(), url(&login_b, "p").as_ref()],
    );
    assert_eq!(cron.code, 0, "{}", cron.show());
    assert_eq!(login.code, 0, "{}", login.show());
    assert_eq!(cron.uploaded(), 4, "{}", cron.show());
    assert_eq!((&cron.stdout, &cron.stderr), (&login.stdout, &login.stderr));
    assert_eq!(assert_mirror(&cron_b, "p/", &src), 4);
    assert_eq!(assert_mirror(&login_b, "p/", &src), 4);
    assert_eq!(content(&cron_b), content(&login_b));
    assert!(content(&cron_b).contains_key("p/docs/naïve café.txt"));
    // The logs differ in nothing but times and names.
    assert_eq!(
        cron.normalized_log(&log("cron1"), &cron_b),
        login.normalized_log(&log("login1"), &login_b)
    );

    // Mixing them: each bucket's next runs, from the other environment and again from cron,
    // upload nothing and leave every object as it was.
    // (The files' objects: a directory's marker put in the second the directory changed is
    // put once more; tests/sync/directories.rs checks that markers then stay.)
    let (before_cron, before_login) = (file_objects(&cron_b), file_objects(&login_b));
    let runs = [
        (Shell::Login, &cron_b, "login2"),
        (Shell::Cron, &login_b, "cron2"),
        (Shell::Cron, &cron_b, "cron3"),
    ];
    for (shell, b, name) in runs {
        let r = launch(
            &s,
            shell,
            None,
            &log(name),
            &[src.as_os_str(), url(b, "p").as_ref()],
        );
        assert_eq!(r.code, 0, "{name}: {}", r.show());
        assert_eq!(r.uploaded(), 0, "{name}: {}", r.show());
    }
    assert_eq!(file_objects(&cron_b), before_cron);
    assert_eq!(file_objects(&login_b), before_login);
}

#[test]
fn aws_profile_in_the_cron_environment_selects_the_named_profile() {
    let s = Scratch::new();
    // The default profile points at a port where nothing listens (one attempt, so it fails at
    // once); only the named profile reaches the server.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    aws_files(&s, &dead, &server().endpoint, "max_attempts = 1\n");
    s.write("a.txt", b"alpha");
    s.write("d/b.txt", b"bravo");
    let src = s.src();
    let b = bucket("cron-profile");
    let target = url(&b, "p");
    let args = [src.as_os_str(), target.as_ref()];

    let default = launch(&s, Shell::Cron, None, &s.dir.path().join("d.log"), &args);
    assert_eq!(default.code, 6, "{}", default.show());
    assert!(objects(&b).is_empty());

    let named = launch(
        &s,
        Shell::Cron,
        Some("named"),
        &s.dir.path().join("n.log"),
        &args,
    );
    assert_eq!(named.code, 0, "{}", named.show());
    assert_eq!(assert_mirror(&b, "p/", &src), 2);
}

#[test]
fn a_missing_profile_named_by_aws_profile_fails_without_falling_back_to_default() {
    let s = Scratch::new();
    // A working default profile: falling back to it would upload.
    standard_aws_files(&s);
    s.write("a.txt", b"alpha");
    let src = s.src();
    let b = bucket("cron-noprofile");
    let target = url(&b, "p");
    let r = launch(
        &s,
        Shell::Cron,
        Some("nosuchprofile"),
        &s.dir.path().join("m.log"),
        &[src.as_os_str(), target.as_ref()],
    );
    assert_eq!(r.code, 6, "{}", r.show());
    assert!(objects(&b).is_empty(), "{}", r.show());
    assert!(
        r.log.lines().any(|l| l.contains("[ERROR  ]")),
        "{}",
        r.show()
    );
    let screen =
        String::from_utf8_lossy(&r.stdout).to_string() + &String::from_utf8_lossy(&r.stderr);
    assert!(!screen.trim().is_empty(), "{}", r.show());
    // One line on the screen, and it names the profile that is missing.
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{}", r.show());
    assert!(
        lines[0].contains("nosuchprofile") && lines[0].contains("AWS_PROFILE"),
        "{}",
        r.show()
    );
}

#[test]
fn non_utf8_names_under_lang_c_behave_as_under_c_utf8() {
    let s = Scratch::new();
    standard_aws_files(&s);
    let bad = PathBuf::from(OsString::from_vec(b"caf\xe9.txt".to_vec()));
    s.write(&bad, b"latin-1 name");
    s.write("Ünïcødé/日本語.txt", "utf-8 name".as_bytes());
    s.write("plain.txt", b"plain");
    let src = s.src();
    let log = |n: &str| s.dir.path().join(format!("{n}.log"));
    let (cron_b, login_b) = (bucket("cron-names"), bucket("login-names"));

    // Without -w the name check stops both runs, with the same messages, before any upload.
    let cron = launch(
        &s,
        Shell::Cron,
        None,
        &log("cron-strict"),
        &[src.as_os_str(), url(&cron_b, "p").as_ref()],
    );
    let login = launch(
        &s,
        Shell::Login,
        None,
        &log("login-strict"),
        &[src.as_os_str(), url(&login_b, "p").as_ref()],
    );
    assert_eq!(cron.code, 6, "{}", cron.show());
    assert_eq!(login.code, 6, "{}", login.show());
    assert_eq!((&cron.stdout, &cron.stderr), (&login.stdout, &login.stderr));
    assert!(
        cron.log
            .lines()
            .any(|l| l.contains("[ERROR  ]") && l.contains(r"caf\xe9.txt")),
        "{}",
        cron.show()
    );
    assert_eq!(
        cron.normalized_log(&log("cron-strict"), &cron_b),
        login.normalized_log(&log("login-strict"), &login_b)
    );
    assert!(objects(&cron_b).is_empty() && objects(&login_b).is_empty());

    // With -w both skip the bad name alike and upload the UTF-8 one.
    let cron = launch(
        &s,
        Shell::Cron,
        None,
        &log("cron-w"),
        &["-w".as_ref(), src.as_os_str(), url(&cron_b, "p").as_ref()],
    );
    let login = launch(
        &s,
        Shell::Login,
        None,
        &log("login-w"),
        &["-w".as_ref(), src.as_os_str(), url(&login_b, "p").as_ref()],
    );
    assert_eq!(cron.code, 0, "{}", cron.show());
    assert_eq!(login.code, 0, "{}", login.show());
    assert_eq!((&cron.stdout, &cron.stderr), (&login.stdout, &login.stderr));
    assert!(
        cron.log
            .lines()
            .any(|l| l.contains("[WARNING]") && l.contains(r"caf\xe9.txt")),
        "{}",
        cron.show()
    );
    assert_eq!(
        cron.normalized_log(&log("cron-w"), &cron_b),
        login.normalized_log(&log("login-w"), &login_b)
    );
    let want = ["p/plain.txt", "p/Ünïcødé/", "p/Ünïcødé/日本語.txt"];
    for b in [&cron_b, &login_b] {
        let keys: Vec<String> = objects(b).into_keys().collect();
        assert_eq!(keys, want, "{b}");
        assert_eq!(
            get_object(b, "p/Ünïcødé/日本語.txt"),
            "utf-8 name".as_bytes()
        );
    }
    assert_eq!(content(&cron_b), content(&login_b));
}
