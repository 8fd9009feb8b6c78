//! Upload integrity against the real server: files that change while they are uploaded,
//! a file replaced by a FIFO, the exact change rule (mtime metadata), repairs found by
//! --verifyContent, and the run's own logfile inside the source.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

const MIB: usize = 1024 * 1024;
const RETRY_LINE: &str = "changed while it was being uploaded (attempt 1 of 3)";

fn spawn(s: &Scratch, args: &[&str]) -> Child {
    command(s)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Rewrites `path` in place (same size) or appends to it (at most 2 MiB in all, then the
/// last 4 KiB in place), in a loop on a thread, until `stop` says so; the first write
/// starts at once.
fn rewriter(
    path: PathBuf,
    append: bool,
    stop: impl Fn() -> bool + Send + 'static,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        // Not O_APPEND: Linux ignores pwrite's offset then.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let size = f.metadata().unwrap().len() as usize;
        let mut len = size as u64;
        let mut writes = 0usize;
        while !stop() {
            writes += 1;
            if append && writes <= 512 {
                f.write_all_at(&[b'+'; 4096], len).unwrap();
                len += 4096;
            } else if append {
                f.write_all_at(&[(writes % 251) as u8; 4096], len - 4096)
                    .unwrap();
            } else {
                f.write_all_at(&vec![(writes % 251) as u8; size], 0)
                    .unwrap();
            }
        }
        writes
    })
}

fn mtime_ns(p: &Path) -> i64 {
    let m = std::fs::metadata(p).unwrap().modified().unwrap();
    m.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// The object's `mtime` metadata as nanoseconds (decimal seconds, up to 9 fraction digits).
fn metadata_mtime_ns(bucket: &str, key: &str) -> Option<i64> {
    let h = head(bucket, key);
    let text = h.metadata()?.get("mtime")?.clone();
    let (secs, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = format!("{frac:0<9}");
    Some(secs.parse::<i64>().unwrap() * 1_000_000_000 + frac.parse::<i64>().unwrap())
}

/// After a run whose file changed during its upload, either the run succeeded and the
/// object is the file byte for byte, or it failed and the next run uploads it.
fn object_is_current_or_next_run_uploads(s: &Scratch, bucket: &str, rel: &str, first: &Output) {
    let file = s.src().join(rel);
    let key = format!("p/{rel}");
    if code(first) == 0 {
        assert_eq!(
            get_object(bucket, &key),
            std::fs::read(&file).unwrap(),
            "{}",
            s.logtext()
        );
    } else {
        assert_eq!(code(first), 6, "{}", show(first));
        let again = run(s, [s.src().as_os_str(), url(bucket, "p").as_ref()]);
        assert_eq!(code(&again), 0, "{}", show(&again));
        assert_eq!(last_uploaded(s), 1);
        assert_eq!(get_object(bucket, &key), std::fs::read(&file).unwrap());
    }
}

#[test]
fn multipart_file_rewritten_in_place_during_its_upload_is_uploaded_again() {
    let s = Scratch::new();
    let bucket = bucket("integ-mp");
    let path = s.write("big.bin", &vec![7u8; 20 * MIB]);
    let child = spawn(&s, &[s.src().to_str().unwrap(), &url(&bucket, "p")]);
    let log = s.log();
    // Rewrites (same size, new mtime) until the run says it saw the change and tries again.
    let writer = rewriter(path, false, move || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains(RETRY_LINE))
    });
    let out = wait_bounded(child, Duration::from_secs(120));
    assert!(writer.join().unwrap() > 0);
    assert!(s.logtext().contains(RETRY_LINE), "{}", s.logtext());
    assert!(!s.logtext().contains("on the next run"), "{}", s.logtext());
    object_is_current_or_next_run_uploads(&s, &bucket, "big.bin", &out);
    assert_eq!(open_uploads(&bucket), Vec::<String>::new());
}

#[test]
fn streamed_file_that_grows_during_its_upload_is_uploaded_and_verified_as_grown() {
    let s = Scratch::new();
    let bucket = bucket("integ-grow");
    let path = s.write("mid.bin", &vec![3u8; 8 * MIB]);
    let child = spawn(&s, &[s.src().to_str().unwrap(), &url(&bucket, "p")]);
    let log = s.log();
    let writer = rewriter(path.clone(), true, move || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains(RETRY_LINE))
    });
    let out = wait_bounded(child, Duration::from_secs(120));
    writer.join().unwrap();
    assert!(s.logtext().contains(RETRY_LINE), "{}", s.logtext());
    // The file grew after the walk; the run succeeds (the writer stopped once the run said
    // it would try again), so verification compared with the version uploaded.
    assert!(std::fs::metadata(&path).unwrap().len() > 8 * MIB as u64);
    assert_eq!(code(&out), 0, "{}", show(&out));
    object_is_current_or_next_run_uploads(&s, &bucket, "mid.bin", &out);
}

/// Rewrites `path` in place each time the run has started reading its current version
/// (its atime passes its mtime: relatime updates atime on the first read after a change),
/// so every attempt reads a file that changes under it. Until `done`.
fn rewrite_whenever_read(path: PathBuf, done: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    use std::os::unix::fs::MetadataExt;
    std::thread::spawn(move || {
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let size = f.metadata().unwrap().len() as usize;
        let mut writes = 0;
        let read_since_written = || {
            let m = std::fs::metadata(&path).unwrap();
            (m.atime(), m.atime_nsec()) > (m.mtime(), m.mtime_nsec())
        };
        while !done.load(Ordering::Relaxed) {
            if writes == 0 || read_since_written() {
                writes += 1;
                f.write_all_at(&vec![(writes % 251) as u8; size], 0)
                    .unwrap();
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        writes
    })
}

#[test]
fn files_changing_until_the_run_ends_fail_after_three_attempts_and_leave_no_torn_object() {
    let s = Scratch::new();
    let bucket = bucket("integ-torn");
    let big = s.write("big.bin", &vec![1u8; 17 * MIB]);
    let mid = s.write("mid.bin", &vec![2u8; 6 * MIB]);
    s.write("calm.txt", b"calm");
    // Latency keeps each request in flight long after its file was first read.
    let proxy = Proxy::start(2);
    proxy.set(r#"{"fault_rate": 0, "delay_ms": 400}"#);
    let child = command_via(&s, &proxy.endpoint())
        .args([s.src().to_str().unwrap(), &url(&bucket, "p")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [big, mid]
        .into_iter()
        .map(|p| rewrite_whenever_read(p, done.clone()))
        .collect();
    let out = wait_bounded(child, Duration::from_secs(180));
    done.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(code(&out), 6, "{}", show(&out));
    let log = s.logtext();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Failed to upload"))
        .collect();
    assert_eq!(failed.len(), 2, "{log}");
    for l in &failed {
        assert!(
            l.contains("changed while being uploaded, on each of 3 attempts"),
            "{l}"
        );
    }
    // The single-request object written while the file changed was deleted (and logged);
    // the multipart upload was never completed.
    let mid_line = failed.iter().find(|l| l.contains("mid.bin")).unwrap();
    assert!(
        mid_line.contains("was deleted, so the next run uploads it again"),
        "{mid_line}"
    );
    assert!(
        log.contains("Deleted s3://") && log.contains("may be torn"),
        "{log}"
    );
    let big_line = failed.iter().find(|l| l.contains("big.bin")).unwrap();
    assert!(big_line.contains("nothing was written"), "{big_line}");
    let keys: Vec<String> = objects(&bucket).into_keys().collect();
    assert_eq!(keys, ["p/calm.txt"], "{log}");
    assert_eq!(open_uploads(&bucket), Vec::<String>::new());
    assert!(log.contains("nothing was deleted"), "{log}");

    // Once the files hold still, the next run uploads both.
    let again = run(&s, [s.src().as_os_str(), url(&bucket, "p").as_ref()]);
    assert_eq!(code(&again), 0, "{}", show(&again));
    assert_eq!(last_uploaded(&s), 2);
    for rel in ["big.bin", "mid.bin"] {
        assert_eq!(
            get_object(&bucket, &format!("p/{rel}")),
            std::fs::read(s.src().join(rel)).unwrap()
        );
    }
}

#[test]
fn a_file_replaced_by_a_fifo_before_its_upload_does_not_hang_the_run() {
    let s = Scratch::new();
    let bucket = bucket("integ-fifo");
    let victim = s.write("victim.txt", b"a regular file at walk time");
    s.write("other.txt", b"other");
    let proxy = Proxy::start(1);
    // Every GET (the listing) is held until the walk is done and the file is replaced.
    proxy.set(r#"{"fault_rate": 1, "faults": ["stall"], "fault_methods": ["GET"], "stall_s": 30}"#);
    let child = command_via(&s, &proxy.endpoint())
        .env("CBACK3_RESPONSE_TIMEOUT", "1")
        .args([s.src().to_str().unwrap(), &url(&bucket, "p")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_walk_and_stalled_listing(&s, &proxy);
    std::fs::remove_file(&victim).unwrap();
    let c = std::ffi::CString::new(victim.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    proxy.set(r#"{"fault_rate": 0}"#);
    let out = wait_bounded(child, Duration::from_secs(90));
    assert_eq!(code(&out), 6, "{}", show(&out));
    let log = s.logtext();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Failed to upload"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("victim.txt")
            && lines[0]
                .contains("is now a FIFO, no longer the regular file the walk saw; not uploaded"),
        "{}",
        lines[0]
    );
    assert_eq!(get_object(&bucket, "p/other.txt"), b"other");
}

/// Waits for the start of a new second, so that files written now and uploaded right away
/// share their second with the objects' LastModified.
fn at_the_start_of_a_second() {
    poll_until("a new second", Duration::from_secs(3), || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis()
            < 50
    });
}

/// A sync of the scratch source to `s3://bucket/p` through `proxy`, with a private lock
/// directory of its own (where the run keeps the `mtime` metadata it knows); the output, and
/// the HeadObject and PUT requests (PutObject, UploadPart) it sent.
fn counted_run(s: &Scratch, proxy: &Proxy, bucket: &str) -> (Output, u64, u64) {
    let before = proxy.stats();
    let o = command_via(s, &proxy.endpoint())
        .env(cback3_s3sync::lock::LOCK_DIR_ENV, private_locks(s))
        .args(["-d", s.src().to_str().unwrap(), &url(bucket, "p")])
        .output()
        .unwrap();
    let after = proxy.stats();
    let sent = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    (o, sent("method_HEAD"), sent("method_PUT"))
}

fn private_locks(s: &Scratch) -> PathBuf {
    s.dir.path().join("private-locks")
}

/// The cache of `mtime` metadata answers in the private lock directory (one target: one file).
fn answers_file(s: &Scratch) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(private_locks(s))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("mtimes-")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// Files written in the second of their upload are newer than their objects' LastModified
/// (whole seconds). Each got a HeadObject for its `mtime` metadata on every later run, for
/// ever; now the run that uploads them keeps the answer, and the no-op runs after it send no
/// HeadObject and no PUT. A lost cache costs the HeadObjects once.
#[test]
fn files_written_in_the_second_of_their_upload_are_not_uploaded_again() {
    let s = Scratch::new();
    let bucket = bucket("integ-second");
    let proxy = Proxy::start(3);
    // Written at the start of a second and uploaded at once, most files share their second
    // with their object's LastModified. A machine too busy to upload any of them within that
    // second writes them again (a new mtime each) and uploads them again.
    let mut same_second = 0;
    for _ in 0..5 {
        at_the_start_of_a_second();
        for i in 0..100 {
            std::fs::write(s.src().join(format!("f{i:03}")), format!("file {i}")).unwrap();
        }
        let (first, _, puts) = counted_run(&s, &proxy, &bucket);
        assert_eq!(code(&first), 0, "{}", show(&first));
        assert_eq!(last_uploaded(&s), 100);
        assert_eq!(puts, 100);
        let objs = objects(&bucket);
        same_second = 0;
        for i in 0..100 {
            let rel = format!("f{i:03}");
            let key = format!("p/{rel}");
            let m = mtime_ns(&s.src().join(&rel));
            assert_eq!(metadata_mtime_ns(&bucket, &key), Some(m), "{key}");
            let lm = objs[&key].last_modified;
            let lm_ns = lm.0 * 1_000_000_000 + i64::from(lm.1);
            if m > lm_ns {
                same_second += 1;
            }
        }
        if same_second > 0 {
            break;
        }
    }
    // The listing alone would call these files newer than their objects.
    assert!(
        same_second > 0,
        "no file was newer than its object's LastModified"
    );
    for run in ["second", "third"] {
        let (o, heads, puts) = counted_run(&s, &proxy, &bucket);
        assert_eq!(code(&o), 0, "{}", show(&o));
        assert_eq!(last_uploaded(&s), 0, "{}", s.logtext());
        assert_eq!(
            (heads, puts),
            (0, 0),
            "{run} run, {same_second} ambiguous files"
        );
    }
    // Without the cache, the objects are asked once (and nothing is uploaded), then known.
    std::fs::remove_file(answers_file(&s)).unwrap();
    let (o, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!((heads, puts), (same_second as u64, 0));
    let (o, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!((heads, puts), (0, 0));
}

/// Files dated in the future (a wrong clock, an archive's dates) were newer than their
/// objects on every run and uploaded again every night. Now the recorded mtime says that
/// they did not change: uploaded once, then neither uploaded nor asked; a damaged cache
/// costs HeadObjects only; and a future-dated file that changed (same size, another mtime)
/// is uploaded.
#[test]
fn future_dated_files_are_uploaded_once() {
    let s = Scratch::new();
    let bucket = bucket("integ-future");
    let proxy = Proxy::start(4);
    let y2100 = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
    let tomorrow = SystemTime::now() + Duration::from_secs(86_400);
    let far = s.write("far.txt", b"dated 2100");
    let near = s.write("near.txt", b"dated tomorrow");
    s.write("old.txt", b"dated an hour ago");
    set_mtime(&far, y2100);
    set_mtime(&near, tomorrow);
    let (o, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!((heads, puts), (0, 3));
    assert_eq!(
        metadata_mtime_ns(&bucket, "p/far.txt"),
        Some(mtime_ns(&far))
    );
    for run in ["second", "third"] {
        let (o, heads, puts) = counted_run(&s, &proxy, &bucket);
        assert_eq!(code(&o), 0, "{}", show(&o));
        assert_eq!((heads, puts), (0, 0), "{run} run: {}", s.logtext());
        assert_eq!(last_uploaded(&s), 0);
    }

    // A damaged cache is ignored (a DEBUG line): the two objects are asked, nothing uploaded.
    std::fs::write(answers_file(&s), "garbage\n").unwrap();
    let (o, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!((heads, puts), (2, 0));
    assert!(
        s.logtext().contains("Ignoring the cache of mtime metadata"),
        "{}",
        s.logtext()
    );
    let (_, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!((heads, puts), (0, 0));

    // Changed, still dated in the future, same size: uploaded (and known again after).
    std::fs::write(&far, b"dated 2101").unwrap();
    set_mtime(&far, y2100 + Duration::from_secs(1));
    let (o, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!((heads, puts), (0, 1));
    assert_eq!(get_object(&bucket, "p/far.txt"), b"dated 2101");
    assert!(
        s.logtext()
            .contains("mtime differs from the object's mtime metadata"),
        "{}",
        s.logtext()
    );
    let (_, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!((heads, puts), (0, 0));
}

/// Objects without `mtime` metadata (the original tool's) keep the listing's rule exactly:
/// a file newer than its object is uploaded, by a second or by years, and one that is not
/// newer is neither uploaded nor asked about.
#[test]
fn objects_without_mtime_metadata_keep_the_listing_rule() {
    let s = Scratch::new();
    let bucket = bucket("integ-origrule");
    let proxy = Proxy::start(5);
    let newer = s.write("newer.txt", b"local!");
    let future = s.write("future.txt", b"local?");
    s.write("older.txt", b"local.");
    for k in ["newer.txt", "future.txt", "older.txt"] {
        put_object(&bucket, &format!("p/{k}"), b"remote");
    }
    let lm = objects(&bucket)["p/newer.txt"].last_modified;
    set_mtime(&newer, UNIX_EPOCH + Duration::new(lm.0 as u64 + 5, lm.1));
    set_mtime(&future, UNIX_EPOCH + Duration::from_secs(4_102_444_800));
    let (o, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!((heads, puts), (2, 2));
    assert_eq!(get_object(&bucket, "p/newer.txt"), b"local!");
    assert_eq!(get_object(&bucket, "p/future.txt"), b"local?");
    assert_eq!(get_object(&bucket, "p/older.txt"), b"remote");
    // Now written by this tool: known from the upload, nothing more to do.
    let (_, heads, puts) = counted_run(&s, &proxy, &bucket);
    assert_eq!((heads, puts), (0, 0));
}

#[test]
fn an_object_without_mtime_metadata_and_a_same_second_newer_file_is_uploaded() {
    let s = Scratch::new();
    let bucket = bucket("integ-nometa");
    let file = s.write("f.txt", b"local!");
    put_object(&bucket, "p/f.txt", b"remote");
    let lm = objects(&bucket)["p/f.txt"].last_modified;
    // Newer than LastModified by half a second: ambiguous, and the object has no metadata.
    set_mtime(
        &file,
        UNIX_EPOCH + Duration::new(lm.0 as u64, lm.1) + Duration::from_millis(500),
    );
    let out = run(&s, ["-O", s.src().to_str().unwrap(), &url(&bucket, "p")]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(last_uploaded(&s), 1);
    assert!(
        s.logtext().contains("(local file is newer)"),
        "{}",
        s.logtext()
    );
    assert_eq!(get_object(&bucket, "p/f.txt"), b"local!");
    assert_eq!(metadata_mtime_ns(&bucket, "p/f.txt"), Some(mtime_ns(&file)));
}

#[test]
fn verify_content_in_a_sync_run_repairs_a_bad_copy() {
    let s = Scratch::new();
    let bucket = bucket("integ-repair");
    let src = s.src();
    s.write("good.txt", b"good content");
    s.write("bad.txt", b"the right bytes");
    let args = ["--verifyContent", src.to_str().unwrap(), &url(&bucket, "p")];
    let first = run(&s, args);
    assert_eq!(code(&first), 0, "{}", show(&first));
    // Same size, written after the file: the change rule takes it as current.
    put_object(&bucket, "p/bad.txt", b"the wrong bytes");

    // -v only reports.
    let check = run(
        &s,
        [
            "-v",
            "--verifyContent",
            src.to_str().unwrap(),
            &url(&bucket, "p"),
        ],
    );
    assert_eq!(code(&check), 6, "{}", show(&check));
    assert_eq!(get_object(&bucket, "p/bad.txt"), b"the wrong bytes");

    let repair = run(&s, args);
    assert_eq!(code(&repair), 0, "{}", show(&repair));
    let log = s.logtext();
    let run2 = &log[log.rfind("Source ").unwrap()..];
    assert!(run2.contains("Repaired [bad.txt]"), "{run2}");
    assert!(!run2.contains("ERROR"), "{run2}");
    assert_eq!(get_object(&bucket, "p/bad.txt"), b"the right bytes");

    let again = run(&s, args);
    assert_eq!(code(&again), 0, "{}", show(&again));
    assert_eq!(last_uploaded(&s), 0);
    assert!(!s.logtext()[s.logtext().rfind("Source ").unwrap()..].contains("Repaired"));
}

#[test]
fn the_runs_own_logfile_in_the_source_never_fails_the_run() {
    let s = Scratch::new();
    let bucket = bucket("integ-ownlog");
    let src = s.src();
    s.write("data.txt", b"data");
    std::fs::create_dir_all(src.join("log")).unwrap();
    let own = src.join("log/cback3.log");
    std::fs::write(&own, b"an older night\n").unwrap();
    let own_arg = own.to_str().unwrap().to_string();
    let sync = |extra: &[&str]| {
        let mut c = command(&s);
        c.args(["-l", &own_arg])
            .args(extra)
            .arg(&src)
            .arg(url(&bucket, "p"));
        c.output().unwrap()
    };
    for _ in 0..2 {
        let out = sync(&[]);
        assert_eq!(
            code(&out),
            0,
            "{}\n{}",
            show(&out),
            std::fs::read_to_string(&own).unwrap()
        );
        // The copy is the logfile as the walk saw it: a prefix of what it holds now.
        let copy = get_object(&bucket, "p/log/cback3.log");
        let now = std::fs::read(&own).unwrap();
        assert!(copy.len() > "an older night\n".len() && copy.len() < now.len());
        assert_eq!(&now[..copy.len()], &copy[..]);
    }
    let check = sync(&["-v"]);
    assert_eq!(code(&check), 0, "{}", show(&check));
    let text = std::fs::read_to_string(&own).unwrap();
    assert!(text.contains("is this run's own file"), "{text}");
    let content = sync(&["-v", "--verifyContent"]);
    assert_eq!(code(&content), 0, "{}", show(&content));
}

#[test]
fn a_file_truncated_while_it_is_read_is_uploaded_in_its_new_version() {
    let s = Scratch::new();
    let bucket = bucket("integ-shrink");
    let path = s.write("shrinks.bin", &vec![9u8; 12 * MIB]);
    // Read before it was last written, so that the run's first read moves atime past mtime.
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(hour_ago)
                .set_modified(hour_ago + Duration::from_secs(60)),
        )
        .unwrap();
    let proxy = Proxy::start(4);
    proxy.set(r#"{"fault_rate": 0, "delay_ms": 300}"#);
    let child = command_via(&s, &proxy.endpoint())
        .args([s.src().to_str().unwrap(), &url(&bucket, "p")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the run has started reading the file, cut it to a quarter.
    wait_until_read(&path);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(3 * MIB as u64).unwrap();
    drop(f);
    let out = wait_bounded(child, Duration::from_secs(120));
    assert_eq!(code(&out), 0, "{}\n{}", show(&out), s.logtext());
    assert!(s.logtext().contains(RETRY_LINE), "{}", s.logtext());
    assert_eq!(
        get_object(&bucket, "p/shrinks.bin"),
        std::fs::read(&path).unwrap()
    );
}

#[test]
fn the_runs_own_summary_file_in_the_source_never_fails_the_run() {
    let s = Scratch::new();
    let bucket = bucket("integ-ownsummary");
    let src = s.src();
    s.write("data.txt", b"data");
    let own = src.join("state/summary.json");
    std::fs::create_dir_all(own.parent().unwrap()).unwrap();
    let own_arg = own.to_str().unwrap().to_string();
    let sync = |extra: &[&str]| {
        command(&s)
            .args(["--summaryFile", &own_arg])
            .args(extra)
            .arg(&src)
            .arg(url(&bucket, "p"))
            .output()
            .unwrap()
    };
    let mut previous: Option<Vec<u8>> = None;
    for night in 0..3 {
        let out = sync(&[]);
        assert_eq!(
            code(&out),
            0,
            "night {night}: {}\n{}",
            show(&out),
            s.logtext()
        );
        // The summary of the night before is uploaded like any file, as the walk saw it.
        match &previous {
            Some(p) => assert_eq!(&get_object(&bucket, "p/state/summary.json"), p),
            None => assert!(!objects(&bucket).contains_key("p/state/summary.json")),
        }
        let now = std::fs::read(&own).unwrap();
        previous = Some(now);
    }
    for extra in [
        &["-v"][..],
        &["-v", "--verifyContent"],
        &["--verifyContent"],
    ] {
        let out = sync(extra);
        assert_eq!(code(&out), 0, "{extra:?}: {}\n{}", show(&out), s.logtext());
    }
}

#[test]
fn the_runs_lock_directory_in_the_source_never_fails_the_run() {
    let s = Scratch::new();
    let bucket = bucket("integ-ownlock");
    let src = s.src();
    s.write("data.txt", b"data");
    let locks = src.join("var/locks");
    let sync = |extra: &[&str]| {
        command(&s)
            .env("CBACK3_LOCK_DIR", &locks)
            .args(extra)
            .arg(&src)
            .arg(url(&bucket, "p"))
            .output()
            .unwrap()
    };
    for extra in [
        &[][..],
        &[],
        &["--verifyContent"],
        &["-v", "--verifyContent"],
    ] {
        let out = sync(extra);
        assert_eq!(code(&out), 0, "{extra:?}: {}\n{}", show(&out), s.logtext());
    }
    // The lock files (the prefix's and the bucket root's) were walked and copied (and the
    // run's cache of mtime metadata, an ordinary file of that directory, too).
    let lock_objects = file_objects(&bucket)
        .keys()
        .filter(|k| k.starts_with("p/var/locks/") && k.ends_with(".lock"))
        .count();
    assert_eq!(lock_objects, 2, "{:?}", objects(&bucket).keys());
    assert!(s.logtext().contains("is this run's own file"));
}

/// A sparse file (holes read as zeros) that, while it is read, is cut to 0 bytes and written
/// again to the same size with other bytes and its old mtime put back (`touch -r`): size and
/// mtime are as the walk saw them, only the ctime tells, and it must be enough. Streamed and
/// multipart sizes both.
#[test]
fn a_sparse_file_emptied_and_refilled_to_its_size_and_mtime_is_uploaded_in_its_new_version() {
    use std::os::unix::fs::MetadataExt;
    for (name, size) in [("streamed.bin", 6 * MIB), ("multipart.bin", 20 * MIB)] {
        let s = Scratch::new();
        let bucket = bucket("integ-sparse");
        let path = s.src().join(name);
        {
            let f = std::fs::File::create(&path).unwrap();
            f.set_len(size as u64).unwrap();
            f.write_at(b"head", 0).unwrap();
            f.write_at(b"tail", size as u64 - 4).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < size as u64 / 2);
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let old_mtime = hour_ago + Duration::from_secs(60);
        let times = std::fs::FileTimes::new()
            .set_accessed(hour_ago)
            .set_modified(old_mtime);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(times)
            .unwrap();
        let proxy = Proxy::start(5);
        proxy.set(r#"{"fault_rate": 0, "delay_ms": 300}"#);
        let child = command_via(&s, &proxy.endpoint())
            .args([s.src().to_str().unwrap(), &url(&bucket, "p")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_until_read(&path);
        let before = std::fs::metadata(&path).unwrap();
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(0).unwrap();
        f.write_all_at(&body, 0).unwrap();
        f.set_modified(old_mtime).unwrap();
        drop(f);
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (after.len(), after.mtime(), after.mtime_nsec()),
            (before.len(), before.mtime(), before.mtime_nsec())
        );
        let out = wait_bounded(child, Duration::from_secs(120));
        assert_eq!(code(&out), 0, "{name}: {}\n{}", show(&out), s.logtext());
        assert!(s.logtext().contains(RETRY_LINE), "{name}: {}", s.logtext());
        assert!(
            get_object(&bucket, &format!("p/{name}")) == body,
            "{name}: the object is not the new version"
        );
        let again = run(
            &s,
            [
                "--verifyContent",
                s.src().to_str().unwrap(),
                &url(&bucket, "p"),
            ],
        );
        assert_eq!(code(&again), 0, "{name}: {}", show(&again));
    }
}

/// A writer that works in steps (truncate, compute, write, put the mtime back), each within
/// the settle time of the one before, for about a second and a half: every upload attempt
/// found the file changing before it read a byte, and the three attempts were spent in
/// well under a second (the run failed, every night such a writer runs). The upload now
/// follows the changes until the file has been quiet for the settle time (up to 5 s).
#[test]
fn a_file_rewritten_in_quick_steps_is_uploaded_once_it_is_quiet() {
    let s = Scratch::new();
    let bucket = bucket("integ-steps");
    let path = s.write("steps.bin", &vec![1u8; 2 * MIB]);
    let stop = Arc::new(AtomicBool::new(false));
    let wrote = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (path, stop, wrote) = (path.clone(), stop.clone(), wrote.clone());
        std::thread::spawn(move || {
            let old = SystemTime::now() - Duration::from_secs(3600);
            for step in 0..30u8 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(0).unwrap();
                f.write_all_at(&vec![step; 2 * MIB], 0).unwrap();
                f.set_modified(old).unwrap();
                wrote.fetch_add(1, Ordering::SeqCst);
                // The pace of the writer (part of the scenario, not a synchronisation).
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    poll_until("the writer to start", Duration::from_secs(10), || {
        wrote.load(Ordering::SeqCst) > 0
    });
    let out = run(&s, [s.src().to_str().unwrap(), &url(&bucket, "p")]);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(code(&out), 0, "{}\n{}", show(&out), s.logtext());
    assert_eq!(
        get_object(&bucket, "p/steps.bin"),
        std::fs::read(&path).unwrap(),
        "the object is not the file's last version"
    );
}
