"""Replay a GPU-cluster trace through the real :func:`credits.jobs.scheduler.plan`.

An event-driven simulation: the events are submissions (from the trace) and
finishes (from ``SimulatedExecutor``, which also checks that no placement
over-commits a node). Events at the same second are coalesced, and a pass runs
only when something changed and the queue is not empty. The pool is one
flavour of ``--gpus`` GPUs on nodes of ``--gpus-per-node``.

Trace to jobs (see ``/work/shared/traces/README.md``):

- Jobs with an empty duration (never started) are skipped, as are jobs larger
  than the whole pool.
- Max runtime is the duration rounded up to a walltime bucket (1, 2, 4, 8, 12,
  24, 48, 72 h, 7 d, then the next multiple of 7 d): the trace has no limit.
- A job with more GPUs than a node is a gang; a count that is not a multiple of
  the node size is rounded up to one (the count is printed on stderr; none for
  the ITP trace with 8-GPU nodes).
- The project is ``vc`` (ITP's source cluster), or with ``--projects N`` a
  seeded random one of N. Entitlement is the project's share (``--shares
  1,1,2``; equal by default). Usage is the GPU-seconds a project has held,
  decayed with ``--half-life-h``.

Figures, per (policy, backfill): waits are start minus submit, JCT is finish
minus submit, utilisation is delivered GPU-seconds over pool GPUs times the
makespan (first submit to last finish).

``max_share_gap`` is how far the GPU time delivered strays from a fair split
of it, per ``--window-h`` window (6 h by default), averaged over windows. In
window ``W``, ``T`` is the GPU-seconds all jobs ran inside ``W`` (jobs cut at
its edges); a project has demand if it had a job queued or running in ``W``;
its delivery ``d_p`` is its GPU-seconds run in ``W`` and its want ``c_p =
d_p + q_p``, where ``q_p`` is the GPU-seconds its jobs spent queued in ``W``
(GPUs times time waiting). The fair split ``t_p`` shares ``T`` among the
projects with demand in proportion to their entitlements, except that no
project is given more than its want (weighted max-min, water-filling: what a
capped project cannot use goes to the others, again by entitlement). The gap
of ``W`` is ``max_p |d_p - t_p| / T``, and ``max_share_gap`` its mean over the
windows with ``T > 0``. When every project with demand wants more than its
share, ``t_p / T`` is just its entitlement renormalised over them; when
nobody waits, ``t_p = d_p`` and the gap is 0, so queueing order is what moves
it: the same trace gives different figures for FIFO and fair share.

    .venv/bin/python scripts/bench/replay.py
    .venv/bin/python scripts/bench/replay.py --policy fairshare --backfill on --limit 5000
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from credits.jobs.executors.base import LaunchRequest, NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.scheduler import (
    Node,
    Policy,
    ProjectShare,
    QueuedJob,
    RunningJob,
    StartDecision,
    UsageDecay,
    plan,
)

DEFAULT_TRACE = Path(__file__).resolve().parents[3] / "shared/traces/itp_msr2021_days00-27.csv"
FLAVOUR = "trace-gpu"
HOUR = 3600
WEEK = 7 * 24 * HOUR
BUCKETS_S = tuple(h * HOUR for h in (1, 2, 4, 8, 12, 24, 48, 72, 168))
# Trace times start at 0; plan() wants epoch seconds, and the executor datetimes.
EPOCH = 1_700_000_000.0


@dataclass(frozen=True, slots=True)
class TraceJob:
    job_id: int
    project_id: int
    submit_s: float
    gpus: int
    duration_s: float


@dataclass(slots=True)
class Outcome:
    """What one (policy, backfill) replay measured."""

    starts: dict[int, float] = field(default_factory=dict)
    finishes: dict[int, float] = field(default_factory=dict)
    pass_ms: list[float] = field(default_factory=list)


def walltime(duration_s: float) -> int:
    """The smallest walltime bucket that holds the duration."""
    for bucket in BUCKETS_S:
        if duration_s <= bucket:
            return bucket
    return math.ceil(duration_s / WEEK) * WEEK


def load(args: argparse.Namespace) -> tuple[list[TraceJob], dict[int, float]]:
    """The trace's jobs, in submission order, and each project's entitlement."""
    rng = random.Random(args.seed)
    jobs: list[TraceJob] = []
    projects: dict[str, int] = {}
    rounded = 0
    with Path(args.trace).open(newline="") as handle:
        for row in csv.DictReader(handle):
            if not row["duration_s"] or int(row["gpus"]) < 1:
                continue
            gpus = int(row["gpus"])
            if gpus > args.gpus_per_node and gpus % args.gpus_per_node:
                gpus = math.ceil(gpus / args.gpus_per_node) * args.gpus_per_node
                rounded += 1
            if gpus > args.gpus:
                continue
            if args.projects:
                project = rng.randrange(args.projects)
            else:
                project = projects.setdefault(row["vc"], len(projects))
            jobs.append(
                TraceJob(
                    len(jobs) + 1,
                    project,
                    float(row["submit_time_s"]),
                    gpus,
                    float(row["duration_s"]),
                )
            )
            if args.limit and len(jobs) >= args.limit:
                break
    if rounded:
        print(f"rounded {rounded} gang jobs up to whole nodes", file=sys.stderr)
    count = args.projects or len(projects)
    weights = [float(w) for w in args.shares.split(",")] if args.shares else [1.0] * count
    if len(weights) != count:
        raise SystemExit(f"error: --shares has {len(weights)} values for {count} projects")
    return jobs, dict(enumerate(weights))


class Replay:
    """One simulated pool driven by the scheduler over the trace."""

    def __init__(
        self, args: argparse.Namespace, entitlement: dict[int, float], policy: Policy
    ) -> None:
        count = args.gpus // args.gpus_per_node
        self.nodes = [Node(f"n{i:04d}", FLAVOUR, args.gpus_per_node) for i in range(count)]
        self.now = 0.0
        self.executor = SimulatedExecutor(
            [NodeCapacity(n.name, n.flavour, n.gpus) for n in self.nodes], clock=self._clock
        )
        self.policy = policy
        self.entitlement = entitlement
        self.half_life_s = args.half_life_h * HOUR
        self.usage = {p: UsageDecay(self.half_life_s) for p in entitlement}
        self.held = dict.fromkeys(entitlement, 0)
        self.accrued_to = dict.fromkeys(entitlement, 0.0)
        self.queue: dict[int, QueuedJob] = {}
        self.running: dict[int, RunningJob] = {}
        self.outcome = Outcome()

    def _clock(self) -> datetime:
        return datetime.fromtimestamp(EPOCH + self.now, UTC)

    def run(self, jobs: list[TraceJob]) -> Outcome:
        durations = {job.job_id: job.duration_s for job in jobs}
        for at, arrivals in self._events(jobs):
            self.now = at
            changed = self._finish() | bool(arrivals)
            for job in arrivals:
                self.queue[job.job_id] = QueuedJob(
                    job.job_id,
                    job.project_id,
                    FLAVOUR,
                    job.gpus,
                    walltime(job.duration_s),
                    EPOCH + at,
                )
            if changed and self.queue:
                self._pass(durations)
        return self.outcome

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

    def _finish(self) -> bool:
        finished = self.executor.pop_finished()
        for seen in finished:
            job = self.running.pop(seen.job_id)
            self._hold(job.project_id, -sum(part.gpus for part in job.placement))
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

    def _pass(self, durations: dict[int, float]) -> None:
        shares = self._shares()
        began = time.perf_counter()
        result = plan(
            list(self.queue.values()),
            list(self.running.values()),
            self.nodes,
            shares,
            EPOCH + self.now,
            self.policy,
        )
        self.outcome.pass_ms.append((time.perf_counter() - began) * 1000)
        for start in result.starts:
            self._start(start, durations[start.job_id])

    def _start(self, start: StartDecision, duration_s: float) -> None:
        job = self.queue.pop(start.job_id)
        self.executor.set_duration(job.job_id, duration_s)
        self.executor.launch(_request(job, start))
        self.running[job.job_id] = RunningJob(
            job.job_id,
            job.project_id,
            FLAVOUR,
            start.placement,
            EPOCH + self.now,
            job.max_runtime_s,
        )
        self._hold(job.project_id, job.gpus)
        self.outcome.starts[job.job_id] = self.now


def _request(job: QueuedJob, start: StartDecision) -> LaunchRequest:
    return LaunchRequest(
        job_id=job.job_id,
        attempt=1,
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
        max_runtime_seconds=job.max_runtime_s,
        placement=start.placement,
    )


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def share_gap(
    jobs: list[TraceJob], outcome: Outcome, entitlement: dict[int, float], window_s: float
) -> float:
    """``max_share_gap``, as the module docstring defines it."""
    delivered: dict[int, dict[int, float]] = {}
    queued: dict[int, dict[int, float]] = {}
    for job in jobs:
        start, finish = outcome.starts[job.job_id], outcome.finishes[job.job_id]
        _spread(queued, job.project_id, job.gpus, begin=job.submit_s, end=start, window_s=window_s)
        _spread(delivered, job.project_id, job.gpus, begin=start, end=finish, window_s=window_s)
    gaps = []
    for window in sorted(set(delivered) | set(queued)):
        ran = delivered.get(window, {})
        total = math.fsum(ran.values())
        if total <= 0:
            continue
        waited = queued.get(window, {})
        want = {p: ran.get(p, 0.0) + waited.get(p, 0.0) for p in sorted(set(ran) | set(waited))}
        fair = water_fill(total, want, entitlement)
        gaps.append(max(abs(ran.get(p, 0.0) - fair[p]) for p in want) / total)
    return statistics.fmean(gaps) if gaps else 0.0


def _spread(
    into: dict[int, dict[int, float]],
    project: int,
    gpus: int,
    *,
    begin: float,
    end: float,
    window_s: float,
) -> None:
    """Adds ``gpus`` held from ``begin`` to ``end`` to each window it overlaps.

    A zero-length interval (a job that did not wait) still marks its window,
    as demand with no GPU-seconds.
    """
    window = int(begin // window_s)
    while True:
        lo, hi = window * window_s, (window + 1) * window_s
        amount = gpus * max(min(end, hi) - max(begin, lo), 0.0)
        per = into.setdefault(window, {})
        per[project] = per.get(project, 0.0) + amount
        if end <= hi:
            return
        window += 1


def water_fill(total: float, want: dict[int, float], weight: dict[int, float]) -> dict[int, float]:
    """Shares ``total`` by ``weight``, none above its ``want`` (weighted max-min fairness).

    Projects with no weight get only what the weighted ones cannot use, by want.
    """
    fair = dict.fromkeys(want, 0.0)
    left = total
    weighted = sorted((p for p in want if weight[p] > 0), key=lambda p: (want[p] / weight[p], p))
    weights = math.fsum(weight[p] for p in weighted)
    for p in weighted:
        give = left * weight[p] / weights
        fair[p] = min(give, want[p])
        left -= fair[p]
        weights -= weight[p]
    rest = [p for p in want if weight[p] <= 0]
    unmet = math.fsum(want[p] for p in rest)
    for p in rest:
        fair[p] = min(left * want[p] / unmet, want[p]) if unmet > 0 else 0.0
    return fair


def report(
    label: str, jobs: list[TraceJob], outcome: Outcome, *, gpus: int, gap: float, wall_s: float
) -> str:
    waits = [outcome.starts[j.job_id] - j.submit_s for j in jobs]
    jcts = [outcome.finishes[j.job_id] - j.submit_s for j in jobs]
    makespan = max(outcome.finishes.values()) - min(j.submit_s for j in jobs)
    work = sum(j.gpus * j.duration_s for j in jobs)
    return (
        f"{label} jobs={len(jobs)} mean_jct_s={statistics.fmean(jcts):.0f} "
        f"mean_wait_s={statistics.fmean(waits):.0f} p50_wait_s={percentile(waits, 50):.0f} "
        f"p95_wait_s={percentile(waits, 95):.0f} utilisation={work / (gpus * makespan):.3f} "
        f"makespan_s={makespan:.0f} max_share_gap={gap:.3f} "
        f"pass_p50_ms={percentile(outcome.pass_ms, 50):.3f} "
        f"pass_p99_ms={percentile(outcome.pass_ms, 99):.3f} wall_s={wall_s:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trace", default=str(DEFAULT_TRACE))
    parser.add_argument("--gpus", type=int, default=1400)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--policy", choices=("fifo", "fairshare", "all"), default="all")
    parser.add_argument("--backfill", choices=("on", "off", "both"), default="both")
    parser.add_argument("--limit", type=int, default=0, help="replay only the first N jobs")
    parser.add_argument("--projects", type=int, default=0, help="N random projects, not vc")
    parser.add_argument("--shares", default="", help="entitlements per project, e.g. 1,1,2")
    parser.add_argument("--half-life-h", type=float, default=168.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window-h", type=float, default=6.0, help="max_share_gap window")
    args = parser.parse_args()
    jobs, entitlement = load(args)
    orderings = ("fifo", "fairshare") if args.policy == "all" else (args.policy,)
    backfills = (True, False) if args.backfill == "both" else (args.backfill == "on",)
    for ordering in orderings:
        for backfill in backfills:
            began = time.perf_counter()
            policy = Policy(ordering=ordering, backfill=backfill)  # type: ignore[arg-type]
            outcome = Replay(args, entitlement, policy).run(jobs)
            label = f"policy={ordering} backfill={'on' if backfill else 'off'}"
            print(
                report(
                    label,
                    jobs,
                    outcome,
                    gpus=args.gpus,
                    gap=share_gap(jobs, outcome, entitlement, args.window_h * HOUR),
                    wall_s=time.perf_counter() - began,
                )
            )


if __name__ == "__main__":
    main()
