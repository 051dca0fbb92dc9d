"""Job controller, scheduler and kubelet simulation on a virtual clock.

Nothing here sleeps: ``Cluster.tick()`` reconciles everything at the current virtual time
until nothing changes, ``Cluster.advance(seconds)`` jumps from one due timer (a pod that
finishes, a deadline, a TTL) to the next and reconciles at each.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from k8s_pods import (
    GPU,
    INDEX_KEY,
    TERMINAL,
    event_object,
    fits,
    gpu_request,
    pod_from_template,
    running_status,
    terminated_status,
)
from k8s_store import Obj, Store
from k8s_terminating import GracefulDeletion

DURATION_ANNOTATION = "emulator.credits.dev/duration-s"
EXIT_CODE_ANNOTATION = "emulator.credits.dev/exit-code"
EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
MAX_LOG_LINES = 1000


@dataclass
class VirtualClock:
    """Seconds since ``EPOCH``; only ``advance`` moves it."""

    now: float = 0.0

    def iso(self, at: float | None = None) -> str:
        moment = EPOCH + timedelta(seconds=self.now if at is None else at)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (moment - EPOCH).total_seconds()


@dataclass
class RunPlan:
    """How long a pod runs and how it ends; and, deleted gracefully, how long after its
    SIGTERM its container exits by itself (None: it ignores SIGTERM and is killed,
    exit code 137, when the grace ends) and with what code."""

    duration_s: float | None
    exit_code: int = 0
    term_exit_s: float | None = None
    term_exit_code: int = 143


@dataclass
class PodTimes:
    bound_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None


def _is_finished(job: Obj) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _count_terminated(pods: list[Obj], counted: dict[str, tuple[str, int | None]]) -> None:
    """Remember each pod that reached a terminal phase once (so deleting it later does
    not change the Job's counts): pod uid -> (phase, completion index)."""
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL and pod["metadata"]["uid"] not in counted:
            index = (pod["metadata"].get("labels") or {}).get(INDEX_KEY)
            counted[pod["metadata"]["uid"]] = (
                str(phase),
                int(index) if index is not None else None,
            )


def _free_gpus(node: Obj, used: dict[str, int]) -> int:
    allocatable = ((node.get("status") or {}).get("allocatable") or {}).get(GPU, 0)
    return int(allocatable) - used.get(node["metadata"]["name"], 0)


@dataclass
class Cluster(GracefulDeletion):
    """The control plane and kubelets, acting on the store at virtual time."""

    store: Store
    clock: VirtualClock
    default_duration_s: float | None = 60.0
    startup_delay_s: float = 0.0
    record_events: bool = True
    plans: dict[tuple[str, str, int | None], RunPlan] = field(default_factory=dict)
    pod_times: dict[str, PodTimes] = field(default_factory=dict)  # by pod uid
    extra_logs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # A scheduler that ignores required node and pod affinity (a fault).
    ignore_affinity: bool = False
    # Pods deleted gracefully, by uid: (when they got SIGTERM, when their grace ends).
    terminating: dict[str, tuple[float, float]] = field(default_factory=dict)
    _counted: dict[str, dict[str, tuple[str, int | None]]] = field(default_factory=dict)
    _job_started: dict[str, float] = field(default_factory=dict)
    _job_finished: dict[str, float] = field(default_factory=dict)

    # -- the loop ----------------------------------------------------------------------

    def tick(self) -> None:
        """Reconcile at the current virtual time until nothing changes."""
        with self.store.lock:
            for _ in range(20):
                before = self.store.rv
                owned = self._pods_by_owner()
                for job in list(self.store.items("jobs")):
                    self._sync_job(job, owned.get(job["metadata"]["uid"], []))
                self._schedule()
                self._kubelet_terminating()
                self._kubelet()
                self._ttl()
                if self.store.rv == before:
                    return

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward, reconciling at every timer that falls due."""
        with self.store.lock:
            target = self.clock.now + seconds
            self.tick()
            while (due := self.next_due()) is not None and self.clock.now < due <= target:
                self.clock.now = due
                self.tick()
            self.clock.now = target
            self.tick()

    def next_due(self) -> float | None:
        now = self.clock.now
        times: list[float] = []
        for pod in self.store.items("pods"):
            times_ = self.pod_times.get(pod["metadata"]["uid"])
            if times_ is None or pod.get("status", {}).get("phase") in TERMINAL:
                continue
            if times_.started_at is None and times_.bound_at is not None:
                times.append(times_.bound_at + self.startup_delay_s)
            elif times_.started_at is not None:
                plan = self.plan_for(pod)
                if plan.duration_s is not None:
                    times.append(times_.started_at + plan.duration_s)
        for job in self.store.items("jobs"):
            uid = job["metadata"]["uid"]
            spec = job.get("spec") or {}
            if _is_finished(job):
                ttl = spec.get("ttlSecondsAfterFinished")
                if ttl is not None and uid in self._job_finished:
                    times.append(self._job_finished[uid] + ttl)
            elif spec.get("activeDeadlineSeconds") is not None and uid in self._job_started:
                times.append(self._job_started[uid] + spec["activeDeadlineSeconds"])
        times += self.termination_times()
        later = [t for t in times if t > now]
        return min(later) if later else None

    # -- run plans ---------------------------------------------------------------------

    def plan_for(self, pod: Obj) -> RunPlan:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        job = labels.get("batch.kubernetes.io/job-name")
        if job is not None:
            index = labels.get(INDEX_KEY)
            key = (meta.get("namespace", ""), job, int(index) if index is not None else None)
            for candidate in (key, (key[0], key[1], None)):
                if candidate in self.plans:
                    return self.plans[candidate]
        annotations = meta.get("annotations") or {}
        if DURATION_ANNOTATION in annotations:
            return RunPlan(
                float(annotations[DURATION_ANNOTATION]),
                int(annotations.get(EXIT_CODE_ANNOTATION, 0)),
            )
        return RunPlan(self.default_duration_s, int(annotations.get(EXIT_CODE_ANNOTATION, 0)))

    # -- job controller ----------------------------------------------------------------

    def _pods_by_owner(self) -> dict[str, list[Obj]]:
        owned: dict[str, list[Obj]] = {}
        for pod in self.store.items("pods"):
            uid = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/controller-uid")
            if uid is not None:
                owned.setdefault(uid, []).append(pod)
        return owned

    def _sync_job(self, job: Obj, pods: list[Obj]) -> None:
        meta = job["metadata"]
        if _is_finished(job) or meta.get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        if spec.get("suspend"):
            return
        uid, now = meta["uid"], self.clock.now
        self._job_started.setdefault(uid, now)
        indexed = spec.get("completionMode") == "Indexed"
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec["parallelism"]) if spec.get("parallelism") is not None else 1
        counted = self._counted.setdefault(uid, {})
        _count_terminated(pods, counted)
        active = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") not in TERMINAL
            and not p["metadata"].get("deletionTimestamp")
        ]
        succeeded = sum(1 for phase, _ in counted.values() if phase == "Succeeded")
        failed = sum(1 for phase, _ in counted.values() if phase == "Failed")
        done_indexes = sorted(
            {i for ph, i in counted.values() if ph == "Succeeded" and i is not None}
        )
        finish: tuple[str, str, str] | None = None
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and now - self._job_started[uid] >= deadline:
            finish = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        elif failed > int(spec.get("backoffLimit", 6)):
            finish = (
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        elif (len(done_indexes) if indexed else succeeded) >= completions:
            finish = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        if finish is not None and finish[0] == "Failed":
            for pod in active:
                self._kill_pod(pod, finish[1])
                counted[pod["metadata"]["uid"]] = ("Failed", None)
            failed += len(active)
            active = []
        elif finish is None:
            active += self._create_pods(job, active, counted, indexed, completions, parallelism)
        status = copy.deepcopy(job.get("status") or {})
        status["startTime"] = status.get("startTime") or self.clock.iso(self._job_started[uid])
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if p.get("status", {}).get("phase") == "Running")
        status["succeeded"] = succeeded
        status["failed"] = failed
        if indexed:
            status["completedIndexes"] = ",".join(str(i) for i in done_indexes)
        if finish is not None:
            self._finish_job(job, status, *finish)
        if status != job.get("status"):
            self.store.update("jobs", {**job, "status": status}, check_rv=False)

    def _finish_job(self, job: Obj, status: Obj, cond_type: str, reason: str, message: str) -> None:
        status["conditions"] = [
            *(status.get("conditions") or []),
            {
                "type": cond_type,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastProbeTime": self.clock.iso(),
                "lastTransitionTime": self.clock.iso(),
            },
        ]
        if cond_type == "Complete":
            status["completionTime"] = self.clock.iso()
        self._job_finished[job["metadata"]["uid"]] = self.clock.now
        self._event(job, reason, message, "Normal" if cond_type == "Complete" else "Warning")

    def _create_pods(
        self,
        job: Obj,
        active: list[Obj],
        counted: dict[str, tuple[str, int | None]],
        indexed: bool,
        completions: int,
        parallelism: int,
    ) -> list[Obj]:
        created: list[Obj] = []
        room = parallelism - len(active)
        if indexed:
            busy = {int((p["metadata"].get("labels") or {})[INDEX_KEY]) for p in active}
            done = {i for ph, i in counted.values() if ph == "Succeeded"}
            wanted: list[int | None] = [
                i for i in range(completions) if i not in busy and i not in done
            ]
        else:
            succeeded = sum(1 for ph, _ in counted.values() if ph == "Succeeded")
            wanted = [None] * max(0, min(parallelism, completions - succeeded) - len(active))
        for index in wanted[: max(0, room)]:
            created.append(self._create_pod(job, index))
        return created

    def _create_pod(self, job: Obj, index: int | None) -> Obj:
        created = self.store.create("pods", pod_from_template(job, index))
        self._event(job, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        return created

    def _kill_pod(self, pod: Obj, reason: str) -> None:
        """Deletes an active pod of a failed Job as the Job controller does: gracefully,
        with its terminationGracePeriodSeconds (SIGTERM, the grace, SIGKILL; the pod
        holds its GPUs meanwhile), at once when it has none or is not running."""
        if self.terminate_pod(pod, None) is not None:
            return
        meta = pod["metadata"]
        self.store.delete("pods", meta["namespace"], meta["name"])
        times = self.pod_times.get(meta["uid"])
        if times is not None and times.finished_at is None:
            times.finished_at, times.exit_code = self.clock.now, 137
        self._event(pod, "Killing", f"Stopping container: {reason}")

    def _ttl(self) -> None:
        for job in list(self.store.items("jobs")):
            uid = job["metadata"]["uid"]
            ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
            if ttl is None or not _is_finished(job) or job["metadata"].get("deletionTimestamp"):
                continue
            finished = self._job_finished.get(uid)
            if finished is None:
                conds = job["status"]["conditions"]
                finished = parse_iso(conds[-1].get("lastTransitionTime", self.clock.iso()))
            if self.clock.now >= finished + ttl:
                meta = job["metadata"]
                self.store.delete("jobs", meta["namespace"], meta["name"])

    # -- scheduler ---------------------------------------------------------------------

    def gpu_usage(self) -> dict[str, int]:
        used: dict[str, int] = {}
        for pod in self.store.items("pods"):
            node = (pod.get("spec") or {}).get("nodeName")
            if node and (pod.get("status") or {}).get("phase") not in TERMINAL:
                used[node] = used.get(node, 0) + gpu_request(pod)
        return used

    def _schedule(self) -> None:
        nodes = self.store.items("nodes")
        used = self.gpu_usage()
        on_node = self._pods_on_nodes()
        # nodes with a free GPU first: first fit stays cheap when most nodes are full
        open_nodes = [n for n in nodes if _free_gpus(n, used) > 0]
        by_name = {n["metadata"]["name"]: n for n in nodes}
        failed: dict[str, str] = {}  # pod shape -> why it fits nowhere, this pass
        for pod in self.store.items("pods"):
            spec, status = pod.get("spec") or {}, pod.get("status") or {}
            if spec.get("nodeName") or status.get("phase") != "Pending":
                continue
            if pod["metadata"].get("deletionTimestamp"):
                continue
            shape = repr(
                (
                    gpu_request(pod),
                    spec.get("nodeSelector"),
                    spec.get("tolerations"),
                    spec.get("affinity"),
                )
            )
            chosen = None
            if shape not in failed:
                candidates = open_nodes if gpu_request(pod) > 0 else nodes
                for node in candidates:
                    if self._fits(pod, node, used, on_node) is None:
                        chosen = node["metadata"]["name"]
                        break
            if chosen is None:
                if shape not in failed:
                    reasons: dict[str, int] = {}
                    for node in nodes:
                        why = self._fits(pod, node, used, on_node) or "?"
                        reasons[why] = reasons.get(why, 0) + 1
                    detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
                    failed[shape] = f"0/{len(nodes)} nodes are available: {detail}."
                message = failed[shape]
                cond = {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastTransitionTime": self.clock.iso(),
                }
                old = [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]
                if not old or old[0].get("message") != message:
                    self.store.update(
                        "pods", {**pod, "status": {**status, "conditions": [cond]}}, check_rv=False
                    )
                    self._event(pod, "FailedScheduling", message, "Warning")
                continue
            used[chosen] = used.get(chosen, 0) + gpu_request(pod)
            on_node.setdefault(chosen, []).append(pod)
            if _free_gpus(by_name[chosen], used) <= 0:  # full now: no longer a candidate
                open_nodes = [n for n in open_nodes if n["metadata"]["name"] != chosen]
            cond = {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": self.clock.iso(),
            }
            self.store.update(
                "pods",
                {
                    **pod,
                    "spec": {**spec, "nodeName": chosen},
                    "status": {**status, "conditions": [cond]},
                },
                check_rv=False,
            )
            self.pod_times[pod["metadata"]["uid"]] = PodTimes(bound_at=self.clock.now)
            self._event(
                pod, "Scheduled", f"Successfully assigned {pod['metadata']['name']} to {chosen}"
            )

    def _pods_on_nodes(self) -> dict[str, list[Obj]]:
        """The pods bound to each node and not finished."""
        on_node: dict[str, list[Obj]] = {}
        for placed in self.store.items("pods"):
            where = (placed.get("spec") or {}).get("nodeName")
            if where and (placed.get("status") or {}).get("phase") not in TERMINAL:
                on_node.setdefault(where, []).append(placed)
        return on_node

    def _fits(
        self, pod: Obj, node: Obj, used: dict[str, int], on_node: dict[str, list[Obj]]
    ) -> str | None:
        return fits(
            pod,
            node,
            used,
            pods_on_node=on_node.get(node["metadata"]["name"], []),
            ignore_affinity=self.ignore_affinity,
        )

    # -- kubelet -----------------------------------------------------------------------

    def _kubelet(self) -> None:
        now = self.clock.now
        for pod in list(self.store.items("pods")):
            uid = pod["metadata"]["uid"]
            times = self.pod_times.get(uid)
            status = pod.get("status") or {}
            if times is None or status.get("phase") in TERMINAL:
                continue
            if times.started_at is None and times.bound_at is not None:
                if now >= times.bound_at + self.startup_delay_s:
                    times.started_at = now
                    self._set_pod_running(pod)
                continue
            plan = self.plan_for(pod)
            assert times.started_at is not None
            if plan.duration_s is not None and now >= times.started_at + plan.duration_s:
                self.finish_pod(pod, plan.exit_code)

    def _set_pod_running(self, pod: Obj) -> None:
        count = len(self.pod_times)
        status = running_status(pod, self.clock.iso(), f"10.0.{count // 250}.{count % 250 + 1}")
        self.store.update("pods", {**pod, "status": status}, check_rv=False)
        self._event(pod, "Started", "Started container")

    def finish_pod(self, pod: Obj, exit_code: int, reason: str | None = None) -> None:
        """End a pod: Succeeded on exit code 0, else Failed; containers terminated."""
        times = self.pod_times.setdefault(pod["metadata"]["uid"], PodTimes())
        times.finished_at, times.exit_code = self.clock.now, exit_code
        status = terminated_status(pod, exit_code, reason, self.clock.iso())
        self.store.update("pods", {**pod, "status": status}, check_rv=False)

    # -- events and logs ---------------------------------------------------------------

    def _event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        if self.record_events:
            self.store.create("events", event_object(obj, reason, message, type_, self.clock.iso()))

    def pod_log(self, pod: Obj) -> list[str]:
        """Synthetic lines: a start line, one line per virtual second run, an exit line."""
        meta = pod["metadata"]
        times = self.pod_times.get(meta["uid"])
        lines: list[str] = []
        if times is not None and times.started_at is not None:
            end = times.finished_at if times.finished_at is not None else self.clock.now
            lines.append(
                f"{self.clock.iso(times.started_at)} {meta['name']} started on "
                f"{pod['spec'].get('nodeName')}"
            )
            steps = min(int(end - times.started_at), MAX_LOG_LINES)
            lines += [
                f"{self.clock.iso(times.started_at + s + 1)} step {s + 1}" for s in range(steps)
            ]
        lines += self.extra_logs.get((meta.get("namespace", ""), meta["name"]), [])
        if times is not None and times.finished_at is not None:
            lines.append(f"{self.clock.iso(times.finished_at)} exited with code {times.exit_code}")
        return lines

    def pod_started(self, pod: Obj) -> bool:
        times = self.pod_times.get(pod["metadata"]["uid"])
        return times is not None and times.started_at is not None
