"""The grants services behind the researcher's new portal pages, called directly:
applicants' reviews carry no reviewer, adding by e-mail checks the caller first,
open calls are those in their window, and a progress report stays on its tranche."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_world import World, build_world
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants import awards, programs, reviews
from credits.grants.errors import NotAResearcher, ProjectForbidden, ProposalForbidden
from credits.grants.feedback import ApplicantReview, applicant_feedback
from credits.grants.members import add_member_by_email
from credits.grants.open_calls import list_open_calls
from credits.grants.progress import submit_progress_report
from credits.identity.actor import Actor
from credits.identity.service import actor_for_email


def _as(session: Session, persona: str) -> Actor:
    return actor_for_email(session, f"{persona}@example.org")


def _decide(session: Session, world: World) -> None:
    reviews.submit_review(
        session,
        proposal_id=world.proposal_in_review,
        actor=_as(session, "reviewer"),
        scores={"merit": 4, "fit": 5},
        comment="Clear plan.",
    )
    awards.reject_proposal(
        session,
        proposal_id=world.proposal_in_review,
        actor=_as(session, "funder_p"),
        reason="Out of budget this round.",
        override_reason="one review suffices",
    )


def test_applicants_read_reviews_only_after_the_decision_and_never_who_wrote_them(
    session: Session,
) -> None:
    world = build_world(session)
    pi = _as(session, "researcher_a")
    assert applicant_feedback(session, proposal_id=world.proposal_in_review, actor=pi) is None
    _decide(session, world)
    feedback = applicant_feedback(session, proposal_id=world.proposal_in_review, actor=pi)
    assert feedback is not None
    assert not any("reviewer" in name or "user" in name for name in ApplicantReview.model_fields)
    assert "reviewer@example.org" not in feedback.model_dump_json()
    assert [(r.number, r.mean_score, r.comment) for r in feedback.reviews] == [
        (1, 450, "Clear plan.")
    ]
    assert [(s.label, s.score) for s in feedback.reviews[0].scores] == [
        ("Scientific merit", 4),
        ("Fit", 5),
    ]


def test_a_researcher_off_the_project_reads_no_applicant_reviews(session: Session) -> None:
    world = build_world(session)
    _decide(session, world)
    with pytest.raises(ProposalForbidden):
        applicant_feedback(
            session, proposal_id=world.proposal_in_review, actor=_as(session, "researcher_b")
        )


def _add(session: Session, world: World, email: str, persona: str) -> None:
    add_member_by_email(
        session, project_id=world.project_a, email=email, role="member", actor=_as(session, persona)
    )


def test_adding_by_email_checks_the_callers_right_before_the_address(session: Session) -> None:
    world = build_world(session)
    with pytest.raises(ProjectForbidden):
        _add(session, world, "nobody@example.org", "researcher_b")
    with pytest.raises(NotAResearcher) as unknown:
        _add(session, world, "nobody@example.org", "researcher_a")
    with pytest.raises(NotAResearcher) as funder:
        _add(session, world, "funder_q@example.org", "researcher_a")
    assert str(unknown.value).replace("nobody", "X") == str(funder.value).replace("funder_q", "X")


def test_open_calls_are_open_programs_within_their_window(session: Session) -> None:
    world = build_world(session)
    now = utcnow()
    assert [call.id for call in list_open_calls(session, now=now)] == [world.program_p]
    assert list_open_calls(session, now=now + timedelta(days=31)) == []
    programs.close_program(session, program_id=world.program_p, actor=_as(session, "funder_p"))
    assert list_open_calls(session, now=now) == []


def test_a_progress_report_can_be_rewritten_until_the_release(session: Session) -> None:
    world = build_world(session)
    pi = _as(session, "researcher_a")
    first = submit_progress_report(session, tranche_id=world.tranche, actor=pi, report="One.")
    second = submit_progress_report(session, tranche_id=world.tranche, actor=pi, report=" Two. ")
    assert (first.progress_report, second.progress_report) == ("One.", "Two.")
    assert second.status.value == "pending"
