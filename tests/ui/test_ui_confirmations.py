"""Changes that cannot be undone ask first: the first POST restates the effect and
changes nothing; only the confirmation (the same form with confirm=yes) acts.

Declaring a conflict, cancelling a job, suspending a project, closing a program
and awarding; a refusal is still shown at the first POST, before any question.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from api_world import (
    FUNDER_P,
    OPS,
    RESEARCHER_A,
    RESEARCHER_B,
    REVIEWER,
    World,
    build_world,
    world_executor,
)
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.grants.models import Program, Project, Proposal, ReviewAssignment
from credits.jobs.models import Job
from credits.settings import load_settings

CSRF = "confirm-csrf"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _client(app: Flask, world: World, persona: str) -> FlaskClient:
    client = app.test_client()
    sign_in_as(client, world.user_ids[persona], csrf_token=CSRF)
    return client


def _ask_then_confirm(
    client: FlaskClient, url: str, form: dict[str, str], *, effect: str, button: str
) -> Any:
    """POSTs once (asserting the question and its form), returns the confirming POST."""
    asked = client.post(url, data={"csrf_token": CSRF} | form)
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200, page[:400]
    assert 'data-testid="confirm-page"' in page
    assert f"You are about to {effect}" in page
    assert f'<form method="post" action="{url}"' in page
    assert '<input type="hidden" name="confirm" value="yes">' in page
    assert f'<button type="submit" class="danger">{button}</button>' in page
    for name, value in form.items():
        assert f'<input type="hidden" name="{name}" value="{value}">' in page
    return lambda: client.post(url, data={"csrf_token": CSRF, "confirm": "yes"} | form)


def _status(session: Session, model: type[Any], key: int) -> str:
    session.expire_all()
    return str(session.get_one(model, key).status)


def test_suspending_a_project_asks_first_and_the_confirmation_suspends(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    title = session.get_one(Project, world.project_a).title
    confirm = _ask_then_confirm(
        _client(app, world, OPS),
        f"/ops/projects/{world.project_a}/suspend",
        {"reason": "unpaid invoice"},
        effect=f"suspend project {world.project_a}, {title}. Its allocations freeze",
        button="Suspend the project",
    )
    assert _status(session, Project, world.project_a) == "active"
    assert confirm().status_code == 302
    assert _status(session, Project, world.project_a) == "suspended"


def test_a_suspension_without_a_reason_is_refused_before_any_question(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    response = _client(app, world, OPS).post(
        f"/ops/projects/{world.project_a}/suspend", data={"csrf_token": CSRF, "reason": " "}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "confirm-page" not in page and "needs a reason" in page
    assert _status(session, Project, world.project_a) == "active"


def test_cancelling_a_job_asks_first_and_the_confirmation_cancels(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    name = session.get_one(Job, world.job_a).name
    confirm = _ask_then_confirm(
        _client(app, world, RESEARCHER_A),
        f"/jobs/{world.job_a}/cancel",
        {},
        effect=f"cancel job {world.job_a}, {name}, before it starts. Its hold of",
        button="Cancel the job",
    )
    assert session.get_one(Job, world.job_a).state == "queued"
    assert confirm().status_code == 302
    session.expire_all()
    assert session.get_one(Job, world.job_a).state == "cancelled"


def test_another_researchers_job_cancel_is_not_found_before_any_question(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    response = _client(app, world, RESEARCHER_B).post(
        f"/jobs/{world.job_a}/cancel", data={"csrf_token": CSRF}
    )
    assert response.status_code == 404
    assert "confirm-page" not in response.get_data(as_text=True)


def test_declaring_a_conflict_asks_first_and_the_confirmation_declares(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    proposal = world.proposal_in_review
    confirm = _ask_then_confirm(
        _client(app, world, REVIEWER),
        f"/reviews/{proposal}/conflict",
        {"reason": "a co-author"},
        effect=f"declare a conflict of interest with proposal {proposal},",
        button="Declare the conflict",
    )

    def declared() -> bool:
        session.expire_all()
        assignment = session.scalars(
            select(ReviewAssignment).where(
                ReviewAssignment.proposal_id == proposal,
                ReviewAssignment.reviewer_user_id == world.user_ids[REVIEWER],
            )
        ).one()
        return assignment.conflict_declared_at is not None

    assert not declared()
    assert confirm().status_code == 302
    assert declared()


def test_closing_a_program_asks_first_and_the_confirmation_closes(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    program = world.program_p
    name = session.get_one(Program, program).name
    confirm = _ask_then_confirm(
        _client(app, world, FUNDER_P),
        f"/funder/programs/{program}/close",
        {},
        effect=f"close program {program}, {name}, to new proposals now.",
        button="Close the program",
    )
    assert _status(session, Program, program) == "open"
    assert confirm().status_code == 302
    assert _status(session, Program, program) == "closed"


def test_awarding_asks_first_and_the_confirmation_awards_once(app: Flask, session: Session) -> None:
    world = build_world(session)
    proposal = world.proposal_in_review
    today = utcnow().date()
    form = {
        "amount_gpu": "1.5",
        "starts_at": today.isoformat(),
        "ends_at": (today + timedelta(days=30)).isoformat(),
        "override_reason": "urgent",
        "key": "award-once",
    }
    confirm = _ask_then_confirm(
        _client(app, world, FUNDER_P),
        f"/funder/proposals/{proposal}/award",
        form,
        effect=f"award 1.50 GPU credits to proposal {proposal},",
        button="Award",
    )
    assert _status(session, Proposal, proposal) == "in_review"
    assert confirm().status_code == 302
    assert _status(session, Proposal, proposal) == "awarded"
    assert confirm().status_code == 302  # a second confirmation replays the same award
