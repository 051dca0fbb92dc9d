"""GPU flavours and their effective-dated rates: the only code that changes pool rows.

Every function takes the caller's session, validates before it writes, flushes
and never commits; a refused call changes nothing. Each change appends an
audit event in the caller's transaction.

Rates are versioned, never edited: a version is in force from its
``effective_from`` until the next version's. A new version may not start in
the past, so a time that has already happened always resolves to the same
version, and whatever was charged at it stays explained. It may start now or
later even when a version is already set for a later date: it is then in
force from its start until that version's, and no time already past changes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.db import utcnow
from credits.errors import CreditsError, InvalidInput
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import journal
from credits.pool.errors import (
    FlavourExists,
    FlavourNotFound,
    InvalidFlavour,
    InvalidTime,
    NoRateInForce,
    PoolChangeForbidden,
    RateExists,
    RateInPast,
)
from credits.pool.models import (
    DEFAULT_CHECKPOINT_GRACE_CAP_S,
    FLAVOUR_NAME_PATTERN,
    MAX_CHECKPOINT_GRACE_CAP_S,
    MAX_GPU_MEMORY_GB,
    MAX_GPUS_PER_NODE,
    NODE_LABEL_MAX_LENGTH,
    GpuFlavour,
    RateVersion,
)
from credits.pool.schemas import TEXT_MAX_LENGTH, FlavourOut, RateOut

SECONDS_PER_HOUR = 3600
# "Now" typed on a command line reaches the service a moment later; a start
# this close to the clock is taken as now rather than refused as past.
NOW_GRACE = timedelta(seconds=60)
_NAME = re.compile(FLAVOUR_NAME_PATTERN)
# A Kubernetes label value: alphanumerics at both ends, '-', '_' and '.' inside.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")


# Validation: pure functions, each raising the error that names what is wrong.


def _require_ops(actor: Actor, action: str) -> None:
    """Ops, or the platform itself (an actor with no user), may change the pool."""
    if actor.user_id is None:
        return
    if actor.has_role(Role.OPS):
        return
    raise PoolChangeForbidden(f"only ops may {action}")


def _check_name(name: str) -> str:
    text = name.strip()
    if not _NAME.fullmatch(text):
        raise InvalidFlavour(
            f"a flavour name is 2 to 63 lowercase letters, digits and '-', starting with a "
            f"letter or digit (like a100-80gb); got {text!r}",
            field="name",
        )
    return text


def _check_label_value(value: str) -> str:
    text = value.strip()
    if len(text) > NODE_LABEL_MAX_LENGTH or not _LABEL_VALUE.fullmatch(text):
        raise InvalidFlavour(
            f"a node label value is 1 to {NODE_LABEL_MAX_LENGTH} letters, digits, '-', '_' "
            f"or '.', starting and ending with a letter or digit; got {text!r}",
            field="node_label_value",
        )
    return text


def _check_count(value: object, *, field: str, high: int, low: int = 1) -> int:
    """An int from ``low`` to ``high``; bools and floats are refused."""
    if type(value) is not int or not low <= value <= high:
        raise InvalidFlavour(
            f"{field} is a whole number from {low} to {high}, not {value!r}", field=field
        )
    return value


def _check_grace_cap(value: object) -> int:
    return _check_count(
        value, field="max_checkpoint_grace_seconds", high=MAX_CHECKPOINT_GRACE_CAP_S, low=0
    )


def _clean_text(text: str | None, *, field: str) -> str | None:
    """``text`` stripped, None when blank; raises InvalidInput when too long."""
    cleaned = (text or "").strip()
    if len(cleaned) > TEXT_MAX_LENGTH:
        raise InvalidInput(f"{field} has at most {TEXT_MAX_LENGTH} characters", field=field)
    return cleaned or None


def _check_aware(moment: datetime, *, field: str) -> datetime:
    """``moment`` in UTC; a naive time is ambiguous, so it is refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidTime(
            f"{field} needs a timezone (for example 2030-01-01T00:00:00Z), got "
            f"{moment.isoformat()}",
            field=field,
        )
    return moment.astimezone(UTC)


# Loading, inserting and rendering.


def _load_flavour(session: Session, name: str, *, lock: bool = False) -> GpuFlavour:
    query = select(GpuFlavour).where(GpuFlavour.name == name.strip())
    flavour = session.scalar(query.with_for_update() if lock else query)
    if flavour is None:
        raise FlavourNotFound(f"no GPU flavour is named {name.strip()!r}", flavour=name.strip())
    return flavour


def _is_unique_violation(error: IntegrityError) -> bool:
    if getattr(error.orig, "sqlstate", None) == "23505":
        return True
    return "UNIQUE constraint failed" in str(error.orig)


def _add_unique(session: Session, row: GpuFlavour | RateVersion, conflict: CreditsError) -> None:
    """Adds and flushes ``row`` in a savepoint; losing a UNIQUE race raises ``conflict``.

    The callers check for the duplicate first; this covers two transactions
    that both passed that check (PostgreSQL; SQLite has one writer at a time).
    """
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as error:
        if not _is_unique_violation(error):
            raise
        raise conflict from None


def _rate_out(version: RateVersion, flavour_name: str, *, in_force: bool) -> RateOut:
    return RateOut(
        id=version.id,
        flavour=flavour_name,
        flavour_id=version.flavour_id,
        micro_credits_per_gpu_hour=version.micro_credits_per_gpu_hour,
        effective_from=version.effective_from,
        created_at=version.created_at,
        actor=version.actor,
        reason=version.reason,
        in_force=in_force,
    )


def _audit(
    session: Session,
    *,
    event_type: str,
    actor: Actor,
    subject_type: str,
    subject_id: int,
    data: dict[str, Any],
    now: datetime | None = None,
) -> None:
    record_event(
        session,
        event_type=event_type,
        actor=actor.label,
        subject_type=subject_type,
        subject_id=str(subject_id),
        data=data,
        occurred_at=now,
    )


# Flavours.


def add_flavour(
    session: Session,
    *,
    name: str,
    node_label_value: str,
    gpu_memory_gb: int,
    gpus_per_node: int,
    actor: Actor,
    description: str | None = None,
    max_checkpoint_grace_seconds: int = DEFAULT_CHECKPOINT_GRACE_CAP_S,
) -> FlavourOut:
    """Adds a GPU flavour, which has no rate until one is set; appends ``pool.flavour_added``.

    Names are slugs (``a100-80gb``), unique; the node label value is a valid
    Kubernetes label value. Needs the ops role (or the platform itself).

    Raises PoolChangeForbidden, InvalidFlavour, InvalidInput (description),
    FlavourExists.
    """
    _require_ops(actor, "add a GPU flavour")
    flavour = GpuFlavour(
        name=_check_name(name),
        node_label_value=_check_label_value(node_label_value),
        gpu_memory_gb=_check_count(gpu_memory_gb, field="gpu_memory_gb", high=MAX_GPU_MEMORY_GB),
        gpus_per_node=_check_count(gpus_per_node, field="gpus_per_node", high=MAX_GPUS_PER_NODE),
        description=_clean_text(description, field="description"),
        created_at=utcnow(),
        max_checkpoint_grace_seconds=_check_grace_cap(max_checkpoint_grace_seconds),
    )
    taken = FlavourExists(f"a GPU flavour named {flavour.name!r} already exists")
    if session.scalar(select(GpuFlavour.id).where(GpuFlavour.name == flavour.name)) is not None:
        raise taken
    _add_unique(session, flavour, taken)
    out = FlavourOut.model_validate(flavour)
    data = out.model_dump(mode="json", exclude={"id", "created_at"})
    _audit(
        session,
        event_type="pool.flavour_added",
        actor=actor,
        subject_type="gpu_flavour",
        subject_id=out.id,
        data=data,
    )
    return out


def list_flavours(session: Session) -> list[FlavourOut]:
    """Every GPU flavour, by name."""
    rows = session.scalars(select(GpuFlavour).order_by(GpuFlavour.name))
    return [FlavourOut.model_validate(row) for row in rows]


def get_flavour(session: Session, *, name: str) -> FlavourOut:
    """The flavour called ``name``; raises FlavourNotFound."""
    return FlavourOut.model_validate(_load_flavour(session, name))


def set_checkpoint_grace_cap(
    session: Session, *, name: str, max_checkpoint_grace_seconds: int, actor: Actor
) -> FlavourOut:
    """Sets the longest checkpoint grace a job of the flavour may ask; appends
    ``pool.flavour_changed``. Jobs already submitted keep the grace they were given.

    Raises PoolChangeForbidden, InvalidFlavour, FlavourNotFound.
    """
    _require_ops(actor, "change a GPU flavour")
    cap = _check_grace_cap(max_checkpoint_grace_seconds)
    row = _load_flavour(session, name, lock=True)
    before = row.max_checkpoint_grace_seconds
    row.max_checkpoint_grace_seconds = cap
    session.flush()
    _audit(
        session,
        event_type="pool.flavour_changed",
        actor=actor,
        subject_type="gpu_flavour",
        subject_id=row.id,
        data={"name": row.name, "max_checkpoint_grace_seconds": [before, cap]},
    )
    return FlavourOut.model_validate(row)


# Rates.


def set_rate(
    session: Session,
    *,
    flavour: str,
    credits_per_gpu_hour_micro: int,
    effective_from: datetime,
    actor: Actor,
    reason: str | None = None,
    now: datetime | None = None,
) -> RateOut:
    """Adds a rate version for ``flavour`` from ``effective_from``; appends ``pool.rate_set``.

    The rate is a positive integer of micro-credits per GPU-hour. A start
    before ``now`` is refused (history is never rewritten), except within
    NOW_GRACE, where it is moved to ``now`` so that no time already past
    changes its rate; such a start is still refused when a version began
    between it and ``now`` (moving it would put it after that version, not
    before). A start at or after ``now`` is taken even when versions are set
    for later: it is in force until the next of them. Needs the ops role (or
    the platform itself).

    Raises PoolChangeForbidden, InvalidAmount, InvalidTime, RateInPast,
    InvalidInput (reason), FlavourNotFound, RateExists (a version already
    starts at that time).
    """
    _require_ops(actor, "set a GPU rate")
    rate = journal.check_amount(credits_per_gpu_hour_micro, name="a rate")
    requested = _check_aware(effective_from, field="effective_from")
    note = _clean_text(reason, field="reason")
    # One rate change per flavour at a time, and the clock read once the lock is
    # held, so that two changes cannot interleave their notions of "now".
    row = _load_flavour(session, flavour, lock=True)
    now = _check_aware(now, field="now") if now is not None else utcnow()
    starts = _start_time(requested, now)
    if starts != requested:
        _refuse_reordering(session, row, requested, now)
    taken = RateExists(
        f"flavour {row.name!r} already has a rate version from {starts.isoformat()}",
        flavour=row.name,
        effective_from=starts.isoformat(),
    )
    if _version_at(session, row.id, starts) is not None:
        raise taken
    version = RateVersion(
        flavour_id=row.id,
        micro_credits_per_gpu_hour=rate,
        effective_from=starts,
        created_at=now,
        actor=actor.label,
        reason=note,
    )
    _add_unique(session, version, taken)
    out = _rate_out(version, row.name, in_force=starts <= now)
    data = out.model_dump(mode="json", include={"flavour", "micro_credits_per_gpu_hour"})
    data |= {"effective_from": starts.isoformat(), "reason": note}
    _audit(
        session,
        event_type="pool.rate_set",
        actor=actor,
        subject_type="gpu_rate_version",
        subject_id=out.id,
        data=data,
        now=now,
    )
    return out


def _start_time(effective_from: datetime, now: datetime) -> datetime:
    """When a new version starts: ``effective_from``, or ``now`` when just before it.

    Raises RateInPast, naming both times, for anything earlier than the grace.
    """
    if effective_from >= now:
        return effective_from
    if now - effective_from <= NOW_GRACE:
        return now
    raise RateInPast(
        f"a rate cannot take effect in the past: effective_from {effective_from.isoformat()} "
        f"is before now ({now.isoformat()})",
        effective_from=effective_from.isoformat(),
        now=now.isoformat(),
    )


def _refuse_reordering(
    session: Session, flavour: GpuFlavour, requested: datetime, now: datetime
) -> None:
    """A start in the past, moved up to ``now``, may not jump over a version that
    began in between.

    As asked, the new rate would re-price times already past (from
    ``requested`` until that version); taken at ``now`` it would follow that
    version instead of preceding it. Neither is allowed, so it is refused.
    Versions set for after ``now`` are no obstacle: the new one is in force
    until the first of them, as for any start at or after ``now``.
    """
    passed = session.scalar(
        select(RateVersion.effective_from)
        .where(
            RateVersion.flavour_id == flavour.id,
            RateVersion.effective_from > requested,
            RateVersion.effective_from <= now,
        )
        .order_by(RateVersion.effective_from)
        .limit(1)
    )
    if passed is not None:
        raise RateInPast(
            f"effective_from {requested.isoformat()} lies before the version that took "
            f"effect at {passed.isoformat()}, already past (now is {now.isoformat()}); a "
            f"rate cannot be slipped in ahead of it",
            effective_from=requested.isoformat(),
            now=now.isoformat(),
            version_from=passed.isoformat(),
        )


def _version_at(session: Session, flavour_id: int, starts: datetime) -> int | None:
    return session.scalar(
        select(RateVersion.id).where(
            RateVersion.flavour_id == flavour_id, RateVersion.effective_from == starts
        )
    )


def rate_in_force(session: Session, *, flavour: str, at: datetime) -> RateOut:
    """The version of ``flavour`` with the latest ``effective_from`` at or before ``at``.

    What a job stamps on its hold: store the version's id, and a later rate
    never changes that charge. Raises InvalidTime (a naive ``at``),
    FlavourNotFound, NoRateInForce.
    """
    return rate_of_flavour(session, _load_flavour(session, flavour), at=at)


def rate_of_flavour(session: Session, row: GpuFlavour, *, at: datetime) -> RateOut:
    """:func:`rate_in_force` for a flavour row already loaded (and locked) by the caller."""
    moment = _check_aware(at, field="at")
    version = session.scalar(
        select(RateVersion)
        .where(RateVersion.flavour_id == row.id, RateVersion.effective_from <= moment)
        .order_by(RateVersion.effective_from.desc())
        .limit(1)
    )
    if version is None:
        raise NoRateInForce(
            f"GPU flavour {row.name!r} has no rate in force at {moment.isoformat()}",
            flavour=row.name,
            at=moment.isoformat(),
        )
    return _rate_out(version, row.name, in_force=True)


def list_rates(
    session: Session, *, flavour: str | None = None, now: datetime | None = None
) -> list[RateOut]:
    """Rate history, newest ``effective_from`` first (then by flavour name).

    Each version is flagged ``in_force`` when it is its flavour's version at
    ``now`` (default: the clock). Raises FlavourNotFound for an unknown
    ``flavour``, InvalidTime for a naive ``now``.
    """
    moment = _check_aware(now, field="now") if now is not None else utcnow()
    query = (
        select(RateVersion, GpuFlavour.name)
        .join(GpuFlavour)
        .order_by(RateVersion.effective_from.desc(), GpuFlavour.name)
    )
    if flavour is not None:
        query = query.where(RateVersion.flavour_id == _load_flavour(session, flavour).id)
    settled: set[int] = set()  # flavours whose in-force version has been seen
    rates = []
    for version, name in session.execute(query):
        in_force = version.effective_from <= moment and version.flavour_id not in settled
        if in_force:
            settled.add(version.flavour_id)
        rates.append(_rate_out(version, name, in_force=in_force))
    return rates


# Pricing.


def hold_amount(*, gpus: int, max_runtime_seconds: int, micro_credits_per_gpu_hour: int) -> int:
    """Micro-credits to hold for a job: ceil(gpus * seconds * rate / 3600), exactly.

    Integer arithmetic only, rounding up, so a hold always covers the job's
    longest run at the rate. Every argument is a positive int (bools and
    floats are refused). Raises InvalidInput.
    """
    for field, value in (
        ("gpus", gpus),
        ("max_runtime_seconds", max_runtime_seconds),
        ("micro_credits_per_gpu_hour", micro_credits_per_gpu_hour),
    ):
        if type(value) is not int or value <= 0:
            raise InvalidInput(f"{field} must be a positive integer, got {value!r}", field=field)
    exact_numerator = gpus * max_runtime_seconds * micro_credits_per_gpu_hour
    # Floor division of the negation is the ceiling, with no float in between.
    return -(-exact_numerator // SECONDS_PER_HOUR)
