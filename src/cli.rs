//! argv → options → run → exit status. Shared by the binary and the Python extension.
//!
//! [`main`] is the binary's whole life (parse, logging, signals, run); [`execute`] is one
//! run given parsed options and a cancellation token, used by both front ends.

use std::ffi::OsString;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::options::{self, Options};
use crate::report::{ExitStatus, Summary};
use crate::{diagnostics, FLOW};

/// The binary's entry point: never exits the process itself.
pub fn main(args: &[OsString]) -> ExitStatus {
    let opts = match options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{}", options::usage());
            eprintln!(" *** Error: {e}");
            return ExitStatus::Usage;
        }
    };
    if opts.help {
        eprint!("{}", options::usage());
        return ExitStatus::Success;
    }
    if opts.version {
        print!("{}", diagnostics::version_text());
        return ExitStatus::Success;
    }
    if opts.diagnostics {
        print!("{}", diagnostics::diagnostics_text());
        print!("{}", diagnostics::configuration_text(opts.max_concurrency));
        return ExitStatus::Success;
    }
    if let Err(e) = crate::logging::init(&opts) {
        eprintln!(
            "Error setting up logging: {}",
            diagnostics::describe(&e).replace('\n', "\n   ")
        );
        if let Some(p) = &opts.summary_file {
            let summary = Summary {
                error: Some(e.to_string()),
                ..Summary::default()
            };
            return crate::summary_file::write(p, &summary, ExitStatus::Logging, opts.dry_run);
        }
        return ExitStatus::Logging;
    }
    // Progress goes to stderr, and only when it is a terminal (checked when shown).
    crate::progress::allow(!opts.quiet);
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

/// One line: program, implementation and version.
pub fn version_line() -> String {
    diagnostics::version_line()
}

/// `Title....: value` lines, sorted, as `-D` prints them and every run logs them.
pub fn diagnostics() -> Vec<String> {
    diagnostics::lines()
}

/// One run: check names, sync (unless verify-only), verify. Logs everything, returns the status.
pub async fn execute(opts: &Options, cancel: CancellationToken) -> ExitStatus {
    let started = Instant::now();
    log::info!(target: FLOW, "Cedar Backup Amazon S3 sync run started.");
    log::info!(target: FLOW, "Options were [{}]", options::build_argument_string(opts));
    log::info!(target: FLOW, "Logfile is [{}]", opts.logfile_path().display());
    log::debug!(target: FLOW, "Parsed options: {opts:?}");
    for line in diagnostics() {
        log::info!(target: FLOW, "{line}");
    }
    let mut summary = Summary::default();
    let mut status = crate::engine::run(opts, &cancel, &mut summary).await;
    summary.elapsed = started.elapsed();
    if let Some(p) = &opts.summary_file {
        status = crate::summary_file::write(p, &summary, status, opts.dry_run);
    }
    if status == ExitStatus::Interrupted {
        log::error!(target: FLOW, "Backup interrupted.");
    }
    log::info!(target: FLOW, "Summary: {summary}");
    log::info!(target: FLOW, "Cedar Backup Amazon S3 sync run completed with status {}.", status.code());
    status
}
