"""The platform's own meter: usage records for job runs, from observed spans.

A record covers one piece of one run inside one interval; the quantity is
GPU-microseconds and the amount is priced at the rate version the job was
admitted at, so that a run's records add up to exactly
ceil(GPUs x observed time x rate). A running job is metered interval by interval as each one ends,
so its project's balance moves while it runs; a finished run is metered to
its end, the last partial interval included. How far a run is metered is
kept on the run (``metered_until``), and every record is unique by
(job, attempt, interval start), so metering twice writes nothing twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from credits.jobs.models import Job, JobRun, JobState
from credits.ledger.models import Currency
from credits.metering.intervals import (
    MICROSECONDS,
    amount_for,
    complete_until,
    from_us,
    pieces,
    to_us,
)
from credits.metering.models import JOBS_SOURCE, RecordStatus, UsageRecord, UsageUnit

ACTIVE = (JobState.STARTING.value, JobState.RUNNING.value)


def meter_runs(
    session: Session, runs: Iterable[tuple[JobRun, Job]], *, now: datetime, interval_s: int
) -> int:
    """Writes the records each run is due; returns how many were written."""
    rows: list[dict[str, Any]] = []
    interval_us = interval_s * MICROSECONDS
    now_us = to_us(now)
    for run, job in runs:
        rows.extend(run_records(run, job, now_us, interval_us))
    if rows:
        session.execute(insert(UsageRecord), rows)
    return len(rows)


def meter_active_jobs(session: Session, *, now: datetime, interval_s: int) -> int:
    """Records every interval that has ended for each running job's current run.

    A light first read finds the runs with a completed interval not yet metered;
    only those are loaded and locked, so a sweep over thousands of running jobs
    that are all up to date costs one query.
    """
    interval_us = interval_s * MICROSECONDS
    now_us = to_us(now)
    candidates = session.execute(
        select(JobRun.id, JobRun.started_at, JobRun.metered_until, JobRun.seen_running_at)
        .join(Job, Job.id == JobRun.job_id)
        .where(
            Job.state.in_(ACTIVE),
            JobRun.attempt == Job.attempt,
            JobRun.started_at.is_not(None),
            JobRun.finished_at.is_(None),
        )
    ).all()
    due = [
        run_id
        for run_id, started, metered, seen in candidates
        if seen is not None
        and started is not None
        and complete_until(min(now_us, to_us(seen)), interval_us) > to_us(metered or started)
    ]
    if not due:
        return 0
    runs = session.execute(
        select(JobRun, Job)
        .join(Job, Job.id == JobRun.job_id)
        .where(JobRun.id.in_(due))
        .with_for_update(of=JobRun)
    ).all()
    return meter_runs(session, [(run, job) for run, job in runs], now=now, interval_s=interval_s)


def meter_job(session: Session, job: Job, *, now: datetime, interval_s: int) -> int:
    """Meters every run of one job as far as it has gone (a finished job: to the end)."""
    runs = session.scalars(
        select(JobRun).where(JobRun.job_id == job.id).order_by(JobRun.attempt).with_for_update()
    ).all()
    return meter_runs(session, [(run, job) for run in runs], now=now, interval_s=interval_s)


def run_records(run: JobRun, job: Job, now_us: int, interval_us: int) -> list[dict[str, Any]]:
    if run.started_at is None:
        return []
    start_us = to_us(run.metered_until or run.started_at)
    if run.finished_at is not None:
        end_us = to_us(run.finished_at)
    else:
        # Only what the executor has confirmed: a finish noticed late is never overcharged.
        seen_us = to_us(run.seen_running_at) if run.seen_running_at else start_us
        end_us = max(start_us, complete_until(min(now_us, seen_us), interval_us))
    if end_us <= start_us:
        return []
    rows = [
        _record(job, run, interval_start, piece_start, piece_end)
        for interval_start, piece_start, piece_end in pieces(start_us, end_us, interval_us)
    ]
    run.metered_until = from_us(end_us)
    return rows


def _record(
    job: Job, run: JobRun, interval_start: int, piece_start: int, piece_end: int
) -> dict[str, Any]:
    gpu_us = run.gpus * (piece_end - piece_start)
    record_id = f"job:{job.id}:{run.attempt}:{interval_start}"
    # Priced as the difference of the run's rounded-up running totals, so the
    # records of a run add up to exactly ceil(GPUs x time x rate), and each is
    # within one micro-credit of its own exact price.
    run_start = to_us(run.started_at) if run.started_at else piece_start
    rate = job.micro_credits_per_gpu_hour
    amount = amount_for(run.gpus * (piece_end - run_start), rate) - amount_for(
        run.gpus * (piece_start - run_start), rate
    )
    return {
        "source": JOBS_SOURCE,
        "record_id": record_id,
        "job_id": job.id,
        "project_id": job.project_id,
        "currency": Currency.GPU.value,
        "unit": UsageUnit.GPU_SECOND.value,
        "quantity_micro": gpu_us,
        "amount_micro": amount,
        "rate_version_id": job.rate_version_id,
        "resource": None,
        "started_at": from_us(piece_start),
        "ended_at": from_us(piece_end),
        "evidence_json": None,
        "request_hash": hashlib.sha256(f"{record_id}:{gpu_us}".encode()).hexdigest(),
        "status": RecordStatus.PENDING.value,
        "captured_micro": 0,
        "overage_micro": 0,
    }
