"""The replay's jobs: a trace's rows with a declared walltime and a checkpoint flag.

See :mod:`replay` for how a row becomes a job. Every random draw has its own
stream seeded from ``--seed`` and the draw's name, and every job takes one
value from each stream whatever the flags, so changing ``--overdeclare`` does
not change which jobs are checkpointable or which project a job lands in.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

HOUR = 3600
WEEK = 7 * 24 * HOUR
BUCKETS_S = tuple(h * HOUR for h in (1, 2, 4, 8, 12, 24, 48, 72, 168))


@dataclass(frozen=True, slots=True)
class TraceJob:
    job_id: int
    project_id: int
    submit_s: float
    gpus: int
    duration_s: float
    # Declared walltime: the scheduler sees it and the executor enforces it.
    limit_s: int
    checkpointable: bool


def walltime(duration_s: float) -> int:
    """The smallest walltime bucket that holds the duration."""
    for bucket in BUCKETS_S:
        if duration_s <= bucket:
            return bucket
    return math.ceil(duration_s / WEEK) * WEEK


def parse_range(text: str) -> tuple[float, float]:
    """``"LO,HI"`` as two positive floats with LO <= HI (argparse type)."""
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI such as 1,8; got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 < LO <= HI; got {text!r}")
    return lo, hi


def parse_fraction(text: str) -> float:
    """A float in [0, 1] (argparse type)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1]; got {text!r}")
    return value


class _Draws:
    """The per-job random draws, one stream each."""

    def __init__(self, args: argparse.Namespace) -> None:
        # The project stream keeps round 1's seeding so --projects figures are unchanged.
        self.project = random.Random(args.seed)
        self.factor = random.Random(f"{args.seed}:overdeclare")
        self.checkpoint = random.Random(f"{args.seed}:checkpointable")
        lo, hi = args.overdeclare
        self.log_lo, self.log_hi = math.log(lo), math.log(hi)
        self.checkpointable = args.checkpointable
        self.exact = args.exact_walltime

    def limit(self, duration_s: float) -> int:
        """The bucketed walltime times a log-uniform over-declaration factor.

        With ``--exact-walltime``, the true duration itself: an oracle, to measure
        what knowing every duration would give (the draw is still taken).
        """
        factor = math.exp(self.factor.uniform(self.log_lo, self.log_hi))
        if self.exact:
            return max(1, math.ceil(duration_s))
        return max(1, math.ceil(walltime(duration_s) * factor))

    def is_checkpointable(self) -> bool:
        return bool(self.checkpoint.random() < self.checkpointable)


def load(args: argparse.Namespace) -> tuple[list[TraceJob], dict[int, float]]:
    """The trace's jobs, in submission order, and each project's entitlement."""
    draws = _Draws(args)
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
                project = draws.project.randrange(args.projects)
            else:
                project = projects.setdefault(row["vc"], len(projects))
            duration = float(row["duration_s"])
            jobs.append(
                TraceJob(
                    job_id=len(jobs) + 1,
                    project_id=project,
                    submit_s=float(row["submit_time_s"]),
                    gpus=gpus,
                    duration_s=duration,
                    limit_s=draws.limit(duration),
                    checkpointable=draws.is_checkpointable(),
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
