"""Reviews: assignment, conflicts of interest, scores, and the reviews a decision needs."""

from __future__ import annotations

import pytest
from grants_helpers import event_data, events, person, uid
from proposal_helpers import World, drafted, refused, reviewed, submitted, world
from sqlalchemy.orm import Session

from credits.grants.awards import award_proposal, reject_proposal
from credits.grants.errors import (
    AlreadyAssigned,
    InvalidReview,
    NotAReviewer,
    NotEnoughReviews,
    ProposalForbidden,
    ProposalNotFound,
    ProposalStatusConflict,
    ReviewerConflicted,
    ScoreBelowMinimum,
)
from credits.grants.models import ProposalStatus
from credits.grants.projects import add_member
from credits.grants.reviews import (
    assign_reviewer,
    declare_conflict,
    get_review_summary,
    submit_review,
)
from credits.identity.access_proposals import get_proposal_for_actor
from credits.identity.models import Role

SCORES = {"merit": 4, "fit": 3}


@pytest.fixture
def w(any_session: Session) -> World:
    return world(any_session)


def _assign(session: Session, w: World, proposal_id: int, index: int = 0) -> None:
    assign_reviewer(
        session, proposal_id=proposal_id, reviewer_user_id=uid(w.reviewers[index]), actor=w.fay
    )


def test_the_first_assignment_moves_a_proposal_into_review(any_session: Session, w: World) -> None:
    proposal = submitted(any_session, w)
    _assign(any_session, w, proposal.id)
    _assign(any_session, w, proposal.id, 1)
    seen = get_proposal_for_actor(any_session, w.reviewers[0], proposal.id)
    assert seen.status is ProposalStatus.IN_REVIEW
    data = event_data(any_session, "proposal", proposal.id, "proposal.reviewer_assigned")
    assert data == {}  # the public log does not say who reviews
    assert [e for e, _ in events(any_session, "proposal", proposal.id)].count(
        "proposal.reviewer_assigned"
    ) == 2


def test_the_public_log_says_a_proposal_was_reviewed_but_never_by_whom_or_how(
    any_session: Session, w: World
) -> None:
    proposal = submitted(any_session, w)
    _assign(any_session, w, proposal.id)
    _assign(any_session, w, proposal.id, 1)
    submit_review(
        any_session,
        proposal_id=proposal.id,
        actor=w.reviewers[0],
        scores={"merit": 1, "fit": 2},
        comment="weak",
    )
    declare_conflict(any_session, proposal_id=proposal.id, actor=w.reviewers[1], reason="friend")
    review_events = [
        (kind, actor)
        for kind, actor in events(any_session, "proposal", proposal.id)
        if kind in {"proposal.reviewed", "proposal.conflict_declared"}
    ]
    assert review_events == [
        ("proposal.reviewed", "system:reviews"),
        ("proposal.conflict_declared", "system:reviews"),
    ]
    assert event_data(any_session, "proposal", proposal.id, "proposal.reviewed") == {
        "replaced": False
    }


def test_a_draft_gets_no_reviewers(any_session: Session, w: World) -> None:
    proposal = drafted(any_session, w)
    error = refused(
        any_session,
        ProposalStatusConflict,
        assign_reviewer,
        proposal_id=proposal.id,
        reviewer_user_id=uid(w.reviewers[0]),
        actor=w.fay,
    )
    assert error.extra["current_status"] == "draft"


@pytest.mark.parametrize("who", ["otto", "pia", "max"])
def test_only_owners_and_ops_assign(any_session: Session, w: World, who: str) -> None:
    proposal = submitted(any_session, w)
    refused(
        any_session,
        ProposalForbidden,
        assign_reviewer,
        proposal_id=proposal.id,
        reviewer_user_id=uid(w.reviewers[0]),
        actor=getattr(w, who),
    )


def test_a_reviewer_must_hold_the_role_and_be_assigned_once(any_session: Session, w: World) -> None:
    proposal = submitted(any_session, w)
    refused(
        any_session,
        NotAReviewer,
        assign_reviewer,
        proposal_id=proposal.id,
        reviewer_user_id=uid(w.max),
        actor=w.ops,
    )
    _assign(any_session, w, proposal.id)
    refused(
        any_session,
        AlreadyAssigned,
        assign_reviewer,
        proposal_id=proposal.id,
        reviewer_user_id=uid(w.reviewers[0]),
        actor=w.fay,
    )


def test_a_conflict_closes_the_proposal_to_the_reviewer(any_session: Session, w: World) -> None:
    proposal = submitted(any_session, w)
    _assign(any_session, w, proposal.id)
    reviewer = w.reviewers[0]
    declare_conflict(any_session, proposal_id=proposal.id, actor=reviewer, reason="co-author")
    # The reason (often naming people) stays on the assignment, out of the public log.
    assert event_data(any_session, "proposal", proposal.id, "proposal.conflict_declared") == {}
    with pytest.raises(ProposalNotFound):
        get_proposal_for_actor(any_session, reviewer, proposal.id)
    refused(
        any_session,
        ProposalNotFound,
        submit_review,
        proposal_id=proposal.id,
        actor=reviewer,
        scores=SCORES,
        comment="fine",
    )
    refused(
        any_session,
        ProposalNotFound,
        declare_conflict,
        proposal_id=proposal.id,
        actor=reviewer,
        reason="again",
    )
    error = refused(
        any_session,
        ReviewerConflicted,
        assign_reviewer,
        proposal_id=proposal.id,
        reviewer_user_id=uid(reviewer),
        actor=w.fay,
    )
    assert error.status == 409


def test_a_review_before_a_conflict_stops_counting(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w, reviewers=2)
    declare_conflict(any_session, proposal_id=proposal.id, actor=w.reviewers[0], reason="late")
    summary = get_review_summary(any_session, proposal_id=proposal.id, actor=w.fay)
    assert [r.reviewer_user_id for r in summary.reviews] == [uid(w.reviewers[1])]
    refused(
        any_session,
        NotEnoughReviews,
        reject_proposal,
        proposal_id=proposal.id,
        actor=w.fay,
    )


def test_an_unassigned_reviewer_cannot_score(any_session: Session, w: World) -> None:
    proposal = submitted(any_session, w)
    _assign(any_session, w, proposal.id)
    refused(
        any_session,
        ProposalNotFound,
        submit_review,
        proposal_id=proposal.id,
        actor=w.reviewers[1],
        scores=SCORES,
        comment="fine",
    )


@pytest.mark.parametrize(
    ("scores", "comment"),
    [
        ({"merit": 4}, "ok"),
        ({"merit": 4, "fit": 3, "extra": 2}, "ok"),
        ({"merit": 0, "fit": 3}, "ok"),
        ({"merit": 6, "fit": 3}, "ok"),
        ({"merit": 4.0, "fit": 3}, "ok"),
        ({"merit": True, "fit": 3}, "ok"),
        (SCORES, "  "),
    ],
)
def test_a_review_scores_every_criterion_from_1_to_5(
    any_session: Session, w: World, scores: dict[str, object], comment: str
) -> None:
    proposal = submitted(any_session, w)
    _assign(any_session, w, proposal.id)
    refused(
        any_session,
        InvalidReview,
        submit_review,
        proposal_id=proposal.id,
        actor=w.reviewers[0],
        scores=scores,
        comment=comment,
    )


def test_a_second_review_replaces_the_first(any_session: Session, w: World) -> None:
    proposal = submitted(any_session, w)
    _assign(any_session, w, proposal.id)
    first = submit_review(
        any_session, proposal_id=proposal.id, actor=w.reviewers[0], scores=SCORES, comment="a"
    )
    assert first.mean_score == 350
    second = submit_review(
        any_session,
        proposal_id=proposal.id,
        actor=w.reviewers[0],
        scores={"merit": 5, "fit": 5},
        comment="b",
    )
    assert (second.id, second.mean_score, second.comment) == (first.id, 500, "b")
    assert event_data(any_session, "proposal", proposal.id, "proposal.reviewed")["replaced"]
    summary = get_review_summary(any_session, proposal_id=proposal.id, actor=w.ops)
    assert (len(summary.reviews), summary.mean_score) == (1, 500)


def test_no_review_after_the_decision(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w)
    reject_proposal(any_session, proposal_id=proposal.id, actor=w.fay, reason="budget")
    error = refused(
        any_session,
        ProposalStatusConflict,
        submit_review,
        proposal_id=proposal.id,
        actor=w.reviewers[0],
        scores=SCORES,
        comment="late",
    )
    assert error.extra["current_status"] == "rejected"


def test_a_decision_needs_the_minimum_reviews(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w, reviewers=1)
    error = refused(
        any_session,
        NotEnoughReviews,
        award_proposal,
        proposal_id=proposal.id,
        actor=w.fay,
        key="k",
        amounts=proposal.requested,
        starts_at=proposal.starts_at,
        ends_at=proposal.ends_at,
    )
    assert (error.extra["completed"], error.extra["required"]) == (1, 2)


def test_an_override_reason_decides_with_fewer_reviews_and_is_audited(
    any_session: Session, w: World
) -> None:
    proposal = submitted(any_session, w)
    rejected = reject_proposal(
        any_session, proposal_id=proposal.id, actor=w.fay, override_reason="out of scope"
    )
    assert rejected.status is ProposalStatus.REJECTED
    assert rejected.override_reason == "out of scope"
    data = event_data(any_session, "proposal", proposal.id, "proposal.rejected")
    assert data["override_reason"] == "out of scope"
    assert data["reviews"] == 0


def test_an_award_needs_the_minimum_mean_score(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w, score=2)
    error = refused(
        any_session,
        ScoreBelowMinimum,
        award_proposal,
        proposal_id=proposal.id,
        actor=w.fay,
        key="k",
        amounts=proposal.requested,
        starts_at=proposal.starts_at,
        ends_at=proposal.ends_at,
    )
    assert error.extra == {"mean_score": 200, "min_mean_score": 350}


def test_the_summary_is_for_deciders(any_session: Session, w: World) -> None:
    proposal = reviewed(any_session, w)
    for actor in (w.pia, w.otto, w.reviewers[0]):
        with pytest.raises(ProposalForbidden):
            get_review_summary(any_session, proposal_id=proposal.id, actor=actor)
    other = person(any_session, "rev-x@uni.example", Role.REVIEWER)
    with pytest.raises(ProposalNotFound):
        get_proposal_for_actor(any_session, other, proposal.id)


def test_a_reviewer_on_the_applying_project_is_conflicted(any_session: Session, w: World) -> None:
    both = person(any_session, "both@uni.example", Role.RESEARCHER, Role.REVIEWER)
    add_member(any_session, project_id=w.project_id, user_id=uid(both), role="member", actor=w.pia)
    proposal = submitted(any_session, w)
    refused(
        any_session,
        ReviewerConflicted,
        assign_reviewer,
        proposal_id=proposal.id,
        reviewer_user_id=uid(both),
        actor=w.fay,
    )
