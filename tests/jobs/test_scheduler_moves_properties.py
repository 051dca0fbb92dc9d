"""Properties of defragmenting moves over random fragmented pools with checkpointable jobs."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_scheduler_properties import NOW, World, run

from credits.jobs.executors.base import NodeSlice
from credits.jobs.scheduler import Node, Plan, Policy, ProjectShare, QueuedJob, RunningJob

RUNTIMES = (60, 600, 3600, 4 * 3600, 24 * 3600)
POLICIES = (
    Policy(),
    Policy(max_moves=1),
    Policy(restart_cost_s=30.0),
    Policy(ordering="fifo", end_time_fit=False),
    Policy(backfill=False),
    Policy(pack_by_movability=True),
)


@st.composite
def running_jobs(draw: st.DrawFn, nodes: list[Node]) -> list[RunningJob]:
    """Nodes mostly partly used by small jobs (a fragmented pool); some jobs mid-move or gangs.

    A moving job holds its target (``placement``) and the node it leaves
    (``vacating``); a gang holds slices on two nodes.
    """
    left = {node.name: node.gpus for node in nodes}
    jobs: list[RunningJob] = []
    for node in nodes:
        for _ in range(draw(st.integers(0, 3))):
            others = sorted(name for name, free in left.items() if free > 0 and name != node.name)
            if left[node.name] == 0:
                break
            # Small jobs, at most half a node: they leave holes everywhere.
            gpus = draw(st.integers(1, max(min(left[node.name], node.gpus // 2), 1)))
            left[node.name] -= gpus
            placement: tuple[NodeSlice, ...] = (NodeSlice(node.name, gpus),)
            vacating: tuple[NodeSlice, ...] = ()
            kind = draw(st.sampled_from(("plain",) * 6 + ("moving", "gang")))
            others = [name for name in others if left[name] >= gpus]
            if kind != "plain" and others:
                other = draw(st.sampled_from(others))
                left[other] -= gpus
                if kind == "moving":
                    vacating = (NodeSlice(other, gpus),)
                else:
                    placement = (*placement, NodeSlice(other, gpus))
            jobs.append(
                RunningJob(
                    job_id=1000 + len(jobs),
                    project_id=draw(st.integers(1, 3)),
                    flavour=node.flavour,
                    placement=placement,
                    started_at=NOW - draw(st.integers(0, 5000)),
                    max_runtime_s=draw(st.sampled_from(RUNTIMES[1:])),
                    checkpointable=draw(st.sampled_from((True,) * 5 + (False,))),
                    moves=draw(st.sampled_from((0,) * 6 + (1, 2, 3))),
                    vacating=vacating,
                )
            )
    return jobs


@st.composite
def worlds(draw: st.DrawFn) -> World:
    per_node = draw(st.sampled_from((4, 8)))
    nodes = [Node(f"g-{i}", "gpu", per_node) for i in range(draw(st.integers(2, 6)))]
    queue = [
        QueuedJob(
            job_id=i,
            project_id=draw(st.integers(1, 3)),
            flavour="gpu",
            gpus=draw(st.sampled_from((1, 2, 3, 4, 8, 8, 8, 16))),
            max_runtime_s=draw(st.sampled_from(RUNTIMES)),
            submitted_at=NOW - draw(st.integers(0, 4000)),
            checkpointable=draw(st.booleans()),
        )
        for i in range(draw(st.integers(1, 5)))
    ]
    shares = {p: ProjectShare(p, entitlement=1.0, decayed_usage=0.0) for p in (1, 2, 3)}
    return World(queue, draw(running_jobs(nodes)), nodes, shares)


def held_now(world: World, result: Plan) -> dict[str, int]:
    """GPUs held on each node right after the plan: old and new slices of a moving job both."""
    used: dict[str, int] = defaultdict(int)
    parts = [part for job in world.running for part in (*job.placement, *job.vacating)]
    parts += [part for start in result.starts for part in start.placement]
    parts += [part for move in result.moves for part in move.target]
    for part in parts:
        used[part.node] += part.gpus
    return used


@settings(max_examples=200, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_no_node_is_over_committed_including_during_a_move(world: World, policy: Policy) -> None:
    used = held_now(world, run(world, policy))
    for node in world.nodes:
        assert used[node.name] <= node.gpus


@settings(max_examples=600, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_a_move_never_targets_a_free_or_reserved_node(world: World, policy: Policy) -> None:
    result = run(world, policy)
    occupied = {part.node for job in world.running for part in (*job.placement, *job.vacating)}
    occupied |= {part.node for start in result.starts for part in start.placement}
    reserved = {part.node for r in result.reservations for part in r.placement}
    for move in result.moves:
        for part in move.target:
            assert part.node in occupied
            assert part.node not in reserved


@settings(max_examples=200, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_only_checkpointable_single_node_jobs_with_moves_left_and_not_moving_are_moved(
    world: World, policy: Policy
) -> None:
    jobs = {job.job_id: job for job in world.running}
    moved = [move.job_id for move in run(world, policy).moves]
    assert len(moved) == len(set(moved))
    for job_id in moved:
        job = jobs[job_id]
        assert job.checkpointable
        assert job.moves < policy.max_moves
        assert not job.vacating
        assert len(job.placement) == 1
        assert sum(part.gpus for part in job.placement) == job.gpus


@settings(max_examples=200, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_moves_make_whole_room_for_the_blocked_job_by_its_reservation(
    world: World, policy: Policy
) -> None:
    result = run(world, policy)
    capacity = {node.name: node.gpus for node in world.nodes}
    moved = {move.job_id for move in result.moves}
    for_jobs = {move.for_job_id for move in result.moves}
    for reservation in result.reservations:
        if reservation.job_id not in for_jobs:
            continue
        at = reservation.start_at
        assert at == NOW + policy.restart_cost_s
        # By then: moved jobs are on their targets, moving jobs have left, others end as declared.
        used: dict[str, int] = defaultdict(int)
        for job in world.running:
            if job.job_id not in moved and job.started_at + job.max_runtime_s > at:
                for part in job.placement:
                    used[part.node] += part.gpus
        for start in result.starts:
            for part in start.placement:
                used[part.node] += part.gpus
        for move in result.moves:
            for part in move.target:
                used[part.node] += part.gpus
        head = next(job for job in world.queued if job.job_id == reservation.job_id)
        assert sum(part.gpus for part in reservation.placement) == head.gpus
        for part in reservation.placement:
            assert capacity[part.node] - used[part.node] >= part.gpus


@settings(max_examples=100, deadline=None)
@given(worlds(), st.sampled_from(POLICIES), st.randoms(use_true_random=False))
def test_the_same_inputs_in_any_order_give_the_same_moves(
    world: World, policy: Policy, rng: random.Random
) -> None:
    shuffled = replace(
        world,
        queued=rng.sample(world.queued, len(world.queued)),
        running=rng.sample(world.running, len(world.running)),
        nodes=rng.sample(world.nodes, len(world.nodes)),
    )
    assert run(world, policy) == run(shuffled, policy)


@settings(max_examples=100, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_a_job_moved_max_moves_times_is_never_moved_again(world: World, policy: Policy) -> None:
    worn = [replace(job, moves=policy.max_moves) for job in world.running]
    assert run(replace(world, running=worn), policy).moves == ()


@settings(max_examples=100, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_a_non_checkpointable_job_is_never_moved(world: World, policy: Policy) -> None:
    fixed = [replace(job, checkpointable=False) for job in world.running]
    assert run(replace(world, running=fixed), policy).moves == ()


@settings(max_examples=200, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_moves_are_planned_only_when_fragmentation_alone_blocks_the_job(
    world: World, policy: Policy
) -> None:
    result = run(world, policy)
    if not result.moves:
        return
    ready_at = NOW + policy.restart_cost_s
    vacated = {part.node for job in world.running for part in job.vacating}
    # What the running jobs leave free now (starts in the pass only take more of it),
    # and what they free by the time the moves are done.
    held = held_now(world, replace(result, moves=(), starts=()))
    ending: dict[str, int] = defaultdict(int)
    for job in world.running:
        if job.started_at + job.max_runtime_s <= ready_at:
            for part in job.placement:
                ending[part.node] += part.gpus
    free_now = {n.name: n.gpus - held[n.name] for n in world.nodes if n.name not in vacated}
    gathered = sum(free_now[name] + ending[name] for name in free_now)
    for head_id in {move.for_job_id for move in result.moves}:
        head = next(job for job in world.queued if job.job_id == head_id)
        assert head.gpus <= gathered
        assert head.job_id not in {start.job_id for start in result.starts}
