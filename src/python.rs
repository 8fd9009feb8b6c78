//! The Python extension module `cback3_s3sync._core` (feature `python`). It translates and
//! nothing else: Python values to the core's and back, and the core's failures to Python
//! exceptions through one table ([`raise`]). Rules about Python values (the original's
//! `Options` setters and ordering) live in the shim, `python/cback3_s3sync/amazons3.py`.
//!
//! Options cross the boundary as a dict keyed by the Python property names of
//! `cback3_s3sync.amazons3.Options`. Paths travel as `str` with surrogateescape, so
//! undecodable file names round-trip.
//!
//! Every call that does I/O gets a tokio runtime of its own, shut down when it returns, so
//! nothing of one run (a task, a connection) lives on into the next in a long-lived host. It
//! runs with the GIL released (pyo3-log takes the GIL on the runtime's threads; holding it
//! here would deadlock) and polls for signals every 100 ms, so Ctrl-C cancels the run, waits
//! for its cleanup (multipart uploads aborted, nothing deleted) and then surfaces as
//! `KeyboardInterrupt`.

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use tokio_util::sync::CancellationToken;

use crate::options::{self, Kind, Options, OptionsError, Value};
use crate::report::{Cause, ExitStatus};
use crate::run::RunError;

/// pyo3-log's handle on the process's one `log` logger (the `log` crate allows one per
/// process): its cache of Python loggers and levels is dropped at the start of every call,
/// so each run sees the host's logging configuration as it is then.
static LOG_RESET: OnceLock<Option<pyo3_log::ResetHandle>> = OnceLock::new();

/// How often a running call comes back to Python to look for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Every way a call fails, before it becomes a Python exception in [`raise`].
enum Failure {
    /// A failure of the core, by its cause.
    Core(Cause, String),
    /// A command line `getopt` refuses, word for word.
    Getopt(String),
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        Failure::Core(e.cause(), e.to_string())
    }
}

impl From<OptionsError> for Failure {
    fn from(e: OptionsError) -> Self {
        match e {
            OptionsError::Getopt(msg) => Failure::Getopt(msg),
            OptionsError::Value(msg) => Failure::Core(Cause::BadInput, msg),
        }
    }
}

/// The one table from a failure to the Python exception, as the original raises them:
/// `ValueError` for bad input and a verification difference, `OSError` where the original's
/// AWS CLI call failed (S3, local I/O, configuration, lock), `getopt.GetoptError` for a bad
/// command line; `RuntimeError` only for a bug.
fn raise(py: Python<'_>, failure: impl Into<Failure>) -> PyErr {
    match failure.into() {
        Failure::Core(cause, msg) => match cause {
            Cause::Interrupted => PyKeyboardInterrupt::new_err(msg),
            Cause::Verification | Cause::BadInput => PyValueError::new_err(msg),
            Cause::S3(_) | Cause::LocalIo | Cause::Config | Cause::LockBusy => {
                PyOSError::new_err(msg)
            }
            Cause::Internal => PyRuntimeError::new_err(msg),
        },
        Failure::Getopt(msg) => match py
            .import("getopt")
            .and_then(|m| m.getattr("GetoptError"))
            .and_then(|cls| cls.call1((msg,)))
        {
            Ok(exc) => PyErr::from_value(exc),
            Err(err) => err,
        },
    }
}

fn bad_value(msg: String) -> Failure {
    Failure::Core(Cause::BadInput, msg)
}

/// How a cancellable call ended.
enum Outcome<T> {
    Done(T),
    /// Ctrl-C arrived: the task was cancelled and has finished its cleanup.
    Interrupted(PyErr),
}

/// Runs `work` on a runtime of its own with the GIL released, checking for signals between
/// waits; the runtime is shut down before this returns.
fn run_cancellable<T, F>(
    py: Python<'_>,
    work: impl FnOnce(CancellationToken) -> F,
) -> PyResult<Outcome<T>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    if let Some(Some(handle)) = LOG_RESET.get() {
        handle.reset();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cback3-s3sync")
        .build()
        .map_err(|e| {
            raise(
                py,
                Failure::Core(
                    Cause::Internal,
                    format!("cannot start the async runtime: {e}"),
                ),
            )
        })?;
    let cancel = CancellationToken::new();
    let mut handle = rt.spawn(work(cancel.clone()));
    let outcome = loop {
        let waited = py
            .detach(|| rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut handle).await }));
        match waited {
            Ok(Ok(value)) => break Ok(Outcome::Done(value)),
            Ok(Err(join)) => {
                let msg = format!("the sync task failed: {join}");
                break Err(raise(py, Failure::Core(Cause::Internal, msg)));
            }
            Err(_elapsed) => {}
        }
        if let Err(signal) = py.check_signals() {
            cancel.cancel();
            // Whatever the task returns now, the run was interrupted; wait for its cleanup.
            let _ = py.detach(|| rt.block_on(&mut handle));
            break Ok(Outcome::Interrupted(signal));
        }
    };
    py.detach(|| rt.shutdown_timeout(crate::cli::SHUTDOWN_TIMEOUT));
    outcome
}

/// The outcome of a step as Python sees it: the exception says what failed.
fn step_result<T>(py: Python<'_>, outcome: Outcome<Result<T, RunError>>) -> PyResult<T> {
    match outcome {
        Outcome::Done(Ok(v)) => Ok(v),
        Outcome::Done(Err(e)) => Err(raise(py, e)),
        Outcome::Interrupted(signal) => Err(signal),
    }
}

/// One field's value as Python sees it.
fn value_to_py<'py>(py: Python<'py>, v: Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Flag(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Path(p) => p.map(PathBuf::into_os_string).into_pyobject(py)?,
        Value::Owner(o) => o.into_pyobject(py)?,
        Value::Int(n) => n.into_pyobject(py)?,
        Value::Text(t) => t.into_pyobject(py)?,
    })
}

/// One field's value from Python, read as its kind says; `ValueError` naming the key if it
/// is not of that type.
fn value_from_py(key: &str, kind: Kind, v: &Bound<'_, PyAny>) -> Result<Value, Failure> {
    let bad = |e: PyErr| bad_value(format!("{key}: {e}"));
    if kind == Kind::Flag {
        return Ok(Value::Flag(v.is_truthy().map_err(bad)?));
    }
    let none = v.is_none();
    Ok(match kind {
        Kind::Flag => unreachable!(),
        Kind::Path => Value::Path((!none).then(|| v.extract()).transpose().map_err(bad)?),
        Kind::Owner => Value::Owner((!none).then(|| v.extract()).transpose().map_err(bad)?),
        Kind::Mode | Kind::Count | Kind::Rate => {
            Value::Int((!none).then(|| v.extract()).transpose().map_err(bad)?)
        }
        Kind::Choice | Kind::Text => {
            Value::Text((!none).then(|| v.extract()).transpose().map_err(bad)?)
        }
    })
}

/// Rust options → the dict the shim turns into its `Options`: one key per field of the table.
fn options_to_dict<'py>(py: Python<'py>, o: &Options) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for f in options::fields() {
        d.set_item(f.name, value_to_py(py, f.get(o))?)?;
    }
    Ok(d)
}

/// The shim's dict → Rust options. Every field of the table must be there and nothing else
/// (`ValueError` naming the key); what Rust cannot represent (a mode beyond 32 bits, say) is
/// a `ValueError` too.
fn options_from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> PyResult<Options> {
    let read = || -> Result<Options, Failure> {
        let mut o = Options::default();
        for f in options::fields() {
            let v =
                d.get_item(f.name).ok().flatten().ok_or_else(|| {
                    bad_value(format!("options: the key {:?} is missing", f.name))
                })?;
            f.set(&mut o, value_from_py(f.name, f.kind(), &v)?)?;
        }
        for key in d.keys() {
            let known = key
                .extract::<String>()
                .is_ok_and(|k| options::fields().any(|f| f.name == k));
            if !known {
                return Err(bad_value(format!("options: unknown key {key}")));
            }
        }
        Ok(o)
    };
    read().map_err(|f| raise(py, f))
}

/// One switch of the table, as Python reads it.
#[pyclass(frozen, get_all, module = "cback3_s3sync._core")]
struct Switch {
    /// Long name, without `--`.
    long: &'static str,
    /// Short letter, for the original's switches.
    short: Option<char>,
    /// Placeholder of the value in the usage text; `None` for a flag.
    value_name: Option<&'static str>,
    /// Whether the original tool has this switch.
    original: bool,
    /// The `Options` property it sets.
    field: &'static str,
    /// That property's kind (see `FIELDS`).
    kind: &'static str,
    /// Usage text, lines separated by `\n`.
    help: &'static str,
}

#[pymethods]
impl Switch {
    fn __repr__(&self) -> String {
        format!("<Switch --{} ({})>", self.long, self.field)
    }
}

/// One property of `Options`, as Python reads it.
#[pyclass(frozen, get_all, module = "cback3_s3sync._core")]
struct Field {
    /// The property's name.
    name: &'static str,
    /// `flag`, `path`, `owner`, `mode`, `count`, `rate`, `choice` or `str`.
    kind: &'static str,
}

#[pymethods]
impl Field {
    fn __repr__(&self) -> String {
        format!("<Field {} ({})>", self.name, self.kind)
    }
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
    let opts = options::parse_unvalidated(&argv).map_err(|e| raise(py, e))?;
    if validate {
        opts.validate().map_err(|e| raise(py, e))?;
    }
    options_to_dict(py, &opts)
}

/// `ValueError` unless a run could start from these options.
#[pyfunction]
fn validate_options(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    options_from_dict(py, options)?
        .validate()
        .map_err(|e| raise(py, e))
}

/// The options as an argument list (long switch names, fixed order). Does not validate.
#[pyfunction]
fn build_argument_list(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<Vec<String>> {
    Ok(options::build_argument_list(&options_from_dict(
        py, options,
    )?))
}

/// The options as one argument string (values double-quoted). Does not validate.
#[pyfunction]
fn build_argument_string(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<String> {
    Ok(options::build_argument_string(&options_from_dict(
        py, options,
    )?))
}

/// An argument string split into arguments, as Cedar Backup splits it.
#[pyfunction]
fn split_argument_string(text: &str) -> Vec<String> {
    options::split_argument_string(text)
}

/// The usage text (`-h`, and on a bad command line).
#[pyfunction]
fn usage() -> String {
    options::usage()
}

/// What a bad command line prints to stderr: the usage, then the error.
#[pyfunction]
fn usage_error(message: &str) -> String {
    options::usage_error(&message)
}

/// What `-V` prints to stdout.
#[pyfunction]
fn version_text() -> String {
    crate::diagnostics::version_text()
}

/// What `-D` prints to stdout for these options, with `extra` `(title, value)` lines among
/// the diagnostics.
#[pyfunction]
fn diagnostics_report(
    py: Python<'_>,
    options: &Bound<'_, PyDict>,
    extra: Vec<(String, String)>,
) -> PyResult<String> {
    let opts = options_from_dict(py, options)?;
    Ok(py.detach(|| crate::diagnostics::report(&opts, &extra)))
}

/// The `logging` level of the screen for these options (what -b, -q, -d and --dryRun show).
#[pyfunction]
fn screen_level(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<u32> {
    let opts = options_from_dict(py, options)?;
    Ok(crate::logging::Levels::from_options(&opts).screen_python_level())
}

/// Creates or opens the logfile as the binary does (mode, owner); `OSError` with the
/// binary's reason text if it cannot.
#[pyfunction]
fn prepare_logfile(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let opts = options_from_dict(py, options)?;
    crate::logging::prepare_logfile(&opts).map_err(|e| {
        let text = crate::logging::setup_error_text(&e, &opts);
        raise(py, Failure::Core(Cause::LocalIo, text))
    })
}

/// Which program the command name runs: `(title, value)` diagnostics and at most one warning.
#[pyfunction]
fn command_check(
    py: Python<'_>,
    script: PathBuf,
    search_path: &str,
    python: &str,
) -> (Vec<(String, String)>, Option<String>) {
    py.detach(|| crate::command_check::check(&script, search_path, python))
}

/// A whole run, as the command line does it (start line, options, diagnostics, work,
/// summary, final status line). Returns the exit status; Ctrl-C gives 5 after cleanup.
#[pyfunction]
fn execute(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<i32> {
    let opts = options_from_dict(py, options)?;
    let outcome = run_cancellable(py, move |cancel| async move {
        crate::cli::execute(&opts, cancel).await
    })?;
    Ok(match outcome {
        Outcome::Done(status) => status.code(),
        Outcome::Interrupted(_) => ExitStatus::Interrupted.code(),
    })
}

/// The work of a run without the start and end lines (summary included).
#[pyfunction]
fn run_action(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let opts = options_from_dict(py, options)?;
    let outcome = run_cancellable(py, move |cancel| async move {
        crate::phases::run_action(&opts, &cancel).await
    })?;
    step_result(py, outcome)
}

/// The paths of the regular files under a source directory, as the core walks it.
#[pyfunction]
fn walk(py: Python<'_>, source_dir: PathBuf) -> PyResult<Vec<OsString>> {
    let tree = py
        .detach(|| crate::phases::walk(&source_dir))
        .map_err(|e| raise(py, e))?;
    Ok(tree
        .files
        .iter()
        .map(|f| tree.path_of(f).into_os_string())
        .collect())
}

/// Checks every name under the source (see `phases::check_source_files`).
#[pyfunction]
fn check_source_files(py: Python<'_>, source_dir: PathBuf) -> PyResult<()> {
    let outcome = run_cancellable(py, move |_cancel| async move {
        crate::phases::check_source_files(source_dir).await
    })?;
    step_result(py, outcome)
}

/// The sync phase of a run for these options (see `phases::synchronize`).
#[pyfunction]
fn synchronize(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let opts = options_from_dict(py, options)?;
    let outcome = run_cancellable(py, move |cancel| async move {
        crate::phases::synchronize(&opts, &cancel).await
    })?;
    step_result(py, outcome)
}

/// Checks the listed files against the objects under the URL (see `phases::verify_paths`).
#[pyfunction]
#[pyo3(signature = (source_dir, paths, s3_bucket_url, logfile = None))]
fn verify(
    py: Python<'_>,
    source_dir: PathBuf,
    paths: Vec<PathBuf>,
    s3_bucket_url: String,
    logfile: Option<PathBuf>,
) -> PyResult<()> {
    let outcome = run_cancellable(py, move |cancel| async move {
        crate::phases::verify_paths(source_dir, paths, &s3_bucket_url, logfile, &cancel).await
    })?;
    step_result(py, outcome)
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
    m.add("COMMAND", crate::command_check::COMMAND)?;
    m.add("OWN_COMMAND", crate::command_check::OWN_COMMAND)?;
    let switches = options::SWITCHES.iter().map(|s| Switch {
        long: s.long,
        short: s.short,
        value_name: s.value_name,
        original: s.original,
        field: s.field.name,
        kind: s.field.kind().name(),
        help: s.help,
    });
    m.add(
        "SWITCHES",
        PyTuple::new(
            py,
            switches
                .map(|s| Bound::new(py, s))
                .collect::<PyResult<Vec<_>>>()?,
        )?,
    )?;
    let fields = options::fields().map(|f| Field {
        name: f.name,
        kind: f.kind().name(),
    });
    m.add(
        "FIELDS",
        PyTuple::new(
            py,
            fields
                .map(|f| Bound::new(py, f))
                .collect::<PyResult<Vec<_>>>()?,
        )?,
    )?;
    m.add_class::<Switch>()?;
    m.add_class::<Field>()?;
    m.add_function(wrap_pyfunction!(parse_options, m)?)?;
    m.add_function(wrap_pyfunction!(validate_options, m)?)?;
    m.add_function(wrap_pyfunction!(build_argument_list, m)?)?;
    m.add_function(wrap_pyfunction!(build_argument_string, m)?)?;
    m.add_function(wrap_pyfunction!(split_argument_string, m)?)?;
    m.add_function(wrap_pyfunction!(usage, m)?)?;
    m.add_function(wrap_pyfunction!(usage_error, m)?)?;
    m.add_function(wrap_pyfunction!(version_text, m)?)?;
    m.add_function(wrap_pyfunction!(diagnostics_report, m)?)?;
    m.add_function(wrap_pyfunction!(screen_level, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_logfile, m)?)?;
    m.add_function(wrap_pyfunction!(command_check, m)?)?;
    m.add_function(wrap_pyfunction!(execute, m)?)?;
    m.add_function(wrap_pyfunction!(run_action, m)?)?;
    m.add_function(wrap_pyfunction!(walk, m)?)?;
    m.add_function(wrap_pyfunction!(check_source_files, m)?)?;
    m.add_function(wrap_pyfunction!(synchronize, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    Ok(())
}
