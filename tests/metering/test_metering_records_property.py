"""Usage records cut from run spans: exact totals, however often a run is metered."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credits.jobs.models import Job, JobRun
from credits.metering.intervals import MICROSECONDS, amount_for, to_us
from credits.metering.job_records import Allowance, run_records

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# Longer than any span below: these properties are about cutting and pricing, not the cap.
LONG_US = 4 * 86_400 * MICROSECONDS
UNCAPPED = Allowance(runtime_us=LONG_US)


def _job(rate: int) -> Job:
    return Job(
        id=7,
        project_id=3,
        micro_credits_per_gpu_hour=rate,
        rate_version_id=1,
        max_runtime_seconds=LONG_US // MICROSECONDS,
    )


def _run(gpus: int, start: datetime, finish: datetime | None) -> JobRun:
    return JobRun(job_id=7, attempt=1, gpus=gpus, started_at=start, finished_at=finish)


spans = st.tuples(
    st.integers(min_value=1, max_value=64),  # GPUs
    st.integers(min_value=0, max_value=10**9),  # start offset, microseconds
    st.integers(min_value=0, max_value=3 * 86_400 * MICROSECONDS),  # length
    st.sampled_from([1, 7, 60, 300, 3600]),  # interval, seconds
    st.integers(min_value=1, max_value=50_000_000),  # rate, micro-credits per GPU-hour
)


@settings(max_examples=150, deadline=None)
@given(spans)
def test_a_finished_runs_records_add_up_to_its_exact_price_rounded_up_once(
    span: tuple[int, int, int, int, int],
) -> None:
    gpus, offset, length, interval_s, rate = span
    start = T0 + timedelta(microseconds=offset)
    finish = start + timedelta(microseconds=length)
    records = run_records(
        _run(gpus, start, finish), _job(rate), to_us(finish), interval_s * MICROSECONDS, UNCAPPED
    )
    assert sum(r["amount_micro"] for r in records) == amount_for(gpus * length, rate)
    assert sum(r["quantity_micro"] for r in records) == gpus * length
    for record in records:
        exact = record["quantity_micro"] * rate / (3600 * MICROSECONDS)
        assert exact - 1 < record["amount_micro"] < exact + 1 + 1e-9
        assert record["ended_at"] - record["started_at"] <= timedelta(seconds=interval_s)
    # Pieces are contiguous and cover the run exactly.
    if records:
        assert records[0]["started_at"] == start
        assert records[-1]["ended_at"] == finish
        for earlier, later in itertools.pairwise(records):
            assert earlier["ended_at"] == later["started_at"]
    assert len({r["record_id"] for r in records}) == len(records)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(spans, st.lists(st.integers(min_value=0, max_value=3 * 86_400 * MICROSECONDS), max_size=6))
def test_metering_while_running_then_at_the_end_writes_the_same_records_as_once(
    span: tuple[int, int, int, int, int], looks: list[int]
) -> None:
    gpus, offset, length, interval_s, rate = span
    start = T0 + timedelta(microseconds=offset)
    finish = start + timedelta(microseconds=length)
    interval_us = interval_s * MICROSECONDS
    once = run_records(_run(gpus, start, finish), _job(rate), to_us(finish), interval_us, UNCAPPED)

    run = _run(gpus, start, None)
    job = _job(rate)
    stepwise = []
    for look in sorted(min(look, length) for look in looks):
        seen = start + timedelta(microseconds=look)
        run.seen_running_at = seen
        stepwise += run_records(run, job, to_us(seen), interval_us, UNCAPPED)
    run.finished_at = finish
    stepwise += run_records(run, job, to_us(finish), interval_us, UNCAPPED)
    assert stepwise == once
    # A second metering of a finished run writes nothing.
    assert run_records(run, job, to_us(finish) + 10 * interval_us, interval_us, UNCAPPED) == []


@settings(max_examples=100, deadline=None)
@given(spans)
def test_a_running_job_is_metered_only_up_to_what_the_executor_confirmed(
    span: tuple[int, int, int, int, int],
) -> None:
    gpus, offset, length, interval_s, rate = span
    start = T0 + timedelta(microseconds=offset)
    seen = start + timedelta(microseconds=length)
    run = _run(gpus, start, None)
    run.seen_running_at = seen
    later = to_us(seen) + 5 * interval_s * MICROSECONDS
    records = run_records(run, _job(rate), later, interval_s * MICROSECONDS, UNCAPPED)
    assert all(record["ended_at"] <= seen for record in records)
    assert all(to_us(record["ended_at"]) % (interval_s * MICROSECONDS) == 0 for record in records)
