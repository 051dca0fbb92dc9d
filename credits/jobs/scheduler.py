"""The scheduling policy: a pure function from the state of the queue to decisions.

Nothing here touches a database, a clock or an executor; times are float
seconds since the epoch so that a trace replay can call :func:`plan` tens of
thousands of times.

One pass walks the queued jobs in policy order (FIFO, or fair share: see
:mod:`credits.jobs.fairshare`) and starts each that fits. Each flavour is an
independent pool. A job of at most one node's GPUs goes on one node, best fit;
a larger job is a gang of whole, completely free nodes. The first eligible job
of a flavour that does not fit is its head: it gets a reservation (when and
where it will start at the latest, from the running jobs' expected ends). With
backfill (EASY), later jobs of that flavour start only if they fit now and
leave the reservation intact; without it, nothing more of that flavour starts.
Backfill candidates are tried in policy order, or (``Policy.backfill_order``,
the default) shortest declared runtime first.

Never eligible, and so never a head: a job of a project with no share or that
may not start, one that would take its project over ``max_concurrent_gpus``,
and one that can never fit its flavour (no nodes, more GPUs than the flavour
has, or a gang that is not a multiple of the flavour's GPUs per node).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Literal

from credits.jobs.executors.base import NodeSlice
from credits.jobs.fairshare import (
    FairShare,
    UsageDecay,
    decayed,
    fairshare_order,
    fifo_order,
    priority,
)

__all__ = [
    "MoveDecision",
    "Node",
    "Plan",
    "Policy",
    "ProjectShare",
    "QueuedJob",
    "Reservation",
    "RunningJob",
    "StartDecision",
    "UsageDecay",
    "decayed",
    "plan",
    "priority",
]


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job_id: int
    project_id: int
    flavour: str
    gpus: int
    max_runtime_s: int
    submitted_at: float
    # The platform may stop it with its checkpoint grace and restart it elsewhere.
    checkpointable: bool = False


@dataclass(frozen=True, slots=True)
class RunningJob:
    job_id: int
    project_id: int
    flavour: str
    placement: tuple[NodeSlice, ...]
    started_at: float
    max_runtime_s: int
    checkpointable: bool = False
    # Times the platform has already moved it; at ``Policy.max_moves`` it stays put.
    moves: int = 0
    # While it is being moved: the slices its old run still holds until it has
    # stopped. They hold GPUs like ``placement``, which is then its target.
    vacating: tuple[NodeSlice, ...] = ()

    @property
    def gpus(self) -> int:
        return sum(part.gpus for part in self.placement)


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    flavour: str
    gpus: int


@dataclass(frozen=True, slots=True)
class ProjectShare:
    """A project's claim on the pool.

    ``entitlement`` is its active awarded GPU credits and ``decayed_usage`` its
    past usage with the half-life applied (any unit, as long as every project
    uses the same one; GPU-seconds if ``Policy.running_charge_s`` is used).
    ``can_start`` is False when the project may not start jobs now (suspended,
    or no credits); its jobs then never start.
    """

    project_id: int
    entitlement: float
    decayed_usage: float
    can_start: bool = True
    max_concurrent_gpus: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """How :func:`plan` orders and places jobs.

    ``running_charge_s``: each GPU a project holds (running, or started earlier
    in the same pass) counts as this many GPU-seconds of usage in fair share,
    so the factor answers within one pass; 0 leaves ``u`` as the share of
    ``decayed_usage`` alone.

    Fair-share priority is ``fairshare_weight * F + age_weight * age term +
    response_weight * response term`` (see :mod:`credits.jobs.fairshare`).
    ``response_weight``: weight of the response ratio ``w / (w + d)`` of a job
    that has waited ``w`` with declared max runtime ``d`` (Highest Response
    Ratio Next) in ordering a project's own jobs; 0 leaves them by age, and
    FIFO ordering ignores it.

    ``backfill_order``: with backfill, the order in which the jobs behind a
    flavour's head are tried. "priority" keeps the policy order; "shortest"
    tries them by declared max runtime, shortest first (ties in policy
    order), as shorter jobs fit more holes before the reservation and free
    them sooner.
    """

    ordering: Literal["fifo", "fairshare"] = "fairshare"
    backfill: bool = True
    fairshare_weight: float = 1000.0
    age_weight: float = 100.0
    # Age stops adding priority after this many seconds in the queue.
    age_saturation_s: float = 7 * 86400.0
    running_charge_s: float = 86400.0
    response_weight: float = 1000.0
    backfill_order: Literal["priority", "shortest"] = "shortest"
    # Among nodes equally good by free GPUs, prefer the one whose jobs end nearest after this one.
    end_time_fit: bool = True
    # Move checkpointable jobs into holes when fragmentation alone blocks a whole-node job.
    defragment: bool = True
    max_moves: int = 2
    # What the policy assumes one move costs (checkpoint grace plus restart), in seconds.
    restart_cost_s: float = 300.0


@dataclass(frozen=True, slots=True)
class StartDecision:
    job_id: int
    placement: tuple[NodeSlice, ...]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Where and when the blocked head job of a flavour will start at the latest."""

    job_id: int
    flavour: str
    start_at: float
    placement: tuple[NodeSlice, ...]


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


@dataclass(frozen=True, slots=True)
class Plan:
    starts: tuple[StartDecision, ...]
    reservations: tuple[Reservation, ...]
    moves: tuple[MoveDecision, ...] = ()


# (expected end, node, GPUs): one slice of a job holding GPUs of a flavour.
_End = tuple[float, str, int]


class _Pool:
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
        start_at = _earliest_fit(free, self.capacity, sorted(self.ends), job.gpus, now)
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


def _earliest_fit(
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


def plan(  # noqa: PLR0917 - positional by contract: callers pass the state in this order
    queued: Sequence[QueuedJob],
    running: Sequence[RunningJob],
    nodes: Sequence[Node],
    shares: Mapping[int, ProjectShare],
    now: float,
    policy: Policy = Policy(),
) -> Plan:
    """One scheduling pass: which queued jobs start now, where, and each flavour's reservation.

    Deterministic: the same jobs, nodes and shares in any order give the same plan.
    """
    pools = _pools(nodes)
    held = _hold_running(running, pools, now)
    startable = {project for project, share in shares.items() if share.can_start}
    eligible = [
        job
        for job in queued
        if job.project_id in startable
        and job.flavour in pools
        and pools[job.flavour].fits_ever(job.gpus)
    ]
    order: Iterable[QueuedJob]
    charge = None
    if policy.ordering == "fifo":
        order = fifo_order(eligible)
    else:
        active = {job.project_id for job in eligible} | {job.project_id for job in running}
        pool_gpus = sum(node.gpus for node in nodes)
        charge = FairShare(shares, active, held, pool_gpus, policy.running_charge_s)
        order = fairshare_order(eligible, charge, policy, now)
    starts: list[StartDecision] = []
    reservations: list[Reservation] = []
    open_pools = len({job.flavour for job in eligible})
    # With shortest-first backfill, the jobs after a flavour's head wait here, in policy order.
    deferred: dict[str, list[QueuedJob]] | None = (
        {} if policy.backfill and policy.backfill_order == "shortest" else None
    )

    def start(job: QueuedJob, placement: tuple[NodeSlice, ...]) -> None:
        starts.append(StartDecision(job.job_id, placement))
        held[job.project_id] = held.get(job.project_id, 0) + job.gpus
        if charge is not None:
            charge.charge(job.project_id, job.gpus)

    for job in order:
        pool = pools[job.flavour]
        if pool.blocked:
            continue
        if deferred is not None and pool.reservation is not None:
            deferred.setdefault(job.flavour, []).append(job)
            continue
        if not _under_cap(job, shares, held):
            continue
        placement = pool.place(job, now)
        if placement is not None:
            start(job, placement)
        elif pool.reservation is None:
            reservation = pool.reserve(job, now)
            if reservation is not None:
                reservations.append(reservation)
        if _done(pool, policy):
            pool.blocked = True
            open_pools -= 1
            if open_pools == 0:
                break  # every flavour is full or strictly blocked: the rest cannot start
    for flavour, backlog in sorted((deferred or {}).items()):
        _backfill_shortest(pools[flavour], backlog, shares, held, now, start)
    return Plan(tuple(starts), tuple(sorted(reservations, key=lambda r: r.flavour)))


def _backfill_shortest(  # noqa: PLR0917 - private helper of plan()
    pool: _Pool,
    backlog: list[QueuedJob],
    shares: Mapping[int, ProjectShare],
    held: Mapping[int, int],
    now: float,
    start: Callable[[QueuedJob, tuple[NodeSlice, ...]], None],
) -> None:
    """Tries the jobs behind a flavour's head by declared runtime, shortest first.

    The sort is stable, so equal declared runtimes keep their policy order.
    """
    for job in sorted(backlog, key=attrgetter("max_runtime_s")):
        if pool.total_free == 0:
            return
        if _under_cap(job, shares, held):
            placement = pool.place(job, now)
            if placement is not None:
                start(job, placement)


def _pools(nodes: Sequence[Node]) -> dict[str, _Pool]:
    by_flavour: dict[str, list[Node]] = {}
    for node in nodes:
        by_flavour.setdefault(node.flavour, []).append(node)
    return {flavour: _Pool(members) for flavour, members in by_flavour.items()}


def _hold_running(
    running: Sequence[RunningJob], pools: Mapping[str, _Pool], now: float
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


def _under_cap(job: QueuedJob, shares: Mapping[int, ProjectShare], held: Mapping[int, int]) -> bool:
    cap = shares[job.project_id].max_concurrent_gpus
    return cap is None or held.get(job.project_id, 0) + job.gpus <= cap


def _done(pool: _Pool, policy: Policy) -> bool:
    """Whether no later job of this flavour can start this pass."""
    if pool.blocked or pool.reservation is None:
        return False
    return not policy.backfill or pool.total_free == 0
