"""The audit events of labelling orders: one shape for every transition and delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.identity.actor import Actor
from credits.labelling.models import Order


def audit_order(
    session: Session,
    actor: Actor,
    order: Order,
    event_type: str,
    *,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """Appends ``event_type`` on the order, with its project and the state it is now in."""
    record_event(
        session,
        event_type=event_type,
        actor=actor.label,
        subject_type="labelling_order",
        subject_id=str(order.id),
        data={"project_id": order.project_id, "status": order.status, **data},
        occurred_at=now,
    )
