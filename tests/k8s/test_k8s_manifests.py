"""The pure manifest builders: one Job per attempt, gangs as Indexed Jobs, valid objects."""

from __future__ import annotations

import dataclasses
from typing import Any

import kubernetes_validate
import pytest
from k8s_kube import request

from credits.jobs.executors.base import LaunchRequest, NodeSlice
from credits.jobs.manifests import (
    METERING_FINALIZER,
    UID_LABEL,
    ManifestOptions,
    attempt_pod_labels,
    instance_slug,
    job_manifest,
    job_name,
    label_selector,
    network_policy_manifest,
    service_manifest,
)

OPTIONS = ManifestOptions(namespace="credits-jobs", instance="credits")
K8S_VERSION = "1.30"
UID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
PODS = {UID_LABEL: UID}


def test_single_node_job_has_labels_limits_selector_deadline_and_finalizer() -> None:
    job = job_manifest(request(12, attempt=2, gpus=4, max_runtime_seconds=900), OPTIONS, uid=UID)
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == "credits-12-2"
    assert meta["labels"] == {
        "credits.dev/job-id": "12",
        "credits.dev/project": "7",
        "credits.dev/attempt": "2",
        "credits.dev/instance": "credits",
        UID_LABEL: UID,
    }
    assert meta["finalizers"] == [METERING_FINALIZER]
    assert meta["annotations"] == {
        "credits.dev/instance": "credits",
        "credits.dev/placement": "gpu-0:4",
    }
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 900)
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert "completionMode" not in spec
    pod = spec["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["restartPolicy"] == "Never"
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "4", "cpu": "16000m", "memory": "65536Mi"}
    assert spec["template"]["metadata"]["labels"]["credits.dev/job-id"] == "12"
    assert spec["template"]["metadata"]["labels"][UID_LABEL] == UID


def test_gang_is_an_indexed_job_with_one_pod_per_node_and_rendezvous_env() -> None:
    job = job_manifest(request(3, gpus=16, nodes=2), OPTIONS, uid=UID)
    spec = job["spec"]
    assert (spec["completionMode"], spec["parallelism"], spec["completions"]) == ("Indexed", 2, 2)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "credits-3-1"
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["WORLD_SIZE"] == "2"
    assert env["MASTER_ADDR"] == "credits-3-1-0.credits-3-1.credits-jobs.svc"
    assert env["EPOCHS"] == "3"
    service = service_manifest(request(3, gpus=16, nodes=2), OPTIONS, pods=PODS, owner_uid="u-1")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {UID_LABEL: UID}  # not the guessable job name
    assert service["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_gang_of_unequal_slices_is_refused() -> None:
    uneven = request(4, gpus=12, nodes=2)
    uneven = type(uneven)(
        **{
            **{f: getattr(uneven, f) for f in uneven.__slots__},  # type: ignore[attr-defined]
            "placement": (NodeSlice("a", 8), NodeSlice("b", 4)),
        }
    )
    with pytest.raises(ValueError, match="same GPUs on every node"):
        job_manifest(uneven, OPTIONS, uid=UID)


def _required_nodes(pod: dict[str, Any]) -> list[str]:
    node_affinity = pod["affinity"]["nodeAffinity"]
    (term,) = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (field,) = term["matchFields"]
    assert (field["key"], field["operator"]) == ("metadata.name", "In")
    return list(field["values"])


def test_a_job_may_run_only_on_the_node_the_scheduler_chose() -> None:
    job = job_manifest(request(12, gpus=4), OPTIONS, uid=UID)
    pod = job["spec"]["template"]["spec"]
    assert _required_nodes(pod) == ["gpu-0"]
    assert "podAntiAffinity" not in pod["affinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["nodeAffinity"]


def test_a_gangs_pods_may_run_only_on_its_nodes_one_per_node() -> None:
    job = job_manifest(request(3, gpus=16, nodes=2), OPTIONS, uid=UID)
    pod = job["spec"]["template"]["spec"]
    assert _required_nodes(pod) == ["gpu-0", "gpu-1"]
    (spread,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert spread == {
        "labelSelector": {"matchLabels": {UID_LABEL: UID}},
        "topologyKey": "kubernetes.io/hostname",
    }
    assert job["metadata"]["annotations"]["credits.dev/placement"] == "gpu-0:8,gpu-1:8"


CLAIMED = dataclasses.replace(OPTIONS, checkpoint_claim="credits-checkpoints")


def _checkpointable(req: LaunchRequest, grace: int = 120) -> LaunchRequest:
    return dataclasses.replace(req, checkpointable=True, checkpoint_grace_seconds=grace)


def test_a_checkpointable_job_mounts_its_own_folder_of_the_claim_with_its_grace() -> None:
    job = job_manifest(_checkpointable(request(12, attempt=3)), CLAIMED, uid=UID)
    pod = _pod_spec(job)
    assert pod["terminationGracePeriodSeconds"] == 120
    assert pod["volumes"] == [
        {"name": "checkpoint", "persistentVolumeClaim": {"claimName": "credits-checkpoints"}}
    ]
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [
        {"name": "checkpoint", "mountPath": "/checkpoint", "subPath": "credits/12"}
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["CREDITS_CHECKPOINT_DIR"], env["CREDITS_RESTART_COUNT"]) == ("/checkpoint", "2")


def test_a_job_that_is_not_checkpointable_has_no_checkpoint_and_the_default_grace() -> None:
    pod = _pod_spec(job_manifest(request(12), CLAIMED, uid=UID))
    assert "terminationGracePeriodSeconds" not in pod
    assert "volumes" not in pod
    names = {e["name"] for e in pod["containers"][0]["env"]}
    assert not names & {"CREDITS_CHECKPOINT_DIR", "CREDITS_RESTART_COUNT"}


def test_a_checkpointable_job_is_refused_without_a_checkpoint_claim() -> None:
    with pytest.raises(ValueError, match="CREDITS_KUBERNETES_CHECKPOINT_CLAIM"):
        job_manifest(_checkpointable(request(12)), OPTIONS, uid=UID)


@pytest.mark.parametrize(
    ("instance", "slug"), [("credits", "credits"), ("Lab_A prod", "lab-a-prod")]
)
def test_instance_names_become_dns_labels(instance: str, slug: str) -> None:
    assert instance_slug(instance) == slug
    assert job_name(instance, 1, 1) == f"{slug}-1-1"


@pytest.mark.parametrize("checkpointable", [False, True], ids=["plain", "checkpointable"])
@pytest.mark.parametrize("nodes", [1, 2])
def test_manifests_are_valid_kubernetes_objects(nodes: int, checkpointable: bool) -> None:
    req = request(5, gpus=8 * nodes, nodes=nodes)
    if checkpointable:
        req = _checkpointable(req)
    job = job_manifest(req, CLAIMED, uid=UID)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    for build in (service_manifest, network_policy_manifest):
        kubernetes_validate.validate(
            build(req, OPTIONS, pods=PODS, owner_uid="u"), K8S_VERSION, strict=True
        )


def _pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("nodes", [1, 2], ids=["single", "gang"])
def test_job_pods_are_locked_down(nodes: int) -> None:
    pod = _pod_spec(job_manifest(request(5, gpus=8 * nodes, nodes=nodes), OPTIONS, uid=UID))
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }
    for field in ("hostNetwork", "hostPID", "hostIPC", "volumes", "serviceAccountName"):
        assert field not in pod


def test_the_job_user_and_group_are_the_installations() -> None:
    options = dataclasses.replace(OPTIONS, run_as_user=2000, run_as_group=3000)
    context = _pod_spec(job_manifest(request(5), options, uid=UID))["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (2000, 3000, 3000)


def test_gang_network_policy_lets_only_its_own_pods_reach_each_other() -> None:
    policy = network_policy_manifest(
        request(3, gpus=16, nodes=2), OPTIONS, pods=PODS, owner_uid="u-1"
    )
    meta, spec = policy["metadata"], policy["spec"]
    assert (meta["name"], meta["namespace"]) == ("credits-3-1", "credits-jobs")
    assert meta["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "credits-3-1", "uid": "u-1"}
    ]
    peers = [{"podSelector": {"matchLabels": {UID_LABEL: UID}}}]
    assert spec == {
        "podSelector": {"matchLabels": {UID_LABEL: UID}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": peers}],
        "egress": [{"to": peers}],
    }


def _with_labels(req: LaunchRequest, labels: dict[str, str]) -> LaunchRequest:
    return dataclasses.replace(req, labels=labels)


def test_labels_under_reserved_domains_never_reach_the_cluster() -> None:
    # A spec stored before these domains were reserved may still carry them.
    req = _with_labels(
        request(6),
        {"team": "vision", "batch.kubernetes.io/job-name": "other", UID_LABEL: "guessed"},
    )
    labels = job_manifest(req, OPTIONS, uid=UID)["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "vision"
    assert "batch.kubernetes.io/job-name" not in labels
    assert labels[UID_LABEL] == UID


def test_an_attempts_pods_are_selected_by_its_uid_label() -> None:
    job = job_manifest(request(7, attempt=3), OPTIONS, uid=UID)
    assert attempt_pod_labels(job) == {UID_LABEL: UID}
    assert label_selector(attempt_pod_labels(job)) == f"{UID_LABEL}={UID}"


def test_a_job_made_before_the_uid_label_selects_its_pods_by_its_platform_labels() -> None:
    job = job_manifest(request(7, attempt=3), OPTIONS, uid=UID)
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        del labels[UID_LABEL]
    assert label_selector(attempt_pod_labels(job)) == (
        "credits.dev/instance=credits,credits.dev/job-id=7,credits.dev/attempt=3"
    )
    job["metadata"]["labels"] = {}
    with pytest.raises(ValueError, match="no platform labels"):
        attempt_pod_labels(job)
