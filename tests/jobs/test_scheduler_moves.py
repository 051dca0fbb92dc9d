"""Placement that keeps whole nodes free: end-time-aware best fit and defragmenting moves."""

from __future__ import annotations

from credits.jobs.executors.base import NodeSlice
from credits.jobs.scheduler import (
    MoveDecision,
    Node,
    Plan,
    Policy,
    ProjectShare,
    QueuedJob,
    RunningJob,
    plan,
)

NOW = 1_000_000.0
FLAVOUR = "a100"
HOUR = 3600


def nodes(count: int, gpus: int = 8) -> list[Node]:
    return [Node(f"n{i}", FLAVOUR, gpus) for i in range(count)]


def queued(job_id: int, gpus: int, *, runtime: int = HOUR, project: int = 2) -> QueuedJob:
    return QueuedJob(job_id, project, FLAVOUR, gpus, runtime, NOW - 60)


def running(
    job_id: int,
    node: str,
    gpus: int,
    *,
    checkpointable: bool = True,
    ends_in: float = 8 * HOUR,
    moves: int = 0,
    vacating: tuple[NodeSlice, ...] = (),
) -> RunningJob:
    started = NOW - 60
    runtime = int(ends_in + 60)
    return RunningJob(
        job_id,
        1,
        FLAVOUR,
        (NodeSlice(node, gpus),),
        started,
        runtime,
        checkpointable=checkpointable,
        moves=moves,
        vacating=vacating,
    )


SHARES = {p: ProjectShare(p, entitlement=1.0, decayed_usage=0.0) for p in (1, 2)}


def schedule(
    queue: list[QueuedJob], jobs: list[RunningJob], pool: list[Node], **policy: object
) -> Plan:
    return plan(queue, jobs, pool, SHARES, NOW, Policy(**policy))  # type: ignore[arg-type]


def fragmented(**overrides: object) -> list[RunningJob]:
    """Three 8-GPU nodes, 14 of 24 GPUs in use, no node whole: n0 4, n1 6, n2 4."""
    return [
        running(1, "n0", 4, **overrides),  # type: ignore[arg-type]
        running(2, "n1", 4, **overrides),  # type: ignore[arg-type]
        running(3, "n1", 2, **overrides),  # type: ignore[arg-type]
        running(4, "n2", 4, **overrides),  # type: ignore[arg-type]
    ]


def test_an_eight_gpu_job_blocked_by_fragmentation_frees_a_node_by_moving_checkpointable_jobs() -> (
    None
):
    result = schedule([queued(9, 8)], fragmented(), nodes(3))
    assert result.starts == ()
    assert result.moves == (
        MoveDecision(1, (NodeSlice("n2", 4),), 9, "defragment: frees n0 for job 9"),
    )
    (reservation,) = result.reservations
    assert reservation.job_id == 9
    assert reservation.placement == (NodeSlice("n0", 8),)
    assert reservation.start_at == NOW + Policy().restart_cost_s


def test_a_non_checkpointable_job_is_never_moved() -> None:
    result = schedule([queued(9, 8)], fragmented(checkpointable=False), nodes(3))
    assert result.moves == ()
    (reservation,) = result.reservations
    assert reservation.start_at == NOW + 8 * HOUR


def test_a_job_moved_max_moves_times_stays_where_it_is() -> None:
    assert schedule([queued(9, 8)], fragmented(moves=2), nodes(3), max_moves=2).moves == ()
    assert schedule([queued(9, 8)], fragmented(moves=2), nodes(3), max_moves=3).moves != ()


def test_defragmentation_can_be_turned_off() -> None:
    assert schedule([queued(9, 8)], fragmented(), nodes(3), defragment=False).moves == ()


def test_no_moves_when_the_free_gpus_could_not_cover_the_blocked_job_anyway() -> None:
    jobs = [*fragmented(), running(5, "n0", 3)]  # 7 GPUs free: not fragmentation but a full pool
    assert schedule([queued(9, 8)], jobs, nodes(3)).moves == ()


def test_no_moves_when_the_blocked_job_would_start_about_as_soon_without_them() -> None:
    result = schedule([queued(9, 8)], fragmented(ends_in=200), nodes(3))
    assert result.moves == ()
    assert result.reservations[0].start_at == NOW + 200


def test_no_moves_when_the_wait_saved_is_worth_less_than_the_restarts() -> None:
    # A one-hour wait saved for 8 GPUs does not pay for moving 4 GPUs at 2 h each.
    result = schedule([queued(9, 8)], fragmented(ends_in=HOUR), nodes(3), restart_cost_s=7200.0)
    assert result.moves == ()


def test_moves_are_all_or_nothing() -> None:
    # A 16-GPU gang needs n0 and n2 emptied; their 8 GPUs of jobs fit nowhere but n1's 2.
    assert schedule([queued(9, 16)], fragmented(), nodes(3)).moves == ()


def test_a_move_never_targets_a_wholly_free_node() -> None:
    # n3 is free: the 16-GPU gang takes it and needs one more node. Job 1 cannot go to
    # n3 (free) so it goes to n2's hole, and n0 empties.
    result = schedule([queued(9, 16)], fragmented(), nodes(4))
    assert [move.target for move in result.moves] == [(NodeSlice("n2", 4),)]
    assert result.reservations[0].placement == (NodeSlice("n0", 8), NodeSlice("n3", 8))


def test_a_job_that_fits_only_on_a_wholly_free_node_is_not_moved() -> None:
    # 16 GPUs free (n3 whole, holes of 3, 3 and 2), but a 5- or 6-GPU job only fits on n3.
    jobs = [running(1, "n0", 5), running(2, "n1", 5), running(3, "n2", 6)]
    result = schedule([queued(9, 16)], jobs, nodes(4))
    assert result.moves == ()
    assert result.reservations[0].start_at == NOW + 8 * HOUR


def test_a_job_that_ends_before_the_blocked_job_could_start_is_left_to_end() -> None:
    # 6 GPUs free now, 8 once job 2 ends in 100 s: moving job 1 to n1 empties n0.
    jobs = [
        running(1, "n0", 2),
        running(2, "n0", 2, ends_in=100),
        running(3, "n1", 4),
        running(4, "n1", 2),
    ]
    result = schedule([queued(9, 8)], jobs, nodes(2))
    assert [move.job_id for move in result.moves] == [1]
    assert result.reservations[0].placement == (NodeSlice("n0", 8),)


def test_a_smaller_job_blocked_by_fragmentation_gets_room_on_one_node() -> None:
    # Each node has 2 free; a 4-GPU job needs one node with 4: moving job 1 (2 GPUs) does it.
    jobs = [running(1, "n0", 2), running(2, "n0", 4), running(3, "n1", 6), running(4, "n2", 6)]
    result = schedule([queued(9, 4)], jobs, nodes(3))
    assert [(move.job_id, move.target) for move in result.moves] == [(1, (NodeSlice("n1", 2),))]
    assert result.reservations[0].placement == (NodeSlice("n0", 4),)


def test_a_moved_job_takes_the_smallest_hole_that_fits() -> None:
    jobs = [
        running(1, "n0", 2),
        running(2, "n1", 4),
        running(3, "n2", 6),
        running(4, "n3", 7),
    ]
    result = schedule([queued(9, 8)], jobs, nodes(4))
    assert [(move.job_id, move.target) for move in result.moves] == [(1, (NodeSlice("n2", 2),))]


def test_a_node_being_vacated_takes_no_other_job_and_is_reserved_for_the_blocked_job() -> None:
    # The pass after the move: job 1 still stops on n0 and already holds its target on n2.
    jobs = [
        running(1, "n2", 4, moves=1, vacating=(NodeSlice("n0", 4),)),
        running(2, "n1", 4),
        running(3, "n1", 2),
        running(4, "n2", 4),
    ]
    result = schedule([queued(9, 8), queued(10, 4, project=1)], jobs, nodes(3))
    assert result.moves == ()
    assert result.starts == ()  # the 4-GPU job fits on n0's free half, which is held
    (reservation,) = result.reservations
    assert reservation.placement == (NodeSlice("n0", 8),)
    assert reservation.start_at == NOW


def test_a_job_already_moving_is_not_moved_again() -> None:
    jobs = [
        running(1, "n1", 2, vacating=(NodeSlice("n3", 2),)),
        running(2, "n0", 2),
        running(3, "n1", 4),
        running(4, "n2", 6),
        running(5, "n3", 6),
    ]
    result = schedule([queued(9, 8)], jobs, nodes(4))
    assert 1 not in {move.job_id for move in result.moves}


def test_backfill_after_moves_keeps_off_the_emptied_node() -> None:
    result = schedule([queued(9, 8), queued(10, 2, runtime=60)], fragmented(), nodes(3))
    assert result.moves != ()
    # n0's 4 free GPUs wait for job 9; job 10 goes to n1's hole.
    assert [(s.job_id, s.placement) for s in result.starts] == [(10, (NodeSlice("n1", 2),))]


# End-time-aware best fit


def test_a_job_goes_to_the_node_whose_jobs_end_nearest_after_it() -> None:
    jobs = [running(1, "n0", 4, ends_in=10 * HOUR), running(2, "n1", 4, ends_in=3 * HOUR)]
    result = schedule([queued(9, 4, runtime=2 * HOUR)], jobs, nodes(2))
    assert result.starts[0].placement == (NodeSlice("n1", 4),)


def test_a_job_longer_than_every_node_goes_where_it_extends_the_busy_time_least() -> None:
    jobs = [running(1, "n0", 4, ends_in=HOUR), running(2, "n1", 4, ends_in=3 * HOUR)]
    result = schedule([queued(9, 4, runtime=5 * HOUR)], jobs, nodes(2))
    assert result.starts[0].placement == (NodeSlice("n1", 4),)


def test_end_time_fit_never_overrides_best_fit_by_free_gpus() -> None:
    jobs = [running(1, "n0", 6, ends_in=HOUR), running(2, "n1", 4, ends_in=2 * HOUR)]
    result = schedule([queued(9, 2, runtime=2 * HOUR)], jobs, nodes(2))
    assert result.starts[0].placement == (NodeSlice("n0", 2),)


def test_without_end_time_fit_ties_go_to_the_first_node_name() -> None:
    jobs = [running(1, "n0", 4, ends_in=10 * HOUR), running(2, "n1", 4, ends_in=3 * HOUR)]
    result = schedule([queued(9, 4, runtime=2 * HOUR)], jobs, nodes(2), end_time_fit=False)
    assert result.starts[0].placement == (NodeSlice("n0", 4),)


# Packing by movability


def checkpointable(job_id: int, gpus: int, *, runtime: int = HOUR) -> QueuedJob:
    return QueuedJob(job_id, 2, FLAVOUR, gpus, runtime, NOW - 60, checkpointable=True)


def packed(queue: list[QueuedJob], jobs: list[RunningJob], pool: list[Node]) -> Plan:
    return schedule(queue, jobs, pool, pack_by_movability=True)


def test_a_checkpointable_job_joins_a_node_of_movable_jobs_among_equally_full_nodes() -> None:
    jobs = [running(1, "n0", 4, checkpointable=False), running(2, "n1", 4)]
    result = packed([checkpointable(9, 2)], jobs, nodes(2))
    assert result.starts[0].placement == (NodeSlice("n1", 2),)


def test_a_job_that_cannot_move_joins_a_node_already_holding_one() -> None:
    jobs = [running(1, "n0", 4), running(2, "n1", 4, checkpointable=False)]
    result = packed([queued(9, 2)], jobs, nodes(2))
    assert result.starts[0].placement == (NodeSlice("n1", 2),)


def test_a_job_with_no_moves_left_counts_as_one_that_cannot_move() -> None:
    jobs = [running(1, "n0", 4), running(2, "n1", 4, moves=2)]
    result = packed([queued(9, 2)], jobs, nodes(2))
    assert result.starts[0].placement == (NodeSlice("n1", 2),)


def test_packing_by_movability_never_overrides_best_fit_by_free_gpus() -> None:
    jobs = [running(1, "n0", 6, checkpointable=False), running(2, "n1", 4)]
    result = packed([checkpointable(9, 2)], jobs, nodes(2))
    assert result.starts[0].placement == (NodeSlice("n0", 2),)


def test_jobs_started_in_the_pass_pin_their_node_for_the_next_ones() -> None:
    # Job 8 cannot move and takes n0 down to 1 free GPU, like n1; job 9, which can, avoids n0.
    jobs = [running(1, "n0", 1), running(2, "n1", 3)]
    result = packed([queued(8, 2), checkpointable(9, 1)], jobs, nodes(2, gpus=4))
    assert [(s.job_id, s.placement) for s in result.starts] == [
        (8, (NodeSlice("n0", 2),)),
        (9, (NodeSlice("n1", 1),)),
    ]


def test_without_packing_the_default_ties_go_by_end_time_then_name() -> None:
    jobs = [running(1, "n0", 4, checkpointable=False), running(2, "n1", 4)]
    result = schedule([checkpointable(9, 2)], jobs, nodes(2))
    assert result.starts[0].placement == (NodeSlice("n0", 2),)
