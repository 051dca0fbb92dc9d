"""Signing in and out (local passwords, OIDC), and the API tokens page."""

from __future__ import annotations

from typing import Any

import requests
from flask import Blueprint, current_app, flash, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from admin_ui.web import actor, login_required, render, sign_in, transaction
from credits.api.auth import credits_extension
from credits.errors import CreditsError
from credits.identity.models import User
from credits.identity.service import authenticate_password
from credits.identity.tokens import create_token, list_tokens, revoke_token

blueprint = Blueprint(
    "ui_auth",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)
TOKEN_DAYS = (30, 90, 365)
SCOPES = ("read", "write", "meter")


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("ui_home.dashboard")


@blueprint.get("/login")
def login() -> ResponseReturnValue:
    return render("login.html", next=request.args.get("next", ""), oidc=_oidc_name())


@blueprint.post("/login")
def login_submit() -> ResponseReturnValue:
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    try:
        with transaction() as db:
            signed_in = authenticate_password(db, email=email, password=password)
    except CreditsError as error:
        return render(
            "login.html",
            error=str(error),
            email=email,
            next=request.form.get("next", ""),
            oidc=_oidc_name(),
        ), 401
    if signed_in.user_id is None:
        return render("login.html", error="this account cannot sign in", oidc=_oidc_name()), 401
    sign_in(signed_in.user_id)
    return redirect(_safe_next(request.form.get("next")))


@blueprint.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("ui_auth.login"))


def _oidc_name() -> str | None:
    settings = credits_extension().settings
    return settings.oidc_display_name if settings.oidc_issuer else None


def _oidc_client() -> Any:
    from authlib.integrations.flask_client import (  # type: ignore[import-untyped]  # noqa: PLC0415
        OAuth,
    )

    oauth = current_app.extensions.get("credits_oauth")
    if oauth is None:
        settings = credits_extension().settings
        oauth = OAuth(current_app)
        oauth.register(
            "oidc",
            server_metadata_url=settings.oidc_issuer.rstrip("/")
            + "/.well-known/openid-configuration",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            client_kwargs={"scope": "openid email profile"},
        )
        current_app.extensions["credits_oauth"] = oauth
    return oauth.oidc


@blueprint.get("/login/oidc")
def login_oidc() -> ResponseReturnValue:
    if _oidc_name() is None:
        return redirect(url_for("ui_auth.login"))
    session["oidc_next"] = _safe_next(request.args.get("next"))
    redirect_to = url_for("ui_auth.oidc_callback", _external=True)
    try:
        response: ResponseReturnValue = _oidc_client().authorize_redirect(redirect_to)
    except requests.RequestException as error:
        return _provider_unreachable(error)
    return response


def _provider_unreachable(error: Exception) -> ResponseReturnValue:
    """The provider (its discovery document, token or keys) did not answer."""
    session.pop("oidc_next", None)
    current_app.logger.warning("OIDC provider unreachable: %r", error)
    return render(
        "login.html",
        error=f"{_oidc_name()} cannot be reached just now; try again later",
        oidc=_oidc_name(),
    ), 503


class _Refused(Exception):
    """A sign-in that cannot go on; the message is shown on the sign-in page."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@blueprint.get("/auth/callback")
def oidc_callback() -> ResponseReturnValue:
    """The provider's answer: an existing, active account with a verified email signs in."""
    if _oidc_name() is None:
        return redirect(url_for("ui_auth.login"))
    try:
        user_id = _active_user_id(_verified_email())
    except _Refused as refusal:
        session.pop("oidc_next", None)
        return render("login.html", error=str(refusal), oidc=_oidc_name()), refusal.status
    sign_in(user_id)
    return redirect(session.pop("oidc_next", None) or url_for("ui_home.dashboard"))


def _verified_email() -> str:
    from authlib.integrations.base_client import (  # type: ignore[import-untyped]  # noqa: PLC0415
        MismatchingStateError,
        OAuthError,
    )
    from joserfc.errors import JoseError  # noqa: PLC0415 - with Authlib, only when used

    try:
        token = _oidc_client().authorize_access_token()
    except requests.RequestException as error:
        current_app.logger.warning("OIDC provider unreachable: %r", error)
        raise _Refused(f"{_oidc_name()} cannot be reached just now; try again later", 503) from None
    except MismatchingStateError:
        raise _Refused("this sign-in did not start here or has expired; try again", 400) from None
    except (OAuthError, JoseError) as error:
        # The provider's error code is not shown: anyone can put one in a link here.
        current_app.logger.warning("OIDC sign-in refused: %r", error)
        raise _Refused(f"{_oidc_name()} did not sign you in; try again", 401) from None
    claims = token.get("userinfo") or {}
    email = str(claims.get("email", "")).strip().lower()
    if not email or claims.get("email_verified") is False:
        raise _Refused("your provider sent no verified email", 401)
    return email


def _active_user_id(email: str) -> int:
    with transaction() as db:
        user = db.scalar(select(User).where(User.email == email))
        user_id = user.id if user is not None and user.is_active else None
    if user_id is None:
        raise _Refused(f"no active account uses {email}; ask the platform's operators for one", 403)
    return user_id


@blueprint.get("/tokens")
@login_required
def tokens() -> ResponseReturnValue:
    me = actor()
    with transaction() as db:
        mine = list_tokens(db, email=me.email)
    return render("tokens.html", tokens=mine, days=TOKEN_DAYS, scopes=SCOPES)


@blueprint.post("/tokens")
@login_required
def create_api_token() -> ResponseReturnValue:
    me = actor()
    name = request.form.get("name", "").strip()
    days_text = request.form.get("days", "90")
    scopes = [scope for scope in request.form.getlist("scope") if scope in SCOPES]
    try:
        days = int(days_text)
        if days not in TOKEN_DAYS:
            raise ValueError(days_text)
    except ValueError:
        return _tokens_with_error("choose how long the token lives", me.email), 400
    try:
        with transaction() as db:
            created = create_token(
                db, email=me.email or "", actor=me, name=name, expires_in_days=days, scopes=scopes
            )
    except CreditsError as error:
        return _tokens_with_error(str(error), me.email), 400
    with transaction() as db:
        mine = list_tokens(db, email=me.email)
    return render("tokens.html", tokens=mine, days=TOKEN_DAYS, scopes=SCOPES, secret=created.secret)


def _tokens_with_error(message: str, email: str | None) -> str:
    with transaction() as db:
        mine = list_tokens(db, email=email)
    return render("tokens.html", tokens=mine, days=TOKEN_DAYS, scopes=SCOPES, error=message)


@blueprint.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_api_token(token_id: int) -> ResponseReturnValue:
    me = actor()
    with transaction() as db:
        own = {token.id for token in list_tokens(db, email=me.email)}
        if token_id not in own:
            return render("error.html", title="Not found", message="No such token."), 404
        revoke_token(db, token_id=token_id, actor=me)
    flash("Token revoked.")
    return redirect(url_for("ui_auth.tokens"))
