"""The scheduling policy, one behaviour per test: order, fair share, caps, placement, backfill."""

from __future__ import annotations

import pytest

from credits.jobs.executors.base import NodeSlice
from credits.jobs.scheduler import (
    Node,
    Plan,
    Policy,
    ProjectShare,
    QueuedJob,
    RunningJob,
    UsageDecay,
    decayed,
    plan,
)

NOW = 1_000_000.0
FLAVOUR = "a100"
HOUR = 3600


def nodes(count: int, gpus: int = 8, flavour: str = FLAVOUR) -> list[Node]:
    return [Node(f"{flavour}-{i}", flavour, gpus) for i in range(count)]


def queued(
    job_id: int,
    *,
    project: int = 1,
    gpus: int = 1,
    runtime: int = HOUR,
    at: float = NOW - 60,
    flavour: str = FLAVOUR,
) -> QueuedJob:
    return QueuedJob(job_id, project, flavour, gpus, runtime, at)


def running(
    job_id: int,
    *slices: tuple[str, int],
    project: int = 1,
    started: float = NOW - 60,
    runtime: int = HOUR,
) -> RunningJob:
    placement = tuple(NodeSlice(node, gpus) for node, gpus in slices)
    return RunningJob(job_id, project, FLAVOUR, placement, started, runtime)


def shares(*projects: int, **overrides: ProjectShare) -> dict[int, ProjectShare]:
    table = {p: ProjectShare(p, entitlement=1.0, decayed_usage=0.0) for p in projects}
    for share in overrides.values():
        table[share.project_id] = share
    return table


def started(result: Plan) -> list[int]:
    return [start.job_id for start in result.starts]


def placement_of(result: Plan, job_id: int) -> tuple[NodeSlice, ...]:
    return next(start.placement for start in result.starts if start.job_id == job_id)


# Ordering


def test_fifo_starts_the_earliest_submission_first() -> None:
    jobs = [queued(1, gpus=8, at=NOW - 10), queued(2, gpus=8, at=NOW - 20)]
    result = plan(jobs, [], nodes(1), shares(1), NOW, Policy(ordering="fifo"))
    assert started(result) == [2]


def test_fifo_breaks_submission_ties_by_job_id() -> None:
    jobs = [queued(9, gpus=8, at=NOW - 10), queued(3, gpus=8, at=NOW - 10)]
    result = plan(jobs, [], nodes(1), shares(1), NOW, Policy(ordering="fifo"))
    assert started(result) == [3]


def test_shortest_starts_the_shortest_declared_runtime_first() -> None:
    jobs = [
        queued(1, gpus=8, runtime=4 * HOUR, at=NOW - 500),
        queued(2, gpus=8, runtime=HOUR, at=NOW - 10),
    ]
    result = plan(jobs, [], nodes(1), shares(1), NOW, Policy(ordering="shortest"))
    assert started(result) == [2]


def test_shortest_breaks_runtime_ties_by_submission() -> None:
    jobs = [queued(1, gpus=8, at=NOW - 10), queued(2, gpus=8, at=NOW - 20)]
    result = plan(jobs, [], nodes(1), shares(1), NOW, Policy(ordering="shortest"))
    assert started(result) == [2]


def test_fair_share_favours_the_under_served_project() -> None:
    table = {
        1: ProjectShare(1, entitlement=1.0, decayed_usage=900.0),
        2: ProjectShare(2, entitlement=1.0, decayed_usage=100.0),
    }
    jobs = [queued(1, project=1, gpus=8, at=NOW - 100), queued(2, project=2, gpus=8, at=NOW)]
    result = plan(jobs, [], nodes(1), table, NOW, Policy())
    assert started(result) == [2]


def test_fair_share_weighs_usage_against_entitlement() -> None:
    # Project 1 used more but is entitled to much more: it is the under-served one.
    table = {
        1: ProjectShare(1, entitlement=9.0, decayed_usage=600.0),
        2: ProjectShare(2, entitlement=1.0, decayed_usage=400.0),
    }
    jobs = [queued(1, project=1, gpus=8), queued(2, project=2, gpus=8, at=NOW - 100)]
    assert started(plan(jobs, [], nodes(1), table, NOW, Policy())) == [1]


def test_fair_share_turns_within_a_pass_as_a_project_takes_gpus() -> None:
    jobs = [queued(i, project=1, at=NOW - 100 + i) for i in range(1, 5)]
    jobs += [queued(10 + i, project=2, at=NOW - 50 + i) for i in range(1, 5)]
    result = plan(jobs, [], nodes(1, gpus=4), shares(1, 2), NOW, Policy())
    projects = sorted(job.project_id for job in jobs if job.job_id in started(result))
    assert projects == [1, 1, 2, 2]


def test_age_lifts_an_old_job_above_a_better_share() -> None:
    table = {
        1: ProjectShare(1, entitlement=1.0, decayed_usage=600.0),
        2: ProjectShare(2, entitlement=1.0, decayed_usage=400.0),
    }
    policy = Policy(fairshare_weight=10.0, age_weight=100.0, running_charge_s=0)
    old = queued(1, project=1, gpus=8, at=NOW - 7 * 86400)
    result = plan([old, queued(2, project=2, gpus=8)], [], nodes(1), table, NOW, policy)
    assert started(result) == [1]


def test_equal_priority_goes_to_the_earlier_submission_then_lower_id() -> None:
    jobs = [queued(7, project=2, gpus=8, at=NOW), queued(5, project=1, gpus=8, at=NOW)]
    policy = Policy(running_charge_s=0)
    assert started(plan(jobs, [], nodes(1), shares(1, 2), NOW, policy)) == [5]


def test_a_project_with_no_entitlement_comes_after_entitled_ones() -> None:
    table = shares(1, zero=ProjectShare(2, entitlement=0.0, decayed_usage=0.0))
    jobs = [queued(1, project=2, gpus=8, at=NOW - 100), queued(2, project=1, gpus=8)]
    assert started(plan(jobs, [], nodes(1), table, NOW, Policy())) == [2]


# Eligibility


def test_a_job_of_an_unknown_project_never_starts_and_blocks_nothing() -> None:
    jobs = [queued(1, project=99, gpus=8, at=NOW - 100), queued(2, gpus=8)]
    result = plan(jobs, [], nodes(1), shares(1), NOW, Policy(backfill=False))
    assert started(result) == [2]
    assert result.reservations == ()


def test_a_project_that_cannot_start_is_skipped_and_never_the_head() -> None:
    table = shares(1, stopped=ProjectShare(2, 1.0, 0.0, can_start=False))
    jobs = [queued(1, project=2, at=NOW - 100), queued(2, project=1)]
    result = plan(jobs, [], nodes(1, gpus=1), table, NOW, Policy(backfill=False))
    assert started(result) == [2]
    assert result.reservations == ()


def test_a_job_over_its_project_cap_is_skipped_and_never_the_head() -> None:
    table = shares(2, capped=ProjectShare(1, 1.0, 0.0, max_concurrent_gpus=4))
    hold = running(1, ("a100-0", 3), project=1)
    jobs = [queued(2, project=1, gpus=2, at=NOW - 100), queued(3, project=2, gpus=2)]
    result = plan(jobs, [hold], nodes(1), table, NOW, Policy(backfill=False))
    assert started(result) == [3]
    assert result.reservations == ()


def test_the_cap_counts_jobs_started_earlier_in_the_same_pass() -> None:
    table = {1: ProjectShare(1, 1.0, 0.0, max_concurrent_gpus=3)}
    jobs = [queued(1, gpus=2, at=NOW - 2), queued(2, gpus=2, at=NOW - 1), queued(3, gpus=1, at=NOW)]
    assert started(plan(jobs, [], nodes(1), table, NOW, Policy())) == [1, 3]


def test_a_job_that_can_never_fit_is_never_the_head() -> None:
    jobs = [queued(1, gpus=12, at=NOW - 100), queued(2, gpus=64, at=NOW - 90), queued(3)]
    result = plan(jobs, [], nodes(2), shares(1), NOW, Policy(backfill=False))
    assert started(result) == [3]
    assert result.reservations == ()


# Placement


def test_a_single_node_job_goes_to_the_fullest_node_that_fits() -> None:
    busy = [running(1, ("a100-0", 6)), running(2, ("a100-1", 4)), running(3, ("a100-2", 5))]
    result = plan([queued(9, gpus=3)], busy, nodes(3), shares(1), NOW, Policy())
    assert placement_of(result, 9) == (NodeSlice("a100-2", 3),)


def test_best_fit_ties_go_to_the_first_node_name() -> None:
    result = plan([queued(9, gpus=2)], [], list(reversed(nodes(3))), shares(1), NOW, Policy())
    assert placement_of(result, 9) == (NodeSlice("a100-0", 2),)


def test_a_running_job_on_an_unknown_node_takes_no_capacity() -> None:
    drained = running(1, ("gone-7", 8))
    result = plan([queued(9, gpus=8)], [drained], nodes(1), shares(1), NOW, Policy())
    assert started(result) == [9]


def test_gang_job_takes_whole_nodes_or_nothing() -> None:
    busy = [running(1, ("a100-1", 1))]
    result = plan([queued(9, gpus=16)], busy, nodes(3), shares(1), NOW, Policy())
    assert placement_of(result, 9) == (NodeSlice("a100-0", 8), NodeSlice("a100-2", 8))
    result = plan([queued(9, gpus=24)], busy, nodes(3), shares(1), NOW, Policy())
    assert started(result) == []


def test_each_flavour_is_its_own_pool() -> None:
    pool = nodes(1) + nodes(1, flavour="h100")
    jobs = [
        queued(1, gpus=8, at=NOW - 9),
        queued(2, gpus=8, flavour="h100"),
        queued(3, gpus=8, at=NOW),
    ]
    result = plan(jobs, [], pool, shares(1), NOW, Policy(backfill=False))
    assert sorted(started(result)) == [1, 2]
    assert [r.job_id for r in result.reservations] == [3]


# Reservations and backfill


def test_the_blocked_head_reserves_the_earliest_nodes_that_free_up() -> None:
    busy = [
        running(1, ("a100-0", 8), started=NOW - 60, runtime=2 * HOUR),
        running(2, ("a100-1", 8), started=NOW - 60, runtime=HOUR),
    ]
    result = plan([queued(9, gpus=8)], busy, nodes(2), shares(1), NOW, Policy())
    (reservation,) = result.reservations
    assert reservation.job_id == 9
    assert reservation.start_at == NOW - 60 + HOUR
    assert reservation.placement == (NodeSlice("a100-1", 8),)


def test_an_overdue_job_counts_as_ending_now() -> None:
    late = running(1, ("a100-0", 8), started=NOW - 2 * HOUR, runtime=HOUR)
    result = plan([queued(9, gpus=8)], [late], nodes(1), shares(1), NOW, Policy())
    assert result.reservations[0].start_at == NOW


def test_backfill_starts_a_job_that_ends_before_the_reservation() -> None:
    busy = [running(1, ("a100-0", 6), started=NOW - 60, runtime=2 * HOUR)]
    head = queued(1, gpus=8, at=NOW - 100)
    short = queued(2, gpus=2, runtime=HOUR)
    long = queued(3, gpus=2, runtime=4 * HOUR, at=NOW - 90)
    result = plan([head, long, short], busy, nodes(1), shares(1), NOW, Policy())
    assert started(result) == [2]
    assert result.reservations[0].job_id == 1


def test_backfill_uses_nodes_the_head_does_not_need() -> None:
    busy = [
        running(1, ("a100-0", 4), runtime=HOUR),
        running(2, ("a100-1", 6), runtime=8 * HOUR),
    ]
    head = queued(1, gpus=8, at=NOW - 100)
    long = queued(2, gpus=2, runtime=24 * HOUR)
    result = plan([head, long], busy, nodes(2), shares(1), NOW, Policy())
    assert result.reservations[0].placement == (NodeSlice("a100-0", 8),)
    assert placement_of(result, 2) == (NodeSlice("a100-1", 2),)


def test_backfill_refuses_a_long_job_that_would_delay_the_head() -> None:
    busy = [running(1, ("a100-0", 4), runtime=HOUR)]
    head = queued(1, gpus=8, at=NOW - 100)
    long = queued(2, gpus=2, runtime=24 * HOUR)
    result = plan([head, long], busy, nodes(1), shares(1), NOW, Policy())
    assert started(result) == []


def test_without_backfill_nothing_passes_a_blocked_head() -> None:
    busy = [running(1, ("a100-0", 6), runtime=2 * HOUR)]
    jobs = [queued(1, gpus=8, at=NOW - 100), queued(2, gpus=1, runtime=60)]
    # No response term: the short job would otherwise rank first and be the head's predecessor.
    policy = Policy(backfill=False, response_weight=0)
    result = plan(jobs, busy, nodes(1), shares(1), NOW, policy)
    assert started(result) == []
    assert [r.job_id for r in result.reservations] == [1]


def test_a_gang_head_reserves_whole_nodes() -> None:
    busy = [
        running(1, ("a100-0", 1), runtime=HOUR),
        running(2, ("a100-1", 1), runtime=3 * HOUR),
        running(3, ("a100-2", 1), runtime=2 * HOUR),
    ]
    result = plan([queued(9, gpus=16)], busy, nodes(3), shares(1), NOW, Policy())
    (reservation,) = result.reservations
    assert reservation.start_at == NOW - 60 + 2 * HOUR
    assert reservation.placement == (NodeSlice("a100-0", 8), NodeSlice("a100-2", 8))


# Usage decay


def test_decayed_halves_value_every_half_life() -> None:
    assert decayed(100.0, 3600.0, 3600.0) == pytest.approx(50.0)
    assert decayed(100.0, 0.0, 3600.0) == 100.0
    with pytest.raises(ValueError, match="half-life"):
        decayed(1.0, 1.0, 0.0)


def test_usage_decay_adds_and_reads_later() -> None:
    usage = UsageDecay(100.0)
    usage.add(80.0, at=0.0)
    usage.add(40.0, at=100.0)
    assert usage.value_at(200.0) == pytest.approx((40.0 + 40.0) / 2)


def test_usage_decay_accrual_does_not_depend_on_how_the_run_is_split() -> None:
    whole, split = UsageDecay(500.0), UsageDecay(500.0)
    whole.accrue(4.0, 0.0, 300.0)
    split.accrue(4.0, 0.0, 100.0)
    split.accrue(4.0, 100.0, 300.0)
    assert whole.value_at(400.0) == pytest.approx(split.value_at(400.0))
    assert whole.value_at(300.0) < 4.0 * 300.0


# Response ratio (declared runtime) and shortest-first backfill


def test_shorter_declared_runtime_goes_first_among_equals() -> None:
    # Same project, same wait: the one-hour job's response ratio is higher.
    jobs = [queued(1, gpus=8, runtime=8 * HOUR), queued(2, gpus=8, runtime=HOUR)]
    assert started(plan(jobs, [], nodes(1), shares(1), NOW, Policy())) == [2]


def test_long_waiting_job_overtakes_shorter_newcomer_eventually() -> None:
    long = queued(1, gpus=8, runtime=24 * HOUR, at=NOW - HOUR)
    short = queued(2, gpus=8, runtime=HOUR, at=NOW - 10 * 60)
    assert started(plan([long, short], [], nodes(1), shares(1), NOW, Policy())) == [2]
    # A day later the long job's ratio (1 + 25/24) beats a new short job's.
    later = NOW + 24 * HOUR
    fresh = queued(3, gpus=8, runtime=HOUR, at=later - 10 * 60)
    assert started(plan([long, fresh], [], nodes(1), shares(1), later, Policy())) == [1]


def test_response_ratio_never_moves_a_project_ahead_of_a_better_share() -> None:
    table = {
        1: ProjectShare(1, entitlement=1.0, decayed_usage=900.0),
        2: ProjectShare(2, entitlement=1.0, decayed_usage=100.0),
    }
    old_short = queued(1, project=1, gpus=8, runtime=HOUR, at=NOW - 10 * HOUR)
    new_long = queued(2, project=2, gpus=8, runtime=168 * HOUR, at=NOW)
    # One runtime class, so that only fair share and the response term decide.
    policy = Policy(running_charge_s=0, class_bounds_s=())
    assert started(plan([old_short, new_long], [], nodes(1), table, NOW, policy)) == [2]


def test_without_response_weight_a_project_keeps_submission_order() -> None:
    jobs = [queued(1, gpus=8, runtime=8 * HOUR, at=NOW - 20), queued(2, gpus=8, at=NOW - 10)]
    policy = Policy(response_weight=0, class_bounds_s=())
    assert started(plan(jobs, [], nodes(1), shares(1), NOW, policy)) == [1]


def test_backfill_tries_the_shortest_declared_runtime_first() -> None:
    busy = [running(1, ("a100-0", 6), runtime=4 * HOUR), running(2, ("a100-1", 8), runtime=HOUR)]
    head = queued(1, gpus=8, at=NOW - 100)
    # Both fit the one free pair of GPUs and end after the reservation on a100-1,
    # but only one fits a100-0; the shorter goes first.
    longer = queued(2, gpus=2, runtime=8 * HOUR, project=2, at=NOW - 90)
    shorter = queued(3, gpus=2, runtime=2 * HOUR, project=2, at=NOW - 80)
    jobs = [head, longer, shorter]
    assert started(plan(jobs, busy, nodes(2), shares(1, 2), NOW, Policy())) == [3]
    by_priority = Policy(backfill_order="priority", response_weight=0, class_bounds_s=())
    assert started(plan(jobs, busy, nodes(2), shares(1, 2), NOW, by_priority)) == [2]
