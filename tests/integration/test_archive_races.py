"""Real commits on PostgreSQL: archiving a project while its jobs are cancelled or
submitted, or their usage settled, neither deadlocks nor leaves a job queued,
holding credits, behind.

Each test pauses the other request at its worst moment (holding the rows it has
locked) and archives meanwhile, in another thread and connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from jobs_world import JobsWorld, build_jobs_world
from sqlalchemy import Engine, select
from test_ledger_concurrency import committed_postgres

from credits.db import make_session_factory
from credits.grants import project_archive
from credits.jobs import service
from credits.jobs.models import Job, JobState
from credits.ledger.models import Account
from credits.metering import settlement
from credits.metering.models import JOBS_SOURCE, RecordStatus, UsageRecord
from credits.metering.service import settle_all_pending

pytestmark = pytest.mark.postgres

__all__ = ["committed_postgres"]  # the fixture, imported for pytest to find

PAUSE_S = 1.0


def _paused_in(
    monkeypatch: pytest.MonkeyPatch, name: str, paused: threading.Event
) -> Callable[[], None]:
    """Replaces ``credits.jobs.service.<name>`` so that its first call, in the thread
    that calls the returned function first, signals ``paused`` and waits PAUSE_S
    before going on: the rows that thread locked stay locked meanwhile."""
    real = getattr(service, name)
    owner: list[int] = []

    def claim() -> None:
        owner.append(threading.get_ident())

    def slow(*args: Any, **kwargs: Any) -> Any:
        if owner and threading.get_ident() == owner[0] and not paused.is_set():
            paused.set()
            threading.Event().wait(PAUSE_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, name, slow)
    return claim


def _archive_when(world: JobsWorld, paused: threading.Event) -> None:
    assert paused.wait(10)
    with world.session() as session:
        project_archive.archive_project(
            session, project_id=world.project_id, actor=world.researcher
        )


def test_archiving_while_a_queued_job_is_being_cancelled_does_not_deadlock(
    committed_postgres: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_jobs_world(make_session_factory(committed_postgres[1]))
    job = world.submit()
    assert _held(world) == job.hold_micro
    paused = threading.Event()
    claim = _paused_in(monkeypatch, "settle_job", paused)

    def cancel() -> None:
        claim()  # holds the job's lock, about to release its hold
        with world.session() as session:
            service.cancel_job(session, job_id=job.id, actor=world.researcher)

    with ThreadPoolExecutor(2) as pool:
        cancelled = pool.submit(cancel)
        archived = pool.submit(_archive_when, world, paused)
        cancelled.result(timeout=30)
        archived.result(timeout=30)
    assert world.job(job.id).state == JobState.CANCELLED.value
    assert _held(world) == 0


def test_a_job_submitted_while_the_project_is_archived_is_cancelled_or_refused(
    committed_postgres: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_jobs_world(make_session_factory(committed_postgres[1]))
    paused = threading.Event()
    # Paused after its hold is placed: it holds the accounts' locks and its new job.
    claim = _paused_in(monkeypatch, "record_queued", paused)

    def submit() -> None:
        claim()
        world.submit()

    with ThreadPoolExecutor(2) as pool:
        submitted = pool.submit(submit)
        archived = pool.submit(_archive_when, world, paused)
        submitted.result(timeout=30)
        archived.result(timeout=30)
    with world.session() as session:
        states = session.scalars(select(Job.state).where(Job.project_id == world.project_id))
        assert list(states) == [JobState.CANCELLED.value]
    assert _held(world) == 0


def _held(world: JobsWorld) -> int:
    """What the project's jobs hold now."""
    with world.session() as session:
        account = session.get_one(Account, world.account_id)
        return int(account.debits_pending)


def test_archiving_while_settlement_holds_a_queued_jobs_records_does_not_deadlock(
    committed_postgres: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_jobs_world(make_session_factory(committed_postgres[1]))
    first, second = world.submit(), world.submit()
    with world.session() as session:
        # What a job moved off its node and queued again leaves: usage not yet settled.
        session.add(_pending_record(world, second.id))
    paused = threading.Event()
    real = settlement.settle_batch

    def slow_batch(*args: Any, **kwargs: Any) -> Any:
        paused.set()  # the batch holds the record's lock and is about to book it
        threading.Event().wait(PAUSE_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(settlement, "settle_batch", slow_batch)

    def settle() -> None:
        settle_all_pending(world.factory, batch_size=500, clock=world.clock)

    with ThreadPoolExecutor(2) as pool:
        settled = pool.submit(settle)
        archived = pool.submit(_archive_when, world, paused)
        settled.result(timeout=30)
        archived.result(timeout=30)
    for job in (first, second):
        assert world.job(job.id).state == JobState.CANCELLED.value
    assert _held(world) == 0


def _pending_record(world: JobsWorld, job_id: int) -> UsageRecord:
    at = world.clock()
    return UsageRecord(
        source=JOBS_SOURCE,
        record_id=f"job:{job_id}:1:0",
        job_id=job_id,
        project_id=world.project_id,
        currency="gpu",
        unit="gpu_second",
        quantity_micro=60_000_000,
        amount_micro=1_000,
        started_at=at,
        ended_at=at,
        request_hash="x",
        status=RecordStatus.PENDING.value,
        captured_micro=0,
        overage_micro=0,
    )
