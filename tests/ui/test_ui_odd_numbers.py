"""Numbers people type that Python reads differently from a database: digits that
are not ASCII ("²" passes ``str.isdigit`` but not ``int``), infinities, deep nesting.
Each is a clear refusal or is ignored, never a 500."""

from __future__ import annotations

import pytest
from api_world import build_world
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app

from admin_ui.funder_views import decision_defaults
from credits.datasets.record_sets import json_lines_fields
from credits.grants.models import Program
from credits.grants.proposal_queries import load_proposal, render_proposal
from credits.id_text import id_from_text
from credits.ledger.models import Currency


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("42", 42), (" 7 ", 7), ("²", None), ("١٢", None), ("9" * 19, None), ("-1", None), ("", None)],
)
def test_an_id_is_ascii_digits_that_fit_a_bigint(text: str, expected: int | None) -> None:
    assert id_from_text(text) == expected


def test_non_ascii_digits_in_urls_and_queries_are_ignored_or_not_found(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    assert app.test_client().get("/datasets?page=²&program=²").status_code == 200
    researcher = client_for(app, world, "researcher_a")
    assert researcher.get("/jobs/²").status_code == 404
    assert researcher.get(f"/projects/{world.project_a}?account=²").status_code == 200


@pytest.mark.parametrize("score", ["inf", "-inf", "1e309", "nan"])
def test_an_infinite_lowest_mean_score_is_a_form_error(
    app: Flask, session: Session, score: str
) -> None:
    world = build_world(session)
    before = session.scalar(select(func.count()).select_from(Program))
    response = client_for(app, world, "funder_p").post(
        "/funder/programs",
        data={
            "csrf_token": CSRF,
            "name": "Infinite bar",
            "description": "A program.",
            "opens_at": "2031-01-01",
            "closes_at": "2031-06-01",
            "criteria": "Merit",
            "min_reviewers": "1",
            "min_mean_score": score,
        },
    )
    assert response.status_code == 400
    assert "enter a score from 1.00 to 5.00" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Program)) == before


def test_json_lines_nested_too_deep_for_python_have_no_inferred_fields() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    assert json_lines_fields(b'{"a": 1}\n' + deep, whole=True) == []


def test_a_currency_asked_for_at_zero_is_left_blank_on_the_award_form(session: Session) -> None:
    world = build_world(session)
    proposal = render_proposal(load_proposal(session, world.proposal_in_review))
    asked = proposal.model_copy(update={"requested": {**proposal.requested, Currency.LABEL: 0}})
    values = decision_defaults(asked)
    assert "amount_label" not in values
    assert values["amount_gpu"] != ""
