"""What the ops health page reads: the database, the executor, the workers' traces.

Each check answers on its own, so one that fails (the executor's API is down)
is shown with its error next to those that pass. Nothing here needs a running
Celery worker: the page says whether a broker is configured and how recently
the scheduler and reconciler left a trace in the database. It flags a
reconciler whose last pass (credits/jobs/passes.py) is older than a few of its
intervals, and the jobs that failed in the last day, each with a link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.jobs.executors.base import Executor
from credits.jobs.models import Job, JobEvent, JobState
from credits.jobs.passes import RECONCILER, last_pass
from credits.metering.models import RecordStatus, UsageRecord
from credits.notifications.models import MAX_ATTEMPTS, OutboxMessage
from credits.settings import Settings

# The reconciler has stalled when its last pass is older than this many of its
# intervals (CREDITS_SCHEDULER_INTERVAL_SECONDS), and never less than a minute.
STALL_INTERVALS = 5
STALL_FLOOR = timedelta(minutes=1)
FAILURE_WINDOW = timedelta(hours=24)
FAILURES_SHOWN = 20


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    # Passing, but worth a look (a job failure is often the job's own doing).
    attention: bool = False


@dataclass(frozen=True)
class FailedJob:
    id: int
    project_id: int
    name: str
    finished_at: datetime | None
    reason: str | None


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
    reconciled_at: datetime | None = None
    failures: list[FailedJob] = field(default_factory=list)
    failure_count: int = 0

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def attention(self) -> bool:
        return any(check.attention for check in self.checks)


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


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _reconciler(report: HealthReport, session: Session, settings: Settings, now: datetime) -> Check:
    interval = timedelta(seconds=settings.scheduler_interval_seconds)
    stall = max(STALL_INTERVALS * interval, STALL_FLOOR)
    row = last_pass(session, RECONCILER)
    if row is None:
        return Check(
            "Reconciler",
            False,
            "no reconcile pass recorded: is `credits serve` (embedded) or Celery beat and a"
            " worker running?",
        )
    report.reconciled_at = row.finished_at
    when = (
        f"last pass finished {row.finished_at:%Y-%m-%d %H:%M:%S} UTC ({_ago(row.finished_at, now)})"
    )
    errors = (
        f"; {row.errors} job(s) it could not handle, see the worker's log" if row.errors else ""
    )
    if now - row.finished_at > stall:
        return Check(
            "Reconciler",
            False,
            f"stalled: {when}, more than {int(stall.total_seconds())} s ago (every"
            f" {settings.scheduler_interval_seconds:g} s expected){errors}",
        )
    return Check("Reconciler", True, f"{when}{errors}")


def _failures(report: HealthReport, session: Session, now: datetime) -> Check:
    recent = (Job.state == JobState.FAILED.value, Job.finished_at >= now - FAILURE_WINDOW)
    report.failure_count = int(
        session.scalar(select(func.count()).select_from(Job).where(*recent)) or 0
    )
    rows = session.execute(
        select(Job.id, Job.project_id, Job.name, Job.finished_at, Job.reason)
        .where(*recent)
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(FAILURES_SHOWN)
    ).all()
    report.failures = [FailedJob(*row) for row in rows]
    if not report.failure_count:
        return Check("Job failures (24 h)", True, "no job failed in the last 24 hours")
    return Check(
        "Job failures (24 h)",
        True,
        f"{report.failure_count} job(s) failed in the last 24 hours (lost, not launched or"
        " exited with an error): see the list below",
        attention=True,
    )


def health_report(
    session: Session, executor: Executor, settings: Settings, *, now: datetime | None = None
) -> HealthReport:
    now = now or utcnow()
    report = HealthReport()
    report.checks.append(_database(session))
    report.checks.append(_executor(report, executor))
    report.checks.append(_reconciler(report, session, settings, now))
    report.checks.append(_failures(report, session, now))
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
