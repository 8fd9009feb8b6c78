//! `--restore`: the objects under the prefix back into a directory, each checked against the
//! checksum S3 keeps for it before it takes its final name.
//!
//! The prefix is listed ([`crate::s3::listing::list`]); every key is mapped to a path the way the
//! sync maps paths to keys (`prefix + relative path joined with '/'`), refused one by one when
//! it cannot be a safe path ([`path_problem`], [`conflicting_keys`]). Directories are opened
//! component by component relative to their parent's descriptor with `O_NOFOLLOW`, so nothing
//! is written outside the target, also not through a symlink already inside it. Each file is
//! written to an unnamed file in its directory (`O_TMPFILE`; where there is none, a temporary
//! name no key can be: [`restore_temporary_name`]), hashed as it is written (large objects:
//! concurrent ranged GETs written in place, their CRCs combined), compared with the object's
//! full-object checksum (or its MD5 ETag), given its recorded owner, mode and mtime, and only
//! then given its name (`linkat`, or a rename over the old file with `--overwrite`). An
//! interrupted or killed run leaves no partial file under a final name and nothing a rerun
//! does not remove; a rerun skips what is already there (same size and mtime). At the end
//! every file counted is looked at on disk once more (`on_disk`): the counts are what is
//! there.
//! Directories are created private and get their recorded metadata after their contents
//! ([`crate::restore_dirs`]).

use std::collections::HashSet;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::checksum::{self, Hasher, Method, StoredChecksums};
use crate::display::{display_bytes, display_path};
use crate::health::Health;
use crate::metadata::Recorded;
use crate::options::Options;
use crate::progress::{self, Progress};
use crate::report::{Cause, RestoreCounts, S3Kind, Summary};
use crate::run::{failed, RunError};
use crate::s3::listing::{Listing, RemoteObject};
use crate::s3::settings::{rate_limit, show_rate, Bandwidth, Multipart, ProfileS3};
use crate::s3::{self, s3_error, OpError};
use crate::sync::walk::restore_temporary_name;
use crate::{FLOW, OUTPUT};

/// Longest file name most Linux file systems take.
const NAME_MAX: usize = 255;

/// Ranged GETs of one large object in flight at once (each also holds a `--maxConcurrency`
/// permit). Each open range keeps a connection's read buffer (up to about 400 KiB) full; on
/// the benchmark's 1 GiB restore 8 ranges were faster than 16 or 64 and used half the memory
/// of 64 (BENCHMARKS.md).
const RANGES_PER_OBJECT: usize = 8;

/// Why a key (relative to the prefix) cannot be a path under the target, if it cannot.
pub fn path_problem(rel: &str) -> Option<String> {
    if rel.contains('\0') {
        return Some("the key contains a NUL character".into());
    }
    for c in rel.split('/') {
        match c {
            "" => {
                return Some(
                    "the key has an empty path component (a leading, trailing or double '/')"
                        .into(),
                )
            }
            "." | ".." => return Some(format!("the key has a '{c}' path component")),
            c if c.len() > NAME_MAX => {
                return Some(format!(
                    "a path component is {} bytes, over the limit of {NAME_MAX}",
                    c.len()
                ))
            }
            _ => {}
        }
    }
    None
}

/// A zero-byte key ending in `/` (or the prefix itself): a directory marker (see
/// [`crate::restore_dirs`]), no file to write.
pub fn is_directory_marker(rel: &str, size: u64) -> bool {
    size == 0 && (rel.is_empty() || rel.ends_with('/'))
}

/// Keys that are also the directory of other keys (`a` beside `a/b`): a path cannot be both.
pub fn conflicting_keys<'a>(rels: impl IntoIterator<Item = &'a str> + Clone) -> HashSet<&'a str> {
    let mut dirs = HashSet::new();
    for rel in rels.clone() {
        for (i, b) in rel.bytes().enumerate() {
            if b == b'/' {
                dirs.insert(&rel[..i]);
            }
        }
    }
    rels.into_iter().filter(|r| dirs.contains(r)).collect()
}

/// One object to restore.
#[derive(Debug, Clone)]
struct Entry {
    rel: Box<str>,
    key: String,
    obj: RemoteObject,
}

fn cstring(name: &str) -> CString {
    CString::new(name).expect("keys with NUL are refused before")
}

fn last_os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// `openat(dir, name, O_DIRECTORY|O_NOFOLLOW)`.
fn open_dir_at(dir: &OwnedFd, name: &str) -> std::io::Result<OwnedFd> {
    let c = cstring(name);
    // SAFETY: a valid descriptor and a NUL-terminated name; the result is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directories on the way to the current entry, opened one component at a time from the
/// target's descriptor. Keys are visited in sorted order, so the keys under one directory come
/// together and only the chain of the current entry's ancestors stays open.
struct Dirs {
    /// (component, descriptor); the first is the target itself with an empty name.
    chain: Vec<(String, Arc<OwnedFd>)>,
    create: bool,
    /// Directories this restore created (private: see [`crate::restore_dirs`]).
    created: Vec<String>,
}

impl Dirs {
    /// The directory holding `rel`, created when missing (unless a dry run, which gives
    /// `None` for a directory that does not exist yet).
    fn parent_of(&mut self, rel: &str) -> Result<Option<Arc<OwnedFd>>, String> {
        let comps: Vec<&str> = rel.split('/').collect();
        let comps = &comps[..comps.len() - 1];
        let mut keep = 1;
        while keep < self.chain.len()
            && keep - 1 < comps.len()
            && self.chain[keep].0 == comps[keep - 1]
        {
            keep += 1;
        }
        self.chain.truncate(keep);
        for (i, c) in comps.iter().enumerate().skip(keep - 1) {
            let parent = self.chain.last().expect("the target is first").1.clone();
            if self.create {
                match crate::restore_dirs::make_private_dir(&parent, &cstring(c)) {
                    Ok(true) => self.created.push(comps[..=i].join("/")),
                    Ok(false) => {}
                    Err(e) => {
                        return Err(format!(
                            "cannot create directory {}: {e}",
                            display_bytes(comps[..=i].join("/").as_bytes())
                        ))
                    }
                }
            }
            match open_dir_at(&parent, c) {
                Ok(fd) => self.chain.push((c.to_string(), Arc::new(fd))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.create => {
                    return Ok(None)
                }
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) =>
                {
                    return Err(format!(
                        "{} exists and is a symbolic link or not a directory; nothing is written through it",
                        display_bytes(comps[..=i].join("/").as_bytes())
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "cannot open directory {}: {e}",
                        display_bytes(comps[..=i].join("/").as_bytes())
                    ))
                }
            }
        }
        Ok(Some(
            self.chain.last().expect("the target is first").1.clone(),
        ))
    }
}

/// The file a download is written to before it takes its final name: an unnamed file
/// (`O_TMPFILE`) in the final name's directory, invisible and freed by the kernel when the run
/// dies, or where the file system has no unnamed files, a file at the name of
/// [`restore_temporary_name`] (which is never a name the restore places). Removed when dropped
/// unless placed.
struct Temp {
    dir: Arc<OwnedFd>,
    /// The temporary name that leads to the file now, if any (removed when dropped): the
    /// named fallback, or an unnamed file linked there on its way to replace a file.
    name: Option<CString>,
    file: Option<Arc<std::fs::File>>,
}

/// The temporary name of `final_name` as a C string (it holds no NUL: hex and a fixed prefix).
fn temp_name(final_name: &str) -> CString {
    CString::new(restore_temporary_name(final_name)).expect("no NUL in a temporary name")
}

/// Can an unnamed file be given a name? `linkat` through `/proc/self/fd/N` needs `/proc`.
fn proc_fd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

impl Temp {
    /// An unnamed file in `dir` where the file system has them, else [`Temp::create_named`].
    fn create(dir: Arc<OwnedFd>, final_name: &str) -> std::io::Result<Temp> {
        if proc_fd_available() {
            let dot = cstring(".");
            // SAFETY: a valid descriptor and a NUL-terminated name; the result is owned below.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    dot.as_ptr(),
                    libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                    0o600 as libc::c_uint,
                )
            };
            if fd >= 0 {
                // SAFETY: fd was just opened and is owned by nothing else.
                let file = unsafe { std::fs::File::from_raw_fd(fd) };
                // Locked from the start: should it get a temporary name on its way to replace
                // a file, that name is then ours (see `claim`).
                file.try_lock().map_err(std::io::Error::other)?;
                return Ok(Temp {
                    dir,
                    name: None,
                    file: Some(Arc::new(file)),
                });
            }
            let e = last_os_error();
            // No unnamed files here (EOPNOTSUPP), or a kernel that does not know O_TMPFILE
            // (EISDIR, EINVAL): the named fallback. Anything else (no space, no permission)
            // would fail the named file too.
            if !matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) {
                return Err(e);
            }
        }
        Self::create_named(dir, final_name)
    }

    /// Creates the file at `final_name`'s temporary name (locked with `flock` while it is
    /// written), replacing one left by a run that was killed (no lock held); another restore
    /// writing the same file now is an error.
    fn create_named(dir: Arc<OwnedFd>, final_name: &str) -> std::io::Result<Temp> {
        let name = temp_name(final_name);
        let open = || {
            // SAFETY: a valid descriptor and a NUL-terminated name.
            unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDWR
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600 as libc::c_uint,
                )
            }
        };
        let mut fd = open();
        if fd < 0 && last_os_error().kind() == std::io::ErrorKind::AlreadyExists {
            if !remove_stale(&dir, &name) {
                return Err(busy());
            }
            fd = open();
        }
        if fd < 0 {
            return Err(last_os_error());
        }
        // SAFETY: fd was just opened and is owned by nothing else.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        // Between our open and our lock, another run may have taken the new file for one left
        // behind and replaced it: the name is then theirs (and is not removed on the way out).
        if !claim(&dir, &name, &file) {
            return Err(busy());
        }
        Ok(Temp {
            dir,
            name: Some(name),
            file: Some(Arc::new(file)),
        })
    }

    fn file(&self) -> &Arc<std::fs::File> {
        self.file.as_ref().expect("open until placed")
    }

    /// `linkat` of the unnamed file to `to` in its directory (through `/proc/self/fd`, which
    /// needs no capability). Fails with `AlreadyExists` if `to` exists: never replaces.
    fn link_unnamed(&self, to: &CString) -> std::io::Result<()> {
        let from = CString::new(format!("/proc/self/fd/{}", self.file().as_raw_fd()))
            .expect("no NUL in a number");
        // SAFETY: valid descriptors and NUL-terminated names.
        let r = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                self.dir.as_raw_fd(),
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if r != 0 {
            return Err(last_os_error());
        }
        Ok(())
    }

    /// Gives the file the name `final_name` in its directory. `replace` false: fails with
    /// `AlreadyExists` if something took the name meanwhile. `replace` true: an unnamed file
    /// first gets its temporary name, then is renamed over the final one (an atomic replace:
    /// the old file or the new one is there at every moment).
    /// The file stays open (locked) until it is placed: another run finding a temporary name
    /// unlocked would take it for one left behind.
    fn place(mut self, final_name: &str, replace: bool) -> std::io::Result<()> {
        let to = cstring(final_name);
        if self.name.is_none() && !replace {
            self.link_unnamed(&to)?;
            self.file = None;
            return Ok(());
        }
        if self.name.is_none() {
            let name = temp_name(final_name);
            let mut linked = self.link_unnamed(&name);
            if linked
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
            {
                if !remove_stale(&self.dir, &name) {
                    return Err(busy());
                }
                linked = self.link_unnamed(&name);
            }
            linked?;
            self.name = Some(name);
        }
        let from = self.name.as_ref().expect("named by now");
        let d = self.dir.as_raw_fd();
        let flags = if replace { 0 } else { libc::RENAME_NOREPLACE };
        // SAFETY: valid descriptor and NUL-terminated names.
        let mut r = unsafe { libc::renameat2(d, from.as_ptr(), d, to.as_ptr(), flags) };
        if r != 0 && last_os_error().raw_os_error() == Some(libc::EINVAL) && !replace {
            // A file system without RENAME_NOREPLACE: link (which never replaces), then unlink.
            // SAFETY: as above.
            r = unsafe { libc::linkat(d, from.as_ptr(), d, to.as_ptr(), 0) };
            if r == 0 {
                // SAFETY: as above.
                unsafe { libc::unlinkat(d, from.as_ptr(), 0) };
            }
        } else if r != 0 && last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // SAFETY: as above.
            r = unsafe { libc::renameat(d, from.as_ptr(), d, to.as_ptr()) };
        }
        if r != 0 {
            return Err(last_os_error());
        }
        self.name = None;
        self.file = None;
        Ok(())
    }
}

fn busy() -> std::io::Error {
    std::io::Error::other("another restore is writing this file now")
}

impl Drop for Temp {
    /// Removes the temporary name while the file is still open and locked (the file closes
    /// after). An unnamed file has nothing to remove: the kernel frees it on close.
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            // SAFETY: valid descriptor and NUL-terminated name.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) };
        }
    }
}

/// `fstatat(dir, name)` without following a symlink at `name`.
fn stat_at(dir: &OwnedFd, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, valid out-pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(last_os_error());
    }
    Ok(st)
}

/// Is `name` in `dir` the file open as `file`?
fn names(dir: &OwnedFd, name: &CString, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    stat_at(dir, name).is_ok_and(|st| {
        file.metadata()
            .is_ok_and(|m| m.dev() == st.st_dev && m.ino() == st.st_ino)
    })
}

/// Locks a temporary file just created and checks its name still leads to it. The protocol:
/// only the holder of the lock on the file at a temporary name removes or renames that name.
fn claim(dir: &OwnedFd, name: &CString, file: &std::fs::File) -> bool {
    file.try_lock().is_ok() && names(dir, name, file)
}

/// Removes what is at a temporary name when no running restore holds it (left by a run that
/// was killed): under that file's lock, and only if the name still leads to it. False: a
/// running restore holds it. Something other than a regular file there (a FIFO, a device)
/// is never a restore's and is never opened (opening a device can act on it); unlinkat
/// removes a symlink itself, never its target.
fn remove_stale(dir: &OwnedFd, name: &CString) -> bool {
    let Ok(st) = stat_at(dir, name) else {
        return true;
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        // SAFETY: valid descriptor and NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
        return true;
    }
    // SAFETY: valid descriptor and NUL-terminated name; the result is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        // Gone meanwhile (or replaced by something that is not a file): the exclusive
        // create that follows tells.
        return true;
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if file.try_lock().is_err() {
        return false;
    }
    if names(dir, name, &file) {
        // SAFETY: valid descriptor and NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    }
    true
}

/// What is at a final name now.
enum Local {
    Absent,
    File { size: u64, mtime_ns: i128 },
    Directory,
    Other,
}

fn local_state(dir: &OwnedFd, name: &str) -> std::io::Result<Local> {
    let st = match stat_at(dir, &cstring(name)) {
        Ok(st) => st,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Local::Absent),
        Err(e) => return Err(e),
    };
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Local::File {
            size: st.st_size as u64,
            mtime_ns: crate::metadata::from_parts(st.st_mtime, st.st_mtime_nsec),
        },
        libc::S_IFDIR => Local::Directory,
        _ => Local::Other,
    })
}

/// Same mtime: equal to the nanosecond, or to the second on a file system that keeps no
/// fractions (the local value then has none).
fn same_mtime(local: i128, wanted: i128) -> bool {
    local == wanted
        || (local.rem_euclid(1_000_000_000) == 0
            && local == wanted - wanted.rem_euclid(1_000_000_000))
}

/// The permission bits of a restored file whose object records no mode (the original's and
/// other tools' objects): owner only, 0600, less what the umask also removes. Nothing says
/// who may read it, and an exposure cannot be undone once another user has read the file
/// (a restored `/etc/shadow`, a key under `/home`), while a mode too tight is seen at once
/// and fixed with chmod; directories without a marker get 0700 for the same reason.
fn default_mode() -> u32 {
    let from_proc = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        });
    let umask = from_proc.unwrap_or_else(|| {
        // SAFETY: umask only swaps the process's mask; it is put back at once.
        unsafe {
            let old = libc::umask(0o022);
            libc::umask(old);
            old as u32
        }
    });
    0o600 & !umask
}

/// What a HeadObject or GetObject told about the object.
struct ObjectInfo {
    size: u64,
    stored: StoredChecksums,
    recorded: Recorded,
    /// Recorded values that cannot be used (one WARNING for the object).
    unusable: Vec<String>,
    etag: Option<String>,
}

async fn head(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<(ObjectInfo, Option<String>), OpError> {
    let h = s3::head_object(client, bucket, key).await?;
    let (recorded, unusable) = Recorded::from_metadata(h.metadata());
    let info = ObjectInfo {
        size: h.content_length().unwrap_or(0).max(0) as u64,
        stored: s3::stored_checksums(&h),
        recorded,
        unusable,
        etag: h.e_tag().map(str::to_string),
    };
    Ok((info, h.restore().map(str::to_string)))
}

/// What happened to one object.
enum Done {
    Restored {
        bytes: u64,
        method: Option<&'static str>,
        /// Recorded metadata that could not be read or applied (the file is in place).
        unusable: Vec<String>,
        /// No mode was recorded: the file got the private default.
        mode_defaulted: bool,
    },
    Unchanged,
    Conflict(String),
    Archived(String),
    /// Failed, and why: an S3 cause when S3 refused or did not answer.
    Failed(Cause, String),
    Interrupted,
}

/// How the restore moves data: the settings that shape the sync's uploads, applied to its
/// downloads (`--maxConcurrency` / `max_concurrent_requests`, `--maxBandwidth` /
/// `max_bandwidth`, `multipart_threshold` / `multipart_chunksize`).
struct Transfer {
    concurrency: usize,
    /// Objects of `threshold` bytes or more come down as ranged GETs of `part_size` bytes.
    multipart: Multipart,
    bandwidth: Option<Arc<Bandwidth>>,
}

impl Transfer {
    /// The switches first, then the profile's `s3` settings, then the defaults (as the sync).
    fn resolve(opts: &Options, s3: &ProfileS3) -> Transfer {
        let concurrency = opts
            .max_concurrency
            .or(s3.max_concurrent_requests)
            .unwrap_or_else(|| opts.concurrency());
        let multipart = Multipart::from_profile(s3);
        let rate = rate_limit(s3, opts.max_bandwidth);
        if let Some((r, from)) = &rate {
            log::info!(target: FLOW, "Downloads limited to {} in all ({from}).", show_rate(*r));
        }
        log::debug!(target: FLOW, "{concurrency} requests at a time; ranged downloads from {} bytes, ranges of {} bytes", multipart.threshold, multipart.part_size);
        Transfer {
            concurrency,
            multipart,
            bandwidth: rate.map(|(r, _)| Arc::new(Bandwidth::new(r))),
        }
    }
}

/// Waits until the bandwidth limit (if any) lets `n` more bytes through.
async fn pace(bandwidth: &Option<Arc<Bandwidth>>, n: usize) {
    if let Some(bw) = bandwidth {
        bw.take(n as u64).await;
    }
}

/// What every download shares.
struct Ctx {
    client: Client,
    url: BucketUrl,
    target: PathBuf,
    limit: Arc<Semaphore>,
    /// Files in flight, as many as requests: a large object gives back its request permit
    /// once its ranges start, and without this the loop would start every large object at
    /// once (a temporary file open for each; none left "not attempted" when the endpoint
    /// stops answering).
    files: Arc<Semaphore>,
    multipart: Multipart,
    bandwidth: Option<Arc<Bandwidth>>,
    cancel: CancellationToken,
    overwrite: bool,
    dry_run: bool,
    progress: Arc<Progress>,
    default_mode: u32,
    as_root: bool,
    /// The restore's tracker: ranged GETs run in their own tasks and report to it too.
    health: Arc<Health>,
}

impl Ctx {
    fn shown_path(&self, rel: &str) -> String {
        display_path(&self.target.join(rel))
    }
    fn shown_url(&self, key: &str) -> String {
        self.url.show_key(key)
    }
}

fn io_failed(what: &str, e: impl std::fmt::Display) -> Done {
    Done::Failed(Cause::LocalIo, format!("{what}: {e}"))
}

/// Restores one object; `dir` is its directory (`None`: does not exist yet, dry run only).
async fn restore_one(
    ctx: Arc<Ctx>,
    e: Entry,
    dir: Option<Arc<OwnedFd>>,
    permit: Option<OwnedSemaphorePermit>,
) -> Done {
    let name = e.rel.rsplit('/').next().unwrap_or(&e.rel).to_string();
    let local = match &dir {
        Some(d) => match local_state(d, &name) {
            Ok(l) => l,
            Err(err) => return io_failed("cannot look at the local file", err),
        },
        None => Local::Absent,
    };
    // A temporary name of this file left by a killed run (one that was placing it with
    // --overwrite, or one on a file system without unnamed files): removed unless a running
    // restore holds it.
    if let (Some(d), false) = (&dir, ctx.dry_run) {
        remove_stale(d, &temp_name(&name));
    }
    // Archive classes: readable only once an S3 restore request made a copy.
    let mut known: Option<ObjectInfo> = None;
    if let Some(class) = e.obj.archived {
        match head(&ctx.client, &ctx.url.bucket, &e.key).await {
            Ok((info, restore)) => {
                let ready = restore
                    .as_deref()
                    .is_some_and(|r| r.contains("ongoing-request=\"false\""));
                if !ready {
                    let state = if restore.is_some() {
                        "a restore request is still in progress"
                    } else {
                        "an S3 restore request (RestoreObject, or the console's \"Initiate restore\") is needed first"
                    };
                    return Done::Archived(format!(
                        "the object is in the {class} storage class and cannot be read yet: {state}"
                    ));
                }
                known = Some(info);
            }
            Err(err) => return Done::Failed(err.cause(), err.to_string()),
        }
    }
    let replace = match local {
        Local::Absent => false,
        Local::Directory => {
            return Done::Failed(Cause::LocalIo, "a directory has the file's name; not replaced".into())
        }
        Local::File { size, mtime_ns } => {
            let mut why = None;
            if size != e.obj.size {
                why = Some(format!("local {size} bytes, object {} bytes", e.obj.size));
            } else {
                if known.is_none() {
                    match head(&ctx.client, &ctx.url.bucket, &e.key).await {
                        Ok((info, _)) => known = Some(info),
                        Err(err) => return Done::Failed(err.cause(), err.to_string()),
                    }
                }
                let wanted = known
                    .as_ref()
                    .and_then(|i| i.recorded.mtime_ns)
                    .unwrap_or(i128::from(e.obj.last_modified_ns));
                if !same_mtime(mtime_ns, wanted) {
                    why = Some("same size, different modification time".into());
                }
            }
            match why {
                None => return Done::Unchanged,
                Some(w) if !ctx.overwrite => {
                    return Done::Conflict(format!(
                        "the local file differs from the object ({w}); not overwritten (--overwrite replaces it)"
                    ))
                }
                Some(_) => true,
            }
        }
        Local::Other if !ctx.overwrite => {
            return Done::Conflict(
                "something other than a regular file (a symlink, say) has the file's name; not replaced (--overwrite replaces it, never writing through it)".into(),
            )
        }
        Local::Other => true,
    };
    if ctx.dry_run {
        log::info!(target: FLOW, "(dryrun) download: {} to {}", ctx.shown_url(&e.key), ctx.shown_path(&e.rel));
        return Done::Restored {
            bytes: e.obj.size,
            method: None,
            unusable: Vec::new(),
            mode_defaulted: false,
        };
    }
    let Some(dir) = dir else {
        return Done::Failed(Cause::LocalIo, "the directory is missing".into());
    };
    log::info!(target: OUTPUT, "download: {} to {}", ctx.shown_url(&e.key), ctx.shown_path(&e.rel));
    let temp = match Temp::create(dir, &name) {
        Ok(t) => t,
        Err(err) => return io_failed("cannot create a temporary file", err),
    };
    let fetched = if e.obj.size >= ctx.multipart.threshold {
        fetch_ranges(&ctx, &e, &temp, known, permit).await
    } else {
        let r = fetch_whole(&ctx, &e, &temp).await;
        drop(permit);
        r
    };
    let (info, method, got) = match fetched {
        Ok(x) => x,
        Err(d) => return d,
    };
    if info.size != e.obj.size {
        return Done::Failed(
            Cause::Verification,
            format!(
                "the object changed since it was listed ({} bytes, now {}); run the restore again",
                e.obj.size, info.size
            ),
        );
    }
    if let (Some(m), Some(got)) = (&method, &got) {
        if got != m.expected() {
            return Done::Failed(Cause::Verification, format!(
                "content differs: {} of the downloaded data is {got} but the object has {}; not put in place",
                m.name(),
                m.expected()
            ));
        }
    }
    let mtime = info
        .recorded
        .mtime_ns
        .unwrap_or(i128::from(e.obj.last_modified_ns));
    let mode_defaulted = info.recorded.mode.is_none();
    let mode = info.recorded.mode.unwrap_or(ctx.default_mode);
    let mut unusable = info.unusable;
    unusable.extend(crate::restore_dirs::apply_recorded(
        temp.file(),
        Some(mtime),
        Some(mode),
        &info.recorded,
        ctx.as_root,
    ));
    if let Err(err) = temp.place(&name, replace) {
        return if err.kind() == std::io::ErrorKind::AlreadyExists {
            Done::Conflict(
                "a file with that name appeared during the restore; not overwritten".into(),
            )
        } else {
            io_failed("cannot rename the file into place", err)
        };
    }
    ctx.progress.add_file();
    Done::Restored {
        bytes: info.size,
        method: method.map(|m| m.name()),
        unusable,
        mode_defaulted,
    }
}

type Fetched = Result<(ObjectInfo, Option<Method>, Option<String>), Done>;

fn interrupted_or(ctx: &Ctx, d: Done) -> Done {
    if ctx.cancel.is_cancelled() {
        Done::Interrupted
    } else {
        d
    }
}

/// One GetObject (checksum mode on), written and hashed chunk by chunk.
async fn fetch_whole(ctx: &Ctx, e: &Entry, temp: &Temp) -> Fetched {
    let out = ctx
        .client
        .get_object()
        .bucket(&ctx.url.bucket)
        .key(&e.key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|err| get_error(ctx, &e.key, &err))?;
    log::debug!(target: OUTPUT, "GetObject {}", ctx.shown_url(&e.key));
    let (recorded, unusable) = Recorded::from_metadata(out.metadata());
    let info = ObjectInfo {
        size: out.content_length().unwrap_or(0).max(0) as u64,
        stored: StoredChecksums {
            crc64nvme: out.checksum_crc64_nvme().map(str::to_string),
            crc32: out.checksum_crc32().map(str::to_string),
            crc32c: out.checksum_crc32_c().map(str::to_string),
            checksum_type: out.checksum_type().map(|t| t.as_str().to_string()),
            etag: out.e_tag().map(str::to_string),
            sse: out.server_side_encryption().map(|x| x.as_str().to_string()),
        },
        recorded,
        unusable,
        etag: out.e_tag().map(str::to_string),
    };
    let method = checksum::choose(&info.stored);
    let mut hasher = method.as_ref().map(Hasher::new);
    let mut body = out.body;
    let mut file: &std::fs::File = temp.file();
    let mut written = 0u64;
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => {
                pace(&ctx.bandwidth, chunk.len()).await;
                if let Err(err) = file.write_all(&chunk) {
                    return Err(io_failed("cannot write the temporary file", err));
                }
                if let Some(h) = &mut hasher {
                    h.update(&chunk);
                }
                written += chunk.len() as u64;
                ctx.progress.add_bytes(chunk.len() as u64);
            }
            Ok(None) => break,
            Err(err) => {
                crate::health::transport_failure();
                return Err(interrupted_or(
                    ctx,
                    Done::Failed(
                        Cause::S3(S3Kind::NoAnswer),
                        format!("GetObject {}: {err}", display_bytes(e.key.as_bytes())),
                    ),
                ));
            }
        }
    }
    if written != info.size {
        return Err(Done::Failed(
            Cause::S3(S3Kind::NoAnswer),
            format!(
                "GetObject gave {written} bytes where the object has {}",
                info.size
            ),
        ));
    }
    let got = hasher.map(Hasher::finish);
    Ok((info, method, got))
}

fn get_error<E, R>(ctx: &Ctx, key: &str, err: &aws_sdk_s3::error::SdkError<E, R>) -> Done
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let e = s3_error("GetObject", key, err);
    if e.code.as_deref() == Some("InvalidObjectState") {
        return Done::Archived(format!(
            "the object is archived (an archive storage class or tier) and cannot be read until an S3 restore request made a copy available ({})",
            e.detail
        ));
    }
    interrupted_or(ctx, Done::Failed(e.cause, e.to_string()))
}

/// A large object: HeadObject, then ranged GETs (one permit each, pinned to the ETag) written
/// in place. Each range is hashed as it arrives and the CRCs are combined into the whole's;
/// only an MD5 (a large single-part object of another tool) needs the file read back.
/// `permit` (the file's request permit) is held through the HeadObject, then given back.
async fn fetch_ranges(
    ctx: &Ctx,
    e: &Entry,
    temp: &Temp,
    known: Option<ObjectInfo>,
    permit: Option<OwnedSemaphorePermit>,
) -> Fetched {
    let info = match known {
        Some(i) => i,
        None => match head(&ctx.client, &ctx.url.bucket, &e.key).await {
            Ok((i, _)) => i,
            Err(err) => {
                return Err(interrupted_or(
                    ctx,
                    Done::Failed(err.cause(), err.to_string()),
                ))
            }
        },
    };
    drop(permit);
    let size = info.size;
    let psize = s3::part_size(size, ctx.multipart.part_size);
    let count = size.div_ceil(psize);
    let file = temp.file().clone();
    if let Err(err) = file.set_len(size) {
        return Err(io_failed("cannot size the temporary file", err));
    }
    let method = checksum::choose(&info.stored);
    let crc = method
        .as_ref()
        .filter(|m| !matches!(m, Method::Md5(_)))
        .cloned();
    let mut pieces: Vec<(u64, u64)> = vec![(0, 0); count as usize];
    let mut tasks: JoinSet<Result<(usize, u64, u64), Done>> = JoinSet::new();
    let mut next = 0u64;
    let mut first_error: Option<Done> = None;
    loop {
        while next < count && first_error.is_none() && tasks.len() < RANGES_PER_OBJECT {
            let permit = match ctx.limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) if tasks.is_empty() => tokio::select! {
                    _ = ctx.cancel.cancelled() => { first_error = Some(Done::Interrupted); break }
                    p = ctx.limit.clone().acquire_owned() => p.expect("semaphore closed"),
                },
                Err(_) => break,
            };
            let offset = next * psize;
            let len = psize.min(size - offset);
            let req = ctx
                .client
                .get_object()
                .bucket(&ctx.url.bucket)
                .key(&e.key)
                .range(format!("bytes={offset}-{}", offset + len - 1))
                .set_if_match(info.etag.clone());
            let (file, key, progress) = (file.clone(), e.key.clone(), ctx.progress.clone());
            let bandwidth = ctx.bandwidth.clone();
            let pinned = info.etag.clone();
            let mut hasher = crc.as_ref().map(Hasher::new);
            let index = next as usize;
            tasks.spawn(crate::health::scope(ctx.health.clone(), async move {
                let _permit = permit;
                let out = req
                    .send()
                    .await
                    .map_err(|err| {
                        let e = s3_error("GetObject", &key, &err);
                        Done::Failed(e.cause, e.to_string())
                    })?;
                // If-Match pins the range to the object the HeadObject saw; a server that
                // ignores it still names the version it sent.
                if let (Some(want), Some(got)) = (&pinned, out.e_tag()) {
                    if want != got {
                        return Err(Done::Failed(Cause::Verification, format!(
                            "the object changed during its download (ETag {want}, now {got}); not put in place, run the restore again"
                        )));
                    }
                }
                let mut body = out.body;
                let mut at = offset;
                while let Some(chunk) = body.try_next().await.map_err(|err| {
                    crate::health::transport_failure();
                    Done::Failed(Cause::S3(S3Kind::NoAnswer), format!(
                        "GetObject {}: {err}",
                        display_bytes(key.as_bytes())
                    ))
                })? {
                    pace(&bandwidth, chunk.len()).await;
                    if at + chunk.len() as u64 > offset + len {
                        return Err(Done::Failed(Cause::S3(S3Kind::Service),
                            "GetObject gave more bytes than asked for".into(),
                        ));
                    }
                    file.write_all_at(&chunk, at)
                        .map_err(|err| io_failed("cannot write the temporary file", err))?;
                    if let Some(h) = &mut hasher {
                        h.update(&chunk);
                    }
                    at += chunk.len() as u64;
                    progress.add_bytes(chunk.len() as u64);
                }
                if at != offset + len {
                    return Err(Done::Failed(Cause::S3(S3Kind::NoAnswer), format!(
                        "GetObject gave {} bytes of a {len}-byte range",
                        at - offset
                    )));
                }
                let value = hasher.and_then(Hasher::finish_crc).unwrap_or(0);
                Ok((index, value, len))
            }));
            next += 1;
        }
        if tasks.is_empty() {
            break;
        }
        let joined = tokio::select! {
            _ = ctx.cancel.cancelled() => {
                first_error.get_or_insert(Done::Interrupted);
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
            j = tasks.join_next() => j,
        };
        match joined {
            Some(Ok(Ok((index, value, len)))) => pieces[index] = (value, len),
            None => {}
            Some(Ok(Err(d))) => {
                first_error.get_or_insert(interrupted_or(ctx, d));
                tasks.abort_all();
            }
            Some(Err(j)) if j.is_cancelled() => {}
            Some(Err(j)) => {
                first_error.get_or_insert(Done::Failed(
                    Cause::Internal,
                    format!("download task failed: {j}"),
                ));
            }
        }
        if next >= count && tasks.is_empty() {
            break;
        }
    }
    if let Some(d) = first_error {
        return Err(d);
    }
    let got = match &method {
        Some(m) if crc.is_some() => checksum::combine_crcs(m, &pieces),
        Some(m) => {
            let (m, file) = (m.clone(), file.clone());
            let hashed = tokio::task::spawn_blocking(move || {
                checksum::digest_reader(ReadAt { file: &file, at: 0 }, &m)
            })
            .await;
            match hashed {
                Ok(Ok(v)) => Some(v),
                Ok(Err(err)) => return Err(io_failed("cannot read the temporary file back", err)),
                Err(err) => {
                    return Err(Done::Failed(
                        Cause::Internal,
                        format!("hash task failed: {err}"),
                    ))
                }
            }
        }
        None => None,
    };
    Ok((info, method, got))
}

/// Reads a file from an offset with `pread`, leaving the descriptor's position alone.
struct ReadAt<'a> {
    file: &'a std::fs::File,
    at: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// What the phases of a restore returned, as far as it got.
#[derive(Default)]
struct Phases {
    /// The restore phase's counts and failures, if it ran.
    restored: Option<(RestoreCounts, Vec<(String, String)>)>,
    durations: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// The restore's summary, assembled from what its phases did.
    fn summary(self) -> Summary {
        let mut summary = Summary {
            phases: self.durations,
            ..Summary::default()
        };
        if let Some((c, failures)) = self.restored {
            summary.failed = c.problems();
            summary.content_verified = c.checksum_verified;
            summary.content_unverifiable = c.size_only;
            summary.failures = failures;
            summary.restore = Some(c);
        }
        summary
    }
}

/// [`run`] with the reason a restore stopped, for front ends that raise it, and the summary
/// of what it did (also when it failed).
pub async fn run_phases(
    opts: &Options,
    cancel: &CancellationToken,
) -> (Summary, Result<(), RunError>) {
    let mut phases = Phases::default();
    let result = run_collecting(opts, cancel, &mut phases).await;
    (phases.summary(), result)
}

async fn run_collecting(
    opts: &Options,
    cancel: &CancellationToken,
    phases: &mut Phases,
) -> Result<(), RunError> {
    let (Some(target), Some(raw)) = (opts.source_dir.clone(), opts.s3_bucket_url.as_deref()) else {
        return Err(failed(
            Cause::BadInput,
            "Target directory and S3 bucket URL are both required.".into(),
        ));
    };
    let url = BucketUrl::parse(raw).map_err(|e| failed(Cause::BadInput, e.to_string()))?;
    log::info!(target: FLOW, "Restoring {url} into {}{}.", display_path(&target), if opts.dry_run { " (dry run)" } else { "" });
    let started = Instant::now();
    let (client, endpoint, s3_settings) = s3::client_for_run()
        .await
        .map_err(|e| failed(Cause::Config, e))?;
    let transfer = Transfer::resolve(opts, &s3_settings);
    // The same lock as a sync of the prefix: a sync running under it would delete or replace
    // objects this restore has listed (each a failed file here), so the two never overlap.
    let _lock = crate::lock::acquire(&crate::lock::Target::new(endpoint.as_deref(), &url))?;
    let listing = crate::s3::listing::list(&client, &url, cancel).await?;
    if listing.is_empty() {
        return Err(failed(
            Cause::BadInput,
            nothing_to_restore(&client, &url).await,
        ));
    }
    // Created only now: a mistyped URL leaves no empty target behind.
    let root = open_target(&target, opts.dry_run)?;
    phases.durations.push(("prepare", started.elapsed()));
    let started = Instant::now();
    let Restored {
        counts: c,
        failures,
        cause: first_cause,
        result,
    } = restore_listing(
        &client, &url, &target, root, listing, opts, &transfer, cancel,
    )
    .await;
    phases.durations.push(("restore", started.elapsed()));
    phases.restored = Some((c.clone(), failures));
    result?;
    if c.not_attempted > 0 {
        return Err(failed(
            Cause::S3(S3Kind::NoAnswer),
            crate::health::stopped_answering(c.failed, c.not_attempted, "downloads"),
        ));
    }
    let (would, dry) = if opts.dry_run {
        ("would be restored", "(dryrun) ")
    } else {
        ("restored", "")
    };
    log::info!(target: FLOW, "{dry}{} files {would} ({} bytes), {} already present and unchanged, {} directory markers.", c.restored, c.restored_bytes, c.unchanged, c.directory_markers);
    if !opts.dry_run {
        log::info!(target: FLOW, "{} files found on disk as restored at the end, {} missing.", c.verified, c.missing);
    }
    if c.size_only > 0 {
        log::warn!(target: FLOW, "{} files were checked by size only: their objects carry no whole-object checksum and no MD5 ETag.", c.size_only);
    }
    if c.problems() > 0 {
        // Failed downloads or writes first (S3's cause when S3 refused or did not answer),
        // then files gone from disk; otherwise what was refused needs the admin's eye.
        let cause = if c.failed > 0 {
            first_cause.unwrap_or(Cause::LocalIo)
        } else if c.missing > 0 {
            Cause::LocalIo
        } else {
            Cause::BadInput
        };
        let first = match first_cause {
            Some(cause) if c.failed > 0 => format!("; the first failure: {}", cause_words(cause)),
            _ => String::new(),
        };
        return Err(failed(cause, format!(
            "{} objects under {url} were not restored ({} unsafe keys, {} archived, {} differing local files, {} failures, {} missing from disk at the end){first}.",
            c.problems(),
            c.refused,
            c.archived,
            c.conflicts,
            c.failed,
            c.missing
        )));
    }
    log::info!(target: FLOW, "Completed restoring {url} into {}.", display_path(&target));
    Ok(())
}

/// What kind of failure a download or write was, for the run's last line: S3's refusal or
/// silence is told apart from a local file that could not be written.
fn cause_words(cause: Cause) -> &'static str {
    match cause {
        Cause::S3(S3Kind::AccessDenied) => "S3 denied access",
        Cause::S3(S3Kind::NoAnswer) => "S3 did not answer",
        Cause::S3(S3Kind::NoSuchBucket) => "S3 has no such bucket",
        Cause::S3(S3Kind::Service) => "S3 answered with an error",
        Cause::LocalIo => "a local file or directory could not be written",
        Cause::Verification => "the downloaded content did not match the object",
        Cause::Config => "the S3 configuration",
        Cause::Interrupted => "interrupted",
        Cause::BadInput => "bad input",
        Cause::LockBusy => "another run holds the lock",
        Cause::Internal => "an internal failure",
    }
}

/// The one line a restore of a prefix without objects fails with: restoring nothing is never
/// what a disaster recovery meant (a mistyped bucket or prefix; keys are case-sensitive). A URL
/// naming one object is said to be one.
async fn nothing_to_restore(client: &Client, url: &BucketUrl) -> String {
    let key = url.prefix.trim_end_matches('/');
    let one_object = !key.is_empty() && s3::head_object(client, &url.bucket, key).await.is_ok();
    if one_object {
        format!("s3://{}/{key} is one object, not a prefix: nothing to restore under it. Restore the prefix that holds it.", url.bucket)
    } else {
        format!("No objects under {url}: nothing to restore. Check the bucket and the prefix (keys are case-sensitive).")
    }
}

/// The target directory, created when missing (not in a dry run: then `None` when missing).
fn open_target(target: &Path, dry_run: bool) -> Result<Option<Arc<OwnedFd>>, RunError> {
    if !dry_run {
        use std::os::unix::fs::DirBuilderExt;
        // Private, as every directory the restore creates (see `crate::restore_dirs`).
        let mut builder = std::fs::DirBuilder::new();
        builder
            .recursive(true)
            .mode(crate::restore_dirs::PRIVATE_DIR_MODE);
        builder.create(target).map_err(|e| {
            failed(
                Cause::LocalIo,
                format!(
                    "Cannot create the target directory {}: {e}",
                    display_path(target)
                ),
            )
        })?;
    }
    let c = CString::new(target.as_os_str().as_bytes()).map_err(|_| {
        failed(
            Cause::BadInput,
            format!(
                "The target directory {} has a NUL byte.",
                display_path(target)
            ),
        )
    })?;
    // SAFETY: NUL-terminated path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = last_os_error();
        if dry_run && e.kind() == std::io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(failed(
            Cause::LocalIo,
            format!(
                "Cannot open the target directory {}: {e}",
                display_path(target)
            ),
        ));
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(Some(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })))
}

#[allow(clippy::too_many_arguments)]
async fn restore_listing(
    client: &Client,
    url: &BucketUrl,
    target: &Path,
    root: Option<Arc<OwnedFd>>,
    listing: Listing,
    opts: &Options,
    transfer: &Transfer,
    cancel: &CancellationToken,
) -> Restored {
    let mut c = RestoreCounts {
        objects: listing.len(),
        ..RestoreCounts::default()
    };
    let counts = &mut c;
    let mut rels: Vec<(&str, &RemoteObject)> = listing.iter().map(|(k, o)| (&**k, o)).collect();
    rels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let shown = |rel: &str| url.show(rel);
    let mut summary_failures: Vec<(String, String)> = Vec::new();
    // A marker `a/` makes `a` a directory as much as a key `a/b` does.
    let both = conflicting_keys(rels.iter().map(|(r, _)| *r));
    let mut entries = Vec::new();
    let mut marked_dirs = Vec::new();
    for (rel, obj) in &rels {
        if is_directory_marker(rel, obj.size) {
            counts.directory_markers += 1;
            let dir = rel.strip_suffix('/').unwrap_or(rel);
            match path_problem(dir) {
                _ if rel.is_empty() => {}
                Some(why) => {
                    log::error!(target: FLOW, "Refusing directory marker {}: {why}; it is not restored.", shown(rel));
                    counts.refused += 1;
                    summary_failures.push((shown(rel), format!("unsafe key: {why}")));
                }
                None => marked_dirs.push(dir.to_string()),
            }
            continue;
        }
        let problem = path_problem(rel).or_else(|| {
            both.contains(rel).then(|| {
                "other keys use this name as a directory (a path cannot be both a file and a directory)".to_string()
            })
        });
        if let Some(why) = problem {
            log::error!(target: FLOW, "Refusing object {}: {why}; it is not restored.", shown(rel));
            counts.refused += 1;
            summary_failures.push((shown(rel), format!("unsafe key: {why}")));
            continue;
        }
        entries.push(Entry {
            rel: (*rel).into(),
            key: url.key(rel),
            obj: **obj,
        });
    }
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        url: url.clone(),
        target: target.to_path_buf(),
        limit: Arc::new(Semaphore::new(transfer.concurrency.max(1))),
        files: Arc::new(Semaphore::new(transfer.concurrency.max(1))),
        multipart: transfer.multipart,
        bandwidth: transfer.bandwidth.clone(),
        cancel: cancel.clone(),
        overwrite: opts.overwrite,
        dry_run: opts.dry_run,
        progress: Progress::new(
            entries.len() as u64,
            entries.iter().map(|e| e.obj.size).sum(),
        ),
        default_mode: default_mode(),
        // SAFETY: geteuid has no preconditions.
        as_root: unsafe { libc::geteuid() } == 0,
        health: Health::new(),
    });
    let shown_progress = progress::Display::start("Restoring", ctx.progress.clone());
    let mut dirs = root.clone().map(|r| Dirs {
        chain: vec![(String::new(), r)],
        create: !opts.dry_run,
        created: Vec::new(),
    });
    let mut tasks: JoinSet<(usize, Done)> = JoinSet::new();
    let mut interrupted = false;
    // What each entry left on disk (restored, or already there), for the check at the end.
    let mut placed: Vec<Option<Placed>> = vec![None; entries.len()];
    let mut first_cause: Option<Cause> = None;
    let mut record = |counts: &mut RestoreCounts, idx: Option<usize>, e: &Entry, done: Done| {
        let name = ctx.shown_path(&e.rel);
        let mut fail = |kind: &str, why: String, counter: &mut usize| {
            log::error!(target: FLOW, "{kind} {name}: {why}");
            *counter += 1;
            summary_failures.push((name.clone(), why));
        };
        match done {
            Done::Restored {
                bytes,
                method,
                unusable,
                mode_defaulted,
            } => {
                ctx.health.answered();
                counts.files_defaulted += usize::from(mode_defaulted);
                if !unusable.is_empty() {
                    counts.metadata_warnings += 1;
                    log::warn!(target: FLOW, "Restored {name} without all of its recorded metadata: {}.", unusable.join("; "));
                }
                counts.restored += 1;
                counts.restored_bytes += bytes;
                if let Some(i) = idx {
                    placed[i] = Some(Placed::Restored {
                        bytes,
                        checksum: method.is_some(),
                    });
                }
                match method {
                    Some(_) => counts.checksum_verified += 1,
                    None if !ctx.dry_run => {
                        counts.size_only += 1;
                        log::warn!(target: FLOW, "Restored {name} checked by size only: the object has no whole-object checksum and its ETag is not an MD5 (multipart upload by another tool, or SSE-KMS).");
                    }
                    None => {}
                }
            }
            Done::Unchanged => {
                counts.unchanged += 1;
                if let Some(i) = idx {
                    placed[i] = Some(Placed::Unchanged);
                }
                ctx.progress.add_file();
                ctx.progress.add_bytes(e.obj.size);
                if ctx.dry_run {
                    log::info!(target: FLOW, "(dryrun) skip: {name} (already restored)");
                } else {
                    log::debug!(target: FLOW, "Unchanged: {name}");
                }
            }
            Done::Conflict(why) => fail("Not restoring", why, &mut counts.conflicts),
            Done::Archived(why) => fail("Cannot restore", why, &mut counts.archived),
            Done::Failed(cause, why) => {
                first_cause.get_or_insert(cause);
                fail("Failed to restore", why, &mut counts.failed)
            }
            Done::Interrupted => {}
        }
    };
    for (idx, e) in entries.iter().enumerate() {
        let dir = match dirs.as_mut().map(|d| d.parent_of(&e.rel)) {
            None => None,
            Some(Ok(d)) => d,
            Some(Err(why)) => {
                record(counts, Some(idx), e, Done::Failed(Cause::LocalIo, why));
                continue;
            }
        };
        // The file's slot first, then its request permit: a large object waiting for
        // permits for its ranges holds a slot but no permit, so this order cannot deadlock.
        let slot = tokio::select! {
            _ = cancel.cancelled() => { interrupted = true; break }
            p = ctx.files.clone().acquire_owned() => p.expect("semaphore closed"),
        };
        let permit = tokio::select! {
            _ = cancel.cancelled() => { interrupted = true; break }
            p = ctx.limit.clone().acquire_owned() => p.expect("semaphore closed"),
        };
        // Checked once a slot is free, as failures arrive while the loop waits for one.
        if ctx.health.tripped() {
            counts.not_attempted = entries.len() - idx;
            break;
        }
        let (ctx2, e2, cancel2) = (ctx.clone(), e.clone(), cancel.clone());
        tasks.spawn(crate::health::scope(ctx.health.clone(), async move {
            let _slot = slot;
            let done = tokio::select! {
                _ = cancel2.cancelled() => Done::Interrupted,
                d = restore_one(ctx2, e2, dir, Some(permit)) => d,
            };
            (idx, done)
        }));
        while let Some(done) = tasks.try_join_next() {
            if let Ok((i, d)) = done {
                record(counts, Some(i), &entries[i], d);
            }
        }
    }
    loop {
        let done = tokio::select! {
            _ = cancel.cancelled() => {
                interrupted = true;
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
            d = tasks.join_next() => d,
        };
        match done {
            Some(Ok((i, d))) => record(counts, Some(i), &entries[i], d),
            Some(Err(err)) => record(
                counts,
                None,
                &Entry {
                    rel: "?".into(),
                    key: String::new(),
                    obj: RemoteObject {
                        size: 0,
                        last_modified_ns: 0,
                        archived: None,
                        etag: 0,
                    },
                },
                Done::Failed(Cause::Internal, format!("restore task failed: {err}")),
            ),
            None => break,
        }
    }
    shown_progress.finish().await;
    if c.files_defaulted > 0 {
        log::warn!(target: FLOW, "{} files have no recorded mode (objects written by the original tool or another one) and were restored private (0600); give them their modes with chmod.", c.files_defaulted);
    }
    if !(interrupted || cancel.is_cancelled()) {
        // What is on disk is checked before directories get their recorded modes: a
        // directory recorded without search permission would hide its own files from the
        // check of a run that is not root's.
        if let Some(root) = root.as_ref().filter(|_| !opts.dry_run) {
            let missing = on_disk(root, &entries, &placed, &mut c, target);
            summary_failures.extend(missing);
        }
    }
    if !(interrupted || cancel.is_cancelled()) {
        // Directories last: their modes, owners and times once their contents are in place.
        let shown_dir = |rel: &str| ctx.shown_path(rel);
        let job = crate::restore_dirs::DirsJob {
            client,
            url,
            root: root.as_deref(),
            markers: marked_dirs,
            created: dirs.map(|d| d.created).unwrap_or_default(),
            dry_run: ctx.dry_run,
            as_root: ctx.as_root,
            concurrency: opts.concurrency(),
            shown: &shown_dir,
        };
        match crate::restore_dirs::finish(job, &mut c, cancel).await {
            Some(failures) => summary_failures.extend(failures),
            None => interrupted = true,
        }
    }
    if interrupted || cancel.is_cancelled() {
        log::error!(target: FLOW, "Interrupted after restoring {} files; temporary files were removed.", c.restored);
        return Restored {
            counts: c,
            failures: summary_failures,
            cause: first_cause,
            result: Err(RunError::Interrupted),
        };
    }
    Restored {
        counts: c,
        failures: summary_failures,
        cause: first_cause,
        result: Ok(()),
    }
}

/// What the restore phase did.
struct Restored {
    counts: RestoreCounts,
    failures: Vec<(String, String)>,
    /// The cause of the first failed download or write.
    cause: Option<Cause>,
    result: Result<(), RunError>,
}

/// What an entry left on disk.
#[derive(Debug, Clone, Copy)]
enum Placed {
    Restored { bytes: u64, checksum: bool },
    Unchanged,
}

/// The check that ends a restore: every file counted as restored or already present is looked
/// at once more, through the directory descriptors and without following symlinks, and must
/// be a regular file of its object's size. What is not (removed, replaced by something else
/// meanwhile) is an ERROR, counted as missing and no longer as restored or present. Returns
/// those files and why, for the summary.
fn on_disk(
    root: &Arc<OwnedFd>,
    entries: &[Entry],
    placed: &[Option<Placed>],
    c: &mut RestoreCounts,
    target: &Path,
) -> Vec<(String, String)> {
    let mut dirs = Dirs {
        chain: vec![(String::new(), root.clone())],
        create: false,
        created: Vec::new(),
    };
    let mut missing = Vec::new();
    for (e, p) in entries.iter().zip(placed) {
        let Some(p) = p else { continue };
        let name = e.rel.rsplit('/').next().unwrap_or(&e.rel);
        let problem = match dirs.parent_of(&e.rel) {
            Err(why) => Some(why),
            Ok(None) => Some("its directory is no longer there".to_string()),
            Ok(Some(dir)) => match stat_at(&dir, &cstring(name)) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    Some("it is no longer there".to_string())
                }
                Err(err) => Some(format!("cannot look at it: {err}")),
                Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFREG => {
                    Some("something other than a regular file has its name now".to_string())
                }
                Ok(st) if st.st_size as u64 != e.obj.size => Some(format!(
                    "it has {} bytes now, the object {}",
                    st.st_size, e.obj.size
                )),
                Ok(_) => None,
            },
        };
        let Some(why) = problem else {
            c.verified += 1;
            continue;
        };
        let shown = display_path(&target.join(&*e.rel));
        let why = format!("not on disk at the end of the restore: {why}");
        log::error!(target: FLOW, "Restored file {shown} is {why}");
        c.missing += 1;
        match *p {
            Placed::Restored { bytes, checksum } => {
                c.restored -= 1;
                c.restored_bytes -= bytes;
                if checksum {
                    c.checksum_verified -= 1;
                } else {
                    c.size_only -= 1;
                }
            }
            Placed::Unchanged => c.unchanged -= 1,
        }
        missing.push((shown, why));
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_keys_are_named() {
        for ok in [
            "a",
            "a b/c",
            "é/\u{1}\n+%#?&",
            "x/.hidden",
            "..a/b..",
            &"n".repeat(255),
        ] {
            assert_eq!(path_problem(ok), None, "{ok:?}");
        }
        for bad in [
            "../x",
            "a/../x",
            "a/./y",
            "a//z",
            "/abs",
            "a/",
            "",
            ".",
            "a\0b",
            &"n".repeat(256),
        ] {
            assert!(path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn a_key_that_is_also_a_directory_is_found() {
        let keys = ["a", "a/b", "ab", "c/d", "c/d/e", "f"];
        let mut got: Vec<&str> = conflicting_keys(keys.iter().copied()).into_iter().collect();
        got.sort();
        assert_eq!(got, ["a", "c/d"]);
    }

    fn dir_fd(p: &Path) -> Arc<OwnedFd> {
        Arc::new(std::fs::File::open(p).unwrap().into())
    }

    fn temp_path(dir: &Path, final_name: &str) -> PathBuf {
        dir.join(std::ffi::OsStr::from_bytes(&restore_temporary_name(
            final_name,
        )))
    }

    fn names_in(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    }

    /// The temporary name is never a name a key can give (the byte 0xFF is never in UTF-8),
    /// fits a file name whatever the final name's length, and is the same for the same file.
    #[test]
    fn temporary_names_are_never_keys_and_always_fit() {
        for n in ["f", ".f.cback3-tmp", &"n".repeat(255), "é"] {
            let t = restore_temporary_name(n);
            assert!(std::str::from_utf8(&t).is_err(), "{n}");
            assert!(t.len() <= NAME_MAX);
            assert!(crate::sync::walk::is_restore_temporary(&t));
            assert_eq!(t, restore_temporary_name(n));
        }
        assert_ne!(restore_temporary_name("a"), restore_temporary_name("b"));
        assert!(!crate::sync::walk::is_restore_temporary(b".f.cback3-tmp"));
    }

    /// An unnamed file is invisible until it is placed; it never replaces a file unless
    /// asked, and a replace leaves no temporary name behind (also when a killed run left one).
    #[test]
    fn an_unnamed_file_is_invisible_until_placed() {
        let d = tempfile::tempdir().unwrap();
        let dir = dir_fd(d.path());
        let t = Temp::create(dir.clone(), "f").unwrap();
        assert!(t.name.is_none(), "this file system has O_TMPFILE");
        (&**t.file()).write_all(b"new").unwrap();
        assert!(names_in(d.path()).is_empty());
        t.place("f", false).unwrap();
        assert_eq!(names_in(d.path()), ["f"]);

        let t = Temp::create(dir.clone(), "f").unwrap();
        (&**t.file()).write_all(b"newer").unwrap();
        let err = t.place("f", false).err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"new");
        assert_eq!(names_in(d.path()), ["f"]);

        // A killed run's temporary name of f (nobody holds it): taken over, then gone.
        std::fs::write(temp_path(d.path(), "f"), b"stale").unwrap();
        let t = Temp::create(dir.clone(), "f").unwrap();
        (&**t.file()).write_all(b"newest").unwrap();
        t.place("f", true).unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"newest");
        assert_eq!(names_in(d.path()), ["f"]);

        // Dropped before it is placed: nothing left.
        let t = Temp::create(dir, "g").unwrap();
        (&**t.file()).write_all(b"partial").unwrap();
        drop(t);
        assert_eq!(names_in(d.path()), ["f"]);
    }

    /// Two restores writing one file: one takes the temporary name, the other fails and
    /// leaves that name alone, also when the second found the first's new file before the
    /// first could lock it (and took it for one left by a killed run).
    #[test]
    fn a_temporary_name_has_one_owner() {
        let d = tempfile::tempdir().unwrap();
        let dir = dir_fd(d.path());
        let path = temp_path(d.path(), "f");
        let a = Temp::create_named(dir.clone(), "f").unwrap();
        let err = Temp::create_named(dir.clone(), "f").err().unwrap();
        assert!(
            err.to_string().contains("another restore is writing"),
            "{err}"
        );
        assert!(path.exists(), "the loser must not remove the owner's file");
        drop(a);
        assert!(!path.exists());

        // B has just created its file and not locked it yet; A replaces it meanwhile.
        let b_file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let a = Temp::create_named(dir.clone(), "f").unwrap();
        let name = temp_name("f");
        assert!(
            !claim(&dir, &name, &b_file),
            "B must see the name is no longer its file"
        );
        (&**a.file()).write_all(b"whole").unwrap();
        a.place("f", false).unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"whole");
    }

    /// A FIFO or device node at the temporary name is removed without being opened.
    #[test]
    fn something_else_at_a_temporary_name_is_replaced_unopened() {
        let d = tempfile::tempdir().unwrap();
        let dir = dir_fd(d.path());
        let path = temp_path(d.path(), "f");
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A writer blocked in open(2) until someone opens the FIFO for reading.
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                tx.send(unsafe { libc::gettid() }).unwrap();
                std::fs::OpenOptions::new().write(true).open(path).is_ok()
            })
        };
        // Wait until the writer is inside openat(2) (syscall 257 on x86-64, 56 on arm64).
        let syscall = format!("/proc/self/task/{}/syscall", rx.recv().unwrap());
        let started = Instant::now();
        while !std::fs::read_to_string(&syscall)
            .is_ok_and(|s| s.starts_with("257 ") || s.starts_with("56 "))
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "writer never blocked"
            );
            std::thread::yield_now();
        }
        let t = Temp::create_named(dir, "f").unwrap();
        drop(t);
        // Nothing opened it for reading, so the writer is still blocked (an open would have
        // let it through); the FIFO is gone from the name.
        assert!(!writer.is_finished());
        assert!(!path.exists());
    }

    #[test]
    fn markers() {
        assert!(is_directory_marker("a/", 0));
        assert!(is_directory_marker("", 0));
        assert!(!is_directory_marker("a/", 3));
        assert!(!is_directory_marker("a", 0));
    }

    #[test]
    fn mtimes_compare_at_the_file_systems_precision() {
        assert!(same_mtime(5_000_000_123, 5_000_000_123));
        assert!(same_mtime(5_000_000_000, 5_000_000_123));
        assert!(!same_mtime(5_000_000_100, 5_000_000_123));
        assert!(!same_mtime(4_000_000_000, 5_000_000_123));
    }

    #[test]
    fn the_restore_summary_comes_from_the_restore_phase() {
        let none = Phases::default().summary();
        assert_eq!((none.restore, none.failed), (None, 0));
        let c = RestoreCounts {
            restored: 3,
            checksum_verified: 2,
            size_only: 1,
            refused: 1,
            failed: 2,
            ..RestoreCounts::default()
        };
        let s = Phases {
            restored: Some((c.clone(), vec![("k".into(), "unsafe key: ..".into())])),
            durations: vec![("restore", Duration::from_millis(2))],
        }
        .summary();
        assert_eq!(
            (s.failed, s.content_verified, s.content_unverifiable),
            (3, 2, 1)
        );
        assert_eq!(s.failures.len(), 1);
        assert_eq!(s.phases, [("restore", Duration::from_millis(2))]);
        assert_eq!(s.restore, Some(c));
    }
}
