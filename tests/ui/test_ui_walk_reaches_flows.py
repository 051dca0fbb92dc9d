"""The readable-amounts walk (tests/ui/test_ui_readable_amounts.py) reaches the
researcher and funder flows' pages by their links: members, account, open calls,
a proposal's outcome with its reviews, and a draft program's edit form."""

from __future__ import annotations

import re
from datetime import timedelta

import test_ui_readable_amounts as walk
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.grants import programs
from credits.grants.models import Proposal, ProposalStatus

# The walk's app: the demo after some use (the readable-amounts test's fixture).
app = walk.app


def _draft_program(session: Session) -> None:
    """A draft call of the demo funder's, so that the walk meets an edit form."""
    now = utcnow()
    programs.create_program(
        session,
        actor=walk._actor(session, "funder"),
        name="Next year's call",
        description="A draft.",
        opens_at=now + timedelta(days=30),
        closes_at=now + timedelta(days=90),
        criteria=[{"key": "merit", "label": "Merit"}],
        min_reviewers=1,
        min_mean_score=300,
    )
    session.flush()


def _walked(app: Flask, session: Session, role: str, *patterns: str) -> dict[str, str]:
    pages = walk._walk(walk._client(app, session, role))
    for pattern in patterns:
        assert any(re.fullmatch(pattern, path) for path in pages), (pattern, sorted(pages))
    return pages


def test_the_walk_reaches_the_researchers_new_pages_and_they_read_well(
    app: Flask, session: Session
) -> None:
    awarded = session.scalars(
        select(Proposal.id).where(Proposal.status == ProposalStatus.AWARDED.value)
    ).all()
    assert awarded
    pages = _walked(
        app,
        session,
        "researcher",
        r"/projects/\d+/members",
        r"/account",
        r"/calls",
        r"/programs/\d+/apply\?kind=supplement",
        *(f"/applications/{proposal_id}" for proposal_id in awarded),
    )
    outcome = [body for path, body in pages.items() if "Reviewer 1" in body]
    assert outcome, "no proposal page showed a review"
    problems = [
        p
        for path, body in pages.items()
        for p in walk._problems(path, body, csv=path.endswith(".csv"))
    ]
    assert not problems, "\n".join(problems)


def test_the_walk_reaches_a_draft_programs_edit_form(app: Flask, session: Session) -> None:
    _draft_program(session)
    pages = _walked(app, session, "funder", r"/funder/programs/\d+/edit", r"/account")
    problems = [
        p
        for path, body in pages.items()
        for p in walk._problems(path, body, csv=path.endswith(".csv"))
    ]
    assert not problems, "\n".join(problems)
