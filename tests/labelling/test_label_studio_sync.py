"""Orders labelled in Label Studio (against the local stub): placing the items as
tasks, and recording completed annotations as deliveries, once each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from label_studio_stub import TOKEN, LabelStudioStub, running_label_studio_stub
from labelling_world import CREDIT, SENTIMENT, LabellingWorld, build_world
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.labelling.errors import OrderStateConflict, VendorMismatch
from credits.labelling.label_studio import LabelStudioClient
from credits.labelling.label_studio_format import label_config, parse_webhook
from credits.labelling.label_studio_sync import (
    order_for_project,
    place_in_label_studio,
    record_webhook,
    sync_from_label_studio,
)
from credits.labelling.models import Adapter, Annotation, Item, Order, OrderStatus
from credits.labelling.schemas import OrderOut


@pytest.fixture
def stub() -> Iterator[LabelStudioStub]:
    with running_label_studio_stub() as running:
        yield running


@pytest.fixture
def client(stub: LabelStudioStub) -> LabelStudioClient:
    return LabelStudioClient(stub.url, TOKEN, timeout_s=2.0)


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


def _ls_order(session: Session, world: LabellingWorld, **draft: Any) -> OrderOut:
    vendor = world.add_vendor(session, "Label Studio", adapter=Adapter.LABEL_STUDIO)
    return world.placed(session, vendor_id=vendor.id, **draft)


def _items(session: Session, order_id: int) -> list[Item]:
    return list(
        session.scalars(select(Item).where(Item.order_id == order_id).order_by(Item.position))
    )


def _choices(label: str) -> list[dict[str, Any]]:
    return [
        {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [label]}}
    ]


def test_placing_creates_the_project_and_one_task_per_item_once(
    session: Session, world: LabellingWorld, stub: LabelStudioStub, client: LabelStudioClient
) -> None:
    order = _ls_order(session, world, items=3)

    placed = place_in_label_studio(session, client, order_id=order.id, actor=world.pi)
    again = place_in_label_studio(session, client, order_id=order.id, actor=world.pi)

    assert (placed.imported, again.imported) == (3, 0)
    assert again.project_id == placed.project_id
    stored = session.get(Order, order.id)
    assert stored is not None and stored.external_ref == str(placed.project_id)
    project = stub.projects[placed.project_id]
    assert project["label_config"] == label_config(SENTIMENT)
    items = _items(session, order.id)
    tasks = [stub.tasks[int(item.external_ref or 0)] for item in items]
    assert [task["data"] for task in tasks] == [
        {"text": item.text, "credits_item": str(item.id)} for item in items
    ]
    assert len(stub.projects) == 1


def test_sync_records_each_annotation_once_and_skips_what_cannot_be_delivered(
    session: Session, world: LabellingWorld, stub: LabelStudioStub, client: LabelStudioClient
) -> None:
    order = _ls_order(session, world, items=2, redundancy=2)
    place_in_label_studio(session, client, order_id=order.id, actor=world.pi)
    first, second = (int(item.external_ref or 0) for item in _items(session, order.id))
    stub.user_id = 11
    client.create_annotation(first, _choices("positive"), lead_time_s=3.0)
    stub.user_id = 12
    client.create_annotation(first, _choices("negative"), lead_time_s=4.0)
    client.create_annotation(second, _choices("neutral"))
    twice = client.create_annotation(second, _choices("neutral"))  # the same annotator again
    odd = client.create_annotation(second, _choices("sarcastic"))

    result = sync_from_label_studio(session, client, order_id=order.id, actor=world.ops)
    replay = sync_from_label_studio(session, client, order_id=order.id, actor=world.ops)

    assert (result.recorded, result.replayed) == (3, 0)
    assert [annotation_id for annotation_id, _ in result.skipped] == [twice, odd]
    assert "already labelled" in result.skipped[0][1]
    assert "unknown label" in result.skipped[1][1]
    assert (replay.recorded, replay.replayed) == (0, 3)
    rows = list(session.scalars(select(Annotation).where(Annotation.order_id == order.id)))
    assert sorted(row.annotator_ref for row in rows) == [
        "label-studio:11",
        "label-studio:12",
        "label-studio:12",
    ]
    assert all(row.delivery_key.startswith("label-studio:") for row in rows)
    assert sorted(row.seconds or 0 for row in rows) == [0, 3.0, 4.0]
    current = session.get(Order, order.id)
    assert current is not None and current.captured_micro == 3 * CREDIT


def test_a_webhook_records_its_annotation_and_the_sync_then_replays_it(
    session: Session, world: LabellingWorld, stub: LabelStudioStub, client: LabelStudioClient
) -> None:
    order = _ls_order(session, world, items=1, redundancy=1)
    placement = place_in_label_studio(session, client, order_id=order.id, actor=world.pi)
    (item,) = _items(session, order.id)
    task = stub.tasks[int(item.external_ref or 0)]
    annotation_id = client.create_annotation(task["id"], _choices("negative"))
    payload = {
        "action": "ANNOTATION_CREATED",
        "annotation": task["annotations"][0],
        "task": {"id": task["id"], "data": task["data"]},
        "project": {"id": placement.project_id},
    }

    delivered = record_webhook(session, parse_webhook(SENTIMENT, payload), actor=world.ops)
    synced = sync_from_label_studio(session, client, order_id=order.id, actor=world.ops)

    assert delivered is not None and not delivered.replayed
    assert delivered.order_status is OrderStatus.DELIVERED
    assert (synced.recorded, synced.replayed) == (0, 1)
    assert order_for_project(session, placement.project_id).id == order.id
    row = session.scalar(select(Annotation).where(Annotation.order_id == order.id))
    assert row is not None and row.delivery_key == f"label-studio:{annotation_id}"


def test_only_label_studio_orders_in_an_open_state_are_placed(
    session: Session, world: LabellingWorld, client: LabelStudioClient
) -> None:
    inhouse = world.placed(session)
    draft = world.draft(
        session, vendor_id=world.add_vendor(session, "LS", adapter=Adapter.LABEL_STUDIO).id
    )

    with pytest.raises(VendorMismatch):
        place_in_label_studio(session, client, order_id=inhouse.id, actor=world.pi)
    with pytest.raises(OrderStateConflict):
        place_in_label_studio(session, client, order_id=draft.id, actor=world.pi)
