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

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyString, PyTuple};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::bucket_url::BucketUrl;
use crate::engine::RunError;
use crate::options::{self, Kind, Options, OptionsError, Value};
use crate::report::{Cause, ExitStatus};
use crate::walk;

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
fn value_from_py(key: &str, kind: Kind, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let bad = |e: PyErr| PyValueError::new_err(format!("{key}: {e}"));
    if kind == Kind::Flag {
        return Ok(Value::Flag(v.is_truthy()?));
    }
    if v.is_none() {
        return Ok(match kind {
            Kind::Flag => unreachable!(),
            Kind::Path => Value::Path(None),
            Kind::Owner => Value::Owner(None),
            Kind::Mode | Kind::Count | Kind::Rate => Value::Int(None),
            Kind::Choice | Kind::Text => Value::Text(None),
        });
    }
    Ok(match kind {
        Kind::Flag => unreachable!(),
        Kind::Path => Value::Path(Some(v.extract::<PathBuf>().map_err(bad)?)),
        Kind::Owner => Value::Owner(Some(v.extract::<(String, String)>().map_err(bad)?)),
        Kind::Mode | Kind::Count | Kind::Rate => Value::Int(Some(v.extract::<u64>().map_err(bad)?)),
        Kind::Choice | Kind::Text => Value::Text(Some(v.extract::<String>().map_err(bad)?)),
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
    let mut o = Options::default();
    for f in options::fields() {
        let Some(v) = d.get_item(f.name)? else {
            return Err(PyValueError::new_err(format!(
                "options: the key {:?} is missing",
                f.name
            )));
        };
        f.set(&mut o, value_from_py(f.name, f.kind(), &v)?)
            .map_err(|e| options_error(py, e))?;
    }
    for key in d.keys() {
        let known = key
            .extract::<String>()
            .is_ok_and(|k| options::fields().any(|f| f.name == k));
        if !known {
            return Err(PyValueError::new_err(format!("options: unknown key {key}")));
        }
    }
    Ok(o)
}

/// The switch table as Python reads it: one `(long, short, value_name, original, field,
/// kind, help)` tuple per switch, in the table's order.
type SwitchRecord = (
    &'static str,
    Option<String>,
    Option<&'static str>,
    bool,
    &'static str,
    &'static str,
    &'static str,
);

fn switch_records() -> Vec<SwitchRecord> {
    options::SWITCHES
        .iter()
        .map(|s| {
            (
                s.long,
                s.short.map(String::from),
                s.value_name,
                s.original,
                s.field.name,
                s.field.kind().name(),
                s.help,
            )
        })
        .collect()
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
    options_from_dict(py, options)?
        .validate()
        .map_err(|e| options_error(py, e))
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

/// The value an `Options` property stores when set to `value`, or `ValueError` with the
/// original's message, word for word. The original's fields keep its setter rules, with
/// Python's own `len()` and `int()` (so any object behaves as it did there); flags take any
/// truth value; our own switches' values are read by the core as on the command line.
#[pyfunction]
fn check_field<'py>(
    py: Python<'py>,
    name: &str,
    value: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let Some(field) = options::fields().find(|f| f.name == name) else {
        return Err(PyValueError::new_err(format!(
            "options: unknown key {name}"
        )));
    };
    let non_empty = |value: &Bound<'py, PyAny>| -> PyResult<()> {
        if !value.is_none() && value.len()? < 1 {
            return Err(PyValueError::new_err(format!(
                "The {name} parameter must be a non-empty string."
            )));
        }
        Ok(())
    };
    match name {
        "logfile" => {
            non_empty(&value)?;
            fsdecode(py, value) // bytes as os.listdir decodes them
        }
        "sourceDir" | "s3BucketUrl" => non_empty(&value).map(|()| value),
        "owner" => check_owner(py, value),
        "mode" => check_mode(py, value),
        _ if field.kind() == Kind::Flag => {
            Ok(PyBool::new(py, value.is_truthy()?).to_owned().into_any())
        }
        _ => check_own_switch(py, field, value),
    }
}

/// `bytes` decoded as `os.fsdecode` does; anything else unchanged.
fn fsdecode<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if value.is_instance_of::<PyBytes>() {
        return py.import("os")?.call_method1("fsdecode", (value,));
    }
    Ok(value)
}

fn check_owner<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if value.is_none() {
        return Ok(value);
    }
    if value.is_instance_of::<PyString>() || value.len()? != 2 {
        return Err(PyValueError::new_err(
            "Must specify user and group tuple for owner parameter.",
        ));
    }
    let (user, group) = (value.get_item(0)?, value.get_item(1)?);
    if user.len()? < 1 || group.len()? < 1 {
        return Err(PyValueError::new_err(
            "User and group tuple values must be non-empty strings.",
        ));
    }
    Ok(PyTuple::new(py, [user, group])?.into_any())
}

fn check_mode<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if value.is_none() {
        return Ok(value);
    }
    let int = py.get_type::<PyInt>();
    let number = if value.is_instance_of::<PyString>() {
        int.call1((value, 8)) // "644" is octal, as on the command line
    } else {
        int.call1((value,))
    };
    // The original's two messages differ by one character; both are kept as they are.
    let number = number.map_err(|e| {
        if !e.is_instance_of::<PyTypeError>(py) {
            return e;
        }
        let err = PyValueError::new_err("Mode must be an octal integer >= 0, i.e. 644.");
        err.set_cause(py, Some(e));
        err
    })?;
    if number.lt(0)? {
        return Err(PyValueError::new_err(
            "Mode must be an octal integer >= 0. i.e. 644.",
        ));
    }
    Ok(number)
}

/// One of our own valued switches: the value is read by the core as `--long=value`.
fn check_own_switch<'py>(
    py: Python<'py>,
    field: &options::Field,
    value: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if value.is_none() {
        return Ok(value);
    }
    let Some(switch) = options::SWITCHES
        .iter()
        .find(|s| s.field.name == field.name)
    else {
        return Err(PyValueError::new_err(format!(
            "options: {} has no switch",
            field.name
        )));
    };
    let text: OsString = if value.is_instance_of::<PyBytes>() {
        fsdecode(py, value)?.extract()?
    } else {
        value.str()?.extract()?
    };
    let mut arg = OsString::from(format!("--{}=", switch.long));
    arg.push(text);
    let opts = options::parse_unvalidated(&[arg]).map_err(|e| options_error(py, e))?;
    value_to_py(py, field.get(&opts))
}

/// Compares two options dicts field by field in the table's order, as the original's
/// `Options` does: -1, 0 or 1. Numbers compare as numbers (unset as 0), two flags as
/// flags, anything else as text (unset as "").
#[pyfunction]
fn compare_options<'py>(
    py: Python<'py>,
    mine: &Bound<'py, PyDict>,
    theirs: &Bound<'py, PyDict>,
) -> PyResult<i32> {
    let int = py.get_type::<PyInt>();
    let text = py.get_type::<PyString>();
    for f in options::fields() {
        let get = |d: &Bound<'py, PyDict>| -> PyResult<Bound<'py, PyAny>> {
            d.get_item(f.name)?.ok_or_else(|| {
                PyValueError::new_err(format!("options: the key {:?} is missing", f.name))
            })
        };
        let (a, b) = (get(mine)?, get(theirs)?);
        if a.eq(&b)? {
            continue;
        }
        let or = |v: Bound<'py, PyAny>, unset: Bound<'py, PyAny>| -> PyResult<Bound<'py, PyAny>> {
            Ok(if v.is_truthy()? { v } else { unset })
        };
        let less = match f.kind() {
            Kind::Mode | Kind::Count | Kind::Rate => {
                let zero = 0i32.into_pyobject(py)?.into_any();
                int.call1((or(a, zero.clone())?,))?
                    .lt(int.call1((or(b, zero)?,))?)?
            }
            _ if a.is_instance_of::<PyBool>() && b.is_instance_of::<PyBool>() => a.lt(b)?,
            _ => {
                let empty = PyString::new(py, "").into_any();
                text.call1((or(a, empty.clone())?,))?
                    .lt(text.call1((or(b, empty)?,))?)?
            }
        };
        return Ok(if less { -1 } else { 1 });
    }
    Ok(0)
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
    crate::logging::prepare_logfile(&opts)
        .map_err(|e| PyOSError::new_err(crate::logging::setup_error_text(&e)))
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
    let opts = options_from_dict(py, options)?;
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
    let opts = options_from_dict(py, options)?;
    let outcome = run_cancellable(py, move |cancel| async move {
        crate::phases::run_action(&opts, &cancel).await
    })?;
    match outcome {
        Outcome::Done(Ok(())) => Ok(()),
        Outcome::Done(Err(RunError::Interrupted)) => {
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
                dirs: t.dirs.clone(),
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
            crate::display::display_path(&self.tree.root),
            self.tree.files.len()
        )
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
        crate::phases::check_source_files(source_dir).await
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
    let job = crate::phases::sync_job(
        parse_url(s3_bucket_url)?,
        upload_only,
        max_concurrency,
        allow_empty_source,
    )
    .map_err(|e| options_error(py, e))?;
    let outcome = run_cancellable(py, move |cancel| async move {
        crate::phases::synchronize(source_dir, job, max_concurrency, cancel).await
    })?;
    phase_result(outcome)
}

/// Checks that every file of `tree` has an object of the same size under the URL.
/// `ValueError` listing nothing itself: one log line per difference.
#[pyfunction]
fn verify(py: Python<'_>, tree: &SourceTree, s3_bucket_url: &str) -> PyResult<()> {
    let url = parse_url(s3_bucket_url)?;
    let tree = Arc::clone(&tree.tree);
    let outcome = run_cancellable(py, move |cancel| async move {
        crate::phases::verify(tree, url, cancel).await
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
    m.add("COMMAND", crate::command_check::COMMAND)?;
    m.add("OWN_COMMAND", crate::command_check::OWN_COMMAND)?;
    m.add("SWITCHES", PyTuple::new(py, switch_records())?)?;
    m.add(
        "FIELDS",
        PyTuple::new(
            py,
            options::fields()
                .map(|f| (f.name, f.kind().name()))
                .collect::<Vec<_>>(),
        )?,
    )?;
    m.add_class::<SourceTree>()?;
    m.add_function(wrap_pyfunction!(parse_options, m)?)?;
    m.add_function(wrap_pyfunction!(validate_options, m)?)?;
    m.add_function(wrap_pyfunction!(build_argument_list, m)?)?;
    m.add_function(wrap_pyfunction!(build_argument_string, m)?)?;
    m.add_function(wrap_pyfunction!(split_argument_string, m)?)?;
    m.add_function(wrap_pyfunction!(check_field, m)?)?;
    m.add_function(wrap_pyfunction!(compare_options, m)?)?;
    m.add_function(wrap_pyfunction!(usage, m)?)?;
    m.add_function(wrap_pyfunction!(usage_error, m)?)?;
    m.add_function(wrap_pyfunction!(version_text, m)?)?;
    m.add_function(wrap_pyfunction!(diagnostics_report, m)?)?;
    m.add_function(wrap_pyfunction!(screen_level, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_logfile, m)?)?;
    m.add_function(wrap_pyfunction!(command_check, m)?)?;
    m.add_function(wrap_pyfunction!(reset_log_cache, m)?)?;
    m.add_function(wrap_pyfunction!(execute, m)?)?;
    m.add_function(wrap_pyfunction!(run_action, m)?)?;
    m.add_function(wrap_pyfunction!(walk_source, m)?)?;
    m.add_function(wrap_pyfunction!(check_source_files, m)?)?;
    m.add_function(wrap_pyfunction!(synchronize, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    Ok(())
}
