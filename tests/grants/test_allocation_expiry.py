"""The expiry sweep and ops adjustments of allocations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from grants_helpers import SYSTEM, events
from proposal_helpers import CREDIT, World, awarded, full_state, refused, world
from sqlalchemy.orm import Session

from credits.grants.allocations import adjust_allocation, expire_allocations
from credits.grants.errors import AllocationForbidden, AllocationNotFound
from credits.grants.models import AllocationStatus
from credits.grants.proposal_queries import load_allocation, render_allocation
from credits.ledger import service as ledger
from credits.ledger.errors import InsufficientCredits
from credits.ledger.verify import verify_ledger
from credits.metering.models import UsageRecord
from credits.metering.settlement import settle_one


@pytest.fixture
def w(any_session: Session) -> World:
    return world(any_session)


def test_the_sweep_expires_ended_allocations_once(any_session: Session, w: World) -> None:
    (allocation,) = awarded(any_session, w).allocations
    assert (
        expire_allocations(any_session, actor=SYSTEM, now=allocation.expires_at - timedelta(1))
        == []
    )
    after_end = allocation.expires_at + timedelta(seconds=1)
    (swept,) = expire_allocations(any_session, actor=w.ops, now=after_end)
    assert swept.id == allocation.id
    assert swept.status is AllocationStatus.EXPIRED
    assert swept.available_micro == 0
    assert load_allocation(any_session, allocation.id).status == "expired"
    assert ("allocation.expired", w.ops.label) in events(any_session, "allocation", allocation.id)
    before = full_state(any_session)
    assert expire_allocations(any_session, actor=w.ops, now=after_end) == []
    assert full_state(any_session) == before
    assert verify_ledger(any_session).ok


def test_the_sweep_leaves_open_holds_and_takes_them_later(any_session: Session, w: World) -> None:
    (allocation,) = awarded(any_session, w).allocations
    hold = ledger.place_hold(
        any_session,
        key="job-1",
        project_id=w.project_id,
        currency="gpu",
        amount=30 * CREDIT,
        actor=SYSTEM,
    )
    after_end = allocation.expires_at + timedelta(seconds=1)
    (swept,) = expire_allocations(any_session, actor=SYSTEM, now=after_end)
    assert swept.available_micro == 0
    ledger.void_hold(
        any_session, key="job-1-void", hold_key=hold.hold_key, actor=SYSTEM, now=after_end
    )
    (again,) = expire_allocations(any_session, actor=SYSTEM, now=after_end)
    assert again.id == allocation.id
    assert expire_allocations(any_session, actor=SYSTEM, now=after_end) == []
    assert verify_ledger(any_session).ok


def test_outside_usage_begun_before_the_end_is_paid_by_the_allocation_before_it_expires(
    any_session: Session, w: World
) -> None:
    (allocation,) = awarded(any_session, w).allocations
    ran_until = allocation.expires_at - timedelta(minutes=10)
    record = UsageRecord(
        source="cluster-b.uni.example",
        record_id="r1",
        project_id=w.project_id,
        currency="gpu",
        unit="gpu_second",
        quantity_micro=3600 * 1_000_000,
        amount_micro=2 * CREDIT,
        started_at=ran_until - timedelta(hours=1),
        ended_at=ran_until,
        request_hash="0" * 64,
    )
    any_session.add(record)
    any_session.flush()
    after_end = allocation.expires_at + timedelta(hours=2)  # reported and settled late

    assert expire_allocations(any_session, actor=SYSTEM, now=after_end) == []
    settled = settle_one(any_session, record.id, now=after_end)
    (swept,) = expire_allocations(any_session, actor=SYSTEM, now=after_end)

    assert (settled.captured_micro, settled.overage_micro) == (2 * CREDIT, 0)
    assert swept.id == allocation.id and swept.available_micro == 0
    assert verify_ledger(any_session).ok


def test_only_ops_or_the_platform_sweep(any_session: Session, w: World) -> None:
    refused(any_session, AllocationForbidden, expire_allocations, actor=w.fay)


def test_ops_adjust_an_allocation(any_session: Session, w: World) -> None:
    (allocation,) = awarded(any_session, w).allocations
    out = adjust_allocation(
        any_session,
        allocation_id=allocation.id,
        amount=-5 * CREDIT,
        actor=w.ops,
        reason="double grant, ticket 9",
        key="adj-1",
    )
    assert out.available_micro == 95 * CREDIT
    refused(
        any_session,
        AllocationForbidden,
        adjust_allocation,
        allocation_id=allocation.id,
        amount=1,
        actor=w.fay,
        reason="r",
        key="adj-2",
    )
    refused(
        any_session,
        InsufficientCredits,
        adjust_allocation,
        allocation_id=allocation.id,
        amount=-500 * CREDIT,
        actor=w.ops,
        reason="r",
        key="adj-3",
    )
    refused(
        any_session,
        AllocationNotFound,
        adjust_allocation,
        allocation_id=999_999,
        amount=1,
        actor=w.ops,
        reason="r",
        key="adj-4",
    )
    assert (
        render_allocation(any_session, load_allocation(any_session, allocation.id)).available_micro
        == 95 * CREDIT
    )
    assert verify_ledger(any_session).ok
