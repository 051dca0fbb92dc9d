"""What a new user trips on (issue 12, finding 15): a project without an institution, the
meter scope that usage ingestion asks for, and ``credits users list --json``."""

from __future__ import annotations

import json

from click.testing import CliRunner
from flask.testing import FlaskClient
from grants_helpers import SYSTEM, joined_app, person
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.grants import projects
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.identity.tokens import create_token


def _newcomer(session: Session, *scopes: str) -> dict[str, str]:
    """A researcher whose account names no institution (the CLI and OIDC leave it blank)."""
    create_user(
        session, email="new@uni.example", name="New", roles=(Role.RESEARCHER,), actor=SYSTEM
    )
    secret = create_token(session, email="new@uni.example", actor=SYSTEM, scopes=scopes).secret
    session.flush()
    return {"Authorization": f"Bearer {secret}"}


def _client(factory: sessionmaker[Session]) -> FlaskClient:
    return joined_app(factory).test_client()


def test_a_project_without_an_institution_is_created_as_the_schema_says(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    headers = _newcomer(session)
    client = _client(joined_session_factory)
    body = {"title": "Ice", "field_of_science": "Glaciology"}
    response = client.post("/api/v1/projects", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["institution"] == ""
    document = client.get("/api/v1/openapi.json").get_json()
    schema = document["components"]["schemas"]["ProjectCreate"]
    assert "institution" not in schema.get("required", [])


def test_the_institution_still_defaults_to_the_pis_and_may_be_named(session: Session) -> None:
    pia = person(session, "pia@uni.example", Role.RESEARCHER, institution="Uni of Ice")
    own = projects.create_project(session, title="A", field_of_science="F", actor=pia)
    blank = projects.create_project(
        session, title="B", field_of_science="F", institution="  ", actor=pia
    )
    named = projects.create_project(
        session, title="C", field_of_science="F", institution="Polar", actor=pia
    )
    assert [p.institution for p in (own, blank, named)] == ["Uni of Ice", "Uni of Ice", "Polar"]


def test_an_unscoped_token_is_told_how_to_report_usage(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    headers = _newcomer(session)
    response = _client(joined_session_factory).post(
        "/api/v1/usage/records", json={"records": [{}]}, headers=headers
    )
    assert response.status_code == 403
    detail = response.get_json()["detail"]
    assert "meter" in detail and "credits tokens create" in detail and "--scope meter" in detail


def test_users_list_prints_json_like_the_other_lists(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    person(session, "pia@uni.example", Role.RESEARCHER, Role.REVIEWER, institution="Uni of Ice")
    session.flush()
    result = CliRunner().invoke(
        main, ["users", "list", "--json"], obj={"session_factory": joined_session_factory}
    )
    assert result.exit_code == 0, result.output
    [user] = json.loads(result.output)
    assert {key: user[key] for key in ("email", "roles", "institution", "is_active")} == {
        "email": "pia@uni.example",
        "roles": ["researcher", "reviewer"],
        "institution": "Uni of Ice",
        "is_active": True,
    }
    assert isinstance(user["id"], int) and "password_hash" not in user
