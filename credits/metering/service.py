"""Entry points for periodic metering work: settle what is pending, in batches;
collect GPU telemetry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from credits.db import run_in_transaction, utcnow
from credits.jobs.executors.base import Executor
from credits.jobs.executors.local import LocalExecutor
from credits.metering.collector import TelemetryCollector
from credits.metering.nvml import read_nvml
from credits.metering.settlement import SettleReport, settle_pending
from credits.metering.telemetry import TelemetryUnavailable
from credits.settings import Settings

# One run settles at most this many batches, so a task never runs unbounded.
MAX_BATCHES_PER_RUN = 200


def settle_all_pending(
    factory: Callable[[], Session],
    *,
    batch_size: int,
    clock: Callable[[], datetime] = utcnow,
    max_batches: int = MAX_BATCHES_PER_RUN,
) -> SettleReport:
    """Settles pending usage records batch by batch, each batch one transaction,
    until none are left (or ``max_batches``)."""
    total = SettleReport()
    for _ in range(max_batches):
        batch = run_in_transaction(
            factory, lambda session: settle_pending(session, now=clock(), limit=batch_size)
        )
        total.records += batch.records
        total.captured_micro += batch.captured_micro
        total.overage_micro += batch.overage_micro
        total.jobs |= batch.jobs
        if batch.records < batch_size:
            break
    return total


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
