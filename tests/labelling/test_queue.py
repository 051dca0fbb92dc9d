"""The in-house annotators' queue: what is served to whom, leases, skips, submissions."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from labelling_world import LabellingWorld, build_world
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.labelling import orders, queue
from credits.labelling.errors import (
    AssignmentClosed,
    AssignmentNotFound,
    LabellingForbidden,
    OrderNotFound,
)
from credits.labelling.label_schema import AnnotationValue
from credits.labelling.models import Annotation, Assignment, Item
from credits.labelling.queries import get_order
from credits.labelling.schemas import OrderOut

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=utcnow().tzinfo)
POSITIVE = AnnotationValue(labels=["positive"])


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


def _order(session: Session, world: LabellingWorld, **draft: object) -> OrderOut:
    order = world.placed(session, **draft)
    ids = [a.user_id for a in world.annotators if a.user_id is not None]
    orders.assign_annotators(session, order_id=order.id, user_ids=ids, actor=world.pi)
    return order


def _serve(
    session: Session, annotator: Actor, order: OrderOut, at: datetime = T0
) -> queue.ServedItem | None:
    return queue.next_item(session, annotator, order_id=order.id, now=at)


def _item_of(session: Session, served: queue.ServedItem) -> Item:
    assignment = session.get_one(Assignment, served.assignment_id)
    return session.get_one(Item, assignment.item_id)


def _label_all(
    session: Session, annotator: Actor, order: OrderOut, at: datetime = T0
) -> list[Item]:
    labelled = []
    while (served := _serve(session, annotator, order, at)) is not None:
        labelled.append(_item_of(session, served))
        queue.submit(
            session,
            annotator,
            assignment_id=served.assignment_id,
            value=POSITIVE,
            seconds=3.0,
            now=at + timedelta(seconds=10),
        )
    return labelled


def test_an_annotator_is_never_served_an_item_twice(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=5, redundancy=2)
    first = _label_all(session, world.annotators[0], order)
    assert len(first) == 5 and len({item.id for item in first}) == 5
    assert _serve(session, world.annotators[0], order) is None


def test_an_item_stops_being_served_once_it_has_its_redundancy(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    one, two = world.annotators
    held = _serve(session, one, order)
    assert held is not None
    assert len(_label_all(session, two, order)) == 1  # the other item is held by one
    queue.submit(session, one, assignment_id=held.assignment_id, value=POSITIVE, seconds=1.0)
    assert _serve(session, one, order) is None and _serve(session, two, order) is None
    claims = session.scalars(select(Item.claims).where(Item.order_id == order.id)).all()
    assert claims == [1, 1]
    assert get_order(session, world.pi, order_id=order.id).status == "delivered"


def test_an_open_item_is_resumed_not_a_new_one_claimed(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=3, redundancy=1)
    first = _serve(session, world.annotators[0], order)
    again = _serve(session, world.annotators[0], order, T0 + timedelta(minutes=1))
    assert first is not None and again is not None
    assert again.assignment_id == first.assignment_id
    assert first.remaining == 3


def test_an_expired_lease_gives_the_item_back_to_the_queue(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=1, redundancy=1)
    one, two = world.annotators
    lapsed = _serve(session, one, order)
    assert lapsed is not None
    assert _serve(session, two, order, T0 + timedelta(minutes=29)) is None
    taken = _serve(session, two, order, T0 + timedelta(minutes=31))
    assert taken is not None
    assert session.get_one(Assignment, lapsed.assignment_id).status == "released"
    assert session.scalar(select(Item.claims).where(Item.order_id == order.id)) == 1
    with pytest.raises(AssignmentClosed):
        queue.submit(session, one, assignment_id=lapsed.assignment_id, value=POSITIVE, seconds=1)


def test_the_sweep_releases_expired_leases_and_their_claims(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    for annotator in world.annotators:
        assert _serve(session, annotator, order) is not None
    assert queue.release_expired(session, now=T0 + timedelta(minutes=29)) == 0
    assert queue.release_expired(session, now=T0 + timedelta(minutes=30)) == 2
    assert queue.release_expired(session, now=T0 + timedelta(minutes=31)) == 0
    claims = session.scalars(select(Item.claims).where(Item.order_id == order.id)).all()
    assert claims == [0, 0]


def test_an_answer_to_a_lapsed_lease_not_yet_released_is_taken(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=1, redundancy=1)
    served = _serve(session, world.annotators[0], order)
    assert served is not None
    late = T0 + timedelta(hours=2)
    delivery = queue.submit(
        session,
        world.annotators[0],
        assignment_id=served.assignment_id,
        value=POSITIVE,
        seconds=5.0,
        now=late,
    )
    assert not delivery.replayed
    assert queue.release_expired(session, now=late) == 0
    assert session.scalar(select(Item.claims).where(Item.order_id == order.id)) == 1


def test_a_skipped_item_goes_to_others_but_never_back_to_the_skipper(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    one, two = world.annotators
    skipped = _serve(session, one, order)
    assert skipped is not None
    queue.skip(session, one, assignment_id=skipped.assignment_id)
    skipped_item = _item_of(session, skipped).id
    assert skipped_item not in {item.id for item in _label_all(session, one, order)}
    assert skipped_item in {item.id for item in _label_all(session, two, order)}
    with pytest.raises(AssignmentClosed):
        queue.submit(session, one, assignment_id=skipped.assignment_id, value=POSITIVE, seconds=1)


def test_a_submitted_item_cannot_be_skipped(session: Session, world: LabellingWorld) -> None:
    order = _order(session, world, items=2, redundancy=1)
    served = _serve(session, world.annotators[0], order)
    assert served is not None
    queue.submit(
        session, world.annotators[0], assignment_id=served.assignment_id, value=POSITIVE, seconds=1
    )
    with pytest.raises(AssignmentClosed):
        queue.skip(session, world.annotators[0], assignment_id=served.assignment_id)


def test_a_submission_from_someone_else_is_refused(session: Session, world: LabellingWorld) -> None:
    order = _order(session, world, items=2, redundancy=2)
    one, two = world.annotators
    served = _serve(session, one, order)
    assert served is not None
    with pytest.raises(AssignmentNotFound):
        queue.submit(session, two, assignment_id=served.assignment_id, value=POSITIVE, seconds=1)
    with pytest.raises(LabellingForbidden):
        queue.submit(
            session, world.pi, assignment_id=served.assignment_id, value=POSITIVE, seconds=1
        )
    with pytest.raises(AssignmentNotFound):
        queue.skip(session, two, assignment_id=served.assignment_id)
    assert session.get_one(Assignment, served.assignment_id).status == "open"
    assert session.scalar(select(Annotation.id).where(Annotation.order_id == order.id)) is None


def test_only_assigned_annotators_are_served(session: Session, world: LabellingWorld) -> None:
    order = world.placed(session, items=2, redundancy=1)
    with pytest.raises(OrderNotFound):
        _serve(session, world.annotators[0], order)
    with pytest.raises(LabellingForbidden):
        _serve(session, world.pi, order)
    assert queue.next_item(session, world.annotators[0], now=T0) is None


def test_a_disputed_order_stops_serving(session: Session, world: LabellingWorld) -> None:
    order = _order(session, world, items=3, redundancy=1)
    held = _serve(session, world.annotators[1], order)
    assert len(_label_all(session, world.annotators[0], order)[:1]) == 1
    orders.dispute_order(session, order_id=order.id, actor=world.pi, reason="labels look random")
    assert _serve(session, world.annotators[0], order) is None
    # What was already served is still taken, frozen like any delivery to a disputed order.
    assert held is not None
    delivery = queue.submit(
        session, world.annotators[1], assignment_id=held.assignment_id, value=POSITIVE, seconds=1
    )
    assert delivery.frozen_micro > 0 and delivery.captured_micro == 0


def test_the_time_spent_is_capped_by_the_time_since_the_item_was_served(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    served = _serve(session, world.annotators[0], order)
    assert served is not None
    queue.submit(
        session,
        world.annotators[0],
        assignment_id=served.assignment_id,
        value=POSITIVE,
        seconds=600.0,
        now=T0 + timedelta(seconds=7),
    )
    annotation = session.scalars(select(Annotation).where(Annotation.order_id == order.id)).one()
    assert annotation.seconds == 7.0
    assert annotation.annotator_ref == f"user:{world.annotators[0].user_id}"
    assert annotation.delivery_key == f"assignment:{served.assignment_id}"


def test_a_negative_time_is_refused_and_the_item_stays_open(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    served = _serve(session, world.annotators[0], order)
    assert served is not None
    with pytest.raises(InvalidInput):
        queue.submit(
            session,
            world.annotators[0],
            assignment_id=served.assignment_id,
            value=POSITIVE,
            seconds=-1.0,
        )
    assert session.get_one(Assignment, served.assignment_id).status == "open"


def test_submitting_twice_replays_the_first_delivery(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=2, redundancy=1)
    served = _serve(session, world.annotators[0], order)
    assert served is not None
    first = queue.submit(
        session, world.annotators[0], assignment_id=served.assignment_id, value=POSITIVE, seconds=1
    )
    again = queue.submit(
        session, world.annotators[0], assignment_id=served.assignment_id, value=POSITIVE, seconds=1
    )
    assert again.replayed and again.delivery_id == first.delivery_id
    assert get_order(session, world.pi, order_id=order.id).annotations == 1


def test_gold_items_are_mixed_in_unannounced_not_served_first(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=20, gold=5, redundancy=1)
    served = _label_all(session, world.annotators[0], order)
    gold_turns = [turn for turn, item in enumerate(served) if item.is_gold]
    assert len(gold_turns) == 5
    assert gold_turns != [0, 1, 2, 3, 4]
    assert max(gold_turns) >= 10  # spread through the queue, not bunched at its start
    assert not {"is_gold", "gold", "gold_value", "external_id"} & set(queue.ServedItem.model_fields)


def test_annotators_start_their_queues_at_different_items(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=20, redundancy=2)
    firsts = {
        _item_of(session, served).id
        for annotator in world.annotators
        if (served := _serve(session, annotator, order)) is not None
    }
    assert len(firsts) == 2


def test_the_queue_page_counts_what_is_left_and_what_was_done(
    session: Session, world: LabellingWorld
) -> None:
    order = _order(session, world, items=3, redundancy=1)
    two = world.annotators[1]
    _label_all(session, world.annotators[0], order)
    [summary] = queue.my_queues(session, world.annotators[0])
    assert (summary.order_id, summary.remaining, summary.done) == (order.id, 0, 3)
    [other] = queue.my_queues(session, two)
    assert (other.remaining, other.done, other.status) == (0, 0, "delivered")
