"""The app factory and ``serve``."""

from __future__ import annotations

from typing import Any

import pytest
import waitress
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from credits.api.auth import CreditsExtension
from credits.app import create_app, serve
from credits.settings import load_settings


def test_create_app_keeps_settings_and_session_factory(
    joined_session_factory: sessionmaker[Session],
) -> None:
    settings = load_settings(secret_key="k" * 40)

    app = create_app(settings, session_factory=joined_session_factory)

    assert app.extensions["credits"] == CreditsExtension(settings, joined_session_factory)
    assert app.config["SECRET_KEY"] == "k" * 40


def test_create_app_builds_its_own_session_factory_from_settings(sqlite_url: str) -> None:
    app = create_app(load_settings(database_url=sqlite_url))

    assert app.test_client().get("/readyz").status_code == 200
    app.extensions["credits"].session_factory.kw["bind"].dispose()


def test_serve_runs_waitress_on_the_configured_host_and_port_with_a_body_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kwargs: calls.append((app, kwargs)))

    settings = load_settings(
        host="0.0.0.0",  # noqa: S104 - never bound: serve is faked
        port=8123,
        usage_request_max_bytes=5_000_000,
        dataset_max_file_bytes=9_000_000,
    )
    serve(settings)

    ((served, options),) = calls
    assert isinstance(served, Flask)
    # Waitress buffers a body before the app runs: it refuses one over the largest limit,
    # here a dataset file's.
    assert options == {"host": "0.0.0.0", "port": 8123, "max_request_body_size": 9_000_000}  # noqa: S104
