"""Orders against the ledger: quote, hold, capture per delivery, void, disputes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from labelling_world import CREDIT, SENTIMENT, SYSTEM, LabellingWorld, build_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.errors import InvalidInput
from credits.grants import projects
from credits.grants.errors import ProjectStatusConflict
from credits.labelling import deliveries, orders, vendors
from credits.labelling.errors import AlreadyAnnotated, OrderNotFound, OrderStateConflict
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind
from credits.labelling.models import Item, PriceUnit, Resolution
from credits.labelling.queries import get_order
from credits.labelling.schemas import DeliveryOut, OrderOut, PriceSheetIn
from credits.ledger import service as ledger
from credits.ledger.errors import InsufficientCredits
from credits.ledger.models import AccountKind, Currency, HoldPart
from credits.ledger.queries import get_hold, system_account_id
from credits.ledger.verify import verify_ledger


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


def _current(session: Session, world: LabellingWorld, order_id: int) -> OrderOut:
    return get_order(session, world.pi, order_id=order_id)


def _items(session: Session, order_id: int) -> list[Item]:
    return list(
        session.scalars(select(Item).where(Item.order_id == order_id).order_by(Item.position))
    )


def _deliver(
    session: Session,
    world: LabellingWorld,
    order: OrderOut,
    item: Item,
    annotator: int,
    label: str = "positive",
    **kw: object,
) -> DeliveryOut:
    return deliveries.record_delivery(
        session,
        order_id=order.id,
        item_id=item.id,
        annotator_ref=f"user:{annotator}",
        value=AnnotationValue(labels=[label]),
        seconds=kw.pop("seconds", 12.0),  # type: ignore[arg-type]
        delivery_key=str(kw.pop("key", f"{item.id}:{annotator}")),
        actor=world.ops,
    )


def test_quote_is_units_times_price_plus_the_fee(session: Session, world: LabellingWorld) -> None:
    vendor = world.add_vendor(session, "Feeful", price=1_500_000, fee_basis_points=250)
    order = world.draft(session, items=4, redundancy=2, vendor_id=vendor.id)
    quoted = orders.quote_order(session, order_id=order.id, actor=world.pi)
    assert quoted.status == "quoted"
    assert quoted.quoted_units_micro == 8 * CREDIT
    # 8 annotations x 1.5 credits = 12 credits, plus 2.5 % = 12.3 credits.
    assert quoted.quoted_micro == 12_300_000
    assert quoted.price_sheet is not None and quoted.price_sheet.fee_basis_points == 250


def test_placing_holds_the_quote_on_labelling_credits(
    session: Session, world: LabellingWorld
) -> None:
    before = world.available(session)
    order = world.placed(session, items=4, redundancy=2)
    assert order.status == "placed"
    assert world.available(session) == before - 8 * CREDIT
    hold = get_hold(session, hold_key=order.hold_key or "")
    assert hold.currency == "label" and hold.amount == 8 * CREDIT


def test_hold_larger_than_available_is_refused_and_holds_nothing(session: Session) -> None:
    world = build_world(session, label_credits=3 * CREDIT)
    order = world.draft(session, items=4, redundancy=1)
    orders.quote_order(session, order_id=order.id, actor=world.pi)
    parts = session.scalar(select(func.count()).select_from(HoldPart))
    with pytest.raises(InsufficientCredits) as refused:
        orders.place_order(session, order_id=order.id, actor=world.pi)
    assert refused.value.status == 402
    assert refused.value.extra["required"] == 4 * CREDIT
    assert refused.value.extra["available"] == 3 * CREDIT
    assert session.scalar(select(func.count()).select_from(HoldPart)) == parts
    assert world.available(session) == 3 * CREDIT


def test_each_delivery_captures_its_part_and_accepting_voids_the_rest(
    session: Session, world: LabellingWorld
) -> None:
    before = world.available(session)
    order = world.placed(session, items=4, redundancy=2)
    first, second = _items(session, order.id)[:2]
    assert _deliver(session, world, order, first, 1).captured_micro == CREDIT
    assert _deliver(session, world, order, second, 1).captured_micro == CREDIT
    running = _current(session, world, order.id)
    assert running.status == "in_progress" and running.captured_micro == 2 * CREDIT
    accepted = orders.accept_order(session, order_id=order.id, actor=world.pi)
    assert accepted.status == "settled" and accepted.accepted_at is not None
    assert world.available(session) == before - 2 * CREDIT
    hold = get_hold(session, hold_key=order.hold_key or "")
    assert hold.captured == 2 * CREDIT and hold.voided == 6 * CREDIT
    assert verify_ledger(session).ok


def test_a_replayed_delivery_captures_once(session: Session, world: LabellingWorld) -> None:
    order = world.placed(session, items=2, redundancy=1)
    item = _items(session, order.id)[0]
    first = _deliver(session, world, order, item, 1, key="batch-7")
    again = _deliver(session, world, order, item, 1, key="batch-7")
    assert not first.replayed and again.replayed
    assert again.delivery_id == first.delivery_id
    assert get_hold(session, hold_key=order.hold_key or "").captured == CREDIT


def test_out_of_order_deliveries_add_up_to_the_quote(
    session: Session, world: LabellingWorld
) -> None:
    vendor = world.add_vendor(session, "Thirds", price=333_333, fee_basis_points=333)
    order = world.placed(session, items=3, redundancy=2, vendor_id=vendor.id)
    items = _items(session, order.id)
    for item, annotator in reversed([(item, a) for item in items for a in (1, 2)]):
        _deliver(session, world, order, item, annotator)
    done = _current(session, world, order.id)
    assert done.status == "delivered"
    assert done.captured_micro == done.quoted_micro
    assert get_hold(session, hold_key=order.hold_key or "").remaining == 0


def test_a_price_change_after_the_quote_leaves_the_quoted_price(
    session: Session, world: LabellingWorld
) -> None:
    order = world.placed(session, items=2, redundancy=1)
    vendors.add_price_sheet(
        session,
        vendor_id=world.vendor.id,
        sheet=PriceSheetIn(unit=PriceUnit.ITEM, micro_credits_per_unit=5 * CREDIT),
        actor=world.ops,
        now=utcnow() + timedelta(seconds=1),
    )
    item = _items(session, order.id)[0]
    assert _deliver(session, world, order, item, 1).captured_micro == CREDIT
    assert _current(session, world, order.id).price_sheet == order.price_sheet


def test_an_annotator_cannot_label_an_item_twice(session: Session, world: LabellingWorld) -> None:
    order = world.placed(session, items=2, redundancy=2)
    item = _items(session, order.id)[0]
    _deliver(session, world, order, item, 1, key="a")
    with pytest.raises(AlreadyAnnotated):
        _deliver(session, world, order, item, 1, key="b", label="negative")


@pytest.mark.parametrize(
    ("action", "state"),
    [
        ("place", "draft"),
        ("accept", "draft"),
        ("dispute", "quoted"),
        ("quote", "placed"),
        ("accept", "placed"),
        ("cancel", "settled"),
        ("dispute", "settled"),
        ("resolve", "placed"),
        ("deliver", "cancelled"),
    ],
)
def test_a_refused_transition_is_a_conflict_naming_the_state(
    session: Session, world: LabellingWorld, action: str, state: str
) -> None:
    order = _order_in(session, world, state)
    attempts = {
        "place": lambda: orders.place_order(session, order_id=order.id, actor=world.pi),
        "accept": lambda: orders.accept_order(session, order_id=order.id, actor=world.pi),
        "dispute": lambda: orders.dispute_order(
            session, order_id=order.id, actor=world.pi, reason="bad"
        ),
        "quote": lambda: orders.quote_order(session, order_id=order.id, actor=world.pi),
        "cancel": lambda: orders.cancel_order(session, order_id=order.id, actor=world.pi),
        "resolve": lambda: orders.resolve_dispute(
            session, order_id=order.id, resolution=Resolution.ACCEPTED, actor=world.ops, note="ok"
        ),
        "deliver": lambda: _deliver(session, world, order, _items(session, order.id)[0], 1),
    }
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(OrderStateConflict) as refused:
        attempts[action]()
    assert refused.value.status == 409
    assert refused.value.extra["state"] == state
    assert state in refused.value.detail
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events


def _order_in(session: Session, world: LabellingWorld, state: str) -> OrderOut:
    order = world.draft(session, items=2, redundancy=1)
    if state == "draft":
        return order
    orders.quote_order(session, order_id=order.id, actor=world.pi)
    if state == "quoted":
        return order
    orders.place_order(session, order_id=order.id, actor=world.pi)
    if state == "placed":
        return order
    if state == "cancelled":
        return orders.cancel_order(session, order_id=order.id, actor=world.pi)
    _deliver(session, world, order, _items(session, order.id)[0], 1)
    return orders.accept_order(session, order_id=order.id, actor=world.pi)


def test_a_dispute_freezes_capture_until_ops_accept(
    session: Session, world: LabellingWorld
) -> None:
    order = world.placed(session, items=2, redundancy=1)
    first, second = _items(session, order.id)
    _deliver(session, world, order, first, 1)
    orders.dispute_order(session, order_id=order.id, actor=world.pi, reason="labels look random")
    frozen = _deliver(session, world, order, second, 1)
    assert frozen.captured_micro == 0 and frozen.frozen_micro == CREDIT
    assert get_hold(session, hold_key=order.hold_key or "").captured == CREDIT
    resolved = orders.resolve_dispute(
        session,
        order_id=order.id,
        resolution=Resolution.ACCEPTED,
        actor=world.ops,
        note="checked: fine",
    )
    assert resolved.status == "settled" and resolved.resolution == "accepted"
    assert resolved.captured_micro == 2 * CREDIT and resolved.frozen_micro == 0
    assert verify_ledger(session).ok


def test_a_dispute_resolved_with_a_refund_gives_credits_back(
    session: Session, world: LabellingWorld
) -> None:
    before = world.available(session)
    order = world.placed(session, items=2, redundancy=1)
    for item in _items(session, order.id):
        _deliver(session, world, order, item, 1)
    orders.dispute_order(session, order_id=order.id, actor=world.pi, reason="half are wrong")
    resolved = orders.resolve_dispute(
        session,
        order_id=order.id,
        resolution=Resolution.REFUNDED,
        actor=world.ops,
        note="one item mislabelled",
        refund_micro=CREDIT,
    )
    assert resolved.refunded_micro == CREDIT and resolved.status == "settled"
    assert world.available(session) == before - CREDIT
    assert (
        session.scalar(select(AuditEvent).where(AuditEvent.event_type == "ledger.adjust"))
        is not None
    )


def test_a_dispute_resolved_by_cancelling_never_charges_the_frozen_part(
    session: Session, world: LabellingWorld
) -> None:
    before = world.available(session)
    order = world.placed(session, items=2, redundancy=1)
    first, second = _items(session, order.id)
    _deliver(session, world, order, first, 1)
    orders.dispute_order(session, order_id=order.id, actor=world.pi, reason="stop")
    _deliver(session, world, order, second, 1)
    resolved = orders.resolve_dispute(
        session,
        order_id=order.id,
        resolution=Resolution.CANCELLED,
        actor=world.ops,
        note="vendor failed",
    )
    assert resolved.status == "cancelled" and resolved.frozen_micro == 0
    assert world.available(session) == before - CREDIT


def test_labels_past_the_estimate_book_overage_and_flag_the_order(
    session: Session, world: LabellingWorld
) -> None:
    vendor = world.add_vendor(session, "Per label", unit=PriceUnit.LABEL)
    topics = LabelSchema(kind=SchemaKind.MULTI_LABEL, labels=["a", "b", "c"])
    order = world.placed(
        session,
        items=1,
        redundancy=1,
        vendor_id=vendor.id,
        schema=topics,
        expected_labels_per_item="1",
    )
    item = _items(session, order.id)[0]
    delivered = deliveries.record_delivery(
        session,
        order_id=order.id,
        item_id=item.id,
        annotator_ref="user:1",
        value=AnnotationValue(labels=["a", "b", "c"]),
        seconds=None,
        delivery_key="k",
        actor=world.ops,
    )
    assert delivered.captured_micro == CREDIT and delivered.overage_micro == 2 * CREDIT
    flagged = _current(session, world, order.id)
    assert flagged.flag is not None and flagged.overage_micro == 2 * CREDIT
    assert verify_ledger(session).ok


def test_cancelling_a_running_order_releases_the_rest(
    session: Session, world: LabellingWorld
) -> None:
    before = world.available(session)
    order = world.placed(session, items=3, redundancy=1)
    _deliver(session, world, order, _items(session, order.id)[0], 1)
    cancelled = orders.cancel_order(session, order_id=order.id, actor=world.pi, reason="enough")
    assert cancelled.status == "cancelled"
    assert world.available(session) == before - CREDIT


def test_an_outsider_cannot_see_or_act_on_an_order(session: Session, world: LabellingWorld) -> None:
    order = world.draft(session)
    with pytest.raises(OrderNotFound):
        orders.quote_order(session, order_id=order.id, actor=world.outsider)


def test_the_schema_refuses_an_unknown_label(session: Session, world: LabellingWorld) -> None:
    order = world.placed(session, items=1, redundancy=1)
    with pytest.raises(InvalidInput, match="unknown label"):
        _deliver(session, world, order, _items(session, order.id)[0], 1, label="sarcastic")
    assert SENTIMENT.labels[0] == "positive"


@pytest.mark.parametrize("project_status", ["suspended", "archived"])
def test_a_project_that_is_not_active_places_no_orders(
    session: Session, world: LabellingWorld, project_status: str
) -> None:
    order = world.draft(session, items=2, redundancy=1)
    orders.quote_order(session, order_id=order.id, actor=world.pi)
    if project_status == "suspended":
        projects.suspend_project(session, project_id=world.project_id, actor=world.ops, reason="x")
    else:
        projects.archive_project(session, project_id=world.project_id, actor=world.pi)
    # Label credits the project could still reach: an account the ledger opened later.
    fresh = ledger.open_account(
        session,
        code="late-labels",
        currency=Currency.LABEL,
        project_id=world.project_id,
        actor=SYSTEM,
    )
    ledger.grant(
        session,
        key="late-labels-fund",
        from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.LABEL),
        to_account_id=fresh.id,
        amount=10 * CREDIT,
        actor=SYSTEM,
    )
    parts = session.scalar(select(func.count()).select_from(HoldPart))

    with pytest.raises(ProjectStatusConflict, match=f"is {project_status}") as refused:
        orders.place_order(session, order_id=order.id, actor=world.pi)

    assert refused.value.status == 409
    assert session.scalar(select(func.count()).select_from(HoldPart)) == parts
    assert _current(session, world, order.id).status == "quoted"
