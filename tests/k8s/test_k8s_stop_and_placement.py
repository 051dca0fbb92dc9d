"""The Kubernetes executor against the API emulator: a platform stop deletes the Job with
the checkpoint grace and is observed PREEMPTED, placement is binding (required node
affinity), and a pod the cluster put elsewhere is a failed placement."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from k8s_kube import NAMESPACE, Kube, make_executor, request, synced

from credits.jobs.executors.base import LaunchRequest, NodeSlice, Observation, Phase
from credits.jobs.executors.kube_status import (
    JobRecord,
    PodRecord,
    job_record,
    placement_problem,
)
from credits.jobs.executors.kubernetes import KubernetesExecutor
from credits.jobs.manifests import (
    FAILED_PLACEMENT_ANNOTATION,
    PLACEMENT_ANNOTATION,
    STOP_REASON_ANNOTATION,
    STOPPED_ANNOTATION,
    ManifestOptions,
    job_manifest,
)

pytest_plugins = ["k8s_fixtures", "k8s_executor_fixtures"]

CLAIM = "credits-checkpoints"
OPTIONS = ManifestOptions(namespace=NAMESPACE, instance="credits")
GRACE = 120
REASON = "moved to gpu-1 to make room for job 9"


def _claimed(kube: Kube) -> KubernetesExecutor:
    """The fixture's executor, with a checkpoint claim (the first one is closed)."""
    kube.executor.close()
    executor = make_executor(kube.emu)
    executor.options = dataclasses.replace(executor.options, checkpoint_claim=CLAIM)
    kube.executor = executor
    return executor


def _checkpointable(job_id: int, node: str = "gpu-0", gpus: int = 2) -> LaunchRequest:
    return dataclasses.replace(
        request(job_id, gpus=gpus),
        placement=(NodeSlice(node, gpus),),
        checkpointable=True,
        checkpoint_grace_seconds=GRACE,
    )


def _seen(kube: Kube, job_id: int, executor: KubernetesExecutor | None = None) -> Observation:
    executor = executor or kube.executor
    synced(kube, executor)
    return executor.observe([job_id])[job_id]


def _pods(kube: Kube, job_id: int, attempt: int = 1) -> list[dict[str, object]]:
    return kube.emu.job_pods(NAMESPACE, kube.name(job_id, attempt))


def _node_of(pod: dict[str, object]) -> str:
    spec = pod["spec"]
    assert isinstance(spec, dict)
    return str(spec["nodeName"])


def _running(kube: Kube, req: LaunchRequest) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(req.job_id, req.attempt), None)
    kube.executor.launch(req)
    kube.emu.advance(1)
    assert _seen(kube, req.job_id).phase is Phase.RUNNING


def test_stop_deletes_with_the_grace_and_is_preempted_once_the_pod_is_killed(
    kube: Kube,
) -> None:
    _claimed(kube)
    _running(kube, _checkpointable(1))
    stopped_at = kube.now()

    kube.executor.stop(1, GRACE, REASON)
    kube.executor.stop(1, GRACE, "a repeat")  # changes nothing

    job = kube.job(1)
    assert job is not None
    meta = job["metadata"]
    assert isinstance(meta, dict)
    assert meta["annotations"][STOP_REASON_ANNOTATION] == REASON
    assert meta["annotations"][STOPPED_ANNOTATION] == stopped_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert meta["deletionTimestamp"]  # the metering finalizer holds it
    deletes = [path for method, path in kube.emu.requests if method == "DELETE"]
    assert any(
        "/jobs/credits-1-1" in path
        and f"gracePeriodSeconds={GRACE}" in path
        and "propagationPolicy=Foreground" in path
        for path in deletes
    ), deletes
    assert any("/pods/" in path and f"gracePeriodSeconds={GRACE}" in path for path in deletes)
    (pod,) = _pods(kube, 1)
    assert pod["metadata"]["deletionGracePeriodSeconds"] == GRACE  # type: ignore[index]

    kube.emu.advance(GRACE - 1)  # it is saving its checkpoint: its GPUs stay held
    assert _seen(kube, 1).phase is Phase.RUNNING

    kube.emu.advance(1)  # the grace is over: SIGKILL
    seen = _seen(kube, 1)
    assert (seen.phase, seen.reason) == (Phase.PREEMPTED, REASON)
    assert seen.finished_at == stopped_at + timedelta(seconds=GRACE)
    assert _pods(kube, 1) == []
    # A platform restarted now reads the same from the Job's marks.
    fresh = kube.new_executor()
    try:
        assert _seen(kube, 1, fresh).phase is Phase.PREEMPTED
    finally:
        fresh.close()


def test_a_job_that_saves_within_its_grace_is_preempted_when_it_exits(kube: Kube) -> None:
    _claimed(kube)
    kube.emu.set_sigterm_exit(NAMESPACE, kube.name(1), 30, exit_code=0)
    _running(kube, _checkpointable(1))
    stopped_at = kube.now()

    kube.executor.stop(1, GRACE, REASON)
    kube.emu.advance(30)

    seen = _seen(kube, 1)
    assert (seen.phase, seen.reason) == (Phase.PREEMPTED, REASON)
    assert seen.finished_at == stopped_at + timedelta(seconds=30)


def test_stop_leaves_a_finished_or_cancelled_job_as_it_was(kube: Kube) -> None:
    _claimed(kube)
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), 10)
    kube.executor.launch(_checkpointable(1))
    kube.emu.advance(20)
    kube.executor.stop(1, GRACE, REASON)
    assert _seen(kube, 1).phase is Phase.SUCCEEDED

    _running(kube, _checkpointable(2, node="gpu-1"))
    kube.executor.cancel(2)
    kube.executor.stop(2, GRACE, REASON)
    kube.emu.advance(GRACE)
    assert _seen(kube, 2).phase is Phase.CANCELLED

    kube.executor.stop(404, GRACE, REASON)  # unknown: nothing to do


def test_the_pod_runs_on_the_node_the_scheduler_chose(kube: Kube) -> None:
    req = dataclasses.replace(request(1, gpus=2), placement=(NodeSlice("gpu-1", 2),))
    kube.executor.launch(req)
    kube.emu.advance(1)
    (pod,) = _pods(kube, 1)
    assert _node_of(pod) == "gpu-1"  # first fit alone would have taken gpu-0
    assert _seen(kube, 1).phase is Phase.RUNNING


def test_a_gangs_pods_run_one_on_each_of_its_nodes(kube: Kube) -> None:
    kube.emu.add_node("gpu-2", gpus=8, product="NVIDIA-A100-SXM4-80GB")
    req = dataclasses.replace(
        request(1, gpus=8, nodes=2), placement=(NodeSlice("gpu-1", 4), NodeSlice("gpu-2", 4))
    )
    kube.executor.launch(req)
    kube.emu.advance(1)
    assert sorted(_node_of(pod) for pod in _pods(kube, 1)) == ["gpu-1", "gpu-2"]
    assert _seen(kube, 1).phase is Phase.RUNNING


def test_a_pod_placed_elsewhere_is_a_failed_placement_and_is_stopped(kube: Kube) -> None:
    kube.emu.ignore_affinity()  # as if a webhook had stripped the affinity
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), None)
    req = dataclasses.replace(request(1, gpus=2), placement=(NodeSlice("gpu-1", 2),))
    kube.executor.launch(req)
    kube.emu.advance(1)
    (pod,) = _pods(kube, 1)
    assert _node_of(pod) == "gpu-0"

    # Seen: marked, deleted, killed after a second; until then it holds its GPUs.
    assert _seen(kube, 1).phase is Phase.RUNNING
    job = kube.job(1)
    assert job is not None
    reason = job["metadata"]["annotations"][FAILED_PLACEMENT_ANNOTATION]  # type: ignore[index]
    pod_name = pod["metadata"]["name"]  # type: ignore[index]
    assert reason == (
        f"failed placement: pod {pod_name} ran on node gpu-0, outside its placement (gpu-1)"
    )
    kube.emu.advance(1)
    seen = _seen(kube, 1)
    assert (seen.phase, seen.reason) == (Phase.FAILED, reason)
    assert _pods(kube, 1) == []
    fresh = kube.new_executor()  # its cache never saw the pod: the Job's mark says it
    try:
        assert _seen(kube, 1, fresh).reason == reason
    finally:
        fresh.close()


def _record(placement: str | None) -> JobRecord:
    job = job_manifest(request(1, gpus=8, nodes=2), OPTIONS, uid="u")
    annotations = job["metadata"]["annotations"]
    if placement is None:
        del annotations[PLACEMENT_ANNOTATION]
    else:
        annotations[PLACEMENT_ANNOTATION] = placement
    record = job_record(job)
    assert record is not None
    return record


def _pod(name: str, node: str, phase: str = "Running") -> PodRecord:
    return PodRecord(name, "1", "credits-1-1", 0, phase, None, node, None, None, None, False)


def test_two_pods_of_a_gang_on_one_node_are_a_failed_placement() -> None:
    record = _record("gpu-0:4,gpu-1:4")
    assert placement_problem(record, [_pod("a", "gpu-0"), _pod("b", "gpu-1")]) is None
    # A finished pod no longer holds the node: its replacement may run there.
    assert placement_problem(record, [_pod("a", "gpu-0", "Failed"), _pod("b", "gpu-0")]) is None
    assert placement_problem(record, [_pod("a", "gpu-0"), _pod("b", "gpu-0")]) == (
        "failed placement: pods a and b share node gpu-0"
    )


def test_a_job_made_before_placements_were_recorded_is_not_checked() -> None:
    assert placement_problem(_record(None), [_pod("a", "anywhere")]) is None


def test_a_gang_is_stopped_whole_and_preempted_once_its_last_pod_stopped(kube: Kube) -> None:
    _claimed(kube)
    req = dataclasses.replace(
        request(1, gpus=8, nodes=2), checkpointable=True, checkpoint_grace_seconds=GRACE
    )
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), None)
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), None, index=1)
    kube.emu.set_sigterm_exit(NAMESPACE, kube.name(1), 10)  # rank 1 keeps the default: killed
    kube.executor.launch(req)
    kube.emu.advance(1)
    assert _seen(kube, 1).phase is Phase.RUNNING
    stopped_at = kube.now()

    kube.executor.stop(1, GRACE, REASON)
    kube.emu.advance(10)
    assert len(_pods(kube, 1)) == 1  # rank 0 saved and left; rank 1 still holds its GPUs
    assert _seen(kube, 1).phase is Phase.RUNNING
    kube.emu.advance(GRACE - 10)
    seen = _seen(kube, 1)
    assert (seen.phase, seen.reason) == (Phase.PREEMPTED, REASON)
    assert seen.finished_at == stopped_at + timedelta(seconds=GRACE)
