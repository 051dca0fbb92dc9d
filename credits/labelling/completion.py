"""Ops mark an invoice order delivered: the vendor says the work is complete.

In-house and Label Studio orders become delivered by themselves once every
item has its annotators; an invoice vendor reports units, not items, so ops
say when its work is done and the requester may then accept or dispute it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.labelling.access import load_order, lock_order
from credits.labelling.deliveries import mark_delivered
from credits.labelling.errors import VendorMismatch
from credits.labelling.models import Adapter
from credits.labelling.queries import order_out
from credits.labelling.schemas import OrderOut
from credits.labelling.vendors import load_vendor, require_ops
from credits.ledger import journal


def mark_order_delivered(
    session: Session, *, order_id: int, actor: Actor, now: datetime | None = None
) -> OrderOut:
    """Marks a placed or in-progress invoice order delivered. Raises LabellingForbidden,
    OrderNotFound, OrderStateConflict, VendorMismatch (not an invoice order)."""
    require_ops(actor, "mark orders delivered")
    now = journal.check_time(now)
    load_order(session, actor, order_id)
    order = lock_order(session, order_id)
    if load_vendor(session, order.vendor_id).adapter != Adapter.INVOICE.value:
        raise VendorMismatch(
            "only an invoice vendor's orders are marked delivered by hand;"
            " the others are delivered once every item has its annotators"
        )
    mark_delivered(session, order, actor=actor, now=now)
    return order_out(session, order)
