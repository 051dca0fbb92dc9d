"""Jobs, usage records and telemetry of a report's scope: GPU time, efficiency, energy.

Telemetry feeds reports, never charges: a job's mean utilisation is
``gpu_util_sum / samples``; its weight in an efficiency figure is its charged
GPU-seconds (the quantity of its usage records).

A report scoped to some allocations (a program's, or those a funder may see)
counts of each job the part charged to them: a job whose hold drew on two
programs' allocations is listed in both reports, but its usage, GPU time,
overage and energy are split between them by what each program's allocations
paid, so the two reports add up to the job once. Its overage, which no
allocation paid, counts wholly where its hold drew first (its first part), as a
labelling order's does; so does all of a job that has nothing captured (still
running, or charged nothing but overage). An outside meter's record, spent
through a hold of its own, counts the same way.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import ColumnElement, String, cast, literal, or_, select
from sqlalchemy.orm import Session

from credits.jobs.models import Job
from credits.ledger import batch_write as bulk
from credits.ledger.models import HoldPart
from credits.metering.energy import EnergyFootprint
from credits.metering.models import JobTelemetryRow, UsageRecord, UsageUnit
from credits.pool.models import GpuFlavour
from credits.reports.energy import EnergyPolicy
from credits.reports.figures import month_of
from credits.reports.schemas import Efficiency, Footprint, JobLine, OutcomeCount, UsageLine

MICRO = Decimal(1_000_000)
EXTERNAL = "(external)"
# An outside meter's record is spent through a hold of its own
# (credits.metering.settlement): usage:<record id>:hold.
OUTSIDE_HOLD_PREFIX = "usage:"
OUTSIDE_HOLD_SUFFIX = ":hold"
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
    # job id → the part of it the scope counts (1 when the scope is whole jobs)
    weights: dict[int, Fraction] = field(default_factory=dict)
    # job ids whose overage the scope does not count (its hold drew first elsewhere)
    overage_elsewhere: set[int] = field(default_factory=set)
    # An outside meter's record in a scope narrowed to some allocations: each has a hold
    # of its own, weighted as a job's is (record id → weight; ids whose overage is not
    # the scope's).
    record_weights: dict[int, Fraction] = field(default_factory=dict)
    record_overage_elsewhere: set[int] = field(default_factory=set)
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


def first_hold_key() -> ColumnElement[str]:
    """A job's hold key at submission, ``job:<id>:hold``. A job still queued when its
    allocation ended holds again under ``job:<id>:hold:2`` (credits/jobs/ended_holds.py),
    and what its earlier runs used was captured under the first key: reports count
    both. (A job moved twice would leave its middle hold out; its captures are only
    what it ran between two allocations' ends.)"""
    return literal("job:") + cast(Job.id, String) + literal(":hold")


def jobs_drawing_on(account_ids: Collection[int]) -> ColumnElement[bool]:
    """Jobs whose hold took credits from any of ``account_ids``."""
    holds = select(HoldPart.hold_key).where(HoldPart.account_id.in_(list(account_ids)))
    return or_(Job.hold_key.in_(holds), first_hold_key().in_(holds))


def load_activity(
    session: Session,
    *,
    jobs: ColumnElement[bool],
    records: ColumnElement[bool] | None,
    policy: EnergyPolicy,
    accounts: Collection[int] | None = None,
) -> Activity:
    """The jobs matching ``jobs`` and the usage records of those jobs, plus the
    records matching ``records`` that belong to no job (outside meters).

    With ``accounts``, the scope is those allocation accounts: each job counts for
    the part of it they paid (see the module's docstring)."""
    facts = _load_jobs(session, jobs, policy)
    activity = Activity(jobs=facts)
    holds = _load_holds(session, list(facts))
    activity.shares = {job_id: dict(hold.captured) for job_id, hold in holds.items()}
    activity.weights = {job_id: _weight(holds.get(job_id), accounts) for job_id in facts}
    if accounts is not None:
        activity.overage_elsewhere = {
            job_id for job_id, hold in holds.items() if hold.first_account not in accounts
        }
        outside = _load_outside_holds(session, accounts)
        activity.record_weights = {rid: _weight(hold, accounts) for rid, hold in outside.items()}
        activity.record_overage_elsewhere = {
            rid for rid, hold in outside.items() if hold.first_account not in accounts
        }
    _load_records(session, activity, records)
    _load_energy_by_month(activity)
    return activity


def _weight(hold: _Hold | None, accounts: Collection[int] | None) -> Fraction:
    """The part of a job paid from ``accounts`` (all of it when None): its share of the
    job's captures; with nothing captured (still running, or all of it overage), all or
    nothing, by where its hold drew first, as its overage goes."""
    if hold is None or accounts is None:
        return Fraction(1)
    captured = sum(hold.captured.values())
    if captured == 0:
        return Fraction(int(hold.first_account in accounts))
    inside = sum(taken for account, taken in hold.captured.items() if account in accounts)
    return Fraction(inside, captured)


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
    postgres = bulk.is_postgres(session)
    # The ids travel as one array parameter on PostgreSQL, however many there are.
    scope: ColumnElement[bool] = bulk.one_of(UsageRecord.job_id, "job_ids", postgres=postgres)
    if condition is not None:
        scope = scope | (UsageRecord.job_id.is_(None) & condition)
    if activity.record_weights:
        scope = scope | bulk.one_of(UsageRecord.id, "record_ids", postgres=postgres)
    parameters = {"job_ids": list(activity.jobs), "record_ids": list(activity.record_weights)}
    rows = session.execute(
        select(
            UsageRecord.id,
            UsageRecord.job_id,
            UsageRecord.project_id,
            UsageRecord.currency,
            UsageRecord.unit,
            UsageRecord.resource,
            UsageRecord.quantity_micro,
            UsageRecord.captured_micro,
            UsageRecord.overage_micro,
            UsageRecord.started_at,
        ).where(scope),
        parameters,
    ).all()
    # who paid (a job, an outside record with a weighed hold, or the project's outside
    # meters as a whole) → usage key → its records' sums
    sums: dict[_Payer, dict[UsageKey, _KeySums]] = defaultdict(dict)
    for row in rows:
        job = None if row.job_id is None else activity.jobs[row.job_id]
        flavour = job.flavour if job is not None else (row.resource or EXTERNAL)
        key = UsageKey(row.currency, flavour, month_of(row.started_at), row.project_id)
        seconds = Decimal(row.quantity_micro) / MICRO * _SECONDS_PER_UNIT.get(row.unit, Decimal(0))
        found = sums[_payer(activity, row.job_id, row.id)].setdefault(key, _KeySums())
        found.captured += row.captured_micro
        found.overage += row.overage_micro
        found.seconds += seconds
        if job is not None:
            job.gpu_seconds += seconds
    for payer, by_key in sums.items():
        weight, overage_counted = _payer_weight(activity, payer)
        if weight == 0 and not overage_counted:
            continue  # nothing of it is this scope's
        for key, counted in _weighted(by_key, weight, overage_counted).items():
            line = activity.usage.setdefault(key.line, _UsageSum())
            line.used += counted.captured
            line.overage += counted.overage
            activity.overage_by_project[(key.currency, key.project_id)] += counted.overage
            line.gpu_seconds += counted.seconds
            if payer[0] == "job":
                line.jobs.add(payer[1])


# ("job", job id), ("record", usage record id) or ("outside", 0)
_Payer = tuple[str, int]


def _payer(activity: Activity, job_id: int | None, record_id: int) -> _Payer:
    if job_id is not None:
        return ("job", job_id)
    if record_id in activity.record_weights:
        return ("record", record_id)
    return ("outside", 0)


def _payer_weight(activity: Activity, payer: _Payer) -> tuple[Fraction, bool]:
    """The part of a payer's usage the scope counts, and whether its overage is."""
    kind, payer_id = payer
    if kind == "job":
        return activity.weights[payer_id], payer_id not in activity.overage_elsewhere
    if kind == "record":
        weight = activity.record_weights[payer_id]
        return weight, payer_id not in activity.record_overage_elsewhere
    return Fraction(1), True


@dataclass(frozen=True, order=True)
class UsageKey:
    currency: str
    flavour: str
    month: str
    project_id: int

    @property
    def line(self) -> tuple[str, str, str]:
        return (self.currency, self.flavour, self.month)


@dataclass
class _KeySums:
    captured: int = 0
    overage: int = 0
    seconds: Decimal = Decimal(0)


def _weighted(
    by_key: dict[UsageKey, _KeySums], weight: Fraction, overage_counted: bool
) -> dict[UsageKey, _KeySums]:
    """One job's sums, its captures and GPU time times ``weight`` (its captures
    apportioned among the keys in whole micro-credits, so they add up to its weighted
    total exactly), its overage whole or not at all."""
    if weight == 1 and overage_counted:
        return by_key
    keys = sorted(by_key)
    captured = apportion([by_key[key].captured for key in keys], weight)
    share = Decimal(weight.numerator) / weight.denominator
    return {
        key: _KeySums(
            used, by_key[key].overage if overage_counted else 0, by_key[key].seconds * share
        )
        for key, used in zip(keys, captured, strict=True)
    }


def apportion(amounts: list[int], weight: Fraction) -> list[int]:
    """``amounts`` times ``weight`` in whole micro-credits, adding up to their total times
    ``weight`` rounded half to even: the largest remainders get the units left over."""
    exact = [amount * weight for amount in amounts]
    shares = [int(part) for part in exact]  # each share is ≥ 0: truncation is floor
    left = round(sum(exact)) - sum(shares)
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - shares[i], reverse=True)
    for index in by_remainder[:left]:
        shares[index] += 1
    return shares


def _load_energy_by_month(activity: Activity) -> None:
    """A job's energy counts in the month its telemetry began."""
    for job in activity.jobs.values():
        if job.telemetry_at is None or job.footprint == EnergyFootprint():
            continue
        key = ("gpu", job.flavour, month_of(job.telemetry_at))
        line = activity.usage.setdefault(key, _UsageSum())
        line.footprint = line.footprint + scaled(job.footprint, activity.weights[job.id])


def scaled(footprint: EnergyFootprint, weight: Fraction) -> EnergyFootprint:
    if weight == 1:
        return footprint
    share = Decimal(weight.numerator) / weight.denominator
    return EnergyFootprint(kwh=footprint.kwh * share, kg_co2e=footprint.kg_co2e * share)


def scope_footprint(activity: Activity) -> EnergyFootprint:
    """The energy of the scope: each job's for the part of it the scope counts."""
    return EnergyFootprint.total(
        scaled(job.footprint, activity.weights[job.id]) for job in activity.jobs.values()
    )


@dataclass
class _Hold:
    first_account: int
    # account id → what captures took from it
    captured: dict[int, int] = field(default_factory=dict)


def _fold_holds(rows: Iterable[tuple[int, int, int]]) -> dict[int, _Hold]:
    """(owner id, account id, captured) of hold parts in part order, by owner."""
    holds: dict[int, _Hold] = {}
    for owner, account_id, captured in rows:
        hold = holds.setdefault(owner, _Hold(first_account=account_id))
        hold.captured[account_id] = hold.captured.get(account_id, 0) + int(captured)
    return holds


def _load_outside_holds(session: Session, accounts: Collection[int]) -> dict[int, _Hold]:
    """The holds of outside meters' records (``usage:<record id>:hold``, one per record)
    that drew on ``accounts``, by record id."""
    drawing = (
        select(HoldPart.hold_key)
        .where(HoldPart.account_id.in_(list(accounts)))
        .where(HoldPart.hold_key.like(f"{OUTSIDE_HOLD_PREFIX}%{OUTSIDE_HOLD_SUFFIX}"))
    )
    rows = session.execute(
        select(HoldPart.hold_key, HoldPart.account_id, HoldPart.captured)
        .where(HoldPart.hold_key.in_(drawing))
        .order_by(HoldPart.hold_key, HoldPart.part)
    ).all()
    parts = []
    for hold_key, account_id, captured in rows:
        record_id = hold_key.removeprefix(OUTSIDE_HOLD_PREFIX).removesuffix(OUTSIDE_HOLD_SUFFIX)
        if record_id.isdigit():
            parts.append((int(record_id), account_id, captured))
    return _fold_holds(parts)


def _load_holds(session: Session, job_ids: list[int]) -> dict[int, _Hold]:
    """Each job's hold: the account of its first part, and what captures took from
    each account."""
    if not job_ids:
        return {}
    first = first_hold_key()
    rows = session.execute(
        select(Job.id, HoldPart.account_id, HoldPart.captured)
        .join(HoldPart, or_(HoldPart.hold_key == Job.hold_key, HoldPart.hold_key == first))
        .where(Job.id.in_(job_ids))
        # The current hold's parts first: a job with nothing captured yet counts
        # where it will be paid from.
        .order_by(Job.id, HoldPart.hold_key != Job.hold_key, HoldPart.part)
    ).all()
    return _fold_holds((job_id, account_id, captured) for job_id, account_id, captured in rows)


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


def efficiency(activity: Activity) -> Efficiency:
    """GPU time and mean utilisation of the scope, each job for the part it counts."""
    total = measured = weighted = Decimal(0)
    for job in activity.jobs.values():
        weight = activity.weights[job.id]
        seconds = job.gpu_seconds * weight.numerator / weight.denominator
        total += seconds
        if job.mean_util is None or seconds <= 0:
            continue
        measured += seconds
        weighted += Decimal(str(job.mean_util)) * seconds
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
