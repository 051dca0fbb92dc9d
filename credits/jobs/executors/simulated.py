"""An executor that runs nothing: a pool of pretend nodes on an injectable clock.

Tests, the Celery integration test and trace replays use it. A job's state is
never stepped forward by a timer; it is computed from the clock whenever it is
asked for: PENDING until launch + ``startup_s``, then RUNNING for its duration,
then final at exactly start + duration (or start + max runtime when the
duration is longer), however late ``observe`` is called.

A trace replay launches tens of thousands of jobs, so nothing here scans every
job: finishes and starts sit in heaps (stale entries are skipped when popped),
and each node keeps the set of jobs that may still hold its GPUs.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import re
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Concatenate, ParamSpec, TypeVar

from credits.jobs.executors.base import (
    Capacity,
    ExecutorError,
    LaunchRequest,
    NodeCapacity,
    Observation,
    Phase,
)
from credits.jobs.logtail import CHUNK_BYTES, tail_bytes

DURATION_LABEL = "credits.dev/simulated-duration-s"
EXIT_CODE_LABEL = "credits.dev/simulated-exit-code"
_SPEC_PART = re.compile(r"(?P<flavour>[^:\s]+):(?P<nodes>\d+)x(?P<gpus>\d+)")
_FLAVOUR = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[SimulatedExecutor, _P], _R],
) -> Callable[Concatenate[SimulatedExecutor, _P], _R]:
    """Runs the method under the executor's lock: a Celery worker thread and the
    test that drives the clock may call in at once, and the heaps must stay whole."""

    def wrapper(self: SimulatedExecutor, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    # Not @functools.wraps: mypy loses the signature through it.
    functools.update_wrapper(wrapper, method)
    return wrapper


@dataclass(frozen=True, slots=True)
class StopRequest:
    """One call of :meth:`SimulatedExecutor.stop`, kept for tests to read."""

    attempt: int
    at: datetime
    grace_seconds: int
    reason: str


@dataclass(slots=True)
class _Run:
    """One attempt of one job; its phase follows from these times and the clock."""

    request: LaunchRequest
    generation: int  # bumped on every change, so older heap entries go stale
    launched_at: datetime
    start_at: datetime
    duration_s: float
    exit_code: int
    # Set when cancel or preempt stopped it; then it is the whole story.
    stopped: Observation | None = None
    popped: bool = False
    # Set by stop(): when its grace ends and why. It is PREEMPTED then, unless it
    # ended on its own before.
    stopping: tuple[datetime, str] | None = None

    @property
    def end_at(self) -> datetime:
        limit = min(self.duration_s, float(self.request.max_runtime_seconds))
        return self.start_at + timedelta(seconds=limit)

    @property
    def stop_at(self) -> datetime | None:
        """When a stop's grace ends, if that comes before its own end."""
        if self.stopping is None or self.stopping[0] >= self.end_at:
            return None
        return self.stopping[0]

    @property
    def finish_at(self) -> datetime:
        return self.stop_at or self.end_at

    @property
    def timed_out(self) -> bool:
        return self.duration_s > self.request.max_runtime_seconds

    def observe(self, now: datetime) -> Observation:
        if self.stopped is not None:
            return self.stopped
        request = self.request
        if now < self.start_at:
            return Observation(request.job_id, request.attempt, Phase.PENDING)
        if (stop_at := self.stop_at) is not None and self.stopping is not None:
            if now < stop_at:
                return Observation(
                    request.job_id, request.attempt, Phase.RUNNING, started_at=self.start_at
                )
            return Observation(
                request.job_id,
                request.attempt,
                Phase.PREEMPTED,
                started_at=self.start_at,
                finished_at=stop_at,
                reason=self.stopping[1],
            )
        if now < self.end_at:
            return Observation(
                request.job_id, request.attempt, Phase.RUNNING, started_at=self.start_at
            )
        return self._final()

    def _final(self) -> Observation:
        request = self.request
        base = Observation(
            request.job_id,
            request.attempt,
            Phase.SUCCEEDED,
            started_at=self.start_at,
            finished_at=self.end_at,
        )
        if self.timed_out:
            reason = f"max runtime {request.max_runtime_seconds} s reached"
            return replace(base, phase=Phase.TIMED_OUT, reason=reason)
        if self.exit_code != 0:
            reason = f"exit code {self.exit_code}"
            return replace(base, phase=Phase.FAILED, exit_code=self.exit_code, reason=reason)
        return replace(base, exit_code=0)


class SimulatedExecutor:
    """Pretend nodes whose jobs run for a set duration on the given clock."""

    name = "simulated"

    def __init__(
        self,
        nodes: Sequence[NodeCapacity],
        *,
        clock: Callable[[], datetime],
        default_duration_s: float = 60.0,
        startup_s: float = 0.0,
    ) -> None:
        names = [node.name for node in nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique; got {names}")
        if default_duration_s < 0 or startup_s < 0:
            raise ValueError("default_duration_s and startup_s must not be negative")
        self._nodes = {node.name: node for node in nodes}
        self._clock = clock
        self._default_duration_s = default_duration_s
        self._startup = timedelta(seconds=startup_s)
        self._durations: dict[int, float] = {}
        self._output: dict[int, list[str]] = {}
        self._runs: dict[int, _Run] = {}
        self._stops: dict[int, list[StopRequest]] = {}
        # Jobs that may still hold GPUs on each node; finished ones are dropped lazily.
        self._on_node: dict[str, set[int]] = {name: set() for name in self._nodes}
        self._generations = itertools.count(1)
        # (time, generation, job_id): finishes only, and starts plus finishes.
        self._finishes: list[tuple[datetime, int, int]] = []
        self._events: list[tuple[datetime, int, int]] = []
        self._lock = threading.RLock()

    # The Executor protocol.

    @_locked
    def launch(self, request: LaunchRequest) -> None:
        """Starts the attempt; a repeat or an older attempt than the current does nothing.

        Raises ExecutorError (not transient) when the placement does not fit the
        pool or a simulation label is malformed.
        """
        current = self._runs.get(request.job_id)
        if current is not None and current.request.attempt >= request.attempt:
            return
        now = self._clock()
        self._check_placement(request, now)
        duration_s, exit_code = self._outcome(request)
        if current is not None:
            self._release(current)
        run = _Run(
            request=request,
            generation=next(self._generations),
            launched_at=now,
            start_at=now + self._startup,
            duration_s=duration_s,
            exit_code=exit_code,
        )
        self._runs[request.job_id] = run
        for part in request.placement:
            self._on_node[part.node].add(request.job_id)
        self._schedule(run)

    @_locked
    def release(self, job_id: int) -> None:
        """A settled job needs nothing more. Nothing is held back for metering in memory."""
        del job_id

    def cancel(self, job_id: int) -> None:
        """Stops the job at the clock's now; unknown or finished jobs are left alone."""
        self._stop(job_id, Phase.CANCELLED, "cancelled")

    @_locked
    def stop(self, job_id: int, grace_seconds: int, reason: str) -> None:
        """A running job keeps its GPUs for the grace (it is saving its checkpoint), then
        is PREEMPTED with ``reason`` at the grace's end, unless it finishes first; a
        pending one is PREEMPTED at once. Unknown, finished or already stopping jobs are
        left alone."""
        run = self._runs.get(job_id)
        now = self._clock()
        if run is None or run.stopping is not None or run.stopped is not None:
            return
        seen = run.observe(now)
        if seen.phase.is_final:
            return
        grace = max(0, grace_seconds)
        self._stops.setdefault(job_id, []).append(
            StopRequest(run.request.attempt, now, grace, reason)
        )
        if seen.phase is Phase.PENDING:
            self._stop(job_id, Phase.PREEMPTED, reason)
            return
        run.stopping = (now + timedelta(seconds=grace), reason)
        run.generation = next(self._generations)
        self._schedule(run)

    @_locked
    def stop_requests(self, job_id: int) -> list[StopRequest]:
        """Every stop asked of the job, oldest first."""
        return list(self._stops.get(job_id, ()))

    @_locked
    def observe(self, job_ids: Collection[int]) -> dict[int, Observation]:
        now = self._clock()
        return {
            job_id: self._runs[job_id].observe(now) for job_id in job_ids if job_id in self._runs
        }

    def logs(self, job_id: int, *, tail_lines: int = 200) -> str:
        """The last lines of the pretend log, with the caps of ``logtail``."""
        return tail_bytes(self._log_bytes(job_id), tail_lines)

    def log_stream(self, job_id: int) -> Iterator[bytes]:
        """The whole pretend log, as it is now, in chunks."""
        data = self._log_bytes(job_id)
        return (data[at : at + CHUNK_BYTES] for at in range(0, len(data), CHUNK_BYTES))

    def capacity(self) -> Capacity:
        """Every node's total GPUs; the scheduler subtracts what runs on them."""
        return Capacity(nodes=tuple(self._nodes.values()))

    def isolation(self, job_id: int) -> str | None:
        """Nothing runs in a simulated pool, so nothing is confined."""
        del job_id
        return None

    # Simulation controls.

    @_locked
    def set_duration(self, job_id: int, seconds: float) -> None:
        """How long the job runs once started, for its current attempt (unless it
        has already finished) and every later one."""
        if seconds < 0:
            raise ValueError(f"a duration must not be negative; got {seconds}")
        self._durations[job_id] = seconds
        run = self._runs.get(job_id)
        if run is None or run.observe(self._clock()).phase.is_final:
            return
        run.duration_s = seconds
        run.generation = next(self._generations)
        self._schedule(run)

    @_locked
    def add_output(self, job_id: int, *lines: str) -> None:
        """Lines the job's pretend command prints: its log shows them after the start
        line once an attempt has started."""
        self._output.setdefault(job_id, []).extend(lines)

    @_locked
    def preempt(self, job_id: int, reason: str = "node lost") -> None:
        """Stops a pending or running job as the pool would; it may run again."""
        self._stop(job_id, Phase.PREEMPTED, reason)

    @_locked
    def fail_node(self, node: str) -> None:
        """Preempts every job on the node and takes it out of the schedulable pool."""
        self._require_node(node)
        for job_id in sorted(self._on_node[node]):
            self.preempt(job_id, f"node {node} lost")
        self._nodes[node] = replace(self._nodes[node], schedulable=False)

    @_locked
    def restore_node(self, node: str) -> None:
        """Makes a failed node schedulable again."""
        self._require_node(node)
        self._nodes[node] = replace(self._nodes[node], schedulable=True)

    @_locked
    def pop_finished(self) -> list[Observation]:
        """Final observations not popped before, in the order they finished."""
        now = self._clock()
        finished: list[Observation] = []
        while self._finishes and self._finishes[0][0] <= now:
            _, generation, job_id = heapq.heappop(self._finishes)
            run = self._runs[job_id]
            if run.generation != generation or run.popped:
                continue
            run.popped = True
            finished.append(run.observe(now))
        return finished

    @_locked
    def next_event_at(self) -> datetime | None:
        """The earliest start or finish still ahead of the clock, None when none is."""
        now = self._clock()
        while self._events:
            at, generation, job_id = self._events[0]
            if at > now and self._runs[job_id].generation == generation:
                return at
            heapq.heappop(self._events)
        return None

    # Internals.

    @_locked
    def _log_bytes(self, job_id: int) -> bytes:
        run = self._runs.get(job_id)
        if run is None:
            return b""
        lines = _log_lines(run, run.observe(self._clock()), self._output.get(job_id, []))
        return ("\n".join(lines) + "\n").encode()

    def _outcome(self, request: LaunchRequest) -> tuple[float, int]:
        """The duration and exit code the attempt will have."""
        labels = request.labels
        try:
            duration_s = self._durations.get(request.job_id)
            if duration_s is None:
                duration_s = float(labels.get(DURATION_LABEL, self._default_duration_s))
            exit_code = int(labels.get(EXIT_CODE_LABEL, "0"))
        except ValueError as error:
            raise ExecutorError(f"bad simulation label: {error}", transient=False) from error
        if not math.isfinite(duration_s) or duration_s < 0:
            raise ExecutorError(
                f"{DURATION_LABEL} must be a finite number of seconds, not negative",
                transient=False,
            )
        return duration_s, exit_code

    def _check_placement(self, request: LaunchRequest, now: datetime) -> None:
        if not request.placement:
            raise ExecutorError(f"job {request.job_id}: no placement", transient=False)
        asked: dict[str, int] = {}
        for part in request.placement:
            asked[part.node] = asked.get(part.node, 0) + part.gpus
        for name, gpus in asked.items():
            node = self._nodes.get(name)
            problem = _misfit(request, node, name)
            if problem is None and node is not None:
                free = node.gpus - self._gpus_in_use(name, now, besides=request.job_id)
                if gpus > free:
                    problem = f"node {name} has {free} free GPUs, {gpus} asked"
            if problem is not None:
                raise ExecutorError(f"job {request.job_id}: {problem}", transient=False)

    def _gpus_in_use(self, node: str, now: datetime, *, besides: int) -> int:
        """GPUs the node's active jobs hold; forgets the jobs that have finished."""
        used = 0
        for job_id in list(self._on_node[node]):
            run = self._runs[job_id]
            if run.observe(now).phase.is_final:
                self._on_node[node].discard(job_id)
            elif job_id != besides:
                used += sum(part.gpus for part in run.request.placement if part.node == node)
        return used

    def _stop(self, job_id: int, phase: Phase, reason: str) -> None:
        run = self._runs.get(job_id)
        now = self._clock()
        if run is None:
            return
        seen = run.observe(now)
        if seen.phase.is_final:
            return
        run.stopped = replace(seen, phase=phase, finished_at=now, reason=reason)
        run.generation = next(self._generations)
        self._release(run)
        heapq.heappush(self._finishes, (now, run.generation, job_id))

    def _release(self, run: _Run) -> None:
        for part in run.request.placement:
            self._on_node[part.node].discard(run.request.job_id)

    def _schedule(self, run: _Run) -> None:
        key = (run.generation, run.request.job_id)
        heapq.heappush(self._finishes, (run.finish_at, *key))
        heapq.heappush(self._events, (run.finish_at, *key))
        if run.start_at > run.launched_at:
            heapq.heappush(self._events, (run.start_at, *key))

    def _require_node(self, node: str) -> None:
        if node not in self._nodes:
            raise KeyError(f"no node {node!r}; nodes are {sorted(self._nodes)}")


def _misfit(request: LaunchRequest, node: NodeCapacity | None, name: str) -> str | None:
    """Why the node cannot take the job at all, or None when it can."""
    if node is None:
        return f"no node {name!r}"
    if not node.schedulable:
        return f"node {name} is not schedulable"
    if node.flavour != request.flavour:
        return f"node {name} is {node.flavour}, the job asks for {request.flavour}"
    return None


def _log_lines(run: _Run, seen: Observation, output: list[str]) -> list[str]:
    request = run.request
    where = ", ".join(f"{part.node} with {part.gpus} GPUs" for part in request.placement)
    lines = [f"attempt {request.attempt} of job {request.job_id} accepted"]
    if seen.started_at is not None:
        lines.append(f"started on {where}")
        lines += output
    if seen.phase is Phase.SUCCEEDED or seen.phase is Phase.FAILED:
        lines.append(f"exit {seen.exit_code}")
    elif seen.phase.is_final:
        lines.append(f"{seen.phase.value}: {seen.reason}")
    return lines


def simulated_nodes_from_spec(spec: str) -> list[NodeCapacity]:
    """Nodes from "flavour:NODESxGPUS,..." such as "a100-80gb:4x8,h100:2x8".

    Node names are ``{flavour}-node-{i}``. Raises ValueError naming the bad part.
    """
    parts = [part.strip() for part in spec.split(",")]
    if not any(parts):
        raise ValueError('the simulated pool is empty; write "flavour:NODESxGPUS", e.g. "h100:2x8"')
    nodes: list[NodeCapacity] = []
    seen: set[str] = set()
    for part in parts:
        flavour, count, gpus = _parse_spec_part(part)
        if flavour in seen:
            raise ValueError(f"flavour {flavour!r} appears twice in {spec!r}")
        seen.add(flavour)
        nodes.extend(NodeCapacity(f"{flavour}-node-{i}", flavour, gpus) for i in range(count))
    return nodes


def _parse_spec_part(part: str) -> tuple[str, int, int]:
    match = _SPEC_PART.fullmatch(part)
    if match is None:
        raise ValueError(
            f'bad simulated pool part {part!r}; write "flavour:NODESxGPUS", e.g. "h100:2x8"'
        )
    flavour = match["flavour"]
    if not _FLAVOUR.fullmatch(flavour):
        raise ValueError(
            f"bad flavour {flavour!r} in {part!r}; use 2 to 63 lowercase letters, digits and '-'"
        )
    count, gpus = int(match["nodes"]), int(match["gpus"])
    if count < 1 or gpus < 1:
        raise ValueError(f"{part!r} needs at least one node with at least one GPU")
    return flavour, count, gpus
