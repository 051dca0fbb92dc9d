"""Request bodies for tests against the Kubernetes API emulator."""

from __future__ import annotations

from typing import Any

from k8s_controllers import DURATION_ANNOTATION, EXIT_CODE_ANNOTATION
from k8s_pods import GPU


def job_manifest(
    name: str,
    *,
    gpus: int = 1,
    duration_s: float | None = None,
    exit_code: int | None = None,
    labels: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    finalizers: list[str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A batch/v1 Job body (a dict, sent as is by the client) asking for ``gpus`` GPUs;
    ``duration_s``/``exit_code`` become the emulator's pod-template annotations."""
    annotations: dict[str, str] = {}
    if duration_s is not None:
        annotations[DURATION_ANNOTATION] = str(duration_s)
    if exit_code is not None:
        annotations[EXIT_CODE_ANNOTATION] = str(exit_code)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "registry.example/train:1",
                "resources": {"limits": {GPU: str(gpus)}} if gpus else {},
            }
        ],
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    metadata: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
    if finalizers:
        metadata["finalizers"] = finalizers
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "metadata": {"labels": dict(labels or {}), "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def pod_manifest(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A bare pod body without GPUs."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
