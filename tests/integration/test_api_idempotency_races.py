"""Real commits on PostgreSQL: every route that takes an ``Idempotency-Key`` replays under
a race. Eight requests with one key sent at once make one thing and answer seven
replays of it, never a server error (an IntegrityError on the key's unique index).

The routes are read from the served OpenAPI document, so a new route that takes
the header must be raced here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from api_world import FUNDER_P, RESEARCHER_A, World, build_world, job_body, world_executor
from flask import Flask
from labelling_api_world import priced_vendor
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from test_ledger_concurrency import committed_postgres, run_together, verify_through_cli
from werkzeug.test import TestResponse

from credits.app import create_app
from credits.db import make_session_factory, session_scope, utcnow
from credits.grants.models import Award
from credits.jobs.models import Job
from credits.labelling.models import Adapter, Order
from credits.ledger.models import Transfer
from credits.settings import load_settings

pytestmark = pytest.mark.postgres

__all__ = ["committed_postgres"]  # the fixture, imported for pytest to find

THREADS = 8
KEY = "race-1"


@dataclass(frozen=True)
class Keyed:
    """A request that takes a key: who sends it where, and the statuses of its first
    answer and of a replay."""

    persona: str
    url: Callable[[World], str]
    body: Callable[[Served], dict[str, Any]]
    created: int
    replayed: int
    made: Callable[[Any], int]  # how many rows the request makes, counted after the race


def _count(model: Any, *where: Any) -> Callable[[Any], int]:
    def count(session: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    return count


ROUTES: dict[str, Keyed] = {
    "/api/v1/programs/{program_id}/fund": Keyed(
        FUNDER_P,
        lambda w: f"/api/v1/programs/{w.program_p}/fund",
        lambda _: {"currency": "gpu", "amount_micro": 7_000_000, "reason": "FY28"},
        201,
        201,
        _count(Transfer, Transfer.idempotency_key.like(f"program:%:fund:{KEY}")),
    ),
    "/api/v1/proposals/{proposal_id}/award": Keyed(
        FUNDER_P,
        lambda w: f"/api/v1/proposals/{w.proposal_in_review}/award",
        lambda _: {
            "amounts": {"gpu": 1_000_000},
            "starts_at": utcnow().isoformat(),
            "ends_at": (utcnow() + timedelta(days=90)).isoformat(),
            "override_reason": "urgent",
        },
        201,
        201,
        _count(Award, Award.idempotency_key == KEY),
    ),
    "/api/v1/tranches/{tranche_id}/release": Keyed(
        FUNDER_P,
        lambda w: f"/api/v1/tranches/{w.tranche}/release",
        lambda _: {"progress_report": "Half the runs are done."},
        200,
        200,
        _count(Transfer, Transfer.idempotency_key.like("tranche:%:release")),
    ),
    "/api/v1/projects/{project_id}/jobs": Keyed(
        RESEARCHER_A,
        lambda w: f"/api/v1/projects/{w.project_a}/jobs",
        lambda _: job_body(name="raced"),
        201,
        200,
        _count(Job, Job.name == "raced"),
    ),
    "/api/v1/labelling/orders": Keyed(
        RESEARCHER_A,
        lambda _: "/api/v1/labelling/orders",
        lambda served: {
            "order": {
                "project_id": served.world.project_a,
                "vendor_id": served.vendor_id,
                "title": "raced",
                "label_schema": {"kind": "single_label", "labels": ["yes", "no"]},
            },
            "items": [{"external_id": "a", "text": "Is this raced?"}],
        },
        201,
        200,
        _count(Order, Order.title == "raced"),
    ),
}


@dataclass(frozen=True)
class Served:
    url: str
    app: Flask
    world: World
    factory: sessionmaker[Session]
    vendor_id: int


@pytest.fixture
def served(committed_postgres: tuple[str, Engine]) -> Served:
    url, engine = committed_postgres
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        world = build_world(session)
        vendor_id = priced_vendor(session, "Raced vendor", Adapter.INHOUSE)
    app = create_app(load_settings(), session_factory=factory, executor=world_executor())
    return Served(url, app, world, factory, vendor_id)


def _identity(answer: dict[str, Any]) -> object:
    """What the request made: the id of the object, or of the transfer a funding wrote."""
    return answer["id"] if "id" in answer else answer["transfer"]["id"]


def test_every_route_that_takes_a_key_is_raced(served: Served) -> None:
    document = served.app.test_client().get("/api/v1/openapi.json").get_json()
    keyed = {
        path
        for path, methods in document["paths"].items()
        for operation in methods.values()
        if any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
    }
    assert keyed == set(ROUTES)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_eight_requests_with_one_key_at_once_make_one_thing_and_seven_replays(
    served: Served, route: str
) -> None:
    keyed = ROUTES[route]
    url = keyed.url(served.world)
    headers = served.world.headers[keyed.persona] | {"Idempotency-Key": KEY}
    body = keyed.body(served)

    def send(_: int) -> TestResponse:
        return served.app.test_client().post(url, json=body, headers=headers)

    responses = run_together(THREADS, send)
    answers = [response.get_json() for response in responses]

    statuses = sorted(response.status_code for response in responses)
    assert statuses == sorted([keyed.created] + [keyed.replayed] * (THREADS - 1)), answers
    assert len({_identity(answer) for answer in answers}) == 1
    replayed = [answer.get("replayed") for answer in answers]
    if None not in replayed:
        assert replayed.count(False) == 1, replayed
    with session_scope(served.factory) as session:
        assert keyed.made(session) == 1
    verify_through_cli(served.url)


def test_a_key_longer_than_any_column_is_a_400_problem_on_postgresql(served: Served) -> None:
    url = f"/api/v1/projects/{served.world.project_a}/jobs"
    headers = served.world.headers[RESEARCHER_A] | {"Idempotency-Key": "k" * 10_000}

    response = served.app.test_client().post(url, json=job_body(name="long-key"), headers=headers)

    assert (response.status_code, response.mimetype) == (400, "application/problem+json")
    assert response.get_json()["type"].endswith("/invalid-idempotency-key")
    with session_scope(served.factory) as session:
        assert _count(Job, Job.name == "long-key")(session) == 0
