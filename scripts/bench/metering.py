"""Metering throughput: usage records settled per second, and records ingested per
second, each beside a raw multi-row insert of the same rows in the same run.

Settlement: N pending job usage records spread round-robin over ``--jobs`` jobs
that each hold credits, settled by ``settle_all_pending`` in batches of
``--batch`` (one transaction per batch, one capture per job per batch), then
``verify_ledger``. Beside it, in a second database of the same backend with the
same world, the raw baseline inserts the same rows into the same tables (the
records, the capture transfers and their audit events, as written by the
settlement) with one multi-row INSERT per table per batch, one transaction per
batch; on PostgreSQL a third database gets the same rows by ``COPY``, as settlement
writes them (``op=raw_copy``): the fastest this server stores those rows, whatever
the code around it. Ingestion: batches of 1,000 records posted to
``POST /api/v1/usage/records`` through the Flask test client (no network) by each
count of ``--ingest-clients`` in turn, each client a process with its own app,
beside a raw multi-row insert of as many usage records. Runs on SQLite and, with
--postgres-url, on throwaway PostgreSQL databases. Exits non-zero when
``verify_ledger`` fails after a run.
Prints::

    op=settle backend=postgresql jobs=500 records=20000 batch=500 per_s=… seconds=…
    op=raw_insert backend=postgresql jobs=500 records=20000 rows=… per_s=… seconds=…
    ratio=… of=settle/raw_insert backend=postgresql jobs=500 target=0.60 …
    op=raw_copy backend=postgresql jobs=500 records=20000 rows=… per_s=… seconds=…
    ratio=… of=settle/raw_copy backend=postgresql jobs=500 records=20000
    op=ingest backend=postgresql records=10000 clients=2 per_s=… seconds=…
    ratio=… of=ingest/target_per_s backend=postgresql records=10000 clients=2 …

    .venv/bin/python scripts/bench/metering.py --jobs 50 500 --records 20000 \
        --postgres-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from credits import migrate
from credits.app import create_app
from credits.audit.models import AuditEvent
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
from credits.ledger import batch_write as bulk
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind, Currency, Transfer
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
# Issue 17's targets: records per second, and the share of the raw insert's speed.
RATE_TARGET = 10_000
SETTLE_RATIO_TARGET = 0.6


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


def _settle_run(url: str, jobs: int, records: int, batch: int) -> tuple[float, _Written]:
    """Settles ``records`` pending records over ``jobs`` jobs; returns the seconds it
    took and the rows it wrote (for the raw baseline)."""
    engine: Engine = make_engine(url)
    factory = make_session_factory(engine)
    project_id, held = _world(factory, jobs)
    _pending_records(factory, project_id, held, records)
    with session_scope(factory) as session:
        first_transfer = _next_id(session, Transfer)
        first_event = _next_id(session, AuditEvent)
    started = time.perf_counter()
    report = settle_all_pending(factory, batch_size=batch, max_batches=10**6)
    seconds = time.perf_counter() - started
    with session_scope(factory) as session:
        _require(verify_ledger(session).ok, "ledger verification failed after settlement")
        written = _Written(
            records=_rows(session, UsageRecord, 1),
            transfers=_rows(session, Transfer, first_transfer),
            events=_rows(session, AuditEvent, first_event),
        )
    _require(report.records == records, f"settled {report.records} of {records} records")
    engine.dispose()
    return seconds, written


@dataclass
class _Written:
    records: list[dict[str, Any]]
    transfers: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def rows(self) -> int:
        return len(self.records) + len(self.transfers) + len(self.events)


def _next_id(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.coalesce(func.max(model.id), 0))) or 0) + 1


def _rows(session: Session, model: Any, first_id: int) -> list[dict[str, Any]]:
    """Rows from ``first_id`` on, without what the database fills in itself."""
    table = model.__table__
    fresh = ("id", "txid", "log_index", "pending_id")
    return [
        {key: value for key, value in row._mapping.items() if key not in fresh}
        for row in session.execute(select(table).where(table.c.id >= first_id).order_by(table.c.id))
    ]


def _raw_run(url: str, jobs: int, written: _Written, batches: int, *, copy: bool = False) -> float:
    """The same rows into the same tables, one multi-row INSERT per table per batch
    (``copy``: one ``COPY`` per table per batch on PostgreSQL, as settlement writes)."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    _world(factory, jobs)
    started = time.perf_counter()
    for index in range(batches):
        with session_scope(factory) as session:
            for model, rows in (
                (UsageRecord, written.records),
                (Transfer, written.transfers),
                (AuditEvent, written.events),
            ):
                part = _slice(rows, index, batches)
                table = cast(Table, model.__table__)
                if part and copy:
                    bulk.insert_rows(session, table, part)
                elif part:
                    session.execute(insert(table), part)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def _slice(rows: list[dict[str, Any]], index: int, parts: int) -> list[dict[str, Any]]:
    size = -(-len(rows) // parts)
    return rows[index * size : (index + 1) * size]


def bench_settle(
    database: Callable[[], AbstractContextManager[str]],
    backend: str,
    records: int,
    batch: int,
    jobs: int,
) -> None:
    with database() as url:
        seconds, written = _settle_run(url, jobs, records, batch)
    with database() as url:
        raw = _raw_run(url, jobs, written, -(-records // batch))
    tags = f"backend={backend} jobs={jobs} records={records}"
    print(f"op=settle {tags} batch={batch} per_s={records / seconds:.0f} seconds={seconds:.2f}")
    print(f"op=raw_insert {tags} rows={written.rows()} per_s={records / raw:.0f} seconds={raw:.2f}")
    _ratio(raw / seconds, "settle/raw_insert", tags, SETTLE_RATIO_TARGET)
    _ratio(records / seconds / RATE_TARGET, "settle/target_per_s", tags, 1.0)
    if backend == "postgresql":
        # Settlement writes with COPY; the same rows written that way are the fastest
        # this server stores them, whatever the code around it.
        with database() as url:
            raw_copy = _raw_run(url, jobs, written, -(-records // batch), copy=True)
        print(
            f"op=raw_copy {tags} rows={written.rows()} per_s={records / raw_copy:.0f}"
            f" seconds={raw_copy:.2f}"
        )
        print(f"ratio={raw_copy / seconds:.2f} of=settle/raw_copy {tags}")


def _ratio(value: float, of: str, tags: str, target: float) -> None:
    met = "yes" if value >= target else "no"
    print(f"ratio={value:.2f} of={of} {tags} target={target:.2f} met={met}")


def bench_ingest(url: str, backend: str, records: int, clients: list[int]) -> None:
    """Posts ``records`` through the API once per number of ``clients``, each client a
    process of its own (a meter and the web worker answering it), then a raw insert."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    project_id, _ = _world(factory, 1)
    with session_scope(factory) as session:
        secret = create_token(session, email="pi@bench.org", actor=SYSTEM, scopes=("meter",)).secret
    engine.dispose()
    timings = {
        count: _post_in_parallel(url, secret, project_id, records, count) for count in clients
    }
    with session_scope(factory) as session:
        _require(verify_ledger(session).ok, "ledger verification failed after ingestion")
        stored = session.scalar(select(func.count()).select_from(UsageRecord))
        # Each client's warm-up batch stores one record too.
        expected = records * len(clients) + sum(clients)
        _require(stored == expected, f"{stored} records stored, not {expected}")
        rows = [
            row | {"record_id": f"raw-{row['record_id']}"}
            for row in _rows(session, UsageRecord, 1)
            if "warm-up" not in row["record_id"]
        ][:records]
    started = time.perf_counter()
    for first in range(0, len(rows), 1000):
        with session_scope(factory) as session:
            session.execute(insert(UsageRecord), rows[first : first + 1000])
    raw = time.perf_counter() - started
    tags = f"backend={backend} records={records}"
    print(f"op=raw_insert_records {tags} per_s={records / raw:.0f} seconds={raw:.2f}")
    for count, seconds in timings.items():
        client_tags = f"{tags} clients={count}"
        print(f"op=ingest {client_tags} per_s={records / seconds:.0f} seconds={seconds:.2f}")
        if count == 1:
            _ratio(raw / seconds, "ingest/raw_insert", client_tags, SETTLE_RATIO_TARGET)
        _ratio(records / seconds / RATE_TARGET, "ingest/target_per_s", client_tags, 1.0)
    engine.dispose()


def _shares(records: int, clients: int) -> list[int]:
    """``records`` split as evenly as can be among ``clients``."""
    return [records // clients + (client < records % clients) for client in range(clients)]


@dataclass(frozen=True)
class _Meter:
    url: str
    secret: str
    project_id: int


def _post_in_parallel(url: str, secret: str, project_id: int, records: int, clients: int) -> float:
    """Seconds from the first client's first post to the last client's last answer."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(clients)
    spans = context.Queue()
    meter = _Meter(url, secret, project_id)
    processes = [
        context.Process(
            target=_post_batches,
            args=(meter, f"c{clients}-{client}-", share, ready, spans),
        )
        for client, share in enumerate(_shares(records, clients))
    ]
    for process in processes:
        process.start()
    timings = [spans.get() for _ in processes]
    for process in processes:
        process.join()
        _require(process.exitcode == 0, f"a meter process exited with {process.exitcode}")
    _require(all(isinstance(span, tuple) for span in timings), str(timings))
    return max(end for _, end in timings) - min(start for start, _ in timings)


def _post_batches(meter: _Meter, prefix: str, records: int, ready: Any, spans: Any) -> None:
    """One meter and its web worker: posts ``records`` in batches of 1,000 through the
    Flask test client and puts on ``spans`` when it started and ended (``perf_counter``,
    one clock for every process of the machine), or why it failed."""
    try:
        spans.put(_post_and_check(meter, prefix, records, ready))
    except BaseException as error:
        spans.put(f"{type(error).__name__}: {error}")
        raise


def _post_and_check(meter: _Meter, prefix: str, records: int, ready: Any) -> tuple[float, float]:
    engine = make_engine(meter.url)
    factory = make_session_factory(engine)
    executor = SimulatedExecutor([NodeCapacity("n0", FLAVOUR, 8)], clock=lambda: datetime.now(UTC))
    app = create_app(
        load_settings(database_url=meter.url), session_factory=factory, executor=executor
    )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {meter.secret}"}
    end = datetime.now(UTC) - timedelta(minutes=1)
    # A meter encodes its batch and reads the answer on its own machine: the bodies are
    # encoded before the clock starts, and each answer is decoded after it stops.
    bodies = [
        json.dumps(
            {
                "records": [
                    _meter_record(f"{prefix}{index}", meter.project_id, end)
                    for index in range(first, min(first + 1000, records))
                ]
            }
        ).encode()
        for first in range(0, records, 1000)
    ]
    # A web worker that has answered before: its connection made, its statements
    # prepared and its caches filled, as one in service is.
    warm_up = {"records": [_meter_record(f"{prefix}warm-up", meter.project_id, end)]}
    _require(
        client.post("/api/v1/usage/records", json=warm_up, headers=headers).status_code == 200,
        "warm-up",
    )
    ready.wait()
    answers = []
    started = time.perf_counter()
    for body in bodies:
        response = client.post(
            "/api/v1/usage/records", data=body, content_type="application/json", headers=headers
        )
        answers.append((response.status_code, response.get_data()))
    ended = time.perf_counter()
    for (status, answer), body in zip(answers, bodies, strict=True):
        _require(status == 200, answer.decode())
        sent = len(json.loads(body)["records"])
        _require(json.loads(answer).get("accepted") == sent, answer.decode())
    engine.dispose()
    return started, ended


def _meter_record(record_id: str, project_id: int, end: datetime) -> dict[str, Any]:
    return {
        "source": "bench",
        "record_id": record_id,
        "project_id": project_id,
        "currency": "gpu",
        "quantity": 60,
        "unit": "gpu_second",
        "start": (end - timedelta(minutes=1)).isoformat(),
        "end": end.isoformat(),
        "resource": FLAVOUR,
    }


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"bench failed: {message[:500]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--ingest-records", type=int, default=10_000)
    parser.add_argument(
        "--ingest-clients",
        type=int,
        nargs="+",
        default=[1, 2],
        help="meters posting at once, each a process with its own web worker",
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--jobs", type=int, nargs="*", default=[50, 500], help="none: ingestion only"
    )
    parser.add_argument("--postgres-url", help="an admin URL; throwaway databases are made")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    backends: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = []
    if not args.no_sqlite:
        backends.append(("sqlite", sqlite_database))
    if args.postgres_url:
        backends.append(("postgresql", lambda: postgres_database(args.postgres_url)))
    for backend, database in backends:
        for jobs in args.jobs:
            bench_settle(database, backend, args.records, args.batch, jobs)
        if args.ingest_records:
            with database() as url:
                bench_ingest(url, backend, args.ingest_records, args.ingest_clients)


if __name__ == "__main__":
    main()
