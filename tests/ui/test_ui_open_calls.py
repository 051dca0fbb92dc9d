"""The public page of open calls: reachable without signing in and linked from the
sign-in page; it lists open programs in their window and nothing else, and says
nothing of owners or budgets."""

from __future__ import annotations

import pytest
from api_world import build_world
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import client_for, flows_app, text_of

from credits.grants import programs
from credits.identity.service import actor_for_email


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def test_the_sign_in_page_links_to_the_open_calls(app: Flask, session: Session) -> None:
    build_world(session)
    visitor = app.test_client()
    assert 'href="/calls"' in visitor.get("/login").get_data(as_text=True)
    assert visitor.get("/calls").status_code == 200


def test_a_visitor_sees_open_calls_only_without_owners_or_budgets(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    page = app.test_client().get("/calls").get_data(as_text=True)
    text = text_of(page)
    assert "GPU hours for climate models." in text
    assert "Scientific merit, Fit" in text
    assert text.count("GPU hours for climate models.") == 1  # P, not the drafts P2 and Q
    assert "funder_p@example.org" not in page and "1,000" not in text
    assert f"/login?next=/programs/{world.program_p}/apply" in page


def test_a_researcher_is_offered_to_apply_and_a_funder_is_not(app: Flask, session: Session) -> None:
    world = build_world(session)
    apply = f'href="/programs/{world.program_p}/apply"'
    researcher = client_for(app, world, "researcher_b").get("/calls").get_data(as_text=True)
    funder = client_for(app, world, "funder_q").get("/calls").get_data(as_text=True)
    assert apply in researcher
    assert apply not in funder and "Sign in to apply" not in funder


def test_a_closed_call_is_not_listed(app: Flask, session: Session) -> None:
    world = build_world(session)
    owner = actor_for_email(session, "funder_p@example.org")
    programs.close_program(session, program_id=world.program_p, actor=owner)
    session.flush()
    text = text_of(app.test_client().get("/calls").get_data(as_text=True))
    assert "No program is taking proposals right now." in text
