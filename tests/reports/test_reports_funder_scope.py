"""A funder reads a project's report over their own programs' part alone (issue 12,
finding 12): a funder who awarded a project once must not see the project's
allocations from other programs, the jobs that spent them, or what was granted
outside any program; the project's members and ops still see the whole project."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from api_world import (
    FUNDER_P,
    FUNDER_Q,
    OPS,
    RESEARCHER_A,
    World,
    build_world,
    program_body,
    world_executor,
)
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.grants import awards, funding, programs, proposals
from credits.grants.models import Allocation
from credits.identity.service import actor_for_email
from credits.settings import load_settings


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _award_from_q(session: Session, world: World) -> None:
    """Program Q, funder Q's, opens, is funded and awards project A too."""
    owner = actor_for_email(session, f"{FUNDER_Q}@example.org")
    pi = actor_for_email(session, f"{RESEARCHER_A}@example.org")
    body = program_body(name="Q2")
    q = programs.create_program(session, actor=owner, **body)
    programs.open_program(session, program_id=q.id, actor=owner)
    funding.fund_program(
        session,
        program_id=q.id,
        currency="gpu",
        amount_micro=50_000_000,
        key="scope-q",
        actor=owner,
        reason="FY27",
    )
    proposal = proposals.create_proposal(
        session,
        program_id=q.id,
        project_id=world.project_a,
        kind="new",
        actor=pi,
        title="More ice",
        abstract="a",
        justification="b",
        requested={"gpu": 3_000_000},
        starts_at=utcnow() + timedelta(days=1),
        ends_at=utcnow() + timedelta(days=60),
    )
    proposals.submit_proposal(session, proposal_id=proposal.id, actor=pi)
    awards.award_proposal(
        session,
        proposal_id=proposal.id,
        actor=owner,
        key="scope-award-q",
        amounts={"gpu": 3_000_000},
        starts_at=utcnow(),
        ends_at=utcnow() + timedelta(days=60),
        override_reason="test",
    )
    session.flush()


def _accounts_by_program(session: Session) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for program_id, account_id in session.execute(
        select(Allocation.program_id, Allocation.account_id)
    ):
        found.setdefault(program_id, set()).add(account_id)
    return found


def _report(app: Flask, world: World, persona: str) -> dict[str, Any]:
    response = app.test_client().get(
        f"/api/v1/projects/{world.project_a}/report", headers=world.headers[persona]
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_a_funder_sees_only_their_own_programs_allocations_of_a_project(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    _award_from_q(session, world)
    by_program = _accounts_by_program(session)
    from_p = by_program.pop(world.program_p)
    (from_q,) = by_program.values()

    seen = {
        persona: {line["account_id"] for line in _report(app, world, persona)["allocations"]}
        for persona in (FUNDER_P, FUNDER_Q, RESEARCHER_A, OPS)
    }

    assert seen[FUNDER_P] == from_p
    assert seen[FUNDER_Q] == from_q
    whole = from_p | from_q | {world.account_a}
    assert seen[RESEARCHER_A] == seen[OPS] == whole


def test_a_funder_sees_no_job_that_spent_other_money(app: Flask, session: Session) -> None:
    world = build_world(session)

    funder = _report(app, world, FUNDER_P)
    member = _report(app, world, RESEARCHER_A)

    # Job A's hold drew on account A (the soonest to expire), funded outside program P.
    assert [job["job_id"] for job in member["jobs"]] == [world.job_a]
    assert funder["jobs"] == []
    assert {b["currency"]: b["held"] for b in funder["balances"]} == {"gpu": 0}


def test_the_portal_csv_of_a_project_is_scoped_for_a_funder(app: Flask, session: Session) -> None:
    world = build_world(session)
    _award_from_q(session, world)
    from_p = _accounts_by_program(session)[world.program_p]
    client = app.test_client()
    sign_in_as(client, world.user_ids[FUNDER_P])

    response = client.get(f"/projects/{world.project_a}/report.csv")

    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {int(row["account_id"]) for row in rows if row["account_id"]} == from_p
