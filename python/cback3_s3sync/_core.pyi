"""Type stubs for the Rust extension module (see src/python.rs)."""

from collections.abc import Sequence
from os import PathLike
from typing import Any, final

__all__ = [
    "DEFAULT_LOGFILE",
    "DEFAULT_MODE",
    "DEFAULT_OWNER",
    "FLOW_LOGGER",
    "OUTPUT_LOGGER",
    "SourceTree",
    "__version__",
    "build_argument_list",
    "build_argument_string",
    "check_source_files",
    "diagnostics",
    "execute",
    "parse_options",
    "reset_log_cache",
    "run_action",
    "synchronize",
    "usage",
    "validate_options",
    "verify",
    "version",
    "walk",
]

__version__: str
FLOW_LOGGER: str
OUTPUT_LOGGER: str
DEFAULT_LOGFILE: str
DEFAULT_OWNER: tuple[str, str]
DEFAULT_MODE: int

_Path = str | PathLike[str]

@final
class SourceTree:
    @property
    def root(self) -> str: ...
    def paths(self) -> list[str]: ...
    def problems(self) -> list[str]: ...
    def restrict(self, paths: Sequence[_Path]) -> SourceTree: ...
    def __len__(self) -> int: ...

def parse_options(argv: Sequence[str], validate: bool = True) -> dict[str, Any]: ...
def validate_options(options: dict[str, Any]) -> None: ...
def build_argument_list(options: dict[str, Any]) -> list[str]: ...
def build_argument_string(options: dict[str, Any]) -> str: ...
def usage() -> str: ...
def version() -> str: ...
def diagnostics() -> list[str]: ...
def reset_log_cache() -> None: ...
def execute(options: dict[str, Any]) -> int: ...
def run_action(options: dict[str, Any]) -> None: ...
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
