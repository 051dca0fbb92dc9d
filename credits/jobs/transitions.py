"""The one way a job changes state: the row, and an event on its timeline."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from credits.jobs.executors.base import NodeSlice
from credits.jobs.models import Job, JobEvent, JobState

# Which state may follow which; anything else is a bug in the caller.
ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.STARTING, JobState.CANCELLED}),
    JobState.STARTING: frozenset(
        {
            JobState.RUNNING,
            JobState.QUEUED,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.TIMED_OUT,
            JobState.CANCELLED,
        }
    ),
    JobState.RUNNING: frozenset(
        {
            # A moved job: its old run stopped, its next attempt starts on the target.
            JobState.STARTING,
            JobState.QUEUED,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.TIMED_OUT,
            JobState.CANCELLED,
        }
    ),
}


def record_queued(session: Session, job: Job, *, actor: str, at: datetime) -> None:
    """The first event of a new job."""
    session.add(
        JobEvent(
            job_id=job.id,
            from_state=None,
            to_state=JobState.QUEUED.value,
            at=at,
            actor=actor,
            reason="credits held",
        )
    )


def move(
    session: Session,
    job: Job,
    to: JobState,
    *,
    actor: str,
    at: datetime,
    reason: str | None = None,
) -> None:
    """Sets the job's state and appends the event to its timeline."""
    current = JobState(job.state)
    if to not in ALLOWED.get(current, frozenset()):
        raise RuntimeError(f"job {job.id}: {current.value} -> {to.value} is not a transition")
    job.state = to.value
    _event(session, job, current, to, actor=actor, at=at, reason=reason)


def note(session: Session, job: Job, *, actor: str, at: datetime, reason: str) -> None:
    """An event on the job's timeline that changes nothing of its state (a move decided)."""
    state = JobState(job.state)
    _event(session, job, state, state, actor=actor, at=at, reason=reason)


def _event(
    session: Session,
    job: Job,
    before: JobState,
    after: JobState,
    *,
    actor: str,
    at: datetime,
    reason: str | None,
) -> None:
    session.add(
        JobEvent(
            job_id=job.id,
            from_state=before.value,
            to_state=after.value,
            at=at,
            actor=actor,
            reason=reason,
        )
    )


def placement_to_json(placement: Sequence[NodeSlice]) -> str:
    return json.dumps([[part.node, part.gpus] for part in placement])


def placement_from_json(text: str | None) -> tuple[NodeSlice, ...]:
    if not text:
        return ()
    return tuple(NodeSlice(node=str(node), gpus=int(gpus)) for node, gpus in json.loads(text))
