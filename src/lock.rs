//! One changing run at a time per target (endpoint, bucket and prefix) for each user.
//!
//! Two runs that change the same prefix at once are not safe: the one with the older walk
//! deletes objects the other has just uploaded, and each aborts the other's multipart
//! uploads as strays. The same holds for overlapping prefixes (`p` and `p/sub`, or the bucket
//! root and anything in it). So a sync or a restore first takes, without waiting, a shared
//! `flock` on the lock file of every ancestor prefix (`""`, `p/`, ...) and an exclusive one on
//! its own prefix's: overlapping runs conflict, siblings (`p/a` and `p/b`) do not. On a
//! conflict the run stops with exit 6 before it lists anything. The kernel drops the locks
//! when the process ends, however it ends. Verify-only runs change nothing and take no lock.
//! A file's name hashes the endpoint (`aws` for AWS itself), the bucket and the prefix.
//!
//! The files live in a directory nobody but this user (and root) can write, so no other
//! local user can hold, create or remove them: runs of different users never stop each other.
//! It depends on the user only, never on the environment (cron and a login shell agree):
//! `/run/cback3-s3sync` for root, else `.cache/cback3-s3sync/locks` under the home the
//! password database gives.
//! When that cannot be used (no home, a read-only one), the runs lock in every
//! `/var/tmp/cback3-s3sync-<uid>.*` that is a directory of this user writable by nobody else,
//! making one (random suffix) when there is none: a name another user made there is ignored,
//! and two first runs that each made one still meet in both. [`LOCK_DIR_ENV`] replaces the
//! directory for the test suites only (same checks, no fallback).

use std::fs::{DirBuilder, File, TryLockError};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::bucket_url::BucketUrl;
use crate::display::display_path;

/// For the test suites only: use this directory for lock files instead of the user's.
pub const LOCK_DIR_ENV: &str = "CBACK3_LOCK_DIR";

/// Where a user whose own directory cannot be used keeps lock directories (sticky and
/// writable by all on every system; unlike `/tmp`, kept across reboots, for what else
/// [`lock_dir`] holds).
const FALLBACK_BASE: &str = "/var/tmp";

/// Characters of the bucket name kept in a lock file's name: S3 bucket names are at most 63
/// long, so a valid name is kept whole (readable in `ls`), and the file name stays far below
/// the 255-byte limit of file systems whatever the name (the hash keeps it unique).
const SHOWN_BUCKET_CHARS: usize = 63;

/// Buffer for `getpwuid_r` / `getgrnam_r`: the C library asks for 16 KiB at most
/// (`_SC_GETPW_R_SIZE_MAX`); 64 KiB leaves room for large NSS entries (LDAP groups) at the
/// cost of one short-lived allocation.
pub const PASSWD_BUFFER: usize = 64 * 1024;

/// What a lock protects: a bucket prefix on one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The configured endpoint URL, normalised; `aws` when none is configured.
    pub endpoint: String,
    pub url: BucketUrl,
}

impl Target {
    /// `endpoint` is the custom endpoint the client uses, if any.
    pub fn new(endpoint: Option<&str>, url: &BucketUrl) -> Self {
        let endpoint = match endpoint {
            Some(e) => canonical_endpoint(e),
            None => "aws".to_string(),
        };
        Target {
            endpoint,
            url: url.clone(),
        }
    }

    fn file_name(&self, prefix: &str) -> String {
        // Bucket names are compared without case: a server that folds them would otherwise
        // let `s3://B/p` and `s3://b/p` run at once (a false conflict costs only a refusal).
        let bucket = self.url.bucket.to_ascii_lowercase();
        let mut key = Vec::new();
        for part in [&self.endpoint, &bucket, prefix] {
            key.extend_from_slice(part.as_bytes());
            key.push(0);
        }
        let shown: String = bucket.chars().take(SHOWN_BUCKET_CHARS).collect();
        format!("{shown}-{:016x}.lock", fnv1a(&key))
    }
}

/// One spelling per endpoint, without resolving names: scheme and host in lower case, no
/// default port (80 for http, 443 for https), no trailing `/` or trailing `.` of the host,
/// and the loopback names `localhost` and `[::1]` as `127.0.0.1`. Two spellings that name
/// the same server otherwise (an alias, another address of it) are two targets.
fn canonical_endpoint(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/').to_ascii_lowercase();
    let Some((scheme, rest)) = e.split_once("://") else {
        return e;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let port = port
        .filter(|p| !p.is_empty() && !matches!((scheme, *p), ("http", "80") | ("https", "443")));
    let host = host.trim_end_matches('.');
    // Every endpoint of AWS S3 (global, regional, dual-stack, FIPS, China) reaches one
    // namespace of bucket names: with none configured the client uses one of them.
    if host == "amazonaws.com"
        || host.ends_with(".amazonaws.com")
        || host.ends_with(".amazonaws.com.cn")
    {
        return "aws".to_string();
    }
    let host = canonical_ip(host).unwrap_or_else(|| host.to_string());
    let host = match host.as_str() {
        "localhost" | "[::1]" | "127.0.0.1" | "0.0.0.0" | "[::]" => "127.0.0.1",
        h => h,
    };
    let path = path.trim_end_matches('/');
    match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

/// An address literal in its one spelling: IPv4 in the forms the resolver also accepts
/// (`127.1`, `0x7f.0.0.1`, `0177.0.0.1`, `2130706433`) as a dotted quad, IPv6 in brackets
/// compressed, an IPv4-mapped IPv6 address as its IPv4 one. `None` for a name.
fn canonical_ip(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: std::net::Ipv6Addr = inner.split('%').next()?.parse().ok()?;
        return Some(match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{ip}]"),
        });
    }
    // inet_aton(3): one to four parts, each decimal, octal (leading 0) or hex (0x); the last
    // part fills the remaining bytes.
    let parts: Vec<u64> = host
        .split('.')
        .map(|p| {
            let (digits, radix) = match p.strip_prefix("0x") {
                Some(h) => (h, 16),
                None if p.len() > 1 && p.starts_with('0') => (&p[1..], 8),
                None => (p, 10),
            };
            if digits.is_empty() && radix != 16 || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u64::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix).ok()
        })
        .collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|&p| p > 255) || *last >= 1u64 << (8 * (4 - head.len())) {
        return None;
    }
    let value = head
        .iter()
        .enumerate()
        .fold(*last, |v, (i, &p)| v | p << (8 * (3 - i)));
    Some(std::net::Ipv4Addr::from(value as u32).to_string())
}

/// Held for the whole run; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    /// Each lock directory and locked file, with the path it was opened at.
    files: Vec<(File, PathBuf)>,
    pub target: Target,
    /// The lock file of the target's own prefix (held exclusively).
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another run is already syncing {url} or a prefix under it; nothing was done")]
    Busy { url: String },
    #[error("another run is already syncing {other}, which contains {url}; nothing was done")]
    Contained { url: String, other: String },
    #[error("cannot use the lock directory {path}: {why}")]
    Dir { path: String, why: String },
    #[error("cannot open the run lock {path}: {error}")]
    Open { path: String, error: String },
    #[error("the run lock {path} was removed or replaced while this run held it, so another run may be syncing {url}; stopping before any delete")]
    Lost { path: String, url: String },
}

impl RunLock {
    /// Checks that every lock file and directory is still the one this run locked: one
    /// removed (a cleaner of `~/.cache`, a careless `rm`) or replaced would let the next run
    /// lock a new file at that path while this one runs. Only this user or root can do that
    /// in a private directory, and it costs a `stat` per file: the run checks before it
    /// uploads and before it deletes.
    pub fn check(&self) -> Result<(), LockError> {
        let id = |m: std::fs::Metadata| (m.dev(), m.ino());
        let moved = |(f, p): &&(File, PathBuf)| {
            std::fs::symlink_metadata(p).map(id).ok() != f.metadata().map(id).ok()
        };
        match self.files.iter().find(moved) {
            None => Ok(()),
            Some((_, p)) => Err(LockError::Lost {
                path: display_path(p),
                url: self.target.url.to_string(),
            }),
        }
    }
}

/// FNV-1a: a stable name across builds and versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The user's own lock directory: root's in `/run` when there is one (`run_exists`), else
/// under the home directory the password database gives (`None` without one).
pub fn default_dir(uid: u32, home: Option<&Path>, run_exists: bool) -> Option<PathBuf> {
    match home {
        _ if uid == 0 && run_exists => Some(PathBuf::from("/run/cback3-s3sync")),
        Some(h) if h.is_absolute() => Some(h.join(".cache/cback3-s3sync/locks")),
        _ => None,
    }
}

/// The home directory of `uid` in the password database (not `$HOME`).
pub fn passwd_home(uid: u32) -> Option<PathBuf> {
    let mut buf = vec![0 as libc::c_char; PASSWD_BUFFER];
    // SAFETY: getpwuid_r writes only into the struct and the buffer we pass; the home
    // string points into `buf`, which outlives its use here.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) != 0
            || out.is_null()
            || pw.pw_dir.is_null()
        {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr(pw.pw_dir);
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
    }
}

/// The directories this process locks in, created if needed and checked: [`LOCK_DIR_ENV`]'s,
/// else the user's own ([`default_dir`]) when it can be used, else [`fallback_dirs`].
fn lock_dirs() -> Result<Vec<PathBuf>, LockError> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if let Some(d) = std::env::var_os(LOCK_DIR_ENV).filter(|d| !d.is_empty()) {
        return prepare_dir(Path::new(&d), uid).map(|()| vec![d.into()]);
    }
    let why = match default_dir(uid, passwd_home(uid).as_deref(), Path::new("/run").is_dir()) {
        Some(d) => match prepare_dir(&d, uid) {
            Ok(()) => return Ok(vec![d]),
            Err(e) => e.to_string(),
        },
        None => format!("user id {uid} has no home directory in the password database"),
    };
    log::debug!(target: crate::FLOW, "Run locks kept under {FALLBACK_BASE}: {why}");
    fallback_dirs(Path::new(FALLBACK_BASE), uid)
}

/// This user's lock directory (the first one where there are several), created if needed
/// and checked: nobody else can create, hold or remove files in it.
pub fn lock_dir() -> Result<PathBuf, LockError> {
    Ok(lock_dirs()?.swap_remove(0))
}

/// For `-D`: the directories this user's runs lock in (created if needed), or why none.
pub fn lock_dirs_shown() -> String {
    match lock_dirs() {
        Ok(dirs) => dirs
            .iter()
            .map(|d| display_path(d))
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => e.to_string(),
    }
}

/// Creates `dir` (0700) when absent and checks it with [`usable`].
pub fn prepare_dir(dir: &Path, uid: u32) -> Result<(), LockError> {
    let created = match dir.symlink_metadata() {
        Ok(_) => Ok(()),
        Err(_) => DirBuilder::new().recursive(true).mode(0o700).create(dir),
    };
    let why = match created {
        Ok(()) => usable(dir, uid).err(),
        Err(e) => Some(e.to_string()),
    };
    why.map_or(Ok(()), |why| {
        let path = display_path(dir);
        Err(LockError::Dir { path, why })
    })
}

/// Whether only `uid` (and root) can create files in `dir`, and `uid` can: a directory (not
/// a symlink) owned by `uid`, not writable by group or others, and not read-only.
fn usable(dir: &Path, uid: u32) -> Result<(), String> {
    let meta = dir.symlink_metadata().map_err(|e| e.to_string())?;
    let why = if !meta.is_dir() {
        "it is not a directory (a symlink?)".to_string()
    } else if meta.uid() != uid {
        format!(
            "it belongs to user id {}, not to this user ({uid})",
            meta.uid()
        )
    } else if meta.mode() & 0o022 != 0 {
        let mode = meta.mode() & 0o7777;
        format!("it is writable by group or others (mode {mode:o}; chmod 700 it)")
    } else {
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let (rwx, how) = (libc::W_OK | libc::X_OK, libc::AT_EACCESS);
        // SAFETY: faccessat reads a NUL-terminated path we own.
        return match unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), rwx, how) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error().to_string()),
        };
    };
    Err(format!("{why}; refusing to use it"))
}

/// The lock directories of `uid` in `base` (root's, sticky where writable by all): every
/// `cback3-s3sync-<uid>.*` there that passes [`usable`], after making one (mkdtemp: 0700,
/// random suffix) when none does. Whatever another user made at such a name is ignored;
/// two first runs that each made one lock in both, so they still exclude each other.
pub fn fallback_dirs(base: &Path, uid: u32) -> Result<Vec<PathBuf>, LockError> {
    let stem = format!("cback3-s3sync-{uid}.");
    let err = |why: String| LockError::Dir {
        path: format!("{}/{stem}*", display_path(base)),
        why,
    };
    let meta = std::fs::metadata(base).map_err(|e| err(e.to_string()))?;
    if ![0, uid].contains(&meta.uid()) || meta.mode() & 0o1002 == 0o002 {
        return Err(err(
            "another user owns it, or all can write it and it is not sticky".into(),
        ));
    }
    let owned = || -> std::io::Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(base)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().as_bytes();
            if name.starts_with(stem.as_bytes()) && usable(&path, uid).is_ok() {
                dirs.push(path);
            }
        }
        dirs.sort();
        Ok(dirs)
    };
    let mut dirs = owned().map_err(|e| err(e.to_string()))?;
    if dirs.is_empty() {
        let mut template = base
            .join(stem.clone() + "XXXXXX")
            .into_os_string()
            .into_vec();
        template.push(0);
        // SAFETY: mkdtemp rewrites the X's of the NUL-terminated buffer we own.
        if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
            return Err(err(std::io::Error::last_os_error().to_string()));
        }
        dirs = owned().map_err(|e| err(e.to_string()))?;
    }
    match dirs.is_empty() {
        true => Err(err("the directory made is not usable".into())),
        false => Ok(dirs),
    }
}

/// Every prefix that contains `prefix`, outermost first, then `prefix` itself.
fn prefixes(prefix: &str) -> Vec<&str> {
    let inner = prefix.match_indices('/').map(|(i, _)| &prefix[..=i]);
    let mut out: Vec<&str> = [""].into_iter().chain(inner).collect();
    out.dedup();
    out
}

/// Takes the lock for `target` without waiting, in each of this user's lock directories.
pub fn acquire(target: &Target) -> Result<RunLock, LockError> {
    let dirs = lock_dirs()?;
    let mut lock = acquire_in(&dirs[0], target)?;
    for dir in &dirs[1..] {
        lock.files.extend(acquire_in(dir, target)?.files);
    }
    Ok(lock)
}

/// [`acquire`] in one given (already checked) directory.
pub fn acquire_in(dir: &Path, target: &Target) -> Result<RunLock, LockError> {
    let failed = |path: &Path, e: std::io::Error| LockError::Open {
        path: display_path(path),
        error: e.to_string(),
    };
    // systemd-tmpfiles does not age out files in a directory someone holds a lock on.
    let held_dir = File::open(dir).map_err(|e| failed(dir, e))?;
    let _ = held_dir.try_lock_shared();
    let mut files = vec![(held_dir, dir.to_path_buf())];
    let own = target.url.prefix.as_str();
    for prefix in prefixes(own) {
        let path = dir.join(target.file_name(prefix));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            // Without blocking: a FIFO put at the name must not hang the run.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| failed(&path, e))?;
        let locked = match prefix == own {
            true => file.try_lock(),
            false => file.try_lock_shared(),
        };
        let url = target.url.to_string();
        match locked {
            Ok(()) => files.push((file, path)),
            Err(TryLockError::Error(e)) => return Err(failed(&path, e)),
            Err(TryLockError::WouldBlock) if prefix == own => return Err(LockError::Busy { url }),
            Err(TryLockError::WouldBlock) => {
                let (bucket, prefix) = (target.url.bucket.clone(), prefix.to_string());
                let other = BucketUrl { bucket, prefix }.to_string();
                return Err(LockError::Contained { url, other });
            }
        }
    }
    let path = files.last().map(|(_, p)| p.clone()).unwrap_or_default();
    let target = target.clone();
    let lock = RunLock {
        files,
        target,
        path,
    };
    // A file removed or replaced between our open and our lock was locked in vain.
    lock.check()?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn target(url: &str) -> Target {
        Target::new(Some("http://127.0.0.1:1/"), &BucketUrl::parse(url).unwrap())
    }

    #[test]
    fn the_directory_depends_on_the_user_only() {
        let dir = |uid, home: Option<&str>, run| default_dir(uid, home.map(Path::new), run);
        let run = Some(PathBuf::from("/run/cback3-s3sync"));
        assert_eq!(dir(0, Some("/root"), true), run);
        assert_eq!(dir(0, None, true), run);
        let home = Some(PathBuf::from("/home/u/.cache/cback3-s3sync/locks"));
        assert_eq!(dir(1000, Some("/home/u"), true), home);
        let root = Some(PathBuf::from("/root/.cache/cback3-s3sync/locks"));
        assert_eq!(dir(0, Some("/root"), false), root);
        assert_eq!(dir(1000, None, true), None);
        assert_eq!(dir(1000, Some("rel"), true), None);
        // The home comes from the password database, whatever $HOME says.
        let uid = unsafe { libc::geteuid() };
        let home = passwd_home(uid).expect("this user has a passwd entry");
        assert!(home.is_absolute(), "{home:?}");
        assert_eq!(passwd_home(0).unwrap(), Path::new("/root"));
    }

    #[test]
    fn prefixes_of_a_prefix() {
        assert_eq!(prefixes(""), [""]);
        assert_eq!(prefixes("p/"), ["", "p/"]);
        assert_eq!(prefixes("a/b/c/"), ["", "a/", "a/b/", "a/b/c/"]);
    }

    #[test]
    fn endpoint_bucket_and_prefix_name_the_file() {
        let a = target("s3://bkt/p");
        let name = |e: Option<&str>, u: &str| {
            Target::new(e, &BucketUrl::parse(u).unwrap()).file_name("p/")
        };
        assert_eq!(a.file_name("p/"), target("s3://bkt/p/").file_name("p/"));
        assert_ne!(a.file_name("p/"), a.file_name("q/"));
        assert_ne!(a.file_name("p/"), name(None, "s3://bkt/p"));
        // Spellings of one endpoint (numeric ones the resolver accepts, the unspecified
        // address, which connects to this host, IPv4-mapped IPv6), and bucket-name case, are
        // one target; another port, scheme, address or host is another.
        let same = |e: &str, u: &str| name(Some(e), u) == a.file_name("p/");
        for e in [
            "http://127.0.0.1:1",
            "http://127.0.0.1:1//",
            " HTTP://127.0.0.1:1/ ",
            "http://localhost:1",
            "http://LocalHost.:1/",
            "http://[::1]:1",
            "http://127.1:1",
            "http://0x7f.0.0.1:1",
            "http://0177.0.0.01:1",
            "http://2130706433:1",
            "http://0.0.0.0:1",
            "http://0:1",
            "http://[::]:1",
            "http://[::ffff:127.0.0.1]:1",
            "http://[0:0:0:0:0:0:0:1]:1",
        ] {
            assert!(same(e, "s3://bkt/p"), "{e}");
        }
        assert!(same("http://127.0.0.1:1", "s3://BKT/p"));
        for e in [
            "http://127.0.0.1:2",
            "https://127.0.0.1:1",
            "http://127.0.0.2:1",
            "http://other:1",
        ] {
            assert!(!same(e, "s3://bkt/p"), "{e}");
        }
        for (e, want) in [
            ("HTTPS://S3.Example.com:443/", "https://s3.example.com"),
            ("http://s3.example.com:80", "http://s3.example.com"),
            ("http://[fd00::1]:9000/", "http://[fd00::1]:9000"),
            ("http://h:9000/base/", "http://h:9000/base"),
            ("http://10.1:9000", "http://10.0.0.1:9000"),
            ("http://[FD00:0::1]:9000", "http://[fd00::1]:9000"),
            // Not addresses: kept as names.
            ("http://1.2.3.4.5:1", "http://1.2.3.4.5:1"),
            ("http://256.1.1.1:1", "http://256.1.1.1:1"),
            ("http://08:1", "http://08:1"),
        ] {
            assert_eq!(canonical_endpoint(e), want);
        }
        // AWS: no endpoint, and any spelling of one of its S3 endpoints, is one target.
        let aws = name(None, "s3://bkt/p");
        for e in [
            "https://s3.amazonaws.com",
            "https://S3.us-east-1.amazonaws.com:443/",
            "https://s3-eu-west-1.amazonaws.com",
            "https://s3.dualstack.eu-west-1.amazonaws.com",
            "https://s3-fips.us-gov-west-1.amazonaws.com",
            "http://s3.cn-north-1.amazonaws.com.cn",
            "https://bkt.s3.amazonaws.com.",
        ] {
            assert_eq!(name(Some(e), "s3://bkt/p"), aws, "{e}");
        }
        for e in [
            "https://amazonaws.com.example.org",
            "https://notamazonaws.com",
        ] {
            assert_ne!(canonical_endpoint(e), "aws");
        }
        let long = "b".repeat(255);
        assert!(target(&format!("s3://{long}/p")).file_name("p/").len() < 100);
    }

    #[test]
    fn overlapping_prefixes_conflict_and_siblings_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let take = |u: &str| acquire_in(d, &target(u));
        let p = take("s3://bkt/p").unwrap();
        assert!(matches!(take("s3://bkt/p/"), Err(LockError::Busy { .. })));
        assert!(matches!(
            take("s3://bkt/p/sub"),
            Err(LockError::Contained { .. })
        ));
        assert!(matches!(take("s3://bkt"), Err(LockError::Busy { .. })));
        // Another bucket, or the same bucket on another endpoint, is another target.
        let _other = take("s3://bkt2/p").unwrap();
        let _elsewhere = acquire_in(
            d,
            &Target::new(None, &BucketUrl::parse("s3://bkt/p").unwrap()),
        )
        .unwrap();
        drop(p);
        let sub = take("s3://bkt/p/sub").unwrap();
        assert!(matches!(take("s3://bkt/p"), Err(LockError::Busy { .. })));
        let sibling = take("s3://bkt/p/other").unwrap();
        let e = take("s3://bkt/").unwrap_err().to_string();
        assert!(e.contains("s3://bkt/ or a prefix under it"), "{e}");
        drop((sub, sibling));
        let root = take("s3://bkt").unwrap();
        let e = take("s3://bkt/p/sub").unwrap_err().to_string();
        assert!(
            e.contains("syncing s3://bkt/, which contains s3://bkt/p/sub/"),
            "{e}"
        );
        drop(root);
        let _again = take("s3://bkt/p/sub").unwrap();
    }

    #[test]
    fn a_held_lock_file_removed_or_replaced_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let held = acquire_in(d, &target("s3://bkt/p/sub")).unwrap();
        held.check().unwrap();
        // Replaced by another file (an editor's or a cleaner's rename over it).
        let fresh = d.join("fresh");
        std::fs::write(&fresh, b"").unwrap();
        std::fs::rename(&fresh, &held.path).unwrap();
        let e = held.check().unwrap_err().to_string();
        assert!(e.contains("removed or replaced"), "{e}");
        drop(held);
        // An ancestor's file removed: also lost.
        let held = acquire_in(d, &target("s3://bkt/p/sub")).unwrap();
        held.check().unwrap();
        std::fs::remove_file(d.join(target("s3://bkt").file_name(""))).unwrap();
        assert!(matches!(held.check(), Err(LockError::Lost { .. })));
        // The directory renamed away: the path names nothing any more.
        let held = acquire_in(d, &target("s3://bkt/q")).unwrap();
        let moved = dir.path().with_extension("moved");
        std::fs::rename(d, &moved).unwrap();
        assert!(held.check().is_err());
        std::fs::rename(&moved, d).unwrap();
        held.check().unwrap();
    }

    #[test]
    fn directories_others_can_write_or_own_are_refused() {
        let uid = unsafe { libc::geteuid() };
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b/locks");
        prepare_dir(&fresh, uid).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare_dir(&open, uid).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(prepare_dir(&link, uid).is_err());
        // Owned by someone else (as seen from another uid, so no root needed).
        let e = prepare_dir(&fresh, uid + 1).unwrap_err().to_string();
        assert!(e.contains("belongs to user id"), "{e}");
    }

    #[test]
    fn fallback_directories_are_the_users_own_and_all_of_them_are_locked() {
        let uid = unsafe { libc::geteuid() };
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        let stem = |s: &str| b.join(format!("cback3-s3sync-{uid}.{s}"));
        // Names another user could make: a directory writable by others, a symlink to one
        // of ours, one of another uid's (its name differs too), a file. None is used.
        std::fs::create_dir(stem("open")).unwrap();
        std::fs::set_permissions(stem("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink(b, stem("link")).unwrap();
        std::fs::create_dir(b.join(format!("cback3-s3sync-{}.x", uid + 1))).unwrap();
        std::fs::write(stem("file"), b"").unwrap();
        let first = fallback_dirs(b, uid).unwrap();
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(std::fs::metadata(&first[0]).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(
            fallback_dirs(b, uid).unwrap(),
            first,
            "made once, then found"
        );
        // Two first runs raced and each made one: a run locks in both.
        std::fs::create_dir(stem("zzzzzz")).unwrap();
        std::fs::set_permissions(stem("zzzzzz"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let both = fallback_dirs(b, uid).unwrap();
        assert_eq!(both.len(), 2, "{both:?}");
        let t = target("s3://bkt/p");
        let _held_in_second = acquire_in(&both[1], &t).unwrap();
        let e = acquire_in(&both[0], &t).and_then(|_| acquire_in(&both[1], &t));
        assert!(matches!(e, Err(LockError::Busy { .. })));
        // A base others can write without the sticky bit is refused.
        std::fs::set_permissions(b, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = fallback_dirs(b, uid).unwrap_err().to_string();
        assert!(e.contains("not sticky"), "{e}");
    }
}
