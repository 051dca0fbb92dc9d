"""The pure manifest builders: one Job per attempt, gangs as Indexed Jobs, valid objects."""

from __future__ import annotations

import kubernetes_validate
import pytest
from k8s_kube import request

from credits.jobs.executors.base import NodeSlice
from credits.jobs.manifests import (
    METERING_FINALIZER,
    ManifestOptions,
    instance_slug,
    job_manifest,
    job_name,
    service_manifest,
)

OPTIONS = ManifestOptions(namespace="credits-jobs", instance="credits")
K8S_VERSION = "1.30"


def test_single_node_job_has_labels_limits_selector_deadline_and_finalizer() -> None:
    job = job_manifest(request(12, attempt=2, gpus=4, max_runtime_seconds=900), OPTIONS)
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == "credits-12-2"
    assert meta["labels"] == {
        "credits.dev/job-id": "12",
        "credits.dev/project": "7",
        "credits.dev/attempt": "2",
        "credits.dev/instance": "credits",
    }
    assert meta["finalizers"] == [METERING_FINALIZER]
    assert meta["annotations"] == {"credits.dev/instance": "credits"}
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


def test_gang_is_an_indexed_job_with_one_pod_per_node_and_rendezvous_env() -> None:
    job = job_manifest(request(3, gpus=16, nodes=2), OPTIONS)
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
    service = service_manifest(request(3, gpus=16, nodes=2), OPTIONS, owner_uid="u-1")
    assert service["spec"]["clusterIP"] == "None"
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
        job_manifest(uneven, OPTIONS)


@pytest.mark.parametrize(
    ("instance", "slug"), [("credits", "credits"), ("Lab_A prod", "lab-a-prod")]
)
def test_instance_names_become_dns_labels(instance: str, slug: str) -> None:
    assert instance_slug(instance) == slug
    assert job_name(instance, 1, 1) == f"{slug}-1-1"


@pytest.mark.parametrize("nodes", [1, 2])
def test_manifests_are_valid_kubernetes_objects(nodes: int) -> None:
    req = request(5, gpus=8 * nodes, nodes=nodes)
    kubernetes_validate.validate(job_manifest(req, OPTIONS), K8S_VERSION, strict=True)
    kubernetes_validate.validate(
        service_manifest(req, OPTIONS, owner_uid="u"), K8S_VERSION, strict=True
    )
