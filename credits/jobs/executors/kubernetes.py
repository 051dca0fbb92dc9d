"""The Kubernetes executor: one batch/v1 Job per job attempt on a GPU pool.

Launch creates the Job (and, for a gang, its headless Service and its
NetworkPolicy, both owned by the Job); AlreadyExists is success, so a launch
retried after a lost answer makes no second Job. Each attempt's pods carry a
random ``credits.dev/job-uid`` drawn at its first launch; the Service, the
NetworkPolicy, cancel and logs find the pods by it (a retried launch reads it
back from the Job that exists). Every Job carries the finalizer
``credits.dev/metering``: whoever deletes it, the object stays (with a
deletionTimestamp) until :meth:`release`, which the reconciler calls only once
the job's usage is settled.

Cancel, a platform stop (a move, with the job's checkpoint grace) and the end of
a misplaced attempt each mark the Job (so a platform restarted in between still
knows the deletion was its own and what it means), delete it with Foreground
propagation and delete its remaining pods themselves (``kube_jobs``): the GPUs
are free once the pods stop, and the attempt is charged until they did.

Placement is binding: pods may run only on the scheduler's nodes (required node
affinity, see ``manifests``). A pod observed on any other node makes its
attempt a failed placement: it is stopped at once and observed FAILED.

Capacity is each GPU node's allocatable ``nvidia.com/gpu`` less what pods of
the jobs namespace that are not this installation's hold there (another
installation sharing the namespace); cordoned and NotReady nodes are reported
too, as not schedulable. The GPU nodes are the pool's own, tainted so that only
job pods run there: no other namespace's pods are read.

Observe reads a cache of the installation's Jobs and pods kept by a
label-selected list and a watch (see ``kube_cache``); the observation of a job
is computed from its latest attempt's current Job and pods (``kube_status``).
Errors are sorted in ``kube_calls``; logs are read in ``kube_logs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config

from credits.jobs.executors.base import (
    Capacity,
    ExecutorError,
    LaunchRequest,
    NodeCapacity,
    Observation,
)
from credits.jobs.executors.kube_cache import ListWatchSource, WatchedCache
from credits.jobs.executors.kube_calls import AlreadyExists, NotFound, RetryPolicy, call
from credits.jobs.executors.kube_capacity import node_capacity, parse_flavours, pod_gpus
from credits.jobs.executors.kube_jobs import FINISHED_POD_PHASES, KubeJobs
from credits.jobs.executors.kube_logs import KubeLogs
from credits.jobs.executors.kube_status import (
    JobRecord,
    PodRecord,
    job_record,
    observe_job,
    placement_problem,
    pod_record,
)
from credits.jobs.manifests import (
    CANCELLED_ANNOTATION,
    FAILED_PLACEMENT_ANNOTATION,
    INSTANCE_LABEL,
    METERING_FINALIZER,
    STOP_REASON_ANNOTATION,
    STOPPED_ANNOTATION,
    ManifestOptions,
    attempt_pod_labels,
    instance_selector,
    instance_slug,
    is_gang,
    job_manifest,
    network_policy_manifest,
    service_manifest,
)
from credits.settings import Settings, SettingsError

logger = logging.getLogger(__name__)
Obj = dict[str, Any]
_RELEASE_TRIES = 5
# Misplaced pods hold GPUs the scheduler gave to others: SIGKILL after a second (0
# would be a force deletion: the API forgets the pod while its container may run on).
FAILED_PLACEMENT_GRACE_S = 1
_UID_BYTES = 16  # 32 hex digits: unguessable, and a valid label value


class KubernetesExecutor:
    """Jobs as batch/v1 Jobs in one namespace; see the module docstring."""

    name = "kubernetes"

    @property
    def can_checkpoint(self) -> bool:
        """Whether a checkpointable job has somewhere to save: the installation's claim."""
        return self.options.checkpoint_claim is not None

    def __init__(
        self,
        api_client: Any,
        options: ManifestOptions,
        *,
        flavours: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        policy: RetryPolicy | None = None,
    ) -> None:
        """``flavours``: node label value -> flavour name, for capacity; nodes whose
        value is not in it are left out (when it is empty, the value is the name)."""
        self._api_client = api_client
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._networking = client.NetworkingV1Api(api_client)
        self.options = options
        self._flavours = dict(flavours or {})
        self._clock = clock
        self._policy = policy or RetryPolicy()
        selector = instance_selector(options.instance)
        ns = options.namespace
        self.jobs: WatchedCache[JobRecord] = WatchedCache(
            ListWatchSource(
                "jobs",
                self._batch.list_namespaced_job,
                self._batch.read_namespaced_job,
                ns,
                selector,
                self._policy,
            ),
            job_record,
        )
        self.pods: WatchedCache[PodRecord] = WatchedCache(
            ListWatchSource(
                "pods",
                self._core.list_namespaced_pod,
                self._core.read_namespaced_pod,
                ns,
                selector,
                self._policy,
            ),
            pod_record,
            on_depart=self._stamp_gone,
        )
        self._objects = KubeJobs(
            self._batch,
            self._core,
            namespace=ns,
            instance=options.instance,
            policy=self._policy,
            jobs=self.jobs,
            pods=self.pods,
        )
        self._logs = KubeLogs(self._objects, self._core, ns)

    def close(self) -> None:
        """Stops the watch threads and closes the ApiClient (the executor owns it)."""
        self.jobs.stop()
        self.pods.stop()
        self._api_client.close()

    # -- the Executor protocol -----------------------------------------------------

    def launch(self, request: LaunchRequest) -> None:
        """Creates the attempt's Job (and a gang's Service and NetworkPolicy);
        AlreadyExists is success.

        Raises ExecutorError: transient after retries, permanent (422, 403, a gang
        of unequal slices) with the API's message.
        """
        try:
            manifest = job_manifest(request, self.options, uid=secrets.token_hex(_UID_BYTES))
        except ValueError as error:
            raise ExecutorError(str(error), transient=False) from error
        name = manifest["metadata"]["name"]
        what = f"creating Job {name}"
        created: Obj | None
        try:
            created = _json(
                self._call(
                    what,
                    self._batch.create_namespaced_job,
                    self._ns,
                    manifest,
                    _preload_content=False,
                )
            )
        except AlreadyExists:
            created = self._objects.read_job(name)
        if created is None:
            raise ExecutorError(f"{what}: it exists but cannot be read", transient=True)
        self.jobs.put(created)
        if is_gang(request):
            self._create_gang_network(request, created)

    def cancel(self, job_id: int) -> None:
        """Stops every attempt: marks its Job cancelled (once), deletes it with
        Foreground propagation (the metering finalizer keeps the object until
        release), then deletes each of its pods still there. Gone is success.

        Raises ExecutorError when a call fails; a repeat finishes the work."""
        marks = {CANCELLED_ANNOTATION: self._now_text()}
        for obj in self._objects.list_jobs(job_id):
            self._objects.end(obj, marks, grace_s=None, unless=(CANCELLED_ANNOTATION,))

    def stop(self, job_id: int, grace_seconds: int, reason: str) -> None:
        """A platform stop (a move): marks each attempt's Job not yet finished as
        stopped with the reason, then deletes it and its pods with ``grace_seconds``
        (the kubelet's SIGTERM, the grace, SIGKILL). It is observed RUNNING while its
        pods hold GPUs, then PREEMPTED with the reason. A cancelled, finished or
        unknown job is left as it is; a repeat changes nothing.

        Raises ExecutorError when a call fails; a repeat finishes the work."""
        marks = {STOPPED_ANNOTATION: self._now_text(), STOP_REASON_ANNOTATION: reason}
        for obj in self._objects.list_jobs(job_id):
            record = job_record(obj)
            if record is None or record.finished is not None:
                continue
            self._objects.end(
                obj,
                marks,
                # Never 0: for a pod that is a force deletion, which forgets the pod
                # while its container may still run.
                grace_s=max(1, grace_seconds),
                unless=(CANCELLED_ANNOTATION, STOPPED_ANNOTATION),
            )

    def observe(self, job_ids: Collection[int]) -> dict[int, Observation]:
        """The latest attempt of each job the cache knows; see ``kube_status``.

        An attempt with a pod outside its placement is stopped here, at once: its pods
        hold GPUs the scheduler may have given to another job (see ``_end_misplaced``).
        """
        self.jobs.start()
        self.pods.start()
        self.jobs.refresh()
        self.pods.refresh()
        wanted = set(job_ids)
        latest: dict[int, JobRecord] = {}
        for record in self.jobs.records().values():
            if record.job_id in wanted:
                current = latest.get(record.job_id)
                if current is None or record.attempt > current.attempt:
                    latest[record.job_id] = record
        names = {record.name for record in latest.values()}
        by_job: dict[str, list[PodRecord]] = {}
        for pods in (self.pods.departed(), self.pods.records()):
            for pod in pods.values():
                if pod.job_name in names:
                    by_job.setdefault(pod.job_name, []).append(pod)
        observations: dict[int, Observation] = {}
        for job_id, record in latest.items():
            seen = by_job.get(record.name, [])
            problem = placement_problem(record, seen)
            if problem is not None and record.failed_placement is None:
                self._end_misplaced(record, problem)
            observations[job_id] = observe_job(record, seen)
        return observations

    def release(self, job_id: int) -> None:
        """Removes the metering finalizer from every attempt's Job (a JSON patch
        that tests the finalizer's index first) and deletes a gang's Service and
        NetworkPolicy (their owner reference would remove them with the Job too)."""
        for obj in self._objects.list_jobs(job_id):
            self._remove_finalizer(obj)
            name = obj["metadata"]["name"]
            if (obj.get("spec") or {}).get("completionMode") != "Indexed":
                continue
            deletions = (
                ("Service", self._core.delete_namespaced_service),
                ("NetworkPolicy", self._networking.delete_namespaced_network_policy),
            )
            for kind, delete in deletions:
                with contextlib.suppress(NotFound):
                    self._call(
                        f"deleting {kind} {name}", delete, name, self._ns, _preload_content=False
                    )
        released = {job_id}
        self.pods.forget_departed(lambda pod: _job_id_of(pod.job_name) not in released)

    def logs(self, job_id: int, *, tail_lines: int = 200) -> str:
        """The last lines of the rank 0 pod's log of the latest attempt; see ``kube_logs``."""
        return self._logs.tail(job_id, tail_lines)

    def log_stream(self, job_id: int) -> Iterator[bytes]:
        """The rank 0 pod's whole log of the latest attempt; see ``kube_logs``."""
        return self._logs.stream(job_id)

    def isolation(self, job_id: int) -> str | None:
        """The same for every job: what its pods' manifests lock down."""
        del job_id
        return (
            f"Kubernetes pod as uid {self.options.run_as_user}: no capabilities, no "
            "privilege escalation, RuntimeDefault seccomp, no service-account token, "
            "default-deny network with internet egress; CPU and memory limits from "
            "the job's request"
        )

    def capacity(self) -> Capacity:
        """Every node with the flavour label and GPUs: its allocatable GPUs less what
        pods of the jobs namespace not of this installation hold there. Cordoned,
        NotReady and full nodes are reported as not schedulable (the scheduler skips
        them; the pool's shape still counts them)."""
        label = self.options.flavour_label
        response = self._call(
            "listing nodes", self._core.list_node, label_selector=label, _preload_content=False
        )
        nodes = list(json.loads(response.data).get("items") or [])
        if not nodes:
            return Capacity(nodes=())
        held = self._foreign_gpus()
        found: list[NodeCapacity] = []
        for node in nodes:
            capacity = node_capacity(node, label, self._flavours, held)
            if capacity is not None:
                found.append(capacity)
        return Capacity(nodes=tuple(found))

    # -- internals -----------------------------------------------------------------

    @property
    def _ns(self) -> str:
        return self.options.namespace

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return call(what, self._policy, fn, *args, **kwargs)

    def _now_text(self) -> str:
        return self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _end_misplaced(self, record: JobRecord, problem: str) -> None:
        """Marks the attempt as a failed placement and deletes it with a short grace.

        Required node affinity makes this impossible on a healthy cluster: a pod
        elsewhere means an admission webhook rewrote it, another scheduler or a person
        bound it, or the node names differ from the capacity's. Retrying the same
        placement would meet the same fault, so the attempt is FAILED with the
        reason (see docs/scheduling.md); a failure to reach the API is retried at the
        next observe."""
        logger.error("job %s attempt %s: %s; stopping it", record.job_id, record.attempt, problem)
        try:
            job = self._objects.read_job(record.name)
            if job is not None:
                self._objects.end(
                    job,
                    {FAILED_PLACEMENT_ANNOTATION: problem},
                    grace_s=FAILED_PLACEMENT_GRACE_S,
                    unless=(FAILED_PLACEMENT_ANNOTATION,),
                    mark_deleting=True,
                )
        except ExecutorError as error:
            logger.warning("stopping misplaced job %s will be retried: %s", record.job_id, error)

    def _stamp_gone(self, pod: PodRecord) -> PodRecord:
        if pod.gone_at is not None:
            return pod
        return dataclasses.replace(pod, gone_at=self._clock())

    def _create_gang_network(self, request: LaunchRequest, job: Obj) -> None:
        """The gang's headless Service and NetworkPolicy, selecting its pods by the uid
        label of the Job as created (a retried launch drew another), owned by it."""
        pods = attempt_pod_labels(job)
        owner = job["metadata"]["uid"]
        name = job["metadata"]["name"]
        creations = (
            (
                "Service",
                self._core.create_namespaced_service,
                service_manifest(request, self.options, pods=pods, owner_uid=owner),
            ),
            (
                "NetworkPolicy",
                self._networking.create_namespaced_network_policy,
                network_policy_manifest(request, self.options, pods=pods, owner_uid=owner),
            ),
        )
        for kind, create, body in creations:
            with contextlib.suppress(AlreadyExists):
                self._call(
                    f"creating {kind} {name}", create, self._ns, body, _preload_content=False
                )

    def _foreign_gpus(self) -> dict[str, int]:
        """GPUs requested per node by running or pending pods of the jobs namespace
        that are not this installation's; {} (with a warning) when they may not be
        listed. Other namespaces' pods are kept off the pool's tainted GPU nodes."""
        selector = f"{INSTANCE_LABEL}!={instance_slug(self.options.instance)}"
        try:
            response = self._call(
                "listing other installations' pods",
                self._core.list_namespaced_pod,
                self._ns,
                label_selector=selector,
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
                _preload_content=False,
            )
        except ExecutorError as error:
            if error.transient:
                raise
            logger.warning("capacity counts no other pods' GPUs: %s", error)
            return {}
        held: dict[str, int] = {}
        for pod in json.loads(response.data).get("items") or []:
            node = (pod.get("spec") or {}).get("nodeName")
            phase = (pod.get("status") or {}).get("phase")
            if node and phase not in FINISHED_POD_PHASES:
                held[node] = held.get(node, 0) + pod_gpus(pod)
        return held

    def _remove_finalizer(self, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        for _ in range(_RELEASE_TRIES):
            finalizers = obj["metadata"].get("finalizers") or []
            if METERING_FINALIZER not in finalizers:
                return
            index = finalizers.index(METERING_FINALIZER)
            path = f"/metadata/finalizers/{index}"
            patch = [
                {"op": "test", "path": path, "value": METERING_FINALIZER},
                {"op": "remove", "path": path},
            ]
            try:
                self._call(
                    f"releasing Job {name}",
                    self._batch.patch_namespaced_job,
                    name,
                    self._ns,
                    patch,
                    _preload_content=False,
                )
                self.jobs.mark_dirty(name)
                return
            except NotFound:
                return
            except ExecutorError as error:
                # The list changed under us (the test op failed): read it again.
                if error.transient:
                    raise
            fresh = self._objects.read_job(name)
            if fresh is None:
                return
            obj = fresh
        raise ExecutorError(f"releasing Job {name}: its finalizers keep changing", transient=True)


def _json(response: Any) -> Obj:
    return dict(json.loads(response.data))


def _job_id_of(job_name: str) -> int | None:
    parts = job_name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def executor_from_settings(settings: Settings) -> KubernetesExecutor:
    """The executor as ``CREDITS_KUBERNETES_*`` configure it: a kubeconfig when one
    is named, else in-cluster config, else the default kubeconfig."""
    try:
        flavours = parse_flavours(settings.kubernetes_flavours)
    except ValueError as error:
        raise SettingsError(f"CREDITS_KUBERNETES_FLAVOURS: {error}") from error
    configuration = client.Configuration()
    if settings.kubernetes_kubeconfig is not None:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubernetes_kubeconfig),
            context=settings.kubernetes_context,
            client_configuration=configuration,
        )
    else:
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except config.ConfigException:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                context=settings.kubernetes_context, client_configuration=configuration
            )
    options = ManifestOptions(
        namespace=settings.kubernetes_namespace,
        instance=settings.instance_name,
        flavour_label=settings.kubernetes_flavour_label,
        gpu_taint_key=settings.kubernetes_gpu_taint_key,
        ttl_seconds_after_finished=settings.kubernetes_ttl_seconds_after_finished,
        run_as_user=settings.kubernetes_job_uid,
        run_as_group=settings.kubernetes_job_gid,
        checkpoint_claim=settings.kubernetes_checkpoint_claim,
    )
    return KubernetesExecutor(client.ApiClient(configuration), options, flavours=flavours)
