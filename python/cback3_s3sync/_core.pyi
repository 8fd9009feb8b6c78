"""Type stubs for the Rust extension module (see src/python.rs)."""

from collections.abc import Sequence
from os import PathLike
from typing import TypedDict, final

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
    "Field",
    "Switch",
    "__version__",
    "build_argument_list",
    "build_argument_string",
    "check_source_files",
    "command_check",
    "diagnostics_report",
    "execute",
    "parse_options",
    "prepare_logfile",
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

@final
class Switch:
    """One switch of the core's table."""

    @property
    def long(self) -> str: ...
    @property
    def short(self) -> str | None: ...
    @property
    def value_name(self) -> str | None: ...
    @property
    def original(self) -> bool: ...
    @property
    def field(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def help(self) -> str: ...

@final
class Field:
    """One property of Options: its name and kind."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...

# Every switch, in the table's order.
SWITCHES: tuple[Switch, ...]
# Every Options field with its kind, in the comparison order.
FIELDS: tuple[Field, ...]

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

def parse_options(argv: Sequence[str], validate: bool = True) -> OptionsDict: ...
def validate_options(options: OptionsDict) -> None: ...
def build_argument_list(options: OptionsDict) -> list[str]: ...
def build_argument_string(options: OptionsDict) -> str: ...
def split_argument_string(text: str) -> list[str]: ...
def usage() -> str: ...
def usage_error(message: str) -> str: ...
def version_text() -> str: ...
def diagnostics_report(options: OptionsDict, extra: Sequence[tuple[str, str]]) -> str: ...
def screen_level(options: OptionsDict) -> int: ...
def prepare_logfile(options: OptionsDict) -> None: ...
def command_check(
    script: _Path, search_path: str, python: str
) -> tuple[list[tuple[str, str]], str | None]: ...
def execute(options: OptionsDict) -> int: ...
def run_action(options: OptionsDict) -> None: ...
def walk(source_dir: _Path) -> list[str]: ...
def check_source_files(source_dir: _Path) -> None: ...
def synchronize(options: OptionsDict) -> None: ...
def verify(
    source_dir: _Path, paths: Sequence[_Path], s3_bucket_url: str, logfile: _Path | None = None
) -> None: ...
