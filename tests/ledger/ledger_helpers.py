"""Building ledger state through the services, for the ledger tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from hypothesis import HealthCheck, settings
from ledger_model import LedgerModel, ModelAccount
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import queries, service
from credits.ledger.models import AccountKind, Currency, Transfer
from credits.ledger.schemas import AccountOut

SYSTEM = Actor.system("test")
# The ledger's Hypothesis state machines: each example is one rolled-back transaction.
MACHINE_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
OPS = Actor(label="user:1", user_id=1, email="ops@example.org", roles=frozenset({Role.OPS}))
RESEARCHER = Actor(
    label="user:2", user_id=2, email="r@example.org", roles=frozenset({Role.RESEARCHER})
)
_codes = itertools.count()


def source_id(session: Session, currency: Currency = Currency.GPU) -> int:
    return queries.system_account_id(session, AccountKind.SOURCE, currency)


def funded_allocation(
    session: Session,
    *,
    amount: int,
    project_id: int = 1,
    currency: Currency = Currency.GPU,
    expires_at: datetime | None = None,
    starts_at: datetime | None = None,
) -> AccountOut:
    """An allocation account of ``project_id`` granted ``amount`` from the mint."""
    account = service.open_account(
        session,
        code=f"test-allocation-{next(_codes)}",
        currency=currency,
        project_id=project_id,
        starts_at=starts_at,
        expires_at=expires_at or utcnow() + timedelta(days=30),
        actor=SYSTEM,
    )
    if amount:
        service.grant(
            session,
            key=f"fund-{account.code}",
            from_account_id=source_id(session, currency),
            to_account_id=account.id,
            amount=amount,
            actor=SYSTEM,
        )
    return queries.get_account(session, account_id=account.id)


def available(session: Session, account_id: int) -> int:
    return queries.get_account(session, account_id=account_id).available


def transfer_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Transfer)) or 0


def audit_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def assert_matches_model(session: Session, model: LedgerModel) -> None:
    """Every account's status and four counters, and every hold's parts, are what
    the model says."""
    for account in queries.list_accounts(session):
        expected = model.accounts.get(account.id)
        assert expected is not None, f"unexpected account {account.code}"
        got = (
            account.status.value,
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        )
        want = (
            expected.status,
            expected.debits_pending,
            expected.debits_posted,
            expected.credits_pending,
            expected.credits_posted,
        )
        assert got == want, f"account {account.code}: {got} != {want}"
    for key, parts in model.holds.items():
        stored = queries.get_hold(session, hold_key=key).parts
        assert [(p.account_id, p.amount, p.captured, p.voided, p.status.value) for p in stored] == [
            (p.account_id, p.amount, p.captured, p.voided, p.status) for p in parts
        ]


def model_account(account: AccountOut) -> ModelAccount:
    """The model's copy of an account as the database holds it."""
    return ModelAccount(
        id=account.id,
        currency=account.currency.value,
        kind=account.kind.value,
        no_overdraft=account.no_overdraft,
        project_id=account.project_id,
        expires_at=account.expires_at,
        starts_at=account.starts_at,
        status=account.status.value,
        debits_pending=account.debits_pending,
        debits_posted=account.debits_posted,
        credits_pending=account.credits_pending,
        credits_posted=account.credits_posted,
    )
