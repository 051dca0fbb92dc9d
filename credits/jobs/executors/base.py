"""The seam between the platform and whatever runs GPU jobs.

An executor launches, cancels, stops (with a checkpoint grace), observes and
reads the logs of jobs, and says what capacity it has. It never touches the
database: the reconciler compares what the database wants with what an
executor observes. Launch, cancel and stop are idempotent: a second launch of
the same (job, attempt) and a cancel or stop of a job that is gone are all
success, so a reconciler that crashed half way can simply run again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Phase(StrEnum):
    """Where a launched job is, as its executor sees it."""

    PENDING = "pending"  # accepted, not yet running (image pull, pod scheduling)
    RUNNING = "running"  # every process of the job has started
    SUCCEEDED = "succeeded"  # exit code 0
    FAILED = "failed"  # non-zero exit, or the executor could not run it
    TIMED_OUT = "timed_out"  # stopped at its max runtime
    CANCELLED = "cancelled"  # stopped because cancel() was called
    # Stopped by the pool (node lost, drained) or by the platform (stop(): a move);
    # may run again.
    PREEMPTED = "preempted"

    @property
    def is_final(self) -> bool:
        return self not in {Phase.PENDING, Phase.RUNNING}


@dataclass(frozen=True, slots=True)
class NodeSlice:
    """The GPUs a job holds on one node."""

    node: str
    gpus: int


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """Everything an executor needs to start one attempt of one job."""

    job_id: int
    attempt: int
    project_id: int
    name: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: Mapping[str, str]
    working_dir: str | None
    flavour: str
    # Kubernetes node label value that selects this flavour's nodes.
    node_label_value: str
    gpus: int
    cpu_millicores: int
    memory_mb: int
    max_runtime_seconds: int
    placement: tuple[NodeSlice, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    # The platform may stop it (SIGTERM, this grace, SIGKILL) and restart it elsewhere;
    # the executor then tells it where to save and resume (see ``checkpoint_env``).
    checkpointable: bool = False
    checkpoint_grace_seconds: int = 0


CHECKPOINT_DIR_ENV = "CREDITS_CHECKPOINT_DIR"
RESTART_COUNT_ENV = "CREDITS_RESTART_COUNT"


def checkpoint_env(request: LaunchRequest, directory: str) -> dict[str, str]:
    """What a checkpointable job is told: where it saves and resumes (``directory``, a
    per-job place the executor keeps across attempts) and how many times it was
    started before this attempt. Nothing for a job that is not checkpointable."""
    if not request.checkpointable:
        return {}
    return {CHECKPOINT_DIR_ENV: directory, RESTART_COUNT_ENV: str(max(0, request.attempt - 1))}


@dataclass(frozen=True, slots=True)
class Observation:
    """What an executor knows of a job's latest attempt."""

    job_id: int
    attempt: int
    phase: Phase
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    # Human-readable: "exit code 3", "max runtime 600 s reached", "node gpu-7 lost".
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """One node's GPUs that jobs of the platform may use."""

    name: str
    flavour: str
    gpus: int
    schedulable: bool = True


@dataclass(frozen=True, slots=True)
class Capacity:
    nodes: tuple[NodeCapacity, ...]

    def gpus_by_flavour(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for node in self.nodes:
            if node.schedulable:
                totals[node.flavour] = totals.get(node.flavour, 0) + node.gpus
        return totals


class ExecutorError(RuntimeError):
    """Something went wrong talking to the executor; ``transient`` says retry later."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@runtime_checkable
class Executor(Protocol):
    """What every executor provides; see the module docstring for the contract."""

    name: str

    def launch(self, request: LaunchRequest) -> None:
        """Starts the attempt; a repeat of a launched (job, attempt) does nothing."""

    def cancel(self, job_id: int) -> None:
        """Stops every attempt of the job; a job unknown or already gone is success."""

    def stop(self, job_id: int, grace_seconds: int, reason: str) -> None:
        """A stop the platform decided (a move): SIGTERM to the job's processes, up to
        ``grace_seconds`` for it to save a checkpoint, then SIGKILL. The attempt's
        observation ends PREEMPTED with ``reason`` (never CANCELLED or FAILED) once
        its processes are gone; until then it holds its GPUs and stays RUNNING. A job
        unknown or already finished is success; a repeat changes nothing."""

    def observe(self, job_ids: Collection[int]) -> dict[int, Observation]:
        """The latest attempt of each job it knows; an unknown job is left out."""

    def release(self, job_id: int) -> None:
        """The job is finished and settled: nothing of it need be kept for metering
        (Kubernetes: its metering finalizer is removed). Idempotent."""

    def logs(self, job_id: int, *, tail_lines: int = 200) -> str:
        """The last lines of the job's output (stdout and stderr), '' when none.

        Bounded whatever the log's size: it reads at most about 1 MiB and cuts a
        line over 16 KiB, keeping its end behind a ``[… N bytes cut …]`` marker
        (see ``credits/jobs/logtail.py``)."""

    def log_stream(self, job_id: int) -> Iterator[bytes]:
        """The job's whole output (its latest attempt's) in chunks, oldest first; an
        empty iterator when there is none. Never read into memory whole: each chunk
        is read as it is asked for. Finding and opening the log may happen in this
        call, so that a failure to reach it raises ``ExecutorError`` before anything
        is sent; closing the iterator early releases what it holds."""

    def capacity(self) -> Capacity:
        """The nodes and GPUs jobs may use, whatever is running on them."""

    def isolation(self, job_id: int) -> str | None:
        """How the job's processes are confined and limited, one line for its page;
        None when there is nothing to say (not launched, or nothing really runs)."""
