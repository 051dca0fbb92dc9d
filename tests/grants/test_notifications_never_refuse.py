"""A notification never refuses the action it reports (issue 12, finding 10): any title a
proposal may have gives a one-line subject of at most 150 characters, and a builder that
fails is logged and dropped while the action commits."""

from __future__ import annotations

import logging
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from proposal_helpers import submitted, world
from sqlalchemy import text
from sqlalchemy.orm import Session

from credits.grants.models import ProposalStatus
from credits.notifications import events
from credits.notifications.service import (
    SUBJECT_MAX_LENGTH,
    enqueue_notification,
    list_notifications,
    subject_line,
)


def _subjects(session: Session, kind: str) -> list[str]:
    return [n.subject for n in list_notifications(session) if n.kind == kind]


def test_a_300_character_title_is_submitted_with_a_shortened_subject(session: Session) -> None:
    w = world(session)
    title = "Climate " + "x" * 292
    proposal = submitted(session, w, title=title)
    assert proposal.status is ProposalStatus.SUBMITTED
    [subject] = _subjects(session, "proposal_submitted")
    assert len(subject) == SUBJECT_MAX_LENGTH
    assert subject.startswith("New proposal in ") and subject.endswith("\u2026")


def test_a_title_with_line_breaks_is_submitted_with_a_one_line_subject(
    session: Session,
) -> None:
    w = world(session)
    proposal = submitted(session, w, title="Line one\r\nBcc: everyone@example.org\tend")
    assert proposal.status is ProposalStatus.SUBMITTED
    [subject] = _subjects(session, "proposal_submitted")
    assert subject.endswith(": Line one Bcc: everyone@example.org end")


def test_a_failing_builder_is_logged_and_the_action_commits(
    session: Session, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    w = world(session)

    def broken(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(events, "enqueue_notification", broken)
    with caplog.at_level(logging.ERROR, logger="credits.notifications.events"):
        proposal = submitted(session, w)
    assert proposal.status is ProposalStatus.SUBMITTED
    assert "notify_proposal_submitted failed" in caplog.text
    assert _subjects(session, "proposal_submitted") == []


def test_a_database_error_in_a_builder_undoes_only_the_notification(
    any_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world(any_session)

    def half_written(session: Session, **values: Any) -> int | None:
        created = enqueue_notification(session, **values)
        session.execute(text("SELECT * FROM no_such_table"))  # fails; on PostgreSQL it
        return created  # would abort the whole transaction without the savepoint

    monkeypatch.setattr(events, "enqueue_notification", half_written)
    proposal = submitted(any_session, w)
    any_session.flush()
    assert proposal.status is ProposalStatus.SUBMITTED
    assert _subjects(any_session, "proposal_submitted") == []


@given(st.text(max_size=400))
def test_a_subject_is_one_short_line_whatever_the_text(raw: str) -> None:
    subject = subject_line(raw)
    assert 0 < len(subject) <= SUBJECT_MAX_LENGTH
    assert subject == subject.strip()
    assert not any(unicodedata.category(c) in {"Cc", "Zl", "Zp", "Cs"} for c in subject)
    assert "  " not in subject
    assert subject_line(subject) == subject


def test_a_short_clean_subject_is_kept_as_it_is() -> None:
    assert subject_line("Proposal awarded: Ice sheets") == "Proposal awarded: Ice sheets"
    assert subject_line("   ") == "(no subject)"
    assert subject_line("a\u2028b\x00c") == "a b c"
