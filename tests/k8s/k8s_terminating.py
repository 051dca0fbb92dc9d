"""The kubelet's side of a pod's graceful deletion, for the emulator's ``Cluster``.

A running pod deleted with a grace gets SIGTERM at once and stays, being
terminated (``deletionTimestamp`` at the grace's end), until its container exits
by itself (its run plan's ``term_exit_s``) or is killed when the grace ends; then
the kubelet deletes it for good.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from k8s_pods import TERMINAL
from k8s_store import Obj

if TYPE_CHECKING:
    from k8s_controllers import PodTimes, RunPlan, VirtualClock
    from k8s_store import Store


class GracefulDeletion:
    """Mixed into ``Cluster``, whose fields and methods these use."""

    store: Store
    clock: VirtualClock
    pod_times: dict[str, PodTimes]
    terminating: dict[str, tuple[float, float]]

    def plan_for(self, pod: Obj) -> RunPlan:
        raise NotImplementedError

    def finish_pod(self, pod: Obj, exit_code: int, reason: str | None = None) -> None:
        raise NotImplementedError

    def _event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        raise NotImplementedError

    def termination_times(self) -> list[float]:
        """When each pod being terminated exits or is killed, for the clock's timers."""
        times: list[float] = []
        for uid, (term_at, deadline) in self.terminating.items():
            times.append(deadline)
            pod = self._pod_by_uid(uid)
            plan = self.plan_for(pod) if pod is not None else None
            if plan is not None and plan.term_exit_s is not None:
                times.append(term_at + plan.term_exit_s)
        return times

    def _pod_by_uid(self, uid: str) -> Obj | None:
        return next((p for p in self.store.items("pods") if p["metadata"]["uid"] == uid), None)

    def terminate_pod(self, pod: Obj, grace_s: int | None) -> Obj | None:
        """A graceful deletion: the kubelet sends SIGTERM now, and the pod stays, being
        terminated, until its container exits or the grace (``grace_s``, else its
        ``terminationGracePeriodSeconds``, else 0 here) ends. None when it should go at
        once: no grace, or a pod that is not running. A second deletion may shorten
        the grace, never lengthen it."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if grace_s is None:
            grace_s = int(spec.get("terminationGracePeriodSeconds") or 0)
        times = self.pod_times.get(meta["uid"])
        running = times is not None and times.started_at is not None
        if grace_s <= 0 or not running or (pod.get("status") or {}).get("phase") in TERMINAL:
            return None
        now = self.clock.now
        term_at, deadline = self.terminating.get(meta["uid"], (now, now + grace_s))
        deadline = min(deadline, now + grace_s)
        self.terminating[meta["uid"]] = (term_at, deadline)
        self._event(
            pod, "Killing", f"Stopping container {spec.get('containers', [{}])[0].get('name')}"
        )
        return self.store.begin_graceful_delete(
            "pods",
            meta["namespace"],
            meta["name"],
            at=self.clock.iso(deadline),
            grace_s=max(1, int(deadline - term_at)),
        )

    def _kubelet_terminating(self) -> None:
        """Pods being terminated: their container exits by itself after SIGTERM (its
        plan's ``term_exit_s``) or is killed when the grace ends; then the pod goes."""
        now = self.clock.now
        for uid, (term_at, deadline) in list(self.terminating.items()):
            pod = self._pod_by_uid(uid)
            if pod is None:
                del self.terminating[uid]
                continue
            meta = pod["metadata"]
            if (pod.get("status") or {}).get("phase") not in TERMINAL:
                plan = self.plan_for(pod)
                exits_at = deadline
                if plan.term_exit_s is not None:
                    exits_at = min(deadline, term_at + plan.term_exit_s)
                if now < exits_at:
                    continue
                code = plan.term_exit_code if exits_at < deadline else 137
                self.finish_pod(pod, code)
            del self.terminating[uid]
            self.store.delete("pods", meta["namespace"], meta["name"])
