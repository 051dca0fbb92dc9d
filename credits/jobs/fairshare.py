"""Fair share: how far each project is below its entitled share, and decayed usage.

A project's fair-share factor is ``F = 2^(-u/s)``: ``s`` is its entitled share
and ``u`` its share of recent use, so a project that used exactly its share
gets 0.5, an idle one 1 and a heavy one close to 0.

The order (:mod:`credits.jobs.queue_order`) goes by runtime class first
(:mod:`credits.jobs.runtime_classes`), then is two-level. Projects take turns
by priority, ``fairshare_weight * F + age_weight * min(w /
Policy.age_saturation_s, 1)`` for the longest-waiting job of each in the
class (``w``: how long that job has waited), so that fair share decides who
goes next and the age term keeps any job from waiting for ever behind a
busier project's newer jobs. Within a project, jobs queue by rank, the age
term plus ``response_weight * w / (w + d)`` with ``d`` the job's *declared*
max runtime (in steps of 2^(1/4)): the share of its response time (were it to
start now) spent waiting. Ordering by that alone is Highest Response Ratio
Next, as ``(w + d) / d`` rises with it: a project's short jobs overtake its
long ones after a short wait (a 1 h job that has waited an hour scores 0.5, a
7 d job 0.006), which cuts mean and tail waits the way shortest-job-first
does, yet every job's ratio tends to 1, so a long job is never starved by a
stream of short newcomers. It uses only what the user declared, never the
true run time; declaring a generous limit only makes one's own job wait
longer. The response term reorders a project's own jobs and never moves one
project ahead of another, so it cannot undo fair share.

Both shares are taken over the *active* projects, those with a job queued or
running in this pass: the entitlement of a project that wants nothing is
shared out among the others, as a pool that would otherwise idle should be.

``u`` also counts what a project holds now: every GPU it has running, or is
given earlier in the same pass, adds ``Policy.running_charge_s`` GPU-seconds
of usage. Without it a project that is ahead would take every free GPU of a
pass before its priority moved. The denominator is fixed for the whole pass
(past usage of the active projects plus the charge for the whole pool), so a
start changes only its own project's factor, and with no history at all ``u``
is simply the fraction of the pool a project holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from credits.jobs.runtime_classes import runtime_step

if TYPE_CHECKING:
    from credits.jobs.scheduler import Policy, ProjectShare, QueuedJob

LN2 = math.log(2.0)


def decayed(value: float, elapsed_s: float, half_life_s: float) -> float:
    """``value`` after ``elapsed_s`` seconds of exponential decay with the given half-life.

    A negative elapsed time (a clock that stepped back) decays nothing rather
    than growing the value.
    """
    if half_life_s <= 0:
        raise ValueError(f"half-life must be positive, got {half_life_s}")
    if elapsed_s <= 0:
        return value
    return float(value * 2.0 ** (-elapsed_s / half_life_s))


class UsageDecay:
    """A decayed running total: add usage at a time, read the total at a later time.

    It keeps one value and the time it is valid at, so reading and adding cost
    the same whatever the history. Usage added or read before that time is
    taken as happening at it (no un-decaying), which keeps the total monotone
    under small clock steps.
    """

    __slots__ = ("_as_of", "_value", "half_life_s")

    def __init__(self, half_life_s: float, *, value: float = 0.0, as_of: float = 0.0) -> None:
        decayed(0.0, 0.0, half_life_s)  # validates the half-life
        self.half_life_s = half_life_s
        self._value = value
        self._as_of = as_of

    def add(self, amount: float, at: float) -> None:
        """Adds ``amount`` of usage that happened at ``at``."""
        self._advance(at)
        self._value += amount

    def accrue(self, rate: float, start: float, end: float) -> None:
        """Adds constant use of ``rate`` (GPUs) from ``start`` to ``end``, decayed continuously.

        This is the exact integral, so a long job counts less than its GPU-seconds
        if most of it ran long ago, and splitting an interval changes nothing.
        """
        if end <= start or rate == 0:
            self._advance(end)
            return
        span = end - start
        amount = rate * self.half_life_s / LN2 * -math.expm1(-span * LN2 / self.half_life_s)
        self.add(amount, end)

    def value_at(self, at: float) -> float:
        """The decayed total at ``at``."""
        return decayed(self._value, at - self._as_of, self.half_life_s)

    def _advance(self, at: float) -> None:
        if at > self._as_of:
            self._value = decayed(self._value, at - self._as_of, self.half_life_s)
            self._as_of = at


class FairShare:
    """Each active project's factor ``F = 2^(-u/s)``, kept current as a pass starts jobs."""

    __slots__ = ("_charge_s", "_denominator", "_entitled", "_factor", "_usage")

    def __init__(
        self,
        shares: Mapping[int, ProjectShare],
        active: Iterable[int],
        held_gpus: Mapping[int, int],
        pool_gpus: int,
        charge_s: float,
    ) -> None:
        # Sorted ids and fsum: the same projects give the same floats in any input order.
        ids = sorted({p for p in active if p in shares})
        entitlement = math.fsum(max(shares[p].entitlement, 0.0) for p in ids)
        self._entitled = {
            p: (max(shares[p].entitlement, 0.0) / entitlement if entitlement > 0 else 0.0)
            for p in ids
        }
        self._usage = {
            p: max(shares[p].decayed_usage, 0.0) + charge_s * held_gpus.get(p, 0) for p in ids
        }
        past = math.fsum(max(shares[p].decayed_usage, 0.0) for p in ids)
        self._denominator = past + charge_s * pool_gpus
        self._charge_s = charge_s
        self._factor = {p: self._compute(p) for p in ids}

    def factor(self, project_id: int) -> float:
        return self._factor.get(project_id, 0.0)

    def charge(self, project_id: int, gpus: int) -> None:
        """Counts ``gpus`` more GPUs held by the project from now on."""
        if self._charge_s > 0 and project_id in self._usage:
            self._usage[project_id] += self._charge_s * gpus
            self._factor[project_id] = self._compute(project_id)

    def _compute(self, project_id: int) -> float:
        share = self._entitled[project_id]
        if share <= 0:
            return 0.0
        used = self._usage[project_id] / self._denominator if self._denominator > 0 else 0.0
        return float(2.0 ** (-used / share))


def priority(job: QueuedJob, factor: float, policy: Policy, now: float) -> float:
    """fairshare_weight * F + age_weight * min(w / age_saturation_s, 1): which project goes next."""
    return policy.fairshare_weight * factor + age_term(job, policy, now)


def age_term(job: QueuedJob, policy: Policy, now: float) -> float:
    """age_weight * min(w / age_saturation_s, 1): the part of the priority a pass fixes."""
    return policy.age_weight * _ageing(job, policy, now)


def job_rank(job: QueuedJob, policy: Policy, now: float, *, step: int | None = None) -> float:
    """A job's place in its project: age term + response_weight * w / (w + d).

    ``w`` is the time queued (never negative) and ``d`` the declared max
    runtime read in steps (:func:`credits.jobs.runtime_classes.runtime_step`;
    ``step`` when the caller has it). Computed as ``1 - d / (w + d)``, which in
    floating point never decreases as ``w`` grows, so jobs of one step keep
    their submission order at every instant (see :mod:`credits.jobs.job_queue`).
    """
    age = now - job.submitted_at
    if age <= 0:
        return 0.0
    runtime = runtime_step(job.max_runtime_s) if step is None else step
    response = 1.0 - runtime / (age + runtime)
    return policy.age_weight * _ageing(job, policy, now) + policy.response_weight * response


def _ageing(job: QueuedJob, policy: Policy, now: float) -> float:
    age = now - job.submitted_at
    if age <= 0:
        return 0.0
    if policy.age_saturation_s <= 0:
        return 1.0
    return min(age / policy.age_saturation_s, 1.0)
