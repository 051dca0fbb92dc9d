"""Booking usage that nothing held or available could cover."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.ledger import journal
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import get_account_by_code, project_sink_code, system_account_id
from credits.ledger.schemas import TransferResult
from credits.ledger.service import grant


def book_overage(
    session: Session,
    *,
    key: str,
    project_id: int,
    currency: Currency | str,
    amount: int,
    actor: Actor,
    reference: str | None = None,
    now: datetime | None = None,
) -> TransferResult:
    """Books usage no hold or allocation could cover: the system overage account pays
    the project's usage sink, so the usage is recorded in full and the project's own
    accounts never overdraw. The overage account's balance is what is owed.

    Raises AccountNotFound when the project has no usage sink in that currency.
    """
    currency = journal.check_currency(currency)
    sink = get_account_by_code(session, code=project_sink_code(project_id, currency))
    return grant(
        session,
        key=key,
        from_account_id=system_account_id(session, AccountKind.OVERAGE, currency),
        to_account_id=sink.id,
        amount=amount,
        actor=actor,
        reason="usage beyond what was held or available",
        reference=reference,
        now=now,
    )
