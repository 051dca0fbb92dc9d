"""Reading the audit log: filtered pages, newest first, by keyset on the event id.

A page is asked for with ``before`` (the smallest id of the page already
shown); the answer carries the cursor of the next, older page, or None on the
last. Filters are exact except ``actor``, which matches a part of the label
(case-insensitive), or any of ``actor_labels`` exactly: the portal gives there
the ``user:<id>`` of everyone whose name or e-mail contains what was typed
(:func:`credits.identity.people.actor_labels_matching`).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.schemas import AuditEventOut

DEFAULT_PAGE = 50
MAX_PAGE = 200


class AuditFilter(BaseModel):
    """What to show; every field left None matches everything."""

    event_type: str | None = None
    actor: str | None = None
    actor_labels: list[str] = []
    subject_type: str | None = None
    subject_id: str | None = None
    since: datetime | None = None  # occurred at or after
    until: datetime | None = None  # occurred before


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_before: int | None


def _conditions(wanted: AuditFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if wanted.event_type:
        conditions.append(AuditEvent.event_type == wanted.event_type)
    if wanted.actor:
        pattern = "%" + _escape_like(wanted.actor.lower()) + "%"
        matches: ColumnElement[bool] = func.lower(AuditEvent.actor).like(pattern, escape="\\")
        if wanted.actor_labels:
            matches = or_(matches, AuditEvent.actor.in_(wanted.actor_labels))
        conditions.append(matches)
    if wanted.subject_type:
        conditions.append(AuditEvent.subject_type == wanted.subject_type)
    if wanted.subject_id:
        conditions.append(AuditEvent.subject_id == wanted.subject_id)
    if wanted.since is not None:
        conditions.append(AuditEvent.occurred_at >= wanted.since)
    if wanted.until is not None:
        conditions.append(AuditEvent.occurred_at < wanted.until)
    return conditions


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_audit_events(
    session: Session,
    wanted: AuditFilter,
    *,
    before: int | None = None,
    limit: int = DEFAULT_PAGE,
) -> AuditPage:
    """One page of events matching ``wanted``, newest (highest id) first, below ``before``."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(AuditEvent).where(*_conditions(wanted))
    if before is not None:
        query = query.where(AuditEvent.id < before)
    rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    next_before = page[-1].id if len(rows) > limit and page else None
    return AuditPage(
        items=[AuditEventOut.model_validate(row) for row in page], next_before=next_before
    )


def event_types(session: Session) -> list[str]:
    """Every event type in the log, sorted: the choices of a filter."""
    return list(session.scalars(select(AuditEvent.event_type).distinct().order_by("event_type")))


def subject_types(session: Session) -> list[str]:
    return list(
        session.scalars(select(AuditEvent.subject_type).distinct().order_by("subject_type"))
    )
