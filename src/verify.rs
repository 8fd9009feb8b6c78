//! Verification: every local file must have an object of the same size under the prefix.
//! Objects with no local file are warnings after a verify-only or upload-only run and
//! errors after a full sync (they should be gone).

use crate::display::display_bytes;
use crate::plan::{extras, Listing, Mode};
use crate::walk::SourceTree;
use crate::FLOW;

/// What verification found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub verified: usize,
    /// One line per difference that fails the run.
    pub errors: Vec<String>,
    /// The same differences as (file or object, why), for the summary file.
    pub failed: Vec<(String, String)>,
    pub extras: usize,
}

/// Compares the tree with a listing of the prefix, logging one line per difference.
/// `own` (indices) are the run's own files, which change as it runs: their objects must
/// exist, and a size difference is only noted.
pub fn verify(tree: &SourceTree, listing: &Listing, mode: Mode, own: &[usize]) -> VerifyOutcome {
    let mut out = VerifyOutcome::default();
    for (i, f) in tree.files.iter().enumerate() {
        let name = display_bytes(f.rel.as_bytes());
        match listing.get(&f.rel) {
            Some(o) if o.size != f.size && own.contains(&i) => {
                log::info!(target: FLOW, "[{name}] is this run's own file: {} bytes now, its copy {} bytes (copied as the walk saw it; not a difference).", f.size, o.size);
                out.verified += 1;
            }
            None => {
                let line = format!("File was apparently not uploaded: [{name}]");
                log::error!(target: FLOW, "{line}");
                out.errors.push(line);
                out.failed.push((name, "no object in the bucket".into()));
            }
            Some(o) if o.size != f.size => {
                let line = format!(
                    "File size differs [{name}]: expected {} bytes but got {} bytes",
                    f.size, o.size
                );
                log::error!(target: FLOW, "{line}");
                out.errors.push(line);
                out.failed.push((
                    name,
                    format!(
                        "size differs: file {} bytes, object {} bytes",
                        f.size, o.size
                    ),
                ));
            }
            Some(_) => out.verified += 1,
        }
    }
    for rel in extras(&tree.files, listing) {
        out.extras += 1;
        let name = display_bytes(rel.as_bytes());
        if mode == Mode::Full {
            let line = format!("Object has no local file and was not deleted: [{name}]");
            log::error!(target: FLOW, "{line}");
            out.errors.push(line);
            out.failed.push((name, "object has no local file".into()));
        } else {
            log::warn!(target: FLOW, "Object has no local file: [{name}]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RemoteObject;
    use crate::walk::LocalFile;

    fn tree(files: &[(&str, u64)]) -> SourceTree {
        SourceTree {
            files: files
                .iter()
                .map(|(r, s)| LocalFile {
                    rel: (*r).into(),
                    size: *s,
                    mtime_ns: 0,
                })
                .collect(),
            ..SourceTree::default()
        }
    }

    #[test]
    fn missing_differing_and_extra() {
        let t = tree(&[("ok", 1), ("missing", 2), ("short", 3)]);
        let obj = |size| RemoteObject {
            size,
            last_modified_ns: 0,
            archived: None,
            etag: 0,
        };
        let listing: Listing = [
            ("ok".into(), obj(1)),
            ("short".into(), obj(2)),
            ("extra".into(), obj(9)),
        ]
        .into_iter()
        .collect();
        let full = verify(&t, &listing, Mode::Full, &[]);
        assert_eq!(full.verified, 1);
        assert_eq!(full.extras, 1);
        assert_eq!(full.errors.len(), 3);
        let v = verify(&t, &listing, Mode::VerifyOnly, &[]);
        assert_eq!(v.errors.len(), 2);
        assert_eq!(v.extras, 1);
        // The run's own files: a size difference is not one, a missing object is.
        let own = verify(&t, &listing, Mode::VerifyOnly, &[1, 2]);
        assert_eq!(own.errors.len(), 1);
        assert_eq!(own.verified, 2);
    }
}
