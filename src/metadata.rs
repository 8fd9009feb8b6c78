//! Recorded metadata: what an object says about the file or directory it was made from, in
//! rclone's user metadata names and formats, so that rclone reads ours and we read its:
//! `mtime` (seconds since the epoch with up to nine decimals), `mode` (octal `st_mode`, the
//! file type included: `0100644`, `040700`), `uid` and `gid` (decimal). The one formatter and
//! parser of these values: the sync writes them and reads `mtime` back (the ambiguous-file
//! rule of [`crate::sync::plan`]), the restore applies them.
//!
//! Times are `i128` nanoseconds since the epoch: an `i64` of nanoseconds ends in 2262, while
//! file systems keep later times (ext4 until 2446, XFS with bigtime until 2486).
//!
//! The parsing rule for `mtime` (rclone's reader takes the same values): surrounding
//! whitespace is ignored; an optional `+` or `-`; one or more digits; optionally a `.` and one
//! or more digits. Digits past the ninth decimal are dropped (truncation: rclone reads them
//! so). The sign applies to the whole value (`-1.5` is 1.5 s before the epoch, as
//! [`format_mtime`] writes it). The seconds must fit a `time_t` (`i64`). Anything else
//! (empty, `1e9`, `.5`, `5.`, words) is not an mtime: the restore warns and uses the object's
//! LastModified, the sync treats it as no mtime recorded.

use std::collections::HashMap;

/// Nanoseconds in a second.
pub const NS: i128 = 1_000_000_000;

/// The metadata name of the mtime (`x-amz-meta-mtime`).
pub const MTIME: &str = "mtime";

/// An mtime as rclone writes it: seconds since the epoch with up to nine fraction digits,
/// trailing zeros dropped (`1354040105.5`, `1354040105`). Before the epoch the sign applies to
/// the whole value (`-1.5` is 1.5 s before).
pub fn format_mtime(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    let (secs, frac) = (abs / NS as u128, abs % NS as u128);
    if frac == 0 {
        return format!("{sign}{secs}");
    }
    let digits = format!("{frac:09}");
    format!("{sign}{secs}.{}", digits.trim_end_matches('0'))
}

/// Parses an `mtime` value by the rule in the module docs. `None` if it is not one.
pub fn parse_mtime(text: &str) -> Option<i128> {
    let text = text.trim();
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, frac) = match rest.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (rest, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut nanos: i128 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i128::from(b - b'0') * 10i128.pow(8 - i as u32);
    }
    let abs = i128::from(secs) * NS + nanos;
    Some(if neg { -abs } else { abs })
}

/// `mode`: octal digits, at most a whole `st_mode` (`0177777`); the permission bits
/// (`07777`) of it. rclone's value carries the file type (`100644`), ours too.
pub fn parse_mode(text: &str) -> Option<u32> {
    let t = text.trim();
    if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let v = u32::from_str_radix(t, 8).ok()?;
    (v <= 0o177777).then_some(v & 0o7777)
}

/// `uid` / `gid`: a decimal id. `4294967295` is refused: chown(2) takes it for "unchanged".
pub fn parse_id(text: &str) -> Option<u32> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<u32>().ok().filter(|&v| v != u32::MAX)
}

/// The metadata an upload records for a file or a directory (`st_mode` with its type).
pub fn record(mtime_ns: i128, st_mode: u32, uid: u32, gid: u32) -> HashMap<String, String> {
    [
        (MTIME, format_mtime(mtime_ns)),
        ("mode", format!("0{st_mode:o}")),
        ("uid", uid.to_string()),
        ("gid", gid.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What an object records about its file or directory; `None` where nothing usable is recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub mtime_ns: Option<i128>,
    /// Permission bits only (`07777`).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Recorded {
    /// Reads the four names (in any case). Returns also one description per value that is
    /// present but unusable (`mode "rwx" is not an octal mode`): a missing name is no problem
    /// (objects of other tools record nothing), a junk value is.
    pub fn from_metadata(meta: Option<&HashMap<String, String>>) -> (Recorded, Vec<String>) {
        let mut problems = Vec::new();
        let Some(meta) = meta else {
            return (Recorded::default(), problems);
        };
        let get = |name: &str| {
            meta.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let mut read = |name: &str, what: &str, parse: &dyn Fn(&str) -> Option<u32>| {
            let raw = get(name)?;
            let v = parse(raw);
            if v.is_none() {
                problems.push(format!("{name} {raw:?} is not {what}"));
            }
            v
        };
        let mode = read("mode", "an octal mode", &parse_mode);
        let uid = read("uid", "a user id", &parse_id);
        let gid = read("gid", "a group id", &parse_id);
        let mtime_ns = get(MTIME).and_then(|raw| {
            let v = parse_mtime(raw);
            if v.is_none() {
                problems.push(format!("mtime {raw:?} is not seconds since the epoch"));
            }
            v
        });
        let r = Recorded {
            mtime_ns,
            mode,
            uid,
            gid,
        };
        (r, problems)
    }
}

/// An mtime as the `timespec` fields `futimens` takes (seconds, nanoseconds 0..1e9).
pub fn timespec_parts(ns: i128) -> (i64, i64) {
    let secs = ns.div_euclid(NS);
    let nanos = ns.rem_euclid(NS) as i64;
    (
        i64::try_from(secs).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX }),
        nanos,
    )
}

/// Nanoseconds since the epoch from `stat`'s seconds and nanoseconds, exactly.
pub fn from_parts(secs: i64, nanos: i64) -> i128 {
    i128::from(secs) * NS + i128::from(nanos)
}

// Names both directions agree on: what a directory marker is, and the restore's temporary
// names (which the sync's walk skips).

/// A zero-byte key ending in `/` (or the prefix itself): a directory marker (see
/// [`crate::sync::plan::is_marker`]), no file to write.
pub fn is_directory_marker(rel: &str, size: u64) -> bool {
    size == 0 && (rel.is_empty() || rel.ends_with('/'))
}

/// The temporary name a `--restore` gives a file it writes, where it needs one (a file system
/// without `O_TMPFILE`, or the step before an atomic replace with `--overwrite`): a fixed
/// prefix, the byte 0xFF and the MD5 of the final name in hex. No S3 key holds the byte 0xFF
/// (keys are UTF-8, where it never occurs), so this is never a name the restore places,
/// whatever the bucket holds; it always fits a file name (41 bytes); and a rerun restoring the
/// same file computes the same name and removes one left by a killed run.
pub fn restore_temporary_name(final_name: &str) -> Vec<u8> {
    use md5::Digest as _;
    let digest = md5::Md5::digest(final_name.as_bytes());
    let mut name = RESTORE_TEMPORARY_PREFIX.to_vec();
    for b in digest {
        name.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    name
}

const RESTORE_TEMPORARY_PREFIX: &[u8] = b".cback3-\xff";

/// Is `name` (one path component) a temporary name of [`restore_temporary_name`]'s pattern?
/// The sync skips such files with a WARNING: they are a killed restore's leftovers, never
/// data, and their names cannot be keys.
pub fn is_restore_temporary(name: &[u8]) -> bool {
    name.strip_prefix(RESTORE_TEMPORARY_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = NS;

    #[test]
    fn mtime_round_trips() {
        let cases = [
            (1_354_040_105_123_456_789, "1354040105.123456789"),
            (1_354_040_105_500_000_000, "1354040105.5"),
            (1_354_040_105 * S, "1354040105"),
            (1_000_000_001, "1.000000001"),
            (0, "0"),
            (-1_500_000_000, "-1.5"),
            (-1, "-0.000000001"),
            // After 2262 (where i64 nanoseconds end) and before 1970.
            (13_569_465_600 * S + 123_456_789, "13569465600.123456789"),
            (16_725_225_600 * S, "16725225600"),
            (-315_619_200 * S + 500_000_000, "-315619199.5"),
            (i128::from(i64::MAX) * S, "9223372036854775807"),
        ];
        for (ns, text) in cases {
            assert_eq!(format_mtime(ns), text);
            assert_eq!(parse_mtime(text), Some(ns), "{text}");
        }
    }

    #[test]
    fn the_one_mtime_rule() {
        // (text, value): the cases the two earlier parsers disagreed on, and the edges.
        let cases: &[(&str, Option<i128>)] = &[
            ("+7", Some(7 * S)),
            ("+7.25", Some(7 * S + 250_000_000)),
            ("-1.5", Some(-1_500_000_000)),
            (" 7 ", Some(7 * S)),
            ("12.1234567891", Some(12_123_456_789)),
            ("12.9999999999999", Some(12_999_999_999)),
            ("-12.1234567891", Some(-12_123_456_789)),
            ("007", Some(7 * S)),
            ("13569465600.5", Some(13_569_465_600 * S + 500_000_000)),
            ("", None),
            ("   ", None),
            ("-", None),
            ("+", None),
            ("+-7", None),
            ("--1", None),
            (".5", None),
            ("5.", None),
            ("1.-5", None),
            ("1e9", None),
            ("1.2.3", None),
            ("abc", None),
            ("0x10", None),
            ("1 000", None),
            ("٣", None),
            ("9223372036854775808", None),
            ("99999999999999999999", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_mtime(text), *want, "{text:?}");
        }
    }

    #[test]
    fn modes_and_ids() {
        let modes: &[(&str, Option<u32>)] = &[
            ("0100644", Some(0o644)),
            ("100640", Some(0o640)),
            ("040700", Some(0o700)),
            ("755", Some(0o755)),
            ("4755", Some(0o4755)),
            ("0", Some(0)),
            ("", None),
            ("rwx", None),
            ("0o755", None),
            ("8", None),
            ("-755", None),
            ("1777777", None),
            ("777777777777777", None),
        ];
        for (text, want) in modes {
            assert_eq!(parse_mode(text), *want, "{text:?}");
        }
        let ids: &[(&str, Option<u32>)] = &[
            ("0", Some(0)),
            ("1000", Some(1000)),
            ("4294967294", Some(4_294_967_294)),
            ("4294967295", None),
            ("4294967296", None),
            ("-1", None),
            ("+5", None),
            ("x", None),
            ("", None),
        ];
        for (text, want) in ids {
            assert_eq!(parse_id(text), *want, "{text:?}");
        }
    }

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn recorded_metadata_and_its_problems() {
        let (r, p) = Recorded::from_metadata(Some(&meta(&[
            ("Mtime", "1.25"),
            ("mode", "100640"),
            ("uid", "1000"),
            ("gid", "x"),
        ])));
        assert_eq!(
            r,
            Recorded {
                mtime_ns: Some(1_250_000_000),
                mode: Some(0o640),
                uid: Some(1000),
                gid: None
            }
        );
        assert_eq!(p, ["gid \"x\" is not a group id"]);
        let (r, p) = Recorded::from_metadata(Some(&meta(&[
            ("mtime", "yesterday"),
            ("mode", "rw-r--r--"),
            ("uid", "-1"),
        ])));
        assert_eq!(r, Recorded::default());
        assert_eq!(p.len(), 3, "{p:?}");
        // Nothing recorded (objects of other tools) is no problem.
        assert_eq!(Recorded::from_metadata(None), (Recorded::default(), vec![]));
        assert_eq!(
            Recorded::from_metadata(Some(&meta(&[("other", "1")]))),
            (Recorded::default(), vec![])
        );
        // What an upload records reads back as it was.
        let written = record(13_569_465_600 * S + 7, 0o40750, 12, 34);
        let (r, p) = Recorded::from_metadata(Some(&written));
        assert!(p.is_empty());
        assert_eq!(
            r,
            Recorded {
                mtime_ns: Some(13_569_465_600 * S + 7),
                mode: Some(0o750),
                uid: Some(12),
                gid: Some(34)
            }
        );
        assert_eq!(written["mode"], "040750");
    }

    #[test]
    fn timespecs() {
        assert_eq!(timespec_parts(-1_500_000_000), (-2, 500_000_000));
        assert_eq!(timespec_parts(13_569_465_600 * S + 9), (13_569_465_600, 9));
        assert_eq!(from_parts(-2, 500_000_000), -1_500_000_000);
    }
}
