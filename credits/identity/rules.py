"""One access rule per object kind: the rows of each table an actor may read.

A rule is a SQL condition on its object's table. A list filters by it, and a
single read loads the object through it (:func:`load_visible`), so a list and
a get answer from one definition and cannot disagree. The API, the CLI and
the portal load through :mod:`credits.identity.access` and
:mod:`credits.identity.access_proposals`, which apply these rules.

Powers that come with a role count only while the role is held: revoking the
researcher role takes a person's projects away, the funder role their
programs, the reviewer role their assignments. Ops read everything.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    false,
    inspect,
    or_,
    select,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from credits.db import Base, StatementCache, core_connection
from credits.driver_reads import DriverRead
from credits.grants.models import (
    Allocation,
    Award,
    Program,
    ProgramOwner,
    ProgramStatus,
    Project,
    ProjectMember,
    Proposal,
    Review,
    ReviewAssignment,
    Tranche,
)
from credits.grants.queries import pool_code_of
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.jobs.models import Job
from credits.ledger.models import Account, AccountKind

Row = TypeVar("Row", bound=Base)


# A rule reads only the actor's user id and roles; its SQL expression is built once
# per pair and reused (expressions are immutable), as every request asks for one.
_RULE_CACHE_LIMIT = 4096
Rule = Callable[[Actor], ColumnElement[bool]]


def per_holder(rule: Rule) -> Rule:
    """``rule`` built once per (user id, roles) and then reused."""
    built: dict[tuple[int | None, frozenset[Role]], ColumnElement[bool]] = {}

    @wraps(rule)
    def cached(actor: Actor) -> ColumnElement[bool]:
        key = (actor.user_id, actor.roles)
        found = built.get(key)
        if found is None:
            if len(built) >= _RULE_CACHE_LIMIT:
                built.clear()
            found = built[key] = rule(actor)
        return found

    return cached


def load_visible(
    session: Session, model: type[Row], object_id: int, rule: ColumnElement[bool]
) -> Row | None:
    """The row of ``model`` with ``object_id`` when it satisfies ``rule``; None otherwise,
    whether it does not exist or the rule hides it."""
    (key,) = inspect(model).primary_key
    query = select(model).where(key == object_id, rule)
    return session.scalar(query.execution_options(populate_existing=True))


def read_visible_row(
    db: Session | Connection, model: type[Base], object_id: int, rule: ColumnElement[bool]
) -> dict[str, Any] | None:
    """:func:`load_visible`'s row as plain columns, for a hot read that needs no ORM
    object: one statement, built once per rule, through a session or a connection."""
    read = _by_id(model, rule, whole_row=True)
    rows = read.rows(core_connection(db), {"object_id": object_id})
    return dict(zip(read.names, rows[0], strict=True)) if rows else None


def readable(
    session: Session, model: type[Base], object_id: int, rule: ColumnElement[bool]
) -> bool:
    """True when the row of ``model`` with ``object_id`` exists and satisfies ``rule``."""
    read = _by_id(model, rule, whole_row=False)
    return bool(read.rows(core_connection(session), {"object_id": object_id}))


_by_id_reads = StatementCache(_RULE_CACHE_LIMIT)


def _by_id(model: type[Base], rule: ColumnElement[bool], *, whole_row: bool) -> DriverRead:
    def build() -> DriverRead:
        (primary_key,) = inspect(model).primary_key
        columns = model.__table__ if whole_row else primary_key
        return DriverRead(select(columns).where(primary_key == bindparam("object_id"), rule))

    return _by_id_reads.get((model, rule, whole_row), build)


# What a role brings: the ids a rule may draw on, or None when the role is not held.


def my_project_ids(actor: Actor) -> Select[Any] | None:
    """The projects the actor is on, while they hold the researcher role."""
    if actor.user_id is None:
        return None
    if not actor.has_role(Role.RESEARCHER):
        return None
    return select(ProjectMember.project_id).where(ProjectMember.user_id == actor.user_id)


def my_program_ids(actor: Actor) -> Select[Any] | None:
    """The programs the actor owns, while they hold the funder role."""
    if actor.user_id is None:
        return None
    if not actor.has_role(Role.FUNDER):
        return None
    return select(ProgramOwner.program_id).where(ProgramOwner.user_id == actor.user_id)


def my_assignment_ids(actor: Actor) -> Select[Any] | None:
    """The proposals the actor is assigned to review without a declared conflict,
    while they hold the reviewer role."""
    if actor.user_id is None:
        return None
    if not actor.has_role(Role.REVIEWER):
        return None
    return select(ReviewAssignment.proposal_id).where(
        ReviewAssignment.reviewer_user_id == actor.user_id,
        ReviewAssignment.conflict_declared_at.is_(None),
    )


def _in(column: InstrumentedAttribute[Any], ids: Select[Any] | None) -> ColumnElement[bool]:
    if ids is None:
        return false()
    return column.in_(ids)


def _administered(column: InstrumentedAttribute[int], actor: Actor) -> ColumnElement[bool]:
    """The program in ``column`` is administered by the actor: ops, or its funder owner."""
    if actor.has_role(Role.OPS):
        return true()
    return _in(column, my_program_ids(actor))


# Programs: ops; their funder owners; researchers, once a call is published.


@per_holder
def visible_programs(actor: Actor) -> ColumnElement[bool]:
    """The programs the actor may read."""
    if actor.has_role(Role.OPS):
        return true()
    published = Program.status != ProgramStatus.DRAFT.value
    return or_(
        _in(Program.id, my_program_ids(actor)),
        published if actor.has_role(Role.RESEARCHER) else false(),
    )


@per_holder
def administered_programs(actor: Actor) -> ColumnElement[bool]:
    """The programs the actor runs (and whose reports and pages they see): ops, owners."""
    return _administered(Program.id, actor)


# Projects: ops; their members who hold the researcher role.


@per_holder
def visible_projects(actor: Actor) -> ColumnElement[bool]:
    """The projects the actor may read."""
    if actor.has_role(Role.OPS):
        return true()
    return _in(Project.id, my_project_ids(actor))


@per_holder
def reported_projects(actor: Actor) -> ColumnElement[bool]:
    """The projects whose report the actor may read: those they may read, and those a
    program they own awarded (that report shows their own programs' part alone)."""
    funded = select(Allocation.project_id).where(_in(Allocation.program_id, my_program_ids(actor)))
    return or_(visible_projects(actor), Project.id.in_(funded))


# Proposals: ops; the project's members; the program's owners once it was
# submitted; an assigned reviewer until they declare a conflict.


def decision_queue(actor: Actor) -> ColumnElement[bool]:
    """The submitted proposals of the programs the actor administers."""
    return and_(Proposal.submitted_at.is_not(None), _administered(Proposal.program_id, actor))


def review_queue(actor: Actor) -> ColumnElement[bool]:
    """The proposals the actor is assigned to review, without a declared conflict."""
    return _in(Proposal.id, my_assignment_ids(actor))


@per_holder
def visible_proposals(actor: Actor) -> ColumnElement[bool]:
    """The proposals the actor may read."""
    if actor.has_role(Role.OPS):
        return true()
    return or_(
        _in(Proposal.project_id, my_project_ids(actor)),
        decision_queue(actor),
        review_queue(actor),
    )


# Reviews: ops; the owners of the program the proposal went to, unless they are on
# the applying project; the reviewer who wrote it, while assigned without a conflict.


@per_holder
def visible_reviews(actor: Actor) -> ColumnElement[bool]:
    """The reviews the actor may read."""
    if actor.has_role(Role.OPS):
        return true()
    decided_by_me = select(Proposal.id).where(decision_queue(actor))
    if actor.user_id is not None:  # an owner on the applying project reads none of them
        # Membership, whatever roles are held now: the rule require_impartial applies.
        on = select(ProjectMember.project_id).where(ProjectMember.user_id == actor.user_id)
        decided_by_me = decided_by_me.where(Proposal.project_id.not_in(on))
    mine = and_(
        Review.reviewer_user_id == actor.user_id,
        _in(Review.proposal_id, my_assignment_ids(actor)),
    )
    return or_(Review.proposal_id.in_(decided_by_me), mine)


# Awards, allocations and tranches: ops; the program's owners; the project's members.


@per_holder
def visible_awards(actor: Actor) -> ColumnElement[bool]:
    """The awards the actor may read."""
    if actor.has_role(Role.OPS):
        return true()
    return or_(
        _in(Award.program_id, my_program_ids(actor)),
        _in(Award.project_id, my_project_ids(actor)),
    )


@per_holder
def visible_allocations(actor: Actor) -> ColumnElement[bool]:
    """The allocations the actor may read."""
    if actor.has_role(Role.OPS):
        return true()
    return or_(
        _in(Allocation.program_id, my_program_ids(actor)),
        _in(Allocation.project_id, my_project_ids(actor)),
    )


@per_holder
def visible_tranches(actor: Actor) -> ColumnElement[bool]:
    """The tranches of the awards the actor may read."""
    return Tranche.award_id.in_(select(Award.id).where(visible_awards(actor)))


@per_holder
def administered_tranches(actor: Actor) -> ColumnElement[bool]:
    """The tranches the actor may release: those of the programs they administer."""
    return Tranche.award_id.in_(select(Award.id).where(_administered(Award.program_id, actor)))


# Ledger accounts: ops every account; a funder their programs' pools and the
# allocations they awarded; members their project's accounts. A transfer is
# read through an account it touches.


def _my_pools(actor: Actor) -> ColumnElement[bool]:
    owned = my_program_ids(actor)
    if owned is None:
        return false()
    return and_(
        Account.kind == AccountKind.PROGRAM_POOL.value,
        exists().where(
            ProgramOwner.user_id == actor.user_id,
            Account.code == pool_code_of(ProgramOwner.program_id, Account.currency),
        ),
    )


@per_holder
def visible_accounts(actor: Actor) -> ColumnElement[bool]:
    """The ledger accounts the actor may read; system accounts are for ops alone."""
    if actor.has_role(Role.OPS):
        return true()
    awarded = select(Allocation.account_id).where(_in(Allocation.program_id, my_program_ids(actor)))
    return or_(
        _in(Account.project_id, my_project_ids(actor)),
        Account.id.in_(awarded),
        _my_pools(actor),
    )


# Jobs: ops; the members of the job's project.


@per_holder
def visible_jobs(actor: Actor) -> ColumnElement[bool]:
    """The jobs the actor may read."""
    if actor.has_role(Role.OPS):
        return true()
    return _in(Job.project_id, my_project_ids(actor))
