"""Jobs through the real scheduler and reconciler onto the Kubernetes executor and the
API emulator: every way a Job can end, each job charged exactly once.

The world is ``k8s_world``'s: its clock reads the emulator's virtual clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from jobs_world import RATE, START, JobsWorld
from k8s_kube import NAMESPACE, Kube, make_executor, synced
from k8s_world import kube_world
from sqlalchemy.orm import Session, sessionmaker

from credits.jobs.manifests import UID_LABEL
from credits.jobs.models import Job, JobRun, JobState
from credits.ledger.verify import verify_ledger

pytest_plugins = ["k8s_fixtures", "k8s_executor_fixtures"]


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session], kube: Kube) -> JobsWorld:
    return kube_world(joined_session_factory, kube)


def _reconcile(world: JobsWorld, kube: Kube) -> None:
    synced(kube)
    world.reconcile()


def _start(world: JobsWorld, kube: Kube, **overrides: object) -> int:
    """Submits, schedules and launches one job; returns its id."""
    job = world.submit(**overrides)  # type: ignore[arg-type]
    world.schedule()
    world.reconcile()
    assert kube.job(job.id) is not None
    return job.id


def _job(world: JobsWorld, job_id: int) -> Job:
    with world.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def _charged_for(world: JobsWorld, job_id: int) -> int:
    """What the job's runs cost at the world's rate, from their recorded times."""
    with world.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        runs = session.query(JobRun).filter(JobRun.job_id == job_id).all()
        micro = 0
        for run in runs:
            if run.started_at is not None and run.finished_at is not None:
                seconds = (run.finished_at - run.started_at).total_seconds()
                micro += int(seconds * 1_000_000) * job.gpus
    return -(-micro * RATE // (3600 * 1_000_000))


def _settled_once(world: JobsWorld, job_id: int, expected: int) -> None:
    """Settled, charged the observed run time (usage records of 60 s are each rounded
    up to a whole micro-credit, hence the small slack), and the ledger balances."""
    job = _job(world, job_id)
    assert job.settled_at is not None
    assert expected <= job.charged_micro <= expected + 3
    with world.session() as session:
        report = verify_ledger(session)
    assert report.ok, report


def _finish(world: JobsWorld, kube: Kube, job_id: int) -> None:
    """Reconciles until settled and released (twice more: nothing changes)."""
    for _ in range(3):
        _reconcile(world, kube)
    assert _job(world, job_id).released_at is not None


@pytest.fixture(autouse=True)
def _no_leaks(kube: Kube) -> Iterator[None]:
    yield
    kube.emu.clear_faults()


def test_full_lifecycle_succeeds_is_charged_then_released_and_ttl_deletes(
    world: JobsWorld, kube: Kube
) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), 600)
    job_id = _start(world, kube, gpus=2)
    assert job_id == 1
    kube.emu.advance(1)
    _reconcile(world, kube)
    assert _job(world, job_id).state == JobState.RUNNING.value
    kube.emu.advance(700)
    _finish(world, kube, job_id)
    job = _job(world, job_id)
    assert job.state == JobState.SUCCEEDED.value
    _settled_once(world, job_id, -(-2 * 600 * RATE // 3600))
    kube.emu.advance(601)  # past ttlSecondsAfterFinished, now that the finalizer is off
    assert kube.job(job_id) is None


def test_restart_mid_run_a_new_executor_finds_the_running_job(world: JobsWorld, kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), 300)
    job_id = _start(world, kube)
    kube.emu.advance(5)
    _reconcile(world, kube)
    kube.executor.close()
    kube.executor = make_executor(kube.emu)  # the platform restarted
    world.executor = kube.executor  # type: ignore[assignment]
    _reconcile(world, kube)
    assert _job(world, job_id).state == JobState.RUNNING.value
    kube.emu.advance(400)
    _finish(world, kube, job_id)
    assert _job(world, job_id).state == JobState.SUCCEEDED.value
    _settled_once(world, job_id, -(-2 * 300 * RATE // 3600))


def test_create_answered_500_is_retried_without_a_duplicate(world: JobsWorld, kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), 60)
    kube.emu.fail_next("create", "jobs", 500)
    job_id = _start(world, kube)
    world.reconcile()  # launches again: AlreadyExists is success
    assert len(kube.emu.objects("jobs", NAMESPACE)) == 1
    kube.emu.advance(100)
    _finish(world, kube, job_id)
    _settled_once(world, job_id, -(-2 * 60 * RATE // 3600))


def test_job_deleted_outside_fails_and_is_charged_for_what_ran(
    world: JobsWorld, kube: Kube
) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), None)
    job_id = _start(world, kube)
    kube.emu.advance(1)
    _reconcile(world, kube)
    kube.emu.advance(120)
    kube.emu.delete("jobs", NAMESPACE, kube.name(job_id))
    _finish(world, kube, job_id)
    job = _job(world, job_id)
    assert (job.state, job.reason) == (JobState.FAILED.value, "deleted outside the platform")
    # the pod started at launch and ran through the two advances
    _settled_once(world, job_id, -(-2 * 121 * RATE // 3600))
    assert _charged_for(world, job_id) == -(-2 * 121 * RATE // 3600)
    assert job.charged_micro == _job(world, job_id).charged_micro  # settling again: no change
    assert kube.job(job_id) is None  # released: the deletion completed


def test_node_lost_preempts_requeues_and_the_rerun_is_charged_once(
    world: JobsWorld, kube: Kube
) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(1, 1), None)
    kube.emu.set_run_duration(NAMESPACE, kube.name(1, 2), 50)
    job_id = _start(world, kube)
    kube.emu.advance(1)
    _reconcile(world, kube)
    kube.emu.advance(30)
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(job_id))
    kube.emu.lose_node(pod["spec"]["nodeName"])
    _reconcile(world, kube)
    assert _job(world, job_id).state == JobState.QUEUED.value
    world.schedule()
    world.reconcile()
    assert kube.job(job_id, 2) is not None
    kube.emu.advance(100)
    _finish(world, kube, job_id)
    assert _job(world, job_id).state == JobState.SUCCEEDED.value
    _settled_once(world, job_id, -(-2 * (31 + 50) * RATE // 3600))
    assert kube.job(job_id, 1) is not None  # the first attempt's finalizer is off too
    assert not kube.job(job_id, 1)["metadata"].get("finalizers")  # type: ignore[index]


def test_a_rerun_whose_job_vanished_fails_as_lost_and_is_charged_no_further(
    world: JobsWorld, kube: Kube
) -> None:
    """With its metering finalizer stripped, attempt 2's Job goes for good: the executor
    then reports attempt 1 (preempted), which is no news of attempt 2."""
    kube.emu.set_run_duration(NAMESPACE, kube.name(1, 1), None)
    kube.emu.set_run_duration(NAMESPACE, kube.name(1, 2), None)
    job_id = _start(world, kube)
    kube.emu.advance(30)
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(job_id))
    kube.emu.lose_node(pod["spec"]["nodeName"])
    _reconcile(world, kube)
    world.schedule()
    world.reconcile()
    kube.emu.advance(60)
    _reconcile(world, kube)
    assert (_job(world, job_id).state, _job(world, job_id).attempt) == (JobState.RUNNING.value, 2)

    rerun = kube.emu.get("jobs", NAMESPACE, kube.name(job_id, 2))
    rerun["metadata"]["finalizers"] = []
    kube.emu.update("jobs", rerun)
    kube.emu.delete("jobs", NAMESPACE, kube.name(job_id, 2), propagation="Foreground")
    kube.emu.tick()
    assert kube.job(job_id, 2) is None
    kube.emu.advance(60)
    for _ in range(5):
        kube.emu.advance(60)
        _reconcile(world, kube)

    job = _job(world, job_id)
    assert job.state == JobState.FAILED.value
    assert "no longer knows" in (job.reason or "")
    # Attempt 1 ran 30 s, attempt 2 until noticed (60 s, then 120 s unseen): no more.
    _settled_once(world, job_id, -(-2 * (30 + 180) * RATE // 3600))


def test_deadline_exceeded_is_timed_out_and_charged_the_max_runtime(
    world: JobsWorld, kube: Kube
) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), None)
    job_id = _start(world, kube, max_runtime_seconds=300)
    kube.emu.advance(400)
    _finish(world, kube, job_id)
    assert _job(world, job_id).state == JobState.TIMED_OUT.value
    _settled_once(world, job_id, -(-2 * 300 * RATE // 3600))


def test_a_job_whose_deadline_passes_while_pending_failed_as_never_started_not_timed_out(
    world: JobsWorld, kube: Kube
) -> None:
    job = world.submit(gpus=1, max_runtime_seconds=600)
    world.schedule()
    kube.emu.cordon("gpu-0")
    kube.emu.cordon("gpu-1")
    world.reconcile()
    kube.emu.advance(700)
    _finish(world, kube, job.id)
    failed = _job(world, job.id)
    assert failed.state == JobState.FAILED.value and failed.started_at is None
    assert failed.reason is not None and failed.reason.startswith("never started")
    _settled_once(world, job.id, 0)


def test_gang_on_two_nodes_is_charged_from_when_both_pods_run(world: JobsWorld, kube: Kube) -> None:
    kube.emu.set_run_duration(NAMESPACE, kube.name(1), 100)
    job_id = _start(world, kube, gpus=16)
    job = kube.job(job_id)
    assert job is not None
    assert job["spec"]["completionMode"] == "Indexed"  # type: ignore[index]
    uid = job["spec"]["template"]["metadata"]["labels"][UID_LABEL]  # type: ignore[index]
    service = kube.emu.get("services", NAMESPACE, kube.name(job_id))
    policy = kube.emu.get("networkpolicies", NAMESPACE, kube.name(job_id))
    assert service["spec"]["selector"] == {UID_LABEL: uid}
    assert policy["spec"]["podSelector"] == {"matchLabels": {UID_LABEL: uid}}
    kube.emu.advance(1)
    _reconcile(world, kube)
    assert _job(world, job_id).state == JobState.RUNNING.value
    assert len(kube.emu.objects("pods", NAMESPACE, {UID_LABEL: uid})) == 2
    kube.emu.advance(200)
    _finish(world, kube, job_id)
    _settled_once(world, job_id, -(-16 * 100 * RATE // 3600))
    assert kube.emu.find("services", NAMESPACE, kube.name(job_id)) is None
    assert kube.emu.find("networkpolicies", NAMESPACE, kube.name(job_id)) is None


def test_permanent_422_fails_the_job_with_the_reason_and_charges_nothing(
    world: JobsWorld, kube: Kube
) -> None:
    kube.emu.fail_next("create", "jobs", 422, message="spec.template.spec: Invalid value")
    job = world.submit()
    world.schedule()
    world.reconcile()
    _finish(world, kube, job.id)
    failed = _job(world, job.id)
    assert failed.state == JobState.FAILED.value
    assert failed.reason is not None and "spec.template.spec: Invalid value" in failed.reason
    _settled_once(world, job.id, 0)


def test_a_gang_whose_network_is_refused_is_stopped_in_the_cluster_before_it_fails(
    world: JobsWorld, kube: Kube
) -> None:
    kube.emu.fail_next("create", "networkpolicies", 403, message="denied by a policy webhook")
    job = world.submit(gpus=16, max_runtime_seconds=3600)
    kube.emu.set_run_duration(NAMESPACE, kube.name(job.id), 3000)
    world.schedule()
    world.reconcile()
    kube.emu.advance(600)
    _finish(world, kube, job.id)
    failed = _job(world, job.id)
    assert failed.state == JobState.FAILED.value
    assert failed.reason is not None and "denied by a policy webhook" in failed.reason
    _settled_once(world, job.id, 0)
    pods = kube.emu.job_pods(NAMESPACE, kube.name(job.id))
    running = [pod for pod in pods if pod["status"].get("phase") == "Running"]
    assert running == []


def test_conflict_on_cancel_is_retried_and_the_job_is_cancelled(
    world: JobsWorld, kube: Kube
) -> None:
    from credits.jobs.service import cancel_job  # noqa: PLC0415 - only this test

    kube.emu.set_run_duration(NAMESPACE, kube.name(1), None)
    job_id = _start(world, kube)
    kube.emu.advance(1)
    _reconcile(world, kube)
    kube.emu.advance(59)
    with world.session() as session:
        cancel_job(session, job_id=job_id, actor=world.researcher, now=world.clock())
    kube.emu.fail_next("patch", "jobs", 409)
    _finish(world, kube, job_id)
    assert _job(world, job_id).state == JobState.CANCELLED.value
    _settled_once(world, job_id, -(-2 * 60 * RATE // 3600))


def test_cancel_frees_the_gpus_at_once_and_charges_until_the_pods_stopped(
    world: JobsWorld, kube: Kube
) -> None:
    from credits.jobs.service import cancel_job  # noqa: PLC0415 - only this test

    kube.emu.set_run_duration(NAMESPACE, kube.name(1), None)
    job_id = _start(world, kube)
    kube.emu.advance(1)
    _reconcile(world, kube)
    kube.emu.advance(59)
    with world.session() as session:
        cancel_job(session, job_id=job_id, actor=world.researcher, now=world.clock())
    # the first try marks the Job but cannot delete it: its pod runs on, and is charged
    kube.emu.fail_next("delete", "jobs", 503, times=4)
    _reconcile(world, kube)
    assert _job(world, job_id).state == JobState.RUNNING.value
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(job_id))
    assert pod["status"]["phase"] == "Running"
    kube.emu.advance(30)
    _reconcile(world, kube)  # the retry stops the pod at once; settles, releases
    assert kube.emu.job_pods(NAMESPACE, kube.name(job_id)) == []
    _finish(world, kube, job_id)
    job = _job(world, job_id)
    assert (job.state, job.reason) == (JobState.CANCELLED.value, "cancelled")
    _settled_once(world, job_id, -(-2 * 90 * RATE // 3600))
    assert _charged_for(world, job_id) == -(-2 * 90 * RATE // 3600)
    assert kube.job(job_id) is None  # released: the finalizer is off, the deletion done


def test_clock_offset_is_what_the_world_sees(world: JobsWorld, kube: Kube) -> None:
    assert world.clock() == START
    kube.emu.advance(10)
    assert world.clock() == START + timedelta(seconds=10)
