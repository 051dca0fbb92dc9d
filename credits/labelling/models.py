"""Labelling tables: vendors and their price sheets, orders, items, annotations, queues.

An order is quoted in its vendor's unit at one price-sheet version, held in
labelling credits when placed, and captures its part of the hold as each
annotation (or each batch of units a vendor invoices) is delivered. Amounts
are integer micro-credits; quantities of units are integers times 1,000,000
(an annotator-hour to the micro-hour).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from credits.db import Base, BigId, UtcDateTime, in_values, utcnow

MICRO = 1_000_000
BASIS_POINTS = 10_000
VENDOR_NAME_MAX_LENGTH = 100
EXTERNAL_ID_MAX_LENGTH = 200
ANNOTATOR_REF_MAX_LENGTH = 200


class Adapter(StrEnum):
    """How work reaches the vendor and how delivered work comes back."""

    INHOUSE = "inhouse"
    LABEL_STUDIO = "label_studio"
    INVOICE = "invoice"


class PriceUnit(StrEnum):
    """What a vendor charges for: an annotated item, a label applied, an
    annotator-hour, or a submission (one annotator's answer for one item)."""

    ITEM = "item"
    LABEL = "label"
    ANNOTATOR_HOUR = "annotator_hour"
    SUBMISSION = "submission"


class OrderStatus(StrEnum):
    DRAFT = "draft"
    QUOTED = "quoted"
    PLACED = "placed"
    IN_PROGRESS = "in_progress"
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    DISPUTED = "disputed"
    SETTLED = "settled"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        """Holding credits and taking deliveries (or freezing them, when disputed)."""
        return self in _OPEN_STATUSES


_OPEN_STATUSES = frozenset(
    {OrderStatus.PLACED, OrderStatus.IN_PROGRESS, OrderStatus.DELIVERED, OrderStatus.DISPUTED}
)


class Resolution(StrEnum):
    """How a dispute ended."""

    ACCEPTED = "accepted"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


class SourceKind(StrEnum):
    DATASET_VERSION = "dataset_version"
    UPLOAD = "upload"


class AssignmentStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    RELEASED = "released"


class Vendor(Base):
    __tablename__ = "labelling_vendors"
    __table_args__ = (CheckConstraint(in_values("adapter", Adapter), name="adapter"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(VENDOR_NAME_MAX_LENGTH), unique=True)
    adapter: Mapped[str] = mapped_column(String(32))
    # Schema kinds (credits.labelling.label_schema.SchemaKind) the vendor takes.
    task_kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Quality control the vendor offers: {"gold_items": bool, "max_redundancy": int}.
    qc_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PriceSheet(Base):
    """One effective-dated price of a vendor; the newest effective one quotes new orders."""

    __tablename__ = "labelling_price_sheets"
    __table_args__ = (
        UniqueConstraint("vendor_id", "effective_from"),
        CheckConstraint(in_values("unit", PriceUnit), name="unit"),
        CheckConstraint("micro_credits_per_unit > 0", name="price_positive"),
        CheckConstraint(
            f"fee_basis_points >= 0 AND fee_basis_points <= {BASIS_POINTS}", name="fee_in_range"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(ForeignKey("labelling_vendors.id"), index=True)
    unit: Mapped[str] = mapped_column(String(32))
    micro_credits_per_unit: Mapped[int] = mapped_column(BigInteger)
    # The vendor's fee on top of the units, in hundredths of a percent (250 = 2.5 %).
    fee_basis_points: Mapped[int] = mapped_column(Integer, default=0)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Order(Base):
    __tablename__ = "labelling_orders"
    __table_args__ = (
        UniqueConstraint("request_key", name="uq_labelling_orders_request_key"),
        CheckConstraint(in_values("status", OrderStatus), name="status"),
        CheckConstraint(in_values("source_kind", SourceKind), name="source_kind"),
        CheckConstraint(
            "resolution IS NULL OR " + in_values("resolution", Resolution), name="resolution"
        ),
        CheckConstraint("redundancy >= 1", name="redundancy_positive"),
        CheckConstraint(
            "quoted_units_micro >= 0 AND quoted_micro >= 0 AND delivered_units_micro >= 0"
            " AND captured_micro >= 0 AND overage_micro >= 0 AND frozen_micro >= 0"
            " AND refunded_micro >= 0",
            name="figures_not_negative",
        ),
        CheckConstraint("captured_micro <= quoted_micro", name="captured_within_quote"),
        Index("ix_labelling_orders_project_id_status", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    vendor_id: Mapped[int] = mapped_column(ForeignKey("labelling_vendors.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text, default="")
    label_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    redundancy: Mapped[int] = mapped_column(Integer, default=1)
    # What one annotation is expected to count in the vendor's unit, for the quote:
    # labels per item (per-label prices) or seconds per item (per-hour prices), x 1e6.
    estimate_per_annotation_micro: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.DRAFT.value)
    source_kind: Mapped[str] = mapped_column(String(32))
    source_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id"), index=True
    )
    source_name: Mapped[str | None] = mapped_column(String(255))
    # Deliver into a new version of this dataset; a new dataset when None.
    target_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    delivered_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    price_sheet_id: Mapped[int | None] = mapped_column(ForeignKey("labelling_price_sheets.id"))
    quoted_units_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    quoted_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    hold_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    delivered_units_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    # Delivered while disputed: owed but not captured until ops resolve the dispute.
    frozen_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    overage_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set when deliveries ran past the quote (overage booked) or a vendor misreported.
    flag: Mapped[str | None] = mapped_column(Text)
    dispute_reason: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(String(16))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # The adapter's own handle on the order (a Label Studio project id).
    external_ref: Mapped[str | None] = mapped_column(String(200))
    request_key: Mapped[str | None] = mapped_column(String(400))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    quoted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    placed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    disputed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Item(Base):
    """One thing to label: a text, or an image stored as a blob."""

    __tablename__ = "labelling_items"
    __table_args__ = (
        UniqueConstraint("order_id", "external_id"),
        UniqueConstraint("order_id", "position"),
        CheckConstraint("claims >= 0 AND annotation_count >= 0", name="counts_not_negative"),
        CheckConstraint("annotation_count <= claims", name="annotations_within_claims"),
        CheckConstraint("(text IS NULL) <> (blob_sha256 IS NULL)", name="text_or_blob"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("labelling_orders.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_MAX_LENGTH))
    text: Mapped[str | None] = mapped_column(Text)
    # Indexed: deleting a blob first asks whether any item still names it.
    blob_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    media_type: Mapped[str] = mapped_column(String(127), default="text/plain")
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    # The known answer of a gold item, an AnnotationValue.
    gold_value: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Open assignments plus annotations: an item is served while this is below redundancy.
    claims: Mapped[int] = mapped_column(Integer, default=0)
    annotation_count: Mapped[int] = mapped_column(Integer, default=0)
    # The adapter's handle on the item (a Label Studio task id).
    external_ref: Mapped[str | None] = mapped_column(String(200))


class Annotation(Base):
    """One annotator's delivered answer for one item, and what it captured."""

    __tablename__ = "labelling_annotations"
    __table_args__ = (
        UniqueConstraint("order_id", "delivery_key"),
        # An annotator labels an item at most once.
        UniqueConstraint("item_id", "annotator_ref"),
        CheckConstraint(
            "units_micro >= 0 AND captured_micro >= 0 AND overage_micro >= 0 AND frozen_micro >= 0",
            name="figures_not_negative",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("labelling_orders.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("labelling_items.id"), index=True)
    # Who labelled, as the adapter knows them: "user:12", "label-studio:7".
    annotator_ref: Mapped[str] = mapped_column(String(ANNOTATOR_REF_MAX_LENGTH))
    # What reports and the delivered file show instead: stable per order, meaningless outside it.
    annotator_pseudonym: Mapped[str] = mapped_column(String(32))
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    seconds: Mapped[float | None] = mapped_column()
    delivery_key: Mapped[str] = mapped_column(String(200))
    units_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    frozen_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    overage_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class UnitDelivery(Base):
    """Units a vendor reported (invoice adapter), keyed so a replay counts once."""

    __tablename__ = "labelling_unit_deliveries"
    __table_args__ = (
        UniqueConstraint("order_id", "delivery_key"),
        CheckConstraint(
            "units_micro > 0 AND captured_micro >= 0 AND overage_micro >= 0 AND frozen_micro >= 0",
            name="figures_valid",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("labelling_orders.id"), index=True)
    delivery_key: Mapped[str] = mapped_column(String(200))
    units_micro: Mapped[int] = mapped_column(BigInteger)
    captured_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    frozen_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    overage_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_record_id: Mapped[int | None] = mapped_column(ForeignKey("usage_records.id"))
    delivered_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OrderAnnotator(Base):
    """An in-house annotator assigned to an order: they get its queue."""

    __tablename__ = "labelling_order_annotators"

    order_id: Mapped[int] = mapped_column(
        ForeignKey("labelling_orders.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    assigned_by: Mapped[str] = mapped_column(String(200))
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Assignment(Base):
    """An item served to an in-house annotator; never served to them a second time."""

    __tablename__ = "labelling_assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id"),
        CheckConstraint(in_values("status", AssignmentStatus), name="status"),
        Index("ix_labelling_assignments_user_status", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("labelling_orders.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("labelling_items.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default=AssignmentStatus.OPEN.value)
    served_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
