"""Type stubs for the Rust extension module (see src/python.rs)."""

from collections.abc import Sequence
from os import PathLike
from typing import Any, TypedDict, final

__all__ = [
    "COMMAND",
    "DEFAULT_LOGFILE",
    "DEFAULT_MODE",
    "DEFAULT_OWNER",
    "FIELDS",
    "FLOW_LOGGER",
    "OUTPUT_LOGGER",
    "OWN_COMMAND",
    "SWITCHES",
    "SourceTree",
    "__version__",
    "build_argument_list",
    "build_argument_string",
    "check_field",
    "check_source_files",
    "command_check",
    "compare_options",
    "diagnostics_report",
    "execute",
    "parse_options",
    "prepare_logfile",
    "reset_log_cache",
    "run_action",
    "screen_level",
    "split_argument_string",
    "synchronize",
    "usage",
    "usage_error",
    "validate_options",
    "verify",
    "version_text",
    "walk",
]

__version__: str
FLOW_LOGGER: str
OUTPUT_LOGGER: str
DEFAULT_LOGFILE: str
DEFAULT_OWNER: tuple[str, str]
DEFAULT_MODE: int
COMMAND: str
OWN_COMMAND: str
# One record per switch: (long, short, value name, original?, Options field, kind, help).
SWITCHES: tuple[tuple[str, str | None, str | None, bool, str, str, str], ...]
# Every Options field with its kind, in the comparison order.
FIELDS: tuple[tuple[str, str], ...]

class OptionsDict(TypedDict):
    """The options as they cross to and from the core: exactly one key per entry of FIELDS."""

    help: bool
    version: bool
    verbose: bool
    quiet: bool
    logfile: str | None
    owner: tuple[str, str] | None
    mode: int | None
    output: bool
    debug: bool
    stacktrace: bool
    diagnostics: bool
    verifyOnly: bool
    uploadOnly: bool
    ignoreWarnings: bool
    sourceDir: str | None
    s3BucketUrl: str | None
    maxConcurrency: int | None
    allowEmptySource: bool
    verifyContent: bool
    dryRun: bool
    summaryFile: str | None
    maxDeletes: int | None
    maxBandwidth: int | None
    storageClass: str | None
    sse: str | None
    sseKmsKeyId: str | None
    restore: bool
    overwrite: bool

_Path = str | PathLike[str]

@final
class SourceTree:
    @property
    def root(self) -> str: ...
    def paths(self) -> list[str]: ...
    def problems(self) -> list[str]: ...
    def restrict(self, paths: Sequence[_Path]) -> SourceTree: ...
    def __len__(self) -> int: ...

def parse_options(argv: Sequence[str], validate: bool = True) -> OptionsDict: ...
def validate_options(options: OptionsDict) -> None: ...
def build_argument_list(options: OptionsDict) -> list[str]: ...
def build_argument_string(options: OptionsDict) -> str: ...
def split_argument_string(text: str) -> list[str]: ...
def check_field(name: str, value: object) -> Any: ...
def compare_options(mine: OptionsDict, theirs: OptionsDict) -> int: ...
def usage() -> str: ...
def usage_error(message: str) -> str: ...
def version_text() -> str: ...
def diagnostics_report(options: OptionsDict, extra: Sequence[tuple[str, str]]) -> str: ...
def screen_level(options: OptionsDict) -> int: ...
def prepare_logfile(options: OptionsDict) -> None: ...
def command_check(
    script: _Path, search_path: str, python: str
) -> tuple[list[tuple[str, str]], str | None]: ...
def reset_log_cache() -> None: ...
def execute(options: OptionsDict) -> int: ...
def run_action(options: OptionsDict) -> None: ...
def walk(source_dir: _Path) -> SourceTree: ...
def check_source_files(source_dir: _Path) -> None: ...
def synchronize(
    source_dir: _Path,
    s3_bucket_url: str,
    upload_only: bool,
    max_concurrency: int | None = None,
    allow_empty_source: bool = False,
) -> None: ...
def verify(tree: SourceTree, s3_bucket_url: str) -> None: ...
