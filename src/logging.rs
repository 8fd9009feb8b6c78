//! The binary's logger: Cedar Backup's logfile format, owner and mode, and its screen levels.
//!
//! PROVISIONAL: the exact Cedar-compatible version arrives with issue 3.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::options::{Options, DEFAULT_MODE};
use crate::{FLOW, OUTPUT};

/// The logfile could not be opened or created (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("cannot open logfile {path}: {source}")]
pub struct LoggingError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

struct CedarLogger {
    file: Mutex<File>,
    file_level: LevelFilter,
    screen_level: LevelFilter,
    output_to_file: bool,
}

fn timestamp() -> String {
    // SAFETY: localtime_r and strftime write into buffers we own.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%Y-%m-%dT%H:%M:%S %Z".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Log for CedarLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.target() == FLOW || m.target() == OUTPUT
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let is_output = r.target() == OUTPUT;
        if r.level() <= self.file_level && (!is_output || self.output_to_file) {
            let line = format!(
                "{} --> [{:<7}] {}\n",
                timestamp(),
                level_name(r.level()),
                r.args()
            );
            if let Ok(mut f) = self.file.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        if !is_output && r.level() <= self.screen_level {
            println!("{}", r.args());
        }
    }

    fn flush(&self) {
        if let Ok(mut f) = self.file.lock() {
            let _ = f.flush();
        }
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug | Level::Trace => "DEBUG",
    }
}

fn open_logfile(path: &Path, mode: u32) -> Result<File, LoggingError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| LoggingError {
        path: path.to_path_buf(),
        source,
    };
    let existed = path.exists();
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    if !existed {
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(err)?;
    }
    Ok(f)
}

/// Installs the process-wide logger for the binary.
pub fn init(opts: &Options) -> Result<(), LoggingError> {
    let path = opts.logfile_path();
    let file = open_logfile(&path, opts.mode.unwrap_or(DEFAULT_MODE))?;
    let file_level = if opts.debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let screen_level = if opts.quiet {
        LevelFilter::Off
    } else if opts.verbose && opts.debug {
        LevelFilter::Debug
    } else if opts.verbose {
        LevelFilter::Info
    } else {
        LevelFilter::Error
    };
    let logger = CedarLogger {
        file: Mutex::new(file),
        file_level,
        screen_level,
        output_to_file: opts.output || opts.debug,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(file_level.max(screen_level));
    }
    Ok(())
}
