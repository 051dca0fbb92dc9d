"""No one joins a project while they assess one of its proposals that is not decided yet.

A review by a member of the applying project does not count, and a member may not
decide the project's proposals (``require_impartial``). Without this rule a PI could
add a harsh reviewer as a plain member to strike their review from the mean, or add
a strict program owner to take the decision from them. The refusal is a 409
``assesses-project-proposal`` that changes nothing; once the proposal is decided or
withdrawn the person may join.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from api_world import World as ApiWorld
from api_world import build_world, world_executor
from flask import Flask
from grants_helpers import uid
from proposal_helpers import CREDIT, World, full_state, refused, reviewed, submitted, world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, text_of

from credits.app import create_app
from credits.db import utcnow
from credits.grants.awards import award_proposal, reject_proposal
from credits.grants.errors import AssessesProjectProposal, ScoreBelowMinimum
from credits.grants.members import add_member_by_email
from credits.grants.models import ProjectMember
from credits.grants.projects import add_member
from credits.grants.proposal_queries import counted_reviews
from credits.grants.proposals import withdraw_proposal
from credits.grants.reviews import assign_reviewer, declare_conflict, submit_review
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, grant_role
from credits.settings import load_settings

SLUG = "assesses-project-proposal"


def _researcher_too(session: Session, w: World, actor: Actor) -> Actor:
    """The actor also holds the researcher role, as most academics do."""
    grant_role(session, email=actor.email or "", role=Role.RESEARCHER, actor=w.ops)
    return actor_for_email(session, actor.email or "")


def _scored(session: Session, w: World, proposal_id: int, reviewer: Actor, score: int) -> None:
    assign_reviewer(session, proposal_id=proposal_id, reviewer_user_id=uid(reviewer), actor=w.fay)
    submit_review(
        session,
        proposal_id=proposal_id,
        actor=reviewer,
        scores={"merit": score, "fit": score},
        comment="My view.",
    )


def _award(session: Session, w: World, proposal_id: int, key: str) -> Any:
    return award_proposal(
        session,
        proposal_id=proposal_id,
        actor=w.fay,
        key=key,
        amounts={"gpu": 100 * CREDIT},
        starts_at=utcnow(),
        ends_at=utcnow() + timedelta(days=90),
    )


# The service.


@pytest.mark.parametrize("adder", ["pia", "mia", "ops"])
def test_a_reviewer_of_a_proposal_in_review_cannot_join_its_project(
    any_session: Session, adder: str
) -> None:
    session = any_session
    w = world(session)
    proposal = submitted(session, w)
    harsh, kind = w.reviewers[:2]
    _scored(session, w, proposal.id, harsh, 1)
    _scored(session, w, proposal.id, kind, 5)
    _researcher_too(session, w, harsh)

    error = refused(
        session,
        AssessesProjectProposal,
        add_member,
        project_id=w.project_id,
        user_id=uid(harsh),
        role="member",
        actor=getattr(w, adder),
    )
    assert error.extra == {"proposal_ids": [proposal.id], "user_id": uid(harsh)}
    assert str(error) == (
        f"user {uid(harsh)} reviews or decides proposal {proposal.id} of project "
        f"{w.project_id}, not decided yet, and no one may assess a proposal of their own "
        "project: add them once it is decided or withdrawn"
    )
    # The harsh review still counts, so the mean (3.00) still refuses an award.
    assert len(counted_reviews(session, proposal.id)) == 2
    refused(session, ScoreBelowMinimum, _award, w=w, proposal_id=proposal.id, key="k")


def test_an_assigned_reviewer_who_has_not_scored_yet_cannot_join(any_session: Session) -> None:
    session = any_session
    w = world(session)
    proposal = submitted(session, w)
    reviewer = w.reviewers[0]
    assign_reviewer(session, proposal_id=proposal.id, reviewer_user_id=uid(reviewer), actor=w.fay)
    reviewer = _researcher_too(session, w, reviewer)
    refused(
        session,
        AssessesProjectProposal,
        add_member,
        project_id=w.project_id,
        user_id=uid(reviewer),
        role="manager",
        actor=w.pia,
    )
    # Still off the project, so their review, once sent, counts.
    submit_review(
        session,
        proposal_id=proposal.id,
        actor=reviewer,
        scores={"merit": 4, "fit": 4},
        comment="Still impartial.",
    )
    assert [r.reviewer_user_id for r in counted_reviews(session, proposal.id)] == [uid(reviewer)]


@pytest.mark.parametrize("who", ["fay", "ops"])
def test_a_decider_of_a_proposal_under_assessment_cannot_join_its_project(
    any_session: Session, who: str
) -> None:
    session = any_session
    w = world(session)
    proposal = reviewed(session, w)
    decider = _researcher_too(session, w, getattr(w, who))
    error = refused(
        session,
        AssessesProjectProposal,
        add_member,
        project_id=w.project_id,
        user_id=uid(decider),
        role="member",
        actor=w.pia,
    )
    assert error.extra["proposal_ids"] == [proposal.id]
    # Still off the project, so still able to decide.
    assert award_proposal(
        session,
        proposal_id=proposal.id,
        actor=decider,
        key="still-impartial",
        amounts=proposal.requested,
        starts_at=proposal.starts_at,
        ends_at=proposal.ends_at,
    ).allocations


def test_a_funder_who_decides_nothing_of_the_project_joins(any_session: Session) -> None:
    session = any_session
    w = world(session)
    reviewed(session, w)
    otto = _researcher_too(session, w, w.otto)  # a funder, but not an owner of the program
    project = add_member(
        session, project_id=w.project_id, user_id=uid(otto), role="member", actor=w.pia
    )
    assert uid(otto) in {m.user_id for m in project.members}


def test_a_reviewer_who_declared_a_conflict_joins(any_session: Session) -> None:
    session = any_session
    w = world(session)
    proposal = reviewed(session, w, reviewers=1)
    colleague = w.reviewers[1]
    assign_reviewer(session, proposal_id=proposal.id, reviewer_user_id=uid(colleague), actor=w.fay)
    declare_conflict(session, proposal_id=proposal.id, actor=colleague, reason="my colleague")
    colleague = _researcher_too(session, w, colleague)
    add_member(session, project_id=w.project_id, user_id=uid(colleague), role="member", actor=w.pia)
    assert [r.reviewer_user_id for r in counted_reviews(session, proposal.id)] == [
        uid(w.reviewers[0])
    ]


@pytest.mark.parametrize("outcome", ["awarded", "rejected", "withdrawn"])
def test_once_the_proposal_is_decided_its_reviewers_and_deciders_may_join(
    any_session: Session, outcome: str
) -> None:
    session = any_session
    w = world(session)
    proposal = reviewed(session, w)
    reviewer = _researcher_too(session, w, w.reviewers[0])
    fay = _researcher_too(session, w, w.fay)
    if outcome == "awarded":
        _award(session, w, proposal.id, "decided")
    elif outcome == "rejected":
        reject_proposal(session, proposal_id=proposal.id, actor=w.fay, reason="Out of scope.")
    else:
        withdraw_proposal(session, proposal_id=proposal.id, actor=w.pia)
    for person in (reviewer, fay):
        add_member(
            session, project_id=w.project_id, user_id=uid(person), role="member", actor=w.pia
        )
    members = session.scalars(
        select(ProjectMember.user_id).where(ProjectMember.project_id == w.project_id)
    )
    assert {uid(reviewer), uid(fay)} <= set(members)


def test_the_refusal_names_each_proposal_under_assessment_and_no_decided_one(
    any_session: Session,
) -> None:
    session = any_session
    w = world(session)
    decided = reviewed(session, w)
    _award(session, w, decided.id, "first")
    first, second = reviewed(session, w), submitted(session, w)
    fay = _researcher_too(session, w, w.fay)
    error = refused(
        session,
        AssessesProjectProposal,
        add_member,
        project_id=w.project_id,
        user_id=uid(fay),
        role="member",
        actor=w.pia,
    )
    assert error.extra["proposal_ids"] == [first.id, second.id]
    assert f"proposals {first.id} and {second.id} of project" in str(error)
    assert str(error).endswith("add them once they are decided or withdrawn")


def test_adding_by_email_names_the_address_and_not_the_user_id(any_session: Session) -> None:
    session = any_session
    w = world(session)
    proposal = reviewed(session, w, reviewers=1)
    reviewer = _researcher_too(session, w, w.reviewers[0])
    error = refused(
        session,
        AssessesProjectProposal,
        add_member_by_email,
        project_id=w.project_id,
        email=" REV0@uni.example ",
        role="member",
        actor=w.pia,
    )
    assert error.extra == {"proposal_ids": [proposal.id], "field": "email"}
    assert str(error).startswith(f"rev0@uni.example reviews or decides proposal {proposal.id}")
    assert f"user {uid(reviewer)}" not in str(error)


# The API.


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _researcher(session: Session, world: ApiWorld, persona: str) -> int:
    grant_role(
        session, email=f"{persona}@example.org", role=Role.RESEARCHER, actor=Actor.system("t")
    )
    session.flush()
    return world.user_ids[persona]


def _members(session: Session, project_id: int) -> set[int]:
    session.expire_all()
    rows = session.scalars(
        select(ProjectMember.user_id).where(ProjectMember.project_id == project_id)
    )
    return set(rows)


def test_the_api_refuses_a_harsh_reviewer_and_the_award_stays_refused(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    owner = actor_for_email(session, "funder_p@example.org")
    harsh = actor_for_email(session, "reviewer@example.org")
    pid = world.proposal_in_review
    submit_review(session, proposal_id=pid, actor=harsh, scores={"merit": 1, "fit": 1}, comment="x")
    spare = actor_for_email(session, "reviewer_spare@example.org")
    assign_reviewer(session, proposal_id=pid, reviewer_user_id=uid(spare), actor=owner)
    submit_review(session, proposal_id=pid, actor=spare, scores={"merit": 5, "fit": 5}, comment="y")
    _researcher(session, world, "reviewer")
    client = app.test_client()
    pi, funder = world.headers["researcher_a"], world.headers["funder_p"]
    before_members, before = _members(session, world.project_a), full_state(session)

    for body in ({"user_id": uid(harsh)}, {"email": "reviewer@example.org"}):
        response = client.post(
            f"/api/v1/projects/{world.project_a}/members",
            json=body | {"role": "member"},
            headers=pi,
        )
        assert response.status_code == 409
        problem = response.get_json()
        assert problem["type"].endswith(f"/{SLUG}")
        assert problem["proposal_ids"] == [pid]
        assert "add them once it is decided or withdrawn" in problem["detail"]
    assert _members(session, world.project_a) == before_members
    assert full_state(session) == before

    summary = client.get(f"/api/v1/proposals/{pid}/reviews", headers=funder).get_json()
    assert (len(summary["reviews"]), summary["mean_score"]) == (2, 300)
    award = {
        "amounts": {"gpu": 1_000_000},
        "starts_at": (utcnow() + timedelta(days=1)).isoformat(),
        "ends_at": (utcnow() + timedelta(days=60)).isoformat(),
    }
    response = client.post(
        f"/api/v1/proposals/{pid}/award", json=award, headers=funder | {"Idempotency-Key": "k"}
    )
    assert response.status_code == 409
    assert response.get_json()["type"].endswith("/score-below-minimum")


def test_the_api_refuses_an_owner_and_admits_them_once_decided(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    owner_id = _researcher(session, world, "funder_p")
    conflicted_id = _researcher(session, world, "conflicted_reviewer")
    client = app.test_client()
    pi = world.headers["researcher_a"]
    url = f"/api/v1/projects/{world.project_a}/members"

    refused_owner = client.post(url, json={"user_id": owner_id, "role": "member"}, headers=pi)
    assert refused_owner.status_code == 409
    assert refused_owner.get_json()["type"].endswith(f"/{SLUG}")
    assert owner_id not in _members(session, world.project_a)
    # A reviewer who declared a conflict takes no part any more.
    joined = client.post(url, json={"user_id": conflicted_id, "role": "member"}, headers=pi)
    assert joined.status_code == 201

    reject_proposal(
        session,
        proposal_id=world.proposal_in_review,
        actor=actor_for_email(session, "funder_p@example.org"),
        reason="Out of scope.",
        override_reason="one review is enough to see it",
    )
    session.flush()
    added = client.post(url, json={"user_id": owner_id, "role": "member"}, headers=pi)
    assert added.status_code == 201
    assert owner_id in _members(session, world.project_a)


# The portal's members page.


def test_the_members_form_shows_the_refusal_at_the_email_field(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    _researcher(session, world, "reviewer")
    before = _members(session, world.project_a)
    response = client_for(app, world, "researcher_a").post(
        f"/projects/{world.project_a}/members",
        data={"csrf_token": CSRF, "email": "reviewer@example.org", "role": "member"},
    )
    assert response.status_code == 409
    page = text_of(response.get_data(as_text=True))
    assert (
        f"reviewer@example.org reviews or decides proposal {world.proposal_in_review} of project"
        in page
    )
    assert "add them once it is decided or withdrawn" in page
    assert 'aria-invalid="true"' in response.get_data(as_text=True)
    assert _members(session, world.project_a) == before
