"""Appending audit events and checking their leaf hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.public_text import refuse_large_entry, refuse_personal_reasons
from credits.audit.schemas import AuditEventOut, AuditMismatch
from credits.db import utcnow
from credits.transparency.entries import MAX_ENTRY_SIZE, published_entry

_INSERT_EVENTS = insert(cast(Table, AuditEvent.__table__))
# RFC 6962 prefixes a leaf with 0x00 so a leaf can never be mistaken for a node.
LEAF_PREFIX = b"\x00"


def canonical_json(document: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 kept as is: the same bytes on every machine."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def leaf_hash(canonical: str) -> str:
    return hashlib.sha256(LEAF_PREFIX + canonical.encode("utf-8")).hexdigest()


def _event_row(
    *,
    event_type: str,
    actor: str,
    subject_type: str,
    subject_id: str,
    data: Mapping[str, Any],
    occurred_at: datetime,
) -> dict[str, Any]:
    document = {
        "type": event_type,
        "actor": actor,
        "subject": {"type": subject_type, "id": subject_id},
        "at": occurred_at.isoformat(),
        "data": dict(data),
    }
    canonical = canonical_json(document)
    return {
        "event_type": event_type,
        "actor": actor,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "occurred_at": occurred_at,
        "canonical_json": canonical,
        "leaf_hash": leaf_hash(canonical),
    }


def record_event(
    session: Session,
    *,
    event_type: str,
    actor: str,
    subject_type: str,
    subject_id: str,
    data: Mapping[str, Any],
    occurred_at: datetime | None = None,
) -> None:
    """Appends one event in the caller's transaction."""
    record_events(
        session,
        [
            {
                "event_type": event_type,
                "actor": actor,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "data": data,
            }
        ],
        occurred_at=occurred_at,
    )


def record_events(
    session: Session,
    events: Sequence[Mapping[str, Any]],
    *,
    occurred_at: datetime | None = None,
) -> None:
    """Appends several events with one statement, in the caller's transaction.

    Raises PersonalDataInPublicText when a person's reason names someone, and
    PublicTextTooLong when an event would not fit one entry of the transparency log
    (:mod:`credits.audit.public_text`), before writing anything; the caller's
    transaction then stores nothing.

    Each mapping has ``event_type``, ``actor``, ``subject_type``, ``subject_id``
    and ``data``. A ``data`` value must be JSON: ints, strings, lists, dicts.
    """
    if not events:
        return
    for event in events:
        refuse_personal_reasons(event["actor"], event["data"])
    at = occurred_at or utcnow()
    rows = [_event_row(occurred_at=at, **event) for event in events]
    for event, row in zip(events, rows, strict=True):
        _refuse_unpublishable(event["data"], row["canonical_json"])
    # Core, not the ORM's bulk path: audit rows are written on every ledger call.
    session.connection().execute(_INSERT_EVENTS, rows)


def _refuse_unpublishable(data: Mapping[str, Any], canonical: str) -> None:
    """Refuses an event whose log entry would be over the 65,535 bytes an entry may
    hold: stored, it would stop the integrator for good (audit rows cannot be
    changed or deleted). Measured as the integrator encodes it."""
    # Leaving fields out only shortens an entry: most rows need no second encoding.
    if len(canonical) * 4 > MAX_ENTRY_SIZE and len(canonical.encode()) > MAX_ENTRY_SIZE:
        refuse_large_entry(data, published_entry(canonical))


def list_events(
    session: Session, *, subject_type: str | None = None, subject_id: str | None = None
) -> list[AuditEventOut]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    if subject_type is not None:
        query = query.where(AuditEvent.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(AuditEvent.subject_id == subject_id)
    return [AuditEventOut.model_validate(row) for row in session.scalars(query)]


def find_leaf_mismatches(session: Session) -> list[AuditMismatch]:
    """Every event whose stored hash does not match its stored canonical JSON."""
    mismatches = []
    for event_id, canonical, stored in session.execute(
        select(AuditEvent.id, AuditEvent.canonical_json, AuditEvent.leaf_hash).order_by(
            AuditEvent.id
        )
    ):
        if leaf_hash(canonical) != stored:
            mismatches.append(AuditMismatch(event_id=event_id, stored=stored))
    return mismatches
