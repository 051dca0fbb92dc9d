"""What the order page shows: the order, its project, what its state allows, its
progress, annotators, quality figures and the dataset version it delivered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from credits.datasets.models import DatasetVersion
from credits.identity.access import get_project_for_actor
from credits.identity.actor import Actor
from credits.labelling import orders, progress, quality
from credits.labelling.models import Adapter, OrderStatus
from credits.labelling.queries import get_order
from credits.labelling.schemas import OrderOut
from credits.ledger.models import Currency
from credits.ledger.queries import project_available

S = OrderStatus
# action: (the service call, what the page says once it is done)
ACTIONS: dict[str, tuple[Callable[..., Any], str]] = {
    "quote": (orders.quote_order, "Quoted at the vendor's price in force now."),
    "place": (orders.place_order, "Order placed: its quote is held on the project's credits."),
    "accept": (
        orders.accept_order,
        "Order accepted and settled: the rest of its hold was released.",
    ),
}
# Which buttons each state shows (the services refuse the others anyway).
ALLOWED: dict[OrderStatus, tuple[str, ...]] = {
    S.DRAFT: ("quote", "cancel"),
    S.QUOTED: ("quote", "place", "cancel"),
    S.PLACED: ("cancel",),
    S.IN_PROGRESS: ("accept", "dispute", "cancel"),
    S.DELIVERED: ("accept", "dispute"),
}
ASSIGNABLE = frozenset({S.DRAFT, S.QUOTED, S.PLACED, S.IN_PROGRESS})


def order_page_context(session: Session, actor: Actor, order_id: int) -> dict[str, Any]:
    """Everything the order page renders. Raises OrderNotFound (a 404)."""
    order = get_order(session, actor, order_id=order_id)
    project = get_project_for_actor(session, actor, order.project_id)
    return {
        "order": order,
        "project": project,
        "allowed": ALLOWED.get(order.status, ()),
        "can_assign": order.adapter is Adapter.INHOUSE and order.status in ASSIGNABLE,
        "annotators": progress.assigned_annotators(session, actor, order_id=order_id),
        "progress": progress.order_progress(session, actor, order_id=order_id),
        "available_micro": project_available(
            session, project_id=order.project_id, currency=Currency.LABEL
        ),
        "quality": quality.order_quality(session, actor, order_id=order_id),
        "delivered": _delivered_public_id(session, order),
    }


def _delivered_public_id(session: Session, order: OrderOut) -> str | None:
    if order.delivered_version_id is None:
        return None
    version = session.get(DatasetVersion, order.delivered_version_id)
    return None if version is None else version.public_id
