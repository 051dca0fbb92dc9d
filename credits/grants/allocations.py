"""Allocations: funding them from a program's pool, tranches, adjustments, the expiry sweep.

An allocation is credits of one currency for one project over one period,
backed by one ledger allocation account; its status is that account's
status (active, suspended, expired), which the row mirrors: the ledger's
``set_account_status`` updates it with the account, the expiry sweep marks it
expired. The ledger is the truth for balances: an allocation's
``awarded_micro`` is what was promised, released or pending.

- A pending tranche is released by a program owner or ops (not on the
  project) approving a progress report: one grant from the pool, keyed
  ``tranche:<id>:release``; the same Idempotency-Key again returns the
  released tranche. A pending tranche of an archived project is withdrawn:
  it can no longer be released and no longer holds the program's budget.
- :func:`expire_allocations` finds allocations past their end whose account
  is not yet expired or still holds unreserved credits, and calls the
  ledger's ``expire_account`` for each; running it again on unchanged state
  changes nothing.
- :func:`adjust_allocation` is the ledger's ``adjust`` (ops, with a reason)
  on the allocation's account.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.db import utcnow
from credits.grants.errors import (
    AllocationForbidden,
    InvalidAward,
    ProjectStatusConflict,
    ProposalForbidden,
    TrancheStatusConflict,
)
from credits.grants.models import (
    Allocation,
    AllocationStatus,
    Award,
    Program,
    Project,
    ProjectStatus,
    Proposal,
    Tranche,
    TrancheStatus,
)
from credits.grants.projects import suspension_reason_prefix
from credits.grants.proposal_queries import (
    load_allocation,
    load_tranche,
    render_allocation,
    render_tranche,
)
from credits.grants.queries import (
    load_program,
    load_project,
    owner_ids,
    pending_tranches,
    pool_code,
)
from credits.grants.reviews import require_impartial
from credits.grants.schemas import AllocationOut, TrancheOut
from credits.identity.access import can_administer_program
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import journal
from credits.ledger.errors import IdempotencyKeyReused, InsufficientCredits
from credits.ledger.models import Account, AccountKind, AccountStatus, Currency
from credits.ledger.queries import get_account_by_code
from credits.ledger.service import adjust, expire_account, grant, open_account, set_account_status
from credits.metering.models import RecordStatus, UsageRecord

__all__ = [
    "adjust_allocation",
    "adjust_allocation_replayed",
    "expire_allocations",
    "fund_allocation",
    "open_allocation",
    "release_tranche",
    "require_budget",
    "suspend_with_project",
]

PLATFORM = Actor.system("grants")
REPORT_MAX_LENGTH = 50_000


def _audit(
    session: Session, event_type: str, allocation: Allocation, actor: Actor, **data: object
) -> None:
    record_event(
        session,
        event_type=event_type,
        actor=actor.label,
        subject_type="allocation",
        subject_id=str(allocation.id),
        data=data,
    )


# Funding from the pool (used by awards).


def require_budget(session: Session, program_id: int, amounts: Mapping[str, int]) -> None:
    """Locks the pools and checks each amount fits beyond pending tranches; raises
    InsufficientCredits (402) naming what is left."""
    pools = {
        code: get_account_by_code(session, code=pool_code(program_id, Currency(code))).id
        for code in amounts
    }
    locked = journal.lock_accounts(session, pools.values())
    owed = pending_tranches(session, [program_id])
    for code, amount in amounts.items():
        free = journal.available(locked[pools[code]]) - owed.get((program_id, code), 0)
        if amount > free:
            raise InsufficientCredits(
                f"program {program_id} has {max(free, 0)} micro-credits of {code} left "
                f"to award; this award needs {amount}",
                currency=code,
                remaining=max(free, 0),
                requested=amount,
            )


def share_at_award(program: Program, amount: int) -> int:
    """What is granted at award; the rest waits for a tranche release."""
    if program.initial_share_percent is None:
        return amount
    return amount * program.initial_share_percent // 100


# Writing.


def fund_allocation(
    session: Session,
    *,
    proposal: Proposal,
    program: Program,
    allocation: Allocation,
    award: Award,
    amount: int,
    actor: Actor,
) -> None:
    """Grants the released share into the allocation and records the rest as a tranche."""
    released = share_at_award(program, amount)
    if released > 0:
        grant(
            session,
            key=f"proposal:{proposal.id}:award:{allocation.currency}",
            from_account_id=get_account_by_code(
                session, code=pool_code(program.id, Currency(allocation.currency))
            ).id,
            to_account_id=allocation.account_id,
            amount=released,
            actor=actor,
            reason=f"award {award.id} of proposal {proposal.id}",
            reference=f"allocation:{allocation.id}",
        )
    if amount > released:
        session.add(
            Tranche(
                award_id=award.id,
                allocation_id=allocation.id,
                amount_micro=amount - released,
                status=TrancheStatus.PENDING.value,
            )
        )


def open_allocation(
    session: Session, *, award: Award, project: Project, currency: str, amount: int, actor: Actor
) -> Allocation:
    account = open_account(
        session,
        code=f"allocation:{award.id}:{currency}",
        currency=currency,
        kind=AccountKind.ALLOCATION,
        project_id=project.id,
        starts_at=award.starts_at,
        expires_at=award.ends_at,
        actor=actor,
    )
    allocation = Allocation(
        award_id=award.id,
        program_id=award.program_id,
        project_id=project.id,
        currency=currency,
        account_id=account.id,
        awarded_micro=amount,
        starts_at=award.starts_at,
        expires_at=award.ends_at,
        status=AllocationStatus.ACTIVE.value,
    )
    session.add(allocation)
    session.flush()
    return allocation


def suspend_with_project(session: Session, allocation: Allocation, project: Project) -> None:
    """A suspended project's allocation starts suspended (after its grant, which a
    suspended account would refuse); the ledger marks the row suspended with it."""
    set_account_status(
        session,
        account_id=allocation.account_id,
        status=AccountStatus.SUSPENDED,
        actor=PLATFORM,
        reason=f"{suspension_reason_prefix(project.id)}: new allocation",
    )


# Tranches.


def release_tranche(
    session: Session,
    *,
    tranche_id: int,
    actor: Actor,
    progress_report: str,
    key: str,
    now: datetime | None = None,
) -> TrancheOut:
    """Approves a progress report and grants the pending tranche into its allocation.

    A program owner or ops, not on the project. Appends
    ``allocation.tranche_released``. The same ``key`` with the same report from
    the same actor again returns the released tranche; with another report or
    actor it is IdempotencyKeyReused. Raises TrancheNotFound, ProposalForbidden,
    TrancheStatusConflict (released already), ProjectStatusConflict (the
    project is archived), InvalidAward (no report), InsufficientCredits,
    AccountNotActive (the allocation is suspended or has ended).
    """
    now = now or utcnow()
    key = journal.check_key(key)
    tranche = load_tranche(session, tranche_id, lock=True)
    allocation = load_allocation(session, tranche.allocation_id)
    program = load_program(session, allocation.program_id)
    if not can_administer_program(actor, owner_ids=owner_ids(program)):
        raise ProposalForbidden(f"only an owner of program {program.id} or ops release tranches")
    if tranche.status == TrancheStatus.RELEASED.value and tranche.release_key == key:
        return _replay_release(tranche, key, actor, progress_report)
    # Approving a project's own progress report is deciding on it.
    require_impartial(session, actor, allocation.project_id)
    if tranche.status != TrancheStatus.PENDING.value:
        raise TrancheStatusConflict(
            f"tranche {tranche.id} was released at {tranche.released_at}",
            current_status=tranche.status,
        )
    _require_not_archived(session, allocation.project_id)
    report = progress_report.strip() if isinstance(progress_report, str) else ""
    if not report or len(report) > REPORT_MAX_LENGTH:
        raise InvalidAward(
            f"a release needs a progress report of at most {REPORT_MAX_LENGTH} characters",
            field="progress_report",
        )
    grant(
        session,
        key=f"tranche:{tranche.id}:release",
        from_account_id=get_account_by_code(
            session, code=pool_code(program.id, Currency(allocation.currency))
        ).id,
        to_account_id=allocation.account_id,
        amount=tranche.amount_micro,
        actor=actor,
        reason=f"tranche {tranche.id} of award {tranche.award_id}",
        reference=f"allocation:{allocation.id}",
        now=now,
    )
    tranche.status = TrancheStatus.RELEASED.value
    tranche.progress_report = report
    tranche.released_at = now
    tranche.released_by_user_id = actor.user_id
    tranche.release_key = key
    session.flush()
    _audit(
        session,
        "allocation.tranche_released",
        allocation,
        actor,
        tranche_id=tranche.id,
        amount=tranche.amount_micro,
    )
    return render_tranche(tranche)


def _replay_release(tranche: Tranche, key: str, actor: Actor, progress_report: str) -> TrancheOut:
    """The release ``key`` made, when this is the same request from the same actor; the
    row keeps both (the report as stored, stripped), so no request hash is needed. Another
    actor or report with the key is refused, as the README's Idempotency-Key contract says."""
    report = progress_report.strip() if isinstance(progress_report, str) else None
    if tranche.released_by_user_id != actor.user_id or tranche.progress_report != report:
        raise IdempotencyKeyReused(
            f"key {key!r} released tranche {tranche.id} with another request"
        )
    return render_tranche(tranche)


def _require_not_archived(session: Session, project_id: int) -> None:
    """The budget stopped counting an archived project's tranches, and may have gone
    to other awards since: releasing one now would spend it twice."""
    project = load_project(session, project_id)
    if project.status == ProjectStatus.ARCHIVED.value:
        raise ProjectStatusConflict(
            f"project {project.id} is archived; its pending tranches were withdrawn",
            current_status=project.status,
        )


# Expiry and adjustments (ops).


def _require_ops(actor: Actor, action: str) -> None:
    if actor.has_role(Role.OPS) or actor.user_id is None:
        return
    raise AllocationForbidden(f"only ops or the platform {action}")


def expire_allocations(
    session: Session, *, actor: Actor, now: datetime | None = None
) -> list[AllocationOut]:
    """Sweeps every allocation past its end: its unreserved remainder goes to the expiry sink.

    Picks allocations ended by ``now`` whose account is not yet expired or
    still holds unreserved credits (holds settled since the last sweep), calls
    ``expire_account`` for each and marks the row expired; appends
    ``allocation.expired`` per allocation. Idempotent: a second run on
    unchanged state returns an empty list. Raises AllocationForbidden (not ops
    or the platform).
    """
    now = now or utcnow()
    _require_ops(actor, "run the expiry sweep")
    unreserved = Account.credits_posted - Account.debits_posted - Account.debits_pending
    due = session.scalars(
        select(Allocation)
        .join(Account, Account.id == Allocation.account_id)
        .where(
            Allocation.expires_at <= now,
            (Account.status != AccountStatus.EXPIRED.value) | (unreserved > 0),
            ~_outside_usage_to_settle(),
        )
        .order_by(Allocation.id)
    ).all()
    swept = []
    for allocation in due:
        result = expire_account(session, account_id=allocation.account_id, actor=actor, now=now)
        allocation.status = AllocationStatus.EXPIRED.value
        session.flush()
        moved = sum(transfer.amount for transfer in result.transfers)
        _audit(session, "allocation.expired", allocation, actor, moved=moved)
        swept.append(render_allocation(session, allocation))
    return swept


def _outside_usage_to_settle() -> ColumnElement[bool]:
    """The allocation's project has outside meters' usage, begun before the allocation
    ended, still waiting for settlement: the allocation pays for it (see
    ``ProjectSpend.used_at``), so its credits wait for the next sweep."""
    return (
        select(UsageRecord.id)
        .where(
            UsageRecord.project_id == Allocation.project_id,
            UsageRecord.currency == Allocation.currency,
            UsageRecord.status == RecordStatus.PENDING.value,
            UsageRecord.job_id.is_(None),
            UsageRecord.labelling_order_id.is_(None),
            UsageRecord.started_at < Allocation.expires_at,
        )
        .exists()
    )


def adjust_allocation(
    session: Session,
    *,
    allocation_id: int,
    amount: int,
    actor: Actor,
    reason: str,
    key: str,
    now: datetime | None = None,
) -> AllocationOut:
    """Ops add (positive) or remove (negative) micro-credits on the allocation's account.

    The ledger's ``adjust``: audited there, with the reason. Raises
    AllocationNotFound, AllocationForbidden, and what ``adjust`` raises
    (ReasonRequired, InvalidAmount, InsufficientCredits, AccountNotActive,
    IdempotencyKeyReused).
    """
    allocation, _ = adjust_allocation_replayed(
        session,
        allocation_id=allocation_id,
        amount=amount,
        actor=actor,
        reason=reason,
        key=key,
        now=now,
    )
    return allocation


def adjust_allocation_replayed(
    session: Session,
    *,
    allocation_id: int,
    amount: int,
    actor: Actor,
    reason: str,
    key: str,
    now: datetime | None = None,
) -> tuple[AllocationOut, bool]:
    """:func:`adjust_allocation`, and whether ``key`` replayed an earlier adjustment
    (the CLI says so, as ``ledger adjust`` does, so a retry is not taken for a second
    correction)."""
    allocation = load_allocation(session, allocation_id)
    if not actor.has_role(Role.OPS):
        raise AllocationForbidden("only ops adjust an allocation")
    result = adjust(
        session,
        key=key,
        account_id=allocation.account_id,
        amount=amount,
        actor=actor,
        reason=reason,
        now=now,
    )
    return render_allocation(session, allocation), result.replayed
