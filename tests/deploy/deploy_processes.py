"""Starting the platform's processes as an operator would, for the deploy tests:
a free port, the production settings, HTTP probes, and stopping cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    POSTGRES_ENV,
    create_migrated_postgres_database,
    drop_postgres_database,
    migrated_sqlite_url,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "deploy-test-secret-key-0123456789abcdef"
START_TIMEOUT_S = 120.0  # CI shares two cores with other suites


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def migrated_database(tmp_path: Path) -> Iterator[str]:
    """A migrated database: PostgreSQL when CREDITS_TEST_POSTGRES_URL is set, else SQLite."""
    if os.environ.get(POSTGRES_ENV):
        url, admin_url = create_migrated_postgres_database()
        try:
            yield url
        finally:
            drop_postgres_database(url, admin_url)
        return
    yield migrated_sqlite_url(tmp_path)


def production_env(tmp_path: Path, *, database_url: str, port: int = 8000) -> dict[str, str]:
    """The environment of a production process: no CREDITS_* of the caller's, the
    required services named (the broker is not contacted by the web tier)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CREDITS_")}
    return {
        **inherited,
        "CREDITS_PROFILE": "production",
        "CREDITS_DATABASE_URL": database_url,
        "CREDITS_BROKER_URL": os.environ.get("CREDITS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "CREDITS_STORAGE_URL": f"file://{tmp_path / 'storage'}",
        "CREDITS_SECRET_KEY": SECRET_KEY,
        "CREDITS_VAR_DIR": str(tmp_path / "var"),
        "CREDITS_HOST": "127.0.0.1",
        "CREDITS_PORT": str(port),
    }


def get_json(url: str) -> tuple[int, Any]:
    """(status, decoded JSON body) of a GET; an HTTP error's status and body too."""
    try:
        # Generous: new workers import the app while CI's two cores are busy.
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - a local URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str, log: Path) -> None:
    """Polls ``check`` until it holds; fails with the process log when it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout_s:.0f} s; log:\n{log.read_text(errors='replace')}")


def answers(url: str) -> bool:
    try:
        return get_json(url)[0] == 200
    except (OSError, ValueError):
        return False


@contextmanager
def started(
    command: list[str], *, env: dict[str, str], log: Path, cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs ``command`` in its own session, its output to ``log``; on exit stops it
    with SIGTERM (SIGKILL to its group if it lingers, which the test then reports)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def stop(process: subprocess.Popen[bytes], *, log: Path, timeout_s: float = 30.0) -> int:
    """SIGTERM, then the exit status; fails if the process does not stop in time."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"did not stop within {timeout_s:.0f} s of SIGTERM; log:\n{log.read_text()}")


def children(pid: int) -> set[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found
