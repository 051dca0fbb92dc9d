"""Shapes the GPU pool takes and returns; rates are integer micro-credits per GPU-hour."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from credits.pool.models import (
    DEFAULT_CHECKPOINT_GRACE_CAP_S,
    FLAVOUR_NAME_PATTERN,
    MAX_CHECKPOINT_GRACE_CAP_S,
    MAX_GPU_MEMORY_GB,
    MAX_GPUS_PER_NODE,
    NODE_LABEL_MAX_LENGTH,
)
from credits.schema_types import ApiTime

TEXT_MAX_LENGTH = 2000


class FlavourOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    node_label_value: str = Field(description="the value of the node label that selects it")
    gpu_memory_gb: int
    gpus_per_node: int
    description: str | None
    created_at: datetime
    max_checkpoint_grace_seconds: int = Field(
        description="the longest checkpoint grace a checkpointable job of this flavour may ask"
    )


class RateOut(BaseModel):
    """One rate version; ``in_force`` is true for the version in force at the time asked
    (now, in listings)."""

    id: int
    flavour: str
    flavour_id: int
    micro_credits_per_gpu_hour: int = Field(description="1 credit = 1,000,000 micro-credits")
    effective_from: datetime
    created_at: datetime
    actor: str
    reason: str | None
    in_force: bool


class FlavourList(BaseModel):
    items: list[FlavourOut]


class RateList(BaseModel):
    """Rate versions, newest ``effective_from`` first."""

    items: list[RateOut]


class FlavourIn(BaseModel):
    """A new GPU flavour (ops only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=FLAVOUR_NAME_PATTERN, examples=["a100-80gb"])
    node_label_value: str = Field(
        min_length=1, max_length=NODE_LABEL_MAX_LENGTH, examples=["NVIDIA-A100-SXM4-80GB"]
    )
    gpu_memory_gb: int = Field(strict=True, ge=1, le=MAX_GPU_MEMORY_GB)
    gpus_per_node: int = Field(strict=True, ge=1, le=MAX_GPUS_PER_NODE)
    description: str | None = Field(default=None, max_length=TEXT_MAX_LENGTH)
    max_checkpoint_grace_seconds: int = Field(
        default=DEFAULT_CHECKPOINT_GRACE_CAP_S, strict=True, ge=0, le=MAX_CHECKPOINT_GRACE_CAP_S
    )


class FlavourChange(BaseModel):
    """A change to a GPU flavour (ops only): its cap on checkpoint grace."""

    model_config = ConfigDict(extra="forbid")

    max_checkpoint_grace_seconds: int = Field(
        strict=True, ge=0, le=MAX_CHECKPOINT_GRACE_CAP_S, examples=[300]
    )


class RateIn(BaseModel):
    """A new rate version for a flavour (ops only); it may not take effect in the past."""

    model_config = ConfigDict(extra="forbid")

    # strict: 2.0 is a float, and floats never reach a money path.
    micro_credits_per_gpu_hour: int = Field(strict=True, gt=0, examples=[2_500_000])
    effective_from: ApiTime | None = Field(
        default=None, description="ISO 8601 with a timezone; now when omitted"
    )
    reason: str | None = Field(default=None, max_length=TEXT_MAX_LENGTH)
