"""The binary and the Python command print the same things and exit the same way: what
-V, -D, -h, a bad switch, --dryRun (with -b, -q), -s and -v show comes from the core.

The one difference kept: -D of the Python command adds which program the command name runs
(``Installed``/``OnPath`` lines, and a WARNING on stderr when it is Cedar Backup's original),
a check that only pip installs need; it is masked here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, make_tree

BINARY = REPO / "target" / "debug" / "cback3-amazons3-sync"

# Text that differs from one run to the next, not between the front ends.
VOLATILE = [
    (re.compile(r"(Timestamp\.+: ).*"), r"\1<time>"),
    (re.compile(r"elapsed [0-9.]+ s"), "elapsed <t> s"),
]
PYTHON_ONLY = re.compile(r"^   (Installed|OnPath)\.+: .*\n", re.M)


def normalized(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return PYTHON_ONLY.sub("", text)


def run(command: list[str], args: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(
        [*command, *args], env=os.environ.copy(), capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    return done.returncode, normalized(done.stdout), normalized(done.stderr)


def same_from_both(args: list[str]) -> tuple[int, str, str]:
    assert BINARY.exists(), f"{BINARY} missing: run `cargo build` first (scripts/test-python.sh does)"
    by_binary = run([str(BINARY)], args)
    by_python = run([sys.executable, "-m", "cback3_s3sync"], args)
    assert by_python == by_binary, args
    return by_binary


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["-V"], 0),
        (["-D"], 0),
        (["-D", "--maxConcurrency=7", "--maxBandwidth=1MB/s"], 0),
        (["-h"], 0),
        (["-x", "src", "s3://b/p"], 2),
        (["--bogus"], 2),
        (["--maxDeletes=-1", "src", "s3://b/p"], 2),
    ],
)
def test_without_a_run(s3: Any, args: list[str], status: int) -> None:
    got, out, err = same_from_both(args)
    assert got == status
    if args[0] == "-V":
        assert "cback3-s3sync" in out and "GNU General Public License" in out
    if args[0] == "-D":
        assert "Diagnostics:" in out and "Effective configuration" in out
    if "--maxConcurrency=7" in args:
        assert re.search(r"Max concurrency\.+: 7 ", out)
    if status == 2:
        assert " *** Error: " in err


@pytest.mark.parametrize(
    ("switches", "status", "screen"),
    [
        (["--dryRun"], 0, "(dryrun) upload: "),
        (["--dryRun", "-b"], 0, "(dryrun) upload: "),
        (["--dryRun", "-q"], 0, None),
        (["-v"], 6, "ERROR"),
        (["-b"], 0, "Cedar Backup Amazon S3 sync run completed with status 0."),
    ],
)
def test_runs(
    s3: Any, bucket: str, tmp_path: Path, switches: list[str], status: int, screen: str | None
) -> None:
    src = make_tree(tmp_path / "src", {"a.txt": b"alpha\n", "dir/b": b"b"})
    log = tmp_path / "cback3.log"
    if switches == ["-b"]:  # both runs find the prefix already synced: the same lines
        assert run([str(BINARY)], ["-l", str(log), str(src), f"s3://{bucket}/p"])[0] == 0
    got, out, err = same_from_both([*switches, "-l", str(log), str(src), f"s3://{bucket}/p"])
    assert got == status, (out, err)
    if screen is None:
        assert out == "" and err == ""
    else:
        assert screen in out


def test_a_failing_run_with_stack(s3: Any, tmp_path: Path) -> None:
    log = tmp_path / "cback3.log"
    got, out, err = same_from_both(["-s", "-l", str(log), str(tmp_path / "missing"), "s3://bkt/p"])
    assert got == 6 and "Traceback" not in err
    assert "source directory" in out and "does not exist" in out


@pytest.mark.parametrize("stack", [[], ["-s"]])
def test_a_logfile_that_cannot_be_created(tmp_path: Path, stack: list[str]) -> None:
    log = tmp_path / "no" / "such" / "dir" / "x.log"
    got, out, err = same_from_both([*stack, "-l", str(log), str(tmp_path), "s3://bkt/p"])
    assert got == 3 and out == ""
    assert err.startswith(f"Error setting up logging: cannot open logfile {log}: ")
    assert ("caused by" in err) == bool(stack)
