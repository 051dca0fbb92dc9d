"""The PI's progress report on a pending tranche, for the funder to approve.

A tranche waits until a program owner releases it on a progress report
(:func:`credits.grants.allocations.release_tranche`). The project's PI or a
manager (or ops) writes that report: it is kept on the pending tranche and may
be rewritten until the release, which approves the report the funder sends
(the funder's form starts from the PI's). Appends
``allocation.progress_report_submitted``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.grants.allocations import REPORT_MAX_LENGTH
from credits.grants.errors import InvalidAward, ProposalForbidden, TrancheStatusConflict
from credits.grants.models import TrancheStatus
from credits.grants.proposal_queries import load_allocation, load_tranche, render_tranche
from credits.grants.queries import load_project, member_role
from credits.grants.schemas import TrancheOut
from credits.identity.access_proposals import can_edit_proposal
from credits.identity.actor import Actor


def submit_progress_report(
    session: Session, *, tranche_id: int, actor: Actor, report: str
) -> TrancheOut:
    """Keeps ``report`` on the pending tranche for its program's owners to approve.

    Raises TrancheNotFound, ProposalForbidden (not the project's PI, a manager
    or ops), TrancheStatusConflict (released already), InvalidAward (blank or
    too long).
    """
    tranche = load_tranche(session, tranche_id, lock=True)
    allocation = load_allocation(session, tranche.allocation_id)
    project = load_project(session, allocation.project_id)
    if not can_edit_proposal(actor, actor_role=member_role(project, actor.user_id)):
        raise ProposalForbidden(
            f"only the PI, a manager of project {project.id} or ops report on its tranches"
        )
    if tranche.status != TrancheStatus.PENDING.value:
        raise TrancheStatusConflict(
            f"tranche {tranche.id} is released already", current_status=tranche.status
        )
    text = report.strip() if isinstance(report, str) else ""
    if not text or len(text) > REPORT_MAX_LENGTH:
        raise InvalidAward(
            f"a progress report has 1 to {REPORT_MAX_LENGTH} characters", field="progress_report"
        )
    replaced = tranche.progress_report is not None
    tranche.progress_report = text
    session.flush()
    record_event(
        session,
        event_type="allocation.progress_report_submitted",
        actor=actor.label,
        subject_type="allocation",
        subject_id=str(allocation.id),
        data={"tranche_id": tranche.id, "replaced": replaced},
    )
    return render_tranche(tranche)
