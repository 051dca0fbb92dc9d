"""The home page and the dashboards read a fixed number of statements whatever the
number of projects, and the home page's figures are the full reports' figures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.demo import DOMAIN, seed_demo
from credits.grants import awards, funding, projects, proposals, reviews
from credits.grants.models import Program, Project, Proposal
from credits.identity.actor import Actor
from credits.identity.models import User
from credits.identity.service import actor_for
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.ledger.holds import place_hold
from credits.ledger.models import Currency
from credits.ledger.settle import capture
from credits.reports.service import project_report
from credits.reports.summary import project_summaries
from credits.settings import load_settings

FLAVOUR = "demo-gpu"
MICRO = 1_000_000
PAGES = {
    "researcher": ["/"],
    "funder": [
        "/funder/programs",
        "/funder/programs/{program}/dashboard",
        "/funder/programs/{program}",
    ],
    "ops": ["/ops/projects", "/ops/adjustments", "/ops/pool"],
}


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session], session: Session) -> Flask:
    executor = SimulatedExecutor([NodeCapacity(name="n0", flavour=FLAVOUR, gpus=4)], clock=utcnow)
    seed_demo(session, flavour=FLAVOUR, gpus_per_node=4)
    return create_app(load_settings(), session_factory=joined_session_factory, executor=executor)


def _actor(session: Session, role: str) -> Actor:
    user = session.scalars(select(User).where(User.email == f"demo-{role}@{DOMAIN}")).one()
    return actor_for(user)


def _program_id(session: Session) -> int:
    return session.scalars(select(Program.id)).one()


def _reviewed_proposal(
    session: Session, title: str, ends_at: datetime, scores: dict[str, int]
) -> tuple[int, int]:
    """A new project of the demo researcher whose submitted proposal (ten credits)
    has one review: (project id, proposal id)."""
    pi, funder, reviewer = (_actor(session, role) for role in ("researcher", "funder", "reviewer"))
    assert reviewer.user_id is not None
    project = projects.create_project(session, title=title, field_of_science="Physics", actor=pi)
    now = utcnow()
    proposal = proposals.create_proposal(
        session,
        program_id=_program_id(session),
        project_id=project.id,
        kind="new",
        actor=pi,
        title=f"Proposal for {title}",
        abstract="Counting queries.",
        justification="Ten credits.",
        requested={"gpu": 10 * MICRO},
        starts_at=now,
        ends_at=ends_at,
    )
    proposals.submit_proposal(session, proposal_id=proposal.id, actor=pi, now=now)
    reviews.assign_reviewer(
        session, proposal_id=proposal.id, reviewer_user_id=reviewer.user_id, actor=funder
    )
    reviews.submit_review(
        session, proposal_id=proposal.id, actor=reviewer, scores=scores, comment="Fine."
    )
    return project.id, proposal.id


def _add_projects(session: Session, count: int, start: int) -> None:
    """``count`` more awarded projects of the demo researcher, each with a capture."""
    pi, funder = _actor(session, "researcher"), _actor(session, "funder")
    now = utcnow()
    funding.fund_program(
        session,
        program_id=_program_id(session),
        currency=Currency.GPU,
        amount_micro=count * 10 * MICRO,
        key=f"counts-fund-{start}",
        actor=funder,
        reason="query counts",
    )
    for n in range(start, start + count):
        ends_at = now + timedelta(days=20 + n % 30)
        scores = {"merit": 5, "feasibility": 5}
        project_id, proposal_id = _reviewed_proposal(session, f"Project {n}", ends_at, scores)
        awards.award_proposal(
            session,
            proposal_id=proposal_id,
            actor=funder,
            key=f"counts-award-{n}",
            amounts={"gpu": 10 * MICRO},
            starts_at=now,
            ends_at=ends_at,
            reason="counts",
            now=now,
        )
        place_hold(
            session,
            key=f"counts-hold-{n}",
            currency=Currency.GPU,
            amount=2 * MICRO,
            actor=pi,
            project_id=project_id,
        )
        capture(
            session, key=f"counts-capture-{n}", hold_key=f"counts-hold-{n}", amount=MICRO, actor=pi
        )


def _add_pending_proposals(session: Session, count: int, start: int) -> None:
    """``count`` more proposals waiting for a decision, each with one review."""
    ends_at = utcnow() + timedelta(days=30)
    for n in range(start, start + count):
        _reviewed_proposal(session, f"Pending {n}", ends_at, {"merit": 4, "feasibility": 3})


@contextmanager
def _counting(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _statements_per_page(app: Flask, session: Session, engine: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    program = _program_id(session)
    for role, pages in PAGES.items():
        client: FlaskClient = app.test_client()
        sign_in_as(client, _actor(session, role).user_id or 0)
        for page in pages:
            url = page.format(program=program)
            assert client.get(url).status_code == 200, url  # warm: caches filled
            with _counting(engine) as statements:
                assert client.get(url).status_code == 200, url
            counts[url] = len(statements)
    return counts


def test_home_page_and_dashboards_read_as_many_statements_for_200_projects_as_for_5(
    app: Flask, session: Session, sqlite_engine: Engine
) -> None:
    _add_projects(session, 5, start=0)
    _add_pending_proposals(session, 3, start=0)
    few = _statements_per_page(app, session, sqlite_engine)
    _add_projects(session, 195, start=5)
    _add_pending_proposals(session, 40, start=3)
    many = _statements_per_page(app, session, sqlite_engine)
    assert many == few


def test_the_program_pages_queue_shows_each_proposals_counted_reviews(
    app: Flask, session: Session
) -> None:
    _add_pending_proposals(session, 3, start=0)
    funder = _actor(session, "funder")
    program = _program_id(session)
    queued = session.scalars(
        select(Proposal.id).where(Proposal.program_id == program, Proposal.status == "in_review")
    ).all()
    assert queued
    bulk = reviews.review_summaries(session, program_id=program, proposal_ids=queued, actor=funder)
    for proposal_id in queued:
        one = reviews.get_review_summary(session, proposal_id=proposal_id, actor=funder)
        assert bulk[proposal_id] == one


def test_a_project_summary_has_its_full_report_figures(any_session: Session) -> None:
    session = any_session
    seed_demo(session, flavour=FLAVOUR, gpus_per_node=4)
    _add_projects(session, 3, start=0)
    titles = {p.id: p.title for p in session.scalars(select(Project))}
    now = utcnow()
    for summary in project_summaries(session, titles, now):
        report = project_report(session, summary.project_id, now)
        assert summary.balances == report.balances
        assert summary.burndown == report.burndown
        assert [a.id for a in summary.allocations] == [a.account_id for a in report.allocations]
        assert [a.available for a in summary.allocations] == [
            a.available for a in report.allocations
        ]
