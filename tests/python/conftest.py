"""Fixtures for the Python extension and shim: a real SeaweedFS server, buckets, trees, logging."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from s3server import LocalS3

REPO = Path(__file__).resolve().parents[2]
LOGGER_NAMES = ("CedarBackup3.log", "CedarBackup3.output")


@pytest.fixture(scope="session")
def s3() -> Iterator[LocalS3]:
    """One server for the session; its endpoint and credentials in this process's environment,
    where the core's AWS configuration chain finds them."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for k in saved:
        del os.environ[k]
    with LocalS3() as server:
        os.environ.update(server.env())
        try:
            yield server
        finally:
            for k in server.env():
                os.environ.pop(k, None)
            os.environ.update(saved)


@pytest.fixture(scope="session")
def s3_client(s3: LocalS3) -> Any:
    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3.env()["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3.env()["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = f"py-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


def listing(client: Any, bucket: str, prefix: str = "", markers: bool = False) -> dict[str, int]:
    """Every object under the prefix: key -> size (all pages). Directory markers (zero-byte
    keys ending in '/', one per directory the sync saw) only with `markers`."""
    out: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if markers or not (obj["Size"] == 0 and obj["Key"].endswith("/")):
                out[obj["Key"]] = obj["Size"]
    return out


def open_multipart_uploads(client: Any, bucket: str) -> list[str]:
    reply = client.list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in reply.get("Uploads", [])]


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path / "src",
        {
            "a.txt": b"alpha\n",
            "dir/b.bin": bytes(range(256)) * 40,
            "dir/sub/c": b"",
            "naïve names/Müller €.txt": b"unicode\n",
            "spaces and + plus.txt": b"plus",
        },
    )


@pytest.fixture
def logfile(tmp_path: Path) -> Path:
    return tmp_path / "cback3.log"


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """A test that adds handlers to Cedar Backup's loggers gets them removed after it, so one
    test's logfile does not receive the next test's records (cli() removes its own)."""
    before = {name: list(logging.getLogger(name).handlers) for name in LOGGER_NAMES}
    yield
    for name in LOGGER_NAMES:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if h not in before[name]:
                lg.removeHandler(h)
                h.close()
