"""The pass order: runtime classes with aging, fair share within a class, and the lazy
merge over a kept JobQueue giving exactly the order a full sort of every job gives."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_scheduler_properties import NOW as WORLD_NOW
from test_scheduler_properties import World, worlds

from credits.jobs.fairshare import FairShare, job_rank, priority
from credits.jobs.job_queue import SUBMISSION, JobQueue
from credits.jobs.queue_order import FairShareOrder, FifoOrder, pass_order
from credits.jobs.runtime_classes import (
    TIERED_CLASS_BOUNDS_S,
    base_class,
    effective_class,
    runtime_step,
)
from credits.jobs.scheduler import Policy, ProjectShare, QueuedJob, RunningJob, plan

NOW = 1_000_000.0
HOUR = 3600
TIERED = Policy(class_bounds_s=TIERED_CLASS_BOUNDS_S)
FLAVOURS = ("a100", "h100")


def fits(flavour: str, gpus: int) -> bool:
    # a100: 8-GPU nodes, gangs of two at most; h100 has no nodes at all.
    return flavour == "a100" and (gpus <= 8 or gpus == 16)


def job(job_id: int, project: int = 1, *, runtime: int = HOUR, waited: float = 60.0) -> QueuedJob:
    return QueuedJob(job_id, project, "a100", 1, runtime, NOW - waited)


def make_order(
    jobs: Iterable[QueuedJob], policy: Policy, table: dict[int, ProjectShare] | None = None
) -> FairShareOrder | FifoOrder:
    jobs = list(jobs)
    table = table or {p: ProjectShare(p, 1.0, 0.0) for p in {j.project_id for j in jobs}}
    return pass_order(
        jobs,
        fits=fits,
        shares=table,
        held={},
        running_projects=set(),
        pool_gpus=64,
        now=NOW,
        policy=policy,
    )


def order_of(
    jobs: Iterable[QueuedJob], policy: Policy, table: dict[int, ProjectShare] | None = None
) -> list[int]:
    return [j.job_id for j in make_order(jobs, policy, table)]


# Behaviour


def test_a_shorter_class_goes_first_whatever_the_fair_share() -> None:
    table = {1: ProjectShare(1, 1.0, 0.0), 2: ProjectShare(2, 1.0, 1e9)}
    long = job(1, project=1, runtime=24 * HOUR)
    short = job(2, project=2, runtime=HOUR)
    assert order_of([long, short], TIERED, table) == [2, 1]


def test_waiting_promotes_a_job_one_class_per_aging_period() -> None:
    policy = replace(TIERED, class_aging_s=4 * HOUR)
    # Base class 3 (over 24 h); 8 h 10 min waited: two promotions, class 1.
    old_long = job(1, runtime=48 * HOUR, waited=8 * HOUR + 600)
    assert (
        effective_class(
            base_class(48 * HOUR, policy.class_bounds_s), NOW - 8 * HOUR - 600, NOW, 4 * HOUR
        )
        == 1
    )
    medium = job(2, project=2, runtime=4 * HOUR, waited=60)  # class 1, barely waited
    next_class = job(3, project=3, runtime=24 * HOUR, waited=60)  # class 2
    assert order_of([next_class, medium, old_long], policy) == [1, 2, 3]
    # Without aging the long job stays last.
    assert order_of([next_class, medium, old_long], replace(policy, class_aging_s=0)) == [2, 3, 1]


def test_a_long_job_is_never_starved_by_short_newcomers() -> None:
    policy = TIERED
    long = job(1, runtime=72 * HOUR, waited=12 * HOUR + 1)  # three promotions: class 0
    newcomers = [job(10 + i, project=2, runtime=600, waited=i) for i in range(5)]
    assert order_of([*newcomers, long], policy)[0] == 1


def test_within_a_class_the_project_below_its_share_goes_first() -> None:
    table = {1: ProjectShare(1, 1.0, 9e8), 2: ProjectShare(2, 1.0, 1e8)}
    heavy = job(1, project=1, runtime=HOUR, waited=3000)
    light = job(2, project=2, runtime=HOUR, waited=60)
    assert order_of([heavy, light], Policy(running_charge_s=0), table) == [2, 1]


def test_one_class_for_all_when_there_are_no_bounds_as_by_default() -> None:
    table = {1: ProjectShare(1, 1.0, 0.0), 2: ProjectShare(2, 1.0, 1e9)}
    long = job(1, project=1, runtime=24 * HOUR)
    short = job(2, project=2, runtime=HOUR)
    assert order_of([long, short], Policy(), table) == [1, 2]


def test_a_job_declared_at_a_bound_is_in_the_class_below_it() -> None:
    bounds = TIERED_CLASS_BOUNDS_S
    assert [
        base_class(s, bounds) for s in (60, HOUR, HOUR + 1, 4 * HOUR, 24 * HOUR, 25 * HOUR)
    ] == [
        0,
        0,
        1,
        1,
        2,
        3,
    ]


def test_backfill_gives_the_deferred_flavours_jobs_shortest_step_first() -> None:
    jobs = [job(1, runtime=3 * HOUR), job(2, runtime=600, waited=10), job(3, runtime=2 * HOUR)]
    order = make_order(jobs, Policy())
    assert isinstance(order, FairShareOrder)
    walk = iter(order)
    assert next(walk).job_id == 2
    order.defer("a100")
    assert list(walk) == []
    assert [j.job_id for j in order.backfill("a100")] == [3, 1]


def test_fifo_order_is_submission_order_and_backfills_shortest_first() -> None:
    jobs = [job(1, runtime=3 * HOUR, waited=30), job(2, waited=20), job(3, runtime=60, waited=10)]
    order = FifoOrder(jobs)
    walk = iter(order)
    assert next(walk).job_id == 1
    order.defer("a100")
    assert list(walk) == []
    assert [j.job_id for j in order.backfill("a100")] == [3, 2]


def test_shortest_order_is_declared_runtime_first_across_projects() -> None:
    jobs = [
        job(1, 1, runtime=3 * HOUR, waited=300),
        job(2, 2, runtime=HOUR, waited=10),
        job(3, 1, runtime=HOUR, waited=20),
        job(4, 2, runtime=60, waited=5),
    ]
    table = {1: ProjectShare(1, 1.0, 0.0), 2: ProjectShare(2, 1.0, 10_000.0)}
    order = make_order(jobs, Policy(ordering="shortest"), table)
    # Fair share would serve project 1 first; this order does not look at projects.
    assert [j.job_id for j in order] == [4, 3, 2, 1]


# The lazy merge equals the full sort


@dataclass(frozen=True)
class Case:
    jobs: list[QueuedJob]
    shares: dict[int, ProjectShare]
    held: dict[int, int]
    policy: Policy
    actions: dict[int, str]
    seed: int


class Caller:
    """What plan() does with each job an order gives: starts it, skips it, or closes or
    defers its flavour (only while walking), as the case says for that job."""

    def __init__(self, case: Case, order: FairShareOrder | FifoOrder | None = None) -> None:
        self.case = case
        self.order = order
        self.held = dict(case.held)
        self.closed: set[str] = set()
        self.deferred: list[str] = []
        self.seen: list[tuple[str, int]] = []
        self.fair: FairShare | None = None

    def act(self, phase: str, j: QueuedJob) -> None:
        self.seen.append((phase, j.job_id))
        action = self.case.actions[j.job_id]
        if action == "start":
            self.held[j.project_id] = self.held.get(j.project_id, 0) + j.gpus
            if self.order is not None:
                self.order.charge(j.project_id, j.gpus)
            if self.fair is not None:
                self.fair.charge(j.project_id, j.gpus)
        elif phase != "walk" or j.flavour in self.closed or action == "skip":
            return
        elif action == "close":
            self.closed.add(j.flavour)
            if self.order is not None:
                self.order.close(j.flavour)
        else:
            self.closed.add(j.flavour)
            self.deferred.append(j.flavour)
            if self.order is not None:
                self.order.defer(j.flavour)


def lazy_order(case: Case, queue: JobQueue | list[QueuedJob]) -> list[tuple[str, int]]:
    """pass_order() walked the way plan() walks it."""
    caller = Caller(case)
    order = pass_order(
        queue,
        fits=fits,
        shares=case.shares,
        held=caller.held,
        running_projects=RUNNING_PROJECTS,
        pool_gpus=64,
        now=NOW,
        policy=case.policy,
    )
    caller.order = order
    for j in order:
        caller.act("walk", j)
    for flavour in sorted(caller.deferred):
        for j in order.backfill(flavour):
            caller.act("backfill", j)
    return caller.seen


def reference_order(case: Case) -> list[tuple[str, int]]:
    """The order by definition, recomputed from every remaining job at every step."""
    policy, shares = case.policy, case.shares
    caller = Caller(case)
    eligible = [
        j
        for j in case.jobs
        if j.project_id in shares and shares[j.project_id].can_start and fits(j.flavour, j.gpus)
    ]
    active = {j.project_id for j in eligible} | RUNNING_PROJECTS
    fair = caller.fair = FairShare(shares, active, caller.held, 64, policy.running_charge_s)

    def capped(project: int) -> bool:
        cap = shares[project].max_concurrent_gpus
        return cap is not None and caller.held.get(project, 0) >= cap

    def klass(j: QueuedJob) -> int:
        base = base_class(j.max_runtime_s, policy.class_bounds_s)
        return effective_class(base, j.submitted_at, NOW, policy.class_aging_s)

    def pick(candidates: list[QueuedJob]) -> QueuedJob:
        top_class = min(klass(j) for j in candidates)
        in_class = [j for j in candidates if klass(j) == top_class]

        def turn(project: int) -> tuple[float, float, int]:
            oldest = min((j for j in in_class if j.project_id == project), key=SUBMISSION)
            return (-priority(oldest, fair.factor(project), policy, NOW), *SUBMISSION(oldest))

        chosen = min({j.project_id for j in in_class}, key=turn)
        return min(
            (j for j in in_class if j.project_id == chosen),
            key=lambda j: (-job_rank(j, policy, NOW), j.submitted_at, j.job_id),
        )

    def left(flavours: Callable[[str], bool]) -> list[QueuedJob]:
        tried = {job_id for _, job_id in caller.seen}
        return [
            j
            for j in eligible
            if j.job_id not in tried and flavours(j.flavour) and not capped(j.project_id)
        ]

    while walk := left(lambda flavour: flavour not in caller.closed):
        caller.act("walk", pick(walk))
    for deferred in sorted(caller.deferred):
        while backlog := left(lambda flavour, deferred=deferred: flavour == deferred):
            shortest = min(runtime_step(j.max_runtime_s) for j in backlog)
            caller.act(
                "backfill", pick([j for j in backlog if runtime_step(j.max_runtime_s) == shortest])
            )
    return caller.seen


PLAN_POLICIES = (
    Policy(),
    TIERED,
    Policy(backfill_order="priority"),
    Policy(class_bounds_s=(600, 1800), class_aging_s=1200),
    Policy(ordering="fifo"),
)
RUNTIMES = (60, 600, HOUR, HOUR + 1, 2 * HOUR, 4 * HOUR, 5 * HOUR, 24 * HOUR, 48 * HOUR, 7 * 86400)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    count = draw(st.integers(0, 40))
    jobs = [
        QueuedJob(
            job_id=i + 1,
            project_id=draw(st.integers(1, 4)),
            flavour=draw(st.sampled_from((*FLAVOURS, "a100"))),
            gpus=draw(st.sampled_from((1, 2, 3, 8, 16, 24))),
            max_runtime_s=draw(st.sampled_from(RUNTIMES) | st.integers(1, 10 * 86400)),
            # Some submitted in the same second, some "in the future" (a clock step).
            submitted_at=NOW - draw(st.sampled_from((0.0, -5.0, 30.0)) | st.floats(0, 3 * 86400)),
        )
        for i in range(count)
    ]
    shares = {
        p: ProjectShare(
            p,
            entitlement=draw(st.sampled_from((0.0, 1.0, 3.0))),
            decayed_usage=draw(st.just(0.0) | st.floats(0, 1e6)),
            can_start=draw(st.booleans() | st.just(True)),
            max_concurrent_gpus=draw(st.none() | st.integers(0, 20)),
        )
        for p in range(1, 4)  # project 4 has no share: never eligible
    }
    held = {p: draw(st.integers(0, 10)) for p in range(1, 5)}
    policy = Policy(
        class_bounds_s=draw(st.sampled_from(((HOUR, 4 * HOUR, 24 * HOUR), (), (600,)))),
        class_aging_s=draw(st.sampled_from((0.0, HOUR, 4 * HOUR))),
        running_charge_s=draw(st.sampled_from((0.0, 86400.0))),
        # Without fair share, projects take turns by the age of their longest-waiting job.
        fairshare_weight=draw(st.sampled_from((0.0, 1000.0))),
        age_saturation_s=draw(st.sampled_from((7 * 86400.0, 86400.0))),
        age_weight=draw(st.sampled_from((0.0, 100.0))),
        response_weight=draw(st.sampled_from((0.0, 1000.0))),
    )
    # Mostly starts and skips, so that the walk goes on long enough to compare.
    choices = ("start",) * 9 + ("skip",) * 9 + ("close", "defer")
    actions = {j.job_id: draw(st.sampled_from(choices)) for j in jobs}
    return Case(jobs, shares, held, policy, actions, draw(st.integers(0, 2**32)))


def kept_queue(case: Case) -> JobQueue:
    """The same jobs as a queue kept between passes: added in another order, with others
    added and discarded on the way."""
    rng = random.Random(case.seed)  # noqa: S311 - a reproducible shuffle, not a secret
    queue = JobQueue(class_bounds_s=case.policy.class_bounds_s)
    stale = [replace(j, job_id=j.job_id + 1000) for j in case.jobs[: len(case.jobs) // 2]]
    pending = [*case.jobs, *stale]
    rng.shuffle(pending)
    for j in pending:
        queue.add(j)
        if rng.random() < 0.2:
            queue.add(replace(j, max_runtime_s=j.max_runtime_s + 1))  # replaced before the pass
            queue.add(j)
    for j in stale:
        queue.discard(j.job_id)
    return queue


RUNNING_PROJECTS = frozenset({2})


@settings(max_examples=300, deadline=None)
@given(cases())
def test_the_lazy_order_of_a_kept_queue_is_the_full_sort(case: Case) -> None:
    expected = reference_order(case)
    assert lazy_order(case, case.jobs) == expected
    assert lazy_order(case, kept_queue(case)) == expected


@settings(max_examples=100, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_the_order_does_not_depend_on_the_input_order(case: Case, rng: random.Random) -> None:
    shuffled = list(case.jobs)
    rng.shuffle(shuffled)
    assert lazy_order(case, shuffled) == lazy_order(case, case.jobs)


# plan() with a queue kept between passes


@settings(max_examples=100, deadline=None)
@given(
    worlds(),
    st.sampled_from(PLAN_POLICIES),
    st.lists(st.floats(0, 6 * 3600), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_plan_over_a_kept_queue_is_plan_over_the_list_pass_after_pass(
    world: World, policy: Policy, gaps: list[float], rng: random.Random
) -> None:
    kept = JobQueue(class_bounds_s=policy.class_bounds_s)
    for queued_job in world.queued:
        kept.add(queued_job)
    queued, running, now = list(world.queued), list(world.running), WORLD_NOW
    for step, gap in enumerate(gaps):
        expected = plan(queued, running, world.nodes, world.shares, now, policy)
        assert plan(kept, running, world.nodes, world.shares, now, policy) == expected
        # The started jobs leave the queue and run; a few new ones come; time passes.
        by_id = {queued_job.job_id: queued_job for queued_job in queued}
        for start in expected.starts:
            started_job = by_id[start.job_id]
            kept.discard(start.job_id)
            queued.remove(started_job)
            running.append(
                RunningJob(
                    started_job.job_id,
                    started_job.project_id,
                    started_job.flavour,
                    start.placement,
                    now,
                    started_job.max_runtime_s,
                )
            )
        for offset in range(rng.randrange(3)):
            template = rng.choice(world.queued) if world.queued else None
            if template is not None:
                fresh = replace(template, job_id=10_000 * (step + 1) + offset, submitted_at=now)
                kept.add(fresh)
                queued.append(fresh)
        now += gap
