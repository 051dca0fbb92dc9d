"""Real commits on PostgreSQL: annotators racing for items never over-serve one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from datasets_world import person
from labelling_world import build_world
from racing import committing_factory, together
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.labelling import orders, queue
from credits.labelling.label_schema import AnnotationValue
from credits.labelling.models import Annotation, Assignment, Item
from credits.ledger.verify import verify_ledger

pytestmark = pytest.mark.postgres

THREADS = 8


@pytest.fixture
def factory() -> Iterator[sessionmaker[Session]]:
    """A throwaway migrated database: these tests commit for real."""
    yield from committing_factory(THREADS)


def _together(work: Callable[[int], Any]) -> list[Any]:
    return together(THREADS, work, timeout_s=120)


def _order_with_annotators(
    factory: sessionmaker[Session], *, items: int, redundancy: int
) -> tuple[int, list[Actor]]:
    with session_scope(factory) as session:
        world = build_world(session)
        annotators = [
            person(session, f"racer{n}@uni.example", Role.ANNOTATOR) for n in range(THREADS)
        ]
        order = world.placed(session, items=items, redundancy=redundancy)
        orders.assign_annotators(
            session,
            order_id=order.id,
            user_ids=[a.user_id for a in annotators if a.user_id is not None],
            actor=world.pi,
        )
    return order.id, annotators


def test_racing_annotators_never_take_more_places_than_an_item_has(
    factory: sessionmaker[Session],
) -> None:
    order_id, annotators = _order_with_annotators(factory, items=3, redundancy=2)

    def claim(index: int) -> int | None:
        with session_scope(factory) as session:
            served = queue.next_item(session, annotators[index], order_id=order_id)
            return None if served is None else served.assignment_id

    results = _together(claim)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r is not None for r in results) == 6
    with session_scope(factory) as session:
        claims = session.scalars(select(Item.claims).where(Item.order_id == order_id)).all()
        assert claims == [2, 2, 2]


def test_racing_annotators_label_every_item_exactly_redundancy_times(
    factory: sessionmaker[Session],
) -> None:
    order_id, annotators = _order_with_annotators(factory, items=12, redundancy=3)

    def label_until_empty(index: int) -> int:
        labelled = 0
        while True:
            with session_scope(factory) as session:
                served = queue.next_item(session, annotators[index], order_id=order_id)
                if served is None:
                    return labelled
                queue.submit(
                    session,
                    annotators[index],
                    assignment_id=served.assignment_id,
                    value=AnnotationValue(labels=["positive"]),
                    seconds=2.0,
                )
                labelled += 1

    results = _together(label_until_empty)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == 36
    with session_scope(factory) as session:
        items = session.scalars(select(Item).where(Item.order_id == order_id)).all()
        assert {(item.claims, item.annotation_count) for item in items} == {(3, 3)}
        pairs = session.execute(
            select(Annotation.item_id, Annotation.annotator_ref).where(
                Annotation.order_id == order_id
            )
        ).all()
        assert len(pairs) == 36 and max(Counter(pairs).values()) == 1
        served = session.execute(select(Assignment.item_id, Assignment.user_id)).all()
        assert max(Counter(served).values()) == 1
        assert verify_ledger(session).ok
