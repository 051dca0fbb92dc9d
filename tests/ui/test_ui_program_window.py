"""A program's closing date keeps that whole day open in the portal, as in the CLI,
and its window reads as the days typed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from api_world import build_world, world_executor
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.grants.models import Program
from credits.settings import load_settings

CSRF = "window-csrf"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def test_a_program_closing_on_a_day_is_open_all_that_day_and_says_so(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    client = app.test_client()
    sign_in_as(client, world.user_ids["funder_p"], csrf_token=CSRF)
    opens = utcnow().date()
    closes = opens + timedelta(days=30)
    answer = client.post(
        "/funder/programs",
        data={
            "csrf_token": CSRF,
            "name": "Whole days",
            "description": "A call",
            "opens_at": opens.isoformat(),
            "closes_at": closes.isoformat(),
            "criteria": "Merit",
            "min_reviewers": "1",
            "min_mean_score": "3",
        },
    )
    assert answer.status_code == 302
    program = session.scalars(select(Program).where(Program.name == "Whole days")).one()
    last_moment = datetime(closes.year, closes.month, closes.day, 23, 59, 59, tzinfo=UTC)
    assert program.closes_at.replace(tzinfo=UTC) > last_moment
    page = client.get(f"/funder/programs/{program.id}").get_data(as_text=True)
    assert f"{opens.isoformat()} \u2013 {closes.isoformat()} (the whole day, UTC)" in page
