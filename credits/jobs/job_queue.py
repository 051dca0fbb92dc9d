"""The queued jobs, indexed so that a pass reads the fair-share order lazily.

The order of :mod:`credits.jobs.queue_order` changes as time passes (waits
grow, jobs are promoted a class, response ratios cross), yet inside one group
of jobs with the same flavour, project, base runtime class and runtime step
(:mod:`credits.jobs.runtime_classes`) it never does: there a longer wait means
a class at least as good and a response ratio at least as high, so a group
sorted by submission is in policy order at every instant. The queue keeps
each group sorted as jobs come and go; a pass merges the heads of the groups
and touches only the jobs it walks past.

A :class:`JobQueue` kept between passes (add what was submitted, discard what
started or left) saves even the sorting; :func:`credits.jobs.scheduler.plan`
builds one from any other collection of jobs, with the same result.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, NamedTuple

from credits.jobs.runtime_classes import (
    DEFAULT_CLASS_BOUNDS_S,
    base_class,
    check_class_bounds,
    runtime_step,
)

if TYPE_CHECKING:
    from credits.jobs.scheduler import QueuedJob

SUBMISSION = attrgetter("submitted_at", "job_id")
SHORTEST_DECLARED = attrgetter("max_runtime_s", "submitted_at", "job_id")


class GroupKey(NamedTuple):
    """Jobs whose relative order never changes: same flavour, project, class and step."""

    flavour: str
    project_id: int
    base_class: int
    step: int


class JobQueue:
    """Queued jobs grouped by :class:`GroupKey`, each group sorted by submission.

    Adding or discarding a job costs a bisection in its group; nothing is
    re-sorted. ``class_bounds_s`` must be the policy's: plan() rebuilds a
    queue made for other bounds.
    """

    __slots__ = ("_by_flavour", "_by_project", "_groups", "_jobs", "_sizes", "class_bounds_s")

    def __init__(
        self,
        jobs: Iterable[QueuedJob] = (),
        *,
        class_bounds_s: Sequence[int] = DEFAULT_CLASS_BOUNDS_S,
    ) -> None:
        self.class_bounds_s = check_class_bounds(class_bounds_s)
        self._jobs: dict[int, QueuedJob] = {}
        self._groups: dict[GroupKey, list[QueuedJob]] = {}
        self._by_project: dict[int, set[GroupKey]] = {}
        self._by_flavour: dict[str, dict[int, set[GroupKey]]] = {}
        # GPUs asked for by each project's jobs of a flavour: whether any can ever fit.
        self._sizes: dict[tuple[int, str], Counter[int]] = {}
        self._build(jobs)

    def add(self, job: QueuedJob) -> None:
        """Queues ``job``; a job with the same id is replaced."""
        self.discard(job.job_id)
        self._insert(job)

    def discard(self, job_id: int) -> None:
        """Takes the job out of the queue, if it is there."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        key = self.key(job)
        group = self._groups[key]
        del group[bisect_left(group, SUBMISSION(job), key=SUBMISSION)]
        sizes = self._sizes[(job.project_id, job.flavour)]
        sizes[job.gpus] -= 1
        if not sizes[job.gpus]:
            del sizes[job.gpus]
        if not group:
            self._forget(key)

    def key(self, job: QueuedJob) -> GroupKey:
        return GroupKey(
            job.flavour,
            job.project_id,
            base_class(job.max_runtime_s, self.class_bounds_s),
            runtime_step(job.max_runtime_s),
        )

    def group(self, key: GroupKey) -> list[QueuedJob]:
        """The group's jobs by submission; callers must not change it."""
        return self._groups[key]

    def project_groups(self, project_id: int) -> set[GroupKey]:
        return self._by_project.get(project_id, set())

    def flavour_steps(self, flavour: str) -> dict[int, set[GroupKey]]:
        """The flavour's groups by runtime step."""
        return self._by_flavour.get(flavour, {})

    def projects(self) -> Iterator[int]:
        return iter(self._by_project)

    def sizes(self, project_id: int, flavour: str) -> Counter[int]:
        """How many of the project's jobs of the flavour ask for each GPU count."""
        return self._sizes.get((project_id, flavour), Counter())

    def flavours(self, project_id: int) -> set[str]:
        return {key.flavour for key in self.project_groups(project_id)}

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[QueuedJob]:
        return iter(self._jobs.values())

    def __contains__(self, job: object) -> bool:
        job_id = getattr(job, "job_id", None)
        return isinstance(job_id, int) and self._jobs.get(job_id) == job

    def _build(self, jobs: Iterable[QueuedJob]) -> None:
        """Indexes many jobs at once: grouped by declared runtime first, then each group
        sorted once (a pass over a plain list pays this, so it is kept lean)."""
        # The last of several jobs with one id wins, as with add().
        self._jobs = {job.job_id: job for job in jobs}
        by_runtime: dict[tuple[str, int, int], list[QueuedJob]] = {}
        for job in self._jobs.values():
            raw = (job.flavour, job.project_id, job.max_runtime_s)
            members = by_runtime.get(raw)
            if members is None:
                by_runtime[raw] = [job]
            else:
                members.append(job)
        for (flavour, project_id, runtime), members in by_runtime.items():
            bounds = self.class_bounds_s
            key = GroupKey(flavour, project_id, base_class(runtime, bounds), runtime_step(runtime))
            self._group_for(key).extend(members)
        for group in self._groups.values():
            group.sort(key=SUBMISSION)
        sizes = Counter((job.project_id, job.flavour, job.gpus) for job in self._jobs.values())
        for (project_id, flavour, gpus), count in sizes.items():
            self._sizes.setdefault((project_id, flavour), Counter())[gpus] = count

    def _group_for(self, key: GroupKey) -> list[QueuedJob]:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = []
            self._by_project.setdefault(key.project_id, set()).add(key)
            self._by_flavour.setdefault(key.flavour, {}).setdefault(key.step, set()).add(key)
        return group

    def _insert(self, job: QueuedJob) -> None:
        self._jobs[job.job_id] = job
        insort(self._group_for(self.key(job)), job, key=SUBMISSION)
        self._sizes.setdefault((job.project_id, job.flavour), Counter())[job.gpus] += 1

    def _forget(self, key: GroupKey) -> None:
        del self._groups[key]
        project = self._by_project[key.project_id]
        project.discard(key)
        if not project:
            del self._by_project[key.project_id]
        steps = self._by_flavour[key.flavour]
        steps[key.step].discard(key)
        if not steps[key.step]:
            del steps[key.step]
        if not steps:
            del self._by_flavour[key.flavour]
