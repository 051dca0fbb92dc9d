"""The account page: a person changes their name, ORCID iD and institution, and their
password (the current one required); a new password signs every other browser out
and keeps this one in. Bad input is shown at its field and changes nothing."""

from __future__ import annotations

import pytest
from api_world import SYSTEM, World, build_world
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app, text_of

from credits.audit.models import AuditEvent
from credits.identity.errors import InvalidCredentials
from credits.identity.models import User
from credits.identity.service import authenticate_password, set_password

OLD = "correct horse battery"
NEW = "staple battery horse correct"
VALID_ORCID = "0000-0002-1825-0097"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def _user(session: Session, world: World, persona: str = "researcher_a") -> User:
    session.expire_all()
    user = session.get(User, world.user_ids[persona])
    assert user is not None
    return user


def _profile(client: FlaskClient, **fields: str):  # type: ignore[no-untyped-def]
    form = {"csrf_token": CSRF, "name": "Ada Lovelace", "orcid": "", "institution": "Uni"}
    return client.post("/account", data=form | fields)


def _password(client: FlaskClient, current: str, new: str, repeat: str | None = None):  # type: ignore[no-untyped-def]
    form = {
        "csrf_token": CSRF,
        "current_password": current,
        "new_password": new,
        "repeat_password": new if repeat is None else repeat,
    }
    return client.post("/account/password", data=form)


def test_the_account_page_is_in_the_navigation(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "funder_p")
    assert 'href="/account"' in client.get("/").get_data(as_text=True)
    page = client.get("/account").get_data(as_text=True)
    assert "funder_p@example.org" in page
    assert "You sign in through your institution" in text_of(page)


def test_a_name_and_a_valid_orcid_are_saved(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    response = _profile(client, orcid=" 0000-0002-1825-0097 ", institution="ETH")
    assert response.status_code == 302
    user = _user(session, world)
    assert (user.name, user.orcid, user.institution) == ("Ada Lovelace", VALID_ORCID, "ETH")
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "user.profile_updated")
    ).one()
    assert "Ada Lovelace" not in event.canonical_json
    assert "Your profile is saved." in client.get("/account").get_data(as_text=True)


@pytest.mark.parametrize(
    ("fields", "field", "message", "status"),
    [
        ({"name": "  "}, "name", "enter your name", 400),
        ({"orcid": "0000-0002-1825-0098"}, "orcid", "fails the ORCID checksum", 422),
        ({"orcid": "1234"}, "orcid", "is not an ORCID iD", 422),
        ({"institution": "U" * 201}, "institution", "at most 200 characters", 422),
    ],
)
def test_bad_profile_input_is_shown_at_its_field_and_changes_nothing(
    app: Flask, session: Session, fields: dict[str, str], field: str, message: str, status: int
) -> None:
    world = build_world(session)
    before = _user(session, world)
    stored = (before.name, before.orcid, before.institution)
    response = _profile(client_for(app, world, "researcher_a"), **fields)
    assert response.status_code == status
    page = response.get_data(as_text=True)
    assert f'id="e-{field}">' in page and message in text_of(page)
    after = _user(session, world)
    assert (after.name, after.orcid, after.institution) == stored


def test_an_orcid_another_user_has_is_refused(app: Flask, session: Session) -> None:
    world = build_world(session)
    assert _profile(client_for(app, world, "researcher_b"), orcid=VALID_ORCID).status_code == 302
    response = _profile(client_for(app, world, "researcher_a"), orcid=VALID_ORCID)
    assert response.status_code == 409
    assert "another user has the ORCID iD" in text_of(response.get_data(as_text=True))
    assert _user(session, world).orcid is None


def _with_password(session: Session, world: World) -> None:
    set_password(session, email="researcher_a@example.org", password=OLD, actor=SYSTEM)
    session.flush()


def test_a_new_password_signs_out_every_other_browser(app: Flask, session: Session) -> None:
    world = build_world(session)
    _with_password(session, world)
    here = client_for(app, world, "researcher_a")
    elsewhere = client_for(app, world, "researcher_a")
    response = _password(here, OLD, NEW)
    assert response.status_code == 302
    assert here.get("/account").status_code == 200
    assert "/login" in elsewhere.get("/account").headers["Location"]
    assert authenticate_password(session, email="researcher_a@example.org", password=NEW)
    with pytest.raises(InvalidCredentials):
        authenticate_password(session, email="researcher_a@example.org", password=OLD)


@pytest.mark.parametrize(
    ("current", "new", "repeat", "field", "message", "status"),
    [
        ("", NEW, NEW, "current_password", "enter the password you sign in with now", 400),
        (OLD, NEW, NEW + "x", "repeat_password", "the two new passwords differ", 400),
        ("not it at all", NEW, NEW, "current_password", "the current password is not", 422),
        (OLD, "short", "short", "new_password", "at least 12 characters", 422),
    ],
)
def test_a_refused_password_change_keeps_the_old_one_and_every_session(
    app: Flask,
    session: Session,
    current: str,
    new: str,
    repeat: str,
    field: str,
    message: str,
    status: int,
) -> None:
    world = build_world(session)
    _with_password(session, world)
    elsewhere = client_for(app, world, "researcher_a")
    response = _password(client_for(app, world, "researcher_a"), current, new, repeat)
    assert response.status_code == status
    page = response.get_data(as_text=True)
    assert f'id="e-{field}">' in page and message in text_of(page)
    assert NEW not in page and OLD not in page
    assert authenticate_password(session, email="researcher_a@example.org", password=OLD)
    assert elsewhere.get("/account").status_code == 200
