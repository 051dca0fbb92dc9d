"""Regressions found in review: ended allocations, tranches that can no longer be
released, and reviewers on the applying project after assignment."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from grants_helpers import uid
from proposal_helpers import CREDIT, awarded, drafted, reviewed, world
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants.allocations import require_budget
from credits.grants.errors import InvalidProposal, ReviewerConflicted
from credits.grants.models import MemberRole, ProjectMember
from credits.grants.proposal_queries import counted_reviews
from credits.grants.reviews import assign_reviewer, submit_review
from credits.identity.models import Role
from credits.identity.service import grant_role


def _on_project_anyway(session: Session, project_id: int, user_id: int) -> None:
    """A membership add_member now refuses while the user assesses the project's
    proposal, as one added before that rule or in a race with the assignment left it."""
    session.add(ProjectMember(project_id=project_id, user_id=user_id, role=MemberRole.MEMBER.value))
    session.flush()


def _ending_soon(session: Session, **program: object) -> tuple[object, object]:
    w = world(session, budget=10 * CREDIT, **program)
    now = utcnow()
    award = awarded(
        session,
        w,
        amounts={"gpu": 10 * CREDIT},
        starts_at=now,
        ends_at=now + timedelta(seconds=1),
    )
    time.sleep(1.1)
    return w, award


def test_an_allocation_past_its_end_cannot_be_extended_before_the_sweep(
    session: Session,
) -> None:
    w, award = _ending_soon(session)
    allocation_id = award.allocations[0].id  # type: ignore[attr-defined]
    with pytest.raises(InvalidProposal, match="has ended"):
        drafted(
            session,
            w,
            kind="extension",
            allocation_id=allocation_id,
            requested={},
            starts_at=None,
            ends_at=utcnow() + timedelta(days=60),
        )


def test_a_pending_tranche_of_an_ended_allocation_stops_holding_the_budget(
    session: Session,
) -> None:
    w, _ = _ending_soon(session, initial_share_percent=50)
    # Half was granted, half is a tranche that can never be released now.
    require_budget(session, w.program_id, {"gpu": 5 * CREDIT})


def test_a_reviewer_on_the_applying_project_after_assignment_can_no_longer_score(
    session: Session,
) -> None:
    w = world(session)
    proposal = reviewed(session, w, reviewers=1)
    reviewer = w.reviewers[1]
    assign_reviewer(session, proposal_id=proposal.id, reviewer_user_id=uid(reviewer), actor=w.fay)
    grant_role(session, email=reviewer.email or "", role=Role.RESEARCHER, actor=w.ops)
    _on_project_anyway(session, w.project_id, uid(reviewer))
    with pytest.raises(ReviewerConflicted):
        submit_review(
            session,
            proposal_id=proposal.id,
            actor=reviewer,
            scores={"merit": 5, "fit": 5},
            comment="Great.",
        )
    first = w.reviewers[0]
    assert [r.reviewer_user_id for r in counted_reviews(session, proposal.id)] == [uid(first)]
    grant_role(session, email=first.email or "", role=Role.RESEARCHER, actor=w.ops)
    _on_project_anyway(session, w.project_id, uid(first))
    assert counted_reviews(session, proposal.id) == []
