"""Ledger services on SQLite and PostgreSQL: what they do and what they refuse."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from ledger_helpers import (
    OPS,
    RESEARCHER,
    SYSTEM,
    audit_count,
    available,
    funded_allocation,
    source_id,
    transfer_count,
)
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from credits.audit.public_text import PersonalDataInPublicText
from credits.audit.service import leaf_hash, list_events, record_event
from credits.db import utcnow
from credits.errors import CreditsError, InvalidInput
from credits.ledger import queries, service
from credits.ledger.errors import (
    AccountNotActive,
    AccountNotFound,
    AdjustmentForbidden,
    CaptureExceedsHold,
    CurrencyMismatch,
    HoldClosed,
    HoldNotFound,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidAmount,
    NotExpired,
    ReasonRequired,
)
from credits.ledger.models import AccountKind, AccountStatus, Currency, HoldPart, Transfer
from credits.ledger.verify import verify_ledger


def assert_refused_and_unchanged(
    session: Session, error: type[CreditsError], action: Callable[[], Any]
) -> CreditsError:
    """The action raises ``error`` and writes no transfer or audit row."""
    transfers, events = transfer_count(session), audit_count(session)
    accounts = [a.model_dump() for a in queries.list_accounts(session)]
    parts = hold_parts(session)
    with pytest.raises(error) as raised, session.begin_nested():
        action()
    assert transfer_count(session) == transfers
    assert audit_count(session) == events
    assert [a.model_dump() for a in queries.list_accounts(session)] == accounts
    assert hold_parts(session) == parts
    return raised.value


def hold_parts(session: Session) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in session.execute(select(HoldPart.__table__)).all()]


def test_grant_moves_credits_and_keeps_the_books_balanced(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=5_000_000)
    assert account.credits_posted == 5_000_000
    assert account.available == 5_000_000
    assert verify_ledger(any_session).ok


def test_hold_reserves_credits_and_capture_posts_them(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=1_000)
    hold = service.place_hold(
        any_session, key="h", currency="gpu", amount=600, project_id=1, actor=SYSTEM
    )
    assert hold.amount == 600
    assert available(any_session, account.id) == 400
    service.capture(any_session, key="c1", hold_key="h", amount=100, actor=SYSTEM)
    service.capture(any_session, key="c2", hold_key="h", amount=200, actor=SYSTEM)
    service.void_hold(any_session, key="v", hold_key="h", actor=SYSTEM)
    after = queries.get_account(any_session, account_id=account.id)
    assert (after.debits_posted, after.debits_pending, after.available) == (300, 0, 700)
    settled = queries.get_hold(any_session, hold_key="h")
    assert (settled.captured, settled.voided, settled.remaining) == (300, 300, 0)
    assert verify_ledger(any_session).ok


def test_capture_pays_the_projects_usage_sink(any_session: Session) -> None:
    funded_allocation(any_session, amount=1_000, project_id=4)
    service.place_hold(any_session, key="h", currency="gpu", amount=500, project_id=4, actor=SYSTEM)
    service.capture(any_session, key="c", hold_key="h", amount=500, actor=SYSTEM)
    sink = queries.get_account_by_code(any_session, code="project:4:usage:gpu")
    assert sink.credits_posted == 500
    assert queries.get_hold(any_session, hold_key="h").parts[0].status == "captured"


def test_hold_spans_allocations_soonest_expiring_first(any_session: Session) -> None:
    later = funded_allocation(any_session, amount=100, expires_at=utcnow() + timedelta(days=9))
    sooner = funded_allocation(any_session, amount=50, expires_at=utcnow() + timedelta(days=2))
    hold = service.place_hold(
        any_session, key="h", currency="gpu", amount=120, project_id=1, actor=SYSTEM
    )
    assert [(part.account_id, part.amount) for part in hold.parts] == [
        (sooner.id, 50),
        (later.id, 70),
    ]
    service.capture(any_session, key="c", hold_key="h", amount=60, actor=SYSTEM)
    captured = [part.captured for part in queries.get_hold(any_session, hold_key="h").parts]
    assert captured == [50, 10]


def test_hold_larger_than_available_is_refused_with_the_amounts(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    funded_allocation(any_session, amount=50)
    error = assert_refused_and_unchanged(
        any_session,
        InsufficientCredits,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=151, project_id=1, actor=SYSTEM
        ),
    )
    assert error.extra == {"required": 151, "available": 150}


def test_hold_skips_expired_suspended_and_future_allocations(any_session: Session) -> None:
    ended = funded_allocation(any_session, amount=100, expires_at=utcnow() + timedelta(days=1))
    suspended = funded_allocation(any_session, amount=100)
    funded_allocation(any_session, amount=100, starts_at=utcnow() + timedelta(days=10))
    service.set_account_status(
        any_session, account_id=suspended.id, status="suspended", actor=OPS, reason="audit"
    )
    later = utcnow() + timedelta(days=2)
    assert ended.expires_at is not None and ended.expires_at < later
    assert_refused_and_unchanged(
        any_session,
        InsufficientCredits,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=1, project_id=1, actor=SYSTEM, now=later
        ),
    )


@pytest.mark.parametrize("status", ["suspended", "expired"])
def test_hold_on_an_inactive_account_is_refused(any_session: Session, status: str) -> None:
    account = funded_allocation(any_session, amount=100)
    service.set_account_status(
        any_session, account_id=account.id, status=status, actor=OPS, reason="test"
    )
    error = assert_refused_and_unchanged(
        any_session,
        AccountNotActive,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=1, account_id=account.id, actor=SYSTEM
        ),
    )
    assert status in error.detail


def test_hold_after_the_end_date_is_refused(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=100, expires_at=utcnow() + timedelta(hours=1))
    assert_refused_and_unchanged(
        any_session,
        AccountNotActive,
        lambda: service.place_hold(
            any_session,
            key="h",
            currency="gpu",
            amount=1,
            account_id=account.id,
            actor=SYSTEM,
            now=utcnow() + timedelta(hours=2),
        ),
    )


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, None, 2**63])
def test_bad_amounts_are_refused(any_session: Session, amount: Any) -> None:
    account = funded_allocation(any_session, amount=100)
    assert_refused_and_unchanged(
        any_session,
        InvalidAmount,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=amount, project_id=1, actor=SYSTEM
        ),
    )
    assert_refused_and_unchanged(
        any_session,
        InvalidAmount,
        lambda: service.grant(
            any_session,
            key="g",
            from_account_id=source_id(any_session),
            to_account_id=account.id,
            amount=amount,
            actor=SYSTEM,
        ),
    )


def test_unknown_account_is_refused(any_session: Session) -> None:
    assert_refused_and_unchanged(
        any_session,
        AccountNotFound,
        lambda: service.grant(
            any_session,
            key="g",
            from_account_id=source_id(any_session),
            to_account_id=987_654,
            amount=1,
            actor=SYSTEM,
        ),
    )
    assert_refused_and_unchanged(
        any_session,
        AccountNotFound,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=1, account_id=987_654, actor=SYSTEM
        ),
    )


def test_currency_mismatch_is_refused(any_session: Session) -> None:
    labels = funded_allocation(any_session, amount=100, currency=Currency.LABEL)
    assert_refused_and_unchanged(
        any_session,
        CurrencyMismatch,
        lambda: service.grant(
            any_session,
            key="g",
            from_account_id=source_id(any_session, Currency.GPU),
            to_account_id=labels.id,
            amount=1,
            actor=SYSTEM,
        ),
    )
    assert_refused_and_unchanged(
        any_session,
        CurrencyMismatch,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=1, account_id=labels.id, actor=SYSTEM
        ),
    )


def test_unknown_currency_is_refused(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    assert_refused_and_unchanged(
        any_session,
        InvalidInput,
        lambda: service.place_hold(
            any_session, key="h", currency="eur", amount=1, project_id=1, actor=SYSTEM
        ),
    )


def test_capture_above_the_hold_is_refused(any_session: Session) -> None:
    funded_allocation(any_session, amount=1_000)
    service.place_hold(any_session, key="h", currency="gpu", amount=100, project_id=1, actor=SYSTEM)
    service.capture(any_session, key="c1", hold_key="h", amount=70, actor=SYSTEM)
    error = assert_refused_and_unchanged(
        any_session,
        CaptureExceedsHold,
        lambda: service.capture(any_session, key="c2", hold_key="h", amount=31, actor=SYSTEM),
    )
    assert error.extra == {"requested": 31, "remaining": 30}


def test_a_second_void_is_refused(any_session: Session) -> None:
    funded_allocation(any_session, amount=1_000)
    service.place_hold(any_session, key="h", currency="gpu", amount=100, project_id=1, actor=SYSTEM)
    service.void_hold(any_session, key="v1", hold_key="h", actor=SYSTEM)
    assert_refused_and_unchanged(
        any_session,
        HoldClosed,
        lambda: service.void_hold(any_session, key="v2", hold_key="h", actor=SYSTEM),
    )
    assert_refused_and_unchanged(
        any_session,
        HoldClosed,
        lambda: service.capture(any_session, key="c", hold_key="h", amount=1, actor=SYSTEM),
    )


def test_void_of_a_fully_captured_hold_is_refused(any_session: Session) -> None:
    funded_allocation(any_session, amount=1_000)
    service.place_hold(any_session, key="h", currency="gpu", amount=100, project_id=1, actor=SYSTEM)
    service.capture(any_session, key="c", hold_key="h", amount=100, actor=SYSTEM)
    error = assert_refused_and_unchanged(
        any_session,
        HoldClosed,
        lambda: service.void_hold(any_session, key="v", hold_key="h", actor=SYSTEM),
    )
    assert "fully captured" in error.detail


def test_unknown_hold_is_refused(any_session: Session) -> None:
    assert_refused_and_unchanged(
        any_session,
        HoldNotFound,
        lambda: service.capture(any_session, key="c", hold_key="nope", amount=1, actor=SYSTEM),
    )


def test_replaying_a_key_returns_the_first_result_and_moves_nothing(
    any_session: Session,
) -> None:
    account = funded_allocation(any_session, amount=1_000)
    first = service.place_hold(
        any_session, key="h", currency="gpu", amount=100, project_id=1, actor=SYSTEM
    )
    transfers = transfer_count(any_session)
    again = service.place_hold(
        any_session, key="h", currency="gpu", amount=100, project_id=1, actor=SYSTEM
    )
    assert again.replayed and not first.replayed
    assert again.parts == first.parts
    assert transfer_count(any_session) == transfers
    assert available(any_session, account.id) == 900
    captured = service.capture(any_session, key="c", hold_key="h", amount=5, actor=SYSTEM)
    replayed = service.capture(any_session, key="c", hold_key="h", amount=5, actor=SYSTEM)
    assert replayed.replayed and replayed.transfers == captured.transfers


def test_reusing_a_key_with_a_different_request_is_refused(any_session: Session) -> None:
    funded_allocation(any_session, amount=1_000)
    service.place_hold(any_session, key="h", currency="gpu", amount=100, project_id=1, actor=SYSTEM)
    assert_refused_and_unchanged(
        any_session,
        IdempotencyKeyReused,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=101, project_id=1, actor=SYSTEM
        ),
    )
    assert_refused_and_unchanged(
        any_session,
        IdempotencyKeyReused,
        lambda: service.capture(any_session, key="h", hold_key="h", amount=1, actor=SYSTEM),
    )


def test_grant_cannot_overdraw_a_program_pool(any_session: Session) -> None:
    pool = service.open_account(
        any_session, code="pool", currency="gpu", kind=AccountKind.PROGRAM_POOL, actor=SYSTEM
    )
    service.grant(
        any_session,
        key="fund",
        from_account_id=source_id(any_session),
        to_account_id=pool.id,
        amount=100,
        actor=SYSTEM,
    )
    allocation = funded_allocation(any_session, amount=0)
    assert_refused_and_unchanged(
        any_session,
        InsufficientCredits,
        lambda: service.grant(
            any_session,
            key="award",
            from_account_id=pool.id,
            to_account_id=allocation.id,
            amount=101,
            actor=SYSTEM,
        ),
    )


def test_adjustment_needs_ops_and_a_reason(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=100)

    def adjust(actor: Any, reason: str) -> Any:
        return service.adjust(
            any_session, key="a", account_id=account.id, amount=5, actor=actor, reason=reason
        )

    assert_refused_and_unchanged(any_session, AdjustmentForbidden, lambda: adjust(RESEARCHER, "x"))
    assert_refused_and_unchanged(any_session, ReasonRequired, lambda: adjust(OPS, "  "))
    result = adjust(OPS, "credit for a failed node")
    assert result.transfers[0].reason == "credit for a failed node"
    assert available(any_session, account.id) == 105


def test_negative_adjustment_cannot_overdraw(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=100)
    service.adjust(any_session, key="a1", account_id=account.id, amount=-40, actor=OPS, reason="r")
    assert available(any_session, account.id) == 60
    assert_refused_and_unchanged(
        any_session,
        InsufficientCredits,
        lambda: service.adjust(
            any_session, key="a2", account_id=account.id, amount=-61, actor=OPS, reason="r"
        ),
    )


def test_expiry_moves_only_the_unreserved_remainder(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=1_000, expires_at=utcnow() + timedelta(days=1))
    service.place_hold(any_session, key="h", currency="gpu", amount=300, project_id=1, actor=SYSTEM)
    later = utcnow() + timedelta(days=2)
    assert_refused_and_unchanged(
        any_session,
        NotExpired,
        lambda: service.expire_account(any_session, account_id=account.id, actor=SYSTEM),
    )
    expired = service.expire_account(any_session, account_id=account.id, actor=SYSTEM, now=later)
    assert expired.amount == 700
    after = queries.get_account(any_session, account_id=account.id)
    assert (after.status, after.debits_pending, after.available) == ("expired", 300, 0)
    # Running work is still charged from the hold after the end date.
    service.capture(any_session, key="c", hold_key="h", amount=100, actor=SYSTEM)
    service.void_hold(any_session, key="v", hold_key="h", actor=SYSTEM)
    again = service.expire_account(any_session, account_id=account.id, actor=SYSTEM, now=later)
    assert again.amount == 200
    replay = service.expire_account(any_session, account_id=account.id, actor=SYSTEM, now=later)
    assert replay.transfers == []
    sink = queries.get_account_by_code(any_session, code="system:expiry_sink:gpu")
    assert sink.credits_posted == 900
    assert verify_ledger(any_session).ok


def test_every_transfer_appends_an_audit_event_with_its_leaf_hash(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    hold = service.place_hold(
        any_session, key="h", currency="gpu", amount=10, project_id=1, actor=SYSTEM
    )
    events = list_events(
        any_session, subject_type="ledger_transfer", subject_id=str(hold.parts[0].transfer_id)
    )
    assert [event.event_type for event in events] == ["ledger.hold"]
    assert events[0].leaf_hash == leaf_hash(events[0].canonical_json)
    assert '"amount":10' in events[0].canonical_json
    assert events[0].actor == "system:test"


@pytest.mark.parametrize(
    "statement",
    ["UPDATE ledger_transfers SET amount = amount + 1", "DELETE FROM ledger_transfers"],
)
def test_the_database_refuses_to_change_a_transfer_row(
    any_session: Session, statement: str
) -> None:
    funded_allocation(any_session, amount=100)
    before = list(any_session.scalars(select(Transfer.amount)))
    with pytest.raises(DatabaseError, match="append-only"), any_session.begin_nested():
        any_session.execute(text(statement))
    assert list(any_session.scalars(select(Transfer.amount))) == before


def test_verify_reports_a_tampered_counter(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=100)
    any_session.execute(
        text("UPDATE ledger_accounts SET credits_posted = 99 WHERE id = :id"), {"id": account.id}
    )
    report = verify_ledger(any_session)
    assert not report.ok
    assert any("credits_posted is 99 but the journal says 100" in p for p in report.problems)
    assert any("posted debits" in p for p in report.problems)


def test_account_status_change_is_audited_and_needs_a_reason(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=1)
    assert_refused_and_unchanged(
        any_session,
        ReasonRequired,
        lambda: service.set_account_status(
            any_session, account_id=account.id, status="suspended", actor=OPS, reason=""
        ),
    )
    service.set_account_status(
        any_session, account_id=account.id, status=AccountStatus.SUSPENDED, actor=OPS, reason="x"
    )
    events = list_events(any_session, subject_type="ledger_account", subject_id=str(account.id))
    assert events[-1].event_type == "ledger.account_status"
    assert '"to":"suspended"' in events[-1].canonical_json


def test_adjusting_a_system_account_is_refused(any_session: Session) -> None:
    error = assert_refused_and_unchanged(
        any_session,
        InvalidInput,
        lambda: service.adjust(
            any_session, key="a", account_id=source_id(any_session), amount=5, actor=OPS, reason="r"
        ),
    )
    assert "adjustments apply to allocation and program-pool accounts" in error.detail


def test_holds_draw_only_on_allocations(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    assert_refused_and_unchanged(
        any_session,
        InvalidInput,
        lambda: service.place_hold(
            any_session,
            key="h",
            currency="gpu",
            amount=1,
            account_id=source_id(any_session),
            actor=SYSTEM,
        ),
    )


def test_a_hold_cannot_pay_into_another_projects_sink_or_a_non_sink(any_session: Session) -> None:
    mine = funded_allocation(any_session, amount=100, project_id=1)
    theirs = funded_allocation(any_session, amount=100, project_id=2)
    their_sink = queries.get_account_by_code(any_session, code="project:2:usage:gpu")
    for sink in (their_sink.id, theirs.id):
        for target in ({"project_id": 1}, {"account_id": mine.id}):
            assert_refused_and_unchanged(
                any_session,
                InvalidInput,
                lambda sink=sink, target=target: service.place_hold(
                    any_session,
                    key="h",
                    currency="gpu",
                    amount=1,
                    sink_account_id=sink,
                    actor=SYSTEM,
                    **target,
                ),
            )


def test_keys_in_the_ledgers_reserved_space_are_refused(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    error = assert_refused_and_unchanged(
        any_session,
        InvalidInput,
        lambda: service.place_hold(
            any_session, key="ledger:expire:1", currency="gpu", amount=1, project_id=1, actor=SYSTEM
        ),
    )
    assert "reserved" in error.detail


def test_a_naive_time_is_refused_not_guessed(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    naive = datetime(2031, 1, 1)  # noqa: DTZ001 - the naive time under test
    assert_refused_and_unchanged(
        any_session,
        InvalidInput,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=1, project_id=1, actor=SYSTEM, now=naive
        ),
    )
    with pytest.raises(InvalidInput, match="expires_at must carry a timezone"):
        service.open_account(any_session, code="x", currency="gpu", expires_at=naive, actor=SYSTEM)


def test_another_actor_reusing_a_key_is_refused_not_replayed(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    service.place_hold(any_session, key="h", currency="gpu", amount=1, project_id=1, actor=SYSTEM)
    assert_refused_and_unchanged(
        any_session,
        IdempotencyKeyReused,
        lambda: service.place_hold(
            any_session, key="h", currency="gpu", amount=1, project_id=1, actor=OPS
        ),
    )


def test_positive_adjustment_of_an_ended_account_is_refused_but_suspended_is_allowed(
    any_session: Session,
) -> None:
    ended = funded_allocation(any_session, amount=100, expires_at=utcnow() + timedelta(hours=1))
    later = utcnow() + timedelta(hours=2)
    assert_refused_and_unchanged(
        any_session,
        AccountNotActive,
        lambda: service.adjust(
            any_session, key="a", account_id=ended.id, amount=5, actor=OPS, reason="r", now=later
        ),
    )
    suspended = funded_allocation(any_session, amount=100)
    service.set_account_status(
        any_session, account_id=suspended.id, status="suspended", actor=OPS, reason="r"
    )
    service.adjust(any_session, key="b", account_id=suspended.id, amount=5, actor=OPS, reason="r")
    assert available(any_session, suspended.id) == 105


def test_verify_reports_audit_events_that_do_not_match_the_journal(any_session: Session) -> None:
    account = funded_allocation(any_session, amount=100)
    (grant,) = queries.list_transfers(any_session, account_id=account.id).items
    record_event(
        any_session,
        event_type="ledger.grant",
        actor="system:test",
        subject_type="ledger_transfer",
        subject_id=str(grant.id),
        data={"amount": 1},
    )
    record_event(
        any_session,
        event_type="ledger.grant",
        actor="system:test",
        subject_type="ledger_transfer",
        subject_id="987654",
        data={},
    )
    problems = verify_ledger(any_session).problems
    assert f"transfer {grant.id} has 2 audit events, not 1" in problems
    assert "audit event names transfer 987654, which does not exist" in problems


def test_verify_reports_a_hold_part_marked_settled_with_credits_left(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    service.place_hold(any_session, key="h", currency="gpu", amount=10, project_id=1, actor=SYSTEM)
    any_session.execute(text("UPDATE ledger_hold_parts SET status = 'voided' WHERE hold_key = 'h'"))
    problems = verify_ledger(any_session).problems
    assert any("hold 'h' part 0 is voided" in problem for problem in problems), problems


def test_verify_reports_a_hold_part_moved_under_another_holds_key(any_session: Session) -> None:
    funded_allocation(any_session, amount=100)
    for key in ("one", "two"):
        service.place_hold(
            any_session, key=key, currency="gpu", amount=10, project_id=1, actor=SYSTEM
        )
    any_session.execute(
        text("UPDATE ledger_hold_parts SET hold_key = 'two', part = 1 WHERE hold_key = 'one'")
    )
    problems = verify_ledger(any_session).problems
    assert any("hold 'two' part 1 differs from its pending transfer" in p for p in problems), (
        problems
    )


def test_opening_an_account_with_a_taken_code_is_refused(any_session: Session) -> None:
    service.open_account(any_session, code="dup", currency="gpu", actor=SYSTEM)
    with pytest.raises(InvalidInput, match="already exists"):
        service.open_account(any_session, code="dup", currency="label", actor=SYSTEM)


@pytest.mark.parametrize(
    "reason",
    ["asked by jane.doe@uni.example", "for 0000-0002-1825-0097's grant"],
)
def test_a_persons_reason_naming_someone_is_refused_on_both_paths(
    any_session: Session, reason: str
) -> None:
    account = funded_allocation(any_session, amount=1_000)
    service.place_hold(
        any_session, key="named", currency="gpu", amount=100, project_id=1, actor=SYSTEM
    )

    def grant() -> Any:
        return service.grant(
            any_session,
            key="named-grant",
            from_account_id=source_id(any_session),
            to_account_id=account.id,
            amount=5,
            actor=OPS,
            reason=reason,
        )

    def void() -> Any:
        return service.void_hold(
            any_session, key="named-void", hold_key="named", actor=OPS, reason=reason
        )

    def adjust() -> Any:
        return service.adjust(
            any_session,
            key="named-adjust",
            account_id=account.id,
            amount=5,
            actor=OPS,
            reason=reason,
        )

    for action in (grant, void, adjust):
        refused = assert_refused_and_unchanged(any_session, PersonalDataInPublicText, action)
        assert "public, permanent transparency log" in str(refused)
    # The platform's own reasons (what it saw) are not a person's words.
    service.void_hold(any_session, key="system-void", hold_key="named", actor=SYSTEM, reason=reason)
    assert verify_ledger(any_session).ok
