"""The original's lower-level steps (`_synchronizeBucket`, `_verifyBucketContents`,
`_executeAction`) against the command on the same tree and the real server: stray uploads,
the run's own logfile, the run lock, the summary, the original's exception types, paths
spelled differently, and a second run in the same process behaving as the first."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cback3_s3sync import amazons3 as shim
from conftest import REPO, listing, make_tree, open_multipart_uploads

BINARY = REPO / "target" / "debug" / "cback3-amazons3-sync"
FLOW = "CedarBackup3.log.tools.amazons3"
MIB = 1024 * 1024


def messages(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == FLOW and (level is None or r.levelno == level)
    ]


def command(log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert BINARY.exists(), f"{BINARY} missing: run `cargo build` first (scripts/test-python.sh does)"
    return subprocess.run(
        [str(BINARY), "-l", str(log), *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def wait_for(what: str, done: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling interval, not synchronisation


@pytest.fixture
def logged_to(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Sends Cedar Backup's loggers to a file, as a host that set up logging does."""
    added: list[tuple[logging.Logger, logging.Handler]] = []

    def to(path: Path) -> None:
        for name in ("CedarBackup3.log", "CedarBackup3.output"):
            lg = logging.getLogger(name)
            lg.setLevel(logging.DEBUG)
            handler = logging.FileHandler(path)
            lg.addHandler(handler)
            added.append((lg, handler))

    yield to
    for lg, handler in added:
        lg.removeHandler(handler)
        handler.close()


def test_stray_uploads_are_aborted_and_a_summary_logged_as_the_command_does(
    s3: Any, s3_client: Any, bucket: str, tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for prefix in ("by-command", "by-step", "by-action"):
        stray = s3_client.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/killed-run.bin")
        assert stray["UploadId"]
    log = tmp_path / "command.log"
    done = command(log, str(tree), f"s3://{bucket}/by-command")
    assert done.returncode == 0, done.stderr
    shim._synchronizeBucket(str(tree), f"s3://{bucket}/by-step", False)
    shim._executeAction(shim.Options(argumentList=[str(tree), f"s3://{bucket}/by-action"]))
    assert open_multipart_uploads(s3_client, bucket) == []
    objects = listing(s3_client, bucket)
    by_prefix = {
        p: {k.split("/", 1)[1]: v for k, v in objects.items() if k.startswith(p + "/")}
        for p in ("by-command", "by-step", "by-action")
    }
    assert by_prefix["by-step"] == by_prefix["by-command"] == by_prefix["by-action"]
    # Each step ends with the summary line the command ends with.
    summaries = [m for m in messages(caplog) if m.startswith("Summary: ")]
    assert len(summaries) == 2
    assert all("uploaded 5 " in m for m in summaries), summaries
    assert "uploaded 5 " in next(line for line in log.read_text().splitlines() if "Summary: " in line)


def test_the_hosts_logfile_inside_the_source_is_the_runs_own_file(
    s3: Any, bucket: str, tree: Path, logged_to: Callable[[Path], None]
) -> None:
    own = tree / "log" / "cback3.log"
    own.parent.mkdir()
    own.write_text("an older night\n")
    # The command, with its logfile inside the source: it grows during the run, never fails it.
    done = command(own, str(tree), f"s3://{bucket}/by-command")
    assert done.returncode == 0, done.stderr
    # The steps, in a host whose logging writes the same kind of file inside the source.
    logged_to(own)
    url = f"s3://{bucket}/by-steps"
    files = shim._buildSourceFiles(str(tree))
    shim._checkSourceFiles(str(tree), files)
    shim._synchronizeBucket(str(tree), url, False)
    shim._verifyBucketContents(str(tree), files, url)
    shim._executeAction(shim.Options(argumentList=[str(tree), url]))
    text = own.read_text()
    assert text.count("is this run's own file") >= 2, text
    assert "Verification failed" not in text


def test_a_run_holding_the_target_refuses_the_steps_as_it_refuses_the_command(
    s3: Any, s3_client: Any, bucket: str, tree: Path, tmp_path: Path, slow_command: Callable[[str], Any]
) -> None:
    url = f"s3://{bucket}/held"
    slow_command(url)
    refused = command(tmp_path / "second.log", str(tree), url)
    assert refused.returncode == 6
    assert "another run is already syncing" in (tmp_path / "second.log").read_text()
    with pytest.raises(OSError, match="another run is already syncing") as raised:
        shim._synchronizeBucket(str(tree), url, False)
    assert not isinstance(raised.value, ValueError)
    with pytest.raises(OSError, match="another run is already syncing"):
        shim._executeAction(shim.Options(argumentList=[str(tree), url]))
    assert not any(k.endswith(("a.txt", "b.bin")) for k in listing(s3_client, bucket))


@pytest.fixture
def slow_command(s3: Any, bucket: str, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Starts the command on a target with its upload slowed to a crawl, and returns once it
    holds the run lock (it has logged that it is uploading); stops it at the end."""
    running: list[subprocess.Popen[str]] = []

    def start(url: str) -> subprocess.Popen[str]:
        src = make_tree(tmp_path / "slow-src", {"one.bin": b"\0" * MIB})
        log = tmp_path / "slow.log"
        proc = subprocess.Popen(
            [str(BINARY), "-l", str(log), "--maxBandwidth=1KB/s", str(src), url],
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running.append(proc)

        def uploading() -> bool:
            assert proc.poll() is None, proc.communicate()
            return log.exists() and "Uploading files as the merge finds them." in log.read_text()

        wait_for("the command to start uploading", uploading)
        return proc

    yield start
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def test_the_steps_raise_the_originals_exception_types(
    s3: Any, bucket: str, tree: Path, tmp_path: Path
) -> None:
    def action(*args: str) -> None:
        shim._executeAction(shim.Options(argumentList=list(args)))

    # Bad input is a ValueError, as the original's missing source directory and name check are.
    with pytest.raises(ValueError, match="does not exist"):
        action(str(tmp_path / "missing"), f"s3://{bucket}/p")
    bad = tmp_path / "bad"
    bad.mkdir()
    with open(os.path.join(os.fsencode(bad), b"bad-\xff"), "wb") as fh:
        fh.write(b"x")
    with pytest.raises(ValueError, match="cannot be S3 keys"):
        action(str(bad), f"s3://{bucket}/p")
    # A difference found by verification is a ValueError.
    action(str(tree), f"s3://{bucket}/p")
    (tree / "late.txt").write_text("after the sync")
    with pytest.raises(ValueError, match="Verification failed"):
        action("-v", str(tree), f"s3://{bucket}/p")
    # Where the original's AWS CLI call would fail, an OSError: no such bucket, no answer.
    with pytest.raises(OSError, match="NoSuchBucket") as raised:
        action(str(tree), "s3://no-such-bucket-for-steps/p")
    assert not isinstance(raised.value, ValueError)
    with pytest.raises(OSError, match="NoSuchBucket"):
        shim._verifyBucketContents(str(tree), [str(tree / "a.txt")], "s3://no-such-bucket-for-steps/p")


def test_every_listed_path_is_checked_however_it_is_spelled(
    s3: Any, s3_client: Any, bucket: str, tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"s3://{bucket}/spelled"
    shim._synchronizeBucket(str(tree), url, False)
    caplog.set_level(logging.INFO)
    # Spelled differently, the same file: checked, and it passes.
    other = [f"{tree}/./dir//b.bin", f"{tree}/dir/sub/../b.bin", str(tree / "dir")]
    shim._verifyBucketContents(str(tree), other, url)
    # A misspelled path (no such file, no such object) is a difference, not a pass.
    caplog.clear()
    with pytest.raises(ValueError, match="1 differences"):
        shim._verifyBucketContents(str(tree), [str(tree / "a.txt"), str(tree / "a.tx")], url)
    assert any("a.tx]" in m for m in messages(caplog, logging.ERROR))
    # A path outside the source cannot have an object under the prefix.
    outside = make_tree(tmp_path / "elsewhere", {"a.txt": b"alpha\n"})
    with pytest.raises(ValueError, match="1 differences"):
        shim._verifyBucketContents(str(tree), [str(outside / "a.txt")], url)
    # A file spelled differently whose object is gone fails the check.
    s3_client.delete_object(Bucket=bucket, Key="spelled/dir/b.bin")
    with pytest.raises(ValueError, match="1 differences"):
        shim._verifyBucketContents(str(tree), [f"{tree}/./dir//b.bin"], url)
    # A file gone from disk whose object exists: checked by its object, which is there.
    (tree / "a.txt").unlink()
    caplog.clear()
    shim._verifyBucketContents(str(tree), [str(tree / "a.txt")], url)
    assert any("not on disk" in m for m in messages(caplog, logging.WARNING))


def unreachable_endpoint() -> str:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}"


def sync_failure(tree: Path, url: str) -> str:
    with pytest.raises(OSError) as raised:
        shim._synchronizeBucket(str(tree), url, False)
    return str(raised.value)


def test_a_second_run_in_the_same_process_behaves_as_the_first(
    s3: Any,
    bucket: str,
    tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"s3://{bucket}/twice"
    shim._synchronizeBucket(str(tree), url, False)
    log = tmp_path / "twice.log"
    # Cedar Backup's screen handler writes to the stream its module holds (sys.stdout at import).
    import CedarBackup3.cli

    screen = io.StringIO()
    monkeypatch.setattr(CedarBackup3.cli, "SCREEN_LOG_STREAM", screen)

    def cli(*args: str) -> tuple[int, list[str], list[str]]:
        """One cli() run: its status, what it printed, and the lines it added to the logfile."""
        before = log.read_text().splitlines() if log.exists() else []
        monkeypatch.setattr(sys, "argv", ["cback3-amazons3-sync", "-l", str(log), *args])
        status = shim.cli()
        lines = log.read_text().splitlines()[len(before) :]
        volatile = re.compile(r"^\S+ \S+ --> |elapsed [0-9.]+ s|Timestamp\.+: .*")
        printed = screen.getvalue().splitlines()
        screen.seek(0)
        screen.truncate()
        return (
            status,
            [volatile.sub("", line) for line in printed],
            [volatile.sub("", line) for line in lines],
        )

    # Logging: the handlers of one run are gone when the next starts (each line once).
    first, second = cli("-b", "-v", str(tree), url), cli("-b", "-v", str(tree), url)
    assert first[0] == 0 and first[1]
    assert second == first

    # -s: the whole chain of causes only in the run that asked for it.
    monkeypatch.setenv("AWS_ENDPOINT_URL", unreachable_endpoint())
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no answer is no answer: no retries to wait for
    plain = sync_failure(tree, url)
    assert cli("-s", str(tree), url)[0] == 6
    assert sync_failure(tree, url) == plain

    # A configuration problem belongs to the run that had it.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    (tmp_path / "config").write_text("[default]\nregion = us-east-1\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    problem = sync_failure(tree, url)
    assert "no-such-profile" in problem
    monkeypatch.undo()
    monkeypatch.setattr(sys, "argv", sys.argv)
    shim._synchronizeBucket(str(tree), url, False)
    shim._verifyBucketContents(str(tree), shim._buildSourceFiles(str(tree)), url)
