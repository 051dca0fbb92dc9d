"""Ledger accounts: opening one (an allocation with its project's usage sink), changing
its status, and the audit event every account change appends. Re-exported by
:mod:`credits.ledger.service`, where callers import every ledger service from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.db import utcnow
from credits.errors import InvalidInput
from credits.grants.errors import ProjectStatusConflict
from credits.grants.models import Allocation, Project, ProjectStatus
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import journal
from credits.ledger.errors import ReasonRequired, StatusChangeForbidden
from credits.ledger.models import AccountKind, AccountStatus, Currency
from credits.ledger.queries import get_account, project_sink_code
from credits.ledger.schemas import AccountOut

ACCOUNTS = journal.ACCOUNTS
# Accounts that hold someone's credits may never go below zero; system
# accounts (the mint, the sinks) are where credits come from and go to.
GUARDED_KINDS = frozenset({AccountKind.ALLOCATION, AccountKind.PROGRAM_POOL})


def open_account(
    session: Session,
    *,
    code: str,
    currency: Currency | str,
    actor: Actor,
    kind: AccountKind | str = AccountKind.ALLOCATION,
    project_id: int | None = None,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
    no_overdraft: bool | None = None,
) -> AccountOut:
    """Opens an empty account; an allocation also gets its project's usage sink.

    Allocation and program-pool accounts refuse overdrafts unless told
    otherwise. Raises InvalidInput for a bad kind, dates or a taken code.
    """
    currency = journal.check_currency(currency)
    kind = _check_kind(kind)
    code = code.strip()
    if not code:
        raise InvalidInput("an account needs a code")
    for name, moment in (("starts_at", starts_at), ("expires_at", expires_at)):
        if moment is not None:
            journal.check_time(moment, name=name)
    if starts_at is not None and expires_at is not None and expires_at <= starts_at:
        raise InvalidInput("an account must expire after it starts")
    if kind is AccountKind.ALLOCATION and project_id is not None:
        _ensure_project_sink(session, project_id, currency, actor)
    account_id = session.execute(
        _insert_if_new(session)
        .values(
            code=code,
            currency=currency.value,
            kind=kind.value,
            status=AccountStatus.ACTIVE.value,
            no_overdraft=kind in GUARDED_KINDS if no_overdraft is None else no_overdraft,
            project_id=project_id,
            starts_at=starts_at,
            expires_at=expires_at,
            debits_pending=0,
            debits_posted=0,
            credits_pending=0,
            credits_posted=0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(ACCOUNTS.c.id)
    ).scalar()
    if account_id is None:
        # Also what a concurrent open of the same code sees: a refusal, not a 500.
        raise InvalidInput(f"an account with code {code!r} already exists")
    audit_account(session, account_id, "ledger.account_opened", actor, {"code": code})
    return get_account(session, account_id=account_id)


def _check_kind(kind: AccountKind | str) -> AccountKind:
    try:
        return AccountKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in AccountKind)
        raise InvalidInput(f"account kind must be one of {allowed}, got {kind!r}") from None


def _insert_if_new(session: Session) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can skip a row whose unique code exists (ON CONFLICT DO NOTHING)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(ACCOUNTS)
    return sqlite.insert(ACCOUNTS)


def _ensure_project_sink(
    session: Session, project_id: int, currency: Currency, actor: Actor
) -> None:
    """Creates the project's usage sink once, even when two awards race for it."""
    values = {
        "code": project_sink_code(project_id, currency),
        "currency": currency.value,
        "kind": AccountKind.USAGE_SINK.value,
        "status": AccountStatus.ACTIVE.value,
        "no_overdraft": False,
        "project_id": project_id,
        "debits_pending": 0,
        "debits_posted": 0,
        "credits_pending": 0,
        "credits_posted": 0,
        "created_at": utcnow(),
    }
    created = session.execute(
        _insert_if_new(session)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(ACCOUNTS.c.id)
    ).scalar()
    if created is not None:
        audit_account(session, created, "ledger.account_opened", actor, {"code": values["code"]})


def set_account_status(
    session: Session, *, account_id: int, status: AccountStatus | str, actor: Actor, reason: str
) -> AccountOut:
    """Suspends or reactivates an account; a suspended account takes no new holds.

    Needs the ops role (or the platform itself) and a reason. An allocation
    row backed by the account takes the same status. Raises
    StatusChangeForbidden, ReasonRequired, AccountNotFound, InvalidInput (an
    unknown status, or suspending a system account), ProjectStatusConflict
    (activating an allocation account of a suspended or archived project:
    unsuspend the project instead).
    """
    if not actor.has_role(Role.OPS) and actor.user_id is not None:
        raise StatusChangeForbidden("only ops may change an account's status")
    try:
        status = AccountStatus(status)
    except ValueError:
        raise InvalidInput(f"unknown account status {status!r}") from None
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonRequired("changing an account's status needs a reason")
    account = get_account(session, account_id=account_id)
    _require_holds_credits(account, status)
    if status is AccountStatus.ACTIVE:
        _require_project_active(session, account)
    locked = journal.lock_accounts(session, [account_id])[account_id]
    if locked.status == status.value:
        return get_account(session, account_id=account_id)
    session.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(status=status.value))
    _mirror_on_allocation(session, account_id, status)
    audit_account(
        session,
        account_id,
        "ledger.account_status",
        actor,
        {"from": locked.status, "to": status.value, "reason": reason},
    )
    return get_account(session, account_id=account_id)


def _require_holds_credits(account: AccountOut, status: AccountStatus) -> None:
    """Only allocation and program-pool accounts stop by hand, as only they are adjusted:
    a suspended system account (a source, a sink, adjustments, overage) would refuse
    every later funding, settlement or adjustment through it. Making one active again
    is allowed, so that a suspension made before this check can be undone."""
    if status is AccountStatus.ACTIVE or account.kind in GUARDED_KINDS:
        return
    raise InvalidInput(
        f"account {account.id} is a {account.kind.value} account; only allocation and "
        f"program-pool accounts can be {status.value}"
    )


def _require_project_active(session: Session, account: AccountOut) -> None:
    """Refuses to reactivate an allocation of a project that is not active: holds look
    only at the account, so that would let a suspended project spend again."""
    if account.kind is not AccountKind.ALLOCATION or account.project_id is None:
        return
    # Locked (before the account, in the order suspend_project takes them) so that a
    # suspension committing meanwhile is seen. No row: a bare ledger's project tag.
    project_status = session.scalar(
        select(Project.status).where(Project.id == account.project_id).with_for_update()
    )
    if project_status not in (None, ProjectStatus.ACTIVE.value):
        raise ProjectStatusConflict(
            f"account {account.id} is an allocation of project {account.project_id}, "
            f"which is {project_status}; unsuspend the project instead",
            current_status=project_status,
        )


def _mirror_on_allocation(session: Session, account_id: int, status: AccountStatus) -> None:
    """The allocation row backed by the account follows it: the scheduler's fair share
    reads the row, so a row left behind counts credits wrongly."""
    session.execute(
        update(Allocation).where(Allocation.account_id == account_id).values(status=status.value)
    )


def audit_account(
    session: Session,
    account_id: int,
    event_type: str,
    actor: Actor,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
) -> None:
    record_event(
        session,
        event_type=event_type,
        actor=actor.label,
        subject_type="ledger_account",
        subject_id=str(account_id),
        data=data,
        occurred_at=now,
    )
