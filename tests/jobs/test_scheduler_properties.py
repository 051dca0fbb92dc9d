"""Properties of a scheduling pass over random pools, running jobs, queues and shares."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from credits.jobs.executors.base import NodeSlice
from credits.jobs.scheduler import (
    Node,
    Plan,
    Policy,
    ProjectShare,
    QueuedJob,
    RunningJob,
    plan,
)

NOW = 10_000.0
RUNTIMES = (300, 600, 1800, 3600, 7200)
POLICIES = (
    Policy(),
    Policy(backfill=False),
    Policy(ordering="fifo"),
    Policy(ordering="fifo", backfill=False),
    Policy(ordering="shortest"),
)


@dataclass(frozen=True)
class World:
    queued: list[QueuedJob]
    running: list[RunningJob]
    nodes: list[Node]
    shares: dict[int, ProjectShare]


@st.composite
def flavour_nodes(draw: st.DrawFn, flavour: str) -> list[Node]:
    per_node = draw(st.sampled_from((4, 8)))
    count = draw(st.integers(1, 4))
    return [Node(f"{flavour}-{i}", flavour, per_node) for i in range(count)]


@st.composite
def running_on(draw: st.DrawFn, node: Node, first_id: int) -> list[RunningJob]:
    """Jobs already on one node, never more GPUs than it has."""
    jobs: list[RunningJob] = []
    left = node.gpus
    for offset in range(draw(st.integers(0, 3))):
        if left == 0:
            break
        gpus = draw(st.integers(1, left))
        left -= gpus
        jobs.append(
            RunningJob(
                job_id=first_id + offset,
                project_id=draw(st.integers(1, 4)),
                flavour=node.flavour,
                placement=(NodeSlice(node.name, gpus),),
                started_at=NOW - draw(st.integers(0, 5000)),
                max_runtime_s=draw(st.sampled_from(RUNTIMES)),
            )
        )
    return jobs


@st.composite
def project_shares(draw: st.DrawFn, *, caps: bool) -> dict[int, ProjectShare]:
    # Project 4 never has a share: its jobs must never start.
    table = {}
    for project in (1, 2, 3):
        table[project] = ProjectShare(
            project_id=project,
            entitlement=draw(st.sampled_from((0.0, 1.0, 2.0, 5.0))),
            decayed_usage=draw(st.floats(0, 1e6)),
            can_start=draw(st.booleans()),
            max_concurrent_gpus=draw(st.none() | st.integers(0, 24)) if caps else None,
        )
    return table


@st.composite
def worlds(draw: st.DrawFn, *, caps: bool = True) -> World:
    nodes = draw(flavour_nodes("a100"))
    if draw(st.booleans()):
        nodes += draw(flavour_nodes("h100"))
    running: list[RunningJob] = []
    for node in nodes:
        running += draw(running_on(node, first_id=1000 + 10 * len(running)))
    queue = [
        QueuedJob(
            job_id=i,
            project_id=draw(st.integers(1, 4)),
            flavour=draw(st.sampled_from(sorted({n.flavour for n in nodes}))),
            gpus=draw(st.sampled_from((1, 1, 2, 3, 4, 8, 12, 16))),
            max_runtime_s=draw(st.sampled_from(RUNTIMES)),
            submitted_at=NOW - draw(st.integers(0, 4000)),
        )
        for i in range(draw(st.integers(0, 14)))
    ]
    return World(queue, running, nodes, draw(project_shares(caps=caps)))


def run(world: World, policy: Policy) -> Plan:
    return plan(world.queued, world.running, world.nodes, world.shares, NOW, policy)


def used_per_node(world: World, result: Plan, *, at: float | None = None) -> dict[str, int]:
    """GPUs in use on each node after applying the starts, at ``at`` if given (else now)."""
    runtime = {job.job_id: job.max_runtime_s for job in world.queued}
    slices = [
        (max(job.started_at + job.max_runtime_s, NOW), part)
        for job in world.running
        for part in job.placement
    ]
    slices += [
        (NOW + runtime[start.job_id], part) for start in result.starts for part in start.placement
    ]
    used: dict[str, int] = defaultdict(int)
    for end, part in slices:
        if at is None or end > at:
            used[part.node] += part.gpus
    return used


@settings(max_examples=150, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_no_node_is_over_committed_after_the_starts(world: World, policy: Policy) -> None:
    used = used_per_node(world, run(world, policy))
    for node in world.nodes:
        assert used[node.name] <= node.gpus


@settings(max_examples=150, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_the_head_fits_its_reserved_nodes_at_the_reservation_time(
    world: World, policy: Policy
) -> None:
    result = run(world, policy)
    capacity = {node.name: node.gpus for node in world.nodes}
    for reservation in result.reservations:
        assert reservation.start_at >= NOW
        used = used_per_node(world, result, at=reservation.start_at)
        head = next(job for job in world.queued if job.job_id == reservation.job_id)
        assert sum(part.gpus for part in reservation.placement) == head.gpus
        for part in reservation.placement:
            assert capacity[part.node] - used[part.node] >= part.gpus


@settings(max_examples=150, deadline=None)
@given(worlds(caps=False))
def test_backfill_never_moves_the_reservation(world: World) -> None:
    # FIFO without caps: the walk up to each head is the same with and without backfill.
    strict = run(world, Policy(ordering="fifo", backfill=False))
    eased = run(world, Policy(ordering="fifo", backfill=True))
    assert [(r.job_id, r.start_at) for r in eased.reservations] == [
        (r.job_id, r.start_at) for r in strict.reservations
    ]
    assert {s.job_id for s in strict.starts} <= {s.job_id for s in eased.starts}


@settings(max_examples=150, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_only_projects_that_may_start_get_jobs_started(world: World, policy: Policy) -> None:
    project = {job.job_id: job.project_id for job in world.queued}
    for start in run(world, policy).starts:
        share = world.shares.get(project[start.job_id])
        assert share is not None
        assert share.can_start


@settings(max_examples=100, deadline=None)
@given(worlds(), st.sampled_from(POLICIES), st.randoms(use_true_random=False))
def test_the_same_inputs_in_any_order_give_the_same_plan(
    world: World, policy: Policy, rng: random.Random
) -> None:
    shuffled = replace(
        world,
        queued=rng.sample(world.queued, len(world.queued)),
        running=rng.sample(world.running, len(world.running)),
        nodes=rng.sample(world.nodes, len(world.nodes)),
        shares=dict(reversed(world.shares.items())),
    )
    assert run(world, policy) == run(shuffled, policy)


@settings(max_examples=150, deadline=None)
@given(worlds(), st.sampled_from(POLICIES))
def test_a_started_gang_uses_only_whole_free_nodes(world: World, policy: Policy) -> None:
    per_node = {node.flavour: node.gpus for node in world.nodes}
    busy = {part.node for job in world.running for part in job.placement}
    jobs = {job.job_id: job for job in world.queued}
    for start in run(world, policy).starts:
        job = jobs[start.job_id]
        assert sum(part.gpus for part in start.placement) == job.gpus
        if job.gpus <= per_node[job.flavour]:
            assert len(start.placement) == 1
            continue
        names = [part.node for part in start.placement]
        assert len(set(names)) == len(names)
        assert all(part.gpus == per_node[job.flavour] for part in start.placement)
        assert not busy & set(names)
