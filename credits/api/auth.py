"""Who is calling: the app's state, the bearer token of each request, and GET /api/v1/me.

The token is resolved lazily, on the first :func:`current_actor` of a request,
by one read statement, or from the worker's memory of recent tokens where
gunicorn's workers keep one (PostgreSQL, credits/identity/token_cache.py); its
last use is recorded, in a write, at most once a minute. No header means an
anonymous caller; routes that need one call ``require_actor``. A
malformed header or a bad token is a 401 problem whatever the route, with a
``WWW-Authenticate: Bearer`` challenge (RFC 6750).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, has_request_context, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from credits.api.openapi import operation
from credits.api.problems import credits_error_response
from credits.db import read_connection, session_scope, utcnow
from credits.errors import Unauthenticated
from credits.identity import token_cache
from credits.identity.access import require_actor
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.identity.tokens import TokenIdentity, identify_token, mark_token_used
from credits.jobs.errors import PoolUnavailable
from credits.jobs.executors.base import Executor, ExecutorError
from credits.settings import ExecutorName, Settings

EXTENSION_KEY = "credits"
IDENTITY_CACHE_KEY = "credits_identity_cache"
REALM = "credits"
# RFC 6750 section 2.1: "Bearer" 1*SP b64token.
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_ACTOR_KEY = "credits_actor"
# Requests that only read: their sessions are read-only (credits/db.py).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITES_KEY = "credits_writes"
P = ParamSpec("P")
R = TypeVar("R")

blueprint = Blueprint("auth", __name__, url_prefix="/api/v1")


@dataclass(frozen=True)
class CreditsExtension:
    """What the app holds for its routes, under ``app.extensions["credits"]``."""

    settings: Settings
    session_factory: sessionmaker[Session]
    # None: the process's executor for the settings, built on first use.
    executor: Executor | None = None
    # Sessions for requests that only read (credits.db.make_read_session_factory);
    # None: every request writes through session_factory.
    read_session_factory: sessionmaker[Session] | None = field(default=None, compare=False)


def credits_extension() -> CreditsExtension:
    extension = current_app.extensions[EXTENSION_KEY]
    if not isinstance(extension, CreditsExtension):
        raise TypeError("app.extensions['credits'] is not a CreditsExtension")
    return extension


def session_factory() -> sessionmaker[Session]:
    """The sessions of this request: read-only for a GET or HEAD, which never wait
    for a writer on SQLite and fail loudly if they write; writing otherwise."""
    extension = credits_extension()
    reader = extension.read_session_factory
    if (
        reader is not None
        and has_request_context()
        and request.method in SAFE_METHODS
        and not g.get(WRITES_KEY, False)
    ):
        return reader
    return extension.session_factory


def writes(view: Callable[P, R]) -> Callable[P, R]:
    """Marks a GET view that records something (an OIDC sign-in, an item served to
    an annotator): its sessions write, as a POST's do."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        g.credits_writes = True
        return view(*args, **kwargs)

    return wrapper


def write_session_factory() -> sessionmaker[Session]:
    """Writing sessions whatever the method: for what a GET must record."""
    return credits_extension().session_factory


@dataclass(frozen=True)
class SubmissionLimits:
    """What a job submission is checked against: the runtime cap, the pool's shape and,
    where jobs run as containers (Kubernetes), the registries images may come from."""

    max_runtime_cap: int
    pool_nodes: dict[str, tuple[int, int]]
    image_registries: tuple[str, ...] = ()
    # Whether the executor can keep checkpoints, so that a job may be checkpointable.
    checkpointing: bool = True


def job_submission_limits() -> SubmissionLimits:
    """The limits a submission from this app meets, for the API and the portal alike."""
    from credits.jobs.runtime import (  # noqa: PLC0415 - executors load on first use
        can_checkpoint,
        pool_nodes,
    )

    settings = credits_extension().settings
    registries: tuple[str, ...] = ()
    if settings.executor is ExecutorName.KUBERNETES:
        registries = tuple(filter(None, map(str.strip, settings.job_image_registries.split(","))))
    executor = job_executor()
    try:
        nodes = pool_nodes(executor)
    except ExecutorError as error:
        raise PoolUnavailable(
            f"the GPU pool could not be read ({error}); nothing was held: submit again shortly"
        ) from error
    return SubmissionLimits(
        max_runtime_cap=settings.jobs_max_runtime_seconds,
        pool_nodes=nodes,
        image_registries=registries,
        checkpointing=can_checkpoint(executor),
    )


def job_executor() -> Executor:
    """The executor that runs this app's jobs."""
    extension = credits_extension()
    if extension.executor is not None:
        return extension.executor
    from credits.jobs.runtime import executor_for  # noqa: PLC0415 - executors load on first use

    return executor_for(extension.settings)


class MalformedAuthorization(Unauthenticated):
    slug = "malformed-authorization"
    title = "Malformed Authorization header"


def _bearer_secret(header: str) -> str:
    match = _BEARER.fullmatch(header.strip())
    if match is None:
        raise MalformedAuthorization("Send the API token as 'Authorization: Bearer <token>'.")
    return match.group(1)


def _read_identity(secret_hash: str) -> TokenIdentity:
    # Read where reading is enough: the token's last use is written at most once a
    # minute, so most requests, GETs included, resolve without a write transaction.
    reader = credits_extension().read_session_factory or write_session_factory()
    with read_connection(reader) as connection:
        return identify_token(connection, secret_hash=secret_hash)


def _record_use(identity: TokenIdentity, at: datetime) -> None:
    with session_scope(write_session_factory()) as session:
        mark_token_used(session, token_id=identity.token_id, at=at)


def _resolve_actor() -> Actor | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    secret = _bearer_secret(header)
    cache = current_app.extensions.get(IDENTITY_CACHE_KEY)
    identity = token_cache.identify(cache, _read_identity, _record_use, secret=secret, now=utcnow())
    return identity.actor


def keep_token_identities(app: Flask) -> None:
    """Keeps API token identities in this process's memory, forgotten whenever the
    database announces a change (credits/identity/token_cache.py): for a web
    worker on PostgreSQL, started once the worker has loaded the app."""
    extension = app.extensions[EXTENSION_KEY]
    bind = extension.session_factory.kw.get("bind")
    if isinstance(bind, Engine) and IDENTITY_CACHE_KEY not in app.extensions:
        ttl = extension.settings.token_cache_seconds
        app.extensions[IDENTITY_CACHE_KEY] = token_cache.start_listening(bind, ttl_seconds=ttl)


def current_actor() -> Actor | None:
    """The caller of this request, or None when it sent no credentials."""
    if _ACTOR_KEY not in g:
        g.credits_actor = _resolve_actor()
    actor = g.credits_actor
    return actor if isinstance(actor, Actor) else None


def _challenge(error: Unauthenticated) -> Response:
    """A 401 problem carrying the Bearer challenge; ``invalid_token`` when one was sent."""
    response = credits_error_response(error)
    challenge = f'Bearer realm="{REALM}"'
    if "Authorization" in request.headers:
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(Unauthenticated, _challenge)


class MeOut(BaseModel):
    """The caller as the API sees it; ``scopes`` is null for a token with every right."""

    label: str
    user_id: int | None
    email: str | None
    roles: list[Role]
    scopes: list[Scope] | None


@blueprint.get("/me")
@operation("Who the token belongs to", response=MeOut)
def me() -> ResponseReturnValue:
    """The user, roles and token scopes behind the bearer token."""
    actor = require_actor(current_actor())
    return MeOut(
        label=actor.label,
        user_id=actor.user_id,
        email=actor.email,
        roles=sorted(actor.roles),
        scopes=None if actor.scopes is None else sorted(actor.scopes),
    ).model_dump(mode="json")
