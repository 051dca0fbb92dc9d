"""A funder edits a draft program: the form is filled in from the program, a good edit
is saved and logged, bad input is shown at its field and saves nothing, and a
program already open cannot be edited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_world import World, build_world
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app, text_of

from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.grants.models import Program


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def _form(**overrides: str) -> dict[str, str]:
    today = utcnow().date()
    values = {
        "csrf_token": CSRF,
        "name": "Ice and ocean",
        "description": "GPU hours for coupled models.",
        "opens_at": (today + timedelta(days=2)).isoformat(),
        "closes_at": (today + timedelta(days=40)).isoformat(),
        "criteria": "Scientific merit\nFeasibility\nData plan",
        "min_reviewers": "3",
        "min_mean_score": "3.25",
        "initial_share_percent": "40",
    }
    return values | overrides


def _stored(session: Session, program_id: int) -> tuple[object, ...]:
    session.expire_all()
    program = session.get(Program, program_id)
    assert program is not None
    return (program.name, program.description, program.closes_at, program.min_reviewers)


def _edit(app: Flask, world: World, **overrides: str):  # type: ignore[no-untyped-def]
    client = client_for(app, world, "funder_p")
    return client.post(f"/funder/programs/{world.program_p_draft}/edit", data=_form(**overrides))


def test_a_draft_links_to_its_edit_form_filled_in(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "funder_p")
    edit = f"/funder/programs/{world.program_p_draft}/edit"
    assert f'href="{edit}"' in client.get(f"/funder/programs/{world.program_p_draft}").text
    assert "/edit" not in client.get(f"/funder/programs/{world.program_p}").text
    page = client.get(edit).text
    program = session.get(Program, world.program_p_draft)
    assert program is not None
    # The world's program closes at a time of day, so that day is its last.
    last_day = program.closes_at.date().isoformat()
    assert 'value="P2"' in page
    assert f'value="{last_day}"' in page
    assert "Scientific merit\nFit</textarea>" in page
    assert 'value="3.50"' in page


def test_an_edit_is_saved_and_logged(app: Flask, session: Session) -> None:
    world = build_world(session)
    response = _edit(app, world)
    assert response.status_code == 302
    name, description, closes_at, reviewers = _stored(session, world.program_p_draft)
    assert (name, description, reviewers) == ("Ice and ocean", "GPU hours for coupled models.", 3)
    assert closes_at.date() == utcnow().date() + timedelta(days=41)  # type: ignore[attr-defined]
    program = session.get(Program, world.program_p_draft)
    assert program is not None
    assert (program.min_mean_score, program.initial_share_percent) == (325, 40)
    assert [c["label"] for c in program.criteria] == [
        "Scientific merit",
        "Feasibility",
        "Data plan",
    ]
    events = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "program.updated"))
    assert len(list(events)) == 1
    again = client_for(app, world, "funder_p").get(f"/funder/programs/{world.program_p_draft}/edit")
    assert f'value="{_form()["closes_at"]}"' in again.text  # the last open day, as typed


@pytest.mark.parametrize(
    ("overrides", "field", "message", "status"),
    [
        ({"closes_at": "soon"}, "closes_at", "enter a date as YYYY-MM-DD", 400),
        ({"min_mean_score": "7"}, "min_mean_score", "enter a score from 1.00 to 5.00", 400),
        ({"criteria": "  \n "}, "criteria", "name at least one criterion", 400),
        ({"min_reviewers": "0"}, "min_reviewers", "enter a whole number from 1", 400),
        ({"name": "   "}, "name", "", 422),
    ],
)
def test_bad_input_is_shown_at_its_field_and_saves_nothing(
    app: Flask, session: Session, overrides: dict[str, str], field: str, message: str, status: int
) -> None:
    world = build_world(session)
    before = _stored(session, world.program_p_draft)
    response = _edit(app, world, **overrides)
    assert response.status_code == status
    assert f'id="e-{field}">{message}' in response.text
    assert _stored(session, world.program_p_draft) == before


def test_a_window_that_closes_before_it_opens_is_refused(app: Flask, session: Session) -> None:
    world = build_world(session)
    before = _stored(session, world.program_p_draft)
    today = utcnow().date()
    response = _edit(
        app,
        world,
        opens_at=(today + timedelta(days=10)).isoformat(),
        closes_at=(today + timedelta(days=3)).isoformat(),
    )
    assert response.status_code == 422
    assert 'id="e-closes_at">a program must close after it opens' in response.text
    assert _stored(session, world.program_p_draft) == before


def test_an_open_program_cannot_be_edited(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "funder_p")
    url = f"/funder/programs/{world.program_p}/edit"
    assert "only a draft can be edited" in text_of(client.get(url).text)
    before = _stored(session, world.program_p)
    response = client.post(url, data=_form())
    assert response.status_code == 409
    assert _stored(session, world.program_p) == before
