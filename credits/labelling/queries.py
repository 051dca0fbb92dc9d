"""Reading labelling orders as the API, CLI and portal show them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.labelling.access import load_order, visible_orders
from credits.labelling.label_schema import LabelSchema
from credits.labelling.models import Annotation, Item, Order, OrderStatus, PriceSheet, Vendor
from credits.labelling.schemas import OrderOut, OrderSource
from credits.labelling.vendors import sheet_out

MAX_PAGE = 200


def order_out(session: Session, order: Order, *, replayed: bool = False) -> OrderOut:
    vendor = session.get_one(Vendor, order.vendor_id)
    items, gold = session.execute(
        select(func.count(Item.id), func.count(Item.id).filter(Item.is_gold.is_(True))).where(
            Item.order_id == order.id
        )
    ).one()
    annotations = session.scalar(
        select(func.count(Annotation.id)).where(Annotation.order_id == order.id)
    )
    sheet = (
        None if order.price_sheet_id is None else session.get_one(PriceSheet, order.price_sheet_id)
    )
    return OrderOut(
        id=order.id,
        project_id=order.project_id,
        vendor_id=vendor.id,
        vendor_name=vendor.name,
        adapter=vendor.adapter,
        title=order.title,
        instructions=order.instructions,
        label_schema=LabelSchema.model_validate(order.label_schema),
        redundancy=order.redundancy,
        status=order.status,
        source=OrderSource(
            kind=order.source_kind,
            version_id=order.source_version_id,
            name=order.source_name,
        ),
        target_dataset_id=order.target_dataset_id,
        delivered_version_id=order.delivered_version_id,
        items=int(items),
        gold_items=int(gold),
        annotations=int(annotations or 0),
        price_sheet=None if sheet is None else sheet_out(sheet),
        quoted_units_micro=order.quoted_units_micro,
        quoted_micro=order.quoted_micro,
        delivered_units_micro=order.delivered_units_micro,
        captured_micro=order.captured_micro,
        frozen_micro=order.frozen_micro,
        overage_micro=order.overage_micro,
        refunded_micro=order.refunded_micro,
        hold_key=order.hold_key,
        flag=order.flag,
        dispute_reason=order.dispute_reason,
        resolution=order.resolution,
        resolution_note=order.resolution_note,
        external_ref=order.external_ref,
        created_by=order.created_by,
        created_at=order.created_at,
        quoted_at=order.quoted_at,
        placed_at=order.placed_at,
        delivered_at=order.delivered_at,
        accepted_at=order.accepted_at,
        disputed_at=order.disputed_at,
        settled_at=order.settled_at,
        cancelled_at=order.cancelled_at,
        replayed=replayed,
    )


def get_order(session: Session, actor: Actor, *, order_id: int) -> OrderOut:
    """Raises OrderNotFound when the order is missing or hidden from the actor."""
    return order_out(session, load_order(session, actor, order_id))


def list_orders(
    session: Session,
    actor: Actor,
    *,
    project_id: int | None = None,
    status: OrderStatus | None = None,
    vendor_id: int | None = None,
    limit: int = 50,
    after_id: int | None = None,
) -> list[OrderOut]:
    """The orders the actor may read, newest first, keyset-paged by id."""
    query = select(Order).where(visible_orders(actor))
    if project_id is not None:
        query = query.where(Order.project_id == project_id)
    if status is not None:
        query = query.where(Order.status == status.value)
    if vendor_id is not None:
        query = query.where(Order.vendor_id == vendor_id)
    if after_id is not None:
        query = query.where(Order.id < after_id)
    query = query.order_by(Order.id.desc()).limit(max(1, min(limit, MAX_PAGE)))
    return [order_out(session, order) for order in session.scalars(query)]
