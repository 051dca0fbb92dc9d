"""The job form's flavour radios: a fresh form selects the first flavour with a rate in
force (none when no flavour has one), never a disabled one, and a form shown again
with errors keeps what the user chose."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.demo import DOMAIN, seed_demo
from credits.grants.models import Project
from credits.identity.actor import Actor
from credits.identity.models import User
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.pool import service as pool
from credits.settings import load_settings

RATED = "demo-gpu"
CSRF = "job-form-flavour"
SYSTEM = Actor.system("tests")


def _add_flavour(session: Session, name: str, *, rate: int | None = None) -> None:
    pool.add_flavour(
        session,
        name=name,
        node_label_value="local",
        gpu_memory_gb=80,
        gpus_per_node=8,
        actor=SYSTEM,
    )
    if rate is not None:
        now = utcnow()
        pool.set_rate(
            session,
            flavour=name,
            credits_per_gpu_hour_micro=rate,
            effective_from=now,
            actor=SYSTEM,
            now=now,
        )


def _app(joined_session_factory: sessionmaker[Session]) -> Flask:
    executor = SimulatedExecutor([NodeCapacity(name="n0", flavour=RATED, gpus=4)], clock=utcnow)
    return create_app(load_settings(), session_factory=joined_session_factory, executor=executor)


def _client(app: Flask, session: Session) -> tuple[FlaskClient, int]:
    client = app.test_client()
    user = session.scalars(select(User).where(User.email == f"demo-researcher@{DOMAIN}")).one()
    sign_in_as(client, user.id, csrf_token=CSRF)
    project_id = session.scalars(select(Project.id).order_by(Project.id)).first()
    assert project_id is not None
    return client, project_id


@pytest.fixture
def rated_after_unrated(
    joined_session_factory: sessionmaker[Session], session: Session
) -> tuple[FlaskClient, int]:
    """a100-80gb (no rate, listed first), demo-gpu and h100-80gb (both rated)."""
    seed_demo(session, flavour=RATED, gpus_per_node=4)
    _add_flavour(session, "a100-80gb")
    _add_flavour(session, "h100-80gb", rate=2_000_000)
    session.flush()
    return _client(_app(joined_session_factory), session)


class _Radios(HTMLParser):
    """The flavour radios of a page: value -> (checked, disabled)."""

    def __init__(self) -> None:
        super().__init__()
        self.radios: dict[str, tuple[bool, bool]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("type") == "radio" and found.get("name") == "flavour":
            self.radios[found["value"] or ""] = ("checked" in found, "disabled" in found)


def _radios(page: str) -> dict[str, tuple[bool, bool]]:
    parser = _Radios()
    parser.feed(page)
    return parser.radios


def _checked(page: str) -> list[str]:
    return [value for value, (checked, _) in _radios(page).items() if checked]


def test_a_fresh_form_selects_the_first_flavour_with_a_rate_not_a_disabled_one(
    rated_after_unrated: tuple[FlaskClient, int],
) -> None:
    client, project_id = rated_after_unrated

    answer = client.get(f"/projects/{project_id}/jobs/new")

    assert answer.status_code == 200
    assert _radios(answer.get_data(as_text=True)) == {
        "a100-80gb": (False, True),
        "demo-gpu": (True, False),
        "h100-80gb": (False, False),
    }


def test_a_fresh_form_selects_no_flavour_when_none_has_a_rate(
    joined_session_factory: sessionmaker[Session], session: Session
) -> None:
    _add_flavour(session, RATED)  # the demo keeps an existing flavour as it is: no rate
    seed_demo(session, flavour=RATED, gpus_per_node=4)
    _add_flavour(session, "a100-80gb")
    session.flush()
    client, project_id = _client(_app(joined_session_factory), session)

    page = client.get(f"/projects/{project_id}/jobs/new").get_data(as_text=True)

    assert _radios(page) == {"a100-80gb": (False, True), "demo-gpu": (False, True)}


@pytest.mark.parametrize(
    ("chosen", "checked"),
    [("h100-80gb", ["h100-80gb"]), ("demo-gpu", ["demo-gpu"]), ("", [])],
    ids=["a later flavour", "the first usable flavour", "no flavour"],
)
def test_a_form_shown_again_with_errors_keeps_the_flavour_the_user_chose(
    rated_after_unrated: tuple[FlaskClient, int], chosen: str, checked: list[str]
) -> None:
    client, project_id = rated_after_unrated
    form = {
        "csrf_token": CSRF,
        "action": "preview",
        "name": "train",
        "image": "python:3.12",
        "command": "python train.py",
        "gpus": "0",
        "max_runtime_minutes": "60",
    }
    if chosen:
        form["flavour"] = chosen

    answer = client.post(f"/projects/{project_id}/jobs/new", data=form)

    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert 'id="e-gpus"' in page
    assert _checked(page) == checked
