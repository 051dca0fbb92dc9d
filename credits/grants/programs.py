"""Programs (funding calls): create, edit while draft, owners, open, close, fund.

A program's status is explicit, not derived from its dates::

    draft ──open_program──▶ open ──close_program──▶ closed

``opens_at`` and ``closes_at`` are the call's advertised window; proposals
(issue #3) are taken only while the program is open *and* inside the window.
Only a draft may be edited; adding owners is allowed in every state, and so
is funding (:mod:`credits.grants.funding`: a funder may top up a budget while
awards are still being decided).

Every function takes the caller's session, checks who is acting and what
state the program is in before it writes, flushes and never commits, and
appends an audit event in the caller's transaction. A refused call changes
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.db import utcnow
from credits.grants.errors import (
    AlreadyProgramOwner,
    InvalidProgram,
    NotAFunder,
    ProgramForbidden,
    ProgramStatusConflict,
)
from credits.grants.models import (
    MAX_MEAN_SCORE,
    MAX_REVIEWERS,
    MIN_MEAN_SCORE,
    Program,
    ProgramOwner,
    ProgramStatus,
)
from credits.grants.queries import (
    get_program,
    list_programs,
    load_program,
    owner_ids,
    pool_code,
    render_program,
)
from credits.grants.schemas import Criterion, ProgramOut
from credits.identity.access import can_administer_program, can_create_program
from credits.identity.actor import Actor
from credits.identity.models import Role, User
from credits.ledger.models import AccountKind, Currency
from credits.ledger.service import open_account

__all__ = [
    "KEEP",
    "add_program_owner",
    "close_program",
    "create_program",
    "get_program",
    "list_programs",
    "open_program",
    "update_program",
]

NAME_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 20_000
MAX_CRITERIA = 20


class _Keep(Enum):
    KEEP = "keep"


# Passed for a nullable field of ``update_program`` that should stay as it is.
KEEP: Final = _Keep.KEEP

CriterionInput = Criterion | Mapping[str, Any]


# Validation: pure functions, each raising InvalidProgram with the field it names.


def _clean_text(value: str, *, field: str, limit: int) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise InvalidProgram(f"a program needs a {field}", field=field)
    if len(text) > limit:
        raise InvalidProgram(f"a program's {field} has at most {limit} characters", field=field)
    return text


def _check_window(opens_at: datetime, closes_at: datetime) -> None:
    for field, moment in (("opens_at", opens_at), ("closes_at", closes_at)):
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise InvalidProgram(f"{field} must be a timezone-aware time", field=field)
    if closes_at <= opens_at:
        raise InvalidProgram("a program must close after it opens", field="closes_at")


def _clean_criteria(criteria: Iterable[CriterionInput]) -> list[dict[str, str]]:
    try:
        parsed = [Criterion.model_validate(item, from_attributes=True) for item in criteria]
    except ValidationError as error:
        raise InvalidProgram(
            f"a criterion is a key (a lowercase slug) and a label: {error.errors()[0]['msg']}",
            field="criteria",
        ) from None
    if not 1 <= len(parsed) <= MAX_CRITERIA:
        raise InvalidProgram(f"a program has 1 to {MAX_CRITERIA} criteria", field="criteria")
    keys = [item.key for item in parsed]
    if len(set(keys)) != len(keys):
        raise InvalidProgram("criterion keys must be distinct", field="criteria")
    return [{"key": item.key, "label": item.label.strip()} for item in parsed]


def _check_int(value: object, *, field: str, low: int, high: int) -> int:
    # bool is an int in Python; True reviewers is a bug in the caller.
    if type(value) is not int or not low <= value <= high:
        raise InvalidProgram(f"{field} must be an integer from {low} to {high}", field=field)
    return value


def _check_share(value: int | None) -> int | None:
    if value is None:
        return None
    return _check_int(value, field="initial_share_percent", low=1, high=100)


# Loading and guarding.


def _load_funders(session: Session, user_ids: Iterable[int]) -> list[User]:
    """The users, each holding the funder role; raises NotAFunder.

    A missing user and one without the role get the same answer, without an
    email, so that owner ids cannot be used to map who uses the platform.
    """
    funders = []
    for user_id in sorted(set(user_ids)):
        user = session.get(User, user_id)
        if user is None or not any(held.role == Role.FUNDER.value for held in user.roles):
            raise NotAFunder(f"user {user_id} is not a funder on this platform", user_id=user_id)
        funders.append(user)
    return funders


def _require_admin(actor: Actor, program: Program) -> None:
    if not can_administer_program(actor, owner_ids=owner_ids(program)):
        raise ProgramForbidden(f"only an owner of program {program.id} or ops may do this")


def _require_status(program: Program, wanted: ProgramStatus, action: str) -> None:
    if program.status != wanted.value:
        raise ProgramStatusConflict(
            f"program {program.id} is {program.status}; only {wanted.value} programs can {action}",
            current_status=program.status,
        )


def _audit(session: Session, event_type: str, program: Program, actor: Actor, **data: Any) -> None:
    record_event(
        session,
        event_type=event_type,
        actor=actor.label,
        subject_type="program",
        subject_id=str(program.id),
        data=data,
    )


def _window_data(program: Program) -> dict[str, Any]:
    return {
        "name": program.name,
        "opens_at": program.opens_at.isoformat(),
        "closes_at": program.closes_at.isoformat(),
        "criteria": program.criteria,
        "min_reviewers": program.min_reviewers,
        "min_mean_score": program.min_mean_score,
        "initial_share_percent": program.initial_share_percent,
    }


# Services.


def create_program(
    session: Session,
    *,
    name: str,
    description: str,
    opens_at: datetime,
    closes_at: datetime,
    criteria: Iterable[CriterionInput],
    min_reviewers: int,
    min_mean_score: int,
    actor: Actor,
    owner_ids: Iterable[int] = (),
    initial_share_percent: int | None = None,
) -> ProgramOut:
    """Creates a draft program, its owners and one empty pool account per currency.

    A funder who creates a program becomes one of its owners; ops may create a
    program for other funders. Every owner must hold the funder role, and
    there is at least one. ``min_mean_score`` is in hundredths (100-500).
    Appends ``program.created``.

    Raises ProgramForbidden (neither ops nor a funder), InvalidProgram,
    UserNotFound, NotAFunder.
    """
    if not can_create_program(actor):
        raise ProgramForbidden("only funders and ops create programs")
    wanted = set(owner_ids)
    if actor.has_role(Role.FUNDER) and actor.user_id is not None:
        wanted.add(actor.user_id)
    if not wanted:
        raise InvalidProgram("a program needs at least one owner funder", field="owner_ids")
    program = Program(
        name=_clean_text(name, field="name", limit=NAME_MAX_LENGTH),
        description=_clean_text(description, field="description", limit=DESCRIPTION_MAX_LENGTH),
        status=ProgramStatus.DRAFT.value,
        opens_at=opens_at,
        closes_at=closes_at,
        criteria=_clean_criteria(criteria),
        min_reviewers=_check_int(min_reviewers, field="min_reviewers", low=1, high=MAX_REVIEWERS),
        min_mean_score=_check_int(
            min_mean_score, field="min_mean_score", low=MIN_MEAN_SCORE, high=MAX_MEAN_SCORE
        ),
        initial_share_percent=_check_share(initial_share_percent),
    )
    _check_window(opens_at, closes_at)
    program.owners = [ProgramOwner(user=user) for user in _load_funders(session, wanted)]
    session.add(program)
    session.flush()
    for currency in Currency:
        open_account(
            session,
            code=pool_code(program.id, currency),
            currency=currency,
            kind=AccountKind.PROGRAM_POOL,
            actor=actor,
        )
    owners = sorted(owner.user_id for owner in program.owners)
    _audit(session, "program.created", program, actor, owners=owners, **_window_data(program))
    return render_program(session, program)


def update_program(
    session: Session,
    *,
    program_id: int,
    actor: Actor,
    name: str | None = None,
    description: str | None = None,
    opens_at: datetime | None = None,
    closes_at: datetime | None = None,
    criteria: Iterable[CriterionInput] | None = None,
    min_reviewers: int | None = None,
    min_mean_score: int | None = None,
    initial_share_percent: int | _Keep | None = KEEP,
) -> ProgramOut:
    """Changes what is given of a draft program; None (or KEEP) leaves a field as it is.

    ``initial_share_percent=None`` clears the tranche policy. The result is
    checked as a whole (the window must still close after it opens). Appends
    ``program.updated`` with each field that really changed, from and to;
    an edit that changes nothing appends nothing.

    Raises ProgramNotFound, ProgramForbidden, ProgramStatusConflict (not a
    draft), InvalidProgram.
    """
    program = load_program(session, program_id, lock=True)
    _require_admin(actor, program)
    _require_status(program, ProgramStatus.DRAFT, "be edited")
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _clean_text(name, field="name", limit=NAME_MAX_LENGTH)
    if description is not None:
        changes["description"] = _clean_text(
            description, field="description", limit=DESCRIPTION_MAX_LENGTH
        )
    if criteria is not None:
        changes["criteria"] = _clean_criteria(criteria)
    if min_reviewers is not None:
        changes["min_reviewers"] = _check_int(
            min_reviewers, field="min_reviewers", low=1, high=MAX_REVIEWERS
        )
    if min_mean_score is not None:
        changes["min_mean_score"] = _check_int(
            min_mean_score, field="min_mean_score", low=MIN_MEAN_SCORE, high=MAX_MEAN_SCORE
        )
    if initial_share_percent is not KEEP:
        changes["initial_share_percent"] = _check_share(initial_share_percent)
    _check_window(opens_at or program.opens_at, closes_at or program.closes_at)
    changes |= {
        field: moment
        for field, moment in (("opens_at", opens_at), ("closes_at", closes_at))
        if moment is not None
    }
    changed = {
        field: {"from": _audit_value(getattr(program, field)), "to": _audit_value(value)}
        for field, value in changes.items()
        if _audit_value(getattr(program, field)) != _audit_value(value)
    }
    if not changed:
        return render_program(session, program)
    for field in changed:
        setattr(program, field, changes[field])
    session.flush()
    _audit(session, "program.updated", program, actor, changes=changed)
    return render_program(session, program)


def _audit_value(value: Any) -> Any:
    """A field's value as the audit log records it: times in UTC, ISO 8601."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def add_program_owner(
    session: Session, *, program_id: int, user_id: int, actor: Actor
) -> ProgramOut:
    """Makes a funder an owner of the program, in any state; appends ``program.owner_added``.

    Raises ProgramNotFound, ProgramForbidden, UserNotFound, NotAFunder,
    AlreadyProgramOwner.
    """
    program = load_program(session, program_id, lock=True)
    _require_admin(actor, program)
    (user,) = _load_funders(session, [user_id])
    if user_id in owner_ids(program):
        raise AlreadyProgramOwner(
            f"user {user_id} already owns program {program.id}", user_id=user_id
        )
    program.owners.append(ProgramOwner(user=user))
    session.flush()
    _audit(session, "program.owner_added", program, actor, user_id=user_id)
    return render_program(session, program)


def open_program(
    session: Session, *, program_id: int, actor: Actor, now: datetime | None = None
) -> ProgramOut:
    """Opens a draft program for proposals; appends ``program.opened``.

    A program whose closing time has passed cannot open: edit its dates first.
    Raises ProgramNotFound, ProgramForbidden, ProgramStatusConflict (not a
    draft), InvalidProgram (closes_at has passed).
    """
    now = now or utcnow()
    program = load_program(session, program_id, lock=True)
    _require_admin(actor, program)
    _require_status(program, ProgramStatus.DRAFT, "be opened")
    if program.closes_at <= now:
        raise InvalidProgram(
            f"program {program.id} closed at {program.closes_at.isoformat()}; "
            "move closes_at into the future first",
            field="closes_at",
        )
    program.status = ProgramStatus.OPEN.value
    program.opened_at = now
    session.flush()
    _audit(session, "program.opened", program, actor, **{"from": ProgramStatus.DRAFT.value})
    return render_program(session, program)


def close_program(
    session: Session, *, program_id: int, actor: Actor, now: datetime | None = None
) -> ProgramOut:
    """Closes an open program to new proposals; appends ``program.closed``.

    Closing early is allowed. Raises ProgramNotFound, ProgramForbidden,
    ProgramStatusConflict (not open).
    """
    now = now or utcnow()
    program = load_program(session, program_id, lock=True)
    _require_admin(actor, program)
    _require_status(program, ProgramStatus.OPEN, "be closed")
    program.status = ProgramStatus.CLOSED.value
    program.closed_at = now
    session.flush()
    _audit(session, "program.closed", program, actor, **{"from": ProgramStatus.OPEN.value})
    return render_program(session, program)
