"""Pod-level pieces of the cluster simulation: resource requests, node fit, the pods a Job
creates, and the pod statuses a kubelet writes."""

from __future__ import annotations

import copy
import uuid

from k8s_store import Obj

GPU = "nvidia.com/gpu"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
TERMINAL = ("Succeeded", "Failed")


def gpu_request(pod: Obj) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(GPU) or (resources.get("requests") or {}).get(
            GPU
        )
        total += int(value or 0)
    return total


def node_ready(node: Obj) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol["key"] == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and (tol.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def _matches_requirement(requirement: Obj, value: str | None) -> bool:
    operator, values = requirement.get("operator"), requirement.get("values") or []
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    raise ValueError(f"the emulator does not know the operator {operator!r}")


def _term_matches(term: Obj, node: Obj) -> bool:
    """A nodeSelectorTerm: its matchFields (metadata.name) and matchExpressions (labels),
    all of them."""
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    return all(
        _matches_requirement(r, fields.get(r.get("key", ""))) for r in term.get("matchFields") or []
    ) and all(
        _matches_requirement(r, labels.get(r.get("key", "")))
        for r in term.get("matchExpressions") or []
    )


def node_affinity_allows(pod: Obj, node: Obj) -> bool:
    """The pod's required node affinity: any of its terms matches the node."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True
    return any(_term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


def anti_affinity_allows(pod: Obj, pods_on_node: list[Obj]) -> bool:
    """The pod's required pod anti-affinity by hostname (the only topology the emulator
    knows): no pod already on the node matches any of its label selectors."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {}
    for term in affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        if term.get("topologyKey") != "kubernetes.io/hostname":
            raise ValueError(f"the emulator knows only the hostname topology, not {term!r}")
        wanted = (term.get("labelSelector") or {}).get("matchLabels") or {}
        for other in pods_on_node:
            labels = other["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                return False
    return True


def _affinity_problem(pod: Obj, node: Obj, pods_on_node: list[Obj]) -> str | None:
    if not node_affinity_allows(pod, node):
        return "node(s) didn't match Pod's node affinity/selector"
    if not anti_affinity_allows(pod, pods_on_node):
        return "node(s) didn't match pod anti-affinity rules"
    return None


def fits(
    pod: Obj,
    node: Obj,
    used: dict[str, int],
    *,
    pods_on_node: list[Obj] | None = None,
    ignore_affinity: bool = False,
) -> str | None:
    """None when the pod fits on the node, else why not. ``ignore_affinity``: a
    scheduler that ignores affinity (a fault: a webhook stripped it, say)."""
    name = node["metadata"]["name"]
    if not node_ready(node):
        return "node not ready or unschedulable"
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return "node(s) didn't match Pod's node affinity/selector"
    if not ignore_affinity and (problem := _affinity_problem(pod, node, pods_on_node or [])):
        return problem
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            key, value = taint.get("key"), taint.get("value", "")
            return f"node(s) had untolerated taint {{{key}: {value}}}"
    allocatable = int(((node.get("status") or {}).get("allocatable") or {}).get(GPU, 0))
    if gpu_request(pod) > allocatable - used.get(name, 0):
        return f"Insufficient {GPU}"
    return None


def pod_from_template(job: Obj, index: int | None) -> Obj:
    """The pod a Job controller creates for one (completion index of a) Job."""
    meta = job["metadata"]
    template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    pod_spec = template.get("spec") or {}
    labels = dict(tmeta.get("labels") or {})
    annotations = dict(tmeta.get("annotations") or {})
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
            "job-name": meta["name"],
        }
    )
    prefix = f"{meta['name']}-"
    if index is not None:
        labels[INDEX_KEY] = str(index)
        annotations[INDEX_KEY] = str(index)
        pod_spec["hostname"] = f"{meta['name']}-{index}"
        prefix = f"{meta['name']}-{index}-"
        for container in pod_spec.get("containers") or []:
            env = container.setdefault("env", [])
            env.append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
    return {
        "metadata": {
            "generateName": prefix,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }


def running_status(pod: Obj, started: str, pod_ip: str) -> Obj:
    """The status of a pod whose containers just started."""
    status = copy.deepcopy(pod.get("status") or {})
    status.update(
        {
            "phase": "Running",
            "startTime": started,
            "podIP": pod_ip,
            "hostIP": "192.168.0.1",
        }
    )
    status["conditions"] = [
        *(status.get("conditions") or []),
        {"type": "Ready", "status": "True", "lastTransitionTime": started},
    ]
    status["containerStatuses"] = [
        {
            "name": c.get("name", ""),
            "image": c.get("image", ""),
            "imageID": "",
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": {"running": {"startedAt": started}},
        }
        for c in (pod.get("spec") or {}).get("containers") or []
    ]
    return status


def terminated_status(pod: Obj, exit_code: int, reason: str | None, finished: str) -> Obj:
    """The status of a pod whose containers ended: Succeeded on 0, else Failed."""
    status = copy.deepcopy(pod.get("status") or {})
    status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
    if reason:
        status["reason"] = reason
        status["message"] = f"pod {pod['metadata']['name']} ended: {reason}"
    term_reason = reason or ("Completed" if exit_code == 0 else "Error")
    status["conditions"] = [
        {**c, "status": "False"} if c.get("type") == "Ready" else c
        for c in status.get("conditions") or []
    ]
    containers = status.get("containerStatuses") or [
        {
            "name": c.get("name", ""),
            "image": c.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
        }
        for c in (pod.get("spec") or {}).get("containers") or []
    ]
    for cs in containers:
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt", finished)
        cs["ready"] = False
        cs["started"] = False
        cs["state"] = {
            "terminated": {
                "exitCode": exit_code,
                "reason": term_reason,
                "startedAt": started,
                "finishedAt": finished,
            }
        }
    status["containerStatuses"] = containers
    return status


def event_object(obj: Obj, reason: str, message: str, type_: str, at: str) -> Obj:
    """A core v1 Event about ``obj``."""
    meta = obj["metadata"]
    return {
        "metadata": {
            "name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
            "namespace": meta.get("namespace") or "default",
        },
        "involvedObject": {
            "kind": obj.get("kind"),
            "apiVersion": obj.get("apiVersion"),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "count": 1,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "source": {"component": "k8s-emulator"},
    }
