"""The order one scheduling pass walks the queue in, read lazily.

Fair share (the default) goes class by class (:mod:`credits.jobs.runtime_classes`):
all the jobs of effective class 0, then 1, and so on. Within a class, projects
take turns: the next job comes from the project with the highest
``fairshare_weight * F + age_weight * ageing`` of its longest-waiting job in
the class (:func:`credits.jobs.fairshare.priority`), and within the project it
is the job with the best :func:`credits.jobs.fairshare.job_rank` (ties: earlier
submission, then lower id). A start lowers its project's ``F`` at once.

Only what can still start counts: a job that can never fit its flavour, the
jobs of a flavour that plan() has closed (full, or blocked behind its head)
or deferred (to backfill), and the jobs of a project at its GPU cap are left
out as if they were not queued, from the moment that becomes so. Leaving a job
out can only lower its project's turn (the longest-waiting job that remains is
no older), so a project's place in the turn heap is checked when it comes up
and lowered if need be, and nothing else is touched.

``Policy(ordering="fifo")`` walks the queue by submission instead, and
``"shortest"`` by declared max runtime, shortest first (SJF on what jobs
declare): both ignore fair share, for comparison.

After a flavour's head has its reservation, :meth:`FairShareOrder.backfill`
gives the flavour's jobs not yet walked past, shortest runtime step first;
within a step, in the same class and fair-share order.

The pass costs a few heap steps per job it walks past plus a bisection per
group of the :class:`~credits.jobs.job_queue.JobQueue`, however long the queue.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from credits.jobs.fairshare import FairShare, age_term, job_rank
from credits.jobs.job_queue import SHORTEST_DECLARED, SUBMISSION, GroupKey, JobQueue
from credits.jobs.runtime_classes import check_class_bounds, promotions

if TYPE_CHECKING:
    from credits.jobs.scheduler import Policy, ProjectShare, QueuedJob

Fits = Callable[[str, int], bool]
# The orderings that walk every project's jobs in one fixed order, for comparison.
FIXED_ORDERS: dict[str, Callable[[QueuedJob], Any]] = {
    "fifo": SUBMISSION,
    "shortest": SHORTEST_DECLARED,
}
# (-rank, submitted_at, job_id, run, position) and (submitted_at, job_id, age term, run, position).
_RankEntry = tuple[float, float, int, "_Run", int]
_AgeEntry = tuple[float, int, float, "_Run", int]
_Turn = tuple[float, float, int]
# A project's turn, the project, and the epoch the turn was computed in.
_TurnEntry = tuple[_Turn, int, int]


@dataclass(slots=True)
class _Run:
    """The jobs of one group in one effective class: a slice of the group, in order."""

    jobs: list[QueuedJob]
    pos: int
    end: int
    flavour: str
    step: int


@dataclass(slots=True)
class _Pass:
    """What one pass's order reads and what plan() has left out so far."""

    fair: FairShare
    policy: Policy
    now: float
    fits: Fits
    shares: Mapping[int, ProjectShare]
    held: Mapping[int, int]
    closed: set[str] = field(default_factory=set)
    # Bumped when a flavour closes: a turn computed before may be too early now.
    epoch: int = 0

    def close(self, flavour: str) -> None:
        self.closed.add(flavour)
        self.epoch += 1

    def capped(self, project_id: int) -> bool:
        cap = self.shares[project_id].max_concurrent_gpus
        return cap is not None and self.held.get(project_id, 0) >= cap

    def skip_unfit(self, run: _Run) -> None:
        while run.pos < run.end and not self.fits(run.flavour, run.jobs[run.pos].gpus):
            run.pos += 1


class _ProjectRuns:
    """One project's runs in a class: its best job by rank, its longest-waiting job."""

    __slots__ = ("by_age", "by_rank", "ctx", "open")

    def __init__(self, ctx: _Pass, open_flavour: Callable[[str], bool]) -> None:
        self.ctx = ctx
        self.open = open_flavour
        self.by_rank: list[_RankEntry] = []
        self.by_age: list[_AgeEntry] = []

    def push(self, run: _Run) -> None:
        if run.pos >= run.end:
            return
        job = run.jobs[run.pos]
        policy, now = self.ctx.policy, self.ctx.now
        rank = job_rank(job, policy, now, step=run.step)
        heapq.heappush(self.by_rank, (-rank, job.submitted_at, job.job_id, run, run.pos))
        aged = age_term(job, policy, now)
        heapq.heappush(self.by_age, (job.submitted_at, job.job_id, aged, run, run.pos))

    def turn(self, project_id: int) -> _Turn | None:
        """The project's key in the turn heap (smaller goes first), None when it has no job
        or is at its cap: :func:`~credits.jobs.fairshare.priority` of its longest-waiting job."""
        by_age = self.by_age
        while by_age and not self._current(by_age[0][3], by_age[0][4]):
            heapq.heappop(by_age)
        if not by_age or self.ctx.capped(project_id):
            return None
        submitted_at, job_id, aged = by_age[0][:3]
        factor = self.ctx.fair.factor(project_id)
        return (-(self.ctx.policy.fairshare_weight * factor + aged), submitted_at, job_id)

    def take(self) -> QueuedJob:
        """The best job by rank, its run moved past it; only after turn() found one."""
        while not self._current(self.by_rank[0][3], self.by_rank[0][4]):
            heapq.heappop(self.by_rank)
        run = heapq.heappop(self.by_rank)[3]
        job = run.jobs[run.pos]
        run.pos += 1
        self.ctx.skip_unfit(run)
        self.push(run)
        return job

    def _current(self, run: _Run, pos: int) -> bool:
        return run.pos == pos and pos < run.end and self.open(run.flavour)


def _merge(
    ctx: _Pass, runs: Iterable[tuple[int, _Run]], *, honour_closed: bool
) -> Iterator[QueuedJob]:
    """Projects' runs merged by turns; see the module docstring."""

    def open_flavour(flavour: str) -> bool:
        return not honour_closed or flavour not in ctx.closed

    projects: dict[int, _ProjectRuns] = {}
    for project_id, run in runs:
        projects.setdefault(project_id, _ProjectRuns(ctx, open_flavour)).push(run)
    heap: list[_TurnEntry] = []
    for project_id, runs_of in projects.items():
        turn = runs_of.turn(project_id)
        if turn is not None:
            heap.append((turn, project_id, ctx.epoch))
    heapq.heapify(heap)
    while heap:
        stored, project_id, epoch = heap[0]
        runs_of = projects[project_id]
        if epoch != ctx.epoch:
            turn = runs_of.turn(project_id)
            if turn is None:
                heapq.heappop(heap)
                continue
            if turn != stored:
                heapq.heapreplace(heap, (turn, project_id, ctx.epoch))  # only ever later
                continue
            heap[0] = (turn, project_id, ctx.epoch)  # the same key: still a heap
        yield runs_of.take()
        # Its start may have lowered its factor or met its cap, its oldest job may be gone.
        turn = runs_of.turn(project_id)
        if turn is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (turn, project_id, ctx.epoch))


class FairShareOrder:
    """One pass's fair-share order over a :class:`JobQueue`; see the module docstring."""

    __slots__ = ("_classes", "_ctx", "_projects", "_queue", "_runs")

    def __init__(self, queue: JobQueue, ctx: _Pass, projects: list[int]) -> None:
        self._queue = queue
        self._ctx = ctx
        self._projects = projects
        self._classes = len(queue.class_bounds_s) + 1
        # Each (group, class) run once per pass, so a backfill goes on where the walk stopped.
        self._runs: dict[tuple[GroupKey, int], _Run | None] = {}

    def __iter__(self) -> Iterator[QueuedJob]:
        for klass in range(self._classes):
            runs = (
                (key.project_id, run)
                for project_id in self._projects
                for key in self._queue.project_groups(project_id)
                if key.base_class >= klass and key.flavour not in self._ctx.closed
                for run in (self._run(key, klass),)
                if run is not None
            )
            yield from _merge(self._ctx, runs, honour_closed=True)

    def charge(self, project_id: int, gpus: int) -> None:
        self._ctx.fair.charge(project_id, gpus)

    def close(self, flavour: str) -> None:
        """No job of this flavour can start any more this pass."""
        self._ctx.close(flavour)

    def defer(self, flavour: str) -> None:
        """The flavour's remaining jobs wait for :meth:`backfill`."""
        self._ctx.close(flavour)

    def backfill(self, flavour: str) -> Iterator[QueuedJob]:
        """The deferred flavour's jobs not walked past yet: shortest step first, then in order."""
        eligible = set(self._projects)
        for _, keys in sorted(self._queue.flavour_steps(flavour).items()):
            mine = [key for key in keys if key.project_id in eligible]
            for klass in range(self._classes):
                runs = (
                    (key.project_id, run)
                    for key in mine
                    if key.base_class >= klass
                    for run in (self._run(key, klass),)
                    if run is not None
                )
                yield from _merge(self._ctx, runs, honour_closed=False)

    def _run(self, key: GroupKey, klass: int) -> _Run | None:
        if (key, klass) not in self._runs:
            self._runs[(key, klass)] = self._new_run(key, klass)
        return self._runs[(key, klass)]

    def _new_run(self, key: GroupKey, klass: int) -> _Run | None:
        jobs = self._queue.group(key)
        ctx = self._ctx
        now, aging = ctx.now, ctx.policy.class_aging_s

        def promoted_at_least(count: int) -> int:
            # Sorted by submission, promotions never increase: those with ``count`` are a prefix.
            return bisect_right(
                jobs, -count, key=lambda job: -promotions(job.submitted_at, now, aging)
            )

        promoted = key.base_class - klass
        start = 0 if klass == 0 else promoted_at_least(promoted + 1)
        run = _Run(jobs, start, promoted_at_least(promoted), key.flavour, key.step)
        ctx.skip_unfit(run)
        return run if run.pos < run.end else None


class FifoOrder:
    """One fixed order for every project, for comparison: submission (FIFO) or, with
    ``key=SHORTEST_DECLARED``, declared max runtime, shortest first. The jobs of a
    deferred flavour are kept for :meth:`backfill`, which tries them by declared
    runtime, shortest first (stable)."""

    __slots__ = ("_backlogs", "_closed", "_jobs", "_open")

    def __init__(
        self, jobs: Iterable[QueuedJob], key: Callable[[QueuedJob], Any] = SUBMISSION
    ) -> None:
        self._jobs = sorted(jobs, key=key)
        self._open = {job.flavour for job in self._jobs}
        self._closed: set[str] = set()
        self._backlogs: dict[str, list[QueuedJob]] = {}

    def __iter__(self) -> Iterator[QueuedJob]:
        for job in self._jobs:
            if not self._open:
                return  # every flavour is full or strictly blocked: the rest cannot start
            backlog = self._backlogs.get(job.flavour)
            if backlog is not None:
                backlog.append(job)
            elif job.flavour not in self._closed:
                yield job

    def charge(self, project_id: int, gpus: int) -> None:
        del project_id, gpus  # submission order does not depend on what runs

    def close(self, flavour: str) -> None:
        self._closed.add(flavour)
        self._open.discard(flavour)
        self._backlogs.pop(flavour, None)

    def defer(self, flavour: str) -> None:
        self._backlogs.setdefault(flavour, [])

    def backfill(self, flavour: str) -> Iterator[QueuedJob]:
        return iter(sorted(self._backlogs.get(flavour, ()), key=attrgetter("max_runtime_s")))


def pass_order(
    queued: Collection[QueuedJob],
    *,
    fits: Fits,
    shares: Mapping[int, ProjectShare],
    held: Mapping[int, int],
    running_projects: Set[int],
    pool_gpus: int,
    now: float,
    policy: Policy,
) -> FairShareOrder | FifoOrder:
    """The order for one pass of plan(): FIFO, or fair share over ``queued`` as a
    :class:`JobQueue` (used as it is when it was made for the policy's class bounds)."""
    startable = {project for project, share in shares.items() if share.can_start}
    if policy.ordering in FIXED_ORDERS:
        return FifoOrder(
            (job for job in queued if job.project_id in startable and fits(job.flavour, job.gpus)),
            key=FIXED_ORDERS[policy.ordering],
        )
    if policy.age_weight < 0 or policy.response_weight < 0:
        raise ValueError("age_weight and response_weight must not be negative")
    bounds = check_class_bounds(policy.class_bounds_s)
    if isinstance(queued, JobQueue) and queued.class_bounds_s == bounds:
        queue = queued
    else:
        queue = JobQueue(queued, class_bounds_s=bounds)
    projects = sorted(
        project
        for project in queue.projects()
        if project in startable and _may_fit(queue, project, fits)
    )
    fair = FairShare(
        shares, set(projects) | running_projects, held, pool_gpus, policy.running_charge_s
    )
    ctx = _Pass(fair, policy, now, fits, shares, held)
    return FairShareOrder(queue, ctx, [p for p in projects if not ctx.capped(p)])


def _may_fit(queue: JobQueue, project_id: int, fits: Fits) -> bool:
    return any(
        fits(flavour, gpus)
        for flavour in queue.flavours(project_id)
        for gpus in queue.sizes(project_id, flavour)
    )
