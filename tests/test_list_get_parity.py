"""Lists and gets answer from one rule: for every list/get pair of the API and every
persona of tests/api_world.py (those whose role was revoked included), the ids a list
shows are exactly the ids that read by id.

Both directions count: an id listed but 404 by id (a revoked researcher's project
proposals, issue 12, finding 8) fails, and so does an id readable by id that no list
shows (a member's project account, readable by id while the account list refused
every researcher). Every id of the kind in the database is tried by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from api_world import (
    FORMER_FUNDER,
    FORMER_RESEARCHER,
    FORMER_REVIEWER,
    OPS,
    PERSONAS,
    RESEARCHER_A,
    World,
    build_world,
    world_executor,
)
from datasets_api_world import with_datasets
from flask import Flask
from flask.testing import FlaskClient
from labelling_api_world import with_labelling
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.db import Base
from credits.grants.models import Allocation, Program, Project, Proposal
from credits.jobs.models import Job
from credits.labelling.models import Order
from credits.ledger.models import Account
from credits.settings import load_settings
from credits.storage import blob_store_for_url

SIGNED_IN = PERSONAS[1:]


@dataclass(frozen=True)
class Pair:
    """A list route and the route that reads one of its items by id."""

    name: str
    list_url: str
    get_url: str
    model: type[Base]
    paged: bool = True


PAIRS = (
    Pair("programs", "/api/v1/programs", "/api/v1/programs/{}", Program),
    Pair("projects", "/api/v1/projects", "/api/v1/projects/{}", Project),
    Pair("proposals", "/api/v1/proposals", "/api/v1/proposals/{}", Proposal),
    Pair("allocations", "/api/v1/allocations", "/api/v1/allocations/{}", Allocation),
    Pair("jobs", "/api/v1/jobs", "/api/v1/jobs/{}", Job),
    Pair("labelling orders", "/api/v1/labelling/orders", "/api/v1/labelling/orders/{}", Order),
    Pair("accounts", "/api/v1/accounts", "/api/v1/accounts/{}", Account, paged=False),
)


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _world(session: Session) -> World:
    """The API world with labelling orders (and the datasets they build on)."""
    store = blob_store_for_url(f"memory://parity-{id(session)}")
    return with_labelling(session, with_datasets(session, build_world(session), store))


def _listed(client: FlaskClient, pair: Pair, headers: dict[str, str]) -> set[int]:
    """Every id the list shows the caller, all pages followed."""
    found: set[int] = set()
    query: dict[str, Any] = {"limit": 100} if pair.paged else {}
    while True:
        response = client.get(pair.list_url, query_string=query, headers=headers)
        assert response.status_code == 200, (pair.list_url, response.get_json())
        body = response.get_json()
        found |= {item["id"] for item in body["items"]}
        if not body.get("next_cursor"):
            return found
        query["cursor"] = body["next_cursor"]


def _readable(client: FlaskClient, pair: Pair, headers: dict[str, str], ids: list[int]) -> set[int]:
    readable = set()
    for object_id in ids:
        status = client.get(pair.get_url.format(object_id), headers=headers).status_code
        assert status in {200, 404}, (pair.get_url, object_id, status)
        if status == 200:
            readable.add(object_id)
    return readable


def _views(
    client: FlaskClient, session: Session, world: World, pair: Pair
) -> dict[str, tuple[set[int], set[int]]]:
    ids = list(session.scalars(select(pair.model.id)))  # type: ignore[attr-defined]
    views = {}
    for persona in SIGNED_IN:
        headers = world.headers[persona]
        views[persona] = (_listed(client, pair, headers), _readable(client, pair, headers, ids))
    return views


@pytest.mark.parametrize("pair", PAIRS, ids=[pair.name for pair in PAIRS])
def test_a_list_shows_exactly_what_reads_by_id(app: Flask, session: Session, pair: Pair) -> None:
    world = _world(session)

    views = _views(app.test_client(), session, world, pair)

    wrong = {
        persona: {
            "listed, not readable": listed - readable,
            "readable, not listed": readable - listed,
        }
        for persona, (listed, readable) in views.items()
        if listed != readable
    }
    assert not wrong, f"{pair.name}: {wrong}"
    assert views[OPS][0], f"{pair.name}: ops see none, so the pair proves nothing"


def test_a_revoked_role_takes_its_objects_out_of_every_list(app: Flask, session: Session) -> None:
    world = _world(session)
    client = app.test_client()

    for persona in (FORMER_RESEARCHER, FORMER_FUNDER, FORMER_REVIEWER):
        for pair in PAIRS:
            assert _listed(client, pair, world.headers[persona]) == set(), (persona, pair.name)
    # The same rows, with the role still held, reach project A's proposals.
    assert world.proposal_in_review in _listed(client, PAIRS[2], world.headers[RESEARCHER_A])
