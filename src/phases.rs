//! The run's steps one at a time, as the Python module's `_checkSourceFiles`,
//! `_synchronizeBucket`, `_verifyBucketContents` and `_executeAction` call them. Each does what
//! the command's phase does (the lock, stray uploads, the run's own files, the summary) and
//! decides here, so that the Python extension only translates.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::display::display_path;
use crate::options::{self, Options};
use crate::report::Cause;
use crate::run::{failed, RunError};
use crate::sync::plan::Mode;
use crate::sync::walk::{self, LocalFile, SourceTree};
use crate::sync::{self, Features, Job};
use crate::FLOW;

/// Runs a blocking step (the walk) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(failed(Cause::Internal, format!("source walk failed: {e}"))))
}

/// Where a bucket URL is not needed (the name check), names are checked as if the files
/// went to the root of a bucket.
fn bucket_root() -> BucketUrl {
    BucketUrl {
        bucket: "bucket".into(),
        prefix: String::new(),
    }
}

/// The regular files under `source_dir` as the run walks them (no name check).
pub fn walk(source_dir: &Path) -> Result<SourceTree, RunError> {
    walk::walk(source_dir, 0).map_err(|e| failed(Cause::BadInput, e.to_string()))
}

/// `_executeAction`: the work of a run for these options (see [`crate::cli::action`]).
pub async fn run_action(opts: &Options, cancel: &CancellationToken) -> Result<(), RunError> {
    crate::cli::action(opts, cancel, Instant::now()).await
}

/// `_checkSourceFiles`: fails if any name under `source_dir` cannot be an object key (one
/// log line each).
pub async fn check_source_files(source_dir: PathBuf) -> Result<(), RunError> {
    blocking(move || {
        sync::walk_checked(
            &source_dir,
            &bucket_root(),
            false,
            &[],
            &|| false,
            &mut |_| Ok(()),
        )
        .1
    })
    .await
}

/// `_synchronizeBucket`: the command's sync phase for these options (source, URL, `-u`, and
/// the logfile the host writes, which is one of the run's own files), without the verify
/// phase: under the run lock, stray multipart uploads under the prefix aborted, the summary
/// line logged at the end.
pub async fn synchronize(opts: &Options, cancel: &CancellationToken) -> Result<(), RunError> {
    let started = Instant::now();
    let _chain = crate::s3::error::FullChain::scope(opts.stacktrace);
    let (mut summary, result) = sync::sync_phases(opts, cancel).await;
    summary.elapsed = started.elapsed();
    if let Err(e) = &result {
        summary.error = Some(e.to_string());
    }
    log::info!(target: FLOW, "Summary: {summary}");
    result
}

/// `path` made absolute and cleaned of `.`, `..` and repeated separators, by its text (as
/// the walk names files: the source joined with the relative name).
fn lexical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What one path given to `_verifyBucketContents` is to the check.
#[derive(Debug, PartialEq, Eq)]
enum Listed {
    /// A regular file under the source, by its relative name (the key's end).
    File(LocalFile),
    /// Nothing on disk under the source: its object must exist all the same.
    Missing(Box<str>),
    /// A directory, device or the like: the original checks only regular files.
    NotAFile,
    /// It cannot have an object under the prefix: outside the source, or not UTF-8.
    NoKey(&'static str),
}

/// Reads one listed path as the original's check does, at the time of the check: its name
/// relative to `root` (however it is spelled), and its size now.
fn classify(root: &Path, path: &Path) -> Listed {
    let Ok(rel) = lexical(path).strip_prefix(root).map(Path::to_path_buf) else {
        return Listed::NoKey("it is not under the source directory");
    };
    let Some(rel) = rel.to_str().filter(|r| !r.is_empty()) else {
        return Listed::NoKey("its name is not UTF-8, so it cannot be an S3 key");
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Listed::File(LocalFile {
            rel: rel.into(),
            size: m.len(),
            mtime_ns: walk::mtime_ns(&m),
        }),
        Ok(_) => Listed::NotAFile,
        Err(_) => Listed::Missing(rel.into()),
    }
}

/// `_verifyBucketContents`: checks that every regular file among `paths` has an object of
/// its size under `url`, as the original does (each file's size taken now). A path is named
/// by its place under `source_dir`, however it is spelled; one with no file passes if its
/// object exists; one outside the source is looked up by the path itself, as the original
/// does, and so fails. `logfile` is the host's logfile: if it is among the paths, its object
/// must exist (it grew since).
pub async fn verify_paths(
    source_dir: PathBuf,
    paths: Vec<PathBuf>,
    url: &str,
    logfile: Option<PathBuf>,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let url = BucketUrl::parse(url).map_err(|e| failed(Cause::BadInput, e.to_string()))?;
    let root = lexical(&source_dir);
    if !root.is_dir() {
        return Err(failed(
            Cause::BadInput,
            format!("source directory {} does not exist", display_path(&root)),
        ));
    }
    let own_id = logfile
        .and_then(|l| std::fs::metadata(l).ok())
        .map(|m| (m.dev(), m.ino()));
    let mut tree = SourceTree {
        root: root.clone(),
        ..SourceTree::default()
    };
    let (mut seen, mut missing, mut own) = (HashSet::new(), Vec::new(), Vec::new());
    for path in &paths {
        match classify(&root, path) {
            Listed::File(f) if seen.insert(f.rel.clone()) => {
                let id = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
                if id.is_some() && id == own_id {
                    own.push(f.rel.clone());
                }
                tree.files.push(f);
            }
            Listed::Missing(rel) if seen.insert(rel.clone()) => missing.push((path, rel)),
            Listed::File(_) | Listed::Missing(_) => {}
            Listed::NotAFile => {
                log::debug!(target: FLOW, "Not a regular file, not checked: [{}]", display_path(path));
            }
            Listed::NoKey(why) => {
                // Its key is then the path itself, as in the original: not found, one difference.
                let shown = display_path(path);
                log::error!(target: FLOW, "[{shown}]: {why}");
                tree.files.push(LocalFile {
                    rel: shown.into(),
                    size: 0,
                    mtime_ns: 0,
                });
            }
        }
    }
    let client = crate::s3::client()
        .await
        .map_err(|m| failed(Cause::Config, m))?;
    let listing = crate::s3::listing::list_sorted(&client, &url, cancel).await?;
    // A listed path with nothing on disk is checked by its object alone: present passes.
    let wanted: HashSet<&str> = missing.iter().map(|(_, rel)| &**rel).collect();
    let mut sizes = std::collections::HashMap::new();
    if !wanted.is_empty() {
        for o in listing.iter() {
            let o = o.map_err(sync::temp_failed)?;
            if wanted.contains(&*o.rel) {
                sizes.insert(o.rel, o.obj.size);
            }
        }
    }
    for (path, rel) in missing {
        let size = match sizes.get(&rel) {
            Some(&size) => {
                log::warn!(target: FLOW, "File is not on disk, its object exists (size not compared): [{}]", display_path(path));
                size
            }
            None => 0, // no object: verify reports it as not uploaded
        };
        tree.files.push(LocalFile {
            rel,
            size,
            mtime_ns: 0,
        });
    }
    let job = Job {
        url,
        mode: Mode::VerifyOnly,
        concurrency: options::DEFAULT_MAX_CONCURRENCY,
        allow_empty_source: false,
        ignore_warnings: true,
        features: Features::default(),
    };
    let local = sync::verify::LocalSide::from_files(tree.files, &own);
    sync::verify::verify(
        &client,
        &job,
        &root,
        local,
        Some(std::sync::Arc::new(listing)),
        Default::default(),
        0,
        &mut sync::verify::Verified::default(),
        cancel,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_path_is_named_by_its_place_under_the_source() {
        let d = tempfile::tempdir().unwrap();
        let root = lexical(d.path());
        std::fs::create_dir(root.join("dir")).unwrap();
        std::fs::write(root.join("dir/a"), b"abc").unwrap();
        let name = |p: PathBuf| match classify(&root, &p) {
            Listed::File(f) => format!("file {} {}", f.rel, f.size),
            other => format!("{other:?}"),
        };
        // Spelled differently, the same file.
        for spelling in ["dir/a", "./dir//a", "dir/../dir/a", "dir/./a"] {
            assert_eq!(name(root.join(spelling)), "file dir/a 3", "{spelling}");
        }
        assert_eq!(name(root.join("dir/b")), "Missing(\"dir/b\")");
        assert_eq!(name(root.join("dir")), "NotAFile");
        assert_eq!(
            name(root.join("../elsewhere")),
            "NoKey(\"it is not under the source directory\")"
        );
        assert!(matches!(classify(&root, &root), Listed::NoKey(_)));
    }
}
