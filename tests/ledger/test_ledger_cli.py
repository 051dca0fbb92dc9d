"""``credits ledger`` commands: balance, verify, adjust, accounts, set-status."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result
from ledger_helpers import SYSTEM, audit_count, funded_allocation, transfer_count
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.identity import service as identity
from credits.ledger import queries


@pytest.fixture
def run(joined_session_factory: sessionmaker[Session]) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(
            main, ["ledger", *args], obj={"session_factory": joined_session_factory}
        )

    return invoke


@pytest.fixture
def ops_email(session: Session) -> str:
    identity.create_user(
        session, email="ops@example.org", name="Olga Ops", roles=["ops"], actor=SYSTEM
    )
    identity.create_user(
        session, email="rita@example.org", name="Rita R", roles=["researcher"], actor=SYSTEM
    )
    session.flush()
    return "ops@example.org"


def test_balance_prints_credits_and_json_prints_micro_credits(session: Session, run) -> None:
    account = funded_allocation(session, amount=2_500_000)
    table = run("balance", "--account", str(account.id))
    assert table.exit_code == 0, table.output
    assert "2.5" in table.output
    figures = json.loads(run("balance", "--code", account.code, "--json").output)
    assert (figures["posted"], figures["available"]) == (2_500_000, 2_500_000)


def test_balance_of_an_unknown_account_is_one_error_line(session: Session, run) -> None:
    result = run("balance", "--account", "999999")
    assert result.exit_code == 1
    assert result.output.strip() == "error: account 999999 does not exist"


def test_balance_needs_exactly_one_way_to_name_the_account(run) -> None:
    result = run("balance")
    assert result.exit_code == 1
    assert "error: name the account" in result.output


def test_verify_passes_on_consistent_books(session: Session, run) -> None:
    funded_allocation(session, amount=100)
    result = run("verify")
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output


def test_verify_exits_1_and_reports_a_tampered_counter(session: Session, run) -> None:
    account = funded_allocation(session, amount=100)
    session.execute(
        text("UPDATE ledger_accounts SET debits_posted = 7 WHERE id = :id"), {"id": account.id}
    )
    result = run("verify")
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "debits_posted is 7" in result.output
    report = json.loads(run("verify", "--json").output)
    assert report["ok"] is False and report["problems"]


def test_adjust_adds_and_removes_credits_as_ops(session: Session, run, ops_email: str) -> None:
    account = funded_allocation(session, amount=10_000_000)
    added = run(
        "adjust",
        "--account",
        str(account.id),
        "--amount",
        "1.5",
        "--reason",
        "refund",
        "--as",
        ops_email,
    )
    assert added.exit_code == 0, added.output
    removed = run(
        "adjust",
        "--account",
        str(account.id),
        "--amount",
        "-0.25",
        "--reason",
        "double charge",
        "--as",
        ops_email,
    )
    assert removed.exit_code == 0, removed.output
    assert f"1.5 GPU credits on account {account.id}" in added.output
    assert f"-0.25 GPU credits on account {account.id}" in removed.output
    assert queries.get_account(session, account_id=account.id).available == 11_250_000


def test_an_adjustment_refused_for_credits_names_exact_amounts(
    session: Session, run, ops_email: str
) -> None:
    account = funded_allocation(session, amount=994_974_463)
    refused = run(
        "adjust",
        "--account",
        str(account.id),
        "--amount",
        "-1000.000001",
        "--reason",
        "r",
        "--as",
        ops_email,
    )
    assert refused.exit_code == 1
    assert (
        "this needs 1,000.000001 GPU credits and only 994.974463 GPU credits are available"
        in refused.output
    ), refused.output


@pytest.mark.parametrize(
    ("amount", "as_email", "reason", "message"),
    [
        ("1.0000001", "ops@example.org", "r", "at most 6 decimal places"),
        ("abc", "ops@example.org", "r", "enter a number of credits"),
        ("1e999999", "ops@example.org", "r", "no exponent"),
        ("NaN", "ops@example.org", "r", "enter a number of credits"),
        ("-99999999999", "ops@example.org", "r", "an amount is at most"),
        ("0", "ops@example.org", "r", "other than zero"),
        ("1", "rita@example.org", "r", "only ops may adjust"),
        ("1", "ops@example.org", " ", "needs a reason"),
        ("-500", "ops@example.org", "r", "available"),
        ("1", "nobody@example.org", "r", "no user has the email"),
    ],
)
def test_bad_adjustments_change_nothing(
    session: Session, run, ops_email: str, amount: str, as_email: str, reason: str, message: str
) -> None:
    account = funded_allocation(session, amount=1_000_000)
    transfers, events = transfer_count(session), audit_count(session)
    result = run(
        "adjust",
        "--account",
        str(account.id),
        "--amount",
        amount,
        "--reason",
        reason,
        "--as",
        as_email,
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and message in result.output
    assert (transfer_count(session), audit_count(session)) == (transfers, events)


def test_accounts_lists_a_projects_accounts(session: Session, run) -> None:
    account = funded_allocation(session, amount=3_000_000, project_id=77)
    result = run("accounts", "--project", "77")
    assert result.exit_code == 0, result.output
    assert account.code in result.output and "project:77:usage:gpu" in result.output


def test_set_status_suspends_and_reactivates_as_ops_only(
    session: Session, run, ops_email: str
) -> None:
    account = funded_allocation(session, amount=1)
    refused = run(
        "set-status",
        "--account",
        str(account.id),
        "--status",
        "suspended",
        "--reason",
        "x",
        "--as",
        "rita@example.org",
    )
    assert refused.exit_code == 1 and "only ops" in refused.output
    done = run(
        "set-status",
        "--account",
        str(account.id),
        "--status",
        "suspended",
        "--reason",
        "over budget",
        "--as",
        ops_email,
    )
    assert done.exit_code == 0, done.output
    assert queries.get_account(session, account_id=account.id).status == "suspended"
