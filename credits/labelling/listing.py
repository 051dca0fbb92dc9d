"""Pages of orders, of an order's items and of its annotations, as the API and CLI list them.

Keyset-paged by id, oldest first, like every other list of the API: a page's
``next_cursor`` is passed back as ``cursor`` for the next one. Annotations name
their annotators by the order's pseudonyms only, never by who they are.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.grants.queries import keyset_page
from credits.identity.actor import Actor
from credits.labelling.access import load_order, visible_orders
from credits.labelling.label_schema import AnnotationValue
from credits.labelling.models import Annotation, Item, Order, OrderStatus
from credits.labelling.queries import order_out
from credits.labelling.schemas import OrderOut

MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_ID = 2**62


class PageQuery(BaseModel):
    """Paging of an order's items or annotations."""

    model_config = ConfigDict(extra="forbid")

    cursor: int | None = Field(default=None, ge=1, le=MAX_ID)
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class OrderQuery(PageQuery):
    """Filters for listing orders."""

    project_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    status: OrderStatus | None = None
    vendor_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page")


class ItemOut(BaseModel):
    id: int
    position: int
    external_id: str
    text: str | None
    blob_sha256: str | None
    media_type: str
    gold: AnnotationValue | None = Field(description="the known answer of a gold item")
    annotation_count: int


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page")


class AnnotationOut(BaseModel):
    id: int
    item_id: int
    external_id: str
    annotator: str = Field(description="a pseudonym, stable within the order only")
    value: AnnotationValue
    seconds: float | None
    units_micro: int
    captured_micro: int
    frozen_micro: int
    overage_micro: int
    delivered_at: datetime


class AnnotationPage(BaseModel):
    items: list[AnnotationOut]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page")


def list_orders(session: Session, actor: Actor, query: OrderQuery) -> OrderPage:
    """The orders the actor may read by id, filtered."""
    rows, next_cursor = keyset_page(
        session,
        Order,
        [
            visible_orders(actor),
            None if query.project_id is None else Order.project_id == query.project_id,
            None if query.status is None else Order.status == query.status.value,
            None if query.vendor_id is None else Order.vendor_id == query.vendor_id,
        ],
        cursor=query.cursor,
        limit=min(query.limit, MAX_PAGE),
    )
    return OrderPage(items=[order_out(session, row) for row in rows], next_cursor=next_cursor)


def list_items(session: Session, actor: Actor, *, order_id: int, query: PageQuery) -> ItemPage:
    """The order's items with how many annotations each has. Raises OrderNotFound."""
    order = load_order(session, actor, order_id)
    rows, next_cursor = keyset_page(
        session,
        Item,
        [Item.order_id == order.id],
        cursor=query.cursor,
        limit=min(query.limit, MAX_PAGE),
    )
    return ItemPage(items=[_item_out(row) for row in rows], next_cursor=next_cursor)


def _item_out(row: Item) -> ItemOut:
    return ItemOut(
        id=row.id,
        position=row.position,
        external_id=row.external_id,
        text=row.text,
        blob_sha256=row.blob_sha256,
        media_type=row.media_type,
        gold=None if row.gold_value is None else AnnotationValue.model_validate(row.gold_value),
        annotation_count=row.annotation_count,
    )


def list_annotations(
    session: Session, actor: Actor, *, order_id: int, query: PageQuery
) -> AnnotationPage:
    """The order's delivered annotations, annotators by pseudonym. Raises OrderNotFound."""
    order = load_order(session, actor, order_id)
    rows, next_cursor = keyset_page(
        session,
        Annotation,
        [Annotation.order_id == order.id],
        cursor=query.cursor,
        limit=min(query.limit, MAX_PAGE),
    )
    item_ids = {row.item_id for row in rows}
    query_names = select(Item.id, Item.external_id).where(Item.id.in_(item_ids))
    names: dict[int, str] = dict(session.execute(query_names).all())
    items = [
        AnnotationOut(
            id=row.id,
            item_id=row.item_id,
            external_id=names[row.item_id],
            annotator=row.annotator_pseudonym,
            value=AnnotationValue.model_validate(row.value),
            seconds=row.seconds,
            units_micro=row.units_micro,
            captured_micro=row.captured_micro,
            frozen_micro=row.frozen_micro,
            overage_micro=row.overage_micro,
            delivered_at=row.delivered_at,
        )
        for row in rows
    ]
    return AnnotationPage(items=items, next_cursor=next_cursor)
