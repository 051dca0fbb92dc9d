"""A Label Studio webhook, received: the annotation it carries becomes a delivery.

The caller has checked the shared secret. The order is found by the Label
Studio project the payload names, and the annotation parsed against that
order's schema, then recorded like the sweep records it (keyed by its
annotation id, so the sweep finding it later changes nothing). Actions other
than a created or updated annotation are acknowledged and change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.labelling.label_schema import LabelSchema
from credits.labelling.label_studio_format import WEBHOOK_ACTIONS, parse_webhook
from credits.labelling.label_studio_sync import order_for_project, record_webhook

WEBHOOK_ACTOR = Actor.system("label-studio-webhook")


class WebhookOut(BaseModel):
    """What a webhook did: ``recorded`` when its annotation became a delivery now,
    ``replayed`` when it had been recorded before."""

    action: str
    order_id: int | None = None
    recorded: bool = False
    replayed: bool = False


def receive_webhook(
    session: Session, payload: Mapping[str, Any], *, now: datetime | None = None
) -> WebhookOut:
    """Records the annotation of a verified webhook. Raises InvalidInput (a payload that
    is not usable), OrderNotFound (no order is that project), and what
    :func:`credits.labelling.deliveries.record_delivery` raises."""
    action = payload.get("action")
    if not isinstance(action, str):
        raise InvalidInput("a Label Studio webhook body has an action")
    if action not in WEBHOOK_ACTIONS:
        return WebhookOut(action=action)
    project = payload.get("project")
    project_id = project.get("id") if isinstance(project, Mapping) else None
    if type(project_id) is not int:
        raise InvalidInput(f"a {action} webhook names its project")
    order = order_for_project(session, project_id)
    event = parse_webhook(LabelSchema.model_validate(order.label_schema), payload)
    delivery = record_webhook(session, event, actor=WEBHOOK_ACTOR, now=now)
    if delivery is None:
        return WebhookOut(action=action, order_id=order.id)
    return WebhookOut(
        action=action,
        order_id=order.id,
        recorded=not delivery.replayed,
        replayed=delivery.replayed,
    )
