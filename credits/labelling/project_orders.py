"""Cancelling a project's labelling orders at once, for a caller that ends the
project's work (:mod:`credits.grants.project_archive`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.labelling.models import Order, OrderStatus
from credits.labelling.orders import cancel_locked_order


def cancel_project_orders(
    session: Session, *, project_id: int, actor: Actor, reason: str, now: datetime
) -> list[int]:
    """Cancels the project's orders nothing was delivered for yet (drafts, quoted and
    placed ones), as :func:`credits.labelling.orders.cancel_order` does, releasing
    their holds; returns their ids. Orders in progress, delivered or disputed go on
    to be accepted, disputed or cancelled by hand."""
    orders = session.scalars(
        select(Order)
        .where(
            Order.project_id == project_id,
            Order.status.in_(
                [OrderStatus.DRAFT.value, OrderStatus.QUOTED.value, OrderStatus.PLACED.value]
            ),
        )
        .order_by(Order.id)
        .with_for_update(key_share=True)
    ).all()
    for order in orders:
        cancel_locked_order(session, actor, order, reason, now)
    return [order.id for order in orders]
