"""A RunningSet kept between passes plans exactly as the plain list of its jobs does.

The set keeps each flavour's pool up to date one job at a time and a pass plans
on a copy; whenever that copy would differ from a rebuild (a job past its end,
a move under way, an over-committed node) the pass rebuilds. Either way the
plan must be the one the plain list gives.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_scheduler_moves_properties import POLICIES as MOVE_POLICIES
from test_scheduler_moves_properties import worlds as fragmented_worlds
from test_scheduler_properties import NOW, World
from test_scheduler_properties import POLICIES as PLAIN_POLICIES
from test_scheduler_properties import worlds as plain_worlds

from credits.jobs.executors.base import NodeSlice
from credits.jobs.placement import Pool, build_pools, hold_running
from credits.jobs.scheduler import Node, Plan, Policy, RunningJob, RunningSet, plan

POLICIES = PLAIN_POLICIES + MOVE_POLICIES


def plans(world: World, kept: RunningSet, now: float, policy: Policy) -> tuple[Plan, Plan]:
    """The plan over the kept set, and over a plain list of the same jobs."""
    with_set = plan(world.queued, kept, world.nodes, world.shares, now, policy)
    with_list = plan(world.queued, list(kept), world.nodes, world.shares, now, policy)
    return with_set, with_list


def pool_state(pool: Pool) -> tuple[object, ...]:
    return (
        pool.free,
        pool.node_end,
        pool.pinned,
        pool.buckets,
        pool.sides,
        pool.total_free,
        sorted(pool.ends),
    )


def assert_kept_pools_equal_a_rebuild(
    world: World, kept: RunningSet, now: float, policy: Policy
) -> None:
    copies = kept.pools_for(world.nodes, now, policy)
    if copies is None:
        return  # this pass rebuilds: the plans are compared anyway
    rebuilt = build_pools(world.nodes, end_fit=policy.end_time_fit, pack=policy.pack_by_movability)
    assert hold_running(list(kept), rebuilt, now, policy.max_moves) == kept.held()
    for flavour, pool in rebuilt.items():
        assert pool_state(copies[flavour]) == pool_state(pool)


@st.composite
def churn(draw: st.DrawFn, world: World) -> list[tuple[str, RunningJob]]:
    """Jobs ending, moves finishing (vacating cleared) and jobs coming back, in some order."""
    steps: list[tuple[str, RunningJob]] = []
    for job in world.running:
        action = draw(st.sampled_from(("keep", "keep", "end", "settle", "end-and-return")))
        if action == "end":
            steps.append(("discard", job))
        elif action == "settle":
            steps.append(("add", replace(job, vacating=())))
        elif action == "end-and-return":
            steps += [("discard", job), ("add", job)]
    return draw(st.permutations(steps))


def apply(kept: RunningSet, steps: list[tuple[str, RunningJob]]) -> None:
    for action, job in steps:
        if action == "discard":
            kept.discard(job.job_id)
        else:
            kept.add(job)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(plain_worlds(), fragmented_worlds()),
    st.sampled_from(POLICIES),
    st.data(),
)
def test_a_kept_set_plans_as_the_list_of_its_jobs_pass_after_pass(
    world: World, policy: Policy, data: st.DataObject
) -> None:
    kept = RunningSet(world.running)
    # Later passes: some running jobs end or come back, and time moves on (some overdue).
    for _ in range(3):
        now = NOW + data.draw(st.sampled_from((0.0, 0.0, 30.0, 700.0, 4000.0)))
        assert_kept_pools_equal_a_rebuild(world, kept, now, policy)
        with_set, with_list = plans(world, kept, now, policy)
        assert with_set == with_list
        apply(kept, data.draw(churn(world)))


@settings(max_examples=60, deadline=None)
@given(plain_worlds(), st.sampled_from(PLAIN_POLICIES))
def test_an_over_committed_node_plans_as_a_rebuild_and_recovers(
    world: World, policy: Policy
) -> None:
    kept = RunningSet(world.running)
    node = world.nodes[0]
    extra = RunningJob(
        job_id=99_999,
        project_id=1,
        flavour=node.flavour,
        placement=(NodeSlice(node.name, node.gpus),),
        started_at=NOW,
        max_runtime_s=3600,
    )
    plans(world, kept, NOW, policy)  # the kept pools exist before the node is over-committed
    kept.add(extra)
    with_set, with_list = plans(world, kept, NOW, policy)
    assert with_set == with_list
    kept.discard(extra.job_id)
    with_set, with_list = plans(world, kept, NOW, policy)
    assert with_set == with_list


def test_the_kept_pools_are_used_when_nothing_forces_a_rebuild() -> None:
    nodes = [Node("n-0", "gpu", 8), Node("n-1", "gpu", 8)]
    job = RunningJob(1, 1, "gpu", (NodeSlice("n-0", 4),), started_at=NOW, max_runtime_s=3600)
    kept = RunningSet([job])
    first = kept.pools_for(nodes, NOW, Policy())
    assert first is not None
    assert first["gpu"].free == {"n-0": 4, "n-1": 8}
    first["gpu"].take("n-1", 8, NOW + 60)  # a pass changes its copy only
    second = kept.pools_for(nodes, NOW, Policy())
    assert second is not None
    assert second["gpu"].free == {"n-0": 4, "n-1": 8}
    kept.discard(1)
    third = kept.pools_for(nodes, NOW, Policy())
    assert third is not None
    assert third["gpu"].free == {"n-0": 8, "n-1": 8}
    assert third["gpu"].ends == []


def test_a_job_past_its_end_or_a_move_under_way_makes_the_pass_rebuild() -> None:
    nodes = [Node("n-0", "gpu", 8)]
    job = RunningJob(1, 1, "gpu", (NodeSlice("n-0", 4),), started_at=NOW, max_runtime_s=60)
    kept = RunningSet([job])
    assert kept.pools_for(nodes, NOW + 60, Policy()) is not None
    assert kept.pools_for(nodes, NOW + 61, Policy()) is None
    moving = replace(job, job_id=2, max_runtime_s=3600, vacating=(NodeSlice("n-0", 2),))
    kept.add(moving)
    assert kept.pools_for(nodes, NOW, Policy()) is None
    kept.add(replace(moving, vacating=()))
    assert kept.pools_for(nodes, NOW, Policy()) is not None


def test_a_running_set_holds_a_job_while_that_very_job_runs() -> None:
    job = RunningJob(1, 1, "gpu", (NodeSlice("n-0", 4),), started_at=NOW, max_runtime_s=3600)
    moved = replace(job, placement=(NodeSlice("n-1", 4),))
    kept = RunningSet([job])

    assert job in kept
    assert moved not in kept
    kept.add(moved)
    assert moved in kept and job not in kept
    kept.discard(1)
    assert moved not in kept
    assert "job 1" not in kept
