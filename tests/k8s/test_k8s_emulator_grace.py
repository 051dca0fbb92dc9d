"""The API emulator's graceful pod deletion and required affinity, as the real client sees
them: what the Kubernetes executor's stop and binding placement rely on."""

from __future__ import annotations

import json

from k8s_bodies import job_manifest, pod_manifest
from k8s_emulator import K8sEmulator
from k8s_pods import GPU
from kubernetes import client

pytest_plugins = ["k8s_fixtures"]

NS = "default"


def _only_pod(k8s_emu: K8sEmulator, job: str) -> dict[str, object]:
    (pod,) = k8s_emu.job_pods(NS, job)
    return pod


def _running_pod(k8s_emu: K8sEmulator, k8s_api: client.ApiClient, name: str) -> None:
    """A bare pod asking for one GPU (no Job to replace it), running until killed; its
    job-name label lets run plans name it."""
    body = pod_manifest(name, labels={"batch.kubernetes.io/job-name": name})
    body["spec"]["containers"][0]["resources"] = {"limits": {GPU: "1"}}
    k8s_emu.set_run_duration(NS, name, None)
    client.CoreV1Api(k8s_api).create_namespaced_pod(NS, body)
    k8s_emu.advance(5)
    assert k8s_emu.get("pods", NS, name)["status"]["phase"] == "Running"


def _delete(k8s_api: client.ApiClient, name: str, **grace: int) -> dict[str, object]:
    response = client.CoreV1Api(k8s_api).delete_namespaced_pod(
        name, NS, _preload_content=False, **grace
    )
    answer: dict[str, object] = json.loads(response.data)
    return answer


def test_a_pod_deleted_with_a_grace_is_terminated_then_killed_when_it_ends(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("gpu-a", gpus=8)
    _running_pod(k8s_emu, k8s_api, "train")

    answer = _delete(k8s_api, "train", grace_period_seconds=30)

    assert answer["kind"] == "Pod"  # being terminated, not gone
    meta = answer["metadata"]
    assert isinstance(meta, dict)
    assert meta["deletionGracePeriodSeconds"] == 30
    assert meta["deletionTimestamp"] == k8s_emu.clock.iso(35)
    k8s_emu.advance(29)
    assert k8s_emu.get("pods", NS, "train")["status"]["phase"] == "Running"
    assert k8s_emu.cluster.gpu_usage() == {"gpu-a": 1}  # still holding its GPU
    k8s_emu.advance(1)
    assert k8s_emu.find("pods", NS, "train") is None
    assert k8s_emu.cluster.gpu_usage() == {}


def test_a_pod_that_exits_on_sigterm_goes_before_its_grace_ends(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("gpu-a", gpus=8)
    _running_pod(k8s_emu, k8s_api, "train")
    k8s_emu.set_sigterm_exit(NS, "train", 10)

    _delete(k8s_api, "train", grace_period_seconds=300)
    k8s_emu.advance(9)
    assert k8s_emu.find("pods", NS, "train") is not None
    k8s_emu.advance(1)
    assert k8s_emu.find("pods", NS, "train") is None


def test_a_pod_without_a_grace_goes_at_once(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    k8s_emu.add_node("gpu-a", gpus=8)
    _running_pod(k8s_emu, k8s_api, "train")
    _delete(k8s_api, "train")
    assert k8s_emu.find("pods", NS, "train") is None


def _pinned(name: str, node: str) -> dict[str, object]:
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    body = job_manifest(name)
    body["spec"]["template"]["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    return body


def test_required_node_affinity_binds_the_pod_unless_the_scheduler_ignores_it(
    k8s_emu: K8sEmulator, k8s_api: client.ApiClient
) -> None:
    for node in ("gpu-a", "gpu-b"):
        k8s_emu.add_node(node, gpus=8)
    batch = client.BatchV1Api(k8s_api)
    batch.create_namespaced_job(NS, _pinned("pinned", "gpu-b"))
    batch.create_namespaced_job(NS, _pinned("nowhere", "gpu-z"))
    k8s_emu.tick()
    assert _only_pod(k8s_emu, "pinned")["spec"]["nodeName"] == "gpu-b"  # type: ignore[index]
    waiting = _only_pod(k8s_emu, "nowhere")
    assert "nodeName" not in waiting["spec"]  # type: ignore[operator]
    assert "affinity" in waiting["status"]["conditions"][0]["message"]  # type: ignore[index]

    k8s_emu.ignore_affinity()
    batch.create_namespaced_job(NS, _pinned("stray", "gpu-b"))
    k8s_emu.tick()
    assert _only_pod(k8s_emu, "stray")["spec"]["nodeName"] == "gpu-a"  # type: ignore[index]
