"""Every portal form that takes an amount of credits reads it with credits.money: text that
is no amount (an exponent, an overflow) is refused inline with a 4xx and nothing is saved
(issue 12, finding 11)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api_world import FUNDER_P, OPS, RESEARCHER_A, World, build_world, world_executor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.grants.models import Proposal
from credits.ledger.models import Transfer
from credits.pool.models import RateVersion
from credits.settings import load_settings

CSRF = "amount-csrf-token"
BAD_AMOUNTS = ["1e999999", "1e9", "NaN", "1.0000001", "99999999999"]


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _client(app: Flask, world: World, persona: str) -> FlaskClient:
    client = app.test_client()
    sign_in_as(client, world.user_ids[persona], csrf_token=CSRF)
    return client


def _rows(session: Session) -> tuple[int, ...]:
    return tuple(
        int(session.scalar(select(func.count()).select_from(model)) or 0)
        for model in (Transfer, RateVersion, Proposal)
    )


Form = Callable[[World, str], tuple[str, str, dict[str, Any]]]
FORMS: dict[str, Form] = {
    "fund a program": lambda w, amount: (
        FUNDER_P,
        f"/funder/programs/{w.program_p}/fund",
        {"currency": "gpu", "amount": amount, "reason": "FY", "key": "k"},
    ),
    "set a rate": lambda w, amount: (
        OPS,
        "/ops/pool/rates",
        {"flavour": w.flavour, "credits_per_gpu_hour": amount},
    ),
    "adjust a balance": lambda w, amount: (
        OPS,
        "/ops/adjustments",
        {"account_id": str(w.account_a), "amount": amount, "reason": "ticket 1"},
    ),
    "apply to a program": lambda w, amount: (
        RESEARCHER_A,
        f"/programs/{w.program_p}/apply",
        {
            "project_id": str(w.project_a),
            "title": "T",
            "abstract": "A",
            "justification": "J",
            "requested_gpu": amount,
        },
    ),
}


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
@pytest.mark.parametrize("form", sorted(FORMS))
def test_text_that_is_no_amount_is_refused_inline_and_saves_nothing(
    app: Flask, session: Session, form: str, amount: str
) -> None:
    world = build_world(session)
    persona, url, data = FORMS[form](world, amount)
    before = _rows(session)
    response = _client(app, world, persona).post(url, data=data | {"csrf_token": CSRF})
    assert 400 <= response.status_code < 500, response.status_code
    page = response.get_data(as_text=True)
    assert any(
        phrase in page
        for phrase in ("no exponent", "at most 6 decimal places", "an amount is at most")
    ), page
    assert _rows(session) == before
