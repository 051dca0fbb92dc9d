"""What the researcher and funder flow tests share: the world's app and signed-in clients."""

from __future__ import annotations

import html
import re

from api_world import World, world_executor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.settings import load_settings

CSRF = "flows-csrf-token"


def flows_app(factory: sessionmaker[Session]) -> Flask:
    return create_app(load_settings(), session_factory=factory, executor=world_executor())


def client_for(app: Flask, world: World, persona: str) -> FlaskClient:
    """A client signed in as the persona, whose forms carry :data:`CSRF`."""
    client = app.test_client()
    sign_in_as(client, world.user_ids[persona], csrf_token=CSRF)
    return client


def text_of(page: str) -> str:
    """The words of a page, whitespace folded, for phrases a person reads."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def researchers_with_password(
    factory: sessionmaker[Session], emails: tuple[str, ...], password: str
) -> None:
    """Researchers who sign in with ``password``, committed through ``factory``."""
    with session_scope(factory) as db:
        for email in emails:
            create_user(
                db,
                email=email,
                name="Someone",
                roles=(Role.RESEARCHER,),
                actor=Actor.system("tests"),
                password=password,
            )
