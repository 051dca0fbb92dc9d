"""``./scripts/up`` runs a real job on the local executor, submit to succeeded,
with its log readable through the API: from a fresh copy of the repository
with no settings at all, as a new user starts it."""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from credits.db import make_engine, make_session_factory, session_scope, utcnow
from credits.grants import projects
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.identity.tokens import create_token
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import system_account_id
from credits.pool import service as pool

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = Actor.system("tests")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fresh_copy(tmp_path: Path) -> Path:
    """The repository's files as a clone has them (no var/, no caches), sharing this
    checkout's .venv so that no install runs; its folders let the jobs' user pass."""
    copy = tmp_path / "clone"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    _require_installed_from(copy / "pyproject.toml")
    (copy / ".venv").symlink_to(ROOT / ".venv")
    for folder in (copy, *copy.parents):
        if folder.stat().st_uid == os.geteuid():
            folder.chmod(folder.stat().st_mode | 0o001)
    return copy


def _require_installed_from(pyproject: Path) -> None:
    """Fails unless the shared .venv was installed from this pyproject.toml.

    Otherwise ``scripts/up`` in the copy would reinstall ``credits`` into the
    shared .venv, editable from the copy, which the test then deletes: every
    later import of ``credits`` from this checkout would fail.
    """
    wanted = hashlib.sha256(pyproject.read_bytes()).hexdigest()[:16]
    stamp = ROOT / ".venv" / ".credits-installed"
    installed = stamp.read_text().split()[0] if stamp.exists() else ""
    if installed != wanted:
        pytest.fail(
            "pyproject.toml changed since .venv was installed: run ./scripts/test, "
            "which reinstalls it first"
        )


@contextmanager
def _scripts_up(
    tmp_path: Path, *arguments: str, root: Path = ROOT, settings: dict[str, str] | None = None
) -> Iterator[tuple[str, Path, Path]]:
    """Runs ``./scripts/up`` in ``root``: (base URL, var dir, its log).

    With no ``settings``, a var dir of the test's own and a short scheduler
    interval; the port is always the test's own.
    """
    port = _free_port()
    var = tmp_path / "var"
    if settings is None:
        settings = {
            "CREDITS_VAR_DIR": str(var),
            "CREDITS_EXECUTOR": "local",
            "CREDITS_LOCAL_GPU_SLOTS": "2",
            "CREDITS_SCHEDULER_INTERVAL_SECONDS": "0.3",
        }
    else:
        var = root / "var"
    inherited = {name: value for name, value in os.environ.items() if "CREDITS" not in name}
    env = {**inherited, **settings, "CREDITS_PORT": str(port)}
    log_path = tmp_path / "up.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(root / "scripts" / "up"), *arguments],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log_path)
        yield base, var, log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def served_fresh(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``./scripts/up`` in a fresh copy, run from another folder, with no settings."""
    copy = _fresh_copy(tmp_path)
    with _scripts_up(tmp_path, "--no-demo", root=copy, settings={}) as (base, var, _log):
        yield base, var


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if _call("GET", f"{base}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready in 120 s:\n{log.read_text()}")


def _call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - our own http URL
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own http URL
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _researcher_with_credits(var: Path) -> tuple[str, int]:
    engine = make_engine(f"sqlite:///{var / 'credits.db'}")
    with session_scope(make_session_factory(engine)) as session:
        create_user(
            session,
            email="pi@example.org",
            name="PI",
            roles=(Role.RESEARCHER,),
            institution="Uni",
            actor=SYSTEM,
        )
        researcher = actor_for_email(session, "pi@example.org")
        project = projects.create_project(
            session, title="Local", field_of_science="Testing", actor=researcher
        )
        account = ledger.open_account(
            session,
            code="up-allocation",
            currency=Currency.GPU,
            project_id=project.id,
            expires_at=utcnow() + timedelta(days=30),
            actor=SYSTEM,
        )
        ledger.grant(
            session,
            key="up-fund",
            from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.GPU),
            to_account_id=account.id,
            amount=10_000_000,
            actor=SYSTEM,
        )
        pool.add_flavour(
            session,
            name="local-gpu",
            node_label_value="local",
            gpu_memory_gb=16,
            gpus_per_node=2,
            actor=SYSTEM,
        )
        pool.set_rate(
            session,
            flavour="local-gpu",
            credits_per_gpu_hour_micro=1_000_000,
            effective_from=utcnow(),
            actor=SYSTEM,
        )
        secret = create_token(session, email="pi@example.org", actor=SYSTEM).secret
        project_id = project.id
    engine.dispose()
    return secret, project_id


@pytest.mark.slow
def test_scripts_up_with_no_settings_runs_a_local_job_to_success_with_readable_logs(
    served_fresh: tuple[str, Path],
) -> None:
    base, var = served_fresh
    secret, project_id = _researcher_with_credits(var)
    headers = {"Authorization": f"Bearer {secret}"}
    spec: dict[str, Any] = {
        "name": "hello",
        "image": "ignored-by-the-local-executor",
        "command": [
            "python3",
            "-c",
            "import os; print('hello from', os.environ['CUDA_VISIBLE_DEVICES'])",
        ],
        "flavour": "local-gpu",
        "gpus": 1,
        "max_runtime_seconds": 60,
    }
    submit = headers | {"Idempotency-Key": "hello-1"}
    status, job = _call("POST", f"{base}/api/v1/projects/{project_id}/jobs", spec, submit)
    assert status == 201, job
    job_id = job["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and job["state"] not in {"succeeded", "failed"}:
        time.sleep(0.3)
        job = _call("GET", f"{base}/api/v1/jobs/{job_id}", headers=headers)[1]
    assert job["state"] == "succeeded", job
    # Settling is the reconcile pass's next step, in its own transaction after the
    # one that records the end: a read in between sees the job ended, not yet settled.
    while time.monotonic() < deadline and job["settled_at"] is None:
        time.sleep(0.3)
        job = _call("GET", f"{base}/api/v1/jobs/{job_id}", headers=headers)[1]
    assert job["settled_at"] is not None
    logs = _call("GET", f"{base}/api/v1/jobs/{job_id}/logs", headers=headers)[1]
    assert re.fullmatch(r"hello from [0-9]+\n", logs["text"]), logs


_LOGIN_LINE = re.compile(r"^\s+(researcher|reviewer|funder|ops)\s+(\S+@\S+)\s+(\S+)$", re.MULTILINE)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _browser_sign_in(base: str, email: str, password: str) -> str:
    """Signs in through ``POST /login`` as a browser would; the home page's HTML."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{base}/login", timeout=10) as response:
        match = _CSRF.search(response.read().decode())
    assert match is not None, "the sign-in form has no CSRF token"
    form = urllib.parse.urlencode(
        {"email": email, "password": password, "csrf_token": match.group(1), "next": ""}
    ).encode()
    with opener.open(f"{base}/login", data=form, timeout=10) as response:
        assert response.status == 200
        assert response.url.rstrip("/") == base, response.url
        home: str = response.read().decode()
    return home


@pytest.mark.slow
def test_scripts_up_seeds_a_demo_whose_printed_sign_ins_work(tmp_path: Path) -> None:
    with _scripts_up(tmp_path) as (base, _var, log_path):
        logins = {
            role: (email, password)
            for role, email, password in _LOGIN_LINE.findall(log_path.read_text())
        }
        assert set(logins) == {"researcher", "reviewer", "funder", "ops"}, log_path.read_text()
        for email, password in logins.values():
            assert f"Signed in as {email}" in _browser_sign_in(base, email, password)
    # A second start keeps the demo and prints no password again.
    with _scripts_up(tmp_path) as (base, _var, log_path):
        text = log_path.read_text()
        assert "already seeded" in text
        assert not _LOGIN_LINE.findall(text)
        email, password = logins["ops"]
        assert f"Signed in as {email}" in _browser_sign_in(base, email, password)
