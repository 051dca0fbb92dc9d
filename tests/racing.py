"""Helpers for tests that race real transactions on PostgreSQL: a throwaway migrated
database whose sessions commit for real, and work started in threads at one moment.
A plain module, imported by name (tests/ has no packages)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from conftest import create_migrated_postgres_database, drop_postgres_database
from sqlalchemy.orm import Session, sessionmaker

from credits.db import make_engine, make_session_factory


def committing_factory(pool_size: int) -> Iterator[sessionmaker[Session]]:
    """Sessions on a new migrated database, dropped afterwards (a fixture's body)."""
    url, admin_url = create_migrated_postgres_database()
    engine = make_engine(url, pool_size=pool_size)
    yield make_session_factory(engine)
    engine.dispose()
    drop_postgres_database(url, admin_url)


def together(count: int, work: Callable[[int], Any], *, timeout_s: float = 60) -> list[Any]:
    """Runs ``work(0..count-1)`` in threads released at once; each result, or the
    exception it raised (the caller inspects every outcome)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    assert not any(thread.is_alive() for thread in threads), "a deadlock?"
    return results
