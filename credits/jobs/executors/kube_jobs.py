"""Reading one job's Jobs and pods from the API, and ending an attempt.

Every platform-made end of an attempt is the same three steps, each safe to
repeat: mark the Job with why (an annotation, so a platform restarted in
between still knows the deletion was its own and what it means), delete it
with Foreground propagation (the garbage collector deletes its pods while the
metering finalizer still holds the Job), and delete its pods still running
ourselves, so their GPUs free as soon as they stop. The marks are a cancel
(``credits.dev/cancelled-at``), a platform stop (``stopped-at`` and
``stop-reason``, with the checkpoint grace) and a failed placement
(``failed-placement``); ``kube_status`` reads them back.

A grace is passed to every deletion: the kubelet sends SIGTERM, waits the
grace, then SIGKILL. Kubernetes applies a Job deletion's grace to the Job
alone, not to the pods the garbage collector deletes (those take their own
``terminationGracePeriodSeconds``, which the manifests set to a checkpointable
job's grace), so the pods are also deleted here with the grace itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from credits.jobs.executors.base import ExecutorError
from credits.jobs.executors.kube_cache import WatchedCache
from credits.jobs.executors.kube_calls import NotFound, RetryPolicy, call
from credits.jobs.executors.kube_status import JobRecord, PodRecord
from credits.jobs.manifests import attempt_pod_labels, job_selector, label_selector

logger = logging.getLogger(__name__)
Obj = dict[str, Any]
FINISHED_POD_PHASES = ("Succeeded", "Failed")


class KubeJobs:
    """The Jobs and pods of this installation's jobs in one namespace."""

    def __init__(
        self,
        batch: Any,
        core: Any,
        *,
        namespace: str,
        instance: str,
        policy: RetryPolicy,
        jobs: WatchedCache[JobRecord],
        pods: WatchedCache[PodRecord],
    ) -> None:
        self._batch = batch
        self._core = core
        self._ns = namespace
        self._instance = instance
        self._policy = policy
        self._jobs = jobs
        self._pods = pods

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return call(what, self._policy, fn, *args, **kwargs)

    # -- reading -------------------------------------------------------------------

    def list_jobs(self, job_id: int) -> list[Obj]:
        """Every attempt's Job of the job, as the API has them now."""
        response = self.call(
            f"listing the Jobs of job {job_id}",
            self._batch.list_namespaced_job,
            self._ns,
            label_selector=job_selector(self._instance, job_id),
            _preload_content=False,
        )
        return list(json.loads(response.data).get("items") or [])

    def read_job(self, name: str) -> Obj | None:
        try:
            response = self.call(
                f"reading Job {name}",
                self._batch.read_namespaced_job,
                name,
                self._ns,
                _preload_content=False,
            )
        except NotFound:
            return None
        return dict(json.loads(response.data))

    def pods_of(self, job: Obj) -> list[Obj]:
        """The pods of one attempt, selected by its uid label (see attempt_pod_labels)."""
        try:
            selector = label_selector(attempt_pod_labels(job))
        except ValueError as error:
            raise ExecutorError(str(error), transient=False) from error
        response = self.call(
            f"listing the pods of {job['metadata']['name']}",
            self._core.list_namespaced_pod,
            self._ns,
            label_selector=selector,
            _preload_content=False,
        )
        return list(json.loads(response.data).get("items") or [])

    def active_pods(self, job: Obj) -> list[Obj]:
        """The Job's pods not yet finished, each stored in the pods cache as listed."""
        active: list[Obj] = []
        for pod in self.pods_of(job):
            if (pod.get("status") or {}).get("phase") in FINISHED_POD_PHASES:
                continue
            self._pods.put(pod)
            active.append(pod)
        return active

    # -- ending an attempt ---------------------------------------------------------

    def end(
        self,
        job: Obj,
        marks: Mapping[str, str],
        *,
        grace_s: int | None,
        unless: Collection[str],
        mark_deleting: bool = False,
    ) -> None:
        """Marks the Job with ``marks`` (unless it carries one of ``unless``, or is
        being deleted and ``mark_deleting`` is off), deletes it, then deletes its pods
        still running, each with ``grace_s`` (None: the pod's own grace). A Job gone is
        success; a failed call raises ExecutorError and a repeat finishes the work."""
        meta = job["metadata"]
        name = meta["name"]
        pods = self.active_pods(job)  # before the deletion: their starts stay known
        deleting = bool(meta.get("deletionTimestamp"))
        annotations = meta.get("annotations") or {}
        try:
            marked = any(key in annotations for key in unless)
            if not marked and (mark_deleting or not deleting):
                patched = self.call(
                    f"marking Job {name}",
                    self._batch.patch_namespaced_job,
                    name,
                    self._ns,
                    {"metadata": {"annotations": dict(marks)}},
                    _preload_content=False,
                )
                self._jobs.put(dict(json.loads(patched.data)))
            if not deleting or pods:
                # Again when pods remain: an earlier Background deletion (or someone
                # else's) leaves them running while the finalizer holds the Job.
                self.call(
                    f"deleting Job {name}",
                    self._batch.delete_namespaced_job,
                    name,
                    self._ns,
                    propagation_policy="Foreground",
                    **_grace(grace_s),
                    _preload_content=False,
                )
        except NotFound:
            return
        finally:
            self._jobs.mark_dirty(name)
        self.delete_pods(pods, grace_s=grace_s)

    def delete_pods(self, pods: Iterable[Obj], *, grace_s: int | None = None) -> None:
        """Deletes each pod (there is no deleteCollection to rely on); one already gone
        is departed now, one deleted gracefully is kept with its deletionTimestamp."""
        for pod in pods:
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp"):
                continue
            try:
                answer = dict(
                    json.loads(
                        self.call(
                            f"deleting pod {name}",
                            self._core.delete_namespaced_pod,
                            name,
                            self._ns,
                            **_grace(grace_s),
                            _preload_content=False,
                        ).data
                    )
                )
            except NotFound:
                self._pods.depart(name)
                continue
            except ExecutorError as error:
                if error.transient:
                    raise
                # Forbidden, say: the garbage collector deletes it with its Job.
                logger.warning("%s", error)
                continue
            if answer.get("kind") == "Pod":
                self._pods.put(answer)  # graceful: it stops by its deletionTimestamp
                self._pods.mark_dirty(name)
            else:
                self._pods.depart(name)


def _grace(grace_s: int | None) -> dict[str, int]:
    return {} if grace_s is None else {"grace_period_seconds": max(0, grace_s)}
