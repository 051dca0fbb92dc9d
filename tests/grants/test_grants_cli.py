"""``credits programs`` and ``credits projects`` through click, on the rolled-back connection."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner, Result
from grants_helpers import allocation, events, new_program, new_project, person, state
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.grants import programs as program_service
from credits.grants.funding import fund_program
from credits.grants.models import ProgramStatus, ProjectStatus
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import queries as ledger_queries
from credits.ledger.models import AccountStatus

Run = Callable[..., Result]


@pytest.fixture
def run(joined_session_factory: sessionmaker[Session]) -> Run:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), obj={"session_factory": joined_session_factory})

    return invoke


@pytest.fixture
def cast(session: Session) -> dict[str, Actor]:
    return {
        "fay": person(session, "fay@funder.example", Role.FUNDER),
        "otto": person(session, "otto@funder.example", Role.FUNDER),
        "ops": person(session, "ops@platform.example", Role.OPS),
        "pia": person(session, "pia@uni.example", Role.RESEARCHER),
    }


CREATE = [
    "programs",
    "create",
    "--name",
    "Compute for climate",
    "--description",
    "GPU hours for climate models.",
    "--opens",
    "2031-01-01",
    "--closes",
    "2031-03-31T17:00:00+01:00",
    "--criteria",
    "merit:Scientific merit",
    "--criteria",
    "fit: Fit to the call",
    "--min-reviewers",
    "2",
    "--min-mean-score",
    "3.5",
]


def test_programs_create_makes_a_draft_owned_by_the_funders(
    session: Session, run: Run, cast: dict[str, Actor]
) -> None:
    result = run(
        *CREATE,
        "--owner",
        "otto@funder.example",
        "--initial-share-percent",
        "40",
        "--as",
        "fay@funder.example",
    )

    assert result.exit_code == 0, result.output
    assert "(draft), owners: fay@funder.example, otto@funder.example" in result.output
    (program,) = program_service.list_programs(session).items
    assert program.min_mean_score == 350
    assert program.initial_share_percent == 40
    assert [(c.key, c.label) for c in program.criteria] == [
        ("merit", "Scientific merit"),
        ("fit", "Fit to the call"),
    ]
    assert program.opens_at.isoformat() == "2031-01-01T00:00:00+00:00"
    assert program.closes_at.isoformat() == "2031-03-31T16:00:00+00:00"
    assert events(session, "program", program.id) == [("program.created", cast["fay"].label)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--as", "pia@uni.example"], "error: only funders and ops create programs"),
        (["--as", "nobody@uni.example"], "error: no user has the email address"),
        (["--owner", "pia@uni.example", "--as", "ops@platform.example"], "is not a funder"),
        (["--as", "ops@platform.example"], "error: a program needs at least one owner funder"),
        (
            ["--min-reviewers", "0", "--as", "fay@funder.example"],
            "error: min_reviewers must be an integer from 1 to 50",
        ),
    ],
)
def test_refused_creations_print_one_error_line(
    session: Session, run: Run, cast: dict[str, Actor], extra: list[str], message: str
) -> None:
    before = state(session)

    result = run(*CREATE, *extra)

    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert state(session) == before


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--min-mean-score", "3.555"),
        ("--opens", "soon"),
        ("--opens", "2031-01-01T09:00:00"),
        ("--criteria", "no-label"),
    ],
)
def test_malformed_options_are_usage_errors(
    session: Session, run: Run, cast: dict[str, Actor], flag: str, value: str
) -> None:
    args = [*CREATE, flag, value, "--as", "fay@funder.example"]

    result = run(*args)

    assert result.exit_code == 2
    assert flag in result.output
    assert program_service.list_programs(session).items == []


def test_programs_fund_moves_credits_and_replays_by_key(
    session: Session, run: Run, cast: dict[str, Actor]
) -> None:
    program = new_program(session, cast["fay"])
    args = ["programs", "fund", str(program.id), "--currency", "gpu", "--amount", "1000"]

    funded = run(*args, "--reason", "2027", "--as", "fay@funder.example", "--key", "k1")
    replayed = run(*args, "--reason", "2027", "--as", "fay@funder.example", "--key", "k1")
    refused = run(*args, "--reason", "2027", "--as", "otto@funder.example")

    assert funded.exit_code == 0, funded.output
    assert (
        f"1,000 GPU credits into program {program.id}; remaining 1,000 GPU credits" in funded.output
    )
    assert "(replayed)" in replayed.output
    assert refused.exit_code == 1
    assert refused.output.startswith(f"error: only an owner of program {program.id} or ops")
    (gpu, _) = program_service.get_program(session, program_id=program.id).budget
    assert gpu.funded == 1_000_000_000


def test_programs_open_and_close_refuse_the_wrong_state(
    session: Session, run: Run, cast: dict[str, Actor]
) -> None:
    program = new_program(session, cast["fay"])

    closed_draft = run("programs", "close", str(program.id), "--as", "fay@funder.example")
    opened = run("programs", "open", str(program.id), "--as", "ops@platform.example")
    closed = run("programs", "close", str(program.id), "--as", "fay@funder.example")

    assert closed_draft.exit_code == 1
    assert closed_draft.output == (
        f"error: program {program.id} is draft; only open programs can be closed\n"
    )
    assert opened.output.strip().endswith("is open")
    assert closed.output.strip().endswith("is closed")
    status = program_service.get_program(session, program_id=program.id).status
    assert status is ProgramStatus.CLOSED


def test_programs_list_and_show(session: Session, run: Run, cast: dict[str, Actor]) -> None:
    program = new_program(session, cast["fay"], name="Climate", initial_share_percent=25)
    new_program(session, cast["otto"], name="Oceans")
    fund_program(
        session,
        program_id=program.id,
        currency="label",
        amount_micro=2_500_000,
        key="k",
        actor=cast["fay"],
        reason="seed",
    )

    table = run("programs", "list")
    listed = json.loads(run("programs", "list", "--json").output)
    shown = run("programs", "show", str(program.id))
    as_json = json.loads(run("programs", "show", str(program.id), "--json").output)
    missing = run("programs", "show", "987654")

    assert table.exit_code == 0, table.output
    assert "Climate" in table.output
    assert "Oceans" in table.output
    assert [p["name"] for p in listed] == ["Climate", "Oceans"]
    assert "mean score at least 3.50; released at award: 25%" in shown.output
    assert "merit (Scientific merit)" in shown.output
    assert "2.5" in shown.output
    assert as_json["budget"][1] == {
        "currency": "label",
        "account_id": as_json["budget"][1]["account_id"],
        "funded": 2_500_000,
        "awarded": 0,
        "held": 0,
        "promised": 0,
        "remaining": 2_500_000,
    }
    assert missing.exit_code == 1
    assert missing.output == "error: no program has the id 987654\n"


def test_projects_list_and_show(session: Session, run: Run, cast: dict[str, Actor]) -> None:
    project = new_project(session, cast["pia"], title="Ice sheets")
    account = allocation(session, project.id, amount=7_000_000)

    table = run("projects", "list")
    listed = json.loads(run("projects", "list", "--json").output)
    shown = run("projects", "show", str(project.id))
    as_json = json.loads(run("projects", "show", str(project.id), "--json").output)

    assert "Ice sheets" in table.output
    assert "pia@uni.example" in table.output
    assert [p["title"] for p in listed] == ["Ice sheets"]
    assert "pia@uni.example" in shown.output
    assert account.code in shown.output
    assert "7" in shown.output
    assert {a["id"] for a in as_json["accounts"]} >= {account.id}
    assert run("projects", "show", "987654").output == "error: no project has the id 987654\n"


def test_projects_suspend_and_unsuspend(session: Session, run: Run, cast: dict[str, Actor]) -> None:
    project = new_project(session, cast["pia"])
    account = allocation(session, project.id)
    args = [str(project.id), "--reason", "audit"]

    by_pi = run("projects", "suspend", *args, "--as", "pia@uni.example")
    suspended = run("projects", "suspend", *args, "--as", "ops@platform.example")
    again = run("projects", "suspend", *args, "--as", "ops@platform.example")
    account_status = ledger_queries.get_account(session, account_id=account.id).status
    active = run("projects", "unsuspend", *args, "--as", "ops@platform.example")

    assert by_pi.exit_code == 1
    assert by_pi.output == "error: only ops suspend a project\n"
    assert suspended.output.strip().endswith("is suspended")
    assert account_status is AccountStatus.SUSPENDED
    assert again.output == f"error: project {project.id} is suspended; it cannot be suspended\n"
    assert active.output.strip().endswith("is active")
    shown = json.loads(run("projects", "show", str(project.id), "--json").output)
    assert shown["status"] == ProjectStatus.ACTIVE.value
    assert ledger_queries.get_account(session, account_id=account.id).status is (
        AccountStatus.ACTIVE
    )


def test_a_suspension_reason_naming_a_person_is_refused_in_one_line(
    session: Session, run: Run, cast: dict[str, Actor]
) -> None:
    project = new_project(session, cast["pia"])
    reason = "complaint by 0000-0002-1825-0097"

    result = run(
        "projects", "suspend", str(project.id), "--reason", reason, "--as", "ops@platform.example"
    )

    assert result.exit_code == 1
    assert result.output == (
        "error: reason is published in the public, permanent transparency log and may not "
        "hold an ORCID iD: describe the decision without naming a person\n"
    )
    shown = json.loads(run("projects", "show", str(project.id), "--json").output)
    assert shown["status"] == ProjectStatus.ACTIVE.value


def test_a_bare_closing_date_keeps_the_whole_day_open(
    session: Session, run: Run, cast: dict[str, Actor]
) -> None:
    args = [*CREATE, "--closes", "2031-03-31", "--as", "fay@funder.example"]

    result = run(*args)

    assert result.exit_code == 0, result.output
    (program,) = program_service.list_programs(session).items
    assert program.opens_at == datetime(2031, 1, 1, tzinfo=UTC)
    assert program.closes_at == datetime(2031, 4, 1, tzinfo=UTC)
