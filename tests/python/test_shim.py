"""The shim's functions against a real S3 server: phases, a whole run through cli(),
log records with Cedar Backup's logger names and levels, and exit codes."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from cback3_s3sync import _core
from cback3_s3sync import amazons3 as shim
from conftest import listing, make_tree

FLOW = "CedarBackup3.log.tools.amazons3"
OUTPUT = "CedarBackup3.output"
CEDAR_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \S+ --> \[(DEBUG  |INFO   |WARNING|ERROR  )\] .*$")


def records(caplog: pytest.LogCaptureFixture, name: str, level: int | None = None) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == name and (level is None or r.levelno == level)
    ]


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["cback3-amazons3-sync", *args])
    return shim.cli()


def test_module_surface_matches_the_original() -> None:
    from CedarBackup3.tools import amazons3 as original

    for name in (
        "cli", "Options", "_usage", "_version", "_diagnostics", "_executeAction", "_buildSourceFiles",
        "_checkSourceFiles", "_synchronizeBucket", "_verifyBucketContents",
    ):  # fmt: skip
        assert callable(getattr(shim, name)), name
        import inspect

        assert list(inspect.signature(getattr(shim, name)).parameters) == list(
            inspect.signature(getattr(original, name)).parameters
        ), name


def diagnostics_block(text: str) -> list[str]:
    """The `Title....: value` lines of -D's Diagnostics block, without their indent."""
    block = text.split("Diagnostics:\n\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_usage_version_and_diagnostics_write_to_the_given_file() -> None:
    out = io.StringIO()
    shim._usage(out)
    assert "sourceDir" in out.getvalue()
    out = io.StringIO()
    shim._version(out)
    assert _core.__version__ in out.getvalue()
    out = io.StringIO()
    shim._diagnostics(out)
    lines = diagnostics_block(out.getvalue())
    assert lines == sorted(lines) and len(lines) >= 6
    assert all(re.match(r"^\w+\.+: ", line) for line in lines)
    assert "Effective configuration" in out.getvalue()


def test_build_source_files_lists_regular_files(tree: Path) -> None:
    files = shim._buildSourceFiles(str(tree))
    assert sorted(files) == sorted(str(p) for p in tree.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match="does not exist"):
        shim._buildSourceFiles(str(tree / "missing"))
    with pytest.raises(ValueError, match="not a directory"):
        shim._buildSourceFiles(str(tree / "a.txt"))


def test_undecodable_names_round_trip_and_fail_the_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    raw = os.path.join(os.fsencode(src), b"bad-\xff-name")
    with open(raw, "wb") as fh:
        fh.write(b"x")
    (src / "good").write_text("ok")
    # Only the file that can be a key is a file to upload; the other fails the check.
    assert _core.walk(str(src)) == [str(src / "good")]
    with caplog.at_level(logging.DEBUG), pytest.raises(ValueError):
        shim._checkSourceFiles(str(src), shim._buildSourceFiles(str(src)))
    assert any("\\xff" in m for m in records(caplog, FLOW, logging.ERROR))
    # A surrogate-escaped str names the same file.
    assert os.path.exists(os.fsdecode(raw))


def test_phases_sync_and_verify_with_cedar_logger_names(
    s3: Any, s3_client: Any, bucket: str, tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"s3://{bucket}/backup"
    caplog.set_level(logging.DEBUG)
    files = shim._buildSourceFiles(str(tree))
    shim._checkSourceFiles(str(tree), files)
    shim._synchronizeBucket(str(tree), url, False)
    shim._verifyBucketContents(str(tree), files, url)
    expected = {
        "backup/" + p.relative_to(tree).as_posix(): p.stat().st_size for p in tree.rglob("*") if p.is_file()
    }
    assert listing(s3_client, bucket) == expected
    # Each directory has its marker, and the verify above passed with them in the bucket.
    dirs = {"backup/" + p.relative_to(tree).as_posix() + "/": 0 for p in tree.rglob("*") if p.is_dir()}
    assert dirs
    assert listing(s3_client, bucket, markers=True) == expected | dirs
    flow = records(caplog, FLOW)
    assert any("Uploaded 5 files" in m for m in flow)
    assert any(m.startswith("Verified 5 files") for m in records(caplog, FLOW, logging.INFO))
    assert records(caplog, OUTPUT, logging.DEBUG), "S3 detail goes to the output logger"

    # A plain list (not ours) is verified too, and only its files count.
    shim._verifyBucketContents(str(tree), [str(tree / "a.txt")], url)

    # Upload-only keeps objects that have no local file; a full sync removes them.
    (tree / "a.txt").unlink()
    shim._synchronizeBucket(str(tree), url, True)
    assert "backup/a.txt" in listing(s3_client, bucket)
    shim._synchronizeBucket(str(tree), url, False)
    assert "backup/a.txt" not in listing(s3_client, bucket)


def test_verify_differences_raise_value_error_with_one_line_each(
    s3: Any, s3_client: Any, bucket: str, tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"s3://{bucket}/v"
    shim._synchronizeBucket(str(tree), url, False)
    (tree / "a.txt").write_text("longer than before\n")
    (tree / "new.txt").write_text("new\n")
    caplog.set_level(logging.INFO)
    with pytest.raises(ValueError, match="2 differences"):
        shim._verifyBucketContents(str(tree), shim._buildSourceFiles(str(tree)), url)
    errors = records(caplog, FLOW, logging.ERROR)
    assert any("new.txt" in m for m in errors)
    assert any("size differs" in m and "a.txt" in m for m in errors)


def test_s3_outage_during_verify_is_an_os_error_not_a_difference(
    s3: Any, bucket: str, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{bucket}/outage"
    shim._synchronizeBucket(str(tree), url, False)
    files = shim._buildSourceFiles(str(tree))
    # A port nothing listens on: the listing gets no answer at all.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(OSError, match="cannot reach the endpoint") as raised:
        shim._verifyBucketContents(str(tree), files, url)
    assert not isinstance(raised.value, ValueError)


def test_synchronize_failure_is_an_os_error(s3: Any, tree: Path) -> None:
    with pytest.raises(OSError):
        shim._synchronizeBucket(str(tree), "s3://no-such-bucket-here/p", False)
    with pytest.raises(ValueError):
        shim._synchronizeBucket(str(tree), "http://not-s3/p", False)


def test_execute_action_runs_every_phase(s3: Any, s3_client: Any, bucket: str, tree: Path) -> None:
    opts = shim.Options(argumentList=[str(tree), f"s3://{bucket}/x"])
    shim._executeAction(opts)
    assert len(listing(s3_client, bucket, "x/")) == 5
    opts.verifyOnly = True
    (tree / "extra").write_text("not uploaded")
    with pytest.raises(ValueError, match="Verification failed"):
        shim._executeAction(opts)
    assert "x/extra" not in listing(s3_client, bucket)


def test_cli_run_writes_cedar_format_lines(
    s3: Any,
    s3_client: Any,
    bucket: str,
    tree: Path,
    logfile: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(monkeypatch, "-l", str(logfile), "-m", "600", str(tree), f"s3://{bucket}/c") == 0
    assert len(listing(s3_client, bucket, "c/")) == 5
    assert (logfile.stat().st_mode & 0o777) == 0o600
    lines = logfile.read_text().splitlines()
    assert lines and all(CEDAR_LINE.match(line) for line in lines), lines
    assert "with status 0." in lines[-1]
    assert capsys.readouterr().out == "", "default screen level is ERROR"


def test_cli_output_and_debug_reach_the_logfile(
    s3: Any, bucket: str, tree: Path, logfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(monkeypatch, "-d", "-q", "-l", str(logfile), str(tree), f"s3://{bucket}/d") == 0
    lines = logfile.read_text().splitlines()
    assert any(line.startswith("S3 endpoint") for line in lines), "output-logger lines (message only) with -d"


def test_cli_verbose_prints_the_flow_to_stdout(
    s3: Any, bucket: str, tree: Path, logfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cedar Backup's screen handler writes to the stream its module holds (sys.stdout at import).
    import CedarBackup3.cli

    screen = io.StringIO()
    monkeypatch.setattr(CedarBackup3.cli, "SCREEN_LOG_STREAM", screen)
    assert run_cli(monkeypatch, "-b", "-l", str(logfile), str(tree), f"s3://{bucket}/b") == 0
    out = screen.getvalue()
    assert "with status 0." in out and "-->" not in out


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["--bogus", "a", "s3://b/p"], 2),
        (["only-one"], 2),
        (["-m", "9", "a", "s3://b/p"], 2),
        (["-h"], 0),
        (["-V"], 0),
        (["-D"], 0),
    ],
)
def test_cli_exit_codes_without_a_run(
    args: list[str], status: int, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    assert run_cli(monkeypatch, *args) == status
    captured = capsys.readouterr()
    if status == 2:
        assert "sourceDir" in captured.err and "Error" in captured.err
    if args == ["-h"]:
        assert "sourceDir" in captured.err
    if args == ["-V"]:
        assert _core.__version__ in captured.out


def test_cli_logging_failure_is_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    bad = tmp_path / "no" / "such" / "dir" / "x.log"
    assert run_cli(monkeypatch, "-l", str(bad), str(tmp_path), "s3://b/p") == 3
    assert "logging" in capsys.readouterr().err


def test_cli_failures_are_6(s3: Any, tmp_path: Path, logfile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(monkeypatch, "-l", str(logfile), str(tmp_path / "missing"), "s3://b/p") == 6
    assert "with status 6." in logfile.read_text().splitlines()[-1]


def test_cli_malformed_aws_config_is_6_with_one_line(
    s3: Any,
    s3_client: Any,
    bucket: str,
    tree: Path,
    tmp_path: Path,
    logfile: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\n[profile backup\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert run_cli(monkeypatch, "-l", str(logfile), str(tree), f"s3://{bucket}/p") == 6
    errors = [line for line in logfile.read_text().splitlines() if "[ERROR  ]" in line]
    want = f"Unable to parse config file: {config} (line 3: Profile definition must end with ']')"
    assert len(errors) == 1 and want in errors[0], errors
    assert listing(s3_client, bucket) == {}
    # The phase functions refuse it the same way.
    with pytest.raises(OSError, match="Unable to parse config file"):
        shim._synchronizeBucket(str(tree), f"s3://{bucket}/p", False)


def test_cli_without_cedar_backup_writes_the_same_format(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hide CedarBackup3 so the shim's own logging setup is used.
    monkeypatch.setitem(sys.modules, "CedarBackup3.cli", None)
    src = make_tree(tmp_path / "s", {"f": b"1"})
    log = tmp_path / "own.log"
    assert run_cli(monkeypatch, "-O", "-l", str(log), "-m", "604", str(src), f"s3://{bucket}/own") == 0
    assert (log.stat().st_mode & 0o777) == 0o604
    lines = log.read_text().splitlines()
    flow_lines = [line for line in lines if "-->" in line]
    assert flow_lines and all(CEDAR_LINE.match(line) for line in flow_lines)
    assert any(line.startswith("S3 endpoint") for line in lines), "output lines are the message only"
    assert "with status 0." in flow_lines[-1]


def test_our_switches_survive_the_options_object(tmp_path: Path) -> None:
    args = [
        "--verifyContent", "--dryRun", f"--summaryFile={tmp_path / 's.json'}", "--maxDeletes=3",
        "--storageClass=STANDARD_IA", "--sse=aws:kms", "--sseKmsKeyId=k1", "--maxBandwidth=2MB/s",
        "src", "s3://bkt/p",
    ]  # fmt: skip
    opts = shim.Options(argumentList=args)
    assert opts.verifyContent and opts.dryRun
    got = (opts.maxDeletes, opts.storageClass, opts.sse, opts.sseKmsKeyId, opts.maxBandwidth)
    assert got == (3, "STANDARD_IA", "aws:kms", "k1", 2 * 1024 * 1024)
    opts.maxBandwidth = "800KB/s"
    assert opts.maxBandwidth == 800 * 1024
    with pytest.raises(ValueError, match="not a rate"):
        opts.maxBandwidth = "fast"
    assert shim.Options(argumentList=opts.buildArgumentList()) == opts
    opts.sse = None
    with pytest.raises(ValueError):
        opts.validate()  # a KMS key without --sse aws:kms


def test_restore_switches_survive_the_options_object() -> None:
    opts = shim.Options(argumentList=["--restore", "--overwrite", "back", "s3://bkt/p"])
    assert opts.restore and opts.overwrite
    assert shim.Options(argumentList=opts.buildArgumentList()) == opts
    opts.restore = False
    with pytest.raises(ValueError):
        opts.validate()  # --overwrite without --restore


def test_cli_restores_through_the_core(
    s3: Any, bucket: str, tree: Path, logfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(monkeypatch, "-l", str(logfile), str(tree), f"s3://{bucket}/r") == 0
    back = tree.parent / "back"
    assert run_cli(monkeypatch, "-l", str(logfile), "--restore", str(back), f"s3://{bucket}/r") == 0
    want = {p.relative_to(tree): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    got = {p.relative_to(back): p.read_bytes() for p in back.rglob("*") if p.is_file()}
    assert got == want and want


def test_cli_passes_our_switches_to_the_core(
    s3: Any, s3_client: Any, bucket: str, tree: Path, logfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tree.parent / "summary.json"
    args = ["-l", str(logfile), "--dryRun", f"--summaryFile={summary}", str(tree), f"s3://{bucket}/d"]
    assert run_cli(monkeypatch, *args) == 0
    assert listing(s3_client, bucket, "d/") == {}, "a dry run uploads nothing"
    assert '"exit_status": 0' in summary.read_text()


ORIGINAL_V = "\n Cedar Backup Amazon S3 sync tool.\n Included with Cedar Backup version 3.12.0.\n"


def fake_command(directory: Path, version_text: str, name: str = shim.COMMAND) -> Path:
    """An executable that prints ``version_text`` for ``-V``, as one implementation would."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\nprintf '%s' '{version_text}'\n")
    path.chmod(0o755)
    return path


def test_command_check_warns_with_the_fix_when_the_original_owns_the_name(tmp_path: Path) -> None:
    script = fake_command(tmp_path / "bin", ORIGINAL_V)
    found, warning = shim._command_check(search_path=str(tmp_path / "bin"), script=str(script))
    assert found == [
        ("Installed", f"{script} runs Cedar Backup 3.12.0's original tool"),
        ("OnPath", f"{script} (the same)"),
    ]
    assert warning is not None
    assert warning.endswith(
        f"to fix it: {sys.executable} -m pip install --force-reinstall --no-deps cback3-s3sync"
    )


def test_command_check_is_quiet_when_the_name_is_ours(tmp_path: Path) -> None:
    script = fake_command(tmp_path / "bin", f"\n cback3-amazons3-sync (cback3-s3sync) {_core.__version__}\n")
    found, warning = shim._command_check(search_path=str(tmp_path / "bin"), script=str(script))
    assert warning is None
    assert found[0] == (
        "Installed",
        f"{script} runs cback3-amazons3-sync (cback3-s3sync) {_core.__version__}",
    )


def test_command_check_names_another_installation_first_on_path(tmp_path: Path) -> None:
    ours = fake_command(tmp_path / "venv", "cback3-amazons3-sync (cback3-s3sync) 9")
    other = fake_command(tmp_path / "usr", ORIGINAL_V)
    search = os.pathsep.join([str(tmp_path / "usr"), str(tmp_path / "venv")])
    found, warning = shim._command_check(search_path=search, script=str(ours))
    assert ("OnPath", f"{other} runs Cedar Backup 3.12.0's original tool") in found
    assert warning is not None
    assert f"({other})" in warning and str(tmp_path / "venv" / shim.OWN_COMMAND) in warning


def test_command_check_reports_a_missing_script(tmp_path: Path) -> None:
    found, warning = shim._command_check(search_path=str(tmp_path), script=str(tmp_path / shim.COMMAND))
    assert found == [
        ("Installed", f"{tmp_path / shim.COMMAND} is missing"),
        ("OnPath", f"{shim.COMMAND} is not on PATH"),
    ]
    assert warning is not None and "--force-reinstall --no-deps cback3-s3sync" in warning


def test_diagnostics_warning_goes_to_stderr_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    script = fake_command(tmp_path / "bin", ORIGINAL_V)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(shim, "_installed_script", lambda: str(script))
    out = io.StringIO()
    shim._diagnostics(out)
    lines = diagnostics_block(out.getvalue())
    assert lines == sorted(lines) and len(lines) >= 6
    assert all(re.match(r"^\w+\.+: ", line) for line in lines)
    assert "Effective configuration" in out.getvalue()
    assert any(line.startswith("Installed.") and "original" in line for line in lines)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("WARNING: "), err
