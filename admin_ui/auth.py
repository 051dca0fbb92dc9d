"""Signing in and out (local passwords, OIDC), and the API tokens page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Blueprint, current_app, flash, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from admin_ui import sessions
from admin_ui.web import actor, current_actor, login_required, render, sign_in, transaction
from credits.api.auth import credits_extension, writes
from credits.api.public_url import public_url_for
from credits.errors import CreditsError
from credits.identity import account as account_service
from credits.identity.oidc import oidc_sign_in
from credits.identity.schemas import TokenOut
from credits.identity.service import authenticate_password, end_sessions
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
OIDC_NEXT_KEY = "oidc_next"


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if target and _is_local_path(target):
        return target
    return url_for("ui_home.dashboard")


def _is_local_path(target: str) -> bool:
    # Browsers read "/\\host" as "//host", and drop tabs and newlines from URLs.
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def login_page(
    *,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> ResponseReturnValue:
    """The sign-in page, keeping the e-mail typed and the page to go on to."""
    source = request.form if request.method == "POST" else request.args
    page = render(
        "login.html",
        error=error,
        email=request.form.get("email", "").strip(),
        next=source.get("next", ""),
        oidc=_oidc_name(),
    )
    return page, status, headers or {}


@blueprint.get("/login")
def login() -> ResponseReturnValue:
    return login_page()


@blueprint.post("/login")
def login_submit() -> ResponseReturnValue:
    """A password sign-in; failures count towards the limits in admin_ui/throttle.py."""
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    try:
        with transaction() as db:
            signed_in = authenticate_password(db, email=email, password=password)
    except CreditsError as error:
        return login_page(error=str(error), status=401)
    if signed_in.user_id is None:
        return login_page(error="this account cannot sign in", status=401)
    sign_in(signed_in.user_id)
    return redirect(_safe_next(request.form.get("next")))


@blueprint.post("/logout")
def logout() -> ResponseReturnValue:
    """Signs out; the account's other sessions end too (one generation per account)."""
    _end_sessions()
    flash("You are signed out.")
    return redirect(url_for("ui_auth.login"))


@blueprint.post("/sessions/end")
@login_required
def sign_out_everywhere() -> ResponseReturnValue:
    """Ends every session of the account, in every browser, this one included, and
    revokes every API token of it: one made from a stolen session stops too."""
    me = actor()
    with transaction() as db:
        revoked = account_service.sign_out_everywhere(db, actor=me)
    sessions.end(session)
    # One message: a page shows each as its own status.
    flash(
        "You are signed out everywhere: every browser must sign in again. "
        + tokens_revoked_notice(revoked)
    )
    return redirect(url_for("ui_auth.login"))


def tokens_revoked_notice(count: int) -> str:
    """What a page says after revoking every API token of the account."""
    if count == 0:
        return "Your account had no API tokens to revoke."
    tokens_text = "1 API token" if count == 1 else f"{count} API tokens"
    return f"Revoked {tokens_text} of your account: create new ones where you still need them."


def _end_sessions() -> None:
    me = current_actor()
    if me is not None and me.user_id is not None:
        with transaction() as db:
            end_sessions(db, user_id=me.user_id)
    sessions.end(session)


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
    session[OIDC_NEXT_KEY] = _safe_next(request.args.get("next"))
    redirect_to = public_url_for("ui_auth.oidc_callback")
    try:
        response: ResponseReturnValue = _oidc_client().authorize_redirect(redirect_to)
    except requests.RequestException as error:
        return _provider_unreachable(error)
    return response


def _provider_unreachable(error: Exception) -> ResponseReturnValue:
    """The provider (its discovery document, token or keys) did not answer."""
    session.pop(OIDC_NEXT_KEY, None)
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
@writes  # the first sign-in binds the provider's subject to the account
def oidc_callback() -> ResponseReturnValue:
    """The provider's answer: the account bound to its subject (or, the first time, the
    active account with its verified e-mail) signs in and goes on to the page it asked for."""
    if _oidc_name() is None:
        return redirect(url_for("ui_auth.login"))
    # Signing in starts a fresh session: take the page to go on to out of the old one first.
    next_page = _safe_next(session.pop(OIDC_NEXT_KEY, None))
    try:
        user_id = _oidc_user_id(_provider_claims())
    except _Refused as refusal:
        return render("login.html", error=str(refusal), oidc=_oidc_name()), refusal.status
    sign_in(user_id)
    return redirect(next_page)


def _provider_claims() -> dict[str, Any]:
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
    claims: dict[str, Any] = dict(token.get("userinfo") or {})
    return claims


def _oidc_user_id(claims: dict[str, Any]) -> int:
    """The account these ID-token claims sign in to (credits/identity/oidc.py)."""
    try:
        with transaction() as db:
            signed_in = oidc_sign_in(
                db,
                issuer=str(claims.get("iss") or ""),
                subject=str(claims.get("sub") or ""),
                email=str(claims.get("email") or ""),
                email_verified=claims.get("email_verified"),
            )
    except CreditsError as error:
        raise _Refused(str(error), error.status) from None
    if signed_in.user_id is None:
        raise _Refused("this account cannot sign in", 403)
    return signed_in.user_id


@blueprint.get("/tokens")
@login_required
def tokens() -> ResponseReturnValue:
    me = actor()
    with transaction() as db:
        mine = list_tokens(db, email=me.email)
    return _tokens_page(mine)


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
    return _tokens_page(mine, secret=created.secret)


def _tokens_with_error(message: str, email: str | None) -> str:
    with transaction() as db:
        mine = list_tokens(db, email=email)
    return _tokens_page(mine, error=message)


def _tokens_page(mine: list[TokenOut], **extra: Any) -> str:
    """The tokens page, which also offers "Sign out everywhere" and states session lifetimes."""
    settings = credits_extension().settings
    return render(
        "tokens.html",
        tokens=mine,
        days=TOKEN_DAYS,
        scopes=SCOPES,
        idle_hours=f"{settings.session_idle_hours:g}",
        max_days=f"{settings.session_max_days:g}",
        **extra,
    )


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
