"""Available now: one definition — active allocations that have started and are not
suspended; what starts later and what is suspended are counted apart, never in it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.ledger.availability import Upcoming, availability, award_opens_message
from credits.ledger.models import Account, AccountKind, AccountStatus, Currency
from credits.ledger.queries import project_available

MICRO = 1_000_000


def _account(session: Session, code: str, amount: int, **fields: object) -> Account:
    account = Account(
        code=code,
        currency=Currency.GPU.value,
        kind=AccountKind.ALLOCATION.value,
        no_overdraft=True,
        project_id=77,
        credits_posted=amount,
        **fields,
    )
    session.add(account)
    session.flush()
    return account


def test_available_now_leaves_out_what_starts_later_is_suspended_or_expired(
    session: Session,
) -> None:
    now = utcnow()
    week = now + timedelta(days=8)
    _account(
        session,
        "a:started",
        100 * MICRO,
        starts_at=now - timedelta(days=1),
        debits_pending=30 * MICRO,
        expires_at=now + timedelta(days=30),
    )
    _account(session, "a:later", 1_000 * MICRO, starts_at=week, expires_at=week + timedelta(days=9))
    _account(
        session,
        "a:frozen",
        50 * MICRO,
        status=AccountStatus.SUSPENDED.value,
        starts_at=now - timedelta(days=1),
        expires_at=now + timedelta(days=30),
    )
    _account(
        session,
        "a:gone",
        5 * MICRO,
        starts_at=now - timedelta(days=9),
        expires_at=now - timedelta(days=1),
    )
    found = availability(session, [77], now=now)[Currency.GPU]
    assert found.now == 70 * MICRO
    assert found.upcoming == [Upcoming(starts_at=week, amount=1_000 * MICRO)]
    assert found.starting_later == 1_000 * MICRO
    assert found.suspended == 50 * MICRO
    assert found.now == project_available(session, project_id=77, currency=Currency.GPU, now=now)


def test_the_award_message_says_open_only_when_the_award_has_started() -> None:
    now = utcnow()
    assert "open" in award_opens_message(now - timedelta(minutes=1), now=now)
    later = award_opens_message(now + timedelta(days=8), now=now)
    assert "open" not in later
    assert "start on" in later and "nothing can be spent" in later
