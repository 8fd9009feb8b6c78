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
from typing import IO, TYPE_CHECKING, Any, ClassVar

from cback3_s3sync import _core

__all__ = [
    "DEFAULT_LOGFILE",
    "DEFAULT_MODE",
    "DEFAULT_OWNERSHIP",
    "LONG_SWITCHES",
    "SHORT_SWITCHES",
    "Options",
    "SourceFiles",
    "cli",
]

logger = logging.getLogger(_core.FLOW_LOGGER)

DEFAULT_LOGFILE: str = _core.DEFAULT_LOGFILE
DEFAULT_OWNERSHIP: list[str] = list(_core.DEFAULT_OWNER)
DEFAULT_MODE: int = _core.DEFAULT_MODE

# The switch table comes from the core; the original's SHORT_SWITCHES and LONG_SWITCHES (for
# code that reads them) are its `original` entries. The core's parser is the authority.
SHORT_SWITCHES = "".join(
    f"{short}{':' if value else ''}" for _, short, value, original, *_ in _core.SWITCHES if original and short
)
LONG_SWITCHES = [
    f"{long}{'=' if value else ''}" for long, _, value, original, *_ in _core.SWITCHES if original
]
# Every property of Options, in the comparison order (the original's fields, then ours).
_FIELDS = tuple(name for name, _ in _core.FIELDS)
_HELP = {field: help.replace("\n", " ") for _, _, _, _, field, _, help in _core.SWITCHES}

# Cedar Backup's logfile layout, used when Cedar Backup itself is not installed.
_DISK_FORMAT = "%(asctime)s --> [%(levelname)-7s] %(message)s"
_DISK_OUTPUT_FORMAT = "%(message)s"
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S %Z"

_MIN_PYTHON = (3, 11)


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

    if TYPE_CHECKING:  # the properties are made from the core's table below

        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...

    def __init__(
        self,
        argumentList: Sequence[str] | None = None,
        argumentString: str | None = None,
        validate: bool = True,
    ) -> None:
        self._values: dict[str, Any] = {n: (False if k == "flag" else None) for n, k in _core.FIELDS}
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
        # Field by field in the table's order, as the original compares (the core's rule).
        return 1 if other is None else _core.compare_options(self._as_dict(), other._as_dict())

    def __eq__(self, other: object) -> bool:
        return self._compare(other) == 0  # type: ignore[arg-type]

    def __lt__(self, other: Options) -> bool:
        return self._compare(other) < 0

    def _as_dict(self) -> _core.OptionsDict:
        return self._values.copy()  # type: ignore[return-value]

    def validate(self) -> None:
        """Raises ``ValueError`` unless a run could start from these options."""
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
        # The original's setter rules and messages, and our switches' values, are the core's.
        self._values[name] = _core.check_field(name, value)

    return property(get, set_, None, _HELP.get(name, f"The {name} argument."))


for _name in _FIELDS:
    setattr(Options, _name, _property(_name))


class SourceFiles(list[str]):
    """What :func:`_buildSourceFiles` returns: the paths of the regular files under the
    source directory, carrying the core's walk so verification need not walk again."""

    def __init__(self, tree: _core.SourceTree) -> None:
        super().__init__(os.fsdecode(p) for p in tree.paths())
        self.tree = tree


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
    try:
        _core.prepare_logfile(options._as_dict())  # created (mode, owner) as the binary does
        _setup_logging(options)
    except Exception as e:
        sys.stderr.write(f"Error setting up logging: {e}\n")
        return 3
    return _core.execute(options._as_dict())


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
    # Handlers and levels changed: the core must look its Python loggers up again.
    _core.reset_log_cache()
    return logfile


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
    """The work of one run (name check, sync unless verify-only, verify). Raises
    ``KeyboardInterrupt`` on Ctrl-C (after aborting open multipart uploads) and
    ``RuntimeError`` on any failure; the details are in the log."""
    _core.run_action(options._as_dict())


def _buildSourceFiles(sourceDir: str) -> SourceFiles:
    """Walks ``sourceDir`` (symlinks followed, loops and broken links skipped). Raises
    ``ValueError`` if it is missing or not a directory."""
    return SourceFiles(_core.walk(sourceDir))


def _checkSourceFiles(sourceDir: str, sourceFiles: Sequence[str]) -> None:
    """Raises ``ValueError`` (one log line per file) if any name under ``sourceDir``
    cannot be an S3 key: not UTF-8, or too long. The check is exact, not a guess."""
    _core.check_source_files(sourceDir)


def _synchronizeBucket(sourceDir: str, s3BucketUrl: str, uploadOnly: bool) -> None:
    """Makes the prefix a mirror of ``sourceDir``: uploads new and changed files, then
    (unless ``uploadOnly``) deletes objects with no local file. Raises ``OSError`` on failure."""
    _core.synchronize(sourceDir, s3BucketUrl, bool(uploadOnly))


def _verifyBucketContents(sourceDir: str, sourceFiles: Sequence[str], s3BucketUrl: str) -> None:
    """Raises ``ValueError`` (one log line per file) unless every regular file among
    ``sourceFiles`` has an object of the same size under ``s3BucketUrl``."""
    # Reuse the walk when we made the list; either way only the listed files are checked.
    tree = sourceFiles.tree if isinstance(sourceFiles, SourceFiles) else _core.walk(sourceDir)
    _core.verify(tree.restrict([os.fspath(p) for p in sourceFiles]), s3BucketUrl)


if __name__ == "__main__":
    sys.exit(cli())
