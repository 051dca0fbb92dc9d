"""Deliveries racing on one labelling order on PostgreSQL: each is charged once, the
captures add up to exactly the quote, and a replay racing its original counts once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from conftest import create_migrated_postgres_database, drop_postgres_database
from labelling_world import build_world
from sqlalchemy import Engine, func, select

from credits.db import make_engine, make_session_factory
from credits.labelling import deliveries
from credits.labelling.label_schema import AnnotationValue
from credits.labelling.models import Annotation, Item
from credits.labelling.queries import get_order
from credits.ledger.queries import get_hold
from credits.ledger.verify import verify_ledger

pytestmark = pytest.mark.postgres

WORKERS = 8


@pytest.fixture
def committed_postgres() -> Iterator[Engine]:
    url, admin_url = create_migrated_postgres_database()
    engine = make_engine(url, pool_size=WORKERS + 2)
    yield engine
    engine.dispose()
    drop_postgres_database(url, admin_url)


def test_concurrent_deliveries_to_one_order_capture_exactly_the_quote(
    committed_postgres: Engine,
) -> None:
    factory = make_session_factory(committed_postgres)
    with factory() as session, session.begin():
        world = build_world(session)
        vendor = world.add_vendor(session, "Racing", price=333_333, fee_basis_points=175)
        order = world.placed(session, items=6, redundancy=2, vendor_id=vendor.id)
        item_ids = list(session.scalars(select(Item.id).where(Item.order_id == order.id)))
    # Every (item, annotator) slot, each sent twice under the same key: once by its
    # own worker and once by the next one, so originals and replays race.
    slots = [(item_id, annotator) for item_id in item_ids for annotator in (1, 2)]
    barrier = threading.Barrier(WORKERS)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        mine = [
            slot
            for index, slot in enumerate(slots)
            if index % WORKERS in (number, (number + 1) % WORKERS)
        ]
        try:
            barrier.wait()
            for item_id, annotator in mine:
                with factory() as session, session.begin():
                    deliveries.record_delivery(
                        session,
                        order_id=order.id,
                        item_id=item_id,
                        annotator_ref=f"user:{annotator}",
                        value=AnnotationValue(labels=["negative"]),
                        seconds=None,
                        delivery_key=f"{item_id}:{annotator}",
                        actor=world.ops,
                    )
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    with factory() as session:
        done = get_order(session, world.pi, order_id=order.id)
        assert done.status == "delivered"
        assert session.scalar(select(func.count(Annotation.id))) == len(slots)
        assert done.captured_micro == done.quoted_micro
        assert get_hold(session, hold_key=order.hold_key or "").captured == done.quoted_micro
        assert session.scalar(select(func.sum(Annotation.captured_micro))) == done.quoted_micro
        assert verify_ledger(session).ok
