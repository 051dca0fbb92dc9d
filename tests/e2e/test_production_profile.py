"""The production profile end to end, as real processes: gunicorn with two workers on
PostgreSQL, a Celery worker and beat on Redis, the Kubernetes executor on the API
emulator (served over HTTP, its clock on wall time), storage on the S3 test server.

The operator bootstraps users and their tokens with the ``credits`` command; every
other step is a client over HTTP: the pool and its rate, a funded program, a
proposal reviewed by two reviewers and awarded, twenty jobs of mixed sizes run to
the end, one cancelled while it runs, one refused for its budget (402). Mid-run the Celery
worker is killed with SIGKILL and started again, the web tier is stopped and
started again, and PostgreSQL (a private server: CI's shared one must stay up) is
restarted; the run still finishes with every job charged once, for what it ran.
The balances and the project's report agree with the ledger's transfers, and
``credits ledger verify`` passes; ``/metrics`` shows the jobs running, every
submission by its status, and no job left live at the end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import required_service_url
from deploy_processes import free_port, production_env
from e2e_platform import (
    A100,
    FLAVOUR,
    Client,
    PrivatePostgres,
    Service,
    WallClockCluster,
    celery,
    cli,
    gunicorn,
    poll,
    scrape,
    wait_for_web,
)
from s3_server import S3Server

from credits.migrate import upgrade

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RATE = 3_600_000  # micro-credits per GPU-hour: 1,000 per GPU-second
PER_GPU_SECOND = RATE // 3600
AWARD = 50_000_000
# (GPUs, seconds the pod runs): 20 jobs of 49 GPUs in all on 16, so many wait.
JOBS = [
    *[(1, 4), (2, 6), (4, 8), (8, 5), (1, 10), (2, 12), (1, 14), (1, 16)],
    *[(1, 3), (2, 4), (4, 5), (1, 6), (2, 3), (8, 4), (1, 5), (2, 6), (4, 3), (1, 4)],
    *[(2, 5), (1, 3)],
]
RUN_DEADLINE_S = 150
# Two gunicorn workers importing the app on a busy 2-core machine take a while.
RESTART_TIMEOUT_S = 120
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
REDIS_DB = 7  # the e2e suite's own Redis database, besides its own queue


@dataclass
class Platform:
    base: str
    env: dict[str, str]
    postgres: PrivatePostgres
    cluster: WallClockCluster
    web: Service
    worker: Service
    beat: Service

    @property
    def logs(self) -> list[Path]:
        return [self.web.log, self.worker.log, self.beat.log]


def _redis_url() -> str:
    url = required_service_url("CREDITS_TEST_REDIS_URL", "Redis")
    return urlsplit(url)._replace(path=f"/{REDIS_DB}").geturl()


def _env(
    tmp_path: Path, *, database_url: str, port: int, s3: S3Server, kubeconfig: Path
) -> dict[str, str]:
    return production_env(tmp_path, database_url=database_url, port=port) | {
        "CREDITS_BROKER_URL": _redis_url(),
        "CREDITS_TASK_QUEUE": f"credits-e2e-{uuid.uuid4().hex[:12]}",
        "CREDITS_WEB_WORKERS": "2",
        "CREDITS_STORAGE_URL": s3.fresh_url(),
        "CREDITS_S3_ENDPOINT_URL": s3.endpoint_url,
        "CREDITS_S3_ACCESS_KEY_ID": s3.access_key_id,
        "CREDITS_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
        "CREDITS_EXECUTOR": "kubernetes",
        "CREDITS_KUBERNETES_KUBECONFIG": str(kubeconfig),
        "CREDITS_KUBERNETES_FLAVOURS": f"{FLAVOUR}={A100}",
        # Beat's jobs cycle every second rather than every five: a shorter run.
        "CREDITS_SCHEDULER_INTERVAL_SECONDS": "1",
    }


@pytest.fixture
def platform(tmp_path: Path, s3_server: S3Server) -> Iterator[Platform]:
    required_service_url("CREDITS_TEST_POSTGRES_URL", "PostgreSQL")
    with ExitStack() as stack:  # stops what started, last first, however the test ends
        postgres = PrivatePostgres(tmp_path / "postgres").start()
        stack.callback(postgres.stop)
        upgrade(postgres.url)
        cluster = WallClockCluster(tmp_path / "kubeconfig", default_run_s=5.0).start()
        stack.callback(cluster.stop)
        port = free_port()
        env = _env(
            tmp_path,
            database_url=postgres.url,
            port=port,
            s3=s3_server,
            kubeconfig=cluster.kubeconfig,
        )
        beat_file = tmp_path / "beat-schedule"
        services = [
            gunicorn(env, tmp_path / "web.log"),
            celery("worker", env, tmp_path / "worker.log", beat_file),
            celery("beat", env, tmp_path / "beat.log", beat_file),
        ]
        for service in services:
            stack.callback(service.start().stop)
        platform = Platform(f"http://127.0.0.1:{port}", env, postgres, cluster, *services)
        wait_for_web(platform.base, platform.web)
        yield platform


def _people(platform: Platform) -> dict[str, Client]:
    """The operator's bootstrap: users and their tokens by the ``credits`` command
    (several at once: each command is a new Python process)."""
    roles = {"ops": "ops", "fay": "funder", "pia": "researcher", "rev1": "reviewer"}
    roles["rev2"] = "reviewer"

    def user(name: str) -> None:
        email = f"{name}@e2e.example.org"
        cli(
            platform.env, "users", "create", "--email", email, "--name", name, "--role", roles[name]
        )

    def token(name: str) -> Client:
        secret = cli(platform.env, "tokens", "create", "--email", f"{name}@e2e.example.org")
        return Client(platform.base, secret.strip())

    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        list(pool.map(user, roles))
        return dict(zip(roles, pool.map(token, roles), strict=True))


def _now() -> datetime:
    return datetime.now().astimezone()


def _awarded_account(people: dict[str, Client]) -> tuple[int, int]:
    """Over HTTP: the pool's flavour and rate, a funded program, a proposal reviewed
    and awarded; (the project's id, its allocation's ledger account)."""
    ops, fay, pia = people["ops"], people["fay"], people["pia"]
    flavour = {"name": FLAVOUR, "node_label_value": A100, "gpu_memory_gb": 80, "gpus_per_node": 8}
    ops.call("POST", "/pool/flavours", json=flavour, expect=201)
    rate = {"micro_credits_per_gpu_hour": RATE}
    ops.call("POST", f"/pool/flavours/{FLAVOUR}/rates", json=rate, expect=201)
    criteria = [{"key": "merit", "label": "Merit"}, {"key": "fit", "label": "Fit"}]
    program = fay.call(
        "POST",
        "/programs",
        json={
            "name": "Compute for climate",
            "description": "GPU hours for climate models.",
            "opens_at": (_now() - timedelta(days=1)).isoformat(),
            "closes_at": (_now() + timedelta(days=30)).isoformat(),
            "criteria": criteria,
            "min_reviewers": 2,
            "min_mean_score": 350,
        },
        expect=201,
    )
    fay.call("POST", f"/programs/{program['id']}/open", expect=200)
    fund = {"currency": "gpu", "amount_micro": 4 * AWARD, "reason": "FY27"}
    fay.call("POST", f"/programs/{program['id']}/fund", json=fund, key="fund-1", expect=201)
    project = pia.call(
        "POST", "/projects", json={"title": "Ice sheets", "field_of_science": "Glaciology"}
    )
    proposal = pia.call(
        "POST",
        "/proposals",
        json={
            "program_id": program["id"],
            "project_id": project["id"],
            "kind": "new",
            "title": "Coupled ice-ocean runs",
            "abstract": "Ice.",
            "justification": "GPUs.",
            "requested": {"gpu": AWARD},
            "starts_at": _now().isoformat(),
            "ends_at": (_now() + timedelta(days=90)).isoformat(),
        },
        expect=201,
    )
    pid = proposal["id"]
    pia.call("POST", f"/proposals/{pid}/submit", expect=200)
    for name in ("rev1", "rev2"):
        reviewer = people[name].call("GET", "/me", expect=200)["user_id"]
        fay.call("POST", f"/proposals/{pid}/reviewers", json={"user_id": reviewer}, expect=201)
        review = {"scores": {"merit": 4, "fit": 4}, "comment": "Sound."}
        people[name].call("PUT", f"/proposals/{pid}/review", json=review, expect=200)
    award = fay.call(
        "POST",
        f"/proposals/{pid}/award",
        key="award-1",
        json={
            "amounts": {"gpu": AWARD},
            "starts_at": _now().isoformat(),
            "ends_at": (_now() + timedelta(days=90)).isoformat(),
        },
        expect=201,
    )
    (allocation,) = award["allocations"]
    assert allocation["available_micro"] == AWARD
    return project["id"], allocation["account_id"]


def _job(name: str, gpus: int, max_runtime_seconds: int = 600) -> dict[str, Any]:
    return {
        "name": name,
        "image": "python:3.12",
        "command": ["python", "train.py"],
        "flavour": FLAVOUR,
        "gpus": gpus,
        "max_runtime_seconds": max_runtime_seconds,
    }


def _submit_all(platform: Platform, pia: Client, project_id: int) -> list[int]:
    """The job to cancel (runs until stopped) first, then JOBS; each pod's run is
    planned in the emulator before its job exists: ids count from 1 in this database."""
    platform.cluster.run_for(1, None)
    for index, (_, seconds) in enumerate(JOBS, start=2):
        platform.cluster.run_for(index, seconds)
    ids = []
    for index, (gpus, _) in enumerate([(1, 0), *JOBS], start=1):
        job = pia.call(
            "POST",
            f"/projects/{project_id}/jobs",
            json=_job(f"train-{index}", gpus),
            key=f"job-{index}",
            expect=201,
        )
        assert job["id"] == index, "job ids are expected to count from 1 in a new database"
        ids.append(job["id"])
    return ids


def _jobs(pia: Client, project_id: int) -> dict[int, dict[str, Any]]:
    page = pia.call("GET", f"/jobs?project={project_id}&limit=100", expect=200)
    assert page["next_cursor"] is None
    return {job["id"]: job for job in page["items"]}


def test_the_production_profile_runs_a_program_through_crashes_and_restarts(
    platform: Platform,
) -> None:
    people = _people(platform)
    pia = people["pia"]
    project_id, account_id = _awarded_account(people)
    ids = _submit_all(platform, pia, project_id)
    over = pia.call(
        "POST",
        f"/projects/{project_id}/jobs",
        json=_job("too-big", 8, max_runtime_seconds=86400),
        key="job-over",
        expect=402,
    )
    assert over["required"] > over["available"]

    def running() -> int:
        return sum(job["state"] == "running" for job in _jobs(pia, project_id).values())

    poll(lambda: running() >= 3, timeout_s=60, what="three jobs running", logs=platform.logs)
    _check_metrics_while_running(platform)
    # The worker dies mid-task, without a warm shutdown; a new one takes over.
    platform.worker.kill9()
    time.sleep(1.0)
    platform.worker.start()
    pia.call("POST", f"/jobs/{ids[0]}/cancel", expect=(200, 202))
    # The web tier goes down and comes back on the same port.
    platform.web.stop()
    platform.web.start()
    wait_for_web(platform.base, platform.web, timeout_s=RESTART_TIMEOUT_S)
    # PostgreSQL restarts under all of them: every pooled connection is cut.
    restarted_at = time.time()
    platform.postgres.restart()

    def finished() -> bool:
        jobs = _jobs(pia, project_id)
        return all(job["state"] in TERMINAL and job["settled_at"] for job in jobs.values())

    poll(finished, timeout_s=RUN_DEADLINE_S, what="every job finished", logs=platform.logs)
    _check_outcome(platform, pia, project_id, account_id)
    # A pooled connection the restart cut is replaced at checkout, and a read that
    # meets one mid-request runs again: no request answered 500, before or after.
    assert pia.server_errors == [], (restarted_at, pia.server_errors)
    metrics = scrape(platform.base)
    for state in ("queued", "starting", "running"):
        assert metrics[("credits_jobs", frozenset({("state", state)}))] == 0
    _check_a_revoked_token_is_refused_by_every_worker(platform)


def _check_a_revoked_token_is_refused_by_every_worker(platform: Platform) -> None:
    """The workers keep the identities of tokens they have seen, for 30 s unless told
    otherwise; after the restarts their listeners still hear changes, so a token the
    operator revokes is refused within moments by whichever worker answers (each
    request here on a new connection, so both workers answer some)."""
    email = "pia@e2e.example.org"
    secret = cli(platform.env, "tokens", "create", "--email", email, "--name", "revoke-me")
    token = Client(platform.base, secret.strip())

    def answers() -> list[int]:
        return [token.status_on_a_new_connection("GET", "/me") for _ in range(12)]

    assert answers() == [200] * 12
    listing = cli(platform.env, "tokens", "list", "--email", email)
    (token_id,) = [line.split()[0] for line in listing.splitlines() if " revoke-me " in line]
    cli(platform.env, "tokens", "revoke", token_id)
    poll(lambda: answers() == [401] * 12, timeout_s=5, what="refused", logs=platform.logs)


SUBMIT_ROUTE = "/api/v1/projects/<int:project_id>/jobs"


def _check_metrics_while_running(platform: Platform) -> None:
    """/metrics, summed over both web workers: jobs running now, and every submission
    counted by its status (before the web tier's restart empties the counts)."""
    metrics = scrape(platform.base)
    assert metrics[("credits_jobs", frozenset({("state", "running")}))] >= 1

    def submitted(status: str) -> float:
        labels = frozenset({("route", SUBMIT_ROUTE), ("method", "POST"), ("status", status)})
        return metrics[("credits_http_request_duration_seconds_count", labels)]

    assert (submitted("201"), submitted("402")) == (len(JOBS) + 1, 1)


def _check_outcome(platform: Platform, pia: Client, project_id: int, account_id: int) -> None:
    jobs = _jobs(pia, project_id)
    assert sorted(jobs) == list(range(1, len(JOBS) + 2)), "a job was lost or made twice"
    cancelled = jobs.pop(1)
    assert cancelled["state"] == "cancelled"
    assert 0 < cancelled["charged_micro"] < cancelled["hold_micro"]
    for job_id, (gpus, seconds) in enumerate(JOBS, start=2):
        job = jobs[job_id]
        assert job["state"] == "succeeded", job
        # Charged once, for exactly the GPU-seconds its pod ran.
        assert job["charged_micro"] == gpus * seconds * PER_GPU_SECOND, job
        assert job["overage_micro"] == 0
    charged = cancelled["charged_micro"] + sum(job["charged_micro"] for job in jobs.values())
    balance = pia.call("GET", f"/accounts/{account_id}/balance", expect=200)
    assert balance == {
        "account_id": account_id,
        "currency": "gpu",
        "posted": AWARD - charged,
        "held": 0,
        "incoming": 0,
        "available": AWARD - charged,
    }
    report = pia.call("GET", f"/projects/{project_id}/report", expect=200)
    (line,) = report["allocations"]
    assert (line["used"], line["held"], line["available"]) == (charged, 0, AWARD - charged)
    assert sum(job["charged"] for job in report["jobs"]) == charged
    verified = json.loads(cli(platform.env, "ledger", "verify", "--json"))
    assert verified["ok"] is True, verified
    assert (platform.worker.restarts, platform.web.restarts) == (2, 2)
