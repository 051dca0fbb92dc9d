"""The Kubernetes objects of one job attempt, built by pure functions.

One attempt is one batch/v1 Job named ``{instance}-{job_id}-{attempt}``. A gang
(a placement over several nodes) is one Indexed Job with one pod per node, a
headless Service of the same name for rendezvous and a NetworkPolicy that lets
its pods reach each other. Nothing here talks to a cluster; the executor sends
what these functions return.

Every attempt's pods carry ``credits.dev/job-uid``, a random value the executor
draws per attempt: the Service and the NetworkPolicy select the gang's pods by
it, and the executor finds an attempt's pods by it, never by a name someone
could guess or a label a job spec could set.

Placement is binding: the pods carry a required node affinity on the names of
the scheduler's nodes (a gang's pods, one per node, also a required
anti-affinity between themselves), and the Job its placement as an annotation
that the executor checks each pod's node against. A checkpointable job mounts
its own folder of the installation's checkpoint claim at ``/checkpoint``, and
its pods' ``terminationGracePeriodSeconds`` is its checkpoint grace.

Pods run locked down: non-root, no privilege escalation, no capabilities, the
runtime's default seccomp profile, no service account token and no service
links (Pod Security ``restricted``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from credits.jobs.executors.base import LaunchRequest, checkpoint_env
from credits.jobs.spec import is_label_key, is_label_value, reserved_label_domain

Manifest = dict[str, Any]

JOB_ID_LABEL = "credits.dev/job-id"
PROJECT_LABEL = "credits.dev/project"
ATTEMPT_LABEL = "credits.dev/attempt"
INSTANCE_LABEL = "credits.dev/instance"
UID_LABEL = "credits.dev/job-uid"
INSTANCE_ANNOTATION = "credits.dev/instance"
CANCELLED_ANNOTATION = "credits.dev/cancelled-at"
# A platform stop (a move): when it was asked and why; the attempt ends PREEMPTED.
STOPPED_ANNOTATION = "credits.dev/stopped-at"
STOP_REASON_ANNOTATION = "credits.dev/stop-reason"
# The nodes the scheduler chose ("gpu-0:4,gpu-1:4"): a pod elsewhere is a failed placement.
PLACEMENT_ANNOTATION = "credits.dev/placement"
# Set (with the reason) when the executor found a pod outside the placement and stopped it.
FAILED_PLACEMENT_ANNOTATION = "credits.dev/failed-placement"
HOSTNAME_LABEL = "kubernetes.io/hostname"
CHECKPOINT_VOLUME = "checkpoint"
CHECKPOINT_MOUNT = "/checkpoint"
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
    # The non-root user and group job containers run as (and their volumes' fsGroup).
    run_as_user: int = 1000
    run_as_group: int = 1000
    # A ReadWriteMany PersistentVolumeClaim in the jobs namespace for checkpoints; each
    # checkpointable job mounts only its own folder of it (``subPath``). None: this
    # installation runs no checkpointable jobs (their launch is refused).
    checkpoint_claim: str | None = None


def instance_slug(instance: str) -> str:
    """The instance name as a label value and the start of a DNS-1035 label: lowercase,
    '-' for the rest, and ``credits-`` before one that would start with a digit (a
    gang's Service is named like its Job, and a Service name must start with a letter)."""
    slug = _NOT_NAME.sub("-", instance.lower()).strip("-")
    if slug[:1].isdigit():
        slug = f"credits-{slug}"
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


def object_labels(
    request: LaunchRequest, options: ManifestOptions, pods: Mapping[str, str]
) -> dict[str, str]:
    """The job's own labels, less any under a reserved domain or that Kubernetes would
    refuse (a spec stored before either was checked may have one), then the platform's,
    then ``pods``: the labels that select the attempt's pods (its uid label)."""
    return {
        **{k: v for k, v in request.labels.items() if _own_label_allowed(k, v)},
        JOB_ID_LABEL: str(request.job_id),
        PROJECT_LABEL: str(request.project_id),
        ATTEMPT_LABEL: str(request.attempt),
        INSTANCE_LABEL: instance_slug(options.instance),
        **pods,
    }


def _own_label_allowed(key: str, value: str) -> bool:
    return reserved_label_domain(key) is None and is_label_key(key) and is_label_value(value)


def attempt_pod_labels(job: Manifest) -> dict[str, str]:
    """Labels that select exactly the pods of this Job (as read from the cluster): its
    uid label, or for a Job made before pods carried one, its attempt's platform labels.
    Raises ValueError for a Job without them (not one of the platform's)."""
    template = ((job.get("spec") or {}).get("template") or {}).get("metadata") or {}
    labels: Mapping[str, str] = template.get("labels") or {}
    if UID_LABEL in labels:
        return {UID_LABEL: labels[UID_LABEL]}
    own = job["metadata"].get("labels") or {}
    keys = (INSTANCE_LABEL, JOB_ID_LABEL, ATTEMPT_LABEL)
    if not all(own.get(key) for key in keys):
        # An empty selector would select every pod of the namespace.
        raise ValueError(f"Job {job['metadata'].get('name')} carries no platform labels")
    return {key: own[key] for key in keys}


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def job_manifest(request: LaunchRequest, options: ManifestOptions, *, uid: str) -> Manifest:
    """The batch/v1 Job of one attempt whose pods carry ``uid`` as their uid label;
    raises ValueError for a gang of unequal slices, or a checkpointable job where
    the installation has no checkpoint claim."""
    name = job_name(options.instance, request.job_id, request.attempt)
    labels = object_labels(request, options, {UID_LABEL: uid})
    pods = max(1, len(request.placement))
    spec: Manifest = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": request.max_runtime_seconds,
        "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
        "parallelism": pods,
        "completions": pods,
        "template": {
            "metadata": {"labels": dict(labels), "annotations": _annotations(options)},
            "spec": _pod_spec(request, options, name, uid),
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
            "annotations": {
                **_annotations(options),
                PLACEMENT_ANNOTATION: placement_annotation(request),
            },
            "finalizers": [METERING_FINALIZER],
        },
        "spec": spec,
    }


def service_manifest(
    request: LaunchRequest,
    options: ManifestOptions,
    *,
    pods: Mapping[str, str],
    owner_uid: str | None = None,
) -> Manifest:
    """The headless Service that gives a gang's pods (those with the labels ``pods``,
    see :func:`attempt_pod_labels`) stable DNS names for rendezvous.

    With ``owner_uid`` it is owned by the Job, so the cluster removes it with the Job.
    """
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _gang_metadata(request, options, pods, owner_uid),
        "spec": {
            "clusterIP": "None",
            "selector": dict(pods),
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "protocol": "TCP"}],
        },
    }


def network_policy_manifest(
    request: LaunchRequest,
    options: ManifestOptions,
    *,
    pods: Mapping[str, str],
    owner_uid: str | None = None,
) -> Manifest:
    """The NetworkPolicy that lets a gang's pods reach each other, on any port, and
    nothing else: the namespace denies all other traffic between pods (``k8s/``)."""
    peers = [{"podSelector": {"matchLabels": dict(pods)}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _gang_metadata(request, options, pods, owner_uid),
        "spec": {
            "podSelector": {"matchLabels": dict(pods)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": peers}],
            "egress": [{"to": peers}],
        },
    }


def _gang_metadata(
    request: LaunchRequest,
    options: ManifestOptions,
    pods: Mapping[str, str],
    owner_uid: str | None,
) -> Manifest:
    name = job_name(options.instance, request.job_id, request.attempt)
    metadata: Manifest = {
        "name": name,
        "namespace": options.namespace,
        "labels": object_labels(request, options, pods),
        "annotations": _annotations(options),
    }
    if owner_uid is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": owner_uid}
        ]
    return metadata


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


def placement_annotation(request: LaunchRequest) -> str:
    return ",".join(f"{part.node}:{part.gpus}" for part in request.placement)


def placement_nodes(annotation: str | None) -> frozenset[str]:
    """The nodes of a placement annotation; empty for a Job made before it had one."""
    if not annotation:
        return frozenset()
    return frozenset(part.rpartition(":")[0] for part in annotation.split(",") if ":" in part)


def _affinity(request: LaunchRequest, uid: str) -> Manifest:
    """Binding placement: the pods may run only on the scheduler's nodes (a required
    node affinity on the node's name, which a nodeSelector on a label could not say
    for certain), and a gang's pods, one per node, never share one."""
    nodes = sorted({part.node for part in request.placement})
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": nodes}]}
    affinity: Manifest = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    if is_gang(request):
        spread = {"labelSelector": {"matchLabels": {UID_LABEL: uid}}, "topologyKey": HOSTNAME_LABEL}
        affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [spread]}
    return affinity


def _checkpoint(request: LaunchRequest, options: ManifestOptions) -> tuple[Manifest, Manifest]:
    """The pod's volume and the container's mount of the job's own checkpoint folder:
    ``{instance}/{job_id}`` on the installation's claim, the same for every attempt
    and node, so a job moved elsewhere finds what it saved."""
    if options.checkpoint_claim is None:
        raise ValueError(
            f"job {request.job_id} is checkpointable but this installation has no "
            "checkpoint volume (CREDITS_KUBERNETES_CHECKPOINT_CLAIM)"
        )
    volume = {
        "name": CHECKPOINT_VOLUME,
        "persistentVolumeClaim": {"claimName": options.checkpoint_claim},
    }
    mount = {
        "name": CHECKPOINT_VOLUME,
        "mountPath": CHECKPOINT_MOUNT,
        "subPath": f"{instance_slug(options.instance)}/{request.job_id}",
    }
    return volume, mount


def _pod_spec(request: LaunchRequest, options: ManifestOptions, name: str, uid: str) -> Manifest:
    pods = max(1, len(request.placement))
    cpu = -(-request.cpu_millicores // pods)
    memory = -(-request.memory_mb // pods)
    limits = {GPU_RESOURCE: str(_gpus_per_pod(request)), "cpu": f"{cpu}m", "memory": f"{memory}Mi"}
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": request.image,
        "env": _env(request, options, name),
        "resources": {"limits": limits, "requests": dict(limits)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
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
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": options.run_as_user,
            "runAsGroup": options.run_as_group,
            "fsGroup": options.run_as_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": {options.flavour_label: request.node_label_value},
        "tolerations": [
            {"key": options.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}
        ],
        "containers": [container],
    }
    if request.placement:
        spec["affinity"] = _affinity(request, uid)
    if is_gang(request):
        spec["subdomain"] = name
    if request.checkpointable:
        volume, mount = _checkpoint(request, options)
        spec["volumes"] = [volume]
        container["volumeMounts"] = [mount]
        # The kubelet's SIGTERM-to-SIGKILL time on every deletion of its pods.
        spec["terminationGracePeriodSeconds"] = request.checkpoint_grace_seconds
    return spec


def _env(request: LaunchRequest, options: ManifestOptions, name: str) -> list[Manifest]:
    env: list[Manifest] = [{"name": key, "value": value} for key, value in request.env.items()]
    env += [
        {"name": "CREDITS_JOB_ID", "value": str(request.job_id)},
        {"name": "CREDITS_ATTEMPT", "value": str(request.attempt)},
    ]
    env += [
        {"name": key, "value": value}
        for key, value in checkpoint_env(request, CHECKPOINT_MOUNT).items()
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
