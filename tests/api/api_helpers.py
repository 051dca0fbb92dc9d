"""What the API tests share: an app on the test's rolled-back connection, users with tokens.

A plain module, not a conftest.py: a second conftest would shadow the root
one for ``from conftest import ...`` (tests/test_migrations.py does that).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.identity.tokens import create_token
from credits.settings import load_settings

SYSTEM = Actor.system("tests")


def joined_app(session_factory: sessionmaker[Session]) -> Flask:
    """The app whose requests commit into the test's savepoint, rolled back at its end."""
    return create_app(load_settings(), session_factory=session_factory)


def token_headers(
    session: Session, email: str, *roles: Role, scopes: Iterable[str] = ()
) -> dict[str, str]:
    """Makes a user holding ``roles`` and a token; returns the Authorization header."""
    create_user(session, email=email, name=email.partition("@")[0], roles=roles, actor=SYSTEM)
    created = create_token(session, email=email, actor=SYSTEM, scopes=scopes)
    session.flush()
    return {"Authorization": f"Bearer {created.secret}"}
