"""One "available now" on every page: an award that starts in 8 days is shown as
starting then, not added to what can be spent, and the funder is not told the
allocations are open."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.demo import DOMAIN, seed_demo
from credits.grants import reviews
from credits.grants.models import Proposal, ProposalStatus
from credits.identity.models import User
from credits.identity.service import actor_for
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.settings import load_settings

FLAVOUR = "demo-gpu"
CSRF = "available-now"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session], session: Session) -> Flask:
    executor = SimulatedExecutor([NodeCapacity(name="n0", flavour=FLAVOUR, gpus=4)], clock=utcnow)
    seed_demo(session, flavour=FLAVOUR, gpus_per_node=4)
    return create_app(load_settings(), session_factory=joined_session_factory, executor=executor)


def _user(session: Session, role: str) -> User:
    return session.scalars(select(User).where(User.email == f"demo-{role}@{DOMAIN}")).one()


def _client(app: Flask, session: Session, role: str) -> FlaskClient:
    client = app.test_client()
    sign_in_as(client, _user(session, role).id, csrf_token=CSRF)
    return client


def _text(response_html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response_html).split())


def test_an_award_starting_in_8_days_is_not_available_now_anywhere(
    app: Flask, session: Session
) -> None:
    waiting = session.scalars(
        select(Proposal).where(Proposal.status != ProposalStatus.AWARDED.value)
    ).one()
    reviews.submit_review(
        session,
        proposal_id=waiting.id,
        actor=actor_for(_user(session, "reviewer")),
        scores={"merit": 5, "feasibility": 5},
        comment="Fine.",
    )
    starts = (utcnow() + timedelta(days=8)).date()
    funder = _client(app, session, "funder")
    award = {
        "csrf_token": CSRF,
        "amount_gpu": "500",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(days=90)).isoformat(),
        "reason": "second phase",
        "confirm": "yes",
    }
    answer = funder.post(f"/funder/proposals/{waiting.id}/award", data=award)
    assert answer.status_code == 302, _text(answer.get_data(as_text=True))[-500:]
    told = _text(funder.get(answer.headers["Location"]).get_data(as_text=True))
    assert "allocations are open" not in told
    assert f"allocations start on {starts.isoformat()}" in told

    researcher = _client(app, session, "researcher")
    project_id = waiting.project_id
    project = _text(researcher.get(f"/projects/{project_id}").get_data(as_text=True))
    assert "Available now" in project
    assert f"Starts on {starts.isoformat()} 500 GPU credits" in project
    home_html = researcher.get("/").get_data(as_text=True)
    assert 'data-testid="available-gpu">1,000<' in home_html
    assert 'data-testid="starts-later-gpu">500 GPU credits<' in home_html
    page = researcher.get(f"/projects/{project_id}").get_data(as_text=True)
    assert 'data-testid="project-available-gpu">1,000<' in page
    preview = researcher.post(
        f"/projects/{project_id}/jobs/new",
        data={
            "csrf_token": CSRF,
            "name": "look",
            "image": "python:3.12",
            "command": "python -c 'print(1)'",
            "flavour": FLAVOUR,
            "gpus": "1",
            "max_runtime_minutes": "60",
        },
    )
    previewed = _text(preview.get_data(as_text=True))
    assert "The project has 1,000 GPU credits available now." in previewed
    assert f"Not available now: 500 start on {starts.isoformat()}." in previewed
