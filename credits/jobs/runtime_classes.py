"""Runtime classes: the queue goes by declared walltime class first, with aging.

A job's *base class* is the first of ``Policy.class_bounds_s`` its declared
max runtime fits under (with :data:`TIERED_CLASS_BOUNDS_S`: up to 1 h is class
0, up to 4 h class 1, up to 24 h class 2, anything longer class 3), like the
time-limit partitions of a batch system with tiered priority. By default there
are no bounds, so every job is in class 0 and the order is fair share alone. Every
``Policy.class_aging_s`` a job waits promotes it one class, down to 0, so a
long job waits at most ``class_aging_s`` times its base class before it
competes with the shortest jobs on equal terms: it is never starved by a
stream of short ones. Fair share decides within a class
(:mod:`credits.jobs.queue_order`).

Declaring a short limit to jump the queue does not pay: the limit is what the
executors enforce (the local runner's timer, a Kubernetes Job's
activeDeadlineSeconds), so a job that runs past it is killed there, and it is
charged for what it ran, as every job is.

Within a project and class, jobs go by a response ratio of their declared
runtime (see :func:`credits.jobs.fairshare.job_rank`), read in steps of
2^(1/4) (:func:`runtime_step`): a job declaring 5 h counts as one declaring
5 h 39 min. The steps let the queue keep a project's jobs in a few lists that
stay in order as time passes (:mod:`credits.jobs.job_queue`) instead of
sorting every job each pass.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from itertools import pairwise

HOUR = 3600
# The usual tiers of time-limit partitions: up to 1 h, 4 h, 24 h, and longer.
TIERED_CLASS_BOUNDS_S: tuple[int, ...] = (HOUR, 4 * HOUR, 24 * HOUR)
# One class unless configured: on the standard replay with users over-declaring
# 1 to 8 times, the tiers lengthened waits and widened the fair-share gap
# (docs/scheduling.md has the figures).
DEFAULT_CLASS_BOUNDS_S: tuple[int, ...] = ()
DEFAULT_CLASS_AGING_S = 4.0 * HOUR

# Declared runtimes are compared in steps of 2^(1/4) (about 19%) up to about 33 years.
_STEPS_PER_DOUBLING = 4
_RUNTIME_STEPS: tuple[int, ...] = tuple(
    sorted({math.ceil(2.0 ** (i / _STEPS_PER_DOUBLING)) for i in range(_STEPS_PER_DOUBLING * 30)})
)


def check_class_bounds(bounds_s: Sequence[float]) -> tuple[int, ...]:
    """The bounds as whole seconds, refused unless positive and strictly increasing."""
    seconds = tuple(int(bound) for bound in bounds_s)
    if any(bound <= 0 for bound in seconds) or any(
        later <= earlier for earlier, later in pairwise(seconds)
    ):
        raise ValueError(f"class bounds must be positive and increasing, got {list(bounds_s)}")
    return seconds


def base_class(max_runtime_s: int, bounds_s: Sequence[int]) -> int:
    """The class of a declared max runtime: how many bounds it is over."""
    return bisect_left(bounds_s, max_runtime_s)


def promotions(submitted_at: float, now: float, aging_s: float) -> int:
    """Classes a job has been promoted by waiting since ``submitted_at``.

    Never negative, and never decreasing in the wait (the same float steps
    for every job), so a queue sorted by submission has its promoted jobs in
    a prefix.
    """
    if aging_s <= 0:
        return 0
    waited = now - submitted_at
    if waited <= 0:
        return 0
    return math.floor(waited / aging_s)


def effective_class(base: int, submitted_at: float, now: float, aging_s: float) -> int:
    return max(0, base - promotions(submitted_at, now, aging_s))


def runtime_step(max_runtime_s: int) -> int:
    """The declared runtime as the response ratio reads it: the next step up, at least 1 s."""
    index = bisect_left(_RUNTIME_STEPS, max_runtime_s)
    return _RUNTIME_STEPS[index] if index < len(_RUNTIME_STEPS) else max(max_runtime_s, 1)
