"""Invariants of metering an order: however deliveries are split, ordered or replayed,
the captures add up to the cost of what was delivered, never past the quote, and
the ledger stays consistent."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labelling_world import LabellingWorld, build_world
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.labelling import deliveries, orders
from credits.labelling.label_schema import AnnotationValue
from credits.labelling.models import MICRO, Item, PriceUnit
from credits.labelling.pricing import Price, cost
from credits.labelling.queries import get_order
from credits.ledger.queries import get_hold
from credits.ledger.verify import verify_ledger

_worlds: dict[int, LabellingWorld] = {}
_vendor_numbers = itertools.count()
prices = st.builds(
    Price,
    unit=st.sampled_from(list(PriceUnit)),
    micro_credits_per_unit=st.integers(1, 10**9),
    fee_basis_points=st.integers(0, 10_000),
)


@given(price=prices, splits=st.lists(st.integers(0, 10**9), max_size=20))
def test_captures_of_any_split_add_up_to_the_cost_of_the_whole(
    price: Price, splits: list[int]
) -> None:
    delivered = 0
    captured = 0
    for units in splits:
        captured += cost(delivered + units, price) - cost(delivered, price)
        delivered += units
    assert captured == cost(delivered, price)


@given(price=prices, units=st.integers(0, 10**12))
def test_the_cost_is_the_exact_price_rounded_up_by_less_than_a_micro_credit(
    price: Price, units: int
) -> None:
    exact = units * price.micro_credits_per_unit * (10_000 + price.fee_basis_points)
    charged = cost(units, price)
    assert charged * MICRO * 10_000 >= exact
    assert (charged - 1) * MICRO * 10_000 < exact or charged == 0


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    price=st.integers(1, 5 * MICRO),
    fee=st.integers(0, 2_000),
    order_of_delivery=st.permutations(range(6)),
    replays=st.lists(st.integers(0, 5), max_size=4),
)
def test_deliveries_in_any_order_with_replays_capture_exactly_the_quote(
    session: Session, price: int, fee: int, order_of_delivery: list[int], replays: list[int]
) -> None:
    # One world for every example: the session is the test's, rolled back at its end.
    if id(session) not in _worlds:
        _worlds[id(session)] = build_world(session, label_credits=10**6 * MICRO)
    world = _worlds[id(session)]
    vendor = world.add_vendor(
        session, f"Vendor {next(_vendor_numbers)}", price=price, fee_basis_points=fee
    )
    order = world.placed(session, items=3, redundancy=2, vendor_id=vendor.id)
    items = list(session.scalars(select(Item).where(Item.order_id == order.id).order_by(Item.id)))
    slots = [(item, annotator) for item in items for annotator in (1, 2)]
    for index in [*order_of_delivery, *replays]:
        item, annotator = slots[index]
        deliveries.record_delivery(
            session,
            order_id=order.id,
            item_id=item.id,
            annotator_ref=f"user:{annotator}",
            value=AnnotationValue(labels=["positive"]),
            seconds=None,
            delivery_key=f"slot-{index}",
            actor=world.ops,
        )
    done = get_order(session, world.pi, order_id=order.id)
    assert done.status == "delivered"
    assert done.captured_micro == done.quoted_micro
    assert done.overage_micro == 0
    assert get_hold(session, hold_key=order.hold_key or "").captured == done.quoted_micro
    orders.accept_order(session, order_id=order.id, actor=world.pi)
    assert verify_ledger(session).ok
