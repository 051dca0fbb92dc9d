"""One reconcile at a time per database.

Two reconciles at once could each act on a stale view of the other's side
effects (one launches while the other concludes the job was never launched),
so a reconcile first takes a lock: a PostgreSQL session-level advisory lock
on a connection of its own (held across the reconcile's many transactions),
and a lock of this process for the embedded profile, whose SQLite database
serves one process. A reconcile that cannot take it does nothing; the next
periodic run catches up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

_IN_PROCESS = threading.Lock()


def _postgres_engine(factory: Callable[[], Session]) -> Engine | None:
    bind = factory.kw.get("bind") if isinstance(factory, sessionmaker) else None
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
        return bind
    return None


@contextmanager
def exclusive(factory: Callable[[], Session], key: int) -> Iterator[bool]:
    """Yields whether this caller holds the lock for ``key``; never waits."""
    if not _IN_PROCESS.acquire(blocking=False):
        yield False
        return
    try:
        engine = _postgres_engine(factory)
        if engine is None:
            yield True
            return
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            held = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
            try:
                yield held
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        _IN_PROCESS.release()
