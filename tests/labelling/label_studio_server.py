"""A real Label Studio server for the slow suite, from the executable that
``scripts/lib/label_studio.sh`` installs in a virtual environment of its own.

``label-studio start`` is given a fresh data folder (its SQLite database,
media and logs), a free loopback port, and an administrator with a known API
token (``LABEL_STUDIO_USERNAME``, ``_PASSWORD`` and ``_USER_TOKEN``, read
like ``--username``, ``--password`` and ``--user-token``; the user is created
before the web server starts). Label Studio 1.23 makes new organisations with
legacy tokens switched off, so ``--enable-legacy-api-token`` (and
``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN``) keep ``Authorization: Token …``
working. ``SSRF_PROTECTION_ENABLED=false`` lets its webhooks reach a receiver
on 127.0.0.1. The server is ready when ``/health`` answers and the token lists
projects; it is stopped (SIGTERM, then SIGKILL) when the context ends.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

START_TIMEOUT_S = 240.0  # about 35 s on an idle 2-core machine; CI may share it
BIN_ENV = "CREDITS_TEST_LABEL_STUDIO_BIN"


class LabelStudioServerUnavailable(RuntimeError):
    """The executable is missing or the server did not come up; the message says why."""


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    token: str = field(repr=False)
    username: str
    started_in_s: float
    # The server's own log: a 500 from it is explained only there.
    log: str = ""


@contextmanager
def running_label_studio(binary: Path, data_dir: Path) -> Iterator[LabelStudioServer]:
    """Starts ``label-studio`` on a free loopback port; yields once its API answers."""
    if not os.access(binary, os.X_OK):
        raise LabelStudioServerUnavailable(f"{binary} is not an executable")
    port = _free_port()
    token = secrets.token_hex(20)
    username = "credits-test@example.org"
    command = [
        str(binary),
        "start",
        "--no-browser",
        "--data-dir",
        str(data_dir / "data"),
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enable-legacy-api-token",
        "--log-level",
        "WARNING",
    ]
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CREDITS_")},
        # The administrator is made from these before the web server starts (kept off
        # the command line, where every process could read them).
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": secrets.token_hex(16),
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SSRF_PROTECTION_ENABLED": "false",
        "HOME": str(data_dir),  # anything it keeps outside --data-dir stays in the test's folder
    }
    log_path = data_dir / "label-studio.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            cwd=data_dir,
        )
    server = LabelStudioServer(
        url=f"http://127.0.0.1:{port}",
        token=token,
        username=username,
        started_in_s=0.0,
        log=str(log_path),
    )
    try:
        _wait_until_ready(server, process, log_path)
        yield LabelStudioServer(
            url=server.url,
            token=token,
            username=username,
            started_in_s=round(time.monotonic() - started, 1),
            log=str(log_path),
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_ready(
    server: LabelStudioServer, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabelStudioServerUnavailable(
                f"label-studio exited with {process.returncode}: {_tail(log)}"
            )
        try:
            health = requests.get(f"{server.url}/health", timeout=5)
            if health.status_code == 200:
                projects = requests.get(
                    f"{server.url}/api/projects/",
                    headers={"Authorization": f"Token {server.token}"},
                    timeout=10,
                )
                if projects.status_code == 200:
                    return
                last = f"the token got HTTP {projects.status_code}: {projects.text[:200]}"
            else:
                last = f"/health answered HTTP {health.status_code}"
        except requests.RequestException as error:
            last = type(error).__name__
        time.sleep(0.5)
    raise LabelStudioServerUnavailable(
        f"label-studio did not answer in {START_TIMEOUT_S:.0f} s ({last}): {_tail(log)}"
    )


def log_tail(server: LabelStudioServer) -> str:
    """The end of the server's log, for a failure message."""
    return _tail(Path(server.log)) if server.log else "(no log)"


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-8:])[-1500:]


# One server for a whole CI run: .ci/run starts it while lint and types run, and every
# test worker uses it (pytest-xdist would otherwise start one per worker).
SHARED_ENV = "CREDITS_TEST_LABEL_STUDIO_SHARED"


def shared_label_studio(info_path: Path, timeout_s: float = START_TIMEOUT_S) -> LabelStudioServer:
    """The server a launcher announced in ``info_path``, waiting until it has."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if info_path.exists():
            info = json.loads(info_path.read_text())
            if "error" in info:
                raise LabelStudioServerUnavailable(info["error"])
            return LabelStudioServer(
                url=info["url"],
                token=info["token"],
                username=info["username"],
                started_in_s=info["started_in_s"],
                log=info.get("log", ""),
            )
        time.sleep(0.5)
    raise LabelStudioServerUnavailable(
        f"no server was announced in {info_path} in {timeout_s:.0f} s"
    )


def _announce(info_path: Path, info: dict[str, object]) -> None:
    partial = info_path.with_suffix(".partial")
    partial.write_text(json.dumps(info))
    partial.rename(info_path)


def main(arguments: list[str]) -> int:
    """``label_studio_server.py BINARY DATA_DIR INFO_FILE``: starts a server, announces it
    in INFO_FILE (or the reason it failed), and serves until terminated."""
    binary, data_dir, info_path = Path(arguments[0]), Path(arguments[1]), Path(arguments[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with running_label_studio(binary, data_dir) as server:
            _announce(info_path, {**asdict(server)})
            while True:
                time.sleep(3600)
    except LabelStudioServerUnavailable as error:
        _announce(info_path, {"error": str(error)})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
