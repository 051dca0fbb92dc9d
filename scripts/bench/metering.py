"""Metering throughput: usage records settled per second, and records ingested per second.

Settlement: N pending job usage records spread over jobs that each hold
credits, settled by ``settle_all_pending`` in batches (one transaction per
batch, one capture per job per batch), on SQLite and, with --postgres-url, on
a throwaway PostgreSQL database. Ingestion: batches of 1,000 records posted to
``POST /api/v1/usage/records`` through the Flask test client (no network).
Afterwards ``verify_ledger`` must pass. Prints one line per run::

    op=settle backend=postgresql records=… batch=… per_s=… seconds=…
    op=ingest backend=sqlite records=… per_s=… seconds=…

    .venv/bin/python scripts/bench/metering.py --records 50000 \
        --postgres-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from credits import migrate
from credits.app import create_app
from credits.db import make_engine, make_session_factory, session_scope
from credits.grants import projects
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.identity.tokens import create_token
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.service import submit_job
from credits.jobs.spec import JobSpec
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import system_account_id
from credits.ledger.verify import verify_ledger
from credits.metering.models import JOBS_SOURCE, RecordStatus, UsageRecord, UsageUnit
from credits.metering.service import settle_all_pending
from credits.pool import service as pool
from credits.settings import load_settings

SYSTEM = Actor.system("bench")
FLAVOUR = "bench-gpu"
RATE = 2_000_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        migrate.upgrade(url)
        yield url


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    name = f"credits_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _world(factory: sessionmaker[Session], jobs: int) -> tuple[int, list[tuple[int, int]]]:
    """A researcher's project with ample credits and ``jobs`` queued jobs holding credits."""
    with session_scope(factory) as session:
        create_user(
            session,
            email="pi@bench.org",
            name="PI",
            roles=(Role.RESEARCHER,),
            institution="Bench",
            actor=SYSTEM,
        )
        researcher = actor_for_email(session, "pi@bench.org")
        project = projects.create_project(
            session, title="Bench", field_of_science="Benchmarks", actor=researcher
        )
        account = ledger.open_account(
            session,
            code="bench-allocation",
            currency=Currency.GPU,
            project_id=project.id,
            actor=SYSTEM,
            starts_at=T0 - timedelta(days=1),
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        ledger.grant(
            session,
            key="bench-fund",
            from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.GPU),
            to_account_id=account.id,
            amount=10**15,
            actor=SYSTEM,
        )
        pool.add_flavour(
            session,
            name=FLAVOUR,
            node_label_value="BENCH",
            gpu_memory_gb=80,
            gpus_per_node=8,
            actor=SYSTEM,
        )
        pool.set_rate(
            session,
            flavour=FLAVOUR,
            credits_per_gpu_hour_micro=RATE,
            effective_from=T0,
            actor=SYSTEM,
            now=T0,
        )
        spec = JobSpec(
            name="bench",
            image="bench",
            command=["true"],
            flavour=FLAVOUR,
            gpus=8,
            max_runtime_seconds=7 * 86400,
        )
        held = []
        for _ in range(jobs):
            job = submit_job(
                session,
                project_id=project.id,
                spec=spec,
                actor=researcher,
                max_runtime_cap=7 * 86400,
                now=T0,
            )
            held.append((job.id, job.hold_micro))
        return project.id, held


def _pending_records(
    factory: sessionmaker[Session], project_id: int, jobs: list[tuple[int, int]], count: int
) -> None:
    """``count`` one-minute records, round-robin over the jobs, each well within its hold."""
    gpu_us = 8 * 60 * 1_000_000
    amount = -(-gpu_us * RATE // 3_600_000_000)
    rows = []
    for index in range(count):
        job_id, _ = jobs[index % len(jobs)]
        start = T0 + timedelta(minutes=index // len(jobs))
        rows.append(
            {
                "source": JOBS_SOURCE,
                "record_id": f"job:{job_id}:1:{index}",
                "job_id": job_id,
                "project_id": project_id,
                "currency": "gpu",
                "unit": UsageUnit.GPU_SECOND.value,
                "quantity_micro": gpu_us,
                "amount_micro": amount,
                "rate_version_id": None,
                "resource": None,
                "started_at": start,
                "ended_at": start + timedelta(minutes=1),
                "evidence_json": None,
                "request_hash": "bench",
                "status": RecordStatus.PENDING.value,
                "captured_micro": 0,
                "overage_micro": 0,
            }
        )
    with session_scope(factory) as session:
        for chunk in range(0, len(rows), 5000):
            session.execute(insert(UsageRecord), rows[chunk : chunk + 5000])


def bench_settle(url: str, backend: str, records: int, batch: int, jobs: int) -> None:
    engine: Engine = make_engine(url)
    factory = make_session_factory(engine)
    project_id, held = _world(factory, jobs)
    _pending_records(factory, project_id, held, records)
    started = time.perf_counter()
    report = settle_all_pending(factory, batch_size=batch, max_batches=10**6)
    seconds = time.perf_counter() - started
    with session_scope(factory) as session:
        _require(verify_ledger(session).ok, "ledger verification failed")
    _require(report.records == records, f"settled {report.records} of {records} records")
    print(
        f"op=settle backend={backend} records={records} batch={batch} jobs={jobs} "
        f"per_s={records / seconds:.0f} seconds={seconds:.2f}"
    )
    engine.dispose()


def bench_ingest(url: str, backend: str, records: int) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    project_id, _ = _world(factory, 1)
    with session_scope(factory) as session:
        secret = create_token(session, email="pi@bench.org", actor=SYSTEM, scopes=("meter",)).secret
    executor = SimulatedExecutor([NodeCapacity("n0", FLAVOUR, 8)], clock=lambda: datetime.now(UTC))
    app = create_app(load_settings(database_url=url), session_factory=factory, executor=executor)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    end = datetime.now(UTC) - timedelta(minutes=1)
    started = time.perf_counter()
    for first in range(0, records, 1000):
        batch = [
            {
                "source": "bench",
                "record_id": f"r{index}",
                "project_id": project_id,
                "currency": "gpu",
                "quantity": "60",
                "unit": "gpu_second",
                "start": (end - timedelta(minutes=1)).isoformat(),
                "end": end.isoformat(),
                "resource": FLAVOUR,
            }
            for index in range(first, min(records, first + 1000))
        ]
        response = client.post("/api/v1/usage/records", json={"records": batch}, headers=headers)
        _require(response.status_code == 200, str(response.json))
        _require(response.json["accepted"] == len(batch), str(response.json))
    seconds = time.perf_counter() - started
    print(
        f"op=ingest backend={backend} records={records} per_s={records / seconds:.0f} "
        f"seconds={seconds:.2f}"
    )
    engine.dispose()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"bench failed: {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--ingest-records", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--postgres-url", help="an admin URL; a throwaway database is made")
    args = parser.parse_args()
    backends = [("sqlite", sqlite_database)]
    if args.postgres_url:
        backends.append(("postgresql", lambda: postgres_database(args.postgres_url)))
    for backend, database in backends:
        with database() as url:
            bench_settle(url, backend, args.records, args.batch, args.jobs)
        with database() as url:
            bench_ingest(url, backend, args.ingest_records)


if __name__ == "__main__":
    main()
