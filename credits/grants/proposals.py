"""Proposals: a project applies to a program for credits, more credits or more time.

Kinds: ``new`` and ``renewal`` ask for fresh allocations (amounts and a
period); ``supplement`` asks for more credits on an allocation it names (in
that allocation's currency, over its period); ``extension`` asks for a later
end date of an allocation it names (no amounts). The named allocation must
belong to the same project and program and not have ended::

    draft ──submit──▶ submitted ──assign reviewer──▶ in_review ──award──▶ awarded
      │                   │                              │    └──reject──▶ rejected
      └──────withdraw─────┴──────────withdraw────────────┴──▶ withdrawn

(a decision may also be taken straight from ``submitted``; see
:mod:`credits.grants.awards`). Only a draft is edited. The PI, a manager of the
project or ops drafts, edits, submits and withdraws. Each transition refuses a
wrong starting state with ProposalStatusConflict (``current_status``), changes
nothing when refused, and appends an audit event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.audit.service import record_event
from credits.db import utcnow
from credits.errors import InvalidInput
from credits.grants.errors import (
    IncompleteProposal,
    InvalidProposal,
    ProgramNotFound,
    ProgramStatusConflict,
    ProjectStatusConflict,
    ProposalForbidden,
    ProposalStatusConflict,
)
from credits.grants.models import (
    Allocation,
    Program,
    ProgramStatus,
    Project,
    ProjectStatus,
    Proposal,
    ProposalKind,
    ProposalStatus,
)
from credits.grants.proposal_queries import load_allocation, load_proposal, render_proposal
from credits.grants.queries import load_program, load_project, member_role
from credits.grants.schemas import ProposalOut
from credits.identity.access_proposals import can_edit_proposal
from credits.identity.actor import Actor
from credits.ledger.models import Account, AccountStatus, Currency
from credits.notifications.events import announce, notify_proposal_submitted

__all__ = [
    "create_proposal",
    "submit_proposal",
    "update_proposal",
    "withdraw_proposal",
]

TITLE_MAX_LENGTH = 300
TEXT_MAX_LENGTH = 50_000
# The most one proposal may ask for in one currency: a billion credits.
MAX_REQUEST_MICRO = 10**15
ALLOCATION_KINDS = frozenset({ProposalKind.SUPPLEMENT, ProposalKind.EXTENSION})
WITHDRAWABLE = frozenset({ProposalStatus.DRAFT, ProposalStatus.SUBMITTED, ProposalStatus.IN_REVIEW})


# Validation: pure functions, each raising InvalidProposal with the field it names.


def _clean_text(value: object, *, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidProposal(f"{field} must be text", field=field)
    text = value.strip()
    if len(text) > limit:
        raise InvalidProposal(f"a proposal's {field} has at most {limit} characters", field=field)
    return text


def clean_amounts(
    amounts: Mapping[str, Any],
    *,
    field: str,
    positive: bool,
    error: type[InvalidInput] = InvalidProposal,
) -> dict[str, int]:
    """{currency: micro-credits}; each an int, above zero when ``positive``, else not below."""
    if not isinstance(amounts, Mapping):
        raise error(f"{field} maps currencies to micro-credits", field=field)
    cleaned: dict[str, int] = {}
    for code, amount in amounts.items():
        try:
            currency = Currency(code)
        except ValueError:
            raise error(f"unknown currency {code!r}", field=field) from None
        low = 1 if positive else 0
        if type(amount) is not int or not low <= amount <= MAX_REQUEST_MICRO:
            raise error(
                f"{field}[{currency.value}] must be an integer of micro-credits from {low} "
                f"to {MAX_REQUEST_MICRO}",
                field=field,
            )
        cleaned[currency.value] = amount
    return cleaned


def check_period(
    starts_at: datetime | None,
    ends_at: datetime | None,
    *,
    error: type[InvalidInput] = InvalidProposal,
) -> None:
    """Each given time is timezone-aware; when both are given, the end is later."""
    for field, moment in (("starts_at", starts_at), ("ends_at", ends_at)):
        if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
            raise error(f"{field} must be a timezone-aware time", field=field)
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise error("a proposal's period must end after it starts", field="ends_at")


def extends_too_little(allocation_id: int, expires_at: datetime) -> str:
    """Why an extension's end is refused: it must come after the allocation's."""
    return (
        f"an extension must end after allocation {allocation_id}'s last day,"
        f" {fmt.until_day(expires_at)}"
    )


def _require_later_end(proposal: Proposal, allocation: Allocation | None) -> None:
    extension = ProposalKind(proposal.kind) is ProposalKind.EXTENSION
    if not extension or allocation is None or proposal.ends_at is None:
        return
    if proposal.ends_at <= allocation.expires_at:
        raise InvalidProposal(
            extends_too_little(allocation.id, allocation.expires_at), field="ends_at"
        )


def _missing(proposal: Proposal, allocation: Allocation | None) -> list[str]:
    """What submission still needs, by field name; empty when complete."""
    kind = ProposalKind(proposal.kind)
    missing = [
        field for field in ("title", "abstract", "justification") if not getattr(proposal, field)
    ]
    positive = {code for code, amount in proposal.requested.items() if amount > 0}
    if kind is ProposalKind.SUPPLEMENT and allocation is not None:
        if positive != {allocation.currency}:
            missing.append("requested")
    elif kind is ProposalKind.EXTENSION and allocation is not None:
        if proposal.ends_at is None:
            missing.append("ends_at")
    else:
        if not positive:
            missing.append("requested")
        missing += [f for f in ("starts_at", "ends_at") if getattr(proposal, f) is None]
    return missing


# Loading and guarding.


def _require_editor(actor: Actor, project: Project) -> None:
    if not can_edit_proposal(actor, actor_role=member_role(project, actor.user_id)):
        raise ProposalForbidden(
            f"only the PI, a manager of project {project.id} or ops may do this"
        )


def require_status(proposal: Proposal, allowed: frozenset[ProposalStatus], action: str) -> None:
    """Raises ProposalStatusConflict naming the current status unless it is ``allowed``."""
    if ProposalStatus(proposal.status) not in allowed:
        names = " or ".join(sorted(status.value for status in allowed))
        raise ProposalStatusConflict(
            f"proposal {proposal.id} is {proposal.status}; only {names} proposals can {action}",
            current_status=proposal.status,
        )


def audit_proposal(
    session: Session, event_type: str, proposal: Proposal, actor: Actor, **data: Any
) -> None:
    record_event(
        session,
        event_type=event_type,
        actor=actor.label,
        subject_type="proposal",
        subject_id=str(proposal.id),
        data=data,
    )


def live_allocation(
    session: Session, allocation_id: int, *, project_id: int, program_id: int
) -> Allocation:
    """The named allocation of this project and program, not yet ended.

    Raises AllocationNotFound, InvalidProposal (another project's or
    program's, or ended).
    """
    allocation = load_allocation(session, allocation_id)
    if allocation.project_id != project_id:
        raise InvalidProposal(
            f"allocation {allocation_id} is not project {project_id}'s", field="allocation_id"
        )
    if allocation.program_id != program_id:
        raise InvalidProposal(
            f"allocation {allocation_id} was awarded by another program", field="allocation_id"
        )
    account = session.get(Account, allocation.account_id)
    ended = account is None or account.status == AccountStatus.EXPIRED.value
    # Past its end date it has ended, even before the hourly sweep marks it so.
    if ended or allocation.expires_at <= utcnow():
        raise InvalidProposal(f"allocation {allocation_id} has ended", field="allocation_id")
    return allocation


def _require_open(program: Program, now: datetime) -> None:
    if program.status != ProgramStatus.OPEN.value:
        raise ProgramStatusConflict(
            f"program {program.id} is {program.status}; proposals go to open programs",
            current_status=program.status,
        )
    if not program.opens_at <= now < program.closes_at:
        raise ProgramStatusConflict(
            f"program {program.id} takes proposals from {program.opens_at.isoformat()} "
            f"until {program.closes_at.isoformat()}",
            current_status=program.status,
        )


def _require_project_active(project: Project) -> None:
    if project.status == ProjectStatus.ARCHIVED.value:
        raise ProjectStatusConflict(
            f"project {project.id} is archived", current_status=project.status
        )


# Services.


def create_proposal(
    session: Session,
    *,
    program_id: int,
    project_id: int,
    kind: ProposalKind | str,
    actor: Actor,
    title: str = "",
    abstract: str = "",
    justification: str = "",
    requested: Mapping[str, Any] | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    allocation_id: int | None = None,
) -> ProposalOut:
    """Drafts a proposal of the project to the program; appends ``proposal.created``.

    A draft may be incomplete, but what it holds must be valid: amounts are
    integers of at least zero, a period ends after it starts, and a
    supplement or extension names a live allocation of the same project and
    program (others name none). The program must not be a draft.

    Raises ProjectNotFound, ProgramNotFound (also a draft program),
    ProposalForbidden, ProjectStatusConflict (archived), InvalidProposal,
    AllocationNotFound.
    """
    project = load_project(session, project_id)
    _require_editor(actor, project)
    _require_project_active(project)
    program = load_program(session, program_id)
    if program.status == ProgramStatus.DRAFT.value:
        # A draft call is not public: answer as for a missing one.
        raise ProgramNotFound(f"no program has the id {program_id}")
    try:
        checked_kind = ProposalKind(kind)
    except ValueError:
        raise InvalidProposal(f"unknown proposal kind {kind!r}", field="kind") from None
    if (checked_kind in ALLOCATION_KINDS) != (allocation_id is not None):
        raise InvalidProposal(
            "a supplement or extension names an allocation; other kinds name none",
            field="allocation_id",
        )
    if allocation_id is not None:
        live_allocation(session, allocation_id, project_id=project.id, program_id=program.id)
    check_period(starts_at, ends_at)
    proposal = Proposal(
        program_id=program.id,
        project_id=project.id,
        kind=checked_kind.value,
        status=ProposalStatus.DRAFT.value,
        title=_clean_text(title, field="title", limit=TITLE_MAX_LENGTH),
        abstract=_clean_text(abstract, field="abstract", limit=TEXT_MAX_LENGTH),
        justification=_clean_text(justification, field="justification", limit=TEXT_MAX_LENGTH),
        requested=clean_amounts(requested or {}, field="requested", positive=False),
        starts_at=starts_at,
        ends_at=ends_at,
        allocation_id=allocation_id,
        created_by_user_id=actor.user_id,
    )
    session.add(proposal)
    session.flush()
    audit_proposal(
        session,
        "proposal.created",
        proposal,
        actor,
        program_id=program.id,
        project_id=project.id,
        kind=checked_kind.value,
        allocation_id=allocation_id,
    )
    return render_proposal(proposal)


def update_proposal(
    session: Session,
    *,
    proposal_id: int,
    actor: Actor,
    title: str | None = None,
    abstract: str | None = None,
    justification: str | None = None,
    requested: Mapping[str, Any] | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> ProposalOut:
    """Changes what is given of a draft; None leaves a field. Appends ``proposal.updated``.

    Raises ProposalNotFound, ProposalForbidden, ProposalStatusConflict (not a
    draft), InvalidProposal.
    """
    proposal = load_proposal(session, proposal_id, lock=True)
    _require_editor(actor, load_project(session, proposal.project_id))
    require_status(proposal, frozenset({ProposalStatus.DRAFT}), "be edited")
    changes: dict[str, Any] = {}
    if title is not None:
        changes["title"] = _clean_text(title, field="title", limit=TITLE_MAX_LENGTH)
    for field, value in (("abstract", abstract), ("justification", justification)):
        if value is not None:
            changes[field] = _clean_text(value, field=field, limit=TEXT_MAX_LENGTH)
    if requested is not None:
        changes["requested"] = clean_amounts(requested, field="requested", positive=False)
    check_period(starts_at or proposal.starts_at, ends_at or proposal.ends_at)
    changes |= {
        field: moment
        for field, moment in (("starts_at", starts_at), ("ends_at", ends_at))
        if moment is not None
    }
    for field, value in changes.items():
        setattr(proposal, field, value)
    session.flush()
    audit_proposal(session, "proposal.updated", proposal, actor, fields=sorted(changes))
    return render_proposal(proposal)


def submit_proposal(
    session: Session, *, proposal_id: int, actor: Actor, now: datetime | None = None
) -> ProposalOut:
    """draft → submitted, once complete and while the program takes proposals.

    Complete: a title, an abstract and a justification; for ``new`` and
    ``renewal`` an amount above zero in at least one currency and a period;
    for a supplement an amount above zero in the allocation's currency alone;
    for an extension an end later than the allocation's. Appends
    ``proposal.submitted``.

    Raises ProposalNotFound, ProposalForbidden, ProposalStatusConflict (not a
    draft), ProjectStatusConflict (archived), ProgramStatusConflict (not open,
    or outside its window), IncompleteProposal (``missing`` names the fields),
    InvalidProposal (the named allocation has ended).
    """
    now = now or utcnow()
    proposal = load_proposal(session, proposal_id, lock=True)
    project = load_project(session, proposal.project_id)
    _require_editor(actor, project)
    require_status(proposal, frozenset({ProposalStatus.DRAFT}), "be submitted")
    _require_project_active(project)
    _require_open(load_program(session, proposal.program_id), now)
    allocation = None
    if proposal.allocation_id is not None:
        allocation = live_allocation(
            session,
            proposal.allocation_id,
            project_id=proposal.project_id,
            program_id=proposal.program_id,
        )
    _require_later_end(proposal, allocation)
    if missing := _missing(proposal, allocation):
        raise IncompleteProposal(
            f"proposal {proposal.id} needs: {', '.join(missing)}", missing=missing
        )
    proposal.status = ProposalStatus.SUBMITTED.value
    proposal.submitted_at = now
    session.flush()
    audit_proposal(
        session,
        "proposal.submitted",
        proposal,
        actor,
        requested=proposal.requested,
        **{"from": ProposalStatus.DRAFT.value},
    )
    announce(session, notify_proposal_submitted, proposal_id=proposal.id)
    return render_proposal(proposal)


def withdraw_proposal(
    session: Session, *, proposal_id: int, actor: Actor, reason: str | None = None
) -> ProposalOut:
    """draft, submitted or in_review → withdrawn; appends ``proposal.withdrawn``.

    Raises ProposalNotFound, ProposalForbidden, ProposalStatusConflict
    (already decided or withdrawn), InvalidProposal (reason too long).
    """
    proposal = load_proposal(session, proposal_id, lock=True)
    _require_editor(actor, load_project(session, proposal.project_id))
    require_status(proposal, WITHDRAWABLE, "be withdrawn")
    why = _clean_text(reason or "", field="reason", limit=TEXT_MAX_LENGTH)
    previous = proposal.status
    proposal.status = ProposalStatus.WITHDRAWN.value
    session.flush()
    audit_proposal(session, "proposal.withdrawn", proposal, actor, reason=why, **{"from": previous})
    return render_proposal(proposal)
