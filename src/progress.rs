//! Progress on a terminal: files, bytes, rate and time left, on one line of stderr.
//!
//! The phases count into a [`Progress`] (atomics, cheap enough to update per part); a
//! [`Display`] redraws the line at most [`REFRESH`] apart and only when the binary allowed it
//! ([`allow`]: not `-q`, and stderr is a terminal). The library itself never enables it, so the
//! Python extension and the logfile never see progress.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time between redraws (4 a second: readable, and negligible work).
pub const REFRESH: Duration = Duration::from_millis(250);

/// Whether the run in progress may show progress; scoped by [`Allowed`].
static ALLOWED: AtomicBool = AtomicBool::new(false);

/// While it lives, the run may show progress (the binary takes it unless `-q`); it shows only
/// if stderr is a terminal. Dropped at the end of the run, so nothing carries over.
#[must_use = "the permission lasts as long as the guard"]
pub struct Allowed(());

pub fn allow(on: bool) -> Allowed {
    ALLOWED.store(on, Ordering::Relaxed);
    Allowed(())
}

impl Drop for Allowed {
    fn drop(&mut self) {
        ALLOWED.store(false, Ordering::Relaxed);
    }
}

/// Whether a progress line would be shown now.
pub fn enabled() -> bool {
    ALLOWED.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// Counters of one phase's work.
#[derive(Debug, Default)]
pub struct Progress {
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

impl Progress {
    pub fn new(files: u64, bytes: u64) -> Arc<Self> {
        let p = Progress::default();
        p.files_total.store(files, Ordering::Relaxed);
        p.bytes_total.store(bytes, Ordering::Relaxed);
        Arc::new(p)
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    /// One more file of `bytes` to do (totals found as a run goes).
    pub fn add_planned(&self, bytes: u64) {
        self.files_total.fetch_add(1, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_file(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Human-readable bytes (binary units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The progress line for a snapshot of the counters after `elapsed`.
pub fn line(label: &str, p: &Progress, elapsed: Duration) -> String {
    let files = p.files_done.load(Ordering::Relaxed);
    let files_total = p.files_total.load(Ordering::Relaxed);
    let bytes = p.bytes_done.load(Ordering::Relaxed);
    let total = p.bytes_total.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
    let left = if rate >= 1.0 && total > bytes {
        human_duration(Duration::from_secs_f64((total - bytes) as f64 / rate))
    } else {
        "-".into()
    };
    format!(
        "{label}: {files}/{files_total} files, {} of {}, {}/s, {left} left",
        human_bytes(bytes),
        human_bytes(total),
        human_bytes(rate as u64)
    )
}

/// A redrawing progress line; dropped (or [`Display::finish`]ed) it erases itself.
pub struct Display {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Display {
    /// Starts redrawing `p` under `label` if [`enabled`]; otherwise does nothing.
    pub fn start(label: &'static str, p: Arc<Progress>) -> Display {
        if !enabled() {
            return Display {
                stop: None,
                task: None,
            };
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(REFRESH);
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tick.tick() => {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(err, "\r\x1b[K{}", line(label, &p, started.elapsed()));
                        let _ = err.flush();
                    }
                }
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        });
        Display {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops redrawing and erases the line before anything else is printed.
    pub async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permission_ends_with_its_run() {
        {
            let _run = allow(true);
            assert!(ALLOWED.load(Ordering::Relaxed));
        }
        assert!(
            !ALLOWED.load(Ordering::Relaxed),
            "a later run starts without it"
        );
    }

    #[test]
    fn line_shows_files_bytes_rate_and_time_left() {
        let p = Progress::new(4, 4 * 1024 * 1024);
        p.add_file();
        p.add_bytes(1024 * 1024);
        let l = line("Uploading", &p, Duration::from_secs(2));
        assert_eq!(
            l,
            "Uploading: 1/4 files, 1.0 MiB of 4.0 MiB, 512.0 KiB/s, 0m06s left"
        );
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_duration(Duration::from_secs(3725)), "1h02m");
    }
}
