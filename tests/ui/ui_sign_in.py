"""Signing a test client in without the sign-in form, as the form would.

A portal session is more than a user id: it carries the user's session
generation and when it began and was last used (admin_ui/sessions.py), so a
cookie holding only ``user_id`` is not signed in.
"""

from __future__ import annotations

from flask.testing import FlaskClient

from admin_ui import sessions
from credits.api.auth import EXTENSION_KEY
from credits.db import session_scope
from credits.identity.models import User


def sign_in_as(client: FlaskClient, user_id: int, *, csrf_token: str | None = None) -> None:
    """Starts a session for ``user_id`` in the client's cookie (with ``csrf_token`` if given)."""
    factory = client.application.extensions[EXTENSION_KEY].session_factory
    with session_scope(factory) as db:
        user = db.get(User, user_id)
        generation = 0 if user is None else user.session_generation
    with client.session_transaction() as cookie:
        sessions.start(cookie, user_id=user_id, generation=generation)
        if csrf_token is not None:
            cookie[sessions.CSRF_FIELD] = csrf_token
