"""The portal's lists and pages agree: for every persona of tests/api_world.py (those
whose role was revoked included), the items a list page links to are exactly the
items whose own page opens.

A list page out of a persona's reach (a 404) links to nothing; an item page answers
200 or 404. Every id of the kind in the database is tried.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from api_world import PERSONAS, World, build_world, world_executor
from datasets_api_world import with_datasets
from flask import Flask
from flask.testing import FlaskClient
from labelling_api_world import with_labelling
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import Base
from credits.grants.models import Program, Project, Proposal
from credits.jobs.models import Job
from credits.labelling.models import Order
from credits.settings import load_settings
from credits.storage import blob_store_for_url

SIGNED_IN = PERSONAS[1:]


def _fixed(*urls: str) -> Callable[[Session], list[str]]:
    return lambda _: list(urls)


def _program_pages(session: Session) -> list[str]:
    """Each program's funder page, whose queue links its submitted proposals."""
    return [f"/funder/programs/{i}" for i in session.scalars(select(Program.id))]


@dataclass(frozen=True)
class UiPair:
    """The pages that list a kind of item, the link they name one by, and its page."""

    name: str
    lists: Callable[[Session], list[str]]
    link: str
    page: str
    model: type[Base]


PAIRS = (
    UiPair("projects", _fixed("/", "/ops/projects"), r"/projects/(\d+)", "/projects/{}", Project),
    UiPair("jobs", _fixed("/jobs"), r"/jobs/(\d+)", "/jobs/{}", Job),
    UiPair(
        "applications",
        _fixed("/programs/open"),
        r"/applications/(\d+)",
        "/applications/{}",
        Proposal,
    ),
    # The list shows the calls open now; in this world every call a researcher may
    # read is open, so the two agree.
    UiPair(
        "calls", _fixed("/programs/open"), r"/programs/(\d+)/apply", "/programs/{}/apply", Program
    ),
    UiPair(
        "funder programs",
        _fixed("/funder/programs"),
        r"/funder/programs/(\d+)",
        "/funder/programs/{}",
        Program,
    ),
    UiPair(
        "funder proposals",
        _program_pages,
        r"/funder/proposals/(\d+)",
        "/funder/proposals/{}",
        Proposal,
    ),
    UiPair("reviews", _fixed("/reviews"), r"/reviews/(\d+)", "/reviews/{}", Proposal),
    UiPair(
        "labelling orders",
        _fixed("/labelling", "/ops/labelling/disputes"),
        r"/labelling/orders/(\d+)",
        "/labelling/orders/{}",
        Order,
    ),
)


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _linked(client: FlaskClient, session: Session, pair: UiPair) -> set[int]:
    found: set[int] = set()
    for url in pair.lists(session):
        response = client.get(url)
        assert response.status_code in {200, 404}, (url, response.status_code)
        if response.status_code == 200:
            hrefs = re.findall(f'href="{pair.link}"', response.get_data(as_text=True))
            found |= {int(i) for i in hrefs}
    return found


def _opening(client: FlaskClient, pair: UiPair, ids: list[int]) -> set[int]:
    opening = set()
    for object_id in ids:
        status = client.get(pair.page.format(object_id)).status_code
        assert status in {200, 404}, (pair.page, object_id, status)
        if status == 200:
            opening.add(object_id)
    return opening


def _views(
    app: Flask, session: Session, world: World, pair: UiPair
) -> dict[str, tuple[set[int], set[int]]]:
    ids = list(session.scalars(select(pair.model.id)))  # type: ignore[attr-defined]
    views = {}
    for persona in SIGNED_IN:
        client = app.test_client()
        sign_in_as(client, world.user_ids[persona])
        views[persona] = (_linked(client, session, pair), _opening(client, pair, ids))
    return views


@pytest.mark.parametrize("pair", PAIRS, ids=[pair.name for pair in PAIRS])
def test_a_list_page_links_exactly_the_pages_that_open(
    app: Flask, session: Session, pair: UiPair
) -> None:
    world = build_world(session)
    if pair.model is Order:
        store = blob_store_for_url(f"memory://ui-parity-{uuid.uuid4().hex}")
        world = with_labelling(session, with_datasets(session, world, store))

    views = _views(app, session, world, pair)

    wrong = {
        persona: {"linked, not opening": linked - opening, "opening, not linked": opening - linked}
        for persona, (linked, opening) in views.items()
        if linked != opening
    }
    assert not wrong, f"{pair.name}: {wrong}"
    assert any(linked for linked, _ in views.values()), f"{pair.name}: nobody sees any"
