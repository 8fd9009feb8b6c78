//! The answers a sync already has about ambiguous files (see [`crate::sync::plan`]): the `mtime`
//! metadata of objects, remembered per target in the user's private lock directory, so that
//! a run where nothing changed asks no object for it (no HeadObject) however many files were
//! stamped within the second of their upload or carry dates in the future.
//!
//! An answer is about one object as listed: its key, size, LastModified and ETag (a hash of
//! it). The next run uses it only when its listing shows the same four; anything else (the
//! object was replaced, by this tool or another) asks the object again. Answers for objects
//! this run uploaded come from the upload itself (the mtime it wrote, the ETag the server
//! answered); their LastModified is taken from the first listing that shows that key with that
//! size and ETag.
//!
//! The file holds the answers the run used or learnt, nothing else, so it stays as small as
//! the number of ambiguous files. It is written at the end of a run that succeeded (a
//! temporary file renamed over it), read by the next run of the same user and target only
//! (the lock directory is writable by that user alone, and the run lock is held meanwhile),
//! and ignored with a DEBUG line when it cannot be read or parsed: a lost cache costs
//! HeadObjects, never a wrong decision that a HeadObject would not also make.
//!
//! Format: a header line, then one line per object: `size<TAB>LastModified ns or -<TAB>ETag
//! hash (hex)<TAB>mtime metadata<TAB>relative key`, the last two percent-encoded (control
//! characters and `%`).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::s3::listing::RemoteObject;
use crate::sync::walk::LocalFile;
use crate::OUTPUT;

const HEADER: &str = "cback3-s3sync mtime answers v1";

/// Characters escaped in the text fields: controls (tab and newline included) and `%`.
const ESCAPED: &AsciiSet = &CONTROLS.add(b'%');

#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    size: u64,
    /// `None`: learnt from this tool's upload, before any listing showed the object.
    last_modified_ns: Option<i64>,
    etag: u64,
    /// The object's `mtime` metadata, as stored.
    mtime: Box<str>,
}

impl Answer {
    fn fits(&self, remote: &RemoteObject) -> bool {
        remote.etag != 0
            && self.size == remote.size
            && self.etag == remote.etag
            && self
                .last_modified_ns
                .is_none_or(|t| t == remote.last_modified_ns)
    }
}

/// The answers of earlier runs (`known`) and those of this run (`used`, what is saved).
#[derive(Debug, Default)]
pub struct MtimeCache {
    path: Option<PathBuf>,
    known: HashMap<Box<str>, Answer>,
    used: HashMap<Box<str>, Answer>,
}

/// The file of a target (endpoint, bucket, prefix) in `dir`.
pub fn file_for(dir: &std::path::Path, target: &crate::lock::Target) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        target.endpoint.as_str(),
        &target.url.bucket,
        &target.url.prefix,
    ] {
        for b in part.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    dir.join(format!("mtimes-{h:016x}"))
}

impl MtimeCache {
    /// The cache of `target`, from the private lock directory; empty (with a DEBUG line) when
    /// there is none or it cannot be used.
    pub fn load(target: &crate::lock::Target) -> Self {
        let path = match crate::lock::lock_dir() {
            Ok(dir) => file_for(&dir, target),
            Err(e) => {
                log::debug!(target: OUTPUT, "No cache of mtime metadata: {e}");
                return MtimeCache::default();
            }
        };
        Self::load_from(path)
    }

    /// [`Self::load`] from a given file.
    pub fn load_from(path: PathBuf) -> Self {
        let shown = crate::display::display_path(&path);
        let known = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).unwrap_or_else(|why| {
                log::debug!(target: OUTPUT, "Ignoring the cache of mtime metadata {shown}: {why}");
                HashMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                log::debug!(target: OUTPUT, "Ignoring the cache of mtime metadata {shown}: {e}");
                HashMap::new()
            }
        };
        MtimeCache {
            path: Some(path),
            known,
            used: HashMap::new(),
        }
    }

    /// The `mtime` metadata of the object `rel` as listed, if an earlier run learnt it.
    pub fn lookup(&mut self, rel: &str, remote: &RemoteObject) -> Option<Box<str>> {
        let a = self.known.get(rel).filter(|a| a.fits(remote))?;
        let answer = Answer {
            last_modified_ns: Some(remote.last_modified_ns),
            ..a.clone()
        };
        let mtime = answer.mtime.clone();
        self.used.insert(rel.into(), answer);
        Some(mtime)
    }

    /// What a HeadObject answered about the object `rel` as listed.
    pub fn learn(&mut self, rel: &str, remote: &RemoteObject, mtime: &str) {
        if remote.etag == 0 {
            return;
        }
        self.used.insert(
            rel.into(),
            Answer {
                size: remote.size,
                last_modified_ns: Some(remote.last_modified_ns),
                etag: remote.etag,
                mtime: mtime.into(),
            },
        );
    }

    /// An object this run wrote: `stored` as uploaded (its mtime is what the upload wrote),
    /// `etag` the hash of the ETag the server answered.
    pub fn uploaded(&mut self, stored: &LocalFile, etag: u64) {
        self.used.insert(
            stored.rel.clone(),
            Answer {
                size: stored.size,
                last_modified_ns: None,
                etag,
                mtime: crate::metadata::format_mtime(stored.mtime_ns).into(),
            },
        );
    }

    /// Writes this run's answers (a temporary file renamed over the old one), unless they are
    /// the ones read. A failure is a DEBUG line: the next run asks the objects again.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        // Nothing learnt and nothing dropped: the file stays as it is (no write each night).
        if self.used == self.known {
            return;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?,
            );
            f.write_all(format(&self.used).as_bytes())?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            log::debug!(target: OUTPUT, "Cannot write the cache of mtime metadata {}: {e}", crate::display::display_path(path));
        }
    }
}

fn format(answers: &HashMap<Box<str>, Answer>) -> String {
    let mut out = format!("{HEADER}\n");
    let mut keys: Vec<&Box<str>> = answers.keys().collect();
    keys.sort();
    for k in keys {
        let a = &answers[k];
        let lm = a
            .last_modified_ns
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        out += &format!(
            "{}\t{lm}\t{:016x}\t{}\t{}\n",
            a.size,
            a.etag,
            utf8_percent_encode(&a.mtime, ESCAPED),
            utf8_percent_encode(k, ESCAPED)
        );
    }
    out
}

fn parse(text: &str) -> Result<HashMap<Box<str>, Answer>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err("not a cache of this version".into());
    }
    let mut out = HashMap::new();
    for (n, line) in lines.enumerate() {
        let bad = || format!("line {} is malformed", n + 2);
        let f: Vec<&str> = line.split('\t').collect();
        let [size, lm, etag, mtime, key] = f[..] else {
            return Err(bad());
        };
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| Box::<str>::from(c.as_ref()))
                .map_err(|_| bad())
        };
        let answer = Answer {
            size: size.parse().map_err(|_| bad())?,
            last_modified_ns: match lm {
                "-" => None,
                t => Some(t.parse().map_err(|_| bad())?),
            },
            etag: u64::from_str_radix(etag, 16).map_err(|_| bad())?,
            mtime: decode(mtime)?,
        };
        out.insert(decode(key)?, answer);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(size: u64, lm: i64, etag: u64) -> RemoteObject {
        RemoteObject {
            size,
            last_modified_ns: lm,
            archived: None,
            etag,
        }
    }

    #[test]
    fn answers_fit_only_the_object_they_are_about() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let mut c = MtimeCache::load_from(path.clone());
        let odd = "tab\there\nnewline 100% caf\u{e9}\u{1}";
        c.learn(odd, &remote(5, 100, 7), "4102444800.5");
        c.learn("no-etag", &remote(5, 100, 0), "1");
        c.uploaded(
            &LocalFile {
                rel: "up".into(),
                size: 3,
                mtime_ns: 1_500_000_000,
            },
            9,
        );
        c.save();

        let mut c = MtimeCache::load_from(path.clone());
        // (key, object as listed, answer)
        let cases = [
            (odd, remote(5, 100, 7), Some("4102444800.5")),
            (odd, remote(6, 100, 7), None),
            (odd, remote(5, 101, 7), None),
            (odd, remote(5, 100, 8), None),
            ("no-etag", remote(5, 100, 0), None),
            ("other", remote(5, 100, 7), None),
            // An upload's answer takes the first LastModified listed with its ETag...
            ("up", remote(3, 1_000_000_000, 9), Some("1.5")),
            ("up", remote(3, 1_000_000_000, 10), None),
        ];
        for (k, r, want) in cases {
            assert_eq!(c.lookup(k, &r).as_deref(), want, "{k:?} {r:?}");
        }
        c.save();
        // ...and then only that one; answers not used by a run are dropped.
        let mut c = MtimeCache::load_from(path.clone());
        assert_eq!(c.lookup("up", &remote(3, 2_000_000_000, 9)), None);
        assert_eq!(
            c.lookup("up", &remote(3, 1_000_000_000, 9)).as_deref(),
            Some("1.5")
        );
        assert_eq!(c.known.len(), 2);
        assert!(!c.known.contains_key("no-etag"));
    }

    #[test]
    fn a_damaged_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "",
            "garbage\n",
            &format!("{HEADER}\n5\t100\n"),
            &format!("{HEADER}\nx\t100\t07\t1\tk\n"),
            &format!("{HEADER}\n5\t100\tzz\t1\tk\n"),
            &format!("{HEADER}\n5\t100\t07\t1\t%ff\n"),
        ] {
            let path = dir.path().join("c");
            std::fs::write(&path, text).unwrap();
            let c = MtimeCache::load_from(path);
            assert!(c.known.is_empty(), "{text:?}");
        }
        // A directory where the file should be: nothing known, and saving fails quietly.
        let path = dir.path().join("d");
        std::fs::create_dir(&path).unwrap();
        let mut c = MtimeCache::load_from(path.clone());
        c.learn("k", &remote(1, 1, 1), "1");
        c.save();
        assert!(path.is_dir());
    }
}
