"""The invoice adapter: a vendor reports delivered units as usage records.

A vendor's meter posts records to the usage ingestion API naming a labelling
order (``labelling_order_id``). Ingestion judges each such record against the
order (:func:`check_record`) and prices it at the order's quote; the record
then waits, pending like any other, until metering settlement hands its units
to the order (:func:`settle_record`), which captures them from the order's
hold, books what runs past the quote as overage and flags the order, or
freezes them while the order is disputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.labelling.deliveries import TAKES_DELIVERIES, record_units
from credits.labelling.models import Adapter, Order, OrderStatus, PriceSheet, PriceUnit, Vendor
from credits.labelling.pricing import Price, cost
from credits.labelling.schemas import DeliveryOut
from credits.ledger.models import Currency


class InvoiceRecordRefused(InvalidInput):
    """A usage record that names a labelling order the order cannot take."""

    slug = "invoice-record-refused"


@dataclass(frozen=True)
class InvoiceOrder:
    """What judging a record needs to know of its order, read once per batch."""

    id: int
    project_id: int
    adapter: str
    status: str
    price: Price | None


def load_invoice_order(session: Session, order_id: int) -> InvoiceOrder | None:
    """The order's facts, or None when no order has the id (not locked: settlement
    judges the order again under its lock)."""
    row = session.execute(
        select(Order.id, Order.project_id, Order.status, Vendor.adapter, PriceSheet)
        .join(Vendor, Vendor.id == Order.vendor_id)
        .outerjoin(PriceSheet, PriceSheet.id == Order.price_sheet_id)
        .where(Order.id == order_id)
    ).one_or_none()
    if row is None:
        return None
    sheet = row.PriceSheet
    price = (
        None
        if sheet is None
        else Price(PriceUnit(sheet.unit), sheet.micro_credits_per_unit, sheet.fee_basis_points)
    )
    return InvoiceOrder(row.id, row.project_id, row.adapter, row.status, price)


def delivery_key(usage_record_id: int) -> str:
    """The unit delivery's key: the record's own id, which no two records share.

    Not (source, record_id) joined with ':', which both may contain: two records
    would share a key. Keys of deliveries settled before were
    ``usage:<source>:<record_id>``, with a ':' after the source; ``usage:<id>``
    has none, so it never meets one of them.
    """
    return f"usage:{usage_record_id}"


def check_record(
    order: InvoiceOrder,
    *,
    project_id: int,
    currency: Currency,
    unit: str,
    units_micro: int,
) -> int:
    """The record's amount at the order's quoted price; raises InvoiceRecordRefused
    saying why the order cannot take it."""
    name = f"labelling order {order.id}"
    if order.project_id != project_id:
        raise InvoiceRecordRefused(f"{name} is not an order of project {project_id}")
    if order.adapter != Adapter.INVOICE.value:
        raise InvoiceRecordRefused(
            f"{name} is not an invoice-adapter order (its vendor's adapter is {order.adapter})"
        )
    if currency is not Currency.LABEL:
        raise InvoiceRecordRefused(f"units of {name} are charged in label credits")
    if OrderStatus(order.status) not in TAKES_DELIVERIES or order.price is None:
        raise InvoiceRecordRefused(f"{name} is {order.status} and takes no deliveries")
    if unit != order.price.unit.value:
        raise InvoiceRecordRefused(f"{name} is priced per {order.price.unit.value}, not per {unit}")
    if units_micro <= 0:
        raise InvoiceRecordRefused("delivered units must be more than 0")
    return cost(units_micro, order.price)


def settle_record(
    session: Session,
    *,
    order_id: int,
    usage_record_id: int,
    units_micro: int,
    actor: Actor,
    now: datetime,
) -> DeliveryOut:
    """Hands a pending record's units to its order, once (keyed by the record's id).

    Raises OrderNotFound, OrderStateConflict (the order closed since the record was
    accepted: metering sets the record aside as failed), DeliveryReplayConflict or
    InvalidInput.
    """
    return record_units(
        session,
        order_id=order_id,
        units_micro=units_micro,
        delivery_key=delivery_key(usage_record_id),
        usage_record_id=usage_record_id,
        actor=actor,
        now=now,
    )
