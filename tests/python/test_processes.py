"""Whole processes: Ctrl-C during an upload, the binary and the shim leaving the same bucket,
and the command installed from our wheel into a fresh virtual environment without the AWS CLI."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, listing, make_tree, open_multipart_uploads

CEDAR_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \S+ --> \[(DEBUG  |INFO   |WARNING|ERROR  )\] .*$")
RUN_CLI = (
    "import sys; from cback3_s3sync.amazons3 import cli; "
    "sys.argv = ['cback3-amazons3-sync', *sys.argv[1:]]; sys.exit(cli())"
)
MIB = 1024 * 1024


def big_tree(root: Path, count: int, size: int) -> Path:
    """Files big enough for multipart uploads; sparse, so making them costs nothing."""
    root.mkdir(parents=True)
    for i in range(count):
        with open(root / f"big-{i:02}.bin", "wb") as fh:
            fh.truncate(size)
    return root


def test_ctrl_c_mid_upload_exits_5_and_leaves_no_multipart_upload(
    s3: Any, s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    src = big_tree(tmp_path / "big", count=10, size=40 * MIB)
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "-l", str(log), str(src), f"s3://{bucket}/big"],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Poll the server until an upload is in flight; a fixed sleep would race.
        deadline = time.monotonic() + 120
        while not open_multipart_uploads(s3_client, bucket):
            assert proc.poll() is None, "the run finished before any multipart upload was seen"
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.02)  # polling interval, not synchronisation
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, (out, err)
    assert open_multipart_uploads(s3_client, bucket) == []
    objects = listing(s3_client, bucket)
    assert all(size == 40 * MIB for size in objects.values()), "only whole objects remain"
    lines = log.read_text().splitlines()
    assert "with status 5." in lines[-1]


@pytest.fixture(scope="session")
def binary() -> Path:
    """The binary of `cargo build` (scripts/test-python.sh builds it first)."""
    path = REPO / "target" / "debug" / "cback3-amazons3-sync"
    assert path.exists(), f"{path} missing: run `cargo build` first (scripts/test-python.sh does)"
    return path


def test_binary_and_shim_leave_the_same_bucket(
    s3: Any, s3_client: Any, bucket: str, tmp_path: Path, binary: Path
) -> None:
    src = make_tree(
        tmp_path / "src",
        {
            "top.txt": b"top\n",
            "empty": b"",
            "deep/er/still/file.dat": os.urandom(5000),
            "Ünïcödé dir/ファイル.txt": b"x" * 3,
            "with space/and+plus%percent.txt": b"odd names",
            "multipart.bin": b"\0" * (17 * MIB),
        },
    )
    env = os.environ.copy()
    for name, cmd in (
        ("bin", [str(binary)]),
        ("shim", [sys.executable, "-c", RUN_CLI]),
    ):
        log = tmp_path / f"{name}.log"
        done = subprocess.run(
            [*cmd, "-l", str(log), str(src), f"s3://{bucket}/{name}"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (name, done.stdout, done.stderr, log.read_text())
    by_bin = {k.removeprefix("bin/"): v for k, v in listing(s3_client, bucket, "bin/").items()}
    by_shim = {k.removeprefix("shim/"): v for k, v in listing(s3_client, bucket, "shim/").items()}
    assert by_bin == by_shim
    assert len(by_shim) == 6


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with Cedar Backup 3 and our wheel, and nothing else."""
    wheels = os.environ.get("CBACK3_S3SYNC_WHEELS")
    if not wheels:
        wheels = str(tmp_path_factory.mktemp("wheels"))
        env = {**os.environ, "CARGO_TARGET_DIR": str(REPO / "target-py")}
        subprocess.run(["maturin", "build", "--out", wheels], cwd=REPO, env=env, check=True)
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # Both packages install a `cback3-amazons3-sync` script; the one installed last owns it.
    subprocess.run([*pip, "cedar-backup3==3.12.0"], check=True)
    subprocess.run([*pip, "--no-index", "--find-links", wheels, "cback3-s3sync"], check=True)
    return venv


def test_installed_command_syncs_without_the_aws_cli(
    s3: Any, s3_client: Any, bucket: str, tree: Path, tmp_path: Path, fresh_venv: Path
) -> None:
    bindir = fresh_venv / "bin"
    path = os.pathsep.join([str(bindir), "/usr/bin", "/bin"])
    assert shutil.which("aws", path=path) is None
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8", **s3.env()}
    log = tmp_path / "venv.log"
    version = subprocess.run(["cback3-amazons3-sync", "-V"], env=env, capture_output=True, text=True)
    assert "cback3-s3sync" in version.stdout, "the command on PATH is ours"
    done = subprocess.run(
        ["cback3-amazons3-sync", "-l", str(log), str(tree), f"s3://{bucket}/venv"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    expected = {
        "venv/" + p.relative_to(tree).as_posix(): p.stat().st_size for p in tree.rglob("*") if p.is_file()
    }
    assert listing(s3_client, bucket, "venv/") == expected
    lines = log.read_text().splitlines()
    assert lines
    assert all(CEDAR_LINE.match(line) for line in lines), lines
    assert "with status 0." in lines[-1]
    # The installed shim found the installed Cedar Backup and used its logging setup.
    probe = subprocess.run(
        [
            str(bindir / "python"),
            "-c",
            "import CedarBackup3.cli, cback3_s3sync; print(cback3_s3sync.__version__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip()
    # python -m works the same way.
    version = subprocess.run(
        [str(bindir / "python"), "-m", "cback3_s3sync", "-V"], env=env, capture_output=True, text=True
    )
    assert version.returncode == 0
    assert probe.stdout.strip() in version.stdout


def test_the_wheel_installs_the_man_page(fresh_venv: Path) -> None:
    page = fresh_venv / "share" / "man" / "man1" / "cback3-amazons3-sync.1"
    committed = Path(__file__).resolve().parents[2] / "man" / "cback3-amazons3-sync.1"
    assert page.read_text() == committed.read_text()
    assert ".TH CBACK3" in page.read_text()
    # The same page under the name only we install.
    assert (page.parent / "cback3-s3sync.1").read_text() == committed.read_text()


@pytest.fixture(scope="session")
def offline_wheels(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """pip options that install our wheel and Cedar Backup 3 (with its dependencies) with no
    index: Cedar Backup is fetched from PyPI once, here (pip's cache usually has it)."""
    ours = os.environ.get("CBACK3_S3SYNC_WHEELS")
    if not ours:
        ours = str(tmp_path_factory.mktemp("wheels"))
        env = {**os.environ, "CARGO_TARGET_DIR": str(REPO / "target-py")}
        subprocess.run(["maturin", "build", "--out", ours], cwd=REPO, env=env, check=True)
    cedar = tmp_path_factory.mktemp("cedar")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--dest", str(cedar), "cedar-backup3==3.12.0"],
        check=True,
    )  # fmt: skip
    return ["--no-index", "--find-links", ours, "--find-links", str(cedar)]


def new_venv(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    return root / "bin"


def pip(bindir: Path, offline: list[str], *args: str) -> None:
    cmd = [str(bindir / "python"), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    subprocess.run([*cmd, *offline, *args], check=True)


def what_runs(bindir: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``command`` as a user's shell (or cron) finds it on a PATH led by the venv."""
    env = {"PATH": os.pathsep.join([str(bindir), "/usr/bin", "/bin"]), "LANG": "C.UTF-8", "HOME": str(bindir)}
    return subprocess.run([command, *args], env=env, capture_output=True, text=True, timeout=120)


def is_ours(bindir: Path, command: str) -> bool:
    out = what_runs(bindir, command, "-V").stdout
    assert ("(cback3-s3sync)" in out) != ("Cedar Backup Amazon S3 sync tool" in out), out
    return "(cback3-s3sync)" in out


def diagnostics_warning(bindir: Path) -> str | None:
    done = what_runs(bindir, "cback3-s3sync", "-D")
    assert done.returncode == 0, done
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) <= 1, done.stderr
    return warnings[0] if warnings else None


@pytest.mark.parametrize("order", [("cedar-backup3", "cback3-s3sync"), ("cback3-s3sync", "cedar-backup3")])
def test_pip_sequences_and_what_each_command_name_runs(
    order: tuple[str, str], offline_wheels: list[str], tmp_path: Path
) -> None:
    bindir = new_venv(tmp_path / "v")
    # Both in one command: either may end up owning cback3-amazons3-sync.
    pip(bindir, offline_wheels, *order)
    assert is_ours(bindir, "cback3-s3sync")
    warning = diagnostics_warning(bindir)
    if is_ours(bindir, "cback3-amazons3-sync"):
        assert warning is None
    else:
        assert warning is not None and "--force-reinstall --no-deps cback3-s3sync" in warning
    # A later reinstall (or upgrade) of Cedar Backup takes the name back ...
    pip(bindir, offline_wheels, "--force-reinstall", "cedar-backup3")
    assert not is_ours(bindir, "cback3-amazons3-sync")
    assert is_ours(bindir, "cback3-s3sync"), "the name only we install is still ours"
    warning = diagnostics_warning(bindir)
    assert warning is not None
    fix = warning.split("to fix it: ", 1)[1].split()
    assert fix == [
        str(bindir / "python"),
        "-m",
        "pip",
        "install",
        "--force-reinstall",
        "--no-deps",
        "cback3-s3sync",
    ]
    # ... and the command the warning gives puts ours back.
    subprocess.run([*fix, "--quiet", *offline_wheels], check=True)
    assert is_ours(bindir, "cback3-amazons3-sync")
    assert diagnostics_warning(bindir) is None
