//! The binary's logger, shaped like Cedar Backup's.
//!
//! * Logfile (default `/var/log/cback3.log`): created when absent, with the `-m` mode exactly
//!   (the umask does not apply) before anything is written, then given to the `-o` owner
//!   (default `root:adm`; nothing happens if either name is unknown or chown fails). An
//!   existing logfile keeps its owner and mode and is appended to.
//! * Flow records (target [`FLOW`]) go to the logfile at INFO (DEBUG with `-d`) as
//!   `YYYY-MM-DDTHH:MM:SS TZ --> [LEVEL  ] message`, and to stdout as the bare message at
//!   ERROR, INFO with `-b`, DEBUG with `-b -d`, never with `-q`.
//! * Output records (target [`OUTPUT`], one per S3 operation) go to the logfile only, with
//!   `-O` or `-d`, as bare message lines like Cedar Backup's command output.
//! * Records of any other target are dropped.

#![allow(clippy::print_stdout, clippy::print_stderr)] // the screen sink

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::options::{Options, DEFAULT_MODE, DEFAULT_OWNER};
use crate::{FLOW, OUTPUT};

/// The logfile could not be opened or created (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("cannot open logfile {path}: {source}")]
pub struct LoggingError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Which records go where; derived from the options alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// Flow records at or above this level go to the logfile.
    pub file: LevelFilter,
    /// Flow records at or above this level go to stdout.
    pub screen: LevelFilter,
    /// Whether output records go to the logfile.
    pub output: bool,
}

impl Levels {
    pub fn from_options(o: &Options) -> Levels {
        Levels {
            file: if o.debug {
                LevelFilter::Debug
            } else {
                LevelFilter::Info
            },
            screen: match (o.quiet, o.verbose, o.debug) {
                (true, _, _) => LevelFilter::Off,
                (false, true, true) => LevelFilter::Debug,
                (false, true, false) => LevelFilter::Info,
                // A dry run's plan is its output: shown as -b would show it.
                (false, false, _) if o.dry_run => LevelFilter::Info,
                (false, false, _) => LevelFilter::Error,
            },
            output: o.output || o.debug,
        }
    }

    /// The screen's level as a Python `logging` level, for the Python command's screen
    /// handler (CRITICAL when nothing is shown, as Cedar Backup does for `-q`).
    pub fn screen_python_level(&self) -> u32 {
        match self.screen {
            LevelFilter::Off => 50,
            LevelFilter::Error => 40,
            LevelFilter::Warn => 30,
            LevelFilter::Info => 20,
            LevelFilter::Debug | LevelFilter::Trace => 10,
        }
    }

    /// The most detailed level any destination wants.
    pub fn max(&self) -> LevelFilter {
        let out = if self.output {
            LevelFilter::Trace
        } else {
            LevelFilter::Off
        };
        self.file.max(self.screen).max(out)
    }
}

/// Python's level names.
pub fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug | Level::Trace => "DEBUG",
    }
}

/// One logfile line (without the newline) for a flow record: Python's
/// `%(asctime)s --> [%(levelname)-7s] %(message)s` with `%Y-%m-%dT%H:%M:%S %Z`, local time.
pub fn format_line(level: Level, message: &str) -> String {
    format!(
        "{} --> [{:<7}] {message}",
        crate::diagnostics::format_now(c"%Y-%m-%dT%H:%M:%S %Z", false),
        level_name(level)
    )
}

struct CedarLogger {
    file: File,
    levels: Levels,
    path: PathBuf,
    /// Some line reached the logfile.
    written: AtomicBool,
    /// A write failed after that (reported once on stderr).
    failed: AtomicBool,
}

/// Why the first line could not be written to the logfile, if it could not.
static FIRST_WRITE_ERROR: OnceLock<String> = OnceLock::new();

/// The logfile opened but its first line could not be written (`-l /dev/full`, a full
/// disk): the run must stop with "Error setting up logging" (exit 3) before it does anything.
pub fn startup_failure() -> Option<String> {
    FIRST_WRITE_ERROR.get().cloned()
}

impl CedarLogger {
    fn new(file: File, levels: Levels, path: &Path) -> Self {
        CedarLogger {
            file,
            levels,
            path: path.to_path_buf(),
            written: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    fn write_file(&self, line: String) {
        // One write per line on an O_APPEND descriptor: lines of concurrent writers never mix.
        match (&self.file).write_all((line + "\n").as_bytes()) {
            Ok(()) => self.written.store(true, Ordering::Relaxed),
            Err(e) if !self.written.load(Ordering::Relaxed) => {
                let _ = FIRST_WRITE_ERROR.set(format!(
                    "cannot write to logfile {}: {e}",
                    self.path.display()
                ));
            }
            Err(e) => {
                // Monitoring reads the logfile: say once, even with -q, that lines are lost.
                if !self.failed.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "cback3-amazons3-sync: cannot write to logfile {}: {e}; later log lines may be lost",
                        self.path.display()
                    );
                }
            }
        }
    }
}

impl Log for CedarLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        let l = m.level();
        match m.target() {
            FLOW => l <= self.levels.file || l <= self.levels.screen,
            OUTPUT => self.levels.output,
            _ => false,
        }
    }

    fn log(&self, r: &Record) {
        match r.target() {
            FLOW => {
                if r.level() <= self.levels.file {
                    self.write_file(format_line(r.level(), &r.args().to_string()));
                }
                if r.level() <= self.levels.screen {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", r.args());
                    let _ = out.flush();
                }
            }
            OUTPUT if self.levels.output => self.write_file(r.args().to_string()),
            _ => {}
        }
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

fn c_name(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

/// uid of a user name, gid of a group name (None when unknown).
fn lookup_owner(user: &str, group: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let (u, g) = (c_name(user)?, c_name(group)?);
    let mut buf = vec![0 as libc::c_char; crate::lock::PASSWD_BUFFER];
    // SAFETY: the *_r functions write only into the structs and the buffer we pass.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut pw_out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwnam_r(
            u.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut pw_out,
        ) != 0
            || pw_out.is_null()
        {
            return None;
        }
        let uid = pw.pw_uid;
        let mut gr: libc::group = std::mem::zeroed();
        let mut gr_out: *mut libc::group = std::ptr::null_mut();
        if libc::getgrnam_r(
            g.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut gr_out,
        ) != 0
            || gr_out.is_null()
        {
            return None;
        }
        Some((uid, gr.gr_gid))
    }
}

/// Opens the logfile for appending; creates it first, with `mode` and `owner`, when absent.
pub fn open_logfile(path: &Path, mode: u32, owner: (&str, &str)) -> Result<File, LoggingError> {
    let err = |source| LoggingError {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        return OpenOptions::new().append(true).open(path).map_err(err);
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode & 0o7777)
        .open(path)
        .map_err(err)?;
    // The umask may have removed bits: set the mode exactly, before anything is written.
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(err)?;
    if let Some((uid, gid)) = lookup_owner(owner.0, owner.1) {
        // Failure is deliberately ignored.
        let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
    }
    Ok(file)
}

/// Creates (with the `-m` mode and `-o` owner) or opens the logfile of `opts`, as [`init`]
/// does: the Python command's first step of logging setup, so that both front ends fail the
/// same way (exit 3).
pub fn prepare_logfile(opts: &Options) -> Result<(), LoggingError> {
    open_logfile_of(opts).map(drop)
}

/// Creates (with the `-m` mode and `-o` owner, or their defaults) or opens the logfile of
/// `opts`.
fn open_logfile_of(opts: &Options) -> Result<std::fs::File, LoggingError> {
    let owner = opts
        .owner
        .as_ref()
        .map(|(u, g)| (u.as_str(), g.as_str()))
        .unwrap_or(DEFAULT_OWNER);
    open_logfile(
        &opts.logfile_path(),
        opts.mode.unwrap_or(DEFAULT_MODE),
        owner,
    )
}

/// The reason in "Error setting up logging: REASON" (stderr, exit 3): one line, or with
/// `-s` the chain of causes on indented lines.
pub fn setup_error_text(e: &LoggingError, opts: &Options) -> String {
    crate::diagnostics::describe(e, opts.stacktrace).replace('\n', "\n   ")
}

/// Installs the process-wide logger for the binary. Fails (exit 3) when the logfile cannot
/// be opened or created.
pub fn init(opts: &Options) -> Result<(), LoggingError> {
    let file = open_logfile_of(opts)?;
    let levels = Levels::from_options(opts);
    let logger = CedarLogger::new(file, levels, &opts.logfile_path());
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(levels.max());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(args: &[&str]) -> Levels {
        let mut v: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        v.extend(["src".into(), "s3://b/p".into()]);
        Levels::from_options(&crate::options::parse(&v).unwrap())
    }

    #[test]
    fn levels_follow_the_switches() {
        use LevelFilter::*;
        let cases: &[(&[&str], LevelFilter, LevelFilter, bool)] = &[
            (&[], Info, Error, false),
            (&["-q"], Info, Off, false),
            (&["-b"], Info, Info, false),
            (&["-d"], Debug, Error, true),
            (&["-b", "-d"], Debug, Debug, true),
            (&["-q", "-b", "-d"], Debug, Off, true),
            (&["-O"], Info, Error, true),
        ];
        for (args, file, screen, output) in cases {
            assert_eq!(
                levels(args),
                Levels {
                    file: *file,
                    screen: *screen,
                    output: *output
                },
                "{args:?}"
            );
        }
    }

    #[test]
    fn records_are_routed_by_target_and_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("route.log");
        let emit = |levels: Levels| {
            let _ = std::fs::remove_file(&path);
            let logger = CedarLogger::new(
                open_logfile(&path, 0o600, ("root", "root")).unwrap(),
                levels,
                &path,
            );
            for (target, level, msg) in [
                (FLOW, Level::Info, "flow-info"),
                (FLOW, Level::Debug, "flow-debug"),
                (OUTPUT, Level::Debug, "output-debug"),
                (OUTPUT, Level::Info, "output-info"),
                ("aws_smithy_runtime", Level::Error, "foreign"),
            ] {
                let args = format_args!("{msg}");
                let rec = Record::builder()
                    .target(target)
                    .level(level)
                    .args(args)
                    .build();
                if logger.enabled(rec.metadata()) {
                    logger.log(&rec);
                }
            }
            std::fs::read_to_string(&path).unwrap()
        };
        let quiet = |file, output| Levels {
            file,
            screen: LevelFilter::Off,
            output,
        };
        let plain = emit(quiet(LevelFilter::Info, false));
        assert!(plain.ends_with(" --> [INFO   ] flow-info\n"), "{plain}");
        assert_eq!(plain.lines().count(), 1, "{plain}");
        // -O: output lines, bare like Cedar Backup's command output, at any level.
        let out = emit(quiet(LevelFilter::Info, true));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(&lines[1..], ["output-debug", "output-info"]);
        // -d: flow DEBUG as well.
        let dbg = emit(quiet(LevelFilter::Debug, true));
        assert!(dbg.contains(" --> [DEBUG  ] flow-debug\n"), "{dbg}");
        assert!(!dbg.contains("foreign"), "{dbg}");
    }

    #[test]
    fn a_write_failure_after_the_first_line_is_noted_once() {
        let mut fds = [0; 2];
        // SAFETY: pipe fills the two descriptors, which the Files below then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (reader, writer) = unsafe {
            use std::os::unix::io::FromRawFd;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        };
        let logger = CedarLogger::new(writer, levels(&[]), Path::new("pipe"));
        logger.write_file("first".into());
        assert!(logger.written.load(Ordering::Relaxed));
        drop(reader);
        assert!(!logger.failed.load(Ordering::Relaxed));
        logger.write_file("second".into()); // EPIPE: SIGPIPE is ignored by Rust programs
        logger.write_file("third".into());
        assert!(logger.failed.load(Ordering::Relaxed));
        assert_eq!(startup_failure(), None, "not a startup failure");
    }

    #[test]
    fn line_format() {
        let l = format_line(Level::Warn, "hello");
        let (stamp, rest) = l.split_once(" --> ").unwrap();
        assert_eq!(rest, "[WARNING] hello");
        assert_eq!(&stamp[4..5], "-");
        assert_eq!(&stamp[10..11], "T");
        assert!(stamp.len() > 20, "{stamp}");
        assert!(format_line(Level::Info, "x").ends_with(" --> [INFO   ] x"));
    }
}
