"""The simulated executor: job lifecycles computed from a fake clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from credits.jobs.executors.base import (
    Executor,
    ExecutorError,
    LaunchRequest,
    NodeCapacity,
    NodeSlice,
    Phase,
)
from credits.jobs.executors.simulated import (
    DURATION_LABEL,
    EXIT_CODE_LABEL,
    SimulatedExecutor,
    simulated_nodes_from_spec,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(
    job_id: int,
    *,
    attempt: int = 1,
    node: str = "a100-node-0",
    gpus: int = 2,
    flavour: str = "a100",
    max_runtime: int = 3600,
    labels: Mapping[str, str] | None = None,
) -> LaunchRequest:
    return LaunchRequest(
        job_id=job_id,
        attempt=attempt,
        project_id=1,
        name=f"job-{job_id}",
        image="python:3.11",
        command=("python",),
        args=("train.py",),
        env={},
        working_dir=None,
        flavour=flavour,
        node_label_value=flavour,
        gpus=gpus,
        cpu_millicores=1000,
        memory_mb=1024,
        max_runtime_seconds=max_runtime,
        placement=(NodeSlice(node, gpus),),
        labels=labels or {},
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def executor(clock: FakeClock) -> SimulatedExecutor:
    nodes = [NodeCapacity("a100-node-0", "a100", 4), NodeCapacity("a100-node-1", "a100", 4)]
    return SimulatedExecutor(nodes, clock=clock, default_duration_s=60)


def phase_of(executor: SimulatedExecutor, job_id: int) -> Phase:
    return executor.observe([job_id])[job_id].phase


def test_simulated_executor_meets_the_executor_protocol(executor: SimulatedExecutor) -> None:
    assert isinstance(executor, Executor)


def test_job_runs_for_its_duration_and_succeeds_at_exactly_start_plus_duration(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1))
    running = executor.observe([1])[1]
    assert (running.phase, running.started_at, running.finished_at) == (Phase.RUNNING, T0, None)

    clock.advance(500)  # observed long after it finished
    done = executor.observe([1])[1]

    assert done.phase is Phase.SUCCEEDED
    assert (done.started_at, done.finished_at, done.exit_code) == (T0, at(60), 0)


def test_job_is_pending_during_startup(clock: FakeClock) -> None:
    nodes = [NodeCapacity("a100-node-0", "a100", 4)]
    executor = SimulatedExecutor(nodes, clock=clock, default_duration_s=10, startup_s=5)
    executor.launch(request(1))

    assert phase_of(executor, 1) is Phase.PENDING
    clock.advance(5)
    assert executor.observe([1])[1].started_at == at(5)
    clock.advance(10)
    assert executor.observe([1])[1].finished_at == at(15)


def test_set_duration_before_launch_and_while_running(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.set_duration(1, 5)
    executor.launch(request(1))
    executor.launch(request(2))
    clock.advance(10)
    executor.set_duration(2, 30)

    assert executor.observe([1])[1].finished_at == at(5)
    assert phase_of(executor, 2) is Phase.RUNNING
    clock.advance(20)
    assert executor.observe([2])[2].finished_at == at(30)


def test_job_longer_than_its_max_runtime_is_timed_out_at_the_limit(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1, max_runtime=30, labels={DURATION_LABEL: "45.5"}))
    clock.advance(100)

    seen = executor.observe([1])[1]

    assert (seen.phase, seen.finished_at, seen.exit_code) == (Phase.TIMED_OUT, at(30), None)
    assert seen.reason == "max runtime 30 s reached"


def test_exit_code_label_makes_the_job_fail_with_that_code(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1, labels={DURATION_LABEL: "2", EXIT_CODE_LABEL: "3"}))
    clock.advance(2)

    seen = executor.observe([1])[1]

    assert (seen.phase, seen.exit_code, seen.reason) == (Phase.FAILED, 3, "exit code 3")
    assert executor.logs(1).splitlines()[-1] == "exit 3"


def test_malformed_simulation_label_is_refused(executor: SimulatedExecutor) -> None:
    with pytest.raises(ExecutorError) as raised:
        executor.launch(request(1, labels={DURATION_LABEL: "soon"}))
    assert not raised.value.transient


def test_cancel_stops_a_running_job_now_and_is_idempotent(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1))
    clock.advance(10)

    executor.cancel(1)
    clock.advance(100)
    executor.cancel(1)
    executor.cancel(99)  # unknown: nothing to do

    seen = executor.observe([1])[1]
    assert (seen.phase, seen.started_at, seen.finished_at) == (Phase.CANCELLED, T0, at(10))
    assert executor.observe([99]) == {}


def test_cancel_of_a_finished_job_leaves_it_finished(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1))
    clock.advance(60)
    executor.cancel(1)
    assert phase_of(executor, 1) is Phase.SUCCEEDED


def test_preempt_stops_a_running_job_with_the_reason(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1))
    clock.advance(20)

    executor.preempt(1, "drained")

    seen = executor.observe([1])[1]
    assert (seen.phase, seen.finished_at, seen.reason) == (Phase.PREEMPTED, at(20), "drained")


def test_stop_keeps_the_gpus_for_the_grace_then_preempts_with_the_reason(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.set_duration(1, 600)
    executor.launch(request(1, gpus=4))
    clock.advance(100)
    executor.stop(1, 30, "moved to make room for job 9")
    executor.stop(1, 5, "a repeat")  # changes nothing
    assert [(r.at, r.grace_seconds) for r in executor.stop_requests(1)] == [(at(100), 30)]

    clock.advance(29)
    assert phase_of(executor, 1) is Phase.RUNNING
    with pytest.raises(ExecutorError, match="0 free GPUs"):
        executor.launch(request(2, gpus=1))  # its GPUs are still held

    clock.advance(1)
    seen = executor.observe([1])[1]
    assert (seen.phase, seen.started_at, seen.finished_at, seen.reason) == (
        Phase.PREEMPTED,
        T0,
        at(130),
        "moved to make room for job 9",
    )
    assert executor.pop_finished() == [seen]
    executor.launch(request(2, gpus=4))  # free again


def test_a_job_that_ends_within_the_grace_ends_on_its_own(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1))  # 60 s
    clock.advance(50)
    executor.stop(1, 30, "moved")
    clock.advance(60)
    seen = executor.observe([1])[1]
    assert (seen.phase, seen.finished_at) == (Phase.SUCCEEDED, at(60))


def test_stop_of_a_pending_job_preempts_it_at_once(clock: FakeClock) -> None:
    nodes = [NodeCapacity("a100-node-0", "a100", 4)]
    executor = SimulatedExecutor(nodes, clock=clock, startup_s=20)
    executor.launch(request(1))
    executor.stop(1, 30, "moved")
    seen = executor.observe([1])[1]
    assert (seen.phase, seen.started_at, seen.reason) == (Phase.PREEMPTED, None, "moved")


def test_stop_of_an_unknown_or_finished_job_is_a_no_op(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.stop(42, 30, "moved")
    executor.launch(request(1))
    clock.advance(61)
    executor.stop(1, 30, "moved")
    assert phase_of(executor, 1) is Phase.SUCCEEDED
    assert executor.stop_requests(1) == []


def test_failed_node_preempts_its_jobs_and_becomes_unschedulable(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1, node="a100-node-0"))
    executor.launch(request(2, node="a100-node-1"))
    clock.advance(5)

    executor.fail_node("a100-node-0")

    assert executor.observe([1])[1].reason == "node a100-node-0 lost"
    assert phase_of(executor, 1) is Phase.PREEMPTED
    assert phase_of(executor, 2) is Phase.RUNNING
    assert executor.capacity().gpus_by_flavour() == {"a100": 4}
    with pytest.raises(ExecutorError, match="not schedulable"):
        executor.launch(request(3, node="a100-node-0"))
    executor.restore_node("a100-node-0")
    executor.launch(request(3, node="a100-node-0"))


def test_capacity_reports_total_gpus_whatever_runs(executor: SimulatedExecutor) -> None:
    executor.launch(request(1, gpus=4))

    nodes = executor.capacity().nodes

    assert [(node.name, node.gpus, node.schedulable) for node in nodes] == [
        ("a100-node-0", 4, True),
        ("a100-node-1", 4, True),
    ]


def test_repeated_launch_of_the_same_attempt_changes_nothing(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1))
    clock.advance(30)

    executor.launch(request(1))

    assert executor.observe([1])[1].started_at == T0


def test_new_attempt_replaces_the_old_one_and_its_gpus(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1, gpus=4))
    clock.advance(10)
    executor.preempt(1)

    executor.launch(request(1, attempt=2, gpus=4))
    executor.launch(request(1, attempt=1, gpus=4))  # a late, older launch: ignored

    seen = executor.observe([1])[1]
    assert (seen.attempt, seen.phase, seen.started_at) == (2, Phase.RUNNING, at(10))


@pytest.mark.parametrize(
    ("node", "flavour", "gpus", "problem"),
    [
        ("a100-node-9", "a100", 1, "no node 'a100-node-9'"),
        ("a100-node-0", "h100", 1, "node a100-node-0 is a100, the job asks for h100"),
        ("a100-node-0", "a100", 3, "node a100-node-0 has 1 free GPUs, 3 asked"),
    ],
)
def test_placement_that_does_not_fit_is_refused(
    executor: SimulatedExecutor, node: str, flavour: str, gpus: int, problem: str
) -> None:
    executor.launch(request(1, gpus=3))
    with pytest.raises(ExecutorError, match=problem) as raised:
        executor.launch(request(2, node=node, flavour=flavour, gpus=gpus))
    assert not raised.value.transient
    assert executor.observe([2]) == {}


def test_gpus_of_finished_jobs_are_free_again(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1, gpus=4))
    clock.advance(60)
    executor.launch(request(2, gpus=4))
    assert phase_of(executor, 2) is Phase.RUNNING


def test_pop_finished_returns_each_final_observation_once_in_order(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.set_duration(1, 30)
    executor.set_duration(2, 10)
    executor.launch(request(1, gpus=1))
    executor.launch(request(2, gpus=1))
    executor.launch(request(3, gpus=1))
    clock.advance(20)
    executor.cancel(3)
    assert [seen.job_id for seen in executor.pop_finished()] == [2, 3]

    clock.advance(20)

    assert [(seen.job_id, seen.finished_at) for seen in executor.pop_finished()] == [(1, at(30))]
    assert executor.pop_finished() == []


def test_next_event_at_is_the_earliest_future_start_or_finish(clock: FakeClock) -> None:
    nodes = [NodeCapacity("a100-node-0", "a100", 4)]
    executor = SimulatedExecutor(nodes, clock=clock, default_duration_s=100, startup_s=5)
    assert executor.next_event_at() is None
    executor.launch(request(1, gpus=1))
    clock.advance(1)
    executor.set_duration(2, 2)
    executor.launch(request(2, gpus=1))

    assert executor.next_event_at() == at(5)
    clock.now = at(5)
    assert executor.next_event_at() == at(6)
    clock.now = at(6)
    assert executor.next_event_at() == at(8)
    executor.cancel(1)  # its finish at 105 is no event any more
    clock.now = at(8)
    assert executor.next_event_at() is None


def test_logs_name_the_node_and_apply_the_tail(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1, gpus=2))
    clock.advance(60)

    assert "started on a100-node-0 with 2 GPUs" in executor.logs(1)
    assert executor.logs(1, tail_lines=1) == "exit 0\n"
    assert executor.logs(42) == ""


def test_output_streams_whole_and_tails_with_the_caps(
    executor: SimulatedExecutor, clock: FakeClock
) -> None:
    executor.launch(request(1))
    executor.add_output(1, "x" * 100_000, "loss 0.1")
    assert b"".join(executor.log_stream(1)).endswith(b"\nloss 0.1\n")  # running
    clock.advance(60)
    whole = b"".join(executor.log_stream(1))
    assert whole.decode().splitlines() == [
        "attempt 1 of job 1 accepted",
        "started on a100-node-0 with 2 GPUs",
        "x" * 100_000,
        "loss 0.1",
        "exit 0",
    ]
    assert [len(chunk) for chunk in executor.log_stream(1)] == [65536, len(whole) - 65536]
    assert executor.logs(1, tail_lines=3) == "[… 83,616 bytes cut …]" + "x" * 16384 + (
        "\nloss 0.1\nexit 0\n"
    )
    assert list(executor.log_stream(42)) == []


def test_many_jobs_replay_quickly(clock: FakeClock) -> None:
    executor = SimulatedExecutor(
        simulated_nodes_from_spec("a100:50x8"), clock=clock, default_duration_s=10
    )
    finished = 0
    for job_id in range(20_000):
        executor.launch(request(job_id, node=f"a100-node-{job_id % 50}", gpus=1))
        if job_id % 400 == 399:
            clock.now = executor.next_event_at() or clock.now
            finished += len(executor.pop_finished())
    assert finished == 20_000


def test_spec_makes_named_nodes_per_flavour() -> None:
    nodes = simulated_nodes_from_spec(" a100-80gb:2x8, h100:1x4 ")
    assert nodes == [
        NodeCapacity("a100-80gb-node-0", "a100-80gb", 8),
        NodeCapacity("a100-80gb-node-1", "a100-80gb", 8),
        NodeCapacity("h100-node-0", "h100", 4),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("a100", "bad simulated pool part 'a100'"),
        ("a100:2", "NODESxGPUS"),
        ("a100:0x8", "at least one node"),
        ("A100:1x8", "bad flavour 'A100'"),
        ("a100:1x8,a100:2x8", "appears twice"),
        ("a100:1x8,", "bad simulated pool part ''"),
    ],
)
def test_bad_spec_is_refused_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulated_nodes_from_spec(spec)
