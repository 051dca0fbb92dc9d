"""A checkpointable job moved to defragment the pool, through the real scheduling pass and
reconciler onto the Kubernetes executor and the API emulator: the Job is deleted with the
job's grace, the job restarts at once on the node the scheduler chose (bound there by
required node affinity), the blocked whole-node job starts on the node it left, and the
ledger charges only what ran; and a restart that never starts (its target cordoned), which
queues the job again, hold kept, however it ends (start timeout, deadline, deletion)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from jobs_world import RATE, JobsWorld
from k8s_kube import NAMESPACE, Kube, make_executor, synced
from k8s_world import kube_world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.jobs.manifests import STOP_REASON_ANNOTATION
from credits.jobs.models import JobEvent, JobRun, JobState
from credits.jobs.schemas import ReconcileOut
from credits.jobs.transitions import placement_from_json
from credits.ledger.queries import get_hold
from credits.ledger.verify import verify_ledger

pytest_plugins = ["k8s_fixtures", "k8s_executor_fixtures"]

GRACE = 90
SAVES_IN = 30  # the mover's pod exits this long after its SIGTERM, its checkpoint saved
SMALL = 4  # half of one of the emulator's 8-GPU nodes
# Job ids in submission order: a short filler, the mover, a long stayer, the big job.
FILLER, MOVER, STAYER, BIG = 1, 2, 3, 4


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session], kube: Kube) -> JobsWorld:
    kube.executor.close()
    kube.executor = make_executor(kube.emu)
    kube.executor.options = dataclasses.replace(
        kube.executor.options, checkpoint_claim="credits-checkpoints"
    )
    return kube_world(joined_session_factory, kube)


def _cycle(world: JobsWorld, kube: Kube) -> None:
    """A reconcile, a scheduling pass and a reconcile, then the cluster acts on them."""
    synced(kube)
    world.cycle()
    kube.emu.tick()
    synced(kube)
    world.reconcile()


def _node(world: JobsWorld, job_id: int) -> str:
    (part,) = placement_from_json(world.job(job_id).placement_json)
    return part.node


def _pod_node(kube: Kube, job_id: int, attempt: int = 1) -> str:
    (pod,) = kube.emu.job_pods(NAMESPACE, kube.name(job_id, attempt))
    return str(pod["spec"]["nodeName"])


def _fragmented(world: JobsWorld, kube: Kube, *, mover_runtime_s: int = 3600) -> tuple[str, str]:
    """Two half-full nodes, the mover's job checkpointable; then an 8-GPU job that only
    fragmentation blocks (8 GPUs free, no node whole). Returns the mover's node and the
    other one (the stayer's)."""
    emu = kube.emu
    emu.set_run_duration(NAMESPACE, kube.name(FILLER), 60)
    emu.set_run_duration(NAMESPACE, kube.name(MOVER), None)
    emu.set_sigterm_exit(NAMESPACE, kube.name(MOVER), SAVES_IN)
    emu.set_run_duration(NAMESPACE, kube.name(MOVER, 2), 1000)
    emu.set_run_duration(NAMESPACE, kube.name(STAYER), None)
    emu.set_run_duration(NAMESPACE, kube.name(BIG), 600)
    world.submit(gpus=SMALL, name="filler")
    world.submit(
        gpus=SMALL,
        name="mover",
        checkpointable=True,
        checkpoint_grace_seconds=GRACE,
        max_runtime_seconds=mover_runtime_s,
    )
    _cycle(world, kube)
    world.submit(gpus=SMALL, name="stayer")
    _cycle(world, kube)
    old_node, other_node = _node(world, MOVER), _node(world, STAYER)
    assert _node(world, FILLER) == old_node != other_node
    assert _pod_node(kube, MOVER) == old_node
    emu.advance(60)
    _cycle(world, kube)
    assert world.job(FILLER).state == JobState.SUCCEEDED.value
    world.submit(gpus=8, name="big")
    return old_node, other_node


def test_a_move_stops_the_job_with_its_grace_restarts_it_elsewhere_and_charges_what_ran(
    world: JobsWorld, kube: Kube
) -> None:
    emu = kube.emu
    mover, big = MOVER, BIG
    old_node, other_node = _fragmented(world, kube)
    first_start = world.runs(mover)[0].started_at
    assert first_start is not None

    # The pass decides the move; the reconcile asks Kubernetes to stop the job.
    _cycle(world, kube)
    stop_asked: datetime = world.clock()
    stopping = kube.job(mover)
    assert stopping is not None
    assert stopping["metadata"]["deletionTimestamp"]  # type: ignore[index]
    assert stopping["metadata"]["annotations"][STOP_REASON_ANNOTATION]  # type: ignore[index]
    pod_deletions = [
        path for method, path in emu.requests if method == "DELETE" and "/pods/" in path
    ]
    assert any(f"gracePeriodSeconds={GRACE}" in path for path in pod_deletions), pod_deletions
    assert world.job(mover).state == JobState.RUNNING.value  # saving its checkpoint
    assert world.job(big).state == JobState.QUEUED.value  # the old node is still held

    # It saves and exits: the next attempt starts on the target at once, and the big
    # job on the node it left.
    emu.advance(SAVES_IN)
    _cycle(world, kube)
    moved = world.job(mover)
    assert (moved.state, moved.attempt, moved.move_count) == (JobState.RUNNING.value, 2, 1)
    assert _node(world, mover) == other_node
    assert _pod_node(kube, mover, attempt=2) == other_node
    assert [run.outcome for run in world.runs(mover)] == ["preempted", None]
    assert world.job(big).state == JobState.RUNNING.value
    assert _pod_node(kube, big) == old_node
    second_start = world.runs(mover)[1].started_at
    assert second_start == stop_asked + timedelta(seconds=SAVES_IN)

    emu.advance(1000)
    for _ in range(3):
        _cycle(world, kube)
    done = world.job(mover)
    assert done.state == JobState.SUCCEEDED.value
    assert done.released_at is not None
    ran = (stop_asked - first_start).total_seconds() + 1000  # neither grace nor restart
    assert done.charged_micro == -(-int(SMALL * ran) * RATE // 3600)
    with world.session() as session:
        hold = get_hold(session, hold_key=done.hold_key)
        assert sum(part.remaining for part in hold.parts) == 0
        assert verify_ledger(session).ok


def test_a_move_whose_target_node_was_cordoned_queues_the_job_again_and_deletes_its_pod(
    world: JobsWorld, kube: Kube
) -> None:
    """The restart's pod, bound by required affinity to a node cordoned meanwhile, stays
    Pending (the launch itself succeeds): at the start timeout the job queues again, hold
    kept, and the pending Job is deleted so that it cannot start later."""
    emu = kube.emu
    _, other_node = _fragmented(world, kube, mover_runtime_s=7200)
    emu.set_run_duration(NAMESPACE, kube.name(MOVER, 3), None)
    _cycle(world, kube)  # the move is decided and the stop asked
    emu.cordon(other_node)
    emu.advance(SAVES_IN)
    _cycle(world, kube)
    restarting = world.job(MOVER)
    assert (restarting.state, restarting.attempt) == (JobState.STARTING.value, 2)
    (pending,) = emu.job_pods(NAMESPACE, kube.name(MOVER, 2))
    assert pending["status"]["phase"] == "Pending"

    emu.advance(3601)
    synced(kube)
    report = world.reconcile()
    emu.tick()
    synced(kube)

    assert f"{MOVER}:starting->queued" in report.transitions
    requeued = world.job(MOVER)
    assert requeued.state == JobState.QUEUED.value
    assert [run.outcome for run in world.runs(MOVER)] == ["preempted", "did not start"]
    with world.session() as session:
        hold = get_hold(session, hold_key=requeued.hold_key)
        assert sum(part.remaining for part in hold.parts) == requeued.hold_micro
    stopped = kube.job(MOVER, 2)
    assert stopped is not None
    assert stopped["metadata"]["deletionTimestamp"]  # type: ignore[index]
    reason = stopped["metadata"]["annotations"][STOP_REASON_ANNOTATION]  # type: ignore[index]
    assert reason == "did not start within 3600 s"
    assert emu.job_pods(NAMESPACE, kube.name(MOVER, 2)) == []

    # It starts again from the queue, as attempt 3.
    emu.cordon(other_node, unschedulable=False)
    _cycle(world, kube)
    rerun = world.job(MOVER)
    assert (rerun.state, rerun.attempt) == (JobState.RUNNING.value, 3)


def _restart_pending_on_cordoned_target(world: JobsWorld, kube: Kube) -> tuple[str, int]:
    """The mover (max runtime 3600 s) is moved and its target node cordoned during the
    grace: its restart, attempt 2, is launched and its pod stays Pending. Returns the
    target node and the runtime the job has left (the restart's activeDeadlineSeconds,
    counted by Kubernetes from the Job's creation)."""
    emu = kube.emu
    _, other_node = _fragmented(world, kube)
    emu.set_run_duration(NAMESPACE, kube.name(MOVER, 3), None)
    _cycle(world, kube)  # the move is decided and the stop asked
    emu.cordon(other_node)
    emu.advance(SAVES_IN)
    _cycle(world, kube)
    assert (world.job(MOVER).state, world.job(MOVER).attempt) == (JobState.STARTING.value, 2)
    (pending,) = emu.job_pods(NAMESPACE, kube.name(MOVER, 2))
    assert pending["status"]["phase"] == "Pending"
    first = world.runs(MOVER)[0]
    assert first.started_at is not None and first.stop_requested_at is not None
    left = 3600 - int((first.stop_requested_at - first.started_at).total_seconds())
    restart = kube.job(MOVER, 2)
    assert restart is not None
    assert restart["spec"]["activeDeadlineSeconds"] == left  # type: ignore[index]
    return other_node, left


def _requeued_with_hold_kept(world: JobsWorld, report: ReconcileOut, why: str) -> None:
    assert f"{MOVER}:starting->queued" in report.transitions
    requeued = world.job(MOVER)
    assert (requeued.state, requeued.attempt) == (JobState.QUEUED.value, 2)
    assert (requeued.finished_at, requeued.placement_json) == (None, None)
    runs = world.runs(MOVER)
    assert [run.outcome for run in runs] == ["preempted", "did not start"]
    assert runs[1].started_at is None
    with world.session() as session:
        hold = get_hold(session, hold_key=requeued.hold_key)
        assert sum(part.remaining for part in hold.parts) == requeued.hold_micro
        reasons = list(session.scalars(select(JobEvent.reason).where(JobEvent.job_id == MOVER)))
    assert f"could not restart on its move target ({why}); queued again, hold kept" in reasons


def test_a_move_restart_whose_deadline_passes_while_pending_queues_the_job_again(
    world: JobsWorld, kube: Kube
) -> None:
    """The restart's deadline, the runtime the job has left (less than the start
    timeout), runs out while its pod is Pending: Kubernetes fails the Job
    DeadlineExceeded. That attempt never ran, so the job does not time out: it queues
    again, hold kept, its next attempt gets the whole runtime left and the job is
    charged only what ran."""
    emu = kube.emu
    other_node, left = _restart_pending_on_cordoned_target(world, kube)
    assert left < 3600

    emu.advance(left)
    synced(kube)
    ended = kube.job(MOVER, 2)
    assert ended is not None
    assert ended["status"]["conditions"][-1]["reason"] == "DeadlineExceeded"  # type: ignore[index]
    assert emu.job_pods(NAMESPACE, kube.name(MOVER, 2)) == []
    report = world.reconcile()

    why = f"never started, ended timed_out: max runtime {left} s reached"
    _requeued_with_hold_kept(world, report, why)

    emu.cordon(other_node, unschedulable=False)
    _cycle(world, kube)
    rerun = world.job(MOVER)
    assert (rerun.state, rerun.attempt) == (JobState.RUNNING.value, 3)
    third = kube.job(MOVER, 3)
    assert third is not None
    assert third["spec"]["activeDeadlineSeconds"] == left  # type: ignore[index]
    emu.advance(left + GRACE + 60)  # its deadline, then its pod's grace (SIGTERM ignored)
    for _ in range(3):
        _cycle(world, kube)
    done = world.job(MOVER)
    assert (done.state, done.released_at is not None) == (JobState.TIMED_OUT.value, True)
    assert done.charged_micro == -(-SMALL * 3600 * RATE // 3600)  # both runs, no more
    with world.session() as session:
        hold = get_hold(session, hold_key=done.hold_key)
        assert sum(part.remaining for part in hold.parts) == 0
        assert verify_ledger(session).ok


def test_a_move_restart_deleted_outside_the_platform_before_it_started_queues_the_job_again(
    world: JobsWorld, kube: Kube
) -> None:
    """Any other end of a restart never seen started (here its pending Job deleted by
    someone) is no failure of the user's job either."""
    _restart_pending_on_cordoned_target(world, kube)
    kube.emu.delete("jobs", NAMESPACE, kube.name(MOVER, 2), propagation="Foreground")
    kube.emu.tick()
    synced(kube)

    report = world.reconcile()

    _requeued_with_hold_kept(
        world, report, "never started, ended failed: deleted outside the platform"
    )


def test_a_move_restart_that_never_started_times_out_when_the_job_has_no_runtime_left(
    world: JobsWorld, kube: Kube
) -> None:
    """Where the job's earlier runs used its whole max runtime (here its first run's
    start is put an hour back), queueing it again would be pointless: it times out."""
    emu = kube.emu
    _, left = _restart_pending_on_cordoned_target(world, kube)
    with world.session() as session:
        first = session.scalars(
            select(JobRun).where(JobRun.job_id == MOVER, JobRun.attempt == 1)
        ).one()
        assert first.started_at is not None
        first.started_at -= timedelta(seconds=3600)
        session.commit()

    emu.advance(left)
    synced(kube)
    report = world.reconcile()

    assert f"{MOVER}:starting->timed_out" in report.transitions
    job = world.job(MOVER)
    assert (job.state, job.reason) == (JobState.TIMED_OUT.value, f"max runtime {left} s reached")
