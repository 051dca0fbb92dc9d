"""The production web tier as an operator runs it: gunicorn with two workers, the
probes over HTTP, a graceful reload by SIGHUP, and a clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_processes import (
    ROOT,
    START_TIMEOUT_S,
    answers,
    children,
    free_port,
    get_json,
    migrated_database,
    production_env,
    started,
    stop,
    wait_until,
)

pytestmark = pytest.mark.slow

GUNICORN = [
    sys.executable,
    "-m",
    "gunicorn",
    "-c",
    "python:credits.gunicorn_conf",
    "credits.wsgi:app",
]


def test_gunicorn_serves_the_probes_from_two_workers_and_reloads_gracefully_on_sighup(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    with migrated_database(tmp_path) as database_url:
        env = production_env(tmp_path, database_url=database_url, port=port)
        env["CREDITS_WEB_WORKERS"] = "2"
        with started(GUNICORN, env=env, log=log, cwd=tmp_path) as master:
            wait_until(
                lambda: answers(f"{base}/healthz") and len(children(master.pid)) == 2,
                timeout_s=START_TIMEOUT_S,
                what="gunicorn did not answer /healthz with two workers",
                log=log,
            )
            assert get_json(f"{base}/healthz") == (200, {"status": "ok"})
            assert get_json(f"{base}/readyz") == (200, {"status": "ready", "database": "ok"})
            first_workers = children(master.pid)

            master.send_signal(signal.SIGHUP)
            # A graceful reload: two new workers replace the old ones; the master stays.
            wait_until(
                lambda: (
                    len(children(master.pid)) == 2
                    and not children(master.pid) & first_workers
                    and answers(f"{base}/readyz")
                ),
                timeout_s=START_TIMEOUT_S,
                what="SIGHUP did not replace both workers",
                log=log,
            )
            assert master.poll() is None
            assert get_json(f"{base}/readyz") == (200, {"status": "ready", "database": "ok"})

            assert stop(master, log=log) == 0
    output = log.read_text()
    # The access log names each request with its status.
    assert '"GET /readyz HTTP/1.1" 200' in output
    assert "Handling signal: hup" in output


def test_gunicorn_refuses_invalid_settings_in_one_line_before_forking(tmp_path: Path) -> None:
    env = production_env(tmp_path, database_url="sqlite:///x.db", port=free_port())
    env["CREDITS_WEB_WORKERS"] = "0"
    log = tmp_path / "gunicorn.log"
    with started(GUNICORN, env=env, log=log, cwd=ROOT) as master:
        assert master.wait(timeout=START_TIMEOUT_S) != 0
    assert "error: invalid setting CREDITS_WEB_WORKERS" in log.read_text()


def test_a_worker_freezes_its_loaded_app_out_of_the_garbage_collectors_reach(
    tmp_path: Path,
) -> None:
    env = production_env(tmp_path, database_url="sqlite:///x.db", port=free_port())
    # As gunicorn does in a worker: read the configuration, build the app, then the hook.
    script = (
        "import gc, types, credits.gunicorn_conf as conf, credits.wsgi\n"
        "before = gc.get_freeze_count()\n"
        "conf.post_worker_init(types.SimpleNamespace(wsgi=credits.wsgi.app))\n"
        "cache = credits.wsgi.app.extensions['credits_identity_cache']\n"
        "print(before, gc.get_freeze_count(), cache)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    before, after, cache = done.stdout.split()
    assert int(before) == 0
    assert int(after) > 100_000
    assert cache == "None"  # SQLite: no notifications, so no token identities kept
