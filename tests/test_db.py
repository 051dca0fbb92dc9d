"""The engine's SQLite settings, savepoints, session scope, retries and the busy timeout.

These tests commit for real, each on its own SQLite file under ``tmp_path``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from credits.db import make_engine, make_session_factory, run_in_transaction, session_scope

BUSY_TIMEOUT_MS = 1_500


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite file with one table ``notes(id, body)``."""
    engine = make_engine(
        f"sqlite:///{tmp_path / 'db.sqlite'}", sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS
    )
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT UNIQUE)"))
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def _bodies(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(text("SELECT body FROM notes ORDER BY id")))


def _add(session: Session, body: str) -> None:
    session.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})


def test_sqlite_connections_use_wal_foreign_keys_and_the_busy_timeout(engine: Engine) -> None:
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql

        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS


def test_sqlite_transactions_take_the_write_lock_at_begin(engine: Engine) -> None:
    """BEGIN IMMEDIATE: a second writer is refused before it reads anything."""
    quick = make_engine(str(engine.url), sqlite_busy_timeout_ms=0)
    try:
        with engine.connect() as first, first.begin():
            first.execute(text("SELECT count(*) FROM notes"))  # a read alone, yet the lock is held
            with pytest.raises(OperationalError, match="database is locked"), quick.begin():
                pass
    finally:
        quick.dispose()


def test_sqlite_savepoint_rollback_keeps_the_outer_transactions_change(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    with session_scope(factory) as session:
        _add(session, "outer")
        nested = session.begin_nested()
        _add(session, "inner")
        nested.rollback()
        _add(session, "after")

    assert _bodies(engine) == ["outer", "after"]


def test_sqlite_released_savepoint_is_undone_by_the_outer_rollback(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    """Plain pysqlite lets a first SAVEPOINT open the transaction, so RELEASE commits it."""
    with pytest.raises(RuntimeError), session_scope(factory) as session:
        with session.begin_nested():
            _add(session, "released")
        raise RuntimeError("the outer transaction fails")

    assert _bodies(engine) == []


def test_session_scope_commits_when_the_block_succeeds(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    with session_scope(factory) as session:
        _add(session, "kept")

    assert _bodies(engine) == ["kept"]


def test_session_scope_rolls_back_and_reraises_when_the_block_fails(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    with pytest.raises(RuntimeError, match="boom"), session_scope(factory) as session:
        _add(session, "lost")
        session.flush()
        raise RuntimeError("boom")

    assert _bodies(engine) == []


def _locked() -> OperationalError:
    return OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))


class _Sqlstate(Exception):
    """A driver error carrying a PostgreSQL SQLSTATE, as psycopg's do."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "transient",
    [
        pytest.param(_locked(), id="sqlite-locked"),
        pytest.param(DBAPIError("UPDATE", {}, _Sqlstate("40001")), id="serialization-failure"),
        pytest.param(DBAPIError("UPDATE", {}, _Sqlstate("40P01")), id="deadlock"),
    ],
)
def test_run_in_transaction_retries_a_transient_failure_in_a_fresh_transaction(
    engine: Engine, factory: sessionmaker[Session], transient: DBAPIError
) -> None:
    calls: list[int] = []

    def work(session: Session) -> str:
        calls.append(1)
        _add(session, f"attempt {len(calls)}")
        if len(calls) == 1:
            raise transient
        return "done"

    assert run_in_transaction(factory, work) == "done"
    assert len(calls) == 2
    assert _bodies(engine) == ["attempt 2"]


@pytest.mark.parametrize(
    "permanent",
    [
        pytest.param(
            OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x")),
            id="other-operational-error",
        ),
        pytest.param(
            IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
            id="integrity-error",
        ),
    ],
)
def test_run_in_transaction_does_not_retry_a_permanent_failure(
    engine: Engine, factory: sessionmaker[Session], permanent: DBAPIError
) -> None:
    calls: list[int] = []

    def work(session: Session) -> None:
        calls.append(1)
        _add(session, "never kept")
        raise permanent

    with pytest.raises(type(permanent)):
        run_in_transaction(factory, work)

    assert len(calls) == 1
    assert _bodies(engine) == []


def test_run_in_transaction_gives_up_after_its_attempts(factory: sessionmaker[Session]) -> None:
    calls: list[int] = []

    def work(_session: Session) -> None:
        calls.append(1)
        raise _locked()

    with pytest.raises(OperationalError, match="database is locked"):
        run_in_transaction(factory, work, attempts=3)

    assert len(calls) == 3


def test_a_second_sqlite_writer_waits_for_the_first_instead_of_failing(
    engine: Engine, factory: sessionmaker[Session]
) -> None:
    holding = threading.Event()
    hold_for_s = 0.3

    def first_writer() -> None:
        with session_scope(factory) as session:
            _add(session, "first")
            holding.set()
            time.sleep(hold_for_s)

    thread = threading.Thread(target=first_writer)
    thread.start()
    try:
        assert holding.wait(timeout=5)
        started = time.perf_counter()
        with session_scope(factory) as session:
            _add(session, "second")
        waited = time.perf_counter() - started
    finally:
        thread.join(timeout=5)

    assert _bodies(engine) == ["first", "second"]
    assert hold_for_s * 0.5 < waited < BUSY_TIMEOUT_MS / 1000
