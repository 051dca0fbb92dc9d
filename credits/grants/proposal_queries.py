"""Read-only queries for proposals, reviews, awards and allocations.

Kept apart from the services, like :mod:`credits.grants.queries`, so that
:mod:`credits.identity.access` can load scoped objects through them.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from credits.grants.errors import AllocationNotFound, ProposalNotFound, TrancheNotFound
from credits.grants.models import (
    Allocation,
    AllocationStatus,
    Award,
    ProjectMember,
    Proposal,
    ProposalKind,
    ProposalStatus,
    Review,
    ReviewAssignment,
    Tranche,
    TrancheStatus,
)
from credits.grants.queries import DEFAULT_PAGE, keyset_page
from credits.grants.schemas import (
    AllocationOut,
    AllocationPage,
    AssignmentOut,
    AwardOut,
    ProposalOut,
    ProposalPage,
    ReviewOut,
    TrancheOut,
)
from credits.ledger.models import Account, Currency

# Proposals.


def load_proposal(session: Session, proposal_id: int, *, lock: bool = False) -> Proposal:
    """The proposal row, locked for update when asked; raises ProposalNotFound."""
    proposal = session.get(Proposal, proposal_id, with_for_update=lock, populate_existing=True)
    if proposal is None:
        raise ProposalNotFound(f"no proposal has the id {proposal_id}")
    return proposal


def render_proposal(proposal: Proposal) -> ProposalOut:
    return ProposalOut(
        id=proposal.id,
        program_id=proposal.program_id,
        project_id=proposal.project_id,
        kind=ProposalKind(proposal.kind),
        status=ProposalStatus(proposal.status),
        title=proposal.title,
        abstract=proposal.abstract,
        justification=proposal.justification,
        requested={Currency(code): amount for code, amount in proposal.requested.items()},
        starts_at=proposal.starts_at,
        ends_at=proposal.ends_at,
        allocation_id=proposal.allocation_id,
        created_by_user_id=proposal.created_by_user_id,
        created_at=proposal.created_at,
        submitted_at=proposal.submitted_at,
        decided_at=proposal.decided_at,
        decided_by_user_id=proposal.decided_by_user_id,
        decision_reason=proposal.decision_reason,
        override_reason=proposal.override_reason,
    )


def list_proposals(
    session: Session,
    *,
    program_id: int | None = None,
    project_id: int | None = None,
    status: ProposalStatus | None = None,
    cursor: int | None = None,
    limit: int = DEFAULT_PAGE,
    visible: ColumnElement[bool] | None = None,
) -> ProposalPage:
    """Proposals by id after ``cursor``, ``limit`` at a time; ``visible`` narrows to a reader's."""
    page, next_cursor = keyset_page(
        session,
        Proposal,
        [
            visible,
            None if program_id is None else Proposal.program_id == program_id,
            None if project_id is None else Proposal.project_id == project_id,
            None if status is None else Proposal.status == status.value,
        ],
        cursor=cursor,
        limit=limit,
    )
    return ProposalPage(
        items=[render_proposal(proposal) for proposal in page], next_cursor=next_cursor
    )


# Reviews.


def load_assignment(
    session: Session, proposal_id: int, reviewer_user_id: int | None
) -> ReviewAssignment | None:
    if reviewer_user_id is None:
        return None
    return session.get(ReviewAssignment, (proposal_id, reviewer_user_id), populate_existing=True)


def assignments_of(session: Session, proposal_id: int) -> list[ReviewAssignment]:
    return assignments_by_proposal(session, [proposal_id]).get(proposal_id, [])


def assignments_by_proposal(
    session: Session, proposal_ids: Collection[int]
) -> dict[int, list[ReviewAssignment]]:
    """Each proposal's review assignments by reviewer, in one query."""
    found: dict[int, list[ReviewAssignment]] = {}
    for assignment in session.scalars(
        select(ReviewAssignment)
        .where(ReviewAssignment.proposal_id.in_(proposal_ids))
        .order_by(ReviewAssignment.proposal_id, ReviewAssignment.reviewer_user_id)
    ):
        found.setdefault(assignment.proposal_id, []).append(assignment)
    return found


def counted_reviews(session: Session, proposal_id: int) -> list[Review]:
    """The proposal's reviews by reviewers still assigned without a conflict, and
    not (or no longer) members of the applying project."""
    return counted_reviews_by_proposal(session, [proposal_id]).get(proposal_id, [])


def counted_reviews_by_proposal(
    session: Session, proposal_ids: Collection[int]
) -> dict[int, list[Review]]:
    """:func:`counted_reviews` of many proposals in one query, by reviewer."""
    unconflicted = (
        select(ReviewAssignment.reviewer_user_id)
        .where(
            ReviewAssignment.proposal_id == Review.proposal_id,
            ReviewAssignment.reviewer_user_id == Review.reviewer_user_id,
            ReviewAssignment.conflict_declared_at.is_(None),
        )
        .exists()
    )
    applicant = (
        select(ProjectMember.user_id)
        .join(Proposal, Proposal.project_id == ProjectMember.project_id)
        .where(Proposal.id == Review.proposal_id, ProjectMember.user_id == Review.reviewer_user_id)
        .exists()
    )
    found: dict[int, list[Review]] = {}
    for review in session.scalars(
        select(Review)
        .where(Review.proposal_id.in_(proposal_ids), unconflicted, ~applicant)
        .order_by(Review.proposal_id, Review.reviewer_user_id)
    ):
        found.setdefault(review.proposal_id, []).append(review)
    return found


def render_assignment(assignment: ReviewAssignment) -> AssignmentOut:
    return AssignmentOut.model_validate(assignment, from_attributes=True)


def render_review(review: Review) -> ReviewOut:
    return ReviewOut.model_validate(review, from_attributes=True)


# Allocations, tranches and awards.


def load_allocation(session: Session, allocation_id: int, *, lock: bool = False) -> Allocation:
    """The allocation row, locked for update when asked; raises AllocationNotFound."""
    allocation = session.get(
        Allocation, allocation_id, with_for_update=lock, populate_existing=True
    )
    if allocation is None:
        raise AllocationNotFound(f"no allocation has the id {allocation_id}")
    return allocation


def load_tranche(session: Session, tranche_id: int, *, lock: bool = False) -> Tranche:
    """The tranche row, locked for update when asked; raises TrancheNotFound."""
    tranche = session.get(Tranche, tranche_id, with_for_update=lock, populate_existing=True)
    if tranche is None:
        raise TrancheNotFound(f"no tranche has the id {tranche_id}")
    return tranche


def render_allocation(session: Session, allocation: Allocation) -> AllocationOut:
    """The allocation with its ledger account's figures; the account's status is its status."""
    account = session.get_one(Account, allocation.account_id, populate_existing=True)
    return AllocationOut(
        id=allocation.id,
        award_id=allocation.award_id,
        program_id=allocation.program_id,
        project_id=allocation.project_id,
        currency=Currency(allocation.currency),
        account_id=allocation.account_id,
        awarded_micro=allocation.awarded_micro,
        released_micro=account.credits_posted,
        available_micro=account.credits_posted - account.debits_posted - account.debits_pending,
        starts_at=allocation.starts_at,
        expires_at=allocation.expires_at,
        status=AllocationStatus(account.status),
        created_at=allocation.created_at,
    )


def render_tranche(tranche: Tranche) -> TrancheOut:
    return TrancheOut(
        id=tranche.id,
        award_id=tranche.award_id,
        allocation_id=tranche.allocation_id,
        amount_micro=tranche.amount_micro,
        status=TrancheStatus(tranche.status),
        progress_report=tranche.progress_report,
        released_at=tranche.released_at,
        released_by_user_id=tranche.released_by_user_id,
    )


def render_award(
    session: Session, award: Award, *, allocation_ids: list[int], replayed: bool = False
) -> AwardOut:
    """The award with the allocations it created or changed and its tranches."""
    tranches = session.scalars(
        select(Tranche).where(Tranche.award_id == award.id).order_by(Tranche.id)
    )
    return AwardOut(
        id=award.id,
        proposal_id=award.proposal_id,
        program_id=award.program_id,
        project_id=award.project_id,
        amounts={Currency(code): amount for code, amount in award.amounts.items()},
        starts_at=award.starts_at,
        ends_at=award.ends_at,
        decided_by_user_id=award.decided_by_user_id,
        created_at=award.created_at,
        allocations=[
            render_allocation(session, load_allocation(session, allocation_id))
            for allocation_id in allocation_ids
        ],
        tranches=[render_tranche(tranche) for tranche in tranches],
        replayed=replayed,
    )


def list_allocations(
    session: Session,
    *,
    project_id: int | None = None,
    program_id: int | None = None,
    currency: Currency | None = None,
    cursor: int | None = None,
    limit: int = DEFAULT_PAGE,
    visible: ColumnElement[bool] | None = None,
) -> AllocationPage:
    """Allocations by id after ``cursor``, ``limit`` at a time; ``visible`` narrows to
    a reader's."""
    page, next_cursor = keyset_page(
        session,
        Allocation,
        [
            visible,
            None if project_id is None else Allocation.project_id == project_id,
            None if program_id is None else Allocation.program_id == program_id,
            None if currency is None else Allocation.currency == currency.value,
        ],
        cursor=cursor,
        limit=limit,
    )
    return AllocationPage(
        items=[render_allocation(session, allocation) for allocation in page],
        next_cursor=next_cursor,
    )
