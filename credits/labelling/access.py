"""Who may see and act on labelling orders.

Project members holding the researcher role see and run their projects'
orders; ops see all and resolve disputes; an annotator sees only the queues of
the in-house orders they are assigned to.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.rules import load_visible, my_project_ids
from credits.labelling.errors import OrderNotFound
from credits.labelling.models import Order, OrderAnnotator


def visible_orders(actor: Actor) -> ColumnElement[bool]:
    """The orders the actor may read in full."""
    if actor.has_role(Role.OPS):
        return true()
    projects = my_project_ids(actor)
    if projects is None:
        return Order.id.is_(None)
    return Order.project_id.in_(projects)


def assigned_orders(actor: Actor) -> ColumnElement[bool]:
    """The in-house orders the actor may annotate, while they hold the annotator role."""
    if actor.user_id is None or not actor.has_role(Role.ANNOTATOR):
        return Order.id.is_(None)
    mine = select(OrderAnnotator.order_id).where(OrderAnnotator.user_id == actor.user_id)
    return Order.id.in_(mine)


def load_order(session: Session, actor: Actor, order_id: int) -> Order:
    """The order when the actor may read it; OrderNotFound whether it is missing or hidden."""
    order = load_visible(session, Order, order_id, visible_orders(actor))
    if order is None:
        raise OrderNotFound(f"no labelling order has the id {order_id}")
    return order


def lock_order(session: Session, order_id: int) -> Order:
    """The order, locked for the rest of the transaction (FOR NO KEY UPDATE on PostgreSQL).

    Not FOR UPDATE: inserting a row that references the order (an annotator's
    assignment) takes a KEY SHARE lock on it, which FOR UPDATE waits for; a
    transaction that served an item and then records its answer would deadlock
    with another doing the same. Two lockers still exclude each other."""
    order = session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if order is None:
        raise OrderNotFound(f"no labelling order has the id {order_id}")
    return order
