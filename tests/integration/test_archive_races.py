"""Real commits on PostgreSQL: archiving a project while its jobs are cancelled or
submitted neither deadlocks nor leaves a job queued, holding credits, behind.

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
from credits.grants import projects
from credits.jobs import service
from credits.jobs.models import Job, JobState
from credits.ledger.models import Account

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
        projects.archive_project(session, project_id=world.project_id, actor=world.researcher)


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
