"""Nudges through the notification outbox: credits that will expire unused, GPUs idling.

Each sweep is idempotent: every outbox row has a dedupe key, so running a sweep
again (a task retried, the CLI run twice) enqueues nothing new. The nudge for
a balance under 10% is :func:`credits.notifications.events.queue_low_balance_notices`,
run from here too so one command sends every nudge.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.grants.models import MemberRole, Project, ProjectMember
from credits.id_text import id_from_text
from credits.identity.models import User
from credits.jobs.models import Job, JobState
from credits.ledger.models import Account, AccountKind, AccountStatus
from credits.metering.models import JobTelemetryRow
from credits.notifications.events import queue_low_balance_notices
from credits.notifications.service import enqueue_notification
from credits.reports.burndown import RATE_WINDOW
from credits.reports.figures import load_accounts, load_flows
from credits.reports.service import forecasts

UNDERUSED_KIND = "allocation_underused"
IDLE_KIND = "idle_gpus"
# An allocation is nudged when it ends within this horizon with over half unused.
UNDERUSED_HORIZON = dt.timedelta(days=30)
UNDERUSED_PERCENT = 50
# Idle jobs: enough telemetry to judge, seen recently (an old job is not news).
MIN_IDLE_SAMPLES = 5
IDLE_LOOKBACK = dt.timedelta(days=7)
_LEADERS = (MemberRole.PI.value, MemberRole.MANAGER.value)
_WATCHED_STATES = (
    JobState.RUNNING.value,
    JobState.SUCCEEDED.value,
    JobState.FAILED.value,
    JobState.TIMED_OUT.value,
    JobState.CANCELLED.value,
)


class NudgeReport(BaseModel):
    underused: int = 0
    idle: int = 0
    low_balance: int = 0


@dataclass(frozen=True)
class _Recipient:
    id: int
    email: str
    name: str


def _leaders(session: Session, project_id: int) -> list[_Recipient]:
    rows = session.execute(
        select(User.id, User.email, User.name)
        .join(ProjectMember, ProjectMember.user_id == User.id)
        .where(
            ProjectMember.project_id == project_id,
            ProjectMember.role.in_(_LEADERS),
            User.is_active,
        )
        .order_by(User.id)
    )
    return [_Recipient(row.id, row.email, row.name) for row in rows]


def _user(session: Session, user_id: int) -> _Recipient | None:
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    return _Recipient(user.id, user.email, user.name)


def queue_underused_allocations(session: Session, *, now: dt.datetime) -> int:
    """Tells the PI and managers of each active allocation that started a week or
    more ago, ends within 30 days and is forecast to expire with over half of its
    credits unused; once per
    allocation and person (``underused:{account}:{user}``). Returns rows added."""
    ending = select(Account.project_id).where(
        Account.kind == AccountKind.ALLOCATION.value,
        Account.status == AccountStatus.ACTIVE.value,
        Account.expires_at > now,
        Account.expires_at <= now + UNDERUSED_HORIZON,
    )
    accounts = load_accounts(session, Account.project_id.in_(ending))
    forecast = forecasts(load_flows(session, accounts), now)
    created = 0
    for account in accounts.values():
        granted = account.released + account.adjusted
        unused = forecast.get(account.id, 0)
        if account.status != AccountStatus.ACTIVE.value or account.expires_at is None:
            continue
        if not now < account.expires_at <= now + UNDERUSED_HORIZON:
            continue
        # A week of history first: a new allocation's silence is not a forecast.
        if account.starts_at is not None and account.starts_at > now - RATE_WINDOW:
            continue
        if granted <= 0 or unused * 100 <= granted * UNDERUSED_PERCENT:
            continue
        for person in _leaders(session, account.project_id):
            row = enqueue_notification(
                session,
                recipient_email=person.email,
                recipient_user_id=person.id,
                kind=UNDERUSED_KIND,
                subject=f"Allocation {account.code} may expire mostly unused",
                body=(
                    f"Hello {person.name},\n\nAllocation {account.code} ends "
                    f"{account.expires_at:%Y-%m-%d %H:%M} UTC. At the last 7 days' rate, "
                    f"{fmt.credits_number(unused)} of its {fmt.money(granted, account.currency)}"
                    " will expire unused.\nRun the work you planned, or tell the "
                    "program's funder so they can be given to someone else.\n"
                ),
                dedupe_key=f"underused:{account.id}:{person.id}",
                now=now,
            )
            created += row is not None
    return created


def queue_idle_gpu_notices(
    session: Session,
    *,
    now: dt.datetime,
    idle_percent: float,
    min_samples: int = MIN_IDLE_SAMPLES,
) -> int:
    """Tells the submitter (or, for a system submission, the PI) of each running or
    recently finished job whose GPUs averaged under ``idle_percent`` utilisation
    over at least ``min_samples`` samples; once per job and person
    (``idle-gpus:{job}:{user}``). Returns rows added."""
    rows = session.execute(
        select(Job, JobTelemetryRow, Project)
        .join(JobTelemetryRow, JobTelemetryRow.job_id == Job.id)
        .join(Project, Project.id == Job.project_id)
        .where(
            Job.state.in_(_WATCHED_STATES),
            JobTelemetryRow.samples >= max(min_samples, 1),
            JobTelemetryRow.gpu_util_sum < idle_percent * JobTelemetryRow.samples,
            JobTelemetryRow.last_at >= now - IDLE_LOOKBACK,
        )
        .order_by(Job.id)
    ).all()
    created = 0
    for job, telemetry, project in rows:
        person = _submitter(session, job) or _user(session, project.pi_user_id)
        if person is None:
            continue
        mean = telemetry.gpu_util_sum / telemetry.samples
        row = enqueue_notification(
            session,
            recipient_email=person.email,
            recipient_user_id=person.id,
            kind=IDLE_KIND,
            subject=f"Job {job.id} ({job.name}) left its GPUs mostly idle",
            body=(
                f"Hello {person.name},\n\nJob {job.id} ({job.name}) in project "
                f'"{project.title}" held {job.gpus} GPU(s) at a mean utilisation of '
                f"{mean:.1f}% over {telemetry.samples} samples (the threshold is "
                f"{idle_percent:g}%).\nCredits are charged for GPUs held, busy or not: "
                "ask for fewer GPUs, or check that the job uses the ones it asks for.\n"
            ),
            dedupe_key=f"idle-gpus:{job.id}:{person.id}",
            now=now,
        )
        created += row is not None
    return created


def _submitter(session: Session, job: Job) -> _Recipient | None:
    kind, _, user_id = job.submitted_by.partition(":")
    number = id_from_text(user_id)
    if kind != "user" or number is None:
        return None
    return _user(session, number)


def run_nudges(session: Session, *, now: dt.datetime, idle_percent: float) -> NudgeReport:
    """Every nudge sweep once; a second run the same day adds nothing."""
    return NudgeReport(
        underused=queue_underused_allocations(session, now=now),
        idle=queue_idle_gpu_notices(session, now=now, idle_percent=idle_percent),
        low_balance=queue_low_balance_notices(session, now=now),
    )
