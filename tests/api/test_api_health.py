"""Liveness needs nothing; readiness needs the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import joined_app
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from credits.api.problems import PROBLEM_MEDIA_TYPE
from credits.app import create_app
from credits.settings import load_settings


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return joined_app(joined_session_factory)


@pytest.fixture
def app_without_database(tmp_path: Path) -> Iterator[Flask]:
    # A SQLite file in a folder that does not exist cannot be opened.
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'credits.db'}")
    yield create_app(load_settings(), session_factory=sessionmaker(bind=engine))
    engine.dispose()


def test_healthz_is_ok(app: Flask) -> None:
    response = app.test_client().get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_is_ok_even_when_database_is_down(app_without_database: Flask) -> None:
    response = app_without_database.test_client().get("/healthz")

    assert response.status_code == 200


def test_readyz_is_ready_when_database_answers(app: Flask) -> None:
    response = app.test_client().get("/readyz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "database": "ok"}


def test_readyz_is_503_when_database_is_down(app_without_database: Flask) -> None:
    response = app_without_database.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body = response.get_json()
    assert body["type"] == "https://credits.dev/problems/database-unavailable"
    assert "missing" not in response.get_data(as_text=True)
