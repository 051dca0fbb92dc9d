"""The production profile as separate processes, for the end-to-end test: gunicorn,
a Celery worker and beat on Redis, the Kubernetes API emulator on the wall clock,
and a client that speaks HTTP only.

A plain module imported by name (tests/e2e is on pytest's path for its tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import missing_service
from deploy_processes import ROOT, START_TIMEOUT_S, answers, free_port
from k8s_controllers import EPOCH
from k8s_emulator import K8sEmulator
from prometheus_client.parser import text_string_to_metric_families

from credits.jobs.manifests import job_name

PYTHON_BIN = Path(sys.executable).parent
NAMESPACE = "credits-jobs"
INSTANCE = "credits"
A100 = "NVIDIA-A100-SXM4-80GB"
FLAVOUR = "a100-80gb"
CLOCK_STEP_S = 0.1
GET_RETRIES = 5


def wall_seconds() -> float:
    """Now, in the emulator's clock: seconds since its epoch (negative before 2030)."""
    return (datetime.now(UTC) - EPOCH).total_seconds()


class WallClockCluster:
    """The Kubernetes API emulator served over HTTP with its virtual clock following
    wall time, so that the pods' start and finish times are the platform's own
    times; two 8-GPU A100 nodes and the jobs namespace."""

    def __init__(self, kubeconfig: Path, *, default_run_s: float) -> None:
        self.emu = K8sEmulator(auto_tick=True, default_duration_s=default_run_s)
        with self.emu.store.lock:
            self.emu.clock.now = wall_seconds()
        self.emu.add_namespace(NAMESPACE)
        for i in range(2):
            self.emu.add_node(f"gpu-{i}", gpus=8, product=A100)
        self.kubeconfig = kubeconfig
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._follow_wall_clock, daemon=True)

    def start(self) -> WallClockCluster:
        self.emu.start()
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: emulator\n"
            f"clusters:\n- name: emulator\n  cluster:\n    server: {self.emu.url}\n"
            "users:\n- name: emulator\n  user: {}\n"
            "contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n"
        )
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)
        self.emu.stop()

    def run_for(self, job_id: int, seconds: float | None) -> None:
        """The pods of the job's first attempt run ``seconds`` (None: until stopped)."""
        self.emu.set_run_duration(NAMESPACE, job_name(INSTANCE, job_id, 1), seconds)

    def _follow_wall_clock(self) -> None:
        while not self._stop.wait(CLOCK_STEP_S):
            self.emu.advance(max(0.0, wall_seconds() - self.emu.now))


class PrivatePostgres:
    """A PostgreSQL server of the test's own (``initdb`` and ``pg_ctl`` of the Debian
    packages, in a temporary folder, on a free port), so that the test may restart
    it: CI's shared server must stay up for the other suites. As root, its commands
    run as the ``postgres`` user, whom initdb requires."""

    def __init__(self, folder: Path) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            missing_service("no initdb under /usr/lib/postgresql for a private PostgreSQL")
        self.bin = found[-1].parent
        self.folder = folder
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PrivatePostgres:
        self.folder.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        data = str(self.folder / "data")
        self._run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self._pg_ctl("start")
        return self

    def restart(self) -> None:
        """A fast restart: every connection is cut, as when the server fails over."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast")

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        data, log = str(self.folder / "data"), str(self.folder / "server.log")
        self._run("pg_ctl", action, "-D", data, "-w", "-l", log, "-o", options, *args)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{program} {args[0]}: {done.stdout}{done.stderr}"


@dataclass
class Service:
    """One platform process (its whole process group), restartable; its output is
    appended to ``log`` across restarts."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> Service:
        with self.log.open("ab") as output:
            output.write(f"=== start {self.restarts} of {self.name}\n".encode())
            output.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.restarts += 1
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL to the whole group: the master and its children die mid-task."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a warm shutdown), SIGKILL to the group if it lingers."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def gunicorn(env: dict[str, str], log: Path) -> Service:
    command = [sys.executable, "-m", "gunicorn", "-c", "python:credits.gunicorn_conf"]
    return Service("web", [*command, "credits.wsgi:app"], env, log, ROOT)


def celery(role: str, env: dict[str, str], log: Path, beat_file: Path) -> Service:
    command = [sys.executable, "-m", "celery", "-A", "credits.worker", role, "--loglevel=INFO"]
    if role == "worker":
        command += ["--concurrency=2", "--without-gossip", "--without-mingle"]
    else:
        command += [f"--schedule={beat_file}"]
    return Service(role, command, env, log, ROOT)


def wait_for_web(base: str, service: Service, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until /readyz answers 200; fails with the log's tail if gunicorn dies or is late."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not service.alive():
            break
        if answers(f"{base}/readyz"):
            return
        time.sleep(0.2)
    pytest.fail(f"gunicorn is not ready; log:\n{service.log.read_text(errors='replace')[-6000:]}")


def cli(env: dict[str, str], *args: str) -> str:
    """Runs the ``credits`` command as an operator does; its stdout, or the test fails."""
    done = subprocess.run(
        [str(PYTHON_BIN / "credits"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"credits {' '.join(args)}: {done.stderr}{done.stdout}"
    return done.stdout


@dataclass
class Client:
    """A caller of the JSON API with one token; every request over HTTP.

    Like a careful client, it retries a GET that got a 5xx a few times; each such
    answer is kept in ``server_errors`` (wall time, request, status) for the test
    to judge."""

    base: str
    token: str
    http: requests.Session = field(default_factory=requests.Session)
    server_errors: list[tuple[float, str, int]] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        *,
        expect: int | tuple[int, ...] = (200, 201),
        key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        response = self._send(method, path, headers, kwargs)
        for _ in range(GET_RETRIES):
            if method != "GET" or response.status_code < 500:
                break
            self.server_errors.append((time.time(), f"{method} {path}", response.status_code))
            time.sleep(0.2)
            response = self._send(method, path, headers, kwargs)
        wanted = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in wanted, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    def status_on_a_new_connection(self, method: str, path: str) -> int:
        """The status of one request sent on a connection of its own, which any of
        gunicorn's workers may accept."""
        headers = {"Authorization": f"Bearer {self.token}", "Connection": "close"}
        with requests.Session() as fresh:
            response = fresh.request(
                method, f"{self.base}/api/v1{path}", headers=headers, timeout=30
            )
        return response.status_code

    def _send(
        self, method: str, path: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> requests.Response:
        # The web tier may be restarting: a refused connection is retried, an answer is not.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                return self.http.request(
                    method, f"{self.base}/api/v1{path}", headers=headers, timeout=30, **kwargs
                )
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def poll(check: Callable[[], bool], *, timeout_s: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in logs)
    pytest.fail(f"{what} within {timeout_s:.0f} s\n{tails}")


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """GET /metrics (from 127.0.0.1, which may scrape without a token): each sample's
    value by its name and labels."""
    response = requests.get(f"{base}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
