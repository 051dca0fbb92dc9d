"""The signed-in person's account page: their name, ORCID iD and institution, and a
new password.

Each form is checked here first (a blank name, two new passwords that differ),
then by :mod:`credits.identity.account`; a refusal is shown at its field and
changes nothing. A new password ends every session of the account, this one
too, so the page signs this browser in again: the others stay signed out. With
its box ticked (the default) it revokes every API token of the account too.

A wrong current password counts as a failed sign-in of the account, in the same
per-account and per-address limits and store as ``POST /login``
(admin_ui/throttle.py): a session left open cannot be used to guess the password
any faster than the sign-in form can, and once a limit is reached the form
answers 429 until the window moves on, for the right password too.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_limiter import RateLimitExceeded

from admin_ui.auth import tokens_revoked_notice
from admin_ui.throttle import (
    account_key_for,
    limit_password_guesses,
    note_wrong_password,
    wait_seconds,
    wait_text,
)
from admin_ui.web import actor, current_actor, login_required, render, sign_in, transaction
from credits.errors import CreditsError
from credits.identity import account as account_service

blueprint = Blueprint("ui_account", __name__)
CHANGE_ENDPOINT = "ui_account.change_password"
PROFILE_FIELDS = ("name", "orcid", "institution")
PASSWORD_FIELDS = ("current_password", "new_password", "repeat_password")
# Where a refusal of the service lands, by its problem slug.
SLUG_FIELDS = {
    "invalid-name": "name",
    "invalid-orcid": "orcid",
    "orcid-taken": "orcid",
    "weak-password": "new_password",
}
_FIX = "Nothing was changed: correct the marked field."
_NO_CURRENT = "enter the password you sign in with now"
_DIFFER = "the two new passwords differ; type the same one twice"
_UNCHANGED = "Nothing was changed."
_THROTTLED = (
    "Too many wrong passwords for this account or from your network. Wait {wait} and try again."
)
REVOKE_TOKENS_FIELD = "revoke_tokens"


def _signed_in_account_key() -> str:
    """The signed-in account, hashed as the sign-in form's limit hashes the e-mail typed."""
    me = current_actor()
    return account_key_for(me.email if me is not None else None)


def _not_signed_in() -> bool:
    # Nobody to count against: the view sends them to the sign-in page.
    return current_actor() is None


def _limit_guesses(state: BlueprintSetupState) -> None:
    """Counts wrong current passwords in the sign-in throttle's limits and store."""
    limit_password_guesses(
        state.app,
        blueprint,
        endpoint=CHANGE_ENDPOINT,
        account_key=_signed_in_account_key,
        exempt_when=_not_signed_in,
    )


blueprint.record_once(_limit_guesses)


def _page(
    *,
    profile: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    profile_error: str | None = None,
    password_error: str | None = None,
    revoke_tokens: bool = True,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> ResponseReturnValue:
    me = actor()
    with transaction() as db:
        user, has_password = account_service.my_account(db, actor=me)
    stored = {"name": user.name, "orcid": user.orcid or "", "institution": user.institution or ""}
    page = render(
        "account.html",
        user=user,
        has_password=has_password,
        values=profile or stored,
        errors=errors or {},
        profile_error=profile_error,
        password_error=password_error,
        revoke_tokens=revoke_tokens,
    )
    return page, status, headers or {}


def _refusal(refusal: CreditsError) -> dict[str, str]:
    named = refusal.extra.get("field")
    known = (*PROFILE_FIELDS, *PASSWORD_FIELDS)
    field = named if named in known else SLUG_FIELDS.get(refusal.slug, "name")
    return {str(field): str(refusal)}


@blueprint.get("/account")
@login_required
def account() -> ResponseReturnValue:
    return _page()


@blueprint.post("/account")
@login_required
def update_profile() -> ResponseReturnValue:
    me = actor()
    values = {name: request.form.get(name, "").strip() for name in PROFILE_FIELDS}
    if not values["name"]:
        errors = {"name": "enter your name as colleagues know it"}
        return _page(profile=values, errors=errors, profile_error=_FIX, status=400)
    try:
        with transaction() as db:
            account_service.update_profile(
                db,
                actor=me,
                name=values["name"],
                orcid=values["orcid"],
                institution=values["institution"],
            )
    except CreditsError as refusal:
        errors = _refusal(refusal)
        return _page(profile=values, errors=errors, profile_error=_FIX, status=refusal.status)
    flash("Your profile is saved.")
    return redirect(url_for(".account"))


@blueprint.errorhandler(RateLimitExceeded)
def _throttled(_: RateLimitExceeded) -> ResponseReturnValue:
    seconds = wait_seconds()
    message = _THROTTLED.format(wait=wait_text(seconds))
    return _page(
        errors={"current_password": message},
        password_error=_UNCHANGED,
        revoke_tokens=_revoke_tokens_ticked(),
        status=429,
        headers={"Retry-After": str(seconds)},
    )


def _revoke_tokens_ticked() -> bool:
    return request.form.get(REVOKE_TOKENS_FIELD) == "on"


@blueprint.post("/account/password")
@login_required
def change_password() -> ResponseReturnValue:
    me = actor()
    typed = {name: request.form.get(name, "") for name in PASSWORD_FIELDS}
    revoke_tokens = _revoke_tokens_ticked()
    checks = (
        ("current_password", not typed["current_password"], _NO_CURRENT),
        ("repeat_password", typed["new_password"] != typed["repeat_password"], _DIFFER),
    )
    errors = {name: message for name, failed, message in checks if failed}
    if errors:
        return _page(errors=errors, password_error=_FIX, revoke_tokens=revoke_tokens, status=400)
    try:
        with transaction() as db:
            _, revoked = account_service.change_password(
                db,
                actor=me,
                current=typed["current_password"],
                new=typed["new_password"],
                revoke_tokens=revoke_tokens,
            )
    except CreditsError as refusal:
        if refusal.status == 401:
            note_wrong_password()
        status = 422 if refusal.status == 401 else refusal.status
        return _page(
            errors=_refusal(refusal),
            password_error=_FIX,
            revoke_tokens=revoke_tokens,
            status=status,
        )
    if me.user_id is not None:
        sign_in(me.user_id)
    done = "Your password is changed. Every other browser signed in to your account is signed out."
    flash(f"{done} {tokens_revoked_notice(revoked)}" if revoke_tokens else done)
    return redirect(url_for(".account"))
