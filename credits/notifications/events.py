"""What each event tells whom: builders that enqueue outbox rows in the event's transaction.

Grant services call ``notify_*`` through :func:`announce` right after the
state change they report, in the same transaction: a notification that cannot
be written is logged and dropped, never a refusal of the change it reports.
The daily sweeps ``queue_expiry_digests`` and ``queue_low_balance_notices`` run
from beat. Every row has a dedupe key, so a builder or sweep that runs twice
enqueues nothing new.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Concatenate, ParamSpec

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.grants.models import (
    MemberRole,
    Program,
    ProgramOwner,
    Project,
    ProjectMember,
    Proposal,
    ProposalStatus,
)
from credits.identity.models import User
from credits.ledger.models import (
    Account,
    AccountKind,
    AccountStatus,
    Transfer,
    TransferKind,
)
from credits.notifications.errors import NotificationSubjectNotFound
from credits.notifications.models import NotificationKind
from credits.notifications.service import enqueue_notification

# An allocation is mentioned in its members' digest when this many calendar days are left.
EXPIRY_HORIZON_DAYS = (30, 7, 1)
# A notice goes out while an allocation has less than this share of its grants left.
LOW_BALANCE_PERCENT = 10
DECISIONS = frozenset({ProposalStatus.AWARDED.value, ProposalStatus.REJECTED.value})

log = logging.getLogger(__name__)
P = ParamSpec("P")


def announce(
    session: Session,
    builder: Callable[Concatenate[Session, P], list[int]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> list[int]:
    """Runs one ``notify_*`` builder so that it never refuses the action it reports.

    The builder runs in a savepoint: whatever it raises (a bug, a database error)
    undoes only its own rows, is logged, and the caller's transaction goes on
    without the notification. Returns the new outbox row ids, none on failure.
    """
    try:
        with session.begin_nested():
            return builder(session, *args, **kwargs)
    except Exception:  # a notification must never refuse the event it reports
        log.exception("notification %s failed; the action goes on without it", builder.__name__)
        return []


def _active_user(session: Session, user_id: int) -> User | None:
    user = session.get(User, user_id)
    return user if user is not None and user.is_active else None


def _proposal(session: Session, proposal_id: int) -> tuple[Proposal, Program, Project]:
    proposal = session.get(Proposal, proposal_id)
    if proposal is None:
        raise NotificationSubjectNotFound(f"proposal {proposal_id} does not exist")
    program = session.get(Program, proposal.program_id)
    project = session.get(Project, proposal.project_id)
    assert program is not None and project is not None  # noqa: S101 - foreign keys guarantee it
    return proposal, program, project


def notify_proposal_submitted(session: Session, *, proposal_id: int) -> list[int]:
    """Tells each owner of the proposal's program that it was submitted; returns new row ids."""
    proposal, program, project = _proposal(session, proposal_id)
    owners = session.scalars(
        select(User)
        .join(ProgramOwner, ProgramOwner.user_id == User.id)
        .where(ProgramOwner.program_id == program.id, User.is_active)
        .order_by(User.id)
    )
    created = []
    for owner in owners:
        row = enqueue_notification(
            session,
            recipient_email=owner.email,
            recipient_user_id=owner.id,
            kind=NotificationKind.PROPOSAL_SUBMITTED.value,
            subject=f"New proposal in {program.name}: {proposal.title}",
            body=(
                f"Hello {owner.name},\n\n"
                f'Project "{project.title}" ({project.institution}) submitted proposal '
                f'#{proposal.id} "{proposal.title}" to {program.name}.\n'
                "It is waiting for reviewers to be assigned.\n"
            ),
            dedupe_key=f"proposal-submitted:{proposal.id}:{owner.id}",
        )
        if row is not None:
            created.append(row)
    return created


def notify_reviewer_assigned(
    session: Session, *, proposal_id: int, reviewer_user_id: int
) -> list[int]:
    """Tells a reviewer they were assigned a proposal; returns new row ids."""
    proposal, program, _project = _proposal(session, proposal_id)
    reviewer = _active_user(session, reviewer_user_id)
    if reviewer is None:
        return []
    row = enqueue_notification(
        session,
        recipient_email=reviewer.email,
        recipient_user_id=reviewer.id,
        kind=NotificationKind.REVIEWER_ASSIGNED.value,
        subject=f"Review requested: {proposal.title}",
        body=(
            f"Hello {reviewer.name},\n\n"
            f'You were asked to review proposal #{proposal.id} "{proposal.title}" '
            f"in {program.name}.\n"
            "If you have a conflict of interest, declare it before reading the proposal.\n"
        ),
        dedupe_key=f"reviewer-assigned:{proposal.id}:{reviewer.id}",
    )
    return [] if row is None else [row]


def notify_decision(session: Session, *, proposal_id: int) -> list[int]:
    """Tells the project's PI the funder's decision (awarded or rejected); returns new row ids.

    Raises NotificationSubjectNotFound for an unknown proposal; a proposal not
    yet decided enqueues nothing.
    """
    proposal, program, project = _proposal(session, proposal_id)
    if proposal.status not in DECISIONS:
        return []
    pi = _active_user(session, project.pi_user_id)
    if pi is None:
        return []
    reason = f"\nReason: {proposal.decision_reason}\n" if proposal.decision_reason else ""
    row = enqueue_notification(
        session,
        recipient_email=pi.email,
        recipient_user_id=pi.id,
        kind=NotificationKind.DECISION.value,
        subject=f"Proposal {proposal.status}: {proposal.title}",
        body=(
            f"Hello {pi.name},\n\n"
            f'Your proposal #{proposal.id} "{proposal.title}" to {program.name} '
            f"was {proposal.status}.\n{reason}"
        ),
        dedupe_key=f"decision:{proposal.id}",
    )
    return [] if row is None else [row]


@dataclass(frozen=True)
class _Expiring:
    project_title: str
    code: str
    currency: str
    remaining: int
    expires_at: datetime
    days_left: int


def queue_expiry_digests(session: Session, *, now: datetime) -> int:
    """Enqueues one digest per person per day listing their allocations that expire
    in 30, 7 or 1 calendar days (UTC) with credits left; returns how many were new.

    Every member of the allocation's project gets it. Running it again the same
    day enqueues nothing (dedupe key ``expiry:{user}:{date}``).
    """
    by_user: dict[int, list[_Expiring]] = defaultdict(list)
    expiring = _expiring_allocations(session, now)
    titles = _project_titles(session, {account.project_id for account, _ in expiring})
    for account, days_left in expiring:
        assert account.project_id is not None  # noqa: S101 - selected that way
        item = _Expiring(
            project_title=titles[account.project_id],
            code=account.code,
            currency=account.currency,
            remaining=account.credits_posted - account.debits_posted,
            expires_at=account.expires_at or now,
            days_left=days_left,
        )
        for user_id in _members(session, account.project_id):
            by_user[user_id].append(item)
    return sum(_enqueue_digest(session, user_id, items, now) for user_id, items in by_user.items())


def _expiring_allocations(session: Session, now: datetime) -> list[tuple[Account, int]]:
    latest = now + timedelta(days=max(EXPIRY_HORIZON_DAYS) + 1)
    accounts = session.scalars(
        select(Account)
        .where(
            Account.kind == AccountKind.ALLOCATION.value,
            Account.status != AccountStatus.EXPIRED.value,
            Account.project_id.is_not(None),
            Account.expires_at > now,
            Account.expires_at <= latest,
            Account.credits_posted > Account.debits_posted,
        )
        .order_by(Account.expires_at, Account.id)
    )
    found = []
    for account in accounts:
        assert account.expires_at is not None  # noqa: S101 - selected that way
        days_left = (account.expires_at.date() - now.date()).days
        if days_left in EXPIRY_HORIZON_DAYS:
            found.append((account, days_left))
    return found


def _project_titles(session: Session, project_ids: set[int | None]) -> dict[int, str]:
    rows = session.execute(select(Project.id, Project.title).where(Project.id.in_(project_ids)))
    titles: dict[int, str] = defaultdict(lambda: "(unknown project)")
    titles.update({int(row.id): str(row.title) for row in rows})
    return titles


def _members(session: Session, project_id: int, roles: frozenset[str] | None = None) -> list[int]:
    query = (
        select(ProjectMember.user_id)
        .join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project_id, User.is_active)
        .order_by(ProjectMember.user_id)
    )
    if roles is not None:
        query = query.where(ProjectMember.role.in_(roles))
    return list(session.scalars(query))


def _enqueue_digest(session: Session, user_id: int, items: list[_Expiring], now: datetime) -> int:
    user = session.get(User, user_id)
    assert user is not None  # noqa: S101 - a member is a user
    lines = [
        f"- {item.project_title}: {item.code}, {fmt.money(item.remaining, item.currency)} "
        f"left, expires {item.expires_at:%Y-%m-%d %H:%M} UTC "
        f"(in {item.days_left} day{'s' if item.days_left != 1 else ''})"
        for item in items
    ]
    count = len(items)
    row = enqueue_notification(
        session,
        recipient_email=user.email,
        recipient_user_id=user.id,
        kind=NotificationKind.ALLOCATION_EXPIRING.value,
        subject=f"{count} allocation{'s' if count != 1 else ''} expiring soon",
        body=(
            f"Hello {user.name},\n\nThese allocations expire soon; what is left then "
            "(after running jobs settle) moves to the expiry sink:\n\n" + "\n".join(lines) + "\n"
        ),
        dedupe_key=f"expiry:{user.id}:{now.date().isoformat()}",
        now=now,
    )
    return 0 if row is None else 1


def queue_low_balance_notices(session: Session, *, now: datetime) -> int:
    """Enqueues a notice to the PI and managers of each active allocation whose
    available balance is under 10% of what was granted into it; returns how many
    were new. At most one per account and person per day.
    """
    created = 0
    for account, granted in _low_allocations(session, now):
        assert account.project_id is not None  # noqa: S101 - selected that way
        available = account.credits_posted - account.debits_posted - account.debits_pending
        leaders = frozenset({MemberRole.PI.value, MemberRole.MANAGER.value})
        for user_id in _members(session, account.project_id, leaders):
            created += _enqueue_low_balance(
                session, user_id, account, available=available, granted=granted, now=now
            )
    return created


def _low_allocations(session: Session, now: datetime) -> list[tuple[Account, int]]:
    granted = (
        select(Transfer.credit_account_id, func.sum(Transfer.amount).label("granted"))
        .where(Transfer.kind == TransferKind.GRANT.value)
        .group_by(Transfer.credit_account_id)
        .subquery()
    )
    available = Account.credits_posted - Account.debits_posted - Account.debits_pending
    rows = session.execute(
        select(Account, granted.c.granted)
        .join(granted, granted.c.credit_account_id == Account.id)
        .where(
            Account.kind == AccountKind.ALLOCATION.value,
            Account.status == AccountStatus.ACTIVE.value,
            Account.project_id.is_not(None),
            (Account.expires_at.is_(None)) | (Account.expires_at > now),
            granted.c.granted > 0,
            available * 100 < granted.c.granted * LOW_BALANCE_PERCENT,
        )
        .order_by(Account.id)
    )
    return [(account, int(total)) for account, total in rows]


def _enqueue_low_balance(
    session: Session,
    user_id: int,
    account: Account,
    *,
    available: int,
    granted: int,
    now: datetime,
) -> int:
    user = session.get(User, user_id)
    assert user is not None  # noqa: S101 - a member is a user
    row = enqueue_notification(
        session,
        recipient_email=user.email,
        recipient_user_id=user.id,
        kind=NotificationKind.LOW_BALANCE.value,
        subject=f"Allocation {account.code} is under {LOW_BALANCE_PERCENT}% of its credits",
        body=(
            f"Hello {user.name},\n\nAllocation {account.code} has "
            f"{fmt.credits_number(available)} of {fmt.money(granted, account.currency)} "
            "available.\nNew jobs that need more will be refused; "
            "a supplement proposal can add credits.\n"
        ),
        dedupe_key=f"low-balance:{account.id}:{user.id}:{now.date().isoformat()}",
        now=now,
    )
    return 0 if row is None else 1
