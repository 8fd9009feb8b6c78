//! The AWS CLI's `s3 =` settings of a profile (the nested block in `~/.aws/config`), read
//! with the AWS CLI's meaning and value syntax, and the run-wide bandwidth limit that
//! `max_bandwidth` and `--maxBandwidth` set.
//!
//! ```text
//! [profile backup]
//! s3 =
//!   max_concurrent_requests = 20
//!   multipart_threshold = 64MB
//!   multipart_chunksize = 16MB
//!   max_bandwidth = 50MB/s
//!   addressing_style = path
//!   use_accelerate_endpoint = true
//! ```
//!
//! Precedence: our switch, then the profile, then our default.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Default bound on concurrent S3 requests (`--maxConcurrency`, `max_concurrent_requests`).
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;
/// The most concurrent requests `--maxConcurrency` and `max_concurrent_requests` may ask for.
/// Far beyond what one prefix can use (S3 takes about 3,500 writes a second per prefix, which
/// 64 requests already reach at normal latencies), while each request may hold a 1 MiB body
/// and two file descriptors: 1,000 stays within 1 GiB and a typical descriptor limit, and far
/// from tokio's semaphore limit (2^61), which panics.
pub const MAX_CONCURRENCY: usize = 1000;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Parses a size as the AWS CLI does (`human_readable_to_bytes`): a whole number of bytes, or
/// one followed by `KB`, `MB`, `GB`, `TB` or `KiB`, `MiB`, `GiB`, `TiB` (any case), all of
/// them powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size (bytes, or a number with KB, MB, GB or TB)");
    let lower = text.trim().to_ascii_lowercase();
    let units: [(&str, u64); 8] = [
        ("kib", KIB),
        ("mib", MIB),
        ("gib", 1 << 30),
        ("tib", 1 << 40),
        ("kb", KIB),
        ("mb", MIB),
        ("gb", 1 << 30),
        ("tb", 1 << 40),
    ];
    let (number, unit) = units
        .iter()
        .find_map(|(suffix, unit)| lower.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((lower.as_str(), 1));
    let number = number.trim();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(bad)
}

/// Parses a rate as the AWS CLI does for `max_bandwidth`: bytes per second as a whole
/// number, or a size per second in bytes (`10MB/s`, `800KB/s`, `1024B/s`) or bits
/// (`10Mb/s`, `800Kb/s`); the prefixes are powers of 1024. Zero is refused (nothing would
/// ever be sent).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("{text:?} is not a rate (bytes per second, or for example 10MB/s, 800KB/s, 8Mb/s)")
    };
    let t = text.trim();
    let per_second = |v: &str| -> Result<u64, String> {
        // "1024B/s": no prefix, the number is all that is left without "B/s";
        // "10MB/s": the size parser takes "10MB".
        let without_unit = &v[..v.len() - 3];
        if !without_unit.is_empty() && without_unit.bytes().all(|b| b.is_ascii_digit()) {
            without_unit.parse::<u64>().map_err(|_| bad())
        } else {
            parse_size(&v[..v.len() - 2]).map_err(|_| bad())
        }
    };
    let rate = if t.ends_with("B/s") {
        per_second(t)?
    } else if t.ends_with("b/s") {
        per_second(t)? / 8
    } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if rate == 0 {
        return Err(format!("{text:?} is a rate of 0 bytes per second"));
    }
    Ok(rate)
}

/// The `key = value` lines of a nested block, as aws-config keeps it for the property
/// (`s3 =` followed by indented lines: the value is those lines, trimmed, joined by
/// newlines). Blank lines and lines without `=` are left out, as the AWS CLI ignores them.
pub fn parse_block(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// `addressing_style`: how bucket names go into request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// Path style when a custom endpoint is configured, virtual-hosted against AWS.
    Auto,
    Path,
    Virtual,
}

/// Settings of the AWS CLI's `s3` block that the tool does not use, with the reason (also
/// in the README): they are accepted and named at DEBUG level.
pub const NOT_USED: &[(&str, &str)] = &[
    (
        "max_queue_size",
        "no task queue: files are dispatched as requests free up",
    ),
    (
        "payload_signing_enabled",
        "bodies are always protected by a CRC64NVME checksum",
    ),
    ("preferred_transfer_client", "there is one transfer engine"),
    ("target_bandwidth", "CRT transfer client only"),
    ("should_stream", "CRT transfer client only"),
    ("disk_throughput", "CRT transfer client only"),
    ("direct_io", "CRT transfer client only"),
    (
        "io_chunksize",
        "the restore writes each piece of a download as it arrives; no queue of chunks",
    ),
    ("signature_version", "requests are always signed with SigV4"),
    (
        "us_east_1_regional_endpoint",
        "the SDK always uses the regional endpoint",
    ),
];

/// The selected profile's `s3` settings that the tool uses, validated. `None`: not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileS3 {
    /// The profile they come from (for messages and `-D`).
    pub profile: String,
    pub max_concurrent_requests: Option<usize>,
    pub multipart_threshold: Option<u64>,
    pub multipart_chunksize: Option<u64>,
    pub max_bandwidth: Option<u64>,
    pub addressing_style: Option<Addressing>,
    pub use_accelerate_endpoint: Option<bool>,
    pub use_dualstack_endpoint: Option<bool>,
    /// Keys of [`NOT_USED`] that are set.
    pub not_used: Vec<String>,
}

impl ProfileS3 {
    /// Reads the selected profile's `s3` block. A value the AWS CLI would refuse (or that
    /// is out of the tool's range) is an error, one line naming the profile and the setting.
    pub fn from_profiles(
        profiles: Option<&aws_config::profile::ProfileSet>,
    ) -> Result<Self, String> {
        let Some(p) = profiles else {
            return Ok(ProfileS3::default());
        };
        let name = p.selected_profile().to_string();
        match p.get("s3") {
            Some(block) => Self::from_block(&name, block),
            None => Ok(ProfileS3 {
                profile: name,
                ..ProfileS3::default()
            }),
        }
    }

    /// [`Self::from_profiles`] for the text of the block.
    pub fn from_block(profile: &str, block: &str) -> Result<Self, String> {
        let mut out = ProfileS3 {
            profile: profile.to_string(),
            ..ProfileS3::default()
        };
        for (key, value) in parse_block(block) {
            let err = |why: String| format!("s3 setting {key} of profile {profile}: {why}");
            match key.as_str() {
                "max_concurrent_requests" => {
                    let max = MAX_CONCURRENCY;
                    match value.parse::<usize>() {
                        Ok(n) if (1..=max).contains(&n) => out.max_concurrent_requests = Some(n),
                        _ => {
                            return Err(err(format!(
                                "needs a whole number from 1 to {max}, not {value:?}"
                            )))
                        }
                    }
                }
                "multipart_threshold" => {
                    let n = parse_size(&value).map_err(err)?;
                    if n == 0 {
                        return Err(err("must be at least 1 byte".into()));
                    }
                    out.multipart_threshold = Some(n);
                }
                "multipart_chunksize" => {
                    let n = parse_size(&value).map_err(err)?;
                    if n == 0 {
                        return Err(err("must be at least 1 byte".into()));
                    }
                    out.multipart_chunksize = Some(n);
                }
                "max_bandwidth" => out.max_bandwidth = Some(parse_rate(&value).map_err(err)?),
                "addressing_style" => {
                    out.addressing_style = Some(match value.as_str() {
                        "auto" => Addressing::Auto,
                        "path" => Addressing::Path,
                        "virtual" => Addressing::Virtual,
                        _ => {
                            return Err(err(format!(
                                "must be auto, path or virtual, not {value:?}"
                            )))
                        }
                    })
                }
                "use_accelerate_endpoint" => {
                    out.use_accelerate_endpoint = Some(boolean(&value).map_err(err)?)
                }
                "use_dualstack_endpoint" => {
                    out.use_dualstack_endpoint = Some(boolean(&value).map_err(err)?)
                }
                k if NOT_USED.iter().any(|(n, _)| *n == k) => out.not_used.push(key.clone()),
                // Unknown keys are ignored, as the AWS CLI ignores them.
                _ => {}
            }
        }
        Ok(out)
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("must be true or false, not {value:?}")),
    }
}

/// When files go up as multipart uploads, and the size of their parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multipart {
    /// Files of this size or more go up as multipart uploads.
    pub threshold: u64,
    /// The part size (before it grows to keep within 10,000 parts): within S3's limits.
    pub part_size: u64,
}

impl Default for Multipart {
    fn default() -> Self {
        Multipart {
            threshold: super::limits::MULTIPART_THRESHOLD,
            part_size: super::limits::MIN_PART_SIZE,
        }
    }
}

impl Multipart {
    /// The profile's `multipart_threshold` / `multipart_chunksize`, else ours. A chunk size
    /// outside S3's limits is brought within them (5 MiB to 5 GiB), as the AWS CLI does.
    pub fn from_profile(s3: &ProfileS3) -> Self {
        let d = Multipart::default();
        Multipart {
            threshold: s3.multipart_threshold.unwrap_or(d.threshold),
            part_size: s3.multipart_chunksize.unwrap_or(d.part_size).clamp(
                super::limits::S3_MIN_PART_SIZE,
                super::limits::MAX_PART_SIZE,
            ),
        }
    }
}

/// The run's bandwidth limit and where it comes from: `--maxBandwidth`, else the profile's
/// `max_bandwidth`. The sync paces its uploads with it, the restore its downloads.
pub fn rate_limit(s3: &ProfileS3, switch: Option<u64>) -> Option<(u64, String)> {
    match (switch, s3.max_bandwidth) {
        (Some(r), _) => Some((r, "--maxBandwidth".to_string())),
        (None, Some(r)) => Some((r, format!("s3 max_bandwidth of profile {}", s3.profile))),
        (None, None) => None,
    }
}

/// A rate limit shared by every request of a run: a token bucket that body streams consult
/// before they read each chunk. A reader that finds too few tokens takes them anyway (the
/// bucket goes below zero) and sleeps until they would have been there, so readers are
/// served in turn, nothing spins, and no more than [`Bandwidth::burst`] + rate × elapsed
/// bytes are ever handed out.
#[derive(Debug)]
pub struct Bandwidth {
    rate: u64,
    bucket: Mutex<(f64, Instant)>,
}

impl Bandwidth {
    pub fn new(rate: u64) -> Self {
        let rate = rate.max(1);
        let b = Bandwidth {
            rate,
            bucket: Mutex::new((0.0, Instant::now())),
        };
        b.bucket.lock().expect("fresh mutex").0 = b.burst() as f64;
        b
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bytes read per wait: 1/32 s of the rate, from 4 KiB to 256 KiB, so that each
    /// request keeps moving (servers drop a connection that stays idle for long).
    pub fn chunk(&self) -> u64 {
        (self.rate / 32).clamp(4 * KIB, 256 * KIB)
    }

    /// What may go at once after an idle moment: one chunk.
    pub fn burst(&self) -> u64 {
        self.chunk()
    }

    /// Takes `n` bytes' worth of tokens; `Some(when)` if the caller must wait until then.
    pub fn reserve(&self, n: u64) -> Option<Instant> {
        self.reserve_at(Instant::now(), n)
    }

    fn reserve_at(&self, now: Instant, n: u64) -> Option<Instant> {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let refill = now.saturating_duration_since(b.1).as_secs_f64() * self.rate as f64;
        b.0 = (b.0 + refill).min(self.burst() as f64) - n as f64;
        b.1 = now;
        (b.0 < 0.0).then(|| now + Duration::from_secs_f64(-b.0 / self.rate as f64))
    }

    /// Waits until `n` bytes may go.
    pub async fn take(&self, n: u64) {
        if let Some(when) = self.reserve(n) {
            tokio::time::sleep_until(when).await;
        }
    }
}

/// A rate for people: `2 MiB/s`, `512 KiB/s`, `1000 B/s`.
pub fn show_rate(rate: u64) -> String {
    if rate >= MIB && rate.is_multiple_of(MIB / 16) {
        format!("{} MiB/s", rate as f64 / MIB as f64)
    } else if rate >= KIB && rate.is_multiple_of(KIB) {
        format!("{} KiB/s", rate / KIB)
    } else {
        format!("{rate} B/s")
    }
}

/// A size for people: `16 MiB`, `64 KiB`, `1000 bytes`.
pub fn show_size(size: u64) -> String {
    const GIB: u64 = 1 << 30;
    if size >= GIB && size.is_multiple_of(GIB) {
        format!("{} GiB", size / GIB)
    } else if size >= GIB {
        format!("{:.1} GiB", size as f64 / GIB as f64)
    } else if size >= MIB && size.is_multiple_of(MIB) {
        format!("{} MiB", size / MIB)
    } else if size >= KIB && size.is_multiple_of(KIB) {
        format!("{} KiB", size / KIB)
    } else {
        format!("{size} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_as_the_aws_cli_reads_them() {
        for (text, want) in [
            ("0", 0),
            ("1048576", MIB),
            ("8MB", 8 * MIB),
            ("8mb", 8 * MIB),
            ("8 MB", 8 * MIB),
            ("64KB", 64 * KIB),
            ("64KiB", 64 * KIB),
            ("1GB", 1 << 30),
            ("1gib", 1 << 30),
            ("2TB", 2 << 40),
            (" 16MiB ", 16 * MIB),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
        for text in [
            "",
            "MB",
            "8XB",
            "8.5MB",
            "-1",
            "1e6",
            "8 M B",
            "99999999999999TB",
            "8B",
        ] {
            let e = parse_size(text).expect_err(text);
            assert!(e.contains("is not a size"), "{e}");
        }
    }

    #[test]
    fn rates_are_read_as_the_aws_cli_reads_them() {
        for (text, want) in [
            ("10485760", 10 * MIB),
            ("10MB/s", 10 * MIB),
            ("800KB/s", 800 * KIB),
            ("1KB/s", KIB),
            ("1024B/s", 1024),
            ("2MiB/s", 2 * MIB),
            ("8Mb/s", MIB),
            ("800Kb/s", 100 * KIB),
            ("16b/s", 2),
        ] {
            assert_eq!(parse_rate(text), Ok(want), "{text:?}");
        }
        for text in [
            "",
            "10MB",
            "10 MB/s/s",
            "fast",
            "10mb/S",
            "1.5MB/s",
            "/s",
            "B/s",
            "-5",
        ] {
            let e = parse_rate(text).expect_err(text);
            assert!(e.contains("is not a rate"), "{text:?}: {e}");
        }
        for text in ["0", "0B/s", "0MB/s", "7b/s"] {
            let e = parse_rate(text).expect_err(text);
            assert!(e.contains("rate of 0"), "{text:?}: {e}");
        }
    }

    #[test]
    fn nested_blocks_are_read_key_by_key() {
        // As aws-config keeps `s3 =` followed by indented lines.
        let block = "\nmax_concurrent_requests = 20\nmultipart_threshold=64MB\n\n  max_bandwidth =  50MB/s\nnot a setting\naddressing_style = path\nuse_accelerate_endpoint = TRUE\nmax_queue_size = 10000\nunknown_key = 1";
        assert_eq!(
            parse_block(block),
            [
                ("max_concurrent_requests", "20"),
                ("multipart_threshold", "64MB"),
                ("max_bandwidth", "50MB/s"),
                ("addressing_style", "path"),
                ("use_accelerate_endpoint", "TRUE"),
                ("max_queue_size", "10000"),
                ("unknown_key", "1"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let s3 = ProfileS3::from_block("backup", block).unwrap();
        assert_eq!(s3.max_concurrent_requests, Some(20));
        assert_eq!(s3.multipart_threshold, Some(64 * MIB));
        assert_eq!(s3.multipart_chunksize, None);
        assert_eq!(s3.max_bandwidth, Some(50 * MIB));
        assert_eq!(s3.addressing_style, Some(Addressing::Path));
        assert_eq!(s3.use_accelerate_endpoint, Some(true));
        assert_eq!(s3.not_used, ["max_queue_size"]);
    }

    #[test]
    fn bad_profile_values_are_one_clear_line() {
        for (block, want) in [
            ("max_concurrent_requests = 0", "from 1 to 1000, not \"0\""),
            (
                "max_concurrent_requests = 1001",
                "from 1 to 1000, not \"1001\"",
            ),
            ("max_concurrent_requests = many", "from 1 to 1000"),
            ("multipart_threshold = 8XB", "\"8XB\" is not a size"),
            ("multipart_threshold = 0", "at least 1 byte"),
            ("multipart_chunksize = 5.5MB", "is not a size"),
            ("max_bandwidth = 50MB", "\"50MB\" is not a rate"),
            ("addressing_style = host", "auto, path or virtual"),
            ("use_accelerate_endpoint = yes", "true or false"),
        ] {
            let e = ProfileS3::from_block("backup", block).expect_err(block);
            let key = block.split(' ').next().unwrap();
            assert!(
                e.starts_with(&format!("s3 setting {key} of profile backup: ")) && e.contains(want),
                "{block}: {e}"
            );
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn part_sizes_are_kept_within_s3_limits() {
        let with = |chunk: u64| {
            Multipart::from_profile(&ProfileS3 {
                multipart_chunksize: Some(chunk),
                ..ProfileS3::default()
            })
            .part_size
        };
        assert_eq!(with(MIB), 5 * MIB);
        assert_eq!(with(8 * MIB), 8 * MIB);
        assert_eq!(with(6 << 30), 5 << 30);
        assert_eq!(
            Multipart::from_profile(&ProfileS3::default()),
            Multipart::default()
        );
    }

    #[test]
    fn the_bucket_hands_out_at_most_burst_plus_rate_times_time() {
        let rate = 2 * MIB;
        let bw = Bandwidth::new(rate);
        let start = Instant::now();
        assert_eq!(bw.chunk(), 64 * KIB);
        // The burst goes at once; then each chunk waits its turn.
        assert_eq!(bw.reserve_at(start, bw.burst()), None);
        let mut handed = bw.burst();
        let mut last = start;
        while handed < 6 * MIB {
            let when = bw.reserve_at(start, bw.chunk()).expect("must wait");
            handed += bw.chunk();
            assert!(when > last);
            last = when;
        }
        let need = Duration::from_secs_f64((handed - bw.burst()) as f64 / rate as f64);
        let took = last - start;
        assert!(took + Duration::from_millis(1) >= need, "{took:?}");
        assert!(took <= need + Duration::from_millis(1), "{took:?}");
        // Idle time refills the bucket, up to the burst only.
        let later = last + Duration::from_secs(10);
        assert_eq!(bw.reserve_at(later, bw.burst()), None);
        assert!(bw.reserve_at(later, 1).is_some());
        // Small rates read small chunks, large ones at most 256 KiB at a time.
        assert_eq!(Bandwidth::new(1000).chunk(), 4 * KIB);
        assert_eq!(Bandwidth::new(1 << 30).chunk(), 256 * KIB);
    }

    #[test]
    fn rates_and_sizes_are_shown_readably() {
        assert_eq!(show_rate(2 * MIB), "2 MiB/s");
        assert_eq!(show_rate(50 * KIB), "50 KiB/s");
        assert_eq!(show_rate(1000), "1000 B/s");
        assert_eq!(show_size(16 * MIB), "16 MiB");
        assert_eq!(show_size(12345), "12345 bytes");
        assert_eq!(show_size(5 << 30), "5 GiB");
        assert_eq!(show_size(16 * MIB * 10_000), "156.2 GiB");
    }
}
