"""The signed-in person's account page: their name, ORCID iD and institution, and a
new password.

Each form is checked here first (a blank name, two new passwords that differ),
then by :mod:`credits.identity.account`; a refusal is shown at its field and
changes nothing. A new password ends every session of the account, this one
too, so the page signs this browser in again: the others stay signed out.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from admin_ui.web import actor, login_required, render, sign_in, transaction
from credits.errors import CreditsError
from credits.identity import account as account_service

blueprint = Blueprint("ui_account", __name__)
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


def _page(
    *,
    profile: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    profile_error: str | None = None,
    password_error: str | None = None,
    status: int = 200,
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
    )
    return page, status


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


@blueprint.post("/account/password")
@login_required
def change_password() -> ResponseReturnValue:
    me = actor()
    typed = {name: request.form.get(name, "") for name in PASSWORD_FIELDS}
    checks = (
        ("current_password", not typed["current_password"], _NO_CURRENT),
        ("repeat_password", typed["new_password"] != typed["repeat_password"], _DIFFER),
    )
    errors = {name: message for name, failed, message in checks if failed}
    if errors:
        return _page(errors=errors, password_error=_FIX, status=400)
    try:
        with transaction() as db:
            account_service.change_password(
                db, actor=me, current=typed["current_password"], new=typed["new_password"]
            )
    except CreditsError as refusal:
        status = 422 if refusal.status == 401 else refusal.status
        return _page(errors=_refusal(refusal), password_error=_FIX, status=status)
    if me.user_id is not None:
        sign_in(me.user_id)
    flash("Your password is changed. Every other browser signed in to your account is signed out.")
    return redirect(url_for(".account"))
