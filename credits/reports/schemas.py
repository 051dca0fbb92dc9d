"""What a report returns. Money is integer micro-credits (1 credit = 1,000,000);
energy is kWh of GPU-board energy, carbon kg CO2e after PUE and grid intensity.

Balance figures of an allocation account, all from the ledger:

- ``awarded``: what the award decided (the allocation's ``awarded_micro``,
  pending tranches included); an account without an allocation row counts
  what was granted into it;
- ``released``: grants posted into the account, less grants out of it;
- ``adjusted``: ops adjustments in, less adjustments out;
- ``held``: reserved by open holds (``debits_pending``);
- ``used``: captured from holds (job and metered usage);
- ``expired``: moved to the expiry sink at the end;
- ``available``: ``released + adjusted - used - expired - held``, which is the
  ledger's ``credits_posted - debits_posted - debits_pending``;
- ``overage``: usage no hold or allocation covered, booked from the overage
  account (per project; not part of ``available``).

Labelling spend (:mod:`credits.reports.labelling`) is what labelling orders
charged: ``captured`` from their holds on the scope's label allocations (part
of those allocations' ``used``), plus ``overage`` past their quotes, less
``refunded`` by ops (part of ``adjusted``).
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from credits.ledger.models import Currency


class Footprint(BaseModel):
    kwh: float = Field(description="GPU energy in kWh (before PUE)")
    kg_co2e: float = Field(description="kWh x PUE x grid intensity / 1000")


class Efficiency(BaseModel):
    gpu_seconds: float = Field(description="charged GPU-seconds")
    measured_gpu_seconds: float = Field(description="charged GPU-seconds of jobs with telemetry")
    mean_gpu_util_percent: float | None = Field(
        description="mean GPU utilisation weighted by charged GPU-seconds; None without telemetry"
    )


class Balance(BaseModel):
    currency: Currency
    awarded: int
    released: int
    adjusted: int
    held: int
    used: int
    expired: int
    available: int
    overage: int
    forecast_unused: int = Field(description="forecast to expire unused, over all allocations")
    lapsed: int = Field(
        default=0,
        description="pending tranches of `awarded` that can never be released: their "
        "allocation ended, or its project was archived",
    )


class AllocationLine(BaseModel):
    account_id: int
    allocation_id: int | None
    program_id: int | None
    project_id: int
    code: str
    currency: Currency
    status: str
    starts_at: dt.datetime | None
    expires_at: dt.datetime | None
    awarded: int
    released: int
    adjusted: int
    held: int
    used: int
    expired: int
    available: int
    forecast_unused: int = Field(
        description="available at expiry less the use projected until then at the last "
        "7 days' rate, spending soonest-expiring first; never negative"
    )
    footprint: Footprint
    lapsed: int = Field(
        default=0,
        description="pending tranches of `awarded` that can never be released: their "
        "allocation ended, or its project was archived",
    )


class UsageLine(BaseModel):
    """Usage records by currency, flavour and month (of the record's start)."""

    currency: Currency
    flavour: str
    month: str = Field(description="YYYY-MM, UTC")
    used: int = Field(description="captured micro-credits")
    overage: int
    gpu_hours: float
    jobs: int
    footprint: Footprint = Field(description="energy of jobs by the month telemetry began")


class MonthLine(BaseModel):
    """Ledger movements by currency and month (of the transfer)."""

    currency: Currency
    month: str
    released: int
    used: int
    expired: int
    overage: int


class BurnDay(BaseModel):
    date: dt.date
    used: int
    cumulative_used: int


class BurnDown(BaseModel):
    currency: Currency
    daily: list[BurnDay]
    rate_per_day: int = Field(description="mean use per day over the last 7 days")
    spendable: int = Field(description="available now in allocations that have started")
    projected_exhaustion: dt.date | None = Field(
        description="when the credits run out at the recent rate: each project walks its "
        "allocations at its own 7-day rate the way the ledger spends them (an allocation "
        "that ends before it is used up lasts until its end; one that starts later takes "
        "over from its start); the latest of the projects still spending; None without "
        "recent use"
    )
    outlasts_allocations: bool = Field(
        default=False,
        description="true when, at that rate, the allocations of the project that runs out "
        "last end with credits unused: projected_exhaustion is then their end",
    )
    forecast_unused: int


class JobLine(BaseModel):
    job_id: int
    project_id: int
    flavour: str
    state: str
    gpus: int
    gpu_seconds: float
    charged: int
    overage: int
    samples: int
    mean_gpu_util_percent: float | None
    footprint: Footprint


class OutcomeCount(BaseModel):
    state: str
    jobs: int


class GroupLine(BaseModel):
    """A program's allocations summed by project or by institution."""

    project_id: int | None
    title: str
    institution: str
    currency: Currency
    awarded: int
    released: int
    held: int
    used: int
    expired: int
    available: int
    forecast_unused: int
    footprint: Footprint
    lapsed: int = Field(
        default=0,
        description="pending tranches of `awarded` that can never be released: their "
        "allocation ended, or its project was archived",
    )


class VendorSpendLine(BaseModel):
    """Labelling spend of the report's scope summed by vendor."""

    vendor_id: int
    vendor: str
    orders: int
    captured: int = Field(description="captured from the orders' holds on these allocations")
    overage: int = Field(description="delivered past the quotes, booked as overage")
    refunded: int = Field(description="given back by ops when resolving disputes")
    spent: int = Field(description="captured + overage - refunded")


class LabellingSpendLine(VendorSpendLine):
    """Labelling orders' charges by vendor, project and the program whose allocation paid."""

    project_id: int
    program_id: int | None = Field(description="None for an allocation no program awarded")


class SpendLine(BaseModel):
    """GPU and labelling spend of one project, side by side."""

    project_id: int
    title: str
    gpu_used: int = Field(description="captured from the project's GPU allocations")
    gpu_overage: int = Field(description="GPU usage no hold or allocation covered")
    gpu_spent: int = Field(description="gpu_used + gpu_overage")
    labelling_spent: int = Field(
        description="the project's labelling spend (captured + overage - refunded)"
    )


class ReportBody(BaseModel):
    generated_at: dt.datetime
    balances: list[Balance]
    allocations: list[AllocationLine]
    usage: list[UsageLine]
    months: list[MonthLine]
    burndown: list[BurnDown]
    efficiency: Efficiency
    footprint: Footprint
    outcomes: list[OutcomeCount]
    jobs: list[JobLine]
    spend: list[SpendLine]
    labelling: list[LabellingSpendLine]
    labelling_by_vendor: list[VendorSpendLine]


class ProjectReport(ReportBody):
    project_id: int
    title: str
    institution: str


class ProgramReport(ReportBody):
    program_id: int
    name: str
    by_project: list[GroupLine]
    by_institution: list[GroupLine]
