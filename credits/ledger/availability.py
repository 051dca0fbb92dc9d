"""What a project can spend now, and what it cannot yet or no longer: one definition.

**Available now** is what a new hold could take at this moment, the sum over the
project's allocation accounts that are active (not suspended), have started
and have not expired, of ``credits_posted - debits_posted - debits_pending``
(the same accounts :func:`credits.ledger.holds.place_hold` draws on, and the
same sum as :func:`credits.ledger.queries.project_available`). Alongside it,
and never in it:

- **starts later**: active allocations whose ``starts_at`` is still ahead,
  each with its start ("1,000 GPU credits start on 2026-12-11");
- **suspended**: allocations frozen by ops (the project suspended), not expired.

The project page, the researcher's dashboard, the job form and the funder's
award message all read it from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.formatting import when
from credits.ledger.models import Account, AccountKind, AccountStatus, Currency


@dataclass(frozen=True)
class Upcoming:
    starts_at: datetime
    amount: int


@dataclass
class Availability:
    """One currency's credits for one project or several (micro-credits)."""

    currency: Currency
    now: int = 0
    upcoming: list[Upcoming] = field(default_factory=list)
    suspended: int = 0

    @property
    def starting_later(self) -> int:
        return sum(part.amount for part in self.upcoming)


def availability(
    session: Session, project_ids: Iterable[int], *, now: datetime | None = None
) -> dict[Currency, Availability]:
    """Available now, starting later and suspended, per currency, over the projects'
    allocation accounts (summed). A currency appears once any allocation has credits."""
    now = now or utcnow()
    return _fold(_open_accounts(session, project_ids, now), now)


def availability_by_project(
    session: Session, project_ids: Iterable[int], *, now: datetime | None = None
) -> dict[int, dict[Currency, Availability]]:
    """:func:`availability` of each project, read in one query whatever their number."""
    now = now or utcnow()
    by_project: dict[int, list[Account]] = {}
    for account in _open_accounts(session, project_ids, now):
        assert account.project_id is not None  # noqa: S101 - selected that way
        by_project.setdefault(account.project_id, []).append(account)
    return {project_id: _fold(accounts, now) for project_id, accounts in by_project.items()}


def _open_accounts(session: Session, project_ids: Iterable[int], now: datetime) -> list[Account]:
    """The projects' allocation accounts that have not expired."""
    ids = sorted(set(project_ids))
    if not ids:
        return []
    return list(
        session.scalars(
            select(Account).where(
                Account.project_id.in_(ids),
                Account.kind == AccountKind.ALLOCATION.value,
                or_(Account.expires_at.is_(None), Account.expires_at > now),
                Account.status != AccountStatus.EXPIRED.value,
            )
        )
    )


def _fold(accounts: Iterable[Account], now: datetime) -> dict[Currency, Availability]:
    found: dict[Currency, Availability] = {}
    upcoming: dict[tuple[Currency, datetime], int] = {}
    for account in accounts:
        currency = Currency(account.currency)
        line = found.setdefault(currency, Availability(currency))
        spendable = account.credits_posted - account.debits_posted - account.debits_pending
        if account.status == AccountStatus.SUSPENDED.value:
            line.suspended += spendable
        elif account.starts_at is not None and account.starts_at > now:
            key = (currency, account.starts_at)
            upcoming[key] = upcoming.get(key, 0) + spendable
        else:
            line.now += spendable
    for (currency, starts_at), amount in sorted(upcoming.items(), key=lambda kv: kv[0][1]):
        found[currency].upcoming.append(Upcoming(starts_at=starts_at, amount=amount))
    return dict(sorted(found.items()))


def project_availability(
    session: Session, project_id: int, *, now: datetime | None = None
) -> dict[Currency, Availability]:
    """:func:`availability` of one project."""
    return availability(session, [project_id], now=now)


def award_opens_message(starts_at: datetime, *, now: datetime | None = None) -> str:
    """What a funder is told once an award is made: open now, or from its start."""
    now = now or utcnow()
    if starts_at <= now:
        return "Awarded. The project's allocations are open: its members can spend them now."
    return (
        "Awarded. The project's allocations start on"
        f" {when(starts_at)}; until then nothing can be spent from them."
    )
