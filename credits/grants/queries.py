"""Read-only grants queries: loading and rendering programs and projects.

Kept apart from the services so that :mod:`credits.identity.access` can load
scoped objects through them without importing the services that import it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, String, cast, func, inspect, literal, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from credits.db import Base, utcnow
from credits.grants.errors import ProgramNotFound, ProjectNotFound
from credits.grants.models import (
    Allocation,
    MemberRole,
    Program,
    ProgramOwner,
    ProgramStatus,
    Project,
    ProjectStatus,
    Tranche,
    TrancheStatus,
)
from credits.grants.schemas import (
    Criterion,
    MemberOut,
    OwnerOut,
    ProgramBudget,
    ProgramOut,
    ProgramPage,
    ProjectDetail,
    ProjectOut,
    ProjectPage,
)
from credits.ledger.models import Account, Currency, Transfer, TransferKind
from credits.ledger.queries import list_accounts

DEFAULT_PAGE = 50
MAX_PAGE = 500


Listed = TypeVar("Listed", bound=Base)


def keyset_page(
    session: Session,
    model: type[Listed],
    conditions: Iterable[ColumnElement[bool] | None],
    *,
    cursor: int | None,
    limit: int,
) -> tuple[list[Listed], int | None]:
    """One page of ``model`` rows by id after ``cursor``, and the next page's cursor
    (None on the last page). Conditions that are None are left out; ``limit`` is
    kept within 1..MAX_PAGE."""
    limit = max(1, min(limit, MAX_PAGE))
    (key,) = inspect(model).primary_key
    query = select(model).where(*(c for c in conditions if c is not None))
    if cursor is not None:
        query = query.where(key > cursor)
    query = query.order_by(key).limit(limit + 1)
    rows = list(session.scalars(query.execution_options(populate_existing=True)))
    page = rows[:limit]
    if len(rows) <= limit:
        return page, None
    identity = inspect(page[-1]).identity
    return page, int(identity[0]) if identity else None


def pool_code(program_id: int, currency: Currency) -> str:
    """The code of a program's pool account in one currency."""
    return f"program:{program_id}:pool:{currency.value}"


def program_of_pool(code: str) -> int:
    """The program whose pool account has ``code`` (see :func:`pool_code`)."""
    prefix, program_id, kind, _currency = code.split(":")
    if (prefix, kind) != ("program", "pool"):
        raise ValueError(f"{code!r} is not a program pool's code")
    return int(program_id)


def pool_code_of(
    program_id: InstrumentedAttribute[int], currency: InstrumentedAttribute[str]
) -> ColumnElement[str]:
    """:func:`pool_code` as SQL, for a rule that matches pool accounts to programs."""
    return literal("program:") + cast(program_id, String) + literal(":pool:") + currency


# Programs.


def load_program(session: Session, program_id: int, *, lock: bool = False) -> Program:
    """The program row, locked for update when asked; raises ProgramNotFound."""
    program = session.get(Program, program_id, with_for_update=lock, populate_existing=True)
    if program is None:
        raise ProgramNotFound(f"no program has the id {program_id}")
    return program


def owner_ids(program: Program) -> frozenset[int]:
    return frozenset(owner.user_id for owner in program.owners)


def tranche_lapsed(now: datetime) -> ColumnElement[bool]:
    """A pending tranche that can never be released: its allocation has ended, or its
    project was archived (a condition on Allocation and Project, joined)."""
    return or_(Allocation.expires_at <= now, Project.status == ProjectStatus.ARCHIVED.value)


def pending_tranches(session: Session, program_ids: Collection[int]) -> dict[tuple[int, str], int]:
    """Micro-credits each program still owes in pending tranches, by (program id,
    currency); a pair that owes nothing is left out.

    A tranche of an allocation that has ended, or of an archived project, can
    never be released (archiving is final and refuses releases), so it no
    longer holds the program's budget; archiving records
    ``allocation.tranche_withdrawn`` for each, saying where that budget went.
    """
    rows = session.execute(
        select(Allocation.program_id, Allocation.currency, func.sum(Tranche.amount_micro))
        .join(Allocation, Allocation.id == Tranche.allocation_id)
        .join(Project, Project.id == Allocation.project_id)
        .where(
            Allocation.program_id.in_(program_ids),
            Tranche.status == TrancheStatus.PENDING.value,
            ~tranche_lapsed(utcnow()),
        )
        .group_by(Allocation.program_id, Allocation.currency)
    )
    return {(program_id, currency): int(owed or 0) for program_id, currency, owed in rows}


def _budgets(session: Session, program_ids: list[int]) -> dict[str, ProgramBudget]:
    codes = {
        pool_code(pid, currency): (pid, currency.value)
        for pid in program_ids
        for currency in Currency
    }
    rows = session.scalars(
        select(Account).where(Account.code.in_(codes)).execution_options(populate_existing=True)
    )
    owed = pending_tranches(session, program_ids)
    accounts = list(rows)
    paid_out = _paid_out_by_kind(session, [account.id for account in accounts])
    budgets = {}
    for account in accounts:
        available = account.credits_posted - account.debits_posted - account.debits_pending
        promised = owed.get(codes[account.code], 0)
        taken_back = paid_out.get((account.id, TransferKind.ADJUST.value), 0)
        budgets[account.code] = ProgramBudget(
            currency=Currency(account.currency),
            account_id=account.id,
            funded=account.credits_posted - taken_back,
            awarded=paid_out.get((account.id, TransferKind.GRANT.value), 0),
            held=account.debits_pending,
            promised=promised,
            remaining=max(available - promised, 0),
        )
    return budgets


def _paid_out_by_kind(session: Session, pool_ids: list[int]) -> dict[tuple[int, str], int]:
    """What left each pool, by (pool id, transfer kind): grants are awards, adjustments
    are funding ops took back."""
    if not pool_ids:
        return {}
    rows = session.execute(
        select(Transfer.debit_account_id, Transfer.kind, func.sum(Transfer.amount))
        .where(Transfer.debit_account_id.in_(pool_ids), Transfer.kind != TransferKind.HOLD.value)
        .group_by(Transfer.debit_account_id, Transfer.kind)
    )
    return {(pool_id, kind): int(total or 0) for pool_id, kind, total in rows}


def _program_out(program: Program, budgets: dict[str, ProgramBudget]) -> ProgramOut:
    return ProgramOut(
        id=program.id,
        name=program.name,
        description=program.description,
        status=ProgramStatus(program.status),
        opens_at=program.opens_at,
        closes_at=program.closes_at,
        criteria=[Criterion.model_validate(item) for item in program.criteria],
        min_reviewers=program.min_reviewers,
        min_mean_score=program.min_mean_score,
        initial_share_percent=program.initial_share_percent,
        created_at=program.created_at,
        opened_at=program.opened_at,
        closed_at=program.closed_at,
        owners=[
            OwnerOut(
                user_id=owner.user_id,
                email=owner.user.email,
                name=owner.user.name,
                added_at=owner.added_at,
            )
            for owner in program.owners
        ],
        budget=[
            budgets[code]
            for currency in Currency
            if (code := pool_code(program.id, currency)) in budgets
        ],
    )


def render_program(session: Session, program: Program) -> ProgramOut:
    return _program_out(program, _budgets(session, [program.id]))


def get_program(session: Session, *, program_id: int) -> ProgramOut:
    """One program with its owners and its budget per currency; raises ProgramNotFound."""
    return render_program(session, load_program(session, program_id))


def list_programs(
    session: Session,
    *,
    status: ProgramStatus | None = None,
    owner_id: int | None = None,
    cursor: int | None = None,
    limit: int = DEFAULT_PAGE,
    visible: ColumnElement[bool] | None = None,
) -> ProgramPage:
    """Programs by id after ``cursor``, ``limit`` at a time; ``visible`` narrows to a reader's."""
    owned = select(ProgramOwner.program_id).where(ProgramOwner.user_id == owner_id)
    page, next_cursor = keyset_page(
        session,
        Program,
        [
            visible,
            None if status is None else Program.status == status.value,
            None if owner_id is None else Program.id.in_(owned),
        ],
        cursor=cursor,
        limit=limit,
    )
    budgets = _budgets(session, [program.id for program in page])
    return ProgramPage(
        items=[_program_out(program, budgets) for program in page], next_cursor=next_cursor
    )


# Projects.


def load_project(session: Session, project_id: int, *, lock: bool = False) -> Project:
    """The project row, locked for update when asked; raises ProjectNotFound.

    The lock is PostgreSQL's ``FOR NO KEY UPDATE``: it keeps out other changes of
    the project and submissions (``FOR SHARE``), but not the key-share locks that
    inserting a row which names the project takes (a transfer, a job event), so a
    change of the project never deadlocks with the work of its jobs."""
    project = session.get(
        Project,
        project_id,
        with_for_update={"key_share": True} if lock else None,
        populate_existing=True,
    )
    if project is None:
        raise ProjectNotFound(f"no project has the id {project_id}")
    return project


def titles_of_projects(session: Session, project_ids: Collection[int]) -> dict[int, str]:
    """Each project's title, in one query."""
    rows = session.execute(select(Project.id, Project.title).where(Project.id.in_(project_ids)))
    return {row.id: row.title for row in rows}


def member_ids(project: Project) -> frozenset[int]:
    return frozenset(member.user_id for member in project.members)


def member_role(project: Project, user_id: int | None) -> MemberRole | None:
    """The user's role on the project, or None when they are not on it."""
    for member in project.members:
        if member.user_id == user_id:
            return MemberRole(member.role)
    return None


def render_project(project: Project) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        title=project.title,
        pi_user_id=project.pi_user_id,
        institution=project.institution,
        field_of_science=project.field_of_science,
        status=ProjectStatus(project.status),
        created_at=project.created_at,
        members=[
            MemberOut(
                user_id=member.user_id,
                email=member.user.email,
                name=member.user.name,
                role=MemberRole(member.role),
                added_at=member.added_at,
            )
            for member in project.members
        ],
    )


def get_project(session: Session, *, project_id: int) -> ProjectDetail:
    """One project with its members and ledger accounts; raises ProjectNotFound."""
    project = load_project(session, project_id)
    return ProjectDetail(
        **render_project(project).model_dump(),
        accounts=list_accounts(session, project_id=project.id),
    )


def list_projects(
    session: Session,
    *,
    status: ProjectStatus | None = None,
    cursor: int | None = None,
    limit: int = DEFAULT_PAGE,
    visible: ColumnElement[bool] | None = None,
) -> ProjectPage:
    """Projects by id after ``cursor``, ``limit`` at a time; ``visible`` narrows to a reader's."""
    page, next_cursor = keyset_page(
        session,
        Project,
        [visible, None if status is None else Project.status == status.value],
        cursor=cursor,
        limit=limit,
    )
    return ProjectPage(items=[render_project(project) for project in page], next_cursor=next_cursor)
