"""Orders labelled in Label Studio: placing their items there, and recording what
annotators completed as deliveries.

- :func:`place_in_label_studio` creates the order's Label Studio project (its id
  kept in ``Order.external_ref``) and imports one task per item (each task id in
  ``Item.external_ref``; the task's ``credits_item`` is our item id). Run again,
  it reuses the project and imports only the items that have no task yet, so a
  placement cut short is finished, never doubled. The HTTP calls happen inside
  the caller's transaction: if that transaction then rolls back, the Label Studio
  project is left behind unused (the next placement makes another).
- :func:`sync_from_label_studio` reads every completed annotation of the
  project and records each with :func:`record_delivery`, keyed
  ``label-studio:<annotation id>``: a replay, or the webhook having recorded it
  first, changes nothing, so the sync can run as often as wanted. Annotations
  that cannot be delivered (outside the schema, a second answer by the same
  annotator, an item of another order) are skipped and listed, each in a
  savepoint of its own, so one bad annotation never blocks the others.
- :func:`record_webhook` records the annotation a verified webhook carries,
  found by the project id in the payload (:func:`order_for_project`).

An annotation edited in Label Studio after it was recorded is not recorded
again: a delivery is what was submitted first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.errors import Conflict, InvalidInput, NotFound
from credits.id_text import id_from_text
from credits.identity.actor import Actor
from credits.labelling.access import lock_order
from credits.labelling.audit import audit_order
from credits.labelling.deliveries import record_delivery
from credits.labelling.errors import OrderNotFound, OrderStateConflict, VendorMismatch
from credits.labelling.label_schema import LabelSchema
from credits.labelling.label_studio import LabelStudioClient, NewTask
from credits.labelling.label_studio_format import (
    ExternalAnnotation,
    WebhookEvent,
    parse_annotation,
)
from credits.labelling.models import Adapter, Item, Order, OrderStatus, Vendor
from credits.labelling.schemas import DeliveryOut
from credits.ledger import journal

DELIVERY_KEY_PREFIX = "label-studio:"
PLACEABLE = frozenset({OrderStatus.PLACED, OrderStatus.IN_PROGRESS})

ImageUrl = Callable[[Item], str]


@dataclass(frozen=True)
class Placement:
    project_id: int
    imported: int


@dataclass
class SyncResult:
    recorded: int = 0
    replayed: int = 0
    # (Label Studio annotation id, why it was not delivered)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def delivery_key(annotation_id: int) -> str:
    return f"{DELIVERY_KEY_PREFIX}{annotation_id}"


def place_in_label_studio(
    session: Session,
    client: LabelStudioClient,
    *,
    order_id: int,
    actor: Actor,
    image_url: ImageUrl | None = None,
    now: datetime | None = None,
) -> Placement:
    """Creates the order's project (once) and imports its items that have no task yet.

    ``image_url`` gives the URL Label Studio loads an image item from; an image
    order needs it.
    """
    now = journal.check_time(now)
    order = lock_order(session, order_id)
    _require_label_studio(session, order)
    if OrderStatus(order.status) not in PLACEABLE:
        raise OrderStateConflict(
            f"an order that is {order.status} is not sent to Label Studio", state=order.status
        )
    schema = LabelSchema.model_validate(order.label_schema)
    if schema.is_image and image_url is None:
        raise InvalidInput("an image order needs the URL Label Studio loads each image from")
    if order.external_ref is None:
        project = client.create_project(
            title=f"credits order {order.id}: {order.title}",
            description=order.instructions,
            schema=schema,
            annotations_per_task=order.redundancy,
        )
        order.external_ref = str(project.id)
        session.flush()
    project_id = int(order.external_ref)
    pending = list(
        session.scalars(
            select(Item)
            .where(Item.order_id == order.id, Item.external_ref.is_(None))
            .order_by(Item.position)
        )
    )
    if pending:
        tasks = [NewTask(str(item.id), _content(item, image_url)) for item in pending]
        imported = client.import_tasks(project_id, schema, tasks)
        task_ids = imported.task_ids
        if task_ids is None or len(task_ids) != len(pending):
            by_item = client.task_ids_by_item(project_id)
            task_ids = [by_item[str(item.id)] for item in pending]
        for item, task_id in zip(pending, task_ids, strict=True):
            item.external_ref = str(task_id)
        session.flush()
    data = {"label_studio_project": project_id, "tasks_imported": len(pending)}
    audit_order(session, actor, order, "labelling.label_studio_placed", data=data, now=now)
    return Placement(project_id=project_id, imported=len(pending))


def sync_from_label_studio(
    session: Session,
    client: LabelStudioClient,
    *,
    order_id: int,
    actor: Actor,
    now: datetime | None = None,
) -> SyncResult:
    """Records every completed annotation of the order's project not recorded yet."""
    order = session.get(Order, order_id)
    if order is None:
        raise OrderNotFound(f"no labelling order has the id {order_id}")
    _require_label_studio(session, order)
    if order.external_ref is None:
        raise OrderStateConflict("the order is not in Label Studio yet", state=order.status)
    schema = LabelSchema.model_validate(order.label_schema)
    result = SyncResult()
    for task in client.tasks(int(order.external_ref)):
        for annotation in _submitted(task):
            _record_one(
                session,
                schema=schema,
                order_id=order_id,
                annotation=annotation,
                task=task,
                actor=actor,
                now=now,
                result=result,
            )
    return result


def order_for_project(session: Session, project_id: int) -> Order:
    """The Label Studio order whose project this is (a webhook names only the project)."""
    order = session.scalar(
        select(Order)
        .join(Vendor, Vendor.id == Order.vendor_id)
        .where(Order.external_ref == str(project_id), Vendor.adapter == Adapter.LABEL_STUDIO.value)
    )
    if order is None:
        raise OrderNotFound(f"no labelling order is Label Studio project {project_id}")
    return order


def record_webhook(
    session: Session, event: WebhookEvent, *, actor: Actor, now: datetime | None = None
) -> DeliveryOut | None:
    """Records the annotation of a verified, parsed webhook; None for other actions."""
    if event.annotation is None:
        return None
    if event.project_id is None:
        raise InvalidInput("the webhook names no project")
    order = order_for_project(session, event.project_id)
    return record_annotation(
        session, order_id=order.id, annotation=event.annotation, actor=actor, now=now
    )


def record_annotation(
    session: Session,
    *,
    order_id: int,
    annotation: ExternalAnnotation,
    actor: Actor,
    now: datetime | None = None,
) -> DeliveryOut:
    """One Label Studio annotation as a delivery (once per annotation id)."""
    if id_from_text(annotation.item_ref) is None:
        raise InvalidInput(f"task {annotation.task_id} names no credits item")
    return record_delivery(
        session,
        order_id=order_id,
        item_id=int(annotation.item_ref),
        annotator_ref=annotation.annotator_ref,
        value=annotation.value,
        seconds=annotation.lead_time_seconds,
        delivery_key=delivery_key(annotation.annotation_id),
        actor=actor,
        now=now,
    )


def _record_one(
    session: Session,
    *,
    schema: LabelSchema,
    order_id: int,
    annotation: dict[str, object],
    task: dict[str, object],
    actor: Actor,
    now: datetime | None,
    result: SyncResult,
) -> None:
    annotation_id = annotation.get("id")
    try:
        with session.begin_nested():
            parsed = parse_annotation(schema, annotation, task)
            delivered = record_annotation(
                session, order_id=order_id, annotation=parsed, actor=actor, now=now
            )
    except OrderStateConflict:
        raise  # the order stopped taking deliveries: nothing more to record
    except (InvalidInput, NotFound, Conflict) as refused:
        known = annotation_id if isinstance(annotation_id, int) else -1
        result.skipped.append((known, refused.detail))
        return
    if delivered.replayed:
        result.replayed += 1
    else:
        result.recorded += 1


def _submitted(task: dict[str, object]) -> list[dict[str, object]]:
    annotations = task.get("annotations")
    if not isinstance(annotations, list):
        return []
    return [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]


def _require_label_studio(session: Session, order: Order) -> None:
    vendor = session.get(Vendor, order.vendor_id)
    if vendor is None or vendor.adapter != Adapter.LABEL_STUDIO.value:
        raise VendorMismatch(f"order {order.id} is not labelled in Label Studio")


def _content(item: Item, image_url: ImageUrl | None) -> str:
    if item.text is not None:
        return item.text
    assert image_url is not None  # noqa: S101 - checked for image orders above
    return image_url(item)
