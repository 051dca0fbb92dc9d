"""Placement for the scheduling policy: one flavour's nodes during a pass.

:func:`credits.jobs.scheduler.plan` walks the queue; this module answers where
a job fits now (best fit over nodes bucketed by free GPUs, or whole nodes for a
gang), and when and where the flavour's blocked head fits at the latest
(its reservation), and keeps later jobs from delaying it (EASY).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
# The expected end of a node no job holds: before any job's end.
_NO_END = float("-inf")


class Pool:
    """One flavour's nodes during a pass.

    Nodes are bucketed by free GPUs so best fit costs one look per GPU count,
    not one per node. Each bucket is sorted by the node's expected end (the
    latest declared end of the jobs on it) so that, with ``end_fit``, the node
    whose jobs end nearest after a new job's end is a bisection away. After the
    head's reservation, ``spare`` holds what each node can give at the
    reservation time beyond what the head needs there. ``frozen`` nodes take
    no job this pass: they are being emptied for a blocked job.
    """

    __slots__ = (
        "blocked",
        "buckets",
        "capacity",
        "end_fit",
        "ends",
        "free",
        "frozen",
        "gpn",
        "gpus",
        "long_count",
        "long_max",
        "names",
        "node_end",
        "pack",
        "pinned",
        "reservation",
        "sides",
        "spare",
        "total_free",
        "vacated",
        "whole_nodes",
    )

    def __init__(self, nodes: list[Node], *, end_fit: bool = True, pack: bool = False) -> None:
        self.names = [node.name for node in nodes]
        self.capacity = {node.name: node.gpus for node in nodes}
        self.gpn = max(self.capacity.values())
        self.gpus = sum(self.capacity.values())
        self.whole_nodes = sum(1 for gpus in self.capacity.values() if gpus == self.gpn)
        self.end_fit = end_fit
        # Keep jobs that can move apart from those that cannot (see best_node).
        self.pack = pack
        # GPUs on each node held by jobs the scheduler may not move.
        self.pinned: dict[str, int] = {}
        # The buckets split by whether a node holds a job that may not move (1) or not (0).
        self.sides: tuple[list[list[tuple[float, str]]], ...] = ([], [])
        self.free: dict[str, int] = {}
        self.node_end: dict[str, float] = {}
        self.buckets: list[list[tuple[float, str]]] = []
        self.frozen: set[str] = set()
        self.vacated: set[str] = set()
        self.total_free = 0
        self.ends: list[_End] = []
        self.blocked = False
        self.reservation: Reservation | None = None
        self.spare: dict[str, int] = {}
        self.long_max = 0
        # After the reservation: how many nodes give each amount that long_max is the top of.
        self.long_count: list[int] = []

    def index(
        self,
        free: Mapping[str, int],
        node_end: Mapping[str, float],
        vacated: set[str],
        pinned: Mapping[str, int],
    ) -> None:
        """Takes each node's free GPUs (after the running jobs) and buckets them.

        A node that a moving job is still vacating is frozen until it has left,
        so the GPUs the move frees are not taken by someone else meanwhile.
        """
        self.buckets = [[] for _ in range(self.gpn + 1)]
        self.sides = ([[] for _ in range(self.gpn + 1)], [[] for _ in range(self.gpn + 1)])
        self.vacated = vacated
        for name in self.names:
            # An over-committed node (bad input) counts as full, never negative.
            gpus = min(max(free[name], 0), self.capacity[name])
            self.free[name] = gpus
            self.node_end[name] = node_end.get(name, _NO_END) if self.end_fit else 0.0
            self.pinned[name] = pinned.get(name, 0)
            if name in vacated:
                self.frozen.add(name)
                continue
            self.buckets[gpus].append((self.node_end[name], name))
            if self.pack:
                self._side(name)[gpus].append((self.node_end[name], name))
            self.total_free += gpus
        for bucket in (*self.buckets, *self.sides[0], *self.sides[1]):
            bucket.sort()

    def clone(self) -> Pool:
        """A copy to plan one pass with: the pass changes the copy, never this pool.

        Only for a pool no pass has used yet (no reservation, nothing frozen).
        """
        copy = Pool.__new__(Pool)
        shared = ("names", "capacity", "gpn", "gpus", "whole_nodes", "end_fit", "pack")
        for name in (*shared, "total_free"):
            setattr(copy, name, getattr(self, name))
        copy.pinned = dict(self.pinned)
        copy.sides = tuple([list(bucket) for bucket in side] for side in self.sides)
        copy.free = dict(self.free)
        copy.node_end = dict(self.node_end)
        copy.buckets = [list(bucket) for bucket in self.buckets]
        copy.frozen = set()
        copy.vacated = set()
        copy.ends = list(self.ends)
        copy.blocked = False
        copy.reservation = None
        copy.spare = {}
        copy.long_max = 0
        copy.long_count = []
        return copy

    def release(self, node: str, gpus: int, end: float, *, movable: bool, node_end: float) -> None:
        """Gives back what :meth:`take` gave a job; ``node_end`` is the node's end without it."""
        before = self.free[node]
        self._unbucket(node, before)
        if self.end_fit:
            self.node_end[node] = node_end
        if not movable:
            self.pinned[node] -= gpus
        self.free[node] = before + gpus
        self._bucket(node, before + gpus)
        self.total_free += gpus
        self.ends.remove((end, node, gpus))

    def _unbucket(self, node: str, free: int) -> None:
        key = (self.node_end[node], node)
        bucket = self.buckets[free]
        del bucket[bisect_left(bucket, key)]
        if self.pack:
            side = self._side(node)[free]
            del side[bisect_left(side, key)]

    def _bucket(self, node: str, free: int) -> None:
        insort(self.buckets[free], (self.node_end[node], node))
        if self.pack:
            insort(self._side(node)[free], (self.node_end[node], node))

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
        movable = job.checkpointable and job.gpus <= self.gpn
        if job.gpus <= self.gpn:
            node = self.best_node(job.gpus, end, spare, movable=movable)
            placement: tuple[NodeSlice, ...] = () if node is None else (NodeSlice(node, job.gpus),)
        else:
            placement = self._whole_nodes(job.gpus // self.gpn, spare)
        if not placement:
            return None
        for part in placement:
            self.take(part.node, part.gpus, end, movable=movable)
        return placement

    def reserve(self, job: QueuedJob, now: float) -> Reservation | None:
        """The earliest time and nodes ``job`` fits, as running and started jobs end.

        Nodes being vacated come first: a move emptied them for a job like this one.
        """
        free = dict(self.free)
        start_at = earliest_fit(free, self.capacity, sorted(self.ends), job.gpus, now)
        if start_at is None:
            return None  # only with inconsistent input: every end frees its node
        vacated = self.vacated
        if job.gpus <= self.gpn:
            node = min(
                (
                    (name not in vacated, gpus, name)
                    for name, gpus in free.items()
                    if gpus >= job.gpus
                )
            )[2]
            placement: tuple[NodeSlice, ...] = (NodeSlice(node, job.gpus),)
        else:
            whole = sorted(
                (name not in vacated, name) for name, gpus in free.items() if gpus == self.gpn
            )
            placement = tuple(
                NodeSlice(name, self.gpn) for _, name in whole[: job.gpus // self.gpn]
            )
        self.spare = free
        for part in placement:
            self.spare[part.node] -= part.gpus
        self.reservation = Reservation(job.job_id, job.flavour, start_at, placement)
        self._refresh_long_max()
        return self.reservation

    def replace_reservation(self, reservation: Reservation) -> None:
        """Holds ``reservation``'s nodes for its job from now on (they are being emptied).

        Its nodes take nothing more this pass; every other node's free GPUs are
        spare, as the job needs nothing from them.
        """
        self.reservation = reservation
        for part in reservation.placement:
            self.freeze(part.node)
        self.spare = dict(self.free)
        self._refresh_long_max()

    def freeze(self, node: str) -> None:
        if node in self.frozen:
            return
        if self.reservation is not None and self.long_count:
            self._recount(self._long(node), None)
        self.frozen.add(node)
        self.buckets[self.free[node]].remove((self.node_end[node], node))
        if self.pack:
            self._side(node)[self.free[node]].remove((self.node_end[node], node))
        self.total_free -= self.free[node]

    def best_node(
        self, gpus: int, end: float, spare: Mapping[str, int] | None, *, movable: bool = False
    ) -> str | None:
        """Best fit: the fullest node that has room; among those, end-time fit, then name.

        With ``pack``, among nodes equally full a job that may move goes first to a
        node where every job may move, and one that may not to a node that already
        holds such a job: nodes of movable jobs stay nodes that moves can empty.
        """
        probe = (end if self.end_fit else _NO_END, "")
        sides = (self.sides[not movable], self.sides[movable]) if self.pack else (self.buckets,)
        for free in range(gpus, self.gpn + 1):
            for buckets in sides:
                bucket = buckets[free]
                if not bucket:
                    continue
                for name in nearest_after(bucket, probe):
                    if spare is None or spare[name] >= gpus:
                        return name
        return None

    def _side(self, node: str) -> list[list[tuple[float, str]]]:
        return self.sides[self.pinned[node] > 0]

    def _whole_nodes(self, count: int, spare: Mapping[str, int] | None) -> tuple[NodeSlice, ...]:
        whole = self.buckets[self.gpn]
        if len(whole) < count:
            return ()
        names = sorted(n for _, n in whole if spare is None or spare[n] >= self.gpn)
        if len(names) < count:
            return ()
        return tuple(NodeSlice(name, self.gpn) for name in names[:count])

    def take(self, node: str, gpus: int, end: float, *, movable: bool = True) -> None:
        """Gives ``gpus`` of ``node`` to a job expected to end at ``end``."""
        before = self.free[node]
        self._unbucket(node, before)
        if self.end_fit and end > self.node_end[node]:
            self.node_end[node] = end
        if not movable:
            self.pinned[node] += gpus
        self._bucket(node, before - gpus)
        self.free[node] = before - gpus
        self.total_free -= gpus
        if self.reservation is None:
            self.ends.append((end, node, gpus))
            return
        was = max(min(before, self.spare[node]), 0)
        if end > self.reservation.start_at:
            self.spare[node] -= gpus
        self._recount(was, self._long(node))

    def _long(self, node: str) -> int:
        # What a job still running at the reservation time can get on this node.
        return max(min(self.free[node], self.spare[node]), 0)

    def _refresh_long_max(self) -> None:
        """Counts the nodes by what each gives a job still running at the reservation
        time; the most any gives is ``long_max``. A take then costs no scan of the nodes."""
        self.long_count = [0] * (self.gpn + 1)
        for name in self.free:
            if name not in self.frozen:
                self.long_count[min(self._long(name), self.gpn)] += 1
        self._recount(None, None)

    def _recount(self, was: int | None, now: int | None) -> None:
        if was is not None:
            self.long_count[min(was, self.gpn)] -= 1
        if now is not None:
            self.long_count[min(now, self.gpn)] += 1
        top = self.gpn
        while top > 0 and not self.long_count[top]:
            top -= 1
        self.long_max = top


def nearest_after(bucket: list[tuple[float, str]], probe: tuple[float, str]) -> Iterator[str]:
    """Names in ``bucket`` (sorted by end) from the first ending at or after ``probe``.

    Nodes that end no earlier than the new job come first, nearest first, so it
    does not keep them busy longer; then the others, latest first, as the job
    extends those the least. Ties go to the first name.
    """
    at = bisect_left(bucket, probe)
    for i in range(at, len(bucket)):
        yield bucket[i][1]
    last = at - 1
    while last >= 0:
        # Each run of equal ends in name order, so ties go to the first name.
        first = bisect_left(bucket, (bucket[last][0], ""), 0, last)
        for i in range(first, last + 1):
            yield bucket[i][1]
        last = first - 1


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


def build_pools(
    nodes: Sequence[Node], *, end_fit: bool = True, pack: bool = False
) -> dict[str, Pool]:
    by_flavour: dict[str, list[Node]] = {}
    for node in nodes:
        by_flavour.setdefault(node.flavour, []).append(node)
    return {
        flavour: Pool(members, end_fit=end_fit, pack=pack)
        for flavour, members in by_flavour.items()
    }


def hold_running(
    running: Iterable[RunningJob], pools: Mapping[str, Pool], now: float, max_moves: int = 2
) -> dict[int, int]:
    """Takes running jobs' GPUs off their nodes; returns GPUs held per project.

    A slice on a node not in ``nodes`` (drained, gone) holds no capacity here
    but still counts towards its project's cap and fair share.
    """
    pool_of = {name: pool for pool in pools.values() for name in pool.names}
    free = {name: gpus for pool in pools.values() for name, gpus in pool.capacity.items()}
    node_end: dict[str, float] = {}
    vacated: set[str] = set()
    pinned: dict[str, int] = {}
    held: dict[int, int] = {}
    for job in running:
        end = max(job.started_at + job.max_runtime_s, now)
        # Whether a move could ever take it off its node (see credits.jobs.defrag.movable).
        stays = not job.checkpointable or len(job.placement) != 1 or job.moves >= max_moves
        total = 0
        for part in job.placement:
            total += part.gpus
            pool = pool_of.get(part.node)
            if pool is not None:
                free[part.node] -= part.gpus
                if stays:
                    pinned[part.node] = pinned.get(part.node, 0) + part.gpus
                pool.ends.append((end, part.node, part.gpus))
                if end > node_end.get(part.node, _NO_END):
                    node_end[part.node] = end
        for part in job.vacating:
            # Held until the old run has stopped, within the grace: free soon, but not now.
            pool = pool_of.get(part.node)
            if pool is not None:
                free[part.node] -= part.gpus
                pool.ends.append((now, part.node, part.gpus))
                vacated.add(part.node)
        held[job.project_id] = held.get(job.project_id, 0) + total
    for pool in pools.values():
        pool.index(free, node_end, vacated, pinned)
    return held
