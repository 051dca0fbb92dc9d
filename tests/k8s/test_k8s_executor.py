"""The Kubernetes executor against the HTTP-level API emulator, without a database."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from k8s_kube import A100, FLAVOUR, INSTANCE, NAMESPACE, Kube, request, synced

from credits.jobs.executors.base import ExecutorError, Phase
from credits.jobs.executors.kube_logs import API_LIMIT_MARKER
from credits.jobs.executors.kube_status import parse_time
from credits.jobs.executors.kubernetes import executor_from_settings
from credits.jobs.logtail import CHUNK_BYTES, MAX_LINE_BYTES, MAX_TAIL_BYTES, cut_marker
from credits.jobs.manifests import CANCELLED_ANNOTATION, INSTANCE_LABEL, METERING_FINALIZER
from credits.jobs.runtime import pool_nodes
from credits.settings import ExecutorName, Settings, SettingsError

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


def test_cancel_stops_the_pods_at_once_and_ends_when_they_stopped(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(20), None)
    kube.executor.launch(request(20, gpus=16, nodes=2))  # a gang: every pod goes
    kube.emu.advance(30)
    synced(kube)
    started = kube.executor.observe([20])[20].started_at
    assert started is not None
    kube.executor.cancel(20)
    assert kube.emu.job_pods(NAMESPACE, kube.name(20)) == []
    assert kube.emu.cluster.gpu_usage() == {}  # the GPUs are free now, not at release
    cancelled_at = kube.now()
    kube.emu.advance(100)
    assert kube.emu.job_pods(NAMESPACE, kube.name(20)) == []  # and nothing comes back
    job = kube.job(20)
    assert job is not None and METERING_FINALIZER in job["metadata"]["finalizers"]  # type: ignore[index]
    synced(kube)
    seen = kube.executor.observe([20])[20]
    assert (seen.phase, seen.reason) == (Phase.CANCELLED, "cancelled")
    assert (seen.started_at, seen.finished_at) == (started, cancelled_at)
    kube.executor.cancel(20)  # a repeat is success
    kube.executor.release(20)
    assert kube.job(20) is None  # the finalizer was all that held it
    assert kube.emu.find("services", NAMESPACE, kube.name(20)) is None


def test_pods_left_running_by_an_earlier_deletion_are_charged_until_cancel_stops_them(
    kube: Kube,
) -> None:
    name = kube.name(21)
    kube.emu.set_run_duration(NAMESPACE, name, None)
    kube.executor.launch(request(21))
    kube.emu.advance(10)
    # What cancel used to do: mark, then delete in the Background. The finalizer keeps
    # the Job, so the garbage collector leaves its pods running.
    job = kube.emu.get("jobs", NAMESPACE, name)
    job["metadata"]["annotations"][CANCELLED_ANNOTATION] = kube.emu.clock.iso()
    kube.emu.update("jobs", job)
    kube.emu.delete("jobs", NAMESPACE, name)
    kube.emu.advance(50)
    (pod,) = kube.emu.job_pods(NAMESPACE, name)
    assert pod["status"]["phase"] == "Running"
    synced(kube)
    seen = kube.executor.observe([21])[21]
    assert seen.phase is Phase.RUNNING  # still holding GPUs: still charged
    kube.executor.cancel(21)
    assert kube.emu.job_pods(NAMESPACE, name) == []
    synced(kube)
    seen = kube.executor.observe([21])[21]
    assert seen.phase is Phase.CANCELLED
    assert seen.started_at is not None and seen.finished_at == kube.now()
    assert (seen.finished_at - seen.started_at).total_seconds() == 60


def test_cancel_of_a_job_never_started_ends_at_the_cancel(kube: Kube) -> None:
    kube.executor.launch(request(22, gpus=16))  # one pod of 16 GPUs: fits no node
    kube.emu.advance(5)
    assert len(kube.emu.job_pods(NAMESPACE, kube.name(22))) == 1
    kube.executor.cancel(22)
    assert kube.emu.job_pods(NAMESPACE, kube.name(22)) == []
    kube.emu.advance(20)
    synced(kube)
    seen = kube.executor.observe([22])[22]
    assert (seen.phase, seen.started_at) == (Phase.CANCELLED, None)
    assert seen.finished_at == kube.now() - timedelta(seconds=20)


def test_a_finished_job_whose_pods_went_unseen_started_at_the_job_start(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(23), 40)
    kube.executor.launch(request(23))
    kube.emu.advance(100)
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(23))
    kube.emu.delete("pods", NAMESPACE, pod["metadata"]["name"])
    # a cache that never saw the pod: one re-listed after the deletion, as after a 410
    other = kube.new_executor()
    try:
        synced(kube, other)
        seen = other.observe([23])[23]
    finally:
        other.close()
    job = kube.job(23)
    assert job is not None
    assert seen.phase is Phase.SUCCEEDED
    assert seen.started_at == parse_time(job["status"]["startTime"])  # type: ignore[index]
    assert seen.finished_at is not None and seen.started_at is not None
    assert (seen.finished_at - seen.started_at).total_seconds() == 40


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


def test_closing_the_executor_ends_its_blocked_watch_threads_at_once(kube: Kube) -> None:
    kube.emu.api.bookmark_interval_s = 3600  # the watches will send nothing more
    before = set(threading.enumerate())
    kube.executor.launch(request(15))
    kube.emu.advance(1)
    synced(kube)  # both watches have delivered events: each thread now blocks reading
    watchers = [t for t in set(threading.enumerate()) - before if t.name.startswith("kube-watch")]
    assert len(watchers) == 2
    closing = threading.Thread(target=kube.executor.close, daemon=True)
    closing.start()
    # Not a speed check: a close that waited for the watch's next byte would wait
    # for the watch's timeout, minutes away.
    closing.join(timeout=10)
    assert not closing.is_alive()
    for watcher in watchers:
        watcher.join(timeout=5)
    assert [t.name for t in watchers if t.is_alive()] == []


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


def _foreign_pod(
    kube: Kube,
    name: str,
    node: str | None,
    gpus: int,
    *,
    namespace: str = NAMESPACE,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
) -> None:
    """A pod someone else made (by default another installation sharing the jobs
    namespace), already bound to ``node`` (the emulator leaves it be)."""
    labels = {INSTANCE_LABEL: "staging"} if labels is None else labels
    container = {
        "name": "main",
        "image": "busybox",
        "resources": {"requests": {"nvidia.com/gpu": str(gpus)}},
    }
    spec: dict[str, object] = {"containers": [container]}
    if node is not None:
        spec["nodeName"] = node
    kube.emu.create(
        "pods",
        {
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": spec,
            "status": {"phase": phase},
        },
    )


def _capacity(kube: Kube) -> list[tuple[str, str, int, bool]]:
    nodes = kube.executor.capacity().nodes
    return sorted((n.name, n.flavour, n.gpus, n.schedulable) for n in nodes)


def test_capacity_reports_cordoned_and_not_ready_nodes_as_not_schedulable(kube: Kube) -> None:
    kube.emu.add_node("gpu-cordoned", gpus=8, product=A100, unschedulable=True)
    kube.emu.add_node("gpu-down", gpus=8, product=A100, ready=False)
    kube.emu.add_node("other", gpus=4, product="NVIDIA-T4")  # no known flavour
    kube.emu.add_node("cpu-only", gpus=0, product=A100)  # no GPUs: not a GPU node
    assert _capacity(kube) == [
        ("gpu-0", FLAVOUR, 8, True),
        ("gpu-1", FLAVOUR, 8, True),
        ("gpu-cordoned", FLAVOUR, 8, False),
        ("gpu-down", FLAVOUR, 8, False),
    ]
    capacity = kube.executor.capacity()
    assert capacity.gpus_by_flavour() == {FLAVOUR: 16}


def test_draining_a_whole_flavour_keeps_its_shape_for_submissions(kube: Kube) -> None:
    kube.emu.cordon("gpu-0")
    kube.emu.lose_node("gpu-1")  # NotReady
    assert pool_nodes(kube.executor) == {FLAVOUR: (2, 8)}  # a 16-GPU job still "fits"
    assert kube.executor.capacity().gpus_by_flavour() == {}  # but nothing starts


def test_capacity_subtracts_gpus_held_by_other_installations_in_the_jobs_namespace(
    kube: Kube,
) -> None:
    kube.emu.add_namespace("team-b")
    _foreign_pod(kube, "staging-a", "gpu-0", 4)
    _foreign_pod(kube, "staging-b", "gpu-1", 1, phase="Pending")
    _foreign_pod(kube, "unlabelled", "gpu-1", 2, labels={})  # not this installation's
    _foreign_pod(kube, "done", "gpu-0", 4, phase="Succeeded")  # holds nothing any more
    # Other namespaces' pods are kept off the tainted GPU nodes: none is read.
    _foreign_pod(kube, "notebook", "gpu-0", 2, namespace="team-b", labels={})
    _foreign_pod(kube, "default-pod", "gpu-1", 2, namespace="default", labels={})
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), None)
    kube.executor.launch(request(1, gpus=2))  # the platform's own: the scheduler counts them
    kube.emu.tick()
    assert len(kube.emu.job_pods(NAMESPACE, kube.name(1))) == 1
    _foreign_pod(kube, "unbound", None, 2, phase="Pending")  # holds no node yet
    assert _capacity(kube) == [
        ("gpu-0", FLAVOUR, 4, True),
        ("gpu-1", FLAVOUR, 5, True),
    ]
    lists = [path for method, path in kube.emu.requests if method == "GET" and "/pods" in path]
    assert lists and all(path.startswith(f"/api/v1/namespaces/{NAMESPACE}/") for path in lists)


def test_a_node_filled_by_others_is_reported_whole_but_not_schedulable(kube: Kube) -> None:
    _foreign_pod(kube, "hog", "gpu-0", 8)
    assert _capacity(kube) == [("gpu-0", FLAVOUR, 8, False), ("gpu-1", FLAVOUR, 8, True)]


def test_capacity_without_leave_to_list_other_pods_counts_allocatable(kube: Kube) -> None:
    _foreign_pod(kube, "notebook", "gpu-0", 4)
    kube.emu.fail_next("list", "pods", 403, message="pods is forbidden")
    assert _capacity(kube) == [("gpu-0", FLAVOUR, 8, True), ("gpu-1", FLAVOUR, 8, True)]


def test_executor_from_settings_reads_the_kubeconfig(kube: Kube, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {kube.emu.url}
users:
- name: platform
  user:
    token: not-checked
contexts:
- name: emulator
  context:
    cluster: emulator
    user: platform
    namespace: ignored-by-the-executor
current-context: emulator
"""
    )
    settings = Settings(
        executor=ExecutorName.KUBERNETES,
        kubernetes_kubeconfig=kubeconfig,
        kubernetes_context="emulator",
        kubernetes_namespace=NAMESPACE,
        kubernetes_flavours=f"{FLAVOUR}={A100}",
        instance_name=INSTANCE,
    )
    executor = executor_from_settings(settings)
    try:
        assert executor.options.namespace == NAMESPACE
        nodes = executor.capacity().nodes
        assert sorted((n.name, n.flavour, n.gpus) for n in nodes) == [
            ("gpu-0", FLAVOUR, 8),
            ("gpu-1", FLAVOUR, 8),
        ]
        executor.launch(request(1))
        assert kube.job(1) is not None  # in the namespace of the setting
    finally:
        executor.close()
    with pytest.raises(SettingsError):
        executor_from_settings(settings.model_copy(update={"kubernetes_flavours": "oops"}))


def test_logs_read_the_rank_zero_pod(kube: Kube) -> None:
    assert kube.executor.logs(16) == ""
    kube.emu.set_run_duration(NAMESPACE, kube.name(16), 5)
    kube.executor.launch(request(16))
    kube.emu.advance(10)
    text = kube.executor.logs(16, tail_lines=2)
    assert text.splitlines()[-1].endswith("exited with code 0")
    assert len(text.splitlines()) == 2


def _pod_of(kube: Kube, job_id: int) -> str:
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(job_id))
    return str(pod["metadata"]["name"])


def test_logs_ask_the_api_for_bounded_tails(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(17), 3)
    kube.executor.launch(request(17))
    kube.emu.advance(1)
    pod = _pod_of(kube, 17)
    kube.emu.append_log(NAMESPACE, pod, "p" * 50_000, "é" * 600_000, "done")
    kube.emu.advance(10)
    text = kube.executor.logs(17, tail_lines=4)
    reads = [path for method, path in kube.emu.requests if path.split("?")[0].endswith("/log")]
    assert "tailLines=4" in reads[-1]
    assert f"limitBytes={MAX_TAIL_BYTES}" in reads[-1]
    # The last 4 lines are 1.25 MB: the kubelet sends their first MiB, which ends
    # inside the second line and inside one of its characters. Each long line comes
    # back as its last 16 KiB, and a marker says where the API stopped.
    first, second = text.splitlines()
    assert first == cut_marker(50_000 - MAX_LINE_BYTES) + "p" * MAX_LINE_BYTES
    sent = MAX_TAIL_BYTES - 50_001  # of the second line, an odd count: é is split
    assert second == cut_marker(sent - 1 - MAX_LINE_BYTES) + "é" * (MAX_LINE_BYTES // 2) + (
        API_LIMIT_MARKER
    )
    assert text.endswith("\n")


def test_log_stream_streams_the_whole_pod_log_in_chunks(kube: Kube) -> None:
    assert list(kube.executor.log_stream(18)) == []  # no Job
    kube.emu.set_run_duration(NAMESPACE, kube.name(18), 2)
    kube.executor.launch(request(18))
    kube.emu.advance(1)
    big = "z" * 300_000
    kube.emu.append_log(NAMESPACE, _pod_of(kube, 18), big, "tail line")
    kube.emu.advance(5)
    chunks = list(kube.executor.log_stream(18))
    assert all(len(chunk) <= CHUNK_BYTES for chunk in chunks)
    assert len(chunks) >= 5
    text = b"".join(chunks).decode()
    assert f"\n{big}\ntail line\n" in text
    assert text.endswith("exited with code 0\n")
    reads = [path for method, path in kube.emu.requests if path.split("?")[0].endswith("/log")]
    assert "limitBytes" not in reads[-1]
    assert "tailLines" not in reads[-1]


def test_log_stream_raises_when_the_api_keeps_failing(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(19), 2)
    kube.executor.launch(request(19))
    kube.emu.advance(5)
    kube.emu.fail_next("get", "pods/log", 500, times=8)
    with pytest.raises(ExecutorError) as raised:
        kube.executor.log_stream(19)
    assert raised.value.transient
    assert kube.executor.logs(19) == ""  # a tail that cannot be read is empty
