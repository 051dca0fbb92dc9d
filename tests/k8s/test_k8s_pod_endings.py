"""When an attempt's pods stop, through the real reconciler onto the Kubernetes executor
and the API emulator: an attempt ends when its last pod stopped, not when the platform
next looked.

A pod that saves its checkpoint and exits within its grace is deleted by the kubelet at
once; when the watch delivers both its terminated state and its deletion before the
next reconcile, that reconcile reads it gone (404) and must end the attempt at the
container's exit, not at the reconcile.

Kubernetes ends attempts too (a deadline, a gang's rank failing, a node lost): the Job
controller then deletes the other pods with their grace, as the emulator does, and the
attempt is running until the last of them stopped.

Also the names the API server checks at launch: an installation whose name starts with
a digit still names its gangs' Services validly (the emulator checks DNS-1035), and
label keys are checked as the API server checks them.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
from jobs_world import RATE, JobsWorld
from k8s_kube import A100, FAST_RETRIES, FLAVOUR, NAMESPACE, Kube, make_executor, request, synced
from k8s_world import kube_world
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.jobs.defrag import MoveDecision
from credits.jobs.executors.base import LaunchRequest, NodeSlice, Observation, Phase
from credits.jobs.executors.kube_cache import WatchedCache
from credits.jobs.executors.kube_calls import NotFound
from credits.jobs.executors.kube_status import JobRecord, PodRecord, observe_job
from credits.jobs.executors.kubernetes import KubernetesExecutor
from credits.jobs.manifests import ManifestOptions, job_name
from credits.jobs.models import Job, JobMove, JobState
from credits.jobs.moves import record_move
from credits.jobs.service import cancel_job
from credits.ledger.verify import verify_ledger
from credits.settings import Settings

pytest_plugins = ["k8s_fixtures", "k8s_executor_fixtures"]

GPUS = 2
GRACE = 300  # the pods' terminationGracePeriodSeconds and a move's grace
SAVES_IN = 30  # the pod exits this long after its SIGTERM, its checkpoint saved
NEXT_LOOK = 60  # the next reconcile comes this long after the exit


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session], kube: Kube) -> JobsWorld:
    kube.executor.close()
    kube.executor = make_executor(kube.emu)
    kube.executor.options = dataclasses.replace(
        kube.executor.options, checkpoint_claim="credits-checkpoints"
    )
    return kube_world(joined_session_factory, kube)


def _running_checkpointable(world: JobsWorld, kube: Kube) -> int:
    """A checkpointable job (the grace above) running on gpu-0; returns its id."""
    job = world.submit(gpus=GPUS, checkpointable=True, checkpoint_grace_seconds=GRACE)
    kube.emu.set_run_duration(NAMESPACE, kube.name(job.id), None)
    kube.emu.set_sigterm_exit(NAMESPACE, kube.name(job.id), SAVES_IN)
    kube.emu.set_run_duration(NAMESPACE, kube.name(job.id, 2), None)  # a move's restart
    world.schedule()
    world.reconcile()
    kube.emu.advance(1)
    synced(kube)
    world.reconcile()
    assert world.job(job.id).state == JobState.RUNNING.value
    return job.id


def _watched_deletion(kube: Kube, pod: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The resourceVersions of the pod the pods watch delivers from now on (recorded as
    the watch thread marks it dirty; nothing is read, as between two reconciles)."""
    seen: list[str] = []
    cache = kube.executor.pods
    mark = cache.mark_dirty

    def spy(name: str, last_seen: dict[str, object] | None = None) -> None:
        if name == pod and last_seen is not None:
            seen.append(str(last_seen["metadata"]["resourceVersion"]))  # type: ignore[index]
        mark(name, last_seen)

    monkeypatch.setattr(cache, "mark_dirty", spy)
    return seen


def _exits_then_next_reconcile(
    world: JobsWorld, kube: Kube, job_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod exits ``SAVES_IN`` s after its SIGTERM and is deleted; the watch delivers
    both before the next reconcile, ``NEXT_LOOK`` s later."""
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(job_id))
    name = pod["metadata"]["name"]
    seen = _watched_deletion(kube, name, monkeypatch)
    kube.emu.advance(SAVES_IN)
    assert kube.emu.job_pods(NAMESPACE, kube.name(job_id)) == []
    (deleted,) = [
        change.rv
        for change in kube.emu.store.history
        if change.type == "DELETED" and change.obj["metadata"]["name"] == name
    ]
    deadline = time.monotonic() + 5
    while str(deleted) not in seen:
        assert time.monotonic() < deadline, f"the watch never delivered {name}'s deletion"
        time.sleep(0.01)
    kube.emu.advance(NEXT_LOOK)
    world.reconcile()


def _charged_between(world: JobsWorld, job_id: int, start: datetime, end: datetime) -> None:
    """Charged the GPUs from ``start`` to ``end`` (usage records of 60 s are each rounded
    up to a whole micro-credit, hence the small slack), and the ledger balances."""
    expected = -(-GPUS * int((end - start).total_seconds()) * RATE // 3600)
    job = world.job(job_id)
    assert job.settled_at is not None
    assert expected <= job.charged_micro <= expected + 3
    with world.session() as session:
        assert verify_ledger(session).ok


def test_a_cancel_is_charged_until_the_pod_exited_in_its_grace_not_until_seen_gone(
    world: JobsWorld, kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _running_checkpointable(world, kube)
    asked = world.clock()
    with world.session() as session:
        cancel_job(session, job_id=job_id, actor=world.researcher, now=asked)
    world.reconcile()  # deletes the Job and its pod with the pod's own grace
    assert world.job(job_id).state == JobState.RUNNING.value  # saving its checkpoint

    _exits_then_next_reconcile(world, kube, job_id, monkeypatch)

    exited = asked + timedelta(seconds=SAVES_IN)
    job = world.job(job_id)
    assert (job.state, job.finished_at) == (JobState.CANCELLED.value, exited)
    (run,) = world.runs(job_id)
    assert run.finished_at == exited
    for _ in range(2):
        synced(kube)
        world.reconcile()
    assert run.started_at is not None
    _charged_between(world, job_id, run.started_at, exited)


def test_a_move_ends_the_old_run_when_its_pod_exited_in_its_grace_not_when_seen_gone(
    world: JobsWorld, kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _running_checkpointable(world, kube)
    with world.session() as session:
        job = session.get_one(Job, job_id)
        decision = MoveDecision(job_id, (NodeSlice("gpu-1", GPUS),), 99, "test")
        assert record_move(session, job, decision, max_moves=3, actor="test", now=world.clock())
    asked = world.clock()
    world.reconcile()  # asks Kubernetes to stop it with its grace
    assert world.job(job_id).state == JobState.RUNNING.value

    _exits_then_next_reconcile(world, kube, job_id, monkeypatch)

    exited = asked + timedelta(seconds=SAVES_IN)
    first, second = world.runs(job_id)
    assert (first.outcome, first.finished_at) == ("preempted", exited)
    assert first.stop_requested_at == asked  # charging ended there: a move's grace is free
    assert second.attempt == 2
    with world.session() as session:
        (move,) = session.scalars(select(JobMove).where(JobMove.job_id == job_id))
        assert move.stopped_at == exited


class _GoneSource:
    """A source whose every object is gone (404)."""

    what = "pods"

    def read(self, name: str) -> dict[str, object]:
        raise NotFound(name)


def _pod(name: str, state: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "state": state}


def _cache() -> WatchedCache[str]:
    digest = lambda obj: str(obj["state"])  # noqa: E731 - a one-line digest
    return WatchedCache(_GoneSource(), digest)  # type: ignore[arg-type]


def test_a_pod_read_gone_departs_with_the_watch_state_newer_than_the_cached_one() -> None:
    cache = _cache()
    cache.put(_pod("p", "running"))
    cache.mark_dirty("p", _pod("p", "terminated"))
    cache.refresh()
    assert (cache.records(), cache.departed()) == ({}, {"p": "terminated"})


def test_a_watch_state_older_than_an_answer_stored_since_is_never_preferred() -> None:
    cache = _cache()
    cache.mark_dirty("p", _pod("p", "running"))
    cache.put(_pod("p", "deleting"))  # a deletion's answer, after that event
    cache.mark_dirty("p")
    cache.refresh()
    assert cache.departed() == {"p": "deleting"}


def test_an_installation_whose_name_starts_with_a_digit_launches_gangs(kube: Kube) -> None:
    instance = Settings(instance_name="2025-lab").instance_name
    options = ManifestOptions(namespace=NAMESPACE, instance=instance)
    executor = KubernetesExecutor(
        kube.emu.api_client(), options, flavours={A100: FLAVOUR}, policy=FAST_RETRIES
    )
    try:
        executor.launch(request(5, gpus=16, nodes=2))  # a gang: a Job and its Service
    finally:
        executor.close()
    name = job_name(instance, 5, 1)
    assert name == "credits-2025-lab-5-1"
    for plural in ("jobs", "services", "networkpolicies"):
        assert kube.emu.find(plural, NAMESPACE, name) is not None, plural


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("2025-lab-5-1", {}),  # a DNS-1123 label, not a DNS-1035 one
        ("svc.a", {}),
        ("svc", {"team..x/owner": "v"}),
        ("svc", {"team.-x/owner": "v"}),
        ("svc", {"a-.b/owner": "v"}),
        ("svc", {"a/b/c": "v"}),
    ],
)
def test_the_emulator_refuses_services_the_api_server_refuses(
    kube: Kube, name: str, labels: dict[str, str]
) -> None:
    body = {
        "metadata": {"name": name, "labels": labels},
        "spec": {"clusterIP": "None", "ports": [{"port": 1}]},
    }
    with kube.emu.api_client() as api:
        core = client.CoreV1Api(api)
        with pytest.raises(ApiException) as refused:
            core.create_namespaced_service(NAMESPACE, body)
        assert refused.value.status == 422
        core.create_namespaced_service(NAMESPACE, {**body, "metadata": {"name": "svc-1"}})


# -- attempts Kubernetes ends ----------------------------------------------------------


def _claimed(kube: Kube) -> KubernetesExecutor:
    """The fixture's executor, with a checkpoint claim (the first one is closed)."""
    kube.executor.close()
    executor = make_executor(kube.emu)
    executor.options = dataclasses.replace(executor.options, checkpoint_claim="claim")
    kube.executor = executor
    return executor


def _launch(kube: Kube, job_id: int, *, nodes: int = 1, runtime_s: int = 3600) -> None:
    """A checkpointable attempt (its pods' grace ``GRACE``) whose pods run until stopped
    and exit ``SAVES_IN`` s after their SIGTERM."""
    launch: LaunchRequest = dataclasses.replace(
        request(job_id, gpus=8 * nodes, nodes=nodes, max_runtime_seconds=runtime_s),
        checkpointable=True,
        checkpoint_grace_seconds=GRACE,
    )
    kube.emu.set_run_duration(NAMESPACE, kube.name(job_id), None)
    kube.emu.set_sigterm_exit(NAMESPACE, kube.name(job_id), SAVES_IN)
    _claimed(kube).launch(launch)


def _seen(kube: Kube, job_id: int) -> Observation:
    synced(kube)
    return kube.executor.observe([job_id])[job_id]


def _holding(kube: Kube, job_id: int) -> list[str]:
    """The nodes where the attempt's pods still run."""
    pods = kube.emu.job_pods(NAMESPACE, kube.name(job_id))
    return sorted(p["spec"]["nodeName"] for p in pods if p["status"]["phase"] == "Running")


def test_a_timed_out_attempt_runs_until_its_pod_stopped_in_its_grace(kube: Kube) -> None:
    created = kube.now()
    _launch(kube, 21, runtime_s=300)
    kube.emu.advance(301)  # the Job fails DeadlineExceeded; its pod gets SIGTERM
    job = kube.job(21)
    assert job is not None
    assert job["status"]["conditions"][-1]["reason"] == "DeadlineExceeded"  # type: ignore[index]
    assert _holding(kube, 21) == ["gpu-0"]
    assert _seen(kube, 21).phase is Phase.RUNNING

    kube.emu.advance(SAVES_IN)
    seen = _seen(kube, 21)
    assert (seen.phase, seen.reason) == (Phase.TIMED_OUT, "max runtime 300 s reached")
    assert seen.finished_at == created + timedelta(seconds=300 + SAVES_IN)  # not 300


def test_a_gang_whose_rank_failed_runs_until_its_other_rank_stopped(kube: Kube) -> None:
    _launch(kube, 22, nodes=2)
    kube.emu.set_run_duration(NAMESPACE, kube.name(22), 60, exit_code=1, index=1)
    kube.emu.advance(61)  # rank 1 fails at 60: the Job fails, rank 0 gets SIGTERM
    assert _holding(kube, 22) == ["gpu-0"]
    assert _seen(kube, 22).phase is Phase.RUNNING

    kube.emu.advance(SAVES_IN)
    seen = _seen(kube, 22)
    assert (seen.phase, seen.exit_code, seen.reason) == (Phase.FAILED, 1, "exit code 1")
    assert seen.started_at is not None
    assert seen.finished_at == seen.started_at + timedelta(seconds=60 + SAVES_IN)


def test_a_gang_that_lost_a_node_runs_until_its_other_rank_stopped(kube: Kube) -> None:
    _launch(kube, 23, nodes=2)
    kube.emu.advance(5)
    assert _seen(kube, 23).phase is Phase.RUNNING
    lost_at = kube.now()
    kube.emu.lose_node("gpu-1")  # its pod fails NodeLost: the Job fails, rank 0 SIGTERM
    kube.emu.advance(1)
    assert _holding(kube, 23) == ["gpu-0"]
    assert _seen(kube, 23).phase is Phase.RUNNING

    kube.emu.advance(SAVES_IN)
    seen = _seen(kube, 23)
    assert (seen.phase, seen.reason) == (Phase.PREEMPTED, "node gpu-1 lost")
    assert seen.finished_at == lost_at + timedelta(seconds=SAVES_IN)


def test_a_pod_of_a_failed_job_seen_only_gone_stops_no_later_than_the_api_showed() -> None:
    """Only the API's times count after the Job's own end: a pod deleted at once (no
    deletionTimestamp, no terminated state seen) is not charged until it was seen gone."""
    at = datetime(2030, 1, 1, tzinfo=UTC)
    deadline = at + timedelta(seconds=300)
    job = JobRecord(
        name="j",
        uid="u",
        resource_version="1",
        job_id=1,
        attempt=1,
        pods_wanted=1,
        active_deadline_s=300,
        finalizers=(),
        deleting_at=None,
        cancelled_at=None,
        start_time=at,
        finished=("Failed", "DeadlineExceeded", "", deadline),
    )
    gone = PodRecord(
        name="p",
        resource_version="2",
        job_name="j",
        index=0,
        phase="Running",
        reason=None,
        node="gpu-0",
        started_at=at,
        finished_at=None,
        exit_code=None,
        preempted=False,
        gone_at=deadline + timedelta(seconds=100),
    )
    assert observe_job(job, [gone]).finished_at == deadline
    deleting = dataclasses.replace(gone, deleted_at=deadline + timedelta(seconds=20))
    assert observe_job(job, [deleting]).finished_at == deadline + timedelta(seconds=20)
    assert observe_job(job, [dataclasses.replace(gone, gone_at=None)]).phase is Phase.RUNNING
