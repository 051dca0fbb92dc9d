"""Placement for the scheduling policy: one flavour's nodes during a pass.

:func:`credits.jobs.scheduler.plan` walks the queue; this module answers where
a job fits now (best fit over nodes bucketed by free GPUs, or whole nodes for a
gang), and when and where the flavour's blocked head fits at the latest
(its reservation), and keeps later jobs from delaying it (EASY).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from credits.jobs.executors.base import NodeSlice

if TYPE_CHECKING:
    from credits.jobs.scheduler import Node, QueuedJob, RunningJob


@dataclass(frozen=True, slots=True)
class Reservation:
    """Where and when the blocked head job of a flavour will start at the latest."""

    job_id: int
    flavour: str
    start_at: float
    placement: tuple[NodeSlice, ...]


# (expected end, node, GPUs): one slice of a job holding GPUs of a flavour.
_End = tuple[float, str, int]


class Pool:
    """One flavour's nodes during a pass.

    Nodes are bucketed by free GPUs so best fit costs one look per GPU count,
    not one per node. After the head's reservation, ``spare`` holds what each
    node can give at the reservation time beyond what the head needs there.
    """

    __slots__ = (
        "blocked",
        "buckets",
        "capacity",
        "ends",
        "free",
        "gpn",
        "long_max",
        "names",
        "reservation",
        "spare",
        "total_free",
        "whole_nodes",
    )

    def __init__(self, nodes: list[Node]) -> None:
        self.names = [node.name for node in nodes]
        self.capacity = {node.name: node.gpus for node in nodes}
        self.gpn = max(self.capacity.values())
        self.whole_nodes = sum(1 for gpus in self.capacity.values() if gpus == self.gpn)
        self.free: dict[str, int] = {}
        self.buckets: list[set[str]] = []
        self.total_free = 0
        self.ends: list[_End] = []
        self.blocked = False
        self.reservation: Reservation | None = None
        self.spare: dict[str, int] = {}
        self.long_max = 0

    def index(self, free: Mapping[str, int]) -> None:
        """Takes each node's free GPUs (after the running jobs) and buckets them."""
        self.buckets = [set() for _ in range(self.gpn + 1)]
        for name in self.names:
            # An over-committed node (bad input) counts as full, never negative.
            gpus = min(max(free[name], 0), self.capacity[name])
            self.free[name] = gpus
            self.buckets[gpus].add(name)
            self.total_free += gpus

    def fits_ever(self, gpus: int) -> bool:
        """Whether a job of ``gpus`` fits this flavour once it is empty."""
        if gpus <= self.gpn:
            return gpus >= 1
        return gpus % self.gpn == 0 and gpus // self.gpn <= self.whole_nodes

    def place(self, job: QueuedJob, now: float) -> tuple[NodeSlice, ...] | None:
        """Takes GPUs for ``job`` now if it fits (and, past a reservation, keeps it)."""
        end = now + job.max_runtime_s
        guard = self.reservation is not None and end > self.reservation.start_at
        if guard and min(job.gpus, self.gpn) > self.long_max:
            return None
        spare = self.spare if guard else None
        if job.gpus <= self.gpn:
            node = self._best_node(job.gpus, spare)
            placement: tuple[NodeSlice, ...] = () if node is None else (NodeSlice(node, job.gpus),)
        else:
            placement = self._whole_nodes(job.gpus // self.gpn, spare)
        if not placement:
            return None
        for part in placement:
            self._take(part.node, part.gpus, end)
        return placement

    def reserve(self, job: QueuedJob, now: float) -> Reservation | None:
        """The earliest time and nodes ``job`` fits, as running and started jobs end."""
        free = dict(self.free)
        start_at = earliest_fit(free, self.capacity, sorted(self.ends), job.gpus, now)
        if start_at is None:
            return None  # only with inconsistent input: every end frees its node
        if job.gpus <= self.gpn:
            _, node = min((gpus, name) for name, gpus in free.items() if gpus >= job.gpus)
            placement: tuple[NodeSlice, ...] = (NodeSlice(node, job.gpus),)
        else:
            whole = sorted(name for name, gpus in free.items() if gpus == self.gpn)
            placement = tuple(NodeSlice(name, self.gpn) for name in whole[: job.gpus // self.gpn])
        self.spare = free
        for part in placement:
            self.spare[part.node] -= part.gpus
        self.reservation = Reservation(job.job_id, job.flavour, start_at, placement)
        self._refresh_long_max()
        return self.reservation

    def _best_node(self, gpus: int, spare: Mapping[str, int] | None) -> str | None:
        for free in range(gpus, self.gpn + 1):
            bucket = self.buckets[free]
            if not bucket:
                continue
            if spare is None:
                return min(bucket)
            allowed = [name for name in bucket if spare[name] >= gpus]
            if allowed:
                return min(allowed)
        return None

    def _whole_nodes(self, count: int, spare: Mapping[str, int] | None) -> tuple[NodeSlice, ...]:
        whole = self.buckets[self.gpn]
        if len(whole) < count:
            return ()
        names = sorted(whole if spare is None else (n for n in whole if spare[n] >= self.gpn))
        if len(names) < count:
            return ()
        return tuple(NodeSlice(name, self.gpn) for name in names[:count])

    def _take(self, node: str, gpus: int, end: float) -> None:
        before = self.free[node]
        self.buckets[before].discard(node)
        self.buckets[before - gpus].add(node)
        self.free[node] = before - gpus
        self.total_free -= gpus
        if self.reservation is None:
            self.ends.append((end, node, gpus))
            return
        was = min(before, self.spare[node])
        if end > self.reservation.start_at:
            self.spare[node] -= gpus
        if was == self.long_max:
            self._refresh_long_max()  # it may have been the node giving the maximum

    def _refresh_long_max(self) -> None:
        # The most GPUs a job still running at the reservation time can get on one node.
        self.long_max = max(
            (min(gpus, self.spare[name]) for name, gpus in self.free.items()), default=0
        )


def earliest_fit(
    free: dict[str, int], capacity: Mapping[str, int], ends: list[_End], gpus: int, now: float
) -> float | None:
    """Releases ``ends`` in time order into ``free`` until ``gpus`` fit; that time.

    A job ending at the same time as others is released with them, so the
    reservation sees every node that time frees. Overdue jobs end at ``now``.
    """
    gpn = max(capacity.values())
    gang = gpus // gpn if gpus > gpn else 0
    whole = sum(1 for count in free.values() if count == gpn)
    i = 0
    while i < len(ends):
        at = ends[i][0]
        fits = False
        while i < len(ends) and ends[i][0] == at:
            _, node, used = ends[i]
            before = free[node]
            free[node] = min(before + used, capacity[node])
            if before != gpn and free[node] == gpn:
                whole += 1
            fits = fits or (not gang and free[node] >= gpus)
            i += 1
        if fits or (gang and whole >= gang):
            return max(at, now)
    return None


def build_pools(nodes: Sequence[Node]) -> dict[str, Pool]:
    by_flavour: dict[str, list[Node]] = {}
    for node in nodes:
        by_flavour.setdefault(node.flavour, []).append(node)
    return {flavour: Pool(members) for flavour, members in by_flavour.items()}


def hold_running(
    running: Sequence[RunningJob], pools: Mapping[str, Pool], now: float
) -> dict[int, int]:
    """Takes running jobs' GPUs off their nodes; returns GPUs held per project.

    A slice on a node not in ``nodes`` (drained, gone) holds no capacity here
    but still counts towards its project's cap and fair share.
    """
    pool_of = {name: pool for pool in pools.values() for name in pool.names}
    free = {name: gpus for pool in pools.values() for name, gpus in pool.capacity.items()}
    held: dict[int, int] = {}
    for job in running:
        end = max(job.started_at + job.max_runtime_s, now)
        total = 0
        for part in job.placement:
            total += part.gpus
            pool = pool_of.get(part.node)
            if pool is not None:
                free[part.node] -= part.gpus
                pool.ends.append((end, part.node, part.gpus))
        for part in job.vacating:
            # Held until the old run has stopped, within the grace: free soon, but not now.
            pool = pool_of.get(part.node)
            if pool is not None:
                free[part.node] -= part.gpus
                pool.ends.append((now, part.node, part.gpus))
        held[job.project_id] = held.get(job.project_id, 0) + total
    for pool in pools.values():
        pool.index(free)
    return held
