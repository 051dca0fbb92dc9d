"""Who may read and change proposals and allocations (see :mod:`credits.identity.access`).

The same rules as the rest of the access helpers: one condition per line, and
an object out of reach answers exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from credits.grants import proposal_queries
from credits.grants import queries as grants_queries
from credits.grants.errors import (
    AllocationNotFound,
    ProposalNotFound,
)
from credits.grants.models import (
    Allocation,
    MemberRole,
    ProgramOwner,
    ProjectMember,
    Proposal,
    ProposalStatus,
    ReviewAssignment,
)
from credits.grants.schemas import (
    AllocationOut,
    AllocationPage,
    ProposalOut,
    ProposalPage,
)
from credits.identity.access import can_administer_program, is_project_member, require_scope
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.ledger.models import Currency

# Proposals: ops see all; project members see their project's; a program's
# owners see what was submitted to them (never a draft); an assigned reviewer
# sees the proposal until they declare a conflict of interest.


def can_read_proposal(
    actor: Actor,
    *,
    is_member: bool,
    owner_ids: Collection[int],
    submitted: bool,
    reviewing: bool,
) -> bool:
    """True when the actor may see the proposal; keep in step with :func:`visible_proposals`.

    ``reviewing`` says the actor is assigned to it and declared no conflict.
    """
    if actor.has_role(Role.OPS):
        return True
    if is_member:
        return True
    if submitted and can_administer_program(actor, owner_ids=owner_ids):
        return True
    if not actor.has_role(Role.REVIEWER):
        return False
    return reviewing


def can_edit_proposal(actor: Actor, *, actor_role: MemberRole | None) -> bool:
    """Draft, edit, submit and withdraw: ops, the project's PI and managers."""
    if actor.has_role(Role.OPS):
        return True
    if actor_role is MemberRole.PI:
        return True
    return actor_role is MemberRole.MANAGER


def visible_proposals(actor: Actor) -> ColumnElement[bool]:
    """The SQL form of :func:`can_read_proposal`, for listing."""
    if actor.has_role(Role.OPS):
        return true()
    if actor.user_id is None:
        return false()
    joined = select(ProjectMember.project_id).where(ProjectMember.user_id == actor.user_id)
    clauses: list[ColumnElement[bool]] = [Proposal.project_id.in_(joined)]
    if actor.has_role(Role.FUNDER):
        owned = select(ProgramOwner.program_id).where(ProgramOwner.user_id == actor.user_id)
        clauses.append(Proposal.program_id.in_(owned) & Proposal.submitted_at.is_not(None))
    if actor.has_role(Role.REVIEWER):
        assigned = select(ReviewAssignment.proposal_id).where(
            ReviewAssignment.reviewer_user_id == actor.user_id,
            ReviewAssignment.conflict_declared_at.is_(None),
        )
        clauses.append(Proposal.id.in_(assigned))
    return or_(false(), *clauses)


def load_proposal_for_actor(
    session: Session, actor: Actor, proposal_id: int, *, scope: Scope = Scope.READ
) -> Proposal:
    """The proposal row, when the actor may see it.

    Raises MissingScope without ``scope``, and ProposalNotFound both when the
    proposal does not exist and when the actor may not see it (a reviewer
    after declaring a conflict included), with the same message.
    """
    require_scope(actor, scope)
    proposal = session.get(Proposal, proposal_id, populate_existing=True)
    missing = ProposalNotFound(f"no proposal has the id {proposal_id}")
    if proposal is None:
        raise missing
    program = grants_queries.load_program(session, proposal.program_id)
    assignment = proposal_queries.load_assignment(session, proposal.id, actor.user_id)
    if not can_read_proposal(
        actor,
        is_member=is_project_member(session, actor, proposal.project_id),
        owner_ids=grants_queries.owner_ids(program),
        submitted=proposal.submitted_at is not None,
        reviewing=assignment is not None and assignment.conflict_declared_at is None,
    ):
        raise missing
    return proposal


def get_proposal_for_actor(
    session: Session, actor: Actor, proposal_id: int, *, scope: Scope = Scope.READ
) -> ProposalOut:
    """:func:`load_proposal_for_actor`, rendered."""
    proposal = load_proposal_for_actor(session, actor, proposal_id, scope=scope)
    return proposal_queries.render_proposal(proposal)


def list_proposals_for_actor(
    session: Session,
    actor: Actor,
    *,
    program_id: int | None = None,
    project_id: int | None = None,
    status: ProposalStatus | None = None,
    cursor: int | None = None,
    limit: int = grants_queries.DEFAULT_PAGE,
) -> ProposalPage:
    """A page of the proposals the actor may see; raises MissingScope without ``read``."""
    require_scope(actor, Scope.READ)
    return proposal_queries.list_proposals(
        session,
        program_id=program_id,
        project_id=project_id,
        status=status,
        cursor=cursor,
        limit=limit,
        visible=visible_proposals(actor),
    )


# Allocations: ops see all; a program's owners see what it awarded; project
# members see their project's.


def can_read_allocation(actor: Actor, *, is_member: bool, owner_ids: Collection[int]) -> bool:
    """True when the actor may see the allocation; keep in step with :func:`visible_allocations`."""
    if can_administer_program(actor, owner_ids=owner_ids):
        return True
    return is_member


def visible_allocations(actor: Actor) -> ColumnElement[bool]:
    """The SQL form of :func:`can_read_allocation`, for listing."""
    if actor.has_role(Role.OPS):
        return true()
    if actor.user_id is None:
        return false()
    joined = select(ProjectMember.project_id).where(ProjectMember.user_id == actor.user_id)
    clauses: list[ColumnElement[bool]] = [Allocation.project_id.in_(joined)]
    if actor.has_role(Role.FUNDER):
        owned = select(ProgramOwner.program_id).where(ProgramOwner.user_id == actor.user_id)
        clauses.append(Allocation.program_id.in_(owned))
    return or_(false(), *clauses)


def get_allocation_for_actor(
    session: Session, actor: Actor, allocation_id: int, *, scope: Scope = Scope.READ
) -> AllocationOut:
    """The allocation with its ledger figures, when the actor may see it; else
    AllocationNotFound, as for a missing one. Raises MissingScope without ``scope``."""
    require_scope(actor, scope)
    allocation = session.get(Allocation, allocation_id, populate_existing=True)
    missing = AllocationNotFound(f"no allocation has the id {allocation_id}")
    if allocation is None:
        raise missing
    program = grants_queries.load_program(session, allocation.program_id)
    if not can_read_allocation(
        actor,
        is_member=is_project_member(session, actor, allocation.project_id),
        owner_ids=grants_queries.owner_ids(program),
    ):
        raise missing
    return proposal_queries.render_allocation(session, allocation)


def list_allocations_for_actor(
    session: Session,
    actor: Actor,
    *,
    project_id: int | None = None,
    program_id: int | None = None,
    currency: Currency | None = None,
    cursor: int | None = None,
    limit: int = grants_queries.DEFAULT_PAGE,
) -> AllocationPage:
    """A page of the allocations the actor may see; raises MissingScope without ``read``."""
    require_scope(actor, Scope.READ)
    return proposal_queries.list_allocations(
        session,
        project_id=project_id,
        program_id=program_id,
        currency=currency,
        cursor=cursor,
        limit=limit,
        visible=visible_allocations(actor),
    )
