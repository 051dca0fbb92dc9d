"""Forgotten passwords: ask for a link by e-mail, then choose a new password with it.

The request form answers the same for every well-formed address, so it cannot
be used to find out who has an account; the service decides whether a mail goes
out (:mod:`credits.identity.password_reset`). Requests are throttled like failed
sign-ins (admin_ui/throttle.py, the same limiter and store), per address asked
about and per client address, whether or not the account exists.

The link's origin is ``CREDITS_PUBLIC_URL`` when it is set, so a forged Host
header cannot make the mail point elsewhere; the embedded profile, which has
none, uses the address the request came to. The reset pages send no Referer,
so the token in their address goes nowhere else.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded

from admin_ui.throttle import (
    LIMITER_KEY,
    _account_key,
    throttle_endpoint,
    wait_seconds,
    wait_text,
)
from admin_ui.web import render, transaction
from credits.api.auth import EXTENSION_KEY, credits_extension
from credits.api.public_url import public_url_for
from credits.errors import CreditsError
from credits.identity import password_reset as reset_service
from credits.identity.errors import WeakPassword

blueprint = Blueprint("ui_password_reset", __name__)
REQUEST_ENDPOINT = "ui_password_reset.forgot_submit"
NO_REFERRER = {"Referrer-Policy": "no-referrer"}
_FIX = "Nothing was changed: correct the marked field."
_NO_EMAIL = "enter the e-mail address you sign in with"
_DIFFER = "the two new passwords differ; type the same one twice"
_THROTTLED = "Too many reset requests for this address or from your network. Wait {wait}."


def _limit_requests(state: BlueprintSetupState) -> None:
    """Counts every request for a link in the sign-in throttle's limiter and store."""
    settings = state.app.extensions[EXTENSION_KEY].settings
    limiter: Limiter = state.app.extensions[LIMITER_KEY]
    throttle_endpoint(state.app, REQUEST_ENDPOINT)
    for limits, key, scope in (
        (settings.reset_link_limit_per_account, _account_key, "reset-account"),
        (settings.reset_link_limit_per_address, None, "reset-address"),
    ):
        limiter.limit(
            limits,
            key_func=key,
            scope=scope,
            methods=["POST"],
        )(blueprint)


blueprint.record_once(_limit_requests)


def _minutes() -> int:
    return credits_extension().settings.password_reset_minutes


def _forgot_page(
    *, email: str = "", error: str | None = None, field_error: str | None = None, status: int = 200
) -> tuple[str, int]:
    errors = {"email": field_error} if field_error else {}
    page = render("password_reset/forgot.html", email=email, error=error, errors=errors)
    return page, status


def _link_for(token: str) -> str:
    return public_url_for(".reset_form", token=token)


@blueprint.errorhandler(RateLimitExceeded)
def _throttled(_: RateLimitExceeded) -> ResponseReturnValue:
    seconds = wait_seconds()
    email = request.form.get("email", "").strip()
    message = _THROTTLED.format(wait=wait_text(seconds))
    page, status = _forgot_page(email=email, error=message, status=429)
    return page, status, {"Retry-After": str(seconds)}


@blueprint.get("/forgot-password")
def forgot() -> ResponseReturnValue:
    return _forgot_page()


@blueprint.post("/forgot-password")
def forgot_submit() -> ResponseReturnValue:
    email = request.form.get("email", "").strip()
    if not email:
        return _forgot_page(error=_FIX, field_error=_NO_EMAIL, status=400)
    try:
        with transaction() as db:
            reset_service.request_reset(db, email=email, link_for=_link_for, minutes=_minutes())
    except CreditsError as refusal:
        # Only a malformed address is refused; whether an account exists is never said.
        return _forgot_page(email=email, error=_FIX, field_error=str(refusal), status=400)
    return render("password_reset/forgot.html", sent=True, minutes=_minutes())


def _reset_page(
    token: str,
    *,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    try:
        with transaction() as db:
            email = reset_service.check_link(db, token=token)
    except reset_service.ResetLinkInvalid:
        return render("password_reset/reset.html", email=None), 410, NO_REFERRER
    page = render(
        "password_reset/reset.html", email=email, token=token, errors=errors or {}, error=error
    )
    return page, status, NO_REFERRER


@blueprint.get("/reset-password/<token>")
def reset_form(token: str) -> ResponseReturnValue:
    return _reset_page(token)


@blueprint.post("/reset-password/<token>")
def reset_submit(token: str) -> ResponseReturnValue:
    new, repeat = request.form.get("new_password", ""), request.form.get("repeat_password", "")
    if new != repeat:
        return _reset_page(token, errors={"repeat_password": _DIFFER}, error=_FIX, status=400)
    try:
        with transaction() as db:
            reset_service.reset_password(db, token=token, password=new)
    except WeakPassword as refusal:
        errors = {"new_password": str(refusal)}
        return _reset_page(token, errors=errors, error=_FIX, status=refusal.status)
    except reset_service.ResetLinkInvalid:
        return render("password_reset/reset.html", email=None), 410, NO_REFERRER
    flash(
        "Your password is changed, every browser signed in to your account is signed out"
        " and every API token of your account is revoked."
    )
    flash("Sign in with your new password.")
    return redirect(url_for("ui_auth.login"))
