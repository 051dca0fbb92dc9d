"""Pure pieces of the Kubernetes executor's capacity: a node's GPUs for the
platform, the GPUs a pod holds, and the flavour mapping of node label values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from credits.jobs.executors.base import NodeCapacity
from credits.jobs.manifests import GPU_RESOURCE

Obj = dict[str, Any]


def node_capacity(
    node: Obj, label: str, flavours: Mapping[str, str], held: Mapping[str, int]
) -> NodeCapacity | None:
    """The node's GPUs for the platform; None for a node of no known flavour or no GPUs.

    Its GPUs are what others' pods leave; a node they fill is reported with all its
    GPUs but not schedulable, so that the pool's shape stays that of its nodes."""
    meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    value = (meta.get("labels") or {}).get(label)
    if value is None or (flavours and value not in flavours):
        return None
    allocatable = quantity((status.get("allocatable") or {}).get(GPU_RESOURCE))
    if allocatable <= 0:
        return None
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    free = allocatable - held.get(meta["name"], 0)
    return NodeCapacity(
        name=meta["name"],
        flavour=flavours.get(value, value),
        gpus=free if free > 0 else allocatable,
        schedulable=ready and not spec.get("unschedulable") and free > 0,
    )


def quantity(value: Any) -> int:
    """A GPU count (an extended resource: a whole number) from a quantity, 0 if none."""
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0


def pod_gpus(pod: Obj) -> int:
    """The GPUs a pod holds: its containers' requests (else limits) summed, or its
    largest init container's when that is more."""
    spec = pod.get("spec") or {}

    def gpus(container: Obj) -> int:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        return quantity(requests.get(GPU_RESOURCE, limits.get(GPU_RESOURCE)))

    running = sum(gpus(c) for c in spec.get("containers") or [])
    init = max((gpus(c) for c in spec.get("initContainers") or []), default=0)
    return max(running, init)


def parse_flavours(text: str) -> dict[str, str]:
    """``"a100-80gb=NVIDIA-A100-SXM4-80GB,h100=..."`` -> {node label value: flavour}."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        flavour, sep, value = part.partition("=")
        if not sep or not flavour.strip() or not value.strip():
            raise ValueError(f"bad flavour mapping {part!r}; write flavour=node-label-value")
        mapping[value.strip()] = flavour.strip()
    return mapping
