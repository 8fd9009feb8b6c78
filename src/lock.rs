//! One run at a time per target (endpoint, bucket and prefix) on this machine.
//!
//! Two runs that change the same prefix at once are not safe: a run whose walk is older
//! deletes objects the other one has just uploaded for new files, and each aborts the
//! other's multipart uploads as strays. The same holds for overlapping prefixes (`p` and
//! `p/sub`, or the bucket root and anything in it). So the sync phase first takes, without
//! waiting, a shared `flock` on the lock file of every ancestor prefix (`""`, `p/`, ...) and
//! an exclusive one on the file of its own prefix: overlapping runs conflict, siblings
//! (`p/a` and `p/b`) do not. On a conflict everything is released and the run stops with
//! exit 6 before it lists, uploads or deletes anything. The kernel drops the locks when the
//! process ends, however it ends, so a stale file never blocks a run.
//!
//! Where the files live depends only on the user, never on the environment (`HOME`,
//! `TMPDIR`, `XDG_RUNTIME_DIR` differ between cron and a login shell): root uses
//! `/run/cback3-s3sync`, everyone else `<home from the password database>/.cache/cback3-s3sync/locks`
//! (root too when there is no `/run`). The directory is created 0700 and refused if it is a
//! symlink, owned by another user, or writable by group or others: nobody else can create or
//! hold our lock files. [`LOCK_DIR_ENV`] overrides the directory for tests only (same checks).
//! A file's name hashes the endpoint (`aws` for AWS itself), the bucket and the prefix: the
//! same bucket name on two endpoints is two targets. Verify-only runs change nothing and take
//! no lock; a restore takes the same lock as a sync (a sync would delete under it).
//!
//! Runs of different users (root's cron job, an administrator's run with his own
//! credentials) have different directories, so the run then takes the same locks in the
//! system-wide [`SHARED_LOCK_DIR`] too (see [`RunLock::share_in`]): mandatory against another
//! run holding them, best effort against anything else (another user can hold or spoil a
//! name there; the private lock, which nobody else can touch, stays mandatory).

use std::fs::{DirBuilder, File, TryLockError};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::bucket_url::BucketUrl;

/// For the test suites only: use this directory for lock files instead of the user's.
pub const LOCK_DIR_ENV: &str = "CBACK3_LOCK_DIR";

/// For the test suites only: use this directory for the lock files shared by all users
/// instead of [`SHARED_LOCK_DIR`]. With [`LOCK_DIR_ENV`] set and this one not, no shared
/// directory is used.
pub const SHARED_LOCK_DIR_ENV: &str = "CBACK3_SHARED_LOCK_DIR";

/// The system-wide lock directory (world-writable and sticky; `/var/lock` links to it).
pub const SHARED_LOCK_DIR: &str = "/run/lock";

/// What the name of a lock file in the shared directory starts with (the rest is the name
/// of the same lock in the user's directory).
pub const SHARED_NAME_PREFIX: &str = "cback3-s3sync-";

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

/// Attempts to lock a file that something else keeps removing or replacing.
const OPEN_TRIES: usize = 5;

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

/// Held for the whole sync; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    /// Each locked file and the path it was opened at (ancestors first, own prefix last;
    /// then the same in the shared directory when it is in use).
    files: Vec<(File, PathBuf)>,
    pub target: Target,
    /// The lock file of the target's own prefix (held exclusively).
    pub path: PathBuf,
    /// The shared directory whose lock files this run also holds, if any.
    pub shared: Option<PathBuf>,
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

/// Whether `path` still names the open file `file` (same device and inode, not a symlink).
fn names(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(p), Ok(f)) => p.file_type().is_file() && (p.dev(), p.ino()) == (f.dev(), f.ino()),
        _ => false,
    }
}

impl RunLock {
    /// Checks that every lock file is still the one this run locked. A lock file removed
    /// (a cleaner of `~/.cache`, a careless `rm`) or replaced, or its directory renamed,
    /// lets the next run lock a new file at that path while this one still runs: both would
    /// change the prefix at once. The run checks before it uploads and before it deletes.
    pub fn check(&self) -> Result<(), LockError> {
        match self.files.iter().find(|(f, p)| !names(p, f)) {
            None => Ok(()),
            Some((_, p)) => Err(LockError::Lost {
                path: crate::display::display_path(p),
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

/// The lock directory for a user: root's in `/run` when there is one (`run_exists`), else
/// under the home directory the password database gives.
pub fn default_dir(uid: u32, home: Option<&Path>, run_exists: bool) -> Result<PathBuf, LockError> {
    if uid == 0 && run_exists {
        return Ok(PathBuf::from("/run/cback3-s3sync"));
    }
    match home {
        Some(h) if h.is_absolute() => Ok(h.join(".cache/cback3-s3sync/locks")),
        _ => Err(LockError::Dir {
            path: "~/.cache/cback3-s3sync/locks".into(),
            why: format!("user id {uid} has no home directory in the password database"),
        }),
    }
}

/// The home directory of `uid` in the password database (not `$HOME`).
pub fn passwd_home(uid: u32) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
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

/// This process's lock directory (created if needed and checked).
pub fn lock_dir() -> Result<PathBuf, LockError> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = match std::env::var_os(LOCK_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => default_dir(uid, passwd_home(uid).as_deref(), Path::new("/run").is_dir())?,
    };
    prepare_dir(&dir, uid)?;
    Ok(dir)
}

/// Creates `dir` (0700) when absent and checks that only `uid` can create files in it.
pub fn prepare_dir(dir: &Path, uid: u32) -> Result<(), LockError> {
    let err = |why: String| LockError::Dir {
        path: crate::display::display_path(dir),
        why,
    };
    if std::fs::symlink_metadata(dir).is_err() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(e.to_string()))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err(
            "it is not a directory (a symlink?); refusing to use it".into(),
        ));
    }
    if meta.uid() != uid {
        return Err(err(format!(
            "it belongs to user id {}, not to this user ({uid}); refusing to use it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(err(format!(
            "it is writable by group or others (mode {:o}); refusing to use it (chmod 700 it)",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Every prefix that contains `prefix`, outermost first, without `prefix` itself.
fn ancestors(prefix: &str) -> Vec<&str> {
    if prefix.is_empty() {
        return Vec::new();
    }
    let mut out = vec![""];
    for (i, _) in prefix.match_indices('/') {
        if i + 1 < prefix.len() {
            out.push(&prefix[..=i]);
        }
    }
    out
}

/// The shared lock directory this process uses, if any (see [`SHARED_LOCK_DIR_ENV`]).
pub fn shared_dir() -> Option<PathBuf> {
    let set = |k: &str| std::env::var_os(k).filter(|d| !d.is_empty());
    match (set(SHARED_LOCK_DIR_ENV), set(LOCK_DIR_ENV)) {
        (Some(d), _) => Some(PathBuf::from(d)),
        (None, Some(_)) => None,
        (None, None) => Some(PathBuf::from(SHARED_LOCK_DIR)),
    }
}

/// For `-D`: whether runs would also lock in the shared directory, without creating anything.
pub fn shared_dir_state() -> String {
    let Some(dir) = shared_dir() else {
        return format!("none ({LOCK_DIR_ENV} is set without {SHARED_LOCK_DIR_ENV})");
    };
    let shown = crate::display::display_path(&dir);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {
            let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()));
            // SAFETY: access reads a NUL-terminated path we own.
            let writable =
                c.is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0);
            if writable {
                format!("{shown} (in use: runs of other users are excluded too)")
            } else {
                format!("{shown} (in use for lock files that exist: not writable by this user)")
            }
        }
        Ok(_) => format!("{shown} (not in use: not a directory; this user's runs only)"),
        Err(e) => format!("{shown} (not in use: {e}; this user's runs only)"),
    }
}

/// Takes the lock for `target` without waiting: in the user's lock directory (mandatory),
/// then the same files in the shared directory (see [`RunLock::share_in`]).
pub fn acquire(target: &Target) -> Result<RunLock, LockError> {
    let mut lock = acquire_in(&lock_dir()?, target)?;
    if let Some(dir) = shared_dir() {
        lock.share_in(&dir)?;
    }
    Ok(lock)
}

impl RunLock {
    /// Also takes this run's locks in `dir`, shared by every user (`/run/lock`), so a run
    /// of another user (root's cron job, an administrator's own run) on the same target
    /// excludes this one. Held there by another run: [`LockError::Busy`] or
    /// [`LockError::Contained`], as in the user's directory. Anything else that keeps the
    /// run from using the directory or a file in it (missing, not writable, a file another
    /// user made unreadable, a symlink or something not a regular file at the name) is one
    /// DEBUG line: the run goes on with its own user's lock only.
    pub fn share_in(&mut self, dir: &Path) -> Result<(), LockError> {
        let shown = crate::display::display_path(dir);
        match take(dir, SHARED_NAME_PREFIX, &self.target, open_shared) {
            Ok(shared) => {
                log::debug!(target: crate::FLOW, "Run lock also taken in the shared directory {shown} (excludes runs of other users on {})", self.target.url);
                self.files.extend(shared.files);
                self.shared = Some(dir.to_path_buf());
                Ok(())
            }
            Err(e @ (LockError::Busy { .. } | LockError::Contained { .. })) => Err(e),
            Err(e) => {
                log::debug!(target: crate::FLOW, "Shared lock directory {shown} not used ({e}): only runs of this user are excluded");
                Ok(())
            }
        }
    }
}

/// Opens a lock file in the user's own directory, creating it (0600).
fn open_private(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        // Without blocking: a FIFO or device put at the name must not hang the run.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// Opens a lock file in the shared directory: see [`open_shared_with`].
fn open_shared(path: &Path) -> std::io::Result<File> {
    open_shared_with(path, || ())
}

/// Opens a lock file in the shared (sticky, world-writable) directory read-only (enough to
/// `flock` it), without following a symlink or blocking. The first open does not create:
/// `fs.protected_regular` refuses an `O_CREAT` open of another user's file there. When there
/// is none, creates it exclusively and makes it 0644 whatever the umask, so every user can
/// open it; one created meanwhile by another run (`between` stands for that in the tests)
/// is opened again.
fn open_shared_with(path: &Path, mut between: impl FnMut()) -> std::io::Result<File> {
    use std::io::ErrorKind;
    use std::os::unix::fs::PermissionsExt;
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    for _ in 0..OPEN_TRIES {
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
        {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        between();
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(flags)
            .open(path)
        {
            Ok(f) => {
                f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
                return Ok(f);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "it keeps being created and removed by something else",
    ))
}

/// [`acquire`] in a given (already checked) directory, without the shared one.
pub fn acquire_in(dir: &Path, target: &Target) -> Result<RunLock, LockError> {
    take(dir, "", target, open_private)
}

/// The locks of `target` in `dir`, in files named `name_prefix` and the target's file name,
/// opened with `open_file`.
fn take(
    dir: &Path,
    name_prefix: &str,
    target: &Target,
    open_file: fn(&Path) -> std::io::Result<File>,
) -> Result<RunLock, LockError> {
    let path_of = |prefix: &str| dir.join(format!("{name_prefix}{}", target.file_name(prefix)));
    let open = |prefix: &str| {
        let path = path_of(prefix);
        open_file(&path)
            .and_then(|f| match f.metadata()?.is_file() {
                true => Ok((f, path.clone())),
                false => Err(std::io::Error::other(
                    "it is not a regular file (remove it)",
                )),
            })
            .map_err(|e| LockError::Open {
                path: crate::display::display_path(&path),
                error: e.to_string(),
            })
    };
    let failed = |path: &Path, e: std::io::Error| LockError::Open {
        path: crate::display::display_path(path),
        error: e.to_string(),
    };
    // A file unlinked or replaced between our open and our lock is locked in vain: the next
    // run opens the new one. Locked, its path must still name it; a few tries, then fail.
    let open = |prefix: &str, exclusive: bool| {
        for _ in 0..OPEN_TRIES {
            let (file, path) = open(prefix)?;
            let locked = if exclusive {
                file.try_lock()
            } else {
                file.try_lock_shared()
            };
            if locked.is_ok() && !names(&path, &file) {
                continue;
            }
            return Ok((file, path, locked));
        }
        Err(LockError::Lost {
            path: crate::display::display_path(&path_of(prefix)),
            url: target.url.to_string(),
        })
    };
    let mut files = Vec::new();
    for prefix in ancestors(&target.url.prefix) {
        let (file, path, locked) = open(prefix, false)?;
        match locked {
            Ok(()) => files.push((file, path)),
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Contained {
                    url: target.url.to_string(),
                    other: BucketUrl {
                        bucket: target.url.bucket.clone(),
                        prefix: prefix.to_string(),
                    }
                    .to_string(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(failed(&path, e)),
        }
    }
    let (file, path, locked) = open(&target.url.prefix, true)?;
    match locked {
        Ok(()) => files.push((file, path.clone())),
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::Busy {
                url: target.url.to_string(),
            })
        }
        Err(TryLockError::Error(e)) => return Err(failed(&path, e)),
    }
    Ok(RunLock {
        files,
        target: target.clone(),
        path,
        shared: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::new(Some("http://127.0.0.1:1/"), &BucketUrl::parse(url).unwrap())
    }

    #[test]
    fn the_directory_depends_on_the_user_only() {
        let home = Path::new("/home/u");
        assert_eq!(
            default_dir(0, Some(Path::new("/root")), true).unwrap(),
            Path::new("/run/cback3-s3sync")
        );
        assert_eq!(
            default_dir(0, Some(Path::new("/root")), false).unwrap(),
            Path::new("/root/.cache/cback3-s3sync/locks")
        );
        assert_eq!(
            default_dir(1000, Some(home), true).unwrap(),
            Path::new("/home/u/.cache/cback3-s3sync/locks")
        );
        assert!(matches!(
            default_dir(1000, None, true),
            Err(LockError::Dir { .. })
        ));
        assert!(default_dir(1000, Some(Path::new("rel")), true).is_err());
        // The home comes from the password database, whatever $HOME says.
        let uid = unsafe { libc::geteuid() };
        let home = passwd_home(uid).expect("this user has a passwd entry");
        assert!(home.is_absolute(), "{home:?}");
        assert_eq!(passwd_home(0).unwrap(), Path::new("/root"));
    }

    #[test]
    fn ancestors_of_a_prefix() {
        assert!(ancestors("").is_empty());
        assert_eq!(ancestors("p/"), [""]);
        assert_eq!(ancestors("a/b/c/"), ["", "a/", "a/b/"]);
    }

    #[test]
    fn endpoint_bucket_and_prefix_name_the_file() {
        let a = target("s3://bkt/p");
        assert_eq!(a.file_name("p/"), target("s3://bkt/p/").file_name("p/"));
        let other_end = Target::new(Some("http://other:9000"), &a.url);
        assert_ne!(a.file_name("p/"), other_end.file_name("p/"));
        assert_ne!(a.file_name("p/"), Target::new(None, &a.url).file_name("p/"));
        assert_eq!(
            Target::new(Some("HTTP://127.0.0.1:1"), &a.url).file_name("p/"),
            a.file_name("p/")
        );
        assert_ne!(a.file_name("p/"), a.file_name("q/"));
        // Spellings of one endpoint, and bucket-name case, are one target.
        let same = |e: &str, u: &str| {
            Target::new(Some(e), &BucketUrl::parse(u).unwrap()).file_name("p/") == a.file_name("p/")
        };
        for e in [
            "http://127.0.0.1:1",
            "http://127.0.0.1:1//",
            " HTTP://127.0.0.1:1/ ",
            "http://localhost:1",
            "http://LocalHost.:1/",
            "http://[::1]:1",
        ] {
            assert!(same(e, "s3://bkt/p"), "{e}");
        }
        assert!(same("http://127.0.0.1:1", "s3://BKT/p"));
        assert!(!same("http://127.0.0.1:2", "s3://bkt/p"));
        assert!(!same("https://127.0.0.1:1", "s3://bkt/p"));
        assert!(!same("http://127.0.0.2:1", "s3://bkt/p"));
        assert_eq!(
            canonical_endpoint("HTTPS://S3.Example.com:443/"),
            "https://s3.example.com"
        );
        assert_eq!(
            canonical_endpoint("http://s3.example.com:80"),
            "http://s3.example.com"
        );
        assert_eq!(
            canonical_endpoint("http://[fd00::1]:9000/"),
            "http://[fd00::1]:9000"
        );
        assert_eq!(
            canonical_endpoint("http://h:9000/base/"),
            "http://h:9000/base"
        );
        // Numeric spellings the resolver accepts, the unspecified address (which connects
        // to this host) and IPv4-mapped IPv6 are the loopback server too.
        for e in [
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
        assert_eq!(
            canonical_endpoint("http://10.1:9000"),
            "http://10.0.0.1:9000"
        );
        assert_eq!(
            canonical_endpoint("http://[FD00:0::1]:9000"),
            "http://[fd00::1]:9000"
        );
        for name in ["http://1.2.3.4.5:1", "http://256.1.1.1:1", "http://08:1"] {
            assert_eq!(
                canonical_endpoint(name),
                name,
                "not an address: kept as a name"
            );
        }
        // AWS: no endpoint, and any spelling of one of its S3 endpoints, is one target.
        let aws = Target::new(None, &a.url).file_name("p/");
        for e in [
            "https://s3.amazonaws.com",
            "https://S3.us-east-1.amazonaws.com:443/",
            "https://s3-eu-west-1.amazonaws.com",
            "https://s3.dualstack.eu-west-1.amazonaws.com",
            "https://s3-fips.us-gov-west-1.amazonaws.com",
            "http://s3.cn-north-1.amazonaws.com.cn",
            "https://bkt.s3.amazonaws.com.",
        ] {
            assert_eq!(Target::new(Some(e), &a.url).file_name("p/"), aws, "{e}");
        }
        assert_ne!(
            canonical_endpoint("https://amazonaws.com.example.org"),
            "aws"
        );
        assert_ne!(canonical_endpoint("https://notamazonaws.com"), "aws");
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
    fn a_lock_file_that_is_not_a_regular_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let t = target("s3://bkt/p");
        let path = dir.path().join(t.file_name("p/"));
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = acquire_in(dir.path(), &t).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    /// A private directory and a shared one (1777, like `/run/lock`).
    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (own, shared) = (dir.path().join("own"), dir.path().join("shared"));
        std::fs::create_dir(&own).unwrap();
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        (dir, own, shared)
    }

    #[test]
    fn a_shared_lock_file_is_created_readable_by_all_or_opened_as_it_is() {
        let (_dir, _, shared) = dirs();
        let path = shared.join("cback3-s3sync-x.lock");
        // None yet: created, 0644.
        let created = open_shared(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        // There: opened (read-only is enough to lock it), the same file.
        let again = open_shared(&path).unwrap();
        assert_eq!(
            again.metadata().unwrap().ino(),
            created.metadata().unwrap().ino()
        );
        again.try_lock().unwrap();
        assert!(created.try_lock_shared().is_err(), "one lock on one file");
        // Another run creates it between our first open (ENOENT) and our O_EXCL one: ours
        // fails with EEXIST and we open theirs, as they made it (mode untouched).
        let raced = shared.join("cback3-s3sync-y.lock");
        let mut theirs = None;
        let f = open_shared_with(&raced, || {
            if theirs.is_none() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&raced, b"").unwrap();
                std::fs::set_permissions(&raced, std::fs::Permissions::from_mode(0o640)).unwrap();
                theirs = Some(std::fs::metadata(&raced).unwrap().ino());
            }
        })
        .unwrap();
        assert_eq!(Some(f.metadata().unwrap().ino()), theirs);
        assert_eq!(std::fs::metadata(&raced).unwrap().mode() & 0o7777, 0o640);
        // A symlink at the name is not followed.
        let link = shared.join("cback3-s3sync-l.lock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(
            open_shared(&link).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn the_shared_directory_excludes_runs_with_other_private_directories() {
        let (dir, own, shared) = dirs();
        let other = dir.path().join("other-user");
        std::fs::create_dir(&other).unwrap();
        let take = |private: &Path, u: &str| {
            let mut l = acquire_in(private, &target(u))?;
            l.share_in(&shared)?;
            Ok::<_, LockError>(l)
        };
        let held = take(&own, "s3://bkt/p").unwrap();
        assert_eq!(held.shared.as_deref(), Some(shared.as_path()));
        assert!(matches!(
            take(&other, "s3://bkt/p"),
            Err(LockError::Busy { .. })
        ));
        assert!(matches!(
            take(&other, "s3://bkt/p/sub"),
            Err(LockError::Contained { .. })
        ));
        assert!(matches!(
            take(&other, "s3://bkt"),
            Err(LockError::Busy { .. })
        ));
        let _sibling = take(&other, "s3://bkt/q").unwrap();
        // The files are named after the private ones.
        let name = format!(
            "{SHARED_NAME_PREFIX}{}",
            target("s3://bkt/p").file_name("p/")
        );
        assert!(shared.join(&name).is_file());
        // The check before uploads and deletes covers them.
        held.check().unwrap();
        std::fs::remove_file(shared.join(&name)).unwrap();
        let e = held.check().unwrap_err().to_string();
        assert!(
            e.contains("removed or replaced") && e.contains("shared"),
            "{e}"
        );
        drop(held);
        let _next = take(&other, "s3://bkt/p").unwrap();
    }

    #[test]
    fn a_shared_directory_that_cannot_be_used_leaves_the_private_lock() {
        let (dir, own, shared) = dirs();
        let t = target("s3://bkt/p");
        let name =
            |prefix: &str| shared.join(format!("{SHARED_NAME_PREFIX}{}", t.file_name(prefix)));
        // Missing directory.
        let mut l = acquire_in(&own, &t).unwrap();
        l.share_in(&dir.path().join("missing")).unwrap();
        assert!(l.shared.is_none());
        drop(l);
        // At the own prefix's name: a FIFO (never waited on), a directory, a symlink; at the
        // bucket root's (an ancestor, taken first): a symlink.
        let fifo = |p: &Path| {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        };
        let symlink = |p: &Path| std::os::unix::fs::symlink(dir.path(), p).unwrap();
        type Make<'a> = &'a dyn Fn(&Path);
        let cases: [(&str, Make); 4] = [
            ("p/", &fifo),
            ("p/", &|p| std::fs::create_dir(p).unwrap()),
            ("p/", &symlink),
            ("", &symlink),
        ];
        for (prefix, make) in cases {
            let at = name(prefix);
            // The bucket root's file left by the cases before (a regular file, unlocked).
            let _ = std::fs::remove_file(&at);
            make(&at);
            let mut l = acquire_in(&own, &t).unwrap();
            l.share_in(&shared).unwrap();
            assert!(l.shared.is_none(), "{prefix:?}");
            l.check().unwrap();
            drop(l);
            std::fs::remove_dir(&at)
                .or_else(|_| std::fs::remove_file(&at))
                .unwrap();
        }
        // With the name free again the shared directory is used.
        let mut l = acquire_in(&own, &t).unwrap();
        l.share_in(&shared).unwrap();
        assert!(l.shared.is_some());
        drop(l);
        // The private lock still excludes a second run of this user.
        let _held = acquire_in(&own, &t).unwrap();
        assert!(matches!(acquire_in(&own, &t), Err(LockError::Busy { .. })));
    }

    #[test]
    fn directories_others_can_write_or_own_are_refused() {
        let uid = unsafe { libc::geteuid() };
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b/locks");
        prepare_dir(&fresh, uid).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        use std::os::unix::fs::PermissionsExt;
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
}
