//! The restore's checks: a download is checked against the object (its size, and the
//! full-object checksum or MD5 ETag S3 keeps) before it takes its name; and at the end every
//! file counted as restored or already present is looked at on disk once more, from the spill
//! of placed files ([`Placed`]), so the counts are what is there.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use super::dirs::Dirs;
use super::fetch::ObjectInfo;
use super::job::Done;
use super::place::{cstring, stat_at};
use crate::checksum::Method;
use crate::display::display_path;
use crate::report::{Cause, RestoreCounts};
use crate::run::outcome::{Failures, ItemFailure, Stage};
use crate::run::spill::{self, Record, Spilled};
use crate::FLOW;

/// The downloaded data against the object: the size it was listed with, and the checksum
/// the method chose (`got`: what the download hashed to).
pub fn content(
    listed_size: u64,
    info: &ObjectInfo,
    method: Option<&Method>,
    got: Option<&str>,
) -> Result<(), Done> {
    if info.size != listed_size {
        return Err(Done::Failed(
            Cause::Verification,
            format!(
                "the object changed since it was listed ({listed_size} bytes, now {}); run the restore again",
                info.size
            ),
        ));
    }
    if let (Some(m), Some(got)) = (method, got) {
        if got != m.expected() {
            return Err(Done::Failed(Cause::Verification, format!(
                "content differs: {} of the downloaded data is {got} but the object has {}; not put in place",
                m.name(),
                m.expected()
            )));
        }
    }
    Ok(())
}

/// How a placed file was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Restored { checksum: bool },
    AlreadyPresent,
}

/// A file the run counted as restored or already present, as spilled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub rel: Box<str>,
    pub size: u64,
    pub how: How,
}

impl Record for Placed {
    fn encode(&self, out: &mut Vec<u8>) {
        spill::put_str(out, &self.rel);
        spill::put_u64(out, self.size);
        out.push(match self.how {
            How::AlreadyPresent => 0,
            How::Restored { checksum: false } => 1,
            How::Restored { checksum: true } => 2,
        });
    }
    fn decode(buf: &mut &[u8]) -> std::io::Result<Self> {
        let rel = spill::get_str(buf)?;
        let size = spill::get_u64(buf)?;
        let (&how, rest) = buf
            .split_first()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        *buf = rest;
        let how = match how {
            0 => How::AlreadyPresent,
            1 => How::Restored { checksum: false },
            _ => How::Restored { checksum: true },
        };
        Ok(Placed { rel, size, how })
    }
}

/// The check that ends a restore: every file counted as restored or already present is looked
/// at once more, through the directory descriptors and without following symlinks, and must
/// be a regular file of its object's size. What is not (removed, replaced by something else
/// meanwhile) is an ERROR, counted as missing and no longer as restored or present.
pub fn on_disk(
    root: &Arc<OwnedFd>,
    placed: &Spilled<Placed>,
    c: &mut RestoreCounts,
    failures: &mut Failures,
    target: &Path,
) -> std::io::Result<()> {
    let mut dirs = Dirs::new(root.clone(), false);
    for p in placed.iter() {
        let p = p?;
        let name = p.rel.rsplit('/').next().unwrap_or(&p.rel);
        let problem = match dirs.parent_of(&p.rel) {
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
                Ok(st) if st.st_size as u64 != p.size => Some(format!(
                    "it has {} bytes now, the object {}",
                    st.st_size, p.size
                )),
                Ok(_) => None,
            },
        };
        let Some(why) = problem else {
            c.verified += 1;
            continue;
        };
        let shown = display_path(&target.join(&*p.rel));
        let why = format!("not on disk at the end of the restore: {why}");
        log::error!(target: FLOW, "Restored file {shown} is {why}");
        c.missing += 1;
        match p.how {
            How::Restored { checksum } => {
                c.restored -= 1;
                c.restored_bytes -= p.size;
                if checksum {
                    c.checksum_verified -= 1;
                } else {
                    c.size_only -= 1;
                }
            }
            How::AlreadyPresent => c.unchanged -= 1,
        }
        failures.push(ItemFailure::new(shown, Stage::Verify, Cause::LocalIo, why));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::spill::Spill;

    #[test]
    fn placed_files_round_trip_and_the_check_finds_what_is_gone() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/kept"), b"123").unwrap();
        std::fs::write(d.path().join("short"), b"1").unwrap();
        std::os::unix::fs::symlink("a/kept", d.path().join("link")).unwrap();
        let mut s = Spill::new().unwrap();
        let rows = [
            ("a/kept", 3, How::Restored { checksum: true }),
            ("gone", 2, How::Restored { checksum: false }),
            ("short", 5, How::AlreadyPresent),
            ("link", 3, How::AlreadyPresent),
            ("b/none", 1, How::Restored { checksum: true }),
        ];
        for (rel, size, how) in rows {
            s.push(&Placed {
                rel: rel.into(),
                size,
                how,
            })
            .unwrap();
        }
        let placed = s.finish().unwrap();
        let back: Vec<Placed> = placed.iter().map(Result::unwrap).collect();
        assert_eq!(back.len(), 5);
        assert_eq!(back[1].how, How::Restored { checksum: false });
        let mut c = RestoreCounts {
            restored: 3,
            restored_bytes: 6,
            checksum_verified: 2,
            size_only: 1,
            unchanged: 2,
            ..RestoreCounts::default()
        };
        let mut f = Failures::default();
        let root: Arc<OwnedFd> = Arc::new(std::fs::File::open(d.path()).unwrap().into());
        on_disk(&root, &placed, &mut c, &mut f, d.path()).unwrap();
        assert_eq!((c.verified, c.missing), (1, 4));
        assert_eq!(
            (
                c.restored,
                c.restored_bytes,
                c.checksum_verified,
                c.size_only,
                c.unchanged
            ),
            (1, 3, 1, 0, 0)
        );
        let why: Vec<&str> = f.kept().iter().map(|x| x.message.as_str()).collect();
        assert!(why[0].contains("no longer there"), "{why:?}");
        assert!(why[1].contains("has 1 bytes now"), "{why:?}");
        assert!(why[2].contains("other than a regular file"), "{why:?}");
        assert!(why[3].contains("directory is no longer there"), "{why:?}");
    }
}
