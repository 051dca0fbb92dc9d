"""One scheduling pass on a big, busy pool: how long :func:`plan` takes.

The pool is ``--gpus`` GPUs on 8-GPU nodes of one flavour, filled to about
98% with running jobs of 1 to 8 GPUs (and a few gangs) that started in the
last day, so there are scattered holes, a head to reserve for and a long
queue to backfill from. The queue is ``--queued`` jobs, mostly 1 to 8 GPUs,
some 16- and 32-GPU gangs, across 20 projects with random entitlements and
usage. Each repeat runs a pass (fair share with backfill) two ways:

- ``kept``: over a :class:`~credits.jobs.job_queue.JobQueue` and a
  :class:`~credits.jobs.running_set.RunningSet` kept between passes, as a
  long-lived scheduler (or a replay) would keep them. Between repeats,
  untimed, the jobs the pass started leave the queue and as many new ones
  arrive, so every pass sees a queue that changed.
- ``list``: over plain lists of the same jobs, which plan() indexes anew each
  pass (the platform's pass, which reads the queue from the database).

Before the passes the objects built so far (pool, running jobs, the queue) are
frozen out of the garbage collector's reach (``gc.freeze()``), as a
long-lived scheduler that keeps its queue would do: otherwise a full
collection, which walks every queued job, lands in one pass in twenty or so
and is what its p99 measures (``--no-gc-freeze`` shows it). The ``cpu``
figures are the process's CPU time in the pass, which other processes on a
busy machine do not inflate as they do the wall-clock ones.

    .venv/bin/python scripts/bench/scheduler_pass.py
    .venv/bin/python scripts/bench/scheduler_pass.py --queued 100000 --gpus 10000

Prints::

    queued=10000 gpus=1000 starts=… kept_p50_ms=… kept_p99_ms=… kept_cpu_p99_ms=… list_…
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from dataclasses import dataclass

from credits.jobs.executors.base import NodeSlice
from credits.jobs.scheduler import (
    JobQueue,
    Node,
    Policy,
    ProjectShare,
    QueuedJob,
    RunningJob,
    RunningSet,
    plan,
)

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


def build_queue(count: int, rng: random.Random, first_id: int = 1_000_000) -> list[QueuedJob]:
    return [
        QueuedJob(
            job_id=first_id + i,
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


def time_passes(
    queue: JobQueue | list[QueuedJob],
    running: RunningSet | list[RunningJob],
    world: World,
    repeat: int,
    rng: random.Random,
) -> tuple[list[float], list[float], int]:
    """Wall and CPU milliseconds of each pass, and the starts of the first; a kept queue
    churns between passes."""
    times_ms: list[float] = []
    cpu_ms: list[float] = []
    starts = -1
    next_id = 10_000_000
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = plan(queue, running, world.nodes, world.shares, NOW, world.policy)
        times_ms.append((time.perf_counter() - began) * 1000)
        cpu_ms.append((time.process_time() - began_cpu) * 1000)
        starts = len(result.starts) if starts < 0 else starts
        if isinstance(queue, JobQueue):
            for start in result.starts:
                queue.discard(start.job_id)
            for job in build_queue(len(result.starts), rng, first_id=next_id):
                queue.add(job)
            next_id += len(result.starts)
    return times_ms, cpu_ms, starts


@dataclass(frozen=True)
class World:
    running: list[RunningJob]
    nodes: list[Node]
    shares: dict[int, ProjectShare]
    policy: Policy


def quantiles(times_ms: list[float]) -> tuple[float, float]:
    p99 = statistics.quantiles(times_ms, n=100)[98] if len(times_ms) > 1 else times_ms[0]
    return statistics.median(times_ms), p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--gpus", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-gc-freeze", action="store_true", help="leave the collector be")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    nodes = build_nodes(args.gpus)
    running = build_running(nodes, rng)
    queued = build_queue(args.queued, rng)
    world = World(running, nodes, build_shares(rng), Policy())
    kept = JobQueue(queued, class_bounds_s=world.policy.class_bounds_s)
    kept_running = RunningSet(running)
    if not args.no_gc_freeze:
        gc.freeze()
    kept_ms, kept_cpu, starts = time_passes(
        kept, kept_running, world, args.repeat, random.Random(args.seed)
    )
    list_ms, list_cpu, _ = time_passes(queued, running, world, args.repeat, rng)
    figures = " ".join(
        f"{name}_p50_ms={p50:.2f} {name}_p99_ms={p99:.2f} {name}_cpu_p99_ms={quantiles(cpu)[1]:.2f}"
        for name, (p50, p99), cpu in (
            ("kept", quantiles(kept_ms), kept_cpu),
            ("list", quantiles(list_ms), list_cpu),
        )
    )
    print(f"queued={args.queued} gpus={len(nodes) * GPUS_PER_NODE} starts={starts} {figures}")


if __name__ == "__main__":
    main()
