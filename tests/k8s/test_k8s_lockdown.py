"""Locked-down job pods on the emulator: the per-attempt uid label, a gang's Service and
NetworkPolicy selecting by it, and cancel and logs finding pods by it alone."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from k8s_kube import NAMESPACE, Kube, request, synced

from credits.jobs.executors.base import ExecutorError, Phase
from credits.jobs.manifests import INDEX_ANNOTATION, JOB_NAME_LABEL, UID_LABEL

pytest_plugins = ["k8s_fixtures", "k8s_executor_fixtures"]


def _uid(kube: Kube, job_id: int, attempt: int = 1) -> str:
    job = kube.job(job_id, attempt)
    assert job is not None
    uid: str = job["spec"]["template"]["metadata"]["labels"][UID_LABEL]  # type: ignore[index]
    return uid


def _pods(kube: Kube, labels: dict[str, str]) -> list[str]:
    return sorted(p["metadata"]["name"] for p in kube.emu.objects("pods", NAMESPACE, labels))


def _decoy(kube: Kube, job_id: int) -> str:
    """A pod someone else made that claims, by the labels Kubernetes' Job controller
    sets, to be rank 0 of the job's attempt 1 (and sorts before its real pods)."""
    name = f"{kube.name(job_id)}-0-decoy"  # '-' sorts before any generated suffix
    kube.emu.create(
        "pods",
        {
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": {JOB_NAME_LABEL: kube.name(job_id)},
                "annotations": {INDEX_ANNOTATION: "0"},
            },
            "spec": {"containers": [{"name": "job", "image": "busybox"}], "nodeName": "gpu-0"},
            "status": {"phase": "Running"},
        },
    )
    return name


def _pod_selectors(kube: Kube) -> list[str]:
    return [
        unquote(path)
        for method, path in kube.emu.requests
        if method == "GET" and "/pods?" in path and "watch=" not in path
    ]


def test_each_attempt_draws_its_own_unguessable_uid_label(kube: Kube) -> None:
    kube.executor.launch(request(1))
    kube.executor.launch(request(1, attempt=2))
    kube.executor.launch(request(2))
    uids = {_uid(kube, 1), _uid(kube, 1, 2), _uid(kube, 2)}
    assert len(uids) == 3
    assert all(len(uid) == 32 and int(uid, 16) >= 0 for uid in uids)
    kube.emu.advance(1)
    assert _pods(kube, {UID_LABEL: _uid(kube, 1)}) == [
        p["metadata"]["name"] for p in kube.emu.job_pods(NAMESPACE, kube.name(1))
    ]


def test_pods_made_from_the_job_are_locked_down(kube: Kube) -> None:
    kube.executor.launch(request(3, gpus=16, nodes=2))
    kube.emu.advance(1)
    pods = kube.emu.job_pods(NAMESPACE, kube.name(3))
    assert len(pods) == 2
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        context = spec["containers"][0]["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}


def test_gang_service_and_network_policy_select_its_pods_by_uid_and_go_at_release(
    kube: Kube,
) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(4), 30)
    kube.executor.launch(request(4, gpus=16, nodes=2))
    uid = _uid(kube, 4)
    job = kube.job(4)
    assert job is not None
    service = kube.emu.get("services", NAMESPACE, kube.name(4))
    policy = kube.emu.get("networkpolicies", NAMESPACE, kube.name(4))
    assert service["spec"]["selector"] == {UID_LABEL: uid}
    assert policy["spec"]["podSelector"] == {"matchLabels": {UID_LABEL: uid}}
    assert policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {UID_LABEL: uid}}}]}
    ]
    for owned in (service, policy):
        assert [ref["uid"] for ref in owned["metadata"]["ownerReferences"]] == [
            job["metadata"]["uid"]  # type: ignore[index]
        ]
    kube.emu.advance(1)
    synced(kube)
    assert kube.executor.observe([4])[4].phase is Phase.RUNNING
    assert len(_pods(kube, {UID_LABEL: uid})) == 2
    kube.emu.advance(60)
    synced(kube)
    assert kube.executor.observe([4])[4].phase is Phase.SUCCEEDED
    kube.executor.release(4)
    kube.executor.release(4)  # idempotent: both are gone already
    assert kube.emu.find("services", NAMESPACE, kube.name(4)) is None
    assert kube.emu.find("networkpolicies", NAMESPACE, kube.name(4)) is None


def test_a_retried_gang_launch_keeps_the_uid_of_the_job_that_exists(kube: Kube) -> None:
    kube.emu.fail_next("create", "networkpolicies", 503, times=10, retry_after=0)
    with pytest.raises(ExecutorError, match="creating NetworkPolicy") as failed:
        kube.executor.launch(request(5, gpus=16, nodes=2))
    assert failed.value.transient  # the reconciler launches again
    kube.emu.clear_faults()
    assert kube.emu.find("networkpolicies", NAMESPACE, kube.name(5)) is None
    uid = _uid(kube, 5)
    other = kube.new_executor()  # the platform restarted: a new random uid is drawn
    try:
        other.launch(request(5, gpus=16, nodes=2))
    finally:
        other.close()
    policy = kube.emu.get("networkpolicies", NAMESPACE, kube.name(5))
    assert policy["spec"]["podSelector"] == {"matchLabels": {UID_LABEL: uid}}
    service = kube.emu.get("services", NAMESPACE, kube.name(5))
    assert service["spec"]["selector"] == {UID_LABEL: uid}
    assert len(kube.emu.objects("jobs", NAMESPACE)) == 1


def test_logs_and_cancel_find_pods_by_the_uid_label_only(kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(7), None)
    kube.executor.launch(request(7))
    kube.emu.advance(1)
    decoy = _decoy(kube, 7)
    kube.emu.append_log(NAMESPACE, decoy, "not the job's output")
    uid = _uid(kube, 7)
    assert "not the job's output" not in kube.executor.logs(7)
    kube.executor.cancel(7)
    assert kube.emu.find("pods", NAMESPACE, decoy) is not None  # never the platform's
    selectors = _pod_selectors(kube)
    assert selectors
    assert all(JOB_NAME_LABEL not in path for path in selectors)
    assert any(f"labelSelector={UID_LABEL}={uid}" in path for path in selectors)
