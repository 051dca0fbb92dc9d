"""An HTTP-level Kubernetes API emulator for tests; the real ``kubernetes`` client talks
to it over HTTP.

    emu = K8sEmulator().start()
    emu.add_node("gpu-a", gpus=8, product="NVIDIA-H100-80GB-HBM3")
    batch = kubernetes.client.BatchV1Api(emu.api_client())
    ... create a Job ...
    emu.advance(120)          # virtual seconds: pods scheduled, run, finish
    emu.stop()

Modules: ``k8s_store`` (objects, resourceVersion, history, compaction), ``k8s_selectors``,
``k8s_patch``, ``k8s_apiserver`` (verbs, watch, logs), ``k8s_controllers`` (job
controller, scheduler, kubelet on a virtual clock), ``k8s_faults``, ``k8s_server`` (Werkzeug
app and thread, ``python tests/k8s/k8s_server.py``), ``k8s_fixtures`` (pytest fixtures).

Graceful deletion: a running pod deleted with a grace (``gracePeriodSeconds``, else its
``terminationGracePeriodSeconds``; unlike Kubernetes, 0 when neither is set) gets a
``deletionTimestamp`` at the grace's end and stays until its container exits by itself
(``set_sigterm_exit``) or is killed (exit code 137) then. The Job controller deletes a
failed Job's running pods the same way, with their own grace, and sets the Failed
condition at once (as Kubernetes up to 1.30 does). The scheduler honours required
node affinity and hostname pod anti-affinity; ``ignore_affinity`` is the fault of a
scheduler that does not.

Node loss: ``lose_node`` marks the node NotReady (Ready=Unknown, unreachable taints) and its
non-terminal pods Failed with ``status.reason`` "NodeLost" (kept, so the job controller
counts them as failed); ``lose_node(..., delete_pods=True)`` deletes them instead.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from types import TracebackType
from typing import Any

from k8s_apiserver import ApiServer, Route
from k8s_controllers import Cluster, RunPlan, VirtualClock
from k8s_faults import ErrorRule, Faults, StallRule, WatchFault
from k8s_pods import TERMINAL
from k8s_server import ServerThread, make_app
from k8s_store import KINDS, Obj, Store
from kubernetes import client

DEFAULT_PRODUCT = "NVIDIA-H100-80GB-HBM3"
PRODUCT_LABEL = "nvidia.com/gpu.product"


class K8sEmulator:
    """State, controllers and fault injection of one emulated cluster."""

    def __init__(
        self,
        *,
        default_duration_s: float | None = 60.0,
        startup_delay_s: float = 0.0,
        record_events: bool = True,
        auto_tick: bool = False,
        bookmark_interval_s: float = 1.0,
        namespaces: tuple[str, ...] = ("default", "kube-system"),
    ) -> None:
        """``default_duration_s``: how long a pod runs when nothing else says (None:
        forever). ``auto_tick``: reconcile (without moving the clock) after every write
        through the API, so a created Job has pods at once."""
        self.clock = VirtualClock()
        self.store = Store(clock=self.clock.iso)
        self.cluster = Cluster(
            self.store,
            self.clock,
            default_duration_s=default_duration_s,
            startup_delay_s=startup_delay_s,
            record_events=record_events,
        )
        self.faults = Faults()
        self.auto_tick = auto_tick
        self.api = ApiServer(
            self.store,
            on_write=self._after_write,
            on_delete=self._foreground,
            on_pod_delete=self._graceful_pod_delete,
            bookmark_interval_s=bookmark_interval_s,
        )
        self.store.on_removed.append(self._garbage_collect)
        self.requests: list[tuple[str, str]] = []  # (method, path?query) served
        self.errors: list[BaseException] = []  # emulator bugs answered as 500
        self._server: ServerThread | None = None
        for name in namespaces:
            self.store.create(
                "namespaces", {"metadata": {"name": name}, "status": {"phase": "Active"}}
            )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> K8sEmulator:
        if self._server is None:
            self.api.stopping = False
            self._server = ServerThread(make_app(self), host, port)
            self._server.start()
        return self

    def stop(self) -> None:
        self.api.stopping = True
        with self.store.lock:
            self.store.changed.notify_all()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> K8sEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.url

    def configuration(self, **settings: Any) -> client.Configuration:
        config = client.Configuration(host=self.url)
        for key, value in settings.items():
            setattr(config, key, value)
        return config

    def api_client(self, **settings: Any) -> client.ApiClient:
        """A real ApiClient pointed at this emulator (settings go onto its Configuration)."""
        return client.ApiClient(self.configuration(**settings))

    # -- direct state access -----------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self.store.rv)

    def get(self, plural: str, namespace: str, name: str) -> Obj:
        """A copy of a stored object (raises the store's 404 ApiError when missing)."""
        return self.store.get(plural, namespace if KINDS[plural].namespaced else "", name)

    def find(self, plural: str, namespace: str, name: str) -> Obj | None:
        with self.store.lock:
            obj = self.store.find(plural, namespace if KINDS[plural].namespaced else "", name)
            return copy.deepcopy(obj) if obj is not None else None

    def objects(
        self, plural: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[Obj]:
        """Copies of the stored objects of a type, optionally by namespace and labels."""
        with self.store.lock:
            return [
                copy.deepcopy(o)
                for o in self.store.items(plural, namespace)
                if all(
                    (o["metadata"].get("labels") or {}).get(k) == v
                    for k, v in (labels or {}).items()
                )
            ]

    def job_pods(self, namespace: str, job_name: str) -> list[Obj]:
        return self.objects("pods", namespace, {"batch.kubernetes.io/job-name": job_name})

    def create(self, plural: str, obj: Obj) -> Obj:
        return copy.deepcopy(self.store.create(plural, obj))

    def update(self, plural: str, obj: Obj) -> Obj:
        return copy.deepcopy(self.store.update(plural, copy.deepcopy(obj), check_rv=False))

    def delete(
        self, plural: str, namespace: str, name: str, propagation: str = "Background"
    ) -> Obj:
        with self.store.lock:
            obj, _ = self.store.delete(plural, namespace, name, propagation=propagation)
        return copy.deepcopy(obj)

    def add_namespace(self, name: str) -> Obj:
        body = {"metadata": {"name": name}, "status": {"phase": "Active"}}
        return copy.deepcopy(self.store.create("namespaces", body))

    def add_node(
        self,
        name: str,
        *,
        gpus: int = 8,
        product: str | None = DEFAULT_PRODUCT,
        labels: dict[str, str] | None = None,
        taints: list[Obj] | None = None,
        ready: bool = True,
        unschedulable: bool = False,
        cpu: str = "96",
        memory: str = "1024Gi",
    ) -> Obj:
        """A node with ``nvidia.com/gpu`` allocatable and the GPU product label."""
        all_labels = {"kubernetes.io/hostname": name, **(labels or {})}
        if product is not None:
            all_labels.setdefault(PRODUCT_LABEL, product)
            all_labels.setdefault("nvidia.com/gpu.count", str(gpus))
        resources = {"cpu": cpu, "memory": memory, "nvidia.com/gpu": str(gpus), "pods": "110"}
        node: Obj = {
            "metadata": {"name": name, "labels": all_labels},
            "spec": {"taints": list(taints or []), "unschedulable": unschedulable},
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "conditions": [_ready_condition(ready, self.clock.iso())],
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": f"boot-{name}",
                    "containerRuntimeVersion": "containerd://1.7.20",
                    "kernelVersion": "6.8.0",
                    "kubeProxyVersion": "v1.31.0",
                    "kubeletVersion": "v1.31.0",
                    "machineID": f"machine-{name}",
                    "operatingSystem": "linux",
                    "osImage": "Ubuntu 24.04 LTS",
                    "systemUUID": f"uuid-{name}",
                },
            },
        }
        if not taints:
            del node["spec"]["taints"]
        created = self.store.create("nodes", node)
        self._after_write()
        return copy.deepcopy(created)

    def set_node_ready(self, name: str, ready: bool) -> Obj:
        with self.store.lock:
            node = self.store.get("nodes", "", name)
            conds = [c for c in node["status"].get("conditions") or [] if c["type"] != "Ready"]
            node["status"]["conditions"] = [*conds, _ready_condition(ready, self.clock.iso())]
            taints = [
                t
                for t in node["spec"].get("taints") or []
                if t.get("key") != "node.kubernetes.io/unreachable"
            ]
            if not ready:
                taints += [
                    {
                        "key": "node.kubernetes.io/unreachable",
                        "effect": effect,
                        "timeAdded": self.clock.iso(),
                    }
                    for effect in ("NoSchedule", "NoExecute")
                ]
            node["spec"]["taints"] = taints
            return copy.deepcopy(self.store.update("nodes", node, check_rv=False))

    def cordon(self, name: str, unschedulable: bool = True) -> Obj:
        with self.store.lock:
            node = self.store.get("nodes", "", name)
            node["spec"]["unschedulable"] = unschedulable
            return copy.deepcopy(self.store.update("nodes", node, check_rv=False))

    def lose_node(self, name: str, *, delete_pods: bool = False) -> list[str]:
        """The node goes NotReady; its running/pending pods fail with reason NodeLost (or
        are deleted). Then the controllers reconcile. Returns the names of those pods."""
        with self.store.lock:
            self.set_node_ready(name, False)
            hit: list[str] = []
            for pod in list(self.store.items("pods")):
                if pod["spec"].get("nodeName") != name:
                    continue
                if (pod.get("status") or {}).get("phase") in TERMINAL:
                    continue
                hit.append(pod["metadata"]["name"])
                if delete_pods:
                    self.store.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
                else:
                    self.cluster.finish_pod(pod, 137, reason="NodeLost")
            self.cluster.tick()
        return hit

    def restore_node(self, name: str) -> Obj:
        node = self.set_node_ready(name, True)
        self.tick()
        return node

    # -- the virtual clock and the controllers -----------------------------------------

    @property
    def now(self) -> float:
        """Virtual seconds since the emulator's epoch (2030-01-01T00:00:00Z)."""
        return self.clock.now

    def tick(self) -> None:
        """Reconcile jobs, scheduling and pods at the current virtual time."""
        self.cluster.tick()

    def advance(self, seconds: float) -> None:
        """Move the virtual clock, reconciling at each timer that falls due on the way."""
        self.cluster.advance(seconds)

    def set_run_duration(
        self,
        namespace: str,
        job_name: str,
        seconds: float | None,
        exit_code: int = 0,
        index: int | None = None,
    ) -> None:
        """Pods of this Job (or of one index of it) run ``seconds`` (None: forever) and
        exit with ``exit_code``. Otherwise the pod annotation
        ``emulator.credits.dev/duration-s`` (and ``.../exit-code``) or the default apply."""
        with self.store.lock:
            key = (namespace, job_name, index)
            old = self.cluster.plans.get(key) or RunPlan(None)
            self.cluster.plans[key] = replace(old, duration_s=seconds, exit_code=exit_code)

    def set_sigterm_exit(
        self, namespace: str, job_name: str, after_s: float, exit_code: int = 0
    ) -> None:
        """Pods of this Job, deleted gracefully, exit by themselves ``after_s`` seconds
        after their SIGTERM (a job saving its checkpoint) with ``exit_code``; by
        default a pod ignores SIGTERM and is killed (137) when its grace ends."""
        with self.store.lock:
            key = (namespace, job_name, None)
            plan = self.cluster.plans.get(key) or RunPlan(self.cluster.default_duration_s)
            self.cluster.plans[key] = replace(plan, term_exit_s=after_s, term_exit_code=exit_code)

    def ignore_affinity(self, ignore: bool = True) -> None:
        """A fault: the scheduler ignores required node and pod affinity (as when an
        admission webhook strips it), binding pods by resources and selectors only."""
        with self.store.lock:
            self.cluster.ignore_affinity = ignore

    def finish_pod(self, namespace: str, name: str, exit_code: int = 0) -> None:
        """End a running pod now, then reconcile."""
        with self.store.lock:
            pod = self.store.find("pods", namespace, name)
            if pod is None:
                raise KeyError(name)
            self.cluster.finish_pod(pod, exit_code)
            self.cluster.tick()

    def append_log(self, namespace: str, pod: str, *lines: str) -> None:
        self.cluster.extra_logs.setdefault((namespace, pod), []).extend(lines)

    # -- faults ------------------------------------------------------------------------

    def fail_next(
        self,
        verb: str,
        resource: str,
        status: int = 500,
        *,
        retry_after: int | None = None,
        times: int = 1,
        namespace: str | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next ``times`` matching requests answer a Status with this code.
        ``verb``: get/list/watch/create/update/patch/delete, an HTTP method or "*";
        ``resource``: "jobs", "pods", "pods/log", "jobs/status", ... or "*"."""
        self.faults.errors.append(
            ErrorRule(verb, resource, namespace, times, status, reason, message, retry_after)
        )

    def stall_next(
        self,
        verb: str,
        resource: str,
        seconds: float,
        *,
        times: int = 1,
        namespace: str | None = None,
    ) -> None:
        """The next matching requests wait ``seconds`` of wall time before being served."""
        self.faults.stalls.append(StallRule(verb, resource, namespace, times, seconds))

    def drop_next_watch(
        self,
        resource: str,
        after_events: int = 0,
        *,
        times: int = 1,
        namespace: str | None = None,
    ) -> None:
        """The next watch of ``resource`` has its connection cut (no final chunk) after
        ``after_events`` events."""
        self.faults.watches.append(WatchFault("watch", resource, namespace, times, after_events))

    def duplicate_next_watch(
        self, resource: str, *, times: int = 1, namespace: str | None = None
    ) -> None:
        """Every event of the next watch of ``resource`` is sent twice."""
        self.faults.watches.append(
            WatchFault("watch", resource, namespace, times, None, duplicate=True)
        )

    def reorder_next_watch(
        self, resource: str, *, times: int = 1, namespace: str | None = None
    ) -> None:
        """Neighbouring events of the next watch of ``resource`` are swapped in pairs
        (within each batch the server sends together, e.g. a resume from an old rv)."""
        self.faults.watches.append(
            WatchFault("watch", resource, namespace, times, None, reorder=True)
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    def compact(self, resource_version: int | None = None) -> int:
        """Raise the compaction floor (default: the current resourceVersion); watches and
        continue tokens from below it answer 410 Gone."""
        return self.store.compact(resource_version)

    # -- internals ---------------------------------------------------------------------

    def _after_write(self) -> None:
        if self.auto_tick:
            self.cluster.tick()

    def _foreground(self, route: Route) -> None:
        if route.kind.plural == "jobs" and route.name is not None:
            job = self.store.find("jobs", route.ns, route.name)
            if job is not None:
                self._delete_dependents(job)

    def _graceful_pod_delete(self, route: Route, grace_s: int | None) -> Obj | None:
        pod = self.store.find("pods", route.ns, route.name or "")
        return None if pod is None else self.cluster.terminate_pod(pod, grace_s)

    def _delete_dependents(self, job: Obj) -> None:
        """Pods, Services and NetworkPolicies (a gang's) owned by the Job go with it; the
        garbage collector deletes pods with their own grace
        (``terminationGracePeriodSeconds``), whatever the Job's deletion asked."""
        uid = job["metadata"]["uid"]
        for plural in ("pods", "services", "networkpolicies"):
            for dep in list(self.store.items(plural, job["metadata"]["namespace"])):
                refs = dep["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue
                if plural == "pods" and (
                    dep["metadata"].get("deletionTimestamp")
                    or self.cluster.terminate_pod(dep, None) is not None
                ):
                    continue  # being terminated: the kubelet deletes it when it stopped
                self.store.delete(plural, dep["metadata"]["namespace"], dep["metadata"]["name"])

    def _garbage_collect(self, plural: str, obj: Obj, propagation: str) -> None:
        if plural == "jobs":
            if propagation in ("Background", "Foreground"):
                self._delete_dependents(obj)
                return
            uid = obj["metadata"]["uid"]
            for pod in list(self.store.items("pods", obj["metadata"]["namespace"])):
                refs = pod["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    orphan = copy.deepcopy(pod)
                    orphan["metadata"]["ownerReferences"] = [
                        r for r in refs if r.get("uid") != uid
                    ] or None
                    if orphan["metadata"]["ownerReferences"] is None:
                        del orphan["metadata"]["ownerReferences"]
                    self.store.update("pods", orphan, check_rv=False)
        elif plural == "namespaces":
            name = obj["metadata"]["name"]
            for kind in KINDS.values():
                if kind.namespaced:
                    for item in list(self.store.items(kind.plural, name)):
                        self.store.delete(kind.plural, name, item["metadata"]["name"])


def _ready_condition(ready: bool, at: str) -> Obj:
    return {
        "type": "Ready",
        "status": "True" if ready else "Unknown",
        "reason": "KubeletReady" if ready else "NodeStatusUnknown",
        "message": "kubelet is posting ready status"
        if ready
        else "Kubelet stopped posting node status.",
        "lastHeartbeatTime": at,
        "lastTransitionTime": at,
    }
