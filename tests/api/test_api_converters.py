"""Ids in API paths: a number too long to be an id matches no route."""

from __future__ import annotations

import pytest
from api_helpers import joined_app
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from credits.api.converters import MAX_ID

TOO_LONG = str(MAX_ID + 1)


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return joined_app(joined_session_factory)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/accounts/{TOO_LONG}"),
        ("GET", f"/api/v1/accounts/{'9' * 30}/balance"),
        # The GET rule of the same path must not turn this into a 405.
        ("PATCH", f"/api/v1/programs/{TOO_LONG}"),
        ("DELETE", f"/api/v1/projects/1/members/{TOO_LONG}"),
    ],
)
def test_an_id_longer_than_any_id_is_not_found(app: Flask, method: str, path: str) -> None:
    response = app.test_client().open(path, method=method)

    assert response.status_code == 404


def test_the_largest_id_still_reaches_the_route(app: Flask) -> None:
    response = app.test_client().get(f"/api/v1/accounts/{MAX_ID}")

    assert response.status_code == 401
