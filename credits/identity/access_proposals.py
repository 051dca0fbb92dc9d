"""Who may read and change proposals, reviews and allocations (see :mod:`credits.identity.access`).

The same rules as the rest of the access helpers: one condition per line, and
an object out of reach answers exactly like a missing one. Who may read what
is the rule of each kind in :mod:`credits.identity.rules`.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from credits.grants import proposal_queries
from credits.grants import queries as grants_queries
from credits.grants.errors import (
    AllocationNotFound,
    ProposalNotFound,
    TrancheNotFound,
)
from credits.grants.models import (
    Allocation,
    Award,
    MemberRole,
    Proposal,
    ProposalStatus,
    Review,
    Tranche,
)
from credits.grants.schemas import (
    AllocationOut,
    AllocationPage,
    AwardOut,
    ProposalOut,
    ProposalPage,
)
from credits.identity import rules
from credits.identity.access import require_scope
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.ledger.models import Currency

# Proposals: ops see all; project members see their project's; a program's
# owners see what was submitted to them (never a draft); an assigned reviewer
# sees the proposal until they declare a conflict of interest.


def can_edit_proposal(actor: Actor, *, actor_role: MemberRole | None) -> bool:
    """Draft, edit, submit and withdraw: ops, the project's PI and managers."""
    if actor.has_role(Role.OPS):
        return True
    if actor_role is MemberRole.PI:
        return True
    return actor_role is MemberRole.MANAGER


def _load_proposal(
    session: Session, actor: Actor, proposal_id: int, rule: ColumnElement[bool], scope: Scope
) -> Proposal:
    require_scope(actor, scope)
    proposal = rules.load_visible(session, Proposal, proposal_id, rule)
    if proposal is None:
        raise ProposalNotFound(f"no proposal has the id {proposal_id}")
    return proposal


def load_proposal_for_actor(
    session: Session, actor: Actor, proposal_id: int, *, scope: Scope = Scope.READ
) -> Proposal:
    """The proposal row, when the actor may see it.

    Raises MissingScope without ``scope``, and ProposalNotFound both when the
    proposal does not exist and when the actor may not see it (a reviewer
    after declaring a conflict included), with the same message.
    """
    return _load_proposal(session, actor, proposal_id, rules.visible_proposals(actor), scope)


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
        visible=rules.visible_proposals(actor),
    )


# The funder's decision queue and the reviewer's review queue: the proposals
# submitted to the programs an actor administers, and those assigned to them.


class Queue(StrEnum):
    DECIDE = "decide"  # rules.decision_queue
    REVIEW = "review"  # rules.review_queue


def get_queued_proposal(
    session: Session, actor: Actor, proposal_id: int, *, queue: Queue
) -> ProposalOut:
    """A proposal of the actor's ``queue``; else ProposalNotFound, as for a missing one."""
    return proposal_queries.render_proposal(
        _load_proposal(session, actor, proposal_id, _queue(actor, queue), Scope.READ)
    )


def list_queued_proposals(
    session: Session, actor: Actor, *, queue: Queue, program_id: int | None = None
) -> ProposalPage:
    """The proposals of the actor's ``queue``, by id."""
    require_scope(actor, Scope.READ)
    return proposal_queries.list_proposals(
        session, program_id=program_id, limit=grants_queries.MAX_PAGE, visible=_queue(actor, queue)
    )


def _queue(actor: Actor, queue: Queue) -> ColumnElement[bool]:
    if queue is Queue.DECIDE:
        return rules.decision_queue(actor)
    return rules.review_queue(actor)


# Reviews (rules.visible_reviews) and awards (rules.visible_awards).


def list_reviews_for_actor(
    session: Session, actor: Actor, *, reviewer_user_id: int | None = None
) -> list[Review]:
    """The reviews the actor may read, by reviewer (``reviewer_user_id`` narrows), then
    proposal."""
    require_scope(actor, Scope.READ)
    query = select(Review).where(rules.visible_reviews(actor))
    if reviewer_user_id is not None:
        query = query.where(Review.reviewer_user_id == reviewer_user_id)
    query = query.order_by(Review.reviewer_user_id, Review.proposal_id)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def get_award_of_proposal(session: Session, actor: Actor, proposal_id: int) -> AwardOut | None:
    """The award made on the proposal with its allocations, when there is one the actor
    may read; None otherwise."""
    require_scope(actor, Scope.READ)
    award = session.scalar(
        select(Award).where(Award.proposal_id == proposal_id, rules.visible_awards(actor))
    )
    if award is None:
        return None
    ids = list(
        session.scalars(
            select(Allocation.id).where(Allocation.award_id == award.id).order_by(Allocation.id)
        )
    )
    proposal = session.get_one(Proposal, proposal_id)
    if not ids and proposal.allocation_id is not None:
        ids = [proposal.allocation_id]
    return proposal_queries.render_award(session, award, allocation_ids=ids)


def load_administered_tranche(session: Session, actor: Actor, tranche_id: int) -> Tranche:
    """The tranche, when the actor administers its program (and may release it); else
    TrancheNotFound, as for a missing one."""
    require_scope(actor, Scope.READ)
    tranche = rules.load_visible(session, Tranche, tranche_id, rules.administered_tranches(actor))
    if tranche is None:
        raise TrancheNotFound(f"no tranche has the id {tranche_id}")
    return tranche


# Allocations: ops see all; a program's owners see what it awarded; project
# members see their project's (rules.visible_allocations).


def get_allocation_for_actor(
    session: Session, actor: Actor, allocation_id: int, *, scope: Scope = Scope.READ
) -> AllocationOut:
    """The allocation with its ledger figures, when the actor may see it; else
    AllocationNotFound, as for a missing one. Raises MissingScope without ``scope``."""
    require_scope(actor, scope)
    rule = rules.visible_allocations(actor)
    allocation = rules.load_visible(session, Allocation, allocation_id, rule)
    if allocation is None:
        raise AllocationNotFound(f"no allocation has the id {allocation_id}")
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
        visible=rules.visible_allocations(actor),
    )
