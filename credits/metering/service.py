"""Entry points for periodic metering work: settle what is pending, in batches;
collect GPU telemetry."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from credits.db import run_in_transaction, utcnow
from credits.errors import CreditsError
from credits.jobs.executors.base import Executor
from credits.jobs.executors.local import LocalExecutor
from credits.metering.collector import TelemetryCollector
from credits.metering.nvml import read_nvml
from credits.metering.settlement import (
    SettleReport,
    SweepPosition,
    pending_ids,
    set_aside,
    settle_one,
    settle_pending,
    sweep_laps,
)
from credits.metering.telemetry import TelemetryUnavailable
from credits.settings import Settings

logger = logging.getLogger(__name__)
# One run settles at most this many batches, so a task never runs unbounded.
MAX_BATCHES_PER_RUN = 200
# Refusals that come back however often a record is tried: the domain's, and the
# database's refusal of what settling the record writes (a check constraint it
# fails, a value it cannot store). Left alone, such a record would refuse every
# batch it is in and stall settlement for good. Other database errors (a lost
# connection, a lock timeout) still raise: the record may settle on the next run.
REFUSALS = (CreditsError, IntegrityError, DataError)


def settle_all_pending(
    factory: Callable[[], Session],
    *,
    batch_size: int,
    clock: Callable[[], datetime] = utcnow,
    max_batches: int = MAX_BATCHES_PER_RUN,
) -> SettleReport:
    """Settles the records pending when it starts, batch by batch in settlement's
    order (:func:`credits.metering.settlement.settle_pending`), each batch one
    transaction, until none are left (or ``max_batches``). It goes once round the
    order, starting where the oldest pending record is
    (:func:`credits.metering.settlement.sweep_laps`). Records that arrive
    meanwhile wait for the next run, so a run always ends.

    A batch the ledger or the database refuses (a record it cannot book) is settled
    record by record instead, and a record refused on its own is set aside as
    ``failed`` with the reason, so one bad record never stops the ones behind it.
    """
    total = SettleReport()
    batches = 0
    for lap in run_in_transaction(factory, sweep_laps):
        position: SweepPosition | None = lap
        while position is not None and batches < max_batches:
            batch = _one_batch(factory, batch_size, clock, position)
            batches += 1
            total.add(batch)
            full = batch.read == batch_size
            position = position.past(batch.last) if full and batch.last else None
    return total


def _one_batch(
    factory: Callable[[], Session],
    batch_size: int,
    clock: Callable[[], datetime],
    position: SweepPosition,
) -> SettleReport:
    """The next batch after ``position``, one transaction; a refused one record by record."""
    try:
        return run_in_transaction(
            factory,
            functools.partial(_settle_batch, clock=clock, limit=batch_size, position=position),
        )
    except REFUSALS as error:
        logger.warning("a settlement batch was refused (%s); settling one by one", _reason(error))
        return _settle_one_by_one(factory, batch_size, clock, position)


def _settle_batch(
    session: Session, *, clock: Callable[[], datetime], limit: int, position: SweepPosition
) -> SettleReport:
    return settle_pending(session, now=clock(), limit=limit, position=position)


def _settle_id(session: Session, *, record_id: int, clock: Callable[[], datetime]) -> SettleReport:
    return settle_one(session, record_id, now=clock())


def _set_aside_id(
    session: Session, *, record_id: int, reason: str, clock: Callable[[], datetime]
) -> None:
    set_aside(session, record_id, reason, now=clock())


def _settle_one_by_one(
    factory: Callable[[], Session],
    batch_size: int,
    clock: Callable[[], datetime],
    position: SweepPosition,
) -> SettleReport:
    """Settles the records of a refused batch (the same ones, read again) one by one."""
    report = SettleReport()
    for record_id, key in run_in_transaction(
        factory,
        lambda session: pending_ids(session, limit=batch_size, position=position),
    ):
        report.last = (key, record_id)
        report.read += 1
        try:
            one = run_in_transaction(
                factory, functools.partial(_settle_id, record_id=record_id, clock=clock)
            )
        except REFUSALS as error:
            reason = _reason(error)
            logger.warning("usage record %s set aside: %s", record_id, reason)
            run_in_transaction(
                factory,
                functools.partial(_set_aside_id, record_id=record_id, reason=reason, clock=clock),
            )
            report.failed += 1
            continue
        report.add(one)
    return report


def _reason(error: Exception) -> str:
    """Why a record was refused, without the statement and its parameters."""
    if isinstance(error, DBAPIError):
        return f"the database refused it: {error.orig}"
    return str(error)


def collect_telemetry(
    factory: Callable[[], Session],
    collector: TelemetryCollector,
    settings: Settings,
    executor: Executor,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Scrapes the DCGM exporters in settings, or else reads NVML on this host for
    the local executor's jobs; returns the number of job rows changed. No GPU, no
    exporter: nothing to do, and 0."""
    urls = settings.dcgm_urls
    if urls:
        return run_in_transaction(
            factory,
            lambda session: collector.collect_dcgm(
                session,
                urls,
                at=clock(),
                job_namespace=settings.kubernetes_namespace,
                instance=settings.instance_name,
            ),
        )
    if not isinstance(executor, LocalExecutor):
        return 0
    try:
        samples = read_nvml()
    except TelemetryUnavailable:
        return 0
    owners = executor.slot_owners()
    return run_in_transaction(
        factory,
        lambda session: collector.collect_slots(session, samples, owners, at=clock()),
    )
