"""Recording delivered work: one annotation of an item, or units a vendor invoiced.

Each delivery is keyed within its order (``delivery_key``): a replay, or a
delivery that arrives out of order, is recorded and charged once. The order
row is locked first, so concurrent deliveries to one order are metered one
after another and the captures add up exactly.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.labelling.access import lock_order
from credits.labelling.audit import audit_order
from credits.labelling.errors import (
    AlreadyAnnotated,
    DeliveryReplayConflict,
    ItemNotFound,
    OrderStateConflict,
)
from credits.labelling.label_schema import AnnotationValue, LabelSchema, check_annotation
from credits.labelling.models import (
    Annotation,
    Item,
    Order,
    OrderStatus,
    UnitDelivery,
)
from credits.labelling.pricing import delivered_units
from credits.labelling.schemas import DeliveryOut
from credits.labelling.settlement import meter, order_price
from credits.ledger import journal
from credits.settings import load_settings

S = OrderStatus
TAKES_DELIVERIES = frozenset({S.PLACED, S.IN_PROGRESS, S.DELIVERED, S.DISPUTED})


def record_delivery(
    session: Session,
    *,
    order_id: int,
    item_id: int,
    annotator_ref: str,
    value: AnnotationValue,
    seconds: float | None,
    delivery_key: str,
    actor: Actor,
    claimed: bool = False,
    now: datetime | None = None,
) -> DeliveryOut:
    """Records one annotator's answer for one item and charges it at the quoted price.

    ``claimed`` says the item was already claimed for this annotator (the
    in-house queue); other adapters claim it here. Raises OrderNotFound,
    OrderStateConflict, ItemNotFound, InvalidInput (an answer the schema refuses),
    AlreadyAnnotated.
    """
    now = journal.check_time(now)
    order = lock_order(session, order_id)
    if (prior := _prior_annotation(session, order, delivery_key)) is not None:
        return prior
    _require_takes_deliveries(order)
    item = session.get(Item, item_id)
    if item is None or item.order_id != order.id:
        raise ItemNotFound(f"order {order.id} has no item {item_id}")
    schema = LabelSchema.model_validate(order.label_schema)
    value = check_annotation(
        schema, value, text_length=None if item.text is None else len(item.text)
    )
    if seconds is not None and not 0 <= seconds <= 86_400:
        raise InvalidInput("the time spent on an item is between 0 and 86400 seconds")
    if session.scalar(
        select(Annotation.id).where(
            Annotation.item_id == item.id, Annotation.annotator_ref == annotator_ref
        )
    ):
        raise AlreadyAnnotated(f"{annotator_ref} already labelled item {item.external_id!r}")
    units = delivered_units(order_price(session, order).unit, value, seconds)
    row = Annotation(
        order_id=order.id,
        item_id=item.id,
        annotator_ref=annotator_ref,
        annotator_pseudonym=_order_pseudonym(session, order.id, annotator_ref),
        value=value.model_dump(mode="json"),
        seconds=seconds,
        delivery_key=delivery_key,
        units_micro=units,
        delivered_at=now,
    )
    session.add(row)
    session.flush()
    _count_annotation(session, item, claimed=claimed)
    metered = meter(
        session, order, units_micro=units, key=f"labelling:{order.id}:annotation:{row.id}", now=now
    )
    row.captured_micro, row.frozen_micro, row.overage_micro = (
        metered.captured_micro,
        metered.frozen_micro,
        metered.overage_micro,
    )
    _advance(session, order, now)
    data = {"annotation_id": row.id, "units_micro": units}
    audit_order(session, actor, order, "labelling.annotation_delivered", data=data, now=now)
    return _annotation_out(order, row, replayed=False)


def _prior_annotation(session: Session, order: Order, delivery_key: str) -> DeliveryOut | None:
    row = session.scalar(
        select(Annotation).where(
            Annotation.order_id == order.id, Annotation.delivery_key == delivery_key
        )
    )
    return None if row is None else _annotation_out(order, row, replayed=True)


def _annotation_out(order: Order, row: Annotation, *, replayed: bool) -> DeliveryOut:
    return DeliveryOut(
        order_id=order.id,
        delivery_id=row.id,
        units_micro=row.units_micro,
        captured_micro=row.captured_micro,
        frozen_micro=row.frozen_micro,
        overage_micro=row.overage_micro,
        replayed=replayed,
        order_status=S(order.status),
    )


def _count_annotation(session: Session, item: Item, *, claimed: bool) -> None:
    session.execute(
        update(Item)
        .where(Item.id == item.id)
        .values(
            annotation_count=Item.annotation_count + 1,
            claims=Item.claims if claimed else Item.claims + 1,
        )
    )
    session.refresh(item)


def record_units(
    session: Session,
    *,
    order_id: int,
    units_micro: int,
    delivery_key: str,
    actor: Actor,
    usage_record_id: int | None = None,
    now: datetime | None = None,
) -> DeliveryOut:
    """Records units a vendor reports for an order (invoice adapter) and charges them.

    Units past the quote are booked as overage and flag the order. The same key
    again replays the delivery recorded first. Raises OrderNotFound,
    OrderStateConflict, InvalidInput, DeliveryReplayConflict (the key was recorded
    with other units or for another usage record).
    """
    now = journal.check_time(now)
    if type(units_micro) is not int or units_micro <= 0:
        raise InvalidInput("delivered units must be a positive number")
    order = lock_order(session, order_id)
    prior = session.scalar(
        select(UnitDelivery).where(
            UnitDelivery.order_id == order.id, UnitDelivery.delivery_key == delivery_key
        )
    )
    if prior is not None:
        _require_same_delivery(prior, units_micro, usage_record_id)
        return _units_out(order, prior, replayed=True)
    _require_takes_deliveries(order)
    row = UnitDelivery(
        order_id=order.id,
        delivery_key=delivery_key,
        units_micro=units_micro,
        usage_record_id=usage_record_id,
        delivered_at=now,
    )
    session.add(row)
    session.flush()
    metered = meter(
        session, order, units_micro=units_micro, key=f"labelling:{order.id}:units:{row.id}", now=now
    )
    row.captured_micro, row.frozen_micro, row.overage_micro = (
        metered.captured_micro,
        metered.frozen_micro,
        metered.overage_micro,
    )
    if order.status == S.PLACED.value:
        order.status = S.IN_PROGRESS.value
    data = {"delivery_id": row.id, "units_micro": units_micro}
    audit_order(session, actor, order, "labelling.units_delivered", data=data, now=now)
    return _units_out(order, row, replayed=False)


def _require_same_delivery(
    prior: UnitDelivery, units_micro: int, usage_record_id: int | None
) -> None:
    """A replay answers with the first delivery's figures, so it must be that delivery:
    answering another one with them would mark its usage with figures not its own."""
    if prior.units_micro != units_micro:
        raise DeliveryReplayConflict(
            f"delivery {prior.delivery_key!r} of order {prior.order_id} was recorded with "
            f"{prior.units_micro} micro-units, not {units_micro}"
        )
    if usage_record_id is not None and prior.usage_record_id != usage_record_id:
        raise DeliveryReplayConflict(
            f"delivery {prior.delivery_key!r} of order {prior.order_id} was recorded for "
            f"usage record {prior.usage_record_id}, not {usage_record_id}"
        )


def _units_out(order: Order, row: UnitDelivery, *, replayed: bool) -> DeliveryOut:
    return DeliveryOut(
        order_id=order.id,
        delivery_id=row.id,
        units_micro=row.units_micro,
        captured_micro=row.captured_micro,
        frozen_micro=row.frozen_micro,
        overage_micro=row.overage_micro,
        replayed=replayed,
        order_status=S(order.status),
    )


def mark_delivered(session: Session, order: Order, *, actor: Actor, now: datetime) -> None:
    """The vendor says the work is complete (invoice adapter); the order must be locked."""
    if order.status not in (S.PLACED.value, S.IN_PROGRESS.value):
        raise OrderStateConflict(
            f"cannot mark an order that is {order.status} delivered", state=order.status
        )
    order.status = S.DELIVERED.value
    order.delivered_at = now
    audit_order(session, actor, order, "labelling.order_delivered", data={}, now=now)


def _require_takes_deliveries(order: Order) -> None:
    if S(order.status) not in TAKES_DELIVERIES:
        raise OrderStateConflict(
            f"an order that is {order.status} takes no deliveries", state=order.status
        )


def _advance(session: Session, order: Order, now: datetime) -> None:
    """placed -> in_progress at the first delivery; -> delivered once every item has its
    annotators (a disputed order stays disputed)."""
    if order.status == S.PLACED.value:
        order.status = S.IN_PROGRESS.value
    if order.status != S.IN_PROGRESS.value:
        return
    short = session.scalar(
        select(func.count(Item.id)).where(
            Item.order_id == order.id, Item.annotation_count < order.redundancy
        )
    )
    if not short:
        order.status = S.DELIVERED.value
        order.delivered_at = now


def _order_pseudonym(session: Session, order_id: int, annotator_ref: str) -> str:
    """The annotator's pseudonym in the order: the one their earlier annotations there
    carry, so that rotating the secret key mid-order does not split one annotator in two."""
    recorded = session.scalar(
        select(Annotation.annotator_pseudonym)
        .where(Annotation.order_id == order_id, Annotation.annotator_ref == annotator_ref)
        .limit(1)
    )
    return recorded if recorded is not None else pseudonym(order_id, annotator_ref)


def pseudonym(order_id: int, annotator_ref: str) -> str:
    """A name for an annotator that is stable within one order and means nothing outside it."""
    secret = load_settings().secret_key.get_secret_value().encode()
    digest = hmac.new(secret, f"{order_id}:{annotator_ref}".encode(), hashlib.sha256).hexdigest()
    return f"annotator-{digest[:10]}"
