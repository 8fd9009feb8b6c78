//! The Python extension module `cback3_s3sync._core` (feature `python`). Thin: it
//! translates arguments and errors; the core decides.
//!
//! Options cross the boundary as a dict keyed by the Python property names of
//! `cback3_s3sync.amazons3.Options`. Paths travel as `str` with surrogateescape, so
//! undecodable file names round-trip.
//!
//! Every call that does I/O runs on a process-wide tokio runtime with the GIL released
//! (pyo3-log takes the GIL on the runtime's threads; holding it here would deadlock) and
//! polls for signals every 100 ms, so Ctrl-C cancels the run, waits for its cleanup
//! (multipart uploads aborted, nothing deleted) and then surfaces as `KeyboardInterrupt`.

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::engine::{self, Job, RunError};
use crate::options::{self, Options, OptionsError};
use crate::plan::Mode;
use crate::report::{Cause, ExitStatus, Summary};
use crate::{s3, walk};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
static LOG_RESET: OnceLock<Option<pyo3_log::ResetHandle>> = OnceLock::new();

/// How often a running call comes back to Python to look for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

fn runtime() -> PyResult<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("cback3-s3sync")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the async runtime: {e}")))
}

/// How a cancellable call ended.
enum Outcome<T> {
    Done(T),
    /// Ctrl-C arrived: the task was cancelled and has finished its cleanup.
    Interrupted(PyErr),
}

/// Runs `work` on the runtime with the GIL released, checking for signals between waits.
fn run_cancellable<T, F>(
    py: Python<'_>,
    work: impl FnOnce(CancellationToken) -> F,
) -> PyResult<Outcome<T>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let rt = runtime()?;
    let cancel = CancellationToken::new();
    let mut handle = rt.spawn(work(cancel.clone()));
    loop {
        let waited = py
            .detach(|| rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut handle).await }));
        match waited {
            Ok(Ok(value)) => return Ok(Outcome::Done(value)),
            Ok(Err(join)) => {
                return Err(PyRuntimeError::new_err(format!(
                    "the sync task failed: {join}"
                )))
            }
            Err(_elapsed) => {}
        }
        if let Err(signal) = py.check_signals() {
            cancel.cancel();
            // Whatever the task returns now, the run was interrupted; wait for its cleanup.
            let _ = py.detach(|| rt.block_on(&mut handle));
            return Ok(Outcome::Interrupted(signal));
        }
    }
}

/// The outcome of a phase as Python sees it: the exception says what failed (see
/// [`exception_for`]), whichever function was called.
fn phase_result<T>(outcome: Outcome<Result<T, RunError>>) -> PyResult<T> {
    match outcome {
        Outcome::Done(Ok(v)) => Ok(v),
        Outcome::Done(Err(e)) => Err(exception_for(e.cause(), e.to_string())),
        Outcome::Interrupted(signal) => Err(signal),
    }
}

/// The one table from a failure's cause to the Python exception, as the original raises
/// them: `ValueError` for bad input and a verification difference, `OSError` where the
/// original's AWS CLI call failed (S3, local I/O, configuration, lock).
fn exception_for(cause: Cause, msg: String) -> PyErr {
    match cause {
        Cause::Interrupted => PyKeyboardInterrupt::new_err(msg),
        Cause::Verification | Cause::BadInput => PyValueError::new_err(msg),
        Cause::S3(_) | Cause::LocalIo | Cause::Config | Cause::LockBusy => PyOSError::new_err(msg),
        Cause::Internal => PyRuntimeError::new_err(msg),
    }
}

fn value_error(msg: String) -> PyErr {
    PyValueError::new_err(msg)
}

fn options_error(py: Python<'_>, e: OptionsError) -> PyErr {
    match e {
        OptionsError::Getopt(msg) => match py
            .import("getopt")
            .and_then(|m| m.getattr("GetoptError"))
            .and_then(|cls| cls.call1((msg.clone(),)))
        {
            Ok(exc) => PyErr::from_value(exc),
            Err(err) => err,
        },
        OptionsError::Value(msg) => PyValueError::new_err(msg),
    }
}

fn os_str(path: &std::path::Path) -> &std::ffi::OsStr {
    path.as_os_str()
}

/// Rust options → the dict the shim turns into its `Options`.
fn options_to_dict<'py>(py: Python<'py>, o: &Options) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("help", o.help)?;
    d.set_item("version", o.version)?;
    d.set_item("verbose", o.verbose)?;
    d.set_item("quiet", o.quiet)?;
    d.set_item("logfile", o.logfile.as_deref().map(os_str))?;
    match &o.owner {
        Some((u, g)) => d.set_item("owner", PyTuple::new(py, [u, g])?)?,
        None => d.set_item("owner", py.None())?,
    }
    d.set_item("mode", o.mode)?;
    d.set_item("output", o.output)?;
    d.set_item("debug", o.debug)?;
    d.set_item("stacktrace", o.stacktrace)?;
    d.set_item("diagnostics", o.diagnostics)?;
    d.set_item("verifyOnly", o.verify_only)?;
    d.set_item("uploadOnly", o.upload_only)?;
    d.set_item("ignoreWarnings", o.ignore_warnings)?;
    d.set_item("sourceDir", o.source_dir.as_deref().map(os_str))?;
    d.set_item("s3BucketUrl", o.s3_bucket_url.as_deref())?;
    d.set_item("maxConcurrency", o.max_concurrency)?;
    d.set_item("allowEmptySource", o.allow_empty_source)?;
    d.set_item("verifyContent", o.verify_content)?;
    d.set_item("dryRun", o.dry_run)?;
    d.set_item("summaryFile", o.summary_file.as_deref().map(os_str))?;
    d.set_item("maxDeletes", o.max_deletes)?;
    d.set_item("maxBandwidth", o.max_bandwidth)?;
    d.set_item("storageClass", o.storage_class.as_deref())?;
    d.set_item("sse", o.sse.as_deref())?;
    d.set_item("sseKmsKeyId", o.sse_kms_key_id.as_deref())?;
    d.set_item("restore", o.restore)?;
    d.set_item("overwrite", o.overwrite)?;
    Ok(d)
}

fn flag(d: &Bound<'_, PyDict>, key: &str) -> PyResult<bool> {
    match d.get_item(key)? {
        Some(v) => v.is_truthy(),
        None => Ok(false),
    }
}

fn field<'py, T: for<'a> FromPyObject<'a, 'py>>(
    d: &Bound<'py, PyDict>,
    key: &str,
) -> PyResult<Option<T>>
where
    for<'a> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<T>().map(Some).map_err(|e| {
            let e: PyErr = e.into();
            PyValueError::new_err(format!("{key}: {e}"))
        }),
        _ => Ok(None),
    }
}

/// The shim's dict → Rust options. Values were validated by the shim's property setters;
/// what Rust cannot represent (a mode beyond 32 bits, say) is a `ValueError`.
fn options_from_dict(d: &Bound<'_, PyDict>) -> PyResult<Options> {
    Ok(Options {
        help: flag(d, "help")?,
        version: flag(d, "version")?,
        verbose: flag(d, "verbose")?,
        quiet: flag(d, "quiet")?,
        logfile: field::<PathBuf>(d, "logfile")?,
        owner: field::<(String, String)>(d, "owner")?,
        mode: field::<u32>(d, "mode")?,
        output: flag(d, "output")?,
        debug: flag(d, "debug")?,
        stacktrace: flag(d, "stacktrace")?,
        diagnostics: flag(d, "diagnostics")?,
        verify_only: flag(d, "verifyOnly")?,
        upload_only: flag(d, "uploadOnly")?,
        ignore_warnings: flag(d, "ignoreWarnings")?,
        source_dir: field::<PathBuf>(d, "sourceDir")?,
        s3_bucket_url: field::<String>(d, "s3BucketUrl")?,
        max_concurrency: field::<usize>(d, "maxConcurrency")?,
        allow_empty_source: flag(d, "allowEmptySource")?,
        verify_content: flag(d, "verifyContent")?,
        dry_run: flag(d, "dryRun")?,
        summary_file: field::<PathBuf>(d, "summaryFile")?,
        max_deletes: field::<usize>(d, "maxDeletes")?,
        max_bandwidth: field::<u64>(d, "maxBandwidth")?,
        storage_class: field::<String>(d, "storageClass")?,
        sse: field::<String>(d, "sse")?,
        sse_kms_key_id: field::<String>(d, "sseKmsKeyId")?,
        restore: flag(d, "restore")?,
        overwrite: flag(d, "overwrite")?,
    })
}

/// Parses an argument list (without the program name) with the core's getopt-compatible
/// parser. Raises `getopt.GetoptError` or `ValueError` as the original does.
#[pyfunction]
#[pyo3(signature = (argv, validate = true))]
fn parse_options<'py>(
    py: Python<'py>,
    argv: Vec<OsString>,
    validate: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = options::parse_unvalidated(&argv).map_err(|e| options_error(py, e))?;
    if validate {
        opts.validate().map_err(|e| options_error(py, e))?;
    }
    options_to_dict(py, &opts)
}

/// `ValueError` unless a run could start from these options.
#[pyfunction]
fn validate_options(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    options_from_dict(options)?
        .validate()
        .map_err(|e| options_error(py, e))
}

/// The options as an argument list (long switch names, fixed order). Does not validate.
#[pyfunction]
fn build_argument_list(options: &Bound<'_, PyDict>) -> PyResult<Vec<String>> {
    Ok(options::build_argument_list(&options_from_dict(options)?))
}

/// The options as one argument string (values double-quoted). Does not validate.
#[pyfunction]
fn build_argument_string(options: &Bound<'_, PyDict>) -> PyResult<String> {
    Ok(options::build_argument_string(&options_from_dict(options)?))
}

/// The usage text (`-h`, and on a bad command line).
#[pyfunction]
fn usage() -> String {
    options::usage()
}

/// The one-line version string.
#[pyfunction]
fn version() -> String {
    crate::cli::version_line()
}

/// The sorted `Title....: value` diagnostics lines.
#[pyfunction]
fn diagnostics() -> Vec<String> {
    crate::cli::diagnostics()
}

/// Forgets pyo3-log's cached loggers and levels; call after (re)configuring `logging`.
#[pyfunction]
fn reset_log_cache() {
    if let Some(Some(handle)) = LOG_RESET.get() {
        handle.reset();
    }
}

/// A whole run, as the command line does it (start line, options, diagnostics, work,
/// final status line). Returns the exit status; Ctrl-C gives 5 after cleanup.
#[pyfunction]
fn execute(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<i32> {
    let opts = options_from_dict(options)?;
    let outcome = run_cancellable(py, move |cancel| async move {
        crate::cli::execute(&opts, cancel).await
    })?;
    Ok(match outcome {
        Outcome::Done(status) => status.code(),
        Outcome::Interrupted(_) => ExitStatus::Interrupted.code(),
    })
}

/// The work of a run without the start and end lines: raises `KeyboardInterrupt` on
/// Ctrl-C and `RuntimeError` with the reason on any failure (each detail is in the log).
#[pyfunction]
fn run_action(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let opts = options_from_dict(options)?;
    let outcome = run_cancellable(py, move |cancel| async move {
        let mut summary = Summary::default();
        if opts.restore {
            crate::restore::run_phases(&opts, &cancel, &mut summary).await
        } else {
            engine::run_phases(&opts, &cancel, &mut summary).await
        }
    })?;
    match outcome {
        Outcome::Done(Ok(())) => Ok(()),
        Outcome::Done(Err(engine::RunError::Interrupted)) => {
            Err(PyKeyboardInterrupt::new_err("interrupted"))
        }
        Outcome::Done(Err(e)) => Err(PyRuntimeError::new_err(e.to_string())),
        Outcome::Interrupted(signal) => Err(signal),
    }
}

/// The files of a source directory, as the core walked them.
#[pyclass(frozen, module = "cback3_s3sync._core")]
struct SourceTree {
    tree: Arc<walk::SourceTree>,
}

#[pymethods]
impl SourceTree {
    /// The source directory.
    #[getter]
    fn root(&self) -> OsString {
        self.tree.root.clone().into_os_string()
    }

    /// Paths of the regular files to upload (source directory joined with the relative name).
    fn paths(&self) -> Vec<OsString> {
        self.tree
            .files
            .iter()
            .map(|f| self.tree.path_of(f).into_os_string())
            .collect()
    }

    /// Paths whose names cannot be object keys, as log lines show them.
    fn problems(&self) -> Vec<String> {
        self.tree.problems.iter().map(|p| p.to_string()).collect()
    }

    /// The same tree keeping only the files whose paths are in `paths`.
    fn restrict(&self, paths: Vec<PathBuf>) -> SourceTree {
        let keep: std::collections::HashSet<PathBuf> = paths.into_iter().collect();
        let t = &self.tree;
        let files = t
            .files
            .iter()
            .filter(|f| keep.contains(&t.path_of(f)))
            .cloned()
            .collect();
        SourceTree {
            tree: Arc::new(walk::SourceTree {
                root: t.root.clone(),
                files,
                problems: t.problems.clone(),
                skipped: t.skipped.clone(),
                failures: t.failures.clone(),
            }),
        }
    }

    fn __len__(&self) -> usize {
        self.tree.files.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "<SourceTree {} ({} files)>",
            walk::display_path(&self.tree.root),
            self.tree.files.len()
        )
    }
}

/// Runs a blocking phase (the walk) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(RunError::Failed {
            cause: Cause::Internal,
            message: format!("source walk failed: {e}"),
        })
    })
}

/// Where a bucket URL is not needed (walking, the name check), names are checked as if
/// the files went to the root of a bucket.
fn bucket_root() -> BucketUrl {
    BucketUrl {
        bucket: "bucket".into(),
        prefix: String::new(),
    }
}

fn parse_url(url: &str) -> PyResult<BucketUrl> {
    BucketUrl::parse(url).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Walks a source directory (no name check). `ValueError` if it is missing or not a directory.
#[pyfunction]
#[pyo3(name = "walk")]
fn walk_source(py: Python<'_>, source_dir: PathBuf) -> PyResult<SourceTree> {
    let tree = py
        .detach(|| walk::walk(&source_dir, 0))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(SourceTree {
        tree: Arc::new(tree),
    })
}

/// Checks every name under the source: `ValueError` if any cannot be an object key.
#[pyfunction]
fn check_source_files(py: Python<'_>, source_dir: PathBuf) -> PyResult<()> {
    let outcome = run_cancellable(py, move |_cancel| async move {
        blocking(move || {
            let mut summary = Summary::default();
            engine::prepare(&source_dir, &bucket_root(), false, &mut summary).map(|_| ())
        })
        .await
    })?;
    phase_result(outcome)
}

/// Makes the bucket prefix a mirror of the source (without deletes when `upload_only`).
/// Files whose names cannot be keys are skipped with a warning. `OSError` on failure.
#[pyfunction]
#[pyo3(signature = (source_dir, s3_bucket_url, upload_only, max_concurrency = None, allow_empty_source = false))]
fn synchronize(
    py: Python<'_>,
    source_dir: PathBuf,
    s3_bucket_url: &str,
    upload_only: bool,
    max_concurrency: Option<usize>,
    allow_empty_source: bool,
) -> PyResult<()> {
    if let Some(n) = max_concurrency {
        if !(1..=options::MAX_CONCURRENCY).contains(&n) {
            return Err(value_error(format!(
                "max_concurrency must be from 1 to {}, not {n}",
                options::MAX_CONCURRENCY
            )));
        }
    }
    let job = Job {
        url: parse_url(s3_bucket_url)?,
        mode: if upload_only {
            Mode::UploadOnly
        } else {
            Mode::Full
        },
        concurrency: max_concurrency.unwrap_or(options::DEFAULT_MAX_CONCURRENCY),
        allow_empty_source,
        ignore_warnings: true,
        features: Default::default(),
    };
    let outcome = run_cancellable(py, move |cancel| async move {
        let url = job.url.clone();
        let tree =
            blocking(move || engine::prepare(&source_dir, &url, true, &mut Summary::default()))
                .await?;
        let mut summary = Summary::default();
        let (client, endpoint, s3_settings) =
            s3::client_for_run()
                .await
                .map_err(|message| engine::RunError::Failed {
                    cause: Cause::Config,
                    message,
                })?;
        let mut job = job;
        job.apply_s3_settings(&s3_settings, max_concurrency, None);
        let lock = engine::lock(&job, endpoint.as_deref())?;
        let listing = crate::listing::list(&client, &job.url, &cancel).await?;
        engine::synchronize(&client, &job, &lock, &tree, listing, &mut summary, &cancel)
            .await
            .map(|_| ())
    })?;
    phase_result(outcome)
}

/// Checks that every file of `tree` has an object of the same size under the URL.
/// `ValueError` listing nothing itself: one log line per difference.
#[pyfunction]
fn verify(py: Python<'_>, tree: &SourceTree, s3_bucket_url: &str) -> PyResult<()> {
    let job = Job {
        url: parse_url(s3_bucket_url)?,
        mode: Mode::VerifyOnly,
        concurrency: options::DEFAULT_MAX_CONCURRENCY,
        allow_empty_source: false,
        ignore_warnings: true,
        features: Default::default(),
    };
    let tree = Arc::clone(&tree.tree);
    let outcome = run_cancellable(py, move |cancel| async move {
        let mut summary = Summary::default();
        let client = s3::client()
            .await
            .map_err(|message| engine::RunError::Failed {
                cause: Cause::Config,
                message,
            })?;
        engine::verify(&client, &job, &tree, None, &mut summary, &cancel).await
    })?;
    phase_result(outcome)
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Once per process: a second import (sub-interpreter, reload) keeps the first logger.
    LOG_RESET.get_or_init(|| {
        pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels)
            .ok()
            .and_then(|l| l.install().ok())
    });
    m.add("__version__", crate::VERSION)?;
    m.add("FLOW_LOGGER", crate::FLOW.replace("::", "."))?;
    m.add("OUTPUT_LOGGER", crate::OUTPUT.replace("::", "."))?;
    m.add("DEFAULT_LOGFILE", options::DEFAULT_LOGFILE)?;
    m.add("DEFAULT_OWNER", options::DEFAULT_OWNER)?;
    m.add("DEFAULT_MODE", options::DEFAULT_MODE)?;
    m.add_class::<SourceTree>()?;
    m.add_function(wrap_pyfunction!(parse_options, m)?)?;
    m.add_function(wrap_pyfunction!(validate_options, m)?)?;
    m.add_function(wrap_pyfunction!(build_argument_list, m)?)?;
    m.add_function(wrap_pyfunction!(build_argument_string, m)?)?;
    m.add_function(wrap_pyfunction!(usage, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(diagnostics, m)?)?;
    m.add_function(wrap_pyfunction!(reset_log_cache, m)?)?;
    m.add_function(wrap_pyfunction!(execute, m)?)?;
    m.add_function(wrap_pyfunction!(run_action, m)?)?;
    m.add_function(wrap_pyfunction!(walk_source, m)?)?;
    m.add_function(wrap_pyfunction!(check_source_files, m)?)?;
    m.add_function(wrap_pyfunction!(synchronize, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    Ok(())
}
