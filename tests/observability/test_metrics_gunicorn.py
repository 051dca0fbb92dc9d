"""/metrics under gunicorn with two workers: every scrape, whichever worker answers
it, shows the requests both workers served, and a reload keeps the counts. The
production profile logs JSON lines that carry each request's id."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from deploy_processes import (
    START_TIMEOUT_S,
    answers,
    children,
    free_port,
    migrated_database,
    production_env,
    started,
    stop,
    wait_until,
)
from observability_helpers import sample

pytestmark = pytest.mark.slow

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "python:credits.gunicorn_conf"]
GUNICORN += ["credits.wsgi:app"]
REQUEST_ID = "gunicorn-test-req-0001"
HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}
COUNT = "credits_http_request_duration_seconds_count"


def _get(url: str, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - a local URL
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a local URL
        return str(response.read().decode())


def _served_by(directory: Path) -> set[int]:
    """The pids of the workers that have observed a request (their histogram files)."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("histogram_*.db")}


@contextmanager
def _only(serving: int, workers: set[int]) -> Iterator[None]:
    """The other workers stopped (SIGSTOP) meanwhile, so ``serving`` accepts every
    connection from the shared socket."""
    paused = workers - {serving}
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)


def test_metrics_sum_both_workers_and_survive_a_reload(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    metrics_dir = tmp_path / "prometheus"
    with migrated_database(tmp_path) as database_url:
        env = production_env(tmp_path, database_url=database_url, port=port)
        env |= {"CREDITS_WEB_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        with started(GUNICORN, env=env, log=log, cwd=tmp_path) as master:
            wait_until(
                lambda: answers(f"{base}/healthz") and len(children(master.pid)) == 2,
                timeout_s=START_TIMEOUT_S,
                what="gunicorn did not answer /healthz with two workers",
                log=log,
            )
            workers = children(master.pid)
            sent = 1  # the probe's
            for pid in sorted(workers):
                with _only(pid, workers):
                    for _ in range(5):
                        _get(f"{base}/healthz")
                    sent += 5
            assert _served_by(metrics_dir) >= workers
            _get(f"{base}/healthz", {"X-Request-Id": REQUEST_ID})
            sent += 1

            # Whichever worker answers a scrape, it reads every worker's files.
            scrapes = []
            for pid in sorted(workers):
                with _only(pid, workers):
                    scrapes.append(_get(f"{base}/metrics"))
            assert [sample(text, COUNT, **HEALTHZ) for text in scrapes] == [sent, sent]

            master.send_signal(signal.SIGHUP)
            wait_until(
                lambda: len(children(master.pid)) == 2 and not children(master.pid) & workers,
                timeout_s=START_TIMEOUT_S,
                what="SIGHUP did not replace both workers",
                log=log,
            )
            # The stopped workers' counts stay; their live gauges are dropped.
            assert sample(_get(f"{base}/metrics"), COUNT, **HEALTHZ) == sent
            live = {path.name for path in metrics_dir.glob("gauge_livesum_*.db")}
            assert not {name for name in live if int(name[:-3].rsplit("_", 1)[1]) in workers}

            assert stop(master, log=log) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (ours,) = [line for line in lines if line.get("request_id") == REQUEST_ID]
    assert ours["logger"] == "credits.request"
    assert ours["message"].startswith("GET /healthz 200 ")
