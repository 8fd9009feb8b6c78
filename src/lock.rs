//! One run at a time per bucket and prefix on this machine.
//!
//! Two runs that change the same prefix at once are not safe: a run whose walk is older
//! deletes objects the other one has just uploaded for new files, and each aborts the
//! other's multipart uploads as strays. So a run that would change the bucket first takes
//! an exclusive `flock` on `cback3-s3sync-<bucket>-<hash of the prefix>.lock` in
//! `$XDG_RUNTIME_DIR` (or the system temporary directory); a second run finds it held and
//! stops with exit 6 before it lists, uploads or deletes anything. The kernel drops the
//! lock when the process ends, however it ends, so a stale file never blocks a run.
//! Verify-only runs change nothing and take no lock.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

use crate::bucket_url::BucketUrl;

/// Held for the whole run; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another run is already syncing {url} (lock {path} is held); nothing was done")]
    Busy { url: String, path: String },
    #[error("cannot open the run lock {path}: {error}")]
    Open { path: String, error: String },
}

/// FNV-1a: a stable name for the prefix across builds and versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The lock file for a bucket and prefix.
pub fn lock_path(url: &BucketUrl) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!(
        "cback3-s3sync-{}-{:016x}.lock",
        url.bucket,
        fnv1a(url.prefix.as_bytes())
    ))
}

/// Takes the lock for `url` without waiting.
pub fn acquire(url: &BucketUrl) -> Result<RunLock, LockError> {
    let path = lock_path(url);
    let shown = crate::walk::display_path(&path);
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .mode(0o644)
            // Never follow a link planted in a shared temporary directory.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
    };
    // A lock file made by another user can still be locked through a read-only handle.
    let file = open(true)
        .or_else(|_| open(false))
        .map_err(|e| LockError::Open {
            path: shown.clone(),
            error: e.to_string(),
        })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            LockError::Busy {
                url: url.to_string(),
                path: shown,
            }
        } else {
            LockError::Open {
                path: shown,
                error: err.to_string(),
            }
        });
    }
    Ok(RunLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_prefix_is_refused() {
        let url = BucketUrl::parse(&format!("s3://lock-test-{}/p", std::process::id())).unwrap();
        let same = BucketUrl::parse(&format!("s3://lock-test-{}/p/", std::process::id())).unwrap();
        let other = BucketUrl::parse(&format!("s3://lock-test-{}/q", std::process::id())).unwrap();
        let held = acquire(&url).unwrap();
        assert!(matches!(acquire(&same), Err(LockError::Busy { .. })));
        let elsewhere = acquire(&other).unwrap();
        drop(held);
        let again = acquire(&url).unwrap();
        for l in [again, elsewhere] {
            let _ = std::fs::remove_file(&l.path);
        }
    }
}
