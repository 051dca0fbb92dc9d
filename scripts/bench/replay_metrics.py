"""The replay's figures: waits, utilisation, moves and the fair-share gap.

The gap is defined in :mod:`replay`'s docstring; here it is computed per
window, and summarised over every window with delivery (``gap_all_mean``,
round 1's ``max_share_gap``) and over the windows where some job waited
(``gap_mean``, ``gap_p95``): in a window where nobody waits every project gets
what it wants and the gap is 0 by construction, so averaging those in only
dilutes the figure.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from replay_trace import HOUR, TraceJob


@dataclass(slots=True)
class Outcome:
    """What one replay measured."""

    starts: dict[int, float] = field(default_factory=dict)
    finishes: dict[int, float] = field(default_factory=dict)
    pass_ms: list[float] = field(default_factory=list)
    moves: int = 0
    moved_jobs: set[int] = field(default_factory=set)
    # GPU-seconds spent restarting moved jobs (GPUs held, no work done).
    moved_gpu_s_lost: float = 0.0
    # GPU-seconds of useful work done (restarts not counted).
    work_gpu_s: float = 0.0
    # Moved jobs killed at their limit that would have finished unmoved, and the
    # GPU-seconds of work they had left.
    moved_killed: int = 0
    moved_killed_gpu_s: float = 0.0
    # Job-seconds queued, by (size, the pool's state meanwhile): see replay's --by-size.
    waiting_by_state: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Gap:
    all_mean: float
    mean: float
    p95: float
    windows: int
    queued_windows: int


@dataclass(frozen=True, slots=True)
class Figures:
    """One replay's row of the table."""

    label: str
    jobs: int
    mean_wait_s: float
    p50_wait_s: float
    p95_wait_s: float
    mean_jct_s: float
    utilisation: float
    makespan_s: float
    delivered_gpu_h: float
    moves: int
    moved_jobs: int
    moved_gpu_h_lost: float
    moved_killed: int
    moved_killed_gpu_h: float
    gap: Gap
    passes: int
    pass_p50_ms: float
    pass_p99_ms: float
    # Seconds inside plan(), of wall_s: the rest is the simulation around it.
    pass_s: float
    wall_s: float
    # This process's CPU seconds: on a shared machine wall time also counts others' work.
    cpu_s: float

    @property
    def moved_share(self) -> float:
        """GPU-hours lost to moves over GPU-hours delivered."""
        return self.moved_gpu_h_lost / self.delivered_gpu_h if self.delivered_gpu_h else 0.0

    def line(self) -> str:
        gap = self.gap
        return (
            f"{self.label} jobs={self.jobs} mean_jct_s={self.mean_jct_s:.0f} "
            f"mean_wait_s={self.mean_wait_s:.0f} p50_wait_s={self.p50_wait_s:.0f} "
            f"p95_wait_s={self.p95_wait_s:.0f} utilisation={self.utilisation:.3f} "
            f"makespan_s={self.makespan_s:.0f} moves={self.moves} moved_jobs={self.moved_jobs} "
            f"moved_gpu_h_lost={self.moved_gpu_h_lost:.1f} "
            f"moved_share={100 * self.moved_share:.3f}% "
            f"moved_killed={self.moved_killed} "
            f"moved_killed_gpu_h={self.moved_killed_gpu_h:.1f} "
            f"gap_mean={gap.mean:.3f} gap_p95={gap.p95:.3f} "
            f"queued_windows={gap.queued_windows}/{gap.windows} "
            f"gap_all_mean={gap.all_mean:.3f} "
            f"pass_p50_ms={self.pass_p50_ms:.3f} pass_p99_ms={self.pass_p99_ms:.3f} "
            f"passes={self.passes} pass_s={self.pass_s:.1f} "
            f"wall_s={self.wall_s:.1f} cpu_s={self.cpu_s:.1f}"
        )


TABLE_HEADER = (
    "| policy | mean wait s | p95 wait s | mean JCT s | util | moves | moved GPU-h lost "
    "| lost / delivered | killed by moves | gap mean (queued) | gap p95 (queued) "
    "| gap mean (all) | CPU s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(figures: Figures) -> str:
    gap = figures.gap
    return (
        f"| {figures.label} | {figures.mean_wait_s:,.0f} | {figures.p95_wait_s:,.0f} "
        f"| {figures.mean_jct_s:,.0f} | {figures.utilisation:.3f} | {figures.moves:,} "
        f"| {figures.moved_gpu_h_lost:,.1f} | {100 * figures.moved_share:.3f}% "
        f"| {figures.moved_killed} "
        f"| {gap.mean:.3f} | {gap.p95:.3f} | {gap.all_mean:.3f} | {figures.cpu_s:.1f} |"
    )


def figures(
    label: str,
    jobs: list[TraceJob],
    outcome: Outcome,
    *,
    gpus: int,
    gap: Gap,
    wall_s: float,
    cpu_s: float,
) -> Figures:
    waits = [outcome.starts[j.job_id] - j.submit_s for j in jobs]
    jcts = [outcome.finishes[j.job_id] - j.submit_s for j in jobs]
    makespan = max(outcome.finishes.values()) - min(j.submit_s for j in jobs)
    # Useful work only: restarts hold GPUs but deliver nothing.
    work = outcome.work_gpu_s
    return Figures(
        label=label,
        jobs=len(jobs),
        mean_wait_s=statistics.fmean(waits),
        p50_wait_s=percentile(waits, 50),
        p95_wait_s=percentile(waits, 95),
        mean_jct_s=statistics.fmean(jcts),
        utilisation=work / (gpus * makespan),
        makespan_s=makespan,
        delivered_gpu_h=work / HOUR,
        moves=outcome.moves,
        moved_jobs=len(outcome.moved_jobs),
        # What moves cost: restarts, and the work of jobs they got killed at their limit.
        moved_gpu_h_lost=(outcome.moved_gpu_s_lost + outcome.moved_killed_gpu_s) / HOUR,
        moved_killed=outcome.moved_killed,
        moved_killed_gpu_h=outcome.moved_killed_gpu_s / HOUR,
        gap=gap,
        pass_p50_ms=percentile(outcome.pass_ms, 50),
        pass_p99_ms=percentile(outcome.pass_ms, 99),
        passes=len(outcome.pass_ms),
        pass_s=math.fsum(outcome.pass_ms) / 1000,
        wall_s=wall_s,
        cpu_s=cpu_s,
    )


def waits_by_size(jobs: list[TraceJob], outcome: Outcome) -> str:
    """Mean and p95 wait per GPU count (gangs together), for where the waiting is."""
    groups: dict[str, list[float]] = {}
    for job in jobs:
        size = str(job.gpus) if job.gpus <= 8 else "gang"
        groups.setdefault(size, []).append(outcome.starts[job.job_id] - job.submit_s)
    order = sorted(groups, key=lambda size: (size == "gang", int(size) if size != "gang" else 0))
    return " ".join(
        f"gpus={size}:n={len(groups[size])},mean={statistics.fmean(groups[size]):.0f},"
        f"p95={percentile(groups[size], 95):.0f}"
        for size in order
    )


# The pool's state while a job of some size waits: a node (or, for a gang, whole
# nodes enough) has room for it; the free GPUs would cover it but no node does;
# fewer GPUs are free in all than it needs.
POOL_STATES = ("fits", "fragmented", "full")


def pool_state(gpus: int, free: list[int], gpus_per_node: int) -> str:
    """Which of :data:`POOL_STATES` the pool (free GPUs per node) is in for a job of ``gpus``."""
    if gpus <= gpus_per_node:
        if max(free) >= gpus:
            return "fits"
    elif free.count(gpus_per_node) * gpus_per_node >= gpus:
        return "fits"
    return "fragmented" if sum(free) >= gpus else "full"


def size_label(gpus: int, gpus_per_node: int = 8) -> str:
    return str(gpus) if gpus <= gpus_per_node else "gang"


def waits_by_state(jobs: list[TraceJob], outcome: Outcome) -> str:
    """Per size, the mean seconds a job waited in each pool state, and that share of all waits."""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[size_label(job.gpus)] = counts.get(size_label(job.gpus), 0) + 1
    total = sum(outcome.waiting_by_state.values()) or 1.0
    parts = []
    for size in sorted(
        counts, key=lambda size: (size == "gang", int(size) if size != "gang" else 0)
    ):
        cells = ",".join(
            f"{state}={outcome.waiting_by_state.get((size, state), 0.0) / counts[size]:.0f}"
            f"({outcome.waiting_by_state.get((size, state), 0.0) / total:.1%})"
            for state in POOL_STATES
        )
        parts.append(f"gpus={size}:{cells}")
    return " ".join(parts)


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def share_gap(
    jobs: list[TraceJob], outcome: Outcome, entitlement: dict[int, float], window_s: float
) -> Gap:
    """The fair-share gap of each window with delivery, summarised (see the module docstring)."""
    delivered: dict[int, dict[int, float]] = {}
    queued: dict[int, dict[int, float]] = {}
    for job in jobs:
        start, finish = outcome.starts[job.job_id], outcome.finishes[job.job_id]
        _spread(queued, job.project_id, job.gpus, begin=job.submit_s, end=start, window_s=window_s)
        _spread(delivered, job.project_id, job.gpus, begin=start, end=finish, window_s=window_s)
    gaps: list[float] = []
    queued_gaps: list[float] = []
    for window in sorted(set(delivered) | set(queued)):
        ran = delivered.get(window, {})
        total = math.fsum(ran.values())
        if total <= 0:
            continue
        waited = queued.get(window, {})
        want = {p: ran.get(p, 0.0) + waited.get(p, 0.0) for p in sorted(set(ran) | set(waited))}
        fair = water_fill(total, want, entitlement)
        gap = max(abs(ran.get(p, 0.0) - fair[p]) for p in want) / total
        gaps.append(gap)
        if any(seconds > 0 for seconds in waited.values()):
            queued_gaps.append(gap)
    return Gap(
        all_mean=statistics.fmean(gaps) if gaps else 0.0,
        mean=statistics.fmean(queued_gaps) if queued_gaps else 0.0,
        p95=percentile(queued_gaps, 95),
        windows=len(gaps),
        queued_windows=len(queued_gaps),
    )


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
