"""Who reaches which browser page: every UI route, every persona, each answer asserted."""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_world import ANONYMOUS, PERSONAS, World, build_world, world_executor
from conftest import joined_factory, rolled_back_session
from datasets_api_world import with_datasets
from flask import Flask
from flask.testing import FlaskClient
from labelling_api_world import with_labelling
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from ui_matrix import LOGIN, OK, UiRow
from ui_rows_attachments import with_attachments
from ui_sign_in import sign_in_as

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.settings import load_settings
from credits.storage import blob_store_for_url

LABELLING_PAGES = ("/labelling", "/ops/labelling")
ATTACHMENT_ROUTES = ("/attachments", "/applications/<int:proposal_id>/attachments")
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
_ARGUMENT = re.compile(r"<(?:\w+(?:\([^)]*\))?:)?(?P<name>\w+)>")
CSRF = "matrix-csrf-token"
# Routes every visitor may open: sign-in pages and the UI's static files.
PUBLIC_ENDPOINTS = frozenset(
    {
        "ui_auth.login",
        "ui_auth.login_submit",
        "ui_auth.login_oidc",
        "ui_auth.oidc_callback",
        "ui_auth.static",
        "ui_auth.logout",
    }
)


def _rows() -> list[UiRow]:
    rows: list[UiRow] = []
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("ui_rows_"):
            rows.extend(importlib.import_module(module.name).ROWS)
    return rows


ROWS = _rows()


@dataclass(frozen=True)
class Shared:
    """One session and world for the module's rows, built once per worker."""

    session: Session
    world: World


@pytest.fixture(scope="module")
def shared(sqlite_engine: Engine) -> Iterator[Shared]:
    with rolled_back_session(sqlite_engine) as session:
        yield Shared(session, build_world(session))


@pytest.fixture
def matrix_session(shared: Shared) -> Iterator[Session]:
    """The shared session; whatever a row adds (attachments, orders) or its requests
    leave is rolled back with the row's SAVEPOINT, so each row sees the same world."""
    savepoint = shared.session.connection().begin_nested()
    try:
        yield shared.session
    finally:
        savepoint.rollback()
        shared.session.expire_all()


@pytest.fixture
def app(matrix_session: Session) -> Flask:
    # A fresh app per row: its sign-in and reset-link limits count only that row.
    factory = joined_factory(matrix_session)
    return create_app(load_settings(), session_factory=factory, executor=world_executor())


def _ui_routes(app: Flask) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("ui_") and rule.endpoint not in PUBLIC_ENDPOINTS
        for method in (rule.methods or set()) - IMPLICIT_METHODS
    }


def test_every_ui_route_has_a_row(app: Flask) -> None:
    covered = {(row.method, row.rule) for row in ROWS}
    routes = _ui_routes(app)
    assert not sorted(routes - covered), f"UI routes with no row: {sorted(routes - covered)}"
    assert not sorted(covered - routes), (
        f"rows for UI routes that do not exist: {sorted(covered - routes)}"
    )


def _url(row: UiRow, world: World) -> str:
    def value(match: re.Match[str]) -> str:
        name = match["name"]
        assert name in row.path, f"{row.id}: the row names no target for <{name}>"
        return str(getattr(world, row.path[name]))

    return _ARGUMENT.sub(value, row.rule)


def _answer(
    client: FlaskClient, session: Session, row: UiRow, world: World, persona: str
) -> str | int:
    if persona != ANONYMOUS:
        sign_in_as(client, world.user_ids.get(persona, world.member_a), csrf_token=CSRF)
    form = (row.form(world) if row.form else {}) | (
        {"csrf_token": CSRF} if row.method == "POST" else {}
    )
    savepoint = session.connection().begin_nested()
    try:
        response = client.open(_url(row, world), method=row.method, data=form)
    finally:
        savepoint.rollback()
    if response.status_code in {301, 302, 303, 307, 308}:
        return LOGIN if "/login" in response.headers.get("Location", "") else OK
    if 200 <= response.status_code < 300:
        return OK
    return response.status_code


def _world(app: Flask, session: Session, world: World, row: UiRow) -> World:
    """The world of tests/api_world.py; with labelling orders for the labelling pages."""
    if row.rule.startswith(ATTACHMENT_ROUTES):
        return with_attachments(app, session, world)
    if not row.rule.startswith(LABELLING_PAGES):
        return world
    store = blob_store_for_url(f"memory://ui-matrix-{uuid.uuid4().hex}")
    app.extensions[STORE_KEY] = store
    return with_labelling(session, with_datasets(session, world, store))


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_ui_access(app: Flask, matrix_session: Session, shared: Shared, row: UiRow) -> None:
    session = matrix_session
    world = _world(app, session, shared.world, row)
    got = {
        persona: _answer(app.test_client(), session, row, world, persona) for persona in PERSONAS
    }
    wrong = {p: (row.answers[p], got[p]) for p in PERSONAS if row.answers[p] != got[p]}
    assert not wrong, f"{row.id}: persona: (expected, got) {wrong}"
