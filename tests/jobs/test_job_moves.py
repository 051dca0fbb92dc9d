"""Checkpointable jobs moved to defragment the pool, through the real scheduling pass,
reconciler and simulated executor: the stop with its grace, the restart on another
node, the job event, the charge of only what ran, and the limit on moves."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from jobs_world import JobsWorld, build_jobs_world, cost
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.cli import main
from credits.jobs.executors.base import (
    ExecutorError,
    LaunchRequest,
    NodeSlice,
    Observation,
    Phase,
)
from credits.jobs.models import Job, JobEvent, JobMove, JobRun, JobState
from credits.jobs.moves import record_move
from credits.jobs.queries import get_job_detail, pool_status
from credits.jobs.scheduler import MoveDecision
from credits.jobs.service import cancel_job
from credits.jobs.transitions import placement_from_json
from credits.ledger.queries import get_hold
from credits.ledger.verify import verify_ledger
from credits.settings import load_settings

GRACE = 90
SMALL = 4  # half a node of the world's 8-GPU nodes


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _node(world: JobsWorld, job_id: int) -> str:
    (part,) = placement_from_json(world.job(job_id).placement_json)
    return part.node


def _runs(world: JobsWorld, job_id: int) -> list[JobRun]:
    with world.session() as session:
        runs = list(
            session.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.attempt))
        )
        session.expunge_all()
        return runs


def _fragment(world: JobsWorld, *, checkpointable: bool = True) -> tuple[int, int, int]:
    """Two half-full nodes (a 4-GPU job each, the first checkpointable) and an 8-GPU job
    blocked by fragmentation alone: 8 GPUs free, no node whole. Returns (mover, stayer, big).

    A short job shares the mover's node at first and then ends, so that the two
    long jobs end up on different nodes whatever the placement's tie-breaks."""
    filler = world.submit(gpus=SMALL, duration=60, name="filler")
    extra = {"checkpointable": True, "checkpoint_grace_seconds": GRACE} if checkpointable else {}
    mover = world.submit(gpus=SMALL, duration=1000, name="mover", **extra)
    world.cycle()
    stayer = world.submit(gpus=SMALL, duration=3000, name="stayer")
    world.cycle()
    assert _node(world, filler.id) == _node(world, mover.id) != _node(world, stayer.id)
    world.clock.advance(60)
    world.cycle()
    assert world.job(filler.id).state == JobState.SUCCEEDED.value
    big = world.submit(gpus=8, duration=600, name="big")
    return mover.id, stayer.id, big.id


def test_a_move_stops_the_job_with_its_grace_and_restarts_it_on_another_node(
    world: JobsWorld,
) -> None:
    mover, stayer, big = _fragment(world)
    old_node, other_node = _node(world, mover), _node(world, stayer)

    world.reconcile()
    decided = world.schedule()
    assert decided.moved == [mover]
    assert decided.started == []
    stopped = world.reconcile()
    assert stopped.moving == [mover]

    (request,) = world.executor.stop_requests(mover)
    assert request.grace_seconds == GRACE
    assert request.attempt == 1
    moving = world.job(mover)
    assert moving.state == JobState.RUNNING.value  # saving its checkpoint, within the grace
    assert moving.move_count == 1
    assert placement_from_json(moving.move_target_json) == (NodeSlice(other_node, SMALL),)
    # Its old and new GPUs are both held: the big job cannot start on the old node yet.
    assert world.schedule().started == []
    with world.session() as session:
        (status,) = pool_status(session, world.executor.capacity(), executor="simulated").flavours
    assert (status.gpus_in_use, status.gpus_free, status.running_jobs) == (3 * SMALL, SMALL, 2)

    world.clock.advance(GRACE)
    world.cycle()
    restarted = world.job(mover)
    assert restarted.state == JobState.RUNNING.value
    assert restarted.attempt == 2
    assert _node(world, mover) == other_node
    assert [run.outcome for run in _runs(world, mover)] == ["preempted", None]
    assert world.job(big).state == JobState.RUNNING.value
    assert _node(world, big) == old_node
    assert world.executor.stop_requests(stayer) == []


def test_the_move_is_a_job_event_and_a_move_record_with_its_reason(world: JobsWorld) -> None:
    mover, stayer, big = _fragment(world)
    old_node, other_node = _node(world, mover), _node(world, stayer)
    world.cycle()
    world.clock.advance(GRACE)
    world.cycle()

    with world.session() as session:
        reasons = list(
            session.scalars(
                select(JobEvent.reason).where(JobEvent.job_id == mover).order_by(JobEvent.id)
            )
        )
        detail = get_job_detail(session, world.researcher, mover)
    announced = [reason for reason in reasons if reason and reason.startswith("move 1:")]
    assert len(announced) == 1
    assert f"for job {big}" in announced[0]
    assert f"{GRACE} s grace" in announced[0]
    assert any(reason and reason.startswith("moved:") for reason in reasons)
    assert detail.checkpointable
    assert detail.checkpoint_grace_seconds == GRACE
    assert detail.move_count == 1
    (record,) = detail.moves
    assert f"job {big}" in record.reason
    assert record.for_job_id == big
    assert [(p.node, p.gpus) for p in record.from_placement] == [(old_node, SMALL)]
    assert [(p.node, p.gpus) for p in record.to_placement] == [(other_node, SMALL)]
    assert record.from_attempt == 1
    assert record.to_attempt == 2
    assert record.stopped_at is not None


def test_a_moved_job_is_charged_what_ran_and_neither_the_grace_nor_the_restart(
    world: JobsWorld,
) -> None:
    mover, _, _ = _fragment(world)
    first_start = _runs(world, mover)[0].started_at
    assert first_start is not None
    world.cycle()  # the move is decided and the stop asked now
    stop_asked: datetime = world.clock()
    world.clock.advance(GRACE)
    world.cycle()
    second_start = _runs(world, mover)[1].started_at
    assert second_start == world.clock()
    world.clock.advance(1000)  # the restarted attempt runs its whole duration again
    world.cycle()

    done = world.job(mover)
    assert done.state == JobState.SUCCEEDED.value
    ran = (stop_asked - first_start).total_seconds() + 1000
    assert ran == 60 + 1000  # the first run ran 60 s, the grace is left out
    assert done.charged_micro == cost(int(SMALL * ran))
    with world.session() as session:
        hold = get_hold(session, hold_key=done.hold_key)
        assert sum(part.remaining for part in hold.parts) == 0
        assert verify_ledger(session).ok
    first, second = _runs(world, mover)
    assert first.stop_requested_at == stop_asked
    assert first.metered_until == stop_asked
    assert second.metered_until == second_start + timedelta(seconds=1000)


def test_a_job_that_is_not_checkpointable_is_never_stopped(world: JobsWorld) -> None:
    mover, stayer, big = _fragment(world, checkpointable=False)
    for _ in range(3):
        world.cycle()
        world.clock.advance(GRACE)
    assert world.executor.stop_requests(mover) == []
    assert world.executor.stop_requests(stayer) == []
    assert world.job(mover).move_count == 0
    assert world.job(mover).attempt == 1
    assert world.job(big).state == JobState.QUEUED.value
    with world.session() as session:
        assert session.scalars(select(JobMove)).all() == []


def test_a_job_moved_as_often_as_allowed_is_not_moved_again(world: JobsWorld) -> None:
    mover, _, big = _fragment(world)
    with world.session() as session:
        session.execute(update(Job).where(Job.id == mover).values(move_count=2))
    for _ in range(3):
        world.cycle()
        world.clock.advance(GRACE)
    assert world.executor.stop_requests(mover) == []
    assert world.job(mover).move_count == 2
    assert world.job(big).state == JobState.QUEUED.value


def test_the_database_refuses_a_move_past_the_limit_or_of_a_job_that_may_not_move(
    world: JobsWorld,
) -> None:
    mover, stayer, big = _fragment(world)
    target = (NodeSlice(_node(world, stayer), SMALL),)
    with world.session() as session:
        for job_id, max_moves in ((mover, 0), (stayer, 2)):
            job = session.get_one(Job, job_id)
            decision = MoveDecision(job_id, target, big, "test")
            assert not record_move(
                session, job, decision, max_moves=max_moves, actor="test", now=world.clock()
            )
        assert session.scalars(select(JobMove)).all() == []


def test_a_cancel_during_the_grace_ends_the_move_and_charges_until_the_stop(
    world: JobsWorld,
) -> None:
    mover, _, _ = _fragment(world)
    first_start = _runs(world, mover)[0].started_at
    world.cycle()
    stop_asked = world.clock()
    with world.session() as session:
        session.execute(
            update(Job).where(Job.id == mover).values(cancel_requested_at=world.clock())
        )
    world.clock.advance(30)
    world.cycle()
    done = world.job(mover)
    assert done.state == JobState.CANCELLED.value
    assert done.move_target_json is None
    assert done.attempt == 1
    assert first_start is not None
    assert done.charged_micro == cost(int(SMALL * (stop_asked - first_start).total_seconds()))


def test_credits_jobs_show_prints_the_moves(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    mover, stayer, _ = _fragment(world)
    old_node, other_node = _node(world, mover), _node(world, stayer)
    world.cycle()
    world.clock.advance(GRACE)
    world.cycle()

    result = CliRunner().invoke(
        main,
        ["jobs", "show", str(mover)],
        obj={
            "session_factory": joined_session_factory,
            "executor": world.executor,
            "settings": load_settings(),
        },
    )

    assert result.exit_code == 0, result.output
    assert "checkpointable, grace 1 min 30 s, moved 1 time(s)" in result.output  # GRACE, 90 s
    assert "move 1 at " in result.output
    assert f"from {old_node} ({SMALL} GPUs) to {other_node} ({SMALL} GPUs)" in result.output
    assert "restarted as attempt 2" in result.output


def test_the_job_page_shows_checkpointing_and_the_moves(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    mover, stayer, big = _fragment(world)
    old_node, other_node = _node(world, mover), _node(world, stayer)
    world.cycle()
    world.clock.advance(GRACE)
    world.cycle()
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world.executor
    )
    client = app.test_client()
    assert world.researcher.user_id is not None
    sign_in_as(client, world.researcher.user_id)

    page = client.get(f"/jobs/{mover}").get_data(as_text=True)
    plain = client.get(f"/jobs/{stayer}").get_data(as_text=True)

    assert f"stop it with a {GRACE} s grace and restart it elsewhere; moved 1 time<" in page
    moves = page.split('data-testid="job-moves"', 1)[1].split("</table>", 1)[0]
    assert f"for job {big}" in moves
    assert f"<td>{old_node} \u00d7 {SMALL}</td>" in moves
    assert f"<td>{other_node} \u00d7 {SMALL}</td>" in moves
    assert "attempt 2" in moves
    assert '<dd data-testid="job-checkpointable">no</dd>' in plain
    assert "job-moves" not in plain


def test_a_stop_that_fails_is_asked_again_and_charging_still_ends_when_it_was_first_asked(
    world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    mover, _, _ = _fragment(world)
    first_start = _runs(world, mover)[0].started_at
    assert first_start is not None
    stop = world.executor.stop
    calls: list[datetime] = []

    def flaky_stop(job_id: int, grace_seconds: int, reason: str) -> None:
        calls.append(world.clock())
        if len(calls) == 1:
            raise ExecutorError("the API server is away")
        stop(job_id, grace_seconds, reason)

    monkeypatch.setattr(world.executor, "stop", flaky_stop)
    world.reconcile()
    assert world.schedule().moved == [mover]
    first_ask = world.clock()
    assert world.reconcile().moving == []
    assert world.executor.stop_requests(mover) == []
    world.clock.advance(20)
    assert world.reconcile().moving == [mover]
    (request,) = world.executor.stop_requests(mover)
    assert request.at == first_ask + timedelta(seconds=20)
    world.clock.advance(GRACE)
    world.cycle()
    world.clock.advance(1000)
    world.cycle()

    assert calls[:2] == [first_ask, first_ask + timedelta(seconds=20)]
    assert _runs(world, mover)[0].stop_requested_at == first_ask
    done = world.job(mover)
    assert done.state == JobState.SUCCEEDED.value
    ran = (first_ask - first_start).total_seconds() + 1000
    assert done.charged_micro == cost(int(SMALL * ran))


def test_a_move_whose_target_went_away_queues_the_job_again_keeping_its_hold(
    world: JobsWorld,
) -> None:
    mover, stayer, _ = _fragment(world)
    target = _node(world, stayer)
    world.cycle()
    world.executor.fail_node(target)
    world.clock.advance(GRACE)
    report = world.reconcile()

    assert f"{mover}:running->starting" in report.transitions
    assert f"{mover}:starting->queued" in report.transitions
    requeued = world.job(mover)
    assert requeued.state == JobState.QUEUED.value
    assert requeued.placement_json is None
    assert [run.outcome for run in _runs(world, mover)] == ["preempted", "not launched"]
    with world.session() as session:
        hold = get_hold(session, hold_key=requeued.hold_key)
        assert sum(part.remaining for part in hold.parts) == requeued.hold_micro
        reasons = session.scalars(select(JobEvent.reason).where(JobEvent.job_id == mover))
        assert any("could not restart on its move target" in (r or "") for r in reasons)


def test_the_scheduler_expects_a_restarted_job_to_end_when_its_runtime_left_runs_out(
    world: JobsWorld,
) -> None:
    """A job preempted after 3000 s of its 3600 restarts 1000 s later with 600 s left:
    it holds its node until then, so the blocked 8-GPU job is reserved the other node
    (free sooner), and no long job may backfill there."""
    restarted = world.submit(gpus=8, max_runtime_seconds=3600, duration=5000, name="restarted")
    world.cycle()
    world.clock.advance(3000)
    world.executor.preempt(restarted.id)
    world.reconcile()
    world.clock.advance(1000)
    short = world.submit(gpus=SMALL, max_runtime_seconds=300, duration=300, name="short")
    world.cycle()
    assert world.job(restarted.id).attempt == 2
    assert world.job(short.id).state == JobState.RUNNING.value

    world.submit(gpus=8, max_runtime_seconds=600, duration=600, name="big")
    long = world.submit(gpus=SMALL, max_runtime_seconds=5 * 3600, duration=600, name="long")

    assert world.schedule().started == []
    assert world.job(long.id).state == JobState.QUEUED.value


def test_a_move_restart_that_never_starts_queues_the_job_again_keeping_its_hold(
    world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor accepts the restart but never runs it (on Kubernetes: a pod bound
    to a target node that went away stays Pending): at the start timeout the job
    queues again, hold kept, and the attempt is stopped so that it cannot start later."""
    mover, _, _ = _fragment(world)
    launch, stop = world.executor.launch, world.executor.stop
    accepted: list[int] = []
    stops: list[tuple[int, int, str]] = []

    def accept_and_never_start(request: LaunchRequest) -> None:
        if request.job_id == mover and request.attempt == 2:
            accepted.append(request.attempt)
            return
        launch(request)

    def recording_stop(job_id: int, grace_seconds: int, reason: str) -> None:
        stops.append((job_id, grace_seconds, reason))
        stop(job_id, grace_seconds, reason)

    monkeypatch.setattr(world.executor, "launch", accept_and_never_start)
    monkeypatch.setattr(world.executor, "stop", recording_stop)
    world.cycle()
    world.clock.advance(GRACE)
    world.reconcile()
    assert accepted == [2]
    assert world.job(mover).state == JobState.STARTING.value
    stops.clear()

    world.clock.advance(3601)
    report = world.reconcile()

    assert f"{mover}:starting->queued" in report.transitions
    requeued = world.job(mover)
    assert (requeued.state, requeued.attempt) == (JobState.QUEUED.value, 2)
    assert requeued.placement_json is None
    assert [run.outcome for run in _runs(world, mover)] == ["preempted", "did not start"]
    assert stops == [(mover, 0, "did not start within 3600 s")]
    with world.session() as session:
        hold = get_hold(session, hold_key=requeued.hold_key)
        assert sum(part.remaining for part in hold.parts) == requeued.hold_micro
        reasons = list(session.scalars(select(JobEvent.reason).where(JobEvent.job_id == mover)))
    assert any(
        "could not restart on its move target (did not start within 3600 s)" in (r or "")
        for r in reasons
    )


def test_a_move_restart_cancelled_while_it_never_starts_ends_cancelled_not_queued(
    world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its restart hangs (on Kubernetes a Pending pod being deleted still
    holds its GPUs, so the cancel is not seen done): at the start timeout the job must
    end cancelled, its hold voided, not queue again where nothing would start or settle it."""
    mover, _, _ = _fragment(world)
    launch = world.executor.launch

    def accept_and_never_start(request: LaunchRequest) -> None:
        if request.job_id == mover and request.attempt == 2:
            return
        launch(request)

    observe = world.executor.observe

    def pending_restart(job_ids: Collection[int]) -> dict[int, Observation]:
        seen = observe(job_ids)
        if mover in job_ids:
            seen[mover] = Observation(job_id=mover, attempt=2, phase=Phase.PENDING)
        return seen

    monkeypatch.setattr(world.executor, "launch", accept_and_never_start)
    world.cycle()
    world.clock.advance(GRACE)
    world.reconcile()
    assert world.job(mover).state == JobState.STARTING.value
    monkeypatch.setattr(world.executor, "observe", pending_restart)
    with world.session() as session:
        cancel_job(session, job_id=mover, actor=world.researcher, now=world.clock())
    world.reconcile()
    assert world.job(mover).state == JobState.STARTING.value  # its pod still Pending

    world.clock.advance(3601)
    report = world.reconcile()
    world.reconcile()

    assert f"{mover}:starting->cancelled" in report.transitions
    done = world.job(mover)
    assert done.state == JobState.CANCELLED.value
    with world.session() as session:
        hold = get_hold(session, hold_key=done.hold_key)
        assert sum(part.remaining for part in hold.parts) == 0
        assert verify_ledger(session).ok
