"""Engine, session scope, the declarative base and its naming convention."""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    create_engine,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

T = TypeVar("T")
S = TypeVar("S")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - fixed by TypeDecorator
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - fixed by TypeDecorator
    ) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC one (SQLite gives it without its zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def in_values(column: str, values: type[StrEnum]) -> str:
    """SQL for a CHECK that ``column`` holds one of an enum's values."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_path(url: str) -> Path | None:
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path.startswith(":memory:"):
        return None
    return Path(path.split("?", 1)[0])


# The execution option that marks an engine's connections as read-only
# (see make_read_session_factory).
READ_ONLY = "credits_read_only"
# Whether a SQLite connection has PRAGMA query_only on, kept in its info so the
# pragma is sent only when a connection changes between reading and writing.
_QUERY_ONLY = "credits_query_only"


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL, foreign keys, a busy timeout, and transactions that SQLAlchemy controls.

    pysqlite opens transactions itself and ignores SAVEPOINT semantics; turning
    that off and emitting ``BEGIN`` ourselves gives working savepoints. A writer
    begins ``BEGIN IMMEDIATE``: it takes the write lock at the start, so two
    writers never both read a balance and then both spend it. A reader (a
    connection marked :data:`READ_ONLY`) begins ``BEGIN DEFERRED``: on WAL it
    reads the last committed state without waiting for the writer, and
    ``PRAGMA query_only`` makes any write through it fail at once.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = bool(connection.get_execution_options().get(READ_ONLY, False))
        _set_query_only(connection, on=read_only)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def _set_query_only(connection: Connection, *, on: bool) -> None:
    if connection.info.get(_QUERY_ONLY, False) != on:
        connection.exec_driver_sql(f"PRAGMA query_only={'ON' if on else 'OFF'}")
        connection.info[_QUERY_ONLY] = on


def make_engine(
    url: str, *, sqlite_busy_timeout_ms: int = 10_000, pool_size: int = 10, read_only: bool = False
) -> Engine:
    """Builds an engine for ``url`` with this platform's connection settings.

    ``read_only`` (PostgreSQL only): connections in autocommit on which the server
    refuses writes, for :func:`make_read_session_factory`.
    """
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        pool: dict[str, Any] = {}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            pool = {"pool_size": pool_size, "max_overflow": pool_size}
        engine = create_engine(url, connect_args={"timeout": sqlite_busy_timeout_ms / 1000}, **pool)
        _install_sqlite_pragmas(engine, sqlite_busy_timeout_ms)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # No pre-ping: it costs a round trip on every checkout of the ledger's hot
    # path. A checkout looks at the idle socket instead (no round trip), and a
    # connection found dead mid-transaction is retried by run_in_transaction.
    options: dict[str, Any] = {}
    if read_only:
        # A connection in autocommit has no transaction to end: returning it to
        # the pool sends no ROLLBACK (one that left autocommit still gets one).
        options = {
            "isolation_level": "AUTOCOMMIT",
            "connect_args": {"options": "-c default_transaction_read_only=on"},
            "skip_autocommit_rollback": True,
        }
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600, **options
    )
    event.listen(engine, "checkout", _refuse_connection_the_server_ended)
    return engine


def _refuse_connection_the_server_ended(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Discards a pooled connection whose idle socket has something to read.

    An idle connection outside a transaction receives nothing unless the server
    ended it: a restart or ``pg_terminate_backend`` sends a fatal notice, then closes
    the socket. Raising DisconnectionError makes the pool drop it and check out
    another, so the first request after a database restart does not fail.
    """
    try:
        descriptor = dbapi_connection.fileno()
    except Exception as error:  # psycopg's OperationalError once the connection is closed
        raise DisconnectionError(f"pooled connection is closed: {error}") from None
    # poll, not select: a process with many files may hold descriptors past FD_SETSIZE.
    watcher = select.poll()
    watcher.register(descriptor, select.POLLIN | select.POLLERR | select.POLLHUP)
    if watcher.poll(0):
        raise DisconnectionError("the server ended the pooled connection")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_read_session_factory(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions like ``factory``'s that only read, and fail loudly if they write.

    On SQLite a read transaction begins deferred, so it never queues behind a
    writer's ``BEGIN IMMEDIATE``, and runs with ``PRAGMA query_only`` on. On
    PostgreSQL the sessions use an engine of their own whose connections run in
    autocommit with ``default_transaction_read_only`` on: the server refuses any
    write, and a read costs no ``BEGIN`` and ``COMMIT`` round trips. Nothing is
    lost by that: at READ COMMITTED, the isolation the web tier reads at, every
    statement takes a fresh snapshot inside a transaction too. (Work that needs one
    snapshot across statements asks for REPEATABLE READ: credits/cli_support.py.)
    A factory bound to one connection (a test's rolled-back transaction) keeps
    that connection and, on SQLite, turns ``query_only`` on for as long as a read
    session uses it.
    """
    bind = factory.kw.get("bind")
    kw = {key: value for key, value in factory.kw.items() if key != "bind"}
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
        engine = make_engine(
            bind.url.render_as_string(hide_password=False),
            pool_size=getattr(bind.pool, "size", lambda: 10)(),
            read_only=True,
        )
        return sessionmaker(bind=engine, class_=factory.class_, **kw)
    if isinstance(bind, Engine):
        return sessionmaker(
            bind=bind.execution_options(**{READ_ONLY: True}), class_=factory.class_, **kw
        )
    reader = sessionmaker(bind=bind, class_=factory.class_, **kw)
    if isinstance(bind, Connection) and bind.dialect.name == "sqlite":
        _query_only_while_reading(reader, bind)
    return reader


def _query_only_while_reading(reader: sessionmaker[Session], connection: Connection) -> None:
    """On a shared connection: query_only from a read session's start to its end."""

    @event.listens_for(reader, "after_begin")
    def _on(_session: Session, transaction: SessionTransaction, _c: Connection) -> None:
        if transaction.parent is None:
            connection.exec_driver_sql("PRAGMA query_only=ON")

    @event.listens_for(reader, "after_transaction_end")
    def _off(_session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None and not connection.closed:
            connection.exec_driver_sql("PRAGMA query_only=OFF")


@contextmanager
def read_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A connection of ``factory``'s binding for a statement or two without a Session
    (its unit of work costs more than such a read): a new one from an engine, closed
    afterwards, or the connection the factory is bound to, left open."""
    bind = factory.kw.get("bind")
    if isinstance(bind, Connection):
        yield bind
        return
    if not isinstance(bind, Engine):
        raise TypeError("the session factory is bound to neither an engine nor a connection")
    with bind.connect() as connection:
        yield connection


class StatementCache:
    """Statements built once per key and reused, so that SQLAlchemy neither builds
    nor keys them again on every request. A key may hold SQL expressions (an access
    rule, itself built once per holder), which match by identity."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._built: dict[tuple[object, ...], tuple[tuple[object, ...], Any]] = {}

    def get(self, parts: tuple[object, ...], build: Callable[[], S]) -> S:
        key = tuple(id(part) if isinstance(part, ClauseElement) else part for part in parts)
        found = self._built.get(key)
        if found is not None and all(
            kept is part
            for kept, part in zip(found[0], parts, strict=True)
            if isinstance(part, ClauseElement)
        ):
            return cast(S, found[1])
        if len(self._built) >= self._limit:
            self._built.clear()
        statement = build()
        self._built[key] = (parts, statement)
        return statement


def core_connection(db: Session | Connection) -> Connection:
    """The connection for a Core read past the ORM: ``db`` itself, or a session's
    connection once what the session holds unwritten is flushed (as its own
    ``execute`` would), so that the read sees it. A hot read route hands a
    connection (:func:`read_connection`): a session's unit of work costs more than
    its one statement."""
    if isinstance(db, Connection):
        return db
    if db.new or db.dirty or db.deleted:
        db.flush()
    return db.connection()


@contextmanager
def session_scope(factory: Callable[[], Session]) -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# Two requests with one idempotency key race to insert it; the loser's retry
# finds the winner's rows and replays them.
IDEMPOTENCY_CONSTRAINTS = frozenset(
    {
        "uq_ledger_transfers_idempotency_key_part",
        "uq_jobs_request_key",
        "uq_labelling_orders_request_key",
        "uq_usage_records_source_record_id",
    }
)


def _is_retryable(error: DBAPIError) -> bool:
    """A dropped connection, serialization failures, deadlocks, a locked SQLite file
    and an idempotency-key race may all succeed when the transaction runs again."""
    if error.connection_invalidated:
        return True
    code = getattr(error.orig, "sqlstate", None)
    if code in {"40001", "40P01"}:
        return True
    if code == "23505":
        diag = getattr(error.orig, "diag", None)
        return getattr(diag, "constraint_name", None) in IDEMPOTENCY_CONSTRAINTS
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)


def run_in_transaction(
    factory: Callable[[], Session],
    work: Callable[[Session], T],
    *,
    attempts: int = 5,
) -> T:
    """Runs ``work`` in its own transaction, retrying transient conflicts.

    ``work`` must be safe to run again from the start, which every service
    that takes an idempotency key is.
    """
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(factory) as session:
                return work(session)
        except DBAPIError as error:
            if attempt == attempts or not _is_retryable(error):
                raise
            time.sleep(0.005 * 2**attempt)
    raise AssertionError("unreachable")
