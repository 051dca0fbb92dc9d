"""The Kubernetes executor: one batch/v1 Job per job attempt on a GPU pool.

Launch creates the Job (and, for a gang, its headless Service and its
NetworkPolicy, both owned by the Job); AlreadyExists is success, so a launch
retried after a lost answer makes no second Job. Each attempt's pods carry a
random ``credits.dev/job-uid`` drawn at its first launch; the Service, the
NetworkPolicy, cancel and logs find the pods by it (a retried launch reads it
back from the Job that exists). Every
Job carries the finalizer ``credits.dev/metering``: whoever deletes it, the
object stays (with a deletionTimestamp) until :meth:`release`, which the
reconciler calls only once the job's usage is settled. Cancel first patches a
``credits.dev/cancelled-at`` annotation onto the Job, so a platform restarted
in between still knows the deletion was its own, then deletes it with
Foreground propagation (the garbage collector deletes its pods while the
finalizer still holds the Job) and deletes its remaining pods itself: the GPUs
are free at once, and the attempt is charged until its pods stopped.

Capacity is each GPU node's allocatable ``nvidia.com/gpu`` less what pods of
the jobs namespace that are not this installation's hold there (another
installation sharing the namespace); cordoned and NotReady nodes are reported
too, as not schedulable. The GPU nodes are the pool's own, tainted so that only
job pods run there: no other namespace's pods are read.

Observe reads a cache of the installation's Jobs and pods kept by a
label-selected list and a watch (see ``kube_cache``); the observation of a job
is computed from its latest attempt's current Job and pods (``kube_status``).
Errors are sorted in ``kube_calls``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
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
from credits.jobs.executors.kube_status import (
    JobRecord,
    PodRecord,
    job_record,
    observe_job,
    pod_record,
)
from credits.jobs.logtail import (
    CHUNK_BYTES,
    MAX_TAIL_BYTES,
    drop_split_character,
    tail_bytes,
)
from credits.jobs.manifests import (
    ATTEMPT_LABEL,
    CANCELLED_ANNOTATION,
    INDEX_ANNOTATION,
    INSTANCE_LABEL,
    METERING_FINALIZER,
    ManifestOptions,
    attempt_pod_labels,
    instance_selector,
    instance_slug,
    is_gang,
    job_manifest,
    job_selector,
    label_selector,
    network_policy_manifest,
    service_manifest,
)
from credits.settings import Settings, SettingsError

logger = logging.getLogger(__name__)
Obj = dict[str, Any]
_RELEASE_TRIES = 5
_UID_BYTES = 16  # 32 hex digits: unguessable, and a valid label value
_FINISHED_POD_PHASES = ("Succeeded", "Failed")
_API_LIMIT_MARKER = (
    f"[… the pod log API stops at {MAX_TAIL_BYTES:,} bytes; download the whole log …]"
)


class KubernetesExecutor:
    """Jobs as batch/v1 Jobs in one namespace; see the module docstring."""

    name = "kubernetes"

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
            created = self._read_job(name)
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
        for obj in self._list_jobs(job_id):
            meta = obj["metadata"]
            name = meta["name"]
            pods = self._active_pods(obj)  # before the deletion: their starts stay known
            try:
                marked = CANCELLED_ANNOTATION in (meta.get("annotations") or {})
                if not meta.get("deletionTimestamp") and not marked:
                    at = self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    patch = {"metadata": {"annotations": {CANCELLED_ANNOTATION: at}}}
                    patched = self._call(
                        f"marking Job {name} cancelled",
                        self._batch.patch_namespaced_job,
                        name,
                        self._ns,
                        patch,
                        _preload_content=False,
                    )
                    self.jobs.put(_json(patched))
                if not meta.get("deletionTimestamp") or pods:
                    # Again when pods remain: an earlier Background deletion (or someone
                    # else's) leaves them running while the finalizer holds the Job.
                    self._call(
                        f"deleting Job {name}",
                        self._batch.delete_namespaced_job,
                        name,
                        self._ns,
                        propagation_policy="Foreground",
                        _preload_content=False,
                    )
            except NotFound:
                continue
            finally:
                self.jobs.mark_dirty(name)
            self._delete_pods(pods)

    def observe(self, job_ids: Collection[int]) -> dict[int, Observation]:
        """The latest attempt of each job the cache knows; see ``kube_status``."""
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
        return {
            job_id: observe_job(record, by_job.get(record.name, []))
            for job_id, record in latest.items()
        }

    def release(self, job_id: int) -> None:
        """Removes the metering finalizer from every attempt's Job (a JSON patch
        that tests the finalizer's index first) and deletes a gang's Service and
        NetworkPolicy (their owner reference would remove them with the Job too)."""
        for obj in self._list_jobs(job_id):
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
        """The last lines of the rank 0 pod's log of the latest attempt ('' before it
        starts). The API is asked for ``tail_lines`` lines and at most
        ``MAX_TAIL_BYTES``: past that the kubelet stops at the byte limit (it counts
        from the first of those lines), and a marker says so at the end. Long lines
        are cut as ``logtail`` cuts them."""
        if tail_lines <= 0:
            return ""
        pod_name = self._log_pod(job_id)
        if pod_name is None:
            return ""
        try:
            response = self._open_log(pod_name, tail_lines=tail_lines, limit_bytes=MAX_TAIL_BYTES)
        except ExecutorError:
            return ""  # the API still failing after retries: no tail this time
        if response is None:
            return ""
        try:
            data = bytes(response.data)
        finally:
            response.release_conn()
        if len(data) < MAX_TAIL_BYTES:
            return tail_bytes(data, tail_lines)
        text = tail_bytes(drop_split_character(data), tail_lines)
        return text.removesuffix("\n") + _API_LIMIT_MARKER + "\n"

    def log_stream(self, job_id: int) -> Iterator[bytes]:
        """The rank 0 pod's whole log of the latest attempt, streamed from the API in
        chunks (empty before it starts). The pod is found and its log opened here, so
        an API still failing after retries raises ExecutorError before any chunk."""
        pod_name = self._log_pod(job_id)
        response = None if pod_name is None else self._open_log(pod_name)
        if response is None:
            return iter(())
        return _stream_body(response)

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

    def _log_pod(self, job_id: int) -> str | None:
        """The name of the latest attempt's rank 0 pod, whose log is the job's; None
        when the job has no Job or no pod yet."""
        jobs = self._list_jobs(job_id)
        if not jobs:
            return None
        latest = max(jobs, key=lambda obj: int(obj["metadata"]["labels"][ATTEMPT_LABEL]))
        pods = sorted(self._pods_of(latest), key=_rank)
        return str(pods[0]["metadata"]["name"]) if pods else None

    def _open_log(self, pod_name: str, **limits: int) -> Any:
        """The pod's log as an unread HTTP response (urllib3), or None when the pod is
        gone or has no log yet (a pod still starting answers 400). A transient failure
        that outlasts the retries raises ExecutorError."""
        try:
            return self._call(
                f"reading the log of {pod_name}",
                self._core.read_namespaced_pod_log,
                pod_name,
                self._ns,
                _preload_content=False,
                **limits,
            )
        except NotFound:
            return None
        except ExecutorError as error:
            if error.transient:
                raise
            return None

    def _read_job(self, name: str) -> Obj | None:
        try:
            response = self._call(
                f"reading Job {name}",
                self._batch.read_namespaced_job,
                name,
                self._ns,
                _preload_content=False,
            )
        except NotFound:
            return None
        return _json(response)

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

    def _pods_of(self, job: Obj) -> list[Obj]:
        """The pods of one attempt, selected by its uid label (see attempt_pod_labels)."""
        try:
            selector = label_selector(attempt_pod_labels(job))
        except ValueError as error:
            raise ExecutorError(str(error), transient=False) from error
        response = self._call(
            f"listing the pods of {job['metadata']['name']}",
            self._core.list_namespaced_pod,
            self._ns,
            label_selector=selector,
            _preload_content=False,
        )
        return list(json.loads(response.data).get("items") or [])

    def _active_pods(self, job: Obj) -> list[Obj]:
        """The Job's pods not yet finished, each stored in the pods cache as listed."""
        active: list[Obj] = []
        for pod in self._pods_of(job):
            if (pod.get("status") or {}).get("phase") in _FINISHED_POD_PHASES:
                continue
            self.pods.put(pod)
            active.append(pod)
        return active

    def _delete_pods(self, pods: Iterable[Obj]) -> None:
        """Deletes each pod (there is no deleteCollection to rely on); one already gone
        is departed now, one deleted gracefully is kept with its deletionTimestamp."""
        for pod in pods:
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp"):
                continue
            try:
                answer = _json(
                    self._call(
                        f"deleting pod {name}",
                        self._core.delete_namespaced_pod,
                        name,
                        self._ns,
                        _preload_content=False,
                    )
                )
            except NotFound:
                self.pods.depart(name)
                continue
            except ExecutorError as error:
                if error.transient:
                    raise
                # Forbidden, say: the garbage collector deletes it with its Job.
                logger.warning("%s", error)
                continue
            if answer.get("kind") == "Pod":
                self.pods.put(answer)  # graceful: it stops by its deletionTimestamp
                self.pods.mark_dirty(name)
            else:
                self.pods.depart(name)

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
            if node and phase not in _FINISHED_POD_PHASES:
                held[node] = held.get(node, 0) + pod_gpus(pod)
        return held

    def _list_jobs(self, job_id: int) -> list[Obj]:
        response = self._call(
            f"listing the Jobs of job {job_id}",
            self._batch.list_namespaced_job,
            self._ns,
            label_selector=job_selector(self.options.instance, job_id),
            _preload_content=False,
        )
        return list(json.loads(response.data).get("items") or [])

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
            fresh = self._read_job(name)
            if fresh is None:
                return
            obj = fresh
        raise ExecutorError(f"releasing Job {name}: its finalizers keep changing", transient=True)


def _json(response: Any) -> Obj:
    return dict(json.loads(response.data))


def _job_id_of(job_name: str) -> int | None:
    parts = job_name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _stream_body(response: Any) -> Iterator[bytes]:
    """The body of an unread urllib3 response in chunks; its connection goes back to
    the pool when the body ends or the iterator is closed."""
    try:
        yield from response.stream(CHUNK_BYTES, decode_content=True)
    finally:
        response.release_conn()


def _rank(pod: Obj) -> tuple[int, str]:
    annotations = pod["metadata"].get("annotations") or {}
    index = annotations.get(INDEX_ANNOTATION, "0")
    return (int(index) if str(index).isdigit() else 0, pod["metadata"]["name"])


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
    )
    return KubernetesExecutor(client.ApiClient(configuration), options, flavours=flavours)
