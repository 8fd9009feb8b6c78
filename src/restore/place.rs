//! Placing a downloaded file: it is written to an unnamed file in its directory (`O_TMPFILE`;
//! where there is none, a temporary name no key can be: [`restore_temporary_name`]), given
//! its recorded owner, mode and mtime, and only then its name (`linkat`, or a rename over the
//! old file with `--overwrite`). An interrupted or killed run leaves no partial file under a
//! final name, and nothing a rerun does not remove.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use super::plan::OnDisk;
use crate::metadata::restore_temporary_name;
use crate::metadata::Recorded;

pub fn cstring(name: &str) -> CString {
    CString::new(name).expect("keys with NUL are refused before")
}

pub fn last_os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// The file a download is written to before it takes its final name: an unnamed file
/// (`O_TMPFILE`) in the final name's directory, invisible and freed by the kernel when the run
/// dies, or where the file system has no unnamed files, a file at the name of
/// [`restore_temporary_name`] (which is never a name the restore places). Removed when dropped
/// unless placed.
pub struct Temp {
    dir: Arc<OwnedFd>,
    /// The temporary name that leads to the file now, if any (removed when dropped): the
    /// named fallback, or an unnamed file linked there on its way to replace a file.
    name: Option<CString>,
    file: Option<Arc<std::fs::File>>,
}

/// The temporary name of `final_name` as a C string (it holds no NUL: hex and a fixed prefix).
pub fn temp_name(final_name: &str) -> CString {
    CString::new(restore_temporary_name(final_name)).expect("no NUL in a temporary name")
}

/// Can an unnamed file be given a name? `linkat` through `/proc/self/fd/N` needs `/proc`.
fn proc_fd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

impl Temp {
    /// An unnamed file in `dir` where the file system has them, else [`Temp::create_named`].
    pub fn create(dir: Arc<OwnedFd>, final_name: &str) -> std::io::Result<Temp> {
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

    pub fn file(&self) -> &Arc<std::fs::File> {
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
    pub fn place(mut self, final_name: &str, replace: bool) -> std::io::Result<()> {
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
pub fn stat_at(dir: &OwnedFd, name: &CString) -> std::io::Result<libc::stat> {
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
pub fn remove_stale(dir: &OwnedFd, name: &CString) -> bool {
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
pub fn on_disk(dir: &OwnedFd, name: &str) -> std::io::Result<OnDisk> {
    let st = match stat_at(dir, &cstring(name)) {
        Ok(st) => st,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OnDisk::Nothing),
        Err(e) => return Err(e),
    };
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => OnDisk::File {
            size: st.st_size as u64,
            mtime_ns: crate::metadata::from_parts(st.st_mtime, st.st_mtime_nsec),
        },
        libc::S_IFDIR => OnDisk::Directory,
        _ => OnDisk::Other,
    })
}

/// The permission bits of a restored file whose object records no mode (the original's and
/// other tools' objects): owner only, 0600, less what the umask also removes. Nothing says
/// who may read it, and an exposure cannot be undone once another user has read the file
/// (a restored `/etc/shadow`, a key under `/home`), while a mode too tight is seen at once
/// and fixed with chmod; directories without a marker get 0700 for the same reason.
pub fn default_mode() -> u32 {
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

/// Owner (as root, when recorded), permission bits and modification time, on an open file or
/// directory; `None` leaves that one as it is. What cannot be applied is returned, one
/// description each (the caller warns; the file or directory stays, with what did apply).
pub fn apply_recorded(
    file: &std::fs::File,
    mtime_ns: Option<i128>,
    mode: Option<u32>,
    rec: &Recorded,
    as_root: bool,
) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut problems = Vec::new();
    if as_root && (rec.uid.is_some() || rec.gid.is_some()) {
        // None leaves that id unchanged.
        if let Err(e) = std::os::unix::fs::fchown(file, rec.uid, rec.gid) {
            problems.push(format!(
                "cannot set owner {:?} and group {:?}: {e}",
                rec.uid, rec.gid
            ));
        }
    }
    if let Some(mode) = mode {
        if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(mode)) {
            problems.push(format!("cannot set mode {mode:o}: {e}"));
        }
    }
    if let Some(ns) = mtime_ns {
        let (secs, nanos) = crate::metadata::timespec_parts(ns);
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: secs as libc::time_t,
                tv_nsec: nanos as _,
            },
        ];
        // SAFETY: a valid descriptor and two timespecs.
        if unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) } != 0 {
            let e = std::io::Error::last_os_error();
            problems.push(format!(
                "cannot set the modification time {}: {e}",
                crate::metadata::format_mtime(ns)
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

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
            assert!(t.len() <= super::super::plan::NAME_MAX);
            assert!(crate::metadata::is_restore_temporary(&t));
            assert_eq!(t, restore_temporary_name(n));
        }
        assert_ne!(restore_temporary_name("a"), restore_temporary_name("b"));
        assert!(!crate::metadata::is_restore_temporary(b".f.cback3-tmp"));
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
}
