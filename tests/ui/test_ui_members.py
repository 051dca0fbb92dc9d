"""A project's members page: the PI adds a researcher by e-mail and removes a member after
a confirmation; bad input and refusals are shown on the page and change nothing."""

from __future__ import annotations

import pytest
from api_world import World, build_world
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, client_for, flows_app, text_of

from credits.grants.models import ProjectMember


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return flows_app(joined_session_factory)


def _roles(session: Session, project_id: int) -> dict[int, str]:
    session.expire_all()
    rows = session.scalars(select(ProjectMember).where(ProjectMember.project_id == project_id))
    return {row.user_id: row.role for row in rows}


def _add(app: Flask, world: World, persona: str, email: str, role: str = "member"):  # type: ignore[no-untyped-def]
    return client_for(app, world, persona).post(
        f"/projects/{world.project_a}/members",
        data={"csrf_token": CSRF, "email": email, "role": role},
    )


def test_the_project_page_links_to_its_members_page(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    page = client.get(f"/projects/{world.project_a}").get_data(as_text=True)
    assert f'href="/projects/{world.project_a}/members"' in page
    members = client.get(f"/projects/{world.project_a}/members")
    assert members.status_code == 200
    assert "member_a@example.org" in members.get_data(as_text=True)


def test_the_pi_adds_a_researcher_by_email_as_a_manager(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    response = client.post(
        f"/projects/{world.project_a}/members",
        data={"csrf_token": CSRF, "email": " Researcher_B@Example.org ", "role": "manager"},
    )
    assert response.status_code == 302
    assert _roles(session, world.project_a)[world.user_ids["researcher_b"]] == "manager"
    page = client.get(response.location)
    assert "Researcher B (researcher_b@example.org) is now a manager" in text_of(
        page.get_data(as_text=True)
    )


@pytest.mark.parametrize(
    ("email", "role", "message", "status"),
    [
        ("", "member", "enter the e-mail address of a researcher", 400),
        ("researcher_b@example.org", "pi", "choose member or manager", 400),
        ("not an address", "member", "is not a valid email address", 422),
        ("nobody@example.org", "member", "no researcher on this platform has the e-mail", 422),
        ("funder_p@example.org", "member", "no researcher on this platform has the e-mail", 422),
        ("member_a@example.org", "member", "is already on project", 409),
    ],
)
def test_bad_input_is_shown_at_its_field_and_adds_nobody(
    app: Flask, session: Session, email: str, role: str, message: str, status: int
) -> None:
    world = build_world(session)
    before = _roles(session, world.project_a)
    response = _add(app, world, "researcher_a", email, role)
    assert response.status_code == status
    assert message in text_of(response.get_data(as_text=True))
    assert _roles(session, world.project_a) == before


def test_an_unknown_address_and_a_non_researcher_get_the_same_answer(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    unknown = text_of(_add(app, world, "researcher_a", "x@example.org").get_data(as_text=True))
    funder = text_of(
        _add(app, world, "researcher_a", "funder_q@example.org").get_data(as_text=True)
    )
    assert "no researcher on this platform has the e-mail x@example.org" in unknown
    assert "no researcher on this platform has the e-mail funder_q@example.org" in funder


def test_a_plain_member_sees_no_add_form_and_is_refused(app: Flask, session: Session) -> None:
    world = build_world(session)
    _add(app, world, "researcher_a", "researcher_b@example.org")
    before = _roles(session, world.project_a)
    member = client_for(app, world, "researcher_b")
    page = member.get(f"/projects/{world.project_a}/members").get_data(as_text=True)
    assert "Add a member" not in page
    response = member.post(
        f"/projects/{world.project_a}/members",
        data={"csrf_token": CSRF, "email": "ops@example.org", "role": "member"},
    )
    assert response.status_code == 403
    assert "only the PI, a manager or ops add members" in text_of(response.get_data(as_text=True))
    assert _roles(session, world.project_a) == before


def test_removing_a_member_asks_first_then_removes(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    url = f"/projects/{world.project_a}/members/{world.member_a}/remove"
    first = client.post(url, data={"csrf_token": CSRF})
    assert first.status_code == 200
    assert "You are about to take Member A (member_a@example.org) off the project" in text_of(
        first.get_data(as_text=True)
    )
    assert world.member_a in _roles(session, world.project_a)
    done = client.post(url, data={"csrf_token": CSRF, "confirm": "yes"})
    assert done.status_code == 302
    assert world.member_a not in _roles(session, world.project_a)


def test_the_pi_cannot_be_removed_and_has_no_remove_button(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = client_for(app, world, "researcher_a")
    pi = world.user_ids["researcher_a"]
    page = client.get(f"/projects/{world.project_a}/members").get_data(as_text=True)
    assert f"/members/{pi}/remove" not in page
    assert f"/members/{world.member_a}/remove" in page
    response = client.post(
        f"/projects/{world.project_a}/members/{pi}/remove", data={"csrf_token": CSRF}
    )
    assert response.status_code == 409
    assert "cannot be removed" in text_of(response.get_data(as_text=True))
    assert pi in _roles(session, world.project_a)


def test_a_member_may_leave_the_project(app: Flask, session: Session) -> None:
    world = build_world(session)
    _add(app, world, "researcher_a", "researcher_b@example.org")
    leaver = client_for(app, world, "researcher_b")
    me = world.user_ids["researcher_b"]
    url = f"/projects/{world.project_a}/members/{me}/remove"
    assert "Leave the project" in leaver.post(url, data={"csrf_token": CSRF}).get_data(as_text=True)
    assert leaver.post(url, data={"csrf_token": CSRF, "confirm": "yes"}).status_code == 302
    assert me not in _roles(session, world.project_a)
    assert leaver.get(f"/projects/{world.project_a}/members").status_code == 404
