//! argv → options → run → exit status. Shared by the binary and the Python extension.
//!
//! [`main`] is the binary's whole life (parse, logging, signals, run); [`execute`] is one
//! run given parsed options and a cancellation token, used by both front ends.

use std::ffi::OsString;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::options::{self, Options};
use crate::plan::{self, Mode};
use crate::report::{ExitStatus, Summary};
use crate::s3::{self, OpError};
use crate::{transfer, verify, walk, FLOW};

/// The binary's entry point: never exits the process itself.
pub fn main(args: &[OsString]) -> ExitStatus {
    let opts = match options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{}", options::usage());
            eprintln!();
            eprintln!("Error: {e}");
            return ExitStatus::Usage;
        }
    };
    if opts.help {
        eprint!("{}", options::usage());
        return ExitStatus::Success;
    }
    if opts.version {
        println!("{}", version_line());
        return ExitStatus::Success;
    }
    if opts.diagnostics {
        for line in diagnostics() {
            println!("{line}");
        }
        return ExitStatus::Success;
    }
    if let Err(e) = crate::logging::init(&opts) {
        eprintln!("Error: {e}");
        return ExitStatus::Logging;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!(target: FLOW, "Cannot start the async runtime: {e}");
            return ExitStatus::Failure;
        }
    };
    let cancel = CancellationToken::new();
    let status = rt.block_on(async {
        watch_signals(cancel.clone());
        execute(&opts, cancel).await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    log::logger().flush();
    status
}

/// Ctrl-C and SIGTERM cancel the run.
fn watch_signals(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        log::warn!(target: FLOW, "Interrupted: stopping uploads, aborting multipart uploads, deleting nothing.");
        cancel.cancel();
    });
}

pub fn version_line() -> String {
    format!("cback3-amazons3-sync (cback3-s3sync) {}", crate::VERSION)
}

/// `Title....: value` lines, sorted, as `-D` prints them.
pub fn diagnostics() -> Vec<String> {
    let env = |k: &str| std::env::var(k).ok();
    let locale = env("LC_ALL")
        .or_else(|| env("LC_CTYPE"))
        .or_else(|| env("LANG"))
        .unwrap_or_else(|| "C".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut items = vec![
        ("version", crate::VERSION.to_string()),
        (
            "runtime",
            format!("Rust core (cback3-s3sync {})", crate::VERSION),
        ),
        (
            "platform",
            format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        ),
        (
            "encoding",
            "utf-8 (object keys; names checked byte-exactly)".into(),
        ),
        ("locale", locale),
        ("timestamp", format!("{} (UTC epoch seconds)", now)),
    ];
    items.sort();
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 3;
    items
        .into_iter()
        .map(|(k, v)| format!("{k:.<width$}: {v}"))
        .collect()
}

fn mode_of(opts: &Options) -> Mode {
    if opts.verify_only {
        Mode::VerifyOnly
    } else if opts.upload_only {
        Mode::UploadOnly
    } else {
        Mode::Full
    }
}

/// One run: check names, sync (unless verify-only), verify. Logs everything, returns the status.
pub async fn execute(opts: &Options, cancel: CancellationToken) -> ExitStatus {
    let started = Instant::now();
    log::info!(target: FLOW, "Cedar Backup Amazon S3 sync run started ({}).", version_line());
    log::info!(target: FLOW, "Options: {opts:?}");
    log::info!(target: FLOW, "Logfile: {}", opts.logfile_path().display());
    for line in diagnostics() {
        log::info!(target: FLOW, "{line}");
    }
    let mut summary = Summary::default();
    let status = run(opts, &cancel, &mut summary).await;
    summary.elapsed = started.elapsed();
    log::info!(target: FLOW, "Summary: {summary}");
    log::info!(target: FLOW, "Cedar Backup Amazon S3 sync run completed with exit status {}.", status.code());
    status
}

async fn run(opts: &Options, cancel: &CancellationToken, summary: &mut Summary) -> ExitStatus {
    let mode = mode_of(opts);
    let (Some(source), Some(raw_url)) = (&opts.source_dir, &opts.s3_bucket_url) else {
        log::error!(target: FLOW, "Source directory and S3 bucket URL are both required.");
        return ExitStatus::Failure;
    };
    let url = match BucketUrl::parse(raw_url) {
        Ok(u) => u,
        Err(e) => {
            log::error!(target: FLOW, "{e}");
            return ExitStatus::Failure;
        }
    };
    log::info!(target: FLOW, "Source {} to {url} ({mode:?})", walk::display_path(source));

    // 1. Walk and check names.
    let walk_root = source.clone();
    let prefix_len = url.prefix.len();
    let walked = tokio::task::spawn_blocking(move || walk::walk(&walk_root, prefix_len)).await;
    let tree = match walked {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            log::error!(target: FLOW, "{e}");
            return ExitStatus::Failure;
        }
        Err(e) => {
            log::error!(target: FLOW, "source walk failed: {e}");
            return ExitStatus::Failure;
        }
    };
    summary.local_files = tree.files.len();
    summary.local_bytes = tree.total_bytes();
    summary.skipped = tree.skipped.len();
    summary.name_problems = tree.problems.len();
    for s in &tree.skipped {
        log::warn!(target: FLOW, "Skipping {} ({})", s.path, s.why);
    }
    for f in &tree.failures {
        log::error!(target: FLOW, "Cannot read {}: {}", f.path, f.error);
    }
    if !tree.problems.is_empty() {
        if opts.ignore_warnings {
            for p in &tree.problems {
                log::warn!(target: FLOW, "Skipping: {p}");
            }
            log::warn!(target: FLOW, "Skipped {} files whose names cannot be S3 keys (-w given).", tree.problems.len());
        } else {
            for p in &tree.problems {
                log::error!(target: FLOW, "{p}");
            }
            log::error!(target: FLOW, "{} files have names that cannot be S3 keys; nothing was uploaded. Rename them, or use -w to skip them.", tree.problems.len());
            return ExitStatus::Failure;
        }
    }
    if cancel.is_cancelled() {
        return ExitStatus::Interrupted;
    }

    // 2. List the prefix and plan.
    let client = s3::client().await;
    let listing = match s3::list(&client, &url, cancel).await {
        Ok(l) => l,
        Err(e) => return op_failure(e),
    };
    let plan = plan::plan(&tree.files, &listing, mode);
    summary.unchanged = plan.unchanged;
    if mode == Mode::Full
        && tree.files.is_empty()
        && !plan.deletes.is_empty()
        && !opts.allow_empty_source
    {
        log::error!(target: FLOW, "Source directory {} has no files but {url} holds {} objects; refusing to delete them all (use --allowEmptySource if that is intended).", walk::display_path(source), plan.deletes.len());
        return ExitStatus::Failure;
    }

    // 3. Uploads, then deletes only when everything before them succeeded.
    let mut changed = false;
    if !plan.uploads.is_empty() {
        log::info!(target: FLOW, "Uploading {} files.", plan.uploads.len());
        let up = transfer::upload(&client, &url, &tree, &plan, opts.concurrency(), cancel).await;
        summary.uploaded = up.uploaded;
        summary.uploaded_bytes = up.bytes;
        summary.failed = up.failures.len();
        changed = up.uploaded > 0 || !up.failures.is_empty();
        if up.interrupted {
            log::error!(target: FLOW, "Interrupted after {} uploads; nothing was deleted.", up.uploaded);
            return ExitStatus::Interrupted;
        }
        if !up.failures.is_empty() {
            log::error!(target: FLOW, "{} uploads failed; nothing was deleted.", up.failures.len());
            return ExitStatus::Failure;
        }
    }
    if !tree.failures.is_empty() {
        log::error!(target: FLOW, "{} paths could not be read; nothing was deleted.", tree.failures.len());
        return ExitStatus::Failure;
    }
    if !plan.deletes.is_empty() {
        log::info!(target: FLOW, "Deleting {} objects that have no local file.", plan.deletes.len());
        let (n, failures) = transfer::delete(&client, &url, &plan, cancel).await;
        summary.deleted = n;
        summary.failed += failures.len();
        changed = true;
        if cancel.is_cancelled() {
            return ExitStatus::Interrupted;
        }
        if !failures.is_empty() {
            return ExitStatus::Failure;
        }
    }

    // 4. Verify against a fresh listing (the first one still holds if nothing changed).
    let listing = if changed {
        match s3::list(&client, &url, cancel).await {
            Ok(l) => l,
            Err(e) => return op_failure(e),
        }
    } else {
        listing
    };
    let v = verify::verify(&tree, &listing, mode);
    summary.verified = v.verified;
    summary.verify_errors = v.errors.len();
    summary.extra_objects = v.extras;
    if !v.errors.is_empty() {
        log::error!(target: FLOW, "Verification failed: {} differences between {} and {url}.", v.errors.len(), walk::display_path(source));
        return ExitStatus::Failure;
    }
    log::info!(target: FLOW, "Verified {} files in {url}.", v.verified);
    ExitStatus::Success
}

fn op_failure(e: OpError) -> ExitStatus {
    match e {
        OpError::Interrupted(_) => ExitStatus::Interrupted,
        other => {
            log::error!(target: FLOW, "{other}");
            ExitStatus::Failure
        }
    }
}
