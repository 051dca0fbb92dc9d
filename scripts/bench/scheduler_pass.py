"""One scheduling pass on a big, busy pool: how long :func:`plan` takes.

The pool is ``--gpus`` GPUs on 8-GPU nodes of one flavour, filled to about
98% with running jobs of 1 to 8 GPUs (and a few gangs) that started in the
last day, so there are scattered holes, a head to reserve for and a long
queue to backfill from. The queue is ``--queued`` jobs, mostly 1 to 8 GPUs,
some 16- and 32-GPU gangs, across 20 projects with random entitlements and
usage. Each repeat runs the same pass (fair share with backfill).

    .venv/bin/python scripts/bench/scheduler_pass.py
    .venv/bin/python scripts/bench/scheduler_pass.py --queued 10000 --gpus 1000 --repeat 50

Prints::

    queued=10000 gpus=1000 pass_p50_ms=… pass_p99_ms=…
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from credits.jobs.executors.base import NodeSlice
from credits.jobs.scheduler import Node, Policy, ProjectShare, QueuedJob, RunningJob, plan

GPUS_PER_NODE = 8
FLAVOUR = "h100-80gb"
PROJECTS = 20
NOW = 1_700_000_000.0
FILL = 0.98
# GPUs asked for, and how often: mostly small jobs, a few whole-node gangs.
SIZES = (1, 2, 4, 8, 16, 32)
WEIGHTS = (55, 12, 12, 15, 4, 2)
RUNTIMES_S = (3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)


def build_nodes(gpus: int) -> list[Node]:
    count = max(gpus // GPUS_PER_NODE, 1)
    return [Node(f"node-{i:04d}", FLAVOUR, GPUS_PER_NODE) for i in range(count)]


def build_running(nodes: list[Node], rng: random.Random) -> list[RunningJob]:
    """Single-node jobs on random nodes until ``FILL`` of the GPUs are in use; none overdue."""
    free = {node.name: node.gpus for node in nodes}
    total = sum(free.values())
    target = int(total * FILL)
    running: list[RunningJob] = []
    used = 0
    names = list(free)
    while used < target:
        most = max(free.values())
        if most == 0:
            break
        # Shrink a job that fits nowhere to the biggest hole, so the pool really fills.
        gpus = min(rng.choices(SIZES[:4], WEIGHTS[:4])[0], target - used, most)
        fitting = [name for name in names if free[name] >= gpus]
        name = rng.choice(fitting)
        free[name] -= gpus
        used += gpus
        runtime = rng.choice(RUNTIMES_S)
        running.append(
            RunningJob(
                job_id=len(running) + 1,
                project_id=rng.randrange(PROJECTS),
                flavour=FLAVOUR,
                placement=(NodeSlice(name, gpus),),
                started_at=NOW - rng.uniform(0, runtime),
                max_runtime_s=runtime,
            )
        )
    return running


def build_queue(count: int, rng: random.Random) -> list[QueuedJob]:
    return [
        QueuedJob(
            job_id=1_000_000 + i,
            project_id=rng.randrange(PROJECTS),
            flavour=FLAVOUR,
            gpus=rng.choices(SIZES, WEIGHTS)[0],
            max_runtime_s=rng.choice(RUNTIMES_S),
            submitted_at=NOW - rng.uniform(0, 3 * 86400),
        )
        for i in range(count)
    ]


def build_shares(rng: random.Random) -> dict[int, ProjectShare]:
    return {
        p: ProjectShare(p, entitlement=rng.uniform(1, 10), decayed_usage=rng.uniform(0, 1e8))
        for p in range(PROJECTS)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--gpus", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    nodes = build_nodes(args.gpus)
    running = build_running(nodes, rng)
    queued = build_queue(args.queued, rng)
    shares = build_shares(rng)
    policy = Policy()
    times_ms: list[float] = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        plan(queued, running, nodes, shares, NOW, policy)
        times_ms.append((time.perf_counter() - began) * 1000)
    p99 = statistics.quantiles(times_ms, n=100)[98] if len(times_ms) > 1 else times_ms[0]
    print(
        f"queued={args.queued} gpus={len(nodes) * GPUS_PER_NODE} "
        f"pass_p50_ms={statistics.median(times_ms):.2f} pass_p99_ms={p99:.2f}"
    )


if __name__ == "__main__":
    main()
