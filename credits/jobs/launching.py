"""What the reconciler asks an executor to launch: one request per ``starting`` job.

A later attempt (after a preemption or a move) may run only for what is left
of the job's max runtime: its earlier runs were charged theirs, and an
attempt that ran the whole max runtime again would run uncharged.
"""

from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.jobs.executors.base import LaunchRequest
from credits.jobs.models import Job, JobRun, JobState
from credits.jobs.spec import stored_spec
from credits.jobs.transitions import placement_from_json
from credits.metering.intervals import MICROSECONDS
from credits.metering.job_records import allowance
from credits.pool.models import GpuFlavour


def launch_requests(session: Session, only: set[int] | None = None) -> list[LaunchRequest]:
    """Every starting job not being cancelled (only those in ``only``, when given)."""
    query = (
        select(Job, GpuFlavour)
        .join(GpuFlavour, GpuFlavour.id == Job.flavour_id)
        .where(Job.state == JobState.STARTING.value, Job.cancel_requested_at.is_(None))
        .order_by(Job.id)
    )
    if only is not None:
        query = query.where(Job.id.in_(sorted(only)))
    rows = session.execute(query).all()
    again = [job.id for job, _ in rows if job.attempt > 1]
    earlier: dict[int, list[JobRun]] = defaultdict(list)
    if again:
        for run in session.scalars(select(JobRun).where(JobRun.job_id.in_(again))):
            earlier[run.job_id].append(run)
    return [
        launch_request(job, flavour, runtime_left_s(job, earlier.get(job.id, [])))
        for job, flavour in rows
    ]


def runtime_left_s(job: Job, runs: list[JobRun]) -> int:
    """Seconds of the job's max runtime its earlier attempts did not use (at least 1)."""
    return max(1, math.ceil(runtime_left_us(job, runs) / MICROSECONDS))


def runtime_left_us(job: Job, runs: list[JobRun]) -> int:
    """Microseconds of the job's max runtime its earlier attempts did not use (0 or
    less: none). An attempt that never started used none."""
    before = [run for run in runs if run.attempt < job.attempt]
    return allowance(job.max_runtime_seconds, before).runtime_us


def launch_request(
    job: Job, flavour: GpuFlavour, max_runtime_s: int | None = None
) -> LaunchRequest:
    spec = stored_spec(job.spec_json)
    return LaunchRequest(
        job_id=job.id,
        attempt=job.attempt,
        project_id=job.project_id,
        name=spec.name,
        image=spec.image,
        command=tuple(spec.command),
        args=tuple(spec.args),
        env=dict(spec.env),
        working_dir=spec.working_dir,
        flavour=flavour.name,
        node_label_value=flavour.node_label_value,
        gpus=job.gpus,
        cpu_millicores=spec.cpu_millicores,
        memory_mb=spec.memory_mb,
        max_runtime_seconds=job.max_runtime_seconds if max_runtime_s is None else max_runtime_s,
        placement=placement_from_json(job.placement_json),
        labels=dict(spec.labels),
        checkpointable=job.checkpointable,
        checkpoint_grace_seconds=job.checkpoint_grace_seconds,
    )
