"""Funder and reviewer forms through Flask's test client: refusals are shown inline,
with nothing saved, and a double submit of a form that moves credits acts once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_world import World, build_world, world_executor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.grants.models import Program, Proposal, Review
from credits.grants.queries import get_program
from credits.ledger.models import Currency
from credits.settings import load_settings

CSRF = "forms-csrf-token"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _client(app: Flask, world: World, persona: str) -> FlaskClient:
    client = app.test_client()
    sign_in_as(client, world.user_ids[persona], csrf_token=CSRF)
    return client


def _funded(session: Session, program_id: int) -> int:
    (line,) = [
        b for b in get_program(session, program_id=program_id).budget if b.currency is Currency.GPU
    ]
    return line.funded


def test_a_program_with_errors_is_shown_again_and_not_created(app: Flask, session: Session) -> None:
    world = build_world(session)
    before = session.scalar(select(func.count()).select_from(Program))
    response = _client(app, world, "funder_p").post(
        "/funder/programs",
        data={
            "csrf_token": CSRF,
            "name": "<script>x()</script>",
            "description": "",
            "opens_at": "tomorrow",
            "closes_at": "2030-01-01",
            "criteria": "Merit",
            "min_reviewers": "0",
            "min_mean_score": "3",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "enter a date as YYYY-MM-DD" in page
    assert "enter a whole number from 1 to" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<script>x()" not in page
    assert session.scalar(select(func.count()).select_from(Program)) == before


def test_a_blank_description_is_the_services_refusal_at_its_field(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    today = utcnow().date()
    response = _client(app, world, "funder_q").post(
        "/funder/programs",
        data={
            "csrf_token": CSRF,
            "name": "Call",
            "description": "  ",
            "opens_at": today.isoformat(),
            "closes_at": (today + timedelta(days=9)).isoformat(),
            "criteria": "Merit",
            "min_reviewers": "1",
            "min_mean_score": "3",
        },
    )
    assert response.status_code == 422
    assert 'id="e-description">a program needs a description' in response.get_data(as_text=True)


def test_funding_twice_with_one_form_funds_once(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = _client(app, world, "funder_p")
    before = _funded(session, world.program_p)
    form = {"csrf_token": CSRF, "currency": "gpu", "amount": "12.5", "reason": "FY", "key": "k1"}
    assert client.post(f"/funder/programs/{world.program_p}/fund", data=form).status_code == 302
    assert client.post(f"/funder/programs/{world.program_p}/fund", data=form).status_code == 302
    assert _funded(session, world.program_p) == before + 12_500_000
    bad = client.post(
        f"/funder/programs/{world.program_p}/fund", data=form | {"amount": "-3", "key": "k2"}
    )
    assert bad.status_code == 400
    assert "enter an amount above zero" in bad.get_data(as_text=True)
    assert _funded(session, world.program_p) == before + 12_500_000


def test_an_award_over_the_budget_is_refused_inline(app: Flask, session: Session) -> None:
    world = build_world(session)
    today = utcnow().date()
    response = _client(app, world, "funder_p").post(
        f"/funder/proposals/{world.proposal_in_review}/award",
        data={
            "csrf_token": CSRF,
            "amount_gpu": "5000",
            "starts_at": today.isoformat(),
            "ends_at": (today + timedelta(days=30)).isoformat(),
            "override_reason": "urgent",
            "key": "over",
        },
    )
    assert response.status_code == 402
    assert "credits are left to award; this award needs 5,000" in response.get_data(as_text=True)
    assert session.get_one(Proposal, world.proposal_in_review).status == "in_review"


def test_a_review_without_a_comment_is_not_saved(app: Flask, session: Session) -> None:
    world = build_world(session)
    response = _client(app, world, "reviewer").post(
        f"/reviews/{world.proposal_in_review}/score",
        data={"csrf_token": CSRF, "score_merit": "4", "score_fit": "9", "comment": ""},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="e-score_fit">choose a score from 1 to 5' in page
    assert 'id="e-comment">write a comment' in page
    assert session.scalar(select(func.count()).select_from(Review)) == 0


def test_funding_with_a_reason_naming_a_person_is_refused_inline(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    before = _funded(session, world.program_p)
    form = {
        "csrf_token": CSRF,
        "currency": "gpu",
        "amount": "12.5",
        "reason": "as agreed with grace@uni.example",
        "key": "named",
    }

    response = _client(app, world, "funder_p").post(
        f"/funder/programs/{world.program_p}/fund", data=form
    )

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "public, permanent transparency log and may not hold an e-mail address" in page
    assert "as agreed with grace@uni.example" in page  # the form keeps what was typed
    assert _funded(session, world.program_p) == before
