"""Funding a program: credits move from the mint into its pool, once per key."""

from __future__ import annotations

from typing import Any

import pytest
from grants_helpers import (
    SYSTEM,
    allocation,
    new_program,
    new_project,
    person,
    refused,
    state,
    uid,
)
from sqlalchemy.orm import Session

from credits.errors import CreditsError, InvalidInput
from credits.grants.errors import InvalidProgram, ProgramForbidden, ProgramNotFound
from credits.grants.funding import fund_program
from credits.grants.programs import close_program, get_program, open_program
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import queries as ledger_queries
from credits.ledger import service as ledger
from credits.ledger.errors import IdempotencyKeyReused, InvalidAmount, ReasonRequired
from credits.ledger.models import AccountKind, Currency
from credits.ledger.verify import verify_ledger


@pytest.fixture
def funder(session: Session) -> Actor:
    return person(session, "fay@funder.example", Role.FUNDER)


@pytest.fixture
def other_funder(session: Session) -> Actor:
    return person(session, "otto@funder.example", Role.FUNDER)


@pytest.fixture
def ops(session: Session) -> Actor:
    return person(session, "ops@platform.example", Role.OPS)


@pytest.fixture
def researcher(session: Session) -> Actor:
    return person(session, "rita@uni.example", Role.RESEARCHER)


def _fund(session: Session, actor: Actor, program_id: int, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "program_id": program_id,
        "currency": "gpu",
        "amount_micro": 1_000_000_000,
        "key": "fund-1",
        "actor": actor,
        "reason": "2027 budget",
    }
    return fund_program(session, **(values | overrides))


def test_funding_moves_credits_from_the_mint_into_the_pool(
    any_session: Session,
) -> None:
    funder = person(any_session, "fay@funder.example", Role.FUNDER)
    program = new_program(any_session, funder)
    mint = ledger_queries.system_account_id(any_session, AccountKind.SOURCE, Currency.GPU)
    mint_before = ledger_queries.get_account(any_session, account_id=mint).debits_posted

    funding = _fund(any_session, funder, program.id)

    assert funding.replayed is False
    assert funding.transfer.debit_account_id == mint
    assert funding.transfer.reason == "2027 budget"
    assert funding.transfer.reference == f"program:{program.id}"
    assert (funding.budget.funded, funding.budget.awarded, funding.budget.remaining) == (
        1_000_000_000,
        0,
        1_000_000_000,
    )
    assert ledger_queries.get_account(any_session, account_id=mint).debits_posted == (
        mint_before + 1_000_000_000
    )
    shown = get_program(any_session, program_id=program.id)
    assert [(b.currency, b.remaining) for b in shown.budget] == [
        (Currency.GPU, 1_000_000_000),
        (Currency.LABEL, 0),
    ]
    report = verify_ledger(any_session)
    assert report.ok, report.problems


def test_awarded_is_what_left_the_pool(session: Session, funder: Actor, researcher: Actor) -> None:
    program = new_program(session, funder)
    funding = _fund(session, funder, program.id, amount_micro=5_000_000)
    project = new_project(session, researcher)
    target = allocation(session, project.id, amount=1)

    ledger.grant(
        session,
        key="award-1",
        from_account_id=funding.budget.account_id,
        to_account_id=target.id,
        amount=2_000_000,
        actor=SYSTEM,
    )

    (gpu, _) = get_program(session, program_id=program.id).budget
    assert (gpu.funded, gpu.awarded, gpu.held, gpu.remaining) == (
        5_000_000,
        2_000_000,
        0,
        3_000_000,
    )
    assert verify_ledger(session).ok


def test_funding_replays_by_key_and_refuses_the_key_for_another_request(
    session: Session, funder: Actor
) -> None:
    program = new_program(session, funder)
    first = _fund(session, funder, program.id)
    before = state(session)

    again = _fund(session, funder, program.id)

    assert again.replayed is True
    assert again.transfer == first.transfer
    assert again.budget.funded == 1_000_000_000
    assert state(session) == before
    refused(
        session,
        IdempotencyKeyReused,
        fund_program,
        program_id=program.id,
        currency="gpu",
        amount_micro=2,
        key="fund-1",
        actor=funder,
        reason="2027 budget",
    )


def test_the_same_key_funds_two_programs_once_each(session: Session, funder: Actor) -> None:
    one, two = new_program(session, funder), new_program(session, funder)

    assert _fund(session, funder, one.id).replayed is False
    assert _fund(session, funder, two.id).replayed is False


def test_ops_and_a_co_owner_fund_in_any_state(
    session: Session, funder: Actor, other_funder: Actor, ops: Actor
) -> None:
    program = new_program(session, funder, owner_ids=[uid(other_funder)])
    open_program(session, program_id=program.id, actor=funder)
    close_program(session, program_id=program.id, actor=funder)

    _fund(session, ops, program.id, key="ops", currency=Currency.LABEL)
    funding = _fund(session, other_funder, program.id, key="co", currency=Currency.LABEL)

    assert funding.budget.currency is Currency.LABEL
    assert funding.budget.funded == 2_000_000_000


@pytest.mark.parametrize(
    ("who", "overrides", "error"),
    [
        ("other_funder", {}, ProgramForbidden),
        ("researcher", {}, ProgramForbidden),
        ("funder", {"amount_micro": 0}, InvalidAmount),
        ("funder", {"amount_micro": -5}, InvalidAmount),
        ("funder", {"amount_micro": 1.5}, InvalidAmount),
        ("funder", {"reason": "  "}, ReasonRequired),
        ("funder", {"currency": "dollars"}, InvalidInput),
        ("funder", {"key": ""}, InvalidInput),
        ("funder", {"key": "k" * 151}, InvalidProgram),
        ("funder", {"program_id": 987_654}, ProgramNotFound),
    ],
)
def test_refused_funding_moves_nothing(
    session: Session,
    funder: Actor,
    who: str,
    overrides: dict[str, Any],
    error: type[CreditsError],
    request: pytest.FixtureRequest,
) -> None:
    actor: Actor = request.getfixturevalue(who)
    program = new_program(session, funder)
    values: dict[str, Any] = {
        "program_id": program.id,
        "currency": "gpu",
        "amount_micro": 1_000_000,
        "key": "fund-x",
        "actor": actor,
        "reason": "budget",
    }

    refused(session, error, fund_program, **(values | overrides))
