"""The report routes: JSON, CSV (by query or Accept), and who gets a 404."""

from __future__ import annotations

import csv
import io

import pytest
from api_world import FUNDER_P, RESEARCHER_A, RESEARCHER_B, World, build_world, world_executor
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.reports.csv_export import COLUMNS
from credits.settings import load_settings


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


@pytest.fixture
def world(session: Session) -> World:
    return build_world(session)


def test_project_report_as_json(app: Flask, world: World) -> None:
    response = app.test_client().get(
        f"/api/v1/projects/{world.project_a}/report", headers=world.headers[RESEARCHER_A]
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["project_id"] == world.project_a
    assert {line["account_id"] for line in body["allocations"]} >= {world.account_a}
    assert body["balances"][0]["currency"] == "gpu"


def test_program_report_as_csv_has_the_documented_columns(app: Flask, world: World) -> None:
    response = app.test_client().get(
        f"/api/v1/programs/{world.program_p}/report?format=csv", headers=world.headers[FUNDER_P]
    )
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == COLUMNS
    awarded = [
        row for row in rows if row["section"] == "balance" and row["metric"] == "awarded_credits"
    ]
    assert awarded == [
        dict.fromkeys(COLUMNS, "")
        | {"section": "balance", "currency": "gpu"}
        | {"metric": "awarded_credits", "value": "2"}
    ]
    assert {row["section"] for row in rows} >= {"balance", "allocation", "by_project"}


def test_accept_text_csv_answers_csv(app: Flask, world: World) -> None:
    headers = world.headers[RESEARCHER_A] | {"Accept": "text/csv"}
    response = app.test_client().get(f"/api/v1/projects/{world.project_a}/report", headers=headers)
    assert response.mimetype == "text/csv"
    assert response.get_data(as_text=True).startswith(",".join(COLUMNS))


def test_researcher_of_another_project_gets_404(app: Flask, world: World) -> None:
    response = app.test_client().get(
        f"/api/v1/projects/{world.project_a}/report", headers=world.headers[RESEARCHER_B]
    )
    assert response.status_code == 404
    assert response.get_json()["type"].endswith("project-not-found")


def test_unknown_format_is_refused(app: Flask, world: World) -> None:
    response = app.test_client().get(
        f"/api/v1/projects/{world.project_a}/report?format=xml",
        headers=world.headers[RESEARCHER_A],
    )
    assert response.status_code == 422
