"""Who may decide a proposal when they are on the applying project, and the mean
score a decision compares with the program's minimum."""

from __future__ import annotations

from typing import Any

import pytest
from grants_helpers import uid
from proposal_helpers import CREDIT, World, awarded, full_state, reviewed, submitted, world
from sqlalchemy.orm import Session

from credits.grants import projects
from credits.grants.allocations import release_tranche
from credits.grants.awards import award_proposal, reject_proposal
from credits.grants.errors import ProposalForbidden
from credits.grants.reviews import (
    assign_reviewer,
    get_review_summary,
    review_summaries,
    submit_review,
)
from credits.identity.access_proposals import list_reviews_for_actor
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import grant_role

THREE_CRITERIA = [
    {"key": "merit", "label": "Scientific merit"},
    {"key": "fit", "label": "Fit"},
    {"key": "plan", "label": "Work plan"},
]


def _join_project(session: Session, w: World, actor: Actor) -> None:
    """The actor joins pia's project: before it applies, or once its proposals are decided
    (joining while they assess one is refused: test_assessors_cannot_join_the_project.py)."""
    grant_role(session, email=actor.email or "", role=Role.RESEARCHER, actor=w.ops)
    projects.add_member(
        session, project_id=w.project_id, user_id=uid(actor), role="member", actor=w.pia
    )


def _refused(session: Session, call: Any, **kwargs: Any) -> None:
    before = full_state(session)
    with pytest.raises(ProposalForbidden, match=r"you are on project \d+"):
        call(session, **kwargs)
    assert full_state(session) == before


@pytest.mark.parametrize("who", ["fay", "ops"])
def test_an_owner_or_ops_on_the_applying_project_cannot_decide_it(
    any_session: Session, who: str
) -> None:
    session = any_session
    w = world(session)
    decider: Actor = getattr(w, who)
    other = w.ops if who == "fay" else w.fay
    _join_project(session, w, decider)  # on the project before it applies
    proposal = reviewed(session, w, reviewers=1, by=other)

    award = {
        "proposal_id": proposal.id,
        "actor": decider,
        "key": "self-award",
        "amounts": {"gpu": 500 * CREDIT},
        "starts_at": proposal.starts_at,
        "ends_at": proposal.ends_at,
        "override_reason": "urgent",
    }
    _refused(session, award_proposal, **award)
    _refused(session, reject_proposal, proposal_id=proposal.id, actor=decider, reason="no")
    _refused(
        session,
        assign_reviewer,
        proposal_id=proposal.id,
        reviewer_user_id=uid(w.reviewers[1]),
        actor=decider,
    )
    assert award_proposal(session, **(award | {"actor": other})).allocations


def test_an_owner_on_the_project_cannot_release_its_tranche(any_session: Session) -> None:
    session = any_session
    w = world(session, initial_share_percent=50)
    (tranche,) = awarded(session, w).tranches
    _join_project(session, w, w.fay)

    _refused(
        session,
        release_tranche,
        tranche_id=tranche.id,
        actor=w.fay,
        progress_report="We did it all.",
        key="self-release",
    )


def test_an_owner_on_the_applying_project_reads_none_of_its_reviews(any_session: Session) -> None:
    session = any_session
    w = world(session)
    _join_project(session, w, w.fay)  # on the project before it applies
    proposal = reviewed(session, w, by=w.ops)
    assert get_review_summary(session, proposal_id=proposal.id, actor=w.ops).reviews

    _refused(session, get_review_summary, proposal_id=proposal.id, actor=w.fay)
    (summary,) = review_summaries(
        session, program_id=proposal.program_id, proposal_ids=[proposal.id], actor=w.fay
    ).values()
    assert (summary.withheld, summary.reviews, summary.assignments) == (True, [], [])
    assert summary.mean_score is None
    assert list_reviews_for_actor(session, w.fay) == []
    reject_proposal(session, proposal_id=proposal.id, actor=w.ops, reason="Out of scope.")
    _refused(session, get_review_summary, proposal_id=proposal.id, actor=w.fay)
    _join_project(session, w, w.ops)  # ops read every review, as they may read everything
    assert get_review_summary(session, proposal_id=proposal.id, actor=w.ops).reviews


def test_the_mean_score_is_rounded_once_from_the_raw_scores(any_session: Session) -> None:
    session = any_session
    w = world(session, criteria=THREE_CRITERIA, min_reviewers=2, min_mean_score=350)
    proposal = submitted(session, w)
    for reviewer, scores in zip(w.reviewers[:2], ((4, 4, 3), (4, 3, 3)), strict=True):
        assign_reviewer(
            session, proposal_id=proposal.id, reviewer_user_id=uid(reviewer), actor=w.fay
        )
        submit_review(
            session,
            proposal_id=proposal.id,
            actor=reviewer,
            scores=dict(zip(("merit", "fit", "plan"), scores, strict=True)),
            comment="Fine.",
        )

    # 11/3 and 10/3 average to exactly 3.50; each review alone reads 366 and 333.
    assert get_review_summary(session, proposal_id=proposal.id, actor=w.fay).mean_score == 350
    award = award_proposal(
        session,
        proposal_id=proposal.id,
        actor=w.fay,
        key="award-350",
        amounts=proposal.requested,
        starts_at=proposal.starts_at,
        ends_at=proposal.ends_at,
    )
    assert award.allocations
