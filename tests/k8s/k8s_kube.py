"""Helpers for tests of the Kubernetes executor against the emulator.

The ``kube`` fixture (``k8s_executor_fixtures``) is a started emulator with the jobs
namespace and two A100 nodes, and a ``KubernetesExecutor`` on it whose clock is the
emulator's virtual clock.
``synced(kube)`` waits until the executor's cache holds exactly the emulator's
current objects (the watch thread is asynchronous), then returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from k8s_controllers import EPOCH
from k8s_emulator import K8sEmulator

from credits.jobs.executors.base import LaunchRequest, NodeSlice
from credits.jobs.executors.kube_calls import RetryPolicy
from credits.jobs.executors.kubernetes import KubernetesExecutor
from credits.jobs.manifests import INSTANCE_LABEL, ManifestOptions, job_name

NAMESPACE = "credits-jobs"
INSTANCE = "credits"
A100 = "NVIDIA-A100-SXM4-80GB"
FLAVOUR = "a100-80gb"
FAST_RETRIES = RetryPolicy(attempts=4, first_backoff_s=0.01, max_backoff_s=0.05)


@dataclass
class Kube:
    emu: K8sEmulator
    executor: KubernetesExecutor

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.emu.now)

    def new_executor(self) -> KubernetesExecutor:
        """Another platform process: a fresh executor with an empty cache."""
        return make_executor(self.emu)

    def name(self, job_id: int, attempt: int = 1) -> str:
        return job_name(INSTANCE, job_id, attempt)

    def job(self, job_id: int, attempt: int = 1) -> dict[str, object] | None:
        return self.emu.find("jobs", NAMESPACE, self.name(job_id, attempt))


def make_executor(emu: K8sEmulator) -> KubernetesExecutor:
    options = ManifestOptions(
        namespace=NAMESPACE, instance=INSTANCE, ttl_seconds_after_finished=600
    )
    return KubernetesExecutor(
        emu.api_client(),
        options,
        flavours={A100: FLAVOUR},
        clock=lambda: EPOCH + timedelta(seconds=emu.now),
        policy=FAST_RETRIES,
    )


def request(
    job_id: int,
    *,
    attempt: int = 1,
    gpus: int = 2,
    nodes: int = 1,
    max_runtime_seconds: int = 3600,
) -> LaunchRequest:
    per_node = gpus // nodes
    return LaunchRequest(
        job_id=job_id,
        attempt=attempt,
        project_id=7,
        name="train",
        image="python:3.12",
        command=("python", "-c", "print('hi')"),
        args=(),
        env={"EPOCHS": "3"},
        working_dir=None,
        flavour=FLAVOUR,
        node_label_value=A100,
        gpus=gpus,
        cpu_millicores=4000 * gpus,
        memory_mb=16384 * gpus,
        max_runtime_seconds=max_runtime_seconds,
        placement=tuple(NodeSlice(f"gpu-{i}", per_node) for i in range(nodes)),
    )


def _versions_of(emu: K8sEmulator) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for plural in ("jobs", "pods"):
        for obj in emu.objects(plural, NAMESPACE, {INSTANCE_LABEL: INSTANCE}):
            found[(plural, obj["metadata"]["name"])] = obj["metadata"]["resourceVersion"]
    return found


def _cached(executor: KubernetesExecutor) -> dict[tuple[str, str], str]:
    found = {("jobs", n): r.resource_version for n, r in executor.jobs.records().items()}
    found |= {("pods", n): r.resource_version for n, r in executor.pods.records().items()}
    return found


def synced(kube: Kube, executor: KubernetesExecutor | None = None, timeout: float = 5.0) -> None:
    """Waits until the executor's cache equals the emulator's objects (equality of
    resourceVersions: a test-only check that the watch has caught up)."""
    executor = executor or kube.executor
    deadline = time.monotonic() + timeout
    while True:
        executor.observe([])
        if _cached(executor) == _versions_of(kube.emu):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"cache {_cached(executor)} != emulator {_versions_of(kube.emu)}")
        time.sleep(0.01)
