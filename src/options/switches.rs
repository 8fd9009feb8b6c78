//! The switch table: every switch, how its value is read and how it is written back.

use std::ffi::OsStr;
use std::path::PathBuf;

use super::{
    parse_octal_mode, Options, OptionsError, MAX_CONCURRENCY, SSE_ALGORITHMS, STORAGE_CLASSES,
};

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
    pub(super) fn takes_value(&self) -> bool {
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

pub(super) fn utf8<'a>(what: &str, v: &'a OsStr) -> Result<&'a str, OptionsError> {
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
}
