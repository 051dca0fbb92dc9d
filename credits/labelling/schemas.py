"""Shapes the labelling domain takes and returns."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind
from credits.labelling.models import (
    EXTERNAL_ID_MAX_LENGTH,
    VENDOR_NAME_MAX_LENGTH,
    Adapter,
    OrderStatus,
    PriceUnit,
    Resolution,
    SourceKind,
)

MAX_REDUNDANCY = 20
MAX_ITEMS = 100_000
INSTRUCTIONS_MAX_LENGTH = 20_000
TEXT_ITEM_MAX_LENGTH = 100_000

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
VendorName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=VENDOR_NAME_MAX_LENGTH),
]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class QcOptions(BaseModel):
    """The quality control a vendor offers orders."""

    model_config = ConfigDict(extra="forbid")

    gold_items: bool = Field(default=True, strict=True)
    max_redundancy: int = Field(default=5, ge=1, le=MAX_REDUNDANCY, strict=True)


class VendorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: VendorName
    adapter: Adapter
    task_kinds: list[SchemaKind] = Field(min_length=1)
    qc_options: QcOptions = Field(default_factory=QcOptions)
    description: str = Field(default="", max_length=5000)


class VendorOut(BaseModel):
    id: int
    name: str
    adapter: Adapter
    task_kinds: list[SchemaKind]
    qc_options: QcOptions
    description: str
    active: bool
    created_at: datetime
    price: PriceSheetOut | None = Field(description="the price sheet in effect now, if any")


class PriceSheetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: PriceUnit
    micro_credits_per_unit: int = Field(strict=True, gt=0, le=10**15)
    fee_basis_points: int = Field(
        default=0, strict=True, ge=0, le=10_000, description="the fee in 1/100 % (250 = 2.5 %)"
    )
    effective_from: datetime | None = Field(default=None, description="now when omitted")
    reason: str | None = Field(default=None, max_length=2000)


class PriceSheetOut(BaseModel):
    id: int
    vendor_id: int
    unit: PriceUnit
    micro_credits_per_unit: int
    fee_basis_points: int
    effective_from: datetime
    actor: str
    reason: str | None
    created_at: datetime


class _ItemBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(min_length=1, max_length=EXTERNAL_ID_MAX_LENGTH, pattern=r"^[^\x00]+$")
    gold: AnnotationValue | None = Field(default=None, description="the known answer")


class ItemIn(_ItemBase):
    """One item of an order: a text, or an image already stored as a blob.

    Only the platform's own readers make image items (from uploaded files or a
    dataset version, typed by their bytes): a blob named by its hash alone would let
    a caller order any stored file, however it was published or taken down.
    """

    text: str | None = Field(default=None, max_length=TEXT_ITEM_MAX_LENGTH)
    blob_sha256: Sha256 | None = None
    media_type: str = Field(default="text/plain", max_length=127)

    @model_validator(mode="after")
    def _text_or_blob(self) -> ItemIn:
        if (self.text is None) == (self.blob_sha256 is None):
            raise ValueError("an item is a text or a blob, not both or neither")
        if "\x00" in (self.text or ""):
            raise ValueError("an item's text may not contain NUL")
        return self


class TextItemIn(_ItemBase):
    """One item sent inline in a request: a text. Images come from a dataset version
    or are uploaded as files, never named by a blob's hash."""

    text: str = Field(max_length=TEXT_ITEM_MAX_LENGTH)

    @model_validator(mode="after")
    def _no_nul(self) -> TextItemIn:
        if "\x00" in self.text:
            raise ValueError("an item's text may not contain NUL")
        return self

    def as_item(self) -> ItemIn:
        return ItemIn(external_id=self.external_id, text=self.text, gold=self.gold)


class OrderIn(BaseModel):
    """A new order, in draft until quoted."""

    model_config = ConfigDict(extra="forbid")

    project_id: int = Field(strict=True, ge=1, le=2**62)
    vendor_id: int = Field(strict=True, ge=1, le=2**62)
    title: Title
    instructions: str = Field(default="", max_length=INSTRUCTIONS_MAX_LENGTH)
    label_schema: LabelSchema
    redundancy: int = Field(default=1, strict=True, ge=1, le=MAX_REDUNDANCY)
    expected_labels_per_item: Decimal | None = Field(
        default=None, gt=0, le=10_000, decimal_places=6, description="for per-label prices"
    )
    expected_seconds_per_item: Decimal | None = Field(
        default=None, gt=0, le=86_400, decimal_places=6, description="for per-hour prices"
    )
    target_dataset_id: int | None = Field(default=None, strict=True, ge=1, le=2**62)

    @model_validator(mode="after")
    def _one_estimate(self) -> OrderIn:
        # The order keeps one estimate per annotation; which one it is follows from
        # the vendor's price unit, so a second one would be read as the first.
        if self.expected_labels_per_item is not None and self.expected_seconds_per_item is not None:
            raise ValueError(
                "give expected_labels_per_item (per-label prices) or expected_seconds_per_item"
                " (per-hour prices), not both"
            )
        return self


class OrderSource(BaseModel):
    """Where the items came from, for the record."""

    kind: SourceKind
    version_id: int | None = None
    name: str | None = None


class OrderOut(BaseModel):
    id: int
    project_id: int
    vendor_id: int
    vendor_name: str
    adapter: Adapter
    title: str
    instructions: str
    label_schema: LabelSchema
    redundancy: int
    status: OrderStatus
    source: OrderSource
    target_dataset_id: int | None
    delivered_version_id: int | None
    items: int
    gold_items: int
    annotations: int
    price_sheet: PriceSheetOut | None
    quoted_units_micro: int
    quoted_micro: int
    delivered_units_micro: int
    captured_micro: int
    frozen_micro: int
    overage_micro: int
    refunded_micro: int
    hold_key: str | None
    flag: str | None
    dispute_reason: str | None
    resolution: Resolution | None
    resolution_note: str | None
    external_ref: str | None
    created_by: str
    created_at: datetime
    quoted_at: datetime | None
    placed_at: datetime | None
    delivered_at: datetime | None
    accepted_at: datetime | None
    disputed_at: datetime | None
    settled_at: datetime | None
    cancelled_at: datetime | None
    replayed: bool = False


class DeliveryOut(BaseModel):
    """What recording one delivery did."""

    order_id: int
    delivery_id: int
    units_micro: int
    captured_micro: int
    frozen_micro: int
    overage_micro: int
    replayed: bool
    order_status: OrderStatus


VendorOut.model_rebuild()
