"""Readers never wait for writers: read sessions begin deferred on SQLite's WAL and
refuse to write; writers still take the write lock at BEGIN."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from credits.db import (
    make_engine,
    make_read_session_factory,
    make_session_factory,
    read_connection,
    session_scope,
)

# Well under the busy timeout below: a read that waited for the writer would take it all.
QUICK_S = 1.0
BUSY_TIMEOUT_MS = 3_000


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(
        f"sqlite:///{tmp_path / 'readers.db'}", sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS
    )
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE balance (id INTEGER PRIMARY KEY, amount INTEGER)")
        connection.exec_driver_sql("INSERT INTO balance VALUES (1, 100)")
    yield engine
    engine.dispose()


def _amount(session: Session) -> int:
    return int(session.execute(text("SELECT amount FROM balance WHERE id = 1")).scalar_one())


def test_a_read_completes_while_a_writer_holds_the_write_lock(engine: Engine) -> None:
    reader = make_read_session_factory(make_session_factory(engine))
    with engine.connect() as writer:
        writer.begin()  # BEGIN IMMEDIATE: the write lock, held until the end of the block
        writer.exec_driver_sql("UPDATE balance SET amount = 40 WHERE id = 1")
        started = time.monotonic()
        with session_scope(reader) as session:
            seen = _amount(session)
        took = time.monotonic() - started
        writer.commit()
    assert seen == 100  # the last committed state, not the writer's uncommitted one
    assert took < QUICK_S
    with session_scope(reader) as session:
        assert _amount(session) == 40


def test_a_writer_still_waits_for_the_write_lock(tmp_path: Path) -> None:
    """The old behaviour for writers: BEGIN IMMEDIATE queues behind another writer."""
    engine = make_engine(f"sqlite:///{tmp_path / 'writers.db'}", sqlite_busy_timeout_ms=100)
    writers = make_session_factory(engine)
    with engine.connect() as holder:
        holder.begin()
        with (
            pytest.raises(OperationalError, match="database is locked"),
            session_scope(writers) as session,
        ):
            session.execute(text("SELECT 1"))
        holder.rollback()
    engine.dispose()


def test_a_write_through_a_read_session_fails_loudly_and_changes_nothing(engine: Engine) -> None:
    writers = make_session_factory(engine)
    reader = make_read_session_factory(writers)
    with pytest.raises(OperationalError, match="readonly"), session_scope(reader) as session:
        session.execute(text("UPDATE balance SET amount = 0 WHERE id = 1"))
    # The pooled connection the reader used writes again for a writer.
    with session_scope(writers) as session:
        session.execute(text("UPDATE balance SET amount = 7 WHERE id = 1"))
    with session_scope(reader) as session:
        assert _amount(session) == 7


def test_a_read_session_on_a_shared_connection_refuses_writes_only_while_it_is_open(
    engine: Engine,
) -> None:
    """Tests bind their factories to one rolled-back connection: a read session on it
    still cannot write, and the writers after it can."""
    with engine.connect() as connection:
        connection.begin()
        joined = sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        reader = make_read_session_factory(joined)
        with pytest.raises(OperationalError, match="readonly"), session_scope(reader) as session:
            session.execute(text("DELETE FROM balance"))
        with session_scope(joined) as session:
            session.execute(text("UPDATE balance SET amount = 9 WHERE id = 1"))
        with session_scope(reader) as session:
            assert _amount(session) == 9
        connection.rollback()


def _read_only_setting(connection: Connection) -> str:
    return str(connection.exec_driver_sql("SHOW transaction_read_only").scalar_one())


@pytest.mark.postgres
def test_on_postgresql_a_read_session_is_read_only_and_writers_are_not(
    postgres_engine: Engine,
) -> None:
    writers = make_session_factory(postgres_engine)
    reader = make_read_session_factory(writers)
    with session_scope(reader) as session:
        assert _read_only_setting(session.connection()) == "on"
    with pytest.raises(DBAPIError, match="read-only transaction"), session_scope(reader) as session:
        session.execute(text("CREATE TEMPORARY TABLE scratch (id int)"))
    with session_scope(writers) as session:
        assert _read_only_setting(session.connection()) == "off"


@pytest.mark.postgres
def test_on_postgresql_a_read_connection_goes_back_to_the_pool_without_a_rollback(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(postgres_url, pool_size=1, read_only=True)
    rollbacks: list[bool] = []
    try:
        with engine.connect() as connection:
            dbapi_connection = connection.connection.dbapi_connection
            assert dbapi_connection is not None
            real = dbapi_connection.rollback
            monkeypatch.setattr(dbapi_connection, "rollback", lambda: rollbacks.append(real()))
            connection.exec_driver_sql("SELECT 1")
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection is dbapi_connection  # pooled
    finally:
        engine.dispose()
    assert rollbacks == []


@pytest.mark.postgres
def test_on_postgresql_a_read_session_runs_in_autocommit_on_its_own_connections(
    postgres_engine: Engine,
) -> None:
    reader = make_read_session_factory(make_session_factory(postgres_engine))
    with session_scope(reader) as session:
        # Outside a transaction block each statement is its own transaction.
        started = session.execute(text("SELECT now() = statement_timestamp()")).scalar_one()
        dbapi_connection = session.connection().connection.dbapi_connection
        assert dbapi_connection is not None
        assert dbapi_connection.autocommit is True
        assert session.get_bind() is not postgres_engine
    assert started is True


@pytest.mark.postgres
def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout(postgres_url: str) -> None:
    engine = make_engine(postgres_url, pool_size=1)
    try:
        with engine.connect() as connection:
            first_pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with make_engine(postgres_url).connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
            admin.commit()
        _wait_until_terminated(postgres_url, first_pid)
        # The pooled connection is dead; the next checkout must not hand it out.
        with engine.connect() as connection:
            second_pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        assert second_pid != first_pid
    finally:
        engine.dispose()


def _wait_until_terminated(url: str, pid: int) -> None:
    """Until the server no longer lists the backend (its socket is closed by then)."""
    deadline = time.monotonic() + 10
    listed = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
    with make_engine(url).connect() as probe:
        while time.monotonic() < deadline:
            alive = probe.execute(listed, {"pid": pid}).scalar_one()
            probe.rollback()
            if not alive:
                return
            time.sleep(0.05)
    raise AssertionError(f"backend {pid} was not terminated")


def test_a_read_connection_is_the_factorys_own_or_a_fresh_one_closed_after(
    engine: Engine,
) -> None:
    fresh = make_session_factory(engine)
    with read_connection(fresh) as connection:
        assert connection.exec_driver_sql("SELECT amount FROM balance").scalar_one() == 100
    assert connection.closed

    with engine.connect() as shared:
        bound = sessionmaker(bind=shared)
        with read_connection(bound) as connection:
            assert connection is shared
        assert not shared.closed
