"""A researcher's new project and a funder's tranche release through Flask's test
client: errors are shown inline with nothing saved, success saves and redirects."""

from __future__ import annotations

import pytest
from api_world import World, build_world, world_executor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.grants.models import Award, Project, ProjectMember, Tranche
from credits.settings import load_settings

CSRF = "forms-csrf-token"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _client(app: Flask, world: World, persona: str) -> FlaskClient:
    client = app.test_client()
    sign_in_as(client, world.user_ids[persona], csrf_token=CSRF)
    return client


def _projects(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Project)) or 0


def test_the_new_project_form_is_linked_from_the_dashboard_and_programs(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    client = _client(app, world, "researcher_b")
    for page in ("/", "/programs/open"):
        assert 'href="/projects/new"' in client.get(page).get_data(as_text=True)
    assert client.get("/projects/new").status_code == 200


def test_a_project_with_errors_is_shown_again_and_not_created(app: Flask, session: Session) -> None:
    world = build_world(session)
    before = _projects(session)
    response = _client(app, world, "researcher_a").post(
        "/projects/new",
        data={"csrf_token": CSRF, "title": "<script>x()</script>", "field_of_science": "  "},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="e-field_of_science">name the project&#39;s field of science' in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<script>x()" not in page
    assert _projects(session) == before


def test_a_services_refusal_is_shown_at_its_field(app: Flask, session: Session) -> None:
    world = build_world(session)
    before = _projects(session)
    response = _client(app, world, "researcher_a").post(
        "/projects/new",
        data={"csrf_token": CSRF, "title": "T" * 301, "field_of_science": "Physics"},
    )
    assert response.status_code == 422
    assert 'id="e-title">a project&#39;s title has at most 300 characters' in response.get_data(
        as_text=True
    )
    assert _projects(session) == before


def test_a_new_project_has_the_researcher_as_pi(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = _client(app, world, "researcher_b")
    response = client.post(
        "/projects/new",
        data={
            "csrf_token": CSRF,
            "title": "Coral <reefs>",
            "field_of_science": "Marine biology",
            "institution": "",
        },
    )
    assert response.status_code == 302
    created = session.scalars(select(Project).order_by(Project.id.desc())).first()
    assert created is not None
    assert response.headers["Location"].endswith(f"/projects/{created.id}")
    assert created.title == "Coral <reefs>"
    assert created.pi_user_id == world.user_ids["researcher_b"]
    assert created.institution == "Uni"  # the PI's own
    member = session.scalars(select(ProjectMember).where(ProjectMember.project_id == created.id))
    assert [(m.user_id, m.role) for m in member] == [(world.user_ids["researcher_b"], "pi")]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Coral &lt;reefs&gt;" in page


def _awarded(session: Session, world: World) -> int:
    tranche = session.get_one(Tranche, world.tranche)
    return session.get_one(Award, tranche.award_id).proposal_id


def test_the_proposal_page_offers_a_release_per_pending_tranche(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    page = (
        _client(app, world, "funder_p")
        .get(f"/funder/proposals/{_awarded(session, world)}")
        .get_data(as_text=True)
    )
    assert f'action="/funder/tranches/{world.tranche}/release"' in page
    assert 'name="key" value="' in page


def test_a_release_without_a_report_is_refused_inline(app: Flask, session: Session) -> None:
    world = build_world(session)
    response = _client(app, world, "funder_p").post(
        f"/funder/tranches/{world.tranche}/release",
        data={"csrf_token": CSRF, "progress_report": "   ", "key": "r1"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'id="e-progress_report-{world.tranche}">write a progress report' in page
    assert session.get_one(Tranche, world.tranche).status == "pending"


def test_a_release_approves_the_report_once(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = _client(app, world, "funder_p")
    proposal_id = _awarded(session, world)
    form = {"csrf_token": CSRF, "progress_report": "Half done <b>ok</b>", "key": "r2"}
    url = f"/funder/tranches/{world.tranche}/release"
    first = client.post(url, data=form)
    assert first.status_code == 302
    assert first.headers["Location"].endswith(f"/funder/proposals/{proposal_id}")
    # The same form again replays; a new one is refused, next to the tranche.
    assert client.post(url, data=form).status_code == 302
    again = client.post(url, data=form | {"key": "r3"})
    assert again.status_code == 409
    assert "Nothing was released." in again.get_data(as_text=True)
    tranche = session.get_one(Tranche, world.tranche)
    session.refresh(tranche)
    assert tranche.status == "released"
    assert tranche.progress_report == "Half done <b>ok</b>"
    assert tranche.release_key == "r2"
    page = client.get(f"/funder/proposals/{proposal_id}").get_data(as_text=True)
    assert "Half done &lt;b&gt;ok&lt;/b&gt;" in page
    assert f'action="/funder/tranches/{world.tranche}/release"' not in page


def test_another_funder_cannot_release(app: Flask, session: Session) -> None:
    world = build_world(session)
    response = _client(app, world, "funder_q").post(
        f"/funder/tranches/{world.tranche}/release",
        data={"csrf_token": CSRF, "progress_report": "done", "key": "r4"},
    )
    assert response.status_code == 404
    assert session.get_one(Tranche, world.tranche).status == "pending"
