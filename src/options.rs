//! The command line: the original tool's switches with Python `getopt` semantics, plus our
//! own long-only switches.
//!
//! Parsing happens in two stages, as in the tool we replace:
//!
//! 1. [`getopt`]-style scanning: clustered short flags (`-bq`), values attached or separate
//!    (`-lFILE`, `-l FILE`, `--logfile=F`, `--logfile F`), long names abbreviated to any
//!    unique prefix, options ending at the first positional argument or at `--`. Errors carry
//!    the exact text Python's `getopt.GetoptError` would carry ([`OptionsError::Getopt`]).
//! 2. Applying the switches in a fixed order (the order of [`SWITCHES`]): for each switch the
//!    last occurrence of each spelling counts, and where both the short and the long spelling
//!    of a valued switch occur, the long one is applied last and so wins. Invalid values are
//!    [`OptionsError::Value`].
//!
//! Our own switches (those with `original: false` in [`SWITCHES`]) have long camelCase names
//! only and must be written in full: abbreviations are resolved against the original names
//! only, so that no command line the original accepts changes meaning.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// Default logfile shared with the rest of Cedar Backup.
pub const DEFAULT_LOGFILE: &str = "/var/log/cback3.log";
/// Default owner of a newly created logfile.
pub const DEFAULT_OWNER: (&str, &str) = ("root", "adm");
/// Default mode of a newly created logfile.
pub const DEFAULT_MODE: u32 = 0o640;
/// Default bound on concurrent S3 requests.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;
/// The largest `--maxConcurrency`. Far beyond what one prefix can use (S3 takes about 3,500
/// writes a second per prefix, which 64 requests already reach at normal latencies), while
/// each request may hold a 1 MiB body and two file descriptors: 1,000 stays within 1 GiB and
/// a typical descriptor limit, and far from tokio's semaphore limit (2^61), which panics.
pub const MAX_CONCURRENCY: usize = 1000;

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
    /// `--verifyContent`: also compare each file's checksum with the object's.
    pub verify_content: bool,
    /// `--dryRun`: log the plan, change nothing.
    pub dry_run: bool,
    /// `--summaryFile FILE`: write a JSON summary of the run there.
    pub summary_file: Option<PathBuf>,
    /// `--maxDeletes N`: refuse a full sync that would delete more than N objects.
    pub max_deletes: Option<usize>,
    /// `--maxBandwidth RATE`: upload at most this many bytes per second, over the whole run.
    pub max_bandwidth: Option<u64>,
    /// `--storageClass CLASS`: storage class of uploaded objects (one of [`STORAGE_CLASSES`]).
    pub storage_class: Option<String>,
    /// `--sse ALG`: server-side encryption of uploaded objects (one of [`SSE_ALGORITHMS`]).
    pub sse: Option<String>,
    /// `--sseKmsKeyId ID`: the KMS key for `--sse aws:kms`.
    pub sse_kms_key_id: Option<String>,
    /// `--restore`: copy the objects under the URL into the directory (the first positional
    /// argument, kept in `source_dir`) instead of syncing it up.
    pub restore: bool,
    /// `--overwrite`: with `--restore`, replace local files that differ from their object.
    pub overwrite: bool,
}

/// Storage classes `--storageClass` accepts: those `aws s3 sync --storage-class` accepts.
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
];

/// Server-side encryptions `--sse` accepts: those of `aws s3 sync --sse`.
pub const SSE_ALGORITHMS: &[&str] = &["AES256", "aws:kms", "aws:kms:dsse"];

impl Options {
    pub fn logfile_path(&self) -> PathBuf {
        self.logfile
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOGFILE))
    }

    pub fn concurrency(&self) -> usize {
        self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY)
    }

    /// The checks the original makes after parsing: unless help, version or diagnostics
    /// were asked for, both positional arguments must be present.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if !(self.help || self.version || self.diagnostics)
            && (self.source_dir.is_none() || self.s3_bucket_url.is_none())
        {
            return Err(OptionsError::Value(
                "Exactly two arguments are needed: a source directory and an S3 bucket URL.".into(),
            ));
        }
        if let Some(n) = self.max_concurrency {
            if !(1..=MAX_CONCURRENCY).contains(&n) {
                return Err(OptionsError::Value(format!(
                    "--maxConcurrency needs a whole number from 1 to {MAX_CONCURRENCY}, not {n}."
                )));
            }
        }
        if self.sse_kms_key_id.is_some()
            && !self
                .sse
                .as_deref()
                .is_some_and(|s| s.starts_with("aws:kms"))
        {
            return Err(OptionsError::Value(
                "--sseKmsKeyId needs --sse aws:kms (or aws:kms:dsse).".into(),
            ));
        }
        self.validate_restore()
    }

    /// `--restore` takes none of the switches that only mean something to a sync, and
    /// `--overwrite` means something only to a restore.
    fn validate_restore(&self) -> Result<(), OptionsError> {
        if !self.restore {
            if self.overwrite {
                return Err(OptionsError::Value(
                    "--overwrite is only valid with --restore.".into(),
                ));
            }
            return Ok(());
        }
        let given: Vec<&str> = [
            (self.verify_only, "-v/--verifyOnly"),
            (self.upload_only, "-u/--uploadOnly"),
            (self.ignore_warnings, "-w/--ignoreWarnings"),
            (self.max_deletes.is_some(), "--maxDeletes"),
            (self.allow_empty_source, "--allowEmptySource"),
            (
                self.verify_content,
                "--verifyContent (a restore always verifies)",
            ),
            (self.storage_class.is_some(), "--storageClass"),
            (self.sse.is_some(), "--sse"),
            (self.sse_kms_key_id.is_some(), "--sseKmsKeyId"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if given.is_empty() {
            Ok(())
        } else {
            Err(OptionsError::Value(format!(
                "--restore cannot be combined with {}.",
                given.join(", ")
            )))
        }
    }
}

/// A command line the tool rejects (exit 2, usage on stderr).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// What Python's `getopt.GetoptError` reports, word for word.
    #[error("{0}")]
    Getopt(String),
    /// A switch value or positional argument that is not valid (Python: `ValueError`).
    #[error("{0}")]
    Value(String),
}

/// How a switch appears in [`build_argument_list`] for given options.
pub enum Emit {
    /// Not given (or at its "off" value): not written.
    Absent,
    /// A flag that is set.
    Flag,
    /// A valued switch; `quoted` says whether the argument string puts it in double quotes.
    Value { text: String, quoted: bool },
}

/// One command-line switch. Adding a switch means adding one entry to [`SWITCHES`].
pub struct Switch {
    /// Long name without the leading `--`.
    pub long: &'static str,
    /// Short letter; only the original's switches have one.
    pub short: Option<char>,
    /// Placeholder of the value in the usage text; `None` for a flag.
    pub value_name: Option<&'static str>,
    /// Whether the original tool knows this switch. Only these take part in abbreviation.
    pub original: bool,
    /// One line (or a few, separated by `\n`) of usage text.
    pub help: &'static str,
    /// Stores the value (flags get an empty value) into the options.
    pub apply: fn(&mut Options, &OsStr) -> Result<(), OptionsError>,
    /// Writes the switch back for [`build_argument_list`].
    pub emit: fn(&Options) -> Emit,
}

impl Switch {
    fn takes_value(&self) -> bool {
        self.value_name.is_some()
    }
}

fn flag(b: bool) -> Emit {
    if b {
        Emit::Flag
    } else {
        Emit::Absent
    }
}

fn utf8<'a>(what: &str, v: &'a OsStr) -> Result<&'a str, OptionsError> {
    v.to_str()
        .ok_or_else(|| OptionsError::Value(format!("The {what} is not valid UTF-8: {v:?}")))
}

/// Every switch, in the order in which values are applied and written back. The original's
/// switches come first, in the original's order; ours follow.
pub static SWITCHES: &[Switch] = &[
    Switch {
        long: "help",
        short: Some('h'),
        value_name: None,
        original: true,
        help: "Print this help text (to stderr) and exit",
        apply: |o, _| {
            o.help = true;
            Ok(())
        },
        emit: |o| flag(o.help),
    },
    Switch {
        long: "version",
        short: Some('V'),
        value_name: None,
        original: true,
        help: "Print the version (to stdout) and exit",
        apply: |o, _| {
            o.version = true;
            Ok(())
        },
        emit: |o| flag(o.version),
    },
    Switch {
        long: "verbose",
        short: Some('b'),
        value_name: None,
        original: true,
        help: "Show the log on the screen too (INFO; DEBUG with -d)",
        apply: |o, _| {
            o.verbose = true;
            Ok(())
        },
        emit: |o| flag(o.verbose),
    },
    Switch {
        long: "quiet",
        short: Some('q'),
        value_name: None,
        original: true,
        help: "Show nothing on the screen, not even errors",
        apply: |o, _| {
            o.quiet = true;
            Ok(())
        },
        emit: |o| flag(o.quiet),
    },
    Switch {
        long: "logfile",
        short: Some('l'),
        value_name: Some("FILE"),
        original: true,
        help: "Append the log to FILE (default /var/log/cback3.log)",
        apply: |o, v| {
            if v.is_empty() {
                return Err(OptionsError::Value("The logfile path may not be empty.".into()));
            }
            o.logfile = Some(PathBuf::from(v));
            Ok(())
        },
        emit: |o| match &o.logfile {
            Some(p) => Emit::Value {
                text: p.to_string_lossy().into_owned(),
                quoted: true,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "owner",
        short: Some('o'),
        value_name: Some("USER:GROUP"),
        original: true,
        help: "Owner of a logfile this run creates (default root:adm);\nan existing logfile keeps its owner",
        apply: |o, v| {
            let v = utf8("owner", v)?;
            let Some((user, group)) = v.split_once(':') else {
                return Err(OptionsError::Value(format!(
                    "The owner must be written USER:GROUP, not {v:?}."
                )));
            };
            if user.is_empty() || group.is_empty() {
                return Err(OptionsError::Value(format!(
                    "Neither the user nor the group of the owner may be empty: {v:?}."
                )));
            }
            o.owner = Some((user.to_owned(), group.to_owned()));
            Ok(())
        },
        emit: |o| match &o.owner {
            Some((u, g)) => Emit::Value {
                text: format!("{u}:{g}"),
                quoted: true,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "mode",
        short: Some('m'),
        value_name: Some("MODE"),
        original: true,
        help: "Octal mode of a logfile this run creates (default 640,\numask not applied); an existing one keeps its mode",
        apply: |o, v| {
            let text = utf8("mode", v)?;
            o.mode = Some(parse_octal_mode(text)?);
            Ok(())
        },
        emit: |o| match o.mode {
            Some(m) => Emit::Value {
                text: format!("{m:o}"),
                quoted: false,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "output",
        short: Some('O'),
        value_name: None,
        original: true,
        help: "Also record each S3 request to the logfile",
        apply: |o, _| {
            o.output = true;
            Ok(())
        },
        emit: |o| flag(o.output),
    },
    Switch {
        long: "debug",
        short: Some('d'),
        value_name: None,
        original: true,
        help: "Write DEBUG detail to the logfile (implies --output)",
        apply: |o, _| {
            o.debug = true;
            Ok(())
        },
        emit: |o| flag(o.debug),
    },
    Switch {
        long: "stack",
        short: Some('s'),
        value_name: None,
        original: true,
        help: "On failure, report the whole chain of causes",
        apply: |o, _| {
            o.stacktrace = true;
            Ok(())
        },
        emit: |o| flag(o.stacktrace),
    },
    Switch {
        long: "diagnostics",
        short: Some('D'),
        value_name: None,
        original: true,
        help: "Print runtime diagnostics (to stdout) and exit",
        apply: |o, _| {
            o.diagnostics = true;
            Ok(())
        },
        emit: |o| flag(o.diagnostics),
    },
    Switch {
        long: "verifyOnly",
        short: Some('v'),
        value_name: None,
        original: true,
        help: "Only check the bucket against the source; change nothing",
        apply: |o, _| {
            o.verify_only = true;
            Ok(())
        },
        emit: |o| flag(o.verify_only),
    },
    Switch {
        long: "uploadOnly",
        short: Some('u'),
        value_name: None,
        original: true,
        help: "Upload new and changed files; delete nothing in S3",
        apply: |o, _| {
            o.upload_only = true;
            Ok(())
        },
        emit: |o| flag(o.upload_only),
    },
    Switch {
        long: "ignoreWarnings",
        short: Some('w'),
        value_name: None,
        original: true,
        help: "Skip files whose names cannot be S3 keys, do not fail",
        apply: |o, _| {
            o.ignore_warnings = true;
            Ok(())
        },
        emit: |o| flag(o.ignore_warnings),
    },
    // ---- Our own switches: long names only, never abbreviated. ----
    Switch {
        long: "maxConcurrency",
        short: None,
        value_name: Some("N"),
        original: false,
        help: "At most N S3 requests at a time (default 64, 1 to 1000)",
        apply: |o, v| {
            let text = utf8("maxConcurrency value", v)?;
            match text.parse::<usize>() {
                Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => {
                    o.max_concurrency = Some(n);
                    Ok(())
                }
                _ => Err(OptionsError::Value(format!(
                    "--maxConcurrency needs a whole number from 1 to {MAX_CONCURRENCY}, not {text:?}."
                ))),
            }
        },
        emit: |o| match o.max_concurrency {
            Some(n) => Emit::Value {
                text: n.to_string(),
                quoted: false,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "allowEmptySource",
        short: None,
        value_name: None,
        original: false,
        help: "Let a full sync of an empty source directory delete\nevery object under the prefix (refused otherwise)",
        apply: |o, _| {
            o.allow_empty_source = true;
            Ok(())
        },
        emit: |o| flag(o.allow_empty_source),
    },
    Switch {
        long: "verifyContent",
        short: None,
        value_name: None,
        original: false,
        help: "Also compare each file's checksum with the one the\nbucket stores (CRC64NVME, CRC32 or the MD5 ETag)",
        apply: |o, _| {
            o.verify_content = true;
            Ok(())
        },
        emit: |o| flag(o.verify_content),
    },
    Switch {
        long: "dryRun",
        short: None,
        value_name: None,
        original: false,
        help: "Show what would be uploaded and deleted, and why;\nchange nothing (the name check still runs)",
        apply: |o, _| {
            o.dry_run = true;
            Ok(())
        },
        emit: |o| flag(o.dry_run),
    },
    Switch {
        long: "summaryFile",
        short: None,
        value_name: Some("FILE"),
        original: false,
        help: "At the end of the run, write a JSON summary to FILE\n(schema/summary.schema.json)",
        apply: |o, v| {
            if v.is_empty() {
                return Err(OptionsError::Value(
                    "The summary file path may not be empty.".into(),
                ));
            }
            o.summary_file = Some(PathBuf::from(v));
            Ok(())
        },
        emit: |o| match &o.summary_file {
            Some(p) => Emit::Value {
                text: p.to_string_lossy().into_owned(),
                quoted: true,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "maxDeletes",
        short: None,
        value_name: Some("N"),
        original: false,
        help: "Delete nothing, and fail, if a full sync would delete\nmore than N objects (uploads still happen)",
        apply: |o, v| {
            let text = utf8("maxDeletes value", v)?;
            o.max_deletes = Some(text.parse::<usize>().map_err(|_| {
                OptionsError::Value(format!(
                    "--maxDeletes needs a whole number (0 or more), not {text:?}."
                ))
            })?);
            Ok(())
        },
        emit: |o| match o.max_deletes {
            Some(n) => Emit::Value {
                text: n.to_string(),
                quoted: false,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "maxBandwidth",
        short: None,
        value_name: Some("RATE"),
        original: false,
        help: "Upload at most RATE for the whole run: bytes per second,\nor as 10MB/s, 500KB/s, 8Mb/s (K, M, G = powers of 1024)\n(default: the profile's s3 max_bandwidth, else no limit)",
        apply: |o, v| {
            let text = utf8("maxBandwidth value", v)?;
            o.max_bandwidth = Some(crate::s3_settings::parse_rate(text).map_err(|e| {
                OptionsError::Value(format!("--maxBandwidth: {e}."))
            })?);
            Ok(())
        },
        emit: |o| match o.max_bandwidth {
            Some(n) => Emit::Value {
                text: n.to_string(),
                quoted: false,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "storageClass",
        short: None,
        value_name: Some("CLASS"),
        original: false,
        help: "Storage class of uploaded objects: STANDARD,\nREDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA,\nINTELLIGENT_TIERING, GLACIER, DEEP_ARCHIVE or GLACIER_IR\n(default: the bucket's)",
        apply: |o, v| {
            let text = utf8("storage class", v)?;
            if !STORAGE_CLASSES.contains(&text) {
                return Err(OptionsError::Value(format!(
                    "--storageClass must be one of {}, not {text:?}.",
                    STORAGE_CLASSES.join(", ")
                )));
            }
            o.storage_class = Some(text.to_owned());
            Ok(())
        },
        emit: |o| match &o.storage_class {
            Some(c) => Emit::Value {
                text: c.clone(),
                quoted: false,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "sse",
        short: None,
        value_name: Some("ALG"),
        original: false,
        help: "Server-side encryption of uploaded objects: AES256,\naws:kms or aws:kms:dsse (default: the bucket's)",
        apply: |o, v| {
            let text = utf8("sse value", v)?;
            if !SSE_ALGORITHMS.contains(&text) {
                return Err(OptionsError::Value(format!(
                    "--sse must be one of {}, not {text:?}.",
                    SSE_ALGORITHMS.join(", ")
                )));
            }
            o.sse = Some(text.to_owned());
            Ok(())
        },
        emit: |o| match &o.sse {
            Some(a) => Emit::Value {
                text: a.clone(),
                quoted: false,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "sseKmsKeyId",
        short: None,
        value_name: Some("ID"),
        original: false,
        help: "KMS key (id, ARN or alias) for --sse aws:kms\n(default: the account's aws/s3 key)",
        apply: |o, v| {
            let text = utf8("KMS key id", v)?;
            if text.is_empty() {
                return Err(OptionsError::Value("--sseKmsKeyId may not be empty.".into()));
            }
            o.sse_kms_key_id = Some(text.to_owned());
            Ok(())
        },
        emit: |o| match &o.sse_kms_key_id {
            Some(k) => Emit::Value {
                text: k.clone(),
                quoted: true,
            },
            None => Emit::Absent,
        },
    },
    Switch {
        long: "restore",
        short: None,
        value_name: None,
        original: false,
        help: "Restore instead: copy every object under s3BucketUrl\ninto sourceDir (created if missing), each checked\nagainst its checksum, with recorded times and modes",
        apply: |o, _| {
            o.restore = true;
            Ok(())
        },
        emit: |o| flag(o.restore),
    },
    Switch {
        long: "overwrite",
        short: None,
        value_name: None,
        original: false,
        help: "With --restore: replace local files that differ from\ntheir object (refused otherwise)",
        apply: |o, _| {
            o.overwrite = true;
            Ok(())
        },
        emit: |o| flag(o.overwrite),
    },
];

/// The original's short-switch string, as given to Python's `getopt`.
pub fn short_switches() -> String {
    SWITCHES
        .iter()
        .filter_map(|s| {
            s.short
                .map(|c| format!("{c}{}", if s.takes_value() { ":" } else { "" }))
        })
        .collect()
}

/// One switch as `getopt` found it: index into [`SWITCHES`], whether the long spelling was
/// used, and its value (empty for flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub switch: usize,
    pub long: bool,
    pub value: OsString,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Resolves a long name the way Python's getopt does, except that our own names are found
/// only when written in full.
fn resolve_long(name: &[u8]) -> Result<usize, OptionsError> {
    if let Some(i) = SWITCHES
        .iter()
        .position(|s| !s.original && s.long.as_bytes() == name)
    {
        return Ok(i);
    }
    let candidates: Vec<usize> = (0..SWITCHES.len())
        .filter(|&i| SWITCHES[i].original && SWITCHES[i].long.as_bytes().starts_with(name))
        .collect();
    if candidates.is_empty() {
        return Err(OptionsError::Getopt(format!(
            "option --{} not recognized",
            lossy(name)
        )));
    }
    if let Some(&i) = candidates
        .iter()
        .find(|&&i| SWITCHES[i].long.as_bytes() == name)
    {
        return Ok(i);
    }
    if candidates.len() > 1 {
        return Err(OptionsError::Getopt(format!(
            "option --{} not a unique prefix",
            lossy(name)
        )));
    }
    Ok(candidates[0])
}

/// Length of the character starting at `b[0]` (1 for a byte that starts no valid character).
fn char_len(b: &[u8]) -> usize {
    let want = match b[0] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return 1,
    };
    if b.len() >= want && std::str::from_utf8(&b[..want]).is_ok() {
        want
    } else {
        1
    }
}

/// Python's `getopt.getopt(args, short_switches(), long names)`: the switches found, in order,
/// and the remaining (positional) arguments.
pub fn getopt(args: &[OsString]) -> Result<(Vec<Found>, Vec<OsString>), OptionsError> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        if !arg.starts_with(b"-") || arg == b"-" {
            break;
        }
        i += 1;
        if arg == b"--" {
            break;
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            let (name, attached) = match body.iter().position(|&c| c == b'=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let idx = resolve_long(name)?;
            let sw = &SWITCHES[idx];
            let value = match (sw.takes_value(), attached) {
                (true, Some(v)) => OsString::from_vec(v.to_vec()),
                (true, None) => {
                    let Some(v) = args.get(i) else {
                        return Err(OptionsError::Getopt(format!(
                            "option --{} requires argument",
                            sw.long
                        )));
                    };
                    i += 1;
                    v.clone()
                }
                (false, Some(_)) => {
                    return Err(OptionsError::Getopt(format!(
                        "option --{} must not have an argument",
                        sw.long
                    )))
                }
                (false, None) => OsString::new(),
            };
            found.push(Found {
                switch: idx,
                long: true,
                value,
            });
        } else {
            let mut rest = &arg[1..];
            while !rest.is_empty() {
                let n = char_len(rest);
                let unit = &rest[..n];
                rest = &rest[n..];
                let idx = SWITCHES
                    .iter()
                    .position(|s| {
                        s.short
                            .is_some_and(|c| c.is_ascii() && unit == [c as u8].as_slice())
                    })
                    .ok_or_else(|| {
                        OptionsError::Getopt(format!("option -{} not recognized", lossy(unit)))
                    })?;
                let value = if SWITCHES[idx].takes_value() {
                    let v = if !rest.is_empty() {
                        OsString::from_vec(rest.to_vec())
                    } else if let Some(v) = args.get(i) {
                        i += 1;
                        v.clone()
                    } else {
                        return Err(OptionsError::Getopt(format!(
                            "option -{} requires argument",
                            lossy(unit)
                        )));
                    };
                    rest = &[];
                    v
                } else {
                    OsString::new()
                };
                found.push(Found {
                    switch: idx,
                    long: false,
                    value,
                });
            }
        }
    }
    Ok((found, args[i..].to_vec()))
}

/// Parses argv (without the program name) and validates it, like the original's
/// `Options(argumentList=args)`.
pub fn parse(args: &[OsString]) -> Result<Options, OptionsError> {
    let o = parse_unvalidated(args)?;
    o.validate()?;
    Ok(o)
}

/// Parses argv without [`Options::validate`] (the original's `validate=False`): bad switches
/// and bad values are still errors.
pub fn parse_unvalidated(args: &[OsString]) -> Result<Options, OptionsError> {
    let (found, rest) = getopt(args)?;
    // The last occurrence of each spelling (short, long) of each switch.
    let mut last: Vec<[Option<&OsStr>; 2]> = vec![[None, None]; SWITCHES.len()];
    for f in &found {
        last[f.switch][usize::from(f.long)] = Some(&f.value);
    }
    let mut o = Options::default();
    for (sw, spellings) in SWITCHES.iter().zip(&last) {
        for v in spellings.iter().flatten() {
            (sw.apply)(&mut o, v)?;
        }
    }
    // Like the original: positionals count only when there are exactly two, and an empty one
    // is dropped together with everything after it.
    if let [source, url] = rest.as_slice() {
        if !source.is_empty() {
            o.source_dir = Some(PathBuf::from(source));
            if !url.is_empty() {
                o.s3_bucket_url = Some(utf8("S3 bucket URL", url)?.to_owned());
            }
        }
    }
    Ok(o)
}

/// The options as an argument list with long switch names in a fixed order, which
/// [`parse`] reads back to the same options. For the original's switches it is what the
/// original's `buildArgumentList` gives; ours follow them, before the positional arguments.
/// Does not validate: call [`Options::validate`] first for the original's default behaviour.
pub fn build_argument_list(o: &Options) -> Vec<String> {
    let mut out = Vec::new();
    for sw in SWITCHES {
        match (sw.emit)(o) {
            Emit::Absent => {}
            Emit::Flag => out.push(format!("--{}", sw.long)),
            Emit::Value { text, .. } => {
                out.push(format!("--{}", sw.long));
                out.push(text);
            }
        }
    }
    out.extend(
        o.source_dir
            .iter()
            .map(|p| p.to_string_lossy().into_owned()),
    );
    out.extend(o.s3_bucket_url.iter().cloned());
    out
}

/// The options as one string, as the original's `buildArgumentString` writes it (each item
/// followed by a space; paths, owner and positionals in double quotes). Does not validate.
pub fn build_argument_string(o: &Options) -> String {
    let mut out = String::new();
    for sw in SWITCHES {
        match (sw.emit)(o) {
            Emit::Absent => {}
            Emit::Flag => out += &format!("--{} ", sw.long),
            Emit::Value { text, quoted: true } => out += &format!("--{} \"{text}\" ", sw.long),
            Emit::Value {
                text,
                quoted: false,
            } => out += &format!("--{} {text} ", sw.long),
        }
    }
    if let Some(p) = &o.source_dir {
        out += &format!("\"{}\" ", p.to_string_lossy());
    }
    if let Some(u) = &o.s3_bucket_url {
        out += &format!("\"{u}\" ");
    }
    out
}

/// Unicode code points that Python's `int()` accepts as the digit zero (the digits 1..9 follow
/// each of them), Unicode 14 as in Python 3.11.
const DIGIT_ZEROS: &[u32] = &[
    0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66,
    0xde6, 0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90,
    0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10,
    0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650,
    0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50,
    0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
];

fn decimal_value(c: char) -> Option<u32> {
    let c = c as u32;
    DIGIT_ZEROS
        .iter()
        .find(|&&z| (z..z + 10).contains(&c))
        .map(|z| c - z)
}

/// Whitespace that Python's `int()` ignores around a number.
fn int_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Reads a mode as the original does (Python's `int(text, 8)`): surrounding whitespace, a sign,
/// a `0o` prefix and single underscores between digits are accepted; negative modes are not.
/// Modes beyond `u32` (accepted by the original, meaningless to chmod) are rejected.
pub fn parse_octal_mode(text: &str) -> Result<u32, OptionsError> {
    let bad = || {
        OptionsError::Value(format!(
            "The mode must be an octal number such as 640, not {text:?}."
        ))
    };
    let t = text.trim_matches(int_space);
    let (negative, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let t = match t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        Some(r) => r.strip_prefix('_').unwrap_or(r),
        None => t,
    };
    let mut value: u64 = 0;
    let mut digits = 0;
    let mut after_underscore = false;
    for c in t.chars() {
        if c == '_' {
            if digits == 0 || after_underscore {
                return Err(bad());
            }
            after_underscore = true;
            continue;
        }
        let d = decimal_value(c).filter(|d| *d < 8).ok_or_else(bad)?;
        value = value.saturating_mul(8).saturating_add(u64::from(d));
        digits += 1;
        after_underscore = false;
    }
    if digits == 0 || after_underscore {
        return Err(bad());
    }
    if negative && value != 0 {
        return Err(OptionsError::Value(format!(
            "The mode may not be negative: {text:?}."
        )));
    }
    u32::try_from(value).map_err(|_| bad())
}

/// The usage text printed by `-h` (to stderr) and before a command-line error.
pub fn usage() -> String {
    let mut s = String::new();
    s += "\nUsage: cback3-amazons3-sync [switches] sourceDir s3BucketUrl\n\n";
    s += DESCRIPTION;
    s += "\n\nArguments:\n";
    for (name, what) in ARGUMENTS {
        s += &format!("  {name:<22}{what}\n");
    }
    s += "\nSwitches (";
    s += ABBREVIATIONS;
    s += "):\n";
    for sw in SWITCHES {
        let mut head = match sw.short {
            Some(c) => format!("  -{c}, --{}", sw.long),
            None => format!("      --{}", sw.long),
        };
        if let Some(v) = sw.value_name {
            head += &format!("={v}");
        }
        let mut lines = sw.help.lines();
        let first = lines.next().unwrap_or("");
        if head.len() < 24 {
            s += &format!("{head:<24}{first}\n");
        } else {
            s += &format!("{head}\n{:24}{first}\n", "");
        }
        for l in lines {
            s += &format!("{:24}{l}\n", "");
        }
    }
    s += "\nExit status: ";
    s += EXIT_STATUS;
    s += "\n\nExample:\n  ";
    s += EXAMPLE;
    s += "\n\n";
    s
}

// Texts shared by the usage above and the man page (`manpage.rs`); lines as -h prints them.

/// What the tool does.
pub const DESCRIPTION: &str = "\
Copies the files under sourceDir into the S3 bucket prefix given by s3BucketUrl
(s3://bucket/prefix), deletes objects there that have no local file, then lists
the prefix again to prove that every file arrived with its size. A drop-in for
Cedar Backup 3's cback3-amazons3-sync that talks to S3 without the AWS CLI.";

/// The positional arguments and what they are.
pub const ARGUMENTS: &[(&str, &str)] = &[
    ("sourceDir", "existing local directory to copy"),
    ("s3BucketUrl", "target, s3://bucket/prefix"),
];

/// How switch names may be written.
pub const ABBREVIATIONS: &str = "\
long names of the Cedar Backup switches may be shortened to any
unique prefix, e.g. --verb; the switches without a short form must be
written in full";

/// The exit statuses.
pub const EXIT_STATUS: &str = "\
0 success, 2 bad command line, 3 logfile not usable,
5 interrupted, 6 any other failure (including differences found by the check).";

/// One example command line.
pub const EXAMPLE: &str = "cback3-amazons3-sync -b /home/me s3://example-backups/me";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_string_is_the_originals() {
        assert_eq!(short_switches(), "hVbql:o:m:OdsDvuw");
    }

    #[test]
    fn our_names_do_not_shadow_original_abbreviations() {
        for ours in SWITCHES.iter().filter(|s| !s.original) {
            assert!(ours.short.is_none(), "{}", ours.long);
            for orig in SWITCHES.iter().filter(|s| s.original) {
                assert!(
                    !orig.long.starts_with(ours.long),
                    "--{} would change the meaning of an abbreviation of --{}",
                    ours.long,
                    orig.long
                );
            }
        }
    }

    #[test]
    fn usage_mentions_every_switch_and_defaults() {
        let u = usage();
        for sw in SWITCHES {
            assert!(u.contains(&format!("--{}", sw.long)), "{}", sw.long);
        }
        assert!(u.contains(DEFAULT_LOGFILE));
        assert!(u.contains(&format!("{DEFAULT_MODE:o}")));
        assert!(u.contains(&format!("{}:{}", DEFAULT_OWNER.0, DEFAULT_OWNER.1)));
        assert!(u.contains(&DEFAULT_MAX_CONCURRENCY.to_string()));
        for l in u.lines() {
            assert!(l.chars().count() <= 80, "too wide: {l:?}");
        }
    }

    #[test]
    fn octal_modes() {
        let ok = [
            ("640", 0o640),
            ("0644", 0o644),
            (" 0o17 ", 0o17),
            ("0O7", 7),
            ("1_7", 0o17),
            ("0o_1", 1),
            ("+7", 7),
            ("-0", 0),
            ("\t7\n", 7),
            ("\u{663}", 3),
            ("7\u{3000}", 7),
        ];
        for (t, m) in ok {
            assert_eq!(parse_octal_mode(t), Ok(m), "{t:?}");
        }
        for t in [
            "999",
            "abc",
            "",
            "8",
            "-1",
            "0o",
            "0o_",
            "7_",
            "_7",
            "1__7",
            "+-7",
            "- 7",
            "0x1f",
            "0b1",
            "\x1c7",
            "1 7",
            "77777777777",
        ] {
            assert!(
                matches!(parse_octal_mode(t), Err(OptionsError::Value(_))),
                "{t:?}"
            );
        }
    }
}
