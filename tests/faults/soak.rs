//! Randomized soak: many runs over a changing tree, with random faults (through
//! tests/s3proxy.py) and SIGINT at random points. Invariants, checked after every run:
//! an object whose local file existed before and after the run is never deleted, no
//! multipart upload is left open, and objects outside the prefix are untouched. After each
//! final clean run the prefix equals the source (keys, sizes, bytes).
//!
//! `cargo test` runs a short form. The long form:
//! `SOAK_RUNS=200 SOAK_SEED=1 cargo test --test faults -- soak:: --nocapture` (figures).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a test may show what it saw

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;

const PREFIX: &str = "p/";
const BIG: usize = 17 * 1024 * 1024;

fn body(rng: &mut Rng, len: usize) -> Vec<u8> {
    let seed = rng.next();
    (0..len)
        .map(|i| (seed as usize + i * 31 % 257) as u8)
        .collect()
}

fn rels(s: &Scratch) -> Vec<String> {
    local_files(&s.src()).into_keys().collect()
}

/// Adds, deletes, rewrites at the same size with a newer mtime, and resizes files.
fn mutate(s: &Scratch, rng: &mut Rng, serial: &mut u64) {
    let existing = rels(s);
    for _ in 0..rng.below(6) {
        *serial += 1;
        let len = rng.below(20_000);
        let b = body(rng, len);
        s.write(format!("d{}/n{serial}.dat", rng.below(5)), &b);
    }
    for rel in &existing {
        let p = s.src().join(rel);
        match rng.below(12) {
            0 => std::fs::remove_file(&p).unwrap(),
            1 => {
                let len = std::fs::metadata(&p).unwrap().len() as usize;
                let b = body(rng, len);
                std::fs::write(&p, &b).unwrap();
                // Newer than any upload so far, as an edit would be.
                set_mtime(&p, SystemTime::now() + Duration::from_secs(2));
            }
            2 => {
                let len = rng.below(30_000);
                let b = body(rng, len);
                std::fs::write(&p, &b).unwrap();
            }
            _ => {}
        }
    }
    // The large file is sometimes rewritten (a multipart upload) and sometimes missing.
    let big = s.src().join("big/blob.bin");
    if rng.chance(30) {
        let len = BIG + rng.below(3) * 1024 * 1024;
        let b = body(rng, len);
        std::fs::create_dir_all(big.parent().unwrap()).unwrap();
        std::fs::write(&big, &b).unwrap();
    } else if big.exists() && rng.chance(10) {
        std::fs::remove_file(&big).unwrap();
    }
}

#[derive(Debug, Clone, Copy)]
enum Interrupt {
    None,
    /// After this many "upload:" lines in the run's logfile.
    AfterUploads(usize),
    /// When a multipart upload is open.
    DuringMultipart,
    /// At the first "delete:" line.
    DuringDeletes,
}

#[derive(Default)]
struct Figures {
    runs: usize,
    disturbed: usize,
    interrupts_sent: usize,
    exits: BTreeMap<i32, usize>,
    clean_checks: usize,
    objects_checked: usize,
    protected_checked: usize,
    lost: usize,
}

fn prefix_keys(bucket: &str) -> BTreeSet<String> {
    objects(bucket)
        .into_keys()
        .filter_map(|k| k.strip_prefix(PREFIX).map(String::from))
        .collect()
}

/// One run of the binary through the proxy, interrupted as asked. Returns the exit code
/// and whether SIGINT was sent.
fn one_run(s: &Scratch, proxy: &Proxy, bucket: &str, interrupt: Interrupt) -> (i32, bool) {
    let _ = std::fs::remove_file(s.log());
    let mut child = command_via(s, &proxy.endpoint())
        .env("CBACK3_RESPONSE_TIMEOUT", "1")
        .args(["-O", "--maxConcurrency", "8"])
        .arg(s.src())
        .arg(format!("s3://{bucket}/{PREFIX}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut signalled = false;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st.code().unwrap_or(-1), signalled);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "run did not end: {}",
            s.logtext()
        );
        if !signalled {
            let log = s.logtext();
            let hit = match interrupt {
                Interrupt::None => false,
                // A logfile with text means the binary's signal handlers exist (they come
                // first in main): a SIGINT before that kills it, which is no test of the run.
                Interrupt::AfterUploads(n) => {
                    !log.is_empty() && log.matches("upload: ").count() >= n
                }
                Interrupt::DuringMultipart => !open_uploads(bucket).is_empty(),
                Interrupt::DuringDeletes => log.contains("delete: "),
            };
            if hit {
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                signalled = true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn soak() {
    let runs: usize = std::env::var("SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_126);
    let mut rng = Rng::new(seed);
    let s = Scratch::new();
    let b = bucket("soak");
    let outside = ["p2/keep.txt", "p-old/keep.txt", "top.txt"];
    for k in outside {
        put_object(&b, k, k.as_bytes());
    }
    let proxy = Proxy::start(seed);
    let mut serial = 0;
    let mut f = Figures::default();
    let kinds = ["reset", "500", "503", "stall", "drop"];
    while f.runs < runs {
        mutate(&s, &mut rng, &mut serial);
        let disturbed = rng.below(3);
        for i in 0..=disturbed {
            let clean = i == disturbed;
            let interrupt = if clean {
                proxy.set(r#"{"fault_rate": 0}"#);
                Interrupt::None
            } else {
                let mut chosen: Vec<&str> =
                    kinds.iter().copied().filter(|_| rng.chance(50)).collect();
                if chosen.is_empty() {
                    chosen.push(kinds[rng.below(kinds.len())]);
                }
                let rate = [0.0, 0.05, 0.15, 0.3][rng.below(4)];
                let list: Vec<String> = chosen.iter().map(|k| format!("\"{k}\"")).collect();
                proxy.set(&format!(
                    r#"{{"fault_rate": {rate}, "faults": [{}], "stall_s": 30}}"#,
                    list.join(", ")
                ));
                match rng.below(5) {
                    0 => Interrupt::None,
                    1 | 2 => Interrupt::AfterUploads(rng.below(12)),
                    3 => Interrupt::DuringMultipart,
                    _ => Interrupt::DuringDeletes,
                }
            };
            let local_before: BTreeSet<String> = rels(&s).into_iter().collect();
            let bucket_before = prefix_keys(&b);
            let (code, signalled) = one_run(&s, &proxy, &b, interrupt);
            f.runs += 1;
            *f.exits.entry(code).or_default() += 1;
            f.interrupts_sent += usize::from(signalled);
            f.disturbed += usize::from(!clean);
            let tag = format!("seed {seed}, run {} ({interrupt:?}, exit {code})", f.runs);
            // No object whose file existed before and after the run may disappear.
            let local_after: BTreeSet<String> = rels(&s).into_iter().collect();
            let bucket_after = prefix_keys(&b);
            for rel in local_before.intersection(&local_after) {
                if bucket_before.contains(rel) {
                    f.protected_checked += 1;
                    if !bucket_after.contains(rel) {
                        f.lost += 1;
                        eprintln!("LOST {rel} in {tag}");
                    }
                }
            }
            assert_eq!(
                f.lost,
                0,
                "{tag}: objects with local files were deleted\n{}",
                s.logtext()
            );
            assert!([0, 5, 6].contains(&code), "{tag}\n{}", s.logtext());
            assert!(signalled || code != 5, "{tag}: exit 5 without a signal");
            assert_eq!(
                open_uploads(&b),
                Vec::<String>::new(),
                "{tag}: multipart upload left open\n{}",
                s.logtext()
            );
            let all = objects(&b);
            for k in outside {
                assert!(
                    all.contains_key(k),
                    "{tag}: {k} outside the prefix was touched"
                );
            }
            if clean {
                assert_eq!(code, 0, "{tag}: the clean run failed\n{}", s.logtext());
                f.objects_checked += assert_mirror(&b, PREFIX, &s.src());
                f.clean_checks += 1;
            }
        }
    }
    let stats = proxy.finish();
    println!(
        "soak figures (seed {seed}): runs {}, disturbed {}, clean-run mirror checks {}, interrupts sent {}, exit codes {:?}, proxy requests {}, faults injected {} ({}), objects compared byte for byte {}, protected objects checked {}, lost {}",
        f.runs,
        f.disturbed,
        f.clean_checks,
        f.interrupts_sent,
        f.exits,
        stats.get("requests").copied().unwrap_or(0),
        stats.get("faults").copied().unwrap_or(0),
        ["reset", "500", "503", "stall", "drop"]
            .iter()
            .map(|k| format!("{k} {}", stats.get(*k).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", "),
        f.objects_checked,
        f.protected_checked,
        f.lost
    );
    assert_eq!(f.lost, 0);
    assert!(f.clean_checks > 0);
    // A soak that injected nothing proves nothing: the disturbances must really have happened.
    let injected = stats.get("faults").copied().unwrap_or(0);
    let kinds_hit = ["reset", "500", "503", "stall", "drop"]
        .iter()
        .filter(|k| stats.get(**k).copied().unwrap_or(0) > 0)
        .count();
    assert!(
        f.disturbed >= runs / 4,
        "only {} of {} runs were disturbed",
        f.disturbed,
        f.runs
    );
    assert!(
        injected >= (runs / 3) as u64,
        "only {injected} faults were injected in {} runs",
        f.runs
    );
    assert!(
        kinds_hit >= 3,
        "only {kinds_hit} kinds of fault were injected"
    );
    assert!(
        f.interrupts_sent >= (runs / 10).max(1),
        "only {} interrupts were sent in {} runs",
        f.interrupts_sent,
        f.runs
    );
    assert!(
        f.exits.get(&5).copied().unwrap_or(0) >= 1,
        "no run ended interrupted: {:?}",
        f.exits
    );
}
