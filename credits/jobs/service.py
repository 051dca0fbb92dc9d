"""Submitting and cancelling jobs: the only writes a caller makes to a job.

Everything after submission (starting, running, finishing, settling) is the
scheduler's and the reconciler's work, in :mod:`credits.jobs.scheduling` and
:mod:`credits.jobs.reconciler`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.audit.service import canonical_json, record_event
from credits.db import utcnow
from credits.errors import InvalidInput
from credits.grants.errors import ProjectNotFound
from credits.grants.models import Project, ProjectStatus
from credits.identity.access import load_readable_project, require_any_role, require_scope
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.jobs.errors import (
    CheckpointGraceOverCap,
    CheckpointingUnavailable,
    ImageNotAllowed,
    JobNeverFits,
    JobStateConflict,
    ProjectCannotSubmit,
    RuntimeOverCap,
    UnknownFlavour,
)
from credits.jobs.images import parse_registry_rule, refusal
from credits.jobs.models import Job, JobState, ProjectGpuLimit
from credits.jobs.queries import job_out, load_job_for_actor
from credits.jobs.schemas import JobOut
from credits.jobs.settlement import settle_job
from credits.jobs.spec import JobSpec
from credits.jobs.transitions import move, record_queued
from credits.ledger.errors import IdempotencyKeyReused
from credits.ledger.holds import place_hold
from credits.ledger.models import Currency
from credits.ledger.queries import project_available
from credits.metering.models import RecordStatus, UsageRecord
from credits.observability.request_ids import request_id_data
from credits.pool.models import GpuFlavour
from credits.pool.schemas import RateOut
from credits.pool.service import hold_amount, rate_of_flavour

MAX_GPU_LIMIT = 100_000


def submit_job(
    session: Session,
    *,
    project_id: int,
    spec: JobSpec,
    actor: Actor,
    max_runtime_cap: int,
    pool_nodes: Mapping[str, tuple[int, int]] | None = None,
    image_registries: Collection[str] = (),
    checkpointing: bool = True,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> JobOut:
    """Holds credits for the job's worst case and queues it, in the caller's transaction.

    ``pool_nodes`` maps a flavour to (nodes, GPUs per node) as the executor
    reports them; with it, a request no node or gang of whole nodes could ever
    hold is refused. ``image_registries``: the registries (or registry/repository
    prefixes) the image must come from; none: any. Raises ProjectNotFound,
    ProjectCannotSubmit, UnknownFlavour, RuntimeOverCap, CheckpointGraceOverCap,
    CheckpointingUnavailable (``checkpointing`` False: the executor keeps no checkpoints),
    JobNeverFits, ImageNotAllowed, NoRateInForce, InsufficientCredits (402, with ``required``
    and ``available``), IdempotencyKeyReused.
    """
    now = now or utcnow()
    require_scope(actor, Scope.WRITE)
    project = _project_for_submitter(session, actor, project_id)
    # Shared with other submissions, until this one commits: an archive (which locks
    # the project for update, then cancels its jobs) waits for it and cancels this
    # job too, or goes first and this submission finds the project archived.
    session.refresh(project, with_for_update={"read": True})
    request_key, digest = _request_identity(actor, project_id, spec, idempotency_key)
    if request_key is not None:
        replayed = _replay(session, request_key, digest)
        if replayed is not None:
            return replayed
    flavour, rate, amount = _admissible(
        session,
        project,
        spec,
        max_runtime_cap=max_runtime_cap,
        pool_nodes=pool_nodes,
        image_registries=image_registries,
        checkpointing=checkpointing,
        now=now,
    )
    job = Job(
        project_id=project_id,
        name=spec.name,
        spec_json=spec.model_dump_json(),
        flavour_id=flavour.id,
        gpus=spec.gpus,
        max_runtime_seconds=spec.max_runtime_seconds,
        rate_version_id=rate.id,
        micro_credits_per_gpu_hour=rate.micro_credits_per_gpu_hour,
        # Replaced below once the id is known; unique meanwhile.
        hold_key=f"job:pending:{uuid.uuid4().hex}",
        hold_micro=amount,
        state=JobState.QUEUED.value,
        attempt=0,
        submitted_by=actor.label,
        request_key=request_key,
        request_hash=digest if request_key else None,
        submitted_at=now,
        charged_micro=0,
        overage_micro=0,
        checkpointable=spec.checkpointable,
        checkpoint_grace_seconds=spec.grace_under(flavour.max_checkpoint_grace_seconds),
        move_count=0,
    )
    session.add(job)
    session.flush()
    job.hold_key = f"job:{job.id}:hold"
    session.flush()
    place_hold(
        session,
        key=job.hold_key,
        currency=Currency.GPU,
        amount=amount,
        actor=actor,
        project_id=project_id,
        reference=f"job {job.id}",
        now=now,
    )
    record_queued(session, job, actor=actor.label, at=now)
    record_event(
        session,
        event_type="job.submitted",
        actor=actor.label,
        subject_type="job",
        subject_id=str(job.id),
        # The request or task that submitted it, to find its log lines (no personal data).
        data={
            "project_id": project_id,
            "hold_micro": amount,
            "rate_version_id": rate.id,
            **request_id_data(),
        },
        occurred_at=now,
    )
    return job_out(session, job, {flavour.id: flavour.name})


@dataclass(frozen=True)
class SubmissionQuote:
    """What submitting the spec now would hold, and what the project has available."""

    hold_micro: int
    micro_per_gpu_hour: int
    available_micro: int

    @property
    def enough(self) -> bool:
        return self.available_micro >= self.hold_micro

    @property
    def shortfall(self) -> str | None:
        """Why the hold would be refused, in the words of the refusal; None when enough."""
        if self.enough:
            return None
        return fmt.credits_refusal(self.hold_micro, self.available_micro, Currency.GPU)


def quote_submission(
    session: Session,
    *,
    project_id: int,
    spec: JobSpec,
    actor: Actor,
    max_runtime_cap: int,
    pool_nodes: Mapping[str, tuple[int, int]] | None = None,
    image_registries: Collection[str] = (),
    checkpointing: bool = True,
    now: datetime | None = None,
) -> SubmissionQuote:
    """Every check :func:`submit_job` makes before it holds, raising what it raises,
    and the hold it would place; changes nothing. The money check is the quote's
    ``enough``: the hold itself is what refuses a submission without enough credits.
    The job form's preview calls it, so a preview that passes is a submit that passes."""
    now = now or utcnow()
    require_scope(actor, Scope.WRITE)
    project = _project_for_submitter(session, actor, project_id)
    _, rate, amount = _admissible(
        session,
        project,
        spec,
        max_runtime_cap=max_runtime_cap,
        pool_nodes=pool_nodes,
        image_registries=image_registries,
        checkpointing=checkpointing,
        now=now,
    )
    available = project_available(session, project_id=project_id, currency=Currency.GPU, now=now)
    return SubmissionQuote(amount, rate.micro_credits_per_gpu_hour, available)


def _admissible(
    session: Session,
    project: Project,
    spec: JobSpec,
    *,
    max_runtime_cap: int,
    pool_nodes: Mapping[str, tuple[int, int]] | None,
    image_registries: Collection[str],
    checkpointing: bool,
    now: datetime,
) -> tuple[GpuFlavour, RateOut, int]:
    """The checks of a submission that need the database or the pool, in order; the
    flavour, the rate in force and the hold amount when they all pass."""
    if project.status != ProjectStatus.ACTIVE.value:
        raise ProjectCannotSubmit(
            f"project {project.id} is {fmt.status(project.status)} and cannot submit jobs",
            project_status=project.status,
        )
    flavour = _flavour_for(session, spec)
    _check_runtime(spec, max_runtime_cap)
    _check_grace(spec, flavour)
    _check_checkpointing(spec, checkpointing)
    _check_fits(spec, flavour, pool_nodes)
    _check_image(spec, image_registries)
    rate = rate_of_flavour(session, flavour, at=now)
    amount = hold_amount(
        gpus=spec.gpus,
        max_runtime_seconds=spec.max_runtime_seconds,
        micro_credits_per_gpu_hour=rate.micro_credits_per_gpu_hour,
    )
    return flavour, rate, amount


def _project_for_submitter(session: Session, actor: Actor, project_id: int) -> Project:
    project = load_readable_project(session, actor, project_id)
    if project is None:
        raise ProjectNotFound(f"no project has the id {project_id}")
    return project


def _request_identity(
    actor: Actor, project_id: int, spec: JobSpec, key: str | None
) -> tuple[str | None, str]:
    document = {"actor": actor.label, "project_id": project_id, "spec": spec.model_dump()}
    digest = hashlib.sha256(canonical_json(document).encode()).hexdigest()
    if key is None:
        return None, digest
    return f"{actor.label}:{key}", digest


def _replay(session: Session, request_key: str, digest: str) -> JobOut | None:
    job = session.scalar(select(Job).where(Job.request_key == request_key))
    if job is None:
        return None
    if job.request_hash != digest:
        raise IdempotencyKeyReused("this Idempotency-Key was already used for a different job")
    return job_out(session, job).model_copy(update={"replayed": True})


def _flavour_for(session: Session, spec: JobSpec) -> GpuFlavour:
    # FOR SHARE: a rate change locks the flavour, so the rate read next is the
    # one in force for the whole of this transaction.
    flavour = session.scalar(
        select(GpuFlavour).where(GpuFlavour.name == spec.flavour).with_for_update(read=True)
    )
    if flavour is None:
        raise UnknownFlavour(
            f"no GPU flavour is named {spec.flavour!r}", field="flavour", flavour=spec.flavour
        )
    return flavour


def _check_runtime(spec: JobSpec, cap: int) -> None:
    if spec.max_runtime_seconds > cap:
        raise RuntimeOverCap(
            f"a max runtime of {fmt.duration(spec.max_runtime_seconds)} is over the"
            f" platform's cap of {fmt.duration(cap)}",
            field="max_runtime_seconds",
            cap=cap,
        )


def _check_grace(spec: JobSpec, flavour: GpuFlavour) -> None:
    cap = flavour.max_checkpoint_grace_seconds
    asked = spec.checkpoint_grace_seconds
    if asked is not None and asked > cap:
        raise CheckpointGraceOverCap(
            f"a checkpoint grace of {fmt.duration(asked)} is over flavour {flavour.name!r}'s"
            f" cap of {fmt.duration(cap)}",
            field="checkpoint_grace_seconds",
            cap=cap,
        )


def _check_checkpointing(spec: JobSpec, checkpointing: bool) -> None:
    if spec.checkpointable and not checkpointing:
        raise CheckpointingUnavailable(
            "this installation has nowhere to keep checkpoints, so jobs cannot be"
            " checkpointable here; submit it with checkpointable: false",
            field="checkpointable",
        )


def _check_image(spec: JobSpec, registries: Collection[str]) -> None:
    rules = [parse_registry_rule(entry) for entry in registries]
    reason = refusal(spec.image, rules)
    if reason is not None:
        raise ImageNotAllowed(reason, field="image", registries=[str(rule) for rule in rules])


def _check_fits(
    spec: JobSpec, flavour: GpuFlavour, pool_nodes: Mapping[str, tuple[int, int]] | None
) -> None:
    nodes, per_node = (None, flavour.gpus_per_node)
    if pool_nodes is not None:
        nodes, per_node = pool_nodes.get(flavour.name, (0, flavour.gpus_per_node))
        if nodes == 0 or per_node < 1:
            raise JobNeverFits(f"the pool has no node of flavour {flavour.name!r}", field="flavour")
    if spec.gpus <= per_node:
        return
    if spec.gpus % per_node:
        raise JobNeverFits(
            f"{spec.gpus} GPUs do not fit one {flavour.name} node ({per_node} GPUs); a larger"
            f" job must take whole nodes, a multiple of {per_node} GPUs",
            field="gpus",
            gpus_per_node=per_node,
        )
    if nodes is not None and spec.gpus > nodes * per_node:
        raise JobNeverFits(
            f"{spec.gpus} GPUs are more than the {nodes * per_node} the pool has of"
            f" flavour {flavour.name!r}",
            field="gpus",
            pool_gpus=nodes * per_node,
        )


def cancel_job(
    session: Session, *, job_id: int, actor: Actor, now: datetime | None = None
) -> JobOut:
    """Cancels a queued job at once (its hold voided); asks the executor to stop an
    active one, which the reconciler then charges for what ran. A second cancel of
    an active job changes nothing. Raises JobNotFound, JobStateConflict (finished)."""
    now = now or utcnow()
    require_scope(actor, Scope.WRITE)
    job = load_job_for_actor(session, actor, job_id, lock=True)
    state = JobState(job.state)
    if state.is_final:
        raise JobStateConflict(f"job {job_id} is already {state.value}", state=state.value)
    _cancel(session, job, by=actor.label, why=f"cancelled by {actor.label}", now=now)
    return job_out(session, job)


def cancel_project_jobs(
    session: Session, *, project_id: int, by: str, why: str, now: datetime
) -> list[int]:
    """Cancels every unfinished job of a project, as :func:`cancel_job` cancels one:
    queued ones at once, their holds voided; starting and running ones stopped by
    the executor and charged for what ran. For a caller that has already decided
    the project's work ends (archiving it), which says ``why`` in each job's
    reason; returns the jobs' ids."""
    jobs = session.scalars(
        select(Job)
        .where(
            Job.project_id == project_id,
            Job.state.in_([state.value for state in JobState if not state.is_final]),
        )
        .order_by(Job.id)
        .with_for_update()
    ).all()
    ids = [job.id for job in jobs]
    # Every pending usage record of these jobs before any hold is voided: settlement
    # locks records, then accounts; voiding one job's hold and then waiting for the
    # next job's records (which a settlement batch holds) would be the other way.
    session.execute(
        select(UsageRecord.id)
        .where(UsageRecord.job_id.in_(ids), UsageRecord.status == RecordStatus.PENDING.value)
        .order_by(UsageRecord.id)
        .with_for_update()
    ).all()
    for job in jobs:
        _cancel(session, job, by=by, why=why, now=now)
    return ids


def _cancel(session: Session, job: Job, *, by: str, why: str, now: datetime) -> None:
    state = JobState(job.state)
    if state is JobState.QUEUED:
        move(session, job, JobState.CANCELLED, actor=by, at=now, reason="cancelled")
        job.finished_at = now
        job.reason = f"{why} while queued"
        settle_job(session, job, now=now)
    elif job.cancel_requested_at is None:
        job.cancel_requested_at = now
        job.cancel_requested_by = by
    record_event(
        session,
        event_type="job.cancel_requested",
        actor=by,
        subject_type="job",
        subject_id=str(job.id),
        data={"state": state.value, **request_id_data()},
        occurred_at=now,
    )


def set_project_gpu_limit(
    session: Session, *, project_id: int, max_concurrent_gpus: int | None, actor: Actor
) -> int | None:
    """Ops cap the GPUs a project's jobs may hold at once; None removes the cap."""
    require_any_role(actor, Role.OPS)
    if max_concurrent_gpus is not None and not 0 <= max_concurrent_gpus <= MAX_GPU_LIMIT:
        raise InvalidInput(
            f"a GPU cap is between 0 and {MAX_GPU_LIMIT}", field="max_concurrent_gpus"
        )
    if session.get(Project, project_id) is None:
        raise ProjectNotFound(f"no project has the id {project_id}")
    row = session.get(ProjectGpuLimit, project_id)
    if max_concurrent_gpus is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(
            ProjectGpuLimit(
                project_id=project_id, max_concurrent_gpus=max_concurrent_gpus, set_by=actor.label
            )
        )
    else:
        row.max_concurrent_gpus = max_concurrent_gpus
        row.set_by = actor.label
        row.set_at = utcnow()
    record_event(
        session,
        event_type="job.project_gpu_limit_set",
        actor=actor.label,
        subject_type="project",
        subject_id=str(project_id),
        data={"max_concurrent_gpus": max_concurrent_gpus},
    )
    return max_concurrent_gpus
