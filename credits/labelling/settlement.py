"""The ledger side of an order: metering deliveries against its hold, and closing it.

A delivery of ``u`` units moves the order from ``D`` to ``D + u`` delivered
units. Of what that adds to ``cost(D)``, the part still within the quote is
captured from the hold (frozen instead while the order is disputed) and the
part beyond it is booked as overage, which flags the order. Ledger keys are
derived from the delivery's row id, so a replayed delivery can never capture
twice, even past this module's own replay check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.labelling.models import Order, OrderStatus, PriceSheet, PriceUnit
from credits.labelling.pricing import Price, cost
from credits.ledger.models import Currency
from credits.ledger.overage import book_overage
from credits.ledger.queries import get_hold, live_allocations
from credits.ledger.service import adjust
from credits.ledger.settle import capture, void_hold

LEDGER_ACTOR = Actor.system("labelling")


@dataclass(frozen=True)
class Metered:
    captured_micro: int
    frozen_micro: int
    overage_micro: int


def order_price(session: Session, order: Order) -> Price:
    """The price the order was quoted at; a later price sheet never changes it."""
    if order.price_sheet_id is None:
        raise InvalidInput(f"order {order.id} has no quote")
    sheet = session.get_one(PriceSheet, order.price_sheet_id)
    return Price(PriceUnit(sheet.unit), sheet.micro_credits_per_unit, sheet.fee_basis_points)


def meter(session: Session, order: Order, *, units_micro: int, key: str, now: datetime) -> Metered:
    """Charges ``units_micro`` more delivered units to the order; the order must be locked."""
    price = order_price(session, order)
    before = order.delivered_units_micro
    after = before + units_micro
    within_before = min(cost(before, price), order.quoted_micro)
    within_after = min(cost(after, price), order.quoted_micro)
    within = within_after - within_before
    beyond = (cost(after, price) - within_after) - (cost(before, price) - within_before)
    order.delivered_units_micro = after
    if order.status == OrderStatus.DISPUTED.value:
        order.frozen_micro += within + beyond
        return Metered(captured_micro=0, frozen_micro=within + beyond, overage_micro=0)
    _capture(session, order, within, key=f"{key}:capture", now=now)
    _overage(session, order, beyond, key=f"{key}:overage", now=now)
    return Metered(captured_micro=within, frozen_micro=0, overage_micro=beyond)


def _capture(session: Session, order: Order, amount: int, *, key: str, now: datetime) -> None:
    if amount <= 0:
        return
    capture(
        session,
        key=key,
        hold_key=_hold_key(order),
        amount=amount,
        actor=LEDGER_ACTOR,
        reference=order_reference(order.id),
        now=now,
    )
    order.captured_micro += amount


def _overage(session: Session, order: Order, amount: int, *, key: str, now: datetime) -> None:
    if amount <= 0:
        return
    book_overage(
        session,
        key=key,
        project_id=order.project_id,
        currency=Currency.LABEL,
        amount=amount,
        actor=LEDGER_ACTOR,
        reference=order_reference(order.id),
        now=now,
    )
    order.overage_micro += amount
    order.flag = (
        f"deliveries ran past the quote: {order.delivered_units_micro} units (x 1e6)"
        f" delivered of {order.quoted_units_micro} quoted"
    )


def settle_frozen(session: Session, order: Order, *, now: datetime) -> None:
    """Charges what was delivered while disputed: from the hold, and overage beyond it."""
    frozen, order.frozen_micro = order.frozen_micro, 0
    within = min(frozen, order.quoted_micro - order.captured_micro)
    _capture(session, order, within, key=f"labelling:{order.id}:resolve:capture", now=now)
    _overage(session, order, frozen - within, key=f"labelling:{order.id}:resolve:overage", now=now)


def close_hold(session: Session, order: Order, *, reason: str, now: datetime) -> None:
    """Releases whatever the order's hold has not captured; nothing when there is none."""
    if order.hold_key is None:
        return
    hold = get_hold(session, hold_key=order.hold_key)
    if all(part.status != "open" for part in hold.parts):
        return
    void_hold(
        session,
        key=f"labelling:{order.id}:void",
        hold_key=order.hold_key,
        actor=LEDGER_ACTOR,
        reason=reason,
        now=now,
    )


def refund(
    session: Session, order: Order, *, amount: int, actor: Actor, note: str, now: datetime
) -> None:
    """Gives back part of what the project paid for the order, as an ops adjustment.

    Overage is not the project's to get back: the platform's overage account paid
    it, so a refund that reached into it would leave the project richer than before
    it ordered. The credits go to the first allocation the hold drew from that has
    not ended, else to the project's live allocation in the currency that ends first."""
    paid = order.captured_micro - order.refunded_micro
    if type(amount) is not int or amount <= 0 or amount > paid:
        raise InvalidInput(
            f"a refund is between 1 and the {paid} micro-credits the project paid for the order"
            " (overage is not refunded: the project never paid it)",
            paid_micro=paid,
        )
    adjust(
        session,
        key=f"labelling:{order.id}:refund",
        account_id=_refund_account(session, order, now),
        amount=amount,
        actor=actor,
        reason=f"refund for labelling order {order.id}: {note}",
        now=now,
    )
    order.refunded_micro += amount


def _refund_account(session: Session, order: Order, now: datetime) -> int:
    drawn = [part.account_id for part in get_hold(session, hold_key=_hold_key(order)).parts]
    live = live_allocations(session, project_id=order.project_id, currency=Currency.LABEL, now=now)
    for account_id in [*drawn, *live]:
        if account_id in live:
            return account_id
    raise InvalidInput(
        f"project {order.project_id} has no labelling allocation that has not ended to refund"
        " into; extend one or award a new one first"
    )


def order_reference(order_id: int) -> str:
    """What the order's captures and overage name as their ledger reference."""
    return f"labelling order {order_id}"


def _hold_key(order: Order) -> str:
    if order.hold_key is None:
        raise InvalidInput(f"order {order.id} holds no credits")
    return order.hold_key
