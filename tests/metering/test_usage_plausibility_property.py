"""Usage ingestion never accepts more GPU time than a record's window times its GPUs
(issue 12, finding 4), and refuses nothing that fits."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobs_world import FLAVOUR, JobsWorld, build_jobs_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.db import utcnow
from credits.identity.models import Scope
from credits.metering.errors import ImplausibleUsage
from credits.metering.ingest import ingest_batch
from credits.metering.intervals import MICROSECONDS
from credits.metering.models import UsageRecord, UsageUnit
from credits.metering.schemas import UsageBatchIn

MAX_GPUS = 64
US_PER_UNIT = {UsageUnit.GPU_SECOND: MICROSECONDS, UsageUnit.GPU_HOUR: 3600 * MICROSECONDS}
_ids = itertools.count()


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _stored(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


@st.composite
def records(draw: st.DrawFn) -> tuple[int, int | None, UsageUnit, int]:
    """(window µs, gpus named, unit, quantity in millionths of the unit), often near the bound."""
    window = draw(st.integers(min_value=0, max_value=2 * 3600 * MICROSECONDS))
    gpus = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=MAX_GPUS + 2)))
    unit = draw(st.sampled_from(list(US_PER_UNIT)))
    # The bound in millionths of the unit: GPU-µs / (µs per unit) x 1,000,000.
    bound = window * (gpus or 1) * MICROSECONDS // US_PER_UNIT[unit]
    quantity = draw(
        st.one_of(
            st.integers(min_value=max(bound - 3, 0), max_value=bound + 3),
            st.integers(min_value=0, max_value=2 * bound + 10),
            st.integers(min_value=0, max_value=10**15),
        )
    )
    return window, gpus, unit, quantity


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(record=records())
def test_accepted_gpu_time_never_exceeds_the_window_times_the_gpus(
    world: JobsWorld, record: tuple[int, int | None, UsageUnit, int]
) -> None:
    window, gpus, unit, quantity = record
    end = utcnow() - timedelta(minutes=5)
    raw = {
        "source": "cluster-b.uni.edu",
        "record_id": f"p{next(_ids)}",
        "project_id": world.project_id,
        "currency": "gpu",
        "quantity": Decimal(quantity) / MICROSECONDS,
        "unit": unit.value,
        "start": (end - timedelta(microseconds=window)).isoformat(),
        "end": end.isoformat(),
        "resource": FLAVOUR,
        **({} if gpus is None else {"gpus": gpus}),
    }
    actor = world.researcher.model_copy(update={"scopes": frozenset({Scope.METER})})
    gpu_us = quantity * US_PER_UNIT[unit] // MICROSECONDS
    fits = (gpus or 1) <= MAX_GPUS and gpu_us <= window * (gpus or 1)
    with world.factory() as session:
        before = _stored(session)
        try:
            out = ingest_batch(
                session,
                UsageBatchIn(records=[raw]),
                actor=actor,
                late_window=timedelta(hours=72),
                now=utcnow(),
                max_gpus=MAX_GPUS,
            )
        except ImplausibleUsage:
            assert not fits
            assert _stored(session) == before
        else:
            [result] = out.results
            assert fits, result
            assert result.outcome.value == "accepted", result.reason
            assert _stored(session) == before + 1
        session.rollback()
