"""The grants lifecycle writes its e-mails to the outbox in the same transaction."""

from __future__ import annotations

from proposal_helpers import awarded, reviewed, submitted, world
from sqlalchemy.orm import Session

from credits.notifications.service import list_notifications


def sent_to(session: Session, kind: str) -> list[str]:
    return sorted(n.recipient_email for n in list_notifications(session) if n.kind == kind)


def test_submitting_a_proposal_tells_the_programs_owners(session: Session) -> None:
    w = world(session)
    submitted(session, w)
    assert sent_to(session, "proposal_submitted") == ["fay@funder.example"]


def test_assigning_reviewers_tells_each_reviewer(session: Session) -> None:
    w = world(session)
    reviewed(session, w, reviewers=2)
    assert sent_to(session, "reviewer_assigned") == ["rev0@uni.example", "rev1@uni.example"]


def test_an_award_tells_the_pi(session: Session) -> None:
    w = world(session)
    awarded(session, w)
    assert sent_to(session, "decision") == ["pia@uni.example"]


def test_nothing_is_queued_when_the_transaction_rolls_back(session: Session) -> None:
    w = world(session)
    savepoint = session.begin_nested()
    submitted(session, w)
    savepoint.rollback()
    assert sent_to(session, "proposal_submitted") == []
