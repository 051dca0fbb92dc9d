"""Portal sessions the server can end: a generation, an idle and an absolute lifetime.

The signed cookie holds the user's id, the user's session generation at sign-in,
and when the session began and was last used. A request is signed in only while
the generation still equals the user's (sign-out, a new password and a role
change raise it), the session has been used within ``session_idle_hours`` and
began within ``session_max_days``. The cookie's signature alone proves none of
that: a copy of it taken before any of those events stops working with them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import MutableMapping
from typing import Any

from credits.identity.models import User
from credits.settings import Settings

USER_KEY = "user_id"
GENERATION_KEY = "generation"
STARTED_KEY = "started_at"
SEEN_KEY = "seen_at"
CSRF_FIELD = "csrf_token"
# The last-used time is rewritten at most this often, so most responses set no cookie.
SEEN_RESOLUTION_S = 60
HOUR_S = 3600
DAY_S = 86400

Cookie = MutableMapping[str, Any]


def now() -> float:
    """Seconds since the epoch; tests replace this to move time."""
    return time.time()


def start(cookie: Cookie, *, user_id: int, generation: int) -> None:
    """A fresh session for the user: nothing from before sign-in is kept."""
    moment = int(now())
    cookie.clear()
    cookie.update(
        {
            USER_KEY: user_id,
            GENERATION_KEY: generation,
            STARTED_KEY: moment,
            SEEN_KEY: moment,
            CSRF_FIELD: secrets.token_urlsafe(32),
        }
    )


def signed_in_user_id(cookie: Cookie) -> int | None:
    user_id = cookie.get(USER_KEY)
    return user_id if isinstance(user_id, int) else None


def is_current(cookie: Cookie, user: User, settings: Settings) -> bool:
    """Whether the session is still the user's: active, same generation, within lifetimes."""
    generation = cookie.get(GENERATION_KEY)
    started = cookie.get(STARTED_KEY)
    seen = cookie.get(SEEN_KEY)
    if not (isinstance(generation, int) and isinstance(started, int) and isinstance(seen, int)):
        return False
    moment = now()
    return (
        user.is_active
        and generation == user.session_generation
        and moment - started < settings.session_max_days * DAY_S
        and moment - seen < settings.session_idle_hours * HOUR_S
    )


def touch(cookie: Cookie) -> None:
    """Records that the session was used now (at most once a minute)."""
    moment = int(now())
    seen = cookie.get(SEEN_KEY)
    if not isinstance(seen, int) or moment - seen >= SEEN_RESOLUTION_S:
        cookie[SEEN_KEY] = moment


def end(cookie: Cookie) -> None:
    """Forgets who signed in; anything else the cookie holds goes too."""
    cookie.clear()
