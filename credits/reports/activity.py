"""Jobs, usage records and telemetry of a report's scope: GPU time, efficiency, energy.

Telemetry feeds reports, never charges: a job's mean utilisation is
``gpu_util_sum / samples``; its weight in an efficiency figure is its charged
GPU-seconds (the quantity of its usage records).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from credits.jobs.models import Job
from credits.ledger.models import HoldPart
from credits.metering.energy import EnergyFootprint
from credits.metering.models import JobTelemetryRow, UsageRecord, UsageUnit
from credits.pool.models import GpuFlavour
from credits.reports.energy import EnergyPolicy
from credits.reports.figures import month_of
from credits.reports.schemas import Efficiency, Footprint, JobLine, OutcomeCount, UsageLine

MICRO = Decimal(1_000_000)
EXTERNAL = "(external)"
_SECONDS_PER_UNIT = {
    UsageUnit.GPU_SECOND.value: Decimal(1),
    UsageUnit.GPU_HOUR.value: Decimal(3600),
}


@dataclass
class JobFacts:
    id: int
    project_id: int
    flavour: str
    state: str
    gpus: int
    charged: int
    overage: int
    samples: int
    util_sum: float
    footprint: EnergyFootprint
    telemetry_at: dt.datetime | None
    gpu_seconds: Decimal = Decimal(0)

    @property
    def mean_util(self) -> float | None:
        return self.util_sum / self.samples if self.samples > 0 else None


@dataclass
class Activity:
    jobs: dict[int, JobFacts]
    usage: dict[tuple[str, str, str], _UsageSum] = field(default_factory=dict)
    # job id → {allocation account id → captured from it}
    shares: dict[int, dict[int, int]] = field(default_factory=dict)
    # (currency, project id) → overage of the usage records
    overage_by_project: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _UsageSum:
    used: int = 0
    overage: int = 0
    gpu_seconds: Decimal = Decimal(0)
    jobs: set[int] = field(default_factory=set)
    footprint: EnergyFootprint = field(default_factory=EnergyFootprint)


def footprint_out(footprint: EnergyFootprint) -> Footprint:
    return Footprint(kwh=round(float(footprint.kwh), 6), kg_co2e=round(float(footprint.kg_co2e), 6))


def jobs_drawing_on(account_ids: Collection[int]) -> ColumnElement[bool]:
    """Jobs whose hold took credits from any of ``account_ids``."""
    holds = select(HoldPart.hold_key).where(HoldPart.account_id.in_(list(account_ids)))
    return Job.hold_key.in_(holds)


def load_activity(
    session: Session,
    *,
    jobs: ColumnElement[bool],
    records: ColumnElement[bool] | None,
    policy: EnergyPolicy,
) -> Activity:
    """The jobs matching ``jobs`` and the usage records of those jobs, plus the
    records matching ``records`` that belong to no job (outside meters)."""
    facts = _load_jobs(session, jobs, policy)
    activity = Activity(jobs=facts)
    _load_records(session, activity, records)
    _load_energy_by_month(activity)
    activity.shares = _load_shares(session, list(facts))
    return activity


def _load_jobs(
    session: Session, condition: ColumnElement[bool], policy: EnergyPolicy
) -> dict[int, JobFacts]:
    rows = session.execute(
        select(Job, GpuFlavour.name, JobTelemetryRow)
        .join(GpuFlavour, GpuFlavour.id == Job.flavour_id)
        .outerjoin(JobTelemetryRow, JobTelemetryRow.job_id == Job.id)
        .where(condition)
        .order_by(Job.id)
    ).all()
    found: dict[int, JobFacts] = {}
    for job, flavour, telemetry in rows:
        energy = 0 if telemetry is None else int(telemetry.energy_mj)
        found[job.id] = JobFacts(
            id=job.id,
            project_id=job.project_id,
            flavour=flavour,
            state=job.state,
            gpus=job.gpus,
            charged=job.charged_micro,
            overage=job.overage_micro,
            samples=0 if telemetry is None else int(telemetry.samples),
            util_sum=0.0 if telemetry is None else float(telemetry.gpu_util_sum),
            footprint=policy.footprint(energy, flavour),
            telemetry_at=None if telemetry is None else telemetry.first_at,
        )
    return found


def _load_records(
    session: Session, activity: Activity, condition: ColumnElement[bool] | None
) -> None:
    scope: ColumnElement[bool] = UsageRecord.job_id.in_(list(activity.jobs))
    if condition is not None:
        scope = scope | (UsageRecord.job_id.is_(None) & condition)
    rows = session.execute(
        select(
            UsageRecord.job_id,
            UsageRecord.project_id,
            UsageRecord.currency,
            UsageRecord.unit,
            UsageRecord.resource,
            UsageRecord.quantity_micro,
            UsageRecord.captured_micro,
            UsageRecord.overage_micro,
            UsageRecord.started_at,
        ).where(scope)
    ).all()
    for row in rows:
        job = None if row.job_id is None else activity.jobs[row.job_id]
        flavour = job.flavour if job is not None else (row.resource or EXTERNAL)
        line = activity.usage.setdefault(
            (row.currency, flavour, month_of(row.started_at)), _UsageSum()
        )
        line.used += row.captured_micro
        line.overage += row.overage_micro
        activity.overage_by_project[(row.currency, row.project_id)] += row.overage_micro
        seconds = Decimal(row.quantity_micro) / MICRO * _SECONDS_PER_UNIT.get(row.unit, Decimal(0))
        line.gpu_seconds += seconds
        if job is not None:
            line.jobs.add(job.id)
            job.gpu_seconds += seconds


def _load_energy_by_month(activity: Activity) -> None:
    """A job's energy counts in the month its telemetry began."""
    for job in activity.jobs.values():
        if job.telemetry_at is None or job.footprint == EnergyFootprint():
            continue
        key = ("gpu", job.flavour, month_of(job.telemetry_at))
        line = activity.usage.setdefault(key, _UsageSum())
        line.footprint = line.footprint + job.footprint


def _load_shares(session: Session, job_ids: list[int]) -> dict[int, dict[int, int]]:
    shares: dict[int, dict[int, int]] = defaultdict(dict)
    if not job_ids:
        return shares
    rows = session.execute(
        select(Job.id, HoldPart.account_id, HoldPart.captured)
        .join(HoldPart, HoldPart.hold_key == Job.hold_key)
        .where(Job.id.in_(job_ids))
    ).all()
    for job_id, account_id, captured in rows:
        shares[job_id][account_id] = shares[job_id].get(account_id, 0) + int(captured)
    return shares


def account_footprints(activity: Activity) -> dict[int, EnergyFootprint]:
    """Each job's footprint split over the accounts it was charged from, by amount."""
    result: dict[int, EnergyFootprint] = defaultdict(EnergyFootprint)
    for job_id, by_account in activity.shares.items():
        total = sum(by_account.values())
        footprint = activity.jobs[job_id].footprint
        if total <= 0:
            continue
        for account_id, captured in by_account.items():
            share = Decimal(captured) / total
            result[account_id] = result[account_id] + EnergyFootprint(
                kwh=footprint.kwh * share, kg_co2e=footprint.kg_co2e * share
            )
    return result


def efficiency(jobs: Iterable[JobFacts]) -> Efficiency:
    total = measured = weighted = Decimal(0)
    for job in jobs:
        total += job.gpu_seconds
        if job.mean_util is None or job.gpu_seconds <= 0:
            continue
        measured += job.gpu_seconds
        weighted += Decimal(str(job.mean_util)) * job.gpu_seconds
    mean = None if measured == 0 else round(float(weighted / measured), 3)
    return Efficiency(
        gpu_seconds=round(float(total), 3),
        measured_gpu_seconds=round(float(measured), 3),
        mean_gpu_util_percent=mean,
    )


def usage_lines(activity: Activity) -> list[UsageLine]:
    return [
        UsageLine(
            currency=currency,
            flavour=flavour,
            month=month,
            used=line.used,
            overage=line.overage,
            gpu_hours=round(float(line.gpu_seconds / 3600), 6),
            jobs=len(line.jobs),
            footprint=footprint_out(line.footprint),
        )
        for (currency, flavour, month), line in sorted(activity.usage.items())
    ]


def job_lines(activity: Activity) -> list[JobLine]:
    return [
        JobLine(
            job_id=job.id,
            project_id=job.project_id,
            flavour=job.flavour,
            state=job.state,
            gpus=job.gpus,
            gpu_seconds=round(float(job.gpu_seconds), 3),
            charged=job.charged,
            overage=job.overage,
            samples=job.samples,
            mean_gpu_util_percent=None if job.mean_util is None else round(job.mean_util, 3),
            footprint=footprint_out(job.footprint),
        )
        for job in activity.jobs.values()
    ]


def outcomes(activity: Activity) -> list[OutcomeCount]:
    counts: dict[str, int] = defaultdict(int)
    for job in activity.jobs.values():
        counts[job.state] += 1
    return [OutcomeCount(state=state, jobs=n) for state, n in sorted(counts.items())]
