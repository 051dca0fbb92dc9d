"""A fake OpenID Connect provider and a live app that signs in through it.

Use with ``pytest_plugins = ["browser_support", "oidc_support"]``: ``oidc_provider``
is the in-process provider (oidc_provider.py); ``oidc_live_app`` is the app of
browser_support.py's ``live_app`` with its ``oidc_*`` settings naming that provider.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import FLAVOUR, LiveApp
from conftest import migrated_sqlite_url
from oidc_provider import DISPLAY_NAME, FakeOidcProvider, running_provider
from werkzeug.serving import BaseWSGIServer, make_server

from credits.app import create_app
from credits.db import make_engine, make_session_factory, utcnow
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.settings import load_settings


@pytest.fixture
def oidc_provider() -> Iterator[FakeOidcProvider]:
    with running_provider() as provider:
        yield provider


@pytest.fixture
def oidc_live_app(tmp_path: Path, oidc_provider: FakeOidcProvider) -> Iterator[LiveApp]:
    database_url = migrated_sqlite_url(tmp_path)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    executor = SimulatedExecutor(
        [NodeCapacity(name="gpu-0", flavour=FLAVOUR, gpus=8)],
        clock=utcnow,
        default_duration_s=2.0,
    )
    settings = load_settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        oidc_issuer=oidc_provider.issuer,
        oidc_client_id=oidc_provider.client_id,
        oidc_client_secret=oidc_provider.client_secret,
        oidc_display_name=DISPLAY_NAME,
    )
    app = create_app(settings, session_factory=factory, executor=executor)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveApp(f"http://127.0.0.1:{server.server_port}", factory, executor)
    finally:
        server.shutdown()
        engine.dispose()
