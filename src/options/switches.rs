//! The switch table: every switch, the field of [`Options`] it sets, how its value is read
//! and (derived from the field's kind) how it is written back. The Python extension exports
//! the same table, and converts options to and from Python by looping over [`fields`].

use std::ffi::OsStr;
use std::path::PathBuf;

use super::model::{Options, OptionsError, MAX_CONCURRENCY, SSE_ALGORITHMS, STORAGE_CLASSES};
use super::pyint::parse_octal_mode;

/// How a switch appears in [`build_argument_list`](super::build_argument_list) for given options.
pub enum Emit {
    /// Not given (or at its "off" value): not written.
    Absent,
    /// A flag that is set.
    Flag,
    /// A valued switch; `quoted` says whether the argument string puts it in double quotes.
    Value { text: String, quoted: bool },
}

/// What a field holds. Decides its Python type and how the switch is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`; written as the bare switch when set.
    Flag,
    /// A path (Python `str`, surrogateescape); quoted in the argument string.
    Path,
    /// `(user, group)`; written `USER:GROUP`, quoted.
    Owner,
    /// A file mode (Python `int`); written in octal.
    Mode,
    /// A count (Python `int`, 0 or more); written in decimal.
    Count,
    /// Bytes per second (Python `int`); written in decimal.
    Rate,
    /// One of a fixed list of words (Python `str`); not quoted.
    Choice,
    /// Free text (Python `str`); quoted.
    Text,
}

impl Kind {
    /// The name the Python side knows the kind by.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Flag => "flag",
            Kind::Path => "path",
            Kind::Owner => "owner",
            Kind::Mode => "mode",
            Kind::Count => "count",
            Kind::Rate => "rate",
            Kind::Choice => "choice",
            Kind::Text => "str",
        }
    }
}

/// A field's value, independent of the field: what crosses to and from Python.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Flag(bool),
    Path(Option<PathBuf>),
    Owner(Option<(String, String)>),
    /// Mode, count and rate.
    Int(Option<u64>),
    /// Choice and text.
    Text(Option<String>),
}

/// Where a field lives in [`Options`]; the variant is the field's [`Kind`].
pub enum Slot<'a> {
    Flag(&'a mut bool),
    Path(&'a mut Option<PathBuf>),
    Owner(&'a mut Option<(String, String)>),
    Mode(&'a mut Option<u32>),
    Count(&'a mut Option<usize>),
    Rate(&'a mut Option<u64>),
    Choice(&'a mut Option<String>),
    Text(&'a mut Option<String>),
}

/// One field of [`Options`] as the Python `Options` object names it.
pub struct Field {
    /// The Python property name (the original's, camelCase).
    pub name: &'static str,
    /// The field itself.
    pub slot: for<'a> fn(&'a mut Options) -> Slot<'a>,
}

macro_rules! field {
    ($name:literal, $kind:ident, $member:ident) => {
        Field {
            name: $name,
            slot: |o| Slot::$kind(&mut o.$member),
        }
    };
}

impl Field {
    pub fn kind(&self) -> Kind {
        match (self.slot)(&mut Options::default()) {
            Slot::Flag(_) => Kind::Flag,
            Slot::Path(_) => Kind::Path,
            Slot::Owner(_) => Kind::Owner,
            Slot::Mode(_) => Kind::Mode,
            Slot::Count(_) => Kind::Count,
            Slot::Rate(_) => Kind::Rate,
            Slot::Choice(_) => Kind::Choice,
            Slot::Text(_) => Kind::Text,
        }
    }

    /// The field's value in `o`.
    pub fn get(&self, o: &Options) -> Value {
        let mut o = o.clone();
        match (self.slot)(&mut o) {
            Slot::Flag(b) => Value::Flag(*b),
            Slot::Path(p) => Value::Path(p.take()),
            Slot::Owner(v) => Value::Owner(v.take()),
            Slot::Mode(m) => Value::Int(m.map(u64::from)),
            Slot::Count(n) => Value::Int(n.map(|n| n as u64)),
            Slot::Rate(n) => Value::Int(*n),
            Slot::Choice(t) | Slot::Text(t) => Value::Text(t.take()),
        }
    }

    /// Stores `v` into `o`; a value of another kind, or too large for the field, is an error.
    pub fn set(&self, o: &mut Options, v: Value) -> Result<(), OptionsError> {
        let name = self.name;
        let too_large = |n: u64| OptionsError::Value(format!("{name}: {n} is too large."));
        match ((self.slot)(o), v) {
            (Slot::Flag(f), Value::Flag(b)) => *f = b,
            (Slot::Path(f), Value::Path(p)) => *f = p,
            (Slot::Owner(f), Value::Owner(p)) => *f = p,
            (Slot::Mode(f), Value::Int(n)) => {
                *f = n
                    .map(|n| u32::try_from(n).map_err(|_| too_large(n)))
                    .transpose()?
            }
            (Slot::Count(f), Value::Int(n)) => {
                *f = n
                    .map(|n| usize::try_from(n).map_err(|_| too_large(n)))
                    .transpose()?
            }
            (Slot::Rate(f), Value::Int(n)) => *f = n,
            (Slot::Choice(f) | Slot::Text(f), Value::Text(t)) => *f = t,
            (_, v) => {
                return Err(OptionsError::Value(format!(
                    "{name} cannot hold {v:?}: it is a {} field.",
                    self.kind().name()
                )))
            }
        }
        Ok(())
    }
}

/// One command-line switch. Adding a switch means adding one entry to [`SWITCHES`] (and a
/// field to [`Options`]); the Python side follows from the table.
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
    /// The field the switch sets.
    pub field: Field,
    /// Reads the switch's value from the command line (flags get an empty value).
    pub parse: fn(&OsStr) -> Result<Value, OptionsError>,
}

impl Switch {
    pub(super) fn takes_value(&self) -> bool {
        self.value_name.is_some()
    }

    /// Stores the switch's command-line value into `o`.
    pub fn apply(&self, o: &mut Options, v: &OsStr) -> Result<(), OptionsError> {
        self.field.set(o, (self.parse)(v)?)
    }

    /// How the switch is written back for `o`.
    pub fn emit(&self, o: &Options) -> Emit {
        let kind = self.field.kind();
        let (text, quoted) = match self.field.get(o) {
            Value::Flag(true) => return Emit::Flag,
            Value::Flag(false)
            | Value::Path(None)
            | Value::Owner(None)
            | Value::Int(None)
            | Value::Text(None) => return Emit::Absent,
            Value::Path(Some(p)) => (p.to_string_lossy().into_owned(), true),
            Value::Owner(Some((u, g))) => (format!("{u}:{g}"), true),
            Value::Int(Some(n)) if kind == Kind::Mode => (format!("{n:o}"), false),
            Value::Int(Some(n)) => (n.to_string(), false),
            Value::Text(Some(t)) => (t, kind == Kind::Text),
        };
        Emit::Value { text, quoted }
    }
}

/// The value of every flag given on the command line.
fn on(_: &OsStr) -> Result<Value, OptionsError> {
    Ok(Value::Flag(true))
}

pub(super) fn utf8<'a>(what: &str, v: &'a OsStr) -> Result<&'a str, OptionsError> {
    v.to_str()
        .ok_or_else(|| OptionsError::Value(format!("The {what} is not valid UTF-8: {v:?}")))
}

/// The positional arguments, as fields (they are set by position, not by a switch).
pub static POSITIONALS: &[Field] = &[
    field!("sourceDir", Path, source_dir),
    field!("s3BucketUrl", Text, s3_bucket_url),
];

/// Every field of [`Options`] in the original's order (its switches, then its two positional
/// arguments), then ours: the order Python's `Options` compares in.
pub fn fields() -> impl Iterator<Item = &'static Field> {
    let (original, ours): (Vec<_>, Vec<_>) = SWITCHES.iter().partition(|s| s.original);
    original
        .into_iter()
        .map(|s| &s.field)
        .chain(POSITIONALS)
        .chain(ours.into_iter().map(|s| &s.field))
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
        field: field!("help", Flag, help),
        parse: on,
    },
    Switch {
        long: "version",
        short: Some('V'),
        value_name: None,
        original: true,
        help: "Print the version (to stdout) and exit",
        field: field!("version", Flag, version),
        parse: on,
    },
    Switch {
        long: "verbose",
        short: Some('b'),
        value_name: None,
        original: true,
        help: "Show the log on the screen too (INFO; DEBUG with -d)",
        field: field!("verbose", Flag, verbose),
        parse: on,
    },
    Switch {
        long: "quiet",
        short: Some('q'),
        value_name: None,
        original: true,
        help: "Show nothing on the screen, not even errors",
        field: field!("quiet", Flag, quiet),
        parse: on,
    },
    Switch {
        long: "logfile",
        short: Some('l'),
        value_name: Some("FILE"),
        original: true,
        help: "Append the log to FILE (default /var/log/cback3.log)",
        field: field!("logfile", Path, logfile),
        parse: |v| {
            if v.is_empty() {
                return Err(OptionsError::Value("The logfile path may not be empty.".into()));
            }
            Ok(Value::Path(Some(PathBuf::from(v))))
        },
    },
    Switch {
        long: "owner",
        short: Some('o'),
        value_name: Some("USER:GROUP"),
        original: true,
        help: "Owner of a logfile this run creates (default root:adm);\nan existing logfile keeps its owner",
        field: field!("owner", Owner, owner),
        parse: |v| {
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
            Ok(Value::Owner(Some((user.to_owned(), group.to_owned()))))
        },
    },
    Switch {
        long: "mode",
        short: Some('m'),
        value_name: Some("MODE"),
        original: true,
        help: "Octal mode of a logfile this run creates (default 640,\numask not applied); an existing one keeps its mode",
        field: field!("mode", Mode, mode),
        parse: |v| {
            let text = utf8("mode", v)?;
            Ok(Value::Int(Some(parse_octal_mode(text)?.into())))
        },
    },
    Switch {
        long: "output",
        short: Some('O'),
        value_name: None,
        original: true,
        help: "Also record each S3 request to the logfile",
        field: field!("output", Flag, output),
        parse: on,
    },
    Switch {
        long: "debug",
        short: Some('d'),
        value_name: None,
        original: true,
        help: "Write DEBUG detail to the logfile (implies --output)",
        field: field!("debug", Flag, debug),
        parse: on,
    },
    Switch {
        long: "stack",
        short: Some('s'),
        value_name: None,
        original: true,
        help: "On failure, report the whole chain of causes",
        field: field!("stacktrace", Flag, stacktrace),
        parse: on,
    },
    Switch {
        long: "diagnostics",
        short: Some('D'),
        value_name: None,
        original: true,
        help: "Print runtime diagnostics (to stdout) and exit",
        field: field!("diagnostics", Flag, diagnostics),
        parse: on,
    },
    Switch {
        long: "verifyOnly",
        short: Some('v'),
        value_name: None,
        original: true,
        help: "Only check the bucket against the source; change nothing",
        field: field!("verifyOnly", Flag, verify_only),
        parse: on,
    },
    Switch {
        long: "uploadOnly",
        short: Some('u'),
        value_name: None,
        original: true,
        help: "Upload new and changed files; delete nothing in S3",
        field: field!("uploadOnly", Flag, upload_only),
        parse: on,
    },
    Switch {
        long: "ignoreWarnings",
        short: Some('w'),
        value_name: None,
        original: true,
        help: "Skip files whose names cannot be S3 keys, do not fail",
        field: field!("ignoreWarnings", Flag, ignore_warnings),
        parse: on,
    },
    // ---- Our own switches: long names only, never abbreviated. ----
    Switch {
        long: "maxConcurrency",
        short: None,
        value_name: Some("N"),
        original: false,
        help: "At most N S3 requests at a time (default 64, 1 to 1000)",
        field: field!("maxConcurrency", Count, max_concurrency),
        parse: |v| {
            let text = utf8("maxConcurrency value", v)?;
            match text.parse::<usize>() {
                Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(Value::Int(Some(n as u64))),
                _ => Err(OptionsError::Value(format!(
                    "--maxConcurrency needs a whole number from 1 to {MAX_CONCURRENCY}, not {text:?}."
                ))),
            }
        },
    },
    Switch {
        long: "allowEmptySource",
        short: None,
        value_name: None,
        original: false,
        help: "Let a full sync of an empty source directory delete\nevery object under the prefix (refused otherwise)",
        field: field!("allowEmptySource", Flag, allow_empty_source),
        parse: on,
    },
    Switch {
        long: "verifyContent",
        short: None,
        value_name: None,
        original: false,
        help: "Also compare each file's checksum with the one the\nbucket stores (CRC64NVME, CRC32 or the MD5 ETag)",
        field: field!("verifyContent", Flag, verify_content),
        parse: on,
    },
    Switch {
        long: "dryRun",
        short: None,
        value_name: None,
        original: false,
        help: "Show what would be uploaded and deleted, and why;\nchange nothing (the name check still runs)",
        field: field!("dryRun", Flag, dry_run),
        parse: on,
    },
    Switch {
        long: "summaryFile",
        short: None,
        value_name: Some("FILE"),
        original: false,
        help: "At the end of the run, write a JSON summary to FILE\n(schema/summary.schema.json)",
        field: field!("summaryFile", Path, summary_file),
        parse: |v| {
            if v.is_empty() {
                return Err(OptionsError::Value(
                    "The summary file path may not be empty.".into(),
                ));
            }
            Ok(Value::Path(Some(PathBuf::from(v))))
        },
    },
    Switch {
        long: "maxDeletes",
        short: None,
        value_name: Some("N"),
        original: false,
        help: "Delete nothing, and fail, if a full sync would delete\nmore than N objects (uploads still happen)",
        field: field!("maxDeletes", Count, max_deletes),
        parse: |v| {
            let text = utf8("maxDeletes value", v)?;
            let n = text.parse::<usize>().map_err(|_| {
                OptionsError::Value(format!(
                    "--maxDeletes needs a whole number (0 or more), not {text:?}."
                ))
            })?;
            Ok(Value::Int(Some(n as u64)))
        },
    },
    Switch {
        long: "maxBandwidth",
        short: None,
        value_name: Some("RATE"),
        original: false,
        help: "Upload (with --restore: download) at most RATE for the\nwhole run: bytes per second, or as 10MB/s, 500KB/s,\n8Mb/s (K, M, G = powers of 1024)\n(default: the profile's s3 max_bandwidth, else no limit)",
        field: field!("maxBandwidth", Rate, max_bandwidth),
        parse: |v| {
            let text = utf8("maxBandwidth value", v)?;
            let rate = crate::s3::settings::parse_rate(text)
                .map_err(|e| OptionsError::Value(format!("--maxBandwidth: {e}.")))?;
            Ok(Value::Int(Some(rate)))
        },
    },
    Switch {
        long: "storageClass",
        short: None,
        value_name: Some("CLASS"),
        original: false,
        help: "Storage class of uploaded objects: STANDARD,\nREDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA,\nINTELLIGENT_TIERING, GLACIER, DEEP_ARCHIVE or GLACIER_IR\n(default: the bucket's)",
        field: field!("storageClass", Choice, storage_class),
        parse: |v| {
            let text = utf8("storage class", v)?;
            if !STORAGE_CLASSES.contains(&text) {
                return Err(OptionsError::Value(format!(
                    "--storageClass must be one of {}, not {text:?}.",
                    STORAGE_CLASSES.join(", ")
                )));
            }
            Ok(Value::Text(Some(text.to_owned())))
        },
    },
    Switch {
        long: "sse",
        short: None,
        value_name: Some("ALG"),
        original: false,
        help: "Server-side encryption of uploaded objects: AES256,\naws:kms or aws:kms:dsse (default: the bucket's)",
        field: field!("sse", Choice, sse),
        parse: |v| {
            let text = utf8("sse value", v)?;
            if !SSE_ALGORITHMS.contains(&text) {
                return Err(OptionsError::Value(format!(
                    "--sse must be one of {}, not {text:?}.",
                    SSE_ALGORITHMS.join(", ")
                )));
            }
            Ok(Value::Text(Some(text.to_owned())))
        },
    },
    Switch {
        long: "sseKmsKeyId",
        short: None,
        value_name: Some("ID"),
        original: false,
        help: "KMS key (id, ARN or alias) for --sse aws:kms\n(default: the account's aws/s3 key)",
        field: field!("sseKmsKeyId", Text, sse_kms_key_id),
        parse: |v| {
            let text = utf8("KMS key id", v)?;
            if text.is_empty() {
                return Err(OptionsError::Value("--sseKmsKeyId may not be empty.".into()));
            }
            Ok(Value::Text(Some(text.to_owned())))
        },
    },
    Switch {
        long: "restore",
        short: None,
        value_name: None,
        original: false,
        help: "Restore instead: copy every object under s3BucketUrl\ninto sourceDir (created if missing), each checked\nagainst its checksum, with recorded times and modes",
        field: field!("restore", Flag, restore),
        parse: on,
    },
    Switch {
        long: "overwrite",
        short: None,
        value_name: None,
        original: false,
        help: "With --restore: replace local files that differ from\ntheir object (refused otherwise)",
        field: field!("overwrite", Flag, overwrite),
        parse: on,
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
    fn fields_are_every_field_once_in_the_originals_order() {
        let names: Vec<&str> = fields().map(|f| f.name).collect();
        assert_eq!(names.len(), SWITCHES.len() + POSITIONALS.len());
        assert_eq!(
            &names[..16],
            [
                "help",
                "version",
                "verbose",
                "quiet",
                "logfile",
                "owner",
                "mode",
                "output",
                "debug",
                "stacktrace",
                "diagnostics",
                "verifyOnly",
                "uploadOnly",
                "ignoreWarnings",
                "sourceDir",
                "s3BucketUrl"
            ]
        );
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        // Setting a field through the table changes exactly one member of Options.
        for f in fields() {
            let mut o = Options::default();
            let v = match f.kind() {
                Kind::Flag => Value::Flag(true),
                Kind::Path => Value::Path(Some("x".into())),
                Kind::Owner => Value::Owner(Some(("u".into(), "g".into()))),
                Kind::Mode | Kind::Count | Kind::Rate => Value::Int(Some(1)),
                Kind::Choice | Kind::Text => Value::Text(Some("x".into())),
            };
            f.set(&mut o, v).unwrap();
            assert_ne!(o, Options::default(), "{}", f.name);
            assert!(
                fields()
                    .filter(|g| g.get(&o) != g.get(&Options::default()))
                    .count()
                    == 1,
                "{}",
                f.name
            );
        }
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
