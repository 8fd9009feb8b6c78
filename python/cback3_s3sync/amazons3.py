"""Drop-in replacement for ``CedarBackup3.tools.amazons3``, backed by the Rust core.

The public names and signatures are those of the Cedar Backup module, so code and
scripts that import it keep working after ``import cback3_s3sync.amazons3 as amazons3``.
What changed is underneath: the command line is parsed by the core's getopt-compatible
parser, and the sync and the verification talk to S3 directly (no AWS CLI, no
subprocess). Log records keep Cedar Backup's logger names, so an existing logfile reads
as it always has.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import sys
import sysconfig
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, ClassVar, SupportsInt

from cback3_s3sync import _core

__all__ = [
    "DEFAULT_LOGFILE",
    "DEFAULT_MODE",
    "DEFAULT_OWNERSHIP",
    "LONG_SWITCHES",
    "SHORT_SWITCHES",
    "Options",
    "cli",
]

logger = logging.getLogger(_core.FLOW_LOGGER)

DEFAULT_LOGFILE: str = _core.DEFAULT_LOGFILE
DEFAULT_OWNERSHIP: list[str] = list(_core.DEFAULT_OWNER)
DEFAULT_MODE: int = _core.DEFAULT_MODE

# The switch table comes from the core; the original's SHORT_SWITCHES and LONG_SWITCHES (for
# code that reads them) are its `original` entries. The core's parser is the authority.
SHORT_SWITCHES = "".join(
    f"{s.short}{':' if s.value_name else ''}" for s in _core.SWITCHES if s.original and s.short
)
LONG_SWITCHES = [f"{s.long}{'=' if s.value_name else ''}" for s in _core.SWITCHES if s.original]
# Every property of Options with its kind, in the comparison order (the original's, then ours).
_KINDS = {f.name: f.kind for f in _core.FIELDS}
_FIELDS = tuple(_KINDS)
_SWITCH_OF = {s.field: s for s in _core.SWITCHES}
_NUMBERS = ("mode", "count", "rate")

# Cedar Backup's logfile layout, used when Cedar Backup itself is not installed.
_DISK_FORMAT = "%(asctime)s --> [%(levelname)-7s] %(message)s"
_DISK_OUTPUT_FORMAT = "%(message)s"
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S %Z"
_CEDAR_LOGGERS = ("CedarBackup3.log", "CedarBackup3.output")

_MIN_PYTHON = (3, 11)


# The rules of the original's setters, with its messages word for word (its two mode messages
# differ by one character; both are kept as they are).
def _non_empty(name: str, value: Any) -> Any:
    if value is not None and len(value) < 1:
        raise ValueError(f"The {name} parameter must be a non-empty string.")
    return value


def _set_logfile(value: Any) -> Any:
    # bytes are decoded as os.listdir decodes names, as the original does.
    value = _non_empty("logfile", value)
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _set_owner(value: Any) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if isinstance(value, str) or len(value) != 2:
        raise ValueError("Must specify user and group tuple for owner parameter.")
    if len(value[0]) < 1 or len(value[1]) < 1:
        raise ValueError("User and group tuple values must be non-empty strings.")
    return (value[0], value[1])


def _set_mode(value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value, 8) if isinstance(value, str) else int(value)  # "644" is octal
    except TypeError as e:
        raise ValueError("Mode must be an octal integer >= 0, i.e. 644.") from e
    if number < 0:
        raise ValueError("Mode must be an octal integer >= 0. i.e. 644.")
    return number


def _set_own_switch(name: str, value: Any) -> Any:
    """One of this implementation's valued switches: the core reads the value as it reads
    ``--switch=value`` on the command line, so both front ends accept the same values."""
    if value is None:
        return None
    text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
    parsed = _core.parse_options([f"--{_SWITCH_OF[name].long}={text}"], validate=False)
    return parsed[name]  # type: ignore[literal-required]  # name is a key of the table


def _checked(name: str, value: Any) -> Any:
    """The value the property ``name`` stores when set to ``value``, or ``ValueError``."""
    if _KINDS[name] == "flag":
        return bool(value)
    if name == "logfile":
        return _set_logfile(value)
    if name in ("sourceDir", "s3BucketUrl"):
        return _non_empty(name, value)
    if name == "owner":
        return _set_owner(value)
    if name == "mode":
        return _set_mode(value)
    return _set_own_switch(name, value)


def _less(kind: str, mine: Any, theirs: Any) -> bool:
    """The original's ordering of one field: numbers as numbers (unset as 0), flags as
    flags, anything else as text (unset as "")."""
    if kind in _NUMBERS:
        return int(mine or 0) < int(theirs or 0)
    if isinstance(mine, bool) and isinstance(theirs, bool):
        return mine < theirs
    return str(mine or "") < str(theirs or "")


@functools.total_ordering
class Options:
    """The switches and arguments of ``cback3-amazons3-sync``, as an object.

    Build it from an argument list or an argument string (parsed by the Rust core with
    Python ``getopt`` semantics), or empty and fill the properties one by one. Each
    property setter checks its own value (``ValueError``); :meth:`validate` checks the
    whole. There is one property per entry of the core's switch table (``_core.FIELDS``):
    the original's, with its setter rules, and this implementation's own long switches
    (``maxConcurrency``, ``dryRun``, ...), whose values the core reads as on the command
    line and which are left out of the output when unset.
    """

    __hash__: ClassVar[None]  # type: ignore[assignment]  # mutable and compared by value

    if TYPE_CHECKING:  # The properties are made from the core's table (below); stubtest
        # checks these declarations against them. A setter takes what the original's does.
        @property
        def help(self) -> bool: ...
        @help.setter
        def help(self, value: object) -> None: ...
        @property
        def version(self) -> bool: ...
        @version.setter
        def version(self, value: object) -> None: ...
        @property
        def verbose(self) -> bool: ...
        @verbose.setter
        def verbose(self, value: object) -> None: ...
        @property
        def quiet(self) -> bool: ...
        @quiet.setter
        def quiet(self, value: object) -> None: ...
        @property
        def logfile(self) -> str | None: ...
        @logfile.setter
        def logfile(self, value: str | bytes | None) -> None: ...
        @property
        def owner(self) -> tuple[str, str] | None: ...
        @owner.setter
        def owner(self, value: Sequence[str] | None) -> None: ...
        @property
        def mode(self) -> int | None: ...
        @mode.setter
        def mode(self, value: SupportsInt | str | None) -> None: ...
        @property
        def output(self) -> bool: ...
        @output.setter
        def output(self, value: object) -> None: ...
        @property
        def debug(self) -> bool: ...
        @debug.setter
        def debug(self, value: object) -> None: ...
        @property
        def stacktrace(self) -> bool: ...
        @stacktrace.setter
        def stacktrace(self, value: object) -> None: ...
        @property
        def diagnostics(self) -> bool: ...
        @diagnostics.setter
        def diagnostics(self, value: object) -> None: ...
        @property
        def verifyOnly(self) -> bool: ...
        @verifyOnly.setter
        def verifyOnly(self, value: object) -> None: ...
        @property
        def uploadOnly(self) -> bool: ...
        @uploadOnly.setter
        def uploadOnly(self, value: object) -> None: ...
        @property
        def ignoreWarnings(self) -> bool: ...
        @ignoreWarnings.setter
        def ignoreWarnings(self, value: object) -> None: ...
        @property
        def sourceDir(self) -> str | None: ...
        @sourceDir.setter
        def sourceDir(self, value: str | None) -> None: ...
        @property
        def s3BucketUrl(self) -> str | None: ...
        @s3BucketUrl.setter
        def s3BucketUrl(self, value: str | None) -> None: ...
        @property
        def maxConcurrency(self) -> int | None: ...
        @maxConcurrency.setter
        def maxConcurrency(self, value: int | str | None) -> None: ...
        @property
        def allowEmptySource(self) -> bool: ...
        @allowEmptySource.setter
        def allowEmptySource(self, value: object) -> None: ...
        @property
        def verifyContent(self) -> bool: ...
        @verifyContent.setter
        def verifyContent(self, value: object) -> None: ...
        @property
        def dryRun(self) -> bool: ...
        @dryRun.setter
        def dryRun(self, value: object) -> None: ...
        @property
        def summaryFile(self) -> str | None: ...
        @summaryFile.setter
        def summaryFile(self, value: str | bytes | None) -> None: ...
        @property
        def maxDeletes(self) -> int | None: ...
        @maxDeletes.setter
        def maxDeletes(self, value: int | str | None) -> None: ...
        @property
        def maxBandwidth(self) -> int | None: ...
        @maxBandwidth.setter
        def maxBandwidth(self, value: int | str | None) -> None: ...
        @property
        def storageClass(self) -> str | None: ...
        @storageClass.setter
        def storageClass(self, value: str | None) -> None: ...
        @property
        def sse(self) -> str | None: ...
        @sse.setter
        def sse(self, value: str | None) -> None: ...
        @property
        def sseKmsKeyId(self) -> str | None: ...
        @sseKmsKeyId.setter
        def sseKmsKeyId(self, value: str | None) -> None: ...
        @property
        def restore(self) -> bool: ...
        @restore.setter
        def restore(self, value: object) -> None: ...
        @property
        def overwrite(self) -> bool: ...
        @overwrite.setter
        def overwrite(self, value: object) -> None: ...

    def __init__(
        self,
        argumentList: Sequence[str] | None = None,
        argumentString: str | None = None,
        validate: bool = True,
    ) -> None:
        self._values: dict[str, Any] = {n: (False if k == "flag" else None) for n, k in _KINDS.items()}
        if argumentList is not None and argumentString is not None:
            raise ValueError("Give argumentList or argumentString, not both.")
        # Split as Cedar Backup splits it: plain spaces; a non-empty double-quoted run is one field.
        args = _core.split_argument_string(argumentString) if argumentString is not None else argumentList
        if args is not None:
            parsed: dict[str, Any] = dict(_core.parse_options(list(args), validate=False))
            for name in _FIELDS:
                setattr(self, name, parsed[name])
            if validate:
                self.validate()

    def __repr__(self) -> str:
        return self.buildArgumentString(validate=False)

    __str__ = __repr__

    def _compare(self, other: Options | None) -> int:
        """-1, 0 or 1: field by field in the table's order, as the original compares."""
        if other is None:
            return 1
        for name, kind in _KINDS.items():
            mine, theirs = self._values[name], other._values[name]
            if mine != theirs:
                return -1 if _less(kind, mine, theirs) else 1
        return 0

    def __eq__(self, other: object) -> bool:
        return self._compare(other) == 0  # type: ignore[arg-type]

    def __lt__(self, other: Options) -> bool:
        return self._compare(other) < 0

    def _as_dict(self) -> _core.OptionsDict:
        return self._values.copy()  # type: ignore[return-value]

    def validate(self) -> None:
        """Raises ``ValueError`` unless a run could start from these options (the command
        line's rules, which the core holds for both front ends)."""
        _core.validate_options(self._as_dict())

    def buildArgumentList(self, validate: bool = True) -> list[str]:
        """The options as an argument list: long switch names in a fixed order, then the
        two positional arguments. Feeding it back to ``Options`` gives an equal object."""
        if validate:
            self.validate()
        return _core.build_argument_list(self._as_dict())

    def buildArgumentString(self, validate: bool = True) -> str:
        """Like :meth:`buildArgumentList`, as one string with every text value in double quotes."""
        if validate:
            self.validate()
        return _core.build_argument_string(self._as_dict())


def _property(name: str) -> property:
    def get(self: Options) -> Any:
        return self._values[name]

    def set_(self: Options, value: Any) -> None:
        self._values[name] = _checked(name, value)

    switch = _SWITCH_OF.get(name)
    doc = switch.help.replace("\n", " ") if switch else f"The {name} argument."
    return property(get, set_, None, doc)


for _name in _FIELDS:
    setattr(Options, _name, _property(_name))


# Command line -----------------------------------------------------------------------


def cli() -> int:
    """The ``cback3-amazons3-sync`` command: returns the exit status.

    0 success, 1 unsupported Python, 2 bad command line, 3 logging could not be set up,
    5 interrupted (Ctrl-C), 6 any other failure. What it prints is the core's, as the
    binary's: only ``-D`` adds lines of its own (which program the command name runs).
    """
    if sys.version_info[:2] < _MIN_PYTHON:
        sys.stderr.write("Python {}.{} or newer is required.\n".format(*_MIN_PYTHON))
        return 1
    try:
        options = Options(argumentList=sys.argv[1:])
    except Exception as e:
        sys.stderr.write(_core.usage_error(str(e)))
        return 2
    if options.help:
        _usage()
        return 0
    if options.version:
        _version()
        return 0
    if options.diagnostics:
        _diagnostics_for(options)
        return 0
    # The handlers this run adds go when it ends: a second run in the same process logs
    # each line once, as the first did.
    saved = _cedar_logging()
    try:
        try:
            _core.prepare_logfile(options._as_dict())  # created (mode, owner) as the binary does
            _setup_logging(options)
        except Exception as e:
            sys.stderr.write(f"Error setting up logging: {e}\n")
            return 3
        return _core.execute(options._as_dict())
    finally:
        _restore_cedar_logging(saved)


def main() -> None:
    """Console entry point: exits with :func:`cli`'s status."""
    sys.exit(cli())


def _setup_logging(options: Options) -> str:
    """Sets up logging as Cedar Backup does, with Cedar Backup's own code when it is
    installed (one logfile shared by all its tools), and returns the logfile path."""
    try:
        from CedarBackup3.cli import setupLogging
    except ImportError:
        logfile = _setup_own_logging(options)
    else:
        logfile = str(setupLogging(options))
        # The screen shows what the binary's does (--dryRun's plan, say): the core's rule.
        level = _core.screen_level(options._as_dict())
        for handler in logging.getLogger("CedarBackup3.log").handlers:
            if type(handler) is logging.StreamHandler:
                handler.setLevel(level)
    return logfile


def _cedar_logging() -> dict[str, tuple[int, list[logging.Handler]]]:
    """The level and handlers of Cedar Backup's two loggers."""
    return {
        name: (lg.level, list(lg.handlers)) for name in _CEDAR_LOGGERS for lg in [logging.getLogger(name)]
    }


def _restore_cedar_logging(saved: dict[str, tuple[int, list[logging.Handler]]]) -> None:
    """Puts Cedar Backup's loggers back as :func:`_cedar_logging` found them, closing the
    handlers added since."""
    for name, (level, handlers) in saved.items():
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if h not in handlers:
                lg.removeHandler(h)
                h.close()
        lg.setLevel(level)


def _host_logfile() -> str | None:
    """The file the host's logging writes this tool's records to (the first file handler
    on their way up), if any: one of the run's own files when it is inside the source."""
    lg: logging.Logger | None = logging.getLogger(_core.FLOW_LOGGER)
    while lg is not None:
        for h in lg.handlers:
            if isinstance(h, logging.FileHandler):
                return h.baseFilename
        lg = lg.parent if lg.propagate else None
    return None


def _setup_own_logging(options: Options) -> str:
    path = options.logfile or DEFAULT_LOGFILE
    flow = logging.getLogger("CedarBackup3.log")
    flow.setLevel(logging.DEBUG)
    disk = logging.FileHandler(path, mode="a", encoding="utf-8")
    disk.setFormatter(logging.Formatter(fmt=_DISK_FORMAT, datefmt=_DATE_FORMAT))
    disk.setLevel(logging.DEBUG if options.debug else logging.INFO)
    flow.addHandler(disk)
    screen = logging.StreamHandler(sys.stdout)
    screen.setFormatter(logging.Formatter(fmt="%(message)s"))
    screen.setLevel(_core.screen_level(options._as_dict()))
    flow.addHandler(screen)
    output = logging.getLogger("CedarBackup3.output")
    output.setLevel(logging.DEBUG)
    out_disk = logging.FileHandler(path, mode="a", encoding="utf-8")
    out_disk.setFormatter(logging.Formatter(fmt=_DISK_OUTPUT_FORMAT, datefmt=_DATE_FORMAT))
    out_disk.setLevel(logging.DEBUG if (options.debug or options.output) else logging.CRITICAL)
    output.addHandler(out_disk)
    return path


def _usage(fd: IO[str] | None = None) -> None:
    """Writes the usage text to ``fd`` (default: standard error at call time)."""
    (fd or sys.stderr).write(_core.usage())


def _version(fd: IO[str] | None = None) -> None:
    """Writes the version text to ``fd`` (default: standard output at call time)."""
    (fd or sys.stdout).write(_core.version_text())


def _diagnostics(fd: IO[str] | None = None) -> None:
    """Writes the runtime diagnostics to ``fd`` (default: standard output at call time)."""
    _diagnostics_for(Options(), fd)


def _diagnostics_for(options: Options, fd: IO[str] | None = None) -> None:
    """What ``-D`` prints (the core's diagnostics and effective configuration), with what
    ``cback3-amazons3-sync`` runs among the diagnostics. When that is Cedar Backup's
    original, one WARNING line on standard error says how to fix it."""
    found, warning = _command_check()
    (fd or sys.stdout).write(_core.diagnostics_report(options._as_dict(), found))
    if warning:
        sys.stderr.write(f"WARNING: {warning}\n")


COMMAND = _core.COMMAND
"""The command name both this package and Cedar Backup 3 install (the last one installed wins)."""
OWN_COMMAND = _core.OWN_COMMAND
"""The command name only this package installs: the one to put in cron lines."""


def _installed_script() -> str:
    """Where pip put this package's ``cback3-amazons3-sync`` (from its RECORD), else where
    this environment's scripts go."""
    try:
        dist = importlib.metadata.distribution("cback3-s3sync")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or []:
            if f.name == COMMAND:
                return os.path.normpath(str(dist.locate_file(f)))
    return os.path.join(sysconfig.get_path("scripts"), COMMAND)


def _command_check(
    search_path: str | None = None, script: str | None = None
) -> tuple[list[tuple[str, str]], str | None]:
    """Which implementation ``cback3-amazons3-sync`` is: the one this package installed
    (``script``, default from its RECORD) and the first on ``search_path`` (default PATH).
    Returns ``(title, value)`` diagnostics and at most one warning, with the fix."""
    if search_path is None:
        search_path = os.environ.get("PATH") or os.defpath
    return _core.command_check(script or _installed_script(), search_path, sys.executable)


# The run, step by step ------------------------------------------------------------------


def _executeAction(options: Options) -> None:
    """The work of one run, as the command does it: the name check (unless
    ``ignoreWarnings``), the sync unless ``verifyOnly`` (under the run lock, stray multipart
    uploads aborted, the host's logfile handled as the run's own file), the verification, the
    summary file if asked, and the summary line. Raises what the original raises:
    ``ValueError`` for bad input and differences, ``OSError`` where S3 or the disk failed
    or another run holds the target; ``KeyboardInterrupt`` on Ctrl-C, after aborting open
    multipart uploads. The details are in the log."""
    values = options._as_dict()
    values["logfile"] = _host_logfile() or values["logfile"]
    _core.run_action(values)


def _buildSourceFiles(sourceDir: str) -> list[str]:
    """The regular files under ``sourceDir`` (symlinks followed, loops and broken links
    skipped). Raises ``ValueError`` if it is missing or not a directory."""
    return [os.fsdecode(p) for p in _core.walk(sourceDir)]


def _checkSourceFiles(sourceDir: str, sourceFiles: Sequence[str]) -> None:
    """Raises ``ValueError`` (one log line per file) if any name under ``sourceDir``
    cannot be an S3 key: not UTF-8, or too long. The check is exact, not a guess."""
    _core.check_source_files(sourceDir)


def _synchronizeBucket(sourceDir: str, s3BucketUrl: str, uploadOnly: bool) -> None:
    """Makes the prefix a mirror of ``sourceDir`` as the command's sync phase does: under the
    run lock, stray multipart uploads under the prefix aborted, new and changed files
    uploaded, then (unless ``uploadOnly``) objects with no local file deleted; names that
    cannot be keys are skipped with a warning (their check is :func:`_checkSourceFiles`).
    Raises ``OSError`` where S3 or the disk failed or another run holds the target,
    ``ValueError`` for bad input."""
    options = Options()
    options.sourceDir, options.s3BucketUrl, options.uploadOnly = sourceDir, s3BucketUrl, uploadOnly
    options.ignoreWarnings = True
    options.logfile = _host_logfile()
    _core.synchronize(options._as_dict())


def _verifyBucketContents(sourceDir: str, sourceFiles: Sequence[str], s3BucketUrl: str) -> None:
    """Raises ``ValueError`` (one log line per file) unless every regular file among
    ``sourceFiles`` has an object of its size under ``s3BucketUrl``. Each path is named by
    its place under ``sourceDir`` however it is spelled; one that is not on disk passes only
    if its object exists, and one outside ``sourceDir`` fails. ``OSError`` if S3 fails."""
    _core.verify(sourceDir, [os.fspath(p) for p in sourceFiles], s3BucketUrl, _host_logfile())


if __name__ == "__main__":
    sys.exit(cli())
