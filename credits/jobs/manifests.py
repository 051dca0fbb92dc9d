"""The Kubernetes objects of one job attempt, built by pure functions.

One attempt is one batch/v1 Job named ``{instance}-{job_id}-{attempt}``. A gang
(a placement over several nodes) is one Indexed Job with one pod per node and a
headless Service of the same name for rendezvous. Nothing here talks to a
cluster; the executor sends what these functions return.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from credits.jobs.executors.base import LaunchRequest

Manifest = dict[str, Any]

JOB_ID_LABEL = "credits.dev/job-id"
PROJECT_LABEL = "credits.dev/project"
ATTEMPT_LABEL = "credits.dev/attempt"
INSTANCE_LABEL = "credits.dev/instance"
INSTANCE_ANNOTATION = "credits.dev/instance"
CANCELLED_ANNOTATION = "credits.dev/cancelled-at"
METERING_FINALIZER = "credits.dev/metering"
GPU_RESOURCE = "nvidia.com/gpu"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTAINER_NAME = "job"
RENDEZVOUS_PORT = 29500
_NAME_MAX = 63
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class ManifestOptions:
    """What the installation decides about every Job it makes."""

    namespace: str
    instance: str
    flavour_label: str = "nvidia.com/gpu.product"
    gpu_taint_key: str = "nvidia.com/gpu"
    ttl_seconds_after_finished: int = 3600


def instance_slug(instance: str) -> str:
    """The instance name as a DNS label and label value: lowercase, '-' for the rest."""
    slug = _NOT_NAME.sub("-", instance.lower()).strip("-")
    return slug[:40].rstrip("-") or "credits"


def job_name(instance: str, job_id: int, attempt: int) -> str:
    """``credits-12-1``: unique per installation, job and attempt, at most 63 characters."""
    return f"{instance_slug(instance)}-{job_id}-{attempt}"


def instance_selector(instance: str) -> str:
    """The label selector of every object this installation made."""
    return f"{INSTANCE_LABEL}={instance_slug(instance)}"


def job_selector(instance: str, job_id: int) -> str:
    return f"{instance_selector(instance)},{JOB_ID_LABEL}={job_id}"


def is_gang(request: LaunchRequest) -> bool:
    return len(request.placement) > 1


def object_labels(request: LaunchRequest, options: ManifestOptions) -> dict[str, str]:
    """The job's own labels, then the platform's (which win)."""
    return {
        **request.labels,
        JOB_ID_LABEL: str(request.job_id),
        PROJECT_LABEL: str(request.project_id),
        ATTEMPT_LABEL: str(request.attempt),
        INSTANCE_LABEL: instance_slug(options.instance),
    }


def job_manifest(request: LaunchRequest, options: ManifestOptions) -> Manifest:
    """The batch/v1 Job of one attempt; raises ValueError for a gang of unequal slices."""
    name = job_name(options.instance, request.job_id, request.attempt)
    labels = object_labels(request, options)
    pods = max(1, len(request.placement))
    spec: Manifest = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": request.max_runtime_seconds,
        "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
        "parallelism": pods,
        "completions": pods,
        "template": {
            "metadata": {"labels": labels, "annotations": _annotations(options)},
            "spec": _pod_spec(request, options, name),
        },
    }
    if is_gang(request):
        spec["completionMode"] = "Indexed"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": options.namespace,
            "labels": labels,
            "annotations": _annotations(options),
            "finalizers": [METERING_FINALIZER],
        },
        "spec": spec,
    }


def service_manifest(
    request: LaunchRequest, options: ManifestOptions, *, owner_uid: str | None = None
) -> Manifest:
    """The headless Service that gives a gang's pods stable DNS names for rendezvous.

    With ``owner_uid`` it is owned by the Job, so the cluster removes it with the Job.
    """
    name = job_name(options.instance, request.job_id, request.attempt)
    metadata: Manifest = {
        "name": name,
        "namespace": options.namespace,
        "labels": object_labels(request, options),
        "annotations": _annotations(options),
    }
    if owner_uid is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": owner_uid}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_NAME_LABEL: name},
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "protocol": "TCP"}],
        },
    }


def _annotations(options: ManifestOptions) -> dict[str, str]:
    return {INSTANCE_ANNOTATION: options.instance}


def _gpus_per_pod(request: LaunchRequest) -> int:
    if not is_gang(request):
        return request.gpus
    sizes = {part.gpus for part in request.placement}
    if len(sizes) != 1:
        raise ValueError(
            f"job {request.job_id}: a gang needs the same GPUs on every node; got "
            + ", ".join(f"{part.node}x{part.gpus}" for part in request.placement)
        )
    return sizes.pop()


def _pod_spec(request: LaunchRequest, options: ManifestOptions, name: str) -> Manifest:
    pods = max(1, len(request.placement))
    cpu = -(-request.cpu_millicores // pods)
    memory = -(-request.memory_mb // pods)
    limits = {GPU_RESOURCE: str(_gpus_per_pod(request)), "cpu": f"{cpu}m", "memory": f"{memory}Mi"}
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": request.image,
        "env": _env(request, options, name),
        "resources": {"limits": limits, "requests": dict(limits)},
    }
    if request.command:
        container["command"] = list(request.command)
    if request.args:
        container["args"] = list(request.args)
    if request.working_dir:
        container["workingDir"] = request.working_dir
    spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "nodeSelector": {options.flavour_label: request.node_label_value},
        "tolerations": [
            {"key": options.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}
        ],
        "containers": [container],
    }
    if is_gang(request):
        spec["subdomain"] = name
    return spec


def _env(request: LaunchRequest, options: ManifestOptions, name: str) -> list[Manifest]:
    env: list[Manifest] = [{"name": key, "value": value} for key, value in request.env.items()]
    env += [
        {"name": "CREDITS_JOB_ID", "value": str(request.job_id)},
        {"name": "CREDITS_ATTEMPT", "value": str(request.attempt)},
    ]
    if not is_gang(request):
        return env
    index_ref = f"metadata.annotations['{INDEX_ANNOTATION}']"
    return [
        *env,
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": index_ref}}},
        {"name": "WORLD_SIZE", "value": str(len(request.placement))},
        {"name": "MASTER_ADDR", "value": f"{name}-0.{name}.{options.namespace}.svc"},
        {"name": "MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
    ]
