"""Collecting GPU telemetry into ``job_telemetry``: DCGM exporters or NVML.

Each collection adds what is new since the previous one to each job's row
(samples, the sum of utilisation, peak memory, energy), so several worker
processes, or one restarted, never count a scrape twice: a collector keeps
its last snapshot in memory and writes differences. After a restart the
first scrape of each GPU gives no energy delta (there is no earlier counter
reading to subtract), so at most one interval of energy per GPU is missed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.jobs.manifests import instance_slug
from credits.metering.models import JobTelemetryRow
from credits.metering.telemetry import (
    GpuSample,
    JobTelemetryOut,
    TelemetryAggregator,
    TelemetryError,
    scrape,
)


def pod_job_id(namespace: str, pod: str, *, job_namespace: str, instance: str) -> int | None:
    """The job a pod of this platform belongs to: pods of the batch/v1 Job
    ``{slug}-{job_id}-{attempt}`` are named after it, where the slug is the instance
    name as Kubernetes names may hold it (``Lab_A prod`` is ``lab-a-prod``)."""
    if namespace != job_namespace:
        return None
    match = re.match(rf"^{re.escape(instance_slug(instance))}-(\d+)-(\d+)-", pod)
    return int(match.group(1)) if match else None


class TelemetryCollector:
    """One process's collector; ``collect_*`` return the rows they changed."""

    def __init__(self) -> None:
        self.aggregator = TelemetryAggregator()
        self._stored: dict[int, JobTelemetryOut] = {}
        self.errors: list[str] = []

    def collect_dcgm(
        self,
        session: Session,
        urls: list[str],
        *,
        at: datetime,
        job_namespace: str,
        instance: str,
        fetch: Callable[[str], list[GpuSample]] = scrape,
    ) -> int:
        self.errors = []
        for url in urls:
            try:
                samples = fetch(url)
            except TelemetryError as error:
                self.errors.append(f"{url}: {error}")
                continue
            mapping = {
                (sample.namespace, sample.pod): job_id
                for sample in samples
                if sample.namespace
                and sample.pod
                and (
                    job_id := pod_job_id(
                        sample.namespace, sample.pod, job_namespace=job_namespace, instance=instance
                    )
                )
                is not None
            }
            self.aggregator.add_scrape(samples, at, mapping)
        return self.store(session)

    def collect_slots(
        self, session: Session, samples: list[GpuSample], owners: Mapping[str, int], *, at: datetime
    ) -> int:
        """NVML samples of this host, tied to jobs by the GPU slot each job holds."""
        attributed = [
            (owners[str(sample.gpu)], sample) for sample in samples if str(sample.gpu) in owners
        ]
        self.aggregator.add_attributed(attributed, at)
        return self.store(session)

    def store(self, session: Session) -> int:
        """Adds each job's change since the last store to its row."""
        changed = 0
        snapshot = self.aggregator.snapshot()
        existing = {
            row.job_id: row
            for row in session.scalars(
                select(JobTelemetryRow)
                .where(JobTelemetryRow.job_id.in_(list(snapshot)))
                .with_for_update()
            )
        }
        for job_id, now in snapshot.items():
            before = self._stored.get(job_id)
            if before == now:
                continue
            row = existing.get(job_id) or _new_row(session, job_id)
            _add_difference(row, before, now)
            changed += 1
        self._stored = snapshot
        return changed


def _new_row(session: Session, job_id: int) -> JobTelemetryRow:
    row = JobTelemetryRow(
        job_id=job_id, samples=0, gpu_util_sum=0.0, peak_fb_used_mib=0.0, energy_mj=0
    )
    session.add(row)
    return row


def _util_sum(out: JobTelemetryOut | None) -> float:
    if out is None or out.mean_gpu_util_percent is None:
        return 0.0
    return out.mean_gpu_util_percent * out.samples


def _add_difference(
    row: JobTelemetryRow, before: JobTelemetryOut | None, now: JobTelemetryOut
) -> None:
    row.samples += now.samples - (before.samples if before else 0)
    row.gpu_util_sum += _util_sum(now) - _util_sum(before)
    row.peak_fb_used_mib = max(row.peak_fb_used_mib, now.peak_fb_used_mib or 0.0)
    row.energy_mj += now.energy_mj - (before.energy_mj if before else 0)
    row.first_at = min(filter(None, (row.first_at, now.first_at)))
    row.last_at = max(filter(None, (row.last_at, now.last_at)))
