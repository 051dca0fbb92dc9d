"""What the ops health page reads: the database, the executor, the workers' traces.

Each check answers on its own, so one that fails (the executor's API is down)
is shown with its error next to those that pass. Nothing here needs a running
Celery worker: the page says whether a broker is configured and how recently
the scheduler and reconciler left a trace in the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from credits.jobs.executors.base import Executor
from credits.jobs.models import JobEvent
from credits.metering.models import RecordStatus, UsageRecord
from credits.notifications.models import MAX_ATTEMPTS, OutboxMessage
from credits.settings import Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class HealthReport:
    checks: list[Check] = field(default_factory=list)
    executor: str = ""
    nodes: int = 0
    gpus: int = 0
    last_job_event_at: datetime | None = None
    last_job_event_actor: str | None = None
    pending_usage: int = 0
    outbox_pending: int = 0
    outbox_failed: int = 0
    broker: str = ""
    eager: bool = False

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def broker_label(url: str) -> str:
    """The broker's scheme and host, never its credentials; '' when none is set."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    if host:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}:// (a local file)"


def _database(session: Session) -> Check:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return Check("Database", False, f"did not answer: {type(error).__name__}")
    return Check("Database", True, "ready (SELECT 1 answered)")


def _executor(report: HealthReport, executor: Executor) -> Check:
    report.executor = executor.name
    try:
        capacity = executor.capacity()
    except Exception as error:  # any executor failure is the answer shown
        return Check(f"Executor {executor.name}", False, f"{type(error).__name__}: {error}")
    schedulable = [node for node in capacity.nodes if node.schedulable]
    report.nodes = len(schedulable)
    report.gpus = sum(node.gpus for node in schedulable)
    return Check(
        f"Executor {executor.name}",
        True,
        f"reachable: {report.nodes} schedulable nodes, {report.gpus} GPUs",
    )


def health_report(session: Session, executor: Executor, settings: Settings) -> HealthReport:
    report = HealthReport()
    report.checks.append(_database(session))
    report.checks.append(_executor(report, executor))
    newest = session.execute(
        select(JobEvent.at, JobEvent.actor).order_by(JobEvent.id.desc()).limit(1)
    ).first()
    if newest is not None:
        report.last_job_event_at, report.last_job_event_actor = newest[0], newest[1]
    report.pending_usage = int(
        session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.status == RecordStatus.PENDING.value)
        )
        or 0
    )
    unsent = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
    report.outbox_pending = int(
        session.scalar(unsent.where(OutboxMessage.attempts < MAX_ATTEMPTS)) or 0
    )
    report.outbox_failed = int(
        session.scalar(unsent.where(OutboxMessage.attempts >= MAX_ATTEMPTS)) or 0
    )
    report.broker = broker_label(settings.broker_url.get_secret_value())
    report.eager = settings.task_always_eager
    report.checks.append(
        Check(
            "Task queue",
            bool(report.broker) or report.eager,
            "tasks run eagerly in the web process"
            if report.eager
            else (
                f"Celery broker configured: {report.broker}"
                if report.broker
                else "no broker configured (set CREDITS_BROKER_URL)"
            ),
        )
    )
    return report
