"""What every page shares: the signed-in user, CSRF, a transaction, rendering.

Pages are thin: they parse a form, call one service in one transaction with
:func:`transaction`, and render. A refusal from a service (a ``CreditsError``)
is shown on the form it came from, never as a traceback.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy.orm import Session

from admin_ui import sessions
from credits import formatting as fmt
from credits.api.auth import EXTENSION_KEY, credits_extension, session_factory
from credits.api.problems import credits_error_response
from credits.db import session_scope
from credits.errors import CreditsError
from credits.identity.actor import Actor
from credits.identity.errors import AuthenticationRequired
from credits.identity.models import Role, User
from credits.identity.people import people_by_id
from credits.identity.service import actor_for
from credits.settings import Profile

P = ParamSpec("P")
R = TypeVar("R")
CSRF_FIELD = sessions.CSRF_FIELD
USER_KEY = sessions.USER_KEY
NOTHING = "\u2013"  # an en dash where a value is missing
CATALOGUE = "ui_datasets.catalogue"


def init_app(app: Flask) -> None:
    settings = app.extensions[EXTENSION_KEY].settings
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # The embedded profile serves plain HTTP on 127.0.0.1; everywhere else the
        # session cookie is sent over HTTPS only.
        SESSION_COOKIE_SECURE=settings.profile is not Profile.EMBEDDED,
        SESSION_COOKIE_NAME="credits_session",
        # The signature expires with the absolute lifetime too; the server also checks it.
        PERMANENT_SESSION_LIFETIME=timedelta(days=settings.session_max_days),
    )
    app.jinja_env.globals.update(
        csrf_token=csrf_token, credits=format_credits, nav=nav_links, badge=badge
    )
    # What people read, one way on every page (credits/formatting.py).
    app.jinja_env.filters.update(
        credits=format_credits,
        money=fmt.money,
        when=format_when,
        day=fmt.day,
        from_day=fmt.from_day,
        until_day=fmt.until_day,
        duration=fmt.duration,
        minutes=fmt.minutes,
        status=fmt.status,
        gpus=fmt.gpus,
        plural=fmt.plural,
        currency_name=fmt.currency_name,
        exhaustion=fmt.exhaustion,
        latest_end=fmt.latest_end,
        person=person,
        person_email=person_with_email,
    )
    app.before_request(_check_csrf)


def current_actor() -> Actor | None:
    """The signed-in user as an Actor (roles read afresh on every request), or None.

    A session that has ended (see admin_ui/sessions.py) is forgotten here.
    """
    if "ui_actor" in g:
        actor: Actor | None = g.ui_actor
        return actor
    actor = None
    user_id = sessions.signed_in_user_id(session)
    if user_id is not None:
        settings = credits_extension().settings
        with session_scope(session_factory()) as db:
            user = db.get(User, user_id)
            if user is not None and sessions.is_current(session, user, settings):
                actor = actor_for(user)
        if actor is None:
            sessions.end(session)
        else:
            sessions.touch(session)
    g.ui_actor = actor
    return actor


def sign_in(user_id: int) -> None:
    """Starts a session for the user under their current session generation."""
    with session_scope(session_factory()) as db:
        user = db.get(User, user_id)
        generation = 0 if user is None else user.session_generation
    # A browser-session cookie: closing the browser forgets it.
    sessions.start(session, user_id=user_id, generation=generation)
    g.pop("ui_actor", None)


def wants_json() -> bool:
    """A script's request (the pages' live parts), not a person's page view."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def login_required(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
        if current_actor() is None:
            if wants_json():
                return credits_error_response(
                    AuthenticationRequired("You are not signed in, or your session has ended.")
                )
            return redirect(url_for("ui_auth.login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapper


def actor() -> Actor:
    """The signed-in actor; only inside a view guarded by :func:`login_required`."""
    found = current_actor()
    if found is None:
        abort(401)
    return found


def require_role(*roles: Role) -> Actor:
    """The signed-in actor when it holds one of ``roles``; a 404 page otherwise."""
    found = actor()
    if not any(found.has_role(role) for role in roles):
        abort(404)
    return found


@contextmanager
def transaction() -> Iterator[Session]:
    with session_scope(session_factory()) as db:
        yield db


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def _check_csrf() -> ResponseReturnValue | None:
    """Every state-changing request to a UI page carries the session's token."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return None
    # Only the UI's own pages: the API authenticates with bearer tokens, not cookies.
    if not (request.endpoint or "").startswith("ui_"):
        return None
    sent = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token", "")
    expected = session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not secrets.compare_digest(sent, expected):
        return render_template(
            "error.html",
            title="Form expired",
            message=(
                "This form has expired or did not come from this site. Go back, reload the page"
                " and try again."
            ),
        ), 400
    return None


def render(template: str, **context: Any) -> str:
    return render_template(template, me=current_actor(), **context)


def refusal(error: CreditsError) -> str:
    """A service's refusal as one line for a form."""
    return str(error)


def format_credits(micro: int | None) -> str:
    """1_234_500_000 → '1,234.50' credits, for reading (forms read back exact amounts
    through :func:`credits.money.format_credits`)."""
    return fmt.credits_number(micro)


def format_when(moment: datetime | str | None) -> str:
    """'2026-12-02 18:07 UTC': to the minute, with the zone."""
    return fmt.when(moment)


def _people() -> dict[int, fmt.Person]:
    """People looked up on this request, by user id (filled by :func:`person`)."""
    if "ui_people" not in g:
        g.ui_people = {}
    people: dict[int, fmt.Person] = g.ui_people
    return people


def person(label: str | None) -> str:
    """An actor label ('user:4', 'system:scheduler') as a name ('Ada Lovelace', 'the
    scheduler')."""
    user_id = fmt.user_id_of(label)
    people = _people()
    if user_id is not None and user_id not in people:
        with session_scope(session_factory()) as db:
            people.update(people_by_id(db, [user_id]))
    return fmt.person(label, people)


def person_with_email(label: str | None) -> str:
    """As :func:`person`, with the e-mail: 'Ada Lovelace <ada@example.org>' (ops, funders)."""
    person(label)
    return fmt.person(label, _people(), with_email=True)


def nav_links() -> list[tuple[str, str]]:
    """The navigation: the public pages for everyone, then the signed-in user's roles'
    (label, endpoint)."""
    me = current_actor()
    # The dataset catalogue is public: in everyone's header.
    public = [("Datasets", CATALOGUE)] if CATALOGUE in current_app.view_functions else []
    if me is None:
        return public
    links = [("Home", "ui_home.dashboard"), *public]
    wanted = [
        (Role.RESEARCHER, "Jobs", "ui_jobs.list_jobs"),
        (Role.RESEARCHER, "Programs", "ui_researcher.open_programs"),
        (Role.RESEARCHER, "Labelling", "ui_labelling.list_labelling_orders"),
        (Role.REVIEWER, "Reviews", "ui_review.assigned"),
        (Role.ANNOTATOR, "Annotate", "ui_annotate.queues"),
        (Role.FUNDER, "Programs", "ui_funder.programs"),
        (Role.OPS, "Pool", "ui_ops.pool"),
        (Role.OPS, "Projects", "ui_ops.projects"),
        (Role.OPS, "Audit log", "ui_ops.audit"),
        (Role.OPS, "Labelling", "ui_labelling_ops.vendors_page"),
    ]
    for role, label, endpoint in wanted:
        usable = me.has_role(role) and endpoint in current_app.view_functions
        if usable and (label, endpoint) not in links:
            links.append((label, endpoint))
    if "ui_account.account" in current_app.view_functions:
        links.append(("Account", "ui_account.account"))
    links.append(("API tokens", "ui_auth.tokens"))
    return links


def badge(state: str) -> Markup:
    """A state as a coloured word: 'in_review' reads 'in review'."""
    return Markup('<span class="badge badge-{0}">{1}</span>').format(state, fmt.status(state))
