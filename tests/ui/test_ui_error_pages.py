"""The portal's errors are pages in its layout; the API's stay problem details.

403, 404, 409 and 500 on portal routes answer HTML with the navigation, the
signed-in user's menu, one sentence and a link back; /api and the portal's own
JSON endpoints keep application/problem+json, and a 500 shows no traceback.
"""

from __future__ import annotations

import pytest
from api_world import (
    OPS,
    RESEARCHER_A,
    RESEARCHER_B,
    REVIEWER,
    World,
    build_world,
    world_executor,
)
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as
from werkzeug.test import TestResponse

from credits.app import create_app
from credits.errors import Forbidden
from credits.identity.models import User
from credits.settings import load_settings

CSRF = "error-pages-csrf"
MISSING = 987654
PROBLEM = "application/problem+json"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )
    # Routes no page offers: a refusal the portal never meets today, and a bug.
    test_pages = Blueprint("ui_error_test", __name__)

    @test_pages.get("/error-test/forbidden")
    def forbidden() -> str:
        raise Forbidden("only the program's owners may see its budget lines")

    @test_pages.get("/error-test/bug")
    def bug() -> str:
        raise RuntimeError("secret-internal-detail in a traceback")

    app.register_blueprint(test_pages)
    return app


def _client(app: Flask, world: World, persona: str) -> FlaskClient:
    client = app.test_client()
    sign_in_as(client, world.user_ids[persona], csrf_token=CSRF)
    return client


def _email(session: Session, world: World, persona: str) -> str:
    return session.get_one(User, world.user_ids[persona]).email


def _layout_page(response: TestResponse, status: int, session: Session, email: str) -> str:
    """The error page's text, once it is shown as a page of the portal for ``email``."""
    page = response.get_data(as_text=True)
    assert response.status_code == status, page[:300]
    assert response.mimetype == "text/html"
    assert '<nav aria-label="Main">' in page
    assert f'<span class="who">{email}</span>' in page
    assert 'data-testid="error-page"' in page
    return page


def test_an_unknown_project_is_a_not_found_page_back_to_your_projects(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    email = _email(session, world, RESEARCHER_A)
    response = _client(app, world, RESEARCHER_A).get(f"/projects/{MISSING}")
    page = _layout_page(response, 404, session, email)
    assert f"No project {MISSING}: it does not exist, or your account cannot see it." in page
    assert '<a href="/" data-testid="error-back">Back to your projects</a>' in page


def test_another_researchers_project_reads_the_same_as_a_missing_one(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    email = _email(session, world, RESEARCHER_B)
    response = _client(app, world, RESEARCHER_B).get(f"/projects/{world.project_a}")
    page = _layout_page(response, 404, session, email)
    assert f"No project {world.project_a}: it does not exist" in page


def test_an_unknown_job_is_a_not_found_page_back_to_your_jobs(app: Flask, session: Session) -> None:
    world = build_world(session)
    email = _email(session, world, RESEARCHER_A)
    response = _client(app, world, RESEARCHER_A).get(f"/jobs/{MISSING}")
    page = _layout_page(response, 404, session, email)
    assert f"No job {MISSING}: it does not exist" in page
    assert '<a href="/jobs" data-testid="error-back">Back to your jobs</a>' in page


def test_another_roles_page_is_a_not_found_page_back_home(app: Flask, session: Session) -> None:
    world = build_world(session)
    email = _email(session, world, RESEARCHER_A)
    response = _client(app, world, RESEARCHER_A).get("/ops/pool")
    page = _layout_page(response, 404, session, email)
    assert "There is no page at /ops/pool that your account can open" in page
    assert '<a href="/" data-testid="error-back">Back to the home page</a>' in page


def test_an_unknown_address_outside_the_api_is_a_page_too(app: Flask, session: Session) -> None:
    world = build_world(session)
    email = _email(session, world, OPS)
    response = _client(app, world, OPS).get("/no-such-page")
    assert "There is no page at /no-such-page" in _layout_page(response, 404, session, email)


def test_a_proposal_after_declaring_a_conflict_is_a_not_found_page(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    email = _email(session, world, REVIEWER)
    client = _client(app, world, REVIEWER)
    url = f"/reviews/{world.proposal_in_review}"
    declared = client.post(
        f"{url}/conflict", data={"csrf_token": CSRF, "reason": "a co-author", "confirm": "yes"}
    )
    assert declared.status_code == 302
    page = _layout_page(client.get(url), 404, session, email)
    assert f"No proposal {world.proposal_in_review}: it does not exist" in page
    assert '<a href="/reviews" data-testid="error-back">Back to your proposals to review</a>' in (
        page
    )


def test_confirming_the_cancel_of_a_job_already_cancelled_is_a_conflict_page(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    email = _email(session, world, RESEARCHER_A)
    client = _client(app, world, RESEARCHER_A)
    confirm = {"csrf_token": CSRF, "confirm": "yes"}
    assert client.post(f"/jobs/{world.job_a}/cancel", data=confirm).status_code == 302
    # A second tab's confirmation page, confirmed after the job was cancelled.
    again = client.post(f"/jobs/{world.job_a}/cancel", data=confirm)
    page = _layout_page(again, 409, session, email)
    assert f"Job {world.job_a} is already cancelled. Nothing was changed." in page
    assert (
        f'<a href="/jobs/{world.job_a}" data-testid="error-back">Back to job {world.job_a}</a>'
        in page
    )


def test_a_refusal_no_page_catches_is_a_forbidden_page(app: Flask, session: Session) -> None:
    world = build_world(session)
    email = _email(session, world, RESEARCHER_A)
    response = _client(app, world, RESEARCHER_A).get("/error-test/forbidden")
    page = _layout_page(response, 403, session, email)
    assert "Only the program&#39;s owners may see its budget lines. Nothing was changed." in page


def test_a_bug_is_a_server_error_page_without_the_traceback(app: Flask, session: Session) -> None:
    world = build_world(session)
    email = _email(session, world, RESEARCHER_A)
    response = _client(app, world, RESEARCHER_A).get("/error-test/bug")
    page = _layout_page(response, 500, session, email)
    assert "The server failed to answer this page." in page
    assert "secret-internal-detail" not in page
    assert "Traceback" not in page and "RuntimeError" not in page


def test_the_api_keeps_problem_details_for_the_same_errors(app: Flask, session: Session) -> None:
    world = build_world(session)
    client = _client(app, world, RESEARCHER_A)
    browser = {"Accept": "text/html,application/xhtml+xml"}
    for path in (f"/api/v1/projects/{MISSING}", "/api/v1/no-such-route", f"/api/v1/jobs/{MISSING}"):
        response = client.get(path, headers=browser | world.headers[RESEARCHER_A])
        assert response.status_code == 404, path
        assert response.mimetype == PROBLEM, path
        assert response.json is not None and response.json["status"] == 404


def test_a_dataset_file_address_that_matches_no_route_keeps_problem_details(
    app: Flask, session: Session
) -> None:
    """A public dataset file under an id that is not a UUID matches no route (the
    converter refuses it); it is still a file request, not a page."""
    world = build_world(session)
    client = _client(app, world, RESEARCHER_A)
    for path in (
        "/datasets/versions/not-a-uuid/SHA256SUMS",
        "/datasets/versions/not-a-uuid/datasheet.md",
        "/datasets/versions/not-a-uuid/files/a/b.csv",
    ):
        response = client.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 404, path
        assert response.mimetype == PROBLEM, path
    page = client.get("/datasets/versions/not-a-uuid/nothing-here", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert page.mimetype == "text/html"


def test_the_portals_json_endpoints_keep_problem_details(app: Flask, session: Session) -> None:
    world = build_world(session)
    response = _client(app, world, RESEARCHER_A).get(
        f"/jobs/{MISSING}/state.json", headers={"Accept": "application/json"}
    )
    assert response.status_code == 404
    assert response.mimetype == PROBLEM


def test_a_wrong_method_on_a_portal_route_is_a_page_that_keeps_the_allow_header(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    email = _email(session, world, RESEARCHER_A)
    response = _client(app, world, RESEARCHER_A).get(f"/jobs/{world.job_a}/cancel")
    page = _layout_page(response, 405, session, email)
    assert "The method is not allowed for the requested URL." in page
    assert "POST" in response.headers["Allow"]
