//! The user's own AWS setup: HTTPS with a private CA (`AWS_CA_BUNDLE`, `ca_bundle` in a
//! profile) through a TLS terminator (`tests/tlsproxy.py`) in front of the test server, and
//! the effective configuration that `-D` prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A private CA and a certificate for 127.0.0.1 signed by it, made with the `openssl` CLI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let o = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl CLI (apt-get install openssl)");
            assert!(o.status.success(), "openssl {args:?}: {}", show(&o));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &["req", "-x509", "-nodes", "-days", "2"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=cback3 test CA",
                ],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-nodes"][..],
                &ec[..],
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ]);
        Pki { dir }
    }
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// `tests/tlsproxy.py`: HTTPS on 127.0.0.1 in front of the test server, counting handshakes.
struct TlsProxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsProxy {
    fn start(pki: &Pki) -> TlsProxy {
        let upstream = server().endpoint.rsplit(':').next().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tlsproxy.py"))
            .args(["--upstream", &upstream])
            .arg("--cert")
            .arg(pki.dir.path().join("server.pem"))
            .arg("--key")
            .arg(pki.dir.path().join("server.key"))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--stats")
            .arg(dir.path().join("stats.json"))
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 tests/tlsproxy.py");
        poll_until("the TLS proxy to listen", Duration::from_secs(20), || {
            std::fs::read_to_string(&ready).is_ok_and(|s| !s.is_empty())
        });
        let port = std::fs::read_to_string(&ready)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        TlsProxy { child, port, dir }
    }
    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
    /// `handshakes` (completed) and `failed_handshakes`, so far.
    fn stats(&self) -> BTreeMap<String, u64> {
        let text = std::fs::read_to_string(self.dir.path().join("stats.json")).unwrap();
        text.trim()
            .trim_matches(['{', '}'])
            .split(',')
            .map(|pair| {
                let (k, v) = pair.split_once(':').unwrap();
                (
                    k.trim().trim_matches('"').to_string(),
                    v.trim().parse().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one line on screen that reports the failure.
fn error_line(o: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    assert_eq!(lines.len(), 1, "{}", show(o));
    lines[0].to_string()
}

/// Sync, delete, verify and a multipart upload over HTTPS, trusting the CA through
/// `AWS_CA_BUNDLE` only (the system roots do not know it).
#[test]
fn https_with_aws_ca_bundle_syncs_deletes_verifies_and_uploads_multipart() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(&pki);
    let s = Scratch::new();
    let b = bucket("tlsenv");
    s.write("a.txt", b"alpha");
    s.write("dir/b.txt", b"beta");
    let big: Vec<u8> = (0..17 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    s.write("big.bin", &big);
    put_object(&b, "p/stale.txt", b"old");
    let url = format!("s3://{b}/p");
    let run = |args: &[&str]| {
        let mut c = command_via(&s, &proxy.endpoint());
        c.env("AWS_CA_BUNDLE", pki.ca());
        c.args(args).output().unwrap()
    };
    let src = s.src();
    let src = src.to_str().unwrap();
    let o = run(&[src, &url]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let objs = objects(&b);
    let keys: Vec<&str> = objs.keys().map(String::as_str).collect();
    assert_eq!(keys, ["p/a.txt", "p/big.bin", "p/dir/", "p/dir/b.txt"]);
    assert_eq!(get_object(&b, "p/big.bin"), big);
    assert_eq!(open_uploads(&b), Vec::<String>::new());
    let o = run(&["-v", src, &url]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(proxy.stats()["handshakes"] > 0);
    assert_eq!(proxy.stats()["failed_handshakes"], 0);
}

/// The same CA named by `ca_bundle` in a named profile of `AWS_CONFIG_FILE`.
#[test]
fn https_with_ca_bundle_in_the_profile() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(&pki);
    let s = Scratch::new();
    let b = bucket("tlsprofile");
    s.write("one.txt", b"1");
    let config = s.home().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile backup]\nregion = us-east-1\nca_bundle = {}\n",
            pki.ca().display()
        ),
    )
    .unwrap();
    let url = format!("s3://{b}/p");
    let src = s.src();
    for verify in [false, true] {
        let mut c = command_via(&s, &proxy.endpoint());
        c.env("AWS_CONFIG_FILE", &config)
            .env("AWS_PROFILE", "backup");
        if verify {
            c.arg("-v");
        }
        let o = c.arg(&src).arg(&url).output().unwrap();
        assert_eq!(code(&o), 0, "{}", show(&o));
    }
    assert_eq!(objects(&b).keys().collect::<Vec<_>>(), ["p/one.txt"]);
}

/// Without the CA the server's certificate does not verify: exit 6 with one line naming
/// AWS_CA_BUNDLE / ca_bundle, at once (not retried), and the bucket is untouched.
#[test]
fn untrusted_certificate_fails_at_once_and_changes_nothing() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(&pki);
    let s = Scratch::new();
    let b = bucket("tlsuntrusted");
    s.write("new.txt", b"new");
    put_object(&b, "p/stale.txt", b"old");
    let before = objects(&b);
    let o = command_via(&s, &proxy.endpoint())
        .arg(s.src())
        .arg(format!("s3://{b}/p"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    let last = error_line(&o);
    assert!(
        last.contains("certificate is not trusted")
            && last.contains("AWS_CA_BUNDLE")
            && last.contains("ca_bundle"),
        "{}",
        show(&o)
    );
    assert_eq!(last.matches("not trusted").count(), 1, "said once: {last}");
    assert_eq!(objects(&b), before);
    // Retrying would not help: one failed handshake (two if the first request raced another).
    let failed = proxy.stats()["failed_handshakes"];
    assert!((1..=2).contains(&failed), "{failed} failed handshakes");
    assert_eq!(proxy.stats()["handshakes"], 0);
}

/// A CA bundle that is missing, or is not PEM, is one clear line and exit 6.
#[test]
fn unusable_ca_bundle_is_one_line_and_exit_6() {
    let s = Scratch::new();
    let b = bucket("tlsbadbundle");
    s.write("x.txt", b"x");
    let garbage = s.home().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let truncated = s.home().join("truncated.pem");
    std::fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
    let missing = s.home().join("missing.pem");
    for (bundle, expect) in [
        (&missing, "cannot read the CA bundle"),
        (&garbage, "holds no PEM certificate"),
        (&truncated, "is not a valid PEM file"),
    ] {
        let o = command(&s)
            .env("AWS_CA_BUNDLE", bundle)
            .arg(s.src())
            .arg(format!("s3://{b}/p"))
            .output()
            .unwrap();
        assert_eq!(code(&o), 6, "{}", show(&o));
        let last = error_line(&o);
        assert!(
            last.contains(expect) && last.contains(bundle.to_str().unwrap()),
            "{}",
            show(&o)
        );
    }
    assert!(objects(&b).is_empty());
}

/// A few hundred small files over HTTPS take no more TLS handshakes than requests in
/// flight: connections are pooled and reused, not made per request.
#[test]
fn https_connections_are_reused() {
    let pki = Pki::new();
    let proxy = TlsProxy::start(&pki);
    let s = Scratch::new();
    let b = bucket("tlsreuse");
    for i in 0..300 {
        s.write(
            format!("d{}/f{i}.txt", i % 7),
            format!("file {i}").as_bytes(),
        );
    }
    let o = command_via(&s, &proxy.endpoint())
        .env("AWS_CA_BUNDLE", pki.ca())
        .args(["--maxConcurrency", "8"])
        .arg(s.src())
        .arg(format!("s3://{b}/p"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(last_uploaded(&s), 300, "{}", s.logtext());
    assert_eq!(file_objects(&b).len(), 300);
    // Without reuse this would be one per request (301 or more). At most 8 are in flight;
    // hyper finishes a connect it started even when an idle connection came free first, so
    // a loaded machine may see a few more than 8 (8 measured on a quiet one).
    let handshakes = proxy.stats()["handshakes"];
    // moto's server closes the connection after every answer, so a client must connect anew
    // for each request there: what can still be checked is one handshake per request at most
    // (no retries, no connections thrown away): 300 uploads, 7 directory markers, the
    // listings before and after.
    let most = if on_moto() { 320 } else { 16 };
    assert!(
        (1..=most).contains(&handshakes),
        "{handshakes} TLS handshakes for 300 uploads at concurrency 8"
    );
}

/// `-D` under a cron-like environment (nothing but HOME, PATH, LANG and the AWS files of
/// a named profile) shows the configuration a run would use, and no secret.
#[test]
fn diagnostics_show_the_effective_configuration_without_secrets() {
    let pki = Pki::new();
    let s = Scratch::new();
    let home = s.home();
    let config = home.join("aws-config");
    let credentials = home.join("aws-credentials");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = us-east-1\n\n[profile nightly]\nregion = eu-west-3\n\
             endpoint_url = https://s3.backup.example:9443\nca_bundle = {}\nmax_attempts = 4\n",
            pki.ca().display()
        ),
    )
    .unwrap();
    let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY";
    let key_id = "AKIDNIGHTLYTEST";
    std::fs::write(
        &credentials,
        format!("[nightly]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let cron = |profile: Option<&str>| {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .env("LANG", "C")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials);
        if let Some(p) = profile {
            c.env("AWS_PROFILE", p);
        }
        c
    };
    let o = cron(Some("nightly"))
        .args(["-D", "--maxConcurrency", "12"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = |title: &str| -> String {
        out.lines()
            .find(|l| l.trim_start().starts_with(title))
            .unwrap_or_else(|| panic!("no {title} line in\n{out}"))
            .to_string()
    };
    assert!(
        line("AWS profile").contains("nightly (from AWS_PROFILE"),
        "{out}"
    );
    assert!(
        line("Region").contains("eu-west-3 (from profile nightly)"),
        "{out}"
    );
    let endpoint = line("Endpoint");
    assert!(
        endpoint.contains("https://s3.backup.example:9443") && endpoint.contains("path-style"),
        "{out}"
    );
    let ca = line("CA bundle");
    assert!(
        ca.contains(pki.ca().to_str().unwrap()) && ca.contains("ca_bundle of profile nightly"),
        "{out}"
    );
    assert!(line("Credentials").contains("found, from profile"), "{out}");
    assert!(line("Max concurrency").contains("12"), "{out}");
    assert!(line("Retries").contains("4 attempts"), "{out}");
    assert!(
        line("Checksums").contains("request_checksum_calculation when_supported"),
        "{out}"
    );
    assert!(
        line("Timeouts").contains("connect 5 s, response 60 s"),
        "{out}"
    );
    assert!(line("Multipart").contains("16 MiB"), "{out}");
    assert!(!out.contains(secret) && !out.contains(key_id), "{out}");

    // The default profile: its region, AWS's own endpoint, system roots, no credentials.
    let o = cron(None).arg("-D").output().unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for expected in [
        "default (no AWS_PROFILE",
        "us-east-1 (from profile default)",
        "virtual-hosted addressing",
        "none: the system's root certificates",
        "Credentials.......: NOT FOUND",
        "8 attempts",
        "64 requests (default)",
    ] {
        assert!(out.contains(expected), "no {expected:?} in\n{out}");
    }
}
