"""The scheduling policy: a pure function from the state of the queue to decisions.

Nothing here touches a database, a clock or an executor; times are float
seconds since the epoch so that a trace replay can call :func:`plan` tens of
thousands of times.

One pass walks the queued jobs in policy order (FIFO, or runtime class then
fair share: see :mod:`credits.jobs.queue_order`), read lazily so that a pass
touches only the jobs it walks past, and starts each that fits. Each flavour is an
independent pool. A job of at most one node's GPUs goes on one node, best fit;
a larger job is a gang of whole, completely free nodes. The first eligible job
of a flavour that does not fit is its head: it gets a reservation (when and
where it will start at the latest, from the running jobs' expected ends). With
backfill (EASY), later jobs of that flavour start only if they fit now and
leave the reservation intact; without it, nothing more of that flavour starts.
Backfill candidates are tried in policy order, or (``Policy.backfill_order``,
the default) shortest declared runtime first (by runtime step, then in policy
order).

Never eligible, and so never a head: a job of a project with no share or that
may not start, one that would take its project over ``max_concurrent_gpus``,
and one that can never fit its flavour (no nodes, more GPUs than the flavour
has, or a gang that is not a multiple of the flavour's GPUs per node).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from credits.jobs.defrag import MoveDecision, defragment
from credits.jobs.executors.base import NodeSlice
from credits.jobs.fairshare import UsageDecay, decayed, priority
from credits.jobs.job_queue import JobQueue
from credits.jobs.placement import Pool, Reservation, build_pools, hold_running
from credits.jobs.queue_order import pass_order
from credits.jobs.running_set import RunningSet
from credits.jobs.runtime_classes import DEFAULT_CLASS_AGING_S, DEFAULT_CLASS_BOUNDS_S

__all__ = [
    "JobQueue",
    "MoveDecision",
    "Node",
    "Plan",
    "Policy",
    "ProjectShare",
    "QueuedJob",
    "Reservation",
    "RunningJob",
    "RunningSet",
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

    # "fifo" and "shortest" (declared max runtime first: SJF on what jobs declare) ignore
    # fair share; they are there for comparison (the replay's references).
    ordering: Literal["fifo", "fairshare", "shortest"] = "fairshare"
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
    # Among nodes equally good by free GPUs, put jobs that may move with jobs that may,
    # and the others with the others, so that moves can empty whole nodes. Off: on the
    # replay it helped on some seeds and hurt on others (docs/scheduling.md).
    pack_by_movability: bool = False
    # What the policy assumes one move costs (checkpoint grace plus restart), in seconds.
    restart_cost_s: float = 300.0
    # Runtime classes (credits.jobs.runtime_classes): the queue goes by declared max runtime
    # class first (up to each bound, then longer; no bounds, the default: one class), a job
    # moving up a class per class_aging_s waited (0: never); fair share decides within a class.
    class_bounds_s: tuple[int, ...] = DEFAULT_CLASS_BOUNDS_S
    class_aging_s: float = DEFAULT_CLASS_AGING_S


@dataclass(frozen=True, slots=True)
class StartDecision:
    job_id: int
    placement: tuple[NodeSlice, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    starts: tuple[StartDecision, ...]
    reservations: tuple[Reservation, ...]
    moves: tuple[MoveDecision, ...] = ()


def plan(  # noqa: PLR0917 - positional by contract: callers pass the state in this order
    queued: Collection[QueuedJob],
    running: Collection[RunningJob],
    nodes: Sequence[Node],
    shares: Mapping[int, ProjectShare],
    now: float,
    policy: Policy = Policy(),
) -> Plan:
    """One scheduling pass: which queued jobs start now, where, and each flavour's reservation.

    Deterministic: the same jobs, nodes and shares in any order give the same plan.
    ``queued`` may be a :class:`JobQueue` kept between passes, which saves sorting
    it, and ``running`` a :class:`RunningSet`, which saves rebuilding the nodes'
    state from every running job; the plan is the same.
    """
    pools, held, running_projects = _pools_after_running(running, nodes, now, policy)
    order = pass_order(
        queued,
        fits=lambda flavour, gpus: flavour in pools and pools[flavour].fits_ever(gpus),
        shares=shares,
        held=held,
        running_projects=running_projects,
        pool_gpus=sum(pool.gpus for pool in pools.values()),
        now=now,
        policy=policy,
    )
    starts: list[StartDecision] = []
    reservations: list[Reservation] = []
    moves: list[MoveDecision] = []
    # With shortest-first backfill, the jobs after a flavour's head wait for its backfill.
    shortest = policy.backfill and policy.backfill_order == "shortest"
    deferred: list[str] = []

    def start(job: QueuedJob, placement: tuple[NodeSlice, ...]) -> None:
        starts.append(StartDecision(job.job_id, placement))
        held[job.project_id] = held.get(job.project_id, 0) + job.gpus
        order.charge(job.project_id, job.gpus)

    for job in order:
        pool = pools[job.flavour]
        if not _under_cap(job, shares, held):
            continue
        placement = pool.place(job, now)
        if placement is not None:
            start(job, placement)
        elif pool.reservation is None:
            reservation = _reserve(pool, job, running, now, policy, moves)
            if reservation is not None:
                reservations.append(reservation)
            if shortest and pool.reservation is not None:
                deferred.append(job.flavour)
                order.defer(job.flavour)
        if _done(pool, policy):
            pool.blocked = True
            order.close(job.flavour)
    for flavour in sorted(deferred):
        _backfill_shortest(pools[flavour], order.backfill(flavour), shares, held, now, start)
    return Plan(
        tuple(starts),
        tuple(sorted(reservations, key=lambda r: r.flavour)),
        tuple(sorted(moves, key=lambda move: move.job_id)),
    )


def _pools_after_running(
    running: Collection[RunningJob], nodes: Sequence[Node], now: float, policy: Policy
) -> tuple[dict[str, Pool], dict[int, int], set[int]]:
    """Each flavour's pool with the running jobs' GPUs taken, GPUs held and projects running."""
    if isinstance(running, RunningSet):
        pools = running.pools_for(nodes, now, policy)
        if pools is not None:
            return pools, running.held(), running.projects()
    pools = build_pools(nodes, end_fit=policy.end_time_fit, pack=policy.pack_by_movability)
    held = hold_running(running, pools, now, policy.max_moves)
    return pools, held, {job.project_id for job in running}


def _reserve(  # noqa: PLR0917 - private helper of plan()
    pool: Pool,
    head: QueuedJob,
    running: Collection[RunningJob],
    now: float,
    policy: Policy,
    moves: list[MoveDecision],
) -> Reservation | None:
    """The blocked head's reservation; with defragmentation, after moves if they pay."""
    reservation = pool.reserve(head, now)
    if reservation is None or not policy.defragment:
        return reservation
    moved = defragment(pool, head, running, now, policy)
    if moved is None:
        return reservation
    moves.extend(moved[1])
    return moved[0]


def _backfill_shortest(  # noqa: PLR0917 - private helper of plan()
    pool: Pool,
    candidates: Iterable[QueuedJob],
    shares: Mapping[int, ProjectShare],
    held: Mapping[int, int],
    now: float,
    start: Callable[[QueuedJob, tuple[NodeSlice, ...]], None],
) -> None:
    """Tries the jobs behind a flavour's head, which the order gives shortest first."""
    for job in candidates:
        if pool.total_free == 0:
            return
        if _under_cap(job, shares, held):
            placement = pool.place(job, now)
            if placement is not None:
                start(job, placement)


def _under_cap(job: QueuedJob, shares: Mapping[int, ProjectShare], held: Mapping[int, int]) -> bool:
    cap = shares[job.project_id].max_concurrent_gpus
    return cap is None or held.get(job.project_id, 0) + job.gpus <= cap


def _done(pool: Pool, policy: Policy) -> bool:
    """Whether no later job of this flavour can start this pass."""
    if pool.blocked or pool.reservation is None:
        return False
    return not policy.backfill or pool.total_free == 0
