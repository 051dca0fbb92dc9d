"""Archiving a project: final, and the end of its work: its jobs and unstarted
labelling orders are cancelled, its allocation accounts suspended and its pending
tranches withdrawn from the program's budget."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.db import utcnow
from credits.grants.errors import ProjectForbidden
from credits.grants.models import Allocation, Project, ProjectStatus, Tranche, TrancheStatus
from credits.grants.projects import (
    GRANTS_SYSTEM,
    _allocations,
    _audit,
    _require_status,
    _set_allocations,
)
from credits.grants.queries import load_project, member_role, render_project
from credits.grants.schemas import ProjectOut
from credits.identity.access import can_archive_project
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.jobs.service import cancel_project_jobs
from credits.labelling.project_orders import cancel_project_orders
from credits.ledger.models import AccountStatus


def _withdraw_tranches(session: Session, project: Project, actor: Actor) -> None:
    """Records, on its allocation, each pending tranche an archive withdraws.

    An archived project's tranche can never be released, so the program's
    budget stops counting it (:mod:`credits.grants.allocations`); the event
    tells the funder where that part of the award went.
    """
    pending = session.execute(
        select(Tranche.id, Tranche.amount_micro, Allocation.id, Allocation.currency)
        .join(Allocation, Allocation.id == Tranche.allocation_id)
        .where(
            Allocation.project_id == project.id,
            # One past its end stopped holding the budget when it ended.
            Allocation.expires_at > utcnow(),
            Tranche.status == TrancheStatus.PENDING.value,
        )
        .order_by(Tranche.id)
    )
    for tranche_id, amount, allocation_id, currency in pending:
        record_event(
            session,
            event_type="allocation.tranche_withdrawn",
            actor=actor.label,
            subject_type="allocation",
            subject_id=str(allocation_id),
            data={
                "tranche_id": tranche_id,
                "amount": amount,
                "currency": currency,
                "reason": f"project {project.id} archived",
            },
        )


# Services.


def archive_project(
    session: Session,
    *,
    project_id: int,
    actor: Actor,
    reason: str | None = None,
    now: datetime | None = None,
) -> ProjectOut:
    """Archives an active or suspended project for good (ops or its PI).

    Its active allocation accounts are suspended so nothing more is spent;
    members can no longer change. Its unfinished jobs are cancelled: queued ones
    at once, their holds released; starting and running ones are stopped and
    charged for what ran. Its labelling orders that nothing was delivered for
    yet are cancelled, their holds released; orders in progress go on. Its
    pending tranches are withdrawn: they no longer hold the program's budget,
    and each appends ``allocation.tranche_withdrawn``. Appends
    ``project.archived``, naming the accounts, the jobs and the orders.

    Raises ProjectNotFound, ProjectForbidden, ProjectStatusConflict (archived).
    """
    project = load_project(session, project_id, lock=True)
    if not can_archive_project(actor, actor_role=member_role(project, actor.user_id)):
        raise ProjectForbidden(f"only the PI or ops archive project {project.id}")
    _require_status(project, {ProjectStatus.ACTIVE, ProjectStatus.SUSPENDED}, "be archived")
    why = reason.strip() if isinstance(reason, str) and reason.strip() else None
    # The jobs (and their pending usage records) first, then the accounts: the order
    # cancel_job and the reconciler lock them in (a job, its records, then the
    # accounts its hold draws on), and settlement (records, then accounts), so an
    # archive never deadlocks with them.
    now = now or utcnow()
    jobs = cancel_project_jobs(
        session,
        project_id=project.id,
        by=actor.label,
        why=f"cancelled: project {project.id} archived by {actor.label}",
        now=now,
    )
    orders = cancel_project_orders(
        session,
        project_id=project.id,
        actor=actor,
        reason=f"project {project.id} archived by {actor.label}",
        now=now,
    )
    accounts = [a.id for a in _allocations(session, project.id, AccountStatus.ACTIVE)]
    _set_allocations(
        session,
        accounts,
        AccountStatus.SUSPENDED,
        actor=actor if actor.has_role(Role.OPS) else GRANTS_SYSTEM,
        reason=f"project {project.id} archived by {actor.label}" + (f": {why}" if why else ""),
    )
    previous = project.status
    project.status = ProjectStatus.ARCHIVED.value
    session.flush()
    _withdraw_tranches(session, project, actor)
    _audit(
        session,
        "project.archived",
        project,
        actor,
        reason=why,
        accounts=accounts,
        jobs=jobs,
        labelling_orders=orders,
        **{"from": previous},
    )
    return render_project(project)
