"""``credits allocations list|expire|adjust`` through click, on the rolled-back connection."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from proposal_helpers import CREDIT, World, awarded, full_state, world
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.db import utcnow
from credits.grants.models import Allocation
from credits.ledger.models import Account
from credits.ledger.verify import verify_ledger

Run = Callable[..., Result]


@pytest.fixture
def run(joined_session_factory: sessionmaker[Session]) -> Run:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), obj={"session_factory": joined_session_factory})

    return invoke


@pytest.fixture
def w(session: Session) -> World:
    return world(session)


def test_list_shows_allocations_as_json_and_a_table(session: Session, w: World, run: Run) -> None:
    (allocation,) = awarded(session, w).allocations
    result = run("allocations", "list", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["id"], row["available_micro"]) == (allocation.id, 100 * CREDIT)
    assert json.loads(run("allocations", "list", "--project", "999", "--json").output) == []
    table = run("allocations", "list")
    assert table.exit_code == 0
    assert "100" in table.output


def test_expire_sweeps_ended_allocations_once(session: Session, w: World, run: Run) -> None:
    (allocation,) = awarded(session, w).allocations
    ended = utcnow() - timedelta(seconds=1)
    # Move the end into the past, as time passing would.
    began = ended - timedelta(days=1)
    session.execute(update(Allocation).values(starts_at=began, expires_at=ended))
    session.execute(
        update(Account)
        .where(Account.id == allocation.account_id)
        .values(starts_at=began, expires_at=ended)
    )
    session.flush()
    result = run("allocations", "expire", "--json")
    assert result.exit_code == 0, result.output
    (swept,) = json.loads(result.output)
    assert (swept["id"], swept["status"], swept["available_micro"]) == (allocation.id, "expired", 0)
    before = full_state(session)
    again = run("allocations", "expire")
    assert again.exit_code == 0
    assert "0 allocation(s) expired" in again.output
    assert full_state(session) == before
    assert verify_ledger(session).ok


def test_adjust_needs_ops_and_a_reason(session: Session, w: World, run: Run) -> None:
    (allocation,) = awarded(session, w).allocations
    ok = run(
        "allocations",
        "adjust",
        str(allocation.id),
        "--amount",
        "-2.5",
        "--reason",
        "double charge, ticket 812",
        "--as",
        "ops@platform.example",
    )
    assert ok.exit_code == 0, ok.output
    assert "available 97.5" in ok.output
    before = full_state(session)
    refused = run(
        "allocations",
        "adjust",
        str(allocation.id),
        "--amount",
        "1",
        "--reason",
        "gift",
        "--as",
        "fay@funder.example",
    )
    assert refused.exit_code == 1
    assert refused.output.startswith("error: ")
    missing = run(
        "allocations",
        "adjust",
        "999999",
        "--amount",
        "1",
        "--reason",
        "r",
        "--as",
        "ops@platform.example",
    )
    assert missing.exit_code == 1
    assert "no allocation has the id 999999" in missing.output
    assert full_state(session) == before
    assert verify_ledger(session).ok
