"""What a Kubernetes Job and its pods mean as an :class:`Observation`: pure functions.

The cache keeps a small record of each object (not the object itself: ten
thousand Jobs and their pods must fit in a few tens of MiB), and a job's
observation is computed from the current records whenever it is asked for.

A job is charged for as long as its pods hold GPUs: a cancelled attempt stays
RUNNING (or PENDING) while any of its pods is still there and not finished, and
its CANCELLED observation ends when the last started pod stopped (its
container's ``finishedAt``, else when it was deleted or seen gone), the cancel
time only when no pod ever started. A platform stop (the Job annotated
``credits.dev/stopped-at`` and ``stop-reason``) ends the same way, PREEMPTED
with its reason; an attempt with a pod outside its placement (the Job's
``credits.dev/placement``) the same way, FAILED as a failed placement. An
attempt Kubernetes ended (its deadline, a failed pod, a pod lost or preempted)
also stays RUNNING while any pod holds GPUs (the Job controller deletes the
others with their grace), then ends at the later of its own end and its last
started pod's stop as the API showed it. A finished Job whose pods' starts were
never seen (deleted while the watch re-listed) started at ``status.startTime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from credits.jobs.executors.base import Observation, Phase
from credits.jobs.manifests import (
    ATTEMPT_LABEL,
    CANCELLED_ANNOTATION,
    FAILED_PLACEMENT_ANNOTATION,
    INDEX_ANNOTATION,
    JOB_ID_LABEL,
    JOB_NAME_LABEL,
    PLACEMENT_ANNOTATION,
    STOP_REASON_ANNOTATION,
    STOPPED_ANNOTATION,
    placement_nodes,
)

PREEMPTION_REASONS = frozenset({"NodeLost", "DisruptionTarget", "Evicted", "Preempting"})
DELETED_OUTSIDE = "deleted outside the platform"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """What observe needs of one batch/v1 Job."""

    name: str
    uid: str
    resource_version: str
    job_id: int
    attempt: int
    pods_wanted: int
    active_deadline_s: int | None
    finalizers: tuple[str, ...]
    deleting_at: datetime | None
    cancelled_at: datetime | None
    start_time: datetime | None
    # ("Complete" | "Failed", reason, message, when) of the finishing condition.
    finished: tuple[str, str, str, datetime | None] | None
    # (when, why) of a platform stop: the attempt ends PREEMPTED, not CANCELLED.
    stopped: tuple[datetime, str] | None = None
    # The scheduler's nodes (empty for a Job made before placements were recorded).
    placement: frozenset[str] = frozenset()
    # Why the executor stopped it for running outside its placement.
    failed_placement: str | None = None


@dataclass(frozen=True, slots=True)
class PodRecord:
    """What observe needs of one pod of a Job."""

    name: str
    resource_version: str
    job_name: str
    index: int | None
    phase: str
    reason: str | None
    node: str | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    preempted: bool
    # metadata.deletionTimestamp: the pod is being deleted (by then, at the latest, gone).
    deleted_at: datetime | None = None
    # When the cache saw it gone (set by the cache, never by the API).
    gone_at: datetime | None = None

    @property
    def holds_gpus(self) -> bool:
        """Still there and not finished: its containers may be running."""
        return self.gone_at is None and self.phase not in ("Succeeded", "Failed")

    @property
    def stopped_at(self) -> datetime | None:
        """When it stopped: its container's end, else its deletion, else when seen gone."""
        if self.finished_at is not None:
            return self.finished_at
        ends = [at for at in (self.deleted_at, self.gone_at) if at is not None]
        return min(ends) if ends else None

    @property
    def stop_shown(self) -> datetime | None:
        """When it stopped as the API showed it (its container's end, else its deletion),
        never only when the cache saw it gone (which may be long after)."""
        if self.finished_at is None and self.deleted_at is None:
            return None
        return self.stopped_at


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def job_record(obj: dict[str, Any]) -> JobRecord | None:
    """The record of a Job made by the platform; None for one without its labels."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        job_id, attempt = int(labels[JOB_ID_LABEL]), int(labels[ATTEMPT_LABEL])
    except (KeyError, ValueError):
        return None
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    stopped_at = parse_time(annotations.get(STOPPED_ANNOTATION))
    stop_reason = annotations.get(STOP_REASON_ANNOTATION) or "stopped by the platform"
    finished = None
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            when = parse_time(cond.get("lastTransitionTime"))
            if cond["type"] == "Complete":
                when = parse_time(status.get("completionTime")) or when
            finished = (cond["type"], cond.get("reason") or "", cond.get("message") or "", when)
    return JobRecord(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        resource_version=str(meta.get("resourceVersion", "")),
        job_id=job_id,
        attempt=attempt,
        pods_wanted=int(spec.get("completions") or spec.get("parallelism") or 1),
        active_deadline_s=spec.get("activeDeadlineSeconds"),
        finalizers=tuple(meta.get("finalizers") or ()),
        deleting_at=parse_time(meta.get("deletionTimestamp")),
        cancelled_at=parse_time(annotations.get(CANCELLED_ANNOTATION)),
        start_time=parse_time(status.get("startTime")),
        finished=finished,
        stopped=None if stopped_at is None else (stopped_at, stop_reason),
        placement=placement_nodes(annotations.get(PLACEMENT_ANNOTATION)),
        failed_placement=annotations.get(FAILED_PLACEMENT_ANNOTATION),
    )


def pod_record(obj: dict[str, Any]) -> PodRecord | None:
    meta = obj.get("metadata") or {}
    job_name = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
    if job_name is None:
        return None
    status = obj.get("status") or {}
    index = (meta.get("annotations") or {}).get(INDEX_ANNOTATION)
    started = finished = exit_code = None
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "running" in state:
            started = parse_time(state["running"].get("startedAt"))
        elif "terminated" in state:
            term = state["terminated"]
            started = parse_time(term.get("startedAt"))
            finished = parse_time(term.get("finishedAt"))
            exit_code = term.get("exitCode")
    disrupted = any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return PodRecord(
        name=meta.get("name", ""),
        resource_version=str(meta.get("resourceVersion", "")),
        job_name=job_name,
        index=int(index) if index is not None and str(index).isdigit() else None,
        phase=status.get("phase") or "Pending",
        reason=status.get("reason"),
        node=(obj.get("spec") or {}).get("nodeName"),
        started_at=started,
        finished_at=finished,
        exit_code=exit_code,
        preempted=disrupted or status.get("reason") in PREEMPTION_REASONS,
        deleted_at=parse_time(meta.get("deletionTimestamp")),
    )


def placement_problem(job: JobRecord, pods: list[PodRecord]) -> str | None:
    """Why the attempt's pods are not where the scheduler placed them, or None: a pod
    on a node outside the placement, or two pods of a gang holding one node."""
    if not job.placement:
        return None
    holders: dict[str, str] = {}
    for pod in sorted(pods, key=lambda pod: pod.name):
        if pod.node is None:
            continue
        if pod.node not in job.placement:
            return (
                f"failed placement: pod {pod.name} ran on node {pod.node}, outside its "
                f"placement ({', '.join(sorted(job.placement))})"
            )
        if pod.holds_gpus and len(job.placement) > 1:
            other = holders.setdefault(pod.node, pod.name)
            if other != pod.name:
                return f"failed placement: pods {other} and {pod.name} share node {pod.node}"
    return None


def observe_job(job: JobRecord, pods: list[PodRecord]) -> Observation:
    """The observation of one attempt, from its Job and every pod it had."""
    base = Observation(job.job_id, job.attempt, Phase.PENDING, started_at=_started(job, pods))
    complete = job.finished is not None and job.finished[0] == "Complete"
    ending = _platform_ending(job, pods, base, complete=complete)
    if ending is not None:
        return ending
    lost = [pod for pod in pods if pod.preempted and pod.phase == "Failed"]
    if lost and not complete:
        pod = lost[0]
        reason = f"node {pod.node} lost" if pod.reason == "NodeLost" else f"pod {pod.reason}"
        ended = _final(base, Phase.PREEMPTED, pod.finished_at or job.deleting_at, reason)
        return _after_pods_stopped(job, pods, base, ended)
    if job.finished is not None:
        ended = _finished(job, job.finished, pods, base)
        return ended if complete else _after_pods_stopped(job, pods, base, ended)
    if job.deleting_at is not None:
        return _final(base, Phase.FAILED, job.deleting_at, DELETED_OUTSIDE)
    running = {pod.index for pod in pods if pod.phase in ("Running", "Succeeded")}
    if len(running) >= job.pods_wanted and base.started_at is not None:
        return Observation(job.job_id, job.attempt, Phase.RUNNING, started_at=base.started_at)
    return Observation(job.job_id, job.attempt, Phase.PENDING)


def _platform_ending(
    job: JobRecord, pods: list[PodRecord], base: Observation, *, complete: bool
) -> Observation | None:
    """The observation of an attempt the platform cancelled, stopped or found outside
    its placement; None for any other."""
    if job.cancelled_at is not None and not complete:
        return _ending(job, pods, base, Phase.CANCELLED, "cancelled", asked_at=job.cancelled_at)
    misplaced = job.failed_placement or placement_problem(job, pods)
    if misplaced is not None:
        # Whatever became of it, it ran where the scheduler did not put it.
        return _ending(job, pods, base, Phase.FAILED, misplaced, asked_at=job.deleting_at)
    if job.stopped is not None:
        at, reason = job.stopped
        finished_at = job.finished[3] if job.finished is not None else None
        # A Job that ended before the stop ended on its own; one that ends after it
        # (a pod that saved its checkpoint and exited) ends because it was asked to.
        if finished_at is None or finished_at >= at:
            return _ending(job, pods, base, Phase.PREEMPTED, reason, asked_at=at)
    return None


def _ending(
    job: JobRecord,
    pods: list[PodRecord],
    base: Observation,
    phase: Phase,
    reason: str,
    *,
    asked_at: datetime | None,
) -> Observation:
    """An attempt the platform is stopping (cancel, stop, failed placement): still
    running while any pod holds GPUs, final once none does, at the last started
    pod's stop (when it was asked, if no pod ever started)."""
    if any(pod.holds_gpus for pod in pods):
        return _still_held(job, base)
    stops = [pod.stopped_at for pod in pods if pod.started_at is not None]
    at = max((stop for stop in stops if stop is not None), default=None)
    return _final(base, phase, at or asked_at, reason)


def _after_pods_stopped(
    job: JobRecord, pods: list[PodRecord], base: Observation, ended: Observation
) -> Observation:
    """An attempt Kubernetes ended (a pod lost or preempted, its deadline, a failed
    pod): the Job controller deletes the other pods with their grace, so, as for the
    platform's own endings, it is still running while any pod holds GPUs; then
    ``ended``, at the last started pod's stop when that is later. Only a stop the
    API showed counts (its container's end, else its deletion deadline), never when
    it was seen gone: a pod deleted at once would be charged until the next look."""
    if any(pod.holds_gpus for pod in pods):
        return _still_held(job, base)
    stops = [pod.stop_shown for pod in pods if pod.started_at is not None]
    last = max((stop for stop in stops if stop is not None), default=None)
    if last is None or (ended.finished_at is not None and last <= ended.finished_at):
        return ended
    return _final(base, ended.phase, last, ended.reason, exit_code=ended.exit_code)


def _still_held(job: JobRecord, base: Observation) -> Observation:
    """Not over while a pod holds GPUs: running, or pending if it never started."""
    running = Phase.RUNNING if base.started_at is not None else Phase.PENDING
    return Observation(job.job_id, job.attempt, running, started_at=base.started_at)


def _started(job: JobRecord, pods: list[PodRecord]) -> datetime | None:
    """When every pod had started: a gang runs only once its last pod does.

    A finished Job whose pods' starts were never seen (deleted while the watch
    re-listed, or before a restarted platform looked) started at its
    ``status.startTime``: when it completed, or when none of its pods is known.
    """
    started = _pods_started(job, pods)
    finished = job.finished
    if started is None and finished is not None and (finished[0] == "Complete" or not pods):
        return job.start_time
    return started


def _pods_started(job: JobRecord, pods: list[PodRecord]) -> datetime | None:
    starts: dict[int | None, datetime] = {}
    for pod in pods:
        if pod.started_at is not None:
            starts[pod.index] = max(pod.started_at, starts.get(pod.index, pod.started_at))
    if not starts or len(starts) < job.pods_wanted:
        return None
    return max(starts.values())


def _finished(
    job: JobRecord,
    finished: tuple[str, str, str, datetime | None],
    pods: list[PodRecord],
    base: Observation,
) -> Observation:
    kind, reason, message, when = finished
    last_exit = max((p.finished_at for p in pods if p.finished_at), default=None)
    if kind == "Complete":
        return _final(base, Phase.SUCCEEDED, when or last_exit, None, exit_code=0)
    if reason == "DeadlineExceeded":
        text = f"max runtime {job.active_deadline_s} s reached"
        return _final(base, Phase.TIMED_OUT, when or last_exit, text)
    failed = sorted(
        (p for p in pods if p.phase == "Failed" and p.exit_code not in (None, 0)),
        key=lambda p: (p.finished_at is None, p.finished_at, p.index or 0),
    )
    if failed:
        pod = failed[0]
        text = f"exit code {pod.exit_code}"
        if pod.reason:
            text += f" ({pod.reason})"
        return _final(base, Phase.FAILED, pod.finished_at or when, text, exit_code=pod.exit_code)
    return _final(base, Phase.FAILED, when or last_exit, f"{reason}: {message}".strip(": "))


def _final(
    base: Observation,
    phase: Phase,
    at: datetime | None,
    reason: str | None,
    *,
    exit_code: int | None = None,
) -> Observation:
    if at is not None and base.started_at is not None:
        at = max(at, base.started_at)
    return Observation(
        base.job_id,
        base.attempt,
        phase,
        started_at=base.started_at,
        finished_at=at,
        exit_code=exit_code,
        reason=reason,
    )
