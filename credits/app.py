"""The Flask application factory, and ``serve`` for ``credits serve``.

Nothing is built at import time: :func:`create_app` makes the engine (unless a
session factory is given, as tests do), stores it with the settings in
``app.extensions["credits"]``, registers the API blueprints and renders every
error as an RFC 9457 problem document.
"""

from __future__ import annotations

import os
import socket

import waitress
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.middleware.proxy_fix import ProxyFix

import admin_ui
from credits.api import (
    auth,
    datasets,
    grants,
    guards,
    health,
    jobs,
    labelling,
    labelling_media,
    labelling_orders,
    ledger,
    openapi,
    pool,
    problems,
    proposals,
    reports,
    security_headers,
    transparency,
    usage,
)
from credits.api.auth import EXTENSION_KEY, CreditsExtension
from credits.api.converters import IdConverter, TilePathConverter
from credits.api.read_retry import RetryingReadsFlask
from credits.db import (
    make_engine,
    make_read_session_factory,
    make_session_factory,
)
from credits.jobs.executors.base import Executor
from credits.observability import web as observability
from credits.settings import Profile, Settings, SettingsError, load_settings
from credits.storage import PART_SIZE

BLUEPRINTS = (
    health.blueprint,
    openapi.blueprint,
    auth.blueprint,
    ledger.blueprint,
    pool.blueprint,
    grants.blueprint,
    proposals.blueprint,
    jobs.blueprint,
    usage.blueprint,
    reports.blueprint,
    datasets.blueprint,
    datasets.public_blueprint,
    labelling.blueprint,
    labelling_orders.blueprint,
    labelling_media.blueprint,
    transparency.blueprint,
)


class _OrderedJSONProvider(DefaultJSONProvider):
    """Keeps members in the order the schemas declare them (``type`` first in a problem)."""

    sort_keys = False


def _default_session_factory(settings: Settings) -> sessionmaker[Session]:
    engine = make_engine(
        settings.database_url.get_secret_value(),
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.database_pool_size,
    )
    return make_session_factory(engine)


def create_app(
    settings: Settings | None = None,
    *,
    session_factory: sessionmaker[Session] | None = None,
    executor: Executor | None = None,
) -> Flask:
    """A configured app; ``settings`` default to the environment's, ``executor`` to
    the one the settings name."""
    settings = settings or load_settings()
    # No app-wide static route: the browser UI serves its files from its blueprint.
    app = RetryingReadsFlask(__name__, static_folder=None)
    app.json = _OrderedJSONProvider(app)
    app.url_map.converters["int"] = IdConverter  # before any rule is added
    app.url_map.converters["tile"] = TilePathConverter
    app.config["SECRET_KEY"] = settings.secret_key.get_secret_value()
    # Cookies signed with an earlier key still load while a rotation rolls out.
    app.config["SECRET_KEY_FALLBACKS"] = settings.old_secret_keys
    # Larger bodies are refused unread (413); usage ingestion raises its own limit.
    app.config["MAX_CONTENT_LENGTH"] = settings.request_max_bytes
    writer = session_factory or _default_session_factory(settings)
    app.extensions[EXTENSION_KEY] = CreditsExtension(
        settings=settings,
        session_factory=writer,
        executor=executor,
        # GET and HEAD requests read through these (credits.api.auth.session_factory).
        read_session_factory=make_read_session_factory(writer),
    )
    # First, so every later hook and route logs with the request id.
    observability.init_app(app)
    problems.init_app(app)
    security_headers.init_app(app)
    guards.init_app(app)
    auth.init_app(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    admin_ui.init_app(app)
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app


def require_free_port(host: str, port: int) -> None:
    """Refuses, in one line, to start on a port something already listens on (a
    second ``./scripts/up``), before the jobs loop starts and before waitress would
    fail with a traceback."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family):
            pass
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise SettingsError(
            f"cannot listen on {host}:{port} ({reason}): is another `credits serve`"
            " or ./scripts/up running? Stop it, or set CREDITS_PORT"
        ) from None


def serve(settings: Settings) -> None:
    """Serves the app with waitress on the configured host and port until stopped.

    On the embedded profile the jobs loop (scheduling passes and reconciles)
    runs in a background thread; in production Celery beat runs that work.
    """
    require_free_port(settings.host, settings.port)
    app = create_app(settings)
    loop = None
    if settings.profile is Profile.EMBEDDED:
        from credits.jobs.runtime import JobsLoop, executor_for  # noqa: PLC0415

        extension = app.extensions[EXTENSION_KEY]
        loop = JobsLoop(extension.session_factory, executor_for(settings), settings)
        loop.start()
    try:
        waitress.serve(
            app,
            host=settings.host,
            port=settings.port,
            # Waitress buffers a body (to a temporary file when large) before the app sees
            # it: none over the largest limit, a dataset file's.
            max_request_body_size=max(
                settings.request_max_bytes,
                settings.usage_request_max_bytes,
                settings.dataset_max_file_bytes,
                PART_SIZE,
            ),
        )
    finally:
        if loop is not None:
            loop.stop()
