"""Security headers on every response, API and portal, and portal pages that satisfy the CSP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from api_world import FUNDER_P, RESEARCHER_A, build_world, world_executor
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.settings import Profile, load_settings

TEMPLATES = Path(__file__).resolve().parents[2] / "admin_ui" / "templates"
PRODUCTION: dict[str, Any] = {
    "profile": Profile.PRODUCTION,
    "database_url": "postgresql://credits@db.invalid/credits",
    "broker_url": "redis://broker.invalid:6379/0",
    "storage_url": "memory://",
    "secret_key": "a-production-secret-key-of-enough-length-0123456789",
}
PATHS = [
    "/api/v1/healthz",  # a JSON document
    "/datasets",  # a public portal page
    "/api/v1/me",  # a 401 problem
    "/api/v1/no-such-thing",  # a 404 problem
    "/login",  # a portal page
    "/tokens",  # a redirect to sign in
    "/ui/static/style.css",  # a static file
]


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(load_settings(), session_factory=joined_session_factory)


def _directives(policy: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


@pytest.mark.parametrize("path", PATHS)
def test_every_response_carries_the_security_headers(app: Flask, path: str) -> None:
    response = app.test_client().get(path)

    policy = _directives(response.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    # Plain HTTP on the embedded profile: no HSTS, which a browser would ignore anyway.
    assert "Strict-Transport-Security" not in response.headers


def test_a_page_loads_only_from_this_site_and_runs_no_inline_script(app: Flask) -> None:
    policy = _directives(app.test_client().get("/login").headers["Content-Security-Policy"])

    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["form-action"] == "'self'"


def test_a_document_that_is_not_a_page_may_load_nothing(app: Flask) -> None:
    policy = _directives(
        app.test_client().get("/api/v1/healthz").headers["Content-Security-Policy"]
    )

    assert policy["default-src"] == "'none'"


@pytest.mark.parametrize(
    ("settings", "base_url"),
    [({}, "https://credits.example.org"), (PRODUCTION, "http://credits.example.org")],
    ids=["over https", "production behind a proxy"],
)
def test_hsts_is_sent_over_https_and_always_in_production(
    joined_session_factory: sessionmaker[Session], settings: dict[str, Any], base_url: str
) -> None:
    app = create_app(load_settings(**settings), session_factory=joined_session_factory)

    for path in ("/api/v1/healthz", "/login"):
        response = app.test_client().get(path, base_url=base_url)
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


@pytest.mark.parametrize(
    ("persona", "page_path"),
    [(RESEARCHER_A, "/"), (FUNDER_P, "/funder/programs/{program_p}/dashboard")],
    ids=["researcher's burn-down", "funder's program dashboard"],
)
def test_a_page_with_charts_satisfies_its_policy(
    session: Session, joined_session_factory: sessionmaker[Session], persona: str, page_path: str
) -> None:
    world = build_world(session)
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )
    client = app.test_client()
    sign_in_as(client, world.user_ids[persona])

    response = client.get(page_path.format(program_p=world.program_p))
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    nonce = _directives(response.headers["Content-Security-Policy"])["style-src"]
    match = re.fullmatch(r"'self' 'nonce-([A-Za-z0-9_-]+)'", nonce)
    assert match is not None, nonce
    styles = re.findall(r"<style\b[^>]*>", page)
    assert styles, "the page has a chart"
    assert all(f'nonce="{match[1]}"' in style for style in styles)
    _assert_nothing_inline(page)


# The one inline <script> allowed: a JSON-LD data block (schema.org metadata on a
# dataset's page), which a browser never runs; its JSON escapes "<", so no "</script>".
DATA_BLOCK = re.compile(r'<script type="application/ld\+json">(?P<data>.*?)</script>', re.S)


def _assert_nothing_inline(markup: str) -> None:
    """No inline script but JSON-LD data, no style attribute, no event handler attribute."""
    for block in DATA_BLOCK.finditer(markup):
        assert "<" not in block["data"]
    markup = DATA_BLOCK.sub("", markup)
    assert not re.search(r"<script\b(?![^>]*\bsrc=)[^>]*>", markup)
    assert not re.search(r"\sstyle\s*=", markup)
    assert not re.search(r"\son[a-z]+\s*=", markup)
    assert "javascript:" not in markup


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda path: path.name)
def test_no_template_has_inline_script_or_style(template: Path) -> None:
    markup = template.read_text()
    _assert_nothing_inline(markup)
    assert "<style" not in markup
