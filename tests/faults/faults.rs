//! Faults between the binary and S3 (tests/s3proxy.py): retries, timeouts, and runs that
//! cannot complete. A failed run exits 6 with a clear last line and deletes nothing; the
//! next run once the fault is gone completes and verifies.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a test may show what it saw

use std::time::{Duration, Instant};

use crate::common::*;

fn delta(
    after: &std::collections::BTreeMap<String, u64>,
    before: &std::collections::BTreeMap<String, u64>,
    k: &str,
) -> u64 {
    after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0)
}

/// A tree of small files and one file that goes up as a two-part multipart upload.
fn fill(s: &Scratch, small: usize) {
    for i in 0..small {
        s.write(
            format!("d{}/f{i:03}.txt", i % 4),
            format!("file {i} ").repeat(i + 1).as_bytes(),
        );
    }
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    s.write("big.bin", &big);
}

#[test]
fn resets_errors_and_lost_responses_are_retried_and_the_copy_is_exact() {
    let s = Scratch::new();
    fill(&s, 40);
    let b = bucket("faults");
    put_object(
        &b,
        "p/stale.txt",
        b"no local file: deleted by the full sync",
    );
    put_object(&b, "p2/sibling.txt", b"another prefix");
    let proxy = Proxy::start(7);
    proxy.set(r#"{"fault_rate": 0.25, "faults": ["reset", "500", "503", "drop"]}"#);
    let o = command_via(&s, &proxy.endpoint())
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    let stats = proxy.finish();
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert!(stats["faults"] >= 5, "too few faults injected: {stats:?}");
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 41);
    assert!(objects(&b).contains_key("p2/sibling.txt"));
    assert_eq!(open_uploads(&b), Vec::<String>::new());
}

#[test]
fn stalled_requests_time_out_and_are_retried() {
    let s = Scratch::new();
    for i in 0..20 {
        s.write(format!("f{i:02}"), format!("{i}").as_bytes());
    }
    let b = bucket("stall");
    let proxy = Proxy::start(11);
    // Stalls last a minute unless the client gives up on them itself.
    proxy.set(r#"{"fault_rate": 0.3, "faults": ["stall"], "stall_s": 60}"#);
    let started = Instant::now();
    let o = command_via(&s, &proxy.endpoint())
        .env("CBACK3_RESPONSE_TIMEOUT", "1")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stats = proxy.finish();
    assert_eq!(code(&o), 0, "{}\n{}", show(&o), s.logtext());
    assert!(stats["stall"] >= 1, "{stats:?}");
    assert!(
        took < Duration::from_secs(40),
        "stalls were waited out: {took:?}"
    );
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 20);
}

type Env<'a> = &'a [(&'a str, &'a str)];

#[test]
fn default_retry_policy_and_user_settings() {
    let s = Scratch::new();
    s.write("a", b"a");
    let b = bucket("attempts");
    let proxy = Proxy::start(3);
    proxy.set(r#"{"fault_rate": 1, "faults": ["503"]}"#);
    let config = s.dir.path().join("aws-config");
    std::fs::write(&config, "[default]\nmax_attempts = 3\n").unwrap();
    // (extra environment, attempts expected, bound on the whole run)
    let cases: [(Env, u64, u64); 3] = [
        (&[], 8, 50),
        (&[("AWS_MAX_ATTEMPTS", "2")], 2, 5),
        (&[("AWS_CONFIG_FILE", config.to_str().unwrap())], 3, 10),
    ];
    for (env, attempts, bound) in cases {
        let before = proxy.stats();
        let started = Instant::now();
        let o = command_via(&s, &proxy.endpoint())
            .envs(env.iter().copied())
            .args([s.src().as_os_str(), url(&b, "p").as_ref()])
            .output()
            .unwrap();
        let took = started.elapsed();
        let after = proxy.stats();
        assert_eq!(code(&o), 6, "{env:?}: {}", show(&o));
        let lines = stdout_lines(&o);
        assert_eq!(lines.len(), 1, "{env:?}: one line: {lines:?}");
        assert!(lines[0].contains("SlowDown"), "{lines:?}");
        // The object listing's attempts, plus the one attempt of the stray-upload listing
        // that runs beside it.
        assert_eq!(delta(&after, &before, "requests"), attempts + 1, "{env:?}");
        assert!(took < Duration::from_secs(bound), "{env:?}: {took:?}");
        eprintln!("{env:?}: {attempts} attempts in {took:?}");
    }
    assert!(objects(&b).is_empty());
}

#[test]
fn unreachable_endpoint_fails_within_a_bounded_time() {
    let s = Scratch::new();
    s.write("a", b"a");
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    for (attempts, bound) in [("", 50), ("1", 5)] {
        let mut c = command_via(&s, &endpoint);
        if !attempts.is_empty() {
            c.env("AWS_MAX_ATTEMPTS", attempts);
        }
        let started = Instant::now();
        let o = c
            .args([s.src().as_os_str(), "s3://bucket/p".as_ref()])
            .output()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(code(&o), 6, "{}", show(&o));
        let lines = stdout_lines(&o);
        assert_eq!(lines.len(), 1, "one line: {lines:?}");
        assert!(lines[0].contains("ListObjectsV2"), "{lines:?}");
        assert!(
            took < Duration::from_secs(bound),
            "attempts {attempts:?}: {took:?}"
        );
        eprintln!("unreachable endpoint, AWS_MAX_ATTEMPTS={attempts:?}: failed after {took:?}");
    }
}

#[test]
fn a_run_that_cannot_complete_deletes_nothing_and_a_rerun_completes() {
    let s = Scratch::new();
    s.write("old.txt", b"synced before");
    let b = bucket("cannot");
    let first = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&first), 0, "{}", show(&first));
    put_object(&b, "p/stale.txt", b"no local file");
    for i in 0..3 {
        s.write(format!("new{i}.txt"), b"new");
    }
    let before = objects(&b);
    let proxy = Proxy::start(5);
    // Every upload fails; listings still work.
    proxy.set(r#"{"fault_rate": 1, "faults": ["503", "500"], "fault_methods": ["PUT"]}"#);
    let o = command_via(&s, &proxy.endpoint())
        .env("AWS_MAX_ATTEMPTS", "2")
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 6, "{}", show(&o));
    let lines = stdout_lines(&o);
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.contains("3 uploads failed; nothing was deleted"),
        "{lines:?}"
    );
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("Failed to upload new")),
        "{lines:?}"
    );
    assert_eq!(objects(&b), before, "the bucket must not change");

    proxy.set(r#"{"fault_rate": 0}"#);
    let o = command_via(&s, &proxy.endpoint())
        .args([s.src().as_os_str(), url(&b, "p").as_ref()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(assert_mirror(&b, "p/", &s.src()), 4);
}

/// Settings of the circuit-breaker tests: each request ends after at most 2 attempts of 1 s
/// plus one backoff of at most 1 s (the SDK's default initial backoff with user settings).
const BREAKER_CONCURRENCY: u64 = 8;
const BREAKER_ATTEMPTS: u64 = 2;
/// A request's lifetime once the server stops answering, as the README computes it.
const REQUEST_LIFETIME: Duration =
    Duration::from_secs(BREAKER_ATTEMPTS * RESPONSE_TIMEOUT_S + BACKOFF_S);
const RESPONSE_TIMEOUT_S: u64 = 1;
const BACKOFF_S: u64 = 1;

/// Failures before the breaker trips that each let one more file be dispatched.
const MORE: u64 = cback3_s3sync::health::TRIP_AFTER as u64 - 1;

/// The README's bound: (1 + ceil(4 / maxConcurrency)) request lifetimes, plus the start.
fn breaker_bound() -> Duration {
    let waves = 1 + MORE.div_ceil(BREAKER_CONCURRENCY);
    REQUEST_LIFETIME * waves as u32 + Duration::from_secs(5)
}

/// Files dispatched at most: the first wave plus one per failure before the breaker trips.
fn breaker_max_requests() -> u64 {
    (BREAKER_CONCURRENCY + MORE) * BREAKER_ATTEMPTS
}

fn stalled_run(
    s: &Scratch,
    b: &str,
    proxy: &Proxy,
    extra: &[&str],
) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let o = command_via(s, &proxy.endpoint())
        .env("CBACK3_RESPONSE_TIMEOUT", RESPONSE_TIMEOUT_S.to_string())
        .env("AWS_MAX_ATTEMPTS", BREAKER_ATTEMPTS.to_string())
        .args(["--maxConcurrency", &BREAKER_CONCURRENCY.to_string()])
        .args(extra)
        .args([s.src().as_os_str(), url(b, "p").as_ref()])
        .output()
        .unwrap();
    (o, started.elapsed())
}

fn stopped_answering(o: &std::process::Output, total: usize) {
    assert_eq!(code(o), 6, "{}", show(o));
    let lines = stdout_lines(o);
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.contains("The S3 endpoint stopped answering"),
        "{lines:?}"
    );
    let not_attempted: usize = last
        .split(" files were not attempted")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {last:?}"));
    let most = (BREAKER_CONCURRENCY + MORE) as usize;
    assert!(
        not_attempted + most >= total && not_attempted < total,
        "{not_attempted} of {total} not attempted: {last}"
    );
}

#[test]
fn uploads_stop_once_the_endpoint_stops_answering() {
    for n in [40, 120] {
        let s = Scratch::new();
        for i in 0..n {
            s.write(format!("f{i:03}"), format!("{i}").as_bytes());
        }
        let b = bucket("breaker");
        put_object(&b, "p/stale.txt", b"no local file");
        let before = objects(&b);
        let proxy = Proxy::start(13);
        // The listing works; every upload is held without an answer.
        proxy.set(
            r#"{"fault_rate": 1, "faults": ["stall"], "stall_s": 60, "fault_methods": ["PUT"]}"#,
        );
        let (o, took) = stalled_run(&s, &b, &proxy, &[]);
        let stats = proxy.finish();
        eprintln!("{n} files: {took:?}, {stats:?}");
        stopped_answering(&o, n);
        let puts = stats.get("stall").copied().unwrap_or(0);
        assert!(
            puts <= breaker_max_requests(),
            "{n} files: {puts} uploads reached the proxy"
        );
        assert!(took < breaker_bound(), "{n} files: {took:?}");
        assert_eq!(objects(&b), before, "nothing may change");
    }
}

#[test]
fn content_checks_stop_once_the_endpoint_stops_answering() {
    let s = Scratch::new();
    let n = 60;
    for i in 0..n {
        s.write(format!("f{i:03}"), format!("{i}").as_bytes());
    }
    let b = bucket("breakerhead");
    let o = run(&s, [s.src().as_os_str(), url(&b, "p").as_ref()]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let proxy = Proxy::start(17);
    proxy
        .set(r#"{"fault_rate": 1, "faults": ["stall"], "stall_s": 60, "fault_methods": ["HEAD"]}"#);
    let (o, took) = stalled_run(&s, &b, &proxy, &["-v", "--verifyContent"]);
    let stats = proxy.finish();
    eprintln!("{n} files: {took:?}, {stats:?}");
    assert_eq!(code(&o), 6, "{}", show(&o));
    let last = stdout_lines(&o).last().cloned().unwrap_or_default();
    assert!(last.contains("The S3 endpoint stopped answering"), "{last}");
    assert!(last.contains("files were not attempted"), "{last}");
    let heads = stats.get("stall").copied().unwrap_or(0);
    assert!(
        heads <= breaker_max_requests(),
        "{heads} HEADs reached the proxy"
    );
    assert!(took < breaker_bound(), "{took:?}");
}

/// The harness reads the test server's handshake and the proxy's counters with one JSON
/// reader: a value holding `", "`, `": "`, an escaped quote or a `\u` escape (Python's `json`
/// escapes every non-ASCII character) arrives whole, which splitting the line by hand did not
/// give; and what is not a flat object is refused rather than half read.
#[test]
fn harness_json_reader_unescapes_and_refuses_what_it_cannot_read() {
    let line = r#"{"endpoint": "http://127.0.0.1:8333", "A": "x, \"y\": z\\", "B": "caf\u00e9 \ud83d\ude00\n", "n": 12}"#;
    assert_eq!(
        parse_flat_json(line).unwrap(),
        vec![
            ("endpoint".to_string(), "http://127.0.0.1:8333".to_string()),
            ("A".to_string(), "x, \"y\": z\\".to_string()),
            ("B".to_string(), "café 😀\n".to_string()),
            ("n".to_string(), "12".to_string()),
        ]
    );
    assert_eq!(parse_flat_json(" { } \n").unwrap(), vec![]);
    for bad in [
        "",
        "{\"a\": \"b\"",
        "{\"a\": [1]}",
        "{\"a\": {\"b\": \"c\"}}",
        "{\"a\": \"\\ud83d\"}",
        "{\"a\": \"b\"} x",
    ] {
        assert!(parse_flat_json(bad).is_err(), "{bad:?} was accepted");
    }
}

/// A restore through a proxy that holds every object GET without an answer, with the
/// breaker's settings.
fn stalled_restore(
    s: &Scratch,
    b: &str,
    proxy: &Proxy,
    concurrency: u64,
) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let o = command_via(s, &proxy.endpoint())
        .env("CBACK3_RESPONSE_TIMEOUT", RESPONSE_TIMEOUT_S.to_string())
        .env("AWS_MAX_ATTEMPTS", BREAKER_ATTEMPTS.to_string())
        .args(["--restore", "--maxConcurrency", &concurrency.to_string()])
        .arg(s.dir.path().join("restored"))
        .arg(url(b, "p"))
        .output()
        .unwrap();
    (o, started.elapsed())
}

/// The listing works (its request line has the prefix encoded, `p%2F`); every object GET is
/// held without an answer.
const HOLD_OBJECT_GETS: &str = r#"{"fault_rate": 1, "faults": ["stall"], "stall_s": 60, "fault_methods": ["GET"], "fault_match": "/p/"}"#;

#[test]
fn downloads_stop_once_the_endpoint_stops_answering() {
    for n in [40, 120] {
        let s = Scratch::new();
        let b = bucket("rbreaker");
        for i in 0..n {
            put_object(&b, &format!("p/f{i:03}"), format!("{i}").as_bytes());
        }
        let proxy = Proxy::start(19);
        proxy.set(HOLD_OBJECT_GETS);
        let summary = s.dir.path().join("summary.json");
        let started = Instant::now();
        let o = command_via(&s, &proxy.endpoint())
            .env("CBACK3_RESPONSE_TIMEOUT", RESPONSE_TIMEOUT_S.to_string())
            .env("AWS_MAX_ATTEMPTS", BREAKER_ATTEMPTS.to_string())
            .args([
                "--restore",
                "--maxConcurrency",
                &BREAKER_CONCURRENCY.to_string(),
            ])
            .arg("--summaryFile")
            .arg(&summary)
            .arg(s.dir.path().join("restored"))
            .arg(url(&b, "p"))
            .output()
            .unwrap();
        let took = started.elapsed();
        let stats = proxy.finish();
        eprintln!("{n} objects: {took:?}, {stats:?}");
        stopped_answering(&o, n);
        let last = stdout_lines(&o).last().cloned().unwrap_or_default();
        assert!(last.contains("downloads failed"), "{last}");
        let gets = stats.get("stall").copied().unwrap_or(0);
        assert!(
            gets <= breaker_max_requests(),
            "{n} objects: {gets} GETs reached the proxy"
        );
        assert!(took < breaker_bound(), "{n} objects: {took:?}");
        let text = std::fs::read_to_string(&summary).unwrap();
        let not_attempted: usize = last
            .split(" files were not attempted")
            .next()
            .and_then(|h| h.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(
            text.contains(&format!("\"not_attempted\": {not_attempted},")),
            "{text}"
        );
        validate_json(&summary, "schema/summary.schema.json");
    }
}

/// The ranged GETs of large objects run in tasks of their own: their failures count too.
/// Only large objects, two requests at a time: without those reports nothing would trip and
/// every object would wait out its own retries.
#[test]
fn ranged_downloads_count_towards_the_endpoint_stopping() {
    let s = Scratch::new();
    let b = bucket("rbreakerbig");
    let big: Vec<u8> = (0..17 * 1024 * 1024u32).map(|i| (i % 239) as u8).collect();
    put_object(&b, "p/big0", &big);
    let c = client();
    let n = 8;
    for i in 1..n {
        rt().block_on(
            c.copy_object()
                .bucket(&b)
                .key(format!("p/big{i}"))
                .copy_source(format!("{b}/p/big0"))
                .send(),
        )
        .unwrap();
    }
    let proxy = Proxy::start(23);
    proxy.set(HOLD_OBJECT_GETS);
    let (o, took) = stalled_restore(&s, &b, &proxy, 2);
    let stats = proxy.finish();
    eprintln!("{n} large objects: {took:?}, {stats:?}");
    assert_eq!(code(&o), 6, "{}", show(&o));
    let last = stdout_lines(&o).last().cloned().unwrap_or_default();
    assert!(last.contains("The S3 endpoint stopped answering"), "{last}");
    assert!(!last.contains(" 0 files were not attempted"), "{last}");
    assert!(local_files(&s.dir.path().join("restored")).is_empty());
}
