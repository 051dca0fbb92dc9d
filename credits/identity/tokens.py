"""API tokens: created with a secret shown once, stored as a SHA-256, scoped,
expiring and revocable; resolved into the actor of a request."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.orm import Session

from credits.audit.service import record_event, record_events
from credits.db import utcnow
from credits.identity.actor import Actor
from credits.identity.errors import (
    InvalidExpiry,
    InvalidScope,
    InvalidToken,
    TokenAlreadyRevoked,
    TokenExpired,
    TokenNotFound,
    TokenOwnerInactive,
    TokenRevoked,
)
from credits.identity.models import ApiToken, Role, Scope, User, UserRole
from credits.identity.schemas import CreatedToken, TokenOut
from credits.identity.service import clean_name, load_user

TOKEN_NAME_MAX_LENGTH = 100
TOKEN_PREFIX = "crd_"  # noqa: S105 - the public marker every token starts with
# "crd_" and eight random characters: enough to tell tokens apart in a listing,
# far too few to help anyone guess the other 35.
TOKEN_DISPLAY_LENGTH = 12
DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 3650
# Writing last_used_at on every request would turn every read into a row write
# (and a row lock on PostgreSQL); to the minute is as precise as anyone needs.
LAST_USED_RESOLUTION = timedelta(minutes=1)
ALLOWED_SCOPES = ", ".join(scope.value for scope in Scope)


def _parse_scopes(scopes: Iterable[str]) -> list[Scope]:
    """Distinct scopes, sorted; empty means every right of the user. Raises InvalidScope."""
    items = [scopes] if isinstance(scopes, str) else list(scopes)
    parsed: set[Scope] = set()
    for item in items:
        try:
            parsed.add(Scope(str(item).strip().lower()))
        except ValueError:
            raise InvalidScope(
                f"unknown scope {str(item)!r}; allowed scopes: {ALLOWED_SCOPES}",
                allowed=[s.value for s in Scope],
            ) from None
    return sorted(parsed)


def _token_lifetime(expires_in_days: int | None) -> timedelta | None:
    """None for a token that never expires; raises InvalidExpiry outside 1..3650 days."""
    if expires_in_days is None:
        return None
    # bool is an int in Python; True days is a bug in the caller, not one day.
    if isinstance(expires_in_days, bool) or not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise InvalidExpiry(
            f"a token expires in 1 to {MAX_TOKEN_DAYS} days, or never; not {expires_in_days!r}"
        )
    return timedelta(days=expires_in_days)


def hash_secret(secret: str) -> str:
    # A plain SHA-256 is enough: the secret has 256 random bits, so there is
    # nothing for a slow hash to protect, and an equality lookup on the hash
    # gives nothing away through timing.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _token_event(event_type: str, token: ApiToken, actor: Actor, **data: Any) -> dict[str, Any]:
    # Never the secret, nor its prefix: the prefix is part of the secret, and the
    # append-only log keeps whatever it is given for good. Nor the owner's e-mail or
    # the token's name, free text that may name a person: the log is public.
    return {
        "event_type": event_type,
        "actor": actor.label,
        "subject_type": "api_token",
        "subject_id": str(token.id),
        "data": {"user_id": token.user_id, **data},
    }


# API tokens.


def create_token(
    session: Session,
    *,
    email: str,
    actor: Actor,
    name: str = "",
    expires_in_days: int | None = DEFAULT_TOKEN_DAYS,
    scopes: Iterable[str] = (),
) -> CreatedToken:
    """Creates an API token for the user; the secret is in the result and nowhere else.

    The secret is ``crd_`` and 43 URL-safe characters; only its SHA-256 is
    stored, with its first 12 characters as a display prefix. Scopes are
    stored sorted and space-separated; none means every right of the user.
    ``expires_in_days`` is 1 to 3650, or None for a token that never expires.
    Appends ``token.created`` (never with the secret).

    Raises InvalidName, InvalidScope, InvalidExpiry, UserNotFound.
    """
    label = clean_name(name, limit=TOKEN_NAME_MAX_LENGTH, required=False)
    granted = _parse_scopes(scopes)
    lifetime = _token_lifetime(expires_in_days)
    user = load_user(session, email)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        user=user,
        name=label,
        prefix=secret[:TOKEN_DISPLAY_LENGTH],
        secret_hash=hash_secret(secret),
        scopes=" ".join(scope.value for scope in granted),
        created_at=now,
        expires_at=None if lifetime is None else now + lifetime,
    )
    session.add(token)
    session.flush()
    expires_at = None if token.expires_at is None else token.expires_at.isoformat()
    scopes_data = [scope.value for scope in granted]
    event = _token_event("token.created", token, actor, scopes=scopes_data, expires_at=expires_at)
    record_event(session, **event)
    return CreatedToken(token=TokenOut.model_validate(token), secret=secret)


def revoke_token(session: Session, *, token_id: int, actor: Actor) -> TokenOut:
    """Revokes the token now and appends ``token.revoked``.

    Raises TokenNotFound, TokenAlreadyRevoked (revoking twice is refused, so a
    caller learns that someone else already did it).
    """
    # Locked so that two concurrent revocations cannot both append an event.
    token = session.get(ApiToken, token_id, with_for_update=True)
    if token is None:
        raise TokenNotFound(f"no API token has the id {token_id}", token_id=token_id)
    if token.revoked_at is not None:
        raise TokenAlreadyRevoked(
            f"API token {token_id} was already revoked at {token.revoked_at.isoformat()}",
            token_id=token_id,
        )
    token.revoked_at = utcnow()
    session.flush()
    record_event(session, **_token_event("token.revoked", token, actor))
    return TokenOut.model_validate(token)


def revoke_user_tokens(session: Session, *, user_id: int, actor: Actor) -> list[TokenOut]:
    """Revokes every token of the user not revoked yet (expired ones too), now, and
    appends one ``token.revoked`` for each, as :func:`revoke_token` does: what a
    password reset and "sign out everywhere" do, so that a token made with a stolen
    session or password stops with them. Web workers' kept identities are forgotten
    at commit like any revocation's (credits/identity/token_cache.py).

    Returns the tokens revoked, oldest first; none when there were none to revoke.
    """
    # Locked, and re-read under the lock, so that a concurrent revocation of one of
    # them cannot append a second event.
    found = session.scalars(
        select(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    if not found:
        return []
    at = utcnow()
    for token in found:
        token.revoked_at = at
    session.flush()
    record_events(session, [_token_event("token.revoked", token, actor) for token in found])
    return [TokenOut.model_validate(token) for token in found]


def list_tokens(session: Session, *, email: str | None = None) -> list[TokenOut]:
    """Every token, or the user's when ``email`` is given, oldest first.

    Raises UserNotFound for an unknown ``email``.
    """
    query = select(ApiToken).order_by(ApiToken.id)
    if email is not None:
        query = query.where(ApiToken.user_id == load_user(session, email).id)
    return [TokenOut.model_validate(token) for token in session.scalars(query)]


# Token, owner and roles in one round trip, built once: every API request runs it.
_IDENTIFY = (
    select(
        ApiToken.id.label("token_id"),
        ApiToken.prefix,
        ApiToken.scopes,
        ApiToken.expires_at,
        ApiToken.revoked_at,
        ApiToken.last_used_at,
        User.id.label("user_id"),
        User.email,
        User.is_active,
        UserRole.role,
    )
    .join(User, User.id == ApiToken.user_id)
    .outerjoin(UserRole, UserRole.user_id == User.id)
    .where(ApiToken.secret_hash == bindparam("secret_hash"))
)


@dataclass(frozen=True)
class TokenIdentity:
    """Who a token secret stands for, with what each later use must check again: its
    expiry, and when its last use was recorded."""

    actor: Actor
    token_id: int
    prefix: str
    expires_at: datetime | None
    last_used_at: datetime | None

    def check_unexpired(self, at: datetime) -> None:
        """Raises TokenExpired when the token has expired by ``at``."""
        if self.expires_at is not None and self.expires_at <= at:
            raise TokenExpired(
                f"the API token {self.prefix}… expired at {self.expires_at:%Y-%m-%d %H:%M} UTC"
            )

    def use_due(self, at: datetime) -> bool:
        """True when a use at ``at`` should be recorded (:func:`mark_token_used`)."""
        return self.last_used_at is None or at - self.last_used_at >= LAST_USED_RESOLUTION


def identify_token(
    db: Session | Connection,
    *,
    secret: str | None = None,
    secret_hash: str | None = None,
    now: datetime | None = None,
) -> TokenIdentity:
    """The actor a token secret (or the secret's :func:`secret_hash`) stands for, read
    in one statement that writes nothing (through a session, or a bare connection
    where a session's cost matters).

    ``now`` (an aware UTC time) defaults to the clock. The actor's scopes are None
    when the token has none, meaning every right of its user.

    Raises InvalidToken for an unknown secret, and its subclasses TokenRevoked,
    TokenExpired and TokenOwnerInactive.
    """
    at = now or utcnow()
    if secret_hash is None:
        if secret is None:
            raise TypeError("identify_token needs the secret or its hash")
        secret_hash = hash_secret(secret)
    rows = db.execute(_IDENTIFY, {"secret_hash": secret_hash}).all()
    if not rows:
        raise InvalidToken("the API token is not recognised")
    token = rows[0]
    if token.revoked_at is not None:
        raise TokenRevoked(f"the API token {token.prefix}… has been revoked")
    identity = TokenIdentity(
        actor=Actor.for_user(
            user_id=token.user_id,
            email=token.email,
            roles=frozenset(Role(row.role) for row in rows if row.role is not None),
            scopes=frozenset(Scope(item) for item in token.scopes.split()) or None,
            token_id=token.token_id,
        ),
        token_id=token.token_id,
        prefix=token.prefix,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
    )
    identity.check_unexpired(at)
    if not token.is_active:
        raise TokenOwnerInactive(f"the account of API token {token.prefix}… is deactivated")
    return identity


def mark_token_used(session: Session, *, token_id: int, at: datetime) -> None:
    """Records a use of the token at ``at``, unless one within the last minute is recorded.

    The condition is in the statement, so concurrent requests of one token write
    the row once a minute, not once each.
    """
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at <= at - LAST_USED_RESOLUTION,
            ),
        )
        .values(last_used_at=at)
    )


def resolve_token(session: Session, *, secret: str, now: datetime | None = None) -> Actor:
    """The actor a token secret stands for; records when the token was last used
    (at most once a minute), in ``session``, which must be able to write.

    Raises what :func:`identify_token` raises.
    """
    at = now or utcnow()
    identity = identify_token(session, secret=secret, now=at)
    if identity.use_due(at):
        mark_token_used(session, token_id=identity.token_id, at=at)
    return identity.actor
