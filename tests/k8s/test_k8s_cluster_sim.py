"""The emulator's job controller, scheduler and kubelet on the virtual clock, observed
through the real client."""

from __future__ import annotations

import pytest
from k8s_bodies import job_manifest
from k8s_emulator import K8sEmulator
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytest_plugins = ["k8s_fixtures"]  # the k8s_emu and k8s_api fixtures

NS = "default"
H100 = "NVIDIA-H100-80GB-HBM3"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _conditions(job: client.V1Job) -> list[tuple[str, str]]:
    return [(c.type, c.reason) for c in job.status.conditions or []]


def _pods(core: client.CoreV1Api, job: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(NS, label_selector=f"batch.kubernetes.io/job-name={job}").items


def test_controller_runs_a_job_to_succeeded_on_the_virtual_clock(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a", gpus=8)
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train", gpus=4, duration_s=30))
    k8s_emu.advance(10)
    (pod,) = _pods(core, "train")
    assert pod.status.phase == "Running"
    assert pod.spec.node_name == "node-a"
    assert pod.status.start_time is not None
    assert pod.status.container_statuses[0].state.running.started_at == pod.status.start_time
    running = batch.read_namespaced_job("train", NS)
    assert (running.status.active, running.status.ready) == (1, 1)
    assert running.status.start_time is not None
    k8s_emu.advance(25)
    (pod,) = _pods(core, "train")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert (terminated.finished_at - terminated.started_at).total_seconds() == 30
    done = batch.read_namespaced_job("train", NS)
    assert (done.status.active, done.status.succeeded, done.status.failed) == (0, 1, 0)
    assert _conditions(done) == [("Complete", "CompletionsReached")]
    assert (done.status.completion_time - done.status.start_time).total_seconds() == 30
    log = core.read_namespaced_pod_log(pod.metadata.name, NS, tail_lines=2)
    assert log.splitlines() == [
        "2030-01-01T00:00:30Z step 30",
        "2030-01-01T00:00:30Z exited with code 0",
    ]
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=train").items
    assert {"SuccessfulCreate", "CompletionsReached"} <= {e.reason for e in events}


def test_set_run_duration_with_a_nonzero_exit_fails_the_job_with_backoff_limit_exceeded(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a")
    k8s_emu.set_run_duration(NS, "train", 5, exit_code=3)
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train"))
    k8s_emu.advance(5)
    (pod,) = _pods(core, "train")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3
    job = batch.read_namespaced_job("train", NS)
    assert _conditions(job) == [("Failed", "BackoffLimitExceeded")]
    assert (job.status.failed, job.status.active) == (1, 0)
    k8s_emu.advance(60)
    assert len(_pods(core, "train")) == 1  # backoffLimit 0: no replacement pod


def test_indexed_job_gang_places_one_pod_per_node(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a", gpus=8)
    k8s_emu.add_node("node-b", gpus=8)
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    body = job_manifest("gang", gpus=8, completionMode="Indexed", completions=2, parallelism=2)
    body["spec"]["template"]["spec"]["subdomain"] = "gang"
    batch.create_namespaced_job(NS, body)
    k8s_emu.set_run_duration(NS, "gang", 100)
    k8s_emu.tick()
    pods = sorted(
        _pods(core, "gang"),
        key=lambda p: p.metadata.labels["batch.kubernetes.io/job-completion-index"],
    )
    assert [p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods] == [
        "0",
        "1",
    ]
    assert [p.spec.hostname for p in pods] == ["gang-0", "gang-1"]
    assert sorted(p.spec.node_name for p in pods) == ["node-a", "node-b"]
    assert all(p.status.phase == "Running" for p in pods)
    env = {e.name: e.value for e in pods[1].spec.containers[0].env}
    assert env["JOB_COMPLETION_INDEX"] == "1"
    assert batch.read_namespaced_job("gang", NS).status.active == 2
    k8s_emu.advance(100)
    done = batch.read_namespaced_job("gang", NS)
    assert done.status.completed_indexes == "0,1"
    assert _conditions(done) == [("Complete", "CompletionsReached")]


def test_pods_are_not_scheduled_without_free_gpus_matching_selector_or_tolerated_taint(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("h100", gpus=8, product=H100, taints=[GPU_TAINT])
    k8s_emu.add_node("a100", gpus=8, product="NVIDIA-A100-SXM4-80GB", taints=[GPU_TAINT])
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    on_h100 = {"nvidia.com/gpu.product": H100}
    batch.create_namespaced_job(
        NS, job_manifest("big", gpus=6, node_selector=on_h100, tolerations=[GPU_TOLERATION])
    )
    batch.create_namespaced_job(
        NS, job_manifest("no-room", gpus=4, node_selector=on_h100, tolerations=[GPU_TOLERATION])
    )
    batch.create_namespaced_job(
        NS,
        job_manifest(
            "no-such-flavour",
            node_selector={"nvidia.com/gpu.product": "B200"},
            tolerations=[GPU_TOLERATION],
        ),
    )
    batch.create_namespaced_job(NS, job_manifest("untolerated", gpus=1))
    k8s_emu.tick()
    assert _pods(core, "big")[0].spec.node_name == "h100"
    for name, why in (
        ("no-room", "Insufficient nvidia.com/gpu"),
        ("no-such-flavour", "didn't match Pod's node affinity/selector"),
        ("untolerated", "untolerated taint {nvidia.com/gpu: present}"),
    ):
        (pod,) = _pods(core, name)
        assert pod.status.phase == "Pending"
        assert pod.spec.node_name is None
        (cond,) = pod.status.conditions
        assert (cond.type, cond.status, cond.reason) == ("PodScheduled", "False", "Unschedulable")
        assert why in cond.message
    assert k8s_emu.cluster.gpu_usage() == {"h100": 6}
    batch.delete_namespaced_job("big", NS, propagation_policy="Background")
    k8s_emu.tick()
    assert _pods(core, "no-room")[0].spec.node_name == "h100"  # freed GPUs are reused


def test_not_ready_and_cordoned_nodes_get_no_pods(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("down", ready=False)
    k8s_emu.add_node("cordoned")
    k8s_emu.cordon("cordoned")
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train"))
    k8s_emu.advance(5)
    assert _pods(core, "train")[0].status.phase == "Pending"
    k8s_emu.cordon("cordoned", unschedulable=False)
    k8s_emu.tick()
    assert _pods(core, "train")[0].spec.node_name == "cordoned"


def test_active_deadline_exceeded_fails_the_job_and_kills_its_pods(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a")
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    batch.create_namespaced_job(
        NS, job_manifest("slow", duration_s=10_000, activeDeadlineSeconds=600)
    )
    k8s_emu.advance(599)
    assert batch.read_namespaced_job("slow", NS).status.active == 1
    k8s_emu.advance(1)
    job = batch.read_namespaced_job("slow", NS)
    assert _conditions(job) == [("Failed", "DeadlineExceeded")]
    assert (job.status.active, job.status.failed) == (0, 1)
    assert _pods(core, "slow") == []


def test_ttl_after_finished_deletes_the_job_respecting_finalizers(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a")
    batch = client.BatchV1Api(k8s_api)
    batch.create_namespaced_job(
        NS, job_manifest("plain", duration_s=10, ttlSecondsAfterFinished=60)
    )
    batch.create_namespaced_job(
        NS,
        job_manifest(
            "metered",
            duration_s=10,
            ttlSecondsAfterFinished=60,
            finalizers=["credits.dev/metering"],
        ),
    )
    k8s_emu.advance(69)
    assert {j.metadata.name for j in batch.list_namespaced_job(NS).items} == {"plain", "metered"}
    k8s_emu.advance(1)
    (left,) = batch.list_namespaced_job(NS).items
    assert left.metadata.name == "metered"
    assert left.metadata.deletion_timestamp is not None
    assert k8s_emu.job_pods(NS, "plain") == []
    batch.patch_namespaced_job("metered", NS, [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(ApiException) as exc:
        batch.read_namespaced_job("metered", NS)
    assert exc.value.status == 404
    assert k8s_emu.job_pods(NS, "metered") == []  # the TTL controller deletes in background


def test_node_loss_fails_running_pods_with_node_lost_and_the_job(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a", gpus=8)
    k8s_emu.add_node("node-b", gpus=8)
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train", gpus=8, duration_s=1000))
    k8s_emu.advance(10)
    (pod,) = _pods(core, "train")
    assert k8s_emu.lose_node(pod.spec.node_name) == [pod.metadata.name]
    (lost,) = _pods(core, "train")
    assert (lost.status.phase, lost.status.reason) == ("Failed", "NodeLost")
    assert lost.status.container_statuses[0].state.terminated.exit_code == 137
    assert _conditions(batch.read_namespaced_job("train", NS)) == [
        ("Failed", "BackoffLimitExceeded")
    ]
    node = core.read_node(pod.spec.node_name)
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "Unknown"
    assert {t.key for t in node.spec.taints} == {"node.kubernetes.io/unreachable"}
    batch.create_namespaced_job(NS, job_manifest("next", gpus=8))
    k8s_emu.tick()
    (fresh,) = _pods(core, "next")
    assert fresh.spec.node_name != pod.spec.node_name


def test_node_loss_can_delete_the_pods_instead(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("node-a")
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train", duration_s=1000, backoffLimit=1))
    k8s_emu.tick()
    k8s_emu.lose_node("node-a", delete_pods=True)
    (pod,) = _pods(core, "train")  # a replacement, pending: no ready node
    assert pod.status.phase == "Pending"
    k8s_emu.restore_node("node-a")
    assert _pods(core, "train")[0].status.phase == "Running"


def test_pod_log_of_a_pending_pod_is_400_and_extra_lines_are_served(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    batch.create_namespaced_job(NS, job_manifest("train"))
    k8s_emu.tick()
    (pod,) = _pods(core, "train")
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log(pod.metadata.name, NS)
    assert exc.value.status == 400
    k8s_emu.add_node("node-a")
    k8s_emu.advance(3)
    k8s_emu.append_log(NS, pod.metadata.name, "loss=0.1")
    lines = core.read_namespaced_pod_log(pod.metadata.name, NS).splitlines()
    assert lines[0].endswith(f"{pod.metadata.name} started on node-a")
    assert lines[-1] == "loss=0.1"
    assert core.read_namespaced_pod_log(pod.metadata.name, NS, tail_lines=1) == "loss=0.1\n"
