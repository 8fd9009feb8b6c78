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
