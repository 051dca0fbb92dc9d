"""The Kubernetes executor against the HTTP-level API emulator, without a database."""

from __future__ import annotations

import time

import pytest
from k8s_kube import NAMESPACE, Kube, request, synced

from credits.jobs.executors.base import ExecutorError, Phase
from credits.jobs.manifests import CANCELLED_ANNOTATION, METERING_FINALIZER

pytest_plugins = ["k8s_fixtures", "k8s_executor_fixtures"]


def _creates(kube: Kube) -> int:
    return sum(1 for method, path in kube.emu.requests if method == "POST" and "/jobs" in path)


def test_launch_creates_one_job_with_labels_limits_and_finalizer(kube: Kube) -> None:
    kube.executor.launch(request(1, gpus=2))
    kube.executor.launch(request(1, gpus=2))  # a repeat is success and creates nothing
    job = kube.job(1)
    assert job is not None
    meta = job["metadata"]
    assert meta["labels"]["credits.dev/job-id"] == "1"  # type: ignore[index]
    assert meta["finalizers"] == [METERING_FINALIZER]  # type: ignore[index]
    assert len(kube.emu.objects("jobs", NAMESPACE)) == 1
    kube.emu.advance(1)
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(1))
    assert pod["spec"]["nodeName"] in {"gpu-0", "gpu-1"}
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_create_answered_500_is_retried_without_a_second_job(kube: Kube) -> None:
    kube.emu.fail_next("create", "jobs", 500, times=2)
    kube.executor.launch(request(2))
    assert [j["metadata"]["name"] for j in kube.emu.objects("jobs", NAMESPACE)] == [kube.name(2)]
    assert _creates(kube) == 3


def test_create_failing_past_the_retries_is_transient(kube: Kube) -> None:
    kube.emu.fail_next("create", "jobs", 503, times=10, retry_after=0)
    with pytest.raises(ExecutorError) as failed:
        kube.executor.launch(request(3))
    assert failed.value.transient
    kube.emu.clear_faults()
    kube.executor.launch(request(3))
    assert kube.job(3) is not None


def test_invalid_job_is_a_permanent_error_with_the_api_message(kube: Kube) -> None:
    kube.emu.fail_next("create", "jobs", 422, message="Job is invalid: spec.template: bad")
    with pytest.raises(ExecutorError) as failed:
        kube.executor.launch(request(4))
    assert not failed.value.transient
    assert "spec.template: bad" in str(failed.value)


def test_forbidden_is_permanent(kube: Kube) -> None:
    kube.emu.fail_next("create", "jobs", 403, message="jobs.batch is forbidden")
    with pytest.raises(ExecutorError) as failed:
        kube.executor.launch(request(5))
    assert not failed.value.transient


def test_job_runs_and_succeeds_with_container_times(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(6), 120)
    kube.executor.launch(request(6))
    kube.emu.advance(1)
    synced(kube)
    seen = kube.executor.observe([6])[6]
    assert seen.phase is Phase.RUNNING
    started = seen.started_at
    kube.emu.advance(200)
    synced(kube)
    seen = kube.executor.observe([6])[6]
    assert seen.phase is Phase.SUCCEEDED
    assert seen.exit_code == 0
    assert seen.started_at == started
    assert seen.finished_at is not None and started is not None
    assert (seen.finished_at - started).total_seconds() == 120


def test_nonzero_exit_fails_with_the_exit_code(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(7), 30, exit_code=3)
    kube.executor.launch(request(7))
    kube.emu.advance(60)
    synced(kube)
    seen = kube.executor.observe([7])[7]
    assert (seen.phase, seen.exit_code) == (Phase.FAILED, 3)
    assert seen.reason is not None and "exit code 3" in seen.reason


def test_deadline_exceeded_is_timed_out(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(8), None)
    kube.executor.launch(request(8, max_runtime_seconds=300))
    kube.emu.advance(1)
    synced(kube)
    assert kube.executor.observe([8])[8].phase is Phase.RUNNING
    kube.emu.advance(400)
    synced(kube)
    seen = kube.executor.observe([8])[8]
    assert seen.phase is Phase.TIMED_OUT
    assert seen.reason == "max runtime 300 s reached"
    assert seen.started_at is not None and seen.finished_at is not None


def test_gang_is_one_indexed_job_running_only_when_every_pod_runs(kube: Kube) -> None:
    kube.emu.add_node("busy", gpus=8, product="OTHER")  # not of the flavour
    kube.emu.set_run_duration(NAMESPACE, kube.name(9), None)
    # one node is cordoned: only one of the two pods can start
    kube.emu.cordon("gpu-1")
    kube.executor.launch(request(9, gpus=16, nodes=2))
    job = kube.job(9)
    assert job is not None
    assert job["spec"]["completionMode"] == "Indexed"  # type: ignore[index]
    assert kube.emu.find("services", NAMESPACE, kube.name(9)) is not None
    kube.emu.advance(5)
    synced(kube)
    assert kube.executor.observe([9])[9].phase is Phase.PENDING
    kube.emu.cordon("gpu-1", unschedulable=False)
    kube.emu.advance(5)
    synced(kube)
    seen = kube.executor.observe([9])[9]
    assert seen.phase is Phase.RUNNING
    pods = kube.emu.job_pods(NAMESPACE, kube.name(9))
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["gpu-0", "gpu-1"]
    starts = [p["status"]["startTime"] for p in pods]
    assert seen.started_at is not None
    assert seen.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") == max(starts)


def test_cancel_marks_then_deletes_and_a_new_executor_still_sees_cancelled(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(10), None)
    kube.executor.launch(request(10))
    kube.emu.advance(10)
    kube.emu.fail_next("patch", "jobs", 409)  # a conflict on the update is retried
    kube.executor.cancel(10)
    kube.executor.cancel(10)  # a repeat is success
    job = kube.job(10)
    assert job is not None  # the finalizer holds it
    assert job["metadata"]["deletionTimestamp"]  # type: ignore[index]
    assert CANCELLED_ANNOTATION in job["metadata"]["annotations"]  # type: ignore[index]
    other = kube.new_executor()
    try:
        synced(kube, other)
        seen = other.observe([10])[10]
    finally:
        other.close()
    assert seen.phase is Phase.CANCELLED
    kube.executor.cancel(99)  # unknown: success


def test_job_deleted_by_someone_else_fails_with_that_reason(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(11), None)
    kube.executor.launch(request(11))
    kube.emu.advance(30)
    kube.emu.delete("jobs", NAMESPACE, kube.name(11))
    synced(kube)
    seen = kube.executor.observe([11])[11]
    assert seen.phase is Phase.FAILED
    assert seen.reason == "deleted outside the platform"
    assert seen.finished_at == kube.now()


def test_node_lost_is_preempted(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(12), None)
    kube.executor.launch(request(12))
    kube.emu.advance(10)
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(12))
    kube.emu.lose_node(pod["spec"]["nodeName"])
    synced(kube)
    seen = kube.executor.observe([12])[12]
    assert seen.phase is Phase.PREEMPTED
    assert seen.reason == f"node {pod['spec']['nodeName']} lost"


def test_watch_expired_410_relists_and_sees_what_changed(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(13), 50)
    kube.emu.drop_next_watch("jobs", after_events=1)
    kube.executor.observe([])  # lists, then watches with that fault
    relists = kube.executor.jobs.relists
    kube.emu.stall_next("watch", "jobs", 0.3)  # the watch that resumes waits a little
    kube.executor.launch(request(13))  # one event, then the connection drops
    kube.emu.advance(100)
    kube.emu.compact()  # the resumed watch is now below the floor: 410 Gone
    deadline = time.monotonic() + 5
    while kube.executor.jobs.relists == relists and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kube.executor.jobs.relists > relists
    synced(kube)
    assert kube.executor.observe([13])[13].phase is Phase.SUCCEEDED
    kube.emu.delete("jobs", NAMESPACE, kube.name(13))  # the new watch sees later changes
    synced(kube)
    assert kube.executor.observe([13])[13].phase is Phase.SUCCEEDED  # finished before


def test_dropped_duplicated_and_reordered_watch_events_change_nothing(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(14), 40)
    synced(kube)
    kube.emu.duplicate_next_watch("jobs")
    kube.emu.reorder_next_watch("pods")
    kube.emu.drop_next_watch("jobs", after_events=1)
    # the faults apply to the next watch each cache opens: make them reconnect
    kube.emu.compact()
    kube.executor.launch(request(14))
    kube.emu.advance(100)
    synced(kube)
    assert kube.executor.observe([14])[14].phase is Phase.SUCCEEDED


def test_release_removes_the_finalizer_then_ttl_deletes_the_job(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(15), 10)
    kube.executor.launch(request(15, gpus=16, nodes=2))
    kube.emu.advance(700)  # past the TTL: the finalizer keeps the Job
    job = kube.job(15)
    assert job is not None and job["metadata"]["deletionTimestamp"]  # type: ignore[index]
    kube.executor.release(15)
    kube.executor.release(15)  # idempotent
    assert kube.job(15) is None
    assert kube.emu.find("services", NAMESPACE, kube.name(15)) is None


def test_capacity_counts_ready_schedulable_nodes_of_known_flavours(kube: Kube) -> None:
    kube.emu.add_node("gpu-cordoned", gpus=8, product="NVIDIA-A100-SXM4-80GB", unschedulable=True)
    kube.emu.add_node("gpu-down", gpus=8, product="NVIDIA-A100-SXM4-80GB", ready=False)
    kube.emu.add_node("other", gpus=4, product="NVIDIA-T4")
    capacity = kube.executor.capacity()
    assert sorted((n.name, n.flavour, n.gpus) for n in capacity.nodes) == [
        ("gpu-0", "a100-80gb", 8),
        ("gpu-1", "a100-80gb", 8),
    ]


def test_logs_read_the_rank_zero_pod(kube: Kube) -> None:
    assert kube.executor.logs(16) == ""
    kube.emu.set_run_duration(NAMESPACE, kube.name(16), 5)
    kube.executor.launch(request(16))
    kube.emu.advance(10)
    text = kube.executor.logs(16, tail_lines=2)
    assert text.splitlines()[-1].endswith("exited with code 0")
    assert len(text.splitlines()) == 2
