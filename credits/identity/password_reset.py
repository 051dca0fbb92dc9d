"""Forgotten passwords: a one-time link by e-mail, then a new password.

Asking for a link answers the same whatever the address: an unknown address, a
deactivated account and one that signs in only through its institution (no local
password) get no mail, so the answer cannot tell who has an account. A link
carries a random token (``secrets.token_urlsafe(32)``); only its SHA-256 is
stored. It works once, for ``minutes``, and only while it is the user's newest
link and the password it was asked against is still theirs: asking again, or
changing the password any other way, ends it.

Setting the new password follows the account page's rules
(:func:`credits.identity.service.set_password`: its length rules, and every
portal session of the user ends), revokes every API token of the user (a reset
is how an account is taken back, and a token made by whoever had it would
otherwise outlive the reset), appends ``user.password_reset`` naming the user by
id alone, and mails the user a notice.

Requests are throttled per address asked about and per client address by the
portal (admin_ui/password_reset.py); here, at most ``MAILS_PER_HOUR`` links go
to one account in an hour whatever the client, so no one can flood a mailbox.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.db import utcnow
from credits.errors import CreditsError
from credits.identity.models import PasswordReset, User
from credits.identity.schemas import UserOut
from credits.identity.service import _check_password, actor_for, normalize_email, set_password
from credits.identity.tokens import revoke_user_tokens
from credits.notifications.password_mail import queue_password_changed, queue_reset_link

MAILS_PER_HOUR = 3
TOKEN_MAX_LENGTH = 200
LINK_INVALID = (
    "this reset link has expired, was already used, or was replaced by a newer one;"
    " ask for a new link"
)


class ResetLinkInvalid(CreditsError):
    status = 410
    slug = "reset-link-invalid"
    title = "Reset link no longer valid"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _resettable_user(session: Session, email: str) -> User | None:
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None or not user.is_active or user.password_hash is None:
        return None
    return user


def _links_since(session: Session, user_id: int, since: datetime) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(PasswordReset)
        .where(PasswordReset.user_id == user_id, PasswordReset.created_at > since)
    )
    return count or 0


def _revoke_open_links(session: Session, user_id: int, at: datetime) -> None:
    session.execute(
        update(PasswordReset)
        .where(
            PasswordReset.user_id == user_id,
            PasswordReset.used_at.is_(None),
            PasswordReset.revoked_at.is_(None),
        )
        .values(revoked_at=at)
        .execution_options(synchronize_session=False)
    )


def request_reset(
    session: Session,
    *,
    email: str,
    link_for: Callable[[str], str],
    minutes: int,
    now: datetime | None = None,
) -> int | None:
    """Mails a one-time link (``link_for(token)``) to the account with ``email``, if it
    has a local password; any earlier link of the account stops working.

    Returns the outbox row id, or None when no mail goes out (no such account, no
    password, deactivated, or ``MAILS_PER_HOUR`` links already this hour): callers
    must answer the same either way. Raises InvalidEmail for text that is not an
    e-mail address at all.
    """
    at = now or utcnow()
    user = _resettable_user(session, email)
    if user is None or _links_since(session, user.id, at - timedelta(hours=1)) >= MAILS_PER_HOUR:
        return None
    _revoke_open_links(session, user.id, at)
    token = secrets.token_urlsafe(32)
    reset = PasswordReset(
        user_id=user.id,
        token_hash=_digest(token),
        password_fingerprint=_digest(cast(str, user.password_hash)),
        created_at=at,
        expires_at=at + timedelta(minutes=minutes),
    )
    session.add(reset)
    session.flush()
    return queue_reset_link(
        session,
        reset_id=reset.id,
        user_id=user.id,
        email=user.email,
        name=user.name,
        link=link_for(token),
        minutes=minutes,
    )


def _live_link(session: Session, token: str, at: datetime) -> tuple[PasswordReset, User]:
    """The link ``token`` opens and its user; raises ResetLinkInvalid, one message for
    every reason (unknown, used, replaced, expired, password changed since)."""
    reset = None
    if 0 < len(token) <= TOKEN_MAX_LENGTH:
        reset = session.scalar(
            select(PasswordReset).where(PasswordReset.token_hash == _digest(token))
        )
    user = None if reset is None else session.get(User, reset.user_id)
    if (
        reset is None
        or user is None
        or reset.used_at is not None
        or reset.revoked_at is not None
        or reset.expires_at <= at
        or not user.is_active
        or user.password_hash is None
        or _digest(user.password_hash) != reset.password_fingerprint
    ):
        raise ResetLinkInvalid(LINK_INVALID)
    return reset, user


def check_link(session: Session, *, token: str, now: datetime | None = None) -> str:
    """The e-mail address of the account a live link resets; raises ResetLinkInvalid."""
    _, user = _live_link(session, token, now or utcnow())
    return user.email


def reset_password(
    session: Session, *, token: str, password: str, now: datetime | None = None
) -> UserOut:
    """Sets the password of the link's account and uses the link up; every portal
    session of the user ends, every API token of the user is revoked (one
    ``token.revoked`` each), ``user.password_reset`` is appended and a notice mailed.

    Raises ResetLinkInvalid, WeakPassword (the link stays usable).
    """
    at = now or utcnow()
    reset, user = _live_link(session, token, at)
    _check_password(password)
    # The claim is one conditional update, so two requests racing with one link
    # cannot both set a password.
    claimed = cast(
        CursorResult[Any],
        session.execute(
            update(PasswordReset)
            .where(
                PasswordReset.id == reset.id,
                PasswordReset.used_at.is_(None),
                PasswordReset.revoked_at.is_(None),
            )
            .values(used_at=at)
            .execution_options(synchronize_session=False)
        ),
    )
    if claimed.rowcount != 1:
        raise ResetLinkInvalid(LINK_INVALID)
    actor = actor_for(user)
    changed = set_password(session, email=user.email, password=password, actor=actor)
    revoke_user_tokens(session, user_id=user.id, actor=actor)
    record_event(
        session,
        event_type="user.password_reset",
        actor=actor.label,
        subject_type="user",
        subject_id=str(user.id),
        # Which link or address is not logged: the public log keeps no personal data.
        data={},
    )
    queue_password_changed(
        session, reset_id=reset.id, user_id=user.id, email=user.email, name=user.name
    )
    return changed
