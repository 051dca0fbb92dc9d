"""Throttling password sign-ins (flask-limiter): failed attempts per account and per address.

Only failed sign-ins count (an answer of 401): a person who types their password
right is never slowed down, while guessing at one account, or at many accounts
from one address, stops at ``login_limit_per_account`` and
``login_limit_per_address``. Once a limit is reached, every sign-in on it is
refused with a 429 page until the window moves on, a correct password too.

Every other form that checks a password (the account page's current password,
admin_ui/account.py) counts its wrong answers in the same limits
(:func:`limit_password_guesses`): the counts are shared, per account and per
address, so guessing through one form uses up the allowance of the other.

The counts live in ``Settings.ratelimit_storage``: memory on the embedded
profile (one process), Redis in production so every web process shares them.
When Redis cannot be reached the counting goes on in this process's memory
rather than refusing everyone or failing the sign-in.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.sansio.app import App
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from admin_ui.auth import blueprint, login_page
from credits.api.auth import EXTENSION_KEY
from credits.api.problems import problem_response
from credits.settings import Settings

LIMITER_KEY = "credits_login_limiter"
THROTTLED_ENDPOINTS_KEY = "credits_throttled_endpoints"
SIGN_IN_ENDPOINT = "ui_auth.login_submit"
FAILED_SIGN_IN = 401
GUESS_FLAG = "credits_wrong_guess"
THROTTLED = (
    "Too many failed sign-ins for this account or from your network. Wait {wait} and try again."
)


def init_app(app: Flask) -> None:
    """Limits ``POST /login`` on ``app``: one limiter, and its counts, per app."""
    settings: Settings = app.extensions[EXTENSION_KEY].settings
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.ratelimit_storage,
        key_prefix=f"{settings.instance_name}:login",
        strategy="moving-window",
        in_memory_fallback_enabled=True,
        # A storage error after the answer (counting a failure) is logged, not a 500.
        swallow_errors=True,
        headers_enabled=False,
    )
    app.extensions[LIMITER_KEY] = limiter
    app.extensions[THROTTLED_ENDPOINTS_KEY] = set()
    limit_password_guesses(
        app, blueprint, endpoint=SIGN_IN_ENDPOINT, account_key=_account_key, deduct_when=_failed
    )
    limiter.request_filter(_not_throttled)
    app.register_error_handler(RateLimitExceeded, _throttled)


def limit_password_guesses(
    app: App,
    target: Blueprint,
    *,
    endpoint: str,
    account_key: Callable[[], str],
    deduct_when: Callable[[Response], bool] | None = None,
    exempt_when: Callable[[], bool] | None = None,
) -> None:
    """Counts the wrong passwords that ``endpoint`` (a POST route of ``target``) answers
    in the sign-in limits, per account (``account_key``, hashed as
    :func:`account_key_for` hashes) and per client address.

    The limits are shared: every form registered here adds to, and is stopped by,
    the same counts in the same store. A wrong password counts when ``deduct_when``
    says so, by default when the view called :func:`note_wrong_password`.
    """
    settings: Settings = app.extensions[EXTENSION_KEY].settings
    limiter: Limiter = app.extensions[LIMITER_KEY]
    throttle_endpoint(app, endpoint)
    for limits, key, scope in (
        (settings.login_limit_per_account, account_key, "account"),
        (settings.login_limit_per_address, get_remote_address, "address"),
    ):
        limiter.shared_limit(
            limits,
            scope=scope,
            key_func=key,
            methods=["POST"],
            deduct_when=deduct_when or _wrong_password_noted,
            exempt_when=exempt_when,
        )(target)


def note_wrong_password() -> None:
    """Marks this request as a wrong password, for :func:`limit_password_guesses` to count."""
    setattr(g, GUESS_FLAG, True)


def _wrong_password_noted(_: Response) -> bool:
    return bool(g.get(GUESS_FLAG, False))


def throttle_endpoint(app: App, endpoint: str) -> None:
    """Has the limiter look at requests to ``endpoint`` too (it skips all others)."""
    app.extensions[THROTTLED_ENDPOINTS_KEY].add(endpoint)


def _not_throttled() -> bool:
    """True for a request the limiter may skip: every one but the limited forms' (so
    a blueprint's limits need no exemption of their own), before the limiter's own
    look-up of limits by route and blueprint, which costs a request tens of
    microseconds."""
    return request.endpoint not in current_app.extensions[THROTTLED_ENDPOINTS_KEY]


def _failed(response: Response) -> bool:
    return response.status_code == FAILED_SIGN_IN


def account_key_for(email: str | None) -> str:
    """An account's key in the limits: its e-mail address, hashed, so the store never
    holds one."""
    text = (email or "").strip().lower()
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _account_key() -> str:
    """The account a sign-in names."""
    return account_key_for(request.form.get("email", ""))


def wait_seconds() -> int:
    limiter: Limiter = current_app.extensions[LIMITER_KEY]
    breached = limiter.current_limit
    if breached is None:
        return 60
    # The window's own reset time: ``reset_at`` rounds it up a further second,
    # which could make a one-minute wait read 61 seconds.
    return max(1, math.ceil(breached.window.reset_time - time.time()))


def wait_text(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


def _throttled(error: RateLimitExceeded) -> ResponseReturnValue:
    """The sign-in page again, saying how long to wait; a problem document elsewhere."""
    seconds = wait_seconds()
    message = THROTTLED.format(wait=wait_text(seconds))
    headers = {"Retry-After": str(seconds)}
    if request.endpoint != SIGN_IN_ENDPOINT:
        return problem_response(
            status=429,
            title=error.name,
            type_="about:blank",
            detail=message,
            headers=headers,
        )
    return login_page(error=message, status=429, headers=headers)
