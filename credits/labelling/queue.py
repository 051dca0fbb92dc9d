"""The in-house annotators' queue: serve an item, take the answer, skip, expire leases.

Rules:

- an annotator is served items only of the in-house orders they are assigned
  to, while the order is placed or in progress. A disputed order stops serving
  (its quality is in question until ops resolve it); an answer to an item
  already served is still taken, and frozen like any delivery to a disputed order;
- an item is never served twice to one annotator (a unique (item, user) row in
  ``labelling_assignments``, kept even when they skip it), and stops being
  served once ``claims`` (open assignments plus annotations) reaches the
  order's redundancy. The claim is a conditional ``UPDATE ... WHERE claims <
  redundancy`` in a savepoint with the assignment's insert, so two annotators
  racing for an item's last place never both get it, on PostgreSQL or SQLite;
- gold items are served like any other: nothing served says an item is gold,
  and the queue's order is a per-annotator shuffle, so gold items are spread
  through it rather than first;
- an assignment is a lease (``CREDITS_LABELLING_LEASE_MINUTES``). Once it runs
  out, :func:`release_expired` gives the item's claim back to the queue. An
  answer to a lease that ran out but has not been released yet is still
  taken: its claim was never given back, so taking it cannot over-serve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from pydantic import BaseModel
from sqlalchemy import BigInteger, ColumnElement, CursorResult, and_, func, literal, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.labelling import deliveries
from credits.labelling.access import assigned_orders
from credits.labelling.errors import (
    AssignmentClosed,
    AssignmentNotFound,
    LabellingForbidden,
    OrderNotFound,
)
from credits.labelling.label_schema import AnnotationValue, LabelSchema
from credits.labelling.models import Assignment, AssignmentStatus, Item, Order, OrderStatus
from credits.labelling.schemas import DeliveryOut
from credits.labelling.taken_down import require_image_not_taken_down, source_not_taken_down
from credits.ledger import journal
from credits.settings import load_settings

SERVING = frozenset({OrderStatus.PLACED.value, OrderStatus.IN_PROGRESS.value})
CANDIDATES_PER_LOOK = 16
# What record_delivery takes as the time spent on one item.
MAX_SECONDS = 86_400.0
# The queue's order: (position * MULTIPLIER + user_id * OFFSET) mod PRIME. With PRIME
# above any position this is a permutation that scatters neighbouring positions (gold
# items are often listed together) and starts each annotator at a different place, so
# annotators rarely race for the same item. Integer arithmetic, the same on both databases.
_PRIME = 2_147_483_647
_MULTIPLIER = 2_654_435_761
_OFFSET = 1_640_531_527
A = AssignmentStatus


class ServedItem(BaseModel):
    """What an annotator sees of an item: never whether it is gold, nor who else labels it."""

    assignment_id: int
    order_id: int
    order_title: str
    instructions: str
    label_schema: LabelSchema
    text: str | None
    media_type: str
    has_image: bool
    served_at: datetime
    expires_at: datetime
    remaining: int


class QueueSummary(BaseModel):
    """One of an annotator's orders, as their queue page lists it."""

    order_id: int
    title: str
    status: OrderStatus
    serving: bool
    remaining: int
    done: int


def lease_length() -> timedelta:
    return timedelta(minutes=load_settings().labelling_lease_minutes)


def next_item(
    session: Session,
    actor: Actor,
    *,
    order_id: int | None = None,
    now: datetime | None = None,
    lease: timedelta | None = None,
) -> ServedItem | None:
    """The annotator's open item (resumed), else a newly claimed one; None when the
    order (or, without ``order_id``, every order of theirs) has nothing left for them.

    Raises LabellingForbidden (not an annotator), OrderNotFound (not their order).
    """
    now = journal.check_time(now)
    user_id = _annotator_id(actor)
    for order in _orders_to_serve(session, actor, order_id):
        release_expired(session, now=now, order_id=order.id)
        assignment = _open_assignment(session, order.id, user_id) or _claim(
            session, order, user_id, now=now, lease=lease or lease_length()
        )
        if assignment is not None:
            return _served(session, order, assignment)
    return None


def _annotator_id(actor: Actor) -> int:
    if actor.user_id is None or not actor.has_role(Role.ANNOTATOR):
        raise LabellingForbidden("only annotators have a labelling queue")
    return actor.user_id


def _orders_to_serve(session: Session, actor: Actor, order_id: int | None) -> Sequence[Order]:
    query = select(Order).where(assigned_orders(actor))
    # An order whose items came from a taken-down dataset version is served no more.
    serving = and_(Order.status.in_(SERVING), source_not_taken_down())
    if order_id is None:
        return session.scalars(query.where(serving).order_by(Order.id)).all()
    order = session.scalar(query.where(Order.id == order_id))
    if order is None:
        raise OrderNotFound(f"no labelling order has the id {order_id}")
    return session.scalars(query.where(Order.id == order_id, serving)).all()


def _open_assignment(session: Session, order_id: int, user_id: int) -> Assignment | None:
    return session.scalar(
        select(Assignment)
        .where(
            Assignment.order_id == order_id,
            Assignment.user_id == user_id,
            Assignment.status == A.OPEN.value,
        )
        .order_by(Assignment.id)
        .limit(1)
    )


def _unserved(order: Order, user_id: int) -> tuple[ColumnElement[bool], ...]:
    """The conditions of an item this annotator may still be served."""
    seen = select(Assignment.item_id).where(
        Assignment.order_id == order.id, Assignment.user_id == user_id
    )
    return (
        Item.order_id == order.id,
        Item.claims < order.redundancy,
        Item.id.not_in(seen),
    )


def _claim(
    session: Session, order: Order, user_id: int, *, now: datetime, lease: timedelta
) -> Assignment | None:
    position = sql_cast(Item.position, BigInteger)
    offset = literal((user_id * _OFFSET) % _PRIME, BigInteger)
    shuffle = (position * literal(_MULTIPLIER, BigInteger) + offset) % literal(_PRIME, BigInteger)
    tried: list[int] = []
    while True:
        query = select(Item.id).where(*_unserved(order, user_id))
        if tried:
            query = query.where(Item.id.not_in(tried))
        candidates = session.scalars(
            query.order_by(shuffle, Item.id).limit(CANDIDATES_PER_LOOK)
        ).all()
        if not candidates:
            return None
        for item_id in candidates:
            assignment = _try_claim(session, order, item_id, user_id, now=now, lease=lease)
            if assignment is not None:
                return assignment
            tried.append(item_id)


def _try_claim(
    session: Session,
    order: Order,
    item_id: int,
    user_id: int,
    *,
    now: datetime,
    lease: timedelta,
) -> Assignment | None:
    """Takes one of the item's places, or None when another annotator took the last one."""
    try:
        with session.begin_nested():
            taken = cast(
                CursorResult[object],
                session.execute(
                    update(Item)
                    .where(Item.id == item_id, Item.claims < order.redundancy)
                    .values(claims=Item.claims + 1)
                    .execution_options(synchronize_session=False)
                ),
            )
            if taken.rowcount != 1:
                return None
            assignment = Assignment(
                order_id=order.id,
                item_id=item_id,
                user_id=user_id,
                status=A.OPEN.value,
                served_at=now,
                expires_at=now + lease,
            )
            session.add(assignment)
            session.flush()
    except IntegrityError:
        # The same annotator, in another request, was served this item first.
        return None
    return assignment


def _served(session: Session, order: Order, assignment: Assignment) -> ServedItem:
    item = session.get_one(Item, assignment.item_id)
    return ServedItem(
        assignment_id=assignment.id,
        order_id=order.id,
        order_title=order.title,
        instructions=order.instructions,
        label_schema=LabelSchema.model_validate(order.label_schema),
        text=item.text,
        media_type=item.media_type,
        has_image=item.blob_sha256 is not None,
        served_at=assignment.served_at,
        expires_at=assignment.expires_at,
        remaining=_remaining(session, order, assignment.user_id) + 1,
    )


def _remaining(session: Session, order: Order, user_id: int) -> int:
    """Items this annotator could still be served, besides any open one."""
    count = session.scalar(select(func.count(Item.id)).where(*_unserved(order, user_id)))
    return int(count or 0)


def submit(
    session: Session,
    actor: Actor,
    *,
    assignment_id: int,
    value: AnnotationValue,
    seconds: float | None,
    now: datetime | None = None,
) -> DeliveryOut:
    """Records the annotator's answer to the item served to them, and the time they spent.

    ``seconds`` (measured by the page from when it showed the item) is capped by
    the time since the item was served, which is taken when the page measured
    nothing. Submitting the same assignment again returns the first delivery
    (``replayed``). Raises AssignmentNotFound (not theirs), AssignmentClosed
    (skipped or released), InvalidInput, and what
    :func:`credits.labelling.deliveries.record_delivery` raises.
    """
    now = journal.check_time(now)
    assignment = _own_assignment(session, actor, assignment_id)
    if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
        raise InvalidInput("the time spent on an item is a number of seconds, 0 or more")
    if assignment.status == A.OPEN.value:
        # Whether this request or a concurrent one closed it, the row now says how.
        _close(session, assignment, A.DONE)
    if assignment.status == A.RELEASED.value:
        raise AssignmentClosed(
            "this item was skipped or its lease ran out; it is no longer yours to label"
        )
    since_served = max(0.0, (now - assignment.served_at).total_seconds())
    spent = min(since_served if seconds is None else seconds, since_served, MAX_SECONDS)
    return deliveries.record_delivery(
        session,
        order_id=assignment.order_id,
        item_id=assignment.item_id,
        annotator_ref=f"user:{assignment.user_id}",
        value=value,
        seconds=round(spent, 3),
        delivery_key=f"assignment:{assignment.id}",
        actor=actor,
        claimed=True,
        now=now,
    )


def skip(session: Session, actor: Actor, *, assignment_id: int) -> None:
    """Gives the item back to the queue for others; it is never served to this annotator
    again. Raises AssignmentNotFound, AssignmentClosed (already submitted)."""
    assignment = _own_assignment(session, actor, assignment_id)
    if assignment.status == A.DONE.value:
        raise AssignmentClosed("this item is already labelled; it cannot be skipped")
    if assignment.status == A.OPEN.value:
        _release(session, assignment)


def release_expired(
    session: Session, *, now: datetime | None = None, order_id: int | None = None
) -> int:
    """Releases the open assignments whose lease has run out (of one order, or all)
    and gives their items' claims back; returns how many were released."""
    now = journal.check_time(now)
    query = select(Assignment).where(
        Assignment.status == A.OPEN.value, Assignment.expires_at <= now
    )
    if order_id is not None:
        query = query.where(Assignment.order_id == order_id)
    released = 0
    for assignment in session.scalars(query.order_by(Assignment.item_id)).all():
        if _release(session, assignment):
            released += 1
    return released


def _release(session: Session, assignment: Assignment) -> bool:
    if not _close(session, assignment, A.RELEASED):
        return False
    session.execute(
        update(Item)
        .where(Item.id == assignment.item_id)
        .values(claims=Item.claims - 1)
        .execution_options(synchronize_session=False)
    )
    return True


def _close(session: Session, assignment: Assignment, status: AssignmentStatus) -> bool:
    """Moves an open assignment to ``status``; False when a concurrent request (a
    submission, a skip, the sweep) closed it first."""
    closed = cast(
        CursorResult[object],
        session.execute(
            update(Assignment)
            .where(Assignment.id == assignment.id, Assignment.status == A.OPEN.value)
            .values(status=status.value)
            .execution_options(synchronize_session=False)
        ),
    )
    session.refresh(assignment)
    return closed.rowcount == 1


def _own_assignment(session: Session, actor: Actor, assignment_id: int) -> Assignment:
    """The actor's assignment, while they are still assigned to its order; the same
    refusal whether it is missing or someone else's."""
    user_id = _annotator_id(actor)
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.user_id != user_id:
        raise AssignmentNotFound(f"you have no labelling assignment {assignment_id}")
    still_assigned = session.scalar(
        select(Order.id).where(Order.id == assignment.order_id, assigned_orders(actor))
    )
    if still_assigned is None:
        raise AssignmentNotFound(f"you have no labelling assignment {assignment_id}")
    return assignment


def assignment_image(session: Session, actor: Actor, *, assignment_id: int) -> tuple[str, str]:
    """The (sha256, media type) of the image served to the annotator in an assignment of
    theirs. Raises AssignmentNotFound, also for a text item."""
    assignment = _own_assignment(session, actor, assignment_id)
    item = session.get_one(Item, assignment.item_id)
    if item.blob_sha256 is None:
        raise AssignmentNotFound(f"assignment {assignment_id} is not of an image")
    require_image_not_taken_down(session, item)
    return item.blob_sha256, item.media_type


def my_queues(session: Session, actor: Actor) -> list[QueueSummary]:
    """The annotator's orders, newest first: what is left for them in each and what they did."""
    user_id = _annotator_id(actor)
    orders = session.scalars(select(Order).where(assigned_orders(actor)).order_by(Order.id.desc()))
    summaries = []
    for order in orders:
        serving = order.status in SERVING
        done = session.scalar(
            select(func.count(Assignment.id)).where(
                Assignment.order_id == order.id,
                Assignment.user_id == user_id,
                Assignment.status == A.DONE.value,
            )
        )
        open_ = _open_assignment(session, order.id, user_id) is not None
        summaries.append(
            QueueSummary(
                order_id=order.id,
                title=order.title,
                status=OrderStatus(order.status),
                serving=serving,
                remaining=_remaining(session, order, user_id) + int(open_) if serving else 0,
                done=int(done or 0),
            )
        )
    return summaries
