"""Replay a GPU-cluster trace through the real :func:`credits.jobs.scheduler.plan`.

An event-driven simulation: the events are submissions (from the trace) and
finishes (from ``SimulatedExecutor``, which also checks that no placement
over-commits a node). Events at the same second are coalesced, and a pass runs
only when something changed and the queue is not empty. The pool is one
flavour of ``--gpus`` GPUs on nodes of ``--gpus-per-node``.

Trace to jobs (see ``/work/shared/traces/README.md`` and :mod:`replay_trace`):

- Jobs with an empty duration (never started) are skipped, as are jobs larger
  than the whole pool.
- The trace has no limit. A job's declared walltime is its duration rounded up
  to a bucket (1, 2, 4, 8, 12, 24, 48, 72 h, 7 d, then the next multiple of
  7 d), times a seeded log-uniform factor in ``--overdeclare LO,HI`` (users
  over-declare; ``1,1``, the default, declares the bucket). The scheduler sees
  only that, never the duration, and the executor enforces it as the job's
  limit (with LO < 1 some jobs are killed at it).
- A job with more GPUs than a node is a gang; a count that is not a multiple of
  the node size is rounded up to one (the count is printed on stderr; none for
  the ITP trace with 8-GPU nodes).
- A seeded ``--checkpointable`` share of the jobs is checkpointable (default
  0.5: the flag is opt-in and the trace does not say which jobs could
  checkpoint, so neither "all" nor "none"; the policy moves only the
  single-node ones).
- The project is ``vc`` (ITP's source cluster), or with ``--projects N`` a
  seeded random one of N. Entitlement is the project's share (``--shares
  1,1,2``; equal by default). Usage is the GPU-seconds a project has held,
  decayed with ``--half-life-h``.

Moves (``Plan.moves``): on the platform a moved job holds its old slices and
its target until its old run has stopped within its grace. Here the old run
stops at once (its GPUs free that second, and a new pass runs at the same
second) and the job restarts on its target with the work it had left plus
``--restart-cost`` seconds, in which it holds the GPUs and does nothing: the
cost stands for the grace, the restore and any progress lost since its last
checkpoint. As on the platform (``credits.jobs.launching.runtime_left_s``),
the new attempt's limit is the walltime its earlier runs did not use, so the
restart eats into it: a moved job whose limit was tight can be killed at it
(``moved_killed``; ``--move-allowance S`` gives a moved job S seconds back,
to see what that would change). ``moved_gpu_h_lost`` is the GPUs times the
restart seconds actually spent, plus the work left undone by moved jobs
killed at their limit that would have finished unmoved
(``moved_killed_gpu_h``); ``moved_share`` is that over the GPU-hours of work
delivered.

Figures (see :mod:`replay_metrics`): waits are first start minus submit, JCT
is finish minus submit, utilisation is the work delivered (GPU-seconds, not
counting restarts) over pool GPUs times the makespan (first submit to last
finish). ``cpu_s`` is this process's CPU time for the replay (on a shared
machine ``wall_s`` also counts other work), ``pass_s`` the wall time inside
``plan()``.

The fair-share gap measures how far the GPU time delivered strays from a fair
split of it, per ``--window-h`` window (6 h by default). In window ``W``,
``T`` is the GPU-seconds all jobs ran inside ``W`` (jobs cut at its edges); a
project has demand if it had a job queued or running in ``W``; its delivery
``d_p`` is its GPU-seconds run in ``W`` and its want ``c_p = d_p + q_p``,
where ``q_p`` is the GPU-seconds its jobs spent queued in ``W`` (GPUs times
time waiting). The fair split ``t_p`` shares ``T`` among the projects with
demand in proportion to their entitlements, except that no project is given
more than its want (weighted max-min, water-filling: what a capped project
cannot use goes to the others, again by entitlement). The gap of ``W`` is
``max_p |d_p - t_p| / T``. When nobody waits, ``t_p = d_p`` and the gap is 0
by construction, so ``gap_mean`` and ``gap_p95`` are over the windows where
some job waited; ``gap_all_mean`` (round 1's ``max_share_gap``) averages every
window with ``T > 0``.

Policies: ``--policy`` (ordering) and ``--backfill`` as in round 1, and
``--variant`` for round 2's switches (``all`` runs every one but ``default``
and prints a Markdown table at the end): ``round1`` (no end-time fit, no
defragmentation, one runtime class), ``endfit`` (+ end-time-aware best fit),
``defrag`` (+ moves), ``classes`` (+ runtime classes with aging, at the
tiered bounds 1 h, 4 h, 24 h), ``pack`` (``defrag`` + packing jobs by whether
they may move), and ``default`` (``Policy()``'s own defaults).

    .venv/bin/python scripts/bench/replay.py
    .venv/bin/python scripts/bench/replay.py --policy fairshare --backfill on --limit 5000
    .venv/bin/python scripts/bench/replay.py --policy fairshare --backfill on \\
        --variant all --overdeclare 1,8
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replay_metrics import (
    TABLE_HEADER,
    Figures,
    Outcome,
    figures,
    pool_state,
    share_gap,
    size_label,
    table_row,
    waits_by_size,
    waits_by_state,
)
from replay_trace import HOUR, TraceJob, load, parse_fraction, parse_range

from credits.jobs.executors.base import LaunchRequest, NodeCapacity, NodeSlice
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.job_queue import JobQueue
from credits.jobs.runtime_classes import TIERED_CLASS_BOUNDS_S
from credits.jobs.scheduler import (
    MoveDecision,
    Node,
    Policy,
    ProjectShare,
    QueuedJob,
    RunningJob,
    RunningSet,
    StartDecision,
    UsageDecay,
    plan,
)

DEFAULT_TRACE = Path(__file__).resolve().parents[3] / "shared/traces/itp_msr2021_days00-27.csv"
FLAVOUR = "trace-gpu"
# Trace times start at 0; plan() wants epoch seconds, and the executor datetimes.
EPOCH = 1_700_000_000.0
# Passes at one second while moves keep coming; the policy bounds moves, this bounds a bug.
MAX_PASSES_PER_SECOND = 16

# Round 2's policy switches on top of --policy/--backfill; "default" takes Policy()'s.
# No class bounds put every job in one runtime class: fair share alone.
VARIANTS: dict[str, dict[str, Any]] = {
    "round1": {
        "end_time_fit": False,
        "defragment": False,
        "pack_by_movability": False,
        "class_bounds_s": (),
    },
    "endfit": {
        "end_time_fit": True,
        "defragment": False,
        "pack_by_movability": False,
        "class_bounds_s": (),
    },
    "defrag": {"end_time_fit": True, "defragment": True, "class_bounds_s": ()},
    "classes": {"end_time_fit": True, "defragment": True, "class_bounds_s": TIERED_CLASS_BOUNDS_S},
    "pack": {
        "end_time_fit": True,
        "defragment": True,
        "pack_by_movability": True,
        "class_bounds_s": (),
    },
    "default": {},
}


@dataclass(slots=True)
class _Attempt:
    """The replay's view of a running job's current attempt."""

    job: TraceJob
    started_s: float
    work_left_s: float  # true work left when this attempt started
    limit_left_s: float  # walltime left when this attempt started, restart not counted
    restart_s: float  # restart seconds at the head of this attempt
    attempt: int = 1
    moves: int = 0


class Replay:
    """One simulated pool driven by the scheduler over the trace."""

    def __init__(
        self,
        args: argparse.Namespace,
        entitlement: dict[int, float],
        policy: Policy,
    ) -> None:
        count = args.gpus // args.gpus_per_node
        self.nodes = [Node(f"n{i:04d}", FLAVOUR, args.gpus_per_node) for i in range(count)]
        self.now = 0.0
        self.executor = SimulatedExecutor(
            [NodeCapacity(n.name, n.flavour, n.gpus) for n in self.nodes], clock=self._clock
        )
        self.policy = policy
        self.restart_cost_s = args.restart_cost
        self.move_allowance_s = args.move_allowance
        self.entitlement = entitlement
        self.half_life_s = args.half_life_h * HOUR
        self.usage = {p: UsageDecay(self.half_life_s) for p in entitlement}
        self.held = dict.fromkeys(entitlement, 0)
        self.accrued_to = dict.fromkeys(entitlement, 0.0)
        # Kept between passes, as the platform keeps it: plan() then sorts nothing.
        self.queue = JobQueue(class_bounds_s=policy.class_bounds_s)
        self.running: dict[int, RunningJob] = {}
        # The same jobs, kept for plan(): it copies the nodes' state instead of rebuilding it.
        self.kept_running = RunningSet()
        self.attempts: dict[int, _Attempt] = {}
        self.outcome = Outcome()
        # Free GPUs per node and queued jobs per GPU count: enough to tell a pass
        # that cannot start anything (see _may_act).
        self.gpus_per_node = args.gpus_per_node
        self.free = {node.name: node.gpus for node in self.nodes}
        self.queued_sizes: dict[int, int] = {}
        # With --by-size: the queued jobs per (size, pool state) since observed_at.
        self.by_state = args.by_size
        self.observed_at = 0.0
        self.waiting: dict[tuple[str, str], int] = {}

    def _clock(self) -> datetime:
        return datetime.fromtimestamp(EPOCH + self.now, UTC)

    def run(self, jobs: list[TraceJob]) -> Outcome:
        by_id = {job.job_id: job for job in jobs}
        for at, arrivals in self._events(jobs):
            self.now = at
            changed = self._finish() | bool(arrivals)
            for job in arrivals:
                self.queue.add(
                    QueuedJob(
                        job.job_id,
                        job.project_id,
                        FLAVOUR,
                        job.gpus,
                        job.limit_s,
                        EPOCH + at,
                        checkpointable=job.checkpointable,
                    )
                )
                self.queued_sizes[job.gpus] = self.queued_sizes.get(job.gpus, 0) + 1
            passes = 0
            while changed and self._may_act() and passes < MAX_PASSES_PER_SECOND:
                # A move frees the mover's old GPUs at once here, so pass again this second.
                changed = self._pass(by_id)
                passes += 1
            if self.by_state:
                self._observe()
        return self.outcome

    def _observe(self) -> None:
        """Books the queued job-seconds since the last event by pool state; takes the new state.

        Between events neither the queue nor the nodes change, so the state
        taken after an event's passes holds until the next event.
        """
        booked = self.outcome.waiting_by_state
        elapsed = self.now - self.observed_at
        for key, count in self.waiting.items():
            booked[key] = booked.get(key, 0.0) + count * elapsed
        self.observed_at = self.now
        free = list(self.free.values())
        self.waiting = {}
        for gpus, count in self.queued_sizes.items():
            if count:
                state = pool_state(gpus, free, self.gpus_per_node)
                key = (size_label(gpus, self.gpus_per_node), state)
                self.waiting[key] = self.waiting.get(key, 0) + count

    def _events(self, jobs: list[TraceJob]) -> Iterator[tuple[float, list[TraceJob]]]:
        """Each second at which something happens, with the jobs submitted then."""
        index = 0
        while True:
            finish = self.executor.next_event_at()
            upcoming = [finish.timestamp() - EPOCH] if finish is not None else []
            if index < len(jobs):
                upcoming.append(jobs[index].submit_s)
            if not upcoming:
                return
            at = min(upcoming)
            arrivals = []
            while index < len(jobs) and jobs[index].submit_s <= at:
                arrivals.append(jobs[index])
                index += 1
            yield at, arrivals

    def _may_act(self) -> bool:
        """Whether a pass could start or move anything.

        Without defragmentation a pass only starts jobs, and none starts when no
        queued job fits a node's free GPUs (or, a gang, the whole free nodes):
        skipping that pass gives the same replay, faster. With it, a pass may
        move jobs into free GPUs, so it always runs.
        """
        if not self.queue:
            return False
        if self.policy.defragment:
            return True
        free = list(self.free.values())
        most, whole = max(free), free.count(self.gpus_per_node)
        gpn = self.gpus_per_node
        return any(
            count and (gpus <= most if gpus <= gpn else gpus // gpn <= whole)
            for gpus, count in self.queued_sizes.items()
        )

    def _take(self, placement: tuple[NodeSlice, ...], sign: int) -> None:
        for part in placement:
            self.free[part.node] -= sign * part.gpus

    def _finish(self) -> bool:
        finished = self.executor.pop_finished()
        for seen in finished:
            job = self.running.pop(seen.job_id)
            self.kept_running.discard(seen.job_id)
            self._take(job.placement, -1)
            self._end_attempt(self.attempts.pop(seen.job_id), job.gpus, finished=True)
            self._hold(job.project_id, -job.gpus)
            self.outcome.finishes[seen.job_id] = self.now
        return bool(finished)

    def _hold(self, project: int, gpus: int) -> None:
        self._accrue(project)
        self.held[project] += gpus

    def _accrue(self, project: int) -> None:
        self.usage[project].accrue(self.held[project], self.accrued_to[project], self.now)
        self.accrued_to[project] = self.now

    def _shares(self) -> dict[int, ProjectShare]:
        for project in self.usage:
            self._accrue(project)
        return {
            p: ProjectShare(p, self.entitlement[p], self.usage[p].value_at(self.now))
            for p in self.entitlement
        }

    def _pass(self, by_id: Mapping[int, TraceJob]) -> bool:
        """One scheduling pass, carried out; whether it moved any job."""
        shares = self._shares()
        began = time.perf_counter()
        result = plan(
            self.queue,
            self.kept_running,
            self.nodes,
            shares,
            EPOCH + self.now,
            self.policy,
        )
        self.outcome.pass_ms.append((time.perf_counter() - began) * 1000)
        # Moves first: their targets are GPUs the plan kept out of this pass's starts.
        for move in result.moves:
            self._move(move)
        for start in result.starts:
            self._start(start, by_id[start.job_id])
        return bool(result.moves)

    def _start(self, start: StartDecision, trace_job: TraceJob) -> None:
        self.queue.discard(start.job_id)
        self.queued_sizes[trace_job.gpus] -= 1
        attempt = _Attempt(
            trace_job,
            self.now,
            work_left_s=trace_job.duration_s,
            limit_left_s=float(trace_job.limit_s),
            restart_s=0.0,
        )
        self._launch(attempt, start.placement)
        self._hold(trace_job.project_id, trace_job.gpus)
        self.outcome.starts[trace_job.job_id] = self.now

    def _move(self, move: MoveDecision) -> None:
        """Stops the job now and restarts it on its target with what it had left."""
        old = self.attempts[move.job_id]
        running = self.running[move.job_id]
        self.executor.preempt(move.job_id, f"moved for job {move.for_job_id}")
        self._take(running.placement, -1)
        worked = self._end_attempt(old, running.gpus, finished=False)
        self.outcome.moves += 1
        self.outcome.moved_jobs.add(move.job_id)
        attempt = _Attempt(
            old.job,
            self.now,
            work_left_s=old.work_left_s - worked,
            # As the platform does: the whole run, restart included, used the walltime
            # (less any allowance a moved job is given back).
            limit_left_s=old.limit_left_s - (self.now - old.started_s) + self.move_allowance_s,
            restart_s=self.restart_cost_s,
            attempt=old.attempt + 1,
            moves=old.moves + 1,
        )
        self._launch(attempt, move.target)

    def _launch(self, attempt: _Attempt, placement: tuple[NodeSlice, ...]) -> None:
        job = attempt.job
        limit = max(1, math.ceil(attempt.limit_left_s))
        self.executor.set_duration(job.job_id, attempt.work_left_s + attempt.restart_s)
        self.executor.launch(_request(job, attempt.attempt, limit, placement))
        self.attempts[job.job_id] = attempt
        self._take(placement, 1)
        # As the platform reports a later attempt: its start less the walltime used before.
        used = job.limit_s - attempt.limit_left_s
        self.running[job.job_id] = running = RunningJob(
            job.job_id,
            job.project_id,
            FLAVOUR,
            placement,
            EPOCH + self.now - used,
            job.limit_s,
            checkpointable=job.checkpointable,
            moves=attempt.moves,
        )
        self.kept_running.add(running)

    def _end_attempt(self, attempt: _Attempt, gpus: int, *, finished: bool) -> float:
        """Books the attempt's work and restart; returns the seconds of work it did."""
        ran = self.now - attempt.started_s
        restarted = min(ran, attempt.restart_s)
        worked = min(ran - restarted, attempt.work_left_s)
        self.outcome.work_gpu_s += gpus * worked
        self.outcome.moved_gpu_s_lost += gpus * restarted
        undone = attempt.work_left_s - worked
        job = attempt.job
        if finished and attempt.moves and undone > 0 and job.duration_s <= job.limit_s:
            # Killed at its limit only because restarts used its walltime.
            self.outcome.moved_killed += 1
            self.outcome.moved_killed_gpu_s += gpus * undone
        return worked


def _request(
    job: TraceJob, attempt: int, limit_s: int, placement: tuple[NodeSlice, ...]
) -> LaunchRequest:
    return LaunchRequest(
        job_id=job.job_id,
        attempt=attempt,
        project_id=job.project_id,
        name=f"trace-{job.job_id}",
        image="trace",
        command=(),
        args=(),
        env={},
        working_dir=None,
        flavour=FLAVOUR,
        node_label_value=FLAVOUR,
        gpus=job.gpus,
        cpu_millicores=0,
        memory_mb=0,
        max_runtime_seconds=limit_s,
        placement=placement,
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--trace", default=str(DEFAULT_TRACE))
    parser.add_argument("--gpus", type=int, default=1400)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument(
        "--policy",
        choices=("fifo", "fairshare", "shortest", "all"),
        default="all",
        help="all: fifo and fairshare; shortest: declared runtime first, for comparison",
    )
    parser.add_argument("--backfill", choices=("on", "off", "both"), default="both")
    parser.add_argument(
        "--variant",
        default="default",
        help=f"comma-separated, of {', '.join(VARIANTS)}; or all (every one but default)",
    )
    parser.add_argument("--limit", type=int, default=0, help="replay only the first N jobs")
    parser.add_argument("--projects", type=int, default=0, help="N random projects, not vc")
    parser.add_argument("--shares", default="", help="entitlements per project, e.g. 1,1,2")
    parser.add_argument("--half-life-h", type=float, default=168.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window-h", type=float, default=6.0, help="fair-share gap window")
    parser.add_argument(
        "--overdeclare",
        type=parse_range,
        default=(1.0, 1.0),
        metavar="LO,HI",
        help="declared walltime = bucket x a log-uniform factor in [LO, HI]",
    )
    parser.add_argument(
        "--exact-walltime",
        action="store_true",
        help="declare each job's true duration (an oracle, for comparison; ignores --overdeclare)",
    )
    parser.add_argument(
        "--restart-cost", type=float, default=300.0, help="seconds a moved job loses"
    )
    parser.add_argument(
        "--checkpointable",
        type=parse_fraction,
        default=0.5,
        metavar="FRACTION",
        help="seeded share of jobs that are checkpointable",
    )
    parser.add_argument("--max-moves", type=int, default=2, help="Policy.max_moves")
    parser.add_argument(
        "--by-size",
        action="store_true",
        help="also print waits per GPU count, and by the pool's state while they waited",
    )
    parser.add_argument(
        "--move-allowance",
        type=float,
        default=0.0,
        help="seconds of walltime a moved job is given back (0: as the platform does)",
    )
    args = parser.parse_args()
    names = list(VARIANTS)[:-1] if args.variant == "all" else args.variant.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown --variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    args.variants = names
    return args


def _header(args: argparse.Namespace, jobs: list[TraceJob], entitlement: dict[int, float]) -> str:
    lo, hi = args.overdeclare
    checkpointable = sum(job.checkpointable for job in jobs)
    shares = args.shares or "equal"
    return (
        f"trace={Path(args.trace).name} jobs={len(jobs)} "
        f"nodes={args.gpus // args.gpus_per_node}x{args.gpus_per_node} "
        f"projects={len(entitlement)} ({'vc' if not args.projects else 'random'}) "
        f"shares={shares} overdeclare={'exact' if args.exact_walltime else f'{lo:g},{hi:g}'} "
        f"restart_cost_s={args.restart_cost:g} "
        f"checkpointable={args.checkpointable:g} ({checkpointable} jobs) "
        f"max_moves={args.max_moves} move_allowance_s={args.move_allowance:g} "
        f"window_h={args.window_h:g} seed={args.seed}"
    )


def replay_one(  # noqa: PLR0917 - private to main(): one row of the table
    args: argparse.Namespace,
    jobs: list[TraceJob],
    entitlement: dict[int, float],
    ordering: str,
    backfill: bool,
    variant: str,
) -> Figures:
    """One replay of ``jobs`` under one policy, measured."""
    began, began_cpu = time.perf_counter(), time.process_time()
    policy = Policy(
        ordering=ordering,  # type: ignore[arg-type]
        backfill=backfill,
        max_moves=args.max_moves,
        restart_cost_s=args.restart_cost,
        **VARIANTS[variant],
    )
    outcome = Replay(args, entitlement, policy).run(jobs)
    if args.by_size:
        print(f"  waits by size: {waits_by_size(jobs, outcome)}")
        by_state = waits_by_state(jobs, outcome)
        print(f"  wait s per job by pool state (share of all waits): {by_state}")
    return figures(
        f"policy={ordering} backfill={'on' if backfill else 'off'} {variant}",
        jobs,
        outcome,
        gpus=args.gpus,
        gap=share_gap(jobs, outcome, entitlement, args.window_h * HOUR),
        wall_s=time.perf_counter() - began,
        cpu_s=time.process_time() - began_cpu,
    )


def main() -> None:
    args = _arguments()
    jobs, entitlement = load(args)
    print(_header(args, jobs, entitlement), flush=True)
    orderings = ("fifo", "fairshare") if args.policy == "all" else (args.policy,)
    backfills = (True, False) if args.backfill == "both" else (args.backfill == "on",)
    rows: list[Figures] = []
    for ordering in orderings:
        for backfill in backfills:
            for variant in args.variants:
                rows.append(replay_one(args, jobs, entitlement, ordering, backfill, variant))
                print(rows[-1].line(), flush=True)
    if len(rows) > 1:
        print("\n" + TABLE_HEADER)
        for row in rows:
            print(table_row(row))


if __name__ == "__main__":
    main()
