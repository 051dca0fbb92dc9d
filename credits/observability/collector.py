"""Metrics read from the database when Prometheus scrapes.

Each query is bounded by an index: only the jobs that are not finished
(``ix_jobs_state_id``), the pending usage records (``ix_usage_records_status_id``),
the unsent outbox rows (``ix_outbox_sent_at_next_attempt_at``) and the one
reconciler row. Finished jobs and settled records, which grow for ever, are
never counted here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from credits.db import session_scope, utcnow
from credits.jobs.models import Job, JobState
from credits.jobs.passes import RECONCILER, last_pass
from credits.metering.models import RecordStatus, UsageRecord
from credits.notifications.models import OutboxMessage

logger = logging.getLogger(__name__)

LIVE_STATES = (JobState.QUEUED, JobState.STARTING, JobState.RUNNING)


@dataclass(frozen=True)
class DatabaseFigures:
    jobs_by_state: dict[str, int]
    oldest_queued_at: datetime | None
    unsettled_records: int
    oldest_unsettled_at: datetime | None
    outbox_backlog: int
    oldest_unsent_at: datetime | None
    reconcile_finished_at: datetime | None
    reconcile_errors: int | None
    reconcile_duration_s: float | None = None


def read_figures(session: Session) -> DatabaseFigures:
    rows = session.execute(
        select(Job.state, func.count())
        .where(Job.state.in_([state.value for state in LIVE_STATES]))
        .group_by(Job.state)
    )
    counts: dict[str, int] = {state: count for state, count in rows}  # noqa: C416 - Rows
    oldest_queued = select(func.min(Job.id)).where(Job.state == JobState.QUEUED.value)
    pending = UsageRecord.status == RecordStatus.PENDING.value
    oldest_pending = select(func.min(UsageRecord.id)).where(pending)
    unsent = OutboxMessage.sent_at.is_(None)
    reconciler = last_pass(session, RECONCILER)
    return DatabaseFigures(
        jobs_by_state={state.value: counts.get(state.value, 0) for state in LIVE_STATES},
        # The smallest queued id is the oldest submission: one index probe, no scan.
        oldest_queued_at=session.scalar(
            select(Job.submitted_at).where(Job.id == oldest_queued.scalar_subquery())
        ),
        unsettled_records=session.scalar(select(func.count()).where(pending)) or 0,
        oldest_unsettled_at=session.scalar(
            select(UsageRecord.created_at).where(UsageRecord.id == oldest_pending.scalar_subquery())
        ),
        outbox_backlog=session.scalar(select(func.count()).where(unsent)) or 0,
        oldest_unsent_at=session.scalar(select(func.min(OutboxMessage.created_at)).where(unsent)),
        reconcile_finished_at=None if reconciler is None else reconciler.finished_at,
        reconcile_errors=None if reconciler is None else reconciler.errors,
        reconcile_duration_s=None if reconciler is None else reconciler.duration_seconds,
    )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age(at: datetime | None, now: datetime) -> float:
    """Seconds since ``at``; 0 when there is nothing waiting."""
    return 0.0 if at is None else max((now - at).total_seconds(), 0.0)


def figures_metrics(figures: DatabaseFigures, now: datetime) -> Iterator[Metric]:
    by_state = GaugeMetricFamily(
        "credits_jobs", "Jobs not yet finished, by state.", labels=("state",)
    )
    for state, count in figures.jobs_by_state.items():
        by_state.add_metric((state,), count)
    yield by_state
    yield _gauge(
        "credits_job_queue_length",
        "Jobs queued for the scheduler.",
        figures.jobs_by_state.get(JobState.QUEUED.value, 0),
    )
    yield _gauge(
        "credits_job_queue_oldest_age_seconds",
        "Age of the oldest queued job (0: none queued).",
        _age(figures.oldest_queued_at, now),
    )
    yield _gauge(
        "credits_usage_unsettled_records",
        "Usage records not yet settled into the ledger.",
        figures.unsettled_records,
    )
    yield _gauge(
        "credits_settlement_lag_seconds",
        "Age of the oldest usage record not yet settled (0: none waiting).",
        _age(figures.oldest_unsettled_at, now),
    )
    yield _gauge(
        "credits_notification_outbox_backlog",
        "Notifications written and not yet sent.",
        figures.outbox_backlog,
    )
    yield _gauge(
        "credits_notification_outbox_oldest_age_seconds",
        "Age of the oldest unsent notification (0: none waiting).",
        _age(figures.oldest_unsent_at, now),
    )
    yield from _reconcile_metrics(figures, now)


def _reconcile_metrics(figures: DatabaseFigures, now: datetime) -> Iterator[Metric]:
    if figures.reconcile_finished_at is None:
        return  # never reconciled: no age to report, and "absent" is what alerts test for
    yield _gauge(
        "credits_reconcile_last_pass_timestamp_seconds",
        "When the reconciler last finished a pass (Unix time).",
        figures.reconcile_finished_at.timestamp(),
    )
    yield _gauge(
        "credits_reconcile_last_pass_age_seconds",
        "Seconds since the reconciler last finished a pass.",
        _age(figures.reconcile_finished_at, now),
    )
    yield _gauge(
        "credits_reconcile_last_pass_errors",
        "Jobs the reconciler's last pass could not handle.",
        figures.reconcile_errors or 0,
    )
    if figures.reconcile_duration_s is not None:
        yield _gauge(
            "credits_reconcile_last_pass_duration_seconds",
            "How long the reconciler's last pass took.",
            figures.reconcile_duration_s,
        )


class DatabaseCollector(Collector):
    """Reads :class:`DatabaseFigures` on each scrape; a database that does not answer
    gives ``credits_metrics_database_up 0`` and no other database figure."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self._session_factory = session_factory

    def collect(self) -> Iterator[Metric]:
        try:
            with session_scope(self._session_factory) as session:
                figures = read_figures(session)
        except SQLAlchemyError as error:
            # The driver's message may name the host or user: the log only.
            logger.warning("metrics: the database did not answer: %s", error)
            yield _gauge("credits_metrics_database_up", "The scrape could read the database.", 0)
            return
        yield _gauge("credits_metrics_database_up", "The scrape could read the database.", 1)
        yield from figures_metrics(figures, utcnow())
