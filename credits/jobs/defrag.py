"""Defragmentation: moving checkpointable jobs so that a blocked job gets whole nodes.

A flavour's head can wait while the pool's free GPUs would cover it, only
because they are scattered over partly used nodes: an 8-GPU job waits while
eight nodes each have one GPU free. When that happens, and the head would
otherwise wait longer than a move costs, :func:`defragment` picks the nodes
needing the fewest GPUs moved (the emptiest), and moves their jobs into holes
(GPUs free now) on other partly used nodes, so that those nodes empty and the
head is reserved them, to start as soon as the moved jobs' old runs have
stopped.

What may move: a checkpointable job on one node, not already moving, moved
fewer than ``Policy.max_moves`` times. A job expected to end (by its declared
max runtime) before the head would start is left to end. A move only targets
GPUs free now on a node that is partly used: never a wholly free node (it is
worth more whole) and never a node being emptied or held for a reservation.
It is all or nothing: either enough nodes empty for the head, or nothing moves.
Moves are worth it only when the head's GPUs times the wait they save exceed
the moved GPUs times ``Policy.restart_cost_s``.

Deterministic: candidates, movers and holes are ordered by size, end and name.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from credits.jobs.executors.base import NodeSlice
from credits.jobs.placement import Pool, Reservation, nearest_after
from credits.jobs.running_set import RunningSet

if TYPE_CHECKING:
    from credits.jobs.scheduler import Policy, QueuedJob, RunningJob


@dataclass(frozen=True, slots=True)
class MoveDecision:
    """Stop a running checkpointable job and restart it on ``target`` at once.

    The job keeps holding its old slices (as ``RunningJob.vacating``) and its
    target until the old run has stopped; ``for_job_id`` is the blocked job the
    move makes room for.
    """

    job_id: int
    target: tuple[NodeSlice, ...]
    for_job_id: int
    reason: str


def movable(job: RunningJob, policy: Policy) -> bool:
    """Whether the scheduler may move ``job``: checkpointable, one node, not moving, moves left."""
    return (
        job.checkpointable
        and len(job.placement) == 1
        and not job.vacating
        and job.moves < policy.max_moves
    )


def defragment(
    pool: Pool,
    head: QueuedJob,
    running: Collection[RunningJob],
    now: float,
    policy: Policy,
) -> tuple[Reservation, tuple[MoveDecision, ...]] | None:
    """Moves that free nodes for ``head`` when only fragmentation blocks it, or None.

    ``pool`` holds ``head``'s reservation from :meth:`Pool.reserve`; on success
    it is replaced by one on the emptied nodes, starting once the moved jobs'
    old runs have stopped, and the moves' targets are taken.
    """
    waiting = pool.reservation
    ready_at = now + policy.restart_cost_s
    if waiting is None or waiting.start_at <= ready_at or _free_by(pool, ready_at) < head.gpus:
        return None  # it starts as soon anyway, or no moving can make room
    gang = head.gpus >= pool.gpn
    # A gang or whole-node job needs whole nodes; a smaller one, room on one node.
    room = pool.gpn if gang else head.gpus
    ready = sorted(name for _, name in pool.buckets[pool.gpn]) if gang else []
    needed = (head.gpus // pool.gpn if gang else 1) - len(ready)
    candidates = _candidates(pool, running, room, ready_at, policy)
    found = _pick(pool, candidates, needed, now, policy)
    if found is None:
        return None
    emptied, targets = found
    moved = sum(gpus for (_, gpus), _ in targets)
    if head.gpus * (waiting.start_at - ready_at) <= moved * policy.restart_cost_s:
        return None  # the wait saved is worth less than the work the moves throw away
    nodes = sorted(ready + emptied)
    reservation = Reservation(
        head.job_id, head.flavour, ready_at, tuple(NodeSlice(name, room) for name in nodes)
    )
    reason = f"defragment: frees {', '.join(nodes)} for job {head.job_id}"
    moves = []
    for (job, gpus), node in targets:
        pool.take(node, gpus, _restarted_end(job, now, policy))
        moves.append(MoveDecision(job.job_id, (NodeSlice(node, gpus),), head.job_id, reason))
    pool.replace_reservation(reservation)
    return reservation, tuple(sorted(moves, key=lambda move: move.job_id))


# A job to move and the GPUs it holds (on the one node it runs on).
_Mover = tuple["RunningJob", int]


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A node that can make ``room`` for the head once ``movers`` have left it."""

    node: str
    movers: tuple[_Mover, ...]


def _candidates(
    pool: Pool, running: Collection[RunningJob], room: int, ready_at: float, policy: Policy
) -> Iterator[_Candidate]:
    """Nodes that moving some of their jobs would leave with ``room`` free GPUs, emptiest first.

    Emptiest is most free GPUs, then fewest GPUs to move, fewest jobs, name;
    each bucket of free GPUs is looked at only when the ones before it did not
    give enough nodes. A node is skipped if it is frozen, if anything on it is
    not a running job (a job started earlier in this pass), or if what must
    stay on it leaves too little room.
    """
    occupants, used = _occupancy(pool, running)
    for free in range(room - 1, -1, -1):
        found = []
        for _, node in pool.buckets[free]:
            if pool.capacity[node] < room or free + used(node) != pool.capacity[node]:
                continue  # too small, or a job started this pass (or bad input) holds GPUs here
            movers = _movers(occupants(node), room - free, ready_at, policy)
            if movers is not None:
                found.append(_Candidate(node, movers))
        found.sort(key=lambda c: (sum(g for _, g in c.movers), len(c.movers), c.node))
        yield from found


def _occupancy(
    pool: Pool, running: Collection[RunningJob]
) -> tuple[Callable[[str], list[_Mover]], Callable[[str], int]]:
    """What each job holds on each node (a gang's slice there, not its whole size), and
    the GPUs held per node: a kept :class:`RunningSet` knows; otherwise they are counted."""
    if isinstance(running, RunningSet):
        return running.occupants, running.used
    occupants: dict[str, list[_Mover]] = {}
    used: dict[str, int] = {}
    for job in running:
        for part in job.placement:
            if part.node in pool.capacity:
                occupants.setdefault(part.node, []).append((job, part.gpus))
                used[part.node] = used.get(part.node, 0) + part.gpus
    return (lambda node: occupants.get(node, [])), (lambda node: used.get(node, 0))


def _movers(
    jobs: list[_Mover], short: int, ready_at: float, policy: Policy
) -> tuple[_Mover, ...] | None:
    """Jobs to move so that ``short`` more GPUs are free by ``ready_at``, or None.

    Jobs due to end by then free theirs without a move. Of the rest, the
    smallest that covers what is still short goes, else the largest, until
    nothing is short.
    """
    left = []
    for job, gpus in jobs:
        if job.started_at + job.max_runtime_s <= ready_at:
            short -= gpus
        elif movable(job, policy):
            left.append((job, gpus))
    chosen: list[_Mover] = []
    while short > 0:
        if not left:
            return None
        covering = [mover for mover in left if mover[1] >= short]
        mover = (
            min(covering, key=lambda m: (m[1], m[0].job_id))
            if covering
            else min(left, key=lambda m: (-m[1], m[0].job_id))
        )
        left.remove(mover)
        chosen.append(mover)
        short -= mover[1]
    return tuple(chosen)


class _Holes:
    """GPUs free now on partly used nodes, bucketed like :class:`Pool`'s, with undo.

    Wholly free nodes are not holes (they are worth more whole), nor frozen
    ones (being emptied or held), which the pool's buckets already leave out.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.free: dict[str, int] = {}
        self.end: dict[str, float] = {}
        self.buckets: list[list[tuple[float, str]]] = [[] for _ in range(pool.gpn)]
        for gpus in range(1, pool.gpn):
            for end, name in pool.buckets[gpus]:
                if gpus < pool.capacity[name]:
                    self.free[name] = gpus
                    self.end[name] = end
                    self.buckets[gpus].append((end, name))
        self.log: list[tuple[str, int, float]] = []

    def remove(self, node: str) -> None:
        """``node`` is being emptied: nothing moves onto it."""
        if node in self.free:
            self._set(node, 0, self.end[node])

    def fit(self, need: int, end: float) -> str | None:
        """Takes ``need`` GPUs on the best-fitting hole (then end-time fit, then name)."""
        probe = (end if self.pool.end_fit else float("-inf"), "")
        for gpus in range(need, self.pool.gpn):
            bucket = self.buckets[gpus]
            if bucket:
                node = next(nearest_after(bucket, probe))
                self._set(
                    node,
                    gpus - need,
                    max(self.end[node], end) if self.pool.end_fit else self.end[node],
                )
                return node
        return None

    def mark(self) -> int:
        return len(self.log)

    def undo(self, mark: int) -> None:
        while len(self.log) > mark:
            node, gpus, end = self.log.pop()
            self._move(node, gpus, end)

    def _set(self, node: str, gpus: int, end: float) -> None:
        self.log.append((node, self.free[node], self.end[node]))
        self._move(node, gpus, end)

    def _move(self, node: str, gpus: int, end: float) -> None:
        before = self.free[node]
        if before:
            bucket = self.buckets[before]
            del bucket[bisect_left(bucket, (self.end[node], node))]
        if gpus:
            insort(self.buckets[gpus], (end, node))
        self.free[node] = gpus
        self.end[node] = end


def _pick(
    pool: Pool, candidates: Iterable[_Candidate], needed: int, now: float, policy: Policy
) -> tuple[list[str], list[tuple[_Mover, str]]] | None:
    """The first ``needed`` candidates whose movers all fit in holes elsewhere, or None.

    A node that takes a moved job is no longer a candidate; a candidate that
    fails leaves the holes as they were.
    """
    holes = _Holes(pool)
    emptied: list[str] = []
    targets: list[tuple[_Mover, str]] = []
    receivers: set[str] = set()
    for candidate in candidates:
        if len(emptied) == needed:
            break
        if candidate.node in receivers:
            continue
        mark = holes.mark()
        holes.remove(candidate.node)
        placed = []
        for mover in sorted(candidate.movers, key=lambda m: (-m[1], m[0].job_id)):
            node = holes.fit(mover[1], _restarted_end(mover[0], now, policy))
            if node is None:
                break
            placed.append((mover, node))
        if len(placed) < len(candidate.movers):
            holes.undo(mark)
            continue
        emptied.append(candidate.node)
        targets.extend(placed)
        receivers.update(node for _, node in placed)
    return (emptied, targets) if len(emptied) == needed else None


def _free_by(pool: Pool, ready_at: float) -> int:
    """GPUs free now or by ``ready_at`` on nodes not frozen: what moves could gather."""
    ending = sum(
        gpus for end, node, gpus in pool.ends if end <= ready_at and node not in pool.frozen
    )
    return pool.total_free + ending


def _restarted_end(job: RunningJob, now: float, policy: Policy) -> float:
    """When a moved job is expected to end: its declared end, plus the restart."""
    return max(job.started_at + job.max_runtime_s, now) + policy.restart_cost_s
