"""Shapes of the usage ingestion API."""

from __future__ import annotations

import math
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, WithJsonSchema

from credits.ledger.models import Currency
from credits.metering.models import UsageUnit
from credits.schema_types import ApiTime

MAX_BATCH = 1000
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$"
# A hard ceiling for the schema; the operator's limit is CREDITS_USAGE_MAX_GPUS.
MAX_RECORD_GPUS = 100_000


def _json_number(value: Any) -> Decimal:
    """A JSON number as an exact Decimal; text, booleans and non-finite floats are refused.

    A float is read through its shortest repr, so the JSON ``0.1`` is 0.1 exactly.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("quantity is a JSON number, not text")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("quantity is a finite number")
        return Decimal(repr(value))
    return Decimal(value)


Quantity = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    Field(ge=0, max_digits=24, decimal_places=6),
    WithJsonSchema({"type": "number", "minimum": 0}),
]
"""A quantity: a JSON number (never a string), at least 0, at most six decimals."""


class UsageRecordIn(BaseModel):
    """One record from a meter outside the platform."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=SOURCE_PATTERN, description="the meter, e.g. labelstudio.uni.edu")
    record_id: str = Field(
        min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="unique per source"
    )
    project_id: int = Field(strict=True, ge=1, le=2**62)
    currency: Currency
    quantity: Quantity
    unit: UsageUnit = Field(
        description="gpu_second or gpu_hour (priced at the flavour named by `resource`), "
        "credit (the quantity is the amount), or a labelling order's unit (item, label, "
        "annotator_hour, submission; priced at the order's quote)"
    )
    start: ApiTime
    end: ApiTime
    gpus: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_RECORD_GPUS,
        description="GPUs the usage ran on (default 1); GPU time may not exceed "
        "(end - start) x gpus, and gpus may not exceed the platform's per-record limit",
    )
    resource: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00]*$")
    evidence: dict[str, Any] | None = Field(
        default=None, description="anything that backs the record up (a task id, a URL)"
    )
    labelling_order_id: StrictInt | None = Field(
        default=None,
        ge=1,
        le=2**62,
        description="units an invoice-adapter vendor delivered for this labelling order: "
        "currency label, the order's project and the unit of its quote",
    )


class UsageBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} UsageRecordIn objects; each is judged on its own",
    )


class RecordOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class RecordResult(BaseModel):
    index: int
    source: str | None
    record_id: str | None
    outcome: RecordOutcome
    reason: str | None = None
    id: int | None = None
    amount_micro: int | None = None


class UsageBatchOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[RecordResult]
