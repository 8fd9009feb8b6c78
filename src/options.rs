//! The command line: the original's switches (Python `getopt` semantics) plus our long-only ones.
//!
//! PROVISIONAL: a simplified parser; the getopt-exact one replaces `parse` (issue 3).

use std::ffi::OsString;
use std::path::PathBuf;

/// Default logfile shared with the rest of Cedar Backup.
pub const DEFAULT_LOGFILE: &str = "/var/log/cback3.log";
/// Default owner of a newly created logfile.
pub const DEFAULT_OWNER: (&str, &str) = ("root", "adm");
/// Default mode of a newly created logfile.
pub const DEFAULT_MODE: u32 = 0o640;
/// Default bound on concurrent S3 requests.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

/// Everything the command line can say. `None` means "not given" (the default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub help: bool,
    pub version: bool,
    pub verbose: bool,
    pub quiet: bool,
    pub logfile: Option<PathBuf>,
    pub owner: Option<(String, String)>,
    pub mode: Option<u32>,
    pub output: bool,
    pub debug: bool,
    pub stacktrace: bool,
    pub diagnostics: bool,
    pub verify_only: bool,
    pub upload_only: bool,
    pub ignore_warnings: bool,
    pub source_dir: Option<PathBuf>,
    pub s3_bucket_url: Option<String>,
    // Our own switches (long camelCase names only).
    /// `--maxConcurrency N`: bound on concurrent S3 requests (uploads, parts, deletes).
    pub max_concurrency: Option<usize>,
    /// `--allowEmptySource`: let a full sync of an empty source empty the prefix.
    pub allow_empty_source: bool,
}

impl Options {
    pub fn logfile_path(&self) -> PathBuf {
        self.logfile
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOGFILE))
    }
    pub fn concurrency(&self) -> usize {
        self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY)
    }
}

/// A command line the tool rejects (exit 2, usage on stderr).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// What Python's `getopt.GetoptError` reports.
    #[error("{0}")]
    Getopt(String),
    /// A switch value or positional argument that is not valid (Python: `ValueError`).
    #[error("{0}")]
    Value(String),
}

fn text(arg: &OsString) -> Result<String, OptionsError> {
    arg.to_str()
        .map(str::to_owned)
        .ok_or_else(|| OptionsError::Value(format!("argument is not valid UTF-8: {arg:?}")))
}

/// Parses argv (without the program name).
pub fn parse(args: &[OsString]) -> Result<Options, OptionsError> {
    let mut o = Options::default();
    let mut positionals: Vec<OsString> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        i += 1;
        let value = |name: &str, i: &mut usize| -> Result<String, OptionsError> {
            let v = args
                .get(*i)
                .ok_or_else(|| OptionsError::Getopt(format!("option {name} requires argument")))?;
            *i += 1;
            text(v)
        };
        match a.as_str() {
            "-h" | "--help" => o.help = true,
            "-V" | "--version" => o.version = true,
            "-b" | "--verbose" => o.verbose = true,
            "-q" | "--quiet" => o.quiet = true,
            "-O" | "--output" => o.output = true,
            "-d" | "--debug" => o.debug = true,
            "-s" | "--stack" => o.stacktrace = true,
            "-D" | "--diagnostics" => o.diagnostics = true,
            "-v" | "--verifyOnly" => o.verify_only = true,
            "-u" | "--uploadOnly" => o.upload_only = true,
            "-w" | "--ignoreWarnings" => o.ignore_warnings = true,
            "--allowEmptySource" => o.allow_empty_source = true,
            "-l" | "--logfile" => o.logfile = Some(PathBuf::from(value(&a, &mut i)?)),
            "-o" | "--owner" => {
                let v = value(&a, &mut i)?;
                let (u, g) = v
                    .split_once(':')
                    .ok_or_else(|| OptionsError::Value("owner must be user:group".into()))?;
                o.owner = Some((u.into(), g.into()));
            }
            "-m" | "--mode" => {
                let v = value(&a, &mut i)?;
                o.mode = Some(
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| OptionsError::Value(format!("invalid mode {v}")))?,
                );
            }
            "--maxConcurrency" => {
                let v = value(&a, &mut i)?;
                o.max_concurrency = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| OptionsError::Value(format!("invalid concurrency {v}")))?,
                );
            }
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(OptionsError::Getopt(format!("option {s} not recognized")))
            }
            _ => positionals.push(args[i - 1].clone()),
        }
    }
    if !(o.help || o.version || o.diagnostics) {
        if positionals.len() != 2 {
            return Err(OptionsError::Value(
                "Source directory and S3 bucket URL are both required.".into(),
            ));
        }
        o.source_dir = Some(PathBuf::from(&positionals[0]));
        o.s3_bucket_url = Some(text(&positionals[1])?);
    }
    Ok(o)
}

/// The usage text printed by `-h` and on a command-line error.
pub fn usage() -> String {
    "Usage: cback3-amazons3-sync [switches] sourceDir s3BucketUrl\n".to_string()
}
