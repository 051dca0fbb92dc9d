"""The Label Studio sweep: orders placed with a Label Studio vendor reach Label
Studio, and what its annotators complete comes back as metered deliveries.

:func:`sweep_label_studio` (run by the embedded chores, Celery beat and
``credits labelling sync-label-studio``) does two things, each order in its
own committed transaction, so that Label Studio failing on one order neither
rolls back another's work nor the ledger, and never stops the sweep (the
failure is logged and reported, and the next sweep tries again):

- **Placement.** A placed order without a project gets one, titled
  ``credits order <id>: <title>``. The project is created by an HTTP call made
  outside any database transaction; its id is then stored in a transaction of
  its own. Were the process to die between the two, the next sweep finds the
  project by its title instead of creating a second. The tasks are imported
  next (:func:`~credits.labelling.label_studio_sync.place_in_label_studio`);
  tasks of an import whose transaction was lost are found again by their
  ``credits_item`` and adopted before anything is imported, so no item ever
  gets two tasks.
- **Collection.** Every placed, in-progress or disputed order in Label Studio
  has its completed annotations recorded
  (:func:`~credits.labelling.label_studio_sync.sync_from_label_studio`), each
  charged once whether the webhook, a previous sweep or this one saw it first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from credits.db import run_in_transaction, utcnow
from credits.errors import CreditsError
from credits.identity.actor import Actor
from credits.labelling.access import lock_order
from credits.labelling.image_links import image_links_from_settings
from credits.labelling.label_schema import LabelSchema
from credits.labelling.label_studio import LabelStudioClient
from credits.labelling.label_studio_sync import (
    ImageUrl,
    place_in_label_studio,
    sync_from_label_studio,
)
from credits.labelling.models import Adapter, Item, Order, OrderStatus, Vendor
from credits.labelling.taken_down import source_not_taken_down
from credits.settings import Settings

logger = logging.getLogger(__name__)
SWEEPER = Actor.system("label-studio-sweep")
S = OrderStatus
TO_PLACE = (S.PLACED.value, S.IN_PROGRESS.value)
TO_COLLECT = (S.PLACED.value, S.IN_PROGRESS.value, S.DISPUTED.value)

SessionFactory = Callable[[], Session]


@dataclass
class SweepReport:
    """What one sweep did, by order id."""

    # Tasks imported for each order placed (or finished placing) in this sweep.
    placed: dict[int, int] = field(default_factory=dict)
    # Annotations newly recorded for each order collected from.
    recorded: dict[int, int] = field(default_factory=dict)
    # Annotations Label Studio has that cannot be delivered: (annotation id, why).
    skipped: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    # Why an order could not be placed or collected from this time.
    failed: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Pending:
    order_id: int
    title: str
    instructions: str
    schema: LabelSchema
    redundancy: int
    external_ref: str | None


def project_title(order_id: int, title: str) -> str:
    """The project's title; its ``credits order <id>:`` prefix is how it is found again."""
    return f"credits order {order_id}: {title}"


def sweep_label_studio(
    factory: SessionFactory,
    client: LabelStudioClient,
    *,
    image_url: ImageUrl | None = None,
    order_ids: list[int] | None = None,
) -> SweepReport:
    """Places what is waiting, then collects annotations; ``order_ids`` limits the sweep."""
    report = SweepReport()
    for pending in run_in_transaction(factory, lambda s: _waiting(s, order_ids)):
        _guarded(
            report, pending.order_id, partial(_place, factory, client, pending, image_url, report)
        )
    for order_id in run_in_transaction(factory, lambda s: _collectable(s, order_ids)):
        _guarded(report, order_id, partial(_collect, factory, client, order_id, report))
    return report


def sweep_with_settings(
    factory: SessionFactory,
    client: LabelStudioClient,
    settings: Settings,
    *,
    order_ids: list[int] | None = None,
) -> SweepReport:
    """The sweep as the chores, beat and the CLI run it: image items get signed links
    under ``CREDITS_PUBLIC_URL``."""
    image_url = image_links_from_settings(settings, now=utcnow())
    return sweep_label_studio(factory, client, image_url=image_url, order_ids=order_ids)


def _guarded(report: SweepReport, order_id: int, work: Callable[[], None]) -> None:
    try:
        work()
    except CreditsError as error:
        logger.warning("Label Studio sweep: order %s: %s", order_id, error.detail)
        report.failed[order_id] = error.detail
    except Exception as error:
        # An unexpected failure on one order must not stop the others.
        logger.exception("Label Studio sweep: order %s failed", order_id)
        report.failed[order_id] = f"{type(error).__name__}: {error}"


def _label_studio_orders(statuses: tuple[str, ...], order_ids: list[int] | None) -> Select[Order]:
    query = (
        select(Order)
        .join(Vendor, Vendor.id == Order.vendor_id)
        .where(Vendor.adapter == Adapter.LABEL_STUDIO.value, Order.status.in_(statuses))
        .order_by(Order.id)
    )
    return query if order_ids is None else query.where(Order.id.in_(order_ids))


def _waiting(session: Session, order_ids: list[int] | None) -> list[_Pending]:
    """Orders with no project yet, or with items that have no task yet."""
    untasked = exists().where(Item.order_id == Order.id, Item.external_ref.is_(None))
    query = _label_studio_orders(TO_PLACE, order_ids).where(
        Order.external_ref.is_(None) | untasked, source_not_taken_down()
    )
    return [
        _Pending(
            order_id=order.id,
            title=order.title,
            instructions=order.instructions,
            schema=LabelSchema.model_validate(order.label_schema),
            redundancy=order.redundancy,
            external_ref=order.external_ref,
        )
        for order in session.execute(query).scalars()
    ]


def _collectable(session: Session, order_ids: list[int] | None) -> list[int]:
    query = _label_studio_orders(TO_COLLECT, order_ids).where(Order.external_ref.is_not(None))
    return [order.id for order in session.execute(query).scalars()]


def _place(
    factory: SessionFactory,
    client: LabelStudioClient,
    pending: _Pending,
    image_url: ImageUrl | None,
    report: SweepReport,
) -> None:
    project_id = (
        int(pending.external_ref)
        if pending.external_ref is not None
        else _project_for(factory, client, pending)
    )
    if project_id is None:
        return
    _adopt_tasks(factory, pending.order_id, client.task_ids_by_item(project_id))
    placement = run_in_transaction(
        factory,
        lambda s: place_in_label_studio(
            s, client, order_id=pending.order_id, actor=SWEEPER, image_url=image_url, now=utcnow()
        ),
    )
    report.placed[pending.order_id] = placement.imported


def _project_for(
    factory: SessionFactory, client: LabelStudioClient, pending: _Pending
) -> int | None:
    """Finds or creates the order's project (no transaction open), then stores its id.

    None when the order left the placeable states meanwhile (the project stays,
    empty, for ops to delete)."""
    title = project_title(pending.order_id, pending.title)
    project = client.find_project(title) or client.create_project(
        title=title,
        description=pending.instructions,
        schema=pending.schema,
        annotations_per_task=pending.redundancy,
    )
    return run_in_transaction(factory, lambda s: _store_project(s, pending.order_id, project.id))


def _store_project(session: Session, order_id: int, project_id: int) -> int | None:
    order = lock_order(session, order_id)
    if order.status not in TO_PLACE:
        return None
    if order.external_ref is None:
        order.external_ref = str(project_id)
    return int(order.external_ref)


def _adopt_tasks(factory: SessionFactory, order_id: int, task_ids: dict[str, int]) -> None:
    """Items whose task exists already (an import whose transaction was lost) keep it."""
    if not task_ids:
        return

    def adopt(session: Session) -> None:
        lock_order(session, order_id)
        for item in session.scalars(
            select(Item).where(Item.order_id == order_id, Item.external_ref.is_(None))
        ):
            if (task_id := task_ids.get(str(item.id))) is not None:
                item.external_ref = str(task_id)

    run_in_transaction(factory, adopt)


def _collect(
    factory: SessionFactory, client: LabelStudioClient, order_id: int, report: SweepReport
) -> None:
    result = run_in_transaction(
        factory,
        lambda s: sync_from_label_studio(s, client, order_id=order_id, actor=SWEEPER, now=utcnow()),
    )
    report.recorded[order_id] = result.recorded
    if result.skipped:
        report.skipped[order_id] = result.skipped
        logger.warning(
            "Label Studio sweep: order %s: %d annotations not delivered: %s",
            order_id,
            len(result.skipped),
            result.skipped,
        )
