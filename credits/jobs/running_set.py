"""The running jobs, kept between passes with each node's state, so a pass copies it.

Every pass of :func:`credits.jobs.scheduler.plan` starts from the nodes as the
running jobs leave them: free GPUs per node, each node's expected end, the
slices that cannot move, the ends the reservation is computed from. Rebuilding
that from every running job costs most of a pass when the queue is short and
the pool is busy. A :class:`RunningSet` kept between passes (add a job when it
starts, discard it when it ends or is moved) keeps those pools up to date a
job at a time, and a pass plans on a copy of them.

The copy is only used when it is exactly what a rebuild would give; otherwise
the pass rebuilds, with the same plan either way:

- a job past its expected end counts as ending now in a rebuild, so a set
  holding one (its end before the pass's time) rebuilds;
- a moving job's old slices end "now" too, so a set holding one rebuilds;
- an over-committed node is clamped to zero free GPUs in a rebuild, which a
  job at a time cannot undo, so a set with one rebuilds;
- other nodes or another policy's placement switches: rebuilt for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from credits.jobs.placement import Pool, build_pools

if TYPE_CHECKING:
    from credits.jobs.scheduler import Node, Policy, RunningJob

# The expected end of a node no job holds (as in :mod:`credits.jobs.placement`).
_NO_END = float("-inf")


@dataclass(frozen=True, slots=True)
class _PoolsKey:
    """What the kept pools were built for."""

    nodes: tuple[Node, ...]
    end_fit: bool
    pack: bool
    max_moves: int


class RunningSet:
    """Running jobs by id, with per-flavour pools kept as those jobs leave the nodes.

    Iterates like the list of jobs :func:`credits.jobs.scheduler.plan` takes,
    in the order they were added.
    """

    __slots__ = (
        "_ends",
        "_held",
        "_jobs",
        "_key",
        "_occupants",
        "_pool_of",
        "_pools",
        "_projects",
        "_used",
        "_vacating",
    )

    def __init__(self, jobs: Iterable[RunningJob] = ()) -> None:
        self._jobs: dict[int, RunningJob] = {}
        self._held: Counter[int] = Counter()
        self._projects: Counter[int] = Counter()
        # GPUs held on each node (over-commitment is seen here) and each node's jobs' ends.
        self._used: Counter[str] = Counter()
        self._ends: dict[str, Counter[float]] = {}
        self._occupants: dict[str, dict[int, int]] = {}
        self._vacating = 0
        self._key: _PoolsKey | None = None
        self._pools: dict[str, Pool] | None = None
        self._pool_of: dict[str, Pool] = {}
        for job in jobs:
            self.add(job)

    def add(self, job: RunningJob) -> None:
        """A job that started (or restarted after a move); one with the same id is replaced."""
        self.discard(job.job_id)
        self._jobs[job.job_id] = job
        self._held[job.project_id] += job.gpus
        self._projects[job.project_id] += 1
        self._vacating += bool(job.vacating)
        for part in job.placement:
            self._used[part.node] += part.gpus
            self._ends.setdefault(part.node, Counter())[_end(job)] += 1
            self._occupants.setdefault(part.node, {})[job.job_id] = part.gpus
        self._follow(job, taken=True)

    def discard(self, job_id: int) -> None:
        """A job that ended or is being moved; nothing if it is not here."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        self._held[job.project_id] -= job.gpus
        self._projects[job.project_id] -= 1
        if not self._projects[job.project_id]:
            del self._projects[job.project_id], self._held[job.project_id]
        self._vacating -= bool(job.vacating)
        for part in job.placement:
            self._used[part.node] -= part.gpus
            del self._occupants[part.node][job.job_id]
            ends = self._ends[part.node]
            ends[_end(job)] -= 1
            if not ends[_end(job)]:
                del ends[_end(job)]
        self._follow(job, taken=False)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[RunningJob]:
        return iter(self._jobs.values())

    def __contains__(self, job: object) -> bool:
        """A Collection of running jobs, as ``plan`` takes: this very job is here."""
        # Duck-typed: RunningJob lives in the scheduler, which imports this module.
        job_id = getattr(job, "job_id", None)
        return isinstance(job_id, int) and self._jobs.get(job_id) == job

    def held(self) -> dict[int, int]:
        """GPUs held per project with a running job, as ``hold_running`` returns them."""
        return dict(self._held)

    def projects(self) -> set[int]:
        return set(self._projects)

    def occupants(self, node: str) -> list[tuple[RunningJob, int]]:
        """The jobs running on ``node`` (by ``placement``) with the GPUs each holds there."""
        on_node = self._occupants.get(node, {})
        return [(self._jobs[job_id], gpus) for job_id, gpus in on_node.items()]

    def used(self, node: str) -> int:
        """GPUs the jobs' placements hold on ``node``."""
        return self._used.get(node, 0)

    def pools_for(
        self, nodes: Sequence[Node], now: float, policy: Policy
    ) -> dict[str, Pool] | None:
        """Copies of the pools for a pass at ``now``, or None where the pass must rebuild them."""
        if self._vacating:
            return None
        key = _PoolsKey(
            tuple(nodes), policy.end_time_fit, policy.pack_by_movability, policy.max_moves
        )
        pools = self._pools
        if pools is None or self._key != key:
            if any(self._used.get(node.name, 0) > node.gpus for node in nodes):
                return None
            pools = self._build(key)
        if any(pool.ends and min(pool.ends)[0] < now for pool in pools.values()):
            return None  # a job past its end counts as ending now: only a rebuild says so
        return {flavour: pool.clone() for flavour, pool in pools.items()}

    def _build(self, key: _PoolsKey) -> dict[str, Pool]:
        """The pools with every job taken; nothing is vacating or over-committed."""
        pools = build_pools(key.nodes, end_fit=key.end_fit, pack=key.pack)
        for pool in pools.values():
            pool.index(dict(pool.capacity), {}, set(), {})
        self._key = key
        self._pools = pools
        self._pool_of = {name: pool for pool in pools.values() for name in pool.names}
        for job in self._jobs.values():
            self._follow(job, taken=True)
        return pools

    def _follow(self, job: RunningJob, *, taken: bool) -> None:
        """Keeps the pools in step with a job that came or went, or drops them."""
        if self._pools is None or self._key is None:
            return
        if job.vacating:
            self._pools = None  # its old slices end "now": rebuilt once the move is over
            return
        movable = _movable(job, self._key.max_moves)
        end = _end(job)
        for part in job.placement:
            pool = self._pool_of.get(part.node)
            if pool is None:
                continue  # a node not in the pass: the job counts only for its project
            if not taken:
                node_end = max(self._ends.get(part.node) or (_NO_END,))
                pool.release(part.node, part.gpus, end, movable=movable, node_end=node_end)
            elif pool.free[part.node] >= part.gpus:
                pool.take(part.node, part.gpus, end, movable=movable)
            else:
                self._pools = None  # over-committed: a rebuild clamps it, a job at a time cannot
                return


def _end(job: RunningJob) -> float:
    return job.started_at + job.max_runtime_s


def _movable(job: RunningJob, max_moves: int) -> bool:
    """Whether a move could ever take it off its node (see :func:`hold_running`)."""
    return job.checkpointable and len(job.placement) == 1 and job.moves < max_moves
