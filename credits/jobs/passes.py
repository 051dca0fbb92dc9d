"""When each periodic worker last finished a pass: the ops health page's trace.

A reconcile that changes nothing leaves no job event, so "the reconciler has
stalled" cannot be read from the jobs alone. Each finished reconcile (the
embedded loop's, Celery beat's ``jobs.reconcile`` or ``credits jobs
reconcile``) overwrites one row here, keyed by the worker's name, with when it
finished, how long it took and how many jobs it could not handle. One row per
worker, never more.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Float, Integer, String, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from credits.db import Base, UtcDateTime, run_in_transaction

RECONCILER = "reconciler"


class WorkerPass(Base):
    """The last finished pass of one periodic worker."""

    __tablename__ = "worker_passes"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    # None for a pass recorded before durations were (migration 0020).
    duration_seconds: Mapped[float | None] = mapped_column(Float)


def record_pass(
    factory: Callable[[], Session],
    name: str,
    *,
    finished_at: datetime,
    errors: int = 0,
    duration_seconds: float | None = None,
) -> None:
    """Overwrites ``name``'s row in its own transaction (made on the first pass)."""

    def write(session: Session) -> None:
        values = {
            "finished_at": finished_at,
            "errors": errors,
            "duration_seconds": duration_seconds,
        }
        changed = session.execute(update(WorkerPass).where(WorkerPass.name == name).values(values))
        if getattr(changed, "rowcount", 0):
            return
        try:
            with session.begin_nested():
                session.add(WorkerPass(name=name, **values))
        except IntegrityError:
            pass  # another process's first pass, at the same moment: either will do

    run_in_transaction(factory, write)


def last_pass(session: Session, name: str) -> WorkerPass | None:
    return session.get(WorkerPass, name)
