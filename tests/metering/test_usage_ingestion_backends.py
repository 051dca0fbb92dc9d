"""Ingestion stores a batch with one multi-row insert on both backends: each accepted
record's verdict names the row it became, and a resent batch is judged record by
record (duplicate, or rejected when the payload changed), storing nothing twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from jobs_world import FLAVOUR, JobsWorld, build_jobs_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.identity.models import Scope
from credits.metering.ingest import ingest_batch
from credits.metering.models import UsageRecord
from credits.metering.schemas import RecordOutcome, UsageBatchIn, UsageBatchOut


@pytest.fixture
def world(any_session: Session) -> JobsWorld:
    factory = sessionmaker(
        bind=any_session.connection(),
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
    )
    return build_jobs_world(factory)


def _record(world: JobsWorld, record_id: str, quantity: int = 60) -> dict[str, Any]:
    end = world.clock() - timedelta(minutes=5)
    return {
        "source": "cluster-b.uni.edu",
        "record_id": record_id,
        "project_id": world.project_id,
        "currency": "gpu",
        "quantity": quantity,
        "unit": "gpu_second",
        "start": (end - timedelta(minutes=1)).isoformat(),
        "end": end.isoformat(),
        "resource": FLAVOUR,
    }


def _ingest(world: JobsWorld, session: Session, records: list[dict[str, Any]]) -> UsageBatchOut:
    actor = world.ops.model_copy(update={"scopes": frozenset({Scope.METER})})
    return ingest_batch(
        session,
        UsageBatchIn(records=records),
        actor=actor,
        late_window=timedelta(days=1),
        now=world.clock(),
        max_gpus=8,
    )


def test_a_resent_batch_names_the_stored_rows_and_stores_nothing_twice(
    world: JobsWorld, any_session: Session
) -> None:
    records = [_record(world, f"r{n}") for n in range(50)]
    first = _ingest(world, any_session, records)
    assert first.accepted == 50
    stored = {
        r.record_id: r.id
        for r in any_session.execute(select(UsageRecord.record_id, UsageRecord.id))
    }
    assert {r.record_id: r.id for r in first.results} == stored

    changed = [*records[:49], _record(world, "r49", quantity=61), _record(world, "r50")]
    again = _ingest(world, any_session, changed)
    outcomes = [result.outcome for result in again.results]
    assert outcomes == [RecordOutcome.DUPLICATE] * 49 + [
        RecordOutcome.REJECTED,
        RecordOutcome.ACCEPTED,
    ]
    assert [r.id for r in again.results[:49]] == [r.id for r in first.results[:49]]
    assert again.results[49].reason == "this record_id was already used with a different payload"
    assert any_session.scalar(select(func.count()).select_from(UsageRecord)) == 51


def test_a_nul_in_source_or_record_id_rejects_that_record_alone(
    world: JobsWorld, any_session: Session
) -> None:
    # Sent to PostgreSQL as text, a NUL failed the batch's look-up of stored records.
    # (The API refuses a body holding a NUL before ingestion; this is ingestion itself.)
    records = [
        _record(world, "good"),
        _record(world, "bad\x00id"),
        _record(world, "r2") | {"source": "cluster\x00b"},
    ]

    result = _ingest(world, any_session, records)

    outcomes = [r.outcome for r in result.results]
    assert outcomes == [RecordOutcome.ACCEPTED, RecordOutcome.REJECTED, RecordOutcome.REJECTED]
    assert (result.results[1].reason or "").startswith("record_id:")
    assert (result.results[2].reason or "").startswith("source:")
    assert any_session.scalar(select(func.count()).select_from(UsageRecord)) == 1


def test_a_record_repeated_in_one_batch_is_a_duplicate_naming_the_accepted_copy(
    world: JobsWorld, any_session: Session
) -> None:
    records = [_record(world, "r1"), _record(world, "r2"), _record(world, "r1")]

    result = _ingest(world, any_session, records)

    outcomes = [r.outcome for r in result.results]
    assert outcomes == [RecordOutcome.ACCEPTED, RecordOutcome.ACCEPTED, RecordOutcome.DUPLICATE]
    first, _, repeat = result.results
    assert first.id is not None and repeat.id == first.id
    assert repeat.amount_micro == first.amount_micro
    assert any_session.scalar(select(func.count()).select_from(UsageRecord)) == 2
