"""A labelling order's life: draft, quote, place (a hold), deliveries, then accept,
dispute and resolve, or cancel.

draft -> quoted -> placed -> in_progress -> delivered -> accepted -> settled;
in_progress or delivered -> disputed -> settled (ops resolve) or cancelled;
anything before delivery -> cancelled. A refused transition raises
OrderStateConflict naming the state. Every function locks the order, works in
the caller's transaction and appends an audit event; none commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.service import canonical_json
from credits.datasets.models import Dataset
from credits.errors import InvalidInput
from credits.grants.errors import ProjectStatusConflict
from credits.grants.models import Project, ProjectStatus
from credits.identity.actor import Actor
from credits.identity.models import Role, User
from credits.labelling.access import load_order, lock_order
from credits.labelling.audit import audit_order
from credits.labelling.delivery import deliver_as_dataset
from credits.labelling.errors import LabellingForbidden, OrderStateConflict, VendorMismatch
from credits.labelling.label_schema import LabelSchema, check_annotation
from credits.labelling.models import (
    MICRO,
    Adapter,
    Item,
    Order,
    OrderAnnotator,
    OrderStatus,
    PriceUnit,
    Resolution,
)
from credits.labelling.order_blobs import hold_order_blobs
from credits.labelling.pricing import Price, cost, needs_estimate, quoted_units
from credits.labelling.queries import order_out
from credits.labelling.schemas import MAX_ITEMS, ItemIn, OrderIn, OrderOut, OrderSource, QcOptions
from credits.labelling.settlement import LEDGER_ACTOR, close_hold, refund, settle_frozen
from credits.labelling.vendors import load_vendor, price_sheet_in_force, require_ops
from credits.ledger import journal
from credits.ledger.errors import IdempotencyKeyReused
from credits.ledger.holds import place_hold
from credits.ledger.models import Currency
from credits.storage import BlobStore

S = OrderStatus


def create_order(
    session: Session,
    *,
    order: OrderIn,
    items: Sequence[ItemIn],
    source: OrderSource,
    actor: Actor,
    request_key: str | None = None,
    now: datetime | None = None,
    store: BlobStore | None = None,
) -> OrderOut:
    """A draft order of ``items`` for the project. A replay of ``request_key`` returns
    the first order. Raises OrderNotFound-like ProjectNotFound, VendorNotFound,
    VendorMismatch, InvalidInput, IdempotencyKeyReused, and StorageUnavailable (503:
    send the images again) when an image's bytes were removed from ``store`` since
    they were read (see :func:`~credits.labelling.order_blobs.hold_order_blobs`). A
    caller whose image items come from a store passes it; without one the blobs are
    locked but not looked for."""
    now = journal.check_time(now)
    digest = _request_digest(actor, order, items, source)
    scoped_key = None if request_key is None else f"{actor.label}:{request_key}"
    if scoped_key is not None and (prior := _replay(session, scoped_key, digest)) is not None:
        return prior
    _require_project_member(session, actor, order.project_id)
    schema = order.label_schema
    _check_vendor(session, order, items)
    _check_items(schema, items)
    _check_target(session, order)
    hold_order_blobs(session, store, items)
    row = Order(
        project_id=order.project_id,
        vendor_id=order.vendor_id,
        title=order.title,
        instructions=order.instructions,
        label_schema=schema.model_dump(mode="json"),
        redundancy=order.redundancy,
        estimate_per_annotation_micro=_estimate_micro(order),
        status=S.DRAFT.value,
        source_kind=source.kind.value,
        source_version_id=source.version_id,
        source_name=source.name,
        target_dataset_id=order.target_dataset_id,
        request_key=scoped_key,
        request_hash=digest if scoped_key else None,
        created_by=actor.label,
        created_at=now,
    )
    session.add(row)
    session.flush()
    session.add_all(_item_rows(row.id, items))
    session.flush()
    audit_order(session, actor, row, "labelling.order_created", data={"items": len(items)}, now=now)
    return order_out(session, row)


def _request_digest(
    actor: Actor, order: OrderIn, items: Sequence[ItemIn], source: OrderSource
) -> str:
    document = {
        "actor": actor.label,
        "order": order.model_dump(mode="json"),
        "items": [item.model_dump(mode="json") for item in items],
        "source": source.model_dump(mode="json"),
    }
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def _replay(session: Session, request_key: str, digest: str) -> OrderOut | None:
    row = session.scalar(select(Order).where(Order.request_key == request_key))
    if row is None:
        return None
    if row.request_hash != digest:
        raise IdempotencyKeyReused("this Idempotency-Key was already used for a different order")
    return order_out(session, row, replayed=True)


def _require_project_member(session: Session, actor: Actor, project_id: int) -> None:
    # Imported here: credits.identity.access imports half the domains.
    from credits.identity.access import can_read_project  # noqa: PLC0415

    if not can_read_project(session, actor, project_id):
        from credits.grants.errors import ProjectNotFound  # noqa: PLC0415

        raise ProjectNotFound(f"no project has the id {project_id}")


def _require_project_active(session: Session, project_id: int) -> None:
    """A suspended or archived project spends nothing new, as jobs refuse to start;
    its allocation accounts alone may not say so (one reactivated by hand)."""
    status = session.scalar(select(Project.status).where(Project.id == project_id))
    if status != ProjectStatus.ACTIVE.value:
        raise ProjectStatusConflict(
            f"project {project_id} is {status} and cannot place labelling orders",
            current_status=status,
        )


def _check_vendor(session: Session, order: OrderIn, items: Sequence[ItemIn]) -> None:
    vendor = load_vendor(session, order.vendor_id)
    if not vendor.active:
        raise VendorMismatch(f"vendor {vendor.name!r} is retired and takes no new orders")
    kind = order.label_schema.kind
    if kind.value not in vendor.task_kinds:
        raise VendorMismatch(
            f"vendor {vendor.name!r} does not take {kind.value} tasks"
            f" (it takes {', '.join(vendor.task_kinds)})"
        )
    qc = QcOptions.model_validate(vendor.qc_options)
    if order.redundancy > qc.max_redundancy:
        raise VendorMismatch(
            f"vendor {vendor.name!r} offers at most {qc.max_redundancy} annotators per item"
        )
    if not qc.gold_items and any(item.gold is not None for item in items):
        raise VendorMismatch(f"vendor {vendor.name!r} does not take gold items")


def _check_items(schema: LabelSchema, items: Sequence[ItemIn]) -> None:
    if not items:
        raise InvalidInput("an order needs at least one item")
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"an order has at most {MAX_ITEMS} items; split it")
    seen: set[str] = set()
    for item in items:
        if item.external_id in seen:
            raise InvalidInput(f"item id {item.external_id!r} appears twice")
        seen.add(item.external_id)
        if schema.is_image != (item.blob_sha256 is not None):
            wanted = "image" if schema.is_image else "text"
            raise InvalidInput(
                f"item {item.external_id!r}: a {schema.kind.value} order takes {wanted} items"
            )
        if item.gold is not None:
            try:
                check_annotation(schema, item.gold, text_length=_length(item.text))
            except InvalidInput as error:
                raise InvalidInput(f"gold item {item.external_id!r}: {error.detail}") from None
    if all(item.gold is not None for item in items):
        raise InvalidInput("an order needs items to label, not only gold items")


def _length(text: str | None) -> int | None:
    return None if text is None else len(text)


def _check_target(session: Session, order: OrderIn) -> None:
    if order.target_dataset_id is None:
        return
    dataset = session.get(Dataset, order.target_dataset_id)
    if dataset is None or dataset.project_id != order.project_id:
        raise InvalidInput(
            f"dataset {order.target_dataset_id} is not a dataset of project {order.project_id}"
        )


def _estimate_micro(order: OrderIn) -> int | None:
    estimate = order.expected_seconds_per_item or order.expected_labels_per_item
    return None if estimate is None else int(estimate * MICRO)


def _item_rows(order_id: int, items: Sequence[ItemIn]) -> list[Item]:
    return [
        Item(
            order_id=order_id,
            position=position,
            external_id=item.external_id,
            text=item.text,
            blob_sha256=item.blob_sha256,
            media_type=item.media_type,
            is_gold=item.gold is not None,
            gold_value=None if item.gold is None else item.gold.model_dump(mode="json"),
            claims=0,
            annotation_count=0,
        )
        for position, item in enumerate(items)
    ]


def quote_order(
    session: Session, *, order_id: int, actor: Actor, now: datetime | None = None
) -> OrderOut:
    """Prices a draft (or re-prices a quoted order) at the vendor's price in force now.

    Raises OrderStateConflict, NoPriceSheet, InvalidInput (a missing estimate)."""
    now = journal.check_time(now)
    order = _lock_for(session, actor, order_id, (S.DRAFT, S.QUOTED), "quote")
    sheet = price_sheet_in_force(session, vendor_id=order.vendor_id, at=now)
    unit = PriceUnit(sheet.unit)
    schema = LabelSchema.model_validate(order.label_schema)
    item_count = len(session.scalars(select(Item.id).where(Item.order_id == order.id)).all())
    units = quoted_units(
        items=item_count,
        redundancy=order.redundancy,
        unit=unit,
        kind=schema.kind,
        estimate_micro=order.estimate_per_annotation_micro
        if needs_estimate(unit, schema.kind)
        else None,
    )
    price = Price(unit, sheet.micro_credits_per_unit, sheet.fee_basis_points)
    order.price_sheet_id = sheet.id
    order.quoted_units_micro = units
    order.quoted_micro = journal.check_amount(cost(units, price), name="quote")
    order.quoted_at = now
    order.status = S.QUOTED.value
    data = {"price_sheet_id": sheet.id, "units_micro": units, "amount_micro": order.quoted_micro}
    audit_order(session, actor, order, "labelling.order_quoted", data=data, now=now)
    return order_out(session, order)


def place_order(
    session: Session, *, order_id: int, actor: Actor, now: datetime | None = None
) -> OrderOut:
    """Holds the quote on the project's labelling credits; the order is then placed.

    Raises OrderStateConflict, ProjectStatusConflict (the project is suspended
    or archived), InsufficientCredits (402, ``required`` and ``available``;
    nothing is held), AccountNotActive.
    """
    now = journal.check_time(now)
    order = _lock_for(session, actor, order_id, (S.QUOTED,), "place")
    _require_project_active(session, order.project_id)
    order.hold_key = f"labelling:{order.id}:hold"
    place_hold(
        session,
        key=order.hold_key,
        currency=Currency.LABEL,
        amount=order.quoted_micro,
        actor=LEDGER_ACTOR,
        project_id=order.project_id,
        reference=f"labelling order {order.id}",
        now=now,
    )
    order.status = S.PLACED.value
    order.placed_at = now
    audit_order(
        session,
        actor,
        order,
        "labelling.order_placed",
        data={"hold_micro": order.quoted_micro},
        now=now,
    )
    return order_out(session, order)


def assign_annotators(
    session: Session,
    *,
    order_id: int,
    user_ids: Sequence[int],
    actor: Actor,
    now: datetime | None = None,
) -> OrderOut:
    """Gives in-house annotators the order's queue; each must hold the annotator role."""
    now = journal.check_time(now)
    order = _lock_for(
        session,
        actor,
        order_id,
        (S.DRAFT, S.QUOTED, S.PLACED, S.IN_PROGRESS),
        "assign annotators to",
    )
    if load_vendor(session, order.vendor_id).adapter != Adapter.INHOUSE.value:
        raise VendorMismatch("only in-house orders have annotators to assign")
    known = set(
        session.scalars(select(OrderAnnotator.user_id).where(OrderAnnotator.order_id == order.id))
    )
    for user_id in dict.fromkeys(user_ids):
        user = session.get(User, user_id)
        if (
            user is None
            or not user.is_active
            or Role.ANNOTATOR.value not in {r.role for r in user.roles}
        ):
            raise InvalidInput(f"user {user_id} is not an active annotator")
        if user_id not in known:
            session.add(
                OrderAnnotator(
                    order_id=order.id, user_id=user_id, assigned_by=actor.label, assigned_at=now
                )
            )
    session.flush()
    audit_order(
        session,
        actor,
        order,
        "labelling.annotators_assigned",
        data={"user_ids": list(user_ids)},
        now=now,
    )
    return order_out(session, order)


def cancel_order(
    session: Session,
    *,
    order_id: int,
    actor: Actor,
    reason: str | None = None,
    now: datetime | None = None,
) -> OrderOut:
    """Cancels an order not yet delivered; what the hold has not captured is released.

    What was delivered before stays captured. A disputed order is ended by ops
    through :func:`resolve_dispute`."""
    now = journal.check_time(now)
    order = _lock_for(
        session, actor, order_id, (S.DRAFT, S.QUOTED, S.PLACED, S.IN_PROGRESS), "cancel"
    )
    cancel_locked_order(session, actor, order, reason, now)
    return order_out(session, order)


def cancel_locked_order(
    session: Session, actor: Actor, order: Order, reason: str | None, now: datetime
) -> None:
    """Cancels an order its caller has locked: what the hold has not captured is
    released."""
    close_hold(session, order, reason=reason or "order cancelled", now=now)
    order.status = S.CANCELLED.value
    order.cancelled_at = now
    audit_order(
        session, actor, order, "labelling.order_cancelled", data={"reason": reason}, now=now
    )


def dispute_order(
    session: Session, *, order_id: int, actor: Actor, reason: str, now: datetime | None = None
) -> OrderOut:
    """Freezes capture: deliveries are still recorded, but charged only when ops resolve."""
    now = journal.check_time(now)
    reason = _required_text(reason, "a dispute needs a reason")
    order = _lock_for(session, actor, order_id, (S.IN_PROGRESS, S.DELIVERED), "dispute")
    order.status = S.DISPUTED.value
    order.disputed_at = now
    order.dispute_reason = reason
    audit_order(session, actor, order, "labelling.order_disputed", data={"reason": reason}, now=now)
    return order_out(session, order)


def accept_order(
    session: Session, *, order_id: int, actor: Actor, now: datetime | None = None
) -> OrderOut:
    """Accepts the work: the rest of the hold is released and the order settles.

    The annotations become a draft dataset version with the order as its provenance.
    """
    now = journal.check_time(now)
    order = _lock_for(session, actor, order_id, (S.IN_PROGRESS, S.DELIVERED), "accept")
    order.status = S.ACCEPTED.value
    order.accepted_at = now
    audit_order(session, actor, order, "labelling.order_accepted", data={}, now=now)
    _settle(session, actor, order, now)
    return order_out(session, order)


def resolve_dispute(
    session: Session,
    *,
    order_id: int,
    resolution: Resolution,
    actor: Actor,
    note: str,
    refund_micro: int = 0,
    now: datetime | None = None,
) -> OrderOut:
    """Ops end a dispute: accept (charge what was delivered), refund part of what was
    charged through an audited adjustment, or cancel (what was frozen is never charged).

    Raises LabellingForbidden, OrderStateConflict, InvalidInput (a refund of nothing
    or of more than was charged)."""
    require_ops(actor, "resolve disputes")
    now = journal.check_time(now)
    note = _required_text(note, "resolving a dispute needs a note")
    order = _lock_for(session, actor, order_id, (S.DISPUTED,), "resolve")
    if resolution is Resolution.CANCELLED:
        close_hold(session, order, reason=f"dispute resolved: cancelled ({note})", now=now)
        order.frozen_micro = 0
        order.status = S.CANCELLED.value
        order.cancelled_at = now
    else:
        settle_frozen(session, order, now=now)
        if resolution is Resolution.REFUNDED:
            refund(session, order, amount=refund_micro, actor=actor, note=note, now=now)
    order.resolution = resolution.value
    order.resolution_note = note
    data: dict[str, Any] = {
        "resolution": resolution.value,
        "note": note,
        "refund_micro": refund_micro,
    }
    audit_order(session, actor, order, "labelling.dispute_resolved", data=data, now=now)
    if resolution is not Resolution.CANCELLED:
        _settle(session, actor, order, now)
    return order_out(session, order)


def _settle(session: Session, actor: Actor, order: Order, now: datetime) -> None:
    close_hold(session, order, reason="order settled", now=now)
    order.delivered_version_id = deliver_as_dataset(session, order=order, actor=actor, now=now)
    order.status = S.SETTLED.value
    order.settled_at = now
    data = {
        "captured_micro": order.captured_micro,
        "overage_micro": order.overage_micro,
        "delivered_version_id": order.delivered_version_id,
    }
    audit_order(session, actor, order, "labelling.order_settled", data=data, now=now)


def _lock_for(
    session: Session, actor: Actor, order_id: int, allowed: Sequence[OrderStatus], action: str
) -> Order:
    """The order, locked, when the actor may see it and its state allows ``action``."""
    load_order(session, actor, order_id)
    order = lock_order(session, order_id)
    if order.status not in {state.value for state in allowed}:
        raise OrderStateConflict(
            f"cannot {action} an order that is {order.status}", state=order.status
        )
    if not actor.has_role(Role.OPS) and not actor.has_role(Role.RESEARCHER):
        raise LabellingForbidden("only the project's researchers or ops may change an order")
    return order


def _required_text(text: str, message: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(message)
    return text.strip()
