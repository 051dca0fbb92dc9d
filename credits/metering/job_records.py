"""The platform's own meter: usage records for job runs, from observed spans.

A record covers one piece of one run inside one interval; the quantity is
GPU-microseconds and the amount is priced at the rate version the job was
admitted at. A running job is metered interval by interval as each one ends,
so its project's balance moves while it runs; a finished run is metered to
its end, the last partial interval included. How far a run is metered is
kept on the run (``metered_until``), and every record is unique by
(job, attempt, interval start), so metering twice writes nothing twice.

Charged time stops at the job's max runtime (``charged_until``): an executor
stops a job at its deadline only after a grace period, and the reconciler sees
the finish later still, but a job is never charged for more than its max
runtime in total, across all its runs (a preempted job's runs share it), so
its records never add up to more than its hold. The records of all of a job's
runs are priced as one running total, rounded up once:
ceil(GPUs x charged time x rate).

A run the platform stopped to move the job (``stop_requested_at``) is charged
up to the moment the stop was asked, never for the checkpoint grace after it
(nor for the restart: the next run is charged from its own start).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, true
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


@dataclass(frozen=True, slots=True)
class Allowance:
    """What one run of a job may be charged, given the job's earlier runs."""

    # What is left of the job's max runtime, in microseconds, when this run starts.
    runtime_us: int
    # GPU-microseconds the job's earlier runs were charged: this run's records
    # continue their running total, so the job's price is rounded up once.
    earlier_gpu_us: int = 0


def charged_until(started_us: int, observed_end_us: int, runtime_left_us: int) -> int:
    """Where charging a run stops: where the executor observed it end (or last saw it
    running), but never past what is left of the job's max runtime.

    Whatever phase ended the run: a job cannot legitimately run longer than its max
    runtime, and the time an executor takes to stop it there (SIGTERM then SIGKILL,
    a pod's termination grace, the reconciler's next look) is never charged.
    """
    return max(started_us, min(observed_end_us, started_us + max(0, runtime_left_us)))


def observed_end(run: JobRun, end: datetime) -> datetime:
    """``end`` (where the run was seen to end, or last seen running), but no later than
    a stop the platform asked for a move."""
    if run.stop_requested_at is not None:
        return min(end, run.stop_requested_at)
    return end


def allowance(max_runtime_seconds: int, earlier: Iterable[JobRun]) -> Allowance:
    """What is left of a job's max runtime after its ``earlier`` runs (attempts that
    ended before this one started, such as preempted ones) were charged theirs."""
    left = max_runtime_seconds * MICROSECONDS
    gpu_us = 0
    for run in sorted(earlier, key=lambda earlier_run: earlier_run.attempt):
        end = run.finished_at or run.metered_until
        if run.started_at is None or end is None:
            continue
        started_us = to_us(run.started_at)
        used = charged_until(started_us, to_us(observed_end(run, end)), left) - started_us
        left -= used
        gpu_us += run.gpus * used
    return Allowance(runtime_us=left, earlier_gpu_us=gpu_us)


def meter_runs(
    session: Session,
    runs: Iterable[tuple[JobRun, Job, Allowance]],
    *,
    now: datetime,
    interval_s: int,
) -> int:
    """Writes the records each run is due; returns how many were written."""
    rows: list[dict[str, Any]] = []
    interval_us = interval_s * MICROSECONDS
    now_us = to_us(now)
    for run, job, left in runs:
        rows.extend(run_records(run, job, now_us, interval_us, left))
    if rows:
        session.execute(insert(UsageRecord), rows)
    return len(rows)


def meter_active_jobs(
    session: Session, *, now: datetime, interval_s: int, job_ids: Collection[int] | None = None
) -> int:
    """Records every interval that has ended for each running job's current run (of
    ``job_ids`` only, when given).

    A light first read finds the runs with a completed interval not yet metered
    (and not past the job's max runtime); only those are loaded and locked, so a
    sweep over thousands of running jobs that are all up to date costs one query
    (two when some of them have run before, preempted).
    """
    interval_us = interval_s * MICROSECONDS
    now_us = to_us(now)
    candidates = session.execute(
        select(
            JobRun.id,
            JobRun.job_id,
            JobRun.attempt,
            JobRun.started_at,
            JobRun.metered_until,
            JobRun.seen_running_at,
            JobRun.stop_requested_at,
            Job.max_runtime_seconds,
        )
        .join(Job, Job.id == JobRun.job_id)
        .where(
            Job.state.in_(ACTIVE),
            Job.id.in_(sorted(job_ids)) if job_ids is not None else true(),
            JobRun.attempt == Job.attempt,
            JobRun.started_at.is_not(None),
            JobRun.finished_at.is_(None),
            JobRun.seen_running_at.is_not(None),
        )
    ).all()
    earlier = _earlier_runs(session, {row.job_id: row.attempt for row in candidates})
    due: dict[int, Allowance] = {}
    for row in candidates:
        left = allowance(row.max_runtime_seconds, earlier.get(row.job_id, ()))
        seen_us = to_us(row.seen_running_at)
        if row.stop_requested_at is not None:
            seen_us = min(seen_us, to_us(row.stop_requested_at))
        confirmed_us = complete_until(min(now_us, seen_us), interval_us)
        started_us = to_us(row.started_at)
        if charged_until(started_us, confirmed_us, left.runtime_us) > to_us(
            row.metered_until or row.started_at
        ):
            due[row.id] = left
    if not due:
        return 0
    runs = session.execute(
        select(JobRun, Job)
        .join(Job, Job.id == JobRun.job_id)
        .where(JobRun.id.in_(list(due)))
        .with_for_update(of=JobRun)
        .execution_options(populate_existing=True)
    ).all()
    return meter_runs(
        session, [(run, job, due[run.id]) for run, job in runs], now=now, interval_s=interval_s
    )


def _earlier_runs(session: Session, attempts: dict[int, int]) -> dict[int, list[JobRun]]:
    """Each job's runs before the given attempt (only jobs past their first attempt)."""
    again = [job_id for job_id, attempt in attempts.items() if attempt > 1]
    if not again:
        return {}
    earlier: dict[int, list[JobRun]] = defaultdict(list)
    for run in session.scalars(select(JobRun).where(JobRun.job_id.in_(again))):
        if run.attempt < attempts[run.job_id]:
            earlier[run.job_id].append(run)
    return earlier


def meter_job(session: Session, job: Job, *, now: datetime, interval_s: int) -> int:
    """Meters every run of one job as far as it has gone (a finished job: to the end)."""
    runs = session.scalars(
        select(JobRun).where(JobRun.job_id == job.id).order_by(JobRun.attempt).with_for_update()
    ).all()
    return meter_runs(session, with_allowances(job, runs), now=now, interval_s=interval_s)


def with_allowances(job: Job, runs: Sequence[JobRun]) -> list[tuple[JobRun, Job, Allowance]]:
    """Each run of the job (in attempt order) with what its earlier runs left it."""
    return [
        (run, job, allowance(job.max_runtime_seconds, runs[:index]))
        for index, run in enumerate(runs)
    ]


def run_records(
    run: JobRun, job: Job, now_us: int, interval_us: int, left: Allowance
) -> list[dict[str, Any]]:
    """The records due for one run: from where it was metered to where it ended (a
    running one: to the last complete interval the executor confirmed), charged no
    further than ``charged_until`` allows."""
    if run.started_at is None:
        return []
    run_start_us = to_us(run.started_at)
    start_us = to_us(run.metered_until or run.started_at)
    if run.finished_at is not None:
        observed_us = to_us(observed_end(run, run.finished_at))
    else:
        # Only what the executor has confirmed: a finish noticed late is never overcharged.
        seen_us = to_us(run.seen_running_at) if run.seen_running_at else start_us
        if run.stop_requested_at is not None:
            # Stopping for a move: the grace is not charged, but what ran up to the
            # stop is, interval by interval like any running job, the last part at the end.
            seen_us = min(seen_us, to_us(run.stop_requested_at))
        observed_us = complete_until(min(now_us, seen_us), interval_us)
    end_us = charged_until(run_start_us, observed_us, left.runtime_us)
    if end_us <= start_us:
        return []
    rows = [_record(job, run, left, piece) for piece in pieces(start_us, end_us, interval_us)]
    run.metered_until = from_us(end_us)
    return rows


def _record(job: Job, run: JobRun, left: Allowance, piece: tuple[int, int, int]) -> dict[str, Any]:
    _, piece_start, piece_end = piece
    gpu_us = run.gpus * (piece_end - piece_start)
    # Named by where the piece starts, not by its interval: a run is metered on from
    # where it was metered to, so piece starts never repeat, even when the interval
    # differs between passes (a setting changed, a cancel); interval starts can.
    record_id = f"job:{job.id}:{run.attempt}:{piece_start}"
    # Priced as the difference of the job's rounded-up running totals (its earlier
    # runs' GPU time, then this run's), so the records of all its runs add up to
    # exactly ceil(GPUs x charged time x rate), never more than its hold, and each
    # is within one micro-credit of its own exact price.
    run_start = to_us(run.started_at) if run.started_at else piece_start
    before = left.earlier_gpu_us
    rate = job.micro_credits_per_gpu_hour
    amount = amount_for(before + run.gpus * (piece_end - run_start), rate) - amount_for(
        before + run.gpus * (piece_start - run_start), rate
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
