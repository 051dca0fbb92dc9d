"""Orders against the ledger: quote, hold, capture per delivery, void, disputes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from labelling_world import CREDIT, SENTIMENT, SYSTEM, LabellingWorld, build_world
from racing import committing_factory
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from credits.audit.models import AuditEvent
from credits.datasets import service as dataset_service
from credits.datasets import uploads
from credits.db import session_scope, utcnow
from credits.errors import InvalidInput
from credits.grants import project_archive, projects
from credits.grants.errors import ProjectStatusConflict
from credits.labelling import deliveries, orders, vendors
from credits.labelling.errors import AlreadyAnnotated, OrderNotFound, OrderStateConflict
from credits.labelling.items import items_from_dataset_version, items_from_images
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind
from credits.labelling.models import Item, Order, PriceUnit, Resolution, SourceKind
from credits.labelling.queries import get_order
from credits.labelling.schemas import (
    DeliveryOut,
    ItemIn,
    OrderIn,
    OrderOut,
    OrderSource,
    PriceSheetIn,
)
from credits.ledger import service as ledger
from credits.ledger.errors import InsufficientCredits
from credits.ledger.models import AccountKind, Currency, HoldPart, HoldStatus
from credits.ledger.queries import get_hold, system_account_id
from credits.ledger.verify import verify_ledger
from credits.storage import BlobStore, StorageUnavailable, blob_store_for_url


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


def _disputed_after_delivery(session: Session, world: LabellingWorld) -> OrderOut:
    order = world.placed(session, items=2, redundancy=1)
    for item in _items(session, order.id):
        _deliver(session, world, order, item, 1)
    orders.dispute_order(session, order_id=order.id, actor=world.pi, reason="half are wrong")
    return order


def _refund(
    session: Session, world: LabellingWorld, order: OrderOut, amount: int, **kw: object
) -> OrderOut:
    return orders.resolve_dispute(
        session,
        order_id=order.id,
        resolution=Resolution.REFUNDED,
        actor=world.ops,
        note="redone",
        refund_micro=amount,
        **kw,  # type: ignore[arg-type]
    )


def test_a_refund_never_gives_back_overage_the_project_did_not_pay(
    session: Session, world: LabellingWorld
) -> None:
    before = world.available(session)
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
    (item,) = _items(session, order.id)
    delivered = deliveries.record_delivery(
        session,
        order_id=order.id,
        item_id=item.id,
        annotator_ref="user:1",
        value=AnnotationValue(labels=["a", "b", "c"]),
        seconds=None,
        delivery_key="three-labels",
        actor=world.ops,
    )
    assert delivered.captured_micro == CREDIT and delivered.overage_micro == 2 * CREDIT
    orders.dispute_order(session, order_id=order.id, actor=world.pi, reason="all wrong")
    with pytest.raises(InvalidInput, match="between 1 and the 1000000 micro-credits") as refused:
        _refund(session, world, order, 3 * CREDIT)
    assert refused.value.extra["paid_micro"] == CREDIT
    assert _current(session, world, order.id).status == "disputed"
    resolved = _refund(session, world, order, CREDIT)
    assert resolved.refunded_micro == CREDIT
    assert world.available(session) == before
    assert verify_ledger(session).ok


def test_a_refund_after_the_drawn_allocation_ended_goes_to_one_that_has_not(
    session: Session, world: LabellingWorld
) -> None:
    order = _disputed_after_delivery(session, world)
    later = ledger.open_account(
        session,
        code=f"labelling-later-{world.allocation_id}",
        currency=Currency.LABEL,
        project_id=world.project_id,
        expires_at=utcnow() + timedelta(days=90),
        actor=SYSTEM,
    )
    after_the_first_ends = utcnow() + timedelta(days=31)
    resolved = _refund(session, world, order, CREDIT, now=after_the_first_ends)
    assert resolved.refunded_micro == CREDIT
    assert ledger.get_account(session, account_id=later.id).available == CREDIT


def test_a_refund_with_no_allocation_left_to_credit_is_refused_and_changes_nothing(
    session: Session, world: LabellingWorld
) -> None:
    order = _disputed_after_delivery(session, world)
    after_the_allocation_ends = utcnow() + timedelta(days=31)
    with pytest.raises(InvalidInput, match="no labelling allocation that has not ended"):
        _refund(session, world, order, CREDIT, now=after_the_allocation_ends)
    current = _current(session, world, order.id)
    assert current.status == "disputed" and current.refunded_micro == 0


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


def test_archiving_cancels_the_orders_nothing_was_delivered_for_and_keeps_the_others(
    session: Session, world: LabellingWorld
) -> None:
    quoted = world.draft(session, items=2, redundancy=1)
    orders.quote_order(session, order_id=quoted.id, actor=world.pi)
    placed = world.placed(session, items=2, redundancy=1)
    started = world.placed(session, items=2, redundancy=1)
    _deliver(session, world, started, _items(session, started.id)[0], 1)
    assert _current(session, world, started.id).status == "in_progress"

    project_archive.archive_project(session, project_id=world.project_id, actor=world.pi)

    for cancelled in (quoted, placed):
        assert _current(session, world, cancelled.id).status == "cancelled"
    released = get_hold(session, hold_key=f"labelling:{placed.id}:hold")
    assert {part.status for part in released.parts} == {HoldStatus.VOIDED}
    going_on = _current(session, world, started.id)
    assert going_on.status == "in_progress" and going_on.hold_key is not None
    kept = get_hold(session, hold_key=going_on.hold_key)
    assert {part.status for part in kept.parts} == {HoldStatus.OPEN}


def test_a_suspended_project_places_no_orders(session: Session, world: LabellingWorld) -> None:
    project_status = "suspended"
    order = world.draft(session, items=2, redundancy=1)
    orders.quote_order(session, order_id=order.id, actor=world.pi)
    projects.suspend_project(session, project_id=world.project_id, actor=world.ops, reason="x")
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


# An image order and removals of the same bytes elsewhere.

PETS = LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"])
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(20)


def _image_order(
    session: Session, world: LabellingWorld, items: Sequence[ItemIn], store: BlobStore
) -> OrderOut:
    order = OrderIn(
        project_id=world.project_id, vendor_id=world.vendor.id, title="Pets", label_schema=PETS
    )
    source = OrderSource(kind=SourceKind.UPLOAD, name="pets")
    return orders.create_order(
        session, order=order, items=items, source=source, actor=world.pi, store=store
    )


def _count(session: Session, model: type[Order] | type[Item]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_an_image_order_whose_bytes_a_removal_deleted_meanwhile_is_refused_and_adds_nothing(
    session: Session, world: LabellingWorld
) -> None:
    store = blob_store_for_url(f"memory://orders-removed-{id(session)}")
    items = items_from_images(store, [("cat.png", PNG), ("dog.png", PNG + b"!")])
    # A draft's file of the same bytes is removed after the upload and before the order.
    store.delete(items[1].blob_sha256 or "")
    before = (_count(session, Order), _count(session, Item))

    with pytest.raises(StorageUnavailable, match=r"image 'dog\.png' were removed") as refused:
        _image_order(session, world, items, store)

    assert "send the images again" in refused.value.detail
    assert (_count(session, Order), _count(session, Item)) == before


@pytest.mark.postgres
def test_an_uncommitted_image_order_keeps_a_removal_from_deleting_its_bytes_on_postgresql(
    pg_session: Session, postgres_url: str
) -> None:
    world = build_world(pg_session)
    store = blob_store_for_url(f"memory://orders-held-{id(pg_session)}")
    items = items_from_images(store, [("cat.png", PNG)])
    _image_order(pg_session, world, items, store)  # its transaction is still open
    sha256 = items[0].blob_sha256 or ""
    engine = create_engine(postgres_url, connect_args={"options": "-c lock_timeout=200"})
    try:
        with pytest.raises(OperationalError, match="lock timeout"):
            uploads.forget_blob(sessionmaker(engine), store, sha256)
    finally:
        engine.dispose()

    assert store.exists(sha256)


@pytest.fixture
def committing() -> Iterator[sessionmaker[Session]]:
    """A throwaway migrated PostgreSQL database: this commits for real."""
    yield from committing_factory(2)


@pytest.mark.postgres
def test_an_uncommitted_order_of_a_drafts_images_holds_off_their_removal_on_postgresql(
    committing: sessionmaker[Session],
) -> None:
    store = blob_store_for_url(f"memory://orders-draft-held-{id(committing)}")
    with session_scope(committing) as session:
        world = build_world(session)
        draft = dataset_service.create_dataset(
            session, project_id=world.project_id, title="Pets", actor=world.pi
        )
        blob = store.put_stream([PNG], max_bytes=len(PNG))
        dataset_service.add_file(
            session, version_id=draft.id, name="cat.png", blob=blob, actor=world.pi
        )
    bind = committing.kw["bind"]
    impatient = create_engine(bind.url, connect_args={"options": "-c lock_timeout=200"})
    with committing() as order_session:
        items, _ = items_from_dataset_version(
            order_session, world.pi, version_id=draft.id, file_name=None, schema=PETS, store=store
        )
        _image_order(order_session, world, items, store)  # its transaction is still open
        try:
            with pytest.raises(OperationalError, match="lock timeout"):
                uploads.detach_file(
                    sessionmaker(impatient),
                    store,
                    actor=world.pi,
                    version_id=draft.id,
                    name="cat.png",
                )
        finally:
            impatient.dispose()
        order_session.commit()

    uploads.detach_file(committing, store, actor=world.pi, version_id=draft.id, name="cat.png")
    assert store.exists(blob.sha256)
