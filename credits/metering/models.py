"""Usage records: what was used, by which project, over which interval, once.

A record is immutable once written except for its settlement columns, and
unique by (source, record_id): the platform's own job meter writes records of
source ``credits.jobs`` keyed by job, attempt and interval start; meters
outside the platform (labelling tools, other clusters) choose their own ids.
Settlement captures each record's amount from the job's hold, or spends it
from the project's allocations; whatever cannot be covered is booked to the
overage account and never overdraws.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from credits.db import Base, BigId, UtcDateTime, in_values, utcnow

JOBS_SOURCE = "credits.jobs"


class RecordStatus(StrEnum):
    PENDING = "pending"
    SETTLED = "settled"
    # Settling it failed on its own (a ledger refusal): set aside for ops, never retried
    # in a loop, and never blocking the records behind it.
    FAILED = "failed"


class UsageUnit(StrEnum):
    GPU_SECOND = "gpu_second"
    GPU_HOUR = "gpu_hour"
    # The quantity is the amount itself, in credits: a meter that prices its own work.
    CREDIT = "credit"
    # Units a labelling vendor delivered for an order (the invoice adapter), priced at the
    # order's quote; the same names as credits.labelling.models.PriceUnit.
    ITEM = "item"
    LABEL = "label"
    ANNOTATOR_HOUR = "annotator_hour"
    SUBMISSION = "submission"

    @property
    def is_gpu_time(self) -> bool:
        return self in (UsageUnit.GPU_SECOND, UsageUnit.GPU_HOUR)

    @property
    def is_labelling(self) -> bool:
        return self not in (UsageUnit.GPU_SECOND, UsageUnit.GPU_HOUR, UsageUnit.CREDIT)


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("source", "record_id", name="uq_usage_records_source_record_id"),
        CheckConstraint("quantity_micro >= 0", name="quantity_not_negative"),
        CheckConstraint("amount_micro >= 0", name="amount_not_negative"),
        CheckConstraint("ended_at >= started_at", name="ends_after_start"),
        CheckConstraint("captured_micro + overage_micro <= amount_micro", name="settled_within"),
        CheckConstraint(in_values("status", RecordStatus), name="status"),
        Index("ix_usage_records_status_id", "status", "id"),
        # Settlement's order: records from outside meters (no job) first, then each
        # job's records together, so a batch books one capture per job it holds.
        Index("ix_usage_records_status_job_id_id", "status", "job_id", "id"),
        Index("ix_usage_records_project_id_started_at", "project_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    record_id: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    # Units a labelling vendor delivered for an order (invoice adapter).
    labelling_order_id: Mapped[int | None] = mapped_column(
        ForeignKey("labelling_orders.id"), index=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    currency: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(32))
    # The quantity in its unit, times 1,000,000 (GPU-seconds to the microsecond).
    quantity_micro: Mapped[int] = mapped_column(BigInteger)
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    rate_version_id: Mapped[int | None] = mapped_column(ForeignKey("pool_rate_versions.id"))
    resource: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    evidence_json: Mapped[str | None] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=RecordStatus.PENDING.value)
    captured_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    overage_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class JobTelemetryRow(Base):
    """What GPU telemetry saw of one job: for reports and nudges, never for charges."""

    __tablename__ = "job_telemetry"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    samples: Mapped[int] = mapped_column(BigInteger, default=0)
    # Sum of GPU utilisation percentages over samples; the mean is sum / samples.
    gpu_util_sum: Mapped[float] = mapped_column(default=0.0)
    peak_fb_used_mib: Mapped[float] = mapped_column(default=0.0)
    energy_mj: Mapped[int] = mapped_column(BigInteger, default=0)
    first_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
