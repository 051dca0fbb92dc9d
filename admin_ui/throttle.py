"""Throttling password sign-ins (flask-limiter): failed attempts per account and per address.

Only failed sign-ins count (an answer of 401): a person who types their password
right is never slowed down, while guessing at one account, or at many accounts
from one address, stops at ``login_limit_per_account`` and
``login_limit_per_address``. Once a limit is reached, every sign-in on it is
refused with a 429 page until the window moves on, a correct password too.

The counts live in ``Settings.ratelimit_storage``: memory on the embedded
profile (one process), Redis in production so every web process shares them.
When Redis cannot be reached the counting goes on in this process's memory
rather than refusing everyone or failing the sign-in.
"""

from __future__ import annotations

import hashlib
import math
import time

from flask import Flask, Response, current_app, request
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
    for limits, key, scope in (
        (settings.login_limit_per_account, _account_key, "account"),
        (settings.login_limit_per_address, get_remote_address, "address"),
    ):
        limiter.limit(
            limits,
            key_func=key,
            scope=scope,
            methods=["POST"],
            deduct_when=_failed,
        )(blueprint)
    app.extensions[LIMITER_KEY] = limiter
    app.extensions[THROTTLED_ENDPOINTS_KEY] = {SIGN_IN_ENDPOINT}
    limiter.request_filter(_not_throttled)
    app.register_error_handler(RateLimitExceeded, _throttled)


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


def _account_key() -> str:
    """The account a sign-in names, hashed: the store never holds e-mail addresses."""
    email = request.form.get("email", "").strip().lower()
    return hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _wait_seconds() -> int:
    limiter: Limiter = current_app.extensions[LIMITER_KEY]
    breached = limiter.current_limit
    if breached is None:
        return 60
    return max(1, math.ceil(breached.reset_at - time.time()))


def _wait_text(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


def _throttled(error: RateLimitExceeded) -> ResponseReturnValue:
    """The sign-in page again, saying how long to wait; a problem document elsewhere."""
    seconds = _wait_seconds()
    message = THROTTLED.format(wait=_wait_text(seconds))
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
