"""The invoice adapter end to end: a vendor's meter posts delivered units to
POST /api/v1/usage/records with a meter token, and settlement charges the order."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from labelling_world import CREDIT, SYSTEM, LabellingWorld, build_world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.db import utcnow
from credits.identity.tokens import create_token
from credits.labelling import deliveries, orders
from credits.labelling.errors import DeliveryReplayConflict
from credits.labelling.models import Adapter, PriceUnit, Resolution, UnitDelivery
from credits.labelling.queries import get_order
from credits.labelling.schemas import OrderOut
from credits.ledger.queries import get_hold
from credits.ledger.verify import verify_ledger
from credits.metering.models import RecordStatus, UsageRecord
from credits.metering.service import settle_all_pending
from credits.settings import load_settings

URL = "/api/v1/usage/records"
SOURCE = "vendor.example"
_vendors = itertools.count()


@pytest.fixture
def session(any_session: Session) -> Session:
    """Settlement locks records (SKIP LOCKED) and then the order: run on PostgreSQL too."""
    return any_session


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


@pytest.fixture
def factory(joined_session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    return joined_session_factory


def _client(session: Session, world: LabellingWorld, factory: sessionmaker[Session]) -> FlaskClient:
    assert world.pi.email is not None
    secret = create_token(session, email=world.pi.email, actor=SYSTEM, scopes=("meter",)).secret
    session.flush()
    client = create_app(load_settings(), session_factory=factory).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


@pytest.fixture
def client(session: Session, world: LabellingWorld, factory: sessionmaker[Session]) -> FlaskClient:
    return _client(session, world, factory)


def _invoice_order(
    session: Session,
    world: LabellingWorld,
    *,
    items: int = 4,
    unit: PriceUnit = PriceUnit.ITEM,
    price: int = CREDIT,
) -> OrderOut:
    """A placed order of ``items`` items, one annotator each, at a per-``unit`` vendor."""
    vendor = world.add_vendor(
        session, f"Invoicing {next(_vendors)}", adapter=Adapter.INVOICE, unit=unit, price=price
    )
    order = world.placed(session, items=items, redundancy=1, vendor_id=vendor.id)
    session.flush()
    return order


def _record(
    world: LabellingWorld, order: OrderOut, record_id: str, quantity: float, **overrides: Any
) -> dict[str, Any]:
    end = utcnow() - timedelta(minutes=1)
    record: dict[str, Any] = {
        "source": SOURCE,
        "record_id": record_id,
        "project_id": world.project_id,
        "labelling_order_id": order.id,
        "currency": "label",
        "quantity": quantity,
        "unit": "item",
        "start": (end - timedelta(hours=2)).isoformat(),
        "end": end.isoformat(),
        "evidence": {"invoice": "INV-2026-118"},
    }
    return record | overrides


def _post(client: FlaskClient, *records: dict[str, Any]) -> dict[str, Any]:
    response = client.post(URL, json={"records": list(records)})
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    assert body is not None
    return body


def _current(session: Session, world: LabellingWorld, order_id: int) -> OrderOut:
    session.expire_all()
    return get_order(session, world.pi, order_id=order_id)


def _usage(session: Session, record_id: str) -> UsageRecord:
    session.expire_all()
    row = session.scalar(
        select(UsageRecord).where(UsageRecord.source == SOURCE, UsageRecord.record_id == record_id)
    )
    assert row is not None
    return row


def test_units_within_the_quote_are_captured_from_the_orders_hold(
    session: Session, world: LabellingWorld, client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    order = _invoice_order(session, world, items=4, price=2 * CREDIT)
    body = _post(client, _record(world, order, "inv-1", 3))
    [result] = body["results"]
    assert result["outcome"] == "accepted" and result["amount_micro"] == 6 * CREDIT
    assert _usage(session, "inv-1").status == "pending"
    assert _current(session, world, order.id).captured_micro == 0

    report = settle_all_pending(factory, batch_size=100)

    assert report.records == 1 and report.captured_micro == 6 * CREDIT
    settled = _usage(session, "inv-1")
    assert settled.status == "settled" and settled.labelling_order_id == order.id
    assert (settled.captured_micro, settled.overage_micro) == (6 * CREDIT, 0)
    current = _current(session, world, order.id)
    assert current.status == "in_progress" and current.flag is None
    assert current.delivered_units_micro == 3 * CREDIT and current.captured_micro == 6 * CREDIT
    assert get_hold(session, hold_key=order.hold_key or "").captured == 6 * CREDIT
    delivery = session.scalar(select(UnitDelivery).where(UnitDelivery.order_id == order.id))
    assert delivery is not None and delivery.usage_record_id == settled.id
    assert delivery.delivery_key == f"usage:{settled.id}"
    assert verify_ledger(session).ok


def test_units_past_the_quote_book_overage_and_flag_the_order(
    session: Session, world: LabellingWorld, client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    order = _invoice_order(session, world, items=2)
    _post(client, _record(world, order, "inv-1", 1), _record(world, order, "inv-2", 2.5))

    report = settle_all_pending(factory, batch_size=100)

    assert report.captured_micro == 2 * CREDIT and report.overage_micro == 1_500_000
    second = _usage(session, "inv-2")
    assert (second.captured_micro, second.overage_micro) == (CREDIT, 1_500_000)
    current = _current(session, world, order.id)
    assert current.captured_micro == 2 * CREDIT and current.overage_micro == 1_500_000
    assert current.flag is not None and "past the quote" in current.flag
    assert verify_ledger(session).ok


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"unit": "label"}, "is priced per item, not per label"),
        ({"unit": "credit"}, "is priced per item, not per credit"),
        ({"currency": "gpu"}, "are charged in label credits"),
        ({"labelling_order_id": 987_654}, "no labelling order has the id 987654"),
        ({"quantity": 0}, "delivered units must be more than 0"),
        ({"labelling_order_id": None}, "name it in labelling_order_id"),
    ],
)
def test_a_record_the_order_cannot_take_is_rejected_with_the_reason(
    session: Session,
    world: LabellingWorld,
    client: FlaskClient,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    order = _invoice_order(session, world)
    bad = _record(world, order, "bad", 1) | overrides
    body = _post(client, _record(world, order, "fine", 1), bad)
    assert [r["outcome"] for r in body["results"]] == ["accepted", "rejected"]
    assert reason in body["results"][1]["reason"]
    assert body["accepted"] == 1 and body["rejected"] == 1


def test_a_record_for_another_projects_order_is_rejected(
    session: Session, world: LabellingWorld, client: FlaskClient
) -> None:
    order = _invoice_order(session, world)
    other = build_world(session)
    theirs = _invoice_order(session, other)
    body = _post(client, _record(world, theirs, "r", 1))
    assert body["results"][0]["outcome"] == "rejected"
    assert (
        f"labelling order {theirs.id} is not an order of project {world.project_id}"
        in (body["results"][0]["reason"])
    )
    assert _post(client, _record(world, order, "r2", 1))["accepted"] == 1


def test_a_record_for_an_order_of_another_adapter_is_rejected(
    session: Session, world: LabellingWorld, client: FlaskClient
) -> None:
    inhouse = world.placed(session, items=2, redundancy=1)
    session.flush()
    body = _post(client, _record(world, inhouse, "r", 1))
    assert (
        "is not an invoice-adapter order (its vendor's adapter is inhouse)"
        in (body["results"][0]["reason"])
    )


@pytest.mark.parametrize("state", ["draft", "quoted", "cancelled", "settled"])
def test_a_record_for_an_order_that_takes_no_deliveries_is_rejected(
    session: Session, world: LabellingWorld, client: FlaskClient, state: str
) -> None:
    vendor = world.add_vendor(session, f"Invoice {state}", adapter=Adapter.INVOICE)
    order = world.draft(session, items=2, redundancy=1, vendor_id=vendor.id)
    if state != "draft":
        orders.quote_order(session, order_id=order.id, actor=world.pi)
    if state in ("cancelled", "settled"):
        orders.place_order(session, order_id=order.id, actor=world.pi)
    if state == "cancelled":
        orders.cancel_order(session, order_id=order.id, actor=world.pi)
    if state == "settled":
        deliveries.record_units(
            session, order_id=order.id, units_micro=CREDIT, delivery_key="k", actor=world.ops
        )
        orders.accept_order(session, order_id=order.id, actor=world.pi)
    session.flush()
    body = _post(client, _record(world, order, "r", 1))
    assert body["results"][0]["outcome"] == "rejected"
    assert f"is {state} and takes no deliveries" in body["results"][0]["reason"]


def test_a_replayed_record_is_a_duplicate_and_counts_once(
    session: Session, world: LabellingWorld, client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    order = _invoice_order(session, world)
    record = _record(world, order, "inv-1", 2)
    _post(client, record)
    settle_all_pending(factory, batch_size=100)
    again = _post(client, record, record)
    assert [r["outcome"] for r in again["results"]] == ["duplicate", "duplicate"]
    changed = _post(client, _record(world, order, "inv-1", 3))
    assert "different payload" in changed["results"][0]["reason"]
    settle_all_pending(factory, batch_size=100)
    current = _current(session, world, order.id)
    assert current.delivered_units_micro == 2 * CREDIT and current.captured_micro == 2 * CREDIT


def test_a_disputed_order_freezes_the_records_units_until_ops_resolve(
    session: Session, world: LabellingWorld, client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    order = _invoice_order(session, world, items=4)
    _post(client, _record(world, order, "inv-1", 1))
    settle_all_pending(factory, batch_size=100)
    orders.dispute_order(session, order_id=order.id, actor=world.pi, reason="half are blank")
    session.flush()
    _post(client, _record(world, order, "inv-2", 2))

    settle_all_pending(factory, batch_size=100)

    frozen = _usage(session, "inv-2")
    assert frozen.status == "settled" and (frozen.captured_micro, frozen.overage_micro) == (0, 0)
    delivery = session.scalar(select(UnitDelivery).where(UnitDelivery.usage_record_id == frozen.id))
    assert delivery is not None and delivery.frozen_micro == 2 * CREDIT
    disputed = _current(session, world, order.id)
    assert disputed.captured_micro == CREDIT and disputed.frozen_micro == 2 * CREDIT
    resolved = orders.resolve_dispute(
        session, order_id=order.id, resolution=Resolution.ACCEPTED, actor=world.ops, note="ok"
    )
    assert resolved.captured_micro == 3 * CREDIT and resolved.frozen_micro == 0
    assert verify_ledger(session).ok


def test_a_record_whose_order_closed_before_settlement_is_set_aside(
    session: Session, world: LabellingWorld, client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    order = _invoice_order(session, world)
    _post(client, _record(world, order, "late", 1))
    orders.cancel_order(session, order_id=order.id, actor=world.pi)
    session.flush()
    report = settle_all_pending(factory, batch_size=100)
    assert report.failed == 1
    failed = _usage(session, "late")
    assert failed.status == "failed" and "takes no deliveries" in (failed.error or "")
    assert _current(session, world, order.id).captured_micro == 0


def _usage_of(session: Session, source: str, record_id: str) -> UsageRecord:
    session.expire_all()
    row = session.scalar(
        select(UsageRecord).where(UsageRecord.source == source, UsageRecord.record_id == record_id)
    )
    assert row is not None
    return row


@pytest.mark.parametrize("first_units", [1, 3], ids=["first-smaller", "first-larger"])
def test_two_records_whose_source_and_id_join_alike_are_both_billed(
    session: Session,
    world: LabellingWorld,
    client: FlaskClient,
    factory: sessionmaker[Session],
    first_units: int,
) -> None:
    # "vendor" + "x:1" and "vendor:x" + "1" both join to "vendor:x:1".
    order = _invoice_order(session, world, items=8)
    first = _record(world, order, "x:1", first_units, source="vendor")
    second = _record(world, order, "1", 2, source="vendor:x")
    assert _post(client, first, second)["accepted"] == 2

    report = settle_all_pending(factory, batch_size=100)

    assert report.failed == 0 and report.captured_micro == (first_units + 2) * CREDIT
    for source, record_id, units in (("vendor", "x:1", first_units), ("vendor:x", "1", 2)):
        usage = _usage_of(session, source, record_id)
        assert usage.status == "settled"
        assert (usage.captured_micro, usage.overage_micro) == (units * CREDIT, 0)
    current = _current(session, world, order.id)
    assert current.delivered_units_micro == (first_units + 2) * CREDIT
    assert current.captured_micro == (first_units + 2) * CREDIT
    keys = session.scalars(
        select(UnitDelivery.delivery_key).where(UnitDelivery.order_id == order.id)
    )
    assert len(set(keys)) == 2
    assert verify_ledger(session).ok


def test_a_delivery_key_recorded_again_with_other_units_is_refused_not_replayed(
    session: Session, world: LabellingWorld
) -> None:
    order = _invoice_order(session, world)
    first = deliveries.record_units(
        session, order_id=order.id, units_micro=CREDIT, delivery_key="k", actor=world.ops
    )
    again = deliveries.record_units(
        session, order_id=order.id, units_micro=CREDIT, delivery_key="k", actor=world.ops
    )
    assert again.replayed and again.delivery_id == first.delivery_id

    with pytest.raises(DeliveryReplayConflict, match="recorded with 1000000 micro-units, not"):
        deliveries.record_units(
            session, order_id=order.id, units_micro=2 * CREDIT, delivery_key="k", actor=world.ops
        )
    with pytest.raises(DeliveryReplayConflict, match="recorded for usage record None, not 7"):
        deliveries.record_units(
            session,
            order_id=order.id,
            units_micro=CREDIT,
            delivery_key="k",
            usage_record_id=7,
            actor=world.ops,
        )
    assert _current(session, world, order.id).captured_micro == CREDIT


def test_a_record_the_database_refuses_to_mark_is_set_aside_and_the_rest_still_settle(
    session: Session, world: LabellingWorld, client: FlaskClient, factory: sessionmaker[Session]
) -> None:
    order = _invoice_order(session, world)
    _post(client, _record(world, order, "fine", 1))
    # Its stored amount is less than what its units capture: marking it settled fails
    # the database's check (settled_within), not a refusal of the domain.
    now = utcnow()
    poisoned = UsageRecord(
        source=SOURCE,
        record_id="poisoned",
        labelling_order_id=order.id,
        project_id=world.project_id,
        currency="label",
        unit="item",
        quantity_micro=2 * CREDIT,
        amount_micro=1,
        started_at=now - timedelta(hours=1),
        ended_at=now - timedelta(minutes=1),
        request_hash="x",
        status=RecordStatus.PENDING.value,
        captured_micro=0,
        overage_micro=0,
    )
    session.add(poisoned)
    session.flush()

    report = settle_all_pending(factory, batch_size=100)

    assert (report.records, report.failed) == (1, 1)
    assert _usage(session, "fine").status == "settled"
    failed = _usage(session, "poisoned")
    assert failed.status == "failed" and "settled_within" in (failed.error or "")
    assert _current(session, world, order.id).captured_micro == CREDIT
    assert settle_all_pending(factory, batch_size=100).records == 0
    assert verify_ledger(session).ok
