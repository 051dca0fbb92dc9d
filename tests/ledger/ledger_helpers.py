"""Building ledger state through the services, for the ledger tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

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
