//! argv → options → run → exit status. Shared by the binary and the Python extension.
//!
//! [`main`] is the binary's whole life (parse, logging, signals, run); [`execute`] is one
//! run given parsed options and a cancellation token, used by both front ends.

#![allow(clippy::print_stdout, clippy::print_stderr)] // printing usage, -V, -D and early errors is this module's job

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::options::{self, Options};
use crate::report::{ExitStatus, Summary};
use crate::{diagnostics, FLOW};

/// The signals that interrupt a run: Ctrl-C, SIGTERM, and SIGHUP (the terminal or ssh session
/// went away).
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How long the end of a run waits for tasks still running (an upload body being read, a
/// request being answered) before it drops them: enough for an interrupted run's in-flight
/// work to finish its log lines, short enough that cron and `kill` see the exit promptly.
pub const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The first stop signal that arrived before the runtime's handlers existed (0: none).
static EARLY_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// SIGHUP was ignored when the process started (`nohup`): it stays ignored.
static HUP_IGNORED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_early_signal(sig: libc::c_int) {
    // An atomic store and nothing else: async-signal-safe.
    let _ = EARLY_SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// Installs [`note_early_signal`] for the stop signals, so that one arriving before the tokio
/// runtime registers its handlers is remembered instead of killing the process. tokio's
/// handlers (signal-hook-registry) keep and call the handler they replace, so this one keeps
/// working afterwards (harmlessly: the flag is read once, right after tokio's registration).
fn catch_early_signals() {
    for sig in STOP_SIGNALS {
        // SAFETY: plain sigaction calls with zero-initialised structs; the handler only does an
        // atomic store.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if sig == libc::SIGHUP
                && libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                HUP_IGNORED.store(true, Ordering::SeqCst);
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_early_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Test hook: with `CBACK3_TEST_STARTED=FILE` the process writes FILE once the early handlers
/// are in place (so a test knows a signal from then on must give exit 5), and with
/// `CBACK3_TEST_HOLD_STDIN=1` it then waits for end of file on standard input, so that a test
/// can deliver a signal before the runtime exists.
fn test_start_hooks() {
    if let Some(marker) = std::env::var_os("CBACK3_TEST_STARTED") {
        let _ = std::fs::write(marker, std::process::id().to_string());
        if std::env::var_os("CBACK3_TEST_HOLD_STDIN").is_some() {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        }
    }
}

/// The binary's entry point: never exits the process itself.
pub fn main(args: &[OsString]) -> ExitStatus {
    catch_early_signals();
    adopt_orphans();
    test_start_hooks();
    let opts = match options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{}", options::usage_error(&e));
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
        print!("{}", diagnostics::report(&opts, &[]));
        return ExitStatus::Success;
    }
    if let Err(e) = crate::logging::init(&opts) {
        eprintln!(
            "Error setting up logging: {}",
            crate::logging::setup_error_text(&e, &opts)
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
    let _progress = crate::progress::allow(!opts.quiet);
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
        // A signal before tokio's handlers existed was caught by ours: stop before any work.
        let early = EARLY_SIGNAL.load(Ordering::SeqCst);
        if early != 0 {
            log::warn!(target: FLOW, "Interrupted by {} while starting: stopping before any work.", signal_name(early));
            cancel.cancel();
        }
        execute(&opts, cancel).await
    });
    rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
    log::logger().flush();
    status
}

/// Ctrl-C, SIGTERM and SIGHUP cancel the run. The handlers are registered before this
/// returns; the wait for them runs as a task.
fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let watch = |sig: libc::c_int| -> Option<Signal> {
        if sig == libc::SIGHUP && HUP_IGNORED.load(Ordering::SeqCst) {
            return None;
        }
        signal(SignalKind::from_raw(sig))
            .map_err(|e| log::warn!(target: FLOW, "Cannot watch {}: {e}", signal_name(sig)))
            .ok()
    };
    let (mut int, mut term, mut hup) = (
        watch(libc::SIGINT),
        watch(libc::SIGTERM),
        watch(libc::SIGHUP),
    );
    async fn recv(s: &mut Option<Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::spawn(async move {
        let sig = tokio::select! {
            _ = recv(&mut int) => libc::SIGINT,
            _ = recv(&mut term) => libc::SIGTERM,
            _ = recv(&mut hup) => libc::SIGHUP,
        };
        log::warn!(target: FLOW, "Interrupted by {}: stopping; multipart uploads are aborted, no new request starts.", signal_name(sig));
        cancel.cancel();
    });
}

/// Makes this process the one that orphaned descendants are given to (a child subreaper):
/// when a `credential_process` shell exits or is killed before its own children, they become
/// ours instead of init's, so [`end_leftover_children`] still finds them. Linux only; a
/// failure only means such a grandchild could outlive the run, as before.
fn adopt_orphans() {
    // SAFETY: prctl with an integer option and argument; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Ends every process this one started that is still running, with its own descendants:
/// a `credential_process` the SDK gave up on (timeout, signal) is left running by it, and
/// would outlive the run (a cron job's orphan that never exits). The binary calls this just
/// before it exits; its only children are those. (Not for the Python module: the
/// interpreter's other children are not ours.)
pub fn end_leftover_children() {
    // A credential process may still be starting on a thread the runtime left behind, and a
    // killed shell's children come to us (see [`adopt_orphans`]): kill, reap, and look again
    // until no child is left, for a bounded time.
    let deadline = Instant::now() + END_CHILDREN_WAIT;
    loop {
        kill_descendants();
        let none_left = loop {
            // SAFETY: waitpid with a null status pointer only reaps ended children.
            let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if r > 0 {
                continue;
            }
            break r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
        };
        if none_left || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(END_CHILDREN_POLL);
    }
}

/// How long the binary looks for leftover children before it exits anyway.
const END_CHILDREN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Between two looks: a killed process needs a moment to become reapable.
const END_CHILDREN_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Sends SIGKILL to every live descendant of this process.
fn kill_descendants() {
    let me = std::process::id();
    // (pid, parent) of every live process; a child that has not been waited for keeps its pid.
    let mut parents = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let mut rest = stat
            .rfind(')')
            .map(|i| stat[i + 1..].split_whitespace())
            .into_iter()
            .flatten();
        let state = rest.next();
        let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
        if let (Some(state), Some(ppid)) = (state, ppid) {
            if state != "Z" {
                parents.push((pid, ppid));
            }
        }
    }
    let mut doomed = vec![me];
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        doomed.extend(
            parents
                .iter()
                .filter(|(pid, ppid)| *ppid == parent && *pid != me)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    for pid in &doomed[1..] {
        // SAFETY: kill has no memory effects; each pid is a descendant found just now.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
        }
    }
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
    // -s: failures are described with their whole chain of causes, for this run only.
    let _chain = crate::s3::error::FullChain::scope(opts.stacktrace);
    log::info!(target: FLOW, "Cedar Backup Amazon S3 sync run started.");
    // The binary's logfile opened but refuses its first line (`-l /dev/full`): exit 3 now.
    if let Some(e) = crate::logging::startup_failure() {
        eprintln!("Error setting up logging: {e}");
        let summary = Summary {
            error: Some(e),
            ..Summary::default()
        };
        return match &opts.summary_file {
            Some(p) => crate::summary_file::write(p, &summary, ExitStatus::Logging, opts.dry_run),
            None => ExitStatus::Logging,
        };
    }
    log::info!(target: FLOW, "Options were [{}]", options::build_argument_string(opts));
    log::info!(target: FLOW, "Logfile is [{}]", opts.logfile_path().display());
    log::debug!(target: FLOW, "Parsed options: {opts:?}");
    for line in diagnostics() {
        log::info!(target: FLOW, "{line}");
    }
    let status = match action(opts, &cancel, started).await {
        Ok(()) => ExitStatus::Success,
        Err(e) => e.status(),
    };
    if status == ExitStatus::Interrupted {
        log::error!(target: FLOW, "Backup interrupted.");
    }
    log::info!(target: FLOW, "Cedar Backup Amazon S3 sync run completed with status {}.", status.code());
    status
}

/// The work of a run without its start and end lines, as the Python `_executeAction` runs it
/// too: a restore or a sync as the options say, then the summary file (when asked) and the
/// summary line. `started` is when the run began, for the elapsed time.
pub async fn action(
    opts: &Options,
    cancel: &CancellationToken,
    started: Instant,
) -> Result<(), crate::run::RunError> {
    let _chain = crate::s3::error::FullChain::scope(opts.stacktrace);
    let (mut summary, mut result) = if opts.restore {
        crate::restore::run_phases(opts, cancel).await
    } else {
        crate::sync::run_phases(opts, cancel).await
    };
    summary.elapsed = started.elapsed();
    if let Err(e) = &result {
        summary.error = Some(e.to_string());
    }
    if let Some(p) = &opts.summary_file {
        let status = result
            .as_ref()
            .map_or_else(|e| e.status(), |()| ExitStatus::Success);
        if crate::summary_file::write(p, &summary, status, opts.dry_run) != status {
            // Only a run that succeeded changes its status: it fails for the missing file.
            result = Err(crate::run::RunError::Failed {
                cause: crate::report::Cause::LocalIo,
                message: format!(
                    "Cannot write the summary file {}.",
                    crate::display::display_path(p)
                ),
            });
        }
    }
    log::info!(target: FLOW, "Summary: {summary}");
    result
}
